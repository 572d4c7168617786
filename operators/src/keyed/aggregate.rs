//! Mergeable aggregations: the algebra that lets one key live on several instances.
//!
//! An [`Aggregate`] folds inputs into an accumulator (`init`, `add`), combines two accumulators
//! (`merge`) and reads a result out of one (`finish`). When a hot key is split over several
//! instances (see [`route`](super::route)), each instance keeps a *partial* accumulator for it and
//! a downstream step merges the partials. That is only exact if
//!
//! ```text
//! merge(fold(part_1), fold(part_2), …, fold(part_m)) == fold(part_1 ++ part_2 ++ … ++ part_m)
//! ```
//!
//! for every way of cutting the input into parts, and in every merge order (partials arrive from
//! different instances in no fixed order). Every built-in here satisfies this exactly — the
//! module's property tests check it — which is why the built-ins are integer-only where it
//! matters: floating-point addition is not associative, so a split `f64` sum would differ from an
//! unsplit one in its last bits. Use [`AggregateFn`] with your own accumulator (for example a
//! fixed-point integer) when you need a float-valued sum.
//!
//! | built-in | input | accumulator | output |
//! |---|---|---|---|
//! | [`Count<T>`] | any `T` | `u64` | `u64` |
//! | [`Sum<T>`] | 8–64-bit integers | `i128` / `u128` | `i128` / `u128` |
//! | [`Min<T>`], [`Max<T>`] | `T: Ord + Clone` | `Option<T>` | `Option<T>` |
//! | [`Mean<T>`] | 8–64-bit integers | [`MeanAcc`] (wide sum + count) | `Option<f64>` |
//!
//! # Overflow
//!
//! [`Sum`] and [`Mean`] accumulate in a 128-bit integer of the input's signedness. A sum of
//! fewer than 2^64 values of at most 64 bits each cannot leave that range (|sum| < 2^64 · 2^63 =
//! 2^127), so for every stream a `u64` row counter can describe the result is exact. The
//! arithmetic saturates rather than wraps, so an impossible overflow would show as the extreme
//! value instead of a plausible wrong one. [`Count`] saturates at `u64::MAX` likewise.
//!
//! ```
//! use weir_operators::keyed::aggregate::{accumulate, Aggregate, Sum};
//!
//! let sum = Sum::<i64>::new();
//! let mut left = accumulate(&sum, &[i64::MAX, 5]);
//! let right = accumulate(&sum, &[i64::MAX]);
//! sum.merge(&mut left, right);
//! // Exact: no overflow although the total exceeds i64::MAX.
//! assert_eq!(sum.finish(&left), 2 * i128::from(i64::MAX) + 5);
//! ```

use std::fmt;
use std::marker::PhantomData;

use weir_runtime::{Data, HeapSize};

/// A mergeable aggregation over values of type [`Input`](Aggregate::Input).
///
/// Implementations must make `merge` associative and commutative and `init` its identity, so
/// that partial accumulators built on different instances combine into exactly the accumulator
/// a single instance would have built (see the [module docs](self)).
pub trait Aggregate {
    /// The type of one input value.
    type Input;
    /// The running state. It is cloned when a partial result is emitted and moved between
    /// threads when partials are merged downstream.
    type Acc: Clone + Data;
    /// The final result read from an accumulator.
    type Output;

    /// A fresh accumulator: the identity of [`merge`](Aggregate::merge).
    fn init(&self) -> Self::Acc;

    /// Folds one input into `acc`.
    fn add(&self, acc: &mut Self::Acc, input: &Self::Input);

    /// Folds another accumulator into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);

    /// Reads the result out of `acc` (which stays usable).
    fn finish(&self, acc: &Self::Acc) -> Self::Output;

    /// Bytes held by `acc`, for state-size accounting. The default is the accumulator's inline
    /// size plus the heap it owns ([`HeapSize`]).
    fn acc_bytes(&self, acc: &Self::Acc) -> usize {
        std::mem::size_of::<Self::Acc>() + acc.heap_size()
    }
}

/// Folds `inputs` into a fresh accumulator of `agg`.
///
/// ```
/// use weir_operators::keyed::aggregate::{accumulate, Aggregate, Count};
///
/// let count = Count::<&str>::new();
/// assert_eq!(count.finish(&accumulate(&count, &["a", "b", "a"])), 3);
/// ```
pub fn accumulate<'a, A>(agg: &A, inputs: impl IntoIterator<Item = &'a A::Input>) -> A::Acc
where
    A: Aggregate + ?Sized,
    A::Input: 'a,
{
    let mut acc = agg.init();
    for input in inputs {
        agg.add(&mut acc, input);
    }
    acc
}

/// Implements `Clone`, `Copy`, `Default`, `Debug` and `new()` for a stateless marker struct
/// `Name<T>(PhantomData<fn(&T)>)` without requiring anything of `T`.
macro_rules! marker_aggregate {
    ($name:ident) => {
        impl<T> $name<T> {
            /// Creates the aggregation.
            pub const fn new() -> Self {
                Self(PhantomData)
            }
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<T> Copy for $name<T> {}

        impl<T> Default for $name<T> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

/// Counts inputs of any type `T`. Output `u64`, saturating at `u64::MAX`.
pub struct Count<T>(PhantomData<fn(&T)>);
marker_aggregate!(Count);

impl<T> Aggregate for Count<T> {
    type Input = T;
    type Acc = u64;
    type Output = u64;

    fn init(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _input: &T) {
        *acc = acc.saturating_add(1);
    }

    fn merge(&self, acc: &mut u64, other: u64) {
        *acc = acc.saturating_add(other);
    }

    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Integers that [`Sum`] and [`Mean`] accept, with the 128-bit type they accumulate in.
///
/// Implemented for `i8`–`i64`, `isize` (accumulated as `i128`) and `u8`–`u64`, `usize`
/// (accumulated as `u128`).
pub trait SumInput: Copy {
    /// The accumulator type: `i128` for signed inputs, `u128` for unsigned ones.
    type Wide: Copy + Default + PartialEq + fmt::Debug + Data;

    /// Widens one input losslessly.
    fn widen(self) -> Self::Wide;

    /// `a + b`, saturating at the bounds of [`Wide`](SumInput::Wide).
    fn add_wide(a: Self::Wide, b: Self::Wide) -> Self::Wide;

    /// The nearest `f64` to `wide`.
    fn wide_to_f64(wide: Self::Wide) -> f64;
}

macro_rules! sum_input {
    ($wide:ty => $($t:ty),*) => {$(
        impl SumInput for $t {
            type Wide = $wide;

            fn widen(self) -> $wide {
                // Lossless: every implementing type is at most 64 bits wide.
                self as $wide
            }

            fn add_wide(a: $wide, b: $wide) -> $wide {
                a.saturating_add(b)
            }

            fn wide_to_f64(wide: $wide) -> f64 {
                wide as f64
            }
        }
    )*};
}
sum_input!(i128 => i8, i16, i32, i64, isize);
sum_input!(u128 => u8, u16, u32, u64, usize);

/// Sums integers exactly in a 128-bit accumulator (see the [module docs](self#overflow)).
///
/// The output is the wide type (`i128` for `Sum<i64>`), so it never has to be narrowed;
/// convert with `try_into` where a narrower result is wanted.
pub struct Sum<T>(PhantomData<fn(&T)>);
marker_aggregate!(Sum);

impl<T: SumInput> Aggregate for Sum<T> {
    type Input = T;
    type Acc = T::Wide;
    type Output = T::Wide;

    fn init(&self) -> T::Wide {
        T::Wide::default()
    }

    fn add(&self, acc: &mut T::Wide, input: &T) {
        *acc = T::add_wide(*acc, input.widen());
    }

    fn merge(&self, acc: &mut T::Wide, other: T::Wide) {
        *acc = T::add_wide(*acc, other);
    }

    fn finish(&self, acc: &T::Wide) -> T::Wide {
        *acc
    }
}

/// The smallest input under `T`'s [`Ord`]; `None` before any input.
///
/// The accumulator holds one clone of the current minimum; its
/// [`acc_bytes`](Aggregate::acc_bytes) counts the heap a `T` owns (a `String`'s buffer).
pub struct Min<T>(PhantomData<fn(&T)>);
marker_aggregate!(Min);

/// The largest input under `T`'s [`Ord`]; `None` before any input.
pub struct Max<T>(PhantomData<fn(&T)>);
marker_aggregate!(Max);

macro_rules! extremum {
    ($name:ident, $keep_new:expr) => {
        impl<T: Ord + Clone + Data> Aggregate for $name<T> {
            type Input = T;
            type Acc = Option<T>;
            type Output = Option<T>;

            fn init(&self) -> Option<T> {
                None
            }

            fn add(&self, acc: &mut Option<T>, input: &T) {
                let keep_new: fn(&T, &T) -> bool = $keep_new;
                match acc {
                    Some(current) if !keep_new(input, current) => {}
                    _ => *acc = Some(input.clone()),
                }
            }

            fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
                let keep_new: fn(&T, &T) -> bool = $keep_new;
                match (acc.as_ref(), other) {
                    (_, None) => {}
                    (Some(current), Some(new)) if !keep_new(&new, current) => {}
                    (_, new) => *acc = new,
                }
            }

            fn finish(&self, acc: &Option<T>) -> Option<T> {
                acc.clone()
            }
        }
    };
}
extremum!(Min, |new, current| new < current);
extremum!(Max, |new, current| new > current);

/// The accumulator of [`Mean`]: an exact wide sum and a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeanAcc<W> {
    /// Sum of the inputs, in the 128-bit type of [`SumInput::Wide`].
    pub sum: W,
    /// Number of inputs.
    pub count: u64,
}

impl<W: HeapSize> HeapSize for MeanAcc<W> {
    const HAS_HEAP: bool = W::HAS_HEAP;

    fn heap_size(&self) -> usize {
        self.sum.heap_size()
    }
}

/// The arithmetic mean of integers: an exact sum and count, divided only in
/// [`finish`](Aggregate::finish). `None` before any input.
///
/// Because the accumulator is exact, the mean of a split key equals the unsplit mean bit for
/// bit; the only rounding is the final `sum as f64 / count as f64`.
pub struct Mean<T>(PhantomData<fn(&T)>);
marker_aggregate!(Mean);

impl<T: SumInput> Aggregate for Mean<T> {
    type Input = T;
    type Acc = MeanAcc<T::Wide>;
    type Output = Option<f64>;

    fn init(&self) -> Self::Acc {
        MeanAcc::default()
    }

    fn add(&self, acc: &mut Self::Acc, input: &T) {
        acc.sum = T::add_wide(acc.sum, input.widen());
        acc.count = acc.count.saturating_add(1);
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.sum = T::add_wide(acc.sum, other.sum);
        acc.count = acc.count.saturating_add(other.count);
    }

    fn finish(&self, acc: &Self::Acc) -> Option<f64> {
        (acc.count > 0).then(|| T::wide_to_f64(acc.sum) / acc.count as f64)
    }
}

/// Marks the input, accumulator and output types of an [`AggregateFn`] without owning them (so
/// `Send`/`Sync` follow the closures alone).
type Signature<I, A, O> = PhantomData<fn(&I, A) -> (A, O)>;

/// An [`Aggregate`] made of four closures.
///
/// The caller promises what the built-ins guarantee: `merge` associative and commutative with
/// `init()` as identity. Splitting a key is exact only then.
///
/// ```
/// use weir_operators::keyed::aggregate::{accumulate, Aggregate, AggregateFn};
///
/// // Longest string length.
/// let longest = AggregateFn::new(
///     || 0usize,
///     |acc: &mut usize, s: &String| *acc = (*acc).max(s.len()),
///     |acc: &mut usize, other: usize| *acc = (*acc).max(other),
///     |acc: &usize| *acc,
/// );
/// let words = ["a".to_string(), "abc".to_string()];
/// assert_eq!(longest.finish(&accumulate(&longest, &words)), 3);
/// ```
pub struct AggregateFn<I, A, O, FI, FA, FM, FF> {
    init: FI,
    add: FA,
    merge: FM,
    finish: FF,
    types: Signature<I, A, O>,
}

impl<I, A, O, FI, FA, FM, FF> AggregateFn<I, A, O, FI, FA, FM, FF>
where
    FI: Fn() -> A,
    FA: Fn(&mut A, &I),
    FM: Fn(&mut A, A),
    FF: Fn(&A) -> O,
{
    /// Builds an aggregation from `init`, `add`, `merge` and `finish`.
    pub fn new(init: FI, add: FA, merge: FM, finish: FF) -> Self {
        Self {
            init,
            add,
            merge,
            finish,
            types: PhantomData,
        }
    }
}

impl<I, A, O, FI: Clone, FA: Clone, FM: Clone, FF: Clone> Clone
    for AggregateFn<I, A, O, FI, FA, FM, FF>
{
    fn clone(&self) -> Self {
        Self {
            init: self.init.clone(),
            add: self.add.clone(),
            merge: self.merge.clone(),
            finish: self.finish.clone(),
            types: PhantomData,
        }
    }
}

impl<I, A, O, FI, FA, FM, FF> fmt::Debug for AggregateFn<I, A, O, FI, FA, FM, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AggregateFn")
    }
}

impl<I, A, O, FI, FA, FM, FF> Aggregate for AggregateFn<I, A, O, FI, FA, FM, FF>
where
    A: Clone + Data,
    FI: Fn() -> A,
    FA: Fn(&mut A, &I),
    FM: Fn(&mut A, A),
    FF: Fn(&A) -> O,
{
    type Input = I;
    type Acc = A;
    type Output = O;

    fn init(&self) -> A {
        (self.init)()
    }

    fn add(&self, acc: &mut A, input: &I) {
        (self.add)(acc, input)
    }

    fn merge(&self, acc: &mut A, other: A) {
        (self.merge)(acc, other)
    }

    fn finish(&self, acc: &A) -> O {
        (self.finish)(acc)
    }
}

/// An aggregation `A` over a value taken from each input by `f`: sums or extremes of a field.
///
/// ```
/// use weir_operators::keyed::aggregate::{accumulate, Aggregate, Project, Sum};
///
/// struct View { ms: u32 }
/// let total_ms = Project::new(|v: &View| v.ms, Sum::<u32>::new());
/// let views = [View { ms: 5 }, View { ms: 7 }];
/// assert_eq!(total_ms.finish(&accumulate(&total_ms, &views)), 12);
/// ```
pub struct Project<I, F, A> {
    f: F,
    inner: A,
    _input: PhantomData<fn(&I)>,
}

impl<I, F, A> Project<I, F, A> {
    /// Aggregates `f(input)` with `inner`.
    pub fn new(f: F, inner: A) -> Self {
        Self {
            f,
            inner,
            _input: PhantomData,
        }
    }
}

impl<I, F: Clone, A: Clone> Clone for Project<I, F, A> {
    fn clone(&self) -> Self {
        Self::new(self.f.clone(), self.inner.clone())
    }
}

impl<I, F, A: fmt::Debug> fmt::Debug for Project<I, F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Project").field(&self.inner).finish()
    }
}

impl<I, F, A> Aggregate for Project<I, F, A>
where
    A: Aggregate,
    F: Fn(&I) -> A::Input,
{
    type Input = I;
    type Acc = A::Acc;
    type Output = A::Output;

    fn init(&self) -> A::Acc {
        self.inner.init()
    }

    fn add(&self, acc: &mut A::Acc, input: &I) {
        self.inner.add(acc, &(self.f)(input));
    }

    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.inner.merge(acc, other);
    }

    fn finish(&self, acc: &A::Acc) -> A::Output {
        self.inner.finish(acc)
    }

    fn acc_bytes(&self, acc: &A::Acc) -> usize {
        self.inner.acc_bytes(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cuts `inputs` at `cuts` (taken modulo the length), folds each part, and merges the
    /// partial accumulators in the order given by `order` — as instances holding parts of a
    /// split key would.
    fn split_merge<A: Aggregate>(
        agg: &A,
        inputs: &[A::Input],
        cuts: &[usize],
        order: &[usize],
    ) -> A::Acc {
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (inputs.len() + 1)).collect();
        bounds.push(0);
        bounds.push(inputs.len());
        bounds.sort_unstable();
        let mut parts: Vec<A::Acc> = bounds
            .windows(2)
            .map(|w| accumulate(agg, &inputs[w[0]..w[1]]))
            .collect();
        // Merge in a permuted order: a pseudo-random rotation and swaps driven by `order`.
        for (i, o) in order.iter().enumerate() {
            let len = parts.len();
            parts.swap(i % len, o % len);
        }
        let mut acc = agg.init();
        for part in parts {
            agg.merge(&mut acc, part);
        }
        acc
    }

    fn assert_split_exact<A>(agg: &A, inputs: &[A::Input], cuts: &[usize], order: &[usize])
    where
        A: Aggregate,
        A::Acc: PartialEq + fmt::Debug,
        A::Output: PartialEq + fmt::Debug,
    {
        let whole = accumulate(agg, inputs);
        let split = split_merge(agg, inputs, cuts, order);
        assert_eq!(split, whole);
        assert_eq!(agg.finish(&split), agg.finish(&whole));
    }

    proptest! {
        #[test]
        fn splitting_is_exact_for_signed_builtins(
            inputs in prop::collection::vec(any::<i64>(), 0..200),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            order in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            assert_split_exact(&Count::<i64>::new(), &inputs, &cuts, &order);
            assert_split_exact(&Sum::<i64>::new(), &inputs, &cuts, &order);
            assert_split_exact(&Min::<i64>::new(), &inputs, &cuts, &order);
            assert_split_exact(&Max::<i64>::new(), &inputs, &cuts, &order);
            assert_split_exact(&Mean::<i64>::new(), &inputs, &cuts, &order);
        }

        #[test]
        fn splitting_is_exact_for_unsigned_and_small_builtins(
            big in prop::collection::vec(any::<u64>(), 0..200),
            small in prop::collection::vec(any::<i8>(), 0..200),
            words in prop::collection::vec("[a-c]{0,3}", 0..50),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
            order in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            assert_split_exact(&Sum::<u64>::new(), &big, &cuts, &order);
            assert_split_exact(&Mean::<u64>::new(), &big, &cuts, &order);
            assert_split_exact(&Sum::<i8>::new(), &small, &cuts, &order);
            assert_split_exact(&Min::<String>::new(), &words, &cuts, &order);
            assert_split_exact(&Max::<String>::new(), &words, &cuts, &order);
        }

        #[test]
        fn builtins_match_a_reference_model(inputs in prop::collection::vec(any::<i64>(), 0..200)) {
            let wide: i128 = inputs.iter().map(|&x| i128::from(x)).sum();
            prop_assert_eq!(Sum::<i64>::new().finish(&accumulate(&Sum::new(), &inputs)), wide);
            prop_assert_eq!(Count::<i64>::new().finish(&accumulate(&Count::new(), &inputs)), inputs.len() as u64);
            prop_assert_eq!(Min::<i64>::new().finish(&accumulate(&Min::new(), &inputs)), inputs.iter().min().copied());
            prop_assert_eq!(Max::<i64>::new().finish(&accumulate(&Max::new(), &inputs)), inputs.iter().max().copied());
            let mean = Mean::<i64>::new().finish(&accumulate(&Mean::new(), &inputs));
            let expected = (!inputs.is_empty()).then(|| wide as f64 / inputs.len() as f64);
            prop_assert_eq!(mean, expected);
        }
    }

    #[test]
    fn sums_past_the_input_type_do_not_overflow() {
        let sum = Sum::<u64>::new();
        let acc = accumulate(&sum, &[u64::MAX, u64::MAX, 2]);
        assert_eq!(sum.finish(&acc), 2 * u128::from(u64::MAX) + 2);
        let sum = Sum::<i64>::new();
        let acc = accumulate(&sum, &[i64::MIN, i64::MIN, -1]);
        assert_eq!(sum.finish(&acc), 2 * i128::from(i64::MIN) - 1);
    }

    #[test]
    fn empty_inputs_have_identity_results() {
        assert_eq!(Count::<u8>::new().finish(&0), 0);
        assert_eq!(Min::<u8>::new().finish(&None), None);
        assert_eq!(Mean::<u8>::new().finish(&MeanAcc::default()), None);
    }

    #[test]
    fn min_and_max_keep_the_earlier_of_equal_inputs() {
        // Ordered by `key` only, so equal inputs stay distinguishable by `tag`.
        #[derive(Clone, Debug, HeapSize)]
        struct Tagged {
            key: u8,
            tag: &'static str,
        }
        impl PartialEq for Tagged {
            fn eq(&self, other: &Self) -> bool {
                self.key == other.key
            }
        }
        impl Eq for Tagged {}
        impl PartialOrd for Tagged {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Tagged {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.key.cmp(&other.key)
            }
        }
        let t = |key, tag| Tagged { key, tag };
        for agg_is_min in [true, false] {
            let inputs = [t(1, "first"), t(1, "second")];
            let (acc, merged) = if agg_is_min {
                let min = Min::<Tagged>::new();
                let mut acc = accumulate(&min, &inputs);
                let before = acc.clone();
                min.merge(&mut acc, Some(t(1, "third")));
                (before, acc)
            } else {
                let max = Max::<Tagged>::new();
                let mut acc = accumulate(&max, &inputs);
                let before = acc.clone();
                max.merge(&mut acc, Some(t(1, "third")));
                (before, acc)
            };
            assert_eq!(acc.map(|x| x.tag), Some("first"));
            assert_eq!(merged.map(|x| x.tag), Some("first"));
        }
    }

    #[test]
    fn acc_bytes_defaults_to_inline_size() {
        assert_eq!(Sum::<i64>::new().acc_bytes(&0), 16);
        assert_eq!(Count::<()>::new().acc_bytes(&0), 8);
    }
}
