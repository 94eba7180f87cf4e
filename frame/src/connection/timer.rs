//! The connection's small fixed table of timers. Each is a deadline or nothing; the
//! earliest is what [`super::Connection::poll_timeout`] reports.
//!
//! Timers that are never armed together share a slot, which keeps an idle connection
//! small: the keepalive ping and the pong timeout take turns, and so do the idle
//! timeout and the close timeout (closing stops the idle timer). Deadlines are stored as
//! nanoseconds since an epoch (8 bytes each rather than 24 for an
//! `Option<(Instant, Timer)>`), and so is the send time in a ping's payload.
//!
//! # Where the epoch comes from
//!
//! The crate reads no clock: the `now` its caller passes is the only time it sees, so a
//! test's virtual clock, a fuzzer and the engine get the same behaviour from the same
//! instants, whatever else ran in the process before. (It used to fix a process-wide
//! epoch from `Instant::now()` on first use.) An offset needs an instant to count from,
//! and the candidates are:
//!
//! - one `Instant` per connection (its creation time): exact and local, but 16 bytes,
//!   and `Connection` has no 16 bytes to spare (the engine keeps it inline in each
//!   connection's record and asserts it stays at 56 bytes or less);
//! - a process-wide epoch fixed from the first instant any caller passes: no clock, but
//!   state shared by unrelated connections, tests and fuzz inputs;
//! - an epoch kept with the configuration, which every connection already points to
//!   (`Arc<Config>`): no byte added to `Connection`. This is the one used
//!   (`config::Epoch`).
//!
//! The epoch is fixed once (a `OnceLock`) by the first `now` given to any connection of
//! that `Arc<Config>`, set a margin before it (2^32 s where the platform's `Instant`
//! can go back that far, else a day or a second) so that instants a caller passes for
//! other connections of the same configuration, even earlier ones (another virtual clock's
//! `t0`), still map to exact offsets. Nothing observable depends on the epoch's value:
//! offsets are only compared with each other or subtracted (deadlines, RTTs), and a
//! connection always uses the one epoch of its configuration, so a pong is measured
//! against the epoch its ping was stamped with. An engine that shares one `Arc<Config>`
//! among its connections shares one epoch; `Connection::server(Config::default(), now)`
//! gets one of its own. The limits are those of the representation: an instant more
//! than the margin before the epoch counts as the epoch (timers due early, never late
//! beyond that margin), and a deadline more than some 292 years past it means never.

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

/// The largest offset: some 292 years past the epoch. Below `KIND_BIT - 1`, so that no
/// armed slot (offset with its kind bit) ever reads as `NONE`.
const MAX_OFFSET: u64 = KIND_BIT - 2;

/// `t` as nanoseconds since `epoch` (saturating: before the epoch is 0, after
/// [`MAX_OFFSET`] is `MAX_OFFSET`).
pub(crate) fn offset(epoch: Instant, t: Instant) -> u64 {
    let n = t.saturating_duration_since(epoch).as_nanos();
    u64::try_from(n).unwrap_or(MAX_OFFSET).min(MAX_OFFSET)
}

/// `d` after the offset `now`, or the farthest deadline the table can hold if that is
/// further (a configured timeout of `Duration::MAX` means "never", not a panic).
pub(crate) fn after(now: u64, d: Duration) -> u64 {
    let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    now.saturating_add(d).min(MAX_OFFSET)
}

/// The instant of an offset, if the platform's `Instant` reaches it (a deadline it cannot
/// represent is too far to ever come).
pub(crate) fn instant(epoch: Instant, offset: u64) -> Option<Instant> {
    epoch.checked_add(Duration::from_nanos(offset))
}

/// Deadlines by [`Timer`], two slots, as offsets from the configuration's epoch (see the
/// module doc); the top bit of each says which of the slot's two timers it is (16 bytes
/// in all).
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
    /// Arms `t` at the offset `at` (at most [`MAX_OFFSET`]: see [`after`]).
    pub(crate) fn set(&mut self, t: Timer, at: u64) {
        let (i, bit) = t.slot();
        self.at[i] = at.min(MAX_OFFSET) | bit;
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
    pub(crate) fn get(&self, t: Timer) -> Option<u64> {
        self.armed(t)
    }

    /// Whether `t` is armed and due at the offset `now`.
    pub(crate) fn is_expired(&self, t: Timer, now: u64) -> bool {
        self.armed(t).is_some_and(|at| at <= now)
    }

    /// The earliest deadline, as an offset.
    pub(crate) fn next(&self) -> Option<u64> {
        self.at.iter().filter(|&&v| v != NONE).map(|v| v & !KIND_BIT).min()
    }

    pub(crate) fn clear(&mut self) {
        self.at = [NONE; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    #[test]
    fn slot_partners_replace_each_other() {
        let t0 = 7 * S;
        let mut t = TimerTable::new();
        t.set(Timer::Keepalive, t0 + 10 * S);
        t.set(Timer::Idle, t0 + 60 * S);
        assert_eq!(t.next(), Some(t0 + 10 * S));
        t.set(Timer::PongTimeout, t0 + 13 * S);
        assert_eq!(t.get(Timer::Keepalive), None);
        t.stop(Timer::Keepalive); // not armed: leaves the pong timeout alone
        assert_eq!(t.get(Timer::PongTimeout), Some(t0 + 13 * S));
        t.set(Timer::Close, t0 + 5 * S);
        assert_eq!(t.get(Timer::Idle), None);
        assert!(t.is_expired(Timer::Close, t0 + 5 * S));
        assert!(!t.is_expired(Timer::Close, t0 + 5 * S - 1));
        assert_eq!(t.next(), Some(t0 + 5 * S));
        t.clear();
        assert_eq!(t.next(), None);
    }

    #[test]
    fn offsets_are_exact_differences_and_saturate_at_the_ends() {
        let epoch = Instant::now();
        let t = epoch + Duration::from_nanos(12_345);
        assert_eq!(offset(epoch, t), 12_345);
        assert_eq!(offset(t, epoch), 0, "before the epoch counts as the epoch");
        assert_eq!(instant(epoch, 12_345), Some(t));
        assert_eq!(after(5, Duration::MAX), MAX_OFFSET);
        assert_eq!(after(5, Duration::from_nanos(7)), 12);
        // The farthest deadline never reads as "no deadline".
        let mut table = TimerTable::new();
        table.set(Timer::Idle, u64::MAX);
        assert_eq!(table.next(), Some(MAX_OFFSET));
    }
}
