//! source → map → filter → sink over `u64`, against the hand-fused single-thread loop.
//!
//! The three stages are the same functions in every variant, so the difference is what the
//! runtime costs: batching, edges, tasks and threads.

use std::hint::black_box;
use std::time::{Duration, Instant};

use weir_operators::prelude::*;

/// The map stage: a cheap mix of the bits.
#[inline]
pub fn mix(x: u64) -> u64 {
    (x ^ (x >> 7)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The filter stage: keeps about half.
#[inline]
pub fn keep(x: &u64) -> bool {
    x & 0x100 == 0
}

/// The baseline: one thread, one loop, no batches.
pub fn fused(n: u64) -> (u64, Duration) {
    let start = Instant::now();
    let sum = (0..black_box(n))
        .map(mix)
        .filter(keep)
        .fold(0u64, u64::wrapping_add);
    (black_box(sum), start.elapsed())
}

/// One thread over materialised batches of `batch_rows`: the cost of batching alone.
pub fn batched(n: u64, batch_rows: usize) -> (u64, Duration) {
    let start = Instant::now();
    let mut sum = 0u64;
    let mut next = 0u64;
    while next < n {
        let k = (n - next).min(batch_rows as u64);
        let batch: Vec<u64> = (next..next + k).collect();
        next += k;
        let mut mapped: Vec<u64> = batch.into_iter().map(mix).collect();
        mapped.retain(keep);
        sum = mapped.into_iter().fold(sum, u64::wrapping_add);
    }
    (black_box(sum), start.elapsed())
}

/// The same stages as a weir pipeline with the given batch size, worker threads and edge
/// target time (`None`: [`PipelineConfig`]'s default).
///
/// # Errors
///
/// A failed run (which would be a bug).
pub fn weir(
    n: u64,
    batch_rows: usize,
    workers: Option<usize>,
    edge_target_time: Option<Duration>,
) -> Result<(u64, Duration, RunReport), RunError> {
    let default = PipelineConfig::default();
    let config = PipelineConfig {
        batch_rows,
        workers,
        edge_target_time: edge_target_time.unwrap_or(default.edge_target_time),
        ..default
    };
    let mut p = Pipeline::with_config("bench-pipeline", config);
    let sum = p
        .source("source", Generator::new(n, |i| i))
        .map("map", mix)
        .filter("filter", keep)
        .fold("sink", 0u64, u64::wrapping_add);
    let start = Instant::now();
    let report = weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    let sum = sum.take().unwrap_or_default();
    Ok((sum, elapsed, report))
}
