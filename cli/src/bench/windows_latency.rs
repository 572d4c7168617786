//! `weir bench windows-latency`: the tumbling count's maximum rate unpaced, then the latency of
//! its window results with the source paced at a fraction of it (see
//! `weir_workloads::bench::windows_latency` for the definitions).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_workloads::bench::windows::WindowsConfig;
use weir_workloads::bench::windows_latency::{self, PacedOutcome};

use crate::{open_json, Error};

/// Window-result latency at a fraction of the windowed count's maximum rate.
#[derive(Args)]
pub struct WindowsLatencyArgs {
    /// Rows of each unpaced run that measures the maximum rate.
    #[arg(long, default_value_t = 20_000_000)]
    pub max_rows: u64,
    /// The fraction of the maximum rate the paced runs offer.
    #[arg(long, default_value_t = 0.5)]
    pub fraction: f64,
    /// Wall-clock (and event-time) seconds of each paced run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Runs of each kind; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Zipf exponent of the keys (0 = uniform).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Instances of the window stage.
    #[arg(long, default_value_t = 2)]
    pub parallelism: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 1024)]
    pub batch_rows: usize,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// How often the source emits an in-band latency marker, ms.
    #[arg(long, default_value_t = 10)]
    pub marker_interval_ms: u64,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_unstable_by(f64::total_cmp);
    xs.get(xs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Measures the maximum rate, then the paced runs; prints a table (and JSON lines).
pub fn run(args: WindowsLatencyArgs) -> Result<(), Error> {
    let WindowsLatencyArgs {
        max_rows,
        fraction,
        seconds,
        runs,
        keys,
        zipf,
        parallelism,
        batch_rows,
        workers,
        marker_interval_ms,
        json,
    } = args;
    let mut out = open_json(&json)?;
    let cfg = WindowsConfig {
        keys,
        zipf,
        parallelism,
        batch_rows,
        workers,
        ..WindowsConfig::default()
    };
    let markers = Duration::from_millis(marker_interval_ms);
    println!(
        "tumbling 1 s count, {keys} keys (zipf {zipf}), parallelism {parallelism}, batch \
         {batch_rows}, event time = wall time; latency = sink arrival − (window end + bound + \
         1 ms); medians of {runs}"
    );
    println!(
        "{:>8} {:>12} {:>12} {:>8} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "run",
        "offered/s",
        "achieved/s",
        "windows",
        "p50 ms",
        "p99 ms",
        "max ms",
        "mark p50",
        "mark p99"
    );
    let mut line = |kind: &str, r: &PacedOutcome| -> Result<(), Error> {
        let (m50, m99) = r
            .markers
            .as_ref()
            .map_or((f64::NAN, f64::NAN), |m| (m.p50_ms, m.p99_ms));
        println!(
            "{kind:>8} {:>10.2} M {:>10.2} M {:>8} {:>9.2} {:>9.2} {:>9.2} {:>11.2} {:>11.2}",
            r.offered / 1e6,
            r.achieved / 1e6,
            r.windows,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            m50,
            m99
        );
        if r.counted != r.rows {
            return Err(format!(
                "{kind}: the results counted {} of {} rows",
                r.counted, r.rows
            )
            .into());
        }
        if let Some(o) = out.as_mut() {
            writeln!(
                o,
                "{}",
                serde_json::json!({ "bench": "windows-latency", "kind": kind, "outcome": r })
            )?;
        }
        Ok(())
    };
    let mut max = Vec::new();
    for _ in 0..runs.max(1) {
        let r = windows_latency::max_rate(&cfg, max_rows)?;
        if weir::interrupt::received().is_some() {
            return Ok(());
        }
        line("unpaced", &r)?;
        max.push(r.achieved);
    }
    let max = median(max);
    let rate = max * fraction;
    let rows = (rate * seconds) as u64;
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut m99 = Vec::new();
    for _ in 0..runs.max(1) {
        let r = windows_latency::run_paced(&cfg, rows, rate, markers)?;
        if weir::interrupt::received().is_some() {
            return Ok(());
        }
        line("paced", &r)?;
        p50.push(r.p50_ms);
        p99.push(r.p99_ms);
        m99.push(r.markers.as_ref().map_or(f64::NAN, |m| m.p99_ms));
    }
    println!(
        "maximum {:.2} M rows/s; at {:.0} % ({:.2} M rows/s): window results p50 {:.2} ms, p99 \
         {:.2} ms; markers p99 {:.2} ms (medians)",
        max / 1e6,
        fraction * 100.0,
        rate / 1e6,
        median(p50),
        median(p99),
        median(m99)
    );
    Ok(())
}
