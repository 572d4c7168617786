//! The row-wise operators behind [`StreamExt`](super::StreamExt).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use weir_runtime::{Data, InputPort, Operator, OperatorError, Output, Timestamp};

use super::unary_fn::{BatchFn, UnaryFn};

/// The result type of a row function, so that the built-ins' types can be written: [`Map<T, F>`]
/// emits `Vec<<F as RowFn<T>>::Output>`. Implemented by every `FnOnce(T) -> U`.
pub trait RowFn<T> {
    /// What the function returns for a row.
    type Output;
}

impl<T, U, F: FnOnce(T) -> U> RowFn<T> for F {
    type Output = U;
}

/// Applies a function to every row: a [`UnaryFn`] whose state is the function.
pub type Map<T, F> = UnaryFn<F, Vec<T>, Vec<<F as RowFn<T>>::Output>, MapRows>;

impl<T, U, F> UnaryFn<F, Vec<T>, Vec<U>, MapRows> {
    /// A [`Map`] applying `f`.
    pub fn new(f: F) -> Self {
        Self::with_step(f, MapRows)
    }
}

/// The batch step of [`Map`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MapRows;

impl<T: Data, U: Data, F: FnMut(T) -> U> BatchFn<F, Vec<T>, Vec<U>> for MapRows {
    #[inline]
    fn on_batch(
        &mut self,
        f: &mut F,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        // Collecting a mapped `vec::IntoIter` reuses the allocation when the layouts allow.
        out.emit(batch.into_iter().map(f).collect());
        Ok(())
    }
}

/// Keeps the rows a predicate accepts, in place: a [`UnaryFn`] whose state is the predicate.
pub type Filter<T, F> = UnaryFn<F, Vec<T>, Vec<T>, FilterRows>;

impl<T, F> UnaryFn<F, Vec<T>, Vec<T>, FilterRows> {
    /// A [`Filter`] keeping the rows `f` accepts.
    pub fn new(f: F) -> Self {
        Self::with_step(f, FilterRows)
    }
}

/// The batch step of [`Filter`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterRows;

impl<T: Data, F: FnMut(&T) -> bool> BatchFn<F, Vec<T>, Vec<T>> for FilterRows {
    #[inline]
    fn on_batch(
        &mut self,
        f: &mut F,
        mut batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        batch.retain(f);
        out.emit(batch);
        Ok(())
    }
}

/// Maps and filters in one pass: a [`UnaryFn`] whose state is the function.
pub type FilterMap<T, F> =
    UnaryFn<F, Vec<T>, Vec<<<F as RowFn<T>>::Output as IntoIterator>::Item>, FilterMapRows>;

impl<T, U, F> UnaryFn<F, Vec<T>, Vec<U>, FilterMapRows> {
    /// A [`FilterMap`] keeping the `Some` results of `f`.
    pub fn new(f: F) -> Self {
        Self::with_step(f, FilterMapRows)
    }
}

/// The batch step of [`FilterMap`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterMapRows;

impl<T: Data, U: Data, F: FnMut(T) -> Option<U>> BatchFn<F, Vec<T>, Vec<U>> for FilterMapRows {
    #[inline]
    fn on_batch(
        &mut self,
        f: &mut F,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        out.emit(batch.into_iter().filter_map(f).collect());
        Ok(())
    }
}

/// Replaces each row by zero or more rows, re-batched to the pipeline's batch size.
///
/// Expansion is lazy: at most one full batch is emitted per call, and the rest of the input
/// batch (with the row being expanded) waits in the operator, which takes no new input until
/// it has passed all of it on ([`Operator::poll_ready`] / [`Operator::poll_flush`]). So a row
/// that expands into millions of rows holds about one batch of them at a time, and its
/// consumer's credit paces the expansion.
pub struct FlatMap<T, F, It = ()> {
    f: F,
    /// Input batches not yet expanded, oldest first (one, unless a chained producer handed on
    /// several batches of one call: they were held already, in its output).
    rows: VecDeque<std::vec::IntoIter<T>>,
    /// The expansion of the current row, where it stopped.
    current: Option<It>,
    /// The latest watermark that arrived during an expansion, passed on after it.
    watermark: Option<Timestamp>,
    /// Every input has ended (the last partial batch is cut once the expansion is done).
    ended: bool,
}

impl<T, F, It> std::fmt::Debug for FlatMap<T, F, It> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatMap")
            .field(
                "pending_rows",
                &self.rows.iter().map(|r| r.len()).sum::<usize>(),
            )
            .field("expanding", &self.current.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, F, It> FlatMap<T, F, It> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            rows: VecDeque::new(),
            current: None,
            watermark: None,
            ended: false,
        }
    }

    fn is_expanding(&self) -> bool {
        self.current.is_some() || !self.rows.is_empty()
    }
}

impl<T, U, I, F> FlatMap<T, F, I::IntoIter>
where
    U: Data,
    I: IntoIterator<Item = U>,
    F: FnMut(T) -> I,
{
    /// Expands pending rows until a full batch is sealed in `out` or nothing is pending;
    /// returns whether the expansion is complete.
    fn expand(&mut self, out: &mut Output<Vec<U>>) -> bool {
        loop {
            if let Some(current) = &mut self.current {
                for row in current.by_ref() {
                    out.push(row);
                    if out.is_full() {
                        return false;
                    }
                }
                self.current = None;
            }
            let Some(rows) = self.rows.front_mut() else {
                if let Some(watermark) = self.watermark.take() {
                    out.watermark(watermark);
                }
                return true;
            };
            match rows.next() {
                Some(row) => self.current = Some((self.f)(row).into_iter()),
                None => {
                    self.rows.pop_front();
                }
            }
        }
    }
}

impl<T, U, I, F> Operator for FlatMap<T, F, I::IntoIter>
where
    T: Data,
    U: Data,
    I: IntoIterator<Item = U>,
    I::IntoIter: Send + 'static,
    F: FnMut(T) -> I + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<U>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.is_expanding() {
            // `poll_flush` goes on with the expansion; look again after it.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<U>>,
    ) -> Poll<Result<(), OperatorError>> {
        if out.is_full() {
            // The last batch has not been sent yet; `poll_flush` is called again after it is.
            if !self.is_expanding() {
                return Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !self.expand(out) {
            // A full batch was sealed: the executor sends it and calls again.
            return Poll::Pending;
        }
        if self.ended {
            out.flush();
        }
        Poll::Ready(Ok(()))
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        self.rows.push_back(batch.into_iter());
        if !out.is_full() {
            self.expand(out);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        if self.is_expanding() {
            // After the rows that came before it.
            self.watermark = Some(watermark);
        } else {
            out.watermark(watermark);
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Vec<U>>) -> Result<(), OperatorError> {
        self.ended = true;
        if !self.is_expanding() {
            out.flush();
        }
        Ok(())
    }
}

/// Observes every row without changing it: a [`UnaryFn`] whose state is the function.
pub type Inspect<T, F> = UnaryFn<F, Vec<T>, Vec<T>, InspectRows>;

impl<T, F> UnaryFn<F, Vec<T>, Vec<T>, InspectRows> {
    /// An [`Inspect`] calling `f` on every row.
    pub fn new(f: F) -> Self {
        Self::with_step(f, InspectRows)
    }
}

/// The batch step of [`Inspect`].
#[derive(Clone, Copy, Debug, Default)]
pub struct InspectRows;

impl<T: Data, F: FnMut(&T)> BatchFn<F, Vec<T>, Vec<T>> for InspectRows {
    #[inline]
    fn on_batch(
        &mut self,
        f: &mut F,
        batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        batch.iter().for_each(f);
        out.emit(batch);
        Ok(())
    }
}

/// Passes batches from any number of inputs through, in the order they are taken.
pub struct Union<T> {
    _rows: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Union<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Union")
    }
}

impl<T> Default for Union<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Union<T> {
    /// A union operator.
    pub fn new() -> Self {
        Self { _rows: PhantomData }
    }
}

impl<T: Data> Operator for Union<T> {
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        out.emit(batch);
        Ok(())
    }
}
