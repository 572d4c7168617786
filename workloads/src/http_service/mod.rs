//! An overloadable in-process HTTP service for `weir bench overload` and tests, and the
//! benchmark's naive-retry client ([`NaiveRetryClient`]).
//!
//! `POST /work` with a small JSON body is one unit of work. The service takes at most
//! `capacity` (C) requests at once:
//!
//! ```text
//!   request arrives ── attempts += 1
//!     body read (≤ max_body_bytes, else 413; not JSON → 400)
//!     in_flight < C ?  yes → in_flight += 1 (n = new value)
//!                            wait base_latency × (1 + n / C)      (load-dependent service time)
//!                            in_flight -= 1, successes += 1, 200 {"ok":true,"in_flight":n}
//!                      no  → in_flight += 1 for rejection_cost (0 by default), then -= 1,
//!                            rejections += 1, 503  (or 429 + Retry-After, per config)
//! ```
//!
//! So latency rises from `base_latency` at light load to `2 × base_latency` at capacity, and a
//! client that offers more than C concurrent requests sees rejections at once rather than a
//! queue. Turning a request away is free by default; a `rejection_cost` models the work a real
//! service does before it can refuse (reading, parsing, authenticating): the rejected request
//! counts as in flight meanwhile, so a storm of rejected retries crowds out and slows down
//! useful work, as it does in a real service's congestion collapse. Counts are kept as totals and per second (a ring of the last `history` seconds,
//! see [`SecondCounts`]) for plots. The in-flight count is also published on a
//! [`tokio::sync::watch`] channel so callers can await a load level instead of polling.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use weir_operators::connector::http::{
    error_response, read_body, BindError, ServeLimits, ServerHandle, ShutdownError,
};
use weir_operators::overload::retry_after::delta_seconds;

use rate::{Event, RateRing};

mod naive;
mod rate;

pub use naive::{NaiveOutcome, NaiveRetryClient};
pub use rate::SecondCounts;

/// How the service turns work away when it is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadResponse {
    /// `503 Service Unavailable`, no hint: the client must guess when to come back.
    ServiceUnavailable,
    /// `429 Too Many Requests` with `Retry-After: <retry_after, rounded up to whole seconds>`.
    TooManyRequests {
        /// The hint sent.
        retry_after: Duration,
    },
}

/// Settings of a [`TestService`].
#[derive(Debug, Clone)]
pub struct TestServiceConfig {
    /// Address to listen on; keep it on loopback. Port 0 picks a free port.
    pub addr: SocketAddr,
    /// Requests served at once (C); more are rejected.
    pub capacity: NonZeroUsize,
    /// Service time of a request alone; at `n` in flight it is `base_latency × (1 + n / C)`.
    pub base_latency: Duration,
    /// The answer to a request over capacity.
    pub overload: OverloadResponse,
    /// Service time spent on a request before it is rejected, during which it counts as in
    /// flight (zero: rejections are free).
    pub rejection_cost: Duration,
    /// Seconds of per-second counts kept.
    pub history: NonZeroUsize,
    /// Largest `/work` body accepted; larger ones get `413`.
    pub max_body_bytes: usize,
    /// Time to receive a body once the head has arrived.
    pub body_read_timeout: Duration,
    /// Connection limits and timeouts.
    pub serve: ServeLimits,
}

impl Default for TestServiceConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            capacity: NonZeroUsize::new(64).expect("64 is not zero"),
            base_latency: Duration::from_millis(10),
            overload: OverloadResponse::ServiceUnavailable,
            rejection_cost: Duration::ZERO,
            history: NonZeroUsize::new(600).expect("600 is not zero"),
            max_body_bytes: 64 << 10,
            body_read_timeout: Duration::from_secs(5),
            serve: ServeLimits {
                max_connections: NonZeroUsize::new(4096).expect("4096 is not zero"),
                // Benchmark clients all come from loopback.
                max_connections_per_peer: NonZeroUsize::new(4096).expect("4096 is not zero"),
                accept_backlog: 1024,
                ..ServeLimits::default()
            },
        }
    }
}

/// Totals of a [`TestService`] since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TestServiceTotals {
    /// Requests that arrived at `/work`.
    pub attempts: u64,
    /// Requests served (200).
    pub successes: u64,
    /// Requests rejected for capacity (503 or 429).
    pub rejections: u64,
}

struct Service {
    capacity: usize,
    base_latency: Duration,
    overload: OverloadResponse,
    rejection_cost: Duration,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    in_flight: watch::Sender<usize>,
    started: Instant,
    attempts: AtomicU64,
    successes: AtomicU64,
    rejections: AtomicU64,
    // One short critical section per event; this is a test fixture, not a pipeline data path.
    per_second: Mutex<RateRing>,
}

impl Service {
    fn record(&self, event: Event) {
        let total = match event {
            Event::Attempt => &self.attempts,
            Event::Success => &self.successes,
            Event::Rejection => &self.rejections,
        };
        total.fetch_add(1, Ordering::Relaxed);
        let second = self.started.elapsed().as_secs();
        // A panic while holding this lock cannot leave the ring inconsistent (each update is
        // a few integer writes), so a poisoned lock is still usable.
        self.per_second
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(second, event);
    }

    /// Takes a slot if fewer than `capacity` are in flight; returns the new in-flight count.
    fn try_admit(&self) -> Option<usize> {
        let mut admitted = None;
        self.in_flight.send_if_modified(|n| {
            if *n < self.capacity {
                *n += 1;
                admitted = Some(*n);
                true
            } else {
                false
            }
        });
        admitted
    }
}

/// Gives the in-flight slot back however the request ends (also when the client goes away).
struct Slot<'a>(&'a Service);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

/// Service time at `in_flight` requests (this one included) out of `capacity`.
pub(crate) fn latency_at(base: Duration, in_flight: usize, capacity: usize) -> Duration {
    base.mul_f64(1.0 + in_flight as f64 / capacity as f64)
}

/// A running test service. Dropping it stops the service and aborts open connections.
pub struct TestService {
    handle: ServerHandle,
    service: Arc<Service>,
}

impl std::fmt::Debug for TestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestService")
            .field("local_addr", &self.handle.local_addr())
            .field("capacity", &self.service.capacity)
            .finish_non_exhaustive()
    }
}

impl TestService {
    /// Binds `config.addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BindError::NoRuntime`] outside a tokio runtime; [`BindError::Listen`] when the address
    /// cannot be bound.
    pub fn start(config: TestServiceConfig) -> Result<Self, BindError> {
        let service = Arc::new(Service {
            capacity: config.capacity.get(),
            base_latency: config.base_latency,
            overload: config.overload,
            rejection_cost: config.rejection_cost,
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
            in_flight: watch::Sender::new(0),
            started: Instant::now(),
            attempts: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            per_second: Mutex::new(RateRing::new(config.history.get())),
        });
        let router = Router::new()
            .route("/work", post(work))
            .with_state(Arc::clone(&service));
        let handle = ServerHandle::bind(config.addr, &config.serve, router)?;
        Ok(Self { handle, service })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The URL of the work endpoint, `http://<addr>/work`.
    pub fn work_url(&self) -> String {
        format!("http://{}/work", self.local_addr())
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        *self.service.in_flight.borrow()
    }

    /// A receiver of the in-flight count, to await a load level (`wait_for(|n| *n == C)`).
    pub fn watch_in_flight(&self) -> watch::Receiver<usize> {
        self.service.in_flight.subscribe()
    }

    /// Totals since start.
    pub fn totals(&self) -> TestServiceTotals {
        TestServiceTotals {
            attempts: self.service.attempts.load(Ordering::Relaxed),
            successes: self.service.successes.load(Ordering::Relaxed),
            rejections: self.service.rejections.load(Ordering::Relaxed),
        }
    }

    /// Per-second counts of the kept history, oldest first; seconds without events are absent.
    pub fn per_second(&self) -> Vec<SecondCounts> {
        self.service
            .per_second
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot()
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and joins the
    /// server.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Panicked`] if the server task panicked.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.handle.shutdown().await
    }
}

async fn work(State(service): State<Arc<Service>>, headers: HeaderMap, body: Body) -> Response {
    service.record(Event::Attempt);
    let bytes = match read_body(
        &headers,
        body,
        service.max_body_bytes,
        service.body_read_timeout,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
        return error_response(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}"));
    }

    let Some(n) = service.try_admit() else {
        if !service.rejection_cost.is_zero() {
            // The work of turning the request away loads the service like any other.
            service.in_flight.send_modify(|n| *n += 1);
            let slot = Slot(&service);
            tokio::time::sleep(service.rejection_cost).await;
            drop(slot);
        }
        service.record(Event::Rejection);
        return match service.overload {
            OverloadResponse::ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "at capacity"})),
            )
                .into_response(),
            OverloadResponse::TooManyRequests { retry_after } => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error": "at capacity"})),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(delta_seconds(retry_after)));
                response
            }
        };
    };
    let slot = Slot(&service);
    // Simulated service time: the work itself, not a wait for data.
    tokio::time::sleep(latency_at(service.base_latency, n, service.capacity)).await;
    drop(slot);
    service.record(Event::Success);
    Json(json!({"ok": true, "in_flight": n})).into_response()
}

#[cfg(test)]
mod tests;
