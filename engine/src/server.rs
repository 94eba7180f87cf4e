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

use crate::config::{BackendChoice, Backpressure, ConfigError, EngineConfig, OriginCheck};
use crate::handle::{Command, Publisher, WorkerShared};
use crate::handler::Handler;
use crate::stats::{StatsSnapshot, WorkerStats};
use crate::sys::uring::{RingConfig, UringDriver};
use crate::sys::{epoll::EpollDriver, net, uring, Driver};
use crate::worker::{Core, Worker};

/// Why an engine could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        source: io::Error,
    },
    /// io_uring was required but is not available.
    #[error("io_uring unavailable: {0}")]
    NoIoUring(String),
    /// A worker thread panicked or failed.
    #[error("worker {0} failed: {1}")]
    Worker(usize, String),
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

    /// Starts the workers. `factory(i)` makes worker `i`'s handler, on that worker's
    /// thread. Returns once every worker is listening.
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
                Err(e) => return Err(EngineError::NoIoUring(e.to_string())),
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
        let config = Arc::new(config);
        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<BackendInfo, String>>();

        let mut threads = Vec::new();
        for (i, ls) in listeners.into_iter().enumerate() {
            let config = config.clone();
            let factory = factory.clone();
            let me = shared[i].clone();
            let all = shared.clone();
            let wake = wake_fds[i].clone();
            let stats = stats[i].clone();
            let ready = ready_tx.clone();
            let core_id = cores.as_ref().and_then(|c| c.get(i % c.len().max(1)).copied());
            let fallback_reason = fallback_reason.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringwire-w{i}"))
                .spawn(move || -> io::Result<()> {
                    if let Some(id) = core_id {
                        core_affinity::set_for_current(id);
                    }
                    let core = Core::new(i as u16, config.clone(), stats, me, all);
                    let handler = factory(i);
                    let mut uring_err = None;
                    if use_uring {
                        let direct_table = direct_table(&config);
                        let rings = RingConfig {
                            entries: config.ring_entries,
                            recv_buffers: config.recv_buffers as u16,
                            recv_buffer_size: config.recv_buffer_size,
                            direct_table,
                            max_rings: direct_table.map_or(1, |n| {
                                (config.max_connections_per_worker + 64).div_ceil(n as usize)
                            }),
                            max_conns: config.max_connections_per_worker,
                            busy_poll: config.busy_poll,
                        };
                        match UringDriver::new(rings, wake.clone()) {
                            Ok(d) => return run(d, handler, core, ls, None, &ready),
                            Err(e) if choice == BackendChoice::IoUring => {
                                let _ = ready.send(Err(format!("io_uring setup: {e}")));
                                return Err(e);
                            }
                            Err(e) => uring_err = Some(format!("io_uring setup failed ({e})")),
                        }
                    }
                    let d = match EpollDriver::new(
                        config.recv_buffer_size as usize,
                        config.max_connections_per_worker,
                        wake,
                    ) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready.send(Err(format!("epoll setup: {e}")));
                            return Err(e);
                        }
                    };
                    run(d, handler, core, ls, uring_err.or(fallback_reason), &ready)
                })
                .map_err(io_err("spawn worker"))?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut backend = None;
        for i in 0..n {
            match ready_rx.recv() {
                Ok(Ok(info)) => backend = backend.or(Some(info)),
                Ok(Err(e)) => {
                    let server = Server { threads, shared, stats, local_addrs, backend: None };
                    let _ = server.shutdown();
                    return Err(EngineError::Worker(i, e));
                }
                Err(_) => return Err(EngineError::Worker(i, "exited during startup".into())),
            }
        }
        Ok(Server { threads, shared, stats, local_addrs, backend })
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

fn run<D: Driver, H: Handler>(
    mut driver: D,
    handler: H,
    core: Core,
    listeners: Vec<OwnedFd>,
    fallback_reason: Option<String>,
    ready: &mpsc::Sender<Result<BackendInfo, String>>,
) -> io::Result<()> {
    for l in listeners {
        if let Err(e) = driver.add_listener(l) {
            let _ = ready.send(Err(format!("listen: {e}")));
            return Err(e);
        }
    }
    let info = BackendInfo { name: driver.name(), features: driver.features(), fallback_reason };
    core.stats.rings.store(driver.rings() as u64, std::sync::atomic::Ordering::Relaxed);
    let _ = ready.send(Ok(info));
    Worker { driver, handler, core }.run()
}

/// A running engine. Dropping it shuts it down gracefully.
pub struct Server {
    threads: Vec<JoinHandle<io::Result<()>>>,
    shared: Arc<[Arc<WorkerShared>]>,
    stats: Vec<Arc<WorkerStats>>,
    local_addrs: Vec<SocketAddr>,
    backend: Option<BackendInfo>,
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
    /// join the workers.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        for w in self.shared.iter() {
            // Retry while a full queue drains: shutdown must get through.
            let mut cmd = Command::Shutdown;
            for _ in 0..10_000 {
                match w.push(cmd) {
                    Ok(()) => break,
                    Err(c) => {
                        cmd = c;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let mut result = Ok(());
        for (i, t) in self.threads.drain(..).enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(EngineError::Worker(i, e.to_string())),
                Err(_) => result = Err(EngineError::Worker(i, "panicked".into())),
            }
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
