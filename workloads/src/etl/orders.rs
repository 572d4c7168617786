//! The orders job's schemas, validation rules and vectorised steps.
//!
//! # The job
//!
//! Input: CSV with header `order_id,ts,customer_id,country,amount,currency,status`
//! ([`orders_csv_schema`]). Per record:
//!
//! 1. Wrong field count, unparseable number, unparseable RFC 3339 timestamp → dead letter.
//!    *Done by the CSV reader* ([`orders_csv_options`]: declared schema, `DeadLetter` policy).
//! 2. Negative (or non-finite) amount, unknown currency, unknown status → dead letter.
//!    *Done by [`validate`]*, vectorised over the typed batch. It needs each row's line and raw
//!    text: the reader keeps them in the `_line` and `_raw` columns (we chose to carry `_raw`
//!    rather than reconstruct the text, because reconstruction cannot reproduce the original
//!    quoting; the cost is one string column per batch until [`to_clean`] projects it away).
//! 3. `cancelled` → dropped, counted as filtered; `amount_usd = amount × rate`
//!    (USD 1.0, EUR 1.08, GBP 1.27, JPY 0.0067) → [`clean_schema`]. *Done by [`to_clean`].*
//! 4. Revenue per (country, UTC day) → [`revenue_schema`]. *Done by [`RevenuePartial`]*: one
//!    partial per batch, merged in any order; sums are exact ([`ExactSum`]) so the merged result
//!    does not depend on batch boundaries or merge order.
//!
//! [`process_batch`] chains 2–4 for one [`ReadBatch`].
//!
//! When a record breaks several rules, the first in the order above (and, within the reader,
//! the first bad field from the left) is the reason.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::compute::kernels::cmp::{eq, neq};
use arrow::compute::kernels::numeric::mul;
use arrow::compute::{filter_record_batch, is_null, not, or, or_kleene};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::{EtlError, ExactSum};
use weir_operators::connector::{
    BadRecordPolicy, CsvOptions, DeadLetter, ReadBatch, LINE_COLUMN, RAW_COLUMN,
};

/// Accepted currencies and their USD rates.
pub const RATES: [(&str, f64); 4] = [("USD", 1.0), ("EUR", 1.08), ("GBP", 1.27), ("JPY", 0.0067)];
const MS_PER_DAY: i64 = 86_400_000;

/// Accepted statuses.
pub const STATUSES: [&str; 4] = ["placed", "shipped", "cancelled", "refunded"];

/// The USD rate of `currency`, if it is accepted.
pub fn usd_rate(currency: &str) -> Option<f64> {
    RATES.iter().find(|(c, _)| *c == currency).map(|(_, r)| *r)
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Input schema: `order_id u64, ts timestamp(ms, UTC), customer_id u64, country utf8,
/// amount f64, currency utf8, status utf8`, all non-nullable.
pub fn orders_csv_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::UInt64, false),
            Field::new("ts", utc_ms(), false),
            Field::new("customer_id", DataType::UInt64, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, false),
            Field::new("currency", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// Output schema of [`to_clean`]: `order_id u64, ts timestamp(ms, UTC), customer_id u64,
/// country utf8, amount_usd f64, status utf8`.
pub fn clean_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::UInt64, false),
            Field::new("ts", utc_ms(), false),
            Field::new("customer_id", DataType::UInt64, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("amount_usd", DataType::Float64, false),
            Field::new("status", DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// Output schema of [`RevenuePartial::to_batch`]: `country utf8, day date32, orders u64,
/// revenue_usd f64, refunded_usd f64`.
pub fn revenue_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("country", DataType::Utf8, false),
            Field::new("day", DataType::Date32, false),
            Field::new("orders", DataType::UInt64, false),
            Field::new("revenue_usd", DataType::Float64, false),
            Field::new("refunded_usd", DataType::Float64, false),
        ]))
    })
    .clone()
}

/// CSV options for the orders input: header, [`orders_csv_schema`], `_line` and `_raw` columns,
/// bad records as dead letters.
pub fn orders_csv_options() -> CsvOptions {
    CsvOptions {
        line_column: true,
        raw_column: true,
        bad_records: BadRecordPolicy::DeadLetter,
        ..CsvOptions::default().with_schema(orders_csv_schema())
    }
}

/// A domain rule a typed row breaks. Its `Display` text is the dead letter's reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleViolation {
    /// `amount < 0`.
    #[error("negative amount {0}")]
    NegativeAmount(f64),
    /// `amount` is NaN or infinite.
    #[error("amount {0} is not a finite number")]
    NonFiniteAmount(f64),
    /// `currency` is not one of [`RATES`].
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// `status` is not one of [`STATUSES`].
    #[error("unknown status {0:?}")]
    UnknownStatus(String),
    /// A required value is null.
    #[error("column `{0}` is null")]
    Null(&'static str),
}

/// Checks one amount: the rule shared by [`validate`] and the reference.
pub fn check_amount(amount: f64) -> Option<RuleViolation> {
    if !amount.is_finite() {
        Some(RuleViolation::NonFiniteAmount(amount))
    } else if amount < 0.0 {
        Some(RuleViolation::NegativeAmount(amount))
    } else {
        None
    }
}

pub(crate) fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &'static str,
    expected: DataType,
) -> Result<&'a T, EtlError> {
    let array = batch
        .column_by_name(name)
        .ok_or(EtlError::MissingColumn { column: name })?;
    array
        .as_any()
        .downcast_ref::<T>()
        .filter(|_| array.data_type() == &expected)
        .ok_or_else(|| EtlError::WrongType {
            column: name,
            expected,
            found: array.data_type().clone(),
        })
}

/// `values ∈ set`, null where `values` is null.
fn is_in(
    values: &StringArray,
    set: impl Iterator<Item = &'static str>,
) -> Result<BooleanArray, EtlError> {
    let mut acc = BooleanArray::from(vec![false; values.len()]);
    for s in set {
        acc = or(&acc, &eq(values, &StringArray::new_scalar(s))?)?;
    }
    Ok(acc)
}

/// Splits a typed batch into rows passing the domain rules and dead letters for the rest.
///
/// `batch` must have `amount`, `currency`, `status`, `_line` and `_raw` (as read with
/// [`orders_csv_options`]); `file` labels the dead letters. The valid batch keeps every column.
///
/// # Errors
/// [`EtlError::MissingColumn`] / [`EtlError::WrongType`] for a batch of another shape.
pub fn validate(
    batch: &RecordBatch,
    file: Option<&str>,
) -> Result<(RecordBatch, Vec<DeadLetter>), EtlError> {
    let amount = column::<Float64Array>(batch, "amount", DataType::Float64)?;
    let currency = column::<StringArray>(batch, "currency", DataType::Utf8)?;
    let status = column::<StringArray>(batch, "status", DataType::Utf8)?;
    let lines = column::<UInt64Array>(batch, LINE_COLUMN, DataType::UInt64)?;
    let raws = column::<StringArray>(batch, RAW_COLUMN, DataType::Utf8)?;

    let bad_amount = BooleanArray::from_unary(amount, |a| check_amount(a).is_some());
    let bad_currency = not(&is_in(currency, RATES.iter().map(|(c, _)| *c))?)?;
    let bad_status = not(&is_in(status, STATUSES.iter().copied())?)?;
    let bad = or(&or(&bad_amount, &bad_currency)?, &bad_status)?;
    // A null in any rule column makes `bad` null there; count it as bad.
    let any_null = or(
        &or(&is_null(amount)?, &is_null(currency)?)?,
        &is_null(status)?,
    )?;
    let bad = or_kleene(&bad, &any_null)?;

    let mut dead = Vec::with_capacity(bad.true_count());
    for i in bad.values().set_indices() {
        let violation = if amount.is_null(i) {
            RuleViolation::Null("amount")
        } else if let Some(v) = check_amount(amount.value(i)) {
            v
        } else if currency.is_null(i) {
            RuleViolation::Null("currency")
        } else if usd_rate(currency.value(i)).is_none() {
            RuleViolation::UnknownCurrency(currency.value(i).to_owned())
        } else if status.is_null(i) {
            RuleViolation::Null("status")
        } else {
            RuleViolation::UnknownStatus(status.value(i).to_owned())
        };
        dead.push(DeadLetter {
            file: file.map(str::to_owned),
            line: Some(lines.value(i)),
            reason: violation.to_string(),
            raw: raws.value(i).to_owned(),
        });
    }
    let valid = if dead.is_empty() {
        batch.clone()
    } else {
        filter_record_batch(batch, &not(&bad)?)?
    };
    Ok((valid, dead))
}

/// Drops `cancelled` rows, converts amounts to USD and projects to [`clean_schema`].
///
/// Returns the clean batch and the number of rows filtered out.
///
/// # Errors
/// Missing columns; [`EtlError::UnknownCurrency`] if `batch` was not validated.
pub fn to_clean(batch: &RecordBatch) -> Result<(RecordBatch, u64), EtlError> {
    let status = column::<StringArray>(batch, "status", DataType::Utf8)?;
    let keep = neq(status, &StringArray::new_scalar("cancelled"))?;
    // A null status is neither kept nor counted by `filter`; validate() has removed them.
    let kept = filter_record_batch(batch, &keep)?;
    let filtered = (batch.num_rows() - kept.num_rows()) as u64;

    let currency = column::<StringArray>(&kept, "currency", DataType::Utf8)?;
    let amount = column::<Float64Array>(&kept, "amount", DataType::Float64)?;
    let rates = currency
        .iter()
        .map(|c| {
            let c = c.unwrap_or("<null>");
            usd_rate(c).ok_or_else(|| EtlError::UnknownCurrency {
                currency: c.to_owned(),
            })
        })
        .collect::<Result<Float64Array, _>>()?;
    let amount_usd = mul(amount, &rates)?;
    let pick = |name: &'static str| -> Result<ArrayRef, EtlError> {
        kept.column_by_name(name)
            .cloned()
            .ok_or(EtlError::MissingColumn { column: name })
    };
    let clean = RecordBatch::try_new(
        clean_schema(),
        vec![
            pick("order_id")?,
            pick("ts")?,
            pick("customer_id")?,
            pick("country")?,
            amount_usd,
            pick("status")?,
        ],
    )?;
    Ok((clean, filtered))
}

/// Running totals of one (country, day) group.
#[derive(Debug, Clone, Default)]
pub struct RevenueAcc {
    /// Non-cancelled orders.
    pub orders: u64,
    /// Sum of `amount_usd` over `placed` and `shipped`.
    pub revenue_usd: ExactSum,
    /// Sum of `amount_usd` over `refunded`.
    pub refunded_usd: ExactSum,
}

/// Revenue by (country, UTC day) over some clean batches; merges exactly.
///
/// Its size grows with the number of distinct groups (keyed state), not with rows.
#[derive(Debug, Clone, Default)]
pub struct RevenuePartial {
    groups: BTreeMap<String, BTreeMap<i32, RevenueAcc>>,
}

impl RevenuePartial {
    /// An empty partial.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partial of one clean batch.
    ///
    /// # Errors
    /// As [`RevenuePartial::update`].
    pub fn of(clean: &RecordBatch) -> Result<Self, EtlError> {
        let mut p = Self::new();
        p.update(clean)?;
        Ok(p)
    }

    /// Adds the rows of a [`clean_schema`] batch.
    ///
    /// # Errors
    /// Missing columns; [`EtlError::UnexpectedStatus`] for a row that is not `placed`,
    /// `shipped` or `refunded` (feed it the output of [`to_clean`]).
    pub fn update(&mut self, clean: &RecordBatch) -> Result<(), EtlError> {
        let country = column::<StringArray>(clean, "country", DataType::Utf8)?;
        let ts = column::<TimestampMillisecondArray>(clean, "ts", utc_ms())?;
        let usd = column::<Float64Array>(clean, "amount_usd", DataType::Float64)?;
        let status = column::<StringArray>(clean, "status", DataType::Utf8)?;
        // UTC day; arrow's Timestamp→Date32 cast would need chrono-tz to resolve "UTC".
        let day: Date32Array = ts.try_unary(|ms| {
            i32::try_from(ms.div_euclid(MS_PER_DAY)).map_err(|_| {
                ArrowError::ComputeError(format!("timestamp {ms} ms is out of Date32 range"))
            })
        })?;
        let revenue = is_in(status, ["placed", "shipped"].into_iter())?;
        let refund = eq(status, &StringArray::new_scalar("refunded"))?;
        let counted = or(&revenue, &refund)?;
        if counted.true_count() != clean.num_rows() {
            let i = (0..clean.num_rows())
                .find(|&i| !counted.is_valid(i) || !counted.value(i))
                .unwrap_or_default();
            return Err(EtlError::UnexpectedStatus {
                status: status.is_valid(i).then(|| status.value(i).to_owned()),
            });
        }
        let nulls = or(&or(&is_null(country)?, &is_null(ts)?)?, &is_null(usd)?)?;
        if nulls.true_count() > 0 {
            return Err(EtlError::NullValue);
        }
        let mut current: Option<(&str, &mut BTreeMap<i32, RevenueAcc>)> = None;
        for i in 0..clean.num_rows() {
            let c = country.value(i);
            // Rows of one country tend to cluster; avoid a map lookup per row when they do.
            let days = match current.take() {
                Some((name, days)) if name == c => days,
                _ => self.groups.entry(c.to_owned()).or_default(),
            };
            let acc = days.entry(day.value(i)).or_default();
            acc.orders += 1;
            if revenue.value(i) {
                acc.revenue_usd.add(usd.value(i));
            } else {
                acc.refunded_usd.add(usd.value(i));
            }
            current = Some((c, days));
        }
        Ok(())
    }

    /// Adds another partial.
    pub fn merge(&mut self, other: &RevenuePartial) {
        for (country, days) in &other.groups {
            let mine = self.groups.entry(country.clone()).or_default();
            for (day, acc) in days {
                let m = mine.entry(*day).or_default();
                m.orders += acc.orders;
                m.revenue_usd.merge(&acc.revenue_usd);
                m.refunded_usd.merge(&acc.refunded_usd);
            }
        }
    }

    /// Number of (country, day) groups.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups as a [`revenue_schema`] batch sorted by (country, day).
    ///
    /// # Errors
    /// Never in practice: the columns are built to match the schema.
    pub fn to_batch(&self) -> Result<RecordBatch, EtlError> {
        let rows = self
            .groups
            .iter()
            .flat_map(|(c, days)| days.iter().map(move |(d, acc)| (c.as_str(), *d, acc)));
        let mut country = Vec::new();
        let mut day = Vec::new();
        let mut orders = Vec::new();
        let mut revenue = Vec::new();
        let mut refunded = Vec::new();
        for (c, d, acc) in rows {
            country.push(c);
            day.push(d);
            orders.push(acc.orders);
            revenue.push(acc.revenue_usd.value());
            refunded.push(acc.refunded_usd.value());
        }
        Ok(RecordBatch::try_new(
            revenue_schema(),
            vec![
                Arc::new(StringArray::from(country)),
                Arc::new(Date32Array::from(day)),
                Arc::new(UInt64Array::from(orders)),
                Arc::new(Float64Array::from(revenue)),
                Arc::new(Float64Array::from(refunded)),
            ],
        )?)
    }
}

/// Everything one read batch contributes to the job.
#[derive(Debug, Clone)]
pub struct OrdersBatch {
    /// Clean rows ([`clean_schema`]).
    pub clean: RecordBatch,
    /// The reader's and the rules' dead letters, by line.
    pub dead_letters: Vec<DeadLetter>,
    /// Rows dropped as `cancelled`.
    pub filtered: u64,
    /// This batch's revenue partial.
    pub revenue: RevenuePartial,
}

/// Runs [`validate`], [`to_clean`] and [`RevenuePartial::of`] on one batch read with
/// [`orders_csv_options`].
///
/// # Errors
/// As the steps.
pub fn process_batch(read: &ReadBatch) -> Result<OrdersBatch, EtlError> {
    let (valid, rule_dead) = validate(&read.batch, Some(&read.file))?;
    let (clean, filtered) = to_clean(&valid)?;
    let revenue = RevenuePartial::of(&clean)?;
    let mut dead_letters = read.dead_letters.clone();
    dead_letters.extend(rule_dead);
    dead_letters.sort_by_key(|d| d.line);
    Ok(OrdersBatch {
        clean,
        dead_letters,
        filtered,
        revenue,
    })
}
