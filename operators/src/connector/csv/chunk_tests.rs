use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;
use crate::connector::{BadRecordPolicy, BatchReader, CsvReader, DeadLetter};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("x", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]))
}

fn opts(policy: BadRecordPolicy) -> CsvOptions {
    CsvOptions {
        has_header: false,
        line_column: true,
        raw_column: true,
        bad_records: policy,
        ..CsvOptions::default()
    }
    .with_schema(schema())
}

/// What a whole read produced: rows, dead letters, skips, and the error's text.
#[derive(Debug, PartialEq)]
struct Outcome {
    rows: Option<RecordBatch>,
    dead: Vec<DeadLetter>,
    skipped: u64,
    error: Option<String>,
}

fn by_reader(data: &[u8], first_line: u64, policy: BadRecordPolicy) -> Outcome {
    let o = CsvOptions {
        first_line,
        batch_rows: 3,
        ..opts(policy)
    };
    let reader = CsvReader::from_bytes(data.to_vec(), "f.csv", o).expect("opens");
    let schema = reader.schema();
    let (mut batches, mut dead, mut skipped, mut error) = (Vec::new(), Vec::new(), 0, None);
    for read in reader {
        match read {
            Ok(r) => {
                batches.push(r.batch);
                dead.extend(r.dead_letters);
                skipped += r.skipped;
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let rows = (!batches.is_empty()).then(|| concat_batches(&schema, &batches).expect("concat"));
    Outcome {
        rows,
        dead,
        skipped,
        error,
    }
}

fn by_chunk(data: &[u8], first_line: u64, policy: BadRecordPolicy) -> Outcome {
    let mut parser = ChunkParser::new(opts(policy)).expect("a parser");
    let file: Arc<str> = "f.csv".into();
    // Twice: the second run reuses the parser's sized builders.
    let _ = parser.parse(data, &file, first_line, 2).expect("parses");
    let got = parser.parse(data, &file, first_line, 2).expect("parses");
    let (rows, dead, skipped) = match got.read {
        Some(r) => (Some(r.batch), r.dead_letters, r.skipped),
        None => (None, Vec::new(), 0),
    };
    Outcome {
        rows,
        dead,
        skipped,
        error: got.error.map(|e| e.to_string()),
    }
}

fn same(data: &[u8], first_line: u64) {
    for policy in [
        BadRecordPolicy::DeadLetter,
        BadRecordPolicy::SkipCounted,
        BadRecordPolicy::Fail,
    ] {
        let want = by_reader(data, first_line, policy);
        let got = by_chunk(data, first_line, policy);
        // The reader yields a batch even when all its records were bad; compare rows only.
        let rows = |o: &Outcome| o.rows.as_ref().map_or(0, RecordBatch::num_rows);
        assert_eq!(rows(&got), rows(&want), "{policy:?} {data:?}");
        if rows(&want) > 0 {
            assert_eq!(got.rows, want.rows, "{policy:?} {data:?}");
        }
        assert_eq!(got.dead, want.dead, "{policy:?} {data:?}");
        assert_eq!(got.skipped, want.skipped, "{policy:?} {data:?}");
        assert_eq!(got.error, want.error, "{policy:?} {data:?}");
    }
}

#[test]
fn plain_lines_quoted_records_and_line_numbers_match_the_reader() {
    same(b"1,a,2.5,2024-03-01T00:00:00Z\n2,b,,\n", 1);
    same(
        b"1,a,2.5,2024-03-01T00:00:00Z\r\n\r\n\n2,\"b,\nc\",1,\n3,c,x,\n",
        7,
    );
    same(
        b"1,a,1,\n2,b\n3,c,1,2024-13-01T00:00:00Z\n4,\"d\"\"\",1,\n5,e,1,",
        2,
    );
    same(b"1,a\rb,1,\n2,b,1,\r3,c,1,\n", 1);
    same(b"\n\n1,\xff,1,\n2,ok,1,\n", 1);
    same(b"-1,a,1,\n1,a,1,2024-02-30T00:00:00Z\n", 1);
    same(b"", 1);
    same(b"\r\n\n", 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_chunk_parses_as_the_reader_reads_it(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "1", "42", "+7", "-3", "x", "2.5", "", ",", ",", ",", "\n", "\n", "\r\n", "\r",
                "\"", "\"\"", "a b", "2024-03-01T10:00:00Z", "2024-03-01T10:00:00.5+01:30",
                "2024-02-29T23:59:60Z", "1e3", "\u{e9}", "\u{ff}",
            ]),
            0..60,
        ),
        bad_byte in any::<bool>(),
        first_line in 1u64..5,
    ) {
        let mut data: Vec<u8> = pieces.concat().into_bytes();
        if bad_byte && !data.is_empty() {
            let at = data.len() / 2;
            data[at] = 0xff;
        }
        same(&data, first_line);
    }
}
