#![allow(missing_docs)]
//! Every way a connection ends, seen from both sides, on both backends: the client's
//! close, the handler's (`Ctx::close`), another thread's (`ConnHandle::close`), protocol
//! error (1002), invalid UTF-8 (1007), too big (1009), server shutdown (1001), and the
//! peer vanishing (1006).

mod common;

use common::*;
use ringwire::frame::{CloseCause, CloseCode, Config as FrameConfig};
use ringwire::BackendChoice;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode as TCode, CloseFrame};

fn client_initiated_close(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(addr, &rx).await;
        ws_echo(&mut ws, "before close").await;
        let frame = CloseFrame { code: TCode::Library(4000), reason: "client done".into() };
        ws.close(Some(frame)).await.unwrap();
        // RFC 6455 §5.5.1: the endpoint typically echoes the status code it received.
        ws_expect_close_then_end(&mut ws, 4000).await;
        let closed = expect_closed_with(&rx, handle.id(), CloseCode(4000), CloseCause::Peer);
        assert_eq!(closed.reason, "client done");
    });
    // A close frame without a status code: 1005 for the handler, an empty close back.
    let (mut c, handle) = RawClient::open_probed(addr, &rx);
    c.send(true, OP_CLOSE, &[]);
    let back = c.expect_close();
    assert!(
        back.payload.is_empty() || back.close_code() == 1000,
        "answer to empty close: {back:?}"
    );
    c.expect_eof();
    expect_closed_with(&rx, handle.id(), CloseCode::NO_STATUS, CloseCause::Peer);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    let stats = server.stats();
    assert_eq!(stats.closes_with(1005), 1);
    assert!(stats.closes_by_code.contains(&(None, 1)), "4000 counts as other: {stats:?}");
    server.shutdown().unwrap();
}

fn handler_initiated_close(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(server.local_addr(), &rx).await;
        ws.send(TMsg::text("close:4001")).await.unwrap();
        ws_expect_next_close(&mut ws, 4001, "by handler").await;
        // tungstenite answered the close; the server then ends the TCP connection.
        ws_expect_end(&mut ws).await;
        expect_closed_with(&rx, handle.id(), CloseCode(4001), CloseCause::Local);
    });
    server.shutdown().unwrap();
}

fn other_thread_close(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(addr, &rx).await;
        ws_echo(&mut ws, "open").await;
        // An invalid code or an over-long reason is refused at once, and says why.
        assert!(matches!(
            handle.close(CloseCode::ABNORMAL, ""),
            Err(ringwire::SendError::Frame(ringwire::frame::SendError::InvalidCloseCode(1006)))
        ));
        assert!(matches!(
            handle.close(CloseCode::NORMAL, &"r".repeat(200)),
            Err(ringwire::SendError::Frame(ringwire::frame::SendError::ReasonTooLong(200)))
        ));
        let h = handle.clone();
        std::thread::spawn(move || h.close(CloseCode::NORMAL, "from afar").unwrap())
            .join()
            .unwrap();
        ws_expect_next_close(&mut ws, 1000, "from afar").await;
        ws_expect_end(&mut ws).await;
        expect_closed_with(&rx, handle.id(), CloseCode::NORMAL, CloseCause::Local);
        // Closing again, or sending, on a finished connection is harmless.
        let _ = handle.close(CloseCode::NORMAL, "again");
        let _ = handle.send(ringwire::frame::Message::text("late"));
        let mut ws2 = ws_connect(addr).await;
        ws_echo(&mut ws2, "unaffected").await;
        ws_close(&mut ws2).await;
    });
    server.shutdown().unwrap();
}

/// A raw client breaks a rule; the server must answer with close `code` and end the TCP
/// connection, and the handler must see the same code with `CloseCause::Error`.
fn fails_with(backend: BackendChoice, frame_config: FrameConfig, bad: &[u8], code: u16) {
    let (server, rx) = start_probe(builder(backend).frame(frame_config));
    let (mut c, handle) = RawClient::open_probed(server.local_addr(), &rx);
    c.echo("fine so far");
    c.write(bad);
    // The connection is failed: the server ends TCP without waiting for our close.
    c.expect_close_then_eof(code, "after the bad bytes");
    let closed = expect_closed(&rx, handle.id());
    assert_eq!(closed.code, CloseCode(code));
    assert!(matches!(closed.cause, CloseCause::Error(_)), "cause {:?}", closed.cause);
    assert!(wait_until(PATIENCE, || server.stats().closes_with(code) == 1));
    server.shutdown().unwrap();
}

fn protocol_error_closes_1002(backend: BackendChoice) {
    // RSV1 set without a negotiated extension (RFC 6455 §5.2).
    fails_with(
        backend,
        FrameConfig::default(),
        &encode_raw(0x80 | 0x40 | OP_TEXT, b"x", true),
        1002,
    );
}

fn invalid_utf8_closes_1007(backend: BackendChoice) {
    // RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection with 1007.
    fails_with(
        backend,
        FrameConfig::default(),
        &encode_raw(0x80 | OP_TEXT, b"ok \xff\xfe", true),
        1007,
    );
}

fn too_big_closes_1009(backend: BackendChoice) {
    let small = FrameConfig::default().max_frame_size(1024).max_message_size(4096);
    // One frame over max_frame_size.
    fails_with(backend, small.clone(), &encode_raw(0x80 | OP_BINARY, &[0; 2000], true), 1009);
    // Fragments each within the frame limit, together over the message limit.
    let mut wire = Vec::new();
    for i in 0..5 {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        wire.extend(encode_raw(op, &[1; 1000], true));
    }
    fails_with(backend, small, &wire, 1009);
}

fn shutdown_closes_1001(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(addr, &rx).await;
        ws_echo(&mut ws, "open").await;
        let stopper = std::thread::spawn(move || server.shutdown());
        ws_expect_close_then_end(&mut ws, 1001).await;
        stopper.join().unwrap().expect("clean shutdown");
        let closed = expect_closed(&rx, handle.id());
        assert_eq!(closed.code, CloseCode::GOING_AWAY);
    });
}

fn vanished_peer_is_1006(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    // TCP FIN without a close frame.
    let (mut c, handle) = RawClient::open_probed(addr, &rx);
    c.echo("here");
    drop(c);
    expect_closed_with(&rx, handle.id(), CloseCode::ABNORMAL, CloseCause::TransportClosed);
    // Vanishing in the middle of a fragmented message, with data unread by the server.
    let (mut c, handle) = RawClient::open_probed(addr, &rx);
    c.send(false, OP_TEXT, b"half a mess");
    drop(c);
    expect_closed_with(&rx, handle.id(), CloseCode::ABNORMAL, CloseCause::TransportClosed);
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    assert_eq!(server.stats().closes_with(1006), 2);
    server.shutdown().unwrap();
}

/// Messages sent before a close go out before the close frame (RFC 6455 §5.5.1: the
/// close frame is the last one an endpoint sends; nothing accepted earlier is lost).
fn close_after_queued_messages(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(server.local_addr(), &rx).await;
        // 20 x 64 KiB: well under max_queued_bytes (4 MiB), over the core's own queue.
        ws.send(TMsg::text("sendclose:20:65536:4003")).await.unwrap();
        let mut got = Vec::new();
        let code = loop {
            match ws_next(&mut ws).await {
                Some(TMsg::Binary(b)) => {
                    assert_eq!(b.len(), 65536);
                    got.push(u32::from_be_bytes(b[..4].try_into().unwrap()));
                }
                Some(TMsg::Close(f)) => break f.map(|f| u16::from(f.code)),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(code, Some(4003));
        assert_eq!(got, (0..20).collect::<Vec<u32>>(), "messages sent before the close");
        ws_expect_end(&mut ws).await;
        assert_eq!(expect_closed(&rx, handle.id()).code, CloseCode(4003));
    });
    server.shutdown().unwrap();
}

both_backends! {
    close_after_queued_messages => close_after_queued_messages_io_uring, close_after_queued_messages_epoll;
    client_initiated_close => client_initiated_close_io_uring, client_initiated_close_epoll;
    handler_initiated_close => handler_initiated_close_io_uring, handler_initiated_close_epoll;
    other_thread_close => other_thread_close_io_uring, other_thread_close_epoll;
    protocol_error_closes_1002 => protocol_error_closes_1002_io_uring, protocol_error_closes_1002_epoll;
    invalid_utf8_closes_1007 => invalid_utf8_closes_1007_io_uring, invalid_utf8_closes_1007_epoll;
    too_big_closes_1009 => too_big_closes_1009_io_uring, too_big_closes_1009_epoll;
    shutdown_closes_1001 => shutdown_closes_1001_io_uring, shutdown_closes_1001_epoll;
    vanished_peer_is_1006 => vanished_peer_is_1006_io_uring, vanished_peer_is_1006_epoll;
}
