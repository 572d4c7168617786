//! Nexmark: the standard streaming benchmark's events, generator, queries and reference answers.
//!
//! - [`model`] — persons, auctions and bids, and their NDJSON lines;
//! - [`generator`] — the generator: every event a pure function of the seed and its number;
//! - [`io`] — NDJSON files of events, the file and generator sources, the result file sink;
//! - [`pace`] — paced runs: events released in wall time, and the latency of results;
//! - [`queries`] — the queries as weir pipelines, and the registry that attaches one by number;
//! - [`reference`](mod@reference) — every query as a plain batch computation, and the comparison of answers;
//! - [`run`](mod@run) — one run: events, watermarks, the late filter, a query, results, figures
//!   (what `weir nexmark` does).

pub mod generator;
pub mod io;
pub mod model;
pub mod pace;
pub mod queries;
pub mod reference;
pub mod run;

pub use generator::{Generator, GeneratorConfig};
pub use model::{Auction, Bid, Event, Person};
