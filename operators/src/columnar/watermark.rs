//! Bounded out-of-orderness on a timestamp column: watermarks that trail the largest event time
//! an instance has seen by a fixed delay.
//!
//! [`ArrowStream::bounded_out_of_orderness`] adds an operator that passes every batch on
//! unchanged and then, if it moved the watermark, emits `max_seen − max_delay − 1 ms`, where
//! `max_seen`
//! is the largest event time (the time column, milliseconds: `Timestamp(Millisecond, _)` or
//! `Int64`) in the batches this instance has passed on. Chained right after a source or a parse
//! stage it makes each instance a watermark source; downstream, the runtime takes the minimum
//! over inputs.
//!
//! Each choice it makes is on [`BoundedOutOfOrderness`]. It is meant to be replaced by the
//! runtime's own watermark strategies at sources once they exist; nothing else depends on how it
//! works.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use weir_runtime::{InputPort, Operator, OperatorError, Output, Timestamp};

use super::window::{event_times, time_column};
use super::{arrow_error, ArrowStream, PlanError};

/// One instance of bounded out-of-orderness watermarks on a timestamp column: batches pass
/// unchanged, and each is followed by the watermark `max_seen − max_delay − 1 ms` when that
/// advances.
///
/// Choices, each as Flink's `forBoundedOutOfOrderness` makes them unless said:
///
/// - **The watermark is `max_seen − max_delay − 1 ms`**, Flink's definition and the one of the
///   runtime's bounded strategy at sources: a row up to `max_delay` behind the largest event time
///   seen is on time.
/// - **One watermark per batch at most** (Flink: one per period), after the batch, and only when
///   it advances: never backwards, never repeated. The watermark facing a row is therefore the one after the
///   previous batch; a row is judged against rows of earlier batches only.
/// - **No row, no watermark**: an instance that has passed no row with an event time emits none,
///   so it holds the minimum downstream back until it ends (when the runtime drops it from the
///   minimum). End of input needs nothing here: windows fire everything at the end.
/// - **Null event times** are passed on and ignored for the maximum (the window decides what to
///   do with them).
/// - **Watermarks from upstream are dropped**: this operator is its stream's watermark source,
///   as Flink's `assignTimestampsAndWatermarks` is.
#[derive(Debug)]
pub struct BoundedOutOfOrderness {
    name: Arc<str>,
    /// The time column's index.
    time: usize,
    /// The delay, ms.
    max_delay: i64,
    /// The largest event time passed on.
    max_seen: Option<i64>,
    /// The last watermark emitted.
    emitted: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// Watermarks `max_delay` behind the largest value of column `time` (its index) seen;
    /// `name` labels errors.
    pub fn new(name: &str, time: usize, max_delay: Duration) -> Self {
        Self {
            name: name.into(),
            time,
            max_delay: i64::try_from(max_delay.as_millis()).unwrap_or(i64::MAX),
            max_seen: None,
            emitted: None,
        }
    }

    /// The last watermark emitted, if any.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.emitted.map(Timestamp)
    }
}

impl Operator for BoundedOutOfOrderness {
    type Input = RecordBatch;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let times = event_times(batch.column(self.time)).map_err(|e| arrow_error(&self.name, e))?;
        let max = if times.null_count() == 0 {
            times.values().iter().copied().max()
        } else {
            times.iter().flatten().max()
        };
        out.emit(batch);
        if let Some(max) = max {
            let seen = self.max_seen.map_or(max, |m| m.max(max));
            self.max_seen = Some(seen);
            let w = seen.saturating_sub(self.max_delay).saturating_sub(1);
            if self.emitted.is_none_or(|e| w > e) {
                self.emitted = Some(w);
                out.watermark(Timestamp(w));
            }
        }
        Ok(())
    }

    /// Upstream watermarks are dropped (see the module docs).
    fn on_watermark(
        &mut self,
        _: Timestamp,
        _: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}

impl ArrowStream {
    /// Makes each instance of the next operator a watermark source: batches pass unchanged, and
    /// after each batch that raises it comes the watermark `max_seen − max_delay − 1 ms`, where
    /// `max_seen` is the largest event time in `time_column` so far (see
    /// [`BoundedOutOfOrderness`] for every choice). The operator `name` takes the parallelism of
    /// the stage before it, so it is chained to it.
    ///
    /// # Errors
    /// [`PlanError::UnknownColumn`]; [`PlanError::NotEventTime`] for a column that does not
    /// hold milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    /// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, false)]));
    /// let batch = |t: Vec<i64>| RecordBatch::try_new(
    ///     schema.clone(),
    ///     vec![Arc::new(Int64Array::from(t)) as ArrayRef],
    /// );
    /// let batches = vec![batch(vec![100, 130])?, batch(vec![90])?, batch(vec![150, 120])?];
    /// let mut p = Pipeline::new("watermarks");
    /// let rows = ArrowStream::source(&mut p, "rows", BatchSource::new(schema, batches))
    ///     .bounded_out_of_orderness("watermarks", "t", Duration::from_millis(50))?
    ///     .to_rows::<(i64,)>("typed")
    ///     .collect("out");
    /// p.run()?; // watermarks 79 and 99 followed the first and the third batch
    /// assert_eq!(rows.take().map(|r| r.len()), Some(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded_out_of_orderness(
        self,
        name: impl Into<String>,
        time_column: &str,
        max_delay: Duration,
    ) -> Result<ArrowStream, PlanError> {
        let name = name.into();
        let time = time_column_index(&self, &name, time_column)?;
        let schema = self.schema().clone();
        let label = name.clone();
        let stream = self.into_inner().unary_with(name, move |_| {
            BoundedOutOfOrderness::new(&label, time, max_delay)
        });
        Ok(ArrowStream::new(stream, schema))
    }
}

fn time_column_index(stream: &ArrowStream, name: &str, column: &str) -> Result<usize, PlanError> {
    time_column(stream.schema(), name, column)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use weir_runtime::Message;

    use super::*;

    fn batch(times: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(times)) as ArrayRef])
            .expect("one column")
    }

    /// The watermarks emitted, in order, for batches of the given event times.
    fn watermarks(batches: Vec<Vec<Option<i64>>>, delay: u64) -> Vec<i64> {
        let mut op = BoundedOutOfOrderness::new("w", 0, Duration::from_millis(delay));
        let mut out = Output::new(1024);
        let mut got = Vec::new();
        for b in batches {
            let rows = b.len();
            op.on_batch(0, batch(b), &mut out).expect("runs");
            let mut data = 0;
            for m in out.drain() {
                match m {
                    Message::Data(b) => data += b.num_rows(),
                    Message::Watermark(t) => {
                        assert_eq!(data, rows, "the watermark follows its batch");
                        got.push(t.0);
                    }
                    _ => unreachable!("data and watermarks only"),
                }
            }
        }
        got
    }

    #[test]
    fn watermarks_trail_the_largest_time_seen_never_go_back_and_skip_nulls() {
        let got = watermarks(
            vec![
                vec![Some(100), Some(130)],
                vec![Some(90)],        // below the max: no watermark
                vec![None],            // no event time: none
                vec![Some(150), None], // 150 − 50 − 1
                vec![Some(150)],       // no advance: none
                vec![Some(i64::MIN)],  // far behind: none
            ],
            50,
        );
        assert_eq!(got, vec![79, 99]);
        assert_eq!(
            watermarks(vec![vec![Some(i64::MIN + 3)]], 10),
            vec![i64::MIN]
        );
    }
}
