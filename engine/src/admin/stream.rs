//! `GET /stream`: the engine's figures once a second as JSON text messages over a
//! WebSocket, what the dashboard page draws. The WebSocket is ringwire's own protocol
//! core (`ringwire-frame`) over the admin thread's blocking socket: the upgrade checked
//! by its parser, heartbeats, the close handshake, limits on what the browser may send.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringwire_frame::handshake::{self, HandshakeLimits};
use ringwire_frame::{CloseCode, Config, Connection, Event};

use super::{respond, AdminState, Request};
use crate::stats::{StatsSnapshot, RTT_BUCKETS_US};

/// How often the figures go out.
const EVERY: Duration = Duration::from_secs(1);

/// Serves one stream until the browser leaves, stops reading, or the listener stops.
pub(super) fn serve(s: &mut TcpStream, req: &Request, state: &Arc<AdminState>) {
    let upgrade = match handshake::parse_request(&req.head, &HandshakeLimits::default()) {
        Ok(Some((r, _))) => r,
        Ok(None) => return,
        Err(e) => {
            let _ = respond(s, e.status(), "text/plain", format!("{e}\n").as_bytes(), false);
            return;
        }
    };
    // A page of another site in an operator's browser must not read the figures: a
    // browser names the page's origin, and only this listener's own page may connect.
    if let Some(origin) = &upgrade.origin {
        if !same_origin(origin, &upgrade.host) {
            let _ = respond(s, 403, "text/plain", b"cross-origin stream refused\n", false);
            return;
        }
    }
    let mut out = Vec::with_capacity(256);
    if upgrade.accept(None, &[], &mut out).is_err() || s.write_all(&out).is_err() {
        return;
    }
    let config = Config::default()
        .max_message_size(4096)
        .max_frame_size(4096)
        .ping_interval(Some(Duration::from_secs(20)));
    let mut ws = Connection::server(config, Instant::now());
    let _watch = Watch::new(state);
    if !req.rest.is_empty() {
        ws.handle_bytes(Instant::now(), &req.rest);
    }
    let mut next = Instant::now();
    let mut buf = [0u8; 4096];
    let mut stopping = false;
    loop {
        let now = Instant::now();
        if state.stop.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            let _ = ws.close(now, CloseCode::GOING_AWAY, "admin listener stopping");
        }
        if now >= next && !ws.is_closed() && !stopping {
            next = now + EVERY;
            let _ = ws.send_text(&figures(state));
        }
        if ws.poll_timeout().is_some_and(|t| t <= now) {
            ws.handle_timeout(now);
        }
        while let Some(ev) = ws.poll_event() {
            if matches!(ev, Event::Closed(_)) {
                stopping = true;
            }
        }
        while let Some(chunk) = ws.poll_transmit() {
            if s.write_all(&chunk).is_err() {
                return; // gone, or not reading: the write deadline ended it
            }
        }
        if ws.is_closed() {
            return;
        }
        let wake = ws.poll_timeout().map_or(next, |t| t.min(next));
        let wait = wake.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = s.set_read_timeout(Some(wait.min(EVERY)));
        match s.read(&mut buf) {
            Ok(0) => ws.handle_eof(Instant::now()),
            Ok(n) => ws.handle_bytes(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => ws.handle_eof(Instant::now()),
        }
    }
}

/// Whether a browser's `Origin` names the host it asked (`http://HOST[:port]`).
fn same_origin(origin: &str, host: &str) -> bool {
    origin.strip_prefix("http://").is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// Counts this stream among the workers' topic watchers while it lives.
struct Watch<'a>(&'a AdminState);

impl<'a> Watch<'a> {
    fn new(state: &'a AdminState) -> Self {
        for w in state.shared.iter() {
            w.watch_topics(true);
        }
        Self(state)
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        for w in self.0.shared.iter() {
            w.watch_topics(false);
        }
    }
}

/// The figures as one JSON object (see the dashboard page for the fields).
pub(super) fn figures(state: &AdminState) -> String {
    let snaps: Vec<StatsSnapshot> = state.stats.iter().map(|s| s.snapshot()).collect();
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut j = String::with_capacity(2048);
    let _ = write!(
        j,
        r#"{{"t":{ms},"backend":"{}","ready":{},"rtt_bounds_us":{:?},"workers":["#,
        state.backend,
        state.ready(),
        RTT_BUCKETS_US
    );
    for (i, s) in snaps.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let c = &s.closes_by_cause;
        let _ = write!(
            j,
            r#"{{"up":{},"connections":{},"accepted":{},"messages_in":{},"messages_out":{},"bytes_in":{},"bytes_out":{},"drops":{},"slow_closes":{},"handshake_failures":{},"heartbeats_missed":{},"protocol_errors":{},"clients":{},"clients_connected":{},"timers":{},"send_queue_bytes":{},"backpressured":{},"rtt":{:?},"rtt_sum_us":{},"closes":["#,
            s.workers_up,
            s.connections,
            s.accepted,
            s.messages_in,
            s.messages_out,
            s.bytes_in,
            s.bytes_out,
            s.drops,
            s.slow_closes,
            s.handshake_failures,
            c.heartbeat_timeout,
            c.protocol_error,
            s.clients,
            s.clients_connected,
            s.timers,
            s.send_queue_bytes,
            s.backpressured,
            s.rtt.buckets,
            s.rtt.sum_us,
        );
        for (k, (code, n)) in s.closes_by_code.iter().enumerate() {
            if k > 0 {
                j.push(',');
            }
            match code {
                Some(code) => {
                    let _ = write!(j, "[{code},{n}]");
                }
                None => {
                    let _ = write!(j, "[null,{n}]");
                }
            }
        }
        j.push_str("]}");
    }
    j.push_str(r#"],"topics":["#);
    // A topic's subscribers add up over the workers; a publish reaches every worker,
    // each counting it once, so the largest count is the topic's.
    let mut topics: Vec<(crate::handle::Topic, u64, u64)> = Vec::new();
    for w in state.shared.iter() {
        for (name, subs, published) in w.top_topics() {
            match topics.iter_mut().find(|t| t.0 == name) {
                Some(t) => {
                    t.1 += subs;
                    t.2 = t.2.max(published);
                }
                None => topics.push((name, subs, published)),
            }
        }
    }
    topics.sort_by_key(|t| std::cmp::Reverse((t.2, t.1)));
    topics.truncate(crate::worker::TOP_TOPICS);
    for (k, (name, subs, published)) in topics.iter().enumerate() {
        if k > 0 {
            j.push(',');
        }
        j.push('[');
        json_string(&mut j, name);
        let _ = write!(j, ",{subs},{published}]");
    }
    j.push_str("]}");
    j
}

/// Appends `s` as a JSON string (RFC 8259 §7: quote, backslash and control characters
/// escaped).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}e\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001e\u2028é""#);
    }

    #[test]
    fn only_the_listeners_own_pages_may_stream() {
        assert!(same_origin("http://127.0.0.1:9100", "127.0.0.1:9100"));
        assert!(same_origin("http://LOCALHOST:9100", "localhost:9100"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:9100"));
        assert!(!same_origin("https://127.0.0.1:9100", "127.0.0.1:9100"));
        assert!(!same_origin("null", "127.0.0.1:9100"));
    }
}
