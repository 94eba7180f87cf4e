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
//! [`json`] (`--json`: the report as one JSON object on stdout), [`cpu`] (the CPU figures
//! the reports share).

pub mod args;
pub mod client;
pub mod clock;
pub mod cpu;
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

/// Keeps freed memory in the generator's heap instead of returning it to the kernel.
///
/// glibc gives the free top of its heap back to the kernel once more than
/// `M_TRIM_THRESHOLD` (128 KiB) is free, and the next growth faults those pages in again,
/// zeroed. With hundreds of connections receiving 16 KiB messages that swing happens all
/// the time: the generator spent about a fifth of its CPU in page faults and page
/// clearing (perf, `load echo -c 500 -s 16384`) and delivered half the msg/s it does
/// without (docs/BENCHMARKS.md). glibc raises the threshold by itself to twice the size
/// of a freed mmap'd block (its dynamic mmap threshold, for blocks up to 32 MiB): freeing
/// one 16 MiB block at start sets it to 32 MiB, with no `unsafe` and no environment
/// variable. Other allocators are unaffected. The server (`serve`) does not do this: its
/// memory figures are what a default process would show.
fn keep_heap() {
    let block: Vec<u8> = Vec::with_capacity(16 << 20);
    // Not optimised away: the allocation must really happen and be freed.
    drop(std::hint::black_box(block));
}

/// Runs `ringwire load <scenario>` and prints its report (with `--json`, the text report
/// on stderr and one JSON object on stdout). Fails when the run had errors.
pub fn run(args: LoadArgs) -> Result<(), String> {
    keep_heap();
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
