//! The sans-IO half of the `peer-*-frame` comparison servers (monoio and tokio-uring
//! driving `ringwire-frame`): what they do between a read and a write, so that the two
//! differ only in their runtime's I/O calls.

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
