//! Test payload types shared by the integration tests: one Rust type that
//! serde and (with the `protobuf` feature) prost both understand.

#![allow(dead_code, missing_docs)]

use proptest::prelude::*;
use ringwire_codec::{Envelope, Kind, MessageId};
use serde::{Deserialize, Serialize};

/// The benchmark's ~1 KB event and its borrowed twin, and the proto3 field
/// helpers that both borrowed twins (that one and [`ReadingRef`]) are
/// written with: one definition for the benches and the tests.
#[cfg(feature = "protobuf")]
#[path = "../../benches/support/mod.rs"]
pub mod support;

/// Mood of a reading (a protobuf enum, an `i32` on the Rust side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "protobuf", derive(prost::Enumeration))]
#[repr(i32)]
pub enum Level {
    Unknown = 0,
    Low = 1,
    High = 2,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "protobuf", derive(prost::Message))]
#[cfg_attr(not(feature = "protobuf"), derive(Debug, Default))]
pub struct Inner {
    #[cfg_attr(feature = "protobuf", prost(string, tag = "1"))]
    pub label: String,
    #[cfg_attr(feature = "protobuf", prost(sint64, tag = "2"))]
    pub delta: i64,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "protobuf", derive(prost::Message))]
#[cfg_attr(not(feature = "protobuf"), derive(Debug, Default))]
pub struct Reading {
    #[cfg_attr(feature = "protobuf", prost(string, tag = "1"))]
    pub name: String,
    #[cfg_attr(feature = "protobuf", prost(uint64, tag = "2"))]
    pub count: u64,
    #[cfg_attr(feature = "protobuf", prost(double, tag = "3"))]
    pub value: f64,
    #[cfg_attr(feature = "protobuf", prost(bool, tag = "4"))]
    pub ok: bool,
    #[cfg_attr(feature = "protobuf", prost(enumeration = "Level", tag = "5"))]
    pub level: i32,
    #[cfg_attr(feature = "protobuf", prost(message, optional, tag = "6"))]
    pub inner: Option<Inner>,
    #[cfg_attr(feature = "protobuf", prost(string, repeated, tag = "7"))]
    pub tags: Vec<String>,
}

pub fn sample_reading() -> Reading {
    Reading {
        name: "temperature/äöü/🦀".to_owned(),
        count: 1 << 40,
        value: -12.5,
        ok: true,
        level: Level::High as i32,
        inner: Some(Inner { label: "probe-7".to_owned(), delta: -3 }),
        tags: vec!["a".to_owned(), "bb".to_owned()],
    }
}

pub fn sample_envelope() -> Envelope<Reading> {
    Envelope::new(
        MessageId::from_parts(1_764_115_200_123, 0x3_0102_0304_0506_0708_090a),
        Kind(42),
        1_764_115_200_123_456,
        sample_reading(),
    )
}

prop_compose! {
    pub fn arb_inner()(label in ".{0,12}", delta in any::<i64>()) -> Inner {
        Inner { label, delta }
    }
}

prop_compose! {
    pub fn arb_reading()(
        name in ".{0,24}",
        count in any::<u64>(),
        // NaN != NaN, so round-trip equality needs a non-NaN value; JSON has
        // no infinities either.
        value in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
        ok in any::<bool>(),
        level in 0i32..3,
        inner in proptest::option::of(arb_inner()),
        tags in proptest::collection::vec(".{0,8}", 0..4),
    ) -> Reading {
        Reading { name, count, value, ok, level, inner, tags }
    }
}

prop_compose! {
    pub fn arb_envelope()(
        id in any::<u128>(),
        kind in any::<u32>(),
        ts in any::<u64>(),
        payload in arb_reading(),
    ) -> Envelope<Reading> {
        Envelope::new(MessageId(id), Kind(kind), ts, payload)
    }
}

// ---- Borrowed twins: same fields and tags, strings borrowed ----

/// [`Inner`] with its string borrowed from the message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InnerRef<'a> {
    #[serde(borrow)]
    pub label: std::borrow::Cow<'a, str>,
    pub delta: i64,
}

/// [`Reading`] with its strings borrowed from the message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadingRef<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    pub count: u64,
    pub value: f64,
    pub ok: bool,
    pub level: i32,
    #[serde(borrow)]
    pub inner: Option<InnerRef<'a>>,
    #[serde(borrow, deserialize_with = "ringwire_codec::borrow_cow_strs")]
    pub tags: Vec<std::borrow::Cow<'a, str>>,
}

impl<'a> ReadingRef<'a> {
    /// A twin that borrows every string from `r`.
    pub fn borrowing(r: &'a Reading) -> Self {
        ReadingRef {
            name: r.name.as_str().into(),
            count: r.count,
            value: r.value,
            ok: r.ok,
            level: r.level,
            inner: r
                .inner
                .as_ref()
                .map(|i| InnerRef { label: i.label.as_str().into(), delta: i.delta }),
            tags: r.tags.iter().map(|t| t.as_str().into()).collect(),
        }
    }
}

/// Asserts, field by field, that a borrowed decode equals the owned one.
pub fn assert_same_reading(owned: &Reading, borrowed: &ReadingRef<'_>) {
    assert_eq!(owned.name, borrowed.name, "name");
    assert_eq!(owned.count, borrowed.count, "count");
    assert_eq!(owned.value.to_bits(), borrowed.value.to_bits(), "value");
    assert_eq!(owned.ok, borrowed.ok, "ok");
    assert_eq!(owned.level, borrowed.level, "level");
    match (&owned.inner, &borrowed.inner) {
        (None, None) => {}
        (Some(o), Some(b)) => {
            assert_eq!(o.label, b.label, "inner.label");
            assert_eq!(o.delta, b.delta, "inner.delta");
        }
        (o, b) => panic!("inner: owned {:?}, borrowed {:?}", o.is_some(), b.is_some()),
    }
    assert_eq!(owned.tags, borrowed.tags, "tags");
}

#[cfg(feature = "protobuf")]
mod proto_ref {
    use super::support::proto3::{ctx0, len, len_str, put, put_str};
    use super::{InnerRef, ReadingRef};
    use prost::bytes::BufMut;
    use prost::encoding::{self, WireType};
    use prost::DecodeError;
    use ringwire_codec::protobuf_borrowed::{self as pb, BorrowContext};
    use ringwire_codec::BorrowedMessage;

    impl<'a> BorrowedMessage<'a> for InnerRef<'a> {
        fn merge_field(
            &mut self,
            tag: u32,
            wt: WireType,
            buf: &mut &'a [u8],
            _ctx: BorrowContext,
        ) -> Result<(), DecodeError> {
            match tag {
                1 => pb::merge_str(wt, &mut self.label, buf),
                2 => encoding::sint64::merge(wt, &mut self.delta, buf, ctx0()),
                _ => pb::skip_field(wt, tag, buf),
            }
        }

        fn encode_raw(&self, buf: &mut impl BufMut) {
            put_str(1, &self.label, buf);
            put(2, &self.delta, buf, encoding::sint64::encode);
        }

        fn encoded_len(&self) -> usize {
            len_str(1, &self.label) + len(2, &self.delta, encoding::sint64::encoded_len)
        }
    }

    impl<'a> BorrowedMessage<'a> for ReadingRef<'a> {
        fn merge_field(
            &mut self,
            tag: u32,
            wt: WireType,
            buf: &mut &'a [u8],
            ctx: BorrowContext,
        ) -> Result<(), DecodeError> {
            match tag {
                1 => pb::merge_str(wt, &mut self.name, buf),
                2 => encoding::uint64::merge(wt, &mut self.count, buf, ctx0()),
                3 => encoding::double::merge(wt, &mut self.value, buf, ctx0()),
                4 => encoding::bool::merge(wt, &mut self.ok, buf, ctx0()),
                5 => encoding::int32::merge(wt, &mut self.level, buf, ctx0()),
                6 => pb::merge_optional_message(wt, &mut self.inner, buf, ctx),
                7 => pb::merge_repeated_str(wt, &mut self.tags, buf),
                _ => pb::skip_field(wt, tag, buf),
            }
        }

        fn encode_raw(&self, buf: &mut impl BufMut) {
            put_str(1, &self.name, buf);
            put(2, &self.count, buf, encoding::uint64::encode);
            put(3, &self.value, buf, encoding::double::encode);
            put(4, &self.ok, buf, encoding::bool::encode);
            put(5, &self.level, buf, encoding::int32::encode);
            if let Some(i) = &self.inner {
                pb::encode_message(6, i, buf);
            }
            pb::encode_repeated_str(7, &self.tags, buf);
        }

        fn encoded_len(&self) -> usize {
            len_str(1, &self.name)
                + len(2, &self.count, encoding::uint64::encoded_len)
                + len(3, &self.value, encoding::double::encoded_len)
                + len(4, &self.ok, encoding::bool::encoded_len)
                + len(5, &self.level, encoding::int32::encoded_len)
                + self.inner.as_ref().map_or(0, |i| pb::encoded_len_message(6, i))
                + pb::encoded_len_repeated_str(7, &self.tags)
        }
    }
}
