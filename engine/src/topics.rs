//! One worker's topic subscriptions. Fan-out walks a topic's members and hands each the
//! same shared frame.
//!
//! Members are a set, not a list: when thousands of subscribers disconnect at once, each
//! removal is O(1) (a list would make a mass disconnect quadratic).

use std::collections::{HashMap, HashSet};

use crate::handle::Topic;
use crate::slab::Key;

/// Topic name to the local connections subscribed to it.
#[derive(Default)]
pub(crate) struct Topics {
    members: HashMap<Topic, HashSet<Key>>,
}

impl Topics {
    /// Adds `key` to `topic`.
    pub(crate) fn add(&mut self, topic: &Topic, key: Key) {
        self.members.entry(topic.clone()).or_default().insert(key);
    }

    /// Removes `key` from `topic`; a topic without members is forgotten.
    pub(crate) fn remove(&mut self, topic: &str, key: Key) {
        if let Some(m) = self.members.get_mut(topic) {
            m.remove(&key);
            if m.is_empty() {
                self.members.remove(topic);
            }
        }
    }

    /// Takes a topic's members out, to walk them while the connections are changed
    /// (delivery); give them back with [`Topics::restore`].
    pub(crate) fn take(&mut self, topic: &str) -> Option<(Topic, HashSet<Key>)> {
        self.members.remove_entry(topic)
    }

    /// Puts back what [`Topics::take`] took.
    pub(crate) fn restore(&mut self, topic: Topic, members: HashSet<Key>) {
        if !members.is_empty() {
            self.members.insert(topic, members);
        }
    }

    #[cfg(test)]
    fn count(&self, topic: &str) -> usize {
        self.members.get(topic).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_take_restore() {
        let mut t = Topics::default();
        let topic: Topic = "t".into();
        let keys: Vec<Key> = (0..1000).map(|slot| Key { slot, gen: 0 }).collect();
        for k in &keys {
            t.add(&topic, *k);
        }
        t.add(&topic, keys[0]); // twice: still one member
        assert_eq!(t.count("t"), 1000);
        for k in keys.iter().step_by(2) {
            t.remove("t", *k);
        }
        assert_eq!(t.count("t"), 500);
        let (name, members) = t.take("t").unwrap();
        assert_eq!(t.count("t"), 0);
        assert!(members.contains(&keys[1]) && !members.contains(&keys[0]));
        t.restore(name, members);
        assert_eq!(t.count("t"), 500);
        for k in keys.iter().skip(1).step_by(2) {
            t.remove("t", *k);
        }
        assert!(t.take("t").is_none(), "an empty topic is forgotten");
    }
}
