//! Helpers shared by the integration tests: hang guards, small pipeline configs, report lookups
//! and a waker that counts its wake-ups.
//!
//! Each test file compiles this module on its own, so helpers one file does not use are allowed.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use weir::prelude::*;
use weir::runtime::metrics::{EdgeReport, InstanceReport, OperatorReport};

/// How long a guarded step may take before the test is declared hung. Generous on purpose: it is
/// a guard against hangs, never the assertion of a test.
pub const GUARD: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread and returns its result, failing the test if it has not returned
/// within [`GUARD`] (the failure mode being guarded against is a hang).
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
pub fn run_guarded(p: Pipeline) -> Result<RunReport, RunError> {
    let handle = p.spawn()?;
    guarded("join", move || handle.join())
}

/// A small config: two workers, the given batch size, everything else default.
pub fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        workers: Some(2),
        batch_rows,
        ..PipelineConfig::default()
    }
}

/// A pipeline with [`config`]`(batch_rows)`.
pub fn pipeline(name: &str, batch_rows: usize) -> Pipeline {
    Pipeline::with_config(name, config(batch_rows))
}

/// The operator named `name` in `report`.
pub fn op<'a>(report: &'a RunReport, name: &str) -> &'a OperatorReport {
    report
        .operators
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no operator `{name}` in the report:\n{report}"))
}

/// The single instance of operator `name`.
pub fn inst<'a>(report: &'a RunReport, name: &str) -> &'a InstanceReport {
    let o = op(report, name);
    assert_eq!(o.instances.len(), 1, "`{name}` has several instances");
    &o.instances[0]
}

/// Every physical edge leaving operator `from`.
pub fn edges_from<'a>(report: &'a RunReport, from: &str) -> Vec<&'a EdgeReport> {
    report.edges.iter().filter(|e| e.from == from).collect()
}

/// A waker that counts how often it was woken.
#[derive(Default)]
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

/// A batch of `rows` consecutive values starting at `first`, with exactly `rows` capacity.
pub fn batch(first: u64, rows: usize) -> Vec<u64> {
    let mut v = Vec::with_capacity(rows);
    v.extend(first..first + rows as u64);
    v
}
