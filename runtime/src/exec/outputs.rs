//! The sending half of an instance: its logical output edges, routing, and the held-output stash.
//!
//! Everything one operator call emitted is routed to its targets and tried at once; what finds no
//! room waits in a FIFO stash, in order, and the driver does not call the operator again until the
//! stash has drained. The stash is therefore bounded by what a single call emits (times the
//! fan-out), and its bytes are reported as the instance's held bytes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::batch::{Batch, Message};
use crate::channel::{Outlet, TrySendError};
use crate::graph::Partitioning;
use crate::metrics::InstanceMetrics;
use crate::operator::Output;

struct Target<B: Batch> {
    outlet: Outlet<B>,
    closed: bool,
}

enum Route {
    /// Exactly one target.
    Forward,
    /// Every target gets every batch.
    Broadcast,
    /// One target per batch, round-robin, preferring targets with room.
    Rebalance { next: usize },
}

pub(crate) struct OutEdge<B: Batch> {
    targets: Vec<Target<B>>,
    route: Route,
}

impl<B: Batch> OutEdge<B> {
    pub(crate) fn new(partitioning: Partitioning, outlets: Vec<Outlet<B>>) -> Self {
        let route = match partitioning {
            Partitioning::Broadcast => Route::Broadcast,
            _ if outlets.len() == 1 => Route::Forward,
            _ => Route::Rebalance { next: 0 },
        };
        Self {
            targets: outlets
                .into_iter()
                .map(|outlet| Target {
                    outlet,
                    closed: false,
                })
                .collect(),
            route,
        }
    }

    fn all_closed(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.closed || t.outlet.is_closed())
    }
}

/// Why an instance can or cannot produce more.
pub(crate) enum Readiness {
    /// Every edge that must have room has it.
    Ready,
    /// Every consumer has gone away: stop producing.
    AllClosed,
}

pub(crate) struct Outputs<B: Batch> {
    edges: Vec<OutEdge<B>>,
    clone: Option<fn(&B) -> B>,
    /// (edge, target, message), in emission order.
    stash: VecDeque<(usize, usize, Message<B>)>,
    stash_bytes: usize,
    metrics: Arc<InstanceMetrics>,
}

impl<B: Batch> Outputs<B> {
    pub(crate) fn new(
        edges: Vec<OutEdge<B>>,
        clone: Option<fn(&B) -> B>,
        metrics: Arc<InstanceMetrics>,
    ) -> Self {
        Self {
            edges,
            clone,
            stash: VecDeque::new(),
            stash_bytes: 0,
            metrics,
        }
    }

    /// Routes everything `out` holds (sealed messages only) and tries to send it now.
    pub(crate) fn dispatch(&mut self, out: &mut Output<B>) {
        for msg in out.drain() {
            match msg {
                Message::Data(batch) => self.route_data(batch),
                Message::Watermark(ts) => {
                    for e in 0..self.edges.len() {
                        for t in 0..self.edges[e].targets.len() {
                            self.stash.push_back((e, t, Message::Watermark(ts)));
                        }
                    }
                }
                Message::End => {
                    debug_assert!(false, "operators do not emit End; the executor does");
                }
            }
        }
        self.try_flush();
    }

    fn route_data(&mut self, batch: B) {
        let (rows, bytes) = (batch.rows() as u64, batch.bytes());
        let m = &self.metrics;
        m.rows_out.fetch_add(rows, Relaxed);
        m.batches_out.fetch_add(1, Relaxed);
        m.bytes_out.fetch_add(bytes as u64, Relaxed);

        // Fast path: one edge, one target (the common linear pipeline).
        if self.edges.len() == 1 && self.edges[0].targets.len() == 1 {
            self.stash_bytes += bytes;
            self.stash.push_back((0, 0, Message::Data(batch)));
            return;
        }
        let mut dests: Vec<(usize, usize)> = Vec::new();
        for (e, edge) in self.edges.iter_mut().enumerate() {
            match &mut edge.route {
                Route::Forward => dests.push((e, 0)),
                Route::Broadcast => dests.extend((0..edge.targets.len()).map(|t| (e, t))),
                Route::Rebalance { next } => {
                    let n = edge.targets.len();
                    let start = *next;
                    let pick = (0..n)
                        .map(|k| (start + k) % n)
                        .find(|&t| {
                            let target = &mut edge.targets[t];
                            !target.closed && target.outlet.try_reserve(bytes).is_ok()
                        })
                        .unwrap_or(start % n);
                    *next = (pick + 1) % n;
                    dests.push((e, pick));
                }
            }
        }
        let Some(&last) = dests.last() else { return };
        let clone = self.clone;
        for &(e, t) in &dests[..dests.len() - 1] {
            let copy = match clone {
                Some(f) => f(&batch),
                None => unreachable!("fan-out is only wired for streams registered as cloneable"),
            };
            self.stash_bytes += bytes;
            self.stash.push_back((e, t, Message::Data(copy)));
        }
        self.stash_bytes += bytes;
        self.stash.push_back((last.0, last.1, Message::Data(batch)));
    }

    /// Queues End for every live target.
    pub(crate) fn end(&mut self) {
        for e in 0..self.edges.len() {
            for t in 0..self.edges[e].targets.len() {
                self.stash.push_back((e, t, Message::End));
            }
        }
    }

    /// Sends stashed messages in order until one finds no room. Returns whether the stash is empty.
    fn try_flush(&mut self) -> bool {
        while let Some((e, t, msg)) = self.stash.pop_front() {
            let target = &mut self.edges[e].targets[t];
            let bytes = msg.bytes();
            if target.closed {
                self.discard(&msg);
                self.stash_bytes -= bytes;
                continue;
            }
            match target.outlet.try_send(msg) {
                Ok(()) => self.stash_bytes -= bytes,
                Err(TrySendError::Full(msg)) => {
                    self.stash.push_front((e, t, msg));
                    self.metrics.note_held(self.stash_bytes);
                    return false;
                }
                Err(TrySendError::Closed(msg)) => {
                    self.edges[e].targets[t].closed = true;
                    self.discard(&msg);
                    self.stash_bytes -= bytes;
                }
            }
        }
        true
    }

    fn discard(&self, msg: &Message<B>) {
        self.metrics
            .dropped_downstream_closed
            .fetch_add(msg.rows() as u64, Relaxed);
    }

    /// Waits until the stash has drained.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.try_flush() {
                return Poll::Ready(());
            }
            let Some((e, t, msg)) = self.stash.front() else {
                return Poll::Ready(());
            };
            let bytes = msg.bytes();
            match self.edges[*e].targets[*t].outlet.poll_reserve(cx, bytes) {
                Poll::Pending => return Poll::Pending,
                // Room or closed: either way the next `try_flush` makes progress.
                Poll::Ready(_) => continue,
            }
        }
    }

    /// Whether nothing is held.
    pub(crate) fn is_flushed(&self) -> bool {
        self.stash.is_empty()
    }

    /// Waits until every edge that must have room has it: every live target of a forward or
    /// broadcast edge, and some live target of a rebalanced edge.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        if self.edges.iter().all(OutEdge::all_closed) {
            return Poll::Ready(Readiness::AllClosed);
        }
        let mut pending = false;
        for edge in &mut self.edges {
            match edge.route {
                Route::Forward | Route::Broadcast => {
                    for target in edge.targets.iter_mut().filter(|t| !t.closed) {
                        match target.outlet.poll_ready(cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(_)) => target.closed = true,
                            Poll::Pending => pending = true,
                        }
                    }
                }
                Route::Rebalance { .. } => {
                    let mut any = false;
                    for target in edge.targets.iter_mut().filter(|t| !t.closed) {
                        match target.outlet.poll_ready(cx) {
                            Poll::Ready(Ok(())) => {
                                any = true;
                                break;
                            }
                            Poll::Ready(Err(_)) => target.closed = true,
                            Poll::Pending => {}
                        }
                    }
                    if !any && !edge.all_closed() {
                        pending = true;
                    }
                }
            }
        }
        if pending {
            Poll::Pending
        } else if self.edges.iter().all(OutEdge::all_closed) {
            Poll::Ready(Readiness::AllClosed)
        } else {
            Poll::Ready(Readiness::Ready)
        }
    }
}
