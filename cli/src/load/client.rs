//! One client connection of the generator: a non-blocking socket, the HTTP upgrade, then
//! a `ringwire_frame::Connection` in the client role, whose output chunks are written
//! with `writev` as they are (no copy into a buffer of ours).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use ringwire::frame::handshake::{parse_response, ClientRequest, HandshakeLimits};
use ringwire::frame::{Bytes, Config, Connection, XorShiftMask};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};

use super::args::Target;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet.
    Pending,
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshaking,
    /// WebSocket open.
    Open,
    /// Finished (closed, failed or never started); its socket is gone.
    Done,
}

/// What flushing achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued is written.
    Done,
    /// The socket is full; the rest waits for the next writable edge.
    Blocked,
}

/// One connection.
pub struct Client {
    /// Its index over all threads (decides target, source address and role).
    pub global: usize,
    pub state: State,
    fd: Option<OwnedFd>,
    req: Option<Box<ClientRequest>>,
    /// The response head received so far (only during the upgrade).
    hs: Vec<u8>,
    /// The protocol state once open.
    pub ws: Option<Connection>,
    /// The upgrade request, and how much of it is written.
    out: Vec<u8>,
    out_pos: usize,
    /// Chunks taken from the connection, not yet written (the first from `chunk_off`).
    chunks: VecDeque<Bytes>,
    chunk_off: usize,
    /// We started the close handshake.
    pub closing: bool,
    /// Already queued for a flush this loop turn.
    pub dirty: bool,
}

/// splitmix64: turns a seed and an index into well-mixed 64-bit values.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Client {
    pub fn new(global: usize) -> Self {
        Self {
            global,
            state: State::Pending,
            fd: None,
            req: None,
            hs: Vec::new(),
            ws: None,
            out: Vec::new(),
            out_pos: 0,
            chunks: VecDeque::new(),
            chunk_off: 0,
            closing: false,
            dirty: false,
        }
    }

    /// Starts the TCP connect from `src` (if given) and queues the upgrade request with a
    /// nonce derived from `seed`. `token` is the epoll key.
    pub fn connect(
        &mut self,
        ep: &OwnedFd,
        target: &Target,
        src: Option<IpAddr>,
        seed: u64,
        token: u64,
    ) -> Result<(), String> {
        let fd = net::socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        sockopt::set_tcp_nodelay(&fd, true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        if let Some(ip) = src {
            net::bind(&fd, &SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
        }
        match net::connect(&fd, &target.addr) {
            Ok(()) | Err(Errno::INPROGRESS) => {}
            Err(e) => return Err(format!("connect {}: {e}", target.addr)),
        }
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        epoll::add(ep, &fd, EventData::new_u64(token), flags)
            .map_err(|e| format!("epoll add: {e}"))?;
        // §4.1: a fresh random nonce per connection.
        let (a, b) = (mix(seed), mix(seed ^ 0x5555_5555_5555_5555));
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&a.to_le_bytes());
        key[8..].copy_from_slice(&b.to_le_bytes());
        let req = ClientRequest::new(target.host.clone(), target.path.clone(), key);
        self.out.clear();
        self.out_pos = 0;
        req.write(&mut self.out).map_err(|e| format!("upgrade request: {e}"))?;
        self.req = Some(Box::new(req));
        self.fd = Some(fd);
        self.state = State::Connecting;
        Ok(())
    }

    /// The connect finished (first event on the socket): did it succeed?
    pub fn finish_connect(&mut self) -> Result<(), String> {
        let Some(fd) = &self.fd else { return Err("no socket".into()) };
        match sockopt::socket_error(fd) {
            Ok(Ok(())) => {
                self.state = State::Handshaking;
                Ok(())
            }
            Ok(Err(e)) | Err(e) => Err(format!("connect: {e}")),
        }
    }

    /// Reads into `buf`: `Ok(0)` is end of stream, `Err(AGAIN)` nothing more for now.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        match &self.fd {
            Some(fd) => rustix::io::read(fd, buf),
            None => Err(Errno::BADF),
        }
    }

    /// Feeds response bytes during the upgrade. Returns `Ok(Some(rest))` once the 101 is
    /// valid (`rest`: the frame bytes that followed it), `Ok(None)` while incomplete.
    pub fn handle_handshake(
        &mut self,
        data: &[u8],
        limits: &HandshakeLimits,
        config: &Arc<Config>,
        mask_seed: u64,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        self.hs.extend_from_slice(data);
        let Some(req) = &self.req else { return Err("no request".into()) };
        match parse_response(&self.hs, req, limits) {
            Ok(None) => Ok(None),
            Ok(Some((_, used))) => {
                let rest = self.hs.get(used..).unwrap_or_default().to_vec();
                self.hs = Vec::new();
                self.req = None;
                let masks = Box::new(XorShiftMask::new(mix(mask_seed)));
                self.ws = Some(Connection::client(config.clone(), masks, now));
                self.state = State::Open;
                Ok(Some(rest))
            }
            Err(e) => Err(format!("upgrade: {e}")),
        }
    }

    /// Writes what is queued: first leftovers, then whatever the protocol state holds.
    pub fn flush(&mut self) -> Result<Flush, Errno> {
        /// Most chunks per `writev`.
        const IOV: usize = 16;
        let Some(fd) = &self.fd else { return Ok(Flush::Done) };
        loop {
            if self.out_pos < self.out.len() {
                match rustix::io::write(fd, &self.out[self.out_pos..]) {
                    Ok(n) => self.out_pos += n,
                    Err(Errno::AGAIN) => return Ok(Flush::Blocked),
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if !self.out.is_empty() {
                // The request is out; its buffer is not needed again.
                self.out = Vec::new();
                self.out_pos = 0;
            }
            if self.state == State::Connecting {
                // The request waits until the connect completes.
                return Ok(Flush::Done);
            }
            if self.chunks.is_empty() {
                if let Some(ws) = &mut self.ws {
                    self.chunks.extend(std::iter::from_fn(|| ws.poll_transmit()));
                }
                self.chunk_off = 0;
                if self.chunks.is_empty() {
                    // Keep the queue unless a burst made it large.
                    if self.chunks.capacity() > 1024 {
                        self.chunks = VecDeque::new();
                    }
                    return Ok(Flush::Done);
                }
            }
            let mut iov = [IoSlice::new(&[]); IOV];
            let mut n_iov = 0;
            for (slot, chunk) in iov.iter_mut().zip(&self.chunks) {
                let from = if n_iov == 0 { self.chunk_off.min(chunk.len()) } else { 0 };
                *slot = IoSlice::new(&chunk[from..]);
                n_iov += 1;
            }
            match rustix::io::writev(fd, &iov[..n_iov]) {
                Ok(mut n) => {
                    // Drop what went out; empty chunks go with it.
                    while let Some(first) = self.chunks.front() {
                        let left = first.len().saturating_sub(self.chunk_off);
                        if n < left {
                            self.chunk_off += n;
                            break;
                        }
                        n -= left;
                        self.chunks.pop_front();
                        self.chunk_off = 0;
                    }
                }
                Err(Errno::AGAIN) => return Ok(Flush::Blocked),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether bytes wait to be written.
    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
            || !self.chunks.is_empty()
            || self.ws.as_ref().is_some_and(Connection::has_transmit)
    }

    /// Drops the socket and all buffers.
    pub fn finish(&mut self) {
        self.fd = None;
        self.req = None;
        self.hs = Vec::new();
        self.ws = None;
        self.out = Vec::new();
        self.out_pos = 0;
        self.chunks = VecDeque::new();
        self.chunk_off = 0;
        self.state = State::Done;
    }
}
