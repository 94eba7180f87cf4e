//! Rings spread for direct descriptors: when the fixed-file table of the ring that
//! accepts fills up, the driver opens a further ring (with its own table and buffer
//! ring) and accepts there. A connection's `Socket::Fixed` value carries its ring's
//! number above the slot. The worker sleeps in the first ring only; each further ring
//! has an eventfd registered, which the kernel signals when the ring has completion
//! work, and the first ring keeps a read of it armed (`TAG_RING`).

/// Bits of a `Socket::Fixed` value that hold the slot in its ring's table; the bits
/// above hold the ring's number.
const RING_SHIFT: u32 = 24;
/// Most rings per worker (the ring number must fit above `RING_SHIFT`).
pub(crate) const MAX_RINGS: usize = 64;

/// Receive buffers a further ring starts with in circulation (it adds more as receives
/// find none free; see `BufRing::grow`).
pub(super) const FURTHER_RING_BUFFERS: u16 = 4;

/// The `Socket::Fixed` value of slot `slot` of ring `ring`'s table.
#[inline]
pub(super) fn fixed(ring: usize, slot: u32) -> u32 {
    ((ring as u32) << RING_SHIFT) | slot
}

/// The ring and the slot of a `Socket::Fixed` value.
#[inline]
pub(super) fn split_fixed(v: u32) -> (usize, u32) {
    ((v >> RING_SHIFT) as usize, v & ((1 << RING_SHIFT) - 1))
}
