//! The sans-IO half of the `peer-*-frame` comparison servers (monoio and tokio-uring
//! driving `ringwire-frame`): what they do between a read and a write, so that the two
//! differ only in their runtime setup; `rent_echo_loop!` is their whole per-connection
//! loop.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use ringwire_frame::handshake::{parse_request, HandshakeLimits};
use ringwire_frame::{Config, Connection, Event};

/// Tries to complete the upgrade from the request bytes read so far (`head`).
///
/// `Ok(None)`: read more. `Ok(Some(ws))`: the 101 is in `out` and `ws` has been fed what
/// followed the request. `Err`: the answer to a bad request is in `out`; write it and
/// close.
pub fn upgrade(
    head: &[u8],
    config: &Arc<Config>,
    out: &mut Vec<u8>,
) -> io::Result<Option<Connection>> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let (req, used) = match parse_request(head, &HandshakeLimits::default()) {
        Ok(Some(done)) => done,
        Ok(None) => return Ok(None),
        Err(e) => {
            e.write_response(out);
            return Err(invalid(&e));
        }
    };
    req.accept(None, &[], out).map_err(|e| invalid(&e))?;
    let mut ws = Connection::server(config.clone(), Instant::now());
    if head.len() > used {
        ws.handle_bytes(Instant::now(), &head[used..]);
    }
    Ok(Some(ws))
}

/// Echoes every message the connection has received and appends everything it has to
/// send to `out`. Returns whether the connection is closed (write `out`, then stop).
pub fn echo_pending(ws: &mut Connection, out: &mut Vec<u8>) -> bool {
    let mut closed = false;
    while let Some(ev) = ws.poll_event() {
        match ev {
            Event::Message(m) => {
                let _ = ws.send(m);
            }
            Event::Closed(_) => closed = true,
            _ => {}
        }
    }
    ws.poll_transmit_into(out);
    closed || ws.is_closed()
}

/// The whole per-connection echo loop for a runtime with owned-buffer ("rent") I/O, whose
/// `read(buf)` and `write_all(buf)` take a `Vec<u8>` and hand it back with the result:
/// monoio and tokio-uring spell these the same way but through unrelated types, so the
/// loop is written once here and expanded in each server.
///
/// `$stream` is the accepted stream (a mutable binding), `$config` an `Arc<Config>`,
/// `$read_buf` the read buffer's capacity; the expansion is an `io::Result<()>` block.
#[macro_export]
macro_rules! rent_echo_loop {
    ($stream:ident, $config:expr, $read_buf:expr) => {{
        use ::std::time::Instant;
        use $crate::frame_echo;
        $stream.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity($read_buf);
        let mut out: Vec<u8> = Vec::new();
        // The upgrade request (it may arrive in pieces, and frames may follow it).
        let mut head = Vec::new();
        let mut ws = loop {
            buf.clear();
            let (r, b) = $stream.read(buf).await;
            buf = b;
            let n = r?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
            match frame_echo::upgrade(&head, &$config, &mut out) {
                Ok(Some(ws)) => break ws,
                Ok(None) => {}
                Err(e) => {
                    let _ = $stream.write_all(out).await;
                    return Err(e);
                }
            }
        };
        drop(head);
        loop {
            let closed = frame_echo::echo_pending(&mut ws, &mut out);
            if !out.is_empty() {
                let (r, o) = $stream.write_all(out).await;
                out = o;
                r?;
                out.clear();
            }
            if closed {
                return Ok(());
            }
            buf.clear();
            let (r, b) = $stream.read(buf).await;
            buf = b;
            match r? {
                0 => ws.handle_eof(Instant::now()),
                n => ws.handle_bytes(Instant::now(), &buf[..n]),
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwire_frame::handshake::ClientRequest;
    use ringwire_frame::{encode_frame, OpCode};

    #[test]
    fn upgrade_then_echo() {
        let mut head = Vec::new();
        ClientRequest::new("h", "/", [7; 16]).write(&mut head).unwrap();
        encode_frame(&mut head, OpCode::Text, true, b"hi", Some([1, 2, 3, 4]));
        let config = Arc::new(Config::default());
        let mut out = Vec::new();
        assert!(upgrade(&head[..10], &config, &mut out).unwrap().is_none());
        let mut ws = upgrade(&head, &config, &mut out).unwrap().unwrap();
        assert!(out.starts_with(b"HTTP/1.1 101"));
        out.clear();
        assert!(!echo_pending(&mut ws, &mut out));
        assert_eq!(out, [0x81, 0x02, b'h', b'i']);
        let mut bad = Vec::new();
        assert!(upgrade(b"POST / HTTP/1.1\r\n\r\n", &config, &mut bad).is_err());
        assert!(bad.starts_with(b"HTTP/1.1 405"));
    }
}
