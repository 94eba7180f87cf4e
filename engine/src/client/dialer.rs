//! Starting a client: the URL resolved on the caller's thread, a worker chosen, the
//! per-target rate cap found, the dial queued to the worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock, PoisonError};
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
    /// The thread that looks host names up again after losses (`refresh`), started on
    /// first use; it ends when the engine (and this sender) goes.
    resolver: OnceLock<Option<Sender<Arc<Spec>>>>,
}

/// Most one lookup of a target's name a second, however many of its clients are lost.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Dialer {
    pub(crate) fn new(epoch: Instant, frame: FrameConfig) -> Self {
        Self {
            limiters: Limiters::default(),
            next: AtomicUsize::new(0),
            epoch,
            frame,
            resolver: OnceLock::new(),
        }
    }

    /// What every client of `target` with `config` shares: made once for a batch of
    /// clients, so that a thousand clients to one target hold one copy.
    pub(crate) fn spec(&self, target: Target, mut config: ClientConfig) -> Arc<Spec> {
        if target.tls.is_some() && config.tls.is_none() {
            config.tls = Some(crate::tls::TlsClientConfig::system());
        }
        let limiter =
            config.connect_rate.map(|r| self.limiters.get(&target.authority, r, self.epoch));
        let mut frame = self.frame.clone();
        frame.ping_interval = config.ping_interval;
        frame.pong_timeout = config.pong_timeout;
        frame.idle_timeout = config.idle_timeout;
        let addrs = std::sync::Mutex::new(Arc::from(target.addrs.clone()));
        let refresh = std::sync::Mutex::new((false, None));
        Arc::new(Spec { target, config, limiter, frame: Arc::new(frame), addrs, refresh })
    }

    /// Looks the name of `spec`'s target up again, on the resolver thread, after a
    /// client lost its connection: the next attempts go to the addresses the name has
    /// now (a server moved, a failover). At most one lookup per target at a time and one
    /// a second; a target given as an address is never looked up; a failed lookup
    /// keeps the addresses known.
    pub(crate) fn refresh(&self, spec: &Arc<Spec>, now: Instant) {
        if spec.target.name.is_none() {
            return;
        }
        {
            let mut r = spec.refresh.lock().unwrap_or_else(PoisonError::into_inner);
            if r.0 || r.1.is_some_and(|at| now.saturating_duration_since(at) < REFRESH_EVERY) {
                return;
            }
            *r = (true, Some(now));
        }
        let tx = self.resolver.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Spec>>();
            let spawned =
                std::thread::Builder::new().name("ringwire-resolver".into()).spawn(move || {
                    for spec in rx {
                        if let Some((host, port)) = &spec.target.name {
                            if let Ok(fresh) = target::lookup(host, *port) {
                                *spec.addrs.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Arc::from(fresh);
                            }
                        }
                        spec.refresh.lock().unwrap_or_else(PoisonError::into_inner).0 = false;
                    }
                });
            spawned.ok().map(|_| tx)
        });
        let sent = tx.as_ref().is_some_and(|tx| tx.send(spec.clone()).is_ok());
        if !sent {
            spec.refresh.lock().unwrap_or_else(PoisonError::into_inner).0 = false;
        }
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
        let spec = self.prepare(url, config)?;
        (0..n).map(|_| self.dial(workers, &spec, None, None)).collect()
    }

    /// Checks `config`, resolves `url` here (a blocking DNS lookup for a host name) and
    /// makes the spec its clients share.
    pub(crate) fn prepare(
        &self,
        url: &str,
        config: ClientConfig,
    ) -> Result<Arc<Spec>, ConnectError> {
        config.validate()?;
        Ok(self.spec(target::resolve(url)?, config))
    }

    /// Resolves `url` here (a blocking DNS lookup for a host name) and dials it.
    pub(crate) fn connect(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientHandle, ConnectError> {
        self.dial(workers, &self.prepare(url, config)?, None, None)
    }

    /// As [`Dialer::connect`], the client's events going to a stream.
    pub(crate) fn connect_stream(
        &self,
        workers: &[Arc<WorkerShared>],
        url: &str,
        config: ClientConfig,
    ) -> Result<ClientStream, ConnectError> {
        let spec = self.prepare(url, config)?;
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
            (Some(h), _) => usize::from(h.worker.index()),
            (None, Some(i)) if i < workers.len() => i,
            (None, Some(i)) => return Err(ConnectError::NoWorker(i)),
            (None, None) => self.next.fetch_add(1, Ordering::Relaxed) % workers.len(),
        };
        let shared =
            again.map_or_else(|| triomphe::Arc::new(ClientShared::new()), |h| h.shared.clone());
        let dial = Box::new(Dial { spec: spec.clone(), shared: shared.clone(), sink });
        workers[w].push(Command::Connect(dial)).map_err(|_| ConnectError::QueueFull)?;
        Ok(ClientHandle { shared, worker: workers[w].clone() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lost_clients_host_name_is_looked_up_again_off_the_worker() {
        let d = Dialer::new(Instant::now(), FrameConfig::default());
        let spec = d.spec(target::resolve("ws://localhost:9/").unwrap(), ClientConfig::default());
        // Pretend the name used to point elsewhere (TEST-NET-1, never contacted).
        *spec.addrs.lock().unwrap() = Arc::from(vec!["192.0.2.1:9".parse().unwrap()]);
        let now = Instant::now();
        d.refresh(&spec, now);
        let end = Instant::now() + Duration::from_secs(5);
        while !spec.addrs()[0].ip().is_loopback() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(spec.addrs().iter().all(|a| a.ip().is_loopback()), "{:?}", spec.addrs());
        // At most one lookup a second: an immediate second loss asks for none.
        *spec.addrs.lock().unwrap() = Arc::from(vec!["192.0.2.1:9".parse().unwrap()]);
        d.refresh(&spec, now + Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(50));
        assert!(spec.addrs()[0].ip().to_string().starts_with("192.0.2."), "not looked up again");
        // An address target is never looked up.
        let lit = d.spec(target::resolve("ws://127.0.0.1:9/").unwrap(), ClientConfig::default());
        d.refresh(&lit, now);
        assert!(!lit.refresh.lock().unwrap().0);
    }
}
