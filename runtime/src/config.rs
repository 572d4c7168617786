//! Settings of a whole pipeline: [`PipelineConfig`], [`Chaining`] and the default sizing of
//! edges, with their limits and validation.
//!
//! The bottom rung of the runtime's ladder: the logical graph, the physical plan, the executor
//! and the pipeline builder all read it; it reads nothing of theirs.

use std::time::Duration;

use crate::channel::EdgeConfig;

/// Which operators may share a task (see the executor's chaining rules).
///
/// Chaining hands a batch from one operator to the next by a plain call instead of through an
/// edge and a task switch, which is what cheap operators (`map`, `filter`) need to run at
/// memory speed. The price is coarser time figures: busy / idle / backpressured are measured per
/// task, so operators of one chain show the same figures. Rows and batches stay exact per
/// operator, and sinks always have their own task, so the constraint stays visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub enum Chaining {
    /// Every operator instance is its own task.
    Off,
    /// An operator joins its producer's task when the stream between them is private: forward,
    /// equal parallelism, no fan-out on either side, no edge configured for it. The default.
    #[default]
    Operators,
}

/// How the runtime that [`Pipeline::run`](crate::Pipeline::run) creates places instance tasks
/// on its worker threads.
///
/// A work-stealing scheduler suits many small independent tasks; a dataflow is a few long-lived
/// tasks that hand batches to each other. On one there, two things go wrong. A hot chain
/// migrates between cores whenever an idle worker steals it, taking its caches along. And a
/// consumer woken by its producer is queued in the producer's worker (tokio's LIFO slot, which
/// other workers cannot steal from) and waits there until the producer yields, while another
/// worker idles. Placing each task on one worker for the whole run avoids both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub enum Placement {
    /// Each worker thread runs its own single-thread scheduler, and every instance task is
    /// placed on one worker when the run starts and stays there. Tasks are dealt round-robin in
    /// plan order (chains in topological order, then their instances), so a producer and its
    /// consumer land on different workers and the instances of a parallel operator spread over
    /// the workers.
    ///
    /// Anything a task spawns with `tokio::spawn` (an HTTP source's connections) runs on that
    /// task's worker.
    ///
    /// Not the default yet: side by side on the project's shared 2-core machine it has not
    /// measured better than work stealing (see `weir bench placement` in `BENCHMARKS.md`).
    PerWorker,
    /// As [`PerWorker`](Self::PerWorker), but dealt by instance index: instance `k` of every
    /// operator runs on worker `k mod workers`. A worker then runs one whole slice of the graph
    /// (the layout of timely-dataflow's workers), so a chain and the consumer of the same index
    /// hand batches over in one thread, in that core's cache, and no hop crosses cores except
    /// where the graph redistributes (a keyed, rebalanced or broadcast edge, or a fan-in into
    /// fewer instances).
    ///
    /// The cores are used only as far as the graph is parallel: at parallelism 1 every task runs
    /// on worker 0. Give the operators a parallelism of (a multiple of) the workers.
    Colocated,
    /// One work-stealing tokio runtime shared by every task: idle workers steal tasks, and tasks
    /// move between workers. The default.
    #[default]
    WorkStealing,
}

/// Settings of a whole pipeline. Every field has a default that works.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::PipelineConfig;
///
/// let cfg = PipelineConfig {
///     batch_rows: 4096,
///     linger: Duration::ZERO,
///     ..PipelineConfig::default()
/// };
/// assert_eq!(cfg.parallelism, 1);
/// ```
#[derive(Clone, Debug, serde::Serialize)]
pub struct PipelineConfig {
    /// Worker threads of the runtime that [`Pipeline::run`](crate::Pipeline::run) creates (default: the number of
    /// cores). Ignored by [`Pipeline::run_async`](crate::Pipeline::run_async), which uses the caller's runtime.
    pub workers: Option<usize>,
    /// How instance tasks are placed on the workers (default [`Placement::WorkStealing`]). Ignored
    /// by [`Pipeline::run_async`](crate::Pipeline::run_async).
    pub placement: Placement,
    /// Pin worker `k` to core `k mod cores` (default off). Worth it on a machine the pipeline
    /// has to itself; on a shared one, pinned workers cannot move away from a busy core. Only
    /// with [`Placement::PerWorker`] and [`Placement::Colocated`]; where the platform cannot pin,
    /// workers run unpinned.
    pub pin_workers: bool,
    /// Default parallelism of operators that do not set their own (default 1): the job-wide
    /// setting, as in Flink. An operator does not inherit its input's parallelism: after a source
    /// of 4 instances, a `map` runs `parallelism` instances unless it is given its own with
    /// [`StreamCore::parallelism`](crate::StreamCore::parallelism). Operators and sinks added as one value (`unary`, `sink`)
    /// always run one instance.
    pub parallelism: usize,
    /// Target rows per batch for typed streams (default 1024, at most
    /// [`MAX_BATCH_ROWS`](Self::MAX_BATCH_ROWS)). A batch is pre-allocated up to the edges'
    /// byte bound at most.
    pub batch_rows: usize,
    /// How long a partial batch may wait for more rows before it is sent anyway (default 1 ms).
    /// Zero sends partial batches as soon as the producer has nothing more; at most
    /// [`MAX_LINGER`](Self::MAX_LINGER).
    pub linger: Duration,
    /// Default sizing of every edge. Left at [`EdgeConfig::default`], it adapts to small
    /// batches: below 1024 rows per batch an edge gets more slots so that it still holds about
    /// 16 K rows (at most [`SMALL_BATCH_MAX_CAPACITY`] messages), with `max_bytes` bounding its
    /// memory as always. Set it, or size one edge with [`StreamCore::with_edge`](crate::StreamCore::with_edge), and it is used
    /// exactly as given.
    pub edge: EdgeConfig,
    /// Batches an instance processes before it yields its worker thread (default 8).
    pub yield_every: u32,
    /// Which operators may share a task (default [`Chaining::Operators`]).
    pub chaining: Chaining,
    /// How often each source instance emits a latency marker ([`Message::Latency`]), whose
    /// age every sink records; the run report shows end-to-end latency p50 / p99 from them
    /// (default 100 ms; [`Duration::ZERO`] emits none).
    ///
    /// A marker costs one edge slot per edge on its path and one clock read at the sink; the
    /// source looks at the clock only after it waited or ended a turn (every few batches),
    /// never per row. At 100 ms a run of a
    /// few seconds has tens of samples per source instance, enough for a p99 of what queues
    /// hold; a shorter interval samples finer at a few more slots per second.
    ///
    /// [`Message::Latency`]: crate::Message::Latency
    pub latency_marker_interval: Duration,
    /// How much time each edge should buffer at its consumer's measured rate, at most
    /// [`MAX_EDGE_TARGET_TIME`](Self::MAX_EDGE_TARGET_TIME); [`Duration::ZERO`], the default,
    /// sizes edges by rows and bytes only.
    ///
    /// Off by default for now; 10 ms is the intended default. With it, the runtime's own tests
    /// pass and the estimate comes within 1.0–1.3× of the slots wanted, but the operators',
    /// workloads' and command line's suites have not all been run with it yet
    /// (`BENCHMARKS.md`, "Edges sized by time on by default?"). Set it per pipeline meanwhile.
    ///
    /// Each consumer measures how many messages per second it takes from each input edge, over
    /// the time it is not starved of input (a wait for a worker after input arrived counts),
    /// and grants credit only up to that rate times this target
    /// (within two slots and the edge's capacity; the byte bound applies as always). When a
    /// sink slows tenfold, the edges in front of it then shrink instead of holding ten times
    /// the time, so rows, barriers and watermarks wait about this long per edge rather than a
    /// full edge's worth (Flink's buffer debloating). A fast consumer keeps whole edges. Edges
    /// with an overflow policy that never waits keep their capacity. How it measures and when
    /// it updates is in `channel/debloat.rs`; each edge's current limit is in the run report.
    pub edge_target_time: Duration,
    /// Checkpoints: where they go, how often, and whether the run restores the latest one
    /// (default `None`, off). Set it with [`checkpointing`](Self::checkpointing).
    pub checkpoint: Option<CheckpointConfig>,
}

/// How a pipeline takes checkpoints (see [`PipelineConfig::checkpointing`]).
///
/// A coordinator triggers checkpoint `n` every `interval` (and on
/// [`RunHandle::checkpoint_now`](crate::RunHandle::checkpoint_now)) at every source instance,
/// which snapshots its position between two batches and emits a checkpoint barrier behind
/// them. Every instance with several input edges aligns the barrier (an edge that delivered
/// it is not read until every edge has), snapshots its state and passes the barrier on; every
/// sink makes its rows pending ([`Sink::poll_pre_commit`](crate::Sink::poll_pre_commit)). Once
/// every instance has acknowledged, the coordinator commits the checkpoint into the
/// [`CheckpointStore`](crate::CheckpointStore) in `dir` (manifest last), and only then tells
/// the sinks to [commit](crate::Sink::commit). At most one checkpoint is in flight.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::{CheckpointConfig, PipelineConfig};
///
/// let cfg = PipelineConfig::default().checkpointing(
///     CheckpointConfig::new("/tmp/job-checkpoints").interval(Duration::from_secs(1)),
/// );
/// assert!(cfg.checkpoint.is_some());
/// ```
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckpointConfig {
    /// The checkpoint directory (one job per directory).
    pub dir: std::path::PathBuf,
    /// Time between the start of one checkpoint and the trigger of the next (default 1 s;
    /// zero: only on demand).
    pub interval: Duration,
    /// How long a checkpoint may take from trigger to commit before it is aborted and counted
    /// as failed, so that one stuck checkpoint does not stop the next (default 10 minutes, as
    /// Flink's).
    pub timeout: Duration,
    /// Complete checkpoints kept in `dir` (default 2: a corrupt newest one has a fallback).
    pub retain: usize,
    /// The number of key groups keyed state is cut into: the most instances a keyed operator
    /// can be restored at (default 128, at most
    /// [`MAX_KEY_GROUPS`](crate::checkpoint::MAX_KEY_GROUPS)).
    pub max_parallelism: u32,
    /// How long an instance with several input edges may align a checkpoint barrier before
    /// the checkpoint goes *unaligned* there (default `None`: always aligned). Unaligned, the
    /// instance snapshots and passes the barrier on at once, and the batches that still reach
    /// it on the unaligned edges before their barrier are captured into the checkpoint (in-flight
    /// data, replayed into those edges on restore). Capturing needs a codec for the stream's
    /// batches ([`StreamCore::with_spill_codec`](crate::StreamCore::with_spill_codec)); where
    /// an edge has none, the alignment stays aligned and the report counts it
    /// ([`CheckpointReport::stayed_aligned`](crate::CheckpointReport::stayed_aligned)).
    pub alignment_timeout: Option<Duration>,
    /// Whether the run starts from the latest complete checkpoint in `dir` (default false).
    pub restore: bool,
    /// How a failed run is started again from the latest checkpoint by
    /// [`Pipeline::run_restartable`](crate::Pipeline::run_restartable) (default: not).
    pub restart: RestartStrategy,
}

impl CheckpointConfig {
    /// Checkpoints into `dir`, every second, keeping two, with 128 key groups.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
            retain: 2,
            max_parallelism: 128,
            alignment_timeout: None,
            restore: false,
            restart: RestartStrategy::default(),
        }
    }

    /// Sets the interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets how long a checkpoint may take before it is aborted.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many complete checkpoints are kept.
    pub fn retain(mut self, retain: usize) -> Self {
        self.retain = retain;
        self
    }

    /// Sets the number of key groups.
    pub fn max_parallelism(mut self, max_parallelism: u32) -> Self {
        self.max_parallelism = max_parallelism;
        self
    }

    /// Sets the alignment timeout after which a checkpoint goes unaligned.
    pub fn alignment_timeout(mut self, timeout: Duration) -> Self {
        self.alignment_timeout = Some(timeout);
        self
    }

    /// Starts the run from the latest complete checkpoint in the directory.
    pub fn restore(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// Sets the restart strategy.
    pub fn restart(mut self, restart: RestartStrategy) -> Self {
        self.restart = restart;
        self
    }
}

/// How often, and after how long, a failed run is restarted from its latest checkpoint (see
/// [`Pipeline::run_restartable`](crate::Pipeline::run_restartable)). The default restarts
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestartStrategy {
    /// Restarts allowed before the run's error is returned.
    pub attempts: u32,
    /// Wait before each restart.
    pub backoff: Duration,
}

/// The most slots a default-sized edge gets when batches are small (see [`PipelineConfig::edge`]).
pub const SMALL_BATCH_MAX_CAPACITY: usize = 4096;

impl PipelineConfig {
    /// The largest [`batch_rows`](Self::batch_rows): a batch is the unit of credit, and one far
    /// beyond this would make the edges' bounds meaningless.
    pub const MAX_BATCH_ROWS: usize = 1 << 24;

    /// The longest [`linger`](Self::linger): a partial batch waiting longer than this is a
    /// batch held back, not one gathered.
    pub const MAX_LINGER: Duration = Duration::from_secs(3600);

    /// The largest [`parallelism`](Self::parallelism) (and operator parallelism), and the most
    /// [`workers`](Self::workers): each instance and worker is allocated when the run starts.
    pub const MAX_PARALLELISM: usize = 1 << 12;

    /// The longest [`edge_target_time`](Self::edge_target_time): beyond it an edge is sized by
    /// its rows and bytes anyway.
    pub const MAX_EDGE_TARGET_TIME: Duration = Duration::from_secs(60);

    /// Checks the configuration before anything is built, naming the offending field.
    ///
    /// # Errors
    ///
    /// A `batch_rows` above [`Self::MAX_BATCH_ROWS`], a `linger` above [`Self::MAX_LINGER`], an
    /// `edge_target_time` above [`Self::MAX_EDGE_TARGET_TIME`], a
    /// `parallelism` or `workers` above [`Self::MAX_PARALLELISM`], or an invalid default
    /// [`edge`](Self::edge) ([`EdgeConfig::validate`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_runtime::PipelineConfig;
    ///
    /// assert!(PipelineConfig::default().validate().is_ok());
    /// let huge = PipelineConfig { batch_rows: 1 << 40, ..PipelineConfig::default() };
    /// assert!(huge.validate().unwrap_err().contains("batch_rows"));
    /// let forever = PipelineConfig { linger: Duration::MAX, ..PipelineConfig::default() };
    /// assert!(forever.validate().unwrap_err().contains("linger"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_rows > Self::MAX_BATCH_ROWS {
            return Err(format!(
                "batch_rows {} exceeds the limit of {} rows per batch (a batch is the unit of \
                 credit; bound memory with the edges' max_bytes instead)",
                self.batch_rows,
                Self::MAX_BATCH_ROWS
            ));
        }
        if self.linger > Self::MAX_LINGER {
            return Err(format!(
                "linger {:?} exceeds the limit of {:?} (use Duration::ZERO to send partial \
                 batches at once)",
                self.linger,
                Self::MAX_LINGER
            ));
        }
        if self.parallelism > Self::MAX_PARALLELISM {
            return Err(format!(
                "parallelism {} exceeds the limit of {} instances per operator",
                self.parallelism,
                Self::MAX_PARALLELISM
            ));
        }
        if self.edge_target_time > Self::MAX_EDGE_TARGET_TIME {
            return Err(format!(
                "edge_target_time {:?} exceeds the limit of {:?} (use Duration::ZERO to size \
                 edges by rows and bytes only)",
                self.edge_target_time,
                Self::MAX_EDGE_TARGET_TIME
            ));
        }
        if let Some(workers) = self.workers.filter(|&w| w > Self::MAX_PARALLELISM) {
            return Err(format!(
                "workers {workers} exceeds the limit of {} threads",
                Self::MAX_PARALLELISM
            ));
        }
        if let Some(c) = &self.checkpoint {
            if c.retain == 0 {
                return Err("checkpoint retain must keep at least 1 checkpoint".to_string());
            }
            if c.max_parallelism == 0 || c.max_parallelism > crate::checkpoint::MAX_KEY_GROUPS {
                return Err(format!(
                    "checkpoint max_parallelism {} is outside 1..={}",
                    c.max_parallelism,
                    crate::checkpoint::MAX_KEY_GROUPS
                ));
            }
        }
        self.edge
            .validate()
            .map_err(|e| format!("default edge: {e}"))
    }

    /// Turns checkpoints on (see [`CheckpointConfig`]).
    pub fn checkpointing(mut self, checkpoint: CheckpointConfig) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The sizing of an edge that was not configured explicitly.
    pub fn default_edge(&self) -> EdgeConfig {
        if self.edge != EdgeConfig::default() {
            return self.edge;
        }
        let rows_target = self.edge.capacity.saturating_mul(1024);
        let scaled = (rows_target / self.batch_rows.max(1)).min(SMALL_BATCH_MAX_CAPACITY);
        EdgeConfig {
            capacity: self.edge.capacity.max(scaled),
            ..self.edge
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: None,
            placement: Placement::default(),
            pin_workers: false,
            parallelism: 1,
            batch_rows: 1024,
            linger: Duration::from_millis(1),
            edge: EdgeConfig::default(),
            yield_every: 8,
            chaining: Chaining::default(),
            latency_marker_interval: Duration::from_millis(100),
            edge_target_time: Duration::ZERO,
            checkpoint: None,
        }
    }
}
