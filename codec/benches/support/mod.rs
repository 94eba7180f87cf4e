//! The ~1 KB sample event used by the benchmarks: a nested object, a
//! timestamp, an enum, strings, numbers and a list, about 1024 bytes as JSON.
//!
//! One Rust type derives both serde and `prost::Message`, so every format
//! encodes exactly the same data. The enum is an `i32` field, as in Go
//! (`iota` constants marshal as numbers) and in prost.

use serde::{Deserialize, Serialize};

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
