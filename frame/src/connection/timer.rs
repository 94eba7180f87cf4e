//! The connection's small fixed table of timers. Each is a deadline or nothing; the
//! earliest is what [`super::Connection::poll_timeout`] reports.
//!
//! Timers that are never armed together share a slot, which keeps an idle connection
//! small: the keepalive ping and the pong timeout take turns, and so do the idle
//! timeout and the close timeout (closing stops the idle timer). Deadlines are stored as
//! nanoseconds since a process-wide epoch (8 bytes each rather than 24 for an
//! `Option<(Instant, Timer)>`, and no 16-byte creation instant on every connection).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// "No deadline" in a slot.
const NONE: u64 = u64::MAX;

/// The timers one connection can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Timer {
    /// Waiting for the peer's close frame after we sent ours.
    #[default]
    Close,
    /// Time to send a keepalive ping.
    Keepalive,
    /// A keepalive ping went out; the peer must show life by then.
    PongTimeout,
    /// No inbound traffic for `idle_timeout`.
    Idle,
}

/// The top bit of a slot's value tells its two timers apart; offsets stay below it.
const KIND_BIT: u64 = 1 << 63;

impl Timer {
    /// The slot and the kind bit.
    fn slot(self) -> (usize, u64) {
        match self {
            Timer::Keepalive => (0, 0),
            Timer::PongTimeout => (0, KIND_BIT),
            Timer::Close => (1, 0),
            Timer::Idle => (1, KIND_BIT),
        }
    }
}

/// The instant every offset counts from: fixed on first use, set well before it (where
/// the platform's clock can go back that far) so that instants a caller took a little
/// earlier, such as a test's virtual `t0`, still map to distinct offsets.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        // 2^32 s (136 years) back keeps offsets far below 2^63 ns; the shorter steps
        // serve clocks that start at boot and cannot represent earlier instants.
        [1u64 << 32, 86_400, 1]
            .into_iter()
            .find_map(|s| now.checked_sub(Duration::from_secs(s)))
            .unwrap_or(now)
    })
}

/// The largest offset: some 160 years past the epoch. Below `KIND_BIT - 1`, so that no
/// armed slot (offset with its kind bit) ever reads as `NONE`.
const MAX_OFFSET: u64 = KIND_BIT - 2;

/// `t` as nanoseconds since the epoch (saturating: before the epoch is 0, after
/// [`MAX_OFFSET`] is `MAX_OFFSET`).
pub(crate) fn offset(t: Instant) -> u64 {
    let n = t.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(n).unwrap_or(MAX_OFFSET).min(MAX_OFFSET)
}

/// `d` after `now`, or the farthest deadline the table can hold if that overflows (a
/// configured timeout of `Duration::MAX` means "never", not a panic).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| instant(MAX_OFFSET))
}

/// The instant of an offset.
pub(crate) fn instant(offset: u64) -> Instant {
    epoch() + Duration::from_nanos(offset)
}

/// Deadlines by [`Timer`], two slots, as offsets from the process-wide epoch; the top
/// bit of each says which of the slot's two timers it is (16 bytes in all).
#[derive(Debug, Clone)]
pub(crate) struct TimerTable {
    at: [u64; 2],
}

impl TimerTable {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self { at: [NONE; 2] }
    }

    /// Arms `t` (replacing the other timer of its slot).
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        let (i, bit) = t.slot();
        self.at[i] = offset(at) | bit;
    }

    /// `t`'s deadline as an offset, if `t` is armed.
    fn armed(&self, t: Timer) -> Option<u64> {
        let (i, bit) = t.slot();
        let v = self.at[i];
        (v != NONE && v & KIND_BIT == bit).then_some(v & !KIND_BIT)
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        if self.armed(t).is_some() {
            self.at[t.slot().0] = NONE;
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.armed(t).map(instant)
    }

    pub(crate) fn is_expired(&self, t: Timer, now: Instant) -> bool {
        self.armed(t).is_some_and(|at| at <= offset(now))
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().filter(|&&v| v != NONE).map(|v| v & !KIND_BIT).min().map(instant)
    }

    pub(crate) fn clear(&mut self) {
        self.at = [NONE; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slot_partners_replace_each_other() {
        let t0 = Instant::now();
        let mut t = TimerTable::new();
        t.set(Timer::Keepalive, t0 + Duration::from_secs(10));
        t.set(Timer::Idle, t0 + Duration::from_secs(60));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
        t.set(Timer::PongTimeout, t0 + Duration::from_secs(13));
        assert_eq!(t.get(Timer::Keepalive), None);
        t.stop(Timer::Keepalive); // not armed: leaves the pong timeout alone
        assert_eq!(t.get(Timer::PongTimeout), Some(t0 + Duration::from_secs(13)));
        t.set(Timer::Close, t0 + Duration::from_secs(5));
        assert_eq!(t.get(Timer::Idle), None);
        assert!(t.is_expired(Timer::Close, t0 + Duration::from_secs(5)));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
        t.clear();
        assert_eq!(t.next(), None);
    }
}
