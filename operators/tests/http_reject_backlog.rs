//! An HTTP source under `Reject` counts the rows it already handed on that wait in the
//! pipeline's edges: they are accepted work not yet done, so they count against its capacity and
//! in the backlog behind `Retry-After`, read from the source's downstream probe.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weir_operators::connector::http::{
    ClientError, HttpClient, HttpClientConfig, HttpSource, HttpSourceConfig, IngestConfig,
};
use weir_runtime::{
    EdgeConfig, InputPort, OperatorError, Overflow, Pipeline, PipelineConfig, Sink,
};

/// Takes a batch only with a permit: a sink paced from outside.
struct Paced {
    credit: Arc<Semaphore>,
    permit: Option<Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>>,
    taken: u64,
}

impl Sink for Paced {
    type Input = Vec<Value>;
    type Output = u64;

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
        self.taken += batch.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.taken)
    }
}

/// Lets the sink take everything when dropped, so a failed assertion does not leave the run
/// (which drains what was acknowledged when its handle drops) waiting for credit.
struct ReleaseOnDrop(Arc<Semaphore>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.add_permits(1 << 20);
    }
}

const CAPACITY: usize = 4;
const EDGE_BATCHES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_counts_the_rows_queued_in_the_edges_downstream() {
    let source = HttpSource::bind(HttpSourceConfig {
        ingest: IngestConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..IngestConfig::default()
        },
        policy: Overflow::Reject,
        capacity: CAPACITY,
        ..HttpSourceConfig::default()
    })
    .expect("bind on loopback");
    let handle = source.handle();
    let credit = Arc::new(Semaphore::new(0));
    let mut p = Pipeline::with_config(
        "reject-backlog",
        PipelineConfig {
            batch_rows: 1,
            workers: Some(2),
            ..PipelineConfig::default()
        },
    );
    // The edge could hold four times the hand-off: without counting it, the source would
    // accept that much more before rejecting.
    let taken = p
        .source("http", source)
        .with_edge(EdgeConfig::default().with_capacity(EDGE_BATCHES))
        .sink(
            "sink",
            Paced {
                credit: Arc::clone(&credit),
                permit: None,
                taken: 0,
            },
        );
    let run = p.spawn().expect("the pipeline starts");
    let release = ReleaseOnDrop(Arc::clone(&credit));

    let client = HttpClient::new(HttpClientConfig::default());
    let url = format!("http://{}/ingest", handle.local_addr());
    let mut acked = 0u64;
    let full = loop {
        assert!(acked < 100, "a pipeline without credit took 100 records");
        let body = Bytes::from(format!("{{\"id\":{acked}}}\n"));
        let r = match client
            .post(&url, "application/x-ndjson", body, Duration::from_secs(10))
            .await
        {
            Ok(r) => r,
            Err(ClientError::Status { response, .. }) => *response,
            Err(e) => panic!("expected an HTTP answer, got {e}"),
        };
        if r.status != StatusCode::ACCEPTED {
            break r;
        }
        acked += 1;
    };
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(full.retry_after.is_some());
    // At most the hand-off's capacity was accepted (plus a record the source was moving from
    // the hand-off to the edge while a request looked), though the edge had room for more.
    assert!(
        (CAPACITY as u64..=CAPACITY as u64 + 1).contains(&acked),
        "accepted {acked} with a hand-off of {CAPACITY}"
    );
    // The backlog counts them wherever they wait: the hand-off or the edge (read through the
    // probe), less a record in the source's hands.
    let backlog = handle.stats().backlog;
    assert!(
        (acked - 1..=acked).contains(&backlog),
        "backlog {backlog}, accepted {acked}"
    );

    drop(release);
    run.stop();
    let report = tokio::task::spawn_blocking(move || run.join())
        .await
        .expect("join task")
        .expect("the run succeeds");
    assert_eq!(taken.take(), Some(acked));
    assert_eq!(report.overflow.rejected, 1);
}
