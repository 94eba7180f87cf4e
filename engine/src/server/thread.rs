//! One worker thread's start: its driver (io_uring, or epoll as the fallback), its
//! handler from the factory, its listeners; then the event loop.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Arc;

use super::{BackendInfo, EngineError};
use crate::clock::{Clock, Monotonic};
use crate::config::EngineConfig;
use crate::handle::WorkerShared;
use crate::handler::Handler;
use crate::shard::Core;
use crate::stats::WorkerStats;
use crate::sys::epoll::EpollDriver;
use crate::sys::uring::{RingConfig, UringDriver};
use crate::sys::Driver;
use crate::worker::Worker;

/// The fixed-file table size for direct descriptors, if they are wanted: room for the
/// connection limit plus some refused ones in flight, capped at RLIMIT_NOFILE.
fn direct_table(config: &EngineConfig) -> Option<u32> {
    if !config.direct_descriptors {
        return None;
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::from(u32::MAX));
    let want = match config.fixed_files_per_ring {
        Some(n) => u64::from(n),
        None => config.max_connections_per_worker as u64 + 64,
    };
    Some(want.min(limit).clamp(1, 1 << 20) as u32)
}

/// What one worker thread starts from.
pub(super) struct WorkerSetup {
    pub(super) index: usize,
    pub(super) config: Arc<EngineConfig>,
    pub(super) me: Arc<WorkerShared>,
    pub(super) all: Arc<[Arc<WorkerShared>]>,
    pub(super) wake: Arc<OwnedFd>,
    pub(super) stats: Arc<WorkerStats>,
    pub(super) core_id: Option<core_affinity::CoreId>,
    pub(super) use_uring: bool,
    pub(super) require_uring: bool,
    pub(super) fallback_reason: Option<String>,
    pub(super) listeners: Vec<OwnedFd>,
    pub(super) dialer: Arc<crate::client::Dialer>,
    pub(super) receipts: Option<Arc<crate::outbox::receipts::Receipts>>,
    pub(super) cluster: Option<Arc<crate::cluster::ClusterShared>>,
}

pub(super) type Ready = mpsc::Sender<(usize, Result<BackendInfo, EngineError>)>;

impl WorkerSetup {
    /// The worker thread: sets up its driver and handler, reports to `start`, runs.
    /// Every way out before the report reports an error, a factory's panic included.
    pub(super) fn run<H: Handler, F: Fn(usize) -> H>(
        self,
        factory: &F,
        ready: Ready,
    ) -> Result<(), EngineError> {
        let i = self.index;
        let fail = |ready: Ready, e: EngineError| {
            let _ = ready.send((i, Err(e)));
        };
        if let Some(id) = self.core_id {
            core_affinity::set_for_current(id);
        }
        let handler = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(i))) {
            Ok(h) => h,
            Err(p) => {
                let message = crate::panic::message(&*p).to_owned();
                fail(ready, EngineError::WorkerPanicked { worker: i, message: message.clone() });
                return Err(EngineError::WorkerPanicked { worker: i, message });
            }
        };
        let mut core = Core::new(
            i as u16,
            self.config.clone(),
            self.stats.clone(),
            self.me.clone(),
            self.all.clone(),
            self.dialer.clone(),
            Monotonic.now(),
        );
        core.receipts = self.receipts.clone();
        core.cluster = self.cluster.clone();
        core.topics.cluster = self.cluster.clone();
        if let Some(settings) = &self.config.outbox {
            match crate::outbox::worker::WorkerOutbox::open(settings, i as u16) {
                Ok(ob) => core.outbox = Some(Box::new(ob)),
                Err(e) => {
                    let e = EngineError::Outbox { worker: i, source: e };
                    fail(ready, e);
                    return Ok(());
                }
            }
        }
        let config = &self.config;
        let mut uring_err = None;
        if self.use_uring {
            let direct_table = direct_table(config);
            let rings = RingConfig {
                entries: config.ring_entries,
                recv_buffers: config.recv_buffers as u16,
                recv_buffer_size: config.recv_buffer_size,
                direct_table,
                max_rings: direct_table
                    .map_or(1, |n| (config.max_connections_per_worker + 64).div_ceil(n as usize)),
                max_conns: config.max_connections_per_worker,
                busy_poll: config.busy_poll,
            };
            match UringDriver::new(rings, self.wake.clone()) {
                Ok(d) => return self.serve(d, handler, core, None, ready),
                Err(source) if self.require_uring => {
                    let context = "io_uring setup";
                    fail(ready, EngineError::WorkerSetup { worker: i, context, source });
                    return Ok(());
                }
                Err(e) => uring_err = Some(format!("io_uring setup failed ({e})")),
            }
        }
        let epoll = EpollDriver::new(
            config.epoll_read_size,
            config.max_connections_per_worker,
            self.wake.clone(),
        );
        match epoll {
            Ok(d) => {
                let reason = uring_err.or(self.fallback_reason.clone());
                self.serve(d, handler, core, reason, ready)
            }
            Err(source) => {
                fail(ready, EngineError::WorkerSetup { worker: i, context: "epoll setup", source });
                Ok(())
            }
        }
    }

    fn serve<D: Driver, H: Handler>(
        self,
        mut driver: D,
        handler: H,
        core: Core,
        fallback_reason: Option<String>,
        ready: Ready,
    ) -> Result<(), EngineError> {
        let worker = self.index;
        for l in self.listeners {
            if let Err(source) = driver.add_listener(l) {
                let e = EngineError::WorkerSetup { worker, context: "listen", source };
                let _ = ready.send((worker, Err(e)));
                return Ok(());
            }
        }
        let info = BackendInfo {
            name: driver.name(),
            features: driver.features(),
            fallback_reason,
            recv_pool: driver.recv_pool(),
        };
        core.stats.rings.store(driver.rings() as u64, std::sync::atomic::Ordering::Relaxed);
        // `up` reads 1 from the report on until the loop ends, by return or by panic.
        let _up = Up::new(core.stats.clone());
        let _ = ready.send((worker, Ok(info)));
        // The sender goes now: `start` must see the channel close if a later worker dies.
        drop(ready);
        Worker { driver, handler, core, clock: Monotonic, spares_at: None }
            .run()
            .map_err(|source| EngineError::WorkerFailed { worker, source })
    }
}

/// Holds a worker's `up` gauge at 1 while it lives (the admin listener's readiness).
struct Up(Arc<crate::stats::WorkerStats>);

impl Up {
    fn new(stats: Arc<crate::stats::WorkerStats>) -> Self {
        stats.up.store(1, std::sync::atomic::Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.0.up.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
