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
//!   and hot-key splitting.
//!
//! and wire them into pipelines:
//!
//! - [`stream`] — `stream.key_by(|r| key)` ([`KeyedExt`]) and `.aggregate(..)`, which builds
//!   the keyed graph (combiner, shuffle, partial and merge stages) for a chosen strategy;
//! - [`partition`] — the strategies as runtime partitioners, reading the edges' credit as the
//!   load signal, and credit-aware rebalancing for keyless data ([`PartitionExt`]);
//! - [`process`] — keyed process functions: per-key value state with a time-to-live, event-time
//!   and processing-time timers (`key_by(..).process(..)`);
//! - [`stage`] — the keyed operator itself, with bounded state ([`state`]) and optional
//!   pacing to a fixed row rate ([`pace`]).
#![warn(missing_docs)]

pub mod aggregate;
pub mod pace;
pub mod partition;
pub mod process;
pub mod route;
pub mod sketch;
pub mod stage;
pub mod state;
pub mod stream;

pub use stream::{Combine, Emit, KeyedExt, KeyedStream, PartitionExt};
