//! The demo's durable part: a client sends messages through its outbox to a gateway
//! with a duplicate filter, and the gateway restarts half-way; every message must reach
//! the gateway's application once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringwire::client::{Backoff, ClientConfig, ClientState};
use ringwire::frame::Message;
use ringwire::outbox::{OutboxSettings, ReceiptSettings};
use ringwire::{Ctx, Engine, Handler, Server};

/// What the gateway's application saw.
#[derive(Default)]
struct Seen {
    ids: HashSet<u128>,
    twice: u64,
}

struct Recorder(Arc<Mutex<Seen>>);

impl Handler for Recorder {
    fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
        if let Some(d) = cx.delivery() {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if !s.ids.insert(d.id) {
                s.twice += 1;
            }
        }
    }
}

struct Quiet;

impl Handler for Quiet {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
}

/// The outcome.
pub struct DurableReport {
    pub sent: u64,
    /// Messages the gateway's application was handed, each counted once.
    pub delivered: u64,
    /// Messages it was handed a second time (must be 0).
    pub twice: u64,
    /// Copies the gateway's filter dropped (resends of messages already handed over).
    pub dropped: u64,
    /// Messages the client's outbox sent again after reconnecting.
    pub resent: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
}

fn gateway(addr: SocketAddr, dir: &Path, seen: &Arc<Mutex<Seen>>) -> Result<Server, String> {
    let s = seen.clone();
    Engine::builder()
        .listen(addr)
        .workers(1)
        .pin_cpus(false)
        .shutdown_timeout(Duration::from_millis(300))
        .receipts(Some(ReceiptSettings::new(dir.join("receipts"))))
        .start(move |_| Recorder(s.clone()))
        .map_err(|e| format!("durable gateway: {}", crate::serve::error_chain(&e)))
}

/// Sends `n` messages durably, half before and half after a restart of the gateway.
pub fn run_durable(n: u64) -> Result<DurableReport, String> {
    let dir = std::env::temp_dir().join(format!("ringwire-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(&dir, n);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, n: u64) -> Result<DurableReport, String> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first = gateway("127.0.0.1:0".parse().map_err(|_| "address")?, dir, &seen)?;
    let addr = first.local_addr();
    let client = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .outbox(Some(OutboxSettings::new(dir.join("outbox"))))
        .start(|_| Quiet)
        .map_err(|e| format!("durable client: {}", crate::serve::error_chain(&e)))?;
    let mut cfg = ClientConfig::default();
    cfg.outbox_stream = Some(1);
    cfg.connect_rate = None;
    cfg.retry.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..Backoff::default()
    };
    let h = client.connect(&format!("ws://{addr}/"), cfg).map_err(|e| e.to_string())?;
    let wait = |what: &str, mut ok: Box<dyn FnMut() -> bool + '_>| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            if Instant::now() > deadline {
                return Err(format!("durable: timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    };
    wait("the client to connect", Box::new(|| h.state() == ClientState::Connected))?;
    let started = Instant::now();
    let t = Duration::from_secs(5);
    let send = |i: u64| {
        h.store_durable(Message::text(format!("durable {i}")), t)
            .map(|_| ())
            .map_err(|e| format!("durable send {i}: {e}"))
    };
    for i in 0..n / 2 {
        send(i)?;
    }
    first.shutdown().map_err(|e| format!("gateway shutdown: {e}"))?;
    let second = gateway(addr, dir, &seen)?;
    for i in n / 2..n {
        send(i)?;
    }
    wait("every acknowledgement", Box::new(|| client.stats().outbox_acked >= n))?;
    let elapsed = started.elapsed();
    let (cs, ss) = (client.stats(), second.stats());
    client.shutdown().map_err(|e| format!("durable client shutdown: {e}"))?;
    second.shutdown().map_err(|e| format!("gateway shutdown: {e}"))?;
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    Ok(DurableReport {
        sent: n,
        delivered: s.ids.len() as u64,
        twice: s.twice,
        dropped: ss.receipts_duplicates,
        resent: cs.outbox_resent,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_message_arrives_once_through_the_restart() {
        let r = super::run_durable(200).unwrap();
        assert_eq!((r.sent, r.delivered, r.twice), (200, 200, 0));
    }
}
