//! ringwire's client against other stacks' servers: a tungstenite server (blocking, on
//! its own thread) and a fastwebsockets one (tokio), that echo, fragment, ping and
//! close, on both backends.
//! (The server side has the reverse in `interop_tungstenite.rs`.)

mod common;

use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use common::client::{client_engine, expect_closed, expect_msg, expect_state};
use common::PATIENCE;
use ringwire::client::{Cause, ClientConfig, ClientState};
use ringwire::frame::{CloseCode, Message};
use ringwire::BackendChoice;
use tungstenite::protocol::frame::coding::{CloseCode as TsCloseCode, Data, OpCode as TsOpCode};
use tungstenite::protocol::frame::{CloseFrame as TsCloseFrame, Frame};
use tungstenite::Message as TsMessage;

/// What the tungstenite server saw of the client's close, per connection.
type ServerLog = Receiver<Option<u16>>;

/// A tungstenite server: echoes data messages; `fragmented` answers with a text message
/// in three frames; `ping-me` pings and answers `got pong` once the pong is in;
/// `close-me` closes with 4000. Reports each connection's end (the client's close code).
fn tungstenite_server() -> (std::net::SocketAddr, ServerLog) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let s = s.unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut ws = tungstenite::accept(s).expect("upgrade");
            let mut code = None;
            loop {
                match ws.read() {
                    Ok(TsMessage::Text(t)) if t.as_str() == "fragmented" => {
                        for (part, op, fin) in [
                            ("ab", TsOpCode::Data(Data::Text), false),
                            ("cd", TsOpCode::Data(Data::Continue), false),
                            ("ef", TsOpCode::Data(Data::Continue), true),
                        ] {
                            ws.write(TsMessage::Frame(Frame::message(part, op, fin))).unwrap();
                        }
                        ws.flush().unwrap();
                    }
                    Ok(TsMessage::Text(t)) if t.as_str() == "ping-me" => {
                        ws.send(TsMessage::Ping(b"x".to_vec().into())).unwrap();
                    }
                    Ok(TsMessage::Pong(p)) if &p[..] == b"x" => {
                        ws.send(TsMessage::text("got pong")).unwrap();
                    }
                    Ok(TsMessage::Text(t)) if t.as_str() == "close-me" => {
                        let frame =
                            TsCloseFrame { code: TsCloseCode::from(4000), reason: "bye".into() };
                        ws.close(Some(frame)).unwrap();
                    }
                    Ok(m @ (TsMessage::Text(_) | TsMessage::Binary(_))) => ws.send(m).unwrap(),
                    Ok(TsMessage::Close(c)) => code = c.map(|c| u16::from(c.code)),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(code);
        }
    });
    (addr, rx)
}

/// The same conversation with either server: echo, a 64-bit length, a fragmented
/// message, a ping, the server's close (the client reconnects), the client's close.
fn exercise(backend: BackendChoice, addr: std::net::SocketAddr, server_log: ServerLog) {
    let (engine, rx) = client_engine(backend);
    let mut cfg = ClientConfig::default();
    cfg.retry.backoff.initial = Duration::from_millis(20);
    let client = engine.connect(&format!("ws://{addr}/interop"), cfg).unwrap();
    expect_state(&rx, ClientState::Connected);

    client.send_text("echo me").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("echo me".to_owned()));
    client.send(Message::binary(vec![1u8; 70_000])).unwrap();
    assert_eq!(expect_msg(&rx), Message::binary(vec![1u8; 70_000]), "a 64-bit length frame");
    client.send_text("fragmented").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("abcdef".to_owned()), "three frames, one message");
    client.send_text("ping-me").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("got pong".to_owned()), "our pong reached it");

    // The server closes: the close handshake completes, and the client reconnects.
    client.send_text("close-me").unwrap();
    let closed = expect_closed(&rx);
    assert_eq!((closed.code, closed.reason.as_str()), (CloseCode(4000), "bye"));
    assert_eq!(expect_state(&rx, ClientState::Reconnecting).0.cause, Cause::Closed { code: 4000 });
    assert_eq!(server_log.recv_timeout(PATIENCE).unwrap(), Some(4000), "our echo of its close");
    expect_state(&rx, ClientState::Connected);

    // The client closes: the server sees 1000, the client ends.
    client.send_text("again").unwrap();
    assert_eq!(expect_msg(&rx), Message::text("again".to_owned()));
    client.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(expect_state(&rx, ClientState::Closed).0.cause, Cause::AppClose);
    assert_eq!(server_log.recv_timeout(PATIENCE).unwrap(), Some(1000));
    engine.shutdown().unwrap();
}

fn against_tungstenite(backend: BackendChoice) {
    let (addr, server_log) = tungstenite_server();
    exercise(backend, addr, server_log);
}

/// A fastwebsockets server on a current-thread tokio runtime of its own thread: the
/// upgrade answered by hand (its `upgrade` needs hyper's server), then
/// `WebSocket::after_handshake` in a `FragmentCollector`: echoes; `fragmented` answers
/// with three frames; `ping-me` pings and answers `got pong` once the pong is in;
/// `close-me` closes with 4000. Reports the close code
/// each connection got from the client.
fn fastwebsockets_server() -> (std::net::SocketAddr, ServerLog) {
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            for _ in 0..2 {
                let Ok(Ok((mut s, _))) =
                    tokio::time::timeout(Duration::from_secs(10), l.accept()).await
                else {
                    return;
                };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let answer = common::accept_101(&String::from_utf8_lossy(&head));
                s.write_all(answer.as_bytes()).await.unwrap();
                let mut ws = fastwebsockets::FragmentCollector::new(WebSocket::after_handshake(
                    s,
                    Role::Server,
                ));
                let mut code = None;
                loop {
                    let Ok(Ok(f)) =
                        tokio::time::timeout(Duration::from_secs(10), ws.read_frame()).await
                    else {
                        break;
                    };
                    match (f.opcode, &f.payload[..]) {
                        (OpCode::Text, b"fragmented") => {
                            for (i, part) in [&b"ab"[..], b"cd", b"ef"].into_iter().enumerate() {
                                let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
                                let frame =
                                    Frame::new(i == 2, op, None, Payload::from(part.to_vec()));
                                ws.write_frame(frame).await.unwrap();
                            }
                        }
                        (OpCode::Text, b"ping-me") => {
                            let ping =
                                Frame::new(true, OpCode::Ping, None, Payload::from(b"x".to_vec()));
                            ws.write_frame(ping).await.unwrap();
                        }
                        (OpCode::Pong, b"x") => {
                            let text = Frame::text(Payload::from(b"got pong".to_vec()));
                            ws.write_frame(text).await.unwrap();
                        }
                        (OpCode::Text, b"close-me") => {
                            ws.write_frame(Frame::close(4000, b"bye")).await.unwrap();
                        }
                        (OpCode::Text | OpCode::Binary, _) => ws.write_frame(f).await.unwrap(),
                        (OpCode::Close, p) => {
                            code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                            break;
                        }
                        _ => {}
                    }
                }
                let _ = tx.send(code);
            }
        });
    });
    (addr, rx)
}

fn against_fastwebsockets(backend: BackendChoice) {
    let (addr, server_log) = fastwebsockets_server();
    exercise(backend, addr, server_log);
}

both_backends! {
    against_tungstenite => against_tungstenite_io_uring, against_tungstenite_epoll;
    against_fastwebsockets => against_fastwebsockets_io_uring, against_fastwebsockets_epoll;
}
