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

/// An instant in 8 bytes instead of `Instant`'s 16, and one that fits an atomic word (a
/// worker's metrics sampling deadline): nanoseconds since a process-wide epoch (fixed a
/// day before the first instant turned into a stamp, so that earlier instants a virtual
/// clock hands out still map exactly; 584 years of range). Never zero, so
/// `Option<Stamp>` is 8 bytes too. The per-client instants take 4 bytes: [`Tick`] and
/// [`Secs`].
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
}

/// A near instant in 4 bytes, for the per-client instants that are never far from now
/// (a retry, a heartbeat's deadline, the start of a failing streak): whole milliseconds
/// since the epoch, rounded up (never early), modulo 2^32 (49.7 days), and read back
/// against `now` ([`Tick::instant`]), which must be within 24 days of it. Never zero, so
/// `Option<Tick>` is 4 bytes too (a tick that would be zero is one millisecond later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick(std::num::NonZeroU32);

/// How far from `now` a [`Tick`] may be and still read back exactly.
pub(crate) const TICK_REACH: std::time::Duration = std::time::Duration::from_secs(24 * 86_400);

/// Whole milliseconds from the epoch to `t`, rounded up (0 before the epoch).
fn millis_up(t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch(t));
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl Tick {
    /// `t`, rounded up to the millisecond.
    pub(crate) fn of(t: Instant) -> Self {
        Self::wrap(millis_up(t))
    }

    fn wrap(ms: u64) -> Self {
        let v = ms as u32; // modulo 2^32 on purpose: read back against a near `now`
        Self(std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN))
    }

    /// The tick `d` before `now` (`d` within [`TICK_REACH`]).
    pub(crate) fn before(now: Instant, d: std::time::Duration) -> Self {
        let back = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self::wrap(millis_up(now).wrapping_sub(back))
    }

    /// The instant this tick stands for, taking it as the one within 24 days of `now`.
    pub(crate) fn instant(self, now: Instant) -> Instant {
        let e = epoch(now);
        let now_ms = u64::try_from(now.saturating_duration_since(e).as_millis()).unwrap_or(0);
        // The signed distance from `now`'s millisecond, modulo 2^32.
        let diff = i64::from(self.0.get().wrapping_sub(now_ms as u32) as i32);
        let ms = now_ms.saturating_add_signed(diff);
        e.checked_add(std::time::Duration::from_millis(ms)).unwrap_or(now)
    }

    /// How long ago this tick was at `now` (zero if it is later).
    pub(crate) fn elapsed(self, now: Instant) -> std::time::Duration {
        now.saturating_duration_since(self.instant(now))
    }
}

/// An instant in 4 bytes to the second, for a per-client instant that may lie far back
/// (when a connection came up, which may be months ago): whole seconds since the epoch,
/// rounded up (an age read from it errs short by less than a second), saturating after
/// 136 years. Never zero, so `Option<Secs>` is 4 bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Secs(std::num::NonZeroU32);

impl Secs {
    /// `t`, rounded up to the second.
    pub(crate) fn of(t: Instant) -> Self {
        let s = millis_up(t).div_ceil(1000);
        let s = u32::try_from(s).unwrap_or(u32::MAX).max(1);
        Self(std::num::NonZeroU32::new(s).unwrap_or(std::num::NonZeroU32::MIN))
    }

    /// How long ago this second was at `now` (zero if it is later).
    pub(crate) fn elapsed(self, now: Instant) -> std::time::Duration {
        let e = epoch(now);
        let at = e.checked_add(std::time::Duration::from_secs(u64::from(self.0.get())));
        at.map_or(std::time::Duration::ZERO, |at| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_keep_distances_and_order() {
        let t = Instant::now();
        for d in [0, 1, 999, 1_000_000_007, 3_600_000_000_000] {
            let later = t + Duration::from_nanos(d);
            assert_eq!(Stamp::of(later).nanos() - Stamp::of(t).nanos(), d);
        }
        let earlier = t - Duration::from_secs(60);
        let back = Stamp::of(t).nanos() - Stamp::of(earlier).nanos();
        assert_eq!(back, 60_000_000_000, "before the first: within the margin");
        assert!(Stamp::of(t) < Stamp::of(t + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn ticks_read_back_near_now_to_the_millisecond_rounded_up() {
        let t = Instant::now();
        for d in [0, 1, 999_999, 1_000_000, 1_000_001, 7_200_000_000_000] {
            let later = t + Duration::from_nanos(d);
            let back = Tick::of(later).instant(t);
            assert!(back >= later && back - later < Duration::from_millis(1), "{d}: {back:?}");
            // Read back from the other side of it, too.
            let from_later = Tick::of(t).instant(later);
            assert!(from_later >= t && from_later - t < Duration::from_millis(1));
        }
        assert_eq!(std::mem::size_of::<Option<Tick>>(), 4);
        let tick = Tick::of(t);
        assert_eq!(tick.elapsed(t), Duration::ZERO, "rounded up: never in the past");
        // Less than 5 s by what the rounding added (nothing when `t` is on a whole
        // millisecond from the epoch, as when `t` itself set the epoch).
        let e = tick.elapsed(t + Duration::from_secs(5));
        assert!(e <= Duration::from_secs(5) && e > Duration::from_millis(4_999), "{e:?}");
        let back = Tick::before(t + Duration::from_secs(10), Duration::from_secs(3));
        let e = back.elapsed(t + Duration::from_secs(10));
        assert!(e <= Duration::from_secs(3) && e > Duration::from_millis(2_998), "{e:?}");
    }

    #[test]
    fn ticks_wrap_after_49_days_and_still_read_back_against_a_near_now() {
        let t = Instant::now();
        // 2^32 ms is 49.7 days: a tick 60 days on wraps, and reads back right from a
        // `now` within 24 days of it.
        let far = t + Duration::from_secs(60 * 86_400);
        let tick = Tick::of(far + Duration::from_millis(1500));
        let back = tick.instant(far);
        assert!(back >= far + Duration::from_millis(1500));
        assert!(back < far + Duration::from_millis(1501));
        assert_eq!(tick.elapsed(far + TICK_REACH).as_secs(), TICK_REACH.as_secs() - 2);
    }

    #[test]
    fn seconds_err_short_by_less_than_a_second_and_do_not_wrap() {
        let t = Instant::now();
        let s = Secs::of(t);
        assert_eq!(std::mem::size_of::<Option<Secs>>(), 4);
        for later in [0u64, 500, 999, 1_000, 30_000, 90 * 86_400_000] {
            let now = t + Duration::from_millis(later);
            let age = s.elapsed(now);
            let true_age = Duration::from_millis(later);
            assert!(age <= true_age && true_age - age < Duration::from_secs(1), "{later}: {age:?}");
        }
    }
}
