//! permessage-deflate (RFC 7692), without I/O: the negotiation ([`accept_offer`],
//! [`offer`], [`accept_answer`]) and the per-message codec a [`crate::Connection`] uses
//! once [`crate::Connection::set_deflate`] gave it the agreed [`DeflateParams`].
//!
//! # Memory: shared or dedicated contexts
//!
//! A deflate context that keeps its window between messages ("context takeover") costs
//! hundreds of KiB per connection (both contexts of a connection, zlib-rs, measured by
//! `frame/tests/deflate_memory.rs`: ~423 KiB at window 15, ~303 KiB at window 11). A
//! gateway holding a million mostly idle connections cannot pay that. So, like uWebSockets, there are two modes ([`DeflateConfig`]):
//!
//! - **Shared** (the default, [`DeflateConfig::context_takeover`] off): the server
//!   answers every offer with `server_no_context_takeover; client_no_context_takeover`
//!   (RFC 7692 §7.1.1 lets it add both), so every message is compressed and
//!   decompressed on its own. One compressor (per window size and level) and one
//!   decompressor per thread serve all of that thread's connections; a connection keeps
//!   only the 2 bytes of its agreed parameters, inside the `Connection` it already had:
//!   idle memory does not change.
//! - **Dedicated** (`context_takeover(true)`): each connection keeps its own contexts
//!   for as long as it lives (better ratios on streams of similar messages), with the
//!   window [`DeflateConfig::window_bits`] chosen to bound them.
//!
//! A compressed message's inflated size is bounded by [`crate::Config::max_message_size`]
//! as it is inflated: a small frame that would inflate past it (a "decompression bomb")
//! fails the connection with 1009 before more than the limit is allocated.

mod codec;
mod negotiate;

pub use negotiate::{accept_answer, accept_offer, offer, DeflateError};

pub(crate) use codec::{compress, decompress, Contexts, InflateError};

/// For fan-out: `frame` (an unmasked, unfragmented server data frame, as
/// [`crate::encode_shared`] makes it) compressed for every connection whose agreed
/// parameters say `server_no_context_takeover` and a server window of `window` bits,
/// encoded once with RSV1 like it. `None` when such connections get `frame` as it is
/// (too small, a window zlib cannot make, no smaller compressed, not such a frame).
/// Connections that keep a context get `frame` as it is as well: an uncompressed
/// message leaves the context alone (RFC 7692 §7.2.3.1 puts only compressed messages
/// through it).
pub fn compress_frame(frame: &[u8], window: u8, config: &DeflateConfig) -> Option<bytes::Bytes> {
    let (h, n) = crate::FrameHeader::decode(frame).ok()??;
    if !h.fin || h.rsv != 0 || h.mask.is_some() || h.opcode.is_control() {
        return None;
    }
    let payload = frame.get(n..)?;
    let params = DeflateParams {
        server_no_context_takeover: true,
        server_max_window_bits: window,
        ..DeflateParams::default()
    };
    let z = compress(payload, crate::Role::Server, params, config, None)?;
    Some(crate::encode_shared_rsv(h.opcode, 0b100, &z))
}

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// What this end is willing to do; kept in [`crate::Config::deflate`] (the same for all
/// connections of a configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Keep each connection's compression contexts between messages (dedicated mode).
    /// Default `false`: shared per-thread contexts, no state per idle connection.
    pub context_takeover: bool,
    /// LZ77 window of dedicated contexts, 9 to 15 (2^bits bytes). Default 15. A smaller
    /// window shrinks a connection's contexts (~423 KiB at 15, ~303 KiB at 11: the
    /// compressor's hash table and buffers do not shrink with it) at some cost in ratio.
    pub window_bits: u8,
    /// zlib compression level, 0 (store) to 9. Default 1: the CPU per message matters
    /// more to a gateway than the last percent of ratio.
    pub level: u8,
    /// Messages shorter than this go uncompressed (RSV1 clear): a deflate header and the
    /// CPU are not worth it on small messages. Default 128 bytes.
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self { context_takeover: false, window_bits: 15, level: 1, min_size: 128 }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::context_takeover`].
    pub fn context_takeover(mut self, on: bool) -> Self {
        self.context_takeover = on;
        self
    }
    /// Sets [`DeflateConfig::window_bits`] (clamped to 9..=15).
    pub fn window_bits(mut self, bits: u8) -> Self {
        self.window_bits = bits.clamp(9, 15);
        self
    }
    /// Sets [`DeflateConfig::level`] (clamped to 0..=9).
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }
    /// Sets [`DeflateConfig::min_size`].
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }
}

/// The parameters both ends agreed on for one connection (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server compresses every message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses every message on its own.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8 to 15 (15 unless limited).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 8 to 15 (15 unless limited).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// Packed into 16 bits (so that a connection keeps them in its padding): bit 15 says
    /// they are set, bits 0 and 1 the takeovers, 4-7 and 8-11 the windows.
    pub(crate) fn pack(self) -> u16 {
        (1 << 15)
            | u16::from(self.server_no_context_takeover)
            | u16::from(self.client_no_context_takeover) << 1
            | u16::from(self.server_max_window_bits & 15) << 4
            | u16::from(self.client_max_window_bits & 15) << 8
    }

    /// The parameters [`DeflateParams::pack`] packed, if any.
    pub(crate) fn unpack(v: u16) -> Option<Self> {
        (v & (1 << 15) != 0).then_some(Self {
            server_no_context_takeover: v & 1 != 0,
            client_no_context_takeover: v & 2 != 0,
            server_max_window_bits: ((v >> 4) & 15) as u8,
            client_max_window_bits: ((v >> 8) & 15) as u8,
        })
    }

    /// (no context takeover, window bits) of what `role` sends.
    pub(crate) fn outbound(&self, role: crate::Role) -> (bool, u8) {
        match role {
            crate::Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            crate::Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }

    /// (no context takeover, window bits) of what `role` receives.
    pub(crate) fn inbound(&self, role: crate::Role) -> (bool, u8) {
        match role {
            crate::Role::Server => (self.client_no_context_takeover, self.client_max_window_bits),
            crate::Role::Client => (self.server_no_context_takeover, self.server_max_window_bits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_pack_into_sixteen_bits() {
        for snct in [false, true] {
            for cnct in [false, true] {
                for s in 8..=15 {
                    for c in 8..=15 {
                        let p = DeflateParams {
                            server_no_context_takeover: snct,
                            client_no_context_takeover: cnct,
                            server_max_window_bits: s,
                            client_max_window_bits: c,
                        };
                        assert_eq!(DeflateParams::unpack(p.pack()), Some(p));
                    }
                }
            }
        }
        assert_eq!(DeflateParams::unpack(0), None);
    }
}
