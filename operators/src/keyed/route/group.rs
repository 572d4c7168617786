//! Key groups: the fixed slices of the hash space that keys are routed, and keyed state will be
//! rescaled, by.
//!
//! A key's hash picks its key group, and a key group picks its instance — Flink's scheme:
//!
//! ```text
//! group    = (hash × G) >> 64                  (multiply-shift: the hash's high bits)
//! instance = group × parallelism / G           (contiguous runs of groups per instance)
//! ```
//!
//! `G` (the [`KeyGroups::count`]) is fixed for a job, [`DEFAULT_KEY_GROUPS`] unless set, and
//! bounds its parallelism: with more instances than groups some would own no key, so that is an
//! error when the pipeline is built. Because a group never splits, moving to another
//! parallelism moves whole groups — each instance owns the contiguous
//! [`range`](KeyGroups::range) of groups the formula gives it — which is what makes rescaling
//! keyed state possible later.
//!
//! When `G` is a multiple of the parallelism (both powers of two, say), the instance equals the
//! plain multiply-shift `(hash × parallelism) >> 64`: key groups change no routing there.

use std::num::NonZeroUsize;
use std::ops::Range;

/// Key groups of a job that does not choose its own: Flink's default maximum parallelism.
pub const DEFAULT_KEY_GROUPS: usize = 128;

/// The most key groups a job may have (Flink's upper bound of the maximum parallelism).
pub const MAX_KEY_GROUPS: usize = 1 << 15;

/// An invalid key-group setting or a parallelism the key groups cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyGroupsError {
    /// The count must be in `1..=MAX_KEY_GROUPS`.
    #[error("{0} key groups is outside 1..={MAX_KEY_GROUPS}")]
    Count(usize),
    /// A keyed operator cannot run more instances than there are key groups.
    #[error(
        "parallelism {parallelism} exceeds the {groups} key groups (the most instances a keyed \
         operator can use); lower the parallelism or raise the key groups with `key_groups`"
    )]
    Parallelism {
        /// The instances asked for.
        parallelism: usize,
        /// The key groups.
        groups: usize,
    },
}

/// How many key groups the hash space is cut into: `group = (hash × count) >> 64`, then
/// `instance = group × parallelism / count`, each instance owning a contiguous range of groups.
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::KeyGroups;
///
/// let groups = KeyGroups::default();
/// assert_eq!(groups.count(), 128);
/// let p = NonZeroUsize::new(3).unwrap();
/// // Group 100 belongs to instance 100 × 3 / 128 = 2, whose range holds it.
/// assert_eq!(groups.instance(100, p), 2);
/// assert!(groups.range(2, p).contains(&100));
/// assert_eq!(groups.group(u64::MAX), 127);
/// assert!(groups.check(NonZeroUsize::new(129).unwrap()).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyGroups {
    count: u32,
}

impl Default for KeyGroups {
    fn default() -> Self {
        Self {
            count: DEFAULT_KEY_GROUPS as u32,
        }
    }
}

impl KeyGroups {
    /// `count` key groups.
    ///
    /// # Errors
    ///
    /// [`KeyGroupsError::Count`] unless `1 <= count <= MAX_KEY_GROUPS`.
    pub fn new(count: usize) -> Result<Self, KeyGroupsError> {
        if !(1..=MAX_KEY_GROUPS).contains(&count) {
            return Err(KeyGroupsError::Count(count));
        }
        Ok(Self {
            count: count as u32,
        })
    }

    /// The number of key groups.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Checks that `parallelism` instances can each own a key group.
    ///
    /// # Errors
    ///
    /// [`KeyGroupsError::Parallelism`] when `parallelism` exceeds the count.
    pub fn check(&self, parallelism: NonZeroUsize) -> Result<(), KeyGroupsError> {
        if parallelism.get() > self.count() {
            return Err(KeyGroupsError::Parallelism {
                parallelism: parallelism.get(),
                groups: self.count(),
            });
        }
        Ok(())
    }

    /// The key group of `hash`: `(hash × count) >> 64`.
    #[inline]
    pub fn group(&self, hash: u64) -> u32 {
        ((u128::from(hash) * u128::from(self.count)) >> 64) as u32
    }

    /// The instance (of `parallelism`) that owns key group `group`: `group × parallelism /
    /// count`.
    #[inline]
    pub fn instance(&self, group: u32, parallelism: NonZeroUsize) -> usize {
        (u64::from(group) * parallelism.get() as u64 / u64::from(self.count)) as usize
    }

    /// The instance (of `parallelism`) that owns `hash`: its group's instance.
    #[inline]
    pub fn target(&self, hash: u64, parallelism: NonZeroUsize) -> usize {
        self.instance(self.group(hash), parallelism)
    }

    /// The key groups `instance` owns among `parallelism`: exactly those `g` with
    /// `instance(g, parallelism) == instance` (empty when `parallelism` exceeds the count).
    pub fn range(&self, instance: usize, parallelism: NonZeroUsize) -> Range<u32> {
        let (g, p) = (u64::from(self.count), parallelism.get() as u64);
        // The first group g with g × p / G >= i is ceil(i × G / p).
        let start = |i: u64| (i * g).div_ceil(p).min(g) as u32;
        start(instance as u64)..start(instance as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("test sizes are non-zero")
    }

    #[test]
    fn the_count_is_bounded() {
        assert_eq!(KeyGroups::new(0), Err(KeyGroupsError::Count(0)));
        assert_eq!(
            KeyGroups::new(MAX_KEY_GROUPS + 1),
            Err(KeyGroupsError::Count(MAX_KEY_GROUPS + 1))
        );
        assert_eq!(
            KeyGroups::new(MAX_KEY_GROUPS).map(|g| g.count()),
            Ok(1 << 15)
        );
        let groups = KeyGroups::default();
        assert_eq!(groups.check(nz(128)), Ok(()));
        assert_eq!(
            groups.check(nz(129)),
            Err(KeyGroupsError::Parallelism {
                parallelism: 129,
                groups: 128
            })
        );
    }

    #[test]
    fn groups_map_to_instances_by_the_documented_formula() {
        let groups = KeyGroups::default();
        // hash → group: the top 7 bits of the hash for 128 groups.
        assert_eq!(groups.group(0), 0);
        assert_eq!(groups.group(1 << 57), 1);
        assert_eq!(groups.group((1 << 57) - 1), 0);
        assert_eq!(groups.group(u64::MAX), 127);
        // group → instance: g × p / 128.
        let p = nz(3);
        let owners: Vec<usize> = (0..128).map(|g| groups.instance(g, p)).collect();
        assert_eq!(owners.iter().filter(|&&o| o == 0).count(), 43);
        assert_eq!(owners.iter().filter(|&&o| o == 1).count(), 43);
        assert_eq!(owners.iter().filter(|&&o| o == 2).count(), 42);
        assert_eq!(groups.range(0, p), 0..43);
        assert_eq!(groups.range(1, p), 43..86);
        assert_eq!(groups.range(2, p), 86..128);
        assert_eq!(groups.instance(42, p), 0);
        assert_eq!(groups.instance(43, p), 1);
    }

    proptest! {
        #[test]
        fn ranges_partition_the_groups_as_the_formula_does(
            count in 1usize..300,
            p in 1usize..40,
            hash in any::<u64>(),
        ) {
            let groups = KeyGroups::new(count).expect("a valid count");
            let p = nz(p);
            let mut next = 0;
            for i in 0..p.get() {
                let r = groups.range(i, p);
                prop_assert_eq!(r.start, next);
                for g in r.clone() {
                    prop_assert_eq!(groups.instance(g, p), i);
                }
                next = r.end;
            }
            prop_assert_eq!(next as usize, count);
            let t = groups.target(hash, p);
            prop_assert!(t < p.get());
            prop_assert!(groups.range(t, p).contains(&groups.group(hash)));
            if count % p.get() == 0 {
                // Key groups change nothing when the count is a multiple of the parallelism.
                let plain = ((u128::from(hash) * p.get() as u128) >> 64) as usize;
                prop_assert_eq!(t, plain);
            }
        }
    }
}
