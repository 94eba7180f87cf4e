//! The load generator's one clock: monotonic nanoseconds (`CLOCK_MONOTONIC`, the clock
//! `std::time::Instant` also reads), so timestamps carried in messages and the times
//! they are compared with come from the same source.

use rustix::time::{clock_gettime, ClockId};

/// Nanoseconds on the monotonic clock (vDSO, no system call).
#[inline]
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic() {
        let a = super::now_ns();
        let b = super::now_ns();
        assert!(b >= a && a > 0);
    }
}
