//! Queueing delay before and after a sink slows tenfold, with edges sized by rows only or by
//! time as well (`PipelineConfig::edge_target_time`).
//!
//! `source → map → map → sink`, every stage its own task (three edges). The source emits
//! 1024-row batches as fast as credit allows; the first row of each batch is the moment it was
//! emitted (one clock read per batch), which the maps carry through unchanged. The sink spins a
//! fixed amount of work per row, times a factor it reads once per batch: 1 in phase 1, 10 in
//! phase 2. For every batch it records its age (now minus the emission time): the queueing
//! delay across the three edges and the stages' own time, sampled on every batch rather than
//! on latency markers, so each phase has thousands of samples. The first `settle` of each
//! phase is left out of its figures (the edges adapt then), and its rows/s are counted over
//! the same window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::percentile;
use weir_operators::prelude::*;
use weir_runtime::{Chaining, InputPort, OperatorError, Output, Sink, Source, SourceStatus};

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub struct DebloatConfig {
    /// Rows per batch.
    pub batch_rows: usize,
    /// The sink's work per row in phase 1, ns (calibrated spin work, not sleep).
    pub sink_ns_per_row: f64,
    /// How much slower the sink is in phase 2.
    pub slowdown: u64,
    /// Length of each phase.
    pub phase: Duration,
    /// Left out at the start of each phase.
    pub settle: Duration,
    /// `PipelineConfig::edge_target_time` (zero: edges sized by rows and bytes only).
    pub target: Duration,
}

/// Figures of one phase.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PhaseResult {
    /// Batches measured.
    pub batches: u64,
    /// Median age of a batch at the sink, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Rows the sink took per second over the measured window.
    pub rows_per_s: f64,
}

/// Figures of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DebloatResult {
    /// Before the slowdown.
    pub fast: PhaseResult,
    /// After it.
    pub slow: PhaseResult,
    /// Sum of the three edges' credit limits at the end of phase 2.
    pub credit_limits: usize,
    /// Sum of their capacities.
    pub capacity: usize,
}

/// Spin iterations per nanosecond of this machine, measured once.
pub fn calibrate() -> f64 {
    let iters = 20_000_000u64;
    let start = Instant::now();
    std::hint::black_box(spin(iters));
    iters as f64 / start.elapsed().as_nanos().max(1) as f64
}

/// `n` dependent steps of a xorshift: work the compiler cannot drop or vectorise.
#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Emits batches until told to stop; row 0 of each is its emission time since `epoch`.
struct Emit {
    epoch: Instant,
    rows: usize,
    stop: Arc<AtomicBool>,
    n: u64,
}

impl Source for Emit {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.stop.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        let mut b = Vec::with_capacity(self.rows);
        b.push(self.epoch.elapsed().as_nanos() as u64);
        for _ in 1..self.rows {
            self.n += 1;
            b.push(self.n);
        }
        out.emit(b);
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Per phase: ages of the batches (ns) and rows, once the phase has settled.
#[derive(Default)]
struct Phase {
    ages: Vec<u64>,
    rows: u64,
}

/// Spins per row, records each batch's age into the phase it arrived in.
struct SlowSink {
    epoch: Instant,
    iters_per_row: u64,
    factor: Arc<AtomicU64>,
    /// When each phase's measured window starts, ns since `epoch` (0: not yet).
    window: Arc<[AtomicU64; 2]>,
    phases: [Phase; 2],
}

impl Sink for SlowSink {
    type Input = Vec<u64>;
    type Output = [(Vec<u64>, u64); 2];
    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        let factor = self.factor.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_nanos() as u64;
        let phase = usize::from(factor > 1);
        let from = self.window[phase].load(Ordering::Relaxed);
        if from != 0 && now >= from {
            let p = &mut self.phases[phase];
            p.ages.push(now.saturating_sub(batch[0]));
            p.rows += batch.len() as u64;
        }
        std::hint::black_box(spin(self.iters_per_row * factor * batch.len() as u64));
        Ok(())
    }
    fn finish(&mut self) -> Result<Self::Output, OperatorError> {
        let [a, b] = std::mem::take(&mut self.phases);
        Ok([(a.ages, a.rows), (b.ages, b.rows)])
    }
}

fn phase_result(mut ages: Vec<u64>, rows: u64, window: Duration) -> PhaseResult {
    ages.sort_unstable();
    PhaseResult {
        batches: ages.len() as u64,
        p50_ns: percentile(&ages, 0.50),
        p99_ns: percentile(&ages, 0.99),
        rows_per_s: rows as f64 / window.as_secs_f64().max(1e-9),
    }
}

/// One run: phase 1 at full sink speed, phase 2 `slowdown` times slower, then stop.
///
/// # Errors
///
/// A failed run (which would be a bug).
pub fn run(cfg: &DebloatConfig, iters_per_ns: f64) -> Result<DebloatResult, RunError> {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let factor = Arc::new(AtomicU64::new(1));
    let window = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let config = PipelineConfig {
        batch_rows: cfg.batch_rows,
        chaining: Chaining::Off,
        edge_target_time: cfg.target,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("bench-debloat", config);
    let out = p
        .source(
            "source",
            Emit {
                epoch,
                rows: cfg.batch_rows,
                stop: stop.clone(),
                n: 0,
            },
        )
        .map("map", |x: u64| x.rotate_left(13))
        .map("unmap", |x: u64| x.rotate_right(13))
        .sink(
            "sink",
            SlowSink {
                epoch,
                iters_per_row: (cfg.sink_ns_per_row * iters_per_ns).round().max(1.0) as u64,
                factor: factor.clone(),
                window: window.clone(),
                phases: Default::default(),
            },
        );
    let handle = p.spawn()?;
    let settle = cfg.settle.min(cfg.phase);
    let measured = cfg.phase - settle;
    let at = |d: Duration| (epoch.elapsed() + d).as_nanos() as u64;
    window[0].store(at(settle), Ordering::Relaxed);
    std::thread::sleep(cfg.phase);
    // Phase 2 starts: the window opens after the settling time, the slowdown now.
    window[1].store(at(settle), Ordering::Relaxed);
    factor.store(cfg.slowdown.max(1), Ordering::Relaxed);
    std::thread::sleep(cfg.phase);
    let edges = handle.snapshot().edges;
    let credit_limits = edges.iter().map(|e| e.credit_limit).sum();
    let capacity = edges.iter().map(|e| e.capacity).sum();
    stop.store(true, Ordering::Relaxed);
    // The edges drain at the slow rate; what the sink takes now is outside both windows.
    window[1].store(u64::MAX, Ordering::Relaxed);
    handle.join()?;
    let [(a, ra), (b, rb)] = out.take().unwrap_or_default();
    Ok(DebloatResult {
        fast: phase_result(a, ra, measured),
        slow: phase_result(b, rb, measured),
        credit_limits,
        capacity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_phases_are_measured() {
        let cfg = DebloatConfig {
            batch_rows: 64,
            sink_ns_per_row: 10.0,
            slowdown: 10,
            phase: Duration::from_millis(60),
            settle: Duration::from_millis(10),
            target: Duration::from_millis(10),
        };
        let r = run(&cfg, calibrate()).unwrap();
        assert!(r.fast.batches > 0 && r.slow.batches > 0, "{r:?}");
        assert!(r.fast.p50_ns <= r.fast.p99_ns && r.slow.p50_ns <= r.slow.p99_ns);
        assert!(
            r.credit_limits >= 3 * 2 && r.credit_limits <= r.capacity,
            "{r:?}"
        );
    }
}
