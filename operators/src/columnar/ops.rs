//! Vectorised batch operators: projection, filter, computed columns, cast, and the generic
//! batch map under them.
//!
//! Each is one [`Operator`] over whole batches that calls Arrow compute kernels (`filter`, `cast`,
//! the user's kernels) once per batch — never a per-row closure. Output batches are built
//! against the output schema computed when the operator was added, so a kernel that returns the
//! wrong type or length fails the run with an error naming the operator instead of sending a
//! batch that does not match its stream.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::{can_cast_types, cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use weir_runtime::{InputPort, Operator, OperatorError, Output};

use super::{arrow_error, ArrowStream, PlanError};

/// Applies a batch-to-batch function; checks every result against the declared output schema.
pub struct BatchFn<F> {
    name: Arc<str>,
    schema: SchemaRef,
    f: F,
}

impl<F> std::fmt::Debug for BatchFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<F> BatchFn<F>
where
    F: FnMut(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + 'static,
{
    /// `f` producing batches of `schema`; `name` labels its errors.
    pub fn new(name: &str, schema: SchemaRef, f: F) -> Self {
        Self {
            name: name.into(),
            schema,
            f,
        }
    }
}

impl<F> Operator for BatchFn<F>
where
    F: FnMut(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + 'static,
{
    type Input = RecordBatch;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let result = (self.f)(&batch).map_err(|e| arrow_error(&self.name, e))?;
        if !crate::connector::same_fields(&result.schema(), &self.schema) {
            return Err(OperatorError::user(format!(
                "{}: produced a batch of schema {:?}, but its stream's schema is {:?}",
                self.name,
                result.schema(),
                self.schema
            )));
        }
        out.emit(result);
        Ok(())
    }
}

/// Keeps the rows where a vectorised predicate is true (null counts as false).
pub struct FilterBatches<F> {
    name: Arc<str>,
    predicate: F,
}

impl<F> std::fmt::Debug for FilterBatches<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterBatches")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<F> FilterBatches<F>
where
    F: FnMut(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + 'static,
{
    /// Filters with `predicate`; `name` labels its errors.
    pub fn new(name: &str, predicate: F) -> Self {
        Self {
            name: name.into(),
            predicate,
        }
    }
}

impl<F> Operator for FilterBatches<F>
where
    F: FnMut(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + 'static,
{
    type Input = RecordBatch;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: RecordBatch,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let mask = (self.predicate)(&batch).map_err(|e| arrow_error(&self.name, e))?;
        if mask.len() != batch.num_rows() {
            return Err(OperatorError::user(format!(
                "{}: the predicate returned {} values for {} rows",
                self.name,
                mask.len(),
                batch.num_rows()
            )));
        }
        if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
            out.emit(batch);
        } else {
            out.emit(filter_record_batch(&batch, &mask).map_err(|e| arrow_error(&self.name, e))?);
        }
        Ok(())
    }
}

impl ArrowStream {
    /// Applies `f` to every batch; `schema` is the schema of what it returns (checked per batch).
    pub fn map_batches<F>(self, name: impl Into<String>, schema: SchemaRef, f: F) -> ArrowStream
    where
        F: FnMut(&RecordBatch) -> Result<RecordBatch, ArrowError> + Clone + Send + 'static,
    {
        let name = name.into();
        let label = name.clone();
        let out_schema = schema.clone();
        let stream = self.stream.unary_with(name, move |_| {
            BatchFn::new(&label, out_schema.clone(), f.clone())
        });
        ArrowStream::new(stream, schema)
    }

    /// Keeps `columns`, in that order.
    ///
    /// # Errors
    /// [`PlanError::UnknownColumn`]; [`PlanError::DuplicateColumn`].
    pub fn project(self, name: impl Into<String>, columns: &[&str]) -> Result<Self, PlanError> {
        let name = name.into();
        let mut indices = Vec::with_capacity(columns.len());
        for (k, c) in columns.iter().enumerate() {
            if columns[..k].contains(c) {
                return Err(PlanError::DuplicateColumn {
                    operator: name,
                    column: (*c).to_owned(),
                });
            }
            indices.push(self.index_of(&name, c)?);
        }
        let schema = Arc::new(
            self.schema
                .project(&indices)
                .expect("indices were looked up in this schema"),
        );
        Ok(self.map_batches(name, schema, move |b| b.project(&indices)))
    }

    /// Keeps the rows for which `predicate` — a vectorised function of the batch, usually an
    /// Arrow comparison kernel — is true. Null counts as false.
    pub fn filter<F>(self, name: impl Into<String>, predicate: F) -> ArrowStream
    where
        F: FnMut(&RecordBatch) -> Result<BooleanArray, ArrowError> + Clone + Send + 'static,
    {
        let name = name.into();
        let label = name.clone();
        let stream = self
            .stream
            .unary_with(name, move |_| FilterBatches::new(&label, predicate.clone()));
        ArrowStream::new(stream, self.schema)
    }

    /// Adds the column `field` computed by `f` from each batch, or replaces the column of that
    /// name (in place).
    ///
    /// # Errors
    /// None at present; returns `Result` to keep room for schema checks.
    pub fn with_column<F>(
        self,
        name: impl Into<String>,
        field: Field,
        f: F,
    ) -> Result<ArrowStream, PlanError>
    where
        F: FnMut(&RecordBatch) -> Result<ArrayRef, ArrowError> + Clone + Send + 'static,
    {
        let mut fields: Vec<Arc<Field>> = self.schema.fields().iter().cloned().collect();
        let slot = match self.schema.index_of(field.name()) {
            Ok(i) => {
                fields[i] = Arc::new(field);
                Some(i)
            }
            Err(_) => {
                fields.push(Arc::new(field));
                None
            }
        };
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        let out = schema.clone();
        let mut f = f;
        Ok(self.map_batches(name, schema, move |b| {
            let column = f(b)?;
            let mut columns = b.columns().to_vec();
            match slot {
                Some(i) => columns[i] = column,
                None => columns.push(column),
            }
            RecordBatch::try_new(out.clone(), columns)
        }))
    }

    /// Casts `column` to `to` with Arrow's cast kernel (a value that does not fit becomes an
    /// error of the run, not a silent null).
    ///
    /// # Errors
    /// [`PlanError::UnknownColumn`]; [`PlanError::CannotCast`].
    pub fn cast(
        self,
        name: impl Into<String>,
        column: &str,
        to: DataType,
    ) -> Result<ArrowStream, PlanError> {
        let name = name.into();
        let i = self.index_of(&name, column)?;
        let from = self.schema.field(i).data_type().clone();
        if !can_cast_types(&from, &to) {
            return Err(PlanError::CannotCast {
                operator: name,
                column: column.to_owned(),
                from,
                to,
            });
        }
        let field = self.schema.field(i).clone().with_data_type(to.clone());
        let options = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        self.with_column(name, field, move |b| {
            arrow::compute::cast_with_options(b.column(i), &to, &options)
        })
    }
}

/// Casts `array` to `Float64` (used by the aggregates).
pub(crate) fn to_f64(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if array.data_type() == &DataType::Float64 {
        Ok(array.clone())
    } else {
        cast(array, &DataType::Float64)
    }
}
