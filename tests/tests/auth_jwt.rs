#![allow(missing_docs)]
//! Who may connect and use which topics (`EngineConfig::authorizer`) with JSON Web
//! Tokens (HS256), on both backends: no token or a bad one is refused with 401; a token's
//! topics are enforced on subscribe and publish (1008 otherwise); a token that expires
//! closes its connection with 1008 unless a renewed one came first (`Ctx::reauthorize`);
//! every refusal counted.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use ringwire::auth::JwtAuthorizer;
use ringwire::BackendChoice;

const SECRET: &[u8] = b"a test secret of thirty-two bytes";

fn token(exp_in: i64, subscribe: &[&str], publish: &[&str]) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims =
        serde_json::json!({"exp": now + exp_in, "subscribe": subscribe, "publish": publish});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The answer's status line to an upgrade with `extra` headers on `path`.
fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> (String, TcpStreamOf) {
    let mut s = connect(addr);
    let req = upgrade_request(path).replace("\r\n\r\n", &format!("\r\n{extra}\r\n"));
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s).expect("an answer");
    (head.lines().next().unwrap_or_default().to_owned(), s)
}

type TcpStreamOf = std::net::TcpStream;

fn authorized(addr: SocketAddr, tok: &str) -> RawClient {
    let (status, s) = upgrade(addr, "/", &format!("Authorization: Bearer {tok}\r\n"));
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    RawClient { s }
}

fn jwt_is_enforced(backend: BackendChoice) {
    let b = builder(backend).authorizer(JwtAuthorizer::hs256(SECRET).unwrap());
    let (server, _rx) = start_probe(b);
    let addr = server.local_addr();

    // Refused on the upgrade.
    assert!(upgrade(addr, "/", "").0.starts_with("HTTP/1.1 401"), "no token");
    let forged = {
        let claims = serde_json::json!({"exp": u64::MAX / 2, "subscribe": ["*"]});
        let key =
            jsonwebtoken::EncodingKey::from_secret(b"not the server's secret at all!!").unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let status = upgrade(addr, "/", &format!("Authorization: Bearer {forged}\r\n")).0;
    assert!(status.starts_with("HTTP/1.1 401"), "forged: {status}");
    let old = token(-60, &["*"], &[]);
    assert!(upgrade(addr, "/", &format!("Authorization: Bearer {old}\r\n"))
        .0
        .starts_with("HTTP/1.1 401"));

    // Granted topics, by header and by query.
    let t = token(60, &["prices.*"], &["chat.7"]);
    let mut c = authorized(addr, &t);
    c.send(true, OP_TEXT, b"sub:prices.eu");
    assert_eq!(c.expect_data().payload, b"ok");
    c.send(true, OP_TEXT, b"pub:prices.eu:tick");
    assert_eq!(c.expect_close().close_code(), 1008, "publishing there is not granted");
    c.send_close(1008);
    let (status, s) = upgrade(addr, &format!("/?token={t}"), "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let mut c = RawClient { s };
    c.send(true, OP_TEXT, b"pub:chat.7:hello");
    c.send(true, OP_TEXT, b"sub:chat.7");
    assert_eq!(c.expect_close().close_code(), 1008, "subscribing there is not granted");
    c.send_close(1008);

    // A token that ends closes its connection.
    let short = token(1, &["*"], &["*"]);
    let mut c = authorized(addr, &short);
    c.send(true, OP_TEXT, b"sub:anything");
    assert_eq!(c.expect_data().payload, b"ok");
    let close = c.expect_close(); // within PATIENCE: 1 s of token, 5 s of leeway at most
    assert_eq!(close.close_code(), 1008);
    c.send_close(1008);
    // A renewed token keeps a connection past its first token's end; refused
    // credentials close it.
    let mut c = authorized(addr, &token(2, &["*"], &["*"]));
    c.send(true, OP_TEXT, format!("auth:{}", token(60, &["*"], &["*"])).as_bytes());
    assert_eq!(c.expect_data().payload, b"renewed");
    std::thread::sleep(std::time::Duration::from_secs(4));
    c.send(true, OP_BINARY, b"still here");
    assert_eq!(c.expect_data().payload, b"still here", "open past the first token's end");
    c.send(true, OP_TEXT, b"auth:not.a.token");
    assert_eq!(c.expect_close().close_code(), 1008, "refused credentials");
    c.send_close(1008);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    let s = server.stats();
    assert_eq!(s.auth_refusals, 3 + 2 + 1 + 1, "{s:?}");
    assert_eq!(s.handshake_failures_by_status, vec![(Some(401), 3)]);
}

both_backends! {
    jwt_is_enforced => jwt_is_enforced_io_uring, jwt_is_enforced_epoll;
}
