//! Edges: bounded, credit-based channels between operator instances.
//!
//! An edge is created as a pair `(Outlet, Inlet)` by [`edge`]. It holds at most
//! [`EdgeConfig::capacity`] messages and at most [`EdgeConfig::max_bytes`] bytes of data.
//!
//! # The demand protocol
//!
//! ```text
//!   producer (Outlet)                          consumer (Inlet)
//!   ------------------                         ----------------
//!   poll_ready / poll_reserve(bytes)  <-- credit ---  grant(): freed slots handed back in chunks
//!   Permit::send(msg) / try_send(msg) --- data -->    poll_recv / try_recv
//!   drop: tx_closed, wake consumer                    drop: rx_closed, wake producer
//! ```
//!
//! - **Credit is a value.** The consumer grants slots (`request(n)` in Reactive Streams terms); the
//!   producer obtains a [`Permit`] before it sends, and sending without one is impossible through
//!   this API. Invariant: `buffered + outstanding_credit <= capacity`.
//! - **Chunked re-grant.** The consumer hands freed slots back once [`EdgeConfig::grant_chunk`] of
//!   them have accumulated, and always before it parks on an empty edge, so a trickle never stalls
//!   and a busy edge does not pay a wake-up per batch.
//! - **Credit limit.** The consumer grants only while `buffered + outstanding_credit` is below
//!   its credit limit ([`Inlet::set_credit_limit`]), between [`MIN_CREDIT_LIMIT`] (so the
//!   producer can still write one message while the consumer reads another) and the capacity;
//!   the byte bound applies as always. The executor sizes it by time (see `channel/debloat.rs`); by
//!   default it is the capacity. Lowering it takes no credit back (credit is exact, see
//!   `raw/ring.rs`): re-grants are only withheld until occupancy falls below it. Raising it
//!   grants the difference at once, with the wake-up handshake below. The re-grant chunk shrinks
//!   with it (at most half the limit), so a small limit still pipelines.
//! - **Bytes.** A message is admitted if the bytes already buffered plus its own stay within
//!   `max_bytes`, *or* the edge holds no data bytes at all; so an oversize batch never deadlocks and
//!   an edge never holds more than `max(max_bytes, one batch)`. A message's bytes are its deep
//!   size ([`Batch::bytes`]), measured once when it is sent and stored in its slot, so the bytes
//!   a receive frees are exactly the bytes its send took, and a batch of heap-owning rows is
//!   walked once per hop, not at every count.
//! - **Cancellation.** Dropping the [`Inlet`] closes the edge for the producer: reservations fail
//!   with [`Closed`] and sends hand the message back. Dropping the [`Outlet`] without sending
//!   [`Message::End`] is an abort, which the consumer sees as [`TryRecvError::Disconnected`].
//!
//! # Wake-ups
//!
//! Each side parks on its own atomic waker. The producer parks for one of two reasons (no slot
//! credit, or no byte room), recorded in `tx_waiting`. The consumer wakes it when it grants a chunk
//! (any reason), and before it parks on an empty edge; after a receive that freed bytes it also
//! wakes it on a fence-free hint, so byte room is usually seen at once. The flag and the conditions it
//! guards form a Dekker-style handshake: the producer stores its reason, issues a `SeqCst` fence,
//! then re-reads the condition; the consumer changes the condition, issues a `SeqCst` fence, then
//! reads the reason. The fences order the two store→load pairs, so at least one side sees the
//! other's store and no wake-up is lost. (Fences rather than `SeqCst` accesses: that is also the
//! form loom models exactly.) The consumer parks only on an empty edge, after granting
//! everything.
//!
//! The consumer is woken only when it is actually parked, by the same handshake: before it
//! parks it sets `rx_parked`, issues a `SeqCst` fence and looks at the ring once more; after a
//! send (or, with [deferred wakes](Outlet::set_deferred_wakes), once per turn of sends) the
//! producer issues a `SeqCst` fence and reads `rx_parked`, and only if it is set clears it
//! (`swap`) and fires the waker. A running consumer therefore costs its producer one fence and
//! one load per wake point instead of two read-modify-writes on the waker's state, and a parked
//! one is woken once however many messages arrive before it runs (the `swap` coalesces them).
//!
//! # The return path
//!
//! Beside the data ring, every edge has a second, smaller protocol running the other way: a ring
//! of *spare* buffers from the consumer back to the producer ([`Inlet::recycle`],
//! [`Outlet::take_spare`]). A consumer done with a batch empties it ([`Batch::recycle`]) and
//! hands it back; the producer fills it instead of allocating. It is the same lock-free ring as
//! the data's, with `capacity` slots, but it never waits and never wakes anybody: a spare that
//! finds it full is dropped (freed), and a producer that finds it empty allocates. Spares are
//! empty, so they count nothing against the byte bound; their memory is bounded apart: at most
//! `capacity` of them, each of at most `max_bytes / capacity` bytes (a larger one is freed), so
//! the spares of an edge never hold more than its byte bound.
//!
//! Model tests with loom live in `loom_tests` (run with `RUSTFLAGS="--cfg loom" cargo test
//! -p weir-runtime --release --lib channel::loom_tests`).

mod blocking;
pub(crate) mod debloat;
mod error;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use error::{Closed, TryRecvError, TryReserveError, TrySendError};

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::task::{Context, Poll};

use crate::batch::{Batch, Message};
use crate::loom::{fence, AtomicBool, AtomicU8, AtomicUsize};
use crate::raw::ring::{ring, Inner, RingRx, RingTx};
use crate::raw::waker::AtomicWaker;

/// Sizing of one edge.
///
/// # Examples
///
/// ```
/// use weir_runtime::EdgeConfig;
///
/// let cfg = EdgeConfig::default().with_capacity(4).with_max_bytes(64 * 1024);
/// assert_eq!(cfg.capacity, 4);
/// assert_eq!(cfg.effective_grant_chunk(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EdgeConfig {
    /// Messages the edge can hold (data batches and control markers).
    pub capacity: usize,
    /// Data bytes the edge can hold (one oversize batch is admitted into an empty edge).
    pub max_bytes: usize,
    /// Freed slots the consumer accumulates before re-granting them; `0` means `capacity / 2`.
    pub grant_chunk: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            capacity: 16,
            max_bytes: 4 << 20,
            grant_chunk: 0,
        }
    }
}

impl EdgeConfig {
    /// The largest capacity an edge may have: its slots are allocated when it is created.
    pub const MAX_CAPACITY: usize = 1 << 20;

    /// Sets [`capacity`](Self::capacity).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`grant_chunk`](Self::grant_chunk).
    pub fn with_grant_chunk(mut self, chunk: usize) -> Self {
        self.grant_chunk = chunk;
        self
    }

    /// The re-grant chunk actually used: at least one slot, at most the capacity.
    pub fn effective_grant_chunk(&self) -> usize {
        let chunk = if self.grant_chunk == 0 {
            self.capacity / 2
        } else {
            self.grant_chunk
        };
        chunk.clamp(1, self.capacity.max(1))
    }

    /// Checks the configuration, naming the offending field.
    ///
    /// # Errors
    ///
    /// A zero capacity or zero byte bound, or a capacity above [`Self::MAX_CAPACITY`].
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 {
            return Err("edge capacity must be at least 1 message".into());
        }
        if self.capacity > Self::MAX_CAPACITY {
            return Err(format!(
                "edge capacity {} exceeds the limit of {} messages (slots are allocated up front; \
                 bound memory with max_bytes instead)",
                self.capacity,
                Self::MAX_CAPACITY
            ));
        }
        if self.max_bytes == 0 {
            return Err("edge max_bytes must be at least 1 byte".into());
        }
        Ok(())
    }
}

/// The lowest credit limit an edge is given ([`Inlet::set_credit_limit`]), capacity permitting:
/// two slots, so the producer can write one message while the consumer works on another.
pub const MIN_CREDIT_LIMIT: usize = 2;

const WAIT_NONE: u8 = 0;
const WAIT_SLOT: u8 = 1;
const WAIT_BYTES: u8 = 2;

/// The channel layer's shared state, stored beside the ring.
pub(crate) struct EdgeShared {
    capacity: usize,
    max_bytes: usize,
    /// Data bytes ever sent / received: single writer each (producer / consumer), so plain
    /// stores; what the edge holds is their difference.
    bytes_sent: AtomicUsize,
    bytes_received: AtomicUsize,
    peak_bytes: AtomicUsize,
    tx_waiting: AtomicU8,
    /// The consumer is about to park (or parked) on an empty edge: the producer wakes it.
    rx_parked: AtomicBool,
    tx_closed: AtomicBool,
    rx_closed: AtomicBool,
    tx_waker: AtomicWaker,
    rx_waker: AtomicWaker,
    /// Rows ever pushed / popped; single writer each, so plain stores. Their difference once
    /// both sides are gone is exactly the rows that were never delivered.
    rows_pushed: AtomicUsize,
    rows_popped: AtomicUsize,
    /// The consumer's credit limit, published for observers (the consumer's own copy rules).
    credit_limit: AtomicUsize,
    /// The producer never waits for this edge (a lossy edge): its credit stays whole.
    fixed_credit: AtomicBool,
    /// Whether the producer notes when it wakes a parked consumer (the edge is sized by time).
    /// Advisory, like the stamp: no synchronization rests on either, so plain `std` atomics.
    stamp_wakes: std::sync::atomic::AtomicBool,
    /// When the producer last woke the parked consumer ([`debloat::clock_ns`]); 0 once the
    /// consumer took it.
    rx_woken_ns: std::sync::atomic::AtomicU64,
}

/// The return path's ring: spare buffers from the consumer to the producer.
type Spares<B> = (RingTx<B, ()>, RingRx<B, ()>);

/// A slot holds a message and the bytes it was counted as when sent.
type Slot<B> = (Message<B>, usize);

type Shared<B> = Inner<Slot<B>, EdgeShared>;

impl EdgeShared {
    /// Bytes held now, as an observer sees it (received is read first, so it never exceeds sent).
    fn buffered_bytes(&self) -> usize {
        let received = self.bytes_received.load(Acquire);
        self.bytes_sent.load(Acquire).saturating_sub(received)
    }
}

/// Creates a bounded edge.
///
/// # Panics
///
/// Panics if the configuration is invalid ([`EdgeConfig::validate`]); graph construction
/// validates edge configurations before any edge is built.
///
/// # Examples
///
/// ```
/// use weir_runtime::{edge, EdgeConfig, Message};
///
/// let (mut tx, mut rx) = edge::<Vec<u32>>(EdgeConfig::default().with_capacity(2));
/// tx.try_send(Message::Data(vec![1, 2, 3])).unwrap();
/// assert_eq!(rx.try_recv().unwrap(), Message::Data(vec![1, 2, 3]));
/// ```
pub fn edge<B: Batch>(config: EdgeConfig) -> (Outlet<B>, Inlet<B>) {
    if let Err(e) = config.validate() {
        panic!("invalid edge configuration: {e}");
    }
    let shared = EdgeShared {
        capacity: config.capacity,
        max_bytes: config.max_bytes,
        bytes_sent: AtomicUsize::new(0),
        bytes_received: AtomicUsize::new(0),
        peak_bytes: AtomicUsize::new(0),
        tx_waiting: AtomicU8::new(WAIT_NONE),
        rx_parked: AtomicBool::new(false),
        tx_closed: AtomicBool::new(false),
        rx_closed: AtomicBool::new(false),
        tx_waker: AtomicWaker::new(),
        rx_waker: AtomicWaker::new(),
        rows_pushed: AtomicUsize::new(0),
        rows_popped: AtomicUsize::new(0),
        credit_limit: AtomicUsize::new(config.capacity),
        fixed_credit: AtomicBool::new(false),
        stamp_wakes: std::sync::atomic::AtomicBool::new(false),
        rx_woken_ns: std::sync::atomic::AtomicU64::new(0),
    };
    let (tx, rx) = ring(config.capacity, shared);
    let (spare_tx, spare_rx): Spares<B> = ring(config.capacity, ());
    (
        Outlet {
            ring: tx,
            spares: spare_rx,
            peak: 0,
            rows: 0,
            bytes_sent: 0,
            defer_wakes: false,
            wake_pending: false,
        },
        Inlet {
            ring: rx,
            spares: spare_tx,
            spare_max_bytes: config.max_bytes / config.capacity,
            chunk: config.effective_grant_chunk(),
            chunk_config: config.effective_grant_chunk(),
            ended: false,
            rows: 0,
            bytes_received: 0,
            last_bytes: 0,
        },
    )
}

/// A point-in-time view of one edge, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EdgeStats {
    /// Slot capacity.
    pub capacity: usize,
    /// Byte bound.
    pub max_bytes: usize,
    /// Messages buffered now.
    pub buffered: usize,
    /// Credit granted to the producer and not yet used.
    pub outstanding_credit: usize,
    /// Data bytes buffered now.
    pub buffered_bytes: usize,
    /// The most data bytes the edge ever held at once.
    pub peak_bytes: usize,
    /// Rows sent into the edge so far.
    pub rows_sent: usize,
    /// Rows received from the edge so far.
    pub rows_received: usize,
    /// The consumer's credit limit now: at most this many messages buffered plus granted
    /// ([`Inlet::set_credit_limit`]); the capacity unless the edge is sized by time.
    pub credit_limit: usize,
}

impl EdgeStats {
    /// Rows sent but not (yet) received. Once both sides are gone, these were never delivered.
    pub fn rows_in_flight(&self) -> usize {
        self.rows_sent.saturating_sub(self.rows_received)
    }
}

/// A read-only view of an edge that outlives neither side's usefulness: metrics hold one per edge.
/// Cloning it is cheap (a shared reference to the edge).
#[derive(Clone)]
pub struct EdgeProbe(std::sync::Arc<dyn Fn() -> EdgeStats + Send + Sync>);

impl EdgeProbe {
    /// Reads the edge's current statistics.
    pub fn stats(&self) -> EdgeStats {
        (self.0)()
    }
}

impl fmt::Debug for EdgeProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EdgeProbe").field(&self.stats()).finish()
    }
}

fn probe<B: Batch>(inner: &crate::loom::Arc<Shared<B>>) -> EdgeProbe {
    let inner = inner.clone();
    EdgeProbe(std::sync::Arc::new(move || stats_of(&inner)))
}

fn stats_of<B: Batch>(inner: &Shared<B>) -> EdgeStats {
    {
        let (buffered, outstanding_credit) = inner.occupancy();
        let ext = inner.ext();
        EdgeStats {
            capacity: ext.capacity,
            max_bytes: ext.max_bytes,
            buffered,
            outstanding_credit,
            buffered_bytes: ext.buffered_bytes(),
            peak_bytes: ext.peak_bytes.load(Relaxed),
            rows_sent: ext.rows_pushed.load(Relaxed),
            rows_received: ext.rows_popped.load(Relaxed),
            credit_limit: ext.credit_limit.load(Relaxed),
        }
    }
}

/// The producing side of an edge. `Send`, not `Sync`: one task owns it.
pub struct Outlet<B: Batch> {
    ring: RingTx<Slot<B>, EdgeShared>,
    /// The return path's receiving end.
    spares: RingRx<B, ()>,
    /// Our own record of the peak (only the producer raises the byte count).
    peak: usize,
    rows: usize,
    bytes_sent: usize,
    /// Whether sends leave waking the consumer to [`flush_wake`](Outlet::flush_wake).
    defer_wakes: bool,
    wake_pending: bool,
}

/// Proof that the edge has room for one message of the reserved size. Sending spends it;
/// dropping it returns nothing because nothing was taken: the room stays until used.
#[must_use = "a permit does nothing unless a message is sent with it"]
pub struct Permit<'a, B: Batch> {
    outlet: &'a mut Outlet<B>,
    bytes: usize,
}

impl<B: Batch> Permit<'_, B> {
    /// Sends `msg`, which must be no larger than the reserved bytes.
    pub fn send(self, msg: Message<B>) {
        let bytes = msg.bytes();
        self.send_sized(msg, bytes);
    }

    /// [`send`](Self::send) for a message whose [`Message::bytes`] the caller has measured.
    pub(crate) fn send_sized(self, msg: Message<B>, bytes: usize) {
        debug_assert_eq!(bytes, msg.bytes(), "a message's measured size is stale");
        debug_assert!(
            bytes <= self.bytes || self.outlet.buffered_bytes() == 0,
            "message larger than its reservation"
        );
        if let Err(_msg) = self.outlet.push(msg, bytes) {
            // The ring had credit when the permit was made and only the consumer changes it, by
            // granting more; a single producer cannot lose it in between.
            unreachable!("credit vanished under a permit");
        }
    }
}

impl<B: Batch> Outlet<B> {
    fn shared(&self) -> &EdgeShared {
        self.ring.inner().ext()
    }

    /// Credit available now: messages that may be sent before the consumer grants more.
    pub fn credit(&mut self) -> usize {
        self.ring.credit()
    }

    /// Data bytes buffered in the edge now.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes_sent
            .saturating_sub(self.shared().bytes_received.load(Acquire))
    }

    /// Keeps this edge's credit limit at its capacity whatever the consumer asks
    /// ([`Inlet::set_credit_limit`]): for an edge whose producer never waits for credit (a
    /// lossy edge), where withheld credit would drop or spill rows instead of slowing anyone.
    pub(crate) fn fix_credit(&self) {
        self.shared().fixed_credit.store(true, Relaxed);
    }

    /// Whether the consumer has gone away.
    pub fn is_closed(&self) -> bool {
        self.shared().rx_closed.load(SeqCst)
    }

    /// `Ready` once the consumer has gone away; otherwise `Pending`, with a wake-up arranged
    /// for when it goes. For a producer that waits for something other than credit (data to
    /// send, say) and must still learn that nobody will take what it sends.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::{Context, Poll, Waker};
    /// use weir_runtime::{edge, EdgeConfig};
    ///
    /// let (mut tx, rx) = edge::<Vec<u32>>(EdgeConfig::default());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(tx.poll_closed(&mut cx).is_pending());
    /// drop(rx);
    /// assert!(tx.poll_closed(&mut cx).is_ready());
    /// ```
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_closed() {
            return Poll::Ready(());
        }
        // Register, then re-check: pairs with the consumer's drop, which stores the flag and
        // then wakes unconditionally.
        self.shared().tx_waker.register(cx.waker());
        if self.is_closed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Current statistics of this edge.
    pub fn stats(&self) -> EdgeStats {
        stats_of(self.ring.inner())
    }

    /// A probe that reads this edge's statistics from anywhere.
    pub fn probe(&self) -> EdgeProbe {
        probe(self.ring.inner())
    }

    /// Why a message of `bytes` cannot be admitted now, if it cannot.
    fn blocked(&mut self, bytes: usize) -> Option<u8> {
        if self.ring.credit() == 0 {
            return Some(WAIT_SLOT);
        }
        let buffered = self.buffered_bytes();
        if buffered != 0 && buffered.saturating_add(bytes) > self.shared().max_bytes {
            return Some(WAIT_BYTES);
        }
        None
    }

    /// Tries to reserve room for one message of `bytes` bytes.
    ///
    /// # Errors
    ///
    /// [`TryReserveError::Full`] without room now, [`TryReserveError::Closed`] if the consumer is
    /// gone.
    pub fn try_reserve(&mut self, bytes: usize) -> Result<Permit<'_, B>, TryReserveError> {
        if self.is_closed() {
            return Err(TryReserveError::Closed);
        }
        match self.blocked(bytes) {
            None => Ok(Permit {
                outlet: self,
                bytes,
            }),
            Some(_) => Err(TryReserveError::Full),
        }
    }

    /// Waits for room for one message of `bytes` bytes.
    ///
    /// Returns `Pending` and arranges a wake-up when the consumer grants credit (no slot) or
    /// frees bytes (no byte room), or closes the edge.
    ///
    /// # Errors
    ///
    /// [`Closed`] if the consumer is gone.
    ///
    /// # Cancel safety
    ///
    /// Nothing is taken until the permit is used, so dropping the future loses nothing.
    pub fn poll_reserve(
        &mut self,
        cx: &mut Context<'_>,
        bytes: usize,
    ) -> Poll<Result<Permit<'_, B>, Closed>> {
        match self.poll_room(cx, bytes) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Permit {
                outlet: self,
                bytes,
            })),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits until the edge has credit and byte room for some message (a size not yet known).
    ///
    /// This is the "may I produce?" question a source asks before it reads.
    ///
    /// # Errors
    ///
    /// [`Closed`] if the consumer is gone.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.poll_room(cx, 1)
    }

    fn poll_room(&mut self, cx: &mut Context<'_>, bytes: usize) -> Poll<Result<(), Closed>> {
        if self.is_closed() {
            return Poll::Ready(Err(Closed));
        }
        let Some(_) = self.blocked(bytes) else {
            return Poll::Ready(Ok(()));
        };
        // About to wait on the consumer: it must have been told about everything we sent.
        self.flush_wake();
        self.shared().tx_waker.register(cx.waker());
        // Store the reason, fence, re-check: pairs with the consumer's change, fence, read.
        loop {
            let Some(reason) = self.blocked(bytes) else {
                self.shared().tx_waiting.store(WAIT_NONE, Relaxed);
                return Poll::Ready(Ok(()));
            };
            self.shared().tx_waiting.store(reason, Relaxed);
            fence(SeqCst);
            if self.is_closed() {
                self.shared().tx_waiting.store(WAIT_NONE, Relaxed);
                return Poll::Ready(Err(Closed));
            }
            if self.blocked(bytes) == Some(reason) {
                return Poll::Pending;
            }
            // The condition changed under us (room appeared, or the other resource ran out):
            // go round again with the current reason.
        }
    }

    /// Sends `msg` if the edge has room for it now, handing it back otherwise.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] without room, [`TrySendError::Closed`] if the consumer is gone; both
    /// return the message.
    pub fn try_send(&mut self, msg: Message<B>) -> Result<(), TrySendError<Message<B>>> {
        let bytes = msg.bytes();
        self.try_send_sized(msg, bytes)
    }

    /// [`try_send`](Self::try_send) for a message whose [`Message::bytes`] the caller has
    /// already measured, so a batch of heap-owning rows is not walked again.
    pub(crate) fn try_send_sized(
        &mut self,
        msg: Message<B>,
        bytes: usize,
    ) -> Result<(), TrySendError<Message<B>>> {
        debug_assert_eq!(bytes, msg.bytes(), "a message's measured size is stale");
        if self.is_closed() {
            return Err(TrySendError::Closed(msg));
        }
        if self.blocked(bytes).is_some() {
            return Err(TrySendError::Full(msg));
        }
        self.push(msg, bytes).map_err(TrySendError::Full)
    }

    /// Pushes `msg`, counted as `bytes` (its [`Message::bytes`]) now and when it is received.
    fn push(&mut self, msg: Message<B>, bytes: usize) -> Result<(), Message<B>> {
        let rows = msg.rows();
        let held = self.buffered_bytes();
        self.ring.try_push((msg, bytes)).map_err(|(msg, _)| msg)?;
        if bytes > 0 {
            // Published after the slot: a consumer may briefly see fewer bytes sent than it has
            // received, which `buffered_bytes` saturates to zero.
            self.bytes_sent += bytes;
            self.shared().bytes_sent.store(self.bytes_sent, Release);
            let now = held + bytes;
            if now > self.peak {
                self.peak = now;
                self.shared().peak_bytes.store(now, Relaxed);
            }
        }
        if rows > 0 {
            self.rows += rows;
            self.shared().rows_pushed.store(self.rows, Relaxed);
        }
        self.shared().tx_waiting.store(WAIT_NONE, Relaxed);
        if self.defer_wakes {
            self.wake_pending = true;
        } else {
            self.wake_consumer();
        }
        Ok(())
    }

    /// Defers waking the consumer after a send until [`flush_wake`](Self::flush_wake).
    ///
    /// A producer that sends several messages in one turn wakes its consumer once at the end of
    /// the turn instead of after every message: the consumer's thread is woken per turn, not per
    /// message. The producer must call `flush_wake` before it waits for anything (credit, input,
    /// its turn), or the consumer may sleep on data that is already there. Dropping the outlet
    /// always wakes.
    pub fn set_deferred_wakes(&mut self, defer: bool) {
        self.defer_wakes = defer;
        if !defer {
            self.flush_wake();
        }
    }

    /// Takes a spare buffer the consumer handed back ([`Inlet::recycle`]), empty and ready to be
    /// filled, if there is one: fill it instead of allocating a new batch.
    ///
    /// ```
    /// use weir_runtime::{edge, EdgeConfig, Message};
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default());
    /// assert_eq!(tx.take_spare(), None);
    /// tx.try_send(Message::Data(Vec::with_capacity(1024))).unwrap();
    /// if let Ok(Message::Data(batch)) = rx.try_recv() {
    ///     rx.recycle(batch);
    /// }
    /// let spare = tx.take_spare().unwrap();
    /// assert!(spare.is_empty() && spare.capacity() == 1024);
    /// ```
    #[inline]
    pub fn take_spare(&mut self) -> Option<B> {
        let spare = self.spares.try_pop()?;
        // Every slot freed goes back at once (one store): a return path that held back part of
        // its room would drop spares the producer is about to need.
        self.spares.grant();
        Some(spare)
    }

    /// Wakes the consumer if a deferred send has not woken it yet.
    #[inline]
    pub fn flush_wake(&mut self) {
        if self.wake_pending {
            self.wake_pending = false;
            self.wake_consumer();
        }
    }

    /// Wakes the consumer if it parked: our fence pairs with the one between its `rx_parked`
    /// store and its last look at the ring (see "Wake-ups" in the module docs).
    #[inline]
    fn wake_consumer(&self) {
        fence(SeqCst);
        let shared = self.shared();
        if shared.rx_parked.load(Relaxed) && shared.rx_parked.swap(false, Relaxed) {
            if shared.stamp_wakes.load(Relaxed) {
                // One clock read per wake-up of a parked consumer, not per message.
                shared.rx_woken_ns.store(debloat::clock_ns(), Relaxed);
            }
            shared.rx_waker.wake();
        }
    }
}

impl<B: Batch> Drop for Outlet<B> {
    fn drop(&mut self) {
        self.shared().tx_closed.store(true, SeqCst);
        self.shared().rx_waker.wake();
    }
}

impl<B: Batch> fmt::Debug for Outlet<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlet")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The consuming side of an edge. `Send`, not `Sync`: one task owns it.
pub struct Inlet<B: Batch> {
    ring: RingRx<Slot<B>, EdgeShared>,
    /// The return path's sending end.
    spares: RingTx<B, ()>,
    /// The largest spare kept (`max_bytes / capacity`): the spares never hold more than the
    /// edge's byte bound.
    spare_max_bytes: usize,
    /// The re-grant chunk in force: the configured one, at most half the credit limit.
    chunk: usize,
    /// [`EdgeConfig::effective_grant_chunk`].
    chunk_config: usize,
    ended: bool,
    rows: usize,
    bytes_received: usize,
    /// Bytes of the message received last, as its send counted them.
    last_bytes: usize,
}

impl<B: Batch> Inlet<B> {
    fn shared(&self) -> &EdgeShared {
        self.ring.inner().ext()
    }

    /// Current statistics of this edge.
    pub fn stats(&self) -> EdgeStats {
        stats_of(self.ring.inner())
    }

    /// A probe that reads this edge's statistics from anywhere.
    pub fn probe(&self) -> EdgeProbe {
        probe(self.ring.inner())
    }

    /// Whether [`Message::End`] has been received.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Messages of any kind taken from this edge so far (wrapping): what a consumer's drain
    /// rate is measured in, read from the ring's own position at no cost per message.
    #[inline]
    pub fn messages_received(&self) -> usize {
        self.ring.position()
    }

    /// Has the producer note when it wakes this consumer from a wait on the empty edge
    /// ([`take_woken_ns`](Self::take_woken_ns)): one clock read per such wake-up. For an edge
    /// sized by time, whose consumer counts the time it then waits to run as its own.
    pub(crate) fn stamp_wakes(&mut self) {
        self.shared().stamp_wakes.store(true, Relaxed);
    }

    /// When the producer last woke this consumer from a wait on the empty edge
    /// ([`debloat::clock_ns`]), once: `None` if it has not since the last call, or wake-ups are
    /// not noted ([`stamp_wakes`](Self::stamp_wakes)).
    #[inline]
    pub(crate) fn take_woken_ns(&self) -> Option<u64> {
        let stamp = &self.shared().rx_woken_ns;
        if stamp.load(Relaxed) == 0 {
            return None;
        }
        Some(stamp.swap(0, Relaxed)).filter(|&t| t != 0)
    }

    /// Slot capacity of this edge.
    pub fn capacity(&self) -> usize {
        self.shared().capacity
    }

    /// The credit limit in force ([`set_credit_limit`](Self::set_credit_limit)).
    pub fn credit_limit(&self) -> usize {
        self.ring.limit()
    }

    /// Limits the credit this consumer hands out: from now on it grants only while the
    /// messages buffered plus the credit outstanding stay below `limit`, clamped to
    /// [`MIN_CREDIT_LIMIT`]`..=capacity` (an edge of one slot keeps its one). The byte bound
    /// applies as always.
    ///
    /// Lowering the limit takes no credit back: the producer may still send what it was
    /// granted, and re-grants wait until occupancy falls below the new limit. Raising it grants
    /// the difference at once and wakes a producer waiting for credit. An edge whose producer
    /// never waits (a lossy edge) keeps its whole capacity: a lower limit there would turn
    /// buffer into drops or spills.
    ///
    /// ```
    /// use weir_runtime::{edge, EdgeConfig, Message};
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u8>>(EdgeConfig::default().with_capacity(8));
    /// rx.set_credit_limit(3);
    /// assert_eq!(tx.credit(), 8, "credit already granted is kept");
    /// for _ in 0..8 {
    ///     tx.try_send(Message::Data(vec![1])).unwrap();
    /// }
    /// for _ in 0..8 {
    ///     rx.try_recv().unwrap();
    /// }
    /// assert_eq!(tx.credit(), 3, "re-granted up to the limit");
    /// rx.set_credit_limit(100);
    /// assert_eq!(rx.credit_limit(), 8, "clamped to the capacity");
    /// assert_eq!(rx.stats().outstanding_credit, 8, "granted at once");
    /// ```
    pub fn set_credit_limit(&mut self, limit: usize) {
        let capacity = self.shared().capacity;
        let limit = if self.shared().fixed_credit.load(Relaxed) {
            capacity
        } else {
            limit.clamp(MIN_CREDIT_LIMIT.min(capacity), capacity)
        };
        let old = self.ring.limit();
        if limit == old {
            return;
        }
        self.ring.set_limit(limit);
        self.chunk = self.chunk_config.min((limit / 2).max(1));
        self.shared().credit_limit.store(limit, Relaxed);
        if limit > old {
            // Raised: the difference goes out now, with the full handshake, so a producer
            // parked for credit is certainly woken.
            self.grant_all();
        }
    }

    /// Bytes of the message received last ([`Message::bytes`] as measured when it was sent),
    /// so a receiver can count it without walking its rows again.
    pub(crate) fn last_bytes(&self) -> usize {
        self.last_bytes
    }

    /// Takes the next message if one is buffered.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing is buffered yet; [`TryRecvError::Disconnected`] if the
    /// producer went away without sending [`Message::End`] (an abort); after `End` itself, every
    /// call returns [`TryRecvError::Ended`].
    pub fn try_recv(&mut self) -> Result<Message<B>, TryRecvError> {
        if self.ended {
            return Err(TryRecvError::Ended);
        }
        if let Some(msg) = self.pop() {
            return Ok(msg);
        }
        self.grant_all();
        if self.shared().tx_closed.load(SeqCst) {
            // The producer may have pushed its last message just before closing.
            return match self.pop() {
                Some(msg) => Ok(msg),
                None => Err(TryRecvError::Disconnected),
            };
        }
        Err(TryRecvError::Empty)
    }

    /// Waits for the next message.
    ///
    /// Returns `Ready(Ok(msg))`, or `Ready(Err(_))` as [`try_recv`](Self::try_recv) would except
    /// that it never returns `Empty`: it parks until woken by a send or a close instead.
    ///
    /// # Cancel safety
    ///
    /// A message is only taken when `Ready` is returned, so dropping the future loses nothing.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message<B>, TryRecvError>> {
        match self.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => return Poll::Ready(other),
        }
        self.shared().rx_waker.register(cx.waker());
        // Store the flag, fence, look again: pairs with the producer's send, fence, load.
        self.shared().rx_parked.store(true, Relaxed);
        fence(SeqCst);
        match self.try_recv() {
            Err(TryRecvError::Empty) => Poll::Pending,
            other => {
                self.shared().rx_parked.store(false, Relaxed);
                Poll::Ready(other)
            }
        }
    }

    fn pop(&mut self) -> Option<Message<B>> {
        let (msg, bytes) = self.ring.try_pop()?;
        self.last_bytes = bytes;
        let rows = msg.rows();
        if rows > 0 {
            self.rows += rows;
            self.shared().rows_popped.store(self.rows, Relaxed);
        }
        if bytes > 0 {
            self.bytes_received += bytes;
            self.shared()
                .bytes_received
                .store(self.bytes_received, Release);
        }
        if self.ring.ungranted() >= self.chunk && self.ring.grant() {
            // Credit changed: the full handshake (store, fence, load), so a producer waiting
            // for it is certainly woken.
            fence(SeqCst);
            if self.shared().tx_waiting.load(Relaxed) != WAIT_NONE {
                self.shared().tx_waker.wake();
            }
        } else if bytes > 0 && self.shared().tx_waiting.load(Relaxed) == WAIT_BYTES {
            // Freed bytes: a fence-free hint that wakes a producer waiting for byte room at
            // once in the common case. The guarantee comes from `grant_all`, which runs the
            // full handshake before this consumer parks: a producer waiting for bytes stops
            // sending, so the consumer drains the edge and parks, and wakes it then.
            self.shared().tx_waker.wake();
        }
        if matches!(msg, Message::End) {
            self.ended = true;
        }
        Some(msg)
    }

    /// Hands the producer the credit of every message taken so far, at once instead of at the
    /// next chunk boundary, and wakes it if it waits.
    ///
    /// For a consumer about to wait for something other than input — its own pace, room
    /// downstream: credit then keeps flowing at the consumer's pace instead of in chunks
    /// separated by long silences. (A consumer that waits for input grants everything anyway.)
    ///
    /// ```
    /// use weir_runtime::channel::{edge, EdgeConfig};
    /// use weir_runtime::Message;
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u8>>(EdgeConfig::default().with_capacity(8));
    /// for _ in 0..8 {
    ///     tx.try_send(Message::Data(vec![1])).unwrap();
    /// }
    /// assert_eq!(tx.credit(), 0);
    /// rx.try_recv().unwrap();
    /// assert_eq!(tx.credit(), 0, "credit is granted in chunks");
    /// rx.release_credit();
    /// assert_eq!(tx.credit(), 1);
    /// ```
    pub fn release_credit(&mut self) {
        if self.ring.ungranted() > 0 {
            self.grant_all();
        }
    }

    /// Grants every freed slot and wakes a waiting producer; runs before the consumer parks.
    fn grant_all(&mut self) {
        self.ring.grant();
        fence(SeqCst);
        if self.shared().tx_waiting.load(Relaxed) != WAIT_NONE {
            self.shared().tx_waker.wake();
        }
    }

    /// Whether nothing is buffered right now.
    pub fn is_empty(&mut self) -> bool {
        self.ring.is_empty()
    }

    /// Hands a batch this consumer is done with back to the producer, emptied
    /// ([`Batch::recycle`]), for it to fill instead of allocating ([`Outlet::take_spare`]).
    ///
    /// Never waits and never grows: the batch is dropped instead if it cannot be reused, if it is
    /// larger than `max_bytes / capacity` (so spares never hold more than the edge's byte
    /// bound), or if `capacity` spares are already waiting. Returns whether it was kept.
    ///
    /// ```
    /// use weir_runtime::{edge, EdgeConfig};
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
    /// assert!(rx.recycle(vec![1, 2, 3]));
    /// assert!(rx.recycle(vec![4]));
    /// assert!(!rx.recycle(vec![5]), "full: dropped");
    /// assert_eq!(tx.stats().buffered, 0, "spares are not data");
    /// assert_eq!(tx.take_spare().map(|s| s.capacity()), Some(3));
    /// ```
    #[inline]
    pub fn recycle(&mut self, batch: B) -> bool {
        let Some(spare) = batch.recycle() else {
            return false;
        };
        if spare.bytes() > self.spare_max_bytes {
            return false;
        }
        self.spares.try_push(spare).is_ok()
    }
}

impl<B: Batch> Drop for Inlet<B> {
    fn drop(&mut self) {
        self.shared().rx_closed.store(true, SeqCst);
        self.shared().tx_waker.wake();
    }
}

impl<B: Batch> fmt::Debug for Inlet<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inlet")
            .field("stats", &self.stats())
            .field("ended", &self.ended)
            .finish()
    }
}
