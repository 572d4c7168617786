//! `weir bench edge`: one edge between two threads (and two tasks) against crossbeam-channel
//! and tokio mpsc.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench::{self, median, rate};

use crate::{open_json, Error};

/// One edge between two threads against crossbeam-channel and tokio mpsc.
#[derive(Args)]
pub struct EdgeArgs {
    /// Batches per run.
    #[arg(long, default_value_t = 200_000)]
    pub batches: usize,
    /// Rows (u64) per batch.
    #[arg(long, value_delimiter = ',', default_value = "1,1024")]
    pub batch_rows: Vec<usize>,
    /// Edge capacity in batches.
    #[arg(long, default_value_t = 16)]
    pub capacity: usize,
    /// Runs per variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: EdgeArgs) -> Result<(), Error> {
    let EdgeArgs {
        batches,
        batch_rows,
        capacity,
        runs,
        json,
    } = args;
    let mut out = open_json(&json)?;
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "rows",
        "weir tasks/s",
        "weir threads/s",
        "crossbeam/s",
        "tokio mpsc/s",
        "tasks/cb",
        "tasks/tokio"
    );
    for &rows in &batch_rows {
        let (mut w, mut c, mut t) = (Vec::new(), Vec::new(), Vec::new());
        let mut a = Vec::new();
        for _ in 0..runs.max(1) {
            a.push(bench::edge::weir_async(batches, rows, capacity));
            w.push(bench::edge::weir(batches, rows, capacity));
            c.push(bench::edge::crossbeam(batches, rows, capacity));
            t.push(bench::edge::tokio_mpsc(batches, rows, capacity));
        }
        let total = (batches * rows) as u64;
        let (ar, wr, cr, tr) = (
            rate(total, median(a)),
            rate(total, median(w)),
            rate(total, median(c)),
            rate(total, median(t)),
        );
        println!(
            "{rows:>6} {:>12.1} M {:>12.1} M {:>12.1} M {:>12.1} M {:>12.2} {:>12.2}",
            ar / 1e6,
            wr / 1e6,
            cr / 1e6,
            tr / 1e6,
            ar / cr,
            ar / tr
        );
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({
                    "bench": "edge", "batch_rows": rows, "batches": batches,
                    "capacity": capacity, "runs": runs, "weir_tasks_rows_per_s": ar,
                    "weir_threads_rows_per_s": wr,
                    "crossbeam_rows_per_s": cr, "tokio_rows_per_s": tr,
                })
            )?;
        }
    }
    Ok(())
}
