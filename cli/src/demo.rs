//! `ringwire demo` (also what `ringwire` runs with no subcommand): starts the pub/sub
//! gateway on loopback, drives it with the load generator in the same process (many idle
//! connections, echo, fan-out), sends durable messages through a restart of a gateway
//! with a duplicate filter (`demo_durable`), and prints a short report. About ten
//! seconds on defaults; exits non-zero if anything went wrong on either side.

use std::time::{Duration, Instant};

use clap::Args;
use ringwire::{Engine, Server, StatsSnapshot};

use crate::gateway::PubSub;
use crate::load::args::{ClientArgs, EchoArgs, FanoutArgs, IdleArgs};
use crate::load::echo::run_echo;
use crate::load::fanout::run_fanout;
use crate::load::idle::run_idle;
use crate::load::procfs::{fd_limit, ProcTarget};
use crate::load::report::{Bytes, Count, Ns};
use crate::serve::Backend;

/// Name prefix of the engine's worker threads (how their CPU time is told apart).
const SERVER_THREADS: &str = "ringwire-w";

/// `ringwire demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Server worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The server's I/O backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Load generator threads (unpinned: the server's workers own the CPUs).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Echo: connections.
    #[arg(long, default_value_t = 200)]
    pub echo_connections: usize,
    /// Echo: messages in flight per connection.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Echo: message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Fan-out: subscribers.
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Fan-out: publishes per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Idle: connections to hold.
    #[arg(long, default_value_t = 5_000)]
    pub idle_connections: usize,
    /// Durable: messages sent through a restart of the gateway (0: skip).
    #[arg(long, default_value_t = 2_000)]
    pub durable_messages: u64,
    /// Seconds measured for echo and for fan-out.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Print each scenario's full report too.
    #[arg(long, short)]
    pub verbose: bool,
    /// Also write the results as one JSON object on stdout (the text goes to stderr).
    #[arg(long)]
    pub json: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        Self {
            workers: None,
            backend: Backend::Auto,
            threads: 1,
            echo_connections: 200,
            in_flight: 4,
            size: 64,
            subscribers: 1_000,
            rate: 200.0,
            idle_connections: 5_000,
            durable_messages: 2_000,
            seconds: 3.0,
            verbose: false,
            json: false,
        }
    }
}

fn start_server(workers: Option<usize>, backend: Backend) -> Result<Server, String> {
    let mut b = Engine::builder()
        .listen(([127, 0, 0, 1], 0).into())
        .pin_cpus(true)
        .backend(backend.choice());
    if let Some(w) = workers {
        b = b.workers(w);
    }
    b.start(|_| PubSub)
        .map_err(|e| format!("starting the gateway: {}", crate::serve::error_chain(&e)))
}

/// Closes the server saw with codes other than a normal or going-away close.
fn abnormal_closes(s: &StatsSnapshot) -> u64 {
    s.closes_by_code.iter().filter(|(c, _)| !matches!(c, Some(1000 | 1001))).map(|(_, n)| n).sum()
}

fn closes_text(s: &StatsSnapshot) -> String {
    let v: Vec<String> = s
        .closes_by_code
        .iter()
        .map(|(c, n)| match c {
            Some(c) => format!("{c} x {}", Count(*n)),
            None => format!("other x {}", Count(*n)),
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<(), String> {
    // The text report: stdout, or stderr when stdout carries the JSON object.
    macro_rules! say {
        ($($t:tt)*) => {{
            use std::io::Write as _;
            let _ = if a.json {
                writeln!(std::io::stderr(), $($t)*)
            } else {
                writeln!(std::io::stdout(), $($t)*)
            };
        }};
    }
    let started = Instant::now();
    let server = start_server(a.workers, a.backend)?;
    let addr = server.local_addr();
    let info = server.backend().clone();
    let workers = server.workers();
    say!(
        "ringwire demo: pub/sub gateway on {addr}, {} worker(s), backend {} [{}]{}",
        server.workers(),
        info.name,
        info.features.join(", "),
        info.fallback_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    let client = ClientArgs {
        addrs: vec![addr],
        threads: a.threads,
        connect_timeout: 20.0,
        ..Default::default()
    };
    let server_cpu = Some(ProcTarget::SelfThreads(SERVER_THREADS));

    // (1) idle, first: its memory figure is this process's RSS growth, which heap freed
    // by earlier runs would hide. Both ends live in this process (two fds each on epoll).
    let pairs_max = (fd_limit().saturating_sub(256) / 2) as usize;
    let idle_n = a.idle_connections.min(pairs_max).max(1);
    let idle = run_idle(
        &IdleArgs {
            client: client.clone(),
            connections: idle_n,
            hold: 1.0,
            settle: 0.5,
            baseline: idle_n / 4,
        },
        Some((ProcTarget::SelfAll, "this process".into())),
        server_cpu.clone(),
        idle_n as u64 + 16,
    )?;
    if a.verbose {
        say!("{idle}");
    }

    // (2) echo. Text messages: the gateway echoes any text that is not a command, while a
    // binary message would be read as a publish request.
    let echo = run_echo(
        &EchoArgs {
            client: client.clone(),
            connections: a.echo_connections,
            in_flight: a.in_flight,
            size: a.size,
            duration: a.seconds,
            warmup: 0.5,
            text: true,
        },
        server_cpu.clone(),
    )?;
    if a.verbose {
        say!("{echo}");
    }

    // (3) fan-out.
    let fan = run_fanout(
        &FanoutArgs {
            client: client.clone(),
            subscribers: a.subscribers,
            rate: a.rate,
            duration: a.seconds,
            size: 64,
            topic: "demo".into(),
            remote_subscribers: false,
        },
        server_cpu.clone(),
        a.subscribers as u64 + 16,
    )?;
    if a.verbose {
        say!("{fan}");
    }

    // (4) durable: a client's outbox through a restart of a gateway with a filter.
    let durable = match a.durable_messages {
        0 => None,
        n => Some(crate::demo_durable::run_durable(n)?),
    };

    // Let the last close handshakes finish before reading the engine's counters.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.stats().connections > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.stats();
    server
        .shutdown()
        .map_err(|e| format!("gateway shutdown: {}", crate::serve::error_chain(&e)))?;

    let gen_errors = echo.errors.total() + fan.errors.total() + idle.errors.total();
    let lost = echo.unanswered + fan.expected().saturating_sub(fan.delivered);
    let server_errors = stats.drops
        + stats.slow_closes
        + stats.handshake_failures
        + stats.accept_errors
        + stats.rejected
        + abnormal_closes(&stats);

    say!(
        "  echo            {} connections x {} in flight x {} B: {} msg/s, round trip p50 {}, p99 {}",
        Count(echo.connections as u64),
        echo.in_flight,
        echo.size,
        Count(echo.rate() as u64),
        Ns(echo.latency.p50),
        Ns(echo.latency.p99)
    );
    if let Some(s) = echo.cpu.server {
        say!(
            "                  server CPU {} per message ({:.0}% of a core)",
            Ns(s.cpu_ns / echo.messages.max(1)),
            s.percent()
        );
    }
    say!(
        "  fan-out         {} subscribers x {} publishes/s: {} of {} delivered, p50 {}, p99 {}; to all {}: p99 {}",
        Count(fan.subscribers as u64),
        fan.rate,
        Count(fan.delivered),
        Count(fan.expected()),
        Ns(fan.latency.p50),
        Ns(fan.latency.p99),
        Count(fan.subscribed),
        Ns(fan.to_all.p99)
    );
    let mem = idle.per_connection().map_or("not measured".into(), |b| {
        format!(
            "{} per connection, server and client ends together (this process's RSS; kernel socket buffers not included)",
            Bytes(b)
        )
    });
    say!(
        "  idle            {} connections opened in {:.2} s ({} upgrades/s), {} held",
        Count(idle.opened),
        idle.setup.as_secs_f64(),
        Count(idle.setup_rate() as u64),
        Count(idle.still_open)
    );
    say!("  memory          {mem}");
    if idle_n < a.idle_connections {
        say!(
            "                  (capped at {idle_n}: RLIMIT_NOFILE {} holds both ends)",
            fd_limit()
        );
    }
    let mut durable_errors = 0;
    if let Some(d) = &durable {
        say!(
            "  durable         {} messages through a gateway restart: {} handed to its application, {} twice; {} resent after the restart, {} copies dropped by its filter; all acknowledged in {:.0} ms",
            Count(d.sent),
            Count(d.delivered),
            d.twice,
            Count(d.resent),
            Count(d.dropped),
            d.elapsed.as_secs_f64() * 1e3
        );
        durable_errors = d.sent.abs_diff(d.delivered) + d.twice;
    }
    say!(
        "  server          {} accepted, {} messages in, {} out; drops {}, handshake failures {}, closes {}",
        Count(stats.accepted),
        Count(stats.messages_in),
        Count(stats.messages_out),
        stats.drops,
        stats.handshake_failures,
        closes_text(&stats)
    );
    say!(
        "  errors          {} (client {}, lost messages {}, server {}, durable {}); {:.1} s in all",
        gen_errors + lost + server_errors + durable_errors,
        gen_errors,
        lost,
        server_errors,
        durable_errors,
        started.elapsed().as_secs_f64()
    );
    for e in echo.errors.samples.iter().chain(&fan.errors.samples).chain(&idle.errors.samples) {
        say!("                  e.g. {e}");
    }
    let total_errors = gen_errors + lost + server_errors + durable_errors;
    if a.json {
        let report = serde_json::json!({
            "scenario": "demo",
            "backend": info.name,
            "workers": workers,
            "echo": echo.json(),
            "fanout": fan.json(),
            "idle": idle.json(),
            "memory_per_connection_bytes": idle.per_connection(),
            "durable": durable.as_ref().map(|d| serde_json::json!({
                "sent": d.sent,
                "delivered": d.delivered,
                "twice": d.twice,
                "resent": d.resent,
                "dropped_by_filter": d.dropped,
                "acknowledged_in_s": d.elapsed.as_secs_f64(),
            })),
            "server": {
                "accepted": stats.accepted,
                "messages_in": stats.messages_in,
                "messages_out": stats.messages_out,
                "drops": stats.drops,
                "handshake_failures": stats.handshake_failures,
                "closes_by_code": stats.closes_by_code.iter()
                    .map(|(c, n)| (c.map_or_else(|| "other".to_owned(), |c| c.to_string()), *n))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            },
            "errors": {
                "total": total_errors,
                "client": gen_errors,
                "lost_messages": lost,
                "server": server_errors,
                "durable": durable_errors,
            },
            "elapsed_s": started.elapsed().as_secs_f64(),
        });
        let line = crate::load::json::to_string(&report)?;
        use std::io::Write as _;
        writeln!(std::io::stdout(), "{line}").map_err(|e| format!("stdout: {e}"))?;
    }
    if total_errors > 0 {
        return Err("the demo saw errors (see above)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let parsed = Cli::parse_from(["x"]).demo;
        let d = DemoArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
    }

    #[test]
    fn small_demo_runs_clean() {
        let a = DemoArgs {
            workers: Some(1),
            echo_connections: 10,
            subscribers: 20,
            rate: 50.0,
            idle_connections: 50,
            seconds: 0.5,
            durable_messages: 100,
            ..DemoArgs::default()
        };
        run(a).unwrap();
    }
}
