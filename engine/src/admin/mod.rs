//! The admin listener: Prometheus metrics, liveness and readiness over plain HTTP/1.1,
//! served on threads of its own, never a worker's. Off unless asked for
//! ([`crate::EngineConfig::admin`], `ringwire serve --admin ADDR`); meant for an
//! operator's network or loopback, not for the public (it has no authentication).
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every worker's counters in Prometheus' text format (OpenMetrics when the `Accept` header asks for it) |
//! | `GET /healthz` | 200 while every worker's loop runs or a shutdown stops them; 503 when one died |
//! | `GET /readyz` | 200 while every worker runs and none is draining; 503 otherwise |
//! | `GET /` | the dashboard: one self-contained page that draws the figures live |
//! | `GET /stream` (WebSocket) | the figures once a second as JSON, what the dashboard reads |
//!
//! Each request is read with a deadline and a size limit, answered, and the connection
//! closed; at most [`MAX_CONNECTIONS`] are served at once (more are answered 503 at once).

pub(crate) mod metrics;
mod stream;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::handle::WorkerShared;
use crate::stats::WorkerStats;

/// Admin connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// The longest a request head may be.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin threads read: the workers' counters and flags.
pub(crate) struct AdminState {
    pub(crate) stats: Vec<Arc<WorkerStats>>,
    pub(crate) shared: Arc<[Arc<WorkerShared>]>,
    pub(crate) backend: &'static str,
    /// The cluster bridge's counters, when the engine is one of a cluster.
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterShared>>,
    /// Admin connections being served now.
    active: AtomicUsize,
    /// The listener is stopping: streams close.
    stop: AtomicBool,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").field("workers", &self.stats.len()).finish_non_exhaustive()
    }
}

impl AdminState {
    pub(crate) fn new(
        stats: Vec<Arc<WorkerStats>>,
        shared: Arc<[Arc<WorkerShared>]>,
        backend: &'static str,
    ) -> Self {
        Self {
            stats,
            shared,
            backend,
            cluster: None,
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn draining(&self) -> bool {
        self.shared.iter().any(|w| w.shutdown_requested())
    }

    fn all_up(&self) -> bool {
        self.stats.iter().all(|s| s.up.load(Ordering::Relaxed) == 1)
    }

    /// Alive: every worker runs, or they stop because a shutdown asked them to.
    fn healthy(&self) -> bool {
        self.all_up() || self.draining()
    }

    /// Ready for traffic: every worker runs and none drains.
    fn ready(&self) -> bool {
        self.all_up() && !self.draining()
    }
}

/// A running admin listener; [`Admin::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Admin {
    addr: SocketAddr,
    state: Arc<AdminState>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves `state` on a thread of its own.
    pub(crate) fn start(addr: SocketAddr, state: Arc<AdminState>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("ringwire-admin".into())
            .spawn(move || accept_loop(&listener, &st))?;
        Ok(Self { addr, state, thread: Some(thread) })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the accepting thread (requests being answered finish
    /// on their own threads, each within its deadline).
    pub(crate) fn stop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            let _ = t.join();
        }
        // Otherwise the thread stays blocked in accept, detached; it ends with the
        // process and answers nothing after `stop` (the flag is checked first).
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<AdminState>) {
    loop {
        let conn = listener.accept();
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = conn else {
            // EMFILE and the like: do not spin on it.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if state.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            state.active.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let st = state.clone();
        let spawned =
            std::thread::Builder::new().name("ringwire-admin-conn".into()).spawn(move || {
                let mut stream = stream;
                serve(&mut stream, &st);
                let _ = stream.shutdown(Shutdown::Both);
                st.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            state.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request as far as the admin listener cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) accept: Option<String>,
    /// The head as read (the WebSocket upgrade parses it again, fully) and the bytes
    /// that came after it.
    pub(crate) head: Vec<u8>,
    pub(crate) rest: Vec<u8>,
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadRequest {
    TooLarge,
    Malformed,
    /// The client went away or was too slow.
    Gone,
}

/// Reads one request head (up to the blank line) from `r`.
pub(crate) fn read_request(r: &mut impl Read) -> Result<Request, BadRequest> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = r.read(&mut chunk).map_err(|_| BadRequest::Gone)?;
        if n == 0 {
            return Err(BadRequest::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let accept = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("accept"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_owned);
                return Ok(Request {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    accept,
                    head: buf[..len].to_vec(),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(BadRequest::TooLarge)
            }
            Err(_) => return Err(BadRequest::Malformed),
        }
    }
}

/// The answer to `req`: status, content type, body.
pub(crate) fn route(req: &Request, state: &Arc<AdminState>) -> (u16, &'static str, Vec<u8>) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method != "GET" && req.method != "HEAD" {
        return (405, TEXT, b"only GET and HEAD\n".to_vec());
    }
    let path = req.path.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => {
            let now = std::time::Instant::now();
            for w in state.shared.iter() {
                w.want_samples(now);
            }
            let format = metrics::Format::from_accept(req.accept.as_deref());
            (200, format.content_type(), metrics::render(state, format).into_bytes())
        }
        "/healthz" if state.healthy() => (200, TEXT, b"ok\n".to_vec()),
        "/healthz" => (503, TEXT, b"a worker stopped\n".to_vec()),
        "/readyz" if state.ready() => (200, TEXT, b"ready\n".to_vec()),
        "/readyz" if state.draining() => (503, TEXT, b"draining\n".to_vec()),
        "/readyz" => (503, TEXT, b"a worker is not running\n".to_vec()),
        "/" => (200, "text/html; charset=utf-8", DASHBOARD.as_bytes().to_vec()),
        _ => (404, TEXT, b"not found\n".to_vec()),
    }
}

/// The dashboard page (`GET /`): HTML, CSS and script in one file, nothing fetched.
const DASHBOARD: &str = include_str!("dashboard.html");

fn serve(stream: &mut TcpStream, state: &Arc<AdminState>) {
    let (status, ctype, body, head) = match read_request(stream) {
        Ok(req) if req.path.split('?').next() == Some("/stream") && req.method == "GET" => {
            stream::serve(stream, &req, state);
            return;
        }
        Ok(req) => {
            let (s, t, b) = route(&req, state);
            (s, t, b, req.method == "HEAD")
        }
        Err(BadRequest::Gone) => return,
        Err(BadRequest::TooLarge) => (431, "text/plain", b"request too large\n".to_vec(), false),
        Err(BadRequest::Malformed) => (400, "text/plain", b"bad request\n".to_vec(), false),
    };
    let _ = respond(stream, status, ctype, &body, head);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        426 => "Upgrade Required",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

pub(crate) fn respond(
    w: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    w.write_all(head.as_bytes())?;
    if !head_only {
        w.write_all(body)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request, BadRequest> {
        read_request(&mut s.as_bytes())
    }

    #[test]
    fn requests_are_read_and_bounded() {
        let r =
            req("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n");
        let r = r.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(r.accept.as_deref(), Some("application/openmetrics-text"));
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n"), Err(BadRequest::Gone), "cut short");
        assert_eq!(req("\x01\x02 nonsense\r\n\r\n"), Err(BadRequest::Malformed));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(req(&long), Err(BadRequest::TooLarge));
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(req(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(BadRequest::TooLarge));
    }

    #[test]
    fn the_answer_has_a_length_and_closes() {
        let mut out = Vec::new();
        respond(&mut out, 405, "text/plain", b"no\n", false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{s}");
        assert!(s.contains("Content-Length: 3\r\n") && s.contains("Allow: GET, HEAD\r\n"));
        assert!(s.contains("Connection: close\r\n") && s.ends_with("\r\n\r\nno\n"));
        let mut out = Vec::new();
        respond(&mut out, 200, "text/plain", b"body", true).unwrap();
        assert!(String::from_utf8(out).unwrap().ends_with(
            "Content-Length: 4\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
