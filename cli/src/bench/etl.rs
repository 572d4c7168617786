//! `weir bench etl`: CSV → Parquet, weir's parallel pipeline against one thread of arrow-csv →
//! parquet, on the same generated orders.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench::{self, median, rate};

use crate::{open_json, Error};

/// CSV → Parquet: weir's parallel pipeline against one thread of arrow-csv → parquet.
#[derive(Args)]
pub struct EtlArgs {
    /// Orders in the generated (clean) input.
    #[arg(long, visible_alias = "rows", default_value_t = 1_000_000)]
    pub records: u64,
    /// Runs per variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// weir's parse instances (default: cores).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// weir's Parquet writers (default: cores).
    #[arg(long)]
    pub writers: Option<usize>,
    /// Rows per batch in both programs.
    #[arg(long, default_value_t = 8192)]
    pub batch_rows: usize,
    /// Working directory for the input and outputs.
    #[arg(long, default_value = "./out/bench-etl")]
    pub dir: PathBuf,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: EtlArgs) -> Result<(), Error> {
    let EtlArgs {
        records: rows,
        runs,
        parallelism,
        writers,
        batch_rows,
        dir,
        json,
    } = args;
    let mut out = open_json(&json)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (parallelism, writers) = (parallelism.unwrap_or(cores), writers.unwrap_or(cores));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("orders-clean.csv");
    weir_workloads::etl::generate_orders_csv_with(&input, rows, 42, 0)?;
    let bytes = std::fs::metadata(&input)?.len();
    println!(
        "input: {rows} rows, {:.1} MB; weir: {parallelism} parse instances, {writers} writers",
        bytes as f64 / 1e6
    );
    let (mut tb, mut tw) = (Vec::new(), Vec::new());
    let (mut cb, mut cw) = (Vec::new(), Vec::new());
    let cpu = || bench::etl::process_cpu_time().unwrap_or_default();
    let mut bottleneck = String::new();
    for run in 0..runs.max(1) {
        let (b_out, w_out) = (dir.join("baseline"), dir.join("weir"));
        for d in [&b_out, &w_out] {
            if d.exists() {
                std::fs::remove_dir_all(d)?;
            }
        }
        let c0 = cpu();
        let (b_rows, b) = bench::etl::baseline(&input, &b_out, batch_rows)?;
        let c1 = cpu();
        let (w_rows, w, report) =
            bench::etl::weir(&input, &w_out, batch_rows, parallelism, writers)?;
        if weir::interrupt::received().is_some() {
            return Ok(());
        }
        let c2 = cpu();
        cb.push(c1.saturating_sub(c0));
        cw.push(c2.saturating_sub(c1));
        if b_rows != rows || w_rows != rows {
            return Err(
                format!("rows written: baseline {b_rows}, weir {w_rows}, input {rows}").into(),
            );
        }
        bottleneck = report.bottleneck.map(|b| b.operator).unwrap_or_default();
        println!(
            "run {run}: baseline {:.3} s ({:.2} s CPU), weir {:.3} s ({:.2} s CPU)",
            b.as_secs_f64(),
            cb[cb.len() - 1].as_secs_f64(),
            w.as_secs_f64(),
            cw[cw.len() - 1].as_secs_f64()
        );
        tb.push(b);
        tw.push(w);
    }
    let (b, w) = (median(tb), median(tw));
    let (bc, wc) = (median(cb), median(cw));
    let mb = |d: std::time::Duration| bytes as f64 / 1e6 / d.as_secs_f64().max(1e-12);
    println!(
        "{:>10} {:>14} {:>10} {:>10} {:>10}",
        "", "rows/s", "MB/s", "median s", "CPU s"
    );
    println!(
        "{:>10} {:>12.2} M {:>10.1} {:>10.3} {:>10.2}",
        "baseline",
        rate(rows, b) / 1e6,
        mb(b),
        b.as_secs_f64(),
        bc.as_secs_f64()
    );
    println!(
        "{:>10} {:>12.2} M {:>10.1} {:>10.3} {:>10.2}",
        "weir",
        rate(rows, w) / 1e6,
        mb(w),
        w.as_secs_f64(),
        wc.as_secs_f64()
    );
    println!(
        "weir / baseline: {:.2}x (bottleneck: {bottleneck})",
        b.as_secs_f64() / w.as_secs_f64().max(1e-12)
    );
    if let Some(f) = out.as_mut() {
        writeln!(
            f,
            "{}",
            serde_json::json!({
                "bench": "etl", "rows": rows, "bytes": bytes, "runs": runs,
                "parallelism": parallelism, "writers": writers, "batch_rows": batch_rows,
                "baseline_rows_per_s": rate(rows, b), "weir_rows_per_s": rate(rows, w),
                "baseline_mb_per_s": mb(b), "weir_mb_per_s": mb(w),
                "ratio": b.as_secs_f64() / w.as_secs_f64().max(1e-12),
                "baseline_cpu_s": bc.as_secs_f64(), "weir_cpu_s": wc.as_secs_f64(),
            })
        )?;
    }
    Ok(())
}
