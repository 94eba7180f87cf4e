//! Garbage from the peer gives an error, never a panic, and the error says
//! which format, where, and close code 1007.

// Each format's tests sit behind its feature; with some features off,
// helpers shared by the others go unused.
#![cfg_attr(
    not(all(feature = "json", feature = "cbor", feature = "protobuf")),
    allow(unused_imports, dead_code)
)]

mod common;

use common::*;
use proptest::prelude::*;
use ringwire_codec::{Codec, DecodeError, DecodeErrorKind, Envelope, Format, Position};

/// A small deterministic PRNG (xorshift64*), so the fuzz-like loops need no
/// extra dependency and fail reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Feeds `input` to the codec for both test types; any outcome but a panic
/// is fine, and every error must carry the codec's format and code 1007.
fn must_not_panic<C>(codec: &C, input: &[u8])
where
    C: Codec<Reading> + Codec<Envelope<Reading>>,
{
    let format = Codec::<Reading>::format(codec);
    let check = |e: DecodeError| {
        assert_eq!(e.format, format);
        assert_eq!(e.close_code().0, 1007);
        assert!(!e.to_string().is_empty());
    };
    if let Err(e) = Codec::<Reading>::decode(codec, input) {
        check(e);
    }
    if let Err(e) = Codec::<Envelope<Reading>>::decode(codec, input) {
        check(e);
    }
}

/// Random bytes, random mutations of a valid message, and every prefix of
/// a valid message, for one codec.
fn fuzz_codec<C>(codec: &C, seed: u64)
where
    C: Codec<Reading> + Codec<Envelope<Reading>>,
{
    let mut rng = Rng(seed);
    for _ in 0..3000 {
        must_not_panic(codec, &rng.bytes(64));
    }
    let mut valid = Vec::new();
    codec.encode(&sample_envelope(), &mut valid).expect("encode");
    for cut in 0..valid.len() {
        must_not_panic(codec, &valid[..cut]);
    }
    for _ in 0..3000 {
        let mut m = valid.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
        }
        must_not_panic(codec, &m);
    }
}

fn expect_err<T, C: Codec<T>>(codec: &C, input: &[u8]) -> DecodeError {
    match codec.decode(input) {
        Ok(_) => panic!("decoded garbage: {input:?}"),
        Err(e) => {
            assert_eq!(e.close_code().0, 1007);
            e
        }
    }
}

#[cfg(feature = "json")]
mod json {
    use super::*;
    use ringwire_codec::Json;

    #[test]
    fn fuzz() {
        fuzz_codec(&Json, 0x1234_5678_9abc_def1);
    }

    proptest! {
        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            must_not_panic(&Json, &b);
        }
    }

    #[test]
    fn every_prefix_is_truncated() {
        let mut valid = Vec::new();
        Json.encode(&sample_envelope(), &mut valid).expect("encode");
        for cut in 0..valid.len() {
            let e = expect_err::<Envelope<Reading>, _>(&Json, &valid[..cut]);
            assert_eq!(e.format, Format::Json);
            assert!(matches!(e.kind, DecodeErrorKind::Truncated | DecodeErrorKind::Syntax));
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = expect_err::<Reading, _>(&Json, b"{\"name\":\n  nope}");
        assert_eq!(e.kind, DecodeErrorKind::Syntax);
        // serde_json points at or just after the bad token's first byte.
        assert!(matches!(e.position, Position::LineColumn { line: 2, column: 3..=4 }), "{e}");
    }

    #[test]
    fn wrong_types_are_data_errors() {
        let e = expect_err::<Reading, _>(&Json, br#"{"name":5}"#);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        let e = expect_err::<Envelope<Reading>, _>(&Json, br#"{"i":"short","k":1,"t":2,"p":{}}"#);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        let e = expect_err::<Envelope<Reading>, _>(&Json, br#"{"k":1,"k":1}"#);
        assert_eq!(e.kind, DecodeErrorKind::Data, "{e}");
        let e =
            expect_err::<Envelope<Inner>, _>(&Json, br#"{"k":1,"t":2,"p":{"label":"","delta":0}}"#);
        assert!(e.message.contains("missing field `i`"), "{e}");
    }

    #[test]
    fn trailing_bytes() {
        let e = expect_err::<Inner, _>(&Json, br#"{"label":"","delta":0} x"#);
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes);
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let deep = vec![b'['; 100_000];
        let e = expect_err::<Envelope<Reading>, _>(&Json, &deep);
        assert_eq!(e.format, Format::Json);
    }
}

#[cfg(feature = "cbor")]
mod cbor {
    use super::*;
    use ringwire_codec::Cbor;

    #[test]
    fn fuzz() {
        fuzz_codec(&Cbor, 0x0bad_cafe_f00d_d00d);
    }

    proptest! {
        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            must_not_panic(&Cbor, &b);
        }
    }

    #[test]
    fn every_prefix_is_truncated_at_an_offset() {
        let mut valid = Vec::new();
        Cbor.encode(&sample_envelope(), &mut valid).expect("encode");
        for cut in 0..valid.len() {
            let e = expect_err::<Envelope<Reading>, _>(&Cbor, &valid[..cut]);
            assert_eq!(e.kind, DecodeErrorKind::Truncated, "cut {cut}: {e}");
            match e.position {
                Position::Offset(o) => assert!(o <= cut, "cut {cut}: offset {o}"),
                p => panic!("no offset: {p:?}"),
            }
        }
    }

    #[test]
    fn wrong_types_are_data_errors_with_offsets() {
        // array(4) [bytes(2) "ab", ...]: the id must be 16 bytes.
        let e =
            expect_err::<Envelope<Inner>, _>(&Cbor, &[0x84, 0x42, b'a', b'b', 0x01, 0x02, 0xa0]);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        assert_eq!(e.position, Position::Offset(4));
        // A text string where a map is expected.
        let e = expect_err::<Inner, _>(&Cbor, &[0x61, b'x']);
        assert_eq!(e.kind, DecodeErrorKind::Data);
    }

    #[test]
    fn trailing_bytes() {
        let mut valid = Vec::new();
        Cbor.encode(&sample_reading(), &mut valid).expect("encode");
        let n = valid.len();
        valid.push(0x00);
        let e = expect_err::<Reading, _>(&Cbor, &valid);
        assert_eq!(e.kind, DecodeErrorKind::TrailingBytes);
        assert_eq!(e.position, Position::Offset(n));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // bytes / text / array / map claiming 2^64-1 items, then nothing.
        for head in [0x5b_u8, 0x7b, 0x9b, 0xbb] {
            let mut input = vec![0x84, head];
            input.extend_from_slice(&[0xff; 8]);
            let e = expect_err::<Envelope<Reading>, _>(&Cbor, &input);
            assert!(matches!(e.kind, DecodeErrorKind::Truncated | DecodeErrorKind::Data), "{e}");
            expect_err::<Reading, _>(&Cbor, &input[1..]);
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        // 0x81 = array(1), nested 100k times; also indefinite arrays.
        for head in [0x81_u8, 0x9f] {
            let deep = vec![head; 100_000];
            let e = expect_err::<Envelope<Reading>, _>(&Cbor, &deep);
            assert_eq!(e.format, Format::Cbor);
        }
    }
}

#[cfg(feature = "protobuf")]
mod protobuf {
    use super::*;
    use ringwire_codec::Protobuf;

    #[test]
    fn fuzz() {
        fuzz_codec(&Protobuf, 0x5eed_5eed_5eed_5eed);
    }

    proptest! {
        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            must_not_panic(&Protobuf, &b);
        }
    }

    #[test]
    fn cut_inside_a_field_is_truncated_at_its_start() {
        let mut valid = Vec::new();
        Protobuf.encode(&sample_envelope(), &mut valid).expect("encode");
        // Field 1 (id) spans bytes 0..18: any cut inside it fails at 0.
        for cut in 1..18 {
            let e = expect_err::<Envelope<Reading>, _>(&Protobuf, &valid[..cut]);
            assert_eq!(e.kind, DecodeErrorKind::Truncated, "cut {cut}: {e}");
            assert_eq!(e.position, Position::Offset(0));
        }
        // Field 4 (payload) starts at 29.
        let e = expect_err::<Envelope<Reading>, _>(&Protobuf, &valid[..valid.len() - 1]);
        assert_eq!(e.position, Position::Offset(29));
    }

    #[test]
    fn id_of_wrong_length_is_a_data_error() {
        // field 2 = 7, then field 1 = bytes(3)
        let input = [0x10, 0x07, 0x0a, 0x03, 1, 2, 3];
        let e = expect_err::<Envelope<Inner>, _>(&Protobuf, &input);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        assert_eq!(e.position, Position::Offset(2));
        assert!(e.message.contains("16 bytes"), "{e}");
    }

    #[test]
    fn wrong_wire_type_and_bad_utf8() {
        // field 1 (string) sent as varint
        let e = expect_err::<Inner, _>(&Protobuf, &[0x08, 0x01]);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        // field 1 (string) with invalid UTF-8
        let e = expect_err::<Inner, _>(&Protobuf, &[0x0a, 0x02, 0xc3, 0x28]);
        assert_eq!(e.kind, DecodeErrorKind::Data);
        // tag 0 is invalid
        expect_err::<Inner, _>(&Protobuf, &[0x00, 0x00]);
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        // Field 15 (unknown to Inner), wire type 3 (start group): prost skips
        // unknown groups recursively, up to its recursion limit.
        let deep = vec![(15 << 3) | 3; 10_000];
        expect_err::<Inner, _>(&Protobuf, &deep);
    }
}
