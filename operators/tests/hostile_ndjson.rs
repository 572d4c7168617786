//! Hostile NDJSON inputs through the public reader API, each with its exact expected outcome.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampSecondType,
    UInt64Type,
};
use weir_operators::connector::{BadRecordPolicy, DeadLetter, NdjsonOptions, NdjsonReader};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, true),
        Field::new("i", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("t", DataType::Timestamp(TimeUnit::Second, None), true),
    ]))
}

struct Read {
    batches: Vec<RecordBatch>,
    dead: Vec<DeadLetter>,
}

impl Read {
    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
    fn u(&self) -> Vec<Option<u64>> {
        self.col(0, |a| a.as_primitive::<UInt64Type>().iter().collect())
    }
    fn i(&self) -> Vec<Option<i64>> {
        self.col(1, |a| a.as_primitive::<Int64Type>().iter().collect())
    }
    fn f(&self) -> Vec<Option<f64>> {
        self.col(2, |a| a.as_primitive::<Float64Type>().iter().collect())
    }
    fn s(&self) -> Vec<Option<String>> {
        self.col(3, |a| {
            a.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect()
        })
    }
    fn t(&self) -> Vec<Option<i64>> {
        self.col(4, |a| {
            a.as_primitive::<TimestampSecondType>().iter().collect()
        })
    }
    fn col<T>(&self, i: usize, f: impl Fn(&dyn Array) -> Vec<T>) -> Vec<T> {
        self.batches
            .iter()
            .flat_map(|b| f(b.column(i).as_ref()))
            .collect()
    }
    fn dead_lines(&self) -> Vec<u64> {
        self.dead.iter().map(|d| d.line.expect("a line")).collect()
    }
}

fn read_with(input: &[u8], opts: NdjsonOptions) -> Read {
    let reader = NdjsonReader::new(input, "h.ndjson", opts).expect("valid options");
    let (mut batches, mut dead) = (Vec::new(), Vec::new());
    for item in reader {
        let b = item.expect("dead letters absorb bad lines");
        batches.push(b.batch);
        dead.extend(b.dead_letters);
    }
    Read { batches, dead }
}

fn read(input: &[u8]) -> Read {
    read_with(
        input,
        NdjsonOptions {
            bad_records: BadRecordPolicy::DeadLetter,
            ..NdjsonOptions::new(schema())
        },
    )
}

#[test]
fn a_bom_at_byte_0_is_stripped_and_a_bom_later_is_data() {
    let r = read(b"\xEF\xBB\xBF{\"u\":1}\n\xEF\xBB\xBF{\"u\":2}\n{\"u\":3}\n");
    assert_eq!(r.u(), vec![Some(1), Some(3)]);
    assert_eq!(r.dead_lines(), vec![2]);
    assert_eq!(r.dead[0].raw, "\u{feff}{\"u\":2}");
    // A file holding only a BOM has no records.
    assert_eq!(read(b"\xEF\xBB\xBF").rows(), 0);
    assert!(read(b"\xEF\xBB\xBF").dead.is_empty());
}

#[test]
fn crlf_blank_lines_and_a_last_line_without_newline() {
    let r = read(b"\r\n{\"u\":1}\r\n\r\n  \n{\"u\":2}\n\n{\"u\":3}");
    assert_eq!(r.u(), vec![Some(1), Some(2), Some(3)]);
    assert!(r.dead.is_empty());
    let lines = read_with(
        b"\r\n{\"u\":1}\r\n\r\n  \n{\"u\":2}\n\n{\"u\":3}",
        NdjsonOptions {
            line_column: true,
            ..NdjsonOptions::new(schema())
        },
    );
    let got: Vec<u64> = lines
        .batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("_line")
                .expect("line column")
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(got, vec![2, 5, 7]);
}

#[test]
fn invalid_utf8_is_a_dead_letter_and_reading_resumes() {
    let r = read(b"{\"s\":\"a\xFFb\"}\n{\"s\":\"ok\"}\n");
    assert_eq!(r.s(), vec![Some("ok".to_owned())]);
    assert_eq!(r.dead_lines(), vec![1]);
    assert!(
        r.dead[0].reason.starts_with("invalid JSON object"),
        "{}",
        r.dead[0].reason
    );
}

#[test]
fn integers_beyond_the_column_type_are_dead_letters_never_rounded() {
    let input = concat!(
        "{\"u\":18446744073709551615,\"i\":-9223372036854775808}\n", // 1: bounds, exact
        "{\"u\":18446744073709551616}\n",                            // 2: u64::MAX + 1
        "{\"i\":9223372036854775808}\n",                             // 3: i64::MAX + 1
        "{\"i\":-9223372036854775809}\n",                            // 4: i64::MIN - 1
        "{\"u\":-1}\n",                                              // 5
        "{\"i\":1.0}\n",                                             // 6: not an integer
        "{\"i\":1e3}\n",                                             // 7
        "{\"f\":9007199254740993}\n",                                // 8: 2^53 + 1
        "{\"f\":9007199254740992,\"i\":9007199254740993}\n",         // 9: exact
        "{\"f\":-18446744073709551615}\n",                           // 10: rounds
        "{\"f\":0.1,\"u\":0}\n",                                     // 11
        "{\"i\":-0,\"u\":-0}\n",                                     // 12
    );
    let r = read(input.as_bytes());
    assert_eq!(r.dead_lines(), vec![2, 3, 4, 5, 6, 7, 8, 10]);
    assert_eq!(r.u(), vec![Some(u64::MAX), None, Some(0), Some(0)]);
    assert_eq!(
        r.i(),
        vec![Some(i64::MIN), Some(9_007_199_254_740_993), None, Some(0)]
    );
    assert_eq!(
        r.f(),
        vec![None, Some(9_007_199_254_740_992.0), Some(0.1), None]
    );
    assert_eq!(
        r.dead[0].reason,
        "column `u`: expected unsigned integer, found \"18446744073709551616\""
    );
    assert_eq!(r.dead[0].raw, "{\"u\":18446744073709551616}");
    assert_eq!(
        r.dead[6].reason,
        "column `f`: expected number exactly representable as a 64-bit float, found \"9007199254740993\""
    );
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    let r = read(b"{\"u\":1,\"s\":\"a\",\"u\":2,\"s\":\"b\"}\n{\"u\":\"x\",\"u\":3}\n{\"u\":3,\"u\":\"x\"}\n{\"u\":4,\"\\u0075\":5}\n");
    assert_eq!(r.u(), vec![Some(2), Some(3), Some(5)]);
    assert_eq!(r.s(), vec![Some("b".to_owned()), None, None]);
    assert_eq!(r.dead_lines(), vec![3]);
}

#[test]
fn type_mismatches_and_nulls() {
    let input = concat!(
        "{\"u\":\"1\"}\n",                     // 1: string for a number
        "{\"s\":1}\n",                         // 2: number for a string
        "{\"u\":true}\n",                      // 3
        "{\"u\":null,\"s\":null}\n",           // 4: nulls
        "{}\n",                                // 5: all missing
        "{\"s\":{\"a\":1}}\n",                 // 6: object for a string
        "{\"s\":\"\\u0000\\ud83d\\ude00\"}\n", // 7: escapes
        "{\"s\":\"\\ud800\"}\n",               // 8: lone surrogate
    );
    let r = read(input.as_bytes());
    assert_eq!(r.dead_lines(), vec![1, 2, 3, 6, 8]);
    assert_eq!(r.s(), vec![None, None, Some("\u{0}\u{1F600}".to_owned())]);
    assert_eq!(
        r.dead
            .iter()
            .map(|d| d.reason.as_str())
            .take(4)
            .collect::<Vec<_>>(),
        vec![
            "column `u`: expected unsigned integer, found \"\\\"1\\\"\"",
            "column `s`: expected string, found \"1\"",
            "column `u`: expected unsigned integer, found \"true\"",
            "column `s`: expected string, found \"{\\\"a\\\":1}\"",
        ]
    );
}

#[test]
fn deep_nesting_is_skipped_in_other_keys_and_a_dead_letter_in_a_column() {
    let deep = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    let input = format!(
        "{{\"u\":1,\"x\":{}}}\n{{\"u\":2,\"s\":{}}}\n{}\n{{\"u\":4,\"x\":{}}}\n",
        deep(100_000),
        deep(100_000),
        deep(100_000),
        deep(3),
    );
    let r = read(input.as_bytes());
    assert_eq!(r.u(), vec![Some(1), Some(4)]);
    assert_eq!(r.dead_lines(), vec![2, 3]);
    assert!(
        r.dead[0]
            .reason
            .starts_with("column `s`: expected string, found \"[[[["),
        "{}",
        r.dead[0].reason
    );
    assert_eq!(
        r.dead[1].reason,
        "invalid JSON object: expected an object, found an array"
    );
}

#[test]
fn timestamps_offsets_leap_seconds_and_range() {
    let input = concat!(
        "{\"t\":\"2024-03-01T01:30:00+01:30\"}\n", // 1
        "{\"t\":\"2016-12-31T23:59:60Z\"}\n",      // 2: leap second
        "{\"t\":\"2024-02-30T00:00:00Z\"}\n",      // 3
        "{\"t\":1709251200}\n",                    // 4
        "{\"t\":1.5}\n",                           // 5
        "{\"t\":\"2024-03-01T00:00:00\"}\n",       // 6: no offset
    );
    let r = read(input.as_bytes());
    assert_eq!(r.t(), vec![Some(1_709_251_200), Some(1_709_251_200)]);
    assert_eq!(r.dead_lines(), vec![2, 3, 5, 6]);
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    let line = b"{\"u\":12345}"; // 11 bytes
    let opts = |max| NdjsonOptions {
        bad_records: BadRecordPolicy::DeadLetter,
        max_line_bytes: max,
        ..NdjsonOptions::new(schema())
    };
    // Without a terminator at the end of the input.
    assert_eq!(read_with(line, opts(11)).u(), vec![Some(12345)]);
    let r = read_with(line, opts(10));
    assert_eq!((r.rows(), r.dead_lines()), (0, vec![1]));
    // With one: the terminator counts.
    let mut nl = line.to_vec();
    nl.push(b'\n');
    assert_eq!(read_with(&nl, opts(12)).u(), vec![Some(12345)]);
    let r = read_with(&nl, opts(11));
    assert_eq!((r.rows(), r.dead_lines()), (0, vec![1]));
    nl.extend_from_slice(b"{\"u\":7}\n");
    let r = read_with(&nl, opts(11));
    assert_eq!((r.u(), r.dead_lines()), (vec![Some(7)], vec![1]));
}

#[test]
fn float_columns_take_non_finite_values_only_as_their_named_strings() {
    let input = "{\"f\":\"NaN\"}\n{\"f\":\"Infinity\"}\n{\"f\":\"-Infinity\"}\n{\"f\":\"1.5\"}\n{\"f\":\"inf\"}\n{\"f\":1e400}\n";
    let r = read(input.as_bytes());
    let f = r.f();
    assert_eq!(f.len(), 3);
    assert!(f[0].is_some_and(f64::is_nan));
    assert_eq!(&f[1..], &[Some(f64::INFINITY), Some(f64::NEG_INFINITY)]);
    assert_eq!(r.dead_lines(), vec![4, 5, 6]);
}

#[test]
fn an_over_long_line_keeps_a_prefix_of_whole_characters_as_raw() {
    // 1023 ASCII bytes, then 'é' (2 bytes) straddling the 1024-byte prefix.
    let mut line = "{\"s\":\"".to_owned();
    line.push_str(&"x".repeat(1023 - line.len()));
    line.push_str(&"é".repeat(2000));
    line.push_str("\"}\n{\"u\":1}\n");
    let r = read_with(
        line.as_bytes(),
        NdjsonOptions {
            bad_records: BadRecordPolicy::DeadLetter,
            max_line_bytes: 2048,
            ..NdjsonOptions::new(schema())
        },
    );
    assert_eq!(r.u(), vec![Some(1)]);
    assert_eq!(r.dead_lines(), vec![1]);
    assert_eq!(r.dead[0].reason, "line longer than 2048 bytes");
    assert_eq!(r.dead[0].raw, line[..1023]);
}

#[test]
fn only_json_whitespace_makes_a_blank_line() {
    let r = read(b" \t \n\x0c\n{\"u\":1}\n\x0b\n");
    assert_eq!(r.u(), vec![Some(1)]);
    assert_eq!(r.dead_lines(), vec![2, 4]);
}

#[test]
fn every_non_blank_line_is_a_row_or_a_dead_letter_exactly_once() {
    const PIECES: [&[u8]; 16] = [
        b"{\"u\":1}",
        b"{\"u\":-1}",
        b"{\"i\":9223372036854775807,\"s\":\"\\u00e9\"}",
        b"{\"f\":1e400}",
        b"{\"t\":\"2024-03-01T00:00:00Z\"}",
        b"[]",
        b"{",
        b"\"str\"",
        b"\xEF\xBB\xBF{}",
        b"{\"s\":\"\xFF\"}",
        b"  ",
        b"",
        b"\r",
        b"{\"u\":2} {\"u\":3}",
        b"{\"s\":\"a\\nb\"}",
        b"null",
    ];
    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    for case in 0..200 {
        let mut input = Vec::new();
        let mut non_blank = Vec::new();
        let lines = 1 + case % 25;
        for n in 1..=lines {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let piece = PIECES[(x % 16) as usize];
            input.extend_from_slice(piece);
            let blank = piece.iter().all(|b| matches!(b, b' ' | b'\r'));
            if !blank {
                non_blank.push(n as u64);
            }
            let last = n == lines;
            if !last || x & 0x100 != 0 {
                input.extend_from_slice(if x & 0x200 != 0 { b"\r\n" } else { b"\n" });
            }
        }
        for batch_rows in [1, 3, 1024] {
            let r = read_with(
                &input,
                NdjsonOptions {
                    bad_records: BadRecordPolicy::DeadLetter,
                    line_column: true,
                    batch_rows,
                    ..NdjsonOptions::new(schema())
                },
            );
            let mut seen: Vec<u64> = r
                .batches
                .iter()
                .flat_map(|b| {
                    b.column_by_name("_line")
                        .expect("line column")
                        .as_primitive::<UInt64Type>()
                        .values()
                        .to_vec()
                })
                .collect();
            seen.extend(r.dead_lines());
            seen.sort_unstable();
            assert_eq!(
                seen, non_blank,
                "case {case} batch_rows {batch_rows}: {input:?}"
            );
        }
    }
}
