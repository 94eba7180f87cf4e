//! The connection's small fixed table of timers. Each is a deadline or nothing; the
//! earliest is what [`super::Connection::poll_timeout`] reports.

use std::time::Instant;

/// The timers one connection can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Waiting for the peer's close frame after we sent ours.
    Close = 0,
    /// Time to send a keepalive ping.
    Keepalive = 1,
    /// A keepalive ping went out; the peer must show life by then.
    PongTimeout = 2,
    /// No inbound traffic for `idle_timeout`.
    Idle = 3,
}

const COUNT: usize = 4;

/// Deadlines by [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }

    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.at[t as usize]
    }

    pub(crate) fn is_expired(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|at| at <= now)
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.at = [None; COUNT];
    }
}
