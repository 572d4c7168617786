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
mod tests;
