//! Checkpoint figures of a run: counted by the coordinator (never on the data path) and read
//! into [`CheckpointReport`].

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// The coordinator's record of a run's checkpoints.
#[derive(Debug, Default)]
pub(crate) struct CheckpointStats {
    inner: Mutex<CheckpointReport>,
    durations_ms: Mutex<Vec<f64>>,
}

/// Checkpoints of a run (see [`PipelineConfig::checkpointing`](crate::PipelineConfig::checkpointing)).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckpointReport {
    /// Checkpoints completed (committed in the store).
    pub completed: u64,
    /// Checkpoints that failed (an instance could not snapshot, a blob or the manifest could
    /// not be written) and were aborted; the run went on.
    pub failed: u64,
    /// The last completed checkpoint's id.
    pub last_id: Option<u64>,
    /// Duration from trigger to commit, median, in milliseconds.
    pub duration_p50_ms: f64,
    /// Duration from trigger to commit, 99th percentile (nearest rank), in milliseconds.
    pub duration_p99_ms: f64,
    /// The longest alignment of one instance (from the first barrier on one input edge to the
    /// last), over all completed checkpoints, in milliseconds.
    pub max_alignment_ms: f64,
    /// Bytes of state, positions and in-flight data written, over all completed checkpoints.
    pub bytes: u64,
    /// Alignments that switched to unaligned (the barrier overtook queued batches).
    pub unaligned: u64,
    /// Bytes of queued batches captured by unaligned barriers.
    pub in_flight_bytes: u64,
    /// Alignments past the timeout that stayed aligned because an unaligned edge's batches
    /// cannot be captured (its stream has no codec).
    pub stayed_aligned: u64,
    /// The checkpoint the run restored from, if any.
    pub restored_from: Option<u64>,
    /// Newer checkpoints passed over on restore (partial or corrupt).
    pub skipped_on_restore: usize,
    /// Times the run was restarted from a checkpoint after a failure
    /// ([`Pipeline::run_restartable`](crate::Pipeline::run_restartable)).
    pub restarts: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The nearest-rank percentile `p` (0..=100) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

impl CheckpointStats {
    pub(crate) fn note_completed(&self, id: u64, took: Duration, alignment: Duration, bytes: u64) {
        let mut d = lock(&self.durations_ms);
        d.push(took.as_secs_f64() * 1e3);
        let mut sorted = d.clone();
        drop(d);
        sorted.sort_by(f64::total_cmp);
        let mut r = lock(&self.inner);
        r.completed += 1;
        r.last_id = Some(id);
        r.bytes += bytes;
        r.max_alignment_ms = r.max_alignment_ms.max(alignment.as_secs_f64() * 1e3);
        r.duration_p50_ms = percentile(&sorted, 50.0);
        r.duration_p99_ms = percentile(&sorted, 99.0);
    }

    pub(crate) fn note_failed(&self) {
        lock(&self.inner).failed += 1;
    }

    pub(crate) fn note_unaligned(&self, bytes: u64) {
        let mut r = lock(&self.inner);
        r.unaligned += 1;
        r.in_flight_bytes += bytes;
    }

    pub(crate) fn note_stayed_aligned(&self) {
        lock(&self.inner).stayed_aligned += 1;
    }

    pub(crate) fn note_restore(&self, from: Option<u64>, skipped: usize) {
        let mut r = lock(&self.inner);
        r.restored_from = from;
        r.skipped_on_restore = skipped;
    }

    pub(crate) fn report(&self) -> CheckpointReport {
        lock(&self.inner).clone()
    }
}

impl std::fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoints: {} completed, {} failed, duration p50 {:.1} ms p99 {:.1} ms, \
             max alignment {:.1} ms, {} bytes, {} unaligned ({} in-flight bytes)",
            self.completed,
            self.failed,
            self.duration_p50_ms,
            self.duration_p99_ms,
            self.max_alignment_ms,
            self.bytes,
            self.unaligned,
            self.in_flight_bytes
        )?;
        if self.stayed_aligned > 0 {
            write!(f, ", {} stayed aligned (no codec)", self.stayed_aligned)?;
        }
        if let Some(id) = self.restored_from {
            write!(f, ", restored from {id}")?;
        }
        if self.skipped_on_restore > 0 {
            write!(f, " ({} newer skipped)", self.skipped_on_restore)?;
        }
        if self.restarts > 0 {
            write!(f, ", {} restarts", self.restarts)?;
        }
        Ok(())
    }
}
