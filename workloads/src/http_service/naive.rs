//! The overload benchmark's retry-storm baseline: a client that retries every failure at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use weir_operators::connector::http::{ClientError, HttpClient, Response};

/// The result of one [`NaiveRetryClient`] call.
#[derive(Debug)]
pub struct NaiveOutcome {
    /// The last attempt's result.
    pub result: Result<Response, ClientError>,
    /// Requests sent for this call (1 + retries).
    pub attempts: u32,
}

/// The overload benchmark's baseline: on any failure it retries at once, ignoring
/// `Retry-After`, up to `max_retries` times (3 by default).
///
/// Under overload every rejection comes back as up to four requests, so the load on the
/// service grows exactly when it can least take it (retry amplification). It exists to be
/// measured beside weir's paced sink, not to be used.
#[derive(Debug)]
pub struct NaiveRetryClient {
    client: HttpClient,
    max_retries: u32,
    attempts: AtomicU64,
    calls: AtomicU64,
}

impl NaiveRetryClient {
    /// Retries up to 3 times.
    pub fn new(client: HttpClient) -> Self {
        Self::with_max_retries(client, 3)
    }

    /// Retries up to `max_retries` times.
    pub fn with_max_retries(client: HttpClient, max_retries: u32) -> Self {
        Self {
            client,
            max_retries,
            attempts: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// POSTs `body` as JSON, retrying immediately on a transport or status failure. A request
    /// that cannot be built
    /// ([`ErrorClass::Request`](weir_operators::connector::http::ErrorClass::Request)) is not
    /// retried: it never reached the network.
    pub async fn post_json<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
        timeout: Duration,
    ) -> NaiveOutcome {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let body = match serde_json::to_vec(body) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                return NaiveOutcome {
                    result: Err(ClientError::Encode(e)),
                    attempts: 0,
                }
            }
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let result = self
                .client
                .post(url, "application/json", body.clone(), timeout)
                .await;
            if let Err(ClientError::InvalidUrl { .. }) = &result {
                // Refused before sending (the URL is the same for every retry): no attempt.
                self.attempts.fetch_sub(1, Ordering::Relaxed);
                return NaiveOutcome {
                    result,
                    attempts: 0,
                };
            }
            if result.is_ok() || attempts > self.max_retries {
                return NaiveOutcome { result, attempts };
            }
        }
    }

    /// Requests sent over all calls, retries included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Calls made ([`NaiveRetryClient::post_json`] invocations).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
