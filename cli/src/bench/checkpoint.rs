//! `weir bench checkpoint`: checkpoint duration p50 / p99 and the in-flight bytes unaligned
//! checkpoints capture, with the sink — one instance with two input edges — throttled to a
//! fraction of the source rate; then a restore from a checkpoint that holds captured batches.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir::runtime::CheckpointConfig;
use weir_workloads::bench::checkpoint::{self, Throttled};

use crate::{open_json, Error};

/// Checkpoints behind a throttled sink with two input edges, aligned and unaligned.
#[derive(Args)]
pub struct CheckpointArgs {
    /// Seconds each paced run lasts (its rows are the sink's rate times this).
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// The sink's rate as fractions of the unpaced rate (0.1: a tenth).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.01")]
    pub sink_share: Vec<f64>,
    /// Alignment timeouts in ms to run beside aligned-only checkpoints (0: unaligned as soon
    /// as the first barrier arrives).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub timeout_ms: Vec<u64>,
    /// Rounds of every setting.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Rows of each of the three unpaced runs that measure the source rate.
    #[arg(long, default_value_t = 100_000_000)]
    pub unpaced_rows: u64,
    /// Where checkpoints go (default: a fresh temporary directory).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the paced settings, then the restore check; fails on a wrong tally.
pub fn run(args: CheckpointArgs) -> Result<(), Error> {
    let mut out = open_json(&args.json)?;
    let tmp = tempdir(args.checkpoint_dir.as_deref())?;
    let dir = tmp.path.clone();
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(checkpoint::unpaced_rate(args.unpaced_rows)?);
    }
    rates.sort_by(f64::total_cmp);
    let source_rate = rates[1];
    println!(
        "two source instances → one sink instance (two input edges, batches with a codec), \
         unpaced: {:.2} M rows/s (median of 3: {:.2}, {:.2}, {:.2} M); checkpoints every 1 s",
        source_rate / 1e6,
        rates[0] / 1e6,
        rates[1] / 1e6,
        rates[2] / 1e6
    );
    let mut settings: Vec<(String, Option<u64>)> = vec![("aligned".into(), None)];
    settings.extend(
        args.timeout_ms
            .iter()
            .map(|&ms| (format!("timeout {ms} ms"), Some(ms))),
    );
    let mut n = 0;
    for round in 0..args.rounds.max(1) {
        for &share in &args.sink_share {
            let rate = source_rate * share;
            let rows = (rate * args.seconds) as u64;
            for (label, timeout) in &settings {
                n += 1;
                let mut ck = CheckpointConfig::new(dir.join(format!("run-{n}")))
                    .interval(Duration::from_secs(1));
                if let Some(ms) = timeout {
                    ck = ck.alignment_timeout(Duration::from_millis(*ms));
                }
                let t = checkpoint::run_throttled(rows, ck, rate, false)?;
                if t.tally != checkpoint::expected(rows, true) {
                    return Err(format!("{label}: the sink counted {:?}", t.tally).into());
                }
                print_run(round, share, rate, rows, label, &t);
                if let Some(o) = out.as_mut() {
                    writeln!(
                        o,
                        "{}",
                        serde_json::json!({
                            "bench": "checkpoint", "round": round, "sink_share": share,
                            "source_rows_per_s": source_rate, "sink_rows_per_s": rate,
                            "rows": rows, "setting": label, "secs": t.secs,
                            "captured_per_checkpoint": t.captured, "checkpoints": t.report,
                        })
                    )?;
                }
            }
        }
    }
    let share = args.sink_share.first().copied().unwrap_or(0.1);
    let rate = source_rate * share;
    let rows = (rate * args.seconds) as u64;
    for attempt in 0..3 {
        let Some(r) =
            checkpoint::restore_check(&dir.join(format!("restore-{attempt}")), rows, rate)?
        else {
            println!("restore, attempt {attempt}: the latest checkpoint held no captured batches");
            continue;
        };
        let exact = r.tally == r.expected && r.restored_from == Some(r.checkpoint);
        println!(
            "restore: a run (timeout 0) stopped after checkpoint {} ({} in-flight blobs, {} B; \
             its sink had counted {} of {rows} rows) restored from {:?} and ran unpaced to the \
             end in {:.2} s: {} rows, key sum {} (an uninterrupted run: {} rows, {}): {}",
            r.checkpoint,
            r.in_flight_blobs,
            r.in_flight_bytes,
            r.stopped_rows,
            r.restored_from,
            r.secs,
            r.tally.0,
            r.tally.1,
            r.expected.0,
            r.expected.1,
            if exact { "exact" } else { "WRONG" }
        );
        if !exact {
            return Err("the restored run did not count every row exactly once".into());
        }
        return Ok(());
    }
    println!("restore: not checked (no stopped run's latest checkpoint held captured batches)");
    Ok(())
}

fn print_run(round: usize, share: f64, rate: f64, rows: u64, label: &str, t: &Throttled) {
    let c = &t.report;
    let second = rate * 8.0; // bytes of one second of rows at the sink's rate
    let max_captured = t.captured.iter().copied().max().unwrap_or(0);
    let mut sorted = t.captured.clone();
    sorted.sort_unstable();
    let med = sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    println!(
        "round {round}, sink at {share} of the source ({:.3} M rows/s; achieved {:.3} M), \
         {label}: {:.1} s, {} checkpoints ({} failed), duration p50 {:.1} ms, p99 {:.1} ms \
         ({:.3} × 2 s), longest alignment {:.1} ms, unaligned {} (stayed aligned {}), captured \
         {} B in all, per checkpoint median {med} B, max {max_captured} B = {:.5} of 1 s at \
         the sink's rate ({:.0} B)",
        rate / 1e6,
        rows as f64 / t.secs / 1e6,
        t.secs,
        c.completed,
        c.failed,
        c.duration_p50_ms,
        c.duration_p99_ms,
        c.duration_p99_ms / 2000.0,
        c.max_alignment_ms,
        c.unaligned,
        c.stayed_aligned,
        c.in_flight_bytes,
        max_captured as f64 / second,
        second,
    );
}

/// A directory for the runs' checkpoints, removed when dropped if it was made here.
struct TempDir {
    path: PathBuf,
    remove: bool,
}

fn tempdir(given: Option<&std::path::Path>) -> Result<TempDir, Error> {
    let (path, remove) = match given {
        Some(p) => (p.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("weir-bench-checkpoint-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&path)?;
    Ok(TempDir { path, remove })
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.remove {
            // Best effort: what is left is this bench's own checkpoints.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
