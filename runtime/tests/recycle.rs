//! A steady pipeline reuses its batch buffers: consumers hand emptied batches back through the
//! edges' return paths, and producers fill them instead of allocating.
//!
//! The source and the operator below take their next buffer from their output's spare
//! ([`Output::take_spare`], which the executor refills from the return paths) and count the
//! buffers they had to allocate because none was there. Millions of rows flow; with recycling
//! the buffers allocated stay bounded by what the edges can hold (data and spares), without it
//! there is one per batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::test_support::run_guarded;
use weir_runtime::{
    Chaining, EdgeConfig, InputPort, Operator, OperatorError, Pipeline, PipelineConfig,
};

const BATCH: usize = 1024;
const ROWS: u64 = 4 << 20;
const BATCHES: usize = (ROWS / BATCH as u64) as usize;
const CAPACITY: usize = 16;

/// Batch buffers allocated because no spare was there.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The tests share the counter: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The output's spare if it has one, else a new buffer (counted).
fn buffer(out: &mut Output<Vec<u64>>) -> Vec<u64> {
    match out.take_spare() {
        Some(spare) => {
            assert!(spare.is_empty(), "a spare arrives empty");
            spare
        }
        None => {
            ALLOCATED.fetch_add(1, Ordering::Relaxed);
            Vec::with_capacity(BATCH)
        }
    }
}

/// `0..n` in whole batches built with [`Output::batch_with_capacity`].
struct Numbers(u64, u64);

impl Source for Numbers {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let n = (self.1 - self.0).min(BATCH as u64);
        let mut batch = buffer(out);
        batch.extend(self.0..self.0 + n);
        self.0 += n;
        out.emit(batch);
        Poll::Ready(Ok(if self.0 == self.1 {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// Doubles every row into a batch of its own output, handing its input back (if `recycle`).
struct Double {
    recycle: bool,
    spare: Option<Vec<u64>>,
}

impl Operator for Double {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(
        &mut self,
        _: InputPort,
        mut batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        let mut doubled = buffer(out);
        doubled.extend(batch.drain(..).map(|x| x * 2));
        out.emit(doubled);
        if self.recycle {
            self.spare = Some(batch);
        }
        Ok(())
    }
    fn take_spare(&mut self) -> Option<Vec<u64>> {
        self.spare.take()
    }
}

/// Sums rows, handing every batch back (if `recycle`).
struct Sum {
    total: u64,
    recycle: bool,
    spare: Option<Vec<u64>>,
}

impl Sink for Sum {
    type Input = Vec<u64>;
    type Output = u64;
    fn on_batch(&mut self, _: InputPort, mut batch: Vec<u64>) -> Result<(), OperatorError> {
        self.total = batch.drain(..).fold(self.total, u64::wrapping_add);
        if self.recycle {
            self.spare = Some(batch);
        }
        Ok(())
    }
    fn take_spare(&mut self) -> Option<Vec<u64>> {
        self.spare.take()
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.total)
    }
}

/// Runs numbers → double → sum; returns the batch buffers allocated meanwhile.
fn run(chaining: Chaining, recycle: bool) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = PipelineConfig {
        batch_rows: BATCH,
        workers: Some(2),
        chaining,
        edge: EdgeConfig::default().with_capacity(CAPACITY),
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("recycle", config);
    let sum = p
        .source("numbers", Numbers(0, ROWS))
        .unary(
            "double",
            Double {
                recycle,
                spare: None,
            },
        )
        .sink(
            "sum",
            Sum {
                total: 0,
                recycle,
                spare: None,
            },
        );
    let before = ALLOCATED.load(Ordering::Relaxed);
    run_guarded(p).expect("the run succeeds");
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    assert_eq!(sum.take(), Some(ROWS * (ROWS - 1)), "every row, doubled");
    eprintln!("{chaining:?} recycle={recycle}: {allocated} buffers for {BATCHES} batches");
    allocated
}

/// What may be allocated at most with recycling: per edge its data slots and its spares, plus
/// the few buffers in the hands of the operators and their outputs.
const BOUND: usize = 2 * (2 * CAPACITY) + 8;

#[test]
fn a_chained_pipeline_allocates_no_batch_per_batch() {
    let allocated = run(Chaining::Operators, true);
    assert!(
        allocated <= BOUND,
        "{allocated} batch buffers allocated for {BATCHES} batches (bound {BOUND})"
    );
}

/// With every operator a task of its own, each on its own worker, a producer granted credit
/// can run ahead of the spares its consumer has yet to hand back (credit is granted on receive,
/// the spare returns after `on_batch`), and a return path that is full when a late spare arrives
/// drops it: buffers then cycle between allocation and drop for as long as the two sides keep
/// missing each other. On an idle machine this run allocates about 2 × (edge + spares), as the
/// chained one; with the threads preempted under load it has taken a few times that. The bound
/// is what recycling must still achieve there: at least 16 times fewer buffers than batches
/// (without it, two per batch).
const TASKS_BOUND: usize = BATCHES / 16;

#[test]
fn a_pipeline_of_tasks_allocates_no_batch_per_batch() {
    let allocated = run(Chaining::Off, true);
    assert!(
        allocated <= TASKS_BOUND,
        "{allocated} batch buffers allocated for {BATCHES} batches (bound {TASKS_BOUND})"
    );
}

#[test]
fn without_recycling_every_batch_is_allocated() {
    // The counter sees what it should: two buffers per batch (source and double's output).
    let allocated = run(Chaining::Off, false);
    assert_eq!(allocated, 2 * BATCHES);
}
