//! Event-time tumbling windows over Arrow batches: a keyed hash aggregation per window.
//!
//! ```text
//! batches ──hash(keys)──▶ name [p] ──┬─▶ name.results ──▶ keys, window start, aggregates
//!                                    └─▶ name.late ────▶ late rows (input schema)
//! ```
//!
//! [`ArrowStream::tumbling_window`] reads each row's event time from a timestamp column and
//! [`ArrowWindowedStream::aggregate_with_late`] groups rows by the key columns *and* their window,
//! with the same aggregates ([`Agg`]) and the same exact sums as
//! [`ArrowStream::aggregate`]. The operator `name` keeps one group table per open window;
//! `name.results` and `name.late` run beside it (same parallelism, chained by default) and take
//! apart what it emits, as the row windows do.
//!
//! # Semantics
//!
//! Where the issue that asked for event time is silent, a Flink user's expectation is the rule.
//!
//! - **Event time** is the time column's value in milliseconds since the epoch: a
//!   `Timestamp(Millisecond, _)` column (any time zone: the instant counts) or an `Int64` one. A
//!   null event time fails the run, naming the operator and the column, as a record without a
//!   timestamp fails a Flink event-time window; filter such rows out first.
//! - **Windows** are epoch-aligned and half-open: a row at `t` belongs to
//!   `[start, start + size)` with `start = ⌊t/size⌋·size` (floor division, negative `t` too).
//! - **Firing.** A watermark `w` says no row with an event time below `w` follows, so a window
//!   `[start, end)` is complete when `w ≥ end`. On each watermark an instance emits the results of
//!   every window it closes, in window order and by key within a window (the order of
//!   [`ArrowStream::aggregate`]), then forwards the watermark: a window's rows always precede the
//!   watermark that closed it. A result row holds the key columns, the window start as
//!   `Timestamp(Millisecond, "UTC")` (named by [`start_column`](ArrowWindowedStream::start_column),
//!   default `window_start`) and the aggregates. A window of window results on the start column
//!   lines up with the windows it summarises.
//! - **End of input** (and a watermark of `i64::MAX`) fires every window still held.
//! - **Late** has the meaning it has everywhere in weir: a row is late when its window has
//!   already been cleaned up, i.e. the watermark when the row arrives is at or past
//!   `end + allowed lateness` (by default the lateness is 0: a window is cleaned up when it
//!   fires). Late rows are not aggregated; they leave on the late output `name.late`, unchanged and in arrival order, and
//!   the rows out of `name.late` are their count in the run report ([`late_rows`]).
//!   [`aggregate`](ArrowWindowedStream::aggregate) ends them in the counting sink
//!   `name.late.sink`: never dropped silently. A row below the watermark whose window is still
//!   open is not late (the window has not fired yet).
//! - **Allowed lateness** ([`allowed_lateness`](ArrowWindowedStream::allowed_lateness)), as
//!   Flink's: a fired window is kept until the watermark reaches `end + lateness`, and a row
//!   that arrives for it meanwhile updates its key's result, which is emitted again at the end
//!   of that row's batch. The output then ends with a `firing` column (`UInt32`: 0 for a key's
//!   first result of a window, one more for each update), and the result with the highest
//!   `firing` of a `(keys, window)` replaces the others. A window whose first row comes within
//!   its lateness fires at the end of that batch with `firing` 0. Without lateness (the
//!   default) there is no `firing` column: each window fires once, with its final value.
//! - **State** is one group table per window held (one accumulator set per key with rows in
//!   it), freed when the watermark reaches `end + lateness` (without lateness: when the window
//!   fires). The report's `state_keys` counts the `(key, window)`
//!   groups held and `state_bytes` their memory; both return to zero when no window is open.
//! - **Parallelism.** Rows are hash-partitioned by their key columns (as
//!   [`ArrowStream::aggregate`] does; without keys every row goes to instance 0), so a key's
//!   windows live on one instance; set the instances with
//!   [`parallelism`](ArrowWindowedStream::parallelism). Each instance fires on the minimum
//!   watermark over its inputs, which the runtime delivers.
//! - **Output volume.** A watermark that closes many windows emits them in one call, in batches
//!   of the pipeline's batch size; what is emitted is bounded by the groups held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use weir_runtime::{
    Batch, InputPort, Operator, OperatorError, Output, RunReport, Sink, StateSize, StreamCore,
    Timestamp,
};

use super::aggregate::{
    check_width, key_group, plan_aggregate, Acc, AggInput, AggPlan, Extra, Groups, KeyPartitioner,
    PerGroup,
};
use super::{arrow_error, index_of, Agg, ArrowStream, PlanError};
use crate::keyed::route::DEFAULT_KEY_GROUPS;
use crate::snapshot::{
    decode_group, decode_instance, read_checkpoint, write_checkpoint, KeyGrouping, KeyedSnapshot,
    SnapshotError, SnapshotOut,
};
use weir_runtime::checkpoint::{SnapshotReader, SnapshotWriter};

/// Suffix of the operator that takes a windowed aggregation's results apart from its late rows.
pub const RESULTS_SUFFIX: &str = ".results";

/// Suffix of the operator whose rows out are the late rows (see [`late_rows`]).
pub const LATE_SUFFIX: &str = ".late";

/// Suffix of the sink that counts the late rows of [`ArrowWindowedStream::aggregate`], which
/// returns no late stream.
pub const LATE_SINK_SUFFIX: &str = ".late.sink";

/// The default name of the window start column.
pub const WINDOW_START: &str = "window_start";

/// The name of the column saying which result of its window a row is, with allowed lateness
/// (see [`ArrowWindowedStream::allowed_lateness`]).
pub const FIRING: &str = "firing";

/// The late rows of the windowed aggregation `name` in a run: the rows out of its operator
/// `name.late` (0 if there is none).
pub fn late_rows(report: &RunReport, name: &str) -> u64 {
    let late = format!("{name}{LATE_SUFFIX}");
    report
        .operators
        .iter()
        .filter(|o| o.name == late)
        .map(|o| o.rows_out)
        .sum()
}

/// The event times of a batch, read from its time column.
pub(super) fn event_times(column: &ArrayRef) -> Result<Int64Array, ArrowError> {
    match column.data_type() {
        DataType::Int64 => Ok(column.as_primitive::<Int64Type>().clone()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(column
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .reinterpret_cast::<Int64Type>()),
        other => Err(ArrowError::SchemaError(format!(
            "the time column is {other}, not milliseconds"
        ))),
    }
}

/// The index of the time column `column`, checking it holds milliseconds.
pub(super) fn time_column(
    schema: &SchemaRef,
    operator: &str,
    column: &str,
) -> Result<usize, PlanError> {
    let i = index_of(schema, operator, column)?;
    match schema.field(i).data_type() {
        DataType::Int64 | DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(i),
        other => Err(PlanError::NotEventTime {
            operator: operator.to_owned(),
            column: column.to_owned(),
            data_type: other.clone(),
        }),
    }
}

/// What a window instance emits, before `name.results` and `name.late` take it apart.
#[derive(Debug, Clone)]
pub enum Fired {
    /// Results of windows that fired (the output schema).
    Windows(RecordBatch),
    /// Late rows (the input schema).
    Late(RecordBatch),
}

impl Batch for Fired {
    fn rows(&self) -> usize {
        match self {
            Fired::Windows(b) | Fired::Late(b) => b.num_rows(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Fired::Windows(b) | Fired::Late(b) => b.get_array_memory_size(),
        }
    }
}

/// One window's state: its groups, and with allowed lateness what each group has emitted.
#[derive(Default)]
struct Window {
    groups: Groups,
    /// Whether the window has fired (its end is behind the watermark).
    fired: bool,
    /// Per group: results emitted so far (its next result's `firing`).
    firings: Vec<u32>,
    /// Per group: updated since the window fired, not yet emitted.
    updated: Vec<bool>,
    /// Whether any group is updated.
    any_updated: bool,
}

impl Window {
    fn bytes(&self) -> usize {
        self.groups.bytes()
            + self.firings.capacity() * std::mem::size_of::<u32>()
            + self.updated.capacity()
            + std::mem::size_of::<(i64, Window)>()
    }
}

/// One instance of a tumbling-window aggregation; see the module docs.
pub struct TumblingWindowAggregate {
    name: Arc<str>,
    plan: AggPlan,
    input: SchemaRef,
    /// The time column's index.
    time: usize,
    /// The window size, ms (≥ 1).
    size: i64,
    /// Allowed lateness, ms (≥ 0).
    lateness: i64,
    /// Windows held (open, or fired and kept for the lateness), by start.
    windows: BTreeMap<i64, Window>,
    /// The last watermark received.
    watermark: Option<i64>,
    /// Late row indices of the batch at hand (kept to reuse its allocation).
    late: Vec<u32>,
}

impl std::fmt::Debug for TumblingWindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TumblingWindowAggregate")
            .field("name", &self.name)
            .field("size_ms", &self.size)
            .field("lateness_ms", &self.lateness)
            .field("windows", &self.windows.len())
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl TumblingWindowAggregate {
    fn new(spec: &Spec) -> Result<Self, ArrowError> {
        Ok(Self {
            name: spec.name.as_str().into(),
            plan: AggPlan::new(
                &spec.input,
                spec.keys.clone(),
                spec.inputs.clone(),
                spec.schema.clone(),
            )?,
            input: spec.input.clone(),
            time: spec.time,
            size: spec.size,
            lateness: spec.lateness,
            windows: BTreeMap::new(),
            watermark: None,
            late: Vec::new(),
        })
    }

    fn update(&mut self, batch: &RecordBatch, out: &mut Output<Fired>) -> Result<(), ArrowError> {
        let times = event_times(batch.column(self.time))?;
        if times.null_count() > 0 {
            return Err(ArrowError::ComputeError(format!(
                "a null event time in column `{}`; filter such rows out before the window",
                self.input.field(self.time).name()
            )));
        }
        let prepared = self.plan.prepare(batch)?;
        self.late.clear();
        let (size, lateness) = (self.size, self.lateness);
        for (i, &t) in times.values().iter().enumerate() {
            let start = t - t.rem_euclid(size);
            let cleanup = start.saturating_add(size).saturating_add(lateness);
            if self.watermark.is_some_and(|w| cleanup <= w) {
                self.late.push(i as u32);
                continue;
            }
            let window = self.windows.entry(start).or_default();
            let g = self
                .plan
                .fold(&mut window.groups, &prepared, i, &self.input)?;
            if lateness > 0 {
                if g == window.firings.len() {
                    window.firings.push(0);
                    window.updated.push(false);
                }
                if window.fired && !window.updated[g] {
                    window.updated[g] = true;
                    window.any_updated = true;
                }
            }
        }
        if !self.late.is_empty() {
            let indices = UInt32Array::from(std::mem::take(&mut self.late));
            out.emit(Fired::Late(take_record_batch(batch, &indices)?));
            // Reuse the index buffer when nothing else holds it.
            if let Ok(v) = indices.into_parts().1.into_inner().into_vec() {
                self.late = v;
            }
        }
        if lateness > 0 {
            // Rows within the lateness: windows behind the watermark fire (again) now.
            self.fire(self.watermark.unwrap_or(i64::MIN), out)?;
        }
        Ok(())
    }

    /// Emits every window whose end is at or below `until`, in window order: the first time
    /// with all its groups, later its updated groups; then frees the windows whose cleanup time
    /// (`end + lateness`) is at or below `until`.
    fn fire(&mut self, until: i64, out: &mut Output<Fired>) -> Result<(), ArrowError> {
        let batch_rows = out.batch_rows();
        let (size, lateness) = (self.size, self.lateness);
        for (&start, window) in self.windows.iter_mut() {
            if start.saturating_add(size) > until {
                break;
            }
            let only = match (window.fired, window.any_updated) {
                (false, _) => None,
                (true, true) => Some(window.updated.as_slice()),
                (true, false) => continue,
            };
            let start_column = |n: usize| -> ArrayRef {
                Arc::new(TimestampMillisecondArray::from_value(start, n).with_timezone("UTC"))
            };
            let firings = &window.firings;
            let firing_column = |groups: &[usize]| -> ArrayRef {
                Arc::new(arrow::array::UInt32Array::from_iter_values(
                    groups.iter().map(|&g| firings[g]),
                ))
            };
            let extra = Extra {
                after_keys: Some(&start_column),
                last: (lateness > 0).then_some(&firing_column as PerGroup<'_>),
            };
            self.plan
                .emit(&window.groups, only, &extra, batch_rows, &mut |b| {
                    out.emit(Fired::Windows(b))
                })?;
            for (g, firing) in window.firings.iter_mut().enumerate() {
                if only.is_none_or(|only| only[g]) {
                    *firing += 1;
                }
            }
            window.fired = true;
            window.updated.fill(false);
            window.any_updated = false;
        }
        while let Some(entry) = self.windows.first_entry() {
            let cleanup = entry.key().saturating_add(size).saturating_add(lateness);
            if cleanup > until {
                break;
            }
            entry.remove();
        }
        Ok(())
    }
}

impl Operator for TumblingWindowAggregate {
    type Input = RecordBatch;
    type Output = Fired;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        out: &mut Output<Fired>,
    ) -> Result<(), OperatorError> {
        self.update(&batch, out)
            .map_err(|e| arrow_error(&self.name, e))
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Fired>,
    ) -> Result<(), OperatorError> {
        let w = watermark.0;
        self.watermark = Some(self.watermark.map_or(w, |m| m.max(w)));
        self.fire(w, out).map_err(|e| arrow_error(&self.name, e))?;
        out.watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Fired>) -> Result<(), OperatorError> {
        self.fire(i64::MAX, out)
            .map_err(|e| arrow_error(&self.name, e))
    }

    fn state_size(&self) -> Option<StateSize> {
        let (keys, bytes) = self
            .windows
            .values()
            .fold((0, 0), |(k, b), w| (k + w.groups.len(), b + w.bytes()));
        Some(StateSize {
            keys: keys as u64,
            bytes: bytes as u64,
            hottest_key_updates: 0,
        })
    }

    /// The groups of the windows that have not fired: results still to come.
    fn held_rows(&self) -> u64 {
        self.windows
            .values()
            .filter(|w| !w.fired)
            .map(|w| w.groups.len() as u64)
            .sum()
    }

    /// Open windows are kept until the watermark passes them: a
    /// [barrier](weir_runtime::barrier) passes only with checkpoints, which snapshot them.
    fn holds_rows(&self) -> bool {
        true
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    /// Keys are filed as the key partitioner in front routes them: the default hash and key
    /// groups.
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        write_checkpoint(self, KeyGrouping::default(), state)
    }

    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        read_checkpoint(self, state)
    }
}

/// Hands on one side of what a window instance emits: its results or its late rows.
#[derive(Debug)]
struct Side {
    late: bool,
}

impl Operator for Side {
    type Input = Fired;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Fired,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        match (batch, self.late) {
            (Fired::Windows(b), false) | (Fired::Late(b), true) => out.emit(b),
            _ => {}
        }
        Ok(())
    }
}

/// Counts the batches' rows and drops them: the end of the late rows nobody asked for.
#[derive(Debug, Default)]
struct CountRows(u64);

impl Sink for CountRows {
    type Input = RecordBatch;
    type Output = u64;

    fn on_batch(&mut self, _: InputPort, batch: RecordBatch) -> Result<(), OperatorError> {
        self.0 += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.0)
    }
}

/// Everything an instance needs, checked when the plan is built.
#[derive(Clone)]
struct Spec {
    name: String,
    input: SchemaRef,
    keys: Vec<usize>,
    inputs: Vec<AggInput>,
    schema: SchemaRef,
    time: usize,
    size: i64,
    lateness: i64,
}

/// A stream windowed by event time, being configured; finish it with
/// [`aggregate`](Self::aggregate) or [`aggregate_with_late`](Self::aggregate_with_late). See the
/// [module docs](self) for the semantics.
#[derive(Debug)]
pub struct ArrowWindowedStream {
    stream: ArrowStream,
    time: String,
    size: i64,
    lateness: i64,
    start_column: String,
    parallelism: Option<usize>,
}

impl ArrowStream {
    /// Windows the stream into epoch-aligned tumbling windows of `size` by the event time in
    /// `time_column` (`Timestamp(Millisecond, _)` or `Int64` milliseconds); finish with
    /// [`ArrowWindowedStream::aggregate`]. Windows fire on the watermark (see the
    /// [window module](super::window)); give the stream one first, with
    /// [`bounded_out_of_orderness`](ArrowStream::bounded_out_of_orderness) say.
    ///
    /// # Panics
    /// If `size` is under 1 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    /// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{late_rows, Agg, ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    ///
    /// let schema = Arc::new(Schema::new(vec![
    ///     Field::new("k", DataType::Utf8, false),
    ///     Field::new("t", DataType::Int64, false), // event time, ms
    /// ]));
    /// let batch = |k: Vec<&str>, t: Vec<i64>| {
    ///     RecordBatch::try_new(schema.clone(), vec![
    ///         Arc::new(StringArray::from(k)) as ArrayRef,
    ///         Arc::new(Int64Array::from(t)),
    ///     ])
    /// };
    /// let batches = vec![
    ///     batch(vec!["a", "b", "a"], vec![3, 12, 11])?,
    ///     batch(vec!["a", "a"], vec![4, 31])?, // the watermark is 12 − 5 − 1 = 6: 4 is on time
    ///     batch(vec!["b"], vec![8])?,          // the watermark is 31 − 5 − 1 = 25: [0, 10) fired
    /// ];
    /// let mut p = Pipeline::new("windows");
    /// let (counts, late) = ArrowStream::source(&mut p, "rows", BatchSource::new(schema, batches))
    ///     .bounded_out_of_orderness("t", Duration::from_millis(5))?
    ///     .tumbling_window("t", Duration::from_millis(10))
    ///     .aggregate_with_late("count", &["k"], vec![Agg::count("n")])?;
    /// let counts = counts.to_rows::<(String, i64, u64)>("counts").collect("out");
    /// let late = late.to_rows::<(String, i64)>("late_rows").collect("late");
    /// let report = p.run()?;
    /// assert_eq!(counts.take(), Some(vec![
    ///     ("a".into(), 0, 2),  // [0, 10): fired by the watermark 25
    ///     ("a".into(), 10, 1), // [10, 20): fired by the watermark 25
    ///     ("b".into(), 10, 1),
    ///     ("a".into(), 30, 1), // [30, 40): fired at the end of the input
    /// ]));
    /// assert_eq!(late.take(), Some(vec![("b".into(), 8)]));
    /// assert_eq!(late_rows(&report, "count"), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tumbling_window(
        self,
        time_column: impl Into<String>,
        size: Duration,
    ) -> ArrowWindowedStream {
        let size = i64::try_from(size.as_millis()).unwrap_or(i64::MAX);
        assert!(size >= 1, "a tumbling window's size must be at least 1 ms");
        ArrowWindowedStream {
            stream: self,
            time: time_column.into(),
            size,
            lateness: 0,
            start_column: WINDOW_START.to_owned(),
            parallelism: None,
        }
    }
}

impl ArrowWindowedStream {
    /// Names the output column holding each window's start (default [`WINDOW_START`]).
    pub fn start_column(mut self, name: impl Into<String>) -> Self {
        self.start_column = name.into();
        self
    }

    /// How long after its end a window still takes rows (default 0). With a lateness the output
    /// gains a last column `firing` (`UInt32`): a window fires when the watermark reaches its end
    /// with `firing` 0 for each key, and each row that arrives later, before the watermark
    /// reaches `end + lateness`, makes its key's result of that window come again with the
    /// updated aggregates and `firing` one higher, at the end of the batch that brought it (the
    /// result with the highest `firing` of a `(keys, window)` replaces the others). The window
    /// is freed when the watermark reaches `end + lateness`; a row whose window is freed is late.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    /// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{Agg, ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, false)]));
    /// let batch = |t: Vec<i64>| RecordBatch::try_new(
    ///     schema.clone(),
    ///     vec![Arc::new(Int64Array::from(t)) as ArrayRef],
    /// );
    /// // Watermarks (no delay: max − 1) 11, 11, 25, 25: [0, 10) is kept until 15, [10, 20)
    /// // until 25.
    /// let batches = vec![batch(vec![3, 12])?, batch(vec![5])?, batch(vec![26])?, batch(vec![8])?];
    /// let mut p = Pipeline::new("updates");
    /// let (counts, late) = ArrowStream::source(&mut p, "rows", BatchSource::new(schema, batches))
    ///     .bounded_out_of_orderness("t", Duration::ZERO)?
    ///     .tumbling_window("t", Duration::from_millis(10))
    ///     .allowed_lateness(Duration::from_millis(5))
    ///     .aggregate_with_late("count", &[], vec![Agg::count("n")])?;
    /// let counts = counts.to_rows::<(i64, u64, u32)>("counts").collect("out");
    /// let late = late.to_rows::<(i64,)>("late_rows").collect("late");
    /// p.run()?;
    /// assert_eq!(counts.take(), Some(vec![
    ///     (0, 1, 0),  // [0, 10) fired by the watermark 11
    ///     (0, 2, 1),  // 5 came within the lateness: the update replaces it
    ///     (10, 1, 0), // fired by the watermark 25, which also freed both windows
    ///     (20, 1, 0), // at the end of the input
    /// ]));
    /// assert_eq!(late.take(), Some(vec![(8,)]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Sets the instances of the window operator (and of `name.results` and `name.late`, which
    /// are chained to it); the default is the pipeline's parallelism.
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = Some(parallelism.max(1));
        self
    }

    /// Aggregates each `(keys, window)`'s rows with `aggs`: when the watermark reaches a
    /// window's end, one row per key with rows in it — the key columns, the window start
    /// (`Timestamp(Millisecond, "UTC")`), then one column per aggregate. Late rows are counted
    /// by the operator `name.late` ([`late_rows`]) and end in the sink `name.late.sink`; use
    /// [`aggregate_with_late`](Self::aggregate_with_late) to receive them.
    ///
    /// # Errors
    /// As [`aggregate_with_late`](Self::aggregate_with_late).
    pub fn aggregate(
        self,
        name: impl Into<String>,
        keys: &[&str],
        aggs: Vec<Agg>,
    ) -> Result<ArrowStream, PlanError> {
        let name = name.into();
        let (results, late) = self.aggregate_with_late(name.clone(), keys, aggs)?;
        let _ = late
            .into_inner()
            .sink(format!("{name}{LATE_SINK_SUFFIX}"), CountRows::default());
        Ok(results)
    }

    /// As [`aggregate`](Self::aggregate), also returning the late rows, unchanged (the input's
    /// schema), as a stream of their own: the operator `name.late`, in arrival order per
    /// instance. See [`ArrowStream::tumbling_window`] for an example.
    ///
    /// # Errors
    /// [`PlanError::UnknownColumn`] for a key, aggregate or time column the stream lacks;
    /// [`PlanError::NotEventTime`] for a time column of another type;
    /// [`PlanError::NotNumeric`]; [`PlanError::DuplicateColumn`] (the start column's name
    /// included).
    pub fn aggregate_with_late(
        self,
        name: impl Into<String>,
        keys: &[&str],
        aggs: Vec<Agg>,
    ) -> Result<(ArrowStream, ArrowStream), PlanError> {
        let name = name.into();
        let input = self.stream.schema().clone();
        let time = time_column(&input, &name, &self.time)?;
        let start = Field::new(
            &self.start_column,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        );
        let (keys_idx, inputs, mut fields) = plan_aggregate(&name, &input, keys, &aggs, &[start])?;
        if self.lateness > 0 {
            if fields.iter().any(|f| f.name() == FIRING) {
                return Err(PlanError::DuplicateColumn {
                    operator: name,
                    column: FIRING.to_owned(),
                });
            }
            fields.push(Field::new(FIRING, DataType::UInt32, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let spec = Spec {
            name: name.clone(),
            input: input.clone(),
            keys: keys_idx.clone(),
            inputs,
            schema: schema.clone(),
            time,
            size: self.size,
            lateness: self.lateness,
        };
        let late_schema = input.clone();
        let parallelism = self.parallelism;
        let fired = self
            .stream
            .into_inner()
            .partition_with_limit(
                format!("hash({})", keys.join(", ")),
                DEFAULT_KEY_GROUPS,
                move |_, _| {
                    KeyPartitioner::new(&input, keys_idx.clone())
                        .expect("key types were checked when the plan was built")
                },
            )
            .unary_with(name.clone(), move |_| {
                TumblingWindowAggregate::new(&spec)
                    .expect("key types were checked when the plan was built")
            });
        let fired = with_parallelism(fired, parallelism);
        let results = with_parallelism(
            fired
                .clone()
                .unary_with(format!("{name}{RESULTS_SUFFIX}"), |_| Side { late: false }),
            parallelism,
        );
        let late = with_parallelism(
            fired.unary_with(format!("{name}{LATE_SUFFIX}"), |_| Side { late: true }),
            parallelism,
        );
        Ok((
            ArrowStream::new(results, schema),
            ArrowStream::new(late, late_schema),
        ))
    }
}

/// `stream` with its producer's parallelism set, if one is given.
fn with_parallelism<B: Batch>(stream: StreamCore<B>, parallelism: Option<usize>) -> StreamCore<B> {
    match parallelism {
        Some(p) => stream.parallelism(p),
        None => stream,
    }
}

/// One window's groups in a key group: its start, whether it fired, and per key the encoded
/// key, the accumulators, the results emitted so far and whether it changed since.
type WindowEntry<Key, Accs> = (i64, bool, Vec<(Key, Accs, u32, bool)>);

/// A snapshot's windows by key group, borrowing the state.
type WindowsByGroup<'a> = BTreeMap<u32, Vec<WindowEntry<&'a [u8], &'a [Acc]>>>;

/// A tumbling-window aggregation's state in a checkpoint: per key group, every window held
/// (open, or fired and kept for the lateness) with each key's accumulators, firings and
/// update flag; as instance state, the watermark (restored as the highest of the old
/// instances'). Keys are hash-routed: a key met twice in a window is an error
/// ([`SnapshotError::DuplicateKey`]). A restored instance holds the same groups
/// (`state_keys`); its bytes count the per-group vectors' capacity as it is now.
impl KeyedSnapshot for TumblingWindowAggregate {
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        let keyed = !self.plan.keys.is_empty();
        let width = self.plan.inputs.len();
        let mut groups = WindowsByGroup::new();
        for (&start, window) in &self.windows {
            for (key, accs, g) in window.groups.entries(width) {
                let windows = groups.entry(key_group(&grouping, keyed, key)).or_default();
                if windows.last().is_none_or(|w| w.0 != start) {
                    windows.push((start, window.fired, Vec::new()));
                }
                let firing = window.firings.get(g).copied().unwrap_or(0);
                let updated = window.updated.get(g).copied().unwrap_or(false);
                if let Some(w) = windows.last_mut() {
                    w.2.push((key, accs, firing, updated));
                }
            }
        }
        for (group, windows) in &groups {
            out.group(*group, windows)?;
        }
        out.instance(&self.watermark)
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let windows: Vec<WindowEntry<Vec<u8>, Vec<Acc>>> = decode_group(group, bytes)?;
        let width = self.plan.inputs.len();
        for (start, fired, entries) in windows {
            let window = self.windows.entry(start).or_default();
            window.fired |= fired;
            for (key, accs, firing, updated) in entries {
                check_width(group, width, accs.len())?;
                if window.groups.restore(key, accs).is_none() {
                    return Err(SnapshotError::DuplicateKey { group });
                }
                if self.lateness > 0 {
                    window.firings.push(firing);
                    window.updated.push(updated);
                    window.any_updated |= updated;
                }
            }
        }
        Ok(())
    }

    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let watermark: Option<i64> = decode_instance(bytes)?;
        if let Some(w) = watermark {
            self.watermark = Some(self.watermark.map_or(w, |m| m.max(w)));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod snapshot_tests;
