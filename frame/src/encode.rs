//! Encoding frames and messages into caller-owned buffers.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask_offset;

/// Where a client takes the masking key of each frame from (RFC 6455 §5.3: keys must be
/// unpredictable, "derived from a strong source of entropy").
///
/// This crate reads no randomness itself; the engine injects a source seeded from the OS.
pub trait MaskSource {
    /// The key for the next frame.
    fn next_mask(&mut self) -> [u8; 4];
}

/// A fast pseudo-random mask source (xorshift64*) from a caller-supplied seed.
///
/// Seed it from the operating system's entropy (the engine does). Masking protects
/// intermediaries from cache poisoning by script-controlled payloads (§10.3); a seeded
/// PRNG the page cannot observe meets that purpose.
#[derive(Debug, Clone)]
pub struct XorShiftMask(u64);

impl XorShiftMask {
    /// A source from a seed; a zero seed is replaced by a fixed non-zero constant.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
}

impl MaskSource for XorShiftMask {
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((v >> 32) as u32).to_ne_bytes()
    }
}

/// A fixed key, for tests and examples.
#[derive(Debug, Clone, Copy)]
pub struct FixedMask(pub [u8; 4]);

impl MaskSource for FixedMask {
    fn next_mask(&mut self) -> [u8; 4] {
        self.0
    }
}

/// Appends one frame to `out`: the header, then the payload, masked with `mask` if given.
pub fn encode_frame<B>(
    out: &mut B,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) where
    B: BufMut + AsMut<[u8]> + AsRef<[u8]>,
{
    encode_frame_rsv(out, opcode, 0, fin, payload, mask);
}

/// [`encode_frame`] with RSV bits (`0b100` is RSV1: permessage-deflate's "compressed").
pub fn encode_frame_rsv<B>(
    out: &mut B,
    opcode: OpCode,
    rsv: u8,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) where
    B: BufMut + AsMut<[u8]> + AsRef<[u8]>,
{
    let header = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
    let mut hbuf = [0u8; MAX_HEADER_LEN];
    let n = header.encode_into(&mut hbuf).unwrap_or(0);
    out.put_slice(&hbuf[..n]);
    let start = out.as_ref().len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask_offset(&mut out.as_mut()[start..], key, 0);
    }
}

/// Appends a whole message to `out`, split into frames of at most `fragment_size` bytes
/// if given, each masked with a fresh key from `masks` if given (client role).
///
/// `opcode` must be [`OpCode::Text`] or [`OpCode::Binary`]; the first frame carries it and
/// the rest are continuations (RFC 6455 §5.4).
pub fn encode_message<B>(
    out: &mut B,
    opcode: OpCode,
    payload: &[u8],
    fragment_size: Option<usize>,
    masks: Option<&mut dyn MaskSource>,
) where
    B: BufMut + AsMut<[u8]> + AsRef<[u8]>,
{
    encode_message_rsv(out, opcode, 0, payload, fragment_size, masks);
}

/// [`encode_message`] with RSV bits on its first frame (RFC 7692 §6.1: a compressed
/// message has RSV1 on its first frame only).
pub fn encode_message_rsv<B>(
    out: &mut B,
    opcode: OpCode,
    rsv: u8,
    payload: &[u8],
    fragment_size: Option<usize>,
    mut masks: Option<&mut dyn MaskSource>,
) where
    B: BufMut + AsMut<[u8]> + AsRef<[u8]>,
{
    let size = fragment_size.filter(|n| *n > 0).unwrap_or(usize::MAX);
    if payload.len() <= size {
        let mask = masks.map(|m| m.next_mask());
        encode_frame_rsv(out, opcode, rsv, true, payload, mask);
        return;
    }
    let mut chunks = payload.chunks(size).peekable();
    let (mut op, mut rsv) = (opcode, rsv);
    while let Some(chunk) = chunks.next() {
        let mask = masks.as_deref_mut().map(|m| m.next_mask());
        encode_frame_rsv(out, op, rsv, chunks.peek().is_none(), chunk, mask);
        op = OpCode::Continuation;
        rsv = 0;
    }
}

/// Encodes an unmasked (server-to-client) frame once into shared bytes with RSV bits:
/// a message compressed once (permessage-deflate) for every subscriber whose connection
/// agreed the same parameters.
pub fn encode_shared_rsv(opcode: OpCode, rsv: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_frame_rsv(&mut out, opcode, rsv, true, payload, None);
    out.freeze()
}

/// Encodes an unmasked (server-to-client) frame once into shared bytes, so that fan-out
/// hands the same allocation to every subscriber.
pub fn encode_shared(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_frame(&mut out, opcode, true, payload, None);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_hello_frames() {
        let mut v = Vec::new();
        encode_frame(&mut v, OpCode::Text, true, b"Hello", None);
        assert_eq!(v, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let mut v = Vec::new();
        encode_frame(&mut v, OpCode::Text, true, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(v, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let mut v = Vec::new();
        encode_message(&mut v, OpCode::Text, b"Hello", Some(3), None);
        assert_eq!(v, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    }

    #[test]
    fn shared_frame_has_header_and_payload() {
        let b = encode_shared(OpCode::Binary, &[7u8; 300]);
        assert_eq!(&b[..4], &[0x82, 0x7e, 0x01, 0x2c]);
        assert_eq!(b.len(), 304);
    }

    #[test]
    fn xorshift_masks_vary() {
        let mut m = XorShiftMask::new(1);
        let a = m.next_mask();
        let b = m.next_mask();
        assert_ne!(a, b);
    }
}
