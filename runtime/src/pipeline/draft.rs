//! The pipeline under construction, shared by a [`Pipeline`](super::Pipeline) and every stream
//! handle made from it: the logical graph, each node's runner beside it, and the settings.

use std::cell::RefCell;
use std::rc::Rc;

use crate::batch::Batch;
use crate::config::PipelineConfig;
use crate::error::GraphError;
use crate::exec::{NodeRunner, Runner};
use crate::graph::{LogicalGraph, Node, NodeId};
use crate::plan::AnyBox;

/// The graph being built, the runners of its nodes and the settings, until the pipeline runs.
pub(super) struct Draft {
    pub(super) graph: LogicalGraph,
    /// One per node of `graph`, by node index.
    pub(super) runners: Vec<NodeRunner>,
    pub(super) config: PipelineConfig,
    /// Whether the graph has been handed over for a run.
    pub(super) ran: bool,
}

/// A draft shared by a pipeline and its streams (all on the building thread).
pub(super) type Shared = Rc<RefCell<Draft>>;

impl Draft {
    /// An empty graph named `name` with `config`.
    pub(super) fn new(name: String, config: PipelineConfig) -> Self {
        Self {
            graph: LogicalGraph::new(name),
            runners: Vec::new(),
            config,
            ran: false,
        }
    }
}

impl Draft {
    pub(super) fn add(&mut self, node: Node, runner: Box<dyn Runner>) -> NodeId {
        assert!(
            !self.ran,
            "operators cannot be added to pipeline `{}` after it has run",
            self.graph.name
        );
        let id = self.graph.add_node(node);
        debug_assert_eq!(id.index(), self.runners.len());
        self.runners.push(NodeRunner {
            runner,
            clone_fn: None,
        });
        id
    }

    /// Registers how to copy the batches of `node`'s output, for a stream with several
    /// consumers.
    pub(super) fn set_cloneable<B: Batch + Clone>(&mut self, node: NodeId) {
        self.runners[node.index()].clone_fn =
            Some(Box::new(<B as Clone>::clone as fn(&B) -> B) as AnyBox);
    }

    /// Hands the graph, its runners and the settings over for a run, once, after checking them.
    /// `pipeline` names the pipeline in errors.
    pub(super) fn take(
        &mut self,
        pipeline: &str,
    ) -> Result<(LogicalGraph, Vec<NodeRunner>, PipelineConfig), GraphError> {
        if self.ran {
            return Err(GraphError::AlreadyRun {
                pipeline: pipeline.to_string(),
            });
        }
        self.graph.validate()?;
        self.config
            .validate()
            .map_err(|reason| GraphError::InvalidConfig {
                operator: format!("{pipeline} (the pipeline's configuration)"),
                reason,
            })?;
        self.ran = true;
        let graph = std::mem::replace(&mut self.graph, LogicalGraph::new(pipeline.to_string()));
        let runners = std::mem::take(&mut self.runners);
        Ok((graph, runners, self.config.clone()))
    }
}
