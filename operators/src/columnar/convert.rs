//! Typed rows ⇄ Arrow batches, through `serde_arrow`.
//!
//! [`RowsToArrow`] serialises each `Vec<T>` batch of a typed stream into one `RecordBatch` of a
//! given schema; [`ArrowToRows`] deserialises each batch back into a `Vec<T>`. The schema is
//! either given or traced from `T`'s `Deserialize` impl (`serde_arrow`'s `from_type`), which
//! maps integers, floats, booleans, strings, options (nullable), and nested structs and vectors.
//!
//! Values are never wrapped or truncated: a row holding a value its target cannot represent (an
//! `i64` beyond an `Int32` column, an `Int64` value beyond an `i32` field, a negative value for
//! an unsigned one, a null for a required field, a decimal with more fraction or integer digits
//! than its top-level `Decimal128` column holds) becomes a dead letter whose reason names the
//! operator and the field, with the row as JSON as its `raw`; the other rows of its batch go on.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use weir_runtime::{Data, DeadLetter, InputPort, Operator, OperatorError, Output, Stream};

use super::{ArrowStream, PlanError};
use crate::connector::encode::row_json;

/// Serialises typed batches into Arrow batches of a fixed schema.
pub struct RowsToArrow<T> {
    name: Arc<str>,
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    /// Top-level `Decimal128` columns: name, precision, scale.
    decimals: Vec<(String, u8, i8)>,
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
        let decimals = schema
            .fields()
            .iter()
            .filter_map(|f| match f.data_type() {
                DataType::Decimal128(p, s) => Some((f.name().clone(), *p, *s)),
                _ => None,
            })
            .collect();
        Self {
            name: name.into(),
            fields: schema.fields().iter().cloned().collect(),
            schema,
            decimals,
            _rows: PhantomData,
        }
    }
}

impl<T: Serialize> RowsToArrow<T> {
    /// Dead-letters the rows with a decimal value its column cannot hold exactly (serde_arrow
    /// drops extra fraction digits, reads `""` as 0 and lets floats exceed the precision), and
    /// reads the others' decimal values from their shortest text: serde_arrow scales a float by
    /// multiplying and truncating, so 0.29 would become 0.28. `None`: left to serde_arrow.
    fn check_decimals(
        &self,
        batch: Vec<T>,
        out: &mut Output<RecordBatch>,
    ) -> (Vec<T>, Vec<Vec<Option<i128>>>) {
        let mut kept = Vec::with_capacity(batch.len());
        let mut exact = Vec::with_capacity(batch.len());
        'rows: for row in batch {
            let value = serde_json::to_value(&row).unwrap_or(serde_json::Value::Null);
            let mut values = Vec::with_capacity(self.decimals.len());
            for (column, precision, scale) in &self.decimals {
                let text = match value.get(column) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    // Null, absent or another kind: serde_arrow decides.
                    _ => {
                        values.push(None);
                        continue;
                    }
                };
                match decimal_value(&text, *precision, *scale) {
                    Some(v) => values.push(Some(v)),
                    None => {
                        out.dead_letter(DeadLetter::new(
                            format!(
                                "{}: column `{column}`: {text:?} is not a decimal that \
                                 Decimal128({precision}, {scale}) holds exactly",
                                self.name
                            ),
                            serde_json::to_string(&row).unwrap_or_default(),
                        ));
                        continue 'rows;
                    }
                }
            }
            kept.push(row);
            exact.push(values);
        }
        (kept, exact)
    }

    /// Replaces the decimal columns of `batch` with the exactly read values where there are.
    fn fix_decimals(
        &self,
        batch: &RecordBatch,
        exact: &[Vec<Option<i128>>],
    ) -> Result<Vec<ArrayRef>, OperatorError> {
        let mut columns = batch.columns().to_vec();
        for (d, (column, precision, scale)) in self.decimals.iter().enumerate() {
            let Ok(i) = self.schema.index_of(column) else {
                continue;
            };
            let built = columns[i].as_primitive::<Decimal128Type>();
            let fixed: Decimal128Array = exact
                .iter()
                .enumerate()
                .map(|(r, values)| values[d].or(built.is_valid(r).then(|| built.value(r))))
                .collect();
            let fixed = fixed
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| OperatorError::user(format!("{}: {e}", self.name)))?;
            columns[i] = Arc::new(fixed);
        }
        Ok(columns)
    }
}

/// `text` (`-?D+(.D+)?([eE][+-]?D+)?`) as the integer of `Decimal128(precision, scale)`, if the
/// decimal holds it exactly: at most `scale` fraction digits and `precision - scale` integer
/// digits.
fn decimal_value(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => match e.parse::<i64>() {
            Ok(e) => (m, e),
            Err(_) => return None,
        },
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (mantissa.contains('.') && frac.is_empty())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    // The decimal point sits after `point` digits of `digits`.
    let mut point = int.len() as i64 + exponent;
    let trimmed = digits.trim_start_matches('0');
    point -= (digits.len() - trimmed.len()) as i64;
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    // Digits after the point (negative: zeros the value ends with before it).
    let fraction_digits = significant.len() as i64 - point;
    let integer_digits = point.max(0);
    if fraction_digits > i64::from(scale)
        || integer_digits > i64::from(precision) - i64::from(scale)
    {
        return None;
    }
    // At most `precision` (≤ 38) digits once scaled: fits in i128.
    let zeros = u32::try_from(i64::from(scale) - fraction_digits).ok()?;
    let magnitude = significant
        .parse::<i128>()
        .ok()?
        .checked_mul(10i128.checked_pow(zeros)?)?;
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

impl<T: Serialize + Data> Operator for RowsToArrow<T> {
    type Input = Vec<T>;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let (batch, mut exact) = if self.decimals.is_empty() {
            (batch, Vec::new())
        } else {
            self.check_decimals(batch, out)
        };
        let converted = match serde_arrow::to_record_batch(&self.fields, &batch) {
            Ok(converted) => converted,
            Err(_) => {
                // Some row does not fit the schema (say an i64 beyond an Int32 column): convert
                // row by row, dead-letter the rows that fail and convert the rest together.
                let mut good = Vec::with_capacity(batch.len());
                let mut good_exact = Vec::with_capacity(exact.len());
                for (r, row) in batch.iter().enumerate() {
                    match serde_arrow::to_record_batch(&self.fields, &[row]) {
                        Ok(_) => {
                            good.push(row);
                            if let Some(values) = exact.get_mut(r) {
                                good_exact.push(std::mem::take(values));
                            }
                        }
                        Err(e) => out.dead_letter(DeadLetter::new(
                            format!("{}: {e}", self.name),
                            serde_json::to_string(row).unwrap_or_default(),
                        )),
                    }
                }
                if good.is_empty() {
                    return Ok(());
                }
                exact = good_exact;
                serde_arrow::to_record_batch(&self.fields, &good)
                    .map_err(|e| OperatorError::user(format!("{}: {e}", self.name)))?
            }
        };
        let columns = if self.decimals.is_empty() {
            converted.columns().to_vec()
        } else {
            self.fix_decimals(&converted, &exact)?
        };
        // serde_arrow builds the batch from the same fields; keep the stream's schema object.
        let converted = RecordBatch::try_new(self.schema.clone(), columns)
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

impl<T: DeserializeOwned + Data> Operator for ArrowToRows<T> {
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

impl<T: Serialize + Data> ToArrowExt<T> for Stream<T> {
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
    pub fn to_rows<T: DeserializeOwned + Data>(self, name: impl Into<String>) -> Stream<T> {
        let name = name.into();
        let label = name.clone();
        self.stream
            .unary_with(name, move |_| ArrowToRows::<T>::new(&label))
    }
}

#[cfg(test)]
mod tests {
    use super::decimal_value;

    #[test]
    fn decimals_fit_only_when_held_exactly() {
        for (text, fits) in [
            ("123.45", true),
            ("-999.99", true),
            ("999.990", true),
            ("000999.99", true),
            ("0", true),
            ("-0.00", true),
            ("1e2", true),
            ("12345e-2", true),
            ("1000.00", false),
            ("1.005", false),
            ("1e3", false),
            ("1e-3", false),
            ("1e30", false),
            ("", false),
            ("abc", false),
            ("1.", false),
            (".5", false),
            ("+1", false),
            ("1e", false),
        ] {
            assert_eq!(decimal_value(text, 5, 2).is_some(), fits, "{text:?}");
        }
        assert_eq!(decimal_value("12300", 5, -2), Some(123));
        assert_eq!(decimal_value("12310", 5, -2), None);
        assert_eq!(decimal_value("0.29", 5, 2), Some(29));
        assert_eq!(decimal_value("-1.5", 5, 2), Some(-150));
        assert_eq!(decimal_value("12345e-2", 5, 2), Some(12345));
        assert_eq!(decimal_value("-0.00", 5, 2), Some(0));
        assert_eq!(
            decimal_value("99999999999999999999999999999999999999", 38, 0),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
    }
}
