//! Routing invariants and the load-balance properties of each strategy under Zipf skew
//! (routing decisions from `weir_operators::keyed::route`, replayed by `weir_workloads::routing`).

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;

use weir_operators::keyed::route::{
    candidates, hash_target, two_choices, HotKeySplit, KeyHasher, Router, SplitConfig, Strategy,
};
use weir_workloads::routing::{imbalance, simulate};
use weir_workloads::zipf::ZipfKeys;

const INSTANCES: usize = 16;
const KEYS: u64 = 10_000;
const RECORDS: usize = 1_000_000;
const SEED: u64 = 2015;

fn n() -> NonZeroUsize {
    NonZeroUsize::new(INSTANCES).expect("16 is non-zero")
}

fn zipf(exponent: f64, records: usize) -> Vec<u64> {
    let mut keys = Vec::new();
    ZipfKeys::new(KEYS, exponent, SEED)
        .expect("valid Zipf parameters")
        .fill(&mut keys, records);
    keys
}

/// Routes `keys` like [`simulate`] and also returns, per key hash, the instances it used.
fn route_all(
    keys: &[u64],
    strategy: &Strategy,
) -> ([u64; INSTANCES], HashMap<u64, BTreeSet<usize>>) {
    let hasher = KeyHasher::default();
    let mut router = Router::new(strategy, n());
    let mut loads = [0u64; INSTANCES];
    let mut used: HashMap<u64, BTreeSet<usize>> = HashMap::new();
    for &key in keys {
        let h = hasher.hash_u64(key);
        let target = router.choose(h, &loads[..]);
        loads[target] += 1;
        used.entry(h).or_default().insert(target);
    }
    (loads, used)
}

#[test]
fn hash_routes_each_key_to_exactly_its_target() {
    let keys = zipf(1.0, 100_000);
    let (loads, used) = route_all(&keys, &Strategy::Hash);
    assert_eq!(loads.iter().sum::<u64>(), keys.len() as u64);
    for (h, instances) in used {
        assert_eq!(instances, BTreeSet::from([hash_target(h, n())]));
    }
}

#[test]
fn pkg_routes_each_key_within_its_two_candidates() {
    let keys = zipf(1.0, 100_000);
    let (_, used) = route_all(&keys, &Strategy::Pkg);
    let mut split_keys = 0;
    for (h, instances) in used {
        let (a, b) = two_choices(h, n());
        assert!(
            instances.is_subset(&BTreeSet::from([a, b])),
            "{instances:?} vs {a}, {b}"
        );
        split_keys += usize::from(instances.len() == 2);
    }
    assert!(
        split_keys > 0,
        "PKG must actually use both candidates of some keys"
    );
}

#[test]
fn split_routes_each_record_within_the_allowed_set() {
    let keys = zipf(1.5, 200_000);
    let hasher = KeyHasher::default();
    let mut split = HotKeySplit::new(n(), SplitConfig::default());
    let mut loads = [0u64; INSTANCES];
    let mut widest: HashMap<u64, usize> = HashMap::new();
    let mut used: HashMap<u64, BTreeSet<usize>> = HashMap::new();
    for &key in &keys {
        let h = hasher.hash_u64(key);
        let target = split.choose(h, &loads[..]);
        let allowed = split.allowed(h);
        assert!(allowed.contains(&target), "{target} not in {allowed:?}");
        loads[target] += 1;
        let d = widest.entry(h).or_insert(0);
        *d = (*d).max(allowed.len());
        used.entry(h).or_default().insert(target);
    }
    // Over the run, each key stays within the prefix of the widest candidate list it had.
    for (h, instances) in &used {
        let prefix: BTreeSet<usize> = candidates(*h, n(), widest[h]).collect();
        assert!(instances.is_subset(&prefix));
    }
    // The top key (share ~38%) is spread over every instance; a cold key over at most two.
    let top = hasher.hash_u64(0);
    assert_eq!(split.choices(top), INSTANCES);
    assert_eq!(used[&top].len(), INSTANCES);
    let cold = hasher.hash_u64(KEYS - 1);
    assert!(!split.is_hot(cold));
    assert!(used.get(&cold).map_or(0, BTreeSet::len) <= 2);
}

/// Zipf z = 1.0 over 10^4 keys: the top key holds ~10% of records against a fair share of
/// 6.25% per instance. Hash routing cannot split it, so its instance carries ~2.5x the mean;
/// two choices suffice to level it.
#[test]
fn imbalance_at_zipf_1() {
    let keys = zipf(1.0, RECORDS);
    let hash = imbalance(&simulate(keys.iter().copied(), n(), &Strategy::Hash));
    let pkg = imbalance(&simulate(keys.iter().copied(), n(), &Strategy::Pkg));
    let split = imbalance(&simulate(
        keys.iter().copied(),
        n(),
        &Strategy::HotKeySplit(SplitConfig::default()),
    ));
    assert!((2.0..3.0).contains(&hash), "hash imbalance {hash}");
    assert!(pkg <= 1.15, "pkg imbalance {pkg}");
    assert!(split <= 1.05, "split imbalance {split}");
}

/// At z = 1.5 and 2.0 the top key alone (~38%, ~61%) exceeds two instances' fair share, so PKG
/// can do no better than `share * n / 2`; hot-key splitting spreads it and stays near 1.
#[test]
fn split_beats_pkg_under_heavy_skew() {
    for exponent in [1.5, 2.0] {
        let keys = zipf(exponent, RECORDS / 4);
        let top_share = keys.iter().filter(|&&k| k == 0).count() as f64 / keys.len() as f64;
        let pkg_floor = top_share * INSTANCES as f64 / 2.0;
        let pkg = imbalance(&simulate(keys.iter().copied(), n(), &Strategy::Pkg));
        let split = imbalance(&simulate(
            keys.iter().copied(),
            n(),
            &Strategy::HotKeySplit(SplitConfig::default()),
        ));
        assert!(pkg_floor > 2.5, "z={exponent}: the top key must defeat PKG");
        assert!(
            pkg >= pkg_floor,
            "z={exponent}: pkg imbalance {pkg} < {pkg_floor}"
        );
        assert!(split <= 1.05, "z={exponent}: split imbalance {split}");
    }
}

#[test]
fn strategies_have_report_names() {
    let names: Vec<&str> = [
        Strategy::Hash,
        Strategy::Pkg,
        Strategy::HotKeySplit(SplitConfig::default()),
    ]
    .iter()
    .map(Strategy::name)
    .collect();
    assert_eq!(names, ["hash", "pkg", "split"]);
    assert_eq!(Router::new(&Strategy::Pkg, n()).instances(), n());
}
