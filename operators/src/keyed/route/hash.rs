//! Stable key hashing and candidate instances derived from a key hash.

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

/// A seeded, stable 64-bit key hash: XXH3-64 over the key's little-endian encoding.
///
/// Routing must agree everywhere a key is routed — across runs, across the processes of a
/// distributed edge, and across the restore of state partitioned by key — so the hash must be a
/// fixed function of the key bytes. XXH3 is a frozen, published specification (the same
/// output from any conforming implementation, on any platform and endianness), it is among the
/// fastest hashes for short keys, and `xxhash-rust` is a widely used, dependency-free
/// implementation. Hashers designed for in-memory tables (`foldhash`, `ahash`, `rustc-hash`)
/// reserve the right to change their output between versions or platforms, which would silently
/// re-route keys.
///
/// [`hash`](Self::hash) feeds any `K: Hash` through an adapter that encodes every integer
/// little-endian and `usize`/`isize` as 64 bits, so the result does not depend on the platform
/// as long as `K`'s own `Hash` impl does not. For a `u64` key, `hash(&k) == hash_u64(k)`.
///
/// ```
/// use weir_operators::keyed::route::KeyHasher;
///
/// let hasher = KeyHasher::default();
/// assert_eq!(hasher.hash(&42u64), hasher.hash_u64(42));
/// assert_eq!(hasher.hash("user-7"), hasher.hash("user-7"));
/// assert_ne!(KeyHasher::new(1).hash_u64(42), KeyHasher::new(2).hash_u64(42));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// The seed of [`KeyHasher::default`].
    pub const DEFAULT_SEED: u64 = 0x7765_6972_5f6b_6579; // "weir_key"

    /// A hasher with the given seed. Two hashers route alike iff their seeds are equal.
    pub const fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// Hashes a `u64` key (its 8 little-endian bytes).
    pub fn hash_u64(&self, key: u64) -> u64 {
        xxh3_64_with_seed(&key.to_le_bytes(), self.seed)
    }

    /// Hashes raw key bytes.
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        xxh3_64_with_seed(bytes, self.seed)
    }

    /// Hashes any `K: Hash` via its platform-independent encoding (see the type docs).
    pub fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        let mut hasher = StableHasher::new(self.seed);
        key.hash(&mut hasher);
        hasher.finish()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SEED)
    }
}

/// Bytes held inline before [`StableHasher`] falls back to streaming.
const INLINE: usize = 128;

/// A `Hasher` whose output is XXH3-64 of the little-endian encoding of everything written.
/// Short keys are buffered and hashed one-shot; longer ones stream (same result, by XXH3's
/// definition of streaming).
struct StableHasher {
    seed: u64,
    buf: [u8; INLINE],
    len: usize,
    stream: Option<Box<Xxh3>>,
}

impl StableHasher {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(stream) = &mut self.stream {
            stream.update(bytes);
        } else if self.len + bytes.len() <= INLINE {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut stream = Box::new(Xxh3::with_seed(self.seed));
            stream.update(&self.buf[..self.len]);
            stream.update(bytes);
            self.stream = Some(stream);
        }
    }

    fn finish(&self) -> u64 {
        match &self.stream {
            Some(stream) => stream.digest(),
            None => xxh3_64_with_seed(&self.buf[..self.len], self.seed),
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
}

/// Maps `x` uniformly onto `0..n` using its high bits (Lemire's multiply-shift range reduction:
/// no division, no bias beyond `n / 2^64`).
fn reduce(x: u64, n: u64) -> u64 {
    ((u128::from(x) * u128::from(n)) >> 64) as u64
}

/// A strong 64-bit mixer (the SplitMix64 finalizer): a bijection, so distinct inputs stay
/// distinct, and each output bit depends on every input bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The instance in `0..n` that owns `hash` under plain hash partitioning.
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::hash_target;
///
/// let n = NonZeroUsize::new(16).expect("16 is non-zero");
/// assert!(hash_target(0xdead_beef, n) < 16);
/// assert_eq!(hash_target(0, n), 0);
/// assert_eq!(hash_target(u64::MAX, n), 15);
/// ```
pub fn hash_target(hash: u64, n: NonZeroUsize) -> usize {
    reduce(hash, n.get() as u64) as usize
}

/// The two candidate instances of `hash` for two-choice routing: distinct when `n >= 2`,
/// `(0, 0)` when `n == 1`.
///
/// The first is [`hash_target`], so a key's hash-partitioned instance is always one of its
/// candidates; the second is uniform over the other `n - 1` instances. These are the first
/// two elements of [`candidates`], so widening a key to more candidates keeps these two.
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::{hash_target, two_choices};
///
/// let n = NonZeroUsize::new(8).expect("8 is non-zero");
/// let (a, b) = two_choices(12345, n);
/// assert_ne!(a, b);
/// assert_eq!(a, hash_target(12345, n));
/// ```
pub fn two_choices(hash: u64, n: NonZeroUsize) -> (usize, usize) {
    let mut c = candidates(hash, n, 2);
    let first = c.next().unwrap_or(0);
    (first, c.next().unwrap_or(first))
}

/// The first `d` (at most `n`) of `hash`'s candidate instances: a fixed pseudo-random order of
/// all `n` instances, chosen by the key.
///
/// The order starts with [`hash_target`]; position `i >= 1` holds
/// `(first + 1 + π(i - 1)) mod n`, where `π` is a key-seeded pseudo-random permutation of
/// `0..n-1` (a 4-round Feistel network over the next even number of bits, cycle-walked back
/// into range, expected under four rounds of walking). So the candidates are distinct, prefixes
/// are nested (`candidates(h, n, d)` starts with `candidates(h, n, d - 1)`), each costs `O(1)`
/// expected, and the iterator holds no allocation.
///
/// ```
/// use std::num::NonZeroUsize;
/// use weir_operators::keyed::route::candidates;
///
/// let n = NonZeroUsize::new(16).expect("16 is non-zero");
/// let mut all: Vec<usize> = candidates(99, n, 16).collect();
/// let four: Vec<usize> = candidates(99, n, 4).collect();
/// assert_eq!(&all[..4], &four[..]);
/// all.sort_unstable();
/// assert_eq!(all, (0..16).collect::<Vec<_>>());
/// ```
pub fn candidates(hash: u64, n: NonZeroUsize, d: usize) -> Candidates {
    let n = n.get() as u64;
    Candidates {
        first: reduce(hash, n),
        n,
        perm: OffsetPermutation::new(mix(hash ^ 0x9e37_79b9_7f4a_7c15), n - 1),
        next: 0,
        end: (d as u64).min(n),
    }
}

/// Iterator over a key's candidate instances; see [`candidates`].
#[derive(Clone, Debug)]
pub struct Candidates {
    first: u64,
    n: u64,
    perm: OffsetPermutation,
    next: u64,
    end: u64,
}

impl Iterator for Candidates {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let c = if i == 0 {
            self.first
        } else {
            (self.first + 1 + self.perm.apply(i - 1)) % self.n
        };
        Some(c as usize)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Candidates {}

/// A keyed pseudo-random permutation of `0..m`: a balanced Feistel network on `2 * half` bits
/// (with `4^half >= m`, so under 4 walks expected) plus cycle walking.
#[derive(Clone, Debug)]
struct OffsetPermutation {
    key: u64,
    m: u64,
    half: u32,
}

impl OffsetPermutation {
    const ROUNDS: u64 = 4;

    fn new(key: u64, m: u64) -> Self {
        // Smallest `half` with 2^(2*half) >= m, at least 1 so both halves have a bit.
        let bits = u64::BITS - m.saturating_sub(1).leading_zeros();
        let half = bits.div_ceil(2).max(1);
        Self { key, m, half }
    }

    fn apply(&self, i: u64) -> u64 {
        debug_assert!(i < self.m);
        if self.m <= 1 {
            return 0;
        }
        let mut x = self.feistel(i);
        // Cycle walking terminates: the cycle through `i` returns to `i`, which is in range.
        while x >= self.m {
            x = self.feistel(x);
        }
        x
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut left, mut right) = (x >> self.half, x & mask);
        for round in 0..Self::ROUNDS {
            let f = mix(self.key ^ round.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ right) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half) | right
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
    fn xxh3_is_the_published_algorithm() {
        // Reference values from the XXH3 specification's test vectors (empty input).
        assert_eq!(KeyHasher::new(0).hash_bytes(&[]), 0x2d06_8005_38d3_94c2);
        // Pinned routing hashes: changing them re-routes every key; do so only deliberately.
        let h = KeyHasher::default();
        assert_eq!(h.hash_u64(42), 0x48de_daf4_52fe_a7db);
        assert_eq!(h.hash("user-7"), 0x82b3_7399_4c7f_ab19);
        assert_eq!(h.hash_u64(0), h.hash_bytes(&[0; 8]));
        assert_eq!(h.hash(&1u32), h.hash_bytes(&[1, 0, 0, 0]));
        assert_eq!(
            h.hash(&(7usize, -1i16)),
            h.hash_bytes(&[7, 0, 0, 0, 0, 0, 0, 0, 255, 255])
        );
    }

    #[test]
    fn long_keys_stream_to_the_same_hash() {
        let h = KeyHasher::new(3);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
        let mut stable = StableHasher::new(3);
        for chunk in long.chunks(7) {
            stable.write(chunk);
        }
        assert_eq!(stable.finish(), h.hash_bytes(&long));
    }

    proptest! {
        #[test]
        fn candidates_are_a_nested_permutation(hash in any::<u64>(), n in 1usize..70) {
            let all: Vec<usize> = candidates(hash, nz(n), n + 5).collect();
            prop_assert_eq!(all.len(), n);
            prop_assert_eq!(all[0], hash_target(hash, nz(n)));
            let mut sorted = all.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            for d in 0..=n {
                let prefix: Vec<usize> = candidates(hash, nz(n), d).collect();
                prop_assert_eq!(&prefix[..], &all[..d]);
            }
            let (a, b) = two_choices(hash, nz(n));
            prop_assert_eq!((a, b), (all[0], *all.get(1).unwrap_or(&all[0])));
        }
    }

    #[test]
    fn second_choice_is_roughly_uniform() {
        // 16 instances, 64k keys: each (first, second) pair of 240 should get ~273.
        let n = nz(16);
        let h = KeyHasher::default();
        let mut pairs = vec![0u32; 256];
        for key in 0..65_536u64 {
            let (a, b) = two_choices(h.hash_u64(key), n);
            pairs[a * 16 + b] += 1;
        }
        for a in 0..16 {
            assert_eq!(pairs[a * 16 + a], 0);
            for b in (0..16).filter(|&b| b != a) {
                let c = pairs[a * 16 + b];
                assert!((180..380).contains(&c), "pair ({a}, {b}) got {c}");
            }
        }
    }
}
