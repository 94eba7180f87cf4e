//! `ringwire load`: a load generator for any RFC 6455 server.
//!
//! It is a client engine of its own: `--threads` worker threads (optionally pinned with
//! `--cpu`), each an edge-triggered epoll loop over its share of non-blocking sockets,
//! each connection a [`ringwire::frame::Connection`] in the client role after an upgrade
//! written with [`ringwire::frame::handshake::ClientRequest`]. Safe code only.
//!
//! ```text
//!  orchestrator (main thread)             generator thread i (epoll loop)
//!  phases: connect -> warmup ->  ──────▶  connect (rate-limited) -> upgrade
//!          measure -> drain -> close      read all ready sockets -> Script
//!  /proc: server + own CPU, RSS  ◀──────  write what the connections queued
//!  progress line every second   gauges    histogram, errors -> joined at the end
//! ```
//!
//! Files: [`args`] (flags and checks), [`client`] (one connection), [`worker`] (the
//! loop), [`session`] (threads, phases, CPU probes, progress), [`echo`], [`idle`],
//! [`fanout`] (the scenarios), [`procfs`] (`/proc`), [`report`] (percentiles, errors),
//! [`json`] (`--json`: the report as one JSON object on stdout).

pub mod args;
pub mod client;
pub mod clock;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod json;
pub mod procfs;
pub mod report;
pub mod session;
pub mod worker;

#[cfg(test)]
mod tests;

pub use args::{LoadArgs, Scenario};

/// Runs `ringwire load <scenario>` and prints its report (with `--json`, the text report
/// on stderr and one JSON object on stdout). Fails when the run had errors.
pub fn run(args: LoadArgs) -> Result<(), String> {
    let failed = match &args.scenario {
        Scenario::Echo(a) => {
            let r = echo::run_echo(a, None)?;
            json::emit(&r, a.client.json.then(|| r.json()).as_ref())?;
            r.failed()
        }
        Scenario::Idle(a) => {
            let r = idle::run_idle(a, None, None, 0)?;
            json::emit(&r, a.client.json.then(|| r.json()).as_ref())?;
            r.failed()
        }
        Scenario::Fanout(a) => {
            let r = fanout::run_fanout(a, None, 0)?;
            json::emit(&r, a.client.json.then(|| r.json()).as_ref())?;
            r.failed()
        }
    };
    if failed {
        return Err("the run had errors (see the report)".into());
    }
    Ok(())
}
