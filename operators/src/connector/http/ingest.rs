//! The ingest server: `POST /ingest` takes NDJSON and acknowledges only what the pipeline took.
//!
//! # Protocol
//!
//! ```text
//!  request                             checks, in order                        answer
//!  ─────────────────────────────────   ─────────────────────────────────────   ──────────────
//!  too many connections from one IP    max_connections_per_peer (no idle one)  503 + Retry-After, closed
//!  any route, head not complete in     header_read_timeout (shrinks as the     connection closed
//!                                      connection table fills; or evicted)
//!  POST /ingest, token missing/wrong   auth (constant-time compare)            401
//!  Content-Length > max_body_bytes     before reading the body                 413
//!  bodies in flight hold their budget  max_body_bytes_in_flight                503 + Retry-After, closed
//!  body not complete in time           body_read_timeout (whole body; shrinks  408, closed
//!                                      as the connection table fills)
//!  body grows past max_body_bytes      while reading                           413, closed
//!  body with no valid record           every line malformed, or none           400 + reply
//!  records offered to the Admission:
//!      all taken                                                               202 + reply
//!      a prefix (maybe empty) taken, the rest
//!          Rest::Deferred     (no room: come back later)                       429 + Retry-After + reply
//!          Rest::Unavailable  (a wait for room timed out, or closing)          503 + Retry-After + reply
//!          Rest::Dropped      (dropped by the admission's policy, counted)     503 + Retry-After + reply
//!  GET /health                                                                 200 {"status":"ok"}
//! ```
//!
//! Each non-blank line must be one JSON object (see [`LineError`]). An object with the same key
//! twice (at any depth) is malformed rather than resolved by a silent "last wins", and so is an
//! integer beyond both `i64` and `u64`, which could only be kept rounded (send it as a string);
//! every integer within those ranges is kept exact. A malformed line is handed
//! to [`Admission::dead_letter`] with its 1-based line number and listed in the reply, and the
//! valid records are offered to [`Admission::offer`] in line order. The admission takes a
//! prefix of them. An admission that lets requests wait for room ([`Admission::room`]) is
//! offered the rest again each time room appears, until it has taken everything or the wait
//! times out. `202` therefore means exactly "every valid record was taken": a record that was
//! dropped or refused is never acknowledged. The server keeps nothing: what was not taken stays
//! with the client.
//!
//! # Example
//!
//! ```
//! use std::collections::VecDeque;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weir_operators::connector::http::{
//!     Admission, HttpClient, HttpClientConfig, IngestConfig, IngestReply, IngestServer, LineError, Rest,
//! };
//!
//! /// Takes everything (a real admission asks the pipeline for room).
//! struct TakeAll;
//! impl Admission for TakeAll {
//!     fn offer(&self, records: &mut VecDeque<serde_json::Value>) -> Rest {
//!         records.clear(); // taken
//!         Rest::Deferred(None)
//!     }
//!     fn dead_letter(&self, line: usize, error: &LineError, _raw: &str) {
//!         eprintln!("line {line}: {error}");
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let config = IngestConfig { addr: "127.0.0.1:0".parse().unwrap(), ..IngestConfig::default() };
//! let server = IngestServer::bind(config, Arc::new(TakeAll)).unwrap();
//! let url = format!("http://{}/ingest", server.local_addr());
//!
//! let client = HttpClient::new(HttpClientConfig::default());
//! let body = "{\"id\":1}\n{\"id\":2}\n".into();
//! let answer = client.post(&url, "application/x-ndjson", body, Duration::from_secs(5)).await.unwrap();
//! assert_eq!(answer.status, 202);
//! assert_eq!(answer.json::<IngestReply>().unwrap().accepted, 2);
//! server.shutdown().await.unwrap();
//! # });
//! ```
//!
//! # The reply, and what to resend
//!
//! Every `202`, `429`, `503` and `400` from `/ingest` carries an [`IngestReply`] as JSON:
//!
//! ```json
//! {"accepted":2,"deferred":1,"dropped":0,"resume_at_line":4,"rejected_total":1,
//!  "rejected":[{"line":2,"reason":"invalid JSON: ..."}],"retry_after_ms":1500}
//! ```
//!
//! A partial acceptance is answered `429` (or `503`), not `202`: a client that reads only the status then
//! resends the whole body, which duplicates the accepted records (at-least-once) instead of
//! losing the rest. A client that reads the body resends exactly the unaccepted records: the
//! lines from `resume_at_line` on, leaving out the rejected ones ([`IngestReply::must_resend`]).
//! `Retry-After` is whole seconds rounded up (at least 1); `retry_after_ms` keeps the
//! admission's hint at millisecond precision.
//!
//! # Cost
//!
//! A body is buffered whole (at most `max_body_bytes`) and parsed on the async worker before it
//! is offered; keep `max_body_bytes` at the size of a batch (default 1 MiB), not of a file. The
//! bodies read at once hold at most `max_body_bytes_in_flight` (default 64 MiB) of raw bytes;
//! their parsed records take about as much again until they are offered.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{CONTENT_LENGTH, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use super::ndjson;
pub use super::ndjson::LineError;
use super::server::{
    error_response, listen_std, read_body, shrink, BindError, ConnectionStats, ServeLimits,
    ServerHandle, ShutdownError,
};
use super::BearerToken;
use crate::overload::retry_after::delta_seconds;

/// The pipeline side of the ingest server: decides how many records fit.
///
/// Its methods run on the server's async workers: they must not block (no waiting for room;
/// report what became of the rest instead, and offer a [`room`](Self::room) signal to let
/// requests wait).
pub trait Admission: Send + Sync + 'static {
    /// Takes records from the front of `records`, in body order, as many as fit now, and says
    /// what became of the rest: whatever it leaves in `records` was not taken and will not be
    /// acknowledged. A record taken is acknowledged to the client and must not be dropped
    /// afterwards. The returned [`Rest`] is ignored when everything was taken.
    fn offer(&self, records: &mut VecDeque<Value>) -> Rest;

    /// Receives a line that is not a record: its 1-based line number in the body, why it was
    /// rejected, and the line itself (invalid UTF-8 replaced by U+FFFD).
    fn dead_letter(&self, line: usize, error: &LineError, raw: &str);

    /// A request's records that were finally not taken, and why: called once per request that
    /// leaves some, after any wait for room. Count them here. The default does nothing.
    fn refused(&self, _records: usize, _rest: &Rest) {}

    /// For an admission that lets a request wait for room (`Overflow::Block`): a signal notified
    /// (with `notify_waiters`) whenever room may have appeared, and how long a request may wait
    /// for it. The default: no waiting.
    fn room(&self) -> Option<(&Notify, Duration)> {
        None
    }

    /// For an admission that acknowledges records only once they are on stable storage (a
    /// write-ahead log): a future that completes once every record taken so far is durable.
    /// A request that had records taken is answered only then; if it fails, none of them is
    /// acknowledged (`503` + `Retry-After`; they may still be delivered, at least once). The
    /// default, `None`, acknowledges what `offer` takes at once.
    fn settle(&self) -> Option<Settle> {
        None
    }
}

/// The wait of an [`Admission::settle`]: `Err` says why the records are not durable.
pub type Settle = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What became of the records an [`Admission`] did not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// No room now: the client should send them again after the hint (`429` + `Retry-After`;
    /// `None` falls back to [`IngestConfig::default_retry_after`]).
    Deferred(Option<Duration>),
    /// The pipeline cannot take them now (a wait for room timed out, or it is closing): `503`
    /// + `Retry-After`.
    Unavailable(Option<Duration>),
    /// The admission's policy dropped them (and counted them): `503` + `Retry-After`, so that a
    /// client sending more learns when there may be room again (`None` falls back to
    /// [`IngestConfig::default_retry_after`]).
    Dropped(Option<Duration>),
}

/// Settings of an [`IngestServer`].
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Address to listen on; port 0 picks a free port (see [`IngestServer::local_addr`]).
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get `413`. A body is buffered whole.
    pub max_body_bytes: usize,
    /// Bytes of request bodies the server reads and parses at once, over all connections: a
    /// request reserves its declared length (`max_body_bytes` when undeclared) before its
    /// body is read and keeps it until it is answered; one that finds no room gets `503` +
    /// `Retry-After`. A body larger than this is read only alone.
    pub max_body_bytes_in_flight: usize,
    /// Time to receive the whole body once the head has arrived; slower bodies get `408`.
    /// Past a half-full connection table it shrinks towards `serve.min_read_timeout`.
    pub body_read_timeout: Duration,
    /// When set, `POST /ingest` requires `Authorization: Bearer <token>`; `/health` stays open.
    pub auth: Option<BearerToken>,
    /// Retry hint sent when the admission gives none: every `429` and `503` refusal carries one.
    pub default_retry_after: Duration,
    /// Rejected lines listed in a reply (all are counted and dead-lettered); bounds the reply.
    pub max_reported_rejections: usize,
    /// Connection limits and timeouts.
    pub serve: ServeLimits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1 << 20,
            max_body_bytes_in_flight: 64 << 20,
            body_read_timeout: Duration::from_secs(30),
            auth: None,
            default_retry_after: Duration::from_secs(1),
            max_reported_rejections: 100,
            serve: ServeLimits::default(),
        }
    }
}

/// A line that was not taken as a record, as listed in an [`IngestReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    /// 1-based line number in the request body.
    pub line: usize,
    /// Why the line was rejected.
    pub reason: String,
}

/// The JSON body of a `202`, `429`, `503` or `400` answer to `POST /ingest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Records taken into the pipeline (the first `accepted` valid lines).
    pub accepted: usize,
    /// Valid records not taken for lack of room; resend them.
    pub deferred: usize,
    /// Valid records not taken and dropped by the pipeline's overflow policy.
    #[serde(default)]
    pub dropped: usize,
    /// Line number of the first record not taken; every valid line from here on was deferred or
    /// dropped.
    pub resume_at_line: Option<usize>,
    /// Malformed lines in the body (each was dead-lettered).
    pub rejected_total: usize,
    /// The first malformed lines, at most [`IngestConfig::max_reported_rejections`].
    pub rejected: Vec<RejectedLine>,
    /// The retry hint in milliseconds, when something was deferred or dropped (the same hint as
    /// the `Retry-After` header, which rounds it up to whole seconds).
    pub retry_after_ms: Option<u64>,
}

impl IngestReply {
    /// Whether the client should send `line` (1-based) of its body again: it is at or past
    /// `resume_at_line` and was not rejected as malformed. When more lines were rejected than
    /// listed, an unlisted malformed line is reported as to resend; it will be rejected again.
    pub fn must_resend(&self, line: usize) -> bool {
        self.resume_at_line.is_some_and(|first| line >= first)
            && !self.rejected.iter().any(|r| r.line == line)
    }
}

/// Counters of an [`IngestServer`] since it was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IngestStats {
    /// Requests to `POST /ingest`.
    pub requests: u64,
    /// Records accepted by the admission (acknowledged).
    pub records_accepted: u64,
    /// Valid records the admission had no room for (the client keeps them).
    pub records_deferred: u64,
    /// Valid records the admission dropped by its policy (never acknowledged).
    pub records_dropped: u64,
    /// Malformed lines, dead-lettered.
    pub lines_rejected: u64,
    /// `429` answers.
    pub throttled: u64,
    /// `503` answers to `/ingest` (dropped, timed out waiting for room, closing, or no room for
    /// the body).
    pub unavailable: u64,
    /// Requests answered `503` before their body was read: the bodies in flight held
    /// `max_body_bytes_in_flight`.
    pub bodies_refused: u64,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections answered `503` and closed at once: their peer held its connection limit and
    /// had no idle or slow connection to give up.
    pub connections_refused: u64,
    /// Idle or slow connections closed to make room for new ones.
    pub connections_evicted: u64,
    /// Connections open now.
    pub connections_active: usize,
    /// Most connections open at once.
    pub connections_peak: usize,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    records_accepted: AtomicU64,
    records_deferred: AtomicU64,
    records_dropped: AtomicU64,
    lines_rejected: AtomicU64,
    throttled: AtomicU64,
    unavailable: AtomicU64,
    bodies_refused: AtomicU64,
}

struct Shared {
    admission: Arc<dyn Admission>,
    config: IngestConfig,
    counters: Counters,
    /// The server's connection table, for the body deadline's pressure.
    conns: OnceLock<Arc<ConnectionStats>>,
    /// Bytes of bodies being read and parsed (permits are bytes, at most `u32::MAX`).
    bodies: Semaphore,
    body_budget: u32,
}

/// A running ingest server. Dropping it stops the server and aborts open connections;
/// [`IngestServer::shutdown`] lets in-flight requests finish first.
pub struct IngestServer {
    handle: ServerHandle,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IngestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestServer")
            .field("local_addr", &self.handle.local_addr())
            .finish_non_exhaustive()
    }
}

impl IngestServer {
    /// Binds `config.addr` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BindError::NoRuntime`] outside a tokio runtime; [`BindError::Listen`] when the address
    /// cannot be bound.
    pub fn bind(config: IngestConfig, admission: Arc<dyn Admission>) -> Result<Self, BindError> {
        let listener = listen_std(config.addr, config.serve.accept_backlog).map_err(|source| {
            BindError::Listen {
                addr: config.addr,
                source,
            }
        })?;
        Self::serve(listener, config, admission)
    }

    /// Starts serving on `listener`, already bound and listening, on the current tokio
    /// runtime; `config.addr` is not used. Connections that arrived before are served.
    ///
    /// # Errors
    ///
    /// [`BindError::NoRuntime`] outside a tokio runtime; [`BindError::Listen`] when the listener
    /// cannot be handed to the runtime.
    pub fn serve(
        listener: std::net::TcpListener,
        config: IngestConfig,
        admission: Arc<dyn Admission>,
    ) -> Result<Self, BindError> {
        let serve = config.serve.clone();
        let body_budget = u32::try_from(config.max_body_bytes_in_flight.max(1)).unwrap_or(u32::MAX);
        let shared = Arc::new(Shared {
            admission,
            config,
            counters: Counters::default(),
            conns: OnceLock::new(),
            bodies: Semaphore::new(body_budget as usize),
            body_budget,
        });
        let router = Router::new()
            .route("/ingest", post(ingest))
            .route("/health", get(health))
            .with_state(Arc::clone(&shared));
        let handle = ServerHandle::serve(listener, &serve, router)?;
        let _ = shared.conns.set(handle.stats_arc());
        Ok(Self { handle, shared })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IngestStats {
        snapshot(&self.shared, self.handle.stats())
    }

    /// A function reading the counters, for holders of no reference to the server.
    pub(crate) fn stats_fn(&self) -> Arc<dyn Fn() -> IngestStats + Send + Sync> {
        let (shared, conns) = (Arc::clone(&self.shared), self.handle.stats_arc());
        Arc::new(move || snapshot(&shared, &conns))
    }

    /// Stops accepting connections, lets in-flight requests finish (up to
    /// [`ServeLimits::shutdown_grace`]) and joins the server.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Panicked`] if the server task panicked.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.handle.shutdown().await
    }
}

fn snapshot(shared: &Shared, conns: &ConnectionStats) -> IngestStats {
    let c = &shared.counters;
    IngestStats {
        requests: c.requests.load(Ordering::Relaxed),
        records_accepted: c.records_accepted.load(Ordering::Relaxed),
        records_deferred: c.records_deferred.load(Ordering::Relaxed),
        records_dropped: c.records_dropped.load(Ordering::Relaxed),
        lines_rejected: c.lines_rejected.load(Ordering::Relaxed),
        throttled: c.throttled.load(Ordering::Relaxed),
        unavailable: c.unavailable.load(Ordering::Relaxed),
        bodies_refused: c.bodies_refused.load(Ordering::Relaxed),
        connections_accepted: conns.accepted(),
        connections_refused: conns.refused(),
        connections_evicted: conns.evicted(),
        connections_active: conns.active(),
        connections_peak: conns.peak(),
    }
}

async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ingest(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let config = &shared.config;
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);

    if let Some(token) = &config.auth {
        if !token.authorizes(&headers) {
            let mut response =
                error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    // Room for the body among those being read and parsed, or a refusal with a retry hint.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let want = declared
        .unwrap_or(config.max_body_bytes as u64)
        .min(config.max_body_bytes as u64)
        .min(u64::from(shared.body_budget));
    let want = u32::try_from(want).unwrap_or(shared.body_budget);
    let Ok(_body_room) = shared.bodies.try_acquire_many(want) else {
        shared
            .counters
            .bodies_refused
            .fetch_add(1, Ordering::Relaxed);
        shared.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight; retry later",
        );
        response.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(delta_seconds(config.default_retry_after)),
        );
        return response;
    };
    // A slow body holds a connection that newcomers may need: the deadline shrinks as the
    // connection table fills.
    let fill = shared.conns.get().map_or(0.0, |c| c.fill());
    let body_timeout = shrink(
        config.body_read_timeout,
        config.serve.min_read_timeout,
        fill,
    );
    let bytes = match read_body(&headers, body, config.max_body_bytes, body_timeout).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };

    let parsed = ndjson::parse(&bytes);
    for bad in &parsed.malformed {
        shared.admission.dead_letter(
            bad.line,
            &bad.error,
            &String::from_utf8_lossy(&bytes[bad.raw.clone()]),
        );
    }
    shared
        .counters
        .lines_rejected
        .fetch_add(parsed.malformed.len() as u64, Ordering::Relaxed);
    let rejected: Vec<RejectedLine> = parsed
        .malformed
        .iter()
        .take(config.max_reported_rejections)
        .map(|m| RejectedLine {
            line: m.line,
            reason: m.error.to_string(),
        })
        .collect();
    let rejected_total = parsed.malformed.len();

    if parsed.records.is_empty() {
        let reply = IngestReply {
            accepted: 0,
            deferred: 0,
            dropped: 0,
            resume_at_line: None,
            rejected_total,
            rejected,
            retry_after_ms: None,
        };
        return (StatusCode::BAD_REQUEST, Json(reply)).into_response();
    }

    let offered = parsed.records.len();
    let mut records: VecDeque<Value> = parsed.records.into();
    let mut rest = shared.admission.offer(&mut records);
    if !records.is_empty() {
        if let Some((room, timeout)) = shared.admission.room() {
            // Wait for room, offering the rest again whenever some appears, up to the timeout.
            let deadline = tokio::time::Instant::now() + timeout;
            while !records.is_empty() {
                let notified = room.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                rest = shared.admission.offer(&mut records);
                if records.is_empty() || tokio::time::timeout_at(deadline, notified).await.is_err()
                {
                    break;
                }
            }
        }
    }
    let mut not_taken = records.len().min(offered);
    if not_taken < offered {
        if let Some(settle) = shared.admission.settle() {
            if let Err(why) = settle.await {
                tracing::error!(error = %why, "accepted records could not be made durable; not acknowledged");
                not_taken = offered;
                rest = Rest::Unavailable(None);
            }
        }
    }
    let accepted = offered - not_taken;
    let c = &shared.counters;
    c.records_accepted
        .fetch_add(accepted as u64, Ordering::Relaxed);
    if not_taken > 0 {
        shared.admission.refused(not_taken, &rest);
    }
    let (status, deferred, dropped, hint) = match rest {
        _ if not_taken == 0 => (StatusCode::ACCEPTED, 0, 0, None),
        Rest::Deferred(hint) => (
            StatusCode::TOO_MANY_REQUESTS,
            not_taken,
            0,
            Some(hint.unwrap_or(config.default_retry_after)),
        ),
        Rest::Unavailable(hint) => (
            StatusCode::SERVICE_UNAVAILABLE,
            not_taken,
            0,
            Some(hint.unwrap_or(config.default_retry_after)),
        ),
        Rest::Dropped(hint) => (
            StatusCode::SERVICE_UNAVAILABLE,
            0,
            not_taken,
            Some(hint.unwrap_or(config.default_retry_after)),
        ),
    };
    c.records_deferred
        .fetch_add(deferred as u64, Ordering::Relaxed);
    c.records_dropped
        .fetch_add(dropped as u64, Ordering::Relaxed);
    match status {
        StatusCode::TOO_MANY_REQUESTS => c.throttled.fetch_add(1, Ordering::Relaxed),
        StatusCode::SERVICE_UNAVAILABLE => c.unavailable.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    let reply = IngestReply {
        accepted,
        deferred,
        dropped,
        resume_at_line: (not_taken > 0).then(|| parsed.lines[accepted]),
        rejected_total,
        rejected,
        retry_after_ms: hint.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
    };
    let mut response = (status, Json(reply)).into_response();
    if let Some(wait) = hint {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(delta_seconds(wait)));
    }
    response
}
