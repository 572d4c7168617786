//! The ETL job end to end against the row-at-a-time reference.

use std::path::Path;

use arrow::record_batch::RecordBatch;

use super::*;
use crate::connector::{DeadLetter, ParquetOptions, ParquetReader};
use crate::etl::reference::{clean_rows, revenue_rows, run_reference, ReferenceOutput};
use crate::etl::{generate_orders_csv, MalformedKind};

fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let set = FileSet::dir(dir).expect("listable");
    assert!(!set.files().is_empty(), "no parts in {}", dir.display());
    let mut out = Vec::new();
    for f in set.files() {
        for b in ParquetReader::open(f, ParquetOptions::default()).expect("parquet") {
            out.push(b.expect("readable").batch);
        }
    }
    out
}

fn read_dead_letters(dir: &Path) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    for f in FileSet::dir(dir).expect("listable").files() {
        let text = std::fs::read_to_string(f).expect("readable");
        for line in text.lines() {
            out.push(serde_json::from_str::<DeadLetter>(line).expect("one object per line"));
        }
    }
    out.sort_by_key(|d| (d.file.clone(), d.line));
    out
}

fn small_config(input: &Path, out: &Path) -> EtlConfig {
    EtlConfig {
        parallelism: 2,
        writers: 2,
        batch_rows: 700,
        part_rows: 1500,
        workers: Some(2),
        ..EtlConfig::new(input, out)
    }
}

/// `orders_clean` (in any order) and `revenue_by_country_day` (sorted, exact) equal the
/// reference's.
fn check_outputs(reference: &ReferenceOutput, out: &Path) {
    let [clean_dir, revenue_dir, _] = output_dirs(out);
    let mut clean = clean_rows(&read_parquet_dir(&clean_dir));
    clean.sort_by_key(|c| c.order_id);
    let mut want = reference.clean.clone();
    want.sort_by_key(|c| c.order_id);
    assert_eq!(clean, want, "orders_clean");
    let revenue: Vec<_> = read_parquet_dir(&revenue_dir)
        .iter()
        .flat_map(revenue_rows)
        .collect();
    assert_eq!(revenue, reference.revenue, "revenue_by_country_day");
}

#[test]
fn job_outputs_equal_the_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("orders.csv");
    let generated = generate_orders_csv(&input, 8_000, 11).expect("writable");
    for kind in MalformedKind::ALL {
        assert!(generated.count(kind) > 0, "{kind:?} missing");
    }
    let reference = run_reference(&input).expect("readable");
    let out = dir.path().join("out");
    let (summary, report) = run(&small_config(&input, &out)).expect("runs");
    check_outputs(&reference, &out);

    // Dead letters: one per malformed row, at its line, without `file` for a single input.
    let dead = read_dead_letters(&output_dirs(&out)[2]);
    let want: Vec<DeadLetter> = reference
        .dead_letters
        .iter()
        .map(|d| DeadLetter {
            file: None,
            ..d.clone()
        })
        .collect();
    assert_eq!(dead, want);
    let lines: Vec<Option<u64>> = generated.malformed.iter().map(|m| Some(m.line)).collect();
    assert_eq!(dead.iter().map(|d| d.line).collect::<Vec<_>>(), lines);

    assert_eq!(summary.rows_read, 8_000);
    assert_eq!(summary.rows_written, reference.clean.len() as u64);
    assert_eq!(summary.rows_filtered, reference.filtered);
    assert_eq!(summary.dead_letters, generated.malformed.len() as u64);
    assert_eq!(report.dead_letters, summary.dead_letters);
    assert_eq!(summary.revenue_groups, reference.revenue.len() as u64);
    assert_eq!(
        summary.input_bytes,
        std::fs::metadata(&input).expect("exists").len()
    );
    assert!(
        summary
            .parts
            .clean
            .iter()
            .map(|s| s.files.len())
            .sum::<usize>()
            >= 4
    );

    // A second run replaces the outputs.
    let (again, _) = run(&small_config(&input, &out)).expect("reruns");
    assert_eq!(again.rows_written, summary.rows_written);
    check_outputs(&reference, &out);
}

#[test]
fn a_directory_input_names_the_file_of_each_dead_letter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("creatable");
    let mut want = Vec::new();
    let mut clean = 0;
    for (name, seed) in [("a.csv", 1), ("b.csv", 2)] {
        let path = input.join(name);
        generate_orders_csv(&path, 1_500, seed).expect("writable");
        let r = run_reference(&path).expect("readable");
        clean += r.clean.len() as u64;
        want.extend(r.dead_letters);
    }
    want.sort_by_key(|d| (d.file.clone(), d.line));
    let out = dir.path().join("out");
    let (summary, _) = run(&small_config(&input, &out)).expect("runs");
    assert_eq!(summary.rows_read, 3_000);
    assert_eq!(summary.rows_written, clean);
    assert_eq!(read_dead_letters(&output_dirs(&out)[2]), want);
    assert!(want.iter().all(|d| d.file.is_some()));
}
