//! Columnar streams: Arrow [`RecordBatch`]es flowing through a pipeline, with the schema carried
//! by the stream.
//!
//! An [`ArrowStream`] is a `StreamCore<RecordBatch>` plus the [`SchemaRef`] every batch on it
//! has. Each operator added through it computes its output schema when the pipeline is *built*,
//! so a misspelt column or an impossible cast is a [`PlanError`] before anything runs, and each
//! operator builds its output batches against that schema at run time. Edges account Arrow
//! batches by rows and array memory (`RecordBatch` implements the runtime's `Batch`).
//!
//! | piece | what it is |
//! |---|---|
//! | [`ArrowStream::project`], [`filter`](ArrowStream::filter), [`with_column`](ArrowStream::with_column), [`cast`](ArrowStream::cast), [`map_batches`](ArrowStream::map_batches) | vectorised operators over Arrow compute kernels |
//! | [`ArrowStream::aggregate`] ([`Agg`]) | keyed hash aggregation: hash-partitioned by the key columns, then count / sum / min / max / mean per key |
//! | [`ArrowStream::tumbling_window`] ([`ArrowWindowedStream`]) | the same aggregation per event-time tumbling window, fired by the watermark, with allowed lateness and late rows on a side output ([`window`] module: every semantic choice) |
//! | [`ArrowStream::bounded_out_of_orderness`] | watermarks trailing the largest event time of a timestamp column by a fixed delay |
//! | [`RowsToArrow`], [`ArrowToRows`] ([`ToArrowExt::to_arrow`], [`ArrowStream::to_rows`]) | typed `serde` rows ⇄ Arrow batches, through `serde_arrow` |
//! | [`ReaderSource`], [`csv_split`] | demand-driven file sources: one batch read per credit, on the source's own thread |
//! | [`PartSink`], [`DeadLetterSink`] | rolling Parquet / CSV / NDJSON part files, written off the async workers |
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
//! use arrow::compute::kernels::cmp::gt;
//! use arrow::datatypes::{DataType, Field, Schema};
//! use weir_operators::columnar::{Agg, ArrowStream, BatchSource};
//! use weir_operators::prelude::*;
//!
//! #[derive(Debug, PartialEq, serde::Deserialize, HeapSize)]
//! struct Total { k: String, n: u64, total: i64 }
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("k", DataType::Utf8, false),
//!     Field::new("v", DataType::Int64, false),
//! ]));
//! let batch = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(StringArray::from(vec!["a", "b", "a", "c"])) as ArrayRef,
//!     Arc::new(Int64Array::from(vec![1, 2, 3, -4])),
//! ])?;
//! let mut p = Pipeline::new("columnar");
//! let totals = ArrowStream::source(&mut p, "batches", BatchSource::new(schema, vec![batch]))
//!     .filter("positive", |b| gt(b.column(1), &Int64Array::new_scalar(0)))
//!     .aggregate("by_k", &["k"], vec![Agg::count("n"), Agg::sum("v", "total")])?
//!     .to_rows::<Total>("rows")
//!     .collect("out");
//! p.run()?;
//! assert_eq!(
//!     totals.take().unwrap(),
//!     vec![Total { k: "a".into(), n: 2, total: 4 }, Total { k: "b".into(), n: 1, total: 2 }]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod convert;
mod exact_sum;
mod ops;
mod sink;
mod source;
mod watermark;
pub mod window;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use weir_runtime::{EdgeConfig, Pipeline, Sink, SinkHandle, Source, Stream, StreamCore};

use crate::connector::DeadLetter;

pub use crate::connector::csv::{
    csv_split, csv_split_with, ChunkStep, CsvChunk, CsvChunker, CsvParse, SplitOptions,
};
pub use aggregate::{Agg, AggFunc, HashAggregate, KeyPartitioner};
pub use convert::{schema_of, ArrowToRows, RowsToArrow, ToArrowExt};
pub use exact_sum::ExactSum;
pub use ops::{BatchFn, FilterBatches};
pub use sink::{DeadLetterSink, PartSink, PartSinkOptions};
pub(crate) use source::read_error;
pub use source::{BatchSource, ReaderSource};

pub use window::{late_rows, ArrowWindowedStream, TumblingWindowAggregate};

/// Errors found while building a columnar pipeline, before it runs.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An operator names a column the stream does not have.
    #[error("`{operator}`: no column `{column}`; the stream has {available:?}")]
    UnknownColumn {
        /// The operator being added.
        operator: String,
        /// The column asked for.
        column: String,
        /// The stream's columns.
        available: Vec<String>,
    },
    /// A cast Arrow cannot do.
    #[error("`{operator}`: cannot cast column `{column}` from {from} to {to}")]
    CannotCast {
        /// The operator being added.
        operator: String,
        /// The column.
        column: String,
        /// Its type.
        from: DataType,
        /// The type asked for.
        to: DataType,
    },
    /// An aggregate over a column that is not numeric.
    #[error("`{operator}`: {func:?} needs a numeric column, `{column}` is {data_type}")]
    NotNumeric {
        /// The operator being added.
        operator: String,
        /// The aggregate function.
        func: AggFunc,
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },
    /// Two output columns would have the same name.
    #[error("`{operator}`: output column `{column}` appears twice")]
    DuplicateColumn {
        /// The operator being added.
        operator: String,
        /// The column.
        column: String,
    },
    /// An event-time column that does not hold milliseconds.
    #[error("`{operator}`: the event time column `{column}` is {data_type}; it must be Timestamp(Millisecond, _) or Int64 milliseconds")]
    NotEventTime {
        /// The operator being added.
        operator: String,
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },
    /// A `serde` row type that has no Arrow schema.
    #[error("`{operator}`: cannot derive an Arrow schema for the row type: {source}")]
    Schema {
        /// The operator being added.
        operator: String,
        /// The cause.
        #[source]
        source: serde_arrow::Error,
    },
}

/// A stream of Arrow record batches that all have [`schema`](ArrowStream::schema).
///
/// Cloning it fans the stream out (as with any stream: the slowest consumer governs).
///
/// # Examples
///
/// A file → Arrow operators → Parquet pipeline (the README's "First file pipeline" has the
/// whole program):
///
/// ```
/// use std::sync::Arc;
/// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
/// use weir_operators::arrow::compute::kernels::cmp::gt;
/// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
/// use weir_operators::columnar::{Agg, ArrowStream, BatchSource, PartSinkOptions};
/// use weir_operators::connector::{ParquetCompression, PartFormat};
/// use weir_operators::prelude::*;
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("country", DataType::Utf8, false),
///     Field::new("cents", DataType::Int64, false),
/// ]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(StringArray::from(vec!["DE", "FR", "DE", "FR"])) as ArrayRef,
///     Arc::new(Int64Array::from(vec![500, 0, 250, 125])),
/// ])?;
/// let out = std::env::temp_dir().join(format!("weir-arrow-stream-doc-{}", std::process::id()));
/// let mut p = Pipeline::new("revenue");
/// let written = ArrowStream::source(&mut p, "orders", BatchSource::new(schema, vec![batch]))
///     .filter("paid", |b| gt(b.column(1), &Int64Array::new_scalar(0)))
///     .aggregate("by_country", &["country"], vec![Agg::sum("cents", "revenue_cents")])?
///     .write_parts("revenue", &out, PartSinkOptions::new(PartFormat::parquet(ParquetCompression::Snappy)), 1);
/// p.run()?;
/// assert_eq!(written.take().map(|w| w.rows), Some(2)); // one row per country
/// # std::fs::remove_dir_all(&out)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ArrowStream {
    stream: StreamCore<RecordBatch>,
    schema: SchemaRef,
}

impl Clone for ArrowStream {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            schema: self.schema.clone(),
        }
    }
}

impl ArrowStream {
    /// Wraps a stream whose batches all have `schema`.
    pub fn new(stream: StreamCore<RecordBatch>, schema: SchemaRef) -> Self {
        Self { stream, schema }
    }

    /// Adds `source` to `pipeline`, taking the stream's schema from it.
    pub fn source<S>(pipeline: &mut Pipeline, name: impl Into<String>, source: S) -> Self
    where
        S: Source<Output = RecordBatch> + SchemaSource,
    {
        let schema = source.schema();
        Self::new(pipeline.source(name, source), schema)
    }

    /// The schema of every batch on this stream.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The underlying stream (for the runtime's generic wiring).
    pub fn into_inner(self) -> StreamCore<RecordBatch> {
        self.stream
    }

    /// The producing operator's name.
    pub fn name(&self) -> String {
        self.stream.name()
    }

    /// Sets the parallelism of the operator producing this stream.
    pub fn parallelism(self, parallelism: usize) -> Self {
        Self {
            stream: self.stream.parallelism(parallelism),
            schema: self.schema,
        }
    }

    /// Spreads batches round-robin over the next operator's instances.
    pub fn rebalance(self) -> Self {
        Self {
            stream: self.stream.rebalance(),
            schema: self.schema,
        }
    }

    /// Sizes the edge(s) to the next operator.
    pub fn with_edge(self, config: EdgeConfig) -> Self {
        Self {
            stream: self.stream.with_edge(config),
            schema: self.schema,
        }
    }

    /// Ends the stream in `sink` (one instance), as [`StreamCore::sink`] does; the handle yields
    /// the sink's result after the run.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    /// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    /// use weir_runtime::{InputPort, Sink};
    ///
    /// struct Rows(usize);
    /// impl Sink for Rows {
    ///     type Input = RecordBatch;
    ///     type Output = usize;
    ///     fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
    ///         self.0 += b.num_rows();
    ///         Ok(())
    ///     }
    ///     fn finish(&mut self) -> Result<usize, OperatorError> {
    ///         Ok(self.0)
    ///     }
    /// }
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    /// let batch = RecordBatch::try_new(
    ///     schema.clone(),
    ///     vec![Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef],
    /// )?;
    /// let mut p = Pipeline::new("rows");
    /// let rows = ArrowStream::source(&mut p, "batches", BatchSource::new(schema, vec![batch]))
    ///     .sink("rows", Rows(0));
    /// p.run()?;
    /// assert_eq!(rows.take(), Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sink<K: Sink<Input = RecordBatch>>(
        self,
        name: impl Into<String>,
        sink: K,
    ) -> SinkHandle<K::Output> {
        self.stream.sink(name, sink)
    }

    /// The records the producing operator rejected.
    pub fn dead_letters(&self) -> Stream<DeadLetter> {
        self.stream.dead_letters()
    }

    /// The index of `column`, or [`PlanError::UnknownColumn`] naming `operator`.
    pub(crate) fn index_of(&self, operator: &str, column: &str) -> Result<usize, PlanError> {
        index_of(&self.schema, operator, column)
    }
}

pub(crate) fn index_of(
    schema: &SchemaRef,
    operator: &str,
    column: &str,
) -> Result<usize, PlanError> {
    schema
        .index_of(column)
        .map_err(|_| PlanError::UnknownColumn {
            operator: operator.to_owned(),
            column: column.to_owned(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        })
}

/// A source that knows the schema of its batches before it runs.
pub trait SchemaSource {
    /// The schema of every batch the source emits.
    fn schema(&self) -> SchemaRef;
}

/// An operator error from an Arrow failure in operator `what`.
pub(crate) fn arrow_error(what: &str, e: arrow::error::ArrowError) -> weir_runtime::OperatorError {
    weir_runtime::OperatorError::user(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests;
