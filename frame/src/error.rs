//! Errors, who is at fault, and the one place they map to close codes.

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
    /// The peer broke a rule of this endpoint's policy (e.g. an origin or rate check of
    /// the engine): close code 1008.
    #[error("policy violation: {0}")]
    Policy(&'static str),
}

impl ProtocolError {
    /// The close code this error sends (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
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
