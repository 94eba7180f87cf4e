//! 128-bit time-ordered message ids and a generator for them.
//!
//! Layout (big-endian, the same as UUIDv7 in RFC 9562 §5.7):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       unix_ts_ms (48 bits)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          unix_ts_ms           |  ver  |   rand_a (12 bits)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |var|                 rand_b (62 bits)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            rand_b                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `ver` is 7 and `var` is `0b10`, so an id is a valid UUIDv7. The 74 bits of
//! `rand_a ++ rand_b` are random, except that [`IdGenerator`] bumps them when
//! the clock does not advance (RFC 9562 §6.2, method 3, "monotonic random"),
//! so ids from one generator strictly increase. Ordering ids as `u128`, as
//! big-endian bytes or as their text form gives the same order.
//!
//! The codec has no clock and no RNG: the caller passes both in.

use std::fmt;
use std::str::FromStr;

/// A 128-bit, time-ordered message id (a UUIDv7).
///
/// Compare, hash and sort it as a `u128`. On the wire it is 16 big-endian
/// bytes in the binary formats and 26 Crockford base32 characters in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId(pub u128);

/// Bits of `rand_a ++ rand_b`.
const RAND_BITS: u32 = 74;
const RAND_B_BITS: u32 = 62;
const RAND_B_MASK: u128 = (1 << RAND_B_BITS) - 1;
const RAND_A_MASK: u128 = (1 << 12) - 1;
const TS_MASK: u64 = (1 << 48) - 1;
const VERSION_BITS: u128 = 0x7 << 76;
const VARIANT_BITS: u128 = 0b10 << 62;

impl MessageId {
    /// The nil id (all zero bits).
    pub const NIL: MessageId = MessageId(0);

    /// Builds an id from its parts. `unix_ms` is cut to 48 bits (that lasts
    /// until the year 10889), `random` to 74 bits.
    pub const fn from_parts(unix_ms: u64, random: u128) -> MessageId {
        let seq = random & ((1 << RAND_BITS) - 1);
        MessageId::from_packed((((unix_ms & TS_MASK) as u128) << RAND_BITS) | seq)
    }

    /// Places a 122-bit `ts ++ rand` number into the UUIDv7 layout.
    const fn from_packed(packed: u128) -> MessageId {
        let ts = packed >> RAND_BITS;
        let rand_a = (packed >> RAND_B_BITS) & RAND_A_MASK;
        let rand_b = packed & RAND_B_MASK;
        MessageId((ts << 80) | VERSION_BITS | (rand_a << 64) | VARIANT_BITS | rand_b)
    }

    /// The inverse of [`MessageId::from_packed`]: drops version and variant.
    const fn packed(self) -> u128 {
        let ts = self.0 >> 80;
        let rand_a = (self.0 >> 64) & RAND_A_MASK;
        let rand_b = self.0 & RAND_B_MASK;
        (ts << RAND_BITS) | (rand_a << RAND_B_BITS) | rand_b
    }

    /// The creation time in unix milliseconds (the top 48 bits).
    pub const fn unix_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// The 16 big-endian bytes of the id, as they go on the wire.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id from its 16 big-endian bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> MessageId {
        MessageId(u128::from_be_bytes(bytes))
    }

    /// The id from a slice that must be exactly 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<MessageId> {
        <[u8; 16]>::try_from(bytes).ok().map(MessageId::from_bytes)
    }

    /// Writes the 26-character text form into `out` and returns it as `&str`.
    pub fn encode_text(self, out: &mut [u8; TEXT_LEN]) -> &str {
        // 128 bits in 26 digits of 5 bits: the first digit holds 3 bits.
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (TEXT_LEN - 1 - i);
            let digit = (self.0 >> shift) & 0x1f;
            *slot = CROCKFORD[digit as usize];
        }
        // Every byte comes from CROCKFORD, which is ASCII.
        std::str::from_utf8(out).unwrap_or_default()
    }
}

/// Length of the text form of a [`MessageId`].
pub const TEXT_LEN: usize = 26;

/// Crockford's base32 alphabet: no I, L, O, U. Digits are in ASCII order, so
/// text order equals numeric order.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn crockford_value(c: u8) -> Option<u8> {
    let v = match c.to_ascii_uppercase() {
        c @ b'0'..=b'9' => c - b'0',
        b'O' => 0,
        b'I' | b'L' => 1,
        c @ b'A'..=b'H' => c - b'A' + 10,
        b'J' => 18,
        b'K' => 19,
        b'M' => 20,
        b'N' => 21,
        c @ b'P'..=b'T' => c - b'P' + 22,
        c @ b'V'..=b'Z' => c - b'V' + 27,
        _ => return None,
    };
    Some(v)
}

/// The text could not be read as a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id text: {0}")]
pub struct ParseIdError(&'static str);

impl FromStr for MessageId {
    type Err = ParseIdError;

    /// Reads the 26-character Crockford base32 form (case-insensitive; `O`
    /// reads as 0 and `I`/`L` as 1, as Crockford specifies).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != TEXT_LEN {
            return Err(ParseIdError("expected 26 characters"));
        }
        let mut v: u128 = 0;
        for (i, &c) in bytes.iter().enumerate() {
            let d = crockford_value(c).ok_or(ParseIdError("not a Crockford base32 digit"))?;
            if i == 0 && d > 7 {
                return Err(ParseIdError("value exceeds 128 bits"));
            }
            v = (v << 5) | u128::from(d);
        }
        Ok(MessageId(v))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; TEXT_LEN];
        f.write_str(self.encode_text(&mut buf))
    }
}

/// Makes strictly increasing [`MessageId`]s from a clock reading and random
/// bits that the caller supplies.
///
/// One generator per process (or per worker, if workers also get disjoint
/// random bits) is enough for a durable outbox to key on the id: within one
/// generator ids strictly increase even when the millisecond repeats or the
/// clock steps back, in which case the id keeps the last timestamp it used.
///
/// ```
/// use ringwire_codec::IdGenerator;
/// let mut gen = IdGenerator::new();
/// let a = gen.next_id(1_700_000_000_000, 0xdead_beef);
/// let b = gen.next_id(1_700_000_000_000, 0x1); // same ms, smaller random
/// assert!(b > a);
/// assert_eq!(b.unix_ms(), 1_700_000_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct IdGenerator {
    /// The last id handed out, in packed `ts ++ rand` form.
    last: u128,
}

impl IdGenerator {
    /// A generator that has handed out no id yet.
    pub const fn new() -> Self {
        IdGenerator { last: 0 }
    }

    /// The next id. `now_unix_ms` is the caller's wall clock; `random` should
    /// be fresh random bits (74 are used).
    ///
    /// If the id that `now_unix_ms` and `random` make would not exceed the
    /// last one, the last one is increased instead, by a step of 1 plus 31 of
    /// the random bits, so that ids stay hard to guess. Overflow of the 74
    /// random bits carries into the timestamp, which stays within a few ms of
    /// the clock unless more than 2^43 ids are made in one millisecond.
    pub fn next_id(&mut self, now_unix_ms: u64, random: u128) -> MessageId {
        let fresh = MessageId::from_parts(now_unix_ms, random).packed();
        let next = if fresh > self.last {
            fresh
        } else {
            let step = 1 + (random & 0x7fff_ffff);
            // The packed form has 122 bits; wrapping would need 2^122 ids.
            self.last.wrapping_add(step) & ((1 << 122) - 1)
        };
        self.last = next;
        MessageId::from_packed(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_uuid_v7() {
        let id = MessageId::from_parts(0x0123_4567_89ab, u128::MAX);
        let b = id.to_bytes();
        assert_eq!(&b[..6], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
        assert_eq!(b[6] >> 4, 7, "version nibble");
        assert_eq!(b[8] >> 6, 0b10, "variant bits");
        assert_eq!(id.unix_ms(), 0x0123_4567_89ab);
    }

    #[test]
    fn packed_round_trip() {
        for r in [0u128, 1, 12345, (1 << 74) - 1] {
            let id = MessageId::from_parts(42, r);
            assert_eq!(id.packed(), (42u128 << 74) | r);
            assert_eq!(MessageId::from_packed(id.packed()), id);
        }
    }

    #[test]
    fn monotonic_when_ms_repeats_or_goes_back() {
        let mut g = IdGenerator::new();
        let mut prev = g.next_id(1000, u128::MAX);
        for (ms, r) in [(1000, 0), (1000, 5), (999, u128::MAX), (1000, 1), (1001, 0)] {
            let id = g.next_id(ms, r);
            assert!(id > prev, "{id:?} <= {prev:?}");
            assert!(id.unix_ms() >= prev.unix_ms());
            prev = id;
        }
        assert_eq!(prev.unix_ms(), 1001);
    }

    #[test]
    fn overflow_carries_into_timestamp() {
        let mut g = IdGenerator::new();
        let a = g.next_id(7, (1 << 74) - 1);
        let b = g.next_id(7, 0);
        assert!(b > a);
        assert_eq!(b.unix_ms(), 8);
    }

    #[test]
    fn text_form_round_trips_and_sorts() {
        let ids = [
            MessageId(0),
            MessageId(1),
            MessageId::from_parts(1_732_000_000_000, 99),
            MessageId(u128::MAX),
        ];
        let mut prev = String::new();
        for id in ids {
            let s = id.to_string();
            assert_eq!(s.len(), TEXT_LEN);
            assert_eq!(s.parse::<MessageId>(), Ok(id));
            assert_eq!(s.to_ascii_lowercase().parse::<MessageId>(), Ok(id));
            assert!(s > prev);
            prev = s;
        }
        assert_eq!(MessageId(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    }

    #[test]
    fn text_form_rejects_bad_input() {
        assert!("".parse::<MessageId>().is_err());
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<MessageId>().is_err());
        assert!("0000000000000000000000000U".parse::<MessageId>().is_err());
        assert!("000000000000000000000000é".parse::<MessageId>().is_err());
    }
}
