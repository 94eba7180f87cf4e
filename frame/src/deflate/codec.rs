//! The per-message codec (RFC 7692 §7.2): raw DEFLATE, each message ended with an empty
//! stored block whose `00 00 FF FF` is taken off on sending and put back on receiving.
//! Contexts are the thread's shared ones when the direction has no context takeover, a
//! connection's own ([`Contexts`]) otherwise.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{DeflateConfig, DeflateParams};
use crate::Role;

/// The end of every flushed message (§7.2.1), not sent on the wire.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (it was cut there; nothing more was allocated).
    TooBig,
    /// Not a valid DEFLATE stream.
    Corrupt,
}

/// A connection's own contexts (dedicated mode): created on first use, kept until the
/// connection ends.
#[derive(Default)]
pub(crate) struct Contexts {
    deflater: Option<Box<Compress>>,
    inflater: Option<Box<Decompress>>,
}

/// The thread's contexts for directions without context takeover: reset before every
/// message, so any connection of the thread may use them.
#[derive(Default)]
struct Shared {
    inflater: Option<Decompress>,
    /// By (window bits, level).
    deflaters: Vec<(u8, u8, Compress)>,
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

/// zlib cannot make a raw DEFLATE stream with a 256-byte window (it would use 512, which a
/// peer that asked for 8 may not read): with 8 agreed, we send uncompressed.
fn can_compress(window: u8) -> bool {
    window >= 9
}

/// Compresses one message for a connection of `role` with `params`: the deflated bytes
/// (tail removed) for a frame with RSV1, or `None` to send it as it is (shorter than
/// [`DeflateConfig::min_size`], a window zlib cannot honour, or, without context
/// takeover, no smaller compressed). `ctx` holds the connection's own contexts when it
/// keeps them.
pub(crate) fn compress(
    payload: &[u8],
    role: Role,
    params: DeflateParams,
    config: &DeflateConfig,
    ctx: Option<&mut Contexts>,
) -> Option<Vec<u8>> {
    let (no_takeover, window) = params.outbound(role);
    if payload.len() < config.min_size || !can_compress(window) {
        return None;
    }
    let level = Compression::new(u32::from(config.level.min(9)));
    match ctx {
        Some(ctx) if !no_takeover => {
            let d = ctx.deflater.get_or_insert_with(|| {
                Box::new(Compress::new_with_window_bits(level, false, window))
            });
            // With context takeover the peer's window holds this message once we send it
            // compressed, so it goes compressed whatever its size.
            Some(deflate(d, payload))
        }
        _ => SHARED.with(|s| {
            let mut s = s.borrow_mut();
            let key = (window, config.level.min(9));
            let i = match s.deflaters.iter().position(|(w, l, _)| (*w, *l) == key) {
                Some(i) => i,
                None => {
                    s.deflaters.push((
                        window,
                        key.1,
                        Compress::new_with_window_bits(level, false, window),
                    ));
                    s.deflaters.len() - 1
                }
            };
            let d = &mut s.deflaters[i].2;
            d.reset();
            let out = deflate(d, payload);
            (out.len() < payload.len()).then_some(out)
        }),
    }
}

/// Inflates one received message (its frames' payloads, joined) into `out`, at most
/// `limit` bytes.
pub(crate) fn decompress(
    data: &[u8],
    role: Role,
    params: DeflateParams,
    ctx: Option<&mut Contexts>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let (no_takeover, window) = params.inbound(role);
    match ctx {
        Some(ctx) if !no_takeover => {
            // Raw inflate takes windows from 9 (a stream made with 8 reads fine with 9).
            let d = ctx.inflater.get_or_insert_with(|| {
                Box::new(Decompress::new_with_window_bits(false, window.max(9)))
            });
            inflate(d, data, limit, out)
        }
        _ => SHARED.with(|s| {
            let mut s = s.borrow_mut();
            let d = s.inflater.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
            d.reset(false);
            let r = inflate(d, data, limit, out);
            if r.is_err() {
                d.reset(false);
            }
            r
        }),
    }
}

/// Deflates `input` with a sync flush and takes the flush's `00 00 FF FF` off.
fn deflate(d: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = d.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let used = (d.total_in() - start) as usize;
        // An in-memory compressor fails only on misuse (it is never finished here).
        if d.compress_vec(&input[used..], &mut out, FlushCompress::Sync).is_err() {
            break;
        }
        let done = (d.total_in() - start) as usize == input.len();
        // The flush is complete when all input is in and it stopped short of the room.
        if done && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// Inflates `input` and then the tail into `out`, never holding more than `limit` bytes
/// of output (room is taken as output grows, exactly, up to the limit plus one byte: the
/// byte that shows the message is too big).
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let base = out.len();
    for part in [input, &TAIL[..]] {
        let start = d.total_in();
        loop {
            let produced = out.len() - base;
            if produced > limit {
                return Err(InflateError::TooBig);
            }
            if out.len() == out.capacity() {
                let want = produced.max(input.len() * 2).clamp(4096, 1 << 20);
                out.reserve_exact(want.min(limit + 1 - produced));
            }
            let used = (d.total_in() - start) as usize;
            let before = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(&part[used..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() - base > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the stream: what follows, the tail
                // included, is not part of it. The context cannot go on after it.
                d.reset(false);
                return Ok(());
            }
            let all_in = (d.total_in() - start) as usize == part.len();
            if all_in && out.len() < out.capacity() {
                break;
            }
            if (d.total_in(), d.total_out()) == before && out.len() < out.capacity() {
                // No progress with input and room left: the stream is truncated or
                // broken.
                return Err(InflateError::Corrupt);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(no_takeover: bool, window: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: no_takeover,
            server_max_window_bits: window,
            client_max_window_bits: window,
        }
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "{{\"id\":{i},\"type\":\"trade\",\"symbol\":\"BTC-USD\",\"price\":{}.{},\"size\":0.{}}}\n",
                40_000 + i % 97,
                i % 100,
                i % 13
            ));
        }
        s.into_bytes()
    }

    #[test]
    fn shared_round_trip_shrinks_json() {
        let cfg = DeflateConfig::default();
        let p = params(true, 15);
        let msg = json(50);
        let z = compress(&msg, Role::Server, p, &cfg, None).expect("compressed");
        assert!(z.len() * 3 < msg.len(), "{} -> {}", msg.len(), z.len());
        assert!(!z.ends_with(&TAIL));
        let mut out = Vec::new();
        decompress(&z, Role::Client, p, None, 1 << 20, &mut out).unwrap();
        assert_eq!(out, msg);
        // Each message alone: the same bytes compress the same way twice.
        assert_eq!(compress(&msg, Role::Server, p, &cfg, None), Some(z));
    }

    #[test]
    fn small_and_incompressible_messages_go_as_they_are() {
        let cfg = DeflateConfig::default();
        let p = params(true, 15);
        assert_eq!(compress(&[b'a'; 100], Role::Server, p, &cfg, None), None, "under min_size");
        let mut noise = vec![0u8; 1000];
        let mut x = 0x1234_5678_u32;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        assert_eq!(compress(&noise, Role::Server, p, &cfg, None), None, "no smaller");
        assert_eq!(
            compress(&json(10), Role::Server, params(true, 8), &cfg, None),
            None,
            "window 8"
        );
    }

    #[test]
    fn takeover_contexts_carry_between_messages() {
        let cfg = DeflateConfig::default().context_takeover(true);
        let p = params(false, 15);
        let (mut tx, mut rx) = (Contexts::default(), Contexts::default());
        let msg = json(20);
        let first = compress(&msg, Role::Client, p, &cfg, Some(&mut tx)).unwrap();
        let second = compress(&msg, Role::Client, p, &cfg, Some(&mut tx)).unwrap();
        assert!(
            second.len() * 4 < first.len(),
            "the window remembers: {} then {}",
            first.len(),
            second.len()
        );
        for z in [first, second] {
            let mut out = Vec::new();
            decompress(&z, Role::Server, p, Some(&mut rx), 1 << 20, &mut out).unwrap();
            assert_eq!(out, msg);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "deflates 10 MiB at level 9: over 5 minutes under Miri")]
    fn a_bomb_is_cut_at_the_limit() {
        let cfg = DeflateConfig::default().level(9);
        let p = params(true, 15);
        let zeros = vec![0u8; 10 << 20];
        let z = compress(&zeros, Role::Client, p, &cfg, None).unwrap();
        assert!(z.len() < 20_000, "10 MiB of zeros in {} bytes", z.len());
        let mut out = Vec::new();
        assert_eq!(
            decompress(&z, Role::Server, p, None, 64 << 10, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(
            out.capacity() <= (64 << 10) + 1,
            "allocated {} for a 64 KiB limit",
            out.capacity()
        );
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        let z = compress(&zeros[..64 << 10], Role::Client, p, &cfg, None).unwrap();
        decompress(&z, Role::Server, p, None, 64 << 10, &mut out).unwrap();
        assert_eq!(out.len(), 64 << 10);
        // And the shared inflater works for the next message.
        let msg = json(5);
        let z = compress(&msg, Role::Client, p, &cfg, None).unwrap();
        let mut out = Vec::new();
        decompress(&z, Role::Server, p, None, 1 << 20, &mut out).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let p = params(true, 15);
        for junk in [&[0xffu8; 40][..], &[0x07], &[0x00, 0x05, 0x00, 0xfa, 0xff, 1, 2]] {
            let mut out = Vec::new();
            assert_eq!(
                decompress(junk, Role::Server, p, None, 1 << 20, &mut out),
                Err(InflateError::Corrupt),
                "{junk:?}"
            );
        }
        // An empty message compresses to the empty stored block (RFC 7692 §7.2.3.6
        // allows a single 0x00) and inflates to nothing.
        for z in [&[][..], &[0x00][..], &[0x02, 0x00][..]] {
            let mut out = Vec::new();
            decompress(z, Role::Server, p, None, 1 << 20, &mut out).unwrap();
            assert!(out.is_empty());
        }
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        let examples: [(&str, &[u8]); 3] = [
            ("§7.2.3.1: compressed, one frame", &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            (
                "§7.2.3.3: a stored block",
                &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00],
            ),
            (
                "§7.2.3.4: a final block, no tail needed",
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
        ];
        for (what, z) in examples {
            let mut out = Vec::new();
            decompress(z, Role::Client, params(true, 15), None, 100, &mut out).unwrap();
            assert_eq!(out, b"Hello", "{what}");
        }
    }
}
