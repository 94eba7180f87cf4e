#![allow(missing_docs)]
//! Chromium's own WebSocket stack, the client most real traffic comes from, against the
//! engine with `ringwire serve`'s message limit: text and binary echoed from 0 B to
//! 16 MiB (compared byte for byte in the page; the server's answers past 64 KiB in
//! fragments the browser puts together), a close from the browser and one from
//! the server with their codes and reasons seen on the other side, a subprotocol chosen
//! from the browser's offer, and an origin the server refuses; all of it again with
//! permessage-deflate (Chromium's own DEFLATE both ways: what crosses the wire is a
//! fraction of the bytes echoed); and wss://, with the key exchange the two TLS stacks
//! agree on. Headless Chromium is
//! driven over the DevTools protocol (tests/common/browser.rs); the test page is a
//! script evaluated in a blank tab.

mod common;

use std::sync::mpsc::{channel, Sender};

use common::browser::{chromium, Browser};
use common::*;
use ringwire::frame::handshake::Request;
use ringwire::frame::{CloseCode, Closed, Config as FrameConfig, Message};
use ringwire::{BackendChoice, Ctx, Engine, Handler, Upgrade};
use serde_json::json;

/// `ringwire serve`'s largest message.
const MAX_MESSAGE: usize = 16 << 20;
/// The server's fragments (so its 16 MiB echo is 256 frames).
const FRAGMENT: usize = 64 << 10;

/// Echoes; `close:CODE` closes with CODE; `/proto` picks `chat.v1` from the offer;
/// every close is reported.
struct Peer(Sender<(u16, String)>);

impl Handler for Peer {
    fn on_open(&mut self, _: &mut Ctx<'_>, req: &Request) -> Upgrade {
        if req.path == "/proto" {
            return match req.protocols.iter().find(|p| *p == "chat.v1") {
                Some(p) => Upgrade::AcceptProtocol(p.clone()),
                None => Upgrade::Reject(400),
            };
        }
        Upgrade::Accept
    }

    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        if let Message::Text(t) = &msg {
            if let Some(code) = t.as_str().strip_prefix("close:") {
                let code = CloseCode(code.parse().expect("close:CODE"));
                let _ = cx.close(code, "closed by the server");
                return;
            }
        }
        let _ = cx.send(msg);
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, closed: &Closed) {
        let _ = self.0.send((closed.code.0, closed.reason.clone()));
    }
}

/// The page's part; resolves to a list of `[what, ...]` results.
const SCRIPT: &str = r#"
(async (base, other) => {
  const out = [];
  const open = (url, protocols) => new Promise((resolve, reject) => {
    const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onclose = (e) => reject(new Error("closed before open: " + e.code));
  });
  const next = (ws) => new Promise((resolve, reject) => {
    ws.onmessage = (e) => resolve(e.data);
    ws.onclose = (e) => reject(new Error("closed: " + e.code));
  });
  const ended = (ws) => new Promise((resolve) => {
    ws.onclose = (e) => resolve([e.code, e.reason, e.wasClean]);
  });
  const ws = await open(base + "/echo");
  for (const n of [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]) {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = (i * 31 + 7) & 255;
    ws.send(a);
    const back = new Uint8Array(await next(ws));
    let same = back.length === n;
    for (let i = 0; same && i < n; i++) same = back[i] === a[i];
    out.push(["binary", n, same]);
    // About n bytes of UTF-8 with two-, three- and four-byte characters.
    const t = "é✓🚀".repeat(Math.floor(n / 9)) + "x".repeat(n % 9);
    ws.send(t);
    out.push(["text", n, (await next(ws)) === t]);
  }
  const byBrowser = ended(ws);
  ws.close(4001, "bye from the browser");
  out.push(["browser close", ...(await byBrowser)]);
  const ws2 = await open(base + "/echo");
  const byServer = ended(ws2);
  ws2.send("close:4002");
  out.push(["server close", ...(await byServer)]);
  const ws3 = await open(base + "/proto", ["chat.v2", "chat.v1"]);
  out.push(["protocol", ws3.protocol]);
  const done3 = ended(ws3);
  ws3.close(1000);
  await done3;
  out.push(["refused", await new Promise((resolve) => {
    const w = new WebSocket(other + "/");
    w.onopen = () => resolve("opened");
    w.onclose = (e) => resolve(e.code);
  })]);
  return out;
})
"#;

fn chromium_speaks_websocket_with_the_engine(backend: BackendChoice) {
    chromium_echo(backend, false);
}

fn chromium_speaks_deflate_with_the_engine(backend: BackendChoice) {
    chromium_echo(backend, true);
}

fn chromium_echo(backend: BackendChoice, deflate: bool) {
    let Some(bin) = chromium() else { return };
    let (tx, closes) = channel();
    // The server fragments what it sends past 64 KiB: the browser reassembles.
    let frame = FrameConfig::default()
        .max_message_size(MAX_MESSAGE)
        .fragment_size(Some(FRAGMENT))
        .deflate(deflate.then(ringwire::frame::DeflateConfig::default));
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .frame(frame)
        .start(move |_| Peer(tx.clone()))
        .expect("engine starts")
        .guarded();
    // A second engine that takes no origin a browser tab can have.
    let strict = builder(backend)
        .origin_check(|o| o == Some("https://allowed.example"))
        .start(Probe::factory(channel().0))
        .expect("engine starts")
        .guarded();

    let browser = Browser::launch(&bin);
    let mut page = browser.open("about:blank");
    let call = format!(
        "{SCRIPT}({}, {})",
        json!(format!("ws://{}", server.local_addr())),
        json!(format!("ws://{}", strict.local_addr()))
    );
    let out = page.eval(&call);
    let results = out.as_array().unwrap_or_else(|| panic!("the page's results: {out}"));
    let mut echoed = 0;
    for r in results {
        match r[0].as_str().unwrap() {
            "binary" | "text" => {
                assert_eq!(r[2], true, "{r}: not echoed byte for byte");
                echoed += 1;
            }
            "browser close" => {
                // The server answers with the code it received (RFC 6455 §5.5.1), no
                // reason; its handler saw the browser's reason (below).
                assert_eq!(*r, json!(["browser close", 4001, "", true]));
            }
            "server close" => {
                assert_eq!(*r, json!(["server close", 4002, "closed by the server", true]));
            }
            "protocol" => assert_eq!(r[1], "chat.v1", "the subprotocol the server chose"),
            "refused" => assert_eq!(r[1], 1006, "a refused upgrade is an abnormal close"),
            other => panic!("unknown result {other}"),
        }
    }
    assert_eq!(echoed, 16, "{results:?}");
    assert_eq!(results.len(), 20, "{results:?}");
    assert!(page.exceptions.is_empty(), "{:?}", page.exceptions);

    // The server's side of the closes: the browser's code and reason as sent, and the
    // server's own close answered.
    let mut seen: Vec<(u16, String)> =
        (0..3).map(|_| closes.recv_timeout(PATIENCE).expect("three closes")).collect();
    seen.sort();
    assert_eq!(seen[0], (1000, String::new()));
    assert_eq!(seen[1], (4001, "bye from the browser".to_owned()));
    assert_eq!(seen[2].0, 4002);
    assert!(wait_until(PATIENCE, || strict.stats().rejected == 1), "{:?}", strict.stats());
    assert_eq!(strict.stats().handshake_failures_by_status, vec![(Some(403), 1)]);
    assert_eq!(server.stats().connections, 0);
    let (bytes_in, bytes_out) = (server.stats().bytes_in, server.stats().bytes_out);
    if deflate {
        // The patterned payloads compress hundreds of times over, both ways.
        assert!(bytes_in < MAX_MESSAGE as u64 / 10, "{bytes_in} bytes in, compressed");
        assert!(bytes_out < MAX_MESSAGE as u64 / 10, "{bytes_out} bytes out, compressed");
    } else {
        assert!(bytes_in > 2 * MAX_MESSAGE as u64, "{bytes_in} bytes in");
    }
    drop(page);
    drop(browser);
    server.shutdown().unwrap();
    strict.shutdown().unwrap();
}

/// The page's part of the wss:// test: a text and a binary message echoed, then a close.
const WSS_SCRIPT: &str = r#"
(async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onclose = (e) => reject(new Error("closed before open: " + e.code));
  });
  const next = () => new Promise((resolve, reject) => {
    ws.onmessage = (e) => resolve(e.data);
    ws.onclose = (e) => reject(new Error("closed: " + e.code));
  });
  const out = [];
  ws.send("hello over wss");
  out.push(await next());
  const a = new Uint8Array(100000);
  for (let i = 0; i < a.length; i++) a[i] = (i * 7) & 255;
  ws.send(a);
  const b = new Uint8Array(await next());
  out.push(b.length === a.length && b.every((v, i) => v === a[i]));
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve([e.code, e.wasClean]);
  });
  ws.close(1000);
  out.push(await closed);
  return out;
})
"#;

/// Chromium's own TLS (BoringSSL) against the engine's: wss:// echo and close, and the
/// key exchange the two agreed on, as the server counts it: X25519MLKEM768, which
/// Chromium offers first, when the engine is built with `aws-lc-rs`; a classical one
/// otherwise. The test certificate is accepted with `--ignore-certificate-errors` (the
/// certificate checks are the client tests' subject, not this one's).
fn chromium_speaks_wss_with_the_engine(backend: BackendChoice) {
    let Some(bin) = chromium() else { return };
    let ca = common::tls::TestCa::new("chromium");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let tls = ringwire::tls::TlsServerConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let server =
        builder(backend).tls(tls).start(|_| ringwire::Echo).expect("engine starts").guarded();
    let browser = Browser::launch_with(&bin, &["--ignore-certificate-errors"]);
    let mut page = browser.open("about:blank");
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let out = page.eval(&format!("{WSS_SCRIPT}({})", json!(url)));
    assert_eq!(out, json!(["hello over wss", true, [1000, true]]), "{:?}", page.exceptions);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0), "{:?}", server.stats());
    let s = server.stats();
    let pq = ringwire::tls::is_post_quantum(ringwire::tls::crypto_provider().kx_groups[0].name());
    assert!(s.tls_handshakes >= 1, "{s:?}");
    let want = if pq { s.tls_handshakes } else { 0 };
    assert_eq!(s.tls_handshakes_post_quantum, want, "{s:?}");
    assert_eq!((s.tls_failures, s.tls_truncations), (0, 0), "{s:?}");
    drop(page);
    drop(browser);
    server.shutdown().unwrap();
}

both_backends! {
    chromium_speaks_wss_with_the_engine =>
        chromium_speaks_wss_with_the_engine_io_uring,
        chromium_speaks_wss_with_the_engine_epoll;
    chromium_speaks_websocket_with_the_engine =>
        chromium_speaks_websocket_with_the_engine_io_uring,
        chromium_speaks_websocket_with_the_engine_epoll;
    chromium_speaks_deflate_with_the_engine =>
        chromium_speaks_deflate_with_the_engine_io_uring,
        chromium_speaks_deflate_with_the_engine_epoll;
}
