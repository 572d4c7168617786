//! One edge between two threads, against crossbeam-channel and tokio mpsc moving the same
//! batches: `batches` vectors of `rows` `u64`s.
//!
//! Every variant runs in two [`Buffers`] modes: *allocating* (the producer allocates every batch
//! and the consumer drops it) and *recycling* (the consumer hands each emptied batch back and the
//! producer refills it, allocating only when none came back). weir recycles through the edge's
//! own return path ([`Inlet::recycle`](weir_runtime::Inlet::recycle) /
//! [`Outlet::take_spare`](weir_runtime::Outlet::take_spare)); the baselines get a return channel of
//! the same kind and capacity, used without waiting (a spare that finds it full is dropped).

use std::hint::black_box;
use std::time::{Duration, Instant};

use weir_runtime::{edge, EdgeConfig, Message};

/// Where batch buffers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// Every batch is allocated by the producer and freed by the consumer.
    Allocate,
    /// Emptied batches go back to the producer, which refills them.
    Recycle,
}

impl Buffers {
    /// Both modes, allocating first.
    pub const ALL: [Buffers; 2] = [Buffers::Allocate, Buffers::Recycle];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Buffers::Allocate => "alloc",
            Buffers::Recycle => "recycle",
        }
    }
}

/// Fills batch `i` into `spare` (or a new buffer).
#[inline]
fn batch(spare: Option<Vec<u64>>, i: usize, rows: usize) -> Vec<u64> {
    let mut v = spare.unwrap_or_else(|| Vec::with_capacity(rows));
    v.extend((0..rows as u64).map(|r| r ^ i as u64));
    v
}

fn edge_config(capacity: usize) -> EdgeConfig {
    EdgeConfig::default()
        .with_capacity(capacity)
        .with_max_bytes(usize::MAX / 2)
}

/// A weir edge of `capacity` batches, both sides blocking on their own thread (the blocking
/// form: a short bounded spin, then parking).
pub fn weir(batches: usize, rows: usize, capacity: usize, buffers: Buffers) -> Duration {
    let recycle = buffers == Buffers::Recycle;
    let (mut tx, mut rx) = edge::<Vec<u64>>(edge_config(capacity));
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..batches {
            let spare = if recycle { tx.take_spare() } else { None };
            if tx
                .send_blocking(Message::Data(batch(spare, i, rows)))
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send_blocking(Message::End);
    });
    let mut acc = 0u64;
    while let Ok(Message::Data(v)) = rx.recv_blocking() {
        acc = acc.wrapping_add(v[0]);
        if recycle {
            rx.recycle(v);
        }
    }
    let _ = producer.join();
    black_box(acc);
    start.elapsed()
}

/// A weir edge between two tasks on a two-worker tokio runtime, used the way the executor uses
/// it: the producer reserves room before it sends and wakes the consumer once per turn (when it
/// must wait, or has sent a turn's worth), not once per message.
pub fn weir_async(batches: usize, rows: usize, capacity: usize, buffers: Buffers) -> Duration {
    const TURN: usize = 128;
    let recycle = buffers == Buffers::Recycle;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a two-thread runtime");
    rt.block_on(async move {
        let (mut tx, mut rx) = edge::<Vec<u64>>(edge_config(capacity));
        tx.set_deferred_wakes(true);
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..batches {
                let spare = if recycle { tx.take_spare() } else { None };
                let msg = Message::Data(batch(spare, i, rows));
                let bytes = msg.bytes();
                if std::future::poll_fn(|cx| tx.poll_reserve(cx, bytes).map(|r| r.map(|_| ())))
                    .await
                    .is_err()
                {
                    return;
                }
                if tx.try_send(msg).is_err() {
                    return;
                }
                if i % TURN == TURN - 1 {
                    tx.flush_wake();
                    tokio::task::yield_now().await;
                }
            }
            let _ = tx.try_send(Message::End);
            tx.flush_wake();
        });
        let consumer = tokio::spawn(async move {
            let mut acc = 0u64;
            while let Ok(Message::Data(v)) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                acc = acc.wrapping_add(v[0]);
                if recycle {
                    rx.recycle(v);
                }
            }
            acc
        });
        let _ = producer.await;
        black_box(consumer.await.unwrap_or_default());
        start.elapsed()
    })
}

/// A crossbeam bounded channel of `capacity` batches (recycling: a second one of the same
/// capacity carries the emptied batches back).
pub fn crossbeam(batches: usize, rows: usize, capacity: usize, buffers: Buffers) -> Duration {
    let recycle = buffers == Buffers::Recycle;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u64>>(capacity);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Vec<u64>>(capacity);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..batches {
            let spare = if recycle {
                back_rx.try_recv().ok()
            } else {
                None
            };
            if tx.send(batch(spare, i, rows)).is_err() {
                return;
            }
        }
    });
    let mut acc = 0u64;
    for mut v in rx {
        acc = acc.wrapping_add(v[0]);
        if recycle {
            v.clear();
            let _ = back_tx.try_send(v);
        }
    }
    let _ = producer.join();
    black_box(acc);
    start.elapsed()
}

/// A tokio mpsc channel of `capacity` batches between two tasks on a two-worker runtime
/// (recycling: a second one of the same capacity carries the emptied batches back).
pub fn tokio_mpsc(batches: usize, rows: usize, capacity: usize, buffers: Buffers) -> Duration {
    let recycle = buffers == Buffers::Recycle;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a two-thread runtime");
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(capacity);
        let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<Vec<u64>>(capacity);
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..batches {
                let spare = if recycle {
                    back_rx.try_recv().ok()
                } else {
                    None
                };
                if tx.send(batch(spare, i, rows)).await.is_err() {
                    return;
                }
            }
        });
        let consumer = tokio::spawn(async move {
            let mut acc = 0u64;
            while let Some(mut v) = rx.recv().await {
                acc = acc.wrapping_add(v[0]);
                if recycle {
                    v.clear();
                    let _ = back_tx.try_send(v);
                }
            }
            acc
        });
        let _ = producer.await;
        black_box(consumer.await.unwrap_or_default());
        start.elapsed()
    })
}
