//! Nexmark q8, new users: people who registered and opened an auction in the same tumbling
//! 10 s window.
//!
//! ```sql
//! SELECT P.id, P.name, P.starttime
//! FROM (
//!   SELECT P.id, P.name,
//!          TUMBLE_START(P.dateTime, INTERVAL '10' SECOND) AS starttime,
//!          TUMBLE_END(P.dateTime, INTERVAL '10' SECOND) AS endtime
//!   FROM person P
//!   GROUP BY P.id, P.name, TUMBLE(P.dateTime, INTERVAL '10' SECOND)
//! ) P
//! JOIN (
//!   SELECT A.seller,
//!          TUMBLE_START(A.dateTime, INTERVAL '10' SECOND) AS starttime,
//!          TUMBLE_END(A.dateTime, INTERVAL '10' SECOND) AS endtime
//!   FROM auction A
//!   GROUP BY A.seller, TUMBLE(A.dateTime, INTERVAL '10' SECOND)
//! ) A
//! ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
//! ```
//!
//! ```text
//! events ──q8.select──▶ JoinSide<P8, A8> ──hash(id | seller)──▶ q8.join [p] ──▶ q8.once [p] ──▶ Q8
//! ```
//!
//! `q8.select`, beside the source, keeps persons (id, name, time) and auctions (seller, time)
//! and tags them as the two sides of the library's [`WindowJoin`], which they reach routed by
//! person id. The join buffers each `(person, window)`'s rows of both sides and, when the
//! watermark passes the window's end, emits every pair and frees the window. A person who
//! opened several auctions in the window makes several pairs; `q8.once` keeps the first of
//! each `(person, window)`, as the SQL's grouping of auctions by seller does. It holds the
//! `(person, window)`s it has emitted until the watermark passes their window's end: a window
//! join emits all of a window's pairs before the watermark that closed it, so no pair of that
//! window can follow.

use std::collections::{BTreeMap, HashSet};
use std::mem::size_of;
use std::time::Duration;

use serde::Serialize;
use weir_operators::join::{JoinKeys, JoinSide, WindowJoin};
use weir_operators::prelude::*;
use weir_runtime::{InputPort, Operator, Output, StateSize};

use super::QueryOptions;
use crate::nexmark::Event;

/// The windows' size.
pub const SIZE: Duration = Duration::from_secs(10);

/// A person, as the join keeps it.
#[derive(Clone, Debug, HeapSize)]
pub struct P8 {
    /// The person's id: the join key.
    pub id: u64,
    /// Name.
    pub name: String,
    /// When they registered, epoch ms.
    pub date_time: i64,
}

/// An auction, as the join keeps it: who sells, and when.
#[derive(Clone, Copy, Debug, HeapSize)]
pub struct A8 {
    /// The seller's person id: the join key.
    pub seller: u64,
    /// When the auction opened, epoch ms.
    pub date_time: i64,
}

/// One q8 result: a person who opened an auction in the window they registered in.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q8 {
    /// The person's id.
    pub id: u64,
    /// The person's name.
    pub name: String,
    /// The window's first millisecond.
    pub starttime: i64,
}

/// A row of either side, keyed by the person's id.
fn person(side: &JoinSide<P8, A8>) -> u64 {
    match side {
        JoinSide::Left(p) => p.id,
        JoinSide::Right(a) => a.seller,
    }
}

/// `q8.once`: the first pair of each `(person, window)` as a [`Q8`] row (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct OncePerWindow {
    size_ms: i64,
    /// The persons emitted, by window start.
    emitted: BTreeMap<i64, HashSet<u64>>,
    ids: usize,
}

impl OncePerWindow {
    /// Deduplicates pairs of a window join over tumbling windows of `size_ms`.
    pub fn new(size_ms: i64) -> Self {
        Self {
            size_ms: size_ms.max(1),
            emitted: BTreeMap::new(),
            ids: 0,
        }
    }
}

impl Operator for OncePerWindow {
    type Input = Vec<(P8, A8)>;
    type Output = Vec<Q8>;

    fn on_batch(
        &mut self,
        _: InputPort,
        pairs: Vec<(P8, A8)>,
        out: &mut Output<Vec<Q8>>,
    ) -> Result<(), OperatorError> {
        for (person, _) in pairs {
            let start = person.date_time.div_euclid(self.size_ms) * self.size_ms;
            if self.emitted.entry(start).or_default().insert(person.id) {
                self.ids += 1;
                out.push(Q8 {
                    id: person.id,
                    name: person.name,
                    starttime: start,
                });
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<Q8>>,
    ) -> Result<(), OperatorError> {
        // Every pair of a window came before the watermark that reached its end.
        while let Some(window) = self.emitted.first_entry() {
            if window.key().saturating_add(self.size_ms) > watermark.0 {
                break;
            }
            self.ids -= window.remove().len();
        }
        out.watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, _: &mut Output<Vec<Q8>>) -> Result<(), OperatorError> {
        self.emitted.clear();
        self.ids = 0;
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        Some(StateSize {
            keys: self.ids as u64,
            bytes: (self.ids * size_of::<u64>() * 2
                + self.emitted.len() * size_of::<(i64, HashSet<u64>)>()) as u64,
            hottest_key_updates: 0,
        })
    }
}

/// Adds q8 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q8> {
    let p = opts.parallelism;
    let size_ms = SIZE.as_millis() as i64;
    events
        .filter_map("q8.select", |e: Event| match e {
            Event::Person(p) => Some(JoinSide::Left(P8 {
                id: p.id,
                name: p.name,
                date_time: p.date_time,
            })),
            Event::Auction(a) => Some(JoinSide::Right(A8 {
                seller: a.seller,
                date_time: a.date_time,
            })),
            Event::Bid(_) => None,
        })
        .parallelism(p)
        .key_by(person)
        .partitioned()
        .unary_with("q8.join", move |_| {
            WindowJoin::new(
                JoinKeys::new(|p: &P8| p.id, |a: &A8| a.seller),
                size_ms,
                |p: &P8| Timestamp(p.date_time),
                |a: &A8| Timestamp(a.date_time),
            )
        })
        .parallelism(p)
        .unary_with("q8.once", move |_| OncePerWindow::new(size_ms))
        .parallelism(p)
}
