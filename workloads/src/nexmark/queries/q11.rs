//! Nexmark q11, user sessions: each bidder's bids in session windows with a 10 s gap.
//!
//! ```sql
//! SELECT B.bidder, count(*) AS bid_count,
//!        SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS starttime,
//!        SESSION_END(B.dateTime, INTERVAL '10' SECOND) AS endtime
//! FROM bid B
//! GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND);
//! ```
//!
//! ```text
//! events ──q11.bids──▶ (bidder, dateTime) ──hash(bidder)──▶ q11.sessions [p] ──q11.project──▶ Q11
//! ```
//!
//! The library's keyed window with [`Session::with_gap(10 s)`](Session) and [`Count`]: each bid
//! opens `[t, t + 10 s)` and a bidder's overlapping windows merge, so a session runs from its
//! first bid to its last bid + 10 s, and a bid exactly 10 s after the last one starts a new
//! session. A session fires when the watermark passes its end and is freed then.

use std::time::Duration;

use serde::Serialize;
use weir_operators::keyed::aggregate::Count;
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// The gap that ends a session.
pub const GAP: Duration = Duration::from_secs(10);

/// The most open sessions one instance holds. A session lives from its bidder's first bid to
/// the watermark passing the last bid + 10 s: at the default 10 M events per second that is
/// every bidder of the last 14 s or more of event time — millions (two million people register
/// in 10 s), so the keyed stages' default bound (2²⁰) is far too low. The bound stays, as a
/// guard against a watermark that never advances.
pub const MAX_SESSIONS: usize = 1 << 26;

/// One q11 result: one session of one bidder.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q11 {
    /// The bidder's person id.
    pub bidder: u64,
    /// The bids in the session.
    pub bid_count: u64,
    /// The session's first bid time, epoch ms.
    pub starttime: i64,
    /// The session's last bid time + the gap, epoch ms (exclusive).
    pub endtime: i64,
}

/// Adds q11 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q11> {
    let p = opts.parallelism;
    events
        .filter_map("q11.bids", |e: Event| match e {
            Event::Bid(b) => Some((b.bidder, b.date_time)),
            _ => None,
        })
        .parallelism(p)
        .key_by(|b: &(u64, i64)| b.0)
        .parallelism(p)
        .window(Session::with_gap(GAP), |b: &(u64, i64)| Timestamp(b.1))
        .max_windows(MAX_SESSIONS)
        .aggregate("q11.sessions", Count::new())
        .map("q11.project", |w: Windowed<u64, u64>| Q11 {
            bidder: w.key,
            bid_count: w.value,
            starttime: w.start.0,
            endtime: w.end.0,
        })
        .parallelism(p)
}
