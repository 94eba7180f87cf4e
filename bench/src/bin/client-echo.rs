//! Client CPU per echoed message: ringwire's client side against the clients of
//! tokio-tungstenite and fastwebsockets, each on one thread, against the same server.
//!
//! ```text
//! client-echo --client ringwire|tokio-tungstenite|fastwebsockets --addr HOST:PORT
//!             [-c CONNECTIONS] [--in-flight K] [-s SIZE] [-d SECS] [--warmup SECS]
//! ```
//!
//! Each connection keeps K binary messages of SIZE bytes in flight: one sent for each
//! echo received. Over the measured window the process's own CPU time (user + system,
//! `/proc/self/stat`) is divided by the echoes received: the client's CPU per echoed
//! message, printed with msg/s. Pin it (`taskset`) to a core of its own, the server to
//! another, as bench/run-engine-matrix.sh pins server and load generator.

use ringwire_bench::arg;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The process's CPU time so far (user, system), from `/proc/self/stat` (10 ms ticks).
fn cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `after` starts at field 3.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (Duration::from_millis(field(11) * 10), Duration::from_millis(field(12) * 10))
}

/// What the client threads share with the measuring thread.
#[derive(Default)]
struct Shared {
    echoes: AtomicU64,
    stop: AtomicBool,
    ready: AtomicU64,
}

struct Plan {
    addr: String,
    conns: usize,
    in_flight: usize,
    size: usize,
}

mod rw {
    //! ringwire's client: one engine worker, the handler keeps the window full.
    use super::*;
    use ringwire::client::{ClientConfig, ClientState, StateChange};
    use ringwire::frame::Message;
    use ringwire::{Ctx, Engine, Handler};

    struct Load(Arc<Shared>, Message, usize);

    impl Handler for Load {
        fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
            self.0.echoes.fetch_add(1, Relaxed);
            if !self.0.stop.load(Relaxed) {
                let _ = cx.send(self.1.clone());
            }
        }
        fn on_state(&mut self, cx: &mut Ctx<'_>, c: &StateChange) {
            if c.to == ClientState::Connected {
                self.0.ready.fetch_add(1, Relaxed);
                for _ in 0..self.2 {
                    let _ = cx.send(self.1.clone());
                }
            }
        }
    }

    pub(super) fn run(p: &Plan, shared: Arc<Shared>) -> ringwire::Server {
        let msg = Message::binary(vec![0xAB; p.size]);
        let k = p.in_flight;
        let s = shared.clone();
        let engine = Engine::builder()
            .workers(1)
            .pin_cpus(false)
            .start(move |_| Load(s.clone(), msg.clone(), k))
            .expect("engine");
        let mut cfg = ClientConfig::default();
        cfg.ping_interval = None;
        cfg.connect_rate = None;
        engine.connect_many(&format!("ws://{}/", p.addr), p.conns, cfg).expect("dial");
        engine
    }
}

mod tt {
    //! tokio-tungstenite's client on a current-thread runtime: a task per connection.
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    pub(super) fn run(p: &Plan, shared: Arc<Shared>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..p.conns {
                let (addr, k, size, shared) = (p.addr.clone(), p.in_flight, p.size, shared.clone());
                tasks.push(tokio::spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let url = format!("ws://{addr}/");
                    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
                    let (mut tx, mut rx) = ws.split();
                    shared.ready.fetch_add(1, Relaxed);
                    let payload = bytes::Bytes::from(vec![0xABu8; size]);
                    for _ in 0..k {
                        tx.feed(Message::Binary(payload.clone())).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                    while let Some(Ok(m)) = rx.next().await {
                        if !m.is_binary() {
                            continue;
                        }
                        shared.echoes.fetch_add(1, Relaxed);
                        if shared.stop.load(Relaxed) {
                            break;
                        }
                        if tx.send(Message::Binary(payload.clone())).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    }
}

mod fw {
    //! fastwebsockets' client on a current-thread runtime: the upgrade written by hand
    //! (its `handshake::client` needs hyper's client), then `WebSocket::after_handshake`.
    use super::*;
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(super) fn run(p: &Plan, shared: Arc<Shared>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..p.conns {
                let (addr, k, size, shared) = (p.addr.clone(), p.in_flight, p.size, shared.clone());
                tasks.push(tokio::spawn(async move {
                    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let req = format!(
                        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                         Sec-WebSocket-Version: 13\r\n\r\n"
                    );
                    tcp.write_all(req.as_bytes()).await.unwrap();
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        tcp.read_exact(&mut b).await.unwrap();
                        head.push(b[0]);
                    }
                    assert!(head.starts_with(b"HTTP/1.1 101"));
                    let mut ws = WebSocket::after_handshake(tcp, Role::Client);
                    ws.set_auto_pong(true);
                    shared.ready.fetch_add(1, Relaxed);
                    let payload = vec![0xABu8; size];
                    let frame = |p: &[u8]| Frame::binary(Payload::Owned(p.to_vec()));
                    for _ in 0..k {
                        ws.write_frame(frame(&payload)).await.unwrap();
                    }
                    while let Ok(f) = ws.read_frame().await {
                        if f.opcode != OpCode::Binary {
                            continue;
                        }
                        shared.echoes.fetch_add(1, Relaxed);
                        if shared.stop.load(Relaxed) {
                            break;
                        }
                        if ws.write_frame(frame(&payload)).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client: String = arg(&args, &["--client"], "ringwire".to_owned());
    let plan = Plan {
        addr: arg(&args, &["--addr"], "127.0.0.1:9001".to_owned()),
        conns: arg(&args, &["-c", "--connections"], 100),
        in_flight: arg(&args, &["--in-flight"], 1),
        size: arg(&args, &["-s", "--size"], 20),
    };
    let secs: f64 = arg(&args, &["-d", "--duration"], 5.0);
    let warmup: f64 = arg(&args, &["--warmup"], 1.0);
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let mut engine = None;
    let thread = match client.as_str() {
        "ringwire" => {
            engine = Some(rw::run(&plan, s));
            None
        }
        "tokio-tungstenite" => Some(std::thread::spawn(move || tt::run(&plan, s))),
        "fastwebsockets" => Some(std::thread::spawn(move || fw::run(&plan, s))),
        other => {
            eprintln!("unknown client {other}: ringwire, tokio-tungstenite, fastwebsockets");
            std::process::exit(2);
        }
    };
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (c0, e0, t0) = (cpu(), shared.echoes.load(Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, e1, t1) = (cpu(), shared.echoes.load(Relaxed), Instant::now());
    shared.stop.store(true, Relaxed);
    let echoes = e1 - e0;
    let (user, sys) = (c1.0 - c0.0, c1.1 - c0.1);
    let per = |d: Duration| d.as_nanos() as f64 / echoes.max(1) as f64;
    println!(
        "client {client}: {} connections ready, {:.0} msg/s, client CPU {:.0}% , {:.0} ns per echoed message (user {:.0} ns, kernel {:.0} ns)",
        shared.ready.load(Relaxed),
        echoes as f64 / (t1 - t0).as_secs_f64(),
        100.0 * (user + sys).as_secs_f64() / (t1 - t0).as_secs_f64(),
        per(user + sys),
        per(user),
        per(sys)
    );
    if let Some(e) = engine {
        let _ = e.shutdown();
    }
    // The tokio clients end when the server closes or their next echo sees `stop`.
    drop(thread);
    std::process::exit(0);
}
