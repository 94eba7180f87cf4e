//! Starting and stopping an engine: listeners, worker threads, backend choice.

mod builder;
mod thread;

pub use self::builder::{Engine, EngineBuilder};

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ConfigError;
use crate::handle::{Publisher, WorkerShared};
use crate::stats::{StatsSnapshot, WorkerStats};

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
    /// io_uring was required ([`crate::BackendChoice::IoUring`]) but is not available.
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
    /// A worker could not open (or recover) its outbox log.
    #[error("worker {worker}: outbox: {source}")]
    Outbox {
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: crate::outbox::OutboxError,
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

pub(crate) fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> EngineError {
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
    /// io_uring: each ring's provided receive buffers as chosen for this kernel (count,
    /// bytes each): `recv_buffers` x `recv_buffer_size`, or, where the kernel cannot
    /// consume buffers incrementally, the same bytes as more buffers of at most 16 KiB.
    /// epoll: `None` (it reads into one buffer of `epoll_read_size`).
    pub recv_pool: Option<(u32, u32)>,
}

/// A running engine. Dropping it shuts it down gracefully.
pub struct Server {
    threads: Vec<JoinHandle<Result<(), EngineError>>>,
    shared: Arc<[Arc<WorkerShared>]>,
    stats: Vec<Arc<WorkerStats>>,
    local_addrs: Vec<SocketAddr>,
    backend: Option<BackendInfo>,
    /// Clients' engine-wide state: the per-target rate caps, the round robin.
    dialer: Arc<crate::client::Dialer>,
    /// The longest a worker may take to stop: its shutdown timeout, then the close
    /// timeout of what it closed last, and [`JOIN_GRACE`].
    budget: Duration,
    /// The admin listener, when asked for (`EngineConfig::admin`).
    admin: Option<crate::admin::Admin>,
    /// The other nodes, when the engine is one of a cluster (`EngineConfig::cluster`).
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterShared>>,
    #[cfg(feature = "cluster")]
    pub(crate) bridge: Option<crate::cluster::Bridge>,
    /// (Always `None`: without the feature there is no bridge.)
    #[cfg(not(feature = "cluster"))]
    #[allow(dead_code)]
    pub(crate) bridge: Option<()>,
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
pub(crate) const JOIN_GRACE: Duration = Duration::from_secs(2);

impl Server {
    /// Dials a client connection to a `ws://` URL, from any thread: the host is
    /// resolved here (a blocking DNS lookup for a name), then a worker takes the
    /// connection (round robin, or [`ClientConfig::worker`]) and keeps it up by itself,
    /// reconnecting with backoff until it is closed or a failure is permanent. The
    /// handler's callbacks run for it on that worker, [`crate::Handler::on_state`] at
    /// each state change.
    ///
    /// [`ClientConfig::worker`]: crate::client::ClientConfig::worker
    pub fn connect(
        &self,
        url: &str,
        config: crate::client::ClientConfig,
    ) -> Result<crate::client::ClientHandle, crate::client::ConnectError> {
        self.dialer.connect(&self.shared, url, config)
    }

    /// Dials `n` clients to one `ws://` URL (resolved once, here), spread over the
    /// workers like [`Server::connect`]'s; they share one copy of the target and the
    /// configuration, which is what makes many clients to one upstream cheap in memory.
    pub fn connect_many(
        &self,
        url: &str,
        n: usize,
        config: crate::client::ClientConfig,
    ) -> Result<Vec<crate::client::ClientHandle>, crate::client::ConnectError> {
        self.dialer.connect_many(&self.shared, url, n, config)
    }

    /// Resolves `url` here (a blocking DNS lookup for a host name) and checks `config`,
    /// once, for clients to dial later with [`Server::dial`], [`crate::Ctx::dial`] or
    /// [`crate::WorkerCtx::dial`]: they share one copy of the target and configuration.
    pub fn client_spec(
        &self,
        url: &str,
        config: crate::client::ClientConfig,
    ) -> Result<crate::client::ClientSpec, crate::client::ConnectError> {
        Ok(crate::client::ClientSpec(self.dialer.prepare(url, config)?))
    }

    /// Dials one client from `spec` (see [`Server::client_spec`]), as
    /// [`Server::connect`] does, without resolving anything.
    pub fn dial(
        &self,
        spec: &crate::client::ClientSpec,
    ) -> Result<crate::client::ClientHandle, crate::client::ConnectError> {
        self.dialer.dial(&self.shared, &spec.0, None, None)
    }

    /// Sends `msg` durably to the client of stream `stream`, from any thread, as
    /// [`crate::WorkerCtx::send_durable_to`] does on a worker: it goes to the command
    /// queue of the stream's home worker, which stores it. Fails only if that queue is
    /// full; a refusal there (no outbox, a full or failed one) is counted in
    /// `outbox_refused` and logged.
    pub fn send_durable(
        &self,
        stream: u64,
        msg: ringwire_frame::Message,
    ) -> Result<(), crate::handle::SendError> {
        let home = crate::outbox::streams::home(stream, self.shared.len());
        self.shared[home]
            .push(crate::handle::Command::StreamSend(Box::new((stream, None, msg))))
            .map_err(|_| crate::handle::SendError::QueueFull)
    }

    /// Rings worker `worker`: its handler's [`crate::Handler::on_wake`] runs at its next
    /// loop turn (once, however often it was rung before). `false` if there is no such
    /// worker.
    pub fn wake(&self, worker: usize) -> bool {
        self.shared.get(worker).map(|w| w.ring()).is_some()
    }

    /// Rings every worker ([`Server::wake`]).
    pub fn wake_all(&self) {
        for w in self.shared.iter() {
            w.ring();
        }
    }

    /// As [`Server::connect`], with the client's messages, state changes and closes
    /// delivered to the returned [`crate::client::ClientStream`] (an async stream)
    /// instead of the handler.
    pub fn connect_stream(
        &self,
        url: &str,
        config: crate::client::ClientConfig,
    ) -> Result<crate::client::ClientStream, crate::client::ConnectError> {
        self.dialer.connect_stream(&self.shared, url, config)
    }

    /// A pool of `size` client connections to one `ws://` URL, spread over the workers
    /// ([`crate::client::Pool`]). The host is resolved once, here.
    pub fn pool(
        &self,
        url: &str,
        size: usize,
        config: crate::client::ClientConfig,
    ) -> Result<crate::client::Pool, crate::client::ConnectError> {
        crate::client::Pool::new(self.dialer.clone(), self.shared.clone(), url, size, config)
    }

    /// The first listening address (with the port chosen if it was 0). Panics on an
    /// engine that listens nowhere (one that only dials).
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

    /// Where the admin listener (`GET /metrics`, `/healthz`, `/readyz`) is, when
    /// [`crate::EngineConfig::admin`] asked for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(crate::admin::Admin::addr)
    }

    /// The cluster bridge's counters, when the engine is one of a cluster.
    pub fn cluster_stats(&self) -> Option<crate::cluster::ClusterStats> {
        self.cluster.as_ref().map(|c| c.stats())
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
        Publisher { workers: self.shared.clone(), cluster: self.cluster.clone() }
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
    pub(crate) fn abort_start(mut self) {
        let _ = self.stop_within(JOIN_GRACE);
    }

    fn stop(&mut self) -> Result<(), EngineError> {
        self.stop_within(self.budget)
    }

    fn stop_within(&mut self, budget: Duration) -> Result<(), EngineError> {
        let open = self.stats().connections;
        tracing::info!(connections = open, within = ?budget, "shutting down: closing every connection");
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
                Err(p) => Err(EngineError::WorkerPanicked {
                    worker: i,
                    message: crate::panic::message(&*p).to_owned(),
                }),
            };
            if let Err(e) = r {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        // The bridge goes once the workers publish no more.
        #[cfg(feature = "cluster")]
        if let Some(mut b) = self.bridge.take() {
            b.stop();
        }
        // The admin listener answered `/readyz` with 503 through the drain; it goes last.
        if let Some(mut a) = self.admin.take() {
            a.stop();
        }
        if stuck.is_empty() {
            tracing::info!("shut down");
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
