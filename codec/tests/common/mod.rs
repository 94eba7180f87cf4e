//! Test payload types shared by the integration tests: one Rust type that
//! serde and (with the `protobuf` feature) prost both understand.

#![allow(dead_code, missing_docs)]

use proptest::prelude::*;
use ringwire_codec::{Envelope, Kind, MessageId};
use serde::{Deserialize, Serialize};

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
