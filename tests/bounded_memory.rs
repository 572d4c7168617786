//! Memory stays bounded when a sink is far slower than its source, and the report says why.
//!
//! A throttled sink (20 000 rows/s over 2 500 rows, about 125 ms) sits behind a fast generator
//! and a map, with small edges. From the final report: every edge's peak stays within
//! `max(max_bytes, one batch)`, held output within one batch, the peak in-flight figure within
//! the sum of those; the source was backpressured while the sink hardly waited, and the sink is
//! named the bottleneck. A live snapshot, taken while a sink is held inside `on_batch`, shows an
//! unfinished run whose edges respect their capacity.

mod common;

use std::sync::mpsc;

use common::{guarded, inst, op, GUARD};
use weir::prelude::*;

const ROWS: u64 = 2_500;
const BATCH: usize = 100;
const RATE: f64 = 20_000.0;

fn slow_pipeline(edge: EdgeConfig) -> (Pipeline, SinkHandle<u64>) {
    let config = PipelineConfig {
        edge,
        ..common::config(BATCH)
    };
    let mut p = Pipeline::with_config("slow", config);
    let n = p
        .source("gen", Generator::new(ROWS, |i| i))
        .map("double", |x| x * 2)
        .sink("slow", Throttle::new(Count::new(), RATE));
    (p, n)
}

/// Bytes of one generated batch, checked to be the same for every batch.
fn batch_bytes(report: &RunReport) -> u64 {
    let g = inst(report, "gen");
    assert_eq!(g.rows_out, ROWS);
    assert_eq!(
        g.batches_out,
        ROWS.div_ceil(BATCH as u64),
        "full batches only"
    );
    assert_eq!(g.bytes_out % g.batches_out, 0, "every batch the same size");
    let b = g.bytes_out / g.batches_out;
    assert_eq!(b, (BATCH * 8) as u64);
    b
}

fn check_bounds(edge: EdgeConfig) {
    let (p, n) = slow_pipeline(edge);
    let report = common::run_guarded(p).unwrap();
    assert_eq!(n.take(), Some(ROWS));
    let batch = batch_bytes(&report);

    let mut bound = 0u64;
    for e in &report.edges {
        let edge_bound = (e.max_bytes as u64).max(batch);
        assert!(
            e.peak_bytes as u64 <= edge_bound,
            "edge {}->{} peaked at {} > {edge_bound}",
            e.from,
            e.to,
            e.peak_bytes
        );
        assert!(e.peak_bytes as u64 >= batch, "data went through {e:?}");
        assert_eq!((e.capacity, e.max_bytes), (edge.capacity, edge.max_bytes));
        bound += edge_bound;
    }
    let mut held = 0u64;
    for o in &report.operators {
        for i in &o.instances {
            assert!(
                i.peak_held_bytes <= batch,
                "`{}` held {} > one batch",
                o.name,
                i.peak_held_bytes
            );
            held += i.peak_held_bytes;
        }
    }
    let peaks: u64 = report.edges.iter().map(|e| e.peak_bytes as u64).sum();
    assert_eq!(report.peak_in_flight_bytes, peaks + held, "as documented");
    assert!(report.peak_in_flight_bytes <= bound + held);
    let edge_sum: u64 = report.edges.iter().map(|e| e.max_bytes as u64).sum();
    assert_eq!(report.edge_bytes_bound, edge_sum);

    let gen = op(&report, "gen");
    let sink = op(&report, "slow");
    assert!(
        gen.backpressured_ms_per_s > sink.idle_ms_per_s,
        "the source waited for credit more than the sink waited for data:\n{report}"
    );
    let b = report.bottleneck.as_ref().expect("a bottleneck is named");
    assert_eq!(b.operator, "slow", "{report}");
    assert!(b.backpressured_upstream.is_some(), "{report}");
    assert_eq!(report.dropped_downstream_closed, 0);
}

#[test]
fn a_slow_sink_bounds_every_edge_by_its_byte_bound() {
    // Two 800-byte batches fit under 2 000 bytes; four slots never fill.
    check_bounds(EdgeConfig::default().with_capacity(4).with_max_bytes(2_000));
}

#[test]
fn a_slow_sink_bounds_every_edge_by_its_slots() {
    check_bounds(
        EdgeConfig::default()
            .with_capacity(2)
            .with_max_bytes(1 << 20),
    );
}

#[test]
fn oversize_batches_are_admitted_one_at_a_time() {
    // 800-byte batches on a 500-byte edge: each is admitted only into an empty edge.
    let edge = EdgeConfig::default().with_capacity(4).with_max_bytes(500);
    check_bounds(edge);
    let (p, _n) = slow_pipeline(edge);
    let report = common::run_guarded(p).unwrap();
    for e in &report.edges {
        assert_eq!(
            e.peak_bytes,
            BATCH * 8,
            "exactly one batch at a time: {e:?}"
        );
    }
}

#[test]
fn the_slowest_branch_of_a_fan_out_governs() {
    let edge = EdgeConfig::default().with_capacity(2).with_max_bytes(1_000);
    let config = PipelineConfig {
        edge,
        ..common::config(BATCH)
    };
    let mut p = Pipeline::with_config("fanout", config);
    let gen = p.source("gen", Generator::new(2_000, |i| i));
    let fast = gen.clone().count("fast");
    let slow = gen.sink("slow", Throttle::new(Count::new(), RATE));
    let report = common::run_guarded(p).unwrap();
    assert_eq!((fast.take(), slow.take()), (Some(2_000), Some(2_000)));
    for e in &report.edges {
        assert!(e.peak_bytes <= (BATCH * 8).max(1_000), "{e:?}");
    }
    assert_eq!(
        report.bottleneck.as_ref().map(|b| b.operator.as_str()),
        Some("slow"),
        "{report}"
    );
    assert!(op(&report, "gen").backpressured_ms_per_s > op(&report, "slow").idle_ms_per_s);
}

/// Counts batches; on the `at`-th, reports it and waits (inside `on_batch`) for a release.
struct Gate {
    at: usize,
    seen: usize,
    reached: mpsc::SyncSender<()>,
    release: mpsc::Receiver<()>,
}

impl Sink for Gate {
    type Input = Vec<u64>;
    type Output = usize;

    fn on_batch(&mut self, _: usize, _: Vec<u64>) -> Result<(), OperatorError> {
        self.seen += 1;
        if self.seen == self.at {
            let _ = self.reached.send(());
            self.release
                .recv_timeout(GUARD)
                .map_err(|_| OperatorError::internal("the test never released the gate"))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<usize, OperatorError> {
        Ok(self.seen)
    }
}

#[test]
fn a_live_snapshot_shows_an_unfinished_run_within_its_bounds() {
    let edge = EdgeConfig::default().with_capacity(4).with_max_bytes(2_000);
    let config = PipelineConfig {
        edge,
        ..common::config(BATCH)
    };
    let (reached_tx, reached) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::sync_channel(1);
    let mut p = Pipeline::with_config("live", config);
    let batches = p
        .source("gen", Generator::new(ROWS, |i| i))
        .map("double", |x| x * 2)
        .sink(
            "gate",
            Gate {
                at: 3,
                seen: 0,
                reached: reached_tx,
                release: release_rx,
            },
        );
    let handle = p.spawn().unwrap();
    reached.recv_timeout(GUARD).expect("the gate was reached");

    let snap = handle.snapshot();
    assert!(!snap.finished);
    assert!(!handle.is_finished());
    assert_eq!(
        op(&snap, "gate").rows_in,
        3 * BATCH as u64,
        "held at its third batch"
    );
    let batch = (BATCH * 8) as u64;
    let mut rows_bound = 3 * BATCH as u64;
    for e in &snap.edges {
        assert!(e.buffered + e.outstanding_credit <= e.capacity, "{e:?}");
        assert!(
            e.buffered_bytes as u64 <= (e.max_bytes as u64).max(batch),
            "{e:?}"
        );
        let slots = (e.max_bytes as u64 / batch).clamp(1, e.capacity as u64);
        rows_bound += slots * BATCH as u64;
    }
    // Besides the edges: one held batch in `gen`, one held and one in hand in `double`.
    rows_bound += 3 * BATCH as u64;
    let produced = op(&snap, "gen").rows_out;
    assert!(
        produced <= rows_bound,
        "{produced} rows produced > {rows_bound}\n{snap}"
    );

    release.send(()).unwrap();
    let report = guarded("join", move || handle.join()).unwrap();
    assert!(report.finished);
    assert_eq!(batches.take(), Some(ROWS.div_ceil(BATCH as u64) as usize));
}
