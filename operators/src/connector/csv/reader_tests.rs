use super::*;
use crate::connector::{DeadLetter, LINE_COLUMN, RAW_COLUMN};
use arrow::array::{AsArray, Float64Array, Int64Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, UInt64Type};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), false))
            .collect::<Vec<_>>(),
    ))
}

/// All batches, plus all dead letters and the skipped count.
fn read_all(
    input: &str,
    opts: CsvOptions,
) -> Result<(Vec<RecordBatch>, Vec<DeadLetter>, u64), ReadError> {
    let reader = CsvReader::new(input.as_bytes(), "t.csv", opts)?;
    let (mut batches, mut dead, mut skipped) = (Vec::new(), Vec::new(), 0);
    for item in reader {
        let b = item?;
        batches.push(b.batch);
        dead.extend(b.dead_letters);
        skipped += b.skipped;
    }
    Ok((batches, dead, skipped))
}

fn column_u64(batches: &[RecordBatch], name: &str) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect("column present")
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn column_str(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(name)
                .expect("column present")
                .as_string::<i32>();
            a.iter()
                .map(|s| s.unwrap_or("<null>").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn with_lines(opts: CsvOptions) -> CsvOptions {
    CsvOptions {
        line_column: true,
        raw_column: true,
        ..opts
    }
}

#[test]
fn infers_types_and_names_from_header() {
    let data = "id,price,ok,when,day,name\n1,2.5,true,2024-03-01T00:00:00Z,2024-03-01,a\n-2,3,false,2024-03-01T00:00:01.5+01:00,2024-03-02,\n";
    let reader = CsvReader::new(data.as_bytes(), "t", CsvOptions::default()).expect("valid");
    let s = reader.data_schema();
    let types: Vec<_> = s.fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(
        types,
        vec![
            DataType::Int64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            DataType::Date32,
            DataType::Utf8,
        ]
    );
    let (batches, _, _) = read_all(data, CsvOptions::default()).expect("valid");
    let b = &batches[0];
    let ids = b
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("Int64");
    assert_eq!(ids.values().to_vec(), vec![1, -2]);
    let prices = b
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("Float64");
    assert_eq!(prices.values().to_vec(), vec![2.5, 3.0]);
    // empty text in a nullable column is null
    assert_eq!(b.column(5).null_count(), 1);
}

#[test]
fn no_header_names_columns_by_position() {
    let opts = CsvOptions {
        has_header: false,
        ..CsvOptions::default()
    };
    let reader = CsvReader::new("1,x\n2,y\n".as_bytes(), "t", opts).expect("valid");
    let names: Vec<_> = reader
        .data_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["column_1", "column_2"]);
    assert_eq!(
        reader
            .map(|b| b.expect("valid").batch.num_rows())
            .sum::<usize>(),
        2
    );
}

#[test]
fn line_numbers_and_raw_text_follow_physical_lines() {
    // blank line, CRLF, quoted newline, quoted delimiter, doubled quote, no final newline
    let data = "a,b\r\n1,x\r\n\r\n2,\"multi\nline\"\r\n3,\"c,d\"\n4,\"say \"\"hi\"\"\"\n\n\n5,end";
    let opts = with_lines(
        CsvOptions::default()
            .with_schema(schema(&[("a", DataType::UInt64), ("b", DataType::Utf8)])),
    );
    let (batches, dead, _) = read_all(data, opts).expect("valid");
    assert!(dead.is_empty());
    assert_eq!(column_u64(&batches, "a"), vec![1, 2, 3, 4, 5]);
    assert_eq!(column_u64(&batches, LINE_COLUMN), vec![2, 4, 6, 7, 10]);
    assert_eq!(
        column_str(&batches, "b"),
        vec!["x", "multi\nline", "c,d", "say \"hi\"", "end"]
    );
    assert_eq!(
        column_str(&batches, RAW_COLUMN),
        vec![
            "1,x",
            "2,\"multi\nline\"",
            "3,\"c,d\"",
            "4,\"say \"\"hi\"\"\"",
            "5,end"
        ]
    );
}

#[test]
fn custom_delimiter_and_quote() {
    let data = "a;b\n1;'x;y'\n2;'it''s'\n";
    let opts = CsvOptions {
        delimiter: b';',
        quote: b'\'',
        ..CsvOptions::default()
            .with_schema(schema(&[("a", DataType::Int64), ("b", DataType::Utf8)]))
    };
    let (batches, _, _) = read_all(data, opts).expect("valid");
    assert_eq!(column_str(&batches, "b"), vec!["x;y", "it's"]);
}

const BAD: &str = "id,amount,ts\n1,1.5,2024-03-01T00:00:00Z\n2,abc,2024-03-01T00:00:00Z\n3,1.0\n4,2.0,2024-02-30T00:00:00Z\n5,2.5,2024-03-01T00:00:00Z\n";

fn bad_schema() -> SchemaRef {
    schema(&[
        ("id", DataType::UInt64),
        ("amount", DataType::Float64),
        (
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ),
    ])
}

#[test]
fn dead_letter_policy_keeps_raw_line_and_reason() {
    let opts = CsvOptions::default()
        .with_schema(bad_schema())
        .with_bad_records(BadRecordPolicy::DeadLetter);
    let (batches, dead, skipped) = read_all(BAD, with_lines(opts)).expect("policy absorbs");
    assert_eq!(skipped, 0);
    assert_eq!(column_u64(&batches, "id"), vec![1, 5]);
    assert_eq!(column_u64(&batches, LINE_COLUMN), vec![2, 6]);
    let got: Vec<_> = dead
        .iter()
        .map(|d| {
            (
                d.line.unwrap_or_default(),
                d.reason.as_str(),
                d.raw.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                3,
                "column `amount`: expected number, found \"abc\"",
                "2,abc,2024-03-01T00:00:00Z"
            ),
            (4, "expected 3 fields, found 2", "3,1.0"),
            (
                5,
                "column `ts`: expected RFC 3339 timestamp, found \"2024-02-30T00:00:00Z\"",
                "4,2.0,2024-02-30T00:00:00Z"
            ),
        ]
    );
    assert!(dead.iter().all(|d| d.file.as_deref() == Some("t.csv")));
}

#[test]
fn skip_policy_counts_and_fail_policy_names_file_line_and_cause() {
    let opts = CsvOptions::default().with_schema(bad_schema());
    let skip = opts.clone().with_bad_records(BadRecordPolicy::SkipCounted);
    let (batches, dead, skipped) = read_all(BAD, skip).expect("policy absorbs");
    assert_eq!(
        (column_u64(&batches, "id"), dead.len(), skipped),
        (vec![1, 5], 0, 3)
    );

    let mut reader = CsvReader::new(BAD.as_bytes(), "t.csv", opts).expect("valid header");
    let first = reader
        .next()
        .expect("a batch")
        .expect("good rows come first");
    assert_eq!(first.batch.num_rows(), 1);
    let err = reader
        .next()
        .expect("then the error")
        .expect_err("bad record");
    assert_eq!(
        err.to_string(),
        "t.csv:3: bad record: column `amount`: expected number, found \"abc\" \
         (use BadRecordPolicy::DeadLetter to keep going)"
    );
    assert!(reader.next().is_none(), "a failed reader stays finished");
}

#[test]
fn batches_hold_at_most_batch_rows_records_good_or_bad() {
    let mut data = String::from("id\n");
    for i in 0..25 {
        if i % 5 == 0 {
            data.push_str("bad\n");
        } else {
            data.push_str(&format!("{i}\n"));
        }
    }
    let opts = CsvOptions::default()
        .with_schema(schema(&[("id", DataType::UInt64)]))
        .with_batch_rows(4)
        .with_bad_records(BadRecordPolicy::DeadLetter);
    let reader = CsvReader::new(data.as_bytes(), "t", opts).expect("valid");
    let sizes: Vec<(usize, usize)> = reader
        .map(|b| b.expect("absorbed"))
        .map(|b| (b.batch.num_rows(), b.dead_letters.len()))
        .collect();
    assert!(sizes.iter().all(|(r, d)| r + d <= 4));
    assert_eq!(sizes.iter().map(|(r, _)| r).sum::<usize>(), 20);
    assert_eq!(sizes.iter().map(|(_, d)| d).sum::<usize>(), 5);
    assert_eq!(sizes.len(), 7);
}

#[test]
fn header_width_must_match_declared_schema() {
    let err = CsvReader::new(
        "a,b\n".as_bytes(),
        "t",
        CsvOptions::default().with_schema(bad_schema()),
    )
    .expect_err("3 columns declared");
    assert!(matches!(
        err,
        ReadError::HeaderMismatch {
            expected: 3,
            found: 2,
            ..
        }
    ));
}

#[test]
fn unsupported_declared_type_is_rejected_up_front() {
    let s = schema(&[("x", DataType::Int8)]);
    let err = CsvReader::new("x\n".as_bytes(), "t", CsvOptions::default().with_schema(s))
        .expect_err("Int8 is not parsed");
    assert!(matches!(err, ReadError::UnsupportedType { .. }));
}

/// A reader whose consumer stops pulling stops reading: bytes read stay within one batch plus
/// the parser's 8 KiB buffer, however large the file.
#[test]
fn stalled_consumer_bounds_bytes_read() {
    let mut data = String::from("id,name\n");
    for i in 0..50_000u64 {
        data.push_str(&format!("{i},name-{i}\n"));
    }
    let row_bytes = data.len() as u64 / 50_000 + 1;
    let opts = CsvOptions::default()
        .with_schema(schema(&[
            ("id", DataType::UInt64),
            ("name", DataType::Utf8),
        ]))
        .with_batch_rows(100);
    let mut reader = CsvReader::new(data.as_bytes(), "t", opts).expect("valid");
    assert!(
        reader.bytes_read() <= 8 * 1024,
        "opening reads one buffer at most"
    );
    for pulled in 1..=3u64 {
        let b = reader.next().expect("more").expect("valid");
        assert_eq!(b.batch.num_rows(), 100);
        let bound = pulled * 100 * row_bytes + 8 * 1024 + 16;
        assert!(
            reader.bytes_read() <= bound,
            "{} > {bound}",
            reader.bytes_read()
        );
    }
    assert!(reader.bytes_read() < data.len() as u64 / 10);
    let total: usize = reader
        .by_ref()
        .map(|b| b.expect("valid").batch.num_rows())
        .sum();
    assert_eq!(total, 50_000 - 300);
    assert_eq!(reader.bytes_read(), data.len() as u64);
}

#[test]
fn inference_reads_ahead_only_the_sample() {
    let mut data = String::from("id\n");
    for i in 0..50_000u64 {
        data.push_str(&format!("{i}\n"));
    }
    let opts = CsvOptions {
        infer_rows: 10,
        ..CsvOptions::default()
    };
    let reader = CsvReader::new(data.as_bytes(), "t", opts).expect("valid");
    assert!(reader.bytes_read() <= 8 * 1024);
    let total: u64 = reader
        .map(|b| b.expect("valid").batch.num_rows() as u64)
        .sum();
    assert_eq!(total, 50_000);
}

proptest! {
    /// Any mix of LF / CRLF line ends and blank lines gives each record its physical line.
    #[test]
    fn line_numbers_match_a_line_count(rows in proptest::collection::vec((0u64..1000, 0usize..3, any::<bool>()), 1..40)) {
        let mut data = String::from("v\n");
        let mut expected = Vec::new();
        let mut line = 2u64;
        for (v, blanks, crlf) in &rows {
            let eol = if *crlf { "\r\n" } else { "\n" };
            for _ in 0..*blanks {
                data.push_str(eol);
                line += 1;
            }
            data.push_str(&format!("{v}{eol}"));
            expected.push(line);
            line += 1;
        }
        let opts = with_lines(CsvOptions::default().with_schema(schema(&[("v", DataType::UInt64)])).with_batch_rows(7));
        let (batches, _, _) = read_all(&data, opts).expect("valid");
        prop_assert_eq!(column_u64(&batches, LINE_COLUMN), expected);
        let values: Vec<u64> = rows.iter().map(|r| r.0).collect();
        prop_assert_eq!(column_u64(&batches, "v"), values);
        let raws: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        prop_assert_eq!(column_str(&batches, RAW_COLUMN), raws);
    }
}

#[test]
fn unsigned_column_rejects_negative_and_fraction() {
    let opts = CsvOptions::default()
        .with_schema(schema(&[("n", DataType::UInt64)]))
        .with_bad_records(BadRecordPolicy::DeadLetter);
    let (batches, dead, _) = read_all("n\n-1\n1.5\n\n7\n", opts).expect("absorbed");
    let values: Vec<u64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("u64")
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(values, vec![7]);
    assert_eq!(
        dead.iter().map(|d| d.line).collect::<Vec<_>>(),
        vec![Some(2), Some(3)]
    );
}
