//! A source draining an iterator.

use std::task::{Context, Poll};

use weir_runtime::{Data, OperatorError, Output, Source, SourceStatus};

/// Emits the items of an iterator, pulling one batch's worth per poll (so an iterator that reads
/// a file reads only as fast as the pipeline drains).
///
/// # Examples
///
/// ```
/// use weir_operators::prelude::*;
///
/// let mut p = Pipeline::new("iter");
/// let words = p.source("words", IterSource::new("a b c".split(' ').map(String::from)));
/// let out = words.collect("all");
/// p.run()?;
/// assert_eq!(out.take().unwrap(), vec!["a", "b", "c"]);
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
#[derive(Debug)]
pub struct IterSource<I> {
    iter: I,
}

impl<I> IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Data,
{
    /// Wraps `iter`.
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            iter: iter.into_iter(),
        }
    }
}

impl<I> Source for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Data,
{
    type Output = Vec<I::Item>;

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<Vec<I::Item>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let cap = out.row_capacity();
        let mut batch = out.batch_with_capacity(cap);
        batch.extend(self.iter.by_ref().take(out.batch_rows()));
        if batch.capacity() > out.batch_rows() {
            // Grown past the batch from a capped pre-allocation: hold no more than a batch.
            batch.shrink_to(out.batch_rows());
        }
        let done = batch.len() < out.batch_rows();
        out.emit(batch);
        Poll::Ready(Ok(if done {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}
