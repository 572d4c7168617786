//! `weir bench ingest`: HTTP ingest throughput and `202` latency, accepted against durable.

use std::path::PathBuf;

use clap::Args;

use crate::{open_json, Error};

/// HTTP ingest throughput and acknowledgement latency, with `202` once records are in the
/// hand-off and once they are fsynced to the write-ahead log, side by side.
#[derive(Args)]
pub struct IngestArgs {
    /// Concurrent clients posting back to back.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Records per request body.
    #[arg(long, default_value_t = 100)]
    pub records_per_body: usize,
    /// Bytes of one record.
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Seconds each mode is measured.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Milliseconds between the durable source's barriers.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Where the log and the output parts go (a directory per run is made and removed).
    #[arg(long, default_value = "target/bench-ingest")]
    pub scratch: PathBuf,
    /// Write one JSON object per mode, per line, here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the bench and prints its table (and JSON lines, with `--json`).
pub fn run(args: IngestArgs) -> Result<(), Error> {
    let IngestArgs {
        clients,
        records_per_body,
        record_bytes,
        duration,
        commit_interval_ms,
        scratch,
        json,
    } = args;
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
        "ack", "clients", "records", "records/s", "p50 ms", "p99 ms", "refused", "delivered"
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
    Ok(())
}
