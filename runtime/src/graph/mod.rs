//! The logical plan: operators and the streams between them, as a petgraph graph.
//!
//! Built through [`Pipeline`](crate::Pipeline) and [`StreamCore`](crate::StreamCore); validated
//! before a run ([`validate`](LogicalGraph::validate)); exported as Graphviz DOT
//! ([`to_dot`](LogicalGraph::to_dot)). The executor expands it into a physical graph (one task
//! per operator instance, one edge per pair of connected instances).

mod dot;

use std::any::Any;
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::channel::EdgeConfig;
use crate::error::GraphError;
use crate::metrics::NodeKind;
use crate::overflow::Overflow;

/// Identity of an operator in a pipeline. Names are labels; this is the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) NodeIndex);

impl NodeId {
    /// The node's index in graph order.
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0.index())
    }
}

/// How a stream's batches are spread over the instances of the consuming operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub enum Partitioning {
    /// Instance *i* feeds instance *i* when both sides have the same parallelism, otherwise
    /// [`Rebalance`](Self::Rebalance).
    #[default]
    Forward,
    /// Round-robin over the consumer's instances, skipping those without credit when another
    /// has it.
    Rebalance,
    /// Every batch to every consumer instance.
    Broadcast,
    /// A custom [`Partitioner`](crate::partition::Partitioner) splits every batch.
    Partitioned,
}

/// Which output of an operator an edge leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum OutPort {
    /// The main output.
    #[default]
    Main,
    /// The dead-letter port (see [`DeadLetter`](crate::DeadLetter)).
    DeadLetters,
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: Option<usize>,
    /// Given as one value rather than a factory: defaults to one instance.
    pub(crate) single: bool,
}

pub(crate) struct EdgeSpec {
    pub(crate) port: usize,
    pub(crate) from_port: OutPort,
    pub(crate) config: Option<EdgeConfig>,
    pub(crate) partitioning: Partitioning,
    /// A label and a `PartitionerFactory<B>` for [`Partitioning::Partitioned`].
    pub(crate) partitioner: Option<(String, std::sync::Arc<dyn Any + Send + Sync>)>,
    /// The most consumer instances the partitioner can serve, if it is bounded.
    pub(crate) max_targets: Option<usize>,
    /// The edge's overflow policy, if one was declared.
    pub(crate) overflow: Option<EdgeOverflow>,
    /// An `Arc<dyn SpillCodec<B>>` for the producer's batch type, when one was given: it also
    /// lets a checkpoint capture the batches queued on the edge (unaligned checkpoints).
    pub(crate) codec: Option<std::sync::Arc<dyn Any + Send + Sync>>,
}

/// An overflow policy declared on an edge, with the spill codec of the producer's batch type.
#[derive(Clone)]
pub(crate) struct EdgeOverflow {
    pub(crate) policy: Overflow,
    /// An `Arc<dyn SpillCodec<B>>`, when one was given.
    pub(crate) codec: Option<std::sync::Arc<dyn Any + Send + Sync>>,
}

/// The logical graph of a pipeline.
pub struct LogicalGraph {
    pub(crate) name: String,
    pub(crate) graph: DiGraph<Node, EdgeSpec>,
}

impl fmt::Debug for LogicalGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalGraph")
            .field("name", &self.name)
            .field("operators", &self.graph.node_count())
            .field("streams", &self.graph.edge_count())
            .finish()
    }
}

impl LogicalGraph {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            graph: DiGraph::new(),
        }
    }

    pub(crate) fn add_node(&mut self, node: Node) -> NodeId {
        NodeId(self.graph.add_node(node))
    }

    pub(crate) fn connect(&mut self, from: NodeId, to: NodeId, spec: EdgeSpec) {
        self.graph.add_edge(from.0, to.0, spec);
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.0]
    }

    /// The parallelism set on a node, if any.
    pub(crate) fn node_parallelism(&self, id: NodeId) -> Option<usize> {
        self.graph[id.0].parallelism
    }

    /// The operator's name.
    pub fn name_of(&self, id: NodeId) -> &str {
        &self.graph[id.0].name
    }

    /// Number of operators.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no operators.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Upstream operators of each node, by node index.
    pub(crate) fn upstream(&self) -> Vec<Vec<usize>> {
        self.graph
            .node_indices()
            .map(|n| {
                let mut ups: Vec<usize> = self
                    .graph
                    .edges_directed(n, Direction::Incoming)
                    .map(|e| e.source().index())
                    .collect();
                ups.sort_unstable();
                ups.dedup();
                ups
            })
            .collect()
    }

    /// Checks that the pipeline can run.
    ///
    /// # Errors
    ///
    /// The first problem found, in this order: duplicate names, no source, no sink, a cycle, a
    /// stream nobody consumes, an invalid edge configuration or overflow policy.
    pub fn validate(&self) -> Result<(), GraphError> {
        let mut names: Vec<&str> = self.graph.node_weights().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(GraphError::DuplicateName {
                name: w[0].to_string(),
            });
        }
        let kinds = || self.graph.node_weights().map(|n| n.kind);
        if !kinds().any(|k| k == NodeKind::Source) {
            return Err(GraphError::NoSource {
                pipeline: self.name.clone(),
            });
        }
        if !kinds().any(|k| k == NodeKind::Sink) {
            return Err(GraphError::NoSink {
                pipeline: self.name.clone(),
            });
        }
        if let Err(cycle) = petgraph::algo::toposort(&self.graph, None) {
            let start = cycle.node_id();
            let sccs = petgraph::algo::kosaraju_scc(&self.graph);
            let members = sccs
                .into_iter()
                .find(|c| c.contains(&start))
                .unwrap_or_else(|| vec![start]);
            return Err(GraphError::Cycle {
                operators: members
                    .into_iter()
                    .map(|n| self.graph[n].name.clone())
                    .collect(),
            });
        }
        for n in self.graph.node_indices() {
            let node = &self.graph[n];
            if node.kind != NodeKind::Sink
                && !self
                    .graph
                    .edges_directed(n, Direction::Outgoing)
                    .any(|e| e.weight().from_port == OutPort::Main)
            {
                return Err(GraphError::Unconsumed {
                    operator: node.name.clone(),
                });
            }
            if node.parallelism == Some(0) {
                return Err(GraphError::InvalidConfig {
                    operator: node.name.clone(),
                    reason: "parallelism must be at least 1".into(),
                });
            }
            let max = crate::config::PipelineConfig::MAX_PARALLELISM;
            if let Some(p) = node.parallelism.filter(|&p| p > max) {
                return Err(GraphError::InvalidConfig {
                    operator: node.name.clone(),
                    reason: format!("parallelism {p} exceeds the limit of {max} instances"),
                });
            }
        }
        for e in self.graph.edge_references() {
            if let Some(o) = &e.weight().overflow {
                let invalid = |reason: String| GraphError::InvalidConfig {
                    operator: self.graph[e.source()].name.clone(),
                    reason,
                };
                match &o.policy {
                    Overflow::Reject => {
                        return Err(invalid(format!(
                            "the edge to `{}` is declared `Reject`, which only sources that \
                             answer a client can apply; use DropNewest, DropOldest or Spill",
                            self.graph[e.target()].name
                        )))
                    }
                    Overflow::Spill { .. } if o.codec.is_none() => {
                        return Err(invalid(format!(
                            "the edge to `{}` spills, which needs a codec for its batches: \
                             call `with_spill_codec` (`JsonCodec` serves serde rows)",
                            self.graph[e.target()].name
                        )))
                    }
                    Overflow::Spill { max_bytes, .. }
                        if *max_bytes <= crate::spill::SpillConfig::MIN_BYTES =>
                    {
                        return Err(invalid(format!(
                            "the spill of the edge to `{}` must allow more than {} bytes \
                             (a segment header and one record frame), got {max_bytes}",
                            self.graph[e.target()].name,
                            crate::spill::SpillConfig::MIN_BYTES
                        )))
                    }
                    _ => {}
                }
            }
            if let Some(cfg) = &e.weight().config {
                cfg.validate().map_err(|reason| GraphError::InvalidConfig {
                    operator: self.graph[e.source()].name.clone(),
                    reason,
                })?;
            }
        }
        Ok(())
    }

    /// The graph in Graphviz DOT, operators labelled with their name and kind.
    pub fn to_dot(&self) -> String {
        dot::render(self)
    }
}
