//! What a client connection is configured with, and why a dial can be refused.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::health::HealthConfig;
use super::lifecycle::RetryPolicy;
use super::limiter::ConnectRate;

/// The options of one outgoing connection ([`crate::Server::connect`]). Every field has
/// a default chosen for production; [`ClientConfig::validate`] checks them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Extra request headers of the upgrade (`Authorization`, cookies, ...). Names and
    /// values that would break the HTTP framing are refused when the request is written
    /// (the dial fails with [`crate::client::Cause::HandshakeInvalid`]).
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered, in order of preference (`Sec-WebSocket-Protocol`). A server
    /// that picks one not offered fails the handshake (RFC 6455 §4.1).
    pub protocols: Vec<String>,
    /// The `Origin` header, for servers that check it.
    pub origin: Option<String>,
    /// Heartbeat: a ping after this long without inbound traffic (any inbound byte
    /// counts as life), `None` for none. Default 20 s (the interval Python's
    /// `websockets` uses). The pongs give the RTT figures of [`crate::Ctx::health`];
    /// without heartbeats a peer that vanished silently is found by TCP alone.
    pub ping_interval: Option<Duration>,
    /// The connection is lost (cause `HeartbeatLost`) when nothing arrives within
    /// this long of a heartbeat ping. Default 10 s.
    pub pong_timeout: Duration,
    /// Read-idle deadline: when nothing at all arrives for this long the close handshake
    /// starts (1001; the loss is `Closed { code: 1001 }`). Default `None`: with
    /// heartbeats on, pongs are traffic, so this only matters without them.
    pub idle_timeout: Option<Duration>,
    /// The application-level heartbeat beside the protocol's (the "dual channel"):
    /// `None` (the default) for none. A server whose WebSocket layer answers pings while
    /// its application is stuck is found by this one only.
    pub app_heartbeat: Option<AppHeartbeat>,
    /// The TCP connect must finish within this long. Default 10 s.
    pub connect_timeout: Duration,
    /// The server's 101 must have arrived within this long of the connect. Default
    /// 10 s. Stops a server that accepts and never answers from holding the client.
    pub handshake_timeout: Duration,
    /// Reconnecting: backoff, and which failures end the client. Default
    /// [`RetryPolicy::default`] (1 s x 2 with full jitter, capped at 30 s, forever;
    /// 4xx other than 408/429 is permanent).
    pub retry: RetryPolicy,
    /// Caps connection attempts per second across every client of the engine to the
    /// same host:port (`None`: no cap). Default at most 1,000 in any second, bursts of 100.
    pub connect_rate: Option<ConnectRate>,
    /// Thresholds of the health levels. Default: p95 RTT 200 ms warn / 500 ms
    /// critical, loss 2% / 5%, failure streak 3 / 5.
    pub health: HealthConfig,
    /// Bind to this local address before connecting, to choose the source address.
    /// With port 0 the port is picked at connect time (`IP_BIND_ADDRESS_NO_PORT`), so
    /// one source address still reaches each server ip:port ~28k times. Spread clients
    /// over several source addresses (127.0.0.x on loopback) to hold more connections
    /// to one server than one address has ports. Default `None`.
    pub bind: Option<SocketAddr>,
    /// TCP keepalive idle time (`None`: off). Default 60 s, as on accepted sockets.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT`: sent data unacknowledged this long drops the connection, so
    /// a peer that stopped reading while we send is found. Default 30 s.
    pub tcp_user_timeout: Option<Duration>,
    /// Run the connection on this worker (`None`: the engine spreads clients round
    /// robin).
    pub worker: Option<usize>,
    /// The client's stream in the engine's outbox ([`crate::EngineConfig::outbox`]):
    /// its durable messages ([`crate::Ctx::send_durable`]) are kept there under this id
    /// until acknowledged, and sent again, in order, each time it connects. Stable
    /// across restarts of the process (the application chooses it), unique among the
    /// clients of a worker. Default `None`: no durable sends.
    pub outbox_stream: Option<u64>,
    /// `wss://`: whom to trust and how. Default `None`: the system's certificate
    /// authorities, the server's name verified ([`crate::tls::TlsClientConfig::new`]
    /// with no extra authority, loaded once per process, when the first `wss://`
    /// client is made).
    pub tls: Option<crate::tls::TlsClientConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            protocols: Vec::new(),
            origin: None,
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(10),
            app_heartbeat: None,
            idle_timeout: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            connect_rate: Some(ConnectRate::default()),
            health: HealthConfig::default(),
            bind: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
            tcp_user_timeout: Some(Duration::from_secs(30)),
            worker: None,
            outbox_stream: None,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// Checks the configuration; [`crate::Server::connect`] calls this.
    pub fn validate(&self) -> Result<(), ConnectError> {
        let bad = |s: String| Err(ConnectError::Config(s));
        let day = Duration::from_secs(86_400);
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("pong_timeout", self.pong_timeout),
            ("ping_interval", self.ping_interval.unwrap_or(Duration::from_secs(1))),
            ("idle_timeout", self.idle_timeout.unwrap_or(Duration::from_secs(1))),
        ] {
            if d.is_zero() || d > day {
                return bad(format!("{name} must be between 1 ns and 1 day"));
            }
        }
        if let Some(h) = &self.app_heartbeat {
            if h.interval.is_zero() || h.timeout.is_zero() || h.interval > day || h.timeout > day {
                return bad("app_heartbeat: interval and timeout between 1 ns and 1 day".into());
            }
        }
        if let Err(e) = self.retry.backoff.validate() {
            return bad(format!("retry.backoff: {e}"));
        }
        if let Some(rate) = self.connect_rate {
            if let Err(e) = rate.validate() {
                return bad(format!("connect_rate: {e}"));
            }
        }
        Ok(())
    }
}

/// An application-level heartbeat: after `interval` without an application message
/// from the server, the client sends `message`; if no application message arrives
/// within `timeout` of it, the connection is lost ([`crate::client::Cause::AppHeartbeatLost`])
/// and closed with 1001. Any message from the server counts as the answer (pongs and
/// pings do not: they are the protocol's heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHeartbeat {
    /// What the client sends (say `{"type":"ping"}`, whatever the server answers).
    pub message: ringwire_frame::Message,
    /// Silence from the server's application before the heartbeat is sent.
    pub interval: Duration,
    /// How long the answer may take.
    pub timeout: Duration,
}

/// Why [`crate::Server::connect`] refused to start a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse, or lacks a host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Not a WebSocket URL (`ws://` or `wss://`).
    #[error("unsupported scheme `{0}` (ws:// and wss:// only)")]
    UnsupportedScheme(String),
    /// The host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// A handler dialled a host name: a DNS lookup would block its worker. Dial an IP
    /// address, or resolve first, or dial from another thread ([`crate::Server::connect`]).
    #[error(
        "{0} is a host name; a handler may dial IP addresses only (no DNS lookup on a worker)"
    )]
    NeedsLookup(String),
    /// The host name resolved to no address.
    #[error("{0} resolved to no address")]
    NoAddress(String),
    /// The configuration is invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// There is no such worker ([`ClientConfig::worker`]).
    #[error("no worker {0}")]
    NoWorker(usize),
    /// The worker's command queue is full; try again later.
    #[error("the worker's command queue is full")]
    QueueFull,
    /// The worker is shutting down and dials nothing more.
    #[error("the worker is shutting down")]
    ShuttingDown,
    /// The worker holds [`crate::EngineConfig::max_connections_per_worker`] connections
    /// already.
    #[error("the worker holds as many connections as it may")]
    WorkerFull,
}
