//! The per-worker hierarchical timer wheel: heartbeats, deadlines, close timeouts (and
//! reconnect backoff, once clients arrive) for every connection of one worker.
//!
//! Six levels of 64 slots over 1 ms ticks cover 2^36 ms (about 795 days). An entry sits
//! at the level of the highest 6-bit group in which its deadline differs from the current
//! tick, so a level-0 slot holds entries for one exact tick, and a higher slot is
//! redistributed ("cascaded") into lower levels when time reaches it. Each level keeps
//! a bitmap of occupied slots, so finding the next deadline is a few bit scans.
//!
//! `insert` returns a [`Handle`] (level, slot, index) with which `remove` takes an entry
//! out in O(1) by swapping the slot's last entry into its place; the entry that moved,
//! and every entry that a cascade re-files, is reported with its new handle so the owner
//! can keep its handle current. The worker keeps exactly one entry per connection this
//! way, however its deadlines move.

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const MAX_SPAN: u64 = (1 << (6 * LEVELS)) - 1;

/// A removed entry `(tick, value)`, and the entry that moved into its place.
pub(crate) type Removed<T> = ((u64, T), Option<(T, Handle)>);

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle {
    level: u8,
    slot: u8,
    index: u32,
}

struct Level<T> {
    occupied: u64,
    slots: Vec<Vec<(u64, T)>>,
}

impl<T> Level<T> {
    fn new() -> Self {
        Self { occupied: 0, slots: (0..SLOTS).map(|_| Vec::new()).collect() }
    }
}

/// A timer wheel of values `T` keyed by deadline tick.
pub(crate) struct Wheel<T> {
    elapsed: u64,
    levels: Vec<Level<T>>,
    len: usize,
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / 6).min(LEVELS - 1)
}

impl<T: Copy> Wheel<T> {
    pub(crate) fn new() -> Self {
        Self { elapsed: 0, levels: (0..LEVELS).map(|_| Level::new()).collect(), len: 0 }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Schedules `value` at tick `when` (a past tick fires at the next poll; a tick more
    /// than 2^36 ms ahead may fire early, at the end of the wheel's range).
    pub(crate) fn insert(&mut self, when: u64, value: T) -> Handle {
        // Past deadlines fire at the next poll. Deadlines beyond the top level's current
        // range are parked at its end; the caller re-checks and re-inserts on firing.
        let when = when.clamp(self.elapsed, self.elapsed | MAX_SPAN);
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (6 * level)) as usize) & (SLOTS - 1);
        let l = &mut self.levels[level];
        l.slots[slot].push((when, value));
        l.occupied |= 1 << slot;
        self.len += 1;
        Handle { level: level as u8, slot: slot as u8, index: (l.slots[slot].len() - 1) as u32 }
    }

    /// The tick the entry at `h` is filed for.
    pub(crate) fn when(&self, h: Handle) -> Option<u64> {
        let l = self.levels.get(usize::from(h.level))?;
        l.slots.get(usize::from(h.slot))?.get(h.index as usize).map(|(w, _)| *w)
    }

    /// Removes the entry at `h` and returns it; if another entry moved into its place,
    /// that entry and its new handle come back too.
    pub(crate) fn remove(&mut self, h: Handle) -> Option<Removed<T>> {
        let l = self.levels.get_mut(usize::from(h.level))?;
        let v = l.slots.get_mut(usize::from(h.slot))?;
        let i = h.index as usize;
        if i >= v.len() {
            return None;
        }
        let removed = v.swap_remove(i);
        self.len -= 1;
        let moved = v.get(i).map(|(_, t)| (*t, h));
        if v.is_empty() {
            l.occupied &= !(1 << h.slot);
        }
        Some((removed, moved))
    }

    /// The earliest (level, slot, slot start tick) holding entries.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let mut best: Option<(usize, usize, u64)> = None;
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let shift = 6 * level;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            // Entries at this level lie at or after the current slot (see `level_for`).
            let ahead = l.occupied >> now_slot;
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

    /// Advances to tick `now`, appending every value due by then to `out` (with its
    /// tick) and every value re-filed by a cascade to `moved` (with its new handle).
    pub(crate) fn poll(&mut self, now: u64, out: &mut Vec<(u64, T)>, moved: &mut Vec<(T, Handle)>) {
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            let l = &mut self.levels[level];
            l.occupied &= !(1 << slot);
            let entries = std::mem::take(&mut l.slots[slot]);
            self.len -= entries.len();
            for (when, value) in entries {
                if when <= now {
                    out.push((when, value));
                } else {
                    let h = self.insert(when, value);
                    moved.push((value, h));
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_until(w: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        w.poll(now, &mut out, &mut Vec::new());
        let mut out: Vec<u64> = out.into_iter().map(|(_, v)| v).collect();
        out.sort();
        out
    }

    #[test]
    fn fires_exactly_when_due_across_levels() {
        let mut w = Wheel::new();
        let deadlines = [0u64, 1, 5, 63, 64, 65, 100, 4095, 4096, 4097, 300_000, 20_000_000];
        for d in deadlines {
            w.insert(d, d);
        }
        assert_eq!(w.len(), deadlines.len());
        // Step through time and check each fires at its tick, not before.
        let mut fired = Vec::new();
        let mut t = 0;
        while w.len() > 0 {
            let next = w.next_deadline().unwrap();
            assert!(next >= t);
            t = next;
            let got = drain_until(&mut w, t);
            for g in &got {
                assert!(*g <= t, "{g} fired at {t}");
            }
            fired.extend(got);
        }
        fired.sort();
        assert_eq!(fired, deadlines);
    }

    #[test]
    fn jump_far_ahead_fires_everything_due() {
        let mut w = Wheel::new();
        for d in (0..10_000u64).step_by(7) {
            w.insert(d, d);
        }
        let got = drain_until(&mut w, 5_000);
        assert_eq!(got, (0..=5_000u64).step_by(7).collect::<Vec<_>>());
        let got = drain_until(&mut w, 20_000);
        assert_eq!(got, (5_005..10_000u64).step_by(7).collect::<Vec<_>>());
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
    }

    /// Handles stay exact through removals and cascades: every removal takes out the
    /// entry its owner expects, and what remains fires at its tick.
    #[test]
    fn handles_follow_moves_and_cascades() {
        use std::collections::HashMap;
        let mut w = Wheel::new();
        let mut handles: HashMap<u64, Handle> = HashMap::new();
        let mut due: HashMap<u64, u64> = HashMap::new();
        let mut x: u64 = 42;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for id in 0..3000u64 {
            let when = rnd() % 100_000;
            handles.insert(id, w.insert(when, id));
            due.insert(id, when);
        }
        let mut now = 0;
        while now < 120_000 {
            // Remove a few entries by handle.
            for _ in 0..5 {
                let id = rnd() % 3000;
                if let Some(h) = handles.remove(&id) {
                    let ((when, v), moved) = w.remove(h).expect("handle valid");
                    assert_eq!((v, when), (id, due[&id]));
                    if let Some((m, mh)) = moved {
                        handles.insert(m, mh);
                    }
                    due.remove(&id);
                }
            }
            let (mut out, mut moved) = (Vec::new(), Vec::new());
            w.poll(now, &mut out, &mut moved);
            for (m, mh) in moved {
                handles.insert(m, mh);
            }
            for (when, id) in out {
                assert_eq!(due.remove(&id), Some(when));
                assert!(when <= now);
                handles.remove(&id);
            }
            now += 500;
        }
        assert!(due.is_empty() && w.len() == 0);
    }

    #[test]
    fn far_future_deadline_is_parked_not_lost() {
        let mut w = Wheel::new();
        w.poll((1 << 36) - 10, &mut Vec::new(), &mut Vec::new());
        w.insert(u64::MAX, 7);
        assert_eq!(drain_until(&mut w, (1 << 36) - 1), [7], "parked at the end of the range");
    }

    #[test]
    fn insert_after_advancing() {
        let mut w = Wheel::new();
        w.poll(1_000_000, &mut Vec::new(), &mut Vec::new());
        w.insert(1_000_050, 1);
        w.insert(999_999, 2); // in the past: due immediately
        assert_eq!(w.next_deadline(), Some(1_000_000));
        assert_eq!(drain_until(&mut w, 1_000_000), [2]);
        assert_eq!(drain_until(&mut w, 1_000_049), Vec::<u64>::new());
        assert_eq!(drain_until(&mut w, 1_000_050), [1]);
    }

    #[test]
    fn random_schedule_matches_sorted_order() {
        let mut w = Wheel::new();
        let mut x: u64 = 0x1234_5678;
        let mut all = Vec::new();
        for i in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = x % 200_000;
            all.push((d, i));
            w.insert(d, i);
        }
        let mut t = 0;
        let mut out = Vec::new();
        while t <= 200_000 {
            for i in drain_until(&mut w, t) {
                let (d, _) = all[i as usize];
                assert!(d <= t && (t < 1000 || d + 1000 > t), "entry {i} due {d} fired at {t}");
                out.push(i);
            }
            t += 1000;
        }
        assert_eq!(out.len(), all.len());
    }
}
