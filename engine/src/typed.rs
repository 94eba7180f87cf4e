//! Typed messages on connections, with a codec from `ringwire-codec`: send a value in
//! JSON (text frames), CBOR or Protobuf (binary frames); decode what arrives, and answer
//! garbage with the close code the RFC asks for (1007, or 1003 for the wrong frame type).

use ringwire_codec::{Codec, DecodeError, EncodeError};
use ringwire_frame::Message;

use crate::handle::{ConnHandle, SendError};
use crate::handler::Ctx;

/// Why a typed send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedSendError {
    /// The value could not be encoded (this side's fault; nothing was sent).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The message was encoded but not queued.
    #[error(transparent)]
    Send(#[from] SendError),
}

impl Ctx<'_> {
    /// Encodes `value` with `codec` and queues it.
    pub fn send_as<T, C: Codec<T>>(&mut self, codec: &C, value: &T) -> Result<(), TypedSendError> {
        let msg = codec.encode_message(value)?;
        Ok(self.send(msg)?)
    }

    /// Decodes a received message with `codec`. If the peer sent something the codec
    /// cannot read, the connection is closed with the error's close code (1007 for bad
    /// contents, 1003 for a text message to a binary codec or the reverse) and the error
    /// is returned for logging.
    pub fn decode_or_close<T, C: Codec<T>>(
        &mut self,
        codec: &C,
        msg: &Message,
    ) -> Result<T, DecodeError> {
        codec.decode_message(msg).inspect_err(|e| {
            let _ = self.close(e.close_code(), "undecodable message");
        })
    }
}

impl ConnHandle {
    /// Encodes `value` with `codec` (on the calling thread) and sends it.
    pub fn send_as<T, C: Codec<T>>(&self, codec: &C, value: &T) -> Result<(), TypedSendError> {
        let msg = codec.encode_message(value)?;
        Ok(self.send(msg)?)
    }
}
