//! TLS connections on a worker: their sessions beside the connection records, and the
//! two places bytes cross the TLS layer (a receive, a flush).
//!
//! A connection with TLS has its `tls` flag set and its session here, by slab slot, so
//! that a plain connection's record does not grow. Its plaintext goes through the same
//! paths as a plain connection's: received bytes are decrypted and then handled as if
//! they had come from the socket, and what `Conn::next_send` collects is encrypted
//! before it is sent. A send in flight is always ciphertext; what a partial write left
//! waits at the head of the session's queue.

use bytes::Bytes;
use ringwire_frame::RecvBuffer;

use super::{recycle, Core, Op};
use crate::conn::Phase;
use crate::log::Noisy;
use crate::slab::Key;
use crate::stats::WorkerStats;
use crate::tls::{TlsError, TlsSession};

/// TLS sessions by slab slot.
#[derive(Default)]
pub(crate) struct TlsTable {
    slots: Vec<Option<Box<TlsSession>>>,
    /// Gathers small plaintext chunks into one record.
    pub(crate) scratch: Vec<u8>,
    /// The plaintext of one receive.
    pub(crate) plain: Vec<u8>,
}

impl TlsTable {
    pub(crate) fn insert(&mut self, slot: u32, s: TlsSession) {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Box::new(s));
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&TlsSession> {
        self.slots.get(slot as usize)?.as_deref()
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut TlsSession> {
        self.slots.get_mut(slot as usize)?.as_deref_mut()
    }

    pub(crate) fn take(&mut self, slot: u32) -> Option<Box<TlsSession>> {
        self.slots.get_mut(slot as usize)?.take()
    }

    pub(crate) fn put(&mut self, slot: u32, s: Box<TlsSession>) {
        if let Some(x) = self.slots.get_mut(slot as usize) {
            *x = Some(s);
        }
    }

    pub(crate) fn remove(&mut self, slot: u32) {
        if let Some(x) = self.slots.get_mut(slot as usize) {
            *x = None;
        }
    }
}

/// What a receive on a TLS connection came to.
pub(crate) enum TlsRecv {
    /// Plaintext (maybe none) in `TlsTable::plain`, then in `in_place` of the receive
    /// buffer; `peer_closed` if close_notify came.
    Plain { peer_closed: bool, in_place: std::ops::Range<usize> },
    /// The session failed (rustls's reason): the connection is done.
    Failed(String),
}

/// A range of a receive buffer as a buffer of its own: the plaintext a TLS record
/// layer left in place, which the protocol core reads (and lends messages from) as it
/// would a plain connection's receive.
pub(crate) struct Window<'a> {
    pub(crate) inner: &'a mut dyn RecvBuffer,
    pub(crate) range: std::ops::Range<usize>,
}

impl RecvBuffer for Window<'_> {
    fn len(&self) -> usize {
        self.range.len()
    }

    fn bytes_from(&mut self, start: usize) -> &mut [u8] {
        let len = self.range.len();
        let b = self.inner.bytes_from(self.range.start + start.min(len));
        let n = (len - start.min(len)).min(b.len());
        &mut b[..n]
    }

    fn share(&mut self, range: std::ops::Range<usize>) -> Option<Bytes> {
        if range.end > self.range.len() {
            return None;
        }
        let at = self.range.start;
        self.inner.share(at + range.start..at + range.end)
    }

    fn min_share(&self) -> usize {
        self.inner.min_share()
    }
}

impl Core {
    /// Gives the accepted connection `key` a server session, if the engine serves TLS.
    pub(crate) fn tls_accept(&mut self, key: Key) -> bool {
        let Some(cfg) = &self.config.tls else { return true };
        match cfg.session() {
            Ok(s) => {
                self.tls.insert(key.slot, s);
                if let Some(c) = self.conns.get_mut(key) {
                    c.set_tls(true);
                }
                true
            }
            Err(e) => {
                self.tls_failed(&e);
                false
            }
        }
    }

    /// Client `key` connected to a `wss://` target: a client session for `host`, whose
    /// ClientHello goes out first.
    pub(crate) fn tls_dial(
        &mut self,
        key: Key,
        cfg: &crate::tls::TlsClientConfig,
        host: &str,
    ) -> Result<(), TlsError> {
        let s = cfg.session(host)?;
        self.tls.insert(key.slot, s);
        if let Some(c) = self.conns.get_mut(key) {
            c.set_tls(true);
        }
        self.mark_dirty(key);
        Ok(())
    }

    /// Decrypts what arrived on `key` into `self.tls.plain` (cleared first).
    pub(crate) fn tls_recv(&mut self, key: Key, data: &mut [u8]) -> TlsRecv {
        let Some(mut s) = self.tls.take(key.slot) else {
            return TlsRecv::Failed("no TLS session".into());
        };
        let mut plain = std::mem::take(&mut self.tls.plain);
        plain.clear();
        // rustls is not expected to panic, but one connection's input must not take the
        // worker down if it does: the connection fails instead.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.receive_compact(data, &mut plain)
        }))
        .unwrap_or_else(|_| {
            s.kill();
            Err(TlsError::Dead)
        });
        let peer_closed = s.peer_closed();
        let wants_write = !s.out.is_empty();
        self.tls.put(key.slot, s);
        // One receive's worth is kept for the next (a receive buffer or two).
        if plain.capacity() > 256 * 1024 {
            plain = Vec::new();
        }
        self.tls.plain = plain;
        match r {
            Ok((p, in_place)) => {
                if p.handshake_done {
                    WorkerStats::add(&self.stats.tls_handshakes, 1);
                    if p.key_exchange.is_some_and(crate::tls::is_post_quantum) {
                        WorkerStats::add(&self.stats.tls_handshakes_post_quantum, 1);
                    }
                }
                if wants_write || p.handshake_done {
                    self.mark_dirty(key);
                }
                TlsRecv::Plain { peer_closed, in_place }
            }
            Err(e) => {
                self.tls_failed(&e);
                if wants_write {
                    self.mark_dirty(key);
                }
                TlsRecv::Failed(e.to_string())
            }
        }
    }

    /// `key`'s connection looks idle (its heartbeat is due, or just answered): a TLS
    /// connection drops its expanded record keys until its next record
    /// (`TlsSession::rest`).
    pub(crate) fn tls_rest(&mut self, key: Key) {
        if let Some(s) = self.tls.get_mut(key.slot) {
            s.rest();
        }
    }

    /// As [`Core::tls_rest`], and again once what is queued next is sealed (a heartbeat
    /// about to go out).
    pub(crate) fn tls_rest_after_send(&mut self, key: Key) {
        if let Some(s) = self.tls.get_mut(key.slot) {
            s.rest();
            if let Some(c) = self.conns.get_mut(key) {
                c.set_rest_keys(true);
            }
        }
    }

    fn tls_failed(&mut self, e: &TlsError) {
        WorkerStats::add(&self.stats.tls_failures, 1);
        if let Some(suppressed) = self.log_limits.allow(Noisy::TlsFailed, self.now) {
            tracing::info!(worker = self.id, error = %e, suppressed, "TLS connection failed");
        }
    }

    /// `flush_one` for a TLS connection: encrypts what the connection has to send (once
    /// the handshake is done) and sends the session's queue, one send at a time.
    pub(crate) fn tls_flush(&mut self, key: Key) -> bool {
        let Some(c) = self.conns.get_mut(key) else { return false };
        let Some(s) = self.tls.slots.get_mut(key.slot as usize).and_then(|s| s.as_deref_mut())
        else {
            return false;
        };
        if c.sending() {
            return c.became_writable(self.limits.low_watermark);
        }
        let mut failed = None;
        if !s.is_handshaking() {
            let mut plain = self.vec_pool.pop().unwrap_or_default();
            if c.next_send(&mut plain, &self.limits, &self.stats) {
                c.set_inflight(0);
                let scratch = &mut self.tls.scratch;
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    s.encrypt(&plain, scratch)
                }))
                .unwrap_or_else(|_| {
                    s.kill();
                    Err(TlsError::Dead)
                });
                if let Err(e) = r {
                    failed = Some(e);
                } else if c.rest_keys() && c.unsent_is_empty() {
                    // The 101 (and what the handler sent with it), or the heartbeat, is
                    // sealed.
                    c.set_rest_keys(false);
                    s.rest();
                }
            }
            recycle(&mut self.vec_pool, plain);
            // The WebSocket part is over and its last bytes are encrypted: close_notify
            // ends the TLS stream cleanly before the socket closes.
            if matches!(c.phase, Phase::Draining { .. }) && c.unsent_is_empty() {
                s.close_notify();
            }
        }
        if !s.out.is_empty() {
            let mut chunks = self.vec_pool.pop().unwrap_or_default();
            let mut bytes = 0;
            let n = s.out.len().min(self.limits.max_chunks);
            for b in s.out.drain(..n) {
                bytes += b.len();
                chunks.push(b);
            }
            if s.out.is_empty() {
                s.out = Vec::new(); // an idle connection keeps no queue
            }
            c.set_inflight(bytes);
            self.ops.push(Op::Send(key, chunks));
        }
        let writable = c.became_writable(self.limits.low_watermark);
        let drained = c.drained() && s.out.is_empty();
        if let Some(e) = failed {
            self.tls_failed(&e);
            self.begin_close(key);
        } else if drained {
            self.begin_close(key);
        }
        writable
    }

    /// A TLS connection's send wrote `n` bytes of `chunks`: the rest goes back to the
    /// head of the session's queue.
    pub(crate) fn tls_sent(&mut self, key: Key, n: usize, chunks: &mut Vec<Bytes>) {
        let Some(c) = self.conns.get_mut(key) else { return };
        c.set_inflight(0);
        if c.closing() {
            return;
        }
        let Some(s) = self.tls.get_mut(key.slot) else { return };
        let mut rest = crate::conn::unwritten(n, chunks);
        if !rest.is_empty() {
            rest.append(&mut s.out);
            s.out = rest;
        }
    }

    /// A connection's TLS failed during its handshake (a server's, or a client's that
    /// refused the certificate): the alert goes out, then the socket closes (within the
    /// linger of a refused upgrade).
    pub(crate) fn tls_abandon(&mut self, key: Key) {
        let deadline = self.now + super::REJECT_LINGER;
        let Some(c) = self.conns.get_mut(key) else { return };
        c.give_up(deadline);
        self.timers.unschedule(key);
        self.mark_dirty(key);
        self.schedule(key);
    }

    /// The peer's TCP stream ended on TLS connection `key`: counted as a truncation if
    /// close_notify did not come first while the WebSocket was still open.
    pub(crate) fn tls_eof(&mut self, key: Key) {
        let open = self
            .conns
            .get(key)
            .is_some_and(|c| matches!(&c.phase, Phase::Open(ws) if !ws.is_closed()));
        if let Some(s) = self.tls.get_mut(key.slot) {
            if open && !s.peer_closed() {
                WorkerStats::add(&self.stats.tls_truncations, 1);
            }
        }
    }
}
