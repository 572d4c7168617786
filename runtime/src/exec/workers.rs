//! Worker threads for [`Placement::PerWorker`](crate::Placement::PerWorker): one single-thread
//! tokio runtime per worker, each driven by its own thread until the pool is dropped.
//!
//! A task spawned on a worker's [`Handle`] runs only on that worker's thread, so an instance
//! never migrates, and a wake-up from another thread reaches it through that runtime's queue
//! instead of sitting in the waker's worker. The run itself is coordinated from elsewhere
//! (a `JoinSet` that spawns on the handles), so nothing here knows about operators.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Worker threads, each running a single-thread tokio runtime (timers and IO enabled).
pub(crate) struct WorkerPool {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `workers` threads named `{name}-{k}`; with `pin`, worker `k` is pinned to core
    /// `k mod cores` where the platform allows it.
    ///
    /// # Errors
    ///
    /// A runtime or thread that could not be created.
    pub(crate) fn start(workers: usize, name: &str, pin: bool) -> io::Result<Self> {
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut pool = WorkerPool {
            handles: Vec::with_capacity(workers),
            stops: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers),
        };
        for k in 0..workers.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                // Time for lingering batches and timers; IO for sources and sinks with sockets.
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            let core = (!cores.is_empty()).then(|| cores[k % cores.len()]);
            let handle = runtime.handle().clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{k}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Best effort: a platform that refuses leaves the worker unpinned.
                        let _ = core_affinity::set_for_current(core);
                    }
                    // The runtime runs its tasks while this waits; a dropped sender ends it too.
                    let _ = runtime.block_on(stopped);
                    // Every task of the run has been joined by the time the pool is dropped;
                    // anything a task spawned and left behind is dropped without waiting.
                    runtime.shutdown_background();
                })?;
            pool.handles.push(handle);
            pool.stops.push(stop);
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// The workers' runtime handles, worker `k` at index `k`.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
