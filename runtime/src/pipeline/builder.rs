//! [`Pipeline`]: the user-facing builder, where sources are added and runs start.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use super::draft::{Draft, Shared};
use super::handle::RunHandle;
use super::stream::StreamCore;
use crate::config::{PipelineConfig, Placement};
use crate::error::{GraphError, RunError};
use crate::exec::runners::{single, Factory};
use crate::exec::workers::WorkerPool;
use crate::exec::{self, NodeRunner, SourceRunner};
use crate::graph::{LogicalGraph, Node};
use crate::metrics::{NodeKind, RunReport};
use crate::operator::{InstanceInfo, Source};
use crate::stop::StopSignal;

/// A dataflow pipeline under construction. Add sources with [`source`](Self::source), chain
/// operators on the returned streams, end every stream in a sink, then [`run`](Self::run).
///
/// # Examples
///
/// ```
/// use std::task::{Context, Poll};
/// use weir_runtime::{operator::{Output, Sink, Source, SourceStatus}, OperatorError, Pipeline};
///
/// struct Upto(u64, u64);
/// impl Source for Upto {
///     type Output = Vec<u64>;
///     fn poll_produce(&mut self, _: &mut Context<'_>, out: &mut Output<Vec<u64>>)
///         -> Poll<Result<SourceStatus, OperatorError>> {
///         while self.0 < self.1 && !out.is_full() { out.push(self.0); self.0 += 1; }
///         Poll::Ready(Ok(if self.0 == self.1 { SourceStatus::Done } else { SourceStatus::Continue }))
///     }
/// }
/// struct Sum(u64);
/// impl Sink for Sum {
///     type Input = Vec<u64>;
///     type Output = u64;
///     fn on_batch(&mut self, _: usize, b: Vec<u64>) -> Result<(), OperatorError> {
///         self.0 += b.iter().sum::<u64>(); Ok(())
///     }
///     fn finish(&mut self) -> Result<u64, OperatorError> { Ok(self.0) }
/// }
///
/// let mut p = Pipeline::new("sum");
/// let total = p.source("numbers", Upto(0, 10_000)).sink("sum", Sum(0));
/// let report = p.run().unwrap();
/// assert_eq!(total.take(), Some(49_995_000));
/// assert_eq!(report.operators[0].rows_out, 10_000);
/// ```
pub struct Pipeline {
    name: String,
    inner: Shared,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline with default settings.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_config(name, PipelineConfig::default())
    }

    /// An empty pipeline with the given settings.
    pub fn with_config(name: impl Into<String>, config: PipelineConfig) -> Self {
        let name = name.into();
        Self {
            inner: Rc::new(RefCell::new(Draft::new(name.clone(), config))),
            name,
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings, to adjust before running.
    pub fn config_mut(&mut self) -> std::cell::RefMut<'_, PipelineConfig> {
        std::cell::RefMut::map(self.inner.borrow_mut(), |b| &mut b.config)
    }

    /// Adds a source given as one value (one instance).
    pub fn source<S: Source>(
        &mut self,
        name: impl Into<String>,
        source: S,
    ) -> StreamCore<S::Output> {
        let name = name.into();
        let factory = single(&name, source);
        self.source_with_factory(name, factory, true)
    }

    /// Adds a source built per instance by `factory`, so it can run in parallel.
    pub fn source_with<S: Source>(
        &mut self,
        name: impl Into<String>,
        factory: impl FnMut(&InstanceInfo) -> S + Send + 'static,
    ) -> StreamCore<S::Output> {
        let mut factory = factory;
        self.source_with_factory(name.into(), Box::new(move |info| Ok(factory(info))), false)
    }

    fn source_with_factory<S: Source>(
        &mut self,
        name: String,
        factory: Factory<S>,
        single: bool,
    ) -> StreamCore<S::Output> {
        let id = self.inner.borrow_mut().add(
            Node {
                name,
                kind: NodeKind::Source,
                parallelism: None,
                single,
            },
            Box::new(SourceRunner {
                factory,
                watermarks: None,
            }),
        );
        StreamCore::new(self.inner.clone(), id)
    }

    /// Checks the graph without running it.
    ///
    /// # Errors
    ///
    /// See [`LogicalGraph::validate`].
    pub fn validate(&self) -> Result<(), GraphError> {
        self.inner.borrow().graph.validate()
    }

    /// The logical graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        self.inner.borrow().graph.to_dot()
    }

    fn take(&self) -> Result<(LogicalGraph, Vec<NodeRunner>, PipelineConfig), GraphError> {
        self.inner.borrow_mut().take(&self.name)
    }

    /// Runs the pipeline to completion on new worker threads, one per core (or
    /// [`PipelineConfig::workers`]) placed as [`PipelineConfig::placement`] says, blocking the
    /// calling thread.
    ///
    /// # Errors
    ///
    /// An invalid graph, or the first operator error or panic (naming the operator and instance),
    /// after the rest of the run has been cancelled.
    ///
    /// # Panics
    ///
    /// Must not be called from within an async context (use [`run_async`](Self::run_async)).
    pub fn run(self) -> Result<RunReport, RunError> {
        self.spawn()?.join()
    }

    /// Runs the pipeline that `build` makes, and, when a run fails, builds it again and runs it
    /// from its latest checkpoint, as its configuration's
    /// [`RestartStrategy`](crate::RestartStrategy) allows
    /// ([`CheckpointConfig::restart`](crate::CheckpointConfig::restart)): up to `attempts`
    /// restarts, each after `backoff`. The report counts the restarts
    /// ([`CheckpointReport::restarts`](crate::CheckpointReport::restarts)).
    ///
    /// A run consumes its graph (the operators are moved into its tasks), so a restart needs a
    /// new one: `build` is called once per attempt and must build the same job every time
    /// (the checkpoint's fingerprint is checked). Whatever reads the results (a sink's
    /// handle) is the one of the last attempt; `build` can hand it out through a variable it
    /// captures.
    ///
    /// # Errors
    ///
    /// The last attempt's error; errors that a restart cannot cure (an invalid graph, a
    /// checkpoint that does not fit the job, an executor that cannot start) are returned at
    /// once.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    pub fn run_restartable(mut build: impl FnMut() -> Pipeline) -> Result<RunReport, RunError> {
        let mut restarts = 0u32;
        loop {
            let mut pipeline = build();
            let strategy = {
                let mut config = pipeline.config_mut();
                let checkpoint = config.checkpoint.as_mut();
                if restarts > 0 {
                    if let Some(c) = checkpoint {
                        c.restore = true;
                    }
                }
                config
                    .checkpoint
                    .as_ref()
                    .map(|c| c.restart)
                    .unwrap_or_default()
            };
            match pipeline.run() {
                Ok(mut report) => {
                    if let Some(c) = report.checkpoints.as_mut() {
                        c.restarts = restarts;
                    }
                    return Ok(report);
                }
                Err(e @ (RunError::Operator { .. } | RunError::Panic { .. }))
                    if restarts < strategy.attempts =>
                {
                    restarts += 1;
                    tracing::warn!(error = %e, restart = restarts, "run failed; restarting from the latest checkpoint");
                    std::thread::sleep(strategy.backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the pipeline on the caller's tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_async(self) -> Result<RunReport, RunError> {
        self.prepare()?.run(None).await
    }

    /// Plans the run and builds every task, to run on the caller's runtime.
    pub(crate) fn prepare(self) -> Result<exec::Prepared, RunError> {
        let (graph, runners, config) = self.take()?;
        exec::prepare(graph, runners, &config, Arc::new(StopSignal::default()))
    }

    /// Starts the pipeline on its own runtime thread and returns a handle to watch, stop and
    /// join it. Use this to consume a pipeline's output from the calling thread.
    ///
    /// # Errors
    ///
    /// An invalid graph, or a runtime that could not be started.
    pub fn spawn(self) -> Result<RunHandle, RunError> {
        let (graph, runners, config) = self.take()?;
        let stop = Arc::new(StopSignal::default());
        let prepared = exec::prepare(graph, runners, &config, stop.clone())?;
        let registry = prepared.registry.clone();
        let checkpoints = prepared.checkpoints();
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let name = format!("weir-{}", self.name);
        let thread = std::thread::Builder::new().name(format!("weir-run-{}", self.name));
        let thread = match config.placement {
            Placement::WorkStealing => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name(name)
                    // Time for lingering batches and timers; IO for sources and sinks that use
                    // sockets.
                    .enable_all()
                    .build()
                    .map_err(RunError::Executor)?;
                thread.spawn(move || {
                    let result = runtime.block_on(prepared.run(None));
                    // Tasks are all joined by now; shut down without waiting on anything else.
                    runtime.shutdown_background();
                    result
                })
            }
            placement @ (Placement::PerWorker | Placement::Colocated) => {
                let by_instance = placement == Placement::Colocated;
                let pool = WorkerPool::start(workers, &name, config.pin_workers)
                    .map_err(RunError::Executor)?;
                // The run's own thread only coordinates: it starts the tasks on the workers and
                // joins them.
                let coordinator = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(RunError::Executor)?;
                thread.spawn(move || {
                    let result =
                        coordinator.block_on(prepared.run(Some((pool.handles(), by_instance))));
                    coordinator.shutdown_background();
                    drop(pool);
                    result
                })
            }
        }
        .map_err(RunError::Executor)?;
        Ok(RunHandle {
            thread: Some(thread),
            registry,
            stop,
            checkpoints,
        })
    }
}
