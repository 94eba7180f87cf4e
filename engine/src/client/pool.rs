//! [`Pool`]: N client connections to one target, spread over the workers, and a send
//! that goes to a connected member. No lock anywhere: the members are fixed slots, and
//! a slot whose client ended for good is re-dialled in place.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ringwire_frame::{CloseCode, Message};

use super::config::{ClientConfig, ConnectError};
use super::dialer::Dialer;
use super::handle::ClientHandle;
use super::handle::Spec;
use super::lifecycle::ClientState;
use crate::handle::{SendError, WorkerShared};

/// How [`Pool::send`] picks the member a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// The next connected member in turn. Default.
    #[default]
    RoundRobin,
    /// The connected member with the fewest bytes sent and not yet written to its
    /// socket ([`ClientHandle::queued_bytes`]); ties go round robin. A member whose
    /// server reads slowly gets less until it catches up.
    LeastQueued,
}

/// N connections to one `ws://` target, for callers that want many connections to one
/// upstream (more throughput than one TCP stream, or shelter from one slow stream).
///
/// Each member is a client like any other ([`crate::Server::connect`]): it reconnects
/// by itself with backoff, and the handler's callbacks run for it on its worker. The
/// pool spreads the members over the workers (round robin), sends each message to the
/// next member that is connected (round robin), and dials a member again, under the
/// same handle, when it ended for good (a permanent failure, or it gave up); only
/// [`Pool::close`] ends the members for good.
pub struct Pool {
    spec: Arc<Spec>,
    members: Box<[ClientHandle]>,
    next: AtomicUsize,
    closed: AtomicBool,
    dialer: Arc<Dialer>,
    workers: Arc<[Arc<WorkerShared>]>,
    pick: Pick,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.spec.target.authority)
            .field("size", &self.members.len())
            .field("up", &self.up())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(
        dialer: Arc<Dialer>,
        workers: Arc<[Arc<WorkerShared>]>,
        url: &str,
        size: usize,
        config: ClientConfig,
    ) -> Result<Self, ConnectError> {
        if size == 0 {
            return Err(ConnectError::Config("a pool needs at least one member".into()));
        }
        let spec = dialer.prepare(url, config)?;
        let members = (0..size)
            .map(|_| dialer.dial(&workers, &spec, None, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            spec,
            members: members.into_boxed_slice(),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            dialer,
            workers,
            pick: Pick::RoundRobin,
        })
    }

    /// The pool, picking members by `pick` from now on.
    pub fn with_pick(mut self, pick: Pick) -> Self {
        self.pick = pick;
        self
    }

    /// Members connected now.
    pub fn up(&self) -> usize {
        self.members.iter().filter(|m| m.state() == ClientState::Connected).count()
    }

    /// Members in all, connected or not.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The members' handles.
    pub fn members(&self) -> &[ClientHandle] {
        &self.members
    }

    /// Sends `msg` on a connected member: the next one in turn, or the least queued
    /// ([`Pool::with_pick`]); a member lost between the check and the send is skipped. Members that ended for good are dialled
    /// again first. [`SendError::NotConnected`] when no member is connected now.
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        self.redial_ended();
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        if self.pick == Pick::LeastQueued {
            let least = (0..n)
                .map(|i| &self.members[(start + i) % n])
                .filter(|m| m.state() == ClientState::Connected)
                .min_by_key(|m| m.queued_bytes());
            if let Some(m) = least {
                match m.send(msg.clone()) {
                    Err(SendError::NotConnected | SendError::Closed) => {} // round robin below
                    other => return other,
                }
            }
        }
        for i in 0..n {
            let m = &self.members[(start + i) % n];
            if m.state() != ClientState::Connected {
                continue;
            }
            match m.send(msg.clone()) {
                Err(SendError::NotConnected | SendError::Closed) => continue,
                other => return other,
            }
        }
        Err(SendError::NotConnected)
    }

    /// Sends a text message (see [`Pool::send`]).
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(Message::text(text.to_owned()))
    }

    /// Closes every member for good (the close handshake where connected).
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.closed.store(true, Ordering::SeqCst);
        for m in self.members.iter() {
            let _ = m.close(code, reason);
        }
    }

    /// Dials again, under the same handle, each member that ended for good; the
    /// handle's state moves from `Closed` back to `Disconnected` for exactly one caller.
    fn redial_ended(&self) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        for m in self.members.iter() {
            if m.state() == ClientState::Closed && m.shared.reopen() {
                let again = self.dialer.dial(&self.workers, &self.spec, Some(m), None);
                if again.is_err() {
                    // The worker's queue is full: leave it ended; the next send tries.
                    m.shared.set_state(ClientState::Closed);
                }
            }
        }
    }
}
