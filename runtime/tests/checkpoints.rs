//! Checkpoints in the executor: aligned barriers, snapshots, restore and the restart strategy.
//!
//! The sequence-number job (as Flink tests exactly-once): every source instance emits
//! `(instance, 0..n)` and reports its position; a checker sink whose state (the next number
//! expected from each instance) is checkpointed fails on any number lost, duplicated or out of
//! order. Failures are injected at seeded points; the restart strategy restores the latest
//! checkpoint each time, and the final state must be exact.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use weir_runtime::checkpoint::{
    decode, encode, CheckpointMeta, CheckpointStore, SnapshotReader, SnapshotWriter,
};
use weir_runtime::test_support::{guarded, run_guarded};
use weir_runtime::{
    CheckpointConfig, EdgeConfig, InputPort, InstanceInfo, Operator, OperatorError, Output,
    Pipeline, PipelineConfig, RestartStrategy, RunError, RunReport, Sink, SinkHandle, Source,
    SourceStatus,
};

type Row = (u32, u64);

/// Emits `(instance, k)` for `k` in `next..n`; its position is `next`.
struct Seq {
    instance: u32,
    next: u64,
    n: u64,
}

impl Source for Seq {
    type Output = Vec<Row>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        while self.next < self.n && !out.is_full() {
            out.push((self.instance, self.next));
            self.next += 1;
        }
        Poll::Ready(Ok(if self.next == self.n {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        Ok(self.next.to_le_bytes().to_vec())
    }
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| OperatorError::user("a position is 8 bytes"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Failure points, in rows seen over all attempts: the hook that sees the row count pass the
/// next point fails once.
#[derive(Clone, Default)]
struct Faults {
    seen: Arc<AtomicU64>,
    points: Arc<Mutex<Vec<u64>>>,
}

impl Faults {
    fn new(points: Vec<u64>) -> Self {
        let mut points = points;
        points.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            seen: Arc::default(),
            points: Arc::new(Mutex::new(points)),
        }
    }
    /// Failure points not reached.
    fn left(&self) -> usize {
        self.points.lock().unwrap().len()
    }
    /// Counts `rows`; true if a failure point was passed (it is used up).
    fn hit(&self, rows: usize) -> bool {
        let seen = self.seen.fetch_add(rows as u64, Ordering::Relaxed) + rows as u64;
        let mut points = self.points.lock().unwrap();
        if points.last().is_some_and(|&p| seen >= p) {
            points.pop();
            return true;
        }
        false
    }
}

/// Passes rows on; panics at its failure points.
struct Flaky(Faults);

impl Operator for Flaky {
    type Input = Vec<Row>;
    type Output = Vec<Row>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Row>,
        out: &mut Output<Vec<Row>>,
    ) -> Result<(), OperatorError> {
        if self.0.hit(batch.len()) {
            panic!("injected operator failure");
        }
        out.emit(batch);
        Ok(())
    }
}

/// Checks every instance's numbers arrive once each, in order; its write fails at its failure
/// points. Its state is the next number expected per instance.
struct Checker {
    next: BTreeMap<u32, u64>,
    faults: Faults,
}

impl Sink for Checker {
    type Input = Vec<Row>;
    type Output = BTreeMap<u32, u64>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<Row>) -> Result<(), OperatorError> {
        if self.faults.hit(batch.len()) {
            return Err(OperatorError::user("injected write failure"));
        }
        for (i, k) in batch {
            let next = self.next.entry(i).or_insert(0);
            if k != *next {
                return Err(OperatorError::internal(format!(
                    "instance {i}: got {k}, expected {next} ({})",
                    if k < *next { "duplicate" } else { "lost" }
                )));
            }
            *next += 1;
        }
        Ok(())
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let bytes = encode(&self.next).map_err(|e| OperatorError::internal(e.to_string()))?;
        state.put_instance(bytes);
        Ok(())
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        for bytes in state.instance_states() {
            let next: BTreeMap<u32, u64> =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            self.next.extend(next);
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<BTreeMap<u32, u64>, OperatorError> {
        Ok(std::mem::take(&mut self.next))
    }
}

fn config(dir: &std::path::Path, interval: Duration, attempts: u32) -> PipelineConfig {
    PipelineConfig {
        batch_rows: 16,
        linger: Duration::ZERO,
        edge: EdgeConfig {
            capacity: 1,
            ..EdgeConfig::default()
        },
        workers: Some(2),
        ..PipelineConfig::default()
    }
    .checkpointing(
        CheckpointConfig::new(dir)
            .interval(interval)
            .retain(2)
            .restart(RestartStrategy {
                attempts,
                backoff: Duration::ZERO,
            }),
    )
}

/// The sequence-number job: `sources` instances of `n` numbers, a flaky operator per source
/// instance (chained), one checker sink aligning their edges.
fn sequence_job(
    cfg: PipelineConfig,
    sources: usize,
    n: u64,
    op_faults: Faults,
    sink_faults: Faults,
) -> (Pipeline, SinkHandle<BTreeMap<u32, u64>>) {
    let mut p = Pipeline::with_config("sequence", cfg);
    let checked = p
        .source_with("numbers", move |info: &InstanceInfo| Seq {
            instance: info.instance as u32,
            next: 0,
            n,
        })
        .parallelism(sources)
        .unary_with("flaky", move |_| Flaky(op_faults.clone()))
        .parallelism(sources)
        .sink(
            "check",
            Checker {
                next: BTreeMap::new(),
                faults: sink_faults,
            },
        );
    (p, checked)
}

/// Runs the sequence job under the restart strategy; returns its report, the checker's final
/// state and the failures injected.
fn run_sequence(
    dir: &std::path::Path,
    n: u64,
    op_points: Vec<u64>,
    sink_points: Vec<u64>,
    attempts: u32,
) -> (
    Result<RunReport, RunError>,
    Option<BTreeMap<u32, u64>>,
    usize,
) {
    let dir = dir.to_path_buf();
    guarded("sequence job", move || {
        let points = op_points.len() + sink_points.len();
        let (op_faults, sink_faults) = (Faults::new(op_points), Faults::new(sink_points));
        let last = Arc::new(Mutex::new(None));
        let handle = last.clone();
        let (op, sink) = (op_faults.clone(), sink_faults.clone());
        let report = Pipeline::run_restartable(|| {
            let cfg = config(&dir, Duration::from_millis(2), attempts);
            let (p, checked) = sequence_job(cfg, 2, n, op.clone(), sink.clone());
            *handle.lock().unwrap() = Some(checked);
            p
        });
        let result = last.lock().unwrap().take().and_then(|h| h.take());
        let injected = points - op_faults.left() - sink_faults.left();
        (report, result, injected)
    })
}

#[test]
fn the_sequence_job_without_failures_checkpoints_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (report, result, _) = run_sequence(dir.path(), 20_000, vec![], vec![], 0);
    let report = report.unwrap();
    assert_eq!(result, Some(BTreeMap::from([(0, 20_000), (1, 20_000)])));
    let c = report.checkpoints.expect("checkpoints on");
    assert_eq!((c.failed, c.restarts), (0, 0), "{c}");
}

#[test]
fn the_sequence_job_restarts_from_checkpoints_after_failures_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50_000;
    // Seeded points (rows seen over all attempts, each hook counting its own): operator panics
    // and failed sink writes. A point beyond what the last attempt reads is never reached.
    let op_points = vec![11_000, 37_000, 70_000];
    let sink_points = vec![23_000, 52_000];
    let (report, result, injected) = run_sequence(dir.path(), n, op_points, sink_points, 6);
    let report = report.unwrap();
    assert_eq!(result, Some(BTreeMap::from([(0, n), (1, n)])));
    let c = report.checkpoints.expect("checkpoints on");
    assert!(
        injected >= 3,
        "the points below 2 × n are always reached: {injected}"
    );
    assert_eq!(c.restarts as usize, injected, "{c}");
}

#[test]
fn a_run_out_of_restarts_returns_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, _) = run_sequence(dir.path(), 5_000, vec![1_000], vec![], 0);
    let err = report.unwrap_err();
    assert!(
        matches!(&err, RunError::Panic { operator, .. } if operator == "flaky"),
        "{err}"
    );
}

/// Holds rows, and cannot snapshot them.
struct Hoard(Vec<Row>);

impl Operator for Hoard {
    type Input = Vec<Row>;
    type Output = Vec<Row>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Row>,
        _: &mut Output<Vec<Row>>,
    ) -> Result<(), OperatorError> {
        self.0.extend(batch);
        Ok(())
    }
    fn on_end(&mut self, out: &mut Output<Vec<Row>>) -> Result<(), OperatorError> {
        out.emit(std::mem::take(&mut self.0));
        Ok(())
    }
    fn holds_rows(&self) -> bool {
        true
    }
}

#[test]
fn an_operator_that_holds_rows_without_snapshots_fails_a_checkpointed_run_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Duration::from_millis(2), 0);
    let mut p = Pipeline::with_config("hoard", cfg);
    let _ = p
        .source(
            "numbers",
            Seq {
                instance: 0,
                next: 0,
                n: 10,
            },
        )
        .unary("hoard", Hoard(Vec::new()))
        .sink(
            "check",
            Checker {
                next: BTreeMap::new(),
                faults: Faults::default(),
            },
        );
    let err = run_guarded(p).unwrap_err();
    assert_eq!(err.operator(), Some("hoard"), "{err}");
    assert!(err.to_string().contains("cannot snapshot"), "{err}");
}

#[test]
fn a_checkpoint_of_another_graph_is_refused_on_restore() {
    let dir = tempfile::tempdir().unwrap();
    // A complete checkpoint of a graph with another fingerprint.
    {
        let store = CheckpointStore::open(dir.path(), 2).unwrap();
        let pending = store.begin(store.next_id()).unwrap();
        pending
            .commit(CheckpointMeta::new(0xdead, 128).operator("numbers", 1))
            .unwrap();
    }
    let cfg = config(dir.path(), Duration::from_millis(2), 0);
    let cfg = PipelineConfig {
        checkpoint: cfg.checkpoint.map(|c| c.restore(true)),
        ..cfg
    };
    let mut p = Pipeline::with_config("other", cfg);
    let _ = p
        .source(
            "numbers",
            Seq {
                instance: 0,
                next: 0,
                n: 10,
            },
        )
        .sink(
            "elsewhere",
            Checker {
                next: BTreeMap::new(),
                faults: Faults::default(),
            },
        );
    let err = run_guarded(p).unwrap_err();
    assert!(matches!(err, RunError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("another job graph"), "{err}");
}
