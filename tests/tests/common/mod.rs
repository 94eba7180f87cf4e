//! Shared helpers for the engine integration tests (`engine_*.rs`): a macro that runs a
//! test body on both backends, a probing handler that reports what it saw, a raw
//! WebSocket client written from RFC 6455 (independent of `ringwire-frame`), and a
//! tokio-tungstenite client.
//!
//! Every blocking read has a timeout, so no test can hang.
#![allow(dead_code)]

pub mod browser;
pub mod client;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ringwire::frame::{CloseCause, CloseCode, Closed, Message};
use ringwire::{
    BackendChoice, ConnHandle, ConnId, Ctx, Engine, EngineBuilder, EngineError, Handler, Server,
};

/// Generous bound for anything that should happen "soon": only catches hangs.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Generates `#[test] fn <io_uring name>()` and `#[test] fn <epoll name>()` for a test body
/// `fn body(BackendChoice)`.
#[macro_export]
macro_rules! both_backends {
    ($($body:ident => $uring:ident, $epoll:ident;)*) => {
        $(
            #[test]
            fn $uring() {
                $body(ringwire::BackendChoice::IoUring);
            }

            #[test]
            fn $epoll() {
                $body(ringwire::BackendChoice::Epoll);
            }
        )*
    };
}

/// Same as [`both_backends`] with `#[ignore = $why]` on both tests.
#[macro_export]
macro_rules! both_backends_ignored {
    ($why:literal: $($body:ident => $uring:ident, $epoll:ident;)*) => {
        $(
            #[test]
            #[ignore = $why]
            fn $uring() {
                $body(ringwire::BackendChoice::IoUring);
            }

            #[test]
            #[ignore = $why]
            fn $epoll() {
                $body(ringwire::BackendChoice::Epoll);
            }
        )*
    };
}

/// The builder every test starts from: two unpinned workers on an ephemeral loopback port.
pub fn builder(backend: BackendChoice) -> EngineBuilder {
    Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pin_cpus(false)
        .backend(backend)
}

/// Longest a shutdown may take before the test calls it hung.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);

/// A [`Server`] that cannot hang a test: a failing test leaks it (its threads are not
/// joined), and [`Guarded::shutdown`] gives up after [`SHUTDOWN_BOUND`].
pub struct Guarded(Option<Server>);

/// Wraps a started server in a [`Guarded`].
pub trait GuardExt {
    /// See [`Guarded`].
    fn guarded(self) -> Guarded;
}

impl GuardExt for Server {
    fn guarded(self) -> Guarded {
        Guarded(Some(self))
    }
}

impl std::ops::Deref for Guarded {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.0.as_ref().expect("not shut down yet")
    }
}

/// Starts `b` with the [`Probe`] handler; returns the server and the channel the probe
/// reports on.
pub fn start_probe(b: EngineBuilder) -> (Guarded, Receiver<Seen>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = b.start(Probe::factory(tx)).expect("engine starts").guarded();
    (server, rx)
}

/// Runs `f` on a helper thread; panics if it does not finish within `bound`.
fn bounded<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound).unwrap_or_else(|_| panic!("{what} did not finish within {bound:?}"))
}

impl Guarded {
    /// [`Server::shutdown`], bounded in time.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        let server = self.0.take().expect("shut down once");
        bounded("Server::shutdown", SHUTDOWN_BOUND, move || server.shutdown())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(server) = self.0.take() else { return };
        if std::thread::panicking() {
            // The engine may be the reason: do not wait for it.
            std::mem::forget(server);
        } else {
            bounded("dropping the Server", SHUTDOWN_BOUND, move || drop(server));
        }
    }
}

/// Descriptors this process holds now (entries of `/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// A client configuration for the durable-delivery tests: stream `stream`, no connect
/// cap, reconnects after 20 ms growing to 200 ms (restarts in the tests are quick).
pub fn durable_client_config(stream: u64) -> ringwire::client::ClientConfig {
    let mut cfg = ringwire::client::ClientConfig::default();
    cfg.outbox_stream = Some(stream);
    cfg.connect_rate = None;
    cfg.retry.backoff = ringwire::client::Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..ringwire::client::Backoff::default()
    };
    cfg
}

/// Polls `cond` every few milliseconds until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// A handler that reports what it sees and obeys a few text commands.
// ---------------------------------------------------------------------------------------

/// What the probing handler saw.
#[derive(Debug)]
pub enum Seen {
    /// An upgrade was accepted (with a handle for other threads and the request path).
    Open(ConnHandle, String),
    /// A message arrived.
    Msg(ConnId, Message),
    /// A pong arrived.
    Pong(ConnId, Option<Duration>),
    /// The connection ended.
    Closed(ConnId, Closed),
    /// The send queue drained below the low watermark.
    Writable(ConnId),
    /// Result of a `flood:` command: (accepted, refused) sends.
    Flooded(ConnId, usize, usize),
}

/// Reports every callback on a channel; echoes messages except these text commands:
///
/// - `sub:T`: subscribe to topic `T`, answer `ok`;
/// - `unsub:T`: unsubscribe from `T`, answer `ok`;
/// - `pub:T:BODY`: publish text `BODY` on topic `T` (no answer);
/// - `ping`: send a heartbeat ping (no answer);
/// - `close:CODE`: start the close handshake with `CODE` and reason `by handler`;
/// - `flood:N:SIZE`: send `N` binary messages of `SIZE` bytes (no answer);
/// - `sendclose:N:SIZE:CODE`: send `N` numbered binary messages of `SIZE` bytes (at
///   least 4), then close with `CODE`;
/// - `quiet:...`: no answer.
pub struct Probe {
    tx: Sender<Seen>,
}

impl Probe {
    /// A factory for [`ringwire::EngineBuilder::start`].
    pub fn factory(tx: Sender<Seen>) -> impl Fn(usize) -> Probe + Send + Sync + 'static {
        move |_| Probe { tx: tx.clone() }
    }
}

impl Handler for Probe {
    fn on_open(
        &mut self,
        cx: &mut Ctx<'_>,
        req: &ringwire::frame::handshake::Request,
    ) -> ringwire::Upgrade {
        let _ = self.tx.send(Seen::Open(cx.handle(), req.path.clone()));
        ringwire::Upgrade::Accept
    }

    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        let _ = self.tx.send(Seen::Msg(cx.id(), msg.clone()));
        let Message::Text(t) = &msg else {
            let _ = cx.send(msg);
            return;
        };
        let t = t.as_str();
        if let Some(topic) = t.strip_prefix("sub:") {
            let _ = match cx.subscribe(topic) {
                Ok(()) => cx.send_text("ok"),
                Err(e) => cx.send_text(&format!("refused: {e}")),
            };
        } else if let Some(topic) = t.strip_prefix("unsub:") {
            cx.unsubscribe(topic);
            let _ = cx.send_text("ok");
        } else if let Some(rest) = t.strip_prefix("pub:") {
            let (topic, body) = rest.split_once(':').expect("pub:T:BODY");
            cx.publish(topic, &Message::text(body.to_owned()));
        } else if t == "ping" {
            cx.ping().expect("ping on an open connection");
        } else if let Some(code) = t.strip_prefix("close:") {
            let code: u16 = code.parse().expect("close:CODE");
            cx.close(CloseCode(code), "by handler").expect("close an open connection");
        } else if let Some(rest) = t.strip_prefix("sendclose:") {
            let (n, rest) = rest.split_once(':').expect("sendclose:N:SIZE:CODE");
            let (size, code) = rest.split_once(':').expect("sendclose:N:SIZE:CODE");
            for i in 0..n.parse::<u32>().unwrap() {
                let mut m = vec![0xCD; size.parse().unwrap()];
                m[..4].copy_from_slice(&i.to_be_bytes());
                cx.send(Message::binary(m)).expect("under the queue limit");
            }
            cx.close(CloseCode(code.parse().unwrap()), "after sends").expect("close");
        } else if let Some(rest) = t.strip_prefix("flood:") {
            let (n, size) = rest.split_once(':').expect("flood:N:SIZE");
            let (n, size): (usize, usize) = (n.parse().unwrap(), size.parse().unwrap());
            let payload = bytes::Bytes::from(vec![0xAB; size]);
            let (mut ok, mut refused) = (0, 0);
            for _ in 0..n {
                match cx.send(Message::binary(payload.clone())) {
                    Ok(()) => ok += 1,
                    Err(_) => refused += 1,
                }
            }
            let _ = self.tx.send(Seen::Flooded(cx.id(), ok, refused));
        } else if let Some(token) = t.strip_prefix("auth:") {
            if cx.reauthorize(token) {
                let _ = cx.send_text("renewed");
            }
        } else if t.starts_with("quiet:") {
        } else {
            let _ = cx.send(msg);
        }
    }

    fn on_pong(&mut self, cx: &mut Ctx<'_>, rtt: Option<Duration>) {
        let _ = self.tx.send(Seen::Pong(cx.id(), rtt));
    }

    fn on_writable(&mut self, cx: &mut Ctx<'_>) {
        let _ = self.tx.send(Seen::Writable(cx.id()));
    }

    fn on_close(&mut self, cx: &mut Ctx<'_>, closed: &Closed) {
        let _ = self.tx.send(Seen::Closed(cx.id(), closed.clone()));
    }
}

/// Receives from the probe until `pick` returns `Some`, skipping other events; panics
/// after [`PATIENCE`].
pub fn expect_seen<T>(
    rx: &Receiver<Seen>,
    what: &str,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => {
                if let Some(t) = pick(s) {
                    return t;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("handler never saw {what}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("probe channel closed waiting for {what}")
            }
        }
    }
}

/// The next `Open` event's handle.
pub fn expect_open(rx: &Receiver<Seen>) -> ConnHandle {
    expect_seen(rx, "an open", |s| match s {
        Seen::Open(h, _) => Some(h),
        _ => None,
    })
}

/// The `Closed` event of connection `id`.
pub fn expect_closed(rx: &Receiver<Seen>, id: ConnId) -> Closed {
    expect_seen(rx, "a close", |s| match s {
        Seen::Closed(i, c) if i == id => Some(c),
        _ => None,
    })
}

/// The `Closed` event of connection `id`, which must carry `code` and `cause`.
pub fn expect_closed_with(
    rx: &Receiver<Seen>,
    id: ConnId,
    code: CloseCode,
    cause: CloseCause,
) -> Closed {
    let closed = expect_closed(rx, id);
    assert_eq!((closed.code, &closed.cause), (code, &cause), "{closed:?}");
    closed
}

/// The RTT of the next `Pong` event (of any connection).
pub fn expect_pong(rx: &Receiver<Seen>, what: &str) -> Option<Duration> {
    expect_seen(rx, what, |s| match s {
        Seen::Pong(_, rtt) => Some(rtt),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// A raw client, written from RFC 6455, for inputs no well-behaved library would send.
// ---------------------------------------------------------------------------------------

/// Opcodes (RFC 6455 §5.2).
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The masking key the raw client uses (any value is valid).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes one frame: `first` holds FIN, RSV and the opcode; masked with [`MASK`] if
/// `masked`.
pub fn encode_raw(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    encode_with_len(first, payload, payload.len() as u64, masked)
}

/// Like [`encode_raw`] but declares `len` as the payload length (which may differ from
/// what follows, to announce a huge frame).
pub fn encode_with_len(first: u8, payload: &[u8], len: u64, masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A frame as the raw client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The status code of a close frame (1005 if it has none).
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        match self.payload.as_slice() {
            [] => 1005,
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            [_] => panic!("close payload of one byte"),
        }
    }
}

/// A blocking loopback connection with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A valid upgrade request (RFC 6455 §1.3 key).
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads an HTTP response head byte by byte (so nothing after it is consumed).
pub fn read_head(s: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = match s.read(&mut b) {
            Ok(n) => n,
            // See engine_eintr.rs: starting an io_uring engine can interrupt this thread.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let got = String::from_utf8_lossy(&head);
                return Err(io::Error::new(e.kind(), format!("{e} after {got:?}")));
            }
        };
        if n == 0 {
            let got = String::from_utf8_lossy(&head);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("EOF after {got:?}")));
        }
        head.push(b[0]);
        assert!(head.len() < 16 * 1024, "response head too long");
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Reads the answer to an upgrade request written on `s`; panics unless it is 101.
/// Returns the response head.
pub fn expect_upgraded(s: &mut TcpStream) -> String {
    let head = read_head(s).expect("upgrade response");
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    head
}

/// How a raw read of everything up to the end of the stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Orderly EOF.
    Eof,
    /// The peer reset the connection.
    Reset,
}

/// Reads until the server closes the connection; panics if it does not within `within`.
pub fn read_to_end_within(s: &mut TcpStream, within: Duration) -> (Vec<u8>, StreamEnd) {
    let end = Instant::now() + within;
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (all, StreamEnd::Eof),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (all, StreamEnd::Reset),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("server kept the connection open for {within:?} (read {} bytes)", all.len())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Sends `request` on a fresh connection and returns the whole answer, which must end
/// with the server closing the connection.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(request).expect("send request");
    let (bytes, _) = read_to_end_within(&mut s, PATIENCE);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A WebSocket client over a plain blocking socket that writes frames byte for byte as
/// the test says.
pub struct RawClient {
    pub s: TcpStream,
}

impl RawClient {
    /// Connects and upgrades; panics unless the answer is 101.
    pub fn open(addr: SocketAddr) -> Self {
        let mut s = connect(addr);
        s.write_all(upgrade_request("/raw").as_bytes()).unwrap();
        let head = expect_upgraded(&mut s);
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong Sec-WebSocket-Accept (RFC 6455 §1.3): {head}"
        );
        Self { s }
    }

    /// [`RawClient::open`], then the probe's `Open` event for it.
    pub fn open_probed(addr: SocketAddr, rx: &Receiver<Seen>) -> (Self, ConnHandle) {
        let c = Self::open(addr);
        (c, expect_open(rx))
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to server");
    }

    /// Writes one masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let first = if fin { 0x80 } else { 0 } | opcode;
        self.write(&encode_raw(first, payload, true));
    }

    /// Reads one frame from the server (which must not mask, RFC 6455 §5.1).
    pub fn read_frame(&mut self) -> io::Result<RawFrame> {
        self.s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h)?;
        assert_eq!(h[0] & 0x70, 0, "server set RSV bits");
        assert_eq!(h[1] & 0x80, 0, "server masked a frame (RFC 6455 §5.1)");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        assert!(len <= 64 << 20, "absurd frame length {len}");
        let mut payload = vec![0u8; len as usize];
        self.s.read_exact(&mut payload)?;
        Ok(RawFrame { fin: h[0] & 0x80 != 0, opcode: h[0] & 0x0f, payload })
    }

    /// Reads frames until a close frame; returns it. Data frames before it are skipped.
    pub fn expect_close(&mut self) -> RawFrame {
        loop {
            let f = self.read_frame().expect("a close frame from the server");
            if f.opcode == OP_CLOSE {
                return f;
            }
        }
    }

    /// Reads the next data frame, skipping pings/pongs.
    pub fn expect_data(&mut self) -> RawFrame {
        loop {
            let f = self.read_frame().expect("a data frame from the server");
            match f.opcode {
                OP_PING | OP_PONG => {}
                OP_CLOSE => panic!("server closed with {} instead of sending data", f.close_code()),
                _ => return f,
            }
        }
    }

    /// Sends a close frame with `code` (completing or starting the close handshake).
    pub fn send_close(&mut self, code: u16) {
        self.send(true, OP_CLOSE, &code.to_be_bytes());
    }

    /// After the close frame: the server must end the TCP connection.
    pub fn expect_eof(&mut self) {
        read_to_end_within(&mut self.s, PATIENCE);
    }

    /// The server closes: a close frame with `code` (data frames before it are skipped),
    /// then the end of the TCP connection, without waiting for a close frame from us.
    /// `what` names the case in the failure message.
    pub fn expect_close_then_eof(&mut self, code: u16, what: &str) {
        let close = self.expect_close();
        assert_eq!(close.close_code(), code, "{what}: close frame {close:?}");
        self.expect_eof();
    }

    /// A client-initiated close handshake: sends close `code`, expects the server to echo
    /// it, then the end of the TCP connection.
    pub fn close_handshake(&mut self, code: u16) {
        self.send_close(code);
        self.expect_close_then_eof(code, "answer to our close");
    }

    /// Sends a text message and checks it comes back.
    pub fn echo(&mut self, text: &str) {
        self.send(true, OP_TEXT, text.as_bytes());
        let f = self.expect_data();
        assert_eq!((f.fin, f.opcode, f.payload.as_slice()), (true, OP_TEXT, text.as_bytes()));
    }
}

// ---------------------------------------------------------------------------------------
// tokio-tungstenite, the independent well-behaved client.
// ---------------------------------------------------------------------------------------

pub use futures_util::{SinkExt, StreamExt};
pub use tokio_tungstenite::tungstenite::Message as TMsg;

/// A tokio-tungstenite client stream.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A current-thread tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Connects and upgrades with tokio-tungstenite.
pub async fn ws_connect(addr: SocketAddr) -> Ws {
    ws_connect_path(addr, "/").await
}

/// Connects and upgrades with tokio-tungstenite to `path`.
pub async fn ws_connect_path(addr: SocketAddr, path: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let (ws, resp) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// [`ws_connect`], then the probe's `Open` event for it.
pub async fn ws_connect_probed(addr: SocketAddr, rx: &Receiver<Seen>) -> (Ws, ConnHandle) {
    let ws = ws_connect(addr).await;
    (ws, expect_open(rx))
}

/// The next message (any kind), or panics after [`PATIENCE`].
pub async fn ws_next(ws: &mut Ws) -> Option<TMsg> {
    match tokio::time::timeout(PATIENCE, ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(Some(Err(e))) => panic!("client read error: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no message from the server within {PATIENCE:?}"),
    }
}

/// The next text or binary message, skipping pings and pongs.
pub async fn ws_data(ws: &mut Ws) -> TMsg {
    loop {
        match ws_next(ws).await {
            Some(TMsg::Ping(_) | TMsg::Pong(_)) => {}
            Some(TMsg::Close(c)) => panic!("server closed ({c:?}) instead of sending data"),
            Some(m) => return m,
            None => panic!("stream ended instead of data"),
        }
    }
}

/// Reads until the server's close frame; returns its code (1005 if none). Data before it
/// is skipped. tungstenite answers the close by itself.
pub async fn ws_expect_close(ws: &mut Ws) -> u16 {
    loop {
        match ws_next(ws).await {
            Some(TMsg::Close(c)) => return c.map_or(1005, |f| u16::from(f.code)),
            Some(_) => {}
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// The very next message must be a close frame carrying `code` and `reason`.
pub async fn ws_expect_next_close(ws: &mut Ws, code: u16, reason: &str) {
    match ws_next(ws).await {
        Some(TMsg::Close(Some(f))) => {
            assert_eq!(u16::from(f.code), code);
            assert_eq!(f.reason.as_str(), reason);
        }
        other => panic!("expected close {code}, got {other:?}"),
    }
}

/// The server closes: [`ws_expect_close`] must return `code`, then the stream must end
/// ([`ws_expect_end`]).
pub async fn ws_expect_close_then_end(ws: &mut Ws, code: u16) {
    assert_eq!(ws_expect_close(ws).await, code);
    ws_expect_end(ws).await;
}

/// After the close frames crossed: the stream must end.
pub async fn ws_expect_end(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(None) => return,
            Ok(Some(Err(_))) => return,
            Ok(Some(Ok(TMsg::Close(_)))) => {}
            Ok(Some(Ok(m))) => panic!("data after close: {m:?}"),
            Err(_) => panic!("stream did not end within {PATIENCE:?}"),
        }
    }
}

/// Sends text and checks the echo.
pub async fn ws_echo(ws: &mut Ws, text: &str) {
    ws.send(TMsg::text(text)).await.expect("send");
    match ws_data(ws).await {
        TMsg::Text(t) => assert_eq!(t.as_str(), text),
        other => panic!("expected text echo, got {other:?}"),
    }
}

/// Sends a ping with `payload`; the very next message must be the pong echoing it.
pub async fn ws_ping_pong(ws: &mut Ws, payload: &[u8]) {
    ws.send(TMsg::Ping(payload.to_vec().into())).await.unwrap();
    match ws_next(ws).await {
        Some(TMsg::Pong(p)) => assert_eq!(p[..], payload[..]),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// A client close with `code`, the server's echo of it, and the end of the stream.
pub async fn ws_close(ws: &mut Ws) {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode as TCode, CloseFrame};
    let _ = ws.close(Some(CloseFrame { code: TCode::Normal, reason: "".into() })).await;
    ws_expect_end(ws).await;
}

/// A raw server for client tests: accepts connections for 20 s and answers each upgrade
/// request with `answer(request)` (bytes: a response, and frames after it if the test
/// likes); `None` keeps the connection open without answering. The connections stay
/// open, unread, until the thread ends. Reports each accept's instant; dropping the
/// receiver stops it at the next accept.
pub fn raw_server(
    answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static,
) -> (SocketAddr, Receiver<Instant>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        let end = Instant::now() + Duration::from_secs(20);
        l.set_nonblocking(true).unwrap();
        while Instant::now() < end {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            if tx.send(Instant::now()).is_err() {
                return;
            }
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if let Some(a) = answer(&String::from_utf8_lossy(&req)) {
                let _ = s.write_all(&a);
            }
            held.push(s);
        }
    });
    (addr, rx)
}

/// A 101 with the right accept key for the upgrade request `request`.
pub fn accept_101(request: &str) -> String {
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key in the request")
        .trim();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        ringwire::frame::handshake::accept_key(key.as_bytes())
    )
}
