// The body of the TLS fuzz target, shared by `fuzz/fuzz_targets/tls_session.rs` and by
// the stable seed replay `tests/tests/fuzz_seeds_tls.rs`, which both `include!` this file
// inside a module. Certificates are made at run time (rcgen), once.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ringwire::tls::session::{TlsSession, MAX_INCOMING};

/// A target's check: panics if a property fails for this input.
pub type Check = fn(&[u8]);

/// The TLS fuzz targets: name (the folder of its seeds) and check.
pub const TLS_TARGETS: &[(&str, Check)] = &[("tls_session", tls_session)];

struct Pki {
    server: ringwire::tls::TlsServerConfig,
    client: Arc<rustls::ClientConfig>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // The engine's crypto (*ring*, or AWS-LC with its `aws-lc-rs` feature).
        let provider = ringwire::tls::crypto_provider();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let server =
            ringwire::tls::TlsServerConfig::from_der(vec![cert.der().clone()], key_der).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        Pki { server, client: Arc::new(client) }
    })
}

fn wire(s: &mut TlsSession) -> Vec<u8> {
    s.out.drain(..).flat_map(|b| b.to_vec()).collect()
}

/// A client and a server session after an in-memory TLS 1.3 handshake.
fn handshake() -> (TlsSession, TlsSession) {
    let p = pki();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = TlsSession::client(p.client.clone(), name).unwrap();
    let mut s = p.server.session().unwrap();
    for _ in 0..6 {
        let mut w = wire(&mut c);
        s.receive(&mut w).unwrap();
        let mut w = wire(&mut s);
        c.receive(&mut w).unwrap();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// Feeds `bytes` to `s` in pieces of `piece` bytes: it never holds more than its cap,
/// and once it failed it takes nothing more.
fn feed(s: &mut TlsSession, bytes: &[u8], piece: usize) {
    for chunk in bytes.chunks(piece.max(1)) {
        let mut b = chunk.to_vec();
        match s.receive(&mut b) {
            Ok(_) => assert!(s.buffered() <= MAX_INCOMING + 64 * 1024, "{}", s.buffered()),
            Err(_) => {
                let mut again = chunk.to_vec();
                assert!(s.receive(&mut again).is_err(), "a failed session stays failed");
                return;
            }
        }
    }
}

/// The first byte picks what the rest is: (0) a client's first flight to a server, (1)
/// records to a server after the handshake, (2) records to a client after it, (3)
/// application data the client encrypts, which the server must give back as it was,
/// whatever the pieces it arrives in and whether it is copied out or left in place. The second byte sets the piece size.
pub fn tls_session(data: &[u8]) {
    let [mode, piece, rest @ ..] = data else { return };
    let piece = usize::from(*piece) * 61 + 1;
    match mode % 4 {
        0 => {
            let mut s = pki().server.session().unwrap();
            feed(&mut s, rest, piece);
        }
        1 => {
            let (_c, mut s) = handshake();
            feed(&mut s, rest, piece);
        }
        2 => {
            let (mut c, _s) = handshake();
            feed(&mut c, rest, piece);
        }
        _ => {
            let (mut c, mut s) = handshake();
            let msg = Bytes::copy_from_slice(rest);
            c.encrypt(&[msg.clone(), msg.clone()], &mut Vec::new()).unwrap();
            let w = wire(&mut c);
            // Half the inputs through the copying receive, half through the one that
            // leaves the plaintext in the buffer: the same bytes must come out.
            let mut got = Vec::new();
            for chunk in w.chunks(piece) {
                let mut b = chunk.to_vec();
                if piece % 2 == 0 {
                    got.extend(s.receive(&mut b).unwrap().1);
                } else {
                    let (_, range) = s.receive_compact(&mut b, &mut got).unwrap();
                    got.extend_from_slice(&b[range]);
                }
            }
            assert_eq!(got.len(), 2 * rest.len());
            assert!(got[..rest.len()] == *rest && got[rest.len()..] == *rest);
        }
    }
}
