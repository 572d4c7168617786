//! Typed column builders shared by the text readers.
//!
//! A record is parsed in two steps so a bad field never leaves a half-appended row: every field
//! is first parsed into a scratch [`Cell`]; only when all fields parsed are the cells pushed into
//! the Arrow builders ([`Columns::commit`]). Text cells are not copied into the scratch: the commit
//! step reads them again from the record.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt64Builder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};

use super::{ReadError, RecordError};

/// Expected-value words used in [`RecordError::InvalidValue`].
pub(crate) const EXPECT_UINT: &str = "unsigned integer";
pub(crate) const EXPECT_INT: &str = "integer";
pub(crate) const EXPECT_FLOAT: &str = "number";
pub(crate) const EXPECT_EXACT_FLOAT: &str = "number exactly representable as a 64-bit float";
pub(crate) const EXPECT_BOOL: &str = "boolean";
pub(crate) const EXPECT_TIMESTAMP: &str = "RFC 3339 timestamp";
pub(crate) const EXPECT_DATE: &str = "date (YYYY-MM-DD)";
pub(crate) const EXPECT_STRING: &str = "string";

/// One parsed field waiting for its record to be accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell {
    Null,
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// Text; read again from the record at commit time.
    Text,
}

#[derive(Debug)]
enum Builder {
    UInt64(UInt64Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    /// Timestamps are collected as i64 in the column's unit and typed at finish.
    Timestamp(TimeUnit, Option<Arc<str>>, Int64Builder),
    Date32(Date32Builder),
}

/// Builders for every column of a data schema plus the scratch row.
#[derive(Debug)]
pub(crate) struct Columns {
    schema: SchemaRef,
    builders: Vec<Builder>,
    cells: Vec<Cell>,
}

/// Parses an RFC 3339 timestamp into `unit` ticks since the epoch; `None` for a leap second or
/// an instant beyond the unit's range.
pub(crate) fn parse_timestamp(s: &str, unit: TimeUnit) -> Option<i64> {
    if s.starts_with(['+', '-']) {
        return expanded_year(s, unit);
    }
    if unit != TimeUnit::Nanosecond {
        if let Some((secs, nanos)) = simple_rfc3339(s.as_bytes()) {
            let nanos = i64::from(nanos);
            return Some(match unit {
                TimeUnit::Second => secs,
                TimeUnit::Millisecond => secs * 1_000 + nanos / 1_000_000,
                _ => secs * 1_000_000 + nanos / 1_000,
            });
        }
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    if t.timestamp_subsec_nanos() >= 1_000_000_000 {
        // A leap second (`23:59:60`): Arrow timestamps have no place for it, and folding it
        // into the second before or after would make two instants one.
        return None;
    }
    match unit {
        TimeUnit::Second => Some(t.timestamp()),
        TimeUnit::Millisecond => Some(t.timestamp_millis()),
        TimeUnit::Microsecond => Some(t.timestamp_micros()),
        TimeUnit::Nanosecond => t.timestamp_nanos_opt(),
    }
}

/// A timestamp whose year is beyond 0000–9999, written as those are written (`+10000-01-01T…`,
/// `-0001-12-31T…`; RFC 3339 has no form for them): read in a stand-in year of the same
/// leap-ness, then moved by whole days.
fn expanded_year(s: &str, unit: TimeUnit) -> Option<i64> {
    let negative = s.starts_with('-');
    let digits = s[1..].bytes().take_while(u8::is_ascii_digit).count();
    // Only what no four-digit year can say: `+` for years after 9999, `-` for those before 0.
    let least = if negative { 4 } else { 5 };
    if !(least..=9).contains(&digits) {
        return None;
    }
    let year: i64 = s[1..1 + digits].parse().ok()?;
    let year = if negative { -year } else { year };
    let leap = year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0);
    let standin: i64 = if leap { 2000 } else { 2001 };
    let t = format!("{standin}{}", &s[1 + digits..]);
    let (secs, nanos) = match simple_rfc3339(t.as_bytes()) {
        Some(parsed) => parsed,
        None => {
            let t = DateTime::parse_from_rfc3339(&t).ok()?;
            if t.timestamp_subsec_nanos() >= 1_000_000_000 {
                return None;
            }
            (t.timestamp(), t.timestamp_subsec_nanos())
        }
    };
    let shift = days_from_civil(year, 1, 1) - days_from_civil(standin, 1, 1);
    let secs = secs.checked_add(shift.checked_mul(86_400)?)?;
    let (per_second, nanos_per_tick) = match unit {
        TimeUnit::Second => (1, 1_000_000_000),
        TimeUnit::Millisecond => (1_000, 1_000_000),
        TimeUnit::Microsecond => (1_000_000, 1_000),
        TimeUnit::Nanosecond => (1_000_000_000, 1),
    };
    secs.checked_mul(per_second)?
        .checked_add(i64::from(nanos) / nanos_per_tick)
}

/// Seconds since the epoch and nanoseconds of the common RFC 3339 shape
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, or `None` for anything else (which the full parser
/// then reads or rejects). Accepts only what the full parser accepts, with the same value.
fn simple_rfc3339(b: &[u8]) -> Option<(i64, u32)> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some((secs, nanos))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an unsigned integer as `str::parse::<u64>` does, quickly for plain digit strings.
fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        return Some(
            b.iter()
                .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0')),
        );
    }
    s.parse().ok()
}

/// Whether a JSON number's text is an integer literal: `-?[0-9]+`.
fn json_integer_text(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a JSON integer literal (`-0` is 0), or `None` for any other text or a value
/// beyond `i128`.
fn json_integer(v: &str) -> Option<i128> {
    json_integer_text(v).then(|| v.parse().ok()).flatten()
}

/// The value of a finite JSON number, or `None` when it is not one, is beyond `f64`, or is an
/// integer literal the float does not hold exactly.
fn json_float(v: &str) -> Option<f64> {
    let first = *v.as_bytes().first()?;
    if first != b'-' && !first.is_ascii_digit() {
        return None;
    }
    let f: f64 = v.parse().ok().filter(|f: &f64| f.is_finite())?;
    if json_integer_text(v) && format!("{f:.0}") != v {
        return None;
    }
    Some(f)
}

/// The float written as the JSON string `NaN`, `Infinity` or `-Infinity` (JSON has no number
/// for them), or `None`.
fn non_finite(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01: exactly two digits of month and day, and a
/// year of four digits, or for years beyond 0000–9999 a signed one as those are written
/// (`+10000-01-01`, `-0001-01-01`). No surrounding whitespace.
pub(crate) fn parse_date32(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let n = b.len();
    if n < 10 || b[n - 3] != b'-' || b[n - 6] != b'-' {
        return None;
    }
    let digits = |r: &[u8]| !r.is_empty() && r.iter().all(u8::is_ascii_digit);
    let (year, month, day) = (&s[..n - 6], &b[n - 5..n - 3], &b[n - 2..]);
    let unsigned = year.strip_prefix(['+', '-']).unwrap_or(year);
    let signed = unsigned.len() != year.len();
    if !digits(unsigned.as_bytes()) || !digits(month) || !digits(day) {
        return None;
    }
    // A sign only where four digits cannot say the year: `+` after 9999, `-` before 0.
    let least = match year.as_bytes()[0] {
        b'+' => 5,
        b'-' => 4,
        _ => 4,
    };
    if unsigned.len() < least || (!signed && unsigned.len() != 4) {
        return None;
    }
    let two = |d: &[u8]| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0');
    let d = NaiveDate::from_ymd_opt(year.parse().ok()?, two(month), two(day))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(d.signed_duration_since(epoch).num_days()).ok()
}

/// Parses a boolean written `true`/`false` in any ASCII case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The most rows a reader pre-allocates a batch's builders for: a configured `batch_rows` far
/// above it (1 << 40, say) must not allocate up front; builders grow as rows arrive.
pub(crate) const MAX_PREALLOC_ROWS: usize = 1 << 16;

impl Columns {
    /// Builders for `schema`, or the first column whose type text readers cannot parse.
    pub(crate) fn new(schema: SchemaRef, capacity: usize) -> Result<Self, ReadError> {
        let capacity = capacity.min(MAX_PREALLOC_ROWS);
        let builders = schema
            .fields()
            .iter()
            .map(|f| {
                Ok(match f.data_type() {
                    DataType::UInt64 => Builder::UInt64(UInt64Builder::with_capacity(capacity)),
                    DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
                    DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
                    DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
                    DataType::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, 0)),
                    DataType::Timestamp(unit, tz) => {
                        Builder::Timestamp(*unit, tz.clone(), Int64Builder::with_capacity(capacity))
                    }
                    DataType::Date32 => Builder::Date32(Date32Builder::with_capacity(capacity)),
                    other => {
                        return Err(ReadError::UnsupportedType {
                            column: f.name().clone(),
                            data_type: other.clone(),
                        })
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cells = vec![Cell::Null; builders.len()];
        Ok(Columns {
            schema,
            builders,
            cells,
        })
    }

    /// Number of columns.
    pub(crate) fn len(&self) -> usize {
        self.builders.len()
    }

    /// Name of column `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.schema.field(i).name()
    }

    /// Parses CSV text for column `i` into the scratch row.
    ///
    /// An empty field is null in a nullable column, the empty string in a non-nullable text
    /// column, and an invalid value otherwise.
    pub(crate) fn parse_text(&mut self, i: usize, s: &str) -> Result<(), RecordError> {
        let field = self.schema.field(i);
        let name = field.name();
        if s.is_empty() && field.is_nullable() {
            self.cells[i] = Cell::Null;
            return Ok(());
        }
        let cell = match &self.builders[i] {
            Builder::UInt64(_) => parse_u64(s)
                .map(Cell::U64)
                .ok_or_else(|| RecordError::invalid(name, EXPECT_UINT, s))?,
            Builder::Int64(_) => s
                .parse()
                .map(Cell::I64)
                .map_err(|_| RecordError::invalid(name, EXPECT_INT, s))?,
            Builder::Float64(_) => s
                .parse()
                .map(Cell::F64)
                .map_err(|_| RecordError::invalid(name, EXPECT_FLOAT, s))?,
            Builder::Boolean(_) => parse_bool(s)
                .map(Cell::Bool)
                .ok_or_else(|| RecordError::invalid(name, EXPECT_BOOL, s))?,
            Builder::Utf8(_) => Cell::Text,
            Builder::Timestamp(unit, _, _) => parse_timestamp(s, *unit)
                .map(Cell::I64)
                .ok_or_else(|| RecordError::invalid(name, EXPECT_TIMESTAMP, s))?,
            Builder::Date32(_) => parse_date32(s)
                .map(|d| Cell::I64(i64::from(d)))
                .ok_or_else(|| RecordError::invalid(name, EXPECT_DATE, s))?,
        };
        self.cells[i] = cell;
        Ok(())
    }

    /// Parses a JSON value, given as its text (absent = `None`), for column `i` into the scratch
    /// row; a string for a text column is decoded into `text`.
    ///
    /// Numbers must be JSON numbers and are taken from their text, never through a rounding
    /// float: an integer column takes an integer literal within its range; a float column takes
    /// any finite number, but an integer literal only if the float holds it exactly (so
    /// `9007199254740993`, 2^53 + 1, is refused, not rounded), and the strings `"NaN"`,
    /// `"Infinity"` and `"-Infinity"`. Timestamps are RFC 3339 strings or
    /// integers in the column's unit; dates are `YYYY-MM-DD` strings or integer days.
    pub(crate) fn parse_json(
        &mut self,
        i: usize,
        v: Option<&str>,
        text: &mut String,
    ) -> Result<(), RecordError> {
        let field = self.schema.field(i);
        let name = field.name();
        let v = match v {
            None | Some("null") if field.is_nullable() => {
                self.cells[i] = Cell::Null;
                return Ok(());
            }
            None | Some("null") => {
                return Err(RecordError::MissingValue {
                    column: name.clone(),
                })
            }
            Some(v) => v,
        };
        let bad = |expected| RecordError::invalid(name, expected, v);
        let string = || serde_json::from_str::<String>(v).ok();
        let cell = match &self.builders[i] {
            Builder::UInt64(_) => Cell::U64(
                json_integer(v)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad(EXPECT_UINT))?,
            ),
            Builder::Int64(_) => Cell::I64(
                json_integer(v)
                    .and_then(|n| i64::try_from(n).ok())
                    .ok_or_else(|| bad(EXPECT_INT))?,
            ),
            Builder::Float64(_) if v.starts_with('"') => Cell::F64(
                string()
                    .and_then(|s| non_finite(&s))
                    .ok_or_else(|| bad(EXPECT_FLOAT))?,
            ),
            Builder::Float64(_) => Cell::F64(json_float(v).ok_or_else(|| {
                if json_integer_text(v) {
                    bad(EXPECT_EXACT_FLOAT)
                } else {
                    bad(EXPECT_FLOAT)
                }
            })?),
            Builder::Boolean(_) => match v {
                "true" => Cell::Bool(true),
                "false" => Cell::Bool(false),
                _ => return Err(bad(EXPECT_BOOL)),
            },
            Builder::Utf8(_) => {
                *text = v
                    .starts_with('"')
                    .then(string)
                    .flatten()
                    .ok_or_else(|| bad(EXPECT_STRING))?;
                Cell::Text
            }
            Builder::Timestamp(unit, _, _) => Cell::I64(
                if v.starts_with('"') {
                    string().and_then(|s| parse_timestamp(&s, *unit))
                } else {
                    json_integer(v).and_then(|n| i64::try_from(n).ok())
                }
                .ok_or_else(|| bad(EXPECT_TIMESTAMP))?,
            ),
            Builder::Date32(_) => Cell::I64(
                if v.starts_with('"') {
                    string().and_then(|s| parse_date32(&s)).map(i64::from)
                } else {
                    json_integer(v)
                        .and_then(|n| i32::try_from(n).ok())
                        .map(i64::from)
                }
                .ok_or_else(|| bad(EXPECT_DATE))?,
            ),
        };
        self.cells[i] = cell;
        Ok(())
    }

    /// Appends the scratch row; `text(i)` yields column `i`'s text for [`Cell::Text`] cells.
    pub(crate) fn commit<'a>(&mut self, text: impl Fn(usize) -> &'a str) {
        for (i, (b, cell)) in self.builders.iter_mut().zip(&self.cells).enumerate() {
            match (b, *cell) {
                (Builder::UInt64(b), Cell::U64(v)) => b.append_value(v),
                (Builder::Int64(b), Cell::I64(v)) => b.append_value(v),
                (Builder::Float64(b), Cell::F64(v)) => b.append_value(v),
                (Builder::Boolean(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Utf8(b), Cell::Text) => b.append_value(text(i)),
                (Builder::Timestamp(_, _, b), Cell::I64(v)) => b.append_value(v),
                (Builder::Date32(b), Cell::I64(v)) => {
                    // parse_* only produce Date32 cells that fit in i32.
                    b.append_value(i32::try_from(v).unwrap_or_default())
                }
                (b, _) => b.append_null(),
            }
        }
    }

    /// Empties the builders and sizes them for `rows` rows, text column `i` for
    /// `text_per_row[i]` bytes a row.
    pub(crate) fn reset(&mut self, rows: usize, text_per_row: &[usize]) {
        let rows = rows.min(MAX_PREALLOC_ROWS);
        for (i, b) in self.builders.iter_mut().enumerate() {
            *b = match b {
                Builder::UInt64(_) => Builder::UInt64(UInt64Builder::with_capacity(rows)),
                Builder::Int64(_) => Builder::Int64(Int64Builder::with_capacity(rows)),
                Builder::Float64(_) => Builder::Float64(Float64Builder::with_capacity(rows)),
                Builder::Boolean(_) => Builder::Boolean(BooleanBuilder::with_capacity(rows)),
                Builder::Utf8(_) => {
                    let per_row = text_per_row.get(i).copied().unwrap_or(0);
                    Builder::Utf8(StringBuilder::with_capacity(
                        rows,
                        rows.saturating_mul(per_row),
                    ))
                }
                Builder::Timestamp(unit, tz, _) => {
                    Builder::Timestamp(*unit, tz.clone(), Int64Builder::with_capacity(rows))
                }
                Builder::Date32(_) => Builder::Date32(Date32Builder::with_capacity(rows)),
            };
        }
    }

    /// Takes the built columns, leaving the builders empty.
    pub(crate) fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders.iter_mut().map(Builder::finish).collect()
    }
}

impl Builder {
    fn append_null(&mut self) {
        match self {
            Builder::UInt64(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Timestamp(_, _, b) => b.append_null(),
            Builder::Date32(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::UInt64(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Date32(b) => Arc::new(b.finish()),
            Builder::Timestamp(unit, tz, b) => {
                let (_, values, nulls) = b.finish().into_parts();
                let tz = tz.clone();
                match unit {
                    TimeUnit::Second => {
                        Arc::new(TimestampSecondArray::new(values, nulls).with_timezone_opt(tz))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        TimestampMillisecondArray::new(values, nulls).with_timezone_opt(tz),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        TimestampMicrosecondArray::new(values, nulls).with_timezone_opt(tz),
                    ),
                    TimeUnit::Nanosecond => {
                        Arc::new(TimestampNanosecondArray::new(values, nulls).with_timezone_opt(tz))
                    }
                }
            }
        }
    }
}

/// Infers a column type from sample values (empty values ignored).
///
/// The first type in `Boolean, Int64, Float64, Timestamp(ms, UTC), Date32` that parses every
/// non-empty sample wins; otherwise `Utf8`. A column with no non-empty sample is `Utf8`.
pub(crate) fn infer_type<'a>(samples: impl Iterator<Item = &'a str> + Clone) -> DataType {
    let mut values = samples.filter(|s| !s.is_empty()).peekable();
    if values.peek().is_none() {
        return DataType::Utf8;
    }
    let all = |f: &dyn Fn(&str) -> bool| values.clone().all(f);
    if all(&|s| parse_bool(s).is_some()) {
        DataType::Boolean
    } else if all(&|s| s.parse::<i64>().is_ok()) {
        DataType::Int64
    } else if all(&|s| s.parse::<f64>().is_ok()) {
        DataType::Float64
    } else if all(&|s| parse_timestamp(s, TimeUnit::Millisecond).is_some()) {
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    } else if all(&|s| parse_date32(s).is_some()) {
        DataType::Date32
    } else {
        DataType::Utf8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_with_offsets_into_utc_millis() {
        let ms = parse_timestamp("2024-03-01T01:30:00.250+01:30", TimeUnit::Millisecond);
        assert_eq!(ms, Some(1_709_251_200_250));
        assert_eq!(
            parse_timestamp("2024-03-01 00:00", TimeUnit::Millisecond),
            None
        );
        assert_eq!(parse_date32("1970-01-02"), Some(1));
        assert_eq!(parse_date32("1969-12-31"), Some(-1));
        assert_eq!(parse_date32("2024-02-30"), None);
        for s in [
            "2024-1-5",
            " 2024-01-05",
            "2024-01-05 ",
            "02024-01-05",
            "10000-01-01",
            "2024-01-05T00:00:00Z",
            "20240105",
            "2024-01-+5",
            "+-2024-01-05",
            "",
        ] {
            assert_eq!(parse_date32(s), None, "{s:?}");
        }
        assert_eq!(parse_date32("0000-01-01"), Some(-719_528));
        assert_eq!(parse_date32("+10000-01-01"), Some(2_932_897));
        assert_eq!(parse_date32("-0001-01-01"), Some(-719_893));
        assert_eq!(parse_date32("+2024-01-05"), None);
        assert_eq!(parse_date32("-2024-01-05"), Some(-1_458_775));
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Nanosecond,
        ] {
            assert_eq!(parse_timestamp("2016-12-31T23:59:60Z", unit), None);
            assert_eq!(parse_timestamp("2016-12-31T23:59:60.5+01:00", unit), None);
        }
    }

    /// The full RFC 3339 parser's reading, without the fast path.
    fn by_chrono(s: &str, unit: TimeUnit) -> Option<i64> {
        let t = DateTime::parse_from_rfc3339(s)
            .ok()
            .filter(|t| t.timestamp_subsec_nanos() < 1_000_000_000)?;
        match unit {
            TimeUnit::Second => Some(t.timestamp()),
            TimeUnit::Millisecond => Some(t.timestamp_millis()),
            TimeUnit::Microsecond => Some(t.timestamp_micros()),
            TimeUnit::Nanosecond => t.timestamp_nanos_opt(),
        }
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_the_full_parser() {
        let mut cases: Vec<String> = [
            "2024-03-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.123456789-23:59",
            "2024-02-29T12:00:00-00:00",
            "2023-02-29T12:00:00Z",
            "2024-04-31T12:00:00Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T23:60:00Z",
            "2024-03-01T23:59:60Z",
            "2024-03-01T23:59:59.Z",
            "2024-03-01T23:59:59.1234567891Z",
            "2024-03-01T23:59:59+24:00",
            "2024-03-01T23:59:59+01:60",
            "2024-03-01t23:59:59z",
            "2024-03-01 23:59:59Z",
            "2024-3-01T23:59:59Z",
            "+2024-03-01T23:59:59Z",
            "2024-03-01T23:59:59+0100",
            "2024-03-01T23:59:59",
            "2024-00-10T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // A walk over dates, times, fractions and offsets.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let y = 1 + x % 3000;
            let mo = 1 + (x >> 12) % 12;
            let d = 1 + (x >> 16) % 31;
            let h = (x >> 21) % 24;
            let mi = (x >> 26) % 60;
            let se = (x >> 32) % 60;
            let digits = ((x >> 38) % 11) as usize;
            let frac = format!("{:09}", (x >> 40) % 1_000_000_000);
            let frac = match digits {
                0 => String::new(),
                10 => ".".to_owned(),
                n => format!(".{}", &frac[..n]),
            };
            let off = match (x >> 50) % 4 {
                0 => "Z".to_owned(),
                1 => format!("+{:02}:{:02}", (x >> 52) % 24, (x >> 56) % 60),
                2 => format!("-{:02}:{:02}", (x >> 52) % 24, (x >> 56) % 60),
                _ => "+05:30".to_owned(),
            };
            cases.push(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}{frac}{off}"
            ));
        }
        // Signed (expanded) years are read by their own path, tested below.
        for s in cases.iter().filter(|s| !s.starts_with(['+', '-'])) {
            for unit in [
                TimeUnit::Second,
                TimeUnit::Millisecond,
                TimeUnit::Microsecond,
                TimeUnit::Nanosecond,
            ] {
                assert_eq!(parse_timestamp(s, unit), by_chrono(s, unit), "{s} {unit:?}");
            }
        }
    }

    #[test]
    fn expanded_years_read_as_chrono_writes_them() {
        use chrono::SecondsFormat;
        for micros in [
            253_402_300_800_000_000i64,
            253_402_300_799_999_999,
            -62_167_219_200_000_001,
            -62_167_219_200_000_000,
            4_102_444_800_123_456 * 1_000,
            -8_210_298_412_800_000_000,
            i64::MIN / 1_000,
        ] {
            let Some(t) = DateTime::from_timestamp_micros(micros) else {
                continue;
            };
            for offset in [0, 5 * 3600 + 30 * 60, -(23 * 3600 + 59 * 60)] {
                let zone = chrono::FixedOffset::east_opt(offset).expect("in range");
                let s = t
                    .with_timezone(&zone)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true);
                assert_eq!(
                    parse_timestamp(&s, TimeUnit::Microsecond),
                    Some(micros),
                    "{s}"
                );
                assert_eq!(
                    parse_timestamp(&s, TimeUnit::Second),
                    Some(micros.div_euclid(1_000_000)),
                    "{s}"
                );
            }
        }
        assert_eq!(
            parse_timestamp("+10000-01-01T00:00:00Z", TimeUnit::Second),
            Some(253_402_300_800)
        );
        assert_eq!(
            parse_timestamp("+10000-02-29T00:00:00Z", TimeUnit::Second),
            Some(253_407_398_400)
        );
        assert_eq!(
            parse_timestamp("+10001-02-29T00:00:00Z", TimeUnit::Second),
            None
        );
        assert_eq!(
            parse_timestamp("+10000-01-01T00:00:00Z", TimeUnit::Nanosecond),
            None
        );
        assert_eq!(
            parse_timestamp("+999999999-01-01T00:00:00Z", TimeUnit::Millisecond),
            None
        );
        assert_eq!(
            parse_timestamp("+1000000000-01-01T00:00:00Z", TimeUnit::Second),
            None
        );
        assert_eq!(
            parse_timestamp("+123-01-01T00:00:00Z", TimeUnit::Second),
            None
        );
        assert_eq!(parse_timestamp("-", TimeUnit::Second), None);
        assert_eq!(
            parse_timestamp("+10000-12-31T23:59:60Z", TimeUnit::Second),
            None
        );
    }

    #[test]
    fn the_fast_integer_path_agrees_with_str_parse() {
        for s in [
            "0",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "9999999999999999999",
            "+5",
            "-0",
            "",
            " 1",
            "1 ",
            "1_000",
            "١",
        ] {
            assert_eq!(parse_u64(s), s.parse::<u64>().ok(), "{s:?}");
        }
    }

    #[test]
    fn infers_the_narrowest_type() {
        let t = |v: &[&'static str]| infer_type(v.iter().copied());
        assert_eq!(t(&["1", "", "-2"]), DataType::Int64);
        assert_eq!(t(&["1", "2.5"]), DataType::Float64);
        assert_eq!(t(&["TRUE", "false"]), DataType::Boolean);
        assert_eq!(t(&["2024-01-01"]), DataType::Date32);
        assert_eq!(
            t(&["2024-01-01T00:00:00Z"]),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(t(&["x", "1"]), DataType::Utf8);
        assert_eq!(t(&["", ""]), DataType::Utf8);
    }
}
