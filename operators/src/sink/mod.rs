//! Sinks: where data leaves a pipeline. Demand starts here.

mod basic;
mod iter;
pub mod ndjson;
mod throttle;

pub use basic::{Collect, Count, Discard, Fold, ForEach};
pub use iter::{IterSink, RowIter};
pub use ndjson::NdjsonSink;
pub use throttle::Throttle;
