//! A dedicated thread for one operator's blocking work (file reads, encoding and writes).
//!
//! A file source or sink does its blocking work one call at a time, off the runtime's worker
//! threads. Running every call on the shared blocking pool would hand each call to whichever pool
//! thread is idle, so the buffers a reader or a Parquet writer grows (and frees, and grows again)
//! would be allocated by many threads in turn. A thread-caching allocator keeps freed memory with
//! the thread that allocated it until that thread allocates again; with calls spread over a pool
//! of mostly parked threads, that retained memory grows with the length of the run. A [`Lane`] is
//! one thread that runs an operator's calls in order for the operator's whole life, so its
//! buffers are allocated, freed and reused by one thread.
//!
//! Dropping the lane ends its thread after the call in progress, if any, and waits for it, so an
//! abandoned writer has cleaned up its temporary files when the lane's owner is gone.
//!
//! # Queue depth
//!
//! The lane's queue is an unbounded `std::sync::mpsc` channel, bounded by its use: a lane
//! belongs to one operator instance (it is not `Clone`, and every owner keeps it in a private
//! field), and every owner keeps at most one call in flight — the [`LaneTask`] it holds in a
//! single slot (`Option<LaneTask<_>>` or a `Busy`/`Closing` state) — and submits the next call
//! only after that one has resolved. The one call an owner submits without waiting for it is the
//! clean-up of an abandoned writer, which moves the owner into a terminal state from which it
//! submits nothing more. So the queue holds at most two calls: the one in flight and that
//! clean-up. A bounded channel would add a way to block an async worker without adding a bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// One thread running submitted calls in order; see the module docs.
#[derive(Debug)]
pub(crate) struct Lane {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// Why a call on a lane produced no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    /// The lane's thread could not be started.
    #[error("cannot start the thread `{name}`: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The call panicked.
    #[error("the blocking call panicked")]
    Panicked,
    /// The lane's thread is gone.
    #[error("the blocking thread is gone")]
    Gone,
}

impl Lane {
    /// Starts a thread named `name`.
    pub(crate) fn start(name: &str) -> Result<Self, LaneError> {
        // Unbounded in type, at most two calls deep in use: see "Queue depth" in the module docs.
        let (jobs, inbox) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(job) = inbox.recv() {
                    job();
                }
            })
            .map_err(|source| LaneError::Spawn {
                name: name.to_owned(),
                source,
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the lane after the calls submitted before it; the task resolves to its result.
    pub(crate) fn run<T, F>(&self, f: F) -> LaneTask<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The receiver may be gone (the operator was dropped): the result is dropped here.
            let _ = tx.send(result.map_err(|_| LaneError::Panicked));
        });
        if let Some(jobs) = &self.jobs {
            // A send fails only if the thread is gone; the task then resolves to `Gone`.
            let _ = jobs.send(job);
        }
        LaneTask(rx)
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // Waits for the call in progress; a panic in it was caught and reported already.
            let _ = thread.join();
        }
    }
}

/// The result of a call submitted to a [`Lane`].
#[derive(Debug)]
pub(crate) struct LaneTask<T>(oneshot::Receiver<Result<T, LaneError>>);

impl<T> Future for LaneTask<T> {
    type Output = Result<T, LaneError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(LaneError::Gone)))
    }
}

/// Polls the call in `slot`, if one is in flight, and empties the slot once it has finished:
/// `Ready(Some(result))` then, `Ready(None)` when nothing is in flight. A failure of the lane
/// itself becomes an internal error saying which blocking `what` (a read, a write) failed.
pub(crate) fn poll_slot<T>(
    slot: &mut Option<LaneTask<T>>,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<Option<Result<T, weir_runtime::OperatorError>>> {
    let Some(task) = slot.as_mut() else {
        return Poll::Ready(None);
    };
    let joined = std::task::ready!(Pin::new(task).poll(cx));
    *slot = None;
    Poll::Ready(Some(joined.map_err(|e| {
        weir_runtime::OperatorError::internal(format!("the blocking {what} failed: {e}"))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_calls_in_order_on_one_thread() {
        let lane = Lane::start("lane-test").expect("a thread");
        let a = lane.run(|| std::thread::current().name().map(str::to_owned));
        let b = lane.run(|| 2 + 2);
        assert_eq!(a.await.expect("ran").as_deref(), Some("lane-test"));
        assert_eq!(b.await.expect("ran"), 4);
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_the_lane_goes_on() {
        let lane = Lane::start("lane-test").expect("a thread");
        let bad = lane.run(|| -> u8 { panic!("boom") });
        assert!(matches!(bad.await, Err(LaneError::Panicked)));
        assert_eq!(lane.run(|| 7).await.expect("ran"), 7);
    }

    #[test]
    fn dropping_the_lane_waits_for_the_call_in_progress() {
        let lane = Lane::start("lane-test").expect("a thread");
        let (started_tx, started) = mpsc::channel();
        let (finish_tx, finish) = mpsc::channel::<()>();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let _task = lane.run(move || {
            started_tx.send(()).expect("test alive");
            finish.recv().expect("test alive");
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        started.recv().expect("the call started");
        finish_tx.send(()).expect("the call waits");
        drop(lane);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
