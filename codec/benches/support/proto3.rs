//! proto3 field helpers for the hand-written `BorrowedMessage` impls of the
//! borrowed twins: the benchmark's [`OrderEventRef`](super::OrderEventRef)
//! and the tests' `ReadingRef` (`tests/common/mod.rs`, which includes
//! `benches/support/mod.rs`, and so this file, by path).
//!
//! As prost's derive does for proto3 fields, a field that holds its default
//! (`0`, `0.0`, `false`, `""`) is not written and costs no bytes.

#![allow(dead_code)]

use prost::bytes::BufMut;
use prost::encoding::DecodeContext;
use ringwire_codec::protobuf_borrowed as pb;

/// The context for scalars, which go through prost's own functions; they
/// ignore it.
pub fn ctx0() -> DecodeContext {
    DecodeContext::default()
}

/// Writes a scalar field with one of prost's `encoding::<type>::encode`
/// functions, unless it holds its default.
pub fn put<T: Default + PartialEq, B: BufMut>(
    tag: u32,
    value: &T,
    buf: &mut B,
    encode: fn(u32, &T, &mut B),
) {
    if *value != T::default() {
        encode(tag, value, buf);
    }
}

/// The encoded length of a scalar field, given one of prost's
/// `encoding::<type>::encoded_len` functions: 0 when it holds its default.
pub fn len<T: Default + PartialEq>(
    tag: u32,
    value: &T,
    encoded_len: fn(u32, &T) -> usize,
) -> usize {
    if *value == T::default() {
        0
    } else {
        encoded_len(tag, value)
    }
}

/// Writes a string field unless it is empty.
pub fn put_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        pb::encode_str(tag, s, buf);
    }
}

/// The encoded length of a string field: 0 when it is empty.
pub fn len_str(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        pb::encoded_len_str(tag, s)
    }
}
