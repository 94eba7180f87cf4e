//! The HTTP/1.1 upgrade (RFC 6455 §4) between ringwire's sans-IO handshake and
//! tungstenite 0.26, each side in each role, then one message each way over the upgraded
//! connection.
//!
//! No sockets: an in-memory duplex whose reads return `WouldBlock` when empty, so the
//! tungstenite handshake is driven step by step through `HandshakeError::Interrupted`.
#![allow(missing_docs)]
// tungstenite's handshake callback returns `Result<Response, ErrorResponse>`; its large
// `Err` variant is its API, not ours.
#![allow(clippy::result_large_err)]

use std::time::Instant;

use std::cell::RefCell;
use std::rc::Rc;

use ringwire_frame::handshake::{
    accept_key, parse_request, parse_response, ClientRequest, HandshakeError, HandshakeLimits,
};
use ringwire_frame::{Config, Connection, Event, Message, XorShiftMask};
use ringwire_tests::duplex::{duplex, End};
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::server::{ErrorResponse, Request as TsRequest, Response as TsResponse};
use tungstenite::handshake::{HandshakeError as TsHandshakeError, HandshakeRole};
use tungstenite::http::{StatusCode, Uri};
use tungstenite::protocol::WebSocket;
use tungstenite::{ClientRequestBuilder, Message as TsMessage};

fn expect_interrupted<R: HandshakeRole>(
    r: Result<R::FinalResult, TsHandshakeError<R>>,
) -> tungstenite::handshake::MidHandshake<R> {
    match r {
        Err(TsHandshakeError::Interrupted(mid)) => mid,
        Err(TsHandshakeError::Failure(e)) => panic!("handshake failed: {e}"),
        Ok(_) => panic!("handshake finished before the peer answered"),
    }
}

fn ts_read(ws: &mut WebSocket<End>) -> TsMessage {
    match ws.read() {
        Ok(m) => m,
        Err(e) => panic!("tungstenite read: {e}"),
    }
}

const NONCE: [u8; 16] = *b"ringwire-nonce-1";

// ---- ringwire client, tungstenite server ----------------------------------------------

/// What the tungstenite server saw of the request.
#[derive(Default, Debug, Clone)]
struct Seen {
    path: String,
    host: String,
    origin: String,
    key: String,
    protocol: String,
}

fn header(req: &TsRequest, name: &str) -> String {
    req.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[test]
fn ringwire_client_upgrades_with_tungstenite_server() {
    let limits = HandshakeLimits::default();
    let req = ClientRequest::new("example.com:9001", "/chat?room=1", NONCE)
        .header("Origin", "http://example.com");
    let mut request = Vec::new();
    req.write(&mut request).unwrap();

    // tungstenite reads 16 bytes at a time (1 would trip its anti-slowloris check) and
    // gets the request in two writes.
    let (client_end, server_end) = duplex(16);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let seen2 = seen.clone();
    let callback = move |r: &TsRequest, resp: TsResponse| {
        *seen2.borrow_mut() = Seen {
            path: r.uri().to_string(),
            host: header(r, "host"),
            origin: header(r, "origin"),
            key: header(r, "sec-websocket-key"),
            protocol: header(r, "sec-websocket-protocol"),
        };
        Ok(resp)
    };
    let (first, second) = request.split_at(request.len() / 2);
    client_end.put(first);
    let mut mid = expect_interrupted(tungstenite::accept_hdr(server_end, callback));
    client_end.put(second);
    let mut ws = loop {
        match mid.handshake() {
            Ok(ws) => break ws,
            Err(TsHandshakeError::Interrupted(m)) => mid = m,
            Err(TsHandshakeError::Failure(e)) => panic!("tungstenite refused our request: {e}"),
        }
    };
    let seen = seen.borrow().clone();
    assert_eq!(seen.path, "/chat?room=1");
    assert_eq!(seen.host, "example.com:9001");
    assert_eq!(seen.origin, "http://example.com");
    assert_eq!(seen.key, req.key());
    assert_eq!(seen.protocol, "");

    // tungstenite's 101 validates in ringwire, and every prefix of it is incomplete.
    let response = client_end.take_all();
    for i in 0..response.len() {
        assert_eq!(parse_response(&response[..i], &req, &limits), Ok(None), "prefix {i}");
    }
    let (resp, used) = parse_response(&response, &req, &limits).unwrap().unwrap();
    assert_eq!(used, response.len());
    assert_eq!(resp.protocol, None);
    let accept = resp
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.clone());
    assert_eq!(accept, Some(accept_key(req.key().as_bytes()).into_bytes()));

    // One message each way over the upgraded connection.
    let now = Instant::now();
    let mut conn = Connection::client(Config::default(), Box::new(XorShiftMask::new(7)), now);
    conn.send_text("hello from ringwire").unwrap();
    let mut out = Vec::new();
    conn.poll_transmit_into(&mut out);
    client_end.put(&out);
    assert_eq!(ts_read(&mut ws), TsMessage::text("hello from ringwire"));
    ws.send(TsMessage::binary(vec![1u8, 2, 3])).unwrap();
    conn.handle_bytes(now, &client_end.take_all());
    assert_eq!(conn.poll_event(), Some(Event::Message(Message::binary(vec![1u8, 2, 3]))));
    assert_eq!(conn.poll_event(), None);
}

#[test]
fn subprotocol_chosen_by_tungstenite_server() {
    let limits = HandshakeLimits::default();
    for (offer, choose, want) in [
        (&["chat", "superchat"][..], Some("superchat"), Ok(Some("superchat".to_owned()))),
        (&["chat"][..], None, Ok(None)),
        // §4.1: a subprotocol the client did not offer fails the handshake.
        (&["chat"][..], Some("other"), Err(HandshakeError::UnexpectedProtocol)),
    ] {
        let req = offer.iter().fold(ClientRequest::new("h", "/", NONCE), |r, p| r.protocol(*p));
        let mut request = Vec::new();
        req.write(&mut request).unwrap();
        let (client_end, server_end) = duplex(usize::MAX);
        client_end.put(&request);
        let offered = Rc::new(RefCell::new(String::new()));
        let offered2 = offered.clone();
        let callback = move |r: &TsRequest, mut resp: TsResponse| {
            *offered2.borrow_mut() = header(r, "sec-websocket-protocol");
            if let Some(p) = choose {
                resp.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().unwrap());
            }
            Ok(resp)
        };
        let _ws = tungstenite::accept_hdr(server_end, callback).unwrap();
        assert_eq!(*offered.borrow(), offer.join(", "));
        let response = client_end.take_all();
        let got = parse_response(&response, &req, &limits).map(|r| r.unwrap().0.protocol);
        assert_eq!(got, want, "offer {offer:?} choose {choose:?}");
    }
}

#[test]
fn frames_right_after_tungstenite_101_are_kept() {
    // tungstenite may send a message right after its 101; ringwire's parse_response reports
    // how many bytes the head took and the rest is the WebSocket stream.
    let limits = HandshakeLimits::default();
    let req = ClientRequest::new("h", "/", NONCE);
    let mut request = Vec::new();
    req.write(&mut request).unwrap();
    let (client_end, server_end) = duplex(usize::MAX);
    client_end.put(&request);
    let mut ws = tungstenite::accept(server_end).unwrap();
    ws.send(TsMessage::text("early")).unwrap();
    ws.send(TsMessage::Ping(vec![9u8].into())).unwrap();

    let buf = client_end.take_all();
    let (_, used) = parse_response(&buf, &req, &limits).unwrap().unwrap();
    assert!(used < buf.len());
    let now = Instant::now();
    let mut conn = Connection::client(Config::default(), Box::new(XorShiftMask::new(3)), now);
    conn.handle_bytes(now, &buf[used..]);
    assert_eq!(conn.poll_event(), Some(Event::Message(Message::text("early"))));
    assert_eq!(conn.poll_event(), Some(Event::Ping(vec![9u8].into())));
    let mut out = Vec::new();
    conn.poll_transmit_into(&mut out);
    client_end.put(&out);
    assert_eq!(ts_read(&mut ws), TsMessage::Pong(vec![9u8].into()));
}

#[test]
fn tungstenite_server_rejection_is_an_error_in_ringwire() {
    let limits = HandshakeLimits::default();
    let req = ClientRequest::new("h", "/private", NONCE);
    let mut request = Vec::new();
    req.write(&mut request).unwrap();
    let (client_end, server_end) = duplex(usize::MAX);
    client_end.put(&request);
    let callback = |_: &TsRequest, _: TsResponse| -> Result<TsResponse, ErrorResponse> {
        let mut e = ErrorResponse::new(Some("no entry".into()));
        *e.status_mut() = StatusCode::FORBIDDEN;
        Err(e)
    };
    assert!(matches!(
        tungstenite::accept_hdr(server_end, callback),
        Err(TsHandshakeError::Failure(tungstenite::Error::Http(_)))
    ));
    let response = client_end.take_all();
    assert_eq!(parse_response(&response, &req, &limits), Err(HandshakeError::Status(403)));
}

// ---- tungstenite client, ringwire server ----------------------------------------------

/// Starts a tungstenite client handshake; returns it waiting for the response, and the
/// request bytes it wrote.
fn start_ts_client(
    request: ClientRequestBuilder,
    client_end: End,
    server_end: &End,
) -> (tungstenite::handshake::MidHandshake<ClientHandshake<End>>, Vec<u8>) {
    let mid = expect_interrupted(tungstenite::client::client(request, client_end));
    (mid, server_end.take_all())
}

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

#[test]
fn tungstenite_client_upgrades_with_ringwire_server() {
    let limits = HandshakeLimits::default();
    let (client_end, server_end) = duplex(usize::MAX);
    let builder = ClientRequestBuilder::new(uri("ws://example.com:8080/chat?x=1"))
        .with_header("Origin", "https://example.com");
    let (mid, request) = start_ts_client(builder, client_end, &server_end);

    for i in 0..request.len() {
        assert_eq!(parse_request(&request[..i], &limits), Ok(None), "prefix {i}");
    }
    let (req, used) = parse_request(&request, &limits).unwrap().unwrap();
    assert_eq!(used, request.len());
    assert_eq!(req.path, "/chat?x=1");
    assert_eq!(req.host, "example.com:8080");
    assert_eq!(req.origin.as_deref(), Some("https://example.com"));
    assert!(req.protocols.is_empty());
    assert_eq!(req.header("sec-websocket-version"), Some(&b"13"[..]));

    let mut response = Vec::new();
    req.accept(None, &[("X-Server", "ringwire")], &mut response).unwrap();
    // tungstenite reads the response in two pieces.
    let (a, b) = response.split_at(20);
    server_end.put(a);
    let mid = expect_interrupted(mid.handshake());
    server_end.put(b);
    let (mut ws, resp) = mid.handshake().expect("tungstenite accepted ringwire's 101");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["x-server"], "ringwire");
    assert_eq!(
        resp.headers()["sec-websocket-accept"].to_str().unwrap(),
        accept_key(req.key.as_bytes())
    );

    // One message each way.
    let now = Instant::now();
    let mut conn = Connection::server(Config::default(), now);
    ws.send(TsMessage::text("hello from tungstenite")).unwrap();
    conn.handle_bytes(now, &server_end.take_all());
    assert_eq!(conn.poll_event(), Some(Event::Message(Message::text("hello from tungstenite"))));
    conn.send_binary(&[4, 5, 6]).unwrap();
    let mut out = Vec::new();
    conn.poll_transmit_into(&mut out);
    server_end.put(&out);
    assert_eq!(ts_read(&mut ws), TsMessage::binary(vec![4u8, 5, 6]));

    // And the close handshake, tungstenite first; the server then hangs up.
    ws.close(None).unwrap();
    conn.handle_bytes(now, &server_end.take_all());
    assert!(matches!(conn.poll_event(), Some(Event::Closed(_))));
    let mut out = Vec::new();
    conn.poll_transmit_into(&mut out);
    server_end.put(&out);
    server_end.hang_up();
    assert_eq!(ts_read(&mut ws), TsMessage::Close(None));
    assert!(matches!(ws.read(), Err(tungstenite::Error::ConnectionClosed)));
}

#[test]
fn tungstenite_client_subprotocol_with_ringwire_server() {
    let limits = HandshakeLimits::default();
    let (client_end, server_end) = duplex(usize::MAX);
    let builder = ClientRequestBuilder::new(uri("ws://localhost/"))
        .with_sub_protocol("v2.chat")
        .with_sub_protocol("v1.chat");
    let (mid, request) = start_ts_client(builder, client_end, &server_end);
    let (req, _) = parse_request(&request, &limits).unwrap().unwrap();
    assert_eq!(req.protocols, ["v2.chat", "v1.chat"]);
    let mut out = Vec::new();
    // ringwire refuses to pick a protocol that was not offered...
    assert_eq!(req.accept(Some("v3.chat"), &[], &mut out), Err(HandshakeError::UnexpectedProtocol));
    assert!(out.is_empty());
    // ...and the one it picks is what tungstenite sees.
    req.accept(Some("v1.chat"), &[], &mut out).unwrap();
    server_end.put(&out);
    let (_ws, resp) = mid.handshake().expect("tungstenite accepted the subprotocol");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v1.chat");
}

#[test]
fn ringwire_rejections_parse_in_tungstenite_client() {
    for (err, status) in [
        (HandshakeError::Rejected(403), 403u16),
        (HandshakeError::UnsupportedVersion, 426),
        (HandshakeError::BadKey, 400),
    ] {
        let (client_end, server_end) = duplex(usize::MAX);
        let (mid, request) =
            start_ts_client(ClientRequestBuilder::new(uri("ws://h/")), client_end, &server_end);
        assert!(parse_request(&request, &HandshakeLimits::default()).unwrap().is_some());
        let mut out = Vec::new();
        err.write_response(&mut out);
        server_end.put(&out);
        server_end.hang_up();
        match mid.handshake() {
            Err(TsHandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                assert_eq!(resp.status().as_u16(), status, "{err:?}");
                if status == 426 {
                    assert_eq!(resp.headers()["sec-websocket-version"], "13");
                }
            }
            Err(TsHandshakeError::Failure(e)) => panic!("{err:?}: expected an HTTP error: {e}"),
            _ => panic!("{err:?}: expected an HTTP error"),
        }
    }
}
