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
//!
//! `decode` builds the owned value (`Codec::decode`, every string a
//! `String`); `decode_borrowed` decodes the *same bytes* into the borrowed
//! twin (`BorrowCodec::decode_borrowed`, strings borrowed from the input,
//! still checked for UTF-8). Both drop the value inside the timed loop.

#![allow(missing_docs)]

#[path = "support/cpu_clock.rs"]
mod cpu_clock;
mod support;

use cpu_clock::ThreadCpu;
use criterion::measurement::Measurement;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringwire_codec::{BorrowCodec, Cbor, Codec, Envelope, Json, Kind, MessageId, Protobuf};
use support::{assert_same_event, sample_event, OrderEvent, OrderEventRef};

/// Decodes the event's bytes into the borrowed twin, checks it against the
/// owned decode once, then times it.
fn borrowed_event<C>(codec: C) -> impl Fn(&[u8], &OrderEvent) + Copy
where
    C: for<'de> BorrowCodec<'de, OrderEventRef<'de>> + Copy,
{
    move |bytes, owned| {
        let b: OrderEventRef<'_> = codec.decode_borrowed(bytes).expect("decode_borrowed");
        assert_same_event(owned, &b);
    }
}

fn borrowed_envelope<C>(codec: C) -> impl Fn(&[u8], &Envelope<OrderEvent>) + Copy
where
    C: for<'de> BorrowCodec<'de, Envelope<OrderEventRef<'de>>> + Copy,
{
    move |bytes, owned| {
        let b: Envelope<OrderEventRef<'_>> = codec.decode_borrowed(bytes).expect("decode_borrowed");
        assert_eq!((b.id, b.kind, b.timestamp_us), (owned.id, owned.kind, owned.timestamp_us));
        assert_same_event(&owned.payload, &b.payload);
    }
}

fn bench_format<T, C: Codec<T>, M: Measurement>(
    c: &mut Criterion<M>,
    group: &str,
    codec: C,
    value: &T,
    check_borrowed: impl Fn(&[u8], &T),
    decode_borrowed: impl Fn(&[u8]) -> usize,
) {
    let mut encoded = Vec::new();
    codec.encode(value, &mut encoded).expect("encode");
    // Check both decodes of the same bytes before timing them.
    let owned = codec.decode(&encoded).expect("decode");
    check_borrowed(&encoded, &owned);
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
    g.bench_function("decode_borrowed", |b| b.iter(|| decode_borrowed(black_box(&encoded))));
    g.finish();
}

fn event<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let e = sample_event();
    let group = format!("{prefix}event");
    // The timed borrowed decode returns something derived from the value so
    // that the decode cannot be optimized away; the value drops inside.
    bench_format(c, &group, Json, &e, borrowed_event(Json), |b| {
        let v: OrderEventRef<'_> = Json.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).items.len()
    });
    bench_format(c, &group, Cbor, &e, borrowed_event(Cbor), |b| {
        let v: OrderEventRef<'_> = Cbor.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).items.len()
    });
    bench_format(c, &group, Protobuf, &e, borrowed_event(Protobuf), |b| {
        let v: OrderEventRef<'_> = Protobuf.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).items.len()
    });
}

fn envelope<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let group = format!("{prefix}envelope");
    let env = Envelope::new(
        MessageId::from_parts(1_764_115_200_123, 0x2f1e_3d4c_5b6a_7988_0102),
        Kind(7),
        1_764_115_200_123_456,
        sample_event(),
    );
    bench_format(c, &group, Json, &env, borrowed_envelope(Json), |b| {
        let v: Envelope<OrderEventRef<'_>> = Json.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).payload.items.len()
    });
    bench_format(c, &group, Cbor, &env, borrowed_envelope(Cbor), |b| {
        let v: Envelope<OrderEventRef<'_>> = Cbor.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).payload.items.len()
    });
    bench_format(c, &group, Protobuf, &env, borrowed_envelope(Protobuf), |b| {
        let v: Envelope<OrderEventRef<'_>> = Protobuf.decode_borrowed(b).expect("decode_borrowed");
        black_box(&v).payload.items.len()
    });
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
