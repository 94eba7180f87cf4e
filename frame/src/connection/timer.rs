//! The connection's small fixed table of timers. Each is a deadline or nothing; the
//! earliest is what [`super::Connection::poll_timeout`] reports.
//!
//! Timers that are never armed together share a slot, which keeps an idle connection
//! small: the keepalive ping and the pong timeout take turns, and so do the idle
//! timeout and the close timeout (closing stops the idle timer). Deadlines are stored as
//! nanoseconds since the connection was created (8 bytes each rather than 24 for an
//! `Option<(Instant, Timer)>`).

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

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::Keepalive | Timer::PongTimeout => 0,
            Timer::Idle | Timer::Close => 1,
        }
    }
}

/// Deadlines by [`Timer`], two slots, as offsets from the connection's creation.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable {
    born: Instant,
    at: [u64; 2],
    kind: [Timer; 2],
}

impl TimerTable {
    /// A table for a connection created at `born`.
    pub(crate) fn new(born: Instant) -> Self {
        Self { born, at: [NONE; 2], kind: [Timer::Close; 2] }
    }

    /// `t` as an offset from creation (saturating; before creation is 0).
    pub(crate) fn offset(&self, t: Instant) -> u64 {
        let n = t.saturating_duration_since(self.born).as_nanos();
        u64::try_from(n).unwrap_or(NONE - 1).min(NONE - 1)
    }

    /// The instant of an offset.
    pub(crate) fn instant(&self, offset: u64) -> Instant {
        self.born + Duration::from_nanos(offset)
    }

    /// Arms `t` (replacing the other timer of its slot).
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t.slot()] = self.offset(at);
        self.kind[t.slot()] = t;
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        if self.get(t).is_some() {
            self.at[t.slot()] = NONE;
        }
    }

    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        let i = t.slot();
        (self.at[i] != NONE && self.kind[i] == t).then(|| self.instant(self.at[i]))
    }

    pub(crate) fn is_expired(&self, t: Timer, now: Instant) -> bool {
        let i = t.slot();
        self.at[i] != NONE && self.kind[i] == t && self.at[i] <= self.offset(now)
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        let min = self.at[0].min(self.at[1]);
        (min != NONE).then(|| self.instant(min))
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
        let mut t = TimerTable::new(t0);
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
