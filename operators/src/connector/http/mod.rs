//! HTTP at the pipeline's edge: an ingest source that admits only what the pipeline can take,
//! a sink that cannot start a retry storm, a client that reports status, `Retry-After` and
//! round-trip time, and the bounded server they run on.
//!
//! ```text
//!   producers ──POST /ingest (NDJSON)──► IngestServer ──offer()──► HttpSource's hand-off ──► pipeline
//!             ◄── 202 / 429 + Retry-After / 503 ──┘        (drained only when credit reaches the source)
//!
//!   pipeline ──► HttpSink ──(AIMD limit, retries, budget)──► service
//! ```
//!
//! * [`source`]: [`HttpSource`], a pipeline source serving `POST /ingest` whose overflow policy
//!   (block, reject with `429` + `Retry-After` from the measured drain rate, drop newest, spill)
//!   decides what happens to records the pipeline has no room for.
//! * [`ingest`]: the server under it; `POST /ingest` answers `202` only when the [`Admission`]
//!   took every valid record; otherwise `429` / `503` with a JSON body naming the first line to
//!   resend. Malformed lines go to the admission's dead-letter hook.
//! * [`sink`]: [`HttpSink`], POSTing rows through the adaptive-concurrency
//!   [`Caller`](crate::overload::caller::Caller).
//! * [`client`]: [`HttpClient`] (plain HTTP/1.1 over hyper-util's pooled client).
//! * [`ServerHandle`], [`read_body`], [`error_response`]: the bounded server the ingest server
//!   runs on, public so that other loopback services (the overload benchmark's test service in
//!   `weir-workloads`) share its limits.
//!
//! All servers here run on the ambient tokio runtime, own every task they start (the handle's
//! drop aborts them, `shutdown().await` drains them) and bound everything they hold: live
//! connections, accept backlog, header and body read time, body bytes.

mod auth;
pub mod client;
pub mod ingest;
mod ndjson;
mod server;
pub mod sink;
pub mod source;
#[cfg(test)]
mod test_util;

pub use crate::overload::retry_after::parse_retry_after;
pub use auth::BearerToken;
pub use client::{ClientError, ErrorClass, HttpClient, HttpClientConfig, Response};
pub use ingest::{
    Admission, IngestConfig, IngestReply, IngestServer, IngestStats, LineError, RejectedLine, Rest,
};
pub use server::{error_response, read_body, BindError, ServeLimits, ServerHandle, ShutdownError};
pub use sink::{HttpSink, HttpSinkConfig};
pub use source::{
    Ack, HttpSource, HttpSourceConfig, HttpSourceError, HttpSourceHandle, HttpSourceStats,
    LogPosition,
};
