//! `weir bench latency`: source → sink latency of a 3-stage pipeline at a fraction of its
//! measured capacity, batch size 1, linger 0.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir::prelude::{Chaining, Placement};
use weir_workloads::bench::latency::{self, LatencyConfig};

use crate::{open_json, Error};

/// Source → sink latency of source → map → filter → sink at a fraction of its capacity.
#[derive(Args)]
pub struct LatencyArgs {
    /// Rows measured per run.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Offered load as a fraction of the capacity measured first (same pipeline, unpaced).
    #[arg(long, default_value_t = 0.1)]
    pub load: f64,
    /// Runs per variant (interleaved); the median of each percentile is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs.get(xs.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: LatencyArgs) -> Result<(), Error> {
    let LatencyArgs {
        rows,
        load,
        runs,
        json,
    } = args;
    if !(load > 0.0 && load <= 1.0) {
        return Err(format!("--load must be in (0, 1], got {load}").into());
    }
    let mut out = open_json(&json)?;
    println!("batch size 1, linger 0; each percentile is the median over {runs} runs");
    println!(
        "{:<10} {:<14} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "chaining",
        "placement",
        "capacity/s",
        "offered/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs"
    );
    let variants = [
        (Chaining::Operators, Placement::PerWorker),
        (Chaining::Operators, Placement::WorkStealing),
        (Chaining::Off, Placement::PerWorker),
        (Chaining::Off, Placement::WorkStealing),
    ];
    for (chaining, placement) in variants {
        let unpaced = LatencyConfig {
            rows,
            rate: f64::INFINITY,
            warmup: rows / 10,
            chaining,
        };
        let capacity = latency::run(&unpaced, placement)?.achieved_rate;
        let paced = LatencyConfig {
            rate: capacity * load,
            ..unpaced
        };
        let (mut p50, mut p99, mut p999, mut max) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs.max(1) {
            let r = latency::run(&paced, placement)?;
            if weir::interrupt::received().is_some() {
                return Ok(());
            }
            p50.push(r.p50_ns);
            p99.push(r.p99_ns);
            p999.push(r.p999_ns);
            max.push(r.max_ns);
        }
        let (p50, p99, p999, max) = (median(p50), median(p99), median(p999), median(max));
        let chaining_name = if chaining == Chaining::Off {
            "off"
        } else {
            "operators"
        };
        let placement_name = if placement == Placement::WorkStealing {
            "work-stealing"
        } else {
            "per-worker"
        };
        println!(
            "{:<10} {:<14} {:>10.2} M {:>10.2} M {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            chaining_name,
            placement_name,
            capacity / 1e6,
            paced.rate / 1e6,
            p50 as f64 / 1e3,
            p99 as f64 / 1e3,
            p999 as f64 / 1e3,
            max as f64 / 1e3
        );
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({
                    "bench": "latency", "chaining": chaining_name, "placement": placement_name,
                    "rows": rows, "load": load, "capacity_rows_per_s": capacity,
                    "offered_rows_per_s": paced.rate, "p50_ns": p50, "p99_ns": p99,
                    "p999_ns": p999, "max_ns": max,
                })
            )?;
        }
    }
    Ok(())
}
