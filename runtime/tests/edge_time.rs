//! Edges sized by time: the credit limit of the edge in front of a slow sink shrinks below its
//! capacity, and grows back when the sink speeds up, as the run report shows.
//!
//! No timing is asserted. The slow sink spends at least 2 ms of wall time on every batch (a
//! busy loop on the clock), so on any machine it drains at most 500 batches per second and a
//! 10 ms target allows it at most 5 of the edge's 16 slots; the fast sink does nothing, so
//! its limit can only grow from there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weir_runtime::metrics::EdgeReport;
use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::test_support::{guarded, GUARD};
use weir_runtime::{InputPort, OperatorError, Pipeline, PipelineConfig, RunHandle, RunReport};

const SLOW_BATCHES: u64 = 20;
const FAST_BATCHES: u64 = 4000;
const ROWS: usize = 1024;

/// `n` batches of `ROWS` rows, then done.
struct Batches(u64);

impl Source for Batches {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.0 == 0 {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        self.0 -= 1;
        out.emit(vec![self.0; ROWS]);
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Slow for its first `SLOW_BATCHES` batches; at the last of them it asks the test to look
/// at the run (and waits for it), then runs fast.
struct Slowing {
    seen: u64,
    fast: Arc<AtomicBool>,
    asks: mpsc::SyncSender<()>,
    answers: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Sink for Slowing {
    type Input = Vec<u64>;
    type Output = ();
    fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
        self.seen += 1;
        if self.fast.load(Ordering::SeqCst) {
            return Ok(());
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        if self.seen == SLOW_BATCHES {
            let _ = self.asks.send(());
            let answers = self.answers.lock().expect("not poisoned");
            answers
                .recv_timeout(GUARD)
                .map_err(|_| OperatorError::user("the test did not answer"))?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

fn into_sink(r: &RunReport) -> EdgeReport {
    r.edges
        .iter()
        .find(|e| e.to == "sink")
        .cloned()
        .expect("an edge into the sink")
}

/// The run, the sink's question, the test's answer and the switch to fast.
type Started = (
    RunHandle,
    mpsc::Receiver<()>,
    mpsc::SyncSender<()>,
    Arc<AtomicBool>,
);

fn start(target: Duration) -> Started {
    let (asks, asked) = mpsc::sync_channel(1);
    let (answer, answers) = mpsc::sync_channel(1);
    let fast = Arc::new(AtomicBool::new(false));
    let mut p = Pipeline::with_config(
        "slowing",
        PipelineConfig {
            batch_rows: ROWS,
            // Markers would count as messages that take no time: the bound above is exact
            // without them.
            latency_marker_interval: Duration::ZERO,
            edge_target_time: target,
            ..PipelineConfig::default()
        },
    );
    p.source("src", Batches(SLOW_BATCHES + FAST_BATCHES)).sink(
        "sink",
        Slowing {
            seen: 0,
            fast: fast.clone(),
            asks,
            answers: Arc::new(Mutex::new(answers)),
        },
    );
    (p.spawn().expect("starts"), asked, answer, fast)
}

#[test]
fn a_slow_sink_shrinks_its_edge_and_a_fast_one_grows_it_back() {
    let (handle, asked, answer, fast) = start(Duration::from_millis(10));
    asked
        .recv_timeout(GUARD)
        .expect("the sink reached its last slow batch");
    let slow = handle.snapshot();
    let edge = into_sink(&slow);
    assert_eq!(edge.capacity, 16);
    assert!(
        (2..=5).contains(&edge.credit_limit),
        "at most 500 batches/s for 10 ms: {edge:?}"
    );
    assert!(edge.buffered + edge.outstanding_credit <= edge.capacity);
    let text = slow.to_string();
    assert!(
        text.contains("edges sized by time (credit limit / capacity): `src`#0 → `sink`#0"),
        "{text}"
    );
    fast.store(true, Ordering::SeqCst);
    answer.send(()).expect("the sink waits");
    let done = guarded("join", move || handle.join()).expect("the run succeeds");
    let after = into_sink(&done);
    assert!(
        after.credit_limit > edge.credit_limit,
        "a fast sink's edge grows back: {after:?}"
    );
    let sink = done
        .operators
        .iter()
        .find(|o| o.name == "sink")
        .expect("the sink");
    assert_eq!(sink.rows_in, (SLOW_BATCHES + FAST_BATCHES) * ROWS as u64);
}

#[test]
fn a_zero_target_keeps_whole_edges() {
    let (handle, asked, answer, fast) = start(Duration::ZERO);
    asked
        .recv_timeout(GUARD)
        .expect("the sink reached its last slow batch");
    let edge = into_sink(&handle.snapshot());
    assert_eq!(edge.credit_limit, edge.capacity);
    fast.store(true, Ordering::SeqCst);
    answer.send(()).expect("the sink waits");
    let done = guarded("join", move || handle.join()).expect("the run succeeds");
    assert_eq!(into_sink(&done).credit_limit, 16);
    assert!(!done.to_string().contains("edges sized by time"));
}
