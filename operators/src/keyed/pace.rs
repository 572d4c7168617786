//! A row-rate limit for one operator instance: emulating a machine of fixed capacity.
//!
//! [`Pace`] lets an instance process at most `rows_per_s` rows per second. After a batch of
//! `k` rows it owes `k / rows_per_s` seconds; the instance's
//! [`Operator::poll_ready`](weir_runtime::Operator::poll_ready) stays pending until the debt
//! is paid, so its input edge fills and its producers wait, as they would for a busy machine.
//! The wait is a timer, not a spin: the cores stay free for other instances, which is the point
//! — with a capacity per instance, `n` instances can model `n` machines on two cores.
//!
//! Debt is kept in absolute time (`next`: when the instance is free again), so timer
//! overshoot does not accumulate: a late wake-up may let up to [`Pace::BURST`] of work through
//! at once, which brings the long-run rate back to `rows_per_s`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A row-rate limit (see the [module docs](self)).
#[derive(Debug)]
pub struct Pace {
    secs_per_row: f64,
    next: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    /// How much earlier than now an idle instance's clock may start, so that timer overshoot
    /// is made up for.
    pub const BURST: Duration = Duration::from_millis(2);

    /// A limit of `rows_per_s` rows per second, or `None` if that is not a positive, finite
    /// rate.
    pub fn new(rows_per_s: f64) -> Option<Self> {
        (rows_per_s.is_finite() && rows_per_s > 0.0).then(|| Self {
            secs_per_row: 1.0 / rows_per_s,
            next: None,
            sleep: None,
        })
    }

    /// The rate limit, rows per second.
    pub fn rows_per_s(&self) -> f64 {
        1.0 / self.secs_per_row
    }

    /// Charges `rows` rows of work, starting now (or when the previous work ends).
    pub fn charge(&mut self, rows: usize) {
        if rows == 0 {
            return;
        }
        let now = Instant::now();
        let earliest = now.checked_sub(Self::BURST).unwrap_or(now);
        let start = self.next.map_or(now, |next| next.max(earliest));
        let cost = Duration::from_secs_f64(rows as f64 * self.secs_per_row);
        self.next = Some(start + cost);
    }

    /// Ready once the work charged so far is done; otherwise pending, with a timer set to wake
    /// the task then.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(next) = self.next else {
            return Poll::Ready(());
        };
        if Instant::now() >= next {
            self.sleep = None;
            return Poll::Ready(());
        }
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != next {
                    sleep.as_mut().reset(next);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(next))),
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_rates_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(bad).is_none(), "{bad}");
        }
        assert_eq!(Pace::new(4.0).map(|p| p.rows_per_s()), Some(4.0));
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_paid_for_in_time() {
        let mut pace = Pace::new(1000.0).expect("a valid rate");
        // Nothing charged: ready.
        assert!(std::future::poll_fn(|cx| Poll::Ready(pace.poll_ready(cx)))
            .await
            .is_ready());
        let start = Instant::now();
        pace.charge(500);
        // Pending now, ready after exactly 0.5 s of (paused, auto-advancing) time.
        assert!(std::future::poll_fn(|cx| Poll::Ready(pace.poll_ready(cx)))
            .await
            .is_pending());
        std::future::poll_fn(|cx| pace.poll_ready(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // Back-to-back work queues behind it.
        pace.charge(250);
        pace.charge(250);
        std::future::poll_fn(|cx| pace.poll_ready(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }
}
