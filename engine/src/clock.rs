//! The one place that reads the clock. Everything else receives `now`: the worker loop
//! reads a [`Clock`] once per turn and hands the instant to the shard, the protocol cores
//! and the timers, so a test can run the loop under virtual time.

use std::time::Instant;

/// A source of the current time.
pub(crate) trait Clock {
    /// The current monotonic time.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Monotonic;

impl Clock for Monotonic {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The current monotonic time, for the drivers' own pauses and busy-poll windows.
#[inline]
pub(crate) fn now() -> Instant {
    Instant::now()
}
