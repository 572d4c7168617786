//! What flows on an edge: batches of data, interleaved in order with control markers.

use crate::heap_size::{vec_bytes, Data};

/// A unit of data moved across an edge: a batch of rows that knows its size.
///
/// Edges are bounded in batches *and* bytes, so every batch reports both. Implementations exist
/// for `Vec<T>` (typed streams) and, in `weir-operators`, for Arrow `RecordBatch`.
///
/// # Examples
///
/// ```
/// use weir_runtime::Batch;
///
/// let batch: Vec<u64> = Vec::with_capacity(1024);
/// assert_eq!(batch.rows(), 0);
/// assert_eq!(batch.bytes(), 1024 * 8); // the memory it holds, not just the rows in it
/// ```
pub trait Batch: Send + 'static {
    /// Rows in the batch.
    fn rows(&self) -> usize;

    /// Memory held by the batch, in bytes. This is what an edge's byte bound counts.
    fn bytes(&self) -> usize;

    /// Empties the batch so its memory can carry another one, or `None` if it cannot be reused.
    ///
    /// A consumer that is done with a batch hands it back to its producer through the edge's
    /// return path ([`Inlet::recycle`](crate::Inlet::recycle)), so a steady pipeline allocates
    /// nothing per batch. The default keeps nothing (the batch is dropped); `Vec<T>` clears
    /// itself and keeps its allocation.
    ///
    /// ```
    /// use weir_runtime::Batch;
    ///
    /// let spare = vec![1u64, 2, 3].recycle().unwrap();
    /// assert!(spare.is_empty() && spare.capacity() >= 3);
    /// assert_eq!(Vec::<u64>::new().recycle(), None); // nothing worth keeping
    /// ```
    fn recycle(self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// A `Vec<T>` counts the memory of its allocation (`capacity × size_of::<T>()`) plus the heap
/// memory its rows own ([`HeapSize`](crate::HeapSize)): a batch of 600 KB strings counts 600 KB a
/// row. For row types without heap (`HeapSize::HAS_HEAP == false`: numbers, tuples and arrays of
/// them) no row is visited.
///
/// ```
/// use weir_runtime::Batch;
///
/// let rows = vec![String::with_capacity(600_000), String::with_capacity(600_000)];
/// assert_eq!(rows.bytes(), 2 * std::mem::size_of::<String>() + 1_200_000);
/// ```
impl<T: Data> Batch for Vec<T> {
    #[inline]
    fn rows(&self) -> usize {
        self.len()
    }

    #[inline]
    fn bytes(&self) -> usize {
        vec_bytes(self, self.capacity())
    }

    #[inline]
    fn recycle(mut self) -> Option<Self> {
        self.clear();
        (self.capacity() > 0).then_some(self)
    }
}

/// A point in event time, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The end of time: the watermark a source sends when its input ends, so every window
    /// downstream closes.
    ///
    /// ```
    /// use weir_runtime::Timestamp;
    ///
    /// assert!(Timestamp(1_700_000_000_000) < Timestamp::MAX);
    /// ```
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The beginning of time.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
}

/// What an edge carries: data and control markers, in order.
///
/// Control markers take an edge slot like data (so they are ordered with it and bounded by the
/// same credit) but count zero bytes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message<B> {
    /// A batch of data.
    Data(B),
    /// No row with an event time below this will follow on this edge.
    ///
    /// The executor forwards the minimum over an operator's inputs once it advances.
    Watermark(Timestamp),
    /// Every row its source emitted before it is ahead of it (see [`barrier`](crate::barrier)).
    ///
    /// The executor forwards it once every input that can carry its source's barriers has
    /// delivered it.
    Barrier(crate::barrier::Barrier),
    /// A checkpoint barrier (see [`CheckpointBarrier`](crate::barrier::CheckpointBarrier)):
    /// every row before it on this edge belongs to the checkpoint, every row after it to the
    /// next. The executor aligns it over an instance's input edges.
    Checkpoint(crate::barrier::CheckpointBarrier),
    /// The producer has no data and will send none until its next batch or watermark: leave
    /// it out of the minimum watermark until then (see [`event_time`](crate::event_time)).
    ///
    /// A source instance sends it once its source has had nothing to read for the idle timeout
    /// of its [`WatermarkStrategy`](crate::WatermarkStrategy); an operator whose every live
    /// input is idle passes it on. The next batch or watermark on the same edge makes the
    /// producer active again: no marker says so.
    Idle,
    /// A latency marker: a sample of how long the path from a source to a sink takes (see
    /// [`LatencyMarker`]).
    ///
    /// A source instance emits one every
    /// [`PipelineConfig::latency_marker_interval`](crate::PipelineConfig::latency_marker_interval),
    /// behind the data it has already sent; every operator passes it on as soon as it reads it,
    /// without waiting for its own processing, to one consumer of each output edge (chosen
    /// round-robin where an edge has several); a sink records its age. It carries no rows and
    /// no event time: it never moves a watermark, never ends idleness, and is never held by
    /// barrier alignment.
    Latency(LatencyMarker),
    /// The producer has finished; nothing follows.
    End,
}

/// A latency marker's payload: when and where it was made.
///
/// Markers measure what rows experience between a source and a sink — the queues in front of
/// every operator and the hand-offs between tasks — without a clock read per row. A marker does
/// not wait for an operator's own processing (as Flink's `LatencyMarker` does not), so its age at
/// a sink is the queueing and hand-off time along its path, not the cost of the operators.
///
/// # Examples
///
/// ```
/// use weir_runtime::{LatencyMarker, Message};
///
/// let marker = LatencyMarker::now(0);
/// let msg: Message<Vec<u64>> = Message::Latency(marker);
/// assert_eq!(msg.rows(), 0, "a marker is not a row");
/// assert_eq!(msg.bytes(), 0);
/// assert!(marker.age() < std::time::Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyMarker {
    /// When it was made, on tokio's clock (so a paused clock governs it in tests).
    created: tokio::time::Instant,
    /// The source instance that made it (its index among all instances of the run).
    origin: u32,
}

impl LatencyMarker {
    /// A marker made now by source instance `origin`.
    pub fn now(origin: u32) -> Self {
        Self {
            created: tokio::time::Instant::now(),
            origin,
        }
    }

    /// When it was made.
    pub fn created(&self) -> std::time::Instant {
        self.created.into_std()
    }

    /// The source instance that made it.
    pub fn origin(&self) -> u32 {
        self.origin
    }

    /// How long ago it was made.
    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }
}

impl<B: Batch> Message<B> {
    /// Bytes this message occupies on an edge.
    #[inline]
    pub fn bytes(&self) -> usize {
        match self {
            Message::Data(b) => b.bytes(),
            _ => 0,
        }
    }

    /// A copy of a control marker; data is never copied this way.
    pub(crate) fn clone_marker(&self) -> Message<B> {
        match self {
            Message::Watermark(ts) => Message::Watermark(*ts),
            Message::Barrier(b) => Message::Barrier(*b),
            Message::Checkpoint(b) => Message::Checkpoint(*b),
            Message::Idle => Message::Idle,
            Message::Latency(m) => Message::Latency(*m),
            Message::End => Message::End,
            Message::Data(_) => unreachable!("only control markers are copied"),
        }
    }

    /// Rows in this message (zero for control markers).
    #[inline]
    pub fn rows(&self) -> usize {
        match self {
            Message::Data(b) => b.rows(),
            _ => 0,
        }
    }
}

/// An Arrow `RecordBatch` counts its rows and the memory of its arrays. It is not recycled:
/// its arrays are immutable, reference-counted buffers that readers may still share, so arrow
/// offers no way to refill them in place (builders allocate their own buffers).
impl Batch for arrow_array::RecordBatch {
    #[inline]
    fn rows(&self) -> usize {
        self.num_rows()
    }

    #[inline]
    fn bytes(&self) -> usize {
        self.get_array_memory_size()
    }
}
