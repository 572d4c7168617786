//! Nexmark q7, highest bid: in each tumbling window of 10 s, the bid(s) with the highest price.
//!
//! ```sql
//! SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
//! FROM bid B
//! JOIN (
//!   SELECT MAX(B1.price) AS maxprice, TUMBLE_ROWTIME(B1.dateTime, INTERVAL '10' SECOND) AS dateTime
//!   FROM bid B1
//!   GROUP BY TUMBLE(B1.dateTime, INTERVAL '10' SECOND)
//! ) B1
//! ON B.price = B1.maxprice
//! WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime;
//! ```
//!
//! ```text
//! events ──q7.bids──▶ Q7 ──▶ q7.highest.combine [p] ──▶ q7.highest [1] ──q7.project──▶ Q7
//! ```
//!
//! The SQL joins every bid with its window's maximum, which keeps every bid of a window until
//! the window closes. Here the window keeps only what can still be the answer: [`HighestBids`]
//! holds the highest price seen so far and the bids with exactly that price, dropping them
//! when a higher one comes. That is an aggregation that merges (the higher maximum wins, equal
//! ones pool their bids), so the library's window over the whole stream runs it with a
//! combiner beside each source instance and one final instance that sees a partial per window
//! and instance. A bid is cloned only when it ties or beats the maximum so far. Windows fire
//! when the watermark passes their end and are freed then.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_operators::keyed::aggregate::Aggregate;
use weir_operators::keyed::Combine;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// The windows' size.
pub const SIZE: Duration = Duration::from_secs(10);

/// One q7 result: a bid with its window's highest price.
#[derive(Serialize, Deserialize, Clone, HeapSize, Debug, PartialEq, Eq)]
pub struct Q7 {
    /// The auction bid on.
    pub auction: u64,
    /// The price: the highest in the bid's window.
    pub price: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// The bid's event time, epoch milliseconds.
    #[serde(rename = "dateTime")]
    pub date_time: i64,
    /// The bid's padding.
    pub extra: String,
}

/// The highest price so far and the bids with it.
#[derive(Clone, Debug, Default, HeapSize, Serialize, Deserialize)]
pub struct Highest {
    /// The highest price (0 while empty).
    pub price: u64,
    /// Every bid with that price.
    pub bids: Vec<Q7>,
}

/// The mergeable "bids at the highest price" aggregation.
#[derive(Clone, Copy, Debug, Default)]
pub struct HighestBids;

impl Aggregate for HighestBids {
    type Input = Q7;
    type Acc = Highest;
    type Output = Vec<Q7>;

    fn init(&self) -> Highest {
        Highest::default()
    }

    fn add(&self, acc: &mut Highest, bid: &Q7) {
        if bid.price > acc.price || acc.bids.is_empty() {
            acc.price = bid.price;
            acc.bids.clear();
        }
        if bid.price == acc.price {
            acc.bids.push(bid.clone());
        }
    }

    fn merge(&self, acc: &mut Highest, other: Highest) {
        if other.bids.is_empty() {
            return;
        }
        if other.price > acc.price || acc.bids.is_empty() {
            *acc = other;
        } else if other.price == acc.price {
            acc.bids.extend(other.bids);
        }
    }

    fn finish(&self, acc: &Highest) -> Vec<Q7> {
        acc.bids.clone()
    }
}

/// Adds q7 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q7> {
    let p = opts.parallelism;
    events
        .filter_map("q7.bids", |e: Event| match e {
            Event::Bid(b) => Some(Q7 {
                auction: b.auction,
                price: b.price,
                bidder: b.bidder,
                date_time: b.date_time,
                extra: b.extra,
            }),
            _ => None,
        })
        .parallelism(p)
        .window_all(Tumbling::of(SIZE), |b: &Q7| Timestamp(b.date_time))
        .combine_with(Combine::new(16).parallelism(p))
        .aggregate("q7.highest", HighestBids)
        .flat_map("q7.project", |w: Windowed<(), Vec<Q7>>| w.value)
}
