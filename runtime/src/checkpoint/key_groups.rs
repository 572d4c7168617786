//! Key groups for rescaling keyed state: which groups an instance owns, and which old
//! instances' snapshots a restoring instance reads after the parallelism changed.
//!
//! A keyed operator's keys fall into `max_parallelism` key groups (fixed for the job); instance
//! `i` of `p` owns the contiguous run of groups `g` with `g × p / max_parallelism == i`
//! (Flink's assignment). The routing side lives in `weir-operators`
//! (`keyed::route::KeyGroups`: `group = (hash × G) >> 64`, `instance = group × p / G`, and
//! `range(i, p)` starting at `⌈i × G / p⌉`); [`KeyGroupRange::of_instance`] computes exactly
//! that range, so a snapshot an instance writes holds the groups the router sent it, and
//! [`MAX_KEY_GROUPS`] is the same bound. A change to one formula must change the other.
//!
//! Each snapshot of a keyed operator covers its instance's range. Restoring at another
//! parallelism `q`, instance `j` owns a new range, which overlaps the old ranges of a
//! contiguous run of old instances; [`restore_sources`] lists them with the groups to take
//! from each. Groups never split, so every group is read by exactly one new instance from
//! exactly one old snapshot.

use std::fmt;
use std::ops::Range;

/// The most key groups (the highest maximum parallelism) a job may have, as in
/// `weir-operators`' `keyed::route::MAX_KEY_GROUPS` (and Flink).
pub const MAX_KEY_GROUPS: u32 = 1 << 15;

/// A parallelism or a key-group count the assignment cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyGroupError {
    /// The number of key groups must be in `1..=MAX_KEY_GROUPS`.
    #[error("a maximum parallelism of {0} is outside 1..={MAX_KEY_GROUPS}")]
    MaxParallelism(u32),
    /// A parallelism of zero.
    #[error("a parallelism of 0 cannot own key groups")]
    ZeroParallelism,
    /// More instances than key groups: some would own no key, so keyed state cannot be
    /// spread over them.
    #[error(
        "parallelism {parallelism} exceeds the maximum parallelism {max_parallelism} (the key \
         groups keyed state is kept in); restore with at most {max_parallelism} instances — the \
         maximum is fixed when a job first runs"
    )]
    ParallelismAboveMax {
        /// The parallelism asked for.
        parallelism: u32,
        /// The job's maximum parallelism.
        max_parallelism: u32,
    },
    /// An instance index at or beyond the parallelism.
    #[error("instance {instance} does not exist at parallelism {parallelism}")]
    NoSuchInstance {
        /// The index asked for.
        instance: u32,
        /// The parallelism.
        parallelism: u32,
    },
}

/// Checks `max_parallelism` and `parallelism` (and `instance` against it).
fn check(max_parallelism: u32, parallelism: u32, instance: u32) -> Result<(), KeyGroupError> {
    if !(1..=MAX_KEY_GROUPS).contains(&max_parallelism) {
        return Err(KeyGroupError::MaxParallelism(max_parallelism));
    }
    if parallelism == 0 {
        return Err(KeyGroupError::ZeroParallelism);
    }
    if parallelism > max_parallelism {
        return Err(KeyGroupError::ParallelismAboveMax {
            parallelism,
            max_parallelism,
        });
    }
    if instance >= parallelism {
        return Err(KeyGroupError::NoSuchInstance {
            instance,
            parallelism,
        });
    }
    Ok(())
}

/// A contiguous, half-open run of key groups `start..end`.
///
/// ```
/// use weir_runtime::checkpoint::KeyGroupRange;
///
/// // 128 key groups over 3 instances: 43, 43 and 42 groups.
/// let ranges: Vec<_> = (0..3)
///     .map(|i| KeyGroupRange::of_instance(128, 3, i).unwrap())
///     .collect();
/// assert_eq!(ranges[0], KeyGroupRange::new(0, 43));
/// assert_eq!(ranges[2], KeyGroupRange::new(86, 128));
/// assert_eq!(KeyGroupRange::owner(128, 3, 100).unwrap(), 2);
/// assert!(KeyGroupRange::of_instance(128, 129, 0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    start: u32,
    end: u32,
}

impl KeyGroupRange {
    /// The groups `start..end` (empty when `end <= start`).
    pub fn new(start: u32, end: u32) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }

    /// The groups instance `instance` of `parallelism` owns among `max_parallelism`: those `g`
    /// with `g × parallelism / max_parallelism == instance`, which run from
    /// `⌈instance × max_parallelism / parallelism⌉` to the next instance's start.
    ///
    /// # Errors
    ///
    /// [`KeyGroupError`] if `max_parallelism` is outside `1..=MAX_KEY_GROUPS`, `parallelism`
    /// is zero or above `max_parallelism`, or `instance >= parallelism`.
    pub fn of_instance(
        max_parallelism: u32,
        parallelism: u32,
        instance: u32,
    ) -> Result<Self, KeyGroupError> {
        check(max_parallelism, parallelism, instance)?;
        let (g, p) = (u64::from(max_parallelism), u64::from(parallelism));
        // The first group g with g × p / G >= i is ⌈i × G / p⌉; it is at most G because i <= p.
        let start = |i: u64| (i * g).div_ceil(p) as u32;
        Ok(Self {
            start: start(u64::from(instance)),
            end: start(u64::from(instance) + 1),
        })
    }

    /// The instance of `parallelism` that owns key group `group`: `group × parallelism /
    /// max_parallelism`.
    ///
    /// # Errors
    ///
    /// As [`of_instance`](Self::of_instance); and [`KeyGroupError::NoSuchInstance`] (naming
    /// the group as the instance) if `group >= max_parallelism`.
    pub fn owner(max_parallelism: u32, parallelism: u32, group: u32) -> Result<u32, KeyGroupError> {
        check(max_parallelism, parallelism, 0)?;
        if group >= max_parallelism {
            return Err(KeyGroupError::NoSuchInstance {
                instance: group,
                parallelism: max_parallelism,
            });
        }
        Ok(owner(max_parallelism, parallelism, group))
    }

    /// The first group.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// One past the last group.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// The number of groups.
    pub fn len(&self) -> u32 {
        self.end - self.start
    }

    /// Whether the range holds no group.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether `group` is in the range.
    pub fn contains(&self, group: u32) -> bool {
        (self.start..self.end).contains(&group)
    }

    /// The groups in both ranges (empty if they do not meet).
    pub fn intersect(&self, other: &Self) -> Self {
        Self::new(self.start.max(other.start), self.end.min(other.end))
    }

    /// The groups, in order.
    pub fn groups(&self) -> Range<u32> {
        self.start..self.end
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key groups {}..{}", self.start, self.end)
    }
}

/// `group × parallelism / max_parallelism`, arguments already checked.
fn owner(max_parallelism: u32, parallelism: u32, group: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// One old snapshot a restoring instance reads, and the groups it takes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    /// The instance (at the old parallelism) whose snapshot holds the groups.
    pub old_instance: u32,
    /// The groups to keep from it: its range intersected with the restoring instance's.
    pub groups: KeyGroupRange,
}

/// Which snapshots instance `instance` of `new_parallelism` restores from, when they were
/// written at `old_parallelism`, each covering its instance's [`KeyGroupRange`]: the old
/// instances, in order, whose range meets the new one, with the groups to keep from each.
/// Every state entry in a listed snapshot whose key group is outside `groups` belongs to
/// another new instance.
///
/// ```
/// use weir_runtime::checkpoint::{restore_sources, KeyGroupRange};
///
/// // Written by 2 instances (groups 0..64 and 64..128), restored by 3.
/// let sources = restore_sources(128, 2, 3, 1).unwrap();
/// let read: Vec<_> = sources.iter().map(|s| (s.old_instance, s.groups)).collect();
/// assert_eq!(
///     read,
///     [(0, KeyGroupRange::new(43, 64)), (1, KeyGroupRange::new(64, 86))]
/// );
/// assert!(restore_sources(128, 2, 129, 0).is_err());
/// ```
///
/// # Errors
///
/// [`KeyGroupError::ParallelismAboveMax`] if either parallelism exceeds `max_parallelism`; the
/// other [`KeyGroupError`]s for a zero parallelism, an invalid `max_parallelism` or an
/// `instance` beyond `new_parallelism`.
pub fn restore_sources(
    max_parallelism: u32,
    old_parallelism: u32,
    new_parallelism: u32,
    instance: u32,
) -> Result<Vec<RestoreSource>, KeyGroupError> {
    check(max_parallelism, old_parallelism, 0)?;
    let wanted = KeyGroupRange::of_instance(max_parallelism, new_parallelism, instance)?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let first = owner(max_parallelism, old_parallelism, wanted.start);
    let last = owner(max_parallelism, old_parallelism, wanted.end - 1);
    let mut sources = Vec::with_capacity((last - first + 1) as usize);
    for old_instance in first..=last {
        let old = KeyGroupRange::of_instance(max_parallelism, old_parallelism, old_instance)?;
        let groups = old.intersect(&wanted);
        if !groups.is_empty() {
            sources.push(RestoreSource {
                old_instance,
                groups,
            });
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parallelism_above_the_maximum_is_a_clear_error() {
        let err = restore_sources(128, 4, 200, 0).expect_err("200 > 128");
        assert_eq!(
            err,
            KeyGroupError::ParallelismAboveMax {
                parallelism: 200,
                max_parallelism: 128
            }
        );
        assert!(err.to_string().contains("at most 128 instances"), "{err}");
        assert_eq!(
            KeyGroupRange::of_instance(0, 1, 0),
            Err(KeyGroupError::MaxParallelism(0))
        );
        assert_eq!(
            KeyGroupRange::of_instance(MAX_KEY_GROUPS + 1, 1, 0),
            Err(KeyGroupError::MaxParallelism(MAX_KEY_GROUPS + 1))
        );
        assert_eq!(
            KeyGroupRange::of_instance(8, 0, 0),
            Err(KeyGroupError::ZeroParallelism)
        );
        assert_eq!(
            KeyGroupRange::of_instance(8, 2, 2),
            Err(KeyGroupError::NoSuchInstance {
                instance: 2,
                parallelism: 2
            })
        );
        assert!(KeyGroupRange::owner(8, 2, 8).is_err());
    }

    #[test]
    fn the_ranges_match_the_routers_worked_example() {
        // The same figures as `weir-operators`' `KeyGroups` tests: 128 groups over 3.
        let r = |i| KeyGroupRange::of_instance(128, 3, i).expect("valid");
        assert_eq!(
            (r(0), r(1), r(2)),
            (
                KeyGroupRange::new(0, 43),
                KeyGroupRange::new(43, 86),
                KeyGroupRange::new(86, 128)
            )
        );
        assert_eq!(KeyGroupRange::owner(128, 3, 42), Ok(0));
        assert_eq!(KeyGroupRange::owner(128, 3, 43), Ok(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_group_is_owned_exactly_once_by_the_formulas_instance(
            max in 1u32..600,
            p in 1u32..80,
        ) {
            prop_assume!(p <= max);
            let mut owned = vec![0u32; max as usize];
            let mut next = 0;
            for i in 0..p {
                let range = KeyGroupRange::of_instance(max, p, i).expect("valid");
                // Contiguous and in order: each range starts where the last ended.
                prop_assert_eq!(range.start(), next);
                next = range.end();
                prop_assert!(!range.is_empty(), "instance {} of {} owns no group", i, p);
                for g in range.groups() {
                    owned[g as usize] += 1;
                    prop_assert_eq!(u64::from(g) * u64::from(p) / u64::from(max), u64::from(i));
                    prop_assert_eq!(KeyGroupRange::owner(max, p, g), Ok(i));
                }
            }
            prop_assert_eq!(next, max);
            prop_assert!(owned.iter().all(|&n| n == 1));
        }

        #[test]
        fn rescaling_reads_each_group_once_from_the_snapshot_that_holds_it(
            max in 1u32..400,
            p in 1u32..50,
            q in 1u32..50,
        ) {
            prop_assume!(p <= max && q <= max);
            let mut read_by = vec![None; max as usize];
            for j in 0..q {
                let wanted = KeyGroupRange::of_instance(max, q, j).expect("valid");
                let mut covered = Vec::new();
                for source in restore_sources(max, p, q, j).expect("valid") {
                    let old = KeyGroupRange::of_instance(max, p, source.old_instance)
                        .expect("valid");
                    for g in source.groups.groups() {
                        // The group is in the old snapshot read and owned by the new instance.
                        prop_assert!(old.contains(g));
                        prop_assert!(wanted.contains(g));
                        prop_assert_eq!(read_by[g as usize], None, "group {} read twice", g);
                        read_by[g as usize] = Some(j);
                        covered.push(g);
                    }
                }
                // Exactly the new instance's groups, in order.
                prop_assert_eq!(covered, wanted.groups().collect::<Vec<_>>());
            }
            prop_assert!(read_by.iter().all(Option::is_some));
        }
    }
}
