//! Engine configuration: every limit a peer could abuse is a field with a documented
//! default.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringwire_frame::handshake::HandshakeLimits;
use ringwire_frame::Config as FrameConfig;

/// What to do when a connection's queue of unsent bytes reaches
/// [`EngineConfig::max_queued_bytes`] (a slow consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Refuse the new message (`send` returns [`crate::SendError::Backpressure`]; a
    /// publish skips this subscriber). Counted in `stats.drops`.
    DropNewest,
    /// Drop the oldest queued whole messages that have not started to go out, to make
    /// room. Counted in `stats.drops`.
    DropOldest,
    /// Close the connection with 1008 (policy violation). Counted in `stats.slow_closes`.
    #[default]
    Close,
}

/// Which I/O backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring where the kernel allows it, else epoll. `RINGWIRE_BACKEND=epoll` (or
    /// `=io_uring`) in the environment chooses instead.
    #[default]
    Auto,
    /// io_uring only: fail to start if it is unavailable.
    IoUring,
    /// epoll only.
    Epoll,
}

/// Decides whether to accept an upgrade by its `Origin` header (`None` if absent).
pub type OriginCheck = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// The configuration of an engine; build it with [`crate::Engine::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Addresses to listen on; every worker gets its own `SO_REUSEPORT` listener on each.
    /// None: an engine that only dials (client connections).
    pub listen: Vec<SocketAddr>,
    /// The admin listener's address: `GET /metrics` (Prometheus), `/healthz`,
    /// `/readyz`, on a thread of its own (see [`crate::Server::admin_addr`]). Default
    /// `None` (off). It has no authentication: bind it to loopback or an operator's
    /// network.
    pub admin: Option<SocketAddr>,
    /// Join other nodes through NATS: a publish on any node reaches the subscribers on
    /// every node ([`crate::cluster`], docs/CLUSTER.md). Default `None` (one node).
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Number of worker threads. Default: the CPUs this process may run on.
    pub workers: usize,
    /// Pin worker `i` to the `i`-th allowed CPU. Default `true`.
    pub pin_cpus: bool,
    /// Pin worker `i` to CPU `cpus[i % cpus.len()]` instead (whatever `pin_cpus` says).
    /// Default `None`. For two engines in one process (a server and a load generator)
    /// kept on CPUs of their own.
    pub cpus: Option<Vec<usize>>,
    /// Worker threads are named this followed by their index (a worker's outbox sync
    /// thread, under epoll: this, `s`, the index). Default `"ringwire-w"`.
    /// Linux keeps the first 15 bytes of a thread name.
    pub thread_name: String,
    /// I/O backend. Default [`BackendChoice::Auto`].
    pub backend: BackendChoice,
    /// io_uring submission queue entries of a worker's first ring (power of two). Default
    /// 4096. Further rings (see `direct_descriptors`) get a sixteenth, at least 128.
    pub ring_entries: u32,
    /// io_uring only: provided receive buffers per ring (power of two, at most 32768).
    /// Default 256.
    ///
    /// Receive memory is at most this times [`EngineConfig::recv_buffer_size`] per ring,
    /// shared by all its connections: an idle connection holds none. Buffers go into
    /// circulation as the load needs them, and where the kernel consumes them
    /// incrementally many small messages share one buffer.
    pub recv_buffers: u32,
    /// io_uring only: size of each provided receive buffer. Default 64 KiB.
    ///
    /// Larger buffers mean fewer receive completions per message under load (one receive
    /// takes up to a buffer's remaining bytes) and let whole messages up to nearly this
    /// size be handed to the handler without a copy; with incremental consumption they
    /// cost an idle connection nothing either way (docs/BENCHMARKS.md has the figures
    /// against 16 KiB buffers). Where the kernel lacks incremental consumption (before
    /// 6.12) every receive takes a whole buffer however few bytes it brings, so there the
    /// pool's bytes are cut into buffers of at most 16 KiB (256 x 64 KiB becomes 1024 x
    /// 16 KiB): many connections receiving at once need many buffers.
    pub recv_buffer_size: u32,
    /// The epoll backend's read size: each worker reads into one buffer of this size
    /// and hands the bytes to the protocol core (which copies what it keeps). Default
    /// 64 KiB. (io_uring receives into the provided buffers above instead.)
    pub epoll_read_size: usize,
    /// With io_uring, accept connections as direct descriptors (the ring's fixed-file
    /// table) rather than process file descriptors. Default `true`. Operations skip the
    /// fd-table lookup and connections do not count against RLIMIT_NOFILE; the table is
    /// sized `max_connections_per_worker` + 64, capped at RLIMIT_NOFILE (the kernel's
    /// limit for it). Falls back to plain descriptors if the kernel refuses the table.
    /// When a ring's table fills up the worker opens another ring with its own table
    /// (and its own receive buffers), as many as `max_connections_per_worker` needs, at
    /// most 64: that is how one worker holds more connections than RLIMIT_NOFILE.
    pub direct_descriptors: bool,
    /// Fixed-file slots per ring with direct descriptors (`None`: the default size
    /// above). Smaller tables make the worker spread its connections over more rings.
    pub fixed_files_per_ring: Option<u32>,
    /// io_uring only: before going to sleep, a worker watches its ring for completion
    /// work for up to this long, without a syscall. Default `None` (sleep at once). A
    /// message that arrives within the window skips the sleep and wake-up (about 10-15 us
    /// of round trip here), at the price of CPU: a worker that wakes often spins up to
    /// this long each time. For latency-critical services with cores to spare.
    pub busy_poll: Option<Duration>,
    /// Most open connections per worker; further accepts are closed at once. Default
    /// 100,000. Stops a connection flood from exhausting memory.
    pub max_connections_per_worker: usize,
    /// The WebSocket upgrade must complete within this long of the accept (slowloris).
    /// Default 10 s.
    pub handshake_timeout: Duration,
    /// Header size and count limits for the upgrade request.
    pub handshake_limits: HandshakeLimits,
    /// TLS on every accepted connection (`wss://`): the TLS handshake, then the
    /// upgrade, both within [`EngineConfig::handshake_timeout`]. Default `None`
    /// (plain `ws://`). See [`crate::tls`].
    pub tls: Option<crate::tls::TlsServerConfig>,
    /// Per-connection protocol limits, heartbeats and close timeout
    /// (`ping_interval`, `pong_timeout`, `idle_timeout`, `max_frame_size`, ...).
    pub frame: FrameConfig,
    /// Most bytes queued for sending on one connection before [`Backpressure`] applies.
    /// Default 4 MiB. A message that finds the queue empty is accepted whatever its
    /// size, so a message up to the frame limits (`frame.max_message_size`) can always
    /// be sent to a connection that keeps up; a queue never holds more than this or one
    /// message, whichever is larger.
    pub max_queued_bytes: usize,
    /// What to do with a slow consumer. Default [`Backpressure::Close`].
    pub backpressure: Backpressure,
    /// After a connection's queue drains below this many bytes, the handler's
    /// `on_writable` runs (if it was over the limit). Default 1 MiB.
    pub low_watermark: usize,
    /// Capacity of each worker's command queue (cross-thread sends, publishes). Default
    /// 65,536. A full queue makes `ConnHandle::send` return an error instead of growing.
    pub command_queue: usize,
    /// How long a graceful shutdown waits for close handshakes before closing sockets.
    /// Default 3 s.
    pub shutdown_timeout: Duration,
    /// TCP keepalive idle time on accepted sockets (`None`: off). Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT` on accepted sockets: data sent and not acknowledged for this
    /// long (a peer that stopped reading: Linux applies it to zero-window probes too)
    /// drops the connection, whose send queue is then freed. Default `None` (the
    /// kernel's, about 15 minutes): the send queue limit and the backpressure policy
    /// already bound what a slow reader costs, and a mobile client may stall for a
    /// while and recover. Clients have their own (`ClientConfig::tcp_user_timeout`).
    pub tcp_user_timeout: Option<Duration>,
    /// Most topics one connection may be subscribed to. Default 64. Each subscription
    /// costs memory on the worker (the name, a set entry, about 1 KiB with a long name),
    /// and a peer that chooses topic names (a pub/sub gateway) could otherwise grow it
    /// without end; `Ctx::subscribe` past the limit fails with `SendError::TooManyTopics`.
    pub max_topics_per_connection: usize,
    /// Longest topic name, in bytes. Default 256. Refused with `SendError::TopicTooLong`.
    pub max_topic_len: usize,
    /// Optional origin check; a rejected upgrade gets 403.
    pub origin_check: Option<OriginCheck>,
    /// Who may connect and which topics they may subscribe and publish to
    /// ([`crate::auth`]; [`crate::auth::JwtAuthorizer`] for JSON Web Tokens). Refusals:
    /// the authorizer's status on the upgrade (401, 403), 1008 after it. Default `None`
    /// (anyone, any topic).
    pub authorizer: Option<std::sync::Arc<dyn crate::auth::Authorizer>>,
    /// The durable outbox (`Ctx::send_durable`): each worker keeps a log in
    /// `dir/w<worker>`, opened (and recovered) when the worker starts. Default `None`.
    pub outbox: Option<crate::outbox::OutboxSettings>,
    /// The duplicate filter of a server that receives durable messages from ringwire
    /// clients: an upgrade offering the acknowledgement extension takes the client's
    /// stream (one connection per stream at a time: a newer one makes the older close
    /// with [`crate::outbox::CLOSE_REPLACED`] and is refused with 503 until it has), the
    /// server acknowledges on the wire after each batch the application handled, and
    /// drops the copies a client's resend makes ([`crate::Ctx::delivery`]). Its table
    /// is a file that a crash of the process does not lose. Default `None`: the
    /// extension is not taken up, and clients rely on the application's
    /// acknowledgements.
    ///
    /// On an engine that dials: its clients with an outbox stream take durable messages
    /// from the server (a gateway's [`crate::Server::send_durable`]) under the same
    /// filter and acknowledge them. With [`EngineConfig::outbox`] as well, a server sends
    /// durably to its clients' streams.
    ///
    /// Stream ids are the clients' choice: a server whose clients are not trusted to
    /// name only their own must check the offer in `on_open` (its
    /// `Sec-WebSocket-Extensions`), or one client can take another's stream.
    pub receipts: Option<crate::outbox::ReceiptSettings>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("pin_cpus", &self.pin_cpus)
            .field("cpus", &self.cpus)
            .field("thread_name", &self.thread_name)
            .field("backend", &self.backend)
            .field("ring_entries", &self.ring_entries)
            .field("recv_buffers", &self.recv_buffers)
            .field("recv_buffer_size", &self.recv_buffer_size)
            .field("epoll_read_size", &self.epoll_read_size)
            .field("direct_descriptors", &self.direct_descriptors)
            .field("fixed_files_per_ring", &self.fixed_files_per_ring)
            .field("busy_poll", &self.busy_poll)
            .field("max_connections_per_worker", &self.max_connections_per_worker)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls.is_some())
            .field("frame", &self.frame)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("backpressure", &self.backpressure)
            .field("outbox", &self.outbox)
            .field("receipts", &self.receipts)
            .finish_non_exhaustive()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            admin: None,
            #[cfg(feature = "cluster")]
            cluster: None,
            workers: default_workers(),
            pin_cpus: true,
            cpus: None,
            thread_name: "ringwire-w".into(),
            backend: BackendChoice::Auto,
            ring_entries: 4096,
            recv_buffers: 256,
            recv_buffer_size: 64 * 1024,
            epoll_read_size: 64 * 1024,
            direct_descriptors: true,
            fixed_files_per_ring: None,
            busy_poll: None,
            max_connections_per_worker: 100_000,
            handshake_timeout: Duration::from_secs(10),
            handshake_limits: HandshakeLimits::default(),
            tls: None,
            frame: FrameConfig::default(),
            max_queued_bytes: 4 << 20,
            backpressure: Backpressure::Close,
            low_watermark: 1 << 20,
            command_queue: 65_536,
            shutdown_timeout: Duration::from_secs(3),
            tcp_keepalive: Some(Duration::from_secs(60)),
            tcp_user_timeout: None,
            max_topics_per_connection: 64,
            max_topic_len: 256,
            origin_check: None,
            authorizer: None,
            outbox: None,
            receipts: None,
        }
    }
}

/// The CPUs this process may run on, or 1.
pub fn default_workers() -> usize {
    core_affinity::get_core_ids().map(|c| c.len()).filter(|n| *n > 0).unwrap_or(1)
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine configuration: {0}")]
pub struct ConfigError(pub String);

impl EngineConfig {
    /// Checks the configuration; [`crate::EngineBuilder::start`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_owned()));
        if self.workers == 0 || self.workers > 1024 {
            return err("workers must be between 1 and 1024");
        }
        if !self.ring_entries.is_power_of_two() || !(8..=32768).contains(&self.ring_entries) {
            return err("ring_entries must be a power of two in 8..=32768");
        }
        if !self.recv_buffers.is_power_of_two() || !(2..=32768).contains(&self.recv_buffers) {
            return err("recv_buffers must be a power of two in 2..=32768");
        }
        if !(512..=(1 << 20)).contains(&self.recv_buffer_size) {
            return err("recv_buffer_size must be in 512..=1048576");
        }
        if !(512..=(16 << 20)).contains(&self.epoll_read_size) {
            return err("epoll_read_size must be in 512..=16777216");
        }
        if self.max_connections_per_worker == 0 {
            return err("max_connections_per_worker must be at least 1");
        }
        // Deadlines are instants; a timeout past a year would only be a typo or an
        // attempt at "never", and overflows the clock at Duration::MAX.
        let year = Duration::from_secs(365 * 86_400);
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("frame.close_timeout", self.frame.close_timeout),
        ] {
            if d > year {
                return Err(ConfigError(format!("{name} must be at most 365 days")));
            }
        }
        if self.busy_poll.is_some_and(|d| d > Duration::from_secs(1)) {
            return err("busy_poll must be at most 1 s");
        }
        if self.fixed_files_per_ring.is_some_and(|n| !(1..=(1 << 20)).contains(&n)) {
            return err("fixed_files_per_ring must be in 1..=1048576");
        }
        if self.max_queued_bytes == 0 || self.low_watermark > self.max_queued_bytes {
            return err("need 0 < low_watermark <= max_queued_bytes");
        }
        if self.command_queue == 0 {
            return err("command_queue must be at least 1");
        }
        if self.receipts.as_ref().is_some_and(|r| r.streams == 0) {
            return Err(ConfigError("receipts: streams must be at least 1".into()));
        }
        if let Some(o) = &self.outbox {
            o.validate().map_err(|e| ConfigError(format!("outbox: {e}")))?;
        }
        if self.cpus.as_ref().is_some_and(Vec::is_empty) {
            return err("cpus must name at least one CPU (or be None)");
        }
        if self.thread_name.contains('\0') {
            return err("thread_name must not contain a NUL byte");
        }
        if self.frame.max_frame_size > self.frame.max_message_size {
            return err("frame.max_frame_size must not exceed frame.max_message_size");
        }
        if self.handshake_limits.max_headers == 0 || self.handshake_limits.max_header_bytes < 64 {
            return err("handshake limits too small for any request");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> EngineConfig {
        EngineConfig { listen: vec!["127.0.0.1:0".parse().unwrap()], ..EngineConfig::default() }
    }

    fn refused(f: impl FnOnce(&mut EngineConfig)) -> String {
        let mut c = valid();
        f(&mut c);
        c.validate().expect_err("refused").0
    }

    #[test]
    fn defaults_are_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_are_refused_with_their_name() {
        assert!(refused(|c| c.handshake_timeout = Duration::MAX).contains("handshake_timeout"));
        assert!(refused(|c| c.shutdown_timeout = Duration::MAX).contains("shutdown_timeout"));
        assert!(refused(|c| c.frame.close_timeout = Duration::MAX).contains("close_timeout"));
        assert!(refused(|c| c.busy_poll = Some(Duration::from_secs(2))).contains("busy_poll"));
        assert!(refused(|c| c.fixed_files_per_ring = Some(0)).contains("fixed_files_per_ring"));
        assert!(refused(|c| c.ring_entries = 1000).contains("ring_entries"));
        assert!(refused(|c| c.cpus = Some(Vec::new())).contains("cpus"));
        assert!(refused(|c| c.thread_name = "a\0b".into()).contains("thread_name"));
    }
}
