//! A bounded hand-off from a pipeline to an ordinary thread.
//!
//! The hand-off is a weir edge like any other: the sink holds its outlet and asks it for credit,
//! the reader holds its inlet and parks its thread while the edge is empty. So a slow reader
//! backpressures the pipeline exactly as a slow operator would, and a dropped reader closes the
//! edge, which cancels the pipeline upstream.
//!
//! The edge is bounded in batches and in bytes (rows' heap included). Readiness is asked before
//! a batch's size is known, so a batch that finds no byte room waits in the sink, alone: the sink
//! is not ready again until it has gone into the edge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_runtime::{
    edge, Batch, Data, EdgeConfig, Inlet, InputPort, Message, OperatorError, Outlet, Sink,
    TryRecvError, TrySendError,
};

/// The sink side of [`StreamExt::into_iter`](crate::StreamExt::into_iter).
#[derive(Debug)]
pub struct IterSink<T: Data> {
    outlet: Outlet<Vec<T>>,
    /// A batch that found a slot but no byte room in the hand-off (or found the reader gone):
    /// sent before the sink is ready again.
    pending: Option<Vec<T>>,
    /// Rows the reader had received but not yet yielded when it was dropped.
    unread: Arc<AtomicU64>,
}

/// The reader side: an iterator over a running pipeline's rows, blocking while none are ready.
///
/// It ends when the pipeline's stream ends, or early if the pipeline failed (join the
/// [`RunHandle`](weir_runtime::RunHandle) for the error). Dropping it early cancels the pipeline
/// upstream; the rows it never read are counted in the run report.
#[derive(Debug)]
pub struct RowIter<T: Data> {
    inlet: Inlet<Vec<T>>,
    current: std::vec::IntoIter<T>,
    unread: Arc<AtomicU64>,
}

impl<T: Data> Drop for RowIter<T> {
    fn drop(&mut self) {
        // Stored before the inlet closes the edge (fields drop after this body), so the sink,
        // which reads it after seeing the edge closed, sees it.
        self.unread
            .store(self.current.len() as u64, Ordering::Release);
    }
}

impl<T: Data> IterSink<T> {
    /// A sink and its reader, with room for `capacity` batches between them (at least one, at
    /// most [`EdgeConfig::MAX_CAPACITY`]: the slots are allocated at once).
    pub fn new(capacity: usize) -> (Self, RowIter<T>) {
        let cfg = EdgeConfig::default().with_capacity(capacity.clamp(1, EdgeConfig::MAX_CAPACITY));
        let (outlet, inlet) = edge(cfg);
        let unread = Arc::new(AtomicU64::new(0));
        (
            Self {
                outlet,
                pending: None,
                unread: unread.clone(),
            },
            RowIter {
                inlet,
                current: Vec::new().into_iter(),
                unread,
            },
        )
    }
}

impl<T: Data> IterSink<T> {
    /// Sends the batch waiting for byte room, if any: `Ready` once none waits (sent, or kept
    /// for [`undelivered_rows`](Sink::undelivered_rows) because the reader is gone).
    fn send_pending(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(batch) = self.pending.take() else {
            return Poll::Ready(());
        };
        let bytes = batch.bytes();
        match self.outlet.poll_reserve(cx, bytes) {
            Poll::Ready(Ok(permit)) => permit.send(Message::Data(batch)),
            Poll::Ready(Err(_)) => self.pending = Some(batch),
            Poll::Pending => {
                self.pending = Some(batch);
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

impl<T: Data> Sink for IterSink<T> {
    type Input = Vec<T>;
    type Output = ();

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        // A closed reader is not an error here: `is_closed` reports it next.
        if self.send_pending(cx).is_pending() {
            return Poll::Pending;
        }
        self.outlet.poll_ready(cx).map(|_| Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.send_pending(cx).map(Ok)
    }

    fn is_closed(&self) -> bool {
        self.outlet.is_closed()
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The reader may go away while the pipeline has nothing to send.
        self.outlet.poll_closed(cx)
    }

    /// Once the reader is gone: rows left in the hand-off plus rows of its last, partly read batch.
    fn undelivered_rows(&self) -> u64 {
        if !self.outlet.is_closed() {
            return 0;
        }
        let pending = self.pending.as_ref().map_or(0, Vec::len) as u64;
        self.outlet.stats().rows_in_flight() as u64 + self.unread.load(Ordering::Acquire) + pending
    }

    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        if self.pending.is_some() {
            return Err(OperatorError::internal(
                "the reader's hand-off got a batch before the previous one was sent",
            ));
        }
        // `poll_ready` saw a slot; the batch may still find no byte room, or the reader gone.
        match self.outlet.try_send(Message::Data(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(msg) | TrySendError::Closed(msg)) => {
                if let Message::Data(batch) = msg {
                    self.pending = Some(batch);
                }
            }
        }
        Ok(())
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.send_pending(cx).is_pending() {
            return Poll::Pending;
        }
        // End the reader's stream once there is a slot for it; if the reader is gone there is
        // nobody to tell.
        match self.outlet.poll_reserve(cx, 0) {
            Poll::Ready(Ok(permit)) => permit.send(Message::End),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

impl<T: Data> Iterator for RowIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(row) = self.current.next() {
                return Some(row);
            }
            match self.inlet.recv_blocking() {
                Ok(Message::Data(batch)) => self.current = batch.into_iter(),
                Ok(_) => {}
                Err(TryRecvError::Ended | TryRecvError::Disconnected | TryRecvError::Empty) => {
                    return None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u8) -> Vec<Vec<u8>> {
        (0..2).map(|_| vec![n; 1 << 20]).collect()
    }

    #[test]
    fn a_batch_without_byte_room_waits_in_the_sink_until_the_reader_frees_it() {
        // Two batches of 2 MiB of row heap each: the second does not fit beside the first
        // under the hand-off's 4 MiB, although readiness (a slot, some byte room) said yes.
        let (mut sink, mut reader) = IterSink::<Vec<u8>>::new(4);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(sink.poll_ready(&mut cx).is_ready());
        sink.on_batch(0, rows(1)).unwrap();
        assert!(sink.poll_ready(&mut cx).is_ready());
        sink.on_batch(0, rows(2)).unwrap();
        assert_eq!(sink.outlet.stats().rows_sent, 2, "the second batch waits");
        assert!(
            sink.poll_ready(&mut cx).is_pending(),
            "not ready while it waits"
        );
        assert!(sink.poll_close(&mut cx).is_pending());

        assert_eq!(reader.next().map(|r| r[0]), Some(1)); // frees the first batch's bytes
        assert!(sink.poll_ready(&mut cx).is_ready());
        assert!(sink.poll_close(&mut cx).is_ready());
        assert_eq!(sink.outlet.stats().rows_sent, 4);
        let peak = sink.outlet.stats().peak_bytes;
        assert!(peak <= 4 << 20, "the edge never held both: {peak}");
        sink.finish().unwrap();
        let rest: Vec<u8> = reader.map(|r| r[0]).collect();
        assert_eq!(rest, vec![1, 2, 2]);
    }

    #[test]
    fn a_waiting_batch_is_counted_undelivered_when_the_reader_leaves() {
        let (mut sink, reader) = IterSink::<Vec<u8>>::new(4);
        sink.on_batch(0, rows(1)).unwrap();
        sink.on_batch(0, rows(2)).unwrap();
        drop(reader);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(sink.poll_ready(&mut cx).is_ready());
        assert!(sink.is_closed());
        assert_eq!(sink.undelivered_rows(), 4);
    }
}
