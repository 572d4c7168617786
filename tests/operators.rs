//! The built-in operators end to end: union, flat_map re-batching, iterator and async sources,
//! `into_iter` from another thread, the collect limit, partitioning, and exact per-operator counts.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{edges_from, guarded, inst, op, pipeline, run_guarded};
use weir::prelude::*;
use weir::runtime::{Chaining, ErrorKind};

#[test]
fn a_union_of_three_generators_keeps_every_row() {
    let mut p = pipeline("union", 50);
    let g0 = p.source("g0", Generator::new(1_000, |i| i));
    let g1 = p.source("g1", Generator::new(700, |i| 10_000 + i));
    let g2 = p.source("g2", Generator::new(300, |i| 20_000 + i));
    let out = g0.union("union", [g1, g2]).collect("all");
    let report = run_guarded(p).unwrap();
    let mut rows = out.take().unwrap();
    // Each input's rows arrive in their order.
    for base in [0, 10_000, 20_000] {
        let mine: Vec<u64> = rows
            .iter()
            .copied()
            .filter(|x| x / 10_000 == base / 10_000)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "input {base} reordered"
        );
    }
    rows.sort_unstable();
    let expected: Vec<u64> = (0..1_000)
        .chain(10_000..10_700)
        .chain(20_000..20_300)
        .collect();
    assert_eq!(rows, expected);
    let u = op(&report, "union");
    assert_eq!((u.rows_in, u.rows_out), (2_000, 2_000));
    assert_eq!(report.edges.iter().filter(|e| e.to == "union").count(), 3);
}

/// Records the length of every batch it receives.
#[derive(Default)]
struct BatchSizes(Vec<usize>);

impl Sink for BatchSizes {
    type Input = Vec<u64>;
    type Output = Vec<usize>;

    fn on_batch(&mut self, _: usize, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.0.push(batch.len());
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<usize>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

#[test]
fn flat_map_rebatches_to_the_batch_size() {
    let config = PipelineConfig {
        // No deadline flush in a run this short: only full batches and the final one are cut.
        linger: Duration::from_secs(60),
        ..common::config(64)
    };
    let mut p = Pipeline::with_config("flat", config);
    let sizes = p
        .source("gen", Generator::new(500, |i| i))
        .flat_map("copies", |x| std::iter::repeat_n(x, (x % 7) as usize))
        .sink("sizes", BatchSizes::default());
    let report = run_guarded(p).unwrap();
    let sizes = sizes.take().unwrap();
    let total: usize = (0..500u64).map(|x| (x % 7) as usize).sum();
    assert_eq!(sizes.iter().sum::<usize>(), total);
    let (last, full) = sizes.split_last().expect("some batches");
    assert!(full.iter().all(|&n| n == 64), "{sizes:?}");
    assert!((1..=64).contains(last), "{sizes:?}");
    assert_eq!(sizes.len(), total.div_ceil(64));
    assert_eq!(inst(&report, "copies").batches_out, sizes.len() as u64);
}

#[test]
fn iter_source_emits_the_iterator_exactly() {
    // 128 is a multiple of the batch size (the last poll finds nothing); 130 is not.
    for n in [0usize, 1, 128, 130] {
        let mut p = pipeline("iter", 64);
        let words: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        let out = p
            .source("words", IterSource::new(words.clone()))
            .collect("all");
        let report = run_guarded(p).unwrap();
        assert_eq!(out.take().unwrap(), words, "n = {n}");
        let src = inst(&report, "words");
        assert_eq!(src.rows_out, n as u64);
        assert_eq!(
            src.batches_out,
            n.div_ceil(64) as u64,
            "no empty batches, n = {n}"
        );
    }
}

/// Yields `0..n`, returning `Pending` (after waking itself) before every `k`-th item.
struct SelfWaking {
    next: u64,
    n: u64,
    k: u64,
    paused: bool,
}

impl futures_core::Stream for SelfWaking {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next == self.n {
            return Poll::Ready(None);
        }
        if self.next.is_multiple_of(self.k) && !self.paused {
            self.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.paused = false;
        self.next += 1;
        Poll::Ready(Some(self.next - 1))
    }
}

#[test]
fn async_source_reads_a_stream_that_pauses() {
    let mut p = pipeline("async", 16);
    let stream = SelfWaking {
        next: 0,
        n: 500,
        k: 7,
        paused: false,
    };
    let out = p.source("stream", AsyncSource::new(stream)).collect("all");
    let report = run_guarded(p).unwrap();
    assert_eq!(out.take().unwrap(), (0..500).collect::<Vec<_>>());
    assert_eq!(inst(&report, "stream").rows_out, 500);
}

/// Shared between [`Trickle`] and its sink: rows the sink has seen, and the stream's waker.
#[derive(Default)]
struct TrickleState {
    delivered: u64,
    waker: Option<Waker>,
}

/// Yields `rounds` rounds of `per` items; each round starts only after the sink has received
/// every row of the previous one. A partial batch must therefore flow on its own (by linger),
/// or the pipeline would wait forever.
struct Trickle {
    next: u64,
    per: u64,
    rounds: u64,
    state: Arc<Mutex<TrickleState>>,
}

impl futures_core::Stream for Trickle {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next == self.per * self.rounds {
            return Poll::Ready(None);
        }
        if self.next.is_multiple_of(self.per) {
            let mut s = self.state.lock().unwrap();
            if s.delivered < self.next {
                s.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.next += 1;
        Poll::Ready(Some(self.next - 1))
    }
}

#[test]
fn linger_lets_a_trickle_flow() {
    let state = Arc::new(Mutex::new(TrickleState::default()));
    let config = PipelineConfig {
        linger: Duration::from_millis(1),
        ..common::config(1024)
    };
    let mut p = Pipeline::with_config("trickle", config);
    let stream = Trickle {
        next: 0,
        per: 5,
        rounds: 3,
        state: state.clone(),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let _done = p
        .source("trickle", AsyncSource::new(stream))
        .for_each("note", move |x| {
            sink_seen.lock().unwrap().push(x);
            let mut s = state.lock().unwrap();
            s.delivered += 1;
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
    let report = run_guarded(p).unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..15).collect::<Vec<_>>());
    assert_eq!(
        inst(&report, "trickle").batches_out,
        3,
        "one partial batch per round"
    );
}

#[test]
fn into_iter_hands_every_row_to_another_thread() {
    let mut p = pipeline("iter-out", 32);
    let rows = p
        .source("gen", Generator::new(5_000, |i| i * 3))
        .into_iter("out", 2);
    let handle = p.spawn().unwrap();
    let got: Vec<u64> = guarded("reader", move || rows.collect());
    assert_eq!(got, (0..5_000).map(|i| i * 3).collect::<Vec<_>>());
    let report = guarded("join", move || handle.join()).unwrap();
    assert_eq!(inst(&report, "out").rows_in, 5_000);
    assert_eq!(report.dropped_downstream_closed, 0);
}

#[test]
fn exceeding_the_collect_limit_fails_naming_the_sink() {
    let mut p = pipeline("limit", 64);
    let _all = p
        .source("gen", Generator::new(1_000, |i| i))
        .sink("bounded", Collect::with_limit(100));
    match run_guarded(p) {
        Err(RunError::Operator {
            operator, error, ..
        }) => {
            assert_eq!(operator, "bounded");
            assert_eq!(error.kind(), ErrorKind::User);
            assert!(error.message().contains("limit of 100 rows"), "{error}");
        }
        other => panic!("expected the collect limit error, got {other:?}"),
    }
}

#[test]
fn reports_count_rows_exactly_per_operator_and_edge() {
    let mut p = pipeline("counts", 64);
    // Every operator in its own task, so every stream is an edge with its own counts.
    p.config_mut().chaining = Chaining::Off;
    let n = p
        .source("gen", Generator::new(1_000, |i| i))
        .filter("thirds", |x| x % 3 == 0)
        .map("halve", |x| x / 2)
        .count("count");
    let report = run_guarded(p).unwrap();
    assert_eq!(n.take(), Some(334));
    let rows = |name| {
        let o = op(&report, name);
        (o.rows_in, o.rows_out)
    };
    assert_eq!(rows("gen"), (0, 1_000));
    assert_eq!(rows("thirds"), (1_000, 334));
    assert_eq!(rows("halve"), (334, 334));
    assert_eq!(rows("count"), (334, 0));
    assert_eq!(inst(&report, "gen").batches_out, 16);
    for (from, sent) in [("gen", 1_000), ("thirds", 334), ("halve", 334)] {
        let edges = edges_from(&report, from);
        assert_eq!(edges.len(), 1);
        assert_eq!(
            (edges[0].rows_sent, edges[0].rows_in_flight),
            (sent, 0),
            "{from}"
        );
    }
    assert!(report.finished);
    assert_eq!(report.dropped_downstream_closed, 0);
}

#[test]
fn fold_discard_and_for_each_see_every_row() {
    let mut p = pipeline("sinks", 100);
    let gen = p.source("gen", Generator::new(1_000, |i| i));
    let sum = gen.clone().fold("sum", 0u64, |a, x| a + x);
    let dropped = gen.clone().discard("discard");
    let seen = Arc::new(Mutex::new(0u64));
    let s = seen.clone();
    let _unit = gen.for_each("each", move |x| *s.lock().unwrap() += x);
    run_guarded(p).unwrap();
    assert_eq!(sum.take(), Some(499_500));
    assert_eq!(dropped.take(), Some(1_000));
    assert_eq!(*seen.lock().unwrap(), 499_500);
}

#[test]
fn rebalance_spreads_and_broadcast_copies() {
    // Sinks take the pipeline's default parallelism; the source is pinned to one instance.
    let config = PipelineConfig {
        parallelism: 3,
        ..common::config(10)
    };
    let mut p = Pipeline::with_config("partition", config);
    let gen = p.source("gen", Generator::new(1_000, |i| i)).parallelism(1);
    let spread = gen
        .clone()
        .rebalance()
        .map("work", |x| x)
        .sink_with("spread", |_| Count::new());
    let copies = gen.broadcast().sink_with("copies", |_| Count::new());
    let report = run_guarded(p).unwrap();
    let work = op(&report, "work");
    assert_eq!(
        (work.parallelism, work.rows_in, work.rows_out),
        (3, 1_000, 1_000)
    );
    assert!(
        work.instances.iter().all(|i| i.rows_in > 0),
        "spread over all: {report}"
    );
    assert_eq!(spread.take_all().iter().sum::<u64>(), 1_000);
    assert_eq!(
        copies.take_all(),
        vec![1_000; 3],
        "every instance got every row"
    );
    assert_eq!(op(&report, "copies").rows_in, 3_000);
}

#[test]
fn built_in_sinks_run_under_a_parallel_default() {
    let config = PipelineConfig {
        parallelism: 2,
        ..common::config(10)
    };
    let mut p = Pipeline::with_config("par-default", config);
    let n = p
        .source_with("gen", |_| Generator::new(100, |i| i))
        .map("m", |x| x)
        .count("count");
    run_guarded(p).expect("a sink given as one value runs as one instance");
    assert_eq!(n.take(), Some(100));
}

#[test]
fn chained_operators_keep_exact_counts_and_share_their_task() {
    let mut p = pipeline("chained", 64);
    let n = p
        .source("gen", Generator::new(1_000, |i| i))
        .filter("thirds", |x| x % 3 == 0)
        .map("halve", |x| x / 2)
        .count("count");
    let report = run_guarded(p).unwrap();
    assert_eq!(n.take(), Some(334));
    let rows = |name| {
        let o = op(&report, name);
        (o.rows_in, o.rows_out)
    };
    assert_eq!(rows("gen"), (0, 1_000));
    assert_eq!(rows("thirds"), (1_000, 334));
    assert_eq!(rows("halve"), (334, 334));
    assert_eq!(rows("count"), (334, 0));
    // The transforms run in the source's task; the sink keeps its own, behind one edge.
    assert_eq!(op(&report, "thirds").chained_into.as_deref(), Some("gen"));
    assert_eq!(op(&report, "halve").chained_into.as_deref(), Some("gen"));
    assert_eq!(op(&report, "count").chained_into, None);
    assert_eq!(report.edges.len(), 1);
    assert_eq!(
        (report.edges[0].from.as_str(), report.edges[0].to.as_str()),
        ("halve", "count")
    );
    assert_eq!(report.edges[0].rows_sent, 334);
}
