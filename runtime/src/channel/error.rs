//! Errors of edge operations. Each failed send hands its message back.

use std::fmt;

/// The other side of the edge has gone away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the consumer of this edge has closed it")]
pub struct Closed;

/// Why [`Outlet::try_reserve`](super::Outlet::try_reserve) found no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryReserveError {
    /// No credit or no byte room right now; wait with `poll_reserve`.
    #[error("the edge is full: wait for the consumer to grant credit")]
    Full,
    /// The consumer has closed the edge.
    #[error("the consumer of this edge has closed it")]
    Closed,
}

/// Why [`Outlet::try_send`](super::Outlet::try_send) failed; the message is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// No credit or no byte room right now.
    #[error("the edge is full: wait for the consumer to grant credit")]
    Full(T),
    /// The consumer has closed the edge.
    #[error("the consumer of this edge has closed it")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why [`Inlet::try_recv`](super::Inlet::try_recv) returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing buffered yet.
    #[error("the edge is empty")]
    Empty,
    /// The producer went away without ending the stream (it failed or was cancelled).
    #[error("the producer of this edge went away without ending the stream")]
    Disconnected,
    /// The stream ended normally and everything was received.
    #[error("the stream has ended")]
    Ended,
}
