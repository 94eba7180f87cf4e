//! A chat room on topics: the server subscribes each connection that joins to the
//! room's topic and publishes every line it receives there, framed once for all
//! subscribers on every worker. The members are clients of a second engine in the same
//! process (ringwire's client side), driven from the main thread through their handles.
//!
//! Run: `cargo run -p ringwire --example chat`. Three members join, each says a line,
//! every member hears all three; it prints the room's traffic and exits.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientHandle, ClientState};
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, ConnId, Ctx, Engine, Handler};

const ROOM: &str = "room";

/// The server: `join` subscribes the connection to the room; any other line goes to
/// everyone in it.
struct Room;

impl Handler for Room {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let Message::Text(line) = &msg else {
            let _ = cx.close(CloseCode::UNSUPPORTED_DATA, "text only");
            return;
        };
        if line.as_str() == "join" {
            // Refused only past the engine's per-connection topic limit (one topic here).
            if cx.subscribe(ROOM).is_ok() {
                let _ = cx.send_text("joined");
            }
        } else {
            cx.publish(ROOM, &msg); // framed once for every subscriber
        }
    }
}

/// What the members heard, by connection.
type Heard = Arc<Mutex<HashMap<ConnId, Vec<String>>>>;

/// The members' side: every line heard is kept under the connection that heard it.
struct Member(Heard);

impl Handler for Member {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let line = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(cx.id()).or_default().push(line);
    }
}

/// Waits up to 5 s for `done`.
fn wait(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() > until {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Each member's name and the lines it heard, in order.
pub type Report = Vec<(String, Vec<String>)>;

/// The whole scenario.
pub fn run(backend: BackendChoice) -> Result<Report, Box<dyn std::error::Error>> {
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse()?)
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .start(|_| Room)?;
    let url = format!("ws://{}/", server.local_addr());

    let heard: Heard = Arc::default();
    let h = heard.clone();
    let members = Engine::builder()
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .start(move |_| Member(h.clone()))?;
    let names = ["ada", "grace", "linus"];
    let handles: Vec<ClientHandle> = names
        .iter()
        .map(|_| members.connect(&url, ClientConfig::default()))
        .collect::<Result<_, _>>()?;
    let lines = |h: &ClientHandle| -> Vec<String> {
        let heard = heard.lock().unwrap_or_else(|e| e.into_inner());
        h.id().and_then(|id| heard.get(&id).cloned()).unwrap_or_default()
    };

    wait("the members to connect", || handles.iter().all(|h| h.state() == ClientState::Connected))?;
    for h in &handles {
        h.send(Message::text("join"))?;
    }
    // Everyone is in the room before anyone speaks, so that everyone hears every line.
    wait("the members to join", || handles.iter().all(|h| !lines(h).is_empty()))?;
    for (h, name) in handles.iter().zip(names) {
        h.send(Message::text(format!("{name}: hello, room")))?;
    }
    wait("every line to reach every member", || {
        handles.iter().all(|h| lines(h).len() == 1 + names.len())
    })?;

    let report = names.iter().zip(&handles).map(|(n, h)| (n.to_string(), lines(h))).collect();
    for h in &handles {
        h.close(CloseCode::NORMAL, "bye")?;
    }
    wait("the members to leave", || handles.iter().all(|h| h.state() == ClientState::Closed))?;
    members.shutdown()?;
    let stats = server.stats();
    server.shutdown()?;
    println!(
        "server: {} connections, {} lines in, {} frames out",
        stats.accepted, stats.messages_in, stats.messages_out
    );
    Ok(report)
}

fn main() -> ExitCode {
    match run(BackendChoice::Auto) {
        Ok(report) => {
            for (name, lines) in report {
                println!("{name} heard: {}", lines.join(" | "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}
