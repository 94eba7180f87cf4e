//! `ringwire serve`: an echo server or a pub/sub gateway, for benchmarks and trials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ringwire::frame::Config as FrameConfig;
use ringwire::{BackendChoice, Backpressure, Echo, Engine, EngineBuilder, EngineConfig};

use crate::gateway::PubSub;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Echo every message.
    Echo,
    /// Pub/sub gateway (`SUB <topic>`, `PUB <topic> <text>`, binary publish).
    Pubsub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring where the kernel allows it, else epoll; `RINGWIRE_BACKEND=epoll` (or
    /// `=io_uring`) in the environment chooses instead.
    Auto,
    /// io_uring only: refuse to start without it.
    IoUring,
    /// epoll only.
    Epoll,
}

impl Backend {
    pub fn choice(self) -> BackendChoice {
        match self {
            Backend::Auto => BackendChoice::Auto,
            Backend::IoUring => BackendChoice::IoUring,
            Backend::Epoll => BackendChoice::Epoll,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// Close the slow connection with 1008 (counted in the stats as a slow close).
    Close,
    /// Refuse the new message; a publish skips this subscriber (counted as a drop).
    DropNewest,
    /// Drop the oldest queued messages that have not started to go out (counted as drops).
    DropOldest,
}

/// Shown after the options by `ringwire serve --help`: why the defaults are what they are.
pub const DEFAULTS_HELP: &str = "\
Defaults suit a server facing the internet: heartbeats on, an idle timeout, every limit
bounded. Durations are whole seconds; 0 turns off the options that say so.

Heartbeats (--ping-interval 30, --pong-timeout 10): a ping after 30 s without inbound
traffic keeps a quiet connection alive through proxies and NATs that drop silent TCP
connections after 60 s (a common load-balancer and reverse-proxy default), and a peer that
sends nothing at all for 10 s after the ping is taken for dead: a vanished client goes
within 40 s instead of holding its slot forever. A quiet connection costs one small ping
and pong per 30 s.

Idle timeout (--idle-timeout 120): closes (1001) a connection that sent nothing for 120 s.
Any inbound bytes count, pongs included, so with heartbeats on a live peer never reaches
it (it answers the pings) and a dead one is closed by the pong timeout first; it is the
backstop for --ping-interval 0 or a ping interval above it.";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (repeat for several).
    #[arg(long, short, default_value = "127.0.0.1:9001")]
    pub listen: Vec<SocketAddr>,
    /// Server mode.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Serve GET /metrics (Prometheus), /healthz and /readyz on this address (plain
    /// HTTP, no authentication: keep it on loopback or an operator's network) [default:
    /// off].
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Join other nodes through NATS (`nats://HOST:PORT`, several separated by commas):
    /// a publish on any node reaches the subscribers on every node (docs/CLUSTER.md)
    /// [default: one node].
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// Require a JSON Web Token on every upgrade (`Authorization: Bearer` or `?token=`),
    /// verified with the key in FILE: a PEM public key (RS256 or EdDSA) or an HS256
    /// secret (32 bytes or more). Its claims `subscribe` and `publish` list the topics
    /// (`prices.*` patterns) the connection may use; `exp` ends it (closed with 1008).
    #[arg(long, value_name = "FILE")]
    pub auth_jwt_key: Option<std::path::PathBuf>,
    /// Serve wss://: TLS with the certificate chain in FILE (PEM, the server's
    /// certificate first). Needs --tls-key. SIGHUP reads both files again: new
    /// handshakes use the new certificate, connections already up are kept.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Compress messages with clients that offer permessage-deflate (RFC 7692; browsers
    /// do): each message on its own, with one compressor per worker, so an idle
    /// connection holds no compression state [default: off].
    #[arg(long)]
    pub deflate: bool,
    /// With --deflate: keep a compression context per connection (context takeover),
    /// with an LZ77 window of 2^BITS bytes (9-15): better ratios on similar messages, at
    /// ~420 KiB per connection at 15 (~300 KiB at 11).
    #[arg(long, value_name = "BITS", requires = "deflate", value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_takeover: Option<u8>,
    /// Worker threads [default: one per CPU this process may run on].
    #[arg(long, short)]
    pub workers: Option<usize>,
    /// Do not pin workers to CPUs (by default worker i runs on the i-th allowed CPU).
    #[arg(long)]
    pub no_pin: bool,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Largest message and largest frame, in bytes (16 MiB); a bigger one closes the
    /// connection with 1009.
    #[arg(long, alias = "max-message-size", value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_message: usize,
    /// Backpressure: most bytes queued unsent on one connection (4 MiB) before
    /// --backpressure applies; a quarter of it is the low watermark. A message that finds
    /// the queue empty is always accepted, so any message up to --max-message can be
    /// echoed.
    #[arg(long, alias = "max-queued", value_name = "BYTES", default_value_t = 4 << 20)]
    pub max_queued_bytes: usize,
    /// Pub/sub: most topics one connection may subscribe to (64); a `SUB` past it is
    /// answered `REFUSED`.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_topics: usize,
    /// What to do with a slow consumer whose queue reached --max-queued-bytes.
    #[arg(long, value_enum, default_value_t = Policy::Close)]
    pub backpressure: Policy,
    /// Heartbeat: send a ping after this many seconds without inbound traffic (0: no
    /// heartbeats).
    #[arg(long, alias = "ping-secs", value_name = "SECS", default_value_t = 30)]
    pub ping_interval: u64,
    /// Heartbeat: after a ping, close the connection if nothing at all arrives within
    /// this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub pong_timeout: u64,
    /// Close the connection (1001) after this many seconds without inbound traffic of
    /// any kind, pongs included (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub idle_timeout: u64,
    /// The WebSocket upgrade must complete within this many seconds of the accept.
    #[arg(long, alias = "handshake-secs", value_name = "SECS", default_value_t = 10)]
    pub handshake_timeout: u64,
    /// TCP keepalive idle time on accepted sockets, in seconds (0: off).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub tcp_keepalive: u64,
    /// Most open connections per worker; further accepts are closed at once.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
    /// io_uring submission queue entries of each worker's first ring (power of two)
    /// [default: 4096].
    #[arg(long)]
    pub ring_entries: Option<u32>,
    /// io_uring direct descriptors: fixed-file slots per ring [default: as many as one
    /// table may hold]; a worker opens another ring when one is full.
    #[arg(long)]
    pub fixed_files_per_ring: Option<u32>,
    /// io_uring: spin up to this many microseconds watching for work before sleeping
    /// (0: sleep at once). Lower latency for more CPU.
    #[arg(long, default_value_t = 0)]
    pub busy_poll_us: u64,
    /// Provided receive buffers per ring (power of two), shared by the ring's connections.
    #[arg(long, default_value_t = EngineConfig::default().recv_buffers)]
    pub recv_buffers: u32,
    /// Size of each receive buffer, in bytes.
    #[arg(long, default_value_t = EngineConfig::default().recv_buffer_size)]
    pub recv_buffer_size: u32,
    /// With io_uring, use plain file descriptors instead of direct descriptors.
    #[arg(long)]
    pub no_direct: bool,
    /// Print a one-line summary this often: connections open and accepted, messages in
    /// and out per second since the last line, drops and failures (`10s`, `2m`, or
    /// seconds; 0: only at the end). With io_uring direct descriptors connections do
    /// not show in /proc/PID/fd; this line (or `ss`, or `--admin`) counts them.
    #[arg(
        long = "report-every",
        visible_alias = "stats-every",
        value_name = "DURATION",
        default_value = "0",
        value_parser = parse_every
    )]
    pub stats_every: u64,
    /// Stop after this many seconds (0: run until Ctrl-C / SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
}

/// `--report-every`: `10s`, `2m`, or plain seconds.
fn parse_every(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, mul) = match v.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (v.strip_suffix('s').unwrap_or(v), 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("{v:?}: a duration such as 10s, 2m or 30"))
}

/// `N s`, or `off` for 0.
fn secs_text(s: u64) -> String {
    if s == 0 {
        "off".into()
    } else {
        format!("{s} s")
    }
}

/// Seconds, with 0 meaning off.
fn secs_or_off(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

impl ServeArgs {
    /// The timers and limits in force, one line for the startup banner.
    pub fn timers_text(&self) -> String {
        let heartbeat = if self.ping_interval == 0 {
            "off".into()
        } else {
            format!("ping after {} s, pong timeout {} s", self.ping_interval, self.pong_timeout)
        };
        format!(
            "heartbeats {heartbeat}; idle timeout {}; max message {} B; max queued {} B per \
             connection ({:?}); max {} connections per worker",
            secs_text(self.idle_timeout),
            self.max_message,
            self.max_queued_bytes,
            self.backpressure,
            self.max_connections
        )
    }

    pub fn builder(&self) -> EngineBuilder {
        let frame = FrameConfig::default()
            .max_message_size(self.max_message)
            .max_frame_size(self.max_message)
            .ping_interval(secs_or_off(self.ping_interval))
            .pong_timeout(Duration::from_secs(self.pong_timeout))
            .idle_timeout(secs_or_off(self.idle_timeout))
            .deflate(self.deflate.then(|| {
                let d = ringwire::frame::DeflateConfig::default();
                match self.deflate_takeover {
                    Some(bits) => d.context_takeover(true).window_bits(bits),
                    None => d,
                }
            }));
        let mut b = Engine::builder()
            .pin_cpus(!self.no_pin)
            .backend(self.backend.choice())
            .frame(frame)
            .max_queued_bytes(self.max_queued_bytes)
            .low_watermark(self.max_queued_bytes / 4)
            .backpressure(match self.backpressure {
                Policy::Close => Backpressure::Close,
                Policy::DropNewest => Backpressure::DropNewest,
                Policy::DropOldest => Backpressure::DropOldest,
            })
            .handshake_timeout(Duration::from_secs(self.handshake_timeout))
            .tcp_keepalive(secs_or_off(self.tcp_keepalive))
            .recv_buffers(self.recv_buffers)
            .recv_buffer_size(self.recv_buffer_size)
            .max_connections_per_worker(self.max_connections)
            .max_topics_per_connection(self.max_topics)
            .direct_descriptors(!self.no_direct);
        if let Some(w) = self.workers {
            b = b.workers(w);
        }
        if let Some(n) = self.ring_entries {
            b = b.ring_entries(n);
        }
        if self.fixed_files_per_ring.is_some() {
            b = b.fixed_files_per_ring(self.fixed_files_per_ring);
        }
        if self.busy_poll_us > 0 {
            b = b.busy_poll(Some(Duration::from_micros(self.busy_poll_us)));
        }
        for a in &self.listen {
            b = b.listen(*a);
        }
        if let Some(a) = self.admin {
            b = b.admin(a);
        }
        if !self.cluster.is_empty() {
            b = b.cluster(ringwire::cluster::ClusterConfig::nats(self.cluster.clone()));
        }
        b
    }
}

/// An error and its causes, one after the other ("start: worker 0: io_uring setup: ...").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `println!` that does not panic when stdout is gone (`ringwire serve | head`, a closed
/// pipe): the server goes on, and stops cleanly, without its console.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let mut b = args.builder();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            ringwire::tls::TlsServerConfig::from_pem_files(cert, key)
                .map_err(|e| error_chain(&e))?,
        ),
        _ => None,
    };
    if let Some(t) = &tls {
        b = b.tls(t.clone());
    }
    if let Some(path) = &args.auth_jwt_key {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let auth = ringwire::auth::JwtAuthorizer::from_key_file(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        b = b.authorizer(auth);
    }
    let server = match args.mode {
        Mode::Echo => b.start(|_| Echo),
        Mode::Pubsub => b.start(|_| PubSub),
    }
    .map_err(|e| error_chain(&e))?;
    let info = server.backend();
    say!(
        "ringwire serving {:?} on {:?}: {} workers, backend {} [{}]{}",
        args.mode,
        server.local_addrs(),
        server.workers(),
        info.name,
        info.features.join(", "),
        info.fallback_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
    );
    if let Some((n, size)) = info.recv_pool {
        say!("receive buffers per ring: {n} x {} KiB", size / 1024);
    }
    if let Some(a) = server.admin_addr() {
        say!("admin: http://{a}/metrics, /healthz, /readyz");
    }
    if !args.cluster.is_empty() {
        say!("cluster: NATS at {}, topics on subjects ringwire.t.*", args.cluster.join(", "));
    }
    if args.deflate {
        match args.deflate_takeover {
            Some(bits) => say!("permessage-deflate: on, a context per connection, window 2^{bits}"),
            None => say!("permessage-deflate: on, shared per worker (no context takeover)"),
        }
    }
    if let Some(cert) = &args.tls_cert {
        let groups: Vec<String> = ringwire::tls::crypto_provider()
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        say!(
            "TLS: wss:// with {} (SIGHUP reloads it); key exchange {}",
            cert.display(),
            groups.join(", ")
        );
    }
    say!("{}", args.timers_text());
    say!("pid {}", std::process::id());
    // Ctrl-C and SIGTERM stop the server gracefully; SIGHUP reloads the certificate.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    if tls.is_some() {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .map_err(|e| e.to_string())?;
    }
    let started = std::time::Instant::now();
    let mut next_stats = Duration::from_secs(args.stats_every);
    let mut last = (std::time::Instant::now(), server.stats());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if let (true, Some(t)) = (hup.swap(false, Ordering::Relaxed), &tls) {
            match t.reload() {
                Ok(()) => say!("TLS: certificate reloaded"),
                Err(e) => {
                    say!("TLS: reload failed, the old certificate stays: {}", error_chain(&e))
                }
            }
        }
        if args.duration > 0 && started.elapsed() >= Duration::from_secs(args.duration) {
            break;
        }
        if args.stats_every > 0 && started.elapsed() >= next_stats {
            next_stats += Duration::from_secs(args.stats_every);
            let (now, s) = (std::time::Instant::now(), server.stats());
            let (then, p) = &last;
            let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
            let per = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
            say!(
                "report: {} connections open (+{} accepted), {:.0} msg/s in, {:.0} out, {} drops, \
                 {} failed upgrades, {} slow consumers closed, {} heartbeats missed",
                s.connections,
                s.accepted - p.accepted,
                per(s.messages_in, p.messages_in),
                per(s.messages_out, p.messages_out),
                s.drops - p.drops,
                s.handshake_failures - p.handshake_failures,
                s.slow_closes - p.slow_closes,
                s.closes_by_cause.heartbeat_timeout - p.closes_by_cause.heartbeat_timeout,
            );
            last = (now, s);
        }
    }
    let stats = server.stats();
    server.shutdown().map_err(|e| error_chain(&e))?;
    say!(
        "stopped: {} accepted, {} messages in ({} lent without a copy), {} out, {} bytes in, {} \
         out, {} drops",
        stats.accepted,
        stats.messages_in,
        stats.messages_lent,
        stats.messages_out,
        stats.bytes_in,
        stats.bytes_out,
        stats.drops
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> EngineConfig {
        let argv = std::iter::once("serve").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().serve.builder().current().clone()
    }

    #[test]
    fn defaults_are_production_defaults() {
        let c = config(&[]);
        assert_eq!(c.admin, None, "no admin listener unless asked for");
        assert!(c.cluster.is_none(), "one node unless asked for");
        assert_eq!(c.frame.deflate, None, "no compression unless asked for");
        let d = config(&["--deflate"]).frame.deflate.unwrap();
        assert!(!d.context_takeover, "shared: no state per idle connection");
        let d = config(&["--deflate", "--deflate-takeover", "11"]).frame.deflate.unwrap();
        assert!(d.context_takeover && d.window_bits == 11);
        let bad = ["serve", "--deflate", "--deflate-takeover", "8"];
        assert!(Cli::try_parse_from(bad).is_err(), "zlib makes no 256-byte windows");
        assert!(Cli::try_parse_from(["serve", "--deflate-takeover", "12"]).is_err());
        let two = config(&["--cluster", "nats://10.0.0.1:4222,nats://10.0.0.2:4222"]);
        let servers = two.cluster.map(|c| c.servers).unwrap_or_default();
        assert_eq!(servers, ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]);
        for (v, secs) in [("10s", 10), ("2m", 120), ("30", 30), ("0", 0)] {
            assert_eq!(parse_every(v), Ok(secs), "{v}");
        }
        assert!(parse_every("soon").is_err() && parse_every("5h").is_err());
        let a = config(&["--admin", "127.0.0.1:9100"]).admin;
        assert_eq!(a, Some("127.0.0.1:9100".parse().unwrap()));
        // Heartbeats on, an idle timeout: a silent or vanished peer does not stay forever.
        assert_eq!(c.frame.ping_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.frame.pong_timeout, Duration::from_secs(10));
        assert_eq!(c.frame.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(60)));
        // Every limit bounded.
        assert_eq!(c.frame.max_message_size, 16 << 20);
        assert_eq!(c.frame.max_frame_size, 16 << 20);
        assert_eq!(c.max_queued_bytes, 4 << 20);
        assert_eq!(c.low_watermark, 1 << 20);
        assert_eq!(c.backpressure, Backpressure::Close);
        assert_eq!(c.max_connections_per_worker, 100_000);
        assert_eq!((c.max_topics_per_connection, c.max_topic_len), (64, 256));
        // The rest as the engine's own defaults.
        let d = EngineConfig::default();
        assert_eq!(c.listen, vec!["127.0.0.1:9001".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.backend, BackendChoice::Auto);
        assert!(c.pin_cpus && c.direct_descriptors);
        assert_eq!(c.workers, d.workers);
        assert_eq!(c.ring_entries, d.ring_entries);
        assert_eq!(c.recv_buffers, d.recv_buffers);
        assert_eq!(c.recv_buffer_size, d.recv_buffer_size);
        assert_eq!(c.fixed_files_per_ring, None);
        assert_eq!(c.busy_poll, None);
        c.validate().unwrap();
    }

    #[test]
    fn timers_turn_off() {
        let c = config(&["--ping-interval", "0", "--idle-timeout", "0", "--tcp-keepalive", "0"]);
        assert_eq!(c.frame.ping_interval, None);
        assert_eq!(c.frame.idle_timeout, None);
        assert_eq!(c.tcp_keepalive, None);
        // The old spellings still work.
        let c = config(&["--ping-secs", "5", "--handshake-secs", "3", "--max-queued", "4096"]);
        assert_eq!(c.frame.ping_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.max_queued_bytes, 4096);
        assert_eq!(c.low_watermark, 1024);
    }

    #[test]
    fn help_states_the_defaults() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        let help = cli.find_subcommand_mut("serve").unwrap().render_long_help().to_string();
        for needle in [
            "[default: 30]",
            "[default: 120]",
            "[default: 16777216]",
            "[default: 4194304]",
            "[default: close]",
            "[default: 100000]",
            "0: no heartbeats",
            "0: never",
            "Heartbeats (--ping-interval 30, --pong-timeout 10)",
        ] {
            assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
        }
    }
}
