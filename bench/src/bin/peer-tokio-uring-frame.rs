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

use ringwire_frame::Config;
use tokio_uring::net::{TcpListener, TcpStream};

const NAME: &str = "peer-tokio-uring-frame";
const READ_BUF: usize = 16 * 1024;

async fn serve(stream: TcpStream, config: Arc<Config>) -> io::Result<()> {
    ringwire_bench::rent_echo_loop!(stream, config, READ_BUF)
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
