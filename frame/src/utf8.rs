//! Incremental UTF-8 validation that fails as soon as an invalid sequence arrives.
//!
//! RFC 6455 §8.1: when an endpoint finds that a text message is not valid UTF-8 it MUST
//! fail the connection. Autobahn (case group 6.4) checks that this happens on the first
//! bad byte, not at the end of the message, so a text message is validated as its bytes
//! arrive, across frames and across reads.
//!
//! The bulk of the work is `simdutf8` (SIMD validation, several times faster than
//! `core::str::from_utf8` on text with multi-byte characters). Only a code point split
//! across two pieces goes through the small `pending` buffer.

/// The text is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

/// Validates a byte stream piece by piece.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// Number of bytes in a UTF-8 sequence, from its lead byte; 0 for a byte that cannot lead.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Length of the prefix of `b` that ends on a code point boundary, judging by the lead
/// byte of the last sequence (whose validity is checked by the caller).
fn complete_prefix_len(b: &[u8]) -> usize {
    let n = b.len();
    for i in 1..=n.min(3) {
        let byte = b[n - i];
        if byte & 0xc0 != 0x80 {
            return if sequence_len(byte) > i { n - i } else { n };
        }
    }
    n
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any partial code point, for the next message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether a code point is left incomplete by the bytes fed so far.
    pub fn is_incomplete(&self) -> bool {
        self.pending_len != 0
    }

    /// Checks the next piece. Fails if the bytes so far can no longer be a prefix of valid
    /// UTF-8.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]);
            let take = (need - have).min(input.len());
            self.pending[have..have + take].copy_from_slice(&input[..take]);
            let filled = have + take;
            input = &input[take..];
            match core::str::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the input is used up.
                    self.pending_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        // Everything up to the start of a possibly incomplete last code point goes through
        // the SIMD validator; that tail (at most 3 bytes) must be a valid prefix and waits
        // in `pending` for the next piece.
        let cut = complete_prefix_len(input);
        if simdutf8::basic::from_utf8(&input[..cut]).is_err() {
            return Err(Utf8Error);
        }
        let tail = &input[cut..];
        if !tail.is_empty() {
            match core::str::from_utf8(tail) {
                Err(e) if e.error_len().is_none() => {}
                _ => return Err(Utf8Error),
            }
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Ends the message: fails if it stops inside a code point.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.is_incomplete();
        self.reset();
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_split(bytes: &[u8], split: usize) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for chunk in bytes.chunks(split.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let samples: Vec<Vec<u8>> = vec![
            "Hello-µ@ßöäüàá-UTF-8!!".into(),
            "κόσμε".into(),
            "\u{10ffff}\u{fffd}\u{7ff}\u{800}".into(),
            vec![
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xc0, 0xaf],
            vec![0xe0, 0x80, 0xaf],
            vec![0xf8, 0x88, 0x80, 0x80, 0x80],
            vec![0xce, 0xba, 0xe1],
            vec![0x80],
            vec![0xed, 0x9f, 0xbf, 0xee, 0x80, 0x80],
        ];
        for s in &samples {
            let want = core::str::from_utf8(s).is_ok();
            for split in 1..=s.len().max(1) {
                assert_eq!(validate_split(s, split).is_ok(), want, "{s:02x?} split {split}");
            }
        }
    }

    #[test]
    fn fails_fast_on_first_bad_byte() {
        // Autobahn 6.4.1: the 0xf4 0x90 prefix is already invalid (above U+10FFFF).
        let mut v = Utf8Validator::new();
        assert!(v
            .feed(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5])
            .is_ok());
        assert!(v.feed(&[0xf4]).is_ok());
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
        // A surrogate prefix fails at its second byte.
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xed]).is_ok());
        assert_eq!(v.feed(&[0xa0]), Err(Utf8Error));
    }

    #[test]
    fn truncated_message_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xe2, 0x82]).is_ok());
        assert_eq!(v.finish(), Err(Utf8Error));
        // and the validator is ready for the next message
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }
}
