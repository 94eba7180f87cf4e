//! permessage-deflate on a connection (RFC 7692): the agreed parameters, compressing a
//! message on its way into the send queue, inflating one that arrived. The codec and the
//! negotiation are in `crate::deflate`.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::header::{OpCode, MAX_HEADER_LEN};

use super::{bufs, mask_source, Connection};

impl Connection {
    /// Turns permessage-deflate on with the parameters the handshake agreed
    /// ([`crate::deflate::accept_offer`] on a server, [`crate::deflate::accept_answer`]
    /// on a client), before any traffic: received messages with RSV1 are inflated (within
    /// [`crate::Config::max_message_size`]), and sent messages are compressed as
    /// [`crate::Config::deflate`] says (its defaults if it is `None`).
    pub fn set_deflate(&mut self, params: crate::DeflateParams) {
        self.deflate = params.pack();
        let takeover = self.config.deflate.as_ref().is_some_and(|d| d.context_takeover);
        let (out_fresh, _) = params.outbound(self.role);
        let (in_fresh, _) = params.inbound(self.role);
        if takeover && (!out_fresh || !in_fresh) {
            bufs(&mut self.bufs).contexts = Some(Box::default());
        }
    }

    /// The permessage-deflate parameters in use, if any.
    pub fn deflate_params(&self) -> Option<crate::DeflateParams> {
        crate::DeflateParams::unpack(self.deflate)
    }

    /// Queues `payload` compressed, with RSV1 on its first frame, if the codec takes it
    /// (see `crate::deflate::compress`); `false` to send it as it is.
    #[cold]
    pub(super) fn encode_compressed(&mut self, opcode: OpCode, payload: &[u8]) -> bool {
        let Some(params) = crate::DeflateParams::unpack(self.deflate) else { return false };
        let default = crate::DeflateConfig::default();
        let cfg = self.config.deflate.as_ref().unwrap_or(&default);
        let b = bufs(&mut self.bufs);
        let ctx = b.contexts.as_deref_mut();
        let Some(z) = crate::deflate::compress(payload, self.role, params, cfg, ctx) else {
            return false;
        };
        let frag = self.config.fragment_size;
        let masks = mask_source(self.role, &mut self.masks, b.custom_masks.as_mut());
        b.out.write_frames(z.len() + MAX_HEADER_LEN, |buf| {
            crate::encode::encode_message_rsv(buf, opcode, 0b100, &z, frag, masks)
        });
        true
    }

    /// Delivers the compressed message just received, inflated.
    #[cold]
    #[inline(never)]
    pub(super) fn deliver_inflated(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let data = self.inflate(data)?; // clears `msg_deflated`
        self.deliver(data)
    }

    /// Inflates the compressed message just received (RFC 7692 §7.2.2), within
    /// `max_message_size`, and feeds a text message to the UTF-8 check.
    fn inflate(&mut self, data: &[u8]) -> Result<Bytes, ProtocolError> {
        let params = crate::DeflateParams::unpack(self.deflate).unwrap_or_default();
        let max = self.config.max_message_size;
        let b = bufs(&mut self.bufs);
        b.msg_deflated = false;
        let mut out = Vec::new();
        let ctx = b.contexts.as_deref_mut();
        match crate::deflate::decompress(data, self.role, params, ctx, max, &mut out) {
            Ok(()) => {}
            Err(crate::deflate::InflateError::TooBig) => {
                return Err(ProtocolError::MessageTooLarge { size: max as u64 + 1, max })
            }
            Err(crate::deflate::InflateError::Corrupt) => {
                return Err(ProtocolError::InvalidCompressedData)
            }
        }
        if b.msg_opcode == Some(OpCode::Text) && b.utf8.feed(&out).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Bytes::from(out))
    }
}
