//! Protocol-core micro-benchmarks: decode (+ unmask + UTF-8 check), encode and masking,
//! ringwire against tungstenite, fastwebsockets and `memcpy` of the same bytes.
//!
//! What each implementation does per iteration is described in `docs/BENCHMARKS.md`.
// criterion's macros generate undocumented public items; nothing here is a library API.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringwire_bench::{
    binary_payload, frames_per_batch, masked_frames, text_payload, MASK_KEY, SIZES,
};
use ringwire_frame::{encode_message, mask, Config, Connection, Event, FixedMask, OpCode};

// ---- in-memory transports for the peers ------------------------------------------------

/// An endless byte stream that replays `data` (a whole number of frames) over and over,
/// so that a long-lived connection reads the same frames every iteration. Reads stop at
/// the end of `data` and the next read starts again at its beginning. Writes are dropped.
struct Replay<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Replay<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.data.len() {
            self.pos = 0;
        }
        n
    }
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Replay<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.data.len() {
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose I/O never blocks (the in-memory `Replay`) to completion with a
/// no-op waker: no runtime, no scheduling cost charged to fastwebsockets.
fn run_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("in-memory stream never blocks"),
    }
}

// ---- decode ------------------------------------------------------------------------------

fn decode_group(c: &mut Criterion, name: &str, opcode: OpCode) {
    let text = opcode == OpCode::Text;
    let mut g = c.benchmark_group(name);
    for size in SIZES {
        let payload = if text { text_payload(size) } else { binary_payload(size) };
        let count = frames_per_batch(size);
        let wire = masked_frames(opcode, &payload, count);
        g.throughput(Throughput::Bytes(wire.len() as u64));

        // ringwire: one long-lived server connection is fed the whole buffer; every
        // message is taken with poll_event and dropped.
        g.bench_with_input(BenchmarkId::new("ringwire", size), &wire, |b, wire| {
            let now = Instant::now();
            let mut conn = Connection::server(Config::default(), now);
            b.iter(|| {
                conn.handle_bytes(now, black_box(wire));
                let mut n = 0;
                while let Some(ev) = conn.poll_event() {
                    if let Event::Message(m) = ev {
                        n += m.len();
                    }
                }
                assert_eq!(n, count * size);
            });
        });

        // ringwire with the transport's copy: the bytes are first copied into a receive
        // buffer, as the peers below copy them out of their stream (see BENCHMARKS.md).
        g.bench_with_input(BenchmarkId::new("ringwire+recv-copy", size), &wire, |b, wire| {
            let now = Instant::now();
            let mut conn = Connection::server(Config::default(), now);
            let mut recv = vec![0u8; 64 * 1024];
            b.iter(|| {
                let mut n = 0;
                for chunk in black_box(wire).chunks(recv.len()) {
                    let r = &mut recv[..chunk.len()];
                    r.copy_from_slice(chunk);
                    conn.handle_bytes(now, r);
                    while let Some(ev) = conn.poll_event() {
                        if let Event::Message(m) = ev {
                            n += m.len();
                        }
                    }
                }
                assert_eq!(n, count * size);
            });
        });

        // tungstenite: a server WebSocket over the replaying stream, `count` reads of a
        // message (frame parse, unmask, UTF-8 check for text, message assembly).
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &wire, |b, wire| {
            use tungstenite::protocol::{Role, WebSocket};
            let mut ws = WebSocket::from_raw_socket(Replay::new(wire), Role::Server, None);
            b.iter(|| {
                let mut n = 0;
                for _ in 0..count {
                    let m = ws.read().expect("tungstenite read");
                    n += m.len();
                }
                assert_eq!(n, count * size);
            });
        });

        // fastwebsockets: a server WebSocket over the replaying stream, `count` frames
        // read with read_frame (unmask, and UTF-8 check of final text frames inside).
        g.bench_with_input(BenchmarkId::new("fastwebsockets", size), &wire, |b, wire| {
            use fastwebsockets::{Role, WebSocket};
            let mut ws = WebSocket::after_handshake(Replay::new(wire), Role::Server);
            ws.set_auto_close(true);
            ws.set_auto_pong(true);
            b.iter(|| {
                let n = run_ready(async {
                    let mut n = 0;
                    for _ in 0..count {
                        let f = ws.read_frame().await.expect("fastwebsockets read");
                        n += f.payload.len();
                    }
                    n
                });
                assert_eq!(n, count * size);
            });
        });

        // The physical limit: copy the same bytes once.
        g.bench_with_input(BenchmarkId::new("memcpy", size), &wire, |b, wire| {
            let mut dst = vec![0u8; wire.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(wire));
                black_box(&mut dst);
            });
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    decode_group(c, "decode_text", OpCode::Text);
    decode_group(c, "decode_binary", OpCode::Binary);
}

// ---- encode ------------------------------------------------------------------------------

fn encode_group(c: &mut Criterion, name: &str, masked: bool) {
    let mut g = c.benchmark_group(name);
    let key = masked.then_some(MASK_KEY);
    for size in SIZES {
        let payload = text_payload(size);
        g.throughput(Throughput::Bytes(size as u64));

        // ringwire: encode_message (header, copy, mask if a client) into a reused Vec.
        g.bench_with_input(BenchmarkId::new("ringwire", size), &payload, |b, p| {
            let mut out = Vec::with_capacity(size + 14);
            let mut masks = FixedMask(MASK_KEY);
            b.iter(|| {
                out.clear();
                let m: Option<&mut dyn ringwire_frame::MaskSource> =
                    if masked { Some(&mut masks) } else { None };
                encode_message(&mut out, OpCode::Text, black_box(p), None, m);
                black_box(&mut out);
            });
        });

        // tungstenite: a Frame over the payload (`Bytes`, shared: no copy) formatted
        // into a reused Vec with the public `Frame::format`.
        let shared = bytes::Bytes::from(payload.clone());
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &shared, |b, p| {
            use tungstenite::protocol::frame::coding::{Data, OpCode as TOp};
            use tungstenite::protocol::frame::Frame;
            let mut out = Vec::with_capacity(size + 14);
            b.iter(|| {
                out.clear();
                let mut f = Frame::message(black_box(p).clone(), TOp::Data(Data::Text), true);
                f.header_mut().mask = key;
                f.format(&mut out).expect("format");
                black_box(&mut out);
            });
        });

        // fastwebsockets: what WriteHalf::write_frame does before the socket write: mask
        // (client) and Frame::write into a reused Vec.
        g.bench_with_input(BenchmarkId::new("fastwebsockets", size), &payload, |b, p| {
            use fastwebsockets::{Frame, OpCode as FOp, Payload};
            let mut out = Vec::with_capacity(size + 14);
            b.iter(|| {
                let mut f = Frame::new(true, FOp::Text, key, Payload::Borrowed(black_box(p)));
                if masked {
                    f.mask();
                }
                black_box(f.write(&mut out));
            });
        });

        g.bench_with_input(BenchmarkId::new("memcpy", size), &payload, |b, p| {
            let mut dst = vec![0u8; size];
            b.iter(|| {
                dst.copy_from_slice(black_box(p));
                black_box(&mut dst);
            });
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    encode_group(c, "encode_server", false);
    encode_group(c, "encode_client", true);
}

// ---- masking alone -----------------------------------------------------------------------

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in SIZES {
        let data = binary_payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ringwire", size), &data, |b, d| {
            let mut buf = d.clone();
            b.iter(|| mask::apply_mask(black_box(&mut buf), MASK_KEY));
        });
        g.bench_with_input(BenchmarkId::new("ringwire-scalar", size), &data, |b, d| {
            let mut buf = d.clone();
            b.iter(|| mask::apply_mask_scalar(black_box(&mut buf), MASK_KEY, 0));
        });
        // tungstenite's mask module is private (0.26): not measurable alone.
        g.bench_with_input(BenchmarkId::new("fastwebsockets", size), &data, |b, d| {
            let mut buf = d.clone();
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), MASK_KEY));
        });
        g.bench_with_input(BenchmarkId::new("memcpy", size), &data, |b, d| {
            let mut dst = vec![0u8; size];
            b.iter(|| {
                dst.copy_from_slice(black_box(d));
                black_box(&mut dst);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, masking);
criterion_main!(benches);
