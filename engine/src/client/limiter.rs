//! The per-target connect-rate cap, shared by every worker: a GCRA limiter per
//! `host:port`, one atomic word each, lock-free on the attempt path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Registry size past which limiters no client holds any more are dropped.
const PRUNE_AT: usize = 1024;

/// The most connection attempts per second that every client of the engine together
/// makes to one `host:port`.
///
/// When a server that 10,000 clients were connected to comes back, jittered backoff
/// spreads their retries over the backoff window, but a window of a few seconds still
/// means thousands of handshakes per second against a server that is warming up. This cap
/// holds them to a rate the server can take; an attempt over it waits (it is not failed).
///
/// The guarantee: in **any** one second the target sees at most `per_second` attempts,
/// a burst included. So `burst` attempts may go at once after a quiet spell, and the
/// sustained rate is `per_second - burst + 1` (901 a second with the defaults): a burst
/// followed by the steady flow never adds up to more than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRate {
    /// Most attempts in any one second. Default 1,000: a plain WebSocket upgrade costs a
    /// server tens of microseconds of CPU, so this is a few percent of one core, and
    /// 10,000 clients are back within about eleven seconds of their server's return.
    /// Lower it for servers that do a TLS handshake or an authentication per
    /// connection (a core completes a few hundred to a few thousand TLS handshakes a
    /// second).
    pub per_second: u32,
    /// Attempts allowed at once after a quiet spell (at most `per_second`). Default 100,
    /// so a few clients starting together never wait.
    pub burst: u32,
}

impl Default for ConnectRate {
    fn default() -> Self {
        Self { per_second: 1000, burst: 100 }
    }
}

impl ConnectRate {
    /// Checks the settings: `per_second >= 1` and `1 <= burst <= per_second` (a zero
    /// would never let an attempt through; a burst over the cap would break it). The
    /// error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.per_second == 0 {
            return Err("connect rate per_second must be at least 1".into());
        }
        if self.burst == 0 {
            return Err("connect rate burst must be at least 1".into());
        }
        if self.burst > self.per_second {
            return Err("connect rate burst must not exceed per_second (the cap counts any one \
                        second, a burst included)"
                .into());
        }
        Ok(())
    }
}

/// Nanoseconds from `epoch` to `now`; 0 before the epoch, saturating after 584 years.
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A connect-rate limiter: the generic cell rate algorithm (GCRA, ITU-T I.371), the
/// token bucket's equivalent that needs one word of state.
///
/// It keeps the theoretical arrival time (TAT): when the next attempt would be due if
/// attempts came exactly at the sustained rate. An attempt at `now` passes if TAT is at
/// most `tolerance` ahead of `now`, and then moves TAT to `max(TAT, now) + interval`. With
/// `tolerance = (burst - 1) × interval`, `burst` attempts pass at once after a quiet
/// spell, then one per `interval`. Any window of one second `[t, t + 1 s)` then holds at
/// most `burst + ceil(1 s / interval) - 1` attempts; with `interval = 1 s / (per_second -
/// burst + 1)`, rounded up, that is at most `per_second`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// TAT, in nanoseconds since `epoch`.
    tat: AtomicU64,
    /// Nanoseconds per attempt at the sustained rate, rounded up so the rate is never
    /// exceeded.
    interval: u64,
    /// How far ahead of `now` TAT may be for an attempt to pass.
    tolerance: u64,
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter for `rate` (a zero in it counts as 1, a burst over the cap as the cap),
    /// counting time from `epoch`.
    pub(crate) fn new(rate: ConnectRate, epoch: Instant) -> Self {
        let cap = u64::from(rate.per_second.max(1));
        let burst = u64::from(rate.burst.max(1)).min(cap);
        let interval = 1_000_000_000u64.div_ceil(cap - burst + 1);
        let tolerance = interval.saturating_mul(burst - 1);
        Self { tat: AtomicU64::new(0), interval, tolerance, epoch }
    }

    /// Takes the right to one attempt at `now`, or says how long until one would pass.
    pub(crate) fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let now = nanos_since(self.epoch, now);
        // Orderings: TAT is the only state, and no other memory is published through it,
        // so Relaxed is enough. Every compare-exchange on one atomic is ordered in its
        // single modification order whatever the ordering argument, so two attempts can
        // never both move TAT from the same value: each success consumes its own slot.
        // Acquire/AcqRel would only order *other* memory around the attempt, and there is
        // none to order (the caller's socket work needs no happens-before with another
        // worker's attempt).
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            let next = start.saturating_add(self.interval);
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// The registry of limiters, one per target, shared by every worker.
///
/// Its lock is taken only when a client is created (to find or make its target's
/// limiter), never per attempt: the client keeps the `Arc` and acquires on it directly.
#[derive(Debug, Default)]
pub(crate) struct Limiters {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    map: HashMap<String, Arc<RateLimiter>>,
    /// Size at which the next prune runs; at least [`PRUNE_AT`], raised after a prune
    /// that freed little so pruning stays amortized O(1) per insert.
    prune_at: usize,
}

impl Limiters {
    /// The limiter for `target` (`host:port`, as the caller normalized it), made with
    /// `rate` and `epoch` if no client holds one. The first client to name a target sets
    /// its rate; later ones share it whatever rate they pass.
    ///
    /// Bounded: past 1024 targets, limiters no client holds (strong count 1) are dropped,
    /// so the registry tracks the targets in use, not every target ever dialled. A target
    /// dialled again after its limiter was dropped starts with a full burst.
    pub(crate) fn get(&self, target: &str, rate: ConnectRate, epoch: Instant) -> Arc<RateLimiter> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (entries are whole `Arc`s), so a poisoned lock is used as is.
        let mut reg = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = reg.map.get(target) {
            return Arc::clone(l);
        }
        if reg.map.len() >= reg.prune_at.max(PRUNE_AT) {
            reg.map.retain(|_, l| Arc::strong_count(l) > 1);
            reg.prune_at = (reg.map.len() * 2).max(PRUNE_AT);
        }
        let l = Arc::new(RateLimiter::new(rate, epoch));
        reg.map.insert(target.to_owned(), Arc::clone(&l));
        l
    }

    /// Targets tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: ConnectRate = ConnectRate { per_second: 200, burst: 50 };

    #[test]
    fn a_burst_passes_at_once_then_refusals() {
        let t = Instant::now();
        let l = RateLimiter::new(RATE, t);
        assert!((0..50).all(|_| l.try_acquire(t).is_ok()));
        // The sustained rate is 200 - 50 + 1 = 151 a second.
        let interval = Duration::from_nanos(1_000_000_000u64.div_ceil(151));
        assert_eq!(l.try_acquire(t), Err(interval), "one interval");
        assert!(l.try_acquire(t + interval - Duration::from_nanos(1)).is_err());
    }

    #[test]
    fn no_second_ever_sees_more_than_the_cap() {
        let rates = [
            RATE,
            ConnectRate { per_second: 3, burst: 1 },
            ConnectRate { per_second: 1, burst: 1 },
            ConnectRate { per_second: 10, burst: 10 },
            ConnectRate::default(),
        ];
        for rate in rates {
            // Attempts as fast as they pass, every 100 us for 3.5 s, from a full bucket.
            let t0 = Instant::now();
            let l = RateLimiter::new(rate, t0);
            let mut times = Vec::new();
            let mut now = t0;
            while now <= t0 + Duration::from_millis(3500) {
                while l.try_acquire(now).is_ok() {
                    times.push(now);
                }
                now += Duration::from_micros(100);
            }
            // Every window [t, t + 1 s) starting at an attempt holds at most the cap.
            let most = (0..times.len())
                .map(|i| {
                    times[i..]
                        .iter()
                        .take_while(|&&t| t - times[i] < Duration::from_secs(1))
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(most <= rate.per_second as usize, "{rate:?}: {most} in one second");
            // And the cap is used: the first second gets it all but rounding.
            let first = times.iter().filter(|&&t| t - t0 < Duration::from_secs(1)).count();
            assert!(first + 1 >= rate.per_second as usize, "{rate:?}: only {first}");
        }
    }

    #[test]
    fn waiting_the_answer_is_enough() {
        let t0 = Instant::now();
        let l = RateLimiter::new(ConnectRate { per_second: 7, burst: 3 }, t0);
        let mut now = t0 + Duration::from_secs(10);
        for _ in 0..100 {
            match l.try_acquire(now) {
                Ok(()) => {}
                Err(wait) => {
                    assert!(wait > Duration::ZERO);
                    let early = now + wait - Duration::from_nanos(1);
                    assert!(l.try_acquire(early).is_err(), "not before the wait");
                    now += wait;
                    assert_eq!(l.try_acquire(now), Ok(()), "exactly after the wait");
                }
            }
        }
        // Instants before the epoch count as the epoch, and nothing overflows far ahead.
        let l = RateLimiter::new(RATE, t0 + Duration::from_secs(5));
        assert_eq!(l.try_acquire(t0), Ok(()));
        assert_eq!(l.try_acquire(t0 + Duration::from_secs(1 << 40)), Ok(()));
    }

    #[test]
    fn threads_racing_at_one_instant_get_exactly_the_burst() {
        let t = Instant::now();
        let l = RateLimiter::new(RATE, t);
        let passed: u32 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).filter(|_| l.try_acquire(t).is_ok()).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap() as u32).sum()
        });
        assert_eq!(passed, RATE.burst);
    }

    #[test]
    fn the_registry_shares_per_target_and_prunes_unheld() {
        let (t, reg) = (Instant::now(), Limiters::default());
        let a = reg.get("a:80", RATE, t);
        assert!(Arc::ptr_eq(&a, &reg.get("a:80", ConnectRate { per_second: 1, burst: 1 }, t)));
        assert!(!Arc::ptr_eq(&a, &reg.get("b:80", RATE, t)));
        let held: Vec<_> = (0..10).map(|i| reg.get(&format!("h{i}:1"), RATE, t)).collect();
        for i in 0..2000 {
            drop(reg.get(&format!("gone{i}:1"), RATE, t));
        }
        assert!(reg.len() <= PRUNE_AT + 1, "{}", reg.len());
        assert!(Arc::ptr_eq(&a, &reg.get("a:80", RATE, t)), "a held limiter survives");
        assert!(held
            .iter()
            .enumerate()
            .all(|(i, h)| Arc::ptr_eq(h, &reg.get(&format!("h{i}:1"), RATE, t))));
    }

    #[test]
    fn validate_refuses_zeros_and_a_burst_over_the_cap() {
        assert_eq!(ConnectRate::default().validate(), Ok(()));
        assert!(ConnectRate { per_second: 0, burst: 1 }.validate().is_err());
        assert!(ConnectRate { per_second: 1, burst: 0 }.validate().is_err());
        assert!(ConnectRate { per_second: 5, burst: 6 }.validate().unwrap_err().contains("burst"));
        let l = RateLimiter::new(ConnectRate { per_second: 0, burst: 0 }, Instant::now());
        assert_eq!(l.try_acquire(Instant::now()), Ok(()), "zeros count as 1");
    }
}
