use super::reference::{clean_rows, revenue_rows, run_reference};
use super::*;
use arrow::array::RecordBatch;
use std::path::Path;
use weir_operators::connector::{CsvReader, DeadLetter};

/// Runs the vectorised pieces over `path` with `batch_rows`, merging partials last-first.
fn run_vectorised(
    path: &Path,
    batch_rows: usize,
) -> (Vec<RecordBatch>, Vec<DeadLetter>, u64, RecordBatch) {
    let reader = CsvReader::from_path(path, orders_csv_options().with_batch_rows(batch_rows))
        .expect("generated file opens");
    let (mut clean, mut dead, mut filtered, mut partials) = (Vec::new(), Vec::new(), 0, Vec::new());
    for batch in reader {
        let out =
            process_batch(&batch.expect("bad records become dead letters")).expect("valid shape");
        clean.push(out.clean);
        dead.extend(out.dead_letters);
        filtered += out.filtered;
        partials.push(out.revenue);
    }
    let mut revenue = RevenuePartial::new();
    for p in partials.iter().rev() {
        revenue.merge(p);
    }
    (
        clean,
        dead,
        filtered,
        revenue.to_batch().expect("revenue batch"),
    )
}

fn kind_of(reason: &str) -> Option<MalformedKind> {
    if reason.starts_with("expected 7 fields") {
        Some(MalformedKind::WrongFieldCount)
    } else if reason.starts_with("column `ts`") {
        Some(MalformedKind::BadTimestamp)
    } else if reason.starts_with("column `") {
        Some(MalformedKind::BadNumber)
    } else if reason.starts_with("negative amount") {
        Some(MalformedKind::NegativeAmount)
    } else if reason.starts_with("unknown currency") {
        Some(MalformedKind::UnknownCurrency)
    } else if reason.starts_with("unknown status") {
        Some(MalformedKind::UnknownStatus)
    } else {
        None
    }
}

#[test]
fn vectorised_pipeline_equals_the_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    let summary = generate_orders_csv(&path, 6_000, 7).expect("writable");
    let reference = run_reference(&path).expect("readable");

    // the generated file has every malformed kind, quoted valid rows and cancellations
    for kind in MalformedKind::ALL {
        assert!(summary.count(kind) > 0, "{kind:?} missing: {summary:?}");
    }
    assert!(summary.quoted_valid > 0 && summary.cancelled > 0);
    assert_eq!(reference.filtered, summary.cancelled);
    assert_eq!(reference.dead_letters.len(), summary.malformed.len());

    for batch_rows in [1024, 97, 7] {
        let (clean, dead, filtered, revenue) = run_vectorised(&path, batch_rows);
        assert_eq!(
            clean_rows(&clean),
            reference.clean,
            "clean rows, batch {batch_rows}"
        );
        assert_eq!(
            dead, reference.dead_letters,
            "dead letters, batch {batch_rows}"
        );
        assert_eq!(filtered, reference.filtered);
        // bit-exact: sums do not depend on batch boundaries or merge order
        assert_eq!(
            revenue_rows(&revenue),
            reference.revenue,
            "revenue, batch {batch_rows}"
        );
        let got: Vec<(u64, Option<MalformedKind>)> = dead
            .iter()
            .map(|d| (d.line.unwrap_or_default(), kind_of(&d.reason)))
            .collect();
        let want: Vec<(u64, Option<MalformedKind>)> = summary
            .malformed
            .iter()
            .map(|m| (m.line, Some(m.kind)))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn each_malformed_kind_is_dead_lettered_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    let text = [
        "order_id,ts,customer_id,country,amount,currency,status",
        "1,2024-03-01T10:00:00Z,5,DE,10.50,EUR,placed",
        "2,2024-03-01T10:00:00Z,5,\"DE,EUR\",10.50,placed",
        "3,2024-03-01T10:00:00Z,5x,DE,10.50,EUR,placed",
        "4,2024-02-30T10:00:00Z,5,DE,10.50,EUR,placed",
        "5,2024-03-01T10:00:00Z,5,DE,-3.25,EUR,placed",
        "6,2024-03-01T10:00:00Z,5,DE,3.25,CHF,placed",
        "7,2024-03-01T10:00:00Z,5,DE,3.25,EUR,lost",
        "",
        "8,\"2024-03-01T23:30:00-02:00\",6,\"US\",2.00,USD,\"refunded\"",
        "9,2024-03-01T10:00:00Z,5,DE,1.00,GBP,cancelled",
        "10,2024-03-01T10:00:00Z,5,DE,,EUR,placed",
    ]
    .join("\r\n");
    std::fs::write(&path, text).expect("writable");
    let (clean, dead, filtered, revenue) = run_vectorised(&path, 4);
    let got: Vec<(u64, &str, &str)> = dead
        .iter()
        .map(|d| {
            (
                d.line.unwrap_or_default(),
                d.reason.as_str(),
                d.raw.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                3,
                "expected 7 fields, found 6",
                "2,2024-03-01T10:00:00Z,5,\"DE,EUR\",10.50,placed"
            ),
            (
                4,
                "column `customer_id`: expected unsigned integer, found \"5x\"",
                "3,2024-03-01T10:00:00Z,5x,DE,10.50,EUR,placed"
            ),
            (
                5,
                "column `ts`: expected RFC 3339 timestamp, found \"2024-02-30T10:00:00Z\"",
                "4,2024-02-30T10:00:00Z,5,DE,10.50,EUR,placed"
            ),
            (
                6,
                "negative amount -3.25",
                "5,2024-03-01T10:00:00Z,5,DE,-3.25,EUR,placed"
            ),
            (
                7,
                "unknown currency \"CHF\"",
                "6,2024-03-01T10:00:00Z,5,DE,3.25,CHF,placed"
            ),
            (
                8,
                "unknown status \"lost\"",
                "7,2024-03-01T10:00:00Z,5,DE,3.25,EUR,lost"
            ),
            (
                12,
                "column `amount`: expected number, found \"\"",
                "10,2024-03-01T10:00:00Z,5,DE,,EUR,placed"
            ),
        ]
    );
    assert_eq!(filtered, 1);
    let rows = clean_rows(&clean);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].amount_usd, 10.5 * 1.08);
    // 23:30 at -02:00 is 01:30 UTC the next day
    assert_eq!(
        (rows[1].country.as_str(), rows[1].ts_ms),
        ("US", 1_709_343_000_000)
    );
    let revenue = revenue_rows(&revenue);
    assert_eq!(revenue.len(), 2);
    assert_eq!(
        (
            revenue[0].country.as_str(),
            revenue[0].day,
            revenue[0].orders
        ),
        ("DE", 19_783, 1)
    );
    assert_eq!(
        (revenue[1].country.as_str(), revenue[1].day),
        ("US", 19_784)
    );
    assert_eq!(
        (revenue[1].revenue_usd, revenue[1].refunded_usd),
        (0.0, 2.0)
    );
    assert_eq!(run_reference(&path).expect("readable").dead_letters, dead);
}

#[test]
fn generator_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let sa = generate_orders_csv(&a, 3_000, 1).expect("writable");
    let sb = generate_orders_csv(&b, 3_000, 1).expect("writable");
    let _ = generate_orders_csv(&c, 3_000, 2).expect("writable");
    assert_eq!(sa, sb);
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert_ne!(std::fs::read(&a).expect("a"), std::fs::read(&c).expect("c"));
    let share = sa.malformed.len() as f64 / 3_000.0;
    assert!((0.001..0.012).contains(&share), "malformed share {share}");
    assert_eq!(sa.valid + sa.malformed.len() as u64, sa.rows);
}

/// The largest lag of a row's `ts` behind the valid rows before it, in file order.
fn largest_lag(clean: &[reference::CleanOrder]) -> i64 {
    let mut max_seen = i64::MIN;
    let mut lag = 0;
    for c in clean {
        lag = lag.max(max_seen.saturating_sub(c.ts_ms));
        max_seen = max_seen.max(c.ts_ms);
    }
    lag
}

#[test]
fn generated_times_are_out_of_order_by_at_most_twenty_minutes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    generate_orders_csv(&path, 6_000, 3).expect("writable");
    let reference = run_reference(&path).expect("readable");
    let lag = largest_lag(&reference.clean);
    assert!(lag > 0 && lag <= 20 * 60_000, "lag {lag} ms");
    assert!(
        reference.late.is_empty(),
        "within the default bound of an hour"
    );
}

#[test]
fn stragglers_lag_by_the_disorder_asked_for_and_only_they_are_late() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (plain, lagged) = (dir.path().join("plain.csv"), dir.path().join("lagged.csv"));
    let disorder = Disorder {
        ppm: 30_000,
        lag_ms: 5 * 3_600_000,
    };
    generate_orders_csv(&plain, 4_000, 9).expect("writable");
    let summary = generate_orders_csv_disordered(&lagged, 4_000, 9, disorder).expect("writable");
    assert!(summary.stragglers > 40, "{summary:?}");
    // Without disorder the file is the plain generator's, byte for byte.
    let same = dir.path().join("same.csv");
    let none = generate_orders_csv_disordered(&same, 4_000, 9, Disorder::default());
    assert_eq!(none.expect("writable").stragglers, 0);
    assert_eq!(
        std::fs::read(&plain).expect("plain"),
        std::fs::read(&same).expect("same")
    );
    let reference = run_reference(&lagged).expect("readable");
    let lag = largest_lag(&reference.clean);
    assert!(lag >= 5 * 3_600_000 - 20 * 60_000, "lag {lag} ms");
    // Each late row lags the rows before it by more than the hour the watermark allows.
    assert!(!reference.late.is_empty());
    assert!(reference.late.len() as u64 <= summary.stragglers);
    let first_late = &reference.late[0];
    let before: i64 = reference
        .clean
        .iter()
        .take_while(|c| c.order_id != first_late.order_id)
        .map(|c| c.ts_ms)
        .max()
        .expect("rows before it");
    assert!(before - first_late.ts_ms > 3_600_000);
}

#[test]
fn steps_reject_batches_of_another_shape() {
    let clean = RecordBatch::new_empty(clean_schema());
    assert!(matches!(
        validate(&clean, None),
        Err(EtlError::MissingColumn { column: "amount" })
    ));
    assert!(matches!(
        to_clean(&clean),
        Err(EtlError::MissingColumn { .. })
    ));
    let input = RecordBatch::new_empty(orders_csv_schema());
    assert!(matches!(
        RevenuePartial::of(&input),
        Err(EtlError::MissingColumn {
            column: "amount_usd"
        })
    ));
    assert!(RevenuePartial::of(&clean)
        .expect("empty is fine")
        .is_empty());
}

#[test]
fn generation_replaces_a_file_only_once_complete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    generate_orders_csv(&path, 50, 1).expect("writable");
    let before = std::fs::read(&path).expect("readable");
    // The temporary name is taken by a directory: the write fails, the old file stays whole.
    std::fs::create_dir(dir.path().join(".orders.csv.tmp")).expect("creatable");
    let err = generate_orders_csv(&path, 5_000, 2).expect_err("cannot write");
    assert!(err.to_string().contains(".orders.csv.tmp"), "{err}");
    assert_eq!(std::fs::read(&path).expect("readable"), before);
    std::fs::remove_dir(dir.path().join(".orders.csv.tmp")).expect("removable");
    generate_orders_csv(&path, 60, 1).expect("writable");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listable")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["orders.csv"], "no temporary file left");
    assert_eq!(
        std::fs::read_to_string(&path)
            .expect("readable")
            .lines()
            .count(),
        61
    );
}

#[test]
fn a_leap_second_is_a_bad_timestamp_in_the_job_and_the_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    let text = [
        "order_id,ts,customer_id,country,amount,currency,status",
        "1,2016-12-31T23:59:59.500Z,5,DE,10.50,EUR,placed",
        "2,2016-12-31T23:59:60.500Z,5,DE,10.50,EUR,placed",
        "3,2017-01-01T00:00:00.500Z,5,DE,10.50,EUR,placed",
    ]
    .join("\n");
    std::fs::write(&path, text).expect("writable");
    let (_, dead, _, _) = run_vectorised(&path, 4);
    let reference = run_reference(&path).expect("readable");
    assert_eq!(dead, reference.dead_letters);
    let lines: Vec<Option<u64>> = dead.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![Some(3)]);
    assert_eq!(
        dead[0].reason,
        "column `ts`: expected RFC 3339 timestamp, found \"2016-12-31T23:59:60.500Z\""
    );
}
