//! The TLS session in memory: a client and a server session talking through byte
//! vectors, with certificates made here (rcgen).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

mod keys;

/// A test authority and a leaf for `names`, written to a fresh folder.
pub(crate) struct TestPki {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl TestPki {
    pub(crate) fn new(tag: &str, names: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("ringwire-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf =
            rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let me = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        std::fs::write(&me.ca, ca.pem()).unwrap();
        std::fs::write(&me.cert, leaf.pem()).unwrap();
        std::fs::write(&me.key, key.serialize_pem()).unwrap();
        me
    }

    fn server(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem_files(&self.cert, &self.key).unwrap()
    }

    fn client(&self) -> TlsClientConfig {
        TlsClientConfig::new(&[&self.ca]).unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn take_out(s: &mut TlsSession) -> Vec<u8> {
    s.out.drain(..).flat_map(|b| b.to_vec()).collect()
}

/// Moves what `from` has to send into `to`, `piece` bytes at a time; returns the
/// plaintext `to` got, or its error.
fn pump(from: &mut TlsSession, to: &mut TlsSession, piece: usize) -> Result<Vec<u8>, TlsError> {
    let wire = take_out(from);
    let mut plain = Vec::new();
    for chunk in wire.chunks(piece.max(1)) {
        let mut c = chunk.to_vec();
        to.receive_into(&mut c, &mut plain)?;
    }
    Ok(plain)
}

/// Runs the handshake to its end; returns (client, server).
fn connected(
    server: &TlsServerConfig,
    client: &TlsClientConfig,
    name: &str,
    piece: usize,
) -> Result<(TlsSession, TlsSession), TlsError> {
    let mut c = client.session(name)?;
    let mut s = server.session()?;
    for _ in 0..10 {
        pump(&mut c, &mut s, piece)?;
        pump(&mut s, &mut c, piece)?;
        if !c.is_handshaking() && !s.is_handshaking() && c.out.is_empty() && s.out.is_empty() {
            return Ok((c, s));
        }
    }
    panic!("the handshake did not finish: {c:?} {s:?}");
}

#[test]
fn a_handshake_and_data_both_ways_whatever_the_pieces() {
    let pki = TestPki::new("both-ways", &["localhost"]);
    for piece in [1, 7, 100, 1 << 20] {
        let (mut c, mut s) = connected(&pki.server(), &pki.client(), "localhost", piece).unwrap();
        assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert!(s.on_own_records() && c.on_own_records(), "TLS 1.3: the keys alone");
        let mut scratch = Vec::new();
        let big = Bytes::from(vec![7u8; 40_000]);
        c.encrypt(&[Bytes::from_static(b"GET / "), big.clone()], &mut scratch).unwrap();
        let got = pump(&mut c, &mut s, piece).unwrap();
        assert_eq!(got.len(), 6 + big.len());
        assert_eq!(&got[..6], b"GET / ");
        s.encrypt(&[Bytes::from_static(b"HTTP/1.1 101")], &mut scratch).unwrap();
        assert_eq!(pump(&mut s, &mut c, piece).unwrap(), b"HTTP/1.1 101");
        // Idle: the TLS state and nothing else.
        assert_eq!((c.buffered(), s.buffered()), (0, 0), "piece {piece}");
        assert_eq!(s.incoming_capacity(), 0, "no receive buffer kept (piece {piece})");
    }
}

#[test]
fn tls_1_2_works_too() {
    let pki = TestPki::new("tls12", &["localhost"]);
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let cfg = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = TlsClientConfig::from_rustls(Arc::new(cfg));
    let (mut c, mut s) = connected(&pki.server(), &client, "localhost", 50).unwrap();
    assert_eq!(s.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(!s.on_own_records(), "TLS 1.2 stays with rustls");
    c.encrypt(&[Bytes::from_static(b"hello")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut c, &mut s, 3).unwrap(), b"hello");
}

#[test]
fn the_client_refuses_a_wrong_name_and_an_unknown_authority() {
    let pki = TestPki::new("refuse", &["localhost"]);
    let err = connected(&pki.server(), &pki.client(), "example.com", 1000).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let other = TestPki::new("refuse-other", &["localhost"]);
    let err = connected(&pki.server(), &other.client(), "localhost", 1000).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Without verification it connects (and says so in its name).
    assert!(connected(&pki.server(), &TlsClientConfig::insecure(), "example.com", 1000).is_ok());
}

#[test]
fn garbage_and_floods_are_errors_not_buffers() {
    let pki = TestPki::new("garbage", &["localhost"]);
    let mut s = pki.server().session().unwrap();
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert!(s.receive(&mut junk).is_err(), "plain HTTP on a TLS port");
    assert!(!s.out.is_empty(), "the peer is told why (an alert)");

    // A record header announcing a handshake record larger than TLS allows.
    let mut s = pki.server().session().unwrap();
    let mut big = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    assert!(s.receive(&mut big).is_err());

    // A flood of valid-looking partial records never grows past the cap.
    let mut s = pki.server().session().unwrap();
    let mut hdr = vec![0x16, 0x03, 0x01, 0x40, 0x00]; // a 16 KiB handshake record, announced
    let _ = s.receive(&mut hdr).unwrap();
    let mut total = 5;
    let err = loop {
        let mut piece = vec![1u8; 4096];
        match s.receive(&mut piece) {
            Ok(_) => total += 4096,
            Err(e) => break e,
        }
        assert!(total <= session::MAX_INCOMING + 4096, "held {total} bytes");
    };
    assert!(s.buffered() <= session::MAX_INCOMING + 64, "{err}: {}", s.buffered());
}

#[test]
fn close_notify_tells_a_clean_end_from_a_truncation() {
    let pki = TestPki::new("close", &["localhost"]);
    let (mut c, mut s) = connected(&pki.server(), &pki.client(), "localhost", 1000).unwrap();
    assert!(!s.peer_closed());
    c.close_notify();
    pump(&mut c, &mut s, 1000).unwrap();
    assert!(s.peer_closed());
    assert!(c.encrypt(&[Bytes::from_static(b"late")], &mut Vec::new()).is_err());
}

#[test]
fn sni_picks_the_certificate_and_reload_swaps_it() {
    let a = TestPki::new("sni-a", &["a.test"]);
    let b = TestPki::new("sni-b", &["b.test"]);
    let server = TlsServerConfig::from_pem_files(&a.cert, &a.key)
        .unwrap()
        .add_pem_files(&["B.test"], &b.cert, &b.key)
        .unwrap();
    assert!(connected(&server, &a.client(), "a.test", 1000).is_ok());
    assert!(connected(&server, &b.client(), "b.test", 1000).is_ok());
    assert!(connected(&server, &a.client(), "b.test", 1000).is_err(), "b's cert is b's CA's");

    // A new certificate for a.test (from another authority) in the same files.
    let a2 = TestPki::new("sni-a2", &["a.test"]);
    std::fs::copy(&a2.cert, &a.cert).unwrap();
    std::fs::copy(&a2.key, &a.key).unwrap();
    assert!(connected(&server, &a2.client(), "a.test", 1000).is_err(), "not reloaded yet");
    server.reload().unwrap();
    assert!(connected(&server, &a2.client(), "a.test", 1000).is_ok());
    // A broken file keeps the old certificates in use.
    std::fs::write(&a.key, "not a key").unwrap();
    assert!(server.reload().is_err());
    assert!(connected(&server, &a2.client(), "a.test", 1000).is_ok());
}

#[test]
fn a_certificate_given_in_memory_serves_and_survives_a_reload() {
    let pki = TestPki::new("der", &["localhost"]);
    let other = TestPki::new("der-other", &["other.test"]);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&pki.cert).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let server = TlsServerConfig::from_der(chain.clone(), key.clone_key())
        .unwrap()
        .add_pem_files(&["other.test"], &other.cert, &other.key)
        .unwrap();
    assert!(connected(&server, &pki.client(), "localhost", 1000).is_ok());
    assert!(connected(&server, &other.client(), "other.test", 1000).is_ok(), "SNI beside it");
    server.reload().unwrap();
    assert!(connected(&server, &pki.client(), "localhost", 1000).is_ok(), "kept by a reload");

    let e = TlsServerConfig::from_der(Vec::new(), key.clone_key()).unwrap_err();
    assert!(matches!(e, TlsConfigError::NoCertificate), "{e}");
    let wrong = PrivateKeyDer::from_pem_file(&other.key).unwrap();
    let e = TlsServerConfig::from_der(chain, wrong).unwrap_err();
    assert!(matches!(e, TlsConfigError::Rustls(_)), "a key that is not the cert's: {e}");
}

#[test]
fn bad_files_are_clear_errors() {
    let pki = TestPki::new("files", &["localhost"]);
    let e = TlsServerConfig::from_pem_files(pki.dir.join("missing.pem"), &pki.key).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = TlsServerConfig::from_pem_files(&pki.key, &pki.key).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
    let other = TestPki::new("files-other", &["localhost"]);
    let e = TlsServerConfig::from_pem_files(&pki.cert, &other.key).unwrap_err();
    assert!(matches!(e, TlsConfigError::Rustls(_)), "a key that is not the cert's: {e}");
}

#[test]
fn large_messages_in_receive_buffer_pieces() {
    let pki = TestPki::new("large", &["localhost"]);
    let (mut c, mut s) = connected(&pki.server(), &pki.client(), "localhost", 1 << 20).unwrap();
    let mut scratch = Vec::new();
    let big = Bytes::from((0..300_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    for chunks in [vec![big.clone()], vec![Bytes::from_static(b"hdr"), big.clone()]] {
        c.encrypt(&chunks, &mut scratch).unwrap();
        let want: usize = chunks.iter().map(Bytes::len).sum();
        let got = pump(&mut c, &mut s, 64 * 1024).unwrap();
        assert_eq!(got.len(), want);
        assert_eq!(&got[got.len() - big.len()..], &big[..]);
    }
}

#[test]
fn what_a_session_weighs() {
    // Printed for docs/BENCHMARKS.md; the assertion only guards against a large jump.
    let size = std::mem::size_of::<TlsSession>();
    let (records, key, keys) = super::record::Records::inline_size();
    eprintln!(
        "TlsSession {size} B inline; after a TLS 1.3 handshake: records {records} B \
         (each way: IV, record number, secret and the expanded key's box {keys} B; the \
         expanded key, on the heap while in use, {key} B)"
    );
    assert!(size <= 256, "{size}");
}

#[test]
fn a_tampered_record_is_refused() {
    let pki = TestPki::new("tamper", &["localhost"]);
    let (mut c, mut s) = connected(&pki.server(), &pki.client(), "localhost", 1 << 20).unwrap();
    assert!(s.on_own_records());
    c.encrypt(&[Bytes::from_static(b"hello")], &mut Vec::new()).unwrap();
    let mut wire = take_out(&mut c);
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert!(s.receive(&mut wire).is_err(), "the tag does not match");
    assert!(s.receive(&mut [0x17, 3, 3, 0, 20]).is_err(), "a dead session takes nothing");
}

/// `receive_compact` gives the same plaintext as `receive_into`, in the same order,
/// whatever the pieces: held plaintext first, then the range left in the buffer.
#[test]
fn compact_receive_keeps_the_plaintext_in_the_buffer() {
    let pki = TestPki::new("compact", &["localhost"]);
    let (mut c, mut s) = connected(&pki.server(), &pki.client(), "localhost", 1 << 20).unwrap();
    assert!(s.on_own_records());
    let msgs: Vec<Bytes> =
        (0..40u32).map(|i| Bytes::from(vec![i as u8; 1 + (i as usize * 977) % 20_000])).collect();
    let want: Vec<u8> = msgs.iter().flat_map(|m| m.to_vec()).collect();
    for m in &msgs {
        c.encrypt(std::slice::from_ref(m), &mut Vec::new()).unwrap();
    }
    let wire = take_out(&mut c);
    for piece in [1, 5, 16_389, 65_536, 1 << 20] {
        let mut s2 = {
            // A fresh pair per piece size: sequence numbers must match.
            let (mut c2, s2) =
                connected(&pki.server(), &pki.client(), "localhost", 1 << 20).unwrap();
            for m in &msgs {
                c2.encrypt(std::slice::from_ref(m), &mut Vec::new()).unwrap();
            }
            let w = take_out(&mut c2);
            (s2, w)
        };
        let mut got = Vec::new();
        let mut in_place = 0;
        for chunk in s2.1.chunks(piece) {
            let mut b = chunk.to_vec();
            let mut held = Vec::new();
            let (_, range) = s2.0.receive_compact(&mut b, &mut held).unwrap();
            got.extend_from_slice(&held);
            in_place += range.len();
            got.extend_from_slice(&b[range]);
        }
        assert_eq!(got.len(), want.len(), "piece {piece}");
        assert!(got == want, "piece {piece}");
        if piece >= 65_536 {
            assert!(in_place > want.len() / 2, "piece {piece}: most stays in place ({in_place})");
        }
    }
    // The first pair's wire, through the copying path, for comparison.
    let mut got = Vec::new();
    for chunk in wire.chunks(4096) {
        let mut b = chunk.to_vec();
        s.receive_into(&mut b, &mut got).unwrap();
    }
    assert!(got == want);
}
