//! Latency on tokio's paused clock: a partial batch leaves within one linger wherever it waits,
//! and latency markers measure the time from a source to a sink.

use std::future::Future;
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
