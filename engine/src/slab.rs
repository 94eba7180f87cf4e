//! A generational slab: stable `u32` slots, reused after removal, with a generation
//! counter so that a stale key (for a connection that closed and whose slot was reused)
//! never reaches the new occupant.

/// A slot and the generation it was allocated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// Generations wrap at 24 bits so that a key packs into an io_uring `user_data` with an
/// 8-bit operation tag and a 32-bit slot.
pub(crate) const GEN_MASK: u32 = (1 << 24) - 1;

impl Key {
    /// Packs into 56 bits: `gen << 32 | slot`.
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.gen & GEN_MASK) << 32) | u64::from(self.slot)
    }

    pub(crate) fn unpack(v: u64) -> Self {
        Self { slot: v as u32, gen: ((v >> 32) as u32) & GEN_MASK }
    }
}

enum Entry<T> {
    Occupied(T),
    Vacant { next_free: u32 },
}

/// Values by [`Key`]. Insert, remove and lookup are O(1).
///
/// Generations live in their own array rather than beside each value: a value with a
/// niche (such as a connection record) then makes `Entry<T>` no bigger than `T`, and
/// each slot costs `size_of::<T>() + 4` bytes instead of rounding `T + 4` up to `T`'s
/// alignment.
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    gens: Vec<u32>,
    free_head: u32,
    len: usize,
}

const NONE: u32 = u32::MAX;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), gens: Vec::new(), free_head: NONE, len: 0 }
    }
}

impl<T> Slab<T> {
    /// A slab with room for `n` values before it grows.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n), gens: Vec::with_capacity(n), ..Self::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if self.free_head != NONE {
            let slot = self.free_head;
            let e = &mut self.entries[slot as usize];
            let Entry::Vacant { next_free } = *e else {
                unreachable!("free list points at an occupied slot")
            };
            let gen = &mut self.gens[slot as usize];
            *gen = gen.wrapping_add(1) & GEN_MASK;
            self.free_head = next_free;
            *e = Entry::Occupied(value);
            Key { slot, gen: *gen }
        } else {
            let slot = self.entries.len() as u32;
            self.entries.push(Entry::Occupied(value));
            self.gens.push(0);
            Key { slot, gen: 0 }
        }
    }

    fn current(&self, key: Key) -> bool {
        self.gens.get(key.slot as usize) == Some(&key.gen)
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        if !self.current(key) {
            return None;
        }
        match self.entries.get(key.slot as usize)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        if !self.current(key) {
            return None;
        }
        match self.entries.get_mut(key.slot as usize)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        }
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        if !self.current(key) {
            return None;
        }
        let e = self.entries.get_mut(key.slot as usize)?;
        if matches!(e, Entry::Vacant { .. }) {
            return None;
        }
        let old = std::mem::replace(e, Entry::Vacant { next_free: self.free_head });
        self.free_head = key.slot;
        self.len -= 1;
        match old {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        }
    }

    /// The key of the value in `slot`, if one is there.
    pub(crate) fn key_at(&self, slot: u32) -> Option<Key> {
        match self.entries.get(slot as usize)? {
            Entry::Occupied(_) => Some(Key { slot, gen: self.gens[slot as usize] }),
            Entry::Vacant { .. } => None,
        }
    }

    /// Every value, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant { .. } => None,
        })
    }

    /// Keys of every occupied entry.
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.entries
            .iter()
            .zip(&self.gens)
            .enumerate()
            .filter_map(|(i, (e, gen))| match e {
                Entry::Occupied(_) => Some(Key { slot: i as u32, gen: *gen }),
                Entry::Vacant { .. } => None,
            })
            .collect()
    }

    /// Bytes one slot takes (the value's record and its generation).
    #[cfg(test)]
    pub(crate) fn slot_bytes() -> usize {
        std::mem::size_of::<Entry<T>>() + std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss_after_reuse() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.slot, b.slot);
        assert_ne!(a.gen, b.gen);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.len(), 1);
        assert_eq!(Key::unpack(b.pack()), b);
    }

    #[test]
    fn many_inserts_and_removes() {
        let mut s = Slab::default();
        let keys: Vec<Key> = (0..1000).map(|i| s.insert(i)).collect();
        for k in keys.iter().step_by(2) {
            s.remove(*k);
        }
        assert_eq!(s.len(), 500);
        assert_eq!(s.keys().len(), 500);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(s.get(*k).is_some(), i % 2 == 1);
        }
    }
}
