//! The acknowledgement on the wire between ringwire peers (docs/outbox-format.md,
//! "The acknowledgement on the wire"), public so that another implementation or a tool
//! can speak it: the extension offered in the handshake, the tag
//! that carries a durable message's id and the cumulative acknowledgement, both in
//! unsolicited Pong frames (RFC 6455 §5.5.3: a peer may send them, and a peer that does
//! not know them ignores them; they are only sent once both sides named the extension).

use ringwire_frame::handshake::extension_name;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "x-ringwire-ack";
/// First byte of the Pong that precedes a durable message (client to server).
pub const TAG_DURABLE: u8 = 0xD5;
/// First byte of the Pong that acknowledges (server to client).
pub const TAG_ACK: u8 = 0xAC;
/// A tag's length: the byte, then the id (16 bytes, little-endian).
pub const TAG_LEN: usize = 17;

/// The client's offer for stream `stream`; `recv`: the client also takes durable
/// messages from the server (it has a duplicate filter of its own).
pub fn offer(stream: u64, recv: bool) -> String {
    if recv {
        format!("{EXTENSION}; stream={stream}; recv")
    } else {
        format!("{EXTENSION}; stream={stream}")
    }
}

/// The stream of an offer and whether it says `recv`, if `element` is one
/// (`x-ringwire-ack; stream=<u64>[; recv]`, the value possibly quoted; a parameter twice
/// or any other makes it not one).
pub fn parse_offer(element: &str) -> Option<(u64, bool)> {
    if !extension_name(element).eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let (mut stream, mut recv) = (None, false);
    for param in element.split(';').skip(1) {
        match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("stream") => {
                if stream.is_some() {
                    return None;
                }
                stream = Some(value.trim().trim_matches('"').parse::<u64>().ok()?);
            }
            None if param.trim().eq_ignore_ascii_case("recv") && !recv => recv = true,
            _ => return None,
        }
    }
    Some((stream?, recv))
}

/// Whether the server's accepted extensions name ours.
pub fn accepted(extensions: &[String]) -> bool {
    extensions.iter().any(|e| extension_name(e).eq_ignore_ascii_case(EXTENSION))
}

/// A tag: `kind` then `id`.
pub fn tag(kind: u8, id: u128) -> [u8; TAG_LEN] {
    let mut t = [0u8; TAG_LEN];
    t[0] = kind;
    t[1..].copy_from_slice(&id.to_le_bytes());
    t
}

/// The id of a Pong payload that is a tag of `kind`.
pub fn parse_tag(kind: u8, payload: &[u8]) -> Option<u128> {
    let t: &[u8; TAG_LEN] = payload.try_into().ok()?;
    if t[0] != kind {
        return None;
    }
    Some(u128::from_le_bytes(t[1..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_parse_back_and_others_do_not() {
        assert_eq!(parse_offer(&offer(42, false)), Some((42, false)));
        assert_eq!(parse_offer(&offer(42, true)), Some((42, true)));
        assert_eq!(parse_offer("X-Ringwire-Ack;stream=\"7\""), Some((7, false)));
        assert_eq!(parse_offer("x-ringwire-ack; RECV ; stream=8"), Some((8, true)));
        for bad in [
            "x-ringwire-ack",
            "x-ringwire-ack; stream=",
            "x-ringwire-ack; stream=-1",
            "x-ringwire-ack; stream=1; stream=2",
            "x-ringwire-ack; stream=1; other=2",
            "x-ringwire-ack; stream",
            "x-ringwire-ack; recv",
            "x-ringwire-ack; stream=1; recv; recv",
            "x-ringwire-ack; stream=1; recv=1",
            "permessage-deflate; stream=1",
        ] {
            assert_eq!(parse_offer(bad), None, "{bad}");
        }
        assert!(accepted(&["permessage-deflate".into(), "x-ringwire-ack".into()]));
        assert!(!accepted(&["permessage-deflate".into()]));
    }

    #[test]
    fn tags_round_trip_and_other_payloads_are_not_tags() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
        assert_eq!(parse_tag(TAG_ACK, &tag(TAG_ACK, id)), Some(id));
        assert_eq!(parse_tag(TAG_DURABLE, &tag(TAG_ACK, id)), None);
        assert_eq!(parse_tag(TAG_ACK, &[TAG_ACK; 16]), None);
        // A heartbeat's payload (12 bytes) is never a tag.
        assert_eq!(parse_tag(TAG_ACK, &[0u8; 12]), None);
    }
}
