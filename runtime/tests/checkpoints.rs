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
    CheckpointConfig, DeadLetter, EdgeConfig, InputPort, InstanceInfo, Operator, OperatorError,
    Output, Pipeline, PipelineConfig, RestartStrategy, RunError, RunReport, Sink, SinkHandle,
    Source, SourceStatus,
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

/// Takes number `k` of instance `i` as the next one `next` expects, skipping the numbers `keep`
/// leaves out; a number early (one lost) or late (a duplicate) is an error.
fn expect_next(
    next: &mut BTreeMap<u32, u64>,
    (i, k): Row,
    keep: fn(u64) -> bool,
) -> Result<(), OperatorError> {
    let next = next.entry(i).or_insert(0);
    while !keep(*next) {
        *next += 1;
    }
    if k != *next {
        return Err(OperatorError::internal(format!(
            "instance {i}: got {k}, expected {next} ({})",
            if k < *next { "duplicate" } else { "lost" }
        )));
    }
    *next += 1;
    Ok(())
}

/// A checker's state (the next number expected per instance) into its snapshot.
fn save_next(next: &BTreeMap<u32, u64>, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
    let bytes = encode(next).map_err(|e| OperatorError::internal(e.to_string()))?;
    state.put_instance(bytes);
    Ok(())
}

/// A checker's state back from every old instance's snapshot.
fn restore_next(
    next: &mut BTreeMap<u32, u64>,
    state: &SnapshotReader,
) -> Result<(), OperatorError> {
    for bytes in state.instance_states() {
        let old: BTreeMap<u32, u64> =
            decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
        next.extend(old);
    }
    Ok(())
}

/// Checks every instance's numbers arrive once each, in order; its write fails at its failure
/// points. Its state is the next number expected per instance.
struct Checker {
    next: BTreeMap<u32, u64>,
    faults: Faults,
    /// Counts the sink's commits, if given.
    gate: Option<Gate>,
}

impl Sink for Checker {
    type Input = Vec<Row>;
    type Output = BTreeMap<u32, u64>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<Row>) -> Result<(), OperatorError> {
        if self.faults.hit(batch.len()) {
            return Err(OperatorError::user("injected write failure"));
        }
        for row in batch {
            expect_next(&mut self.next, row, |_| true)?;
        }
        Ok(())
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        save_next(&self.next, state)
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        restore_next(&mut self.next, state)
    }
    fn commit(&mut self, _: u64) -> Result<(), OperatorError> {
        if let Some(gate) = &self.gate {
            gate.commit();
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
                gate: None,
            },
        );
    (p, checked)
}

/// A sequence run: the report, the checker's final state, failures injected, runs started.
type SequenceRun = (
    Result<RunReport, RunError>,
    Option<BTreeMap<u32, u64>>,
    usize,
    u32,
);

/// Runs the sequence job under the restart strategy; returns its report, the checker's final
/// state, the failures injected and the runs started.
fn run_sequence(
    dir: &std::path::Path,
    n: u64,
    op_points: Vec<u64>,
    sink_points: Vec<u64>,
    attempts: u32,
) -> SequenceRun {
    let dir = dir.to_path_buf();
    guarded("sequence job", move || {
        let points = op_points.len() + sink_points.len();
        let (op_faults, sink_faults) = (Faults::new(op_points), Faults::new(sink_points));
        let last = Arc::new(Mutex::new(None));
        let handle = last.clone();
        let (op, sink) = (op_faults.clone(), sink_faults.clone());
        let mut runs = 0;
        let report = Pipeline::run_restartable(|| {
            runs += 1;
            let cfg = config(&dir, Duration::from_millis(2), attempts);
            let (p, checked) = sequence_job(cfg, 2, n, op.clone(), sink.clone());
            *handle.lock().unwrap() = Some(checked);
            p
        });
        let result = last.lock().unwrap().take().and_then(|h| h.take());
        let injected = points - op_faults.left() - sink_faults.left();
        (report, result, injected, runs)
    })
}

#[test]
fn the_sequence_job_without_failures_checkpoints_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (report, result, _, _) = run_sequence(dir.path(), 20_000, vec![], vec![], 0);
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
    let (report, result, injected, runs) = run_sequence(dir.path(), n, op_points, sink_points, 6);
    let report = report.unwrap();
    assert_eq!(result, Some(BTreeMap::from([(0, n), (1, n)])));
    let c = report.checkpoints.expect("checkpoints on");
    assert!(
        injected >= 3,
        "the points below 2 × n are always reached: {injected}"
    );
    // Every failed run was restarted; two failures may end one run.
    assert_eq!(c.restarts + 1, runs, "{c}");
    assert!((1..=injected as u32).contains(&c.restarts), "{c}");
}

#[test]
fn a_run_out_of_restarts_returns_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, _, _) = run_sequence(dir.path(), 5_000, vec![1_000], vec![], 0);
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
                gate: None,
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
                gate: None,
            },
        );
    let err = run_guarded(p).unwrap_err();
    assert!(matches!(err, RunError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("another job graph"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Keyed state across a restore: a keyed count at one parallelism, restored at another.

const GROUPS: u32 = 128;
const KEYS: u64 = 40;

/// The key group of `key` (a multiplicative hash, cut as the operators' router cuts it).
fn group_of(key: u64) -> u32 {
    let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (key >> 7);
    ((u128::from(hash) * u128::from(GROUPS)) >> 64) as u32
}

/// Routes each key to the instance that owns its group.
struct ByGroup;

impl weir_runtime::partition::Partitioner<Vec<u64>> for ByGroup {
    fn partition(
        &mut self,
        batch: Vec<u64>,
        loads: &[weir_runtime::partition::TargetLoad],
        out: &mut Vec<(usize, Vec<u64>)>,
    ) {
        let p = loads.len() as u32;
        let mut pieces = vec![Vec::new(); loads.len()];
        for key in batch {
            let owner = weir_runtime::KeyGroupRange::owner(GROUPS, p, group_of(key)).unwrap();
            pieces[owner as usize].push(key);
        }
        out.extend(pieces.into_iter().enumerate());
    }
}

/// Routes every key to the instance that owns its group, except the hot key [`HOT`], whose
/// rows go round-robin to every instance (a hot-key split): each instance then holds a partial
/// count of it, most of them outside their own key-group range.
struct SplitHot(usize);

/// The key [`SplitHot`] splits.
const HOT: u64 = 0;

impl weir_runtime::partition::Partitioner<Vec<u64>> for SplitHot {
    fn partition(
        &mut self,
        batch: Vec<u64>,
        loads: &[weir_runtime::partition::TargetLoad],
        out: &mut Vec<(usize, Vec<u64>)>,
    ) {
        let p = loads.len() as u32;
        let mut pieces = vec![Vec::new(); loads.len()];
        for key in batch {
            let target = if key == HOT {
                self.0 = (self.0 + 1) % loads.len();
                self.0 as u32
            } else {
                weir_runtime::KeyGroupRange::owner(GROUPS, p, group_of(key)).unwrap()
            };
            pieces[target as usize].push(key);
        }
        out.extend(pieces.into_iter().enumerate());
    }
}

/// Emits `i % KEYS` for `i` in `next..n`; once `pause_at` rows are out it waits for `gate` to
/// open (a sink's commit opens it).
struct Keys {
    next: u64,
    n: u64,
    pause_at: u64,
    gate: Gate,
}

/// Opened by a sink's commits; a source parked on it is woken.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<(u32, u32, Option<std::task::Waker>)>>);

impl Gate {
    /// Opens once `commits` commits have been counted.
    fn needing(commits: u32) -> Self {
        Self(Arc::new(Mutex::new((commits, 0, None))))
    }
    fn is_open(&self) -> bool {
        let g = self.0.lock().unwrap();
        g.1 >= g.0
    }
    fn commit(&self) {
        let mut g = self.0.lock().unwrap();
        g.1 += 1;
        if let Some(w) = g.2.take() {
            w.wake();
        }
    }
    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.0.lock().unwrap();
        if g.1 >= g.0 {
            return Poll::Ready(());
        }
        g.2 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Source for Keys {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.next >= self.pause_at && self.gate.poll_open(cx).is_pending() {
            return Poll::Pending;
        }
        while self.next < self.n && !out.is_full() {
            out.push(self.next % KEYS);
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
        self.next = u64::from_le_bytes(
            position
                .try_into()
                .map_err(|_| OperatorError::user("8 bytes"))?,
        );
        Ok(())
    }
}

/// Panics on the first batch after the gate opened.
struct FailWhenOpen(Gate, bool);

impl Operator for FailWhenOpen {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        if self.1 && self.0.is_open() {
            panic!("injected failure after a checkpoint");
        }
        out.emit(batch);
        Ok(())
    }
}

/// Counts rows per key; emits `(key, count)` at the end. Its state is one blob per key group.
#[derive(Default)]
struct KeyedCount(BTreeMap<u64, u64>);

impl Operator for KeyedCount {
    type Input = Vec<u64>;
    type Output = Vec<(u64, u64)>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        _: &mut Output<Vec<(u64, u64)>>,
    ) -> Result<(), OperatorError> {
        for key in batch {
            *self.0.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }
    fn on_end(&mut self, out: &mut Output<Vec<(u64, u64)>>) -> Result<(), OperatorError> {
        out.extend(std::mem::take(&mut self.0));
        Ok(())
    }
    fn holds_rows(&self) -> bool {
        true
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let mut groups: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
        for (&k, &c) in &self.0 {
            groups.entry(group_of(k)).or_default().push((k, c));
        }
        for (g, entries) in groups {
            state.put_group(
                g,
                encode(&entries).map_err(|e| OperatorError::internal(e.to_string()))?,
            );
        }
        Ok(())
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        let range = state.key_groups().expect("a range");
        for (g, bytes) in state.groups() {
            assert!(
                range.contains(g),
                "group {g} handed to an instance of {range}"
            );
            let entries: Vec<(u64, u64)> =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            // Partials of a split key merge.
            for (k, c) in entries {
                *self.0.entry(k).or_insert(0) += c;
            }
        }
        Ok(())
    }
}

/// Collects `(key, count)`; counts commits through the gate. With `partials`, a key's counts
/// from several instances add up; without, a key met twice is an error.
struct Totals(BTreeMap<u64, u64>, Gate, bool);

impl Sink for Totals {
    type Input = Vec<(u64, u64)>;
    type Output = BTreeMap<u64, u64>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<(u64, u64)>) -> Result<(), OperatorError> {
        for (k, c) in batch {
            if self.2 {
                *self.0.entry(k).or_insert(0) += c;
            } else if self.0.insert(k, c).is_some() {
                return Err(OperatorError::internal(format!(
                    "key {k} counted by two instances"
                )));
            }
        }
        Ok(())
    }
    fn commit(&mut self, _: u64) -> Result<(), OperatorError> {
        self.1.commit();
        Ok(())
    }
    fn finish(&mut self) -> Result<BTreeMap<u64, u64>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// The keyed count of `n` rows at `parallelism`; with `fail`, the source pauses at half until
/// `commits` checkpoints committed and the run then fails.
fn keyed_count(
    dir: &std::path::Path,
    parallelism: usize,
    n: u64,
    fail: bool,
    commits: u32,
    restore: bool,
) -> (Result<RunReport, RunError>, SinkHandle<BTreeMap<u64, u64>>) {
    keyed_count_routed(dir, parallelism, n, (fail, commits), restore, false)
}

/// [`keyed_count`], with the hot key split over every instance when `split`.
fn keyed_count_routed(
    dir: &std::path::Path,
    parallelism: usize,
    n: u64,
    (fail, commits): (bool, u32),
    restore: bool,
    split: bool,
) -> (Result<RunReport, RunError>, SinkHandle<BTreeMap<u64, u64>>) {
    let gate = Gate::needing(commits);
    let mut cfg = config(dir, Duration::from_millis(1), 0);
    cfg.checkpoint = cfg
        .checkpoint
        .map(|c| c.max_parallelism(GROUPS).retain(3).restore(restore));
    let mut p = Pipeline::with_config("keyed", cfg);
    let (g1, g2) = (gate.clone(), gate.clone());
    let totals = p
        .source(
            "keys",
            Keys {
                next: 0,
                n,
                pause_at: if fail { n / 2 } else { u64::MAX },
                gate: g1,
            },
        )
        .unary("fail", FailWhenOpen(g2, fail));
    let routed = if split {
        totals.partition_with("split hot", |_, _| SplitHot(0))
    } else {
        totals.partition_with("by group", |_, _| ByGroup)
    };
    let totals = routed
        .unary_with("count", |_| KeyedCount::default())
        .parallelism(parallelism)
        .sink("totals", Totals(BTreeMap::new(), gate, split));
    (run_guarded(p), totals)
}

fn exact_counts(n: u64) -> BTreeMap<u64, u64> {
    (0..KEYS).map(|k| (k, n / KEYS)).collect()
}

#[test]
fn keyed_state_checkpointed_at_parallelism_2_is_restored_at_3_with_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40_000;
    let (failed, _) = keyed_count(dir.path(), 2, n, true, 1, false);
    assert!(matches!(failed, Err(RunError::Panic { .. })), "{failed:?}");
    let (report, totals) = keyed_count(dir.path(), 3, n, false, 0, true);
    let report = report.unwrap();
    assert_eq!(totals.take(), Some(exact_counts(n)));
    let c = report.checkpoints.unwrap();
    assert!(c.restored_from.is_some(), "{c}");
}

#[test]
fn a_split_hot_keys_partials_outside_their_owners_range_survive_a_restore_at_the_same_parallelism()
{
    let dir = tempfile::tempdir().unwrap();
    let n = 40_000;
    let (failed, _) = keyed_count_routed(dir.path(), 2, n, (true, 1), false, true);
    assert!(matches!(failed, Err(RunError::Panic { .. })), "{failed:?}");
    let (report, totals) = keyed_count_routed(dir.path(), 2, n, (false, 0), true, true);
    let report = report.unwrap();
    assert_eq!(totals.take(), Some(exact_counts(n)));
    assert!(report.checkpoints.unwrap().restored_from.is_some());
}

#[test]
fn a_split_hot_keys_partials_from_every_old_instance_reach_its_owner_after_a_rescale() {
    for (before, after) in [(3, 2), (2, 3)] {
        let dir = tempfile::tempdir().unwrap();
        let n = 40_000;
        let (failed, _) = keyed_count_routed(dir.path(), before, n, (true, 1), false, true);
        assert!(matches!(failed, Err(RunError::Panic { .. })), "{failed:?}");
        let (report, totals) = keyed_count_routed(dir.path(), after, n, (false, 0), true, true);
        let report = report.unwrap();
        assert_eq!(totals.take(), Some(exact_counts(n)), "{before} -> {after}");
        assert!(report.checkpoints.unwrap().restored_from.is_some());
    }
}

#[test]
fn a_corrupt_newest_checkpoint_is_passed_over_for_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40_000;
    let (failed, _) = keyed_count(dir.path(), 2, n, true, 2, false);
    assert!(matches!(failed, Err(RunError::Panic { .. })), "{failed:?}");
    // Damage a blob of the newest complete checkpoint.
    let newest = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let id: u64 = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path()
                .join("_manifest")
                .exists()
                .then_some((id, e.path()))
        })
        .max()
        .expect("two complete checkpoints");
    let blob = std::fs::read_dir(&newest.1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().contains("source"))
        })
        .expect("a source position blob");
    std::fs::write(&blob, b"damaged").unwrap();
    let (report, totals) = keyed_count(dir.path(), 2, n, false, 0, true);
    let report = report.unwrap();
    assert_eq!(totals.take(), Some(exact_counts(n)));
    let c = report.checkpoints.unwrap();
    // The damaged one, and the one in flight when the run failed if it had begun.
    assert!((1..=2).contains(&c.skipped_on_restore), "{c}");
    assert!(c.restored_from.is_some_and(|id| id < newest.0), "{c}");
}

// ---------------------------------------------------------------------------------------------
// Unaligned checkpoints: past the alignment timeout the barrier overtakes queued batches, which
// are captured and replayed on restore.

/// [`Seq`], pausing at `pause_at` until the gate opens.
struct GatedSeq(Seq, u64, Gate);

impl Source for GatedSeq {
    type Output = Vec<Row>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.0.next >= self.1 && self.2.poll_open(cx).is_pending() {
            return Poll::Pending;
        }
        self.0.poll_produce(cx, out)
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        self.0.snapshot()
    }
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.0.restore(position)
    }
}

/// Panics on the first batch after the gate opened (when armed).
struct FailRowsWhenOpen(Gate, bool);

impl Operator for FailRowsWhenOpen {
    type Input = Vec<Row>;
    type Output = Vec<Row>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Row>,
        out: &mut Output<Vec<Row>>,
    ) -> Result<(), OperatorError> {
        if self.1 && self.0.is_open() {
            panic!("injected failure after an unaligned checkpoint");
        }
        out.emit(batch);
        Ok(())
    }
}

/// Two sequence sources into one checker through a codec'd stream, aligned with a zero
/// timeout (unaligned at once); with `fail`, the sources pause at half until a checkpoint
/// committed, and the run then fails.
fn unaligned_job(
    dir: &std::path::Path,
    n: u64,
    fail: bool,
    restore: bool,
) -> (Result<RunReport, RunError>, SinkHandle<BTreeMap<u32, u64>>) {
    let gate = Gate::needing(1);
    let mut cfg = config(dir, Duration::from_millis(1), 0);
    cfg.checkpoint = cfg
        .checkpoint
        .map(|c| c.alignment_timeout(Duration::ZERO).restore(restore));
    let mut p = Pipeline::with_config("unaligned", cfg);
    let (g1, g2) = (gate.clone(), gate.clone());
    let checked = p
        .source_with("numbers", move |info: &InstanceInfo| {
            let seq = Seq {
                instance: info.instance as u32,
                next: 0,
                n,
            };
            GatedSeq(seq, if fail { n / 2 } else { 0 }, g1.clone())
        })
        .parallelism(2)
        .unary_with("fail", move |_| FailRowsWhenOpen(g2.clone(), fail))
        .parallelism(2)
        .with_spill_codec(weir_runtime::JsonCodec)
        .sink(
            "check",
            Checker {
                next: BTreeMap::new(),
                faults: Faults::default(),
                gate: Some(gate),
            },
        );
    (run_guarded(p), checked)
}

#[test]
fn past_a_zero_alignment_timeout_checkpoints_go_unaligned_and_restore_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    let (failed, _) = unaligned_job(dir.path(), n, true, false);
    assert!(matches!(failed, Err(RunError::Panic { .. })), "{failed:?}");
    let (report, checked) = unaligned_job(dir.path(), n, false, true);
    let report = report.unwrap();
    assert_eq!(checked.take(), Some(BTreeMap::from([(0, n), (1, n)])));
    let c = report.checkpoints.unwrap();
    assert!(c.restored_from.is_some(), "{c}");
}

#[test]
fn with_a_zero_alignment_timeout_a_two_input_sink_goes_unaligned() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    // The sources wait for a first committed checkpoint before they emit anything (the gate
    // opens on the sink's first commit), so at least one completes; with a zero timeout the
    // checker's two input edges go unaligned at every checkpoint.
    let (report, checked) = unaligned_job(dir.path(), n, false, false);
    let report = report.unwrap();
    assert_eq!(checked.take(), Some(BTreeMap::from([(0, n), (1, n)])));
    let c = report.checkpoints.unwrap();
    assert!(c.completed >= 1, "{c}");
    assert!(c.unaligned >= c.completed, "{c}");
    // What was captured is part of what the checkpoints wrote.
    assert!(c.in_flight_bytes <= c.bytes, "{c}");
}

// ---------------------------------------------------------------------------------------------
// Alignment under a slow sink.

/// The checker, taking one batch per poll: after each batch it is not ready until its task
/// has been polled again (it wakes itself), so its edges stay full and its producers wait.
struct SlowChecker(Checker, bool);

impl Sink for SlowChecker {
    type Input = Vec<Row>;
    type Output = BTreeMap<u32, u64>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if std::mem::take(&mut self.1) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
    fn on_batch(&mut self, port: InputPort, batch: Vec<Row>) -> Result<(), OperatorError> {
        self.1 = true;
        self.0.on_batch(port, batch)
    }
    fn commit(&mut self, id: u64) -> Result<(), OperatorError> {
        self.0.commit(id)
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        self.0.snapshot(state)
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        self.0.restore(state)
    }
    fn finish(&mut self) -> Result<BTreeMap<u32, u64>, OperatorError> {
        self.0.finish()
    }
}

#[test]
fn checkpoints_align_and_complete_behind_a_slow_sink() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000;
    let gate = Gate::needing(2);
    let mut p = Pipeline::with_config("slow", config(dir.path(), Duration::from_millis(1), 0));
    let g = gate.clone();
    let checked = p
        .source_with("numbers", move |info: &InstanceInfo| {
            let seq = Seq {
                instance: info.instance as u32,
                next: 0,
                n,
            };
            // Half the rows, then a wait for two committed checkpoints: both were aligned
            // behind the slow sink while its edges were full.
            GatedSeq(seq, n / 2, g.clone())
        })
        .parallelism(2)
        .sink(
            "check",
            SlowChecker(
                Checker {
                    next: BTreeMap::new(),
                    faults: Faults::default(),
                    gate: Some(gate),
                },
                false,
            ),
        );
    let report = run_guarded(p).unwrap();
    assert_eq!(checked.take(), Some(BTreeMap::from([(0, n), (1, n)])));
    let c = report.checkpoints.unwrap();
    assert!(c.completed >= 2, "{c}");
    assert_eq!((c.failed, c.unaligned), (0, 0), "{c}");
}

// ---------------------------------------------------------------------------------------------
// A checkpoint that does not complete in time is aborted, and the next one completes.

/// [`Seq`] that opens a gate once it has been snapshotted twice (checkpoint 2 reached it,
/// so checkpoint 1 is no longer in flight).
struct CountingSeq(GatedSeq, u32, Gate);

impl Source for CountingSeq {
    type Output = Vec<Row>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        self.0.poll_produce(cx, out)
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        self.1 += 1;
        if self.1 == 2 {
            self.2.commit();
        }
        self.0.snapshot()
    }
}

/// The checker, whose first pre-commit waits for the gate.
struct StuckOnce(Checker, Gate, bool);

impl Sink for StuckOnce {
    type Input = Vec<Row>;
    type Output = BTreeMap<u32, u64>;
    fn poll_pre_commit(&mut self, cx: &mut Context<'_>, _: u64) -> Poll<Result<(), OperatorError>> {
        if self.2 {
            return Poll::Ready(Ok(()));
        }
        match self.1.poll_open(cx) {
            Poll::Ready(()) => {
                self.2 = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
    fn on_batch(&mut self, port: InputPort, batch: Vec<Row>) -> Result<(), OperatorError> {
        self.0.on_batch(port, batch)
    }
    fn commit(&mut self, id: u64) -> Result<(), OperatorError> {
        self.0.commit(id)
    }
    fn finish(&mut self) -> Result<BTreeMap<u32, u64>, OperatorError> {
        self.0.finish()
    }
}

#[test]
fn a_checkpoint_past_its_timeout_is_aborted_and_the_next_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100;
    let mut cfg = config(dir.path(), Duration::from_millis(1), 0);
    cfg.edge = EdgeConfig::default();
    cfg.checkpoint = cfg.checkpoint.map(|c| c.timeout(Duration::from_millis(5)));
    let (committed, snapshotted) = (Gate::needing(1), Gate::needing(1));
    let mut p = Pipeline::with_config("stuck", cfg);
    let (c, s) = (committed.clone(), snapshotted.clone());
    let seq = Seq {
        instance: 0,
        next: 0,
        n,
    };
    // Half the rows, then a wait for a commit: the source is alive while checkpoint 1 hangs
    // in the sink's pre-commit, times out, and checkpoint 2 reaches the source, which lets the
    // sink go on; checkpoint 2 then completes and its commit lets the source finish.
    let checked = p
        .source("numbers", CountingSeq(GatedSeq(seq, n / 2, c), 0, s))
        .sink(
            "check",
            StuckOnce(
                Checker {
                    next: BTreeMap::new(),
                    faults: Faults::default(),
                    gate: Some(committed),
                },
                snapshotted,
                false,
            ),
        );
    let report = run_guarded(p).unwrap();
    assert_eq!(checked.take(), Some(BTreeMap::from([(0, n)])));
    let c = report.checkpoints.unwrap();
    assert!(c.failed >= 1 && c.completed >= 1, "{c}");
}

// Dead letters by checkpoint: barriers travel the dead-letter port behind the letters.

/// Whether the sequence-number job's operator rejects `k` (to its dead letters).
fn rejected(k: u64) -> bool {
    k.is_multiple_of(7)
}

/// Dead-letters every number [`rejected`] picks (raw `"instance:k"`), passes the others on;
/// panics at its failure points.
struct Rejecting(Faults);

impl Operator for Rejecting {
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
        for (i, k) in batch {
            if rejected(k) {
                out.dead_letter(DeadLetter::new("a multiple of 7", format!("{i}:{k}")));
            } else {
                out.push((i, k));
            }
        }
        Ok(())
    }
}

/// Checks that every instance's numbers `keep` picks arrive once each, in order; fails its
/// write at its failure points. Its state (the next number expected per instance) is
/// checkpointed, so a restore that replays or loses a row fails the run.
struct Exact<T> {
    next: BTreeMap<u32, u64>,
    keep: fn(u64) -> bool,
    row: fn(&T) -> Row,
    faults: Faults,
}

impl<T: weir_runtime::Data> Sink for Exact<T> {
    type Input = Vec<T>;
    type Output = BTreeMap<u32, u64>;
    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        if self.faults.hit(batch.len()) {
            return Err(OperatorError::user("injected write failure"));
        }
        for row in &batch {
            expect_next(&mut self.next, (self.row)(row), self.keep)?;
        }
        Ok(())
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        save_next(&self.next, state)
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        restore_next(&mut self.next, state)
    }
    fn finish(&mut self) -> Result<BTreeMap<u32, u64>, OperatorError> {
        Ok(std::mem::take(&mut self.next))
    }
}

/// `"instance:k"` back into its row.
fn dead_row(d: &DeadLetter) -> Row {
    let (i, k) = d.raw.split_once(':').expect("instance:k");
    (
        i.parse().expect("an instance"),
        k.parse().expect("a number"),
    )
}

/// A dead-letter sequence run: the report, both checkers' final states, failures injected.
type DeadLetterRun = (
    Result<RunReport, RunError>,
    Option<[BTreeMap<u32, u64>; 2]>,
    usize,
);

/// The sequence job with every seventh number dead-lettered: two checked sinks, the main
/// one and the dead letters' (their state is the next number expected), failures injected in
/// the operator, the main sink and the dead-letter sink. The checkers' final states, the
/// failures injected and the report.
fn run_dead_letter_sequence(dir: &std::path::Path, n: u64, points: [Vec<u64>; 3]) -> DeadLetterRun {
    let dir = dir.to_path_buf();
    guarded("dead-letter sequence job", move || {
        let [op, main, dead] = points.map(Faults::new);
        let total = [&op, &main, &dead].map(Faults::left).iter().sum::<usize>();
        let last = Arc::new(Mutex::new(None));
        let handle = last.clone();
        let (o, m, d) = (op.clone(), main.clone(), dead.clone());
        let report = Pipeline::run_restartable(|| {
            let cfg = config(&dir, Duration::from_millis(2), 8);
            let mut p = Pipeline::with_config("dead-sequence", cfg);
            let o = o.clone();
            let checked = p
                .source_with("numbers", move |info: &InstanceInfo| Seq {
                    instance: info.instance as u32,
                    next: 0,
                    n,
                })
                .parallelism(2)
                .unary_with("reject", move |_| Rejecting(o.clone()))
                .parallelism(2);
            let dead_letters = checked.dead_letters();
            let kept = checked.sink(
                "check",
                Exact::<Row> {
                    next: BTreeMap::new(),
                    keep: |k| !rejected(k),
                    row: |r| *r,
                    faults: m.clone(),
                },
            );
            let letters = dead_letters.sink(
                "check-dead",
                Exact::<DeadLetter> {
                    next: BTreeMap::new(),
                    keep: rejected,
                    row: dead_row,
                    faults: d.clone(),
                },
            );
            *handle.lock().unwrap() = Some((kept, letters));
            p
        });
        let result = last
            .lock()
            .unwrap()
            .take()
            .and_then(|(kept, letters)| Some([kept.take()?, letters.take()?]));
        let injected = total - op.left() - main.left() - dead.left();
        (report, result, injected)
    })
}

#[test]
fn dead_letters_are_exactly_once_across_restores_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    // Rows seen over all attempts, by each hook: the operator sees every row, the main sink
    // six in seven, the dead-letter sink one in seven.
    let points = [vec![9_000, 41_000], vec![20_000], vec![1_500, 5_000]];
    let (report, result, injected) = run_dead_letter_sequence(dir.path(), n, points);
    let report = report.unwrap();
    // The last kept number is n - 1 (not a multiple of 7), the last rejected one 29 995.
    assert_eq!(n - 1, 29_999);
    let kept = BTreeMap::from([(0, n), (1, n)]);
    let dead = BTreeMap::from([(0, 29_996), (1, 29_996)]);
    assert_eq!(result, Some([kept, dead]));
    let c = report.checkpoints.expect("checkpoints on");
    assert!(
        injected >= 4,
        "the points below one pass of the input are always reached: {injected}"
    );
    assert!(c.restarts >= 2, "{c}");
    assert!(c.completed > 0, "{c}");
}

// Sources told of complete checkpoints.

/// [`Seq`], logging its snapshots (`None`) and the complete checkpoints it is told of
/// (`Some(id)`), in order.
struct Told(Seq, Arc<Mutex<Vec<Option<u64>>>>);

impl Source for Told {
    type Output = Vec<Row>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        self.0.poll_produce(cx, out)
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        self.1.lock().unwrap().push(None);
        self.0.snapshot()
    }
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.0.restore(position)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        self.1.lock().unwrap().push(Some(checkpoint));
        Ok(())
    }
}

#[test]
fn a_source_is_told_of_each_complete_checkpoint_once_in_order_before_its_next_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (report, kept) = {
        let (dir, log) = (dir.path().to_path_buf(), log.clone());
        guarded("told job", move || {
            let mut p = Pipeline::with_config("told", config(&dir, Duration::from_millis(1), 0));
            let kept = p
                .source(
                    "numbers",
                    Told(
                        Seq {
                            instance: 0,
                            next: 0,
                            n: 30_000,
                        },
                        log,
                    ),
                )
                .sink(
                    "check",
                    Checker {
                        next: BTreeMap::new(),
                        faults: Faults::default(),
                        gate: None,
                    },
                );
            (p.run(), kept)
        })
    };
    let report = report.unwrap();
    assert_eq!(kept.take(), Some(BTreeMap::from([(0, 30_000)])));
    let c = report.checkpoints.expect("checkpoints on");
    assert_eq!(c.failed, 0, "{c}");
    let log = log.lock().unwrap().clone();
    let told: Vec<u64> = log.iter().flatten().copied().collect();
    let snapshots = log.iter().filter(|e| e.is_none()).count() as u64;
    assert!(!told.is_empty(), "{c}");
    // No checkpoint failed: each snapshot's checkpoint completed and was told before the next
    // snapshot (the last one may complete after the source ended, and is then not told).
    for (k, entry) in log.iter().enumerate() {
        let expected_snapshot = k % 2 == 0;
        assert_eq!(entry.is_none(), expected_snapshot, "at {k}: {log:?}");
    }
    assert!(told.windows(2).all(|w| w[1] == w[0] + 1), "{told:?}");
    assert!(snapshots - told.len() as u64 <= 1);
    assert!(c.completed <= snapshots, "{c}");
    assert!(told.len() as u64 <= c.completed && *told.last().unwrap() <= c.last_id.unwrap());
}
