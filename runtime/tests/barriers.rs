//! Barriers complete only once every sink the source reaches has handled every row emitted
//! before them: through chained and unchained operators, across a rebalance to parallel
//! sinks, from two sources into one sink, behind a sink that makes rows durable slowly; and
//! an operator that keeps rows refuses them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use weir_runtime::barrier::Barriers;
use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::{
    Chaining, InputPort, InstanceInfo, Operator, OperatorError, Pipeline, PipelineConfig, RunError,
};

const MODES: [Chaining; 2] = [Chaining::Off, Chaining::Operators];

fn pipeline(name: &str, chaining: Chaining) -> Pipeline {
    Pipeline::with_config(
        name,
        PipelineConfig {
            chaining,
            batch_rows: 16,
            ..PipelineConfig::default()
        },
    )
}

/// What the sinks hold for good, and what each completed barrier promised.
#[derive(Default)]
struct Ledger {
    durable: Mutex<HashSet<u64>>,
    /// Barriers that completed while a row before them was not durable: `(source, id, row)`.
    broken: Mutex<Vec<(u64, u64, u64)>>,
    /// Highest barrier completed, per source.
    completed: Mutex<Vec<u64>>,
}

/// Emits rows `base..base + rows` in runs of `step`, a barrier after each run numbered by the
/// rows emitted so far; checks, as each barrier completes, that every row before it is durable.
struct Rows {
    base: u64,
    rows: u64,
    step: u64,
    next: u64,
    tag: usize,
    ledger: Arc<Ledger>,
    barriers: Barriers,
}

impl Rows {
    fn new(tag: usize, base: u64, rows: u64, step: u64, ledger: Arc<Ledger>) -> Self {
        Self {
            base,
            rows,
            step,
            next: 0,
            tag,
            ledger,
            barriers: Barriers::default(),
        }
    }
}

impl Source for Rows {
    type Output = Vec<u64>;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.barriers = info.barriers.clone();
        let (ledger, base, tag) = (self.ledger.clone(), self.base, self.tag);
        self.barriers.subscribe(move |id| {
            let durable = ledger.durable.lock().unwrap();
            for row in base..base + id {
                if !durable.contains(&row) {
                    ledger.broken.lock().unwrap().push((tag as u64, id, row));
                }
            }
            ledger.completed.lock().unwrap()[tag] = id;
        });
        Ok(())
    }
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.next == self.rows {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        let end = (self.next + self.step).min(self.rows);
        out.extend((self.next..end).map(|r| self.base + r));
        self.next = end;
        out.barrier(self.barriers.barrier(end));
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Passes rows on (and drops none).
struct Pass;
impl Operator for Pass {
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

/// Keeps rows in memory until a barrier asks for them to be made durable; that takes one
/// extra poll (a write that is not done at once).
struct Durable {
    ledger: Arc<Ledger>,
    buffered: Vec<u64>,
    syncing: bool,
}

impl Durable {
    fn new(ledger: Arc<Ledger>) -> Self {
        Self {
            ledger,
            buffered: Vec::new(),
            syncing: false,
        }
    }
}

impl Sink for Durable {
    type Input = Vec<u64>;
    type Output = u64;
    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.buffered.extend(batch);
        Ok(())
    }
    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        _: weir_runtime::Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        if !self.syncing {
            self.syncing = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.syncing = false;
        self.ledger
            .durable
            .lock()
            .unwrap()
            .extend(self.buffered.drain(..));
        Poll::Ready(Ok(()))
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        let n = self.buffered.len() as u64;
        self.ledger
            .durable
            .lock()
            .unwrap()
            .extend(self.buffered.drain(..));
        Ok(n)
    }
}

fn ledger(sources: usize) -> Arc<Ledger> {
    let l = Ledger::default();
    *l.completed.lock().unwrap() = vec![0; sources];
    Arc::new(l)
}

#[test]
fn barriers_complete_behind_rows_through_operators_and_parallel_sinks() {
    for chaining in MODES {
        let l = ledger(1);
        let mut p = pipeline("one-source", chaining);
        let source = Rows::new(0, 0, 5_000, 7, l.clone());
        let sink_ledger = l.clone();
        p.source("rows", source)
            .unary("pass", Pass)
            .rebalance()
            .unary_with("pass2", |_| Pass)
            .parallelism(2)
            .rebalance()
            // Each instance has two inputs carrying the same source's barriers.
            .unary_with("pass3", |_| Pass)
            .parallelism(3)
            .rebalance()
            .sink_with_parallelism("durable", 2, move |_| Durable::new(sink_ledger.clone()));
        p.run().expect("the run succeeds");
        assert!(
            l.broken.lock().unwrap().is_empty(),
            "{chaining:?}: {:?}",
            l.broken.lock().unwrap().first()
        );
        assert_eq!(
            l.completed.lock().unwrap()[0],
            5_000,
            "{chaining:?}: the last barrier completed"
        );
        assert_eq!(l.durable.lock().unwrap().len(), 5_000);
    }
}

#[test]
fn two_sources_complete_their_own_barriers_in_one_sink() {
    for chaining in MODES {
        let l = ledger(2);
        let mut p = pipeline("two-sources", chaining);
        let a = p.source("a", Rows::new(0, 0, 3_000, 5, l.clone()));
        let b = p.source("b", Rows::new(1, 1_000_000, 700, 3, l.clone()));
        let sink_ledger = l.clone();
        a.multi("both", [b], Pass)
            .sink("durable", Durable::new(sink_ledger));
        p.run().expect("the run succeeds");
        assert!(
            l.broken.lock().unwrap().is_empty(),
            "{chaining:?}: {:?}",
            l.broken.lock().unwrap().first()
        );
        assert_eq!(
            *l.completed.lock().unwrap(),
            vec![3_000, 700],
            "{chaining:?}"
        );
    }
}

/// Sums everything and emits the total at the end: it keeps what it took.
struct Total(u64);
impl Operator for Total {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        _: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.0 += batch.iter().sum::<u64>();
        Ok(())
    }
    fn on_end(&mut self, out: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        out.push(self.0);
        Ok(())
    }
    fn holds_rows(&self) -> bool {
        true
    }
}

#[test]
fn an_operator_that_keeps_rows_refuses_barriers() {
    for chaining in MODES {
        let l = ledger(1);
        let mut p = pipeline("holding", chaining);
        p.source("rows", Rows::new(0, 0, 100, 10, l.clone()))
            .unary("total", Total(0))
            .sink("durable", Durable::new(l.clone()));
        let err = p.run().expect_err("a barrier cannot pass `total`");
        let RunError::Operator {
            operator, error, ..
        } = &err
        else {
            panic!("{chaining:?}: an operator error, not {err}");
        };
        let text = format!("{operator}: {error}");
        assert!(
            text.contains("total") && text.contains("barrier"),
            "{chaining:?}: {text}"
        );
        assert_eq!(
            l.completed.lock().unwrap()[0],
            0,
            "{chaining:?}: nothing completed"
        );
    }
}
