//! `--json`: a report as one JSON object on stdout, for scripts (`bench/engine-table.py`).
//!
//! Every figure of the text report is there, unrounded: times in nanoseconds (`_ns`),
//! durations in seconds (`_s`), memory in bytes (`_bytes`), rates per second (`_per_s`),
//! CPU shares in percent of one core. A figure the text report leaves out because it was
//! not measured (no samples, no `--server-pid`) is `null`. The pieces shared by the
//! scenarios live here; each scenario's top-level object is next to its report.

use std::io::Write;

use serde::Serialize;

use super::cpu::{busy_of_threads, near_limit, of_threads};
use super::procfs::CpuWindow;
use super::report::{Errors, Latency};

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyJson {
    /// Samples behind the percentiles.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Mean of the samples.
    pub mean_ns: f64,
}

impl LatencyJson {
    /// The percentiles of `l`; `None` (JSON `null`) without samples.
    pub fn of(l: &Latency) -> Option<Self> {
        (l.count > 0).then_some(Self {
            count: l.count,
            p50_ns: l.p50,
            p99_ns: l.p99,
            p999_ns: l.p999,
            max_ns: l.max,
            mean_ns: l.mean,
        })
    }
}

/// The server's CPU over the measured window (the setup, for `idle`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerCpuJson {
    /// CPU use, percent of one core.
    pub percent_of_core: f64,
    /// Time runnable but waiting for a CPU, percent of one core (the report notes it
    /// above 5%: shared cores).
    pub wait_percent_of_core: f64,
    /// CPU time (user + system) in the window.
    pub cpu_ns: u64,
    /// Run-queue wait in the window.
    pub wait_ns: u64,
    /// Wall time of the window.
    pub wall_ns: u64,
    /// User clock ticks in the window (10 ms each).
    pub user_ticks: u64,
    /// System clock ticks in the window.
    pub sys_ticks: u64,
    /// What `ns_per_unit` divides by: `message`, `delivery` or `upgrade`.
    pub unit: &'static str,
    /// Server CPU time per unit of work.
    pub ns_per_unit: u64,
    /// The kernel's share of the CPU time, percent; `null` with fewer than 10 ticks.
    pub kernel_percent: Option<f64>,
    /// The user share, percent (`100 - kernel_percent`).
    pub user_percent: Option<f64>,
    /// Kernel time per unit of work.
    pub kernel_ns_per_unit: Option<u64>,
    /// User time per unit of work.
    pub user_ns_per_unit: Option<u64>,
}

impl ServerCpuJson {
    /// The server's window, charged to `work` units named `unit`.
    pub fn of(s: &CpuWindow, work: u64, unit: &'static str) -> Self {
        let per = s.per(work);
        let split = s.split(per);
        Self {
            percent_of_core: s.percent(),
            wait_percent_of_core: s.wait_percent(),
            cpu_ns: s.cpu_ns,
            wait_ns: s.wait_ns,
            wall_ns: s.wall_ns,
            user_ticks: s.user_ticks,
            sys_ticks: s.sys_ticks,
            unit,
            ns_per_unit: per,
            kernel_percent: split.map(|x| x.kernel_percent),
            user_percent: split.map(|x| 100.0 - x.kernel_percent),
            kernel_ns_per_unit: split.map(|x| x.kernel_ns),
            user_ns_per_unit: split.map(|x| x.user_ns),
        }
    }
}

/// The generator's own CPU over the same window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratorCpuJson {
    /// Generator threads.
    pub threads: usize,
    /// CPU use, percent of the threads' cores (what the text report shows).
    pub percent_of_threads: f64,
    /// CPU use, percent of one core (summed over the threads).
    pub percent_of_core: f64,
    /// Time runnable but waiting for a CPU, percent of one core.
    pub wait_percent_of_core: f64,
    /// CPU and wait time, percent of the threads' cores.
    pub busy_percent_of_threads: f64,
    /// CPU time of the generator's threads in the window.
    pub cpu_ns: u64,
    /// Run-queue wait in the window.
    pub wait_ns: u64,
    /// Wall time of the window.
    pub wall_ns: u64,
    /// Busy above 90%: msg/s is bounded by the generator, compare server CPU per
    /// message instead. Absent for `idle` (its window is the setup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_limit: Option<bool>,
}

impl GeneratorCpuJson {
    /// The generator's window; `limit`: whether to say if it was near its limit.
    pub fn of(g: &CpuWindow, threads: usize, limit: bool) -> Self {
        Self {
            threads,
            percent_of_threads: of_threads(g, threads),
            percent_of_core: g.percent(),
            wait_percent_of_core: g.wait_percent(),
            busy_percent_of_threads: busy_of_threads(g, threads),
            cpu_ns: g.cpu_ns,
            wait_ns: g.wait_ns,
            wall_ns: g.wall_ns,
            near_limit: limit.then(|| near_limit(g, threads)),
        }
    }
}

/// Error counts by kind and the first few in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorsJson<'a> {
    /// All errors.
    pub total: u64,
    /// socket/bind/connect failures.
    pub connect: u64,
    /// Failed upgrades.
    pub handshake: u64,
    /// Connections that ended before the generator closed them.
    pub closed: u64,
    /// Replies or deliveries that do not match what was sent.
    pub mismatch: u64,
    /// Failed reads and writes.
    pub io: u64,
    /// The first few errors in words.
    pub samples: &'a [String],
}

impl<'a> ErrorsJson<'a> {
    /// The tallies of `e`.
    pub fn of(e: &'a Errors) -> Self {
        Self {
            total: e.total(),
            connect: e.connect,
            handshake: e.handshake,
            closed: e.closed,
            mismatch: e.mismatch,
            io: e.io,
            samples: &e.samples,
        }
    }
}

/// The JSON text of a report object (one line).
pub fn to_string(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("cannot write the JSON report: {e}"))
}

/// Prints a finished run: the text report on stdout or, with `json`, the text report on
/// stderr and `json`'s one-line JSON object on stdout.
pub fn emit(text: &impl std::fmt::Display, json: Option<&impl Serialize>) -> Result<(), String> {
    let out = |s: &str| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{s}")
            .and_then(|()| o.flush())
            .map_err(|e| format!("cannot write the report to stdout: {e}"))
    };
    match json {
        None => out(&text.to_string()),
        Some(j) => {
            let line = to_string(j)?;
            // The text copy is for people watching; a closed stderr must not cost the JSON.
            let _ = writeln!(std::io::stderr().lock(), "{text}");
            out(&line)
        }
    }
}
