//! Encode and decode throughput of the ~1 KB sample event in each format,
//! through `ringwire-codec`'s [`Codec`] trait, bare and inside an
//! [`Envelope`]. Reproduces the serialization table of a published Go
//! WebSocket guide; results and method are in docs/CODEC.md.
//!
//! Run: `cargo bench -p ringwire-codec --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! Throughput is in decimal MB/s (10^6 bytes) of *encoded* bytes, as Go's
//! `b.SetBytes` reports, for both directions. Each benchmark runs twice: on
//! the wall clock (`event/...`) and on the thread's CPU time
//! (`cpu/event/...`), which is steadier on a shared, loaded machine.

#![allow(missing_docs)]

#[path = "support/cpu_clock.rs"]
mod cpu_clock;
mod support;

use cpu_clock::ThreadCpu;
use criterion::measurement::Measurement;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringwire_codec::{Cbor, Codec, Envelope, Json, Kind, MessageId, Protobuf};
use support::{sample_event, OrderEvent};

fn bench_format<T, C: Codec<T>, M: Measurement>(
    c: &mut Criterion<M>,
    group: &str,
    codec: C,
    value: &T,
) {
    let mut encoded = Vec::new();
    codec.encode(value, &mut encoded).expect("encode");
    // Check the round trip before timing it.
    codec.decode(&encoded).expect("decode");
    println!("{group}/{}: {} bytes", codec.format(), encoded.len());

    let mut g = c.benchmark_group(format!("{group}/{}", codec.format()));
    g.throughput(Throughput::BytesDecimal(encoded.len() as u64));
    g.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            codec.encode(black_box(value), &mut buf).expect("encode");
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| b.iter(|| codec.decode(black_box(&encoded)).expect("decode")));
    g.finish();
}

fn event<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let e = sample_event();
    let group = format!("{prefix}event");
    bench_format::<OrderEvent, _, M>(c, &group, Json, &e);
    bench_format::<OrderEvent, _, M>(c, &group, Cbor, &e);
    bench_format::<OrderEvent, _, M>(c, &group, Protobuf, &e);
}

fn envelope<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let group = format!("{prefix}envelope");
    let env = Envelope::new(
        MessageId::from_parts(1_764_115_200_123, 0x2f1e_3d4c_5b6a_7988_0102),
        Kind(7),
        1_764_115_200_123_456,
        sample_event(),
    );
    bench_format::<Envelope<OrderEvent>, _, M>(c, &group, Json, &env);
    bench_format::<Envelope<OrderEvent>, _, M>(c, &group, Cbor, &env);
    bench_format::<Envelope<OrderEvent>, _, M>(c, &group, Protobuf, &env);
}

fn wall(c: &mut Criterion) {
    event(c, "");
    envelope(c, "");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    event(c, "cpu/");
    envelope(c, "cpu/");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_clock;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_clock, cpu_clock);
