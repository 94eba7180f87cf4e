//! A criterion measurement that reads the benchmark thread's CPU time
//! instead of the wall clock.
//!
//! On a 2-core VM shared with compilers and fuzzers, wall time mostly
//! measures how often we were descheduled; thread CPU time counts only the
//! time our thread ran. It still includes cache and TLB pollution from the
//! neighbours, so it is an estimate of the unloaded figure, not a bound.

use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID` on Linux).
pub struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }

    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, d: &Duration) -> f64 {
        d.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as the wall clock, so its formatter fits.
        WallTime.formatter()
    }
}
