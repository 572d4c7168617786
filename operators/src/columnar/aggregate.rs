//! Keyed hash aggregation over Arrow batches.
//!
//! # Plan
//!
//! ```text
//!  producer ──KeyPartitioner──▶ HashAggregate[0] ─┐
//!     (hash of the key columns' row bytes)         ├─▶ groups sorted by key, per instance
//!                            ──▶ HashAggregate[n-1]┘
//! ```
//!
//! Keys are encoded with Arrow's row format (one comparable byte string per row over all key
//! columns). [`KeyPartitioner`] hashes those bytes with the keyed module's stable
//! [`KeyHasher`] and sends each row to `hash_target(hash, n)` (the instance of its key group),
//! so every key lives on exactly one instance, and the aggregation runs at most
//! [`DEFAULT_KEY_GROUPS`] instances. Each [`HashAggregate`] instance keeps one accumulator set per key in a hash map
//! (state grows with distinct keys, not rows) and emits its groups at end of stream, sorted by
//! key (the row format orders like the key columns), in batches of the pipeline's batch size.
//!
//! A sum keeps its column's kind: over a signed integer column it is an `Int64`, over an unsigned
//! one a `UInt64`, both added with overflow checked (an overflow fails the run with an error
//! naming the operator and column; it never wraps or rounds). Other values are read as `Float64`
//! (Arrow's cast kernel); float sums and means use [`ExactSum`]. Either way the results do not
//! depend on batch boundaries, partitioning or arrival order.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, Int64Builder, RecordBatch, UInt32Array,
    UInt64Builder,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::datatypes::{Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use weir_runtime::checkpoint::{SnapshotReader, SnapshotWriter};
use weir_runtime::partition::{Partitioner, TargetLoad};
use weir_runtime::{InputPort, Operator, OperatorError, Output};

use super::exact_sum::ExactSum;
use super::ops::to_f64;
use super::{arrow_error, index_of, ArrowStream, PlanError};
use crate::keyed::route::{hash_target, KeyHasher, DEFAULT_KEY_GROUPS};
use crate::snapshot::{
    decode_group, read_checkpoint, write_checkpoint, KeyGrouping, KeyedSnapshot, SnapshotError,
    SnapshotOut,
};
use arrow::compute::cast;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// Rows in the group (`Agg::count`), or non-null values of a column (`Agg::count_of`):
    /// `UInt64`.
    Count,
    /// Sum of the non-null values; `0` for none. Over a signed integer column an `Int64`, over
    /// an unsigned one a `UInt64` (overflow fails the run), otherwise an exact `Float64` sum.
    Sum,
    /// Smallest non-null value as `Float64`; null for none.
    Min,
    /// Largest non-null value as `Float64`; null for none.
    Max,
    /// Mean of the non-null values as `Float64` (exact sum / count); null for none.
    Mean,
}

/// One output column of an aggregation: a function, its input column, and the output's name.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use weir_operators::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
/// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
/// use weir_operators::columnar::{Agg, ArrowStream, BatchSource};
/// use weir_operators::prelude::*;
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("k", DataType::Utf8, false),
///     Field::new("v", DataType::Float64, true),
/// ]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(StringArray::from(vec!["a", "a", "b"])) as ArrayRef,
///     Arc::new(Float64Array::from(vec![Some(1.5), None, Some(4.0)])),
/// ])?;
/// let mut p = Pipeline::new("stats");
/// let stats = ArrowStream::source(&mut p, "rows", BatchSource::new(schema, vec![batch]))
///     .aggregate("stats", &["k"], vec![
///         Agg::count("rows"),          // UInt64: rows in the group
///         Agg::count_of("v", "n"),     // UInt64: non-null values
///         Agg::mean("v", "mean"),      // Float64, null for no values
///         Agg::max("v", "max"),
///     ])?
///     .to_rows::<(String, u64, u64, Option<f64>, Option<f64>)>("to_rows")
///     .collect("out");
/// p.run()?;
/// assert_eq!(stats.take(), Some(vec![
///     ("a".to_string(), 2, 1, Some(1.5), Some(1.5)),
///     ("b".to_string(), 1, 1, Some(4.0), Some(4.0)),
/// ]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agg {
    func: AggFunc,
    column: Option<String>,
    output: String,
}

impl Agg {
    /// Rows per group, as `output`.
    pub fn count(output: impl Into<String>) -> Self {
        Self {
            func: AggFunc::Count,
            column: None,
            output: output.into(),
        }
    }

    /// Non-null values of `column` per group.
    pub fn count_of(column: impl Into<String>, output: impl Into<String>) -> Self {
        Self::of(AggFunc::Count, column, output)
    }

    /// Sum of `column`: `Int64` over a signed integer column, `UInt64` over an unsigned one
    /// (an overflow fails the run: it is checked, never wrapped), `Float64` (exact) otherwise.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use weir_operators::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    /// use weir_operators::arrow::datatypes::{DataType, Field, Schema};
    /// use weir_operators::columnar::{Agg, ArrowStream, BatchSource};
    /// use weir_operators::prelude::*;
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("cents", DataType::Int64, false)]));
    /// let batch = RecordBatch::try_new(
    ///     schema.clone(),
    ///     vec![Arc::new(Int64Array::from(vec![250, 1_000, -50])) as ArrayRef],
    /// )?;
    /// let mut p = Pipeline::new("sum");
    /// let totals = ArrowStream::source(&mut p, "batches", BatchSource::new(schema, vec![batch]))
    ///     .aggregate("total", &[], vec![Agg::sum("cents", "cents")])?;
    /// assert_eq!(totals.schema().field(0).data_type(), &DataType::Int64);
    /// let rows = totals.to_rows::<(i64,)>("rows").collect("out");
    /// p.run()?;
    /// assert_eq!(rows.take(), Some(vec![(1_200,)]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sum(column: impl Into<String>, output: impl Into<String>) -> Self {
        Self::of(AggFunc::Sum, column, output)
    }

    /// Minimum of `column`.
    pub fn min(column: impl Into<String>, output: impl Into<String>) -> Self {
        Self::of(AggFunc::Min, column, output)
    }

    /// Maximum of `column`.
    pub fn max(column: impl Into<String>, output: impl Into<String>) -> Self {
        Self::of(AggFunc::Max, column, output)
    }

    /// Mean of `column`.
    pub fn mean(column: impl Into<String>, output: impl Into<String>) -> Self {
        Self::of(AggFunc::Mean, column, output)
    }

    fn of(func: AggFunc, column: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            func,
            column: Some(column.into()),
            output: output.into(),
        }
    }

    fn field(&self, kind: SumKind) -> Field {
        match self.func {
            AggFunc::Count => Field::new(&self.output, DataType::UInt64, false),
            AggFunc::Sum => Field::new(&self.output, kind.data_type(), false),
            AggFunc::Min | AggFunc::Max | AggFunc::Mean => {
                Field::new(&self.output, DataType::Float64, true)
            }
        }
    }
}

/// How a sum adds its column's values (see [`AggFunc::Sum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SumKind {
    /// Signed integers, added as `i64` with overflow checked.
    Signed,
    /// Unsigned integers, added as `u64` with overflow checked.
    Unsigned,
    /// Everything else, read as `f64`.
    Float,
}

impl SumKind {
    fn of(dt: &DataType) -> Self {
        match dt {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => SumKind::Signed,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                SumKind::Unsigned
            }
            _ => SumKind::Float,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            SumKind::Signed => DataType::Int64,
            SumKind::Unsigned => DataType::UInt64,
            SumKind::Float => DataType::Float64,
        }
    }
}

/// One aggregate's input: its function, its column (`None` for a plain count), and how a sum
/// adds (`Float` for every other function).
pub(super) type AggInput = (AggFunc, Option<usize>, SumKind);

/// One batch's values of an aggregate's column.
pub(super) enum Values {
    Float(Float64Array),
    Signed(arrow::array::Int64Array),
    Unsigned(arrow::array::UInt64Array),
}

/// One aggregate's running state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) enum Acc {
    Count(u64),
    Sum(ExactSum),
    SumSigned(i64),
    SumUnsigned(u64),
    Min(Option<f64>),
    Max(Option<f64>),
    Mean(ExactSum, u64),
}

impl Acc {
    fn new(func: AggFunc, kind: SumKind) -> Self {
        match (func, kind) {
            (AggFunc::Count, _) => Acc::Count(0),
            (AggFunc::Sum, SumKind::Signed) => Acc::SumSigned(0),
            (AggFunc::Sum, SumKind::Unsigned) => Acc::SumUnsigned(0),
            (AggFunc::Sum, SumKind::Float) => Acc::Sum(ExactSum::new()),
            (AggFunc::Min, _) => Acc::Min(None),
            (AggFunc::Max, _) => Acc::Max(None),
            (AggFunc::Mean, _) => Acc::Mean(ExactSum::new(), 0),
        }
    }

    /// Adds one signed integer to an integer sum; false on overflow.
    #[inline]
    fn add_signed(&mut self, v: i64) -> bool {
        match self {
            Acc::SumSigned(s) => s.checked_add(v).map(|t| *s = t).is_some(),
            _ => true,
        }
    }

    /// Adds one unsigned integer to an integer sum; false on overflow.
    #[inline]
    fn add_unsigned(&mut self, v: u64) -> bool {
        match self {
            Acc::SumUnsigned(s) => s.checked_add(v).map(|t| *s = t).is_some(),
            _ => true,
        }
    }

    /// Adds one value (`None`: null, or a row for a plain count).
    #[inline]
    fn add(&mut self, v: Option<f64>, counts_row: bool) {
        match (self, v) {
            (Acc::Count(n), _) if counts_row => *n += 1,
            (Acc::Count(n), Some(_)) => *n += 1,
            (Acc::Sum(s), Some(v)) => s.add(v),
            (Acc::Min(m), Some(v)) => *m = Some(m.map_or(v, |m| m.min(v))),
            (Acc::Max(m), Some(v)) => *m = Some(m.map_or(v, |m| m.max(v))),
            (Acc::Mean(s, n), Some(v)) => {
                s.add(v);
                *n += 1;
            }
            _ => {}
        }
    }
}

/// Makes a column of one value per group, for the groups given by index.
pub(super) type PerGroup<'a> = &'a dyn Fn(&[usize]) -> ArrayRef;

/// Columns a windowed aggregation adds to the aggregation's own.
#[derive(Default)]
pub(super) struct Extra<'a> {
    /// After the key columns, the same value in every row (a window's start): makes `n` rows.
    pub(super) after_keys: Option<&'a dyn Fn(usize) -> ArrayRef>,
    /// After the aggregates, a value per group (how often it fired): makes the rows of the
    /// groups given by index.
    pub(super) last: Option<PerGroup<'a>>,
}

/// What a hash aggregation computes, fixed when the plan is built: the key columns, the
/// aggregates' inputs, the key encoder and the output schema. Shared by [`HashAggregate`] and the
/// windowed aggregation.
pub(super) struct AggPlan {
    pub(super) keys: Vec<usize>,
    /// Input per aggregate.
    pub(super) inputs: Vec<AggInput>,
    pub(super) schema: SchemaRef,
    converter: RowConverter,
}

/// One batch ready to fold row by row: its encoded keys and each aggregate's values.
pub(super) struct Prepared {
    rows: Option<arrow::row::Rows>,
    values: Vec<Option<Values>>,
}

impl Prepared {
    /// The encoded key of row `i` (empty without key columns).
    #[inline]
    fn key(&self, i: usize) -> &[u8] {
        self.rows.as_ref().map_or(&[], |rows| rows.row(i).data())
    }
}

/// The groups of one aggregation (one window of a windowed one): each encoded key and its
/// accumulators. State grows with distinct keys, not rows.
#[derive(Default)]
pub(super) struct Groups {
    groups: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// `groups.len() × inputs.len()` accumulators, group-major.
    accs: Vec<Acc>,
    /// Bytes of the encoded keys held.
    key_bytes: usize,
}

impl Groups {
    /// Groups held.
    pub(super) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Every group: its encoded key and its accumulators (`width` per group), for a snapshot.
    pub(super) fn entries(&self, width: usize) -> impl Iterator<Item = (&[u8], &[Acc], usize)> {
        self.groups
            .iter()
            .map(move |(k, &g)| (&**k, &self.accs[g * width..(g + 1) * width], g))
    }

    /// Puts back a group from a snapshot and returns its index; `None`, changing nothing, if
    /// the key is held.
    pub(super) fn restore(&mut self, key: Vec<u8>, accs: Vec<Acc>) -> Option<usize> {
        if self.groups.contains_key(key.as_slice()) {
            return None;
        }
        let g = self.groups.len();
        self.key_bytes += key.len();
        self.groups.insert(key.into_boxed_slice(), g);
        self.accs.extend(accs);
        Some(g)
    }

    /// Memory held, as accounted for the run report: each key's bytes, its accumulators, and a
    /// map entry.
    pub(super) fn bytes(&self) -> usize {
        self.key_bytes
            + self.accs.len() * std::mem::size_of::<Acc>()
            + self.groups.len() * (std::mem::size_of::<(Box<[u8]>, usize)>() + 8)
    }
}

impl AggPlan {
    /// The plan over batches of `input`.
    ///
    /// # Errors
    /// A key column type Arrow's row format cannot encode.
    pub(super) fn new(
        input: &SchemaRef,
        keys: Vec<usize>,
        inputs: Vec<AggInput>,
        schema: SchemaRef,
    ) -> Result<Self, ArrowError> {
        Ok(Self {
            converter: key_converter(input, &keys)?,
            keys,
            inputs,
            schema,
        })
    }

    /// Encodes `batch`'s keys and reads its aggregate inputs, once per batch.
    pub(super) fn prepare(&self, batch: &RecordBatch) -> Result<Prepared, ArrowError> {
        let key_columns: Vec<ArrayRef> =
            self.keys.iter().map(|&k| batch.column(k).clone()).collect();
        // Without key columns every row is in the one group of the whole stream (the row format
        // of zero columns has zero rows, so it cannot say how many rows there are).
        let rows = if self.keys.is_empty() {
            None
        } else {
            Some(self.converter.convert_columns(&key_columns)?)
        };
        let values: Vec<Option<Values>> = self
            .inputs
            .iter()
            .map(|&(_, c, kind)| {
                c.map(|c| {
                    let column = batch.column(c);
                    Ok(match kind {
                        SumKind::Signed => Values::Signed(
                            cast(column, &DataType::Int64)?
                                .as_primitive::<Int64Type>()
                                .clone(),
                        ),
                        SumKind::Unsigned => Values::Unsigned(
                            cast(column, &DataType::UInt64)?
                                .as_primitive::<UInt64Type>()
                                .clone(),
                        ),
                        SumKind::Float => Values::Float(
                            to_f64(column)?
                                .as_primitive::<arrow::datatypes::Float64Type>()
                                .clone(),
                        ),
                    })
                })
                .transpose()
            })
            .collect::<Result<_, ArrowError>>()?;
        Ok(Prepared { rows, values })
    }

    /// Folds row `i` of a prepared batch into its group of `groups`; returns the group's index
    /// (groups are numbered from 0 in the order they appear).
    ///
    /// # Errors
    /// An integer sum that overflows, naming the column (from `input`, the batch's schema).
    #[inline]
    pub(super) fn fold(
        &self,
        groups: &mut Groups,
        prepared: &Prepared,
        i: usize,
        input: &SchemaRef,
    ) -> Result<usize, ArrowError> {
        let width = self.inputs.len();
        let row = prepared.key(i);
        let next = groups.groups.len();
        let g = match groups.groups.get(row) {
            Some(&g) => g,
            None => {
                groups.groups.insert(row.into(), next);
                groups.key_bytes += row.len();
                groups
                    .accs
                    .extend(self.inputs.iter().map(|&(f, _, kind)| Acc::new(f, kind)));
                next
            }
        };
        let accs = &mut groups.accs[g * width..(g + 1) * width];
        for (a, acc) in accs.iter_mut().enumerate() {
            let added = match &prepared.values[a] {
                None => {
                    acc.add(None, true);
                    true
                }
                Some(Values::Float(v)) => {
                    acc.add(v.is_valid(i).then(|| v.value(i)), false);
                    true
                }
                Some(Values::Signed(v)) => !v.is_valid(i) || acc.add_signed(v.value(i)),
                Some(Values::Unsigned(v)) => !v.is_valid(i) || acc.add_unsigned(v.value(i)),
            };
            if !added {
                let column = self.inputs[a].1.map_or("", |c| input.field(c).name());
                return Err(ArrowError::ComputeError(format!(
                    "the sum of column `{column}` overflows {} for a group",
                    self.inputs[a].2.data_type()
                )));
            }
        }
        Ok(g)
    }

    /// Emits the groups of `groups` (those marked in `only`, or all) sorted by key, in batches
    /// of `batch_rows`. `extra` makes the columns a windowed aggregation adds.
    pub(super) fn emit(
        &self,
        groups: &Groups,
        only: Option<&[bool]>,
        extra: &Extra<'_>,
        batch_rows: usize,
        out: &mut dyn FnMut(RecordBatch),
    ) -> Result<(), ArrowError> {
        let accs = &groups.accs;
        let mut groups: Vec<(&[u8], usize)> = groups
            .groups
            .iter()
            .filter(|(_, &g)| only.is_none_or(|only| only[g]))
            .map(|(k, &g)| (&**k, g))
            .collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let parser = self.converter.parser();
        let width = self.inputs.len();
        for chunk in groups.chunks(batch_rows.max(1)) {
            let mut columns = if self.keys.is_empty() {
                Vec::new()
            } else {
                self.converter
                    .convert_rows(chunk.iter().map(|(k, _)| parser.parse(k)))?
            };
            if let Some(after_keys) = extra.after_keys {
                columns.push(after_keys(chunk.len()));
            }
            for a in 0..width {
                let accs = chunk.iter().map(|(_, g)| &accs[g * width + a]);
                columns.push(self.column(a, chunk.len(), accs));
            }
            if let Some(last) = extra.last {
                let indices: Vec<usize> = chunk.iter().map(|(_, g)| *g).collect();
                columns.push(last(&indices));
            }
            out(RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(chunk.len())),
            )?);
        }
        Ok(())
    }

    /// Aggregate `a`'s output column from its accumulators.
    fn column<'a>(&self, a: usize, len: usize, accs: impl Iterator<Item = &'a Acc>) -> ArrayRef {
        match self.inputs[a].0 {
            AggFunc::Count => {
                let mut b = UInt64Builder::with_capacity(len);
                for acc in accs {
                    b.append_value(match acc {
                        Acc::Count(n) => *n,
                        _ => 0,
                    });
                }
                Arc::new(b.finish())
            }
            AggFunc::Sum if self.inputs[a].2 == SumKind::Signed => {
                let mut b = Int64Builder::with_capacity(len);
                for acc in accs {
                    b.append_value(match acc {
                        Acc::SumSigned(n) => *n,
                        _ => 0,
                    });
                }
                Arc::new(b.finish())
            }
            AggFunc::Sum if self.inputs[a].2 == SumKind::Unsigned => {
                let mut b = UInt64Builder::with_capacity(len);
                for acc in accs {
                    b.append_value(match acc {
                        Acc::SumUnsigned(n) => *n,
                        _ => 0,
                    });
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = Float64Builder::with_capacity(len);
                for acc in accs {
                    b.append_option(match acc {
                        Acc::Sum(s) => Some(s.value()),
                        Acc::Min(m) | Acc::Max(m) => *m,
                        Acc::Mean(s, n) => (*n > 0).then(|| s.value() / *n as f64),
                        Acc::Count(_) | Acc::SumSigned(_) | Acc::SumUnsigned(_) => None,
                    });
                }
                Arc::new(b.finish())
            }
        }
    }
}

/// The per-instance hash aggregation; see the module docs.
pub struct HashAggregate {
    name: Arc<str>,
    plan: AggPlan,
    input: SchemaRef,
    groups: Groups,
}

impl std::fmt::Debug for HashAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashAggregate")
            .field("name", &self.name)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

pub(super) fn key_converter(input: &SchemaRef, keys: &[usize]) -> Result<RowConverter, ArrowError> {
    RowConverter::new(
        keys.iter()
            .map(|&k| SortField::new(input.field(k).data_type().clone()))
            .collect(),
    )
}

impl HashAggregate {
    pub(super) fn new(
        name: &str,
        input: &SchemaRef,
        keys: Vec<usize>,
        inputs: Vec<AggInput>,
        schema: SchemaRef,
    ) -> Result<Self, ArrowError> {
        Ok(Self {
            name: name.into(),
            plan: AggPlan::new(input, keys, inputs, schema)?,
            input: input.clone(),
            groups: Groups::default(),
        })
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let prepared = self.plan.prepare(batch)?;
        for i in 0..batch.num_rows() {
            self.plan
                .fold(&mut self.groups, &prepared, i, &self.input)?;
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut Output<RecordBatch>) -> Result<(), ArrowError> {
        let batch_rows = out.batch_rows();
        let groups = std::mem::take(&mut self.groups);
        self.plan
            .emit(&groups, None, &Extra::default(), batch_rows, &mut |b| {
                out.emit(b)
            })
    }
}

impl Operator for HashAggregate {
    type Input = RecordBatch;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        _out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        self.update(&batch).map_err(|e| arrow_error(&self.name, e))
    }

    fn on_end(&mut self, out: &mut Output<RecordBatch>) -> Result<(), OperatorError> {
        self.emit(out).map_err(|e| arrow_error(&self.name, e))
    }

    /// Groups are kept until the end of the input: a [barrier](weir_runtime::barrier) passes
    /// only with checkpoints, which snapshot them.
    fn holds_rows(&self) -> bool {
        true
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    /// Keys are filed as [`KeyPartitioner`] routes them: the default hash and key groups.
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        write_checkpoint(self, KeyGrouping::default(), state)
    }

    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        read_checkpoint(self, state)
    }
}

/// Splits batches over instances by a hash of their key columns; see the module docs.
pub struct KeyPartitioner {
    keys: Vec<usize>,
    converter: RowConverter,
    hasher: KeyHasher,
    targets: Vec<Vec<u32>>,
}

impl std::fmt::Debug for KeyPartitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPartitioner")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KeyPartitioner {
    /// Partitions batches of `schema` by the columns at `keys`.
    ///
    /// # Errors
    /// A key column type Arrow's row format cannot encode.
    pub fn new(schema: &SchemaRef, keys: Vec<usize>) -> Result<Self, ArrowError> {
        Ok(Self {
            converter: key_converter(schema, &keys)?,
            keys,
            hasher: KeyHasher::default(),
            targets: Vec::new(),
        })
    }

    /// The target of every row of `batch` among `n` instances.
    ///
    /// # Errors
    /// The row encoding failed (a batch of another schema).
    pub fn targets(&self, batch: &RecordBatch, n: NonZeroUsize) -> Result<Vec<usize>, ArrowError> {
        let columns: Vec<ArrayRef> = self.keys.iter().map(|&k| batch.column(k).clone()).collect();
        let rows = self.converter.convert_columns(&columns)?;
        Ok(rows
            .iter()
            .map(|r| hash_target(self.hasher.hash_bytes(r.as_ref()), n))
            .collect())
    }
}

impl Partitioner<RecordBatch> for KeyPartitioner {
    fn partition(
        &mut self,
        batch: RecordBatch,
        loads: &[TargetLoad],
        out: &mut Vec<(usize, RecordBatch)>,
    ) {
        let Some(n) = NonZeroUsize::new(loads.len()) else {
            return;
        };
        // Without key columns there is one group, on instance 0.
        if n.get() == 1 || self.keys.is_empty() {
            out.push((0, batch));
            return;
        }
        let targets = match self.targets(&batch, n) {
            Ok(t) => t,
            Err(e) => {
                // The batch has the stream's schema, so encoding cannot fail; if it ever did,
                // keep every row (on instance 0) rather than drop any.
                tracing::error!(error = %e, "key encoding failed; routing the batch to instance 0");
                out.push((0, batch));
                return;
            }
        };
        self.targets.resize_with(n.get(), Vec::new);
        for t in &mut self.targets {
            t.clear();
        }
        for (i, t) in targets.into_iter().enumerate() {
            self.targets[t].push(i as u32);
        }
        for (t, rows) in self.targets.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(rows.clone());
            match take_record_batch(&batch, &indices) {
                Ok(piece) => out.push((t, piece)),
                Err(e) => {
                    tracing::error!(error = %e, "take failed; routing the batch to instance 0");
                    out.clear();
                    out.push((0, batch));
                    return;
                }
            }
        }
    }
}

/// The key column indices, the aggregates' inputs and the output fields of a checked aggregation.
pub(super) type PlannedAggregate = (Vec<usize>, Vec<AggInput>, Vec<Field>);

/// Checks an aggregation of `input` by `keys` computing `aggs` and returns the key indices, the
/// aggregates' inputs and the output fields: the key columns, then `extra` (columns the caller
/// inserts after the keys), then one per aggregate.
pub(super) fn plan_aggregate(
    name: &str,
    input: &SchemaRef,
    keys: &[&str],
    aggs: &[Agg],
    extra: &[Field],
) -> Result<PlannedAggregate, PlanError> {
    let key_idx: Vec<usize> = keys
        .iter()
        .map(|k| index_of(input, name, k))
        .collect::<Result<_, _>>()?;
    let mut inputs = Vec::with_capacity(aggs.len());
    let mut fields: Vec<Field> = key_idx.iter().map(|&k| input.field(k).clone()).collect();
    for f in extra {
        if fields.iter().any(|g| g.name() == f.name()) {
            return Err(PlanError::DuplicateColumn {
                operator: name.to_owned(),
                column: f.name().clone(),
            });
        }
        fields.push(f.clone());
    }
    for agg in aggs {
        let mut kind = SumKind::Float;
        let column = match &agg.column {
            None => None,
            Some(c) => {
                let i = index_of(input, name, c)?;
                let dt = input.field(i).data_type();
                if agg.func != AggFunc::Count && !dt.is_numeric() {
                    return Err(PlanError::NotNumeric {
                        operator: name.to_owned(),
                        func: agg.func,
                        column: c.clone(),
                        data_type: dt.clone(),
                    });
                }
                if agg.func == AggFunc::Sum {
                    kind = SumKind::of(dt);
                }
                Some(i)
            }
        };
        if fields.iter().any(|f| f.name() == &agg.output) {
            return Err(PlanError::DuplicateColumn {
                operator: name.to_owned(),
                column: agg.output.clone(),
            });
        }
        fields.push(agg.field(kind));
        inputs.push((agg.func, column, kind));
    }
    // Check the key types once here, so the per-instance constructors cannot fail.
    key_converter(input, &key_idx).map_err(|_| PlanError::UnknownColumn {
        operator: name.to_owned(),
        column: keys.join(","),
        available: input.fields().iter().map(|f| f.name().clone()).collect(),
    })?;
    Ok((key_idx, inputs, fields))
}

impl ArrowStream {
    /// Groups rows by the `keys` columns and computes `aggs` per group: a keyed hash aggregation
    /// (see [`HashAggregate`]). The stream is hash-partitioned by key to the aggregation's
    /// instances (set them with [`parallelism`](ArrowStream::parallelism) on the result). The
    /// output has the key columns, then one column per aggregate; each instance emits its groups
    /// sorted by key when its input ends. With no `keys` the whole stream is one group, held by
    /// instance 0 (an empty stream gives no row).
    ///
    /// # Errors
    /// [`PlanError::UnknownColumn`]; [`PlanError::NotNumeric`]; [`PlanError::DuplicateColumn`].
    pub fn aggregate(
        self,
        name: impl Into<String>,
        keys: &[&str],
        aggs: Vec<Agg>,
    ) -> Result<ArrowStream, PlanError> {
        let name = name.into();
        let input = self.schema.clone();
        let (key_idx, inputs, fields) = plan_aggregate(&name, &input, keys, &aggs, &[])?;
        let schema = Arc::new(Schema::new(fields));
        let part_schema = input.clone();
        let part_keys = key_idx.clone();
        let out_schema = schema.clone();
        let label = name.clone();
        let stream = self
            .stream
            .partition_with_limit(
                format!("hash({})", keys.join(", ")),
                DEFAULT_KEY_GROUPS,
                move |_, _| {
                    KeyPartitioner::new(&part_schema, part_keys.clone())
                        .expect("key types were checked when the plan was built")
                },
            )
            .unary_with(name, move |_| {
                HashAggregate::new(
                    &label,
                    &input,
                    key_idx.clone(),
                    inputs.clone(),
                    out_schema.clone(),
                )
                .expect("key types were checked when the plan was built")
            });
        Ok(ArrowStream::new(stream, schema))
    }
}

/// The group of an encoded key: by its hash, as [`KeyPartitioner`] routes it, or group 0 for
/// the one group of an aggregation without key columns (which runs on instance 0).
pub(super) fn key_group(grouping: &KeyGrouping, keyed: bool, key: &[u8]) -> u32 {
    if keyed {
        grouping.group_of_bytes(key)
    } else {
        0
    }
}

/// Checks that a restored group has one accumulator per aggregate.
pub(super) fn check_width(group: u32, expected: usize, found: usize) -> Result<(), SnapshotError> {
    if expected == found {
        Ok(())
    } else {
        Err(SnapshotError::Shape {
            group,
            expected,
            found,
        })
    }
}

/// A hash aggregation's state in a checkpoint: per key group, each encoded key with its
/// accumulators (exact sums keep their partials, so a restored sum is bit-for-bit the sum it
/// would have been). No instance state. Keys are hash-routed: a key met twice is an error
/// ([`SnapshotError::DuplicateKey`]). A restored instance reports the same state.
impl KeyedSnapshot for HashAggregate {
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        let keyed = !self.plan.keys.is_empty();
        out.keyed(
            self.groups
                .entries(self.plan.inputs.len())
                .map(|(key, accs, _)| (key_group(&grouping, keyed, key), (key, accs))),
        )
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let entries: Vec<(Vec<u8>, Vec<Acc>)> = decode_group(group, bytes)?;
        for (key, accs) in entries {
            check_width(group, self.plan.inputs.len(), accs.len())?;
            if self.groups.restore(key, accs).is_none() {
                return Err(SnapshotError::DuplicateKey { group });
            }
        }
        Ok(())
    }

    fn restore_instance(&mut self, _: &[u8]) -> Result<(), SnapshotError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float32Array, Int32Array, Int64Array, UInt8Array};

    use super::*;
    use crate::columnar::BatchSource;
    use crate::transform::StreamExt;
    use weir_runtime::{InputPort, Pipeline, RunError, Sink};

    /// Keeps the batches it gets (the tests' inputs are small).
    #[derive(Default)]
    struct Batches(Vec<RecordBatch>);

    impl Sink for Batches {
        type Input = RecordBatch;
        type Output = Vec<RecordBatch>;
        fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
            self.0.push(b);
            Ok(())
        }
        fn finish(&mut self) -> Result<Vec<RecordBatch>, OperatorError> {
            Ok(std::mem::take(&mut self.0))
        }
    }

    fn one_column(name: &str, array: ArrayRef) -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            name,
            array.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![array]).expect("one column");
        (schema, batch)
    }

    /// Sums `array` (fed as three copies, over three instances) with no key: the one output
    /// column, or the run's error.
    fn total(array: ArrayRef) -> (DataType, Result<ArrayRef, RunError>) {
        let (schema, batch) = one_column("v", array);
        let mut p = Pipeline::new("sum");
        let batches = vec![batch.clone(), batch.clone(), batch];
        let sum = ArrowStream::source(&mut p, "batches", BatchSource::new(schema, batches))
            .aggregate("total", &[], vec![Agg::sum("v", "s")])
            .expect("a numeric column")
            .parallelism(3);
        let data_type = sum.schema().field(0).data_type().clone();
        let out = sum.sink("out", Batches::default());
        let result = p.run().map(|_| {
            let batches: Vec<RecordBatch> = out.take_all().into_iter().flatten().collect();
            assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
            batches[0].column(0).clone()
        });
        (data_type, result)
    }

    #[test]
    fn an_integer_sum_is_an_integer_and_a_float_sum_stays_float() {
        let (dt, got) = total(Arc::new(Int32Array::from(vec![Some(7), None, Some(-2)])));
        assert_eq!(dt, DataType::Int64);
        assert_eq!(got.expect("runs").as_primitive::<Int64Type>().value(0), 15);

        let (dt, got) = total(Arc::new(UInt8Array::from(vec![255, 1])));
        assert_eq!(dt, DataType::UInt64);
        assert_eq!(
            got.expect("runs").as_primitive::<UInt64Type>().value(0),
            768
        );

        let big = i64::MAX / 4;
        let (dt, got) = total(Arc::new(Int64Array::from(vec![big, 1])));
        assert_eq!(dt, DataType::Int64);
        let exact = got
            .expect("no overflow")
            .as_primitive::<Int64Type>()
            .value(0);
        assert_eq!(
            exact,
            3 * (big + 1),
            "every unit counts, as a float sum could not"
        );

        let (dt, got) = total(Arc::new(Float32Array::from(vec![0.5, 0.25])));
        assert_eq!(dt, DataType::Float64);
        let got = got.expect("runs");
        assert_eq!(
            got.as_primitive::<arrow::datatypes::Float64Type>().value(0),
            2.25
        );
    }

    #[test]
    fn an_integer_sum_that_overflows_fails_the_run_naming_the_column() {
        let (_, got) = total(Arc::new(Int64Array::from(vec![i64::MAX / 2, 1])));
        let err = got
            .expect_err("3 × (MAX / 2 + 1) overflows i64")
            .to_string();
        assert!(
            err.contains("total") && err.contains("`v`") && err.contains("overflow"),
            "{err}"
        );

        let (_, got) = total(Arc::new(arrow::array::UInt64Array::from(vec![
            u64::MAX / 2,
        ])));
        assert!(got.is_err(), "3 × (u64::MAX / 2) overflows u64");
    }

    #[test]
    fn an_aggregate_without_keys_has_one_group_for_the_whole_stream() {
        // Before, the row format of zero key columns had zero rows, and every row was lost.
        let (schema, batch) = one_column("v", Arc::new(Int64Array::from(vec![1, 2, 3, 4])));
        let mut p = Pipeline::new("global");
        let out = ArrowStream::source(
            &mut p,
            "batches",
            BatchSource::new(schema, vec![batch.clone(), batch]),
        )
        .aggregate("all", &[], vec![Agg::count("n"), Agg::max("v", "max")])
        .expect("valid")
        .parallelism(2)
        .to_rows::<(u64, Option<f64>)>("rows")
        .collect("out");
        p.run().expect("runs");
        assert_eq!(out.take_all().concat(), vec![(8, Some(4.0))]);
    }
}
