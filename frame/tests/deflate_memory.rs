#![allow(missing_docs)]
//! What permessage-deflate costs a connection in heap, counted with dhat's global
//! allocator (so this file holds one test only: other tests' threads would count too).
//! Shared mode: once the thread's contexts exist, a connection that compressed and
//! inflated a message holds nothing when idle. Dedicated mode (context takeover): the
//! connection keeps its contexts; the figures for windows 15 and 11 are printed and
//! bounded (docs/COMPRESSION.md quotes them).

use std::time::Instant;

use ringwire_frame::{Config, Connection, DeflateConfig, DeflateParams, Event, Message};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn held() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

fn text() -> String {
    (0..40)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"symbol\":\"ETH-USD\",\"price\":{}.5,\"side\":\"buy\"}}",
                3000 + i
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A server connection after one compressed message in and one out, idle again: the
/// heap it holds, in bytes.
fn server_holds(deflate: Option<DeflateConfig>, params: Option<DeflateParams>) -> u64 {
    let config = Config::default().deflate(deflate);
    let now = Instant::now();
    // The client's compressed message, made before counting.
    let mut client = Connection::client_seeded(config.clone(), 3, now);
    if let Some(p) = params {
        client.set_deflate(p);
    }
    client.send_text(&text()).unwrap();
    let mut wire = Vec::new();
    client.poll_transmit_into(&mut wire);
    drop(client);

    let before = held();
    let mut server = Connection::server(config, now);
    if let Some(p) = params {
        server.set_deflate(p);
    }
    server.handle_bytes(now, &wire);
    while let Some(ev) = server.poll_event() {
        if let Event::Message(m) = ev {
            assert_eq!(m.as_bytes(), text().as_bytes());
            server.send(Message::text(text())).unwrap();
        }
    }
    let mut out = Vec::new();
    server.poll_transmit_into(&mut out);
    drop(out);
    let n = held() - before;
    drop(server);
    n
}

#[test]
fn what_a_connection_holds_in_each_mode() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let shared = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    // The first connection of the thread makes the thread's spare buffers, and with
    // deflate its shared contexts; after that, what an idle connection leaves is the
    // same with shared deflate as without.
    let plain = [server_holds(None, None), server_holds(None, None)];
    let first = server_holds(Some(DeflateConfig::default()), Some(shared));
    let second = server_holds(Some(DeflateConfig::default()), Some(shared));
    eprintln!(
        "without deflate: {plain:?} B; shared: the thread's first connection left {first} B \
         (the thread's contexts), the next {second} B"
    );
    assert_eq!(second, plain[1], "a shared-mode connection holds no more than a plain one");
    assert!(first > 16 << 10, "the thread's contexts: {first} B");

    let mut figures = Vec::new();
    for window in [15, 11] {
        let params = DeflateParams {
            server_max_window_bits: window,
            client_max_window_bits: window,
            ..DeflateParams::default()
        };
        let cfg = DeflateConfig::default().context_takeover(true).window_bits(window);
        let n = server_holds(Some(cfg), Some(params));
        eprintln!("dedicated, window {window}: {n} B held by an idle connection");
        figures.push(n);
    }
    assert!(figures[0] > 64 << 10, "window 15 keeps its contexts: {} B", figures[0]);
    // The compressor's hash table and pending buffer do not shrink with the window: a
    // window of 11 saves about a quarter.
    assert!(figures[1] < figures[0] * 4 / 5, "a smaller window saves: {figures:?}");
    assert!(figures[0] < 1 << 20, "{} B", figures[0]);
}
