//! A worker under virtual time: a fake [`Driver`] whose "network" is in memory and a
//! clock the test owns, so timers, backpressure, drain and shutdown run in microseconds
//! of real time, deterministically (the model is quinn-proto's pair of endpoints with a
//! virtual clock stepped to the next timeout).
//!
//! The test plays the peers with real protocol cores ([`Connection::client`]) and drives
//! the worker with [`Sim::step`] / [`Sim::run_for`]: when the worker would sleep and no
//! completion is pending, the fake driver advances the clock by the worker's timeout,
//! exactly to its next deadline.

mod client;
mod client_tests;
mod tests;
mod wake_tests;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire_frame::{Closed, Connection, Event, Message};
use rustix::io::Errno;

use super::Worker;
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::handle::WorkerShared;
use crate::handler::Handler;
use crate::shard::Core;
use crate::slab::Key;
use crate::stats::{StatsSnapshot, WorkerStats};
use crate::sys::{Completion, Driver, RecvEnd, Socket};

/// One peer's socket as the fake driver sees it.
#[derive(Default)]
struct FakeSocket {
    recv_armed: bool,
    /// Bytes the peer sent that the worker has not received yet.
    inbound: VecDeque<Vec<u8>>,
    /// The peer closed its side: the receive ends with EOF after `inbound`.
    eof: bool,
    /// The send in flight.
    send: Option<Vec<Bytes>>,
    /// How many more bytes the peer's receive window takes (`None`: unlimited).
    window: Option<usize>,
    /// Everything the worker wrote, in order.
    written: Vec<u8>,
    cancel: bool,
    close: bool,
    closed: bool,
    /// A client's connect is in flight; it completes at the next wait.
    connecting: bool,
}

/// The shared state of the fake network and the virtual clock.
struct Net {
    now: Instant,
    /// Connections the test started that the worker has not accepted yet.
    accepts: usize,
    next_fixed: u32,
    /// The key the worker gave each accepted connection, in accept order.
    keys: Vec<Key>,
    sockets: HashMap<Key, FakeSocket>,
    listening: bool,
    /// The clock never passes this: a wait with nothing to report moves it to the
    /// worker's deadline or here, whichever is sooner.
    horizon: Instant,
    /// The last wait had nothing to report and the worker nothing left to do.
    idle: bool,
    /// How clients' connects end: `None` connects, `Some(e)` fails with `e`.
    connect_error: Option<Errno>,
    /// Clients' connects never complete (a peer that drops SYNs).
    connects_hang: bool,
    /// The virtual time of every connect the worker started.
    connects: Vec<Instant>,
    /// The timeout of the worker's last wait.
    last_wait: Option<Duration>,
}

#[derive(Clone)]
struct SimClock(Rc<RefCell<Net>>);

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.0.borrow().now
    }
}

struct FakeDriver(Rc<RefCell<Net>>);

impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn features(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn add_listener(&mut self, _: OwnedFd) -> io::Result<()> {
        Ok(())
    }

    fn close_listeners(&mut self) {
        self.0.borrow_mut().listening = false;
    }

    fn add_conn(&mut self, key: Key, _: Socket) {
        let mut net = self.0.borrow_mut();
        net.keys.push(key);
        net.sockets.insert(key, FakeSocket::default());
    }

    fn discard(&mut self, _: Socket) {}

    fn connect(&mut self, key: Key, _: std::net::SocketAddr) {
        let mut net = self.0.borrow_mut();
        let now = net.now;
        net.connects.push(now);
        if let Some(s) = net.sockets.get_mut(&key) {
            s.connecting = true;
        }
    }

    fn start_recv(&mut self, key: Key) {
        if let Some(s) = self.0.borrow_mut().sockets.get_mut(&key) {
            s.recv_armed = true;
        }
    }

    fn cancel(&mut self, key: Key) {
        if let Some(s) = self.0.borrow_mut().sockets.get_mut(&key) {
            s.cancel = true;
        }
    }

    fn send(&mut self, key: Key, chunks: Vec<Bytes>) {
        let mut net = self.0.borrow_mut();
        let s = net.sockets.get_mut(&key).expect("send on a socket the driver owns");
        assert!(s.send.is_none(), "two sends in flight on one connection");
        assert!(!s.close, "send after close");
        s.send = Some(chunks);
    }

    fn close(&mut self, key: Key) {
        let mut net = self.0.borrow_mut();
        let s = net.sockets.get_mut(&key).expect("close of a socket the driver owns");
        assert!(!s.recv_armed && s.send.is_none(), "close with an operation in flight");
        s.close = true;
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let mut any = false;
        let accepts = std::mem::take(&mut self.0.borrow_mut().accepts);
        for _ in 0..accepts {
            let fixed = {
                let mut net = self.0.borrow_mut();
                net.next_fixed += 1;
                net.next_fixed
            };
            f(Completion::Accepted(Socket::Fixed(fixed)));
            any = true;
        }
        let keys: Vec<Key> = self.0.borrow().keys.clone();
        for key in keys {
            any |= self.complete(key, f);
        }
        let mut net = self.0.borrow_mut();
        net.last_wait = timeout;
        net.idle = !any && timeout != Some(Duration::ZERO);
        if net.idle {
            let target = timeout.map_or(net.horizon, |t| (net.now + t).min(net.horizon));
            net.now = net.now.max(target);
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        let net = self.0.borrow();
        net.sockets
            .values()
            .map(|s| {
                usize::from(s.recv_armed)
                    + usize::from(s.send.is_some())
                    + usize::from(s.connecting)
            })
            .sum()
    }
}

impl FakeDriver {
    /// Reports what is ready on one socket; whether anything was.
    fn complete(&mut self, key: Key, f: &mut dyn FnMut(Completion<'_>)) -> bool {
        let mut any = false;
        let connected = {
            let mut net = self.0.borrow_mut();
            let (hang, error) = (net.connects_hang, net.connect_error);
            match net.sockets.get_mut(&key) {
                Some(s) if s.connecting && (s.cancel || !hang) => {
                    s.connecting = false;
                    Some(match error {
                        _ if s.cancel => Err(Errno::CANCELED),
                        Some(e) => Err(e),
                        None => Ok(()),
                    })
                }
                _ => None,
            }
        };
        if let Some(result) = connected {
            f(Completion::Connected { key, result });
            any = true;
        }
        // A send completes with what the peer's window takes (if it takes anything).
        let sent = {
            let mut net = self.0.borrow_mut();
            let Some(s) = net.sockets.get_mut(&key) else { return false };
            match s.send.take() {
                Some(chunks) if s.cancel => Some((Err(Errno::CANCELED), chunks)),
                Some(chunks) => {
                    let total: usize = chunks.iter().map(Bytes::len).sum();
                    let n = s.window.map_or(total, |w| w.min(total));
                    if n == 0 {
                        s.send = Some(chunks);
                        None
                    } else {
                        if let Some(w) = &mut s.window {
                            *w -= n;
                        }
                        let mut left = n;
                        for c in &chunks {
                            let take = left.min(c.len());
                            s.written.extend_from_slice(&c[..take]);
                            left -= take;
                        }
                        Some((Ok(n), chunks))
                    }
                }
                None => None,
            }
        };
        if let Some((result, chunks)) = sent {
            f(Completion::Sent { key, result, chunks });
            any = true;
        }
        // Received bytes, then the end of the receive.
        loop {
            let next = {
                let mut net = self.0.borrow_mut();
                let Some(s) = net.sockets.get_mut(&key) else { return any };
                if !s.recv_armed {
                    break;
                }
                if s.cancel {
                    s.recv_armed = false;
                    Some(Err(RecvEnd::Cancelled))
                } else if let Some(data) = s.inbound.pop_front() {
                    Some(Ok(data))
                } else if s.eof {
                    s.recv_armed = false;
                    Some(Err(RecvEnd::Eof))
                } else {
                    None
                }
            };
            match next {
                Some(Ok(mut data)) => f(Completion::Recv { key, data: &mut &mut data[..] }),
                Some(Err(why)) => f(Completion::RecvEnded { key, why }),
                None => break,
            }
            any = true;
        }
        let close = {
            let mut net = self.0.borrow_mut();
            match net.sockets.get_mut(&key) {
                Some(s) if s.close && !s.closed => {
                    s.closed = true;
                    true
                }
                _ => false,
            }
        };
        if close {
            f(Completion::FdClosed { key });
            any = true;
        }
        any
    }
}

/// A peer the test plays: a client protocol core over the fake socket.
pub(super) struct Peer {
    pub(super) key: Key,
    pub(super) ws: Connection,
    /// How much of the socket's written bytes this peer has read.
    pub(super) read: usize,
    pub(super) upgraded: bool,
    pub(super) events: Vec<Event>,
}

/// A worker driven under virtual time.
pub(super) struct Sim<H: Handler> {
    worker: Worker<FakeDriver, H, SimClock>,
    net: Rc<RefCell<Net>>,
    t0: Instant,
    /// Whether the last turn reported the shutdown complete.
    pub(super) finished: bool,
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

struct FixedMask;

impl ringwire_frame::MaskSource for FixedMask {
    fn next_mask(&mut self) -> [u8; 4] {
        [0x37, 0xfa, 0x21, 0x3d]
    }
}

impl<H: Handler> Sim<H> {
    pub(super) fn new(config: EngineConfig, handler: H) -> Self {
        Self::with_other_workers(config, handler, 0)
    }

    /// A worker with `others` more workers beside it that never run: their command
    /// queues (of `config.command_queue`) fill up and stay full.
    pub(super) fn with_other_workers(config: EngineConfig, handler: H, others: usize) -> Self {
        // A virtual time far from the real clock shows nothing reads the real one.
        let t0 = Instant::now() + Duration::from_secs(1_000 * 86_400);
        let net = Rc::new(RefCell::new(Net {
            now: t0,
            accepts: 0,
            next_fixed: 0,
            keys: Vec::new(),
            sockets: HashMap::new(),
            listening: true,
            horizon: t0,
            idle: false,
            connect_error: None,
            connects_hang: false,
            connects: Vec::new(),
            last_wait: None,
        }));
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
        let fd = Arc::new(fd);
        let me = Arc::new(WorkerShared::new(0, config.command_queue, fd.clone()));
        let mut workers = vec![me.clone()];
        for i in 0..others {
            let i = u16::try_from(i + 1).expect("few workers");
            workers.push(Arc::new(WorkerShared::new(i, config.command_queue, fd.clone())));
        }
        let all: Arc<[Arc<WorkerShared>]> = Arc::from(workers);
        let stats = Arc::new(WorkerStats::default());
        let dialer = Arc::new(crate::client::Dialer::new(t0, config.frame.clone()));
        let core = Core::new(0, Arc::new(config), stats, me, all, dialer, t0);
        let worker = Worker {
            driver: FakeDriver(net.clone()),
            handler,
            core,
            clock: SimClock(net.clone()),
            spares_at: None,
        };
        Self { worker, net, t0, finished: false }
    }

    /// The virtual time now.
    pub(super) fn now(&self) -> Instant {
        self.net.borrow().now
    }

    /// A connection that sends `request` and nothing more (a slow or broken client).
    pub(super) fn connect_raw(&mut self, request: &[u8]) -> Peer {
        let peer = self.accept_one();
        self.push(peer.key, request.to_vec());
        self.settle();
        peer
    }

    /// A connection the worker has accepted, with a client core for the test to play it.
    fn accept_one(&mut self) -> Peer {
        self.net.borrow_mut().accepts += 1;
        let n = self.net.borrow().keys.len();
        self.settle();
        let key = *self.net.borrow().keys.get(n).expect("the worker accepted the connection");
        let now = self.net.borrow().now;
        Peer {
            key,
            ws: Connection::client(ringwire_frame::Config::default(), Box::new(FixedMask), now),
            read: 0,
            upgraded: false,
            events: Vec::new(),
        }
    }

    /// Virtual time since the start.
    pub(super) fn elapsed(&self) -> Duration {
        self.net.borrow().now - self.t0
    }

    pub(super) fn stats(&self) -> StatsSnapshot {
        self.worker.core.stats.snapshot()
    }

    pub(super) fn handler(&mut self) -> &mut H {
        &mut self.worker.handler
    }

    /// One turn of the worker's loop.
    pub(super) fn step(&mut self) {
        self.finished = self.worker.turn().expect("the fake driver does not fail");
    }

    /// Turns the loop until virtual time has advanced by `d` and the worker is idle (or
    /// it finished).
    pub(super) fn run_for(&mut self, d: Duration) {
        let until = self.net.borrow().now + d;
        self.run_until(until);
    }

    /// The timeout the worker's last wait was given (`None`: none).
    pub(super) fn last_wait(&self) -> Option<Duration> {
        self.net.borrow().last_wait
    }

    /// Turns the loop until nothing is pending, without moving the clock.
    pub(super) fn settle(&mut self) {
        let now = self.net.borrow().now;
        self.run_until(now);
    }

    fn run_until(&mut self, until: Instant) {
        self.net.borrow_mut().horizon = until;
        for _ in 0..1_000_000 {
            self.step();
            let net = self.net.borrow();
            if self.finished || (net.now >= until && net.idle) {
                return;
            }
        }
        panic!("the worker did not go idle in a million turns");
    }

    /// A new connection: accepted, upgraded, ready.
    pub(super) fn connect(&mut self) -> Peer {
        let mut peer = self.connect_raw(UPGRADE);
        self.read(&mut peer);
        assert!(peer.upgraded, "no 101 after the upgrade request");
        peer
    }

    pub(super) fn push(&mut self, key: Key, data: Vec<u8>) {
        self.net.borrow_mut().sockets.get_mut(&key).expect("a live socket").inbound.push_back(data);
    }

    /// The peer sends `msg`.
    pub(super) fn send(&mut self, peer: &mut Peer, msg: Message) {
        peer.ws.send(msg).expect("the peer may send");
        self.transmit(peer);
    }

    /// Writes what the peer's protocol core has queued, as one read on the worker's side.
    pub(super) fn transmit(&mut self, peer: &mut Peer) {
        let mut out = Vec::new();
        peer.ws.poll_transmit_into(&mut out);
        if !out.is_empty() {
            self.push(peer.key, out);
        }
    }

    /// The peer sends raw bytes (frames the test encoded itself), as one read.
    pub(super) fn send_raw(&mut self, peer: &Peer, bytes: Vec<u8>) {
        self.push(peer.key, bytes);
    }

    /// The peer closes its side of TCP.
    pub(super) fn hang_up(&mut self, peer: &Peer) {
        self.net.borrow_mut().sockets.get_mut(&peer.key).expect("a live socket").eof = true;
    }

    /// How many more bytes the peer's socket takes (`None`: any amount).
    pub(super) fn set_window(&mut self, peer: &Peer, window: Option<usize>) {
        self.net.borrow_mut().sockets.get_mut(&peer.key).expect("a live socket").window = window;
    }

    /// Feeds what the worker wrote since the last read to the peer's protocol core and
    /// collects its events (the 101 response is checked and skipped first).
    pub(super) fn read(&mut self, peer: &mut Peer) {
        let now = self.net.borrow().now;
        let mut fresh = {
            let net = self.net.borrow();
            let s = &net.sockets[&peer.key];
            s.written[peer.read..].to_vec()
        };
        peer.read += fresh.len();
        if !peer.upgraded {
            let Some(end) = fresh.windows(4).position(|w| w == b"\r\n\r\n") else {
                assert!(fresh.is_empty(), "a partial HTTP response");
                return;
            };
            assert!(fresh.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&fresh));
            peer.upgraded = true;
            fresh.drain(..end + 4);
        }
        peer.ws.handle_bytes(now, &fresh);
        while let Some(ev) = peer.ws.poll_event() {
            peer.events.push(ev);
        }
    }

    /// Everything the worker wrote to the peer's socket so far.
    pub(super) fn written(&self, peer: &Peer) -> Vec<u8> {
        self.net.borrow().sockets.get(&peer.key).map(|s| s.written.clone()).unwrap_or_default()
    }

    /// The upgrade request `connect` sends.
    pub(super) fn upgrade_request() -> &'static [u8] {
        UPGRADE
    }

    /// Whether the worker closed the peer's socket.
    pub(super) fn socket_closed(&self, peer: &Peer) -> bool {
        self.net.borrow().sockets.get(&peer.key).is_some_and(|s| s.closed)
    }

    /// Requests a graceful shutdown, as `Server::shutdown` does.
    pub(super) fn request_shutdown(&mut self) {
        self.worker.core.me.request_shutdown();
    }

    pub(super) fn listening(&self) -> bool {
        self.net.borrow().listening
    }
}

impl Peer {
    /// The messages received so far.
    pub(super) fn messages(&self) -> Vec<Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// How the peer saw the connection end, if it did.
    pub(super) fn closed(&self) -> Option<&Closed> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }

    /// Pings received.
    pub(super) fn pings(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Ping(_))).count()
    }
}
