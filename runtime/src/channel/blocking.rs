//! Blocking use of an edge from ordinary threads: the thread parks while it waits, and the other
//! side's wake-up unparks it.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use super::{Closed, Inlet, Outlet, TryRecvError};
use crate::batch::{Batch, Message};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

impl<B: Batch> Outlet<B> {
    /// Sends `msg`, parking the calling thread while the edge has no room for it.
    ///
    /// # Errors
    ///
    /// [`Closed`] (with the message dropped) if the consumer is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{edge, EdgeConfig, Message};
    ///
    /// let (mut tx, mut rx) = edge::<Vec<u64>>(EdgeConfig::default().with_capacity(2));
    /// let producer = std::thread::spawn(move || {
    ///     for i in 0..100 {
    ///         tx.send_blocking(Message::Data(vec![i])).unwrap();
    ///     }
    ///     tx.send_blocking(Message::End).unwrap();
    /// });
    /// let mut sum = 0;
    /// while let Ok(Message::Data(v)) = rx.recv_blocking() {
    ///     sum += v[0];
    /// }
    /// producer.join().unwrap();
    /// assert_eq!(sum, 4950);
    /// ```
    pub fn send_blocking(&mut self, msg: Message<B>) -> Result<(), Closed> {
        let bytes = msg.bytes();
        let waker = thread_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            match self.poll_reserve(&mut cx, bytes) {
                Poll::Ready(Ok(permit)) => {
                    permit.send_sized(msg, bytes);
                    return Ok(());
                }
                Poll::Ready(Err(closed)) => return Err(closed),
                Poll::Pending => std::thread::park(),
            }
        }
    }
}

impl<B: Batch> Inlet<B> {
    /// Receives the next message, parking the calling thread while the edge is empty.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), except that it never returns
    /// [`TryRecvError::Empty`].
    pub fn recv_blocking(&mut self) -> Result<Message<B>, TryRecvError> {
        let waker = thread_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            match self.poll_recv(&mut cx) {
                Poll::Ready(r) => return r,
                Poll::Pending => std::thread::park(),
            }
        }
    }
}
