//! The reconnect backoff schedule: exponential growth with full jitter, and the small
//! seeded generator that draws the jitter.
//!
//! Nothing here reads the clock or the operating system's randomness: the worker seeds an
//! [`Rng`] once and passes it in, so a test replays a schedule exactly.

use std::time::Duration;

/// One day: the longest `max` and `stable_after` that [`Backoff::validate`] accepts.
const ONE_DAY: Duration = Duration::from_secs(86_400);

/// A small seeded pseudo-random generator (splitmix64, Steele, Lea and Flood, "Fast
/// splittable pseudorandom number generators", OOPSLA 2014).
///
/// Not cryptographic; it only spreads retries. Splitmix64 advances its state by a fixed
/// odd constant and mixes the result, so every seed, zero included, gives a full-period
/// sequence (2^64 outputs) with no bad states.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw from `[0, n)`; 0 when `n` is 0.
    ///
    /// Lemire's multiply-and-shift with rejection ("Fast random integer generation in an
    /// interval", 2019): exactly uniform, with no modulo bias.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            // 2^64 mod n: the low words under it belong to an incomplete last stripe.
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform draw from `[0, max]` at nanosecond resolution. A `max` beyond 2^64 ns
    /// (584 years) is treated as 2^64 - 1 ns.
    pub(crate) fn duration_up_to(&mut self, max: Duration) -> Duration {
        let ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let draw = match ns.checked_add(1) {
            Some(n) => self.below(n),
            None => self.next_u64(),
        };
        Duration::from_nanos(draw)
    }
}

/// How long a client waits before each reconnect attempt.
///
/// Exponential backoff with *full jitter* (Marc Brooker, "Exponential Backoff And
/// Jitter", AWS Architecture Blog, 2015): retry number `n` (0 for the first retry after a
/// lost connection or a failed attempt) waits a uniform draw from `[0, ceiling(n)]`, with
/// `ceiling(n) = min(max, initial * factor^n)`, but no more than the ceiling time alone
/// would have reached since the failures began ([`Backoff::ceiling_after`]): a refused
/// connect returns at once, and four quick refusals must not send a client 16 s away
/// from a server that was down for two (measured in docs/BENCHMARKS.md, "Reconnect
/// storm").
///
/// The defaults (1 s, ×2, capped at 30 s) start sooner and cap lower than Python
/// `websockets`' (3.1 s, ×1.618, capped at 90 s), which grows its delays
/// deterministically. With deterministic delays every client that lost the same server
/// retries in lockstep, so the first retry has to be late to avoid a stampede. Full
/// jitter spreads a herd of clients uniformly over the whole window instead, so the first
/// retries can start earlier without synchronizing, and the per-target connect-rate
/// limit (`limiter.rs`) caps whatever storm is left. The 30 s cap means a server that
/// recovered is found again within half a minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay. Default 1 s.
    pub initial: Duration,
    /// How much the ceiling grows per failed attempt. Default 2.0 (doubling).
    pub factor: f64,
    /// The largest ceiling. Default 30 s: a recovered server is found within half a
    /// minute, and a dead one costs one attempt per 15 s on average per client.
    pub max: Duration,
    /// Failed attempts in a row after which the client gives up and closes. Default
    /// `None` (retry forever): a long-lived client should outlast any outage.
    pub max_attempts: Option<u32>,
    /// A connection that stayed up at least this long counts as stable: losing it starts
    /// a fresh schedule from `initial`. Default 30 s, as long as the cap, so a server
    /// that accepts and drops at once cannot keep its clients retrying at full speed.
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(30),
            max_attempts: None,
            stable_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Checks the settings: `factor` finite and at least 1 (a shrinking delay would hammer
    /// a server that stays down), `initial` above zero, `initial <= max <= 1 day`,
    /// `stable_after <= 1 day` and `max_attempts` not `Some(0)` (`Some(1)` already means
    /// "never retry"). The error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(format!("backoff factor must be finite and >= 1, got {}", self.factor));
        }
        if self.initial.is_zero() {
            return Err("backoff initial delay must be above zero".into());
        }
        if self.max < self.initial {
            return Err(format!(
                "backoff max ({:?}) must be at least initial ({:?})",
                self.max, self.initial
            ));
        }
        if self.max > ONE_DAY {
            return Err(format!("backoff max must be at most 1 day, got {:?}", self.max));
        }
        if self.stable_after > ONE_DAY {
            return Err(format!(
                "backoff stable_after must be at most 1 day, got {:?}",
                self.stable_after
            ));
        }
        if self.max_attempts == Some(0) {
            return Err("backoff max_attempts must be at least 1 (or None)".into());
        }
        Ok(())
    }

    /// The ceiling of retry number `attempt`'s delay: `min(max, initial * factor^attempt)`.
    ///
    /// Saturates at `max` for any attempt number, and never panics, even on settings that
    /// [`Backoff::validate`] refuses.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let grown = self.initial.as_nanos() as f64 * self.factor.powf(f64::from(attempt));
        // NaN comes from 0 × ∞; infinity and anything past `max` saturate.
        if grown.is_nan() || grown >= self.max.as_nanos() as f64 {
            return self.max;
        }
        // The float to integer cast saturates: a negative product (a negative factor) is 0.
        Duration::from_nanos(grown as u64).min(self.max)
    }

    /// The delay before retry number `attempt`: uniform in `[0, ceiling(attempt)]`.
    #[cfg(test)]
    pub(crate) fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        rng.duration_up_to(self.ceiling(attempt))
    }

    /// The ceiling of retry number `attempt` when the failures began `elapsed` ago: the
    /// per-attempt ceiling, but no more than `initial + elapsed x (factor - 1)`, the
    /// ceiling the schedule would have reached by then had every wait been the whole of
    /// its ceiling. Failures that come fast (a refused connect returns at once) then do
    /// not push the next attempt further out than the outage's length justifies: after a
    /// two-second outage a client retries within about three seconds of the server's
    /// return, not within the 8 or 16 s that four quick refusals would have earned.
    /// Slow failures (timeouts) are untouched: their ceiling is the smaller one anyway.
    pub fn ceiling_after(&self, attempt: u32, elapsed: Duration) -> Duration {
        let grown = elapsed.as_secs_f64() * (self.factor - 1.0).max(0.0);
        let by_time = if grown.is_finite() && grown < self.max.as_secs_f64() {
            self.initial.saturating_add(Duration::from_secs_f64(grown))
        } else {
            self.max
        };
        self.ceiling(attempt).min(by_time)
    }

    /// The delay before retry number `attempt` of failures that began `elapsed` ago:
    /// uniform in `[0, ceiling_after(attempt, elapsed)]`.
    pub(crate) fn delay_after(&self, attempt: u32, elapsed: Duration, rng: &mut Rng) -> Duration {
        rng.duration_up_to(self.ceiling_after(attempt, elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn fast_failures_grow_the_ceiling_no_faster_than_time() {
        let b = Backoff::default(); // 1 s x 2, capped at 30 s
                                    // Five refusals within half a second: the ceiling is 1.5 s, not 32 s (30 s).
        assert_eq!(b.ceiling_after(5, Duration::from_millis(500)), Duration::from_millis(1500));
        // Slow failures (timeouts) keep the per-attempt schedule.
        assert_eq!(b.ceiling_after(2, secs(60)), secs(4));
        assert_eq!(b.ceiling_after(9, secs(600)), secs(30));
        // At the start of a series the first step's ceiling holds.
        assert_eq!(b.ceiling_after(0, Duration::ZERO), secs(1));
        // No overflow on absurd inputs.
        assert_eq!(b.ceiling_after(u32::MAX, Duration::MAX), secs(30));
        let flat = Backoff { factor: 1.0, ..Backoff::default() };
        assert_eq!(flat.ceiling_after(7, secs(100)), secs(1));
        let mut rng = Rng::new(7);
        for n in 0..100u32 {
            let d = b.delay_after(n, Duration::from_millis(u64::from(n) * 10), &mut rng);
            assert!(d <= b.ceiling_after(n, Duration::from_millis(u64::from(n) * 10)));
        }
    }

    #[test]
    fn default_ceilings_double_then_cap() {
        let b = Backoff::default();
        assert_eq!(b.validate(), Ok(()));
        let got: Vec<Duration> = (0..9).map(|n| b.ceiling(n)).collect();
        let want = [1, 2, 4, 8, 16, 30, 30, 30, 30].map(secs);
        assert_eq!(got, want);
    }

    #[test]
    fn huge_attempt_numbers_saturate() {
        let b = Backoff::default();
        for n in [64, 1_000, 1 << 20, u32::MAX] {
            assert_eq!(b.ceiling(n), secs(30), "attempt {n}");
        }
        let flat = Backoff { factor: 1.0, ..Backoff::default() };
        assert_eq!(flat.ceiling(u32::MAX), secs(1), "factor 1 never grows");
        // Settings that validate() refuses still give an answer, never a panic.
        let wild = [
            Backoff { factor: f64::INFINITY, ..Backoff::default() },
            Backoff { factor: f64::NAN, ..Backoff::default() },
            Backoff { factor: -3.0, ..Backoff::default() },
            Backoff { initial: Duration::ZERO, factor: f64::INFINITY, ..Backoff::default() },
            Backoff { initial: Duration::MAX, max: Duration::MAX, ..Backoff::default() },
        ];
        let mut rng = Rng::new(1);
        for b in wild {
            for n in [0, 1, 2, 3, 100, u32::MAX] {
                assert!(b.ceiling(n) <= b.max);
                let _ = b.delay(n, &mut rng);
            }
        }
    }

    #[test]
    fn delays_are_uniform_under_the_ceiling() {
        let b = Backoff::default();
        let mut rng = Rng::new(0x5EED);
        for attempt in [0, 1, 3, 7] {
            let ceiling = b.ceiling(attempt);
            let mut sum = 0f64;
            for _ in 0..10_000 {
                let d = b.delay(attempt, &mut rng);
                assert!(d <= ceiling, "{d:?} above {ceiling:?}");
                sum += d.as_secs_f64();
            }
            let mean = sum / 10_000.0;
            let half = ceiling.as_secs_f64() / 2.0;
            assert!((mean - half).abs() <= half * 0.1, "attempt {attempt}: mean {mean} s");
        }
    }

    #[test]
    fn different_seeds_differ_and_zero_seed_works() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_ne!(draw(1), draw(2));
        assert_eq!(draw(7), draw(7), "a seed replays its sequence");
        let zero = draw(0);
        assert!(zero.iter().all(|&x| x != 0) && zero[0] != zero[1], "{zero:?}");
        let b = Backoff::default();
        let delays = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|n| b.delay(n, &mut rng)).collect::<Vec<_>>()
        };
        assert_ne!(delays(1), delays(2));
    }

    #[test]
    fn bounded_draws_at_the_edges() {
        let mut rng = Rng::new(0);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        assert_eq!(rng.duration_up_to(Duration::ZERO), Duration::ZERO);
        let _ = rng.duration_up_to(Duration::MAX);
        let _ = rng.duration_up_to(Duration::from_nanos(u64::MAX));
        let mut seen = [false; 3];
        for _ in 0..200 {
            let d = rng.duration_up_to(Duration::from_nanos(2));
            seen[d.as_nanos() as usize] = true;
        }
        assert_eq!(seen, [true; 3], "both ends of [0, max] are reachable");
        for n in [3, 10, 1 << 40, u64::MAX] {
            assert!((0..1000).all(|_| rng.below(n) < n));
        }
    }

    #[test]
    fn validate_refuses_bad_values() {
        let ok = Backoff::default();
        let bad = [
            Backoff { factor: 0.5, ..ok.clone() },
            Backoff { factor: f64::NAN, ..ok.clone() },
            Backoff { factor: f64::INFINITY, ..ok.clone() },
            Backoff { initial: Duration::ZERO, ..ok.clone() },
            Backoff { max: Duration::from_millis(500), ..ok.clone() },
            Backoff { max: ONE_DAY + Duration::from_nanos(1), ..ok.clone() },
            Backoff { stable_after: ONE_DAY * 2, ..ok.clone() },
            Backoff { max_attempts: Some(0), ..ok.clone() },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
        let edge = Backoff { factor: 1.0, max: ONE_DAY, max_attempts: Some(1), ..ok };
        assert_eq!(edge.validate(), Ok(()));
    }
}
