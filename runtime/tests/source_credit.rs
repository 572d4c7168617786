//! How far a source can run ahead of a stalled consumer, exactly: behind forward edges it is
//! polled only with credit, so it is never more than the edge's capacity ahead; behind a
//! partitioned edge (`partition_with`, keyed streams) it can produce one batch more, which its
//! instance holds until the stalled target grants credit (the `Source` docs state this bound).
//!
//! The stalled consumer takes a batch only once the source is exactly at the bound, so a run
//! that allowed less would never end (the watchdog turns that into a failure) and one that
//! allowed more is caught by the recorded gap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::partition::{Partitioner, TargetLoad};
use weir_runtime::test_support::run_guarded;
use weir_runtime::{EdgeConfig, InputPort, OperatorError, Pipeline, PipelineConfig};

const BATCHES: u64 = 40;
const CAPACITY: usize = 2;

#[derive(Default)]
struct Shared {
    produced: AtomicU64,
    /// Batches the stalled sink said it would take (counted when it becomes ready, before the
    /// executor takes the batch from the edge and so before that returns credit).
    claimed: AtomicU64,
    /// Batches it took.
    taken: AtomicU64,
    max_gap: AtomicU64,
    done: AtomicBool,
    sink_waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn wake_sink(&self) {
        if let Some(w) = self.sink_waker.lock().expect("not poisoned").take() {
            w.wake();
        }
    }
}

/// One batch of 4 rows per poll, `BATCHES` in all; records how far it ran ahead of the sink.
struct Counted(Arc<Shared>);

impl Source for Counted {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let s = &self.0;
        let n = s.produced.fetch_add(1, Ordering::SeqCst) + 1;
        out.emit(vec![n; 4]);
        let gap = n - s.claimed.load(Ordering::SeqCst);
        s.max_gap.fetch_max(gap, Ordering::SeqCst);
        let status = if n == BATCHES {
            s.done.store(true, Ordering::SeqCst);
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        };
        s.wake_sink();
        Poll::Ready(Ok(status))
    }
}

/// Takes a batch only once the source is exactly `bound` batches ahead (or done); an inactive
/// one takes whatever comes (nothing, here).
struct Stalled {
    shared: Arc<Shared>,
    bound: u64,
    active: bool,
}

impl Sink for Stalled {
    type Input = Vec<u64>;
    type Output = ();
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let s = &self.shared;
        if !self.active {
            return Poll::Ready(Ok(()));
        }
        *s.sink_waker.lock().expect("not poisoned") = Some(cx.waker().clone());
        let gap = s.produced.load(Ordering::SeqCst) - s.claimed.load(Ordering::SeqCst);
        if gap >= self.bound || s.done.load(Ordering::SeqCst) {
            // Ready means one event is taken next.
            s.claimed.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
        if self.active {
            self.shared.taken.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Sends every row to the last target.
struct AllToLast;

impl Partitioner<Vec<u64>> for AllToLast {
    fn partition(
        &mut self,
        batch: Vec<u64>,
        loads: &[TargetLoad],
        out: &mut Vec<(usize, Vec<u64>)>,
    ) {
        out.push((loads.len() - 1, batch));
    }
}

fn run(partitioned: bool) -> u64 {
    let shared = Arc::new(Shared::default());
    let bound = CAPACITY as u64 + u64::from(partitioned);
    let mut p = Pipeline::with_config(
        "source-credit",
        PipelineConfig {
            batch_rows: 4,
            ..PipelineConfig::default()
        },
    );
    let edge = EdgeConfig::default().with_capacity(CAPACITY);
    let s = p.source("src", Counted(shared.clone()));
    let sink_shared = shared.clone();
    if partitioned {
        s.partition_with("all-to-last", |_, _| AllToLast)
            .with_edge(edge)
            .sink_with_parallelism("sink", 2, move |info| Stalled {
                shared: sink_shared.clone(),
                bound,
                active: info.instance == 1,
            });
    } else {
        s.with_edge(edge).sink(
            "sink",
            Stalled {
                shared: sink_shared,
                bound,
                active: true,
            },
        );
    }
    run_guarded(p).expect("the run succeeds");
    assert_eq!(shared.taken.load(Ordering::SeqCst), BATCHES);
    shared.max_gap.load(Ordering::SeqCst)
}

#[test]
fn behind_a_forward_edge_a_source_runs_at_most_the_edge_capacity_ahead() {
    assert_eq!(run(false), CAPACITY as u64);
}

#[test]
fn behind_a_partitioned_edge_a_source_runs_at_most_one_batch_more_ahead() {
    assert_eq!(run(true), CAPACITY as u64 + 1);
}
