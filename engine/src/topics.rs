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
    members: HashMap<Topic, Members>,
    /// The other nodes, when the engine is one of a cluster: told when a topic gets its
    /// first member on this worker and when it loses its last.
    pub(crate) cluster: Option<std::sync::Arc<crate::cluster::ClusterShared>>,
}

/// A topic's subscribers on this worker, and how many messages it delivered here.
#[derive(Default)]
pub(crate) struct Members {
    pub(crate) keys: HashSet<Key>,
    /// Messages published to the topic while it had members here (each counted once,
    /// whatever the number of subscribers).
    pub(crate) published: u64,
}

impl Topics {
    /// Adds `key` to `topic` (the cluster hears of the topic's first member here).
    pub(crate) fn add(&mut self, topic: &Topic, key: Key) {
        let m = self.members.entry(topic.clone()).or_default();
        if m.keys.is_empty() {
            if let Some(cl) = &self.cluster {
                cl.interest(topic, true);
            }
        }
        m.keys.insert(key);
    }

    /// Removes `key` from `topic`; a topic without members is forgotten (and the
    /// cluster hears of it).
    pub(crate) fn remove(&mut self, topic: &str, key: Key) {
        if let Some(m) = self.members.get_mut(topic) {
            m.keys.remove(&key);
            if m.keys.is_empty() {
                if let Some((name, _)) = self.members.remove_entry(topic) {
                    if let Some(cl) = &self.cluster {
                        cl.interest(&name, false);
                    }
                }
            }
        }
    }

    /// Takes a topic's members out, to walk them while the connections are changed
    /// (delivery); give them back with [`Topics::restore`].
    pub(crate) fn take(&mut self, topic: &str) -> Option<(Topic, Members)> {
        self.members.remove_entry(topic)
    }

    /// Puts back what [`Topics::take`] took.
    pub(crate) fn restore(&mut self, topic: Topic, members: Members) {
        if !members.keys.is_empty() {
            self.members.insert(topic, members);
        }
    }

    /// The `n` topics with the most messages published (then the most subscribers):
    /// name, subscribers here, messages published. Walks every topic: for a report once
    /// a second while someone watches, not for the hot path.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(Topic, u64, u64)> {
        let mut all: Vec<_> = self
            .members
            .iter()
            .map(|(t, m)| (t.clone(), m.keys.len() as u64, m.published))
            .collect();
        let key = |e: &(Topic, u64, u64)| std::cmp::Reverse((e.2, e.1));
        if all.len() > n {
            all.select_nth_unstable_by_key(n, key);
            all.truncate(n);
        }
        all.sort_by_key(key);
        all
    }

    #[cfg(test)]
    fn count(&self, topic: &str) -> usize {
        self.members.get(topic).map_or(0, |m| m.keys.len())
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
        assert!(members.keys.contains(&keys[1]) && !members.keys.contains(&keys[0]));
        t.restore(name, members);
        assert_eq!(t.count("t"), 500);
        for k in keys.iter().skip(1).step_by(2) {
            t.remove("t", *k);
        }
        assert!(t.take("t").is_none(), "an empty topic is forgotten");
    }

    #[test]
    fn busiest_ranks_by_messages_then_subscribers() {
        let mut t = Topics::default();
        for (name, subs, published) in [("a", 3, 1), ("b", 1, 5), ("c", 9, 1), ("d", 2, 0)] {
            let topic: Topic = name.into();
            for slot in 0..subs {
                t.add(&topic, Key { slot, gen: 0 });
            }
            let (n, mut m) = t.take(name).unwrap();
            m.published = published;
            t.restore(n, m);
        }
        let top: Vec<_> = t.busiest(3).into_iter().map(|(n, s, p)| (n.to_string(), s, p)).collect();
        assert_eq!(top, [("b".into(), 1, 5), ("c".into(), 9, 1), ("a".into(), 3, 1)]);
        assert_eq!(t.busiest(10).len(), 4);
        assert!(Topics::default().busiest(5).is_empty());
    }
}
