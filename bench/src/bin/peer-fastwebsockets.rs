//! Comparison echo server: fastwebsockets on a current-thread tokio runtime (one
//! thread), for `bench/run-engine-matrix.sh`.
//!
//! As the crate's README and `echo_server` example: hyper 1 serves the HTTP/1.1 upgrade
//! (`fastwebsockets::upgrade::upgrade`, `with_upgrades`), each WebSocket is a
//! `FragmentCollector` (whole messages, auto pong and auto close on) in an
//! `unconstrained` task, and every text or binary frame is written back with
//! `write_frame`. fastwebsockets has no write buffer: `write_frame` is one `write` (or
//! `writev` above 1 KiB) per message.
//!
//! `--batch` adds what fastwebsockets leaves to the stream (its `flush` exists for
//! buffered streams): the socket is wrapped in [`BatchIo`], which queues writes and
//! writes them out only when the next read would block (or 64 KiB are queued), so that
//! replies to pipelined messages share one `write`.
//!
//! With `--tls`, tokio-rustls under hyper (`common::tls_acceptor`: PEER_TLS_CERT/KEY,
//! the same crypto as ringwire's server); `--batch` then queues plaintext above the TLS
//! stream, so that replies to pipelined messages share records and a `write`.
#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::{upgrade, FragmentCollector, OpCode, Role, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

const NAME: &str = "peer-fastwebsockets";

/// Queued bytes above which [`BatchIo`] writes before accepting more.
const BATCH_LIMIT: usize = 64 * 1024;

/// A stream whose writes are queued until the next read would block.
struct BatchIo<S> {
    inner: S,
    queued: Vec<u8>,
    /// How much of `queued` is written.
    done: usize,
}

impl<S: AsyncWrite + Unpin> BatchIo<S> {
    fn new(inner: S) -> Self {
        Self { inner, queued: Vec::new(), done: 0 }
    }

    /// Writes the queue out; `Ready(Ok)` once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.done < self.queued.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.queued[self.done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.queued.clear();
        self.done = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for BatchIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                // Input drained: send the replies, then wait (for input, or for room).
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(b)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.queued.len() >= BATCH_LIMIT {
            if let Poll::Ready(Err(e)) | Poll::Ready(Ok(Err(e))) =
                this.poll_drain(cx).map(|r| r.map(Ok::<(), io::Error>))
            {
                return Poll::Ready(Err(e));
            }
            if !this.queued.is_empty() {
                return Poll::Pending;
            }
        }
        let mut n = 0;
        for b in bufs {
            this.queued.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

async fn echo<S>(mut ws: FragmentCollector<S>) -> Result<(), WebSocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn handle(fut: upgrade::UpgradeFut, batch: bool) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    if batch {
        // Nothing is buffered in `ws` yet (hyper keeps any early bytes in the stream).
        let io = BatchIo::new(ws.into_inner());
        echo(FragmentCollector::new(WebSocket::after_handshake(io, Role::Server))).await
    } else {
        echo(FragmentCollector::new(ws)).await
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
    batch: bool,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let _ = handle(fut, batch).await;
    }));
    Ok(response)
}

/// One connection: hyper's HTTP/1.1 with upgrades over `stream` (TCP or TLS).
async fn serve<S>(stream: S, batch: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(move |req| upgrade_request(req, batch)))
        .with_upgrades();
    let _ = conn.await;
}

fn main() -> io::Result<()> {
    let args = common::Args::parse(NAME, &["batch", "tls"]);
    let batch = args.has("batch");
    let tls = args.has("tls").then(common::tls_acceptor);
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.addr).await?;
        let mut mode =
            if batch { "writes queued until the read would block" } else { "write per frame" }
                .to_owned();
        if tls.is_some() {
            mode.push_str(", tokio-rustls");
        }
        common::announce(NAME, listener.local_addr()?, &mode);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(t) => {
                        if let Ok(s) = t.accept(stream).await {
                            serve(s, batch).await;
                        }
                    }
                    None => serve(stream, batch).await,
                }
            });
        }
    })
}
