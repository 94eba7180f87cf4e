//! `ringwire connect URL`: an interactive WebSocket client, for any WebSocket server.
//!
//! Three threads take part. The engine's one worker runs the connection and its
//! [`Relay`] handler, which only forwards what happens (messages, state changes, pongs,
//! health alerts, the close) to the main thread through a channel: it never blocks. A
//! stdin thread reads lines into a bounded channel (`input.rs`). The main thread
//! (`session.rs`) prints, sends the lines through the [`ClientHandle`], and decides
//! when the command ends and with which status (`output.rs` renders what it prints).

mod input;
mod output;
mod session;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ringwire::client::{ClientConfig, ClientState, HealthSnapshot, StateChange};
use ringwire::frame::{CloseCode, Closed, Config as FrameConfig, Message};
use ringwire::{Ctx, Engine, EngineBuilder, Handler};

use self::session::{Event, Session};
use crate::serve::{error_chain, Backend};

/// Shown after the options by `ringwire connect --help`: how the command behaves.
pub const HELP: &str = "\
Each line read from stdin is sent as one message (text, or binary with --binary), without
its newline. Lines read while the connection is not up wait for it (stdin is not read
further while 1024 lines wait) and go out once it is up; a line not yet written to the
socket when the connection is lost is lost with it. At the end of stdin, or on Ctrl-C, the
client closes the connection with 1000 and waits up to 3 s for the server's close (a
second Ctrl-C exits at once).

Each message received is printed on stdout, followed by a newline: text as it is (JSON
pretty-printed with --json, keys in their order and numbers as written), binary as hex
(the raw bytes with --raw). State changes and errors go to stderr; -v adds the round trip
of each heartbeat pong, health alerts and close details.

Without --reconnect, the first failed connect or lost connection ends the command. With
it, the client reconnects with backoff (a random wait up to 1 s, doubling to at most 30 s)
for as long as it runs: the end of stdin closes once the connection is up again and every
line is sent, Ctrl-C at any time. A server that refuses the upgrade for good (a 4xx other
than 408/429, or an invalid 101) ends it either way.

Messages waiting to be printed are bounded: past 16 MiB (stdout slower than the server)
the connection is closed with 1008 and the command exits 1.

Exit status: 0 after a normal close (ours at the end of stdin or on Ctrl-C, or the
server's with 1000); 1 when the connection could not be made or was lost (the cause is
printed); 2 for usage errors.";

/// The close handshake at the end must finish within this long (also the engine's close
/// timeout, so the worker gives up at the same time).
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Bytes the engine may queue for sending on the connection before it closes it as a slow
/// consumer. The session's own flow control (`session.rs`) keeps at most about 64 KiB
/// plus one line unsent, so this limit only stops a single line of more than 1 GiB.
const MAX_QUEUED: usize = 1 << 30;

/// `ringwire connect` options.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The server: ws://host[:port][/path][?query] or wss://... (TLS; the server's
    /// certificate is verified against the system's authorities and --ca). A host name
    /// is resolved at the start and again after a lost connection.
    #[arg(value_parser = ws_url)]
    pub url: String,
    /// wss://: also trust the certificate authority in FILE (PEM), beside the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// wss://: do not verify the server's certificate at all (anyone on the path can
    /// read and change the traffic). For tests against self-signed servers.
    #[arg(long)]
    pub insecure: bool,
    /// Send each stdin line as a binary message instead of a text message.
    #[arg(long, short)]
    pub binary: bool,
    /// Print binary messages received as their raw bytes (and a newline) instead of hex.
    #[arg(long)]
    pub raw: bool,
    /// Pretty-print the text messages received that parse as JSON; others are printed as
    /// they are.
    #[arg(long)]
    pub json: bool,
    /// Reconnect with backoff after a failed connect or a lost connection, instead of
    /// exiting with status 1.
    #[arg(long)]
    pub reconnect: bool,
    /// Extra request header of the upgrade, as `Name: value` (repeat for several).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Offer this subprotocol in Sec-WebSocket-Protocol (repeat for several, in order of
    /// preference).
    #[arg(long = "protocol", value_name = "P")]
    pub protocols: Vec<String>,
    /// The Origin header of the upgrade.
    #[arg(long, value_name = "O")]
    pub origin: Option<String>,
    /// The TCP connect, then the WebSocket upgrade, must each finish within this many
    /// seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub connect_timeout: u64,
    /// Heartbeat: send a ping after this many seconds without inbound traffic (0: no
    /// heartbeats). The default is the engine's client default. A server that sends
    /// nothing within --pong-timeout of a ping counts as lost. With -v each pong's round
    /// trip is printed.
    #[arg(
        long,
        alias = "ping-interval",
        value_name = "SECS",
        default_value_t = default_ping_secs(),
        value_parser = clap::value_parser!(u64).range(0..=86_400)
    )]
    pub ping_secs: u64,
    /// Heartbeat: after a ping, count the connection as lost if nothing at all arrives
    /// within this many seconds. The default is the engine's client default.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = ClientConfig::default().pong_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub pong_timeout: u64,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Also print heartbeat round trips, health alerts and close details on stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The engine's client heartbeat interval in whole seconds (0: none).
fn default_ping_secs() -> u64 {
    ClientConfig::default().ping_interval.map_or(0, |d| d.as_secs())
}

/// Parses `Name: value` (the value's surrounding blanks trimmed; it may be empty).
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or("expected `Name: value`")?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("invalid header name {name:?}"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("a header value may not hold CR, LF or NUL".into());
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

impl ConnectArgs {
    /// The engine: one unpinned worker that only dials, whose close handshake gives up
    /// after [`CLOSE_WAIT`].
    pub fn builder(&self) -> EngineBuilder {
        let frame = FrameConfig::default().close_timeout(CLOSE_WAIT);
        Engine::builder()
            .workers(1)
            .pin_cpus(false)
            .backend(self.backend.choice())
            .frame(frame)
            .max_queued_bytes(MAX_QUEUED)
            .low_watermark(MAX_QUEUED / 4)
            .shutdown_timeout(Duration::from_secs(1))
    }

    /// The connection's options. Without --reconnect the retry policy stays the default:
    /// the handler closes the client at its first move to `Reconnecting` instead, so the
    /// cause of the failure is the one reported (a `max_attempts` of 1 would report
    /// "gave up after 1 failed attempts" in its place, and would not stop a reconnect
    /// after the loss of a connection that had been up a while).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::default();
        c.headers = self.headers.clone();
        c.protocols = self.protocols.clone();
        c.origin = self.origin.clone();
        c.ping_interval = (self.ping_secs > 0).then(|| Duration::from_secs(self.ping_secs));
        c.pong_timeout = Duration::from_secs(self.pong_timeout);
        c.connect_timeout = Duration::from_secs(self.connect_timeout);
        c.handshake_timeout = Duration::from_secs(self.connect_timeout);
        c
    }

    /// The TLS configuration --ca and --insecure ask for (`None`: the engine's default,
    /// the system's authorities).
    pub fn tls_config(&self) -> Result<Option<ringwire::tls::TlsClientConfig>, String> {
        tls_config(self.ca.as_deref(), self.insecure)
    }
}

/// Bytes of received messages that may wait to be printed. Past this (stdout slower
/// than the server, or not read at all) the connection is closed with 1008, as an
/// engine `ClientStream` does on overflow: the handler must not block its worker, and
/// memory must not grow without bound.
pub(crate) const MAX_BACKLOG: usize = 16 << 20;

/// Received message bytes handed to the main thread and not yet printed.
#[derive(Clone, Default)]
pub(crate) struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    /// The main thread printed a message of `n` bytes.
    pub(crate) fn printed(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The size a message counts for in the backlog (an empty one still costs its entry).
pub(crate) fn backlog_size(msg: &Message) -> usize {
    msg.as_bytes().len().max(1)
}

/// The handler: forwards everything to the main thread and never blocks (the channel is
/// unbounded, its messages bounded by [`MAX_BACKLOG`]). Without --reconnect it closes
/// the client when it would reconnect, before the retry can start.
struct Relay {
    tx: Sender<Event>,
    reconnect: bool,
    backlog: Backlog,
    overflowed: bool,
}

impl Handler for Relay {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let n = backlog_size(&msg);
        if self.overflowed || self.backlog.0.load(Ordering::Acquire) + n > MAX_BACKLOG {
            if !std::mem::replace(&mut self.overflowed, true) {
                let _ = cx.close(CloseCode::POLICY, "client output too slow");
                let _ = self.tx.send(Event::Overflow);
            }
            return;
        }
        self.backlog.0.fetch_add(n, Ordering::AcqRel);
        let _ = self.tx.send(Event::Message(msg));
    }

    fn on_pong(&mut self, _cx: &mut Ctx<'_>, rtt: Option<Duration>) {
        if let Some(rtt) = rtt {
            let _ = self.tx.send(Event::Pong(rtt));
        }
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, closed: &Closed) {
        let _ = self.tx.send(Event::Closed(closed.clone()));
    }

    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        if !self.reconnect && change.to == ClientState::Reconnecting {
            // Ends the client at once: the retry timer is dropped before it can fire.
            let _ = cx.close(CloseCode::NORMAL, "");
        }
        let _ = self.tx.send(Event::State(change.clone()));
    }

    fn on_health(&mut self, _cx: &mut Ctx<'_>, health: &HealthSnapshot) {
        let _ = self.tx.send(Event::Health(health.clone()));
    }
}

/// Runs `ringwire connect`: returns once the connection is closed or lost for good;
/// `Err` carries the cause when the exit status is to be 1.
pub fn run(args: ConnectArgs) -> Result<(), String> {
    let (tx, events) = mpsc::channel();
    let relay_tx = tx.clone();
    let reconnect = args.reconnect;
    let backlog = Backlog::default();
    let relay_backlog = backlog.clone();
    let server = args
        .builder()
        .start(move |_| Relay {
            tx: relay_tx.clone(),
            reconnect,
            backlog: relay_backlog.clone(),
            overflowed: false,
        })
        .map_err(|e| format!("cannot start the engine: {}", error_chain(&e)))?;
    let mut config = args.client_config();
    config.tls = match args.tls_config() {
        Ok(t) => t,
        Err(e) => {
            let _ = server.shutdown();
            return Err(e);
        }
    };
    let client = match server.connect(&args.url, config) {
        Ok(c) => c,
        Err(e) => {
            let _ = server.shutdown();
            return Err(format!("cannot connect to {}: {}", args.url, error_chain(&e)));
        }
    };
    // Ctrl-C and SIGTERM close the connection; a second one exits at once (status 130).
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone())
            .and_then(|_| signal_hook::flag::register(sig, interrupted.clone()))
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let lines = input::spawn(tx).map_err(|e| format!("cannot read stdin: {e}"))?;
    let result = Session::new(&server, client, &args, lines, interrupted, backlog).run(&events);
    let down = server.shutdown().map_err(|e| format!("engine shutdown: {}", error_chain(&e)));
    result.and(down)
}

/// The client TLS configuration of `--ca FILE` and `--insecure` (`None`: the engine's
/// default, the system's authorities).
pub fn tls_config(
    ca: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Option<ringwire::tls::TlsClientConfig>, String> {
    if insecure {
        return Ok(Some(ringwire::tls::TlsClientConfig::insecure()));
    }
    match ca {
        Some(path) => {
            ringwire::tls::TlsClientConfig::new(&[path]).map(Some).map_err(|e| error_chain(&e))
        }
        None => Ok(None),
    }
}

/// A usage error (exit status 2) for what is not a `ws://` or `wss://` URL with a host;
/// the engine checks the rest.
fn ws_url(s: &str) -> Result<String, String> {
    let rest = match s.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss") =>
        {
            rest
        }
        _ => return Err(format!("{s:?} is not a ws:// or wss:// URL")),
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    fn parse(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        let argv = ["connect", "ws://127.0.0.1:9001/"].into_iter().chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.connect)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert!(!a.binary && !a.raw && !a.json && !a.reconnect && !a.verbose);
        let c = a.builder().current().clone();
        assert_eq!((c.workers, c.pin_cpus, c.listen.len()), (1, false, 0));
        assert_eq!(c.frame.close_timeout, CLOSE_WAIT);
        c.validate().unwrap();
        let cc = a.client_config();
        assert_eq!(cc.connect_timeout, Duration::from_secs(10));
        assert_eq!(cc.handshake_timeout, Duration::from_secs(10));
        let d = ClientConfig::default();
        assert_eq!((cc.ping_interval, cc.pong_timeout), (d.ping_interval, d.pong_timeout));
        assert_eq!(cc.retry, d.retry);
        cc.validate().unwrap();
    }

    #[test]
    fn options_reach_the_configs() {
        let a = parse(&[
            "-H",
            "Authorization: Bearer x:y",
            "--header",
            "X-Empty:",
            "--protocol",
            "chat",
            "--protocol",
            "v2",
            "--origin",
            "http://example.com",
            "--connect-timeout",
            "2",
            "--ping-secs",
            "5",
            "--pong-timeout",
            "3",
        ])
        .unwrap();
        let cc = a.client_config();
        let h = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(cc.headers, vec![h("Authorization", "Bearer x:y"), h("X-Empty", "")]);
        assert_eq!(cc.protocols, vec!["chat".to_owned(), "v2".to_owned()]);
        assert_eq!(cc.origin.as_deref(), Some("http://example.com"));
        assert_eq!(cc.connect_timeout, Duration::from_secs(2));
        assert_eq!(cc.ping_interval, Some(Duration::from_secs(5)));
        assert_eq!(cc.pong_timeout, Duration::from_secs(3));
        assert_eq!(parse(&["--ping-interval", "7"]).unwrap().ping_secs, 7);
        let off = parse(&["--ping-secs", "0"]).unwrap().client_config();
        assert_eq!(off.ping_interval, None);
        off.validate().unwrap();
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["-H", "no colon"][..],
            &["-H", ": empty name"],
            &["-H", "bad name: x"],
            &["--connect-timeout", "0"],
            &["--backend", "kqueue"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        for url in ["http://h/", "wss:///x", "ws:///path", "h:9001"] {
            let e = Cli::try_parse_from(["connect", url]).map(|c| c.connect).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{url}: {e}");
        }
        assert!(Cli::try_parse_from(["connect", "WS://h:1/x?y"]).is_ok());
    }

    #[test]
    fn help_states_the_defaults() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        let help = cli.find_subcommand_mut("connect").unwrap().render_long_help().to_string();
        let ping = format!("[default: {}]", default_ping_secs());
        for needle in ["[default: 10]", &ping, "[default: auto]", "Exit status: 0"] {
            assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
        }
    }
}
