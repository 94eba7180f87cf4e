//! The `ringwire` command: `serve` (echo or pub/sub gateway), `load` (the load
//! generator), `connect` (an interactive WebSocket client) and `demo` (a gateway and a
//! client swarm on loopback, with a report).

#![forbid(unsafe_code)]

mod connect;
mod demo;
mod demo_durable;
mod gateway;
mod load;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ringwire", version, about = "Thread-per-core io_uring WebSocket engine")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The log's format on stderr: `text`, or `json` (one object per line, for a log
    /// pipeline) [default: RINGWIRE_LOG_FORMAT, else text]. What is logged:
    /// RINGWIRE_LOG (or RUST_LOG): a level or filter directives such as
    /// `ringwire=debug,warn` [default: warn].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a WebSocket server (echo or pub/sub gateway).
    #[command(after_long_help = serve::DEFAULTS_HELP)]
    Serve(serve::ServeArgs),
    /// Generate load against a WebSocket server and report latency and CPU per message.
    Load(load::LoadArgs),
    /// Connect to a WebSocket server: send stdin lines, print the messages received.
    #[command(after_long_help = connect::HELP)]
    Connect(connect::ConnectArgs),
    /// Start a gateway and a client swarm on loopback and report what happened (default).
    Demo(demo::DemoArgs),
}

/// The engine's log goes to stderr: a handler's panic, refused upgrades, protocol errors
/// and limits hit (rate-limited per worker), startup and shutdown. What is logged comes
/// from `RINGWIRE_LOG`, else `RUST_LOG`: a level (`error`, `warn`, `info`, `debug`,
/// `trace`) or `tracing` filter directives (`ringwire=debug,warn`); default `warn`.
/// The format from `--log-format`, else `RINGWIRE_LOG_FORMAT` (`text` or `json`).
fn init_log(format: Option<LogFormat>) {
    let spec = std::env::var("RINGWIRE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: log filter {spec:?}: {e}; logging warnings only");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let format = format.unwrap_or_else(|| {
        match std::env::var("RINGWIRE_LOG_FORMAT").as_deref().map(str::to_ascii_lowercase) {
            Ok(f) if f == "json" => LogFormat::Json,
            _ => LogFormat::Text,
        }
    });
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => log.json().init(),
        LogFormat::Text => log.init(),
    }
}

fn main() {
    let cli = Cli::parse();
    init_log(cli.log_format);
    let result = match cli.cmd.unwrap_or(Cmd::Demo(demo::DemoArgs::default())) {
        Cmd::Serve(a) => serve::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::Connect(a) => connect::run(a),
        Cmd::Demo(a) => demo::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
