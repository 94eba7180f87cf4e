//! The `idle` scenario: open N connections, hold them silent, and read how much the
//! server's resident memory grew per connection. Pings from the server's heartbeat are
//! answered by the protocol core, so connections stay alive while held.

use std::fmt;
use std::time::Duration;

use ringwire::frame::{Connection, Message};

use super::args::{cap_connections, IdleArgs};
use super::procfs::{fd_limit, rss_bytes, ProcTarget};
use super::report::{line, Bytes, Count, Errors};
use super::session::{CpuProbe, CpuUse, Session, THREAD_PREFIX};
use super::worker::{Clients, Cx, Gauge, Phase, Script};

/// Holds connections silently; counts anything the server sends.
#[derive(Debug, Default)]
pub struct IdleScript {
    pub unexpected: u64,
}

impl Script for IdleScript {
    fn on_open(&mut self, cx: &mut Cx<'_>, _local: usize, _global: usize, _ws: &mut Connection) {
        Gauge::bump(&cx.gauge.ready, 1);
    }
    fn on_message(&mut self, cx: &mut Cx<'_>, _l: usize, _ws: &mut Connection, _m: &Message) {
        Gauge::bump(&cx.gauge.msgs, 1);
        self.unexpected += 1;
    }
    fn on_phase(&mut self, _cx: &mut Cx<'_>, _clients: &mut Clients<'_>) {}
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
    pub fn failed(&self) -> bool {
        self.errors.total() > 0 || self.still_open < self.opened
    }
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
    let (conns, note) = cap_connections(a.connections, fd_limit(), reserved)?;
    let memory =
        memory.or(plan.server_pid.map(|p| (ProcTarget::Pid(p), format!("server (pid {p})"))));
    let server_cpu = server_cpu.or(plan.server_pid.map(ProcTarget::Pid));
    let threads = plan.threads;
    // With a baseline, a first session opens that many connections and keeps them open
    // while the second opens the rest; memory is read between the two.
    let baseline = a.baseline.min(conns.saturating_sub(1));
    let mut base = None;
    if baseline > 0 {
        let mut s0 =
            Session::start(plan.clone(), baseline, "idle baseline", |_| IdleScript::default())?;
        s0.wait_ready(baseline as u64);
        s0.hold(Phase::Warmup, settle, "settle", |_| false);
        base = Some(s0);
    }
    let base_opened = base.as_ref().map_or(0, |s0| s0.total_of(|g| &g.opened));
    let rss0 = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    let mut probe = CpuProbe::new(server_cpu, ProcTarget::SelfThreads(THREAD_PREFIX));
    probe.begin();
    let rest = conns - baseline;
    let mut s = Session::start(plan, rest, "idle", |_| IdleScript::default())?;
    let setup = s.wait_ready(rest as u64);
    let cpu = probe.end();
    let opened = base_opened + s.total_of(|g| &g.opened);
    s.hold(Phase::Warmup, settle, "settle", |_| false);
    let rss1 = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    s.hold(Phase::Measure, hold, "hold", |_| false);
    let rss_end = memory.as_ref().and_then(|(t, _)| rss_bytes(t).ok());
    let done = s.total_of(|g| &g.done) + base.as_ref().map_or(0, |s0| s0.total_of(|g| &g.done));
    let still_open = opened.saturating_sub(done);
    let (mut scripts, mut errors) = s.finish()?;
    if let Some(s0) = base {
        let (more, e0) = s0.finish()?;
        scripts.extend(more);
        errors.merge(&e0);
    }
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
            let per = s.cpu_ns.checked_div(self.opened).unwrap_or(0);
            line(
                &mut out,
                "setup CPU",
                format_args!(
                    "server {:.1}% of a core, {} per upgrade{}",
                    s.percent(),
                    super::report::Ns(per),
                    super::echo::waited(&s)
                ),
            );
        }
        let g = self.cpu.generator;
        line(
            &mut out,
            "generator CPU",
            format_args!(
                "{:.1}% of {} thread(s) during setup{}",
                g.percent() / self.threads as f64,
                self.threads,
                super::echo::waited(&g)
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
        if let (Some((a, _)), Some(end)) = (self.rss, self.rss_end) {
            let n = self.opened.saturating_sub(self.baseline).max(1);
            line(
                &mut out,
                "after the hold",
                format_args!(
                    "RSS {}: {} per connection (includes what heartbeats during the hold used)",
                    Bytes(end as f64),
                    Bytes((end as f64 - a as f64) / n as f64)
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
