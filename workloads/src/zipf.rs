//! Deterministic Zipf-distributed keys for skew tests and benchmarks.
//!
//! [`ZipfKeys`] draws key ranks `0..keys` with `P(rank r) ∝ 1 / (r + 1)^s`: rank 0 is the
//! hottest key. Exponent `s = 0` is uniform; `s = 1` is the classic Zipf law (the top key of
//! 10^4 takes ~10% of records); `s = 2` puts ~61% on the top key.
//!
//! Sampling uses `rand_distr`'s rejection-inversion Zipf sampler (Hörmann and Derflinger,
//! O(1) per key, no table) driven by PCG-64 (`rand_pcg::Pcg64Mcg`), whose output is specified
//! and portable. The same `(keys, exponent, seed)` yields the same sequence on every run; the
//! sampler's `powf`/`ln` come from the platform's math library, so rare samples could differ
//! between platforms with different libm rounding. Uniform (`s = 0`) sampling uses only integer
//! arithmetic.
//!
//! ```
//! use weir_workloads::zipf::ZipfKeys;
//!
//! let a: Vec<u64> = ZipfKeys::new(1000, 1.0, 7)?.take(5).collect();
//! let b: Vec<u64> = ZipfKeys::new(1000, 1.0, 7)?.take(5).collect();
//! assert_eq!(a, b);
//! assert!(a.iter().all(|&k| k < 1000));
//! # Ok::<(), weir_workloads::zipf::ZipfError>(())
//! ```

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rand_pcg::Pcg64Mcg;

/// Largest key count: ranks are sampled as `f64`, exact up to 2^53.
pub const MAX_KEYS: u64 = 1 << 53;

/// Why a [`ZipfKeys`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum ZipfError {
    /// `keys` was 0 or above [`MAX_KEYS`].
    #[error("key count {0} is out of range: need 1..={MAX_KEYS}")]
    KeyCount(u64),
    /// The exponent was negative, infinite or NaN.
    #[error("Zipf exponent {0} is invalid: need a finite value >= 0 (0 = uniform)")]
    Exponent(f64),
}

#[derive(Clone, Debug)]
enum Sampler {
    Uniform,
    Zipf(Zipf<f64>),
}

/// An endless, seeded stream of Zipf-distributed key ranks in `0..keys` (see the
/// [module docs](self)).
#[derive(Clone, Debug)]
pub struct ZipfKeys {
    rng: Pcg64Mcg,
    sampler: Sampler,
    keys: u64,
    exponent: f64,
}

impl ZipfKeys {
    /// A generator of ranks `0..keys` with the given exponent (`0` = uniform) and seed.
    ///
    /// # Errors
    ///
    /// [`ZipfError::KeyCount`] unless `1 <= keys <= MAX_KEYS`; [`ZipfError::Exponent`] unless
    /// the exponent is finite and non-negative.
    pub fn new(keys: u64, exponent: f64, seed: u64) -> Result<Self, ZipfError> {
        if keys == 0 || keys > MAX_KEYS {
            return Err(ZipfError::KeyCount(keys));
        }
        if !(exponent.is_finite() && exponent >= 0.0) {
            return Err(ZipfError::Exponent(exponent));
        }
        let sampler = if exponent == 0.0 {
            Sampler::Uniform
        } else {
            // Both arguments were validated above, which is all `Zipf::new` checks.
            Sampler::Zipf(
                Zipf::new(keys as f64, exponent).map_err(|_| ZipfError::Exponent(exponent))?,
            )
        };
        Ok(Self {
            rng: Pcg64Mcg::seed_from_u64(seed),
            sampler,
            keys,
            exponent,
        })
    }

    /// Number of distinct keys.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The exponent.
    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    /// Replaces the contents of `out` with the next `n` keys (the same keys `n` calls of
    /// [`next`](Iterator::next) would give).
    pub fn fill(&mut self, out: &mut Vec<u64>, n: usize) {
        out.clear();
        out.reserve(n);
        match &self.sampler {
            Sampler::Uniform => {
                out.extend((0..n).map(|_| self.rng.random_range(0..self.keys)));
            }
            Sampler::Zipf(zipf) => {
                let last = self.keys - 1;
                out.extend((0..n).map(|_| Self::rank(zipf.sample(&mut self.rng), last)));
            }
        }
    }

    /// Converts a sample in `[1, keys]` to a rank in `0..keys`.
    fn rank(sample: f64, last: u64) -> u64 {
        // Float-to-int `as` saturates; `min` guards the top edge against rounding.
        ((sample as u64).saturating_sub(1)).min(last)
    }
}

impl Iterator for ZipfKeys {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        Some(match &self.sampler {
            Sampler::Uniform => self.rng.random_range(0..self.keys),
            Sampler::Zipf(zipf) => Self::rank(zipf.sample(&mut self.rng), self.keys - 1),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_eq!(ZipfKeys::new(0, 1.0, 0).err(), Some(ZipfError::KeyCount(0)));
        assert_eq!(
            ZipfKeys::new(MAX_KEYS + 1, 1.0, 0).err(),
            Some(ZipfError::KeyCount(MAX_KEYS + 1))
        );
        for bad in [-0.1, f64::INFINITY, f64::NAN] {
            assert!(matches!(
                ZipfKeys::new(10, bad, 0),
                Err(ZipfError::Exponent(_))
            ));
        }
    }

    #[test]
    fn fill_matches_the_iterator_and_seeds_differ() {
        for exponent in [0.0, 1.0, 1.5] {
            let mut batch = vec![99; 3];
            ZipfKeys::new(500, exponent, 11)
                .expect("valid parameters")
                .fill(&mut batch, 1000);
            let iter: Vec<u64> = ZipfKeys::new(500, exponent, 11)
                .expect("valid parameters")
                .take(1000)
                .collect();
            assert_eq!(batch, iter);
            let other: Vec<u64> = ZipfKeys::new(500, exponent, 12)
                .expect("valid parameters")
                .take(1000)
                .collect();
            assert_ne!(batch, other);
        }
    }

    #[test]
    fn frequencies_follow_the_law() {
        // 10 keys, 200k draws: compare each rank's frequency with 1/(r+1)^s / H.
        let draws = 200_000;
        for exponent in [0.0, 1.0, 2.0] {
            let mut counts = [0u64; 10];
            for key in ZipfKeys::new(10, exponent, 3)
                .expect("valid parameters")
                .take(draws)
            {
                counts[key as usize] += 1;
            }
            let weights: Vec<f64> = (1..=10).map(|r| (r as f64).powf(-exponent)).collect();
            let norm: f64 = weights.iter().sum();
            for (r, (&count, w)) in counts.iter().zip(&weights).enumerate() {
                let expected = w / norm * draws as f64;
                // 5 standard deviations of a binomial count, plus slack for tiny expectations.
                let tolerance = 5.0 * expected.sqrt() + 5.0;
                let diff = (count as f64 - expected).abs();
                assert!(
                    diff <= tolerance,
                    "s={exponent} rank {r}: {count} vs {expected:.0}"
                );
            }
        }
    }

    #[test]
    fn one_key_is_always_rank_zero() {
        let mut keys = ZipfKeys::new(1, 1.2, 5).expect("valid parameters");
        assert!(keys.by_ref().take(100).all(|k| k == 0));
        assert_eq!((keys.keys(), keys.exponent()), (1, 1.2));
    }
}
