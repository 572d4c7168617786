//! The combined watermark against a model: the minimum over live, active inputs, passed on only
//! when it advances, under random interleavings of watermarks, idleness, data, latency markers
//! and ends.

use std::task::Waker;

use proptest::prelude::*;

use super::*;
use crate::channel::{edge, EdgeConfig, Outlet};

#[derive(Clone, Copy, Debug)]
enum Op {
    Data,
    Watermark(i64),
    Idle,
    /// A latency marker: seen as itself, and changing nothing else.
    Marker,
    End,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Data),
        5 => (0i64..60).prop_map(Op::Watermark),
        2 => Just(Op::Idle),
        1 => Just(Op::Marker),
        1 => Just(Op::End),
    ]
}

#[derive(Debug, PartialEq)]
enum Seen {
    Data(usize),
    Watermark(Timestamp),
    Idle,
    Marker,
    End,
}

/// The model: what an instance must pass on, computed from the inputs' states alone.
#[derive(Default)]
struct Model {
    wm: Vec<Option<i64>>,
    idle: Vec<bool>,
    ended: Vec<bool>,
    passed: Option<i64>,
    idle_out: bool,
}

impl Model {
    fn new(n: usize) -> Self {
        Self {
            wm: vec![None; n],
            idle: vec![false; n],
            ended: vec![false; n],
            ..Self::default()
        }
    }

    /// The minimum over inputs neither ended nor idle, if each has a watermark.
    fn minimum(&self) -> Option<i64> {
        let live: Vec<usize> = (0..self.wm.len())
            .filter(|&i| !self.ended[i] && !self.idle[i])
            .collect();
        if live.is_empty() {
            return None;
        }
        live.iter()
            .map(|&i| self.wm[i])
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    fn advance(&mut self, out: &mut Vec<Seen>) -> bool {
        match self.minimum() {
            Some(m) if self.passed.is_none_or(|p| m > p) => {
                self.passed = Some(m);
                out.push(Seen::Watermark(Timestamp(m)));
                true
            }
            _ => false,
        }
    }

    fn all_idle(&mut self, out: &mut Vec<Seen>) {
        let n = self.wm.len();
        let live = (0..n).filter(|&i| !self.ended[i]).count();
        if !self.idle_out && live > 0 && (0..n).all(|i| self.ended[i] || self.idle[i]) {
            self.idle_out = true;
            out.push(Seen::Idle);
        }
    }

    fn wake(&mut self, i: usize) {
        if self.idle[i] {
            self.idle[i] = false;
            self.idle_out = false;
        }
    }

    fn apply(&mut self, i: usize, op: Op) -> Vec<Seen> {
        let mut out = Vec::new();
        match op {
            Op::Data => {
                self.wake(i);
                out.push(Seen::Data(i));
            }
            Op::Watermark(t) => {
                self.wake(i);
                self.wm[i] = Some(self.wm[i].map_or(t, |w| w.max(t)));
                self.advance(&mut out);
            }
            // Not data, not time: an idle input stays idle.
            Op::Marker => out.push(Seen::Marker),
            Op::Idle => {
                self.idle[i] = true;
                if !self.advance(&mut out) {
                    self.all_idle(&mut out);
                }
            }
            Op::End => {
                self.ended[i] = true;
                if self.ended.iter().all(|e| *e) {
                    if self.passed.is_some_and(|p| p < i64::MAX) {
                        self.passed = Some(i64::MAX);
                        out.push(Seen::Watermark(Timestamp::MAX));
                    }
                    out.push(Seen::End);
                } else if !self.advance(&mut out) {
                    self.all_idle(&mut out);
                }
            }
        }
        out
    }
}

fn drain(inputs: &mut Inputs<Vec<u64>>) -> Vec<Seen> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = Vec::new();
    loop {
        match inputs.poll_next(&mut cx) {
            Poll::Ready(Ok(Event::Data(port, _, _))) => seen.push(Seen::Data(port)),
            Poll::Ready(Ok(Event::Watermark(w))) => seen.push(Seen::Watermark(w)),
            Poll::Ready(Ok(Event::Idle)) => seen.push(Seen::Idle),
            Poll::Ready(Ok(Event::Latency(_))) => seen.push(Seen::Marker),
            Poll::Ready(Ok(Event::End)) => {
                seen.push(Seen::End);
                return seen;
            }
            Poll::Ready(Ok(Event::Barrier(_) | Event::Checkpoint(..) | Event::Captured(..))) => {
                unreachable!("no barrier is sent")
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => return seen,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_watermark_is_the_minimum_over_live_active_inputs_and_never_goes_back(
        n in 1usize..4,
        script in proptest::collection::vec((0usize..4, op()), 1..60),
    ) {
        let mut outlets: Vec<Outlet<Vec<u64>>> = Vec::new();
        let mut inlets = Vec::new();
        for port in 0..n {
            let (tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(8));
            outlets.push(tx);
            inlets.push((port, rx, Arc::from(Vec::<u32>::new())));
        }
        let mut inputs = Inputs::with_origins(inlets);
        let mut model = Model::new(n);
        let mut last: Option<Timestamp> = None;
        for (i, op) in script {
            let i = i % n;
            if model.ended[i] {
                continue;
            }
            let msg = match op {
                Op::Data => Message::Data(vec![1u64]),
                Op::Watermark(t) => Message::Watermark(Timestamp(t)),
                Op::Idle => Message::Idle,
                Op::Marker => Message::Latency(crate::LatencyMarker::now(0)),
                Op::End => Message::End,
            };
            outlets[i].try_send(msg).expect("one message in flight at a time");
            let expected = model.apply(i, op);
            let seen = drain(&mut inputs);
            for s in &seen {
                if let Seen::Watermark(w) = s {
                    prop_assert!(last.is_none_or(|l| *w > l), "went back from {last:?} to {w:?}");
                    last = Some(*w);
                }
            }
            prop_assert_eq!(seen, expected);
        }
    }
}

#[test]
fn an_idle_input_rejoins_with_its_next_batch_and_holds_the_minimum_again() {
    let (mut a, ra) = edge::<Vec<u64>>(EdgeConfig::default());
    let (mut b, rb) = edge::<Vec<u64>>(EdgeConfig::default());
    let none: Arc<[u32]> = Arc::from(Vec::new());
    let mut inputs = Inputs::with_origins(vec![(0, ra, none.clone()), (1, rb, none)]);
    a.try_send(Message::Watermark(Timestamp(10))).unwrap();
    b.try_send(Message::Watermark(Timestamp(20))).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Watermark(Timestamp(10))]);
    a.try_send(Message::Idle).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Watermark(Timestamp(20))]);
    b.try_send(Message::Watermark(Timestamp(30))).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Watermark(Timestamp(30))]);
    // `a` rejoins with a batch: its watermark (10) holds the minimum again, but nothing passed
    // on goes back.
    a.try_send(Message::Data(vec![5])).unwrap();
    b.try_send(Message::Watermark(Timestamp(40))).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Data(0)]);
    a.try_send(Message::Watermark(Timestamp(35))).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Watermark(Timestamp(35))]);
    // An ended input no longer holds the minimum back; when all have ended, +∞.
    a.try_send(Message::End).unwrap();
    assert_eq!(drain(&mut inputs), vec![Seen::Watermark(Timestamp(40))]);
    b.try_send(Message::End).unwrap();
    assert_eq!(
        drain(&mut inputs),
        vec![Seen::Watermark(Timestamp::MAX), Seen::End]
    );
}

/// Polls once, naming what came.
fn next(inputs: &mut Inputs<Vec<u64>>) -> Option<String> {
    let mut cx = Context::from_waker(Waker::noop());
    match inputs.poll_next(&mut cx) {
        Poll::Ready(Ok(Event::Data(port, b, _))) => Some(format!("data {port} {b:?}")),
        Poll::Ready(Ok(Event::Checkpoint(b, how))) => {
            Some(format!("checkpoint {} {how:?}", b.id()))
        }
        Poll::Ready(Ok(Event::Captured(id, c))) => {
            let c = c.expect("captured");
            Some(format!(
                "captured {id} {:?}",
                c.iter().map(|(i, b)| (*i, b.len())).collect::<Vec<_>>()
            ))
        }
        Poll::Ready(Ok(Event::End)) => Some("end".into()),
        Poll::Ready(Ok(_)) => Some("other".into()),
        Poll::Ready(Err(e)) => panic!("{e}"),
        Poll::Pending => None,
    }
}

#[test]
fn an_input_that_delivered_a_checkpoint_barrier_is_not_read_until_every_input_has() {
    use crate::barrier::CheckpointBarrier;
    let mut outlets = Vec::new();
    let mut inlets = Vec::new();
    for port in 0..2 {
        let (tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(8));
        outlets.push(tx);
        inlets.push((port, rx, Arc::from(vec![port as u32])));
    }
    let mut inputs = Inputs::with_origins(inlets);
    let send = |o: &mut Outlet<Vec<u64>>, m| o.try_send(m).expect("room");
    send(
        &mut outlets[0],
        Message::Checkpoint(CheckpointBarrier::new(1)),
    );
    send(&mut outlets[0], Message::Data(vec![10]));
    send(&mut outlets[1], Message::Data(vec![20]));
    // Input 0 is blocked behind its barrier: only input 1's batch comes.
    assert_eq!(next(&mut inputs).as_deref(), Some("data 1 [20]"));
    assert_eq!(next(&mut inputs), None);
    send(
        &mut outlets[1],
        Message::Checkpoint(CheckpointBarrier::new(1)),
    );
    send(&mut outlets[1], Message::Data(vec![21]));
    assert_eq!(next(&mut inputs).as_deref(), Some("checkpoint 1 Aligned"));
    // Aligned: both are read again, what was behind the barriers after it.
    let mut after = vec![next(&mut inputs).unwrap(), next(&mut inputs).unwrap()];
    after.sort();
    assert_eq!(after, ["data 0 [10]", "data 1 [21]"]);
    // An input that ends no longer holds alignment back.
    send(
        &mut outlets[0],
        Message::Checkpoint(CheckpointBarrier::new(2)),
    );
    assert_eq!(next(&mut inputs), None);
    send(&mut outlets[1], Message::End);
    assert_eq!(next(&mut inputs).as_deref(), Some("checkpoint 2 Aligned"));
}

#[test]
fn past_the_alignment_timeout_the_barrier_overtakes_and_the_other_inputs_batches_are_captured() {
    use crate::barrier::CheckpointBarrier;
    use crate::overflow::{JsonCodec, SpillCodec};
    let mut outlets = Vec::new();
    let mut inlets = Vec::new();
    for port in 0..2 {
        let (tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(8));
        outlets.push(tx);
        inlets.push((port, rx, Arc::from(vec![port as u32])));
    }
    let mut inputs = Inputs::with_origins(inlets);
    let codec: Arc<dyn SpillCodec<Vec<u64>>> = Arc::new(JsonCodec);
    inputs.set_codecs(&[(0, codec.clone()), (1, codec)]);
    // A zero timeout: unaligned as soon as one input delivered the barrier.
    inputs.set_align_timeout(Some(std::time::Duration::ZERO));
    let send = |o: &mut Outlet<Vec<u64>>, m| o.try_send(m).expect("room");
    send(&mut outlets[1], Message::Data(vec![20, 21]));
    send(
        &mut outlets[0],
        Message::Checkpoint(CheckpointBarrier::new(1)),
    );
    send(&mut outlets[0], Message::Data(vec![10]));
    // Input 0's barrier comes first (round-robin from input 0) and overtakes input 1's batch.
    assert_eq!(next(&mut inputs).as_deref(), Some("checkpoint 1 Unaligned"));
    // Both are read; input 1's batch before its barrier is handed on and captured.
    let mut seen = vec![next(&mut inputs).unwrap(), next(&mut inputs).unwrap()];
    seen.sort();
    assert_eq!(seen, ["data 0 [10]", "data 1 [20, 21]"]);
    send(
        &mut outlets[1],
        Message::Checkpoint(CheckpointBarrier::new(1)),
    );
    let captured = next(&mut inputs).unwrap();
    assert!(captured.starts_with("captured 1 [(1, "), "{captured}");
    // Replayed on restore, before anything is read.
    let (tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(8));
    let mut restored = Inputs::with_origins(vec![(0, rx, Arc::from(vec![0u32]))]);
    let codec: Arc<dyn SpillCodec<Vec<u64>>> = Arc::new(JsonCodec);
    restored.set_codecs(&[(0, codec.clone())]);
    let mut bytes = Vec::new();
    let mut record = Vec::new();
    codec.encode(&vec![20, 21], &mut record).unwrap();
    bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&record);
    restored.replay(0, &bytes).unwrap();
    let mut tx = tx;
    send(&mut tx, Message::Data(vec![30]));
    assert_eq!(next(&mut restored).as_deref(), Some("data 0 [20, 21]"));
    assert_eq!(next(&mut restored).as_deref(), Some("data 0 [30]"));
}
