#![allow(missing_docs)]
//! The admin dashboard in a real browser: headless Chromium loads `GET /` of the admin
//! listener while a load runs; the page's figures must move, and agree with
//! `Server::stats()` within what one second of updates allows. A screenshot of the page
//! under load is written to `$CARGO_TARGET_TMPDIR/dashboard.png`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::browser::{chromium, Browser};
use common::*;
use ringwire::BackendChoice;

/// Echo clients while the page is watched.
const CLIENTS: usize = 6;
/// Topics and their subscribers.
const TOPICS: [(&str, usize); 3] = [("prices.eu", 5), ("prices.us", 3), ("chat.lobby", 1)];
/// Every connection the load holds: the echo clients, the subscribers, the publisher.
fn held() -> u64 {
    (CLIENTS + TOPICS.iter().map(|t| t.1).sum::<usize>() + 1) as u64
}

/// The next data frame, answering pings on the way.
fn next_data(c: &mut RawClient) -> RawFrame {
    loop {
        let f = c.read_frame().expect("a frame from the server");
        if f.opcode == OP_PING {
            c.send(true, OP_PONG, &f.payload);
        } else {
            return f;
        }
    }
}

/// The load the page watches, until `stop`: echo clients that also have the server
/// ping them now and then (heartbeat RTTs), subscribers of a few topics and a publisher
/// (the busiest topics).
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for i in 0..CLIENTS {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = RawClient::open(addr);
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                if k.is_multiple_of(50) {
                    c.send(true, OP_TEXT, b"ping");
                }
                let m = format!("client {i} message {k}");
                c.send(true, OP_BINARY, m.as_bytes());
                assert_eq!(next_data(&mut c).payload, m.as_bytes());
                std::thread::sleep(Duration::from_millis(2));
            }
            c.send_close(1000);
        }));
    }
    for (topic, subscribers) in TOPICS {
        for _ in 0..subscribers {
            threads.push(std::thread::spawn(move || {
                let mut c = RawClient::open(addr);
                c.send(true, OP_TEXT, format!("sub:{topic}").as_bytes());
                assert_eq!(next_data(&mut c).payload, b"ok");
                while next_data(&mut c).payload != b"bye" {}
                c.send_close(1000);
            }));
        }
    }
    threads.push(std::thread::spawn(move || {
        let mut c = RawClient::open(addr);
        let mut k = 0u64;
        while !stop.load(Ordering::Relaxed) {
            k += 1;
            for (n, (topic, _)) in TOPICS.iter().enumerate() {
                // prices.eu every 5 ms, prices.us every 10, chat.lobby every 15.
                if k.is_multiple_of(n as u64 + 1) {
                    c.send(true, OP_TEXT, format!("pub:{topic}:tick {k}").as_bytes());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (topic, _) in TOPICS {
            c.send(true, OP_TEXT, format!("pub:{topic}:bye").as_bytes());
        }
        c.send_close(1000);
    }));
    threads
}

/// Connections that open and close again with a few codes (the close-code table).
fn closer(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let codes = [1000, 1001, 4000, 1000, 1000];
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut c = RawClient::open(addr);
            c.send_close(codes[k % codes.len()]);
            c.expect_close();
            k += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

/// A number as the page writes it ("12,345").
fn number(s: &str) -> u64 {
    s.replace(',', "").trim().parse().unwrap_or_else(|_| panic!("not a whole number: {s:?}"))
}

#[test]
fn the_dashboard_shows_the_engine_live() {
    let Some(bin) = chromium() else { return };
    let b = builder(BackendChoice::Auto).admin("127.0.0.1:0".parse().unwrap());
    let (server, _rx) = start_probe(b);
    let admin = server.admin_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(server.local_addr(), stop.clone());
    assert!(wait_until(PATIENCE, || server.stats().connections == held()));

    // What the server counted, sampled, to compare with what the page shows.
    let samples: Mutex<Vec<(Instant, u64)>> = Mutex::default();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                samples.lock().unwrap().push((Instant::now(), server.stats().messages_in));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        watch(&bin, admin, &server, &samples, &stop);
        stop.store(true, Ordering::Relaxed);
    });
    for c in clients {
        c.join().unwrap();
    }
    server.shutdown().unwrap();
}

/// The browser's part: load the page, read its figures, take the screenshot.
fn watch(
    bin: &PathBuf,
    admin: SocketAddr,
    server: &ringwire::Server,
    samples: &Mutex<Vec<(Instant, u64)>>,
    stop: &Arc<AtomicBool>,
) {
    let browser = Browser::launch(bin);
    let mut page = browser.open(&format!("http://{admin}/"));
    assert!(
        wait_until(Duration::from_secs(20), || page.text("status").as_deref() == Some("ready")),
        "the page never connected its stream: status {:?}",
        page.text("status")
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            page.text("connections").as_deref() == Some(&held().to_string())
        }),
        "connections on the page: {:?}, the server: {}",
        page.text("connections"),
        server.stats().connections
    );
    let closes = closer(server.local_addr(), stop.clone());
    // A reading: the server's total just before the page is read, the page's figure, and
    // the server's total just after (the page cannot show more than the server had then).
    let read = |page: &mut common::browser::Page| {
        let at = Instant::now();
        let shown = number(&page.text("messages-in-total").unwrap());
        (at, shown, server.stats().messages_in)
    };
    let (t1, first, after1) = read(&mut page);
    std::thread::sleep(Duration::from_millis(2500));
    let (t2, second, after2) = read(&mut page);
    assert!(second > first, "the page's total did not move: {first} then {second}");
    // Each figure the page shows is the server's at most ~1 s (one update) before it
    // was read, plus the page's own delay: within [server 3 s before, server after].
    for (at, shown, after) in [(t1, first, after1), (t2, second, after2)] {
        let s = samples.lock().unwrap();
        let before =
            s.iter().rev().find(|(t, _)| *t + Duration::from_secs(3) <= at).map_or(0, |x| x.1);
        assert!(
            (before..=after).contains(&shown),
            "the page shows {shown} messages in; the server had {before} 3 s before and {after} after"
        );
    }
    // Every tile filled in and every chart drawn, and no script error on the way.
    for (id, want) in [("backpressure", "0 / 0"), ("failures", "0 / 0 / 0"), ("clients", "0 / 0")] {
        assert_eq!(page.text(id).as_deref(), Some(want), "#{id}");
    }
    let rtt = page.text("rtt").unwrap();
    assert!(rtt.contains("s / ") && number(&page.text("rtt-count").unwrap()) > 0, "RTT {rtt:?}");
    let cell = |page: &mut common::browser::Page, table: &str| {
        let js = format!("document.querySelector('#{table} tr td').textContent");
        page.eval(&js).as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(cell(&mut page, "topics"), "prices.eu", "the busiest topic first");
    assert_eq!(cell(&mut page, "closes"), "1000", "the most frequent close code first");
    for chart in ["chart-conns", "chart-rate", "chart-rtt"] {
        assert!(page.canvas_ink(chart) > 1000, "{chart} is blank");
    }
    assert!(page.exceptions.is_empty(), "the page's scripts threw: {:?}", page.exceptions);
    let rate = page.text("rate-in").unwrap();
    assert!(rate != "–" && rate != "0", "messages per second on the page: {rate:?}");
    let workers = page.text("engine").unwrap();
    assert!(workers.ends_with("2 workers"), "{workers}");
    // A longer look for the documentation's screenshot: DASHBOARD_HOLD_S=60.
    let hold: u64 =
        std::env::var("DASHBOARD_HOLD_S").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(hold));
    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
    stop.store(true, Ordering::Relaxed);
    closes.join().unwrap();
}
