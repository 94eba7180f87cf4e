//! Client connections under virtual time: the test dials through the worker's own
//! dialer, decides how the fake connects end, and plays the server with a real
//! server-side protocol core.

use std::time::Instant;

use ringwire_frame::handshake::{parse_request, HandshakeLimits};
use ringwire_frame::{Config as FrameConfig, Connection};
use rustix::io::Errno;

use super::{Peer, Sim};
use crate::client::{ClientConfig, ClientHandle, HealthSnapshot};
use crate::handler::Handler;

impl<H: Handler> Sim<H> {
    /// Dials `url` (an IP address) as a handler's `Ctx::connect` would, and lets the
    /// worker take the dial.
    pub(in crate::worker) fn dial(&mut self, url: &str, config: ClientConfig) -> ClientHandle {
        let core = &self.worker.core;
        let h = core.dialer.clone().connect_literal(&core.all.clone(), url, config).expect("dial");
        self.settle();
        h
    }

    /// From now on clients' connects fail with `e` (`None`: they succeed).
    pub(in crate::worker) fn set_connect_error(&mut self, e: Option<Errno>) {
        self.net.borrow_mut().connect_error = e;
    }

    /// From now on clients' connects never complete (`false`: they do).
    pub(in crate::worker) fn set_connects_hang(&mut self, hang: bool) {
        self.net.borrow_mut().connects_hang = hang;
    }

    /// Client `h`'s health figures.
    pub(in crate::worker) fn health(&self, h: &ClientHandle) -> HealthSnapshot {
        let c = &self.worker.core.clients[&h.id().expect("taken up").key.slot];
        c.health.snapshot(&c.spec.config.health)
    }

    /// The virtual instants of every connect the worker started.
    pub(in crate::worker) fn connects(&self) -> Vec<Instant> {
        self.net.borrow().connects.clone()
    }

    /// Plays the server of client `h`'s current socket: reads its upgrade request,
    /// answers 101, and returns the server side for the test to drive.
    pub(in crate::worker) fn accept_client(&mut self, h: &ClientHandle) -> Peer {
        self.accept_client_split(h, usize::MAX)
    }

    /// As [`Sim::accept_client`], the 101 arriving in two reads, cut after `cut` bytes.
    pub(in crate::worker) fn accept_client_split(&mut self, h: &ClientHandle, cut: usize) -> Peer {
        let key = h.id().expect("the worker took the dial").key;
        self.settle();
        let written = self.net.borrow().sockets[&key].written.clone();
        let (req, used) = parse_request(&written, &HandshakeLimits::default())
            .expect("a valid upgrade request")
            .expect("a whole upgrade request");
        let mut resp = Vec::new();
        req.accept(None, &[], &mut resp).expect("the 101");
        let second = resp.split_off(cut.min(resp.len()));
        for part in [resp, second] {
            if !part.is_empty() {
                self.push(key, part);
                self.settle();
            }
        }
        let now = self.now();
        Peer {
            key,
            ws: Connection::server(FrameConfig::default(), now),
            read: used,
            upgraded: true,
            events: Vec::new(),
        }
    }
}
