//! weir's built-in operators: sources, transforms and sinks, each a thin layer over the public
//! operator API of `weir-runtime`.
//!
//! Transforms on typed streams come from the [`StreamExt`] extension trait.
//!
//! # Examples
//!
//! ```
//! use weir_operators::prelude::*;
//!
//! let mut p = Pipeline::new("example");
//! let n = p
//!     .source("gen", Generator::new(1_000, |i| i))
//!     .filter("odd", |x| x % 2 == 1)
//!     .count("count");
//! p.run()?;
//! assert_eq!(n.take(), Some(500));
//! # Ok::<(), weir_runtime::RunError>(())
//! ```
//! weir's built-in operators: sources, transforms, sinks and connectors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod columnar;
pub mod connector;
pub mod join;
pub mod keyed;
mod lane;
pub mod overload;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod transform;
pub mod window;

pub use transform::StreamExt;

/// The `arrow` crate these operators are built with, so that a pipeline needs no version pinned
/// to match.
pub use arrow;
/// The `parquet` crate the part sinks write with.
pub use parquet;

/// The names most pipelines need.
pub mod prelude {
    pub use crate::join::JoinExt;
    pub use crate::keyed::process::{KeyedProcessFunction, ProcessContext, TimeDomain};
    pub use crate::keyed::{KeyedExt, PartitionExt};
    pub use crate::sink::{Collect, Count, Discard, Fold, ForEach, NdjsonSink, Throttle};
    pub use crate::source::{AsyncSource, Generator, IterSource};
    pub use crate::transform::{unary_fn, AsyncStreamExt, StreamExt};
    pub use crate::window::{Session, Sliding, Tumbling, WindowAllExt, WindowExt, Windowed};
    pub use weir_runtime::{
        Data, EdgeConfig, HeapSize, OperatorError, Overflow, Pipeline, PipelineConfig, RunError,
        RunReport, Stream, Timestamp,
    };
}
