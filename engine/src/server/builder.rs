//! Configuring and starting an engine: backend choice, listeners, worker threads.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ringwire_frame::handshake::HandshakeLimits;
use ringwire_frame::Config as FrameConfig;

use super::thread::WorkerSetup;
use super::{io_err, BackendInfo, EngineError, Server, JOIN_GRACE};
use crate::config::{BackendChoice, Backpressure, EngineConfig, OriginCheck};
use crate::handle::WorkerShared;
use crate::handler::Handler;
use crate::stats::WorkerStats;
use crate::sys::{net, uring};

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

    /// Joins a cluster of nodes through NATS: see [`EngineConfig::cluster`].
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: crate::cluster::ClusterConfig) -> Self {
        self.config.cluster = Some(cluster);
        self
    }

    /// Serves `GET /metrics`, `/healthz` and `/readyz` on `addr` (port 0 picks a free
    /// port: [`Server::admin_addr`]). See [`EngineConfig::admin`].
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.config.admin = Some(addr);
        self
    }

    setter!(/// See [`EngineConfig::workers`].
        workers: usize);
    setter!(/// See [`EngineConfig::pin_cpus`].
        pin_cpus: bool);
    setter!(/// See [`EngineConfig::cpus`].
        cpus: Option<Vec<usize>>);
    setter!(/// See [`EngineConfig::thread_name`].
        thread_name: String);
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
    setter!(/// See [`EngineConfig::tcp_user_timeout`].
        tcp_user_timeout: Option<Duration>);
    setter!(/// See [`EngineConfig::outbox`].
        outbox: Option<crate::outbox::OutboxSettings>);
    setter!(/// See [`EngineConfig::receipts`].
        receipts: Option<crate::outbox::ReceiptSettings>);

    /// Serve `wss://`: TLS on every accepted connection. See [`EngineConfig::tls`].
    pub fn tls(mut self, tls: crate::tls::TlsServerConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Decide who may connect and to which topics they may subscribe and publish: see
    /// [`EngineConfig::authorizer`].
    pub fn authorizer(mut self, a: impl crate::auth::Authorizer) -> Self {
        self.config.authorizer = Some(Arc::new(a));
        self
    }

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
    /// thread. Returns once every worker is listening (an engine with no listen address
    /// only dials: [`Server::connect`]).
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
            let (ka, ut) = (config.tcp_keepalive, config.tcp_user_timeout);
            let first = net::listener(*addr, 4096, ka, ut).map_err(io_err("bind listener"))?;
            let bound = net::local_addr(&first).map_err(io_err("listener address"))?;
            local_addrs.push(bound);
            listeners[0].push(first);
            for l in listeners.iter_mut().skip(1) {
                l.push(net::listener(bound, 4096, ka, ut).map_err(io_err("bind listener"))?);
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
            .enumerate()
            .map(|(i, fd)| Arc::new(WorkerShared::new(i as u16, config.command_queue, fd.clone())))
            .collect();
        let stats: Vec<Arc<WorkerStats>> = (0..n).map(|_| Arc::default()).collect();
        let dialer =
            Arc::new(crate::client::Dialer::new(std::time::Instant::now(), config.frame.clone()));
        let cores = match &config.cpus {
            Some(list) => Some(list.iter().map(|&id| core_affinity::CoreId { id }).collect()),
            None if config.pin_cpus => core_affinity::get_core_ids(),
            None => None,
        };
        let receipts = match &config.receipts {
            Some(r) => Some(Arc::new(
                crate::outbox::receipts::Receipts::open(&r.dir, r.streams)
                    .map_err(io_err("open the receipts table"))?,
            )),
            None => None,
        };
        #[cfg(feature = "cluster")]
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| Arc::new(crate::cluster::ClusterShared::new(c.queue, c.queue_bytes)));
        #[cfg(not(feature = "cluster"))]
        let cluster: Option<Arc<crate::cluster::ClusterShared>> = None;
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
                dialer: dialer.clone(),
                receipts: receipts.clone(),
                cluster: cluster.clone(),
            };
            let factory = factory.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}{i}", config.thread_name))
                .spawn(move || setup.run(&*factory, ready));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(ready_tx);
                    let server = Server {
                        threads,
                        shared,
                        stats,
                        local_addrs,
                        backend: None,
                        dialer,
                        budget,
                        admin: None,
                        cluster: cluster.clone(),
                        bridge: None,
                    };
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
        let mut server = Server {
            threads,
            shared,
            stats,
            local_addrs,
            backend,
            dialer,
            budget,
            admin: None,
            cluster: cluster.clone(),
            bridge: None,
        };
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
        #[cfg(feature = "cluster")]
        if let (Some(c), Some(shared)) = (&config.cluster, &cluster) {
            // The bridge delivers to this node's workers only.
            let local = crate::Publisher { workers: server.shared.clone(), cluster: None };
            match crate::cluster::Bridge::start(c, shared.clone(), local) {
                Ok(b) => server.bridge = Some(b),
                Err(source) => {
                    server.abort_start();
                    return Err(EngineError::Io { context: "cluster bridge", source });
                }
            }
        }
        if let (Some(addr), Some(info)) = (config.admin, &server.backend) {
            let mut state = crate::admin::AdminState::new(
                server.stats.clone(),
                server.shared.clone(),
                info.name,
            );
            state.cluster = server.cluster.clone();
            match crate::admin::Admin::start(addr, Arc::new(state)) {
                Ok(a) => server.admin = Some(a),
                Err(source) => {
                    server.abort_start();
                    return Err(EngineError::Io { context: "admin listener", source });
                }
            }
        }
        if let Some(info) = &server.backend {
            tracing::info!(
                workers = n,
                backend = info.name,
                features = ?info.features,
                fallback = info.fallback_reason.as_deref().unwrap_or(""),
                recv_pool = ?info.recv_pool,
                addrs = ?server.local_addrs,
                admin = ?server.admin_addr(),
                "ringwire engine started"
            );
        }
        Ok(server)
    }
}
