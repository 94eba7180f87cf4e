//! Client connections on the worker: the dial, the connect's completion, the server's
//! answer to the upgrade, losses and reconnects. Every state change goes through the
//! client's [`crate::client::Lifecycle`] and is queued for the handler's `on_state`
//! (delivered before the next callback, so it is never re-entered).

use std::time::Duration;

use bytes::Bytes;
use ringwire_frame::handshake::{self, ClientRequest, HandshakeError};
use ringwire_frame::{CloseCode, Connection, Message};
use rustix::io::Errno;

use crate::client::{Cause, Client, ClientState, Dial};
use crate::clock::Tick;
use crate::conn::{Conn, Phase};
use crate::shard::{Core, Op};
use crate::slab::Key;
use crate::stats::WorkerStats;
use crate::sys::net::{client_socket, ClientSocketOptions};
use crate::sys::Socket;

/// Longest `Retry-After` honoured (RFC 9110 §10.2.3), so a server cannot park a client
/// for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Core {
    /// `Command::Connect`: a new client. It gets a slab record at once (its key is the
    /// handle's for good) and its first attempt.
    pub(crate) fn dial(&mut self, dial: Dial) {
        if self.shutdown_deadline.is_some()
            || self.conns.len() >= self.config.max_connections_per_worker
        {
            dial.shared.set_state(ClientState::Closed);
            if let Some(sink) = &dial.sink {
                sink.finish();
            }
            return;
        }
        let key = self.conns.insert(Conn::dialing(self.now));
        WorkerStats::add(&self.stats.connections, 1);
        WorkerStats::add(&self.stats.clients, 1);
        dial.shared.set_key(key);
        let Dial { spec, shared, sink } = dial;
        let mut client = Client::new(spec, shared);
        if let Some(sink) = sink {
            self.sinks.insert(key.slot, sink);
        }
        if let (Some(receipts), Some(stream)) = (&self.receipts, client.spec.config.outbox_stream) {
            // Durable messages from the server are filtered under this stream.
            match receipts.check_out(stream, crate::outbox::owner(self.id, key)) {
                Ok(c) => {
                    self.parked.insert(key.slot, c);
                }
                Err(e) => tracing::warn!(
                    worker = self.id,
                    stream,
                    error = ?e,
                    "the client's stream is taken in the duplicate filter: it will not take \
                     durable messages from the server"
                ),
            }
        }
        let change = client.life.dial();
        let change = client.changed(change);
        self.clients.insert(key.slot, client);
        self.queue_change(key, change);
        self.attempt(key);
    }

    /// Starts an attempt: a socket, then the connect through the driver. Waits instead
    /// while the target's connect-rate cap says so.
    fn attempt(&mut self, key: Key) {
        let now = self.now;
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        if let Some(limiter) = &client.spec.limiter {
            if let Err(wait) = limiter.try_acquire(now) {
                if let Some(c) = self.conns.get_mut(key) {
                    c.phase = Phase::Backoff { until: now + wait };
                    c.set_connecting(false);
                }
                self.schedule(key);
                return;
            }
        }
        let _ = client.take_errno();
        let addr = client.next_addr();
        let cfg = &client.spec.config;
        let opts = ClientSocketOptions {
            bind: cfg.bind,
            keepalive: cfg.tcp_keepalive,
            user_timeout: cfg.tcp_user_timeout,
        };
        let deadline = now + cfg.connect_timeout;
        match client_socket(addr, &opts) {
            Ok(fd) => {
                let Some(c) = self.conns.get_mut(key) else { return };
                c.redial(deadline);
                self.ops.push(Op::AddConn(key, Socket::Fd(fd)));
                self.ops.push(Op::Connect(key, addr));
                self.timers.unschedule(key);
                self.schedule(key);
            }
            Err(e) => {
                // No socket was made: the attempt failed without one (EMFILE, say).
                if let Some(c) = self.conns.get_mut(key) {
                    c.phase = Phase::Backoff { until: now };
                    c.set_connecting(false);
                }
                self.lose(key, Cause::Io { errno: e.raw_os_error().unwrap_or(0) });
            }
        }
    }

    /// The connect of `key` finished.
    pub(crate) fn on_connected(&mut self, key: Key, result: Result<(), Errno>) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(key) else { return };
        c.set_connecting(false);
        if c.closing() {
            self.maybe_finish_close(key);
            return;
        }
        if let Err(e) = result {
            self.lose(key, Cause::ConnectFailed { errno: e.raw_os_error() });
            return;
        }
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.rng.next_u64().to_ne_bytes());
        nonce[8..].copy_from_slice(&self.rng.next_u64().to_ne_bytes());
        let cfg = &client.spec.config;
        let target = &client.spec.target;
        let mut req = ClientRequest::new(target.host_header.clone(), target.path.clone(), nonce);
        for p in &cfg.protocols {
            req = req.protocol(p.clone());
        }
        if let Some(o) = &cfg.origin {
            req = req.header("Origin", o.clone());
        }
        for (n, v) in &cfg.headers {
            req = req.header(n.clone(), v.clone());
        }
        let recv = self.parked.contains_key(&key.slot);
        if let (Some(stream), true) = (cfg.outbox_stream, self.outbox.is_some() || recv) {
            // A ringwire server with a duplicate filter acknowledges on the wire (and,
            // with `recv`, may send durably to this client's filter).
            req = req.extension(crate::outbox::wire::offer(stream, recv));
        }
        if let Some(d) = &client.spec.frame.deflate {
            req = req.extension(ringwire_frame::deflate::offer(d));
        }
        let mut out = Vec::with_capacity(256);
        if let Err(e) = req.write(&mut out) {
            self.lose(key, Cause::HandshakeInvalid(e.to_string()));
            return;
        }
        let deadline = now + cfg.handshake_timeout;
        // wss://: the TLS handshake first (its ClientHello goes out at once); the
        // upgrade request waits in the queue until it is done, and the handshake
        // deadline covers both.
        let tls = match (&target.tls, &cfg.tls) {
            (Some(name), Some(t)) => Some((name.clone(), t.clone())),
            _ => None,
        };
        c.start_client_handshake(Box::new(req), Bytes::from(out), deadline);
        c.set_recv_armed(true);
        self.ops.push(Op::StartRecv(key));
        self.mark_dirty(key);
        self.timers.unschedule(key);
        self.schedule(key);
        if let Some((name, t)) = tls {
            if let Err(e) = self.tls_dial(key, &t, &name) {
                self.lose(key, Cause::Tls(e.to_string()));
            }
        }
    }

    /// Bytes of the server's answer to the upgrade. Returns the bytes that followed a
    /// 101 (the first frames) once the connection is open, for the protocol core.
    pub(crate) fn on_client_handshake(&mut self, key: Key, data: &[u8]) -> Option<Vec<u8>> {
        let now = self.now;
        let limits = self.config.handshake_limits;
        let c = self.conns.get_mut(key)?;
        let Phase::ClientHandshake { buf, request, .. } = &mut c.phase else { return None };
        let client = self.clients.get_mut(&key.slot)?;
        // The common case, a 101 that arrives in one read, is checked where it landed;
        // only a split one is gathered (bounded by the header limit).
        let gathered = !buf.is_empty();
        if gathered {
            buf.extend_from_slice(data);
        }
        let head: &[u8] = if gathered { buf } else { data };
        let cause = match handshake::check_response(head, request, &limits) {
            Ok(None) => {
                if !gathered {
                    buf.extend_from_slice(data);
                }
                return None;
            }
            Ok(Some(parsed)) => {
                let rest = head[parsed.len..].to_vec();
                let seed = self.rng.next_u64();
                let mut ws = Connection::client_seeded(client.spec.frame.clone(), seed, now);
                if let Some(d) = &client.spec.frame.deflate {
                    let answers: Vec<&str> = parsed.extensions.iter().map(String::as_str).collect();
                    match ringwire_frame::deflate::accept_answer(&answers, d) {
                        Ok(Some(params)) => ws.set_deflate(params),
                        Ok(None) => {}
                        Err(e) => {
                            // RFC 7692 §5: an answer the client cannot take fails the
                            // connection.
                            self.lose(key, Cause::HandshakeInvalid(e.to_string()));
                            return None;
                        }
                    }
                }
                c.client_upgraded(ws);
                let acks = crate::outbox::wire::accepted(&parsed.extensions);
                c.set_acks(acks);
                client.health.record_success();
                let app_due =
                    client.spec.config.app_heartbeat.as_ref().map(|h| Tick::of(now + h.interval));
                client.set_app_due(app_due);
                client.app_waiting = false;
                let alert = client.health_alert(&self.stats);
                let change = client.life.up(now);
                let change = client.changed(change);
                let stream = client.spec.config.outbox_stream;
                self.timers.unschedule(key);
                self.schedule(key);
                self.queue_change(key, change);
                self.queue_alert(key, alert);
                if acks {
                    self.client_receiving(key);
                }
                if let Some(stream) = stream {
                    // Before anything the application sends from `on_state`.
                    self.start_resend(key, stream);
                }
                // wss://: the upgrade is through both ways; the record keys rest until
                // the next record each way (many clients wait for a while first).
                self.tls_rest(key);
                return Some(rest);
            }
            Err(HandshakeError::Status(status)) => {
                Cause::HandshakeStatus { status, retry_after: retry_after(head) }
            }
            Err(e) => Cause::HandshakeInvalid(e.to_string()),
        };
        self.lose(key, cause);
        None
    }

    /// The current attempt or connection of client `key` ended with `cause`: the state
    /// machine decides between a retry and the end, and the socket (if there is one
    /// and it is not already being drained or closed) is closed. The record waits for
    /// the socket's close (`socket_gone`) before it moves on.
    pub(crate) fn lose(&mut self, key: Key, cause: Cause) {
        let now = self.now;
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        match &cause {
            Cause::HeartbeatLost | Cause::AppHeartbeatLost => client.health.record_lost(),
            _ if client.life.state() != ClientState::Connected => client.health.record_failure(),
            _ => {}
        }
        tracing::debug!(
            worker = self.id,
            target = client.spec.target.authority,
            %cause,
            failures = client.life.failures(),
            attempt = client.life.attempt(),
            "client connection lost"
        );
        client.shared.reset_queued();
        let alert = client.health_alert(&self.stats);
        self.queue_alert(key, alert);
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        let policy = &client.spec.config.retry;
        let Some((change, retry_at)) = client.life.lost(now, cause, policy, &mut self.rng) else {
            return;
        };
        // In place of the application heartbeat's instant, if it had one.
        client.set_retry_at(retry_at.map(Tick::of));
        if retry_at.is_some() {
            self.dialer.refresh(&client.spec, now);
        }
        let change = client.changed(Some(change));
        self.queue_change(key, change);
        self.end_attempt(key);
    }

    /// Closes the socket of a client's attempt in its connect or upgrade; a client with
    /// no socket moves on at once. An open connection's socket closes through its
    /// close handshake and drain instead. A TLS handshake that failed here (a refused
    /// certificate) sends the alert rustls queued first, so that the server learns why.
    fn end_attempt(&mut self, key: Key) {
        let Some(c) = self.conns.get(key) else { return };
        let alert = matches!(c.phase, Phase::ClientHandshake { .. })
            && !c.closing()
            && self.tls.get(key.slot).is_some_and(|s| !s.out.is_empty());
        if alert {
            self.tls_abandon(key);
            return;
        }
        match c.phase {
            Phase::Connecting { .. } | Phase::ClientHandshake { .. } => self.begin_close(key),
            Phase::Backoff { .. } => self.socket_gone(key),
            _ => {}
        }
    }

    /// Whether `key` is a client connection.
    pub(crate) fn is_client(&self, key: Key) -> bool {
        !self.clients.is_empty() && self.clients.contains_key(&key.slot)
    }

    /// A client's socket is closed (or it had none): it waits for its next attempt,
    /// or, once `Closed`, leaves.
    pub(crate) fn socket_gone(&mut self, key: Key) {
        let now = self.now;
        let retry_at =
            self.clients.get(&key.slot).and_then(Client::retry_at).map(|t| t.instant(now));
        match retry_at {
            Some(at) => {
                // The next attempt starts a new TLS session, if any.
                self.tls.remove(key.slot);
                // An open connection left its topics at its `Closed` event; no other
                // phase has any.
                let Some(c) = self.conns.get_mut(key) else { return };
                c.wait_for_retry(at);
                self.timers.unschedule(key);
                self.schedule(key);
            }
            None => {
                if self.clients.remove(&key.slot).is_some() {
                    let receipt = self.parked.remove(&key.slot);
                    self.client_gone(receipt);
                    if let Some(sink) = self.sinks.remove(&key.slot) {
                        sink.finish();
                    }
                }
                self.remove(key);
            }
        }
    }

    /// The backoff of `key` is over: the next attempt.
    pub(crate) fn retry(&mut self, key: Key) {
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        if client.life.state() == ClientState::Connecting {
            // Waiting for the rate cap, not a backoff: the same attempt goes on.
            self.attempt(key);
            return;
        }
        let change = client.life.retry();
        let change = client.changed(change);
        self.queue_change(key, change);
        self.attempt(key);
    }

    /// The application closes client `key` (a handle's or a handler's close, or the
    /// shutdown): it ends in `Closed` and never reconnects. An open connection closes
    /// with the close handshake (`code`, `reason`).
    pub(crate) fn stop_client(&mut self, key: Key, cause: Cause, code: CloseCode, reason: &str) {
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        client.set_retry_at(None);
        let change = client.life.close(cause);
        let change = client.changed(change);
        self.queue_change(key, change);
        if self.conns.get(key).is_some_and(Conn::is_open) {
            let _ = self.close(key, code, reason);
        } else {
            self.end_attempt(key);
        }
    }

    /// A client's WebSocket connection ended (its `Closed` event): lost, unless the
    /// application closed it.
    pub(crate) fn client_closed(&mut self, key: Key, closed: &ringwire_frame::Closed) {
        let errno = self.clients.get_mut(&key.slot).and_then(Client::take_errno);
        let cause = match (&closed.cause, errno) {
            (ringwire_frame::CloseCause::HeartbeatTimeout, _) => Cause::HeartbeatLost,
            (ringwire_frame::CloseCause::TransportClosed, Some(errno)) => Cause::Io { errno },
            _ => Cause::Closed { code: closed.code.0 },
        };
        self.lose(key, cause);
    }

    /// The socket of client `key` failed with `e`: kept as the cause of the loss that
    /// follows (its `Closed` event only says 1006).
    pub(crate) fn client_errno(&mut self, key: Key, e: Errno) {
        if let Some(client) = self.clients.get_mut(&key.slot) {
            client.set_errno(e.raw_os_error());
        }
    }

    /// A client in its connect or upgrade lost its socket (reset, end of stream).
    pub(crate) fn client_socket_failed(&mut self, key: Key) {
        let Some(c) = self.conns.get(key) else { return };
        if matches!(c.phase, Phase::Connecting { .. } | Phase::ClientHandshake { .. }) {
            let errno = self.clients.get_mut(&key.slot).and_then(Client::take_errno);
            let cause = match errno {
                Some(errno) => Cause::Io { errno },
                None => Cause::Closed { code: CloseCode::ABNORMAL.0 },
            };
            self.lose(key, cause);
        }
    }

    /// An application message arrived on client `key`: its application heartbeat, if it
    /// has one, starts over, and a stream client's message goes to its stream (`None`
    /// then; the message back for the handler otherwise).
    pub(crate) fn client_message(&mut self, key: Key, m: Message) -> Option<Message> {
        let now = self.now;
        let Some(client) = self.clients.get_mut(&key.slot) else { return Some(m) };
        if let (Some(h), Some(_)) = (&client.spec.config.app_heartbeat, client.app_due()) {
            let due = Tick::of(now + h.interval);
            client.set_app_due(Some(due));
            client.app_waiting = false;
        }
        let Some(sink) = self.sinks.get(&key.slot) else { return Some(m) };
        if !sink.push(crate::client::Event::Message(m)) {
            self.stream_overflow(key);
        }
        None
    }

    /// Client `key`'s timer fired: its application heartbeat is sent when due, and the
    /// connection is lost when the answer is late.
    pub(crate) fn app_heartbeat_due(&mut self, key: Key) {
        let now = self.now;
        let Some(client) = self.clients.get_mut(&key.slot) else { return };
        let (Some(h), Some(due)) = (&client.spec.config.app_heartbeat, client.app_due()) else {
            return;
        };
        if now < due.instant(now) || !self.conns.get(key).is_some_and(Conn::is_open) {
            return;
        }
        if client.app_waiting {
            // No answer in time: lost; the close handshake ends the connection.
            self.lose(key, Cause::AppHeartbeatLost);
            let _ = self.close(key, CloseCode::GOING_AWAY, "application heartbeat lost");
            return;
        }
        let (timeout, msg) = (h.timeout, h.message.clone());
        client.app_waiting = true;
        client.set_app_due(Some(Tick::of(now + timeout)));
        let _ = self.enqueue(key, crate::conn::Outgoing::Msg(msg));
    }

    /// A stream client's consumer fell a whole stream behind: closed as a slow
    /// consumer (1008), as a server closes one; it reconnects.
    pub(crate) fn stream_overflow(&mut self, key: Key) {
        // Once: the messages still arriving before the close takes effect overflow too.
        if self.close(key, CloseCode::POLICY, "slow consumer").is_ok() {
            WorkerStats::add(&self.stats.slow_closes, 1);
        }
    }

    /// A pong answered a heartbeat of client `key`.
    pub(crate) fn client_rtt(&mut self, key: Key, rtt: Duration) {
        if let Some(client) = self.clients.get_mut(&key.slot) {
            client.health.record_rtt(rtt);
            let alert = client.health_alert(&self.stats);
            self.queue_alert(key, alert);
        }
    }
}

/// The `Retry-After` of a non-101 answer, in its delay-seconds form (RFC 9110
/// §10.2.3; the HTTP-date form is not read), capped at [`MAX_RETRY_AFTER`].
fn retry_after(head: &[u8]) -> Option<Duration> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(head).ok()?;
    let h = resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("retry-after"))?;
    let secs: u64 = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_are_read_and_capped() {
        let r = |s: &str| retry_after(s.as_bytes());
        assert_eq!(r("HTTP/1.1 503 Busy\r\nRetry-After: 7\r\n\r\n"), Some(Duration::from_secs(7)));
        assert_eq!(r("HTTP/1.1 429 X\r\nretry-after:  99999\r\n\r\n"), Some(MAX_RETRY_AFTER));
        assert_eq!(r("HTTP/1.1 503 X\r\nRetry-After: Fri, 07 Nov 2026 08:49:37 GMT\r\n\r\n"), None);
        assert_eq!(r("HTTP/1.1 503 X\r\n\r\n"), None);
        assert_eq!(r("garbage"), None);
    }
}
