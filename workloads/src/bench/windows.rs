//! `weir bench windows`: event-time windows and joins beside the keyed count without windows,
//! every run checked against a sequential reference.
//!
//! Rows are `(key, event time in ms)`. Row `i` happens at `i` µs of event time (1 M rows per
//! event-time second), moved back by a pseudo-random jitter below [`DISORDER`], so rows arrive
//! up to that much out of order; sources stamp them with [`WatermarkStrategy::bounded`]`(`
//! [`BOUND`]`)`, a bound above the disorder, so no row is ever late and every result is exact.
//! Keys come from [`ZipfKeys`]. The workloads ([`Workload`]):
//!
//! - [`Workload::Tumbling`]: a keyed count in [`TUMBLING`] tumbling windows;
//! - [`Workload::NoWindow`]: the same keyed count without windows (the keyed aggregate), from
//!   the same source with the same watermarks, so the difference is the windowing alone;
//! - [`Workload::Session`]: a keyed count in session windows with a gap of [`SESSION_GAP`].
//!   Keys come in bursts: in event-time periods of [`BURST`] only even keys occur, in the next
//!   only odd ones, so each key's sessions end after every burst (the silence is longer than
//!   the gap);
//! - [`Workload::IntervalJoin`]: an interval join of two such sources (`records` rows each,
//!   keys from two seeds) pairing rows of equal keys with `a.ts ∈ [b.ts + lo, b.ts + hi]`,
//!   [`JOIN_BOUNDS`].
//!
//! **Checking.** A run's results are folded into a [`Digest`]: the number of results, the sum
//! of their counts and an order-independent checksum of every `(key, window start, window end,
//! count)` (for the join every `(key, a.ts, b.ts)` pair). The reference computes the same digest
//! sequentially from the same rows: a `HashMap` per `(key, window)` for tumbling windows and
//! per key without them, sorting by `(key, time)` and merging gaps for sessions, binary search
//! over each key's sorted right-side times for the join. Digests keep the sink's memory flat,
//! so the peak RSS of a run does not grow with its results.
//!
//! **Peak RSS** ([`rss_in_child`]): the tumbling count runs in a child process of its own
//! (`weir bench windows-run`), whose peak is reset (Linux `clear_refs`) just before the run and
//! read (`VmHWM`) just after it, before the reference is computed; the child's allocator uses
//! 4 KiB pages, not transparent huge pages (see [`rss_in_child`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_operators::join::{IntervalBounds, JoinExt};
use weir_operators::keyed::aggregate::Count;
use weir_operators::prelude::{
    Generator, KeyedExt, Pipeline, PipelineConfig, RunError, RunReport, Session, Stream, StreamExt,
    Timestamp, Tumbling, WindowExt, Windowed,
};
use weir_runtime::{CheckpointConfig, WatermarkStrategy};

use super::etl::process_cpu_time;
use super::skew::reset_peak_rss;
use crate::zipf::{ZipfError, ZipfKeys};

/// How far a row's event time may lag behind its position (`i` µs), exclusive.
pub const DISORDER: Duration = Duration::from_millis(5);
/// The sources' watermark bound (above [`DISORDER`], so no row is late).
pub const BOUND: Duration = Duration::from_millis(10);
/// The tumbling windows' size.
pub const TUMBLING: Duration = Duration::from_secs(1);
/// The session windows' gap.
pub const SESSION_GAP: Duration = Duration::from_millis(100);
/// The length of a burst of even (or odd) keys, in event time.
pub const BURST: Duration = Duration::from_millis(200);
/// The interval join's bounds, ms: `a.ts ∈ [b.ts + lo, b.ts + hi]`.
pub const JOIN_BOUNDS: (i64, i64) = (-5, 5);

/// One row: `(key, event time in ms)`.
pub type Row = (u64, i64);

/// What one run computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    /// A keyed count in tumbling windows.
    Tumbling,
    /// The keyed count without windows.
    NoWindow,
    /// A keyed count in session windows over bursty keys.
    Session,
    /// An interval join of two sides.
    IntervalJoin,
}

impl Workload {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Tumbling => "tumbling",
            Workload::NoWindow => "no-window",
            Workload::Session => "session",
            Workload::IntervalJoin => "interval-join",
        }
    }
}

/// Settings of the runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowsConfig {
    /// Rows per run (per side for the join).
    pub records: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Zipf exponent of the keys (0: uniform).
    pub zipf: f64,
    /// Instances of the keyed (window, join) stage; the sources run one each.
    pub parallelism: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Worker threads (default: cores).
    pub workers: Option<usize>,
    /// Time each edge buffers at its consumer's rate (`None`: [`PipelineConfig`]'s default;
    /// zero: rows and bytes only).
    pub edge_target_time: Option<Duration>,
    /// Seed of the keys.
    pub seed: u64,
    /// Checkpoints during the run (default none).
    pub checkpoint: Option<Checkpointing>,
}

/// Checkpoints taken during a run of the bench: full snapshots of the sources' positions and
/// the window (or keyed) state, every `interval`, aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpointing {
    /// Time between checkpoints.
    pub interval: Duration,
    /// A directory for the runs' checkpoints: each run writes into a fresh folder of its own
    /// in it, removed after the run.
    pub dir: PathBuf,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            records: 5_000_000,
            keys: 10_000,
            zipf: 0.0,
            parallelism: 2,
            batch_rows: 1024,
            workers: None,
            edge_target_time: None,
            seed: 2026,
            checkpoint: None,
        }
    }
}

/// Why a run could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum WindowsError {
    /// Bad Zipf parameters.
    #[error(transparent)]
    Zipf(#[from] ZipfError),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A run in a child process failed.
    #[error("the run in a child process failed: {0}")]
    Child(String),
    /// The checkpoint directory could not be prepared.
    #[error("checkpoint directory {0}: {1}")]
    CheckpointDir(PathBuf, std::io::Error),
}

/// An order-independent summary of a set of results (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Results (windows, keys or pairs).
    pub results: u64,
    /// The sum of their counts (rows counted, or pairs).
    pub total: u64,
    /// The wrapping sum of a hash of every result.
    pub checksum: u64,
}

impl Digest {
    /// Adds one result: `count` for `key` over `[start, end)` (or a pair's two event times).
    pub fn add(&mut self, key: u64, start: i64, end: i64, count: u64) {
        self.results += 1;
        self.total += count;
        let h = mix(key ^ mix(start as u64 ^ mix(end as u64 ^ mix(count))));
        self.checksum = self.checksum.wrapping_add(h);
    }

    fn with(mut self, key: u64, start: i64, end: i64, count: u64) -> Self {
        self.add(key, start, end, count);
        self
    }
}

/// A 64-bit finaliser (SplitMix64's).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The rows of one side, in the order a source emits them: a function of the row's index
/// (called for `0, 1, 2, …`).
struct Rows {
    keys: ZipfKeys,
    seed: u64,
    bursts: bool,
}

impl Rows {
    fn new(cfg: &WindowsConfig, seed: u64, bursts: bool) -> Result<Self, ZipfError> {
        let keys = if bursts {
            cfg.keys.div_ceil(2)
        } else {
            cfg.keys
        };
        Ok(Self {
            keys: ZipfKeys::new(keys, cfg.zipf, seed)?,
            seed,
            bursts,
        })
    }

    fn row(&mut self, i: u64) -> Row {
        let disorder = DISORDER.as_micros() as u64;
        let micros = i.saturating_sub(mix(i ^ self.seed) % disorder);
        let ts = (micros / 1000) as i64;
        let rank = self.keys.next().unwrap_or_default();
        let key = if self.bursts {
            // Even keys in even bursts, odd keys in odd ones.
            2 * rank + (ts / BURST.as_millis() as i64) as u64 % 2
        } else {
            rank
        };
        (key, ts)
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The digest `workload` must produce over `cfg`'s rows, computed sequentially.
///
/// # Errors
///
/// Bad Zipf parameters.
pub fn reference(cfg: &WindowsConfig, workload: Workload) -> Result<Digest, ZipfError> {
    let bursts = workload == Workload::Session;
    let mut rows = Rows::new(cfg, cfg.seed, bursts)?;
    let side = (0..cfg.records).map(move |i| rows.row(i));
    let mut digest = Digest::default();
    match workload {
        Workload::Tumbling | Workload::NoWindow => {
            let size = if workload == Workload::Tumbling {
                millis(TUMBLING)
            } else {
                0
            };
            let mut counts: HashMap<(u64, i64), u64> = HashMap::new();
            for (key, ts) in side {
                let start = if size > 0 {
                    ts.div_euclid(size) * size
                } else {
                    0
                };
                *counts.entry((key, start)).or_default() += 1;
            }
            for ((key, start), n) in counts {
                let end = if size > 0 { start + size } else { 0 };
                digest.add(key, start, end, n);
            }
        }
        Workload::Session => {
            let gap = millis(SESSION_GAP);
            let mut all: Vec<Row> = side.collect();
            all.sort_unstable();
            // (key, start, end, count) of the session being grown.
            let mut open: Option<(u64, i64, i64, u64)> = None;
            for (key, ts) in all {
                open = match open {
                    Some((k, start, end, n)) if k == key && ts < end => {
                        Some((k, start, end.max(ts + gap), n + 1))
                    }
                    done => {
                        if let Some((k, start, end, n)) = done {
                            digest.add(k, start, end, n);
                        }
                        Some((key, ts, ts + gap, 1))
                    }
                };
            }
            if let Some((k, start, end, n)) = open {
                digest.add(k, start, end, n);
            }
        }
        Workload::IntervalJoin => {
            let (lo, hi) = JOIN_BOUNDS;
            let mut right: HashMap<u64, Vec<i64>> = HashMap::new();
            let mut r = Rows::new(cfg, right_seed(cfg), false)?;
            for i in 0..cfg.records {
                let (key, ts) = r.row(i);
                right.entry(key).or_default().push(ts);
            }
            for times in right.values_mut() {
                times.sort_unstable();
            }
            for (key, a) in side {
                let Some(times) = right.get(&key) else {
                    continue;
                };
                // Pairs with b ∈ [a − hi, a − lo].
                let first = times.partition_point(|&b| b < a - hi);
                for &b in times[first..].iter().take_while(|&&b| b <= a - lo) {
                    digest.add(key, a, b, 1);
                }
            }
        }
    }
    Ok(digest)
}

fn right_seed(cfg: &WindowsConfig) -> u64 {
    mix(cfg.seed)
}

/// A source of `cfg.records` rows with watermarks bounded by [`BOUND`].
fn source(
    p: &mut Pipeline,
    name: &str,
    cfg: &WindowsConfig,
    seed: u64,
    bursts: bool,
) -> Result<Stream<Row>, ZipfError> {
    let mut rows = Rows::new(cfg, seed, bursts)?;
    Ok(
        p.source(name, Generator::new(cfg.records, move |i| rows.row(i)))
            .with_watermarks(
                WatermarkStrategy::bounded(BOUND).timestamps(|r: &Row| Timestamp(r.1)),
            ),
    )
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The digest of the run's results.
    pub digest: Digest,
    /// Rows the sources emitted (both sides for the join).
    pub rows: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time (user + system, every thread) of this process during the run.
    pub cpu: Duration,
    /// The run's report.
    pub report: RunReport,
}

/// Builds the pipeline of `workload` over `cfg`'s rows, runs it and digests its results;
/// `before_run` is called just before the run starts (after building).
///
/// # Errors
///
/// Bad Zipf parameters or a failed run.
pub fn run_with(
    cfg: &WindowsConfig,
    workload: Workload,
    before_run: impl FnOnce(),
) -> Result<Measured, WindowsError> {
    let default = PipelineConfig::default();
    let mut config = PipelineConfig {
        batch_rows: cfg.batch_rows,
        workers: cfg.workers,
        edge_target_time: cfg.edge_target_time.unwrap_or(default.edge_target_time),
        ..default
    };
    let checkpoints = cfg.checkpoint.as_ref().map(RunDir::new).transpose()?;
    if let (Some(c), Some(dir)) = (&cfg.checkpoint, &checkpoints) {
        config = config.checkpointing(CheckpointConfig::new(&dir.0).interval(c.interval));
    }
    let mut p = Pipeline::with_config(format!("bench-windows-{}", workload.name()), config);
    let bursts = workload == Workload::Session;
    let rows = source(&mut p, "source", cfg, cfg.seed, bursts)?;
    let windowed = |d: Digest, w: Windowed<u64, u64>| d.with(w.key, w.start.0, w.end.0, w.value);
    let digest = if workload == Workload::IntervalJoin {
        let right = source(&mut p, "right", cfg, right_seed(cfg), false)?;
        let (lo, hi) = JOIN_BOUNDS;
        rows.join(right)
            .on(|a: &Row| a.0, |b: &Row| b.0)
            .parallelism(cfg.parallelism)
            .interval(
                "join",
                IntervalBounds::new(lo, hi),
                |a| Timestamp(a.1),
                |b| Timestamp(b.1),
            )
            .fold("sink", Digest::default(), |d, (a, b): (Row, Row)| {
                d.with(a.0, a.1, b.1, 1)
            })
    } else {
        let keyed = rows.key_by(|r: &Row| r.0).parallelism(cfg.parallelism);
        let time = |r: &Row| Timestamp(r.1);
        match workload {
            Workload::Tumbling => keyed
                .window(Tumbling::of(TUMBLING), time)
                .aggregate("count", Count::new())
                .fold("sink", Digest::default(), windowed),
            Workload::Session => keyed
                .window(Session::with_gap(SESSION_GAP), time)
                .aggregate("count", Count::new())
                .fold("sink", Digest::default(), windowed),
            _ => keyed.aggregate("count", Count::new()).fold(
                "sink",
                Digest::default(),
                |d, (k, n): (u64, u64)| d.with(k, 0, 0, n),
            ),
        }
    };
    before_run();
    let cpu = process_cpu_time().unwrap_or_default();
    let start = Instant::now();
    let report = weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    let cpu = process_cpu_time().unwrap_or_default().saturating_sub(cpu);
    drop(checkpoints);
    let sides = if workload == Workload::IntervalJoin {
        2
    } else {
        1
    };
    Ok(Measured {
        digest: digest.take().unwrap_or_default(),
        rows: cfg.records * sides,
        elapsed,
        cpu,
        report,
    })
}

/// A run's own checkpoint folder, removed when dropped.
struct RunDir(PathBuf);

impl RunDir {
    fn new(c: &Checkpointing) -> Result<Self, WindowsError> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = c.dir.join(format!("run-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| WindowsError::CheckpointDir(dir.clone(), e))?;
        Ok(Self(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Best effort: a folder left behind holds only this run's checkpoints.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`run_with`] with nothing before the run.
///
/// # Errors
///
/// As [`run_with`].
pub fn run(cfg: &WindowsConfig, workload: Workload) -> Result<Measured, WindowsError> {
    run_with(cfg, workload, || {})
}

/// The peak RSS of one tumbling-count run, as its own process measures it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RssOutcome {
    /// Rows in the run.
    pub records: u64,
    /// `VmHWM` after the run, the peak having been reset just before it (0 if unknown).
    pub peak_rss_bytes: u64,
    /// Whether the peak could be reset before the run (otherwise it includes building).
    pub reset: bool,
    /// Whether the results matched the reference.
    pub correct: bool,
}

/// Runs the tumbling count once in this process and measures its peak RSS (what
/// `weir bench windows-run` prints).
///
/// # Errors
///
/// As [`run_with`].
pub fn measure_rss(cfg: &WindowsConfig) -> Result<RssOutcome, WindowsError> {
    let mut reset = false;
    let m = run_with(cfg, Workload::Tumbling, || reset = reset_peak_rss())?;
    let peak_rss_bytes = crate::peak_rss_bytes().unwrap_or(0);
    let want = reference(cfg, Workload::Tumbling)?;
    Ok(RssOutcome {
        records: cfg.records,
        peak_rss_bytes,
        reset,
        correct: m.digest == want,
    })
}

/// The arguments of `weir bench windows-run` for `cfg`.
pub fn child_args(cfg: &WindowsConfig) -> Vec<String> {
    let mut args = vec![
        "bench".to_string(),
        "windows-run".into(),
        format!("--records={}", cfg.records),
        format!("--keys={}", cfg.keys),
        format!("--zipf={}", cfg.zipf),
        format!("--parallelism={}", cfg.parallelism),
        format!("--batch-rows={}", cfg.batch_rows),
        format!("--seed={}", cfg.seed),
    ];
    if let Some(w) = cfg.workers {
        args.push(format!("--workers={w}"));
    }
    if let Some(t) = cfg.edge_target_time {
        args.push(format!("--edge-target-ms={}", t.as_millis()));
    }
    if let Some(c) = &cfg.checkpoint {
        args.push(format!(
            "--checkpoint-interval-ms={}",
            c.interval.as_millis()
        ));
        args.push(format!("--checkpoint-dir={}", c.dir.display()));
    }
    args
}

/// Runs [`measure_rss`] in a child process: `exe` (the `weir` binary) with [`child_args`],
/// with mimalloc's transparent huge pages off (`MIMALLOC_ALLOW_THP=0`) unless the caller's
/// environment says otherwise.
///
/// With huge pages, mimalloc's arena is faulted in 2 MiB at a time, so a peak of about 50 MiB
/// moves by a few huge pages — ±10 % — with where allocations happen to land, whatever the
/// run's size; at 4 KiB pages the peak is what the run touches.
///
/// # Errors
///
/// [`WindowsError::Child`] when the child fails or prints no result.
pub fn rss_in_child(exe: &Path, cfg: &WindowsConfig) -> Result<RssOutcome, WindowsError> {
    let fail = |what: String| WindowsError::Child(format!("{}: {what}", exe.display()));
    let mut command = std::process::Command::new(exe);
    command.args(child_args(cfg));
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        command.env("MIMALLOC_ALLOW_THP", "0");
    }
    let output = weir::interrupt::run_child(&mut command).map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!("ended with {}", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(line.unwrap_or_default())
        .map_err(|e| fail(format!("unreadable result ({e}): {stdout}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(zipf: f64) -> WindowsConfig {
        WindowsConfig {
            records: 30_000,
            keys: 300,
            zipf,
            batch_rows: 256,
            workers: Some(2),
            ..WindowsConfig::default()
        }
    }

    #[test]
    fn every_workload_matches_its_sequential_reference() {
        for (workload, zipf) in [
            (Workload::Tumbling, 1.5),
            (Workload::NoWindow, 1.5),
            (Workload::Session, 0.0),
            (Workload::IntervalJoin, 0.0),
        ] {
            let cfg = small(zipf);
            let want = reference(&cfg, workload).expect("valid parameters");
            let got = run(&cfg, workload).expect("the run succeeds");
            assert_eq!(got.digest, want, "{}", workload.name());
            match workload {
                Workload::IntervalJoin => {
                    assert_eq!(got.rows, 60_000);
                    assert!(want.total > 0, "some rows pair up");
                }
                _ => assert_eq!(want.total, 30_000, "every row counted once"),
            }
        }
    }

    #[test]
    fn a_checkpointed_run_matches_the_reference_and_cleans_up() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for workload in [Workload::Tumbling, Workload::NoWindow] {
            let cfg = WindowsConfig {
                checkpoint: Some(Checkpointing {
                    interval: Duration::from_millis(1),
                    dir: dir.path().to_path_buf(),
                }),
                ..small(0.0)
            };
            let want = reference(&cfg, workload).expect("valid parameters");
            let got = run(&cfg, workload).expect("the run succeeds");
            assert_eq!(got.digest, want, "{}", workload.name());
            let c = got.report.checkpoints.expect("checkpoints on");
            assert_eq!(c.failed, 0, "{}: every operator snapshots", workload.name());
        }
        let left = std::fs::read_dir(dir.path()).expect("listed").count();
        assert_eq!(left, 0, "each run's checkpoint folder is removed");
    }

    #[test]
    fn the_reference_sees_windows_bursts_and_a_changed_count() {
        let cfg = WindowsConfig {
            records: 1_000_000,
            ..small(0.0)
        };
        let tumbling = reference(&cfg, Workload::Tumbling).expect("valid parameters");
        // One second of event time, jittered back but not below 0: one window for every key.
        assert_eq!((tumbling.results, tumbling.total), (300, 1_000_000));
        let session = reference(&cfg, Workload::Session).expect("valid parameters");
        // Five bursts of 200 ms, each key active in every other one: about 2.5 sessions each.
        assert!(
            session.results >= 600 && session.results <= 900,
            "{session:?}"
        );
        let mut wrong = Digest::default();
        wrong.add(1, 0, 1000, 5);
        let mut right = Digest::default();
        right.add(1, 0, 1000, 4);
        right.add(2, 0, 1000, 1);
        assert_ne!(wrong.checksum, right.checksum);
    }
}
