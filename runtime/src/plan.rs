//! The physical plan: the logical graph expanded into operator instances and the edges
//! between them, before anything runs.
//!
//! - every node gets its parallelism (its own, or the pipeline's default; one for an operator
//!   given as one value);
//! - operators are grouped into chains that share a task (see the executor's `chain` module),
//!   following [`Chaining`];
//! - one edge is created per pair of connected instances (instance *i* → *i* for a forward edge
//!   between equal parallelisms, all pairs otherwise), typed by the producer's [`EdgeMaker`];
//! - every instance gets its [`Wiring`]: its edges, type-erased until its runner takes them, its
//!   metrics, its barrier origin or ledger slot, and a probe over the edges downstream of it;
//! - every instance's metrics and every edge's probe are registered for the run report.
//!
//! The plan reads the configuration and the logical graph and knows no operator: the executor
//! turns it into tasks.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::barrier::{Barriers, Ledger};
use crate::batch::Batch;
use crate::channel::{edge, EdgeConfig, EdgeProbe};
use crate::config::{Chaining, PipelineConfig};
use crate::dead_letter::DeadLetter;
use crate::error::{GraphError, RunError};
use crate::graph::{LogicalGraph, OutPort, Partitioning};
use crate::metrics::{EdgeEntry, InstanceEntry, InstanceMetrics, NodeEntry, NodeKind, Registry};
use crate::operator::{DownstreamProbe, InputPort, InstanceInfo};
use crate::overflow::{Overflow, OverflowCounter};
use crate::stop::StopSignal;

/// A value whose type the planner does not know: an `Outlet<B>`, an `Inlet<B>`, a clone
/// function, a chained downstream. The typed runner that knows `B` takes it back.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// Creates an edge of one batch type, erased for the planner: `(Outlet<B>, Inlet<B>, probe)`.
pub(crate) type EdgeMaker = fn(EdgeConfig) -> (AnyBox, AnyBox, EdgeProbe);

/// Creates an edge of batch type `B`, erased for the planner: `(Outlet<B>, Inlet<B>, probe)`.
pub(crate) fn make_edge_of<B: Batch>(config: EdgeConfig) -> (AnyBox, AnyBox, EdgeProbe) {
    let (outlet, inlet) = edge::<B>(config);
    let probe = outlet.probe();
    (Box::new(outlet), Box::new(inlet), probe)
}

/// The wiring of one instance: its edges, already created, type-erased until its runner
/// (which knows the types) takes them.
pub(crate) struct Wiring {
    pub(crate) info: InstanceInfo,
    /// Input edges: port, `Inlet<B>`, and the source instances whose barriers it can carry.
    pub(crate) inputs: Vec<(InputPort, AnyBox, Arc<[u32]>)>,
    /// Input ports fed by dead-letter streams: they carry checkpoint barriers (not a source's
    /// own barriers, so their origins are empty).
    pub(crate) dead_inputs: Vec<InputPort>,
    /// Per input port fed by a stream with a codec: an `Arc<dyn SpillCodec<B>>`.
    pub(crate) codecs: Vec<(InputPort, Arc<dyn Any + Send + Sync>)>,
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

/// The physical plan of a run: every instance's wiring, the tasks to build, and the registry
/// the run report is read from. Nothing has run, and no operator has been built.
pub(crate) struct Plan {
    pub(crate) registry: Arc<Registry>,
    /// Per node, per instance: its wiring, until the executor hands it to its task.
    pub(crate) wirings: Vec<Vec<Option<Wiring>>>,
    /// One entry per task group: the nodes of a chain, first operator first (a node that is not
    /// chained is a chain of one). Each runs `parallelism[chain[0]]` tasks.
    pub(crate) chains: Vec<Vec<usize>>,
    /// Instances per node, by node index.
    pub(crate) parallelism: Vec<usize>,
}

/// Expands a validated `graph` into instances and edges. `edge_makers` has one entry per node,
/// by node index: how to create an edge of its output type (`None` for a sink).
///
/// # Errors
///
/// An invalid graph ([`LogicalGraph::validate`]).
pub(crate) fn expand(
    graph: &LogicalGraph,
    edge_makers: &[Option<EdgeMaker>],
    config: &PipelineConfig,
    stop: Arc<StopSignal>,
) -> Result<Plan, RunError> {
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
                            checkpointing: false,
                        },
                        inputs: Vec::new(),
                        dead_inputs: Vec::new(),
                        codecs: Vec::new(),
                        sink_slot: None,
                        outputs: Vec::new(),
                        dead_outputs: Vec::new(),
                        metrics,
                    }
                })
                .collect()
        })
        .collect();

    let chained_from = chain_links(graph, &parallelism, config.chaining);
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
        if let Some(codec) = spec
            .codec
            .as_ref()
            .filter(|_| spec.from_port == OutPort::Main)
        {
            for wiring in &mut wirings[v.index()] {
                wiring.codecs.push((spec.port, codec.clone()));
            }
        }
        let cfg = spec.config.unwrap_or_else(|| config.default_edge());
        let (pu, pv) = (parallelism[u.index()], parallelism[v.index()]);
        if let Some(max) = spec.max_targets.filter(|&max| pv > max) {
            let label = spec.partitioner.as_ref().map_or("", |(l, _)| l.as_str());
            return Err(GraphError::InvalidConfig {
                operator: graph.graph[v].name.clone(),
                reason: format!(
                    "it runs {pv} instances, but the partitioner `{label}` from `{}` serves at \
                     most {max}; lower its parallelism or raise the partitioner's limit",
                    graph.graph[u].name
                ),
            }
            .into());
        }
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
                    let make = edge_makers[u.index()]
                        .expect("validated: only nodes with outputs have out-edges");
                    make(cfg)
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
        // Dead-letter edges carry checkpoint barriers, not a source's own.
        let origins = if dead_port {
            if !wirings[v][j].dead_inputs.contains(&port) {
                wirings[v][j].dead_inputs.push(port);
            }
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

    let wirings: Vec<Vec<Option<Wiring>>> = wirings
        .into_iter()
        .map(|ws| ws.into_iter().map(Some).collect())
        .collect();
    let mut chains = Vec::new();
    for &n in &node_ids {
        let head = n.index();
        if chained_from[head].is_some() {
            continue; // runs inside its chain's task
        }
        let mut chain = vec![head];
        while let Some(next) = next_in_chain[*chain.last().expect("non-empty")] {
            chain.push(next);
        }
        chains.push(chain);
    }
    let registry = Arc::new(Registry {
        pipeline: graph.name.clone(),
        stop,
        epoch,
        nodes,
        instances,
        edges: edge_entries,
        checkpoints: std::sync::OnceLock::new(),
    });
    Ok(Plan {
        registry,
        wirings,
        chains,
        parallelism,
    })
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
