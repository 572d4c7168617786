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

/// Pieces of NDJSON lines: good and bad objects, blank lines, both line ends, a byte order
/// mark, an over-long line.
const LINES: &[&str] = &[
    "{\"id\":1,\"name\":\"a\"}",
    "{\"id\":2,\"ok\":true}",
    "{\"id\":\"x\"}",
    "[1]",
    "{\"id\":3,\"name\":\"a long name that passes the limit\"}",
    "",
    "  ",
    "\u{feff}{\"id\":4}",
];

/// What a read gave, batch by batch: each row rendered, the dead letters, the skips, the
/// position after every batch.
#[derive(Debug, Default)]
struct Read {
    rows: Vec<String>,
    dead: Vec<DeadLetter>,
    skipped: u64,
    error: Option<String>,
    marks: Vec<(FilePosition, usize, usize, u64)>,
}

fn read_from(path: &Path, o: &NdjsonOptions, at: FilePosition) -> Read {
    let mut reader = NdjsonReader::from_path_at(path, o.clone(), at).expect("opens");
    assert_eq!(reader.position(), at);
    let mut read = Read::default();
    while let Some(item) = reader.next() {
        match item {
            Ok(b) => {
                for r in 0..b.batch.num_rows() {
                    let cells: Vec<String> = (0..b.batch.num_columns())
                        .map(|c| {
                            let col = b.batch.column(c);
                            match col.as_primitive_opt::<TimestampMillisecondType>() {
                                _ if col.is_null(r) => "null".to_owned(),
                                Some(ts) => ts.value(r).to_string(),
                                None => arrow::util::display::array_value_to_string(col, r)
                                    .expect("displayable"),
                            }
                        })
                        .collect();
                    read.rows.push(cells.join("|"));
                }
                read.dead.extend(b.dead_letters);
                read.skipped += b.skipped;
            }
            Err(e) => {
                read.error = Some(e.to_string());
                return read;
            }
        }
        let p = reader.position();
        read.marks
            .push((p, read.rows.len(), read.dead.len(), read.skipped));
    }
    // The end: everything read.
    let p = reader.position();
    read.marks
        .push((p, read.rows.len(), read.dead.len(), read.skipped));
    read
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// For every position reported after a batch, the rows (with `_line` and `_raw`), dead
    /// letters, skips and error before it, followed by those of a reader opened there, are
    /// those of one uninterrupted read.
    #[test]
    fn a_reader_opened_at_any_reported_position_completes_the_read(
        lines in proptest::collection::vec(proptest::sample::select(LINES), 0..16),
        ends in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r\n"]), 16),
        final_end in proptest::bool::ANY,
        batch_rows in 1usize..4,
        policy in proptest::sample::select(vec![
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::SkipCounted,
            BadRecordPolicy::Fail,
        ]),
    ) {
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            text.push_str(line);
            if i + 1 < lines.len() || final_end {
                text.push_str(ends[i]);
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.ndjson");
        std::fs::write(&path, &text).expect("writable");
        let o = NdjsonOptions {
            batch_rows,
            max_line_bytes: 40,
            ..opts(policy)
        };
        let whole = read_from(&path, &o, FilePosition::START);
        for &(at, rows, dead, skipped) in &whole.marks {
            let rest = read_from(&path, &o, at);
            proptest::prop_assert_eq!(
                [&whole.rows[..rows], &rest.rows].concat(), whole.rows.clone(), "at {:?}", at
            );
            proptest::prop_assert_eq!([&whole.dead[..dead], &rest.dead].concat(), whole.dead.clone());
            proptest::prop_assert_eq!(skipped + rest.skipped, whole.skipped);
            proptest::prop_assert_eq!(&rest.error, &whole.error);
        }
        if let Some(&(end, ..)) = whole.marks.last() {
            if whole.error.is_none() {
                proptest::prop_assert_eq!(end.offset, text.len() as u64);
            }
        }
    }
}

#[test]
fn a_batch_cut_short_by_a_failing_line_ends_before_it() {
    let text = "{\"id\":1}\n{\"id\":2}\nnot json\n{\"id\":3}\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.ndjson");
    std::fs::write(&path, text).expect("writable");
    let mut reader = NdjsonReader::from_path(&path, opts(BadRecordPolicy::Fail)).expect("opens");
    let first = reader
        .next()
        .expect("a batch")
        .expect("the rows before the bad line");
    assert_eq!(first.batch.num_rows(), 2);
    assert_eq!(
        reader.position(),
        FilePosition {
            offset: 18,
            line: 3
        }
    );
    let mut again =
        NdjsonReader::from_path_at(&path, opts(BadRecordPolicy::Fail), reader.position())
            .expect("opens");
    let err = again
        .next()
        .expect("an item")
        .expect_err("the bad line again");
    assert!(err.to_string().contains(":3"), "{err}");
}
