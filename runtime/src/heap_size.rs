//! Deep sizes of rows: the heap memory a value owns, so bounds count what a row really holds.
//!
//! An edge's byte bound, the hand-off to a reader thread, a lossy edge's memory queue and the
//! in-flight metric all count a `Vec<T>` batch as its allocation (`capacity × size_of::<T>()`)
//! plus the heap its rows own ([`HeapSize::heap_size`]). A stream of 600 KB strings is therefore
//! bounded by the bytes of those strings, not by 24 bytes per row.
//!
//! Types whose size is fixed say so with [`HeapSize::HAS_HEAP`]` = false`, and batches of them
//! are measured without looking at a single row: `Vec<u64>` costs what it always did.
//!
//! # Implementing it
//!
//! Derive it (fields are summed; generic parameters get a `HeapSize` bound):
//!
//! ```
//! use weir_runtime::HeapSize;
//!
//! #[derive(HeapSize)]
//! struct Order {
//!     id: u64,
//!     customer: String,
//!     lines: Vec<(u32, u64)>,
//! }
//!
//! let o = Order { id: 1, customer: String::with_capacity(100), lines: Vec::with_capacity(4) };
//! assert_eq!(o.heap_size(), 100 + 4 * std::mem::size_of::<(u32, u64)>());
//! ```
//!
//! The derived impl names the trait as `HeapSize`, which importing the derive brings into scope
//! (`use weir_runtime::HeapSize;`, or `use weir::prelude::*;`). A field that should not count
//! (a handle to memory shared by every row, say) is left out with `#[heap_size(skip)]`.
//!
//! A type that owns no heap memory needs only an empty impl (`heap_size` is 0 by default); saying
//! `HAS_HEAP = false` as well spares batches of it the walk over their rows:
//!
//! ```
//! use weir_runtime::HeapSize;
//!
//! #[derive(Clone, Copy)]
//! struct Tick { at: i64, price: f64 }
//!
//! impl HeapSize for Tick {
//!     const HAS_HEAP: bool = false;
//! }
//! assert_eq!(Tick { at: 0, price: 1.0 }.heap_size(), 0);
//! ```
//!
//! # Shared and borrowed memory
//!
//! - `Arc<T>` and `Rc<T>` count their whole allocation (the counts and the value, deeply) in every
//!   handle: a row that holds a handle keeps that memory alive, and a bound that errs is better
//!   erring high. Rows that all share one large value are counted once each; measure such rows
//!   with a manual impl if that matters.
//! - `&'static T` counts nothing: static memory is not held by the row.
//! - Hash maps and sets are estimated from their capacity (one control byte per bucket), B-tree
//!   maps and sets from their length (one node per eleven entries, at least half full).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::mem::{size_of, size_of_val};
use std::rc::Rc;
use std::sync::Arc;

/// Heap memory a value owns beyond its own `size_of`.
///
/// This is the deep part of a row's size: a `String` owns its buffer's capacity, a `Vec<T>` its
/// allocation plus what its elements own, a `u64` nothing. Edges, hand-offs and spill buffers
/// count a batch of rows as its own allocation plus the sum of its rows' `heap_size`.
///
/// Derive it with `#[derive(HeapSize)]`, or write an empty impl for a type that owns no heap
/// memory (see the [module docs](crate::heap_size) for both).
///
/// # Examples
///
/// ```
/// use weir_runtime::{Batch, HeapSize};
///
/// assert_eq!(7u64.heap_size(), 0);
/// assert_eq!(String::with_capacity(600_000).heap_size(), 600_000);
///
/// // A batch counts its allocation and the heap its rows own.
/// let batch: Vec<String> = (0..3).map(|_| String::with_capacity(1000)).collect();
/// assert_eq!(batch.bytes(), 3 * std::mem::size_of::<String>() + 3 * 1000);
/// ```
pub trait HeapSize {
    /// Whether a value of this type can own heap memory at all.
    ///
    /// `false` promises that [`heap_size`](Self::heap_size) is always 0, which lets a batch of
    /// such values be measured without visiting them. The default, `true`, is always correct.
    const HAS_HEAP: bool = true;

    /// Bytes of heap memory this value owns, beyond `size_of_val(self)`.
    #[inline]
    fn heap_size(&self) -> usize {
        0
    }
}

/// What a row type must be to flow on a typed stream: sized deeply, sendable, owned.
///
/// Implemented for every `HeapSize + Send + 'static` type; bound row types with it
/// (`T: Data`) rather than implementing it.
pub trait Data: HeapSize + Send + 'static {}

impl<T: HeapSize + Send + 'static + ?Sized> Data for T {}

/// The total memory of a `Vec`'s elements: its allocation plus, if the element type can own
/// heap memory, every element's heap. Shared by the `Vec` impls of [`HeapSize`] and `Batch`.
#[inline]
pub(crate) fn vec_bytes<T: HeapSize>(v: &[T], capacity: usize) -> usize {
    let own = capacity * size_of::<T>();
    if T::HAS_HEAP {
        own + slice_heap(v)
    } else {
        own
    }
}

#[inline]
fn slice_heap<T: HeapSize>(v: &[T]) -> usize {
    if T::HAS_HEAP {
        v.iter().map(HeapSize::heap_size).sum()
    } else {
        0
    }
}

macro_rules! no_heap {
    ($($t:ty),* $(,)?) => {
        $(
            impl HeapSize for $t {
                const HAS_HEAP: bool = false;
            }
        )*
    };
}

no_heap!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    (),
    str,
    std::num::NonZeroU8,
    std::num::NonZeroU16,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroU128,
    std::num::NonZeroUsize,
    std::num::NonZeroI8,
    std::num::NonZeroI16,
    std::num::NonZeroI32,
    std::num::NonZeroI64,
    std::num::NonZeroI128,
    std::num::NonZeroIsize,
    std::time::Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::SocketAddr,
    std::cmp::Ordering,
    crate::Timestamp,
);

impl<T: ?Sized> HeapSize for std::marker::PhantomData<T> {
    const HAS_HEAP: bool = false;
}

/// Borrowed memory is not the row's: a `&'static str` counts 0.
impl<T: ?Sized> HeapSize for &T {
    const HAS_HEAP: bool = false;
}

impl HeapSize for String {
    #[inline]
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl HeapSize for std::ffi::CString {
    fn heap_size(&self) -> usize {
        self.as_bytes_with_nul().len()
    }
}

impl HeapSize for std::path::PathBuf {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl HeapSize for std::ffi::OsString {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

impl<T: HeapSize> HeapSize for [T] {
    const HAS_HEAP: bool = T::HAS_HEAP;

    #[inline]
    fn heap_size(&self) -> usize {
        slice_heap(self)
    }
}

impl<T: HeapSize, const N: usize> HeapSize for [T; N] {
    const HAS_HEAP: bool = T::HAS_HEAP;

    #[inline]
    fn heap_size(&self) -> usize {
        slice_heap(self)
    }
}

impl<T: HeapSize> HeapSize for Vec<T> {
    #[inline]
    fn heap_size(&self) -> usize {
        vec_bytes(self, self.capacity())
    }
}

impl<T: HeapSize> HeapSize for VecDeque<T> {
    fn heap_size(&self) -> usize {
        let (a, b) = self.as_slices();
        self.capacity() * size_of::<T>() + slice_heap(a) + slice_heap(b)
    }
}

impl<T: HeapSize> HeapSize for BinaryHeap<T> {
    fn heap_size(&self) -> usize {
        self.capacity() * size_of::<T>() + slice_heap(self.as_slice())
    }
}

impl<T: HeapSize> HeapSize for LinkedList<T> {
    fn heap_size(&self) -> usize {
        // Each node: the value and two links.
        self.len() * (size_of::<T>() + 2 * size_of::<usize>())
            + self.iter().map(HeapSize::heap_size).sum::<usize>()
    }
}

impl<T: HeapSize + ?Sized> HeapSize for Box<T> {
    #[inline]
    fn heap_size(&self) -> usize {
        size_of_val::<T>(self) + T::heap_size(self)
    }
}

/// The whole allocation, in every handle (see the [module docs](crate::heap_size)).
impl<T: HeapSize + ?Sized> HeapSize for Arc<T> {
    fn heap_size(&self) -> usize {
        2 * size_of::<usize>() + size_of_val::<T>(self) + T::heap_size(self)
    }
}

/// The whole allocation, in every handle (see the [module docs](crate::heap_size)).
impl<T: HeapSize + ?Sized> HeapSize for Rc<T> {
    fn heap_size(&self) -> usize {
        2 * size_of::<usize>() + size_of_val::<T>(self) + T::heap_size(self)
    }
}

impl<T: HeapSize> HeapSize for Option<T> {
    const HAS_HEAP: bool = T::HAS_HEAP;

    #[inline]
    fn heap_size(&self) -> usize {
        match self {
            Some(v) if T::HAS_HEAP => v.heap_size(),
            _ => 0,
        }
    }
}

impl<T: HeapSize, E: HeapSize> HeapSize for Result<T, E> {
    const HAS_HEAP: bool = T::HAS_HEAP || E::HAS_HEAP;

    #[inline]
    fn heap_size(&self) -> usize {
        match self {
            Ok(v) => v.heap_size(),
            Err(e) => e.heap_size(),
        }
    }
}

impl<B> HeapSize for Cow<'_, B>
where
    B: ToOwned + ?Sized,
    B::Owned: HeapSize,
{
    const HAS_HEAP: bool = <B::Owned as HeapSize>::HAS_HEAP;

    fn heap_size(&self) -> usize {
        match self {
            Cow::Borrowed(_) => 0,
            Cow::Owned(o) => o.heap_size(),
        }
    }
}

impl<T: HeapSize + Copy> HeapSize for std::cell::Cell<T> {
    const HAS_HEAP: bool = T::HAS_HEAP;

    fn heap_size(&self) -> usize {
        self.get().heap_size()
    }
}

impl<T: HeapSize> HeapSize for std::num::Wrapping<T> {
    const HAS_HEAP: bool = T::HAS_HEAP;

    fn heap_size(&self) -> usize {
        self.0.heap_size()
    }
}

impl<T: HeapSize> HeapSize for std::cmp::Reverse<T> {
    const HAS_HEAP: bool = T::HAS_HEAP;

    fn heap_size(&self) -> usize {
        self.0.heap_size()
    }
}

/// Bytes of a hash table of `capacity` entries of `entry` bytes: one control byte per bucket.
fn hash_table_bytes(capacity: usize, entry: usize) -> usize {
    capacity * (entry + 1)
}

/// Bytes of a B-tree of `len` entries of `entry` bytes: nodes of eleven entries, at least half
/// full, so about `len / 8` nodes with a header of two words each.
fn btree_bytes(len: usize, entry: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let nodes = len.div_ceil(8);
    nodes * (11 * entry + 2 * size_of::<usize>())
}

impl<K: HeapSize, V: HeapSize, S> HeapSize for HashMap<K, V, S> {
    fn heap_size(&self) -> usize {
        let mut bytes = hash_table_bytes(self.capacity(), size_of::<(K, V)>());
        if K::HAS_HEAP || V::HAS_HEAP {
            bytes += self
                .iter()
                .map(|(k, v)| k.heap_size() + v.heap_size())
                .sum::<usize>();
        }
        bytes
    }
}

impl<T: HeapSize, S> HeapSize for HashSet<T, S> {
    fn heap_size(&self) -> usize {
        let mut bytes = hash_table_bytes(self.capacity(), size_of::<T>());
        if T::HAS_HEAP {
            bytes += self.iter().map(HeapSize::heap_size).sum::<usize>();
        }
        bytes
    }
}

impl<K: HeapSize, V: HeapSize> HeapSize for BTreeMap<K, V> {
    fn heap_size(&self) -> usize {
        let mut bytes = btree_bytes(self.len(), size_of::<K>() + size_of::<V>());
        if K::HAS_HEAP || V::HAS_HEAP {
            bytes += self
                .iter()
                .map(|(k, v)| k.heap_size() + v.heap_size())
                .sum::<usize>();
        }
        bytes
    }
}

impl<T: HeapSize> HeapSize for BTreeSet<T> {
    fn heap_size(&self) -> usize {
        let mut bytes = btree_bytes(self.len(), size_of::<T>());
        if T::HAS_HEAP {
            bytes += self.iter().map(HeapSize::heap_size).sum::<usize>();
        }
        bytes
    }
}

macro_rules! tuples {
    ($(($($n:tt $t:ident),+))*) => {
        $(
            impl<$($t: HeapSize),+> HeapSize for ($($t,)+) {
                const HAS_HEAP: bool = $($t::HAS_HEAP)||+;

                #[inline]
                fn heap_size(&self) -> usize {
                    0 $(+ self.$n.heap_size())+
                }
            }
        )*
    };
}

tuples! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L)
}

/// Deep: strings' buffers, arrays' allocations and objects' entries (a `BTreeMap`) all count.
impl HeapSize for serde_json::Value {
    fn heap_size(&self) -> usize {
        use serde_json::Value;
        match self {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => s.capacity(),
            Value::Array(a) => vec_bytes(a, a.capacity()),
            Value::Object(m) => m.heap_size(),
        }
    }
}

impl HeapSize for serde_json::Map<String, serde_json::Value> {
    fn heap_size(&self) -> usize {
        btree_bytes(
            self.len(),
            size_of::<String>() + size_of::<serde_json::Value>(),
        ) + self
            .iter()
            .map(|(k, v)| k.capacity() + v.heap_size())
            .sum::<usize>()
    }
}

no_heap!(serde_json::Number);

/// The bytes it refers to (a slice of a larger buffer counts only its own length).
impl HeapSize for bytes::Bytes {
    fn heap_size(&self) -> usize {
        self.len()
    }
}

impl HeapSize for bytes::BytesMut {
    fn heap_size(&self) -> usize {
        self.capacity()
    }
}

/// An Arrow array counts the memory of its buffers (`get_array_memory_size`).
impl HeapSize for dyn arrow_array::Array {
    fn heap_size(&self) -> usize {
        self.get_array_memory_size()
            .saturating_sub(size_of_val(self))
    }
}

macro_rules! arrow_arrays {
    ($($t:ty),* $(,)?) => {
        $(
            /// Counts the memory of its buffers (`get_array_memory_size`).
            impl HeapSize for $t {
                fn heap_size(&self) -> usize {
                    arrow_array::Array::get_array_memory_size(self).saturating_sub(size_of::<Self>())
                }
            }
        )*
    };
}

arrow_arrays!(
    arrow_array::BooleanArray,
    arrow_array::NullArray,
    arrow_array::StructArray,
    arrow_array::FixedSizeBinaryArray,
    arrow_array::FixedSizeListArray,
    arrow_array::MapArray,
);

/// Counts the memory of its buffers (`get_array_memory_size`).
impl<T: arrow_array::ArrowPrimitiveType> HeapSize for arrow_array::PrimitiveArray<T> {
    fn heap_size(&self) -> usize {
        arrow_array::Array::get_array_memory_size(self).saturating_sub(size_of::<Self>())
    }
}

/// Counts the memory of its buffers (`get_array_memory_size`).
impl<T: arrow_array::types::ByteArrayType> HeapSize for arrow_array::GenericByteArray<T> {
    fn heap_size(&self) -> usize {
        arrow_array::Array::get_array_memory_size(self).saturating_sub(size_of::<Self>())
    }
}

/// Counts the memory of its buffers (`get_array_memory_size`).
impl<O: arrow_array::OffsetSizeTrait> HeapSize for arrow_array::GenericListArray<O> {
    fn heap_size(&self) -> usize {
        arrow_array::Array::get_array_memory_size(self).saturating_sub(size_of::<Self>())
    }
}

/// Counts the memory of its arrays (`get_array_memory_size`), as its `Batch` impl does.
impl HeapSize for arrow_array::RecordBatch {
    fn heap_size(&self) -> usize {
        self.get_array_memory_size()
    }
}

impl HeapSize for crate::DeadLetter {
    fn heap_size(&self) -> usize {
        self.file.heap_size() + self.reason.heap_size() + self.raw.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    #[derive(Clone)]
    struct Plain;
    impl HeapSize for Plain {}

    #[test]
    fn fixed_size_types_own_no_heap() {
        fn has_heap<T: HeapSize + ?Sized>() -> bool {
            T::HAS_HEAP
        }
        assert!(!has_heap::<u64>());
        assert!(!has_heap::<(u64, f64, bool)>());
        assert!(!has_heap::<Option<[u32; 4]>>());
        assert!(!has_heap::<&'static str>());
        assert!(!has_heap::<std::time::Instant>());
        assert!(has_heap::<(u64, String)>());
        assert!(has_heap::<Option<Vec<u8>>>());
        assert!(has_heap::<Plain>(), "an empty impl is conservative");
        assert_eq!("static".heap_size(), 0);
        assert_eq!(Plain.heap_size(), 0);
        assert_eq!(std::time::Duration::from_secs(1).heap_size(), 0);
    }

    #[test]
    fn containers_count_their_allocation_and_their_elements() {
        let s = String::with_capacity(40);
        assert_eq!(s.heap_size(), 40);
        let v: Vec<String> = vec![String::with_capacity(10), String::with_capacity(20)];
        assert_eq!(v.heap_size(), v.capacity() * size_of::<String>() + 30);
        let b: Box<str> = "abcd".into();
        assert_eq!(b.heap_size(), 4);
        let bx = Box::new(String::with_capacity(5));
        assert_eq!(bx.heap_size(), size_of::<String>() + 5);
        let a = Arc::new(vec![0u64; 8]);
        assert_eq!(
            a.heap_size(),
            2 * size_of::<usize>() + size_of::<Vec<u64>>() + 64
        );
        let t = (1u8, String::with_capacity(7), Some(vec![0u16; 3]));
        assert_eq!(t.heap_size(), 7 + t.2.as_ref().unwrap().capacity() * 2);
        let r: Result<u8, String> = Err(String::with_capacity(9));
        assert_eq!(r.heap_size(), 9);
        let c: Cow<'static, str> = Cow::Borrowed("x");
        assert_eq!(c.heap_size(), 0);
        let c: Cow<'static, str> = Cow::Owned(String::with_capacity(11));
        assert_eq!(c.heap_size(), 11);
        let mut d = VecDeque::with_capacity(4);
        d.push_back(String::with_capacity(3));
        assert_eq!(d.heap_size(), d.capacity() * size_of::<String>() + 3);
    }

    #[test]
    fn maps_and_sets_count_entries_and_their_heap() {
        let mut m = HashMap::new();
        m.insert(1u32, String::with_capacity(1000));
        let table = m.capacity() * (size_of::<(u32, String)>() + 1);
        assert_eq!(m.heap_size(), table + 1000);
        let mut b = BTreeMap::new();
        b.insert(String::with_capacity(50), 1u64);
        assert!(b.heap_size() >= 50 + size_of::<String>() + 8);
        assert_eq!(BTreeSet::<u8>::new().heap_size(), 0);
        let mut h = HashSet::new();
        h.insert(vec![0u8; 100]);
        assert!(h.heap_size() >= 100);
    }

    #[test]
    fn json_values_are_measured_deeply() {
        let v = serde_json::json!({"name": "x".repeat(500), "tags": ["a".repeat(300)], "n": 1});
        let size = v.heap_size();
        assert!(size >= 800, "{size}");
        assert!(size < 800 + 2048, "{size}");
    }

    #[test]
    fn arrow_arrays_count_their_buffers() {
        use arrow_array::{Array, Int64Array, StringArray};
        let a = Int64Array::from_iter_values(0..10_000);
        assert!(a.heap_size() >= 80_000);
        let s = StringArray::from_iter_values(std::iter::repeat_n("y".repeat(100), 100));
        assert!(s.heap_size() >= 10_000);
        let dynamic: arrow_array::ArrayRef = Arc::new(a);
        assert!(dynamic.heap_size() >= 80_000);
        assert_eq!(dynamic.len(), 10_000);
    }

    mod derived {
        use crate::HeapSize;
        use std::mem::size_of;

        #[derive(HeapSize)]
        struct Fixed {
            _a: u64,
            _b: (f32, bool),
        }

        #[derive(HeapSize)]
        struct Named {
            name: String,
            tags: Vec<String>,
            #[heap_size(skip)]
            _shared: std::sync::Arc<Vec<u8>>,
        }

        #[derive(HeapSize)]
        struct Wrapper<T>(T, u8);

        #[derive(HeapSize)]
        struct Unit;

        #[derive(HeapSize)]
        enum Event {
            Tick,
            Text(String),
            Pair { _left: u32, right: Box<str> },
        }

        #[test]
        fn fields_are_summed_and_fixed_types_say_so() {
            assert!(!has_heap::<Fixed>());
            assert!(!has_heap::<Unit>());
            assert!(!has_heap::<Wrapper<u64>>());
            assert!(has_heap::<Wrapper<String>>());
            assert!(has_heap::<Event>());
            assert_eq!(Unit.heap_size(), 0);

            let n = Named {
                name: String::with_capacity(10),
                tags: vec![String::with_capacity(5), String::with_capacity(7)],
                _shared: std::sync::Arc::new(vec![0; 1 << 20]),
            };
            let tags = n.tags.capacity() * size_of::<String>() + 12;
            assert_eq!(n.heap_size(), 10 + tags, "the skipped field is not counted");
            assert_eq!(Wrapper(String::with_capacity(3), 1).heap_size(), 3);
        }

        #[test]
        fn an_enum_counts_the_variant_it_holds() {
            assert_eq!(Event::Tick.heap_size(), 0);
            assert_eq!(Event::Text(String::with_capacity(9)).heap_size(), 9);
            let pair = Event::Pair {
                _left: 1,
                right: "abc".into(),
            };
            assert_eq!(pair.heap_size(), 3);
        }

        fn has_heap<T: HeapSize>() -> bool {
            T::HAS_HEAP
        }
    }

    #[test]
    fn a_batch_of_heap_rows_counts_the_rows_heap() {
        let batch = vec![
            String::with_capacity(600_000),
            String::with_capacity(600_000),
        ];
        assert_eq!(batch.bytes(), 2 * size_of::<String>() + 1_200_000);
        let fixed: Vec<u64> = Vec::with_capacity(1024);
        assert_eq!(fixed.bytes(), 8192);
    }
}
