//! A hasher for integer keys the engine chooses itself (slab slots, the outbox's own
//! message ids): one multiply instead of SipHash. Never for keys a peer chooses (topic
//! names, stream ids from a handshake), where SipHash's resistance to collisions matters.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Builds [`IntHasher`]s.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct BuildIntHasher;

/// Hashes an integer with one multiply (the high bits of the product are well mixed, and
/// hashbrown uses both ends).
#[derive(Default)]
pub(crate) struct IntHasher(u64);

/// A map keyed by an integer of the engine's own.
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildIntHasher>;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl BuildHasher for BuildIntHasher {
    type Hasher = IntHasher;
    fn build_hasher(&self) -> IntHasher {
        IntHasher(0)
    }
}

impl IntHasher {
    #[inline]
    fn mix(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(K);
        self.0 = h ^ (h >> 32);
    }
}

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    #[inline]
    fn write_u128(&mut self, n: u128) {
        // One half after the other: a fold (`hi ^ lo`) would make (t, 1) and (t ^ 1, 0)
        // collide, common among time-ordered ids.
        self.mix((n >> 64) as u64);
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_slots_and_time_ordered_ids_spread_over_buckets() {
        let h = |n: u128| {
            let mut s = BuildIntHasher.build_hasher();
            s.write_u128(n);
            s.finish()
        };
        // Ids a nanosecond apart, or a counter apart, land in different low bits (the
        // bucket) and different top 7 bits (hashbrown's tag) most of the time.
        let base = 1_765_000_000_000_000_000u128 << 64;
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        let mut all = std::collections::HashSet::new();
        for i in 0..1024u128 {
            low.insert(h(base + i) & 1023);
            top.insert(h(base + (i << 64)) >> 57);
            all.insert(h(base + i));
            all.insert(h(base + (i << 64)));
            // The fold's collision: (t, 1) against (t ^ 1, 0).
            assert_ne!(h(base + (i << 64) + 1), h((base + (i << 64)) ^ (1 << 64)));
        }
        assert_eq!(all.len(), 2047, "every id hashes apart (base itself twice)");
        assert!(low.len() > 550, "{} of 1024 buckets", low.len());
        assert!(top.len() > 100, "{} of 128 tags", top.len());
        let mut m: IntMap<u32, u32> = IntMap::default();
        for i in 0..10_000 {
            m.insert(i, i);
        }
        assert!((0..10_000).all(|i| m[&i] == i));
    }
}
