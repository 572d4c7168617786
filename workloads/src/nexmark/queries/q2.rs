//! Nexmark q2, selection: the bids on every 123rd auction.
//!
//! ```sql
//! SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
//! ```
//!
//! One `filter_map` beside the source keeps those bids and projects them to two numbers.

use serde::Serialize;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// The auctions q2 selects: those whose id is a multiple of this.
pub const AUCTION_MODULUS: u64 = 123;

/// One q2 result.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q2 {
    /// The auction bid on (a multiple of 123).
    pub auction: u64,
    /// The bid's price.
    pub price: u64,
    /// When the bid was created (see [`Bid::created_us`](crate::nexmark::Bid::created_us)), for
    /// the latency of the row; not written.
    #[serde(skip)]
    pub created_us: i64,
}

/// Adds q2 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q2> {
    events
        .filter_map("q2", |e: Event| match e {
            Event::Bid(b) if b.auction % AUCTION_MODULUS == 0 => Some(Q2 {
                auction: b.auction,
                price: b.price,
                created_us: b.created_us,
            }),
            _ => None,
        })
        .parallelism(opts.parallelism)
}
