//! Stable key hashing and candidate instances derived from a key hash.

use std::any::{Any, TypeId};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

use super::group::KeyGroups;

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
/// [`hash_key`](Self::hash_key) gives the same value for an owned (`'static`) key type, and
/// hashes fixed-width keys — the integers, `bool`, `char`, and pairs of 32- or 64-bit integers
/// — straight from their bytes, with no adapter: which path a key type takes is decided by its
/// [`TypeId`] when the code is compiled for it, so the check costs nothing at run time.
///
/// ```
/// use weir_operators::keyed::route::KeyHasher;
///
/// let hasher = KeyHasher::default();
/// assert_eq!(hasher.hash(&42u64), hasher.hash_u64(42));
/// assert_eq!(hasher.hash_key(&42u64), hasher.hash_u64(42));
/// assert_eq!(hasher.hash_key(&(1u32, -2i32)), hasher.hash(&(1u32, -2i32)));
/// assert_eq!(hasher.hash("user-7"), hasher.hash("user-7"));
/// assert_ne!(KeyHasher::new(1).hash_u64(42), KeyHasher::new(2).hash_u64(42));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHasher {
    seed: u64,
    /// XXH3's seed-dependent constant for inputs of 4 to 8 bytes, computed once per hasher
    /// (a function of `seed`, so equality and `Hash` still follow the seed).
    flip4to8: u64,
}

/// Bytes 8..16 and 16..24 of XXH3's default secret, little-endian: the two words its 4-to-8
/// byte path mixes with the seed.
const SECRET_8: u64 = 0x1cad_21f7_2c81_017c;
const SECRET_16: u64 = 0xdb97_9083_e96d_d4de;

/// XXH3's `flip` for inputs of 4 to 8 bytes under `seed`.
const fn flip4to8(seed: u64) -> u64 {
    let seed = seed ^ (((seed as u32).swap_bytes() as u64) << 32);
    (SECRET_8 ^ SECRET_16).wrapping_sub(seed)
}

/// XXH3's final mix for inputs of 4 to 8 bytes (`rrmxmx`).
#[inline(always)]
const fn strong_avalanche(mut h: u64, len: u64) -> u64 {
    h ^= h.rotate_left(49) ^ h.rotate_left(24);
    h = h.wrapping_mul(0x9fb2_1c65_1e98_df25);
    h ^= (h >> 35).wrapping_add(len);
    h = h.wrapping_mul(0x9fb2_1c65_1e98_df25);
    h ^ (h >> 28)
}

impl KeyHasher {
    /// The seed of [`KeyHasher::default`].
    pub const DEFAULT_SEED: u64 = 0x7765_6972_5f6b_6579; // "weir_key"

    /// A hasher with the given seed. Two hashers route alike iff their seeds are equal.
    pub const fn new(seed: u64) -> Self {
        Self {
            seed,
            flip4to8: flip4to8(seed),
        }
    }

    /// The seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// Hashes a `u64` key (its 8 little-endian bytes).
    ///
    /// XXH3's path for 8 bytes, with its seed-dependent constant computed when the hasher was
    /// made rather than for every key: the first 4 bytes become the high half of the word that
    /// is mixed, the last 4 the low half.
    #[inline]
    pub fn hash_u64(&self, key: u64) -> u64 {
        strong_avalanche(key.rotate_left(32) ^ self.flip4to8, 8)
    }

    /// Hashes a 4-byte key (its little-endian bytes), as [`hash_u64`](Self::hash_u64) does 8.
    #[inline]
    fn hash_u32(&self, key: u32) -> u64 {
        let k = u64::from(key);
        strong_avalanche((k | (k << 32)) ^ self.flip4to8, 4)
    }

    /// Hashes raw key bytes.
    #[inline]
    pub fn hash_bytes(&self, bytes: &[u8]) -> u64 {
        xxh3_64_with_seed(bytes, self.seed)
    }

    /// Hashes any `K: Hash` via its platform-independent encoding (see the type docs).
    #[inline]
    pub fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        let mut hasher = StableHasher::new(self.seed);
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// Hashes an owned key type: the same value as [`hash`](Self::hash), with fixed-width keys
    /// hashed straight from their little-endian bytes (see the type docs).
    ///
    /// A `TypeId` comparison rather than a trait: a trait with impls for the fixed-width types
    /// would need a generic fallback impl beside them (specialisation, which stable Rust lacks)
    /// or a new bound on every key type; comparing two constant `TypeId`s keeps the `K: Hash`
    /// bound and is folded away when the function is compiled for `K`.
    #[inline]
    pub fn hash_key<K: Hash + 'static>(&self, key: &K) -> u64 {
        let id = TypeId::of::<K>();
        let any: &dyn Any = key;
        macro_rules! word {
            ($($t:ty => |$k:ident| $hash:expr),* $(,)?) => {$(
                if id == TypeId::of::<$t>() {
                    if let Some(&$k) = any.downcast_ref::<$t>() {
                        return $hash;
                    }
                }
            )*};
        }
        word! {
            u64 => |k| self.hash_u64(k),
            i64 => |k| self.hash_u64(k as u64),
            usize => |k| self.hash_u64(k as u64),
            isize => |k| self.hash_u64(k as i64 as u64),
            u32 => |k| self.hash_u32(k),
            i32 => |k| self.hash_u32(k as u32),
            char => |k| self.hash_u32(u32::from(k)),
            (u32, u32) => |k| self.hash_u64(u64::from(k.0) | (u64::from(k.1) << 32)),
            (i32, i32) => |k| self.hash_u64(u64::from(k.0 as u32) | (u64::from(k.1 as u32) << 32)),
        }
        macro_rules! fixed {
            ($($t:ty => |$k:ident| $bytes:expr),* $(,)?) => {$(
                if id == TypeId::of::<$t>() {
                    if let Some(&$k) = any.downcast_ref::<$t>() {
                        return xxh3_64_with_seed(&$bytes, self.seed);
                    }
                }
            )*};
        }
        fixed! {
            u16 => |k| k.to_le_bytes(),
            i16 => |k| k.to_le_bytes(),
            u8 => |k| [k],
            i8 => |k| k.to_le_bytes(),
            bool => |k| [u8::from(k)],
            char => |k| u32::from(k).to_le_bytes(),
            u128 => |k| k.to_le_bytes(),
            i128 => |k| k.to_le_bytes(),
            (u64, u64) => |k| cat8(k.0.to_le_bytes(), k.1.to_le_bytes()),
            (i64, i64) => |k| cat8(k.0.to_le_bytes(), k.1.to_le_bytes()),
        }
        self.hash(key)
    }
}

/// Two 8-byte encodings, one after the other.
#[inline(always)]
fn cat8(a: [u8; 8], b: [u8; 8]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a);
    out[8..].copy_from_slice(&b);
    out
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
/// definition of streaming). Every write is inlined, so for a key of a few fixed-width fields
/// the compiler sees constant offsets and lengths and keeps the bytes in registers.
struct StableHasher {
    seed: u64,
    buf: [u8; INLINE],
    len: usize,
    stream: Option<Box<Xxh3>>,
}

impl StableHasher {
    #[inline]
    fn new(seed: u64) -> Self {
        Self {
            seed,
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }

    /// Appends a fixed-width encoding: one constant-length copy while it fits.
    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        if self.stream.is_none() && self.len + N <= INLINE {
            self.buf[self.len..self.len + N].copy_from_slice(&bytes);
            self.len += N;
        } else {
            self.spill(&bytes);
        }
    }

    /// The slow path: the key outgrew the buffer (or already streams).
    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        let seed = self.seed;
        let stream = self.stream.get_or_insert_with(|| {
            let mut stream = Box::new(Xxh3::with_seed(seed));
            stream.update(&self.buf[..self.len]);
            stream
        });
        stream.update(bytes);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if self.stream.is_none() && self.len + bytes.len() <= INLINE {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spill(bytes);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        match &self.stream {
            Some(stream) => stream.digest(),
            None => xxh3_64_with_seed(&self.buf[..self.len], self.seed),
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.put([i]);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.put(i.to_le_bytes());
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.put(i.to_le_bytes());
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.put(i.to_le_bytes());
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.put(i.to_le_bytes());
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
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

/// The instance in `0..n` that owns `hash` under plain hash partitioning with the default
/// [`KeyGroups`]: `group × n / 128` for `group = (hash × 128) >> 64` (see
/// [`KeyGroups::target`]).
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
    KeyGroups::default().target(hash, n)
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
    two_choices_in(KeyGroups::default(), hash, n)
}

/// [`two_choices`] under `groups`.
pub fn two_choices_in(groups: KeyGroups, hash: u64, n: NonZeroUsize) -> (usize, usize) {
    let mut c = candidates_in(groups, hash, n, 2);
    let first = c.next().unwrap_or(0);
    (first, c.next().unwrap_or(first))
}

/// The first `d` (at most `n`) of `hash`'s candidate instances: a fixed pseudo-random order of
/// all `n` instances, chosen by the key.
///
/// The order starts with [`hash_target`] (the instance of the key's group); position `i >= 1` holds
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
    candidates_in(KeyGroups::default(), hash, n, d)
}

/// [`candidates`] under `groups`: the first candidate is the instance of the key's group.
pub fn candidates_in(groups: KeyGroups, hash: u64, n: NonZeroUsize, d: usize) -> Candidates {
    let first = groups.target(hash, n) as u64;
    let n = n.get() as u64;
    Candidates {
        first,
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
        assert_eq!(h.hash_key(&42u64), 0x48de_daf4_52fe_a7db);
        assert_eq!(h.hash_key(&"user-7".to_string()), h.hash("user-7"));
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

    /// The encoding `Hash` gives each write, concatenated: what the one-shot hash reads.
    #[derive(Clone, Debug)]
    enum Write {
        Bytes(Vec<u8>),
        U8(u8),
        U16(u16),
        U32(u32),
        U64(u64),
        U128(u128),
        Usize(usize),
        I64(i64),
        Isize(isize),
    }

    fn write_strategy() -> impl Strategy<Value = Write> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80).prop_map(Write::Bytes),
            any::<u8>().prop_map(Write::U8),
            any::<u16>().prop_map(Write::U16),
            any::<u32>().prop_map(Write::U32),
            any::<u64>().prop_map(Write::U64),
            any::<u128>().prop_map(Write::U128),
            any::<usize>().prop_map(Write::Usize),
            any::<i64>().prop_map(Write::I64),
            any::<isize>().prop_map(Write::Isize),
        ]
    }

    proptest! {
        #[test]
        fn the_stable_hasher_is_the_one_shot_xxh3_of_the_encoding(
            writes in prop::collection::vec(write_strategy(), 0..12),
            seed in any::<u64>(),
        ) {
            let mut hasher = StableHasher::new(seed);
            let mut bytes = Vec::new();
            for w in &writes {
                match *w {
                    Write::Bytes(ref b) => {
                        hasher.write(b);
                        bytes.extend_from_slice(b);
                    }
                    Write::U8(x) => {
                        hasher.write_u8(x);
                        bytes.push(x);
                    }
                    Write::U16(x) => {
                        hasher.write_u16(x);
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Write::U32(x) => {
                        hasher.write_u32(x);
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Write::U64(x) => {
                        hasher.write_u64(x);
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Write::U128(x) => {
                        hasher.write_u128(x);
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Write::Usize(x) => {
                        hasher.write_usize(x);
                        bytes.extend_from_slice(&(x as u64).to_le_bytes());
                    }
                    Write::I64(x) => {
                        hasher.write_i64(x);
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    Write::Isize(x) => {
                        hasher.write_isize(x);
                        bytes.extend_from_slice(&(x as i64).to_le_bytes());
                    }
                }
            }
            prop_assert_eq!(hasher.finish(), xxh3_64_with_seed(&bytes, seed));
        }

        #[test]
        fn fixed_width_keys_hash_as_through_the_adapter(
            a in any::<u64>(),
            b in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let h = KeyHasher::new(seed);
            // The precomputed 4-to-8-byte path is XXH3 itself, for every seed.
            prop_assert_eq!(h.hash_u64(a), xxh3_64_with_seed(&a.to_le_bytes(), seed));
            prop_assert_eq!(
                h.hash_u32(a as u32),
                xxh3_64_with_seed(&(a as u32).to_le_bytes(), seed)
            );
            prop_assert_eq!(h.hash_key(&a), h.hash_u64(a));
            prop_assert_eq!(h.hash_key(&a), h.hash(&a));
            prop_assert_eq!(h.hash_key(&(a as u32)), h.hash(&(a as u32)));
            prop_assert_eq!(h.hash_key(&(a as i64)), h.hash(&(a as i64)));
            prop_assert_eq!(h.hash_key(&(a as i32)), h.hash(&(a as i32)));
            prop_assert_eq!(h.hash_key(&(a as usize)), h.hash(&(a as usize)));
            prop_assert_eq!(h.hash_key(&(a as isize)), h.hash(&(a as isize)));
            prop_assert_eq!(h.hash_key(&(a as u16)), h.hash(&(a as u16)));
            prop_assert_eq!(h.hash_key(&(a as i16)), h.hash(&(a as i16)));
            prop_assert_eq!(h.hash_key(&(a as u8)), h.hash(&(a as u8)));
            prop_assert_eq!(h.hash_key(&(a as i8)), h.hash(&(a as i8)));
            prop_assert_eq!(h.hash_key(&(a & 1 == 1)), h.hash(&(a & 1 == 1)));
            let c = char::from_u32((a % 0xd800) as u32).unwrap_or('x');
            prop_assert_eq!(h.hash_key(&c), h.hash(&c));
            let wide = (u128::from(a) << 64) | u128::from(b);
            prop_assert_eq!(h.hash_key(&wide), h.hash(&wide));
            prop_assert_eq!(h.hash_key(&(wide as i128)), h.hash(&(wide as i128)));
            prop_assert_eq!(h.hash_key(&(a, b)), h.hash(&(a, b)));
            prop_assert_eq!(h.hash_key(&(a as i64, b as i64)), h.hash(&(a as i64, b as i64)));
            prop_assert_eq!(h.hash_key(&(a as u32, b as u32)), h.hash(&(a as u32, b as u32)));
            prop_assert_eq!(h.hash_key(&(a as i32, b as i32)), h.hash(&(a as i32, b as i32)));
            // Other types take the adapter.
            let s = format!("{a}-{b}");
            prop_assert_eq!(h.hash_key(&s), h.hash(&s));
            prop_assert_eq!(h.hash_key(&(a, s.clone())), h.hash(&(a, s)));
        }

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
