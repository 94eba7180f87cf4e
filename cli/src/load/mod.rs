//! `ringwire load`: a load generator for any RFC 6455 server.
//!
//! It runs on ringwire's own client side: an engine with `--threads` workers (optionally
//! pinned with `--cpu`, io_uring or epoll with `--backend`) that only dials, each worker
//! opening and driving its share of the connections as engine clients (on io_uring,
//! direct descriptors: no fd limit), the scenario's [`worker::Script`] in the handler.
//! There is one client implementation in the project, and this is its load test.
//!
//! ```text
//!  orchestrator (main thread)             engine worker i (LoadHandler)
//!  phases: connect -> warmup ->  ──────▶  on_wake: dial (paced), phase changes
//!          measure -> drain -> close      on_state: open / failed -> Script
//!  /proc: server + own CPU, RSS  ◀──────  on_message -> Script (sends via Ctx)
//!  progress line every second   gauges    histogram, errors -> handed back on drop
//! ```
//!
//! Files: [`args`] (flags and checks), [`worker`] (the handler and the script's
//! interface), [`session`] (engine, phases, CPU probes, progress), [`echo`], [`idle`],
//! [`fanout`], [`reconnect`] (the scenarios), [`procfs`] (`/proc`), [`report`] (percentiles, errors),
//! [`json`] (`--json`: the report as one JSON object on stdout), [`cpu`] (the CPU figures
//! the reports share).

pub mod args;
pub mod clock;
pub mod cpu;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod json;
pub mod procfs;
pub mod reconnect;
pub mod report;
pub mod session;
pub mod worker;

#[cfg(test)]
mod report_tests;
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
        Scenario::Reconnect(a) => {
            let r = reconnect::run_reconnect(a)?;
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
