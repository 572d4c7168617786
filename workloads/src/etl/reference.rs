//! A plain, row-at-a-time implementation of the orders job, for tests to compare against.
//!
//! It shares no code path with the vectorised job beyond the `csv` crate's field splitting and
//! chrono's RFC 3339 parser: it splits the file into physical lines itself (so it handles files
//! without line breaks inside quoted fields, which the generator never writes), applies the rules
//! in the job's order, and sums revenue exactly in fixed point (`i128` units of 2⁻⁸⁰ USD, exact for
//! every amount from 2⁻²⁸ to 2⁴⁶ USD), rounding once at the end. Dead-letter reasons are spelled
//! out here to match the reader's and the rules' texts.
//!
//! The hourly table and the late rows follow the job's watermark rule row by row, in file order:
//! the watermark a row meets is the largest `ts` of the valid rows before it (cancelled ones
//! included: the job's watermark is made before it drops them) minus the maximum delay and 1 ms
//! (Flink's bounded out-of-orderness), and a clean row is late when its hour `[h, h + 1 h)` ends at or before that watermark. The job
//! emits a watermark after each batch, not each row, so on one parse instance its late rows are
//! these exactly when every late row is late against rows of earlier batches too (the tests'
//! disordered inputs lag by many batches' worth of time); several instances can only make fewer
//! rows late.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt64Array,
};

use super::job::{DEFAULT_MAX_DELAY_MS, HOUR_MS};

use weir_operators::connector::DeadLetter;

/// One clean order.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOrder {
    /// Order id.
    pub order_id: u64,
    /// Milliseconds since the epoch (UTC).
    pub ts_ms: i64,
    /// Customer id.
    pub customer_id: u64,
    /// Country code.
    pub country: String,
    /// Amount in USD.
    pub amount_usd: f64,
    /// `placed`, `shipped` or `refunded`.
    pub status: String,
}

/// One revenue group.
#[derive(Debug, Clone, PartialEq)]
pub struct RevenueRow {
    /// Country code.
    pub country: String,
    /// Days since the epoch (UTC).
    pub day: i32,
    /// Non-cancelled orders.
    pub orders: u64,
    /// Sum over placed and shipped.
    pub revenue_usd: f64,
    /// Sum over refunded.
    pub refunded_usd: f64,
}

/// One group of the hourly table.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyRow {
    /// Country code.
    pub country: String,
    /// The hour's first millisecond since the epoch (UTC).
    pub hour_ms: i64,
    /// Non-cancelled orders that were not late.
    pub orders: u64,
    /// Sum over placed and shipped.
    pub revenue_usd: f64,
    /// Sum over refunded.
    pub refunded_usd: f64,
}

/// Everything the job produces for one file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReferenceOutput {
    /// Clean rows in file order.
    pub clean: Vec<CleanOrder>,
    /// Revenue by (country, day), sorted.
    pub revenue: Vec<RevenueRow>,
    /// Revenue by (country, hour) over the clean rows that were not late, sorted.
    pub hourly: Vec<HourlyRow>,
    /// Late clean rows in file order.
    pub late: Vec<CleanOrder>,
    /// Dead letters in file order.
    pub dead_letters: Vec<DeadLetter>,
    /// Cancelled rows dropped.
    pub filtered: u64,
}

/// Errors of [`run_reference`].
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read.
    #[error("{path}: I/O error: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An amount outside the fixed-point range of the reference sum.
    #[error("line {line}: amount_usd {value} is outside the reference's exact range")]
    OutOfRange {
        /// The line.
        line: u64,
        /// The amount.
        value: f64,
    },
    /// An amount outside the fixed-point range of the reference sum, in a table built from
    /// clean rows.
    #[error("order {order_id}: amount_usd {value} is outside the reference's exact range")]
    OrderOutOfRange {
        /// The order.
        order_id: u64,
        /// The amount.
        value: f64,
    },
}

/// An exact sum in units of 2⁻⁸⁰.
#[derive(Debug, Clone, Copy, Default)]
struct FixedSum(i128);

impl FixedSum {
    fn add(&mut self, v: f64) -> Option<()> {
        if v == 0.0 {
            return Some(());
        }
        let bits = v.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        if biased == 0 || biased == 0x7ff {
            return None; // subnormal or non-finite
        }
        let mantissa = i128::from((bits & ((1u64 << 52) - 1)) | (1u64 << 52));
        let shift = u32::try_from(biased - 1075 + 80).ok()?;
        if shift > 126 - 53 {
            return None;
        }
        let scaled = mantissa << shift;
        let signed = if v < 0.0 { -scaled } else { scaled };
        self.0 = self.0.checked_add(signed)?;
        Some(())
    }

    fn value(self) -> f64 {
        // `as` rounds to nearest-even; scaling by a power of two is exact here.
        self.0 as f64 * 2f64.powi(-80)
    }
}

fn rate(currency: &str) -> Option<f64> {
    match currency {
        "USD" => Some(1.0),
        "EUR" => Some(1.08),
        "GBP" => Some(1.27),
        "JPY" => Some(0.0067),
        _ => None,
    }
}

fn invalid(column: &str, expected: &str, value: &str) -> String {
    format!("column `{column}`: expected {expected}, found {value:?}")
}

/// Parses and checks one record; `Err` is the dead-letter reason.
fn check(fields: &[&str]) -> Result<CleanOrRejected, String> {
    if fields.len() != 7 {
        return Err(format!("expected 7 fields, found {}", fields.len()));
    }
    let order_id: u64 = fields[0]
        .parse()
        .map_err(|_| invalid("order_id", "unsigned integer", fields[0]))?;
    // A leap second (`23:59:60`) has no Arrow timestamp: refused, as the reader does.
    let ts_ms = chrono::DateTime::parse_from_rfc3339(fields[1])
        .ok()
        .filter(|t| t.timestamp_subsec_nanos() < 1_000_000_000)
        .ok_or_else(|| invalid("ts", "RFC 3339 timestamp", fields[1]))?
        .timestamp_millis();
    let customer_id: u64 = fields[2]
        .parse()
        .map_err(|_| invalid("customer_id", "unsigned integer", fields[2]))?;
    let amount: f64 = fields[4]
        .parse()
        .map_err(|_| invalid("amount", "number", fields[4]))?;
    if !amount.is_finite() {
        return Err(format!("amount {amount} is not a finite number"));
    }
    if amount < 0.0 {
        return Err(format!("negative amount {amount}"));
    }
    let Some(r) = rate(fields[5]) else {
        return Err(format!("unknown currency {:?}", fields[5]));
    };
    let status = fields[6];
    if !matches!(status, "placed" | "shipped" | "cancelled" | "refunded") {
        return Err(format!("unknown status {status:?}"));
    }
    if status == "cancelled" {
        return Ok(CleanOrRejected::Cancelled { ts_ms });
    }
    Ok(CleanOrRejected::Clean(CleanOrder {
        order_id,
        ts_ms,
        customer_id,
        country: fields[3].to_owned(),
        amount_usd: amount * r,
        status: status.to_owned(),
    }))
}

enum CleanOrRejected {
    Clean(CleanOrder),
    Cancelled { ts_ms: i64 },
}

/// Runs the orders job on the CSV file at `path`, one row at a time, with the job's default
/// maximum delay ([`DEFAULT_MAX_DELAY_MS`]).
///
/// # Errors
/// [`ReferenceError::Io`]; [`ReferenceError::OutOfRange`] for amounts the exact sum cannot hold.
pub fn run_reference(path: impl AsRef<Path>) -> Result<ReferenceOutput, ReferenceError> {
    run_reference_with(path, DEFAULT_MAX_DELAY_MS)
}

/// Revenue by (country, hour) of `orders`, sorted: the plain group-by the hourly table equals
/// when no row is late.
///
/// # Errors
/// [`ReferenceError::OrderOutOfRange`] for amounts the exact sum cannot hold.
pub fn revenue_by_hour(orders: &[CleanOrder]) -> Result<Vec<HourlyRow>, ReferenceError> {
    let mut groups: BTreeMap<(String, i64), (u64, FixedSum, FixedSum)> = BTreeMap::new();
    for order in orders {
        let hour = order.ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let g = groups.entry((order.country.clone(), hour)).or_default();
        g.0 += 1;
        let sum = if order.status == "refunded" {
            &mut g.2
        } else {
            &mut g.1
        };
        sum.add(order.amount_usd)
            .ok_or(ReferenceError::OrderOutOfRange {
                order_id: order.order_id,
                value: order.amount_usd,
            })?;
    }
    Ok(groups
        .into_iter()
        .map(|((country, hour_ms), (orders, rev, refund))| HourlyRow {
            country,
            hour_ms,
            orders,
            revenue_usd: rev.value(),
            refunded_usd: refund.value(),
        })
        .collect())
}

/// As [`run_reference`], with the watermark `max_delay_ms` behind the largest `ts` seen.
///
/// # Errors
/// As [`run_reference`].
pub fn run_reference_with(
    path: impl AsRef<Path>,
    max_delay_ms: u64,
) -> Result<ReferenceOutput, ReferenceError> {
    let max_delay = i64::try_from(max_delay_ms).unwrap_or(i64::MAX);
    let path = path.as_ref();
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReferenceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = ReferenceOutput::default();
    let mut groups: BTreeMap<(String, i32), (u64, FixedSum, FixedSum)> = BTreeMap::new();
    // The largest `ts` of the valid rows so far, and the clean rows that were not late.
    let mut max_seen: Option<i64> = None;
    let mut on_time = Vec::new();
    for (index, line) in text.split('\n').enumerate().skip(1) {
        let line_no = index as u64 + 1;
        let raw = line.strip_suffix('\r').unwrap_or(line);
        if raw.is_empty() {
            continue;
        }
        let mut parser = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(raw.as_bytes());
        let mut record = csv::StringRecord::new();
        // A one-line in-memory reader has no I/O errors; a parse failure is a bad record.
        let fields: Vec<&str> = match parser.read_record(&mut record) {
            Ok(true) => record.iter().collect(),
            _ => vec![],
        };
        match check(&fields) {
            Err(reason) => out.dead_letters.push(DeadLetter {
                file: Some(label.clone()),
                line: Some(line_no),
                reason,
                raw: raw.to_owned(),
            }),
            Ok(CleanOrRejected::Cancelled { ts_ms }) => {
                out.filtered += 1;
                max_seen = Some(max_seen.map_or(ts_ms, |m| m.max(ts_ms)));
            }
            Ok(CleanOrRejected::Clean(order)) => {
                let hour_end = order.ts_ms.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
                let watermark = max_seen.map(|m| m.saturating_sub(max_delay).saturating_sub(1));
                if watermark.is_some_and(|w| hour_end <= w) {
                    out.late.push(order.clone());
                } else {
                    on_time.push(order.clone());
                }
                max_seen = Some(max_seen.map_or(order.ts_ms, |m| m.max(order.ts_ms)));
                let day = i32::try_from(order.ts_ms.div_euclid(86_400_000)).unwrap_or(i32::MAX);
                let g = groups.entry((order.country.clone(), day)).or_default();
                g.0 += 1;
                let sum = if order.status == "refunded" {
                    &mut g.2
                } else {
                    &mut g.1
                };
                sum.add(order.amount_usd)
                    .ok_or(ReferenceError::OutOfRange {
                        line: line_no,
                        value: order.amount_usd,
                    })?;
                out.clean.push(order);
            }
        }
    }
    out.revenue = groups
        .into_iter()
        .map(|((country, day), (orders, rev, refund))| RevenueRow {
            country,
            day,
            orders,
            revenue_usd: rev.value(),
            refunded_usd: refund.value(),
        })
        .collect();
    out.hourly = revenue_by_hour(&on_time)?;
    Ok(out)
}

fn col<T: 'static>(b: &RecordBatch, i: usize) -> &T {
    b.column(i)
        .as_any()
        .downcast_ref::<T>()
        .expect("batch has the job's schema (test helper)")
}

/// Clean batches ([`clean_schema`](super::clean_schema)) as rows, for comparison.
///
/// # Panics
/// If a batch has another schema (a test helper).
pub fn clean_rows(batches: &[RecordBatch]) -> Vec<CleanOrder> {
    let mut rows = Vec::new();
    for b in batches {
        let ids = col::<UInt64Array>(b, 0);
        let ts = col::<TimestampMillisecondArray>(b, 1);
        let customers = col::<UInt64Array>(b, 2);
        let countries = col::<StringArray>(b, 3);
        let usd = col::<Float64Array>(b, 4);
        let statuses = col::<StringArray>(b, 5);
        for i in 0..b.num_rows() {
            rows.push(CleanOrder {
                order_id: ids.value(i),
                ts_ms: ts.value(i),
                customer_id: customers.value(i),
                country: countries.value(i).to_owned(),
                amount_usd: usd.value(i),
                status: statuses.value(i).to_owned(),
            });
        }
    }
    rows
}

/// A revenue batch ([`revenue_schema`](super::revenue_schema)) as rows, for comparison.
///
/// # Panics
/// If the batch has another schema (a test helper).
pub fn revenue_rows(batch: &RecordBatch) -> Vec<RevenueRow> {
    let countries = col::<StringArray>(batch, 0);
    let days = col::<Date32Array>(batch, 1);
    let orders = col::<UInt64Array>(batch, 2);
    let revenue = col::<Float64Array>(batch, 3);
    let refunded = col::<Float64Array>(batch, 4);
    (0..batch.num_rows())
        .map(|i| RevenueRow {
            country: countries.value(i).to_owned(),
            day: days.value(i),
            orders: orders.value(i),
            revenue_usd: revenue.value(i),
            refunded_usd: refunded.value(i),
        })
        .collect()
}

/// An hourly table batch (`country`, `hour`, `orders`, `revenue_usd`, `refunded_usd`) as rows,
/// for comparison.
///
/// # Panics
/// If the batch has another schema (a test helper).
pub fn hourly_rows(batch: &RecordBatch) -> Vec<HourlyRow> {
    let countries = col::<StringArray>(batch, 0);
    let hours = col::<TimestampMillisecondArray>(batch, 1);
    let orders = col::<UInt64Array>(batch, 2);
    let revenue = col::<Float64Array>(batch, 3);
    let refunded = col::<Float64Array>(batch, 4);
    (0..batch.num_rows())
        .map(|i| HourlyRow {
            country: countries.value(i).to_owned(),
            hour_ms: hours.value(i),
            orders: orders.value(i),
            revenue_usd: revenue.value(i),
            refunded_usd: refunded.value(i),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sum_is_exact_and_rounds_once() {
        let mut s = FixedSum::default();
        for _ in 0..10 {
            s.add(0.1).expect("in range");
        }
        assert_eq!(s.value(), 1.0);
        let mut t = FixedSum::default();
        t.add(1e13).expect("in range");
        t.add(6.7e-5).expect("in range");
        t.add(-1e13).expect("in range");
        assert_eq!(t.value(), 6.7e-5);
        assert!(FixedSum::default().add(1e-30).is_none());
        assert!(FixedSum::default().add(1e20).is_none());
    }
}
