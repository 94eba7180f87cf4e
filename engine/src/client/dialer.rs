//! Starting a client: the URL resolved on the caller's thread, a worker chosen, the
//! per-target rate cap found, the dial queued to the worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::config::{ClientConfig, ConnectError};
use super::handle::{ClientHandle, ClientShared, Spec};
use super::limiter::Limiters;
use super::stream::{ClientStream, EventSink, STREAM_CAPACITY};
use super::target::{self, Target};
use crate::handle::{Command, WorkerShared};

/// The engine-wide part of dialling, shared by the `Server` and every worker.
pub(crate) struct Dialer {
    limiters: Limiters,
    /// Round robin over the workers.
    next: AtomicUsize,
    /// The rate caps' time origin.
    epoch: Instant,
}

impl Dialer {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self { limiters: Limiters::default(), next: AtomicUsize::new(0), epoch }
    }

    /// Resolves `url` here (a blocking DNS lookup for a host name) and dials it.
    pub(crate) fn connect(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        config.validate()?;
        let target = target::resolve(url)?;
        self.dial(workers, target, config, None, None)
    }

    /// As [`Dialer::connect`], the client's events going to a stream.
    pub(crate) fn connect_stream(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientStream, ConnectError> {
        config.validate()?;
        let target = target::resolve(url)?;
        let sink = Arc::new(EventSink::new(STREAM_CAPACITY));
        let h = self.dial(workers, target, config, None, Some(sink.clone()))?;
        Ok(ClientStream::new(h, sink))
    }

    /// Dials `url` without a DNS lookup: its host must be an IP address (for a handler,
    /// which must not block its worker).
    pub(crate) fn connect_literal(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        config.validate()?;
        let target = target::resolve_literal(url)?;
        self.dial(workers, target, config, None, None)
    }

    /// Queues the dial of `target` to a worker: a new client, or, with `again`, a new
    /// client under that (ended) handle, on its worker.
    pub(crate) fn dial(
        &self,
        workers: &[Arc<WorkerShared>],
        target: Target,
        config: ClientConfig,
        again: Option<&ClientHandle>,
        sink: Option<Arc<EventSink>>,
    ) -> Result<ClientHandle, ConnectError> {
        let w = match (again, config.worker) {
            (Some(h), _) => usize::from(h.worker_index),
            (None, Some(i)) if i < workers.len() => i,
            (None, Some(i)) => return Err(ConnectError::NoWorker(i)),
            (None, None) => self.next.fetch_add(1, Ordering::Relaxed) % workers.len(),
        };
        let limiter =
            config.connect_rate.map(|r| self.limiters.get(&target.authority, r, self.epoch));
        let shared = again.map_or_else(|| Arc::new(ClientShared::new()), |h| h.shared.clone());
        let spec = Box::new(Spec { target, config, limiter, shared: shared.clone(), sink });
        workers[w].push(Command::Connect(spec)).map_err(|_| ConnectError::QueueFull)?;
        Ok(ClientHandle { shared, worker: workers[w].clone(), worker_index: w as u16 })
    }
}
