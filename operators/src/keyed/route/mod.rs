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
//! Every candidate list is a prefix of one pseudo-random order of the instances per key
//! ([`candidates`]), starting with the key's hash target. So hash ⊆ PKG ⊆ split in the
//! instances a key may use, and moving a key to a wider strategy never abandons its instance.
//!

mod hash;
mod pkg;
mod split;

use std::num::NonZeroUsize;

pub use hash::{candidates, hash_target, two_choices, Candidates, KeyHasher};
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
    /// See [`Strategy::Hash`].
    Hash(NonZeroUsize),
    /// See [`Strategy::Pkg`].
    Pkg(Pkg),
    /// See [`Strategy::HotKeySplit`].
    HotKeySplit(HotKeySplit),
}

impl Router {
    /// Instantiates `strategy` over `n` instances.
    pub fn new(strategy: &Strategy, n: NonZeroUsize) -> Self {
        match strategy {
            Strategy::Hash => Router::Hash(n),
            Strategy::Pkg => Router::Pkg(Pkg::new(n)),
            Strategy::HotKeySplit(config) => Router::HotKeySplit(HotKeySplit::new(n, *config)),
        }
    }

    /// Number of instances.
    pub fn instances(&self) -> NonZeroUsize {
        match self {
            Router::Hash(n) => *n,
            Router::Pkg(pkg) => pkg.instances(),
            Router::HotKeySplit(split) => split.instances(),
        }
    }

    /// Chooses the instance for one record of `key_hash`; `load` is ignored by
    /// [`Router::Hash`].
    pub fn choose<L: LoadSignal + ?Sized>(&mut self, key_hash: u64, load: &L) -> usize {
        match self {
            Router::Hash(n) => hash_target(key_hash, *n),
            Router::Pkg(pkg) => pkg.choose(key_hash, load),
            Router::HotKeySplit(split) => split.choose(key_hash, load),
        }
    }
}
