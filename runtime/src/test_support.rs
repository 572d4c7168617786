//! Fixtures for tests of pipelines and edges, shared by the runtime's own tests, the facade's
//! and anyone writing operators: counting and failing sources, a collecting sink, a waker that
//! counts its wake-ups, and a guarded run that fails a test instead of hanging it.
//!
//! Compiled only with the `test-support` feature (enable it in `[dev-dependencies]`), so no
//! production build carries it.
//!
//! # Examples
//!
//! ```
//! use weir_runtime::test_support::{run_guarded, CollectAll, Upto};
//! use weir_runtime::Pipeline;
//!
//! let mut p = Pipeline::new("count");
//! let out = p.source("numbers", Upto(0, 5)).sink("all", CollectAll::default());
//! run_guarded(p).expect("the run succeeds");
//! assert_eq!(out.take(), Some(vec![0, 1, 2, 3, 4]));
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::error::{OperatorError, RunError};
use crate::metrics::RunReport;
use crate::operator::{InputPort, Output, Sink, Source, SourceStatus};
use crate::pipeline::Pipeline;

/// How long a guarded step may take before the test is declared hung. Generous on purpose: it
/// is a guard against hangs, never the assertion of a test.
pub const GUARD: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread and returns its result, failing the test if it has not returned
/// within [`GUARD`] (the failure mode being guarded against is a hang).
///
/// # Panics
///
/// When `f` has not returned within [`GUARD`], or panicked; `what` names the step.
pub fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("guard-{what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a guard thread");
    match rx.recv_timeout(GUARD) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result within {GUARD:?} (hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the guarded closure panicked"),
    }
}

/// Starts `p` on its own runtime thread and joins it under the hang guard.
///
/// # Errors
///
/// The run's error, as [`Pipeline::run`] returns it.
///
/// # Panics
///
/// When the run has not ended within [`GUARD`].
pub fn run_guarded(p: Pipeline) -> Result<RunReport, RunError> {
    let handle = p.spawn()?;
    guarded("join", move || handle.join())
}

/// A run started on the caller's tokio runtime, with live reports: for tests that drive time
/// themselves (tokio's paused clock), which [`Pipeline::spawn`]'s own runtime cannot.
pub struct AsyncRun {
    registry: Arc<crate::metrics::Registry>,
}

impl std::fmt::Debug for AsyncRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRun")
            .field("pipeline", &self.registry.pipeline)
            .finish()
    }
}

impl AsyncRun {
    /// A live report, as [`RunHandle::snapshot`](crate::RunHandle::snapshot).
    pub fn snapshot(&self) -> RunReport {
        self.registry.snapshot(false)
    }
}

/// Plans `p` and returns a handle for live reports and the run itself, to await (or join with
/// the test's own steps) on the caller's runtime.
///
/// # Errors
///
/// An invalid graph, or an operator that could not be built.
pub fn start_async(
    p: Pipeline,
) -> Result<
    (
        AsyncRun,
        impl std::future::Future<Output = Result<RunReport, RunError>>,
    ),
    RunError,
> {
    let prepared = p.prepare()?;
    let run = AsyncRun {
        registry: prepared.registry.clone(),
    };
    Ok((run, async move { prepared.run(None).await }))
}

/// A waker that counts how often it was woken, to assert "pending, then woken".
///
/// # Examples
///
/// ```
/// use weir_runtime::test_support::CountingWaker;
///
/// let (count, waker) = CountingWaker::new();
/// waker.wake_by_ref();
/// waker.wake();
/// assert_eq!(count.count(), 2);
/// ```
#[derive(Debug, Default)]
pub struct CountingWaker(AtomicUsize);

impl CountingWaker {
    /// A counter and a waker feeding it.
    pub fn new() -> (Arc<Self>, Waker) {
        let w = Arc::new(Self::default());
        (w.clone(), Waker::from(w))
    }

    /// Wake-ups so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A source of the numbers `self.0..self.1`, about one batch per poll, then done.
#[derive(Clone, Debug)]
pub struct Upto(pub u64, pub u64);

impl Source for Upto {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        while self.0 < self.1 && !out.is_full() {
            out.push(self.0);
            self.0 += 1;
        }
        Poll::Ready(Ok(if self.0 == self.1 {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// A sink that keeps every row, in arrival order, and yields them at the end.
#[derive(Clone, Debug)]
pub struct CollectAll<T>(pub Vec<T>);

impl<T> Default for CollectAll<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: crate::Data> Sink for CollectAll<T> {
    type Input = Vec<T>;
    type Output = Vec<T>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        self.0.extend(batch);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<T>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// How a failing fixture fails: by returning an error, or by panicking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// A user error (`OperatorError::user`) whose message names `what` and the row.
    Error,
    /// A panic whose message names `what` and the row.
    Panic,
}

impl Fail {
    /// The error `what` (`"source"`, `"sink"`, ...) fails with at row `at`.
    ///
    /// # Panics
    ///
    /// For [`Fail::Panic`], by design: with "`{what}` exploded at row `{at}`".
    pub fn fire(self, what: &str, at: u64) -> OperatorError {
        match self {
            Fail::Error => OperatorError::user(format!("{what} broke at row {at}")),
            Fail::Panic => panic!("{what} exploded at row {at}"),
        }
    }
}

/// A source of 0, 1, 2, .. in batches that fails when it reaches row `at`.
#[derive(Clone, Debug)]
pub struct BadSource {
    /// The next row to emit.
    pub next: u64,
    /// The row it fails at (never emitted).
    pub at: u64,
    /// How it fails.
    pub fail: Fail,
}

impl BadSource {
    /// A source that emits rows `0..at` and then fails as `fail` says.
    pub fn new(at: u64, fail: Fail) -> Self {
        Self { next: 0, at, fail }
    }
}

impl Source for BadSource {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        for _ in 0..out.batch_rows() {
            if self.next == self.at {
                return Poll::Ready(Err(self.fail.fire("source", self.at)));
            }
            out.push(self.next);
            self.next += 1;
        }
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// A batch of `rows` consecutive values starting at `first`, with exactly `rows` capacity (so
/// its bytes are what `rows` rows weigh).
pub fn batch(first: u64, rows: usize) -> Vec<u64> {
    let mut v = Vec::with_capacity(rows);
    v.extend(first..first + rows as u64);
    v
}
