//! The envelope every ringwire message travels in: id, kind, timestamp and a
//! typed payload.
//!
//! | field     | Rust            | JSON                  | CBOR (array item)  | Protobuf            |
//! |-----------|-----------------|-----------------------|--------------------|---------------------|
//! | id        | [`MessageId`]   | `"i"`: 26-char text   | 0: bytes(16)       | 1: `bytes` (16)     |
//! | kind      | [`Kind`] (u32)  | `"k"`: number         | 1: uint            | 2: `uint32`         |
//! | timestamp | `u64` unix µs   | `"t"`: number         | 2: uint            | 3: `fixed64`        |
//! | payload   | `T`             | `"p"`: the value      | 3: the value       | 4: embedded message |
//!
//! In the binary serde formats (CBOR) the envelope is a 4-item array, not a
//! map, so it costs no field names at all; JSON keeps a map, with one-letter
//! keys, so that it stays readable and extensible (unknown keys are skipped).

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{MessageId, TEXT_LEN};

/// What a message is, as a small number that the application assigns
/// (`Kind(1)` = "chat.post", `Kind(2)` = "presence", ...).
///
/// A number rather than a string: it costs 1 byte on the wire for the first
/// 24 (CBOR) or 128 (Protobuf varint) kinds, and 1 to 3 characters in JSON,
/// where a name such as `"chat.post"` would cost 11; it needs no allocation
/// to decode; and routing on it is a `match` on an integer. Keep the
/// name-to-number table next to your `.proto` file or in your API docs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Kind(pub u32);

/// A message with its metadata.
///
/// `payload` is any `T`: a serde type for JSON and CBOR, a `prost::Message`
/// for Protobuf (the same type can be both).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope<T> {
    /// Unique, time-ordered id; a durable outbox keys on it.
    pub id: MessageId,
    /// What the payload is.
    pub kind: Kind,
    /// When the event happened, in microseconds since the unix epoch.
    /// Separate from the id's millisecond clock: the id records when the
    /// message was made, this records the event, finely enough to measure
    /// latency.
    pub timestamp_us: u64,
    /// The application's data.
    pub payload: T,
}

impl<T> Envelope<T> {
    /// Bundles a payload with its metadata.
    pub fn new(id: MessageId, kind: Kind, timestamp_us: u64, payload: T) -> Self {
        Envelope { id, kind, timestamp_us, payload }
    }
}

// ---- MessageId: text in human-readable formats, 16 bytes in binary ones ----

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut buf = [0u8; TEXT_LEN];
            s.serialize_str(self.encode_text(&mut buf))
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = MessageId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message id (26 Crockford base32 characters or 16 bytes)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageId, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<MessageId, E> {
        MessageId::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(IdVisitor)
        } else {
            d.deserialize_bytes(IdVisitor)
        }
    }
}

// ---- Envelope: a map with one-letter keys, or a 4-tuple ----

const FIELDS: &[&str] = &["i", "k", "t", "p"];

impl<T: Serialize> Serialize for Envelope<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut m = s.serialize_struct("Envelope", 4)?;
            m.serialize_field("i", &self.id)?;
            m.serialize_field("k", &self.kind)?;
            m.serialize_field("t", &self.timestamp_us)?;
            m.serialize_field("p", &self.payload)?;
            m.end()
        } else {
            let mut t = s.serialize_tuple(4)?;
            t.serialize_element(&self.id)?;
            t.serialize_element(&self.kind)?;
            t.serialize_element(&self.timestamp_us)?;
            t.serialize_element(&self.payload)?;
            t.end()
        }
    }
}

struct EnvelopeVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for EnvelopeVisitor<T> {
    type Value = Envelope<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ringwire envelope")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope<T>, A::Error> {
        let id = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let kind = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let timestamp_us =
            seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
        let payload = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(3, &self))?;
        Ok(Envelope::new(id, kind, timestamp_us, payload))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<T>, A::Error> {
        let mut id = None;
        let mut kind = None;
        let mut ts = None;
        let mut payload = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => set_once(&mut id, "i", map.next_value()?)?,
                Key::Kind => set_once(&mut kind, "k", map.next_value()?)?,
                Key::Timestamp => set_once(&mut ts, "t", map.next_value()?)?,
                Key::Payload => set_once(&mut payload, "p", map.next_value()?)?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope::new(
            id.ok_or_else(|| de::Error::missing_field("i"))?,
            kind.ok_or_else(|| de::Error::missing_field("k"))?,
            ts.ok_or_else(|| de::Error::missing_field("t"))?,
            payload.ok_or_else(|| de::Error::missing_field("p"))?,
        ))
    }
}

fn set_once<V, E: de::Error>(slot: &mut Option<V>, name: &'static str, v: V) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(v);
    Ok(())
}

/// An envelope map key; unknown keys are kept for forward compatibility.
enum Key {
    Id,
    Kind,
    Timestamp,
    Payload,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an envelope key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "i" => Key::Id,
                    "k" => Key::Kind,
                    "t" => Key::Timestamp,
                    "p" => Key::Payload,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Envelope<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = EnvelopeVisitor(std::marker::PhantomData);
        if d.is_human_readable() {
            d.deserialize_struct("Envelope", FIELDS, v)
        } else {
            d.deserialize_tuple(4, v)
        }
    }
}
