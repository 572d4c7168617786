//! The sending half of an instance: its logical output edges, routing, and the held-output stash.
//!
//! Everything one operator call emitted is routed to its targets and tried at once; what finds no
//! room waits in a FIFO stash, in order, and the driver does not call the operator again until the
//! stash has drained. The stash is therefore bounded by what a single call emits (times the
//! fan-out), and its bytes are reported as the instance's held bytes.
//!
//! An edge declared with an overflow policy ([`Overflow`](crate::Overflow)) is *lossy*: its
//! messages never stay in the stash (what finds no room is dropped, queued or spilled by its
//! [`LossyEdge`]), and readiness ignores it, so the producer never waits for it — except at the
//! end of the stream, when everything it queued or spilled is delivered before End.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::barrier::CheckpointBarrier;
use crate::batch::{Batch, LatencyMarker, Message};
use crate::channel::{Outlet, TrySendError};
use crate::dead_letter::DeadLetter;
use crate::exec::lossy::LossyEdge;
use crate::graph::Partitioning;
use crate::metrics::InstanceMetrics;
use crate::operator::Output;
use crate::partition::{Partitioner, TargetLoad};

/// One output edge's instances, as seen by its producer.
struct Target<B: Batch> {
    outlet: Outlet<B>,
    closed: bool,
}

enum Route<B: Batch> {
    /// Exactly one target.
    Forward,
    /// Every target gets every batch.
    Broadcast,
    /// One target per batch, round-robin, preferring targets with room.
    Rebalance { next: usize },
    /// A custom partitioner splits each batch over the targets.
    Custom {
        partitioner: Box<dyn Partitioner<B>>,
        loads: Vec<TargetLoad>,
        pieces: Vec<(usize, B)>,
    },
}

pub(crate) struct OutEdge<B: Batch> {
    targets: Vec<Target<B>>,
    route: Route<B>,
    lossy: Option<LossyEdge<B>>,
    /// The target of the next latency marker, on an edge with several.
    next_marker: usize,
}

impl<B: Batch> OutEdge<B> {
    pub(crate) fn new(
        partitioning: Partitioning,
        outlets: Vec<Outlet<B>>,
        partitioner: Option<Box<dyn Partitioner<B>>>,
    ) -> Self {
        let route = match (partitioning, partitioner) {
            (_, Some(partitioner)) => Route::Custom {
                partitioner,
                loads: Vec::with_capacity(outlets.len()),
                pieces: Vec::with_capacity(outlets.len()),
            },
            (Partitioning::Broadcast, None) => Route::Broadcast,
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
            lossy: None,
            next_marker: 0,
        }
    }

    /// `(targets, capacity, max_bytes)` of this edge, to size a lossy state for it.
    pub(crate) fn bounds(&self) -> (usize, usize, usize) {
        let (capacity, max_bytes) = self.targets.first().map_or((1, 1), |t| {
            let s = t.outlet.stats();
            (s.capacity, s.max_bytes)
        });
        (self.targets.len(), capacity, max_bytes)
    }

    /// Makes this edge lossy. Its consumers keep their whole credit: a limit sized by time
    /// would drop or spill rows here instead of slowing anyone.
    pub(crate) fn set_lossy(&mut self, lossy: LossyEdge<B>) {
        for t in &self.targets {
            t.outlet.fix_credit();
        }
        self.lossy = Some(lossy);
    }

    /// Pumps what waits on a lossy edge and arranges wake-ups; `Ready` once nothing waits.
    fn poll_lossy(&mut self, cx: &mut Context<'_>, m: &InstanceMetrics) -> Poll<()> {
        let Some(lossy) = self.lossy.as_mut() else {
            return Poll::Ready(());
        };
        let mut pending = false;
        for (t, target) in self.targets.iter_mut().enumerate() {
            if lossy
                .poll_drain(t, &mut target.outlet, &mut target.closed, cx, m)
                .is_pending()
            {
                pending = true;
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn lossy_drained(&self) -> bool {
        self.lossy.as_ref().is_none_or(|l| {
            let closed: Vec<bool> = self.targets.iter().map(|t| t.closed).collect();
            l.is_drained(&closed)
        })
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
    /// (edge, target, message, its bytes), in emission order: a message is measured once.
    stash: VecDeque<(usize, usize, Message<B>, usize)>,
    stash_bytes: usize,
    metrics: Arc<InstanceMetrics>,
    /// Whether sends count as the instance's output (false for the dead-letter port).
    counted: bool,
    /// End has been queued: lossy edges must now drain before the outputs count as flushed.
    ending: bool,
    /// Whether any edge is lossy.
    any_lossy: bool,
}

impl<B: Batch> Outputs<B> {
    pub(crate) fn new(
        edges: Vec<OutEdge<B>>,
        clone: Option<fn(&B) -> B>,
        metrics: Arc<InstanceMetrics>,
    ) -> Self {
        let any_lossy = edges.iter().any(|e| e.lossy.is_some());
        Self {
            edges,
            clone,
            stash: VecDeque::new(),
            stash_bytes: 0,
            metrics,
            counted: true,
            ending: false,
            any_lossy,
        }
    }

    fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }

    /// Makes sends wake consumers once per turn (see [`Outlet::set_deferred_wakes`]); the
    /// driver then calls [`wake_consumers`](Self::wake_consumers) before every wait.
    pub(crate) fn defer_wakes(&mut self) {
        for target in self.edges.iter_mut().flat_map(|e| e.targets.iter_mut()) {
            target.outlet.set_deferred_wakes(true);
        }
    }

    /// Wakes every consumer that was sent something since its last wake-up.
    #[inline]
    pub(crate) fn wake_consumers(&mut self) {
        for edge in &mut self.edges {
            for target in &mut edge.targets {
                target.outlet.flush_wake();
            }
        }
    }

    /// A spare buffer handed back by any consumer (see [`Outlet::take_spare`]).
    #[inline]
    pub(crate) fn take_spare(&mut self) -> Option<B> {
        self.edges
            .iter_mut()
            .flat_map(|e| e.targets.iter_mut())
            .find_map(|t| t.outlet.take_spare())
    }

    /// Routes one batch and tries to send it now.
    pub(crate) fn dispatch_batch(&mut self, batch: B) {
        self.route_data(batch);
        self.try_flush();
    }

    /// Routes everything `out` holds (sealed messages only) and tries to send it now.
    pub(crate) fn dispatch(&mut self, out: &mut Output<B>) {
        for msg in out.drain() {
            match msg {
                Message::Data(batch) => self.route_data(batch),
                // Control markers go to every consumer, in order with the data.
                msg @ (Message::Watermark(_)
                | Message::Barrier(_)
                | Message::Checkpoint(_)
                | Message::Idle) => {
                    for e in 0..self.edges.len() {
                        for t in 0..self.edges[e].targets.len() {
                            self.stash.push_back((e, t, msg.clone_marker(), 0));
                        }
                    }
                }
                Message::Latency(m) => self.route_latency(m),
                Message::End => {
                    debug_assert!(false, "operators do not emit End; the executor does");
                }
            }
        }
        self.try_flush();
    }

    /// Routes a latency marker behind what is already queued, to one target of each edge
    /// (round-robin over an edge's targets, as Flink sends a marker to one channel: a marker
    /// samples a path, it is not a control signal every consumer needs), and tries to send it.
    pub(crate) fn dispatch_latency(&mut self, m: LatencyMarker) {
        self.route_latency(m);
        self.try_flush();
    }

    fn route_latency(&mut self, m: LatencyMarker) {
        for (e, edge) in self.edges.iter_mut().enumerate() {
            let n = edge.targets.len();
            if n == 0 {
                continue;
            }
            let t = edge.next_marker % n;
            edge.next_marker = (t + 1) % n;
            self.stash.push_back((e, t, Message::Latency(m), 0));
        }
    }

    fn route_data(&mut self, batch: B) {
        let (rows, bytes) = (batch.rows() as u64, batch.bytes());
        if self.counted {
            let m = &self.metrics;
            m.rows_out.fetch_add(rows, Relaxed);
            m.batches_out.fetch_add(1, Relaxed);
            m.bytes_out.fetch_add(bytes as u64, Relaxed);
        }

        // Fast path: one edge, one target (the common linear pipeline).
        if self.edges.len() == 1 && self.edges[0].targets.len() == 1 {
            self.stash_bytes += bytes;
            self.stash.push_back((0, 0, Message::Data(batch), bytes));
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
                Route::Custom { .. } => {}
            }
        }
        // Custom partitioners split the batch itself: route its pieces, then the rest.
        let customs: Vec<usize> = (0..self.edges.len())
            .filter(|&e| matches!(self.edges[e].route, Route::Custom { .. }))
            .collect();
        if !customs.is_empty() {
            let clone = self.clone;
            let mut batch = Some(batch);
            let copies_needed = dests.len() + customs.len();
            for (k, &e) in customs.iter().enumerate() {
                let last = k + 1 == copies_needed;
                let input = if last {
                    batch.take().expect("taken once, last")
                } else {
                    match clone {
                        Some(f) => f(batch.as_ref().expect("kept for copies")),
                        None => unreachable!("fan-out is only wired for cloneable streams"),
                    }
                };
                self.split(e, input);
            }
            let Some(batch) = batch else { return };
            return self.route_to(dests, batch, bytes);
        }
        self.route_to(dests, batch, bytes);
    }

    fn split(&mut self, e: usize, batch: B) {
        let edge = &mut self.edges[e];
        let Route::Custom {
            partitioner,
            loads,
            pieces,
        } = &mut edge.route
        else {
            return;
        };
        loads.clear();
        loads.extend(edge.targets.iter_mut().map(|t| TargetLoad {
            credit: t.outlet.credit(),
            buffered_bytes: t.outlet.buffered_bytes(),
            closed: t.closed,
        }));
        partitioner.partition(batch, loads, pieces);
        let n = edge.targets.len();
        for (t, piece) in pieces.drain(..) {
            if piece.rows() == 0 {
                continue;
            }
            debug_assert!(t < n, "partitioner chose target {t} of {n}");
            let bytes = piece.bytes();
            self.stash_bytes += bytes;
            self.stash
                .push_back((e, t.min(n - 1), Message::Data(piece), bytes));
        }
    }

    fn route_to(&mut self, dests: Vec<(usize, usize)>, batch: B, bytes: usize) {
        let Some(&last) = dests.last() else { return };
        let clone = self.clone;
        for &(e, t) in &dests[..dests.len() - 1] {
            let copy = match clone {
                Some(f) => f(&batch),
                None => unreachable!("fan-out is only wired for streams registered as cloneable"),
            };
            // A copy's size is its own (a cloned `Vec` keeps no spare capacity): it is held and
            // released at that size.
            let copy_bytes = copy.bytes();
            self.stash_bytes += copy_bytes;
            self.stash
                .push_back((e, t, Message::Data(copy), copy_bytes));
        }
        self.stash_bytes += bytes;
        self.stash
            .push_back((last.0, last.1, Message::Data(batch), bytes));
    }

    /// Queues checkpoint barrier `b` for every target, behind what is queued, and tries to
    /// send it now.
    pub(crate) fn checkpoint(&mut self, b: CheckpointBarrier) {
        for e in 0..self.edges.len() {
            for t in 0..self.edges[e].targets.len() {
                self.stash.push_back((e, t, Message::Checkpoint(b), 0));
            }
        }
        self.try_flush();
    }

    /// Queues End for every live target.
    pub(crate) fn end(&mut self) {
        self.ending = true;
        for e in 0..self.edges.len() {
            for t in 0..self.edges[e].targets.len() {
                self.stash.push_back((e, t, Message::End, 0));
            }
        }
    }

    /// Sends stashed messages in order until one finds no room. Returns whether the stash is empty.
    fn try_flush(&mut self) -> bool {
        while let Some((e, t, msg, bytes)) = self.stash.pop_front() {
            let edge = &mut self.edges[e];
            if let Some(lossy) = edge.lossy.as_mut() {
                // A lossy edge takes every message now: sent, queued, spilled or dropped.
                self.stash_bytes -= bytes;
                let target = &mut edge.targets[t];
                lossy.offer(
                    t,
                    &mut target.outlet,
                    &mut target.closed,
                    msg,
                    bytes,
                    &self.metrics,
                );
                continue;
            }
            let target = &mut edge.targets[t];
            if target.closed {
                self.discard(&msg);
                self.stash_bytes -= bytes;
                continue;
            }
            match target.outlet.try_send_sized(msg, bytes) {
                Ok(()) => self.stash_bytes -= bytes,
                Err(TrySendError::Full(msg)) => {
                    self.stash.push_front((e, t, msg, bytes));
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

    /// Waits until the stash has drained and, once End is queued, until every lossy edge has
    /// delivered what it queued or spilled.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.try_flush() {
                if self.ending && self.any_lossy {
                    return self.poll_lossy(cx);
                }
                return Poll::Ready(());
            }
            let Some(&(e, t, _, bytes)) = self.stash.front() else {
                return Poll::Ready(());
            };
            match self.edges[e].targets[t].outlet.poll_reserve(cx, bytes) {
                Poll::Pending => return Poll::Pending,
                // Room or closed: either way the next `try_flush` makes progress.
                Poll::Ready(_) => continue,
            }
        }
    }

    /// Whether nothing is held (a lossy edge's backlog counts only once End is queued: until
    /// then the producer does not wait for it).
    #[inline]
    pub(crate) fn is_flushed(&self) -> bool {
        self.stash.is_empty() && !(self.ending && self.any_lossy && !self.lossy_drained())
    }

    #[inline(never)]
    fn lossy_drained(&self) -> bool {
        self.edges.iter().all(OutEdge::lossy_drained)
    }

    /// Moves what waits on lossy edges into their outlets as far as room allows, and arranges a
    /// wake-up for when more room appears. Never waits; call it wherever the instance waits.
    #[inline]
    pub(crate) fn poll_lossy(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.any_lossy {
            return Poll::Ready(());
        }
        self.poll_lossy_edges(cx)
    }

    #[inline(never)]
    fn poll_lossy_edges(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut pending = false;
        for edge in &mut self.edges {
            pending |= edge.poll_lossy(cx, &self.metrics).is_pending();
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// `Ready` once every consumer has gone away (what [`Readiness::AllClosed`] reports); a
    /// wake-up is arranged for when the last live one goes. Never waits: call it wherever the
    /// instance waits for something other than credit, so that cancellation reaches it.
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut live = false;
        for edge in &mut self.edges {
            for target in edge.targets.iter_mut().filter(|t| !t.closed) {
                if target.outlet.poll_closed(cx).is_ready() {
                    target.closed = true;
                } else {
                    live = true;
                }
            }
        }
        if live {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Waits until every edge that must have room has it: every live target of a forward or
    /// broadcast edge, and some live target of a rebalanced edge.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        if self.edges.iter().all(OutEdge::all_closed) {
            return Poll::Ready(Readiness::AllClosed);
        }
        let _ = self.poll_lossy(cx);
        let mut pending = false;
        for edge in &mut self.edges {
            if edge.lossy.is_some() {
                // The producer never waits for a lossy edge.
                continue;
            }
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
                // A partitioned edge waits only for targets that received data (the stash).
                Route::Custom { .. } => {}
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

/// Every port of an instance: the main output and the dead-letter port.
pub(crate) struct Ports<B: Batch> {
    pub(crate) main: Outputs<B>,
    dead: DeadPort,
}

/// The dead-letter port: counted always, sent on when connected.
///
/// A connected port carries checkpoint barriers as the main output does, in order with the
/// dead letters: the letters an operator rejected before a barrier go before it, so a
/// dead-letter sink pre-commits and commits by checkpoint like any other (its inputs align
/// the barrier over every dead-letter edge). Every call's output is sent at once and a
/// checkpoint barrier is the last thing a call emits (the executor adds it after the
/// operator's work before it), so the letters taken with a barrier all precede it. Source
/// barriers of durable acknowledgement do not travel it: the sinks they count are those the
/// main streams reach.
pub(crate) struct DeadPort {
    outs: Option<Outputs<Vec<DeadLetter>>>,
    metrics: Arc<InstanceMetrics>,
}

impl DeadPort {
    pub(crate) fn new(
        outs: Option<Outputs<Vec<DeadLetter>>>,
        metrics: Arc<InstanceMetrics>,
    ) -> Self {
        Self {
            outs: outs.map(Outputs::uncounted),
            metrics,
        }
    }

    pub(crate) fn dispatch(&mut self, dead: Vec<DeadLetter>, skipped: u64) {
        if skipped > 0 {
            self.metrics.skipped.fetch_add(skipped, Relaxed);
        }
        if dead.is_empty() {
            return;
        }
        self.metrics
            .dead_letters
            .fetch_add(dead.len() as u64, Relaxed);
        if let Some(outs) = &mut self.outs {
            outs.dispatch_batch(dead);
        }
    }

    /// Sends checkpoint barrier `b` behind the dead letters sent so far, if connected.
    pub(crate) fn checkpoint(&mut self, b: CheckpointBarrier) {
        if let Some(outs) = &mut self.outs {
            outs.checkpoint(b);
        }
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.outs {
            Some(o) => o.poll_flush(cx),
            None => Poll::Ready(()),
        }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.outs {
            // A dead-letter consumer that went away no longer holds us back; its letters are
            // still counted.
            Some(o) => o.poll_ready(cx).map(|_| ()),
            None => Poll::Ready(()),
        }
    }

    #[inline]
    pub(crate) fn is_flushed(&self) -> bool {
        self.outs.as_ref().is_none_or(Outputs::is_flushed)
    }

    pub(crate) fn end(&mut self) {
        if let Some(o) = &mut self.outs {
            o.end();
        }
    }
}

impl<B: Batch> Ports<B> {
    pub(crate) fn new(mut main: Outputs<B>, dead: DeadPort) -> Self {
        main.defer_wakes();
        Self { main, dead }
    }

    /// Wakes consumers of deferred sends; call before any wait.
    #[inline]
    pub(crate) fn wake_consumers(&mut self) {
        self.main.wake_consumers();
    }

    /// Fills an empty `slot` with a spare buffer from the main output's consumers.
    #[inline]
    pub(crate) fn refill(&mut self, slot: &mut Option<B>) {
        if slot.is_none() {
            *slot = self.main.take_spare();
        }
    }

    /// Passes a latency marker on through the main output (see [`Outputs::dispatch_latency`]).
    #[inline]
    pub(crate) fn latency(&mut self, m: LatencyMarker) {
        self.main.dispatch_latency(m);
    }

    /// Routes everything `out` holds, data and rejects, and tries to send it now.
    pub(crate) fn dispatch(&mut self, out: &mut Output<B>) {
        let (dead, skipped) = out.take_rejects();
        self.dead.dispatch(dead, skipped);
        if self.dead.outs.is_some() {
            // Behind the letters rejected before it (see `DeadPort`).
            let barriers: Vec<CheckpointBarrier> = out.sealed_checkpoints().collect();
            for b in barriers {
                self.dead.checkpoint(b);
            }
        }
        self.main.dispatch(out);
    }

    #[inline]
    pub(crate) fn is_flushed(&self) -> bool {
        self.main.is_flushed() && self.dead.is_flushed()
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let main = self.main.poll_flush(cx);
        let dead = self.dead.poll_flush(cx);
        if main.is_ready() && dead.is_ready() {
            Poll::Ready(())
        } else {
            self.wake_consumers();
            Poll::Pending
        }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        let dead = self.dead.poll_ready(cx);
        match self.main.poll_ready(cx) {
            Poll::Ready(Readiness::AllClosed) => Poll::Ready(Readiness::AllClosed),
            Poll::Ready(Readiness::Ready) if dead.is_ready() => Poll::Ready(Readiness::Ready),
            _ => {
                self.wake_consumers();
                Poll::Pending
            }
        }
    }

    pub(crate) fn end(&mut self) {
        self.main.end();
        self.dead.end();
    }

    /// `Ready` once every consumer of the main output has gone (see [`Outputs::poll_closed`]).
    #[inline]
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.main.poll_closed(cx)
    }

    /// Drives lossy edges (see [`Outputs::poll_lossy`]); never waits.
    #[inline]
    pub(crate) fn poll_lossy(&mut self, cx: &mut Context<'_>) {
        let _ = self.main.poll_lossy(cx);
        if let Some(dead) = &mut self.dead.outs {
            let _ = dead.poll_lossy(cx);
        }
    }
}

#[cfg(test)]
mod tests;
