//! loom models of one edge: small capacities, both sides on their own threads, every wake-up path.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p weir-runtime --release --lib loom`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use loom::future::block_on;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;

use super::*;

/// Explores every interleaving with up to two preemptions (tokio's CI bound): enough for the
/// store / fence / load handshakes here, and bounded on a 2-core machine.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

fn data(v: u64) -> Message<Vec<u64>> {
    Message::Data(vec![v])
}

/// Sends every message, waiting for credit with `poll_reserve`.
async fn send_all(tx: &mut Outlet<Vec<u64>>, msgs: Vec<Message<Vec<u64>>>) -> Result<(), Closed> {
    for msg in msgs {
        let bytes = msg.bytes();
        std::future::poll_fn(|cx| tx.poll_reserve(cx, bytes).map(|r| r.map(|_| ()))).await?;
        match tx.try_send(msg) {
            Ok(()) => {}
            // The consumer may close between the reservation and the send.
            Err(TrySendError::Closed(_)) => return Err(Closed),
            Err(TrySendError::Full(_)) => panic!("room was reserved, yet the edge is full"),
        }
    }
    Ok(())
}

async fn recv<B: Batch>(rx: &mut Inlet<B>) -> Result<Message<B>, TryRecvError> {
    std::future::poll_fn(|cx| rx.poll_recv(cx)).await
}

#[test]
fn delivers_in_order_with_chunked_credit() {
    model(|| {
        // Two slots re-granted only as a pair: the producer must wait for the chunk.
        let cfg = EdgeConfig::default().with_capacity(2).with_grant_chunk(2);
        let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
        let producer = thread::spawn(move || {
            block_on(send_all(&mut tx, vec![data(1), data(2), Message::End])).unwrap();
        });
        let mut got = Vec::new();
        loop {
            match block_on(recv(&mut rx)).unwrap() {
                Message::Data(v) => got.extend(v),
                Message::End => break,
                other => panic!("unexpected {other:?}"),
            }
            let s = rx.stats();
            assert!(s.buffered + s.outstanding_credit <= s.capacity);
        }
        producer.join().unwrap();
        assert_eq!(got, vec![1, 2]);
    });
}

#[test]
fn byte_bound_wakes_producer() {
    model(|| {
        // Three slots, but bytes admit only one 8-byte batch at a time.
        let cfg = EdgeConfig::default().with_capacity(3).with_max_bytes(8);
        let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
        let producer = thread::spawn(move || {
            block_on(send_all(&mut tx, vec![data(1), data(2), Message::End])).unwrap();
        });
        let mut got = Vec::new();
        loop {
            match block_on(recv(&mut rx)).unwrap() {
                Message::Data(v) => got.extend(v),
                Message::End => break,
                other => panic!("unexpected {other:?}"),
            }
            assert!(rx.stats().buffered_bytes <= 8);
        }
        producer.join().unwrap();
        assert_eq!(got, vec![1, 2]);
    });
}

#[test]
fn consumer_close_releases_a_waiting_producer() {
    model(|| {
        // One slot: the consumer takes one message, so the third can never be sent and the
        // producer must end up parked, then released by the close.
        let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(1));
        let producer =
            thread::spawn(move || block_on(send_all(&mut tx, (0..3).map(data).collect())));
        let first = block_on(recv(&mut rx)).unwrap();
        assert_eq!(first, data(0));
        drop(rx);
        assert_eq!(producer.join().unwrap(), Err(Closed));
    });
}

#[test]
fn producer_drop_releases_a_waiting_consumer() {
    model(|| {
        let (tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
        let producer = thread::spawn(move || drop(tx));
        assert_eq!(block_on(recv(&mut rx)), Err(TryRecvError::Disconnected));
        producer.join().unwrap();
    });
}

#[test]
fn unread_messages_are_dropped_exactly_once() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Owns no heap of its own (the counter is shared).
        impl crate::HeapSize for Counted {}
        let (mut tx, mut rx) = edge::<Vec<Counted>>(EdgeConfig::default().with_capacity(2));
        let d = drops.clone();
        let producer = thread::spawn(move || {
            for _ in 0..2 {
                let _ = tx.try_send(Message::Data(vec![Counted(d.clone())]));
            }
        });
        let _ = rx.try_recv();
        producer.join().unwrap();
        drop(rx);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}

/// A poll that must be woken: the future returns Pending once, and loom checks the wake arrives.
#[test]
fn pending_reserve_is_woken_by_grant() {
    model(|| {
        let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(1));
        tx.try_send(data(7)).unwrap();
        let consumer = thread::spawn(move || {
            let got = block_on(recv(&mut rx)).unwrap();
            assert_eq!(got, data(7));
            rx
        });
        struct Reserve<'a>(&'a mut Outlet<Vec<u64>>);
        impl Future for Reserve<'_> {
            type Output = Result<(), Closed>;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                self.0.poll_reserve(cx, 8).map(|r| r.map(|_| ()))
            }
        }
        block_on(Reserve(&mut tx)).unwrap();
        let _rx = consumer.join().unwrap();
    });
}

/// A batch that counts how often it is dropped, and recycles itself.
struct Buf(Arc<AtomicUsize>, u64);

impl Drop for Buf {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Batch for Buf {
    fn rows(&self) -> usize {
        1
    }
    fn bytes(&self) -> usize {
        8
    }
    fn recycle(self) -> Option<Self> {
        Some(self)
    }
}

#[test]
fn recycled_buffers_are_reused_or_dropped_exactly_once() {
    model(|| {
        // One slot each way: the consumer's second spare finds the return path full, unless
        // the producer took the first meanwhile.
        let drops = Arc::new(AtomicUsize::new(0));
        let cfg = EdgeConfig::default().with_capacity(1);
        let (mut tx, mut rx) = edge::<Buf>(cfg);
        let d = drops.clone();
        let producer = thread::spawn(move || {
            let mut made = 0;
            let mut reused = 0;
            for i in 0..2 {
                let buf = match tx.take_spare() {
                    Some(mut b) => {
                        reused += 1;
                        b.1 = i;
                        b
                    }
                    None => {
                        made += 1;
                        Buf(d.clone(), i)
                    }
                };
                let msg = Message::Data(buf);
                block_on(std::future::poll_fn(|cx| {
                    tx.poll_reserve(cx, 8).map(|r| r.map(|_| ()))
                }))
                .unwrap();
                assert!(tx.try_send(msg).is_ok());
                // Spares are not data: the edge holds exactly what was sent and not received.
                assert!(tx.stats().buffered <= 1);
            }
            (made, reused, tx)
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            match block_on(recv(&mut rx)).unwrap() {
                Message::Data(b) => {
                    got.push(b.1);
                    rx.recycle(b);
                }
                other => panic!("unexpected {:?}", other.rows()),
            }
        }
        let (made, reused, tx) = producer.join().unwrap();
        assert_eq!(got, vec![0, 1]);
        assert_eq!(made + reused, 2);
        drop(tx);
        drop(rx);
        // Every buffer made was dropped once: reused, left as a spare, or dropped on a full path.
        assert_eq!(drops.load(Ordering::SeqCst), made);
    });
}

#[test]
fn a_parked_consumer_is_woken_once_per_turn_of_deferred_sends() {
    model(|| {
        let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
        tx.set_deferred_wakes(true);
        let producer = thread::spawn(move || {
            tx.try_send(data(1)).unwrap();
            tx.try_send(data(2)).unwrap();
            // End of the turn: one wake-up, and only if the consumer parked.
            tx.flush_wake();
            tx
        });
        assert_eq!(block_on(recv(&mut rx)).unwrap(), data(1));
        assert_eq!(block_on(recv(&mut rx)).unwrap(), data(2));
        let _tx = producer.join().unwrap();
    });
}

/// Fills an edge of three slots on this thread (all its first credit), then lets a producer
/// thread wait for credit to send a fourth message.
fn full_edge_and_a_waiting_producer() -> (Inlet<Vec<u64>>, thread::JoinHandle<Outlet<Vec<u64>>>) {
    // Re-granted only all at once until the limit is lowered (which shrinks the chunk).
    let cfg = EdgeConfig::default().with_capacity(3).with_grant_chunk(3);
    let (mut tx, rx) = edge::<Vec<u64>>(cfg);
    for v in 1..=3 {
        tx.try_send(data(v)).unwrap();
    }
    let producer = thread::spawn(move || {
        block_on(send_all(&mut tx, vec![data(4)])).unwrap();
        tx
    });
    (rx, producer)
}

fn assert_credit_within_capacity(rx: &Inlet<Vec<u64>>) {
    let s = rx.stats();
    assert!(s.buffered + s.outstanding_credit <= s.capacity);
    assert_eq!(s.credit_limit, rx.credit_limit());
}

/// The consumer lowers its credit limit while the producer waits for credit, then raises it:
/// the raise grants at once and wakes the producer (a lost wake-up deadlocks the model),
/// nothing is lost or reordered, and credit never exceeds the capacity.
#[test]
fn credit_limit_lowered_and_raised_while_the_producer_waits() {
    model(|| {
        let (mut rx, producer) = full_edge_and_a_waiting_producer();
        // Lowered under credit already granted: nothing is taken back.
        rx.set_credit_limit(2);
        assert_credit_within_capacity(&rx);
        // Two buffered after this: at the lowered limit, so nothing is re-granted yet.
        assert_eq!(block_on(recv(&mut rx)).unwrap(), data(1));
        assert_credit_within_capacity(&rx);
        // Raised while the producer may be parked for credit: granted at once, and woken.
        rx.set_credit_limit(3);
        assert_credit_within_capacity(&rx);
        for v in 2..=4 {
            assert_eq!(block_on(recv(&mut rx)).unwrap(), data(v));
            assert_credit_within_capacity(&rx);
        }
        let _tx = producer.join().unwrap();
    });
}

/// Lowered while the producer waits, and never raised: the re-grant comes once occupancy
/// falls below the new limit, and wakes the producer.
#[test]
fn a_lowered_limit_still_regrants_below_it() {
    model(|| {
        let (mut rx, producer) = full_edge_and_a_waiting_producer();
        rx.set_credit_limit(2);
        for v in 1..=4 {
            assert_eq!(block_on(recv(&mut rx)).unwrap(), data(v));
            assert_credit_within_capacity(&rx);
        }
        let _tx = producer.join().unwrap();
    });
}
