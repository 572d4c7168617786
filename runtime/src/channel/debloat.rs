//! Edges sized by time: each input edge's credit limit follows its consumer's measured drain rate,
//! so what the edge buffers stays near a target time (Flink's buffer debloating).
//!
//! A full edge holds `capacity` messages whatever they cost to process: when a consumer slows
//! tenfold, every full edge in front of it holds ten times the time, and so does the queueing
//! delay of every row, barrier and watermark behind them. Sizing an edge by time instead keeps
//! that delay near the target: the consumer grants credit only up to
//!
//! ```text
//!   limit = ceil(rate × target)    clamped to MIN_CREDIT_LIMIT ..= capacity
//! ```
//!
//! messages buffered plus outstanding ([`Inlet::set_credit_limit`]), where `rate` is how many
//! messages per second the consumer takes from that edge. The byte bound applies as always.
//!
//! # What is measured
//!
//! - **Messages, not rows.** A message takes one slot whatever it holds (a batch of 1024 rows, a
//!   watermark, a latency marker), so the rate is in messages, read from the ring's position
//!   ([`Inlet::messages_received`]): nothing is counted per message or per row.
//! - **Per second the consumer is not starved.** Time is the consumer task's busy plus
//!   backpressured time, as the run loop already accounts it for the metrics, plus the part of
//!   each wait for input that came after the input arrived. Time starved of input is left out: a
//!   consumer that waits for input because its producer is slow takes everything at once, and
//!   measuring it over wall time would shrink its inputs' credit for a slowness that is
//!   upstream, not its own. (Flink's throughput calculator likewise pauses its measurement while
//!   a task has no input.) Backpressured time is kept: a stage that waits for room downstream
//!   drains its inputs only as fast as downstream drains it, and it is the edges in front of it
//!   that would otherwise fill with time.
//! - **Waiting to run counts.** With more tasks than workers, a consumer woken with input
//!   waits in the run queue until a worker is free, and the run loop accounts that wait as idle
//!   (the state it parked in). It is the consumer's time per message all the same, and leaving
//!   it out overestimated the drain rate some 2.5× with four tasks on two workers (see
//!   BENCHMARKS.md, "Edges sized by time"). So a producer that wakes a parked consumer notes
//!   when ([`clock_ns`]: one clock read per wake-up, not per message), and when the consumer
//!   resumes it adds the time since the first such wake-up, within the idle time that wait was
//!   accounted ([`Debloat::resumed`]). A wait that ended for another reason (a timer, an
//!   operator's own work) counts as idle throughout.
//! - **Per edge.** A consumer with several inputs measures each one's share, so the limits of
//!   its inputs add up to its whole rate times the target, and each edge's own queueing delay
//!   is about the target (the inputs are merged fairly).
//!
//! # When it is updated
//!
//! The run loop offers a sample where it has just accounted its time anyway — at the end of a
//! turn, after a wait for input, after a wait for room — and a sample is taken only once
//! [`UPDATE_NS`] of that time and at least one message have passed since the last one. The
//! rate is smoothed with an exponentially weighted moving average ([`SMOOTHING`] per sample, the
//! first sample taken as it is), so one slow batch does not halve an edge, while a tenfold
//! slowdown shows within a few samples. An edge that delivered nothing while its consumer
//! worked on others drops to the minimum, and grows back as it delivers.
//!
//! Lowering a limit never takes credit back; it only withholds re-grants until occupancy falls
//! below it (see the channel's "The demand protocol"), so the producer is never left holding
//! credit for a slot that is not free, and the edge drains towards its new size.
//!
//! [`Inlet::set_credit_limit`]: super::Inlet::set_credit_limit
//! [`Inlet::messages_received`]: super::Inlet::messages_received

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::MIN_CREDIT_LIMIT;

/// Nanoseconds on a process-wide clock, plus one (so 0 means "none"): when a producer woke a
/// parked consumer, against when it resumed.
pub(crate) fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Time that counts (not starved) between two samples of a consumer's drain rate, ns.
pub(crate) const UPDATE_NS: u64 = 2_000_000;

/// Weight of a new sample in the smoothed rate.
pub(crate) const SMOOTHING: f64 = 0.25;

/// The credit limit that holds `target` worth of messages at `rate_per_s`, within
/// [`MIN_CREDIT_LIMIT`]`..=capacity` (an edge of one slot keeps its one).
pub(crate) fn limit_for(rate_per_s: f64, target: Duration, capacity: usize) -> usize {
    // Rounded up, less a thousandth of a slot: a smoothed rate converges on its value from one
    // side, and 6.0001 slots is meant as 6.
    let want = (rate_per_s * target.as_secs_f64() - 1e-3).ceil();
    let floor = MIN_CREDIT_LIMIT.min(capacity);
    if want.is_nan() || want <= floor as f64 {
        return floor;
    }
    if want >= capacity as f64 {
        return capacity;
    }
    want as usize
}

/// One consumer's drain rates, per input edge, and the limits they give.
#[derive(Debug)]
pub(crate) struct Debloat {
    target: Duration,
    /// Time at the last sample, ns.
    last_ns: u64,
    /// Time spent waiting to run with input there, which the run loop accounted as idle, ns.
    queued_ns: u64,
    /// Per edge: messages received at the last sample, and the smoothed rate (per second).
    edges: Vec<(usize, Option<f64>)>,
}

impl Debloat {
    /// A consumer of `edges` inputs aiming at `target` of buffered time per edge; `None` when
    /// `target` is zero (edges keep their capacity).
    pub(crate) fn new(target: Duration, edges: usize) -> Option<Self> {
        (!target.is_zero()).then(|| Self {
            target,
            last_ns: 0,
            queued_ns: 0,
            edges: vec![(0, None); edges],
        })
    }

    /// Notes that the consumer resumed from a wait accounted as `idle_ns` of idle time, at
    /// `now` ([`clock_ns`]), having been woken by a producer at `woken` (the earliest wake-up
    /// noted on its inputs, if any): the time from that wake-up on was spent waiting to run, not
    /// starved, and counts towards the drain rate. A stale wake-up (from before this wait) can
    /// add at most this wait's idle time.
    pub(crate) fn resumed(&mut self, idle_ns: u64, woken: Option<u64>, now: impl FnOnce() -> u64) {
        if let Some(woken) = woken.filter(|_| idle_ns > 0) {
            self.queued_ns += now().saturating_sub(woken).min(idle_ns);
        }
    }

    /// The consumer's time that counts: `active_ns` (busy plus backpressured) and the time it
    /// waited to run with input there.
    #[inline]
    fn time_ns(&self, active_ns: u64) -> u64 {
        active_ns + self.queued_ns
    }

    /// Whether enough time has passed for a sample (`active_ns`: the consumer's non-idle time
    /// so far).
    #[inline]
    pub(crate) fn due(&self, active_ns: u64) -> bool {
        self.time_ns(active_ns).saturating_sub(self.last_ns) >= UPDATE_NS
    }

    /// Takes a sample at `active_ns` of non-idle time, given each edge's messages received so
    /// far (wrapping counts, as [`Inlet::messages_received`](super::Inlet::messages_received)).
    /// Returns whether the rates changed: not before [`UPDATE_NS`], nor while nothing arrived
    /// (the time counts towards the next sample).
    pub(crate) fn sample(&mut self, active_ns: u64, received: impl Fn(usize) -> usize) -> bool {
        let now_ns = self.time_ns(active_ns);
        let dt = now_ns.saturating_sub(self.last_ns);
        if dt < UPDATE_NS {
            return false;
        }
        let any = self
            .edges
            .iter()
            .enumerate()
            .any(|(i, &(last, _))| received(i) != last);
        if !any {
            return false;
        }
        let secs = dt as f64 / 1e9;
        for (i, (last, rate)) in self.edges.iter_mut().enumerate() {
            let now = received(i);
            let sample = now.wrapping_sub(*last) as f64 / secs;
            *last = now;
            *rate = Some(match *rate {
                None => sample,
                Some(r) => r + SMOOTHING * (sample - r),
            });
        }
        self.last_ns = now_ns;
        true
    }

    /// The smoothed rate of edge `i`, messages per second of the time that counts (`None` before the
    /// first sample).
    pub(crate) fn rate(&self, i: usize) -> Option<f64> {
        self.edges.get(i).and_then(|&(_, r)| r)
    }

    /// The credit limit for edge `i` of `capacity` slots: its capacity before the first sample.
    pub(crate) fn limit(&self, i: usize, capacity: usize) -> usize {
        match self.rate(i) {
            Some(r) => limit_for(r, self.target, capacity),
            None => capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn limit_is_rate_times_target_within_bounds() {
        // 600 batches per second for 10 ms: 6 slots.
        assert_eq!(limit_for(600.0, 10 * MS, 16), 6);
        // Rounded up: 6.01 needs 7.
        assert_eq!(limit_for(601.0, 10 * MS, 16), 7);
        // Fast consumers keep the whole capacity; slow ones keep two slots to pipeline.
        assert_eq!(limit_for(1e6, 10 * MS, 16), 16);
        assert_eq!(limit_for(1.0, 10 * MS, 16), MIN_CREDIT_LIMIT);
        assert_eq!(limit_for(0.0, 10 * MS, 16), MIN_CREDIT_LIMIT);
        assert_eq!(limit_for(f64::NAN, 10 * MS, 16), MIN_CREDIT_LIMIT);
        // An edge of one slot keeps it.
        assert_eq!(limit_for(0.0, 10 * MS, 1), 1);
        assert_eq!(limit_for(f64::INFINITY, 10 * MS, 4), 4);
    }

    #[test]
    fn zero_target_is_off() {
        assert!(Debloat::new(Duration::ZERO, 2).is_none());
    }

    #[test]
    fn samples_wait_for_time_and_messages() {
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        assert_eq!(d.limit(0, 16), 16, "capacity before the first sample");
        assert!(!d.due(UPDATE_NS - 1));
        assert!(!d.sample(UPDATE_NS - 1, |_| 5), "too soon");
        assert!(!d.sample(3 * UPDATE_NS, |_| 0), "nothing arrived");
        // The quiet time counts: 6 messages over 10 ms of non-idle time is 600 per second.
        assert!(d.due(10_000_000));
        assert!(d.sample(10_000_000, |_| 6));
        assert_eq!(d.rate(0), Some(600.0), "first sample taken as it is");
        assert_eq!(d.limit(0, 16), 6);
    }

    /// Ten more milliseconds of non-idle time in which `msgs` messages arrived on edge 0.
    fn step(d: &mut Debloat, t: &mut u64, n: &mut usize, msgs: usize) -> bool {
        *t += 10_000_000;
        *n = n.wrapping_add(msgs);
        let now = *n;
        d.sample(*t, move |_| now)
    }

    #[test]
    fn rate_is_smoothed_and_follows_a_tenfold_slowdown_and_recovery() {
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        let (mut t, mut n) = (0, 0);
        // 6 K messages per second: 60 wanted, the whole capacity.
        assert!(step(&mut d, &mut t, &mut n, 60));
        assert_eq!(d.limit(0, 16), 16);
        // Tenfold slower: the limit falls step by step, never up, to 6.
        let mut last = 16;
        for _ in 0..40 {
            assert!(step(&mut d, &mut t, &mut n, 6));
            let l = d.limit(0, 16);
            assert!(l <= last, "{l} after {last}");
            last = l;
        }
        assert_eq!(last, 6, "600 per second for 10 ms");
        // One slow sample moves the rate a quarter of the way, not all of it.
        assert!(step(&mut d, &mut t, &mut n, 1));
        let r = d.rate(0).unwrap();
        assert!((r - 475.0).abs() < 1.0, "{r}");
        // Back to full speed: the capacity again at the next sample.
        assert!(step(&mut d, &mut t, &mut n, 60));
        assert_eq!(d.limit(0, 16), 16);
    }

    #[test]
    fn waiting_to_run_counts_and_starving_does_not() {
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        // 4 ms busy, then a 10 ms wait for input: starved for 7 ms, woken at 11 ms, running at
        // 14 ms. The 3 ms in the run queue count; the 7 ms starved do not.
        d.resumed(10_000_000, Some(11_000_000), || 14_000_000);
        assert!(d.due(0), "the 3 ms waiting to run are more than UPDATE_NS");
        // 7 messages over 4 + 3 ms: 1000 per second, 10 slots for 10 ms.
        assert!(d.sample(4_000_000, |_| 7));
        assert_eq!(d.rate(0), Some(1000.0));
        assert_eq!(d.limit(0, 16), 10);
    }

    #[test]
    fn a_wait_without_a_wake_up_or_idle_time_adds_nothing() {
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        // Woken by a timer, not a producer: idle throughout; the clock is not read.
        d.resumed(10_000_000, None, || unreachable!());
        // A wait accounted as busy (the operator was not ready): nothing to move.
        d.resumed(0, Some(1), || unreachable!());
        assert!(d.sample(10_000_000, |_| 6));
        assert_eq!(d.rate(0), Some(600.0));
    }

    #[test]
    fn a_stale_wake_up_adds_at_most_the_wait() {
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        // A wake-up noted long before this 1 ms wait: the wait's own idle time at most.
        d.resumed(1_000_000, Some(1), || 50_000_000);
        // A clock behind the stamp (another thread's reading): nothing, not a wrap.
        d.resumed(1_000_000, Some(60_000_000), || 50_000_000);
        assert!(d.sample(9_000_000, |_| 6));
        assert_eq!(d.rate(0), Some(600.0), "6 messages over 9 + 1 ms");
    }

    #[test]
    fn a_slower_producer_does_not_shrink_the_credit() {
        // A consumer that takes 0.1 ms per message behind a producer that sends one every
        // 1 ms, woken 20 µs after each: starved 0.88 ms of every 1 ms. Its rate stays its own
        // (about 8 K per second, the whole capacity), not the producer's 1 K (10 slots).
        let mut d = Debloat::new(10 * MS, 1).unwrap();
        let (mut active, mut clock, mut n) = (0u64, 0u64, 0usize);
        for _ in 0..100 {
            active += 100_000;
            clock += 100_000;
            n += 1;
            let woken = clock + 880_000;
            clock = woken + 20_000;
            d.resumed(900_000, Some(woken), || clock);
            let now = n;
            d.sample(active, move |_| now);
        }
        let r = d.rate(0).unwrap();
        assert!((r - 1e9 / 120_000.0).abs() < 1.0, "{r}");
        assert_eq!(d.limit(0, 16), 16);
    }

    #[test]
    fn each_edge_gets_its_share_and_counts_wrap() {
        let mut d = Debloat::new(10 * MS, 3).unwrap();
        // Edge 0's count is about to wrap.
        let base = usize::MAX - 2;
        d.edges[0].0 = base;
        // Over 10 ms: edge 0 gave 12 (across the wrap), edge 1 gave 3, edge 2 nothing.
        assert!(d.sample(10_000_000, |i| [base.wrapping_add(12), 3, 0][i]));
        assert_eq!(d.rate(0), Some(1200.0));
        assert_eq!(d.rate(1), Some(300.0));
        assert_eq!(d.limit(0, 16), 12);
        assert_eq!(d.limit(1, 16), 3);
        assert_eq!(
            d.limit(2, 16),
            MIN_CREDIT_LIMIT,
            "a quiet edge keeps two slots"
        );
    }
}
