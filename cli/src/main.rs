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

/// The engine's log (a handler's panic, a shutdown that timed out, the chosen backend)
/// goes to stderr, at the level `RINGWIRE_LOG` names (`error`, `warn`, `info`, `debug`,
/// `trace`; default `warn`).
fn init_log() {
    let level = match std::env::var("RINGWIRE_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("info") => tracing::Level::INFO,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
}

fn main() {
    init_log();
    let cli = Cli::parse();
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
