//! Per-connection limits and behaviour, and the epoch the connections of one
//! configuration count time from.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Configuration of a [`crate::Connection`]. Every limit stops a specific abuse by the
/// peer; the defaults suit a server facing the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of a single frame, in bytes. Default 16 MiB.
    ///
    /// Stops a peer from making us buffer an arbitrarily large frame. Exceeding it fails
    /// the connection with 1009. Payload memory is only taken as bytes arrive, so a peer
    /// that declares a large frame and then trickles it holds only what it sent.
    pub max_frame_size: usize,
    /// Largest message (all fragments together), in bytes. Default 64 MiB.
    ///
    /// Stops a peer from growing a fragmented message without end. Exceeding it fails
    /// the connection with 1009 (RFC 6455 §7.4.1).
    pub max_message_size: usize,
    /// Answer every ping with a pong automatically (RFC 6455 §5.5.2). Default `true`.
    ///
    /// Every ping gets its pong, but at most 32 pongs wait unflushed: beyond that the
    /// oldest are dropped (§5.5.3 allows answering only the latest), so a ping flood
    /// cannot grow the send queue.
    pub auto_pong: bool,
    /// Split outgoing messages larger than this into fragments of this size. Default
    /// `None` (one frame per message).
    pub fragment_size: Option<usize>,
    /// How long to wait for the peer's close frame after sending ours. Default 5 s.
    ///
    /// Stops a peer from holding a closing connection open forever.
    pub close_timeout: Duration,
    /// Send a ping after this long without any inbound traffic. Default `None` (off).
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, fail the connection if nothing at all arrives within this
    /// long. Default 10 s. Any inbound bytes count as life, not only the pong.
    pub pong_timeout: Duration,
    /// Start the close handshake (1001) after this long without inbound traffic.
    /// Default `None` (off).
    pub idle_timeout: Option<Duration>,
    /// permessage-deflate (RFC 7692): how this end compresses, once a connection's
    /// handshake agreed it ([`crate::Connection::set_deflate`]). Default `None`: the
    /// engine neither offers nor accepts it.
    pub deflate: Option<crate::DeflateConfig>,
    /// The instant the timers and ping send times of this configuration's connections
    /// count from (see `connection/timer.rs`). Not a setting: it takes no part in
    /// equality, and it is fixed by the first `now` a connection of this configuration
    /// is given.
    pub(crate) epoch: Epoch,
}

/// The instant that offsets count from, fixed once from the first instant a caller
/// passes, never from a clock (see `connection/timer.rs` for why it lives here).
#[derive(Clone, Default)]
pub(crate) struct Epoch(OnceLock<Instant>);

impl Epoch {
    /// How far before the first instant seen the epoch is put, longest first: 2^32 s
    /// (136 years) keeps every offset of the next 156 years below 2^63 ns, and instants a
    /// caller took earlier (another connection's virtual `t0`) still map exactly. The
    /// shorter steps serve platforms whose `Instant` cannot go back that far (it counts
    /// from boot).
    const MARGINS: [u64; 3] = [1 << 32, 86_400, 1];

    /// The epoch, fixed from `now` if no connection of this configuration had an instant
    /// before.
    pub(crate) fn fix(&self, now: Instant) -> Instant {
        *self.0.get_or_init(|| {
            Self::MARGINS
                .into_iter()
                .find_map(|s| now.checked_sub(Duration::from_secs(s)))
                .unwrap_or(now)
        })
    }

    /// The epoch, if fixed.
    pub(crate) fn get(&self) -> Option<Instant> {
        self.0.get().copied()
    }
}

/// Not part of the configuration's value: two configurations with the same settings are
/// equal whichever instants their connections have seen.
impl PartialEq for Epoch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Epoch {}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "fixed" } else { "unfixed" })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            fragment_size: None,
            close_timeout: Duration::from_secs(5),
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            deflate: None,
            epoch: Epoch::default(),
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, v: usize) -> Self {
        self.max_frame_size = v;
        self
    }
    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, v: usize) -> Self {
        self.max_message_size = v;
        self
    }
    /// Sets [`Config::auto_pong`].
    pub fn auto_pong(mut self, v: bool) -> Self {
        self.auto_pong = v;
        self
    }
    /// Sets [`Config::fragment_size`]; `Some(0)` is treated as `None`.
    pub fn fragment_size(mut self, v: Option<usize>) -> Self {
        self.fragment_size = v.filter(|n| *n > 0);
        self
    }
    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, v: Duration) -> Self {
        self.close_timeout = v;
        self
    }
    /// Sets [`Config::ping_interval`].
    pub fn ping_interval(mut self, v: Option<Duration>) -> Self {
        self.ping_interval = v;
        self
    }
    /// Sets [`Config::pong_timeout`].
    pub fn pong_timeout(mut self, v: Duration) -> Self {
        self.pong_timeout = v;
        self
    }
    /// Sets [`Config::deflate`].
    pub fn deflate(mut self, v: Option<crate::DeflateConfig>) -> Self {
        self.deflate = v;
        self
    }
    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, v: Option<Duration>) -> Self {
        self.idle_timeout = v;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_fixed_once_before_the_first_instant_and_is_no_setting() {
        let t = Instant::now() + Duration::from_secs(1000 * 86_400);
        let c = Config::default();
        assert_eq!(c.epoch.get(), None);
        let e = c.epoch.fix(t);
        assert!(e < t);
        assert_eq!(c.epoch.fix(t + Duration::from_secs(5)), e, "fixed once");
        assert_eq!(c.epoch.fix(t - Duration::from_secs(5)), e, "also for earlier instants");
        assert_eq!(c, Config::default(), "the epoch takes no part in equality");
        assert_eq!(c.clone().epoch.get(), Some(e));
    }
}
