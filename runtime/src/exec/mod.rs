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
//!   upstream, whatever they wait for: credit, data (a quiet source), input, their own
//!   readiness or their asynchronous work. Every such wait also watches the instance's edges.
//! - **Failure**: the first error or panic aborts every other task. Errors caused by that abort
//!   (a disconnected input) are secondary: the reported error is the first primary one, naming the
//!   operator and instance where it happened.

pub(crate) mod chain;
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
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tracing::Instrument;

use crate::barrier::{Barriers, Ledger};
use crate::batch::Batch;
use crate::channel::{edge, EdgeConfig, EdgeProbe};
use crate::dead_letter::DeadLetter;
use crate::error::{ErrorKind, OperatorError, RunError};
use crate::graph::{AnyBox, LogicalGraph, OutPort, Partitioning};
use crate::metrics::NodeKind;
use crate::metrics::{EdgeEntry, InstanceEntry, InstanceMetrics, NodeEntry, Registry, RunReport};
use crate::operator::{DownstreamProbe, InputPort, InstanceInfo};
use crate::overflow::{Overflow, OverflowCounter};
use crate::stop::StopSignal;
use crate::config::{Chaining, PipelineConfig};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// Creates an edge of batch type `B`, erased for the planner: `(Outlet<B>, Inlet<B>, probe)`.
pub(crate) fn make_edge_of<B: Batch>(config: EdgeConfig) -> (AnyBox, AnyBox, EdgeProbe) {
    let (outlet, inlet) = edge::<B>(config);
    let probe = outlet.probe();
    (Box::new(outlet), Box::new(inlet), probe)
}

pub(crate) type InstanceFuture = Pin<Box<dyn Future<Output = Result<(), OperatorError>> + Send>>;

/// The wiring of one instance: its edges, already created, type-erased until its runner
/// (which knows the types) takes them.
pub(crate) struct Wiring {
    pub(crate) info: InstanceInfo,
    /// Input edges: port, `Inlet<B>`, and the source instances whose barriers it can carry.
    pub(crate) inputs: Vec<(InputPort, AnyBox, Arc<[u32]>)>,
    /// For a sink instance reachable from a source: the run's barrier ledger and its index in it.
    pub(crate) sink_slot: Option<(Arc<Ledger>, usize)>,
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
            let node = &graph.graph[n];
            let default = if node.single { 1 } else { config.parallelism };
            node.parallelism.unwrap_or(default).max(1)
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
                            max_batch_bytes: config.default_edge().max_bytes,
                            overflow: OverflowCounter::new(metrics.overflow.clone()),
                            downstream: DownstreamProbe::default(),
                            barriers: Barriers::default(),
                        },
                        inputs: Vec::new(),
                        sink_slot: None,
                        outputs: Vec::new(),
                        dead_outputs: Vec::new(),
                        metrics,
                    }
                })
                .collect()
        })
        .collect();

    let chained_from = chain_links(&graph, &parallelism, config.chaining);
    let mut edges = Vec::new();
    let mut main_edges = Vec::new();
    let edge_ids: Vec<_> = graph.graph.edge_indices().collect();
    for e in edge_ids {
        let (u, v) = graph
            .graph
            .edge_endpoints(e)
            .expect("edge index from this graph");
        if chained_from[v.index()] == Some(u.index()) {
            // A chained link: the producer hands batches to the consumer by a call.
            continue;
        }
        let spec = &graph.graph[e];
        let cfg = spec.config.unwrap_or_else(|| config.default_edge());
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
                if !dead_port {
                    main_edges.push(((u.index(), i), (v.index(), j), probe.clone()));
                }
                edges.push((
                    u.index(),
                    i,
                    v.index(),
                    j,
                    spec.port,
                    inlet,
                    probe,
                    dead_port,
                ));
            }
            if dead_port {
                wiring.dead_outputs.push(out);
            } else {
                wiring.outputs.push(out);
            }
        }
    }
    let mut next_in_chain = vec![None; node_ids.len()];
    for (v, from) in chained_from.iter().enumerate() {
        if let Some(u) = from {
            next_in_chain[*u] = Some(v);
        }
    }
    let kinds: Vec<NodeKind> = node_ids.iter().map(|&n| graph.graph[n].kind).collect();
    let reach = barrier_reach(&kinds, &parallelism, &main_edges, &next_in_chain);
    let ledger = Ledger::new(reach.sinks_of_origin.clone());
    for (&(n, i), &origin) in &reach.origin_of_source {
        wirings[n][i].info.barriers = Barriers::new(origin, ledger.clone());
    }
    for (&(n, i), &slot) in &reach.sink_index {
        wirings[n][i].sink_slot = Some((ledger.clone(), slot));
    }
    let mut edge_entries = Vec::with_capacity(edges.len());
    for (u, i, v, j, port, inlet, probe, dead_port) in edges {
        // Dead-letter edges carry no barriers.
        let origins = if dead_port {
            Vec::new()
        } else {
            reach.origins_at.get(&(u, i)).cloned().unwrap_or_default()
        };
        wirings[v][j].inputs.push((port, inlet, Arc::from(origins)));
        edge_entries.push(EdgeEntry {
            from: u,
            from_instance: i,
            to: v,
            to_instance: j,
            probe,
        });
    }

    let upstream = graph.upstream();
    downstream_probes(&mut wirings, &main_edges, &next_in_chain);
    let head_of = |mut n: usize| {
        while let Some(u) = chained_from[n] {
            n = u;
        }
        n
    };
    let mut nodes = Vec::new();
    let mut instances = Vec::new();
    for &n in &node_ids {
        let node = &graph.graph[n];
        let head = head_of(n.index());
        nodes.push(NodeEntry {
            name: node.name.clone(),
            kind: node.kind,
            parallelism: parallelism[n.index()],
            upstream: upstream[n.index()].clone(),
            chained_into: (head != n.index()).then_some(head),
        });
        for wiring in &wirings[n.index()] {
            if head != n.index() {
                wiring
                    .metrics
                    .share_time_with(wirings[head][wiring.info.instance].metrics.clone());
            }
            instances.push(InstanceEntry {
                node: n.index(),
                instance: wiring.info.instance,
                metrics: wiring.metrics.clone(),
            });
        }
    }

    let mut slots: Vec<Vec<Option<Wiring>>> = wirings
        .into_iter()
        .map(|ws| ws.into_iter().map(Some).collect())
        .collect();
    let mut tasks = Vec::new();
    for &n in &node_ids {
        let head = n.index();
        if chained_from[head].is_some() {
            continue; // runs inside its chain's task
        }
        let mut chain = vec![head];
        while let Some(next) = next_in_chain[*chain.last().expect("non-empty")] {
            chain.push(next);
        }
        for instance in 0..parallelism[head] {
            let fut = build_task(
                &mut graph, &node_ids, &chain, instance, &mut slots, config, &stop,
            )?;
            tasks.push((graph.graph[n].name.clone(), instance, fut));
        }
    }
    let registry = Arc::new(Registry {
        pipeline: graph.name.clone(),
        stop: stop.clone(),
        epoch,
        nodes,
        instances,
        edges: edge_entries,
    });
    Ok(Prepared { registry, tasks })
}

/// A physical main-port edge for [`downstream_probes`]: `(node, instance)` at each end, and
/// its probe.
type ProbedEdge = ((usize, usize), (usize, usize), EdgeProbe);

/// Gives every instance a probe over the main-port edges reachable downstream of it: its own,
/// its chained successors', and, transitively, their consumers'.
fn downstream_probes(
    wirings: &mut [Vec<Wiring>],
    edges: &[ProbedEdge],
    next_in_chain: &[Option<usize>],
) {
    let mut out_edges: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (k, (from, _, _)) in edges.iter().enumerate() {
        out_edges.entry(*from).or_default().push(k);
    }
    for (n, node) in wirings.iter_mut().enumerate() {
        for (i, wiring) in node.iter_mut().enumerate() {
            let mut seen_edges = vec![false; edges.len()];
            let mut seen = std::collections::HashSet::new();
            let mut todo = vec![(n, i)];
            let mut probes = Vec::new();
            while let Some(at) = todo.pop() {
                if !seen.insert(at) {
                    continue;
                }
                if let Some(next) = next_in_chain[at.0] {
                    todo.push((next, at.1));
                }
                for &k in out_edges.get(&at).into_iter().flatten() {
                    if !std::mem::replace(&mut seen_edges[k], true) {
                        probes.push(edges[k].2.clone());
                        todo.push(edges[k].1);
                    }
                }
            }
            wiring.info.downstream = DownstreamProbe::new(probes);
        }
    }
}

/// Which source instances' barriers reach where.
struct BarrierReach {
    /// Source instance `(node, instance)` → its origin number.
    origin_of_source: HashMap<(usize, usize), u32>,
    /// Sink instance `(node, instance)` → its index in the ledger.
    sink_index: HashMap<(usize, usize), usize>,
    /// Per origin, the sink instances (ledger indices) it reaches.
    sinks_of_origin: Vec<Vec<usize>>,
    /// Per instance, the origins whose barriers reach it (and so leave it on its main edges).
    origins_at: HashMap<(usize, usize), Vec<u32>>,
}

/// Follows main-port edges and chains from every source instance: what each one reaches.
fn barrier_reach(
    kinds: &[NodeKind],
    parallelism: &[usize],
    edges: &[ProbedEdge],
    next_in_chain: &[Option<usize>],
) -> BarrierReach {
    let mut out_edges: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    for (from, to, _) in edges {
        out_edges.entry(*from).or_default().push(*to);
    }
    let mut reach = BarrierReach {
        origin_of_source: HashMap::new(),
        sink_index: HashMap::new(),
        sinks_of_origin: Vec::new(),
        origins_at: HashMap::new(),
    };
    for (n, kind) in kinds.iter().enumerate() {
        if *kind == NodeKind::Sink {
            for i in 0..parallelism[n] {
                let k = reach.sink_index.len();
                reach.sink_index.insert((n, i), k);
            }
        }
    }
    for (n, kind) in kinds.iter().enumerate() {
        if *kind != NodeKind::Source {
            continue;
        }
        for i in 0..parallelism[n] {
            let origin = u32::try_from(reach.sinks_of_origin.len()).unwrap_or(u32::MAX);
            reach.origin_of_source.insert((n, i), origin);
            let mut sinks = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut todo = vec![(n, i)];
            while let Some(at) = todo.pop() {
                if !seen.insert(at) {
                    continue;
                }
                reach.origins_at.entry(at).or_default().push(origin);
                if let Some(&k) = reach.sink_index.get(&at) {
                    sinks.push(k);
                }
                if let Some(next) = next_in_chain[at.0] {
                    todo.push((next, at.1));
                }
                todo.extend(out_edges.get(&at).into_iter().flatten().copied());
            }
            reach.sinks_of_origin.push(sinks);
        }
    }
    reach
}

/// For each node, the producer it is chained to, if any (see [`chain`]).
fn chain_links(
    graph: &LogicalGraph,
    parallelism: &[usize],
    chaining: Chaining,
) -> Vec<Option<usize>> {
    let g = &graph.graph;
    let mut from = vec![None; g.node_count()];
    if chaining == Chaining::Off {
        return from;
    }
    for e in g.edge_references() {
        let (u, v, spec) = (e.source(), e.target(), e.weight());
        let private = g[v].kind == NodeKind::Operator
            && g[u].kind != NodeKind::Sink
            && g.edges_directed(u, Direction::Outgoing).count() == 1
            && g.edges_directed(v, Direction::Incoming).count() == 1
            && spec.from_port == OutPort::Main
            && spec.partitioning == Partitioning::Forward
            && spec.partitioner.is_none()
            && spec.config.is_none()
            && spec.overflow.is_none()
            && parallelism[u.index()] == parallelism[v.index()];
        if private {
            from[v.index()] = Some(u.index());
        }
    }
    from
}

/// Builds the task of one instance of a chain (a single node is a chain of one).
fn build_task(
    graph: &mut LogicalGraph,
    node_ids: &[petgraph::graph::NodeIndex],
    chain: &[usize],
    instance: usize,
    slots: &mut [Vec<Option<Wiring>>],
    config: &PipelineConfig,
    stop: &Arc<StopSignal>,
) -> Result<InstanceFuture, RunError> {
    let fail = |graph: &LogicalGraph, n: usize| {
        let name = graph.graph[node_ids[n]].name.clone();
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
        linger: config.linger,
        yield_every: config.yield_every,
        stop: stop.clone(),
    };
    if chain.len() == 1 {
        let node = &mut graph.graph[node_ids[head]];
        return node
            .runner
            .instantiate(head_wiring, ctx, node.clone_fn.as_ref())
            .map_err(fail(graph, head));
    }
    // Build from the tail back: the tail's edges, then each operator around what follows it.
    let tail = *chain.last().expect("a chain has a tail");
    let mut tail_wiring = take(slots, tail);
    let node = &mut graph.graph[node_ids[tail]];
    let mut down = node
        .runner
        .ports(&mut tail_wiring, node.clone_fn.as_ref())
        .map_err(fail(graph, tail))?;
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
        down = graph.graph[node_ids[member]]
            .runner
            .chain(&wiring.info, wiring.metrics.clone(), producer_metrics, down)
            .map_err(fail(graph, member))?;
    }
    // The head keeps its inputs; its outputs are the chain.
    head_wiring.outputs.clear();
    graph.graph[node_ids[head]]
        .runner
        .instantiate_head(head_wiring, ctx, down)
        .map_err(fail(graph, head))
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
