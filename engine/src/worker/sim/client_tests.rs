//! Client connections under virtual time: the backoff schedule and its jitter, the
//! stable reset, the connect and heartbeat deadlines to the millisecond, the
//! per-target rate cap. No test here sleeps; connects and servers are played by the
//! fake driver and the test.
#![cfg(test)]

use std::time::{Duration, Instant};

use ringwire_frame::Message;
use rustix::io::Errno;

use super::Sim;
use crate::client::{Backoff, Cause, ClientConfig, ClientState, ConnectRate, StateChange};
use crate::config::EngineConfig;
use crate::handler::{Ctx, Handler};

/// Records every state change with the virtual time it was delivered at.
#[derive(Default)]
struct Recorder {
    changes: Vec<(Instant, StateChange)>,
    messages: Vec<Message>,
}

impl Handler for Recorder {
    fn on_message(&mut self, _: &mut Ctx<'_>, msg: Message) {
        self.messages.push(msg);
    }
    fn on_state(&mut self, cx: &mut Ctx<'_>, change: &StateChange) {
        self.changes.push((cx.now(), change.clone()));
    }
}

impl Recorder {
    /// The instants of the changes to `to`.
    fn times(&self, to: ClientState) -> Vec<Instant> {
        self.changes.iter().filter(|(_, c)| c.to == to).map(|(t, _)| *t).collect()
    }
}

const URL: &str = "ws://10.1.2.3:9001/feed";
const TICK: Duration = Duration::from_millis(1);

fn sim() -> Sim<Recorder> {
    Sim::new(EngineConfig::default(), Recorder::default())
}

/// No heartbeat, no rate cap, backoff 1 s x 2 up to 8 s.
fn config() -> ClientConfig {
    let mut c = ClientConfig { ping_interval: None, connect_rate: None, ..Default::default() };
    c.retry.backoff = Backoff {
        initial: Duration::from_secs(1),
        factor: 2.0,
        max: Duration::from_secs(8),
        ..Backoff::default()
    };
    c
}

#[test]
fn refused_attempts_follow_the_backoff_schedule() {
    let mut sim = sim();
    sim.set_connect_error(Some(Errno::CONNREFUSED));
    let cfg = config();
    let backoff = cfg.retry.backoff.clone();
    let h = sim.dial(URL, cfg);
    sim.run_for(Duration::from_secs(300));
    assert_ne!(h.state(), ClientState::Closed, "still trying (forever by default)");
    let rec = sim.handler();
    let lost = rec.times(ClientState::Reconnecting);
    let retried: Vec<Instant> = rec
        .changes
        .iter()
        .filter(|(_, c)| matches!(c.cause, Cause::Retry { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(lost.len() >= 300 / 8, "{} attempts in 300 s", lost.len());
    let mut waits = Vec::new();
    for (n, (l, r)) in lost.iter().zip(&retried).enumerate() {
        let wait = *r - *l;
        assert!(wait <= backoff.ceiling(n as u32) + TICK, "retry {n} waited {wait:?}");
        waits.push(wait);
    }
    // Full jitter: the waits at the cap are spread over [0, 8 s], not all the same.
    let capped = &waits[4..];
    let (lo, hi) = (capped.iter().min().unwrap(), capped.iter().max().unwrap());
    assert!(*hi - *lo > Duration::from_secs(2), "waits at the cap {capped:?}");
    let mean = capped.iter().sum::<Duration>() / capped.len() as u32;
    assert!((2500..5500).contains(&mean.as_millis()), "mean wait at the cap {mean:?}");
    for (_, c) in &rec.changes {
        if c.to == ClientState::Reconnecting {
            assert_eq!(c.cause, Cause::ConnectFailed { errno: Errno::CONNREFUSED.raw_os_error() });
        }
    }
}

#[test]
fn a_connect_that_never_finishes_times_out_at_the_deadline() {
    let mut sim = sim();
    sim.set_connects_hang(true);
    let mut cfg = config();
    cfg.connect_timeout = Duration::from_secs(3);
    cfg.retry.backoff.max_attempts = Some(1);
    let h = sim.dial(URL, cfg);
    let start = sim.now();
    sim.run_for(Duration::from_secs(10));
    let rec = sim.handler();
    let (at, closed) = rec.changes.last().cloned().expect("changes");
    let gave_up = Cause::GaveUp { attempts: 1, last: Box::new(Cause::ConnectTimeout) };
    assert_eq!((closed.to, closed.cause), (ClientState::Closed, gave_up));
    let took = at - start;
    assert!(took >= Duration::from_secs(3) && took <= Duration::from_secs(3) + TICK, "{took:?}");
    assert_eq!(h.state(), ClientState::Closed);
    assert_eq!(sim.stats().connections, 0, "the record is gone");
}

#[test]
fn a_silent_server_is_lost_at_ping_interval_plus_pong_timeout() {
    let mut sim = sim();
    let mut cfg = config();
    cfg.ping_interval = Some(Duration::from_secs(20));
    cfg.pong_timeout = Duration::from_secs(10);
    let h = sim.dial(URL, cfg);
    let mut server = sim.accept_client(&h);
    assert_eq!(h.state(), ClientState::Connected);
    let up = sim.handler().times(ClientState::Connected)[0];
    sim.run_for(Duration::from_secs(25));
    sim.read(&mut server);
    assert_eq!(server.pings(), 1, "a heartbeat ping at 20 s");
    // The server's core answered, but the test never transmits it: silence.
    sim.run_for(Duration::from_secs(10));
    let rec = sim.handler();
    let (at, lost) = rec.changes.iter().find(|(_, c)| c.to == ClientState::Reconnecting).unwrap();
    assert_eq!(lost.cause, Cause::HeartbeatLost);
    let took = *at - up;
    let bound = Duration::from_secs(30);
    assert!(took >= bound && took <= bound + TICK, "lost after {took:?}");
}

#[test]
fn a_server_that_answers_keeps_it_up_and_feeds_the_health_figures() {
    let mut sim = sim();
    let mut cfg = config();
    cfg.ping_interval = Some(Duration::from_secs(5));
    cfg.pong_timeout = Duration::from_secs(2);
    let h = sim.dial(URL, cfg);
    let mut server = sim.accept_client(&h);
    for _ in 0..600 {
        sim.run_for(Duration::from_millis(100));
        sim.read(&mut server);
        sim.transmit(&mut server);
    }
    assert_eq!(h.state(), ClientState::Connected, "an hour of answered pings");
    let health = sim.health(&h);
    assert!(health.heartbeats >= 10, "{health:?}");
    // The handle sees the same figures from any thread (its p95 a 12-bit float of
    // the worker's: within 0.4%, never above).
    let seen = h.health();
    let (got, want) = (seen.rtt_p95.unwrap(), health.rtt_p95.unwrap());
    assert!(got <= want && want.as_secs_f64() - got.as_secs_f64() <= want.as_secs_f64() * 0.004);
    assert_eq!((seen.streak, seen.level, seen.loss), (0, health.level, 0.0));
    assert_eq!(health.loss, 0.0);
    assert!(health.rtt_p50.is_some_and(|r| r <= Duration::from_millis(200)), "{health:?}");
    // The server's messages reach the handler.
    sim.send(&mut server, Message::text("tick"));
    sim.settle();
    assert_eq!(sim.handler().messages, [Message::text("tick")]);
}

#[test]
fn a_stable_connection_restarts_the_backoff_from_its_first_step() {
    let mut sim = sim();
    let mut cfg = config();
    cfg.retry.backoff.initial = Duration::from_secs(4);
    cfg.retry.backoff.max = Duration::from_secs(64);
    cfg.retry.backoff.stable_after = Duration::from_secs(30);
    let backoff = cfg.retry.backoff.clone();
    sim.set_connect_error(Some(Errno::CONNREFUSED));
    let h = sim.dial(URL, cfg);
    // Four refusals: the ceiling has grown to 64 s.
    while sim.handler().times(ClientState::Reconnecting).len() < 4 {
        sim.run_for(Duration::from_secs(1));
    }
    sim.set_connect_error(None);
    while h.state() != ClientState::Connecting {
        sim.run_for(Duration::from_secs(1));
    }
    let server = sim.accept_client(&h);
    assert_eq!(h.state(), ClientState::Connected);
    sim.run_for(Duration::from_secs(31));
    sim.hang_up(&server);
    sim.settle();
    let lost_at = *sim.handler().times(ClientState::Reconnecting).last().unwrap();
    sim.run_for(backoff.ceiling(0) + TICK);
    let retry_at = *sim.handler().times(ClientState::Connecting).last().unwrap();
    assert!(retry_at > lost_at, "retried within the first step's ceiling");
    assert!(retry_at - lost_at <= backoff.ceiling(0) + TICK);
}

#[test]
fn the_connect_rate_cap_spaces_attempts_to_one_target() {
    let mut sim = sim();
    let mut cfg = config();
    cfg.connect_rate = Some(ConnectRate { per_second: 4, burst: 2 });
    let handles: Vec<_> = (0..10).map(|_| sim.dial(URL, cfg.clone())).collect();
    sim.run_for(Duration::from_secs(5));
    let connects = sim.connects();
    assert_eq!(connects.len(), 10, "every client connected in the end");
    // Two at once (the burst), then one every 333 ms (4 - 2 + 1 = 3 a second), so no
    // second sees more than 4.
    let t0 = connects[0];
    assert!(connects[1] - t0 < TICK);
    for w in connects[1..].windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(333) - TICK, "{:?}", w[1] - w[0]);
    }
    for (i, &t) in connects.iter().enumerate() {
        let in_a_second = connects[i..].iter().take_while(|&&u| u - t < Duration::from_secs(1));
        assert!(in_a_second.count() <= 4, "more than the cap in the second from {i}");
    }
    assert!(handles.iter().all(|h| h.state() == ClientState::Connecting), "no server answered");
}

#[test]
fn the_workers_counters_follow_the_clients() {
    let mut sim = sim();
    sim.set_connect_error(Some(Errno::CONNREFUSED));
    let mut cfg = config();
    cfg.health.streak_warn = 2;
    let h = sim.dial(URL, cfg);
    while sim.stats().client_losses < 3 {
        sim.run_for(Duration::from_secs(1));
    }
    let s = sim.stats();
    assert_eq!((s.clients, s.clients_connected, s.clients_degraded), (1, 0, 1), "{s:?}");
    // Ok to warn, and to critical as well if the streak got that far (the losses are
    // counted a second at a time).
    let alerts = s.client_alerts;
    let critical = crate::client::HealthConfig::default().streak_critical;
    let want = 1 + u64::from(h.health().streak >= critical);
    assert_eq!(alerts, want, "{s:?}");
    let waiting = u64::from(h.state() == ClientState::Reconnecting);
    assert_eq!(s.clients_reconnecting, waiting, "{s:?}");
    assert!(h.health().streak >= 3);
    sim.set_connect_error(None);
    while h.state() != ClientState::Connecting {
        sim.run_for(Duration::from_millis(100));
    }
    let _server = sim.accept_client(&h);
    let s = sim.stats();
    assert_eq!((s.clients, s.clients_connected, s.clients_degraded), (1, 1, 0), "{s:?}");
    assert_eq!((s.clients_reconnecting, s.client_alerts), (0, alerts), "better is no alert");
    h.close(ringwire_frame::CloseCode::NORMAL, "").unwrap();
    sim.run_for(Duration::from_secs(10));
    let s = sim.stats();
    assert_eq!((s.clients, s.clients_connected, s.connections), (0, 0, 0), "{s:?}");
}

#[test]
fn closing_a_waiting_client_ends_it_at_once() {
    let mut sim = sim();
    sim.set_connect_error(Some(Errno::CONNREFUSED));
    let h = sim.dial(URL, config());
    sim.settle();
    assert_eq!(h.state(), ClientState::Reconnecting);
    assert_eq!(sim.stats().clients_reconnecting, 1);
    h.close(ringwire_frame::CloseCode::NORMAL, "bye").unwrap();
    sim.settle();
    assert_eq!(h.state(), ClientState::Closed);
    assert_eq!(sim.stats().clients_reconnecting, 0);
    let last = sim.handler().changes.last().cloned().unwrap().1;
    assert_eq!((last.from, last.cause), (ClientState::Reconnecting, Cause::AppClose));
    assert_eq!(sim.stats().connections, 0);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.connects().len(), 1, "no attempt after the close");
}

fn app_heartbeat_config() -> ClientConfig {
    let mut c = config();
    c.app_heartbeat = Some(crate::client::AppHeartbeat {
        message: Message::text("app-ping"),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    });
    c
}

#[test]
fn a_server_whose_application_is_silent_is_lost_by_the_app_heartbeat() {
    let mut sim = sim();
    let h = sim.dial(URL, app_heartbeat_config());
    let mut server = sim.accept_client(&h);
    let up = sim.handler().times(ClientState::Connected)[0];
    sim.run_for(Duration::from_secs(6));
    sim.read(&mut server);
    assert_eq!(server.messages(), [Message::text("app-ping")], "sent after 5 s of silence");
    sim.run_for(Duration::from_secs(5));
    let rec = sim.handler();
    let (at, lost) = rec.changes.iter().find(|(_, c)| c.to == ClientState::Reconnecting).unwrap();
    assert_eq!(lost.cause, Cause::AppHeartbeatLost);
    let took = *at - up;
    let bound = Duration::from_secs(7);
    // Each of the two deadlines (the ping's, then its answer's) is kept rounded up to
    // the millisecond (`clock::Tick`): up to a tick late each, plus the wheel's tick.
    assert!(took >= bound && took <= bound + 3 * TICK, "lost after {took:?}");
    sim.read(&mut server);
    let closed = server.closed().map(|c| c.code.0);
    assert_eq!(closed, Some(1001), "the client closed with 1001");
}

#[test]
fn application_messages_hold_the_app_heartbeat_off() {
    let mut sim = sim();
    let h = sim.dial(URL, app_heartbeat_config());
    let mut server = sim.accept_client(&h);
    for i in 0..20 {
        sim.run_for(Duration::from_secs(3));
        sim.send(&mut server, Message::text(format!("tick {i}")));
        sim.settle();
    }
    sim.read(&mut server);
    assert_eq!(h.state(), ClientState::Connected, "a minute of application traffic");
    assert!(server.messages().is_empty(), "no heartbeat needed: {:?}", server.messages());
    // The server goes quiet: now the heartbeat is sent, answered, and sent again.
    for _ in 0..4 {
        sim.run_for(Duration::from_secs(6));
        sim.read(&mut server);
        sim.send(&mut server, Message::text("pong"));
        sim.settle();
    }
    sim.read(&mut server);
    assert_eq!(h.state(), ClientState::Connected);
    assert!(server.messages().len() >= 3, "{:?}", server.messages());
}

#[test]
fn a_101_split_at_any_byte_connects_once() {
    for cut in [1, 2, 12, 40, 80, 120, 128] {
        let mut sim = sim();
        let h = sim.dial(URL, config());
        let _server = sim.accept_client_split(&h, cut);
        assert_eq!(h.state(), ClientState::Connected, "cut after {cut} bytes");
        let ups = sim.handler().times(ClientState::Connected).len();
        assert_eq!(ups, 1, "one change to Connected");
    }
}

#[test]
fn a_read_idle_client_closes_at_its_idle_timeout() {
    let mut sim = sim();
    let mut cfg = config();
    cfg.idle_timeout = Some(Duration::from_secs(15));
    let h = sim.dial(URL, cfg);
    let mut server = sim.accept_client(&h);
    let up = sim.handler().times(ClientState::Connected)[0];
    sim.run_for(Duration::from_secs(14));
    sim.read(&mut server);
    assert!(server.closed().is_none(), "nothing before the idle timeout");
    sim.run_for(Duration::from_secs(2));
    sim.read(&mut server);
    sim.transmit(&mut server); // the server answers the close
    sim.settle();
    let rec = sim.handler();
    let (at, lost) = rec.changes.iter().find(|(_, c)| c.to == ClientState::Reconnecting).unwrap();
    assert_eq!(lost.cause, Cause::Closed { code: 1001 });
    assert!(*at - up >= Duration::from_secs(15) && *at - up <= Duration::from_secs(16));
}

#[test]
fn after_a_short_outage_the_next_attempt_comes_within_initial_plus_its_length() {
    // Refusals come back at once; the ceiling grows no faster than time, so a client
    // whose server was gone for 2 s tries again within 1 + 2 s of its return, however
    // many quick refusals it met (the per-attempt schedule alone allows 16 s and more).
    for _ in 0..30 {
        let mut sim = sim();
        let mut cfg = config();
        cfg.retry.backoff.max = Duration::from_secs(30);
        let h = sim.dial(URL, cfg);
        let server = sim.accept_client(&h);
        sim.set_connect_error(Some(Errno::CONNREFUSED));
        sim.hang_up(&server);
        sim.settle();
        let lost_at = sim.now();
        sim.run_for(Duration::from_secs(2));
        sim.set_connect_error(None);
        let back = sim.now();
        let before = sim.connects().len();
        sim.run_for(Duration::from_secs(30));
        let next = sim.connects().get(before).copied().expect("an attempt after the return");
        let bound = lost_at + Duration::from_secs(2) + Duration::from_secs(3) + TICK;
        assert!(next <= bound, "next attempt {:?} after the return", next - back);
    }
}

#[test]
fn a_least_queued_pool_steers_around_a_member_whose_server_stopped_reading() {
    for pick in [crate::client::Pick::LeastQueued, crate::client::Pick::RoundRobin] {
        let mut sim = sim();
        let core = &sim.worker.core;
        let pool =
            crate::client::Pool::new(core.dialer.clone(), core.all.clone(), URL, 2, config())
                .expect("pool")
                .with_pick(pick);
        sim.settle();
        let [a, b] = [pool.members()[0].clone(), pool.members()[1].clone()];
        let stalled = sim.accept_client(&a);
        let mut reading = sim.accept_client(&b);
        assert_eq!(pool.up(), 2);
        // Member a's server stops reading: what a takes stays queued.
        sim.set_window(&stalled, Some(0));
        for i in 0..10 {
            pool.send(Message::binary(vec![i as u8; 100])).expect("a member is up");
            sim.settle();
        }
        sim.read(&mut reading);
        let (to_b, queued_a) = (reading.messages().len(), a.queued_bytes());
        match pick {
            // The first went to a (both empty, a first); then a's bytes stayed queued.
            crate::client::Pick::LeastQueued => {
                assert_eq!((to_b, queued_a), (9, 100), "{pick:?}");
            }
            crate::client::Pick::RoundRobin => {
                assert_eq!((to_b, queued_a), (5, 500), "{pick:?}");
            }
        }
        assert_eq!(b.queued_bytes(), 0, "b's writes took its bytes off");
    }
}
