//! The Nexmark queries as weir pipelines, one module per query.
//!
//! Each module's `build(events, &opts)` takes the stream of [`Event`]s (with event time and
//! watermarks assigned at the source, late events already counted and left out) and returns
//! the query's result rows.

use weir_runtime::Timestamp;

use super::Event;

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

/// How a query is run.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Instances of each parallel stage.
    pub parallelism: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self { parallelism: 1 }
    }
}

/// An event's time, as every query's windows and timers read it.
pub fn event_time(e: &Event) -> Timestamp {
    Timestamp(e.date_time())
}
