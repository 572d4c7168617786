//! The executor: builds one task per instance (or chain) of the physical plan, runs them on
//! tokio, and returns a report or the first error.
//!
//! # Lifecycle
//!
//! - **Plan**: validate and expand the logical graph (see the `plan` module): every node's
//!   parallelism, its chains, one edge per pair of connected instances, every instance's wiring;
//!   then build each task from its runner, the typed side of the erased wiring.
//! - **Run**: every instance is a task in one `JoinSet` owned by the run (no detached tasks), each
//!   inside a `tracing` span naming its operator and instance.
//! - **End**: the run ends when every task has returned. End-of-stream flows downstream from the
//!   sources; a finished or failed consumer closes its edges, which releases its producers
//!   upstream, whatever they wait for: credit, data (a quiet source), input, their own
//!   readiness or their asynchronous work. Every such wait also watches the instance's edges.
//! - **Checkpoints** (when on): the coordinator (`checkpoint.rs`) runs in the same loop that
//!   joins the tasks, so it ends with the run; its protocol is written in that module.
//! - **Failure**: the first error or panic aborts every other task. Errors caused by that abort
//!   (a disconnected input) are secondary: the reported error is the first primary one, naming the
//!   operator and instance where it happened.

pub(crate) mod chain;
pub(crate) mod checkpoint;
pub(crate) mod driver;
mod inputs;
mod lossy;
pub(crate) mod outputs;
pub(crate) mod runners;
mod source_time;
#[cfg(test)]
mod tests;
pub(crate) mod workers;

pub(crate) use runners::{OperatorRunner, SinkRunner, SourceRunner};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::PipelineConfig;
use crate::error::{ErrorKind, OperatorError, RunError};
use crate::event_time::AlignGroups;
use crate::graph::LogicalGraph;
use crate::metrics::{InstanceMetrics, Registry, RunReport};
use crate::operator::InstanceInfo;
use crate::plan::{self, AnyBox, EdgeMaker, Plan, Wiring};
use crate::stop::StopSignal;

pub(crate) type InstanceFuture = Pin<Box<dyn Future<Output = Result<(), OperatorError>> + Send>>;

/// Type-erased operator construction, implemented once per operator position.
pub(crate) trait Runner: Send {
    /// How to create an edge carrying this node's output type (`None` for a sink).
    fn edge_maker(&self) -> Option<EdgeMaker>;

    /// Builds one instance's task.
    fn instantiate(
        &mut self,
        wiring: Wiring,
        ctx: driver::DriverCtx,
        clone_fn: Option<&AnyBox>,
    ) -> Result<InstanceFuture, OperatorError>;

    /// For the last operator of a chain: its edges, as an erased `Box<dyn Downstream<Out>>`.
    fn ports(
        &mut self,
        _wiring: &mut Wiring,
        _clone_fn: Option<&AnyBox>,
    ) -> Result<AnyBox, OperatorError> {
        Err(OperatorError::internal("this operator cannot end a chain"))
    }

    /// For a chained operator: wraps it around `down` (an erased `Box<dyn Downstream<Out>>`),
    /// returning an erased `Box<dyn Downstream<In>>`.
    fn chain(
        &mut self,
        _info: &InstanceInfo,
        _metrics: Arc<InstanceMetrics>,
        _producer: Arc<InstanceMetrics>,
        _down: AnyBox,
        _checkpoints: Option<Arc<checkpoint::Checkpoints>>,
    ) -> Result<AnyBox, OperatorError> {
        Err(OperatorError::internal("this operator cannot be chained"))
    }

    /// For the first operator of a chain: its task, sending into `down` (an erased
    /// `Box<dyn Downstream<Out>>`) instead of edges.
    fn instantiate_head(
        &mut self,
        _wiring: Wiring,
        _ctx: driver::DriverCtx,
        _down: AnyBox,
    ) -> Result<InstanceFuture, OperatorError> {
        Err(OperatorError::internal(
            "this operator cannot start a chain",
        ))
    }

    /// For a source: applies a watermark strategy (a `WatermarkStrategy<Out>`). Hands it back
    /// if this node is not a source of that batch type.
    fn set_watermarks(&mut self, strategy: AnyBox) -> Result<(), AnyBox> {
        Err(strategy)
    }
}

/// What the executor keeps of one node of the logical graph: its typed runner, and, when its
/// stream has several consumers, the `fn(&B) -> B` that copies its output batches.
pub(crate) struct NodeRunner {
    pub(crate) runner: Box<dyn Runner>,
    pub(crate) clone_fn: Option<AnyBox>,
}

/// A planned run: every task built, nothing started.
pub(crate) struct Prepared {
    pub(crate) registry: Arc<Registry>,
    tasks: Vec<(String, usize, InstanceFuture)>,
    /// The checkpoint coordinator, when checkpoints are on.
    coordinator: Option<checkpoint::Coordinator>,
}

impl Prepared {
    /// The run's checkpoints, when they are on.
    pub(crate) fn checkpoints(&self) -> Option<Arc<checkpoint::Checkpoints>> {
        self.coordinator.as_ref().map(|c| c.shared().clone())
    }
}

/// Which nodes see checkpoint barriers: those reached from a source through main or
/// dead-letter streams (a dead-letter port passes them on behind its letters).
fn barrier_nodes(graph: &LogicalGraph) -> Vec<bool> {
    use petgraph::visit::EdgeRef;
    let mut seen = vec![false; graph.graph.node_count()];
    let mut stack: Vec<_> = graph
        .graph
        .node_indices()
        .filter(|&n| graph.graph[n].kind == crate::metrics::NodeKind::Source)
        .collect();
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n.index()], true) {
            continue;
        }
        for e in graph.graph.edges_directed(n, petgraph::Direction::Outgoing) {
            stack.push(e.target());
        }
    }
    seen
}

/// Opens the checkpoint coordinator of a run of `graph` at `parallelism`.
fn coordinator(
    graph: &LogicalGraph,
    parallelism: &[usize],
    reached: &[bool],
    config: &crate::config::CheckpointConfig,
) -> Result<checkpoint::Coordinator, RunError> {
    use petgraph::visit::EdgeRef;
    let g = &graph.graph;
    let mut names = std::collections::HashSet::new();
    for n in g.node_weights() {
        if !names.insert(n.name.as_str()) {
            return Err(RunError::Checkpoint(format!(
                "two operators are named `{}`: a checkpoint names state by operator, so give \
                 every operator of a checkpointed pipeline its own name",
                n.name
            )));
        }
    }
    let mut parts: Vec<String> = g
        .node_weights()
        .map(|n| format!("{:?}:{}", n.kind, n.name))
        .collect();
    for e in g.edge_references() {
        parts.push(format!(
            "{}->{}:{}:{:?}",
            g[e.source()].name,
            g[e.target()].name,
            e.weight().port,
            e.weight().from_port
        ));
    }
    let plan = checkpoint::CheckpointPlan {
        fingerprint: checkpoint::fingerprint(parts),
        operators: g
            .node_indices()
            .map(|n| (g[n].name.clone(), parallelism[n.index()]))
            .collect(),
        sources: g
            .node_indices()
            .filter(|&n| g[n].kind == crate::metrics::NodeKind::Source)
            .map(|n| (g[n].name.clone(), parallelism[n.index()]))
            .collect(),
        instances: g
            .node_indices()
            .filter(|n| reached[n.index()])
            .map(|n| parallelism[n.index()])
            .sum(),
    };
    checkpoint::Coordinator::open(config, plan, false).map_err(RunError::Checkpoint)
}

/// Plans a run of `graph` and builds every instance's task. `runners` has one entry per node,
/// by node index.
///
/// # Errors
///
/// An invalid graph, or the first operator that could not be built (naming it).
pub(crate) fn prepare(
    graph: LogicalGraph,
    mut runners: Vec<NodeRunner>,
    config: &PipelineConfig,
    stop: Arc<StopSignal>,
) -> Result<Prepared, RunError> {
    let makers: Vec<Option<EdgeMaker>> = runners.iter().map(|n| n.runner.edge_maker()).collect();
    let Plan {
        registry,
        mut wirings,
        chains,
        parallelism,
    } = plan::expand(&graph, &makers, config, stop.clone())?;
    let names: Vec<String> = graph.graph.node_weights().map(|n| n.name.clone()).collect();
    let reached = barrier_nodes(&graph);
    let coordinator = match &config.checkpoint {
        Some(c) => Some(coordinator(&graph, &parallelism, &reached, c)?),
        None => None,
    };
    if let Some(c) = &coordinator {
        let _ = registry.checkpoints.set(c.shared().stats.clone());
        for (n, instances) in wirings.iter_mut().enumerate() {
            for w in instances.iter_mut().flatten() {
                w.info.checkpointing = reached[n];
            }
        }
    }
    let scope = RunScope {
        config,
        stop: &stop,
        align: Arc::new(AlignGroups::default()),
        checkpoints: coordinator.as_ref().map(|c| c.shared().clone()),
        reached: &reached,
    };
    let mut tasks = Vec::new();
    for chain in &chains {
        let head = chain[0];
        for instance in 0..parallelism[head] {
            let fut = build_task(&names, &mut runners, chain, instance, &mut wirings, &scope)?;
            tasks.push((names[head].clone(), instance, fut));
        }
    }
    Ok(Prepared {
        registry,
        tasks,
        coordinator,
    })
}

/// What every task of one run shares.
struct RunScope<'a> {
    config: &'a PipelineConfig,
    stop: &'a Arc<StopSignal>,
    /// The run's watermark alignment groups.
    align: Arc<AlignGroups>,
    /// The run's checkpoints, when they are on.
    checkpoints: Option<Arc<checkpoint::Checkpoints>>,
    /// Per node: whether it sees checkpoint barriers.
    reached: &'a [bool],
}

impl RunScope<'_> {
    fn checkpoints(&self, node: usize) -> Option<Arc<checkpoint::Checkpoints>> {
        self.checkpoints.clone().filter(|_| self.reached[node])
    }
}

/// Builds the task of one instance of a chain (a single node is a chain of one).
fn build_task(
    names: &[String],
    runners: &mut [NodeRunner],
    chain: &[usize],
    instance: usize,
    slots: &mut [Vec<Option<Wiring>>],
    scope: &RunScope<'_>,
) -> Result<InstanceFuture, RunError> {
    let fail = |n: usize| {
        let name = names[n].clone();
        move |error| RunError::Operator {
            operator: name,
            instance,
            error,
        }
    };
    let head = chain[0];
    let take = |slots: &mut [Vec<Option<Wiring>>], n: usize| {
        slots[n][instance]
            .take()
            .expect("each instance's wiring is used once")
    };
    let mut head_wiring = take(slots, head);
    let ctx = driver::DriverCtx {
        sink_slot: head_wiring.sink_slot.clone(),
        info: head_wiring.info.clone(),
        metrics: head_wiring.metrics.clone(),
        linger: scope.config.linger,
        marker_interval: scope.config.latency_marker_interval,
        edge_target: scope.config.edge_target_time,
        yield_every: scope.config.yield_every,
        stop: scope.stop.clone(),
        align: scope.align.clone(),
        checkpoints: scope.checkpoints(head),
    };
    if chain.len() == 1 {
        let node = &mut runners[head];
        return node
            .runner
            .instantiate(head_wiring, ctx, node.clone_fn.as_ref())
            .map_err(fail(head));
    }
    // Build from the tail back: the tail's edges, then each operator around what follows it.
    let tail = *chain.last().expect("a chain has a tail");
    let mut tail_wiring = take(slots, tail);
    let node = &mut runners[tail];
    let mut down = node
        .runner
        .ports(&mut tail_wiring, node.clone_fn.as_ref())
        .map_err(fail(tail))?;
    let mut member_wiring = Some(tail_wiring);
    for k in (1..chain.len()).rev() {
        let member = chain[k];
        let wiring = match member_wiring.take() {
            Some(w) => w,
            None => take(slots, member),
        };
        let producer_metrics = if k == 1 {
            head_wiring.metrics.clone()
        } else {
            slots[chain[k - 1]][instance]
                .as_ref()
                .expect("producer wiring still in place")
                .metrics
                .clone()
        };
        down = runners[member]
            .runner
            .chain(
                &wiring.info,
                wiring.metrics.clone(),
                producer_metrics,
                down,
                scope.checkpoints(member),
            )
            .map_err(fail(member))?;
    }
    // The head keeps its inputs; its outputs are the chain.
    head_wiring.outputs.clear();
    runners[head]
        .runner
        .instantiate_head(head_wiring, ctx, down)
        .map_err(fail(head))
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

impl Prepared {
    /// Runs every task until all finish or one fails: on the current tokio runtime, or, given
    /// worker handles, task `i` (in plan order) on worker `i mod workers` for the whole run —
    /// or, with `by_instance`, the task of instance `k` on worker `k mod workers`.
    pub(crate) async fn run(
        self,
        workers: Option<(&[tokio::runtime::Handle], bool)>,
    ) -> Result<RunReport, RunError> {
        let Prepared {
            registry,
            tasks,
            mut coordinator,
        } = self;
        let mut set = JoinSet::new();
        let mut names = HashMap::new();
        for (i, (name, instance, fut)) in tasks.into_iter().enumerate() {
            let span = tracing::info_span!("instance", operator = %name, instance);
            let fut = fut.instrument(span);
            let handle = match workers {
                Some((workers, by_instance)) if !workers.is_empty() => {
                    let k = if by_instance { instance } else { i };
                    set.spawn_on(fut, &workers[k % workers.len()])
                }
                _ => set.spawn(fut),
            };
            names.insert(handle.id(), (name, instance));
        }
        tracing::debug!(pipeline = %registry.pipeline, tasks = names.len(), "run started");
        let mut errors: Vec<RunError> = Vec::new();
        let mut primary_seen = false;
        loop {
            let joined = match coordinator.as_mut() {
                Some(c) => tokio::select! {
                    biased;
                    joined = set.join_next_with_id() => joined,
                    () = c.step() => continue,
                },
                None => set.join_next_with_id().await,
            };
            let Some(joined) = joined else { break };
            let failure = match joined {
                Ok((_, Ok(()))) => None,
                Ok((id, Err(error))) => {
                    let (operator, instance) = names[&id].clone();
                    Some(match error.origin.clone() {
                        Some(origin) if origin.panicked => RunError::Panic {
                            operator: origin.operator,
                            instance: origin.instance,
                            message: error.message().to_string(),
                        },
                        Some(origin) => RunError::Operator {
                            operator: origin.operator,
                            instance: origin.instance,
                            error,
                        },
                        None => RunError::Operator {
                            operator,
                            instance,
                            error,
                        },
                    })
                }
                Err(join_error) if join_error.is_cancelled() => None,
                Err(join_error) => {
                    let (operator, instance) = names[&join_error.id()].clone();
                    let message = match join_error.try_into_panic() {
                        Ok(payload) => panic_message(payload.as_ref()),
                        Err(e) => e.to_string(),
                    };
                    Some(RunError::Panic {
                        operator,
                        instance,
                        message,
                    })
                }
            };
            if let Some(err) = failure {
                let secondary = matches!(
                    &err,
                    RunError::Operator { error, .. } if error.kind() == ErrorKind::Cancelled
                );
                if !primary_seen && !secondary {
                    primary_seen = true;
                    tracing::debug!(error = %err, "run failed; cancelling");
                }
                if errors.is_empty() {
                    set.abort_all();
                }
                errors.push(err);
            }
        }
        if errors.is_empty() {
            return Ok(registry.snapshot(true));
        }
        let first_primary = errors.iter().position(|e| {
            !matches!(e, RunError::Operator { error, .. } if error.kind() == ErrorKind::Cancelled)
        });
        Err(errors.swap_remove(first_primary.unwrap_or(0)))
    }
}
