//! The `weir` command line: run a job, print its graph, or run a benchmark.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
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
    /// A service overloaded at 2× its capacity: a naive retrying client beside weir's HTTP sink.
    Overload {
        /// The service's capacity, requests per second.
        #[arg(long, default_value_t = 500.0)]
        capacity: f64,
        /// The offered load during the overload phase, requests per second (default 2 × capacity).
        #[arg(long)]
        offered_rps: Option<f64>,
        /// Seconds of overload, followed by `--recovery` seconds at half the capacity.
        #[arg(long, default_value_t = 6.0)]
        duration: f64,
        /// Seconds at half the capacity after the overload.
        #[arg(long, default_value_t = 3.0)]
        recovery: f64,
        /// The service answers 429 with Retry-After instead of 503.
        #[arg(long)]
        answer_429: bool,
        /// Milliseconds of service time a rejection costs (it loads the service meanwhile);
        /// 0 makes rejections free.
        #[arg(long, default_value_t = 5.0)]
        reject_cost_ms: f64,
        /// Write one JSON object per client, per line, here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw goodput and attempts over time, for both clients, as SVG here.
        #[arg(long)]
        plot: Option<PathBuf>,
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
        Bench::Overload {
            capacity,
            offered_rps,
            duration,
            recovery,
            answer_429,
            reject_cost_ms,
            json,
            plot,
        } => run_overload(
            capacity,
            offered_rps,
            (duration, recovery, reject_cost_ms),
            answer_429,
            json,
            plot,
        )?,
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
    }
    Ok(())
}

fn run_overload(
    capacity: f64,
    offered_rps: Option<f64>,
    (duration, recovery, reject_cost_ms): (f64, f64, f64),
    answer_429: bool,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
) -> Result<(), Error> {
    use std::time::Duration;
    use weir::bench::overload::{self, OverloadConfig};

    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} must be a number of seconds"))
    };
    let offered = offered_rps.unwrap_or(2.0 * capacity);
    let mut config = OverloadConfig::new(capacity, offered, secs(duration, "duration")?);
    config.recovery = secs(recovery, "recovery")?;
    config.answer_429 = answer_429;
    config.rejection_cost = secs(reject_cost_ms / 1e3, "reject-cost-ms")?;
    println!(
        "service: capacity {capacity:.0}/s ({} at once, {:?} base latency, rejections cost {:?}); offered {offered:.0}/s for {duration} s, then {:.0}/s for {recovery} s",
        config.service_concurrency(),
        config.base_latency,
        config.rejection_cost,
        config.low_rps
    );
    let rows = overload::run(&config)?;
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>14} {:>9} {:>9} {:>9} {:>10}",
        "client",
        "arrivals",
        "attempts",
        "success",
        "failed",
        "shed",
        "amplification",
        "goodput",
        "p50 ms",
        "p99 ms",
        "recovery s"
    );
    for r in &rows {
        println!(
            "{:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>14.3} {:>7.0}/s {:>9.1} {:>9.1} {:>10}",
            r.client,
            r.arrivals,
            r.attempts,
            r.successes,
            r.failed,
            r.shed,
            r.amplification,
            r.goodput_rps,
            r.p50_ms,
            r.p99_ms,
            r.recovery_s
                .map_or("never".to_string(), |s| format!("{s:.0}")),
        );
    }
    if let Some(weir) = rows.iter().find(|r| r.client == "weir") {
        println!(
            "weir targets at X = {:.1} × C: amplification {:.3} (≤ 1.1: {}), goodput {:.1} % of C (≥ 90 %: {})",
            offered / capacity,
            weir.amplification,
            if weir.amplification <= 1.1 { "met" } else { "missed" },
            weir.goodput_ratio * 100.0,
            if weir.goodput_ratio >= 0.9 { "met" } else { "missed" },
        );
    }
    if let Some(path) = &json {
        let mut f = std::fs::File::create(path)?;
        for r in &rows {
            let mut v = serde_json::to_value(r)?;
            v["bench"] = serde_json::json!("overload");
            writeln!(f, "{}", serde_json::to_string(&v)?)?;
        }
    }
    if let Some(path) = &plot {
        weir::bench::overload_plot::write_overload_svg(path, &rows)?;
    }
    Ok(())
}
