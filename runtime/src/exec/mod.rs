//! The executor: expands the logical graph into instances and edges, runs every instance as a
//! task on tokio, and returns a report or the first error.
//!
//! # Lifecycle
//!
//! - **Plan**: validate; give every node its parallelism; create one edge per pair of connected
//!   instances (instance *i* → *i* for a forward edge between equal parallelisms, all pairs
//!   otherwise); register every instance's metrics and every edge's probe.
//! - **Run**: every instance is a task in one `JoinSet` owned by the run (no detached tasks), each
//!   inside a `tracing` span naming its operator and instance.
//! - **End**: the run ends when every task has returned. End-of-stream flows downstream from the
//!   sources; a finished or failed consumer closes its edges, which releases its producers
//!   upstream.
//! - **Failure**: the first error or panic aborts every other task. Errors caused by that abort
//!   (a disconnected input) are secondary: the reported error is the first primary one, naming the
//!   operator and instance where it happened.

pub(crate) mod driver;
#[cfg(test)]
mod hook_tests;
mod inputs;
mod lossy;
pub(crate) mod outputs;
pub(crate) mod runners;

pub(crate) use runners::{OperatorRunner, SinkRunner, SourceRunner};

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::batch::Batch;
use crate::channel::{edge, EdgeConfig, EdgeProbe};
use crate::dead_letter::DeadLetter;
use crate::error::{ErrorKind, OperatorError, RunError};
use crate::graph::{AnyBox, LogicalGraph, OutPort, Partitioning};
use crate::metrics::{EdgeEntry, InstanceEntry, InstanceMetrics, NodeEntry, Registry, RunReport};
use crate::operator::{InputPort, InstanceInfo};
use crate::overflow::{Overflow, OverflowCounter};
use crate::pipeline::PipelineConfig;

/// Creates an edge of batch type `B`, erased for the planner: `(Outlet<B>, Inlet<B>, probe)`.
pub(crate) fn make_edge_of<B: Batch>(config: EdgeConfig) -> (AnyBox, AnyBox, EdgeProbe) {
    let (outlet, inlet) = edge::<B>(config);
    let probe = outlet.probe();
    (Box::new(outlet), Box::new(inlet), probe)
}

pub(crate) type InstanceFuture = Pin<Box<dyn Future<Output = Result<(), OperatorError>> + Send>>;

/// A request to stop reading, shared by the run and its handles. Sources check it before each
/// poll; the rest of the pipeline then drains normally.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// Asks every source to stop reading and end its stream.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The wiring of one instance: its edges, already created, type-erased until its runner
/// (which knows the types) takes them.
pub(crate) struct Wiring {
    pub(crate) info: InstanceInfo,
    pub(crate) inputs: Vec<(InputPort, AnyBox)>,
    /// One entry per logical edge leaving the main output.
    pub(crate) outputs: Vec<OutWiring>,
    /// One entry per logical edge leaving the dead-letter port.
    pub(crate) dead_outputs: Vec<OutWiring>,
    pub(crate) metrics: Arc<InstanceMetrics>,
}

/// The physical edges of one logical out-edge of one instance.
pub(crate) struct OutWiring {
    pub(crate) partitioning: Partitioning,
    pub(crate) outlets: Vec<AnyBox>,
    /// A `PartitionerFactory<B>` for custom partitioning.
    pub(crate) partitioner: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// The edge's overflow policy, when it is lossy.
    pub(crate) overflow: Option<OverflowWiring>,
}

/// A lossy edge's policy, codec and, for `Spill`, one directory per outlet.
pub(crate) struct OverflowWiring {
    pub(crate) policy: Overflow,
    /// An `Arc<dyn SpillCodec<B>>` for the producer's batch type.
    pub(crate) codec: Option<Arc<dyn std::any::Any + Send + Sync>>,
    pub(crate) spill_dirs: Vec<PathBuf>,
}

/// The spill directory of one physical edge under `dir`: named after both ends, so a pipeline
/// started again finds what the previous run left (characters outside `[A-Za-z0-9._-]` in
/// operator names become `_`).
fn spill_dir(dir: &Path, from: &str, i: usize, to: &str, j: usize) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir.join(format!("{}-{i}-to-{}-{j}", clean(from), clean(to)))
}

/// Type-erased operator construction, implemented once per operator position.
pub(crate) trait Runner: Send {
    /// Creates an edge carrying this node's output type: `(Outlet<B>, Inlet<B>, probe)`.
    fn make_edge(&self, config: EdgeConfig) -> Option<(AnyBox, AnyBox, EdgeProbe)>;

    /// Builds one instance's task.
    fn instantiate(
        &mut self,
        wiring: Wiring,
        ctx: driver::DriverCtx,
        clone_fn: Option<&AnyBox>,
    ) -> Result<InstanceFuture, OperatorError>;
}

/// A planned run: every task built, nothing started.
pub(crate) struct Prepared {
    pub(crate) registry: Arc<Registry>,
    tasks: Vec<(String, usize, InstanceFuture)>,
}

pub(crate) fn prepare(
    mut graph: LogicalGraph,
    config: &PipelineConfig,
    stop: Arc<StopSignal>,
) -> Result<Prepared, RunError> {
    graph.validate()?;
    let epoch = Instant::now();
    let node_ids: Vec<_> = graph.graph.node_indices().collect();
    let parallelism: Vec<usize> = node_ids
        .iter()
        .map(|&n| {
            graph.graph[n]
                .parallelism
                .unwrap_or(config.parallelism)
                .max(1)
        })
        .collect();

    let mut wirings: Vec<Vec<Wiring>> = node_ids
        .iter()
        .map(|&n| {
            let node = &graph.graph[n];
            let name: Arc<str> = Arc::from(node.name.as_str());
            (0..parallelism[n.index()])
                .map(|i| {
                    let metrics = Arc::new(InstanceMetrics::new(epoch));
                    Wiring {
                        info: InstanceInfo {
                            name: name.clone(),
                            instance: i,
                            parallelism: parallelism[n.index()],
                            batch_rows: config.batch_rows,
                            overflow: OverflowCounter::new(metrics.clone()),
                        },
                        inputs: Vec::new(),
                        outputs: Vec::new(),
                        dead_outputs: Vec::new(),
                        metrics,
                    }
                })
                .collect()
        })
        .collect();

    let mut edges = Vec::new();
    let edge_ids: Vec<_> = graph.graph.edge_indices().collect();
    for e in edge_ids {
        let (u, v) = graph
            .graph
            .edge_endpoints(e)
            .expect("edge index from this graph");
        let spec = &graph.graph[e];
        let cfg = spec.config.unwrap_or(config.edge);
        let (pu, pv) = (parallelism[u.index()], parallelism[v.index()]);
        let one_to_one =
            spec.partitioning == Partitioning::Forward && spec.partitioner.is_none() && pu == pv;
        let partitioning = match spec.partitioning {
            Partitioning::Forward if !one_to_one => Partitioning::Rebalance,
            p => p,
        };
        let dead_port = spec.from_port == OutPort::DeadLetters;
        let lossy = spec.overflow.as_ref().filter(|o| o.policy.is_lossy_edge());
        let (from_name, to_name) = (graph.graph[u].name.clone(), graph.graph[v].name.clone());
        for (i, wiring) in wirings[u.index()].iter_mut().enumerate() {
            let mut out = OutWiring {
                partitioning,
                outlets: Vec::new(),
                partitioner: spec.partitioner.as_ref().map(|(_, f)| f.clone()),
                overflow: lossy.map(|o| OverflowWiring {
                    policy: o.policy.clone(),
                    codec: o.codec.clone(),
                    spill_dirs: Vec::new(),
                }),
            };
            let targets: Vec<usize> = if one_to_one {
                vec![i]
            } else {
                (0..pv).collect()
            };
            for j in targets {
                if let Some(o) = &mut out.overflow {
                    if let Overflow::Spill { dir, .. } = &o.policy {
                        o.spill_dirs
                            .push(spill_dir(dir, &from_name, i, &to_name, j));
                    }
                }
                let (outlet, inlet, probe) = if dead_port {
                    make_edge_of::<Vec<DeadLetter>>(cfg)
                } else {
                    graph.graph[u]
                        .runner
                        .make_edge(cfg)
                        .expect("validated: only nodes with outputs have out-edges")
                };
                out.outlets.push(outlet);
                edges.push((u.index(), i, v.index(), j, spec.port, inlet, probe));
            }
            if dead_port {
                wiring.dead_outputs.push(out);
            } else {
                wiring.outputs.push(out);
            }
        }
    }
    let mut edge_entries = Vec::with_capacity(edges.len());
    for (u, i, v, j, port, inlet, probe) in edges {
        wirings[v][j].inputs.push((port, inlet));
        edge_entries.push(EdgeEntry {
            from: u,
            from_instance: i,
            to: v,
            to_instance: j,
            probe,
        });
    }

    let upstream = graph.upstream();
    let mut nodes = Vec::new();
    let mut instances = Vec::new();
    let mut tasks = Vec::new();
    for (&n, node_wirings) in node_ids.iter().zip(wirings) {
        let node = &mut graph.graph[n];
        nodes.push(NodeEntry {
            name: node.name.clone(),
            kind: node.kind,
            parallelism: parallelism[n.index()],
            upstream: upstream[n.index()].clone(),
        });
        for wiring in node_wirings {
            let instance = wiring.info.instance;
            let metrics = wiring.metrics.clone();
            instances.push(InstanceEntry {
                node: n.index(),
                instance,
                metrics: metrics.clone(),
            });
            let ctx = driver::DriverCtx {
                info: wiring.info.clone(),
                metrics,
                linger: config.linger,
                yield_every: config.yield_every,
                stop: stop.clone(),
            };
            let fut = node
                .runner
                .instantiate(wiring, ctx, node.clone_fn.as_ref())
                .map_err(|error| RunError::Operator {
                    operator: node.name.clone(),
                    instance,
                    error,
                })?;
            tasks.push((node.name.clone(), instance, fut));
        }
    }
    let registry = Arc::new(Registry {
        pipeline: graph.name.clone(),
        epoch,
        nodes,
        instances,
        edges: edge_entries,
    });
    Ok(Prepared { registry, tasks })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

impl Prepared {
    /// Runs every task on the current tokio runtime until all finish or one fails.
    pub(crate) async fn run(self) -> Result<RunReport, RunError> {
        let Prepared { registry, tasks } = self;
        let mut set = JoinSet::new();
        let mut names = HashMap::new();
        for (name, instance, fut) in tasks {
            let span = tracing::info_span!("instance", operator = %name, instance);
            let handle = set.spawn(fut.instrument(span));
            names.insert(handle.id(), (name, instance));
        }
        tracing::debug!(pipeline = %registry.pipeline, tasks = names.len(), "run started");
        let mut errors: Vec<RunError> = Vec::new();
        let mut primary_seen = false;
        while let Some(joined) = set.join_next_with_id().await {
            let failure = match joined {
                Ok((_, Ok(()))) => None,
                Ok((id, Err(error))) => {
                    let (operator, instance) = names[&id].clone();
                    Some(RunError::Operator {
                        operator,
                        instance,
                        error,
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
