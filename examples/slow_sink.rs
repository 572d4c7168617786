//! A fast generator feeding a sink limited to `--sink-rate` rows per second: watch the source
//! follow the sink through backpressure, with memory bounded by the edges.
//!
//! ```text
//! cargo run --release --example slow_sink -- --records 2000000 --sink-rate 500000
//! ```
//!
//! While it runs it prints, twice a second, the rate at which the source reads and the sink
//! writes; at the end, one JSON line with `records_in`, `records_out`, `source_rows_per_s`,
//! `sink_rows_per_s`, `peak_in_flight_bytes`, `bottleneck` and `peak_rss_bytes` (and `stopped`,
//! the signal that ended it early, if one did: Ctrl-C or SIGTERM drains, reports, and exits 130
//! or 143).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mimalloc::MiMalloc;
use weir::prelude::*;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(about = "A fast generator feeding a sink limited to --sink-rate rows per second")]
struct Args {
    /// Rows to generate.
    #[arg(long, visible_alias = "rows", default_value_t = 2_000_000)]
    records: u64,
    /// Rows per second the sink accepts.
    #[arg(long, default_value_t = 500_000.0)]
    sink_rate: f64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 0.5)]
    interval: f64,
}

fn rows_of(report: &RunReport, name: &str) -> u64 {
    report
        .operators
        .iter()
        .find(|o| o.name == name)
        .map_or(0, |o| {
            if o.name == "source" {
                o.rows_out
            } else {
                o.rows_in
            }
        })
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !(args.sink_rate > 0.0 && args.sink_rate.is_finite()) {
        return Err("--sink-rate must be a positive number of rows per second".into());
    }
    let interrupts = weir::interrupt::install()?;
    let mut p = Pipeline::new("slow-sink");
    let total = p
        .source("source", Generator::new(args.records, |i| i))
        .map("work", |x: u64| x.wrapping_mul(2_654_435_761))
        .sink("sink", Throttle::new(Count::new(), args.sink_rate));

    let handle = p.spawn()?;
    interrupts.watch(&handle);

    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    let (mut last_src, mut last_sink, mut last_t) = (0u64, 0u64, Instant::now());
    eprintln!(
        "{:>8} {:>14} {:>14} {:>12}",
        "t (s)", "source rows/s", "sink rows/s", "in flight"
    );
    let started = Instant::now();
    while !handle.is_finished() {
        std::thread::sleep(interval);
        let snap = handle.snapshot();
        let (src, sink) = (rows_of(&snap, "source"), rows_of(&snap, "sink"));
        let dt = last_t.elapsed().as_secs_f64();
        let in_flight: usize = snap.edges.iter().map(|e| e.buffered_bytes).sum();
        eprintln!(
            "{:>8.1} {:>14.0} {:>14.0} {:>10} B",
            started.elapsed().as_secs_f64(),
            (src - last_src) as f64 / dt,
            (sink - last_sink) as f64 / dt,
            in_flight
        );
        (last_src, last_sink, last_t) = (src, sink, Instant::now());
    }
    let report = handle.join()?;
    println!("{report}");
    let secs = report.elapsed_s.max(1e-9);
    let summary = serde_json::json!({
        "records_in": rows_of(&report, "source"),
        "records_out": total.take().unwrap_or_default(),
        "source_rows_per_s": rows_of(&report, "source") as f64 / secs,
        "sink_rows_per_s": rows_of(&report, "sink") as f64 / secs,
        "peak_in_flight_bytes": report.peak_in_flight_bytes,
        "bottleneck": report.bottleneck.as_ref().map(|b| b.operator.clone()),
        "peak_rss_bytes": weir_workloads::peak_rss_bytes(),
        "stopped": interrupts.received().map(|s| s.name()),
    });
    println!("{summary}");
    Ok(weir::interrupt::exit_code(interrupts.received()))
}
