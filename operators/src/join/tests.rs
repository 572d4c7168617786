//! Joins driven by hand: results against a nested-loop reference, state against the rows a
//! reference says must still be held after every watermark.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::task::{Context, Waker};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy;
use weir_runtime::{Message, Operator, Output, Timestamp};

use super::*;
use crate::keyed::process::ManualClock;

/// (key, event time, id)
type Row = (u8, i64, u32);

type KeyOf = fn(&Row) -> u8;

fn keys() -> JoinKeys<u8, KeyOf, KeyOf> {
    JoinKeys {
        left: |r: &Row| r.0,
        right: |r: &Row| r.0,
        _key: PhantomData,
    }
}

fn time(r: &Row) -> Timestamp {
    Timestamp(r.1)
}

/// What the operator is fed: rows of either side, and watermarks.
#[derive(Clone, Debug)]
enum Step {
    Row(JoinSide<Row, Row>),
    Watermark(Timestamp),
}

/// Rows of one side in arrival order, each at most `disorder` ms behind the largest before it.
fn side(max_rows: usize, disorder: i64) -> impl Strategy<Value = Vec<(u8, i64)>> {
    prop::collection::vec((0u8..3, 0i64..4, 0..=disorder), 0..max_rows).prop_map(|steps| {
        let mut base = 0;
        steps
            .into_iter()
            .map(|(key, gap, jitter)| {
                base += gap;
                (key, base + jitter)
            })
            .collect()
    })
}

/// Interleaves both sides (`order[i]` picks the side of step i), with the watermark both sides
/// allow (`min(max_side − disorder)`) after every step that moves it, then `last`.
fn script(
    left: &[(u8, i64)],
    right: &[(u8, i64)],
    order: &[bool],
    disorder: i64,
    last: Timestamp,
) -> Vec<Step> {
    let (mut l, mut r) = (0, 0);
    let (mut max_l, mut max_r) = (None::<i64>, None::<i64>);
    let mut wm = None;
    let mut steps = Vec::new();
    let mut id = 0;
    for pick_left in order.iter().copied().chain(std::iter::repeat(true)) {
        if l == left.len() && r == right.len() {
            break;
        }
        let take_left = (pick_left && l < left.len()) || r == right.len();
        id += 1;
        if take_left {
            let (k, t) = left[l];
            l += 1;
            max_l = Some(max_l.map_or(t, |m: i64| m.max(t)));
            steps.push(Step::Row(JoinSide::Left((k, t, id))));
        } else {
            let (k, t) = right[r];
            r += 1;
            max_r = Some(max_r.map_or(t, |m: i64| m.max(t)));
            steps.push(Step::Row(JoinSide::Right((k, t, id))));
        }
        if let (Some(a), Some(b)) = (max_l, max_r) {
            let w = Timestamp(a.min(b) - disorder);
            if wm.is_none_or(|p| w > p) {
                wm = Some(w);
                steps.push(Step::Watermark(w));
            }
        }
    }
    steps.push(Step::Watermark(last));
    steps
}

fn rows_of(steps: &[Step]) -> (Vec<Row>, Vec<Row>) {
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for s in steps {
        match s {
            Step::Row(JoinSide::Left(a)) => l.push(*a),
            Step::Row(JoinSide::Right(b)) => r.push(*b),
            Step::Watermark(_) => {}
        }
    }
    (l, r)
}

fn pairs_of(out: &mut Output<Vec<(Row, Row)>>, into: &mut Vec<(Row, Row)>) {
    out.flush();
    for m in out.drain() {
        if let Message::Data(b) = m {
            into.extend(b);
        }
    }
}

/// Feeds `steps` one at a time; after each watermark calls `check(watermark, rows so far, op)`.
fn drive<O>(
    op: &mut O,
    steps: &[Step],
    mut check: impl FnMut(Timestamp, &[Step], &O),
) -> Vec<(Row, Row)>
where
    O: Operator<Input = Vec<JoinSide<Row, Row>>, Output = Vec<(Row, Row)>>,
{
    let mut out = Output::new(7);
    let mut pairs = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Row(row) => op.on_batch(0, vec![row.clone()], &mut out).unwrap(),
            Step::Watermark(w) => {
                op.on_watermark(*w, &mut out).unwrap();
                check(*w, &steps[..=i], op);
            }
        }
        pairs_of(&mut out, &mut pairs);
    }
    pairs.sort();
    pairs
}

fn nested_loop(
    left: &[Row],
    right: &[Row],
    matches: impl Fn(&Row, &Row) -> bool,
) -> Vec<(Row, Row)> {
    let mut pairs = Vec::new();
    for a in left {
        for b in right {
            if a.0 == b.0 && matches(a, b) {
                pairs.push((*a, *b));
            }
        }
    }
    pairs.sort();
    pairs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn interval_join_equals_nested_loop_and_holds_only_what_can_still_match(
        left in side(24, 6),
        right in side(24, 6),
        order in prop::collection::vec(any::<bool>(), 48),
        (lo, width) in (-8i64..8, 0i64..8),
    ) {
        let hi = lo + width;
        let last = left.iter().chain(&right).map(|r| r.1).max().unwrap_or(0) + lo.abs() + hi.abs() + 1;
        let steps = script(&left, &right, &order, 6, Timestamp(last));
        let mut op = IntervalJoin::new(keys(), IntervalBounds::new(lo, hi), time, time);
        let got = drive(&mut op, &steps, |w, seen, op| {
            // A left row is needed while t − lo ≥ w, a right row while t + hi ≥ w.
            let held: BTreeSet<u8> = seen
                .iter()
                .filter_map(|s| match s {
                    Step::Row(JoinSide::Left(a)) if a.1 - lo >= w.0 => Some(a.0),
                    Step::Row(JoinSide::Right(b)) if b.1 + hi >= w.0 => Some(b.0),
                    _ => None,
                })
                .collect();
            assert_eq!(op.state_size().unwrap().keys, held.len() as u64, "keys held at {w:?}");
        });
        let (l, r) = rows_of(&steps);
        prop_assert_eq!(got, nested_loop(&l, &r, |a, b| b.1 + lo <= a.1 && a.1 <= b.1 + hi));
        prop_assert_eq!(op.state_size().unwrap(), weir_runtime::StateSize::default());
    }

    #[test]
    fn window_join_equals_nested_loop_and_frees_fired_windows(
        left in side(24, 6),
        right in side(24, 6),
        order in prop::collection::vec(any::<bool>(), 48),
        size in 1i64..12,
    ) {
        let last = left.iter().chain(&right).map(|r| r.1).max().unwrap_or(0) + size + 1;
        let steps = script(&left, &right, &order, 6, Timestamp(last));
        let mut op = WindowJoin::new(keys(), size, time, time);
        let window = |t: i64| t.div_euclid(size);
        let got = drive(&mut op, &steps, |w, seen, op| {
            let open: BTreeSet<(u8, i64)> = seen
                .iter()
                .filter_map(|s| match s {
                    Step::Row(JoinSide::Left(r) | JoinSide::Right(r))
                        if (window(r.1) + 1) * size > w.0 => Some((r.0, window(r.1))),
                    _ => None,
                })
                .collect();
            assert_eq!(op.state_size().unwrap().keys, open.len() as u64, "windows open at {w:?}");
        });
        let (l, r) = rows_of(&steps);
        prop_assert_eq!(got, nested_loop(&l, &r, |a, b| window(a.1) == window(b.1)));
        prop_assert_eq!(op.state_size().unwrap(), weir_runtime::StateSize::default());
    }
}

#[test]
fn interval_join_bounds_are_inclusive() {
    let mut op = IntervalJoin::new(keys(), IntervalBounds::new(-2, 3), time, time);
    let mut out = Output::new(64);
    let rights = [(0, 10, 1), (0, 7, 2), (0, 12, 3), (0, 6, 4), (0, 13, 5)];
    let batch = rights.iter().map(|r| JoinSide::Right(*r)).collect();
    op.on_batch(0, batch, &mut out).unwrap();
    // 10 ∈ [tb − 2, tb + 3] for tb ∈ 7..=12: rows at 7, 10 and 12 join, 6 and 13 do not.
    op.on_batch(
        0,
        vec![JoinSide::Left((0, 10, 0)), JoinSide::Left((1, 10, 9))],
        &mut out,
    )
    .unwrap();
    let mut pairs = Vec::new();
    pairs_of(&mut out, &mut pairs);
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ((0, 10, 0), (0, 7, 2)),
            ((0, 10, 0), (0, 10, 1)),
            ((0, 10, 0), (0, 12, 3))
        ]
    );
}

#[test]
fn window_join_fires_at_the_window_end_not_before() {
    let mut op = WindowJoin::new(keys(), 10, time, time);
    let mut out = Output::new(64);
    let batch = vec![
        JoinSide::Left((1, 0, 0)),
        JoinSide::Right((1, 9, 1)),
        JoinSide::Right((1, 10, 2)),
    ];
    op.on_batch(0, batch, &mut out).unwrap();
    let mut pairs = Vec::new();
    op.on_watermark(Timestamp(9), &mut out).unwrap();
    pairs_of(&mut out, &mut pairs);
    assert!(pairs.is_empty(), "window [0, 10) still open at 9");
    op.on_watermark(Timestamp(10), &mut out).unwrap();
    pairs_of(&mut out, &mut pairs);
    assert_eq!(pairs, [((1, 0, 0), (1, 9, 1))]);
    assert_eq!(
        op.state_size().unwrap().keys,
        1,
        "window [10, 20) holds one right row"
    );
}

#[test]
fn regular_join_ttl_frees_each_side_after_its_last_row() {
    let clock = ManualClock::new(Timestamp(1_000));
    let options = JoinOptions::default()
        .ttl(Duration::from_millis(100))
        .clock(clock.clone());
    let mut op = InnerJoin::new(keys(), &options);
    let mut out = Output::new(64);
    let mut cx = Context::from_waker(Waker::noop());
    op.on_batch(
        0,
        vec![JoinSide::Left((1, 0, 1)), JoinSide::Left((2, 0, 2))],
        &mut out,
    )
    .unwrap();
    clock.advance(60);
    // Key 1's left rows are written again at 1 060: they live until 1 160, key 2's until 1 100.
    op.on_batch(
        0,
        vec![JoinSide::Left((1, 0, 3)), JoinSide::Right((2, 0, 4))],
        &mut out,
    )
    .unwrap();
    let mut pairs = Vec::new();
    pairs_of(&mut out, &mut pairs);
    assert_eq!(pairs, [((2, 0, 2), (2, 0, 4))]);
    let full = op.state_size().unwrap();
    assert_eq!(full.keys, 3);
    assert!(
        op.poll_flush(&mut cx, &mut out).is_pending(),
        "waits for the first expiry"
    );
    clock.advance(40);
    assert!(op.poll_flush(&mut cx, &mut out).is_pending());
    assert_eq!(
        op.state_size().unwrap().keys,
        2,
        "key 2's left rows expired at 1 100"
    );
    clock.advance(60);
    assert!(
        op.poll_flush(&mut cx, &mut out).is_ready(),
        "nothing left to wait for"
    );
    assert_eq!(op.state_size().unwrap(), weir_runtime::StateSize::default());
    // Expired partners are not joined.
    op.on_batch(0, vec![JoinSide::Right((1, 0, 5))], &mut out)
        .unwrap();
    pairs_of(&mut out, &mut pairs);
    assert_eq!(pairs.len(), 1);
}

#[test]
fn regular_join_without_ttl_joins_every_pair_once() {
    let mut op = InnerJoin::new(keys(), &JoinOptions::default());
    let mut out = Output::new(64);
    let rows: Vec<JoinSide<Row, Row>> = (0..12u32)
        .map(|i| {
            let r = ((i % 3) as u8, 0, i);
            if i % 2 == 0 {
                JoinSide::Left(r)
            } else {
                JoinSide::Right(r)
            }
        })
        .collect();
    let (l, r) = rows_of(&rows.iter().cloned().map(Step::Row).collect::<Vec<_>>());
    op.on_batch(0, rows, &mut out).unwrap();
    let mut pairs = Vec::new();
    pairs_of(&mut out, &mut pairs);
    pairs.sort();
    assert_eq!(pairs, nested_loop(&l, &r, |_, _| true));
    assert_eq!(
        op.state_size().unwrap().keys,
        6,
        "3 keys on each side, kept for good"
    );
}

/// The rows of each side that were not late when they arrived (`late(ts, watermark)`).
fn on_time(steps: &[Step], late: impl Fn(i64, i64) -> bool) -> (Vec<Row>, Vec<Row>) {
    let (mut l, mut r) = (Vec::new(), Vec::new());
    let mut wm = None;
    for s in steps {
        match s {
            Step::Watermark(w) => wm = Some(w.0),
            Step::Row(JoinSide::Left(a)) if wm.is_none_or(|w| !late(a.1, w)) => l.push(*a),
            Step::Row(JoinSide::Right(b)) if wm.is_none_or(|w| !late(b.1, w)) => r.push(*b),
            Step::Row(_) => {}
        }
    }
    (l, r)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Rows up to 10 ms out of order under a watermark trailing by 3 ms: some arrive late.
    #[test]
    fn interval_join_leaves_out_exactly_the_late_rows(
        left in side(24, 10),
        right in side(24, 10),
        order in prop::collection::vec(any::<bool>(), 48),
        (lo, width) in (-8i64..8, 0i64..8),
    ) {
        let hi = lo + width;
        let steps = script(&left, &right, &order, 3, Timestamp(1_000));
        let mut op = IntervalJoin::new(keys(), IntervalBounds::new(lo, hi), time, time);
        let got = drive(&mut op, &steps, |_, _, _| {});
        let (l, r) = on_time(&steps, |t, w| t < w);
        prop_assert_eq!(got, nested_loop(&l, &r, |a, b| b.1 + lo <= a.1 && a.1 <= b.1 + hi));
        prop_assert_eq!(op.state_size().unwrap(), weir_runtime::StateSize::default());
    }

    #[test]
    fn window_join_leaves_out_exactly_the_rows_of_fired_windows(
        left in side(24, 10),
        right in side(24, 10),
        order in prop::collection::vec(any::<bool>(), 48),
        size in 1i64..12,
    ) {
        let steps = script(&left, &right, &order, 3, Timestamp(1_000));
        let mut op = WindowJoin::new(keys(), size, time, time);
        let got = drive(&mut op, &steps, |_, _, _| {});
        let window = |t: i64| t.div_euclid(size);
        let (l, r) = on_time(&steps, |t, w| (window(t) + 1) * size <= w);
        prop_assert_eq!(got, nested_loop(&l, &r, |a, b| window(a.1) == window(b.1)));
        prop_assert_eq!(op.state_size().unwrap(), weir_runtime::StateSize::default());
    }

    /// A regular join with a 50 ms time-to-live against a model that keeps, per side and key,
    /// the rows and the time of the last one.
    #[test]
    fn regular_join_with_ttl_equals_a_model_of_expiring_sides(
        steps in prop::collection::vec(
            prop_oneof![
                3 => (any::<bool>(), 0u8..3).prop_map(|(left, key)| (Some((left, key)), 0i64)),
                1 => (0i64..40).prop_map(|ms| (None, ms)),
            ],
            0..60,
        ),
    ) {
        const TTL: i64 = 50;
        let clock = ManualClock::new(Timestamp(0));
        let options = JoinOptions::default()
            .ttl(Duration::from_millis(TTL as u64))
            .clock(clock.clone());
        let mut op = InnerJoin::new(keys(), &options);
        let mut out = Output::new(5);
        let mut cx = Context::from_waker(Waker::noop());
        // (is left, key) → (rows, last write)
        let mut model: std::collections::HashMap<(bool, u8), (Vec<Row>, i64)> = Default::default();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut now = 0;
        for (id, (row, ms)) in steps.into_iter().enumerate() {
            match row {
                Some((left, key)) => {
                    let r = (key, 0, id as u32);
                    if let Some((rows, last)) = model.get(&(!left, key)) {
                        if last + TTL > now {
                            for p in rows {
                                expected.push(if left { (r, *p) } else { (*p, r) });
                            }
                        }
                    }
                    let own = model.entry((left, key)).or_insert((Vec::new(), now));
                    if own.1 + TTL <= now {
                        own.0.clear();
                    }
                    own.0.push(r);
                    own.1 = now;
                    let side = if left { JoinSide::Left(r) } else { JoinSide::Right(r) };
                    op.on_batch(0, vec![side], &mut out).unwrap();
                }
                None => {
                    clock.advance(ms);
                    now += ms;
                }
            }
            let _ = op.poll_flush(&mut cx, &mut out);
            model.retain(|_, (_, last)| *last + TTL > now);
            prop_assert_eq!(op.state_size().unwrap().keys, model.len() as u64);
            pairs_of(&mut out, &mut got);
        }
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}
