//! Watermark alignment groups: the source instances that share their watermarks, and the
//! wake-up of the ones paused for running ahead.
//!
//! # Protocol
//!
//! Every member owns one slot: its watermark (an `i64`, `i64::MIN` before its first) and its
//! status (active, idle, ended), written only by its own task. A member is *paused* while it is
//! active and its watermark is more than its `max_drift` ahead of the minimum over the active
//! members (itself included, so the slowest is never paused).
//!
//! A member that finds itself paused stores its waker, raises its `waiting` flag, and checks
//! again before it returns `Pending`; a member that changes its slot writes it first and then
//! wakes every member whose flag is up. Both sides use `SeqCst`, so at least one of them sees
//! the other's write: a wake-up is never lost. Waking is spurious at worst (the woken member
//! checks again). The waker's lock is taken only on those two paths, never per batch.
//!
//! Members join while the run is planned, before any task runs; the first read freezes the
//! list.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

const ACTIVE: u8 = 0;
const IDLE: u8 = 1;
const ENDED: u8 = 2;

#[derive(Default)]
struct Slot {
    watermark: AtomicI64,
    status: AtomicU8,
    waiting: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct Group {
    joining: Mutex<Vec<Arc<Slot>>>,
    members: OnceLock<Arc<[Arc<Slot>]>>,
}

impl Group {
    fn members(&self) -> &Arc<[Arc<Slot>]> {
        self.members.get_or_init(|| {
            let joined = match self.joining.lock() {
                Ok(mut v) => std::mem::take(&mut *v),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            };
            joined.into()
        })
    }
}

/// The alignment groups of one run, by name.
#[derive(Default)]
pub(crate) struct AlignGroups {
    groups: Mutex<HashMap<Arc<str>, Arc<Group>>>,
}

impl AlignGroups {
    /// A new member of group `name` that may run `max_drift` ms ahead of the slowest.
    pub(crate) fn join(&self, name: &Arc<str>, max_drift: i64) -> Member {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let group = groups.entry(name.clone()).or_default().clone();
        let slot = Arc::new(Slot {
            watermark: AtomicI64::new(i64::MIN),
            ..Slot::default()
        });
        group
            .joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot.clone());
        Member {
            group,
            slot,
            max_drift: max_drift.max(0),
        }
    }
}

/// One source instance's place in its alignment group.
pub(crate) struct Member {
    group: Arc<Group>,
    slot: Arc<Slot>,
    max_drift: i64,
}

impl Member {
    /// The minimum watermark over the active members, `None` if none is active.
    fn minimum(&self) -> Option<i64> {
        self.group
            .members()
            .iter()
            .filter(|s| s.status.load(SeqCst) == ACTIVE)
            .map(|s| s.watermark.load(SeqCst))
            .min()
    }

    /// Whether this member must wait for the slowest one.
    pub(crate) fn is_paused(&self) -> bool {
        if self.slot.status.load(SeqCst) != ACTIVE {
            return false;
        }
        let me = self.slot.watermark.load(SeqCst);
        self.minimum()
            .is_some_and(|min| me > min.saturating_add(self.max_drift))
    }

    /// `Ready` once this member may read; otherwise a wake-up is arranged for when the group's
    /// minimum moves.
    pub(crate) fn poll_aligned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_paused() {
            return Poll::Ready(());
        }
        {
            let mut waker = self.slot.waker.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
        }
        self.slot.waiting.store(true, SeqCst);
        if !self.is_paused() {
            self.slot.waiting.store(false, SeqCst);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Publishes this member's watermark (ms).
    pub(crate) fn publish(&mut self, watermark: i64) {
        let old = self.slot.watermark.swap(watermark, SeqCst);
        if old != watermark {
            self.wake_others();
        }
    }

    /// Marks this member idle (out of the minimum) or active again.
    pub(crate) fn set_idle(&mut self, idle: bool) {
        self.slot
            .status
            .store(if idle { IDLE } else { ACTIVE }, SeqCst);
        self.wake_others();
    }

    /// This member's input has ended: it leaves the group.
    pub(crate) fn leave(&mut self) {
        self.slot.status.store(ENDED, SeqCst);
        self.wake_others();
    }

    fn wake_others(&self) {
        for s in self.group.members().iter() {
            if !Arc::ptr_eq(s, &self.slot) && s.waiting.swap(false, SeqCst) {
                let waker = s.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }
}

impl Drop for Member {
    /// A member whose task ends in any way stops holding the others back.
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::CountingWaker;

    #[test]
    fn the_member_ahead_pauses_and_wakes_when_the_slowest_catches_up() {
        let groups = AlignGroups::default();
        let name: Arc<str> = "g".into();
        let mut fast = groups.join(&name, 10);
        let mut slow = groups.join(&name, 10);
        slow.publish(100);
        fast.publish(111);
        let (count, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        assert!(fast.poll_aligned(&mut cx).is_pending());
        // The slowest is never paused.
        assert!(slow.poll_aligned(&mut cx).is_ready());
        slow.publish(101);
        assert_eq!(
            count.count(),
            1,
            "the paused member is woken when the minimum moves"
        );
        assert!(fast.poll_aligned(&mut cx).is_ready());
        // Idle and ended members do not hold the group back.
        fast.publish(500);
        assert!(fast.poll_aligned(&mut cx).is_pending());
        slow.set_idle(true);
        assert_eq!(count.count(), 2);
        assert!(fast.poll_aligned(&mut cx).is_ready());
        slow.set_idle(false);
        assert!(fast.poll_aligned(&mut cx).is_pending());
        drop(slow);
        assert!(fast.poll_aligned(&mut cx).is_ready());
    }

    #[test]
    fn a_member_without_a_watermark_counts_as_the_beginning_of_time() {
        let groups = AlignGroups::default();
        let name: Arc<str> = "g".into();
        let mut a = groups.join(&name, 0);
        let _b = groups.join(&name, 0);
        a.publish(1);
        assert!(a.is_paused());
    }
}
