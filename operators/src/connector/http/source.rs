//! The HTTP ingest source: `POST /ingest` with NDJSON into a pipeline, acknowledging only what
//! the pipeline took.
//!
//! [`HttpSource`] runs an [`IngestServer`] (body limit, header and body timeouts, connection
//! limit, optional bearer token, `GET /health`) whose admission is a bounded hand-off read by
//! the source only when credit reaches it: the pipeline's demand decides what is acknowledged.
//! What does not fit is handled by the source's [`Overflow`] policy:
//!
//! | policy | a request that finds the hand-off full | counted as |
//! |---|---|---|
//! | `Reject` | `429` + `Retry-After` = backlog (hand-off and the edges downstream) / measured drain rate (whole seconds, clamped); the rows in the edges count against `capacity` | `rejected` |
//! | `Block` (default) | waits for room up to `block_timeout`, then `503` + `Retry-After` | `rejected` |
//! | `DropNewest` | the records that do not fit are dropped: `503` + `Retry-After`, never `202` | `dropped_newest` |
//! | `Spill { dir, max_bytes }` | appended to a bounded on-disk FIFO and acknowledged (`202`); drained in order; when the spill is full, `429` | `spilled`, `unspilled`, `rejected` |
//!
//! `DropOldest` cannot apply: what is in the hand-off was acknowledged. The hand-off protocol
//! and the drain-rate measurement are written down in `source/intake.rs`; see
//! [`ingest`](super::ingest) for the request protocol and the reply body. Malformed lines are
//! dead-lettered (the source's dead-letter port) with their line number.
//!
//! # What a `202` promises
//!
//! | [`Ack`] | a `202` is sent once the records are | a stop (SIGINT, SIGTERM, [`HttpSourceHandle::close`]) | a crash (`kill -9`, power loss) |
//! |---|---|---|---|
//! | `Accepted` (default) | in the hand-off (or the spill) | delivers them all | loses those in the hand-off, the edges and operators (at most `capacity` records plus the edges' bounds), and under `Spill` those already read back from it; the rest of a spill is delivered by the next source opened on it |
//! | `Durable { dir, .. }` | written **and fsynced** to a write-ahead log in `dir` | delivers them all and confirms them | loses none: the next source opened on `dir` delivers, before anything new, every acknowledged record the sinks had not confirmed — **at least once**, so some may be delivered twice |
//!
//! Under `Durable`, requests share fsyncs (one covers every record appended before it
//! started), the source emits a [barrier](weir_runtime::barrier) after the rows it hands on (at
//! most every `commit_interval`), and the log's cursor advances to a barrier once every sink
//! it reaches has handled the rows before it durably ([`Sink::poll_barrier`](weir_runtime::Sink::poll_barrier));
//! segments holding only confirmed records are then released. A full log refuses records
//! with a retry hint, as a full hand-off does. A sink that only keeps rows in memory confirms
//! at once: use one that writes them out (the NDJSON part sink fsyncs at every barrier). An
//! operator that keeps rows across batches (an aggregation) cannot pass a barrier — its rows
//! are not handled when the barrier passes, and nothing would bring them back after a crash
//! once the log let go of them — so without checkpoints such a pipeline is refused when it
//! starts.
//!
//! # Checkpoints
//!
//! In a checkpointed run ([`PipelineConfig::checkpointing`](weir_runtime::PipelineConfig::checkpointing))
//! a durable source takes part in checkpoints instead of sending barriers of its own: its
//! snapshot is its [`LogPosition`] (the sequence number after the last record it handed on),
//! a restore resumes there (as [`HttpSource::bind_at`] does: the records below it were handed
//! on before the checkpoint, which holds their effects), and once a checkpoint is complete
//! ([`Source::notify_checkpoint_complete`]) the log is released below the position it holds
//! ([`HttpSource::release_through`]): the cursor is fsynced and the segments holding only
//! earlier records are deleted. Operators downstream snapshot what they keep, so an
//! aggregation may stand between the source and the sinks, and with sinks that commit by
//! checkpoint ([`PartCommit::OnCheckpoint`](crate::connector::PartCommit)) each acknowledged
//! record is reflected **exactly once** in the committed output, across crashes and restores.
//! What the source handed on after the last complete checkpoint stays in the log: a run
//! restored from that checkpoint replays it, and sinks that commit by checkpoint drop what
//! they wrote of it. Without [`Ack::Durable`] the source cannot be checkpointed (it has no log
//! to rewind in) and a checkpointed run refuses it at start.
//!
//! # Lifecycle
//!
//! [`HttpSource::bind`] binds the address at once (so it is known and connections queue in the
//! kernel), the server starts when the pipeline opens the source, on the pipeline's runtime, and
//! it is owned by the source. When the run is stopped ([`RunHandle::stop`](weir_runtime::RunHandle))
//! or [`HttpSourceHandle::close`] is called, the source stops taking records (`503` to new
//! requests), lets requests in progress finish, hands on everything already acknowledged (the
//! hand-off and the spill), and ends. If the run is cancelled instead (a failure elsewhere, every
//! consumer gone), the server is aborted with the source and what waits in the hand-off (at most
//! `capacity` records) is lost; a spill stays on disk and is delivered first by the next source
//! opened on it.
//!
//! # Memory
//!
//! At most `capacity` records and `capacity_bytes` bytes (deep size) in the hand-off,
//! `dead_letter_capacity` dead letters of at most `dead_letter_capacity_bytes`, and the
//! server's own bounds (`max_body_bytes_in_flight` of bodies being read and parsed).

mod durable;
#[cfg(test)]
mod durable_tests;
mod intake;
mod position;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::futures::OwnedNotified;
use weir_runtime::barrier::Barriers;
use weir_runtime::spill::{SpillConfig, SpillError, SpillQueue, Wal, WalReplay};
use weir_runtime::{
    InstanceInfo, OperatorError, Output, Overflow, OverflowReason, Source, SourceStatus,
};

use super::server::listen_std;
use super::{BindError, IngestConfig, IngestServer, IngestStats, ShutdownError};
use crate::overload::retry_after::DrainRate;
use durable::DurableLog;
use intake::{Intake, IntakeConfig, Mode};
pub use position::LogPosition;

/// Settings of an [`HttpSource`].
#[derive(Debug, Clone)]
pub struct HttpSourceConfig {
    /// The server: address, body limit, timeouts, connection limits, bearer token.
    pub ingest: IngestConfig,
    /// What to do when the hand-off is full (see the [module docs](self)).
    pub policy: Overflow,
    /// Records the hand-off holds: the most acknowledged and not yet taken by the pipeline.
    /// Under `Reject`, rows the source handed on that still wait in the pipeline's edges count
    /// against it too, so at most `capacity` accepted rows wait anywhere.
    pub capacity: usize,
    /// Bytes the hand-off's records hold at most, each counted at its deep size (the JSON
    /// value and the heap it owns); whichever of this and `capacity` is reached first bounds
    /// the hand-off. A single record larger than this is taken only into an empty hand-off.
    pub capacity_bytes: usize,
    /// Bytes (deep size) of hand-off records in one batch the source emits, besides the
    /// pipeline's `batch_rows`: edges hold a number of batches, so this keeps large records
    /// from filling them with full-length batches. A batch holds at least one record.
    pub max_batch_bytes: usize,
    /// Under `Block`, how long a request waits for room before `503`.
    pub block_timeout: Duration,
    /// Dead letters (malformed lines) held until the pipeline takes them; past that they are
    /// only counted (`dead_letters_not_stored`) and reported to the client.
    pub dead_letter_capacity: usize,
    /// Bytes the held dead letters (reason and raw line) take at most; past that, as past
    /// `dead_letter_capacity`.
    pub dead_letter_capacity_bytes: usize,
    /// Half-life of the drain-rate average behind `Retry-After`.
    pub drain_half_life: Duration,
    /// Bounds of the `Retry-After` hint.
    pub retry_after_min: Duration,
    /// See `retry_after_min`.
    pub retry_after_max: Duration,
    /// When a `202` is sent: once records are in the hand-off, or once they are on stable
    /// storage (see [`Ack`]).
    pub ack: Ack,
    /// With [`Ack::Durable`]: how often, at most, the source asks the sinks to confirm what
    /// they handled (a [barrier](weir_runtime::barrier) after the rows handed on), so that
    /// the log's cursor advances and its segments are released. What a crash replays is at
    /// most about this much of the stream (plus what the sinks had not confirmed yet).
    pub commit_interval: Duration,
}

/// When an [`HttpSource`] acknowledges records (`202`); see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ack {
    /// Once they are in the hand-off (or, under `Spill`, in the spill). They are delivered
    /// while the process lives, and a stop (SIGINT, SIGTERM, [`HttpSourceHandle::close`])
    /// drains them; a crash (`kill -9`, power loss) loses what was in the hand-off and in the
    /// pipeline's edges and operators.
    #[default]
    Accepted,
    /// Once they are written and fsynced to a write-ahead log in `dir` (at most `max_bytes`
    /// of segments; when it is full, requests are refused with a retry hint until sinks
    /// confirm what they handled). The log's cursor advances only once every sink has handled
    /// the rows durably, so after a crash the next source opened on `dir` delivers every
    /// acknowledged record not yet confirmed: **at least once** (a record handled but not yet
    /// confirmed is delivered again). Without checkpoints, a pipeline with an operator that
    /// keeps rows across batches (an aggregation) is refused when the run starts; in a
    /// checkpointed run the log is released by checkpoint instead, such operators are
    /// allowed, and delivery is exactly once into sinks that commit by checkpoint (see the
    /// [module docs](self), *Checkpoints*).
    /// The overflow policy must be `Block`, `Reject` or `DropNewest`: the log already keeps
    /// every acknowledged record on disk.
    Durable {
        /// The log's directory (locked: a second process on it is refused).
        dir: PathBuf,
        /// Bytes of log segments at most.
        max_bytes: u64,
    },
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        Self {
            ingest: IngestConfig::default(),
            policy: Overflow::Block,
            capacity: 4096,
            capacity_bytes: 32 << 20,
            max_batch_bytes: 1 << 20,
            block_timeout: Duration::from_secs(5),
            dead_letter_capacity: 1024,
            dead_letter_capacity_bytes: 4 << 20,
            drain_half_life: Duration::from_secs(2),
            retry_after_min: Duration::from_secs(1),
            retry_after_max: Duration::from_secs(60),
            ack: Ack::Accepted,
            commit_interval: Duration::from_secs(1),
        }
    }
}

/// Why an [`HttpSource`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpSourceError {
    /// The address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The spill directory could not be opened.
    #[error("cannot open the ingest spill: {0}")]
    Spill(#[from] SpillError),
    /// The policy cannot apply to an ingest source.
    #[error(
        "an HTTP source cannot use {0}: records in its hand-off were acknowledged; \
         use block, reject, drop-newest or spill"
    )]
    Policy(Overflow),
    /// A setting is out of range.
    #[error("invalid HTTP source configuration: {0}")]
    Config(&'static str),
    /// The durable acknowledgement's log could not be opened, or committed.
    #[error("cannot open the ingest log: {0}")]
    Log(SpillError),
    /// [`HttpSource::bind_at`] was given a position the log cannot resume from.
    #[error(
        "the ingest log cannot resume at record {at}: it holds records {committed_below} to \
         {next_seq} (exclusive); a position below them was released by a later checkpoint, one \
         past them belongs to another log"
    )]
    Position {
        /// The position asked for.
        at: u64,
        /// The log's commit cursor: every record below it is released.
        committed_below: u64,
        /// The sequence number of the log's next append.
        next_seq: u64,
    },
}

/// What an [`HttpSource`] has done, for a live view.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HttpSourceStats {
    /// Records waiting in the hand-off and the spill, and rows the source handed on that wait
    /// in the pipeline's edges downstream of it.
    pub backlog: u64,
    /// Bytes the records in the hand-off hold now (deep size; at most `capacity_bytes`).
    pub held_bytes: u64,
    /// The most bytes the hand-off's records held at once.
    pub peak_held_bytes: u64,
    /// The measured drain rate, rows per second (decayed while the pipeline stalls).
    pub drain_rows_per_s: Option<f64>,
    /// The last `Retry-After` computed, in milliseconds.
    pub last_retry_after_ms: u64,
    /// Records acknowledged (202) so far.
    pub accepted: u64,
    /// Records refused with a retry hint (429 / 503).
    pub rejected: u64,
    /// Records dropped by `DropNewest` (503).
    pub dropped: u64,
    /// Malformed lines whose dead letter found no room and was not stored (the client's reply
    /// still lists them).
    pub dead_letters_not_stored: u64,
    /// The most bytes the waiting dead letters held at once.
    pub peak_dead_letter_bytes: u64,
    /// Records written to the spill.
    pub spilled: u64,
    /// `429` answers.
    pub throttled: u64,
    /// `503` answers.
    pub unavailable: u64,
}

type StatsFn = Arc<dyn Fn() -> IngestStats + Send + Sync>;

/// A handle on a running [`HttpSource`]: its address, live stats, and a graceful close.
#[derive(Clone)]
pub struct HttpSourceHandle {
    intake: Arc<Intake>,
    addr: SocketAddr,
    /// The server's counters, once it runs.
    server: Arc<OnceLock<StatsFn>>,
}

impl std::fmt::Debug for HttpSourceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSourceHandle")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl HttpSourceHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking records: new requests get `503`, and the source ends once what it
    /// acknowledged has been handed on.
    pub fn close(&self) {
        self.intake.closing.store(true, Relaxed);
        self.intake.room.notify_waiters();
        self.intake.data.notify_one();
    }

    /// The counters now.
    pub fn stats(&self) -> HttpSourceStats {
        let i = &self.intake;
        let server = self.server.get().map(|f| f()).unwrap_or_default();
        let counted = |r| i.counter.get().map_or(0, |c| c.get(r));
        HttpSourceStats {
            backlog: i.backlog() + i.queued_downstream(),
            held_bytes: i.held_bytes(),
            peak_held_bytes: i.peak_held_bytes(),
            drain_rows_per_s: i.drain_rate(),
            last_retry_after_ms: i.last_hint_ms.load(Relaxed),
            accepted: server.records_accepted,
            rejected: counted(OverflowReason::Rejected),
            dropped: counted(OverflowReason::DroppedNewest),
            dead_letters_not_stored: counted(OverflowReason::DeadLetterNotStored),
            peak_dead_letter_bytes: i.peak_dead_letter_bytes(),
            spilled: counted(OverflowReason::Spilled),
            throttled: server.throttled,
            unavailable: server.unavailable,
        }
    }
}

/// The shortest interval over which the drain rate is sampled.
const RATE_SAMPLE: Duration = Duration::from_millis(100);

type Shutdown = Pin<Box<dyn Future<Output = Result<(), ShutdownError>> + Send>>;

/// A source of JSON records posted to `POST /ingest`; see the [module docs](self).
///
/// ```no_run
/// use weir_operators::connector::http::{HttpSource, HttpSourceConfig};
/// use weir_operators::prelude::*;
///
/// let config = HttpSourceConfig { policy: Overflow::Reject, ..HttpSourceConfig::default() };
/// let source = HttpSource::bind(config)?;
/// println!("POST NDJSON to http://{}/ingest", source.handle().local_addr());
/// let mut p = Pipeline::new("ingest");
/// p.source("http", source).count("count");
/// p.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpSource {
    intake: Arc<Intake>,
    listener: Option<std::net::TcpListener>,
    config: IngestConfig,
    server: Option<IngestServer>,
    shutdown: Option<Shutdown>,
    /// The server has shut down (its future is not polled again).
    shut_down: bool,
    handle: HttpSourceHandle,
    rate: DrainRate,
    /// When the source last looked at the hand-off and left records waiting there.
    left_waiting: Option<Instant>,
    /// When records that had waited were last taken, and the usual gap between such takes.
    last_take: Option<Instant>,
    gap: Duration,
    /// The sample being gathered: its start, rows taken that had waited, and their wait.
    sample: (Instant, u64, Duration),
    wait: Option<Pin<Box<OwnedNotified>>>,
    max_batch_bytes: u64,
    /// Bytes of hand-off records in the output's open batch.
    open_bytes: u64,
    /// With durable acknowledgement: what the source replays and confirms.
    durable: Option<Durable>,
}

/// The source's side of durable acknowledgement (see `source/durable.rs`).
struct Durable {
    /// Records acknowledged before the last restart and not confirmed by the sinks, read as
    /// demand reaches them (`None` once read).
    replay: Option<WalReplay<'static>>,
    barriers: Barriers,
    /// The number of the next barrier (0 is sent first, before any data, so a pipeline that
    /// cannot pass barriers is refused at once).
    next_barrier: u64,
    /// The highest sequence number handed on, and the highest one a barrier follows.
    emitted: Option<u64>,
    /// Records below this sequence number are not handed on: the position the source was
    /// opened at (see `source/position.rs`), or the log's commit cursor.
    start: u64,
    covered: Option<u64>,
    /// The run takes checkpoints: the log is released by checkpoint, and the source emits no
    /// barriers of its own (see `source/position.rs`).
    checkpointed: bool,
    /// The position the last checkpoint snapshot holds (released once it is complete).
    snapshotted: Option<LogPosition>,
    last_barrier: Instant,
    interval: Duration,
    /// Wakes the source when rows handed on wait for their barrier.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("addr", &self.handle.addr)
            .field("mode", &self.intake.mode)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// The most records `capacity` and `dead_letter_capacity` may be: their queues allocate
    /// their slots up front.
    pub const MAX_CAPACITY: usize = 1 << 20;

    /// The longest `block_timeout` may be: a client is held no longer than this.
    pub const MAX_BLOCK_TIMEOUT: Duration = Duration::from_secs(3600);

    /// Binds `config.ingest.addr` now and prepares the hand-off (and the spill, for `Spill`).
    /// The server starts when the pipeline runs.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, the spill cannot be opened, the policy is `DropOldest`,
    /// `capacity` or `capacity_bytes` is zero, a capacity exceeds [`MAX_CAPACITY`](Self::MAX_CAPACITY),
    /// or `block_timeout` exceeds [`MAX_BLOCK_TIMEOUT`](Self::MAX_BLOCK_TIMEOUT).
    pub fn bind(config: HttpSourceConfig) -> Result<Self, HttpSourceError> {
        Self::bind_with(config, None)
    }

    /// [`bind`](Self::bind), resuming at `at`, a [`LogPosition`] this source's log reported
    /// (stored by a checkpoint): of the records the log replays, only those at or above `at`
    /// are handed on (see [`LogPosition`]).
    ///
    /// # Errors
    /// As [`bind`](Self::bind); [`HttpSourceError::Config`] without
    /// [`Ack::Durable`]; [`HttpSourceError::Position`] if the log no longer holds the records
    /// from `at` on, or never held `at`.
    pub fn bind_at(config: HttpSourceConfig, at: LogPosition) -> Result<Self, HttpSourceError> {
        if !matches!(config.ack, Ack::Durable { .. }) {
            return Err(HttpSourceError::Config(
                "resuming at a log position needs durable acknowledgement (Ack::Durable)",
            ));
        }
        Self::bind_with(config, Some(at))
    }

    fn bind_with(
        config: HttpSourceConfig,
        at: Option<LogPosition>,
    ) -> Result<Self, HttpSourceError> {
        if config.capacity == 0 {
            return Err(HttpSourceError::Config(
                "capacity must be at least 1 record",
            ));
        }
        if config.capacity_bytes == 0 {
            return Err(HttpSourceError::Config(
                "capacity_bytes must be at least 1 byte",
            ));
        }
        // The hand-off and the dead-letter queue allocate their slots at once.
        if config.capacity > Self::MAX_CAPACITY || config.dead_letter_capacity > Self::MAX_CAPACITY
        {
            return Err(HttpSourceError::Config(
                "capacity and dead_letter_capacity must be at most HttpSource::MAX_CAPACITY (2^20) records",
            ));
        }
        if config.block_timeout > Self::MAX_BLOCK_TIMEOUT {
            return Err(HttpSourceError::Config(
                "block_timeout must be at most HttpSource::MAX_BLOCK_TIMEOUT (1 hour)",
            ));
        }
        let (mode, spill) = match &config.policy {
            Overflow::Block => (Mode::Block(config.block_timeout), None),
            Overflow::Reject => (Mode::Reject, None),
            Overflow::DropNewest => (Mode::DropNewest, None),
            Overflow::Spill { dir, max_bytes } => {
                (Mode::Spill, Some(SpillQueue::open(dir, *max_bytes)?))
            }
            other => return Err(HttpSourceError::Policy(other.clone())),
        };
        let durable = match &config.ack {
            Ack::Accepted => None,
            Ack::Durable { dir, max_bytes } => {
                if mode == Mode::Spill {
                    return Err(HttpSourceError::Config(
                        "durable acknowledgement keeps every accepted record in its log already: \
                         use block, reject or drop-newest with it (the log's max_bytes bounds it)",
                    ));
                }
                if config.commit_interval.is_zero() {
                    return Err(HttpSourceError::Config(
                        "commit_interval must be above zero",
                    ));
                }
                let wal =
                    Wal::open(dir, SpillConfig::new(*max_bytes)).map_err(HttpSourceError::Log)?;
                let (committed_below, next_seq) = (wal.committed_below(), wal.next_seq());
                let start = match at {
                    None => committed_below,
                    Some(at) if (committed_below..=next_seq).contains(&at.next_seq) => at.next_seq,
                    Some(at) => {
                        return Err(HttpSourceError::Position {
                            at: at.next_seq,
                            committed_below,
                            next_seq,
                        })
                    }
                };
                let log = DurableLog::start(wal).map_err(|source| {
                    HttpSourceError::Log(SpillError::Io {
                        action: "start the fsync thread for",
                        path: dir.clone(),
                        source,
                    })
                })?;
                let replay = log.wal().replay_shared();
                Some((log, (replay, start)))
            }
        };
        let (log, replay) = durable.unzip();
        let addr = config.ingest.addr;
        let listener = listen_std(addr, config.ingest.serve.accept_backlog)
            .map_err(|source| BindError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| BindError::Listen { addr, source })?;
        let intake = Arc::new(Intake::new(IntakeConfig {
            mode,
            capacity: config.capacity,
            max_bytes: config.capacity_bytes,
            dead_letter_capacity: config.dead_letter_capacity,
            dead_letter_max_bytes: config.dead_letter_capacity_bytes,
            spill,
            durable: log,
            half_life: config.drain_half_life,
            retry_min: config.retry_after_min,
            retry_max: config.retry_after_max,
        }));
        let handle = HttpSourceHandle {
            intake: Arc::clone(&intake),
            addr: local,
            server: Arc::default(),
        };
        Ok(Self {
            intake,
            listener: Some(listener),
            config: config.ingest,
            server: None,
            shutdown: None,
            shut_down: false,
            handle,
            rate: DrainRate::new(config.drain_half_life, Instant::now()),
            left_waiting: None,
            last_take: None,
            gap: Duration::ZERO,
            sample: (Instant::now(), 0, Duration::ZERO),
            wait: None,
            max_batch_bytes: config.max_batch_bytes as u64,
            open_bytes: 0,
            durable: replay.map(|(replay, start)| Durable {
                replay: Some(replay),
                start,
                barriers: Barriers::default(),
                next_barrier: 0,
                emitted: None,
                covered: None,
                checkpointed: false,
                snapshotted: None,
                last_barrier: Instant::now(),
                interval: config.commit_interval,
                timer: None,
            }),
        })
    }

    /// A handle for the address, live stats and a graceful close; keep it before adding the
    /// source to a pipeline.
    pub fn handle(&self) -> HttpSourceHandle {
        self.handle.clone()
    }

    /// Takes up to `max` records: with durable acknowledgement, those replayed from the log
    /// first (acknowledged before a restart); then the hand-off; then the spill (which holds
    /// only newer records).
    fn take(&mut self, max: usize, out: &mut Output<Vec<Value>>) -> Result<usize, OperatorError> {
        let mut taken = 0;
        // A batch ends at `max_batch_bytes` too: edges are bounded in batches, so large
        // records must not ride in full-length batches. `open_bytes` follows the output's
        // open batch, which outlives this call until it fills or lingers out.
        let mut cut = false;
        while taken < max {
            if !out.has_open_batch() {
                self.open_bytes = 0;
            }
            let Some((record, size, seq)) = self.next_record()? else {
                break;
            };
            out.push(record);
            taken += 1;
            if let Some(d) = &mut self.durable {
                d.emitted = Some(seq);
            }
            self.open_bytes += size;
            if self.open_bytes >= self.max_batch_bytes {
                out.flush();
                self.open_bytes = 0;
                cut = true;
                break;
            }
        }
        if taken < max
            && !cut
            && self.intake.spilled.load(Relaxed) > 0
            && !self.intake.spill_broken.load(Relaxed)
        {
            taken += self.unspill(max - taken, out);
        }
        while let Some(letter) = self.intake.take_dead_letter() {
            out.dead_letter(letter);
        }
        Ok(taken)
    }

    /// The next record with its size and log sequence number: replayed, or from the hand-off.
    fn next_record(&mut self) -> Result<Option<(Value, u64, u64)>, OperatorError> {
        let start = self.durable.as_ref().map_or(0, |d| d.start);
        if let Some(replay) = self.durable.as_mut().and_then(|d| d.replay.as_mut()) {
            loop {
                let before = replay.stats();
                let next = replay.next();
                let after = replay.stats();
                self.intake.count_damaged(
                    after.damaged_records - before.damaged_records,
                    after.damaged_bytes - before.damaged_bytes,
                );
                match next {
                    // Handed on before the position the source resumed at: the checkpoint
                    // that stored it holds their effects.
                    Some(Ok((seq, _))) if seq < start => {}
                    Some(Ok((seq, bytes))) => match serde_json::from_slice::<Value>(&bytes) {
                        Ok(record) => {
                            let size = intake::value_bytes(&record) as u64;
                            return Ok(Some((record, size, seq)));
                        }
                        // Its frame checksum held, so this is not damage on disk; counted.
                        Err(_) => self.intake.count(OverflowReason::SpillFailed, 1),
                    },
                    // Records not read back would be committed with later ones: stop instead.
                    Some(Err(e)) => {
                        return Err(OperatorError::external(
                            "reading the ingest log back failed; its records stay on disk",
                            e,
                        ))
                    }
                    None => {
                        if let Some(d) = &mut self.durable {
                            d.replay = None;
                        }
                        break;
                    }
                }
            }
        }
        Ok(self.intake.take_one())
    }

    /// Whether records replayed from the log are still to be read.
    fn replaying(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| d.replay.is_some())
    }

    /// With durable acknowledgement: follows the rows handed on with a barrier when one is
    /// due (`commit_interval` after the last, or `now`), and otherwise arms a timer (through
    /// `cx`) for when it will be. Returns whether a barrier was emitted.
    fn confirm(
        &mut self,
        cx: Option<&mut Context<'_>>,
        out: &mut Output<Vec<Value>>,
        now: bool,
    ) -> bool {
        let (Some(d), Some(log)) = (&mut self.durable, &self.intake.durable) else {
            return false;
        };
        let Some(emitted) = d.emitted.filter(|_| !d.checkpointed) else {
            return false;
        };
        if d.covered >= Some(emitted) {
            d.timer = None;
            return false;
        }
        let due = d.last_barrier + d.interval;
        if !now && Instant::now() < due {
            let Some(cx) = cx else { return false };
            let timer = d
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
            if timer.deadline() != due.into() {
                timer.as_mut().reset(due.into());
            }
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
        let id = d.next_barrier;
        d.next_barrier += 1;
        log.barrier_sent(id, emitted);
        out.barrier(d.barriers.barrier(id));
        d.covered = Some(emitted);
        d.last_barrier = Instant::now();
        d.timer = None;
        true
    }

    fn unspill(&mut self, max: usize, out: &mut Output<Vec<Value>>) -> usize {
        let Some(spill) = &self.intake.spill else {
            return 0;
        };
        let mut spill = spill.lock().unwrap_or_else(|p| p.into_inner());
        let damaged_before = spill.stats();
        let mut taken = 0;
        while taken < max {
            match spill.pop() {
                Ok(Some(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(record) => {
                        out.push(record);
                        taken += 1;
                    }
                    Err(_) => self.intake.count(OverflowReason::SpillFailed, 1),
                },
                Ok(None) => break,
                Err(e) => {
                    // A spill that cannot be read back is given up: its records stay on disk,
                    // counted as failed, and later overflow is refused instead of spilled.
                    let left = spill.len();
                    tracing::error!(error = %e, records = left, "reading the ingest spill failed; giving it up");
                    self.intake.spill_broken.store(true, Relaxed);
                    self.intake
                        .count(OverflowReason::SpillFailed, left as usize);
                    self.intake.spilled.store(0, Relaxed);
                    return taken;
                }
            }
        }
        let damaged = spill.stats();
        self.intake.count_damaged(
            damaged.damaged_records - damaged_before.damaged_records,
            damaged.damaged_bytes - damaged_before.damaged_bytes,
        );
        self.intake.count(OverflowReason::Unspilled, taken);
        self.intake.spilled.store(spill.len(), Relaxed);
        taken
    }

    /// Records the drain and tells blocked requests there is room.
    ///
    /// The drain rate is rows taken per second *while records waited*: the pipeline, not the
    /// arrivals, set the pace then. Records taken now waited since the source last looked and
    /// left some behind, or since the first of them arrived in an empty hand-off; records taken
    /// less than [`RATE_SAMPLE`] after they arrived in an empty hand-off found the source
    /// keeping up, which says nothing about the pipeline's pace, and are not counted.
    ///
    /// Credit reaches the source in bursts (an edge re-grants it in chunks): a wait, then a
    /// run of takes. A sample is one such wait with the takes that follow it, closed when the
    /// next wait of at least [`RATE_SAMPLE`] ends (or after ten times that, for a steady drain),
    /// so the rows of a burst are set against the wait that preceded it. A sample with less
    /// than [`RATE_SAMPLE`] of waiting is dropped. The usual gap between takes is published
    /// too, so that waiting for the next burst does not read as a stall.
    fn drained(&mut self, now: Instant, taken: usize) {
        if taken > 0 {
            let waited_from = self.left_waiting.or_else(|| {
                self.intake
                    .waiting_since()
                    .filter(|&t| now.saturating_duration_since(t) >= RATE_SAMPLE)
            });
            if let Some(from) = waited_from {
                // Time already counted (up to the previous take) is not counted again.
                let from = self.last_take.map_or(from, |last| from.max(last));
                let wait = now.saturating_duration_since(from);
                if wait >= RATE_SAMPLE {
                    // A wait for credit just ended: the previous sample is complete.
                    self.close_sample(now);
                }
                self.sample.1 += taken as u64;
                self.sample.2 += wait;
                if let Some(last) = self.last_take {
                    // Remember long gaps (the credit cycle) and forget them slowly.
                    self.gap = now
                        .saturating_duration_since(last)
                        .max(self.gap.mul_f64(0.9));
                    self.intake.publish_gap(self.gap);
                }
                self.last_take = Some(now);
            }
            self.intake.room.notify_waiters();
        }
        if now.saturating_duration_since(self.sample.0) >= RATE_SAMPLE * 10 {
            // A steady drain without long waits: close samples of ten sampling periods.
            self.close_sample(now);
        }
        // Rows handed on that still wait downstream are a backlog too: the pipeline, not the
        // arrivals, sets the pace of the next take (under `Reject` they are most of it).
        let left = self.intake.backlog() > 0 || self.intake.queued_downstream() > 0;
        if left {
            self.left_waiting.get_or_insert(now);
        } else {
            self.left_waiting = None;
            self.last_take = None;
            self.intake.clear_waiting();
        }
        self.intake
            .publish_rate(self.rate.rows_per_sec(), now, left);
    }

    /// Feeds the sample to the average if it holds enough waiting, and starts the next one.
    fn close_sample(&mut self, now: Instant) {
        let (_, rows, waited) = self.sample;
        if waited >= RATE_SAMPLE && rows > 0 {
            self.rate.resume(now - waited);
            self.rate.observe(now, rows);
        }
        self.sample = (now, 0, Duration::ZERO);
    }
}

impl Source for HttpSource {
    type Output = Vec<Value>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        if info.parallelism > 1 {
            return Err(OperatorError::user(
                "an HTTP source listens on one address: run it with parallelism 1 and \
                 rebalance after it",
            ));
        }
        let _ = self.intake.counter.set(info.overflow.clone());
        let _ = self.intake.downstream.set(info.downstream.clone());
        if let Some(d) = self.durable.as_mut().filter(|_| info.checkpointing) {
            // Checkpoints release the log (`notify_checkpoint_complete`): no barriers of its
            // own, so operators that keep rows across batches may stand downstream.
            d.checkpointed = true;
            d.next_barrier = 1;
        } else if let Some(d) = &mut self.durable {
            d.barriers = info.barriers.clone();
            if d.barriers.sinks() == 0 {
                return Err(OperatorError::user(
                    "an HTTP source with durable acknowledgement must reach a sink: its log \
                     advances only when every sink it reaches has handled its rows",
                ));
            }
            let intake = Arc::clone(&self.intake);
            d.barriers.subscribe(move |id| {
                if let Some(log) = &intake.durable {
                    log.barrier_completed(id);
                }
            });
        }
        let listener = self
            .listener
            .take()
            .ok_or_else(|| OperatorError::internal("the HTTP source was opened twice"))?;
        let admission: Arc<dyn super::Admission> = self.intake.clone();
        let server = IngestServer::serve(listener, self.config.clone(), admission)
            .map_err(|e| OperatorError::external("cannot start the HTTP ingest server", e))?;
        let _ = self.handle.server.set(server.stats_fn());
        self.server = Some(server);
        Ok(())
    }

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Value>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let max = out.batch_rows();
        if let Some(d) = self.durable.as_mut().filter(|d| d.next_barrier == 0) {
            // Before any data: a pipeline that cannot pass barriers is refused at once.
            d.next_barrier = 1;
            out.barrier(d.barriers.barrier(0));
            return Poll::Ready(Ok(SourceStatus::Continue));
        }
        loop {
            if self.intake.closing.load(Relaxed) && self.shutdown.is_none() {
                if let Some(server) = self.server.take() {
                    self.shutdown = Some(Box::pin(server.shutdown()));
                }
            }
            let taken = match self.take(max, out) {
                Ok(taken) => taken,
                Err(e) => return Poll::Ready(Err(e)),
            };
            self.drained(Instant::now(), taken);
            if taken > 0 {
                self.confirm(Some(cx), out, false);
                return Poll::Ready(Ok(SourceStatus::Continue));
            }
            if let Some(shutdown) = self.shutdown.as_mut() {
                // Closing: end once the server has stopped and nothing acknowledged is left.
                if !self.shut_down {
                    if let Poll::Ready(result) = shutdown.as_mut().poll(cx) {
                        if let Err(e) = result {
                            return Poll::Ready(Err(OperatorError::internal(e.to_string())));
                        }
                        self.shut_down = true;
                    }
                }
                if self.shut_down {
                    if self.intake.backlog() == 0 && !self.replaying() {
                        // The last rows handed on are confirmed before the end.
                        self.confirm(None, out, true);
                        return Poll::Ready(Ok(SourceStatus::Done));
                    }
                    continue;
                }
            }
            if self.confirm(Some(&mut *cx), out, false) {
                return Poll::Ready(Ok(SourceStatus::Continue));
            }
            // Records may have arrived since we looked: a `notify_one` without a waiter leaves
            // a permit, which this wait consumes at once.
            let data = &self.intake.data;
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(Arc::clone(data).notified_owned()));
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
    }

    fn on_stop(&mut self) -> SourceStatus {
        self.handle.close();
        SourceStatus::Continue
    }

    /// With [`Ack::Durable`] only: its position is its place in the log.
    fn can_snapshot(&self) -> bool {
        self.durable.is_some()
    }

    /// Its [`LogPosition`] (see `source/position.rs`), kept until the checkpoint completes.
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        let at = self.log_position();
        if let Some(d) = &mut self.durable {
            d.snapshotted = at;
        }
        crate::source::encode_position(self)
    }

    /// Resumes at a [`LogPosition`] as [`HttpSource::bind_at`] does: the log's records below
    /// it were handed on before the checkpoint, which holds their effects.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let at: Option<LogPosition> = crate::source::decode_position(position)?;
        let (Some(at), Some(d), Some(log)) = (at, &mut self.durable, &self.intake.durable) else {
            return Err(OperatorError::user(
                "the checkpoint holds no log position for this HTTP source: it was taken \
                 without durable acknowledgement (Ack::Durable)",
            ));
        };
        let (committed_below, next_seq) = (log.wal().committed_below(), log.wal().next_seq());
        if !(committed_below..=next_seq).contains(&at.next_seq) {
            return Err(OperatorError::user(
                HttpSourceError::Position {
                    at: at.next_seq,
                    committed_below,
                    next_seq,
                }
                .to_string(),
            ));
        }
        // Released with the first checkpoint of this run: the log's replay, opened with
        // the source, still reads its segments.
        d.start = at.next_seq;
        d.emitted = None;
        Ok(())
    }

    /// Releases the log below the position the checkpoint holds: its segments holding only
    /// earlier records are deleted. A release that fails is logged, not fatal: the cursor
    /// stays behind and a restore resumes at the checkpoint's position anyway.
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        let Some(at) = self.durable.as_mut().and_then(|d| d.snapshotted.take()) else {
            return Ok(());
        };
        if let Err(e) = self.release_through(at) {
            tracing::error!(checkpoint, error = %e, "the ingest log could not be released by a checkpoint");
        }
        Ok(())
    }
}
