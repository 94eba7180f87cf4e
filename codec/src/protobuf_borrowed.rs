//! Zero-copy Protobuf: messages whose `string` and `bytes` fields borrow
//! from the input instead of being copied into `String`s and `Vec`s.
//!
//! prost decodes through `impl Buf`, which cannot lend out slices that
//! outlive the call, so a prost `string` field is always a fresh `String`
//! (one allocation and one copy each). Its `bytes = "bytes"` option makes
//! `bytes` fields reference-counted slices of a `Bytes` input, but not
//! `string` fields, and a `Bytes` field would skip the UTF-8 check that a
//! `string` field must pass. So the borrowed path is our own small trait,
//! [`BorrowedMessage`], decoding from `&'de [u8]`: strings become `&'de str`
//! (or `Cow<'de, str>`) after `str::from_utf8`, byte strings `&'de [u8]`,
//! with no allocation and no reference count. Scalars reuse prost's own
//! functions (`prost::encoding::uint64::merge` and friends take any `Buf`,
//! and `&mut &'de [u8]` is one).
//!
//! The wire format is the one prost reads and writes: a type with a
//! hand-written `BorrowedMessage` impl and a prost type with the same tags
//! decode each other's bytes. The helpers here mirror `prost::encoding`
//! (`merge_*`, `encode_*`, `encoded_len_*`), so an impl reads like prost's
//! generated code; see `benches/support/mod.rs` for a complete example.

use prost::bytes::BufMut;
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

/// How deeply embedded messages may nest in a borrowed decode: 100, prost's
/// own recursion limit, so both paths accept the same inputs. Stops a
/// `[0x22, n, 0x22, n, ...]` message from exhausting the stack (each level
/// costs two bytes on the wire and one recursive call here).
pub const RECURSION_LIMIT: u32 = 100;

/// Decode state passed down to nested messages: the nesting depth left.
///
/// prost's `DecodeContext` cannot be stepped from outside prost
/// (`enter_recursion` is crate-private), hence this copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorrowContext {
    depth_left: u32,
}

impl Default for BorrowContext {
    fn default() -> Self {
        BorrowContext { depth_left: RECURSION_LIMIT }
    }
}

impl BorrowContext {
    /// The context for one level deeper, or an error at the limit.
    #[inline]
    pub fn enter(self) -> Result<BorrowContext, DecodeError> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(BorrowContext { depth_left }),
            None => Err(DecodeError::new("recursion limit reached")),
        }
    }
}

/// A Protobuf message that decodes by borrowing from its input.
///
/// Implement it by hand, field by field, as prost's derive would write
/// `prost::Message`: `merge_field` matches on the tag and calls a helper of
/// this module (strings, bytes, messages) or of `prost::encoding`
/// (scalars), and skips unknown tags with [`skip_field`]; `encode_raw` and
/// `encoded_len` omit fields at their default, as proto3 does.
pub trait BorrowedMessage<'de>: Default {
    /// Decodes one field whose key has been read; `buf` is left after it.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut &'de [u8],
        ctx: BorrowContext,
    ) -> Result<(), DecodeError>;

    /// Appends the fields of the message, without a length prefix.
    fn encode_raw(&self, buf: &mut impl BufMut);

    /// The number of bytes [`BorrowedMessage::encode_raw`] writes.
    fn encoded_len(&self) -> usize;
}

/// Reads a length-delimited field and returns its contents, a slice of the
/// input. The length is checked against the bytes left, so a hostile length
/// allocates nothing and reads nothing out of bounds.
#[inline(always)]
pub fn take_length_delimited<'de>(
    wire_type: WireType,
    buf: &mut &'de [u8],
) -> Result<&'de [u8], DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = decode_varint(buf)?;
    let rest: &'de [u8] = buf;
    let len = usize::try_from(len).ok().filter(|&n| n <= rest.len());
    let (field, rest) = rest.split_at(len.ok_or_else(|| DecodeError::new("buffer underflow"))?);
    *buf = rest;
    Ok(field)
}

/// Reads a varint. Keys and lengths below 128 (nearly all of them) take the
/// one-byte path; longer ones go to prost, which checks overlong encodings.
#[inline(always)]
pub fn decode_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    match buf.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            *buf = rest;
            Ok(u64::from(b))
        }
        _ => encoding::decode_varint(buf),
    }
}

/// Reads a field key (tag and wire type), as `prost::encoding::decode_key`
/// does, with the one-byte fast path of [`decode_varint`].
#[inline(always)]
pub fn decode_key(buf: &mut &[u8]) -> Result<(u32, WireType), DecodeError> {
    match buf.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            let wire_type = WireType::try_from(u64::from(b & 0x07))?;
            let tag = u32::from(b >> 3);
            if tag == 0 {
                return Err(DecodeError::new("invalid tag value: 0"));
            }
            *buf = rest;
            Ok((tag, wire_type))
        }
        _ => encoding::decode_key(buf),
    }
}

/// Decodes a `string` field as a slice of the input, after checking that it
/// is UTF-8 (proto3 requires it of `string` fields; prost checks it too).
#[inline(always)]
pub fn merge_str<'de, S: From<&'de str>>(
    wire_type: WireType,
    value: &mut S,
    buf: &mut &'de [u8],
) -> Result<(), DecodeError> {
    *value = S::from(take_str(wire_type, buf)?);
    Ok(())
}

/// Decodes one element of a `repeated string` field.
#[inline(always)]
pub fn merge_repeated_str<'de, S: From<&'de str>>(
    wire_type: WireType,
    values: &mut Vec<S>,
    buf: &mut &'de [u8],
) -> Result<(), DecodeError> {
    values.push(S::from(take_str(wire_type, buf)?));
    Ok(())
}

#[inline(always)]
fn take_str<'de>(wire_type: WireType, buf: &mut &'de [u8]) -> Result<&'de str, DecodeError> {
    let raw = take_length_delimited(wire_type, buf)?;
    // The same text as prost's error, so that both paths classify it alike.
    std::str::from_utf8(raw)
        .map_err(|_| DecodeError::new("invalid string value: data is not UTF-8 encoded"))
}

/// Decodes a `bytes` field as a slice of the input.
#[inline]
pub fn merge_bytes<'de, B: From<&'de [u8]>>(
    wire_type: WireType,
    value: &mut B,
    buf: &mut &'de [u8],
) -> Result<(), DecodeError> {
    *value = B::from(take_length_delimited(wire_type, buf)?);
    Ok(())
}

/// Decodes an embedded message field into `msg`, merging as Protobuf
/// specifies when the field repeats.
#[inline]
pub fn merge_message<'de, M: BorrowedMessage<'de>>(
    wire_type: WireType,
    msg: &mut M,
    buf: &mut &'de [u8],
    ctx: BorrowContext,
) -> Result<(), DecodeError> {
    // prost's `message::merge` and `merge_loop` step by step (wire type,
    // depth, length, fields up to the limit, exact end), so that both APIs
    // fail on the same inputs with the same errors.
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let ctx = ctx.enter()?;
    let len = decode_varint(buf)?;
    let remaining = buf.len();
    let limit = usize::try_from(len)
        .ok()
        .and_then(|len| remaining.checked_sub(len))
        .ok_or_else(|| DecodeError::new("buffer underflow"))?;
    while buf.len() > limit {
        let (tag, wire_type) = decode_key(buf)?;
        msg.merge_field(tag, wire_type, buf, ctx)?;
    }
    if buf.len() != limit {
        return Err(DecodeError::new("delimited length exceeded"));
    }
    Ok(())
}

/// Decodes an `optional` embedded message field (`Option<M>` in Rust).
#[inline]
pub fn merge_optional_message<'de, M: BorrowedMessage<'de>>(
    wire_type: WireType,
    msg: &mut Option<M>,
    buf: &mut &'de [u8],
    ctx: BorrowContext,
) -> Result<(), DecodeError> {
    merge_message(wire_type, msg.get_or_insert_with(M::default), buf, ctx)
}

/// Decodes one element of a `repeated` message field.
#[inline]
pub fn merge_repeated_message<'de, M: BorrowedMessage<'de>>(
    wire_type: WireType,
    msgs: &mut Vec<M>,
    buf: &mut &'de [u8],
    ctx: BorrowContext,
) -> Result<(), DecodeError> {
    // Decoded in place: building it on the stack and pushing it would
    // copy the whole struct once more.
    msgs.push(M::default());
    let res = match msgs.last_mut() {
        Some(msg) => merge_message(wire_type, msg, buf, ctx),
        None => Ok(()),
    };
    if res.is_err() {
        msgs.pop();
    }
    res
}

/// Skips a field with an unknown tag (forward compatibility).
///
/// Groups (a deprecated proto2 feature) are skipped by prost with its own
/// recursion limit of 100, counted from here.
#[inline]
pub fn skip_field(wire_type: WireType, tag: u32, buf: &mut &[u8]) -> Result<(), DecodeError> {
    encoding::skip_field(wire_type, tag, buf, DecodeContext::default())
}

/// Appends a `string` field (key, length, contents).
#[inline]
pub fn encode_str(tag: u32, value: &str, buf: &mut impl BufMut) {
    encode_bytes(tag, value.as_bytes(), buf);
}

/// The encoded length of a `string` field.
#[inline]
pub fn encoded_len_str(tag: u32, value: &str) -> usize {
    encoded_len_bytes(tag, value.as_bytes())
}

/// Appends a `bytes` field (key, length, contents).
#[inline]
pub fn encode_bytes(tag: u32, value: &[u8], buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

/// The encoded length of a `bytes` field.
#[inline]
pub fn encoded_len_bytes(tag: u32, value: &[u8]) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(value.len() as u64) + value.len()
}

/// Appends every element of a `repeated string` field.
#[inline]
pub fn encode_repeated_str<S: AsRef<str>>(tag: u32, values: &[S], buf: &mut impl BufMut) {
    for v in values {
        encode_str(tag, v.as_ref(), buf);
    }
}

/// The encoded length of a `repeated string` field.
#[inline]
pub fn encoded_len_repeated_str<S: AsRef<str>>(tag: u32, values: &[S]) -> usize {
    values.iter().map(|v| encoded_len_str(tag, v.as_ref())).sum()
}

/// Appends an embedded message field.
#[inline]
pub fn encode_message<'de, M: BorrowedMessage<'de>>(tag: u32, msg: &M, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(msg.encoded_len() as u64, buf);
    msg.encode_raw(buf);
}

/// The encoded length of an embedded message field.
#[inline]
pub fn encoded_len_message<'de, M: BorrowedMessage<'de>>(tag: u32, msg: &M) -> usize {
    let len = msg.encoded_len();
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Appends every element of a `repeated` message field.
#[inline]
pub fn encode_repeated_message<'de, M: BorrowedMessage<'de>>(
    tag: u32,
    msgs: &[M],
    buf: &mut impl BufMut,
) {
    for m in msgs {
        encode_message(tag, m, buf);
    }
}

/// The encoded length of a `repeated` message field.
#[inline]
pub fn encoded_len_repeated_message<'de, M: BorrowedMessage<'de>>(tag: u32, msgs: &[M]) -> usize {
    msgs.iter().map(|m| encoded_len_message(tag, m)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_length_delimited_checks_bounds_and_wire_type() {
        let mut buf: &[u8] = &[3, b'a', b'b', b'c', 9];
        assert_eq!(take_length_delimited(WireType::LengthDelimited, &mut buf), Ok(&b"abc"[..]));
        assert_eq!(buf, &[9]);
        let mut short: &[u8] = &[4, b'a'];
        assert!(take_length_delimited(WireType::LengthDelimited, &mut short).is_err());
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(take_length_delimited(WireType::LengthDelimited, &mut huge).is_err());
        let mut wrong: &[u8] = &[0];
        assert!(take_length_delimited(WireType::Varint, &mut wrong).is_err());
    }

    #[test]
    fn strings_are_borrowed_and_checked() {
        let input = [2, 0xc3, 0xa4];
        let mut buf: &[u8] = &input;
        let mut s: &str = "";
        merge_str(WireType::LengthDelimited, &mut s, &mut buf).expect("utf-8");
        assert_eq!(s, "ä");
        assert!(std::ptr::eq(s.as_ptr(), input[1..].as_ptr()), "borrowed, not copied");
        let mut bad: &[u8] = &[1, 0xff];
        let err = merge_str(WireType::LengthDelimited, &mut s, &mut bad).expect_err("not utf-8");
        assert!(err.to_string().contains("invalid string value"), "{err}");
    }

    #[test]
    fn depth_is_bounded() {
        let mut ctx = BorrowContext::default();
        for _ in 0..RECURSION_LIMIT {
            ctx = ctx.enter().expect("within the limit");
        }
        assert!(ctx.enter().is_err());
    }
}
