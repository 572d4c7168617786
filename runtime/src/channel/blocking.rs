//! Blocking use of an edge from ordinary threads: the thread parks while it waits, and the other
//! side's wake-up unparks it.
//!
//! Parking and unparking a thread costs a few microseconds on each side (a futex wait and a
//! futex wake), far more than a hand-off between two running cores (a fraction of a
//! microsecond). So before it parks, a blocked side first *spins* briefly — crossbeam's backoff:
//! `spin_loop` hints doubling from 1 to 64, then a few `yield_now`, a few microseconds in all —
//! re-checking its condition, and parks only if the other side did not act meanwhile. The spin
//! is bounded and runs only on a machine with more than one core (with one, the other side
//! cannot run while we spin); parking stays the fallback, and the waker that unparks is the
//! thread's own, made once per thread rather than per call.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use crossbeam_utils::Backoff;

use super::{Closed, Inlet, Outlet, TryRecvError, TryReserveError};
use crate::batch::{Batch, Message};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// This thread's waker: made once, so a blocking call allocates nothing.
    static THREAD_WAKER: Waker = Waker::from(Arc::new(Unpark(std::thread::current())));
}

/// Whether spinning can pay: 0 unknown, 1 no (one core), 2 yes.
static SPIN: AtomicU8 = AtomicU8::new(0);

fn spin_pays() -> bool {
    match SPIN.load(Relaxed) {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let pays = cores > 1;
            SPIN.store(if pays { 2 } else { 1 }, Relaxed);
            pays
        }
        v => v == 2,
    }
}

/// Spins (bounded) until `ready` returns something; `None` if it did not in time.
#[inline]
fn spin<T>(mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if !spin_pays() {
        return None;
    }
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        backoff.snooze();
        if let Some(v) = ready() {
            return Some(v);
        }
    }
    None
}

impl<B: Batch> Outlet<B> {
    /// Sends `msg`, parking the calling thread while the edge has no room for it.
    ///
    /// # Errors
    ///
    /// [`Closed`] (with the message dropped) if the consumer is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{edge, EdgeConfig, Message};
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
    /// let producer = std::thread::spawn(move || {
    ///     for i in 0..100 {
    ///         tx.send_blocking(Message::Data(vec![i])).unwrap();
    ///     }
    ///     tx.send_blocking(Message::End).unwrap();
    /// });
    /// let mut sum = 0;
    /// while let Ok(Message::Data(v)) = rx.recv_blocking() {
    ///     sum += v[0];
    /// }
    /// producer.join().unwrap();
    /// assert_eq!(sum, 4950);
    /// ```
    pub fn send_blocking(&mut self, msg: Message<B>) -> Result<(), Closed> {
        let bytes = msg.bytes();
        match self.try_reserve(bytes) {
            Ok(permit) => {
                permit.send_sized(msg, bytes);
                return Ok(());
            }
            Err(TryReserveError::Closed) => return Err(Closed),
            Err(TryReserveError::Full) => {}
        }
        // The consumer must know about what we sent before we wait for it.
        self.flush_wake();
        let room = spin(|| match self.try_reserve(bytes) {
            Err(TryReserveError::Full) => None,
            other => Some(other.map(|_| ())),
        })
        .unwrap_or(Err(TryReserveError::Full));
        match room {
            Ok(()) => return self.send_reserved(msg, bytes),
            Err(TryReserveError::Closed) => return Err(Closed),
            Err(TryReserveError::Full) => {}
        }
        THREAD_WAKER.with(|waker| {
            let mut cx = Context::from_waker(waker);
            loop {
                match self.poll_reserve(&mut cx, bytes) {
                    Poll::Ready(Ok(_)) => return self.send_reserved(msg, bytes),
                    Poll::Ready(Err(closed)) => return Err(closed),
                    Poll::Pending => std::thread::park(),
                }
            }
        })
    }

    /// Sends a message room was found for (by this producer, which alone takes room).
    fn send_reserved(&mut self, msg: Message<B>, bytes: usize) -> Result<(), Closed> {
        match self.try_reserve(bytes) {
            Ok(permit) => {
                permit.send_sized(msg, bytes);
                Ok(())
            }
            // Room once found stays until used; only a close can intervene.
            Err(_) => Err(Closed),
        }
    }
}

impl<B: Batch> Inlet<B> {
    /// Receives the next message, parking the calling thread while the edge is empty.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), except that it never returns
    /// [`TryRecvError::Empty`].
    pub fn recv_blocking(&mut self) -> Result<Message<B>, TryRecvError> {
        match self.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => return other,
        }
        // `try_recv` granted every freed slot before it found the edge empty: spin on the ring
        // (and the close flag) alone, with one load each.
        let got = spin(|| {
            if self.ring.is_empty() && !self.shared().tx_closed.load(SeqCst) {
                return None;
            }
            match self.try_recv() {
                Err(TryRecvError::Empty) => None,
                other => Some(other),
            }
        });
        if let Some(r) = got {
            return r;
        }
        THREAD_WAKER.with(|waker| {
            let mut cx = Context::from_waker(waker);
            loop {
                match self.poll_recv(&mut cx) {
                    Poll::Ready(r) => return r,
                    Poll::Pending => std::thread::park(),
                }
            }
        })
    }
}
