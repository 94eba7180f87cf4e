//! Every value survives encode then decode, in every format (proptest).

// Each format's tests sit behind its feature; with some features off,
// helpers shared by the others go unused.
#![cfg_attr(
    not(all(feature = "json", feature = "cbor", feature = "protobuf")),
    allow(unused_imports, dead_code)
)]

mod common;

use common::*;
use proptest::prelude::*;
use ringwire_codec::{CloseCode, Codec, Envelope, FrameKind, Message};

fn round_trip<T, C>(codec: &C, value: &T)
where
    T: PartialEq + std::fmt::Debug,
    C: Codec<T>,
{
    let mut buf = vec![0xAA, 0xBB]; // encode appends: the prefix must stay
    codec.encode(value, &mut buf).expect("encode");
    assert_eq!(&buf[..2], &[0xAA, 0xBB]);
    let back = codec.decode(&buf[2..]).expect("decode");
    assert_eq!(&back, value);

    let (kind, bytes) = codec.encode_frame(value).expect("encode_frame");
    assert_eq!(kind, codec.format().frame_kind());
    assert_eq!(&codec.decode_frame(kind, &bytes).expect("decode_frame"), value);
    let other = match kind {
        FrameKind::Text => FrameKind::Binary,
        FrameKind::Binary => FrameKind::Text,
    };
    let err = codec.decode_frame(other, &bytes).expect_err("wrong frame kind");
    assert_eq!(err.close_code().0, 1003);

    // Through ringwire_frame::Message, as on a connection.
    let msg = codec.encode_message(value).expect("encode_message");
    assert_eq!(msg.as_bytes(), &bytes[..]);
    let is_text = matches!(msg, Message::Text(_));
    assert_eq!(is_text, kind == FrameKind::Text);
    assert_eq!(&codec.decode_message(&msg).expect("decode_message"), value);
    let wrong = if is_text { Message::binary(bytes.clone()) } else { Message::text("{}") };
    let err = codec.decode_message(&wrong).expect_err("wrong message type");
    assert_eq!(err.close_code(), CloseCode::UNSUPPORTED_DATA);
}

#[cfg(feature = "json")]
mod json {
    use super::*;
    use ringwire_codec::Json;

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { round_trip(&Json, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { round_trip(&Json, &e); }
    }

    #[test]
    fn envelope_is_compact_and_readable() {
        let env = sample_envelope();
        let mut buf = Vec::new();
        Json.encode(&env, &mut buf).expect("encode");
        let text = String::from_utf8(buf).expect("utf-8");
        let id = env.id.to_string();
        assert!(
            text.starts_with(&format!(r#"{{"i":"{id}","k":42,"t":1764115200123456,"p":{{"#)),
            "{text}"
        );
    }

    #[test]
    fn envelope_ignores_unknown_keys_and_any_key_order() {
        let env = sample_envelope();
        let id = env.id.to_string();
        let text = format!(
            r#"{{"x":[1,{{"y":2}}],"p":{},"t":{},"k":{},"i":"{}"}}"#,
            serde_json::to_string(&env.payload).expect("payload"),
            env.timestamp_us,
            env.kind.0,
            id.to_ascii_lowercase()
        );
        let back: Envelope<Reading> = Json.decode(text.as_bytes()).expect("decode");
        assert_eq!(back, env);
    }
}

#[cfg(feature = "cbor")]
mod cbor {
    use super::*;
    use ringwire_codec::Cbor;

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { round_trip(&Cbor, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { round_trip(&Cbor, &e); }
    }

    #[test]
    fn envelope_header_is_array_of_four_with_16_byte_id() {
        let env = sample_envelope();
        let mut buf = Vec::new();
        Cbor.encode(&env, &mut buf).expect("encode");
        assert_eq!(buf[0], 0x84, "array(4)");
        assert_eq!(buf[1], 0x50, "bytes(16)");
        assert_eq!(&buf[2..18], &env.id.to_bytes());
        assert_eq!(buf[18], 0x18, "uint8 follows");
        assert_eq!(buf[19], 42);
        assert_eq!(buf[20], 0x1b, "uint64 follows");
    }
}

#[cfg(feature = "protobuf")]
mod protobuf {
    use super::*;
    use ringwire_codec::{Kind, MessageId, Protobuf};

    proptest! {
        #[test]
        fn reading(r in arb_reading()) { round_trip(&Protobuf, &r); }

        #[test]
        fn envelope(e in arb_envelope()) { round_trip(&Protobuf, &e); }
    }

    #[test]
    fn envelope_header_layout() {
        let env = sample_envelope();
        let mut buf = Vec::new();
        Protobuf.encode(&env, &mut buf).expect("encode");
        assert_eq!(&buf[..2], &[0x0a, 16], "field 1, bytes, len 16");
        assert_eq!(&buf[2..18], &env.id.to_bytes());
        assert_eq!(&buf[18..20], &[0x10, 42], "field 2, varint 42");
        assert_eq!(buf[20], 0x19, "field 3, fixed64");
        assert_eq!(&buf[21..29], &env.timestamp_us.to_le_bytes());
        assert_eq!(buf[29], 0x22, "field 4, embedded message");
        assert_eq!(prost::Message::encoded_len(&env), buf.len());
    }

    #[test]
    fn default_fields_are_omitted() {
        let env = Envelope::new(MessageId::NIL, Kind(0), 0, Inner::default());
        let mut buf = Vec::new();
        Protobuf.encode(&env, &mut buf).expect("encode");
        assert_eq!(buf, [0x22, 0x00]);
        assert_eq!(Protobuf.decode(&buf), Ok(env.clone()));
        assert_eq!(Protobuf.decode(&[]), Ok(env));
    }
}
