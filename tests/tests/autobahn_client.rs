//! The Autobahn client example (`engine/examples/autobahn_client.rs`) against an in-tree
//! stand-in for the testsuite's fuzzingserver, written with ringwire itself, on loopback
//! and both backends: the case count, each case's echoes (text, binary, one message over
//! the default 16 MiB frame limit), the status query after each case and the report
//! update, in that order and one connection at a time; and the failure when nothing
//! listens.
//!
//! The example's own code is compiled into this test (`#[path]`), so what runs here is
//! exactly what `tests/autobahn/run_client.sh` runs against the real suite.

mod common;

#[allow(dead_code)] // its `main`
#[path = "../../engine/examples/autobahn_client.rs"]
mod autobahn_client;

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{builder, GuardExt};
use ringwire::frame::handshake::Request;
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, ConnId, Ctx, Handler, Upgrade};

/// Cases the stand-in offers.
const CASES: u32 = 3;
/// The whole run must finish within this long (it takes well under a second).
const BOUND: Duration = Duration::from_secs(60);

/// What case `n` sends; the client must echo it unchanged, in order.
fn case_messages(n: u32) -> Vec<Message> {
    let mut msgs = vec![
        Message::text(format!("case {n}: text, ünïcödé ✓")),
        Message::binary(vec![n as u8; 1000 * n as usize]),
        Message::binary(Vec::new()),
    ];
    if n == CASES {
        // Over the default frame limit: the example must have raised it.
        msgs.push(Message::binary(vec![0xA5; (16 << 20) + 1]));
    }
    msgs
}

/// What the stand-in saw, shared by its workers.
#[derive(Default)]
struct Record {
    /// Request targets, in the order the upgrades arrived.
    requests: Vec<String>,
    /// Per case: the echoes as they came back.
    echoes: HashMap<u32, Vec<Message>>,
}

/// The stand-in suite: answers by request path as the fuzzingserver does.
struct Suite {
    record: Arc<Mutex<Record>>,
    /// Per open `/runCase` connection: its case and the echoes still due.
    due: HashMap<ConnId, (u32, VecDeque<Message>)>,
}

/// The value of query parameter `name` in `target`.
fn param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

impl Handler for Suite {
    fn on_open(&mut self, cx: &mut Ctx<'_>, req: &Request) -> Upgrade {
        let target = req.path.clone();
        let path = target.split('?').next().unwrap_or_default();
        let case = param(&target, "case").and_then(|c| c.parse::<u32>().ok());
        self.record.lock().unwrap().requests.push(target.clone());
        match (path, case) {
            ("/getCaseCount", _) => {
                cx.send_text(&CASES.to_string()).unwrap();
                cx.close(CloseCode::NORMAL, "").unwrap();
            }
            ("/runCase", Some(n)) => {
                let msgs = case_messages(n);
                for m in &msgs {
                    cx.send(m.clone()).unwrap();
                }
                self.due.insert(cx.id(), (n, msgs.into()));
            }
            ("/getCaseStatus", Some(n)) => {
                let echoes = self.record.lock().unwrap().echoes.get(&n).cloned();
                let ok = echoes == Some(case_messages(n));
                let behavior = if ok { "OK" } else { "FAILED" };
                cx.send_text(&format!("{{\"behavior\": \"{behavior}\"}}")).unwrap();
                cx.close(CloseCode::NORMAL, "").unwrap();
            }
            ("/updateReports", _) => cx.close(CloseCode::NORMAL, "").unwrap(),
            _ => return Upgrade::Reject(404),
        }
        Upgrade::Accept
    }

    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let Some((n, due)) = self.due.get_mut(&cx.id()) else {
            panic!("a message on a connection that runs no case: {msg:?}");
        };
        self.record.lock().unwrap().echoes.entry(*n).or_default().push(msg);
        due.pop_front();
        if due.is_empty() {
            self.due.remove(&cx.id());
            cx.close(CloseCode::NORMAL, "").unwrap();
        }
    }
}

/// Runs the example's client against `url` on a helper thread; panics after [`BOUND`].
fn run_client(url: String, agent: &'static str, backend: BackendChoice) -> Result<u32, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(autobahn_client::run(&url, agent, backend));
    });
    rx.recv_timeout(BOUND).unwrap_or_else(|_| panic!("the client did not finish in {BOUND:?}"))
}

fn runs_every_case_in_order(backend: BackendChoice) {
    let record = Arc::new(Mutex::new(Record::default()));
    let shared = record.clone();
    let mut config = builder(backend).current().clone();
    config.frame.max_frame_size = 64 << 20;
    config.frame.max_message_size = 64 << 20;
    config.max_queued_bytes = 64 << 20;
    let suite = builder(backend)
        .config(config)
        .start(move |_| Suite { record: shared.clone(), due: HashMap::new() })
        .expect("the stand-in starts")
        .guarded();
    let url = format!("ws://{}", suite.local_addr());
    assert_eq!(run_client(url, "ringwire test/1", backend), Ok(CASES));

    let record = record.lock().unwrap();
    let agent = "agent=ringwire%20test%2F1";
    let mut want = vec!["/getCaseCount".to_owned()];
    for n in 1..=CASES {
        want.push(format!("/runCase?case={n}&{agent}"));
        want.push(format!("/getCaseStatus?case={n}&{agent}"));
    }
    want.push(format!("/updateReports?{agent}"));
    assert_eq!(record.requests, want);
    for n in 1..=CASES {
        let echoes = record.echoes.get(&n).map_or(0, Vec::len);
        let same = record.echoes.get(&n) == Some(&case_messages(n));
        assert!(same, "case {n}: {echoes} echo(es), not the messages sent");
    }
    drop(record);
    suite.shutdown().unwrap();
}

fn fails_when_nothing_listens(backend: BackendChoice) {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = run_client(format!("ws://{addr}/"), "ringwire", backend).unwrap_err();
    assert!(err.contains("/getCaseCount: could not connect"), "{err}");
}

both_backends! {
    runs_every_case_in_order => runs_every_case_in_order_io_uring, runs_every_case_in_order_epoll;
    fails_when_nothing_listens => fails_when_nothing_listens_io_uring, fails_when_nothing_listens_epoll;
}
