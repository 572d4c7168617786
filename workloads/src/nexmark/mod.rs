//! Nexmark: the standard streaming benchmark's events, generator, queries and reference answers.
//!
//! - [`model`] — persons, auctions and bids, and their NDJSON lines.

pub mod model;
pub mod queries;

pub use model::{Auction, Bid, Event, Person};
