//! Durable acknowledgement in a real pipeline: a run that fails mid-stream loses nothing that
//! was acknowledged (the next source opened on the log delivers it), a completed run leaves
//! nothing to replay, and the settings durable mode cannot honour are refused.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use weir_runtime::{
    InputPort, Operator, OperatorError, Output, Overflow, Pipeline, PipelineConfig, RunError,
    RunReport, Sink,
};

use super::*;
use crate::connector::http::test_util::guard;
use crate::connector::http::{ClientError, HttpClient, HttpClientConfig, IngestReply};

fn config(log: &Path) -> HttpSourceConfig {
    HttpSourceConfig {
        ingest: IngestConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..IngestConfig::default()
        },
        policy: Overflow::Reject,
        capacity: 64,
        ack: Ack::Durable {
            dir: log.to_path_buf(),
            max_bytes: 4 << 20,
        },
        commit_interval: Duration::from_millis(5),
        ..HttpSourceConfig::default()
    }
}

fn id(row: &Value) -> u64 {
    row["id"].as_u64().expect("every test record has an id")
}

/// Keeps the ids it receives (in memory: handled for good as far as this test is concerned).
struct Ids(Arc<Mutex<Vec<u64>>>);

impl Sink for Ids {
    type Input = Vec<Value>;
    type Output = ();
    fn on_batch(&mut self, _: InputPort, batch: Vec<Value>) -> Result<(), OperatorError> {
        self.0.lock().unwrap().extend(batch.iter().map(id));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Never ready for input, so whatever reaches it waits in its edge.
struct Stuck<K>(K);

impl<K: Sink> Sink for Stuck<K> {
    type Input = K::Input;
    type Output = K::Output;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OperatorError>> {
        std::task::Poll::Pending
    }
    fn on_batch(&mut self, port: InputPort, batch: K::Input) -> Result<(), OperatorError> {
        self.0.on_batch(port, batch)
    }
    fn finish(&mut self) -> Result<K::Output, OperatorError> {
        self.0.finish()
    }
}

/// Passes rows on until it sees id `at`, then fails the run.
struct FailAt(u64);

impl Operator for FailAt {
    type Input = Vec<Value>;
    type Output = Vec<Value>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Value>,
        out: &mut Output<Vec<Value>>,
    ) -> Result<(), OperatorError> {
        for row in batch {
            if id(&row) == self.0 {
                return Err(OperatorError::user("the failure under test"));
            }
            out.push(row);
        }
        Ok(())
    }
}

/// Sums ids and emits the total at the end: it keeps rows across batches.
struct Total(u64);

impl Operator for Total {
    type Input = Vec<Value>;
    type Output = Vec<Value>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Value>,
        _: &mut Output<Vec<Value>>,
    ) -> Result<(), OperatorError> {
        self.0 += batch.iter().map(id).sum::<u64>();
        Ok(())
    }
    fn holds_rows(&self) -> bool {
        true
    }
}

/// Posts ids `from..to` in bodies of `per_body`, once each; returns the ids acknowledged. A
/// request the server does not answer (it went away) acknowledges nothing.
async fn post_ids(addr: SocketAddr, from: u64, to: u64, per_body: u64) -> Vec<u64> {
    let client = HttpClient::new(HttpClientConfig::default());
    let url = format!("http://{addr}/ingest");
    let mut acked = Vec::new();
    let mut next = from;
    while next < to {
        let end = (next + per_body).min(to);
        let body: String = (next..end).map(|i| format!("{{\"id\":{i}}}\n")).collect();
        let sent = client.post(
            &url,
            "application/x-ndjson",
            Bytes::from(body),
            Duration::from_secs(10),
        );
        let accepted = match guard(sent).await {
            Ok(r) => r.json::<IngestReply>().map_or(0, |r| r.accepted as u64),
            Err(ClientError::Status { response, .. }) => response
                .json::<IngestReply>()
                .map_or(0, |r| r.accepted as u64),
            Err(_) => 0,
        };
        // The first `accepted` lines of a body are the ones acknowledged.
        acked.extend(next..next + accepted);
        next = end;
    }
    acked
}

fn pipeline() -> Pipeline {
    Pipeline::with_config(
        "durable",
        PipelineConfig {
            batch_rows: 8,
            workers: Some(2),
            ..PipelineConfig::default()
        },
    )
}

/// Runs `http → sink` on the log until what it replays and `post` sends is delivered.
fn drain(log: &Path) -> (Vec<u64>, RunReport) {
    let source = HttpSource::bind(config(log)).expect("bind");
    let handle = source.handle();
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut p = pipeline();
    p.source("http", source).sink("ids", Ids(got.clone()));
    let run = p.spawn().expect("the pipeline starts");
    handle.close();
    let report = run.join().expect("the run succeeds");
    let got = got.lock().unwrap().clone();
    (got, report)
}

#[test]
fn a_failed_run_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Run 1 fails at id 40, with acknowledged records in the hand-off and the edges.
    let source = HttpSource::bind(config(&log)).expect("bind");
    let addr = source.handle().local_addr();
    let first = Arc::new(Mutex::new(Vec::new()));
    let mut p = pipeline();
    // A sink that takes nothing: acknowledged records wait in the hand-off and the edges when
    // the run fails at id 40.
    p.source("http", source)
        .unary("fail", FailAt(40))
        .sink("ids", Stuck(Ids(first.clone())));
    let run = p.spawn().expect("the pipeline starts");
    let acked = runtime.block_on(post_ids(addr, 0, 600, 10));
    let err = run.join().expect_err("the run fails at id 40");
    assert!(matches!(err, RunError::Operator { .. }), "{err}");
    let first_ids: BTreeSet<u64> = first.lock().unwrap().iter().copied().collect();
    assert!(
        acked.iter().any(|i| !first_ids.contains(i)),
        "records were acknowledged and not delivered when the run failed"
    );

    // Run 2 delivers everything acknowledged and not confirmed, first.
    let (second, report) = drain(&log);
    let delivered: BTreeSet<u64> = first
        .lock()
        .unwrap()
        .iter()
        .chain(&second)
        .copied()
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .filter(|i| !delivered.contains(i))
        .copied()
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(
        acked.len() >= 40,
        "everything before id 40 was acknowledged: {acked:?}"
    );
    assert!(second.contains(&39));
    assert_eq!(report.overflow.spill_damaged_records, 0);
    // Replayed in acknowledgement order.
    let mut sorted = second.clone();
    sorted.sort_unstable();
    assert_eq!(second, sorted);

    // Run 2 ended with everything confirmed: nothing is replayed a third time.
    let (third, _) = drain(&log);
    assert_eq!(third, Vec::<u64>::new());
}

#[test]
fn a_pipeline_that_keeps_rows_is_refused_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let source = HttpSource::bind(config(dir.path())).expect("bind");
    let mut p = pipeline();
    p.source("http", source)
        .unary("total", Total(0))
        .sink("ids", Ids(Arc::default()));
    // Refused before any record arrives: the source's first barrier meets `total`.
    let err = p.run().expect_err("durable mode refuses `total`");
    let RunError::Operator {
        operator, error, ..
    } = &err
    else {
        panic!("an operator error, not {err}");
    };
    assert_eq!(operator, "total");
    assert!(
        error.to_string().contains("keeps rows across batches"),
        "{error}"
    );
}

#[test]
fn settings_durable_mode_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spill = HttpSourceConfig {
        policy: Overflow::Spill {
            dir: dir.path().join("spill"),
            max_bytes: 1 << 20,
        },
        ..config(&dir.path().join("log"))
    };
    let err = HttpSource::bind(spill).expect_err("spill with durable acks");
    assert!(err.to_string().contains("durable acknowledgement"), "{err}");

    let zero = HttpSourceConfig {
        commit_interval: Duration::ZERO,
        ..config(&dir.path().join("log"))
    };
    assert!(HttpSource::bind(zero).is_err());

    // A second source on the same log is refused while the first holds it.
    let first = HttpSource::bind(config(&dir.path().join("log"))).expect("bind");
    let err = HttpSource::bind(config(&dir.path().join("log"))).expect_err("locked");
    assert!(
        matches!(err, HttpSourceError::Log(SpillError::Locked { .. })),
        "{err}"
    );
    drop(first);
    HttpSource::bind(config(&dir.path().join("log"))).expect("free again once dropped");
}

// Checkpoints: the log position in the checkpoint, released by checkpoint, and operators that
// keep rows allowed downstream.

/// Every id of a key, so a duplicate or a loss shows in the result.
#[derive(Clone)]
struct IdsOf;

impl crate::keyed::aggregate::Aggregate for IdsOf {
    type Input = (u64, u64);
    type Acc = Vec<u64>;
    type Output = Vec<u64>;
    fn init(&self) -> Vec<u64> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<u64>, input: &(u64, u64)) {
        acc.push(input.1);
    }
    fn merge(&self, acc: &mut Vec<u64>, other: Vec<u64>) {
        acc.extend(other);
    }
    fn finish(&self, acc: &Vec<u64>) -> Vec<u64> {
        acc.clone()
    }
}

/// Fails the run at its first batch once armed, and only once.
struct FailWhenArmed(Arc<std::sync::atomic::AtomicBool>);

impl Operator for FailWhenArmed {
    type Input = Vec<Value>;
    type Output = Vec<(u64, u64)>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Value>,
        out: &mut Output<Vec<(u64, u64)>>,
    ) -> Result<(), OperatorError> {
        if self.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(OperatorError::user("the failure under test"));
        }
        for row in &batch {
            out.push((id(row) % 5, id(row)));
        }
        Ok(())
    }
}

/// A sink that sends the id of every checkpoint it commits to `commits`.
struct Committing<K>(K, std::sync::mpsc::Sender<u64>);

impl<K: Sink> Sink for Committing<K> {
    type Input = K::Input;
    type Output = K::Output;
    fn open(&mut self, info: &weir_runtime::InstanceInfo) -> Result<(), OperatorError> {
        self.0.open(info)
    }
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OperatorError>> {
        self.0.poll_ready(cx)
    }
    fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OperatorError>> {
        self.0.poll_flush(cx)
    }
    fn poll_pre_commit(
        &mut self,
        cx: &mut std::task::Context<'_>,
        checkpoint: u64,
    ) -> std::task::Poll<Result<(), OperatorError>> {
        self.0.poll_pre_commit(cx, checkpoint)
    }
    fn commit(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        self.0.commit(checkpoint)?;
        let _ = self.1.send(checkpoint);
        Ok(())
    }
    fn snapshot(
        &mut self,
        state: &mut weir_runtime::checkpoint::SnapshotWriter,
    ) -> Result<(), OperatorError> {
        self.0.snapshot(state)
    }
    fn restore(
        &mut self,
        state: &weir_runtime::checkpoint::SnapshotReader,
    ) -> Result<(), OperatorError> {
        self.0.restore(state)
    }
    fn on_batch(&mut self, port: InputPort, batch: K::Input) -> Result<(), OperatorError> {
        self.0.on_batch(port, batch)
    }
    fn poll_close(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OperatorError>> {
        self.0.poll_close(cx)
    }
    fn finish(&mut self) -> Result<K::Output, OperatorError> {
        self.0.finish()
    }
}

/// The lowest segment number left in the log `dir` (segments are numbered as they are made).
fn first_segment(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .expect("the log is listable")
        .filter_map(|e| {
            let name = e
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let n = name.strip_prefix("seg-")?.strip_suffix(".spill")?;
            n.parse().ok()
        })
        .min()
}

/// `http → fail-when-armed → ids per key (keeps rows) → NDJSON parts committed by
/// checkpoint`, checkpointed into `checkpoints` every few milliseconds.
fn checkpointed_job(
    source: HttpSource,
    checkpoints: &Path,
    out: &Path,
    armed: &Arc<std::sync::atomic::AtomicBool>,
    commits: std::sync::mpsc::Sender<u64>,
) -> Pipeline {
    use crate::keyed::KeyedExt;
    let config = PipelineConfig {
        batch_rows: 32,
        parallelism: 2,
        workers: Some(2),
        ..PipelineConfig::default()
    }
    .checkpointing(
        weir_runtime::CheckpointConfig::new(checkpoints)
            .interval(Duration::from_millis(5))
            .restore(true),
    );
    let mut p = Pipeline::with_config("durable-checkpointed", config);
    let armed = armed.clone();
    p.source("http", source)
        .unary("fail", FailWhenArmed(armed))
        .key_by(|r: &(u64, u64)| r.0)
        .aggregate("ids", IdsOf)
        .sink(
            "parts",
            Committing(
                crate::sink::NdjsonSink::new(out)
                    .commit(crate::connector::PartCommit::OnCheckpoint),
                commits,
            ),
        );
    p
}

/// Every `[key, [ids]]` line of the visible NDJSON parts in `out`: the ids, in any order.
fn committed_ids(out: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(out).expect("the output is listable") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("a part").lines() {
            let (_, key_ids): (u64, Vec<u64>) = serde_json::from_str(line).expect("a result");
            ids.extend(key_ids);
        }
    }
    ids
}

#[test]
fn a_checkpointed_run_restored_after_a_failure_reflects_each_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, checkpoints, out) = (
        dir.path().join("log"),
        dir.path().join("checkpoints"),
        dir.path().join("out"),
    );
    // Small segments (the log's eighth), so that checkpoints release some. (Under `Reject` no
    // request waits for room, so none outlives the failed run holding the log.)
    let config = HttpSourceConfig {
        capacity: 1024,
        ack: Ack::Durable {
            dir: log.clone(),
            max_bytes: 64 << 10,
        },
        ..config(&log)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Run 1: records acknowledged, checkpoints complete and release the log, then a failure.
    let (commits, committed) = std::sync::mpsc::channel();
    let source = HttpSource::bind(config.clone()).expect("bind");
    let addr = source.handle().local_addr();
    let run = checkpointed_job(source, &checkpoints, &out, &armed, commits)
        .spawn()
        .expect("a pipeline that keeps rows starts: checkpoints hold them");
    let mut acked = runtime.block_on(post_ids(addr, 0, 3_000, 50));
    assert!(
        acked.len() >= 1_000,
        "most are acknowledged: {}",
        acked.len()
    );
    // Two checkpoints complete after the last acknowledgement: the second was taken after it.
    let wait = Duration::from_secs(20);
    let first = committed
        .recv_timeout(wait)
        .expect("a checkpoint completes");
    let second = committed.recv_timeout(wait).expect("another one completes");
    assert!(second > first);
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    acked.extend(runtime.block_on(post_ids(addr, 3_000, 3_200, 50)));
    let err = run.join().expect_err("the run fails when armed");
    assert!(err.to_string().contains("the failure under test"), "{err}");
    let released = first_segment(&log).expect("segments left");
    assert!(
        released > 0,
        "completed checkpoints released the log's first segments"
    );
    assert!(
        committed_ids(&out).is_empty(),
        "ids per key are emitted at the end only"
    );

    // Run 2, on the same directories: restored at the checkpoint's position and state.
    let (commits, committed) = std::sync::mpsc::channel();
    let source = HttpSource::bind(config).expect("bind again once the first is dropped");
    let (addr, handle) = (source.handle().local_addr(), source.handle());
    let run = checkpointed_job(source, &checkpoints, &out, &armed, commits)
        .spawn()
        .expect("the restored run starts");
    acked.extend(runtime.block_on(post_ids(addr, 3_200, 4_000, 50)));
    committed
        .recv_timeout(wait)
        .expect("a checkpoint of the restored run completes");
    handle.close();
    let report = run.join().expect("the restored run ends");
    let c = report.checkpoints.expect("checkpoints on");
    assert!(c.restored_from.is_some(), "{c}");

    // Each acknowledged record once; records appended but not answered (the run failing
    // under a request) may be there too, once.
    let ids = committed_ids(&out);
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no id twice");
    let missing: Vec<u64> = acked
        .iter()
        .filter(|i| !unique.contains(i))
        .copied()
        .collect();
    assert!(missing.is_empty(), "acknowledged and missing: {missing:?}");
    assert!(unique.iter().all(|&i| i < 4_000));
    assert!(first_segment(&log).expect("segments left") >= released);
}
