//! Nexmark q1, currency conversion: every bid with its price in euros.
//!
//! ```sql
//! SELECT auction, bidder, 0.908 * price AS price, dateTime, extra
//! FROM bid;
//! ```
//!
//! One `filter_map` keeps the bids and converts them in place: the bid's strings move into the
//! result row, nothing is copied. It runs beside the source (`opts.parallelism` instances, each
//! chained to one source instance), so the query costs one call per event.

use serde::Serialize;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// Dollars to euros, as the benchmark fixes it.
pub const EUROS_PER_DOLLAR: f64 = 0.908;

/// One q1 result: a bid with its price in euros.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q1 {
    /// The auction bid on.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// The price in euros: the bid's price × 0.908.
    pub price: f64,
    /// The bid's event time, epoch milliseconds.
    #[serde(rename = "dateTime")]
    pub date_time: i64,
    /// The bid's padding.
    pub extra: String,
    /// When the bid was created (see [`Bid::created_us`](crate::nexmark::Bid::created_us)), for
    /// the latency of the row; not written.
    #[serde(skip)]
    pub created_us: i64,
}

/// Adds q1 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q1> {
    events
        .filter_map("q1", |e: Event| match e {
            Event::Bid(b) => Some(Q1 {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price as f64 * EUROS_PER_DOLLAR,
                date_time: b.date_time,
                extra: b.extra,
                created_us: b.created_us,
            }),
            _ => None,
        })
        .parallelism(opts.parallelism)
}
