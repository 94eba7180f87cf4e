//! Starting and stopping an engine: listeners, worker threads, backend choice.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringwire_frame::handshake::HandshakeLimits;
use ringwire_frame::Config as FrameConfig;

use crate::clock::{Clock, Monotonic};
use crate::config::{BackendChoice, Backpressure, ConfigError, EngineConfig, OriginCheck};
use crate::handle::{Publisher, WorkerShared};
use crate::handler::Handler;
use crate::shard::Core;
use crate::stats::{StatsSnapshot, WorkerStats};
use crate::sys::uring::{RingConfig, UringDriver};
use crate::sys::{epoll::EpollDriver, net, uring, Driver};
use crate::worker::Worker;

/// Why an engine could not start or stopped badly. Every variant that comes from a
/// system call keeps its `io::Error` as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A system call failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// io_uring was required ([`BackendChoice::IoUring`]) but is not available.
    #[error("io_uring unavailable")]
    NoIoUring(#[source] io::Error),
    /// A worker could not be set up (its ring, its listeners).
    #[error("worker {worker}: {context}")]
    WorkerSetup {
        /// The worker.
        worker: usize,
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A worker's handler factory, or the worker itself, panicked.
    #[error("worker {worker} panicked: {message}")]
    WorkerPanicked {
        /// The worker.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// A worker's event loop failed.
    #[error("worker {worker} failed")]
    WorkerFailed {
        /// The worker.
        worker: usize,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Shutdown gave up waiting: these workers had not stopped by the deadline (a handler
    /// that blocks, say). Their threads are left running, detached.
    #[error(
        "shutdown timed out: workers {workers:?} still running with {connections} connections"
    )]
    ShutdownTimeout {
        /// The workers still running.
        workers: Vec<usize>,
        /// Connections they still had open.
        connections: u64,
    },
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> EngineError {
    move |source| EngineError::Io { context, source }
}

/// Which backend the workers run and what it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// "io_uring" or "epoll".
    pub name: &'static str,
    /// Kernel features in use.
    pub features: Vec<&'static str>,
    /// Why epoll was chosen, if io_uring was not.
    pub fallback_reason: Option<String>,
}

/// The entry point: `Engine::builder()`.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// A builder with default configuration.
    pub fn builder() -> EngineBuilder {
        EngineBuilder { config: EngineConfig::default() }
    }
}

/// Configures and starts an engine.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    config: EngineConfig,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.config.$name = v;
            self
        }
    };
}

impl EngineBuilder {
    /// Adds an address to listen on (port 0 picks a free port; see [`Server::local_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen.push(addr);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration so far.
    pub fn current(&self) -> &EngineConfig {
        &self.config
    }

    setter!(/// See [`EngineConfig::workers`].
        workers: usize);
    setter!(/// See [`EngineConfig::pin_cpus`].
        pin_cpus: bool);
    setter!(/// See [`EngineConfig::backend`].
        backend: BackendChoice);
    setter!(/// See [`EngineConfig::ring_entries`].
        ring_entries: u32);
    setter!(/// See [`EngineConfig::recv_buffers`].
        recv_buffers: u32);
    setter!(/// See [`EngineConfig::recv_buffer_size`].
        recv_buffer_size: u32);
    setter!(/// See [`EngineConfig::epoll_read_size`].
        epoll_read_size: usize);
    setter!(/// See [`EngineConfig::direct_descriptors`].
        direct_descriptors: bool);
    setter!(/// See [`EngineConfig::fixed_files_per_ring`].
        fixed_files_per_ring: Option<u32>);
    setter!(/// See [`EngineConfig::busy_poll`].
        busy_poll: Option<Duration>);
    setter!(/// See [`EngineConfig::max_connections_per_worker`].
        max_connections_per_worker: usize);
    setter!(/// See [`EngineConfig::handshake_timeout`].
        handshake_timeout: Duration);
    setter!(/// See [`EngineConfig::handshake_limits`].
        handshake_limits: HandshakeLimits);
    setter!(/// See [`EngineConfig::frame`].
        frame: FrameConfig);
    setter!(/// See [`EngineConfig::max_queued_bytes`].
        max_queued_bytes: usize);
    setter!(/// See [`EngineConfig::backpressure`].
        backpressure: Backpressure);
    setter!(/// See [`EngineConfig::low_watermark`].
        low_watermark: usize);
    setter!(/// See [`EngineConfig::command_queue`].
        command_queue: usize);
    setter!(/// See [`EngineConfig::shutdown_timeout`].
        shutdown_timeout: Duration);
    setter!(/// See [`EngineConfig::tcp_keepalive`].
        tcp_keepalive: Option<Duration>);

    /// Accept only upgrades whose `Origin` passes `check` (others get 403).
    pub fn origin_check(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        let check: OriginCheck = Arc::new(check);
        self.config.origin_check = Some(check);
        self
    }

    setter!(/// See [`EngineConfig::max_topics_per_connection`].
        max_topics_per_connection: usize);
    setter!(/// See [`EngineConfig::max_topic_len`].
        max_topic_len: usize);

    /// Starts the workers. `factory(i)` makes worker `i`'s handler, on that worker's
    /// thread. Returns once every worker is listening.
    ///
    /// If any worker fails to start (its ring or listener cannot be set up, or its
    /// factory panics), the workers already started are shut down, every thread started
    /// is joined, and the first failure is returned.
    pub fn start<H, F>(self, factory: F) -> Result<Server, EngineError>
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let config = self.config;
        config.validate()?;
        let n = config.workers;

        // Backend: with `Auto`, the environment may choose.
        let choice = match (config.backend, std::env::var("RINGWIRE_BACKEND").ok().as_deref()) {
            (BackendChoice::Auto, Some("epoll")) => BackendChoice::Epoll,
            (BackendChoice::Auto, Some("io_uring" | "uring")) => BackendChoice::IoUring,
            (c, _) => c,
        };
        // The probe's throwaway ring runs on a short-lived thread: tearing a ring down
        // sends task work to the threads that used it, which would interrupt the
        // caller's next blocking syscall with EINTR.
        let probe = || {
            std::thread::spawn(uring::probe)
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
        };
        let (use_uring, fallback_reason) = match choice {
            BackendChoice::Epoll => (false, Some("epoll requested".to_owned())),
            BackendChoice::IoUring => match probe() {
                Ok(_) => (true, None),
                Err(e) => return Err(EngineError::NoIoUring(e)),
            },
            BackendChoice::Auto => match probe() {
                Ok(_) => (true, None),
                // ENOSYS (old kernel), EPERM (seccomp, sysctl io_uring_disabled): fall back.
                Err(e) => (false, Some(format!("io_uring unavailable ({e})"))),
            },
        };

        // One SO_REUSEPORT listener per worker and address; port 0 resolves once.
        let mut listeners: Vec<Vec<OwnedFd>> = (0..n).map(|_| Vec::new()).collect();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let ka = config.tcp_keepalive;
            let first = net::listener(*addr, 4096, ka).map_err(io_err("bind listener"))?;
            let bound = net::local_addr(&first).map_err(io_err("listener address"))?;
            local_addrs.push(bound);
            listeners[0].push(first);
            for l in listeners.iter_mut().skip(1) {
                l.push(net::listener(bound, 4096, ka).map_err(io_err("bind listener"))?);
            }
        }

        let mut wake_fds = Vec::new();
        for _ in 0..n {
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| EngineError::Io { context: "eventfd", source: e.into() })?;
            wake_fds.push(Arc::new(fd));
        }
        let shared: Arc<[Arc<WorkerShared>]> = wake_fds
            .iter()
            .map(|fd| Arc::new(WorkerShared::new(config.command_queue, fd.clone())))
            .collect();
        let stats: Vec<Arc<WorkerStats>> = (0..n).map(|_| Arc::default()).collect();
        let cores = if config.pin_cpus { core_affinity::get_core_ids() } else { None };
        let budget = config.shutdown_timeout + config.frame.close_timeout + JOIN_GRACE;
        let config = Arc::new(config);
        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<BackendInfo, EngineError>)>();

        let mut threads = Vec::new();
        for (i, ls) in listeners.into_iter().enumerate() {
            let setup = WorkerSetup {
                index: i,
                config: config.clone(),
                me: shared[i].clone(),
                all: shared.clone(),
                wake: wake_fds[i].clone(),
                stats: stats[i].clone(),
                core_id: cores.as_ref().and_then(|c| c.get(i % c.len().max(1)).copied()),
                use_uring,
                require_uring: choice == BackendChoice::IoUring,
                fallback_reason: fallback_reason.clone(),
                listeners: ls,
            };
            let factory = factory.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringwire-w{i}"))
                .spawn(move || setup.run(&*factory, ready));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(ready_tx);
                    let server =
                        Server { threads, shared, stats, local_addrs, backend: None, budget };
                    server.abort_start();
                    return Err(EngineError::Io { context: "spawn worker", source: e });
                }
            }
        }
        // Every worker drops its sender once it reported, or when it dies: the loop below
        // ends either with every report or with the channel closed.
        drop(ready_tx);
        let mut backend = None;
        let mut failure = None;
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((_, Ok(info))) => backend = backend.or(Some(info)),
                Ok((_, Err(e))) => {
                    failure = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut server = Server { threads, shared, stats, local_addrs, backend, budget };
        if failure.is_none() && server.backend.is_none() {
            // No report at all and no error: a worker died before saying anything.
            failure = Some(EngineError::WorkerPanicked {
                worker: 0,
                message: "exited during startup".into(),
            });
        }
        if let Some(e) = failure {
            server.backend = None;
            server.abort_start();
            return Err(e);
        }
        if let Some(info) = &server.backend {
            tracing::info!(
                workers = n,
                backend = info.name,
                features = ?info.features,
                fallback = info.fallback_reason.as_deref().unwrap_or(""),
                addrs = ?server.local_addrs,
                "ringwire engine started"
            );
        }
        Ok(server)
    }
}

/// The fixed-file table size for direct descriptors, if they are wanted: room for the
/// connection limit plus some refused ones in flight, capped at RLIMIT_NOFILE.
fn direct_table(config: &EngineConfig) -> Option<u32> {
    if !config.direct_descriptors {
        return None;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::from(u32::MAX));
    let want = match config.fixed_files_per_ring {
        Some(n) => u64::from(n),
        None => config.max_connections_per_worker as u64 + 64,
    };
    Some(want.min(limit).clamp(1, 1 << 20) as u32)
}

/// What one worker thread starts from.
struct WorkerSetup {
    index: usize,
    config: Arc<EngineConfig>,
    me: Arc<WorkerShared>,
    all: Arc<[Arc<WorkerShared>]>,
    wake: Arc<OwnedFd>,
    stats: Arc<WorkerStats>,
    core_id: Option<core_affinity::CoreId>,
    use_uring: bool,
    require_uring: bool,
    fallback_reason: Option<String>,
    listeners: Vec<OwnedFd>,
}

type Ready = mpsc::Sender<(usize, Result<BackendInfo, EngineError>)>;

impl WorkerSetup {
    /// The worker thread: sets up its driver and handler, reports to `start`, runs.
    /// Every way out before the report reports an error, a factory's panic included.
    fn run<H: Handler, F: Fn(usize) -> H>(
        self,
        factory: &F,
        ready: Ready,
    ) -> Result<(), EngineError> {
        let i = self.index;
        let fail = |ready: Ready, e: EngineError| {
            let _ = ready.send((i, Err(e)));
        };
        if let Some(id) = self.core_id {
            core_affinity::set_for_current(id);
        }
        let handler = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(i))) {
            Ok(h) => h,
            Err(p) => {
                let message = panic_message(&*p);
                fail(ready, EngineError::WorkerPanicked { worker: i, message: message.clone() });
                return Err(EngineError::WorkerPanicked { worker: i, message });
            }
        };
        let core = Core::new(
            i as u16,
            self.config.clone(),
            self.stats.clone(),
            self.me.clone(),
            self.all.clone(),
            Monotonic.now(),
        );
        let config = &self.config;
        let mut uring_err = None;
        if self.use_uring {
            let direct_table = direct_table(config);
            let rings = RingConfig {
                entries: config.ring_entries,
                recv_buffers: config.recv_buffers as u16,
                recv_buffer_size: config.recv_buffer_size,
                direct_table,
                max_rings: direct_table
                    .map_or(1, |n| (config.max_connections_per_worker + 64).div_ceil(n as usize)),
                max_conns: config.max_connections_per_worker,
                busy_poll: config.busy_poll,
            };
            match UringDriver::new(rings, self.wake.clone()) {
                Ok(d) => return self.serve(d, handler, core, None, ready),
                Err(source) if self.require_uring => {
                    let context = "io_uring setup";
                    fail(ready, EngineError::WorkerSetup { worker: i, context, source });
                    return Ok(());
                }
                Err(e) => uring_err = Some(format!("io_uring setup failed ({e})")),
            }
        }
        let epoll = EpollDriver::new(
            config.epoll_read_size,
            config.max_connections_per_worker,
            self.wake.clone(),
        );
        match epoll {
            Ok(d) => {
                let reason = uring_err.or(self.fallback_reason.clone());
                self.serve(d, handler, core, reason, ready)
            }
            Err(source) => {
                fail(ready, EngineError::WorkerSetup { worker: i, context: "epoll setup", source });
                Ok(())
            }
        }
    }

    fn serve<D: Driver, H: Handler>(
        self,
        mut driver: D,
        handler: H,
        core: Core,
        fallback_reason: Option<String>,
        ready: Ready,
    ) -> Result<(), EngineError> {
        let worker = self.index;
        for l in self.listeners {
            if let Err(source) = driver.add_listener(l) {
                let e = EngineError::WorkerSetup { worker, context: "listen", source };
                let _ = ready.send((worker, Err(e)));
                return Ok(());
            }
        }
        let info =
            BackendInfo { name: driver.name(), features: driver.features(), fallback_reason };
        core.stats.rings.store(driver.rings() as u64, std::sync::atomic::Ordering::Relaxed);
        let _ = ready.send((worker, Ok(info)));
        // The sender goes now: `start` must see the channel close if a later worker dies.
        drop(ready);
        Worker { driver, handler, core, clock: Monotonic }
            .run()
            .map_err(|source| EngineError::WorkerFailed { worker, source })
    }
}

/// A running engine. Dropping it shuts it down gracefully.
pub struct Server {
    threads: Vec<JoinHandle<Result<(), EngineError>>>,
    shared: Arc<[Arc<WorkerShared>]>,
    stats: Vec<Arc<WorkerStats>>,
    local_addrs: Vec<SocketAddr>,
    backend: Option<BackendInfo>,
    /// The longest a worker may take to stop: its shutdown timeout, then the close
    /// timeout of what it closed last, and [`JOIN_GRACE`].
    budget: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("workers", &self.threads.len())
            .field("local_addrs", &self.local_addrs)
            .field("backend", &self.backend)
            .finish()
    }
}

/// How long `shutdown` waits for the workers beyond their own shutdown timeout and the
/// close timeout (a worker stuck in a handler never finishes).
const JOIN_GRACE: Duration = Duration::from_secs(2);

impl Server {
    /// The first listening address (with the port chosen if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listening address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The backend in use.
    pub fn backend(&self) -> &BackendInfo {
        self.backend.as_ref().expect("set once every worker started")
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.len()
    }

    /// Counters summed over all workers.
    pub fn stats(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for s in &self.stats {
            total.merge(&s.snapshot());
        }
        total
    }

    /// Counters of each worker.
    pub fn worker_stats(&self) -> Vec<StatsSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// A publisher for topics, usable from any thread.
    pub fn publisher(&self) -> Publisher {
        Publisher { workers: self.shared.clone() }
    }

    /// Graceful shutdown: stop accepting, close every connection with 1001, wait up to
    /// the shutdown timeout for close handshakes, close what is left, drain the rings and
    /// join the workers. Waits at most the shutdown timeout plus the close timeout plus
    /// two seconds: workers still running then (a handler that blocks) are reported in
    /// [`EngineError::ShutdownTimeout`] and left detached.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop()
    }

    /// Stops the workers of a start that failed: they have no connections yet.
    fn abort_start(mut self) {
        let _ = self.stop_within(JOIN_GRACE);
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        self.stop_within(self.budget)
    }

    fn stop_within(&mut self, budget: Duration) -> Result<(), EngineError> {
        for w in self.shared.iter() {
            w.request_shutdown();
        }
        let deadline = std::time::Instant::now() + budget;
        let mut result = Ok(());
        let mut stuck = Vec::new();
        for (i, t) in self.threads.drain(..).enumerate() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if !t.is_finished() {
                stuck.push(i);
                continue; // dropped: the thread is detached
            }
            let r = match t.join() {
                Ok(r) => r,
                Err(p) => {
                    Err(EngineError::WorkerPanicked { worker: i, message: panic_message(&*p) })
                }
            };
            if let Err(e) = r {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if !stuck.is_empty() {
            let connections = stuck.iter().map(|&i| self.stats[i].snapshot().connections).sum();
            tracing::error!(workers = ?stuck, connections, "shutdown timed out");
            return Err(EngineError::ShutdownTimeout { workers: stuck, connections });
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.stop();
        }
    }
}
