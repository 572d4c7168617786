//! State round trips of the three joins: snapshot part-way, restore at another parallelism by
//! key group, and the pairs equal an uninterrupted run's.

use std::time::Duration;

use proptest::prelude::*;
use weir_runtime::{Operator, Timestamp};

use super::{InnerJoin, IntervalBounds, IntervalJoin, JoinKeys, JoinOptions, JoinSide, WindowJoin};
use crate::keyed::process::ManualClock;
use crate::snapshot::testing::{round_trip, Step};
use crate::snapshot::{KeyGrouping, KeyedSnapshot};

/// `(key, event time)` on both sides.
type Row = (u16, i64);
type In = JoinSide<Row, Row>;

/// A row's key.
type KeyFn = fn(&Row) -> u16;

fn keys() -> JoinKeys<u16, KeyFn, KeyFn> {
    JoinKeys::new(|a: &Row| a.0, |b: &Row| b.0)
}

fn time(r: &Row) -> Timestamp {
    Timestamp(r.1)
}

fn group_of(g: &KeyGrouping, r: &In) -> u32 {
    match r {
        JoinSide::Left(a) => g.group(&a.0),
        JoinSide::Right(b) => g.group(&b.0),
    }
}

/// Rows of both sides about in time order (some behind the watermark), watermarks rising.
fn steps() -> impl Strategy<Value = Vec<Step<In>>> {
    let row = (any::<bool>(), 0u16..12, 0i64..10, -12i64..4);
    let step = prop_oneof![
        3 => prop::collection::vec(row, 1..10),
        1 => Just(Vec::new()),
    ];
    prop::collection::vec((step, 0i64..6), 1..40).prop_map(|parts| {
        let (mut now, mut wm, mut steps) = (0i64, i64::MIN, Vec::new());
        for (rows, advance) in parts {
            if rows.is_empty() {
                wm = wm.max(now - 4);
                steps.push(Step::Wm(wm));
                continue;
            }
            now += advance;
            steps.push(Step::Rows(
                rows.into_iter()
                    .map(|(left, k, dt, jitter)| {
                        let row = (k, now + dt + jitter);
                        if left {
                            JoinSide::Left(row)
                        } else {
                            JoinSide::Right(row)
                        }
                    })
                    .collect(),
            ));
        }
        steps
    })
}

fn check<O>(
    make: impl Fn() -> O,
    steps: &[Step<In>],
    cut: usize,
    ps: (usize, usize),
) -> Result<(), TestCaseError>
where
    O: Operator<Input = Vec<In>, Output = Vec<(Row, Row)>> + KeyedSnapshot,
{
    let rt = round_trip(make, steps, cut, ps, KeyGrouping::default(), group_of)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(rt.got, rt.expected);
    prop_assert_eq!(rt.after, rt.before, "the same rows and bytes are held");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn an_interval_join_restored_at_any_parallelism_pairs_as_an_uninterrupted_one(
        steps in steps(),
        cut in 0usize..40,
        p1 in 1usize..4,
        p2 in 1usize..5,
    ) {
        let make = || IntervalJoin::new(keys(), IntervalBounds::new(-3, 5), time, time);
        check(make, &steps, cut, (p1, p2))?;
    }

    #[test]
    fn a_window_join_restored_at_any_parallelism_pairs_as_an_uninterrupted_one(
        steps in steps(),
        cut in 0usize..40,
        p1 in 1usize..4,
        p2 in 1usize..5,
    ) {
        let make = || WindowJoin::new(keys(), 8, time, time);
        check(make, &steps, cut, (p1, p2))?;
    }

    #[test]
    fn a_regular_join_restored_at_any_parallelism_pairs_as_an_uninterrupted_one(
        steps in steps(),
        cut in 0usize..40,
        p1 in 1usize..4,
        p2 in 1usize..5,
    ) {
        // The clock stands still: deadlines are carried over, not reached.
        let options = JoinOptions::default()
            .ttl(Duration::from_millis(100))
            .clock(ManualClock::new(Timestamp(0)));
        let make = || InnerJoin::new(keys(), &options);
        check(make, &steps, cut, (p1, p2))?;
    }
}
