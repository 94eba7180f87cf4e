//! Per-worker counters, written by the worker alone and read by anyone without locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Close codes counted individually; the rest land in `other`.
const TRACKED_CODES: [u16; 11] = [1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011];

/// Handshake answers counted by status; any other status lands in `other`.
const TRACKED_STATUSES: [u16; 11] = [400, 401, 403, 404, 405, 426, 429, 431, 500, 503, 505];

/// Upper bounds of the heartbeat RTT histogram's buckets in microseconds (the last
/// bucket, past 5 s, is open).
pub const RTT_BUCKETS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Why WebSocket connections ended, counted ([`StatsSnapshot::closes_by_cause`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseCauses {
    /// The peer started the close handshake.
    pub peer: u64,
    /// This end started it (the application, the idle timeout, a shutdown).
    pub local: u64,
    /// The peer broke the protocol or a limit (closed with 1002, 1007, 1009...).
    pub protocol_error: u64,
    /// The peer did not answer our close in time.
    pub close_timeout: u64,
    /// A heartbeat ping went unanswered (a missed pong).
    pub heartbeat_timeout: u64,
    /// The TCP connection ended before the close handshake did.
    pub transport_closed: u64,
}

/// A histogram of heartbeat round trips ([`StatsSnapshot::rtt`]): counts per bucket of
/// [`RTT_BUCKETS_US`] (and one past the last), and the sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RttHistogram {
    /// Samples per bucket: `buckets[i]` counts RTTs at most `RTT_BUCKETS_US[i]` and
    /// above the bound before; the last counts the rest.
    pub buckets: [u64; RTT_BUCKETS_US.len() + 1],
    /// The sum of all samples in microseconds.
    pub sum_us: u64,
}

impl RttHistogram {
    /// Samples in all buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Counters of one worker. Only that worker writes them (relaxed atomics, no contention).
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) connections: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) slow_closes: AtomicU64,
    pub(crate) loop_turns: AtomicU64,
    pub(crate) rings: AtomicU64,
    pub(crate) messages_lent: AtomicU64,
    pub(crate) busy_poll_hits: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) subscribes_refused: AtomicU64,
    pub(crate) publishes_dropped: AtomicU64,
    pub(crate) clients: AtomicU64,
    pub(crate) clients_connected: AtomicU64,
    pub(crate) client_losses: AtomicU64,
    pub(crate) clients_degraded: AtomicU64,
    pub(crate) outbox_resent: AtomicU64,
    pub(crate) outbox_dead_letters: AtomicU64,
    pub(crate) outbox_refused: AtomicU64,
    pub(crate) outbox_acked: AtomicU64,
    pub(crate) receipts_delivered: AtomicU64,
    pub(crate) receipts_duplicates: AtomicU64,
    pub(crate) receipts_refused: AtomicU64,
    pub(crate) closes: [AtomicU64; TRACKED_CODES.len() + 1],
    /// `CloseCauses` in field order.
    pub(crate) close_causes: [AtomicU64; 6],
    /// Failed upgrades answered with each of `TRACKED_STATUSES`, then any other status.
    pub(crate) handshake_statuses: [AtomicU64; TRACKED_STATUSES.len() + 1],
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) handshake_peer_gone: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_handshakes_post_quantum: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) tls_truncations: AtomicU64,
    pub(crate) rtt: [AtomicU64; RTT_BUCKETS_US.len() + 1],
    pub(crate) rtt_sum_us: AtomicU64,
    /// 1 while the worker's loop runs.
    pub(crate) up: AtomicU64,
    pub(crate) timers: AtomicU64,
    pub(crate) submissions: AtomicU64,
    pub(crate) completions: AtomicU64,
    pub(crate) recv_buffers: AtomicU64,
    pub(crate) recv_buffers_free: AtomicU64,
    pub(crate) recv_buffers_lent: AtomicU64,
    /// Stored each time the worker releases its spare protocol buffers (once a second).
    pub(crate) spare_buffer_bytes: AtomicU64,
    pub(crate) auth_refusals: AtomicU64,
    pub(crate) clients_reconnecting: AtomicU64,
    pub(crate) client_alerts: AtomicU64,
    /// Sampled once a second while the admin listener is read.
    pub(crate) send_queue_bytes: AtomicU64,
    pub(crate) backpressured: AtomicU64,
}

impl WorkerStats {
    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        // Single writer: a load and a store are enough and cheaper than fetch_add.
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub(crate) fn sub(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub(crate) fn count_close(&self, code: u16, cause: &ringwire_frame::CloseCause) {
        use ringwire_frame::CloseCause as C;
        let i = TRACKED_CODES.iter().position(|c| *c == code).unwrap_or(TRACKED_CODES.len());
        Self::add(&self.closes[i], 1);
        let j = match cause {
            C::Peer => 0,
            C::Local => 1,
            C::Error(_) => 2,
            C::CloseTimeout => 3,
            C::HeartbeatTimeout => 4,
            // A cause added to the protocol core later counts as the transport's end.
            _ => 5,
        };
        Self::add(&self.close_causes[j], 1);
    }

    /// A failed upgrade answered with `status`.
    pub(crate) fn count_handshake_status(&self, status: u16) {
        let i =
            TRACKED_STATUSES.iter().position(|s| *s == status).unwrap_or(TRACKED_STATUSES.len());
        Self::add(&self.handshake_failures, 1);
        Self::add(&self.handshake_statuses[i], 1);
    }

    /// A heartbeat's round trip.
    pub(crate) fn record_rtt(&self, rtt: std::time::Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let i = RTT_BUCKETS_US.partition_point(|b| *b < us);
        Self::add(&self.rtt[i], 1);
        Self::add(&self.rtt_sum_us, us);
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut closes_by_code = Vec::new();
        for (i, c) in self.closes.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                closes_by_code.push((TRACKED_CODES.get(i).copied(), n));
            }
        }
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            drops: self.drops.load(Relaxed),
            slow_closes: self.slow_closes.load(Relaxed),
            loop_turns: self.loop_turns.load(Relaxed),
            rings: self.rings.load(Relaxed),
            messages_lent: self.messages_lent.load(Relaxed),
            busy_poll_hits: self.busy_poll_hits.load(Relaxed),
            handler_panics: self.handler_panics.load(Relaxed),
            subscribes_refused: self.subscribes_refused.load(Relaxed),
            publishes_dropped: self.publishes_dropped.load(Relaxed),
            clients: self.clients.load(Relaxed),
            clients_connected: self.clients_connected.load(Relaxed),
            client_losses: self.client_losses.load(Relaxed),
            clients_degraded: self.clients_degraded.load(Relaxed),
            outbox_resent: self.outbox_resent.load(Relaxed),
            outbox_dead_letters: self.outbox_dead_letters.load(Relaxed),
            outbox_refused: self.outbox_refused.load(Relaxed),
            outbox_acked: self.outbox_acked.load(Relaxed),
            receipts_delivered: self.receipts_delivered.load(Relaxed),
            receipts_duplicates: self.receipts_duplicates.load(Relaxed),
            receipts_refused: self.receipts_refused.load(Relaxed),
            closes_by_code,
            closes_by_cause: {
                let c = |i: usize| self.close_causes[i].load(Relaxed);
                CloseCauses {
                    peer: c(0),
                    local: c(1),
                    protocol_error: c(2),
                    close_timeout: c(3),
                    heartbeat_timeout: c(4),
                    transport_closed: c(5),
                }
            },
            handshake_failures_by_status: self
                .handshake_statuses
                .iter()
                .enumerate()
                .map(|(i, n)| (TRACKED_STATUSES.get(i).copied(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            handshake_peer_gone: self.handshake_peer_gone.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_handshakes_post_quantum: self.tls_handshakes_post_quantum.load(Relaxed),
            tls_failures: self.tls_failures.load(Relaxed),
            tls_truncations: self.tls_truncations.load(Relaxed),
            rtt: RttHistogram {
                buckets: std::array::from_fn(|i| self.rtt[i].load(Relaxed)),
                sum_us: self.rtt_sum_us.load(Relaxed),
            },
            workers_up: self.up.load(Relaxed),
            timers: self.timers.load(Relaxed),
            submissions: self.submissions.load(Relaxed),
            completions: self.completions.load(Relaxed),
            recv_buffers: self.recv_buffers.load(Relaxed),
            recv_buffers_free: self.recv_buffers_free.load(Relaxed),
            recv_buffers_lent: self.recv_buffers_lent.load(Relaxed),
            spare_buffer_bytes: self.spare_buffer_bytes.load(Relaxed),
            auth_refusals: self.auth_refusals.load(Relaxed),
            clients_reconnecting: self.clients_reconnecting.load(Relaxed),
            client_alerts: self.client_alerts.load(Relaxed),
            send_queue_bytes: self.send_queue_bytes.load(Relaxed),
            backpressured: self.backpressured.load(Relaxed),
        }
    }
}

/// Adds counts by key (a close code, a status; `None`: the rest) into `into`, sorted.
fn merge_counts(into: &mut Vec<(Option<u16>, u64)>, from: &[(Option<u16>, u64)]) {
    for (key, n) in from {
        match into.iter_mut().find(|(k, _)| k == key) {
            Some((_, m)) => *m += n,
            None => into.push((*key, *n)),
        }
    }
    into.sort();
}

/// Counters at one moment (of one worker, or summed over all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections open now (including those still in the HTTP upgrade).
    pub connections: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections refused: over the per-worker limit, or rejected upgrades.
    pub rejected: u64,
    /// Accepts that failed (e.g. out of file descriptors).
    pub accept_errors: u64,
    /// Upgrades that failed (bad request, timeout, peer gone).
    pub handshake_failures: u64,
    /// WebSocket messages received.
    pub messages_in: u64,
    /// WebSocket messages handed to a connection's protocol core or socket for sending
    /// (fan-out counts each subscriber). Messages the backpressure policy dropped before
    /// that are counted in `drops` only.
    pub messages_out: u64,
    /// Bytes received on sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Messages dropped by the backpressure policy.
    pub drops: u64,
    /// Connections closed as slow consumers.
    pub slow_closes: u64,
    /// Event-loop iterations.
    pub loop_turns: u64,
    /// io_uring instances open (a worker opens more when its fixed-file tables fill; 0
    /// on the epoll backend).
    pub rings: u64,
    /// Received messages handed to the application without a copy: each arrived whole
    /// in one receive and shares the receive buffer (io_uring only; large messages, see
    /// `docs/ARCHITECTURE.md`).
    pub messages_lent: u64,
    /// Waits in which busy polling (`EngineConfig::busy_poll`) saw work arrive and skipped
    /// the sleep (io_uring only).
    pub busy_poll_hits: u64,
    /// Handler callbacks that panicked (each closed its connection with 1011).
    pub handler_panics: u64,
    /// Subscriptions refused by the per-connection topic limits.
    pub subscribes_refused: u64,
    /// Publishes from a handler that a full worker queue could not take (per worker).
    pub publishes_dropped: u64,
    /// Client connections ([`crate::Server::connect`]) not yet `Closed`, in any state
    /// (each is also counted in `connections` while it has a record).
    pub clients: u64,
    /// Client connections `Connected` now.
    pub clients_connected: u64,
    /// Times a client went to `Reconnecting` (a failed attempt or a lost connection).
    pub client_losses: u64,
    /// Client connections whose health level is `Warn` or `Critical` now
    /// ([`crate::client::HealthConfig`]).
    pub clients_degraded: u64,
    /// Durable messages sent again after a client reconnected ([`crate::Ctx::send_durable`]).
    pub outbox_resent: u64,
    /// Durable messages given up after `OutboxConfig::max_attempts` sends.
    pub outbox_dead_letters: u64,
    /// Durable sends from client handles refused on the worker
    /// ([`crate::Handler::on_durable_refused`]).
    pub outbox_refused: u64,
    /// Durable messages a ringwire server acknowledged on the wire
    /// ([`crate::Handler::on_acked`]).
    pub outbox_acked: u64,
    /// Durable messages of clients that acknowledge on the wire handed to the
    /// application ([`crate::EngineConfig::receipts`]).
    pub receipts_delivered: u64,
    /// Copies of durable messages already handed to the application, dropped by the
    /// duplicate filter (a client's resend after a lost acknowledgement).
    pub receipts_duplicates: u64,
    /// Upgrades refused with 503 because the client's stream was held by another
    /// connection, or every stream of the filter's table was.
    pub receipts_refused: u64,
    /// Ended WebSocket connections by close code (`None`: any other code).
    pub closes_by_code: Vec<(Option<u16>, u64)>,
    /// Ended WebSocket connections by why they ended; `heartbeat_timeout` is the
    /// count of missed pongs that closed a connection.
    pub closes_by_cause: CloseCauses,
    /// Upgrades refused, by the status answered (`None`: a status not tracked
    /// individually). Together with `handshake_timeouts` and `handshake_peer_gone`
    /// they make up `handshake_failures`.
    pub handshake_failures_by_status: Vec<(Option<u16>, u64)>,
    /// Upgrades not completed within the handshake timeout.
    pub handshake_timeouts: u64,
    /// Upgrades whose peer went away (or whose socket failed) before finishing.
    pub handshake_peer_gone: u64,
    /// TLS handshakes completed (accepted and outgoing connections).
    pub tls_handshakes: u64,
    /// Of those, the ones whose key exchange was a post-quantum hybrid
    /// (X25519MLKEM768 and the like: offered with the `aws-lc-rs` feature only).
    pub tls_handshakes_post_quantum: u64,
    /// TLS connections that failed: a handshake the peer could not complete (garbage,
    /// no common parameters, a certificate refused, an oversized hello) or a record
    /// that did not decrypt. Those still in their upgrade count in
    /// `handshake_failures` too.
    pub tls_failures: u64,
    /// TLS connections whose peer closed TCP without close_notify while the WebSocket
    /// was still open (possibly a truncation attack; the application sees 1006).
    pub tls_truncations: u64,
    /// Heartbeat round trips (from the pongs to the engine's pings, server and client
    /// side).
    pub rtt: RttHistogram,
    /// Workers whose event loop is running (0 or 1 for one worker's snapshot).
    pub workers_up: u64,
    /// Connections with a timer in the worker's timer wheel. Sampled like
    /// `send_queue_bytes`.
    pub timers: u64,
    /// io_uring submission entries queued (0 on the epoll backend).
    pub submissions: u64,
    /// io_uring completions reaped (0 on the epoll backend).
    pub completions: u64,
    /// Provided receive buffers of the worker's rings (io_uring; 0 on epoll). This and
    /// the two below are sampled like `send_queue_bytes`.
    pub recv_buffers: u64,
    /// Of those, the ones the kernel can fill now (the rest hold data not yet
    /// consumed, or are lent).
    pub recv_buffers_free: u64,
    /// Of those, the ones a message handed to the application without a copy holds.
    pub recv_buffers_lent: u64,
    /// Bytes the workers' spare protocol buffers hold: those connections left when they
    /// went idle, kept for the next to get busy (as many as were busy at once, at most
    /// 4 MiB per worker; those not needed for a second are freed). As of the last
    /// second.
    pub spare_buffer_bytes: u64,
    /// Refusals of the authorizer ([`crate::EngineConfig::authorizer`]): upgrades it
    /// refused (also in `handshake_failures_by_status`), subscribes and publishes to
    /// topics it did not grant and grants that expired (each closed with 1008).
    pub auth_refusals: u64,
    /// Client connections waiting to reconnect now (`Reconnecting`). Those neither
    /// connected nor reconnecting are dialling: `clients - clients_connected -
    /// clients_reconnecting`.
    pub clients_reconnecting: u64,
    /// Health alerts raised: a client's health level got worse (ok to warn or critical,
    /// warn to critical); [`crate::Handler::on_health`] heard of each.
    pub client_alerts: u64,
    /// Bytes queued for sending over all connections and not yet taken by the kernel.
    /// Sampled: the workers add it up once a second while the admin listener is read (a
    /// dashboard open, or `/metrics` scraped within the last two minutes); otherwise it
    /// keeps its last value.
    pub send_queue_bytes: u64,
    /// Connections over the send limit now (backpressure engaged). Sampled like
    /// `send_queue_bytes`.
    pub backpressured: u64,
}

impl StatsSnapshot {
    /// Adds another snapshot's counters to this one.
    pub fn merge(&mut self, o: &StatsSnapshot) {
        self.connections += o.connections;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.accept_errors += o.accept_errors;
        self.handshake_failures += o.handshake_failures;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.drops += o.drops;
        self.slow_closes += o.slow_closes;
        self.loop_turns += o.loop_turns;
        self.rings += o.rings;
        self.messages_lent += o.messages_lent;
        self.busy_poll_hits += o.busy_poll_hits;
        self.handler_panics += o.handler_panics;
        self.subscribes_refused += o.subscribes_refused;
        self.publishes_dropped += o.publishes_dropped;
        self.clients += o.clients;
        self.clients_connected += o.clients_connected;
        self.client_losses += o.client_losses;
        self.clients_degraded += o.clients_degraded;
        self.outbox_resent += o.outbox_resent;
        self.outbox_dead_letters += o.outbox_dead_letters;
        self.outbox_refused += o.outbox_refused;
        self.outbox_acked += o.outbox_acked;
        self.receipts_delivered += o.receipts_delivered;
        self.receipts_duplicates += o.receipts_duplicates;
        self.receipts_refused += o.receipts_refused;
        let (c, d) = (&mut self.closes_by_cause, &o.closes_by_cause);
        c.peer += d.peer;
        c.local += d.local;
        c.protocol_error += d.protocol_error;
        c.close_timeout += d.close_timeout;
        c.heartbeat_timeout += d.heartbeat_timeout;
        c.transport_closed += d.transport_closed;
        merge_counts(&mut self.handshake_failures_by_status, &o.handshake_failures_by_status);
        self.handshake_timeouts += o.handshake_timeouts;
        self.handshake_peer_gone += o.handshake_peer_gone;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_handshakes_post_quantum += o.tls_handshakes_post_quantum;
        self.tls_failures += o.tls_failures;
        self.tls_truncations += o.tls_truncations;
        for (a, b) in self.rtt.buckets.iter_mut().zip(&o.rtt.buckets) {
            *a += b;
        }
        self.rtt.sum_us += o.rtt.sum_us;
        self.workers_up += o.workers_up;
        self.timers += o.timers;
        self.submissions += o.submissions;
        self.completions += o.completions;
        self.recv_buffers += o.recv_buffers;
        self.recv_buffers_free += o.recv_buffers_free;
        self.recv_buffers_lent += o.recv_buffers_lent;
        self.spare_buffer_bytes += o.spare_buffer_bytes;
        self.auth_refusals += o.auth_refusals;
        self.clients_reconnecting += o.clients_reconnecting;
        self.client_alerts += o.client_alerts;
        self.send_queue_bytes += o.send_queue_bytes;
        self.backpressured += o.backpressured;
        merge_counts(&mut self.closes_by_code, &o.closes_by_code);
    }

    /// Connections that ended with `code`.
    pub fn closes_with(&self, code: u16) -> u64 {
        self.closes_by_code.iter().find(|(c, _)| *c == Some(code)).map_or(0, |(_, n)| *n)
    }
}
