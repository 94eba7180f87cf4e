//! What peers cause, in the log, without letting them flood it: each worker logs at
//! most [`BURST`] events of a kind at once and [`PER_SECOND`] a second after that; the
//! rest are counted, and the next event logged says how many were left out
//! (`suppressed`). Only the rare paths log (a refused upgrade, a protocol error, a limit
//! hit), never the per-message ones.

use std::time::Instant;

/// Events of one kind logged at once before the rate applies.
pub(crate) const BURST: f64 = 10.0;
/// Events of one kind logged per second after the burst.
pub(crate) const PER_SECOND: f64 = 1.0;

/// What is logged under a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noisy {
    /// An upgrade answered with an HTTP error.
    UpgradeRefused = 0,
    /// An upgrade that did not complete in time.
    UpgradeTimeout,
    /// A peer broke the protocol or a limit of it (closed with 1002, 1007, 1009...).
    ProtocolError,
    /// A slow consumer closed with 1008.
    SlowConsumer,
    /// A connection refused because the worker holds `max_connections_per_worker`.
    ConnectionLimit,
    /// An accept failed (descriptors exhausted, say).
    AcceptFailed,
    /// A handler callback panicked (a bug, but one a peer's input may trigger at will).
    HandlerPanic,
    /// A TLS handshake or record failed.
    TlsFailed,
}

const KINDS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
    suppressed: u64,
}

/// One worker's limits, one token bucket per kind.
#[derive(Debug)]
pub(crate) struct LogLimits {
    buckets: [Bucket; KINDS],
}

impl Default for LogLimits {
    fn default() -> Self {
        Self { buckets: [Bucket { tokens: BURST, at: None, suppressed: 0 }; KINDS] }
    }
}

impl LogLimits {
    /// Whether an event of `kind` at `now` may be logged: `Some(n)` with the events of
    /// the kind left out since the last one logged, `None` to leave this one out.
    pub(crate) fn allow(&mut self, kind: Noisy, now: Instant) -> Option<u64> {
        let b = &mut self.buckets[kind as usize];
        if let Some(at) = b.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * PER_SECOND;
            b.tokens = (b.tokens + refill).min(BURST);
        }
        b.at = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_logs_a_burst_then_a_trickle_that_counts_the_rest() {
        let mut l = LogLimits::default();
        let t0 = Instant::now();
        // 10,000 events within one second: the burst only.
        let step = |i: u64| t0 + Duration::from_micros(i * 99);
        let logged: Vec<u64> =
            (0..10_000).filter_map(|i| l.allow(Noisy::ProtocolError, step(i))).collect();
        assert_eq!(logged, vec![0; BURST as usize]);
        // The next one, two seconds on, is logged and counts the rest.
        let next = l.allow(Noisy::ProtocolError, t0 + Duration::from_secs(2));
        assert_eq!(next, Some(10_000 - BURST as u64));
        // Other kinds have their own budget.
        assert_eq!(l.allow(Noisy::SlowConsumer, t0), Some(0));
        // Quiet for a while: the burst is back, once.
        let later = t0 + Duration::from_secs(60);
        let again = (0..100).filter(|_| l.allow(Noisy::ProtocolError, later).is_some()).count();
        assert_eq!(again, BURST as usize);
    }
}
