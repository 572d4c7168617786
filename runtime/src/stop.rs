//! The stop signal of a run: a request to stop reading, set by a handle, a Ctrl-C handler or a
//! test, and watched by every source. A leaf: the executor, the metrics and the run handles
//! read it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A request to stop reading, shared by the run and its handles. Sources check it before each
/// poll; the rest of the pipeline then drains normally.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// Asks every source to stop reading and end its stream.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}
