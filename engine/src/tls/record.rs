//! The TLS 1.3 record layer after the handshake (RFC 8446 §5), with the AEADs of *ring*
//! (or AWS-LC: `super::crypto`).
//!
//! Once rustls has finished a TLS 1.3 handshake, the session keeps only the traffic
//! keys and secrets (`secrets.rs`: a KeyUpdate derives the next keys from them), and
//! does the records itself: a record is opened in place where it was received, and
//! sealed in place in the send allocation the plaintext is gathered into. That drops
//! rustls's per-connection state (~2 KiB) and its copies per record. TLS 1.2
//! connections stay with rustls throughout.
//!
//! Handled after the handshake, as RFC 8446 asks: application data; alerts
//! (close_notify ends the peer's data, any other is an error); KeyUpdate (new receive
//! keys, and ours are updated too when the peer asks); NewSessionTicket on a client
//! (handed to rustls, so that a reconnect can resume: a client keeps rustls's
//! `KernelConnection` for it until the server's first application data, before which
//! servers send their tickets; a later ticket is not kept). Anything else, a record that does not open, or a plaintext
//! record is an error. Before a key has sealed as many records as its cipher's
//! confidentiality limit allows, a KeyUpdate replaces it.

use super::crypto::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::ConnectionTrafficSecrets;

use super::secrets::{hkdf_of, Captured, Secret};
use super::session::TlsError;

/// Largest plaintext in one record.
pub(crate) const MAX_FRAGMENT: usize = 16 * 1024;
/// Largest ciphertext of a TLS 1.3 record (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
/// What sealing adds to a record: its header, the inner content type, the tag.
pub(crate) const OVERHEAD: usize = 5 + 1 + 16;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
const NEW_SESSION_TICKET: u8 = 4;

fn protocol(e: rustls::Error) -> TlsError {
    TlsError::Protocol(e)
}

fn bad(what: &'static str) -> TlsError {
    TlsError::Protocol(rustls::Error::General(what.into()))
}

/// One direction's key, IV, record number and traffic secret.
///
/// The key is kept expanded (its AES key schedule and GHASH table, or ChaCha20's key:
/// ~540 bytes with *ring*) only while the connection is in use: [`Keys::rest`] drops it
/// and the next record derives it again from the secret (one HKDF-Expand and the
/// expansion, about a microsecond), so an idle connection holds its secrets and no
/// expanded key. The worker rests a connection's keys when its heartbeat finds it
/// silent and when the answer to that heartbeat has come (see `Records::rest`).
struct Keys {
    key: Option<Box<LessSafeKey>>,
    alg: &'static aead::Algorithm,
    iv: [u8; 12],
    seq: u64,
    secret: Secret,
}

impl Keys {
    /// The keys rustls hands over, checked against those derived from the captured
    /// `secret` (a secret that is not this connection's does not pass).
    fn checked(
        (seq, given): (u64, ConnectionTrafficSecrets),
        secret: Option<Secret>,
    ) -> Result<Self, TlsError> {
        let (alg, key, iv) = match &given {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(bad("cipher suite not supported by the record layer")),
        };
        let secret = secret.ok_or_else(|| bad("traffic secret not captured"))?;
        let (k, i) = secret.key_iv(hkdf_of(alg), alg);
        if k.as_slice() != key.as_ref() || i[..] != *iv.as_ref() {
            return Err(bad("captured traffic secret does not match the connection's keys"));
        }
        Self::with(alg, k.as_slice(), i, seq, secret)
    }

    /// The keys of `secret`, from record number `seq` on.
    fn new(alg: &'static aead::Algorithm, secret: Secret, seq: u64) -> Result<Self, TlsError> {
        let (key, iv) = secret.key_iv(hkdf_of(alg), alg);
        Self::with(alg, key.as_slice(), iv, seq, secret)
    }

    fn with(
        alg: &'static aead::Algorithm,
        key: &[u8],
        iv: [u8; 12],
        seq: u64,
        secret: Secret,
    ) -> Result<Self, TlsError> {
        Ok(Self { key: Some(expand(alg, key)?), alg, iv, seq, secret })
    }

    /// The keys after a KeyUpdate: the next secret's, from record 0 (§4.6.3).
    fn updated(&self) -> Result<Self, TlsError> {
        Self::new(self.alg, self.secret.next(hkdf_of(self.alg)), 0)
    }

    /// The expanded key, made again from the secret if it was rested.
    fn key(&mut self) -> Result<&LessSafeKey, TlsError> {
        let key = match self.key.take() {
            Some(k) => k,
            None => expand(self.alg, self.secret.key(hkdf_of(self.alg), self.alg).as_slice())?,
        };
        Ok(self.key.insert(key))
    }

    /// Drops the expanded key until the next record needs it.
    fn rest(&mut self) {
        self.key = None;
    }

    /// The per-record nonce (RFC 8446 §5.3), and the next record number.
    fn next_nonce(&mut self) -> Result<Nonce, TlsError> {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(TlsError::Exhausted)?;
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// `key` expanded for `alg`, on the heap (so that a rested key costs a pointer).
fn expand(alg: &'static aead::Algorithm, key: &[u8]) -> Result<Box<LessSafeKey>, TlsError> {
    let key = UnboundKey::new(alg, key).map_err(|_| bad("bad traffic key"))?;
    Ok(Box::new(LessSafeKey::new(key)))
}

/// The record layer of one TLS 1.3 connection after its handshake.
pub(crate) struct Records {
    rx: Keys,
    tx: Keys,
    /// A client's rustls connection, kept for the session tickets that come after the
    /// handshake (they go to the configuration's resumption store) until the server's
    /// first data; `None` on a server, and on a client after that.
    tickets: Option<Box<KernelConnection<ClientConnectionData>>>,
    /// This is a client's record layer.
    client: bool,
    /// Records one key may seal (the cipher suite's confidentiality limit, less a
    /// margin); a KeyUpdate goes out first when `tx.seq` reaches it.
    /// (At most `u32::MAX`: AES-GCM's limit is 2^24.5 records; ChaCha20-Poly1305 has
    /// none that matters, and an update every 2^32 records costs nothing.)
    tx_limit: u32,
}

/// Where the application data of opened records goes.
enum Plain<'a> {
    /// Appended to a buffer.
    Append(&'a mut Vec<u8>),
    /// Moved to the front of the buffer the records are in, from this offset on.
    Front(&'a mut usize),
}

/// What opening the records of a buffer came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Bytes of whole records consumed.
    pub(crate) used: usize,
    /// The peer sent close_notify.
    pub(crate) peer_closed: bool,
}

impl Records {
    fn from_parts(
        secrets: rustls::ExtractedSecrets,
        mut captured: Captured,
        server: bool,
        tickets: Option<Box<KernelConnection<ClientConnectionData>>>,
        suite: rustls::SupportedCipherSuite,
    ) -> Result<Self, TlsError> {
        let (rx, tx) = if server {
            (captured.client.take(), captured.server.take())
        } else {
            (captured.server.take(), captured.client.take())
        };
        let limit = suite.tls13().map_or(u64::MAX, |s| s.common.confidentiality_limit);
        Ok(Self {
            rx: Keys::checked(secrets.rx, rx)?,
            tx: Keys::checked(secrets.tx, tx)?,
            tickets,
            client: !server,
            tx_limit: u32::try_from(limit.saturating_sub(limit / 16)).unwrap_or(u32::MAX).max(1),
        })
    }

    pub(crate) fn server(
        c: rustls::server::UnbufferedServerConnection,
        captured: Captured,
    ) -> Result<Self, TlsError> {
        let (secrets, k) = c.dangerous_into_kernel_connection().map_err(protocol)?;
        let suite = k.negotiated_cipher_suite();
        drop(k);
        Self::from_parts(secrets, captured, true, None, suite)
    }

    pub(crate) fn client(
        c: rustls::client::UnbufferedClientConnection,
        captured: Captured,
    ) -> Result<Self, TlsError> {
        let (secrets, k) = c.dangerous_into_kernel_connection().map_err(protocol)?;
        let suite = k.negotiated_cipher_suite();
        Self::from_parts(secrets, captured, false, Some(Box::new(k)), suite)
    }

    /// Drops both directions' expanded keys (the connection looks idle); the next
    /// record each way makes its key again.
    pub(crate) fn rest(&mut self) {
        self.rx.rest();
        self.tx.rest();
    }

    /// Whether a direction holds an expanded key (tests).
    #[cfg(test)]
    pub(crate) fn expanded(&self) -> (bool, bool) {
        (self.rx.key.is_some(), self.tx.key.is_some())
    }

    /// Bytes inline: the whole, and one direction's keys.
    #[cfg(test)]
    pub(crate) fn inline_size() -> (usize, usize, usize) {
        (
            std::mem::size_of::<Self>(),
            std::mem::size_of::<LessSafeKey>(),
            std::mem::size_of::<Keys>(),
        )
    }

    #[cfg(test)]
    pub(crate) fn keeps_tickets(&self) -> bool {
        self.tickets.is_some()
    }

    #[cfg(test)]
    pub(crate) fn set_tx_limit(&mut self, n: u32) {
        self.tx_limit = n;
    }

    /// Opens the whole records at the front of `buf` in place, appending application
    /// data to `plain`; records of our own to send (a KeyUpdate answer) are sealed into
    /// `out`. Stops at the first record not yet whole, and after close_notify.
    pub(crate) fn open(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Opened, TlsError> {
        self.open_records(buf, Plain::Append(plain), out)
    }

    /// As [`Records::open`], the application data moved together at the front of `buf`
    /// instead (no copy out of the buffer): returns how many bytes of it there are.
    pub(crate) fn open_compact(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(Opened, usize), TlsError> {
        let mut write = 0;
        let r = self.open_records(buf, Plain::Front(&mut write), out)?;
        Ok((r, write))
    }

    fn open_records(
        &mut self,
        buf: &mut [u8],
        mut plain: Plain<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Opened, TlsError> {
        let mut r = Opened::default();
        while let Some(h) = buf.get(r.used..r.used + 5) {
            if h[0] != APPLICATION_DATA || h[1] != 3 {
                return Err(bad("a record other than application data after the handshake"));
            }
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            if !(17..=MAX_CIPHERTEXT).contains(&len) {
                return Err(bad("a record of impossible length"));
            }
            let start = r.used;
            let Some(rec) = buf.get_mut(start..start + 5 + len) else { break };
            let (head, body) = rec.split_at_mut(5);
            let aad = Aad::from([head[0], head[1], head[2], head[3], head[4]]);
            let nonce = self.rx.next_nonce()?;
            let inner = self
                .rx
                .key()?
                .open_in_place(nonce, aad, body)
                .map_err(|_| protocol(rustls::Error::DecryptError))?;
            r.used += 5 + len;
            // The content type is the last byte that is not padding (§5.4).
            let Some(end) = inner.iter().rposition(|b| *b != 0) else {
                return Err(bad("a record without a content type"));
            };
            match inner[end] {
                APPLICATION_DATA => {
                    // A server sends its tickets right after the handshake, before any
                    // data: rustls's state (with the server's certificates) goes now.
                    if self.tickets.is_some() {
                        self.tickets = None;
                    }
                    match &mut plain {
                        Plain::Append(v) => v.extend_from_slice(&inner[..end]),
                        Plain::Front(write) => {
                            // Behind everything read so far: nothing unread is overwritten.
                            buf.copy_within(start + 5..start + 5 + end, **write);
                            **write += end;
                        }
                    }
                }
                ALERT => match &inner[..end] {
                    [_, 0] => {
                        r.peer_closed = true;
                        return Ok(r);
                    }
                    _ => return Err(bad("the peer sent an alert")),
                },
                HANDSHAKE => self.handshake(&inner[..end], out)?,
                _ => return Err(bad("a record of unknown content type")),
            }
        }
        Ok(r)
    }

    /// Post-handshake messages of one record (they do not span records here).
    fn handshake(&mut self, mut msgs: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        while let [typ, a, b, c, rest @ ..] = msgs {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if rest.len() < len {
                return Err(bad("a handshake message split across records"));
            }
            let (body, next) = rest.split_at(len);
            match (*typ, body) {
                (KEY_UPDATE, [requested @ (0 | 1)]) => {
                    self.rx = self.rx.updated()?;
                    if *requested == 1 {
                        self.update_tx(out)?;
                    }
                }
                (NEW_SESSION_TICKET, _) => match &mut self.tickets {
                    // A ticket rustls cannot use is no reason to drop the connection.
                    Some(k) => {
                        let _ = k.handle_new_session_ticket(body);
                    }
                    None if self.client => {} // a late ticket: not kept
                    None => return Err(bad("a session ticket from a client")),
                },
                _ => return Err(bad("an unexpected handshake message after the handshake")),
            }
            msgs = next;
        }
        if !msgs.is_empty() {
            return Err(bad("a truncated handshake message"));
        }
        Ok(())
    }

    /// Sends a KeyUpdate (not asking the peer for one) and moves to the next keys.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        let start = self.begin(out, false)?;
        out.extend_from_slice(&[KEY_UPDATE, 0, 0, 1, 0]);
        self.end(start, HANDSHAKE, out)?;
        self.tx = self.tx.updated()?;
        Ok(())
    }

    /// Seals `chunks` (application data, in order) into records of up to 16 KiB
    /// appended to `out`: each byte is copied once, into `out`, and encrypted there.
    pub(crate) fn seal(
        &mut self,
        chunks: &[bytes::Bytes],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        out.reserve(total + total.div_ceil(MAX_FRAGMENT) * OVERHEAD);
        let mut open: Option<usize> = None;
        for c in chunks {
            let mut c: &[u8] = c;
            while !c.is_empty() {
                let start = match open {
                    Some(s) => s,
                    None => *open.insert(self.begin(out, true)?),
                };
                let filled = out.len() - start - 5;
                let take = c.len().min(MAX_FRAGMENT - filled);
                out.extend_from_slice(&c[..take]);
                c = &c[take..];
                if filled + take == MAX_FRAGMENT {
                    self.end(start, APPLICATION_DATA, out)?;
                    open = None;
                }
            }
        }
        if let Some(start) = open {
            self.end(start, APPLICATION_DATA, out)?;
        }
        Ok(())
    }

    /// close_notify.
    pub(crate) fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        let start = self.begin(out, true)?;
        out.extend_from_slice(&[1, 0]);
        self.end(start, ALERT, out)
    }

    /// Starts a record in `out` (its header is written by `end`); a KeyUpdate goes
    /// first when the key has sealed its share (`may_update`: not for the KeyUpdate).
    fn begin(&mut self, out: &mut Vec<u8>, may_update: bool) -> Result<usize, TlsError> {
        if may_update && self.tx.seq >= u64::from(self.tx_limit) {
            self.update_tx(out)?;
        }
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        Ok(start)
    }

    /// Ends the record begun at `start`: its inner type, header, encryption and tag.
    fn end(&mut self, start: usize, typ: u8, out: &mut Vec<u8>) -> Result<(), TlsError> {
        out.push(typ);
        let sealed = out.len() - start - 5 + 16;
        let header = [APPLICATION_DATA, 3, 3, (sealed >> 8) as u8, sealed as u8];
        out[start..start + 5].copy_from_slice(&header);
        let nonce = self.tx.next_nonce()?;
        let tag = self
            .tx
            .key()?
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start + 5..])
            .map_err(|_| TlsError::Exhausted)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}
