//! Bounded out-of-orderness on a timestamp column of Arrow batches.
//!
//! [`ArrowStream::bounded_out_of_orderness`] checks, when the pipeline is built, that the column
//! exists and holds event times (`Timestamp` of any unit, or `Int64` milliseconds), then gives
//! the stream the runtime's bounded strategy on that column
//! ([`WatermarkStrategy::bounded`]`(max_delay).column(..)`, see
//! [`event_time`](weir_runtime::event_time) for every choice it makes): after each batch that
//! advances it, the watermark `max_seen − max_delay − 1 ms`, where `max_seen` is the largest
//! event time the instance has passed on; never backwards; nulls skipped; `+∞` at the end of
//! the input. On a source's own stream the source applies it (with idleness and alignment); on
//! any other stream, such as the output of a parse stage, an operator `<producer>.watermarks`
//! placed after the producer, at its parallelism, applies it and replaces upstream watermarks.

use std::time::Duration;

use weir_runtime::WatermarkStrategy;

use super::window::time_column;
use super::{ArrowStream, PlanError};

impl ArrowStream {
    /// Watermarks trailing the largest value of `time_column` seen by each instance by
    /// `max_delay`: the runtime's bounded strategy on that column (every choice it makes is in
    /// [`event_time`](weir_runtime::event_time)).
    ///
    /// # Errors
    ///
    /// [`PlanError`] if the column is missing or does not hold event times.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use arrow::array::{Int64Array, RecordBatch};
    /// use arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
    /// let batch = RecordBatch::try_new(
    ///     schema.clone(),
    ///     vec![Arc::new(Int64Array::from(vec![1_000, 5_000, 3_000]))],
    /// )?;
    /// let mut p = Pipeline::new("times");
    /// let rows = ArrowStream::source(&mut p, "batches", BatchSource::new(schema, vec![batch]))
    ///     .bounded_out_of_orderness("ts", Duration::from_millis(500))?
    ///     .into_inner()
    ///     .sink("rows", Count::new());
    /// let report = p.run()?;
    /// assert_eq!(rows.take(), Some(3));
    /// // A source's own stream: the source stamps its batches, and sends +∞ at the end.
    /// assert_eq!(report.operators[0].instances[0].watermark, Some(i64::MAX));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded_out_of_orderness(
        self,
        time_column_name: &str,
        max_delay: Duration,
    ) -> Result<ArrowStream, PlanError> {
        let name = format!("{}.watermarks", self.name());
        time_column(self.schema(), &name, time_column_name)?;
        let schema = self.schema().clone();
        let stream = self
            .into_inner()
            .with_watermarks(WatermarkStrategy::bounded(max_delay).column(time_column_name));
        Ok(ArrowStream::new(stream, schema))
    }
}
