//! The run report tells the truth: the in-flight figure under fan-out, the operator it names as
//! the bottleneck (chained, parallel, finishing), and how the run ended.
//!
//! Per-row costs are busy-spun for a known time, and every assertion compares figures of the
//! same run with a wide margin, so a loaded machine changes the numbers but not the verdict.

mod common;

use std::task::{Context, Poll};

use common::op;
use weir::prelude::*;
use weir::runtime::{EdgeConfig, OperatorError};

/// A source of `batches` batches of `rows` rows, each allocated with `capacity` slots: a batch
/// holds more memory than its copies (a cloned `Vec` keeps no spare capacity).
struct Roomy {
    batches: u64,
    rows: usize,
    capacity: usize,
}

impl Source for Roomy {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.batches == 0 {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        self.batches -= 1;
        let mut batch = Vec::with_capacity(self.capacity);
        batch.extend(0..self.rows as u64);
        out.emit(batch);
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

#[test]
fn peak_in_flight_under_fan_out_stays_within_the_edge_bound() {
    const BATCHES: u64 = 300;
    const ROWS: usize = 32;
    const CAPACITY: usize = 1024;
    let config = PipelineConfig {
        edge: EdgeConfig::default()
            .with_capacity(2)
            .with_max_bytes(12 << 10),
        ..common::config(ROWS)
    };
    let mut p = Pipeline::with_config("fan-out", config);
    let gen = p.source(
        "gen",
        Roomy {
            batches: BATCHES,
            rows: ROWS,
            capacity: CAPACITY,
        },
    );
    let fast = gen.clone().sink("fast", Count::new());
    // 9 600 rows at 100 000 rows/s: about 0.1 s, with `gen` waiting for `slow` throughout.
    let slow = gen.sink("slow", Throttle::new(Count::new(), 100_000.0));
    let report = common::run_guarded(p).unwrap();
    let total = BATCHES * ROWS as u64;
    assert_eq!((fast.take(), slow.take()), (Some(total), Some(total)));

    // One call's output held (the batch and its copy), plus every edge's bound.
    let (big, copy) = ((CAPACITY * 8) as u64, (ROWS * 8) as u64);
    let gen_report = &op(&report, "gen").instances[0];
    assert!(
        gen_report.peak_held_bytes > 0,
        "gen never waited:\n{report}"
    );
    assert!(
        gen_report.peak_held_bytes <= big + copy,
        "gen held {} B, more than one batch and its copy",
        gen_report.peak_held_bytes
    );
    let edges: u64 = report
        .edges
        .iter()
        .map(|e| (e.max_bytes as u64).max(big))
        .sum();
    assert!(
        report.peak_in_flight_bytes <= edges + big + copy,
        "peak in flight {} B > bound {} B:\n{report}",
        report.peak_in_flight_bytes,
        edges + big + copy
    );
}
