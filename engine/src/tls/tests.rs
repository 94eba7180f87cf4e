//! The TLS session in memory: a client and a server session talking through byte
//! vectors, with certificates made here (rcgen).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

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

/// A rustls client of its own (buffered API, no secret extraction) against our server
/// session on its own records: data both ways, then key updates from either side, for
/// each TLS 1.3 cipher suite (SHA-384 derives the keys of TLS_AES_256_GCM_SHA384).
#[test]
fn key_updates_both_ways_against_plain_rustls() {
    let pki = TestPki::new("keyupdate", &["localhost"]);
    for suite in crypto_provider().cipher_suites.iter().filter(|s| s.tls13().is_some()) {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![*suite],
            ..(*crypto_provider()).clone()
        };
        key_updates_with(&pki, Arc::new(provider));
    }
}

/// A plain rustls client (buffered API, no secret extraction) of `pki`'s server, with
/// `provider`'s crypto, and our server session for it.
fn plain_client(
    pki: &TestPki,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> (rustls::ClientConnection, TlsSession) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    (rustls::ClientConnection::new(Arc::new(cfg), name).unwrap(), pki.server().session().unwrap())
}

/// Moves a plain client's output to our server; returns the plaintext the server got.
fn to_server(client: &mut rustls::ClientConnection, server: &mut TlsSession) -> Vec<u8> {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    server.receive(&mut wire).unwrap().1
}

/// Moves our server's output to a plain client; returns the plaintext the client got.
fn to_client(server: &mut TlsSession, client: &mut rustls::ClientConnection) -> Vec<u8> {
    use std::io::Read;
    let wire = take_out(server);
    let mut rd = &wire[..];
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets().unwrap();
    }
    let mut got = Vec::new();
    let _ = client.reader().read_to_end(&mut got);
    got
}

fn key_updates_with(pki: &TestPki, provider: Arc<rustls::crypto::CryptoProvider>) {
    use std::io::Write;
    let (mut client, mut server) = plain_client(pki, provider);
    let mut scratch = Vec::new();
    for _ in 0..4 {
        to_server(&mut client, &mut server);
        to_client(&mut server, &mut client);
    }
    assert!(!client.is_handshaking());
    assert!(server.on_own_records(), "the server keeps the traffic keys only");
    let suite = client.negotiated_cipher_suite().unwrap().suite();
    let group = client.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, crypto_provider().kx_groups[0].name(), "the first choice of both");

    client.writer().write_all(b"before").unwrap();
    assert_eq!(to_server(&mut client, &mut server), b"before", "{suite:?}");
    server.encrypt(&[Bytes::from_static(b"reply")], &mut scratch).unwrap();
    assert_eq!(to_client(&mut server, &mut client), b"reply");

    // The client updates its keys and asks the server to update its own (RFC 8446
    // §4.6.3): the server follows with a KeyUpdate of its own, then new keys.
    client.refresh_traffic_keys().unwrap();
    client.writer().write_all(b"after").unwrap();
    assert_eq!(to_server(&mut client, &mut server), b"after");
    assert!(!server.out.is_empty(), "the server's KeyUpdate answer");
    server.encrypt(&[Bytes::from_static(b"under new keys")], &mut scratch).unwrap();
    assert_eq!(to_client(&mut server, &mut client), b"under new keys");

    // The server's own key update, when its key has sealed its share of records.
    server.force_key_update_after(0);
    server.encrypt(&[Bytes::from_static(b"rekeyed")], &mut scratch).unwrap();
    assert_eq!(to_client(&mut server, &mut client), b"rekeyed", "{suite:?}");
    client.writer().write_all(b"still fine").unwrap();
    assert_eq!(to_server(&mut client, &mut server), b"still fine");
    // Twice more each way: each update derives from the last secret, not the first.
    for i in 0..2 {
        client.refresh_traffic_keys().unwrap();
        client.writer().write_all(b"again").unwrap();
        assert_eq!(to_server(&mut client, &mut server), b"again", "{suite:?} {i}");
        server.force_key_update_after(0);
        server.encrypt(&[Bytes::from_static(b"and again")], &mut scratch).unwrap();
        assert_eq!(to_client(&mut server, &mut client), b"and again", "{suite:?} {i}");
    }

    // close_notify from the client.
    client.send_close_notify();
    to_server(&mut client, &mut server);
    assert!(server.peer_closed());
}

/// Resting drops the expanded keys of both directions; each comes back with the next
/// record its way (and only then), through key updates too, on both sides.
#[test]
fn rested_keys_come_back_with_the_next_record() {
    let pki = TestPki::new("rest", &["localhost"]);
    let mut c = pki.client().session("localhost").unwrap();
    c.rest(); // during the handshake: nothing to rest
    let mut s = pki.server().session().unwrap();
    for _ in 0..10 {
        pump(&mut c, &mut s, 1 << 20).unwrap();
        pump(&mut s, &mut c, 1 << 20).unwrap();
    }
    let mut scratch = Vec::new();
    // The server's first data drops the client's ticket state: the client is on its
    // own records from here.
    s.encrypt(&[Bytes::from_static(b"hi")], &mut scratch).unwrap();
    assert_eq!(pump(&mut s, &mut c, 7).unwrap(), b"hi");
    assert_eq!(s.keys_expanded(), Some((true, true)));
    for round in 0..3 {
        s.rest();
        c.rest();
        assert_eq!(s.keys_expanded(), Some((false, false)), "{round}");
        assert_eq!(c.keys_expanded(), Some((false, false)), "{round}");
        c.encrypt(&[Bytes::from_static(b"up")], &mut scratch).unwrap();
        assert_eq!(c.keys_expanded(), Some((false, true)), "only the client's send key");
        assert_eq!(pump(&mut c, &mut s, 3).unwrap(), b"up", "{round}");
        assert_eq!(s.keys_expanded(), Some((true, false)), "only the server's receive key");
        if round == 1 {
            // A key update on rested keys: the next secret's keys, both ways.
            s.rest();
            s.force_key_update_after(0);
        }
        s.encrypt(&[Bytes::from_static(b"down")], &mut scratch).unwrap();
        assert_eq!(pump(&mut s, &mut c, 5).unwrap(), b"down", "{round}");
        c.encrypt(&[Bytes::from_static(b"again")], &mut scratch).unwrap();
        assert_eq!(pump(&mut c, &mut s, 1 << 20).unwrap(), b"again", "{round}");
    }
}

/// The call that completes the handshake, on either side, names the key exchange (the
/// worker counts post-quantum handshakes by it); no other call does.
#[test]
fn the_call_that_ends_the_handshake_names_its_key_exchange() {
    let pki = TestPki::new("kx-progress", &["localhost"]);
    let mut c = pki.client().session("localhost").unwrap();
    let mut s = pki.server().session().unwrap();
    let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let mut wire = take_out(&mut c);
        if !wire.is_empty() {
            at_server.push(s.receive(&mut wire).unwrap().0);
        }
        let mut wire = take_out(&mut s);
        if !wire.is_empty() {
            at_client.push(c.receive(&mut wire).unwrap().0);
        }
    }
    let want = crypto_provider().kx_groups[0].name();
    for (side, calls) in [("client", &at_client), ("server", &at_server)] {
        let done: Vec<_> = calls.iter().filter(|p| p.handshake_done).collect();
        assert_eq!(done.len(), 1, "{side}: {calls:?}");
        assert_eq!(done[0].key_exchange, Some(want), "{side}");
        assert!(calls.iter().all(|p| p.handshake_done || p.key_exchange.is_none()), "{side}");
    }
    assert!(s.on_own_records() && c.on_own_records());
    assert_eq!(super::is_post_quantum(want), cfg!(feature = "aws-lc-rs"));
}

#[test]
fn the_provider_prefers_what_the_build_offers() {
    use rustls::NamedGroup as G;
    let groups: Vec<G> = crypto_provider().kx_groups.iter().map(|g| g.name()).collect();
    #[cfg(feature = "aws-lc-rs")]
    assert_eq!(groups, [G::X25519MLKEM768, G::X25519, G::secp256r1, G::secp384r1]);
    #[cfg(not(feature = "aws-lc-rs"))]
    assert_eq!(groups, [G::X25519, G::secp256r1, G::secp384r1]);
    let first = crypto_provider().cipher_suites[0].suite();
    assert_eq!(first, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
}

/// A client that offers one classical key exchange only (a peer without X25519MLKEM768,
/// or with X25519 off) gets a handshake on it: the server's preference for the
/// post-quantum hybrid (with the `aws-lc-rs` feature) costs such a client nothing.
#[test]
fn a_client_with_one_classical_key_exchange_is_served() {
    use rustls::crypto::ring::kx_group;
    let pki = TestPki::new("kx", &["localhost"]);
    for group in [kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1] {
        // *ring*'s provider, whatever ringwire's is.
        #[allow(deprecated)]
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: vec![group],
            ..rustls::crypto::ring::default_provider()
        };
        let (mut client, mut server) = plain_client(&pki, Arc::new(provider));
        for _ in 0..4 {
            to_server(&mut client, &mut server);
            to_client(&mut server, &mut client);
        }
        assert!(!client.is_handshaking(), "{:?}", group.name());
        assert_eq!(client.negotiated_key_exchange_group().unwrap().name(), group.name());
        assert!(server.on_own_records());
    }
}

/// Our client session on its own records against a plain rustls server (buffered API):
/// data both ways and key updates from either side, so the client's derivation (its
/// receive secret is the server's) is checked against rustls too.
#[test]
fn a_client_updates_keys_with_a_plain_rustls_server() {
    use std::io::{Read, Write};
    let pki = TestPki::new("client-keyupdate", &["localhost"]);
    let mut server_cfg = (*pki.server().rustls()).clone();
    server_cfg.key_log = Arc::new(rustls::NoKeyLog);
    server_cfg.enable_secret_extraction = false;
    let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
    let mut client = pki.client().session("localhost").unwrap();
    let mut scratch = Vec::new();
    let to_server = |client: &mut TlsSession, server: &mut rustls::ServerConnection| {
        let wire = take_out(client);
        let mut rd = &wire[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut got = Vec::new();
        let _ = server.reader().read_to_end(&mut got);
        got
    };
    let to_client = |server: &mut rustls::ServerConnection, client: &mut TlsSession| {
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        client.receive(&mut wire).unwrap().1
    };
    for _ in 0..4 {
        to_server(&mut client, &mut server);
        to_client(&mut server, &mut client);
    }
    assert!(!server.is_handshaking() && client.on_own_records());
    let group = server.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, crypto_provider().kx_groups[0].name(), "the client's first offer");
    for i in 0..3 {
        client.encrypt(&[Bytes::from_static(b"up")], &mut scratch).unwrap();
        assert_eq!(to_server(&mut client, &mut server), b"up", "{i}");
        server.writer().write_all(b"down").unwrap();
        assert_eq!(to_client(&mut server, &mut client), b"down", "{i}");
        // The server updates and asks the client to: the client answers, then both
        // directions run on new keys.
        server.refresh_traffic_keys().unwrap();
        server.writer().write_all(b"new keys").unwrap();
        assert_eq!(to_client(&mut server, &mut client), b"new keys", "{i}");
        assert!(!client.out.is_empty(), "the client's KeyUpdate answer ({i})");
        client.force_key_update_after(0);
        client.encrypt(&[Bytes::from_static(b"and ours")], &mut scratch).unwrap();
        assert_eq!(to_server(&mut client, &mut server), b"and ours", "{i}");
    }
}

/// A client keeps the server's session tickets (a second connection under the same
/// configuration resumes: the server's first flight carries no certificate), and drops
/// rustls's state that took them at the server's first data.
#[test]
fn a_client_resumes_with_the_tickets_it_kept() {
    let pki = TestPki::new("resume", &["localhost"]);
    let (server, client) = (pki.server(), pki.client());
    // The server's first flight (after the ClientHello), in bytes.
    let first_flight = |c: &mut TlsSession, s: &mut TlsSession| {
        pump(c, s, 1 << 20).unwrap();
        take_out(s)
    };
    let mut c = client.session("localhost").unwrap();
    let mut s = server.session().unwrap();
    let full = first_flight(&mut c, &mut s);
    let mut wire = full.clone();
    c.receive(&mut wire).unwrap();
    for _ in 0..4 {
        pump(&mut c, &mut s, 1 << 20).unwrap();
        pump(&mut s, &mut c, 1 << 20).unwrap();
    }
    assert!(c.on_own_records() && s.on_own_records());
    assert!(c.keeps_tickets(), "the tickets may still come");
    s.encrypt(&[Bytes::from_static(b"HTTP/1.1 101")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut s, &mut c, 1 << 20).unwrap(), b"HTTP/1.1 101");
    assert!(!c.keeps_tickets(), "dropped at the server's first data");
    c.encrypt(&[Bytes::from_static(b"still")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut c, &mut s, 1 << 20).unwrap(), b"still");

    let mut c2 = client.session("localhost").unwrap();
    let mut s2 = server.session().unwrap();
    let resumed = first_flight(&mut c2, &mut s2);
    assert!(
        resumed.len() + 200 < full.len(),
        "a resumed handshake sends no certificate: {} vs {} bytes",
        resumed.len(),
        full.len()
    );
    let mut wire = resumed;
    c2.receive(&mut wire).unwrap();
    for _ in 0..4 {
        pump(&mut c2, &mut s2, 1 << 20).unwrap();
        pump(&mut s2, &mut c2, 1 << 20).unwrap();
    }
    assert!(c2.on_own_records() && s2.on_own_records());
    c2.encrypt(&[Bytes::from_static(b"resumed")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut c2, &mut s2, 1 << 20).unwrap(), b"resumed");
}

/// Handshakes interleaved on one thread, a byte at a time: each session catches its
/// own traffic secrets (they pass through one per-thread slot), and each converts.
#[test]
fn interleaved_handshakes_each_keep_their_own_secrets() {
    let pki = TestPki::new("interleaved", &["localhost"]);
    let (server, client) = (pki.server(), pki.client());
    let mut pairs: Vec<(TlsSession, TlsSession)> =
        (0..3).map(|_| (client.session("localhost").unwrap(), server.session().unwrap())).collect();
    for _ in 0..10 {
        for (c, s) in &mut pairs {
            pump(c, s, 1).unwrap();
        }
        for (c, s) in &mut pairs {
            pump(s, c, 1).unwrap();
        }
    }
    for (i, (c, s)) in pairs.iter_mut().enumerate() {
        assert!(c.on_own_records() && s.on_own_records(), "pair {i}");
        let msg = Bytes::from(format!("pair {i}"));
        c.encrypt(std::slice::from_ref(&msg), &mut Vec::new()).unwrap();
        assert_eq!(pump(c, s, 1 << 20).unwrap(), msg);
        s.encrypt(std::slice::from_ref(&msg), &mut Vec::new()).unwrap();
        assert_eq!(pump(s, c, 1 << 20).unwrap(), msg);
    }
}

/// A caller's rustls configuration: with secret extraction and a key log of its own,
/// `from_rustls` still gets the keys-only record layer and the caller's log still gets
/// every secret; handed to a session directly (no capture), rustls keeps the session.
#[test]
fn a_callers_configuration_keeps_its_key_log() {
    #[derive(Debug, Default)]
    struct Labels(std::sync::Mutex<Vec<String>>);
    impl rustls::KeyLog for Labels {
        fn log(&self, label: &str, _: &[u8], _: &[u8]) {
            self.0.lock().unwrap().push(label.to_owned());
        }
    }
    let pki = TestPki::new("keylog", &["localhost"]);
    let labels = Arc::new(Labels::default());
    let mut cfg = (*pki.server().rustls()).clone();
    cfg.key_log = labels.clone();
    let cfg = Arc::new(cfg);
    let wrapped = TlsServerConfig::from_rustls(cfg.clone());
    let (mut c, mut s) = connected(&wrapped, &pki.client(), "localhost", 100).unwrap();
    assert!(s.on_own_records());
    c.encrypt(&[Bytes::from_static(b"hi")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut c, &mut s, 100).unwrap(), b"hi");
    let got = labels.0.lock().unwrap().clone();
    for l in ["CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"] {
        assert!(got.iter().any(|g| g == l), "{l} in {got:?}");
    }
    // No capture in the configuration: rustls does the records, and they work.
    let mut c = pki.client().session("localhost").unwrap();
    let mut s = TlsSession::server(cfg).unwrap();
    for _ in 0..4 {
        pump(&mut c, &mut s, 100).unwrap();
        pump(&mut s, &mut c, 100).unwrap();
    }
    assert!(!s.is_handshaking() && !s.on_own_records() && c.on_own_records());
    c.encrypt(&[Bytes::from_static(b"hello")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut c, &mut s, 100).unwrap(), b"hello");
    s.encrypt(&[Bytes::from_static(b"back")], &mut Vec::new()).unwrap();
    assert_eq!(pump(&mut s, &mut c, 100).unwrap(), b"back");
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
