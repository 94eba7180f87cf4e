//! What client tests share: a handler that reports what a client's engine saw, an
//! engine that only dials with it, and waits on what it reports (bounded by
//! [`super::PATIENCE`]).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use ringwire::client::{ClientState, StateChange};
use ringwire::frame::{Closed, Message};
use ringwire::{BackendChoice, Ctx, Engine, Handler};

use super::{GuardExt, Guarded, PATIENCE};

/// What the client side's handler saw.
#[derive(Debug)]
pub enum Client {
    State(StateChange),
    Msg(Message),
    Closed(Closed),
}

pub struct ClientProbe(pub Sender<Client>);

impl Handler for ClientProbe {
    fn on_message(&mut self, _: &mut Ctx<'_>, msg: Message) {
        let _ = self.0.send(Client::Msg(msg));
    }
    fn on_close(&mut self, _: &mut Ctx<'_>, closed: &Closed) {
        let _ = self.0.send(Client::Closed(closed.clone()));
    }
    fn on_state(&mut self, _: &mut Ctx<'_>, change: &StateChange) {
        let _ = self.0.send(Client::State(change.clone()));
    }
}

/// An engine that only dials, with one worker.
pub fn client_engine(backend: BackendChoice) -> (Guarded, Receiver<Client>) {
    let (tx, rx) = channel();
    let engine = Engine::builder()
        .workers(1)
        .pin_cpus(false)
        .backend(backend)
        .start(move |_| ClientProbe(tx.clone()))
        .expect("a client-only engine starts")
        .guarded();
    (engine, rx)
}

/// The next state change to `to`, skipping other events; the events skipped on the
/// way are returned too (in order).
pub fn expect_state(rx: &Receiver<Client>, to: ClientState) -> (StateChange, Vec<Client>) {
    let end = Instant::now() + PATIENCE;
    let mut before = Vec::new();
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(Client::State(c)) if c.to == to => return (c, before),
            Ok(other) => before.push(other),
            Err(RecvTimeoutError::Timeout) => panic!("no change to {to} (saw {before:?})"),
            Err(RecvTimeoutError::Disconnected) => panic!("client probe gone"),
        }
    }
}

pub fn expect_msg(rx: &Receiver<Client>) -> Message {
    let end = Instant::now() + PATIENCE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(Client::Msg(m)) => return m,
            Ok(_) => {}
            Err(e) => panic!("no message: {e:?}"),
        }
    }
}

/// The next `on_close` the probe saw, skipping other events.
pub fn expect_closed(rx: &Receiver<Client>) -> Closed {
    let end = Instant::now() + PATIENCE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(Client::Closed(c)) => return c,
            Ok(_) => {}
            Err(e) => panic!("no close: {e:?}"),
        }
    }
}
