//! weir's HTTP client and sink against the overloadable test service: the naive-retry
//! baseline's amplification, and the sink posting within the service's capacity.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weir_operators::connector::http::{
    ErrorClass, HttpClient, HttpClientConfig, HttpSink, HttpSinkConfig,
};
use weir_operators::overload::limiter::AdaptiveConcurrencyConfig;
use weir_operators::prelude::{Collect, Generator};
use weir_runtime::{Pipeline, PipelineConfig};
use weir_workloads::http_service::{NaiveRetryClient, TestService, TestServiceConfig};

const T: Duration = Duration::from_secs(5);

/// Runs `fut` under a generous deadline so a bug hangs no test run; never the assertion itself.
async fn guard<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test guard: the operation hung")
}

/// A one-shot server that reads one whole request and answers `response` verbatim.
async fn canned(response: String) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read request");
            assert!(n > 0, "client closed before sending a whole request");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("length"))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        stream.write_all(response.as_bytes()).await.expect("answer");
    });
    (addr, task)
}

fn client() -> HttpClient {
    HttpClient::new(HttpClientConfig::default())
}

#[tokio::test]
async fn the_naive_client_sends_four_times_into_a_full_service() {
    let service = TestService::start(TestServiceConfig {
        capacity: NonZeroUsize::new(1).expect("1 is not zero"),
        base_latency: Duration::from_secs(60),
        ..TestServiceConfig::default()
    })
    .expect("start");
    let plain = client();
    let url = service.work_url();
    let held = {
        let (plain, url) = (plain.clone(), url.clone());
        tokio::spawn(async move {
            let _ = plain
                .post_json(&url, &json!({}), Duration::from_secs(120))
                .await;
        })
    };
    guard(service.watch_in_flight().wait_for(|&n| n == 1))
        .await
        .expect("the service is running");

    let naive = NaiveRetryClient::new(plain);
    let outcome = guard(naive.post_json(&url, &json!({}), T)).await;
    assert_eq!(outcome.attempts, 4);
    assert_eq!(
        outcome
            .result
            .expect_err("always rejected")
            .response()
            .map(|r| r.status),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!((naive.calls(), naive.attempts()), (1, 4));
    assert_eq!(service.totals().rejections, 4);
    held.abort();
}

#[tokio::test]
async fn the_naive_client_retries_transport_errors_and_stops_at_success() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let naive = NaiveRetryClient::with_max_retries(client(), 2);
    let refused =
        guard(naive.post_json(&format!("http://127.0.0.1:{port}/x"), &json!({}), T)).await;
    assert_eq!(refused.attempts, 3);
    assert_eq!(
        refused.result.expect_err("refused").class(),
        ErrorClass::Transport
    );

    let (addr, server) =
        canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned())
            .await;
    let ok = guard(naive.post_json(&format!("http://{addr}/x"), &json!({}), T)).await;
    assert_eq!(ok.attempts, 1);
    assert_eq!(ok.result.expect("served").status, StatusCode::OK);
    assert_eq!((naive.calls(), naive.attempts()), (2, 4));
    guard(server).await.expect("server task");

    let bad = guard(naive.post_json("https://127.0.0.1/x", &json!({}), T)).await;
    assert_eq!(
        bad.attempts, 0,
        "a request that cannot be sent is not retried"
    );
}

fn service(capacity: usize) -> TestService {
    TestService::start(TestServiceConfig {
        capacity: NonZeroUsize::new(capacity).expect("not zero"),
        base_latency: Duration::from_millis(2),
        ..TestServiceConfig::default()
    })
    .expect("start the test service")
}

fn sink_config(url: String, max: usize) -> HttpSinkConfig {
    let mut config = HttpSinkConfig::new(url);
    config.caller.concurrency = AdaptiveConcurrencyConfig {
        initial: 1,
        max,
        ..AdaptiveConcurrencyConfig::default()
    };
    config
}

fn pipeline() -> Pipeline {
    Pipeline::with_config(
        "post",
        PipelineConfig {
            batch_rows: 4,
            ..PipelineConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_every_row_once_within_the_services_capacity() {
    let service = service(4);
    let sink = HttpSink::new(sink_config(service.work_url(), 4));
    let monitor = sink.monitor();
    let mut p = pipeline();
    let stats = p
        .source("n", Generator::new(200, |i| json!({ "n": i })))
        .sink("post", sink);
    let report = guard(p.run_async()).await.expect("the run succeeds");
    let stats = stats.take().expect("the sink's result");
    // The limit never passed the service's capacity: no rejection, no retry.
    assert_eq!(
        (stats.calls, stats.attempts, stats.successes),
        (200, 200, 200)
    );
    assert_eq!(service.totals().successes, 200);
    assert_eq!(service.totals().rejections, 0);
    assert!(stats.peak_in_flight <= 4);
    assert_eq!(report.dead_letters, 0);
    assert_eq!(monitor.latency().count(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_service_refuses_for_good_are_dead_letters() {
    let service = service(4);
    let url = format!("http://{}/no-such-path", service.local_addr());
    let mut p = pipeline();
    let (stats, dead) = p
        .source("n", Generator::new(10, |i| json!({ "n": i })))
        .sink_with_dead_letters("post", HttpSink::new(sink_config(url, 4)));
    let dead = dead.sink("dead", Collect::new());
    let report = guard(p.run_async()).await.expect("the run succeeds");
    let stats = stats.take().expect("the sink's result");
    let dead = dead.take().expect("the dead letters");
    // A 404 is not retried: one attempt per row, each row a dead letter with its body.
    assert_eq!((stats.attempts, stats.non_retryable), (10, 10));
    assert_eq!(report.dead_letters, 10);
    assert_eq!(dead.len(), 10);
    assert!(dead[0].reason.contains("404"), "{}", dead[0].reason);
    let mut bodies: Vec<String> = dead.iter().map(|d| d.raw.clone()).collect();
    bodies.sort();
    assert_eq!(bodies[0], "{\"n\":0}");
}
