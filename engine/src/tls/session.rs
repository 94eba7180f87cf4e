//! One connection's TLS, sans-IO: ciphertext in, plaintext out, and the other way.
//!
//! rustls's unbuffered API does the protocol; this adds the buffering a receive ring
//! needs and no more. Records are processed straight out of the receive buffer; only a
//! record (or handshake message) cut by the end of a buffer is copied, into `incoming`,
//! which is freed again as soon as it has been processed, so an idle connection holds
//! the TLS state and no buffer. What is to be sent (handshake records, encrypted
//! messages, the rest of a partial write, close_notify) waits in `out`, also freed
//! when empty. After a TLS 1.3 handshake, rustls's connection is replaced by the
//! traffic keys alone and records are opened and sealed by ringwire's own record layer
//! (`tls/record.rs`).

use bytes::Bytes;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::Error as RustlsError;

use super::secrets::Captured;

/// Most received bytes held while a record or handshake message is incomplete. A TLS
/// record is at most 16 KiB + 256 bytes of ciphertext plus its 5-byte header; a
/// handshake message may span records, but a ClientHello or a certificate chain larger
/// than this is not one a WebSocket peer needs: the peer is cut off.
pub const MAX_INCOMING: usize = 64 * 1024;

/// Per record: its header (5), and the most a cipher adds (TLS 1.2 GCM: an 8-byte
/// explicit nonce and a 16-byte tag; TLS 1.3: the content type and a 16-byte tag).
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 1;
/// Largest TLS plaintext record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Why a TLS connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer broke the protocol, offered nothing acceptable, or presented a
    /// certificate that did not verify (rustls's reason).
    #[error("TLS: {0}")]
    Protocol(#[from] RustlsError),
    /// More than [`MAX_INCOMING`] bytes without a whole record or handshake message.
    #[error("TLS: over {MAX_INCOMING} bytes without a whole record")]
    Oversized,
    /// Application data to send before the handshake completed or after close_notify.
    #[error("TLS: the connection does not send application data now")]
    NotWritable,
    /// The traffic keys are used up (TLS 1.2 only; TLS 1.3 updates them).
    #[error("TLS: encryption keys exhausted")]
    Exhausted,
    /// The session failed before; it takes nothing more.
    #[error("TLS: the session failed earlier")]
    Dead,
}

/// Who does the records: rustls (the handshake, and TLS 1.2 throughout), or, after a
/// TLS 1.3 handshake, the traffic keys alone. rustls's connection is boxed: it is the
/// larger, and lives for the handshake only, while `Records` is what a connection keeps
/// for its life (inline, in the session's box: boxing it too would add an allocation
/// and a pointer to every idle connection).
#[allow(clippy::large_enum_variant)]
enum Side {
    Server(Box<Handshake<rustls::server::UnbufferedServerConnection>>),
    Client(Box<Handshake<rustls::client::UnbufferedClientConnection>>),
    Records(super::record::Records),
    /// Only while the handshake's connection is being converted.
    Gone,
}

/// rustls's connection, and the traffic secrets its key log gave out so far.
struct Handshake<C> {
    conn: C,
    captured: Captured,
}

/// What one call left the session with.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The handshake completed during this call.
    pub handshake_done: bool,
    /// With `handshake_done`: the key exchange the handshake agreed on.
    pub key_exchange: Option<rustls::NamedGroup>,
    /// There is ciphertext in [`TlsSession::out`] to send.
    pub wants_write: bool,
}

/// One connection's TLS state.
pub struct TlsSession {
    side: Side,
    /// Received bytes whose record (or handshake message) is not whole yet; empty,
    /// and unallocated, otherwise.
    incoming: Vec<u8>,
    /// Ciphertext to send before anything newer, in order.
    pub out: Vec<Bytes>,
    handshaking: bool,
    /// The peer sent close_notify: no more data comes from it.
    peer_closed: bool,
    /// We sent (queued) close_notify.
    closed: bool,
    /// An error ended the session: nothing more goes into rustls (its state may refer
    /// to bytes that are gone).
    dead: bool,
    /// rustls's last state was its traffic state, with nothing half-read.
    ready: bool,
    /// Hand TLS 1.3 records to [`super::record`] once the handshake is done (the
    /// configuration lets rustls give the secrets out).
    convert: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("server", &matches!(self.side, Side::Server(_)))
            .field("records", &matches!(self.side, Side::Records(_)))
            .field("handshaking", &self.handshaking)
            .field("incoming", &self.incoming.len())
            .field("out", &self.out.len())
            .finish()
    }
}

/// Drives one `process_tls_records` step of either side with the same code.
macro_rules! process {
    ($side:expr, $buf:expr, |$st:ident| $body:expr, else $other:expr) => {
        match $side {
            Side::Server(h) => {
                let Handshake { conn, captured } = &mut **h;
                Captured::clear_thread();
                let $st = conn.process_tls_records($buf);
                captured.take_from_thread();
                $body
            }
            Side::Client(h) => {
                let Handshake { conn, captured } = &mut **h;
                Captured::clear_thread();
                let $st = conn.process_tls_records($buf);
                captured.take_from_thread();
                $body
            }
            Side::Records(_) | Side::Gone => $other,
        }
    };
}

impl TlsSession {
    /// A server session under `config`. After a TLS 1.3 handshake it keeps the traffic
    /// keys only where `config` has `enable_secret_extraction` and a key log that catches
    /// the traffic secrets (those of [`super::TlsServerConfig`]); under any other
    /// configuration rustls keeps the whole session.
    pub fn server(config: std::sync::Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        let convert = config.enable_secret_extraction;
        let conn = rustls::server::UnbufferedServerConnection::new(config)?;
        Ok(Self::with(
            Side::Server(Box::new(Handshake { conn, captured: Captured::default() })),
            convert,
        ))
    }

    /// A client session to `name` (checked against the server's certificate) under
    /// `config`. Its ClientHello is in [`TlsSession::out`] at once.
    pub fn client(
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Self, TlsError> {
        let convert = config.enable_secret_extraction;
        let conn = rustls::client::UnbufferedClientConnection::new(config, name)?;
        let handshake = Handshake { conn, captured: Captured::default() };
        let mut s = Self::with(Side::Client(Box::new(handshake)), convert);
        s.receive(&mut [])?;
        Ok(s)
    }

    fn with(side: Side, convert: bool) -> Self {
        Self {
            side,
            incoming: Vec::new(),
            out: Vec::new(),
            handshaking: true,
            peer_closed: false,
            closed: false,
            dead: false,
            ready: false,
            convert,
        }
    }

    /// Whether the handshake is still going on (no application data either way).
    pub fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    /// Whether the peer sent close_notify (a clean end of its data, not a truncation).
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The TLS version agreed on, once the handshake is done.
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.side {
            Side::Server(h) => h.conn.protocol_version(),
            Side::Client(h) => h.conn.protocol_version(),
            Side::Records(_) => Some(rustls::ProtocolVersion::TLSv1_3),
            Side::Gone => None,
        }
    }

    /// The key exchange agreed on, while rustls's state is kept (after the handshake
    /// of a TLS 1.3 connection on its own records, [`Progress::key_exchange`] told it).
    fn key_exchange(&self) -> Option<rustls::NamedGroup> {
        let group = match &self.side {
            Side::Server(h) => h.conn.negotiated_key_exchange_group(),
            Side::Client(h) => h.conn.negotiated_key_exchange_group(),
            Side::Records(_) | Side::Gone => None,
        };
        group.map(|g| g.name())
    }

    /// Tests: a key update before the next record once `n` records were sealed.
    #[cfg(test)]
    pub(crate) fn force_key_update_after(&mut self, n: u32) {
        if let Side::Records(r) = &mut self.side {
            r.set_tx_limit(n);
        }
    }

    /// Tests: whether a client still keeps rustls's state for session tickets.
    #[cfg(test)]
    pub(crate) fn keeps_tickets(&self) -> bool {
        match &self.side {
            Side::Records(r) => r.keeps_tickets(),
            _ => true,
        }
    }

    /// The connection looks idle: its expanded record keys are dropped, and the next
    /// record each way derives and expands its key again from the traffic secret (a
    /// microsecond or so). Saves ~1 KiB per idle TLS 1.3 connection on its own records;
    /// does nothing otherwise (a handshake, TLS 1.2). The worker calls it when its
    /// heartbeat finds a connection silent, and when that heartbeat's pong arrives.
    pub fn rest(&mut self) {
        if let Side::Records(r) = &mut self.side {
            r.rest();
        }
    }

    /// Tests: whether each direction (receive, send) holds an expanded key.
    #[cfg(test)]
    pub(crate) fn keys_expanded(&self) -> Option<(bool, bool)> {
        match &self.side {
            Side::Records(r) => Some(r.expanded()),
            _ => None,
        }
    }

    /// Whether records are done by the traffic keys alone (after a TLS 1.3 handshake).
    pub fn on_own_records(&self) -> bool {
        matches!(self.side, Side::Records(_))
    }

    /// Bytes held: the partial record and the unsent ciphertext (for the figures).
    pub fn buffered(&self) -> usize {
        self.incoming.len() + self.out.iter().map(Bytes::len).sum::<usize>()
    }

    /// Capacity of the buffer for a partial record (0 when none is kept).
    pub fn incoming_capacity(&self) -> usize {
        self.incoming.capacity()
    }

    /// Takes received ciphertext `data` (which may be changed in place: records are
    /// decrypted there) and appends the plaintext it held to `plain`. Handshake
    /// answers go to [`TlsSession::out`]. On an error the session is dead; an alert
    /// for the peer may be in `out`.
    pub fn receive(&mut self, data: &mut [u8]) -> Result<(Progress, Vec<u8>), TlsError> {
        let mut plain = Vec::new();
        let p = self.receive_into(data, &mut plain)?;
        Ok((p, plain))
    }

    /// As [`TlsSession::receive`], appending to a caller's buffer.
    pub fn receive_into(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Progress, TlsError> {
        if self.dead {
            return Err(TlsError::Dead);
        }
        let r = self.receive_inner(data, plain);
        if r.is_err() {
            self.kill();
        }
        r
    }

    /// As [`TlsSession::receive_into`], but once the session does its own records
    /// (after a TLS 1.3 handshake) the application data stays in `data`: it is moved
    /// together there and its range is returned, so that the protocol core can take
    /// messages from the receive buffer itself. Plaintext that cannot stay there (that
    /// of a record completed from held bytes, and all of it before the handshake is
    /// done or with TLS 1.2) is appended to `plain` and comes first.
    pub fn receive_compact(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<(Progress, std::ops::Range<usize>), TlsError> {
        if self.dead {
            return Err(TlsError::Dead);
        }
        if !matches!(self.side, Side::Records(_)) {
            return self.receive_into(data, plain).map(|p| (p, 0..0));
        }
        let out_before = self.out.len();
        let r = self.compact_inner(data, plain);
        if r.is_err() {
            self.kill();
        }
        let range = r?;
        let wants_write = self.out.len() > out_before;
        Ok((Progress { wants_write, ..Progress::default() }, range))
    }

    fn compact_inner(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<std::ops::Range<usize>, TlsError> {
        let mut skip = 0;
        if !self.incoming.is_empty() {
            let Some(n) = self.rest_of_record().filter(|n| *n <= data.len()) else {
                let mut buf = std::mem::take(&mut self.incoming);
                buf.extend_from_slice(data);
                self.process_held(buf, plain)?;
                return Ok(0..0);
            };
            self.incoming.extend_from_slice(&data[..n]);
            let buf = std::mem::take(&mut self.incoming);
            self.process_held(buf, plain)?;
            if !self.incoming.is_empty() {
                // Not expected (the record was whole): keep everything in order.
                self.incoming.extend_from_slice(&data[n..]);
                return Ok(0..0);
            }
            skip = n;
        }
        if self.peer_closed {
            return Ok(0..0);
        }
        let rest = &mut data[skip..];
        let Side::Records(r) = &mut self.side else { return Ok(0..0) };
        let mut answer = Vec::new();
        let (opened, n) = r.open_compact(rest, &mut answer)?;
        if !answer.is_empty() {
            self.out.push(answer.into());
        }
        if opened.peer_closed {
            self.peer_closed = true;
        } else {
            if rest.len() - opened.used > MAX_INCOMING {
                return Err(TlsError::Oversized);
            }
            self.incoming.extend_from_slice(&rest[opened.used..]);
        }
        Ok(skip..skip + n)
    }

    /// Marks the session failed for good; its held bytes are freed.
    pub fn kill(&mut self) {
        self.dead = true;
        self.incoming = Vec::new();
    }

    fn receive_inner(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Progress, TlsError> {
        let was_handshaking = self.handshaking;
        let out_before = self.out.len();
        if self.incoming.is_empty() {
            // The common case: whole records, straight out of the receive buffer.
            self.process_and_keep(data, plain)?;
        } else if let Some(n) = self.rest_of_record().filter(|n| *n <= data.len()) {
            // A record was cut by the end of the last buffer: only its rest is copied to
            // complete it, and what follows is read in place again.
            self.incoming.extend_from_slice(&data[..n]);
            let mut buf = std::mem::take(&mut self.incoming);
            let used = self.process(&mut buf, plain)?;
            if used == buf.len() {
                self.process_and_keep(&mut data[n..], plain)?;
            } else {
                // rustls holds on to it (a handshake message that goes on in the next
                // record): everything stays in one buffer.
                buf.drain(..used);
                buf.extend_from_slice(&data[n..]);
                self.process_held(buf, plain)?;
            }
        } else {
            let mut buf = std::mem::take(&mut self.incoming);
            buf.extend_from_slice(data);
            self.process_held(buf, plain)?;
        }
        let handshake_done = was_handshaking && !self.handshaking;
        // Read before rustls's state may be dropped just below.
        let key_exchange = handshake_done.then(|| self.key_exchange()).flatten();
        if self.convert && self.ready && !self.handshaking && self.incoming.is_empty() {
            self.keep_keys_only()?;
        }
        Ok(Progress { handshake_done, key_exchange, wants_write: self.out.len() > out_before })
    }

    /// Processes `data` in place and keeps what rustls is not done with.
    fn process_and_keep(&mut self, data: &mut [u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let used = self.process(data, plain)?;
        if data.len() - used > MAX_INCOMING {
            return Err(TlsError::Oversized);
        }
        self.incoming.extend_from_slice(&data[used..]);
        Ok(())
    }

    /// Processes held bytes; keeps the rest (the buffer is freed when nothing is left).
    fn process_held(&mut self, mut buf: Vec<u8>, plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let used = self.process(&mut buf, plain)?;
        if buf.len() - used > MAX_INCOMING {
            return Err(TlsError::Oversized);
        }
        if used < buf.len() {
            buf.drain(..used);
            self.incoming = buf;
        }
        Ok(())
    }

    /// After the handshake, with a record's start held: how many more bytes complete
    /// it (`None` during the handshake, whose messages may span records, or before the
    /// record's header is whole).
    fn rest_of_record(&self) -> Option<usize> {
        let h = self.incoming.get(..5).filter(|_| !self.handshaking)?;
        let whole = 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
        whole.checked_sub(self.incoming.len()).filter(|n| *n > 0)
    }

    /// A TLS 1.3 connection whose handshake is over and whose rustls state is quiet
    /// (nothing half-read, nothing to send) keeps its traffic keys only.
    fn keep_keys_only(&mut self) -> Result<(), TlsError> {
        if self.version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            self.convert = false;
            return Ok(());
        }
        let captured = match &self.side {
            Side::Server(h) => h.captured.complete(),
            Side::Client(h) => h.captured.complete(),
            _ => false,
        };
        if !captured {
            // A configuration whose key log is not ringwire's: rustls keeps the session.
            self.convert = false;
            return Ok(());
        }
        let r = match std::mem::replace(&mut self.side, Side::Gone) {
            Side::Server(h) => super::record::Records::server(h.conn, h.captured),
            Side::Client(h) => super::record::Records::client(h.conn, h.captured),
            other => {
                self.side = other;
                return Ok(());
            }
        };
        self.side = Side::Records(r?);
        Ok(())
    }

    /// Runs rustls (or the record layer) over `buf` until it needs more bytes; returns
    /// how many bytes of `buf` it is done with.
    fn process(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> Result<usize, TlsError> {
        if let Side::Records(r) = &mut self.side {
            if self.peer_closed {
                return Ok(buf.len()); // nothing counts after close_notify
            }
            let mut answer = Vec::new();
            let o = r.open(buf, plain, &mut answer)?;
            if !answer.is_empty() {
                self.out.push(answer.into());
            }
            if o.peer_closed {
                self.peer_closed = true;
                return Ok(buf.len());
            }
            return Ok(o.used);
        }
        let mut used = 0;
        loop {
            let Self { side, out, handshaking, peer_closed, ready, .. } = self;
            let mut st = StepState { out, plain, handshaking, peer_closed, ready };
            let (discard, step) = process!(side, &mut buf[used..], |status| {
                let UnbufferedStatus { discard, state } = status;
                match state {
                    Ok(state) => match st.handle(state) {
                        Ok((step, extra)) => (discard + extra, Ok(step)),
                        Err(e) => (discard, Err(e)),
                    },
                    Err(e) => (discard, Err(e.into())),
                }
            }, else (0, Err(TlsError::Dead)));
            used += discard;
            match step {
                Ok(Step::Again) => {}
                Ok(Step::Stop) => return Ok(used),
                Err(e) => return Err(self.failed(e, &mut buf[used..])),
            }
        }
    }

    /// After an error: rustls has queued an alert telling the peer why; it goes to
    /// `out` (best effort) so the peer learns the reason before the socket closes.
    /// One call only: a second would read the bad input again.
    fn failed(&mut self, e: TlsError, buf: &mut [u8]) -> TlsError {
        let Self { side, out, .. } = self;
        process!(side, buf, |status| {
            if let Ok(ConnectionState::EncodeTlsData(mut enc)) = status.state {
                if let Ok(b) = encode(|b| enc.encode(b)) {
                    out.push(b);
                }
            }
        }, else ());
        e
    }

    /// Encrypts `chunks` (application data, in order) and appends the records to
    /// [`TlsSession::out`]. Small chunks are gathered into records of up to 16 KiB
    /// through `scratch` (a reused buffer), so a message's header and payload share
    /// one record.
    pub fn encrypt(&mut self, chunks: &[Bytes], scratch: &mut Vec<u8>) -> Result<(), TlsError> {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        if total == 0 {
            return Ok(());
        }
        if self.handshaking || self.closed || self.dead {
            return Err(TlsError::NotWritable);
        }
        if let Side::Records(r) = &mut self.side {
            let mut buf = Vec::new();
            if let Err(e) = r.seal(chunks, &mut buf) {
                self.kill();
                return Err(e);
            }
            self.out.push(buf.into());
            return Ok(());
        }
        let one = match chunks {
            [single] => Some(&single[..]),
            _ => None,
        };
        let plain: &[u8] = match one {
            Some(s) => s,
            None => {
                scratch.clear();
                for c in chunks {
                    scratch.extend_from_slice(c);
                }
                scratch
            }
        };
        let records = plain.len().div_ceil(MAX_FRAGMENT);
        let mut size = plain.len() + records * RECORD_OVERHEAD;
        let sealed = self.with_writer(|w| {
            for _ in 0..2 {
                let mut buf = vec![0u8; size];
                match w.encrypt(plain, &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                    Err(EncryptError::InsufficientSize(s)) => size = s.required_size,
                    Err(_) => return Err(TlsError::Exhausted),
                }
            }
            Err(TlsError::Exhausted)
        });
        match sealed {
            Ok(b) => {
                self.out.push(b.into());
                Ok(())
            }
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Queues close_notify (once): the end of our data, so that the peer can tell it
    /// from a truncation.
    pub fn close_notify(&mut self) {
        if self.closed || self.handshaking || self.dead {
            return;
        }
        self.closed = true;
        if let Side::Records(r) = &mut self.side {
            let mut buf = Vec::new();
            if r.seal_close_notify(&mut buf).is_ok() {
                self.out.push(buf.into());
            }
            return;
        }
        if let Ok(b) = self.with_writer(|w| {
            let mut buf = vec![0u8; 64];
            match w.queue_close_notify(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(_) => Err(TlsError::NotWritable),
            }
        }) {
            self.out.push(b.into());
        }
    }

    /// Runs `f` with rustls in its traffic state; handshake records rustls wants out
    /// first (a key update) are queued before.
    fn with_writer<T>(
        &mut self,
        mut f: impl FnMut(&mut dyn Writer) -> Result<T, TlsError>,
    ) -> Result<T, TlsError> {
        for _ in 0..8 {
            // Give rustls the held partial record, if any: it is the buffer it has
            // been reading (an empty one otherwise).
            let Self { side, out, incoming, .. } = self;
            let r = process!(side, &mut incoming[..], |status| {
                let UnbufferedStatus { discard, state } = status;
                debug_assert_eq!(discard, 0, "the held bytes were processed already");
                match state? {
                    ConnectionState::WriteTraffic(mut w) => Some(f(&mut w)),
                    ConnectionState::EncodeTlsData(mut e) => {
                        out.push(encode(|b| e.encode(b))?);
                        None
                    }
                    ConnectionState::TransmitTlsData(mut t) => match t.may_encrypt_app_data() {
                        Some(mut w) => Some(f(&mut w)),
                        None => {
                            t.done();
                            None
                        }
                    },
                    _ => Some(Err(TlsError::NotWritable)),
                }
            }, else Some(Err(TlsError::NotWritable)));
            if let Some(r) = r {
                return r;
            }
        }
        Err(TlsError::NotWritable)
    }
}

/// What [`TlsSession::process`] lends each state of rustls.
struct StepState<'a> {
    out: &'a mut Vec<Bytes>,
    plain: &'a mut Vec<u8>,
    handshaking: &'a mut bool,
    peer_closed: &'a mut bool,
    ready: &'a mut bool,
}

impl StepState<'_> {
    /// Handles one state; returns whether to go on, and the bytes the records read
    /// add to the status's discard.
    fn handle<D>(&mut self, state: ConnectionState<'_, '_, D>) -> Result<(Step, usize), TlsError> {
        let mut extra = 0;
        let step = match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec?;
                    extra += rec.discard;
                    self.plain.extend_from_slice(rec.payload);
                }
                Step::Again
            }
            ConnectionState::EncodeTlsData(mut e) => {
                self.out.push(encode(|b| e.encode(b))?);
                Step::Again
            }
            ConnectionState::TransmitTlsData(t) => {
                // Queued in `out`, which goes out before anything newer.
                t.done();
                Step::Again
            }
            ConnectionState::PeerClosed => {
                *self.peer_closed = true;
                Step::Again
            }
            ConnectionState::WriteTraffic(_) => {
                *self.handshaking = false;
                *self.ready = true;
                return Ok((Step::Stop, extra));
            }
            // 0-RTT data is not enabled (rustls's default `max_early_data_size` of 0),
            // so `ReadEarlyData` does not come.
            _ => Step::Stop,
        };
        *self.ready = false;
        Ok((step, extra))
    }
}

/// Whether to call rustls again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Again,
    Stop,
}

/// Both sides' `WriteTraffic`, as one type.
trait Writer {
    fn encrypt(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, EncryptError>;
    fn queue_close_notify(&mut self, out: &mut [u8]) -> Result<usize, EncryptError>;
}

impl<D> Writer for WriteTraffic<'_, D> {
    fn encrypt(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, EncryptError> {
        WriteTraffic::encrypt(self, plain, out)
    }

    fn queue_close_notify(&mut self, out: &mut [u8]) -> Result<usize, EncryptError> {
        WriteTraffic::queue_close_notify(self, out)
    }
}

/// A handshake record, encoded into a buffer of the size rustls asks for.
fn encode(mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) -> Result<Bytes, TlsError> {
    let mut size = 2048;
    for _ in 0..2 {
        let mut buf = vec![0u8; size];
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf.into());
            }
            Err(EncodeError::InsufficientSize(s)) => size = s.required_size,
            Err(EncodeError::AlreadyEncoded) => return Ok(Bytes::new()),
        }
    }
    Err(TlsError::NotWritable)
}
