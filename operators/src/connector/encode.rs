//! Cell encoding for the text writers, inverse of the readers' parsing.
//!
//! The types the readers parse are written so they read back to the same values: integers in
//! decimal, floats in their shortest round-tripping form, booleans `true`/`false`, timestamps as
//! RFC 3339 in UTC with as many fraction digits as needed, dates `YYYY-MM-DD`; in JSON, the
//! floats JSON cannot write are the strings `"NaN"`, `"Infinity"` and `"-Infinity"`. Other types are
//! written with Arrow's display formatter (readable, not necessarily parseable back).

use std::fmt::Write as _;
use std::io::Write as _;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};

/// A typed view of one column for encoding.
pub(crate) enum View<'a> {
    UInt64(&'a [u64]),
    Int64(&'a [i64]),
    Float64(&'a [f64]),
    Boolean(&'a arrow::array::BooleanArray),
    Utf8(&'a arrow::array::StringArray),
    Timestamp(TimeUnit, &'a [i64]),
    Date32(&'a [i32]),
    Other(ArrayFormatter<'a>),
}

/// One column: its view and its null mask.
pub(crate) struct ColumnView<'a> {
    array: &'a ArrayRef,
    view: View<'a>,
}

impl<'a> ColumnView<'a> {
    pub(crate) fn new(array: &'a ArrayRef) -> Result<Self, ArrowError> {
        let view = match array.data_type() {
            DataType::UInt64 => View::UInt64(array.as_primitive::<UInt64Type>().values()),
            DataType::Int64 => View::Int64(array.as_primitive::<Int64Type>().values()),
            DataType::Float64 => View::Float64(array.as_primitive::<Float64Type>().values()),
            DataType::Boolean => View::Boolean(array.as_boolean()),
            DataType::Utf8 => View::Utf8(array.as_string::<i32>()),
            DataType::Date32 => View::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Timestamp(unit, _) => {
                let values: &[i64] = match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<TimestampMillisecondType>().values()
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().values()
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().values()
                    }
                };
                View::Timestamp(*unit, values)
            }
            _ => View::Other(ArrayFormatter::try_new(
                array.as_ref(),
                &FormatOptions::new(),
            )?),
        };
        Ok(ColumnView { array, view })
    }

    /// Whether row `i` is null.
    pub(crate) fn is_null(&self, i: usize) -> bool {
        self.array.is_null(i)
    }

    /// Appends row `i` as CSV text (nothing for null).
    pub(crate) fn text(&self, i: usize, out: &mut String) {
        if self.is_null(i) {
            return;
        }
        // Writing into a String cannot fail.
        let _ = match &self.view {
            View::UInt64(v) => write!(out, "{}", v[i]),
            View::Int64(v) => write!(out, "{}", v[i]),
            View::Float64(v) => write_float(out, v[i]),
            View::Boolean(b) => write!(out, "{}", b.value(i)),
            View::Utf8(s) => {
                out.push_str(s.value(i));
                Ok(())
            }
            View::Timestamp(unit, v) => match timestamp(*unit, v[i]) {
                Some(t) => {
                    out.push_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
                    Ok(())
                }
                None => write!(out, "{}", v[i]),
            },
            View::Date32(v) => match date(v[i]) {
                Some(d) => write!(out, "{}", d.format("%Y-%m-%d")),
                None => write!(out, "{}", v[i]),
            },
            View::Other(f) => write!(out, "{}", f.value(i)),
        };
    }

    /// Appends row `i` as a JSON value (the caller skips nulls).
    pub(crate) fn json(&self, i: usize, out: &mut Vec<u8>, scratch: &mut String) {
        let json_str = |out: &mut Vec<u8>, s: &str| {
            // Serialising a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(out, s);
        };
        match &self.view {
            View::UInt64(v) => {
                let _ = write!(out, "{}", v[i]);
            }
            View::Int64(v) => {
                let _ = write!(out, "{}", v[i]);
            }
            View::Float64(v) if v[i].is_finite() => {
                let _ = serde_json::to_writer(&mut *out, &v[i]);
            }
            // JSON has no token for these; a string keeps the value (the NDJSON reader takes it).
            View::Float64(v) if v[i].is_nan() => out.extend_from_slice(b"\"NaN\""),
            View::Float64(v) if v[i] > 0.0 => out.extend_from_slice(b"\"Infinity\""),
            View::Float64(_) => out.extend_from_slice(b"\"-Infinity\""),
            View::Boolean(b) => {
                let _ = write!(out, "{}", b.value(i));
            }
            View::Utf8(s) => json_str(out, s.value(i)),
            _ => {
                scratch.clear();
                self.text(i, scratch);
                json_str(out, scratch);
            }
        }
    }
}

/// Row `i` of `batch` as one JSON object, null fields omitted (the NDJSON part writer's form).
pub(crate) fn row_json(batch: &arrow::record_batch::RecordBatch, i: usize) -> String {
    let mut out = vec![b'{'];
    let mut scratch = String::new();
    let mut first = true;
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        if array.is_null(i) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        // Serialising a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, field.name());
        out.push(b':');
        match ColumnView::new(array) {
            Ok(view) => view.json(i, &mut out, &mut scratch),
            Err(_) => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    // Built from JSON text and valid UTF-8 strings.
    String::from_utf8_lossy(&out).into_owned()
}

/// Shortest round-tripping text; plain notation for ordinary magnitudes.
fn write_float(out: &mut String, v: f64) -> std::fmt::Result {
    let a = v.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) || !v.is_finite() {
        write!(out, "{v}")
    } else {
        write!(out, "{v:?}")
    }
}

fn timestamp(unit: TimeUnit, v: i64) -> Option<DateTime<Utc>> {
    match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    }
}

fn date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(TimeDelta::try_days(i64::from(days))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn floats_round_trip_through_text() {
        for v in [
            0.0,
            -0.5,
            0.1,
            1.0 / 3.0,
            1e-7,
            123456789.125,
            1e300,
            f64::MAX,
            -2.5e-300,
        ] {
            let mut s = String::new();
            write_float(&mut s, v).expect("string write");
            assert_eq!(s.parse::<f64>().expect("parseable"), v, "{s}");
        }
    }

    #[test]
    fn timestamps_use_utc_rfc3339_with_needed_digits() {
        let a: ArrayRef = Arc::new(
            arrow::array::TimestampMillisecondArray::from(vec![0, 1_709_251_200_250])
                .with_timezone("UTC"),
        );
        let view = ColumnView::new(&a).expect("supported");
        let mut s = String::new();
        view.text(0, &mut s);
        s.push(' ');
        view.text(1, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00Z 2024-03-01T00:00:00.250Z");
    }
}
