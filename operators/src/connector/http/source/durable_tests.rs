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
