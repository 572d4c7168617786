//! Nexmark: the standard streaming benchmark's events, generator, queries and reference answers.
//!
//! - [`model`] — persons, auctions and bids, and their NDJSON lines;
//! - [`generator`] — the generator: every event a pure function of the seed and its number.

pub mod generator;
pub mod model;
pub mod queries;

pub use generator::{Generator, GeneratorConfig};
pub use model::{Auction, Bid, Event, Person};
