//! [`StreamCore`]: a typed stream handle, and the generic wiring on it: operators, sinks,
//! partitioning, edge sizing and overflow policies.

use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::draft::Shared;
use super::handle::SinkHandle;
use crate::batch::Batch;
use crate::channel::EdgeConfig;
use crate::dead_letter::DeadLetter;
use crate::event_time::{Assign, WatermarkStrategy};
use crate::exec::runners::{single, Factory, ResultSlot};
use crate::exec::{OperatorRunner, SinkRunner};
use crate::graph::{EdgeOverflow, EdgeSpec, Node, NodeId, OutPort, Partitioning};
use crate::metrics::NodeKind;
use crate::operator::{InstanceInfo, Operator, Sink};
use crate::overflow::{Overflow, SpillCodec};
use crate::partition::{Partitioner, PartitionerFactory};
use crate::plan::AnyBox;

/// A stream of batches of type `B` produced by one operator.
///
/// Streams are handles: connecting an operator consumes the handle. To feed several consumers
/// (fan-out), clone it first; by default the producer then waits for credit from *every*
/// consumer, so the slowest branch governs.
pub struct StreamCore<B> {
    inner: Shared,
    node: NodeId,
    port: OutPort,
    edge: Option<EdgeConfig>,
    partitioning: Partitioning,
    partitioner: Option<(String, Arc<dyn std::any::Any + Send + Sync>)>,
    /// The most consumer instances the partitioner can serve.
    max_targets: Option<usize>,
    overflow: Option<Overflow>,
    /// An `Arc<dyn SpillCodec<B>>`.
    spill_codec: Option<Arc<dyn std::any::Any + Send + Sync>>,
    _batch: PhantomData<fn() -> B>,
}

/// A stream of typed rows, carried in `Vec<T>` batches.
pub type Stream<T> = StreamCore<Vec<T>>;

impl<B: Batch + Clone> Clone for StreamCore<B> {
    fn clone(&self) -> Self {
        if self.port == OutPort::Main {
            self.inner.borrow_mut().set_cloneable::<B>(self.node);
        }
        Self {
            inner: self.inner.clone(),
            node: self.node,
            port: self.port,
            edge: self.edge,
            partitioning: self.partitioning,
            partitioner: self.partitioner.clone(),
            max_targets: self.max_targets,
            overflow: self.overflow.clone(),
            spill_codec: self.spill_codec.clone(),
            _batch: PhantomData,
        }
    }
}

impl<B> fmt::Debug for StreamCore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("producer", &self.node)
            .finish_non_exhaustive()
    }
}

impl<B: Batch> StreamCore<B> {
    pub(super) fn new(inner: Shared, node: NodeId) -> Self {
        Self {
            inner,
            node,
            port: OutPort::Main,
            edge: None,
            partitioning: Partitioning::Forward,
            partitioner: None,
            max_targets: None,
            overflow: None,
            spill_codec: None,
            _batch: PhantomData,
        }
    }

    /// The dead letters of the operator producing this stream, as a stream of their own: records
    /// it rejected, with reason and raw input, in order. Connect it to any sink; left
    /// unconnected, dead letters are still counted in the run report.
    pub fn dead_letters(&self) -> Stream<DeadLetter> {
        StreamCore {
            inner: self.inner.clone(),
            node: self.node,
            port: OutPort::DeadLetters,
            edge: None,
            partitioning: Partitioning::Forward,
            partitioner: None,
            max_targets: None,
            overflow: None,
            spill_codec: None,
            _batch: PhantomData,
        }
    }

    /// Splits the stream over the next operator's instances with a custom partitioner, built
    /// once per producer instance by `make(producer_instance, targets)`; `label` names the
    /// scheme in graphs and reports.
    pub fn partition_with<P, F>(mut self, label: impl Into<String>, make: F) -> Self
    where
        P: Partitioner<B>,
        F: Fn(usize, usize) -> P + Send + Sync + 'static,
    {
        let factory: PartitionerFactory<B> = Arc::new(move |instance, targets| {
            Box::new(make(instance, targets)) as Box<dyn Partitioner<B>>
        });
        self.partitioning = Partitioning::Partitioned;
        self.partitioner = Some((label.into(), Arc::new(factory)));
        self.max_targets = None;
        self
    }

    /// As [`partition_with`](Self::partition_with), for a partitioner that can serve at most
    /// `max_targets` consumer instances (one that routes by a fixed number of key groups, say):
    /// a consumer with more instances fails the run before anything starts, naming it.
    pub fn partition_with_limit<P, F>(
        self,
        label: impl Into<String>,
        max_targets: usize,
        make: F,
    ) -> Self
    where
        P: Partitioner<B>,
        F: Fn(usize, usize) -> P + Send + Sync + 'static,
    {
        let mut s = self.partition_with(label, make);
        s.max_targets = Some(max_targets);
        s
    }

    /// The producing operator.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The producing operator's name.
    pub fn name(&self) -> String {
        self.inner.borrow().graph.name_of(self.node).to_string()
    }

    /// Sets the parallelism of the operator producing this stream. Without it the operator
    /// runs [`PipelineConfig::parallelism`](crate::PipelineConfig::parallelism) instances (it does not inherit its input's).
    pub fn parallelism(self, parallelism: usize) -> Self {
        self.inner
            .borrow_mut()
            .graph
            .node_mut(self.node)
            .parallelism = Some(parallelism);
        self
    }

    /// Sizes the edge(s) from this stream to the next operator connected through this handle.
    /// An explicitly sized edge is always a real edge: the next operator is not chained to this
    /// one.
    pub fn with_edge(mut self, config: EdgeConfig) -> Self {
        self.edge = Some(config);
        self
    }

    /// Declares the edge(s) from this stream to the next operator connected through this handle
    /// lossy under `policy`: the producer never waits for that consumer, and what finds no room
    /// is dropped, queued or spilled as the [`Overflow`] docs describe, and counted in the run
    /// report. `Overflow::Block` is the default and changes nothing; `Overflow::Reject` is for
    /// sources and fails validation here; `Overflow::Spill` needs
    /// [`with_spill_codec`](Self::with_spill_codec).
    ///
    /// # Examples
    ///
    /// A tap that must never slow the main flow:
    ///
    /// ```
    /// # use std::task::{Context, Poll};
    /// # use weir_runtime::{operator::{Output, Sink, Source, SourceStatus}, OperatorError};
    /// use weir_runtime::{Overflow, Pipeline};
    /// # struct Upto(u64, u64);
    /// # impl Source for Upto {
    /// #     type Output = Vec<u64>;
    /// #     fn poll_produce(&mut self, _: &mut Context<'_>, out: &mut Output<Vec<u64>>)
    /// #         -> Poll<Result<SourceStatus, OperatorError>> {
    /// #         while self.0 < self.1 && !out.is_full() { out.push(self.0); self.0 += 1; }
    /// #         Poll::Ready(Ok(if self.0 == self.1 { SourceStatus::Done } else { SourceStatus::Continue }))
    /// #     }
    /// # }
    /// # struct Count(u64);
    /// # impl Sink for Count {
    /// #     type Input = Vec<u64>;
    /// #     type Output = u64;
    /// #     fn on_batch(&mut self, _: usize, b: Vec<u64>) -> Result<(), OperatorError> {
    /// #         self.0 += b.len() as u64; Ok(())
    /// #     }
    /// #     fn finish(&mut self) -> Result<u64, OperatorError> { Ok(self.0) }
    /// # }
    ///
    /// let mut p = Pipeline::new("tap");
    /// let numbers = p.source("numbers", Upto(0, 100_000));
    /// let main = numbers.clone().sink("main", Count(0));
    /// let tap = numbers.on_overflow(Overflow::DropNewest).sink("tap", Count(0));
    /// let report = p.run()?;
    /// assert_eq!(main.take(), Some(100_000));
    /// // Whatever the tap missed is counted, never silently lost.
    /// assert_eq!(tap.take().unwrap() + report.overflow.dropped_newest, 100_000);
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    pub fn on_overflow(mut self, policy: Overflow) -> Self {
        self.overflow = Some(policy);
        self
    }

    /// Sets how this stream's batches are written to a spill ([`Overflow::Spill`]), and to a
    /// checkpoint: with a codec, an unaligned checkpoint can capture the batches queued on the
    /// edges from this stream (see
    /// [`CheckpointConfig::alignment_timeout`](crate::CheckpointConfig::alignment_timeout)).
    pub fn with_spill_codec(mut self, codec: impl SpillCodec<B>) -> Self {
        let codec: Arc<dyn SpillCodec<B>> = Arc::new(codec);
        self.spill_codec = Some(Arc::new(codec));
        self
    }

    /// Spreads batches round-robin over the next operator's instances.
    pub fn rebalance(mut self) -> Self {
        self.partitioning = Partitioning::Rebalance;
        self
    }

    fn connect(&self, to: NodeId, port: usize) {
        self.inner.borrow_mut().graph.connect(
            self.node,
            to,
            EdgeSpec {
                port,
                from_port: self.port,
                config: self.edge,
                partitioning: self.partitioning,
                partitioner: self.partitioner.clone(),
                max_targets: self.max_targets,
                overflow: self
                    .overflow
                    .clone()
                    .filter(|p| *p != Overflow::Block)
                    .map(|policy| EdgeOverflow {
                        policy,
                        codec: self.spill_codec.clone(),
                    }),
                codec: self.spill_codec.clone(),
            },
        );
    }

    fn add_operator<O: Operator<Input = B>>(
        &self,
        name: String,
        factory: Factory<O>,
        single: bool,
    ) -> StreamCore<O::Output> {
        let id = self.inner.borrow_mut().add(
            Node {
                name,
                kind: NodeKind::Operator,
                parallelism: None,
                single,
            },
            Box::new(OperatorRunner { factory }),
        );
        self.connect(id, 0);
        StreamCore::new(self.inner.clone(), id)
    }

    /// Gives this stream event time: timestamps and watermarks as `strategy` says (see
    /// [`event_time`](crate::event_time) for what each choice means).
    ///
    /// On a source's stream the source's own instances apply it, with its idle timeout and
    /// alignment group: an instance waiting for credit keeps holding the watermark back, only
    /// one with nothing to read for the idle timeout goes idle, and one too far ahead of its
    /// group is paused like an instance without credit. On any other stream an operator placed
    /// after its producer (named `"<producer>.watermarks"`, at the producer's parallelism)
    /// assigns watermarks from the rows it forwards, replacing those from upstream; idle
    /// timeouts and alignment do not apply there.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_runtime::test_support::{CollectAll, Upto};
    /// use weir_runtime::{Pipeline, Timestamp, WatermarkStrategy};
    ///
    /// let mut p = Pipeline::new("events");
    /// let rows = p
    ///     .source("numbers", Upto(0, 1000))
    ///     .with_watermarks(
    ///         WatermarkStrategy::bounded(Duration::from_millis(5))
    ///             .timestamps(|n: &u64| Timestamp(*n as i64)),
    ///     )
    ///     .sink("collect", CollectAll(Vec::new()));
    /// let report = p.run().unwrap();
    /// assert_eq!(rows.take().unwrap().len(), 1000);
    /// // Its input ended: the source sent +∞, which every operator downstream passed on.
    /// assert_eq!(report.operators[0].instances[0].watermark, Some(i64::MAX));
    /// assert_eq!(report.operators[1].instances[0].watermark, Some(i64::MAX));
    /// ```
    pub fn with_watermarks(self, strategy: WatermarkStrategy<B>) -> Self {
        let strategy: AnyBox = Box::new(strategy);
        let back = if self.port == OutPort::Main {
            let mut draft = self.inner.borrow_mut();
            draft.runners[self.node.index()]
                .runner
                .set_watermarks(strategy)
        } else {
            Err(strategy)
        };
        let Err(back) = back else { return self };
        let Ok(strategy) = back.downcast::<WatermarkStrategy<B>>() else {
            unreachable!("handed back as given")
        };
        let name = format!("{}.watermarks", self.name());
        let parallelism = self.inner.borrow().graph.node_parallelism(self.node);
        let out = self.unary_with(name, move |_| Assign::new(&strategy));
        match parallelism {
            Some(n) => out.parallelism(n),
            None => out,
        }
    }

    /// Connects a one-input operator given as one value (one instance).
    pub fn unary<O: Operator<Input = B>>(
        self,
        name: impl Into<String>,
        op: O,
    ) -> StreamCore<O::Output> {
        let name = name.into();
        let factory = single(&name, op);
        self.add_operator(name, factory, true)
    }

    /// Connects a one-input operator built per instance by `factory`.
    pub fn unary_with<O: Operator<Input = B>>(
        self,
        name: impl Into<String>,
        factory: impl FnMut(&InstanceInfo) -> O + Send + 'static,
    ) -> StreamCore<O::Output> {
        let mut factory = factory;
        self.add_operator(name.into(), Box::new(move |info| Ok(factory(info))), false)
    }

    /// Connects an operator with several inputs of this stream's type: this stream is input 0,
    /// `others` follow in order.
    pub fn multi<O: Operator<Input = B>>(
        self,
        name: impl Into<String>,
        others: impl IntoIterator<Item = StreamCore<B>>,
        op: O,
    ) -> StreamCore<O::Output> {
        let name = name.into();
        let factory = single(&name, op);
        let out = self.add_operator(name, factory, true);
        for (i, other) in others.into_iter().enumerate() {
            assert!(
                Rc::ptr_eq(&self.inner, &other.inner),
                "streams of different pipelines cannot be joined"
            );
            other.connect(out.node, i + 1);
        }
        out
    }

    /// Ends the stream in a sink given as one value (one instance). The handle yields the sink's
    /// result after the run.
    pub fn sink<K: Sink<Input = B>>(
        self,
        name: impl Into<String>,
        sink: K,
    ) -> SinkHandle<K::Output> {
        let name = name.into();
        let factory = single(&name, sink);
        self.add_sink(name, factory, true)
    }

    /// Ends the stream in a sink given as one value, also returning the sink's dead letters
    /// (records it rejected) as a stream.
    pub fn sink_with_dead_letters<K: Sink<Input = B>>(
        self,
        name: impl Into<String>,
        sink: K,
    ) -> (SinkHandle<K::Output>, Stream<DeadLetter>) {
        let name = name.into();
        let factory = single(&name, sink);
        let inner = self.inner.clone();
        let (handle, id) = self.add_sink_node(name, factory, true);
        let dead = StreamCore::<Vec<DeadLetter>>::new(inner, id).dead_letters();
        (handle, dead)
    }

    /// Ends the stream in a sink built per instance by `factory`.
    pub fn sink_with<K: Sink<Input = B>>(
        self,
        name: impl Into<String>,
        factory: impl FnMut(&InstanceInfo) -> K + Send + 'static,
    ) -> SinkHandle<K::Output> {
        let mut factory = factory;
        self.add_sink(name.into(), Box::new(move |info| Ok(factory(info))), false)
    }

    /// Ends the stream in a sink of `parallelism` instances built by `factory` (a sink has no
    /// stream of its own to set [`parallelism`](Self::parallelism) on).
    pub fn sink_with_parallelism<K: Sink<Input = B>>(
        self,
        name: impl Into<String>,
        parallelism: usize,
        factory: impl FnMut(&InstanceInfo) -> K + Send + 'static,
    ) -> SinkHandle<K::Output> {
        let mut factory = factory;
        let inner = self.inner.clone();
        let (handle, id) =
            self.add_sink_node(name.into(), Box::new(move |info| Ok(factory(info))), false);
        inner.borrow_mut().graph.node_mut(id).parallelism = Some(parallelism);
        handle
    }

    fn add_sink<K: Sink<Input = B>>(
        self,
        name: String,
        factory: Factory<K>,
        single: bool,
    ) -> SinkHandle<K::Output> {
        self.add_sink_node(name, factory, single).0
    }

    fn add_sink_node<K: Sink<Input = B>>(
        self,
        name: String,
        factory: Factory<K>,
        single: bool,
    ) -> (SinkHandle<K::Output>, NodeId) {
        let slot: ResultSlot<K::Output> = Arc::new(Mutex::new(Vec::new()));
        let id = self.inner.borrow_mut().add(
            Node {
                name,
                kind: NodeKind::Sink,
                parallelism: None,
                single,
            },
            Box::new(SinkRunner {
                factory,
                results: slot.clone(),
            }),
        );
        self.connect(id, 0);
        (SinkHandle { slot }, id)
    }
}

impl<B: Batch + Clone> StreamCore<B> {
    /// Sends every batch to every instance of the next operator.
    pub fn broadcast(mut self) -> Self {
        self.inner.borrow_mut().set_cloneable::<B>(self.node);
        self.partitioning = Partitioning::Broadcast;
        self
    }
}
