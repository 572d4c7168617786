//! `weir bench skew`: a keyed count over Zipf-distributed keys under each routing strategy.
//!
//! Each run is `source → [combiner] → shuffle → keyed count ×p → [merge] → sink`, with the keys
//! drawn from [`ZipfKeys`] (10⁴ keys by default) and one exponent per run. Every run's result is
//! checked against a sequential `HashMap` count of the same keys; a wrong result fails the bench.
//! The sequential count is also the single-thread baseline ("COST"): its rate is reported beside
//! every run.
//!
//! Strategies ([`SkewStrategy`]): `hash` (each key on one instance), `pkg` (partial key grouping,
//! credit-aware), `pkg-count` (PKG with the paper's local counts only), `split` (hot keys over
//! more instances), `combine` (a bounded combiner before a hash shuffle).
//!
//! Each run's peak RSS is measured from the run's start (the peak is reset first, Linux
//! `clear_refs`). With [`RunIn::OwnProcess`] (what `weir bench skew` uses) every run is a child
//! process of its own (`weir bench skew-run`), so no run starts from memory an earlier one left
//! in the allocator; with [`RunIn::ThisProcess`] the figure includes what earlier runs kept.
//!
//! With a worker capacity (`--worker-capacity R`), every keyed instance processes at most `R`
//! rows/s (a timer, not a spin — see [`pace`](weir_operators::keyed::pace)), emulating one
//! machine per instance: throughput is then set by the most loaded instance, not by the two
//! cores. With a per-row work (`--work-ns`), every row costs that much real computation in the
//! keyed operator, for the scaling figure (2 instances vs 1 on 2 cores).

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::zipf::{ZipfError, ZipfKeys};
use serde::{Deserialize, Serialize};
use weir_operators::keyed::aggregate::AggregateFn;
use weir_operators::keyed::route::{SplitConfig, Strategy};
use weir_operators::keyed::stream::PARTIAL_SUFFIX;
use weir_operators::keyed::{partition::LoadSignal, KeyedExt};
use weir_operators::prelude::*;
use weir_runtime::operator::{Output, Source, SourceStatus};

use super::skew_plot::SkewRow;

/// A strategy as the bench names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkewStrategy {
    /// Hash partitioning.
    Hash,
    /// Partial key grouping with credit as the load signal.
    Pkg,
    /// Partial key grouping with local sent counts only.
    PkgCount,
    /// Hot-key splitting.
    Split,
    /// A combiner before a hash shuffle.
    Combine,
}

impl SkewStrategy {
    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            SkewStrategy::Hash => "hash",
            SkewStrategy::Pkg => "pkg",
            SkewStrategy::PkgCount => "pkg-count",
            SkewStrategy::Split => "split",
            SkewStrategy::Combine => "combine",
        }
    }

    /// The stage whose instances receive the shuffled rows.
    fn keyed_stage(self) -> String {
        match self {
            SkewStrategy::Pkg | SkewStrategy::PkgCount | SkewStrategy::Split => {
                format!("count{PARTIAL_SUFFIX}")
            }
            SkewStrategy::Hash | SkewStrategy::Combine => "count".into(),
        }
    }
}

impl FromStr for SkewStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "hash" => SkewStrategy::Hash,
            "pkg" => SkewStrategy::Pkg,
            "pkg-count" => SkewStrategy::PkgCount,
            "split" => SkewStrategy::Split,
            "combine" => SkewStrategy::Combine,
            other => {
                return Err(format!(
                    "unknown strategy `{other}`; known: hash, pkg, pkg-count, split, combine"
                ))
            }
        })
    }
}

/// Where each measured run executes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RunIn {
    /// In this process: quick, but a run's peak RSS includes memory earlier runs left behind.
    #[default]
    ThisProcess,
    /// In a child process of its own: this executable (the `weir` binary), run as
    /// `bench skew-run` with the run's settings, printing its [`RunOutcome`] as JSON.
    OwnProcess(PathBuf),
}

impl RunIn {
    /// How the peak RSS figures were measured, for the bench's output.
    pub fn rss_scope(&self) -> &'static str {
        match self {
            RunIn::ThisProcess => "this process, from each run's start",
            RunIn::OwnProcess(_) => "each run in a process of its own",
        }
    }
}

/// Settings of one bench invocation.
#[derive(Clone, Debug)]
pub struct SkewConfig {
    /// Distinct keys.
    pub keys: u64,
    /// Records per run.
    pub records: u64,
    /// Per-instance row rate limit.
    pub worker_capacity: Option<NonZeroU64>,
    /// Real computation per row in the keyed operator, in nanoseconds (0: none).
    pub work_ns: u64,
    /// Keys the combiner holds.
    pub combine_capacity: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Worker threads (default: cores).
    pub workers: Option<usize>,
    /// Seed of the key stream.
    pub seed: u64,
    /// Where each run executes (default: this process).
    pub run_in: RunIn,
}

impl Default for SkewConfig {
    fn default() -> Self {
        Self {
            keys: 10_000,
            records: 2_000_000,
            worker_capacity: None,
            work_ns: 0,
            combine_capacity: 8192,
            batch_rows: 1024,
            workers: None,
            seed: 2015,
            run_in: RunIn::ThisProcess,
        }
    }
}

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
pub enum SkewError {
    /// Bad Zipf parameters.
    #[error(transparent)]
    Zipf(#[from] ZipfError),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A signal stopped the bench (see [`weir::interrupt`]).
    #[error("stopped by a signal before every run was measured")]
    Stopped,
    /// A run in a child process failed.
    #[error("the run in a child process failed: {0}")]
    Child(String),
}

/// One measured run, with the extras beyond the plotted [`SkewRow`].
#[derive(Clone, Debug, Serialize)]
pub struct SkewResult {
    /// The figures the chart plots.
    #[serde(flatten)]
    pub row: SkewRow,
    /// Runs the figures are the median of (throughput); other figures are from the median run.
    pub runs: usize,
    /// The per-instance capacity, if any.
    pub worker_capacity: Option<u64>,
    /// Per-row work in the keyed operator, ns.
    pub work_ns: u64,
    /// The sequential HashMap count of the same keys, rows/s (the single-thread baseline).
    pub sequential_rows_per_s: f64,
    /// Keys held by the keyed stage at its peak, summed over instances.
    pub keyed_peak_state_keys: u64,
    /// Bytes held by the keyed stage at its peak, summed over instances.
    pub keyed_peak_state_bytes: u64,
    /// The operator the report names as the bottleneck.
    pub bottleneck: String,
    /// How `peak_rss_bytes` was measured (see [`RunIn::rss_scope`]).
    pub peak_rss_scope: &'static str,
    /// The process that ran the median run.
    pub pid: u32,
    /// The median run's report, as printed.
    #[serde(skip)]
    pub report: String,
}

/// What one run measured: what a child process prints (as JSON) for its parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run's figures.
    pub row: SkewRow,
    /// Keys held by the keyed stage at its peak, summed over instances.
    pub keyed_peak_state_keys: u64,
    /// Bytes held by the keyed stage at its peak, summed over instances.
    pub keyed_peak_state_bytes: u64,
    /// The operator the report names as the bottleneck.
    pub bottleneck: String,
    /// The run's report, as printed.
    pub report: String,
    /// The process that ran it.
    pub pid: u32,
}

/// Runs the keyed count once in this process and sums it up.
///
/// # Errors
///
/// As [`run_once`].
pub fn measure(
    cfg: &SkewConfig,
    zipf: f64,
    strategy: SkewStrategy,
    partitions: usize,
    spin_iters: u64,
    reference: &HashMap<u64, u64>,
) -> Result<RunOutcome, SkewError> {
    let (row, report) = run_once(cfg, zipf, strategy, partitions, spin_iters, reference)?;
    let stage = strategy.keyed_stage();
    let keyed = report.operators.iter().find(|o| o.name == stage);
    Ok(RunOutcome {
        row,
        keyed_peak_state_keys: keyed.map_or(0, |o| o.peak_state_keys),
        keyed_peak_state_bytes: keyed.map_or(0, |o| o.peak_state_bytes),
        bottleneck: report
            .bottleneck
            .as_ref()
            .map(|b| b.operator.clone())
            .unwrap_or_default(),
        report: report.to_string(),
        pid: std::process::id(),
    })
}

/// The command-line arguments of `weir bench skew-run` for one run (see [`RunIn::OwnProcess`]).
pub fn child_args(
    cfg: &SkewConfig,
    zipf: f64,
    strategy: SkewStrategy,
    partitions: usize,
    spin_iters: u64,
) -> Vec<String> {
    let mut args = vec![
        "bench".to_string(),
        "skew-run".into(),
        format!("--zipf={zipf}"),
        format!("--strategy={}", strategy.name()),
        format!("--partitions={partitions}"),
        format!("--keys={}", cfg.keys),
        format!("--records={}", cfg.records),
        format!("--spin-iters={spin_iters}"),
        format!("--combine-capacity={}", cfg.combine_capacity),
        format!("--batch-rows={}", cfg.batch_rows),
        format!("--seed={}", cfg.seed),
    ];
    if let Some(c) = cfg.worker_capacity {
        args.push(format!("--worker-capacity={c}"));
    }
    if let Some(w) = cfg.workers {
        args.push(format!("--workers={w}"));
    }
    args
}

/// Runs one measurement in a child process: `exe` with [`child_args`]; a signal received
/// meanwhile is passed on to it (see [`weir::interrupt::run_child`]).
fn measure_in_child(
    exe: &std::path::Path,
    cfg: &SkewConfig,
    zipf: f64,
    strategy: SkewStrategy,
    partitions: usize,
    spin_iters: u64,
) -> Result<RunOutcome, SkewError> {
    let mut command = std::process::Command::new(exe);
    command.args(child_args(cfg, zipf, strategy, partitions, spin_iters));
    let output = weir::interrupt::run_child(&mut command)
        .map_err(|e| SkewError::Child(format!("{}: {e}", exe.display())))?;
    if weir::interrupt::received().is_some() {
        return Err(SkewError::Stopped);
    }
    if !output.status.success() {
        return Err(SkewError::Child(format!(
            "{} ended with {}",
            exe.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(line.unwrap_or_default())
        .map_err(|e| SkewError::Child(format!("unreadable result ({e}): {stdout}")))
}

/// A source of `records` Zipf keys, one batch per poll.
struct ZipfSource {
    keys: ZipfKeys,
    left: u64,
}

impl Source for ZipfSource {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let n = self.left.min(out.batch_rows() as u64) as usize;
        let mut batch = Vec::new();
        self.keys.fill(&mut batch, n);
        self.left -= n as u64;
        out.emit(batch);
        Poll::Ready(Ok(if self.left == 0 {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// The sequential baseline: the same keys counted in a `HashMap` on this thread.
///
/// # Errors
///
/// Invalid Zipf parameters.
pub fn sequential_count(
    cfg: &SkewConfig,
    zipf: f64,
) -> Result<(HashMap<u64, u64>, Duration), SkewError> {
    let start = Instant::now();
    let mut keys = ZipfKeys::new(cfg.keys, zipf, cfg.seed)?;
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut batch = Vec::new();
    let mut left = cfg.records;
    while left > 0 {
        let n = left.min(cfg.batch_rows as u64) as usize;
        keys.fill(&mut batch, n);
        for &k in &batch {
            *counts.entry(k).or_insert(0) += 1;
        }
        left -= n as u64;
    }
    Ok((counts, start.elapsed()))
}

/// Iterations of [`spin`] per nanosecond on this machine: the fastest of several timings, so
/// a descheduled moment does not make the work per row longer than asked.
pub fn calibrate_spin() -> f64 {
    let iters = 1_000_000u64;
    (0..9)
        .map(|_| {
            let start = Instant::now();
            black_box(spin(black_box(1), iters));
            iters as f64 / start.elapsed().as_nanos().max(1) as f64
        })
        .fold(0.0, f64::max)
}

/// Real, unoptimisable work: `iters` rounds of a 64-bit mix.
#[inline]
pub fn spin(mut x: u64, iters: u64) -> u64 {
    for _ in 0..iters {
        x ^= x >> 31;
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    x
}

/// Resets this process's peak RSS (Linux `clear_refs`); false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs the keyed count once and checks it against `reference`.
///
/// # Errors
///
/// Invalid Zipf parameters or a failed run.
pub fn run_once(
    cfg: &SkewConfig,
    zipf: f64,
    strategy: SkewStrategy,
    partitions: usize,
    spin_iters: u64,
    reference: &HashMap<u64, u64>,
) -> Result<(SkewRow, weir_runtime::RunReport), SkewError> {
    let config = PipelineConfig {
        batch_rows: cfg.batch_rows,
        workers: cfg.workers,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config(format!("skew-{}", strategy.name()), config);
    let source = ZipfSource {
        keys: ZipfKeys::new(cfg.keys, zipf, cfg.seed)?,
        left: cfg.records,
    };
    let count = AggregateFn::new(
        || 0u64,
        move |acc: &mut u64, k: &u64| {
            if spin_iters > 0 {
                black_box(spin(*k, spin_iters));
            }
            *acc += 1;
        },
        |acc: &mut u64, other: u64| *acc += other,
        |acc: &u64| *acc,
    );
    let mut keyed = p
        .source("source", source)
        .key_by(|k: &u64| *k)
        .parallelism(partitions);
    keyed = match strategy {
        SkewStrategy::Hash => keyed.strategy(Strategy::Hash),
        SkewStrategy::Pkg => keyed.strategy(Strategy::Pkg),
        SkewStrategy::PkgCount => keyed
            .strategy(Strategy::Pkg)
            .load_signal(LoadSignal::SentCount),
        SkewStrategy::Split => keyed.strategy(Strategy::HotKeySplit(SplitConfig::default())),
        SkewStrategy::Combine => keyed.strategy(Strategy::Hash).combine(cfg.combine_capacity),
    };
    if let Some(r) = cfg.worker_capacity {
        keyed = keyed.worker_capacity(r);
    }
    let result = keyed
        .aggregate("count", count)
        .fold("sink", HashMap::new(), |mut m, (k, c)| {
            m.insert(k, c);
            m
        });
    let rss_reset = reset_peak_rss();
    let start = Instant::now();
    let report = weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    if weir::interrupt::received().is_some() {
        return Err(SkewError::Stopped);
    }
    let peak_rss = if rss_reset {
        crate::peak_rss_bytes().unwrap_or(0)
    } else {
        0
    };
    let correct = result.take().as_ref() == Some(reference);
    let stage = strategy.keyed_stage();
    let keyed_op = report.operators.iter().find(|o| o.name == stage);
    let loads: Vec<u64> = keyed_op
        .map(|o| o.instances.iter().map(|i| i.rows_in).collect())
        .unwrap_or_default();
    let source_bp = report
        .operators
        .first()
        .map_or(0.0, |o| o.backpressured_ms_per_s / 1000.0);
    let row = SkewRow {
        zipf,
        strategy: strategy.name().to_string(),
        partitions,
        records: cfg.records,
        rows_per_s: super::rate(cfg.records, elapsed),
        imbalance: crate::routing::imbalance(&loads),
        shuffled_rows: loads.iter().sum(),
        peak_rss_bytes: peak_rss,
        source_backpressured_ratio: source_bp,
        correct,
    };
    Ok((row, report))
}

/// Runs `strategy` `runs` times (where [`SkewConfig::run_in`] says) and keeps the run with the
/// median throughput.
///
/// # Errors
///
/// As [`run_once`]; [`SkewError::Child`] when a child process fails; [`SkewError::Stopped`]
/// after a signal.
#[allow(clippy::too_many_arguments)]
pub fn run_median(
    cfg: &SkewConfig,
    zipf: f64,
    strategy: SkewStrategy,
    partitions: usize,
    runs: usize,
    spin_iters: u64,
    reference: &HashMap<u64, u64>,
    sequential: Duration,
) -> Result<SkewResult, SkewError> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        if weir::interrupt::received().is_some() {
            return Err(SkewError::Stopped);
        }
        all.push(match &cfg.run_in {
            RunIn::ThisProcess => measure(cfg, zipf, strategy, partitions, spin_iters, reference)?,
            RunIn::OwnProcess(exe) => {
                measure_in_child(exe, cfg, zipf, strategy, partitions, spin_iters)?
            }
        });
    }
    let correct = all.iter().all(|r| r.row.correct);
    all.sort_by(|a, b| a.row.rows_per_s.total_cmp(&b.row.rows_per_s));
    let median = all.swap_remove((all.len() - 1) / 2);
    let mut row = median.row;
    row.correct = correct;
    Ok(SkewResult {
        row,
        runs: runs.max(1),
        worker_capacity: cfg.worker_capacity.map(NonZeroU64::get),
        work_ns: cfg.work_ns,
        sequential_rows_per_s: super::rate(cfg.records, sequential),
        keyed_peak_state_keys: median.keyed_peak_state_keys,
        keyed_peak_state_bytes: median.keyed_peak_state_bytes,
        bottleneck: median.bottleneck,
        peak_rss_scope: cfg.run_in.rss_scope(),
        pid: median.pid,
        report: median.report,
    })
}

/// Runs every `(zipf, partitions, strategy)` combination, `runs` times each, calling `each`
/// with every result as it is measured. References are computed once per exponent.
///
/// # Errors
///
/// As [`run_once`]. A wrong result is not an error here: it is reported in the result's
/// `correct` field, for the caller to fail on after recording it.
pub fn run_matrix(
    cfg: &SkewConfig,
    zipfs: &[f64],
    partitions: &[usize],
    strategies: &[SkewStrategy],
    runs: usize,
    mut each: impl FnMut(&SkewResult),
) -> Result<Vec<SkewResult>, SkewError> {
    let spin_iters = if cfg.work_ns > 0 {
        (calibrate_spin() * cfg.work_ns as f64).round().max(1.0) as u64
    } else {
        0
    };
    let mut out = Vec::new();
    for &zipf in zipfs {
        let (reference, sequential) = sequential_count(cfg, zipf)?;
        for &p in partitions {
            for &strategy in strategies {
                let r = run_median(
                    cfg, zipf, strategy, p, runs, spin_iters, &reference, sequential,
                )?;
                each(&r);
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// `rows_per_s` of each result divided by that of the same strategy and partition count at
/// exponent 0, if measured.
pub fn ratio_to_uniform(results: &[SkewResult], r: &SkewResult) -> Option<f64> {
    results
        .iter()
        .find(|u| {
            u.row.zipf == 0.0
                && u.row.strategy == r.row.strategy
                && u.row.partitions == r.row.partitions
        })
        .map(|u| r.row.rows_per_s / u.row.rows_per_s.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SkewConfig {
        SkewConfig {
            keys: 500,
            records: 20_000,
            batch_rows: 256,
            workers: Some(2),
            combine_capacity: 64,
            ..SkewConfig::default()
        }
    }

    #[test]
    fn every_strategy_counts_right_and_a_wrong_reference_is_caught() {
        let cfg = small();
        let (reference, _) = sequential_count(&cfg, 1.2).expect("valid parameters");
        assert_eq!(reference.values().sum::<u64>(), 20_000);
        for strategy in [
            SkewStrategy::Hash,
            SkewStrategy::Pkg,
            SkewStrategy::PkgCount,
            SkewStrategy::Split,
            SkewStrategy::Combine,
        ] {
            let (row, report) =
                run_once(&cfg, 1.2, strategy, 4, 0, &reference).expect("the run succeeds");
            assert!(row.correct, "{}", strategy.name());
            assert_eq!(row.records, 20_000);
            let keyed = report
                .operators
                .iter()
                .find(|o| o.name == strategy.keyed_stage())
                .expect("the keyed stage is reported");
            assert_eq!(keyed.instances.len(), 4);
            assert_eq!(row.shuffled_rows, keyed.rows_in);
            if strategy == SkewStrategy::Combine {
                assert!(row.shuffled_rows < 20_000, "the combiner cuts the shuffle");
            } else {
                assert_eq!(row.shuffled_rows, 20_000);
            }
            assert!(row.imbalance >= 1.0);
        }
        let mut wrong = reference.clone();
        *wrong.entry(0).or_insert(0) += 1;
        let (row, _) =
            run_once(&cfg, 1.2, SkewStrategy::Pkg, 4, 0, &wrong).expect("the run succeeds");
        assert!(!row.correct);
    }

    #[test]
    fn strategies_parse_by_name() {
        for s in ["hash", "pkg", "pkg-count", "split", "combine"] {
            assert_eq!(s.parse::<SkewStrategy>().map(SkewStrategy::name), Ok(s));
        }
        assert!("round-robin".parse::<SkewStrategy>().is_err());
    }
}
