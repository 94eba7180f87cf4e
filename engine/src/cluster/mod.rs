//! Fan-out across gateway nodes through a broker (NATS): a publish on any node reaches
//! the subscribers of its topic on every node. docs/CLUSTER.md has the picture.
//!
//! The workers never talk to the broker. They hand the bridge what it needs through
//! lock-free queues (`ClusterShared`): every publish (the topic and the frame encoded
//! once, bounded, the oldest dropped when full), and every change of this worker's
//! interest in a topic (its first subscriber came, its last left). The bridge, a thread
//! of its own with a small tokio runtime and the NATS client, sums the workers' interest
//! into the node's (subscribing to a topic's subject while any worker has subscribers),
//! publishes what the workers handed it, and delivers what arrives from other nodes to
//! the workers as a local publish ([`crate::Publisher`] without the bridge: no loop).

#[cfg(feature = "cluster")]
mod bridge;

#[cfg(feature = "cluster")]
pub(crate) use self::bridge::Bridge;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::handle::Topic;

/// How a node joins the others.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:port`), tried in turn; the client reconnects by itself.
    pub servers: Vec<String>,
    /// The subjects' prefix: topic `T` travels on `PREFIX.` + [`subject_token`]`(T)`.
    /// Default `ringwire.t`.
    pub subject_prefix: String,
    /// Publishes waiting for the broker, at most; when full the oldest is dropped (and
    /// counted: [`ClusterStats::dropped`]), so a broker that is slow or gone costs a
    /// bounded amount of memory and local fan-out goes on. While the bridge is not
    /// connected, publishes wait here (and nowhere else). Default 65,536.
    pub queue: usize,
    /// Bytes of frames waiting for the broker, at most: past it the oldest are dropped
    /// too (counted the same way). Default 64 MiB. (Concurrent publishers may overshoot
    /// it by one message each, for a moment.)
    pub queue_bytes: usize,
}

impl ClusterConfig {
    /// A node of the cluster on these NATS servers, with the defaults.
    pub fn nats(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            subject_prefix: "ringwire.t".into(),
            queue: 65_536,
            queue_bytes: 64 << 20,
        }
    }

    /// At most `messages` and `bytes` waiting for the broker (see [`ClusterConfig::queue`]).
    pub fn queue(mut self, messages: usize, bytes: usize) -> Self {
        self.queue = messages;
        self.queue_bytes = bytes;
        self
    }
}

/// The bridge's counters ([`crate::Server::cluster_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Connected to a NATS server now.
    pub connected: bool,
    /// Topics this node is subscribed to on the broker now.
    pub subscriptions: u64,
    /// Local publishes handed to the broker.
    pub published: u64,
    /// Publishes from other nodes delivered to this node's workers.
    pub received: u64,
    /// Local publishes dropped because the queue to the broker was full (the oldest go).
    pub dropped: u64,
    /// Local publishes waiting for the broker now (while it is gone, all of them).
    pub queued: u64,
    /// Their frames' bytes.
    pub queued_bytes: u64,
    /// Publishes the client refused (its connection gone for good, say).
    pub failed: u64,
    /// Times the client reconnected to the broker.
    pub reconnects: u64,
}

/// What the workers and the bridge share. (Without the `cluster` feature there is no
/// bridge: nothing makes one, and the bridge's side goes unused.)
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct ClusterShared {
    /// Publishes for the broker: topic and frame.
    out: ArrayQueue<(Topic, Bytes)>,
    /// Bytes of the frames in `out`, and the most it may hold.
    out_bytes: AtomicUsize,
    max_bytes: usize,
    /// Interest changes from the workers: topic, and whether a worker's first subscriber
    /// came (`true`) or its last left. Not bounded by a capacity, but by the topics in
    /// use: the bridge drains it every turn and each entry is a change of state.
    interest: SegQueue<(Topic, bool)>,
    /// Wakes the bridge.
    waker: atomic_waker::AtomicWaker,
    /// Set by the first producer since the bridge last looked (one wake per batch).
    nudged: AtomicBool,
    pub(crate) connected: AtomicBool,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) stop: AtomicBool,
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
impl ClusterShared {
    pub(crate) fn new(queue: usize, bytes: usize) -> Self {
        Self {
            out: ArrayQueue::new(queue.max(1)),
            out_bytes: AtomicUsize::new(0),
            max_bytes: bytes,
            interest: SegQueue::new(),
            waker: atomic_waker::AtomicWaker::new(),
            nudged: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            subscriptions: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// A local publish, for the other nodes.
    pub(crate) fn publish(&self, topic: &Topic, frame: &Bytes) {
        let mut total = self.out_bytes.fetch_add(frame.len(), Relaxed) + frame.len();
        if let Some((_, old)) = self.out.force_push((topic.clone(), frame.clone())) {
            total = self.out_bytes.fetch_sub(old.len(), Relaxed) - old.len();
            self.dropped.fetch_add(1, Relaxed);
        }
        // Over the byte limit: the oldest go, but never the one just queued (a single
        // message larger than the limit still goes out once the queue is empty).
        while total > self.max_bytes && self.out.len() > 1 {
            let Some((_, old)) = self.out.pop() else { break };
            total = self.out_bytes.fetch_sub(old.len(), Relaxed) - old.len();
            self.dropped.fetch_add(1, Relaxed);
        }
        self.nudge();
    }

    /// The oldest publish waiting for the broker.
    fn next_out(&self) -> Option<(Topic, Bytes)> {
        let (topic, frame) = self.out.pop()?;
        self.out_bytes.fetch_sub(frame.len(), Relaxed);
        Some((topic, frame))
    }

    /// A worker's interest in `topic` began (`true`) or ended.
    pub(crate) fn interest(&self, topic: &Topic, on: bool) {
        self.interest.push((topic.clone(), on));
        self.nudge();
    }

    fn nudge(&self) {
        if !self.nudged.swap(true, Relaxed) {
            self.waker.wake();
        }
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        ClusterStats {
            connected: self.connected.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            published: self.published.load(Relaxed),
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            queued: self.out.len() as u64,
            queued_bytes: self.out_bytes.load(Relaxed) as u64,
            failed: self.failed.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
        }
    }
}

/// A topic as one NATS subject token: ASCII letters, digits, `-` and `_` as they are,
/// every other byte as `~` and two hex digits (`prices.eu` -> `prices~2Eeu`), so no
/// topic can name a wildcard, split into tokens, or hold a space. The same topic always
/// maps to the same token, and different topics to different tokens.
pub fn subject_token(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len());
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push('~');
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0').to_ascii_uppercase());
            out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0').to_ascii_uppercase());
        }
    }
    if out.is_empty() {
        out.push('~'); // the empty topic: a token cannot be empty
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_become_single_safe_tokens() {
        assert_eq!(subject_token("prices.eu"), "prices~2Eeu");
        assert_eq!(subject_token("a b*>"), "a~20b~2A~3E");
        assert_eq!(subject_token("x~y"), "x~7Ey", "the escape itself is escaped");
        assert_eq!(subject_token("é"), "~C3~A9");
        assert_eq!(subject_token(""), "~");
        assert_eq!(subject_token("Chat_room-7"), "Chat_room-7");
        for t in ["a.b", "a b", "a~2Eb", "~", ""] {
            let s = subject_token(t);
            assert!(
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'.' && b != b'*' && b != b'>')
            );
        }
        assert_ne!(subject_token("a.b"), subject_token("a~2Eb"), "no two topics share a token");
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let c = ClusterShared::new(2, 1 << 20);
        let t: Topic = "t".into();
        for i in 0..5u8 {
            c.publish(&t, &Bytes::from(vec![i]));
        }
        let st = c.stats();
        assert_eq!((st.dropped, st.queued, st.queued_bytes), (3, 2, 2));
        let left: Vec<u8> = std::iter::from_fn(|| c.next_out()).map(|(_, b)| b[0]).collect();
        assert_eq!(left, [3, 4], "the newest kept, in order");
        assert_eq!(c.stats().queued_bytes, 0);
    }

    #[test]
    fn the_queue_never_holds_more_than_its_bytes() {
        // Room for 1000 messages but 10 KiB: 100-byte frames, the newest 102 at most.
        let c = ClusterShared::new(1000, 10 << 10);
        let t: Topic = "t".into();
        for i in 0..5000u32 {
            let mut f = vec![0u8; 100];
            f[..4].copy_from_slice(&i.to_be_bytes());
            c.publish(&t, &Bytes::from(f));
            assert!(c.stats().queued_bytes <= 10 << 10, "over the limit after {i}");
        }
        let st = c.stats();
        assert_eq!(st.queued, (10 << 10) / 100);
        assert_eq!(st.dropped + st.queued, 5000, "every publish kept or counted");
        let first = c.next_out().map(|(_, b)| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        assert_eq!(first, Some(5000 - st.queued as u32), "the newest kept");
        // One message larger than the limit still goes (alone).
        let big = ClusterShared::new(10, 100);
        big.publish(&t, &Bytes::from(vec![1u8; 50]));
        big.publish(&t, &Bytes::from(vec![2u8; 500]));
        let st = big.stats();
        assert_eq!((st.queued, st.queued_bytes, st.dropped), (1, 500, 1));
    }
}
