//! The connection's small fixed table of timers. Each is a deadline or nothing; the
//! earliest is what [`super::Connection::poll_timeout`] reports.
//!
//! Timers that are never armed together share a slot, which keeps an idle connection
//! small: the keepalive ping and the pong timeout take turns, and so do the idle
//! timeout and the close timeout (closing stops the idle timer).

use std::time::Instant;

/// The timers one connection can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Waiting for the peer's close frame after we sent ours.
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

/// Deadlines by [`Timer`], two slots.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    at: [Option<(Instant, Timer)>; 2],
}

impl TimerTable {
    /// Arms `t` (replacing the other timer of its slot).
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t.slot()] = Some((at, t));
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        if self.get(t).is_some() {
            self.at[t.slot()] = None;
        }
    }

    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.at[t.slot()].filter(|(_, k)| *k == t).map(|(at, _)| at)
    }

    pub(crate) fn is_expired(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|at| at <= now)
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().map(|(at, _)| *at).min()
    }

    pub(crate) fn clear(&mut self) {
        self.at = [None; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slot_partners_replace_each_other() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
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
