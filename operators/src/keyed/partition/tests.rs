//! Routing of the partitioners: every row lands once, within its key's allowed instances, and
//! two-choice routing follows credit.

use std::num::NonZeroUsize;

use proptest::prelude::{prop, prop_assert, prop_assert_eq, proptest, ProptestConfig};
use proptest::strategy::Strategy as Gen;

use super::*;
use crate::keyed::route::{hash_target, two_choices, KeyGroups, KeyHasher, Router, SplitConfig};

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("test sizes are non-zero")
}

fn hasher() -> KeyHasher {
    KeyHasher::default()
}

fn partitioner(
    n: usize,
    strategy: Strategy,
    signal: LoadSignal,
) -> KeyPartitioner<u64, impl Fn(&u64) -> u64> {
    let h = hasher();
    KeyPartitioner::new(n, strategy, signal, move |k: &u64| h.hash_u64(*k))
}

fn split_strategy() -> Strategy {
    Strategy::HotKeySplit(
        SplitConfig::default()
            .with_threshold(0.05)
            .expect("a valid share")
            .with_warmup(0),
    )
}

fn load(credit: usize) -> TargetLoad {
    TargetLoad {
        credit,
        ..TargetLoad::default()
    }
}

/// Skewed keys: small values much more often (`k * k / 64` over `k` in `0..64`... squared).
fn skewed_keys() -> impl Gen<Value = Vec<u64>> {
    prop::collection::vec((0u64..40).prop_map(|k| k * k / 40), 0..300)
}

fn loads_strategy(n: usize) -> impl Gen<Value = Vec<TargetLoad>> {
    prop::collection::vec(
        (0usize..17, prop::bool::weighted(0.1)).prop_map(|(credit, closed)| TargetLoad {
            credit,
            buffered_bytes: 0,
            closed,
        }),
        n,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_row_lands_once_within_its_allowed_instances(
        batches in prop::collection::vec(skewed_keys(), 1..6),
        n in 1usize..7,
        loads in prop::collection::vec(loads_strategy(6), 6),
        strategy_pick in 0usize..3,
        signal_pick in 0usize..3,
    ) {
        let strategy = [Strategy::Hash, Strategy::Pkg, split_strategy()][strategy_pick];
        let signal = [LoadSignal::Credit, LoadSignal::CreditFirst, LoadSignal::SentCount][signal_pick];
        let mut p = partitioner(n, strategy, signal);
        // A twin routes the same rows one by one, so each choice can be checked against the
        // key's allowed instances at that moment (a hot key's list can grow and shrink).
        let mut twin = partitioner(n, strategy, signal);
        for (b, batch) in batches.iter().enumerate() {
            let loads = &loads[b % loads.len()][..n];
            let mut want: Vec<(usize, Vec<u64>)> = Vec::new();
            // An empty batch routes nothing, so the partitioner takes no reading of the loads
            // for it either: the twin skips it too.
            if batch.is_empty() {
                let mut out = Vec::new();
                p.partition(batch.clone(), loads, &mut out);
                prop_assert!(out.is_empty());
                continue;
            }
            twin.observe(loads);
            for &k in batch {
                let t = twin.route(&k, loads);
                let h = hasher().hash_u64(k);
                let allowed: Vec<usize> = match twin.router() {
                    Router::Hash(..) => vec![hash_target(h, nz(n))],
                    Router::Pkg(_) => {
                        let (a, b) = two_choices(h, nz(n));
                        vec![a, b]
                    }
                    Router::HotKeySplit(split) => split.allowed(h),
                };
                prop_assert!(allowed.contains(&t), "key {} went to {} outside {:?}", k, t, allowed);
                match want.iter_mut().find(|(x, _)| *x == t) {
                    Some((_, piece)) => piece.push(k),
                    None => want.push((t, vec![k])),
                }
            }
            want.sort();
            let mut out = Vec::new();
            p.partition(batch.clone(), loads, &mut out);
            // The batch's pieces are exactly the rows routed one by one: every row once, in
            // order within its piece, each target once, no empty piece.
            prop_assert_eq!(out, want);
        }
    }
}

#[test]
fn pkg_steers_rows_away_from_a_backed_up_candidate() {
    let n = 8;
    let key = 42u64;
    let (a, b) = two_choices(hasher().hash_u64(key), nz(n));
    let mut loads = vec![load(16); n];
    let mut p = partitioner(n, Strategy::Pkg, LoadSignal::Credit);
    let mut out = Vec::new();
    // Everyone keeps up: the sent count alternates.
    p.partition(vec![key; 10], &loads, &mut out);
    assert_eq!(
        out,
        vec![(a.min(b), vec![key; 5]), (a.max(b), vec![key; 5])]
    );
    // `a` has not granted 10 messages back: about 10 pieces × 5 rows wait there.
    loads[a] = load(6);
    out.clear();
    p.partition(vec![key; 20], &loads, &mut out);
    assert_eq!(out, vec![(b, vec![key; 20])]);
    // Caught up again: `a` gets rows until the counts are level.
    loads[a] = load(16);
    out.clear();
    p.partition(vec![key; 20], &loads, &mut out);
    assert_eq!(out, vec![(a, vec![key; 20])]);
}

#[test]
fn credit_first_ranks_by_credit_then_sent_count() {
    let n = 8;
    let key = 42u64;
    let (a, b) = two_choices(hasher().hash_u64(key), nz(n));
    let mut loads = vec![load(8); n];
    loads[a] = load(1);
    loads[b] = load(9);
    let mut p = partitioner(n, Strategy::Pkg, LoadSignal::CreditFirst);
    let mut out = Vec::new();
    p.partition(vec![key; 10], &loads, &mut out);
    assert_eq!(out, vec![(b, vec![key; 10])]);
    // Equal credit: the sent count decides, and `b` already has 10.
    loads[a] = load(9);
    out.clear();
    p.partition(vec![key; 20], &loads, &mut out);
    out.sort();
    let mut want = vec![(a, vec![key; 15]), (b, vec![key; 5])];
    want.sort();
    assert_eq!(out, want);
}

#[test]
fn a_closed_candidate_is_avoided_and_sent_count_ignores_credit() {
    let n = 4;
    let key = 7u64;
    let (a, b) = two_choices(hasher().hash_u64(key), nz(n));
    let mut loads = vec![load(16); n];
    loads[a].closed = true;
    let mut p = partitioner(n, Strategy::Pkg, LoadSignal::Credit);
    let mut out = Vec::new();
    p.partition(vec![key; 4], &loads, &mut out);
    assert_eq!(out, vec![(b, vec![key; 4])]);

    let mut flat = partitioner(n, Strategy::Pkg, LoadSignal::SentCount);
    loads[a].closed = false;
    loads[a].credit = 0;
    out.clear();
    flat.partition(vec![key; 4], &loads, &mut out);
    out.sort();
    let mut want = vec![(a, vec![key; 2]), (b, vec![key; 2])];
    want.sort();
    assert_eq!(out, want);
}

#[test]
fn a_hot_key_spreads_over_more_than_two_instances() {
    let n = 8;
    let mut p = partitioner(n, split_strategy(), LoadSignal::Credit);
    let mut out = Vec::new();
    // One key is the whole stream: with equal credit, the sent count spreads it everywhere.
    p.partition(vec![3u64; 800], &[load(16); 8], &mut out);
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|(_, piece)| piece.len() == 100));
}

#[test]
fn credit_rebalance_prefers_credit_then_round_robin() {
    let mut p = CreditRebalance::new();
    let equal = [load(4); 3];
    let picks: Vec<usize> = (0..6).map(|_| p.pick(&equal)).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    let uneven = [load(1), load(5), load(5)];
    let picks: Vec<usize> = (0..4).map(|_| p.pick(&uneven)).collect();
    assert_eq!(picks, [1, 2, 1, 2]);
    let mut closed = [load(9), load(0), load(0)];
    closed[0].closed = true;
    assert_ne!(p.pick(&closed), 0);
    let all_closed = [TargetLoad {
        closed: true,
        ..TargetLoad::default()
    }; 2];
    assert!(p.pick(&all_closed) < 2);
    assert_eq!(p.pick(&[]), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The batch router of `Strategy::Hash`: every row once, in the target the row-by-row
    /// router picks (the instance of its key group), in order within its piece.
    #[test]
    fn hash_batches_split_as_rows_route_one_by_one(
        batches in prop::collection::vec(prop::collection::vec(0u64..5_000, 0..700), 1..5),
        n in 1usize..200,
        count in 200usize..400,
    ) {
        let groups = KeyGroups::new(count).expect("a valid count");
        let h = hasher();
        let mut p = KeyPartitioner::with_key_groups(
            n,
            Strategy::Hash,
            LoadSignal::Credit,
            groups,
            move |k: &u64| h.hash_u64(*k),
        );
        let loads = vec![load(4); n];
        for batch in batches {
            let mut want: Vec<(usize, Vec<u64>)> = Vec::new();
            for &k in &batch {
                let t = groups.instance(groups.group(h.hash_u64(k)), nz(n));
                match want.iter_mut().find(|(x, _)| *x == t) {
                    Some((_, piece)) => piece.push(k),
                    None => want.push((t, vec![k])),
                }
            }
            want.sort();
            let mut out = Vec::new();
            p.partition(batch, &loads, &mut out);
            prop_assert_eq!(out, want);
        }
    }
}

#[test]
fn a_key_always_goes_to_its_key_groups_instance() {
    let h = hasher();
    let groups = KeyGroups::default();
    for n in [1usize, 2, 3, 5, 16, 100, 128] {
        // Two partitioners (two producers, or two runs) agree on every key.
        let mut a = partitioner(n, Strategy::Hash, LoadSignal::Credit);
        let mut b = partitioner(n, Strategy::Hash, LoadSignal::SentCount);
        let loads = vec![load(8); n];
        for k in 0..2_000u64 {
            let want = groups.instance(groups.group(h.hash_u64(k)), nz(n));
            assert_eq!(want, hash_target(h.hash_u64(k), nz(n)));
            assert_eq!(a.route(&k, &loads), want, "key {k}, {n} instances");
            assert_eq!(b.route(&k, &loads), want, "key {k}, {n} instances");
        }
    }
    // Pinned: the default hasher and key groups place key 42 in group 36, which is instance
    // 36 × 3 / 128 = 0 of 3 and 36 × 16 / 128 = 4 of 16.
    let g = groups.group(h.hash_u64(42));
    assert_eq!(g, (0x48de_daf4_52fe_a7db_u64 >> 57) as u32);
    assert_eq!(g, 36);
    assert_eq!(hash_target(h.hash_u64(42), nz(3)), 0);
    assert_eq!(hash_target(h.hash_u64(42), nz(16)), 4);
}

#[test]
fn batches_reuse_their_allocations() {
    let mut p = partitioner(4, Strategy::Hash, LoadSignal::Credit);
    let key = 42u64;
    let t = hash_target(hasher().hash_u64(key), nz(4));
    let batch = vec![key; 100];
    let ptr = batch.as_ptr();
    let mut out = Vec::new();
    p.partition(batch, &[load(4); 4], &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, t);
    assert_eq!(out[0].1.as_ptr(), ptr);
    // A split batch's pieces come from the spares, and the emptied batch becomes one.
    let others: Vec<u64> = (0..1000u64)
        .filter(|&k| hash_target(hasher().hash_u64(k), nz(4)) != t)
        .take(10)
        .collect();
    let spare: Vec<u64> = Vec::with_capacity(64);
    let spare_ptr = spare.as_ptr();
    p.recycle(spare);
    let mut batch = vec![key; 50];
    batch.extend_from_slice(&others[..1]);
    let ptr = batch.as_ptr();
    out.clear();
    p.partition(batch, &[load(4); 4], &mut out);
    assert_eq!(out.len(), 2);
    let big = out.iter().find(|(x, _)| *x == t).expect("the key's target");
    assert_eq!(big.1, vec![key; 50]);
    assert_eq!(big.1.as_ptr(), spare_ptr);
    let small = out.iter().find(|(x, _)| *x != t).expect("another target");
    assert_eq!(small.1, others[..1]);
    // The next split fills a piece into the first batch's allocation.
    let mut batch = vec![key; 20];
    batch.extend_from_slice(&others[1..3]);
    out.clear();
    p.partition(batch, &[load(4); 4], &mut out);
    let big = out.iter().find(|(x, _)| *x == t).expect("the key's target");
    assert_eq!(big.1, vec![key; 20]);
    assert!(out.iter().any(|(_, piece)| piece.as_ptr() == ptr));
}
