//! ringwire's TLS 1.3 record layer in memory (no sockets): one 32-byte message sealed by
//! a client session and opened by a server session, with the expanded keys kept, and
//! the same after both sessions rested their keys (`TlsSession::rest`, what an idle
//! connection does): the difference is what waking an idle connection's keys costs
//! (the client's send key and the server's receive key made again from their secrets).
// criterion's macros generate undocumented public items; nothing here is a library API.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ringwire::tls::{TlsClientConfig, TlsServerConfig, TlsSession};

/// Moves `from`'s ciphertext into `to`; returns the plaintext `to` got.
fn pump(from: &mut TlsSession, to: &mut TlsSession) -> Vec<u8> {
    let mut wire: Vec<u8> = from.out.drain(..).flat_map(|b| b.to_vec()).collect();
    if wire.is_empty() {
        return Vec::new();
    }
    to.receive(&mut wire).expect("records open").1
}

/// A client and a server session after their handshake, on their own records.
fn pair() -> (TlsSession, TlsSession) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let server = TlsServerConfig::from_der(vec![cert.der().clone()], key_der).unwrap();
    let mut c = TlsClientConfig::insecure().session("localhost").unwrap();
    let mut s = server.session().unwrap();
    for _ in 0..6 {
        pump(&mut c, &mut s);
        pump(&mut s, &mut c);
    }
    // The server's first data ends the client's ticket state.
    s.encrypt(&[Bytes::from_static(b"hi")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut s, &mut c), b"hi");
    assert!(c.on_own_records() && s.on_own_records());
    (c, s)
}

fn records(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("tls13_record_32B");
    let msg = [Bytes::from_static(&[7u8; 32])];
    let (mut c, mut s) = pair();
    let mut scratch = Vec::new();
    g.bench_function("keys_kept", |b| {
        b.iter(|| {
            c.encrypt(black_box(&msg), &mut scratch).unwrap();
            black_box(pump(&mut c, &mut s));
        });
    });
    g.bench_function("keys_rested", |b| {
        b.iter(|| {
            c.rest();
            s.rest();
            c.encrypt(black_box(&msg), &mut scratch).unwrap();
            black_box(pump(&mut c, &mut s));
        });
    });
    g.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
