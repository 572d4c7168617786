//! Tests of the test service on loopback.

use serde_json::json;
use tokio::task::JoinSet;

use super::*;
use weir_operators::connector::http::{ClientError, HttpClient, HttpClientConfig};

/// Runs `fut` under a generous deadline so a bug hangs no test run; never the assertion itself.
pub(crate) async fn guard<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test guard: the operation hung")
}

/// The answer of a request, whether 2xx or not; panics on a transport failure.
fn answer(
    result: Result<weir_operators::connector::http::Response, ClientError>,
) -> weir_operators::connector::http::Response {
    match result {
        Ok(response) => response,
        Err(ClientError::Status { response, .. }) => *response,
        Err(e) => panic!("expected an HTTP answer, got {e}"),
    }
}

fn config(capacity: usize, base_latency: Duration) -> TestServiceConfig {
    TestServiceConfig {
        capacity: NonZeroUsize::new(capacity).expect("test capacity is not zero"),
        base_latency,
        ..TestServiceConfig::default()
    }
}

const LONG: Duration = Duration::from_secs(60);

/// Starts `n` requests that stay in flight (the service's latency is [`LONG`]) and waits until
/// the service reports them in flight.
async fn hold(service: &TestService, client: &HttpClient, n: usize) -> JoinSet<()> {
    let mut held = JoinSet::new();
    for i in 0..n {
        let (client, url) = (client.clone(), service.work_url());
        held.spawn(async move {
            let _ = client
                .post_json(&url, &json!({ "held": i }), 2 * LONG)
                .await;
        });
    }
    guard(
        service
            .watch_in_flight()
            .wait_for(|&in_flight| in_flight == n),
    )
    .await
    .expect("the service is running");
    held
}

#[test]
fn latency_rises_with_load_to_twice_the_base_at_capacity() {
    let base = Duration::from_millis(10);
    assert_eq!(latency_at(base, 1, 4), Duration::from_micros(12_500));
    assert_eq!(latency_at(base, 2, 4), Duration::from_millis(15));
    assert_eq!(latency_at(base, 4, 4), Duration::from_millis(20));
}

#[tokio::test]
async fn serves_work_within_capacity_and_counts_it() {
    let service = TestService::start(config(4, Duration::from_millis(1))).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    for i in 0..3 {
        let ok = guard(client.post_json(
            &service.work_url(),
            &json!({ "i": i }),
            Duration::from_secs(5),
        ))
        .await
        .expect("served");
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(
            ok.json::<Value>().expect("JSON answer"),
            json!({"ok": true, "in_flight": 1})
        );
    }
    assert_eq!(
        service.totals(),
        TestServiceTotals {
            attempts: 3,
            successes: 3,
            rejections: 0
        }
    );
    let seconds = service.per_second();
    let summed = seconds
        .iter()
        .fold(TestServiceTotals::default(), |t, s| TestServiceTotals {
            attempts: t.attempts + s.attempts,
            successes: t.successes + s.successes,
            rejections: t.rejections + s.rejections,
        });
    assert_eq!(summed, service.totals());
    assert_eq!(service.in_flight(), 0);
}

#[tokio::test]
async fn past_capacity_it_answers_503_at_once() {
    let service = TestService::start(config(2, LONG)).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    let _held = hold(&service, &client, 2).await;

    let err = guard(client.post_json(&service.work_url(), &json!({}), Duration::from_secs(5)))
        .await
        .expect_err("over capacity");
    let response = err.response().expect("an HTTP answer");
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.retry_after, None);
    assert_eq!(
        service.totals(),
        TestServiceTotals {
            attempts: 3,
            successes: 0,
            rejections: 1
        }
    );
    assert_eq!(service.in_flight(), 2);
}

#[tokio::test]
async fn a_rejection_with_a_cost_counts_as_in_flight_while_it_is_being_refused() {
    let mut config = config(1, LONG);
    config.rejection_cost = LONG;
    let service = TestService::start(config).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    let _held = hold(&service, &client, 1).await;
    let (client2, url) = (client.clone(), service.work_url());
    let refused = tokio::spawn(async move {
        client2
            .post_json(&url, &json!({}), 2 * LONG)
            .await
            .map(|_| ())
    });
    // The second request is over capacity, yet loads the service while it is turned away.
    guard(service.watch_in_flight().wait_for(|&n| n == 2))
        .await
        .expect("the service is running");
    assert_eq!(service.totals().rejections, 0);
    refused.abort();
}

#[tokio::test]
async fn past_capacity_it_can_answer_429_with_retry_after() {
    let mut config = config(1, LONG);
    config.overload = OverloadResponse::TooManyRequests {
        retry_after: Duration::from_millis(2500),
    };
    let service = TestService::start(config).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    let _held = hold(&service, &client, 1).await;

    let response = answer(
        guard(client.post_json(&service.work_url(), &json!({}), Duration::from_secs(5))).await,
    );
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_and_neither_success_nor_rejection() {
    let service = TestService::start(config(1, Duration::from_millis(1))).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    let url = service.work_url();
    let sent = client.post(
        &url,
        "application/json",
        bytes::Bytes::from_static(b"{oops"),
        Duration::from_secs(5),
    );
    assert_eq!(answer(guard(sent).await).status, StatusCode::BAD_REQUEST);
    assert_eq!(
        service.totals(),
        TestServiceTotals {
            attempts: 1,
            successes: 0,
            rejections: 0
        }
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let service = TestService::start(config(1, Duration::from_millis(100))).expect("start");
    let client = HttpClient::new(HttpClientConfig::default());
    let url = service.work_url();
    let in_flight = tokio::spawn(async move {
        client
            .post_json(&url, &json!({}), Duration::from_secs(10))
            .await
    });
    guard(service.watch_in_flight().wait_for(|&n| n == 1))
        .await
        .expect("the service is running");

    guard(service.shutdown()).await.expect("clean shutdown");
    let finished = guard(in_flight)
        .await
        .expect("the request task")
        .expect("served despite the shutdown");
    assert_eq!(finished.status, StatusCode::OK);
}
