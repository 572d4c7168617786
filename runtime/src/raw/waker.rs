//! An atomic cell holding one [`Waker`], written by one side and fired by the other.
//!
//! # Protocol
//!
//! `state` is a small bit set:
//!
//! ```text
//!   WAITING (0)      idle: the cell may be read or written by whoever wins the next transition
//!   REGISTERING (1)  `register` owns the cell and is storing a waker
//!   WAKING (2)       `wake` owns the cell and is taking the waker out
//! ```
//!
//! - `register` moves WAITING → REGISTERING, stores the waker, then tries REGISTERING → WAITING.
//!   If a `wake` arrived meanwhile (state is REGISTERING | WAKING), `register` takes the waker back
//!   out, resets to WAITING and wakes it itself, so no wake-up is lost.
//! - `wake` sets WAKING with `fetch_or`. If the previous state was WAITING it owns the cell, takes
//!   the waker and clears WAKING. Otherwise somebody else owns the cell and will act on WAKING.
//!
//! Only one thread may call `register` at a time (each edge side has exactly one owner), which is
//! what the `&mut`-free API relies on; any number may call `wake`.
//!
//! A wake that happens *before* a register is not remembered: callers register first and then
//! re-check their condition, as every `poll_*` in [`crate::channel`] does.

use std::task::Waker;

use crate::loom::{AtomicUsize, UnsafeCell};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

const WAITING: usize = 0;
const REGISTERING: usize = 0b01;
const WAKING: usize = 0b10;

pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the waker slot is only accessed by the thread that moved `state` out of WAITING
// (REGISTERING or WAKING), which gives exclusive access; `Waker` itself is `Send + Sync`.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above: every access to the inner cell is serialized by the `state` transitions.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake).
    ///
    /// Must not be called concurrently with itself (one registering side per cell).
    pub(crate) fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Acquire, Acquire)
        {
            Ok(_) => {
                self.waker.with_mut(|slot| {
                    // SAFETY: we moved the state to REGISTERING, so no other thread touches the
                    // slot until we leave it (`wake` only sets the WAKING bit and backs off).
                    let slot = unsafe { &mut *slot };
                    match slot {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *slot = Some(waker.clone()),
                    }
                });
                if let Err(actual) =
                    self.state
                        .compare_exchange(REGISTERING, WAITING, AcqRel, Acquire)
                {
                    // A concurrent `wake` set WAKING while we held the slot: it backed off,
                    // so the wake-up is ours to deliver.
                    debug_assert_eq!(actual, REGISTERING | WAKING);
                    // SAFETY: the state is still REGISTERING | WAKING, which no other thread
                    // enters the slot under; we own it until the swap below.
                    let taken = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                    self.state.swap(WAITING, AcqRel);
                    if let Some(w) = taken {
                        w.wake();
                    }
                }
            }
            Err(WAKING) => {
                // A wake is in progress on the old waker; make sure this task runs again, and
                // let the waking thread finish before we are polled and register again.
                waker.wake_by_ref();
                crate::loom::spin_loop();
            }
            Err(_) => {
                // REGISTERING: impossible with a single registering side.
                debug_assert!(false, "concurrent register on one AtomicWaker");
            }
        }
    }

    /// Wakes the registered waker, if any.
    pub(crate) fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, AcqRel) {
            WAITING => {
                // SAFETY: we moved WAITING → WAKING, which grants exclusive access to the slot
                // until we clear the bit.
                let taken = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                self.state.fetch_and(!WAKING, Release);
                taken
            }
            // REGISTERING: the registering thread will see WAKING and wake itself.
            // WAKING: another waker is already delivering.
            _ => None,
        }
    }
}

impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWaker").finish_non_exhaustive()
    }
}
