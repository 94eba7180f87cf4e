//! Close frame payloads (RFC 6455 §5.5.1). The codes they carry are in `code.rs`, below
//! both this module and the errors: `error` maps each error to a code, and this module
//! parses into codes and errors, so neither needs the other's half (no import circle).

use crate::code::CloseCode;
use crate::error::{ProtocolError, SendError};

/// Longest close reason: a control payload is at most 125 bytes (RFC 6455 §5.5), two of
/// them the status code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The payload of a close frame with a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason, at most [`MAX_CLOSE_REASON`] bytes.
    pub reason: String,
}

impl CloseFrame {
    /// Whether this side may send a close with `code` and `reason`: a code allowed on the
    /// wire (not 1005, 1006, 1015 or unassigned, §7.4) and a reason of at most
    /// [`MAX_CLOSE_REASON`] bytes. [`crate::Connection::close`] checks the same, and a
    /// driver that queues a close for later can refuse a bad one at once with this.
    pub fn check(code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::ReasonTooLong(reason.len()));
        }
        Ok(())
    }

    /// Parses a received close payload. An empty payload is `Ok(None)` (status 1005).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload {
            [] => Ok(None),
            // §5.5.1: if there is a body, the first two bytes MUST be the status code.
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                // §5.5.1: the reason is UTF-8 encoded data.
                let reason =
                    std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
                Ok(Some(Self { code, reason: reason.to_owned() }))
            }
        }
    }

    /// Appends the close payload (code then reason) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_close_payloads() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        assert_eq!(CloseFrame::parse(&[0x03]), Err(ProtocolError::InvalidClosePayload));
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, b'o', b'k']),
            Ok(Some(CloseFrame { code: CloseCode::NORMAL, reason: "ok".into() }))
        );
        assert_eq!(CloseFrame::parse(&[0x03, 0xed]), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd]),
            Err(ProtocolError::InvalidCloseReason)
        );
    }
}
