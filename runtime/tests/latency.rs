//! Latency on tokio's paused clock: a partial batch leaves within one linger wherever it waits,
//! and latency markers measure the time from a source to a sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;
use weir_runtime::test_support::start_async;
use weir_runtime::{
    InputPort, Operator, OperatorError, Output, Pipeline, PipelineConfig, RunReport, Sink, Source,
    SourceStatus,
};

/// Opened by the test; whoever waits on it is woken when it opens.
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

/// Pushes `rows` (fewer than a batch) in its first poll, notes when, then waits at the gate.
struct FewThenWait {
    rows: Vec<u64>,
    gate: Gate,
    pushed_at: Arc<Mutex<Option<Instant>>>,
}

impl Source for FewThenWait {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if !self.rows.is_empty() {
            out.extend(self.rows.drain(..));
            *self.pushed_at.lock().unwrap() = Some(Instant::now());
        }
        self.gate.poll(cx).map(|()| Ok(SourceStatus::Done))
    }
}

/// Passes rows on one at a time, so it holds a partial batch of its own.
struct RowByRow;

impl Operator for RowByRow {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        out.extend(batch);
        Ok(())
    }
}

/// Keeps every row with the time it arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(u64, Instant)>>>);

impl Sink for Arrivals {
    type Input = Vec<u64>;
    type Output = ();

    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        let now = Instant::now();
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

/// Runs `test` beside the pipeline on a current-thread runtime with a paused clock.
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

const LINGER: Duration = Duration::from_millis(20);

fn lingering() -> PipelineConfig {
    PipelineConfig {
        linger: LINGER,
        ..PipelineConfig::default()
    }
}

/// The bug this pins: the source's linger deadline was computed before it was polled, so a
/// partial batch pushed by a poll that then returned `Pending` had no deadline and waited for
/// the source's next wake-up (here: the gate, a hundred lingers later).
#[test]
fn a_partial_batch_from_a_source_that_then_waits_leaves_within_one_linger() {
    for chained in [false, true] {
        let gate = Gate::default();
        let pushed_at = Arc::new(Mutex::new(None));
        let arrivals = Arrivals::default();
        let mut p = Pipeline::with_config("few", lingering());
        let rows = p.source(
            "few",
            FewThenWait {
                rows: vec![1, 2, 3],
                gate: gate.clone(),
                pushed_at: pushed_at.clone(),
            },
        );
        // Through an operator chained into the source's task, or straight to the sink.
        let rows = if chained {
            rows.unary("pass", RowByRow)
        } else {
            rows
        };
        rows.sink("arrivals", arrivals.clone());
        let opener = gate.clone();
        on_paused_clock(p, |_| async move {
            tokio::time::sleep(LINGER * 100).await;
            opener.open();
        });
        let pushed = pushed_at
            .lock()
            .unwrap()
            .expect("the source pushed its rows");
        let got = arrivals.0.lock().unwrap().clone();
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
        for (row, at) in got {
            assert!(
                at - pushed <= LINGER,
                "row {row} arrived {:?} after it was pushed (chained: {chained}); linger is {LINGER:?}",
                at - pushed
            );
        }
    }
}

/// Takes exactly `per_batch` of (paused) time per batch: after each it is not ready again until
/// then.
struct Slow {
    per_batch: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    rows: u64,
}

impl Slow {
    fn new(per_batch: Duration) -> Self {
        Self {
            per_batch,
            wait: None,
            rows: 0,
        }
    }
}

impl Sink for Slow {
    type Input = Vec<u64>;
    type Output = u64;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Some(wait) = self.wait.as_mut() {
            std::task::ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
        Poll::Ready(Ok(()))
    }

    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.rows += batch.len() as u64;
        self.wait = Some(Box::pin(tokio::time::sleep(self.per_batch)));
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.rows)
    }
}

const BATCHES: u64 = 60;
const PER_BATCH: Duration = Duration::from_millis(10);

/// `Upto` (a batch per poll) into a sink of 10 ms a batch, through a task of its own or not.
fn slow_pipeline(markers: Duration, own_task: bool) -> RunReport {
    let cfg = PipelineConfig {
        latency_marker_interval: markers,
        chaining: if own_task {
            weir_runtime::Chaining::Off
        } else {
            weir_runtime::Chaining::Operators
        },
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("slow", cfg);
    p.source(
        "numbers",
        weir_runtime::test_support::Upto(0, BATCHES * 1024),
    )
    .unary("pass", RowByRow)
    .sink("slow", Slow::new(PER_BATCH));
    on_paused_clock(p, |_| async {})
}

fn operator<'a>(r: &'a RunReport, name: &str) -> &'a weir_runtime::metrics::OperatorReport {
    r.operators.iter().find(|o| o.name == name).unwrap()
}

#[test]
fn markers_measure_the_queue_in_front_of_a_slow_sink_and_are_not_rows() {
    for own_task in [false, true] {
        let report = slow_pipeline(Duration::from_millis(5), own_task);
        let l = report.latency.expect("markers reached the sink");
        // One marker at most each time the source found room (every 10 ms, as the sink takes
        // a batch), over the 600 ms the sink takes.
        assert!(
            (10..=BATCHES).contains(&l.markers),
            "{} markers (own task: {own_task})",
            l.markers
        );
        // Every marker waits at least for the batch the sink is on, and at most for every edge
        // on its path full of batches, and the one in the sink (to the histogram's 1/8).
        let capacity = report.edges.iter().map(|e| e.capacity).sum::<usize>() as f64;
        let most = (capacity + 2.0) * PER_BATCH.as_secs_f64() * 1e3 * 1.125;
        assert!(l.p50_ms >= PER_BATCH.as_secs_f64() * 1e3, "{l:?}");
        assert!(
            l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms && l.max_ms <= most,
            "{l:?}"
        );
        assert_eq!(
            operator(&report, "slow").latency,
            Some(l),
            "one sink: its figures are the run's"
        );
        assert_eq!(
            operator(&report, "numbers").latency,
            None,
            "only sinks record markers"
        );
        // Markers are not rows, nor batches.
        let sink = operator(&report, "slow");
        assert_eq!(sink.rows_in, BATCHES * 1024);
        assert_eq!(sink.instances[0].batches_in, BATCHES);
        assert_eq!(operator(&report, "pass").rows_out, BATCHES * 1024);
        assert!(report
            .edges
            .iter()
            .all(|e| e.rows_sent == (BATCHES * 1024) as usize));
        let text = report.to_string();
        assert!(text.contains("latency source → sink: p50"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["latency"]["markers"], l.markers);
        assert!(json["operators"][2]["latency"]["p99_ms"].as_f64().is_some());
    }
}

#[test]
fn without_markers_the_report_has_no_latency() {
    let report = slow_pipeline(Duration::ZERO, true);
    assert_eq!(report.latency, None);
    assert!(report.operators.iter().all(|o| o.latency.is_none()));
    assert!(!report.to_string().contains("latency"));
    assert_eq!(operator(&report, "slow").rows_in, BATCHES * 1024);
}
