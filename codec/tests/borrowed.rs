//! The zero-copy API (`BorrowCodec`) against the owned one (`Codec`), in
//! every format: the same bytes either way, equal values field by field,
//! errors (never panics) on garbage.

#![cfg_attr(
    not(all(feature = "json", feature = "cbor", feature = "protobuf")),
    allow(unused_imports, dead_code)
)]

mod common;

use std::borrow::Cow;

use common::*;
use proptest::prelude::*;
use ringwire_codec::{BorrowCodec, Codec, DecodeErrorKind, Envelope, FrameKind, Message};

/// Owned encode -> borrowed decode -> field-by-field equal to the owned
/// decode; borrowed encode -> the same bytes -> owned decode equal.
fn both_ways<C>(codec: &C, r: &Reading)
where
    C: Codec<Reading> + for<'de> BorrowCodec<'de, ReadingRef<'de>>,
{
    let mut owned_bytes = Vec::new();
    Codec::<Reading>::encode(codec, r, &mut owned_bytes).expect("encode owned");
    let owned: Reading = codec.decode(&owned_bytes).expect("decode owned");
    let borrowed: ReadingRef<'_> = codec.decode_borrowed(&owned_bytes).expect("decode borrowed");
    assert_same_reading(&owned, &borrowed);
    assert_same_reading(r, &borrowed);

    let twin = ReadingRef::borrowing(r);
    let mut borrowed_bytes = vec![0xAA]; // encode appends: the prefix must stay
    codec.encode_borrowed(&twin, &mut borrowed_bytes).expect("encode borrowed");
    assert_eq!(borrowed_bytes[0], 0xAA);
    assert_eq!(&borrowed_bytes[1..], &owned_bytes[..], "same wire format");
    let back: Reading = codec.decode(&borrowed_bytes[1..]).expect("decode owned");
    assert_eq!(&back, r);
}

fn both_ways_envelope<C>(codec: &C, e: &Envelope<Reading>)
where
    C: Codec<Envelope<Reading>> + for<'de> BorrowCodec<'de, Envelope<ReadingRef<'de>>>,
{
    let mut bytes = Vec::new();
    Codec::<Envelope<Reading>>::encode(codec, e, &mut bytes).expect("encode owned");
    let owned: Envelope<Reading> = codec.decode(&bytes).expect("decode owned");
    let b: Envelope<ReadingRef<'_>> = codec.decode_borrowed(&bytes).expect("decode borrowed");
    assert_eq!((b.id, b.kind, b.timestamp_us), (owned.id, owned.kind, owned.timestamp_us));
    assert_same_reading(&owned.payload, &b.payload);

    let twin = Envelope::new(e.id, e.kind, e.timestamp_us, ReadingRef::borrowing(&e.payload));
    let mut again = Vec::new();
    codec.encode_borrowed(&twin, &mut again).expect("encode borrowed");
    assert_eq!(again, bytes, "same wire format");

    // Through a frame and a ringwire_frame::Message, as on a connection.
    let kind = Codec::<Envelope<Reading>>::frame_kind(codec);
    let f: Envelope<ReadingRef<'_>> = codec.decode_frame_borrowed(kind, &bytes).expect("frame");
    assert_same_reading(&e.payload, &f.payload);
    let other = if kind == FrameKind::Text { FrameKind::Binary } else { FrameKind::Text };
    let err = BorrowCodec::<Envelope<ReadingRef<'_>>>::decode_frame_borrowed(codec, other, &bytes)
        .expect_err("wrong frame kind");
    assert_eq!(err.close_code().0, 1003);
    let msg = codec.encode_message(e).expect("encode_message");
    let m: Envelope<ReadingRef<'_>> = codec.decode_message_borrowed(&msg).expect("message");
    assert_same_reading(&e.payload, &m.payload);
}

/// Garbage never panics the borrowed decoder, and it fails exactly where
/// the owned decoder fails, with the same kind and position.
fn agrees_on_garbage<C>(codec: &C, input: &[u8])
where
    C: Codec<Reading> + for<'de> BorrowCodec<'de, ReadingRef<'de>>,
{
    let owned = Codec::<Reading>::decode(codec, input);
    let borrowed = BorrowCodec::<ReadingRef<'_>>::decode_borrowed(codec, input);
    match (&owned, &borrowed) {
        (Ok(o), Ok(b)) => assert_same_reading(o, b),
        (Err(o), Err(b)) => {
            assert_eq!(b.close_code().0, 1007);
            assert_eq!((o.format, o.kind, o.position), (b.format, b.kind, b.position));
        }
        _ => panic!("owned {owned:?} vs borrowed {borrowed:?} on {input:02x?}"),
    }
}

/// Every prefix, and every single-byte change, of a valid message.
fn mutations<C>(codec: &C)
where
    C: Codec<Reading> + for<'de> BorrowCodec<'de, ReadingRef<'de>>,
{
    let mut bytes = Vec::new();
    Codec::<Reading>::encode(codec, &sample_reading(), &mut bytes).expect("encode");
    for cut in 0..bytes.len() {
        agrees_on_garbage(codec, &bytes[..cut]);
    }
    for i in 0..bytes.len() {
        for x in [0x00, 0x01, 0x7f, 0x80, 0xc3, 0xff] {
            let mut m = bytes.clone();
            m[i] ^= x;
            agrees_on_garbage(codec, &m);
        }
    }
}

#[cfg(feature = "json")]
mod json {
    use super::*;
    use ringwire_codec::Json;

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { both_ways(&Json, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { both_ways_envelope(&Json, &e); }

        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            agrees_on_garbage(&Json, &b);
        }
    }

    #[test]
    fn mutated_messages() {
        mutations(&Json);
    }

    #[test]
    fn plain_strings_are_borrowed_escaped_ones_owned() {
        let text = br#"{"name":"plain","count":1,"value":0.0,"ok":true,"level":0,"inner":null,"tags":["a\"b","c"]}"#;
        let r: ReadingRef<'_> = Json.decode_borrowed(text).expect("decode");
        assert!(matches!(r.name, Cow::Borrowed("plain")));
        assert!(matches!(&r.tags[0], Cow::Owned(s) if s == "a\"b"));
        assert!(matches!(r.tags[1], Cow::Borrowed("c")));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let text = b"{\"name\":\"\xff\",\"count\":1,\"value\":0.0,\"ok\":true,\"level\":0,\"inner\":null,\"tags\":[]}";
        let err = BorrowCodec::<ReadingRef<'_>>::decode_borrowed(&Json, text).expect_err("bad");
        assert_eq!(err.close_code().0, 1007);
    }
}

#[cfg(feature = "cbor")]
mod cbor {
    use super::*;
    use ringwire_codec::Cbor;

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { both_ways(&Cbor, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { both_ways_envelope(&Cbor, &e); }

        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            agrees_on_garbage(&Cbor, &b);
        }
    }

    #[test]
    fn mutated_messages() {
        mutations(&Cbor);
    }

    #[test]
    fn strings_are_borrowed() {
        let mut bytes = Vec::new();
        Cbor.encode(&sample_reading(), &mut bytes).expect("encode");
        let r: ReadingRef<'_> = Cbor.decode_borrowed(&bytes).expect("decode");
        let Cow::Borrowed(name) = r.name else { panic!("name was copied") };
        let range = bytes.as_ptr_range();
        assert!(range.contains(&name.as_ptr()), "name points into the message");
    }

    #[test]
    fn indefinite_length_text_is_joined() {
        // {"name": (_ "ab" "c"), ...}: a chunked string cannot be one slice.
        let mut bytes = vec![0xa7, 0x64];
        bytes.extend_from_slice(b"name");
        bytes.extend_from_slice(&[0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff]);
        for (key, value) in [
            (&b"count"[..], &[0x01][..]),
            (b"value", &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]),
            (b"ok", &[0xf5]),
            (b"level", &[0x00]),
            (b"inner", &[0xf6]),
            (b"tags", &[0x80]),
        ] {
            bytes.push(0x60 | key.len() as u8);
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(value);
        }
        let owned: Reading = Cbor.decode(&bytes).expect("owned");
        let r: ReadingRef<'_> = Cbor.decode_borrowed(&bytes).expect("borrowed");
        assert!(matches!(&r.name, Cow::Owned(s) if s == "abc"));
        assert_same_reading(&owned, &r);
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut bytes = Vec::new();
        Cbor.encode(&sample_reading(), &mut bytes).expect("encode");
        // The name's first byte: after the map header, "name" and its header.
        let at = 1 + 1 + 4 + 1;
        bytes[at] = 0xff;
        let err = BorrowCodec::<ReadingRef<'_>>::decode_borrowed(&Cbor, &bytes).expect_err("bad");
        assert_eq!(err.close_code().0, 1007);
        agrees_on_garbage(&Cbor, &bytes);
    }
}

#[cfg(feature = "protobuf")]
mod protobuf {
    use super::*;
    use prost::bytes::BufMut;
    use prost::encoding::WireType;
    use prost::DecodeError as ProstError;
    use ringwire_codec::protobuf_borrowed::{self as pb, BorrowContext};
    use ringwire_codec::{BorrowedMessage, Protobuf};

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { both_ways(&Protobuf, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { both_ways_envelope(&Protobuf, &e); }

        #[test]
        fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            agrees_on_garbage(&Protobuf, &b);
        }
    }

    #[test]
    fn mutated_messages() {
        mutations(&Protobuf);
    }

    #[test]
    fn strings_are_borrowed() {
        let mut bytes = Vec::new();
        Protobuf.encode(&sample_reading(), &mut bytes).expect("encode");
        let r: ReadingRef<'_> = Protobuf.decode_borrowed(&bytes).expect("decode");
        let Cow::Borrowed(name) = r.name else { panic!("name was copied") };
        assert!(bytes.as_ptr_range().contains(&name.as_ptr()));
    }

    #[test]
    fn invalid_utf8_is_a_data_error_at_the_field() {
        let mut bytes = Vec::new();
        Protobuf.encode(&sample_reading(), &mut bytes).expect("encode");
        assert_eq!(bytes[0], 0x0a, "field 1, string");
        bytes[2] = 0xff;
        let err =
            BorrowCodec::<ReadingRef<'_>>::decode_borrowed(&Protobuf, &bytes).expect_err("bad");
        assert_eq!(err.kind, DecodeErrorKind::Data);
        assert_eq!(err.position, ringwire_codec::Position::Offset(0));
        agrees_on_garbage(&Protobuf, &bytes);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = vec![0x78, 0x05, 0x82, 0x01, 0x02, b'h', b'i']; // 15: varint, 16: bytes
        Protobuf.encode(&sample_reading(), &mut bytes).expect("encode");
        let r: ReadingRef<'_> = Protobuf.decode_borrowed(&bytes).expect("decode");
        assert_same_reading(&sample_reading(), &r);
    }

    /// A message that nests itself, to reach the recursion limit.
    #[derive(Default, Debug)]
    struct Nest {
        child: Option<Box<Nest>>,
    }

    impl<'a> BorrowedMessage<'a> for Nest {
        fn merge_field(
            &mut self,
            tag: u32,
            wt: WireType,
            buf: &mut &'a [u8],
            ctx: BorrowContext,
        ) -> Result<(), ProstError> {
            match tag {
                1 => pb::merge_message(
                    wt,
                    self.child.get_or_insert_with(Box::default).as_mut(),
                    buf,
                    ctx,
                ),
                _ => pb::skip_field(wt, tag, buf),
            }
        }

        fn encode_raw(&self, buf: &mut impl BufMut) {
            if let Some(c) = &self.child {
                pb::encode_message(1, c.as_ref(), buf);
            }
        }

        fn encoded_len(&self) -> usize {
            self.child.as_ref().map_or(0, |c| pb::encoded_len_message(1, c.as_ref()))
        }
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut n = Nest::default();
        for _ in 0..depth {
            n = Nest { child: Some(Box::new(n)) };
        }
        let mut out = Vec::new();
        Protobuf.encode_borrowed(&n, &mut out).expect("encode");
        out
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let ok: Nest = Protobuf.decode_borrowed(&nested(100)).expect("at the limit");
        assert!(ok.child.is_some());
        let err =
            BorrowCodec::<Nest>::decode_borrowed(&Protobuf, &nested(101)).expect_err("too deep");
        assert!(err.to_string().contains("recursion limit"), "{err}");
        // A hostile message: 10^5 levels claimed in 2 bytes each.
        let mut evil = Vec::new();
        for _ in 0..100_000 {
            evil.extend_from_slice(&[0x0a, 0x7f]);
        }
        assert!(BorrowCodec::<Nest>::decode_borrowed(&Protobuf, &evil).is_err());
    }
}

/// The benchmark's event and its borrowed twin: the bytes the bench times
/// decode to the same values both ways, in every format.
#[cfg(all(feature = "json", feature = "cbor", feature = "protobuf"))]
mod bench_event {
    use super::*;
    use crate::common::support::{assert_same_event, sample_event, OrderEvent, OrderEventRef};
    use ringwire_codec::{Cbor, Json, Kind, MessageId, Protobuf};

    fn check<C>(codec: C)
    where
        C: Codec<OrderEvent>
            + Codec<Envelope<OrderEvent>>
            + for<'de> BorrowCodec<'de, OrderEventRef<'de>>
            + for<'de> BorrowCodec<'de, Envelope<OrderEventRef<'de>>>,
    {
        let e = sample_event();
        let mut bytes = Vec::new();
        Codec::<OrderEvent>::encode(&codec, &e, &mut bytes).expect("encode");
        let owned: OrderEvent = codec.decode(&bytes).expect("owned");
        let b: OrderEventRef<'_> = codec.decode_borrowed(&bytes).expect("borrowed");
        assert_same_event(&owned, &b);
        let mut again = Vec::new();
        codec.encode_borrowed(&b, &mut again).expect("encode borrowed");
        assert_eq!(again, bytes, "same wire format");

        let env = Envelope::new(MessageId::from_parts(1, 2), Kind(7), 3, e);
        let mut bytes = Vec::new();
        Codec::<Envelope<OrderEvent>>::encode(&codec, &env, &mut bytes).expect("encode");
        let b: Envelope<OrderEventRef<'_>> = codec.decode_borrowed(&bytes).expect("borrowed");
        assert_eq!((b.id, b.kind, b.timestamp_us), (env.id, env.kind, env.timestamp_us));
        assert_same_event(&env.payload, &b.payload);
    }

    #[test]
    fn json() {
        check(Json);
    }

    #[test]
    fn cbor() {
        check(Cbor);
    }

    #[test]
    fn protobuf() {
        check(Protobuf);
    }
}

#[test]
fn messages_of_the_wrong_type_are_rejected() {
    #[cfg(feature = "json")]
    {
        let m = Message::binary(b"{}".to_vec());
        let err = BorrowCodec::<ReadingRef<'_>>::decode_message_borrowed(&ringwire_codec::Json, &m)
            .expect_err("binary JSON");
        assert_eq!(err.close_code().0, 1003);
    }
    let _ = Message::text("x");
}
