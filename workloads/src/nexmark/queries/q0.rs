//! Query 0, pass-through: every bid, as `auction, bidder, price, dateTime, extra`.
//!
//! It measures the cost of moving events through the pipeline: a bid's fields are moved into
//! the result row (no copy of its strings), persons and auctions are dropped.

use serde::Serialize;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::model::Event;

/// A q0 result: a bid, passed through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, HeapSize)]
#[serde(rename_all = "camelCase")]
pub struct Q0 {
    /// The auction bid on.
    pub auction: u64,
    /// The bidder.
    pub bidder: u64,
    /// The price.
    pub price: u64,
    /// The bid's time, epoch milliseconds.
    pub date_time: i64,
    /// The bid's padding.
    pub extra: String,
    /// When the bid was created (see [`Bid::created_us`](crate::nexmark::Bid::created_us)), for
    /// the latency of the row; not written.
    #[serde(skip)]
    pub created_us: i64,
}

/// Query 0 over `events`: every bid, in arrival order per instance, at the query's parallelism.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q0> {
    events
        .filter_map("q0", |e| match e {
            Event::Bid(b) => Some(Q0 {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                date_time: b.date_time,
                extra: b.extra,
                created_us: b.created_us,
            }),
            _ => None,
        })
        .parallelism(opts.parallelism)
}
