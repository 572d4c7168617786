//! The `weir` command line: one flag set (`--records`, alias `--rows`), flags that do not apply
//! rejected, and SIGINT / SIGTERM draining a run, printing its report and exiting 130 / 143.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("the weir binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_jobs_and_their_flags() {
    let out = weir(&["run", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(help.contains("demo") && help.contains("etl"), "{help}");

    for job in ["demo", "etl"] {
        let out = weir(&["run", job, "--help"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("--records"), "{help}");
        assert!(help.contains("rows"), "the alias is shown: {help}");
    }
    let help = text(&weir(&["run", "etl", "--help"]).stdout);
    assert!(help.contains("--max-delay-ms"), "{help}");
    assert!(help.contains("3600000"), "the default, an hour: {help}");
}

#[test]
fn etl_takes_the_watermark_delay_and_reports_late_rows() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_etl_delay");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creatable");
    let input = dir.join("orders.csv");
    weir_workloads::etl::generate_orders_csv(&input, 400, 5).expect("writable");
    let out = dir.join("out");
    let run = weir(&[
        "run",
        "etl",
        "--input",
        &input.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--max-delay-ms",
        "600000",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON summary last");
    // One batch holds the whole input, so no row meets a watermark before the end.
    assert_eq!(summary["late_rows"], 0, "{summary}");
    assert!(
        summary["hourly_groups"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    for name in ["revenue_by_country_hour", "late_rows"] {
        assert!(out.join(name).join("_SUCCESS").exists(), "{name} published");
    }
    let bad = weir(&["run", "etl", "--max-delay-ms", "-5"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flag_that_does_not_apply_to_the_job_is_rejected() {
    let out = weir(&["run", "etl", "--sink-rate", "5"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(err.contains("--sink-rate"), "{err}");

    let out = weir(&["run", "demo", "--input", "orders.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--input"));

    let out = weir(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope"));
}

#[test]
fn a_bad_sink_rate_is_an_error_not_a_stall() {
    let out = weir(&["run", "demo", "--records", "10", "--sink-rate", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--sink-rate"));
}

fn source_rows(report_json: &str) -> u64 {
    let report: serde_json::Value = serde_json::from_str(report_json.trim()).expect("JSON report");
    report["operators"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["name"] == "gen"))
        .and_then(|o| o["rows_out"].as_u64())
        .expect("the source's rows")
}

#[test]
fn rows_is_an_alias_of_records() {
    for flag in ["--rows", "--records"] {
        let out = weir(&["run", "demo", flag, "1234", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(source_rows(&text(&out.stdout)), 1234, "{flag}");
    }
}

/// Starts an endless paced demo, waits until its handler is installed (it says so on stderr),
/// sends `signal`, and returns how it ended.
fn interrupted_demo(signal: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "demo", "--records", &u64::MAX.to_string()])
        .args(["--sink-rate", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the weir binary starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("stderr reads");
        assert!(n > 0, "weir ended before it was running: {seen}");
        seen.push_str(&line);
        if line.starts_with("running `demo`") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("weir ends");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr reads");
    (out.status.code(), text(&out.stdout), seen + &rest)
}

#[test]
fn sigterm_drains_reports_and_exits_143() {
    let (code, stdout, stderr) = interrupted_demo("TERM");
    assert_eq!(code, Some(143), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("big orders:"),
        "the report is printed: {stdout}"
    );
    assert!(stdout.contains("stopped by SIGTERM"), "{stdout}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
}

#[test]
fn sigint_drains_reports_and_exits_130() {
    let (code, stdout, stderr) = interrupted_demo("INT");
    assert_eq!(code, Some(130), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("big orders:"), "{stdout}");
    assert!(stdout.contains("stopped by SIGINT"), "{stdout}");
}

#[test]
fn bench_skew_measures_each_run_in_a_process_of_its_own() {
    let json = std::env::temp_dir().join(format!("weir-cli-skew-{}.json", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "bench", "skew", "--rows", "5000", "--keys", "100", "--zipf", "0,1",
        ])
        .args([
            "--strategies",
            "hash,pkg",
            "--partitions",
            "2",
            "--workers",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the weir binary starts");
    let parent = child.id();
    let out = child.wait_with_output().expect("weir ends");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("peak RSS: each run in a process of its own"),
        "the output says how RSS was measured: {stdout}"
    );
    let lines = std::fs::read_to_string(&json).expect("the JSON lines");
    let _ = std::fs::remove_file(&json);
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 4, "2 exponents × 2 strategies");
    let mut pids: Vec<u64> = rows.iter().filter_map(|r| r["pid"].as_u64()).collect();
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|&p| p != u64::from(parent)), "{pids:?}");
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "one process per run");
    for r in &rows {
        assert_eq!(r["correct"], true, "{r}");
        assert_eq!(r["records"], 5000);
        assert_eq!(r["peak_rss_scope"], "each run in a process of its own");
    }
}

#[test]
fn a_signal_with_no_pipeline_running_exits_at_once_with_its_code() {
    // `bench edge` measures channels, not a pipeline: there is nothing to drain.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "edge", "--batches", "1000000000", "--runs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the weir binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("stdout reads");
    assert!(line.starts_with("machine:"), "{line}");
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("weir ends");
    assert_eq!(out.status.code(), Some(143));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no run in progress"), "{stderr}");
}
