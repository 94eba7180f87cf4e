//! A small pub/sub gateway handler: the demo's and the load generator's fan-out server,
//! and an example of a handler that uses topics.
//!
//! Protocol (client to server):
//! - text `SUB <topic>`: subscribe; the server answers `SUBSCRIBED <topic>`, or
//!   `REFUSED <topic>: <why>` past the engine's per-connection topic limits;
//! - text `UNSUB <topic>`: unsubscribe;
//! - text `PUB <topic> <payload>`: publish `<payload>` as text to the topic's subscribers;
//! - binary `[len: u8][topic: len bytes][payload]`: publish `payload` as binary;
//! - text `AUTH <token>`: with `--auth-jwt-key`, a renewed token before the current one
//!   ends (answered `AUTHORIZED`; a refused one closes the connection with 1008);
//! - anything else is echoed back.

use bytes::Bytes;
use ringwire::frame::Message;
use ringwire::{Ctx, Handler};

/// The gateway handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct PubSub;

/// Encodes a binary publish request for [`PubSub`]. Topics longer than 255 bytes are cut.
pub fn publish_request(topic: &str, payload: &[u8]) -> Vec<u8> {
    let t = &topic.as_bytes()[..topic.len().min(255)];
    let mut v = Vec::with_capacity(1 + t.len() + payload.len());
    v.push(t.len() as u8);
    v.extend_from_slice(t);
    v.extend_from_slice(payload);
    v
}

impl Handler for PubSub {
    fn on_message(&mut self, cx: &mut Ctx<'_>, msg: Message) {
        match &msg {
            Message::Text(t) => {
                let s = t.as_str();
                if let Some(topic) = s.strip_prefix("SUB ") {
                    let _ = match cx.subscribe(topic) {
                        Ok(()) => cx.send_text(&format!("SUBSCRIBED {topic}")),
                        Err(e) => {
                            // The name may be long: the answer quotes at most 64 bytes.
                            let mut cut = topic.len().min(64);
                            while !topic.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            cx.send_text(&format!("REFUSED {}: {e}", &topic[..cut]))
                        }
                    };
                } else if let Some(token) = s.strip_prefix("AUTH ") {
                    if cx.reauthorize(token) {
                        let _ = cx.send_text("AUTHORIZED");
                    }
                } else if let Some(topic) = s.strip_prefix("UNSUB ") {
                    cx.unsubscribe(topic);
                } else if let Some(rest) = s.strip_prefix("PUB ") {
                    let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                    cx.publish(topic, &Message::text(payload.to_owned()));
                } else {
                    let _ = cx.send(msg);
                }
            }
            Message::Binary(b) => {
                let len = usize::from(b.first().copied().unwrap_or(0));
                match b.get(1..1 + len).map(std::str::from_utf8) {
                    Some(Ok(topic)) if len > 0 => {
                        let payload: Bytes = b.slice(1 + len..);
                        cx.publish(topic, &Message::Binary(payload));
                    }
                    _ => {
                        let _ = cx.send(msg);
                    }
                }
            }
        }
    }
}
