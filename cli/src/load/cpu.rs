//! The CPU figures the scenario reports share: the generator's share of its threads'
//! cores, whether it was near its limit, and the server and generator CPU lines of the
//! text reports. Used by [`super::echo`], [`super::idle`], [`super::fanout`] and
//! [`super::json`].

use super::procfs::CpuWindow;
use super::report::{line, Ns};
use super::session::CpuUse;

/// Generator threads busier than this (percent of their cores, run-queue wait included)
/// bound the throughput: the report says so.
pub(crate) const NEAR_LIMIT_PERCENT: f64 = 90.0;

/// The generator's CPU use as a percentage of its threads' cores.
pub(crate) fn of_threads(g: &CpuWindow, threads: usize) -> f64 {
    g.percent() / threads as f64
}

/// How busy the generator's threads were, in percent of their cores: time waiting for a
/// CPU is time the generator wanted to run, so it counts as busy.
pub(crate) fn busy_of_threads(g: &CpuWindow, threads: usize) -> f64 {
    (g.percent() + g.wait_percent()) / threads as f64
}

/// Whether the generator was near its limit (then msg/s is bounded by it).
pub(crate) fn near_limit(g: &CpuWindow, threads: usize) -> bool {
    busy_of_threads(g, threads) > NEAR_LIMIT_PERCENT
}

/// Writes the CPU lines shared by the scenario reports. `work`: messages the server
/// handled in the window, for CPU per message.
pub(crate) fn cpu_lines(out: &mut String, cpu: &CpuUse, threads: usize, work: u64, unit: &str) {
    if let Some(s) = cpu.server {
        let per = s.per(work);
        line(
            out,
            "server CPU",
            format_args!("{:.1}% of a core, {} per {unit}{}", s.percent(), Ns(per), waited(&s)),
        );
        if let Some(split) = s.split(per) {
            let k = split.kernel_percent;
            line(
                out,
                "server split",
                format_args!(
                    "{:.0}% kernel, {:.0}% user: {} and {} per {unit}",
                    k,
                    100.0 - k,
                    Ns(split.kernel_ns),
                    Ns(split.user_ns)
                ),
            );
        }
    }
    let g = cpu.generator;
    let warn = if near_limit(&g, threads) {
        "\n                  <- generator near its limit: msg/s is bounded by the generator; \
         compare server CPU per message"
    } else {
        ""
    };
    line(
        out,
        "generator CPU",
        format_args!("{:.1}% of {threads} thread(s){}{warn}", of_threads(&g, threads), waited(&g)),
    );
}

/// Notes run-queue wait above 5% of a core (summed over the threads): other work took
/// CPU time from these threads, so throughput and latency understate them (CPU per
/// message is unaffected).
pub(crate) fn waited(w: &CpuWindow) -> String {
    if w.wait_percent() > 5.0 {
        format!(" (+{:.0}% of a core runnable but waiting: shared cores)", w.wait_percent())
    } else {
        String::new()
    }
}
