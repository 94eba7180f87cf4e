//! Comparison echo server: tokio-websockets on a current-thread tokio runtime (one
//! thread), for `bench/run-engine-matrix.sh`.
//!
//! As the crate's `echo_server` example: `ServerBuilder::accept`, then the connection as
//! a `Stream` + `Sink` of messages, each connection an `unconstrained` task. Replies are
//! queued with `feed` while more messages are already readable (tokio-websockets writes
//! its queue out once it exceeds its flush threshold, 8 KiB by default) and flushed once
//! when the input is drained, so pipelined messages share a write. With `--flush-each`
//! every reply is `send` (one write per message), exactly the example. Pings are
//! answered by tokio-websockets.
#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{Error, ServerBuilder};

const NAME: &str = "peer-tokio-websockets";

async fn serve(stream: TcpStream, flush_each: bool) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let (_request, mut ws) = ServerBuilder::new().accept(stream).await?;
    loop {
        // `next` is cancel-safe: try it without waiting, flush before waiting.
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                ws.flush().await?;
                ws.next().await
            }
        };
        let Some(msg) = next else { return Ok(()) };
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            if flush_each {
                ws.send(msg).await?;
            } else {
                ws.feed(msg).await?;
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = common::Args::parse(NAME, &["flush-each"]);
    let flush_each = args.has("flush-each");
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.addr).await?;
        let mode = if flush_each { "send per message" } else { "feed + flush when drained" };
        common::announce(NAME, listener.local_addr()?, mode);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(tokio::task::unconstrained(async move {
                let _ = serve(stream, flush_each).await;
            }));
        }
    })
}
