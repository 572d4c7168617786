//! The three Nexmark event kinds and their NDJSON form.
//!
//! One event per line, tagged by `event_type` (0 person, 1 auction, 2 bid), its body under the
//! kind's name, fields in camelCase as Beam's and Flink's Nexmark write them; ids and prices are
//! integers, `dateTime` and `expires` integer epoch milliseconds:
//!
//! ```text
//! {"event_type":2,"bid":{"auction":1000,"bidder":1001,"price":1234,"channel":"Google","url":"https://…","dateTime":1700000000000,"extra":"…"}}
//! ```

use serde::{Deserialize, Serialize};
use weir_runtime::HeapSize;

/// A person registering (event type 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, HeapSize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// The person's id.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// Email address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state code (`OR`, `ID`, `CA`, …).
    pub state: String,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the model's average event size.
    pub extra: String,
}

/// An auction opening (event type 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, HeapSize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// The auction's id.
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Opening bid.
    pub initial_bid: u64,
    /// Reserve price.
    pub reserve: u64,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// When the auction closes, epoch milliseconds.
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// Category id.
    pub category: u64,
    /// Padding to the model's average event size.
    pub extra: String,
}

/// A bid on an auction (event type 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, HeapSize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Bid price.
    pub price: u64,
    /// Channel the bid came through.
    pub channel: String,
    /// URL the bid came from.
    pub url: String,
    /// Event time, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the model's average event size.
    pub extra: String,
    /// When the bid was created on the generator's clock, epoch microseconds: for event `n`,
    /// `base + n / rate` before any delay moved its `dateTime` back (see
    /// [`generator`](super::generator)); in a paced run, the wall-clock moment it was due. Not
    /// part of the event's data: never written, 0 when read from a file. Result rows made of a
    /// single bid carry it to the result sink, which measures latency from it (persons and
    /// auctions need no such stamp: their ids give their event numbers).
    #[serde(skip)]
    pub created_us: i64,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, HeapSize)]
pub enum Event {
    /// A person registering.
    Person(Person),
    /// An auction opening.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time, epoch milliseconds.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The NDJSON `event_type`: 0 person, 1 auction, 2 bid.
    pub fn event_type(&self) -> u8 {
        match self {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }
    }
}

/// The wire shape: a tag and the one body it names.
#[derive(Serialize, Deserialize)]
struct Tagged<P, A, B> {
    event_type: u8,
    #[serde(skip_serializing_if = "Option::is_none", default = "none")]
    person: Option<P>,
    #[serde(skip_serializing_if = "Option::is_none", default = "none")]
    auction: Option<A>,
    #[serde(skip_serializing_if = "Option::is_none", default = "none")]
    bid: Option<B>,
}

fn none<T>() -> Option<T> {
    None
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged: Tagged<&Person, &Auction, &Bid> = match self {
            Event::Person(p) => Tagged {
                event_type: 0,
                person: Some(p),
                auction: None,
                bid: None,
            },
            Event::Auction(a) => Tagged {
                event_type: 1,
                person: None,
                auction: Some(a),
                bid: None,
            },
            Event::Bid(b) => Tagged {
                event_type: 2,
                person: None,
                auction: None,
                bid: Some(b),
            },
        };
        tagged.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let t = Tagged::<Person, Auction, Bid>::deserialize(d)?;
        match (t.event_type, t.person, t.auction, t.bid) {
            (0, Some(p), None, None) => Ok(Event::Person(p)),
            (1, None, Some(a), None) => Ok(Event::Auction(a)),
            (2, None, None, Some(b)) => Ok(Event::Bid(b)),
            (0..=2, ..) => Err(D::Error::custom(format!(
                "event_type {} needs exactly its own body (`person`, `auction` or `bid`)",
                t.event_type
            ))),
            (other, ..) => Err(D::Error::custom(format!(
                "unknown event_type {other} (0 person, 1 auction, 2 bid)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bid_round_trips_through_its_ndjson_line() {
        let bid = Event::Bid(Bid {
            auction: 1000,
            bidder: 1001,
            price: 1234,
            channel: "Google".into(),
            url: "https://www.nexmark.com/a/b/c/item.htm?query=1".into(),
            date_time: 1_700_000_000_000,
            extra: "x".into(),
            created_us: 0,
        });
        let line = serde_json::to_string(&bid).unwrap();
        assert!(line
            .starts_with(r#"{"event_type":2,"bid":{"auction":1000,"bidder":1001,"price":1234,"#));
        assert!(line.contains(r#""dateTime":1700000000000"#));
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), bid);
    }

    #[test]
    fn a_tag_without_its_body_is_an_error() {
        let err = serde_json::from_str::<Event>(r#"{"event_type":1,"bid":{"auction":1,"bidder":2,"price":3,"channel":"","url":"","dateTime":0,"extra":""}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("event_type 1"), "{err}");
        let err = serde_json::from_str::<Event>(r#"{"event_type":7}"#).unwrap_err();
        assert!(err.to_string().contains("unknown event_type 7"), "{err}");
    }
}
