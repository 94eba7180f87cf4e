//! A client that stays connected by itself: it dials an upstream server, keeps a
//! heartbeat, loses the server when it stops, retries with backoff while it is gone, and
//! is connected again once it is back. Every state change reaches the handler with its
//! cause, and the health figures (heartbeat RTT, loss, failure streak) can be read from
//! any thread through the client's handle.
//!
//! Run: `cargo run -p ringwire --example reconnecting_client`. Everything happens on
//! loopback: an echo server (the upstream) starts, stops and starts again on the same
//! port; the example prints what the client saw and exits within a few seconds.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientHandle, ClientState, HealthSnapshot, StateChange};
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, Ctx, Echo, Engine, Handler, Server};

/// The application's side of the client: it greets the upstream each time it is
/// connected and reports what happens to the main thread.
struct Feed {
    events: mpsc::Sender<String>,
}

impl Handler for Feed {
    fn on_message(&mut self, _: &mut Ctx<'_>, msg: Message) {
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        let _ = self.events.send(format!("message: {text}"));
    }

    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        let _ =
            self.events.send(format!("{:?} -> {:?} ({})", change.from, change.to, change.cause));
        if change.to == ClientState::Connected {
            // Connected (again): the first message of each connection. A send can only
            // fail here if the connection were already gone; the next state says so.
            let _ = cx.send_text("hello, upstream");
        }
    }

    fn on_health(&mut self, _: &mut Ctx<'_>, health: &HealthSnapshot) {
        let _ = self.events.send(format!("health level now {:?}", health.level));
    }
}

/// The upstream: an echo server on `addr` (port 0: any).
fn upstream(addr: SocketAddr, backend: BackendChoice) -> Result<Server, ringwire::EngineError> {
    Engine::builder().listen(addr).workers(1).pin_cpus(false).backend(backend).start(|_| Echo)
}

/// Waits until the client is in state `want`, for at most 5 s.
fn wait_for(client: &ClientHandle, want: ClientState) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(5);
    while client.state() != want {
        if Instant::now() > until {
            return Err(format!("still {:?}, not {want:?}, after 5 s", client.state()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The whole scenario; returns what the client's handler reported, in order.
pub fn run(backend: BackendChoice) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let server = upstream("127.0.0.1:0".parse()?, backend)?;
    let addr = server.local_addr();

    let (tx, rx) = mpsc::channel();
    let note = tx.clone();
    let app = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(move |_| Feed { events: tx.clone() })?;
    let mut config = ClientConfig::default();
    // Short figures so that the example runs in seconds; the defaults suit production
    // (a heartbeat after 20 s of silence, retries from 1 s doubling up to 30 s).
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(500);
    config.retry.backoff.initial = Duration::from_millis(100);
    config.retry.backoff.max = Duration::from_millis(400);
    let client = app.connect(&format!("ws://{addr}/"), config)?;

    wait_for(&client, ClientState::Connected)?;
    std::thread::sleep(Duration::from_millis(350)); // a few heartbeats
    let health = client.health();
    let rtt = health.rtt_p95.map_or("none yet".into(), |d| format!("{d:?}"));
    note.send(format!(
        "[app] connected: heartbeat p95 RTT {rtt}, loss {:.0}%",
        health.loss * 100.0
    ))?;

    // The upstream goes away; the client finds out and retries with backoff.
    note.send("[app] the upstream stops".into())?;
    server.shutdown()?;
    wait_for(&client, ClientState::Reconnecting)?;
    std::thread::sleep(Duration::from_millis(600)); // a few refused attempts
    note.send(format!("[app] failed attempts in a row: {}", client.health().streak))?;

    // It comes back on the same address; the next attempt connects.
    note.send("[app] the upstream starts again".into())?;
    let server = upstream(addr, backend)?;
    wait_for(&client, ClientState::Connected)?;
    std::thread::sleep(Duration::from_millis(50)); // the greeting's echo
    client.close(CloseCode::NORMAL, "done")?;
    wait_for(&client, ClientState::Closed)?;
    app.shutdown()?;
    server.shutdown()?;
    Ok(rx.try_iter().collect())
}

fn main() -> ExitCode {
    match run(BackendChoice::Auto) {
        Ok(events) => {
            for e in events {
                println!("  {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reconnecting_client: {e}");
            ExitCode::FAILURE
        }
    }
}
