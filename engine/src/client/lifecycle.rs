//! The client's reconnect state machine, sans-IO: the worker reports what happened
//! (dialled, upgraded, lost, retry timer fired, closed) and the machine answers with the
//! state change, if any, and when to retry. It reads no clock and draws no randomness by
//! itself; `now` and the [`Rng`] are passed in.

use std::fmt;
use std::time::{Duration, Instant};

use super::backoff::{Backoff, Rng};
use crate::clock::{Secs, Tick};

/// The longest `Retry-After` honoured: a server asking for more is retried after 1 hour
/// anyway, so a typo or a hostile header cannot park a client for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The longest wait [`Lifecycle::lost`] schedules, whatever the (unvalidated) backoff.
const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// The longest a failing streak counts as having lasted for the backoff's ceiling
/// (`Backoff::ceiling_after`): 20 days, within a [`Tick`]'s reach of now. A ceiling still
/// growing after 20 days of failures (a factor within 5% of 1 with a day's maximum)
/// stops growing there.
const FAILING_REACH: Duration = Duration::from_secs(20 * 86_400);
// With the two days between failures that the longest backoff and `stable_after` allow.
const _: () = assert!(FAILING_REACH.as_secs() + 2 * 86_400 < crate::clock::TICK_REACH.as_secs());

/// Where a client connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Created, not dialled yet.
    Disconnected,
    /// TCP connect or the WebSocket upgrade is in progress.
    Connecting,
    /// The upgrade succeeded; messages flow.
    Connected,
    /// The connection was lost or an attempt failed; a retry is scheduled.
    Reconnecting,
    /// Terminal: closed by the application, by the engine, or given up.
    Closed,
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Closed => "closed",
        })
    }
}

/// Why a state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The application asked to connect.
    Requested,
    /// A backoff delay ran out; `attempt` counts the retries since the last stable
    /// connection (or the first dial), from 1.
    Retry {
        /// The retry's number, from 1 (it stops growing at 65,535).
        attempt: u32,
    },
    /// The server accepted the WebSocket upgrade (101).
    Upgraded,
    /// TCP connect failed, e.g. `ECONNREFUSED` (111).
    ConnectFailed {
        /// The `errno` connect reported.
        errno: i32,
    },
    /// TCP connect did not complete in time.
    ConnectTimeout,
    /// The server did not complete the upgrade in time.
    HandshakeTimeout,
    /// The server answered the upgrade with a status other than 101.
    HandshakeStatus {
        /// The HTTP status code.
        status: u16,
        /// The response's `Retry-After` (RFC 9110 §10.2.3), if it had a usable one.
        retry_after: Option<Duration>,
    },
    /// The 101 broke RFC 6455 §4.1: a bad `Sec-WebSocket-Accept`, an extension or
    /// subprotocol we did not offer, or a malformed response. The string is the error's
    /// text.
    HandshakeInvalid(String),
    /// `wss://`: the TLS handshake failed (the server's certificate refused: wrong
    /// name, unknown authority, expired; no parameters in common; garbage instead of
    /// TLS). The string is rustls's reason.
    Tls(String),
    /// The WebSocket connection ended with this close code (RFC 6455 §7.4); 1006 when it
    /// vanished without a close frame.
    Closed {
        /// The close code.
        code: u16,
    },
    /// No answer to a ping within the pong timeout.
    HeartbeatLost,
    /// No application message within the application heartbeat's timeout
    /// ([`crate::client::AppHeartbeat`]).
    AppHeartbeatLost,
    /// The socket failed.
    Io {
        /// The `errno` of the failed operation.
        errno: i32,
    },
    /// The application closed the client.
    AppClose,
    /// `max_attempts` attempts failed in a row.
    GaveUp {
        /// The failed attempts in a row.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Cause>,
    },
    /// The engine shuts down.
    Shutdown,
}

/// The operating system's text for `errno`, lowercased, as "connection refused (errno 111)"
/// (std's own ends "(os error 111)").
fn os_text(errno: i32) -> String {
    let full = std::io::Error::from_raw_os_error(errno).to_string();
    let mut text = full.strip_suffix(&format!(" (os error {errno})")).unwrap_or(&full).to_owned();
    // "Connection refused" reads "connection refused"; an acronym ("I/O") stays as it is.
    let mut chars = text.chars();
    if let (Some(a), Some(b)) = (chars.next(), chars.next()) {
        if a.is_ascii_uppercase() && b.is_ascii_lowercase() {
            text[..1].make_ascii_lowercase();
        }
    }
    format!("{text} (errno {errno})")
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("connect requested"),
            Self::Retry { attempt } => write!(f, "retry {attempt}"),
            Self::Upgraded => f.write_str("upgrade accepted"),
            Self::ConnectFailed { errno } => write!(f, "connect failed: {}", os_text(*errno)),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::HandshakeTimeout => f.write_str("upgrade handshake timed out"),
            Self::HandshakeStatus { status, retry_after } => {
                write!(f, "upgrade refused with HTTP {status}")?;
                match retry_after {
                    Some(d) => write!(f, " (retry after {d:?})"),
                    None => Ok(()),
                }
            }
            Self::HandshakeInvalid(e) => write!(f, "invalid upgrade response: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Closed { code: 1006 } => f.write_str("connection lost (1006, no close frame)"),
            Self::Closed { code } => write!(f, "connection closed with code {code}"),
            Self::HeartbeatLost => f.write_str("no pong within the pong timeout"),
            Self::AppHeartbeatLost => {
                f.write_str("no application message within the application heartbeat's timeout")
            }
            Self::Io { errno } => write!(f, "socket error: {}", os_text(*errno)),
            Self::AppClose => f.write_str("closed by the application"),
            Self::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} failed attempts, the last: {last}")
            }
            Self::Shutdown => f.write_str("engine shutting down"),
        }
    }
}

/// One transition of a client's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The state before.
    pub from: ClientState,
    /// The state after.
    pub to: ClientState,
    /// Why.
    pub cause: Cause,
}

/// When and whether a client reconnects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetryPolicy {
    /// The delay schedule and its limits. Default [`Backoff::default`].
    pub backoff: Backoff,
    /// Retry even after a 4xx answer to the upgrade (other than 408 and 429, which are
    /// always retried). Default `false`: a 401, 403 or 404 means the request is wrong
    /// (RFC 9110 §15.5) and will be refused the same way next time.
    pub retry_client_errors: bool,
}

impl RetryPolicy {
    /// Whether `cause` ends the client instead of scheduling a retry:
    ///
    /// - `HandshakeStatus` 4xx other than 408 (Request Timeout) and 429 (Too Many
    ///   Requests): permanent unless [`RetryPolicy::retry_client_errors`], since the
    ///   server judged the request itself wrong. 408 and 429 are about timing, 5xx about
    ///   the server's own state, and any other status (e.g. a 3xx, which is not followed)
    ///   may change: retried.
    /// - `HandshakeInvalid`: permanent. A server that breaks the protocol will not mend
    ///   itself, and hammering it helps no one.
    /// - `Tls`: permanent, for the same reason: a certificate that does not verify, or a
    ///   server with no TLS parameters in common, is refused the same way next time.
    ///   (A TLS connection lost after its handshake is `Closed { code: 1006 }`: retried.)
    /// - `AppClose`, `GaveUp`, `Shutdown`: they end the client by definition.
    /// - Everything else (refused or failed connects, timeouts, close codes, lost
    ///   heartbeats, socket errors): retried.
    pub fn is_permanent(&self, cause: &Cause) -> bool {
        match cause {
            Cause::HandshakeStatus { status, .. } => {
                (400..500).contains(status)
                    && !matches!(*status, 408 | 429)
                    && !self.retry_client_errors
            }
            Cause::HandshakeInvalid(_)
            | Cause::Tls(_)
            | Cause::AppClose
            | Cause::GaveUp { .. }
            | Cause::Shutdown => true,
            _ => false,
        }
    }
}

/// The reconnect state machine of one client.
///
/// The state changes only through the methods below, each of which performs one legal
/// transition or returns `None` and changes nothing (the event means nothing in this
/// state, e.g. a late error after the client closed), so an illegal transition cannot be
/// expressed:
///
/// ```text
///                dial                    up
///  Disconnected ──────▶ Connecting ────────────▶ Connected
///   (Requested)          ▲     │     (Upgraded)      │
///                  retry │     │ lost                │ lost
///                (Retry) │     ▼                     │
///                      Reconnecting ◀────────────────┘
///
///  lost, permanent or given up:  Connecting, Connected ──▶ Closed
///  close (AppClose, Shutdown):   every state but Closed ──▶ Closed (terminal)
/// ```
///
/// Two counters drive the schedule, both reset by the loss of a stable connection (one
/// that stayed up at least `stable_after`):
///
/// - `attempt`, the retries scheduled since then: retry `n` (from 0) waits up to
///   `backoff.ceiling(n)`, and [`Cause::Retry`] carries `n + 1`. So the first retry after
///   a lost stable connection, like the first after a failed dial, draws from
///   `[0, initial]`, and every failure since grows the ceiling.
/// - `failures`, the failed attempts in a row since then, for `max_attempts`: a dial or
///   retry that never connected, or a connection lost before it was stable (a server that
///   accepts and drops at once fails the same way as one that refuses). The loss of a
///   stable connection is no failed attempt, so it never gives up by itself; `Some(m)`
///   grants `m` failed attempts after it.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    state: ClientState,
    /// Saturates at 65,535 (the backoff's ceiling is long reached by then).
    attempt: u16,
    failures: u32,
    /// To the second (rounded up: a connection counts as stable at most a second late),
    /// so that it takes 4 bytes and does not wrap for a connection up for months.
    connected_at: Option<Secs>,
    /// When the failures since the last stable connection began (the backoff's
    /// ceiling grows no faster than time: `Backoff::ceiling_after`). A 4-byte tick, so
    /// it is kept within [`FAILING_REACH`] of now (see [`Lifecycle::lost`]).
    failing_since: Option<Tick>,
}

impl Lifecycle {
    /// A client not dialled yet.
    pub(crate) fn new() -> Self {
        Self {
            state: ClientState::Disconnected,
            attempt: 0,
            failures: 0,
            connected_at: None,
            failing_since: None,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> ClientState {
        self.state
    }

    /// Retries scheduled since the last stable connection: the exponent of the next delay.
    pub(crate) fn attempt(&self) -> u32 {
        u32::from(self.attempt)
    }

    /// Failed attempts in a row since the last stable connection.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    fn go(&mut self, to: ClientState, cause: Cause) -> StateChange {
        let from = std::mem::replace(&mut self.state, to);
        StateChange { from, to, cause }
    }

    /// Disconnected → Connecting ([`Cause::Requested`]).
    pub(crate) fn dial(&mut self) -> Option<StateChange> {
        (self.state == ClientState::Disconnected)
            .then(|| self.go(ClientState::Connecting, Cause::Requested))
    }

    /// Connecting → Connected ([`Cause::Upgraded`]), remembering `now` to judge later
    /// whether the connection was stable.
    pub(crate) fn up(&mut self, now: Instant) -> Option<StateChange> {
        if self.state != ClientState::Connecting {
            return None;
        }
        self.connected_at = Some(Secs::of(now));
        Some(self.go(ClientState::Connected, Cause::Upgraded))
    }

    /// An attempt failed (from Connecting) or the connection was lost (from Connected).
    ///
    /// A permanent `cause` (see [`RetryPolicy::is_permanent`]) → Closed with that cause.
    /// Otherwise, after the stable reset (see the type's doc): if the failed attempts in a
    /// row reach `max_attempts` → Closed with [`Cause::GaveUp`], which carries `cause` as
    /// its `last`; else → Reconnecting
    /// with `cause`, and the instant to call [`Lifecycle::retry`] at: `now` plus the
    /// backoff delay, or plus the `Retry-After` of a 429 or 503 where that is longer
    /// (capped at 1 hour; RFC 6585 §4, RFC 9110 §10.2.3).
    pub(crate) fn lost(
        &mut self,
        now: Instant,
        cause: Cause,
        policy: &RetryPolicy,
        rng: &mut Rng,
    ) -> Option<(StateChange, Option<Instant>)> {
        let was = self.state;
        if !matches!(was, ClientState::Connecting | ClientState::Connected) {
            return None;
        }
        let connected_at = self.connected_at.take();
        if policy.is_permanent(&cause) {
            return Some((self.go(ClientState::Closed, cause), None));
        }
        let stable = was == ClientState::Connected
            && connected_at.is_some_and(|t| t.elapsed(now) >= policy.backoff.stable_after);
        if stable {
            self.attempt = 0;
            self.failures = 0;
            self.failing_since = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            if policy.backoff.max_attempts.is_some_and(|m| self.failures >= m) {
                let attempts = self.failures;
                let gave_up = Cause::GaveUp { attempts, last: Box::new(cause) };
                return Some((self.go(ClientState::Closed, gave_up), None));
            }
        }
        let since = *self.failing_since.get_or_insert(Tick::of(now));
        let mut elapsed = since.elapsed(now);
        if elapsed > FAILING_REACH {
            // Failing for weeks: counted as `FAILING_REACH`, so that the tick stays near
            // enough to now to read back (the next failure comes within a day or two:
            // the backoff's ceiling and `stable_after` are at most a day each).
            elapsed = FAILING_REACH;
            self.failing_since = Some(Tick::before(now, FAILING_REACH));
        }
        let mut wait = policy.backoff.delay_after(u32::from(self.attempt), elapsed, rng);
        if let Cause::HandshakeStatus { status: 429 | 503, retry_after: Some(after) } = cause {
            wait = wait.max(after.min(MAX_RETRY_AFTER));
        }
        self.attempt = self.attempt.saturating_add(1);
        // An `Instant` this close to its end does not occur; retry at once rather than panic.
        let at = now.checked_add(wait.min(MAX_WAIT)).unwrap_or(now);
        Some((self.go(ClientState::Reconnecting, cause), Some(at)))
    }

    /// Reconnecting → Connecting ([`Cause::Retry`]), when the retry instant came.
    pub(crate) fn retry(&mut self) -> Option<StateChange> {
        let attempt = u32::from(self.attempt);
        (self.state == ClientState::Reconnecting)
            .then(|| self.go(ClientState::Connecting, Cause::Retry { attempt }))
    }

    /// Any state but Closed → Closed, with `cause` ([`Cause::AppClose`] or
    /// [`Cause::Shutdown`]); `None` once closed.
    pub(crate) fn close(&mut self, cause: Cause) -> Option<StateChange> {
        (self.state != ClientState::Closed).then(|| self.go(ClientState::Closed, cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClientState::*;

    const ALL: [ClientState; 5] = [Disconnected, Connecting, Connected, Reconnecting, Closed];

    fn refused() -> Cause {
        Cause::ConnectFailed { errno: 111 }
    }

    fn status(status: u16, retry_after: Option<Duration>) -> Cause {
        Cause::HandshakeStatus { status, retry_after }
    }

    /// A lifecycle driven through legal steps into `s`.
    fn reach(s: ClientState, t: Instant) -> Lifecycle {
        let (p, mut rng, mut l) = (RetryPolicy::default(), Rng::new(1), Lifecycle::new());
        if s != Disconnected {
            l.dial().unwrap();
        }
        match s {
            Connected => assert!(l.up(t).is_some()),
            Reconnecting => assert!(l.lost(t, refused(), &p, &mut rng).is_some()),
            Closed => assert!(l.close(Cause::AppClose).is_some()),
            _ => {}
        }
        assert_eq!(l.state(), s);
        l
    }

    #[test]
    fn every_legal_transition_and_its_cause() {
        let (t, p, mut rng) = (Instant::now(), RetryPolicy::default(), Rng::new(3));
        let mut l = Lifecycle::new();
        let ch = |from, to, cause| StateChange { from, to, cause };
        assert_eq!(l.dial(), Some(ch(Disconnected, Connecting, Cause::Requested)));
        assert_eq!(l.up(t), Some(ch(Connecting, Connected, Cause::Upgraded)));
        let (c, at) = l.lost(t, Cause::Closed { code: 1006 }, &p, &mut rng).unwrap();
        assert_eq!(c, ch(Connected, Reconnecting, Cause::Closed { code: 1006 }));
        assert!(at.unwrap() <= t + Duration::from_secs(1), "first retry within initial");
        assert_eq!(l.retry(), Some(ch(Reconnecting, Connecting, Cause::Retry { attempt: 1 })));
        let (c, at) = l.lost(t, Cause::ConnectTimeout, &p, &mut rng).unwrap();
        assert_eq!((c, at.is_some()), (ch(Connecting, Reconnecting, Cause::ConnectTimeout), true));
        assert_eq!(l.retry(), Some(ch(Reconnecting, Connecting, Cause::Retry { attempt: 2 })));
        let (c, at) = l.lost(t, status(404, None), &p, &mut rng).unwrap();
        assert_eq!((c, at), (ch(Connecting, Closed, status(404, None)), None));
        for s in [Disconnected, Connecting, Connected, Reconnecting] {
            let want = ch(s, Closed, Cause::Shutdown);
            assert_eq!(reach(s, t).close(Cause::Shutdown), Some(want));
        }
    }

    #[test]
    fn illegal_events_change_nothing_in_any_state() {
        let (t, p) = (Instant::now(), RetryPolicy::default());
        for s in ALL {
            let legal = |e: &str| match e {
                "dial" => s == Disconnected,
                "up" => s == Connecting,
                "lost" => matches!(s, Connecting | Connected),
                "retry" => s == Reconnecting,
                _ => s != Closed,
            };
            for e in ["dial", "up", "lost", "retry", "close"] {
                let mut l = reach(s, t);
                let before = (l.state(), l.attempt(), l.failures(), l.connected_at);
                let got = match e {
                    "dial" => l.dial(),
                    "up" => l.up(t),
                    "lost" => l.lost(t, refused(), &p, &mut Rng::new(9)).map(|x| x.0),
                    "retry" => l.retry(),
                    _ => l.close(Cause::AppClose),
                };
                assert_eq!(got.is_some(), legal(e), "{e} in {s}");
                if let Some(c) = got {
                    assert_eq!((c.from, c.to), (s, l.state()), "{e} in {s}");
                } else {
                    let after = (l.state(), l.attempt(), l.failures(), l.connected_at);
                    assert_eq!(before, after, "{e} in {s}");
                }
            }
        }
    }

    #[test]
    fn client_errors_are_permanent_unless_asked() {
        let p = RetryPolicy::default();
        let permanent = |c: &[u16]| c.iter().filter(|&&s| p.is_permanent(&status(s, None))).count();
        assert_eq!(permanent(&[400, 401, 403, 404, 426, 499]), 6);
        assert_eq!(permanent(&[408, 429, 500, 502, 503, 504, 301, 200]), 0);
        let ends = [Cause::HandshakeInvalid("bad accept".into()), Cause::AppClose, Cause::Shutdown];
        let gave_up = Cause::GaveUp { attempts: 3, last: Box::new(refused()) };
        assert!(ends.iter().chain([&gave_up]).all(|c| p.is_permanent(c)));
        let passing = [
            refused(),
            Cause::HeartbeatLost,
            Cause::Io { errno: 104 },
            Cause::Closed { code: 1011 },
        ];
        assert!(!passing.iter().any(|c| p.is_permanent(c)));
        let lax = RetryPolicy { retry_client_errors: true, ..p };
        assert!(!lax.is_permanent(&status(403, None)));
        assert!(lax.is_permanent(&Cause::HandshakeInvalid("x".into())), "still permanent");
        let mut l = reach(Connecting, Instant::now());
        let (c, at) = l.lost(Instant::now(), status(403, None), &lax, &mut Rng::new(1)).unwrap();
        assert_eq!((c.to, at.is_some()), (Reconnecting, true));
    }

    #[test]
    fn retry_after_is_honoured_for_429_and_503_and_capped() {
        let (t, p) = (Instant::now(), RetryPolicy::default());
        let after = |s, d| {
            let mut l = reach(Connecting, t);
            let (_, at) = l.lost(t, status(s, Some(d)), &p, &mut Rng::new(5)).unwrap();
            at.unwrap() - t
        };
        let minute = Duration::from_secs(60);
        assert_eq!(after(429, minute), minute);
        assert_eq!(after(503, minute), minute);
        assert_eq!(after(503, Duration::from_secs(7 * 86_400)), MAX_RETRY_AFTER);
        assert_eq!(after(503, Duration::MAX), MAX_RETRY_AFTER);
        assert!(after(500, minute) <= Duration::from_secs(1), "500's header is ignored");
        assert!(after(429, Duration::ZERO) <= Duration::from_secs(1), "backoff still applies");
    }

    #[test]
    fn a_stable_connection_resets_the_schedule() {
        let (t0, p, mut rng) = (Instant::now(), RetryPolicy::default(), Rng::new(2));
        let mut l = reach(Connecting, t0);
        for _ in 0..4 {
            l.lost(t0, refused(), &p, &mut rng).unwrap();
            l.retry().unwrap();
        }
        assert_eq!((l.attempt(), l.failures()), (4, 4));
        // Up 1 s then lost: not stable, one more failure, the ceiling keeps growing.
        l.up(t0).unwrap();
        l.lost(t0 + Duration::from_secs(1), Cause::HeartbeatLost, &p, &mut rng).unwrap();
        assert_eq!((l.attempt(), l.failures()), (5, 5));
        assert_eq!(p.backoff.ceiling(l.attempt()), Duration::from_secs(30));
        l.retry().unwrap();
        // Up 31 s then lost: stable, the next delay draws from [0, initial] again.
        let t1 = t0 + Duration::from_secs(100);
        l.up(t1).unwrap();
        let lost_at = t1 + Duration::from_secs(31);
        let (c, at) = l.lost(lost_at, Cause::Closed { code: 1001 }, &p, &mut rng).unwrap();
        assert_eq!(c.to, Reconnecting);
        assert!(at.unwrap() - lost_at <= p.backoff.initial);
        assert_eq!((l.attempt(), l.failures()), (1, 0));
        assert_eq!(l.retry().unwrap().cause, Cause::Retry { attempt: 1 });
    }

    #[test]
    fn max_attempts_gives_up_after_exactly_m_failures() {
        let t = Instant::now();
        let backoff = Backoff { max_attempts: Some(3), ..Backoff::default() };
        let p = RetryPolicy { backoff, ..RetryPolicy::default() };
        let mut rng = Rng::new(4);
        let mut l = reach(Connecting, t);
        for _ in 0..2 {
            let (c, _) = l.lost(t, refused(), &p, &mut rng).unwrap();
            assert_eq!(c.to, Reconnecting);
            l.retry().unwrap();
        }
        let (c, at) = l.lost(t, refused(), &p, &mut rng).unwrap();
        let gave_up = Cause::GaveUp { attempts: 3, last: Box::new(refused()) };
        assert_eq!((c.to, c.cause, at), (Closed, gave_up, None));
        // After a stable connection the loss itself is no failed attempt: m more are granted.
        let mut l = reach(Connected, t);
        let later = t + Duration::from_secs(60);
        assert_eq!(l.lost(later, Cause::HeartbeatLost, &p, &mut rng).unwrap().0.to, Reconnecting);
        for n in 1..=3 {
            l.retry().unwrap();
            let (c, _) = l.lost(later, refused(), &p, &mut rng).unwrap();
            assert_eq!(c.to, if n < 3 { Reconnecting } else { Closed }, "failure {n}");
        }
    }

    /// (That Closed is terminal is in `illegal_events_change_nothing_in_any_state`.)
    #[test]
    fn texts_read_well() {
        assert_eq!(Reconnecting.to_string(), "reconnecting");
        let text = refused().to_string();
        assert!(text.contains("connection refused (errno 111)"), "{text}");
        assert!(status(503, Some(Duration::from_secs(5))).to_string().contains("503"));
        let _ = Cause::Io { errno: -1 }.to_string();
        let _ = Cause::Io { errno: i32::MAX }.to_string();
    }
}
