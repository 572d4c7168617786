//! Barriers: in-band markers that tell a source when every sink has handled what it emitted.
//!
//! A source that must know when its rows are done for good (one that acknowledged them to a
//! client from a write-ahead log, say) emits a numbered [`Barrier`] in order with its data
//! ([`Output::barrier`](crate::Output::barrier)). Barriers travel the same bounded edges as
//! data (a barrier takes a slot and counts zero bytes) and are copied to every consumer, as
//! watermarks are:
//!
//! * an operator forwards barrier `n` of a source once every input that can carry that
//!   source's barriers has delivered `n` (or a later one), after it has handled every batch
//!   before it and its asynchronous work in flight has completed, so no row emitted before
//!   the barrier is behind it downstream. Rows that arrive after it may overtake it, which
//!   only makes the barrier cover more;
//! * a sink, once the barrier arrived on every input, is asked to make what it received
//!   durable ([`Sink::poll_barrier`](crate::Sink::poll_barrier)) and then reports it;
//! * once every sink instance reachable from the source has reported barrier `n` (or a later
//!   one), the source's [`Barriers`] handle calls what it subscribed: every row the source
//!   emitted before barrier `n` has been handled by every sink it reaches.
//!
//! (Checkpoints have barriers of their own, [`CheckpointBarrier`], which the executor aligns;
//! see [`PipelineConfig::checkpointing`](crate::PipelineConfig::checkpointing).)
//!
//! This is *at-least-once* progress tracking: nothing is paused or aligned, so rows after a
//! barrier may be handled before it completes. An operator that keeps rows across calls (an
//! aggregation, a window) would let a barrier pass rows it has not emitted yet, so a barrier
//! reaching an operator that [holds rows](crate::Operator::holds_rows) (or that reports
//! [held rows](crate::Operator::held_rows)) fails the run with an error naming it.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::task::{Context, Poll};
//! use weir_runtime::barrier::Barriers;
//! use weir_runtime::{InputPort, InstanceInfo, OperatorError, Output, Pipeline, Sink, Source, SourceStatus};
//!
//! /// Emits 0..10 with a barrier after each row; notes each barrier every sink handled.
//! struct Numbers { next: u64, barriers: Barriers, done: Arc<Mutex<Vec<u64>>> }
//!
//! impl Source for Numbers {
//!     type Output = Vec<u64>;
//!     fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
//!         self.barriers = info.barriers.clone();
//!         let done = self.done.clone();
//!         self.barriers.subscribe(move |id| done.lock().unwrap().push(id));
//!         Ok(())
//!     }
//!     fn poll_produce(
//!         &mut self,
//!         _cx: &mut Context<'_>,
//!         out: &mut Output<Vec<u64>>,
//!     ) -> Poll<Result<SourceStatus, OperatorError>> {
//!         if self.next == 10 {
//!             return Poll::Ready(Ok(SourceStatus::Done));
//!         }
//!         out.push(self.next);
//!         self.next += 1;
//!         out.barrier(self.barriers.barrier(self.next));
//!         Poll::Ready(Ok(SourceStatus::Continue))
//!     }
//! }
//!
//! /// Sums its input; its default `poll_barrier` has nothing more to make durable.
//! struct Sum(u64);
//! impl Sink for Sum {
//!     type Input = Vec<u64>;
//!     type Output = u64;
//!     fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
//!         self.0 += batch.iter().sum::<u64>();
//!         Ok(())
//!     }
//!     fn finish(&mut self) -> Result<u64, OperatorError> {
//!         Ok(self.0)
//!     }
//! }
//!
//! let done = Arc::new(Mutex::new(Vec::new()));
//! let source = Numbers { next: 0, barriers: Barriers::default(), done: done.clone() };
//! let mut p = Pipeline::new("barriers");
//! let sum = p.source("numbers", source).sink("sum", Sum(0));
//! p.run()?;
//! assert_eq!(sum.take(), Some(45));
//! // Barriers complete in order (one may be skipped when a later one completes with it).
//! let done = done.lock().unwrap();
//! assert_eq!(done.last(), Some(&10));
//! assert!(done.windows(2).all(|w| w[0] < w[1]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A numbered marker from one source instance; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Barrier {
    origin: u32,
    id: u64,
}

impl Barrier {
    /// The barrier's number, as its source chose it (a source numbers its barriers in
    /// increasing order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The source instance that emitted it (an index over the run's source instances).
    pub fn origin(&self) -> u32 {
        self.origin
    }

    pub(crate) fn new(origin: u32, id: u64) -> Self {
        Self { origin, id }
    }
}

/// A checkpoint barrier: the marker a checkpoint's coordinator has every source instance emit
/// between two of its batches, numbered by the checkpoint. Unlike a source's own [`Barrier`],
/// it is *aligned*: an instance with several input edges stops reading an edge that delivered
/// it until every live edge has, then snapshots its state and passes it on, so the checkpoint
/// cuts every stream at one consistent point (see `PipelineConfig::checkpointing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CheckpointBarrier {
    id: u64,
}

impl CheckpointBarrier {
    /// The barrier of checkpoint `id`.
    pub fn new(id: u64) -> Self {
        Self { id }
    }

    /// The checkpoint's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

type Subscriber = Arc<dyn Fn(u64) + Send + Sync>;

/// What one source instance's barriers have reached.
struct OriginState {
    /// The sink instances reachable from the source, as indices into `latest`.
    sinks: Vec<usize>,
    /// The highest barrier each of those sinks reported.
    latest: HashMap<usize, u64>,
    /// The highest barrier every one of them reported.
    completed: Option<u64>,
    subscriber: Option<Subscriber>,
}

/// The run's record of which barriers every sink has handled.
pub(crate) struct Ledger {
    origins: Mutex<Vec<OriginState>>,
}

impl Ledger {
    /// A ledger for a run whose source instance `o` reaches the sink instances `sinks[o]`.
    pub(crate) fn new(sinks: Vec<Vec<usize>>) -> Arc<Self> {
        Arc::new(Self {
            origins: Mutex::new(
                sinks
                    .into_iter()
                    .map(|sinks| OriginState {
                        sinks,
                        latest: HashMap::new(),
                        completed: None,
                        subscriber: None,
                    })
                    .collect(),
            ),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OriginState>> {
        self.origins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sink instance `sink` has handled `barrier` durably.
    pub(crate) fn report(&self, sink: usize, barrier: Barrier) {
        let call = {
            let mut origins = self.lock();
            let Some(o) = origins.get_mut(barrier.origin as usize) else {
                return;
            };
            let latest = o.latest.entry(sink).or_insert(barrier.id);
            *latest = (*latest).max(barrier.id);
            let min = o
                .sinks
                .iter()
                .map(|s| o.latest.get(s).copied())
                .try_fold(u64::MAX, |m, l| l.map(|l| m.min(l)));
            match min {
                Some(min) if o.completed.is_none_or(|c| min > c) && !o.sinks.is_empty() => {
                    o.completed = Some(min);
                    o.subscriber.clone().map(|f| (f, min))
                }
                _ => None,
            }
        };
        // Outside the lock: the subscriber may take its own locks or write to disk.
        if let Some((f, id)) = call {
            f(id);
        }
    }
}

/// A source instance's view of its barriers: it makes them and learns which completed. Every
/// source gets one in [`InstanceInfo::barriers`](crate::InstanceInfo::barriers); the default
/// value (outside a run) makes barriers that never complete.
#[derive(Clone, Default)]
pub struct Barriers {
    inner: Option<(u32, Arc<Ledger>)>,
}

impl fmt::Debug for Barriers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barriers")
            .field("origin", &self.inner.as_ref().map(|(o, _)| *o))
            .field("completed", &self.completed())
            .finish()
    }
}

impl Barriers {
    pub(crate) fn new(origin: u32, ledger: Arc<Ledger>) -> Self {
        Self {
            inner: Some((origin, ledger)),
        }
    }

    /// Barrier number `id` of this source instance, to emit with
    /// [`Output::barrier`](crate::Output::barrier). Number them in increasing order.
    pub fn barrier(&self, id: u64) -> Barrier {
        Barrier::new(self.inner.as_ref().map_or(u32::MAX, |(o, _)| *o), id)
    }

    /// How many sink instances this source reaches: a barrier completes once each of them
    /// has reported it. Zero outside a run.
    pub fn sinks(&self) -> usize {
        self.inner
            .as_ref()
            .and_then(|(o, l)| l.lock().get(*o as usize).map(|s| s.sinks.len()))
            .unwrap_or(0)
    }

    /// The highest barrier every reachable sink has handled, if any.
    pub fn completed(&self) -> Option<u64> {
        let (o, ledger) = self.inner.as_ref()?;
        ledger.lock().get(*o as usize)?.completed
    }

    /// Calls `f(id)` each time the highest completed barrier advances (ids only increase; one
    /// may be skipped when a later one completes with it). It runs on the task of the sink
    /// whose report completed the barrier, possibly after the source has ended, so keep it
    /// short; replaces an earlier subscriber.
    pub fn subscribe(&self, f: impl Fn(u64) + Send + Sync + 'static) {
        if let Some((o, ledger)) = &self.inner {
            if let Some(s) = ledger.lock().get_mut(*o as usize) {
                s.subscriber = Some(Arc::new(f));
            }
        }
    }
}
