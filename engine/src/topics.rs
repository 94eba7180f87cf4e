//! One worker's topic subscriptions. Fan-out walks a topic's member list and hands each
//! member the same shared frame.

use std::collections::HashMap;

use crate::handle::Topic;
use crate::slab::Key;

/// Topic name to the local connections subscribed to it.
#[derive(Default)]
pub(crate) struct Topics {
    members: HashMap<Topic, Vec<Key>>,
}

impl Topics {
    /// Adds `key` to `topic`; false if it was already there (checked by the caller's own
    /// subscription list, which is short).
    pub(crate) fn add(&mut self, topic: &Topic, key: Key) {
        self.members.entry(topic.clone()).or_default().push(key);
    }

    pub(crate) fn remove(&mut self, topic: &str, key: Key) {
        if let Some(m) = self.members.get_mut(topic) {
            if let Some(i) = m.iter().position(|k| *k == key) {
                m.swap_remove(i);
            }
            if m.is_empty() {
                self.members.remove(topic);
            }
        }
    }

    pub(crate) fn members(&self, topic: &str) -> &[Key] {
        self.members.get(topic).map_or(&[], |v| v.as_slice())
    }
}
