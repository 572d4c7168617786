//! Well-formed but hostile CSV (quoted delimiters, quotes, CR, LF and CRLF inside and between
//! records, blank lines, trailing spaces, non-ASCII) read by `CsvReader` and by the `csv` crate
//! through arrow's CSV reader, which must agree exactly.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir_operators::connector::{BadRecordPolicy, CsvOptions, CsvReader};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        ["a", "b", "c"]
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..3)
                    .map(|c| {
                        let col = b.column(c).as_string::<i32>();
                        if col.is_valid(r) {
                            col.value(r).to_owned()
                        } else {
                            String::new()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

fn ours(input: &[u8]) -> Vec<Vec<String>> {
    let reader = CsvReader::new(
        input,
        "h.csv",
        CsvOptions {
            schema: Some(schema()),
            bad_records: BadRecordPolicy::Fail,
            ..CsvOptions::default()
        },
    )
    .expect("opens");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("well-formed").batch).collect();
    rows_of(&batches)
}

fn reference(input: &[u8]) -> Vec<Vec<String>> {
    let reader = arrow::csv::ReaderBuilder::new(schema())
        .with_header(true)
        .build(input)
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("parses")).collect();
    rows_of(&batches)
}

/// A field drawn from `x`: plain or quoted, from a hostile alphabet.
fn field(x: &mut u64) -> String {
    const PLAIN: [&str; 6] = ["a", "é", " ", "1", "x y", "😀"];
    const QUOTED: [&str; 9] = ["a", ",", "\"\"", "\n", "\r", "\r\n", " ", "é", "'"];
    let mut next = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let len = next() % 4;
    if next() % 2 == 0 {
        (0..len).map(|_| PLAIN[(next() % 6) as usize]).collect()
    } else {
        let body: String = (0..len).map(|_| QUOTED[(next() % 9) as usize]).collect();
        format!("\"{body}\"")
    }
}

#[test]
fn well_formed_hostile_csv_reads_as_the_csv_crate_reads_it() {
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    for case in 0..300 {
        let mut text = String::from("a,b,c");
        let end = ["\n", "\r\n"][case % 2];
        let rows = 1 + case % 7;
        for _ in 0..rows {
            text.push_str(end);
            let fields: Vec<String> = (0..3).map(|_| field(&mut x)).collect();
            // A record of three empty fields is a blank line to both: skip those.
            if fields.iter().all(String::is_empty) {
                text.push_str("\"\",,");
            } else {
                text.push_str(&fields.join(","));
            }
        }
        if case % 3 == 0 {
            text.push_str(end);
        }
        let got = ours(text.as_bytes());
        let want = reference(text.as_bytes());
        assert_eq!(got, want, "case {case}: {text:?}");
        assert_eq!(got.len(), rows, "case {case}: {text:?}");
    }
}
