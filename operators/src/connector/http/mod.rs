//! HTTP at the pipeline's edge: an ingest server that admits only what the pipeline can take,
//! a client that reports status, `Retry-After` and round-trip time, and an overloadable test
//! service for benchmarks.
//!
//! ```text
//!   producers ──POST /ingest (NDJSON)──► IngestServer ──offer()──► Admission (pipeline side)
//!             ◄── 202 / 429 + Retry-After ──┘        ◄── Offered { accepted, retry_after }
//!
//!   pipeline sink ──HttpClient::post_json──► TestService (capacity C, 503/429 past C)
//!   bench baseline ──NaiveRetryClient──────►   (retries at once, up to 3 times)
//! ```
//!
//! * [`ingest`]: `POST /ingest` answers `202` only for records the [`Admission`] accepted;
//!   when nothing fits it answers `429` with `Retry-After`; a partial fit is a `429` whose JSON
//!   body names the first line to resend. Malformed lines go to the admission's dead-letter hook.
//! * [`client`]: [`HttpClient`] (plain HTTP/1.1 over hyper-util's pooled client) and
//!   [`NaiveRetryClient`], the benchmark's retry-storm baseline.
//! * [`test_service`]: [`TestService`], an in-process service on loopback whose latency rises
//!   with load and which rejects work past its capacity, counting per second.
//!
//! All servers here run on the ambient tokio runtime, own every task they start (the handle's
//! drop aborts them, `shutdown().await` drains them) and bound everything they hold: live
//! connections, accept backlog, header and body read time, body bytes.

mod auth;
pub mod client;
pub mod ingest;
mod ndjson;
mod rate;
mod server;
pub mod sink;
pub mod source;
pub mod test_service;
#[cfg(test)]
mod test_util;

pub use crate::overload::retry_after::parse_retry_after;
pub use auth::BearerToken;
pub use client::{
    ClientError, ErrorClass, HttpClient, HttpClientConfig, NaiveOutcome, NaiveRetryClient, Response,
};
pub use ingest::{
    Admission, IngestConfig, IngestReply, IngestServer, IngestStats, LineError, RejectedLine, Rest,
};
pub use rate::SecondCounts;
pub use server::{BindError, ServeLimits, ShutdownError};
pub use sink::{HttpSink, HttpSinkConfig};
pub use source::{
    HttpSource, HttpSourceConfig, HttpSourceError, HttpSourceHandle, HttpSourceStats,
};
pub use test_service::{OverloadResponse, TestService, TestServiceConfig, TestServiceTotals};
