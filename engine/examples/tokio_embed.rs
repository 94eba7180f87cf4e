//! Embedding ringwire in a tokio application.
//!
//! The engine's workers run on their own pinned threads; the tokio side talks to them
//! through `ConnHandle` and `Publisher`, which are `Send + Sync` and never block (they
//! push onto a worker's lock-free queue and wake it). Messages flow the other way through
//! an ordinary tokio channel that the handler feeds from the worker thread.
//!
//! Run: `cargo run -p ringwire --example tokio_embed`. It serves for a few seconds with a
//! built-in client, prints what happened and exits.

use std::net::TcpStream;
use std::time::Duration;

use ringwire::frame::Message;
use ringwire::{ConnHandle, Ctx, Engine, Handler};
use tokio::sync::mpsc;

/// Forwards every message to the tokio side with a handle to answer on.
struct Forward {
    to_app: mpsc::UnboundedSender<(ConnHandle, Message)>,
}

impl Handler for Forward {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        // An unbounded tokio sender never blocks the worker; the app side applies its own
        // backpressure. Subscribe everyone to the ticker.
        // One topic, well within the per-connection limit: a refusal cannot happen here.
        let _ = cx.subscribe("ticks");
        let _ = self.to_app.send((cx.handle(), msg));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse()?)
        .workers(2)
        .start(move |_worker| Forward { to_app: tx.clone() })?;
    let addr = server.local_addr();
    println!("serving on ws://{addr} ({})", server.backend().name);

    // The application: answers each message in upper case from a tokio task.
    let app = tokio::spawn(async move {
        let mut answered = 0;
        while let Some((handle, msg)) = rx.recv().await {
            if let Message::Text(t) = msg {
                let _ = handle.send(Message::text(t.as_str().to_uppercase()));
                answered += 1;
            }
        }
        answered
    });

    // A ticker publishing to every subscriber on every worker.
    let publisher = server.publisher();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        for i in 0..10 {
            interval.tick().await;
            publisher.publish("ticks", &Message::text(format!("tick {i}")));
        }
    });

    // A client on a plain thread (tungstenite, blocking).
    let client = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let (mut ws, _) =
            tungstenite::client(format!("ws://{addr}/"), stream).map_err(|e| e.to_string())?;
        ws.send(tungstenite::Message::text("hello from the client")).map_err(|e| e.to_string())?;
        let mut seen = Vec::new();
        while seen.len() < 5 {
            if let tungstenite::Message::Text(t) = ws.read().map_err(|e| e.to_string())? {
                seen.push(t.to_string());
            }
        }
        let _ = ws.close(None);
        Ok(seen)
    });

    let seen = client.await??;
    ticker.await?;
    for line in &seen {
        println!("client received: {line}");
    }
    let stats = server.stats();
    server.shutdown()?;
    let answered = app.await?;
    println!(
        "app answered {answered} message(s); engine: {} in, {} out",
        stats.messages_in, stats.messages_out
    );
    Ok(())
}
