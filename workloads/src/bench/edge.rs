//! One edge between two threads, against crossbeam-channel and tokio mpsc moving the same
//! batches: `batches` vectors of `rows` `u64`s, allocated by the producer and dropped by the
//! consumer in every variant.

use std::hint::black_box;
use std::time::{Duration, Instant};

use weir_runtime::{edge, EdgeConfig, Message};

fn batch(i: usize, rows: usize) -> Vec<u64> {
    let mut v = Vec::with_capacity(rows);
    v.extend((0..rows as u64).map(|r| r ^ i as u64));
    v
}

/// A weir edge of `capacity` batches, both sides blocking on their own thread (parking at once
/// when they must wait: weir never spins for data or credit).
pub fn weir(batches: usize, rows: usize, capacity: usize) -> Duration {
    let cfg = EdgeConfig::default()
        .with_capacity(capacity)
        .with_max_bytes(usize::MAX / 2);
    let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..batches {
            if tx.send_blocking(Message::Data(batch(i, rows))).is_err() {
                return;
            }
        }
        let _ = tx.send_blocking(Message::End);
    });
    let mut acc = 0u64;
    while let Ok(Message::Data(v)) = rx.recv_blocking() {
        acc = acc.wrapping_add(v[0]);
    }
    let _ = producer.join();
    black_box(acc);
    start.elapsed()
}

/// A weir edge between two tasks on a two-worker tokio runtime, used the way the executor uses
/// it: the producer reserves room before it sends and wakes the consumer once per turn (when it
/// must wait, or has sent a turn's worth), not once per message.
pub fn weir_async(batches: usize, rows: usize, capacity: usize) -> Duration {
    const TURN: usize = 128;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a two-thread runtime");
    let cfg = EdgeConfig::default()
        .with_capacity(capacity)
        .with_max_bytes(usize::MAX / 2);
    rt.block_on(async move {
        let (mut tx, mut rx) = edge::<Vec<u64>>(cfg);
        tx.set_deferred_wakes(true);
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..batches {
                let msg = Message::Data(batch(i, rows));
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
        });
        let consumer = tokio::spawn(async move {
            let mut acc = 0u64;
            while let Ok(Message::Data(v)) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                acc = acc.wrapping_add(v[0]);
            }
            acc
        });
        let _ = producer.await;
        black_box(consumer.await.unwrap_or_default());
        start.elapsed()
    })
}

/// A crossbeam bounded channel of `capacity` batches.
pub fn crossbeam(batches: usize, rows: usize, capacity: usize) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u64>>(capacity);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..batches {
            if tx.send(batch(i, rows)).is_err() {
                return;
            }
        }
    });
    let mut acc = 0u64;
    for v in rx {
        acc = acc.wrapping_add(v[0]);
    }
    let _ = producer.join();
    black_box(acc);
    start.elapsed()
}

/// A tokio mpsc channel of `capacity` batches between two tasks on a two-worker runtime.
pub fn tokio_mpsc(batches: usize, rows: usize, capacity: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a two-thread runtime");
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(capacity);
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..batches {
                if tx.send(batch(i, rows)).await.is_err() {
                    return;
                }
            }
        });
        let consumer = tokio::spawn(async move {
            let mut acc = 0u64;
            while let Some(v) = rx.recv().await {
                acc = acc.wrapping_add(v[0]);
            }
            acc
        });
        let _ = producer.await;
        black_box(consumer.await.unwrap_or_default());
        start.elapsed()
    })
}
