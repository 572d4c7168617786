//! Overflow policies: what a producer does with work when its consumer has no room and waiting
//! is not an option.
//!
//! weir's default is to wait: an edge without credit holds its producer back, and the pressure
//! travels upstream until a source reads more slowly ([`Overflow::Block`]). Some producers cannot
//! wait — a metrics tap that must not slow the main flow, an HTTP endpoint whose callers do not
//! read a demand signal. For them the choice is explicit, typed and counted:
//!
//! | policy | the producer... | costs | counted as |
//! |---|---|---|---|
//! | [`Block`](Overflow::Block) | waits for credit (the default) | upstream slows down; nothing is lost | — |
//! | [`DropNewest`](Overflow::DropNewest) | drops the batch that finds no room | data loss, newest first; O(1) memory | `dropped_newest` |
//! | [`DropOldest`](Overflow::DropOldest) | keeps a local queue as large as the edge, evicting its oldest batch when full | data loss, oldest first; the edge's memory a second time | `dropped_oldest` |
//! | [`Spill`](Overflow::Spill) | appends to a bounded on-disk FIFO and feeds it back, in order, as credit returns | disk I/O on the producer's task (page cache, no fsync); loss only when the disk bound is reached or a spill file is damaged | `spilled` / `unspilled`; `spill_full`, `spill_failed`, `spill_damaged_records` (+ `spill_damaged_bytes`) when lost |
//! | [`Reject`](Overflow::Reject) | (sources that answer a client) refuses with a retry hint, e.g. HTTP 429 + `Retry-After` | the client keeps the data and retries | `rejected` |
//!
//! # On an edge
//!
//! [`StreamCore::on_overflow`](crate::StreamCore::on_overflow) declares the edge to the next
//! operator *lossy*: the producer's readiness ignores it, so it never waits for that consumer.
//! Batches are the unit: a batch is sent, queued, spilled or dropped whole (counted in rows).
//! Watermarks travel in order with the data (spilled ones too) and are dropped only by
//! `DropNewest`, where a later one supersedes them. End-of-stream is never dropped: at the end the
//! producer waits until its queue or spill has drained and the end has been delivered, so a run
//! that ends normally delivers everything that was queued or spilled.
//!
//! `Spill` needs to turn batches into bytes: give the stream a [`SpillCodec`]
//! ([`StreamCore::with_spill_codec`](crate::StreamCore::with_spill_codec); [`JsonCodec`] serves
//! rows that implement serde). Each producer instance and target get their own directory under
//! `dir`, named after both operators, so a pipeline started again with the same `dir` first
//! delivers what the previous run left on disk (see [`spill`](crate::spill) for the file format,
//! checksums and torn-tail recovery). If the consumer goes away, spilled records stay on disk
//! for the next run. `Reject` is not an edge policy: an edge has no client to answer.
//!
//! # In a source
//!
//! A source that receives work it cannot push back on (an HTTP endpoint) applies the same enum to
//! its own intake and reports what it drops, spills or rejects through the
//! [`OverflowCounter`] in its [`InstanceInfo`](crate::InstanceInfo), so every choice appears in
//! the run report under its reason.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What to do with work that finds no room downstream. See the [module docs](self) for the
/// costs of each.
///
/// # Examples
///
/// ```
/// use weir_runtime::Overflow;
///
/// let policy = Overflow::Spill { dir: "/var/lib/weir/spill".into(), max_bytes: 1 << 30 };
/// assert!(policy.is_lossy_edge());
/// assert_eq!(Overflow::default(), Overflow::Block);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Wait for room: backpressure travels upstream. Nothing is lost.
    #[default]
    Block,
    /// Drop the work that finds no room (the newest), and count it.
    DropNewest,
    /// Keep a bounded queue of waiting work and drop its oldest entry to make room for new
    /// work, counting every drop.
    DropOldest,
    /// Append what finds no room to a bounded on-disk FIFO and feed it back in order when room
    /// returns. Work is dropped (and counted) only when the spill holds `max_bytes`.
    Spill {
        /// Directory of the spill files (created if missing).
        dir: PathBuf,
        /// Bound on the spill files' bytes, per producer instance and target.
        max_bytes: u64,
    },
    /// Refuse the work with a hint of when to come back (HTTP 429 + `Retry-After`). Only for
    /// sources that can answer their client.
    Reject,
}

impl Overflow {
    /// Whether this policy makes an edge lossy (the producer never waits for it): every policy
    /// but `Block` and `Reject`.
    pub fn is_lossy_edge(&self) -> bool {
        matches!(
            self,
            Overflow::DropNewest | Overflow::DropOldest | Overflow::Spill { .. }
        )
    }

    /// A short name, as used in reports and command lines (`block`, `drop-newest`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropNewest => "drop-newest",
            Overflow::DropOldest => "drop-oldest",
            Overflow::Spill { .. } => "spill",
            Overflow::Reject => "reject",
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overflow::Spill { dir, max_bytes } => {
                write!(f, "spill to {} (at most {max_bytes} bytes)", dir.display())
            }
            other => f.write_str(other.name()),
        }
    }
}

/// Why work was not passed on as it arrived; every such event is counted, in rows, under one of
/// these reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverflowReason {
    /// Dropped because it found no room ([`Overflow::DropNewest`]).
    DroppedNewest,
    /// Evicted from a full queue by newer work ([`Overflow::DropOldest`]).
    DroppedOldest,
    /// Written to a spill (not lost; it is fed back later).
    Spilled,
    /// Read back from a spill and passed on.
    Unspilled,
    /// Dropped because the spill held its `max_bytes`.
    SpillFull,
    /// Dropped because the spill could not be written or read back (I/O error, undecodable
    /// record; an undecodable record counts as one row, its size being unknown).
    SpillFailed,
    /// Lost to damage found in a spill file: counted in spilled records (one per batch, its
    /// rows being unknown), by the gap in their sequence numbers (see [`spill`](crate::spill)).
    /// The damaged bytes are counted beside, in `spill_damaged_bytes`.
    SpillDamaged,
    /// Refused to a client with a retry hint ([`Overflow::Reject`]); the client keeps it.
    Rejected,
    /// A dead letter (a malformed input, not a row) that found its queue full and was not
    /// stored; the input's sender was told (an HTTP reply lists the line), but the dead-letter
    /// port never saw it. Not a row of the stream, so not counted as lost rows.
    DeadLetterNotStored,
}

impl OverflowReason {
    /// Every reason, in report order.
    pub const ALL: [OverflowReason; 9] = [
        OverflowReason::DroppedNewest,
        OverflowReason::DroppedOldest,
        OverflowReason::Spilled,
        OverflowReason::Unspilled,
        OverflowReason::SpillFull,
        OverflowReason::SpillFailed,
        OverflowReason::SpillDamaged,
        OverflowReason::Rejected,
        OverflowReason::DeadLetterNotStored,
    ];

    /// Whether rows counted under this reason were lost to the pipeline (dropped or refused).
    pub fn is_loss(self) -> bool {
        !matches!(
            self,
            OverflowReason::Spilled
                | OverflowReason::Unspilled
                | OverflowReason::DeadLetterNotStored
        )
    }
}

/// Rows an instance dropped, spilled or rejected under an overflow policy, by reason (see
/// [`Overflow`]).
#[derive(Debug, Default)]
pub struct OverflowCounts {
    /// Rows dropped because they found no room.
    pub dropped_newest: AtomicU64,
    /// Rows evicted from a full queue by newer ones.
    pub dropped_oldest: AtomicU64,
    /// Rows written to a spill.
    pub spilled: AtomicU64,
    /// Rows read back from a spill and sent on.
    pub unspilled: AtomicU64,
    /// Rows dropped because the spill was full.
    pub spill_full: AtomicU64,
    /// Rows dropped because the spill could not be written or read back.
    pub spill_failed: AtomicU64,
    /// Spilled records lost to damage in a spill file.
    pub spill_damaged_records: AtomicU64,
    /// Bytes of spill files skipped as damaged (not a reason: counted beside the records).
    pub spill_damaged_bytes: AtomicU64,
    /// Rows refused to a client with a retry hint.
    pub rejected: AtomicU64,
    /// Dead letters not stored because their queue was full.
    pub dead_letters_not_stored: AtomicU64,
}

impl OverflowCounts {
    /// The counter of `reason`.
    pub fn slot(&self, reason: OverflowReason) -> &AtomicU64 {
        match reason {
            OverflowReason::DroppedNewest => &self.dropped_newest,
            OverflowReason::DroppedOldest => &self.dropped_oldest,
            OverflowReason::Spilled => &self.spilled,
            OverflowReason::Unspilled => &self.unspilled,
            OverflowReason::SpillFull => &self.spill_full,
            OverflowReason::SpillFailed => &self.spill_failed,
            OverflowReason::SpillDamaged => &self.spill_damaged_records,
            OverflowReason::Rejected => &self.rejected,
            OverflowReason::DeadLetterNotStored => &self.dead_letters_not_stored,
        }
    }
}

/// A handle on one instance's overflow counters, to count what it drops, spills or rejects from
/// any thread (an HTTP server task, say). Cheap to clone.
///
/// # Examples
///
/// ```
/// use weir_runtime::{OverflowCounter, OverflowReason};
///
/// let counter = OverflowCounter::detached();
/// counter.add(OverflowReason::Rejected, 3);
/// assert_eq!(counter.get(OverflowReason::Rejected), 3);
/// ```
#[derive(Clone)]
pub struct OverflowCounter(Arc<OverflowCounts>);

impl OverflowCounter {
    /// A handle on `counts` (an instance's, which the run report reads).
    pub(crate) fn new(counts: Arc<OverflowCounts>) -> Self {
        Self(counts)
    }

    /// A counter attached to no run, for operators used outside a pipeline (tests).
    pub fn detached() -> Self {
        Self(Arc::default())
    }

    /// Counts `rows` under `reason`.
    pub fn add(&self, reason: OverflowReason, rows: u64) {
        if rows > 0 {
            self.0.slot(reason).fetch_add(rows, Relaxed);
        }
    }

    /// The rows counted under `reason` so far.
    pub fn get(&self, reason: OverflowReason) -> u64 {
        self.0.slot(reason).load(Relaxed)
    }

    /// Counts `bytes` of a spill file skipped as damaged (beside the records counted under
    /// [`OverflowReason::SpillDamaged`]).
    pub fn add_spill_damaged_bytes(&self, bytes: u64) {
        if bytes > 0 {
            self.0.spill_damaged_bytes.fetch_add(bytes, Relaxed);
        }
    }
}

impl fmt::Debug for OverflowCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OverflowCounter");
        for reason in OverflowReason::ALL {
            d.field(&format!("{reason:?}"), &self.get(reason));
        }
        d.finish()
    }
}

/// The error of a [`SpillCodec`].
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

/// Turns batches into bytes and back, for [`Overflow::Spill`].
///
/// `decode(encode(b))` must give back a batch equal to `b`.
pub trait SpillCodec<B>: Send + Sync + 'static {
    /// Appends the encoding of `batch` to `out`.
    ///
    /// # Errors
    ///
    /// The batch cannot be encoded; it is dropped and counted as `spill_failed`.
    fn encode(&self, batch: &B, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a batch that `encode` wrote.
    ///
    /// # Errors
    ///
    /// The bytes are not an encoding of a batch; the record is dropped and counted as
    /// `spill_failed`.
    fn decode(&self, bytes: &[u8]) -> Result<B, CodecError>;
}

/// A [`SpillCodec`] for typed rows that implement serde: a batch is one JSON array.
///
/// JSON is chosen for being readable with any tool when a spill must be inspected by hand; it is
/// not the most compact encoding. Implement [`SpillCodec`] for anything faster.
///
/// # Examples
///
/// ```
/// use weir_runtime::{JsonCodec, SpillCodec};
///
/// let mut bytes = Vec::new();
/// JsonCodec.encode(&vec![1u32, 2, 3], &mut bytes).unwrap();
/// assert_eq!(bytes, b"[1,2,3]");
/// let back: Vec<u32> = JsonCodec.decode(&bytes).unwrap();
/// assert_eq!(back, vec![1, 2, 3]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl<T> SpillCodec<Vec<T>> for JsonCodec
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn encode(&self, batch: &Vec<T>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, batch).map_err(Into::into)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<T>, CodecError> {
        serde_json::from_slice(bytes).map_err(Into::into)
    }
}
