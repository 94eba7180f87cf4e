//! The worker's timers, backpressure, drain, shutdown, panics and ordering under virtual
//! time (see the module above). No test here sleeps or opens a socket.
#![cfg(test)]

use std::time::Duration;

use ringwire_frame::{CloseCause, CloseCode, Config as FrameConfig, Message};

use super::Sim;
use crate::config::{Backpressure, EngineConfig};
use crate::handler::{Ctx, Echo, Handler};

fn config() -> EngineConfig {
    EngineConfig { listen: vec!["127.0.0.1:0".parse().unwrap()], ..EngineConfig::default() }
}

fn with_frame(f: impl FnOnce(&mut FrameConfig)) -> EngineConfig {
    let mut c = config();
    f(&mut c.frame);
    c
}

#[test]
fn echo_under_virtual_time() {
    let mut sim = Sim::new(config(), Echo);
    let mut peer = sim.connect();
    sim.send(&mut peer, Message::text("hello"));
    sim.settle();
    sim.read(&mut peer);
    assert_eq!(peer.messages(), [Message::text("hello")]);
    assert_eq!(sim.stats().messages_in, 1);
}

#[test]
fn a_silent_peer_is_pinged_then_dropped_at_the_pong_timeout() {
    let config = with_frame(|f| {
        f.ping_interval = Some(Duration::from_secs(30));
        f.pong_timeout = Duration::from_secs(10);
    });
    let mut sim = Sim::new(config, Echo);
    let mut peer = sim.connect();
    sim.run_for(Duration::from_secs(29));
    sim.read(&mut peer);
    assert_eq!(peer.pings(), 0, "no ping before the interval");
    sim.run_for(Duration::from_secs(2));
    sim.read(&mut peer);
    assert_eq!(peer.pings(), 1, "a ping at 30 s");
    // The peer's core answered the ping, but the test does not transmit it: silence.
    sim.run_for(Duration::from_secs(11));
    assert!(sim.socket_closed(&peer), "closed 10 s after the ping");
    assert_eq!(sim.stats().closes_with(1006), 1);
    assert!(sim.elapsed() < Duration::from_secs(43));
}

#[test]
fn a_peer_that_answers_stays_for_hours() {
    let config = with_frame(|f| {
        f.ping_interval = Some(Duration::from_secs(30));
        f.pong_timeout = Duration::from_secs(10);
    });
    let mut sim = Sim::new(config, Echo);
    let mut peer = sim.connect();
    for _ in 0..(2 * 3600 / 30) {
        sim.run_for(Duration::from_secs(31));
        sim.read(&mut peer);
        sim.transmit(&mut peer); // the pong
    }
    assert!(!sim.socket_closed(&peer));
    assert_eq!(peer.pings(), 2 * 3600 / 30);
    assert!(peer.closed().is_none());
}

#[test]
fn an_idle_peer_is_closed_with_1001_then_the_socket_after_the_close_timeout() {
    let config = with_frame(|f| {
        f.idle_timeout = Some(Duration::from_secs(60));
        f.close_timeout = Duration::from_secs(5);
    });
    let mut sim = Sim::new(config, Echo);
    let mut peer = sim.connect();
    sim.run_for(Duration::from_secs(61));
    sim.read(&mut peer);
    // The peer's core saw the close and answered; the answer is never transmitted.
    let closed = peer.closed().expect("the server closed");
    assert_eq!(closed.code, CloseCode::GOING_AWAY);
    assert_eq!(closed.reason, "idle timeout");
    assert!(!sim.socket_closed(&peer), "the server waits for the close handshake");
    sim.run_for(Duration::from_secs(6));
    assert!(sim.socket_closed(&peer), "closed at the close timeout");
}

#[test]
fn traffic_holds_off_the_idle_timeout() {
    let config = with_frame(|f| f.idle_timeout = Some(Duration::from_secs(60)));
    let mut sim = Sim::new(config, Echo);
    let mut peer = sim.connect();
    for i in 0..100 {
        sim.run_for(Duration::from_secs(59));
        sim.send(&mut peer, Message::text(format!("still here {i}")));
    }
    sim.settle();
    sim.read(&mut peer);
    assert!(peer.closed().is_none(), "closed although a message came every 59 s");
    assert_eq!(peer.messages().len(), 100);
    sim.run_for(Duration::from_secs(61));
    sim.read(&mut peer);
    assert_eq!(peer.closed().map(|c| c.code), Some(CloseCode::GOING_AWAY));
}

#[test]
fn a_slowloris_upgrade_is_cut_at_the_handshake_timeout() {
    let config = EngineConfig { handshake_timeout: Duration::from_secs(10), ..config() };
    let mut sim = Sim::new(config, Echo);
    let peer = sim.connect();
    // A second connection sends half a request and stalls.
    let slow = sim.connect_raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
    sim.run_for(Duration::from_secs(9));
    assert!(!sim.socket_closed(&slow));
    sim.run_for(Duration::from_secs(2));
    assert!(sim.socket_closed(&slow));
    assert!(!sim.socket_closed(&peer), "the upgraded connection is not affected");
    assert_eq!(sim.stats().handshake_failures, 1);
}

/// Sends `n` messages of `size` bytes whenever a message arrives.
struct Burst {
    n: usize,
    size: usize,
    results: Vec<Result<(), crate::SendError>>,
    writable: usize,
}

impl Handler for Burst {
    fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
        for _ in 0..self.n {
            let r = cx.send(Message::binary(vec![7u8; self.size]));
            self.results.push(r);
        }
    }

    fn on_writable(&mut self, _: &mut Ctx<'_>) {
        self.writable += 1;
    }
}

fn burst(n: usize, size: usize) -> Burst {
    Burst { n, size, results: Vec::new(), writable: 0 }
}

#[test]
fn a_slow_consumer_is_closed_with_1008_after_what_was_accepted() {
    let config =
        EngineConfig { max_queued_bytes: 1 << 20, backpressure: Backpressure::Close, ..config() };
    let mut sim = Sim::new(config, burst(40, 64 * 1024));
    let mut peer = sim.connect();
    sim.set_window(&peer, Some(0));
    sim.send(&mut peer, Message::text("go"));
    sim.settle();
    let accepted = sim.handler().results.iter().filter(|r| r.is_ok()).count();
    assert!((15..=17).contains(&accepted), "about 1 MiB accepted, got {accepted} x 64 KiB");
    assert_eq!(sim.stats().slow_closes, 1);
    // The peer reads again: every accepted message arrives, then the 1008.
    sim.set_window(&peer, None);
    sim.settle();
    sim.read(&mut peer);
    assert_eq!(peer.messages().len(), accepted);
    assert_eq!(peer.closed().map(|c| c.code), Some(CloseCode::POLICY));
}

#[test]
fn drop_newest_refuses_and_on_writable_follows_the_drain() {
    let config = EngineConfig {
        max_queued_bytes: 1 << 20,
        low_watermark: 256 << 10,
        backpressure: Backpressure::DropNewest,
        ..config()
    };
    let mut sim = Sim::new(config, burst(40, 64 * 1024));
    let mut peer = sim.connect();
    sim.set_window(&peer, Some(0));
    sim.send(&mut peer, Message::text("go"));
    sim.settle();
    let refused = sim.handler().results.iter().filter(|r| r.is_err()).count();
    assert_eq!(sim.stats().drops as usize, refused);
    assert_eq!(sim.handler().writable, 0);
    sim.set_window(&peer, None);
    sim.settle();
    assert_eq!(sim.handler().writable, 1, "on_writable once, after the drain");
    sim.read(&mut peer);
    assert_eq!(peer.messages().len(), 40 - refused);
    let s = sim.stats();
    assert_eq!(s.messages_out as usize + refused, 40, "out and dropped add up");
    assert!(peer.closed().is_none());
}

#[test]
fn drop_oldest_counts_only_what_went_out_as_out() {
    let config = EngineConfig {
        max_queued_bytes: 1 << 20,
        backpressure: Backpressure::DropOldest,
        ..config()
    };
    let mut sim = Sim::new(config, burst(100, 64 * 1024));
    let mut peer = sim.connect();
    sim.set_window(&peer, Some(0));
    sim.send(&mut peer, Message::text("go"));
    sim.settle();
    sim.set_window(&peer, None);
    sim.settle();
    sim.read(&mut peer);
    let s = sim.stats();
    assert!(s.drops > 0);
    assert_eq!(s.messages_out as usize, peer.messages().len(), "out = what the peer got");
    assert_eq!((s.messages_out + s.drops) as usize, 100);
}

#[test]
fn a_message_larger_than_the_queue_limit_is_echoed_with_default_limits() {
    let mut sim = Sim::new(config(), Echo);
    let mut peer = sim.connect();
    let big = Message::binary(vec![1u8; 8 << 20]);
    sim.send(&mut peer, big.clone());
    sim.settle();
    sim.read(&mut peer);
    assert_eq!(peer.messages(), [big]);
    assert_eq!(sim.stats().slow_closes, 0);
}

#[test]
fn an_echo_goes_out_before_the_close_that_came_in_the_same_read() {
    let mut sim = Sim::new(config(), Echo);
    let mut peer = sim.connect();
    peer.ws.send(Message::text("last words")).unwrap();
    peer.ws.close(sim.now(), CloseCode::NORMAL, "bye").unwrap();
    sim.transmit(&mut peer); // both frames in one read
    sim.settle();
    sim.read(&mut peer);
    assert_eq!(peer.messages(), [Message::text("last words")]);
    let closed = peer.closed().expect("closed");
    assert_eq!((closed.code, &closed.cause), (CloseCode::NORMAL, &CloseCause::Local));
    assert!(sim.socket_closed(&peer));
}

#[test]
fn an_echo_goes_out_before_the_1002_for_a_bad_frame_behind_it() {
    let mut sim = Sim::new(config(), Echo);
    let mut peer = sim.connect();
    peer.ws.send(Message::text("fine")).unwrap();
    let mut bytes = Vec::new();
    peer.ws.poll_transmit_into(&mut bytes);
    // A masked frame with a reserved opcode (0x3), empty payload.
    bytes.extend_from_slice(&[0x83, 0x80, 1, 2, 3, 4]);
    sim.send_raw(&peer, bytes);
    sim.settle();
    sim.read(&mut peer);
    assert_eq!(peer.messages(), [Message::text("fine")]);
    assert_eq!(peer.closed().map(|c| c.code), Some(CloseCode::PROTOCOL_ERROR));
}

/// Panics on "boom", echoes the rest.
struct Fragile;

impl Handler for Fragile {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        if msg.as_bytes() == b"boom" {
            panic!("the handler broke");
        }
        let _ = cx.send(msg);
    }
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011_and_the_worker_goes_on() {
    let mut sim = Sim::new(config(), Fragile);
    let mut a = sim.connect();
    let mut b = sim.connect();
    sim.send(&mut a, Message::text("boom"));
    sim.settle();
    sim.read(&mut a);
    assert_eq!(a.closed().map(|c| c.code), Some(CloseCode::INTERNAL_ERROR));
    assert_eq!(sim.stats().handler_panics, 1);
    sim.send(&mut b, Message::text("still here"));
    sim.settle();
    sim.read(&mut b);
    assert_eq!(b.messages(), [Message::text("still here")]);
}

#[test]
fn shutdown_closes_with_1001_and_ends_at_its_deadline_without_answers() {
    let config = EngineConfig { shutdown_timeout: Duration::from_secs(3), ..config() };
    let mut sim = Sim::new(config, Echo);
    let mut answering = sim.connect();
    let mut silent = sim.connect();
    sim.request_shutdown();
    sim.settle();
    assert!(!sim.listening());
    sim.read(&mut answering);
    sim.read(&mut silent);
    for p in [&answering, &silent] {
        assert_eq!(p.closed().map(|c| c.code), Some(CloseCode::GOING_AWAY));
    }
    sim.transmit(&mut answering); // its close answer
    sim.settle();
    assert!(sim.socket_closed(&answering));
    assert!(!sim.socket_closed(&silent) && !sim.finished);
    sim.run_for(Duration::from_secs(4));
    assert!(sim.socket_closed(&silent));
    assert!(sim.finished, "the loop ends once every connection is gone");
    assert!(sim.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_vanished_peer_ends_as_1006_and_leaves_its_topics() {
    struct Sub;
    impl Handler for Sub {
        fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
            cx.subscribe("t").unwrap();
        }
    }
    let mut sim = Sim::new(config(), Sub);
    let mut peer = sim.connect();
    sim.send(&mut peer, Message::text("sub"));
    sim.settle();
    sim.hang_up(&peer);
    sim.settle();
    assert!(sim.socket_closed(&peer));
    let s = sim.stats();
    assert_eq!((s.closes_with(1006), s.connections), (1, 0));
}

#[test]
fn topics_per_connection_are_limited() {
    struct Greedy(Vec<Result<(), crate::SendError>>);
    impl Handler for Greedy {
        fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
            for i in 0..70 {
                self.0.push(cx.subscribe(&format!("topic-{i}")));
            }
            self.0.push(cx.subscribe(&"x".repeat(300)));
        }
    }
    let mut sim = Sim::new(config(), Greedy(Vec::new()));
    let mut peer = sim.connect();
    sim.send(&mut peer, Message::text("go"));
    sim.settle();
    let r = &sim.handler().0;
    assert!(r[..64].iter().all(Result::is_ok));
    assert!(r[64..70].iter().all(|e| *e == Err(crate::SendError::TooManyTopics { max: 64 })));
    assert_eq!(r[70], Err(crate::SendError::TopicTooLong { len: 300, max: 256 }));
    assert_eq!(sim.stats().subscribes_refused, 7);
}

#[test]
fn close_with_an_invalid_code_or_reason_says_so() {
    struct Closer(Vec<Result<(), crate::SendError>>);
    impl Handler for Closer {
        fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
            self.0.push(cx.close(CloseCode(1005), "reserved"));
            self.0.push(cx.close(CloseCode::NORMAL, &"x".repeat(124)));
            self.0.push(cx.close(CloseCode::NORMAL, "fine"));
            self.0.push(cx.close(CloseCode::NORMAL, "again"));
        }
    }
    let mut sim = Sim::new(config(), Closer(Vec::new()));
    let mut peer = sim.connect();
    sim.send(&mut peer, Message::text("go"));
    sim.settle();
    use ringwire_frame::SendError as F;
    assert_eq!(
        sim.handler().0,
        [
            Err(crate::SendError::Frame(F::InvalidCloseCode(1005))),
            Err(crate::SendError::Frame(F::ReasonTooLong(124))),
            Ok(()),
            Err(crate::SendError::Closed),
        ]
    );
    sim.read(&mut peer);
    assert_eq!(
        peer.closed().map(|c| (c.code, c.reason.as_str())),
        Some((CloseCode::NORMAL, "fine"))
    );
}

#[test]
fn publish_reports_the_workers_it_could_not_reach() {
    struct Publish(Vec<usize>);
    impl Handler for Publish {
        fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
            for _ in 0..3 {
                self.0.push(cx.publish("t", &msg));
            }
        }
    }
    // Two more workers that never drain, with room for two commands each.
    let config = EngineConfig { command_queue: 2, ..config() };
    let mut sim = Sim::with_other_workers(config, Publish(Vec::new()), 2);
    let mut peer = sim.connect();
    sim.send(&mut peer, Message::text("news"));
    sim.settle();
    assert_eq!(sim.handler().0, [3, 3, 1], "the third publish reached only this worker");
    assert_eq!(sim.stats().publishes_dropped, 2);
}

#[test]
fn a_panic_in_on_open_refuses_the_upgrade_with_500() {
    struct Gatekeeper;
    impl Handler for Gatekeeper {
        fn on_open(
            &mut self,
            _: &mut Ctx<'_>,
            _: &ringwire_frame::handshake::Request,
        ) -> crate::Upgrade {
            panic!("no upgrade for you");
        }
        fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    }
    let mut sim = Sim::new(config(), Gatekeeper);
    let peer = sim.connect_raw(Sim::<Gatekeeper>::upgrade_request());
    sim.settle();
    let written = sim.written(&peer);
    assert!(written.starts_with(b"HTTP/1.1 500"), "{}", String::from_utf8_lossy(&written));
    assert_eq!(sim.stats().handler_panics, 1);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.socket_closed(&peer));
}

/// Connections busy in the same turn leave as many spare protocol buffers behind (the
/// next turn's reuse them); once a couple of seconds pass without a need for them, the
/// worker frees them.
#[test]
fn spare_buffers_of_a_burst_are_freed_once_it_has_passed() {
    use ringwire_frame::Connection;
    let mut sim = Sim::new(config(), Echo);
    let mut peers: Vec<_> = (0..100).map(|_| sim.connect()).collect();
    sim.run_for(Duration::from_secs(3));
    let before = Connection::spare_buffers().0;
    for p in peers.iter_mut() {
        p.ws.send(Message::binary(vec![1u8; 20])).unwrap();
    }
    for p in peers.iter_mut() {
        sim.transmit(p);
    }
    sim.settle();
    // The worker's 100 connections were busy together (and the test's peers, on this
    // thread too, left theirs).
    let after = Connection::spare_buffers().0;
    assert!(after >= before + 100, "{before} spares before the burst, {after} after");
    for p in peers.iter_mut() {
        sim.read(p);
        assert_eq!(p.messages().len(), 1, "the echo");
    }
    // The figure is stored at each release, once a second: the first after the burst
    // frees none of what the burst used.
    sim.run_for(Duration::from_millis(1_100));
    assert!(sim.stats().spare_buffer_bytes > 0, "the spares are counted");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(Connection::spare_buffers(), (0, 0), "freed");
    assert_eq!(sim.stats().spare_buffer_bytes, 0);
}

/// A worker gone quiet after a burst, whose next timer is a heartbeat half a minute
/// away, still wakes to free the burst's spare buffers; once none are left it sleeps
/// until its timer again.
#[test]
fn a_quiet_worker_wakes_to_free_the_spares_of_a_burst() {
    use ringwire_frame::Connection;
    let config = with_frame(|f| f.ping_interval = Some(Duration::from_secs(30)));
    let mut sim = Sim::new(config, Echo);
    let mut peers: Vec<_> = (0..50).map(|_| sim.connect()).collect();
    sim.run_for(Duration::from_secs(2));
    for p in peers.iter_mut() {
        p.ws.send(Message::binary(vec![1u8; 20])).unwrap();
        sim.transmit(p);
    }
    sim.settle();
    for p in peers.iter_mut() {
        sim.read(p);
        assert_eq!(p.messages().len(), 1, "the echo");
    }
    assert!(Connection::spare_buffers().0 >= 50, "the burst left spares");
    let wait = sim.last_wait().expect("a timed wait");
    assert!(wait <= Duration::from_secs(1), "the quiet worker waits {wait:?} with spares held");
    // Two releases a second apart free them (the first marks what the next frees).
    sim.run_for(Duration::from_millis(2_100));
    assert_eq!(Connection::spare_buffers(), (0, 0), "freed");
    sim.settle();
    let wait = sim.last_wait().expect("a timed wait");
    assert!(wait > Duration::from_secs(20), "with no spares it waits for its heartbeat: {wait:?}");
}

/// With grants to check for their end, a quiet worker wakes once a second for them,
/// though its next timer is a heartbeat half a minute away (a connection must not
/// outlive its grant until its next traffic).
#[test]
fn a_quiet_worker_wakes_to_check_grants() {
    use std::time::SystemTime;

    use crate::auth::{Authorizer, Grant};

    struct AnHour;
    impl Authorizer for AnHour {
        fn authorize(&self, _: &ringwire_frame::handshake::Request) -> Result<Grant, u16> {
            Ok(Grant {
                subscribe: Vec::new(),
                publish: Vec::new(),
                expires: Some(SystemTime::now() + Duration::from_secs(3600)),
            })
        }
    }
    let mut config = with_frame(|f| f.ping_interval = Some(Duration::from_secs(30)));
    config.authorizer = Some(std::sync::Arc::new(AnHour));
    let mut sim = Sim::new(config, Echo);
    let _peer = sim.connect();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(ringwire_frame::Connection::spare_buffers(), (0, 0), "no spares to free");
    sim.settle();
    let wait = sim.last_wait().expect("a timed wait");
    assert!(wait <= Duration::from_secs(1), "the worker waits {wait:?} with a grant to check");
}
