//! # weir
//!
//! A stream-processing dataflow runtime whose first principle is that **no stage ever accepts
//! more work than it can finish**.
//!
//! A pipeline is a graph of named operators. Every edge between them is a bounded ring buffer —
//! bounded in batches *and* bytes — and demand flows upstream as credit: a consumer grants
//! `request(n)`, a producer sends only against it, and a source is read only when credit reaches
//! it. Ingestion therefore settles at the rate of the slowest sink, with memory bounded by the
//! edges' capacities, and every run report names the operator that is the constraint.
//!
//! ```
//! use weir::prelude::*;
//!
//! #[derive(Clone, HeapSize)]
//! struct Order { id: u64, cents: u64 }
//!
//! let mut p = Pipeline::new("orders");
//! let orders = p.source("gen", Generator::new(100_000, |i| Order { id: i, cents: i % 9_973 }));
//! let big = orders.filter("big", |o| o.cents > 5_000);
//! let totals = big.map("cents", |o| o.cents);
//! let sum = totals.clone().sink("sum", Fold::new(0u64, |acc, c| acc + c)); // fan-out
//! let count = totals.sink("count", Count::new());
//! let report = p.run()?;
//! // The same answer as a plain iterator gives:
//! let expected = (0..100_000u64).map(|i| i % 9_973).filter(|&c| c > 5_000);
//! assert_eq!(count.take(), Some(expected.clone().count() as u64));
//! assert_eq!(sum.take(), Some(expected.sum()));
//! println!("{report}");
//! # Ok::<(), weir::RunError>(())
//! ```
//!
//! # Parallelism
//!
//! An operator runs [`PipelineConfig::parallelism`](runtime::PipelineConfig::parallelism)
//! instances — the job-wide default, 1 unless set — or its own
//! [`parallelism`](runtime::StreamCore::parallelism). It does not inherit its input's: set the
//! job-wide default once rather than on every stage. Sources and sinks given as one value run
//! one instance.
//!
//! ```
//! use weir::prelude::*;
//!
//! let config = PipelineConfig { parallelism: 3, ..PipelineConfig::default() };
//! let mut p = Pipeline::with_config("par", config);
//! let doubled = p.source("gen", Generator::new(1_000, |i| i)).map("double", |x| x * 2);
//! let sum = doubled.map("half", |x| x / 2).parallelism(2).fold("sum", 0u64, |a, x| a + x);
//! let report = p.run()?;
//! let instances = |name: &str| {
//!     let op = report.operators.iter().find(|o| o.name == name);
//!     op.map(|o| o.instances.len())
//! };
//! assert_eq!(instances("gen"), Some(1));
//! assert_eq!(instances("double"), Some(3)); // the job-wide default
//! assert_eq!(instances("half"), Some(2)); // its own
//! assert_eq!(sum.take(), Some((0..1_000).sum()));
//! # Ok::<(), weir::RunError>(())
//! ```
//!
//! The crates behind the facade:
//!
//! - [`runtime`] (`weir-runtime`): graph, edges and the demand protocol, executor, metrics;
//! - [`operators`] (`weir-operators`): built-in sources, transforms and sinks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod interrupt;

/// The `arrow` crate weir is built with, so that a pipeline needs no version pinned to match.
pub use arrow;
/// The `parquet` crate weir's part sinks write with.
pub use parquet;

pub use weir_operators as operators;
pub use weir_runtime as runtime;
pub use weir_runtime::{GraphError, OperatorError, RunError, RunReport};

/// Everything a pipeline definition usually needs.
pub mod prelude {
    pub use weir_operators::prelude::*;
    pub use weir_runtime::{
        Batch, Chaining, InstanceInfo, Operator, Output, Partitioning, Placement, RunHandle, Sink,
        SinkHandle, Source, SourceStatus, StreamCore,
    };
}
