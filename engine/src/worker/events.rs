//! What the worker does with each completion, timer and command: feed the connection's
//! protocol core and run the handler for what comes out. The only place handler
//! callbacks are called, each behind [`Core::call`], which contains a panic to the
//! connection it ran for.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ringwire_frame::handshake::{HandshakeError, Request};
use ringwire_frame::{CloseCode, Closed, Connection, Event, Message, RecvBuffer};

use crate::client::ClientEvent;
use crate::conn::{HandshakeStep, Outgoing, Phase, TimerDue};
use crate::handle::Command;
use crate::handler::{Ctx, Handler, Upgrade};
use crate::log::Noisy;
use crate::shard::{Core, Op, TlsRecv, Window};
use crate::slab::Key;
use crate::stats::WorkerStats;
use crate::sys::{Completion, RecvEnd};

/// What the application is told when its callback panicked.
const PANIC_REASON: &str = "internal error";

impl Core {
    /// Runs one handler callback for `key`, after the client state changes queued
    /// before it (so `on_state` comes before what follows from the change). A panic is
    /// caught here: it is counted and logged, and the connection is closed with 1011;
    /// `None` is returned.
    pub(crate) fn call<H: Handler, R>(
        &mut self,
        handler: &mut H,
        key: Key,
        f: impl FnOnce(&mut H, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        if !self.changes.is_empty() {
            self.flush_changes(handler);
        }
        self.call_now(handler, key, f)
    }

    /// Delivers the queued client state changes to `on_state`, in order.
    pub(crate) fn flush_changes<H: Handler>(&mut self, handler: &mut H) {
        while !self.changes.is_empty() {
            for (key, event) in std::mem::take(&mut self.changes) {
                match event {
                    ClientEvent::State(c) => {
                        self.call_now(handler, key, |h, cx| h.on_state(cx, &c))
                    }
                    ClientEvent::Health(s) => {
                        self.call_now(handler, key, |h, cx| h.on_health(cx, &s))
                    }
                };
            }
        }
    }

    fn call_now<H: Handler, R>(
        &mut self,
        handler: &mut H,
        key: Key,
        f: impl FnOnce(&mut H, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(|| f(handler, &mut Ctx::new(self, key)))) {
            Ok(r) => Some(r),
            Err(payload) => {
                WorkerStats::add(&self.stats.handler_panics, 1);
                if let Some(suppressed) = self.log_limits.allow(Noisy::HandlerPanic, self.now) {
                    tracing::error!(
                        worker = self.id,
                        conn = %crate::ConnId { worker: self.id, key },
                        panic = crate::panic::message(&*payload),
                        suppressed,
                        "handler callback panicked; its connection is closed (1011, or 500 \
                         during the upgrade)"
                    );
                }
                if self.conns.get(key).is_some_and(|c| c.is_open()) {
                    let _ = self.close(key, CloseCode::INTERNAL_ERROR, PANIC_REASON);
                }
                None
            }
        }
    }

    pub(crate) fn on_completion<H: Handler>(&mut self, handler: &mut H, c: Completion<'_>) {
        match c {
            Completion::Accepted(sock) => self.accept(sock),
            Completion::AcceptFailed => {
                WorkerStats::add(&self.stats.accept_errors, 1);
                if let Some(suppressed) = self.log_limits.allow(Noisy::AcceptFailed, self.now) {
                    tracing::warn!(worker = self.id, suppressed, "accept failed");
                }
            }
            Completion::Recv { key, data } => self.on_recv(handler, key, data),
            Completion::RecvEnded { key, why } => self.on_recv_ended(handler, key, why),
            Completion::Sent { key, result, chunks } => self.on_sent(handler, key, result, chunks),
            Completion::Connected { key, result } => self.on_connected(key, result),
            Completion::FdClosed { key } if self.is_client(key) => self.socket_gone(key),
            Completion::FdClosed { key } => self.remove(key),
            Completion::Wake => {}
            Completion::Synced { upto, result } => {
                let error = result.err().map(|e| format!("fdatasync: {e}"));
                self.outbox_synced(handler, upto, error);
            }
        }
    }

    fn on_recv<H: Handler>(&mut self, handler: &mut H, key: Key, data: &mut dyn RecvBuffer) {
        WorkerStats::add(&self.stats.bytes_in, data.len() as u64);
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing() {
            return;
        }
        if c.tls() {
            self.on_tls_recv(handler, key, data);
            return;
        }
        self.on_plain(handler, key, data);
    }

    /// Ciphertext arrived on a TLS connection: its plaintext goes where a plain
    /// connection's bytes go.
    fn on_tls_recv<H: Handler>(&mut self, handler: &mut H, key: Key, data: &mut dyn RecvBuffer) {
        match self.tls_recv(key, data.bytes_from(0)) {
            TlsRecv::Plain { peer_closed, in_place } => {
                if !self.tls.plain.is_empty() {
                    let mut plain = std::mem::take(&mut self.tls.plain);
                    self.on_plain(handler, key, &mut &mut plain[..]);
                    if self.tls.plain.capacity() == 0 {
                        self.tls.plain = plain;
                    }
                }
                // What the record layer left in the receive buffer is read there, and
                // messages are lent from it as on a plain connection.
                if !in_place.is_empty() && self.conns.get(key).is_some_and(|c| !c.closing()) {
                    self.on_plain(handler, key, &mut Window { inner: data, range: in_place });
                }
                // close_notify: the peer's data is over, as with end of stream.
                if peer_closed && self.conns.get(key).is_some_and(|c| !c.closing()) {
                    self.peer_gone(handler, key);
                }
            }
            TlsRecv::Failed(reason) => self.tls_broken(handler, key, reason),
        }
    }

    /// A TLS connection's session failed. During the handshake the alert rustls made
    /// goes out, then the socket closes; an open WebSocket ends as if the peer vanished
    /// (1006).
    fn tls_broken<H: Handler>(&mut self, handler: &mut H, key: Key, reason: String) {
        let Some(c) = self.conns.get(key) else { return };
        match c.phase {
            Phase::Handshake { .. } => {
                WorkerStats::add(&self.stats.handshake_failures, 1);
                self.tls_abandon(key);
            }
            Phase::ClientHandshake { .. } => self.lose(key, crate::client::Cause::Tls(reason)),
            _ => self.peer_gone(handler, key),
        }
    }

    fn on_plain<H: Handler>(&mut self, handler: &mut H, key: Key, data: &mut dyn RecvBuffer) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(key) else { return };
        if c.closing() {
            return;
        }
        match &mut c.phase {
            Phase::Open(ws) => {
                ws.handle_buffer(now, data);
                self.process_events(handler, key);
            }
            Phase::Handshake { .. } => {
                let limits = self.config.handshake_limits;
                match c.handle_handshake(data.bytes_from(0), &limits) {
                    HandshakeStep::Incomplete => {}
                    HandshakeStep::Failed(e) => self.reject(key, &e),
                    HandshakeStep::Done(req, rest) => self.upgrade(handler, key, &req, &rest),
                }
            }
            Phase::ClientHandshake { .. } => {
                let Some(rest) = self.on_client_handshake(key, data.bytes_from(0)) else {
                    return;
                };
                if let Some(ws) = self.conns.get_mut(key).and_then(|c| c.ws()) {
                    ws.handle_bytes(now, &rest);
                }
                self.process_events(handler, key);
            }
            Phase::Draining { .. } | Phase::Connecting { .. } | Phase::Backoff { .. } => {}
        }
    }

    fn upgrade<H: Handler>(&mut self, handler: &mut H, key: Key, req: &Request, rest: &[u8]) {
        if let Some(check) = &self.config.origin_check {
            if !check(req.origin.as_deref()) {
                self.reject(key, &HandshakeError::Rejected(403));
                return;
            }
        }
        if let Some(auth) = &self.config.authorizer {
            match auth.authorize(req) {
                Ok(grant) => {
                    self.grants.insert(key.slot, std::sync::Arc::new(grant));
                }
                Err(status) => {
                    WorkerStats::add(&self.stats.auth_refusals, 1);
                    self.reject(key, &HandshakeError::Rejected(status));
                    return;
                }
            }
        }
        let Some(c) = self.conns.get_mut(key) else { return };
        // Open before `on_open`, so that what the handler sends there is queued (behind
        // the 101, which goes first in `unsent`).
        c.upgrading(Connection::server(self.frame_config.clone(), self.now));
        let answer = self.call(handler, key, |h, cx| h.on_open(cx, req));
        let protocol = match answer {
            Some(Upgrade::Accept) => None,
            Some(Upgrade::AcceptProtocol(p)) => Some(p),
            Some(Upgrade::Reject(status)) => {
                self.reject(key, &HandshakeError::Rejected(status));
                return;
            }
            None => {
                self.reject(key, &HandshakeError::Rejected(500));
                return;
            }
        };
        // After the handler accepted (it may check who the client is): the stream of a
        // client that acknowledges on the wire.
        let extension = match self.take_stream(key, req) {
            Ok(e) => e,
            Err(_) => {
                self.reject(key, &HandshakeError::Rejected(503));
                return;
            }
        };
        // permessage-deflate, when this engine takes it (RFC 7692): the first offer it
        // can accept, answered beside the outbox's extension.
        let deflate =
            self.frame_config.deflate.as_ref().and_then(|cfg| {
                ringwire_frame::deflate::accept_offer(&req.extension_offers(), cfg)
            });
        let extensions: Vec<&str> =
            extension.into_iter().chain(deflate.as_ref().map(|(_, a)| a.as_str())).collect();
        let joined = extensions.join(", ");
        let ext_header =
            (!extensions.is_empty()).then_some(("Sec-WebSocket-Extensions", joined.as_str()));
        let mut resp = Vec::with_capacity(160);
        if let Err(e) = req.accept(protocol.as_deref(), ext_header.as_slice(), &mut resp) {
            // The handler chose a subprotocol the client did not offer: our bug, but
            // the client must not see a broken handshake.
            self.release_stream(key);
            self.reject(key, &e);
            return;
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(key) else { return };
        if let (Some((params, _)), Some(ws)) = (deflate, c.ws()) {
            ws.set_deflate(params);
        }
        c.upgraded(resp.into());
        self.attach_stream(key);
        self.timers.unschedule(key); // the handshake deadline no longer applies
        self.mark_dirty(key);
        if !rest.is_empty() {
            if let Some(ws) = self.conns.get_mut(key).and_then(|c| c.ws()) {
                ws.handle_bytes(now, rest);
            }
        }
        self.process_events(handler, key);
    }

    fn on_recv_ended<H: Handler>(&mut self, handler: &mut H, key: Key, why: RecvEnd) {
        let Some(c) = self.conns.get_mut(key) else { return };
        c.set_recv_armed(false);
        match why {
            RecvEnd::Rearm | RecvEnd::NoBuffers if !c.closing() => {
                c.set_recv_armed(true);
                self.ops.push(Op::StartRecv(key));
            }
            RecvEnd::Eof | RecvEnd::Error(_) if !c.closing() => {
                if matches!(c.phase, Phase::Handshake { .. }) {
                    WorkerStats::add(&self.stats.handshake_failures, 1);
                    WorkerStats::add(&self.stats.handshake_peer_gone, 1);
                }
                if let RecvEnd::Error(e) = why {
                    self.client_errno(key, e);
                }
                self.peer_gone(handler, key);
            }
            _ => self.maybe_finish_close(key),
        }
    }

    /// The peer vanished (end of stream, reset): the protocol core reports the end, and
    /// the socket closes.
    fn peer_gone<H: Handler>(&mut self, handler: &mut H, key: Key) {
        let now = self.now;
        if self.conns.get(key).is_some_and(|c| c.tls()) {
            self.tls_eof(key);
        }
        if self.is_client(key) {
            self.client_socket_failed(key);
        }
        if let Some(ws) = self.conns.get_mut(key).and_then(|c| c.ws()) {
            ws.handle_eof(now);
            self.process_events(handler, key);
        }
        self.begin_close(key);
    }

    fn on_sent<H: Handler>(
        &mut self,
        handler: &mut H,
        key: Key,
        result: Result<usize, rustix::io::Errno>,
        mut chunks: Vec<bytes::Bytes>,
    ) {
        if let Some(c) = self.conns.get_mut(key) {
            match result {
                Ok(n) => {
                    WorkerStats::add(&self.stats.bytes_out, n as u64);
                    if c.tls() {
                        self.tls_sent(key, n, &mut chunks);
                    } else {
                        c.sent(n, &mut chunks);
                    }
                    self.mark_dirty(key);
                    if !self.clients.is_empty() {
                        if let Some(client) = self.clients.get(&key.slot) {
                            client.shared.sub_queued(n);
                        }
                        if self.resending() {
                            self.continue_resend(key);
                        }
                    }
                }
                Err(e) => {
                    c.send_failed();
                    // The peer is gone (reset, broken pipe, TCP_USER_TIMEOUT).
                    if !c.closing() {
                        self.client_errno(key, e);
                        self.peer_gone(handler, key);
                    }
                }
            }
        }
        self.recycle(chunks);
        self.maybe_finish_close(key);
    }

    /// Runs one connection's due timer.
    pub(crate) fn fire_timer<H: Handler>(&mut self, handler: &mut H, key: Key) {
        let Some(c) = self.conns.get_mut(key) else { return };
        match c.timer_due(self.now) {
            TimerDue::HandshakeTimeout => {
                // Slowloris: the upgrade did not complete in time.
                WorkerStats::add(&self.stats.handshake_failures, 1);
                WorkerStats::add(&self.stats.handshake_timeouts, 1);
                if let Some(suppressed) = self.log_limits.allow(Noisy::UpgradeTimeout, self.now) {
                    tracing::info!(
                        worker = self.id,
                        timeout = ?self.config.handshake_timeout,
                        suppressed,
                        "upgrade not complete in time; closed"
                    );
                }
                self.begin_close(key);
            }
            TimerDue::DrainTimeout => self.begin_close(key),
            TimerDue::ConnectTimeout => self.lose(key, crate::client::Cause::ConnectTimeout),
            TimerDue::ClientHandshakeTimeout => {
                self.lose(key, crate::client::Cause::HandshakeTimeout)
            }
            TimerDue::Retry => self.retry(key),
            TimerDue::Protocol => {
                // The protocol core's deadlines come with silence (a heartbeat after
                // the ping interval without inbound data, its pong timeout): a TLS
                // connection's expanded keys can go, and go again once the heartbeat
                // is sealed.
                self.tls_rest_after_send(key);
                self.process_events(handler, key)
            }
            TimerDue::Early => {}
        }
        if self.is_client(key) {
            self.app_heartbeat_due(key);
        }
        self.schedule(key);
    }

    pub(crate) fn run_command<H: Handler>(&mut self, handler: &mut H, cmd: Command) {
        match cmd {
            Command::Send(key, msg) => {
                let _ = self.enqueue(key, Outgoing::Msg(msg));
            }
            Command::CloseClient(close) => {
                let (shared, code, reason) = *close;
                // No key: the dial was refused and the client is already `Closed`.
                if let Some(key) = shared.key() {
                    self.run_command(handler, Command::Close(key, code, reason));
                }
            }
            Command::Close(key, code, reason) if self.is_client(key) => {
                self.stop_client(key, crate::client::Cause::AppClose, code, &reason);
                self.process_events(handler, key);
            }
            Command::Close(key, code, reason) => {
                let _ = self.close(key, code, &reason);
                self.process_events(handler, key);
            }
            Command::Subscribe(key, topic) => {
                let _ = self.subscribe(key, topic);
            }
            Command::Unsubscribe(key, topic) => self.unsubscribe(key, &topic),
            Command::Publish(topic, frame) => self.deliver(&topic, &frame),
            Command::Connect(dial) => self.dial(*dial),
            Command::OutboxSynced { upto, error } => self.outbox_synced(handler, upto, error),
            Command::StreamSend(send) => {
                let (stream, id, msg) = *send;
                if let Err(e) = self.stream_append(stream, id, msg) {
                    WorkerStats::add(&self.stats.outbox_refused, 1);
                    tracing::warn!(worker = self.id, stream, error = %e, "durable send refused");
                }
            }
            Command::StreamAttached { stream, conn } => self.stream_attached(stream, conn),
            Command::StreamDetached { stream, conn } => self.stream_detached(stream, conn),
            Command::StreamAck { stream, upto } => self.stream_acked(handler, stream, upto),
            Command::SendTagged(key, tagged) => self.send_tagged(key, tagged),
            Command::SendDurable(send) => {
                let crate::handle::DurableSend { client, id, msg, reply } = *send;
                // None: the client ended meanwhile, or its dial was refused.
                let key = client.key().filter(|&k| self.conns.get(k).is_some());
                let result = match key {
                    Some(key) => self.send_durable(key, id, msg),
                    None => Err(crate::outbox::DurableError::Closed),
                };
                if let Err(e) = &result {
                    WorkerStats::add(&self.stats.outbox_refused, 1);
                    tracing::warn!(worker = self.id, ?id, error = %e, "durable send refused");
                }
                match (reply, result, key) {
                    (Some(reply), result, _) => {
                        let _ = reply.try_send(result); // the caller may have given up
                    }
                    (None, Err(e), Some(key)) if e != crate::outbox::DurableError::Closed => {
                        self.call(handler, key, |h, cx| h.on_durable_refused(cx, id, &e));
                    }
                    (None, _, _) => {}
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, close every connection with 1001 and give the
    /// close handshakes until the deadline.
    pub(crate) fn start_shutdown<H: Handler>(&mut self, handler: &mut H) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let deadline = self.now + self.config.shutdown_timeout;
        self.shutdown_deadline = Some(deadline);
        self.ops.push(Op::CloseListeners);
        for key in self.conns.keys() {
            if self.is_client(key) {
                let cause = crate::client::Cause::Shutdown;
                self.stop_client(key, cause, CloseCode::GOING_AWAY, "shutdown");
                self.process_events(handler, key);
                self.schedule(key);
                continue;
            }
            let Some(c) = self.conns.get_mut(key) else { continue };
            if c.abandon_handshake(deadline) {
                self.mark_dirty(key);
            } else if c.is_open() {
                let _ = self.close(key, CloseCode::GOING_AWAY, "server shutdown");
                self.process_events(handler, key);
            }
            self.schedule(key);
        }
    }

    /// Ends every connection now: the shutdown's grace time is over.
    pub(crate) fn force_close_all<H: Handler>(&mut self, handler: &mut H) {
        for key in self.conns.keys() {
            self.peer_gone(handler, key);
        }
    }

    /// Runs the handler for every event the protocol core has, in order.
    pub(crate) fn process_events<H: Handler>(&mut self, handler: &mut H, key: Key) {
        // Looked up once, not per message: accepted connections pay nothing more.
        let client = self.is_client(key);
        loop {
            let Some(c) = self.conns.get_mut(key) else { return };
            let Some(ws) = c.ws() else { return };
            if ws.close_is_next() {
                // The peer's close (or a protocol failure) comes after the messages the
                // handler just answered: their answers, and anything else accepted for
                // sending, go out before the close frame the next poll queues.
                c.feed_core(usize::MAX, &self.stats);
            }
            let acks = c.acks();
            let Some(ws) = c.ws() else { return };
            let Some(ev) = ws.poll_event() else { break };
            match ev {
                Event::Message(m) if acks => self.receive_durable(handler, key, m, client),
                Event::Message(m) => {
                    WorkerStats::add(&self.stats.messages_in, 1);
                    let m = if client {
                        match self.client_message(key, m) {
                            Some(m) => m,
                            None => continue, // it went to the client's stream
                        }
                    } else {
                        m
                    };
                    self.call(handler, key, |h, cx| h.on_message(cx, m));
                }
                Event::Pong(p) if acks => {
                    if self.durable_tag(key, &p.payload) {
                        continue;
                    }
                    if client {
                        if let Some((upto, n)) = self.wire_ack(key, &p.payload) {
                            self.call(handler, key, |h, cx| h.on_acked(cx, upto, n));
                            continue;
                        }
                    } else if self.stream_ack_in(handler, key, &p.payload) {
                        continue;
                    }
                    if let Some(rtt) = p.rtt {
                        self.stats.record_rtt(rtt);
                        if client {
                            self.client_rtt(key, rtt);
                        }
                        // The answer to a heartbeat, which went out after silence.
                        self.tls_rest(key);
                    }
                    self.call(handler, key, |h, cx| h.on_pong(cx, p.rtt));
                }
                Event::Pong(p) => {
                    if let Some(rtt) = p.rtt {
                        self.stats.record_rtt(rtt);
                        if client {
                            self.client_rtt(key, rtt);
                        }
                        // The answer to a heartbeat, which went out after silence.
                        self.tls_rest(key);
                    }
                    self.call(handler, key, |h, cx| h.on_pong(cx, p.rtt));
                }
                Event::Closed(closed) => {
                    self.stats.count_close(closed.code.0, &closed.cause);
                    if let ringwire_frame::CloseCause::Error(e) = &closed.cause {
                        if let Some(suppressed) =
                            self.log_limits.allow(Noisy::ProtocolError, self.now)
                        {
                            tracing::info!(
                                worker = self.id,
                                code = closed.code.0,
                                error = %e,
                                suppressed,
                                "closed: the peer broke the protocol"
                            );
                        }
                    }
                    self.on_closed(handler, key, &closed);
                    return;
                }
                _ => {}
            }
        }
        self.send_receipt(key);
        if let Some(ws) = self.conns.get_mut(key).and_then(|c| c.ws()) {
            if ws.has_transmit() {
                self.mark_dirty(key);
            } else {
                // Nothing to send: this lets the core free its buffers if it is idle.
                let _ = ws.poll_transmit();
            }
        }
        self.schedule(key);
    }

    fn on_closed<H: Handler>(&mut self, handler: &mut H, key: Key, closed: &Closed) {
        self.drain(key);
        self.release_stream(key);
        if let Some(sink) = self.client_sink(key) {
            sink.push(crate::client::Event::Closed(closed.clone()));
        } else {
            self.call(handler, key, |h, cx| h.on_close(cx, closed));
        }
        if self.is_client(key) {
            self.client_closed(key, closed);
        }
    }

    /// A message on a connection that acknowledges on the wire: through the duplicate
    /// filter, then to the handler (a durable one with [`Ctx::delivery`] set), or to a
    /// client's stream.
    fn receive_durable<H: Handler>(&mut self, handler: &mut H, key: Key, m: Message, client: bool) {
        WorkerStats::add(&self.stats.messages_in, 1);
        let delivery = match self.filter(key) {
            None => None,
            Some(None) => return, // a copy
            Some(Some(d)) => Some(d),
        };
        let m = if client { self.client_message(key, m) } else { Some(m) };
        let mut ok = true;
        if let Some(m) = m {
            self.delivering = delivery;
            ok = self.call(handler, key, |h, cx| h.on_message(cx, m)).is_some();
            self.delivering = None;
        }
        if delivery.is_some() {
            self.delivered(key, ok);
        }
    }

    /// The connection drained below its low watermark after being over the limit.
    pub(crate) fn writable<H: Handler>(&mut self, handler: &mut H, key: Key) {
        self.call(handler, key, |h, cx| h.on_writable(cx));
    }
}
