//! Nexmark q4, average price per category: the mean, per category, of each auction's winning
//! bid.
//!
//! ```sql
//! SELECT Q.category, AVG(Q.final)
//! FROM (
//!     SELECT MAX(B.price) AS final, A.category
//!     FROM auction A, bid B
//!     WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
//!     GROUP BY A.id, A.category
//! ) Q
//! GROUP BY Q.category;
//! ```
//!
//! ```text
//! events ──q4.select──▶ Q4In ──hash(auction)──▶ q4.max [p] ──▶ (category, max)
//!        ──hash(category)──▶ q4.avg [p] ──q4.project──▶ Q4
//! ```
//!
//! **Per auction** (`q4.max`, a keyed process function on the auction id): the auction's window
//! `[dateTime, expires]` and the highest price among its bids inside it. An auction is final
//! once the watermark passes `expires` — every bid at or before `expires` has arrived — so an
//! event-time timer at `expires` emits `(category, max)` (if any bid qualified) and frees the
//! key. Bids may arrive before their auction (an auction delayed within the out-of-order bound,
//! parallel sources, a file in any order): such a bid waits in its key's state as
//! `(dateTime, price)` until its auction arrives, or until the watermark passes its own time,
//! after which no auction it could belong to (`auction.dateTime ≤ bid.dateTime`) can still
//! come, and it is dropped. A bid arriving after its auction was freed waits the same way and
//! goes: its time is past `expires`. State is therefore the open auctions plus the bids of the
//! last out-of-order delay whose auction is not there, and returns to zero behind the
//! watermark. This is cheaper than an interval join, which would keep every bid for the longest
//! auction's length to pair it with an auction it then only takes the maximum of.
//!
//! **Per category** (`q4.avg`): the library's keyed [`Mean`] of those maxima — an exact integer
//! sum and count, so the mean does not depend on the order maxima arrive in or on the
//! parallelism. Its result is **emitted once per category at the end of the input**
//! ([`Emit::AtEnd`](weir_operators::keyed::Emit::AtEnd), the keyed aggregation's default): the
//! rows out are exactly the query's final answer. For a running answer, set
//! `.emit(Emit::EveryRows(n))` on the category stage: it then also emits each changed
//! category's current mean every `n` rows, the last row per category being final.

use serde::{Deserialize, Serialize};
use weir_operators::keyed::aggregate::{Mean, Project};
use weir_operators::prelude::*;
use weir_runtime::Output;

use super::QueryOptions;
use crate::nexmark::Event;

/// What `q4.max` reads of the events: auctions' windows and bids' prices.
#[derive(Clone, Copy, Debug, HeapSize)]
pub enum Q4In {
    /// An auction opening.
    Auction {
        /// The auction's id: the key.
        id: u64,
        /// Its category.
        category: u64,
        /// When it opened: the first time a bid counts, epoch ms.
        date_time: i64,
        /// When it closes: the last time a bid counts, epoch ms.
        expires: i64,
    },
    /// A bid.
    Bid {
        /// The auction bid on: the key.
        auction: u64,
        /// The price.
        price: u64,
        /// When the bid was made, epoch ms.
        date_time: i64,
    },
}

impl Q4In {
    /// The auction the row is about.
    pub fn auction(&self) -> u64 {
        match *self {
            Q4In::Auction { id, .. } => id,
            Q4In::Bid { auction, .. } => auction,
        }
    }
}

/// One auction's state in `q4.max`.
#[derive(Debug, HeapSize, Serialize, Deserialize)]
pub enum AuctionState {
    /// Bids that came before their auction, `(dateTime, price)`, each waiting until the
    /// watermark passes its time.
    Waiting(Vec<(i64, u64)>),
    /// The auction has arrived and not closed yet.
    Open {
        /// Its category.
        category: u64,
        /// When it opened, epoch ms.
        date_time: i64,
        /// When it closes, epoch ms.
        expires: i64,
        /// The highest price among its bids in `[date_time, expires]` so far.
        max: Option<u64>,
    },
}

/// The keyed process function of `q4.max` (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct WinningBid;

impl KeyedProcessFunction<u64, Q4In> for WinningBid {
    type State = AuctionState;
    type Output = (u64, u64);

    fn process(
        &mut self,
        row: Q4In,
        ctx: &mut ProcessContext<'_, u64, AuctionState>,
        _: &mut Output<Vec<(u64, u64)>>,
    ) -> Result<(), OperatorError> {
        match row {
            Q4In::Auction {
                category,
                date_time,
                expires,
                ..
            } => {
                let mut max = None;
                match ctx.value() {
                    // Auction ids are unique: a second auction with an open one's id is not
                    // the benchmark's, and the first stays.
                    Some(AuctionState::Open { .. }) => return Ok(()),
                    Some(AuctionState::Waiting(bids)) => {
                        let bids = bids.clone();
                        for (t, price) in bids {
                            ctx.delete_event_time_timer(Timestamp(t));
                            if (date_time..=expires).contains(&t) {
                                max = max.max(Some(price));
                            }
                        }
                    }
                    None => {}
                }
                ctx.set(AuctionState::Open {
                    category,
                    date_time,
                    expires,
                    max,
                });
                ctx.register_event_time_timer(Timestamp(expires));
            }
            Q4In::Bid {
                price, date_time, ..
            } => match ctx.value_mut() {
                Some(AuctionState::Open {
                    date_time: opened,
                    expires,
                    max,
                    ..
                }) => {
                    if (*opened..=*expires).contains(&date_time) {
                        *max = (*max).max(Some(price));
                    }
                }
                Some(AuctionState::Waiting(bids)) => {
                    bids.push((date_time, price));
                    ctx.register_event_time_timer(Timestamp(date_time));
                }
                None => {
                    ctx.set(AuctionState::Waiting(vec![(date_time, price)]));
                    ctx.register_event_time_timer(Timestamp(date_time));
                }
            },
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut ProcessContext<'_, u64, AuctionState>,
        out: &mut Output<Vec<(u64, u64)>>,
    ) -> Result<(), OperatorError> {
        match ctx.value_mut() {
            Some(AuctionState::Open { expires, .. }) if ts.0 >= *expires => {
                if let Some(AuctionState::Open {
                    category,
                    max: Some(max),
                    ..
                }) = ctx.clear()
                {
                    out.push((category, max));
                }
            }
            Some(AuctionState::Waiting(bids)) => {
                // The watermark passed `ts`: no auction these bids could belong to follows.
                bids.retain(|&(t, _)| t > ts.0);
                if bids.is_empty() {
                    ctx.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One q4 result: a category and the mean of its auctions' winning bids.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q4 {
    /// The category.
    pub category: u64,
    /// The mean of the winning bids of its auctions that had a bid in their window.
    pub avg: f64,
}

/// Adds q4 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q4> {
    let p = opts.parallelism;
    events
        .filter_map("q4.select", |e: Event| match e {
            Event::Auction(a) => Some(Q4In::Auction {
                id: a.id,
                category: a.category,
                date_time: a.date_time,
                expires: a.expires,
            }),
            Event::Bid(b) => Some(Q4In::Bid {
                auction: b.auction,
                price: b.price,
                date_time: b.date_time,
            }),
            Event::Person(_) => None,
        })
        .parallelism(p)
        .key_by(Q4In::auction)
        .parallelism(p)
        .process("q4.max", WinningBid)
        .key_by(|m: &(u64, u64)| m.0)
        .parallelism(p)
        .aggregate(
            "q4.avg",
            Project::new(|m: &(u64, u64)| m.1, Mean::<u64>::new()),
        )
        .filter_map("q4.project", |(category, avg): (u64, Option<f64>)| {
            avg.map(|avg| Q4 { category, avg })
        })
        .parallelism(p)
}
