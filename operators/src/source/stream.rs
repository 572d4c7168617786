//! A source polling an async `Stream`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use weir_runtime::{Data, OperatorError, Output, Source, SourceStatus};

/// Emits the items of an async [`Stream`], polled only when downstream has credit.
///
/// Items that arrive slowly are gathered into a batch until it is full or the pipeline's linger
/// deadline passes, so a trickle still flows.
pub struct AsyncSource<S> {
    stream: Pin<Box<S>>,
}

impl<S> std::fmt::Debug for AsyncSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSource").finish_non_exhaustive()
    }
}

impl<S> AsyncSource<S>
where
    S: Stream + Send + 'static,
    S::Item: Data,
{
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self {
            stream: Box::pin(stream),
        }
    }
}

impl<S> Source for AsyncSource<S>
where
    S: Stream + Send + 'static,
    S::Item: Data,
{
    type Output = Vec<S::Item>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<S::Item>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let mut got = false;
        while !out.is_full() {
            match self.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    out.push(item);
                    got = true;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(SourceStatus::Done)),
                Poll::Pending if got => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}
