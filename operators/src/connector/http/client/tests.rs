//! Client tests against loopback servers.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::connector::http::test_util::guard;

const T: Duration = Duration::from_secs(5);

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
async fn urls_that_are_not_plain_http_are_refused_before_sending() {
    for url in [
        "https://127.0.0.1/x",
        "ftp://127.0.0.1/x",
        "not a url",
        "/relative",
    ] {
        let err = client().post_json(url, &json!({}), T).await.expect_err(url);
        assert!(
            matches!(err, ClientError::InvalidUrl { .. }),
            "{url}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::Request);
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }; // closed again: nothing listens there now
    let err = guard(client().post_json(&format!("http://127.0.0.1:{port}/x"), &json!({}), T))
        .await
        .expect_err("refused");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Transport);
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_a_transport_error() {
    // A listener that never accepts: the kernel completes the handshake, nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/x", silent.local_addr().expect("addr"));
    let err = guard(client().post_json(&url, &json!({}), Duration::from_millis(100)))
        .await
        .expect_err("silence");
    assert!(
        matches!(err, ClientError::Timeout { after, .. } if after == Duration::from_millis(100)),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Transport);
}

#[tokio::test]
async fn a_status_error_keeps_the_answer_and_parses_an_http_date_retry_after() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let (addr, server) = canned(format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {at}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
    ))
    .await;
    let err = guard(client().post_json(&format!("http://{addr}/x"), &json!({"a": 1}), T))
        .await
        .expect_err("503");
    assert_eq!(err.class(), ErrorClass::Status);
    let response = err.response().expect("kept answer");
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&response.body[..], b"busy");
    // The date has whole-second precision, so the wait is within a second or two of 120 s.
    let wait = response.retry_after.expect("Retry-After parsed");
    assert!(
        (Duration::from_secs(118)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
    guard(server).await.expect("server task");
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let body = "x".repeat(200);
    let (addr, server) = canned(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let small = HttpClient::new(HttpClientConfig {
        max_response_bytes: 100,
        ..HttpClientConfig::default()
    });
    let err = guard(small.post_json(&format!("http://{addr}/x"), &json!({}), T))
        .await
        .expect_err("too large");
    assert!(
        matches!(err, ClientError::ResponseTooLarge { limit: 100, .. }),
        "{err}"
    );
    guard(server).await.expect("server task");
}

#[tokio::test]
async fn a_success_reports_status_body_and_no_retry_hint() {
    let (addr, server) = canned(
        "HTTP/1.1 201 Created\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"id\":\"42\"}"
            .to_owned(),
    )
    .await;
    let ok = guard(client().post_json(&format!("http://{addr}/x"), &json!({}), T))
        .await
        .expect("2xx");
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(ok.retry_after, None);
    assert_eq!(
        ok.json::<serde_json::Value>().expect("JSON"),
        json!({"id": "42"})
    );
    assert!(ok.rtt > Duration::ZERO);
    guard(server).await.expect("server task");
}
