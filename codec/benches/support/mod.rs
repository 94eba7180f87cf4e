//! The ~1 KB sample event used by the benchmarks: a nested object, a
//! timestamp, an enum, strings, numbers and a list, about 1024 bytes as JSON.
//!
//! One Rust type derives both serde and `prost::Message`, so every format
//! encodes exactly the same data. The enum is an `i32` field, as in Go
//! (`iota` constants marshal as numbers) and in prost.
//!
//! [`OrderEventRef`] is its borrowed twin: the same fields, names and tags,
//! so the same bytes on the wire, but strings are `Cow<'a, str>` borrowed
//! from the message. It derives serde (with `#[serde(borrow)]`) and
//! implements `ringwire_codec::BorrowedMessage` by hand, as prost's derive
//! would write `prost::Message`, with the proto3 field helpers in
//! [`proto3`].
//!
//! The tests use this same file: `tests/common/mod.rs` includes it by path
//! as `common::support`.

#![allow(dead_code)]

pub mod proto3;

use std::borrow::Cow;

use prost::bytes::BufMut;
use prost::encoding::{self, WireType};
use prost::DecodeError;
use ringwire_codec::protobuf_borrowed::{self as pb, BorrowContext};
use ringwire_codec::BorrowedMessage;
use serde::{Deserialize, Serialize};

use self::proto3::{ctx0, len, len_str, put, put_str};

/// What happened to the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    /// Not set.
    Unspecified = 0,
    /// The order was placed.
    OrderPlaced = 1,
    /// The order was paid.
    OrderPaid = 2,
    /// The order was shipped.
    OrderShipped = 3,
}

/// A postal address (nested twice).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct Address {
    /// Street and number.
    #[prost(string, tag = "1")]
    pub street: String,
    /// City.
    #[prost(string, tag = "2")]
    pub city: String,
    /// Postal code.
    #[prost(string, tag = "3")]
    pub postal_code: String,
    /// ISO 3166 country code.
    #[prost(string, tag = "4")]
    pub country: String,
}

/// The customer (the nested object).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct Customer {
    /// Customer number.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Full name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// E-mail address.
    #[prost(string, tag = "3")]
    pub email: String,
    /// Shipping address.
    #[prost(message, optional, tag = "4")]
    pub address: Option<Address>,
}

/// One line of the order.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct LineItem {
    /// Stock keeping unit.
    #[prost(string, tag = "1")]
    pub sku: String,
    /// Product title.
    #[prost(string, tag = "2")]
    pub title: String,
    /// How many.
    #[prost(uint32, tag = "3")]
    pub quantity: u32,
    /// Price of one, in cents.
    #[prost(uint64, tag = "4")]
    pub unit_price_cents: u64,
}

/// The ~1 KB event.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct OrderEvent {
    /// Event id.
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// The enum.
    #[prost(enumeration = "EventType", tag = "2")]
    pub event_type: i32,
    /// The timestamp, unix microseconds.
    #[prost(uint64, tag = "3")]
    pub occurred_at_us: u64,
    /// Which service emitted it.
    #[prost(string, tag = "4")]
    pub source: String,
    /// The nested object.
    #[prost(message, optional, tag = "5")]
    pub customer: Option<Customer>,
    /// Order lines.
    #[prost(message, repeated, tag = "6")]
    pub items: Vec<LineItem>,
    /// Order total in cents.
    #[prost(uint64, tag = "7")]
    pub total_cents: u64,
    /// ISO 4217 currency.
    #[prost(string, tag = "8")]
    pub currency: String,
    /// Free-form labels.
    #[prost(string, repeated, tag = "9")]
    pub tags: Vec<String>,
    /// Free text.
    #[prost(string, tag = "10")]
    pub note: String,
}

/// The sample event; its JSON encoding is close to 1024 bytes.
pub fn sample_event() -> OrderEvent {
    let item = |n: u32, title: &str, qty: u32, price: u64| LineItem {
        sku: format!("SKU-{:08}", 40_000_000 + n * 7_919),
        title: title.to_owned(),
        quantity: qty,
        unit_price_cents: price,
    };
    let items = vec![
        item(1, "Mechanical keyboard, brown switches", 1, 12_999),
        item(2, "USB-C cable 2 m braided", 3, 1_499),
        item(3, "Wrist rest, walnut", 1, 3_450),
        item(4, "Keycap set PBT, ISO-DE layout", 2, 5_990),
    ];
    let total = items.iter().map(|i| u64::from(i.quantity) * i.unit_price_cents).sum();
    OrderEvent {
        event_id: "evt_01JDXK7Q9V3M8T2B5N6P4R0W1Y".to_owned(),
        event_type: EventType::OrderShipped as i32,
        occurred_at_us: 1_764_115_200_123_456,
        source: "orders-service/eu-central-1".to_owned(),
        customer: Some(Customer {
            id: 8_811_273_645,
            name: "Dr. Ada Lovelace-Byron".to_owned(),
            email: "ada.lovelace@analytical-engines.example".to_owned(),
            address: Some(Address {
                street: "12 St James's Square, Flat 3".to_owned(),
                city: "London".to_owned(),
                postal_code: "SW1Y 4JH".to_owned(),
                country: "GB".to_owned(),
            }),
        }),
        items,
        total_cents: total,
        currency: "EUR".to_owned(),
        tags: vec![
            "priority".to_owned(),
            "gift-wrap".to_owned(),
            "returning-customer".to_owned(),
            "newsletter-opt-in".to_owned(),
        ],
        note: "Please deliver to the side entrance; ring the bell twice. The parcel may be left \
               with the concierge if nobody answers. Call +44 20 7946 0000 on arrival."
            .to_owned(),
    }
}

// ---- The borrowed twin ----

/// [`Address`], borrowing its strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRef<'a> {
    #[serde(borrow)]
    pub street: Cow<'a, str>,
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    #[serde(borrow)]
    pub postal_code: Cow<'a, str>,
    #[serde(borrow)]
    pub country: Cow<'a, str>,
}

/// [`Customer`], borrowing its strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRef<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub email: Cow<'a, str>,
    #[serde(borrow)]
    pub address: Option<AddressRef<'a>>,
}

/// [`LineItem`], borrowing its strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItemRef<'a> {
    #[serde(borrow)]
    pub sku: Cow<'a, str>,
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

/// [`OrderEvent`], borrowing its strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventRef<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    pub event_type: i32,
    pub occurred_at_us: u64,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    #[serde(borrow)]
    pub customer: Option<CustomerRef<'a>>,
    #[serde(borrow)]
    pub items: Vec<LineItemRef<'a>>,
    pub total_cents: u64,
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "ringwire_codec::borrow_cow_strs")]
    pub tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub note: Cow<'a, str>,
}

impl<'a> BorrowedMessage<'a> for AddressRef<'a> {
    fn merge_field(
        &mut self,
        tag: u32,
        wt: WireType,
        buf: &mut &'a [u8],
        _ctx: BorrowContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => pb::merge_str(wt, &mut self.street, buf),
            2 => pb::merge_str(wt, &mut self.city, buf),
            3 => pb::merge_str(wt, &mut self.postal_code, buf),
            4 => pb::merge_str(wt, &mut self.country, buf),
            _ => pb::skip_field(wt, tag, buf),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.street, buf);
        put_str(2, &self.city, buf);
        put_str(3, &self.postal_code, buf);
        put_str(4, &self.country, buf);
    }

    fn encoded_len(&self) -> usize {
        len_str(1, &self.street)
            + len_str(2, &self.city)
            + len_str(3, &self.postal_code)
            + len_str(4, &self.country)
    }
}

impl<'a> BorrowedMessage<'a> for CustomerRef<'a> {
    fn merge_field(
        &mut self,
        tag: u32,
        wt: WireType,
        buf: &mut &'a [u8],
        ctx: BorrowContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::uint64::merge(wt, &mut self.id, buf, ctx0()),
            2 => pb::merge_str(wt, &mut self.name, buf),
            3 => pb::merge_str(wt, &mut self.email, buf),
            4 => pb::merge_optional_message(wt, &mut self.address, buf, ctx),
            _ => pb::skip_field(wt, tag, buf),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        put(1, &self.id, buf, encoding::uint64::encode);
        put_str(2, &self.name, buf);
        put_str(3, &self.email, buf);
        if let Some(a) = &self.address {
            pb::encode_message(4, a, buf);
        }
    }

    fn encoded_len(&self) -> usize {
        len(1, &self.id, encoding::uint64::encoded_len)
            + len_str(2, &self.name)
            + len_str(3, &self.email)
            + self.address.as_ref().map_or(0, |a| pb::encoded_len_message(4, a))
    }
}

impl<'a> BorrowedMessage<'a> for LineItemRef<'a> {
    fn merge_field(
        &mut self,
        tag: u32,
        wt: WireType,
        buf: &mut &'a [u8],
        _ctx: BorrowContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => pb::merge_str(wt, &mut self.sku, buf),
            2 => pb::merge_str(wt, &mut self.title, buf),
            3 => encoding::uint32::merge(wt, &mut self.quantity, buf, ctx0()),
            4 => encoding::uint64::merge(wt, &mut self.unit_price_cents, buf, ctx0()),
            _ => pb::skip_field(wt, tag, buf),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.sku, buf);
        put_str(2, &self.title, buf);
        put(3, &self.quantity, buf, encoding::uint32::encode);
        put(4, &self.unit_price_cents, buf, encoding::uint64::encode);
    }

    fn encoded_len(&self) -> usize {
        len_str(1, &self.sku)
            + len_str(2, &self.title)
            + len(3, &self.quantity, encoding::uint32::encoded_len)
            + len(4, &self.unit_price_cents, encoding::uint64::encoded_len)
    }
}

impl<'a> BorrowedMessage<'a> for OrderEventRef<'a> {
    fn merge_field(
        &mut self,
        tag: u32,
        wt: WireType,
        buf: &mut &'a [u8],
        ctx: BorrowContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => pb::merge_str(wt, &mut self.event_id, buf),
            2 => encoding::int32::merge(wt, &mut self.event_type, buf, ctx0()),
            3 => encoding::uint64::merge(wt, &mut self.occurred_at_us, buf, ctx0()),
            4 => pb::merge_str(wt, &mut self.source, buf),
            5 => pb::merge_optional_message(wt, &mut self.customer, buf, ctx),
            6 => pb::merge_repeated_message(wt, &mut self.items, buf, ctx),
            7 => encoding::uint64::merge(wt, &mut self.total_cents, buf, ctx0()),
            8 => pb::merge_str(wt, &mut self.currency, buf),
            9 => pb::merge_repeated_str(wt, &mut self.tags, buf),
            10 => pb::merge_str(wt, &mut self.note, buf),
            _ => pb::skip_field(wt, tag, buf),
        }
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.event_id, buf);
        put(2, &self.event_type, buf, encoding::int32::encode);
        put(3, &self.occurred_at_us, buf, encoding::uint64::encode);
        put_str(4, &self.source, buf);
        if let Some(c) = &self.customer {
            pb::encode_message(5, c, buf);
        }
        pb::encode_repeated_message(6, &self.items, buf);
        put(7, &self.total_cents, buf, encoding::uint64::encode);
        put_str(8, &self.currency, buf);
        pb::encode_repeated_str(9, &self.tags, buf);
        put_str(10, &self.note, buf);
    }

    fn encoded_len(&self) -> usize {
        len_str(1, &self.event_id)
            + len(2, &self.event_type, encoding::int32::encoded_len)
            + len(3, &self.occurred_at_us, encoding::uint64::encoded_len)
            + len_str(4, &self.source)
            + self.customer.as_ref().map_or(0, |c| pb::encoded_len_message(5, c))
            + pb::encoded_len_repeated_message(6, &self.items)
            + len(7, &self.total_cents, encoding::uint64::encoded_len)
            + len_str(8, &self.currency)
            + pb::encoded_len_repeated_str(9, &self.tags)
            + len_str(10, &self.note)
    }
}

/// Asserts, field by field, that a borrowed decode equals the owned one.
pub fn assert_same_event(owned: &OrderEvent, borrowed: &OrderEventRef<'_>) {
    assert_eq!(owned.event_id, borrowed.event_id, "event_id");
    assert_eq!(owned.event_type, borrowed.event_type, "event_type");
    assert_eq!(owned.occurred_at_us, borrowed.occurred_at_us, "occurred_at_us");
    assert_eq!(owned.source, borrowed.source, "source");
    match (&owned.customer, &borrowed.customer) {
        (None, None) => {}
        (Some(o), Some(b)) => {
            assert_eq!(o.id, b.id, "customer.id");
            assert_eq!(o.name, b.name, "customer.name");
            assert_eq!(o.email, b.email, "customer.email");
            match (&o.address, &b.address) {
                (None, None) => {}
                (Some(o), Some(b)) => {
                    assert_eq!(o.street, b.street, "address.street");
                    assert_eq!(o.city, b.city, "address.city");
                    assert_eq!(o.postal_code, b.postal_code, "address.postal_code");
                    assert_eq!(o.country, b.country, "address.country");
                }
                (o, b) => panic!("address: {:?} vs {:?}", o.is_some(), b.is_some()),
            }
        }
        (o, b) => panic!("customer: {:?} vs {:?}", o.is_some(), b.is_some()),
    }
    assert_eq!(owned.items.len(), borrowed.items.len(), "items.len");
    for (o, b) in owned.items.iter().zip(&borrowed.items) {
        assert_eq!(o.sku, b.sku, "item.sku");
        assert_eq!(o.title, b.title, "item.title");
        assert_eq!(o.quantity, b.quantity, "item.quantity");
        assert_eq!(o.unit_price_cents, b.unit_price_cents, "item.unit_price_cents");
    }
    assert_eq!(owned.total_cents, borrowed.total_cents, "total_cents");
    assert_eq!(owned.currency, borrowed.currency, "currency");
    assert_eq!(owned.tags, borrowed.tags, "tags");
    assert_eq!(owned.note, borrowed.note, "note");
}
