#![allow(missing_docs)]
//! Hostile clients on raw sockets, on both backends: each gets the RFC answer (an HTTP
//! error status or a close code) and the connection ends, while a well-behaved client
//! connected beside them keeps working.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ringwire::frame::handshake::HandshakeLimits;
use ringwire::frame::Config as FrameConfig;
use ringwire::{BackendChoice, Echo};

const MAX_HEADER_BYTES: usize = 2048;
const MAX_FRAME: usize = 64 * 1024;

fn hostile_server(backend: BackendChoice) -> Guarded {
    builder(backend)
        .handshake_timeout(Duration::from_millis(300))
        .handshake_limits(HandshakeLimits::default().max_header_bytes(MAX_HEADER_BYTES))
        .frame(FrameConfig::default().max_frame_size(MAX_FRAME).max_message_size(4 * MAX_FRAME))
        .start(|_| Echo)
        .expect("engine starts")
        .guarded()
}

/// A well-behaved client beside the hostile ones, checked before and after.
fn good_client(addr: SocketAddr) -> RawClient {
    let mut c = RawClient::open(addr);
    c.echo("good client: before");
    c
}

fn good_client_still_fine(mut c: RawClient) {
    c.echo("good client: after");
    c.send(true, OP_BINARY, &vec![9; MAX_FRAME]);
    assert_eq!(c.expect_data().payload.len(), MAX_FRAME);
    c.close_handshake(1000);
}

fn slowloris_handshake_times_out(backend: BackendChoice) {
    let server = hostile_server(backend);
    let addr = server.local_addr();
    let good = good_client(addr);

    // Half a request line, then nothing.
    let started = Instant::now();
    let mut half = connect(addr);
    half.write_all(b"GET / HT").unwrap();
    let (answer, _) = read_to_end_within(&mut half, PATIENCE);
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 4"),
        "unexpected answer to a stalled handshake: {answer:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the timeout");

    // A trickle: one header byte every 20 ms keeps it busy but never completes. The
    // deadline runs from the accept, so activity must not extend it.
    let mut trickle = connect(addr);
    let mut writer = trickle.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let head = "GET /slow HTTP/1.1\r\n".bytes();
        let mut sent = 0;
        for b in head.chain(b"X-Slow: 1\r\n".iter().copied().cycle()).take(500) {
            if writer.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    let (answer, _) = read_to_end_within(&mut trickle, PATIENCE);
    assert!(!String::from_utf8_lossy(&answer).contains(" 101 "), "a trickle got upgraded");
    let sent = feeder.join().unwrap();
    assert!(sent < 500, "the server never cut the trickling client off");

    assert!(server.stats().handshake_failures >= 2);
    // The upgraded client is not subject to the handshake timeout.
    good_client_still_fine(good);
    server.shutdown().unwrap();
}

fn request(lines: &[&str]) -> Vec<u8> {
    let mut r = lines.join("\r\n");
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

const GOOD_HEADERS: [&str; 5] = [
    "Host: localhost",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn with_headers(first: &str, extra: &[String], skip: &str) -> Vec<u8> {
    let mut lines = vec![first.to_owned()];
    lines.extend(
        GOOD_HEADERS
            .iter()
            .filter(|h| !h.starts_with(skip) || skip.is_empty())
            .map(|h| h.to_string()),
    );
    lines.extend(extra.iter().cloned());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    request(&refs)
}

fn status_of(answer: &str) -> u16 {
    assert!(answer.starts_with("HTTP/1.1 "), "not an HTTP response: {answer:?}");
    answer[9..12].parse().expect("status code")
}

fn bad_upgrades_get_http_errors(backend: BackendChoice) {
    let server = hostile_server(backend);
    let addr = server.local_addr();
    let good = good_client(addr);

    // Header section over max_header_bytes: 431 (RFC 6585 §5).
    let pad = format!("X-Pad: {}", "a".repeat(MAX_HEADER_BYTES * 2));
    let answer = http_exchange(addr, &with_headers("GET / HTTP/1.1", &[pad], ""));
    assert_eq!(status_of(&answer), 431, "{answer}");

    // More header lines than max_headers: 431.
    let many: Vec<String> =
        (0..HandshakeLimits::default().max_headers + 5).map(|i| format!("X{i}: v")).collect();
    let answer = http_exchange(addr, &with_headers("GET / HTTP/1.1", &many, ""));
    assert_eq!(status_of(&answer), 431, "{answer}");

    // Unsupported version: 426 naming the version we speak (RFC 6455 §4.2.2).
    let mut v8 = with_headers(
        "GET / HTTP/1.1",
        &["Sec-WebSocket-Version: 8".into()],
        "Sec-WebSocket-Version",
    );
    let answer = http_exchange(addr, &v8);
    assert_eq!(status_of(&answer), 426, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{answer}");
    v8.clear();

    // Not GET: 405 (RFC 6455 §4.2.1: the method MUST be GET).
    let answer = http_exchange(addr, &with_headers("POST / HTTP/1.1", &[], ""));
    assert_eq!(status_of(&answer), 405, "{answer}");

    // Missing key, missing Upgrade: 400.
    let answer = http_exchange(addr, &with_headers("GET / HTTP/1.1", &[], "Sec-WebSocket-Key"));
    assert_eq!(status_of(&answer), 400, "{answer}");
    let answer = http_exchange(addr, &with_headers("GET / HTTP/1.1", &[], "Upgrade"));
    assert_eq!(status_of(&answer), 400, "{answer}");

    // Garbage (a TLS ClientHello-like prefix, then a blank line): 400.
    let answer = http_exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00 garbage\r\n\r\n");
    assert_eq!(status_of(&answer), 400, "{answer}");

    // An endless header section, never finished: cut off at the limit (431, or a reset
    // if the server closed while our bytes were still arriving).
    let mut endless = connect(addr);
    let mut writer = endless.try_clone().unwrap();
    // Far more than the socket buffers on both sides can hold (a few MiB), so the
    // writes can only all succeed if the server keeps reading the header forever.
    let feeder = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET / HTTP/1.1\r\n");
        let mut line = String::new();
        for i in 0..2_000_000 {
            line.clear();
            line.push_str(&format!("X-Endless-{i}: yes\r\n"));
            if writer.write_all(line.as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    let (answer, _) = read_to_end_within(&mut endless, PATIENCE);
    if !answer.is_empty() {
        assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 431);
    }
    assert!(feeder.join().unwrap(), "the server read 2,000,000 header lines (50 MB)");

    assert!(server.stats().handshake_failures >= 8);
    good_client_still_fine(good);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    server.shutdown().unwrap();
}

/// Sends `bad` after a valid upgrade; expects close `code`, then the end of TCP.
fn bad_frame(addr: SocketAddr, bad: &[u8], code: u16, what: &str) {
    let mut c = RawClient::open(addr);
    c.echo(what);
    c.write(bad);
    c.expect_close_then_eof(code, what);
}

fn bad_frames_get_close_codes(backend: BackendChoice) {
    let server = hostile_server(backend);
    let addr = server.local_addr();
    let good = good_client(addr);

    // RFC 6455 §5.1: a server MUST close on an unmasked client frame (1002).
    bad_frame(addr, &encode_raw(0x80 | OP_TEXT, b"unmasked", false), 1002, "unmasked");
    // Reserved opcodes (§5.2): 0x3 (data) and 0xB (control).
    bad_frame(addr, &encode_raw(0x80 | 0x3, b"", true), 1002, "opcode 3");
    bad_frame(addr, &encode_raw(0x80 | 0xB, b"", true), 1002, "opcode B");
    // §5.5: control frames must not be fragmented nor exceed 125 bytes.
    bad_frame(addr, &encode_raw(OP_PING, b"frag", true), 1002, "fragmented ping");
    bad_frame(addr, &encode_raw(0x80 | OP_PING, &[0; 126], true), 1002, "long ping");
    // §5.4: a continuation with nothing to continue; a new message inside a fragmented one.
    bad_frame(addr, &encode_raw(0x80 | OP_CONT, b"x", true), 1002, "orphan continuation");
    let mut two = encode_raw(OP_TEXT, b"a", true);
    two.extend(encode_raw(0x80 | OP_TEXT, b"b", true));
    bad_frame(addr, &two, 1002, "interleaved message");
    // §7.4: close codes that must not appear on the wire.
    bad_frame(addr, &encode_raw(0x80 | OP_CLOSE, &1005u16.to_be_bytes(), true), 1002, "close 1005");
    bad_frame(addr, &encode_raw(0x80 | OP_CLOSE, &[0x03], true), 1002, "1-byte close");
    // §8.1: invalid UTF-8, whole, split across fragments, and in a close reason.
    bad_frame(addr, &encode_raw(0x80 | OP_TEXT, b"\xc0\xaf", true), 1007, "overlong UTF-8");
    let mut split = encode_raw(OP_TEXT, "ok €".as_bytes().split_last().unwrap().1, true);
    split.extend(encode_raw(0x80 | OP_CONT, b"\x41", true));
    bad_frame(addr, &split, 1007, "broken character across fragments");
    bad_frame(addr, &encode_raw(0x80 | OP_CLOSE, b"\x03\xe8\xff", true), 1007, "bad close reason");
    // A frame over max_frame_size (1009). The header alone announces 1 GiB: the server
    // must refuse it without waiting for (or reserving) the payload.
    bad_frame(addr, &encode_with_len(0x80 | OP_BINARY, &[], 1 << 30, true), 1009, "1 GiB frame");
    bad_frame(
        addr,
        &encode_raw(0x80 | OP_BINARY, &vec![0; MAX_FRAME + 1], true),
        1009,
        "frame + 1",
    );

    good_client_still_fine(good);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    let stats = server.stats();
    assert_eq!(stats.closes_with(1002), 9, "{stats:?}");
    assert_eq!(stats.closes_with(1007), 3, "{stats:?}");
    assert_eq!(stats.closes_with(1009), 2, "{stats:?}");
    server.shutdown().unwrap();
}

fn rejected_by_handler(backend: BackendChoice) {
    struct Gate;
    impl ringwire::Handler for Gate {
        fn on_open(
            &mut self,
            _cx: &mut ringwire::Ctx<'_>,
            req: &ringwire::frame::handshake::Request,
        ) -> ringwire::Upgrade {
            match req.path.as_str() {
                "/secret" => ringwire::Upgrade::Reject(403),
                "/proto" => ringwire::Upgrade::AcceptProtocol("chat".into()),
                _ => ringwire::Upgrade::Accept,
            }
        }
        fn on_message(&mut self, cx: &mut ringwire::Ctx<'_>, msg: ringwire::frame::Message) {
            let _ = cx.send(msg);
        }
    }
    let server = builder(backend).start(|_| Gate).expect("engine starts").guarded();
    let addr = server.local_addr();
    let good = good_client(addr);
    let answer = http_exchange(addr, upgrade_request("/secret").as_bytes());
    assert_eq!(status_of(&answer), 403, "{answer}");
    // A subprotocol the client offered is echoed in the 101.
    let mut s = connect(addr);
    let req = upgrade_request("/proto")
        .replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: x, chat\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let head = expect_upgraded(&mut s);
    assert!(head.to_ascii_lowercase().contains("sec-websocket-protocol: chat"), "{head}");
    drop(s);
    good_client_still_fine(good);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    assert_eq!(server.stats().rejected, 1);
    server.shutdown().unwrap();
}

both_backends! {
    slowloris_handshake_times_out => slowloris_handshake_times_out_io_uring, slowloris_handshake_times_out_epoll;
    bad_upgrades_get_http_errors => bad_upgrades_get_http_errors_io_uring, bad_upgrades_get_http_errors_epoll;
    bad_frames_get_close_codes => bad_frames_get_close_codes_io_uring, bad_frames_get_close_codes_epoll;
    rejected_by_handler => rejected_by_handler_io_uring, rejected_by_handler_epoll;
}
