//! The orders ETL job: CSV orders in, clean Parquet orders, revenue by country and UTC day and
//! by country and event-time hour, the rows late for their hour, and NDJSON dead letters out.
//!
//! ```text
//! cargo run --release --example etl                       # generate 1 000 000 orders, run on them
//! cargo run --release --example etl -- --records 10000000
//! cargo run --release --example etl -- --input orders.csv --out /tmp/out
//! cargo run --release --example etl -- --max-delay-ms 600000   # rows 10 minutes out of order are late
//! cargo run --release --example etl -- --input orders.csv --checkpoint-dir /tmp/chk   # survives kill -9
//! ```
//!
//! Without `--input` it first writes `--records` (alias `--rows`) generated orders (about 0.5 % malformed) to
//! `OUT/input/orders.csv`. It prints the run report, then one JSON line with the job's figures.
//! The outputs are published together, each with a `_SUCCESS` naming the run, only when the
//! whole input was read: SIGINT or SIGTERM drains the pipeline, prints the report marked
//! stopped, keeps the previous outputs and exits with 130 or 143.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mimalloc::MiMalloc;
use weir_workloads::etl::{generate_orders_csv, job};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    about = "Orders ETL: CSV → clean Parquet + revenue by country/day and country/hour + late rows + dead letters"
)]
struct Args {
    /// An orders CSV file or a directory of them (default: generate `--records` orders first).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "./out")]
    out: PathBuf,
    /// Orders to generate when no `--input` is given.
    #[arg(long = "records", visible_alias = "rows", default_value_t = 1_000_000)]
    rows: u64,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Parse instances (default: the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// How far the watermark trails the largest event time seen, in ms: the disorder the
    /// hourly table absorbs before a row is late.
    #[arg(long, default_value_t = job::DEFAULT_MAX_DELAY_MS)]
    max_delay_ms: u64,
    /// Write checkpoints here; a directory holding a complete checkpoint of an unfinished run
    /// resumes it (after a crash or `kill -9`), so the published output equals an
    /// uninterrupted run's.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, ms (with `--checkpoint-dir`).
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let input = match args.input {
        Some(input) => input,
        None => {
            let dir = args.out.join("input");
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
            let path = dir.join("orders.csv");
            let start = Instant::now();
            let summary = generate_orders_csv(&path, args.rows, args.seed)?;
            eprintln!(
                "generated {} orders ({} malformed) in {} in {:.2} s",
                summary.rows,
                summary.malformed.len(),
                path.display(),
                start.elapsed().as_secs_f64()
            );
            path
        }
    };
    let mut config = job::EtlConfig::new(input, &args.out);
    if let Some(p) = args.parallelism {
        config.parallelism = p;
        config.writers = p;
    }
    config.batch_rows = args.batch_rows;
    config.max_delay_ms = args.max_delay_ms;
    config.checkpoint_dir = args.checkpoint_dir;
    config.checkpoint_interval_ms = args.checkpoint_interval_ms;
    let stop = job::EtlStop::new();
    stop.stop_on_signals()?;
    eprintln!(
        "etl: {} → {}; SIGINT (Ctrl-C) or SIGTERM stops the run, which then publishes nothing",
        config.input.display(),
        config.out.display()
    );
    let (summary, report) = job::run_until(&config, &stop)?;
    if summary.stopped {
        println!("STOPPED by a signal: the report covers the rows read before the stop");
    }
    println!("{report}");
    for note in &summary.notes {
        eprintln!("note: {note}");
    }
    for (name, parts) in [
        ("orders_clean", &summary.parts.clean),
        ("revenue_by_country_day", &summary.parts.revenue),
        ("dead_letters", &summary.parts.dead_letters),
        ("revenue_by_country_hour", &summary.parts.hourly),
        ("late_rows", &summary.parts.late),
    ] {
        let files: usize = parts.iter().map(|s| s.files.len()).sum();
        let rows: u64 = parts.iter().map(|s| s.rows).sum();
        let place = if summary.published {
            "published under"
        } else {
            "discarded, not published to"
        };
        println!(
            "{name}: {rows} rows in {files} part file(s) {place} {}",
            args.out.join(name).display()
        );
    }
    let mut line = serde_json::to_value(&summary)?;
    if let Some(obj) = line.as_object_mut() {
        obj.insert(
            "peak_rss_bytes".into(),
            weir_workloads::peak_rss_bytes().map_or(serde_json::Value::Null, Into::into),
        );
        obj.insert(
            "peak_in_flight_bytes".into(),
            report.peak_in_flight_bytes.into(),
        );
    }
    println!("{line}");
    Ok(match stop.exit_code() {
        Some(code) if summary.stopped => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    })
}
