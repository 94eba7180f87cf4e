//! `ringwire connect` end to end: the built binary against ringwire servers started in
//! this process, on loopback. Every run has a deadline; a child still running at it (or
//! when an assertion fails) is killed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringwire::frame::handshake::Request;
use ringwire::frame::{CloseCode, Message};
use ringwire::{Ctx, Echo, Engine, Handler, Server, Upgrade};

/// Longest a run may take; only catches hangs.
const DEADLINE: Duration = Duration::from_secs(20);

/// A child process that is killed and reaped when dropped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a run of the binary left.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- stdout:\n{}--- stderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Runs `ringwire connect ARGS` with `input` on stdin, closing stdin after it when
/// `eof` (else stdin stays open until the child exits by itself).
fn connect(args: &[&str], input: &str, eof: bool) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .arg("connect")
        .args(args)
        .env("RINGWIRE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut child = Reaper(child);
    let out = drain(child.0.stdout.take().unwrap());
    let err = drain(child.0.stderr.take().unwrap());
    let mut stdin = child.0.stdin.take();
    if let Some(s) = stdin.as_mut() {
        s.write_all(input.as_bytes()).unwrap();
    }
    if eof {
        drop(stdin.take());
    }
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "connect {args:?} still running after {DEADLINE:?}");
        thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    Run { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A one-worker server with `handler`, on an ephemeral loopback port.
fn server<H: Handler>(handler: impl Fn() -> H + Send + Sync + 'static) -> Server {
    server_on("127.0.0.1:0".parse().unwrap(), handler)
}

fn server_on<H: Handler>(
    addr: SocketAddr,
    handler: impl Fn() -> H + Send + Sync + 'static,
) -> Server {
    Engine::builder()
        .listen(addr)
        .workers(1)
        .pin_cpus(false)
        .start(move |_| handler())
        .expect("the server starts")
}

fn url(s: &Server) -> String {
    format!("ws://{}/", s.local_addr())
}

/// A port with nothing listening on it (bound, then released).
fn dead_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn lines_are_echoed_and_eof_closes_with_status_0() {
    let s = server(|| Echo);
    let r = connect(&[&url(&s)], "hello\nwörld\n", true);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert_eq!(r.stdout, "hello\nwörld\n", "{r:?}");
    assert!(r.stderr.contains("connected: upgrade accepted"), "{r:?}");
    s.shutdown().unwrap();
}

#[test]
fn a_refused_connect_exits_1_and_names_the_refusal() {
    let addr = dead_port();
    let r = connect(&[&format!("ws://{addr}/")], "never sent\n", true);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("connection refused"), "{r:?}");
    assert!(r.stderr.contains(&format!("could not connect to ws://{addr}/")), "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
}

#[test]
fn json_is_pretty_printed_and_other_text_left_alone() {
    let s = server(|| Echo);
    let input = "{\"z\":[1,2.50],\"a\":{}}\nnot json\n";
    let r = connect(&["--json", &url(&s)], input, true);
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    let want = "{\n  \"z\": [\n    1,\n    2.50\n  ],\n  \"a\": {}\n}\nnot json\n";
    assert_eq!(r.stdout, want, "{r:?}");
    s.shutdown().unwrap();
}

#[test]
fn binary_lines_come_back_as_hex_or_raw() {
    let s = server(|| Echo);
    let r = connect(&["--binary", &url(&s)], "hi\n\n", true);
    assert_eq!((r.status.code(), r.stdout.as_str()), (Some(0), "6869\n\n"), "{r:?}");
    let r = connect(&["-b", "--raw", &url(&s)], "hi\n", true);
    assert_eq!((r.status.code(), r.stdout.as_str()), (Some(0), "hi\n"), "{r:?}");
    s.shutdown().unwrap();
}

/// Answers the first message by closing with its code.
struct CloseWith(u16);

impl Handler for CloseWith {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let _ = cx.send(msg);
        let _ = cx.close(CloseCode(self.0), "bye");
    }
}

#[test]
fn the_servers_close_ends_the_command() {
    let s = server(|| CloseWith(1000));
    let r = connect(&[&url(&s)], "one\n", false);
    assert_eq!((r.status.code(), r.stdout.as_str()), (Some(0), "one\n"), "{r:?}");
    assert!(r.stderr.contains("the server closed the connection (1000)"), "{r:?}");
    s.shutdown().unwrap();
    let s = server(|| CloseWith(4000));
    let r = connect(&[&url(&s)], "one\n", false);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("lost: connection closed with code 4000 (\"bye\")"), "{r:?}");
    s.shutdown().unwrap();
}

/// Accepts only upgrades with the test's header, origin and subprotocol, then echoes.
struct Picky;

impl Handler for Picky {
    fn on_open(&mut self, _cx: &mut Ctx<'_>, req: &Request) -> Upgrade {
        let token = req.header("x-token") == Some(&b"s3cret: yes"[..]);
        let origin = req.origin.as_deref() == Some("http://example.test");
        if !token || !origin {
            return Upgrade::Reject(403);
        }
        match req.protocols.iter().find(|p| *p == "chat") {
            Some(p) => Upgrade::AcceptProtocol(p.clone()),
            None => Upgrade::Reject(400),
        }
    }

    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let _ = cx.send(msg);
    }
}

#[test]
fn headers_origin_and_protocols_reach_the_server() {
    let s = server(|| Picky);
    let u = url(&s);
    let args = [
        "-H",
        "X-Token: s3cret: yes",
        "--origin",
        "http://example.test",
        "--protocol",
        "v9",
        "--protocol",
        "chat",
        &u,
    ];
    let r = connect(&args, "ok\n", true);
    assert_eq!((r.status.code(), r.stdout.as_str()), (Some(0), "ok\n"), "{r:?}");
    // A 403 is final, with --reconnect too.
    let r = connect(&["--reconnect", "--protocol", "chat", &u], "", true);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("upgrade refused with HTTP 403"), "{r:?}");
    s.shutdown().unwrap();
}

#[test]
fn with_reconnect_lines_wait_for_a_server_that_comes_up() {
    let addr = dead_port();
    let u = format!("ws://{addr}/");
    let child = thread::spawn(move || {
        connect(&["--reconnect", "--connect-timeout", "2", &u], "late\nlater\n", true)
    });
    thread::sleep(Duration::from_millis(300));
    let s = server_on(addr, || Echo);
    let r = child.join().unwrap();
    assert_eq!((r.status.code(), r.stdout.as_str()), (Some(0), "late\nlater\n"), "{r:?}");
    assert!(r.stderr.contains("reconnecting: connect failed: connection refused"), "{r:?}");
    s.shutdown().unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["-H", "no colon", "ws://127.0.0.1:1/"], &["--json"]] {
        let r = connect(args, "", true);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
    }
}

/// On the client's first message, sends `count` binary messages of 1 MiB; records how
/// each connection ended.
struct Flood {
    count: usize,
    ends: std::sync::Arc<std::sync::Mutex<Vec<(u16, String)>>>,
}

impl Handler for Flood {
    fn on_message(&mut self, cx: &mut Ctx<'_>, _msg: Message) {
        let chunk = ringwire::frame::Bytes::from(vec![7u8; 1 << 20]);
        for _ in 0..self.count {
            let _ = cx.send(Message::binary(chunk.clone()));
        }
    }
    fn on_close(&mut self, _cx: &mut Ctx<'_>, closed: &ringwire::frame::Closed) {
        self.ends.lock().unwrap().push((closed.code.0, closed.reason.clone()));
    }
}

#[test]
fn a_stdout_that_does_not_keep_up_closes_with_1008_instead_of_growing() {
    let ends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = ends.clone();
    // 48 MiB, more than the 16 MiB that may wait to be printed; the server's own send
    // limit is raised so that it is not the one to give up.
    let s = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .max_queued_bytes(256 << 20)
        .start(move |_| Flood { count: 48, ends: e.clone() })
        .expect("the server starts");
    let child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["connect", &url(&s)])
        .env("RINGWIRE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped()) // never read: the pipe fills and printing blocks
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut child = Reaper(child);
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let end = Instant::now() + DEADLINE;
    while ends.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "the client never closed");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        ends.lock().unwrap()[0],
        (1008, "client output too slow".to_owned()),
        "the client closed as a slow consumer"
    );
    drop(stdin);
    s.shutdown().unwrap();
}
