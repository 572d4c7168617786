//! Nexmark q3, local item suggestion: who sells in category 10 in Oregon, Idaho or California.
//!
//! ```sql
//! SELECT P.name, P.city, P.state, A.id
//! FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
//! WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
//! ```
//!
//! A regular (unwindowed) inner join, as the SQL's: each pair is emitted once, as soon as its
//! second row arrives, whichever side that is, and the join keeps every selected person and
//! auction (its state grows with them, as Flink's does without a state time-to-live).
//!
//! ```text
//! events ──q3.select──▶ JoinSide<A3, P3> ──hash(seller | id)──▶ q3.join [p] ──q3.project──▶ Q3
//! ```
//!
//! One pass over the events does the selection and the projection of both sides (`q3.select`,
//! beside the source): only the auction's two ids and the person's name, city and state go on,
//! tagged as the join's [`JoinSide`]s, so neither the event stream is copied for two branches
//! nor an unselected row crosses the shuffle. The rows are then routed by the join key (the
//! auction's seller, the person's id) to the instances of the library's [`InnerJoin`].

use serde::Serialize;
use weir_operators::join::{InnerJoin, JoinKeys, JoinOptions, JoinSide};
use weir_operators::prelude::*;

use super::QueryOptions;
use crate::nexmark::Event;

/// The category q3 selects.
pub const CATEGORY: u64 = 10;

/// The states q3 selects.
pub const STATES: [&str; 3] = ["OR", "ID", "CA"];

/// An auction of category 10, as the join keeps it.
#[derive(Clone, Debug, HeapSize)]
pub struct A3 {
    /// The auction's id.
    pub id: u64,
    /// The seller's person id: the join key.
    pub seller: u64,
}

/// A person in one of [`STATES`], as the join keeps it.
#[derive(Clone, Debug, HeapSize)]
pub struct P3 {
    /// The person's id: the join key.
    pub id: u64,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// State.
    pub state: String,
}

/// One q3 result: a selected seller and one of their category-10 auctions.
#[derive(Serialize, Clone, HeapSize, Debug)]
pub struct Q3 {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction's id.
    pub id: u64,
    /// The seller's person id, for the latency of the row; not written.
    #[serde(skip)]
    pub seller: u64,
}

/// A row of either side, keyed by the seller's person id.
fn seller(side: &JoinSide<A3, P3>) -> u64 {
    match side {
        JoinSide::Left(a) => a.seller,
        JoinSide::Right(p) => p.id,
    }
}

/// Adds q3 to the pipeline of `events`.
pub fn build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Q3> {
    let sides = events
        .filter_map("q3.select", |e: Event| match e {
            Event::Auction(a) if a.category == CATEGORY => Some(JoinSide::Left(A3 {
                id: a.id,
                seller: a.seller,
            })),
            Event::Person(p) if STATES.contains(&p.state.as_str()) => Some(JoinSide::Right(P3 {
                id: p.id,
                name: p.name,
                city: p.city,
                state: p.state,
            })),
            _ => None,
        })
        .parallelism(opts.parallelism);
    sides
        .key_by(seller)
        .partitioned()
        .unary_with("q3.join", |_| {
            let keys = JoinKeys::new(|a: &A3| a.seller, |p: &P3| p.id);
            InnerJoin::new(keys, &JoinOptions::default())
        })
        .parallelism(opts.parallelism)
        .map("q3.project", |(a, p): (A3, P3)| Q3 {
            name: p.name,
            city: p.city,
            state: p.state,
            id: a.id,
            seller: p.id,
        })
        .parallelism(opts.parallelism)
}
