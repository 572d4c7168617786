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
//! [`KeyHasher`] and sends each row to `hash_target(hash, n)`, so every key lives on exactly one
//! instance. Each [`HashAggregate`] instance keeps one accumulator set per key in a hash map
//! (state grows with distinct keys, not rows) and emits its groups at end of stream, sorted by
//! key (the row format orders like the key columns), in batches of the pipeline's batch size.
//!
//! Values are read as `Float64` (Arrow's cast kernel); sums and means use [`ExactSum`], so the
//! results do not depend on batch boundaries, partitioning or arrival order.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, RecordBatch, UInt32Array, UInt64Builder,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use weir_runtime::partition::{Partitioner, TargetLoad};
use weir_runtime::{InputPort, Operator, OperatorError, Output};

use super::ops::to_f64;
use super::{arrow_error, index_of, ArrowStream, PlanError};
use crate::etl::ExactSum;
use crate::keyed::route::{hash_target, KeyHasher};

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// Rows in the group (`Agg::count`), or non-null values of a column (`Agg::count_of`):
    /// `UInt64`.
    Count,
    /// Exact sum of the non-null values as `Float64`; `0.0` for none.
    Sum,
    /// Smallest non-null value as `Float64`; null for none.
    Min,
    /// Largest non-null value as `Float64`; null for none.
    Max,
    /// Mean of the non-null values as `Float64` (exact sum / count); null for none.
    Mean,
}

/// One output column of an aggregation: a function, its input column, and the output's name.
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

    /// Sum of `column`.
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

    fn field(&self) -> Field {
        match self.func {
            AggFunc::Count => Field::new(&self.output, DataType::UInt64, false),
            AggFunc::Sum => Field::new(&self.output, DataType::Float64, false),
            AggFunc::Min | AggFunc::Max | AggFunc::Mean => {
                Field::new(&self.output, DataType::Float64, true)
            }
        }
    }
}

/// One aggregate's running state.
#[derive(Debug, Clone)]
enum Acc {
    Count(u64),
    Sum(ExactSum),
    Min(Option<f64>),
    Max(Option<f64>),
    Mean(ExactSum, u64),
}

impl Acc {
    fn new(func: AggFunc) -> Self {
        match func {
            AggFunc::Count => Acc::Count(0),
            AggFunc::Sum => Acc::Sum(ExactSum::new()),
            AggFunc::Min => Acc::Min(None),
            AggFunc::Max => Acc::Max(None),
            AggFunc::Mean => Acc::Mean(ExactSum::new(), 0),
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

/// The per-instance hash aggregation; see the module docs.
pub struct HashAggregate {
    name: Arc<str>,
    keys: Vec<usize>,
    /// Input column per aggregate (`None` for a plain count).
    inputs: Vec<(AggFunc, Option<usize>)>,
    schema: SchemaRef,
    converter: RowConverter,
    groups: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// `groups.len() × inputs.len()` accumulators, group-major.
    accs: Vec<Acc>,
}

impl std::fmt::Debug for HashAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashAggregate")
            .field("name", &self.name)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

fn key_converter(input: &SchemaRef, keys: &[usize]) -> Result<RowConverter, ArrowError> {
    RowConverter::new(
        keys.iter()
            .map(|&k| SortField::new(input.field(k).data_type().clone()))
            .collect(),
    )
}

impl HashAggregate {
    fn new(
        name: &str,
        input: &SchemaRef,
        keys: Vec<usize>,
        inputs: Vec<(AggFunc, Option<usize>)>,
        schema: SchemaRef,
    ) -> Result<Self, ArrowError> {
        Ok(Self {
            name: name.into(),
            converter: key_converter(input, &keys)?,
            keys,
            inputs,
            schema,
            groups: HashMap::default(),
            accs: Vec::new(),
        })
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let key_columns: Vec<ArrayRef> =
            self.keys.iter().map(|&k| batch.column(k).clone()).collect();
        let rows = self.converter.convert_columns(&key_columns)?;
        let values: Vec<Option<Float64Array>> = self
            .inputs
            .iter()
            .map(|(_, c)| {
                c.map(|c| {
                    to_f64(batch.column(c)).map(|a| {
                        a.as_any()
                            .downcast_ref::<Float64Array>()
                            .expect("cast to Float64 yields a Float64Array")
                            .clone()
                    })
                })
                .transpose()
            })
            .collect::<Result<_, _>>()?;
        let width = self.inputs.len();
        for (i, row) in rows.iter().enumerate() {
            let next = self.groups.len();
            let g = match self.groups.get(row.as_ref()) {
                Some(&g) => g,
                None => {
                    self.groups.insert(row.as_ref().into(), next);
                    self.accs
                        .extend(self.inputs.iter().map(|(f, _)| Acc::new(*f)));
                    next
                }
            };
            let accs = &mut self.accs[g * width..(g + 1) * width];
            for (a, acc) in accs.iter_mut().enumerate() {
                match &values[a] {
                    None => acc.add(None, true),
                    Some(v) => acc.add(v.is_valid(i).then(|| v.value(i)), false),
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut Output<RecordBatch>) -> Result<(), ArrowError> {
        let mut groups: Vec<(Box<[u8]>, usize)> =
            std::mem::take(&mut self.groups).into_iter().collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let parser = self.converter.parser();
        let width = self.inputs.len();
        for chunk in groups.chunks(out.batch_rows().max(1)) {
            let mut columns = self
                .converter
                .convert_rows(chunk.iter().map(|(k, _)| parser.parse(k)))?;
            for a in 0..width {
                let accs = chunk.iter().map(|(_, g)| &self.accs[g * width + a]);
                let column: ArrayRef = match self.inputs[a].0 {
                    AggFunc::Count => {
                        let mut b = UInt64Builder::with_capacity(chunk.len());
                        for acc in accs {
                            b.append_value(match acc {
                                Acc::Count(n) => *n,
                                _ => 0,
                            });
                        }
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = Float64Builder::with_capacity(chunk.len());
                        for acc in accs {
                            b.append_option(match acc {
                                Acc::Sum(s) => Some(s.value()),
                                Acc::Min(m) | Acc::Max(m) => *m,
                                Acc::Mean(s, n) => (*n > 0).then(|| s.value() / *n as f64),
                                Acc::Count(_) => None,
                            });
                        }
                        Arc::new(b.finish())
                    }
                };
                columns.push(column);
            }
            out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        self.accs = Vec::new();
        Ok(())
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
        if n.get() == 1 {
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

impl ArrowStream {
    /// Groups rows by the `keys` columns and computes `aggs` per group: a keyed hash aggregation
    /// (see [`HashAggregate`]). The stream is hash-partitioned by key to the aggregation's
    /// instances (set them with [`parallelism`](ArrowStream::parallelism) on the result). The
    /// output has the key columns, then one column per aggregate; each instance emits its groups
    /// sorted by key when its input ends.
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
        let key_idx: Vec<usize> = keys
            .iter()
            .map(|k| index_of(&input, &name, k))
            .collect::<Result<_, _>>()?;
        let mut inputs = Vec::with_capacity(aggs.len());
        let mut fields: Vec<Field> = key_idx.iter().map(|&k| input.field(k).clone()).collect();
        for agg in &aggs {
            let column = match &agg.column {
                None => None,
                Some(c) => {
                    let i = index_of(&input, &name, c)?;
                    let dt = input.field(i).data_type();
                    if agg.func != AggFunc::Count && !dt.is_numeric() {
                        return Err(PlanError::NotNumeric {
                            operator: name,
                            func: agg.func,
                            column: c.clone(),
                            data_type: dt.clone(),
                        });
                    }
                    Some(i)
                }
            };
            if fields.iter().any(|f| f.name() == &agg.output) {
                return Err(PlanError::DuplicateColumn {
                    operator: name,
                    column: agg.output.clone(),
                });
            }
            fields.push(agg.field());
            inputs.push((agg.func, column));
        }
        let schema = Arc::new(Schema::new(fields));
        // Check the key types once here, so the per-instance constructors cannot fail.
        key_converter(&input, &key_idx).map_err(|_| PlanError::UnknownColumn {
            operator: name.clone(),
            column: keys.join(","),
            available: input.fields().iter().map(|f| f.name().clone()).collect(),
        })?;
        let part_schema = input.clone();
        let part_keys = key_idx.clone();
        let out_schema = schema.clone();
        let label = name.clone();
        let stream = self
            .stream
            .partition_with(format!("hash({})", keys.join(", ")), move |_, _| {
                KeyPartitioner::new(&part_schema, part_keys.clone())
                    .expect("key types were checked when the plan was built")
            })
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
