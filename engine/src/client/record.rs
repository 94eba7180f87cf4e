//! A worker's record of one client, beside its connection record in the slab: what the
//! dials need (the target, the options), the state machine and the health figures.

use std::num::NonZeroU16;
use std::sync::Arc;

use super::handle::{SharedRef, Spec};
use super::health::{Health, HealthSnapshot, Level};
use super::lifecycle::{ClientState, Lifecycle, StateChange};
use crate::clock::Tick;
use crate::stats::WorkerStats;

/// What a client's handler hears of, besides the messages.
#[derive(Debug, Clone)]
pub(crate) enum ClientEvent {
    /// `on_state`.
    State(StateChange),
    /// `on_health`: the health level changed.
    Health(HealthSnapshot),
}

/// One client on its worker.
pub(crate) struct Client {
    pub(crate) spec: Arc<Spec>,
    /// What the handle reads (state, key).
    pub(crate) shared: SharedRef,
    pub(crate) life: Lifecycle,
    pub(crate) health: Health,
    /// The one instant the client waits for, which the state tells apart (one field for
    /// two, 8 bytes less on every client): in `Reconnecting`, when the next attempt
    /// starts once the socket of the last is closed ([`Client::retry_at`]); in
    /// `Connected`, the application heartbeat's next instant ([`Client::app_due`]).
    /// A 4-byte tick: both lie within a day of now.
    due: Option<Tick>,
    /// The error the socket failed with, until the loss it causes is reported (Linux's
    /// error numbers are below 4,096).
    errno: Option<NonZeroU16>,
    /// The resolved address the next attempt goes to (they are tried in turn; the
    /// first 256 of a longer list).
    next_addr: u8,
    /// The application heartbeat is sent: `app_due` is when its answer is late.
    pub(crate) app_waiting: bool,
}

impl Client {
    /// The record of `dial`'s client (its event stream, if it has one, is kept apart:
    /// `Core::sinks`).
    pub(crate) fn new(spec: Arc<Spec>, shared: SharedRef) -> Self {
        Self {
            spec,
            shared,
            life: Lifecycle::new(),
            health: Health::default(),
            due: None,
            errno: None,
            next_addr: 0,
            app_waiting: false,
        }
    }

    /// When the next attempt starts, in `Reconnecting` (set by [`Client::set_retry_at`]
    /// as the state machine enters it); `None` in every other state, `Closed` included.
    pub(crate) fn retry_at(&self) -> Option<Tick> {
        self.due.filter(|_| self.life.state() == ClientState::Reconnecting)
    }

    /// The retry instant the state machine gave as it left `Connecting` or `Connected`
    /// (`None`: it ended the client); it replaces the application heartbeat's.
    pub(crate) fn set_retry_at(&mut self, at: Option<Tick>) {
        self.due = at;
    }

    /// The application heartbeat's next instant while `Connected` (it has one): when
    /// it is sent, or, once sent (`app_waiting`), when its answer is late.
    pub(crate) fn app_due(&self) -> Option<Tick> {
        self.due.filter(|_| self.life.state() == ClientState::Connected)
    }

    /// Sets the application heartbeat's next instant (as the client connects, or
    /// while connected).
    pub(crate) fn set_app_due(&mut self, at: Option<Tick>) {
        self.due = at;
    }

    /// The health figures when their level changed since the last report (an alert
    /// for the handler's `on_health`), else `None`.
    pub(crate) fn health_alert(&mut self, stats: &WorkerStats) -> Option<ClientEvent> {
        let cfg = &self.spec.config.health;
        let snapshot = self.health.snapshot(cfg);
        self.shared.set_health(&snapshot);
        let level = snapshot.level;
        let was = self.health.report(level);
        if level == was {
            return None;
        }
        if level > was {
            WorkerStats::add(&stats.client_alerts, 1);
        }
        match (was, level) {
            (Level::Ok, _) => WorkerStats::add(&stats.clients_degraded, 1),
            (_, Level::Ok) => WorkerStats::sub(&stats.clients_degraded, 1),
            _ => {}
        }
        Some(ClientEvent::Health(snapshot))
    }

    /// Publishes a transition to the handle's readers and returns it for the handler.
    pub(crate) fn changed(&self, change: Option<StateChange>) -> Option<StateChange> {
        if let Some(c) = &change {
            self.shared.set_state(c.to);
        }
        change
    }

    /// Keeps the error the socket failed with for the loss it causes (one outside
    /// 1..4,096, which Linux does not return, as `EIO`).
    pub(crate) fn set_errno(&mut self, errno: i32) {
        let e = u16::try_from(errno).ok().filter(|&e| e < 4096).unwrap_or(libc::EIO as u16);
        self.errno = NonZeroU16::new(e);
    }

    /// The error kept by [`Client::set_errno`], taken.
    pub(crate) fn take_errno(&mut self) -> Option<i32> {
        self.errno.take().map(|e| i32::from(e.get()))
    }

    /// The address of the next attempt: the resolved ones in turn.
    pub(crate) fn next_addr(&mut self) -> std::net::SocketAddr {
        let addrs = self.spec.addrs();
        // A later lookup may have returned fewer addresses: the index wraps.
        let n = addrs.len().min(256);
        let i = usize::from(self.next_addr) % n;
        self.next_addr = u8::try_from((i + 1) % n).unwrap_or(0);
        addrs[i]
    }
}

#[cfg(test)]
mod tests {
    /// A regression guard for the memory of an idle client (docs/BENCHMARKS.md measures
    /// the whole of it): the record beside the connection's, in its worker's table of
    /// pages, 80 bytes today.
    #[test]
    fn client_record_stays_small() {
        let n = std::mem::size_of::<super::Client>();
        assert!(n <= 80, "the client record grew to {n} bytes");
    }
}
