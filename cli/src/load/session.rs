//! Running a scenario: an engine of load clients (one worker per generator thread, the
//! connections dialled on the workers), stepping through the phases with a progress
//! line, sampling CPU around the measured window, and collecting the results.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use ringwire::client::{ClientConfig, ClientSpec};
use ringwire::{Engine, Server};

use super::args::{cap_connections, source_ip, ClientPlan};
use super::clock::now_ns;
use super::procfs::{self, fd_limit, CpuSample, CpuWindow, ProcTarget};
use super::report::{Count, Errors};
use super::worker::{Control, Gauge, LoadHandler, Outcomes, Phase, Script, Shared};

/// Name prefix of the generator's threads (how the demo tells them from the server's).
pub const THREAD_PREFIX: &str = "rwload";

/// How long the close handshakes may make no progress before the engine closes what is
/// left.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A running generator: its engine, and what its handlers share with this thread.
pub struct Session<S: Script> {
    pub control: Arc<Control>,
    pub plan: Arc<ClientPlan>,
    /// Connections the run may open (asked for, capped by the fd limit on epoll).
    pub conns: usize,
    /// Why `conns` is less than asked for, if it is.
    pub note: Option<String>,
    engine: Option<Server>,
    shared: Arc<Shared<S>>,
    outcomes: Outcomes<S>,
    progress: Progress,
}

impl<S: Script> Session<S> {
    /// Starts the generator's engine for `want` connections (`reserved`: descriptors
    /// the process needs besides them, e.g. an in-process server's), each client with
    /// `plan.client_config()`; `make(i, conns)` builds worker `i`'s script. Connections
    /// start opening at once.
    pub fn start(
        plan: ClientPlan,
        want: usize,
        reserved: u64,
        label: &str,
        make: impl Fn(usize, usize) -> S,
    ) -> Result<Self, String> {
        let config = plan.client_config();
        Self::start_with(plan, want, want, reserved, label, config, make)
    }

    /// As [`Session::start`], with the clients' configuration given and only the first
    /// `open` connections opened until [`Session::open_up_to`] allows more.
    pub fn start_with(
        plan: ClientPlan,
        want: usize,
        open: usize,
        reserved: u64,
        label: &str,
        client: ClientConfig,
        make: impl Fn(usize, usize) -> S,
    ) -> Result<Self, String> {
        let plan = Arc::new(plan);
        let control = Arc::new(Control::new(plan.threads, 0));
        let shared = Arc::new(Shared {
            plan: plan.clone(),
            control: control.clone(),
            specs: OnceLock::new(),
            scripts: Mutex::new(Vec::new()),
            reconnect: client.retry.backoff.max_attempts != Some(1),
        });
        let outcomes: Outcomes<S> = Arc::new(Mutex::new((0..plan.threads).map(|_| None).collect()));
        let per_worker = want / plan.threads + 16;
        let mut frame = ringwire::frame::Config::default();
        // The generator accepts what any server sends (echoes up to 64 MiB).
        frame.max_frame_size = 64 << 20;
        frame.max_message_size = 64 << 20;
        if plan.deflate {
            frame.deflate = Some(ringwire::frame::DeflateConfig::default());
        }
        let mut builder = Engine::builder()
            .workers(plan.threads)
            .thread_name(format!("{THREAD_PREFIX}-"))
            .backend(plan.backend)
            .frame(frame)
            // The scripts bound what they send (a window per connection): the engine's
            // own send limit must not cut them short.
            .max_queued_bytes(1 << 30)
            .max_connections_per_worker(per_worker.max(1024))
            // What is left open at the end closes with the engine: give a worker with
            // many connections the time to close them.
            .shutdown_timeout(Duration::from_secs(5 + (per_worker / 50_000) as u64));
        builder = if plan.cpus.is_empty() {
            builder.pin_cpus(false)
        } else {
            builder.cpus(Some(plan.cpus.clone()))
        };
        let (sh, out) = (shared.clone(), outcomes.clone());
        let engine = builder
            .start(move |i| LoadHandler::new(i, sh.clone(), out.clone()))
            .map_err(|e| format!("generator engine: {e}"))?;
        let backend = engine.backend().name;
        // Outgoing sockets are direct descriptors on io_uring: only epoll counts them
        // against the fd limit.
        let (conns, note) = if backend == "epoll" {
            cap_connections(want, fd_limit(), reserved)?
        } else {
            cap_connections(want, u64::MAX, reserved)?
        };
        let mut specs: Vec<ClientSpec> = Vec::new();
        for t in &plan.targets {
            for s in 0..usize::from(plan.source_ips.max(1)) {
                let mut cfg = client.clone();
                if plan.source_ips > 1 {
                    cfg.bind = Some(std::net::SocketAddr::new(source_ip(s, plan.source_ips), 0));
                }
                specs.push(engine.client_spec(&t.url, cfg).map_err(|e| format!("{}: {e}", t.url))?);
            }
        }
        let _ = shared.specs.set(specs);
        *shared.scripts.lock().unwrap_or_else(PoisonError::into_inner) =
            (0..plan.threads).map(|i| Some(make(i, conns))).collect();
        control.set_limit(open.min(conns));
        engine.wake_all();
        let progress = Progress::new(label, plan.progress);
        Ok(Self { control, plan, conns, note, engine: Some(engine), shared, outcomes, progress })
    }

    /// Allows connections up to `n` (of `conns`) to open.
    pub fn open_up_to(&mut self, n: usize) {
        self.control.set_limit(n.min(self.conns));
        self.ring();
    }

    fn ring(&self) {
        if let Some(e) = &self.engine {
            e.wake_all();
        }
    }

    /// Sum of a live counter over all workers.
    pub fn total_of(&self, f: impl Fn(&Gauge) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.control.total(f)
    }

    /// Waits until the connections allowed so far are ready or failed (or the connect
    /// timeout); returns how long it took.
    pub fn wait_ready(&mut self) -> Duration {
        let want = self.control.limit() as u64;
        let start = Instant::now();
        self.progress.stage("connect", None);
        loop {
            let ready = self.total_of(|g| &g.ready);
            let failed = self.total_of(|g| &g.failed);
            if ready + failed >= want || start.elapsed() >= self.plan.connect_timeout {
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
        self.ring();
        let start = Instant::now();
        self.progress.stage(stage, Some(d));
        while start.elapsed() < d && !until(&self.control) {
            self.progress.tick(&self.control, String::new);
            std::thread::sleep(Duration::from_millis(5).min(d.saturating_sub(start.elapsed())));
        }
        self.progress.clear();
    }

    /// Closes every connection, stops the engine and returns the scripts and errors.
    pub fn finish(mut self) -> Result<(Vec<S>, Errors), String> {
        self.control.set_phase(Phase::Close);
        self.ring();
        // Closes go out in batches: wait while they make progress.
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let done = self.total_of(|g| &g.done);
            if done >= self.total_of(|g| &g.dialled) {
                break;
            }
            if done != last {
                (last, since) = (done, Instant::now());
            } else if since.elapsed() >= CLOSE_GRACE {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown().map_err(|e| format!("generator engine: {e}"))?;
        }
        let mut out = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut scripts = Vec::new();
        let mut errors = Errors::default();
        for (i, o) in out.iter_mut().enumerate() {
            match o.take() {
                Some((s, e)) => {
                    errors.merge(&e);
                    scripts.push(s);
                }
                None => {
                    // A worker that never woke still holds its script in `shared`.
                    let mut left =
                        self.shared.scripts.lock().unwrap_or_else(PoisonError::into_inner);
                    match left.get_mut(i).and_then(Option::take) {
                        Some(s) => scripts.push(s),
                        None => return Err(format!("generator worker {i} left no results")),
                    }
                }
            }
        }
        Ok((scripts, errors))
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
