//! The handler's worker-level callback under virtual time: `on_wake` when the
//! application rings and at the times it asked for, to the 1 ms tick; dialling from it
//! and acting on a connection by id.
#![cfg(test)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ringwire_frame::Message;

use super::Sim;
use crate::client::{ClientConfig, ClientHandle, ClientSpec, ClientState};
use crate::config::EngineConfig;
use crate::handle::ConnId;
use crate::handler::{Ctx, Handler, WorkerCtx};

#[derive(Default)]
struct Waker {
    /// The virtual time of every `on_wake`.
    wakes: Vec<Instant>,
    /// Delays to ask for, one per wake.
    next: VecDeque<Duration>,
    /// Extra times to ask for at the first wake (the earliest must win).
    also: Vec<Duration>,
    panic_next: bool,
    spec: Option<ClientSpec>,
    dialed: Vec<ClientHandle>,
    send_to: Option<ConnId>,
    /// What `conn` gave for each id asked.
    found: Vec<bool>,
}

impl Handler for Waker {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) {}
    fn on_wake(&mut self, w: &mut WorkerCtx<'_>) {
        self.wakes.push(w.now());
        if std::mem::take(&mut self.panic_next) {
            panic!("on_wake fails once");
        }
        let now = w.now();
        for d in self.also.drain(..) {
            w.wake_at(now + d);
        }
        if let Some(d) = self.next.pop_front() {
            w.wake_at(now + d);
        }
        if let Some(spec) = self.spec.take() {
            let h = w.dial(&spec).expect("dial");
            assert!(h.id().is_some(), "the client exists when dial returns");
            self.dialed.push(h);
        }
        if let Some(id) = self.send_to.take() {
            let found = w.conn(id).map(|mut cx| cx.send_text("from on_wake").is_ok());
            self.found.push(found.unwrap_or(false));
        }
    }
}

fn sim() -> Sim<Waker> {
    Sim::new(EngineConfig::default(), Waker::default())
}

#[test]
fn on_wake_runs_once_per_ring_burst_and_never_unasked() {
    let mut sim = sim();
    sim.run_for(Duration::from_secs(5));
    assert!(sim.handler().wakes.is_empty(), "no ring, no wake");
    for _ in 0..3 {
        sim.worker.core.me.ring();
    }
    sim.settle();
    assert_eq!(sim.handler().wakes.len(), 1, "three rings before it looked: one wake");
    sim.worker.core.me.ring();
    sim.settle();
    assert_eq!(sim.handler().wakes.len(), 2);
}

#[test]
fn wake_at_runs_on_the_tick_asked_for_and_the_earliest_wins() {
    let mut sim = sim();
    sim.handler().next = [Duration::from_millis(250), Duration::from_millis(7)].into();
    sim.handler().also = vec![Duration::from_millis(900), Duration::from_millis(400)];
    sim.worker.core.me.ring();
    sim.run_for(Duration::from_secs(2));
    let w = sim.handler().wakes.clone();
    let gaps: Vec<Duration> = w.windows(2).map(|p| p[1] - p[0]).collect();
    // First wake asked for 900, 400 and 250 ms: 250 wins; the second asked for 7 ms.
    assert_eq!(gaps, [Duration::from_millis(250), Duration::from_millis(7)], "{w:?}");
}

#[test]
fn a_panic_in_on_wake_is_counted_and_the_worker_goes_on() {
    let mut sim = sim();
    sim.handler().panic_next = true;
    sim.worker.core.me.ring();
    sim.settle();
    assert_eq!(sim.stats().handler_panics, 1);
    sim.worker.core.me.ring();
    sim.settle();
    assert_eq!(sim.handler().wakes.len(), 2);
}

#[test]
fn on_wake_dials_from_a_spec_and_reaches_the_client_by_id() {
    let mut sim = sim();
    let cfg = ClientConfig { ping_interval: None, connect_rate: None, ..Default::default() };
    let spec =
        ClientSpec(sim.worker.core.dialer.prepare("ws://10.1.2.3:9001/feed", cfg).expect("spec"));
    sim.handler().spec = Some(spec);
    sim.worker.core.me.ring();
    sim.settle();
    let h = sim.handler().dialed.pop().expect("dialled");
    let mut server = sim.accept_client(&h);
    assert_eq!(h.state(), ClientState::Connected);
    let id = h.id().unwrap();
    // A message from on_wake to the client by its id.
    sim.handler().send_to = Some(id);
    sim.worker.core.me.ring();
    sim.settle();
    sim.read(&mut server);
    assert_eq!(server.messages(), [Message::text("from on_wake")]);
    // An id of another worker, or of a slot nobody holds, finds nothing.
    let other = ConnId { worker: 1, key: id.key };
    let gone = ConnId { worker: 0, key: crate::slab::Key { slot: 999, gen: 0 } };
    for id in [other, gone] {
        sim.handler().send_to = Some(id);
        sim.worker.core.me.ring();
        sim.settle();
    }
    assert_eq!(sim.handler().found, [true, false, false]);
    assert_eq!(id.index(), id.key.slot as usize);
}
