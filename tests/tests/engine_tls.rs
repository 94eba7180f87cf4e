//! wss:// on both backends: ringwire's TLS server against tokio-rustls clients
//! (tokio-tungstenite on top), ringwire's client against a tokio-rustls server and
//! against itself, and what a hostile or careless peer gets: garbage instead of TLS,
//! silence, a certificate that must not be trusted, a TCP close without close_notify.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::client::{client_engine, expect_msg, expect_state};
use common::tls::{rustls_server, Leaf, TestCa};
use common::{builder, wait_until, GuardExt, Guarded, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use ringwire::client::{Cause, ClientConfig, ClientState};
use ringwire::frame::Message;
use ringwire::tls::TlsServerConfig;
use ringwire::{BackendChoice, Echo};
use tokio_tungstenite::tungstenite::Message as TsMessage;

/// A ringwire echo server with TLS from `leaf`.
fn tls_echo(backend: BackendChoice, leaf: &Leaf) -> (Guarded, TlsServerConfig) {
    let tls = TlsServerConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let server = builder(backend)
        .handshake_timeout(Duration::from_millis(800))
        .tls(tls.clone())
        .start(|_| Echo)
        .expect("engine starts")
        .guarded();
    (server, tls)
}

/// Whether this build's TLS offers a post-quantum key exchange first (the engine's
/// `aws-lc-rs` feature).
fn prefers_post_quantum() -> bool {
    ringwire::tls::is_post_quantum(ringwire::tls::crypto_provider().kx_groups[0].name())
}

fn with_tls(t: ringwire::tls::TlsClientConfig) -> ClientConfig {
    let mut c = ClientConfig::default();
    c.tls = Some(t);
    c
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

type TlsWs =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A tokio-rustls + tokio-tungstenite client, upgraded.
async fn tokio_client(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<TlsWs, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/"), tls)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn echo_round(ws: &mut TlsWs, m: TsMessage) {
    ws.send(m.clone()).await.unwrap();
    let got = tokio::time::timeout(PATIENCE, ws.next()).await.expect("an answer in time");
    assert_eq!(got.unwrap().unwrap(), m);
}

fn tokio_rustls_clients_talk_to_the_server(backend: BackendChoice) {
    let ca = TestCa::new("interop-in");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _) = tls_echo(backend, &leaf);
    let addr = server.local_addrs()[0];
    let tls13 = ca.rustls_client();
    let tls12 = {
        let mut c = (*tls13).clone();
        let provider = Arc::new(common::tls::provider());
        let mut b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates({
                let mut r = rustls::RootCertStore::empty();
                use rustls::pki_types::pem::PemObject;
                for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca.ca_pem).unwrap() {
                    r.add(cert.unwrap()).unwrap();
                }
                r
            })
            .with_no_client_auth();
        b.alpn_protocols = std::mem::take(&mut c.alpn_protocols);
        Arc::new(b)
    };
    rt().block_on(async {
        for config in [tls13, tls12] {
            let mut ws = tokio_client(addr, config, "localhost").await.expect("wss connects");
            echo_round(&mut ws, TsMessage::text("hello over TLS")).await;
            // Larger than a TLS record and than a receive buffer: many records each way.
            let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
            echo_round(&mut ws, TsMessage::binary(big)).await;
            for i in 0..50 {
                echo_round(&mut ws, TsMessage::text(format!("m{i}"))).await;
            }
            ws.close(None).await.unwrap();
            // The close handshake completes: the stream ends without an error.
            while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, ws.next()).await {}
        }
    });
    assert!(wait_until(PATIENCE, || server.stats().connections == 0), "{:?}", server.stats());
    let s = server.stats();
    assert_eq!((s.tls_failures, s.tls_truncations, s.handshake_failures), (0, 0, 0), "{s:?}");
    assert!(s.messages_in >= 104, "{s:?}");
    // TLS 1.3 with the build's first key exchange (post-quantum with `aws-lc-rs`), TLS
    // 1.2 with a classical one (the hybrids are TLS 1.3's).
    let pq = u64::from(prefers_post_quantum());
    assert_eq!((s.tls_handshakes, s.tls_handshakes_post_quantum), (2, pq), "{s:?}");
    server.shutdown().unwrap();
}

fn garbage_silence_and_floods_are_cut_off(backend: BackendChoice) {
    use std::io::{Read, Write};
    let ca = TestCa::new("hostile");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _) = tls_echo(backend, &leaf);
    let addr = server.local_addrs()[0];
    let rt = rt();
    // A good client first, kept open through what follows.
    let mut good = rt.block_on(tokio_client(addr, ca.rustls_client(), "localhost")).unwrap();

    // Plain HTTP on the TLS port: an alert, then the socket closes.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(common::upgrade_request("/").as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(got.first() == Some(&0x15) || got.is_empty(), "an alert or nothing: {got:?}");

    // Silence: cut at the handshake timeout (800 ms here).
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let t0 = std::time::Instant::now();
    let n = silent.read(&mut [0u8; 64]).unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
    assert!(t0.elapsed() < Duration::from_secs(4), "cut at the handshake timeout");

    // A huge "ClientHello": handshake records without end. The server refuses it by
    // what it announces (a TLS failure, counted below, not a timeout) and closes; what
    // the writes below put in the kernel's buffers is not the server's memory.
    let mut flood = std::net::TcpStream::connect(addr).unwrap();
    flood.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut hello = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    hello.resize(5 + 0x4000, 0x41);
    for _ in 0..64 {
        if flood.write_all(&hello).is_err() {
            break;
        }
        let mut rec = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        rec.resize(5 + 0x4000, 0x41);
        hello = rec;
    }
    flood.set_read_timeout(Some(PATIENCE)).unwrap();
    let t0 = std::time::Instant::now();
    let mut sink = Vec::new();
    let _ = flood.read_to_end(&mut sink); // ends: the server closed it
    assert!(t0.elapsed() < PATIENCE, "the server closed the flood");

    // The good connection did not notice.
    rt.block_on(echo_round(&mut good, TsMessage::text("still here")));
    assert!(wait_until(PATIENCE, || server.stats().tls_failures >= 2), "{:?}", server.stats());
    let s = server.stats();
    assert!(s.handshake_timeouts >= 1, "{s:?}");
    // The last close's completion may lag the peer seeing it: wait for the count.
    assert!(
        wait_until(PATIENCE, || server.stats().connections == 1),
        "only the good one is left: {:?}",
        server.stats()
    );
    server.shutdown().unwrap();
}

fn ringwire_client_over_wss(backend: BackendChoice) {
    let ca = TestCa::new("client");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let (server, _) = tls_echo(backend, &leaf);
    let port = server.local_addrs()[0].port();
    let (engine, rx) = client_engine(backend);
    let config = with_tls(ca.ringwire_client());
    let h = engine.connect(&format!("wss://localhost:{port}/x"), config.clone()).unwrap();
    expect_state(&rx, ClientState::Connected);
    let pq = u64::from(prefers_post_quantum());
    let (c, s) = (engine.stats(), server.stats());
    assert_eq!((c.tls_handshakes, c.tls_handshakes_post_quantum), (1, pq), "{c:?}");
    assert_eq!((s.tls_handshakes, s.tls_handshakes_post_quantum), (1, pq), "{s:?}");
    h.send(Message::text("over wss")).unwrap();
    assert_eq!(expect_msg(&rx), Message::text("over wss"));
    let big = Message::binary(vec![9u8; 200_000]);
    h.send(big.clone()).unwrap();
    assert_eq!(expect_msg(&rx), big);
    h.close(ringwire::frame::CloseCode::NORMAL, "done").unwrap();
    expect_state(&rx, ClientState::Closed);

    // An address in the certificate is checked as an address.
    let h = engine.connect(&format!("wss://127.0.0.1:{port}/"), config.clone()).unwrap();
    expect_state(&rx, ClientState::Connected);
    drop(h);

    // Refusals: a name the certificate does not carry, an authority not trusted, an
    // expired certificate. Each is a clear, permanent `Cause::Tls`.
    let wrong = ca.leaf(&["example.com"]);
    let (other_server, _) = tls_echo(backend, &wrong);
    let other_port = other_server.local_addrs()[0].port();
    let expired = ca.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (expired_server, _) = tls_echo(backend, &expired);
    let expired_port = expired_server.local_addrs()[0].port();
    let stranger = TestCa::new("stranger");
    for (url, cfg, word) in [
        (format!("wss://localhost:{other_port}/"), config.clone(), "not valid for name"),
        (format!("wss://localhost:{port}/"), with_tls(stranger.ringwire_client()), "issuer"),
        (format!("wss://localhost:{expired_port}/"), config.clone(), "expired"),
    ] {
        let _h = engine.connect(&url, cfg).unwrap();
        let (change, _) = expect_state(&rx, ClientState::Closed);
        match &change.cause {
            Cause::Tls(reason) => {
                assert!(reason.to_lowercase().contains(word), "{url}: {reason}")
            }
            other => panic!("{url}: expected a TLS cause, got {other:?}"),
        }
    }
    // The servers counted a failed handshake for each refusal, and learned why: the
    // client's alert (bad certificate) reached them before its socket closed, a TLS
    // failure where a bare close would only be a handshake cut short.
    for s in [&other_server, &expired_server] {
        assert!(wait_until(PATIENCE, || s.stats().handshake_failures >= 1), "{:?}", s.stats());
        assert!(wait_until(PATIENCE, || s.stats().tls_failures >= 1), "{:?}", s.stats());
    }
    // A plain ws:// client to the TLS port fails its upgrade, clearly.
    let _h = engine.connect(&format!("ws://localhost:{port}/"), ClientConfig::default());
    server.shutdown().unwrap();
}

/// ringwire's client against a tokio-rustls + tokio-tungstenite echo server.
fn ringwire_client_to_tokio_rustls(backend: BackendChoice) {
    let ca = TestCa::new("interop-out");
    let leaf = ca.leaf(&["localhost"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_server(&leaf));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = l.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() || m.is_binary() {
                    ws.send(m).await.unwrap();
                }
            }
        })
    });
    let (engine, rx) = client_engine(backend);
    let config = with_tls(ca.ringwire_client());
    let h = engine.connect(&format!("wss://localhost:{port}/"), config).unwrap();
    expect_state(&rx, ClientState::Connected);
    for m in [Message::text("to tokio-rustls"), Message::binary(vec![3u8; 100_000])] {
        h.send(m.clone()).unwrap();
        assert_eq!(expect_msg(&rx), m);
    }
    h.close(ringwire::frame::CloseCode::NORMAL, "").unwrap();
    expect_state(&rx, ClientState::Closed);
}

fn a_truncation_is_counted(backend: BackendChoice) {
    let ca = TestCa::new("truncate");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _) = tls_echo(backend, &leaf);
    let addr = server.local_addrs()[0];
    rt().block_on(async {
        let mut ws = tokio_client(addr, ca.rustls_client(), "localhost").await.unwrap();
        echo_round(&mut ws, TsMessage::text("x")).await;
        // Drop the stream: no close frame, no close_notify (tokio-rustls sends one only
        // on shutdown), just TCP's FIN.
        drop(ws);
    });
    assert!(wait_until(PATIENCE, || server.stats().tls_truncations == 1), "{:?}", server.stats());
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    server.shutdown().unwrap();
}

fn a_reload_serves_the_new_certificate_and_keeps_connections(backend: BackendChoice) {
    let old_ca = TestCa::new("reload-old");
    let new_ca = TestCa::new("reload-new");
    let old = old_ca.leaf(&["localhost"]);
    let (server, tls) = tls_echo(backend, &old);
    let addr = server.local_addrs()[0];
    let rt = rt();
    let mut kept = rt.block_on(tokio_client(addr, old_ca.rustls_client(), "localhost")).unwrap();
    assert!(rt.block_on(tokio_client(addr, new_ca.rustls_client(), "localhost")).is_err());
    let new = new_ca.leaf(&["localhost"]);
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    tls.reload().unwrap();
    let mut fresh = rt.block_on(tokio_client(addr, new_ca.rustls_client(), "localhost")).unwrap();
    rt.block_on(echo_round(&mut fresh, TsMessage::text("new cert")));
    rt.block_on(echo_round(&mut kept, TsMessage::text("old connection still up")));
    server.shutdown().unwrap();
}

/// The server restarts with a new certificate (a new key, the same authority): the
/// client reconnects by itself and verifies the new one.
fn a_restarted_server_with_a_new_certificate(backend: BackendChoice) {
    let ca = TestCa::new("restart");
    let (server, _) = tls_echo(backend, &ca.leaf(&["localhost"]));
    let addr = server.local_addrs()[0];
    let (engine, rx) = client_engine(backend);
    let h = engine
        .connect(&format!("wss://localhost:{}/", addr.port()), with_tls(ca.ringwire_client()))
        .unwrap();
    expect_state(&rx, ClientState::Connected);
    server.shutdown().unwrap();
    expect_state(&rx, ClientState::Reconnecting);
    let second = ca.leaf(&["localhost"]);
    let tls = TlsServerConfig::from_pem_files(&second.cert, &second.key).unwrap();
    let again = ringwire::Engine::builder()
        .listen(addr)
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
        .tls(tls)
        .start(|_| Echo)
        .expect("the server starts again on its port")
        .guarded();
    expect_state(&rx, ClientState::Connected);
    h.send(Message::text("after the restart")).unwrap();
    assert_eq!(expect_msg(&rx), Message::text("after the restart"));
    again.shutdown().unwrap();
}

/// Many TLS connections come and go: no descriptor, record or session is left.
fn tls_connections_come_and_go_without_leaks(backend: BackendChoice) {
    let ca = TestCa::new("churn");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _) = tls_echo(backend, &leaf);
    let addr = server.local_addrs()[0];
    let fds = common::open_fds();
    let config = ca.rustls_client();
    rt().block_on(async {
        for round in 0..10 {
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let config = config.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ws = tokio_client(addr, config, "localhost").await.unwrap();
                    echo_round(&mut ws, TsMessage::text("churn")).await;
                    if round % 2 == 0 {
                        ws.close(None).await.unwrap();
                        while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, ws.next()).await
                        {
                        }
                    } // else: dropped, a truncation
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    assert!(wait_until(PATIENCE, || server.stats().connections == 0), "{:?}", server.stats());
    assert!(
        wait_until(PATIENCE, || common::open_fds() <= fds + 2),
        "fds {fds} -> {}",
        common::open_fds()
    );
    let s = server.stats();
    assert_eq!(s.accepted, 200, "{s:?}");
    assert_eq!(s.tls_failures, 0, "{s:?}");
    server.shutdown().unwrap();
}

/// Idle TLS connections drop their expanded record keys (after the upgrade, at each
/// heartbeat and its pong) and make them again for the next record: with heartbeats
/// every 100 ms both ways, a connection left idle for a second goes through many such
/// rests on both sides and still echoes, with no TLS failure.
fn heartbeats_over_wss_rest_and_wake_the_keys(backend: BackendChoice) {
    let ca = TestCa::new("rest");
    let leaf = ca.leaf(&["localhost"]);
    let tls = TlsServerConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let frame = ringwire::frame::Config::default()
        .ping_interval(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(2000));
    let server = builder(backend).frame(frame).tls(tls).start(|_| Echo).unwrap().guarded();
    let port = server.local_addrs()[0].port();
    let (engine, rx) = client_engine(backend);
    let mut config = with_tls(ca.ringwire_client());
    config.ping_interval = Some(Duration::from_millis(100));
    let h = engine.connect(&format!("wss://localhost:{port}/"), config).unwrap();
    expect_state(&rx, ClientState::Connected);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        let m = Message::text(format!("after a rest {round}"));
        h.send(m.clone()).unwrap();
        assert_eq!(expect_msg(&rx), m);
    }
    let (c, s) = (engine.stats(), server.stats());
    // Whichever side pings first keeps the other from pinging (any inbound traffic is
    // life), so only the sum is known.
    let pongs = s.rtt.count() + c.rtt.count();
    assert!(pongs >= 5, "{pongs} heartbeats answered: {s:?} {c:?}");
    assert_eq!((s.tls_failures, c.tls_failures), (0, 0), "{s:?} {c:?}");
    h.close(ringwire::frame::CloseCode::NORMAL, "done").unwrap();
    expect_state(&rx, ClientState::Closed);
}

both_backends! {
    heartbeats_over_wss_rest_and_wake_the_keys => heartbeat_rest_uring, heartbeat_rest_epoll;
    tokio_rustls_clients_talk_to_the_server => tokio_rustls_in_uring, tokio_rustls_in_epoll;
    garbage_silence_and_floods_are_cut_off => hostile_uring, hostile_epoll;
    ringwire_client_over_wss => client_wss_uring, client_wss_epoll;
    ringwire_client_to_tokio_rustls => client_to_tokio_rustls_uring, client_to_tokio_rustls_epoll;
    a_truncation_is_counted => truncation_uring, truncation_epoll;
    a_reload_serves_the_new_certificate_and_keeps_connections => reload_uring, reload_epoll;
    tls_connections_come_and_go_without_leaks => churn_uring, churn_epoll;
    a_restarted_server_with_a_new_certificate => restart_uring, restart_epoll;
}
