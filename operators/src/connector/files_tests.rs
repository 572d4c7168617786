use super::*;
use crate::connector::BadRecordPolicy;
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, false)]))
}

fn csv(rows: std::ops::Range<u64>) -> String {
    let mut s = String::from("v\n");
    for v in rows {
        s.push_str(&format!("{v}\n"));
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("temp dir is writable");
}

fn opts() -> CsvOptions {
    CsvOptions::default()
        .with_schema(schema())
        .with_batch_rows(4)
}

#[test]
fn directory_is_read_in_name_order_with_file_tags() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "b.csv", &csv(5..8));
    write(dir.path(), "a.csv", &csv(0..5));
    write(dir.path(), ".hidden.csv", &csv(100..101));
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let set = FileSet::dir(dir.path()).expect("listable");
    let names: Vec<_> = set
        .files()
        .iter()
        .map(|p| {
            p.file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, vec!["a.csv", "b.csv"]);
    let reader = set.read(FileFormat::Csv(opts())).expect("opens a.csv");
    let mut seen = Vec::new();
    for b in reader {
        let b = b.expect("valid");
        let file = Path::new(&*b.file)
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        seen.push((file, b.batch.num_rows()));
    }
    assert_eq!(
        seen,
        vec![
            ("a.csv".into(), 4),
            ("a.csv".into(), 1),
            ("b.csv".into(), 3)
        ]
    );
}

#[test]
fn glob_matches_only_the_pattern() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "x1.csv", &csv(0..2));
    write(dir.path(), "x2.csv", &csv(2..3));
    write(dir.path(), "notes.txt", "hello");
    let pattern = format!("{}/*.csv", dir.path().display());
    let set = FileSet::glob(&pattern).expect("valid pattern");
    assert_eq!(set.files().len(), 2);
    let mut reader = set.read(FileFormat::Csv(opts())).expect("opens");
    let rows: usize = reader
        .by_ref()
        .map(|b| b.expect("valid").batch.num_rows())
        .sum();
    assert_eq!(rows, 3);
    let total = (csv(0..2).len() + csv(2..3).len()) as u64;
    assert_eq!(reader.bytes_read(), total);
    assert!(matches!(
        FileSet::glob("[unclosed"),
        Err(ReadError::Pattern { .. })
    ));
}

#[test]
fn next_file_opens_only_after_the_previous_is_exhausted() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.csv", &csv(0..3));
    let missing = dir.path().join("missing.csv");
    let set = FileSet::from_paths("list", vec![dir.path().join("a.csv"), missing]);
    let mut reader = set
        .read(FileFormat::Csv(opts()))
        .expect("first file exists");
    assert_eq!(
        reader
            .next()
            .expect("batch")
            .expect("valid")
            .batch
            .num_rows(),
        3
    );
    let err = reader
        .next()
        .expect("then the open error")
        .expect_err("missing");
    assert!(matches!(err, ReadError::Io { .. }), "{err}");
    assert!(reader.next().is_none());
}

#[test]
fn schema_mismatch_between_files_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.csv", "v\n1\n");
    write(dir.path(), "b.csv", "v\nx\n");
    // inferred: a.csv is Int64, b.csv is Utf8
    let format = FileFormat::Csv(CsvOptions::default());
    let mut reader = FileSet::dir(dir.path())
        .expect("listable")
        .read(format)
        .expect("opens");
    reader.next().expect("a.csv").expect("valid");
    let err = reader.next().expect("b.csv").expect_err("different type");
    assert!(matches!(err, ReadError::SchemaMismatch { .. }), "{err}");
}

#[test]
fn empty_set_needs_a_declared_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let set = FileSet::dir(dir.path()).expect("listable");
    let mut reader = set
        .clone()
        .read(FileFormat::Csv(opts()))
        .expect("schema declared");
    assert!(reader.next().is_none());
    assert_eq!(reader.schema(), schema());
    let err = set
        .read(FileFormat::Csv(CsvOptions::default()))
        .expect_err("nothing to infer from");
    assert!(matches!(err, ReadError::NoFiles { .. }));
}

#[test]
fn dead_letters_name_their_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.csv", "v\n1\nbad\n");
    write(dir.path(), "b.csv", "v\noops\n2\n");
    let format = FileFormat::Csv(opts().with_bad_records(BadRecordPolicy::DeadLetter));
    let reader = FileSet::dir(dir.path())
        .expect("listable")
        .read(format)
        .expect("opens");
    let dead: Vec<(String, u64)> = reader
        .flat_map(|b| b.expect("absorbed").dead_letters)
        .map(|d| {
            let file = d.file.expect("file set readers name files");
            let name = Path::new(&file)
                .file_name()
                .expect("file")
                .to_string_lossy()
                .into_owned();
            (name, d.line.unwrap_or_default())
        })
        .collect();
    assert_eq!(dead, vec![("a.csv".into(), 3), ("b.csv".into(), 2)]);
}

#[test]
fn parquet_reads_one_row_group_at_a_time_with_projection() {
    use crate::connector::{ParquetCompression, PartFormat, PartWriter, PartWriterOptions};
    use arrow::array::{StringArray, UInt64Array};
    use arrow::record_batch::RecordBatch;
    let wide = Arc::new(Schema::new(vec![
        Field::new("a", DataType::UInt64, false),
        Field::new("b", DataType::Utf8, false),
        Field::new("c", DataType::UInt64, false),
    ]));
    let n = 20_000u64;
    let batch = RecordBatch::try_new(
        wide.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("s{i}")),
            )),
            Arc::new(UInt64Array::from_iter_values((0..n).map(|i| i * 2))),
        ],
    )
    .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let format = PartFormat::Parquet {
        compression: ParquetCompression::None,
        row_group_rows: 2_000,
    };
    let mut w = PartWriter::create(dir.path(), wide, PartWriterOptions::new(format)).expect("dir");
    w.write(&batch).expect("write");
    let file = w.finish().expect("finish").files.remove(0);
    let opts = ParquetOptions {
        batch_rows: 500,
        columns: Some(vec!["c".into(), "a".into()]),
    };
    let mut reader = ParquetReader::open(&file.path, opts).expect("opens");
    let names: Vec<_> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["c", "a"]);
    let first = reader.next().expect("batch").expect("valid").batch;
    assert_eq!(first.num_rows(), 500);
    let c = first
        .column(0)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .expect("u64");
    assert_eq!(c.value(499), 998);
    // footer + one row group of two of three columns: far less than the file
    let after_first = reader.bytes_read();
    assert!(
        after_first < file.bytes / 5,
        "{after_first} of {}",
        file.bytes
    );
    let rest: usize = reader
        .by_ref()
        .map(|b| b.expect("valid").batch.num_rows())
        .sum();
    assert_eq!(rest, 20_000 - 500);
    assert!(
        reader.bytes_read() < file.bytes,
        "column b was never fetched"
    );
    let bad = ParquetOptions {
        columns: Some(vec!["zz".into()]),
        ..ParquetOptions::default()
    };
    assert!(matches!(
        ParquetReader::open(&file.path, bad),
        Err(ReadError::UnknownColumn { .. })
    ));
}

#[cfg(unix)]
#[test]
fn linked_files_are_read_and_broken_links_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.csv", &csv(0..3));
    write(elsewhere.path(), "b.csv", &csv(3..5));
    std::os::unix::fs::symlink(elsewhere.path().join("b.csv"), dir.path().join("b.csv"))
        .expect("symlink");
    let set = FileSet::dir(dir.path()).expect("listable");
    assert_eq!(
        set.files(),
        [dir.path().join("a.csv"), dir.path().join("b.csv")]
    );
    let rows: usize = set
        .clone()
        .read(FileFormat::Csv(opts()))
        .expect("opens")
        .map(|b| b.expect("readable").batch.num_rows())
        .sum();
    assert_eq!(rows, 5);

    let pattern = format!("{}/*.csv", dir.path().display());
    assert_eq!(
        FileSet::glob(&pattern).expect("matches").files(),
        set.files()
    );

    let broken = dir.path().join("c.csv");
    std::os::unix::fs::symlink(elsewhere.path().join("gone.csv"), &broken).expect("symlink");
    let err = FileSet::dir(dir.path()).expect_err("a dangling link");
    assert!(
        err.to_string().contains(&*broken.to_string_lossy()),
        "{err}"
    );
    let err = FileSet::glob(&pattern).expect_err("a dangling link");
    assert!(
        err.to_string().contains(&*broken.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn extension_filter_and_underscore_names_keep_other_files_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "a.csv", &csv(0..3));
    write(dir.path(), "b.CSV", &csv(3..4));
    write(dir.path(), "readme.txt", "not data\n");
    write(dir.path(), "_SUCCESS", "{}\n");
    let names = |set: &FileSet| -> Vec<String> {
        set.files()
            .iter()
            .map(|p| p.file_name().expect("named").to_string_lossy().into_owned())
            .collect()
    };
    let csv_only = FileSet::dir_with_extension(dir.path(), "csv").expect("listable");
    assert_eq!(names(&csv_only), ["a.csv", "b.CSV"]);
    let all = FileSet::dir(dir.path()).expect("listable");
    assert_eq!(names(&all), ["a.csv", "b.CSV", "readme.txt"]);
}

/// Every `v` a reader returns, and its position after each batch.
fn values_and_positions(mut reader: FileSetReader) -> (Vec<u64>, Vec<(FileSetPosition, usize)>) {
    use arrow::array::{AsArray, UInt64Array};
    use arrow::datatypes::UInt64Type;
    let mut values = Vec::new();
    let mut marks = Vec::new();
    while let Some(read) = reader.next() {
        let batch = read.expect("valid").batch;
        let v: &UInt64Array = batch.column(0).as_primitive::<UInt64Type>();
        values.extend(v.values().iter().copied());
        marks.push((reader.position(), values.len()));
    }
    (values, marks)
}

/// A set of Parquet files of `v`, with row groups of 7 rows.
fn parquet_set(dir: &Path, files: &[std::ops::Range<u64>]) -> FileSet {
    use crate::connector::{ParquetCompression, PartFormat, PartWriter, PartWriterOptions};
    use arrow::array::UInt64Array;
    use arrow::record_batch::RecordBatch;
    let format = PartFormat::Parquet {
        compression: ParquetCompression::None,
        row_group_rows: 7,
    };
    let mut paths = Vec::new();
    for (i, range) in files.iter().enumerate() {
        let sub = dir.join(format!("f{i}"));
        let mut w = PartWriter::create(&sub, schema(), PartWriterOptions::new(format.clone()))
            .expect("dir");
        let batch = RecordBatch::try_new(
            schema(),
            vec![Arc::new(UInt64Array::from_iter_values(range.clone()))],
        )
        .expect("valid");
        w.write(&batch).expect("write");
        paths.push(w.finish().expect("finish").files.remove(0).path);
    }
    FileSet::from_paths("parquet", paths)
}

#[test]
fn a_parquet_set_resumed_at_each_position_reads_the_rest_by_row_group_and_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let set = parquet_set(dir.path(), &[0..30, 30..37, 37..40]);
    let format = FileFormat::Parquet(ParquetOptions {
        batch_rows: 4,
        columns: None,
    });
    let (whole, marks) = values_and_positions(set.clone().read(format.clone()).expect("opens"));
    assert_eq!(whole, (0..40).collect::<Vec<_>>());
    // After the fourth batch of the first file: 16 rows = two groups of 7, and 2 rows.
    assert_eq!(
        marks[3].0,
        FileSetPosition {
            file: 0,
            at: InFile::Parquet(ParquetPosition {
                row_group: 2,
                row: 2
            })
        }
    );
    for (position, seen) in &marks {
        let reader =
            FileSetReader::new_at(set.clone(), format.clone(), *position).expect("reopens");
        let (rest, _) = values_and_positions(reader);
        assert_eq!(rest, whole[*seen..].to_vec(), "resumed at {position:?}");
    }
    let end = marks.last().expect("batches").0;
    assert_eq!(
        end.file, 2,
        "the last batch leaves the reader in the last file"
    );
    let mut reader = FileSetReader::new_at(set.clone(), format.clone(), end).expect("reopens");
    assert!(reader.next().is_none());
    assert_eq!(
        reader.position().file,
        3,
        "past the last file once it is done"
    );

    let wrong = FileSetPosition {
        file: 0,
        at: InFile::Text(FilePosition::START),
    };
    assert!(matches!(
        FileSetReader::new_at(set, format, wrong),
        Err(ReadError::InvalidOptions(_))
    ));
}

#[test]
fn an_ndjson_set_resumed_at_each_position_reads_the_rest_with_its_line_numbers() {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "a.ndjson",
        "{\"v\":0}\n\n{\"v\":1}\n{\"v\":2}\n",
    );
    write(dir.path(), "b.ndjson", "{\"v\":3}\n{\"v\":4}");
    let set = FileSet::dir(dir.path()).expect("listable");
    let opts = NdjsonOptions {
        batch_rows: 2,
        line_column: true,
        ..NdjsonOptions::new(schema())
    };
    let format = FileFormat::Ndjson(opts);
    let lines = |reader: FileSetReader| -> Vec<(u64, u64)> {
        reader
            .flat_map(|r| {
                let b = r.expect("valid").batch;
                let v = b.column(0).as_primitive::<UInt64Type>().clone();
                let l = b.column(1).as_primitive::<UInt64Type>().clone();
                (0..b.num_rows()).map(move |i| (v.value(i), l.value(i)))
            })
            .collect()
    };
    let whole = lines(set.clone().read(format.clone()).expect("opens"));
    assert_eq!(whole, [(0, 1), (1, 3), (2, 4), (3, 1), (4, 2)]);
    let (_, marks) = values_and_positions(set.clone().read(format.clone()).expect("opens"));
    assert_eq!(marks.len(), 3);
    for (position, seen) in &marks {
        let reader =
            FileSetReader::new_at(set.clone(), format.clone(), *position).expect("reopens");
        assert_eq!(
            lines(reader),
            whole[*seen..].to_vec(),
            "resumed at {position:?}"
        );
    }
}
