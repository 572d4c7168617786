//! The `weir` command line: run a job, print its graph, or run a benchmark.

use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use weir_workloads::bench::skew::{RunIn, SkewConfig, SkewStrategy};
use weir_workloads::bench::{self, median, rate};

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
    /// Run a job and print its report. SIGINT (Ctrl-C) or SIGTERM stops the sources; the
    /// pipeline drains, the report is printed, and the exit code is 130 or 143.
    Run {
        #[command(subcommand)]
        job: Job,
    },
    /// Print a job's graph in Graphviz DOT.
    Graph {
        /// The job (`demo`, `etl`).
        job: String,
    },
    /// Run a benchmark beside its baseline.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Job {
    /// Generated orders, filtered and mapped, fanned out into a sum and a count.
    Demo {
        /// Orders to generate.
        #[arg(long, visible_alias = "rows", default_value_t = 10_000_000)]
        records: u64,
        /// Limit the count sink to this many rows per second (the pipeline follows it).
        #[arg(long)]
        sink_rate: Option<f64>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Orders CSV → clean Parquet, revenue by country and day, dead letters.
    Etl {
        /// Orders to generate when no `--input` is given.
        #[arg(long, visible_alias = "rows", default_value_t = 1_000_000)]
        records: u64,
        /// An orders CSV file or directory (default: generate `--records` orders).
        #[arg(long)]
        input: Option<PathBuf>,
        /// The output directory.
        #[arg(long, default_value = "./out")]
        out: PathBuf,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// source → map → filter → sink on u64 against the hand-fused loop, over batch sizes.
    Pipeline {
        /// Rows per run.
        #[arg(long, visible_alias = "rows", default_value_t = 50_000_000)]
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
    /// CSV → Parquet: weir's parallel pipeline against one thread of arrow-csv → parquet.
    Etl {
        /// Orders in the generated (clean) input.
        #[arg(long, visible_alias = "rows", default_value_t = 1_000_000)]
        records: u64,
        /// Runs per variant (interleaved); medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// weir's parse instances (default: cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// weir's Parquet writers (default: cores).
        #[arg(long)]
        writers: Option<usize>,
        /// Rows per batch in both programs.
        #[arg(long, default_value_t = 8192)]
        batch_rows: usize,
        /// Working directory for the input and outputs.
        #[arg(long, default_value = "./out/bench-etl")]
        dir: PathBuf,
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
    /// HTTP ingest throughput and acknowledgement latency, with `202` once records are in the
    /// hand-off and once they are fsynced to the write-ahead log, side by side.
    Ingest {
        /// Concurrent clients posting back to back.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Records per request body.
        #[arg(long, default_value_t = 100)]
        records_per_body: usize,
        /// Bytes of one record.
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
        /// Seconds each mode is measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Milliseconds between the durable source's barriers.
        #[arg(long, default_value_t = 1000)]
        commit_interval_ms: u64,
        /// Where the log and the output parts go (a directory per run is made and removed).
        #[arg(long, default_value = "target/bench-ingest")]
        scratch: PathBuf,
        /// Write one JSON object per mode, per line, here.
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
        #[arg(long, visible_alias = "rows", default_value_t = 2_000_000)]
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
        /// Measure every run in this process instead of a process of its own (quicker; a run's
        /// peak RSS then includes memory earlier runs left in the allocator).
        #[arg(long)]
        same_process: bool,
    },
    /// One run of `bench skew`, in a process of its own; prints its outcome as one JSON line.
    #[command(hide = true)]
    SkewRun {
        #[arg(long)]
        zipf: f64,
        #[arg(long)]
        strategy: SkewStrategy,
        #[arg(long)]
        partitions: usize,
        #[arg(long)]
        keys: u64,
        #[arg(long)]
        records: u64,
        #[arg(long)]
        spin_iters: u64,
        #[arg(long)]
        combine_capacity: usize,
        #[arg(long)]
        batch_rows: usize,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        worker_capacity: Option<NonZeroU64>,
        #[arg(long)]
        workers: Option<usize>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let result = real_main(Cli::parse());
    // A run a signal stopped drained and printed what it had; the exit code says it was stopped
    // (an error it caused, such as a benchmark's short count, is a consequence, not the cause).
    if let Some(signal) = weir::interrupt::received() {
        if let Err(e) = result {
            eprintln!("after {signal}: {e}");
        }
        eprintln!("stopped by {signal}");
        return weir::interrupt::exit_code(Some(signal));
    }
    match result {
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
        weir_workloads::jobs::JOBS.join(", ")
    )
    .into()
}

fn real_main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run {
            job:
                Job::Etl {
                    records,
                    input,
                    out,
                    json,
                },
        } => run_etl(input, out, records, json)?,
        Command::Run {
            job:
                Job::Demo {
                    records,
                    sink_rate,
                    json,
                },
        } => {
            if sink_rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err("--sink-rate must be a positive number of rows per second".into());
            }
            let interrupts = weir::interrupt::install()?;
            let (pipeline, results) = weir_workloads::jobs::demo(records, sink_rate);
            let handle = pipeline.spawn()?;
            interrupts.watch(&handle);
            eprintln!("running `demo`; Ctrl-C or SIGTERM stops the sources and drains");
            let report = handle.join()?;
            let stopped_by = interrupts.received();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
                println!(
                    "big orders: {}, their cents: {}",
                    results.count.take().unwrap_or_default(),
                    results.sum.take().unwrap_or_default()
                );
                if let Some(signal) = stopped_by {
                    println!("stopped by {signal}: the sources ended early, the counts cover what was read");
                }
            }
        }
        Command::Graph { job } => {
            let pipeline = match job.as_str() {
                "demo" => weir_workloads::jobs::demo(0, None).0,
                // Building the job reads nothing: the input is opened when the run starts.
                "etl" => {
                    let config = weir_workloads::jobs::etl::EtlConfig::new("orders.csv", "./out");
                    weir_workloads::jobs::etl::build(&config)?.pipeline
                }
                _ => return Err(unknown_job(&job)),
            };
            print!("{}", pipeline.to_dot());
        }
        Command::Bench { bench } => {
            weir::interrupt::install()?;
            run_bench(bench)?
        }
    }
    Ok(())
}

fn run_etl(input: Option<PathBuf>, out: PathBuf, rows: u64, json: bool) -> Result<(), Error> {
    use weir_workloads::jobs::etl;
    let input = match input {
        Some(input) => input,
        None => {
            let dir = out.join("input");
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
            let path = dir.join("orders.csv");
            weir_workloads::etl::generate_orders_csv(&path, rows, 42)?;
            path
        }
    };
    // SIGINT / SIGTERM: the sources stop, the pipeline drains, the report is printed and
    // nothing is published.
    let stop = etl::EtlStop::new();
    stop.stop_on_signals()?;
    eprintln!(
        "etl: {} → {}; SIGINT (Ctrl-C) or SIGTERM stops the run, which then publishes nothing",
        input.display(),
        out.display()
    );
    let (summary, report) = etl::run_until(&etl::EtlConfig::new(input, out), &stop)?;
    if summary.stopped {
        println!("STOPPED by a signal: the report covers the rows read before the stop");
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    let mut line = serde_json::to_value(&summary)?;
    if let Some(obj) = line.as_object_mut() {
        obj.insert(
            "peak_rss_bytes".into(),
            weir_workloads::peak_rss_bytes().map_or(serde_json::Value::Null, Into::into),
        );
    }
    println!("{line}");
    if let (true, Some(code)) = (summary.stopped, stop.exit_code()) {
        std::io::stdout().flush()?;
        std::process::exit(code.into());
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
    if !matches!(b, Bench::SkewRun { .. }) {
        println!("machine: {cores} cores, {cpu}");
    }
    match b {
        Bench::SkewRun {
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
        } => {
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
            let outcome =
                bench::skew::measure(&cfg, zipf, strategy, partitions, spin_iters, &reference)?;
            println!("{}", serde_json::to_string(&outcome)?);
        }
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
        }
        Bench::Etl {
            records: rows,
            runs,
            parallelism,
            writers,
            batch_rows,
            dir,
            json,
        } => {
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
                    return Err(format!(
                        "rows written: baseline {b_rows}, weir {w_rows}, input {rows}"
                    )
                    .into());
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
        Bench::Ingest {
            clients,
            records_per_body,
            record_bytes,
            duration,
            commit_interval_ms,
            scratch,
            json,
        } => {
            use weir_workloads::bench::ingest::{self, IngestBenchConfig};
            let config = IngestBenchConfig {
                clients: clients.max(1),
                records_per_body: records_per_body.max(1),
                record_bytes,
                duration: std::time::Duration::try_from_secs_f64(duration)
                    .map_err(|_| "--duration must be a number of seconds")?,
                commit_interval: std::time::Duration::from_millis(commit_interval_ms.max(1)),
                scratch,
            };
            let mut out = open_json(&json)?;
            println!(
                "{:>9} {:>8} {:>10} {:>12} {:>8} {:>8} {:>8} {:>10}",
                "ack",
                "clients",
                "records",
                "records/s",
                "p50 ms",
                "p99 ms",
                "refused",
                "delivered"
            );
            for durable in [false, true] {
                let row = ingest::run(&config, durable)?;
                println!(
                    "{:>9} {:>8} {:>10} {:>12.0} {:>8.2} {:>8.2} {:>8} {:>10}",
                    row.ack,
                    row.clients,
                    row.records,
                    row.records_per_s,
                    row.p50_ms,
                    row.p99_ms,
                    row.refused,
                    row.delivered
                );
                if let Some(f) = out.as_mut() {
                    use std::io::Write;
                    writeln!(f, "{}", serde_json::to_string(&row)?)?;
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
            same_process,
        } => skew(
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

fn run_overload(
    capacity: f64,
    offered_rps: Option<f64>,
    (duration, recovery, reject_cost_ms): (f64, f64, f64),
    answer_429: bool,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
) -> Result<(), Error> {
    use std::time::Duration;
    use weir_workloads::bench::overload::{self, OverloadConfig};

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
        weir_workloads::bench::overload_plot::write_overload_svg(path, &rows)?;
    }
    Ok(())
}
