//! The hand-off between the HTTP server's tasks and the source: the [`Admission`] side.
//!
//! ```text
//!   server tasks (offer)                       source task (poll_produce, when credit reaches it)
//!   ─────────────────────                      ─────────────────────────────────────────────────
//!   hand-off has room? ── push ─► [bounded hand-off, `capacity` records] ──► take ≤ batch_rows
//!          │ no                                                               │ then, if spilled:
//!          ├─ Reject:     429 + Retry-After(backlog / drain rate)             ▼
//!          ├─ Block:      wait on `room` (≤ block_timeout), else 503   [spill FIFO on disk] ──► take
//!          ├─ DropNewest: drop, count, 503 + Retry-After(backlog / drain rate)
//!          └─ Spill:      append to the spill (acknowledged); full → 429
//! ```
//!
//! The hand-off is the admission limit: records are acknowledged (`202`) only once they are in
//! it (or in the spill), and the source drains it only when the pipeline has credit.
//!
//! It is bounded twice: at most `capacity` records (the channel's bound) and at most
//! `max_bytes` of records, each counted at its deep size ([`value_bytes`]: the `Value` and the
//! heap it owns). A request reserves a record's bytes in `held_bytes` with a compare-and-swap
//! before sending it (so concurrent requests never overshoot together), gives them back if the
//! channel is full, and the source gives them back when it takes the record. A record larger
//! than the whole byte bound is taken only into an empty hand-off, so it cannot be refused
//! forever; the hand-off then holds that one record. `peak_held_bytes` records the most held.
//!
//! Dead letters (malformed lines, kept with their raw text until the source runs) are bounded
//! the same way, by `dead_letter_capacity` and `dead_letter_max_bytes` (reason and raw line);
//! one that finds no room is counted as [`OverflowReason::DeadLetterNotStored`], never as a
//! dropped row (the client's reply lists the line either way). Under
//! `Spill`, once the spill holds anything every new record goes behind it (both decisions are
//! taken under the spill's lock), and the source always empties the hand-off before it reads the
//! spill, so records leave in the order they were acknowledged.
//!
//! The drain rate is measured by the source (rows taken per second while a backlog waited, an
//! EWMA) and published in two atomics; a request that finds no room reads it, decayed for the
//! time the source has not drained while records waited, and answers with
//! `retry_after_for(backlog, rate)`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::Value;
use tokio::sync::Notify;
use weir_runtime::spill::{SpillError, SpillQueue};
use weir_runtime::{DeadLetter, DownstreamProbe, OverflowCounter, OverflowReason};

use super::durable::DurableLog;
use crate::connector::http::ingest::Settle;
use crate::connector::http::{Admission, LineError, Rest};
use crate::overload::retry_after::retry_after_for;

/// How the intake treats records that find no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Block(Duration),
    Reject,
    DropNewest,
    Spill,
}

/// An item in a bounded queue, with the bytes it was counted at.
struct Held<T> {
    item: T,
    bytes: u64,
    /// Its sequence number in the durable log (0 without one).
    seq: u64,
}

/// A byte bound shared by concurrent producers: bytes are reserved before an item is queued
/// and given back when it leaves. An item larger than the whole bound fits only into an empty
/// queue, so it is never refused forever.
struct Budget {
    max: u64,
    held: AtomicU64,
    peak: AtomicU64,
}

impl Budget {
    fn new(max: usize) -> Self {
        Self {
            max: max as u64,
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    fn reserve(&self, bytes: u64) -> bool {
        let reserved = self.held.fetch_update(Relaxed, Relaxed, |held| {
            (held == 0 || held.saturating_add(bytes) <= self.max).then(|| held + bytes)
        });
        match reserved {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Relaxed);
    }
}

pub(crate) struct Intake {
    pub(crate) mode: Mode,
    tx: Sender<Held<Value>>,
    rx: Receiver<Held<Value>>,
    /// The hand-off's byte bound and the bytes its records hold.
    bytes: Budget,
    pub(crate) spill: Option<Mutex<SpillQueue>>,
    /// The write-ahead log, with durable acknowledgement.
    pub(crate) durable: Option<DurableLog>,
    /// Records waiting in the spill (kept beside it, so requests read it without the lock).
    pub(crate) spilled: AtomicU64,
    /// The spill could not be read back and was given up.
    pub(crate) spill_broken: AtomicBool,
    dead_tx: Sender<Held<DeadLetter>>,
    dead_rx: Receiver<Held<DeadLetter>>,
    /// The dead letters' byte bound and the bytes they hold.
    dead_bytes: Budget,
    /// Notified when records arrive (the source waits on it).
    pub(crate) data: Arc<Notify>,
    /// Notified when the source took records (blocked requests wait on it).
    pub(crate) room: Notify,
    pub(crate) closing: AtomicBool,
    /// Where drops, spills and rejections are counted; set when the pipeline opens the source.
    pub(crate) counter: OnceLock<OverflowCounter>,
    /// The pipeline's edges downstream of the source; set when the pipeline opens the source.
    pub(crate) downstream: OnceLock<DownstreamProbe>,
    // The drain rate as the source last measured it.
    base: Instant,
    half_life: Duration,
    rate_bits: AtomicU64,
    rate_at_ns: AtomicU64,
    backlog_left: AtomicBool,
    /// The usual time between two drains while records waited (credit returns in bursts).
    usual_gap_ns: AtomicU64,
    /// Since when records have waited in the hand-off (nanoseconds after `base`, plus one; 0:
    /// none waits). Set by the first offer into an empty hand-off, cleared by the source.
    waiting_since_ns: AtomicU64,
    retry_min: Duration,
    retry_max: Duration,
    pub(crate) last_hint_ms: AtomicU64,
}

/// The settings an intake needs.
pub(crate) struct IntakeConfig {
    pub(crate) mode: Mode,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
    pub(crate) dead_letter_capacity: usize,
    pub(crate) dead_letter_max_bytes: usize,
    pub(crate) spill: Option<SpillQueue>,
    pub(crate) durable: Option<DurableLog>,
    pub(crate) half_life: Duration,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
}

impl Intake {
    pub(crate) fn new(config: IntakeConfig) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(config.capacity.max(1));
        let (dead_tx, dead_rx) = crossbeam_channel::bounded(config.dead_letter_capacity.max(1));
        let spilled = config.spill.as_ref().map_or(0, SpillQueue::len);
        Self {
            mode: config.mode,
            tx,
            rx,
            bytes: Budget::new(config.max_bytes),
            spill: config.spill.map(Mutex::new),
            durable: config.durable,
            spilled: AtomicU64::new(spilled),
            spill_broken: AtomicBool::new(false),
            dead_tx,
            dead_rx,
            dead_bytes: Budget::new(config.dead_letter_max_bytes),
            data: Arc::new(Notify::new()),
            room: Notify::new(),
            closing: AtomicBool::new(false),
            counter: OnceLock::new(),
            downstream: OnceLock::new(),
            base: Instant::now(),
            half_life: config.half_life,
            rate_bits: AtomicU64::new(f64::NAN.to_bits()),
            rate_at_ns: AtomicU64::new(0),
            backlog_left: AtomicBool::new(false),
            usual_gap_ns: AtomicU64::new(0),
            waiting_since_ns: AtomicU64::new(0),
            retry_min: config.retry_min,
            retry_max: config.retry_max,
            last_hint_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn count(&self, reason: OverflowReason, rows: usize) {
        if let Some(c) = self.counter.get() {
            c.add(reason, rows as u64);
        }
    }

    /// Counts records and bytes lost to damage on disk (the spill's or the log's).
    pub(crate) fn count_damaged(&self, records: u64, bytes: u64) {
        self.count(OverflowReason::SpillDamaged, records as usize);
        if let Some(c) = self.counter.get() {
            c.add_spill_damaged_bytes(bytes);
        }
    }

    /// Records waiting: in the hand-off and in the spill.
    pub(crate) fn backlog(&self) -> u64 {
        self.rx.len() as u64 + self.spilled.load(Relaxed)
    }

    /// Bytes the hand-off's records hold now (deep size).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.bytes.held.load(Relaxed)
    }

    /// The most bytes the hand-off's records held at once.
    pub(crate) fn peak_held_bytes(&self) -> u64 {
        self.bytes.peak.load(Relaxed)
    }

    /// The most bytes the waiting dead letters held at once.
    pub(crate) fn peak_dead_letter_bytes(&self) -> u64 {
        self.dead_bytes.peak.load(Relaxed)
    }

    /// Takes the oldest record of the hand-off and gives its bytes back; returns it with its
    /// size.
    /// Its sequence number in the durable log comes third (0 without one).
    pub(crate) fn take_one(&self) -> Option<(Value, u64, u64)> {
        let held = self.rx.try_recv().ok()?;
        self.bytes.release(held.bytes);
        Some((held.item, held.bytes, held.seq))
    }

    /// Takes the oldest waiting dead letter and gives its bytes back.
    pub(crate) fn take_dead_letter(&self) -> Option<DeadLetter> {
        let held = self.dead_rx.try_recv().ok()?;
        self.dead_bytes.release(held.bytes);
        Some(held.item)
    }

    /// Rows the source already handed on that wait in the pipeline's edges downstream of it:
    /// accepted work not yet done, so part of the backlog a client is told to wait for.
    pub(crate) fn queued_downstream(&self) -> u64 {
        self.downstream.get().map_or(0, |p| p.queued().rows)
    }

    /// Publishes the drain rate measured at `at`, and whether records were left waiting.
    pub(crate) fn publish_rate(&self, rate: Option<f64>, at: Instant, backlog_left: bool) {
        self.rate_bits
            .store(rate.unwrap_or(f64::NAN).to_bits(), Relaxed);
        let ns = u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(0);
        self.rate_at_ns.store(ns, Relaxed);
        self.backlog_left.store(backlog_left, Relaxed);
    }

    /// Publishes the usual time between two drains while records waited: credit reaches the
    /// source in bursts (an edge re-grants it in chunks), so a wait that long is not a stall.
    pub(crate) fn publish_gap(&self, gap: Duration) {
        self.usual_gap_ns
            .store(u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The drain rate now: the published one, decayed for the time records have waited since
    /// without the source draining any, beyond twice the usual gap between drains (a stalled
    /// pipeline drains at a falling rate; one whose credit returns in bursts does not).
    pub(crate) fn drain_rate(&self) -> Option<f64> {
        self.drain_rate_at(Instant::now())
    }

    fn drain_rate_at(&self, now: Instant) -> Option<f64> {
        let rate = f64::from_bits(self.rate_bits.load(Relaxed));
        if rate.is_nan() {
            return None;
        }
        if !self.backlog_left.load(Relaxed) || self.half_life.is_zero() {
            return Some(rate);
        }
        let at = self.base + Duration::from_nanos(self.rate_at_ns.load(Relaxed));
        let usual = Duration::from_nanos(self.usual_gap_ns.load(Relaxed));
        let stalled = now
            .saturating_duration_since(at)
            .saturating_sub(usual.saturating_mul(2));
        Some(rate * (-(stalled.as_secs_f64() / self.half_life.as_secs_f64())).exp2())
    }

    /// When to come back: the time to drain the backlog at the measured rate.
    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after_at(Instant::now())
    }

    pub(crate) fn retry_after_at(&self, now: Instant) -> Duration {
        let hint = retry_after_for(
            self.backlog() + self.queued_downstream(),
            self.drain_rate_at(now),
            self.retry_min,
            self.retry_max,
        );
        self.last_hint_ms
            .store(u64::try_from(hint.as_millis()).unwrap_or(u64::MAX), Relaxed);
        hint
    }

    /// Moves records into the hand-off while it has room, in records and in bytes. Under
    /// `Reject`, the rows already queued downstream count against its capacity: what is accepted
    /// and not yet done stays within it, so the pipeline's own queues do not hide a backlog.
    fn fill(&self, records: &mut VecDeque<Value>) -> usize {
        match &self.durable {
            Some(log) => {
                // Appends and sends in one order: the hand-off holds records by sequence.
                let _order = log.order.lock().unwrap_or_else(|p| p.into_inner());
                self.fill_logged(records, Some(log))
            }
            None => self.fill_logged(records, None),
        }
    }

    /// [`fill`](Self::fill), appending each record to `log` (when given) before it enters the
    /// hand-off; stops at the first record the log refuses.
    fn fill_logged(&self, records: &mut VecDeque<Value>, log: Option<&DurableLog>) -> usize {
        let mut taken = 0;
        let mut room = match (self.mode, self.tx.capacity()) {
            (Mode::Reject, Some(cap)) => {
                let queued = self.rx.len() as u64 + self.queued_downstream();
                usize::try_from((cap as u64).saturating_sub(queued)).unwrap_or(usize::MAX)
            }
            _ => usize::MAX,
        };
        while room > 0 {
            let Some(record) = records.pop_front() else {
                break;
            };
            let bytes = value_bytes(&record) as u64;
            if !self.bytes.reserve(bytes) {
                records.push_front(record);
                break;
            }
            let mut seq = 0;
            if let Some(log) = log {
                // Only requests send, one at a time under `order`: a hand-off with a free slot
                // now still has it after the append.
                if self.tx.is_full() || log.broken.load(Relaxed) {
                    self.bytes.release(bytes);
                    records.push_front(record);
                    break;
                }
                // A `Value` always serialises.
                let line = serde_json::to_vec(&record).unwrap_or_default();
                match log.wal().append(&line) {
                    Ok(s) => seq = s,
                    Err(e) => {
                        if !matches!(
                            e,
                            SpillError::Full { .. } | SpillError::RecordTooLarge { .. }
                        ) {
                            // Full waits for commits to free segments; anything else gives up.
                            tracing::error!(error = %e, "the ingest log could not be written; refusing records");
                            log.broken.store(true, Relaxed);
                        }
                        self.bytes.release(bytes);
                        records.push_front(record);
                        break;
                    }
                }
            }
            room -= 1;
            match self.tx.try_send(Held {
                item: record,
                bytes,
                seq,
            }) {
                Ok(()) => taken += 1,
                Err(TrySendError::Full(held) | TrySendError::Disconnected(held)) => {
                    self.bytes.release(bytes);
                    records.push_front(held.item);
                    break;
                }
            }
        }
        if taken > 0 {
            let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            // Only the first offer into an empty hand-off starts the wait.
            let _ = self
                .waiting_since_ns
                .compare_exchange(0, ns + 1, Relaxed, Relaxed);
        }
        taken
    }

    /// Since when records have waited in the hand-off, if any do.
    pub(crate) fn waiting_since(&self) -> Option<Instant> {
        match self.waiting_since_ns.load(Relaxed) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        }
    }

    /// The source found the hand-off empty: no record waits any more.
    pub(crate) fn clear_waiting(&self) {
        self.waiting_since_ns.store(0, Relaxed);
    }

    /// Appends records to the spill while it has room; returns how many.
    fn spill_records(&self, spill: &mut SpillQueue, records: &mut VecDeque<Value>) -> usize {
        let mut spilled = 0;
        while let Some(record) = records.front() {
            let bytes = match serde_json::to_vec(record) {
                Ok(bytes) => bytes,
                // A `Value` always serialises; keep the record with the client if not.
                Err(_) => break,
            };
            match spill.push(&bytes) {
                Ok(()) => {
                    records.pop_front();
                    spilled += 1;
                }
                Err(SpillError::Full { .. } | SpillError::RecordTooLarge { .. }) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the ingest spill could not be written");
                    break;
                }
            }
        }
        self.spilled.fetch_add(spilled as u64, Relaxed);
        spilled
    }
}

impl Admission for Intake {
    fn offer(&self, records: &mut VecDeque<Value>) -> Rest {
        if self.closing.load(Relaxed) {
            return Rest::Unavailable(Some(self.retry_after()));
        }
        let taken = match (self.mode, &self.spill) {
            (Mode::Spill, Some(spill)) if !self.spill_broken.load(Relaxed) => {
                let mut spill = spill.lock().unwrap_or_else(|p| p.into_inner());
                // Nothing may overtake what is already spilled.
                let direct = if spill.is_empty() {
                    self.fill(records)
                } else {
                    0
                };
                let spilled = self.spill_records(&mut spill, records);
                self.count(OverflowReason::Spilled, spilled);
                direct + spilled
            }
            _ => self.fill(records),
        };
        if taken > 0 {
            self.data.notify_one();
        }
        if self
            .durable
            .as_ref()
            .is_some_and(|l| l.broken.load(Relaxed))
        {
            return Rest::Unavailable(Some(self.retry_after()));
        }
        match self.mode {
            Mode::Reject | Mode::Spill => Rest::Deferred(Some(self.retry_after())),
            Mode::Block(_) => Rest::Unavailable(Some(self.retry_after())),
            Mode::DropNewest => Rest::Dropped(Some(self.retry_after())),
        }
    }

    fn dead_letter(&self, line: usize, error: &LineError, raw: &str) {
        let reason = error.to_string();
        let bytes = (std::mem::size_of::<DeadLetter>() + reason.len() + raw.len()) as u64;
        let stored = self.dead_bytes.reserve(bytes) && {
            let letter = DeadLetter::new(reason, raw).at_line(line as u64);
            let sent = self.dead_tx.try_send(Held {
                item: letter,
                bytes,
                seq: 0,
            });
            if sent.is_err() {
                self.dead_bytes.release(bytes);
            }
            sent.is_ok()
        };
        if !stored {
            // The client is told about the line in the reply; the pipeline only counts it,
            // as a dead letter (not a row) it had no room to keep.
            self.count(OverflowReason::DeadLetterNotStored, 1);
        }
    }

    fn refused(&self, records: usize, rest: &Rest) {
        match rest {
            Rest::Dropped(_) => self.count(OverflowReason::DroppedNewest, records),
            Rest::Deferred(_) | Rest::Unavailable(_) => {
                self.count(OverflowReason::Rejected, records);
            }
        }
    }

    fn settle(&self) -> Option<Settle> {
        self.durable.as_ref()?.settle()
    }

    fn room(&self) -> Option<(&Notify, Duration)> {
        match self.mode {
            Mode::Block(timeout) if !self.closing.load(Relaxed) => Some((&self.room, timeout)),
            _ => None,
        }
    }
}

/// The bytes a JSON value holds: the `Value` itself and the heap it owns (string and vector
/// capacities, map entries with their keys). Map nodes' own overhead is not counted; a
/// number is held inline.
pub(crate) fn value_bytes(value: &Value) -> usize {
    std::mem::size_of::<Value>() + owned_bytes(value)
}

fn owned_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * std::mem::size_of::<Value>()
                + items.iter().map(owned_bytes).sum::<usize>()
        }
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| std::mem::size_of::<String>() + key.capacity() + value_bytes(item))
            .sum(),
    }
}
