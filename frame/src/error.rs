//! Errors, who is at fault, and the one place they map to close codes and close reasons.

use crate::code::CloseCode;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The peer sent something RFC 6455 forbids, or something over our limits.
    Peer,
    /// This side misused the API or failed internally.
    Local,
}

/// A violation of RFC 6455 or of a configured limit by the peer. Each one fails the
/// connection with the close code from [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.2: a 64-bit payload length with its most significant bit set.
    #[error("64-bit payload length has its most significant bit set")]
    InvalidLength,
    /// §5.1: a client sent an unmasked frame to a server.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// §5.1: a server sent a masked frame to a client.
    #[error("server frame is masked")]
    MaskedFrame,
    /// §5.2: RSV bits set (as the low three bits) without a negotiated extension.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// §5.2: an opcode RFC 6455 reserves.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.5: a control frame with a payload longer than 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// §5.5: a control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// §5.4: a continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame while a fragmented message is in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// §8.1: a text message (or a close reason) that is not valid UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// §5.5.1: a close frame whose payload is one byte long.
    #[error("close frame payload of one byte")]
    InvalidClosePayload,
    /// §7.4: a close code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// §5.5.1: a close reason that is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A frame longer than `max_frame_size`.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message longer than `max_message_size`.
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Bytes of the message so far, including the frame that went over.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// RFC 7692: a compressed message whose payload is not a valid DEFLATE stream.
    #[error("compressed message does not inflate")]
    InvalidCompressedData,
    /// The peer broke a rule of this endpoint's policy (e.g. an origin or rate check of
    /// the engine): close code 1008.
    #[error("policy violation: {0}")]
    Policy(&'static str),
}

impl ProtocolError {
    /// The close code this error sends (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            Self::Policy(_) => CloseCode::POLICY,
            Self::InvalidLength
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ReservedBits(_)
            | Self::ReservedOpcode(_)
            | Self::ControlFrameTooLong(_)
            | Self::FragmentedControlFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The reason sent with [`close_code`](Self::close_code) in the close frame that fails
    /// the connection: a few words naming the rule broken, ASCII and at most 123 bytes
    /// (§5.5: a control payload is at most 125 bytes, two of them the code). Not the
    /// `Display` text, which carries the peer's numbers: a reason "may be useful for
    /// debugging" and clients "MUST NOT show it to end users" (§5.5.1), so a fixed phrase
    /// per rule is what it needs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidLength => "payload length MSB set",
            Self::UnmaskedFrame => "unmasked client frame",
            Self::MaskedFrame => "masked server frame",
            Self::ReservedBits(_) => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::ControlFrameTooLong(_) => "control frame too long",
            Self::FragmentedControlFrame => "control frame fragmented",
            Self::UnexpectedContinuation => "unexpected continuation",
            Self::ExpectedContinuation => "expected continuation",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::InvalidClosePayload => "one-byte close payload",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidCloseReason => "close reason not UTF-8",
            Self::FrameTooLarge { .. } => "frame too big",
            Self::MessageTooLarge { .. } => "message too big",
            Self::InvalidCompressedData => "compressed data invalid",
            Self::Policy(_) => "policy violation",
        }
    }

    /// Every protocol error is the peer's fault.
    pub fn fault(&self) -> Fault {
        Fault::Peer
    }
}

/// A send that this side may not make. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent (RFC 6455 §5.5.1: no data frames after a close).
    #[error("the connection is closing or closed")]
    Closed,
    /// A control frame payload over 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close reason that, with the code, does not fit in 125 bytes.
    #[error("close reason of {0} bytes is too long (max 123)")]
    ReasonTooLong(usize),
    /// A client tried to send a shared, pre-encoded frame: client frames are masked per
    /// connection (RFC 6455 §5.3), so they cannot be shared.
    #[error("only a server can send shared pre-encoded frames")]
    ClientSharedFrame,
    /// A close code that may not be sent (1005, 1006, 1015 and unassigned ones).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
}

impl SendError {
    /// Send errors are always this side's fault.
    pub fn fault(&self) -> Fault {
        Fault::Local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant (the matches in `close_code` and `reason` have no wildcard, so
    /// a new variant does not compile until it has both; add it here too).
    fn all() -> Vec<ProtocolError> {
        use ProtocolError::*;
        vec![
            InvalidLength,
            UnmaskedFrame,
            MaskedFrame,
            ReservedBits(4),
            ReservedOpcode(3),
            ControlFrameTooLong(126),
            FragmentedControlFrame,
            UnexpectedContinuation,
            ExpectedContinuation,
            InvalidUtf8,
            InvalidClosePayload,
            InvalidCloseCode(1005),
            InvalidCloseReason,
            FrameTooLarge { size: 2, max: 1 },
            MessageTooLarge { size: 2, max: 1 },
            InvalidCompressedData,
            Policy("rate"),
        ]
    }

    #[test]
    fn every_error_has_a_short_ascii_reason_of_its_own() {
        let errors = all();
        let mut reasons: Vec<&str> = errors.iter().map(|e| e.reason()).collect();
        for (e, r) in errors.iter().zip(&reasons) {
            assert!(!r.is_empty() && r.len() <= 123 && r.is_ascii(), "{e:?}: {r:?}");
            assert!(r.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e:?}: {r:?}");
            assert!(e.close_code().is_valid_on_wire(), "{e:?}");
        }
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len(), "two errors share a reason");
    }
}
