//! `weir bench skew`: a keyed count over Zipf-skewed keys under each routing strategy, each
//! run checked against a sequential `HashMap` count; and `weir bench skew-run`, one such run in a
//! process of its own.

use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench;
use weir_workloads::bench::skew::{RunIn, SkewConfig, SkewStrategy};

use crate::{open_json, Error};

/// A keyed count over Zipf-skewed keys under each routing strategy, each run checked
/// against a sequential HashMap count (a wrong result fails the bench).
#[derive(Args)]
pub struct SkewArgs {
    /// Zipf exponents (0 = uniform).
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1.0,1.5,2.0")]
    pub zipf: Vec<f64>,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Instances of the keyed operator (a list runs each).
    #[arg(long, value_delimiter = ',', default_value = "16")]
    pub partitions: Vec<usize>,
    /// Strategies: hash, pkg, pkg-count, split, combine.
    #[arg(long, value_delimiter = ',', default_value = "hash,pkg,split,combine")]
    pub strategies: Vec<SkewStrategy>,
    /// Records per run.
    #[arg(long, visible_alias = "rows", default_value_t = 2_000_000)]
    pub records: u64,
    /// Limit every keyed instance to this many rows per second (one machine per instance).
    #[arg(long)]
    pub worker_capacity: Option<NonZeroU64>,
    /// Real computation per row in the keyed operator, in nanoseconds.
    #[arg(long, default_value_t = 0)]
    pub work_ns: u64,
    /// Keys the combiner holds (when full it sends its least-updated keys on).
    #[arg(long, default_value_t = 8192)]
    pub combine_capacity: usize,
    /// Runs per configuration; the median throughput is reported.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput and imbalance against the exponent into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the run report (per-instance figures, bottleneck) of every median run.
    #[arg(long)]
    pub reports: bool,
    /// Measure every run in this process instead of a process of its own (quicker; a run's
    /// peak RSS then includes memory earlier runs left in the allocator).
    #[arg(long)]
    pub same_process: bool,
}

/// Runs every configuration, prints the table (and JSON lines, a chart), and fails on a wrong
/// count.
pub fn run(args: SkewArgs) -> Result<(), Error> {
    let SkewArgs {
        zipf,
        keys,
        partitions,
        strategies,
        records,
        worker_capacity,
        work_ns,
        combine_capacity,
        runs,
        workers,
        json,
        plot,
        reports,
        same_process,
    } = args;
    skew(
        SkewConfig {
            keys,
            records,
            worker_capacity,
            work_ns,
            combine_capacity,
            workers,
            run_in: if same_process {
                RunIn::ThisProcess
            } else {
                RunIn::OwnProcess(std::env::current_exe()?)
            },
            ..SkewConfig::default()
        },
        &zipf,
        &partitions,
        &strategies,
        runs,
        json,
        plot,
        reports,
    )
}

#[allow(clippy::too_many_arguments)]
fn skew(
    cfg: SkewConfig,
    zipf: &[f64],
    partitions: &[usize],
    strategies: &[SkewStrategy],
    runs: usize,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    reports: bool,
) -> Result<(), Error> {
    let mut out = open_json(&json)?;
    println!(
        "keyed count: {} records, {} keys, batch {}, worker capacity {}, work {} ns/row, {} run(s)",
        cfg.records,
        cfg.keys,
        cfg.batch_rows,
        cfg.worker_capacity
            .map_or("none (instances share the cores)".to_string(), |r| format!(
                "{r} rows/s"
            )),
        cfg.work_ns,
        runs
    );
    println!("peak RSS: {}", cfg.run_in.rss_scope());
    println!(
        "{:>5} {:>9} {:>4} {:>11} {:>9} {:>10} {:>12} {:>7} {:>9} {:>8} {:>11} {:>7}",
        "zipf",
        "strategy",
        "p",
        "rows/s",
        "imbal.",
        "shuffled",
        "shuffled %",
        "src bp",
        "peak RSS",
        "correct",
        "seq rows/s",
        "vs z=0"
    );
    let mut written = Vec::new();
    let mut io_error = None;
    let results = bench::skew::run_matrix(&cfg, zipf, partitions, strategies, runs, |r| {
        let vs = bench::skew::ratio_to_uniform(&written, r)
            .map_or("-".to_string(), |x| format!("{x:.2}"));
        let row = &r.row;
        println!(
            "{:>5.2} {:>9} {:>4} {:>9.2} M {:>9.3} {:>10} {:>11.1}% {:>7.2} {:>6.1} MiB {:>8} {:>9.2} M {:>7}",
            row.zipf,
            row.strategy,
            row.partitions,
            row.rows_per_s / 1e6,
            row.imbalance,
            row.shuffled_rows,
            row.shuffled_rows as f64 * 100.0 / row.records.max(1) as f64,
            row.source_backpressured_ratio,
            row.peak_rss_bytes as f64 / (1 << 20) as f64,
            row.correct,
            r.sequential_rows_per_s / 1e6,
            vs,
        );
        if let Some(f) = out.as_mut() {
            let line = serde_json::to_string(r).map_err(std::io::Error::other);
            if let Err(e) = line.and_then(|l| writeln!(f, "{l}")) {
                io_error.get_or_insert(e);
            }
        }
        if reports {
            println!("{}", r.report);
        }
        written.push(r.clone());
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if let Some(path) = plot {
        let rows: Vec<_> = results.iter().map(|r| r.row.clone()).collect();
        bench::skew_plot::write_skew_svg(&path, &rows)?;
        println!("chart: {}", path.display());
    }
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| !r.row.correct)
        .map(|r| {
            format!(
                "{} at zipf {} (p={})",
                r.row.strategy, r.row.zipf, r.row.partitions
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Err(format!("wrong keyed counts: {}", wrong.join(", ")).into());
    }
    Ok(())
}

/// One run of `bench skew`, in a process of its own; prints its outcome as one JSON line.
#[derive(Args)]
pub struct SkewRunArgs {
    #[arg(long)]
    pub zipf: f64,
    #[arg(long)]
    pub strategy: SkewStrategy,
    #[arg(long)]
    pub partitions: usize,
    #[arg(long)]
    pub keys: u64,
    #[arg(long)]
    pub records: u64,
    #[arg(long)]
    pub spin_iters: u64,
    #[arg(long)]
    pub combine_capacity: usize,
    #[arg(long)]
    pub batch_rows: usize,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub worker_capacity: Option<NonZeroU64>,
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Measures one run and prints its outcome as one JSON line (what `weir bench skew` reads).
pub fn run_one(args: SkewRunArgs) -> Result<(), Error> {
    let SkewRunArgs {
        zipf,
        strategy,
        partitions,
        keys,
        records,
        spin_iters,
        combine_capacity,
        batch_rows,
        seed,
        worker_capacity,
        workers,
    } = args;
    let cfg = SkewConfig {
        keys,
        records,
        worker_capacity,
        combine_capacity,
        batch_rows,
        workers,
        seed,
        ..SkewConfig::default()
    };
    let (reference, _) = bench::skew::sequential_count(&cfg, zipf)?;
    let outcome = bench::skew::measure(&cfg, zipf, strategy, partitions, spin_iters, &reference)?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}
