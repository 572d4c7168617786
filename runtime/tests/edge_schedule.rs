//! The edge's credit protocol under random schedules, polled by hand against a FIFO model.
//!
//! After every step of a random interleaving of producer and consumer actions:
//!
//! - `buffered + outstanding_credit <= capacity` (never more batches in flight than credit);
//! - the consumer's credit limit, lowered and raised at random, is never granted past: what is
//!   in flight exceeds the limit only by credit granted before it was lowered, and never grows
//!   while it does;
//! - the edge holds exactly the model's messages, in order, and their bytes;
//! - the bytes held never exceed `max(max_bytes, one batch)`;
//! - a send succeeds only against credit and byte room, and fails only without one of them;
//! - a party parked in `poll_reserve` / `poll_recv` has been woken once its condition holds;
//! - at the end, whatever the limit, every batch and then `End` get through (no deadlock).

use std::collections::VecDeque;
use std::task::{Context, Poll};

use proptest::prelude::*;
use weir_runtime::test_support::{batch, CountingWaker};
use weir_runtime::{edge, Batch, EdgeConfig, Message, TryRecvError, TrySendError};

#[derive(Clone, Debug)]
enum Step {
    /// Producer: `poll_reserve` room for a batch of this many rows, send it if granted.
    Reserve(usize),
    /// Producer: reserve and drop the permit unused.
    ReserveDrop(usize),
    /// Producer: `try_send` a batch of this many rows.
    TrySend(usize),
    /// Consumer: `try_recv`.
    Recv,
    /// Consumer: `poll_recv`.
    PollRecv,
    /// Consumer: set the credit limit (clamped by the edge to `2..=capacity`).
    Limit(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..=12).prop_map(Step::Reserve),
        1 => (0usize..=12).prop_map(Step::ReserveDrop),
        2 => (0usize..=12).prop_map(Step::TrySend),
        3 => Just(Step::Recv),
        1 => Just(Step::PollRecv),
        1 => (0usize..=7).prop_map(Step::Limit),
    ]
}

struct Model {
    queue: VecDeque<Vec<u64>>,
    next: u64,
    max_bytes: usize,
    /// Wake count when the producer parked, and the bytes it waits for.
    producer_parked: Option<(usize, usize)>,
    consumer_parked: Option<usize>,
}

impl Model {
    fn batch(&mut self, rows: usize) -> Vec<u64> {
        let b = batch(self.next, rows);
        self.next += rows as u64 + 1;
        b
    }

    fn bytes(&self) -> usize {
        self.queue.iter().map(Batch::bytes).sum()
    }

    /// Whether the byte bound admits `bytes` more right now.
    fn byte_room(&self, bytes: usize) -> bool {
        let held = self.bytes();
        held == 0 || held.saturating_add(bytes) <= self.max_bytes
    }
}

fn run_schedule(capacity: usize, chunk: usize, max_bytes: usize, steps: Vec<Step>) {
    let cfg = EdgeConfig::default()
        .with_capacity(capacity)
        .with_grant_chunk(chunk)
        .with_max_bytes(max_bytes);
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    let (tx_wakes, tx_waker) = CountingWaker::new();
    let (rx_wakes, rx_waker) = CountingWaker::new();
    let mut m = Model {
        queue: VecDeque::new(),
        next: 0,
        max_bytes,
        producer_parked: None,
        consumer_parked: None,
    };
    let mut largest = 0;
    for (i, step) in steps.into_iter().enumerate() {
        let before = tx.stats();
        match step {
            Step::Limit(limit) => {
                rx.set_credit_limit(limit);
                assert_eq!(
                    rx.credit_limit(),
                    limit.clamp(2.min(capacity), capacity),
                    "step {i}"
                );
            }
            Step::Reserve(rows) | Step::ReserveDrop(rows) => {
                let b = m.batch(rows);
                let bytes = b.bytes();
                let send = matches!(step, Step::Reserve(_));
                let mut cx = Context::from_waker(&tx_waker);
                match tx.poll_reserve(&mut cx, bytes) {
                    Poll::Ready(Ok(permit)) => {
                        assert!(
                            before.outstanding_credit >= 1,
                            "step {i}: permit without credit"
                        );
                        assert!(m.byte_room(bytes), "step {i}: permit without byte room");
                        m.producer_parked = None;
                        if send {
                            largest = largest.max(bytes);
                            permit.send(Message::Data(b.clone()));
                            m.queue.push_back(b);
                        }
                    }
                    Poll::Ready(Err(_)) => panic!("step {i}: closed while both sides live"),
                    Poll::Pending => {
                        assert!(
                            before.outstanding_credit == 0 || !m.byte_room(bytes),
                            "step {i}: pending although credit and room were there"
                        );
                        m.producer_parked = Some((tx_wakes.count(), bytes));
                    }
                }
            }
            Step::TrySend(rows) => {
                let b = m.batch(rows);
                let bytes = b.bytes();
                m.producer_parked = None;
                match tx.try_send(Message::Data(b.clone())) {
                    Ok(()) => {
                        assert!(
                            before.outstanding_credit >= 1,
                            "step {i}: sent without credit"
                        );
                        assert!(m.byte_room(bytes), "step {i}: sent without byte room");
                        largest = largest.max(bytes);
                        m.queue.push_back(b);
                    }
                    Err(TrySendError::Full(back)) => {
                        assert_eq!(back, Message::Data(b), "step {i}: handed back intact");
                        assert!(
                            before.outstanding_credit == 0 || !m.byte_room(bytes),
                            "step {i}: refused although credit and room were there"
                        );
                    }
                    Err(TrySendError::Closed(_)) => panic!("step {i}: closed while both live"),
                }
            }
            Step::Recv => {
                m.consumer_parked = None;
                match rx.try_recv() {
                    Ok(msg) => assert_eq!(Some(msg), m.queue.pop_front().map(Message::Data)),
                    Err(TryRecvError::Empty) => assert!(m.queue.is_empty(), "step {i}"),
                    Err(e) => panic!("step {i}: {e}"),
                }
            }
            Step::PollRecv => {
                let mut cx = Context::from_waker(&rx_waker);
                match rx.poll_recv(&mut cx) {
                    Poll::Ready(Ok(msg)) => {
                        m.consumer_parked = None;
                        assert_eq!(Some(msg), m.queue.pop_front().map(Message::Data));
                    }
                    Poll::Ready(Err(e)) => panic!("step {i}: {e}"),
                    Poll::Pending => {
                        assert!(m.queue.is_empty(), "step {i}: pending with data buffered");
                        m.consumer_parked = Some(rx_wakes.count());
                    }
                }
            }
        }

        let s = tx.stats();
        assert!(
            s.buffered + s.outstanding_credit <= s.capacity,
            "step {i}: in flight beyond credit: {s:?}"
        );
        assert_eq!(s.credit_limit, rx.credit_limit(), "step {i}");
        let held = s.buffered + s.outstanding_credit;
        assert!(
            held <= s
                .credit_limit
                .max(before.buffered + before.outstanding_credit),
            "step {i}: granted past the credit limit: {s:?} after {before:?}"
        );
        assert_eq!(s.buffered, m.queue.len(), "step {i}");
        assert_eq!(s.buffered_bytes, m.bytes(), "step {i}");
        assert!(
            s.buffered_bytes <= max_bytes.max(largest),
            "step {i}: {s:?}"
        );
        assert!(s.peak_bytes <= max_bytes.max(largest), "step {i}: {s:?}");
        let in_model: usize = m.queue.iter().map(Vec::len).sum();
        assert_eq!(s.rows_in_flight(), in_model, "step {i}");
        if let Some((at, bytes)) = m.producer_parked {
            if s.outstanding_credit >= 1 && m.byte_room(bytes) {
                assert!(tx_wakes.count() > at, "step {i}: producer not woken: {s:?}");
            }
        }
        if let Some(at) = m.consumer_parked {
            if !m.queue.is_empty() {
                assert!(rx_wakes.count() > at, "step {i}: consumer not woken");
            }
        }
    }

    // Finally: End goes after everything, and the consumer sees it last.
    drop(tx_waker);
    let rest: Vec<Vec<u64>> = m.queue.drain(..).collect();
    let mut got = Vec::new();
    let mut ended = false;
    let mut tx_end_sent = false;
    for _ in 0..(rest.len() + capacity + 4) * 2 {
        if !tx_end_sent && tx.try_send(Message::End).is_ok() {
            tx_end_sent = true;
        }
        match rx.try_recv() {
            Ok(Message::Data(b)) => got.push(b),
            Ok(Message::End) => {
                ended = true;
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(TryRecvError::Empty) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ended, "End was delivered");
    assert_eq!(got, rest, "End came after every batch");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Ended));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn credit_bounds_in_flight_batches_on_random_schedules(
        capacity in 1usize..=6,
        chunk in 0usize..=7,
        max_bytes in prop_oneof![Just(1usize), 8usize..=128, Just(usize::MAX / 2)],
        steps in proptest::collection::vec(step(), 1..160),
    ) {
        run_schedule(capacity, chunk, max_bytes, steps);
    }
}
