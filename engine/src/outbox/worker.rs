//! A worker's outbox: its own log in `dir/w<worker>`, the durable sends of its client
//! connections, their resend after a reconnect (paced by the connection's send queue),
//! acknowledgements and dead letters.

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ringwire_frame::Message;

use super::{wire, Accepted, DurableError, Outbox, OutboxError, OutboxSettings, Stored};
use crate::client::ClientState;
use crate::conn::Outgoing;
use crate::handle::{Command, WorkerShared};
use crate::handler::{Handler, WorkerCtx};
use crate::shard::{Core, Op};
use crate::slab::Key;
use crate::stats::WorkerStats;

/// Bytes of stored messages queued on a connection per step of a resend: the rest
/// follows as the connection drains, so a large backlog never overruns the send limit.
const RESEND_STEP: usize = 256 * 1024;

/// The outbox of one worker.
pub(crate) struct WorkerOutbox {
    pub(crate) log: Outbox,
    /// Clients part-way through resending their stream: the position to go on from.
    resends: crate::hash::IntMap<u32, (u64, u64)>,
    /// The sync thread's queue (started with the first sync).
    syncer: Option<Sender<SyncJob>>,
    /// A sync is running.
    syncing: bool,
    /// The streams this worker is the home of that have a connection (server side).
    pub(crate) homes: super::streams::Homes,
}

/// Files to `fdatasync` in order; then everything before `upto` is durable.
struct SyncJob {
    files: Vec<std::fs::File>,
    upto: u64,
}

/// The sync thread: runs the jobs in order and tells the worker through its command
/// queue. It ends with the worker (its queue's sender goes with the outbox).
fn spawn_syncer(name: String, me: Arc<WorkerShared>) -> std::io::Result<Sender<SyncJob>> {
    let (tx, rx) = channel::<SyncJob>();
    std::thread::Builder::new().name(name).spawn(move || {
        for job in rx {
            let error = job.files.iter().find_map(|f| f.sync_data().err()).map(|e| e.to_string());
            let mut cmd = Command::OutboxSynced { upto: job.upto, error };
            // A full command queue empties each loop turn; a second without room means
            // the worker is gone (its outbox, which syncs itself as it goes, with it).
            let mut tries = 0;
            loop {
                match me.push(cmd) {
                    Ok(()) => break,
                    Err(_) if tries >= 1000 => return,
                    Err(back) => {
                        tries += 1;
                        cmd = back;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        }
    })?;
    Ok(tx)
}

impl Drop for WorkerOutbox {
    /// The worker is ending: what it appended is synced before it goes (the promise of
    /// `Always` and `Batch` is kept through a shutdown, not only by the sync thread).
    fn drop(&mut self) {
        if let Err(e) = self.log.sync() {
            tracing::error!(error = %e, "outbox: the last sync failed");
        }
    }
}

impl WorkerOutbox {
    /// Opens (recovering) worker `worker`'s log under `settings.dir`.
    pub(crate) fn open(settings: &OutboxSettings, worker: u16) -> Result<Self, OutboxError> {
        let mut config = settings.config.clone();
        config.worker = worker;
        let log = Outbox::open(settings.dir.join(format!("w{worker}")), config)?;
        Ok(Self {
            log,
            resends: crate::hash::IntMap::default(),
            syncer: None,
            syncing: false,
            homes: Default::default(),
        })
    }

    /// The message a stored record is sent as (text if it was text and still is UTF-8,
    /// which its CRC guarantees).
    pub(crate) fn message(m: Stored) -> Message {
        if m.text {
            match String::from_utf8(m.payload) {
                Ok(s) => return Message::text(s),
                Err(e) => return Message::binary(Bytes::from(e.into_bytes())),
            }
        }
        Message::binary(Bytes::from(m.payload))
    }
}

impl Core {
    fn outbox_stream(&self, key: Key) -> Option<u64> {
        self.clients.get(&key.slot)?.spec.config.outbox_stream
    }

    /// `Ctx::send_durable`: stores the message in the outbox under the client's stream
    /// and, if the client is connected, sends it now. Returns whether it is durable.
    /// `id`: the application's (checked to grow), or `None` for the outbox's next.
    pub(crate) fn send_durable(
        &mut self,
        key: Key,
        id: Option<u128>,
        msg: Message,
    ) -> Result<Accepted, DurableError> {
        if self.outbox.is_none() {
            return Err(DurableError::NoOutbox);
        }
        let stream = self.outbox_stream(key).ok_or(DurableError::NoStream)?;
        let connected =
            self.clients.get(&key.slot).is_some_and(|c| c.life.state() == ClientState::Connected);
        let resending = self.outbox.as_ref().is_some_and(|o| o.resends.contains_key(&key.slot));
        if connected && !resending {
            if let Some(c) = self.conns.get_mut(key) {
                if c.queued_bytes() + msg.len() > self.limits.max_queued {
                    // `on_writable` says when it has drained enough to try again.
                    c.set_over_limit(true);
                    return Err(DurableError::Backpressure);
                }
            }
        }
        let ob = self.outbox.as_mut().ok_or(DurableError::NoOutbox)?;
        // Behind a resend in progress it waits its turn there (order per stream).
        let now = connected && !resending;
        let (id, position, durable) =
            ob.log.append_new(stream, id, msg.is_text(), msg.as_bytes(), now)?;
        if now {
            let out = self.durable_out(key, id, msg);
            let _ = self.enqueue(key, out);
        }
        Ok(Accepted { id, position, durable })
    }

    /// Starts a sync if the policy wants one and none is running: an operation for the
    /// driver (on the worker's ring under io_uring, else on the worker's sync thread).
    /// Called once per loop turn.
    pub(crate) fn outbox_tick(&mut self) {
        let now = self.now;
        let Some(ob) = self.outbox.as_mut() else { return };
        if ob.syncing || !ob.log.sync_due(now) {
            return;
        }
        match ob.log.begin_sync() {
            Ok(Some((files, upto))) => {
                ob.syncing = true;
                self.ops.push(Op::Sync(upto, files));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(worker = self.id, error = %e, "outbox sync cannot start"),
        }
    }

    /// Runs a sync the driver cannot run (epoll) on the worker's sync thread, started
    /// with the first one.
    pub(crate) fn sync_on_thread(&mut self, upto: u64, files: Vec<std::fs::File>) {
        let id = self.id;
        let Some(ob) = self.outbox.as_mut() else { return };
        let job = SyncJob { files, upto };
        if ob.syncer.is_none() {
            // The worker's name with `s` after it: `ringwire-ws0` for `ringwire-w0`.
            let name = format!("{}s{id}", self.config.thread_name);
            match spawn_syncer(name, self.me.clone()) {
                Ok(tx) => ob.syncer = Some(tx),
                Err(e) => {
                    ob.syncing = false;
                    ob.log.finish_sync(upto, Err(format!("cannot start the sync thread: {e}")));
                    return;
                }
            }
        }
        if ob.syncer.as_ref().is_none_or(|tx| tx.send(job).is_err()) {
            ob.syncing = false;
            ob.log.finish_sync(upto, Err("the sync thread is gone".into()));
        }
    }

    /// When the next sync is due if nothing more happens (for the loop's wait).
    pub(crate) fn outbox_deadline(&self) -> Option<Instant> {
        let ob = self.outbox.as_ref()?;
        if ob.syncing {
            return None;
        }
        ob.log.sync_deadline()
    }

    /// The sync thread finished a sync: the records before `upto` are durable (or the
    /// outbox failed); the handler hears of it.
    pub(crate) fn outbox_synced<H: Handler>(
        &mut self,
        handler: &mut H,
        upto: u64,
        error: Option<String>,
    ) {
        let Some(ob) = self.outbox.as_mut() else { return };
        ob.syncing = false;
        if let Some(e) = &error {
            tracing::error!(worker = self.id, error = %e, "outbox sync failed; it accepts nothing more");
        }
        ob.log.finish_sync(upto, error.map_or(Ok(()), Err));
        let durable = ob.log.durable_position();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.on_durable(&mut WorkerCtx::new(self), durable)
        }));
        if r.is_err() {
            WorkerStats::add(&self.stats.handler_panics, 1);
        }
        self.outbox_tick();
    }

    /// `Ctx::new_durable_id`: an id for [`Core::send_durable`] with the application's id.
    pub(crate) fn new_durable_id(&mut self) -> Result<u128, DurableError> {
        Ok(self.outbox.as_mut().ok_or(DurableError::NoOutbox)?.log.next_id())
    }

    /// `Ctx::ack_durable`: the peer acknowledged `id`.
    pub(crate) fn ack_durable(&mut self, id: u128) -> bool {
        self.outbox.as_mut().is_some_and(|o| o.log.ack(id))
    }

    /// Whether some client is part-way through a resend (checked after every send).
    pub(crate) fn resending(&self) -> bool {
        self.outbox.as_ref().is_some_and(|o| !o.resends.is_empty())
    }

    /// Client `key` (with stream `stream`) just connected: its unacknowledged messages
    /// go out again, in order, before anything new.
    pub(crate) fn start_resend(&mut self, key: Key, stream: u64) {
        let Some(ob) = self.outbox.as_mut() else { return };
        ob.resends.insert(key.slot, (stream, 0));
        self.continue_resend(key);
    }

    /// Sends the next step of client `key`'s resend, if one is in progress and its send
    /// queue has room. Called when it starts and after each of the connection's sends.
    pub(crate) fn continue_resend(&mut self, key: Key) {
        let connected =
            self.clients.get(&key.slot).is_some_and(|c| c.life.state() == ClientState::Connected);
        let queued = self.conns.get(key).map_or(usize::MAX, |c| c.queued_bytes());
        let Some(ob) = self.outbox.as_mut() else { return };
        let Some(&(stream, from)) = ob.resends.get(&key.slot) else { return };
        if !connected {
            ob.resends.remove(&key.slot);
            return;
        }
        if queued > RESEND_STEP {
            return; // the next completed send brings us back
        }
        let batch = ob.log.unacked_from(stream, from, RESEND_STEP);
        let Some(&(last, _)) = batch.last() else {
            // Done: what is sent from now on goes straight out.
            ob.resends.remove(&key.slot);
            return;
        };
        ob.resends.insert(key.slot, (stream, last + 1));
        let mut out = Vec::with_capacity(batch.len());
        for (_, m) in batch {
            match ob.log.attempted(m.id) {
                Some((_, false)) => out.push((m.id, WorkerOutbox::message(m))),
                Some((_, true)) => WorkerStats::add(&self.stats.outbox_dead_letters, 1),
                None => {}
            }
        }
        WorkerStats::add(&self.stats.outbox_resent, out.len() as u64);
        for (id, msg) in out {
            let out = self.durable_out(key, id, msg);
            if self.enqueue(key, out).is_err() {
                break; // closed (or over its limit): the next connect resends
            }
        }
    }

    /// How durable message `id` goes out on `key`: tagged with its id to a peer that
    /// acknowledges on the wire, as it is to any other.
    fn durable_out(&self, key: Key, id: u128, msg: Message) -> Outgoing {
        if self.conns.get(key).is_some_and(|c| c.acks()) {
            Outgoing::Durable(Box::new((id, msg)))
        } else {
            Outgoing::Msg(msg)
        }
    }

    /// A Pong on client `key`, which acknowledges on the wire: if it is an
    /// acknowledgement, the stream's messages up to its id leave the outbox. Returns the
    /// id and how many were acknowledged, `None` if it is not one.
    pub(crate) fn wire_ack(&mut self, key: Key, payload: &[u8]) -> Option<(u128, usize)> {
        let upto = wire::parse_tag(wire::TAG_ACK, payload)?;
        let stream = self.outbox_stream(key);
        let n = match (stream, self.outbox.as_mut()) {
            (Some(stream), Some(ob)) => ob.log.ack_upto(stream, upto),
            _ => 0, // a client without an outbox: nothing to acknowledge
        };
        WorkerStats::add(&self.stats.outbox_acked, n as u64);
        Some((upto, n))
    }
}
