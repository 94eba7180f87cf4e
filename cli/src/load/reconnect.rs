//! The `reconnect` scenario: N clients of ringwire's client side (with its default
//! retry policy: exponential backoff, full jitter, the per-target connect cap) hold
//! connections to a ringwire echo server in this process; the server goes away for
//! `--down` seconds and comes back on the same port. Reported: how long after the
//! server's return 50/95/99/100% of the clients were connected again, the most
//! connections the server accepted in any one second, the attempts the clients made,
//! and the share that came back.
//!
//! The server is ringwire's own, in this process, because the scenario must stop and
//! restart it and count its accepts; the clients are the same engine clients
//! applications get (`Server::connect`).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientState, ConnectRate, StateChange};
use ringwire::frame::Message;
use ringwire::{Ctx, Echo, Engine, Server};
use serde::Serialize;

use super::args::ReconnectArgs;
use super::clock::now_ns;
use super::json::ErrorsJson;
use super::report::{line, Count, ErrorKind, Errors};
use super::session::Session;
use super::worker::{Clients, Cx, Gauge, Phase, Script};

/// Name prefix of the in-process server's worker threads.
const SERVER_THREADS: &str = "rwsrv-w";

/// Records, once the outage has begun, when each client connected again and how many
/// attempts the clients made.
#[derive(Debug, Default)]
pub struct ReconnectScript {
    /// Monotonic ns of every reconnection during the measured phase.
    pub back_ns: Vec<u64>,
    /// Attempts (changes to Connecting) during the measured phase.
    pub attempts: u64,
    /// Losses seen during the measured phase.
    pub losses: u64,
}

impl Script for ReconnectScript {
    fn on_open(&mut self, cx: &mut Cx<'_>, _local: usize, _global: usize, _ws: &mut Ctx<'_>) {
        Gauge::bump(&cx.gauge.ready, 1);
    }
    fn on_message(&mut self, cx: &mut Cx<'_>, _l: usize, _ws: &mut Ctx<'_>, _m: &Message) {
        // An echo server sends nothing unasked.
        Gauge::bump(&cx.gauge.errors, 1);
        cx.errors.note(ErrorKind::Mismatch, || "a message nobody asked for".into());
    }
    fn on_phase(&mut self, _cx: &mut Cx<'_>, _clients: &mut Clients<'_, '_>) {}
    fn on_state(&mut self, cx: &mut Cx<'_>, _local: usize, change: &StateChange) {
        if cx.phase != Phase::Measure {
            return;
        }
        match change.to {
            ClientState::Connected => self.back_ns.push(cx.now_ns),
            ClientState::Connecting => self.attempts += 1,
            ClientState::Reconnecting if change.from == ClientState::Connected => {
                self.losses += 1;
            }
            _ => {}
        }
    }
}

/// The results of a reconnect run.
#[derive(Debug, Clone)]
pub struct ReconnectReport {
    pub clients: usize,
    /// Clients connected before the outage.
    pub connected: u64,
    pub threads: usize,
    /// How long the server was away (stop to listening again).
    pub down: Duration,
    /// The clients' connect cap (`None`: off).
    pub cap: Option<ConnectRate>,
    /// Times from the server's return until each reconnection, sorted.
    pub back: Vec<Duration>,
    /// Losses the clients saw.
    pub losses: u64,
    /// Attempts the clients made from the outage until the end.
    pub attempts: u64,
    /// Most accepts of the restarted server in any one second.
    pub peak_accepts: u64,
    /// How long the run waited for the clients to come back.
    pub waited: Duration,
    pub errors: Errors,
    pub notes: Vec<String>,
}

impl ReconnectReport {
    /// Time until the share `p` of the clients connected before were back.
    pub fn quantile(&self, p: f64) -> Option<Duration> {
        let n = self.connected as f64;
        let i = ((p * n).ceil() as usize).max(1) - 1;
        self.back.get(i).copied()
    }
    /// Clients back (at most one reconnection counted per client connected before).
    pub fn reconnected(&self) -> u64 {
        (self.back.len() as u64).min(self.connected)
    }
    /// Percent of the clients connected before that came back.
    pub fn success_percent(&self) -> f64 {
        100.0 * self.reconnected() as f64 / (self.connected.max(1)) as f64
    }
    /// Whether anything went wrong: a client missing, or errors.
    pub fn failed(&self) -> bool {
        self.errors.total() > 0
            || self.connected < self.clients as u64
            || self.reconnected() < self.connected
    }

    /// The report's figures for `--json`.
    pub fn json(&self) -> ReconnectJson<'_> {
        let ns = |p: f64| self.quantile(p).map(|d| d.as_nanos() as u64);
        ReconnectJson {
            scenario: "reconnect",
            clients: self.clients,
            connected: self.connected,
            threads: self.threads,
            down_s: self.down.as_secs_f64(),
            cap_per_s: self.cap.map(|c| c.per_second),
            cap_burst: self.cap.map(|c| c.burst),
            reconnected: self.reconnected(),
            success_percent: self.success_percent(),
            p50_ns: ns(0.50),
            p95_ns: ns(0.95),
            p99_ns: ns(0.99),
            all_ns: ns(1.0),
            peak_accepts_per_s: self.peak_accepts,
            attempts: self.attempts,
            losses: self.losses,
            waited_s: self.waited.as_secs_f64(),
            errors: ErrorsJson::of(&self.errors),
            notes: &self.notes,
            failed: self.failed(),
        }
    }
}

/// `ringwire load reconnect --json`: the figures of a [`ReconnectReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconnectJson<'a> {
    /// `"reconnect"`.
    pub scenario: &'static str,
    /// Clients asked for.
    pub clients: usize,
    /// Clients connected before the outage.
    pub connected: u64,
    /// Generator threads.
    pub threads: usize,
    /// How long the server was away, seconds.
    pub down_s: f64,
    /// The clients' per-target connect cap; `null` when off.
    pub cap_per_s: Option<u32>,
    /// Its burst; `null` when off.
    pub cap_burst: Option<u32>,
    /// Clients connected again.
    pub reconnected: u64,
    /// Percent of the clients connected before that came back.
    pub success_percent: f64,
    /// Time from the server's return until half the clients were back; `null` if they
    /// were not.
    pub p50_ns: Option<u64>,
    /// ... 95% of them.
    pub p95_ns: Option<u64>,
    /// ... 99% of them.
    pub p99_ns: Option<u64>,
    /// ... all of them.
    pub all_ns: Option<u64>,
    /// Most accepts of the restarted server in any one second.
    pub peak_accepts_per_s: u64,
    /// Attempts the clients made from the outage on.
    pub attempts: u64,
    /// Losses the clients saw.
    pub losses: u64,
    /// How long the run waited for them, seconds.
    pub waited_s: f64,
    /// Errors.
    pub errors: ErrorsJson<'a>,
    /// Notes of the report.
    pub notes: &'a [String],
    /// Whether anything went wrong (a client not back, errors): the exit status is 1.
    pub failed: bool,
}

/// The in-process echo server at `addr`.
fn server(addr: SocketAddr, a: &ReconnectArgs) -> Result<Server, String> {
    let mut b = Engine::builder()
        .listen(addr)
        .workers(a.server_workers)
        .thread_name(SERVER_THREADS.into())
        .shutdown_timeout(Duration::from_millis(200));
    b = if a.server_cpus.is_empty() {
        b.pin_cpus(false)
    } else {
        b.cpus(Some(a.server_cpus.clone()))
    };
    b.start(|_| Echo).map_err(|e| format!("server on {addr}: {}", crate::serve::error_chain(&e)))
}

/// The most accepts of a server in any one-second window, from samples.
#[derive(Default)]
struct PeakRate {
    samples: std::collections::VecDeque<(Instant, u64)>,
    peak: u64,
}

impl PeakRate {
    fn sample(&mut self, accepted: u64) {
        let now = Instant::now();
        self.samples.push_back((now, accepted));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.samples.pop_front();
        }
        if let Some((_, first)) = self.samples.front() {
            self.peak = self.peak.max(accepted - first);
        }
    }
}

/// Runs the reconnect scenario.
pub fn run_reconnect(a: &ReconnectArgs) -> Result<ReconnectReport, String> {
    let (down, timeout) = a.check()?;
    let first = server("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?, a)?;
    let addr = first.local_addr();
    let mut client = a.client.clone();
    client.addrs = vec![addr];
    let plan = client.plan()?;
    let threads = plan.threads;
    let mut config: ClientConfig = plan.client_config();
    config.retry = ringwire::client::RetryPolicy::default();
    let cap = (a.cap > 0).then_some(ConnectRate { per_second: a.cap, burst: a.cap_burst });
    config.connect_rate = cap;
    // The server's accepted sockets are plain descriptors on epoll.
    let reserved = a.connections as u64 + 64;
    let mut s = Session::start_with(
        plan,
        a.connections,
        a.connections,
        reserved,
        "reconnect",
        config,
        |_, _| ReconnectScript::default(),
    )?;
    let clients = s.conns;
    let notes: Vec<String> = s.note.clone().into_iter().collect();
    s.wait_ready();
    let connected = s.total_of(|g| &g.ready);
    // Every worker sees the measured phase before the server goes.
    s.hold(Phase::Measure, Duration::from_millis(100), "ready", |_| false);
    let t_down = Instant::now();
    first.shutdown().map_err(|e| format!("server stop: {}", crate::serve::error_chain(&e)))?;
    s.hold(Phase::Measure, down.saturating_sub(t_down.elapsed()), "server down", |_| false);
    let second = server(addr, a)?;
    let (t_up, up_ns) = (Instant::now(), now_ns());
    let mut peak = PeakRate::default();
    s.hold(Phase::Measure, timeout, "reconnect", |c| {
        peak.sample(second.stats().accepted);
        c.total(|g| &g.reconnected) >= connected
    });
    peak.sample(second.stats().accepted);
    let waited = t_up.elapsed();
    let (scripts, errors) = s.finish()?;
    second.shutdown().map_err(|e| format!("server stop: {}", crate::serve::error_chain(&e)))?;
    let mut back: Vec<Duration> = scripts
        .iter()
        .flat_map(|s| s.back_ns.iter())
        .map(|&t| Duration::from_nanos(t.saturating_sub(up_ns)))
        .collect();
    back.sort();
    Ok(ReconnectReport {
        clients,
        connected,
        threads,
        down: t_up.duration_since(t_down),
        cap,
        back,
        losses: scripts.iter().map(|s| s.losses).sum(),
        attempts: scripts.iter().map(|s| s.attempts).sum(),
        peak_accepts: peak.peak,
        waited,
        errors,
        notes,
    })
}

impl fmt::Display for ReconnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let cap = self.cap.map_or("no connect cap".into(), |c| {
            format!("connect cap {}/s bursts of {}", Count(u64::from(c.per_second)), c.burst)
        });
        out.push_str(&format!(
            "reconnect: {} clients, server down {:.2} s, {cap}, {} generator thread(s)\n",
            Count(self.clients as u64),
            self.down.as_secs_f64(),
            self.threads
        ));
        if self.connected < self.clients as u64 {
            line(
                &mut out,
                "connected",
                format_args!("only {} of {} before the outage", self.connected, self.clients),
            );
        }
        line(
            &mut out,
            "reconnected",
            format_args!(
                "{} of {} ({:.2}%) within {:.1} s",
                Count(self.reconnected()),
                Count(self.connected),
                self.success_percent(),
                self.waited.as_secs_f64()
            ),
        );
        let show =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        line(
            &mut out,
            "back after",
            format_args!(
                "50% {}  95% {}  99% {}  all {}  (from the server's return)",
                show(self.quantile(0.50)),
                show(self.quantile(0.95)),
                show(self.quantile(0.99)),
                show(self.quantile(1.0))
            ),
        );
        line(
            &mut out,
            "server peak",
            format_args!("{} accepts in one second", Count(self.peak_accepts)),
        );
        line(
            &mut out,
            "attempts",
            format_args!(
                "{} ({:.2} per client lost)",
                Count(self.attempts),
                self.attempts as f64 / self.losses.max(1) as f64
            ),
        );
        line(&mut out, "errors", &self.errors);
        for n in &self.notes {
            line(&mut out, "note", n);
        }
        f.write_str(out.trim_end())
    }
}
