#![allow(missing_docs)]
//! Typed messages on engine connections (`Ctx::send_as`, `Ctx::decode_or_close`,
//! `ConnHandle::send_as`) with ringwire-codec, on both backends: a JSON request gets a
//! typed reply; garbage gets close 1007, a binary frame to a JSON handler 1003.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ringwire::codec::{Cbor, Codec, Json};
use ringwire::frame::Message;
use ringwire::{BackendChoice, Ctx, Handler};
use tungstenite::protocol::frame::coding::CloseCode as TCloseCode;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Ask {
    user: String,
    n: u32,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Answer {
    to: String,
    doubled: u64,
}

struct Typed;

impl Handler for Typed {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        if let Ok(ask) = cx.decode_or_close::<Ask, _>(&Json, &msg) {
            let answer = Answer { to: ask.user, doubled: u64::from(ask.n) * 2 };
            // The reply goes as JSON from here and as CBOR from another thread.
            cx.send_as(&Json, &answer).unwrap();
            let handle = cx.handle();
            std::thread::spawn(move || handle.send_as(&Cbor, &answer).unwrap()).join().unwrap();
        }
    }
}

fn connect(addr: std::net::SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tungstenite::client(format!("ws://{addr}/"), s).unwrap().0
}

fn close_code(ws: &mut tungstenite::WebSocket<TcpStream>) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn typed_round_trip(backend: BackendChoice) {
    let server = builder(backend).start(|_| Typed).unwrap();
    let addr = server.local_addr();

    let mut ws = connect(addr);
    let ask = Json.encode_message(&Ask { user: "ada".into(), n: 21 }).unwrap();
    ws.send(tungstenite::Message::text(std::str::from_utf8(ask.as_bytes()).unwrap())).unwrap();
    let want = Answer { to: "ada".into(), doubled: 42 };
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => {
            let got: Answer = Json.decode(t.as_bytes()).unwrap();
            assert_eq!(got, want);
        }
        other => panic!("expected a JSON text reply, got {other:?}"),
    }
    match ws.read().unwrap() {
        tungstenite::Message::Binary(b) => {
            let got: Answer = Cbor.decode(&b).unwrap();
            assert_eq!(got, want);
        }
        other => panic!("expected a CBOR binary reply, got {other:?}"),
    }
    ws.close(None).unwrap();

    // Bad JSON: the peer sent garbage, 1007.
    let mut ws = connect(addr);
    ws.send(tungstenite::Message::text("{\"user\": 5")).unwrap();
    assert_eq!(close_code(&mut ws), Some(u16::from(TCloseCode::Invalid)));

    // A binary frame to a JSON handler: unsupported data, 1003.
    let mut ws = connect(addr);
    ws.send(tungstenite::Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(close_code(&mut ws), Some(u16::from(TCloseCode::Unsupported)));

    server.shutdown().unwrap();
}

both_backends! {
    typed_round_trip => typed_round_trip_io_uring, typed_round_trip_epoll;
}
