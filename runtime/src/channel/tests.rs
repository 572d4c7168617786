//! Unit tests of the edge protocol on real threads-free polling: every credit path is asserted as
//! "pending, then woken".

use std::sync::Arc;
use std::task::{Context, Poll};

use super::*;
use crate::test_support::CountingWaker;

fn data(n: usize) -> Message<Vec<u64>> {
    let mut v = Vec::with_capacity(n);
    v.extend(0..n as u64);
    Message::Data(v)
}

#[test]
fn never_more_messages_than_credit() {
    let (mut tx, _rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(3));
    for _ in 0..3 {
        tx.try_send(data(1)).unwrap();
    }
    assert!(matches!(tx.try_send(data(1)), Err(TrySendError::Full(_))));
    assert_eq!(tx.try_reserve(0).err(), Some(TryReserveError::Full));
    let s = tx.stats();
    assert_eq!((s.buffered, s.outstanding_credit), (3, 0));
}

#[test]
fn credit_is_regranted_in_chunks_and_wakes_the_producer() {
    let cfg = EdgeConfig::default().with_capacity(4); // chunk = 2
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    for _ in 0..4 {
        tx.try_send(data(1)).unwrap();
    }
    let (count, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    assert!(tx.poll_ready(&mut cx).is_pending());

    // One receive frees one slot: below the chunk, so no grant and no wake-up.
    rx.try_recv().unwrap();
    assert_eq!(count.count(), 0);
    assert_eq!(tx.stats().outstanding_credit, 0);

    // The second completes a chunk: credit for two, and the producer is woken.
    rx.try_recv().unwrap();
    assert_eq!(count.count(), 1);
    assert!(tx.poll_ready(&mut cx).is_ready());
    assert_eq!(tx.stats().outstanding_credit, 2);
    let s = tx.stats();
    assert!(s.buffered + s.outstanding_credit <= s.capacity);
}

#[test]
fn empty_consumer_grants_everything_before_parking() {
    let (mut tx, mut rx) =
        edge::<Vec<u64>>(EdgeConfig::default().with_capacity(4).with_grant_chunk(4));
    tx.try_send(data(1)).unwrap();
    rx.try_recv().unwrap();
    assert_eq!(
        tx.stats().outstanding_credit,
        3,
        "one freed slot is held back below the chunk"
    );
    let (_c, w) = CountingWaker::new();
    assert!(rx.poll_recv(&mut Context::from_waker(&w)).is_pending());
    assert_eq!(
        tx.stats().outstanding_credit,
        4,
        "parking on empty grants the rest"
    );
}

#[test]
fn consumer_is_woken_by_send_and_by_close() {
    let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default());
    let (count, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    assert!(rx.poll_recv(&mut cx).is_pending());
    tx.try_send(data(2)).unwrap();
    assert_eq!(count.count(), 1);
    assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Ok(data(2))));
    assert!(rx.poll_recv(&mut cx).is_pending());
    drop(tx);
    assert_eq!(count.count(), 2);
    assert_eq!(
        rx.poll_recv(&mut cx),
        Poll::Ready(Err(TryRecvError::Disconnected))
    );
}

#[test]
fn end_then_ended() {
    let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default());
    tx.try_send(data(1)).unwrap();
    tx.try_send(Message::End).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv(), Ok(data(1)));
    assert_eq!(rx.try_recv(), Ok(Message::End));
    assert!(rx.is_ended());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Ended));
}

#[test]
fn producer_is_woken_when_consumer_closes() {
    let (mut tx, rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(1));
    tx.try_send(data(1)).unwrap();
    let (count, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    assert!(tx.poll_ready(&mut cx).is_pending());
    drop(rx);
    assert_eq!(count.count(), 1);
    assert_eq!(tx.poll_ready(&mut cx), Poll::Ready(Err(Closed)));
    assert!(matches!(tx.try_send(data(1)), Err(TrySendError::Closed(_))));
}

#[test]
fn byte_bound_holds_and_wakes_on_freed_bytes() {
    // 8 slots but only 3 batches of 1 KiB fit the byte bound.
    let cfg = EdgeConfig::default()
        .with_capacity(8)
        .with_max_bytes(3 * 1024);
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    for _ in 0..3 {
        tx.try_send(data(128)).unwrap();
    }
    let (count, w) = CountingWaker::new();
    let mut cx = Context::from_waker(&w);
    assert!(tx.poll_reserve(&mut cx, 1024).is_pending());
    assert!(tx.stats().buffered_bytes <= 3 * 1024);
    rx.try_recv().unwrap();
    assert_eq!(
        count.count(),
        1,
        "freed bytes wake a producer waiting on bytes"
    );
    match tx.poll_reserve(&mut cx, 1024) {
        Poll::Ready(Ok(p)) => p.send(data(128)),
        other => panic!("expected room, got {:?}", other.map(|r| r.err())),
    }
    assert_eq!(tx.stats().peak_bytes, 3 * 1024);
}

#[test]
fn oversize_batch_is_admitted_only_into_an_empty_edge() {
    let cfg = EdgeConfig::default().with_capacity(4).with_max_bytes(100);
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    tx.try_send(data(4)).unwrap(); // 32 bytes
    assert!(matches!(tx.try_send(data(64)), Err(TrySendError::Full(_))));
    rx.try_recv().unwrap();
    tx.try_send(data(64)).unwrap(); // 512 bytes into an empty edge
    assert!(matches!(tx.try_send(data(1)), Err(TrySendError::Full(_))));
    assert_eq!(tx.stats().peak_bytes, 512);
}

#[test]
fn control_messages_take_slots_but_no_bytes() {
    let cfg = EdgeConfig::default().with_capacity(2).with_max_bytes(8);
    let (mut tx, _rx) = edge::<Vec<u64>>(cfg);
    tx.try_send(data(1)).unwrap();
    tx.try_send(Message::Watermark(crate::Timestamp(5)))
        .unwrap();
    assert_eq!(tx.stats().buffered_bytes, 8);
    assert!(matches!(
        tx.try_send(Message::End),
        Err(TrySendError::Full(_))
    ));
}

#[test]
fn undelivered_batches_are_dropped_with_the_edge() {
    let marker = Arc::new(());
    let (mut tx, rx) = edge::<Vec<Arc<()>>>(EdgeConfig::default());
    tx.try_send(Message::Data(vec![marker.clone(); 3])).unwrap();
    assert_eq!(Arc::strong_count(&marker), 4);
    drop(tx);
    drop(rx);
    assert_eq!(Arc::strong_count(&marker), 1);
}
