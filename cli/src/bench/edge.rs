//! `weir bench edge`: one edge between two threads (and two tasks) against crossbeam-channel
//! and tokio mpsc, each allocating every batch and recycling emptied ones.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_workloads::bench::edge::Buffers;
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
        "{:>6} {:>8} {:>14} {:>14} {:>14} {:>14} {:>9} {:>11} {:>11}",
        "rows",
        "buffers",
        "weir tasks/s",
        "weir threads/s",
        "crossbeam/s",
        "tokio mpsc/s",
        "tasks/cb",
        "threads/cb",
        "tasks/tokio"
    );
    for &rows in &batch_rows {
        // Per mode: (weir tasks, weir threads, crossbeam, tokio) durations.
        let mut times: Vec<[Vec<Duration>; 4]> =
            Buffers::ALL.iter().map(|_| Default::default()).collect();
        // Every variant in every mode once per run, interleaved, so drift hits them alike.
        for _ in 0..runs.max(1) {
            for (m, &buffers) in Buffers::ALL.iter().enumerate() {
                let t = &mut times[m];
                t[0].push(bench::edge::weir_async(batches, rows, capacity, buffers));
                t[1].push(bench::edge::weir(batches, rows, capacity, buffers));
                t[2].push(bench::edge::crossbeam(batches, rows, capacity, buffers));
                t[3].push(bench::edge::tokio_mpsc(batches, rows, capacity, buffers));
            }
        }
        let total = (batches * rows) as u64;
        for (m, &buffers) in Buffers::ALL.iter().enumerate() {
            let [ar, wr, cr, tr] = std::mem::take(&mut times[m]).map(|d| rate(total, median(d)));
            println!(
                "{rows:>6} {:>8} {:>12.1} M {:>12.1} M {:>12.1} M {:>12.1} M {:>9.2} {:>11.2} {:>11.2}",
                buffers.name(),
                ar / 1e6,
                wr / 1e6,
                cr / 1e6,
                tr / 1e6,
                ar / cr,
                wr / cr,
                ar / tr
            );
            if let Some(f) = out.as_mut() {
                writeln!(
                    f,
                    "{}",
                    serde_json::json!({
                        "bench": "edge", "batch_rows": rows, "batches": batches,
                        "capacity": capacity, "runs": runs, "buffers": buffers.name(),
                        "weir_tasks_rows_per_s": ar, "weir_threads_rows_per_s": wr,
                        "crossbeam_rows_per_s": cr, "tokio_rows_per_s": tr,
                    })
                )?;
            }
        }
    }
    Ok(())
}
