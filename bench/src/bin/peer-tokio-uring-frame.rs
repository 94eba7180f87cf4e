//! Comparison echo server: ringwire's protocol core (`ringwire-frame`) on tokio-uring
//! (a current-thread tokio runtime driving one io_uring: one thread), for
//! `bench/run-engine-matrix.sh`. It shows what the ringwire engine adds over a plain
//! io_uring runtime driving the same sans-IO core.
//!
//! Per connection, a task with an owned 16 KiB read buffer (tokio-uring's owned-buffer
//! I/O: the buffer is lent to the kernel for each `read`): the upgrade is parsed with
//! `handshake::parse_request` and answered with `Request::accept`; then each read is fed
//! to `Connection::handle_bytes`, every message event is echoed with `Connection::send`,
//! and everything `poll_transmit` holds is gathered into one buffer and written with one
//! `write_all` per read (replies to pipelined messages share a write).
#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::sync::Arc;
use std::time::Instant;

use ringwire_frame::handshake::{parse_request, HandshakeLimits};
use ringwire_frame::{Config, Connection, Event};
use tokio_uring::net::{TcpListener, TcpStream};

const NAME: &str = "peer-tokio-uring-frame";
const READ_BUF: usize = 16 * 1024;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn serve(stream: TcpStream, config: Arc<Config>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let limits = HandshakeLimits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::new();
    // The upgrade request (it may arrive in pieces, and frames may follow it).
    let mut head = Vec::new();
    let (req, used) = loop {
        buf.clear();
        let (r, b) = stream.read(buf).await;
        buf = b;
        let n = r?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        match parse_request(&head, &limits) {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(e) => {
                e.write_response(&mut out);
                let _ = stream.write_all(out).await;
                return Err(invalid(e));
            }
        }
    };
    req.accept(None, &[], &mut out).map_err(invalid)?;
    let (r, o) = stream.write_all(out).await;
    out = o;
    r?;
    let mut ws = Connection::server(config, Instant::now());
    if head.len() > used {
        ws.handle_bytes(Instant::now(), &head[used..]);
    }
    drop(head);
    loop {
        let mut closed = false;
        while let Some(ev) = ws.poll_event() {
            match ev {
                Event::Message(m) => {
                    let _ = ws.send(m);
                }
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        out.clear();
        if ws.poll_transmit_into(&mut out) > 0 {
            let (r, o) = stream.write_all(out).await;
            out = o;
            r?;
        }
        if closed || ws.is_closed() {
            return Ok(());
        }
        buf.clear();
        let (r, b) = stream.read(buf).await;
        buf = b;
        match r? {
            0 => ws.handle_eof(Instant::now()),
            n => ws.handle_bytes(Instant::now(), &buf[..n]),
        }
    }
}

fn main() -> io::Result<()> {
    let args = common::Args::parse(NAME, &[]);
    tokio_uring::builder().entries(4096).start(async move {
        let listener = TcpListener::bind(args.addr)?;
        common::announce(NAME, listener.local_addr()?, "tokio-uring + ringwire-frame");
        let config = Arc::new(Config::default());
        loop {
            let (stream, _) = listener.accept().await?;
            let config = config.clone();
            tokio_uring::spawn(async move {
                let _ = serve(stream, config).await;
            });
        }
    })
}
