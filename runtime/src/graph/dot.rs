//! Graphviz DOT export.

use std::fmt::Write;

use petgraph::visit::EdgeRef;

use super::{LogicalGraph, OutPort, Partitioning};
use crate::metrics::NodeKind;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub(super) fn render(g: &LogicalGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&g.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=rounded];");
    for n in g.graph.node_indices() {
        let node = &g.graph[n];
        let (kind, shape) = match node.kind {
            NodeKind::Source => ("source", "invhouse"),
            NodeKind::Operator => ("operator", "box"),
            NodeKind::Sink => ("sink", "house"),
        };
        let par = node
            .parallelism
            .map(|p| format!(" ×{p}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{}{}\", shape={}];",
            n.index(),
            escape(&node.name),
            kind,
            par,
            shape
        );
    }
    for e in g.graph.edge_references() {
        let spec = e.weight();
        let mut attrs = Vec::new();
        match spec.partitioning {
            Partitioning::Forward => {}
            Partitioning::Rebalance => attrs.push("label=\"rebalance\"".to_string()),
            Partitioning::Broadcast => attrs.push("label=\"broadcast\"".to_string()),
            Partitioning::Partitioned => attrs.push(format!(
                "label=\"{}\"",
                escape(
                    spec.partitioner
                        .as_ref()
                        .map_or("partitioned", |(l, _)| l.as_str())
                )
            )),
        }
        if let Some(o) = spec.overflow.as_ref().filter(|o| o.policy.is_lossy_edge()) {
            attrs.push("color=orange".to_string());
            attrs.push(format!("xlabel=\"{}\"", o.policy.name()));
        }
        if spec.from_port == OutPort::DeadLetters {
            attrs.push("style=dashed".to_string());
            attrs.push("taillabel=\"dead letters\"".to_string());
        }
        if spec.port > 0 {
            attrs.push(format!("headlabel=\"{}\"", spec.port));
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(
            out,
            "  n{} -> n{}{};",
            e.source().index(),
            e.target().index(),
            attrs
        );
    }
    out.push_str("}\n");
    out
}
