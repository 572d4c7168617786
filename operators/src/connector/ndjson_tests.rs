use super::*;
use crate::connector::{DeadLetter, LINE_COLUMN, RAW_COLUMN};
use arrow::array::{AsArray, BooleanArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType, UInt64Type};
use arrow::record_batch::RecordBatch;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("ok", DataType::Boolean, true),
    ]))
}

fn opts(policy: BadRecordPolicy) -> NdjsonOptions {
    NdjsonOptions {
        line_column: true,
        raw_column: true,
        bad_records: policy,
        ..NdjsonOptions::new(schema())
    }
}

fn read_all(input: &str, o: NdjsonOptions) -> (Vec<RecordBatch>, Vec<DeadLetter>, u64) {
    let reader = NdjsonReader::new(input.as_bytes(), "t.ndjson", o).expect("valid options");
    let (mut batches, mut dead, mut skipped) = (Vec::new(), Vec::new(), 0);
    for item in reader {
        let b = item.expect("policy absorbs bad lines");
        batches.push(b.batch);
        dead.extend(b.dead_letters);
        skipped += b.skipped;
    }
    (batches, dead, skipped)
}

fn u64s(batches: &[RecordBatch], name: &str) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect("present")
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

const INPUT: &str = concat!(
    "{\"id\":1,\"name\":\"a\",\"ts\":\"2024-03-01T00:00:00Z\",\"ok\":true}\n",
    "\n",
    "{\"id\":2,\"extra\":[1,2]}\r\n",
    "{\"id\":-3}\n",
    "not json\n",
    "[1]\n",
    "{\"name\":\"no id\"}\n",
    "{\"id\":4,\"ts\":1709251200250,\"ok\":false}"
);

#[test]
fn decodes_typed_columns_with_lines_and_nulls() {
    let (batches, dead, _) = read_all(INPUT, opts(BadRecordPolicy::DeadLetter));
    assert_eq!(u64s(&batches, "id"), vec![1, 2, 4]);
    assert_eq!(u64s(&batches, LINE_COLUMN), vec![1, 3, 8]);
    let ts: Vec<Option<i64>> = batches
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_primitive::<TimestampMillisecondType>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        ts,
        vec![Some(1_709_251_200_000), None, Some(1_709_251_200_250)]
    );
    let ok: Vec<Option<bool>> = batches
        .iter()
        .flat_map(|b| {
            let a: &BooleanArray = b.column(3).as_boolean();
            a.iter().collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ok, vec![Some(true), None, Some(false)]);
    let raw: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(RAW_COLUMN)
                .expect("raw")
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(raw[1], "{\"id\":2,\"extra\":[1,2]}");
    let lines: Vec<u64> = dead.iter().filter_map(|d| d.line).collect();
    assert_eq!(lines, vec![4, 5, 6, 7]);
    assert_eq!(
        dead[0].reason,
        "column `id`: expected unsigned integer, found \"-3\""
    );
    assert!(dead[1]
        .reason
        .starts_with("invalid JSON object: expected ident"));
    assert_eq!(
        dead[2].reason,
        "invalid JSON object: expected an object, found an array"
    );
    assert_eq!(
        dead[3].reason,
        "column `id`: missing value for a non-nullable column"
    );
    assert_eq!(dead[3].raw, "{\"name\":\"no id\"}");
}

#[test]
fn skip_and_fail_policies() {
    let (batches, dead, skipped) = read_all(INPUT, opts(BadRecordPolicy::SkipCounted));
    assert_eq!(
        (u64s(&batches, "id"), dead.len(), skipped),
        (vec![1, 2, 4], 0, 4)
    );

    let mut reader =
        NdjsonReader::new(INPUT.as_bytes(), "t.ndjson", opts(BadRecordPolicy::Fail)).expect("ok");
    assert_eq!(
        reader
            .next()
            .expect("rows")
            .expect("good first")
            .batch
            .num_rows(),
        2
    );
    let err = reader.next().expect("error").expect_err("bad line 4");
    assert!(
        err.to_string()
            .starts_with("t.ndjson:4: bad record: column `id`"),
        "{err}"
    );
    assert!(reader.next().is_none());
}

#[test]
fn overlong_line_is_a_bad_record_and_reading_resumes() {
    let long = format!("{{\"id\":1,\"name\":\"{}\"}}\n", "x".repeat(5000));
    let input = format!("{long}{{\"id\":2}}\n");
    let o = NdjsonOptions {
        max_line_bytes: 100,
        ..opts(BadRecordPolicy::DeadLetter)
    };
    let (batches, dead, _) = read_all(&input, o);
    assert_eq!(u64s(&batches, "id"), vec![2]);
    assert_eq!(u64s(&batches, LINE_COLUMN), vec![2]);
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].line, dead[0].reason.as_str()),
        (Some(1), "line longer than 100 bytes")
    );
    assert_eq!(dead[0].raw.len(), 100, "raw keeps the prefix that was read");
}

#[test]
fn stalled_consumer_bounds_bytes_read() {
    let mut input = String::new();
    for i in 0..40_000u64 {
        input.push_str(&format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"));
    }
    let o = NdjsonOptions {
        batch_rows: 100,
        ..NdjsonOptions::new(schema())
    };
    let mut reader = NdjsonReader::new(input.as_bytes(), "t", o).expect("ok");
    assert_eq!(
        reader.bytes_read(),
        0,
        "nothing is read before the first pull"
    );
    reader.next().expect("batch").expect("valid");
    let first = reader.bytes_read();
    assert!(first <= 64 * 1024, "one buffer fill: {first}");
    assert!(first < input.len() as u64 / 10);
    let rows: usize = reader
        .by_ref()
        .map(|b| b.expect("valid").batch.num_rows())
        .sum();
    assert_eq!(rows, 40_000 - 100);
    assert_eq!(reader.bytes_read(), input.len() as u64);
}
