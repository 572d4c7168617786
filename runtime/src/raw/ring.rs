//! A single-producer / single-consumer ring whose free space reaches the producer as credit.
//!
//! # Protocol
//!
//! Three monotone positions (wrapping `usize` counters; a slot index is `pos % capacity`):
//!
//! ```text
//!            head                tail              granted
//!   ... ------|==== buffered =====|--- outstanding ---|
//!             consumer reads here  producer writes here  producer may write below this
//! ```
//!
//! - `tail` is written only by the producer (`Release` after the slot write), read by the consumer
//!   (`Acquire` before the slot read).
//! - `granted` is written only by the consumer: after reading slot `p` the consumer may publish
//!   `granted = head + capacity`, handing the freed slots back to the producer as credit. The store
//!   happens after the slot read, so the producer's `Acquire` load of `granted` orders its next
//!   write to that slot after the read. The channel layer pairs `granted` with a "producer is
//!   waiting" flag in a store / `SeqCst` fence / load handshake (see [`crate::channel`]).
//! - `head` is the consumer's position, published for observers and for `Drop`.
//!
//! The invariant of an edge, `buffered + outstanding <= capacity`, is `granted - head <= capacity`,
//! which holds because the consumer only ever grants up to `head + limit` with `limit <= capacity`.
//!
//! The consumer decides *when* to grant ([`RingRx::grant`]): the channel layer re-grants in chunks,
//! Reactive-Streams style, rather than per slot, and always before it parks on an empty ring.
//!
//! # The credit limit
//!
//! The consumer also decides *how much* to grant: up to `head + limit`, where `limit` (in
//! `1..=capacity`, all of it by default) is the consumer's own field, set with
//! [`RingRx::set_limit`]. Credit is exact, so it is never taken back: lowering the limit below
//! what is already granted leaves `granted` where it is, and [`RingRx::grant`] stays silent until
//! `head` has moved far enough that `head + limit` passes it again; raising it lets the next
//! grant hand out the difference at once. `granted` only ever moves forward, and `granted - head`
//! is at most the largest limit in force since the slot at `head` was granted, so at most
//! `capacity`.
//!
//! Each side caches the other side's position and reloads it only when its cache says it must
//! wait, so an uncontended hand-off costs one `Release` store on each side.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crossbeam_utils::CachePadded;

use crate::loom::{Arc, AtomicUsize, UnsafeCell};

/// State shared by both sides of a ring, plus the channel layer's own shared state `X`.
pub(crate) struct Inner<T, X> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    tail: CachePadded<AtomicUsize>,
    head: CachePadded<AtomicUsize>,
    granted: CachePadded<AtomicUsize>,
    ext: X,
}

// SAFETY: values of `T` move from the producer's thread to the consumer's through the slots, so
// `T: Send` is required and sufficient; slot access is partitioned by the positions protocol above.
unsafe impl<T: Send, X: Send> Send for Inner<T, X> {}
// SAFETY: shared access from the two sides touches disjoint slots (producer: [tail, granted),
// consumer: [head, tail)), ordered by the Release/Acquire pairs on `tail` and `granted`.
unsafe impl<T: Send, X: Sync> Sync for Inner<T, X> {}

impl<T, X> Inner<T, X> {
    fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The channel layer's shared state.
    pub(crate) fn ext(&self) -> &X {
        &self.ext
    }

    /// `(buffered, outstanding credit)` as seen by an observer; approximate while both sides run.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        let head = self.head.load(Relaxed);
        let tail = self.tail.load(Relaxed);
        let granted = self.granted.load(Relaxed);
        let buffered = tail.wrapping_sub(head).min(self.capacity());
        let outstanding = granted.wrapping_sub(tail).min(self.capacity());
        (buffered, outstanding)
    }
}

impl<T, X> Drop for Inner<T, X> {
    fn drop(&mut self) {
        // Both sides are gone (this is the last `Arc`), so the positions are final.
        let head = self.head.load(Acquire);
        let tail = self.tail.load(Acquire);
        let cap = self.capacity();
        let mut pos = head;
        while pos != tail {
            self.slots[pos % cap].with_mut(|slot| {
                // SAFETY: slots in [head, tail) were written by the producer and never read by the
                // consumer (it advances `head` past every slot it reads), so each holds an
                // initialized value that nobody else can reach any more.
                unsafe { (*slot).assume_init_drop() }
            });
            pos = pos.wrapping_add(1);
        }
    }
}

/// Creates a ring with `capacity` slots, all granted to the producer up front.
///
/// # Panics
///
/// Panics if `capacity` is zero.
pub(crate) fn ring<T, X>(capacity: usize, ext: X) -> (RingTx<T, X>, RingRx<T, X>) {
    assert!(capacity > 0, "a ring needs at least one slot");
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let inner = Arc::new(Inner {
        slots,
        tail: CachePadded::new(AtomicUsize::new(0)),
        head: CachePadded::new(AtomicUsize::new(0)),
        granted: CachePadded::new(AtomicUsize::new(capacity)),
        ext,
    });
    let tx = RingTx {
        inner: inner.clone(),
        tail: 0,
        granted: capacity,
    };
    let rx = RingRx {
        inner,
        head: 0,
        tail: 0,
        granted: capacity,
        limit: capacity,
    };
    (tx, rx)
}

/// The producing side of a ring.
pub(crate) struct RingTx<T, X> {
    inner: Arc<Inner<T, X>>,
    /// Our own position (the authoritative copy; `inner.tail` is its publication).
    tail: usize,
    /// Cached `inner.granted`.
    granted: usize,
}

impl<T, X> RingTx<T, X> {
    /// Credit available to the producer, reloading the consumer's grant only when the cached
    /// credit is exhausted.
    #[inline]
    pub(crate) fn credit(&mut self) -> usize {
        let cached = self.granted.wrapping_sub(self.tail);
        if cached > 0 {
            return cached;
        }
        self.granted = self.inner.granted.load(Acquire);
        self.granted.wrapping_sub(self.tail)
    }

    /// Writes `value` into the next slot if credit allows, handing it back otherwise.
    #[inline]
    pub(crate) fn try_push(&mut self, value: T) -> Result<(), T> {
        if self.credit() == 0 {
            return Err(value);
        }
        let idx = self.tail % self.inner.capacity();
        self.inner.slots[idx].with_mut(|slot| {
            // SAFETY: `tail < granted <= head + capacity` means the consumer has finished reading
            // this slot (its `Release` store of `granted` came after the read, and our `Acquire` load
            // of it came before this write), and it will not read it until we publish `tail + 1`.
            // The slot holds no live value (it was read out, or never written), so overwriting it
            // leaks nothing.
            unsafe { (*slot).write(value) };
        });
        self.tail = self.tail.wrapping_add(1);
        self.inner.tail.store(self.tail, Release);
        Ok(())
    }

    /// The shared state.
    pub(crate) fn inner(&self) -> &Arc<Inner<T, X>> {
        &self.inner
    }
}

/// The consuming side of a ring.
pub(crate) struct RingRx<T, X> {
    inner: Arc<Inner<T, X>>,
    head: usize,
    /// Cached `inner.tail`.
    tail: usize,
    /// The grant we last published.
    granted: usize,
    /// The most slots buffered plus granted we hand out (`1..=capacity`; see "The credit limit").
    limit: usize,
}

impl<T, X> RingRx<T, X> {
    /// Takes the oldest value, if any.
    #[inline]
    pub(crate) fn try_pop(&mut self) -> Option<T> {
        if self.head == self.tail {
            self.tail = self.inner.tail.load(Acquire);
            if self.head == self.tail {
                return None;
            }
        }
        let idx = self.head % self.inner.capacity();
        let value = self.inner.slots[idx].with_mut(|slot| {
            // SAFETY: `head < tail`, and our `Acquire` load of `tail` ordered the producer's write
            // of this slot before this read; the producer will not write it again until we grant
            // past it, so the read has exclusive access and moves the value out exactly once.
            unsafe { (*slot).assume_init_read() }
        });
        self.head = self.head.wrapping_add(1);
        self.inner.head.store(self.head, Release);
        Some(value)
    }

    /// Values taken so far (wrapping): the consumer's position.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.head
    }

    /// Whether the ring looked empty the last time it was read (refreshes the producer position).
    pub(crate) fn is_empty(&mut self) -> bool {
        if self.head == self.tail {
            self.tail = self.inner.tail.load(Acquire);
        }
        self.head == self.tail
    }

    /// Slots the next [`grant`](Self::grant) would hand out: freed since the last grant and
    /// within the limit (zero while the limit is below what is already granted).
    #[inline]
    pub(crate) fn ungranted(&self) -> usize {
        // Buffered plus outstanding: `head <= tail <= granted`, at most `capacity` apart.
        let held = self.granted.wrapping_sub(self.head);
        self.limit.saturating_sub(held)
    }

    /// Hands the producer credit up to `head + limit`, never taking any back. Returns whether
    /// anything was granted.
    #[inline]
    pub(crate) fn grant(&mut self) -> bool {
        if self.ungranted() == 0 {
            return false;
        }
        let target = self.head.wrapping_add(self.limit);
        self.granted = target;
        self.inner.granted.store(target, Release);
        true
    }

    /// The credit limit: the most slots buffered plus granted that [`grant`](Self::grant) hands
    /// out.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Sets the credit limit, clamped to `1..=capacity`. Takes effect at the next
    /// [`grant`](Self::grant); credit already granted is kept (see "The credit limit").
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(1, self.inner.capacity());
    }

    /// The shared state.
    pub(crate) fn inner(&self) -> &Arc<Inner<T, X>> {
        &self.inner
    }
}
