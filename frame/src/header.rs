//! The frame header (RFC 6455 §5.2): decode and encode, with no knowledge of roles.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Decoding only checks what the header alone can tell: the 64-bit length's most
//! significant bit and minimal length encoding are not judged here except for the MSB
//! (RFC 6455 §5.2: "the most significant bit MUST be 0"). Role rules (masking, RSV,
//! reserved opcodes, control-frame rules) live in [`crate::Connection`], which knows the
//! role and the negotiated extensions.

use crate::error::ProtocolError;

/// The longest possible header: 2 + 8 (length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a text data frame.
    Text,
    /// 0x2: a binary data frame.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// 0x3-0x7: reserved for further non-control frames.
    ReservedData(u8),
    /// 0xB-0xF: reserved for further control frames.
    ReservedControl(u8),
}

impl OpCode {
    /// The opcode of a 4-bit value (higher bits are ignored).
    pub fn from_u8(v: u8) -> Self {
        match v & 0x0f {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            v @ 0x3..=0x7 => Self::ReservedData(v),
            v => Self::ReservedControl(v),
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
            Self::ReservedData(v) | Self::ReservedControl(v) => v & 0x0f,
        }
    }

    /// Control frames have the most significant opcode bit set (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x08 != 0
    }

    /// Whether the opcode is one RFC 6455 defines.
    pub fn is_reserved(self) -> bool {
        matches!(self, Self::ReservedData(_) | Self::ReservedControl(_))
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A final, unmasked header with no RSV bits.
    pub fn new(opcode: OpCode, payload_len: u64) -> Self {
        Self { fin: true, rsv: 0, opcode, mask: None, payload_len }
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` holds only part of a header, or the header and the
    /// number of bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let total = 2 + ext + if masked { 4 } else { 0 };
        let Some(rest) = buf.get(2..total) else {
            return Ok(None);
        };
        let (len_bytes, mask_bytes) = rest.split_at(ext);
        let payload_len = match ext {
            2 => u64::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]])),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(len_bytes);
                let v = u64::from_be_bytes(b);
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if v >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                v
            }
            _ => u64::from(len7),
        };
        let mask = if masked {
            let mut k = [0u8; 4];
            k.copy_from_slice(mask_bytes);
            Some(k)
        } else {
            None
        };
        Ok(Some((
            Self {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0x07,
                opcode: OpCode::from_u8(b0),
                mask,
                payload_len,
            },
            total,
        )))
    }

    /// Bytes this header takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out`, returning the number of bytes written.
    ///
    /// The length is always written in its shortest form (RFC 6455 §5.2: "the minimal
    /// number of bytes MUST be used"). Returns `None` if `out` is shorter than
    /// [`Self::encoded_len`] or the length does not fit in 63 bits.
    pub fn encode_into(&self, out: &mut [u8]) -> Option<usize> {
        // §5.2: the most significant bit of a 64-bit length MUST be 0.
        if self.payload_len >> 63 != 0 {
            return None;
        }
        let n = self.encoded_len();
        let out = out.get_mut(..n)?;
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        match self.payload_len {
            len @ 0..=125 => out[1] = mask_bit | len as u8,
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                at = 4;
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                at = 10;
            }
        }
        if let Some(k) = self.mask {
            out[at..at + 4].copy_from_slice(&k);
        }
        Some(n)
    }

    /// Appends the header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = self.encode_into(&mut buf).unwrap_or(0);
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::decode(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.payload_len, n), (true, OpCode::Text, None, 5, 2));
        // A single-frame masked text message.
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f];
        let (h, n) = FrameHeader::decode(&masked).unwrap().unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // A fragmented unmasked text message: "Hel" then "lo".
        let (h, _) = FrameHeader::decode(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!h.fin && h.opcode == OpCode::Text);
        let (h, _) = FrameHeader::decode(&[0x80, 0x02]).unwrap().unwrap();
        assert!(h.fin && h.opcode == OpCode::Continuation);
        // 256 bytes binary message in a single unmasked frame.
        let (h, n) = FrameHeader::decode(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len, n), (OpCode::Binary, 256, 4));
        // 64KiB binary message in a single unmasked frame.
        let b = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        let (h, n) = FrameHeader::decode(&b).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
        // Unmasked ping and masked pong.
        let (h, _) = FrameHeader::decode(&[0x89, 0x05]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
        let (h, _) = FrameHeader::decode(&[0x8a, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Pong);
    }

    #[test]
    fn incomplete_is_none_at_every_offset() {
        let h =
            FrameHeader { mask: Some([9, 8, 7, 6]), ..FrameHeader::new(OpCode::Binary, 70_000) };
        let mut v = Vec::new();
        h.encode(&mut v);
        assert_eq!(v.len(), 14);
        for i in 0..v.len() {
            assert_eq!(FrameHeader::decode(&v[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(FrameHeader::decode(&v).unwrap(), Some((h, 14)));
    }

    #[test]
    fn msb_of_64_bit_length_must_be_zero() {
        let b = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(FrameHeader::decode(&b), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn minimal_length_encoding() {
        for (len, hl) in
            [(0u64, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (u32::MAX as u64, 10)]
        {
            let h = FrameHeader::new(OpCode::Binary, len);
            assert_eq!(h.encoded_len(), hl, "len {len}");
            let mut v = Vec::new();
            h.encode(&mut v);
            assert_eq!(FrameHeader::decode(&v).unwrap(), Some((h, hl)));
        }
    }

    #[test]
    fn opcodes_round_trip() {
        for v in 0..16u8 {
            let op = OpCode::from_u8(v);
            assert_eq!(op.as_u8(), v);
            assert_eq!(op.is_control(), v >= 8);
            assert_eq!(op.is_reserved(), matches!(v, 3..=7 | 0xb..=0xf));
        }
    }
}
