//! A source of `count` rows computed from their index.

use std::task::{Context, Poll};

use weir_runtime::{Data, InstanceInfo, OperatorError, Output, Source, SourceStatus};

/// Emits `f(i)` for `i` in `0..count`, one batch per poll.
///
/// Run in parallel (built per instance with `Pipeline::source_with`), each instance takes a
/// contiguous share of the index range, so the union of all instances is exactly `0..count`.
///
/// # Examples
///
/// ```
/// use weir_operators::prelude::*;
///
/// let mut p = Pipeline::new("gen");
/// let total = p.source("gen", Generator::new(1_000, |i| i)).fold("sum", 0u64, |a, x| a + x);
/// p.run()?;
/// assert_eq!(total.take(), Some(499_500));
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Generator<F> {
    count: u64,
    next: u64,
    end: u64,
    f: F,
}

impl<T, F> Generator<F>
where
    F: FnMut(u64) -> T + Send + 'static,
    T: Data,
{
    /// `count` rows, the `i`-th being `f(i)`.
    pub fn new(count: u64, f: F) -> Self {
        Self {
            count,
            next: 0,
            end: count,
            f,
        }
    }
}

impl<T, F> Source for Generator<F>
where
    F: FnMut(u64) -> T + Send + 'static,
    T: Data,
{
    type Output = Vec<T>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        // This instance's contiguous share of 0..count.
        let (p, i) = (info.parallelism as u128, info.instance as u128);
        let count = self.count as u128;
        self.next = (count * i / p) as u64;
        self.end = (count * (i + 1) / p) as u64;
        Ok(())
    }

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<Vec<T>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let n = (self.end - self.next).min(out.batch_rows() as u64);
        // Exactly the rows this batch holds (at most `batch_rows`, which the pipeline bounds).
        let mut batch = out.batch_with_capacity(n as usize);
        let f = &mut self.f;
        batch.extend((self.next..self.next + n).map(f));
        self.next += n;
        out.emit(batch);
        Poll::Ready(Ok(if self.next == self.end {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}
