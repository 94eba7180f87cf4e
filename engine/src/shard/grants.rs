//! The authorizer's grants on a worker: checked on subscribe and publish, renewed, and
//! ended (1008) once their time is up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ringwire_frame::CloseCode;

use super::Core;
use crate::slab::Key;
use crate::stats::WorkerStats;

/// How often the grants are checked for their end.
const GRANTS_EVERY: Duration = Duration::from_secs(1);

impl Core {
    /// Whether the authorizer (if any) grants `key` subscribing (`publish` false) or
    /// publishing to `topic`; a refusal closes the connection with 1008 and is counted.
    pub(crate) fn granted(&mut self, key: Key, topic: &str, publish: bool) -> bool {
        if self.grants.is_empty() {
            return true; // no authorizer: no lookup on the publish path
        }
        let Some(g) = self.grants.get(&key.slot) else { return true };
        let ok = if publish { g.may_publish(topic) } else { g.may_subscribe(topic) };
        if !ok {
            WorkerStats::add(&self.stats.auth_refusals, 1);
            let what = if publish { "publish" } else { "subscribe" };
            let _ = self.close(key, CloseCode::POLICY, &format!("not allowed to {what} there"));
        }
        ok
    }

    /// `Ctx::reauthorize`: a new grant from `credentials`, or a 1008 close.
    pub(crate) fn reauthorize(&mut self, key: Key, credentials: &str) -> bool {
        let Some(auth) = self.config.authorizer.clone() else { return false };
        match auth.renew(credentials) {
            Ok(grant) => {
                self.grants.insert(key.slot, Arc::new(grant));
                true
            }
            Err(_) => {
                WorkerStats::add(&self.stats.auth_refusals, 1);
                let _ = self.close(key, CloseCode::POLICY, "credentials refused");
                false
            }
        }
    }

    /// Closes (1008) the connections whose grant has ended; once a second, and only
    /// while there are grants (the worker's wait ends by [`Core::grants_deadline`]).
    pub(crate) fn expire_grants(&mut self) {
        if self.grants.is_empty() || self.now < self.grants_checked_at {
            return;
        }
        self.grants_checked_at = self.now + GRANTS_EVERY;
        let wall = SystemTime::now();
        let ended: Vec<u32> =
            self.grants.iter().filter(|(_, g)| g.expired(wall)).map(|(s, _)| *s).collect();
        for slot in ended {
            self.grants.remove(&slot);
            if let Some(key) = self.conns.key_at(slot) {
                WorkerStats::add(&self.stats.auth_refusals, 1);
                let _ = self.close(key, CloseCode::POLICY, "credentials expired");
            }
        }
    }

    /// When the grants are next checked, while there are any: a worker gone quiet must
    /// still wake then, or a connection would outlive its grant until its next traffic
    /// or heartbeat.
    pub(crate) fn grants_deadline(&self) -> Option<Instant> {
        (!self.grants.is_empty()).then_some(self.grants_checked_at)
    }
}
