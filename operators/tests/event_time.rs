//! Event time in running pipelines: keyed process functions and joins, fed by scripted sources
//! that emit rows and watermarks (`max − disorder` after every batch), checked against
//! references computed by nested loops and group-bys, with the state the report shows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use weir_operators::join::{IntervalBounds, JoinExt, JoinOptions, LATE_ROW};
use weir_operators::keyed::process::{
    Clock, KeyedProcessFunction, ManualClock, ProcessContext, ProcessOptions,
};
use weir_operators::keyed::KeyedExt;
use weir_operators::prelude::{Pipeline, PipelineConfig, StreamExt};
use weir_runtime::{
    Data, InputPort, Operator, OperatorError, Output, RunReport, Source, SourceStatus, Timestamp,
};

/// (key, event time, id)
type Row = (u8, i64, u32);

/// A gate a scripted source waits at until an operator downstream opens it.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<(bool, Option<Waker>)>>);

impl Gate {
    fn open(&self) {
        let waker = {
            let mut g = self.0.lock().unwrap();
            g.0 = true;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.0.lock().unwrap();
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

enum Step<T> {
    Rows(Vec<T>),
    Watermark(i64),
    /// Waits until the gate opens.
    Wait(Gate),
    /// Moves a manual clock.
    Advance(ManualClock, i64),
}

/// Emits its steps in order, one per poll.
struct Scripted<T>(VecDeque<Step<T>>);

impl<T: Data> Source for Scripted<T> {
    type Output = Vec<T>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<T>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        match self.0.front() {
            Some(Step::Wait(gate)) => {
                if gate.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.0.pop_front();
            }
            Some(Step::Advance(clock, ms)) => {
                clock.advance(*ms);
                self.0.pop_front();
            }
            _ => match self.0.pop_front() {
                Some(Step::Rows(rows)) => out.emit(rows),
                Some(Step::Watermark(w)) => out.watermark(Timestamp(w)),
                _ => {}
            },
        }
        Poll::Ready(Ok(if self.0.is_empty() {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// Passes everything on; opens each gate once it has seen its number of rows and a
/// watermark at or past its time.
struct OpenGates<T> {
    gates: Vec<(usize, i64, Gate)>,
    rows: usize,
    watermark: i64,
    _rows: std::marker::PhantomData<fn() -> T>,
}

impl<T> OpenGates<T> {
    fn new(gates: Vec<(usize, i64, Gate)>) -> Self {
        Self {
            gates,
            rows: 0,
            watermark: i64::MIN,
            _rows: std::marker::PhantomData,
        }
    }

    fn check(&self) {
        for (rows, watermark, gate) in &self.gates {
            if self.rows >= *rows && self.watermark >= *watermark {
                gate.open();
            }
        }
    }
}

impl<T: Data> Operator for OpenGates<T> {
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        self.rows += batch.len();
        out.emit(batch);
        self.check();
        Ok(())
    }

    fn on_watermark(
        &mut self,
        w: Timestamp,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        self.watermark = self.watermark.max(w.0);
        out.watermark(w);
        self.check();
        Ok(())
    }
}

fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows,
        workers: Some(2),
        ..PipelineConfig::default()
    }
}

fn report_of<'a>(report: &'a RunReport, name: &str) -> &'a weir_runtime::metrics::OperatorReport {
    report
        .operators
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no operator `{name}` in the report"))
}

const DISORDER: i64 = 5;

/// Rows of one side in arrival order, each at most [`DISORDER`] ms behind the largest before
/// it, with ids from `first_id`.
fn side(max_rows: usize, first_id: u32) -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0u8..4, 0i64..4, 0..=DISORDER), 0..max_rows).prop_map(move |steps| {
        let mut base = 0;
        steps
            .into_iter()
            .zip(first_id..)
            .map(|((key, gap, jitter), id)| {
                base += gap;
                (key, base + jitter, id)
            })
            .collect()
    })
}

/// `rows` in batches of `cut` rows, each batch followed by the watermark `max − DISORDER`, and
/// `last` at the end.
fn script(rows: &[Row], cut: usize, last: i64) -> Scripted<Row> {
    let mut steps = VecDeque::new();
    let mut max = i64::MIN;
    for batch in rows.chunks(cut.max(1)) {
        max = batch.iter().map(|r| r.1).fold(max, i64::max);
        steps.push_back(Step::Rows(batch.to_vec()));
        steps.push_back(Step::Watermark(max - DISORDER));
    }
    steps.push_back(Step::Watermark(last));
    Scripted(steps)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Interval(i64, i64),
    Window(i64),
    Inner,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (-6i64..6, 0i64..8).prop_map(|(lo, w)| Kind::Interval(lo, lo + w)),
        (1i64..10).prop_map(Kind::Window),
        Just(Kind::Inner),
    ]
}

fn reference(left: &[Row], right: &[Row], kind: Kind) -> Vec<(Row, Row)> {
    let matches = |a: &Row, b: &Row| match kind {
        Kind::Interval(lo, hi) => b.1 + lo <= a.1 && a.1 <= b.1 + hi,
        Kind::Window(size) => a.1.div_euclid(size) == b.1.div_euclid(size),
        Kind::Inner => true,
    };
    let mut pairs = Vec::new();
    for a in left {
        for b in right {
            if a.0 == b.0 && matches(a, b) {
                pairs.push((*a, *b));
            }
        }
    }
    pairs.sort();
    pairs
}

fn run_join(
    left: &[Row],
    right: &[Row],
    kind: Kind,
    (cut_l, cut_r): (usize, usize),
    parallelism: usize,
) -> (Vec<(Row, Row)>, RunReport) {
    let last = 1_000;
    let mut p = Pipeline::with_config("join", config(4));
    let l = p.source("left", script(left, cut_l, last));
    let r = p.source("right", script(right, cut_r, last));
    let keyed = l
        .join(r)
        .on(|a: &Row| a.0, |b: &Row| b.0)
        .parallelism(parallelism);
    let time = |r: &Row| Timestamp(r.1);
    let pairs = match kind {
        Kind::Interval(lo, hi) => keyed.interval("join", IntervalBounds::new(lo, hi), time, time),
        Kind::Window(size) => keyed.window("join", Duration::from_millis(size as u64), time, time),
        Kind::Inner => keyed.inner("join", JoinOptions::default()),
    };
    let out = pairs.collect("out");
    let report = p.run().expect("the join runs");
    let mut got = out.take().expect("collected");
    got.sort();
    (got, report)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn joins_equal_a_nested_loop_at_parallelism_1_and_2(
        left in side(30, 0),
        right in side(30, 1_000),
        kind in kind(),
        cuts in (1usize..6, 1usize..6),
    ) {
        let expected = reference(&left, &right, kind);
        for parallelism in [1, 2] {
            let (got, report) = run_join(&left, &right, kind, cuts, parallelism);
            prop_assert_eq!(&got, &expected, "parallelism {}", parallelism);
            let join = report_of(&report, "join");
            prop_assert_eq!(join.parallelism, parallelism);
            prop_assert_eq!(join.dead_letters, 0, "no row is late within the disorder bound");
            prop_assert_eq!(join.rows_out, expected.len() as u64);
            match kind {
                // Everything is freed behind the final watermark.
                Kind::Interval(..) | Kind::Window(_) => {
                    prop_assert_eq!((join.state_keys, join.state_bytes), (0, 0));
                }
                // A regular join keeps every key of both sides.
                Kind::Inner => {
                    let keys = |rows: &[Row]| {
                        rows.iter().map(|r| r.0).collect::<std::collections::BTreeSet<_>>().len()
                    };
                    prop_assert_eq!(join.state_keys, (keys(&left) + keys(&right)) as u64);
                }
            }
            // Window and regular joins buffer every row for a while (an interval-join row
            // may be past its last chance to match when it arrives).
            let some_rows = !left.is_empty() || !right.is_empty();
            if !matches!(kind, Kind::Interval(..)) && some_rows {
                prop_assert!(join.peak_state_bytes > 0);
            }
        }
    }
}

#[test]
fn late_rows_are_dead_lettered_with_their_reason_not_dropped() {
    for kind in [Kind::Interval(0, 0), Kind::Window(10)] {
        let gate = Gate::default();
        let mut p = Pipeline::with_config("late", config(16));
        let left = Scripted(VecDeque::from([
            Step::Rows(vec![(1, 100, 1)]),
            Step::Watermark(100),
            Step::Wait(gate.clone()),
            // Behind the join's watermark: the window [50, 60) fired long ago.
            Step::Rows(vec![(1, 50, 2), (1, 100, 3)]),
        ]));
        let right = Scripted(VecDeque::from([
            Step::Rows(vec![(1, 100, 10), (1, 50, 11)]),
            Step::Watermark(100),
        ]));
        let keyed = p
            .source("left", left)
            .join(p.source("right", right))
            .on(|a: &Row| a.0, |b: &Row| b.0)
            .parallelism(2);
        let time = |r: &Row| Timestamp(r.1);
        let pairs = match kind {
            Kind::Interval(lo, hi) => {
                keyed.interval("join", IntervalBounds::new(lo, hi), time, time)
            }
            Kind::Window(size) => {
                keyed.window("join", Duration::from_millis(size as u64), time, time)
            }
            Kind::Inner => unreachable!(),
        };
        let dead = pairs.dead_letters().collect("dead");
        let out = pairs
            .unary("gate", OpenGates::new(vec![(0, 100, gate)]))
            .collect("out");
        let report = p.run().expect("runs");
        let mut got = out.take().unwrap();
        got.sort();
        assert_eq!(
            got,
            [((1, 100, 1), (1, 100, 10)), ((1, 100, 3), (1, 100, 10))],
            "{kind:?}"
        );
        let dead = dead.take().unwrap();
        assert_eq!(dead.len(), 1, "{kind:?}");
        assert_eq!(dead[0].reason, LATE_ROW);
        assert_eq!(dead[0].raw, "left row at 50 ms, watermark 100 ms");
        assert_eq!(report_of(&report, "join").dead_letters, 1);
        assert!(report.to_string().contains("`join` 1 dead-lettered"));
    }
}

/// Counts each key's rows per 10 ms tumbling window of event time with an event-time timer at
/// the window's last millisecond, emitting `(key, window start, rows)`.
#[derive(Clone)]
struct WindowCount;

impl KeyedProcessFunction<u8, Row> for WindowCount {
    type State = BTreeMap<i64, u64>;
    type Output = (u8, i64, u64);

    fn process(
        &mut self,
        row: Row,
        ctx: &mut ProcessContext<'_, u8, Self::State>,
        _: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError> {
        let start = row.1.div_euclid(10) * 10;
        *ctx.get_or_insert_with(BTreeMap::new)
            .entry(start)
            .or_default() += 1;
        ctx.register_event_time_timer(Timestamp(start + 9));
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut ProcessContext<'_, u8, Self::State>,
        out: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError> {
        let key = *ctx.key();
        let start = ts.0 - 9;
        let Some(windows) = ctx.value_mut() else {
            return Err(OperatorError::user("a timer without state"));
        };
        let rows = windows.remove(&start).unwrap_or(0);
        if windows.is_empty() {
            ctx.clear();
        }
        out.push((key, start, rows));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn event_time_timers_count_windows_like_a_group_by_and_free_the_state(
        rows in side(60, 0),
        cut in 1usize..8,
    ) {
        let mut expected: BTreeMap<(u8, i64), u64> = BTreeMap::new();
        for r in &rows {
            *expected.entry((r.0, r.1.div_euclid(10) * 10)).or_default() += 1;
        }
        let expected: Vec<_> = expected.into_iter().map(|((k, s), n)| (k, s, n)).collect();
        for parallelism in [1, 2] {
            let mut p = Pipeline::with_config("windows", config(4));
            let out = p
                .source("rows", script(&rows, cut, 1_000))
                .key_by(|r: &Row| r.0)
                .parallelism(parallelism)
                .process("count", WindowCount)
                .collect("out");
            let report = p.run().expect("runs");
            let mut got = out.take().unwrap();
            got.sort();
            prop_assert_eq!(&got, &expected);
            let count = report_of(&report, "count");
            prop_assert_eq!((count.state_keys, count.state_bytes), (0, 0));
            if !rows.is_empty() {
                prop_assert!(count.peak_state_bytes > 0);
            }
        }
    }
}

/// Keeps a count per key and emits it when a processing-time timer 100 ms after the key's first
/// row fires; acknowledges every row with `(key, 0)`.
#[derive(Clone)]
struct CountFor100Ms;

impl KeyedProcessFunction<u8, u8> for CountFor100Ms {
    type State = u64;
    type Output = (u8, u64);

    fn process(
        &mut self,
        key: u8,
        ctx: &mut ProcessContext<'_, u8, u64>,
        out: &mut Output<Vec<(u8, u64)>>,
    ) -> Result<(), OperatorError> {
        if ctx.value().is_none() {
            let at = Timestamp(ctx.processing_time().0 + 100);
            ctx.register_processing_time_timer(at);
        }
        *ctx.get_or_insert_with(|| 0) += 1;
        out.push((key, 0));
        Ok(())
    }

    fn on_timer(
        &mut self,
        _: Timestamp,
        ctx: &mut ProcessContext<'_, u8, u64>,
        out: &mut Output<Vec<(u8, u64)>>,
    ) -> Result<(), OperatorError> {
        let rows = ctx.clear().unwrap_or(0);
        out.push((*ctx.key(), rows));
        Ok(())
    }
}

#[test]
fn processing_time_timers_wake_the_operator_when_the_clock_moves() {
    let clock = ManualClock::new(Timestamp(5_000));
    let (rows_in, fired) = (Gate::default(), Gate::default());
    let rows: Vec<u8> = (0..40).map(|i| (i * 7 % 5) as u8).collect();
    let source = Scripted(VecDeque::from([
        Step::Rows(rows.clone()),
        // Every row has been handled (acknowledged) before the clock moves ...
        Step::Wait(rows_in.clone()),
        Step::Advance(clock.clone(), 100),
        // ... and the input ends only once every timer has fired: nothing else wakes the
        // operator than the clock.
        Step::Wait(fired.clone()),
    ]));
    let mut p = Pipeline::with_config("timers", config(8));
    let out = p
        .source("rows", source)
        .key_by(|k: &u8| *k)
        .parallelism(2)
        .process_with(
            "count",
            CountFor100Ms,
            ProcessOptions::default()
                .clock(clock.clone())
                .ttl(Duration::from_secs(3_600)),
        )
        .unary(
            "gates",
            OpenGates::new(vec![
                (rows.len(), i64::MIN, rows_in),
                (rows.len() + 5, i64::MIN, fired),
            ]),
        )
        .collect("out");
    let report = p.run().expect("runs");
    let mut counts: Vec<(u8, u64)> = out
        .take()
        .unwrap()
        .into_iter()
        .filter(|r| r.1 > 0)
        .collect();
    counts.sort();
    assert_eq!(counts, [(0, 8), (1, 8), (2, 8), (3, 8), (4, 8)]);
    assert_eq!(clock.now(), Timestamp(5_100));
    let count = report_of(&report, "count");
    assert_eq!(
        (count.state_keys, count.state_bytes),
        (0, 0),
        "cleared by the timers"
    );
    assert!(count.peak_state_bytes > 0);
}

/// Keeps the last row of each key; emits an acknowledgement per row.
#[derive(Clone)]
struct KeepLast;

impl KeyedProcessFunction<u8, Row> for KeepLast {
    type State = Vec<Row>;
    type Output = u8;

    fn process(
        &mut self,
        row: Row,
        ctx: &mut ProcessContext<'_, u8, Vec<Row>>,
        out: &mut Output<Vec<u8>>,
    ) -> Result<(), OperatorError> {
        ctx.set(vec![row; 4]);
        out.push(row.0);
        Ok(())
    }
}

#[test]
fn ttl_frees_keyed_state_and_the_report_shows_it() {
    let rows: Vec<Row> = (0..50).map(|i| ((i % 7) as u8, i64::from(i), i)).collect();
    for advance in [0, 999, 1_000] {
        let clock = ManualClock::new(Timestamp(0));
        let handled = Gate::default();
        let source = Scripted(VecDeque::from([
            Step::Rows(rows.clone()),
            Step::Wait(handled.clone()),
            Step::Advance(clock.clone(), advance),
        ]));
        let mut p = Pipeline::with_config("ttl", config(8));
        let acks = p
            .source("rows", source)
            .key_by(|r: &Row| r.0)
            .parallelism(2)
            .process_with(
                "keep",
                KeepLast,
                ProcessOptions::default()
                    .ttl(Duration::from_secs(1))
                    .clock(clock.clone()),
            )
            .unary(
                "gates",
                OpenGates::new(vec![(rows.len(), i64::MIN, handled)]),
            )
            .count("acks");
        let report = p.run().expect("runs");
        assert_eq!(acks.take(), Some(rows.len() as u64));
        let keep = report_of(&report, "keep");
        assert!(keep.peak_state_bytes >= 7 * 4 * std::mem::size_of::<Row>() as u64);
        if advance < 1_000 {
            assert_eq!(
                keep.state_keys, 7,
                "alive {advance} ms after the last write"
            );
            assert!(keep.state_bytes > 0);
        } else {
            assert_eq!(
                (keep.state_keys, keep.state_bytes),
                (0, 0),
                "expired and freed"
            );
        }
    }
}

/// Keeps every row with the time (tokio's clock) it arrived.
struct Arrivals<T>(Arc<Mutex<Vec<(T, tokio::time::Instant)>>>);

impl<T: Data> weir_runtime::Sink for Arrivals<T> {
    type Input = Vec<T>;
    type Output = ();

    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        let now = tokio::time::Instant::now();
        self.0
            .lock()
            .unwrap()
            .extend(batch.into_iter().map(|r| (r, now)));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// A window result is pushed row by row into a partial batch when the watermark fires it: it
/// must leave within one linger of that watermark, not wait for more input (here the source
/// waits at a gate for a hundred lingers after the watermark).
#[test]
fn a_window_result_arrives_within_one_linger_of_the_watermark_that_closes_it() {
    use weir_operators::keyed::aggregate::Count;
    use weir_operators::window::{Tumbling, WindowExt, Windowed};

    let linger = Duration::from_millis(20);
    let gate = Gate::default();
    let script = Scripted(VecDeque::from([
        Step::Rows(vec![(1u8, 5i64, 0u32), (1, 7, 1), (2, 8, 2)]),
        // Closes [0, 10) for both keys; the row at 12 stays in [10, 20).
        Step::Rows(vec![(1, 12, 3)]),
        Step::Watermark(10),
        Step::Wait(gate.clone()),
    ]));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let mut p = Pipeline::with_config(
        "window_linger",
        PipelineConfig {
            linger,
            ..config(1024)
        },
    );
    p.source("rows", script)
        .key_by(|r: &Row| r.0)
        .window(Tumbling::of(Duration::from_millis(10)), |r: &Row| {
            Timestamp(r.1)
        })
        .aggregate("count", Count::new())
        .sink("arrivals", Arrivals(arrivals.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    // Everything before the gate happens at the start: nothing before it waits for time.
    let start = rt.block_on(async { tokio::time::Instant::now() });
    rt.block_on(async {
        let opener = async {
            tokio::time::sleep(linger * 100).await;
            gate.open();
        };
        let (report, ()) = tokio::join!(p.run_async(), opener);
        report.unwrap();
    });
    let got = arrivals.lock().unwrap();
    let fired: Vec<_> = got
        .iter()
        .filter(|(w, _): &&(Windowed<u8, u64>, _)| w.start.0 == 0)
        .collect();
    assert_eq!(
        fired
            .iter()
            .map(|(w, _)| (w.key, w.value))
            .collect::<BTreeMap<_, _>>(),
        BTreeMap::from([(1, 2), (2, 1)])
    );
    for (w, at) in fired {
        assert!(
            *at - start <= linger,
            "window {w:?} arrived {:?} after its watermark; linger is {linger:?}",
            *at - start
        );
    }
}
