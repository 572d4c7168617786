//! Event time at the sources: bounded out-of-orderness against a reference, `+∞` at the end,
//! blocked versus idle, rejoining, and watermark alignment as backpressure.
//!
//! Tests that need time to pass run on tokio's paused clock: the clock jumps only when every
//! task waits, so "past the idle timeout" means exactly that, with no sleep and no timing
//! assertion. Sources and sinks that must wait are held by [`Gate`]s the test opens.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use weir_runtime::test_support::{start_async, CollectAll};
use weir_runtime::{
    EdgeConfig, EventTimeState, InputPort, InstanceInfo, Operator, OperatorError, Output, Pipeline,
    PipelineConfig, RunReport, Sink, Source, SourceStatus, Timestamp, WatermarkStrategy,
};

/// A row: (tag, event time in ms).
type Row = (u64, i64);

fn ts(r: &Row) -> Timestamp {
    Timestamp(r.1)
}

/// Opened by the test up to a position; whoever waits on it is woken when it opens further.
#[derive(Default)]
struct Gate {
    open: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn new(open: usize) -> Arc<Self> {
        Arc::new(Gate {
            open: AtomicUsize::new(open),
            waker: Mutex::new(None),
        })
    }

    fn release(&self, up_to: usize) {
        self.open.store(up_to, SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    fn poll_open(&self, cx: &mut Context<'_>, at: usize) -> bool {
        if at < self.open.load(SeqCst) {
            return true;
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        at < self.open.load(SeqCst)
    }
}

/// Emits its rows one batch per call; a gate holds back the rows from its open position on.
struct Rows {
    rows: Vec<Row>,
    next: usize,
    gate: Option<Arc<Gate>>,
}

impl Rows {
    fn new(rows: Vec<Row>) -> Self {
        Self {
            rows,
            next: 0,
            gate: None,
        }
    }

    fn gated(rows: Vec<Row>, gate: &Arc<Gate>) -> Self {
        Self {
            gate: Some(gate.clone()),
            ..Self::new(rows)
        }
    }
}

impl Source for Rows {
    type Output = Vec<Row>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let start = self.next;
        while self.next < self.rows.len() && !out.is_full() {
            if let Some(gate) = &self.gate {
                if !gate.poll_open(cx, self.next) {
                    // What it read goes on; the next call waits.
                    if self.next > start {
                        break;
                    }
                    return Poll::Pending;
                }
            }
            out.push(self.rows[self.next]);
            self.next += 1;
        }
        Poll::Ready(Ok(if self.next == self.rows.len() {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Rows(Vec<Row>),
    Watermark(i64),
}

type Log = Arc<Mutex<Vec<(usize, Seen)>>>;

/// Forwards everything, logging (instance, batch or watermark) in the order it sees them.
struct Record {
    log: Log,
    instance: usize,
}

fn record(log: &Log) -> impl FnMut(&InstanceInfo) -> Record + Send + 'static {
    let log = log.clone();
    move |_| Record {
        log: log.clone(),
        instance: 0,
    }
}

impl Operator for Record {
    type Input = Vec<Row>;
    type Output = Vec<Row>;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.instance = info.instance;
        Ok(())
    }
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Row>,
        out: &mut Output<Vec<Row>>,
    ) -> Result<(), OperatorError> {
        self.log
            .lock()
            .unwrap()
            .push((self.instance, Seen::Rows(batch.clone())));
        out.emit(batch);
        Ok(())
    }
    fn on_watermark(
        &mut self,
        wm: Timestamp,
        out: &mut Output<Vec<Row>>,
    ) -> Result<(), OperatorError> {
        self.log
            .lock()
            .unwrap()
            .push((self.instance, Seen::Watermark(wm.0)));
        out.watermark(wm);
        Ok(())
    }
}

/// A sink not ready for anything until its gate opens; counts rows.
struct GatedSink(Arc<Gate>, usize);

impl Sink for GatedSink {
    type Input = Vec<Row>;
    type Output = usize;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.0.poll_open(cx, 0) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn on_batch(&mut self, _: InputPort, b: Vec<Row>) -> Result<(), OperatorError> {
        self.1 += b.len();
        Ok(())
    }
    fn finish(&mut self) -> Result<usize, OperatorError> {
        Ok(self.1)
    }
}

fn watermarks(log: &Log, instance: usize) -> Vec<i64> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|(i, s)| match s {
            Seen::Watermark(w) if *i == instance => Some(*w),
            _ => None,
        })
        .collect()
}

fn instance<'a>(
    report: &'a RunReport,
    name: &str,
    i: usize,
) -> &'a weir_runtime::metrics::InstanceReport {
    let op = report
        .operators
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no operator `{name}`"));
    &op.instances[i]
}

fn state(report: &RunReport, name: &str, i: usize) -> EventTimeState {
    instance(report, name, i)
        .event_time
        .as_ref()
        .unwrap_or_else(|| panic!("`{name}` #{i} has no event time"))
        .state
}

/// Runs `test` beside the pipeline's run on a current-thread runtime with a paused clock;
/// returns the final report. A run that hangs lets the paused clock jump to the guard's
/// deadline, which fails the test (no real time passes).
fn on_paused_clock<F, Fut>(p: Pipeline, test: F) -> RunReport
where
    F: FnOnce(weir_runtime::test_support::AsyncRun) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (handle, run) = start_async(p).unwrap();
        let both = async { tokio::join!(run, test(handle)) };
        let (report, ()) = tokio::time::timeout(Duration::from_secs(3_600), both)
            .await
            .expect("the run hangs");
        report.unwrap()
    })
}

/// Lets the paused clock run until every task waits and `d` has passed: with the clock
/// paused this is not a sleep, it jumps.
async fn until_quiet(d: Duration) {
    tokio::time::sleep(d).await;
}

fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows,
        ..PipelineConfig::default()
    }
}

/// Checks one run of a bounded strategy: the watermarks follow each batch that advances them
/// by exactly `max − bound − 1`, no row is late, and the last is `+∞`.
fn check_bounded(times: Vec<i64>, bound: i64, batch_rows: usize) {
    let rows: Vec<Row> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64, *t))
        .collect();
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config(
        "bounded",
        PipelineConfig {
            // Batches are cut by the source alone.
            linger: Duration::from_secs(60),
            ..config(batch_rows)
        },
    );
    let out = p
        .source("rows", Rows::new(rows.clone()))
        .with_watermarks(
            WatermarkStrategy::bounded(Duration::from_millis(bound as u64)).timestamps(ts),
        )
        .unary_with("record", record(&log))
        .sink("collect", CollectAll::default());
    let report = p.run().unwrap();
    assert_eq!(out.take().unwrap(), rows, "every row, in order");

    let seen: Vec<Seen> = log.lock().unwrap().iter().map(|(_, s)| s.clone()).collect();
    let mut expected = Vec::new();
    let (mut max, mut sent) = (None::<i64>, None::<i64>);
    for s in &seen {
        if let Seen::Rows(batch) = s {
            expected.push(s.clone());
            let m = batch.iter().map(|r| r.1).max().unwrap();
            max = Some(max.map_or(m, |x| x.max(m)));
            let wm = max.unwrap() - bound - 1;
            if sent.is_none_or(|s| wm > s) {
                sent = Some(wm);
                expected.push(Seen::Watermark(wm));
            }
        }
    }
    expected.push(Seen::Watermark(i64::MAX));
    assert_eq!(seen, expected);
    let mut wm = i64::MIN;
    for s in &seen {
        match s {
            Seen::Watermark(w) => wm = *w,
            Seen::Rows(batch) => {
                for r in batch {
                    assert!(r.1 > wm, "row {r:?} behind watermark {wm} within the bound");
                }
            }
        }
    }
    assert_eq!(instance(&report, "rows", 0).watermark, Some(i64::MAX));
    assert_eq!(state(&report, "rows", 0), EventTimeState::Ended);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn bounded_out_of_orderness_matches_a_reference(
        jitter in proptest::collection::vec(0i64..=20, 1..150),
        step in 0i64..5,
        batch_rows in 1usize..9,
    ) {
        // Each row at most `bound` behind any earlier one: i·step plus a jitter within it.
        let times = jitter.iter().enumerate().map(|(i, j)| 1_000 + i as i64 * step + j).collect();
        check_bounded(times, 20, batch_rows);
    }
}

#[test]
fn monotonic_is_bounded_by_zero() {
    check_bounded((0..100).map(|i| i * 3).collect(), 0, 4);
}

#[test]
fn end_of_input_advances_every_operator_to_infinity() {
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config("end", config(8));
    let a = p
        .source("a", Rows::new((0..50).map(|i| (0, i)).collect()))
        .with_watermarks(WatermarkStrategy::none());
    let b = p
        .source("b", Rows::new((0..30).map(|i| (1, i * 2)).collect()))
        .with_watermarks(WatermarkStrategy::monotonic().timestamps(ts));
    let _ = a
        .multi(
            "merge",
            [b],
            Record {
                log: log.clone(),
                instance: 0,
            },
        )
        .sink("collect", CollectAll::default());
    let report = p.run().unwrap();
    // `a` sends no watermark before its end (its +∞), so none passes the merge before all of
    // `a`'s rows have.
    let entries = log.lock().unwrap().clone();
    let last_a = entries
        .iter()
        .rposition(|(_, s)| matches!(s, Seen::Rows(rows) if rows.iter().any(|r| r.0 == 0)))
        .unwrap();
    let first_wm = entries
        .iter()
        .position(|(_, s)| matches!(s, Seen::Watermark(_)))
        .unwrap();
    assert!(first_wm > last_a);
    assert_eq!(watermarks(&log, 0).last(), Some(&i64::MAX));
    let shown = report.to_string();
    assert!(
        shown.contains("event time: `b` #0 ended, watermark +∞"),
        "{shown}"
    );
    assert!(shown.contains("watermark in: `merge` +∞"), "{shown}");
    for name in ["a", "b", "merge", "collect"] {
        assert_eq!(
            instance(&report, name, 0).watermark,
            Some(i64::MAX),
            "`{name}`"
        );
    }
}

#[test]
fn watermarks_after_an_operator_replace_upstream_ones() {
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config("assign", config(4));
    let _ = p
        .source("rows", Rows::new((0..20).map(|i| (0, 100 + i)).collect()))
        .with_watermarks(WatermarkStrategy::bounded(Duration::from_secs(1)).timestamps(ts))
        .unary_with("pass", record(&Log::default()))
        .with_watermarks(WatermarkStrategy::monotonic().timestamps(ts))
        .unary_with("record", record(&log))
        .sink("collect", CollectAll::default());
    p.run().unwrap();
    // One watermark after each batch of 4, then +∞; the source's own (far behind) are gone.
    assert_eq!(watermarks(&log, 0), vec![102, 106, 110, 114, 118, i64::MAX]);
}

#[test]
fn a_source_blocked_by_a_slow_sink_holds_the_watermark_back_and_is_never_idle() {
    let idle_timeout = Duration::from_millis(50);
    let sink_gate = Gate::new(0);
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config("blocked", config(8));
    let a = p
        .source("a", Rows::new((0..4_000).map(|i| (0, i)).collect()))
        .with_watermarks(
            WatermarkStrategy::monotonic()
                .timestamps(ts)
                .idle_timeout(idle_timeout),
        )
        .with_edge(EdgeConfig::default().with_capacity(2));
    let b = p
        .source("b", Rows::new((0..100).map(|i| (1, i * 1_000)).collect()))
        .with_watermarks(WatermarkStrategy::monotonic().timestamps(ts));
    // `a` feeds the merge and a sink that takes nothing until the test opens it.
    let slow = a.clone().sink("slow", GatedSink(sink_gate.clone(), 0));
    let merged = a
        .multi(
            "merge",
            [b],
            Record {
                log: log.clone(),
                instance: 0,
            },
        )
        .sink("collect", CollectAll::default());
    let gate = sink_gate.clone();
    let probe = log.clone();
    let report = on_paused_clock(p, move |run| async move {
        // Far past the idle timeout, with `a` blocked all along.
        until_quiet(idle_timeout * 20).await;
        let now = run.snapshot();
        assert_eq!(state(&now, "a", 0), EventTimeState::Blocked);
        assert_eq!(state(&now, "b", 0), EventTimeState::Ended);
        let a_wm = instance(&now, "a", 0).watermark.expect("a sent watermarks");
        let merge_wm = *watermarks(&probe, 0).last().expect("the merge got one");
        // `b` ended (+∞): only `a`'s unread rows hold the merge back.
        assert!(
            merge_wm <= a_wm && merge_wm < 3_999,
            "merge at {merge_wm}, a at {a_wm}"
        );
        assert_eq!(instance(&now, "merge", 0).watermark, Some(merge_wm));
        gate.release(1);
    });
    assert_eq!(slow.take(), Some(4_000));
    assert_eq!(merged.take().unwrap().len(), 4_100);
    let a = instance(&report, "a", 0).event_time.clone().unwrap();
    assert_eq!(a.idle_periods, 0, "blocked is never idle");
    let wms = watermarks(&log, 0);
    assert!(wms.windows(2).all(|w| w[0] < w[1]), "{wms:?}");
    assert_eq!(wms.last(), Some(&i64::MAX));
}

#[test]
fn an_idle_source_lets_the_watermark_advance_and_rejoins_with_its_next_row() {
    let idle_timeout = Duration::from_millis(50);
    let (a_gate, b_gate) = (Gate::new(100), Gate::new(100));
    // `a`: 100 rows up to 99, then (once released) a row at 500 and rows from 20 000 on.
    let mut a_rows: Vec<Row> = (0..100).map(|i| (0, i)).collect();
    a_rows.push((0, 500));
    a_rows.extend((0..50).map(|i| (0, 20_000 + i)));
    // `b`: 100 rows up to 9 900, then (once released) 10 more.
    let b_rows: Vec<Row> = (0..110).map(|i| (1, i * 100)).collect();
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config("idle", config(10));
    let a = p.source("a", Rows::gated(a_rows, &a_gate)).with_watermarks(
        WatermarkStrategy::monotonic()
            .timestamps(ts)
            .idle_timeout(idle_timeout),
    );
    let b = p
        .source("b", Rows::gated(b_rows, &b_gate))
        .with_watermarks(WatermarkStrategy::monotonic().timestamps(ts));
    let merged = a
        .multi(
            "merge",
            [b],
            Record {
                log: log.clone(),
                instance: 0,
            },
        )
        .sink("collect", CollectAll::default());
    let probe = log.clone();
    let (ag, bg) = (a_gate.clone(), b_gate.clone());
    let report = on_paused_clock(p, move |run| async move {
        until_quiet(idle_timeout * 20).await;
        let now = run.snapshot();
        assert_eq!(state(&now, "a", 0), EventTimeState::Idle);
        // Waiting for data, not yet for its (absent) idle timeout: still holding.
        assert_eq!(state(&now, "b", 0), EventTimeState::Active);
        let b_wm = instance(&now, "b", 0).watermark.unwrap();
        assert_eq!(b_wm, 9_899);
        assert_eq!(
            watermarks(&probe, 0).last(),
            Some(&b_wm),
            "advanced with `b` alone"
        );
        // `a` rejoins with an old row (500, behind the merge's 9 899) and newer ones.
        ag.release(usize::MAX);
        until_quiet(idle_timeout / 2).await;
        let now = run.snapshot();
        assert_ne!(state(&now, "a", 0), EventTimeState::Idle);
        bg.release(usize::MAX);
    });
    assert_eq!(merged.take().unwrap().len(), 261);
    let wms = watermarks(&log, 0);
    assert!(
        wms.windows(2).all(|w| w[0] < w[1]),
        "never backwards: {wms:?}"
    );
    assert_eq!(wms.last(), Some(&i64::MAX));
    // The row at 500 arrived after the watermark passed it: late, passed on, not dropped.
    let entries = log.lock().unwrap().clone();
    let late_at = entries
        .iter()
        .position(|(_, s)| matches!(s, Seen::Rows(b) if b.contains(&(0, 500))))
        .unwrap();
    let wm_before = entries[..late_at]
        .iter()
        .rev()
        .find_map(|(_, s)| match s {
            Seen::Watermark(w) => Some(*w),
            _ => None,
        })
        .unwrap();
    assert!(
        wm_before >= 9_899,
        "the rejoining row is late ({wm_before})"
    );
    assert_eq!(
        instance(&report, "a", 0)
            .event_time
            .as_ref()
            .unwrap()
            .idle_periods,
        1
    );
}

#[test]
fn alignment_pauses_the_instance_ahead_until_the_slowest_catches_up() {
    let max_drift = 50i64;
    let batch_rows = 16usize;
    let rows_each = 2_000i64;
    // Instance 0 stops after 100 rows until the test releases it; instance 1 reads freely.
    let slow_gate = Gate::new(100);
    let log: Log = Arc::default();
    let mut p = Pipeline::with_config("aligned", config(batch_rows));
    let gate = slow_gate.clone();
    let out = p
        .source_with("split", move |info: &InstanceInfo| {
            let rows: Vec<Row> = (0..rows_each).map(|t| (info.instance as u64, t)).collect();
            if info.instance == 0 {
                Rows::gated(rows, &gate)
            } else {
                Rows::new(rows)
            }
        })
        .parallelism(2)
        .with_watermarks(
            WatermarkStrategy::monotonic()
                .timestamps(ts)
                .align("split", Duration::from_millis(max_drift as u64)),
        )
        // Chained into each source instance: it logs each watermark as it is sent.
        .unary_with("record", record(&log))
        .parallelism(2)
        .sink("collect", CollectAll::default());
    let probe = log.clone();
    let report = on_paused_clock(p, move |run| async move {
        until_quiet(Duration::from_secs(1)).await;
        let now = run.snapshot();
        assert_eq!(state(&now, "split", 1), EventTimeState::Paused);
        let slow = *watermarks(&probe, 0).last().unwrap();
        let fast = *watermarks(&probe, 1).last().unwrap();
        assert!(
            fast > slow && fast - slow <= max_drift + batch_rows as i64,
            "{slow} {fast}"
        );
        slow_gate.release(usize::MAX);
    });
    assert_eq!(out.take().unwrap().len(), 2 * rows_each as usize);
    let fast = instance(&report, "split", 1).event_time.clone().unwrap();
    assert!(fast.alignment_pauses >= 1);
    // At every point of the run, the watermarks sent stay within the drift plus one batch.
    let mut latest = [None::<i64>; 2];
    for (i, s) in log.lock().unwrap().iter() {
        if let Seen::Watermark(w) = s {
            latest[*i] = Some(*w);
        }
        if let [Some(a), Some(b)] = latest {
            if a < i64::MAX && b < i64::MAX {
                assert!(
                    (a - b).abs() <= max_drift + batch_rows as i64,
                    "drift {} between {a} and {b}",
                    (a - b).abs()
                );
            }
        }
    }
    assert_eq!(state(&report, "split", 0), EventTimeState::Ended);
}

/// Emits the given Arrow batches, one per call.
struct Batches(std::vec::IntoIter<arrow_array::RecordBatch>);

impl Source for Batches {
    type Output = arrow_array::RecordBatch;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<arrow_array::RecordBatch>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        match self.0.next() {
            Some(b) => {
                out.emit(b);
                Poll::Ready(Ok(SourceStatus::Continue))
            }
            None => Poll::Ready(Ok(SourceStatus::Done)),
        }
    }
}

/// Logs the watermarks of a stream of Arrow batches.
struct ColumnWatermarks(Arc<Mutex<Vec<i64>>>);

impl Operator for ColumnWatermarks {
    type Input = arrow_array::RecordBatch;
    type Output = arrow_array::RecordBatch;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: arrow_array::RecordBatch,
        out: &mut Output<arrow_array::RecordBatch>,
    ) -> Result<(), OperatorError> {
        out.emit(batch);
        Ok(())
    }
    fn on_watermark(
        &mut self,
        wm: Timestamp,
        out: &mut Output<arrow_array::RecordBatch>,
    ) -> Result<(), OperatorError> {
        self.0.lock().unwrap().push(wm.0);
        out.watermark(wm);
        Ok(())
    }
}

struct CountBatches(usize);

impl Sink for CountBatches {
    type Input = arrow_array::RecordBatch;
    type Output = usize;
    fn on_batch(&mut self, _: InputPort, b: arrow_array::RecordBatch) -> Result<(), OperatorError> {
        self.0 += b.num_rows();
        Ok(())
    }
    fn finish(&mut self) -> Result<usize, OperatorError> {
        Ok(self.0)
    }
}

fn ms_batch(name: &str, times: &[i64]) -> arrow_array::RecordBatch {
    let col: arrow_array::ArrayRef =
        Arc::new(arrow_array::TimestampMillisecondArray::from(times.to_vec()));
    arrow_array::RecordBatch::try_from_iter([(name, col)]).unwrap()
}

#[test]
fn arrow_batches_take_event_time_from_a_column() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut p = Pipeline::new("columns");
    let rows = p
        .source(
            "batches",
            Batches(vec![ms_batch("ts", &[10, 20]), ms_batch("ts", &[15, 40])].into_iter()),
        )
        .with_watermarks(WatermarkStrategy::bounded(Duration::from_millis(5)).column("ts"))
        .unary("log", ColumnWatermarks(seen.clone()))
        .sink("count", CountBatches(0));
    p.run().unwrap();
    assert_eq!(rows.take(), Some(4));
    assert_eq!(*seen.lock().unwrap(), vec![14, 34, i64::MAX]);

    // A batch without the column fails the run, naming it.
    let mut p = Pipeline::new("no-column");
    let _ = p
        .source("batches", Batches(vec![ms_batch("at", &[1])].into_iter()))
        .with_watermarks(WatermarkStrategy::monotonic().column("ts"))
        .sink("count", CountBatches(0));
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("`ts`"), "{err}");
}
