//! `ringwire serve`: an echo server or a pub/sub gateway, for benchmarks and trials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ringwire::frame::Config as FrameConfig;
use ringwire::{BackendChoice, Backpressure, Echo, Engine, EngineBuilder, EngineConfig};

use crate::gateway::PubSub;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Echo every message.
    Echo,
    /// Pub/sub gateway (`SUB <topic>`, `PUB <topic> <text>`, binary publish).
    Pubsub,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Policy {
    Close,
    DropNewest,
    DropOldest,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (repeat for several).
    #[arg(long, short, default_value = "127.0.0.1:9001")]
    pub listen: Vec<SocketAddr>,
    /// Server mode.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Worker threads (default: one per allowed CPU).
    #[arg(long, short)]
    pub workers: Option<usize>,
    /// Do not pin workers to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Largest message in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_message: usize,
    /// Most bytes queued per connection.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_queued: usize,
    /// Slow-consumer policy.
    #[arg(long, value_enum, default_value_t = Policy::Close)]
    pub backpressure: Policy,
    /// Heartbeat ping interval in seconds (0: off).
    #[arg(long, default_value_t = 0)]
    pub ping_secs: u64,
    /// Handshake timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub handshake_secs: u64,
    /// io_uring submission queue entries per worker's first ring (power of two).
    #[arg(long)]
    pub ring_entries: Option<u32>,
    /// io_uring direct descriptors: fixed-file slots per ring (default: as many as one
    /// table may hold); a worker opens another ring when one is full.
    #[arg(long)]
    pub fixed_files_per_ring: Option<u32>,
    /// io_uring: spin up to this many microseconds watching for work before sleeping
    /// (0: sleep at once). Lower latency for more CPU.
    #[arg(long, default_value_t = 0)]
    pub busy_poll_us: u64,
    /// Provided receive buffers per ring (power of two).
    #[arg(long, default_value_t = EngineConfig::default().recv_buffers)]
    pub recv_buffers: u32,
    /// Size of each receive buffer.
    #[arg(long, default_value_t = EngineConfig::default().recv_buffer_size)]
    pub recv_buffer_size: u32,
    /// With io_uring, use plain file descriptors instead of direct descriptors.
    #[arg(long)]
    pub no_direct: bool,
    /// Most connections per worker.
    #[arg(long, default_value_t = 100_000)]
    pub max_connections: usize,
    /// Stop after this many seconds (0: run until Ctrl-C / SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
}

impl ServeArgs {
    pub fn builder(&self) -> EngineBuilder {
        let mut frame = FrameConfig::default()
            .max_message_size(self.max_message)
            .max_frame_size(self.max_message);
        if self.ping_secs > 0 {
            frame = frame.ping_interval(Some(Duration::from_secs(self.ping_secs)));
        }
        let mut b = Engine::builder()
            .pin_cpus(!self.no_pin)
            .backend(match self.backend {
                Backend::Auto => BackendChoice::Auto,
                Backend::IoUring => BackendChoice::IoUring,
                Backend::Epoll => BackendChoice::Epoll,
            })
            .frame(frame)
            .max_queued_bytes(self.max_queued)
            .low_watermark(self.max_queued / 4)
            .backpressure(match self.backpressure {
                Policy::Close => Backpressure::Close,
                Policy::DropNewest => Backpressure::DropNewest,
                Policy::DropOldest => Backpressure::DropOldest,
            })
            .handshake_timeout(Duration::from_secs(self.handshake_secs))
            .recv_buffers(self.recv_buffers)
            .recv_buffer_size(self.recv_buffer_size)
            .max_connections_per_worker(self.max_connections)
            .direct_descriptors(!self.no_direct);
        if let Some(w) = self.workers {
            b = b.workers(w);
        }
        if let Some(n) = self.ring_entries {
            b = b.ring_entries(n);
        }
        if self.fixed_files_per_ring.is_some() {
            b = b.fixed_files_per_ring(self.fixed_files_per_ring);
        }
        if self.busy_poll_us > 0 {
            b = b.busy_poll(Some(Duration::from_micros(self.busy_poll_us)));
        }
        for a in &self.listen {
            b = b.listen(*a);
        }
        b
    }
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let b = args.builder();
    let server = match args.mode {
        Mode::Echo => b.start(|_| Echo),
        Mode::Pubsub => b.start(|_| PubSub),
    }
    .map_err(|e| e.to_string())?;
    let info = server.backend();
    println!(
        "ringwire serving {:?} on {:?}: {} workers, backend {} [{}]{}",
        args.mode,
        server.local_addrs(),
        server.workers(),
        info.name,
        info.features.join(", "),
        info.fallback_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
    );
    println!("pid {}", std::process::id());
    // Ctrl-C and SIGTERM stop the server gracefully.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let started = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if args.duration > 0 && started.elapsed() >= Duration::from_secs(args.duration) {
            break;
        }
    }
    let stats = server.stats();
    server.shutdown().map_err(|e| e.to_string())?;
    println!(
        "stopped: {} accepted, {} messages in ({} lent without a copy), {} out, {} bytes in, {} \
         out, {} drops",
        stats.accepted,
        stats.messages_in,
        stats.messages_lent,
        stats.messages_out,
        stats.bytes_in,
        stats.bytes_out,
        stats.drops
    );
    Ok(())
}
