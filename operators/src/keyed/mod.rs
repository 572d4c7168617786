//! Keyed processing under skew: the runtime-independent pieces.
//!
//! A keyed operator runs as `n` instances behind a partitioned edge. With skewed keys, plain
//! hash partitioning overloads the instance that owns the hottest key, and because weir's edges
//! are bounded and credit-driven, that one instance then throttles the whole pipeline. These
//! modules let a hot key be split over several instances and merged back exactly:
//!
//! - [`aggregate`] — mergeable aggregations ([`Aggregate`](aggregate::Aggregate)), the algebra
//!   that makes a split key's partial results combine into the unsplit result;
//! - [`sketch`] — a bounded-memory heavy-hitter sketch ([`SpaceSaving`](sketch::SpaceSaving))
//!   that finds the hot keys;
//! - [`route`] — routing decisions: stable key hashing, hash partitioning, partial key grouping
//!   and hot-key splitting, plus a simulator for their load balance;
//! - [`zipf`] — seeded Zipf key streams for tests and benchmarks.
#![warn(missing_docs)]

pub mod aggregate;
pub mod route;
pub mod sketch;
pub mod zipf;
