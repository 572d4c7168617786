//! The Nexmark queries as weir pipelines, and the registry that attaches one by number.
//!
//! Each query is a function `build(events: Stream<Event>, opts: &QueryOptions) -> Stream<Row>`
//! in its own module, its `Row` a `Serialize` struct whose fields are the query's result
//! columns, in order. The events it is given are already stamped with watermarks (bounded by
//! [`QueryOptions::max_delay_ms`] on `dateTime`) and rid of late events (see
//! [`run`](super::run)); the query adds nothing of the kind itself.
//!
//! [`attach`] builds query `n` over a stream of events and ends its results in a
//! [`ResultSink`]: an NDJSON file (one JSON object per row) or a count; in a paced run the
//! sink also measures each row's latency ([`pace`](super::pace)).
//!
//! Each module's header gives the query's SQL (as Flink's Nexmark writes it) and draws the
//! graph it builds. Every query projects the events it needs in its first operator, beside the
//! source, so no string it does not output is copied, and no event it does not need crosses a
//! shuffle.
//!
//! | query | built from | state, and when it is freed |
//! |---|---|---|
//! | [`q0`], [`q1`], [`q2`] | one `filter_map` | none |
//! | [`q3`] | the regular inner join ([`InnerJoin`](weir_operators::join::InnerJoin)) | every selected person and auction: grows with them, as the SQL's join does |
//! | [`q4`] | a keyed process function per auction (an event-time timer at `expires`), then the keyed [`Mean`](weir_operators::keyed::aggregate::Mean) per category, **emitted once per category at the end of the input** | open auctions, freed at `expires`; bids waiting for their auction, freed behind the watermark |
//! | [`q5`] | a sliding keyed window count with a combiner, then a window over the whole stream keeping the top auctions | counts per `(auction, window)`, freed when the window fires |
//! | [`q7`] | a tumbling window over the whole stream keeping the bids at the highest price, with a combiner | one accumulator per window |
//! | [`q8`] | the tumbling window join ([`WindowJoin`](weir_operators::join::WindowJoin)), then one row per `(person, window)` | both sides' rows per window, freed when it fires |
//! | [`q11`] | a keyed session window count | one accumulator per open session |
//!
//! The windowed queries' state is freed behind the watermark, so their memory stays flat as a
//! run grows; `opts.parallelism` sets every stage's instances.

use std::path::PathBuf;

use serde::Serialize;
use weir_operators::prelude::*;
use weir_runtime::SinkHandle;

use super::model::Event;
use super::pace::{Latency, ResultCount, ResultsSink, Timing};

pub mod q0;
pub mod q1;
pub mod q11;
pub mod q2;
pub mod q3;
pub mod q4;
pub mod q5;
pub mod q7;
pub mod q8;
#[cfg(test)]
mod tests;

/// What every query is built with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryOptions {
    /// Instances of the query's operators.
    pub parallelism: usize,
    /// How far event time may run out of order, ms: the events' watermark trails the largest
    /// `dateTime` seen by this much, and an event further behind is late.
    pub max_delay_ms: i64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            parallelism: 1,
            max_delay_ms: 10_000,
        }
    }
}

/// Where a query's result rows go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultSink {
    /// Counted and dropped.
    Count,
    /// Written to this NDJSON file, one row per line (created or truncated).
    Ndjson(PathBuf),
}

/// Why a query could not be attached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// The query is part of the benchmark but has no pipeline here yet.
    #[error("query {0} is not built yet")]
    NotBuilt(u32),
    /// No such Nexmark query.
    #[error("there is no Nexmark query {0} (the queries are 0-5, 7, 8 and 11)")]
    Unknown(u32),
}

/// The queries the benchmark defines, in order.
pub const QUERIES: [u32; 9] = [0, 1, 2, 3, 4, 5, 7, 8, 11];

/// Builds query `query` over `events` and ends its results in `sink`, measuring their latency
/// under `timing` in a paced run. The handle yields the number of result rows (written or
/// counted) and their latency after the run.
///
/// # Errors
///
/// [`QueryError::Unknown`] for a number that is no Nexmark query, [`QueryError::NotBuilt`] for
/// one without a pipeline yet.
pub fn attach(
    query: u32,
    events: Stream<Event>,
    opts: &QueryOptions,
    sink: &ResultSink,
    timing: Option<&Timing>,
) -> Result<SinkHandle<ResultCount>, QueryError> {
    let t = timing;
    match query {
        0 => Ok(finish(q0::build(events, opts), sink, t)),
        1 => Ok(finish(q1::build(events, opts), sink, t)),
        2 => Ok(finish(q2::build(events, opts), sink, t)),
        3 => Ok(finish(q3::build(events, opts), sink, t)),
        4 => Ok(finish(q4::build(events, opts), sink, t)),
        5 => Ok(finish(q5::build(events, opts), sink, t)),
        7 => Ok(finish(q7::build(events, opts), sink, t)),
        8 => Ok(finish(q8::build(events, opts), sink, t)),
        11 => Ok(finish(q11::build(events, opts), sink, t)),
        other => Err(QueryError::Unknown(other)),
    }
}

/// An event's time, as the queries' windows, joins and timers read it.
pub fn event_time(e: &Event) -> Timestamp {
    Timestamp(e.date_time())
}

/// Ends a query's result rows in `sink` (one [`ResultsSink`] instance, named `results`),
/// measuring their latency under `timing` if given.
pub fn finish<R: Serialize + Latency + Data>(
    rows: Stream<R>,
    sink: &ResultSink,
    timing: Option<&Timing>,
) -> SinkHandle<ResultCount> {
    let file = match sink {
        ResultSink::Count => None,
        ResultSink::Ndjson(path) => Some(path.clone()),
    };
    rows.sink("results", ResultsSink::new(file, timing.cloned()))
}
