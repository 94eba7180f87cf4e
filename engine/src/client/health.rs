//! Per-connection health figures: heartbeat round-trip times, jitter, loss and the streak
//! of failed connects, in a fixed 40 bytes with no allocation per sample, so a worker can
//! keep them for every one of its clients.

use std::time::Duration;

/// Histogram buckets.
const BUCKETS: usize = 24;
/// The upper edge of bucket 0, in nanoseconds (0.5 ms). Bucket `i` in `1..=22` holds
/// `[EDGE0 × √2^(i-1), EDGE0 × √2^i)`; bucket 23 holds everything from
/// `EDGE0 × √2^22 = 1.024 s` up.
const EDGE0: f64 = 500_000.0;
/// Heartbeats the loss estimate covers.
const WINDOW: u8 = 32;
/// `prev_rtt_us` before the first sample.
const NO_RTT: u32 = u32::MAX;

/// How healthy a connection looks, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Within every threshold.
    Ok,
    /// At or above a warning threshold.
    Warn,
    /// At or above a critical threshold.
    Critical,
}

/// Thresholds for [`Level`]; a figure at or above a threshold reaches its level.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Heartbeat RTT 95th percentile that warns. Default 200 ms: past what interactive
    /// traffic tolerates on an intercontinental path.
    pub rtt_p95_warn: Duration,
    /// Heartbeat RTT 95th percentile that is critical. Default 500 ms: a path this slow
    /// is congested or bufferbloated.
    pub rtt_p95_critical: Duration,
    /// Fraction of the last 32 heartbeats unanswered that warns. Default 0.02 (one lost
    /// heartbeat of 32 reaches it).
    pub loss_warn: f32,
    /// Fraction of the last 32 heartbeats unanswered that is critical. Default 0.05 (two
    /// of 32): over TCP a lost pong means a stalled path, not a dropped packet.
    pub loss_critical: f32,
    /// Failed connect attempts in a row that warn. Default 3.
    pub streak_warn: u32,
    /// Failed connect attempts in a row that are critical. Default 5 (with the default
    /// backoff, about half a minute of failing).
    pub streak_critical: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            rtt_p95_warn: Duration::from_millis(200),
            rtt_p95_critical: Duration::from_millis(500),
            loss_warn: 0.02,
            loss_critical: 0.05,
            streak_warn: 3,
            streak_critical: 5,
        }
    }
}

/// A connection's health figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    /// Median heartbeat RTT of recent history (counts decay by halving, so it follows
    /// the last few hundred heartbeats); `None` before the first answered heartbeat. Within a factor √2 of the true figure from
    /// 0.5 ms to 1.024 s; below 0.5 ms it is only known to lie there, and from 1.024 s up
    /// it reads 1.024 s.
    pub rtt_p50: Option<Duration>,
    /// 95th percentile of heartbeat RTT, with `rtt_p50`'s window and error.
    pub rtt_p95: Option<Duration>,
    /// 99th percentile of heartbeat RTT, with `rtt_p50`'s window and error.
    pub rtt_p99: Option<Duration>,
    /// Mean difference between consecutive RTTs, smoothed with gain 1/16 (RFC 3550
    /// §6.4.1's interarrival jitter), in whole microseconds.
    pub jitter: Duration,
    /// Fraction of the last `heartbeats` heartbeats that went unanswered, 0 to 1.
    pub loss: f32,
    /// Heartbeats the loss covers: all sent so far, at most 32.
    pub heartbeats: u32,
    /// Failed connect attempts in a row.
    pub streak: u32,
    /// The worst level of the RTT p95, the loss and the streak.
    pub level: Level,
}

/// The health of one connection, in 40 bytes.
///
/// RTTs go into a histogram of `u8` counts over 24 geometric buckets √2 apart (0.5 ms to
/// 1.024 s, the last one open-ended). When a count would pass 255, every count is halved
/// (rounding down, so lone old samples vanish): the histogram is exponentially decayed,
/// each sample's weight halving every time the busiest bucket fills again, i.e. every 128
/// samples at most when RTTs are steady, rarer when they spread. It follows the last few
/// hundred heartbeats (about an hour at one per 15 s) instead of all history.
///
/// A quantile is read by walking the buckets to the one holding its rank and
/// interpolating geometrically inside it, so it lies in the same bucket as the true
/// figure of the decayed distribution: within a factor √2.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    counts: [u8; BUCKETS],
    /// Jitter × 16 in microseconds (RFC 3550 A.8's fixed-point form, so the 1/16 gain
    /// loses no precision to rounding).
    jitter16: u32,
    /// The last RTT in microseconds, [`NO_RTT`] before the first.
    prev_rtt_us: u32,
    /// The last `window_len` heartbeats, newest in bit 0; a set bit is a lost one.
    window: u32,
    window_len: u8,
    streak: u16,
    /// The level last reported to the handler (`on_health` fires when it changes); in
    /// what would otherwise be the record's padding.
    reported: Level,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of an RTT of `ns` nanoseconds.
fn bucket(ns: f64) -> usize {
    let r = ns / EDGE0;
    if r.is_nan() || r < 1.0 {
        return 0;
    }
    // The float to integer cast saturates, so a huge RTT lands in the last bucket.
    ((r.log2() * 2.0) as usize).saturating_add(1).min(BUCKETS - 1)
}

/// The lower edge of bucket `i` in nanoseconds (0 for bucket 0), exact at whole powers
/// of two.
fn lower_edge(i: usize) -> f64 {
    let Some(e) = i.checked_sub(1) else { return 0.0 };
    let edge = EDGE0 * (1u64 << (e / 2).min(62)) as f64;
    if e % 2 == 1 {
        edge * std::f64::consts::SQRT_2
    } else {
        edge
    }
}

impl Health {
    /// No samples yet.
    pub(crate) fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            jitter16: 0,
            prev_rtt_us: NO_RTT,
            window: 0,
            window_len: 0,
            streak: 0,
            reported: Level::Ok,
        }
    }

    /// A heartbeat was answered after `rtt`.
    pub(crate) fn record_rtt(&mut self, rtt: Duration) {
        let b = bucket(rtt.as_nanos() as f64);
        if self.counts[b] == u8::MAX {
            self.counts.iter_mut().for_each(|c| *c >>= 1);
        }
        self.counts[b] += 1;
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).min(NO_RTT - 1);
        if self.prev_rtt_us != NO_RTT {
            // J += (|D| - J) / 16, kept as 16 J: 16 J += |D| - round(16 J / 16).
            let d = i64::from(us.abs_diff(self.prev_rtt_us));
            let j16 = i64::from(self.jitter16);
            let next = j16 + d - ((j16 + 8) >> 4);
            self.jitter16 = u32::try_from(next.max(0)).unwrap_or(u32::MAX);
        }
        self.prev_rtt_us = us;
        self.push_heartbeat(false);
    }

    /// A heartbeat went unanswered within the pong timeout.
    pub(crate) fn record_lost(&mut self) {
        self.push_heartbeat(true);
    }

    fn push_heartbeat(&mut self, lost: bool) {
        self.window = (self.window << 1) | u32::from(lost);
        self.window_len = (self.window_len + 1).min(WINDOW);
    }

    /// The level last reported.
    pub(crate) fn reported(&self) -> Level {
        self.reported
    }

    /// Remembers `level` as reported; returns the level reported before.
    pub(crate) fn report(&mut self, level: Level) -> Level {
        std::mem::replace(&mut self.reported, level)
    }

    /// A connect attempt failed: the streak grows (saturating).
    pub(crate) fn record_failure(&mut self) {
        self.streak = self.streak.saturating_add(1);
    }

    /// A connect attempt succeeded: the streak ends.
    pub(crate) fn record_success(&mut self) {
        self.streak = 0;
    }

    /// The RTT quantile `q` (0 to 1) of the decayed histogram; `None` when empty.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u32 = self.counts.iter().map(|&c| u32::from(c)).sum();
        if total == 0 {
            return None;
        }
        // The nearest-rank sample (1-based), then its place among its bucket's samples.
        let rank = (q * f64::from(total)).ceil().clamp(1.0, f64::from(total));
        let mut below = 0f64;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = f64::from(c);
            if c == 0.0 || below + c < rank {
                below += c;
                continue;
            }
            let f = (rank - below - 0.5) / c;
            let ns = match i {
                0 => EDGE0 * f,
                i if i == BUCKETS - 1 => lower_edge(i),
                i => lower_edge(i) * std::f64::consts::SQRT_2.powf(f),
            };
            return Some(Duration::from_nanos(ns as u64));
        }
        None
    }

    fn loss(&self) -> f32 {
        match self.window_len {
            0 => 0.0,
            n => self.window.count_ones() as f32 / f32::from(n),
        }
    }

    /// The figures now, and their level under `cfg`.
    pub(crate) fn snapshot(&self, cfg: &HealthConfig) -> HealthSnapshot {
        let rtt_p95 = self.quantile(0.95);
        HealthSnapshot {
            rtt_p50: self.quantile(0.5),
            rtt_p95,
            rtt_p99: self.quantile(0.99),
            jitter: Duration::from_micros(u64::from(self.jitter16.saturating_add(8) >> 4)),
            loss: self.loss(),
            heartbeats: u32::from(self.window_len),
            streak: u32::from(self.streak),
            level: self.level_of(rtt_p95, cfg),
        }
    }

    /// The worst of the levels of the RTT p95, the loss and the connect streak.
    #[cfg(test)]
    pub(crate) fn level(&self, cfg: &HealthConfig) -> Level {
        self.level_of(self.quantile(0.95), cfg)
    }

    fn level_of(&self, rtt_p95: Option<Duration>, cfg: &HealthConfig) -> Level {
        fn grade<T: PartialOrd>(v: T, warn: T, critical: T) -> Level {
            if v >= critical {
                Level::Critical
            } else if v >= warn {
                Level::Warn
            } else {
                Level::Ok
            }
        }
        let rtt = rtt_p95.map_or(Level::Ok, |p| grade(p, cfg.rtt_p95_warn, cfg.rtt_p95_critical));
        let loss = grade(self.loss(), cfg.loss_warn, cfg.loss_critical);
        let streak = grade(u32::from(self.streak), cfg.streak_warn, cfg.streak_critical);
        rtt.max(loss).max(streak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    fn within_sqrt2(got: Option<Duration>, want: Duration) -> bool {
        let (g, w) = (got.unwrap().as_secs_f64(), want.as_secs_f64());
        g <= w * std::f64::consts::SQRT_2 && g >= w / std::f64::consts::SQRT_2
    }

    #[test]
    fn fits_in_40_bytes() {
        assert!(std::mem::size_of::<Health>() <= 40, "{}", std::mem::size_of::<Health>());
    }

    #[test]
    fn quantiles_of_known_distributions_are_within_sqrt2() {
        let mut h = Health::new();
        assert_eq!(h.snapshot(&HealthConfig::default()).rtt_p50, None);
        // 1000 samples uniform over 10..20 ms, in a scrambled order.
        for i in 0..1000u64 {
            h.record_rtt(ms(10.0 + ((i * 7919) % 1000) as f64 / 100.0));
        }
        let s = h.snapshot(&HealthConfig::default());
        assert!(within_sqrt2(s.rtt_p50, ms(15.0)), "{s:?}");
        assert!(within_sqrt2(s.rtt_p95, ms(19.5)), "{s:?}");
        assert!(within_sqrt2(s.rtt_p99, ms(19.9)), "{s:?}");
        assert!(s.rtt_p50 <= s.rtt_p95 && s.rtt_p95 <= s.rtt_p99);
        // A bimodal mix: 90 % at 1 ms, 10 % at 300 ms.
        let mut h = Health::new();
        for i in 0..200 {
            h.record_rtt(if i % 10 == 0 { ms(300.0) } else { ms(1.0) });
        }
        assert!(within_sqrt2(h.quantile(0.5), ms(1.0)));
        assert!(within_sqrt2(h.quantile(0.95), ms(300.0)));
        assert_eq!(h.level(&HealthConfig::default()), Level::Warn, "p95 past 200 ms");
    }

    #[test]
    fn decay_follows_recent_history() {
        let mut h = Health::new();
        for _ in 0..100_000 {
            h.record_rtt(ms(10.0));
        }
        assert!(within_sqrt2(h.quantile(0.99), ms(10.0)));
        // Each halving after the first 255 new samples takes 128 more: 2000 new samples
        // halve the old bucket 13 times, to nothing.
        for i in 0..2_000 {
            h.record_rtt(ms(100.0));
            if i == 400 {
                assert!(within_sqrt2(h.quantile(0.5), ms(100.0)), "the median moved");
            }
        }
        assert!(within_sqrt2(h.quantile(0.01), ms(100.0)), "old samples forgotten");
        assert!(h.counts.iter().map(|&c| u32::from(c)).sum::<u32>() >= 128);
    }

    #[test]
    fn loss_over_the_last_32_heartbeats() {
        let cfg = HealthConfig::default();
        let mut h = Health::new();
        for _ in 0..31 {
            h.record_rtt(ms(5.0));
        }
        h.record_lost();
        let s = h.snapshot(&cfg);
        assert_eq!((s.heartbeats, s.level), (32, Level::Warn));
        assert!((s.loss - 1.0 / 32.0).abs() < 1e-6);
        h.record_lost();
        assert_eq!(h.level(&cfg), Level::Critical, "2 of 32");
        for _ in 0..32 {
            h.record_rtt(ms(5.0));
        }
        let s = h.snapshot(&cfg);
        assert_eq!((s.loss, s.heartbeats, s.level), (0.0, 32, Level::Ok), "losses slid out");
    }

    #[test]
    fn streak_thresholds() {
        let cfg = HealthConfig::default();
        let mut h = Health::new();
        let mut levels = Vec::new();
        for _ in 0..6 {
            h.record_failure();
            levels.push(h.level(&cfg));
        }
        use Level::*;
        assert_eq!(levels, [Ok, Ok, Warn, Warn, Critical, Critical]);
        assert_eq!(h.snapshot(&cfg).streak, 6);
        h.record_success();
        assert_eq!((h.snapshot(&cfg).streak, h.level(&cfg)), (0, Ok));
        for _ in 0..100_000 {
            h.record_failure();
        }
        assert_eq!(h.snapshot(&cfg).streak, u32::from(u16::MAX), "saturates");
    }

    #[test]
    fn jitter_of_steady_and_alternating_rtts() {
        let cfg = HealthConfig::default();
        let mut h = Health::new();
        for _ in 0..100 {
            h.record_rtt(ms(42.0));
        }
        assert_eq!(h.snapshot(&cfg).jitter, Duration::ZERO);
        let mut h = Health::new();
        for i in 0..300 {
            h.record_rtt(if i % 2 == 0 { ms(10.0) } else { ms(20.0) });
        }
        let j = h.snapshot(&cfg).jitter;
        assert!(j.abs_diff(ms(10.0)) <= Duration::from_micros(10), "{j:?}");
    }

    #[test]
    fn extreme_rtts_do_not_panic() {
        let cfg = HealthConfig::default();
        let mut h = Health::new();
        for rtt in [Duration::ZERO, Duration::MAX, Duration::ZERO, Duration::MAX] {
            h.record_rtt(rtt);
            let s = h.snapshot(&cfg);
            assert!(s.rtt_p99.is_some());
        }
        let s = h.snapshot(&cfg);
        assert_eq!(
            s.rtt_p99,
            Some(Duration::from_millis(1024)),
            "the open bucket reads as its lower edge"
        );
        assert_eq!(s.level, Level::Critical);
        assert!(s.jitter > Duration::from_secs(60));
        assert_eq!(bucket(f64::NAN), 0);
    }
}
