//! The engine's counters in the Prometheus formats, through `prometheus-client`: a
//! collector that reads every worker's counters at scrape time (the workers write plain
//! relaxed atomics and never see the exporter), one family per figure, labelled by
//! worker.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::stats::{StatsSnapshot, RTT_BUCKETS_US};

/// Which text format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus' classic text format (0.0.4).
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for (OpenMetrics only when named).
    pub(crate) fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The whole exposition of `state`'s engine in `format`.
pub(crate) fn render(state: &Arc<AdminState>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(EngineCollector(state.clone())));
    let mut out = String::with_capacity(16 * 1024);
    let r = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a `String` cannot fail; an encoder error would be a bug in a name.
    if let Err(e) = r {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

#[derive(Debug)]
struct EngineCollector(Arc<AdminState>);

type Labels<'a> = Vec<(&'static str, String)>;

/// Encodes one family per worker (and optional extra labels) under one descriptor.
struct Family<'e, 'd> {
    enc: &'e mut DescriptorEncoder<'d>,
}

impl Family<'_, '_> {
    fn write(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: &[(Labels<'_>, u64)],
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, kind)?;
        // One sample without labels is the metric itself (`name value`, not `name{}`).
        if let [(labels, v)] = samples {
            if labels.is_empty() {
                return value(kind, *v, m);
            }
        }
        for (labels, v) in samples {
            value(kind, *v, m.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// Writes `v` as a counter or a gauge.
fn value(
    kind: MetricType,
    v: u64,
    enc: prometheus_client::encoding::MetricEncoder<'_>,
) -> fmt::Result {
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(enc),
        _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(enc),
    }
}

/// Samples of counts by key (a close code, a status; `None` is `other`), labelled by
/// worker and `label`.
fn by_key(
    snaps: &[StatsSnapshot],
    label: &'static str,
    get: impl Fn(&StatsSnapshot) -> &Vec<(Option<u16>, u64)>,
) -> Vec<(Labels<'static>, u64)> {
    let mut out = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        for (key, n) in get(s) {
            let key = key.map_or_else(|| "other".to_owned(), |k| k.to_string());
            out.push((vec![("worker", i.to_string()), (label, key)], *n));
        }
    }
    out
}

fn worker(i: usize) -> Labels<'static> {
    vec![("worker", i.to_string())]
}

/// One number per worker: its name, help, type and where it is in a snapshot.
struct Figure {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    get: fn(&StatsSnapshot) -> u64,
}

use MetricType::{Counter, Gauge};

/// The figures that are one number per worker, in the order they are written.
const FIGURES: &[Figure] = &[
    Figure {
        name: "ringwire_worker_up",
        help: "1 while the worker's event loop runs",
        kind: Gauge,
        get: |s| s.workers_up,
    },
    Figure {
        name: "ringwire_connections",
        help: "Connections open (upgrades in progress and clients included)",
        kind: Gauge,
        get: |s| s.connections,
    },
    Figure {
        name: "ringwire_accepted",
        help: "TCP connections accepted",
        kind: Counter,
        get: |s| s.accepted,
    },
    Figure {
        name: "ringwire_rejected",
        help: "Connections refused: over the per-worker limit or upgrades rejected",
        kind: Counter,
        get: |s| s.rejected,
    },
    Figure {
        name: "ringwire_accept_errors",
        help: "Accepts that failed (out of descriptors, say)",
        kind: Counter,
        get: |s| s.accept_errors,
    },
    Figure {
        name: "ringwire_handshake_failures",
        help: "Upgrades that failed, for any reason",
        kind: Counter,
        get: |s| s.handshake_failures,
    },
    Figure {
        name: "ringwire_auth_refusals",
        help: "Refusals of the authorizer: upgrades refused, topics not granted, grants expired",
        kind: Counter,
        get: |s| s.auth_refusals,
    },
    Figure {
        name: "ringwire_handshake_timeouts",
        help: "Upgrades not complete within the handshake timeout",
        kind: Counter,
        get: |s| s.handshake_timeouts,
    },
    Figure {
        name: "ringwire_handshake_peer_gone",
        help: "Upgrades whose peer left before finishing",
        kind: Counter,
        get: |s| s.handshake_peer_gone,
    },
    Figure {
        name: "ringwire_tls_handshakes",
        help: "TLS handshakes completed",
        kind: Counter,
        get: |s| s.tls_handshakes,
    },
    Figure {
        name: "ringwire_tls_handshakes_post_quantum",
        help: "TLS handshakes completed with a post-quantum hybrid key exchange (X25519MLKEM768)",
        kind: Counter,
        get: |s| s.tls_handshakes_post_quantum,
    },
    Figure {
        name: "ringwire_tls_failures",
        help: "TLS connections that failed (handshake or record errors)",
        kind: Counter,
        get: |s| s.tls_failures,
    },
    Figure {
        name: "ringwire_tls_truncations",
        help: "TLS connections closed without close_notify while the WebSocket was open",
        kind: Counter,
        get: |s| s.tls_truncations,
    },
    Figure {
        name: "ringwire_messages_in",
        help: "WebSocket messages received",
        kind: Counter,
        get: |s| s.messages_in,
    },
    Figure {
        name: "ringwire_messages_out",
        help: "WebSocket messages sent (fan-out counts each subscriber)",
        kind: Counter,
        get: |s| s.messages_out,
    },
    Figure {
        name: "ringwire_bytes_in",
        help: "Bytes received on sockets",
        kind: Counter,
        get: |s| s.bytes_in,
    },
    Figure {
        name: "ringwire_bytes_out",
        help: "Bytes written to sockets",
        kind: Counter,
        get: |s| s.bytes_out,
    },
    Figure {
        name: "ringwire_send_queue_bytes",
        help: "Bytes queued for sending and not yet taken by the kernel (sampled once a second while scraped)",
        kind: Gauge,
        get: |s| s.send_queue_bytes,
    },
    Figure {
        name: "ringwire_backpressured",
        help: "Connections over the send limit now (sampled once a second while scraped)",
        kind: Gauge,
        get: |s| s.backpressured,
    },
    Figure {
        name: "ringwire_backpressure_drops",
        help: "Messages dropped by the backpressure policy (drop-oldest, drop-newest)",
        kind: Counter,
        get: |s| s.drops,
    },
    Figure {
        name: "ringwire_backpressure_closes",
        help: "Connections closed as slow consumers (backpressure policy close)",
        kind: Counter,
        get: |s| s.slow_closes,
    },
    Figure {
        name: "ringwire_heartbeats_missed",
        help: "Connections closed because a heartbeat ping went unanswered",
        kind: Counter,
        get: |s| s.closes_by_cause.heartbeat_timeout,
    },
    Figure {
        name: "ringwire_loop_turns",
        help: "Event-loop iterations",
        kind: Counter,
        get: |s| s.loop_turns,
    },
    Figure {
        name: "ringwire_timers",
        help: "Connections with an entry in the worker's timer wheel",
        kind: Gauge,
        get: |s| s.timers,
    },
    Figure {
        name: "ringwire_rings",
        help: "io_uring instances open",
        kind: Gauge,
        get: |s| s.rings,
    },
    Figure {
        name: "ringwire_uring_submissions",
        help: "io_uring submission entries queued",
        kind: Counter,
        get: |s| s.submissions,
    },
    Figure {
        name: "ringwire_uring_completions",
        help: "io_uring completions reaped",
        kind: Counter,
        get: |s| s.completions,
    },
    Figure {
        name: "ringwire_recv_buffers",
        help: "Provided receive buffers of the worker's rings",
        kind: Gauge,
        get: |s| s.recv_buffers,
    },
    Figure {
        name: "ringwire_recv_buffers_free",
        help: "Provided receive buffers the kernel may fill now",
        kind: Gauge,
        get: |s| s.recv_buffers_free,
    },
    Figure {
        name: "ringwire_recv_buffers_lent",
        help: "Receive buffers held by messages lent to the application",
        kind: Gauge,
        get: |s| s.recv_buffers_lent,
    },
    Figure {
        name: "ringwire_spare_buffer_bytes",
        help: "Bytes the workers' spare protocol buffers hold, kept for the next busy connections",
        kind: Gauge,
        get: |s| s.spare_buffer_bytes,
    },
    Figure {
        name: "ringwire_messages_lent",
        help: "Messages handed to the application without a copy",
        kind: Counter,
        get: |s| s.messages_lent,
    },
    Figure {
        name: "ringwire_busy_poll_hits",
        help: "Waits in which busy polling found work before sleeping",
        kind: Counter,
        get: |s| s.busy_poll_hits,
    },
    Figure {
        name: "ringwire_handler_panics",
        help: "Handler callbacks that panicked (each closed its connection with 1011)",
        kind: Counter,
        get: |s| s.handler_panics,
    },
    Figure {
        name: "ringwire_subscribes_refused",
        help: "Topic subscriptions refused by the per-connection limits",
        kind: Counter,
        get: |s| s.subscribes_refused,
    },
    Figure {
        name: "ringwire_publishes_dropped",
        help: "Publishes a full worker queue could not take",
        kind: Counter,
        get: |s| s.publishes_dropped,
    },
    Figure {
        name: "ringwire_clients",
        help: "Client connections not closed, in any state",
        kind: Gauge,
        get: |s| s.clients,
    },
    Figure {
        name: "ringwire_clients_connected",
        help: "Client connections connected now",
        kind: Gauge,
        get: |s| s.clients_connected,
    },
    Figure {
        name: "ringwire_clients_reconnecting",
        help: "Client connections waiting to reconnect now",
        kind: Gauge,
        get: |s| s.clients_reconnecting,
    },
    Figure {
        name: "ringwire_client_health_alerts",
        help: "Times a client's health level got worse (ok to warn or critical, warn to critical)",
        kind: Counter,
        get: |s| s.client_alerts,
    },
    Figure {
        name: "ringwire_client_reconnects",
        help: "Times a client went to Reconnecting (a failed attempt or a lost connection)",
        kind: Counter,
        get: |s| s.client_losses,
    },
    Figure {
        name: "ringwire_clients_degraded",
        help: "Client connections whose health level is warn or critical",
        kind: Gauge,
        get: |s| s.clients_degraded,
    },
    Figure {
        name: "ringwire_outbox_resent",
        help: "Durable messages sent again after a reconnect",
        kind: Counter,
        get: |s| s.outbox_resent,
    },
    Figure {
        name: "ringwire_outbox_dead_letters",
        help: "Durable messages given up after the maximum attempts",
        kind: Counter,
        get: |s| s.outbox_dead_letters,
    },
    Figure {
        name: "ringwire_outbox_refused",
        help: "Durable sends from client handles refused on the worker",
        kind: Counter,
        get: |s| s.outbox_refused,
    },
    Figure {
        name: "ringwire_outbox_acked",
        help: "Durable messages a ringwire server acknowledged",
        kind: Counter,
        get: |s| s.outbox_acked,
    },
    Figure {
        name: "ringwire_receipts_delivered",
        help: "Durable messages handed to the application by the duplicate filter",
        kind: Counter,
        get: |s| s.receipts_delivered,
    },
    Figure {
        name: "ringwire_receipts_duplicates",
        help: "Duplicate durable messages dropped by the filter",
        kind: Counter,
        get: |s| s.receipts_duplicates,
    },
    Figure {
        name: "ringwire_receipts_refused",
        help: "Upgrades refused because the client's stream was held",
        kind: Counter,
        get: |s| s.receipts_refused,
    },
];

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let snaps: Vec<StatsSnapshot> = self.0.stats.iter().map(|s| s.snapshot()).collect();
        let mut f = Family { enc: &mut encoder };
        for fig in FIGURES {
            let samples: Vec<_> =
                snaps.iter().enumerate().map(|(i, s)| (worker(i), (fig.get)(s))).collect();
            f.write(fig.name, fig.help, fig.kind, &samples)?;
        }

        // Closes by code and by cause.
        let by_code = by_key(&snaps, "code", |s| &s.closes_by_code);
        f.write(
            "ringwire_closes_by_code",
            "WebSocket connections ended, by close code",
            Counter,
            &by_code,
        )?;
        let mut by_cause = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            let c = &s.closes_by_cause;
            for (cause, n) in [
                ("peer", c.peer),
                ("local", c.local),
                ("protocol_error", c.protocol_error),
                ("close_timeout", c.close_timeout),
                ("heartbeat_timeout", c.heartbeat_timeout),
                ("transport_closed", c.transport_closed),
            ] {
                by_cause.push((vec![("worker", i.to_string()), ("cause", cause.to_owned())], n));
            }
        }
        f.write(
            "ringwire_closes_by_cause",
            "WebSocket connections ended, by why",
            MetricType::Counter,
            &by_cause,
        )?;
        let by_status = by_key(&snaps, "status", |s| &s.handshake_failures_by_status);
        f.write(
            "ringwire_handshake_refusals",
            "Upgrades refused, by the HTTP status answered",
            MetricType::Counter,
            &by_status,
        )?;

        // The heartbeat RTT histogram, in seconds.
        let mut m = encoder.encode_descriptor(
            "ringwire_heartbeat_rtt_seconds",
            "Round trips of heartbeat pings (server and client side)",
            None,
            MetricType::Histogram,
        )?;
        for (i, s) in snaps.iter().enumerate() {
            let labels = worker(i);
            let mut fam = m.encode_family(&labels)?;
            let buckets: Vec<(f64, u64)> = RTT_BUCKETS_US
                .iter()
                .map(|us| *us as f64 / 1e6)
                .chain(std::iter::once(f64::INFINITY))
                .zip(s.rtt.buckets)
                .collect();
            let sum = s.rtt.sum_us as f64 / 1e6;
            fam.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum,
                s.rtt.count(),
                &buckets,
                None,
            )?;
        }

        if let Some(c) = &self.0.cluster {
            let c = c.stats();
            let one = |v: u64| vec![(Vec::new(), v)];
            let mut f = Family { enc: &mut encoder };
            f.write(
                "ringwire_cluster_connected",
                "1 while the bridge is connected to NATS",
                Gauge,
                &one(u64::from(c.connected)),
            )?;
            f.write(
                "ringwire_cluster_subscriptions",
                "Topics this node is subscribed to on NATS",
                Gauge,
                &one(c.subscriptions),
            )?;
            f.write(
                "ringwire_cluster_published",
                "Local publishes handed to NATS",
                Counter,
                &one(c.published),
            )?;
            f.write(
                "ringwire_cluster_received",
                "Publishes of other nodes delivered here",
                Counter,
                &one(c.received),
            )?;
            f.write(
                "ringwire_cluster_dropped",
                "Local publishes dropped: the queue to NATS was full (oldest first)",
                Counter,
                &one(c.dropped),
            )?;
            f.write(
                "ringwire_cluster_queued",
                "Local publishes waiting for NATS (all of them while it is gone)",
                Gauge,
                &one(c.queued),
            )?;
            f.write(
                "ringwire_cluster_queued_bytes",
                "Bytes of the local publishes waiting for NATS",
                Gauge,
                &one(c.queued_bytes),
            )?;
            f.write(
                "ringwire_cluster_failed",
                "Publishes the NATS client refused",
                Counter,
                &one(c.failed),
            )?;
            f.write(
                "ringwire_cluster_reconnects",
                "Reconnections to NATS",
                Counter,
                &one(c.reconnects),
            )?;
        }
        let info = &self.0;
        let mut m = encoder.encode_descriptor(
            "ringwire_engine",
            "The engine's backend and worker count",
            None,
            MetricType::Info,
        )?;
        let labels = [("backend", info.backend.to_owned()), ("workers", snaps.len().to_string())];
        m.encode_info(&labels)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every figure has a unique, well-formed name, and docs/OBSERVABILITY.md lists it
    /// as it is exposed (counters with `_total`).
    #[test]
    fn figures_are_named_once_and_documented() {
        let doc = include_str!("../../../docs/OBSERVABILITY.md");
        let mut seen = std::collections::HashSet::new();
        let families = [
            ("ringwire_closes_by_code", Counter),
            ("ringwire_closes_by_cause", Counter),
            ("ringwire_handshake_refusals", Counter),
            ("ringwire_heartbeat_rtt_seconds", MetricType::Histogram),
            ("ringwire_engine", MetricType::Info),
            ("ringwire_cluster_connected", Gauge),
            ("ringwire_cluster_subscriptions", Gauge),
            ("ringwire_cluster_published", Counter),
            ("ringwire_cluster_received", Counter),
            ("ringwire_cluster_dropped", Counter),
            ("ringwire_cluster_queued", Gauge),
            ("ringwire_cluster_queued_bytes", Gauge),
            ("ringwire_cluster_failed", Counter),
            ("ringwire_cluster_reconnects", Counter),
        ];
        let all = FIGURES.iter().map(|f| (f.name, f.kind)).chain(families);
        for (name, kind) in all {
            assert!(seen.insert(name), "{name} twice");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            let exposed = match kind {
                Counter => format!("{name}_total"),
                MetricType::Info => format!("{name}_info"),
                _ => name.to_owned(),
            };
            assert!(doc.contains(&format!("`{exposed}")), "docs/OBSERVABILITY.md lacks {exposed}");
        }
    }
}
