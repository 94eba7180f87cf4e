//! The async face of the client: `ringwire::client::connect` from a tokio runtime
//! (the connection lives on a ringwire worker), `Server::connect_stream`, the stream's
//! events in order, its end after a close; both backends where an engine is started.

mod common;

use std::time::Duration;

use common::{builder, start_probe, GuardExt};
use futures_util::StreamExt;
use ringwire::client::{self, Cause, ClientConfig, ClientState, Event};
use ringwire::frame::{CloseCode, Message};
use ringwire::{BackendChoice, Engine, Handler};
use tokio::time::timeout;

const PATIENCE: Duration = common::PATIENCE;

#[tokio::test]
async fn connect_from_tokio_sends_and_receives() {
    let (server, _srx) = start_probe(builder(BackendChoice::Auto));
    let url = format!("ws://{}/feed", server.local_addr());
    let mut feed = timeout(PATIENCE, client::connect(&url)).await.unwrap().unwrap();
    assert_eq!(
        timeout(PATIENCE, feed.wait_for(ClientState::Connected)).await.unwrap(),
        ClientState::Connected
    );
    feed.send_text("hello").unwrap();
    let got = timeout(PATIENCE, feed.recv()).await.unwrap();
    assert_eq!(got, Some(Message::text("hello".to_owned())));
    // As a futures Stream too.
    feed.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let ev = timeout(PATIENCE, feed.next()).await.unwrap();
    assert_eq!(ev, Some(Event::Message(Message::binary(vec![1u8, 2, 3]))));
    feed.handle().close(CloseCode::NORMAL, "bye").unwrap();
    // The stream ends after the close: a Closed event, the state change, then None.
    let mut seen = Vec::new();
    while let Some(e) = timeout(PATIENCE, feed.next_event()).await.unwrap() {
        seen.push(e);
    }
    let last_state = seen.iter().rev().find_map(|e| match e {
        Event::State(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(last_state.map(|c| (c.to, c.cause)), Some((ClientState::Closed, Cause::AppClose)));
    assert!(seen.iter().any(|e| matches!(e, Event::Closed(c) if c.code == CloseCode::NORMAL)));
    server.shutdown().unwrap();
}

#[tokio::test]
async fn a_bad_url_is_refused_without_blocking() {
    let e = client::connect("http://example.invalid/").await.unwrap_err();
    assert!(e.to_string().contains("unsupported scheme"), "{e}");
}

/// A handler that must never be called: the stream client's events bypass it.
struct Unused;
impl Handler for Unused {
    fn on_message(&mut self, _: &mut ringwire::Ctx<'_>, _: Message) {
        panic!("a stream client's message reached the handler");
    }
    fn on_state(&mut self, _: &mut ringwire::Ctx<'_>, _: &ringwire::client::StateChange) {
        panic!("a stream client's state change reached the handler");
    }
}

/// The engine the stream clients dial from: one worker, whose handler must never run.
fn client_engine(backend: BackendChoice) -> common::Guarded {
    Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(|_| Unused)
        .unwrap()
        .guarded()
}

fn stream_events_in_order(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let engine = client_engine(backend);
    let url = format!("ws://{}/", server.local_addr());
    let mut s = engine.connect_stream(&url, ClientConfig::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        s.wait_for(ClientState::Connected).await;
        for i in 0..100 {
            s.send_text(&format!("m{i}")).unwrap();
        }
        for i in 0..100 {
            let m = timeout(PATIENCE, s.recv()).await.unwrap().unwrap();
            assert_eq!(m, Message::text(format!("m{i}")));
        }
    });
    assert_eq!(s.overflows(), 0);
    assert_eq!(engine.stats().handler_panics, 0, "the handler was never called");
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

fn a_stream_that_is_not_read_closes_its_client_as_a_slow_consumer(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let engine = client_engine(backend);
    let url = format!("ws://{}/", server.local_addr());
    let mut cfg = ClientConfig::default();
    cfg.retry.backoff.max_attempts = Some(1);
    let mut s = engine.connect_stream(&url, cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        s.wait_for(ClientState::Connected).await;
        // The server floods more than a stream holds; nobody reads meanwhile.
        s.send_text(&format!("flood:{}:16", client::STREAM_CAPACITY + 100)).unwrap();
        assert!(common::wait_until(PATIENCE, || s.state() == ClientState::Closed));
        let mut messages = 0;
        let mut last = None;
        while let Some(e) = timeout(PATIENCE, s.next_event()).await.unwrap() {
            match e {
                Event::Message(_) => messages += 1,
                Event::State(c) => last = Some(c),
                _ => {}
            }
        }
        // What it could hold: its capacity, less the state changes queued before.
        let cap = client::STREAM_CAPACITY;
        assert!((cap - 2..=cap).contains(&messages), "{messages} messages");
        let last = last.expect("the state changes were kept");
        let gave_up = Cause::GaveUp { attempts: 1, last: Box::new(Cause::Closed { code: 1008 }) };
        assert_eq!((last.to, last.cause), (ClientState::Closed, gave_up));
    });
    assert!(s.overflows() > 0);
    assert_eq!(engine.stats().slow_closes, 1);
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

/// Dropping the stream closes its client for good (before, the client lived on with
/// nobody to read its events, reconnecting each time it was closed as a slow consumer).
fn a_dropped_stream_closes_its_client(backend: BackendChoice) {
    let (server, _srx) = start_probe(builder(backend));
    let engine = client_engine(backend);
    let url = format!("ws://{}/", server.local_addr());
    let s = engine.connect_stream(&url, ClientConfig::default()).unwrap();
    let h = s.handle().clone();
    assert!(common::wait_until(PATIENCE, || h.state() == ClientState::Connected));
    drop(s);
    assert!(common::wait_until(PATIENCE, || h.state() == ClientState::Closed));
    assert!(common::wait_until(PATIENCE, || server.stats().connections == 0));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(h.state(), ClientState::Closed, "no reconnect");
    assert_eq!(engine.stats().connections, 0);
    engine.shutdown().unwrap();
    server.shutdown().unwrap();
}

both_backends! {
    a_dropped_stream_closes_its_client => dropped_stream_io_uring, dropped_stream_epoll;
    a_stream_that_is_not_read_closes_its_client_as_a_slow_consumer => slow_stream_io_uring, slow_stream_epoll;
    stream_events_in_order => stream_events_in_order_io_uring, stream_events_in_order_epoll;
}
