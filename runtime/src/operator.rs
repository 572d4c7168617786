//! The operator API: the seam between the runtime and every operator, built-in or yours.
//!
//! Three traits, one per position in a graph:
//!
//! - [`Source`]: produces batches, and is polled **only when every downstream edge has granted
//!   credit** — so a source reads exactly as fast as the slowest consumer drains (behind a
//!   partitioned edge, see the bound in [`Source`]'s contract).
//! - [`Operator`]: consumes batches from one or more inputs of one type and emits batches.
//! - [`Sink`]: consumes batches and, at the end, yields a result. Demand starts here: a sink that
//!   is not [ready](Sink::poll_ready) takes nothing, its edge fills, and its producers wait.
//!
//! Each has lifecycle hooks with defaults (`open`, the per-batch hook, `on_watermark`, the end
//! hook), so a simple operator implements one method. Emission goes through [`Output`], which
//! holds what one call emitted until the executor has sent it: an operator never needs to know
//! about credit, and never runs again while its previous output is waiting for room.
//!
//! Built-in operators in `weir-operators` use exactly this API.

use std::task::{Context, Poll};
// tokio's clock: the linger deadline a partial batch starts is a tokio timer, and on a paused
// clock (tests) both must read the same time.
use tokio::time::Instant;

use crate::batch::{Batch, Message, Timestamp};
use crate::channel::EdgeProbe;
use crate::checkpoint::{SnapshotReader, SnapshotWriter};
use crate::dead_letter::DeadLetter;
use crate::error::OperatorError;
use crate::overflow::OverflowCounter;

/// Which input of a multi-input operator a batch arrived on (0-based, in the order the inputs
/// were connected).
pub type InputPort = usize;

/// What an operator instance knows about itself.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    /// The operator's name.
    pub name: std::sync::Arc<str>,
    /// This instance's index, `0..parallelism`.
    pub instance: usize,
    /// How many instances the operator has.
    pub parallelism: usize,
    /// Target rows per batch for this pipeline.
    pub batch_rows: usize,
    /// The byte bound of this pipeline's edges (their default `max_bytes`): pre-allocate no more
    /// than this for one batch, whatever `batch_rows` says (see [`Output::row_capacity`]).
    pub max_batch_bytes: usize,
    /// Where this instance counts what its own overflow policy drops, spills or rejects (a
    /// source that answers clients, say); the counts appear in the run report.
    pub overflow: OverflowCounter,
    /// What is queued in the edges downstream of this instance: a source that answers clients
    /// reads it to count the work it already accepted and the pipeline has not yet done.
    pub downstream: DownstreamProbe,
    /// For a source: makes [barriers](crate::barrier) and tells which every sink it reaches has
    /// handled. Other instances get the default, which does nothing.
    pub barriers: crate::barrier::Barriers,
    /// Whether the run takes checkpoints that reach this instance
    /// ([`PipelineConfig::checkpointing`](crate::PipelineConfig::checkpointing)): a source is
    /// then asked for its position ([`Source::snapshot`]) and told when a checkpoint holding
    /// it is complete ([`Source::notify_checkpoint_complete`]), and can rely on those instead
    /// of its own [barriers](crate::barrier) to know what it may let go of.
    pub checkpointing: bool,
}

/// Reads the rows and bytes queued in every edge reachable downstream of one instance (through
/// its chained operators and every later operator, to the sinks), with a few atomic loads per
/// edge. Dead-letter edges are not counted; a row copied to two branches counts in each.
///
/// # Examples
///
/// ```
/// use weir_runtime::operator::{DownstreamProbe, Queued};
///
/// // Outside a run (or for an instance without out-edges) nothing is queued.
/// assert_eq!(DownstreamProbe::default().queued(), Queued::default());
/// ```
#[derive(Clone, Default)]
pub struct DownstreamProbe {
    edges: std::sync::Arc<[EdgeProbe]>,
}

/// Rows and bytes queued in edges (see [`DownstreamProbe`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    /// Rows sent into the edges and not yet received by their consumers.
    pub rows: u64,
    /// Data bytes the edges hold.
    pub bytes: u64,
}

impl DownstreamProbe {
    pub(crate) fn new(edges: Vec<EdgeProbe>) -> Self {
        Self {
            edges: edges.into(),
        }
    }

    /// What the edges downstream hold now (each edge read on its own: a consistent total is not
    /// needed for an estimate, and taking one would stop the pipeline).
    pub fn queued(&self) -> Queued {
        let mut q = Queued::default();
        for probe in self.edges.iter() {
            let s = probe.stats();
            q.rows += s.rows_in_flight() as u64;
            q.bytes += s.buffered_bytes as u64;
        }
        q
    }

    /// How many edges it reads.
    pub fn edges(&self) -> usize {
        self.edges.len()
    }
}

impl std::fmt::Debug for DownstreamProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownstreamProbe")
            .field("edges", &self.edges.len())
            .field("queued", &self.queued())
            .finish()
    }
}

/// Whether a source has more to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// Call again (when credit allows).
    Continue,
    /// Exhausted: the executor flushes the output and ends the stream.
    Done,
}

/// A producer of batches.
///
/// # Contract
///
/// `poll_produce` is called only when every downstream edge has credit. It should emit about one
/// batch (see [`Output::is_full`]) and return; it may return `Pending` if its data is not there
/// yet (an async stream, a socket), after arranging a wake-up through `cx` as any future would.
///
/// What one call emitted beyond the credit it found is held by the executor, and the source is
/// not called again until that has been sent. So behind forward, rebalanced and broadcast edges
/// a source is at most an edge's capacity ahead of its slowest consumer (plus what a single call
/// emits beyond one batch).
///
/// A partitioned edge ([`partition_with`](crate::StreamCore::partition_with), keyed streams) is
/// the exception, by design: which targets the next batch reaches is known only once it is split,
/// and a producer waits only for the targets that get data (so one slow target does not hold back
/// batches that never reach it). Behind a partitioned edge the source is polled once the pieces
/// of its previous call have been sent, and a stalled target can therefore be **one call's output
/// (one batch) beyond its credit**: that piece is held by the producer instance (counted in its
/// held bytes) until the target grants credit. Never more, per producer instance.
///
/// # Errors
///
/// An error ends the run and is reported with the source's name.
///
/// # Cancellation
///
/// When every consumer has gone away, or the run is stopped, the source is not polled again;
/// it is dropped when the run ends. This holds while it waits for data too (`poll_produce`
/// returned `Pending`): the executor watches its edges meanwhile, so a quiet source does not
/// keep a cancelled run alive.
///
/// # Examples
///
/// A source of the numbers below a limit, one batch per poll (driven by hand here; in a
/// pipeline, [`Pipeline::source`](crate::Pipeline::source) adds it):
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use weir_runtime::{Message, OperatorError, Output, Source, SourceStatus};
///
/// struct Below { next: u64, limit: u64 }
///
/// impl Source for Below {
///     type Output = Vec<u64>;
///     fn poll_produce(
///         &mut self,
///         _: &mut Context<'_>,
///         out: &mut Output<Vec<u64>>,
///     ) -> Poll<Result<SourceStatus, OperatorError>> {
///         while self.next < self.limit && !out.is_full() {
///             out.push(self.next); // cut into batches of the pipeline's batch size
///             self.next += 1;
///         }
///         let done = self.next == self.limit;
///         Poll::Ready(Ok(if done { SourceStatus::Done } else { SourceStatus::Continue }))
///     }
/// }
///
/// fn sent(out: &mut Output<Vec<u64>>) -> Vec<Vec<u64>> {
///     out.flush(); // the executor cuts a partial batch when the source returns
///     out.drain().filter_map(|m| if let Message::Data(b) = m { Some(b) } else { None }).collect()
/// }
///
/// let mut source = Below { next: 0, limit: 5 };
/// let mut out = Output::new(3);
/// let mut cx = Context::from_waker(Waker::noop());
/// let status = source.poll_produce(&mut cx, &mut out);
/// assert!(matches!(status, Poll::Ready(Ok(SourceStatus::Continue))));
/// assert_eq!(sent(&mut out), vec![vec![0, 1, 2]]); // one full batch, then it returned
/// let status = source.poll_produce(&mut cx, &mut out);
/// assert!(matches!(status, Poll::Ready(Ok(SourceStatus::Done))));
/// assert_eq!(sent(&mut out), vec![vec![3, 4]]);
/// ```
pub trait Source: Send + 'static {
    /// The batches this source emits.
    type Output: Batch;

    /// Called once before the first `poll_produce`.
    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Produces the next rows into `out`.
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Self::Output>,
    ) -> Poll<Result<SourceStatus, OperatorError>>;

    /// The run was asked to stop ([`RunHandle::stop`](crate::RunHandle::stop)). Return
    /// [`SourceStatus::Done`] (the default) to end the stream at once, or
    /// [`SourceStatus::Continue`] to keep being polled until `poll_produce` returns `Done`: a
    /// source that has acknowledged records to a client stops taking new ones here and hands on
    /// what it already took. Called once.
    fn on_stop(&mut self) -> SourceStatus {
        SourceStatus::Done
    }

    /// Whether this source can be checkpointed: it reports its position through
    /// [`snapshot`](Self::snapshot) and starts from one in [`restore`](Self::restore). A
    /// pipeline with checkpoints on
    /// ([`PipelineConfig::checkpointing`](crate::PipelineConfig::checkpointing)) refuses at
    /// start, naming it, a source that cannot. The default is `false`.
    fn can_snapshot(&self) -> bool {
        false
    }

    /// Its position after the last batch it emitted, for a checkpoint: called between two calls
    /// of [`poll_produce`](Self::poll_produce), when the executor is about to emit a checkpoint
    /// barrier behind everything the source emitted so far. Restored by
    /// [`restore`](Self::restore), the source must emit exactly what it would have emitted
    /// after this point.
    ///
    /// # Errors
    ///
    /// An error fails the run. The default reports that the source cannot be checkpointed.
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        Err(OperatorError::user(
            "this source cannot report a position for a checkpoint",
        ))
    }

    /// Starts from a position [`snapshot`](Self::snapshot) returned: called after
    /// [`open`](Self::open) and before the first `poll_produce` when the run restores a
    /// checkpoint that holds one for this instance. The default ignores it.
    ///
    /// # Errors
    ///
    /// A position this source cannot start from fails the run.
    fn restore(&mut self, _position: &[u8]) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` is complete: its manifest is on disk, so a restore starts from
    /// it, and the position this source's [`snapshot`](Self::snapshot) last returned is the one
    /// it holds. A source can now let go of what lies before that position — commit an offset
    /// to a broker, release log segments — since no restore will ask for it again. The
    /// sinks' counterpart is [`Sink::commit`].
    ///
    /// Called on the source's task, between two calls of [`poll_produce`](Self::poll_produce)
    /// (a source waiting for data is woken for it), once per complete checkpoint, in order,
    /// and always before the next `snapshot`. A checkpoint that failed is never notified (the
    /// next complete one covers its position); one that completes after the source has ended
    /// is not either. The position a run restores ([`restore`](Self::restore)) is that of a
    /// complete checkpoint too. The default does nothing.
    ///
    /// # Errors
    ///
    /// An error fails the run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// use weir_runtime::{OperatorError, Output, Source, SourceStatus};
    ///
    /// /// Counts up; remembers the highest position a complete checkpoint holds.
    /// struct Counter { next: u64, snapshotted: u64, released: u64 }
    ///
    /// impl Source for Counter {
    ///     type Output = Vec<u64>;
    ///     fn poll_produce(
    ///         &mut self,
    ///         _: &mut Context<'_>,
    ///         out: &mut Output<Vec<u64>>,
    ///     ) -> Poll<Result<SourceStatus, OperatorError>> {
    ///         out.push(self.next);
    ///         self.next += 1;
    ///         Poll::Ready(Ok(SourceStatus::Continue))
    ///     }
    ///     fn can_snapshot(&self) -> bool {
    ///         true
    ///     }
    ///     fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
    ///         self.snapshotted = self.next;
    ///         Ok(self.next.to_le_bytes().to_vec())
    ///     }
    ///     fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), OperatorError> {
    ///         // Everything below the last snapshot is in a complete checkpoint.
    ///         self.released = self.snapshotted;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut source = Counter { next: 7, snapshotted: 0, released: 0 };
    /// source.snapshot()?;
    /// source.notify_checkpoint_complete(1)?;
    /// assert_eq!(source.released, 7);
    /// # Ok::<(), OperatorError>(())
    /// ```
    fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// A transformation of batches, with one or more inputs of the same type.
///
/// # Errors
///
/// An error from any hook ends the run and is reported with the operator's name.
///
/// # Examples
///
/// An operator that keeps a running total and emits it after each batch (driven by hand here;
/// in a pipeline, [`StreamCore::unary`](crate::StreamCore::unary) adds it):
///
/// ```
/// use weir_runtime::{InputPort, Message, Operator, OperatorError, Output};
///
/// struct RunningTotal(u64);
///
/// impl Operator for RunningTotal {
///     type Input = Vec<u64>;
///     type Output = Vec<u64>;
///     fn on_batch(
///         &mut self,
///         _: InputPort,
///         batch: Vec<u64>,
///         out: &mut Output<Vec<u64>>,
///     ) -> Result<(), OperatorError> {
///         self.0 = batch.iter().try_fold(self.0, |t, x| t.checked_add(*x))
///             .ok_or_else(|| OperatorError::user("the total overflows u64"))?;
///         out.emit(vec![self.0]);
///         Ok(())
///     }
/// }
///
/// let mut op = RunningTotal(0);
/// let mut out = Output::new(1024);
/// op.on_batch(0, vec![1, 2, 3], &mut out)?;
/// op.on_batch(0, vec![10], &mut out)?;
/// let emitted: Vec<Vec<u64>> = out
///     .drain()
///     .filter_map(|m| if let Message::Data(b) = m { Some(b) } else { None })
///     .collect();
/// assert_eq!(emitted, vec![vec![6], vec![16]]);
/// assert!(op.on_batch(0, vec![u64::MAX], &mut out).is_err());
/// # Ok::<(), OperatorError>(())
/// ```
pub trait Operator: Send + 'static {
    /// Batches consumed.
    type Input: Batch;
    /// Batches emitted.
    type Output: Batch;

    /// Called once before the first batch.
    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Whether the operator can take another input now (a batch, a watermark or the end of its
    /// inputs). While it is not ready, nothing is taken from its edges, they fill, and its
    /// producers wait — so an operator that paces itself (a rate limit, a budget of external
    /// calls) pushes back upstream like a slow sink does. The default is always ready.
    ///
    /// Time spent pending here counts as *busy* (the operator is working at its capacity).
    /// A pending operator must arrange a wake-up through `cx`, as any future would.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Ok(()))
    }

    /// Emits into `out` the results of asynchronous work that completed since the last call,
    /// and returns `Ready(Ok(()))` once the operator holds no unfinished work, `Pending` (with a
    /// wake-up arranged through `cx`) while some is still running.
    ///
    /// The executor calls it while the operator waits for input or for
    /// [`poll_ready`](Self::poll_ready) (sending what it emitted before calling again), and after
    /// [`on_end`](Self::on_end) until it returns `Ready`, before ending the stream. The default
    /// has nothing in flight.
    fn poll_flush(
        &mut self,
        _cx: &mut Context<'_>,
        _out: &mut Output<Self::Output>,
    ) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Ok(()))
    }

    /// Processes one batch.
    fn on_batch(
        &mut self,
        port: InputPort,
        batch: Self::Input,
        out: &mut Output<Self::Output>,
    ) -> Result<(), OperatorError>;

    /// Hands back an input batch whose rows [`on_batch`](Self::on_batch) took out (drained,
    /// say), so that its memory returns to the producer instead of being freed: the executor
    /// calls it after every `on_batch` and passes what it gets back upstream, where the next
    /// batch is built in it ([`Batch::recycle`] empties it first). An operator that emits its
    /// input batch (an in-place map or filter) or keeps it has nothing to hand back: the
    /// default, `None`.
    fn take_spare(&mut self) -> Option<Self::Input> {
        None
    }

    /// The minimum watermark over all inputs advanced to `watermark`. The default forwards it.
    ///
    /// The minimum is taken over inputs that have neither ended nor gone idle, it never goes
    /// backwards, and, once watermarks flow, it reaches [`Timestamp::MAX`] before the end of the
    /// inputs (see [`event_time`](crate::event_time)).
    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Self::Output>,
    ) -> Result<(), OperatorError> {
        out.watermark(watermark);
        Ok(())
    }

    /// Every input has ended. Emit what is still held (aggregates, open windows).
    fn on_end(&mut self, _out: &mut Output<Self::Output>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The state this instance holds now (keys, bytes), for the run report. The executor reads
    /// it after every call that may change it; the default reports none.
    fn state_size(&self) -> Option<StateSize> {
        None
    }

    /// Rows this instance holds that it would still emit: results kept in its state until the
    /// end, rows buffered across batches. When the instance ends because every consumer has
    /// gone away, the executor counts these as dropped because downstream closed, so every row
    /// is delivered or counted. The default, 0, is right for operators that hold nothing
    /// between calls.
    fn held_rows(&self) -> u64 {
        0
    }

    /// Whether this operator keeps rows, or results made from them, across calls to emit them
    /// later (an aggregation, a window, a join, a buffer). A [barrier](crate::barrier) cannot
    /// pass such an operator without covering rows it has not emitted yet, so one reaching it
    /// fails the run, naming it, until checkpoints can snapshot what it keeps. The default,
    /// `false`, is right for operators that emit everything a batch yields before the next
    /// call (map, filter, flat-map, parse); an operator that reports [`held_rows`](Self::held_rows)
    /// above zero when a barrier arrives is refused too.
    fn holds_rows(&self) -> bool {
        false
    }

    /// Whether this operator writes what it keeps into a checkpoint
    /// ([`snapshot`](Self::snapshot)) and reads it back ([`restore`](Self::restore)). An
    /// operator that [holds rows](Self::holds_rows) but cannot snapshot them makes a pipeline
    /// with checkpoints on fail at start, naming it; one that holds nothing needs neither. The
    /// default is `false`.
    fn can_snapshot(&self) -> bool {
        false
    }

    /// Writes this instance's state into a checkpoint: called when a checkpoint barrier has
    /// arrived on every input (every batch before it has been handed to
    /// [`on_batch`](Self::on_batch) and the work in flight has completed), before the barrier
    /// is passed on. Keyed state goes in per key group
    /// ([`SnapshotWriter::put_group`]), so that a restore at another parallelism can move it.
    /// The default writes nothing.
    ///
    /// # Errors
    ///
    /// An error fails the run.
    fn snapshot(&mut self, _state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Reads back what [`snapshot`](Self::snapshot) wrote: called after [`open`](Self::open)
    /// when the run restores a checkpoint, with the key groups this instance owns now (from
    /// every old instance that held them) and the old instances' instance-wide state (see
    /// [`SnapshotReader`]). The default ignores it.
    ///
    /// # Errors
    ///
    /// State that does not decode fails the run.
    fn restore(&mut self, _state: &SnapshotReader) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// The size of an operator instance's state, as it reports it through
/// [`Operator::state_size`]. The run report shows the current and the peak values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Entries held (keys of a keyed aggregate, open windows, ...).
    pub keys: u64,
    /// Bytes held by those entries, as the operator accounts them.
    pub bytes: u64,
    /// Updates (rows or partials folded in) of the most-updated entry held, if the operator
    /// counts them; 0 otherwise. The report gives its peak as the hottest key's share of the
    /// operator's input, which shows a skewed key behind a busy instance.
    pub hottest_key_updates: u64,
}

/// A consumer of batches at the end of a pipeline.
///
/// # Errors
///
/// An error from any hook ends the run and is reported with the sink's name.
///
/// # Examples
///
/// A sink that keeps the largest row it saw (driven by hand here; in a pipeline,
/// [`StreamCore::sink`](crate::StreamCore::sink) adds it and its handle yields the result):
///
/// ```
/// use weir_runtime::{InputPort, OperatorError, Sink};
///
/// struct Max(Option<u64>);
///
/// impl Sink for Max {
///     type Input = Vec<u64>;
///     type Output = Option<u64>;
///     fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
///         self.0 = self.0.into_iter().chain(batch).max();
///         Ok(())
///     }
///     fn finish(&mut self) -> Result<Option<u64>, OperatorError> {
///         Ok(self.0.take())
///     }
/// }
///
/// let mut sink = Max(None);
/// sink.on_batch(0, vec![3, 9, 4])?;
/// sink.on_batch(0, vec![7])?;
/// assert_eq!(sink.finish()?, Some(9));
/// # Ok::<(), OperatorError>(())
/// ```
pub trait Sink: Send + 'static {
    /// Batches consumed.
    type Input: Batch;
    /// What the sink yields at the end of the stream (`()` for none).
    type Output: Send + 'static;

    /// Called once before the first batch.
    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Whether the sink can take a batch now. This is where demand starts: while a sink is not
    /// ready, nothing is taken from its edge. The default is always ready.
    ///
    /// Time spent pending here counts as *busy* (the sink is working at its capacity).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Ok(()))
    }

    /// Drives work the sink started and has not finished (requests in flight, retries waiting
    /// on a timer); returns `Ready(Ok(()))` once none is left, `Pending` (with a wake-up
    /// arranged through `cx`) otherwise.
    ///
    /// The executor polls it while the sink waits for input, so that work progresses, and after
    /// the last input until it is `Ready`, before [`finish`](Self::finish). The default has
    /// nothing in flight.
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Ok(()))
    }

    /// A [barrier](crate::barrier) arrived on every input: every batch before it has been given
    /// to [`on_batch`](Self::on_batch). Return `Ready(Ok(()))` once those rows are handled for
    /// good — written and synced to stable storage, acknowledged by the far end — and the
    /// executor reports the barrier as handled by this instance; `Pending` (with a wake-up
    /// arranged through `cx`) until then. No input is taken meanwhile.
    ///
    /// The default finishes the work in flight ([`poll_flush`](Self::poll_flush)): right for
    /// a sink whose `on_batch` is final (a counter, a collection in memory, a channel).
    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        _barrier: crate::barrier::Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        self.poll_flush(cx)
    }

    /// A checkpoint barrier arrived on every input: make every row received before it durable
    /// in a form the sink can still take back (pending files named by `checkpoint`, say) —
    /// the first phase of a two-phase commit. Return `Ready(Ok(()))` once that is done; the
    /// executor then snapshots the sink ([`snapshot`](Self::snapshot)) and acknowledges the
    /// checkpoint. No input is taken meanwhile. Once the whole checkpoint is complete,
    /// [`commit`](Self::commit) publishes it.
    ///
    /// The default finishes the work in flight ([`poll_flush`](Self::poll_flush)).
    fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        _checkpoint: u64,
    ) -> Poll<Result<(), OperatorError>> {
        self.poll_flush(cx)
    }

    /// Checkpoint `checkpoint` is complete (its manifest is on disk): publish what its
    /// [`poll_pre_commit`](Self::poll_pre_commit) made pending — the second phase. Called on
    /// the sink's task, in checkpoint order, between batches; a checkpoint that failed is
    /// never committed (the next one covers its rows). The default does nothing.
    ///
    /// # Errors
    ///
    /// An error fails the run; a restart finishes the commit from the restored checkpoint.
    fn commit(&mut self, _checkpoint: u64) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Writes the sink's own state into a checkpoint, after
    /// [`poll_pre_commit`](Self::poll_pre_commit) (see [`Operator::snapshot`]). The default
    /// writes nothing.
    ///
    /// # Errors
    ///
    /// An error fails the run.
    fn snapshot(&mut self, _state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Reads back what [`snapshot`](Self::snapshot) wrote, after [`open`](Self::open), when
    /// the run restores checkpoint [`SnapshotReader::checkpoint`]: a two-phase sink finishes
    /// or discards there what that checkpoint left pending. The default ignores it.
    ///
    /// # Errors
    ///
    /// State that does not decode fails the run.
    fn restore(&mut self, _state: &SnapshotReader) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Consumes one batch.
    fn on_batch(&mut self, port: InputPort, batch: Self::Input) -> Result<(), OperatorError>;

    /// Hands back an input batch whose rows [`on_batch`](Self::on_batch) took out (drained,
    /// say), so that its memory returns to the producer instead of being freed: the executor
    /// calls it after every `on_batch` and hands what it gets back to the edge the batch came
    /// from ([`Inlet::recycle`](crate::Inlet::recycle)), where the producer builds its next batch
    /// in it. The default, `None`, drops nothing back (the batch was consumed or kept).
    ///
    /// ```
    /// use weir_runtime::{InputPort, OperatorError, Sink};
    ///
    /// /// Sums rows and hands every batch back.
    /// struct Sum { total: u64, spare: Option<Vec<u64>> }
    ///
    /// impl Sink for Sum {
    ///     type Input = Vec<u64>;
    ///     type Output = u64;
    ///     fn on_batch(&mut self, _: InputPort, mut batch: Vec<u64>) -> Result<(), OperatorError> {
    ///         self.total = batch.drain(..).fold(self.total, u64::wrapping_add);
    ///         self.spare = Some(batch);
    ///         Ok(())
    ///     }
    ///     fn take_spare(&mut self) -> Option<Vec<u64>> {
    ///         self.spare.take()
    ///     }
    ///     fn finish(&mut self) -> Result<u64, OperatorError> {
    ///         Ok(self.total)
    ///     }
    /// }
    /// ```
    fn take_spare(&mut self) -> Option<Self::Input> {
        None
    }

    /// Whether the sink will take nothing more (its own consumer went away, say). The executor
    /// checks after `poll_ready`; once true, it stops feeding the sink and finishes it, and the
    /// closed edges cancel the pipeline upstream. Undelivered rows are counted in the report.
    fn is_closed(&self) -> bool {
        false
    }

    /// `Ready` once [`is_closed`](Self::is_closed) has become true; otherwise `Pending`, with a
    /// wake-up arranged through `cx` for when it does. The executor polls it while the sink
    /// waits for input or for [`poll_ready`](Self::poll_ready), so a sink whose consumer goes
    /// away while nothing arrives (a reader dropped while the sources have nothing to send) ends
    /// the run at once. A sink whose `is_closed` changes only in its own hooks (after a number
    /// of rows, say) needs nothing here: the default reports `is_closed` and arranges nothing.
    fn poll_closed(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        if self.is_closed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Rows the sink took but could not pass on because its own consumer went away (see
    /// [`is_closed`](Self::is_closed)); read once after `finish` and counted in the run report as
    /// dropped because downstream closed. The default is zero.
    fn undelivered_rows(&self) -> u64 {
        0
    }

    /// Moves the records the sink rejected since the last call into `out`; they go to its
    /// dead-letter port. Called after every batch. The default has none.
    fn take_dead_letters(&mut self, _out: &mut Vec<DeadLetter>) {}

    /// Every input has ended: complete work still in flight (an asynchronous write, say) before
    /// [`finish`](Sink::finish). Called until it returns `Ready`; pending here counts as busy.
    /// The default has nothing in flight.
    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Ok(()))
    }

    /// Every input has ended; returns the sink's result.
    fn finish(&mut self) -> Result<Self::Output, OperatorError>;
}

/// Where an operator emits. It holds what one call emitted, in order, until the executor sends it.
///
/// For typed streams (`Output<Vec<T>>`) rows can be pushed one at a time and are cut into batches
/// of the pipeline's batch size; [`emit`](Output::emit) hands over a whole batch at once.
///
/// # Examples
///
/// ```
/// use weir_runtime::operator::Output;
///
/// let mut out = Output::<Vec<u32>>::new(2);
/// out.push(1);
/// assert!(!out.is_full());
/// out.push(2); // completes a batch of 2
/// assert!(out.is_full());
/// out.push(3);
/// out.flush(); // cuts the partial batch
/// let batches: Vec<_> = out.drain().collect();
/// assert_eq!(batches.len(), 2);
/// ```
#[derive(Debug)]
pub struct Output<B> {
    sealed: Vec<Message<B>>,
    open: Option<B>,
    open_since: Option<Instant>,
    batch_rows: usize,
    max_batch_bytes: usize,
    dead: Vec<DeadLetter>,
    skipped: u64,
    /// An empty buffer handed back by a consumer, to fill before allocating a new batch.
    spare: Option<B>,
}

impl<B: Batch> Output<B> {
    /// An output cutting typed rows into batches of `batch_rows`, pre-allocating at most the
    /// default edge's byte bound for a batch (see [`with_max_batch_bytes`](Self::with_max_batch_bytes)).
    pub fn new(batch_rows: usize) -> Self {
        Self {
            sealed: Vec::new(),
            open: None,
            open_since: None,
            batch_rows: batch_rows.max(1),
            max_batch_bytes: crate::channel::EdgeConfig::default().max_bytes,
            dead: Vec::new(),
            skipped: 0,
            spare: None,
        }
    }

    /// Takes the spare buffer this output holds, if any: an empty batch a consumer handed back
    /// (see [`Batch::recycle`]). A producer that builds whole batches itself fills it instead of
    /// allocating (for `Vec` batches, [`batch_with_capacity`](Output::batch_with_capacity) does
    /// this); rows pushed one at a time use it already.
    #[inline]
    pub fn take_spare(&mut self) -> Option<B> {
        self.spare.take()
    }

    /// Keeps `batch`, emptied, as this output's spare buffer, unless it holds one already or the
    /// batch cannot be reused (then it is dropped). An operator whose input batch dies in
    /// `on_batch` can hand it here for the output to refill.
    #[inline]
    pub fn recycle(&mut self, batch: B) {
        if self.spare.is_none() {
            self.spare = batch.recycle();
        }
    }

    /// The spare slot, for the executor to refill from the edges' return paths.
    #[inline]
    pub(crate) fn spare_slot(&mut self) -> &mut Option<B> {
        &mut self.spare
    }

    /// Sends a record this operator could not process to its dead-letter port (see
    /// [`DeadLetter`]). It is counted in the run report whether or not the port is connected.
    pub fn dead_letter(&mut self, dead_letter: DeadLetter) {
        self.dead.push(dead_letter);
    }

    /// Counts `rows` input rows that were skipped on purpose (a skip-and-count policy), so the
    /// run report accounts for them.
    pub fn skip(&mut self, rows: u64) {
        self.skipped += rows;
    }

    /// Dead letters emitted and not yet taken.
    pub(crate) fn dead_letter_count(&self) -> usize {
        self.dead.len()
    }

    /// Takes the dead letters and the skipped count emitted so far (the executor sends and
    /// counts them).
    pub(crate) fn take_rejects(&mut self) -> (Vec<DeadLetter>, u64) {
        (
            std::mem::take(&mut self.dead),
            std::mem::take(&mut self.skipped),
        )
    }

    /// Emits a whole batch (after any rows pushed before it). Empty batches are skipped.
    pub fn emit(&mut self, batch: B) {
        self.flush();
        if batch.rows() > 0 {
            self.sealed.push(Message::Data(batch));
        }
    }

    /// Emits a watermark, in order with the data.
    pub fn watermark(&mut self, watermark: Timestamp) {
        self.flush();
        self.sealed.push(Message::Watermark(watermark));
    }

    /// Announces that this producer is idle (see [`Message::Idle`]): the partial batch before
    /// it is cut and goes first.
    pub(crate) fn idle(&mut self) {
        self.flush();
        self.sealed.push(Message::Idle);
    }

    /// The batches sealed and not yet taken.
    #[inline]
    pub(crate) fn sealed_batches(&self) -> impl Iterator<Item = &B> {
        self.sealed.iter().filter_map(|m| match m {
            Message::Data(b) => Some(b),
            _ => None,
        })
    }

    /// Emits a watermark after the sealed messages, leaving the partial batch open: its rows
    /// follow the watermark (a source's strategy has not seen them yet).
    pub(crate) fn watermark_after_sealed(&mut self, watermark: Timestamp) {
        self.sealed.push(Message::Watermark(watermark));
    }

    /// Emits a [barrier](crate::barrier), in order with the data: the partial batch before it
    /// is cut and goes first.
    pub fn barrier(&mut self, barrier: crate::barrier::Barrier) {
        self.flush();
        self.sealed.push(Message::Barrier(barrier));
    }

    /// Emits a checkpoint barrier, in order with the data: the partial batch before it is cut
    /// and goes first.
    pub(crate) fn checkpoint(&mut self, barrier: crate::barrier::CheckpointBarrier) {
        self.flush();
        self.sealed.push(Message::Checkpoint(barrier));
    }

    /// The checkpoint barriers sealed and not yet taken (the executor sends them on the
    /// dead-letter port too, behind the dead letters emitted before them).
    #[inline]
    pub(crate) fn sealed_checkpoints(
        &self,
    ) -> impl Iterator<Item = crate::barrier::CheckpointBarrier> + '_ {
        self.sealed.iter().filter_map(|m| match m {
            Message::Checkpoint(b) => Some(*b),
            _ => None,
        })
    }

    /// Cuts the partial batch of pushed rows, if any, so it can be sent.
    pub fn flush(&mut self) {
        if let Some(open) = self.open.take() {
            self.open_since = None;
            if open.rows() > 0 {
                self.sealed.push(Message::Data(open));
            }
        }
    }

    /// Whether at least one complete batch is waiting to be sent: a producer should return.
    pub fn is_full(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// Pre-allocates at most `bytes` for one batch (the executor passes its edges' byte bound,
    /// [`InstanceInfo::max_batch_bytes`]); a batch that grows beyond it grows as rows arrive.
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// The target rows per batch.
    pub fn batch_rows(&self) -> usize {
        self.batch_rows
    }

    /// Whether pushed rows are waiting in a partial batch, and since when (the executor's
    /// linger deadline starts there).
    pub(crate) fn open_since(&self) -> Option<Instant> {
        self.open_since
    }

    /// Whether pushed rows are waiting in a partial batch. It ends when the batch is cut: by
    /// the batch size, by [`flush`](Self::flush), or by the executor once the pipeline's linger
    /// has passed. A source that also cuts batches by a measure of its own (bytes, say) reads it
    /// to know when the batch it was measuring has gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::operator::Output;
    ///
    /// let mut out = Output::<Vec<u32>>::new(4);
    /// assert!(!out.has_open_batch());
    /// out.push(1);
    /// assert!(out.has_open_batch());
    /// out.flush();
    /// assert!(!out.has_open_batch());
    /// ```
    pub fn has_open_batch(&self) -> bool {
        self.open_since.is_some()
    }

    /// Takes the sealed messages, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Message<B>> {
        self.sealed.drain(..)
    }

    /// Whether nothing is sealed or open.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_none() && self.dead.is_empty()
    }
}

impl<T: crate::Data> Output<Vec<T>> {
    /// The rows worth pre-allocating for one batch: [`batch_rows`](Self::batch_rows), but no
    /// more than the byte bound holds (so a huge `batch_rows` never allocates up front what the
    /// edges could not hold anyway). Use it for `Vec::with_capacity` of a batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::operator::Output;
    ///
    /// let out = Output::<Vec<u64>>::new(1 << 20).with_max_batch_bytes(64 * 1024);
    /// assert_eq!(out.row_capacity(), 8 * 1024);
    /// assert_eq!(Output::<Vec<u64>>::new(1024).row_capacity(), 1024);
    /// ```
    #[inline]
    pub fn row_capacity(&self) -> usize {
        let row = std::mem::size_of::<T>().max(1);
        self.batch_rows.min((self.max_batch_bytes / row).max(1))
    }

    /// An empty batch with room for at least `rows` rows: the spare buffer a consumer handed
    /// back if there is one of a fitting size, a new allocation otherwise. A source that builds
    /// its batches whole calls it instead of `Vec::with_capacity`, so that a steady pipeline
    /// allocates nothing per batch.
    ///
    /// A spare much larger than the batch (more than twice `rows`, or twice
    /// [`row_capacity`](Self::row_capacity) when that is more) is dropped rather than used, since
    /// a batch's bytes count its capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::operator::Output;
    ///
    /// let mut out = Output::<Vec<u64>>::new(1024);
    /// let mut batch = out.batch_with_capacity(1024);
    /// batch.extend(0..1024);
    /// let ptr = batch.as_ptr();
    /// out.recycle(batch); // as the executor does with a buffer its consumer handed back
    /// let again = out.batch_with_capacity(1024);
    /// assert!(again.is_empty());
    /// assert_eq!(again.as_ptr(), ptr, "the same memory, not a new allocation");
    /// ```
    #[inline]
    pub fn batch_with_capacity(&mut self, rows: usize) -> Vec<T> {
        match self.spare.take() {
            Some(mut spare) if spare.capacity() <= self.spare_limit(rows) => {
                spare.clear();
                spare.reserve_exact(rows);
                spare
            }
            _ => Vec::with_capacity(rows),
        }
    }

    /// The largest spare worth filling for a batch of `rows` rows.
    #[inline]
    fn spare_limit(&self, rows: usize) -> usize {
        rows.max(self.row_capacity()).max(4).saturating_mul(2)
    }

    /// Appends one row, cutting a batch when it reaches the batch size.
    #[inline]
    pub fn push(&mut self, row: T) {
        if self.open.is_none() {
            let capacity = self.row_capacity();
            self.open = Some(self.batch_with_capacity(capacity));
        }
        let batch_rows = self.batch_rows;
        let Some(open) = self.open.as_mut() else {
            unreachable!("opened above")
        };
        if open.is_empty() {
            self.open_since = Some(Instant::now());
        }
        if open.len() == open.capacity() {
            // Pre-allocated below `batch_rows` (the byte bound): grow by doubling, but never
            // past the batch, so its bytes stay what a pre-allocated batch would hold.
            let len = open.len();
            open.reserve_exact(len.clamp(1, batch_rows.saturating_sub(len).max(1)));
        }
        open.push(row);
        if open.len() >= batch_rows {
            self.flush();
        }
    }

    /// Appends rows, cutting batches as they fill.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = T>) {
        for row in rows {
            self.push(row);
        }
    }
}
