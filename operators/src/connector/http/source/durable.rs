//! Durable acknowledgement: the write-ahead log under an [`HttpSource`](super::HttpSource) with
//! [`Ack::Durable`](super::Ack::Durable).
//!
//! ```text
//!  request task                         syncer thread                source task
//!  ────────────                         ─────────────                ───────────
//!  offer: under `order`, each record    waits for waiters;           takes replayed records,
//!   → log.append (seq) → hand-off        one fsync covers every       then the hand-off, noting
//!  settle: wait for `synced ≥ seq`  ◄─── append made before it  ──►  the highest seq emitted;
//!   → 202                                                             a barrier every interval;
//!                                                                     barrier complete → commit
//! ```
//!
//! * **Order.** Appending to the log and sending into the hand-off happen under one lock, so
//!   the hand-off holds records in sequence order and the source emits them in that order:
//!   committing sequence number `s` (every record up to `s` handled) is then exact.
//! * **Grouped fsyncs.** A request whose records were taken waits for one fsync that covers
//!   them; a single thread runs the fsyncs back to back, each covering every append made before
//!   it started, so concurrent requests share them.
//! * **Commit, not pop.** The source emits a [barrier](weir_runtime::barrier) after the rows it
//!   handed on (at most every `commit_interval`, and before it ends); when every sink has
//!   handled the rows before it durably, the log's cursor advances to the last of them and
//!   segments holding only committed records are released. A crash at any point replays from
//!   the cursor: **at least once**, never lost.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use weir_runtime::spill::{SpillError, Wal};

use crate::connector::http::ingest::Settle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Waiter = (u64, oneshot::Sender<Result<(), String>>);

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    stop: bool,
}

struct Shared {
    wal: Arc<Wal>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The log of a durable source, its fsync thread, and the order of appends.
pub(crate) struct DurableLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Held while a request appends its records and sends them into the hand-off.
    pub(crate) order: Mutex<()>,
    /// An append or an fsync failed: the log is given up and new records are refused.
    pub(crate) broken: AtomicBool,
    /// `(barrier id, highest sequence number emitted before it)`, oldest first.
    pending: Mutex<VecDeque<(u64, u64)>>,
}

impl std::fmt::Debug for DurableLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableLog")
            .field("stats", &self.shared.wal.stats())
            .finish_non_exhaustive()
    }
}

impl DurableLog {
    /// Starts the fsync thread for `wal`.
    pub(crate) fn start(wal: Wal) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            wal: Arc::new(wal),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("weir-ingest-fsync".into())
            .spawn(move || sync_loop(&s))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            order: Mutex::new(()),
            broken: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn wal(&self) -> &Arc<Wal> {
        &self.shared.wal
    }

    /// A wait until every record appended so far is on stable storage (`None`: nothing to
    /// wait for).
    pub(crate) fn settle(&self) -> Option<Settle> {
        let wal = &self.shared.wal;
        let next = wal.next_seq();
        if next == 0 || wal.synced_below() >= next {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.stop {
                return Some(Box::pin(async { Err("the log is closed".to_string()) }));
            }
            q.waiters.push((next - 1, tx));
        }
        self.shared.wake.notify_one();
        Some(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the log's fsync thread stopped".to_string()))
        }))
    }

    /// Notes that barrier `id` follows every record up to sequence number `seq`.
    pub(crate) fn barrier_sent(&self, id: u64, seq: u64) {
        lock(&self.pending).push_back((id, seq));
    }

    /// Every sink has handled the rows before barrier `id`: commits the log up to the last of
    /// them (and every earlier barrier's).
    pub(crate) fn barrier_completed(&self, id: u64) {
        let mut upto = None;
        {
            let mut pending = lock(&self.pending);
            while pending.front().is_some_and(|&(b, _)| b <= id) {
                upto = pending.pop_front().map(|(_, seq)| seq);
            }
        }
        if let Some(seq) = upto {
            if let Err(e) = self.shared.wal.commit(seq) {
                // Not fatal for what is acknowledged: the cursor stays behind and more is
                // replayed after a restart.
                tracing::error!(error = %e, "the ingest log's commit cursor could not advance");
            }
        }
    }
}

impl DurableLog {
    /// Commits the log below `next_seq` (a checkpoint covering it is complete): fsyncs the
    /// cursor and releases the segments holding only earlier records.
    pub(crate) fn release_through(&self, next_seq: u64) -> Result<(), SpillError> {
        match next_seq.checked_sub(1) {
            Some(last) => self.shared.wal.commit(last),
            None => Ok(()),
        }
    }
}

impl Drop for DurableLog {
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs fsyncs back to back while requests wait for them, each covering every append made
/// before it started.
fn sync_loop(shared: &Shared) {
    loop {
        let batch = {
            let mut q = lock(&shared.queue);
            while q.waiters.is_empty() && !q.stop {
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.waiters.is_empty() {
                return; // stopped with nobody waiting
            }
            std::mem::take(&mut q.waiters)
        };
        let target = batch.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        let result = shared.wal.sync(target).map_err(|e| e.to_string());
        for (_, tx) in batch {
            let _ = tx.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_runtime::spill::SpillConfig;

    #[tokio::test]
    async fn settles_after_an_fsync_and_commits_by_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            DurableLog::start(Wal::open(dir.path(), SpillConfig::new(1 << 20)).unwrap()).unwrap();
        assert!(
            log.settle().is_none(),
            "nothing appended, nothing to wait for"
        );
        for i in 0..10u64 {
            log.wal().append(format!("{i}").as_bytes()).unwrap();
        }
        log.settle().expect("records to sync").await.unwrap();
        assert_eq!(log.wal().synced_below(), 10);
        assert!(log.settle().is_none(), "already durable");

        log.barrier_sent(1, 3);
        log.barrier_sent(2, 6);
        log.barrier_sent(3, 9);
        log.barrier_completed(2);
        assert_eq!(log.wal().committed_below(), 7);
        log.barrier_completed(3);
        assert_eq!(log.wal().committed_below(), 10);
        drop(log);

        let wal = Wal::open(dir.path(), SpillConfig::new(1 << 20)).unwrap();
        assert_eq!(wal.replay().count(), 0, "everything was committed");
    }
}
