//! The Reactive Streams rules that apply to batched credit, checked on whole pipelines:
//! completion after all data, empty streams, cancellation, serial delivery.
//!
//! The same rules on a bare edge polled by hand, and the random-schedule model of the edge
//! protocol, are the runtime's (`runtime/tests/reactive_streams.rs`, `edge_schedule.rs`);
//! `request(0)`-style settings and saturating demand on pipelines are in `demand_limits.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use common::{guarded, inst, op, pipeline, run_guarded};
use weir::prelude::*;

// ---------------------------------------------------------------------------------------------
// Completion only after all data (rules 1.5 / 1.7)

/// A sink that logs what it is given, to check that `finish` comes once, after every row.
#[derive(Default)]
struct Logger {
    rows: Vec<u64>,
    finishes: usize,
    batches_after_finish: usize,
}

impl Sink for Logger {
    type Input = Vec<u64>;
    type Output = (Vec<u64>, usize, usize);

    fn on_batch(&mut self, _: usize, batch: Vec<u64>) -> Result<(), OperatorError> {
        if self.finishes > 0 {
            self.batches_after_finish += 1;
        }
        self.rows.extend(batch);
        Ok(())
    }

    fn finish(&mut self) -> Result<Self::Output, OperatorError> {
        self.finishes += 1;
        Ok((
            std::mem::take(&mut self.rows),
            self.finishes,
            self.batches_after_finish,
        ))
    }
}

#[test]
fn a_sink_sees_every_row_before_it_finishes() {
    let mut p = pipeline("complete", 7);
    let out = p
        .source("gen", Generator::new(1_000, |i| i))
        .map("inc", |x| x + 1)
        .with_edge(EdgeConfig::default().with_capacity(2))
        .sink("log", Logger::default());
    let report = run_guarded(p).unwrap();
    let (rows, finishes, late) = out.take().expect("the sink finished");
    assert_eq!(rows, (1..=1_000).collect::<Vec<_>>(), "all rows, in order");
    assert_eq!((finishes, late), (1, 0));
    assert!(report.finished);
    assert_eq!(inst(&report, "log").rows_in, 1_000);
}

// ---------------------------------------------------------------------------------------------
// An empty source completes (rule 1.5, with no onNext at all)

#[test]
fn an_empty_source_completes() {
    let mut p = pipeline("empty", 16);
    let n = p
        .source("gen", Generator::new(0, |i| i))
        .map("id", |x| x)
        .count("count");
    let report = run_guarded(p).unwrap();
    assert_eq!(n.take(), Some(0));
    assert!(report.finished);
    for name in ["gen", "id", "count"] {
        let o = op(&report, name);
        assert_eq!((o.rows_in, o.rows_out), (0, 0), "{name}");
        assert_eq!(
            o.instances[0].batches_out, 0,
            "{name}: no empty batches sent"
        );
    }
    assert_eq!(report.dropped_downstream_closed, 0);
}

#[test]
fn an_empty_iterator_source_completes() {
    let mut p = pipeline("empty-iter", 16);
    let out = p
        .source("it", IterSource::new(Vec::<u64>::new()))
        .collect("all");
    let report = run_guarded(p).unwrap();
    assert_eq!(out.take(), Some(vec![]));
    assert!(report.finished);
}

// ---------------------------------------------------------------------------------------------
// Cancellation stops emission and releases the producer (rules 3.12 / 3.13)

#[test]
fn dropping_a_row_iter_cancels_an_endless_source() {
    let mut p = pipeline("cancel", 4);
    let rows = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .with_edge(EdgeConfig::default().with_capacity(2))
        .into_iter("iter", 2);
    let handle = p.spawn().unwrap();
    let first: Vec<u64> = guarded("read", move || rows.take(10).collect());
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    let first_len = first.len();
    // `take` dropped the iterator: the run must end by itself, normally.
    let report = guarded("join", move || handle.join()).expect("a cancelled run ends Ok");
    assert!(report.finished);
    let produced = op(&report, "gen").rows_out;
    assert!(produced >= 10, "at least what was read: {produced}");
    // Read (3 batches) + hand-off (2) + edge (2) + held and in hand (2): 9 batches of 4 rows.
    assert!(produced <= 36, "the source stopped: {produced}");
    assert!(
        report.dropped_downstream_closed > 0,
        "undelivered rows are counted:\n{report}"
    );
    // The sink passed rows on to the reader; those the reader never took count as dropped too.
    assert_eq!(
        produced,
        first_len as u64 + report.dropped_downstream_closed,
        "every row the source sent reached the reader or was counted as dropped"
    );
}

#[test]
fn rows_a_dropped_row_iter_never_read_are_counted() {
    let mut p = pipeline("cancel-count", 4);
    let rows = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .into_iter("iter", 2);
    let handle = p.spawn().unwrap();
    let read = guarded("read", move || rows.take(10).count() as u64);
    let report = guarded("join", move || handle.join()).unwrap();
    let produced = op(&report, "gen").rows_out;
    assert_eq!(
        produced,
        read + report.dropped_downstream_closed,
        "every row is delivered or counted as dropped:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Serial delivery (rule 1.3): one consumer's hooks never run concurrently

/// Records whether `on_batch` is ever entered while another call is inside (on any instance
/// built by the same factory), and the per-producer order of rows `(producer, seq)`.
struct Exclusive {
    inside: Arc<AtomicBool>,
    overlaps: Arc<AtomicUsize>,
    rows: Vec<(u64, u64)>,
}

impl Sink for Exclusive {
    type Input = Vec<(u64, u64)>;
    type Output = Vec<(u64, u64)>;

    fn on_batch(&mut self, _: usize, batch: Vec<(u64, u64)>) -> Result<(), OperatorError> {
        if self.inside.swap(true, SeqCst) {
            self.overlaps.fetch_add(1, SeqCst);
        }
        // Widen the window a concurrent call would need.
        std::thread::yield_now();
        self.rows.extend(batch);
        self.inside.store(false, SeqCst);
        Ok(())
    }

    fn finish(&mut self) -> Result<Self::Output, OperatorError> {
        Ok(std::mem::take(&mut self.rows))
    }
}

fn exclusive_sink(s: Stream<(u64, u64)>) -> (SinkHandle<Vec<(u64, u64)>>, Arc<AtomicUsize>) {
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let o = overlaps.clone();
    let h = s.sink_with("sink", move |_| Exclusive {
        inside: inside.clone(),
        overlaps: o.clone(),
        rows: Vec::new(),
    });
    (h, overlaps)
}

fn assert_serial_and_ordered(rows: Vec<(u64, u64)>, producers: u64, per: u64) {
    assert_eq!(rows.len() as u64, producers * per);
    for p in 0..producers {
        let seq: Vec<u64> = rows.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        assert_eq!(
            seq,
            (0..per).collect::<Vec<_>>(),
            "producer {p}: all rows, in order"
        );
    }
}

#[test]
fn a_union_of_three_sources_delivers_serially() {
    let mut p = pipeline("union3", 5);
    let small = EdgeConfig::default().with_capacity(1);
    let mut gens: Vec<Stream<(u64, u64)>> = (0..3)
        .map(|k| {
            p.source(format!("g{k}"), Generator::new(2_000, move |i| (k, i)))
                .with_edge(small)
        })
        .collect();
    let first = gens.remove(0);
    let (out, overlaps) = exclusive_sink(first.union("union", gens));
    let report = run_guarded(p).unwrap();
    assert_eq!(overlaps.load(SeqCst), 0, "on_batch was re-entered");
    assert_eq!(op(&report, "sink").parallelism, 1);
    assert_serial_and_ordered(out.take().unwrap(), 3, 2_000);
}

#[test]
fn parallel_producers_into_one_sink_deliver_serially() {
    let mut p = pipeline("par3", 5);
    let gen = p
        .source_with("gen", |info| {
            let k = info.instance as u64;
            // Each instance emits its own tagged sequence (the Generator splits 0..count).
            Generator::new(6_000, move |i| (k, i - k * 2_000))
        })
        .parallelism(3)
        .with_edge(EdgeConfig::default().with_capacity(1));
    let (out, overlaps) = exclusive_sink(gen);
    let report = run_guarded(p).unwrap();
    assert_eq!(overlaps.load(SeqCst), 0, "on_batch was re-entered");
    assert_eq!(op(&report, "gen").parallelism, 3);
    assert_eq!(op(&report, "sink").parallelism, 1);
    assert_eq!(
        edges_into(&report, "sink"),
        3,
        "one edge per producer instance"
    );
    assert_serial_and_ordered(out.take().unwrap(), 3, 2_000);
}

fn edges_into(report: &RunReport, to: &str) -> usize {
    report.edges.iter().filter(|e| e.to == to).count()
}
