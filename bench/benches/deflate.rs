//! permessage-deflate CPU per message, through the protocol core's real paths: a server
//! connection compressing and framing a message (`send` + `poll_transmit`), and a client
//! connection taking the compressed frame apart and inflating it (`handle_bytes` +
//! `poll_event`), for a stream of realistic JSON market-data messages, in the shared
//! mode (each message on its own, the thread's contexts) and the dedicated one (context
//! takeover), against the same messages uncompressed. The compression ratio of each
//! stream is printed once (wire bytes / message bytes).
// criterion's macros generate undocumented public items; nothing here is a library API.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringwire_frame::{Config, Connection, DeflateConfig, DeflateParams, Event, Message};

/// `n` JSON messages like a trade feed's: the same keys, changing numbers (a
/// deterministic xorshift, so every run sees the same stream), `per` records each.
fn stream(n: usize, per: usize) -> Vec<String> {
    let mut x = 0x2545_f491_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let symbols = ["BTC-USD", "ETH-USD", "SOL-EUR", "ADA-USDT", "XRP-BTC"];
    (0..n)
        .map(|i| {
            let records: Vec<String> = (0..per)
                .map(|k| {
                    let r = next();
                    format!(
                        "{{\"type\":\"trade\",\"id\":{},\"symbol\":\"{}\",\"price\":{}.{:02},\"size\":0.{:04},\"side\":\"{}\",\"ts\":{}}}",
                        1_000_000 + i * per + k,
                        symbols[(r % 5) as usize],
                        40_000 + r % 2_000,
                        (r >> 11) % 100,
                        (r >> 17) % 10_000,
                        if r & 1 == 0 { "buy" } else { "sell" },
                        1_733_560_000_000u64 + (i * per + k) as u64 * 7
                    )
                })
                .collect();
            if per == 1 {
                records[0].clone()
            } else {
                format!("[{}]", records.join(","))
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Shared,
    Takeover,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Shared => "shared",
            Mode::Takeover => "takeover",
        }
    }

    fn pair(self) -> (Connection, Connection) {
        let now = Instant::now();
        let (cfg, params) = match self {
            Mode::Plain => (None, None),
            Mode::Shared => (
                Some(DeflateConfig::default()),
                Some(DeflateParams {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    ..DeflateParams::default()
                }),
            ),
            Mode::Takeover => (
                Some(DeflateConfig::default().context_takeover(true)),
                Some(DeflateParams::default()),
            ),
        };
        let config = Config::default().deflate(cfg);
        let mut server = Connection::server(config.clone(), now);
        let mut client = Connection::client_seeded(config, 7, now);
        if let Some(p) = params {
            server.set_deflate(p);
            client.set_deflate(p);
        }
        (server, client)
    }
}

fn bench(c: &mut Criterion) {
    // One trade (~110 B: under the default 128-byte threshold, sent as it is), four
    // (~450 B) and twenty-four (~2.7 KiB) per message.
    let streams =
        [("1-trade", stream(256, 1)), ("4-trades", stream(256, 4)), ("24-trades", stream(256, 24))];
    let mut wire = Vec::with_capacity(1 << 20);
    for (label, msgs) in &streams {
        let raw: usize = msgs.iter().map(String::len).sum();
        let mut g = c.benchmark_group(format!("deflate/{label}"));
        g.throughput(Throughput::Elements(1));
        for mode in [Mode::Plain, Mode::Shared, Mode::Takeover] {
            // The ratio over the whole stream, through the real connection.
            let (mut server, mut client) = mode.pair();
            wire.clear();
            for m in msgs {
                server.send(Message::text(m.clone())).unwrap();
                server.poll_transmit_into(&mut wire);
            }
            eprintln!(
                "deflate/{label}/{}: {} messages of {} B on average, {raw} bytes -> {} on the wire ({:.3})",
                mode.name(),
                msgs.len(),
                raw / msgs.len(),
                wire.len(),
                wire.len() as f64 / raw as f64
            );
            client.handle_bytes(Instant::now(), &wire);
            let mut got = 0;
            while let Some(ev) = client.poll_event() {
                if let Event::Message(_) = ev {
                    got += 1;
                }
            }
            assert_eq!(got, msgs.len(), "the stream round-trips");

            // Compress and frame one message (the server's send path).
            let (mut server, _) = mode.pair();
            let mut i = 0;
            g.bench_function(BenchmarkId::new("send", mode.name()), |b| {
                b.iter(|| {
                    server.send(Message::text(msgs[i % msgs.len()].clone())).unwrap();
                    wire.clear();
                    server.poll_transmit_into(&mut wire);
                    i += 1;
                    black_box(wire.len())
                })
            });

            // Take one compressed frame apart and inflate it (the receive path). With
            // takeover every frame depends on the ones before, so the client reads the
            // server's frames in the order it made them, the stream over and over (a
            // fresh pair per pass).
            let (mut server, _) = mode.pair();
            let frames: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| {
                    server.send(Message::text(m.clone())).unwrap();
                    let mut f = Vec::new();
                    server.poll_transmit_into(&mut f);
                    f
                })
                .collect();
            let (_, mut client) = mode.pair();
            let mut i = 0;
            g.bench_function(BenchmarkId::new("receive", mode.name()), |b| {
                b.iter(|| {
                    if i == frames.len() {
                        i = 0;
                        client = mode.pair().1;
                    }
                    client.handle_bytes(Instant::now(), &frames[i]);
                    i += 1;
                    match client.poll_event() {
                        Some(Event::Message(m)) => black_box(m.len()),
                        other => panic!("{other:?}"),
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
