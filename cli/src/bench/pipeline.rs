//! `weir bench pipeline`: source → map → filter → sink on `u64` against the hand-fused loop and
//! a one-thread batched loop, over batch sizes.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench::{self, median, rate};

use crate::{edge_target, open_json, Error};

/// source → map → filter → sink on u64 against the hand-fused loop, over batch sizes.
#[derive(Args)]
pub struct PipelineArgs {
    /// Rows per run.
    #[arg(long, visible_alias = "rows", default_value_t = 50_000_000)]
    pub records: u64,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024,4096")]
    pub batch_sizes: Vec<usize>,
    /// Runs per variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Time each edge buffers at its consumer's rate, ms (0: rows and bytes only; default:
    /// the pipeline's, `PipelineConfig::edge_target_time`).
    #[arg(long)]
    pub edge_target_ms: Option<u64>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: PipelineArgs) -> Result<(), Error> {
    let PipelineArgs {
        records,
        batch_sizes,
        runs,
        workers,
        edge_target_ms,
        json,
    } = args;
    let edge_target = edge_target(edge_target_ms);
    let mut out = open_json(&json)?;
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>8} {:>8}",
        "batch", "weir rows/s", "fused rows/s", "1-thread batched", "weir/fused", "correct"
    );
    for &bs in &batch_sizes {
        let (mut tw, mut tf, mut tb) = (Vec::new(), Vec::new(), Vec::new());
        let mut correct = true;
        let mut bottleneck = String::new();
        for _ in 0..runs.max(1) {
            let (fs, f) = bench::pipeline::fused(records);
            let (ws, w, report) = bench::pipeline::weir(records, bs, workers, edge_target)?;
            if weir::interrupt::received().is_some() {
                return Ok(());
            }
            let (bsum, bt) = bench::pipeline::batched(records, bs);
            correct &= ws == fs && bsum == fs;
            bottleneck = report.bottleneck.map(|b| b.operator).unwrap_or_default();
            tf.push(f);
            tw.push(w);
            tb.push(bt);
        }
        let (w, f, bt) = (median(tw), median(tf), median(tb));
        let (wr, fr, br) = (rate(records, w), rate(records, f), rate(records, bt));
        println!(
            "{bs:>6} {:>12.1} M {:>12.1} M {:>12.1} M {:>8.2} {:>8}",
            wr / 1e6,
            fr / 1e6,
            br / 1e6,
            wr / fr,
            correct
        );
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({
                    "bench": "pipeline", "batch_rows": bs, "records": records, "runs": runs,
                    "weir_rows_per_s": wr, "fused_rows_per_s": fr, "batched_rows_per_s": br,
                    "ratio_to_fused": wr / fr, "correct": correct, "bottleneck": bottleneck,
                })
            )?;
        }
        if !correct {
            return Err("weir's result differs from the fused loop's".into());
        }
    }
    Ok(())
}
