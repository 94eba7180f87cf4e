//! The per-worker hierarchical timer wheel: heartbeats, deadlines, close timeouts (and
//! reconnect backoff, once clients arrive) for every connection of one worker.
//!
//! Six levels of 64 slots over 1 ms ticks cover 2^36 ms (about 795 days). An entry sits
//! at the level of the highest 6-bit group in which its deadline differs from the current
//! tick, so a level-0 slot holds entries for one exact tick, and a higher slot is
//! redistributed ("cascaded") into lower levels when time reaches it. Each level keeps
//! a bitmap of occupied slots, so finding the next deadline is a few bit scans.
//!
//! Entries are keyed by a small integer id (the connection's slab slot) and live in one
//! array indexed by it: a node of 16 bytes (deadline, next, prev) per id, linked into its
//! slot's circular list behind a sentinel node. Filing, moving and removing an entry is
//! O(1) and never allocates; a cascade relinks nodes instead of copying them. The array
//! grows with the highest id seen (as the slab does), so a connection's timer costs 16
//! bytes whether or not it is armed, and heartbeats cause no allocator traffic.
//!
//! The earliest occupied slot is remembered until a slot fills or empties: a worker
//! polls the wheel and asks for its next deadline every turn of its loop, and in most
//! turns nothing is due and no slot changed, so both answer without scanning the levels.

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const MAX_SPAN: u64 = (1 << (6 * LEVELS)) - 1;
/// Sentinel nodes, one per slot, come first in the node array.
const HEADS: usize = LEVELS * SLOTS;
/// `next` of a node that is not filed.
const UNFILED: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    when: u64,
    next: u32,
    prev: u32,
}

const FREE: Node = Node { when: 0, next: UNFILED, prev: UNFILED };

/// The earliest occupied (level, slot, slot start tick), if any.
type NextSlot = Option<(usize, usize, u64)>;

/// A timer wheel of ids keyed by deadline tick.
pub(crate) struct Wheel {
    elapsed: u64,
    occupied: [u64; LEVELS],
    nodes: Vec<Node>,
    len: usize,
    /// `scan()`'s answer as of the last change of `occupied` (`None`: not known). Moving
    /// `elapsed` forward without reaching that slot's start leaves the answer as it is:
    /// every occupied slot then lies ahead of both the old and the new `elapsed`, in the
    /// same 64-slot range of its level (an entry is filed in the range of `elapsed` at
    /// its level, and the range ends after its slot), so no start it gives changes.
    next: std::cell::Cell<Option<NextSlot>>,
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / 6).min(LEVELS - 1)
}

/// The node index of an id.
fn node_of(id: u32) -> usize {
    HEADS + id as usize
}

impl Wheel {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A wheel with room for ids below `n` before its node array grows.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut nodes = Vec::with_capacity(HEADS + n);
        nodes.extend((0..HEADS as u32).map(|i| Node { when: 0, next: i, prev: i }));
        Self { elapsed: 0, occupied: [0; LEVELS], nodes, len: 0, next: std::cell::Cell::new(None) }
    }

    /// Entries filed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The tick `id` is filed for, if it is.
    pub(crate) fn when(&self, id: u32) -> Option<u64> {
        let n = self.nodes.get(node_of(id))?;
        (n.next != UNFILED).then_some(n.when)
    }

    /// Files `id` at tick `when`, in place of any entry it had (a past tick fires at the
    /// next poll; a tick more than 2^36 ms ahead may fire early, at the end of the
    /// wheel's range, and the owner re-checks and re-files it then).
    pub(crate) fn insert(&mut self, id: u32, when: u64) {
        let i = node_of(id);
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, FREE);
        }
        self.remove(id);
        self.link(i, when);
    }

    /// Links the unfiled node `i` into the slot for `when`.
    fn link(&mut self, i: usize, when: u64) {
        let when = when.clamp(self.elapsed, self.elapsed | MAX_SPAN);
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (6 * level)) as usize) & (SLOTS - 1);
        let head = level * SLOTS + slot;
        let first = self.nodes[head].next;
        self.nodes[i] = Node { when, next: first, prev: head as u32 };
        self.nodes[first as usize].prev = i as u32;
        self.nodes[head].next = i as u32;
        if self.occupied[level] & (1 << slot) == 0 {
            self.occupied[level] |= 1 << slot;
            self.next.set(None);
        }
        self.len += 1;
    }

    /// Takes `id`'s entry off the wheel; whether it had one.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        let i = node_of(id);
        let Some(&Node { next, prev, .. }) = self.nodes.get(i) else { return false };
        if next == UNFILED {
            return false;
        }
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
        self.nodes[i] = FREE;
        self.len -= 1;
        // Unlinking the last entry of a slot leaves its sentinel pointing at itself.
        if prev == next && (prev as usize) < HEADS {
            let head = prev as usize;
            self.occupied[head / SLOTS] &= !(1 << (head % SLOTS));
            self.next.set(None);
        }
        true
    }

    /// The earliest (level, slot, slot start tick) holding entries.
    fn next_slot(&self) -> NextSlot {
        if let Some(known) = self.next.get() {
            return known;
        }
        let found = self.scan();
        self.next.set(Some(found));
        found
    }

    /// `next_slot` found by looking at every level.
    fn scan(&self) -> NextSlot {
        let mut best: Option<(usize, usize, u64)> = None;
        for (level, &occupied) in self.occupied.iter().enumerate() {
            if occupied == 0 {
                continue;
            }
            let shift = 6 * level;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            // Entries at this level lie at or after the current slot (see `level_for`).
            let ahead = occupied >> now_slot;
            if ahead == 0 {
                continue;
            }
            let slot = now_slot + ahead.trailing_zeros() as usize;
            let range_start = self.elapsed & !((1u64 << (shift + 6)) - 1);
            let start = (range_start + ((slot as u64) << shift)).max(self.elapsed);
            if best.is_none_or(|b| start < b.2) {
                best = Some((level, slot, start));
            }
        }
        best
    }

    /// The earliest tick with work: the next deadline, or a slot to cascade.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Advances to tick `now`, appending the id of every entry due by then to `out`
    /// (those entries are off the wheel) and re-filing the rest of each slot it passes.
    pub(crate) fn poll(&mut self, now: u64, out: &mut Vec<u32>) {
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            self.occupied[level] &= !(1 << slot);
            self.next.set(None);
            // Detach the slot's whole list, then walk it: each node's `next` is read
            // before the node is relinked elsewhere.
            let head = level * SLOTS + slot;
            let mut cur = self.nodes[head].next as usize;
            self.nodes[head].next = head as u32;
            self.nodes[head].prev = head as u32;
            while cur != head {
                let Node { when, next, .. } = self.nodes[cur];
                self.nodes[cur] = FREE;
                self.len -= 1;
                if when <= now {
                    out.push((cur - HEADS) as u32);
                } else {
                    self.link(cur, when);
                }
                cur = next as usize;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls up to `now`; the ids that fired, sorted.
    fn drain_until(w: &mut Wheel, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.poll(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn node_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn fires_exactly_when_due_across_levels() {
        let mut w = Wheel::new();
        let deadlines = [0u64, 1, 5, 63, 64, 65, 100, 4095, 4096, 4097, 300_000, 20_000_000];
        for (id, d) in deadlines.iter().enumerate() {
            w.insert(id as u32, *d);
        }
        assert_eq!(w.len(), deadlines.len());
        // Step through time and check each fires at its tick, not before.
        let mut fired = Vec::new();
        let mut t = 0;
        while w.len() > 0 {
            let next = w.next_deadline().unwrap();
            assert!(next >= t);
            t = next;
            for id in drain_until(&mut w, t) {
                let d = deadlines[id as usize];
                assert!(d <= t, "{d} fired at {t}");
                assert!(d == t, "{d} fired late, at {t}");
                fired.push(d);
            }
        }
        fired.sort();
        assert_eq!(fired, deadlines);
    }

    #[test]
    fn jump_far_ahead_fires_everything_due() {
        let mut w = Wheel::new();
        for d in (0..10_000u32).step_by(7) {
            w.insert(d, u64::from(d));
        }
        let got = drain_until(&mut w, 5_000);
        assert_eq!(got, (0..=5_000u32).step_by(7).collect::<Vec<_>>());
        let got = drain_until(&mut w, 20_000);
        assert_eq!(got, (5_005..10_000u32).step_by(7).collect::<Vec<_>>());
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
    }

    /// Removals and re-filings stay exact through cascades: what remains fires at its
    /// tick, once, and the occupied bitmaps never point at an empty slot for long.
    #[test]
    fn removals_and_refiling_through_cascades() {
        use std::collections::HashMap;
        let mut w = Wheel::new();
        let mut due: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 42;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for id in 0..3000u32 {
            let when = rnd() % 100_000;
            w.insert(id, when);
            due.insert(id, when);
        }
        let mut now = 0;
        while now < 200_000 {
            for _ in 0..5 {
                let id = (rnd() % 3000) as u32;
                assert_eq!(w.when(id), due.get(&id).copied());
                assert_eq!(w.remove(id), due.remove(&id).is_some());
            }
            // Move a few (later or earlier), as a heartbeat does.
            for _ in 0..5 {
                let id = (rnd() % 3000) as u32;
                if due.contains_key(&id) {
                    let when = now + rnd() % 50_000;
                    w.insert(id, when);
                    due.insert(id, when);
                }
            }
            let mut out = Vec::new();
            w.poll(now, &mut out);
            for id in out {
                let when = due.remove(&id).expect("fired once");
                assert!(when <= now);
                assert_eq!(w.when(id), None);
            }
            assert_eq!(w.len(), due.len());
            now += 500;
        }
        assert!(due.is_empty() && w.len() == 0);
        assert_eq!(w.next_deadline(), None, "bitmaps cleared with the last entry");
    }

    /// The remembered earliest slot is always what a scan of the levels finds, through
    /// inserts, moves, removals and polls that reach a slot or stop short of one, at
    /// every level (deadlines from 1 ms to hours ahead).
    #[test]
    #[cfg_attr(miri, ignore = "20,000 random steps take minutes under Miri (safe code)")]
    fn remembered_next_slot_matches_a_scan() {
        let mut w = Wheel::new();
        let mut x: u64 = 7;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut now = 0u64;
        let mut fired = Vec::new();
        for step in 0..20_000u32 {
            let r = rnd();
            let id = (r % 200) as u32;
            match r % 7 {
                0 | 1 => w.insert(id, now + (rnd() % (1 << (rnd() % 26)))),
                2 => {
                    w.remove(id);
                }
                3 => w.insert(id, now.saturating_sub(rnd() % 50)),
                _ => {
                    // Poll short of the next deadline, exactly at it, or past it.
                    let target = match (w.next_deadline(), r % 3) {
                        (Some(d), 0) => d.saturating_sub(1).max(now),
                        (Some(d), 1) => d,
                        _ => now + rnd() % (1 << (rnd() % 20)),
                    };
                    now = target.max(now);
                    fired.clear();
                    w.poll(now, &mut fired);
                    for &id in &fired {
                        assert_eq!(w.when(id), None, "step {step}");
                    }
                    assert!(w.next_deadline().is_none_or(|d| d > now), "step {step}: due left");
                }
            }
            assert_eq!(w.next_slot(), w.scan(), "step {step}, now {now}");
        }
        assert!(w.len() > 0, "the sequence kept some entries filed");
    }

    #[test]
    fn far_future_deadline_is_parked_not_lost() {
        let mut w = Wheel::new();
        w.poll((1 << 36) - 10, &mut Vec::new());
        w.insert(7, u64::MAX);
        assert_eq!(drain_until(&mut w, (1 << 36) - 1), [7], "parked at the end of the range");
    }

    #[test]
    fn insert_after_advancing() {
        let mut w = Wheel::new();
        w.poll(1_000_000, &mut Vec::new());
        w.insert(1, 1_000_050);
        w.insert(2, 999_999); // in the past: due immediately
        assert_eq!(w.next_deadline(), Some(1_000_000));
        assert_eq!(drain_until(&mut w, 1_000_000), [2]);
        assert_eq!(drain_until(&mut w, 1_000_049), Vec::<u32>::new());
        assert_eq!(drain_until(&mut w, 1_000_050), [1]);
    }

    #[test]
    fn reinserting_replaces_the_entry() {
        let mut w = Wheel::new();
        w.insert(3, 10_000);
        w.insert(3, 20);
        assert_eq!(w.len(), 1);
        assert_eq!(w.when(3), Some(20));
        assert_eq!(drain_until(&mut w, 20), [3]);
        assert_eq!(drain_until(&mut w, 20_000), Vec::<u32>::new());
        assert!(!w.remove(3));
        assert!(!w.remove(1_000), "an id never seen");
    }

    #[test]
    fn random_schedule_matches_sorted_order() {
        let mut w = Wheel::new();
        let mut x: u64 = 0x1234_5678;
        let mut all = Vec::new();
        for i in 0..5_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = x % 200_000;
            all.push(d);
            w.insert(i, d);
        }
        let mut t = 0;
        let mut out = Vec::new();
        while t <= 200_000 {
            for i in drain_until(&mut w, t) {
                let d = all[i as usize];
                assert!(d <= t && (t < 1000 || d + 1000 > t), "entry {i} due {d} fired at {t}");
                out.push(i);
            }
            t += 1000;
        }
        assert_eq!(out.len(), all.len());
    }
}
