//! The pipeline bench's stages under each placement of tasks on workers, run after run, to show
//! throughput and its run-to-run spread.
//!
//! Two shapes: parallelism 1 (`source → map → filter` chained in one task, the sink in another)
//! and parallelism 2 (two such chains feeding one sink). The stages are those of
//! [`pipeline`](super::pipeline), so every run's sum is checked against the fused loop's.

use std::time::{Duration, Instant};

use weir_operators::prelude::*;
use weir_runtime::Placement;

use super::pipeline::{keep, mix};

/// Parallelism of the source, map and filter (the sink is one instance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One chain, one sink.
    P1,
    /// Two chains, one sink.
    P2,
}

impl Shape {
    /// The operators' parallelism.
    pub fn parallelism(self) -> usize {
        match self {
            Shape::P1 => 1,
            Shape::P2 => 2,
        }
    }
}

/// Where tasks run: a [`Placement`] and whether its workers are pinned to cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The placement.
    pub placement: Placement,
    /// Workers pinned to cores.
    pub pin: bool,
}

impl Variant {
    /// The variants compared: work stealing, one scheduler per worker (tasks dealt round-robin,
    /// or by instance index), and each of those pinned.
    pub const ALL: [Variant; 5] = [
        Variant {
            placement: Placement::WorkStealing,
            pin: false,
        },
        Variant {
            placement: Placement::PerWorker,
            pin: false,
        },
        Variant {
            placement: Placement::PerWorker,
            pin: true,
        },
        Variant {
            placement: Placement::Colocated,
            pin: false,
        },
        Variant {
            placement: Placement::Colocated,
            pin: true,
        },
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match (self.placement, self.pin) {
            (Placement::WorkStealing, _) => "work-stealing",
            (Placement::Colocated, false) => "colocated",
            (Placement::Colocated, true) => "colocated pinned",
            (_, false) => "per-worker",
            (_, true) => "per-worker pinned",
        }
    }
}

/// One run of `shape` over `n` rows in 1024-row batches: the sum and the wall time.
///
/// # Errors
///
/// A failed run (which would be a bug).
pub fn run_once(
    n: u64,
    shape: Shape,
    variant: Variant,
    workers: Option<usize>,
) -> Result<(u64, Duration), RunError> {
    let config = PipelineConfig {
        workers,
        placement: variant.placement,
        pin_workers: variant.pin,
        parallelism: shape.parallelism(),
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("bench-placement", config);
    let sum = p
        .source_with("source", move |_| Generator::new(n, |i| i))
        .map("map", mix)
        .filter("filter", keep)
        .fold("sink", 0u64, u64::wrapping_add);
    let start = Instant::now();
    weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    Ok((sum.take().unwrap_or_default(), elapsed))
}

/// How far the runs stray from their median: the largest `|t − median| / median` over the
/// runs' throughputs, as a fraction.
pub fn spread(times: &[Duration]) -> f64 {
    let rates: Vec<f64> = times
        .iter()
        .map(|t| 1.0 / t.as_secs_f64().max(1e-12))
        .collect();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len().saturating_sub(1) / 2];
    rates
        .iter()
        .map(|r| (r - median).abs() / median)
        .fold(0.0, f64::max)
}
