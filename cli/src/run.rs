//! `weir run JOB`: run a job and print its report. SIGINT (Ctrl-C) or SIGTERM stops the
//! sources; the pipeline drains, the report is printed, and the exit code is 130 or 143.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use crate::Error;

/// The jobs `weir run` knows.
#[derive(Subcommand)]
pub enum Job {
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
    /// Orders CSV → clean Parquet, revenue by country and day and by country and hour, late
    /// rows, dead letters.
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
        /// Parse instances, and the parallelism of the stages after them (default: the number
        /// of cores). At 1 the hourly table's watermark follows the file's order alone, so
        /// which rows are late is the same in every run.
        #[arg(long)]
        parallelism: Option<usize>,
        /// Instances writing `orders_clean` (default: the number of cores).
        #[arg(long)]
        writers: Option<usize>,
        /// How far the watermark trails the largest event time seen, in ms: the disorder the
        /// hourly table absorbs before a row is late.
        #[arg(long, default_value_t = weir_workloads::jobs::etl::DEFAULT_MAX_DELAY_MS)]
        max_delay_ms: u64,
        /// Write checkpoints here; a directory holding a complete checkpoint of an unfinished
        /// run resumes it, so the published output equals an uninterrupted run's.
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
        /// Time between checkpoints, ms (with `--checkpoint-dir`).
        #[arg(long, default_value_t = 1000)]
        checkpoint_interval_ms: u64,
        /// Time each edge buffers at its consumer's rate, ms (0: rows and bytes only; default:
        /// the pipeline's, `PipelineConfig::edge_target_time`).
        #[arg(long)]
        edge_target_ms: Option<u64>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `job` to its end (or to a signal) and prints its report.
pub fn run(job: Job) -> Result<(), Error> {
    match job {
        Job::Etl {
            records,
            input,
            out,
            parallelism,
            writers,
            max_delay_ms,
            checkpoint_dir,
            checkpoint_interval_ms,
            edge_target_ms,
            json,
        } => run_etl(
            input,
            out,
            records,
            (parallelism, writers),
            (max_delay_ms, crate::edge_target(edge_target_ms)),
            (checkpoint_dir, checkpoint_interval_ms),
            json,
        ),
        Job::Demo {
            records,
            sink_rate,
            json,
        } => run_demo(records, sink_rate, json),
    }
}

fn run_demo(records: u64, sink_rate: Option<f64>, json: bool) -> Result<(), Error> {
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
            println!(
                "stopped by {signal}: the sources ended early, the counts cover what was read"
            );
        }
    }

    Ok(())
}

fn run_etl(
    input: Option<PathBuf>,
    out: PathBuf,
    rows: u64,
    (parallelism, writers): (Option<usize>, Option<usize>),
    (max_delay_ms, edge_target_time): (u64, Option<std::time::Duration>),
    (checkpoint_dir, checkpoint_interval_ms): (Option<PathBuf>, u64),
    json: bool,
) -> Result<(), Error> {
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
    let mut config = etl::EtlConfig {
        max_delay_ms,
        checkpoint_dir,
        checkpoint_interval_ms,
        edge_target_time,
        ..etl::EtlConfig::new(input, out)
    };
    if let Some(p) = parallelism {
        config.parallelism = p.max(1);
    }
    if let Some(w) = writers {
        config.writers = w.max(1);
    }
    let (summary, report) = etl::run_until(&config, &stop)?;
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
