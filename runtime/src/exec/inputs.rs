//! The receiving half of an instance: its inlets, merged fairly, with watermarks and barriers
//! combined.
//!
//! # Watermarks
//!
//! Each input keeps the highest watermark it delivered (a lower one later is ignored). The
//! instance's watermark is the minimum over the inputs that are neither ended nor idle, once
//! every one of those has delivered a watermark; it is passed on only when it advances, so it
//! never goes backwards.
//!
//! - An **ended** input no longer holds the minimum back (as if at `+∞`). When every input has
//!   ended, an instance that passed on any watermark passes on `+∞` ([`Timestamp::MAX`])
//!   before the end, so every window downstream closes even if a producer did not send it.
//! - An **idle** input ([`Message::Idle`]) is left out of the minimum until its next batch or
//!   watermark makes it active again. Its watermark from before stays: once active again it
//!   holds the minimum back from advancing further until it catches up, but what was already
//!   passed on is never taken back. When every live input is idle, the instance announces
//!   itself idle downstream (once, until an input becomes active again).
//!
//! # Checkpoint barriers
//!
//! A checkpoint barrier is *aligned*: once an input delivered barrier `n`, that input is not
//! read again (its credit is withheld: its producer stops once the edge is full, which is
//! backpressure, not buffering) until every live input that can carry barriers has delivered
//! `n`; then [`Event::Checkpoint`] is returned once and every input is read again. An ended
//! input no longer holds alignment back. A later barrier arriving while `n` aligns (`n` was
//! abandoned) restarts the alignment at the later one. Dead-letter streams carry checkpoint
//! barriers (their producers send them behind the letters rejected before) and are aligned
//! like the others, though they carry no source's own barriers.
//!
//! With an alignment timeout ([`Inputs::checkpointing`]), an alignment that lasts longer goes
//! *unaligned*: if every input still to deliver the barrier has a codec for its batches, the
//! barrier is returned at once ([`Alignment::Unaligned`]: the instance snapshots and passes it
//! on ahead of those inputs' queued batches), every input is read again, and each batch that
//! arrives on those inputs before their barrier is handed on as usual *and* captured; once
//! each of them delivered the barrier (or ended), [`Event::Captured`] hands the captured bytes
//! over, one blob per input, for the checkpoint. Without a codec on one of them the alignment
//! stays aligned ([`Alignment::StayedAligned`], counted). On restore, captured batches are
//! replayed ([`Inputs::replay`]) before anything is read from the edges.
//!
//! # Edges sized by time
//!
//! With a target time, the inputs hold a drain-rate estimate per edge (`channel/debloat.rs`)
//! and set each inlet's credit limit from it. The run loop offers samples ([`Inputs::adapt`])
//! where it has just accounted its time, with its non-idle time so far; a sample costs two
//! loads and a compare until one is due, every few milliseconds of that time. After a wait for
//! input it hands them the wait's idle time first ([`Inputs::resumed`]): the part after a
//! producer woke it, spent waiting for a worker, counts too (one clock read per such wake-up).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::barrier::{Barrier, CheckpointBarrier};
use crate::batch::{Batch, LatencyMarker, Message, Timestamp};
use crate::channel::debloat::Debloat;
use crate::channel::{Inlet, TryRecvError};
use crate::error::OperatorError;
use crate::operator::InputPort;
use crate::overflow::SpillCodec;

/// How a checkpoint barrier was aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alignment {
    /// Every input delivered it (or there was one input).
    Aligned,
    /// Past the timeout, every input delivered it in the end, because an input still to deliver
    /// it has no codec to capture its batches with.
    StayedAligned,
    /// Past the timeout, it overtook the batches of the inputs still to deliver it; those are
    /// being captured ([`Event::Captured`] follows).
    Unaligned,
}

/// What an unaligned checkpoint captured: per input index, its batches, encoded; or why it
/// could not.
pub(crate) type Captured = Result<Vec<(usize, Vec<u8>)>, String>;

/// An unaligned checkpoint capturing the batches of the inputs still to deliver its barrier.
struct Capture {
    id: u64,
    /// Per input: still capturing, and what it captured (length-prefixed encodings).
    inputs: Vec<Option<Vec<u8>>>,
    /// The inputs done, with what they captured.
    done: Vec<(usize, Vec<u8>)>,
    failed: Option<String>,
}

pub(crate) enum Event<B> {
    /// A batch, with its bytes as the edge counted them.
    Data(InputPort, B, usize),
    /// The minimum watermark over live inputs advanced.
    Watermark(Timestamp),
    /// A source's barrier arrived on every live input that can carry its barriers.
    Barrier(Barrier),
    /// A checkpoint barrier arrived on every live input that can carry it, or overtook the
    /// batches of those that had not delivered it yet (see the module docs).
    Checkpoint(CheckpointBarrier, Alignment),
    /// Every input an unaligned checkpoint captured delivered its barrier: the captured bytes.
    Captured(u64, Captured),
    /// Every live input is idle (see the module docs).
    Idle,
    /// A latency marker arrived: passed on at once, it changes nothing else (not the
    /// watermark, not idleness, not barriers).
    Latency(LatencyMarker),
    /// Every input has ended.
    End,
}

struct Input<B: Batch> {
    port: InputPort,
    inlet: Inlet<B>,
    watermark: Option<Timestamp>,
    ended: bool,
    /// It announced idleness and has sent nothing since.
    idle: bool,
    /// The source instances whose barriers this input can carry (what reaches its producer),
    /// and the highest barrier of each it delivered.
    origins: Vec<(u32, Option<u64>)>,
    /// It delivered the checkpoint barrier being aligned: not read until the others have.
    blocked: bool,
    /// It can carry checkpoint barriers (it is reached from a source, is a dead-letter stream,
    /// or delivered one).
    carries: bool,
}

pub(crate) struct Inputs<B: Batch> {
    inputs: Vec<Input<B>>,
    next: usize,
    /// The input the last batch came from: where [`recycle`](Self::recycle) hands it back.
    last: usize,
    live: usize,
    watermark: Option<Timestamp>,
    /// Idleness was passed on and no input has become active since.
    idle: bool,
    /// `+∞` is owed before the end (every input ended after a watermark was passed on).
    owe_max: bool,
    /// Per source instance: the highest barrier passed on.
    barriers: Vec<(u32, u64)>,
    /// Barriers combined and not yet returned.
    ready: VecDeque<Barrier>,
    /// Drain rates per input, when the edges are sized by time.
    debloat: Option<Debloat>,
    /// The checkpoint barrier being aligned, and since when.
    aligning: Option<(u64, std::time::Instant)>,
    /// An aligned checkpoint barrier not yet returned.
    ready_checkpoint: Option<(CheckpointBarrier, Alignment)>,
    /// How long the last alignment took.
    last_alignment: std::time::Duration,
    /// After how long an alignment goes unaligned (`None`: never).
    align_timeout: Option<Duration>,
    /// The alignment's deadline.
    align_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The alignment being waited for passed its timeout and stays aligned.
    past_timeout: bool,
    /// Per input: the codec of its batches, if its stream has one.
    codecs: Vec<Option<Arc<dyn SpillCodec<B>>>>,
    /// The unaligned checkpoint capturing, if any.
    capture: Option<Capture>,
    /// A finished capture not yet returned.
    captured: Option<(u64, Captured)>,
    /// Batches restored from a checkpoint, replayed first: (input index, batch).
    replay: VecDeque<(usize, B)>,
}

impl<B: Batch> Inputs<B> {
    /// Inputs with, for each, the source instances whose barriers it can carry.
    pub(crate) fn with_origins(mut inlets: Vec<(InputPort, Inlet<B>, Arc<[u32]>)>) -> Self {
        inlets.sort_by_key(|(port, _, _)| *port);
        let live = inlets.len();
        Self {
            inputs: inlets
                .into_iter()
                .map(|(port, inlet, origins)| Input {
                    port,
                    inlet,
                    watermark: None,
                    ended: false,
                    idle: false,
                    carries: !origins.is_empty(),
                    origins: origins.iter().map(|&o| (o, None)).collect(),
                    blocked: false,
                })
                .collect(),
            next: 0,
            last: 0,
            live,
            watermark: None,
            idle: false,
            owe_max: false,
            barriers: Vec::new(),
            ready: VecDeque::new(),
            debloat: None,
            aligning: None,
            ready_checkpoint: None,
            last_alignment: std::time::Duration::ZERO,
            align_timeout: None,
            align_timer: None,
            past_timeout: false,
            codecs: Vec::new(),
            capture: None,
            captured: None,
            replay: VecDeque::new(),
        }
    }

    /// Marks the inputs on `ports` (dead-letter streams) as carrying checkpoint barriers
    /// though they carry no source's own barriers: alignment waits for them too.
    pub(crate) fn carry_checkpoints(&mut self, ports: &[InputPort]) {
        for input in &mut self.inputs {
            if ports.contains(&input.port) {
                input.carries = true;
            }
        }
    }

    /// Sets the alignment timeout (see the module docs).
    pub(crate) fn set_align_timeout(&mut self, timeout: Option<Duration>) {
        self.align_timeout = timeout;
    }

    /// Sets, per input port, the codec of its batches.
    pub(crate) fn set_codecs(&mut self, codecs: &[(InputPort, Arc<dyn SpillCodec<B>>)]) {
        self.codecs = self
            .inputs
            .iter()
            .map(|i| {
                codecs
                    .iter()
                    .find(|(p, _)| *p == i.port)
                    .map(|(_, c)| c.clone())
            })
            .collect();
    }

    /// How many input edges there are (captured data is numbered by them).
    pub(crate) fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Queues the batches input `i` captured in a checkpoint, to be handed on before anything
    /// is read.
    ///
    /// # Errors
    ///
    /// The input has no codec, or the bytes do not decode.
    pub(crate) fn replay(&mut self, i: usize, mut bytes: &[u8]) -> Result<(), OperatorError> {
        let Some(codec) = self.codecs.get(i).cloned().flatten() else {
            return Err(OperatorError::user(format!(
                "the checkpoint holds batches captured on input edge {i}, but its stream has no \
                 codec to read them (`with_spill_codec`)"
            )));
        };
        while !bytes.is_empty() {
            let bad = || OperatorError::user("a checkpoint's in-flight data is truncated");
            let (len, rest) = bytes.split_at_checked(4).ok_or_else(bad)?;
            let len = u32::from_le_bytes(len.try_into().map_err(|_| bad())?) as usize;
            let (record, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
            let batch = codec.decode(record).map_err(|e| {
                OperatorError::user(format!(
                    "a checkpoint's in-flight batch does not decode: {e}"
                ))
            })?;
            self.replay.push_back((i, batch));
            bytes = rest;
        }
        Ok(())
    }

    /// The alignment timeout passed: go unaligned if every input still to deliver the barrier
    /// can be captured; otherwise stay aligned.
    fn go_unaligned(&mut self) {
        self.align_timer = None;
        let Some((id, since)) = self.aligning else {
            return;
        };
        let waiting: Vec<usize> = (0..self.inputs.len())
            .filter(|&i| {
                let input = &self.inputs[i];
                !input.ended && input.carries && !input.blocked
            })
            .collect();
        if waiting.is_empty() {
            return;
        }
        if waiting
            .iter()
            .any(|&i| self.codecs.get(i).is_none_or(Option::is_none))
        {
            self.past_timeout = true;
            return;
        }
        let mut inputs = vec![None; self.inputs.len()];
        for &i in &waiting {
            inputs[i] = Some(Vec::new());
        }
        self.capture = Some(Capture {
            id,
            inputs,
            done: Vec::new(),
            failed: None,
        });
        for input in &mut self.inputs {
            input.blocked = false;
        }
        self.aligning = None;
        self.last_alignment = since.elapsed();
        self.ready_checkpoint = Some((CheckpointBarrier::new(id), Alignment::Unaligned));
    }

    /// Input `i` delivered a batch: captured if an unaligned checkpoint waits for its barrier.
    fn capture_batch(&mut self, i: usize, batch: &B) {
        let Some(capture) = self.capture.as_mut() else {
            return;
        };
        let Some(Some(buf)) = capture.inputs.get_mut(i) else {
            return;
        };
        let Some(codec) = self.codecs.get(i).and_then(Option::as_ref) else {
            return;
        };
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        match codec.encode(batch, buf) {
            Ok(()) => {
                let len = (buf.len() - start - 4) as u32;
                buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
            }
            Err(e) => {
                buf.truncate(start);
                capture
                    .failed
                    .get_or_insert_with(|| format!("a batch could not be captured: {e}"));
            }
        }
    }

    /// Input `i` delivered checkpoint `id`'s barrier, or ended: its capture is complete.
    fn capture_done(&mut self, i: usize, id: Option<u64>) {
        let Some(capture) = self.capture.as_mut() else {
            return;
        };
        if id.is_some_and(|id| id != capture.id) {
            return;
        }
        if let Some(slot) = capture.inputs.get_mut(i) {
            if let Some(buf) = slot.take() {
                capture.done.push((i, buf));
            }
        }
        if capture.inputs.iter().all(Option::is_none) {
            let capture = self.capture.take().expect("checked above");
            let result = match capture.failed {
                Some(e) => Err(e),
                None => Ok(capture.done),
            };
            self.captured = Some((capture.id, result));
        }
    }

    /// How long the last checkpoint alignment took (from the barrier on the first input to
    /// the barrier on the last).
    pub(crate) fn last_alignment(&self) -> std::time::Duration {
        self.last_alignment
    }

    /// Input `i` delivered checkpoint barrier `b`: it waits for the others.
    fn checkpoint_arrived(&mut self, i: usize, b: CheckpointBarrier) {
        if self.capture.as_ref().is_some_and(|c| c.id == b.id()) {
            // Its barrier ends this input's capture; it was not blocked.
            self.capture_done(i, Some(b.id()));
            return;
        }
        if self.capture.as_ref().is_some_and(|c| c.id < b.id()) {
            // A later checkpoint: the one capturing was abandoned.
            self.capture = None;
        }
        match self.aligning {
            // A barrier of a checkpoint already passed on or abandoned: nothing to align.
            Some((id, _)) if b.id() < id => return,
            Some((id, _)) if b.id() == id => {}
            _ => {
                // A new alignment (or a later checkpoint replacing an abandoned one).
                for input in &mut self.inputs {
                    input.blocked = false;
                }
                self.aligning = Some((b.id(), std::time::Instant::now()));
                self.past_timeout = false;
                self.align_timer = self
                    .align_timeout
                    .filter(|t| !t.is_zero())
                    .map(|t| Box::pin(tokio::time::sleep(t)));
            }
        }
        let input = &mut self.inputs[i];
        input.carries = true;
        input.blocked = true;
        self.check_aligned();
        if self.ready_checkpoint.is_none() && self.align_timeout.is_some_and(|t| t.is_zero()) {
            self.go_unaligned();
        }
    }

    /// If every live input that carries barriers delivered the one being aligned, it is ready.
    fn check_aligned(&mut self) {
        let Some((id, since)) = self.aligning else {
            return;
        };
        if self
            .inputs
            .iter()
            .any(|i| !i.ended && i.carries && !i.blocked)
        {
            return;
        }
        for input in &mut self.inputs {
            input.blocked = false;
        }
        self.aligning = None;
        self.align_timer = None;
        self.last_alignment = since.elapsed();
        let how = if std::mem::take(&mut self.past_timeout) {
            Alignment::StayedAligned
        } else {
            Alignment::Aligned
        };
        self.ready_checkpoint = Some((CheckpointBarrier::new(id), how));
    }

    /// Sizes the input edges by time: each one's credit limit follows its measured drain rate
    /// so that it buffers about `target` ([`PipelineConfig::edge_target_time`]); zero leaves
    /// them their capacity.
    ///
    /// [`PipelineConfig::edge_target_time`]: crate::PipelineConfig::edge_target_time
    pub(crate) fn size_by_time(&mut self, target: std::time::Duration) {
        self.debloat = Debloat::new(target, self.inputs.len());
        if self.debloat.is_some() {
            for input in &mut self.inputs {
                input.inlet.stamp_wakes();
            }
        }
    }

    /// Notes that the instance resumed from a wait that its metrics accounted as `idle_ns` of
    /// idle time: the part after a producer woke it with input is counted towards the drain
    /// rate (see [`Debloat::resumed`]). One clock read when a producer woke it, none otherwise.
    #[inline]
    pub(crate) fn resumed(&mut self, idle_ns: u64) {
        let Some(d) = self.debloat.as_mut() else {
            return;
        };
        let woken = self
            .inputs
            .iter()
            .filter_map(|i| i.inlet.take_woken_ns())
            .min();
        d.resumed(idle_ns, woken, crate::channel::debloat::clock_ns);
    }

    /// Offers a drain-rate sample: `active_ns` is the instance's non-idle time so far, as its
    /// metrics have accounted it. Cheap until a sample is due.
    #[inline]
    pub(crate) fn adapt(&mut self, active_ns: u64) {
        if self.debloat.as_ref().is_some_and(|d| d.due(active_ns)) {
            self.resize(active_ns);
        }
    }

    #[cold]
    fn resize(&mut self, active_ns: u64) {
        let Some(d) = self.debloat.as_mut() else {
            return;
        };
        let inputs = &self.inputs;
        if !d.sample(active_ns, |i| inputs[i].inlet.messages_received()) {
            return;
        }
        for (i, input) in self.inputs.iter_mut().enumerate() {
            if !input.ended {
                let limit = d.limit(i, input.inlet.capacity());
                input.inlet.set_credit_limit(limit);
            }
        }
    }

    /// Hands back the credit of everything taken so far (see [`Inlet::release_credit`]); for an
    /// instance about to wait for something other than input.
    pub(crate) fn release_credit(&mut self) {
        for input in &mut self.inputs {
            input.inlet.release_credit();
        }
    }

    /// Hands a batch the instance is done with back to the producer of the input the last
    /// batch came from (see [`Inlet::recycle`]).
    #[inline]
    pub(crate) fn recycle(&mut self, batch: B) {
        if let Some(input) = self.inputs.get_mut(self.last) {
            input.inlet.recycle(batch);
        }
    }

    /// The minimum watermark over inputs still running and not idle, if every one has reported
    /// one (and there is one).
    fn combined_watermark(&self) -> Option<Timestamp> {
        let mut min: Option<Timestamp> = None;
        for input in self.inputs.iter().filter(|i| !i.ended && !i.idle) {
            let wm = input.watermark?;
            min = Some(min.map_or(wm, |m| m.min(wm)));
        }
        min
    }

    /// The next event, polling inputs round-robin from where the last batch came from, so one
    /// busy input cannot starve another.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Event<B>, OperatorError>> {
        if let Some(b) = self.ready.pop_front() {
            return Poll::Ready(Ok(Event::Barrier(b)));
        }
        if let Some((b, how)) = self.ready_checkpoint.take() {
            return Poll::Ready(Ok(Event::Checkpoint(b, how)));
        }
        if let Some((id, captured)) = self.captured.take() {
            return Poll::Ready(Ok(Event::Captured(id, captured)));
        }
        if let Some((i, batch)) = self.replay.pop_front() {
            let bytes = batch.bytes();
            self.last = i;
            return Poll::Ready(Ok(Event::Data(self.inputs[i].port, batch, bytes)));
        }
        if let Some(timer) = self.align_timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                self.go_unaligned();
                if let Some((b, how)) = self.ready_checkpoint.take() {
                    return Poll::Ready(Ok(Event::Checkpoint(b, how)));
                }
            }
        }
        if self.owe_max {
            self.owe_max = false;
            self.watermark = Some(Timestamp::MAX);
            return Poll::Ready(Ok(Event::Watermark(Timestamp::MAX)));
        }
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            loop {
                let input = &mut self.inputs[i];
                if input.ended || input.blocked {
                    break;
                }
                match input.inlet.poll_recv(cx) {
                    Poll::Ready(Ok(Message::Data(batch))) => {
                        if input.idle {
                            input.idle = false;
                            self.idle = false;
                        }
                        self.next = (i + 1) % n;
                        self.last = i;
                        let bytes = input.inlet.last_bytes();
                        let port = input.port;
                        if self.capture.is_some() {
                            self.capture_batch(i, &batch);
                        }
                        return Poll::Ready(Ok(Event::Data(port, batch, bytes)));
                    }
                    Poll::Ready(Ok(Message::Watermark(ts))) => {
                        if input.idle {
                            input.idle = false;
                            self.idle = false;
                        }
                        if input.watermark.is_none_or(|w| ts > w) {
                            input.watermark = Some(ts);
                        }
                        if let Some(wm) = self.advance_watermark() {
                            return Poll::Ready(Ok(Event::Watermark(wm)));
                        }
                    }
                    Poll::Ready(Ok(Message::Barrier(b))) => {
                        match input.origins.iter_mut().find(|(o, _)| *o == b.origin()) {
                            Some((_, at)) => *at = Some(at.map_or(b.id(), |a| a.max(b.id()))),
                            // Not foreseen from the graph (a test's hand-made inputs): learned.
                            None => input.origins.push((b.origin(), Some(b.id()))),
                        }
                        self.advance_barrier(b.origin());
                        if let Some(b) = self.ready.pop_front() {
                            return Poll::Ready(Ok(Event::Barrier(b)));
                        }
                    }
                    Poll::Ready(Ok(Message::Checkpoint(b))) => {
                        self.checkpoint_arrived(i, b);
                        if let Some((b, how)) = self.ready_checkpoint.take() {
                            return Poll::Ready(Ok(Event::Checkpoint(b, how)));
                        }
                        if let Some((id, captured)) = self.captured.take() {
                            return Poll::Ready(Ok(Event::Captured(id, captured)));
                        }
                        if !self.inputs[i].blocked {
                            continue;
                        }
                        // Blocked now: the other inputs are read.
                        break;
                    }
                    // Not data: an idle input stays idle, and the round-robin stays put.
                    Poll::Ready(Ok(Message::Latency(m))) => {
                        return Poll::Ready(Ok(Event::Latency(m)));
                    }
                    Poll::Ready(Ok(Message::Idle)) => {
                        input.idle = true;
                        // Without it, the others' minimum may advance.
                        if let Some(wm) = self.advance_watermark() {
                            return Poll::Ready(Ok(Event::Watermark(wm)));
                        }
                        if self.all_idle() {
                            return Poll::Ready(Ok(Event::Idle));
                        }
                    }
                    Poll::Ready(Ok(Message::End)) | Poll::Ready(Err(TryRecvError::Ended)) => {
                        input.ended = true;
                        self.live -= 1;
                        if self.live == 0 && self.watermark.is_some_and(|w| w < Timestamp::MAX) {
                            self.owe_max = true;
                        }
                        // Without this input, other sources' barriers may pass.
                        let origins: Vec<u32> = input.origins.iter().map(|(o, _)| *o).collect();
                        // Without this input, a checkpoint barrier may be aligned.
                        self.check_aligned();
                        self.capture_done(i, None);
                        if let Some((b, how)) = self.ready_checkpoint.take() {
                            for o in origins {
                                self.advance_barrier(o);
                            }
                            return Poll::Ready(Ok(Event::Checkpoint(b, how)));
                        }
                        if let Some((id, captured)) = self.captured.take() {
                            for o in origins {
                                self.advance_barrier(o);
                            }
                            return Poll::Ready(Ok(Event::Captured(id, captured)));
                        }
                        for o in origins {
                            self.advance_barrier(o);
                        }
                        if let Some(wm) = self.advance_watermark() {
                            return Poll::Ready(Ok(Event::Watermark(wm)));
                        }
                        if let Some(b) = self.ready.pop_front() {
                            return Poll::Ready(Ok(Event::Barrier(b)));
                        }
                        if self.owe_max {
                            self.owe_max = false;
                            self.watermark = Some(Timestamp::MAX);
                            return Poll::Ready(Ok(Event::Watermark(Timestamp::MAX)));
                        }
                        // The inputs left may all be idle.
                        if self.all_idle() {
                            return Poll::Ready(Ok(Event::Idle));
                        }
                    }
                    Poll::Ready(Err(TryRecvError::Disconnected)) => {
                        return Poll::Ready(Err(OperatorError::cancelled(format!(
                            "input {} was disconnected: its producer stopped without ending the stream",
                            input.port
                        ))));
                    }
                    Poll::Ready(Err(TryRecvError::Empty)) | Poll::Pending => break,
                }
            }
        }
        if self.live == 0 {
            Poll::Ready(Ok(Event::End))
        } else {
            Poll::Pending
        }
    }

    /// Queues source `origin`'s barrier if the lowest one delivered by every live input that
    /// can carry its barriers passed the last one passed on.
    fn advance_barrier(&mut self, origin: u32) {
        let mut min: Option<u64> = None;
        for input in self.inputs.iter().filter(|i| !i.ended) {
            if let Some((_, at)) = input.origins.iter().find(|(o, _)| *o == origin) {
                let Some(at) = *at else { return };
                min = Some(min.map_or(at, |m| m.min(at)));
            }
        }
        let Some(min) = min else { return };
        match self.barriers.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, passed)) if *passed >= min => {}
            Some((_, passed)) => {
                *passed = min;
                self.ready.push_back(Barrier::new(origin, min));
            }
            None => {
                self.barriers.push((origin, min));
                self.ready.push_back(Barrier::new(origin, min));
            }
        }
    }

    /// Whether every live input is idle and that has not been passed on yet; if so, it is now.
    fn all_idle(&mut self) -> bool {
        if self.idle || self.live == 0 {
            return false;
        }
        if self.inputs.iter().all(|i| i.ended || i.idle) {
            self.idle = true;
            return true;
        }
        false
    }

    fn advance_watermark(&mut self) -> Option<Timestamp> {
        if self.live == 0 {
            return None;
        }
        let wm = self.combined_watermark()?;
        if self.watermark.is_none_or(|w| wm > w) {
            self.watermark = Some(wm);
            Some(wm)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
