//! Key routing over `n` parallel instances: which instance gets a record, given its key.
//!
//! Pure decisions, no runtime: a partitioned edge hashes each record's key with a
//! [`KeyHasher`], asks a [`Router`] for a target, and feeds it the targets' backlog as the
//! [`LoadSignal`]. Three strategies, in order of how much skew they absorb and how far they
//! spread a key's state:
//!
//! | strategy | instances per key | balances while the top key's share is |
//! |---|---|---|
//! | [`Strategy::Hash`] ([`hash_target`]) | 1 | `< ~1/n` |
//! | [`Strategy::Pkg`] ([`Pkg`]) | ≤ 2 | `< ~2/n` |
//! | [`Strategy::HotKeySplit`] ([`HotKeySplit`]) | 2, up to `n` for hot keys | any |
//!
//! A strategy that gives a key more than one instance splits its state: each instance holds a
//! partial [`Aggregate`](crate::keyed::aggregate::Aggregate) accumulator and a downstream step
//! merges them.
//!
//! Every key belongs to one of a fixed number of [`KeyGroups`] (hash → group → instance by
//! multiply-shift, as in Flink), and the instance of its group is its hash target.
//!
//! Every candidate list is a prefix of one pseudo-random order of the instances per key
//! ([`candidates`]), starting with the key's hash target. So hash ⊆ PKG ⊆ split in the
//! instances a key may use, and moving a key to a wider strategy never abandons its instance.
//!

mod group;
mod hash;
mod pkg;
mod split;

use std::num::NonZeroUsize;

pub use group::{KeyGroups, KeyGroupsError, DEFAULT_KEY_GROUPS, MAX_KEY_GROUPS};
pub use hash::{
    candidates, candidates_in, hash_target, two_choices, two_choices_in, Candidates, KeyHasher,
};
pub use pkg::{LoadSignal, Pkg};
pub use split::{
    HotKeySplit, SplitConfig, SplitConfigError, DEFAULT_SAMPLE_EVERY, MAX_DEFAULT_SKETCH,
};

/// A routing strategy, as configured; [`Router::new`] instantiates it for `n` instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// Plain hash partitioning: each key on exactly one instance.
    Hash,
    /// Partial key grouping: each key on the less loaded of two instances.
    Pkg,
    /// Two choices for cold keys, more for hot ones.
    HotKeySplit(SplitConfig),
}

impl Strategy {
    /// A short name for reports: `hash`, `pkg` or `split`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Hash => "hash",
            Strategy::Pkg => "pkg",
            Strategy::HotKeySplit(_) => "split",
        }
    }
}

/// A [`Strategy`] instantiated over `n` instances, with its routing state.
#[derive(Clone, Debug)]
pub enum Router {
    /// See [`Strategy::Hash`]: the instance of the key's group among `n`.
    Hash(KeyGroups, NonZeroUsize),
    /// See [`Strategy::Pkg`].
    Pkg(Pkg),
    /// See [`Strategy::HotKeySplit`].
    HotKeySplit(HotKeySplit),
}

impl Router {
    /// Instantiates `strategy` over `n` instances with the default [`KeyGroups`].
    pub fn new(strategy: &Strategy, n: NonZeroUsize) -> Self {
        Self::with_key_groups(strategy, n, KeyGroups::default())
    }

    /// Instantiates `strategy` over `n` instances, keys grouped by `groups`. With `n` above the
    /// group count some instances own no group (see [`KeyGroups::check`]).
    pub fn with_key_groups(strategy: &Strategy, n: NonZeroUsize, groups: KeyGroups) -> Self {
        match strategy {
            Strategy::Hash => Router::Hash(groups, n),
            Strategy::Pkg => Router::Pkg(Pkg::with_key_groups(n, groups)),
            Strategy::HotKeySplit(config) => {
                Router::HotKeySplit(HotKeySplit::with_key_groups(n, *config, groups))
            }
        }
    }

    /// Number of instances.
    pub fn instances(&self) -> NonZeroUsize {
        match self {
            Router::Hash(_, n) => *n,
            Router::Pkg(pkg) => pkg.instances(),
            Router::HotKeySplit(split) => split.instances(),
        }
    }

    /// Chooses the instance for one record of `key_hash`; `load` is ignored by
    /// [`Router::Hash`].
    pub fn choose<L: LoadSignal + ?Sized>(&mut self, key_hash: u64, load: &L) -> usize {
        match self {
            Router::Hash(groups, n) => groups.target(key_hash, *n),
            Router::Pkg(pkg) => pkg.choose(key_hash, load),
            Router::HotKeySplit(split) => split.choose(key_hash, load),
        }
    }
}
