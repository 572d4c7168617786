//! `weir bench placement`: the pipeline bench's stages at parallelism 1 and 2 under each
//! placement of tasks on workers, interleaved, with each variant's run-to-run spread.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench::placement::{self, Shape, Variant};
use weir_workloads::bench::{self, median, rate};

use crate::{open_json, Error};

/// The pipeline at parallelism 1 and 2 under each placement, with run-to-run spread.
#[derive(Args)]
pub struct PlacementArgs {
    /// Rows per run (the default makes a run last a few hundred milliseconds, so that thread and
    /// runtime start-up do not dominate its time).
    #[arg(long, visible_alias = "rows", default_value_t = 200_000_000)]
    pub records: u64,
    /// Runs per variant (interleaved); medians and spread are reported.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: PlacementArgs) -> Result<(), Error> {
    let PlacementArgs {
        records,
        runs,
        workers,
        json,
    } = args;
    let mut out = open_json(&json)?;
    let (expected, _) = bench::pipeline::fused(records);
    println!(
        "{:>5} {:<18} {:>12} {:>12} {:>12} {:>8}",
        "shape", "placement", "median rows/s", "min rows/s", "max rows/s", "spread"
    );
    for shape in [Shape::P1, Shape::P2] {
        let mut times = vec![Vec::new(); Variant::ALL.len()];
        for _ in 0..runs.max(1) {
            for (k, &variant) in Variant::ALL.iter().enumerate() {
                let (sum, t) = placement::run_once(records, shape, variant, workers)?;
                if weir::interrupt::received().is_some() {
                    return Ok(());
                }
                if sum != expected {
                    return Err(format!(
                        "{} at parallelism {}: sum {sum} differs from the fused loop's {expected}",
                        variant.name(),
                        shape.parallelism()
                    )
                    .into());
                }
                times[k].push(t);
            }
        }
        for (k, variant) in Variant::ALL.iter().enumerate() {
            let ts = &times[k];
            let med = rate(records, median(ts.clone()));
            let min = rate(records, ts.iter().copied().max().unwrap_or_default());
            let max = rate(records, ts.iter().copied().min().unwrap_or_default());
            let spread = placement::spread(ts);
            println!(
                "{:>5} {:<18} {:>10.1} M {:>10.1} M {:>10.1} M {:>7.1}%",
                format!("p{}", shape.parallelism()),
                variant.name(),
                med / 1e6,
                min / 1e6,
                max / 1e6,
                spread * 100.0
            );
            if let Some(f) = out.as_mut() {
                writeln!(
                    f,
                    "{}",
                    serde_json::json!({
                        "bench": "placement", "parallelism": shape.parallelism(),
                        "placement": variant.name(), "records": records, "runs": runs,
                        "median_rows_per_s": med, "min_rows_per_s": min, "max_rows_per_s": max,
                        "spread": spread,
                    })
                )?;
            }
        }
    }
    Ok(())
}
