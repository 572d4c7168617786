//! Exact, order-independent floating-point summation.
//!
//! Per-batch partial aggregates are merged in whatever order batches finish; with plain `+=` the
//! result would depend on that order (and on batch boundaries). [`ExactSum`] keeps the running
//! sum *exactly* as a short list of non-overlapping doubles (Shewchuk's "partials", the method
//! behind Python's `math.fsum`): adding `x` replaces the list by the exact expansion of
//! `list + x` using error-free two-sums. [`ExactSum::value`] rounds the exact total once, to
//! nearest-even. Because the stored value is exact, any grouping or order of additions and merges
//! gives the same `value()` bit for bit.
//!
//! Partials are non-overlapping and sorted by magnitude, so there are at most ~40 of them for
//! finite doubles (2 098 bits of exponent range / 53 bits each); in practice a handful.
//!
//! Non-finite inputs are summed separately (so `+∞ + −∞` is NaN, as in IEEE arithmetic); a total
//! whose magnitude exceeds `f64::MAX` while adding partials becomes infinite.

/// An exact running sum of `f64`s; see the module docs.
///
/// ```
/// use weir_operators::columnar::ExactSum;
///
/// let mut a = ExactSum::new();
/// for x in [1e16, 1.0, -1e16] {
///     a.add(x);
/// }
/// assert_eq!(a.value(), 1.0); // naive summation gives 0.0
/// ```
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExactSum {
    /// Non-overlapping, increasing in magnitude; their exact sum is the running total.
    partials: Vec<f64>,
    /// Sum of the non-finite inputs (0.0 when there were none).
    special: f64,
}

impl ExactSum {
    /// An empty sum (value 0.0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special += x;
            return;
        }
        let mut x = x;
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            // Two-sum with |x| >= |y|: hi + lo == x + y exactly.
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// Adds another sum exactly.
    pub fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
        self.special += other.special;
    }

    /// The exact total rounded once to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        if self.special != 0.0 || self.special.is_nan() {
            return self.special;
        }
        let p = &self.partials;
        let Some(&top) = p.last() else {
            return 0.0;
        };
        // Add partials from the largest down until the sum stops being exact.
        let mut hi = top;
        let mut lo = 0.0;
        let mut n = p.len() - 1;
        while n > 0 {
            n -= 1;
            let x = hi;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // `hi + lo` is a halfway case rounded to even; if the rest has the same sign as `lo`,
        // the true value lies beyond the halfway point, so round away instead.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: values are k·2^-40 with |k| < 2^52, so their sum is an exact i128 multiple of
    /// 2^-40; `i128 as f64` rounds to nearest-even and scaling by 2^-40 is exact.
    fn model(ks: &[i64]) -> f64 {
        let total: i128 = ks.iter().map(|&k| i128::from(k)).sum();
        total as f64 * 2f64.powi(-40)
    }

    fn value(k: i64) -> f64 {
        k as f64 * 2f64.powi(-40)
    }

    proptest! {
        #[test]
        fn equals_the_correctly_rounded_sum(ks in proptest::collection::vec(-(1i64 << 52)..(1i64 << 52), 0..60)) {
            let mut s = ExactSum::new();
            for &k in &ks {
                s.add(value(k));
            }
            prop_assert_eq!(s.value().to_bits(), model(&ks).to_bits());
        }

        #[test]
        fn any_split_and_merge_order_gives_the_same_bits(
            ks in proptest::collection::vec(-(1i64 << 52)..(1i64 << 52), 0..60),
            cut in 0usize..60,
        ) {
            let cut = cut.min(ks.len());
            let (a, b) = ks.split_at(cut);
            let mut left = ExactSum::new();
            a.iter().for_each(|&k| left.add(value(k)));
            let mut right = ExactSum::new();
            b.iter().rev().for_each(|&k| right.add(value(k)));
            right.merge(&left);
            prop_assert_eq!(right.value().to_bits(), model(&ks).to_bits());
        }
    }

    #[test]
    fn catastrophic_cancellation_and_specials() {
        let mut s = ExactSum::new();
        for x in [1e100, 1.0, -1e100, 1e-100] {
            s.add(x);
        }
        assert_eq!(s.value(), 1.0 + 1e-100);
        let mut naive = 0.0;
        for _ in 0..10 {
            naive += 0.1;
        }
        let mut t = ExactSum::new();
        (0..10).for_each(|_| t.add(0.1));
        assert_ne!(naive, 1.0);
        // exactly 10 × fl(0.1) = 1.0000000000000000555…, which rounds to 1.0
        assert_eq!(t.value(), 1.0);
        s.add(f64::INFINITY);
        assert_eq!(s.value(), f64::INFINITY);
        s.add(f64::NEG_INFINITY);
        assert!(s.value().is_nan());
        assert_eq!(ExactSum::new().value(), 0.0);
    }
}
