//! Server handshake: parse a browser's upgrade request and write the 101 answer.
//! ringwire against tungstenite and `httparse` alone (the parse floor).
// criterion's macros generate undocumented public items; nothing here is a library API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringwire_bench::BROWSER_REQUEST;
use ringwire_frame::handshake::{parse_request, HandshakeLimits};

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    let req = BROWSER_REQUEST;

    // ringwire: parse_request (httparse + RFC 6455 §4.2.1 checks, owned Request) and
    // Request::accept (SHA-1 + base64 accept key, 101 written into a reused Vec).
    g.bench_function("ringwire", |b| {
        let limits = HandshakeLimits::default();
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            let (r, n) = parse_request(black_box(req), &limits).expect("valid").expect("complete");
            out.clear();
            r.accept(None, &[], &mut out).expect("accept");
            black_box((n, &out));
        });
    });

    // tungstenite: Request::try_parse (httparse + http::Request with a HeaderMap),
    // create_response (checks + accept key) and write_response into a reused Vec.
    g.bench_function("tungstenite", |b| {
        use tungstenite::handshake::machine::TryParse;
        use tungstenite::handshake::server::{create_response, write_response, Request};
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            let (n, r) = Request::try_parse(black_box(req)).expect("valid").expect("complete");
            let resp = create_response(&r).expect("accept");
            out.clear();
            write_response(&mut out, &resp).expect("write");
            black_box((n, &out));
        });
    });

    // The floor: httparse alone, no checks, no answer.
    g.bench_function("httparse", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut headers);
            let n = r.parse(black_box(req)).expect("valid");
            black_box((n.is_complete(), r.headers.len()));
        });
    });

    // The accept key alone (SHA-1 + base64), which every implementation computes.
    g.bench_function("accept_key", |b| {
        b.iter(|| {
            black_box(ringwire_frame::handshake::accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
        });
    });
    g.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
