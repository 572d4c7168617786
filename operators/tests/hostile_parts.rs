//! Part writers under hostile values and limits: every row is written exactly once, in order,
//! and reads back to the same values; dead letters keep their raw text exactly.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_operators::connector::{
    dead_letter_schema, dead_letters_to_batch, BadRecordPolicy, CsvOptions, DeadLetter, FileFormat,
    FileSet, NdjsonOptions, ParquetCompression, ParquetOptions, PartFormat, PartWriter,
    PartWriterOptions,
};

const HOSTILE: [&str; 14] = [
    "plain",
    "comma,inside",
    "quote\"inside",
    "\"starts with a quote",
    "crlf\r\nline",
    "lone\rcr",
    "lf\nonly",
    "\u{feff}bom first",
    "nul\u{0}byte",
    "line\u{2028}separator",
    "non-BMP 😀",
    "  spaces  ",
    "\t",
    "ends with a newline\n",
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, false),
        Field::new("i", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("d", DataType::Date32, true),
    ]))
}

/// Rows `from..to` with extreme values cycling through each column.
fn rows(from: u64, to: u64) -> RecordBatch {
    let n = |k: u64, m: u64| (k % m) as usize;
    let ints = [i64::MIN, -1, 0, 1, i64::MAX];
    let floats = [
        0.1,
        -0.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        1e16,
        -123_456.789,
        9_007_199_254_740_993.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let times = [
        i64::MIN / 1000,
        -1,
        0,
        1_709_251_200_123_456,
        253_402_300_799_999_999,
        253_402_300_800_000_000,
        -62_167_219_200_000_001,
    ];
    let days = [-719_162, -1, 0, 19_782, 2_932_896, -1_000_000, 3_000_000];
    let ks: Vec<u64> = (from..to).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt64Array::from(
                ks.iter()
                    .map(|k| if k % 11 == 5 { u64::MAX } else { *k })
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
            Arc::new(Int64Array::from(
                ks.iter()
                    .map(|k| (k % 6 != 5).then(|| ints[n(*k, 5)]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ks.iter()
                    .map(|k| (k % 9 != 8).then(|| floats[n(*k, 11)]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ks.iter()
                    .map(|k| (k % 15 != 14).then(|| HOSTILE[n(*k, 14)]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    ks.iter()
                        .map(|k| (k % 7 != 6).then(|| times[n(*k, 7)]))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Date32Array::from(
                ks.iter()
                    .map(|k| (k % 4 != 3).then(|| days[n(*k, 7)]))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("matching columns")
}

fn formats() -> Vec<(PartFormat, FileFormat)> {
    vec![
        (
            PartFormat::csv(),
            FileFormat::Csv(CsvOptions {
                schema: Some(schema()),
                ..CsvOptions::default()
            }),
        ),
        (
            PartFormat::Ndjson,
            FileFormat::Ndjson(NdjsonOptions::new(schema())),
        ),
        (
            PartFormat::parquet(ParquetCompression::Zstd { level: 1 }),
            FileFormat::Parquet(ParquetOptions::default()),
        ),
    ]
}

#[test]
fn every_row_is_written_once_and_reads_back_equal_whatever_the_limits() {
    // Batches of uneven sizes, empty ones included.
    let cuts = [0u64, 0, 1, 1, 5, 17, 17, 18, 29, 30];
    let batches: Vec<RecordBatch> = cuts.windows(2).map(|w| rows(w[0], w[1])).collect();
    let expected = concat_batches(&schema(), &batches).expect("same schema");
    for (part_format, read_format) in formats() {
        for (max_rows, max_bytes) in [
            (None, None),
            (Some(1), None),
            (Some(3), Some(120)),
            (None, Some(1)),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut w = PartWriter::create(
                dir.path(),
                schema(),
                PartWriterOptions {
                    max_rows,
                    max_bytes,
                    ..PartWriterOptions::new(part_format.clone())
                },
            )
            .expect("empty dir");
            for b in &batches {
                w.write(b).expect("write");
            }
            let summary = w.finish().expect("finish");
            let case = format!("{part_format:?} rows {max_rows:?} bytes {max_bytes:?}");
            assert_eq!(summary.rows, 30, "{case}");
            assert_eq!(
                summary.files.iter().map(|f| f.rows).sum::<u64>(),
                30,
                "{case}"
            );
            if let Some(m) = max_rows {
                assert!(
                    summary.files.iter().all(|f| f.rows <= m && f.rows > 0),
                    "{case}"
                );
            }
            let set = FileSet::dir(dir.path()).expect("listed");
            assert_eq!(set.files().len(), summary.files.len(), "{case}");
            let read: Vec<RecordBatch> = set
                .read(read_format.clone())
                .expect("opens")
                .map(|b| {
                    let b = b.expect("reads back");
                    assert!(b.dead_letters.is_empty(), "{case}: {:?}", b.dead_letters);
                    b.batch
                })
                .collect();
            let got = concat_batches(&schema(), &read).expect("same schema");
            for c in 0..schema().fields().len() {
                assert_eq!(
                    got.column(c).as_ref(),
                    expected.column(c).as_ref(),
                    "{case}: column {}",
                    schema().field(c).name()
                );
            }
        }
    }
}

#[test]
fn dead_letters_keep_raw_text_and_reason_exactly_in_every_text_format() {
    let letters: Vec<DeadLetter> = HOSTILE
        .iter()
        .chain(&["", "\u{feff}"])
        .enumerate()
        .map(|(i, raw)| DeadLetter {
            file: (i % 2 == 0).then(|| format!("in,{i}\".csv")),
            line: (i % 3 != 0).then_some(i as u64),
            reason: format!("column `x`: expected number, found {raw:?}"),
            raw: (*raw).to_owned(),
        })
        .collect();
    let batch = dead_letters_to_batch(&letters).expect("batch");
    for format in [PartFormat::Ndjson, PartFormat::csv()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = PartWriter::create(
            dir.path(),
            dead_letter_schema(),
            PartWriterOptions::new(format.clone()),
        )
        .expect("empty dir");
        w.write(&batch).expect("write");
        let summary = w.finish().expect("finish");
        let path = &summary.files[0].path;
        let back: Vec<DeadLetter> = match format {
            PartFormat::Ndjson => std::fs::read_to_string(path)
                .expect("utf-8")
                .lines()
                .map(|l| serde_json::from_str(l).expect("one letter a line"))
                .collect(),
            _ => {
                // Reference: the `csv` crate through arrow's CSV reader.
                let file = std::fs::File::open(path).expect("open");
                // An empty field reads as null there; `raw` is never null, so it is "".
                let nullable = Arc::new(Schema::new(
                    dead_letter_schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone().with_nullable(true))
                        .collect::<Vec<_>>(),
                ));
                let reader = arrow::csv::ReaderBuilder::new(nullable)
                    .with_header(true)
                    .build(file)
                    .expect("reader");
                let mut out = Vec::new();
                for b in reader {
                    let b = b.expect("parses");
                    let file = b.column(0).as_string::<i32>();
                    let line = b.column(1).as_primitive::<arrow::datatypes::UInt64Type>();
                    let reason = b.column(2).as_string::<i32>();
                    let raw = b.column(3).as_string::<i32>();
                    for r in 0..b.num_rows() {
                        use arrow::array::Array;
                        out.push(DeadLetter {
                            file: file.is_valid(r).then(|| file.value(r).to_owned()),
                            line: line.is_valid(r).then(|| line.value(r)),
                            reason: reason.value(r).to_owned(),
                            raw: if raw.is_valid(r) {
                                raw.value(r).to_owned()
                            } else {
                                String::new()
                            },
                        });
                    }
                }
                out
            }
        };
        assert_eq!(back, letters, "{format:?}");
    }
}

#[test]
fn dead_letters_of_a_bad_csv_keep_the_raw_record() {
    // A record spanning lines keeps its quotes and its line break in `raw`.
    let input = "a,b\n1,x\n\"2\",\"multi\r\nline\"\n3,\"q\"\"uote\"\nnot-a-number,y\n";
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Utf8, false),
    ]));
    let reader = weir_operators::connector::CsvReader::new(
        input.as_bytes(),
        "in.csv",
        CsvOptions {
            schema: Some(schema),
            bad_records: BadRecordPolicy::DeadLetter,
            ..CsvOptions::default()
        },
    )
    .expect("opens");
    let mut rows = 0;
    let mut dead = Vec::new();
    for b in reader {
        let b = b.expect("dead letters absorb bad rows");
        rows += b.batch.num_rows();
        dead.extend(b.dead_letters);
    }
    assert_eq!(rows, 3);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].raw, "not-a-number,y");
    assert_eq!(dead[0].line, Some(6));
    assert_eq!(
        dead[0].reason,
        "column `a`: expected integer, found \"not-a-number\""
    );
}
