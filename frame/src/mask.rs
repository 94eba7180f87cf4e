//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte `i` with `key[i % 4]`. The fast path works a `u64` word
//! at a time over `chunks_exact_mut(8)`, which LLVM turns into SIMD on x86-64, with no
//! `unsafe`. A payload that arrives in pieces is handled by [`apply_mask_offset`], which
//! takes the position of the first byte within the frame's payload.

/// XORs `buf` with the 4-byte mask `key`, starting at payload position 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_offset(buf, key, 0);
}

/// XORs `buf` with `key`, as if `buf` started at byte `offset` of the payload.
///
/// Returns the offset of the byte after `buf`, modulo 4, so that successive pieces can be
/// chained: `off = apply_mask_offset(piece, key, off)`.
#[inline]
pub fn apply_mask_offset(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let rot = offset & 3;
    // Rotate the key so that byte 0 of `buf` is masked with key[offset % 4].
    let k = [key[rot], key[(rot + 1) & 3], key[(rot + 2) & 3], key[(rot + 3) & 3]];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(w) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // Each chunk is 8 bytes, a multiple of 4, so the tail starts at key phase 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
    ((offset & 3) + (buf.len() & 3)) & 3
}

/// Copies `src` into `dst` while masking, as if `src` started at payload byte `offset`.
///
/// This fuses the copy out of a receive buffer with the unmasking, so payload bytes are
/// touched once. `dst` and `src` must have the same length (a shorter `dst` is a bug in the
/// caller; only the common prefix is written). Returns the next offset modulo 4.
#[inline]
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: usize) -> usize {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let rot = offset & 3;
    let k = [key[rot], key[(rot + 1) & 3], key[(rot + 2) & 3], key[(rot + 3) & 3]];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let mut w = [0u8; 8];
        w.copy_from_slice(sc);
        dc.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, (db, sb)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *db = *sb ^ k[i & 3];
    }
    ((offset & 3) + (n & 3)) & 3
}

/// The byte-at-a-time reference implementation the fast paths are tested against.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[((offset & 3) + (i & 3)) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    #[cfg_attr(miri, ignore = "4,512 cases of safe code: ~3 minutes under Miri")]
    fn matches_scalar_at_every_length_alignment_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let backing = pattern(300);
        for align in 0..8 {
            for len in 0..=(backing.len() - align).min(140) {
                for offset in 0..4 {
                    let mut fast = backing.clone();
                    let mut slow = backing.clone();
                    let next = apply_mask_offset(&mut fast[align..align + len], key, offset);
                    apply_mask_scalar(&mut slow[align..align + len], key, offset);
                    assert_eq!(fast, slow, "align {align} len {len} offset {offset}");
                    assert_eq!(next, (offset + len) % 4);

                    let mut dst = vec![0u8; len + align];
                    copy_masked(&mut dst[align..], &backing[align..align + len], key, offset);
                    assert_eq!(&dst[align..], &slow[align..align + len]);
                }
            }
        }
    }

    #[test]
    fn chained_pieces_equal_one_pass() {
        let key = [1, 2, 3, 4];
        let data = pattern(1000);
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        for split in [1usize, 3, 5, 7, 8, 13, 64, 999] {
            let mut pieces = data.clone();
            let mut off = 0;
            for chunk in pieces.chunks_mut(split) {
                off = apply_mask_offset(chunk, key, off);
            }
            assert_eq!(pieces, whole, "split {split}");
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message" carries "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&payload, b"Hello");
    }
}
