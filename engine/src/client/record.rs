//! A worker's record of one client, beside its connection record in the slab: what the
//! dials need (the target, the options), the state machine and the health figures.

use std::num::NonZeroI32;
use std::sync::Arc;

use super::handle::{ClientShared, Spec};
use super::health::{Health, HealthSnapshot, Level};
use super::lifecycle::{Lifecycle, StateChange};
use crate::clock::Stamp;
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
    pub(crate) shared: Arc<ClientShared>,
    pub(crate) life: Lifecycle,
    pub(crate) health: Health,
    /// Attempts made so far, to go round the resolved addresses.
    pub(crate) dials: u32,
    /// When the next attempt starts, once the socket of this one is closed; `None`
    /// when the client has ended (`Closed`).
    pub(crate) retry_at: Option<Stamp>,
    /// The health level last reported.
    pub(crate) level: Level,
    /// The error the socket failed with, until the loss it causes is reported.
    pub(crate) errno: Option<NonZeroI32>,
    /// The application heartbeat's next instant while connected: when it is sent, or,
    /// once sent (`app_waiting`), when its answer is late.
    pub(crate) app_due: Option<Stamp>,
    pub(crate) app_waiting: bool,
}

impl Client {
    /// The record of `dial`'s client (its event stream, if it has one, is kept apart:
    /// `Core::sinks`).
    pub(crate) fn new(spec: Arc<Spec>, shared: Arc<ClientShared>) -> Self {
        Self {
            spec,
            shared,
            life: Lifecycle::new(),
            health: Health::default(),
            dials: 0,
            retry_at: None,
            level: Level::Ok,
            errno: None,
            app_due: None,
            app_waiting: false,
        }
    }

    /// The health figures when their level changed since the last report (an alert
    /// for the handler's `on_health`), else `None`.
    pub(crate) fn health_alert(&mut self, stats: &WorkerStats) -> Option<ClientEvent> {
        let cfg = &self.spec.config.health;
        let snapshot = self.health.snapshot(cfg);
        self.shared.set_health(&snapshot);
        let level = snapshot.level;
        if level == self.level {
            return None;
        }
        if level > self.level {
            WorkerStats::add(&stats.client_alerts, 1);
        }
        match (self.level, level) {
            (Level::Ok, _) => WorkerStats::add(&stats.clients_degraded, 1),
            (_, Level::Ok) => WorkerStats::sub(&stats.clients_degraded, 1),
            _ => {}
        }
        self.level = level;
        Some(ClientEvent::Health(snapshot))
    }

    /// Publishes a transition to the handle's readers and returns it for the handler.
    pub(crate) fn changed(&self, change: Option<StateChange>) -> Option<StateChange> {
        if let Some(c) = &change {
            self.shared.set_state(c.to);
        }
        change
    }

    /// The address of the next attempt: the resolved ones in turn.
    pub(crate) fn next_addr(&mut self) -> std::net::SocketAddr {
        let addrs = self.spec.addrs();
        let a = addrs[self.dials as usize % addrs.len()];
        self.dials = self.dials.wrapping_add(1);
        a
    }
}

#[cfg(test)]
mod tests {
    /// A regression guard for the memory of an idle client (docs/BENCHMARKS.md measures
    /// the whole of it): the record beside the connection's, in its worker's table of
    /// pages, 112 bytes today.
    #[test]
    fn client_record_stays_small() {
        let n = std::mem::size_of::<super::Client>();
        assert!(n <= 112, "the client record grew to {n} bytes");
    }
}
