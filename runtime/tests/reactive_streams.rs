//! The Reactive Streams rules that apply to batched credit, checked on a bare edge polled by
//! hand: completion only after all data, cancellation that releases the other side, and demand
//! that saturates instead of overflowing.
//!
//! The random-schedule model of the edge protocol (never more in flight than credit) is
//! `edge_schedule.rs`; the same rules on whole pipelines are in the `weir` crate's
//! `tests/reactive_streams.rs` and `tests/demand_limits.rs`.

use std::task::{Context, Poll};

use weir_runtime::test_support::{batch, guarded, CountingWaker};
use weir_runtime::{
    edge, Closed, EdgeConfig, Message, TryRecvError, TryReserveError, TrySendError,
};

// ---------------------------------------------------------------------------------------------
// Completion only after all data (rules 1.5 / 1.7)

#[test]
fn end_arrives_after_every_data_batch_on_an_edge() {
    let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(3));
    let producer = std::thread::spawn(move || {
        for i in 0..50 {
            tx.send_blocking(Message::Data(batch(i * 4, 4))).unwrap();
        }
        tx.send_blocking(Message::End).unwrap();
    });
    let received = guarded("drain", move || {
        let mut got = Vec::new();
        loop {
            match rx.recv_blocking() {
                Ok(Message::Data(b)) => got.push(b),
                Ok(Message::End) => break,
                other => panic!("unexpected {other:?} before End"),
            }
        }
        // After End, the stream is over for good.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Ended));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Ended));
        assert!(rx.is_ended());
        got
    });
    producer.join().unwrap();
    let rows: Vec<u64> = received.into_iter().flatten().collect();
    assert_eq!(rows, (0..200).collect::<Vec<_>>());
}

#[test]
fn an_aborted_producer_is_seen_only_after_its_data() {
    let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(4));
    tx.try_send(Message::Data(batch(0, 2))).unwrap();
    tx.try_send(Message::Data(batch(2, 2))).unwrap();
    drop(tx); // no End: an abort
    assert_eq!(rx.try_recv(), Ok(Message::Data(vec![0, 1])));
    assert_eq!(rx.try_recv(), Ok(Message::Data(vec![2, 3])));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

// ---------------------------------------------------------------------------------------------
// Cancellation stops emission and releases the other side (rules 3.12 / 3.13)

#[test]
fn dropping_the_inlet_wakes_a_waiting_producer_with_closed() {
    let (mut tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
    tx.try_send(Message::Data(batch(0, 1))).unwrap();
    tx.try_send(Message::Data(batch(1, 1))).unwrap();
    let (wakes, waker) = CountingWaker::new();
    let mut cx = Context::from_waker(&waker);
    assert!(tx.poll_reserve(&mut cx, 8).is_pending(), "no credit left");
    assert_eq!(wakes.count(), 0);

    drop(rx);
    assert_eq!(wakes.count(), 1, "the cancel woke the producer");
    assert!(tx.is_closed());
    assert!(matches!(
        tx.poll_reserve(&mut cx, 8),
        Poll::Ready(Err(Closed))
    ));
    assert!(matches!(tx.poll_ready(&mut cx), Poll::Ready(Err(Closed))));
    assert_eq!(tx.try_reserve(0).err(), Some(TryReserveError::Closed));
    match tx.try_send(Message::Data(vec![42])) {
        Err(TrySendError::Closed(msg)) => assert_eq!(msg, Message::Data(vec![42]), "handed back"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[test]
fn dropping_the_outlet_wakes_a_waiting_consumer() {
    let (tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
    let (wakes, waker) = CountingWaker::new();
    let mut cx = Context::from_waker(&waker);
    assert!(rx.poll_recv(&mut cx).is_pending());
    drop(tx);
    assert_eq!(wakes.count(), 1);
    assert_eq!(
        rx.poll_recv(&mut cx),
        Poll::Ready(Err(TryRecvError::Disconnected))
    );
}

// ---------------------------------------------------------------------------------------------
// Saturating demand (rule 3.17): huge bounds never overflow

#[test]
fn huge_byte_bounds_and_reservations_do_not_overflow() {
    let cfg = EdgeConfig::default()
        .with_capacity(4)
        .with_max_bytes(usize::MAX / 2)
        .with_grant_chunk(usize::MAX);
    assert_eq!(
        cfg.effective_grant_chunk(),
        4,
        "the chunk is clamped to the capacity"
    );
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    // An edge without data admits any size, however large; one with data refuses what cannot fit.
    assert!(tx.try_reserve(usize::MAX).is_ok());
    for i in 0..4 {
        tx.try_send(Message::Data(batch(i * 8, 8))).unwrap();
    }
    assert_eq!(
        tx.try_reserve(usize::MAX).err(),
        Some(TryReserveError::Full)
    );
    let s = tx.stats();
    assert_eq!(
        (s.buffered, s.outstanding_credit, s.buffered_bytes),
        (4, 0, 256)
    );
    assert_eq!(s.max_bytes, usize::MAX / 2);
    for i in 0..4 {
        assert_eq!(rx.try_recv(), Ok(Message::Data(batch(i * 8, 8))));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let s = tx.stats();
    assert_eq!(
        (s.buffered, s.outstanding_credit, s.buffered_bytes),
        (0, 4, 0)
    );
    assert_eq!((s.peak_bytes, s.rows_sent, s.rows_received), (256, 32, 32));
}
