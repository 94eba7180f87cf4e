//! The traffic keys and secrets after the handshake, against plain rustls peers: key
//! updates both ways, keys rested and made again, the key exchange agreed on, session
//! tickets, and the secret capture (`secrets.rs`) with interleaved handshakes and a
//! caller's own key log.

use std::sync::Arc;

use bytes::Bytes;

use super::*;

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

/// A plain rustls connection, client or server.
trait Plain: std::ops::DerefMut<Target = rustls::ConnectionCommon<Self::Data>> {
    type Data;
}
impl Plain for rustls::ClientConnection {
    type Data = rustls::client::ClientConnectionData;
}
impl Plain for rustls::ServerConnection {
    type Data = rustls::server::ServerConnectionData;
}

/// Moves a plain peer's output to our session; returns the plaintext ours got.
fn to_ours(peer: &mut impl Plain, ours: &mut TlsSession) -> Vec<u8> {
    let mut wire = Vec::new();
    while peer.wants_write() {
        peer.write_tls(&mut wire).unwrap();
    }
    ours.receive(&mut wire).unwrap().1
}

/// Moves our session's output to a plain peer; returns the plaintext the peer got.
fn to_peer(ours: &mut TlsSession, peer: &mut impl Plain) -> Vec<u8> {
    use std::io::Read;
    let wire = take_out(ours);
    let mut rd = &wire[..];
    while !rd.is_empty() {
        peer.read_tls(&mut rd).unwrap();
        peer.process_new_packets().unwrap();
    }
    let mut got = Vec::new();
    let _ = peer.reader().read_to_end(&mut got);
    got
}

fn key_updates_with(pki: &TestPki, provider: Arc<rustls::crypto::CryptoProvider>) {
    use std::io::Write;
    let (mut client, mut server) = plain_client(pki, provider);
    let mut scratch = Vec::new();
    for _ in 0..4 {
        to_ours(&mut client, &mut server);
        to_peer(&mut server, &mut client);
    }
    assert!(!client.is_handshaking());
    assert!(server.on_own_records(), "the server keeps the traffic keys only");
    let suite = client.negotiated_cipher_suite().unwrap().suite();
    let group = client.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, crypto_provider().kx_groups[0].name(), "the first choice of both");

    client.writer().write_all(b"before").unwrap();
    assert_eq!(to_ours(&mut client, &mut server), b"before", "{suite:?}");
    server.encrypt(&[Bytes::from_static(b"reply")], &mut scratch).unwrap();
    assert_eq!(to_peer(&mut server, &mut client), b"reply");

    // The client updates its keys and asks the server to update its own (RFC 8446
    // §4.6.3): the server follows with a KeyUpdate of its own, then new keys.
    client.refresh_traffic_keys().unwrap();
    client.writer().write_all(b"after").unwrap();
    assert_eq!(to_ours(&mut client, &mut server), b"after");
    assert!(!server.out.is_empty(), "the server's KeyUpdate answer");
    server.encrypt(&[Bytes::from_static(b"under new keys")], &mut scratch).unwrap();
    assert_eq!(to_peer(&mut server, &mut client), b"under new keys");

    // The server's own key update, when its key has sealed its share of records.
    server.force_key_update_after(0);
    server.encrypt(&[Bytes::from_static(b"rekeyed")], &mut scratch).unwrap();
    assert_eq!(to_peer(&mut server, &mut client), b"rekeyed", "{suite:?}");
    client.writer().write_all(b"still fine").unwrap();
    assert_eq!(to_ours(&mut client, &mut server), b"still fine");
    // Twice more each way: each update derives from the last secret, not the first.
    for i in 0..2 {
        client.refresh_traffic_keys().unwrap();
        client.writer().write_all(b"again").unwrap();
        assert_eq!(to_ours(&mut client, &mut server), b"again", "{suite:?} {i}");
        server.force_key_update_after(0);
        server.encrypt(&[Bytes::from_static(b"and again")], &mut scratch).unwrap();
        assert_eq!(to_peer(&mut server, &mut client), b"and again", "{suite:?} {i}");
    }

    // close_notify from the client.
    client.send_close_notify();
    to_ours(&mut client, &mut server);
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
    assert_eq!(crate::tls::is_post_quantum(want), cfg!(feature = "aws-lc-rs"));
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
            to_ours(&mut client, &mut server);
            to_peer(&mut server, &mut client);
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
    use std::io::Write;
    let pki = TestPki::new("client-keyupdate", &["localhost"]);
    let mut server_cfg = (*pki.server().rustls()).clone();
    server_cfg.key_log = Arc::new(rustls::NoKeyLog);
    server_cfg.enable_secret_extraction = false;
    let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
    let mut client = pki.client().session("localhost").unwrap();
    let mut scratch = Vec::new();
    for _ in 0..4 {
        to_peer(&mut client, &mut server);
        to_ours(&mut server, &mut client);
    }
    assert!(!server.is_handshaking() && client.on_own_records());
    let group = server.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, crypto_provider().kx_groups[0].name(), "the client's first offer");
    for i in 0..3 {
        client.encrypt(&[Bytes::from_static(b"up")], &mut scratch).unwrap();
        assert_eq!(to_peer(&mut client, &mut server), b"up", "{i}");
        server.writer().write_all(b"down").unwrap();
        assert_eq!(to_ours(&mut server, &mut client), b"down", "{i}");
        // The server updates and asks the client to: the client answers, then both
        // directions run on new keys.
        server.refresh_traffic_keys().unwrap();
        server.writer().write_all(b"new keys").unwrap();
        assert_eq!(to_ours(&mut server, &mut client), b"new keys", "{i}");
        assert!(!client.out.is_empty(), "the client's KeyUpdate answer ({i})");
        client.force_key_update_after(0);
        client.encrypt(&[Bytes::from_static(b"and ours")], &mut scratch).unwrap();
        assert_eq!(to_peer(&mut client, &mut server), b"and ours", "{i}");
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
