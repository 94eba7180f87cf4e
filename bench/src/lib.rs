//! Shared helpers for ringwire's benchmarks: payloads and wire buffers that every
//! implementation in a benchmark group is fed alike.
//!
//! The criterion suites live in `benches/` (`frame.rs`: decode, encode, masking;
//! `handshake.rs`: upgrade request parsing). `run-frame-benches.sh` runs them with a short
//! measurement and `bench-table.py` turns criterion's estimates into the markdown table of
//! `docs/BENCHMARKS.md`.

pub mod frame_echo;

/// The value after the first of `names` on a command line (`--clients 100`), parsed, or
/// `default`: the client benchmarks' (`client-idle`, `client-storm`, `client-echo`) only
/// argument parsing.
pub fn arg<T: std::str::FromStr>(args: &[String], names: &[&str], default: T) -> T {
    args.iter()
        .position(|a| names.contains(&a.as_str()))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use ringwire_frame::{encode_frame, OpCode};

/// Payload sizes of the protocol-core benchmarks: 16 B, 125 B (the largest 7-bit length),
/// 1 KiB, 16 KiB, 1 MiB.
pub const SIZES: [usize; 5] = [16, 125, 1024, 16 * 1024, 1024 * 1024];

/// Payload bytes per decode iteration: small frames are batched up to this many bytes so
/// that per-call overhead does not dominate and each implementation reads a buffer of
/// the same length.
pub const BATCH_BYTES: usize = 64 * 1024;

/// The masking key used by every client frame in the suite.
pub const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One JSON-like record with a few multi-byte characters (about 8% of its bytes are
/// non-ASCII): the kind of text chat and market-data servers carry.
const TEXT_UNIT: &str =
    r#"{"id":48213,"user":"zoë","room":"café","body":"naïve résumé ok, 日本 👍","seq":7},"#;

/// Valid UTF-8 text of exactly `len` bytes: `TEXT_UNIT` repeated, padded with ASCII.
pub fn text_payload(len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + TEXT_UNIT.len());
    while s.len() + TEXT_UNIT.len() <= len {
        s.push_str(TEXT_UNIT);
    }
    // Fill up with the ASCII prefix of the unit (`{"id":48213,"user":"zo` is ASCII).
    let pad = len - s.len();
    let ascii_pad: String = TEXT_UNIT.chars().take_while(char::is_ascii).collect();
    for c in ascii_pad.chars().cycle().take(pad) {
        s.push(c);
    }
    debug_assert_eq!(s.len(), len);
    s.into_bytes()
}

/// Binary payload of `len` bytes (a fixed byte pattern).
pub fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31).wrapping_add(7)) as u8).collect()
}

/// Number of frames of `size` bytes in one decode batch.
pub fn frames_per_batch(size: usize) -> usize {
    (BATCH_BYTES / size).max(1)
}

/// A buffer of `count` masked client frames (single-frame messages) carrying `payload`,
/// as a server reads them from the wire.
pub fn masked_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(count * (payload.len() + 14));
    for _ in 0..count {
        encode_frame(&mut wire, opcode, true, payload, Some(MASK_KEY));
    }
    wire
}

/// The RFC 6455 §1.2 opening handshake, with the headers a browser adds.
pub const BROWSER_REQUEST: &[u8] = b"GET /chat?room=42 HTTP/1.1\r\n\
Host: server.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://example.com\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Connection: keep-alive, Upgrade\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\
\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_exact_size_and_text_is_utf8() {
        for size in SIZES {
            let t = text_payload(size);
            assert_eq!(t.len(), size);
            assert!(std::str::from_utf8(&t).is_ok());
            assert_eq!(binary_payload(size).len(), size);
        }
        let t = text_payload(4096);
        let non_ascii = t.iter().filter(|b| !b.is_ascii()).count();
        assert!(non_ascii * 100 / t.len() >= 5, "{non_ascii}");
    }
}
