//! Source → sink latency of a 3-stage pipeline at a fraction of its capacity.
//!
//! The source emits rows at a fixed rate, each carrying the moment it was emitted; the sink
//! records how long ago that was. Rows go out one per batch as soon as they are due (batch size
//! 1, linger 0): latency here is the runtime's hand-offs and wake-ups, not batching. The source
//! waits for a row's due time by yielding its worker (it never sleeps on a timer, whose
//! millisecond granularity would be the figure measured), so the stages downstream see rows
//! spaced as the rate says and park between them, as they would behind a socket.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::percentile;
use weir_operators::prelude::*;
use weir_runtime::{Chaining, InputPort, OperatorError, Output, Sink, Source, SourceStatus};

/// What a latency run measures.
#[derive(Clone, Copy, Debug)]
pub struct LatencyConfig {
    /// Rows emitted (after the warm-up).
    pub rows: u64,
    /// Rows emitted per second (`f64::INFINITY`: as fast as the pipeline takes them, which
    /// measures its capacity).
    pub rate: f64,
    /// Rows emitted first and left out of the figures.
    pub warmup: u64,
    /// Whether `source → map → filter` share a task (the default) or every stage has its own.
    pub chaining: Chaining,
}

/// Latency percentiles of one run, in nanoseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyResult {
    /// Rows measured.
    pub rows: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// Rows per second actually emitted.
    pub achieved_rate: f64,
}

/// Emits `rows` rows at `rate`, each the nanoseconds since `epoch` at which it was emitted.
struct Paced {
    epoch: Instant,
    spacing: Duration,
    next_due: Duration,
    left: u64,
}

impl Source for Paced {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.left == 0 {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        let now = self.epoch.elapsed();
        if now < self.next_due {
            // Not due yet: give the worker back and come straight back.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        out.push(now.as_nanos() as u64);
        self.left -= 1;
        self.next_due += self.spacing;
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Records each row's age, skipping the first `warmup`.
struct Ages {
    epoch: Instant,
    warmup: u64,
    seen: u64,
    ages: Vec<u64>,
}

impl Sink for Ages {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        for sent in batch {
            self.seen += 1;
            if self.seen > self.warmup {
                self.ages.push(now.saturating_sub(sent));
            }
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<u64>, OperatorError> {
        Ok(std::mem::take(&mut self.ages))
    }
}

/// One run: source → map → filter (keeps every row) → sink, batch size 1, linger 0.
///
/// # Errors
///
/// A failed run (which would be a bug).
pub fn run(
    cfg: &LatencyConfig,
    placement: weir_runtime::Placement,
) -> Result<LatencyResult, RunError> {
    let epoch = Instant::now();
    let total = cfg.rows + cfg.warmup;
    let config = PipelineConfig {
        batch_rows: 1,
        linger: Duration::ZERO,
        chaining: cfg.chaining,
        placement,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("bench-latency", config);
    let spacing = if cfg.rate.is_finite() {
        Duration::from_secs_f64(1.0 / cfg.rate.max(1.0))
    } else {
        Duration::ZERO
    };
    let ages = p
        .source(
            "source",
            Paced {
                epoch,
                spacing,
                next_due: Duration::ZERO,
                left: total,
            },
        )
        .map("map", |x: u64| x)
        .filter("filter", |_: &u64| true)
        .sink(
            "sink",
            Ages {
                epoch,
                warmup: cfg.warmup,
                seen: 0,
                ages: Vec::with_capacity(cfg.rows as usize),
            },
        );
    let start = Instant::now();
    weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    let mut ages = ages.take().unwrap_or_default();
    ages.sort_unstable();
    Ok(LatencyResult {
        rows: ages.len() as u64,
        p50_ns: percentile(&ages, 0.50),
        p99_ns: percentile(&ages, 0.99),
        p999_ns: percentile(&ages, 0.999),
        max_ns: ages.last().copied().unwrap_or(0),
        achieved_rate: total as f64 / elapsed.as_secs_f64().max(1e-12),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ranks_of_the_sorted_ages() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile::<u64>(&[], 0.5), 0);
    }

    #[test]
    fn every_row_is_measured_once() {
        let cfg = LatencyConfig {
            rows: 2_000,
            rate: 200_000.0,
            warmup: 100,
            chaining: Chaining::Operators,
        };
        let r = run(&cfg, weir_runtime::Placement::PerWorker).unwrap();
        assert_eq!(r.rows, 2_000);
        assert!(r.p50_ns <= r.p99_ns && r.p99_ns <= r.p999_ns && r.p999_ns <= r.max_ns);
    }
}
