//! The `weir` command line: run a job, print its graph, or run a benchmark.

use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use weir::bench::skew::{SkewConfig, SkewStrategy};
use weir::bench::{self, median, rate};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A dataflow runtime where no stage accepts more work than it can finish"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job and print its report (Ctrl-C stops the sources, drains and reports).
    Run {
        /// The job (`demo`).
        job: String,
        /// Rows to generate.
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        /// Limit the sink to this many rows per second.
        #[arg(long)]
        sink_rate: Option<f64>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's graph in Graphviz DOT.
    Graph {
        /// The job (`demo`).
        job: String,
    },
    /// Run a benchmark beside its baseline.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// source → map → filter → sink on u64 against the hand-fused loop, over batch sizes.
    Pipeline {
        /// Rows per run.
        #[arg(long, default_value_t = 50_000_000)]
        records: u64,
        /// Batch sizes to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024,4096")]
        batch_sizes: Vec<usize>,
        /// Runs per variant (interleaved); medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Worker threads (default: cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Write one JSON object per line here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One edge between two threads against crossbeam-channel and tokio mpsc.
    Edge {
        /// Batches per run.
        #[arg(long, default_value_t = 200_000)]
        batches: usize,
        /// Rows (u64) per batch.
        #[arg(long, value_delimiter = ',', default_value = "1,1024")]
        batch_rows: Vec<usize>,
        /// Edge capacity in batches.
        #[arg(long, default_value_t = 16)]
        capacity: usize,
        /// Runs per variant (interleaved); medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Write one JSON object per line here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A keyed count over Zipf-skewed keys under each routing strategy, each run checked
    /// against a sequential HashMap count (a wrong result fails the bench).
    Skew {
        /// Zipf exponents (0 = uniform).
        #[arg(long, value_delimiter = ',', default_value = "0,0.5,1.0,1.5,2.0")]
        zipf: Vec<f64>,
        /// Distinct keys.
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        /// Instances of the keyed operator (a list runs each).
        #[arg(long, value_delimiter = ',', default_value = "16")]
        partitions: Vec<usize>,
        /// Strategies: hash, pkg, pkg-count, split, combine.
        #[arg(long, value_delimiter = ',', default_value = "hash,pkg,split,combine")]
        strategies: Vec<SkewStrategy>,
        /// Records per run.
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        /// Limit every keyed instance to this many rows per second (one machine per instance).
        #[arg(long)]
        worker_capacity: Option<NonZeroU64>,
        /// Real computation per row in the keyed operator, in nanoseconds.
        #[arg(long, default_value_t = 0)]
        work_ns: u64,
        /// Keys the combiner holds (when full it sends its least-updated keys on).
        #[arg(long, default_value_t = 8192)]
        combine_capacity: usize,
        /// Runs per configuration; the median throughput is reported.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Worker threads (default: cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Write one JSON object per line here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw throughput and imbalance against the exponent into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print the run report (per-instance figures, bottleneck) of every median run.
        #[arg(long)]
        reports: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn unknown_job(job: &str) -> Error {
    format!(
        "unknown job `{job}`; known jobs: {}",
        weir::jobs::JOBS.join(", ")
    )
    .into()
}

fn real_main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run {
            job,
            records,
            sink_rate,
            json,
        } => {
            if job != "demo" {
                return Err(unknown_job(&job));
            }
            let (pipeline, results) = weir::jobs::demo(records, sink_rate);
            let handle = pipeline.spawn()?;
            let stop = handle.stop_signal();
            ctrlc::set_handler(move || {
                eprintln!("stopping: sources end their streams, the pipeline drains");
                stop.stop();
            })?;
            let report = handle.join()?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
                println!(
                    "big orders: {}, their cents: {}",
                    results.count.take().unwrap_or_default(),
                    results.sum.take().unwrap_or_default()
                );
            }
        }
        Command::Graph { job } => {
            if job != "demo" {
                return Err(unknown_job(&job));
            }
            let (pipeline, _) = weir::jobs::demo(0, None);
            print!("{}", pipeline.to_dot());
        }
        Command::Bench { bench } => run_bench(bench)?,
    }
    Ok(())
}

fn open_json(path: &Option<PathBuf>) -> Result<Option<std::fs::File>, Error> {
    Ok(match path {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    })
}

fn run_bench(b: Bench) -> Result<(), Error> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cores} cores, {cpu}");
    match b {
        Bench::Pipeline {
            records,
            batch_sizes,
            runs,
            workers,
            json,
        } => {
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
                    let (ws, w, report) = bench::pipeline::weir(records, bs, workers)?;
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
        }
        Bench::Edge {
            batches,
            batch_rows,
            capacity,
            runs,
            json,
        } => {
            let mut out = open_json(&json)?;
            println!(
                "{:>6} {:>16} {:>16} {:>16} {:>10} {:>10}",
                "rows", "weir rows/s", "crossbeam rows/s", "tokio rows/s", "weir/cb", "weir/tokio"
            );
            for &rows in &batch_rows {
                let (mut w, mut c, mut t) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..runs.max(1) {
                    w.push(bench::edge::weir(batches, rows, capacity));
                    c.push(bench::edge::crossbeam(batches, rows, capacity));
                    t.push(bench::edge::tokio_mpsc(batches, rows, capacity));
                }
                let total = (batches * rows) as u64;
                let (wr, cr, tr) = (
                    rate(total, median(w)),
                    rate(total, median(c)),
                    rate(total, median(t)),
                );
                println!(
                    "{rows:>6} {:>14.1} M {:>14.1} M {:>14.1} M {:>10.2} {:>10.2}",
                    wr / 1e6,
                    cr / 1e6,
                    tr / 1e6,
                    wr / cr,
                    wr / tr
                );
                if let Some(f) = out.as_mut() {
                    writeln!(
                        f,
                        "{}",
                        serde_json::json!({
                            "bench": "edge", "batch_rows": rows, "batches": batches,
                            "capacity": capacity, "runs": runs, "weir_rows_per_s": wr,
                            "crossbeam_rows_per_s": cr, "tokio_rows_per_s": tr,
                        })
                    )?;
                }
            }
        }
        Bench::Skew {
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
        } => skew(
            SkewConfig {
                keys,
                records,
                worker_capacity,
                work_ns,
                combine_capacity,
                workers,
                ..SkewConfig::default()
            },
            &zipf,
            &partitions,
            &strategies,
            runs,
            json,
            plot,
            reports,
        )?,
    }
    Ok(())
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
