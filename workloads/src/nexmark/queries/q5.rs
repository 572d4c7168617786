//! Nexmark q5, hot items: in each sliding window of 10 s every 2 s, the auction(s) with the most
//! bids.
//!
//! ```sql
//! SELECT AuctionBids.auction, AuctionBids.num
//! FROM (
//!   SELECT B1.auction, count(*) AS num,
//!          HOP_START(B1.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS starttime,
//!          HOP_END(B1.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS endtime
//!   FROM bid B1
//!   GROUP BY B1.auction, HOP(B1.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
//! ) AS AuctionBids
//! JOIN (
//!   SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
//!   FROM (
//!     SELECT count(*) AS num,
//!            HOP_START(B2.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS starttime,
//!            HOP_END(B2.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS endtime
//!     FROM bid B2
//!     GROUP BY B2.auction, HOP(B2.dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
//!   ) AS CountBids
//!   GROUP BY CountBids.starttime, CountBids.endtime
//! ) AS MaxBids
//! ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
//!    AND AuctionBids.num >= MaxBids.maxn;
//! ```
//!
//! ```text
//! events ──q5.bids──▶ (auction, dateTime) ──▶ q5.count.combine [p] ──hash(auction)──▶ q5.count [p]
//!        ──▶ Windowed<auction, num> ──▶ q5.top.combine [p] ──▶ q5.top [1] ──q5.project──▶ Q5
//! ```
//!
//! 1. **Bids per auction and window** (`q5.count`): the library's keyed window with
//!    [`Sliding::of(10 s, 2 s)`](Sliding) and [`Count`]. A bid counts in the five windows that
//!    contain it. A combiner beside each source instance counts per `(auction, window)` before
//!    the shuffle, so a hot auction (`--hot-auction-ratio 100`: nearly every bid on one auction)
//!    crosses it as one partial count per combiner flush instead of one row per bid, and the
//!    instance that owns it does no more work than the others. (Splitting the hot key over
//!    instances as well, [`Strategy::HotKeySplit`](weir_operators::keyed::route::Strategy),
//!    would only add a merge stage behind a combiner that already did the reduction.)
//! 2. **The top of each window** (`q5.top`): every count of a window `[s, s + 10 s)` carries
//!    the event time `s + 10 s − 1 ms`, so tumbling windows of the slide, 2 s, over the counts
//!    hold exactly one sliding window's counts each. [`HotItems`] keeps the highest count and
//!    every auction that has it (ties are all kept, as the SQL's `num >= maxn`); it merges, so a
//!    combiner per instance pre-aggregates and the single final instance sees one partial per
//!    window and instance.
//!
//! Both stages fire when the watermark passes a window's end and free it then.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_operators::keyed::aggregate::{Aggregate, Count};
use weir_operators::keyed::Combine;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// The windows' size.
pub const SIZE: Duration = Duration::from_secs(10);
/// How far apart windows start.
pub const SLIDE: Duration = Duration::from_secs(2);
/// `(auction, window)` counts each combiner holds before it hands the coldest on.
pub const COMBINE_WINDOWS: usize = 1 << 16;
/// The most `(auction, window)` counts one `q5.count` instance holds.
///
/// Every auction bid on in the last `SIZE + max delay` of event time has counts held (up to
/// five, one per window still open): at the default 10 M events per second that is millions
/// of auctions, so the keyed stages' default bound (2²⁰) is far too low. The bound stays, as
/// a guard against a watermark that never advances.
pub const MAX_WINDOWS: usize = 1 << 26;

/// One q5 result: an auction with the most bids in a window.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q5 {
    /// The auction.
    pub auction: u64,
    /// Its bids in the window: the most of any auction there.
    pub num: u64,
    /// The window's first millisecond.
    pub window_start: i64,
    /// The window's end, exclusive.
    pub window_end: i64,
}

/// The highest count in a window and the auctions with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, HeapSize, Serialize, Deserialize)]
pub struct Top {
    /// The highest count (0 while empty).
    pub num: u64,
    /// Every auction with that count.
    pub auctions: Vec<u64>,
}

/// The mergeable "highest count, with ties" aggregation over one window's counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct HotItems;

impl Aggregate for HotItems {
    type Input = Windowed<u64, u64>;
    type Acc = Top;
    type Output = Top;

    fn init(&self) -> Top {
        Top::default()
    }

    fn add(&self, acc: &mut Top, count: &Windowed<u64, u64>) {
        if count.value > acc.num {
            acc.num = count.value;
            acc.auctions.clear();
        }
        if count.value == acc.num {
            acc.auctions.push(count.key);
        }
    }

    fn merge(&self, acc: &mut Top, other: Top) {
        if other.num > acc.num {
            *acc = other;
        } else if other.num == acc.num {
            acc.auctions.extend(other.auctions);
        }
    }

    fn finish(&self, acc: &Top) -> Top {
        acc.clone()
    }
}

/// Adds q5 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q5> {
    let p = opts.parallelism;
    let size_ms = SIZE.as_millis() as i64;
    events
        .filter_map("q5.bids", |e: Event| match e {
            Event::Bid(b) => Some((b.auction, b.date_time)),
            _ => None,
        })
        .parallelism(p)
        .key_by(|b: &(u64, i64)| b.0)
        .parallelism(p)
        .window(Sliding::of(SIZE, SLIDE), |b: &(u64, i64)| Timestamp(b.1))
        .combine_with(Combine::new(COMBINE_WINDOWS).parallelism(p))
        .max_windows(MAX_WINDOWS)
        .aggregate("q5.count", Count::new())
        .window_all(Tumbling::of(SLIDE), Windowed::timestamp)
        .combine_with(Combine::new(16).parallelism(p))
        .aggregate("q5.top", HotItems)
        .flat_map("q5.project", move |w: Windowed<(), Top>| {
            let (num, end) = (w.value.num, w.end.0);
            w.value.auctions.into_iter().map(move |auction| Q5 {
                auction,
                num,
                window_start: end - size_ms,
                window_end: end,
            })
        })
}
