//! The ready-made jobs set their parallelism once, as the job-wide default.

use weir_workloads::jobs::etl;

#[test]
fn the_orders_job_runs_every_stage_after_the_parser_at_its_parallelism() {
    let dir = std::env::temp_dir().join(format!("weir-jobs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let input = dir.join("orders.csv");
    weir_workloads::etl::generate_orders_csv(&input, 2_000, 7).expect("orders written");
    let mut config = etl::EtlConfig::new(&input, dir.join("out"));
    config.parallelism = 3;
    config.writers = 2;
    config.workers = Some(2);
    let (summary, report) = etl::run(&config).expect("the job runs");
    let _ = std::fs::remove_dir_all(&dir);

    let instances = |name: &str| {
        report
            .operators
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.instances.len())
    };
    for stage in [
        "parse+validate",
        "parse+validate.watermarks",
        "orders",
        "drop_cancelled",
        "amount_usd",
        "clean",
        "day",
        "revenue_part",
        "refunded_part",
        "revenue_columns",
    ] {
        assert_eq!(instances(stage), Some(3), "{stage}");
    }
    assert_eq!(instances("orders_clean"), Some(2), "the writers");
    assert_eq!(
        instances("revenue"),
        Some(1),
        "the aggregation sets its own"
    );
    assert_eq!(instances("dead_letters"), Some(1));
    for window in [
        "revenue_by_hour",
        "revenue_by_hour.results",
        "revenue_by_hour.late",
    ] {
        assert_eq!(
            instances(window),
            Some(1),
            "{window}: the window sets its own"
        );
    }
    assert_eq!(summary.rows_read, 2_000);
    assert_eq!(
        summary.rows_written + summary.rows_filtered + summary.dead_letters,
        summary.rows_read,
        "{summary:?}"
    );
}
