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

/// An instant in 8 bytes instead of `Instant`'s 16, for records kept per connection:
/// nanoseconds since a process-wide epoch (fixed a day before the first instant turned
/// into a stamp, so that earlier instants a virtual clock hands out still map exactly;
/// 584 years of range). Never zero, so `Option<Stamp>` is 8 bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(std::num::NonZeroU64);

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn epoch(first: Instant) -> Instant {
    *EPOCH
        .get_or_init(|| first.checked_sub(std::time::Duration::from_secs(86_400)).unwrap_or(first))
}

impl Stamp {
    /// `t` as a stamp (an instant before the epoch, or past its range, saturates).
    pub(crate) fn of(t: Instant) -> Self {
        let ns = t.saturating_duration_since(epoch(t)).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX).max(1);
        Self(std::num::NonZeroU64::new(ns).unwrap_or(std::num::NonZeroU64::MIN))
    }

    /// Nanoseconds since the epoch.
    pub(crate) fn nanos(self) -> u64 {
        self.0.get()
    }

    /// The instant this stamp stands for.
    pub(crate) fn instant(self) -> Instant {
        let e = epoch(Instant::now());
        let d = std::time::Duration::from_nanos(self.0.get());
        e.checked_add(d).unwrap_or(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_round_trip_and_keep_order() {
        let t = Instant::now();
        for d in [0, 1, 999, 1_000_000_007, 3_600_000_000_000] {
            let later = t + Duration::from_nanos(d);
            assert_eq!(Stamp::of(later).instant(), later);
        }
        let earlier = t - Duration::from_secs(60);
        assert_eq!(Stamp::of(earlier).instant(), earlier, "before the first: within the margin");
        assert!(Stamp::of(t) < Stamp::of(t + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
