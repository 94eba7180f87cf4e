#![allow(missing_docs)]
//! A client's handle works from the moment `connect` returns it, before its worker has
//! taken the dial (and given it a key): a close then ends the client for good, and a
//! durable send is stored, on both backends. (Until 2026-12-08 both were refused with
//! `NotConnected` / `Closed` in that window, about two calls in three right after
//! `connect`, and a client whose close was refused went on to connect.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, GuardExt, PATIENCE};
use ringwire::client::{ClientConfig, ClientState};
use ringwire::frame::{CloseCode, Message};
use ringwire::outbox::OutboxSettings;
use ringwire::{BackendChoice, Ctx, Echo, Engine, Handler};

fn closed_at_once(backend: BackendChoice) {
    let server = common::builder(backend).start(|_| Echo).unwrap().guarded();
    let app = Engine::builder().workers(1).pin_cpus(false).backend(backend).start(|_| Echo);
    let app = app.unwrap().guarded();
    let url = format!("ws://{}/", server.local_addr());
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let h = app.connect(&url, ClientConfig::default()).unwrap();
            assert_eq!(h.close(CloseCode::NORMAL, "changed my mind"), Ok(()));
            h
        })
        .collect();
    assert!(wait_until(PATIENCE, || handles.iter().all(|h| h.state() == ClientState::Closed)));
    // Closed for good: none connects afterwards, and none is left on either side.
    std::thread::sleep(Duration::from_millis(100));
    assert!(handles.iter().all(|h| h.state() == ClientState::Closed));
    assert!(wait_until(PATIENCE, || app.stats().connections == 0), "{:?}", app.stats());
    assert!(wait_until(PATIENCE, || server.stats().connections == 0));
    assert_eq!(handles[0].close(CloseCode::NORMAL, ""), Err(ringwire::SendError::Closed));
    app.shutdown().unwrap();
    server.shutdown().unwrap();
}

/// Counts the durable messages it is handed.
struct Count(Arc<Mutex<usize>>);

impl Handler for Count {
    fn on_message(&mut self, cx: &mut Ctx<'_>, _: Message) {
        if cx.delivery().is_some() {
            *self.0.lock().unwrap() += 1;
        }
    }
}

fn stored_at_once(backend: BackendChoice) {
    let dir = std::env::temp_dir().join(format!("rw-early-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let got = Arc::new(Mutex::new(0));
    let g = got.clone();
    let receipts = ringwire::outbox::ReceiptSettings::new(dir.join("receipts"));
    let server = common::builder(backend).receipts(Some(receipts)).start(move |_| Count(g.clone()));
    let server = server.unwrap().guarded();
    let app = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .outbox(Some(OutboxSettings::new(dir.join("outbox"))))
        .start(|_| Echo)
        .unwrap()
        .guarded();
    let url = format!("ws://{}/", server.local_addr());
    const CLIENTS: u64 = 10;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|stream| {
            let h = app.connect(&url, common::durable_client_config(100 + stream)).unwrap();
            let stored = h.store_durable(Message::text("first words"), PATIENCE);
            assert!(stored.is_ok(), "stream {stream}: {stored:?}");
            h
        })
        .collect();
    assert!(wait_until(PATIENCE, || *got.lock().unwrap() == CLIENTS as usize), "delivered");
    for h in &handles {
        h.close(CloseCode::NORMAL, "").unwrap();
    }
    app.shutdown().unwrap();
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    closed_at_once => a_client_closed_before_its_dial_was_taken_never_connects_io_uring,
                      a_client_closed_before_its_dial_was_taken_never_connects_epoll;
    stored_at_once => a_durable_send_before_the_dial_was_taken_is_stored_io_uring,
                      a_durable_send_before_the_dial_was_taken_is_stored_epoll;
}
