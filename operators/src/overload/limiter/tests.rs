use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::*;

/// A service with a true concurrency `capacity`: latency is flat up to it and grows in
/// proportion beyond it (requests queue); requests beyond `2 * capacity` are refused with 503.
struct Service {
    capacity: usize,
    base: Duration,
    /// Per-request latency jitter: each RTT is multiplied by a uniform `1 ± jitter`.
    jitter: f64,
    rng: SmallRng,
}

impl Service {
    fn new(capacity: usize, jitter: f64, seed: u64) -> Self {
        Self {
            capacity,
            base: Duration::from_millis(10),
            jitter,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// One round trip: the client sends everything its limit allows, then all answers arrive,
    /// refusals first (they are fast).
    fn round(&mut self, limiter: &mut AdaptiveConcurrency) {
        let mut sent: usize = 0;
        while limiter.try_acquire() {
            sent += 1;
        }
        let refused = sent.saturating_sub(2 * self.capacity);
        for _ in 0..refused {
            limiter.on_response(Duration::from_micros(200), Outcome::Overloaded);
        }
        let served = sent - refused;
        let latency =
            self.base.as_secs_f64() * served.max(self.capacity) as f64 / self.capacity as f64;
        for _ in 0..served {
            let noise = if self.jitter > 0.0 {
                self.rng.random_range(-self.jitter..=self.jitter)
            } else {
                0.0
            };
            let rtt = Duration::from_secs_f64(latency * (1.0 + noise));
            limiter.on_response(rtt, Outcome::Success);
        }
    }
}

fn limiter(initial: usize, max: usize) -> AdaptiveConcurrency {
    AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        initial,
        max,
        ..AdaptiveConcurrencyConfig::default()
    })
    .unwrap()
}

/// Runs `rounds` round trips and returns the limit after each.
fn run(limiter: &mut AdaptiveConcurrency, service: &mut Service, rounds: usize) -> Vec<usize> {
    (0..rounds)
        .map(|_| {
            service.round(limiter);
            limiter.limit()
        })
        .collect()
}

fn assert_settled_near(history: &[usize], capacity: usize) {
    let lo = capacity / 2;
    let hi = capacity * 3 / 2;
    for (i, &l) in history.iter().enumerate() {
        assert!(
            (lo..=hi).contains(&l),
            "round {i}: limit {l} left [{lo}, {hi}] (capacity {capacity})"
        );
    }
    let top = history.iter().copied().max().unwrap_or(0);
    assert!(
        top >= capacity,
        "the limit never probed up to capacity {capacity} (max {top})"
    );
}

#[test]
fn converges_near_the_true_concurrency() {
    for capacity in [10, 40, 100] {
        for initial in [1, 4, 300] {
            let mut lim = limiter(initial, 1000);
            let mut svc = Service::new(capacity, 0.0, 0);
            let history = run(&mut lim, &mut svc, 800);
            assert_settled_near(&history[400..], capacity);
        }
    }
}

#[test]
fn converges_under_latency_jitter() {
    for seed in 1..=3 {
        let mut lim = limiter(4, 1000);
        let mut svc = Service::new(40, 0.2, seed);
        let history = run(&mut lim, &mut svc, 800);
        assert_settled_near(&history[400..], 40);
    }
}

#[test]
fn recovers_after_the_service_gets_slower() {
    let mut lim = limiter(4, 1000);
    let mut svc = Service::new(40, 0.0, 0);
    run(&mut lim, &mut svc, 300);
    svc.base *= 3;
    let history = run(&mut lim, &mut svc, 1200);
    assert_settled_near(&history[800..], 40);
}

#[test]
fn each_flight_of_429s_costs_one_decrease() {
    let mut lim = limiter(64, 256);
    let mut limits = Vec::new();
    for _ in 0..10 {
        let mut sent = 0;
        while lim.try_acquire() {
            sent += 1;
        }
        for _ in 0..sent {
            lim.on_response(Duration::from_millis(1), Outcome::from_status(429));
        }
        limits.push(lim.limit());
    }
    // floor(l * 0.7) each flight, down to min = 1.
    assert_eq!(limits, vec![44, 30, 21, 14, 9, 6, 4, 2, 1, 1]);
    assert_eq!(lim.stats().overload_decreases, 10);
    assert_eq!(lim.in_flight(), 0);
}

#[test]
fn a_single_flight_of_429s_decreases_once() {
    let mut lim = limiter(64, 256);
    while lim.try_acquire() {}
    for _ in 0..64 {
        lim.on_response(Duration::from_millis(1), Outcome::Overloaded);
    }
    assert_eq!(lim.limit(), 44);
    assert_eq!(lim.stats().ignored_in_recovery, 63);
}

#[test]
fn an_unused_limit_is_not_raised() {
    let mut lim = limiter(10, 100);
    for _ in 0..200 {
        assert!(lim.try_acquire());
        assert!(lim.try_acquire());
        lim.on_response(Duration::from_millis(5), Outcome::Success);
        lim.on_response(Duration::from_millis(5), Outcome::Success);
    }
    assert_eq!(lim.limit(), 10);
    assert_eq!(lim.stats().windows, 25);
}

#[test]
fn failures_carry_no_signal() {
    let mut lim = limiter(8, 100);
    for _ in 0..40 {
        while lim.try_acquire() {}
        while lim.in_flight() > 0 {
            lim.on_response(Duration::from_secs(30), Outcome::Failed);
        }
    }
    assert_eq!(lim.limit(), 8);
    assert_eq!(lim.baseline_rtt(), None);
}

#[test]
fn rtt_rise_needs_consecutive_windows() {
    let mut lim = limiter(16, 100);
    let window = |lim: &mut AdaptiveConcurrency, ms| {
        while lim.try_acquire() {}
        while lim.in_flight() > 0 {
            lim.on_response(Duration::from_millis(ms), Outcome::Success);
        }
    };
    window(&mut lim, 10); // baseline 10 ms, limit 17
    window(&mut lim, 20);
    window(&mut lim, 20);
    assert_eq!(lim.limit(), 17, "two slow windows hold the limit");
    window(&mut lim, 10);
    window(&mut lim, 20);
    window(&mut lim, 20);
    assert_eq!(lim.limit(), 18, "a good window in between resets the count");
    window(&mut lim, 20);
    assert_eq!(
        lim.limit(),
        12,
        "the third slow window in a row cuts: floor(18 * 0.7)"
    );
    assert_eq!(lim.stats().rtt_decreases, 1);
}

#[test]
fn status_classification() {
    assert_eq!(Outcome::from_status(200), Outcome::Success);
    assert_eq!(Outcome::from_status(304), Outcome::Success);
    assert_eq!(Outcome::from_status(429), Outcome::Overloaded);
    assert_eq!(Outcome::from_status(503), Outcome::Overloaded);
    assert_eq!(Outcome::from_status(500), Outcome::Failed);
    assert_eq!(Outcome::from_status(400), Outcome::Failed);
}

#[test]
fn invalid_configs_are_rejected() {
    let base = AdaptiveConcurrencyConfig::default();
    let bad = [
        AdaptiveConcurrencyConfig { min: 0, ..base },
        AdaptiveConcurrencyConfig {
            initial: 300,
            ..base
        },
        AdaptiveConcurrencyConfig {
            min: 5,
            initial: 4,
            ..base
        },
        AdaptiveConcurrencyConfig {
            rtt_alpha: 0.0,
            ..base
        },
        AdaptiveConcurrencyConfig {
            threshold_ratio: 1.0,
            ..base
        },
        AdaptiveConcurrencyConfig {
            decrease_factor: 1.0,
            ..base
        },
        AdaptiveConcurrencyConfig {
            min_window: 0,
            ..base
        },
        AdaptiveConcurrencyConfig {
            rise_windows: 0,
            ..base
        },
    ];
    for config in bad {
        assert!(AdaptiveConcurrency::new(config).is_err(), "{config:?}");
    }
    assert!(AdaptiveConcurrency::new(base).is_ok());
}

#[derive(Debug, Clone)]
enum Event {
    Acquire,
    Respond(u64, u8),
    Cancel,
}

proptest! {
    /// Whatever happens, the limit stays in `[min, max]` and admission respects it.
    #[test]
    fn limit_never_leaves_its_bounds(
        min in 1usize..8,
        span in 0usize..40,
        events in proptest::collection::vec(
            prop_oneof![
                3 => Just(Event::Acquire),
                3 => (1u64..500, 0u8..3).prop_map(|(ms, o)| Event::Respond(ms, o)),
                1 => Just(Event::Cancel),
            ],
            0..400,
        ),
    ) {
        let config = AdaptiveConcurrencyConfig {
            min,
            initial: min + span / 2,
            max: min + span,
            ..AdaptiveConcurrencyConfig::default()
        };
        let mut lim = AdaptiveConcurrency::new(config).unwrap();
        for event in events {
            match event {
                Event::Acquire => {
                    let before = lim.in_flight();
                    if lim.try_acquire() {
                        prop_assert!(lim.in_flight() <= lim.limit());
                    } else {
                        prop_assert!(before >= lim.limit());
                    }
                }
                Event::Respond(ms, o) => {
                    let outcome = [Outcome::Success, Outcome::Overloaded, Outcome::Failed][o as usize];
                    lim.on_response(Duration::from_millis(ms), outcome);
                }
                Event::Cancel => lim.on_cancel(),
            }
            prop_assert!((config.min..=config.max).contains(&lim.limit()));
        }
    }
}
