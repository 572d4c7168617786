//! Partial key grouping: each key may go to either of two instances, whichever is less loaded.

use std::num::NonZeroUsize;

use super::group::KeyGroups;
use super::hash::two_choices_in;

/// The current load of each target instance, as the router's caller sees it. Lower is less
/// loaded.
///
/// On a partitioned edge this is the target's backlog — batches buffered plus in flight, i.e.
/// capacity minus the credit it has granted — so routing follows the demand signal instead of
/// a count the producer keeps on its own. Implemented for slices (indexed by instance) and for
/// closures `Fn(usize) -> u64`.
pub trait LoadSignal {
    /// Load of `instance` (`0..n`).
    fn load(&self, instance: usize) -> u64;
}

impl LoadSignal for [u64] {
    fn load(&self, instance: usize) -> u64 {
        self[instance]
    }
}

impl<F: Fn(usize) -> u64> LoadSignal for F {
    fn load(&self, instance: usize) -> u64 {
        self(instance)
    }
}

/// Picks the least loaded of `candidates` by `(load, sent)`, the earliest on a full tie.
pub(super) fn least_loaded<L: LoadSignal + ?Sized>(
    candidates: impl Iterator<Item = usize>,
    load: &L,
    sent: &[u64],
) -> usize {
    candidates
        .map(|c| (load.load(c), sent[c], c))
        .reduce(|best, next| {
            if (next.0, next.1) < (best.0, best.1) {
                next
            } else {
                best
            }
        })
        .map_or(0, |(_, _, c)| c)
}

/// Partial key grouping (PKG; Nasir, De Francisci Morales, García-Soriano, Kourtellis,
/// Serafini, "The Power of Both Choices: Practical Load Balancing for Distributed Stream
/// Processing Engines", ICDE 2015).
///
/// Each key has two candidate instances ([`two_choices`](super::two_choices)); each record goes to the candidate
/// with the lower load as reported by the caller's [`LoadSignal`], ties broken by the number of
/// records this router has sent to each (the paper's local load estimate), then by the first
/// candidate. A key's state is thus split over at most two instances, whose partial results a
/// downstream step merges (see [`aggregate`](crate::keyed::aggregate)). PKG balances well while
/// the hottest key's share stays under about `2 / n`; past that, use
/// [`HotKeySplit`](super::HotKeySplit).
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::{two_choices, Pkg};
///
/// let n = NonZeroUsize::new(4).expect("4 is non-zero");
/// let mut pkg = Pkg::new(n);
/// let (a, b) = two_choices(7, n);
/// let mut backlog = [0u64; 4];
/// backlog[a] = 10; // the first candidate is backed up
/// assert_eq!(pkg.choose(7, &backlog[..]), b);
/// assert_eq!(pkg.sent()[b], 1);
/// ```
#[derive(Clone, Debug)]
pub struct Pkg {
    n: NonZeroUsize,
    groups: KeyGroups,
    sent: Vec<u64>,
}

impl Pkg {
    /// A router over `n` instances with the default [`KeyGroups`].
    pub fn new(n: NonZeroUsize) -> Self {
        Self::with_key_groups(n, KeyGroups::default())
    }

    /// A router over `n` instances whose first candidates are the instances of the keys'
    /// groups.
    pub fn with_key_groups(n: NonZeroUsize, groups: KeyGroups) -> Self {
        Self {
            n,
            groups,
            sent: vec![0; n.get()],
        }
    }

    /// Number of instances.
    pub fn instances(&self) -> NonZeroUsize {
        self.n
    }

    /// The two instances `key_hash` may go to (equal when `n == 1`).
    pub fn candidates(&self, key_hash: u64) -> (usize, usize) {
        two_choices_in(self.groups, key_hash, self.n)
    }

    /// Chooses the instance for one record of `key_hash` and counts it as sent there.
    pub fn choose<L: LoadSignal + ?Sized>(&mut self, key_hash: u64, load: &L) -> usize {
        let (a, b) = self.candidates(key_hash);
        let target = least_loaded([a, b].into_iter(), load, &self.sent);
        self.sent[target] = self.sent[target].saturating_add(1);
        target
    }

    /// Records sent to each instance by this router.
    pub fn sent(&self) -> &[u64] {
        &self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_on_sent_count_then_first_candidate() {
        let n = NonZeroUsize::new(8).expect("8 is non-zero");
        let mut pkg = Pkg::new(n);
        let (a, b) = pkg.candidates(42);
        let flat = |_: usize| 5;
        assert_eq!(pkg.choose(42, &flat), a);
        assert_eq!(pkg.choose(42, &flat), b);
        assert_eq!(pkg.choose(42, &flat), a);
        assert_eq!(pkg.sent()[a], 2);
        assert_eq!(pkg.sent()[b], 1);
    }

    #[test]
    fn one_instance_takes_everything() {
        let mut pkg = Pkg::new(NonZeroUsize::MIN);
        for key in 0..10 {
            assert_eq!(pkg.choose(key, &[3u64][..]), 0);
        }
        assert_eq!(pkg.sent(), &[10]);
    }
}
