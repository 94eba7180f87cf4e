//! A receive buffer for tests of `Connection::handle_buffer` (shared by the test files
//! that `mod test_buffer;` it).

use std::ops::Range;

use bytes::Bytes;
use ringwire_frame::RecvBuffer;

/// A receive buffer that checks the [`RecvBuffer`] contract: ranges shared in order
/// without overlap, no bytes asked for before the end of a shared range, and no shared
/// byte changed afterwards. It shares what it is offered when `share` is set (a copy
/// stands in for memory shared with a driver's buffer) and declines otherwise.
pub struct TestBuffer {
    pub data: Vec<u8>,
    share: bool,
    /// What it shared: each range and the bytes handed out for it.
    pub shared: Vec<(Range<usize>, Bytes)>,
    shared_end: usize,
}

impl TestBuffer {
    pub fn new(data: &[u8], share: bool) -> Self {
        Self { data: data.to_vec(), share, shared: Vec::new(), shared_end: 0 }
    }

    /// Panics if a byte of a shared range changed after it was shared.
    pub fn check_shared_untouched(&self) {
        for (range, bytes) in &self.shared {
            assert_eq!(&self.data[range.clone()], &bytes[..], "a shared range changed");
        }
    }
}

impl RecvBuffer for TestBuffer {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        assert!(
            start >= self.shared_end,
            "asked for {start}.. after sharing ..{}",
            self.shared_end
        );
        &mut self.data[start..]
    }

    fn share(&mut self, range: Range<usize>) -> Option<Bytes> {
        assert!(range.start >= self.shared_end && range.end <= self.data.len(), "{range:?}");
        if !self.share {
            return None;
        }
        self.shared_end = range.end;
        let bytes = Bytes::copy_from_slice(&self.data[range.clone()]);
        self.shared.push((range, bytes.clone()));
        Some(bytes)
    }
}
