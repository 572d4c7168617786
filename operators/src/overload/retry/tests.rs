use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn statuses_are_classified() {
    for status in [408, 429, 502, 503, 504] {
        assert_eq!(classify(status), Retryability::Retryable, "{status}");
    }
    for status in [200, 301, 400, 401, 403, 404, 409, 413, 422, 500, 501, 505] {
        assert_eq!(classify(status), Retryability::NonRetryable, "{status}");
    }
    assert_eq!(Failure::Transport.retryability(), Retryability::Retryable);
    assert_eq!(
        Failure::Status(404).retryability(),
        Retryability::NonRetryable
    );
}

#[test]
fn ceiling_doubles_up_to_the_cap() {
    let p = RetryPolicy::default();
    let ceilings: Vec<u128> = (1..=9).map(|n| p.ceiling(n).as_millis()).collect();
    assert_eq!(
        ceilings,
        vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
    );
    assert_eq!(p.ceiling(0), 100 * MS, "retry 0 is read as the first");
    assert_eq!(p.ceiling(u32::MAX), p.cap, "no overflow");
}

#[test]
fn full_jitter_spreads_over_the_whole_range() {
    let p = RetryPolicy::default();
    let mut rng = SmallRng::seed_from_u64(1);
    let samples: Vec<Duration> = (0..2000).map(|_| p.backoff(3, &mut rng)).collect();
    let ceiling = p.ceiling(3);
    assert!(samples.iter().all(|&d| d <= ceiling));
    let below_tenth = samples.iter().filter(|&&d| d < ceiling / 10).count();
    let above_nine_tenths = samples.iter().filter(|&&d| d > ceiling * 9 / 10).count();
    // Uniform: about 200 each; a jitter that clustered would miss one of them.
    assert!((120..280).contains(&below_tenth), "{below_tenth}");
    assert!(
        (120..280).contains(&above_nine_tenths),
        "{above_nine_tenths}"
    );
}

#[test]
fn decide_stops_on_each_limit() {
    let p = RetryPolicy::default();
    let mut rng = SmallRng::seed_from_u64(2);
    let retryable = Retryability::Retryable;
    assert_eq!(
        p.decide(
            1,
            Duration::ZERO,
            Retryability::NonRetryable,
            None,
            &mut rng
        ),
        RetryDecision::GiveUp(GiveUp::NonRetryable)
    );
    assert!(matches!(
        p.decide(2, Duration::ZERO, retryable, None, &mut rng),
        RetryDecision::RetryAfter(d) if d <= 200 * MS
    ));
    assert_eq!(
        p.decide(3, Duration::ZERO, retryable, None, &mut rng),
        RetryDecision::GiveUp(GiveUp::AttemptsExhausted)
    );
    assert_eq!(
        p.decide(1, p.deadline, retryable, None, &mut rng),
        RetryDecision::GiveUp(GiveUp::DeadlineExceeded)
    );
}

#[test]
fn retry_after_is_a_floor_and_respects_the_deadline() {
    let p = RetryPolicy::default();
    let mut rng = SmallRng::seed_from_u64(3);
    let retryable = Retryability::Retryable;
    assert_eq!(
        p.decide(1, Duration::ZERO, retryable, Some(5 * 1000 * MS), &mut rng),
        RetryDecision::RetryAfter(5 * 1000 * MS)
    );
    assert_eq!(
        p.decide(1, 26 * 1000 * MS, retryable, Some(5 * 1000 * MS), &mut rng),
        RetryDecision::GiveUp(GiveUp::DeadlineExceeded)
    );
}

#[test]
fn budget_allows_ratio_of_requests_plus_the_floor() {
    let t0 = Instant::now();
    let mut budget = RetryBudget::new(RetryBudgetConfig::default(), t0);
    for _ in 0..100 {
        budget.deposit();
    }
    assert_eq!(budget.available(t0), 20);
    let granted = (0..50).filter(|_| budget.try_withdraw(t0)).count();
    assert_eq!(granted, 20, "10 % of 100 requests plus a full 10/s floor");
    // Half a second later the floor has refilled by five.
    let granted = (0..50)
        .filter(|_| budget.try_withdraw(t0 + 500 * MS))
        .count();
    assert_eq!(granted, 5);
    // The floor holds at most one second's worth, however long the pause.
    assert_eq!(budget.available(t0 + 3600 * 1000 * MS), 10);
}

#[test]
fn deposits_are_capped() {
    let t0 = Instant::now();
    let config = RetryBudgetConfig {
        min_retries_per_sec: 0,
        ..RetryBudgetConfig::default()
    };
    let mut budget = RetryBudget::new(config, t0);
    for _ in 0..1_000_000 {
        budget.deposit();
    }
    let granted = (0..1000).filter(|_| budget.try_withdraw(t0)).count();
    assert_eq!(granted, 100);
}

#[test]
fn a_zero_budget_never_retries() {
    let t0 = Instant::now();
    let config = RetryBudgetConfig {
        ratio: 0.0,
        min_retries_per_sec: 0,
        max_tokens: 100,
    };
    let mut budget = RetryBudget::new(config, t0);
    for i in 0..100 {
        budget.deposit();
        assert!(!budget.try_withdraw(t0 + i * 1000 * MS));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Request,
    Retry,
    Wait(u64),
}

proptest! {
    /// Backoff always lies in `[0, min(cap, base * 2^(n-1))]`.
    #[test]
    fn backoff_is_bounded(
        base_ms in 1u64..10_000,
        cap_ms in 1u64..100_000,
        retry in 1u32..100,
        seed in any::<u64>(),
    ) {
        let p = RetryPolicy {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(cap_ms),
            ..RetryPolicy::default()
        };
        let mut rng = SmallRng::seed_from_u64(seed);
        let exact = u128::from(base_ms) * (1u128 << (retry - 1).min(100));
        let ceiling = exact.min(u128::from(cap_ms));
        prop_assert_eq!(p.ceiling(retry).as_millis(), ceiling);
        prop_assert!(p.backoff(retry, &mut rng) <= p.ceiling(retry));
    }

    /// Over any sequence, retries granted <= ratio * requests + floor allowance, where the
    /// floor allowance is `min_retries_per_sec` per second elapsed plus one second's burst.
    #[test]
    fn budget_bounds_retries(
        min_per_sec in 0u32..20,
        ratio_pct in 0u32..=100,
        ops in proptest::collection::vec(
            prop_oneof![
                10 => Just(Op::Request),
                4 => Just(Op::Retry),
                1 => (0u64..3000).prop_map(Op::Wait),
            ],
            0..600,
        ),
    ) {
        let t0 = Instant::now();
        let config = RetryBudgetConfig {
            ratio: f64::from(ratio_pct) / 100.0,
            min_retries_per_sec: min_per_sec,
            max_tokens: 1_000,
        };
        let mut budget = RetryBudget::new(config, t0);
        let (mut requests, mut granted, mut elapsed_ms) = (0u64, 0u64, 0u64);
        for op in ops {
            match op {
                Op::Request => {
                    budget.deposit();
                    requests += 1;
                }
                Op::Retry => {
                    if budget.try_withdraw(t0 + Duration::from_millis(elapsed_ms)) {
                        granted += 1;
                    }
                }
                Op::Wait(ms) => elapsed_ms += ms,
            }
            // In thousandths of a token, exactly.
            let allowance = requests * u64::from(ratio_pct) * 10
                + u64::from(min_per_sec) * (elapsed_ms + 1000);
            prop_assert!(granted * 1000 <= allowance, "{} retries, allowance {}", granted, allowance);
        }
    }
}
