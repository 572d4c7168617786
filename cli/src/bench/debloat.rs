//! `weir bench debloat`: queueing delay before and after a sink slows tenfold, with edges sized
//! by rows only and by time as well.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_workloads::bench::debloat::{self, DebloatConfig, DebloatResult};

use crate::{open_json, Error};

/// Queueing delay p50 / p99 and rows/s per phase, sink at full speed then slowed.
#[derive(Args)]
pub struct DebloatArgs {
    /// The sink's spin work per row before the slowdown, ns.
    #[arg(long, default_value_t = 200.0)]
    pub sink_ns_per_row: f64,
    /// How much slower the sink gets in phase 2.
    #[arg(long, default_value_t = 10)]
    pub slowdown: u64,
    /// Length of each phase, ms.
    #[arg(long, default_value_t = 3000)]
    pub phase_ms: u64,
    /// Left out at the start of each phase, ms.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// The edge target time when sizing by time is on, ms.
    #[arg(long, default_value_t = 10)]
    pub target_ms: u64,
    /// Runs per variant (interleaved, off then on); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write one JSON object per line (one per run) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median_u64(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs.get(xs.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

fn median_f64(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: DebloatArgs) -> Result<(), Error> {
    let mut out = open_json(&args.json)?;
    let iters_per_ns = debloat::calibrate();
    let base = DebloatConfig {
        batch_rows: 1024,
        sink_ns_per_row: args.sink_ns_per_row,
        slowdown: args.slowdown,
        phase: Duration::from_millis(args.phase_ms),
        settle: Duration::from_millis(args.settle_ms),
        target: Duration::ZERO,
    };
    let targets = [Duration::ZERO, Duration::from_millis(args.target_ms)];
    println!(
        "source → map → map → sink, 3 edges, 1024-row batches; sink {} ns/row, then {}× slower; \
         {} ms per phase, first {} ms left out; medians over {} runs",
        args.sink_ns_per_row, args.slowdown, args.phase_ms, args.settle_ms, args.runs
    );
    let mut results: Vec<Vec<DebloatResult>> = vec![Vec::new(), Vec::new()];
    for run in 0..args.runs.max(1) {
        for (v, &target) in targets.iter().enumerate() {
            let r = debloat::run(&DebloatConfig { target, ..base }, iters_per_ns)?;
            if weir::interrupt::received().is_some() {
                return Ok(());
            }
            if let Some(f) = out.as_mut() {
                writeln!(
                    f,
                    "{}",
                    serde_json::json!({
                        "bench": "debloat", "run": run, "target_ms": target.as_millis() as u64,
                        "sink_ns_per_row": args.sink_ns_per_row, "slowdown": args.slowdown,
                        "result": r,
                    })
                )?;
            }
            results[v].push(r);
        }
    }
    println!(
        "{:<12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>12} {:>8}",
        "edges",
        "fast p50",
        "fast p99",
        "fast rows/s",
        "slow p50",
        "slow p99",
        "slow rows/s",
        "credit"
    );
    let mut slow_rates = [0.0; 2];
    for (v, rs) in results.iter().enumerate() {
        let ms =
            |f: &dyn Fn(&DebloatResult) -> u64| median_u64(rs.iter().map(f).collect()) as f64 / 1e6;
        let rate = |f: &dyn Fn(&DebloatResult) -> f64| median_f64(rs.iter().map(f).collect());
        let name = if targets[v].is_zero() {
            "rows only".to_string()
        } else {
            format!("time {} ms", targets[v].as_millis())
        };
        slow_rates[v] = rate(&|r| r.slow.rows_per_s);
        println!(
            "{:<12} {:>7.1} ms {:>7.1} ms {:>10.2} M {:>7.1} ms {:>7.1} ms {:>10.2} M {:>5}/{}",
            name,
            ms(&|r| r.fast.p50_ns),
            ms(&|r| r.fast.p99_ns),
            rate(&|r| r.fast.rows_per_s) / 1e6,
            ms(&|r| r.slow.p50_ns),
            ms(&|r| r.slow.p99_ns),
            slow_rates[v] / 1e6,
            median_u64(rs.iter().map(|r| r.credit_limits as u64).collect()),
            rs.first().map_or(0, |r| r.capacity),
        );
    }
    if slow_rates[0] > 0.0 {
        println!(
            "slowed sink's throughput, time / rows only: {:.3}",
            slow_rates[1] / slow_rates[0]
        );
    }
    Ok(())
}
