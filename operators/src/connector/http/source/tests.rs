//! The HTTP source in a real pipeline, against its real server on loopback. The sink takes a
//! batch only when the test grants it a permit, so "no credit" and "credit returns" are exact
//! moments, and every record carries its id so delivery can be checked one by one.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use weir_runtime::{
    EdgeConfig, InputPort, OperatorError, Overflow, Pipeline, PipelineConfig, RunHandle, RunReport,
    Sink,
};

use super::intake::{value_bytes, Intake, IntakeConfig, Mode};
use super::*;
use crate::connector::http::test_util::{answer, guard};
use crate::connector::http::{
    Admission, BearerToken, HttpClient, HttpClientConfig, IngestReply, Response, Rest,
};
use weir_runtime::spill::SpillQueue;

/// Takes a batch only with a permit from `credit`; publishes the rows it has received.
struct Granted {
    credit: Arc<Semaphore>,
    permit: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
    rows: Arc<Mutex<Vec<Value>>>,
    batches: Arc<Mutex<Vec<usize>>>,
    received: watch::Sender<usize>,
}

impl Sink for Granted {
    type Input = Vec<Value>;
    type Output = ();

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let credit = Arc::clone(&self.credit);
        let permit = self.permit.get_or_insert_with(|| {
            Box::pin(async move { credit.acquire_owned().await.expect("never closed") })
        });
        match permit.as_mut().poll(cx) {
            Poll::Ready(p) => {
                p.forget();
                self.permit = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn on_batch(&mut self, _: InputPort, batch: Vec<Value>) -> Result<(), OperatorError> {
        self.batches.lock().expect("test lock").push(batch.len());
        let mut rows = self.rows.lock().expect("test lock");
        rows.extend(batch);
        self.received.send_replace(rows.len());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

struct Rig {
    addr: SocketAddr,
    source: HttpSourceHandle,
    credit: Arc<Semaphore>,
    rows: Arc<Mutex<Vec<Value>>>,
    batches: Arc<Mutex<Vec<usize>>>,
    received: watch::Receiver<usize>,
    run: Option<RunHandle>,
    client: HttpClient,
}

fn source_config(policy: Overflow, capacity: usize) -> HttpSourceConfig {
    HttpSourceConfig {
        ingest: IngestConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..IngestConfig::default()
        },
        policy,
        capacity,
        ..HttpSourceConfig::default()
    }
}

impl Rig {
    /// A pipeline `http → sink` with one-row batches and an edge of one batch.
    fn start(config: HttpSourceConfig) -> Self {
        Self::start_with(config, 1)
    }

    /// A pipeline `http → sink` with batches of `batch_rows` and an edge of one batch.
    fn start_with(config: HttpSourceConfig, batch_rows: usize) -> Self {
        let source = HttpSource::bind(config).expect("bind on loopback");
        let handle = source.handle();
        let credit = Arc::new(Semaphore::new(0));
        let rows = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (tx, received) = watch::channel(0);
        let mut p = Pipeline::with_config(
            "ingest",
            PipelineConfig {
                batch_rows,
                workers: Some(2),
                ..PipelineConfig::default()
            },
        );
        p.source("http", source)
            .with_edge(EdgeConfig::default().with_capacity(1))
            .sink(
                "sink",
                Granted {
                    credit: Arc::clone(&credit),
                    permit: None,
                    rows: Arc::clone(&rows),
                    batches: Arc::clone(&batches),
                    received: tx,
                },
            );
        let run = p.spawn().expect("the pipeline starts");
        Self {
            addr: handle.local_addr(),
            source: handle,
            credit,
            rows,
            batches,
            received,
            run: Some(run),
            client: HttpClient::new(HttpClientConfig::default()),
        }
    }

    async fn post(&self, body: String) -> Response {
        let url = format!("http://{}/ingest", self.addr);
        let sent = self.client.post(
            &url,
            "application/x-ndjson",
            Bytes::from(body),
            Duration::from_secs(10),
        );
        answer(guard(sent).await)
    }

    /// Grants `batches` batches and waits until the sink has `rows` rows in total.
    async fn grant_until(&mut self, batches: usize, rows: usize) {
        self.credit.add_permits(batches);
        guard(self.received.wait_for(|&n| n >= rows))
            .await
            .expect("the sink is running");
    }

    fn rows(&self) -> Vec<Value> {
        self.rows.lock().expect("test lock").clone()
    }

    /// Stops the run (the source hands on what it acknowledged) and returns the report.
    async fn stop(mut self) -> RunReport {
        self.credit.add_permits(1 << 20);
        let run = self.run.take().expect("running");
        run.stop();
        guard(tokio::task::spawn_blocking(move || run.join()))
            .await
            .expect("join task")
            .expect("the run succeeds")
    }
}

fn ids(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| r["id"].as_u64().expect("an id"))
        .collect()
}

fn body(ids: impl IntoIterator<Item = u64>) -> String {
    ids.into_iter()
        .map(|i| format!("{{\"id\":{i}}}\n"))
        .collect()
}

fn reply(response: &Response) -> IngestReply {
    response.json().expect("an IngestReply")
}

/// Posts one record per request until the answer is not 202; returns the ids acknowledged and
/// the first other answer.
async fn fill(rig: &Rig, first: u64) -> (Vec<u64>, Response) {
    let mut acked = Vec::new();
    for id in first..first + 100 {
        let r = rig.post(body([id])).await;
        if r.status != StatusCode::ACCEPTED {
            return (acked, r);
        }
        acked.push(id);
    }
    panic!("a pipeline without credit took 100 records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credit_gives_429_with_a_retry_hint_and_credit_brings_202_back() {
    let mut rig = Rig::start(source_config(Overflow::Reject, 4));
    let (acked, full) = fill(&rig, 0).await;
    // What the pipeline holds without credit: the hand-off (4) and what the source moved on
    // before the edge filled (a batch in the edge, one in the source's output).
    assert!((4..=6).contains(&acked.len()), "{acked:?}");
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    let hint = full.retry_after.expect("a Retry-After");
    assert!(hint >= Duration::from_secs(1));
    let r = reply(&full);
    assert_eq!((r.accepted, r.deferred, r.resume_at_line), (0, 1, Some(1)));
    assert!(r.retry_after_ms.is_some());

    // Credit returns: everything acknowledged arrives, in order, and new records get 202.
    rig.grant_until(acked.len(), acked.len()).await;
    assert_eq!(ids(&rig.rows()), acked);
    let again = rig.post(body([1000, 1001])).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(reply(&again).accepted, 2);
    rig.grant_until(2, acked.len() + 2).await;

    let rows = rig.rows();
    let report = rig.stop().await;
    let mut want = acked.clone();
    want.extend([1000, 1001]);
    assert_eq!(ids(&rows), want);
    assert_eq!(report.overflow.rejected, 1);
    assert_eq!(report.operators[0].rows_out, want.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_records_are_never_acknowledged() {
    let mut rig = Rig::start(source_config(Overflow::DropNewest, 4));
    let (acked, full) = fill(&rig, 0).await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    // A drop is an overload refusal like any other: it tells the client when to come back.
    let hint = full
        .retry_after
        .expect("a Retry-After on a 503 for dropped records");
    assert!(hint >= Duration::from_secs(1));
    let r = reply(&full);
    assert_eq!((r.accepted, r.dropped, r.deferred), (0, 1, 0));
    assert!(r.retry_after_ms.is_some_and(|ms| ms >= 1000), "{r:?}");

    // Some room returns; a body of ten partly fits, and the answer is still not a 2xx.
    rig.grant_until(3, 3).await;
    let partial = rig.post(body(500..510)).await;
    assert_eq!(partial.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(partial.retry_after.is_some());
    let r = reply(&partial);
    assert_eq!(r.accepted + r.dropped, 10);
    assert!(r.dropped >= 6, "{r:?}");
    let taken: Vec<u64> = (500..500 + r.accepted as u64).collect();

    let rows = Arc::clone(&rig.rows);
    let report = rig.stop().await;
    // Exactly what was acknowledged arrived, in order; every drop was counted.
    let mut want = acked;
    want.extend(taken);
    assert_eq!(ids(&rows.lock().expect("test lock")), want);
    assert_eq!(report.overflow.dropped_newest, 1 + r.dropped as u64);
    assert_eq!(report.overflow.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_a_request_until_room_or_answers_503_after_the_timeout() {
    let mut config = source_config(Overflow::Block, 2);
    config.block_timeout = Duration::from_millis(200);
    let mut rig = Rig::start(config);
    let (acked, full) = fill(&rig, 0).await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.retry_after.is_some());
    assert_eq!(reply(&full).deferred, 1);

    // Once credit returns there is room again.
    rig.grant_until(acked.len(), acked.len()).await;
    let ok = rig.post(body([77])).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    let report = rig.stop().await;
    assert_eq!(report.overflow.rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_request_is_taken_when_credit_returns() {
    let mut config = source_config(Overflow::Block, 2);
    config.block_timeout = Duration::from_secs(30);
    let mut rig = Rig::start(config);
    // Records that fit (the hand-off and what the source moved on), then a body that must
    // wait for room: whether credit comes before or after it arrives, it is taken, not refused.
    let mut acked = Vec::new();
    for id in 0..3 {
        let r = rig.post(body([id])).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        acked.push(id);
    }
    let client = rig.client.clone();
    let url = format!("http://{}/ingest", rig.addr);
    let blocked = tokio::spawn(async move {
        client
            .post(
                &url,
                "application/x-ndjson",
                Bytes::from(body(10..13)),
                Duration::from_secs(60),
            )
            .await
    });
    rig.grant_until(6, 6).await;
    let answer = answer(guard(blocked).await.expect("the request task"));
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(reply(&answer).accepted, 3);
    let rows = rig.rows();
    let report = rig.stop().await;
    let mut want = acked;
    want.extend(10..13);
    assert_eq!(ids(&rows), want);
    assert_eq!(report.overflow.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_acknowledges_past_the_hand_off_and_delivers_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
    };
    let mut rig = Rig::start(source_config(policy, 2));
    for chunk in 0..5u64 {
        let r = rig.post(body(chunk * 10..chunk * 10 + 10)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", reply(&r));
    }
    assert!(rig.source.stats().spilled > 0);
    rig.grant_until(50, 50).await;
    let rows = rig.rows();
    let report = rig.stop().await;
    assert_eq!(ids(&rows), (0..50).collect::<Vec<_>>());
    assert!(report.overflow.spilled > 0);
    assert_eq!(report.overflow.spilled, report.overflow.unspilled);
    assert_eq!(report.overflow.lost(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_defers_the_rest_with_429() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Frames of `{"id":NN}` are 9 + 24 bytes: 100 bytes hold two after the segment header.
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 100,
    };
    let rig = Rig::start(source_config(policy, 2));
    let mut acked = Vec::new();
    let mut deferred = 0;
    for id in 10..40 {
        let r = rig.post(body([id])).await;
        match r.status {
            StatusCode::ACCEPTED => acked.push(id),
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.retry_after.is_some(), "a 429 without Retry-After");
                deferred += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(deferred > 0);
    assert_eq!(acked.len() + deferred, 30);
    let rows_handle = Arc::clone(&rig.rows);
    let report = rig.stop().await;
    assert_eq!(ids(&rows_handle.lock().expect("test lock")), acked);
    assert_eq!(report.overflow.rejected, deferred as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_dead_lettered_with_their_line_numbers() {
    let mut rig = Rig::start(source_config(Overflow::Reject, 16));
    let r = rig
        .post("{\"id\":1}\nnot json\n[1]\n{\"id\":2}\n".to_string())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = reply(&r);
    assert_eq!((r.accepted, r.rejected_total), (2, 2));
    assert_eq!(
        r.rejected.iter().map(|x| x.line).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let bad = rig.post("nope\n".to_string()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    rig.grant_until(2, 2).await;
    let report = rig.stop().await;
    assert_eq!(report.dead_letters, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_past_their_bound_are_counted_as_not_stored_not_as_dropped_rows() {
    let mut config = source_config(Overflow::Reject, 16);
    config.dead_letter_capacity = 2;
    let mut rig = Rig::start(config);
    // Five malformed lines and one record: two dead letters fit, three do not.
    let r = rig
        .post("a\nb\n{\"id\":1}\nc\n[1]\n{\"x\":1,\"x\":2}\n".to_string())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(reply(&r).rejected_total, 5);
    assert_eq!(rig.source.stats().dead_letters_not_stored, 3);
    rig.grant_until(1, 1).await;
    let report = rig.stop().await;
    assert_eq!(report.dead_letters, 2);
    assert_eq!(report.overflow.dead_letters_not_stored, 3);
    assert_eq!(report.overflow.dropped_newest, 0);
    assert_eq!(report.overflow.lost(), 0, "no row was lost");
    assert!(
        report.to_string().contains("dead letters not stored 3"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_bounded_in_bytes() {
    let mut config = source_config(Overflow::Reject, 16);
    config.dead_letter_capacity_bytes = 100_000;
    let rig = Rig::start(config);
    // Ten malformed lines of 30 KB each: three fit in 100 KB.
    let bad = format!("{}\n", "not json ".repeat(3_400));
    let body: String = bad.repeat(10) + "{\"id\":1}\n";
    let r = rig.post(body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let stats = rig.source.stats();
    assert_eq!(stats.dead_letters_not_stored, 7, "{stats:?}");
    assert!(stats.peak_dead_letter_bytes <= 100_000, "{stats:?}");
    let report = rig.stop().await;
    assert_eq!(report.dead_letters, 3);
    assert_eq!(report.overflow.dead_letters_not_stored, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_behind_the_source_checks_tokens_and_body_size() {
    let mut config = source_config(Overflow::Reject, 16);
    config.ingest.auth = Some(BearerToken::new("s3cret"));
    config.ingest.max_body_bytes = 64;
    let rig = Rig::start(config);
    let denied = rig.post(body([1])).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let authed = HttpClient::new(HttpClientConfig {
        bearer: Some(BearerToken::new("s3cret")),
        ..HttpClientConfig::default()
    });
    let url = format!("http://{}/ingest", rig.addr);
    let big = answer(
        guard(authed.post(
            &url,
            "application/x-ndjson",
            Bytes::from(body(0..20)),
            Duration::from_secs(5),
        ))
        .await,
    );
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let ok = answer(
        guard(authed.post(
            &url,
            "application/x-ndjson",
            Bytes::from(body([3])),
            Duration::from_secs(5),
        ))
        .await,
    );
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    let report = rig.stop().await;
    assert_eq!(report.operators[0].rows_out, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_records_are_bounded_by_the_hand_offs_bytes_not_only_its_count() {
    // Room for 1 000 records by count, 2 MiB by bytes: 600 KB records fill the bytes first.
    let mut config = source_config(Overflow::Reject, 1000);
    config.capacity_bytes = 2 << 20;
    let mut rig = Rig::start(config);
    let pad = "x".repeat(600_000);
    let record = |id: u64| format!("{{\"id\":{id},\"pad\":\"{pad}\"}}\n");
    let mut acked = Vec::new();
    let mut refused = 0;
    for id in 0..20 {
        let r = rig.post(record(id)).await;
        match r.status {
            StatusCode::ACCEPTED => acked.push(id),
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.retry_after.is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
        let stats = rig.source.stats();
        assert!(
            stats.held_bytes <= 2 << 20,
            "the hand-off holds {} B",
            stats.held_bytes
        );
    }
    // Three fit in the hand-off, and at most two more moved on into the pipeline.
    assert!((3..=5).contains(&acked.len()), "{acked:?}");
    assert_eq!(acked.len() + refused, 20);
    let stats = rig.source.stats();
    assert!(stats.peak_held_bytes <= 2 << 20, "{stats:?}");
    assert!(stats.peak_held_bytes >= 3 * 600_000, "{stats:?}");

    // Credit returns: every acknowledged record arrives and the hand-off's bytes are given back.
    rig.grant_until(acked.len(), acked.len()).await;
    assert_eq!(ids(&rig.rows()), acked);
    assert_eq!(rig.source.stats().held_bytes, 0);
    let report = rig.stop().await;
    assert_eq!(report.overflow.rejected, refused as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_ends_a_batch_of_large_records_at_max_batch_bytes() {
    let mut config = source_config(Overflow::Reject, 1000);
    config.max_batch_bytes = 1 << 20;
    config.ingest.max_body_bytes = 8 << 20;
    let mut rig = Rig::start_with(config, 64);
    // Twelve records of 300 KB: at most four (the fourth crossing 1 MiB) in a batch.
    let pad = "p".repeat(300_000);
    let body: String = (0..12)
        .map(|id| format!("{{\"id\":{id},\"pad\":\"{pad}\"}}\n"))
        .collect();
    let r = rig.post(body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    rig.grant_until(12, 12).await;
    let batches = rig.batches.lock().expect("test lock").clone();
    assert_eq!(batches.iter().sum::<usize>(), 12);
    assert!(batches.iter().all(|&n| (1..=4).contains(&n)), "{batches:?}");
    assert_eq!(ids(&rig.rows()), (0..12).collect::<Vec<_>>());
    rig.stop().await;
}

#[test]
fn a_record_larger_than_the_byte_bound_is_taken_only_alone() {
    let intake = Intake::new(IntakeConfig {
        max_bytes: 1000,
        ..intake_config(Mode::Reject, 100)
    });
    let big = json!({ "pad": "y".repeat(5000) });
    let mut records: VecDeque<Value> = VecDeque::from([big.clone(), json!({ "id": 1 })]);
    intake.offer(&mut records);
    // Taken alone into the empty hand-off; nothing joins it until it is gone.
    assert_eq!(records.len(), 1);
    assert_eq!(intake.held_bytes(), value_bytes(&big) as u64);
    intake.offer(&mut records);
    assert_eq!(records.len(), 1);
    assert_eq!(
        intake.take_one(),
        Some((big.clone(), value_bytes(&big) as u64, 0))
    );
    assert_eq!(intake.held_bytes(), 0);
    intake.offer(&mut records);
    assert!(records.is_empty());
    assert!(intake.held_bytes() <= 1000);
}

#[test]
fn a_values_size_counts_the_heap_it_owns() {
    let small = value_bytes(&json!({ "id": 1 }));
    let large = value_bytes(&json!({ "id": 1, "pad": "z".repeat(10_000) }));
    assert!(large >= small + 10_000, "{small} {large}");
    let array = value_bytes(&json!({ "xs": vec![0u8; 1000] }));
    assert!(array >= 1000 * std::mem::size_of::<Value>(), "{array}");
}

#[test]
fn bind_refuses_drop_oldest_and_an_empty_hand_off() {
    assert!(matches!(
        HttpSource::bind(source_config(Overflow::DropOldest, 4)),
        Err(HttpSourceError::Policy(Overflow::DropOldest))
    ));
    assert!(matches!(
        HttpSource::bind(source_config(Overflow::Reject, 0)),
        Err(HttpSourceError::Config(_))
    ));
    let mut no_bytes = source_config(Overflow::Reject, 4);
    no_bytes.capacity_bytes = 0;
    assert!(matches!(
        HttpSource::bind(no_bytes),
        Err(HttpSourceError::Config(_))
    ));
}

fn intake_config(mode: Mode, capacity: usize) -> IntakeConfig {
    IntakeConfig {
        mode,
        capacity,
        max_bytes: 32 << 20,
        dead_letter_capacity: 4,
        dead_letter_max_bytes: 1 << 20,
        spill: None,
        durable: None,
        half_life: Duration::from_secs(2),
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
    }
}

fn intake(mode: Mode, capacity: usize) -> Intake {
    Intake::new(intake_config(mode, capacity))
}

#[test]
fn retry_after_is_the_backlog_over_the_measured_drain_rate() {
    let intake = intake(Mode::Reject, 1000);
    let mut records: VecDeque<Value> = (0..1000).map(|i| json!({ "id": i })).collect();
    assert!(matches!(intake.offer(&mut records), Rest::Deferred(_)));
    assert!(records.is_empty());
    // Unknown rate: the longest hint.
    assert_eq!(intake.retry_after(), Duration::from_secs(60));
    let now = std::time::Instant::now();
    intake.publish_rate(Some(100.0), now, false);
    assert_eq!(intake.retry_after(), Duration::from_secs(10));
    intake.publish_rate(Some(400.0), now, false);
    assert_eq!(intake.retry_after(), Duration::from_secs(3));
    let mut more: VecDeque<Value> = VecDeque::from([json!({ "id": 1 })]);
    match intake.offer(&mut more) {
        Rest::Deferred(Some(hint)) => assert_eq!(hint, Duration::from_secs(3)),
        other => panic!("expected a deferral, got {other:?}"),
    }
    assert_eq!(more.len(), 1, "a full hand-off takes nothing");
}

#[test]
fn every_policy_refuses_with_a_retry_hint_full_or_closing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spill = || SpillQueue::open(dir.path(), 64).expect("open the spill");
    let modes = [
        (Mode::Reject, None),
        (Mode::Block(Duration::from_millis(1)), None),
        (Mode::DropNewest, None),
        // A spill of 64 bytes holds a few small records, not forty.
        (Mode::Spill, Some(spill)),
    ];
    for (mode, spill) in modes {
        let intake = Intake::new(IntakeConfig {
            spill: spill.map(|open| open()),
            ..intake_config(mode, 1)
        });
        let mut records: VecDeque<Value> = (0..40).map(|i| json!({ "id": i })).collect();
        let rest = intake.offer(&mut records);
        assert!(!records.is_empty(), "{mode:?} took everything");
        let hint = match rest {
            Rest::Deferred(hint) | Rest::Unavailable(hint) | Rest::Dropped(hint) => hint,
        };
        assert!(
            hint.is_some_and(|h| h >= Duration::from_secs(1)),
            "{mode:?}: {rest:?}"
        );
        intake
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            matches!(intake.offer(&mut records), Rest::Unavailable(Some(_))),
            "{mode:?} closing"
        );
    }
}

#[test]
fn a_stalled_drain_lengthens_the_hint() {
    let intake = intake(Mode::Reject, 100);
    let mut records: VecDeque<Value> = (0..100).map(|i| json!({ "id": i })).collect();
    intake.offer(&mut records);
    let now = std::time::Instant::now();
    intake.publish_rate(Some(100.0), now, true);
    assert_eq!(intake.retry_after_at(now), Duration::from_secs(1));
    // Four seconds (two half-lives) later nothing has drained while records waited: the rate
    // read then is a quarter, and the hint four times as long.
    assert_eq!(
        intake.retry_after_at(now + Duration::from_secs(4)),
        Duration::from_secs(4)
    );
    // A source that had drained everything was idle, not stalled: no decay.
    intake.publish_rate(Some(100.0), now, false);
    assert_eq!(
        intake.retry_after_at(now + Duration::from_secs(4)),
        Duration::from_secs(1)
    );
}

#[test]
fn the_drain_rate_sets_each_burst_of_credit_against_the_wait_before_it() {
    let mut source = HttpSource::bind(HttpSourceConfig {
        policy: Overflow::Reject,
        ..HttpSourceConfig::default()
    })
    .expect("bind on loopback");
    let t0 = std::time::Instant::now();
    let mut records: VecDeque<Value> = (0..375).map(|i| json!({ "id": i })).collect();
    source.intake.offer(&mut records);
    assert!(records.is_empty());
    // Credit arrives in bursts: every 2 s, two takes of 50 rows in quick succession, while
    // records keep waiting. The pipeline drains 50 rows/s, not 50 rows per millisecond.
    let mut out = Output::new(1000);
    let mut last = t0;
    for burst in 1..=3 {
        for k in 0..2 {
            let at = t0 + Duration::from_secs(2 * burst) + Duration::from_millis(k);
            assert_eq!(source.take(50, &mut out).unwrap(), 50);
            source.drained(at, 50);
            last = at;
        }
    }
    let rate = source.rate.rows_per_sec().expect("a measured rate");
    assert!((rate - 50.0).abs() < 1.0, "drain rate {rate} rows/s");
    // 75 records wait: at 50 rows/s, come back in 1.5 s (hints are whole seconds, rounded
    // up). Waiting 3 s for the next burst is within twice the usual gap between bursts (2 s):
    // not a stall.
    assert_eq!(
        source.intake.retry_after_at(last + Duration::from_secs(3)),
        Duration::from_secs(2)
    );
    // Nothing drained for 7 s is a stall: 3 s past twice the gap, one and a half half-lives,
    // a rate of 50 × 2^-1.5 ≈ 17.7 rows/s and 75 records take 4.2 s.
    assert_eq!(
        source.intake.retry_after_at(last + Duration::from_secs(7)),
        Duration::from_secs(5)
    );
}

#[test]
fn bind_refuses_capacities_and_timeouts_it_cannot_honour_instead_of_aborting() {
    // The hand-off allocates its slots at once: 2^40 records would abort the process.
    assert!(matches!(
        HttpSource::bind(source_config(Overflow::Reject, 1 << 40)),
        Err(HttpSourceError::Config(_))
    ));
    let mut dead = source_config(Overflow::Reject, 4);
    dead.dead_letter_capacity = usize::MAX;
    assert!(matches!(
        HttpSource::bind(dead),
        Err(HttpSourceError::Config(_))
    ));
    // `Instant + Duration::MAX` would panic inside a request.
    let mut forever = source_config(Overflow::Block, 4);
    forever.block_timeout = Duration::MAX;
    assert!(matches!(
        HttpSource::bind(forever),
        Err(HttpSourceError::Config(_))
    ));
    let mut hour = source_config(Overflow::Block, HttpSource::MAX_CAPACITY);
    hour.block_timeout = HttpSource::MAX_BLOCK_TIMEOUT;
    assert!(HttpSource::bind(hour).is_ok());
}
