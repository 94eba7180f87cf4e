//! Running a scenario: spawning the worker threads, stepping through the phases with a
//! progress line, sampling CPU around the measured window, and collecting the results.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::args::ClientPlan;
use super::clock::now_ns;
use super::procfs::{self, CpuSample, CpuWindow, ProcTarget};
use super::report::{Count, Errors};
use super::worker::{Control, Gauge, Phase, Script, Worker, WorkerOutcome};

/// Name prefix of the generator's threads (how the demo tells them from the server's).
pub const THREAD_PREFIX: &str = "rwload";

/// 8 bytes from the OS, read once; every connection's nonce and mask seed derive from it.
fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        // No /dev/urandom: the clock still makes nonces differ between runs.
        Err(_) => now_ns() ^ u64::from(std::process::id()) << 32,
    }
}

/// A running set of generator threads.
pub struct Session<S: Script> {
    pub control: Arc<Control>,
    pub plan: Arc<ClientPlan>,
    handles: Vec<JoinHandle<Result<WorkerOutcome<S>, String>>>,
    progress: Progress,
}

impl<S: Script> Session<S> {
    /// Starts `plan.threads` workers for `total` connections; `make(i)` builds worker
    /// `i`'s script. Connections start opening at once.
    pub fn start(
        plan: ClientPlan,
        total: usize,
        label: &str,
        make: impl Fn(usize) -> S,
    ) -> Result<Self, String> {
        let plan = Arc::new(plan);
        let control = Arc::new(Control::new(plan.threads));
        let seed = os_seed();
        let mut handles = Vec::new();
        for i in 0..plan.threads {
            let w = Worker::new(i, total, plan.clone(), control.clone(), make(i), seed)?;
            let cpu = (!plan.cpus.is_empty()).then(|| plan.cpus[i % plan.cpus.len()]);
            let h = std::thread::Builder::new()
                .name(format!("{THREAD_PREFIX}-{i}"))
                .spawn(move || {
                    if let Some(id) = cpu {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                            return Err(format!("cannot pin to CPU {id}"));
                        }
                    }
                    w.run()
                })
                .map_err(|e| format!("spawn generator thread: {e}"))?;
            handles.push(h);
        }
        let progress = Progress::new(label, plan.progress);
        Ok(Self { control, plan, handles, progress })
    }

    /// Sum of a live counter over all workers.
    pub fn total_of(&self, f: impl Fn(&Gauge) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.control.total(f)
    }

    /// Waits until `want` connections are ready or failed (or the connect timeout);
    /// returns how long it took.
    pub fn wait_ready(&mut self, want: u64) -> Duration {
        let start = Instant::now();
        self.progress.stage("connect", None);
        loop {
            let ready = self.total_of(|g| &g.ready);
            let failed = self.total_of(|g| &g.failed);
            if ready + failed >= want || start.elapsed() >= self.plan.connect_timeout {
                break;
            }
            if self.workers_gone() {
                break;
            }
            self.progress
                .tick(&self.control, || format!("{} of {} ready", Count(ready), Count(want)));
            std::thread::sleep(Duration::from_millis(5));
        }
        self.progress.clear();
        start.elapsed()
    }

    /// Enters `phase` and stays in it for `d` (or until `until` says done), with progress.
    pub fn hold(
        &mut self,
        phase: Phase,
        d: Duration,
        stage: &str,
        mut until: impl FnMut(&Control) -> bool,
    ) {
        self.control.set_phase(phase);
        let start = Instant::now();
        self.progress.stage(stage, Some(d));
        while start.elapsed() < d && !until(&self.control) && !self.workers_gone() {
            self.progress.tick(&self.control, String::new);
            std::thread::sleep(Duration::from_millis(5).min(d.saturating_sub(start.elapsed())));
        }
        self.progress.clear();
    }

    fn workers_gone(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Closes every connection, joins the threads and returns their scripts and errors.
    pub fn finish(mut self) -> Result<(Vec<S>, Errors), String> {
        self.control.set_phase(Phase::Close);
        let mut scripts = Vec::new();
        let mut errors = Errors::default();
        let mut failure = None;
        for (i, h) in self.handles.drain(..).enumerate() {
            match h.join() {
                Ok(Ok(out)) => {
                    errors.merge(&out.errors);
                    scripts.push(out.script);
                }
                Ok(Err(e)) => failure = Some(format!("generator thread {i}: {e}")),
                Err(_) => failure = Some(format!("generator thread {i} panicked")),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((scripts, errors)),
        }
    }
}

impl<S: Script> Drop for Session<S> {
    fn drop(&mut self) {
        self.control.set_phase(Phase::Stop);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// CPU time of the server (if known) and of the generator around a window.
pub struct CpuProbe {
    server: Option<ProcTarget>,
    generator: ProcTarget,
    start: Option<(u64, Option<CpuSample>, CpuSample)>,
}

/// The CPU figures of a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server: Option<CpuWindow>,
    pub generator: CpuWindow,
}

impl CpuProbe {
    pub fn new(server: Option<ProcTarget>, generator: ProcTarget) -> Self {
        Self { server, generator, start: None }
    }

    fn read(&self) -> (u64, Option<CpuSample>, CpuSample) {
        let s = self.server.as_ref().and_then(|t| procfs::cpu_ns(t).ok());
        let g = procfs::cpu_ns(&self.generator).unwrap_or_default();
        (now_ns(), s, g)
    }

    pub fn begin(&mut self) {
        self.start = Some(self.read());
    }

    pub fn end(&self) -> CpuUse {
        let Some((t0, s0, g0)) = self.start else { return CpuUse::default() };
        let (t1, s1, g1) = self.read();
        let wall_ns = t1.saturating_sub(t0);
        let window = |a: CpuSample, b: CpuSample| CpuWindow {
            cpu_ns: b.run_ns.saturating_sub(a.run_ns),
            wait_ns: b.wait_ns.saturating_sub(a.wait_ns),
            wall_ns,
            user_ticks: b.user_ticks.saturating_sub(a.user_ticks),
            sys_ticks: b.sys_ticks.saturating_sub(a.sys_ticks),
        };
        CpuUse { server: s0.zip(s1).map(|(a, b)| window(a, b)), generator: window(g0, g1) }
    }
}

/// The one-line progress display on stderr, updated every second: in place on a
/// terminal, a line per second otherwise; nothing when disabled.
struct Progress {
    enabled: bool,
    label: String,
    stage: String,
    planned: Option<Duration>,
    started: Instant,
    last: Instant,
    last_msgs: u64,
    tty: bool,
    shown: bool,
}

impl Progress {
    fn new(label: &str, enabled: bool) -> Self {
        let now = Instant::now();
        Self {
            enabled,
            label: label.to_owned(),
            stage: String::new(),
            planned: None,
            started: now,
            last: now,
            last_msgs: 0,
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn stage(&mut self, stage: &str, planned: Option<Duration>) {
        self.stage = stage.to_owned();
        self.planned = planned;
        self.started = Instant::now();
        self.last = self.started;
    }

    fn tick(&mut self, control: &Control, extra: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let since = now.duration_since(self.last);
        if since < Duration::from_secs(1) {
            return;
        }
        let msgs = control.total(|g| &g.msgs);
        let rate = (msgs.saturating_sub(self.last_msgs)) as f64 / since.as_secs_f64();
        self.last = now;
        self.last_msgs = msgs;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let of = self.planned.map(|p| format!("/{:.0}", p.as_secs_f64())).unwrap_or_default();
        let open = control.total(|g| &g.opened)
            - control.total(|g| &g.done).min(control.total(|g| &g.opened));
        let line = format!(
            "[{} {} {:.0}{} s] {} open, {} msg/s, {} errors {}",
            self.label,
            self.stage,
            elapsed,
            of,
            Count(open),
            Count(rate as u64),
            Count(control.total(|g| &g.errors)),
            extra()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r{line:<100}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown && self.tty {
            let _ = write!(std::io::stderr(), "\r{:<100}\r", "");
        }
        self.shown = false;
    }
}
