//! `InstanceInfo::downstream`: a source reads the rows queued in the edges reachable downstream
//! of it, through chained operators, exactly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use weir_runtime::operator::{DownstreamProbe, Output, Queued, Sink, Source, SourceStatus};
use weir_runtime::test_support::run_guarded;
use weir_runtime::{
    Batch, Chaining, EdgeConfig, InputPort, InstanceInfo, Operator, OperatorError, Pipeline,
    PipelineConfig,
};

const BATCHES: u64 = 3;

#[derive(Default)]
struct Shared {
    /// What the source read from its probe once everything it sent waited downstream.
    seen: Mutex<Option<(usize, Queued)>>,
    done: AtomicBool,
    sink_waker: Mutex<Option<Waker>>,
}

/// Emits `BATCHES` batches of 4 rows, then reads its probe and ends.
struct Probing {
    shared: Arc<Shared>,
    probe: DownstreamProbe,
    sent: u64,
}

impl Source for Probing {
    type Output = Vec<u64>;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.probe = info.downstream.clone();
        Ok(())
    }
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.sent < BATCHES {
            self.sent += 1;
            out.emit(vec![self.sent; 4]);
            return Poll::Ready(Ok(SourceStatus::Continue));
        }
        let s = &self.shared;
        *s.seen.lock().expect("not poisoned") = Some((self.probe.edges(), self.probe.queued()));
        s.done.store(true, Ordering::SeqCst);
        if let Some(w) = s.sink_waker.lock().expect("not poisoned").take() {
            w.wake();
        }
        Poll::Ready(Ok(SourceStatus::Done))
    }
}

struct Pass;

impl Operator for Pass {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(
        &mut self,
        _: InputPort,
        b: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        out.emit(b);
        Ok(())
    }
}

/// Takes nothing until the source has read its probe.
struct Held(Arc<Shared>);

impl Sink for Held {
    type Input = Vec<u64>;
    type Output = ();
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        *self.0.sink_waker.lock().expect("not poisoned") = Some(cx.waker().clone());
        if self.0.done.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

#[test]
fn a_source_reads_the_rows_queued_downstream_through_its_chain() {
    let shared = Arc::new(Shared::default());
    let mut p = Pipeline::with_config(
        "probe",
        PipelineConfig {
            batch_rows: 4,
            chaining: Chaining::Operators,
            ..PipelineConfig::default()
        },
    );
    p.source(
        "src",
        Probing {
            shared: shared.clone(),
            probe: DownstreamProbe::default(),
            sent: 0,
        },
    )
    .unary("pass", Pass)
    .with_edge(EdgeConfig::default().with_capacity(8))
    .sink("sink", Held(shared.clone()));
    run_guarded(p).expect("the run succeeds");
    let (edges, queued) = shared.seen.lock().expect("not poisoned").expect("read");
    // `pass` is chained into the source's task: one edge, to the sink, holding every row.
    assert_eq!(edges, 1);
    assert_eq!(queued.rows, BATCHES * 4);
    assert_eq!(queued.bytes, BATCHES * vec![0u64; 4].bytes() as u64);
}
