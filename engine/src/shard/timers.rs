//! The shard's timers: one entry per connection on the worker's hierarchical wheel, at
//! its next deadline, in milliseconds from the worker's start.

use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::slab::Key;
use crate::wheel::Wheel;

pub(crate) struct Timers {
    wheel: Wheel,
    /// Tick 0.
    epoch: Instant,
    /// Reused by `take_due`.
    due: Vec<u32>,
}

impl Timers {
    pub(crate) fn new(epoch: Instant, capacity: usize) -> Self {
        Self { wheel: Wheel::with_capacity(capacity), epoch, due: Vec::new() }
    }

    /// Connections with an entry on the wheel.
    pub(crate) fn len(&self) -> usize {
        self.wheel.len()
    }

    fn tick_of(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch);
        // Round up, so a timer never fires before its deadline.
        d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000))
    }

    /// Keeps the connection's one wheel entry at or before its next deadline. A deadline
    /// that moved later keeps the entry (it fires early and is re-filed: cheap, since
    /// heartbeats move later on every read); one that moved earlier replaces it.
    pub(crate) fn schedule(&mut self, key: Key, c: &Conn) {
        let Some(deadline) = c.deadline() else { return };
        self.schedule_at(key, deadline);
    }

    /// Keeps the connection's one wheel entry at or before `deadline`.
    pub(crate) fn schedule_at(&mut self, key: Key, deadline: Instant) {
        let tick = self.tick_of(deadline).max(1);
        match self.wheel.when(key.slot) {
            Some(at) if at <= tick => {}
            _ => self.wheel.insert(key.slot, tick),
        }
    }

    /// Takes the connection's entry off the wheel.
    pub(crate) fn unschedule(&mut self, key: Key) {
        self.wheel.remove(key.slot);
    }

    /// When the earliest entry is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.wheel.next_deadline().map(|tick| self.epoch + Duration::from_millis(tick))
    }

    /// The slab slots of the entries due at `now`, now off the wheel. Give the vector
    /// back with [`Timers::restore_due`].
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<u32> {
        let mut due = std::mem::take(&mut self.due);
        // Deadlines were rounded up to a tick; a tick is due once it has fully passed.
        let floor = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.wheel.poll(floor, &mut due);
        due
    }

    pub(crate) fn restore_due(&mut self, mut due: Vec<u32>) {
        due.clear();
        self.due = due;
    }
}
