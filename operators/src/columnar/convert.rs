//! Typed rows ⇄ Arrow batches, through `serde_arrow`.
//!
//! [`RowsToArrow`] serialises each `Vec<T>` batch of a typed stream into one `RecordBatch` of a
//! given schema; [`ArrowToRows`] deserialises each batch back into a `Vec<T>`. The schema is
//! either given or traced from `T`'s `Deserialize` impl (`serde_arrow`'s `from_type`), which
//! maps integers, floats, booleans, strings, options (nullable), and nested structs and vectors.
//!
//! Values are never wrapped or truncated: a row holding a value its target cannot represent (an
//! `i64` beyond an `Int32` column, an `Int64` value beyond an `i32` field, a negative value for
//! an unsigned one, a null for a required field) becomes a dead letter whose reason names the
//! operator and the field, with the row as JSON as its `raw`; the other rows of its batch go on.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use weir_runtime::{DeadLetter, InputPort, Operator, OperatorError, Output, Stream};

use super::{ArrowStream, PlanError};
use crate::connector::encode::row_json;

/// Serialises typed batches into Arrow batches of a fixed schema.
pub struct RowsToArrow<T> {
    name: Arc<str>,
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    _rows: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for RowsToArrow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowsToArrow")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .finish()
    }
}

impl<T> RowsToArrow<T> {
    /// Converts into batches of `schema`; `name` labels errors.
    pub fn new(name: &str, schema: SchemaRef) -> Self {
        Self {
            name: name.into(),
            fields: schema.fields().iter().cloned().collect(),
            schema,
            _rows: PhantomData,
        }
    }
}

impl<T: Serialize + Send + 'static> Operator for RowsToArrow<T> {
    type Input = Vec<T>;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let converted = match serde_arrow::to_record_batch(&self.fields, &batch) {
            Ok(converted) => converted,
            Err(_) => {
                // Some row does not fit the schema (say an i64 beyond an Int32 column): convert
                // row by row, dead-letter the rows that fail and convert the rest together.
                let mut good = Vec::with_capacity(batch.len());
                for row in &batch {
                    match serde_arrow::to_record_batch(&self.fields, &[row]) {
                        Ok(_) => good.push(row),
                        Err(e) => out.dead_letter(DeadLetter::new(
                            format!("{}: {e}", self.name),
                            serde_json::to_string(row).unwrap_or_default(),
                        )),
                    }
                }
                if good.is_empty() {
                    return Ok(());
                }
                serde_arrow::to_record_batch(&self.fields, &good)
                    .map_err(|e| OperatorError::user(format!("{}: {e}", self.name)))?
            }
        };
        // serde_arrow builds the batch from the same fields; keep the stream's schema object.
        let converted = RecordBatch::try_new(self.schema.clone(), converted.columns().to_vec())
            .map_err(|e| OperatorError::user(format!("{}: {e}", self.name)))?;
        out.emit(converted);
        Ok(())
    }
}

/// Deserialises Arrow batches into typed batches.
pub struct ArrowToRows<T> {
    name: Arc<str>,
    _rows: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ArrowToRows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowToRows")
            .field("name", &self.name)
            .finish()
    }
}

impl<T> ArrowToRows<T> {
    /// A converter; `name` labels errors.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            _rows: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Operator for ArrowToRows<T> {
    type Input = RecordBatch;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        let rows: Vec<T> = match serde_arrow::from_record_batch(&batch) {
            Ok(rows) => rows,
            Err(_) => {
                // Some row does not fit `T` (say an Int64 value beyond an i32 field, or a null
                // for a required field): convert row by row and dead-letter the rows that fail.
                let mut rows = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    match serde_arrow::from_record_batch::<Vec<T>>(&batch.slice(i, 1)) {
                        Ok(row) => rows.extend(row),
                        Err(e) => out.dead_letter(DeadLetter::new(
                            format!("{}: {e}", self.name),
                            row_json(&batch, i),
                        )),
                    }
                }
                rows
            }
        };
        out.emit(rows);
        Ok(())
    }
}

/// The Arrow schema `serde_arrow` traces for `T`.
///
/// # Errors
/// [`PlanError::Schema`] for a type it cannot map (naming `operator`).
pub fn schema_of<T: DeserializeOwned>(operator: &str) -> Result<SchemaRef, PlanError> {
    let fields = Vec::<FieldRef>::from_type::<T>(TracingOptions::default()).map_err(|source| {
        PlanError::Schema {
            operator: operator.to_owned(),
            source,
        }
    })?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Converts a typed stream into a columnar one.
pub trait ToArrowExt<T> {
    /// Serialises every batch into a `RecordBatch` of `schema`.
    fn to_arrow_with(self, name: impl Into<String>, schema: SchemaRef) -> ArrowStream;

    /// Serialises every batch with the schema traced from `T` (see [`schema_of`]).
    ///
    /// # Errors
    /// [`PlanError::Schema`].
    fn to_arrow(self, name: impl Into<String>) -> Result<ArrowStream, PlanError>
    where
        T: DeserializeOwned;
}

impl<T: Serialize + Send + 'static> ToArrowExt<T> for Stream<T> {
    fn to_arrow_with(self, name: impl Into<String>, schema: SchemaRef) -> ArrowStream {
        let name = name.into();
        let label = name.clone();
        let s = schema.clone();
        let stream = self.unary_with(name, move |_| RowsToArrow::<T>::new(&label, s.clone()));
        ArrowStream::new(stream, schema)
    }

    fn to_arrow(self, name: impl Into<String>) -> Result<ArrowStream, PlanError>
    where
        T: DeserializeOwned,
    {
        let name = name.into();
        let schema = schema_of::<T>(&name)?;
        Ok(self.to_arrow_with(name, schema))
    }
}

impl ArrowStream {
    /// Deserialises every batch into typed rows (fields matched by name).
    pub fn to_rows<T: DeserializeOwned + Send + 'static>(
        self,
        name: impl Into<String>,
    ) -> Stream<T> {
        let name = name.into();
        let label = name.clone();
        self.stream
            .unary_with(name, move |_| ArrowToRows::<T>::new(&label))
    }
}
