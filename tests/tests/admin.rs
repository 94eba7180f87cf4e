#![allow(missing_docs)]
//! The admin listener (`EngineConfig::admin`, `ringwire serve --admin`): `/metrics` in
//! the Prometheus and OpenMetrics text formats agrees with `Server::stats()` after real
//! traffic; `/healthz` and `/readyz`, readiness going to 503 while a shutdown drains;
//! the dashboard's `/stream` (JSON once a second, same-origin only, closed with 1001 at
//! shutdown); bad requests get their status; off by default. The dashboard page in a
//! real browser: browser_dashboard.rs.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ringwire::BackendChoice;

/// GET (or `method`) `path` on the admin listener; returns (status line, head, body).
fn admin_get(addr: SocketAddr, method: &str, path: &str, accept: &str) -> (String, String, String) {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{accept}\r\n");
    let all = http_exchange(addr, req.as_bytes());
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head.to_owned(), body.to_owned())
}

/// The sum over every sample of `name` whose labels contain all of `with`.
fn sample_sum(body: &str, name: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric != name || !with.iter().all(|w| labels.contains(w)) {
            continue;
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        *found.get_or_insert(0.0) += v;
    }
    found
}

fn metrics_agree_with_stats(backend: BackendChoice) {
    let b = builder(backend).admin("127.0.0.1:0".parse().unwrap());
    let (server, rx) = start_probe(b);
    let admin = server.admin_addr().expect("an admin listener was asked for");
    let addr = server.local_addr();

    // Traffic: three echoed messages and a heartbeat answered, a close by the client
    // (1000), a refused upgrade (405).
    let (mut c, handle) = RawClient::open_probed(addr, &rx);
    for i in 0..3u8 {
        c.send(true, OP_BINARY, &[i; 10]);
        assert_eq!(c.expect_data().payload, vec![i; 10]);
    }
    c.send(true, OP_TEXT, b"ping");
    let ping = c.read_frame().expect("the handler's ping");
    assert_eq!(ping.opcode, OP_PING);
    c.send(true, OP_PONG, &ping.payload);
    assert!(expect_pong(&rx, "the pong to the handler's ping").is_some(), "an RTT");
    c.send_close(1000);
    c.expect_close();
    expect_closed(&rx, handle.id());
    let refused = http_exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
    assert!(wait_until(PATIENCE, || {
        let s = server.stats();
        s.connections == 0 && s.handshake_failures == 1
    }));
    let stats = server.stats();

    let (status, head, body) = admin_get(admin, "GET", "/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let sum = |name: &str, with: &[&str]| sample_sum(&body, name, with);
    assert_eq!(sum("ringwire_messages_in_total", &[]), Some(stats.messages_in as f64), "{body}");
    assert_eq!(stats.messages_in, 4, "three binary messages and the text 'ping'");
    assert_eq!(sum("ringwire_messages_out_total", &[]), Some(stats.messages_out as f64));
    assert_eq!(sum("ringwire_bytes_in_total", &[]), Some(stats.bytes_in as f64));
    assert_eq!(sum("ringwire_accepted_total", &[]), Some(2.0));
    assert_eq!(sum("ringwire_connections", &[]), Some(0.0));
    assert_eq!(sum("ringwire_worker_up", &[]), Some(2.0), "two workers up");
    assert_eq!(sum("ringwire_worker_up", &["worker=\"1\""]), Some(1.0));
    assert_eq!(sum("ringwire_closes_by_code_total", &["code=\"1000\""]), Some(1.0));
    assert_eq!(sum("ringwire_closes_by_cause_total", &["cause=\"peer\""]), Some(1.0));
    assert_eq!(sum("ringwire_closes_by_cause_total", &["cause=\"heartbeat_timeout\""]), Some(0.0));
    assert_eq!(sum("ringwire_handshake_failures_total", &[]), Some(1.0));
    assert_eq!(sum("ringwire_handshake_refusals_total", &["status=\"405\""]), Some(1.0));
    assert_eq!(stats.handshake_failures_by_status, vec![(Some(405), 1)]);
    assert_eq!(stats.rtt.count(), 1, "the answered ping: {:?}", stats.rtt);
    assert_eq!(sum("ringwire_heartbeat_rtt_seconds_count", &[]), Some(1.0));
    assert_eq!(sum("ringwire_heartbeat_rtt_seconds_bucket", &["le=\"+Inf\""]), Some(1.0));
    let rtt = sum("ringwire_heartbeat_rtt_seconds_sum", &[]).unwrap();
    assert!(rtt > 0.0 && rtt < 5.0, "an RTT in seconds: {rtt}");
    let uring = backend == BackendChoice::IoUring;
    let subs = sum("ringwire_uring_submissions_total", &[]).unwrap();
    assert_eq!(subs > 0.0, uring, "submissions {subs} on {backend:?}");
    // The receive buffers are sampled once a second while scraped: the next scrape has
    // them.
    let sampled = wait_until(PATIENCE, || {
        let b = admin_get(admin, "GET", "/metrics", "").2;
        sample_sum(&b, "ringwire_recv_buffers", &[]).unwrap() > 0.0
    });
    assert_eq!(sampled, uring, "receive buffers on {backend:?}");
    let name = if uring { "io_uring" } else { "epoll" };
    assert!(body.contains(&format!("backend=\"{name}\"")), "the engine's info: {body}");
    // Every sample line is `name{labels} value` with a name the format allows.
    for line in body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name: String = line.chars().take_while(|c| *c != '{' && *c != ' ').collect();
        assert!(
            name.starts_with("ringwire_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
    }

    // OpenMetrics when asked for, ending with its EOF marker.
    let (status, head, body) =
        admin_get(admin, "GET", "/metrics", "Accept: application/openmetrics-text\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(sample_sum(&body, "ringwire_messages_in_total", &[]), Some(4.0));

    // Liveness, readiness, and what is not there.
    assert_eq!(admin_get(admin, "GET", "/healthz", "").0, "HTTP/1.1 200 OK");
    assert_eq!(admin_get(admin, "GET", "/readyz", "").0, "HTTP/1.1 200 OK");
    let (status, head, body) = admin_get(admin, "GET", "/", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Type: text/html") && body.contains("<title>ringwire</title>"));
    assert_eq!(admin_get(admin, "GET", "/nope", "").0, "HTTP/1.1 404 Not Found");
    let (status, head, _) = admin_get(admin, "POST", "/metrics", "");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    let (status, head, body) = admin_get(admin, "HEAD", "/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(head.contains("Content-Length: ") && body.is_empty(), "{head}");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert!(http_exchange(admin, huge.as_bytes()).starts_with("HTTP/1.1 431"));
    assert!(http_exchange(admin, b"\x16\x03\x01 tls?\r\n\r\n").starts_with("HTTP/1.1 400"));
    server.shutdown().unwrap();
    assert!(std::net::TcpStream::connect(admin).is_err(), "the admin listener is gone");
}

fn readiness_goes_while_draining(backend: BackendChoice) {
    let b = builder(backend)
        .admin("127.0.0.1:0".parse().unwrap())
        .shutdown_timeout(Duration::from_secs(3));
    let (server, rx) = start_probe(b);
    let admin = server.admin_addr().unwrap();
    assert_eq!(admin_get(admin, "GET", "/readyz", "").0, "HTTP/1.1 200 OK");
    // A peer that never answers the close keeps the drain going.
    let (mut c, _) = RawClient::open_probed(server.local_addr(), &rx);
    let stopping = std::thread::spawn(move || server.shutdown());
    let close = c.expect_close();
    assert_eq!(close.close_code(), 1001, "going away");
    let (status, _, body) = admin_get(admin, "GET", "/readyz", "");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 503 Service Unavailable", "draining\n")
    );
    assert_eq!(
        admin_get(admin, "GET", "/healthz", "").0,
        "HTTP/1.1 200 OK",
        "alive while it drains"
    );
    // The answer lets the drain end.
    c.send_close(1001);
    stopping.join().unwrap().unwrap();
}

fn stream_sends_the_figures(backend: BackendChoice) {
    use tungstenite::client::IntoClientRequest;
    let b = builder(backend).admin("127.0.0.1:0".parse().unwrap());
    let (server, rx) = start_probe(b);
    let admin = server.admin_addr().unwrap();
    let (mut c, _) = RawClient::open_probed(server.local_addr(), &rx);
    c.send(true, OP_TEXT, b"sub:news \"today\"");
    assert_eq!(c.expect_data().payload, b"ok");

    let url = format!("ws://{admin}/stream");
    let (mut ws, _) = tungstenite::connect(url.as_str()).expect("the stream upgrades");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    let mut next = || -> serde_json::Value {
        let m = ws.read().expect("a message a second");
        serde_json::from_str(m.to_text().expect("text")).expect("JSON")
    };
    let first = next();
    let mut last = next();
    let gap = last["t"].as_u64().unwrap() - first["t"].as_u64().unwrap();
    assert!((500..=2500).contains(&gap), "{gap} ms between two messages");
    assert_eq!(last["workers"].as_array().unwrap().len(), 2);
    let sum = |v: &serde_json::Value, f: &str| -> u64 {
        v["workers"].as_array().unwrap().iter().map(|w| w[f].as_u64().unwrap()).sum()
    };
    assert_eq!(sum(&last, "connections"), 1);
    assert_eq!(sum(&last, "messages_in"), server.stats().messages_in);
    assert_eq!(last["ready"], true);
    let name = if backend == BackendChoice::IoUring { "io_uring" } else { "epoll" };
    assert_eq!(last["backend"], name);
    // The workers report their busiest topics once a dashboard watches (name escaped).
    for _ in 0..3 {
        if last["topics"].as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
        last = next();
    }
    assert_eq!(last["topics"], serde_json::json!([["news \"today\"", 1, 0]]));

    // Only the listener's own pages may read it.
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("Origin", "http://evil.example".parse().unwrap());
    match tungstenite::connect(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("a cross-origin stream was not refused: {other:?}"),
    }
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("Origin", format!("http://{admin}").parse().unwrap());
    let (mut same, _) = tungstenite::connect(req).expect("the page's own origin streams");
    let _ = same.close(None);

    // A shutdown ends the stream with 1001.
    c.send_close(1000);
    c.expect_close();
    let stopping = std::thread::spawn(move || server.shutdown());
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1001);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("the stream ended without a close frame: {e}"),
        }
    }
    stopping.join().unwrap().unwrap();
}

both_backends! {
    stream_sends_the_figures => stream_sends_the_figures_io_uring, stream_sends_the_figures_epoll;
    metrics_agree_with_stats => metrics_agree_with_stats_io_uring, metrics_agree_with_stats_epoll;
    readiness_goes_while_draining => readiness_goes_while_draining_io_uring, readiness_goes_while_draining_epoll;
}

#[test]
fn the_send_queue_is_sampled_while_scraped() {
    let b = builder(BackendChoice::Auto)
        .admin("127.0.0.1:0".parse().unwrap())
        .max_queued_bytes(1 << 20)
        .backpressure(ringwire::Backpressure::DropNewest);
    let (server, rx) = start_probe(b);
    let admin = server.admin_addr().unwrap();
    // A peer that stops reading while the server keeps sending to it: the kernel's
    // socket buffers fill (several MiB on loopback), then the engine's queue (the rest
    // dropped, drop-newest). Each round offers 4 MiB.
    let (mut c, _) = RawClient::open_probed(server.local_addr(), &rx);
    for _ in 0..16 {
        c.send(true, OP_TEXT, b"flood:64:65536");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let queued = |body: &str| sample_sum(body, "ringwire_send_queue_bytes", &[]).unwrap();
    assert_eq!(server.stats().send_queue_bytes, 0, "no walk before anyone looks");
    let mut body = String::new();
    let seen = wait_until(PATIENCE, || {
        body = admin_get(admin, "GET", "/metrics", "").2;
        queued(&body) > 0.0
    });
    assert!(seen, "the queue never showed: {body}");
    // Never above the limit plus one message (the drop-newest policy's bound); how much
    // the kernel's socket buffers took first depends on the machine.
    let q = queued(&body);
    assert!(q <= (1 << 20) as f64 + 65536.0 + 1024.0, "{q} bytes queued");
    let over = sample_sum(&body, "ringwire_backpressured", &[]).unwrap();
    assert!(over <= 1.0, "{over} connections over the limit");
    assert_eq!(server.stats().send_queue_bytes, q as u64);
    drop(c);
}

#[test]
fn no_admin_listener_unless_asked() {
    let (server, _rx) = start_probe(builder(BackendChoice::Auto));
    assert_eq!(server.admin_addr(), None);
}

#[test]
fn slow_admin_clients_do_not_block_others() {
    let b = builder(BackendChoice::Auto).admin("127.0.0.1:0".parse().unwrap());
    let (server, _rx) = start_probe(b);
    let admin = server.admin_addr().unwrap();
    // Connections that send nothing (or half a request) hold a thread each until their
    // deadline, not the listener.
    let mut idle: Vec<_> = (0..4).map(|_| connect(admin)).collect();
    idle[0].write_all(b"GET /met").unwrap();
    assert_eq!(admin_get(admin, "GET", "/healthz", "").0, "HTTP/1.1 200 OK");
    // Past the cap, a connection is answered 503 at once.
    let mut more: Vec<_> = (0..20).map(|_| connect(admin)).collect();
    let mut busy = 0;
    for s in &mut more {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 12];
        if s.read_exact(&mut b).is_ok() && &b == b"HTTP/1.1 503" {
            busy += 1;
        }
    }
    assert!(busy >= 4, "{busy} of 20 past the cap of 16 answered busy");
    drop((idle, more));
}
