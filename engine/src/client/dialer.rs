//! Starting a client: the URL resolved on the caller's thread, a worker chosen, the
//! per-target rate cap found, the dial queued to the worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ringwire_frame::Config as FrameConfig;

use super::config::{ClientConfig, ConnectError};
use super::handle::{ClientHandle, ClientShared, Dial, Spec};
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
    /// The engine's protocol limits, which clients share (with their own heartbeat).
    frame: FrameConfig,
}

impl Dialer {
    pub(crate) fn new(epoch: Instant, frame: FrameConfig) -> Self {
        Self { limiters: Limiters::default(), next: AtomicUsize::new(0), epoch, frame }
    }

    /// What every client of `target` with `config` shares: made once for a batch of
    /// clients, so that a thousand clients to one target hold one copy.
    pub(crate) fn spec(&self, target: Target, config: ClientConfig) -> Arc<Spec> {
        let limiter =
            config.connect_rate.map(|r| self.limiters.get(&target.authority, r, self.epoch));
        let mut frame = self.frame.clone();
        frame.ping_interval = config.ping_interval;
        frame.pong_timeout = config.pong_timeout;
        Arc::new(Spec { target, config, limiter, frame: Arc::new(frame) })
    }

    /// Resolves `url` here (a blocking DNS lookup for a host name) and dials it `n`
    /// times, the clients sharing one copy of the target and the configuration.
    pub(crate) fn connect_many(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        n: usize,
        config: ClientConfig,
    ) -> Result<Vec<ClientHandle>, ConnectError> {
        config.validate()?;
        let spec = self.spec(target::resolve(url)?, config);
        (0..n).map(|_| self.dial(workers, &spec, None, None)).collect()
    }

    /// Resolves `url` here (a blocking DNS lookup for a host name) and dials it.
    pub(crate) fn connect(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        config.validate()?;
        let spec = self.spec(target::resolve(url)?, config);
        self.dial(workers, &spec, None, None)
    }

    /// As [`Dialer::connect`], the client's events going to a stream.
    pub(crate) fn connect_stream(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientStream, ConnectError> {
        config.validate()?;
        let spec = self.spec(target::resolve(url)?, config);
        let sink = Arc::new(EventSink::new(STREAM_CAPACITY));
        let h = self.dial(workers, &spec, None, Some(sink.clone()))?;
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
        let spec = self.spec(target::resolve_literal(url)?, config);
        self.dial(workers, &spec, None, None)
    }

    /// Queues the dial of `spec` to a worker: a new client, or, with `again`, a new
    /// client under that (ended) handle, on its worker.
    pub(crate) fn dial(
        &self,
        workers: &[Arc<WorkerShared>],
        spec: &Arc<Spec>,
        again: Option<&ClientHandle>,
        sink: Option<Arc<EventSink>>,
    ) -> Result<ClientHandle, ConnectError> {
        let w = match (again, spec.config.worker) {
            (Some(h), _) => usize::from(h.worker_index),
            (None, Some(i)) if i < workers.len() => i,
            (None, Some(i)) => return Err(ConnectError::NoWorker(i)),
            (None, None) => self.next.fetch_add(1, Ordering::Relaxed) % workers.len(),
        };
        let shared = again.map_or_else(|| Arc::new(ClientShared::new()), |h| h.shared.clone());
        let dial = Box::new(Dial { spec: spec.clone(), shared: shared.clone(), sink });
        workers[w].push(Command::Connect(dial)).map_err(|_| ConnectError::QueueFull)?;
        Ok(ClientHandle { shared, worker: workers[w].clone(), worker_index: w as u16 })
    }
}
