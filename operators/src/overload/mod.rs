//! Overload and resilience primitives for the edges of a pipeline.
//!
//! Where backpressure cannot be pushed further upstream — an HTTP sink whose server slows down,
//! an ingest endpoint whose callers do not read a demand signal — the pipeline must choose what
//! to do with work it cannot finish, and count that choice. The pieces here make those choices
//! possible. They are plain state machines: no clock, no runtime, no threads. Time comes in as
//! arguments (`Instant`, `SystemTime`, `Duration`), randomness through an injected RNG, so every
//! behaviour is deterministic under test.
//!
//! | module | what it decides | holds |
//! |---|---|---|
//! | [`spill`] | where records go when an edge is full: a bounded disk FIFO | `max_bytes` on disk, O(segments) in memory |
//! | [`limiter`] | how many requests to keep in flight (AIMD on latency and 429/503) | O(1) |
//! | [`retry`] | whether and when to retry a failed request, and how many retries the whole client may spend | O(1) |
//! | [`retry_after`] | the `Retry-After` a client must honour, and the one a server should send from its measured drain rate | O(1) |
//! | [`caller`] | the engine that combines them to call a service from a pipeline (HTTP sink, `map_async`); the one piece here that runs on tokio | O(limit) records |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod caller;
pub mod limiter;
pub mod retry;
pub mod retry_after;
/// The spill queue lives in the runtime, whose edges use it for `Overflow::Spill`.
pub use weir_runtime::spill;
