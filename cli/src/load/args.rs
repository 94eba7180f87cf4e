//! Command-line arguments of `ringwire load` and their validation.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Args, Subcommand};
use ringwire::client::ClientConfig;

use crate::serve::Backend;

/// Largest message the generator sends (16 MiB): bounds its buffers.
pub const MAX_SIZE: usize = 16 << 20;
/// Most connections one run may ask for (the per-process fd limit binds much earlier).
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// Most publishes one fan-out run may make (its per-sequence table is bounded by this).
pub const MAX_PUBLISHES: f64 = 1_000_000.0;

/// `ringwire load <scenario>`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Echo round trips: msg/s and latency percentiles (any RFC 6455 echo server).
    Echo(EchoArgs),
    /// Hold many silent connections: setup rate and server memory per connection.
    Idle(IdleArgs),
    /// Pub/sub fan-out against `ringwire serve --mode pubsub`: delivery latency.
    Fanout(FanoutArgs),
    /// Reconnect storm: N clients, their server (ringwire, in this process) away for a
    /// while: time until 50/95/99/100% are back, the server's peak accept rate.
    Reconnect(ReconnectArgs),
}

/// Where to connect, how to run the client engine and how to report; shared by every
/// scenario.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server URL, `ws://host:port/path` or `wss://...` (repeat for several ports;
    /// round robin).
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Server address `ip:port` (repeat for several; round robin). Default 127.0.0.1:9001.
    #[arg(long = "addr")]
    pub addrs: Vec<SocketAddr>,
    /// Worker threads of the generator: the workers of its ringwire client engine, each
    /// dialling and driving its share of the connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The generator engine's I/O backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Protocol heartbeat of each generator connection, seconds (0: none; the server's
    /// pings are answered either way).
    #[arg(long, default_value_t = 0.0)]
    pub ping_interval: f64,
    /// Pin generator thread i to CPU cpus[i % len] (e.g. `--cpu 1`; comma-separated).
    #[arg(long = "cpu", value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Spread client sockets over source addresses 127.0.0.1 ..= 127.0.0.N (one source
    /// address reaches one server ip:port ~28k times).
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,
    /// Most new connections per second, over all threads (default: unlimited).
    #[arg(long)]
    pub connect_rate: Option<f64>,
    /// Most handshakes in progress per thread at once.
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,
    /// PID of the server, to report its CPU time per message and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Give up on connections not open after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Print the report as one JSON object on stdout (times in ns, memory in bytes); the
    /// text report goes to stderr, the progress line only when stderr is a terminal.
    #[arg(long)]
    pub json: bool,
    /// Offer permessage-deflate (RFC 7692) on every connection, each message compressed
    /// on its own (the server must be started with --deflate to take it).
    #[arg(long)]
    pub deflate: bool,
    /// wss://: also trust the certificate authority in FILE (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// wss://: do not verify the server's certificate (benchmarks against a
    /// self-signed server).
    #[arg(long)]
    pub insecure: bool,
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            addrs: Vec::new(),
            threads: 1,
            backend: Backend::Auto,
            ping_interval: 0.0,
            cpus: Vec::new(),
            source_ips: 1,
            connect_rate: None,
            max_pending: 256,
            server_pid: None,
            connect_timeout: 60.0,
            deflate: false,
            json: false,
            ca: None,
            insecure: false,
        }
    }
}

/// `ringwire load echo`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Messages outstanding per connection.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 20)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Send text messages instead of binary.
    #[arg(long)]
    pub text: bool,
}

/// `ringwire load idle`.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Connections to open and hold.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them once all are open (after the settle time).
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Seconds to wait after the last handshake before reading the server's memory.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Open this many connections first and measure memory from there: the growth over
    /// the remaining ones is the marginal cost per connection, without the server's fixed
    /// per-worker pools (receive-buffer pages it touches once, slab and wheel capacity).
    /// 0: measure from before the first connection.
    #[arg(long, default_value_t = 0)]
    pub baseline: usize,
}

/// `ringwire load reconnect`.
#[derive(Args, Debug, Clone)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Clients.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds the server stays away.
    #[arg(long, default_value_t = 2.0)]
    pub down: f64,
    /// The clients' per-target connect cap, attempts per second (0: none). The default
    /// is the client's own default.
    #[arg(long, default_value_t = ringwire::client::ConnectRate::default().per_second)]
    pub cap: u32,
    /// The cap's burst.
    #[arg(long, default_value_t = ringwire::client::ConnectRate::default().burst)]
    pub cap_burst: u32,
    /// Worker threads of the in-process server.
    #[arg(long, default_value_t = 1)]
    pub server_workers: usize,
    /// Pin the server's worker i to CPU server_cpus[i % len] (comma-separated).
    #[arg(long = "server-cpu", value_delimiter = ',')]
    pub server_cpus: Vec<usize>,
    /// Longest wait for the clients to come back, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
}

/// `ringwire load fanout`.
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Subscriber connections (one more connection publishes).
    #[arg(long, short = 'n', default_value_t = 1_000)]
    pub subscribers: usize,
    /// Publishes per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
    /// Payload bytes per publish (at least 16: timestamp and sequence number).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Topic name.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// The publisher alone on the first --addr, the subscribers round robin over the
    /// others: with nodes of a cluster, every delivery crosses it (bench/cluster.sh).
    #[arg(long)]
    pub remote_subscribers: bool,
}

/// One server endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL the engine dials.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: String,
}

/// `ClientArgs` checked and resolved.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub targets: Vec<Target>,
    pub threads: usize,
    pub backend: ringwire::BackendChoice,
    pub ping_interval: Option<Duration>,
    pub cpus: Vec<usize>,
    pub source_ips: u8,
    pub connect_rate: Option<f64>,
    pub max_pending: usize,
    pub server_pid: Option<u32>,
    pub connect_timeout: Duration,
    /// Offer permessage-deflate (shared contexts).
    pub deflate: bool,
    /// wss://: the TLS configuration (`None`: the system's authorities).
    pub tls: Option<ringwire::tls::TlsClientConfig>,
    /// Connection 0 alone on the first target, the others round robin over the rest
    /// (`load fanout --remote-subscribers`).
    pub first_target_alone: bool,
    /// Show the progress line on stderr (off with `--json` unless stderr is a terminal,
    /// so that a redirected stderr holds the text report alone).
    pub progress: bool,
}

impl Target {
    /// The target at `addr`, path `/`.
    pub fn of_addr(addr: SocketAddr) -> Self {
        Self { url: format!("ws://{addr}/"), addr, host: addr.to_string(), path: "/".into() }
    }
}

impl ClientPlan {
    /// The target of global connection `g`: round robin, or with `first_target_alone`
    /// connection 0 on the first target and the others round robin over the rest.
    pub fn target_of(&self, g: usize) -> usize {
        let n = self.targets.len();
        match (self.first_target_alone && n > 1, g) {
            (true, 0) => 0,
            (true, g) => 1 + (g - 1) % (n - 1),
            (false, g) => g % n,
        }
    }

    /// What every load client gets: one attempt (a failed or lost connection is an error
    /// of the run, not retried), the plan's timeouts and heartbeat, no per-target rate
    /// cap (`--connect-rate` paces the dials instead).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::default();
        c.ping_interval = self.ping_interval;
        c.connect_timeout = self.connect_timeout;
        c.handshake_timeout = self.connect_timeout;
        c.connect_rate = None;
        c.retry.backoff.max_attempts = Some(1);
        c.tls = self.tls.clone();
        c
    }
}

/// Parses `ws://host[:port][/path]` and `wss://...`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, default_port) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(r), _) => (r, 80),
        (_, Some(r)) => (r, 443),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{url}: no IPv4 address"))?;
    Ok(Target { url: url.to_owned(), addr, host: authority.to_owned(), path: path.to_owned() })
}

fn secs(name: &str, v: f64, min: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < min || v > 86_400.0 {
        return Err(format!("--{name} must be between {min} and 86400 seconds (got {v})"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl ClientArgs {
    /// Checks the arguments and resolves the targets.
    pub fn plan(&self) -> Result<ClientPlan, String> {
        let mut targets: Vec<Target> =
            self.urls.iter().map(|u| parse_url(u)).collect::<Result<_, _>>()?;
        for a in &self.addrs {
            if !a.is_ipv4() {
                return Err(format!("--addr {a}: only IPv4 is supported"));
            }
            targets.push(Target::of_addr(*a));
        }
        if targets.is_empty() {
            targets.push(Target::of_addr(([127, 0, 0, 1], 9001).into()));
        }
        if !(1..=256).contains(&self.threads) {
            return Err("--threads must be 1..=256".into());
        }
        if self.source_ips == 0 || self.source_ips > 254 {
            return Err("--source-ips must be 1..=254".into());
        }
        let loopback = targets.iter().all(|t| t.addr.ip().is_loopback());
        if self.source_ips > 1 && !loopback {
            return Err("--source-ips > 1 needs loopback (127.x) servers".into());
        }
        if !self.cpus.is_empty() {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(c) = self.cpus.iter().find(|c| !ids.iter().any(|i| i.id == **c)) {
                return Err(format!("--cpu {c}: no such CPU available to this process"));
            }
        }
        if let Some(r) = self.connect_rate {
            if !r.is_finite() || r < 1.0 {
                return Err("--connect-rate must be at least 1 per second".into());
            }
        }
        if !(1..=100_000).contains(&self.max_pending) {
            return Err("--max-pending must be 1..=100000".into());
        }
        if let Some(pid) = self.server_pid {
            if !crate::load::procfs::exists(pid) {
                return Err(format!("--server-pid {pid}: no such process"));
            }
        }
        let ping = secs("ping-interval", self.ping_interval, 0.0)?;
        Ok(ClientPlan {
            targets,
            threads: self.threads,
            backend: self.backend.choice(),
            ping_interval: (!ping.is_zero()).then_some(ping),
            cpus: self.cpus.clone(),
            source_ips: self.source_ips,
            connect_rate: self.connect_rate,
            max_pending: self.max_pending,
            server_pid: self.server_pid,
            connect_timeout: secs("connect-timeout", self.connect_timeout, 0.1)?,
            progress: !self.json || std::io::stderr().is_terminal(),
            deflate: self.deflate,
            tls: crate::connect::tls_config(self.ca.as_deref(), self.insecure)?,
            first_target_alone: false,
        })
    }
}

/// How many connections one process can hold: the fd limit less a margin for the
/// process's own files (epoll, /proc reads, stdio; an in-process server's listeners).
pub fn fd_capacity(limit: u64, reserved: u64) -> usize {
    limit.saturating_sub(64 + reserved).min(MAX_CONNECTIONS as u64) as usize
}

/// Checks a connection count against the range and the fd limit. Returns the count to
/// use and, when the limit forced a smaller one, a note saying so.
pub fn cap_connections(
    want: usize,
    limit: u64,
    reserved: u64,
) -> Result<(usize, Option<String>), String> {
    if want == 0 || want > MAX_CONNECTIONS {
        return Err(format!("connections must be 1..={MAX_CONNECTIONS}"));
    }
    let cap = fd_capacity(limit, reserved);
    if want > cap {
        if cap == 0 {
            return Err(format!("RLIMIT_NOFILE is {limit}: no room for connections"));
        }
        let note = format!(
            "capped at {cap} of {want} connections: RLIMIT_NOFILE is {limit} per process; \
             run several generator processes for more"
        );
        return Ok((cap, Some(note)));
    }
    Ok((want, None))
}

impl EchoArgs {
    /// Validates the scenario's own arguments.
    pub fn check(&self) -> Result<(Duration, Duration), String> {
        if !(1..=1024).contains(&self.in_flight) {
            return Err("--in-flight must be 1..=1024".into());
        }
        if self.size > MAX_SIZE {
            return Err(format!("--size must be at most {MAX_SIZE}"));
        }
        Ok((secs("duration", self.duration, 0.1)?, secs("warmup", self.warmup, 0.0)?))
    }
}

impl IdleArgs {
    /// Validates the scenario's own arguments.
    pub fn check(&self) -> Result<(Duration, Duration), String> {
        if self.baseline > 0 && self.baseline >= self.connections {
            return Err("--baseline must be smaller than --connections".into());
        }
        Ok((secs("hold", self.hold, 0.0)?, secs("settle", self.settle, 0.0)?))
    }
}

impl ReconnectArgs {
    /// Validates the scenario's own arguments; returns the outage and the timeout.
    pub fn check(&self) -> Result<(Duration, Duration), String> {
        if !self.client.urls.is_empty() || !self.client.addrs.is_empty() {
            return Err("load reconnect runs its own server (it stops and restarts it): \
                        --url and --addr do not apply"
                .into());
        }
        if self.client.server_pid.is_some() {
            return Err("load reconnect runs its own server: --server-pid does not apply".into());
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(format!("connections must be 1..={MAX_CONNECTIONS}"));
        }
        if !(1..=256).contains(&self.server_workers) {
            return Err("--server-workers must be 1..=256".into());
        }
        if self.cap > 0 && (self.cap_burst == 0 || self.cap_burst > self.cap) {
            return Err("--cap-burst must be 1..=--cap (the cap counts any one second)".into());
        }
        Ok((secs("down", self.down, 0.0)?, secs("timeout", self.timeout, 1.0)?))
    }
}

impl FanoutArgs {
    /// Validates the scenario's own arguments; returns the duration and the number of
    /// publishes it makes.
    pub fn check(&self) -> Result<(Duration, usize), String> {
        let d = secs("duration", self.duration, 0.1)?;
        if !self.rate.is_finite() || self.rate <= 0.0 || self.rate > 1_000_000.0 {
            return Err("--rate must be in (0, 1000000] per second".into());
        }
        let n = (self.rate * d.as_secs_f64()).ceil();
        if n > MAX_PUBLISHES {
            return Err(format!("rate x duration must be at most {MAX_PUBLISHES} publishes"));
        }
        if self.size < 16 || self.size > MAX_SIZE {
            return Err(format!("--size must be 16..={MAX_SIZE} (timestamp and sequence)"));
        }
        if self.topic.is_empty() || self.topic.len() > 255 || self.topic.contains(' ') {
            return Err("--topic must be 1..=255 bytes without spaces".into());
        }
        Ok((d, n as usize))
    }
}

/// The source address of connection `i` (with `n` source addresses).
pub fn source_ip(i: usize, n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 1 + (i % usize::from(n.max(1))) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:9001/chat").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:9001", "/chat"));
        let t = parse_url("ws://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = parse_url("wss://127.0.0.1/x").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (443, "/x"));
        assert!(parse_url("http://127.0.0.1:1").is_err());
        assert!(parse_url("ws:///x").is_err());
    }

    #[test]
    fn client_validation() {
        let plan = ClientArgs::default().plan().unwrap();
        assert_eq!(plan.targets[0].addr.port(), 9001);
        let bad = |f: fn(&mut ClientArgs)| {
            let mut a = ClientArgs::default();
            f(&mut a);
            a.plan().is_err()
        };
        assert!(bad(|a| a.threads = 0));
        assert!(bad(|a| a.source_ips = 0));
        assert!(bad(|a| a.source_ips = 255));
        assert!(bad(|a| a.connect_rate = Some(0.0)));
        assert!(bad(|a| a.connect_timeout = f64::NAN));
        assert!(bad(|a| a.cpus = vec![100_000]));
        assert!(bad(|a| {
            a.source_ips = 2;
            a.addrs = vec!["10.0.0.1:80".parse().unwrap()];
        }));
    }

    #[test]
    fn capping() {
        assert_eq!(cap_connections(100, 20_000, 0), Ok((100, None)));
        let (n, note) = cap_connections(30_000, 20_000, 0).unwrap();
        assert_eq!(n, 19_936);
        assert!(note.unwrap().contains("RLIMIT_NOFILE"));
        assert!(cap_connections(0, 20_000, 0).is_err());
        assert!(cap_connections(10, 10, 0).is_err());
    }

    #[test]
    fn scenario_validation() {
        let e = EchoArgs {
            client: ClientArgs::default(),
            connections: 1,
            in_flight: 0,
            size: 8,
            duration: 1.0,
            warmup: 0.0,
            text: false,
        };
        assert!(e.check().is_err());
        assert!(EchoArgs { in_flight: 1, ..e.clone() }.check().is_ok());
        assert!(EchoArgs { in_flight: 1, duration: -1.0, ..e }.check().is_err());
        let f = FanoutArgs {
            client: ClientArgs::default(),
            subscribers: 1,
            rate: 10.0,
            duration: 1.0,
            size: 16,
            topic: "t".into(),
            remote_subscribers: false,
        };
        assert_eq!(f.check().unwrap().1, 10);
        // The publisher alone on the first target, the rest round robin over the others.
        let mut plan = ClientArgs {
            addrs: ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].map(|a| a.parse().unwrap()).into(),
            ..ClientArgs::default()
        }
        .plan()
        .unwrap();
        let spread: Vec<usize> = (0..6).map(|g| plan.target_of(g)).collect();
        assert_eq!(spread, [0, 1, 2, 0, 1, 2]);
        plan.first_target_alone = true;
        let spread: Vec<usize> = (0..6).map(|g| plan.target_of(g)).collect();
        assert_eq!(spread, [0, 1, 2, 1, 2, 1]);
        assert!(FanoutArgs { size: 15, ..f.clone() }.check().is_err());
        assert!(FanoutArgs { rate: 1e6, duration: 10.0, ..f.clone() }.check().is_err());
        assert!(FanoutArgs { topic: "a b".into(), ..f }.check().is_err());
    }

    #[test]
    fn sources() {
        assert_eq!(source_ip(0, 1), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_ip(5, 4), IpAddr::from([127, 0, 0, 2]));
    }
}
