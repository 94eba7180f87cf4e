//! The TLS 1.3 traffic secrets of a connection, for key updates without rustls.
//!
//! After a TLS 1.3 handshake the record layer (`record.rs`) keeps the traffic keys; a
//! KeyUpdate (RFC 8446 §4.6.3) derives the next keys from the current *secret*, which
//! rustls gives out only through its key log. So every rustls configuration ringwire
//! makes logs keys into [`SecretCapture`]: it keeps the two application traffic secrets
//! in a per-thread slot, which the session clears before each call into rustls and
//! empties into its own handshake state after it (rustls calls the log synchronously,
//! on the caller's thread, from inside that call). When the handshake is over, the keys derived from the
//! captured secrets are checked against the keys rustls hands over: a secret that is
//! not this connection's can not pass.
//!
//! The derivations (HKDF-Expand-Label, §7.1) use the HKDF of *ring* (or AWS-LC:
//! `super::crypto`).

use std::cell::RefCell;
use std::sync::Arc;

use super::crypto::{aead, hkdf};
use rustls::KeyLog;

const CLIENT_LABEL: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_LABEL: &str = "SERVER_TRAFFIC_SECRET_0";

/// One traffic secret (a hash's length: 32 or 48 bytes), wiped when dropped.
#[derive(Clone)]
pub(crate) struct Secret {
    len: u8,
    bytes: [u8; 48],
}

impl Secret {
    fn new(s: &[u8]) -> Option<Self> {
        let mut bytes = [0; 48];
        bytes.get_mut(..s.len())?.copy_from_slice(s);
        Some(Self { len: s.len() as u8, bytes })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The secret after a KeyUpdate: HKDF-Expand-Label(secret, "traffic upd", "", Hash.length).
    pub(crate) fn next(&self, hash: hkdf::Algorithm) -> Self {
        let mut s = Self { len: self.len, bytes: [0; 48] };
        let n = usize::from(self.len);
        expand_label(hash, self.as_slice(), b"traffic upd", &mut s.bytes[..n]);
        s
    }

    /// The record key and IV of this secret (§7.3), for `alg`.
    pub(crate) fn key_iv(
        &self,
        hash: hkdf::Algorithm,
        alg: &'static aead::Algorithm,
    ) -> (KeyBytes, [u8; 12]) {
        let mut iv = [0; 12];
        expand_label(hash, self.as_slice(), b"iv", &mut iv);
        (self.key(hash, alg), iv)
    }

    /// The record key of this secret alone (§7.3), for `alg`.
    pub(crate) fn key(&self, hash: hkdf::Algorithm, alg: &'static aead::Algorithm) -> KeyBytes {
        let mut key = KeyBytes { len: alg.key_len() as u8, bytes: [0; 32] };
        let n = usize::from(key.len);
        expand_label(hash, self.as_slice(), b"key", &mut key.bytes[..n]);
        key
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

/// A derived record key, wiped when dropped.
pub(crate) struct KeyBytes {
    len: u8,
    bytes: [u8; 32],
}

impl KeyBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

fn wipe(b: &mut [u8]) {
    zeroize::Zeroize::zeroize(b);
}

/// The HKDF of a TLS 1.3 cipher suite: SHA-384 for TLS_AES_256_GCM_SHA384, SHA-256
/// for the others (RFC 8446 §B.4).
pub(crate) fn hkdf_of(alg: &'static aead::Algorithm) -> hkdf::Algorithm {
    if alg == &aead::AES_256_GCM {
        hkdf::HKDF_SHA384
    } else {
        hkdf::HKDF_SHA256
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 §7.1).
fn expand_label(hash: hkdf::Algorithm, secret: &[u8], label: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Prk::new_less_safe(hash, secret);
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    // Both only fail for an output longer than 255 hash blocks; ours are at most 48 bytes.
    let okm = prk.expand(&info, Len(out.len())).expect("HKDF output of at most 48 bytes");
    okm.fill(out).expect("HKDF output of the length asked for");
}

/// Both application traffic secrets, once the handshake has made them.
#[derive(Default)]
pub(crate) struct Captured {
    pub(crate) client: Option<Secret>,
    pub(crate) server: Option<Secret>,
}

impl Captured {
    /// Whether both secrets are here.
    pub(crate) fn complete(&self) -> bool {
        self.client.is_some() && self.server.is_some()
    }

    /// Forgets what the key log caught on this thread and nobody took (a call into
    /// rustls that unwound before its session could take it): each session takes
    /// only what its own call caught.
    pub(crate) fn clear_thread() {
        SLOT.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Captured::default();
            }
        });
    }

    /// Moves what the key log caught on this thread (since the last call) in here.
    pub(crate) fn take_from_thread(&mut self) {
        SLOT.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if let Some(c) = s.client.take() {
                    self.client = Some(c);
                }
                if let Some(c) = s.server.take() {
                    self.server = Some(c);
                }
            }
        });
    }
}

thread_local! {
    static SLOT: RefCell<Captured> = RefCell::new(Captured::default());
}

/// A rustls key log that keeps the application traffic secrets for the record layer,
/// and passes everything on to the key log it wraps (rustls's default logs nothing;
/// a caller's `KeyLogFile` keeps working).
#[derive(Debug)]
pub(crate) struct SecretCapture {
    inner: Arc<dyn KeyLog>,
}

impl SecretCapture {
    /// `inner` wrapped.
    pub(crate) fn wrap(inner: Arc<dyn KeyLog>) -> Arc<dyn KeyLog> {
        Arc::new(Self { inner })
    }
}

impl KeyLog for SecretCapture {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label == CLIENT_LABEL || label == SERVER_LABEL {
            let s = Secret::new(secret);
            SLOT.with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    if label == CLIENT_LABEL {
                        slot.client = s;
                    } else {
                        slot.server = s;
                    }
                }
            });
        }
        if self.inner.will_log(label) {
            self.inner.log(label, client_random, secret);
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_LABEL || label == SERVER_LABEL || self.inner.will_log(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8448 §3 (a simple 1-RTT handshake): the server's application traffic
    /// secret and the record key and IV derived from it.
    #[test]
    fn key_and_iv_match_rfc_8448() {
        let secret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
        let s = Secret::new(&secret).unwrap();
        let (key, iv) = s.key_iv(hkdf::HKDF_SHA256, &aead::AES_128_GCM);
        assert_eq!(key.as_slice(), hex("9f02283b6c9c07efc26bb9f2ac92e356"));
        assert_eq!(iv.to_vec(), hex("cf782b88dd83549aadf1e984"));
    }

    #[test]
    fn next_secret_is_expand_label_traffic_upd() {
        // Independently: HKDF-Expand with the label's bytes written out by hand.
        let s = Secret::new(&[7u8; 32]).unwrap();
        let n = s.next(hkdf::HKDF_SHA256);
        let mut info = vec![0, 32, 17];
        info.extend_from_slice(b"tls13 traffic upd");
        info.push(0);
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &[7u8; 32]);
        let mut want = [0u8; 32];
        prk.expand(&[&info], hkdf::HKDF_SHA256).unwrap().fill(&mut want).unwrap();
        assert_eq!(n.as_slice(), want);
        assert_ne!(n.as_slice(), s.as_slice());
        // SHA-384 secrets stay 48 bytes.
        let s = Secret::new(&[7u8; 48]).unwrap();
        assert_eq!(s.next(hkdf::HKDF_SHA384).as_slice().len(), 48);
    }

    #[test]
    fn the_capture_keeps_the_traffic_secrets_and_passes_everything_on() {
        #[derive(Debug, Default)]
        struct Count(std::sync::atomic::AtomicUsize);
        impl KeyLog for Count {
            fn log(&self, _: &str, _: &[u8], _: &[u8]) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let inner = Arc::new(Count::default());
        let c = SecretCapture::wrap(inner.clone());
        assert!(c.will_log(CLIENT_LABEL) && c.will_log("EXPORTER_SECRET"));
        c.log(CLIENT_LABEL, &[1; 32], &[5; 32]);
        c.log("EXPORTER_SECRET", &[1; 32], &[6; 32]);
        c.log(SERVER_LABEL, &[1; 32], &[9; 64]); // too long for a TLS 1.3 secret
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        let mut got = Captured::default();
        got.take_from_thread();
        assert_eq!(got.client.as_ref().map(Secret::as_slice), Some(&[5u8; 32][..]));
        assert!(got.server.is_none());
        // Taken: the next session on this thread does not see them.
        let mut again = Captured::default();
        again.take_from_thread();
        assert!(again.client.is_none());
        // Left behind (a call that unwound), then cleared before the next call.
        c.log(SERVER_LABEL, &[1; 32], &[3; 32]);
        Captured::clear_thread();
        again.take_from_thread();
        assert!(again.server.is_none());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
