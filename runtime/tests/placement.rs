//! Where instance tasks run: with `Placement::PerWorker` every task stays on the worker it was
//! dealt (round-robin in plan order) for the whole run, with `Placement::Colocated` instance `k`
//! of every operator stays on worker `k`; every placement computes the same result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::test_support::run_guarded;
use weir_runtime::{
    Chaining, InputPort, InstanceInfo, Operator, OperatorError, Pipeline, PipelineConfig, Placement,
};

/// The threads each task ran on: task name → thread names seen, in order of first sight.
type Seen = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

fn record(seen: &Seen, task: &str) {
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let mut seen = seen.lock().unwrap();
    let threads = seen.entry(task.to_string()).or_default();
    if !threads.contains(&thread) {
        threads.push(thread);
    }
}

/// This instance's share of `0..n`, a few rows per poll, recording its thread at every poll.
struct Share {
    next: u64,
    end: u64,
    n: u64,
    task: String,
    seen: Seen,
}

impl Source for Share {
    type Output = Vec<u64>;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        let (i, p) = (info.instance as u64, info.parallelism as u64);
        self.next = self.n * i / p;
        self.end = self.n * (i + 1) / p;
        self.task = format!("source/{}", info.instance);
        Ok(())
    }
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        record(&self.seen, &self.task);
        while self.next < self.end && !out.is_full() {
            out.push(self.next);
            self.next += 1;
        }
        Poll::Ready(Ok(if self.next == self.end {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// Passes batches on, recording its thread at every batch.
struct Pass {
    task: String,
    seen: Seen,
}

impl Operator for Pass {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.task = format!("pass/{}", info.instance);
        Ok(())
    }
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        record(&self.seen, &self.task);
        out.emit(batch);
        Ok(())
    }
}

/// Sums rows, recording its thread at every batch.
struct Sum {
    sum: u64,
    seen: Seen,
}

impl Sink for Sum {
    type Input = Vec<u64>;
    type Output = u64;
    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        record(&self.seen, "sum/0");
        self.sum += batch.iter().sum::<u64>();
        Ok(())
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.sum)
    }
}

const N: u64 = 20_000;

/// source (2) → pass (2) → sum (1), every operator its own task, on two workers.
fn run(placement: Placement, pin_workers: bool) -> (u64, BTreeMap<String, Vec<String>>) {
    run_at(placement, pin_workers, 2)
}

/// source (p) → pass (p) → sum (1), every operator its own task, on two workers.
fn run_at(
    placement: Placement,
    pin_workers: bool,
    parallelism: usize,
) -> (u64, BTreeMap<String, Vec<String>>) {
    let seen: Seen = Arc::default();
    let mut p = Pipeline::with_config(
        "placed",
        PipelineConfig {
            workers: Some(2),
            placement,
            pin_workers,
            parallelism,
            batch_rows: 16,
            chaining: Chaining::Off,
            ..PipelineConfig::default()
        },
    );
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let sum = p
        .source_with("source", move |_| Share {
            next: 0,
            end: 0,
            n: N,
            task: String::new(),
            seen: s1.clone(),
        })
        .unary_with("pass", move |_| Pass {
            task: String::new(),
            seen: s2.clone(),
        })
        .sink("sum", Sum { sum: 0, seen: s3 });
    run_guarded(p).expect("the run succeeds");
    let seen = seen.lock().unwrap().clone();
    (sum.take().expect("the sink's result"), seen)
}

#[test]
fn per_worker_tasks_stay_on_the_worker_they_were_dealt() {
    let (sum, seen) = run(Placement::PerWorker, false);
    assert_eq!(sum, N * (N - 1) / 2);
    // Plan order: the source's instances, then the pass's, then the sink; dealt to worker
    // `i mod 2`, whose thread is named after the pipeline and the worker.
    let expected: BTreeMap<String, Vec<String>> = [
        ("source/0", 0),
        ("source/1", 1),
        ("pass/0", 0),
        ("pass/1", 1),
        ("sum/0", 0),
    ]
    .into_iter()
    .map(|(task, worker)| (task.to_string(), vec![format!("weir-placed-{worker}")]))
    .collect();
    assert_eq!(seen, expected);
}

/// `(task, worker)` pairs as the threads `run` records.
fn on_workers(tasks: &[(&str, usize)]) -> BTreeMap<String, Vec<String>> {
    tasks
        .iter()
        .map(|&(task, worker)| (task.to_string(), vec![format!("weir-placed-{worker}")]))
        .collect()
}

#[test]
fn colocated_instances_share_their_index_worker() {
    // Parallelism 1: round-robin would put the pass on worker 1 and the sum back on worker 0;
    // by instance, the whole slice runs on worker 0.
    let (sum, seen) = run_at(Placement::Colocated, false, 1);
    assert_eq!(sum, N * (N - 1) / 2);
    assert_eq!(
        seen,
        on_workers(&[("source/0", 0), ("pass/0", 0), ("sum/0", 0)])
    );
    // Parallelism 3 on two workers: instance k on worker k mod 2.
    let (sum, seen) = run_at(Placement::Colocated, false, 3);
    assert_eq!(sum, N * (N - 1) / 2);
    assert_eq!(
        seen,
        on_workers(&[
            ("source/0", 0),
            ("source/1", 1),
            ("source/2", 0),
            ("pass/0", 0),
            ("pass/1", 1),
            ("pass/2", 0),
            ("sum/0", 0),
        ])
    );
    // Round-robin in plan order puts the same tasks elsewhere: source/2 and pass/1 swap sides.
    let (_, seen) = run_at(Placement::PerWorker, false, 3);
    assert_eq!(
        seen,
        on_workers(&[
            ("source/0", 0),
            ("source/1", 1),
            ("source/2", 0),
            ("pass/0", 1),
            ("pass/1", 0),
            ("pass/2", 1),
            ("sum/0", 0),
        ])
    );
}

#[test]
fn pinned_workers_run_the_same_placement() {
    let (sum, seen) = run(Placement::PerWorker, true);
    assert_eq!(sum, N * (N - 1) / 2);
    assert!(seen.values().all(|threads| threads.len() == 1), "{seen:?}");
}

#[test]
fn work_stealing_computes_the_same_result() {
    let (sum, seen) = run(Placement::WorkStealing, false);
    assert_eq!(sum, N * (N - 1) / 2);
    assert_eq!(seen.len(), 5, "every task ran: {seen:?}");
    let workers = seen
        .values()
        .flatten()
        .all(|t| t.starts_with("weir-placed"));
    assert!(workers, "tasks run on the run's own workers: {seen:?}");
}
