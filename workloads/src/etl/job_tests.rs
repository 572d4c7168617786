//! The ETL job end to end against the row-at-a-time reference.

use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;

use super::*;
use crate::etl::reference::{
    clean_rows, hourly_rows, revenue_by_hour, revenue_rows, run_reference, run_reference_with,
    CleanOrder, HourlyRow, ReferenceOutput,
};
use crate::etl::{generate_orders_csv, generate_orders_csv_disordered, Disorder, MalformedKind};
use weir_operators::connector::{DeadLetter, JobOutput, ParquetOptions, ParquetReader};

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

/// Rows of a clean-schema Parquet output, by order id.
fn read_clean(dir: &Path) -> Vec<CleanOrder> {
    let mut rows = clean_rows(&read_parquet_dir(dir));
    rows.sort_by_key(|c| c.order_id);
    rows
}

/// `revenue_by_country_hour`, sorted by (country, hour) as the reference's.
fn read_hourly(dir: &Path) -> Vec<HourlyRow> {
    let mut rows: Vec<HourlyRow> = read_parquet_dir(dir).iter().flat_map(hourly_rows).collect();
    rows.sort_by(|a, b| (&a.country, a.hour_ms).cmp(&(&b.country, b.hour_ms)));
    rows
}

fn by_order_id(rows: &[CleanOrder]) -> Vec<CleanOrder> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|c| c.order_id);
    rows
}

/// Every output table equals the reference's: `orders_clean` and `late_rows` (in any order),
/// `revenue_by_country_day` and `revenue_by_country_hour` (sorted, exact).
fn check_outputs(reference: &ReferenceOutput, out: &Path) {
    let [clean_dir, revenue_dir, _, hourly_dir, late_dir] = output_dirs(out);
    assert_eq!(
        read_clean(&clean_dir),
        by_order_id(&reference.clean),
        "orders_clean"
    );
    let revenue: Vec<_> = read_parquet_dir(&revenue_dir)
        .iter()
        .flat_map(revenue_rows)
        .collect();
    assert_eq!(revenue, reference.revenue, "revenue_by_country_day");
    assert_eq!(
        read_hourly(&hourly_dir),
        reference.hourly,
        "revenue_by_country_hour"
    );
    assert_eq!(
        read_clean(&late_dir),
        by_order_id(&reference.late),
        "late_rows"
    );
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
    // The generator's disorder (±10 minutes) stays within the default bound of an hour: the
    // hourly table is the plain group-by of the clean rows.
    assert!(reference.late.is_empty());
    assert_eq!(
        reference.hourly,
        revenue_by_hour(&reference.clean).expect("in range")
    );
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
    assert_eq!(summary.hourly_groups, reference.hourly.len() as u64);
    assert_eq!(summary.late_rows, 0);
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

/// The run id in each output's `_SUCCESS`.
fn published_runs(out: &Path) -> Vec<Option<String>> {
    output_dirs(out)
        .iter()
        .map(|d| JobOutput::published_run(d).expect("readable marker"))
        .collect()
}

/// Names directly under `out`, sorted.
fn listing(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A published first run on 1 500 generated orders: (temp dir, input, out, reference, run id).
fn published_first_run() -> (tempfile::TempDir, PathBuf, PathBuf, ReferenceOutput, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("orders.csv");
    generate_orders_csv(&input, 1_500, 5).expect("writable");
    let reference = run_reference(&input).expect("readable");
    let out = dir.path().join("out");
    let (summary, _) = run(&small_config(&input, &out)).expect("runs");
    assert!(summary.published && !summary.stopped);
    assert_eq!(
        published_runs(&out),
        vec![Some(summary.run_id.clone()); 5],
        "every output names the run"
    );
    (dir, input, out, reference, summary.run_id)
}

/// The first run's outputs are untouched and nothing else is left under `out`.
fn assert_first_run_intact(out: &Path, reference: &ReferenceOutput, run_id: &str) {
    check_outputs(reference, out);
    assert_eq!(published_runs(out), vec![Some(run_id.to_owned()); 5]);
    assert_eq!(
        listing(out),
        [
            ".weir-lock",
            "dead_letters",
            "late_rows",
            "orders_clean",
            "revenue_by_country_day",
            "revenue_by_country_hour"
        ]
    );
}

#[test]
fn a_missing_input_fails_before_touching_the_outputs() {
    let (dir, _, out, reference, first) = published_first_run();
    let missing = dir.path().join("typo.csv");
    let err = run(&small_config(&missing, &out)).expect_err("no such input");
    assert!(matches!(err, EtlJobError::Input { .. }), "{err}");
    assert!(err.to_string().contains("typo.csv"), "{err}");
    assert_first_run_intact(&out, &reference, &first);
}

#[test]
fn an_input_inside_an_output_is_refused_and_kept() {
    let (_dir, _, out, reference, first) = published_first_run();
    for inside in [
        out.join("orders_clean"),
        out.join("dead_letters").join("x.csv"),
    ] {
        let err = run(&small_config(&inside, &out)).expect_err("input inside an output");
        if inside.exists() {
            assert!(
                matches!(err, EtlJobError::InputInsideOutput { .. }),
                "{err}"
            );
        }
    }
    assert_first_run_intact(&out, &reference, &first);
}

#[test]
fn a_failed_run_publishes_nothing() {
    let (dir, input, out, reference, first) = published_first_run();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).expect("creatable");
    std::fs::copy(&input, bad.join("a.csv")).expect("copyable");
    std::fs::write(bad.join("b.csv"), "x,y\n1,2\n").expect("writable");
    run(&small_config(&bad, &out)).expect_err("b.csv has another header");
    assert_first_run_intact(&out, &reference, &first);
}

#[test]
fn a_stopped_run_drains_reports_and_publishes_nothing() {
    let (_dir, input, out, reference, first) = published_first_run();
    let stop = EtlStop::new();
    stop.stop_with_code(143);
    let (summary, report) = run_until(&small_config(&input, &out), &stop).expect("drains");
    assert!(summary.stopped && !summary.published);
    assert_eq!(stop.exit_code(), Some(143));
    assert!(summary.rows_read < 1_500, "stopped before the end");
    assert!(report.operators.iter().any(|o| o.name == "orders_clean"));
    assert_first_run_intact(&out, &reference, &first);
}

#[test]
fn an_input_without_rows_publishes_empty_parts_with_the_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("orders.csv");
    std::fs::write(
        &input,
        "order_id,ts,customer_id,country,amount,currency,status\n",
    )
    .expect("writable");
    let out = dir.path().join("out");
    let (summary, _) = run(&small_config(&input, &out)).expect("runs");
    assert_eq!((summary.rows_read, summary.rows_written), (0, 0));
    // A note per table; an empty `late_rows` is the usual case and goes without one.
    assert_eq!(summary.notes.len(), 3, "{:?}", summary.notes);
    let [clean_dir, revenue_dir, _, hourly_dir, late_dir] = output_dirs(&out);
    let hourly_schema = Arc::new(arrow::datatypes::Schema::new(vec![
        Field::new("country", DataType::Utf8, false),
        Field::new(
            "hour",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("orders", DataType::UInt64, false),
        Field::new("revenue_usd", DataType::Float64, false),
        Field::new("refunded_usd", DataType::Float64, false),
    ]));
    for (dir, schema) in [
        (&clean_dir, clean_schema()),
        (&revenue_dir, crate::etl::revenue_schema()),
        (&hourly_dir, hourly_schema),
        (&late_dir, clean_schema()),
    ] {
        let set = FileSet::dir(dir).expect("listable");
        assert_eq!(set.files().len(), 1, "one empty part in {}", dir.display());
        let reader =
            ParquetReader::open(&set.files()[0], ParquetOptions::default()).expect("parquet");
        let found = weir_operators::connector::BatchReader::schema(&reader);
        let names = |s: &arrow::datatypes::SchemaRef| -> Vec<(String, DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(names(&found), names(&schema));
        assert_eq!(
            reader
                .map(|b| b.expect("readable").batch.num_rows())
                .sum::<usize>(),
            0
        );
    }
    assert_eq!(published_runs(&out), vec![Some(summary.run_id); 5]);
}

#[cfg(unix)]
#[test]
fn a_directory_input_reads_linked_csv_files_and_ignores_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&input).expect("creatable");
    std::fs::create_dir_all(&elsewhere).expect("creatable");
    generate_orders_csv(input.join("a.csv"), 1_000, 1).expect("writable");
    generate_orders_csv(elsewhere.join("b.csv"), 1_000, 2).expect("writable");
    std::os::unix::fs::symlink(elsewhere.join("b.csv"), input.join("b.csv")).expect("symlink");
    std::fs::write(input.join("readme.txt"), "orders of March\n").expect("writable");
    let out = dir.path().join("out");
    let (summary, _) = run(&small_config(&input, &out)).expect("runs");
    assert_eq!(summary.rows_read, 2_000);
}

#[test]
fn errors_name_their_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("creatable");
    std::fs::write(input.join("readme.txt"), "orders of March\n").expect("writable");
    let out = dir.path().join("out");
    let err = run(&small_config(&input, &out)).expect_err("no CSV in the directory");
    assert!(matches!(err, EtlJobError::NoCsvFiles { .. }), "{err}");
    assert!(err.to_string().contains(&*input.to_string_lossy()), "{err}");

    // An output directory that cannot be created (a file is in the way, as with /proc/x).
    let csv = input.join("orders.csv");
    generate_orders_csv(&csv, 10, 1).expect("writable");
    let out = input.join("readme.txt").join("out");
    let err = run(&small_config(&csv, &out)).expect_err("cannot create the output");
    assert!(err.to_string().contains(&*out.to_string_lossy()), "{err}");
}

/// Orders whose event time lags by six hours, 2 % of them: with the default bound of an hour
/// each is late by far more than a batch's worth of time.
fn disordered_input(dir: &Path, rows: u64, seed: u64) -> PathBuf {
    let input = dir.join("disordered.csv");
    let lag = Disorder {
        ppm: 20_000,
        lag_ms: 6 * 3_600_000,
    };
    let generated = generate_orders_csv_disordered(&input, rows, seed, lag).expect("writable");
    assert!(generated.stragglers > 20, "{generated:?}");
    input
}

#[test]
fn late_rows_are_written_counted_and_left_out_of_the_hourly_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = disordered_input(dir.path(), 3_000, 21);
    let reference = run_reference(&input).expect("readable");
    assert!(
        reference.late.len() > 10,
        "{} late rows",
        reference.late.len()
    );
    // One parse instance and batches of 16 rows (about half an hour of event time): the job's
    // watermark is the reference's, one batch behind, and every straggler is hours late.
    let out = dir.path().join("out");
    let config = EtlConfig {
        parallelism: 1,
        writers: 1,
        batch_rows: 16,
        ..small_config(&input, &out)
    };
    let (summary, report) = run(&config).expect("runs");
    check_outputs(&reference, &out);
    assert_eq!(summary.late_rows, reference.late.len() as u64);
    assert_eq!(
        summary.parts.late.iter().map(|s| s.rows).sum::<u64>(),
        summary.late_rows
    );
    assert_eq!(late_rows(&report, HOURLY_WINDOW), summary.late_rows);
    let hourly_orders: u64 = reference.hourly.iter().map(|h| h.orders).sum();
    assert_eq!(hourly_orders + summary.late_rows, summary.rows_written);
    // Late rows are in the daily table like every clean row.
    let daily_orders: u64 = reference.revenue.iter().map(|r| r.orders).sum();
    assert_eq!(daily_orders, summary.rows_written);
    let window = report
        .operators
        .iter()
        .find(|o| o.name == HOURLY_WINDOW)
        .expect("the window runs");
    assert_eq!(window.state_keys, 0, "every window fired and was freed");

    // A bound larger than the lag: nothing is late, the table is the plain group-by.
    let config = EtlConfig {
        max_delay_ms: 7 * 3_600_000,
        ..config
    };
    let (summary, _) = run(&config).expect("runs");
    let relaxed = run_reference_with(&input, config.max_delay_ms).expect("readable");
    assert!(relaxed.late.is_empty());
    assert_eq!(
        relaxed.hourly,
        revenue_by_hour(&relaxed.clean).expect("in range")
    );
    check_outputs(&relaxed, &out);
    assert_eq!(summary.late_rows, 0);
}

#[test]
fn with_several_parse_instances_late_rows_are_fewer_and_the_invariant_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = disordered_input(dir.path(), 3_000, 22);
    let reference = run_reference(&input).expect("readable");
    let out = dir.path().join("out");
    let config = EtlConfig {
        parallelism: 3,
        batch_rows: 64,
        ..small_config(&input, &out)
    };
    let (summary, _) = run(&config).expect("runs");
    let [_, _, _, hourly_dir, late_dir] = output_dirs(&out);
    let late = read_clean(&late_dir);
    assert_eq!(late.len() as u64, summary.late_rows);
    // The minimum over instances trails each instance's own watermark: only rows the
    // row-by-row rule finds late can be late.
    let reference_late: std::collections::BTreeSet<u64> =
        reference.late.iter().map(|c| c.order_id).collect();
    assert!(late.iter().all(|c| reference_late.contains(&c.order_id)));
    // The hourly table is the group-by of the clean rows that were not late.
    let late_ids: std::collections::BTreeSet<u64> = late.iter().map(|c| c.order_id).collect();
    let on_time: Vec<CleanOrder> = reference
        .clean
        .iter()
        .filter(|c| !late_ids.contains(&c.order_id))
        .cloned()
        .collect();
    let hourly = read_hourly(&hourly_dir);
    assert_eq!(hourly, revenue_by_hour(&on_time).expect("in range"));
    let hourly_orders: u64 = hourly.iter().map(|h| h.orders).sum();
    assert_eq!(
        hourly_orders + summary.late_rows,
        reference.clean.len() as u64
    );
}
