//! The client half of the Autobahn WebSocket testsuite's protocol: with the suite in
//! `fuzzingserver` mode (the suite is the server), this client asks it for the number of
//! cases (`/getCaseCount`), runs each case by connecting to `/runCase?case=N&agent=AGENT`
//! and echoing every text and binary message back unchanged until the suite closes, then
//! asks it to write its reports (`/updateReports?agent=AGENT`).
//!
//! Everything goes through ringwire's client API: one engine that only dials, one
//! connection at a time ([`Server::connect`]), and a handler that echoes in `on_message`
//! and tells the main thread through a channel when the connection reached
//! [`ClientState::Closed`]. With `max_attempts` 1 every loss is final: each case is one
//! connection, never retried.
//!
//! Run: `cargo run --release -p ringwire --example autobahn_client -- ws://127.0.0.1:9001
//! ringwire` (`tests/autobahn/run_client.sh` starts the suite and reads its report).
//! `RINGWIRE_BACKEND=epoll` or `=io_uring` chooses the backend; `RINGWIRE_DEFLATE=shared`
//! or `=takeover` offers permessage-deflate (cases 12.* and 13.*). It prints one line per
//! case and exits non-zero if a connection could not be made.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use ringwire::client::{Cause, ClientConfig, ClientState, StateChange};
use ringwire::frame::{Closed, Message};
use ringwire::{BackendChoice, Ctx, Engine, Handler, Server};

/// The longest one connection may take. The suite's cases take seconds at most (group
/// 9's 16 MiB messages); this only stops a hung suite from holding the client forever.
const PER_CONNECTION: Duration = Duration::from_secs(120);

/// What the handler tells the main thread.
enum Event {
    /// The upgrade succeeded.
    Connected,
    /// A message on a connection that does not echo (the case count).
    Message(Message),
    /// The connection ended for good: its close code, the messages echoed on it, and the
    /// cause of the final state change.
    Ended { code: Option<u16>, echoed: usize, cause: Cause },
}

/// Echoes every message while `echo` is set, else hands it to the main thread.
struct EchoClient {
    echo: Arc<AtomicBool>,
    tx: Sender<Event>,
    echoed: usize,
    code: Option<u16>,
}

impl Handler for EchoClient {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        if self.echo.load(Ordering::Acquire) {
            self.echoed += 1;
            // A refused echo (queue over the limit) shows in the suite's report.
            let _ = cx.send(msg);
        } else {
            let _ = self.tx.send(Event::Message(msg));
        }
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, closed: &Closed) {
        self.code = Some(closed.code.0);
    }

    fn on_state(&mut self, _cx: &mut Ctx<'_>, change: &StateChange) {
        match change.to {
            ClientState::Connected => {
                (self.echoed, self.code) = (0, None);
                let _ = self.tx.send(Event::Connected);
            }
            ClientState::Closed => {
                let (code, echoed, cause) = (self.code, self.echoed, change.cause.clone());
                let _ = self.tx.send(Event::Ended { code, echoed, cause });
            }
            _ => {}
        }
    }
}

/// How one connection went.
struct Visit {
    /// Messages received while not echoing.
    messages: Vec<Message>,
    /// Messages echoed.
    echoed: usize,
    /// The close code, if the connection got as far as a close.
    code: Option<u16>,
}

/// An engine that only dials, and its handler's channel.
struct Client {
    engine: Server,
    echo: Arc<AtomicBool>,
    rx: Receiver<Event>,
}

impl Client {
    fn start(backend: BackendChoice) -> Result<Self, String> {
        let (tx, rx) = channel();
        let echo = Arc::new(AtomicBool::new(false));
        // Group 9 sends messages and frames of up to 16 MiB and bursts of 1000 messages
        // of up to 128 KiB, echoed as fast as they come: raise the frame limits above
        // the default 16 MiB frame and the send queue above 4 MiB.
        let mut frame = ringwire::frame::Config::default();
        frame.max_frame_size = 64 << 20;
        frame.max_message_size = 64 << 20;
        frame.deflate = match std::env::var("RINGWIRE_DEFLATE").as_deref() {
            Ok("shared") => Some(ringwire::frame::DeflateConfig::default()),
            Ok("takeover") => {
                Some(ringwire::frame::DeflateConfig::default().context_takeover(true))
            }
            _ => None,
        };
        let flag = echo.clone();
        let engine = Engine::builder()
            .workers(1)
            .pin_cpus(false)
            .backend(backend)
            .frame(frame)
            .max_queued_bytes(256 << 20)
            .start(move |_| EchoClient {
                echo: flag.clone(),
                tx: tx.clone(),
                echoed: 0,
                code: None,
            })
            .map_err(|e| format!("engine: {e}"))?;
        Ok(Self { engine, echo, rx })
    }

    /// Connects to `url`, echoing if `echo`, and waits until the connection is closed
    /// for good. Fails if it never got connected.
    fn visit(&self, url: &str, echo: bool) -> Result<Visit, String> {
        self.echo.store(echo, Ordering::Release);
        let mut config = ClientConfig::default();
        // The first failure is final, also for a connection that stayed up longer than
        // `stable_after` (whose loss would not count as a failed attempt).
        config.retry.backoff.max_attempts = Some(1);
        config.retry.backoff.stable_after = Duration::from_secs(86_400);
        config.connect_rate = None; // one connection at a time anyway
        self.engine.connect(url, config).map_err(|e| format!("{url}: {e}"))?;
        let (mut connected, mut messages) = (false, Vec::new());
        loop {
            match self.rx.recv_timeout(PER_CONNECTION) {
                Ok(Event::Connected) => connected = true,
                Ok(Event::Message(m)) => messages.push(m),
                Ok(Event::Ended { cause, .. }) if !connected => {
                    return Err(format!("{url}: could not connect: {cause}"));
                }
                Ok(Event::Ended { code, echoed, .. }) => {
                    return Ok(Visit { messages, echoed, code })
                }
                Err(_) => return Err(format!("{url}: not closed within {PER_CONNECTION:?}")),
            }
        }
    }

    /// The one text message the suite sends on `url` before it closes.
    fn text(&self, url: &str) -> Result<String, String> {
        match self.visit(url, false)?.messages.as_slice() {
            [Message::Text(t)] => Ok(t.as_str().to_owned()),
            other => Err(format!("{url} answered {other:?}")),
        }
    }
}

/// `s` percent-encoded for a query string (RFC 3986 unreserved characters kept).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs every case of the suite at `base` (e.g. `ws://127.0.0.1:9001`) as `agent`, one
/// at a time, and has the suite write its reports; returns the number of cases.
pub fn run(base: &str, agent: &str, backend: BackendChoice) -> Result<u32, String> {
    let client = Client::start(backend)?;
    println!("client engine: {} backend", client.engine.backend().name);
    let base = base.trim_end_matches('/');
    let count = client.text(&format!("{base}/getCaseCount"))?;
    let count: u32 = count.trim().parse().map_err(|e| format!("case count {count:?}: {e}"))?;
    println!("{count} cases");
    let agent = query_escape(agent);
    for case in 1..=count {
        let v = client.visit(&format!("{base}/runCase?case={case}&agent={agent}"), true)?;
        // The suite records a case when its side of the connection is gone, which may be
        // after our side saw the close: `/getCaseStatus` answers once it is recorded, so
        // every case is in the report that `/updateReports` writes.
        let status = client.text(&format!("{base}/getCaseStatus?case={case}&agent={agent}"))?;
        let behavior = status.split('"').nth(3).unwrap_or(&status); // {"behavior": "OK"}
        let code = v.code.map_or("none".to_owned(), |c| c.to_string());
        println!("case {case}/{count}: {behavior} (echoed {}, close code {code})", v.echoed);
    }
    // The suite writes its reports, then closes; it fails the connection if writing them
    // failed.
    let update = client.visit(&format!("{base}/updateReports?agent={agent}"), false)?;
    match update.code {
        Some(1000 | 1005) => println!("reports updated"),
        Some(code) => return Err(format!("/updateReports: the suite closed with {code}")),
        None => return Err("/updateReports: the suite closed no connection".to_owned()),
    }
    client.engine.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    Ok(count)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, agent] = args.as_slice() else {
        eprintln!("usage: autobahn_client BASE_URL AGENT   (e.g. ws://127.0.0.1:9001 ringwire)");
        return ExitCode::from(2);
    };
    match run(base, agent, BackendChoice::Auto) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            ExitCode::FAILURE
        }
    }
}
