//! Adversarial tests against the public API: promises the README, `DESIGN.md` and the doc
//! comments make, attacked the way a user's code would meet them (wrapped sinks, skewed keys,
//! inputs that end or fail early, closures that panic, degenerate bounds). Tests named after a
//! bug pin that bug.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use common::{guarded, op, pipeline, run_guarded};
use weir::operators::keyed::aggregate::{Count as CountAgg, Project, Sum};
use weir::operators::keyed::route::{SplitConfig, Strategy};
use weir::operators::keyed::stream::{Combine, Emit};
use weir::prelude::*;
use weir::runtime::InputPort;
use weir::GraphError;

// ---------------------------------------------------------------------------------------------
// Wrapped sinks keep the inner sink's promises

/// A sink that takes `keep` rows, then closes (its consumer went away), reporting the rows of
/// the batch it could not pass on; and whose `poll_close` must run before `finish`.
struct ClosingSink {
    keep: u64,
    taken: u64,
    undelivered: u64,
    closed_cleanly: bool,
}

impl ClosingSink {
    fn new(keep: u64) -> Self {
        Self {
            keep,
            taken: 0,
            undelivered: 0,
            closed_cleanly: false,
        }
    }
}

impl Sink for ClosingSink {
    type Input = Vec<u64>;
    type Output = u64;

    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        let room = self.keep - self.taken;
        let n = batch.len() as u64;
        self.taken += n.min(room);
        self.undelivered += n.saturating_sub(room);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.taken == self.keep
    }

    fn undelivered_rows(&self) -> u64 {
        self.undelivered
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.closed_cleanly = true;
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        if !self.closed_cleanly && !self.is_closed() {
            return Err(OperatorError::internal("finished without poll_close"));
        }
        Ok(self.taken)
    }
}

/// `Throttle` hid the inner sink's `undelivered_rows`: rows a closed sink dropped vanished
/// from the report.
#[test]
fn throttle_reports_the_inner_sinks_undelivered_rows() {
    let mut p = pipeline("throttled-close", 8);
    let taken = p
        .source("gen", Generator::new(1_000, |i| i))
        .sink("sink", Throttle::new(ClosingSink::new(20), 1e12));
    let report = run_guarded(p).unwrap();
    assert_eq!(taken.take(), Some(20));
    // Three batches of 8 reach the sink, the last one half taken; every other row is counted.
    assert_eq!(op(&report, "sink").rows_in, 24, "{report}");
    assert_eq!(
        20 + report.dropped_downstream_closed,
        op(&report, "gen").rows_out,
        "every row is taken or counted as dropped:\n{report}"
    );
}

/// `Throttle` skipped the inner sink's `poll_close`: its work in flight at the end was never
/// completed.
#[test]
fn throttle_completes_the_inner_sinks_close() {
    let mut p = pipeline("throttled-finish", 8);
    let taken = p
        .source("gen", Generator::new(10, |i| i))
        .sink("sink", Throttle::new(ClosingSink::new(1_000), 1e12));
    run_guarded(p).expect("poll_close reaches the inner sink");
    assert_eq!(taken.take(), Some(10));
}

// ---------------------------------------------------------------------------------------------
// Keyed exactness under skew

/// Key of row `i`: about half the rows on key 0, the rest spread over 200 keys.
fn skewed(i: u64) -> u64 {
    if i.is_multiple_of(2) {
        0
    } else {
        (i.wrapping_mul(2_654_435_761) >> 7) % 200
    }
}

fn reference_counts(n: u64) -> Vec<(u64, u64)> {
    let mut m = HashMap::new();
    for i in 0..n {
        *m.entry(skewed(i)).or_insert(0u64) += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_unstable();
    v
}

#[test]
fn keyed_counts_are_exact_under_skew_with_every_strategy_and_tiny_bounds() {
    const N: u64 = 20_000;
    let expected = reference_counts(N);
    let eager = SplitConfig::default()
        .with_threshold(0.01)
        .unwrap()
        .with_warmup(0)
        .with_sample_every(std::num::NonZeroU32::MIN);
    let strategies = [
        Strategy::Hash,
        Strategy::Pkg,
        Strategy::HotKeySplit(SplitConfig::default()),
        Strategy::HotKeySplit(eager),
    ];
    for strategy in strategies {
        for combine in [
            None,
            Some(Combine::new(1)),
            Some(Combine::new(7).per_batch()),
        ] {
            let mut p = pipeline("skew", 64);
            let mut keyed = p
                .source("gen", Generator::new(N, |i| i))
                .key_by(|i: &u64| skewed(*i))
                .strategy(strategy)
                .parallelism(3)
                .merge_parallelism(2)
                .partial_max_keys(3);
            if let Some(c) = combine {
                keyed = keyed.combine_with(c.parallelism(2));
            }
            let out = keyed.aggregate("count", CountAgg::new()).collect("out");
            let report = run_guarded(p).unwrap();
            let mut got = out.take().unwrap();
            got.sort_unstable();
            assert_eq!(got, expected, "{strategy:?}, combine {combine:?}\n{report}");
        }
    }
}

#[test]
fn keyed_periodic_updates_end_with_the_exact_result() {
    const N: u64 = 5_000;
    let expected = reference_counts(N);
    for (strategy, combine) in [
        (Strategy::Hash, None),
        (Strategy::Pkg, None),
        (Strategy::Hash, Some(5)),
        (Strategy::Pkg, Some(5)),
    ] {
        let mut p = pipeline("updates", 32);
        let mut keyed = p
            .source("gen", Generator::new(N, |i| i))
            .key_by(|i: &u64| skewed(*i))
            .strategy(strategy)
            .parallelism(2)
            .emit(Emit::EveryRows(std::num::NonZeroU64::new(100).unwrap()));
        if let Some(c) = combine {
            keyed = keyed.combine(c);
        }
        let out = keyed
            .aggregate("sum", Project::new(|_: &u64| 1u32, Sum::<u32>::new()))
            .collect("out");
        run_guarded(p).unwrap();
        // The last row of each key is its final result.
        let mut last = HashMap::new();
        for (k, v) in out.take().unwrap() {
            last.insert(k, v);
        }
        let mut got: Vec<(u64, u64)> = last.into_iter().map(|(k, v)| (k, v as u64)).collect();
        got.sort_unstable();
        assert_eq!(got, expected, "{strategy:?}, combine {combine:?}");
    }
}

#[test]
fn a_final_stage_past_max_keys_fails_naming_itself_and_the_bound() {
    let mut p = pipeline("bound", 16);
    let _out = p
        .source("gen", Generator::new(1_000, |i| i))
        .key_by(|i: &u64| *i % 50)
        .max_keys(10)
        .aggregate("count", CountAgg::new())
        .collect("out");
    let err = run_guarded(p).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, RunError::Operator { operator, .. } if operator == "count"),
        "{msg}"
    );
    assert!(msg.contains("10 keys"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Multi-input and fan-out shapes

#[test]
fn a_union_with_an_empty_input_and_a_long_one_keeps_every_row() {
    let mut p = pipeline("union-early", 4);
    let empty = p.source("empty", Generator::new(0, |i| i));
    let short = p.source("short", Generator::new(3, |i| 1_000_000 + i));
    let long = p.source("long", Generator::new(5_000, |i| i));
    let out = long
        .union("u", [empty, short])
        .with_edge(EdgeConfig::default().with_capacity(1))
        .collect("out");
    run_guarded(p).unwrap();
    let mut got = out.take().unwrap();
    got.sort_unstable();
    let expected: Vec<u64> = (0..5_000).chain(1_000_000..1_000_003).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_union_input_that_fails_fails_the_run_naming_it() {
    let mut p = pipeline("union-fail", 4);
    let ok = p.source("ok", Generator::new(u64::MAX, |i| i));
    let bad = p
        .source("bad", Generator::new(100, |i| i))
        .filter_map("checked", |i| if i == 50 { None } else { Some(i) })
        .map("explode", |i: u64| {
            assert!(i < 60, "row {i} is poison");
            i
        });
    let _n = ok.union("u", [bad]).count("n");
    let err = run_guarded(p).unwrap_err();
    match err {
        RunError::Panic {
            operator, message, ..
        } => {
            assert_eq!(operator, "explode");
            assert!(message.contains("row 60 is poison"), "{message}");
        }
        other => panic!("expected a panic naming `explode`, got {other}"),
    }
}

#[test]
fn fan_out_with_one_reader_dropped_still_delivers_every_row_to_the_other_branch() {
    const N: u64 = 3_000;
    let mut p = pipeline("fan-out-close", 16);
    let rows = p.source("gen", Generator::new(N, |i| i));
    let reader = rows.clone().into_iter("iter", 1);
    let count = rows
        .map("double", |x| x * 2)
        .fold("sum", 0u64, |a, x| a + x);
    let handle = p.spawn().unwrap();
    let first: Vec<u64> = guarded("read", move || reader.take(5).collect());
    assert_eq!(first, vec![0, 1, 2, 3, 4]);
    let report = guarded("join", move || handle.join()).unwrap();
    assert_eq!(count.take(), Some((0..N).map(|x| x * 2).sum()));
    assert_eq!(op(&report, "gen").rows_out, N);
    // Every row offered to the closed branch is either read or counted.
    assert_eq!(
        5 + report.dropped_downstream_closed,
        N,
        "rows for the dropped reader are read or counted:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds on what one call may hold

#[test]
fn collect_limit_is_exact_and_names_the_sink() {
    let mut p = pipeline("collect-exact", 7);
    let out = p
        .source("gen", Generator::new(100, |i| i))
        .sink("all", Collect::with_limit(100));
    run_guarded(p).unwrap();
    assert_eq!(out.take().unwrap().len(), 100);

    let mut p = pipeline("collect-over", 7);
    let _out = p
        .source("gen", Generator::new(101, |i| i))
        .sink("all", Collect::with_limit(100));
    let err = run_guarded(p).unwrap_err();
    assert!(
        matches!(&err, RunError::Operator { operator, .. } if operator == "all"),
        "{err}"
    );
    assert!(err.to_string().contains("100 rows"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Panics in user code name the operator and the instance

#[test]
fn a_panic_in_any_user_closure_names_its_operator_and_instance() {
    type Build = fn(&mut Pipeline);
    let cases: [(&str, Build); 6] = [
        ("m", |p| {
            let _ = p
                .source("g", Generator::new(100, |i| i))
                .map("m", |i: u64| if i == 42 { panic!("boom") } else { i })
                .count("c");
        }),
        ("f", |p| {
            let _ = p
                .source("g", Generator::new(100, |i| i))
                .filter("f", |i| if *i == 42 { panic!("boom") } else { true })
                .count("c");
        }),
        ("fm", |p| {
            let _ = p
                .source("g", Generator::new(100, |i| i))
                .flat_map("fm", |i: u64| {
                    if i == 42 {
                        panic!("boom")
                    }
                    [i, i]
                })
                .count("c");
        }),
        ("g", |p| {
            let _ = p
                .source(
                    "g",
                    Generator::new(100, |i| if i == 42 { panic!("boom") } else { i }),
                )
                .count("c");
        }),
        ("s", |p| {
            let _ = p
                .source("g", Generator::new(100, |i| i))
                .fold(
                    "s",
                    0u64,
                    |a, i| if i == 42 { panic!("boom") } else { a + i },
                );
        }),
        ("k", |p| {
            let _ = p
                .source("g", Generator::new(100, |i| i))
                .key_by(|i: &u64| if *i == 42 { panic!("boom") } else { *i % 3 })
                .parallelism(2)
                .aggregate("k", CountAgg::new())
                .count("c");
        }),
    ];
    for (name, build) in cases {
        let mut p = pipeline("panics", 8);
        build(&mut p);
        let err = run_guarded(p).unwrap_err();
        match &err {
            RunError::Panic {
                operator, message, ..
            } => {
                // A key function runs where the rows are routed: in the producer of the edge.
                let want = if name == "k" { "g" } else { name };
                assert_eq!(operator, want, "{err}");
                assert!(message.contains("boom"), "{err}");
            }
            other => panic!("case `{name}`: expected a panic, got {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Degenerate sizes

#[test]
fn capacity_one_edges_and_batch_one_deliver_everything_in_order() {
    let mut p = pipeline("tiny", 1);
    let out = p
        .source("gen", Generator::new(500, |i| i))
        .with_edge(EdgeConfig::default().with_capacity(1))
        .flat_map("twice", |i: u64| [2 * i, 2 * i + 1])
        .with_edge(EdgeConfig::default().with_capacity(1))
        .collect("out");
    run_guarded(p).unwrap();
    assert_eq!(out.take().unwrap(), (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_zero_capacity_edge_is_refused_naming_the_operator() {
    let mut p = pipeline("zero", 8);
    let _ = p
        .source("gen", Generator::new(10, |i| i))
        .with_edge(EdgeConfig::default().with_capacity(0))
        .count("n");
    let err = run_guarded(p).unwrap_err();
    assert!(err.to_string().contains("gen"), "{err}");
}

#[test]
fn a_row_iter_over_a_failing_pipeline_ends_and_join_names_the_failure() {
    let mut p = pipeline("iter-fail", 4);
    let rows = p
        .source("gen", Generator::new(1_000, |i| i))
        .map("m", |i: u64| if i == 100 { panic!("bad row") } else { i })
        .into_iter("iter", 1);
    let handle = p.spawn().unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let r = read.clone();
    guarded("read", move || {
        for _ in rows {
            r.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert!(read.load(Ordering::Relaxed) <= 100);
    let err = guarded("join", move || handle.join()).unwrap_err();
    assert!(
        matches!(&err, RunError::Panic { operator, .. } if operator == "m"),
        "{err}"
    );
}

/// `flat_map` expanded a whole input row at once: one row turning into a million held them all
/// in the operator's output (8 MB here) while its consumer took one small batch at a time.
#[test]
fn flat_map_of_one_huge_row_holds_one_batch_at_a_time() {
    const ROWS: u64 = 200_000;
    for chaining in [Chaining::Operators, Chaining::Off] {
        let config = PipelineConfig {
            chaining,
            ..common::config(64)
        };
        let mut p = Pipeline::with_config("explode", config);
        let sum = p
            .source("one", Generator::new(2, |i| i))
            .flat_map("explode", |i: u64| (0..ROWS).map(move |j| i * ROWS + j))
            .with_edge(EdgeConfig::default().with_capacity(2))
            .fold("sum", 0u64, |a, x| a + x);
        let report = run_guarded(p).unwrap();
        assert_eq!(sum.take(), Some((0..2 * ROWS).sum()), "{chaining:?}");
        let fm = op(&report, "explode");
        assert_eq!(fm.rows_out, 2 * ROWS);
        // One full batch and one open batch of 64 u64s, however long the row's expansion.
        let held = fm.instances[0].peak_held_bytes;
        assert!(held <= 2 * 64 * 8, "{chaining:?}: held {held} B\n{report}");
        assert!(
            report.peak_in_flight_bytes <= report.edge_bytes_bound,
            "{chaining:?}\n{report}"
        );
    }
}

/// Emits every input batch as three batches in one call (so a chained consumer is handed
/// several batches at once).
struct Thirds;

impl Operator for Thirds {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        let third = batch.len().div_ceil(3).max(1);
        for part in batch.chunks(third) {
            out.emit(part.to_vec());
        }
        Ok(())
    }
}

#[test]
fn flat_map_handed_several_batches_at_once_keeps_every_row_in_order() {
    for chaining in [Chaining::Operators, Chaining::Off] {
        let config = PipelineConfig {
            chaining,
            ..common::config(16)
        };
        let mut p = Pipeline::with_config("thirds", config);
        let out = p
            .source("gen", Generator::new(1_000, |i| i))
            .unary("thirds", Thirds)
            .flat_map("fan", |i: u64| (0..(i % 5) * 7).map(move |j| (i, j)))
            .with_edge(EdgeConfig::default().with_capacity(1))
            .collect("out");
        run_guarded(p).unwrap();
        let expected: Vec<(u64, u64)> = (0..1_000u64)
            .flat_map(|i| (0..(i % 5) * 7).map(move |j| (i, j)))
            .collect();
        assert_eq!(out.take().unwrap(), expected, "{chaining:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation

/// Hangs today, chained or not: an operator waiting on its own work in flight (`poll_flush`
/// pending, `poll_ready` pending at its limit) never notices that its consumer has gone, so the
/// cancel stops there (the wait in `exec/driver.rs` and a chained `poll_ready` in
/// `exec/chain.rs` do not watch for a closed downstream).
#[test]
fn a_dropped_reader_cancels_map_async_with_calls_that_never_finish() {
    use weir::operators::overload::caller::CallerConfig;
    let config = PipelineConfig {
        chaining: Chaining::Off,
        ..common::config(4)
    };
    let mut p = Pipeline::with_config("async-cancel", config);
    let rows = p
        .source("gen", Generator::new(1_000, |i| i))
        .map_async("lookup", CallerConfig::default(), |id: u64| async move {
            if id >= 8 {
                std::future::pending::<()>().await;
            }
            Ok(id)
        })
        .into_iter("iter", 1);
    let handle = p.spawn().unwrap();
    let first: Vec<u64> = guarded("read", move || rows.take(5).collect());
    assert_eq!(first, vec![0, 1, 2, 3, 4]);
    let report = guarded("join", move || handle.join()).expect("a cancelled run ends Ok");
    let lookup = op(&report, "lookup");
    assert_eq!(lookup.rows_out, 8, "{report}");
}

#[test]
fn stopping_a_throttled_run_delivers_what_the_source_produced() {
    let mut p = pipeline("throttle-stop", 4);
    let counted = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .sink("slow", Throttle::new(Count::new(), 2_000.0));
    let handle = p.spawn().unwrap();
    handle.stop();
    let report = guarded("join", move || handle.join()).unwrap();
    let counted = counted.take().unwrap();
    assert_eq!(op(&report, "gen").rows_out, counted, "{report}");
    assert_eq!(op(&report, "slow").rows_in, counted);
}

/// A merge instance that finds its reader gone stops at once: the results still in its state
/// are counted as dropped (`Operator::held_rows`), not lost (36 of 100 were, before).
#[test]
fn a_keyed_aggregate_whose_reader_leaves_early_ends_and_counts_its_results() {
    let mut p = pipeline("keyed-close", 8);
    let rows = p
        .source("gen", Generator::new(10_000, |i| i))
        .key_by(|i: &u64| *i % 100)
        .strategy(Strategy::Pkg)
        .parallelism(2)
        .aggregate("count", CountAgg::new())
        .into_iter("iter", 1);
    let handle = p.spawn().unwrap();
    let first: Vec<(u64, u64)> = guarded("read", move || rows.take(3).collect());
    assert!(first.iter().all(|&(_, n)| n == 100), "{first:?}");
    let report = guarded("join", move || handle.join()).unwrap();
    // Each key's result is read or counted as dropped.
    assert_eq!(3 + report.dropped_downstream_closed, 100, "{report}");
}

// ---------------------------------------------------------------------------------------------
// Panics and errors at every hook of user operators and sinks

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Open,
    PollReady,
    PollFlush,
    OnBatch,
    OnEnd,
    Close,
    Finish,
}

const OP_HOOKS: [Hook; 5] = [
    Hook::Open,
    Hook::PollReady,
    Hook::PollFlush,
    Hook::OnBatch,
    Hook::OnEnd,
];
const SINK_HOOKS: [Hook; 6] = [
    Hook::Open,
    Hook::PollReady,
    Hook::PollFlush,
    Hook::OnBatch,
    Hook::Close,
    Hook::Finish,
];

/// Panics (or fails, if `fail`) at `at`, after `after` rows when the hook runs per batch.
#[derive(Clone, Copy)]
struct Faulty {
    at: Hook,
    fail: bool,
    seen: u64,
}

impl Faulty {
    fn new(at: Hook, fail: bool) -> Self {
        Self { at, fail, seen: 0 }
    }

    fn hit(&self, hook: Hook) -> Result<(), OperatorError> {
        // Per-batch hooks go off once some rows have passed.
        let armed = matches!(hook, Hook::Open | Hook::OnEnd | Hook::Close | Hook::Finish)
            || self.seen >= 40;
        if hook == self.at && armed {
            if self.fail {
                return Err(OperatorError::user(format!("failed in {hook:?}")));
            }
            panic!("panicked in {hook:?}");
        }
        Ok(())
    }
}

impl Operator for Faulty {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn open(&mut self, _: &InstanceInfo) -> Result<(), OperatorError> {
        self.hit(Hook::Open)
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(self.hit(Hook::PollReady))
    }

    fn poll_flush(
        &mut self,
        _: &mut Context<'_>,
        _: &mut Output<Vec<u64>>,
    ) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(self.hit(Hook::PollFlush))
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.seen += batch.len() as u64;
        self.hit(Hook::OnBatch)?;
        out.emit(batch);
        Ok(())
    }

    fn on_end(&mut self, _: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        self.hit(Hook::OnEnd)
    }
}

impl Sink for Faulty {
    type Input = Vec<u64>;
    type Output = u64;

    fn open(&mut self, _: &InstanceInfo) -> Result<(), OperatorError> {
        self.hit(Hook::Open)
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(self.hit(Hook::PollReady))
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(self.hit(Hook::PollFlush))
    }

    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.seen += batch.len() as u64;
        self.hit(Hook::OnBatch)
    }

    fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(self.hit(Hook::Close))
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        self.hit(Hook::Finish)?;
        Ok(self.seen)
    }
}

/// Why `err` does not blame `name` for `hook`, if it does not.
fn blame_mismatch(err: &RunError, name: &str, hook: Hook, fail: bool) -> Option<String> {
    let (operator, text) = match err {
        RunError::Operator {
            operator, error, ..
        } if fail => (operator, error.to_string()),
        RunError::Panic {
            operator, message, ..
        } if !fail => (operator, message.clone()),
        other => return Some(format!("the wrong error: {other}")),
    };
    (operator != name || !text.contains(&format!("{hook:?}"))).then(|| err.to_string())
}

/// Runs `gen → faulty → n` (or `gen → faulty` for a sink) once per hook, failure mode and
/// chaining, and lists the runs whose error does not name `faulty` and the hook.
fn misblamed(chainings: &[Chaining], sink: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for &chaining in chainings {
        for fail in [false, true] {
            let hooks: &[Hook] = if sink { &SINK_HOOKS } else { &OP_HOOKS };
            for &at in hooks {
                let config = PipelineConfig {
                    chaining,
                    ..common::config(8)
                };
                let mut p = Pipeline::with_config("faulty", config);
                let gen = p.source("gen", Generator::new(200, |i| i));
                if sink {
                    let _n = gen.sink("faulty", Faulty::new(at, fail));
                } else {
                    let _n = gen.unary("faulty", Faulty::new(at, fail)).count("n");
                }
                let what = format!("{chaining:?}, {at:?}, fail {fail}");
                match run_guarded(p) {
                    Ok(_) => wrong.push(format!("{what}: the run succeeded")),
                    Err(err) => {
                        if let Some(m) = blame_mismatch(&err, "faulty", at, fail) {
                            wrong.push(format!("{what}: {m}"));
                        }
                    }
                }
            }
        }
    }
    wrong
}

#[test]
fn a_failure_at_any_hook_ends_the_run_naming_the_operator() {
    let wrong = misblamed(&[Chaining::Off], false);
    assert!(wrong.is_empty(), "operators: {wrong:#?}");
    let wrong = misblamed(&[Chaining::Operators], true);
    assert!(wrong.is_empty(), "sinks: {wrong:#?}");
}

/// Fails today: a chained operator's `poll_ready` runs outside the guard that attributes
/// errors and panics (`exec/chain.rs`), so both are blamed on the chain's head (`gen`).
#[test]
fn a_failure_at_any_hook_of_a_chained_operator_names_it() {
    let wrong = misblamed(&[Chaining::Operators], false);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---------------------------------------------------------------------------------------------
// Configuration far beyond the data

/// A batch size of 2⁴⁰ rows made `IterSource` and `Generator` allocate room for 2⁴⁰ rows up
/// front, and the process abort. Refusing the configuration is as good as running it.
#[test]
fn a_huge_batch_size_does_not_preallocate_for_rows_that_are_not_there() {
    let config = PipelineConfig {
        batch_rows: 1 << 40,
        ..common::config(1)
    };
    let mut p = Pipeline::with_config("huge-batch", config);
    let words = p
        .source("words", IterSource::new((0..10).map(|i| format!("w{i}"))))
        .collect("words-out");
    let numbers = p
        .source("numbers", Generator::new(10, |i| i))
        .collect("numbers-out");
    match run_guarded(p) {
        Ok(_) => {
            let want: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
            assert_eq!(words.take().unwrap(), want);
            assert_eq!(numbers.take().unwrap(), (0..10).collect::<Vec<u64>>());
        }
        Err(RunError::Graph(GraphError::InvalidConfig { .. })) => {}
        Err(other) => panic!("neither run nor refused: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// map_async and Throttle under hostile input

#[test]
fn map_async_delivers_or_dead_letters_every_row() {
    use weir::operators::overload::caller::{CallError, CallerConfig};
    // Every row is delivered or dead-lettered with a reason.
    let mut p = pipeline("async-account", 8);
    let out = p
        .source("gen", Generator::new(500, |i| i))
        .map_async("lookup", CallerConfig::default(), |id: u64| async move {
            if id.is_multiple_of(3) {
                Err(CallError::status(404, None))
            } else {
                Ok(id)
            }
        })
        .collect("out");
    let report = run_guarded(p).unwrap();
    let want: Vec<u64> = (0..500).filter(|i| i % 3 != 0).collect();
    assert_eq!(out.take().unwrap(), want);
    let lookup = op(&report, "lookup");
    assert_eq!(lookup.rows_in, 500);
    assert_eq!(lookup.rows_out + lookup.dead_letters, 500, "{report}");
}

/// Fails chained today (the error surfaces through `poll_ready`, blamed on the chain's head,
/// as in `a_failure_at_any_hook_of_a_chained_operator_names_it`); passes with `Chaining::Off`.
#[test]
fn a_panicking_call_in_chained_map_async_names_the_operator() {
    map_async_panic_names_the_operator(Chaining::Operators);
}

#[test]
fn a_panicking_call_in_map_async_names_the_operator() {
    map_async_panic_names_the_operator(Chaining::Off);
}

fn map_async_panic_names_the_operator(chaining: Chaining) {
    use weir::operators::overload::caller::{CallError, CallerConfig};
    let config = PipelineConfig {
        chaining,
        ..common::config(8)
    };
    let mut p = Pipeline::with_config("async-panic", config);
    let _n = p
        .source("gen", Generator::new(500, |i| i))
        .map_async("lookup", CallerConfig::default(), |id: u64| async move {
            assert!(id != 77, "call {id} exploded");
            Ok::<u64, CallError>(id)
        })
        .count("n");
    let err = run_guarded(p).unwrap_err();
    // The call runs as its own task: its panic reaches the operator as a failed call.
    match &err {
        RunError::Panic { operator, .. } | RunError::Operator { operator, .. } => {
            assert_eq!(operator, "lookup", "{chaining:?}: {err}");
        }
        other => panic!("{chaining:?}: {other}"),
    }
    assert!(err.to_string().contains("call 77 exploded"), "{err}");
}

/// A rate so small that one batch's pause overflows a `Duration` panicked inside `Throttle`.
#[test]
fn a_throttle_too_slow_to_pace_a_batch_fails_with_a_message() {
    let mut p = pipeline("glacial", 8);
    let _n = p
        .source("gen", Generator::new(100, |i| i))
        .sink("slow", Throttle::new(Count::new(), 1e-20));
    let err = run_guarded(p).unwrap_err();
    assert!(
        matches!(&err, RunError::Operator { operator, .. } if operator == "slow"),
        "{err}"
    );
    assert!(err.to_string().contains("too small"), "{err}");
}

#[test]
fn degenerate_bounds_are_clamped_or_refused_never_hung() {
    // An edge smaller than one batch still passes every batch, one at a time.
    let mut p = pipeline("one-byte", 16);
    let out = p
        .source("gen", Generator::new(1_000, |i| i))
        .with_edge(EdgeConfig::default().with_max_bytes(1))
        .map("id", |i: u64| i)
        .with_edge(EdgeConfig::default().with_capacity(1).with_max_bytes(1))
        .collect("out");
    let report = run_guarded(p).unwrap();
    assert_eq!(out.take().unwrap(), (0..1_000).collect::<Vec<_>>());
    for e in &report.edges {
        assert!(e.peak_bytes <= 16 * 8, "{e:?}");
    }

    // A zero-row hand-off, a zero-key bound and a zero-key combiner are clamped to one.
    let mut p = pipeline("zeros", 4);
    let rows = p
        .source("gen", Generator::new(100, |i| i))
        .key_by(|i: &u64| *i % 10)
        .combine(0)
        .partial_max_keys(0)
        .strategy(Strategy::Pkg)
        .parallelism(2)
        .aggregate("count", CountAgg::new())
        .into_iter("iter", 0);
    let handle = p.spawn().unwrap();
    let mut got: Vec<(u64, u64)> = guarded("read", move || rows.collect());
    guarded("join", move || handle.join()).unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..10).map(|k| (k, 10)).collect::<Vec<_>>());

    // Rates that are not positive numbers are refused by name.
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut p = pipeline("bad-rate", 4);
        let _n = p
            .source("gen", Generator::new(10, |i| i))
            .sink("slow", Throttle::new(Count::new(), rate));
        let err = run_guarded(p).unwrap_err();
        assert!(
            matches!(&err, RunError::Operator { operator, .. } if operator == "slow"),
            "rate {rate}: {err}"
        );
    }
}

#[test]
fn keyed_state_in_the_report_is_exact_and_bounded_by_max_keys() {
    let mut p = pipeline("state", 16);
    let _out = p
        .source("gen", Generator::new(5_000, |i| i))
        .key_by(|i: &u64| *i % 300)
        .strategy(Strategy::Pkg)
        .parallelism(2)
        .merge_parallelism(1)
        .partial_max_keys(40)
        .aggregate("count", CountAgg::new())
        .count("n");
    let report = run_guarded(p).unwrap();
    let partial = op(&report, "count.partial");
    for i in &partial.instances {
        assert!(i.peak_state_keys <= 40, "{i:?}");
        assert!(i.peak_state_keys > 0, "{i:?}");
        assert_eq!(i.state_keys, 0, "drained at the end: {i:?}");
    }
    let merge = op(&report, "count");
    assert_eq!(merge.instances[0].peak_state_keys, 300, "{report}");
    assert_eq!(merge.rows_out, 300);
    // Rows in = rows the partials emitted; every partial is merged.
    assert_eq!(merge.rows_in, partial.rows_out);
}

/// The hand-off of `into_iter` asked its edge only for a slot, then sent: a batch that found
/// a slot but not byte room (two 2.4 MB batches against the 4 MiB bound, the reader not yet
/// reading) failed the run with "the reader's edge had no room after poll_ready".
#[test]
fn into_iter_waits_for_byte_room_instead_of_failing() {
    const BATCH: usize = 300_000;
    const ROWS: u64 = 4 * BATCH as u64;
    let mut p = pipeline("iter-bytes", BATCH);
    let rows = p
        .source("gen", Generator::new(ROWS, |i| i))
        .into_iter("iter", 4);
    let handle = p.spawn().unwrap();
    // Start reading only once the sink has taken a second batch (or the run has ended).
    let handle = guarded("fill", move || {
        while !handle.is_finished() && op(&handle.snapshot(), "iter").rows_in < 2 * BATCH as u64 {
            std::thread::yield_now();
        }
        handle
    });
    let sum: u64 = guarded("read", move || rows.sum());
    let report = guarded("join", move || handle.join()).expect("the run succeeds");
    assert_eq!(sum, (0..ROWS).sum::<u64>());
    assert_eq!(op(&report, "iter").rows_in, ROWS);
    assert_eq!(report.dropped_downstream_closed, 0);
}

/// A keyed stage emitted every key's result in the one call that saw the end of its input:
/// 100 000 results held at once (outside any edge's bound) on top of the state they came from.
#[test]
fn a_keyed_stage_hands_out_its_results_one_batch_at_a_time() {
    const KEYS: u64 = 100_000;
    for chaining in [Chaining::Operators, Chaining::Off] {
        let config = PipelineConfig {
            chaining,
            ..common::config(64)
        };
        let mut p = Pipeline::with_config("drain", config);
        let total = p
            .source("gen", Generator::new(2 * KEYS, |i| i))
            .key_by(|i: &u64| *i % KEYS)
            .aggregate("count", CountAgg::new())
            .with_edge(EdgeConfig::default().with_capacity(2))
            .fold("sum", (0u64, 0u64), |(n, s), (_, c)| (n + 1, s + c));
        let report = run_guarded(p).unwrap();
        assert_eq!(total.take(), Some((KEYS, 2 * KEYS)), "{chaining:?}");
        let held = op(&report, "count").instances[0].peak_held_bytes;
        // One full batch and one open batch of 64 (u64, u64) results.
        assert!(held <= 2 * 64 * 16, "{chaining:?}: held {held} B\n{report}");
    }
}

#[test]
fn a_dropped_reader_behind_a_union_and_a_broadcast_cancels_every_endless_source() {
    let mut p = pipeline("union-cancel", 8);
    let a = p.source("a", Generator::new(u64::MAX, |i| i));
    let b = p.source("b", Generator::new(u64::MAX, |i| i));
    let c = p.source("c", Generator::new(u64::MAX, |i| i));
    let merged = a.union("u", [b, c]).map("id", |i: u64| i);
    let rows = merged
        .broadcast()
        .parallelism(2)
        .map("copy", |i: u64| i)
        .into_iter("iter", 1);
    let handle = p.spawn().unwrap();
    let n = guarded("read", move || rows.take(100).count());
    assert_eq!(n, 100);
    let report = guarded("join", move || handle.join()).expect("a cancelled run ends Ok");
    let produced: u64 = ["a", "b", "c"]
        .iter()
        .map(|s| op(&report, s).rows_out)
        .sum();
    // Every source stopped; every row is read, or counted where it was dropped (a broadcast
    // copies rows, so the copies count too).
    assert!(produced > 0);
    assert!(report.dropped_downstream_closed > 0, "{report}");
}
