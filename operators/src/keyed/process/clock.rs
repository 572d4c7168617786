//! Processing time: the clock that processing-time timers and state time-to-live read.
//!
//! A [`Clock`] tells the time in milliseconds since the Unix epoch (the unit of
//! [`Timestamp`]) and makes a future that completes once that time is reached, so an operator
//! waiting for a timer parks instead of polling. [`SystemClock`] is the wall clock, its waits
//! tokio timers (it must be polled inside the pipeline's runtime, as operators are);
//! [`ManualClock`] moves only when told to, and wakes whoever waits on it when it does: tests
//! and replays use it to fire processing-time timers at exact times without sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_runtime::Timestamp;

/// A future that completes when a clock reaches a deadline.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of processing time.
///
/// # Examples
///
/// ```
/// use weir_operators::keyed::process::{Clock, SystemClock};
///
/// let now = SystemClock.now();
/// assert!(now.0 > 1_600_000_000_000, "milliseconds since the Unix epoch");
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The time now, in milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;

    /// A future that completes once [`now`](Self::now) is at or past `deadline`.
    fn wait_until(&self, deadline: Timestamp) -> Wait;
}

/// The wall clock; its waits are tokio timers, so they must be polled inside a tokio runtime
/// with time enabled (every pipeline's is).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn wait_until(&self, deadline: Timestamp) -> Wait {
        let ms = deadline.0.saturating_sub(self.now().0).max(0);
        // One millisecond more than the difference: the wall clock must have reached the
        // deadline when the timer fires, whatever tokio's rounding.
        let wait = Duration::from_millis(ms.unsigned_abs().saturating_add(1));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only by [`advance`](Self::advance) or [`set`](Self::set); clones share
/// one time. Moving it wakes every task waiting on it.
///
/// # Examples
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use weir_operators::keyed::process::{Clock, ManualClock};
/// use weir_runtime::Timestamp;
///
/// let clock = ManualClock::new(Timestamp(1_000));
/// let mut wait = clock.wait_until(Timestamp(1_500));
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(wait.as_mut().poll(&mut cx).is_pending());
/// clock.advance(500);
/// assert_eq!(clock.now(), Timestamp(1_500));
/// assert!(wait.as_mut().poll(&mut cx).is_ready());
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Manual>,
}

#[derive(Debug)]
struct Manual {
    now: AtomicI64,
    /// Tasks waiting for the clock to move: one per live wait at most (a wait re-registers
    /// only when its task changed), emptied whenever the clock moves.
    waiters: Mutex<Vec<Waker>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            inner: Arc::new(Manual {
                now: AtomicI64::new(start.0),
                waiters: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the clock forward by `ms` milliseconds (never backwards: a negative step is
    /// ignored) and wakes its waiters.
    pub fn advance(&self, ms: i64) {
        let _ = self
            .inner
            .now
            .fetch_update(SeqCst, SeqCst, |t| Some(t.saturating_add(ms.max(0))));
        self.wake();
    }

    /// Sets the clock to `to` if that is later than it shows, and wakes its waiters.
    pub fn set(&self, to: Timestamp) {
        self.inner.now.fetch_max(to.0, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let waiters = match self.inner.waiters.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for w in waiters {
            w.wake();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.inner.now.load(SeqCst))
    }

    fn wait_until(&self, deadline: Timestamp) -> Wait {
        Box::pin(ManualWait {
            clock: self.inner.clone(),
            deadline,
        })
    }
}

struct ManualWait {
    clock: Arc<Manual>,
    deadline: Timestamp,
}

impl Future for ManualWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now.load(SeqCst) >= self.deadline.0 {
            return Poll::Ready(());
        }
        {
            let mut waiters = match self.clock.waiters.lock() {
                Ok(w) => w,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
        }
        // The clock may have moved between the first check and the registration.
        if self.clock.now.load(SeqCst) >= self.deadline.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
