//! Hot-key splitting: more candidate instances for the keys that need them.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};

use super::group::KeyGroups;
use super::hash::{candidates_in, Candidates};
use super::pkg::{least_loaded, LoadSignal};
use crate::keyed::sketch::SpaceSaving;

/// Default of [`SplitConfig::with_sample_every`].
pub const DEFAULT_SAMPLE_EVERY: u32 = 8;

/// Upper bound of the default sketch capacity, so that a tiny threshold cannot make the
/// router allocate without bound (65,536 counters: a few MiB).
pub const MAX_DEFAULT_SKETCH: usize = 1 << 16;

/// An invalid [`SplitConfig`] setting.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum SplitConfigError {
    /// The hot-key threshold must be a share of the stream strictly between 0 and 1.
    #[error("hot-key threshold {0} is not a share in (0, 1); the default is 1/(5n)")]
    Threshold(f64),
}

/// Settings of [`HotKeySplit`]. Unset values are derived from the instance count `n` when the
/// router is built.
///
/// ```
/// use weir_operators::keyed::route::SplitConfig;
///
/// let config = SplitConfig::default().with_threshold(0.01)?.with_warmup(10_000);
/// # Ok::<(), weir_operators::keyed::route::SplitConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SplitConfig {
    threshold: Option<f64>,
    sketch_capacity: Option<NonZeroUsize>,
    warmup: Option<u64>,
    sample_every: Option<NonZeroU32>,
}

impl SplitConfig {
    /// A key is hot when its estimated share of all records so far exceeds `share`.
    /// Default `1 / (5n)`.
    ///
    /// # Errors
    ///
    /// [`SplitConfigError::Threshold`] unless `0 < share < 1`.
    pub fn with_threshold(mut self, share: f64) -> Result<Self, SplitConfigError> {
        if !(share > 0.0 && share < 1.0) {
            return Err(SplitConfigError::Threshold(share));
        }
        self.threshold = Some(share);
        Ok(self)
    }

    /// Counters in the heavy-hitter sketch (allocated when the router is built). Default
    /// `ceil(2 / threshold)`, capped at [`MAX_DEFAULT_SKETCH`], which tracks every hot key and
    /// bounds share estimates' error by half the threshold.
    pub fn with_sketch_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.sketch_capacity = Some(capacity);
        self
    }

    /// Records to observe before any key is treated as hot (early shares are noise).
    /// Default `10 ×` the sketch capacity.
    pub fn with_warmup(mut self, records: u64) -> Self {
        self.warmup = Some(records);
        self
    }

    /// Feed the sketch one record in `k` on average (chosen pseudo-randomly, counted with
    /// weight `k`) instead of every record. Default [`DEFAULT_SAMPLE_EVERY`]: the sketch's
    /// update is the router's main cost, and a key above the threshold stays far above the
    /// sampling noise once the warmup has passed. `1` feeds every record.
    pub fn with_sample_every(mut self, k: NonZeroU32) -> Self {
        self.sample_every = Some(k);
        self
    }

    /// The threshold for `n` instances.
    pub fn threshold(&self, n: NonZeroUsize) -> f64 {
        self.threshold.unwrap_or(1.0 / (5.0 * n.get() as f64))
    }

    fn sketch_capacity(&self, threshold: f64) -> NonZeroUsize {
        self.sketch_capacity.unwrap_or_else(|| {
            // threshold > 0 was checked; `as` saturates a huge quotient before the cap.
            let k = ((2.0 / threshold).ceil() as usize).min(MAX_DEFAULT_SKETCH);
            NonZeroUsize::new(k).unwrap_or(NonZeroUsize::MIN)
        })
    }
}

/// Hot-key splitting in the spirit of D-Choices and W-Choices (Nasir, De Francisci Morales,
/// Kourtellis, Serafini, "When Two Choices Are not Enough: Balancing at Scale in Distributed
/// Stream Processing", ICDE 2016).
///
/// A [`SpaceSaving`] sketch estimates each key's share `p` of the records routed so far. A key
/// with `p` at or under the threshold `θ` (default `1/(5n)`, the paper's choice) has the two
/// candidates of [`Pkg`](super::Pkg). A hot key (`p > θ`) gets the first
/// `d = clamp(ceil(p / θ), 2, n)` of its [`candidates`](super::candidates): just enough that each piece of it
/// carries at most a `θ` share — no more than a cold key may — growing to all `n` instances
/// (W-Choices) for a key with `p ≥ nθ`. Each record goes to the least loaded allowed candidate,
/// as in PKG.
///
/// Candidate lists are nested prefixes of one per-key order, so a key whose share grows only
/// gains instances; over a run, a key's records land within the prefix of the largest `d` it
/// reached. Before `warmup` records, every key uses two choices.
///
/// Shares are measured over the whole run (the sketch does not decay), so a key that cools
/// down narrows again only as the total grows.
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::{HotKeySplit, SplitConfig};
///
/// let n = NonZeroUsize::new(8).expect("8 is non-zero");
/// let mut split = HotKeySplit::new(n, SplitConfig::default().with_warmup(0));
/// let mut loads = vec![0u64; 8];
/// for _ in 0..100 {
///     let target = split.choose(1, &loads[..]);
///     loads[target] += 1;
/// }
/// // One key is the whole stream: it may use every instance, and does.
/// assert_eq!(split.choices(1), 8);
/// assert!(loads.iter().all(|&l| l > 0));
/// ```
#[derive(Clone, Debug)]
pub struct HotKeySplit {
    n: NonZeroUsize,
    groups: KeyGroups,
    threshold: f64,
    warmup: u64,
    sketch: SpaceSaving<u64>,
    sent: Vec<u64>,
    /// Feed the sketch when `rng % sample == 0`, with weight `sample`.
    sample: u64,
    rng: u64,
    /// Full candidate orders of hot keys (computing one costs a permutation per entry); at
    /// most as many entries as the sketch has counters.
    orders: HashMap<u64, Vec<usize>, foldhash::fast::FixedState>,
}

impl HotKeySplit {
    /// A router over `n` instances with the default [`KeyGroups`].
    pub fn new(n: NonZeroUsize, config: SplitConfig) -> Self {
        Self::with_key_groups(n, config, KeyGroups::default())
    }

    /// A router over `n` instances whose first candidates are the instances of the keys'
    /// groups.
    pub fn with_key_groups(n: NonZeroUsize, config: SplitConfig, groups: KeyGroups) -> Self {
        let threshold = config.threshold(n);
        let capacity = config.sketch_capacity(threshold);
        Self {
            n,
            groups,
            threshold,
            warmup: config
                .warmup
                .unwrap_or((capacity.get() as u64).saturating_mul(10)),
            sketch: SpaceSaving::new(capacity),
            sent: vec![0; n.get()],
            sample: u64::from(
                config
                    .sample_every
                    .map_or(DEFAULT_SAMPLE_EVERY, NonZeroU32::get),
            ),
            rng: 0x853c_49e6_748f_ea9b,
            orders: HashMap::default(),
        }
    }

    /// Number of instances.
    pub fn instances(&self) -> NonZeroUsize {
        self.n
    }

    /// The hot-key threshold in effect (a share of all records).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The estimated share of `key_hash`, or `None` while warming up or if it is not tracked.
    pub fn share(&self, key_hash: u64) -> Option<f64> {
        let total = self.sketch.total();
        if total == 0 || total < self.warmup {
            return None;
        }
        let est = self.sketch.estimate(&key_hash)?;
        Some(est.count as f64 / total as f64)
    }

    /// Whether `key_hash` is currently hot.
    pub fn is_hot(&self, key_hash: u64) -> bool {
        self.share(key_hash).is_some_and(|p| p > self.threshold)
    }

    /// How many candidates `key_hash` currently has (`min(2, n)` unless hot).
    pub fn choices(&self, key_hash: u64) -> usize {
        let n = self.n.get();
        let cold = n.min(2);
        match self.share(key_hash) {
            Some(p) if p > self.threshold => ((p / self.threshold).ceil() as usize).clamp(cold, n),
            _ => cold,
        }
    }

    /// The instances `key_hash` may currently be routed to, in candidate order.
    pub fn candidates(&self, key_hash: u64) -> Candidates {
        candidates_in(self.groups, key_hash, self.n, self.choices(key_hash))
    }

    /// [`candidates`](Self::candidates) collected, for checks and reporting.
    pub fn allowed(&self, key_hash: u64) -> Vec<usize> {
        self.candidates(key_hash).collect()
    }

    /// Counts one record of `key_hash` in the sketch (or a sample of them, see
    /// [`SplitConfig::with_sample_every`]), then chooses its instance: the least loaded of its
    /// (updated) [`candidates`](Self::candidates) by `(load, sent)`.
    pub fn choose<L: LoadSignal + ?Sized>(&mut self, key_hash: u64, load: &L) -> usize {
        if self.sample <= 1 {
            self.sketch.observe(key_hash);
        } else {
            // xorshift64: a cheap, seeded, deterministic choice of the sampled records.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng.is_multiple_of(self.sample) {
                self.sketch.observe_weighted(key_hash, self.sample);
            }
        }
        let d = self.choices(key_hash);
        let target = if d <= 2 {
            least_loaded(
                candidates_in(self.groups, key_hash, self.n, d),
                load,
                &self.sent,
            )
        } else {
            if !self.orders.contains_key(&key_hash) && self.orders.len() >= self.sketch.capacity() {
                self.orders.clear();
            }
            let (n, groups) = (self.n, self.groups);
            let order = self
                .orders
                .entry(key_hash)
                .or_insert_with(|| candidates_in(groups, key_hash, n, n.get()).collect());
            least_loaded(order[..d].iter().copied(), load, &self.sent)
        };
        self.sent[target] = self.sent[target].saturating_add(1);
        target
    }

    /// Records sent to each instance by this router.
    pub fn sent(&self) -> &[u64] {
        &self.sent
    }

    /// The heavy-hitter sketch over key hashes.
    pub fn sketch(&self) -> &SpaceSaving<u64> {
        &self.sketch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("test sizes are non-zero")
    }

    #[test]
    fn thresholds_are_validated() {
        for bad in [0.0, 1.0, -0.5, f64::NAN, f64::INFINITY] {
            let err = SplitConfig::default().with_threshold(bad);
            assert!(matches!(err, Err(SplitConfigError::Threshold(_))), "{bad}");
        }
        let config = SplitConfig::default();
        assert_eq!(config.threshold(nz(16)), 1.0 / 80.0);
        let split = HotKeySplit::new(nz(16), config);
        assert_eq!(split.sketch().capacity(), 160);
        assert_eq!(split.warmup, 1600);
        let tiny = SplitConfig::default()
            .with_threshold(1e-300)
            .expect("a tiny share is valid");
        let split = HotKeySplit::new(nz(16), tiny);
        assert_eq!(split.sketch().capacity(), MAX_DEFAULT_SKETCH);
    }

    #[test]
    fn choices_grow_with_share() {
        // Threshold 0.1 over 10 instances; key 0 is 50% of the stream, key 1 is 25%,
        // keys 2.. share the rest thinly.
        let n = nz(10);
        let config = SplitConfig::default()
            .with_threshold(0.1)
            .expect("0.1 is a valid share")
            .with_sketch_capacity(nz(64))
            .with_warmup(100)
            .with_sample_every(NonZeroU32::MIN);
        let mut split = HotKeySplit::new(n, config);
        let flat = |_: usize| 0;
        assert_eq!(split.choices(0), 2, "nothing observed yet");
        for i in 0..4000u64 {
            let key = match i % 4 {
                0 | 1 => 0,
                2 => 1,
                _ => 100 + i,
            };
            split.choose(key, &flat);
        }
        assert_eq!(split.choices(0), 5);
        assert_eq!(split.choices(1), 3);
        assert_eq!(split.choices(4001), 2);
        assert!(split.is_hot(0) && split.is_hot(1) && !split.is_hot(4001));
        let (a, b) = super::super::two_choices(0, n);
        assert_eq!(
            split.allowed(0)[..2],
            [a, b],
            "a hot key keeps its two cold candidates"
        );
    }

    #[test]
    fn tiny_instance_counts_route_everywhere_or_nowhere_else() {
        let mut one = HotKeySplit::new(nz(1), SplitConfig::default().with_warmup(0));
        assert_eq!(one.choose(5, &[0u64][..]), 0);
        assert_eq!(one.allowed(5), [0]);
        let mut two = HotKeySplit::new(nz(2), SplitConfig::default().with_warmup(0));
        two.choose(5, &[0u64, 0][..]);
        let mut allowed = two.allowed(5);
        allowed.sort_unstable();
        assert_eq!(allowed, [0, 1]);
    }
}
