//! Checkpoints in the executor: the coordinator, and what every instance shares with it.
//!
//! # Protocol
//!
//! ```text
//!  coordinator                    source instance        operator / sink instance
//!  ───────────                    ───────────────        ────────────────────────
//!  begin chk-n in the store
//!  requested := n, wake sources ─▶ between two batches:
//!                                 position → blob
//!                                 emit barrier n ──────▶ aligned on every input edge:
//!                                 ack(n)                 (an edge that delivered n is not read)
//!                                                        state → blob, pass barrier n on, ack(n)
//!                                                        (a sink: pre-commit, state, ack(n))
//!  every instance acked n:
//!  commit (manifest last)
//!  committed := n, wake sinks ──────────────────────────▶ sink: commit(n), between batches
//!       and sources ─────────────▶ notify_checkpoint_complete(n),
//!                                 between batches, before
//!                                 its next snapshot
//! ```
//!
//! - **One in flight.** The coordinator triggers checkpoint `n + 1` only once `n` completed or
//!   failed, on the interval or on demand ([`RunHandle::checkpoint_now`]).
//! - **Who acknowledges.** Every instance of every operator reachable from a source through
//!   main or dead-letter streams (chained operators included: their task acknowledges for each
//!   link). A dead-letter port sends each barrier behind the letters rejected before it, so a
//!   dead-letter sink pre-commits and commits by checkpoint like the others.
//! - **Blobs.** An instance writes its blob into the pending checkpoint on its own task,
//!   before it acknowledges (the store's blob writers are independent files); the
//!   coordinator's commit then fsyncs the directory and writes the manifest.
//! - **Failure.** An instance that cannot snapshot, or a blob that cannot be written, fails
//!   the checkpoint, not the run: the coordinator aborts it, counts it, and the next one goes
//!   on. Sinks never see a commit of a failed checkpoint; the next commit covers its rows.
//! - **End of input.** Once any source instance has ended, no checkpoint is triggered again
//!   (its position could not be recorded); one in flight is left partial, which the store's
//!   retention removes later. Sinks publish at the end as without checkpoints.
//! - **Wake-ups.** Sources and sinks that wait for something else register their waker here
//!   (under a mutex, only when they park); the coordinator stores the new id before it takes
//!   and wakes them, and a waiter checks the id again after registering, so no trigger or
//!   commit is missed.
//!
//! [`RunHandle::checkpoint_now`]: crate::RunHandle::checkpoint_now

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::checkpoint::{
    BlobName, CheckpointError, CheckpointMeta, CheckpointStore, CompletedCheckpoint,
    PendingCheckpoint, SnapshotReader, SnapshotWriter,
};
use crate::config::CheckpointConfig;
use crate::error::OperatorError;
use crate::exec::inputs::{Alignment, Captured};
use crate::metrics::CheckpointStats;
use crate::operator::{InstanceInfo, Operator};

/// The checkpoint in flight.
struct InFlight {
    id: u64,
    pending: Option<Arc<PendingCheckpoint>>,
    remaining: usize,
    started: Instant,
    bytes: u64,
    alignment: Duration,
    error: Option<String>,
}

/// What the coordinator and every instance of a checkpointed run share.
pub(crate) struct Checkpoints {
    max_parallelism: u32,
    /// The highest checkpoint triggered (0: none).
    requested: AtomicU64,
    /// The highest checkpoint committed (0: none).
    committed: AtomicU64,
    /// A source instance has ended: no checkpoint can include it any more.
    source_ended: AtomicBool,
    /// Sources and sinks parked while a trigger or a commit may come.
    wakers: Mutex<Vec<Waker>>,
    in_flight: Mutex<Option<InFlight>>,
    /// Wakes the coordinator: an acknowledgement completed a checkpoint, or one was asked for.
    notify: Notify,
    on_demand: AtomicBool,
    pub(crate) stats: Arc<CheckpointStats>,
    /// The checkpoint the run restores from, if any.
    restore: Option<CompletedCheckpoint>,
    /// After how long an alignment goes unaligned.
    align_timeout: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is whole when it returns: a poisoned one is consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Checkpoints {
    /// The number of key groups.
    pub(crate) fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// After how long an alignment goes unaligned.
    pub(crate) fn align_timeout(&self) -> Option<Duration> {
        self.align_timeout
    }

    /// The batches instance `instance` of `name` captured on each of its `inputs` input edges
    /// in the checkpoint the run restores, to replay before new input.
    pub(crate) fn restore_in_flight(
        &self,
        name: &str,
        instance: usize,
        inputs: usize,
    ) -> Result<Vec<(usize, Vec<u8>)>, OperatorError> {
        let Some(chk) = &self.restore else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for i in 0..inputs {
            let blob = BlobName::in_flight(name, instance as u32, i as u32);
            if chk.contains(&blob) {
                let bytes = chk.read(&blob).map_err(|e| {
                    OperatorError::external("could not read its in-flight data to restore", e)
                })?;
                out.push((i, bytes));
            }
        }
        Ok(out)
    }

    /// Acknowledges checkpoint `id` for an instance whose inputs aligned it `how`; an
    /// unaligned one is held until its capture is done ([`captured`](Self::captured)).
    pub(crate) fn aligned(
        &self,
        held: &mut Option<HeldAck>,
        id: u64,
        how: Alignment,
        blobs: Result<Vec<(BlobName, Vec<u8>)>, String>,
        alignment: Duration,
    ) {
        match how {
            Alignment::Unaligned => {
                *held = Some(HeldAck {
                    id,
                    blobs,
                    alignment,
                });
            }
            Alignment::StayedAligned => {
                self.stats.note_stayed_aligned();
                self.ack(id, blobs, alignment);
            }
            Alignment::Aligned => self.ack(id, blobs, alignment),
        }
    }

    /// An unaligned checkpoint's capture is done: the held acknowledgement goes, with the
    /// captured batches as in-flight blobs.
    pub(crate) fn captured(
        &self,
        held: &mut Option<HeldAck>,
        info: &InstanceInfo,
        id: u64,
        captured: Captured,
    ) {
        let Some(h) = held.take().filter(|h| h.id == id) else {
            return;
        };
        let blobs = h.blobs.and_then(|mut blobs| {
            let captured = captured?;
            let bytes: usize = captured.iter().map(|(_, b)| b.len()).sum();
            self.stats.note_unaligned(bytes as u64);
            for (i, data) in captured.into_iter().filter(|(_, d)| !d.is_empty()) {
                blobs.push((
                    BlobName::in_flight(&*info.name, info.instance as u32, i as u32),
                    data,
                ));
            }
            Ok(blobs)
        });
        self.ack(id, blobs, h.alignment);
    }

    /// The checkpoint a source instance that emitted up to `last` should emit now, if any.
    #[inline]
    pub(crate) fn due(&self, last: u64) -> Option<u64> {
        let n = self.requested.load(Ordering::Acquire);
        (n > last).then_some(n)
    }

    /// [`due`](Self::due), arranging a wake-up through `cx` if nothing is.
    pub(crate) fn poll_due(&self, cx: &mut Context<'_>, last: u64) -> Poll<u64> {
        if let Some(n) = self.due(last) {
            return Poll::Ready(n);
        }
        self.register(cx);
        match self.due(last) {
            Some(n) => Poll::Ready(n),
            None => Poll::Pending,
        }
    }

    /// The highest committed checkpoint.
    #[inline]
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// `Ready` once checkpoint `id` (or a later one) is committed; a wake-up is arranged
    /// otherwise.
    pub(crate) fn poll_committed(&self, cx: &mut Context<'_>, id: u64) -> Poll<()> {
        if self.committed() >= id {
            return Poll::Ready(());
        }
        self.register(cx);
        if self.committed() >= id {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn register(&self, cx: &mut Context<'_>) {
        let mut wakers = lock(&self.wakers);
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }

    /// A source instance has ended.
    pub(crate) fn source_ended(&self) {
        self.source_ended.store(true, Ordering::Release);
    }

    /// Asks for a checkpoint now (at once if none is in flight, else right after it).
    pub(crate) fn trigger_now(&self) {
        self.on_demand.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// An instance acknowledges checkpoint `id`, with its blobs (written here, on its task)
    /// and the time it spent aligning; `Err` fails the checkpoint (not the run).
    pub(crate) fn ack(
        &self,
        id: u64,
        blobs: Result<Vec<(BlobName, Vec<u8>)>, String>,
        alignment: Duration,
    ) {
        let pending = {
            let guard = lock(&self.in_flight);
            match guard.as_ref() {
                Some(f) if f.id == id => f.pending.clone(),
                // A checkpoint that was abandoned: nothing to do.
                _ => return,
            }
        };
        let mut bytes = 0;
        let written = blobs.and_then(|blobs| {
            let Some(pending) = &pending else {
                return Ok(());
            };
            for (name, blob) in blobs {
                bytes += blob.len() as u64;
                pending
                    .put(&name, &blob)
                    .map_err(|e: CheckpointError| e.to_string())?;
            }
            Ok(())
        });
        // The writer's handle goes before the count does: the coordinator's commit takes the
        // pending checkpoint back by value.
        drop(pending);
        let done = {
            let mut guard = lock(&self.in_flight);
            let Some(f) = guard.as_mut().filter(|f| f.id == id) else {
                return;
            };
            f.bytes += bytes;
            f.alignment = f.alignment.max(alignment);
            if let Err(e) = written {
                f.error.get_or_insert(e);
            }
            f.remaining = f.remaining.saturating_sub(1);
            f.remaining == 0 || f.error.is_some()
        };
        if done {
            self.notify.notify_one();
        }
    }

    /// The position source instance `instance` of `name` restores from, if the run restores
    /// one.
    pub(crate) fn restore_position(
        &self,
        name: &str,
        instance: usize,
    ) -> Result<Option<Vec<u8>>, OperatorError> {
        let Some(chk) = &self.restore else {
            return Ok(None);
        };
        let blob = BlobName::source_position(name, instance as u32);
        if !chk.contains(&blob) {
            return Ok(None);
        }
        chk.read(&blob)
            .map(Some)
            .map_err(|e| OperatorError::external("could not read its position to restore", e))
    }

    /// The state operator (or sink) instance `instance` of `name`, now at `parallelism`,
    /// restores from, if the run restores a checkpoint.
    pub(crate) fn restore_state(
        &self,
        name: &str,
        instance: usize,
        parallelism: usize,
    ) -> Result<Option<SnapshotReader>, OperatorError> {
        let Some(chk) = &self.restore else {
            return Ok(None);
        };
        let fail = |e: CheckpointError| OperatorError::user(format!("restoring its state: {e}"));
        chk.state_reader(name, instance as u32, parallelism as u32)
            .map(Some)
            .map_err(fail)
    }
}

/// An instance's acknowledgement of an unaligned checkpoint, held until its capture is done.
pub(crate) struct HeldAck {
    id: u64,
    blobs: Result<Vec<(BlobName, Vec<u8>)>, String>,
    alignment: Duration,
}

/// The coordinator: triggers, completes, commits and aborts checkpoints. It runs in the run's
/// own loop (beside the joining of tasks), never on an instance's task.
pub(crate) struct Coordinator {
    shared: Arc<Checkpoints>,
    store: CheckpointStore,
    meta: CheckpointMeta,
    /// Instances that acknowledge each checkpoint.
    instances: usize,
    interval: Duration,
    next_trigger: Option<Instant>,
    /// How long a checkpoint may take, and when the one in flight is overdue.
    timeout: Duration,
    abort_at: Option<Instant>,
}

/// What a checkpointed run is planned with: the graph's identity and who acknowledges.
pub(crate) struct CheckpointPlan {
    pub(crate) fingerprint: u64,
    /// Every node's name and parallelism.
    pub(crate) operators: Vec<(String, usize)>,
    /// Source nodes' names and parallelism.
    pub(crate) sources: Vec<(String, usize)>,
    /// Instances that acknowledge each checkpoint.
    pub(crate) instances: usize,
}

impl Coordinator {
    /// Opens the store in `config.dir` and, if `config.restore`, finds the checkpoint to
    /// restore from and checks that it fits the job.
    pub(crate) fn open(
        config: &CheckpointConfig,
        plan: CheckpointPlan,
        restore: bool,
    ) -> Result<Self, String> {
        let store = CheckpointStore::open(&config.dir, config.retain).map_err(|e| e.to_string())?;
        let stats = Arc::new(CheckpointStats::default());
        let restore = if restore || config.restore {
            let latest = store
                .latest()
                .map_err(|e| format!("finding the latest: {e}"))?;
            for s in &latest.skipped {
                tracing::warn!(checkpoint = s.id, reason = ?s.reason, "checkpoint skipped on restore");
            }
            stats.note_restore(
                latest.checkpoint.as_ref().map(|c| c.id()),
                latest.skipped.len(),
            );
            match latest.checkpoint {
                Some(chk) => {
                    check_fits(&chk, &plan)?;
                    Some(chk)
                }
                None => None,
            }
        } else {
            None
        };
        let mut meta = CheckpointMeta::new(plan.fingerprint, config.max_parallelism);
        for (name, p) in &plan.operators {
            meta = meta.operator(name.clone(), *p as u32);
        }
        let shared = Arc::new(Checkpoints {
            max_parallelism: config.max_parallelism,
            requested: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            source_ended: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
            in_flight: Mutex::new(None),
            notify: Notify::new(),
            on_demand: AtomicBool::new(false),
            stats,
            restore,
            align_timeout: config.alignment_timeout,
        });
        let interval = config.interval;
        Ok(Self {
            shared,
            store,
            meta,
            instances: plan.instances,
            interval,
            next_trigger: (!interval.is_zero()).then(|| Instant::now() + interval),
            timeout: config.timeout,
            abort_at: None,
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Checkpoints> {
        &self.shared
    }

    /// Waits for the next thing to do and does it: trigger on the interval or on demand,
    /// complete or abort the checkpoint in flight. Cancel-safe (the run's loop drops it
    /// whenever a task ends): every wait comes before any change.
    pub(crate) async fn step(&mut self) {
        let deadline = match (self.next_trigger, self.abort_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = timer => {}
            () = self.shared.notify.notified() => {}
        }
        self.finish_in_flight();
        self.abort_overdue();
        let due = self.next_trigger.is_some_and(|d| Instant::now() >= d);
        let asked = self.shared.on_demand.load(Ordering::Acquire);
        if (due || asked) && lock(&self.shared.in_flight).is_none() {
            self.shared.on_demand.store(false, Ordering::Release);
            self.trigger();
        }
        if due || self.next_trigger.is_some_and(|d| d <= Instant::now()) {
            self.next_trigger = Some(Instant::now() + self.interval);
        }
    }

    fn trigger(&mut self) {
        if self.shared.source_ended.load(Ordering::Acquire) {
            return;
        }
        let id = self.store.next_id();
        let pending = match self.store.begin(id) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(checkpoint = id, error = %e, "checkpoint could not begin");
                self.shared.stats.note_failed();
                return;
            }
        };
        *lock(&self.shared.in_flight) = Some(InFlight {
            id,
            pending: Some(Arc::new(pending)),
            remaining: self.instances,
            started: Instant::now(),
            bytes: 0,
            alignment: Duration::ZERO,
            error: None,
        });
        self.abort_at = Instant::now().checked_add(self.timeout);
        self.shared.requested.store(id, Ordering::Release);
        self.shared.wake_all();
    }

    /// Aborts the checkpoint in flight once it has taken longer than the timeout; instances
    /// that acknowledge it later find it gone.
    fn abort_overdue(&mut self) {
        if self.abort_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        self.abort_at = None;
        let Some(mut f) = lock(&self.shared.in_flight).take() else {
            return;
        };
        tracing::warn!(
            checkpoint = f.id,
            waiting_for = f.remaining,
            "checkpoint timed out; aborted, the run goes on"
        );
        // An instance may be writing its blob right now: then the partial directory stays for
        // retention to remove.
        if let Some(p) = f.pending.take().and_then(|p| Arc::try_unwrap(p).ok()) {
            let _ = p.abort();
        }
        self.shared.stats.note_failed();
    }

    /// Commits the checkpoint in flight once every instance acknowledged it, or aborts it
    /// once one failed.
    fn finish_in_flight(&mut self) {
        let mut f = {
            let mut guard = lock(&self.shared.in_flight);
            match guard.as_ref() {
                Some(f) if f.remaining == 0 || f.error.is_some() => {}
                _ => return,
            }
            guard.take().expect("checked above")
        };
        self.abort_at = None;
        let pending = f.pending.take().and_then(|p| Arc::try_unwrap(p).ok());
        let stats = &self.shared.stats;
        if let Some(error) = f.error {
            tracing::warn!(checkpoint = f.id, %error, "checkpoint failed; the run goes on");
            if let Some(p) = pending {
                let _ = p.abort();
            }
            stats.note_failed();
            return;
        }
        let Some(pending) = pending else {
            // An instance still holds the writer: cannot happen once every one acknowledged.
            tracing::warn!(
                checkpoint = f.id,
                "checkpoint still being written; abandoned"
            );
            stats.note_failed();
            return;
        };
        match pending.commit(self.meta.clone()) {
            Ok(done) => {
                drop(done);
                self.shared.committed.store(f.id, Ordering::Release);
                self.shared.wake_all();
                stats.note_completed(f.id, f.started.elapsed(), f.alignment, f.bytes);
            }
            Err(e) => {
                tracing::warn!(checkpoint = f.id, error = %e, "checkpoint commit failed");
                stats.note_failed();
            }
        }
    }
}

/// Checks that checkpoint `chk` was taken of this job.
fn check_fits(chk: &CompletedCheckpoint, plan: &CheckpointPlan) -> Result<(), String> {
    if chk.fingerprint() != plan.fingerprint {
        return Err(format!(
            "checkpoint {} in {} was taken of another job graph (fingerprint {:#x}, this job's \
             is {:#x}): operators or streams were added, removed or renamed; restore it with the \
             job that wrote it, or use another checkpoint directory",
            chk.id(),
            chk.path().display(),
            chk.fingerprint(),
            plan.fingerprint
        ));
    }
    for (name, p) in &plan.sources {
        if let Some(old) = chk.parallelism(name) {
            if old as usize != *p {
                return Err(format!(
                    "checkpoint {} recorded source `{name}` at parallelism {old}, this job runs \
                     it at {p}: a source's positions cannot be redistributed; run it at {old}",
                    chk.id()
                ));
            }
        }
    }
    let rescaled = plan
        .operators
        .iter()
        .any(|(name, p)| chk.parallelism(name).is_some_and(|old| old as usize != *p));
    if rescaled
        && chk
            .blobs()
            .any(|b| matches!(b.kind(), crate::checkpoint::BlobKind::InFlight { .. }))
    {
        return Err(format!(
            "checkpoint {} holds batches captured by an unaligned checkpoint, which are replayed \
             into the edges they were taken from: restore it at the parallelism it was taken \
             at, then change the parallelism from a later (aligned) checkpoint",
            chk.id()
        ));
    }
    let max = chk.max_parallelism();
    for (name, p) in &plan.operators {
        if *p as u64 > u64::from(max) {
            return Err(format!(
                "`{name}` runs {p} instances, more than the checkpoint's {max} key groups (its \
                 maximum parallelism)"
            ));
        }
    }
    Ok(())
}

/// A stable fingerprint of a job graph: FNV-1a over its operators' names and kinds and its
/// streams (parallelism left out, so a job can be restored at another).
pub(crate) fn fingerprint(parts: impl IntoIterator<Item = String>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Fails a checkpointed run at start if `op` keeps rows it cannot snapshot.
pub(crate) fn check_snapshots<O: Operator>(
    op: &O,
    info: &InstanceInfo,
) -> Result<(), OperatorError> {
    if op.holds_rows() && !op.can_snapshot() {
        return Err(OperatorError::user(format!(
            "`{}` keeps rows across batches but cannot snapshot them (`Operator::can_snapshot` \
             is false), so a checkpoint could not restore it: run the pipeline without \
             checkpoints, or implement `snapshot` and `restore` for it",
            info.name
        )));
    }
    Ok(())
}

/// An instance's state blob for a checkpoint: what `snapshot` writes, encoded (none if it
/// writes nothing). An error fails the checkpoint, not the run.
pub(crate) fn snapshot_blobs(
    ck: &Checkpoints,
    info: &InstanceInfo,
    snapshot: impl FnOnce(&mut SnapshotWriter) -> Result<(), OperatorError>,
) -> Result<Vec<(BlobName, Vec<u8>)>, String> {
    let mut w = SnapshotWriter::new(ck.max_parallelism());
    snapshot(&mut w).map_err(|e| {
        format!(
            "`{}`[{}] could not snapshot its state: {e}",
            info.name, info.instance
        )
    })?;
    if w.is_empty() {
        return Ok(Vec::new());
    }
    let blob = w.into_blob().map_err(|e| e.to_string())?;
    Ok(vec![(
        BlobName::state(&*info.name, info.instance as u32),
        blob,
    )])
}
