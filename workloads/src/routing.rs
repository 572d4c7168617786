//! Replaying a key stream against a routing strategy, to measure its load balance without a
//! pipeline: what the skew bench's imbalance column and the routing tests use.
//!
//! [`simulate`] and [`imbalance`] replay a key stream against a strategy, with the running
//! per-instance count standing in for the credit signal, for tests and benches.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use weir_operators::keyed::route::Strategy;
//! use weir_workloads::routing::{imbalance, simulate};
//! use weir_workloads::zipf::ZipfKeys;
//!
//! let n = NonZeroUsize::new(8).expect("8 is non-zero");
//! let keys: Vec<u64> = ZipfKeys::new(1_000, 1.0, 1)?.take(20_000).collect();
//! let hash = imbalance(&simulate(keys.iter().copied(), n, &Strategy::Hash));
//! let pkg = imbalance(&simulate(keys.iter().copied(), n, &Strategy::Pkg));
//! assert!(pkg < hash);
//! # Ok::<(), weir_workloads::zipf::ZipfError>(())
//! ```

use std::num::NonZeroUsize;

use weir_operators::keyed::route::{KeyHasher, Router, Strategy};

/// Routes `keys` (hashed with [`KeyHasher::default`]) over `n` instances and returns the
/// number of records each instance received.
///
/// The load signal is the running count per instance: what credit-based backlog converges to
/// when every instance drains at the same rate.
pub fn simulate(
    keys: impl IntoIterator<Item = u64>,
    n: NonZeroUsize,
    strategy: &Strategy,
) -> Vec<u64> {
    let hasher = KeyHasher::default();
    let mut router = Router::new(strategy, n);
    let mut loads = vec![0u64; n.get()];
    for key in keys {
        let target = router.choose(hasher.hash_u64(key), &loads[..]);
        loads[target] += 1;
    }
    loads
}

/// `max / mean` of `loads`: 1.0 is perfect balance, `n` is everything on one instance.
/// Defined as 1.0 when there is no load at all.
///
/// ```
/// use weir_workloads::routing::imbalance;
///
/// assert_eq!(imbalance(&[5, 5, 5, 5]), 1.0);
/// assert_eq!(imbalance(&[8, 0, 0, 0]), 4.0);
/// assert_eq!(imbalance(&[]), 1.0);
/// ```
pub fn imbalance(loads: &[u64]) -> f64 {
    let total: u128 = loads.iter().map(|&l| u128::from(l)).sum();
    let max = loads.iter().copied().max().unwrap_or(0);
    if total == 0 {
        return 1.0;
    }
    max as f64 * loads.len() as f64 / total as f64
}
