//! Comparison echo server: tokio-tungstenite on a current-thread tokio runtime (one
//! thread), for `bench/run-engine-matrix.sh`.
//!
//! The stream is used as the crate documents it: `accept_async`, then the connection as
//! a `Stream` + `Sink` of messages (`StreamExt`/`SinkExt`). Replies are queued with
//! `feed` (tungstenite's write buffer, 128 KiB by default) while more messages are
//! already readable, and written with one `flush` when the input is drained, so that
//! pipelined messages cost one write. With `--flush-each` every reply is `send` (one
//! write per message), as in the crate's echo example. Pings are answered by tungstenite.
//! With `--tls`, tokio-rustls under it (`common::tls_acceptor`: PEER_TLS_CERT/KEY).
#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Error;

const NAME: &str = "peer-tokio-tungstenite";

async fn serve<S>(stream: S, flush_each: bool) -> Result<(), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
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
    let args = common::Args::parse(NAME, &["flush-each", "tls"]);
    let flush_each = args.has("flush-each");
    let tls = args.has("tls").then(common::tls_acceptor);
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.addr).await?;
        let mut mode =
            if flush_each { "send per message" } else { "feed + flush when drained" }.to_owned();
        if tls.is_some() {
            mode.push_str(", tokio-rustls");
        }
        common::announce(NAME, listener.local_addr()?, &mode);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = match tls {
                    Some(t) => match t.accept(stream).await {
                        Ok(s) => serve(s, flush_each).await,
                        Err(_) => Ok(()),
                    },
                    None => serve(stream, flush_each).await,
                };
            });
        }
    })
}
