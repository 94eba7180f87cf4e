//! Picks the CBOR crate: encodes and decodes the ~1 KB sample event with
//! each maintained serde-compatible CBOR crate. The result is in
//! docs/CODEC.md; `cbor4ii` is the one `ringwire-codec` uses.
//!
//! Run: `cargo bench -p ringwire-codec --bench cbor_crates`

#![allow(missing_docs)]

mod support;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use support::{sample_event, OrderEvent};

fn bench(c: &mut Criterion) {
    let event = sample_event();
    let mut g = c.benchmark_group("cbor_crates");

    let bytes = cbor4ii::serde::to_vec(Vec::new(), &event).expect("cbor4ii encode");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("cbor4ii/encode", |b| {
        let mut buf = Vec::with_capacity(2048);
        b.iter(|| {
            buf.clear();
            buf = cbor4ii::serde::to_vec(std::mem::take(&mut buf), black_box(&event))
                .expect("encode");
        })
    });
    g.bench_function("cbor4ii/decode", |b| {
        b.iter(|| {
            let e: OrderEvent = cbor4ii::serde::from_slice(black_box(&bytes)).expect("decode");
            e
        })
    });

    let mut cib = Vec::new();
    ciborium::into_writer(&event, &mut cib).expect("ciborium encode");
    g.throughput(Throughput::Bytes(cib.len() as u64));
    g.bench_function("ciborium/encode", |b| {
        let mut buf = Vec::with_capacity(2048);
        b.iter(|| {
            buf.clear();
            ciborium::into_writer(black_box(&event), &mut buf).expect("encode");
        })
    });
    g.bench_function("ciborium/decode", |b| {
        b.iter(|| {
            let e: OrderEvent = ciborium::from_reader(black_box(&cib[..])).expect("decode");
            e
        })
    });

    let mini = minicbor_serde::to_vec(&event).expect("minicbor-serde encode");
    g.throughput(Throughput::Bytes(mini.len() as u64));
    g.bench_function("minicbor-serde/encode", |b| {
        b.iter(|| minicbor_serde::to_vec(black_box(&event)).expect("encode"))
    });
    g.bench_function("minicbor-serde/decode", |b| {
        b.iter(|| {
            let e: OrderEvent = minicbor_serde::from_slice(black_box(&mini)).expect("decode");
            e
        })
    });
    g.finish();

    println!(
        "encoded sizes: cbor4ii {} B, ciborium {} B, minicbor-serde {} B",
        bytes.len(),
        cib.len(),
        mini.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
