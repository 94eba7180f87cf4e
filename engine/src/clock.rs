//! The one place that reads the clock. Everything else receives `now`.

use std::time::Instant;

/// The current monotonic time.
#[inline]
pub fn now() -> Instant {
    Instant::now()
}
