//! weir's runtime: the graph, bounded demand-driven edges, the executor and its metrics.
//!
//! Most users reach this crate through the `weir` facade. Implement [`Source`], [`Operator`] or
//! [`Sink`] to write an operator of your own; the built-ins in `weir-operators` use nothing else.
//!
//! # Layout
//!
//! - [`channel`]: edges — a bounded ring with Reactive-Streams credit, bounded in batches and bytes;
//! - [`operator`]: the operator API;
//! - [`barrier`]: in-band markers that tell a source when every sink it reaches has handled
//!   its rows (durable acknowledgement), and the checkpoint barrier type;
//! - checkpoints in the executor ([`CheckpointConfig`]): aligned (or, past a timeout, unaligned)
//!   barriers, snapshots of sources, operators and sinks, two-phase sink commits, restore and
//!   restarts ([`Pipeline::run_restartable`]);
//! - [`checkpoint`]: the checkpoint store — blobs of state, source positions and in-flight
//!   data committed atomically under a manifest, verified on restore with fallback to the
//!   previous complete checkpoint, retained up to a count — the state encoding, and the key
//!   groups keyed state is rescaled by;
//! - [`event_time`]: timestamps, watermark strategies, idleness and watermark alignment at the
//!   sources;
//! - [`PipelineConfig`] and [`Chaining`] (module `config`): settings of a whole pipeline;
//! - [`graph`]: the logical plan, validation, DOT export;
//! - the physical plan (private): instances, chains and the edges between them;
//! - the executor (private): one tokio task per instance or chain, shutdown;
//! - [`Pipeline`], [`StreamCore`] and the run handles (module `pipeline`): the builder;
//! - [`metrics`]: per-instance counters, busy / idle / backpressured time, the [`RunReport`];
//! - [`Overflow`]: what a producer that cannot wait does with work that finds no room, and
//!   [`spill`], the bounded on-disk FIFO behind [`Overflow::Spill`].
//!
//! The modules form a ladder without circles: configuration ← logical graph ← physical plan ←
//! executor ← pipeline builder, each reading only the rungs below it, and all of them standing
//! on the leaves (the operator API, channels, metrics, overflow, errors). The operator API
//! knows nothing of the executor or its metrics. `tests/layering.rs` keeps it so.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod barrier;
mod batch;
pub mod channel;
pub mod checkpoint;
mod config;
mod dead_letter;
mod error;
pub mod event_time;
mod exec;
pub mod graph;
pub mod heap_size;
mod loom;
pub mod metrics;
pub mod operator;
pub mod overflow;
pub mod partition;
mod pipeline;
mod plan;
mod raw;
pub mod spill;
mod stop;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use barrier::{Barrier, Barriers, CheckpointBarrier};
pub use batch::{Batch, LatencyMarker, Message, Timestamp};
pub use channel::{
    edge, Closed, EdgeConfig, EdgeProbe, EdgeStats, Inlet, Outlet, Permit, TryRecvError,
    TryReserveError, TrySendError,
};
pub use checkpoint::{
    BlobName, CheckpointError, CheckpointMeta, CheckpointStore, CompletedCheckpoint, KeyGroupRange,
    PendingCheckpoint,
};
pub use config::{
    Chaining, CheckpointConfig, PipelineConfig, Placement, RestartStrategy,
    SMALL_BATCH_MAX_CAPACITY,
};
pub use dead_letter::DeadLetter;
pub use error::{ErrorKind, GraphError, OperatorError, RunError};
pub use event_time::{EventTimeState, WatermarkStrategy};
pub use graph::{NodeId, OutPort, Partitioning};
pub use heap_size::{Data, HeapSize};
pub use metrics::{CheckpointReport, RunReport};
pub use operator::{
    DownstreamProbe, InputPort, InstanceInfo, Operator, Output, Queued, Sink, Source, SourceStatus,
    StateSize,
};
pub use overflow::{CodecError, JsonCodec, Overflow, OverflowCounter, OverflowReason, SpillCodec};
pub use pipeline::{Pipeline, RunHandle, SinkHandle, Stream, StreamCore};
pub use stop::StopSignal;
/// Derives [`HeapSize`](trait@HeapSize) for a struct or an enum (see the [trait](trait@HeapSize)).
pub use weir_derive::HeapSize;
