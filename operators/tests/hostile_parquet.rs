//! Hostile Parquet inputs through the public reader API: every failure is an error naming the
//! file, never a panic, and every row that is there is read exactly once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use weir_operators::connector::{FileFormat, FileSet, ParquetOptions, ParquetReader, ReadError};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let names: Vec<Option<String>> = ids
        .clone()
        .map(|i| (i % 3 != 0).then(|| format!("n{i}")))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.collect::<Vec<_>>())) as ArrayRef,
            Arc::new(StringArray::from(names)),
        ],
    )
    .expect("matching columns")
}

/// Writes `batches` as one file, flushing a row group after each (so an empty batch makes an
/// empty row group if the writer keeps one).
fn write(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) {
    let file = File::create(path).expect("create");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(4))
        .build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
    for b in batches {
        w.write(b).expect("write");
        w.flush().expect("flush");
    }
    w.close().expect("close");
}

fn ids(
    reader: impl Iterator<Item = Result<weir_operators::connector::ReadBatch, ReadError>>,
) -> Vec<i64> {
    reader
        .flat_map(|b| {
            let b = b.expect("readable");
            b.batch
                .column_by_name("id")
                .expect("id")
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn open_err(path: &Path) -> String {
    match ParquetReader::open(path, ParquetOptions::default()) {
        Ok(r) => {
            // Opening may succeed if only a page is damaged; reading must then fail.
            let errs: Vec<String> = r.filter_map(Result::err).map(|e| e.to_string()).collect();
            assert_eq!(errs.len(), 1, "{errs:?}");
            errs[0].clone()
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_and_truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.parquet");
    File::create(&empty).expect("create");
    let e = open_err(&empty);
    assert!(e.starts_with(&format!("{}: ", empty.display())), "{e}");

    let good = dir.path().join("good.parquet");
    write(&good, schema(), &[batch(0..10)]);
    let bytes = std::fs::read(&good).expect("read");
    for (name, cut) in [
        ("no_footer.parquet", bytes[..bytes.len() - 8].to_vec()),
        ("half.parquet", bytes[..bytes.len() / 2].to_vec()),
        ("magic_only.parquet", b"PAR1".to_vec()),
        ("bad_magic.parquet", {
            let mut b = bytes.clone();
            let n = b.len();
            b[n - 1] = b'X';
            b
        }),
        ("bad_footer_len.parquet", {
            let mut b = bytes.clone();
            let n = b.len();
            b[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
            b
        }),
        ("garbled_footer.parquet", {
            let mut b = bytes.clone();
            let n = b.len();
            let len = u32::from_le_bytes(b[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
            for x in &mut b[n - 8 - len..n - 8] {
                *x = 0xFF;
            }
            b
        }),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, cut).expect("write");
        let e = open_err(&path);
        assert!(
            e.starts_with(&format!("{}: ", path.display())),
            "{name}: {e}"
        );
    }
}

#[test]
fn damaged_data_pages_are_errors_naming_the_file_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.parquet");
    write(&good, schema(), &[batch(0..40)]);
    let bytes = std::fs::read(&good).expect("read");
    let n = bytes.len();
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let data_end = n - 8 - footer;
    // Overwrite spans of the data pages (after the leading magic, before the footer).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut errors = 0;
    for case in 0..60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = 4 + (x as usize) % (data_end - 4);
        let len = 1 + (x >> 32) as usize % 16;
        let mut b = bytes.clone();
        for (k, byte) in b[at..(at + len).min(data_end)].iter_mut().enumerate() {
            *byte ^= 0x5A ^ (k as u8);
        }
        let path = dir.path().join(format!("damaged{case}.parquet"));
        std::fs::write(&path, &b).expect("write");
        let outcome = std::panic::catch_unwind(|| {
            ParquetReader::open(&path, ParquetOptions::default()).map(|r| r.collect::<Vec<_>>())
        });
        let outcome = outcome.unwrap_or_else(|_| panic!("case {case}: the reader panicked"));
        // Damage the format cannot see (pages carry no checksum here) may go unnoticed.
        match outcome {
            Err(e) => {
                errors += 1;
                assert!(
                    e.to_string().starts_with(&format!("{}: ", path.display())),
                    "{e}"
                )
            }
            Ok(items) => {
                for item in items {
                    if let Err(e) = item {
                        errors += 1;
                        let e = e.to_string();
                        assert!(
                            e.starts_with(&format!("{}: Parquet error: ", path.display())),
                            "{e}"
                        );
                    }
                }
            }
        }
    }
    // Most damage is seen: the seed hits page headers and encoded values.
    assert!(errors >= 20, "only {errors} of 60 damaged files failed");
}

#[test]
fn empty_files_and_empty_row_groups_yield_exactly_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let none = dir.path().join("a-none.parquet");
    write(&none, schema(), &[]);
    let r = ParquetReader::open(&none, ParquetOptions::default()).expect("opens");
    assert_eq!(r.schema_fields(), vec!["id", "name"]);
    assert_eq!(ids(r), Vec::<i64>::new());

    let gaps = dir.path().join("b-gaps.parquet");
    write(
        &gaps,
        schema(),
        &[
            batch(0..0),
            batch(0..5),
            batch(5..5),
            batch(5..9),
            batch(9..9),
        ],
    );
    let r = ParquetReader::open(
        &gaps,
        ParquetOptions {
            batch_rows: 3,
            columns: None,
        },
    )
    .expect("opens");
    assert_eq!(ids(r), (0..9).collect::<Vec<_>>());

    // A directory of both reads every row once.
    let set = FileSet::dir(dir.path()).expect("listed");
    let files: Vec<PathBuf> = set.files().to_vec();
    assert_eq!(files.len(), 2);
    let r = set
        .read(FileFormat::Parquet(ParquetOptions::default()))
        .expect("opens");
    assert_eq!(ids(r), (0..9).collect::<Vec<_>>());
}

#[test]
fn a_schema_mismatch_across_files_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.parquet"), schema(), &[batch(0..3)]);
    let other = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        other.clone(),
        vec![
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("y")])),
        ],
    )
    .expect("matching");
    let second = dir.path().join("b.parquet");
    write(&second, other, &[b]);
    let set = FileSet::dir(dir.path()).expect("listed");
    let mut r = set
        .read(FileFormat::Parquet(ParquetOptions::default()))
        .expect("opens");
    let first = r.next().expect("a batch").expect("readable");
    assert_eq!(first.batch.num_rows(), 3);
    match r.next() {
        Some(Err(ReadError::SchemaMismatch { file, .. })) => {
            assert_eq!(file, second.display().to_string())
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    assert!(r.next().is_none());
}

#[test]
fn projection_with_repeated_and_reordered_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.parquet");
    write(&path, schema(), &[batch(0..5)]);
    let opts = ParquetOptions {
        batch_rows: 2,
        columns: Some(vec!["name".into(), "id".into(), "name".into()]),
    };
    let r = ParquetReader::open(&path, opts).expect("opens");
    assert_eq!(r.schema_fields(), vec!["name", "id", "name"]);
    let batches: Vec<RecordBatch> = r.map(|b| b.expect("readable").batch).collect();
    let names: Vec<Option<String>> = batches
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            None,
            Some("n1".into()),
            Some("n2".into()),
            None,
            Some("n4".into())
        ]
    );
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
}

trait Fields {
    fn schema_fields(&self) -> Vec<String>;
}

impl Fields for ParquetReader {
    fn schema_fields(&self) -> Vec<String> {
        use weir_operators::connector::BatchReader;
        self.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

#[test]
fn a_run_over_a_damaged_file_fails_naming_it() {
    use weir_operators::columnar::{ArrowStream, ReaderSource};
    use weir_runtime::Pipeline;
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.parquet"), schema(), &[batch(0..8)]);
    let bad = dir.path().join("b.parquet");
    write(&bad, schema(), &[batch(8..16)]);
    let mut bytes = std::fs::read(&bad).expect("read");
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&bad, bytes).expect("write");
    let mut p = Pipeline::new("damaged");
    let source = ReaderSource::files(
        FileSet::dir(dir.path()).expect("listed"),
        FileFormat::Parquet(ParquetOptions::default()),
    )
    .expect("the first file opens");
    let rows = ArrowStream::source(&mut p, "read", source)
        .into_inner()
        .sink(
            "count",
            weir_operators::prelude::Count::<RecordBatch>::new(),
        );
    let err = p.run().expect_err("the second file is damaged");
    let mut chain = err.to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(" / ");
        chain.push_str(&c.to_string());
        cause = c.source();
    }
    assert!(chain.contains(&bad.display().to_string()), "{chain}");
    drop(rows);
}

#[test]
fn an_empty_projection_still_counts_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.parquet");
    write(&path, schema(), &[batch(0..10)]);
    let opts = ParquetOptions {
        batch_rows: 4,
        columns: Some(vec![]),
    };
    let r = ParquetReader::open(&path, opts).expect("opens");
    let rows: Vec<usize> = r.map(|b| b.expect("readable").batch.num_rows()).collect();
    assert_eq!(rows, vec![4, 4, 2]);
}
