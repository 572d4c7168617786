//! `weir bench windows`: a keyed count in tumbling event-time windows beside the same count
//! without windows (interleaved, per Zipf exponent), session windows, an interval join, and the
//! tumbling count's peak RSS at N and 10·N rows; every run checked against a sequential
//! reference (peak RSS: the median of `--runs` child processes per size). `weir bench windows-run`
//! is one RSS run, in a process of its own.
//!
//! With `--checkpoint-interval-ms`, the comparison per Zipf exponent is the tumbling count
//! without checkpoints against the same count with one every interval (interleaved), with
//! what the checkpoints took; the RSS runs take checkpoints too.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir::runtime::CheckpointReport;
use weir_workloads::bench::windows::{self, Checkpointing, Digest, WindowsConfig, Workload};
use weir_workloads::bench::{median, rate};

use crate::{edge_target, open_json, Error};

/// Event-time windows and joins, each run checked against a sequential reference.
#[derive(Args)]
pub struct WindowsArgs {
    /// Rows per run (per side for the join); 1 M rows per event-time second.
    #[arg(long, visible_alias = "rows", default_value_t = 5_000_000)]
    pub records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Zipf exponents of the tumbling / no-window comparison (0 = uniform).
    #[arg(long, value_delimiter = ',', default_value = "0,1.5")]
    pub zipf: Vec<f64>,
    /// Runs per workload (interleaved where compared); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Instances of the window and join stages.
    #[arg(long, default_value_t = 2)]
    pub parallelism: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 1024)]
    pub batch_rows: usize,
    /// Rows of the smaller peak-RSS run (the other has ten times as many); 0 skips it.
    #[arg(long, default_value_t = 2_000_000)]
    pub rss_records: u64,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Time each edge buffers at its consumer's rate, ms (0: rows and bytes only; default:
    /// the pipeline's, `PipelineConfig::edge_target_time`).
    #[arg(long)]
    pub edge_target_ms: Option<u64>,
    /// Checkpoint every this many ms: the tumbling count with checkpoints is compared with the
    /// same count without (instead of the count without windows), and the RSS runs take them.
    #[arg(long)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Where runs write their checkpoints (a fresh folder per run, removed after it; default:
    /// the system's temporary directory).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The medians of one workload's runs.
struct Figures {
    rows_per_s: f64,
    rows_per_cpu_s: f64,
    /// Each run's checkpoint figures (empty without checkpoints).
    checkpoints: Vec<CheckpointReport>,
}

/// Runs `workloads` (each with its settings) `runs` times, interleaved, failing on a result
/// that differs from the reference; `None` if a signal stopped the bench.
fn measure(
    workloads: &[(&WindowsConfig, Workload)],
    runs: usize,
) -> Result<Option<Vec<Figures>>, Error> {
    let wants: Vec<Digest> = workloads
        .iter()
        .map(|&(cfg, w)| windows::reference(cfg, w))
        .collect::<Result<_, _>>()?;
    let mut times = vec![(Vec::new(), Vec::new()); workloads.len()];
    let mut rows = vec![0; workloads.len()];
    let mut checkpoints = vec![Vec::new(); workloads.len()];
    for _ in 0..runs.max(1) {
        for (i, &(cfg, workload)) in workloads.iter().enumerate() {
            let m = windows::run(cfg, workload)?;
            if weir::interrupt::received().is_some() {
                return Ok(None);
            }
            if m.digest != wants[i] {
                return Err(format!(
                    "{} (zipf {}): results {:?} differ from the sequential reference's {:?}",
                    workload.name(),
                    cfg.zipf,
                    m.digest,
                    wants[i]
                )
                .into());
            }
            times[i].0.push(m.elapsed);
            times[i].1.push(m.cpu);
            rows[i] = m.rows;
            checkpoints[i].extend(m.report.checkpoints);
        }
    }
    Ok(Some(
        times
            .into_iter()
            .zip(rows)
            .zip(checkpoints)
            .map(|(((wall, cpu), rows), checkpoints)| Figures {
                rows_per_s: rate(rows, median(wall)),
                rows_per_cpu_s: rate(rows, median(cpu).max(Duration::from_millis(10))),
                checkpoints,
            })
            .collect(),
    ))
}

/// The median of `xs` (0 when empty).
fn median_f(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// One line on what the runs' checkpoints took: medians over the runs, and the worst p99.
fn checkpoint_line(runs: &[CheckpointReport]) -> String {
    let per = |f: fn(&CheckpointReport) -> f64| median_f(runs.iter().map(f).collect());
    let worst_p99 = runs.iter().map(|c| c.duration_p99_ms).fold(0.0, f64::max);
    let bytes_each = |c: &CheckpointReport| c.bytes as f64 / c.completed.max(1) as f64;
    format!(
        "checkpoints per run {:.0} (failed {:.0}), duration p50 {:.1} ms, p99 {:.1} ms (worst \
         run {worst_p99:.1} ms), longest alignment {:.1} ms, {:.1} KiB each (full snapshots)",
        per(|c| c.completed as f64),
        per(|c| c.failed as f64),
        per(|c| c.duration_p50_ms),
        per(|c| c.duration_p99_ms),
        per(|c| c.max_alignment_ms),
        per(bytes_each) / 1024.0,
    )
}

/// Runs every part, prints the tables (and JSON lines), and fails on a wrong result.
pub fn run(args: WindowsArgs) -> Result<(), Error> {
    let WindowsArgs {
        records,
        keys,
        zipf,
        runs,
        parallelism,
        batch_rows,
        rss_records,
        workers,
        edge_target_ms,
        checkpoint_interval_ms,
        checkpoint_dir,
        json,
    } = args;
    let mut out = open_json(&json)?;
    let base = WindowsConfig {
        records,
        keys,
        parallelism,
        batch_rows,
        workers,
        edge_target_time: edge_target(edge_target_ms),
        ..WindowsConfig::default()
    };
    let checkpoint = checkpoint_interval_ms.map(|ms| Checkpointing {
        interval: Duration::from_millis(ms),
        dir: checkpoint_dir.unwrap_or_else(std::env::temp_dir),
    });
    if let Some(c) = &checkpoint {
        return run_checkpointed(&base, c, &zipf, runs, rss_records, &mut out);
    }
    println!(
        "{records} rows per run (1 M per event-time second, up to {} ms out of order, watermark \
         bound {} ms), {keys} keys, parallelism {parallelism}, batch {batch_rows}, medians of \
         {runs}; every run checked against a sequential reference",
        windows::DISORDER.as_millis(),
        windows::BOUND.as_millis(),
    );
    println!(
        "{:>14} {:>5} {:>11} {:>14} {:>13}",
        "workload", "zipf", "rows/s", "rows/CPU-s", "/ no-window"
    );
    let mut line = |workload: Workload, z: f64, f: &Figures, ratio: Option<f64>| {
        println!(
            "{:>14} {:>5} {:>9.2} M {:>12.2} M {:>13}",
            workload.name(),
            z,
            f.rows_per_s / 1e6,
            f.rows_per_cpu_s / 1e6,
            ratio.map_or("-".into(), |r| format!("{r:.2}"))
        );
        out.as_mut().map_or(Ok(()), |o| {
            writeln!(
                o,
                "{}",
                serde_json::json!({
                    "bench": "windows", "workload": workload.name(), "zipf": z,
                    "records": records, "keys": keys, "parallelism": parallelism,
                    "batch_rows": batch_rows, "runs": runs, "rows_per_s": f.rows_per_s,
                    "rows_per_cpu_s": f.rows_per_cpu_s, "ratio_to_no_window": ratio,
                    "correct": true,
                })
            )
        })
    };
    for &z in &zipf {
        let cfg = WindowsConfig {
            zipf: z,
            ..base.clone()
        };
        let pair = [(&cfg, Workload::Tumbling), (&cfg, Workload::NoWindow)];
        let Some(f) = measure(&pair, runs)? else {
            return Ok(());
        };
        line(
            Workload::Tumbling,
            z,
            &f[0],
            Some(f[0].rows_per_s / f[1].rows_per_s),
        )?;
        line(Workload::NoWindow, z, &f[1], None)?;
    }
    for workload in [Workload::Session, Workload::IntervalJoin] {
        let Some(f) = measure(&[(&base, workload)], runs)? else {
            return Ok(());
        };
        line(workload, 0.0, &f[0], None)?;
    }
    rss(&base, runs, rss_records, &mut out)
}

/// The tumbling count without checkpoints against the same count with them, per Zipf
/// exponent, interleaved; then the peak-RSS runs with checkpoints.
fn run_checkpointed(
    base: &WindowsConfig,
    checkpoint: &Checkpointing,
    zipf: &[f64],
    runs: usize,
    rss_records: u64,
    out: &mut Option<std::fs::File>,
) -> Result<(), Error> {
    let ms = checkpoint.interval.as_millis();
    println!(
        "tumbling count without checkpoints against the same with one every {ms} ms (full \
         snapshots, aligned), checkpoints under {}",
        checkpoint.dir.display()
    );
    println!(
        "{:>14} {:>5} {:>11} {:>14} {:>11}",
        "workload", "zipf", "rows/s", "rows/CPU-s", "/ none"
    );
    for &z in zipf {
        let plain = WindowsConfig {
            zipf: z,
            ..base.clone()
        };
        let checkpointed = WindowsConfig {
            checkpoint: Some(checkpoint.clone()),
            ..plain.clone()
        };
        let runs_of = [
            (&plain, Workload::Tumbling),
            (&checkpointed, Workload::Tumbling),
        ];
        let Some(f) = measure(&runs_of, runs)? else {
            return Ok(());
        };
        let ratio_wall = f[1].rows_per_s / f[0].rows_per_s;
        let ratio_cpu = f[1].rows_per_cpu_s / f[0].rows_per_cpu_s;
        for (name, fig, ratio) in [
            ("tumbling", &f[0], None),
            ("+checkpoints", &f[1], Some((ratio_wall, ratio_cpu))),
        ] {
            println!(
                "{name:>14} {z:>5} {:>9.2} M {:>12.2} M {:>11}",
                fig.rows_per_s / 1e6,
                fig.rows_per_cpu_s / 1e6,
                ratio.map_or("-".into(), |(w, c)| format!("{w:.2} ({c:.2} CPU)"))
            );
        }
        println!("    {}", checkpoint_line(&f[1].checkpoints));
        if let Some(o) = out.as_mut() {
            let c = &f[1].checkpoints;
            writeln!(
                o,
                "{}",
                serde_json::json!({
                    "bench": "windows-checkpoints", "workload": "tumbling", "zipf": z,
                    "records": base.records, "keys": base.keys,
                    "parallelism": base.parallelism, "batch_rows": base.batch_rows,
                    "runs": runs, "interval_ms": ms,
                    "rows_per_s": f[0].rows_per_s, "rows_per_cpu_s": f[0].rows_per_cpu_s,
                    "checkpointed_rows_per_s": f[1].rows_per_s,
                    "checkpointed_rows_per_cpu_s": f[1].rows_per_cpu_s,
                    "ratio": ratio_wall, "ratio_cpu": ratio_cpu, "checkpoints": c,
                    "correct": true,
                })
            )?;
        }
    }
    let with = WindowsConfig {
        checkpoint: Some(checkpoint.clone()),
        ..base.clone()
    };
    rss(&with, runs, rss_records, out)
}

/// The tumbling count's peak RSS at `rss_records` and ten times as many rows, one child
/// process per run (nothing when `rss_records` is 0).
fn rss(
    base: &WindowsConfig,
    runs: usize,
    rss_records: u64,
    out: &mut Option<std::fs::File>,
) -> Result<(), Error> {
    let keys = base.keys;
    if rss_records == 0 {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    println!(
        "peak RSS of the tumbling count (zipf 0), each run in a process of its own (allocator \
         without transparent huge pages unless MIMALLOC_ALLOW_THP is set), median of {}:",
        runs.max(1)
    );
    let mut peaks = Vec::new();
    for n in [rss_records, rss_records * 10] {
        let cfg = WindowsConfig {
            records: n,
            ..base.clone()
        };
        let mut all = Vec::new();
        for _ in 0..runs.max(1) {
            let r = windows::rss_in_child(&exe, &cfg)?;
            if weir::interrupt::received().is_some() {
                return Ok(());
            }
            if !r.correct {
                return Err(
                    format!("tumbling count of {n} rows differs from the reference").into(),
                );
            }
            all.push(r);
        }
        all.sort_by_key(|r| r.peak_rss_bytes);
        let r = all[(all.len() - 1) / 2];
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let note = if all.iter().all(|r| r.reset) {
            ""
        } else {
            " (peak not reset)"
        };
        println!(
            "{n:>14} rows {:>9.1} MiB (runs from {:.1} to {:.1}){note}",
            mib(r.peak_rss_bytes),
            mib(all[0].peak_rss_bytes),
            mib(all[all.len() - 1].peak_rss_bytes),
        );
        peaks.push(r.peak_rss_bytes);
        if let Some(o) = out.as_mut() {
            let each: Vec<u64> = all.iter().map(|r| r.peak_rss_bytes).collect();
            writeln!(
                o,
                "{}",
                serde_json::json!({
                    "bench": "windows-rss", "records": n, "keys": keys, "runs": all.len(),
                    "peak_rss_bytes": r.peak_rss_bytes, "peak_rss_bytes_each": each,
                    "reset": r.reset, "correct": true,
                })
            )?;
        }
    }
    println!("10·N / N: {:.3}", peaks[1] as f64 / peaks[0].max(1) as f64);
    Ok(())
}

/// One peak-RSS run of `bench windows`, in a process of its own; prints its outcome as one
/// JSON line.
#[derive(Args)]
pub struct WindowsRunArgs {
    #[arg(long)]
    pub records: u64,
    #[arg(long)]
    pub keys: u64,
    #[arg(long)]
    pub zipf: f64,
    #[arg(long)]
    pub parallelism: usize,
    #[arg(long)]
    pub batch_rows: usize,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub workers: Option<usize>,
    #[arg(long)]
    pub edge_target_ms: Option<u64>,
    /// Checkpoint every this many ms.
    #[arg(long)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Where the checkpoints go (default: the system's temporary directory).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
}

/// Measures one run's peak RSS and prints it as one JSON line (what `weir bench windows`
/// reads).
pub fn run_one(args: WindowsRunArgs) -> Result<(), Error> {
    let WindowsRunArgs {
        records,
        keys,
        zipf,
        parallelism,
        batch_rows,
        seed,
        workers,
        edge_target_ms,
        checkpoint_interval_ms,
        checkpoint_dir,
    } = args;
    let checkpoint = checkpoint_interval_ms.map(|ms| Checkpointing {
        interval: Duration::from_millis(ms),
        dir: checkpoint_dir.unwrap_or_else(std::env::temp_dir),
    });
    let outcome = windows::measure_rss(&WindowsConfig {
        records,
        keys,
        zipf,
        parallelism,
        batch_rows,
        workers,
        edge_target_time: edge_target(edge_target_ms),
        seed,
        checkpoint,
    })?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}
