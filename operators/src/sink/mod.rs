//! Sinks: where data leaves a pipeline. Demand starts here.

mod basic;
mod iter;
mod throttle;

pub use basic::{Collect, Count, Discard, Fold, ForEach};
pub use iter::{IterSink, RowIter};
pub use throttle::Throttle;
