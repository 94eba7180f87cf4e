#![allow(missing_docs)]
//! Messages through the engine over loopback, on both backends: echo of every size and
//! kind with tokio-tungstenite, client fragmentation from a raw client, ping/pong both
//! ways, sends from other threads through `ConnHandle`, and a tokio task publishing.

mod common;

use std::time::Duration;

use common::*;
use ringwire::frame::Message;
use ringwire::{BackendChoice, Echo};

fn echo_all_sizes(backend: BackendChoice) {
    let server = builder(backend).start(|_| Echo).expect("engine starts").guarded();
    let addr = server.local_addr();
    let sizes = [0usize, 1, 125, 126, 127, 1000, 65_535, 65_536, 65_537, 300_000, 1 << 20];
    runtime().block_on(async {
        let mut ws = ws_connect(addr).await;
        for &n in &sizes {
            let bin: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            ws.send(TMsg::binary(bin.clone())).await.unwrap();
            match ws_data(&mut ws).await {
                TMsg::Binary(b) => assert!(b[..] == bin[..], "binary echo of {n} bytes differs"),
                other => panic!("binary {n}: got {other:?}"),
            }
            // Text with multi-byte characters (2, 3 and 4 bytes) up to about n bytes.
            let text: String = "aé€😀".chars().cycle().take(n / 2).collect();
            ws.send(TMsg::text(text.clone())).await.unwrap();
            match ws_data(&mut ws).await {
                TMsg::Text(t) => {
                    assert!(t.as_str() == text, "text echo of {} bytes differs", text.len())
                }
                other => panic!("text {n}: got {other:?}"),
            }
        }
        // Many small messages in one burst come back in order.
        for i in 0..500 {
            ws.feed(TMsg::text(format!("m{i}"))).await.unwrap();
        }
        ws.flush().await.unwrap();
        for i in 0..500 {
            assert_eq!(ws_data(&mut ws).await, TMsg::text(format!("m{i}")));
        }
        ws_close(&mut ws).await;
    });
    assert_eq!(server.stats().messages_in, 2 * sizes.len() as u64 + 500);
    server.shutdown().unwrap();
}

fn fragmented_client_messages(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let mut c = RawClient::open(server.local_addr());

    // A text message in three fragments, a ping between them (RFC 6455 §5.4: control
    // frames may be injected in the middle of a fragmented message), and a 4-byte
    // character split across fragment boundaries.
    let text = "frag-😀-ment";
    let b = text.as_bytes();
    c.send(false, OP_TEXT, &b[..6]);
    c.send(true, OP_PING, b"mid");
    c.send(false, OP_CONT, &b[6..8]);
    c.send(true, OP_CONT, &b[8..]);
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (OP_PONG, &b"mid"[..]));
    let echo = c.expect_data();
    assert_eq!((echo.fin, echo.opcode, echo.payload.as_slice()), (true, OP_TEXT, b));

    // A binary message in 100 fragments, every byte of the wire written separately.
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for (i, chunk) in data.chunks(10).enumerate() {
        let op = if i == 0 { OP_BINARY } else { OP_CONT };
        let fin = if i == 99 { 0x80 } else { 0 };
        wire.extend(encode_raw(fin | op, chunk, true));
    }
    for byte in &wire {
        c.write(std::slice::from_ref(byte));
    }
    let echo = c.expect_data();
    assert_eq!((echo.fin, echo.opcode), (true, OP_BINARY));
    assert!(echo.payload == data, "reassembled binary differs");

    // The handler saw exactly the two whole messages.
    let msgs: Vec<Message> = rx
        .try_iter()
        .chain(std::iter::from_fn(|| rx.recv_timeout(Duration::from_millis(200)).ok()))
        .filter_map(|s| match s {
            Seen::Msg(_, m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(msgs, vec![Message::text(text), Message::binary(data)]);

    c.close_handshake(1000);
    server.shutdown().unwrap();
}

fn ping_pong_both_ways(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    runtime().block_on(async {
        let mut ws = ws_connect(addr).await;
        // Client ping: the engine answers with the same payload.
        ws_ping_pong(&mut ws, b"hello?").await;
        // Empty ping, and a ping of the maximum control payload (125 bytes).
        for payload in [Vec::new(), vec![b'p'; 125]] {
            ws_ping_pong(&mut ws, &payload).await;
        }
        // Server ping (Ctx::ping): tungstenite answers, the handler sees the pong with an RTT.
        ws.send(TMsg::text("ping")).await.unwrap();
        match ws_next(&mut ws).await {
            Some(TMsg::Ping(_)) => {}
            other => panic!("expected the server's ping, got {other:?}"),
        }
        // tungstenite queues the pong on read; an echo round trip flushes it.
        ws_echo(&mut ws, "after ping").await;
        let rtt = expect_pong(&rx, "the pong");
        let rtt = rtt.expect("a pong answering Ctx::ping carries an RTT");
        assert!(rtt < PATIENCE, "rtt {rtt:?}");
        // An unsolicited pong is fine (RFC 6455 §5.5.3) and reaches on_pong without an RTT.
        ws.send(TMsg::Pong(b"unsolicited".to_vec().into())).await.unwrap();
        ws_echo(&mut ws, "still here").await;
        let rtt = expect_pong(&rx, "the unsolicited pong");
        assert_eq!(rtt, None);
        ws_close(&mut ws).await;
    });
    server.shutdown().unwrap();
}

fn send_from_other_threads(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    runtime().block_on(async {
        let (mut ws, handle) = ws_connect_probed(addr, &rx).await;
        // From this thread and from two others, interleaved per thread in order.
        handle.send(Message::text("from the test thread")).unwrap();
        assert_eq!(ws_data(&mut ws).await, TMsg::text("from the test thread"));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let h = handle.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        h.send(Message::text(format!("t{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut next = [0usize; 2];
        for _ in 0..200 {
            let TMsg::Text(m) = ws_data(&mut ws).await else { panic!("not text") };
            let (t, i) = m.as_str()[1..].split_once('-').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s messages out of order");
            next[t] += 1;
        }
        // Binary too.
        handle.send(Message::binary(vec![1u8, 2, 3])).unwrap();
        assert_eq!(ws_data(&mut ws).await, TMsg::binary(vec![1u8, 2, 3]));
        ws_close(&mut ws).await;
        expect_closed(&rx, handle.id());
        // The handle of a closed connection delivers nothing, not even to a new
        // connection that reuses its slot on the same worker.
        let mut others = Vec::new();
        loop {
            let (mut ws2, h2) = ws_connect_probed(addr, &rx).await;
            if h2.id().worker() == handle.id().worker() {
                assert_ne!(h2.id(), handle.id(), "a new connection got a closed one's id");
                let _ = handle.send(Message::text("for the old connection"));
                ws_echo(&mut ws2, "only mine").await;
                for mut o in others {
                    ws_close(&mut o).await;
                }
                ws_close(&mut ws2).await;
                break;
            }
            others.push(ws2);
            assert!(others.len() < 64, "no connection landed on worker {}", handle.id().worker());
        }
    });
    server.shutdown().unwrap();
}

fn tokio_task_publishes(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend));
    let addr = server.local_addr();
    let publisher = server.publisher();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let mut ws = ws_connect(addr).await;
        ws.send(TMsg::text("sub:ticks")).await.unwrap();
        assert_eq!(ws_data(&mut ws).await, TMsg::text("ok"));
        // An application task owning a Publisher, the way a tokio program embeds ringwire.
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            for n in 0..20u32 {
                every.tick().await;
                let took = publisher.publish("ticks", &Message::text(format!("tick {n}")));
                assert_eq!(took, 2, "both workers take the publish");
            }
        });
        for n in 0..20u32 {
            assert_eq!(ws_data(&mut ws).await, TMsg::text(format!("tick {n}")));
        }
        ticker.await.unwrap();
        ws_close(&mut ws).await;
    });
    drop(rx);
    server.shutdown().unwrap();
}

/// Greets in `on_open` and echoes.
struct Greeter;

impl ringwire::Handler for Greeter {
    fn on_open(
        &mut self,
        cx: &mut ringwire::Ctx<'_>,
        req: &ringwire::frame::handshake::Request,
    ) -> ringwire::Upgrade {
        cx.send_text(&format!("welcome to {}", req.path)).expect("send in on_open");
        ringwire::Upgrade::Accept
    }

    fn on_message(&mut self, cx: &mut ringwire::Ctx<'_>, msg: Message) {
        let _ = cx.send(msg);
    }
}

fn upgrade_edge_cases(backend: BackendChoice) {
    let server = builder(backend).start(|_| Greeter).expect("engine starts").guarded();
    let addr = server.local_addr();
    // The request and the first two frames in one write: the frames after the head must
    // not be lost; the welcome sent in on_open comes right after the 101.
    let mut s = connect(addr);
    let mut wire = upgrade_request("/pipelined").into_bytes();
    wire.extend(encode_raw(0x80 | OP_TEXT, b"first", true));
    wire.extend(encode_raw(0x80 | OP_BINARY, &[1, 2, 3], true));
    std::io::Write::write_all(&mut s, &wire).unwrap();
    expect_upgraded(&mut s);
    let mut c = RawClient { s };
    assert_eq!(c.expect_data().payload, b"welcome to /pipelined");
    assert_eq!(c.expect_data().payload, b"first");
    assert_eq!(c.expect_data().payload, vec![1, 2, 3]);
    c.close_handshake(1000);

    // The request one byte per write, the last byte together with a frame.
    let mut s = connect(addr);
    let req = upgrade_request("/trickled").into_bytes();
    for b in &req[..req.len() - 1] {
        std::io::Write::write_all(&mut s, std::slice::from_ref(b)).unwrap();
    }
    let mut last = vec![req[req.len() - 1]];
    last.extend(encode_raw(0x80 | OP_TEXT, b"right after", true));
    std::io::Write::write_all(&mut s, &last).unwrap();
    expect_upgraded(&mut s);
    let mut c = RawClient { s };
    assert_eq!(c.expect_data().payload, b"welcome to /trickled");
    assert_eq!(c.expect_data().payload, b"right after");
    c.close_handshake(1000);
    server.shutdown().unwrap();
}

fn server_fragments_large_messages(backend: BackendChoice) {
    let frame = ringwire::frame::Config::default().fragment_size(Some(1000));
    let server = builder(backend).frame(frame).start(|_| Echo).expect("engine starts").guarded();
    let mut c = RawClient::open(server.local_addr());
    let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    c.send(true, OP_BINARY, &data);
    let mut frames = Vec::new();
    loop {
        let f = c.read_frame().unwrap();
        let fin = f.fin;
        frames.push(f);
        if fin {
            break;
        }
    }
    let ops: Vec<u8> = frames.iter().map(|f| f.opcode).collect();
    assert_eq!(ops, vec![OP_BINARY, OP_CONT, OP_CONT]);
    assert!(frames.iter().all(|f| f.payload.len() <= 1000));
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload.iter().copied()).collect();
    assert_eq!(joined, data);
    c.send_close(1000);
    c.expect_close();
    server.shutdown().unwrap();
}

/// Large messages that arrive whole are lent out of the io_uring receive buffers (no
/// copy). The application here keeps some of them (on another thread, past many later
/// receives) and drops the rest: a kept message must never see its buffer reused, and
/// lending must stop short of starving the receive ring.
fn kept_messages_stay_intact(backend: BackendChoice) {
    let (server, rx) = start_probe(builder(backend).workers(1));
    let (mut c, _) = RawClient::open_probed(server.local_addr(), &rx);
    let msg = |i: u32| -> Vec<u8> {
        let mut m: Vec<u8> = (0..4096u32).map(|j| (j.wrapping_mul(i | 1) >> 3) as u8).collect();
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    let (rounds, burst) = (40u32, 16u32);
    let mut kept = Vec::new();
    for round in 0..rounds {
        // A burst of frames in one write: several land in one receive buffer.
        let mut wire = Vec::new();
        for i in round * burst..(round + 1) * burst {
            wire.extend(encode_raw(0x80 | OP_BINARY, &msg(i), true));
        }
        c.write(&wire);
        for i in round * burst..(round + 1) * burst {
            assert_eq!(c.expect_data().payload, msg(i), "echo of message {i}");
            let got = expect_seen(&rx, "a message", |s| match s {
                Seen::Msg(_, Message::Binary(b)) => Some(b),
                _ => None,
            });
            // Keep every third message until the end; drop the others now.
            if i % 3 == 0 {
                kept.push((i, got));
            }
        }
    }
    for (i, b) in &kept {
        assert!(b[..] == msg(*i)[..], "kept message {i} changed after later receives");
    }
    let lent = server.stats().messages_lent;
    if backend == BackendChoice::IoUring {
        assert!(lent > 0, "no message was lent out of a receive buffer");
    } else {
        assert_eq!(lent, 0, "epoll copies every message");
    }
    drop(kept);
    c.close_handshake(1000);
    server.shutdown().unwrap();
}

/// Subscribes every connection to "t"; each message is a script of publishes to "t"
/// (`p:NAME`) and direct sends (`s:NAME`), run in one handler call.
struct Interleaver;

impl ringwire::Handler for Interleaver {
    fn on_open(
        &mut self,
        cx: &mut ringwire::Ctx<'_>,
        _req: &ringwire::frame::handshake::Request,
    ) -> ringwire::Upgrade {
        cx.subscribe("t").unwrap();
        ringwire::Upgrade::Accept
    }

    fn on_message(&mut self, cx: &mut ringwire::Ctx<'_>, msg: Message) {
        let script = String::from_utf8(msg.as_bytes().to_vec()).unwrap();
        for step in script.split(' ') {
            match step.split_once(':') {
                Some(("p", name)) => {
                    cx.publish("t", &Message::text(name.to_owned()));
                }
                Some(("s", name)) => cx.send_text(name).unwrap(),
                _ => panic!("bad step {step}"),
            }
        }
    }
}

/// A published frame goes to an idle connection straight from the shared bytes (not
/// through the protocol core); whatever is sent around it, in the same handler call or
/// not, arrives in the order it was sent.
fn published_and_sent_keep_their_order(backend: BackendChoice) {
    let server =
        builder(backend).workers(1).start(|_| Interleaver).expect("engine starts").guarded();
    let mut c = RawClient::open(server.local_addr());
    let scripts: [&[&str]; 4] = [
        &["p:one", "s:two"],
        &["s:three", "p:four"],
        &["p:five", "p:six", "s:seven", "p:eight"],
        &["p:nine"],
    ];
    for script in scripts {
        c.send(true, OP_TEXT, script.join(" ").as_bytes());
        for step in script {
            let want = &step[2..];
            let got = c.expect_data();
            assert_eq!(String::from_utf8_lossy(&got.payload), want, "script {script:?}");
        }
    }
    c.close_handshake(1000);
    server.shutdown().unwrap();
}

both_backends! {
    published_and_sent_keep_their_order => published_and_sent_keep_their_order_io_uring, published_and_sent_keep_their_order_epoll;
    kept_messages_stay_intact => kept_messages_stay_intact_io_uring, kept_messages_stay_intact_epoll;
    upgrade_edge_cases => upgrade_edge_cases_io_uring, upgrade_edge_cases_epoll;
    server_fragments_large_messages => server_fragments_large_messages_io_uring, server_fragments_large_messages_epoll;
    echo_all_sizes => echo_all_sizes_io_uring, echo_all_sizes_epoll;
    fragmented_client_messages => fragmented_client_messages_io_uring, fragmented_client_messages_epoll;
    ping_pong_both_ways => ping_pong_both_ways_io_uring, ping_pong_both_ways_epoll;
    send_from_other_threads => send_from_other_threads_io_uring, send_from_other_threads_epoll;
    tokio_task_publishes => tokio_task_publishes_io_uring, tokio_task_publishes_epoll;
}
