//! Comparison echo server: ringwire's protocol core (`ringwire-frame`) on a monoio
//! io_uring runtime (one thread), for `bench/run-engine-matrix.sh`. It shows what the
//! ringwire engine adds over a plain io_uring runtime driving the same sans-IO core.
//!
//! Per connection, a task with an owned 16 KiB read buffer (monoio's rent-style I/O:
//! the buffer is lent to the kernel for each `read`): the upgrade is parsed with
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

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use ringwire_bench::frame_echo;
use ringwire_frame::Config;

const NAME: &str = "peer-monoio-frame";
const READ_BUF: usize = 16 * 1024;

async fn serve(mut stream: TcpStream, config: Arc<Config>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::new();
    // The upgrade request (it may arrive in pieces, and frames may follow it).
    let mut head = Vec::new();
    let mut ws = loop {
        buf.clear();
        let (r, b) = stream.read(buf).await;
        buf = b;
        let n = r?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        match frame_echo::upgrade(&head, &config, &mut out) {
            Ok(Some(ws)) => break ws,
            Ok(None) => {}
            Err(e) => {
                let _ = stream.write_all(out).await;
                return Err(e);
            }
        }
    };
    drop(head);
    loop {
        let closed = frame_echo::echo_pending(&mut ws, &mut out);
        if !out.is_empty() {
            let (r, o) = stream.write_all(out).await;
            out = o;
            r?;
            out.clear();
        }
        if closed {
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
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(4096)
        .build()
        .map_err(|e| io::Error::new(e.kind(), format!("monoio io_uring runtime: {e}")))?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.addr)?;
        common::announce(NAME, listener.local_addr()?, "monoio io_uring + ringwire-frame");
        let config = Arc::new(Config::default());
        loop {
            let (stream, _) = listener.accept().await?;
            let config = config.clone();
            monoio::spawn(async move {
                let _ = serve(stream, config).await;
            });
        }
    })
}
