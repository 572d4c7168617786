//! Handles on a run: [`RunHandle`] to watch, stop and join it, [`SinkHandle`] for a sink's
//! results.

use std::fmt;
use std::sync::Arc;

use crate::error::RunError;
use crate::exec::runners::ResultSlot;
use crate::metrics::{Registry, RunReport};
use crate::stop::StopSignal;

/// A running pipeline.
///
/// Dropping the handle without [`join`](Self::join) asks the sources to stop and waits for the
/// run to drain, so no task outlives it.
pub struct RunHandle {
    pub(super) thread: Option<std::thread::JoinHandle<Result<RunReport, RunError>>>,
    pub(super) registry: Arc<Registry>,
    pub(super) stop: Arc<StopSignal>,
    pub(super) checkpoints: Option<Arc<crate::exec::checkpoint::Checkpoints>>,
}

impl fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("pipeline", &self.registry.pipeline)
            .finish()
    }
}

impl RunHandle {
    /// A live report: per-operator figures and edge occupancy right now.
    pub fn snapshot(&self) -> RunReport {
        self.registry.snapshot(false)
    }

    /// Asks every source to stop reading; the pipeline then drains and ends normally.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Asks for a checkpoint now: at once if none is in flight, else right after the one in
    /// flight. Returns false if checkpoints are off
    /// ([`PipelineConfig::checkpointing`](crate::PipelineConfig::checkpointing)).
    pub fn checkpoint_now(&self) -> bool {
        match &self.checkpoints {
            Some(c) => {
                c.trigger_now();
                true
            }
            None => false,
        }
    }

    /// The stop signal, to trigger from elsewhere (a Ctrl-C handler, say).
    pub fn stop_signal(&self) -> Arc<StopSignal> {
        self.stop.clone()
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the run to end.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`](crate::Pipeline::run).
    pub fn join(mut self) -> Result<RunReport, RunError> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.stop();
            let _ = thread.join();
        }
    }
}

/// The results a sink yields at the end of a run, one per instance.
pub struct SinkHandle<R> {
    pub(super) slot: ResultSlot<R>,
}

impl<R> Clone for SinkHandle<R> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
        }
    }
}

impl<R> fmt::Debug for SinkHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkHandle").finish_non_exhaustive()
    }
}

impl<R> SinkHandle<R> {
    /// The result of a single-instance sink, once the run has finished it (taken once).
    pub fn take(&self) -> Option<R> {
        let mut v = self.slot.lock().ok()?;
        if v.is_empty() {
            None
        } else {
            Some(v.swap_remove(0).1)
        }
    }

    /// Every instance's result, in instance order (taken once).
    pub fn take_all(&self) -> Vec<R> {
        let mut v = match self.slot.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return Vec::new(),
        };
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, r)| r).collect()
    }
}
