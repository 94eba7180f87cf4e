//! The outgoing byte queue: whole frames, in order, as shared chunks.
//!
//! Small frames are coalesced in `buf`; large server payloads handed over as `Bytes` are
//! queued without a copy. Control frames may be sent between the frames of a fragmented
//! message but never inside a frame, so the queue remembers which chunks start a frame.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Small frames are coalesced into allocations of at least this many bytes. A chunk handed
/// out by [`SendQueue::pop`] keeps sharing its allocation with the rest of `buf`, so the
/// frames that follow, on this connection or (through the thread's spare buffers) on the
/// next one to get busy, are written into the same memory: a burst of small frames costs
/// one allocation per `CHUNK` bytes instead of a reallocation per doubling of a buffer
/// that started empty. A chunk still queued or in flight keeps its allocation alive, so
/// this is also the most a chunk can pin beyond its own bytes.
pub(crate) const CHUNK: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    /// Chunks ready to go; `.1` is true where a chunk starts a frame.
    chunks: VecDeque<(Bytes, bool)>,
    /// Whole frames written after every chunk in `chunks`.
    pub(crate) buf: BytesMut,
    /// Bytes queued in total, for backpressure.
    len: usize,
}

impl SendQueue {
    /// Drops the chunk queue's storage if it grew past `items` (called on an empty queue
    /// that is about to be kept for reuse).
    pub(crate) fn trim(&mut self, items: usize) {
        if self.chunks.capacity() > items {
            self.chunks = VecDeque::new();
        }
    }

    /// What the queue retains while idle: the capacity of `buf` and of the chunk queue.
    pub(crate) fn retained(&self) -> usize {
        self.buf.capacity() + self.chunks.capacity() * std::mem::size_of::<(Bytes, bool)>()
    }

    /// `buf`, with room for at least `n` more bytes (see [`CHUNK`]).
    pub(crate) fn room(&mut self, n: usize) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < n {
            self.buf.reserve(n.max(CHUNK));
        }
        &mut self.buf
    }

    /// Appends whole frames with `encode`, which writes at most about `n` bytes into the
    /// buffer it is given (room for `n` is made first; more only grows it).
    pub(crate) fn write_frames(&mut self, n: usize, encode: impl FnOnce(&mut BytesMut)) {
        let buf = self.room(n);
        let before = buf.len();
        encode(buf);
        let written = buf.len() - before;
        self.len += written;
    }

    /// Appends one control frame of exactly `n` bytes with `encode`: into the rest of
    /// `buf` when it has room, else, when `buf` holds nothing, into an allocation of
    /// exactly `n` bytes, so that a heartbeat of an otherwise idle connection does not
    /// take a whole [`CHUNK`] that the thread's spare buffers would then keep.
    pub(crate) fn write_control(&mut self, n: usize, encode: impl FnOnce(&mut BytesMut)) {
        if self.buf.is_empty() && self.buf.capacity() < n {
            self.buf = BytesMut::with_capacity(n);
        }
        self.write_frames(n, encode);
    }

    /// Queues a frame header already in `buf` followed by a payload chunk, without copying
    /// the payload.
    pub(crate) fn push_header_and_payload(&mut self, header_len: usize, payload: Bytes) {
        // The header (and any whole frames before it) becomes a chunk that starts a frame.
        self.flush_buf();
        self.len += header_len + payload.len();
        if !payload.is_empty() {
            self.chunks.push_back((payload, false));
        }
    }

    /// Queues a whole pre-encoded frame without copying it.
    pub(crate) fn push_frame(&mut self, frame: Bytes) {
        self.flush_buf();
        self.len += frame.len();
        if !frame.is_empty() {
            self.chunks.push_back((frame, true));
        }
    }

    fn flush_buf(&mut self) {
        if !self.buf.is_empty() {
            let chunk = self.take_buf();
            self.chunks.push_back((chunk, true));
        }
    }

    /// The frames written to `buf`, as one chunk. The rest of a `CHUNK`-sized allocation
    /// stays in `buf` for the next frames; a larger one (a large frame) goes with the
    /// chunk, so that an idle connection's spare buffers never hold a large allocation
    /// alive through a small remainder.
    fn take_buf(&mut self) -> Bytes {
        if self.buf.capacity() > CHUNK {
            std::mem::take(&mut self.buf).freeze()
        } else {
            self.buf.split().freeze()
        }
    }

    /// Whether the next byte to go out starts a frame.
    pub(crate) fn at_frame_boundary(&self) -> bool {
        self.chunks.front().is_none_or(|c| c.1)
    }

    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let chunk = match self.chunks.pop_front() {
            Some((c, _)) => c,
            None if !self.buf.is_empty() => self.take_buf(),
            None => return None,
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}
