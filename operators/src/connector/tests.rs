//! Round trips: every writer format read back by its reader gives the rows written.

use super::*;
use arrow::array::{
    BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema, TimeUnit};
use proptest::prelude::*;

pub(crate) fn all_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("u", DataType::UInt64, false),
        Field::new("i", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("s", DataType::Utf8, true),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("d", DataType::Date32, true),
    ]))
}

type Row = (
    u64,
    Option<i64>,
    Option<f64>,
    Option<bool>,
    Option<String>,
    Option<i64>,
    Option<i32>,
);

pub(crate) fn batch_of(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        all_types_schema(),
        vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.3).collect::<BooleanArray>()),
            Arc::new(rows.iter().map(|r| r.4.clone()).collect::<StringArray>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.5)
                    .collect::<TimestampMillisecondArray>()
                    .with_timezone("UTC"),
            ),
            Arc::new(rows.iter().map(|r| r.6).collect::<Date32Array>()),
        ],
    )
    .expect("columns match the schema")
}

fn sample_rows() -> Vec<Row> {
    (0..37u64)
        .map(|k| {
            let i = k as i64;
            (
                k * 1_000_003,
                (k % 5 != 0).then_some(-i * 77),
                (k % 7 != 0).then_some(i as f64 / 3.0 - 4.0),
                (k % 3 != 0).then_some(k % 2 == 0),
                (k % 4 != 0).then(|| format!("v{k}, \"q\"\nline")),
                (k % 6 != 0).then_some(1_709_251_200_000 + i * 3_600_250),
                (k % 8 != 0).then_some(19_000 + k as i32),
            )
        })
        .collect()
}

/// Writes `batch` in `format` as parts of at most `max_rows` rows, then reads the directory back.
fn round_trip(batch: &RecordBatch, format: PartFormat, max_rows: u64) -> RecordBatch {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartWriterOptions {
        max_rows: Some(max_rows),
        ..PartWriterOptions::new(format.clone())
    };
    let mut writer = PartWriter::create(dir.path(), batch.schema(), opts).expect("empty dir");
    // write in uneven slices to cross part boundaries inside batches
    let mut offset = 0;
    for len in [1usize, 6, 13, 40].iter().cycle() {
        if offset >= batch.num_rows() {
            break;
        }
        let n = (*len).min(batch.num_rows() - offset);
        writer.write(&batch.slice(offset, n)).expect("write");
        offset += n;
    }
    let summary = writer.finish().expect("finish");
    assert_eq!(summary.rows, batch.num_rows() as u64);
    let read_format = match format {
        PartFormat::Parquet { .. } => FileFormat::Parquet(ParquetOptions::default()),
        PartFormat::Csv { delimiter, .. } => FileFormat::Csv(CsvOptions {
            delimiter,
            ..CsvOptions::default().with_schema(batch.schema())
        }),
        PartFormat::Ndjson => FileFormat::Ndjson(NdjsonOptions::new(batch.schema())),
    };
    let set = FileSet::dir(dir.path()).expect("listable");
    let listed: Vec<PathBuf> = summary.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(set.files(), listed.as_slice());
    let reader = set.read(read_format).expect("first file opens");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("valid").batch).collect();
    concat_batches(&batch.schema(), &batches).expect("same schema")
}

use std::path::PathBuf;

#[test]
fn every_format_round_trips_all_supported_types() {
    let batch = batch_of(&sample_rows());
    let formats = [
        PartFormat::parquet(ParquetCompression::None),
        PartFormat::parquet(ParquetCompression::Snappy),
        PartFormat::parquet(ParquetCompression::Zstd { level: 3 }),
        PartFormat::csv(),
        PartFormat::Csv {
            header: true,
            delimiter: b'|',
        },
        PartFormat::Ndjson,
    ];
    for format in formats {
        let back = round_trip(&batch, format.clone(), 10);
        assert_eq!(back, batch, "{format:?}");
    }
}

#[test]
fn headerless_csv_round_trips() {
    let batch = batch_of(&sample_rows());
    let dir = tempfile::tempdir().expect("temp dir");
    let format = PartFormat::Csv {
        header: false,
        delimiter: b',',
    };
    let mut w = PartWriter::create(dir.path(), batch.schema(), PartWriterOptions::new(format))
        .expect("empty dir");
    w.write(&batch).expect("write");
    let summary = w.finish().expect("finish");
    let opts = CsvOptions {
        has_header: false,
        ..CsvOptions::default().with_schema(batch.schema())
    };
    let reader = CsvReader::from_path(&summary.files[0].path, opts).expect("opens");
    let batches: Vec<_> = reader.map(|b| b.expect("valid").batch).collect();
    assert_eq!(
        concat_batches(&batch.schema(), &batches).expect("same"),
        batch
    );
}

fn row_strategy() -> impl Strategy<Value = Row> {
    (
        any::<u64>(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        proptest::option::of(any::<bool>()),
        // non-empty: an empty CSV field reads back as null
        proptest::option::of("[a-z ,;\"'\r\n\\\\é{}:]{1,12}"),
        proptest::option::of(-10_000_000_000_000i64..10_000_000_000_000),
        proptest::option::of(-700_000i32..2_000_000),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn text_formats_round_trip_arbitrary_rows(rows in proptest::collection::vec(row_strategy(), 1..30)) {
        let batch = batch_of(&rows);
        for format in [PartFormat::csv(), PartFormat::Ndjson] {
            let back = round_trip(&batch, format, 7);
            prop_assert_eq!(&back, &batch);
        }
    }
}
