use super::*;
use crate::connector::{CsvOptions, CsvReader, FileSet, ParquetOptions, ParquetReader};
use arrow::array::{StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
    ]))
}

pub(super) fn batch(from: u64, to: u64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(UInt64Array::from_iter_values(from..to)),
            Arc::new(StringArray::from_iter_values(
                (from..to).map(|i| format!("name-{i:04}")),
            )),
        ],
    )
    .expect("matching columns")
}

/// Names in `dir` that a reader would take for data (not hidden).
fn visible(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn all_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn rolls_by_rows_exactly_in_every_format() {
    for format in [
        PartFormat::csv(),
        PartFormat::Ndjson,
        PartFormat::parquet(ParquetCompression::Snappy),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = PartWriterOptions {
            max_rows: Some(10),
            ..PartWriterOptions::new(format.clone())
        };
        let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
        w.write(&batch(0, 7)).expect("write");
        w.write(&batch(7, 7)).expect("empty batch is fine");
        w.write(&batch(7, 25)).expect("write");
        let summary = w.finish().expect("finish");
        let ext = format.extension();
        let rows: Vec<u64> = summary.files.iter().map(|f| f.rows).collect();
        assert_eq!(rows, vec![10, 10, 5], "{format:?}");
        assert_eq!(summary.rows, 25);
        assert_eq!(
            visible(dir.path()),
            (0..3)
                .map(|i| format!("part-{i:05}.{ext}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(all_names(dir.path()), visible(dir.path()), "no leftovers");
        let on_disk: u64 = summary
            .files
            .iter()
            .map(|f| std::fs::metadata(&f.path).expect("exists").len())
            .sum();
        assert_eq!(summary.bytes, on_disk);
    }
}

#[test]
fn csv_rolls_by_bytes_within_one_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartWriterOptions {
        max_bytes: Some(200),
        ..PartWriterOptions::new(PartFormat::csv())
    };
    let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
    w.write(&batch(0, 100)).expect("write");
    let summary = w.finish().expect("finish");
    // rows are "N,name-NNNN\n": 12 bytes for one digit, 13 for two; header "id,name\n" is 8
    let (last, full) = summary.files.split_last().expect("parts");
    for part in full {
        assert!(part.bytes >= 200, "{part:?}");
        assert!(part.bytes < 200 + 13, "over by less than a row: {part:?}");
    }
    assert!(last.bytes <= 200 + 13);
    assert_eq!(summary.rows, 100);
    assert!(summary.files.len() >= 6);
    // read back in order
    let mut ids = Vec::new();
    for f in &summary.files {
        let opts = CsvOptions::default().with_schema(schema());
        for b in CsvReader::from_path(&f.path, opts).expect("opens") {
            let b = b.expect("valid");
            let col = b
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("u64");
            ids.extend(col.values().iter().copied());
        }
    }
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
}

#[test]
fn parquet_rolls_by_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartWriterOptions {
        max_bytes: Some(1500),
        ..PartWriterOptions::new(PartFormat::parquet(ParquetCompression::None))
    };
    let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
    for start in (0..400).step_by(20) {
        w.write(&batch(start, start + 20)).expect("write");
    }
    let summary = w.finish().expect("finish");
    assert!(summary.files.len() > 1, "{summary:?}");
    let mut total = 0;
    for f in &summary.files {
        let reader = ParquetReader::open(&f.path, ParquetOptions::default()).expect("complete");
        let rows: u64 = reader
            .map(|b| b.expect("valid").batch.num_rows() as u64)
            .sum();
        assert_eq!(rows, f.rows);
        total += rows;
    }
    assert_eq!(total, 400);
}

#[test]
fn dropping_mid_part_leaves_only_complete_parts() {
    for format in [
        PartFormat::csv(),
        PartFormat::parquet(ParquetCompression::Zstd { level: 1 }),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let ext = format.extension();
        let opts = PartWriterOptions {
            max_rows: Some(10),
            ..PartWriterOptions::new(format)
        };
        let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
        w.write(&batch(0, 15)).expect("write");
        // part 0 is complete, part 1 is in progress under a hidden name
        assert_eq!(visible(dir.path()), vec![format!("part-00000.{ext}")]);
        assert_eq!(
            all_names(dir.path()),
            vec![
                format!(".part-00001.{ext}.inprogress"),
                format!("part-00000.{ext}")
            ]
        );
        assert_eq!(FileSet::dir(dir.path()).expect("listable").files().len(), 1);
        drop(w);
        assert_eq!(all_names(dir.path()), vec![format!("part-00000.{ext}")]);
    }
}

#[test]
fn refuses_a_directory_with_parts_and_mismatched_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = PartWriter::create(
        dir.path(),
        schema(),
        PartWriterOptions::new(PartFormat::Ndjson),
    )
    .expect("empty dir");
    w.write(&batch(0, 3)).expect("write");
    let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
    let bad = RecordBatch::try_new(other, vec![Arc::new(StringArray::from(vec!["a"]))])
        .expect("valid batch");
    assert!(matches!(
        w.write(&bad),
        Err(WriteError::SchemaMismatch { .. })
    ));
    w.finish().expect("mismatch does not poison");
    let again = PartWriter::create(
        dir.path(),
        schema(),
        PartWriterOptions::new(PartFormat::Ndjson),
    );
    assert!(matches!(again, Err(WriteError::PartsExist { .. })));
    // another format may share the directory
    PartWriter::create(
        dir.path(),
        schema(),
        PartWriterOptions::new(PartFormat::csv()),
    )
    .expect("no csv parts yet");
}

#[test]
fn no_rows_no_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let w = PartWriter::create(
        dir.path(),
        schema(),
        PartWriterOptions::new(PartFormat::csv()),
    )
    .expect("empty dir");
    assert_eq!(w.finish().expect("finish"), WriteSummary::default());
    assert!(all_names(dir.path()).is_empty());
}

#[test]
fn ndjson_dead_letters_match_serde() {
    use crate::connector::{dead_letter_schema, dead_letters_to_batch, DeadLetter};
    let letters = vec![
        DeadLetter {
            file: Some("in.csv".into()),
            line: Some(4),
            reason: "expected 7 fields, found 6".into(),
            raw: "1,\"a,b\",x".into(),
        },
        DeadLetter {
            file: None,
            line: Some(9),
            reason: "column `x`: expected number, found \"é\"".into(),
            raw: "é\ttab".into(),
        },
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = PartWriter::create(
        dir.path(),
        dead_letter_schema(),
        PartWriterOptions::new(PartFormat::Ndjson),
    )
    .expect("empty dir");
    w.write(&dead_letters_to_batch(&letters).expect("batch"))
        .expect("write");
    let summary = w.finish().expect("finish");
    let text = std::fs::read_to_string(&summary.files[0].path).expect("readable");
    let expected: String = letters
        .iter()
        .map(|d| serde_json::to_string(d).expect("serialisable") + "\n")
        .collect();
    assert_eq!(text, expected);
}

/// The `id`s in the visible parts of `dir`, read back in name order.
fn ids_on_disk(dir: &Path, format: &PartFormat) -> Vec<u64> {
    let format = match format {
        PartFormat::Csv { .. } => {
            crate::connector::FileFormat::Csv(CsvOptions::default().with_schema(schema()))
        }
        PartFormat::Ndjson => {
            crate::connector::FileFormat::Ndjson(crate::connector::NdjsonOptions::new(schema()))
        }
        PartFormat::Parquet { .. } => {
            crate::connector::FileFormat::Parquet(ParquetOptions::default())
        }
    };
    let set = FileSet::dir(dir).expect("listable");
    if set.files().is_empty() {
        return Vec::new();
    }
    let mut ids = Vec::new();
    for b in set.read(format).expect("opens") {
        let b = b.expect("a complete part");
        let col = b.batch.column(0).as_any().downcast_ref::<UInt64Array>();
        ids.extend(col.expect("u64 ids").values().iter().copied());
    }
    ids
}

#[test]
fn sync_completes_the_open_part_so_every_row_written_is_in_a_visible_part() {
    for format in [
        PartFormat::csv(),
        PartFormat::Ndjson,
        PartFormat::parquet(ParquetCompression::Snappy),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let ext = format.extension();
        let opts = PartWriterOptions {
            max_rows: Some(10),
            ..PartWriterOptions::new(format.clone())
        };
        let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
        w.write(&batch(0, 13)).expect("write");
        w.sync().expect("sync");
        // The full part rolled; the open one was completed by the sync.
        let parts: Vec<String> = (0..2).map(|i| format!("part-{i:05}.{ext}")).collect();
        assert_eq!(all_names(dir.path()), parts, "{format:?}: nothing hidden");
        assert_eq!(
            ids_on_disk(dir.path(), &format),
            (0..13).collect::<Vec<_>>()
        );
        // Nothing new: no part.
        w.sync().expect("sync");
        assert_eq!(all_names(dir.path()), parts, "{format:?}");
        // The next row opens a new part.
        w.write(&batch(13, 15)).expect("write");
        assert_eq!(
            all_names(dir.path()).first().map(String::as_str),
            Some(format!(".part-00002.{ext}.inprogress").as_str()),
            "{format:?}"
        );
        w.sync().expect("sync");
        assert_eq!(
            ids_on_disk(dir.path(), &format),
            (0..15).collect::<Vec<_>>()
        );
        let summary = w.finish().expect("finish");
        let rows: Vec<u64> = summary.files.iter().map(|f| f.rows).collect();
        assert_eq!(rows, vec![10, 3, 2], "{format:?}");
        assert_eq!(all_names(dir.path()), visible(dir.path()), "no leftovers");
    }
}

#[test]
fn sync_syncs_the_directory_after_a_rolled_part_even_with_no_part_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartWriterOptions {
        max_rows: Some(5),
        ..PartWriterOptions::new(PartFormat::Ndjson)
    };
    let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
    w.write(&batch(0, 10)).expect("write");
    assert!(w.current.is_none(), "both parts rolled");
    assert!(w.unsynced_rename, "their renames are not yet synced");
    w.sync().expect("sync");
    assert!(!w.unsynced_rename);
    assert_eq!(visible(dir.path()).len(), 2);
}

#[test]
fn sync_refuses_parts_committed_on_finish_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartWriterOptions {
        commit: PartCommit::OnFinish,
        ..PartWriterOptions::new(PartFormat::Ndjson)
    };
    let mut w = PartWriter::create(dir.path(), schema(), opts).expect("empty dir");
    w.write(&batch(0, 3)).expect("write");
    let err = w.sync().expect_err("parts stay hidden until finish");
    assert!(matches!(err, WriteError::DurableOnlyOnFinish), "{err}");
    assert!(err.to_string().contains("PartCommit::EachPart"), "{err}");
    assert!(visible(dir.path()).is_empty());
    w.write(&batch(3, 5)).expect("still usable");
    assert_eq!(w.finish().expect("finish").rows, 5);
    assert_eq!(
        ids_on_disk(dir.path(), &PartFormat::Ndjson),
        vec![0, 1, 2, 3, 4]
    );
}
