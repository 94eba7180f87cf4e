//! The `idle` scenario: open N connections, hold them silent, and read how much the
//! server's resident memory grew per connection. Pings from the server's heartbeat are
//! answered by the protocol core, so connections stay alive while held.

use std::fmt;
use std::time::Duration;

use ringwire::frame::Message;
use ringwire::Ctx;
use serde::Serialize;

use super::args::IdleArgs;
use super::cpu::{of_threads, waited};
use super::json::{ErrorsJson, GeneratorCpuJson, ServerCpuJson};
use super::procfs::{rss_bytes, ProcTarget};
use super::report::{line, Bytes, Count, Errors, Ns};
use super::session::{CpuProbe, CpuUse, Session, THREAD_PREFIX};
use super::worker::{Clients, Cx, Gauge, Phase, Script};

/// Holds connections silently; counts anything the server sends.
#[derive(Debug, Default)]
pub struct IdleScript {
    pub unexpected: u64,
}

impl Script for IdleScript {
    fn on_open(&mut self, cx: &mut Cx<'_>, _local: usize, _global: usize, _ws: &mut Ctx<'_>) {
        Gauge::bump(&cx.gauge.ready, 1);
    }
    fn on_message(&mut self, cx: &mut Cx<'_>, _l: usize, _ws: &mut Ctx<'_>, _m: &Message) {
        Gauge::bump(&cx.gauge.msgs, 1);
        self.unexpected += 1;
    }
    fn on_phase(&mut self, _cx: &mut Cx<'_>, _clients: &mut Clients<'_, '_>) {}
}

/// The results of an idle run.
#[derive(Debug, Clone)]
pub struct IdleReport {
    pub connections: usize,
    pub opened: u64,
    /// Time from the first connect to the last upgrade.
    pub setup: Duration,
    /// Memory of the measured process before connecting and after settling.
    pub rss: Option<(u64, u64)>,
    /// What the memory figure covers.
    pub rss_of: String,
    /// Connections opened before the memory baseline was read.
    pub baseline: u64,
    /// Memory of the measured process at the end of the hold (heartbeats have run).
    pub rss_end: Option<u64>,
    /// Connections still open at the end of the hold.
    pub still_open: u64,
    pub hold: Duration,
    /// CPU over the setup.
    pub cpu: CpuUse,
    pub threads: usize,
    pub unexpected: u64,
    pub errors: Errors,
    pub notes: Vec<String>,
}

impl IdleReport {
    /// Upgrades per second.
    pub fn setup_rate(&self) -> f64 {
        self.opened as f64 / self.setup.as_secs_f64().max(1e-9)
    }
    /// RSS growth per opened connection, in bytes.
    pub fn per_connection(&self) -> Option<f64> {
        let (a, b) = self.rss?;
        let n = self.opened.saturating_sub(self.baseline);
        (n > 0).then(|| (b as f64 - a as f64) / n as f64)
    }
    /// RSS growth per opened connection at the end of the hold (heartbeats included),
    /// in bytes.
    pub fn per_connection_after_hold(&self) -> Option<f64> {
        let ((a, _), end) = self.rss.zip(self.rss_end)?;
        let n = self.opened.saturating_sub(self.baseline).max(1);
        Some((end as f64 - a as f64) / n as f64)
    }
    /// Whether anything went wrong (errors, connections lost during the hold).
    pub fn failed(&self) -> bool {
        self.errors.total() > 0 || self.still_open < self.opened
    }

    /// The report's figures for `--json`.
    pub fn json(&self) -> IdleJson<'_> {
        IdleJson {
            scenario: "idle",
            connections: self.connections,
            opened: self.opened,
            threads: self.threads,
            setup_s: self.setup.as_secs_f64(),
            upgrades_per_s: self.setup_rate(),
            hold_s: self.hold.as_secs_f64(),
            server_cpu: self.cpu.server.map(|s| ServerCpuJson::of(&s, self.opened, "upgrade")),
            generator_cpu: GeneratorCpuJson::of(&self.cpu.generator, self.threads, false),
            memory: self.rss.map(|(before, after)| MemoryJson {
                of: &self.rss_of,
                baseline_connections: self.baseline,
                measured_connections: self.opened.saturating_sub(self.baseline),
                rss_before_bytes: before,
                rss_after_bytes: after,
                bytes_per_connection: self.per_connection(),
                rss_after_hold_bytes: self.rss_end,
                bytes_per_connection_after_hold: self.per_connection_after_hold(),
            }),
            still_open: self.still_open,
            unexpected: self.unexpected,
            errors: ErrorsJson::of(&self.errors),
            notes: &self.notes,
            failed: self.failed(),
        }
    }
}

/// `ringwire load idle --json`: the figures of an [`IdleReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleJson<'a> {
    /// `"idle"`.
    pub scenario: &'static str,
    /// Connections asked for (after the fd-limit cap).
    pub connections: usize,
    /// Connections that opened (the baseline's included).
    pub opened: u64,
    /// Generator threads.
    pub threads: usize,
    /// Time from the first connect to the last upgrade, seconds.
    pub setup_s: f64,
    /// Upgrades per second over the setup.
    pub upgrades_per_s: f64,
    /// How long the connections were held, seconds.
    pub hold_s: f64,
    /// The server's CPU over the setup (per upgrade); `null` without `--server-pid`.
    pub server_cpu: Option<ServerCpuJson>,
    /// The generator's CPU over the setup.
    pub generator_cpu: GeneratorCpuJson,
    /// The server's memory; `null` when not measured (no `--server-pid`).
    pub memory: Option<MemoryJson<'a>>,
    /// Connections still open at the end of the hold.
    pub still_open: u64,
    /// Messages the server sent unasked.
    pub unexpected: u64,
    /// Errors.
    pub errors: ErrorsJson<'a>,
    /// Notes of the report (e.g. connections capped by the fd limit).
    pub notes: &'a [String],
    /// Whether anything went wrong (errors, connections lost): the exit status is 1.
    pub failed: bool,
}

/// Resident memory of the measured process around the setup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryJson<'a> {
    /// What the figures cover (e.g. `server (pid 42)`).
    pub of: &'a str,
    /// Connections opened before the first reading (`--baseline`; 0: none).
    pub baseline_connections: u64,
    /// Connections the growth is divided by (opened less the baseline).
    pub measured_connections: u64,
    /// RSS before the measured connections.
    pub rss_before_bytes: u64,
    /// RSS after the last upgrade and the settle time.
    pub rss_after_bytes: u64,
    /// (after - before) / measured connections; `null` when none were measured.
    pub bytes_per_connection: Option<f64>,
    /// RSS at the end of the hold (heartbeats have run); `null` if unreadable.
    pub rss_after_hold_bytes: Option<u64>,
    /// (after the hold - before) / measured connections.
    pub bytes_per_connection_after_hold: Option<f64>,
}

/// Runs the idle scenario. `memory`: whose RSS to read (default: `--server-pid`);
/// `reserved`: fds this process needs besides the generator's (an in-process server's).
pub fn run_idle(
    a: &IdleArgs,
    memory: Option<(ProcTarget, String)>,
    server_cpu: Option<ProcTarget>,
    reserved: u64,
) -> Result<IdleReport, String> {
    let (hold, settle) = a.check()?;
    let plan = a.client.plan()?;
    let memory =
        memory.or(plan.server_pid.map(|p| (ProcTarget::Pid(p), format!("server (pid {p})"))));
    let server_cpu = server_cpu.or(plan.server_pid.map(ProcTarget::Pid));
    let threads = plan.threads;
    let config = plan.client_config();
    // With a baseline, that many connections open first and stay open while the rest
    // open; memory is read between the two.
    let first = a.baseline.min(a.connections.saturating_sub(1));
    let mut s =
        Session::start_with(plan, a.connections, first, reserved, "idle", config, |_, _| {
            IdleScript::default()
        })?;
    let (conns, note) = (s.conns, s.note.clone());
    let baseline = first.min(conns.saturating_sub(1));
    if baseline > 0 {
        s.wait_ready();
        s.hold(Phase::Warmup, settle, "settle", |_| false);
    }
    let base_opened = if baseline > 0 { s.total_of(|g| &g.opened) } else { 0 };
    let rss0 = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    let mut probe = CpuProbe::new(server_cpu, ProcTarget::SelfThreads(THREAD_PREFIX));
    probe.begin();
    s.open_up_to(conns);
    let setup = s.wait_ready();
    let cpu = probe.end();
    let opened = s.total_of(|g| &g.opened);
    s.hold(Phase::Warmup, settle, "settle", |_| false);
    let rss1 = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    s.hold(Phase::Measure, hold, "hold", |_| false);
    let rss_end = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    let still_open = opened.saturating_sub(s.total_of(|g| &g.done));
    let (scripts, errors) = s.finish()?;
    Ok(IdleReport {
        connections: conns,
        opened,
        setup,
        rss: rss0.zip(rss1),
        rss_of: memory.map(|(_, d)| d).unwrap_or_default(),
        baseline: base_opened,
        rss_end,
        still_open,
        hold,
        cpu,
        threads,
        unexpected: scripts.iter().map(|s| s.unexpected).sum(),
        errors,
        notes: note.into_iter().collect(),
    })
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        out.push_str(&format!(
            "idle: {} connections held {:.1} s, {} generator thread(s)\n",
            Count(self.connections as u64),
            self.hold.as_secs_f64(),
            self.threads
        ));
        line(
            &mut out,
            "opened",
            format_args!(
                "{} in {:.2} s ({} upgrades/s)",
                Count(self.opened),
                self.setup.as_secs_f64(),
                Count(self.setup_rate() as u64)
            ),
        );
        if let Some(s) = self.cpu.server {
            line(
                &mut out,
                "setup CPU",
                format_args!(
                    "server {:.1}% of a core, {} per upgrade{}",
                    s.percent(),
                    Ns(s.per(self.opened)),
                    waited(&s)
                ),
            );
        }
        let g = self.cpu.generator;
        line(
            &mut out,
            "generator CPU",
            format_args!(
                "{:.1}% of {} thread(s) during setup{}",
                of_threads(&g, self.threads),
                self.threads,
                waited(&g)
            ),
        );
        match (self.rss, self.per_connection()) {
            (Some((a, b)), Some(per)) => {
                let over = if self.baseline > 0 {
                    format!(
                        " (marginal: over the last {} after {} already open)",
                        Count(self.opened - self.baseline),
                        Count(self.baseline)
                    )
                } else {
                    String::new()
                };
                line(
                    &mut out,
                    "memory",
                    format_args!(
                        "{} RSS {} -> {}: {} per connection{over}",
                        self.rss_of,
                        Bytes(a as f64),
                        Bytes(b as f64),
                        Bytes(per)
                    ),
                );
            }
            _ => line(&mut out, "memory", "not measured (give --server-pid)"),
        }
        if let (Some(end), Some(per)) = (self.rss_end, self.per_connection_after_hold()) {
            line(
                &mut out,
                "after the hold",
                format_args!(
                    "RSS {}: {} per connection (includes what heartbeats during the hold used)",
                    Bytes(end as f64),
                    Bytes(per)
                ),
            );
        }
        line(
            &mut out,
            "still open",
            format_args!("{} of {} after the hold", Count(self.still_open), Count(self.opened)),
        );
        if self.unexpected > 0 {
            line(&mut out, "messages", format_args!("{} unexpected", self.unexpected));
        }
        line(&mut out, "errors", &self.errors);
        for n in &self.notes {
            line(&mut out, "note", n);
        }
        f.write_str(out.trim_end())
    }
}
