//! A one-input operator built from closures, the layer under the row-wise built-ins.
//!
//! [`unary_fn`] turns a state and an `on_batch` closure into an [`Operator`];
//! [`UnaryFn::with_on_watermark`] and [`UnaryFn::with_on_end`] add the other hooks, which
//! otherwise keep the trait's defaults (pass the watermark on; emit nothing at the end). Every
//! hook gets the state by `&mut`, so what `on_batch` gathers `on_end` can emit. The closures
//! are called exactly where the trait's methods would be, with the same [`Output`], so an
//! operator written this way compiles to the same work as the `impl Operator` it replaces.
//!
//! The built-ins ([`Map`](super::Map), [`Filter`](super::Filter), ...) are this operator with
//! the user's function as the state and a named, zero-sized [`BatchFn`] as the step, so that
//! their types can be written.

use std::marker::PhantomData;

use weir_runtime::{Batch, InputPort, Operator, OperatorError, Output, Timestamp};

/// A one-input [`Operator`] made of a state `S`, an `on_batch` step `B` (a closure or another
/// [`BatchFn`]) and, optionally, `on_watermark` and `on_end` hooks. Built by [`unary_fn`].
///
/// `I` and `O` are the batch types it consumes and emits. `W` and `E` are [`DefaultHook`] until
/// [`with_on_watermark`](Self::with_on_watermark) / [`with_on_end`](Self::with_on_end) replace
/// them. The input port is not passed on: with several inputs
/// ([`StreamCore::multi`](weir_runtime::StreamCore::multi)) every batch goes to the same step.
pub struct UnaryFn<S, I, O, B, W = DefaultHook, E = DefaultHook> {
    state: S,
    on_batch: B,
    on_watermark: W,
    on_end: E,
    _batches: PhantomData<fn(I) -> O>,
}

/// Builds a one-input operator that keeps `state` and calls `on_batch` with it for every batch
/// (use `()` as the state when there is none).
///
/// Build one per instance (in the factory of
/// [`unary_with`](weir_runtime::StreamCore::unary_with)) when the pipeline runs several: each
/// instance then has its own state.
///
/// # Errors
///
/// An error returned by a hook ends the run, as from any [`Operator`] hook.
///
/// # Examples
///
/// The running total of each row, then the number of rows at the end:
///
/// ```
/// use weir_operators::prelude::*;
/// use weir_operators::transform::unary_fn;
/// use weir_runtime::Output;
///
/// #[derive(Default)]
/// struct Totals {
///     total: u64,
///     rows: u64,
/// }
///
/// let mut p = Pipeline::new("totals");
/// let totals = p
///     .source("n", IterSource::new(vec![1u64, 2, 3, 4]))
///     .unary_with("total", |_| {
///         unary_fn(Totals::default(), |s, batch: Vec<u64>, out: &mut Output<Vec<u64>>| {
///             for x in batch {
///                 s.total = s
///                     .total
///                     .checked_add(x)
///                     .ok_or_else(|| OperatorError::user("the total overflows u64"))?;
///                 s.rows += 1;
///                 out.push(s.total);
///             }
///             Ok(())
///         })
///         .with_on_end(|s, out| {
///             out.push(s.rows);
///             out.flush(); // the last partial batch of pushed rows
///             Ok(())
///         })
///     })
///     .collect("out");
/// p.run()?;
/// assert_eq!(totals.take(), Some(vec![1, 3, 6, 10, 4]));
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
pub fn unary_fn<S, I, O, B>(state: S, on_batch: B) -> UnaryFn<S, I, O, B>
where
    B: FnMut(&mut S, I, &mut Output<O>) -> Result<(), OperatorError>,
{
    UnaryFn::with_step(state, on_batch)
}

impl<S, I, O, B> UnaryFn<S, I, O, B> {
    /// The operator with `state`, `on_batch` as its batch step and the default other hooks.
    pub(crate) fn with_step(state: S, on_batch: B) -> Self {
        Self {
            state,
            on_batch,
            on_watermark: DefaultHook,
            on_end: DefaultHook,
            _batches: PhantomData,
        }
    }
}

impl<S, I, O, B, W, E> UnaryFn<S, I, O, B, W, E> {
    /// Replaces the `on_watermark` hook: `f` is called with every watermark and passes it on
    /// itself (with [`Output::watermark`]) if it should go further.
    ///
    /// ```
    /// use weir_operators::transform::unary_fn;
    /// use weir_runtime::{Message, Operator, OperatorError, Output, Timestamp};
    ///
    /// // Holds rows back until a watermark, then emits them before passing it on.
    /// let mut op = unary_fn(Vec::<u64>::new(), |held, batch: Vec<u64>, _: &mut Output<Vec<u64>>| {
    ///     held.extend(batch);
    ///     Ok(())
    /// })
    /// .with_on_watermark(|held, watermark, out| {
    ///     out.emit(std::mem::take(held));
    ///     out.watermark(watermark);
    ///     Ok(())
    /// });
    /// let mut out = Output::new(1024);
    /// op.on_batch(0, vec![3, 4], &mut out)?;
    /// assert!(out.is_empty());
    /// op.on_watermark(Timestamp(7), &mut out)?;
    /// let emitted: Vec<Message<Vec<u64>>> = out.drain().collect();
    /// assert!(matches!(
    ///     emitted.as_slice(),
    ///     [Message::Data(rows), Message::Watermark(Timestamp(7))] if rows == &[3, 4]
    /// ));
    /// # Ok::<(), OperatorError>(())
    /// ```
    pub fn with_on_watermark<W2>(self, f: W2) -> UnaryFn<S, I, O, B, W2, E>
    where
        W2: FnMut(&mut S, Timestamp, &mut Output<O>) -> Result<(), OperatorError>,
    {
        UnaryFn {
            state: self.state,
            on_batch: self.on_batch,
            on_watermark: f,
            on_end: self.on_end,
            _batches: PhantomData,
        }
    }

    /// Replaces the `on_end` hook: `f` is called once every input has ended, to emit what the
    /// state still holds (see the example of [`unary_fn`]).
    pub fn with_on_end<E2>(self, f: E2) -> UnaryFn<S, I, O, B, W, E2>
    where
        E2: FnMut(&mut S, &mut Output<O>) -> Result<(), OperatorError>,
    {
        UnaryFn {
            state: self.state,
            on_batch: self.on_batch,
            on_watermark: self.on_watermark,
            on_end: f,
            _batches: PhantomData,
        }
    }
}

impl<S, I, O, B, W, E> Operator for UnaryFn<S, I, O, B, W, E>
where
    S: Send + 'static,
    I: Batch,
    O: Batch,
    B: BatchFn<S, I, O> + Send + 'static,
    W: WatermarkFn<S, O> + Send + 'static,
    E: EndFn<S, O> + Send + 'static,
{
    type Input = I;
    type Output = O;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: I,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError> {
        self.on_batch.on_batch(&mut self.state, batch, out)
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError> {
        self.on_watermark
            .on_watermark(&mut self.state, watermark, out)
    }

    fn on_end(&mut self, out: &mut Output<O>) -> Result<(), OperatorError> {
        self.on_end.on_end(&mut self.state, out)
    }
}

impl<S: Clone, I, O, B: Clone, W: Clone, E: Clone> Clone for UnaryFn<S, I, O, B, W, E> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            on_batch: self.on_batch.clone(),
            on_watermark: self.on_watermark.clone(),
            on_end: self.on_end.clone(),
            _batches: PhantomData,
        }
    }
}

impl<S, I, O, B, W, E> std::fmt::Debug for UnaryFn<S, I, O, B, W, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnaryFn").finish_non_exhaustive()
    }
}

/// The batch step of a [`UnaryFn`] with state `S`: what it does with each batch. Implemented by
/// every `FnMut(&mut S, I, &mut Output<O>) -> Result<(), OperatorError>` closure, and by the
/// named steps of the built-ins.
pub trait BatchFn<S, I, O> {
    /// Processes one batch, as [`Operator::on_batch`] does.
    ///
    /// # Errors
    ///
    /// An error ends the run, as from [`Operator::on_batch`].
    fn on_batch(
        &mut self,
        state: &mut S,
        batch: I,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError>;
}

impl<S, I, O, F> BatchFn<S, I, O> for F
where
    F: FnMut(&mut S, I, &mut Output<O>) -> Result<(), OperatorError>,
{
    #[inline]
    fn on_batch(
        &mut self,
        state: &mut S,
        batch: I,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError> {
        self(state, batch, out)
    }
}

/// The `on_watermark` hook of a [`UnaryFn`] with state `S`: a
/// `FnMut(&mut S, Timestamp, &mut Output<O>)` closure, or [`DefaultHook`].
pub trait WatermarkFn<S, O> {
    /// Handles a watermark, as [`Operator::on_watermark`] does.
    ///
    /// # Errors
    ///
    /// An error ends the run, as from [`Operator::on_watermark`].
    fn on_watermark(
        &mut self,
        state: &mut S,
        watermark: Timestamp,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError>;
}

impl<S, O, F> WatermarkFn<S, O> for F
where
    F: FnMut(&mut S, Timestamp, &mut Output<O>) -> Result<(), OperatorError>,
{
    fn on_watermark(
        &mut self,
        state: &mut S,
        watermark: Timestamp,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError> {
        self(state, watermark, out)
    }
}

/// The `on_end` hook of a [`UnaryFn`] with state `S`: a `FnMut(&mut S, &mut Output<O>)`
/// closure, or [`DefaultHook`].
pub trait EndFn<S, O> {
    /// Handles the end of every input, as [`Operator::on_end`] does.
    ///
    /// # Errors
    ///
    /// An error ends the run, as from [`Operator::on_end`].
    fn on_end(&mut self, state: &mut S, out: &mut Output<O>) -> Result<(), OperatorError>;
}

impl<S, O, F> EndFn<S, O> for F
where
    F: FnMut(&mut S, &mut Output<O>) -> Result<(), OperatorError>,
{
    fn on_end(&mut self, state: &mut S, out: &mut Output<O>) -> Result<(), OperatorError> {
        self(state, out)
    }
}

/// The [`Operator`] trait's own behaviour for a hook of a [`UnaryFn`] that was not replaced:
/// a watermark is passed on, the end emits nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultHook;

impl<S, O: Batch> WatermarkFn<S, O> for DefaultHook {
    fn on_watermark(
        &mut self,
        _: &mut S,
        watermark: Timestamp,
        out: &mut Output<O>,
    ) -> Result<(), OperatorError> {
        out.watermark(watermark);
        Ok(())
    }
}

impl<S, O> EndFn<S, O> for DefaultHook {
    fn on_end(&mut self, _: &mut S, _: &mut Output<O>) -> Result<(), OperatorError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use weir_runtime::{Message, Operator, OperatorError, Output, Pipeline, Timestamp};

    use super::unary_fn;
    use crate::source::{Generator, IterSource};
    use crate::transform::{Filter, FilterMap, Inspect, Map, StreamExt};

    fn pass(_: &mut (), batch: Vec<u64>, out: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        out.emit(batch);
        Ok(())
    }

    #[test]
    fn default_hooks_pass_the_watermark_on_and_emit_nothing_at_the_end() {
        let mut op = unary_fn((), pass);
        let mut out = Output::new(4);
        op.on_batch(0, vec![1, 2], &mut out).unwrap();
        op.on_watermark(Timestamp(9), &mut out).unwrap();
        op.on_end(&mut out).unwrap();
        let got: Vec<_> = out.drain().collect();
        assert!(
            matches!(got.as_slice(), [Message::Data(rows), Message::Watermark(Timestamp(9))] if rows == &[1, 2]),
            "{got:?}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn replaced_hooks_see_the_state_the_batches_left() {
        let mut op = unary_fn(0u64, |rows, batch: Vec<u64>, _: &mut Output<Vec<u64>>| {
            *rows += batch.len() as u64;
            Ok(())
        })
        .with_on_watermark(|rows, watermark, out| {
            out.emit(vec![*rows, watermark.0.unsigned_abs()]);
            Ok(())
        })
        .with_on_end(|rows, out| {
            out.emit(vec![*rows]);
            Ok(())
        });
        let mut out = Output::new(4);
        op.on_batch(0, vec![1, 2, 3], &mut out).unwrap();
        op.on_watermark(Timestamp(9), &mut out).unwrap();
        op.on_batch(1, vec![4], &mut out).unwrap();
        op.on_end(&mut out).unwrap();
        let got: Vec<_> = out.drain().collect();
        assert!(
            matches!(got.as_slice(), [Message::Data(w), Message::Data(end)] if w == &[3, 9] && end == &[4]),
            "{got:?}"
        );
    }

    #[test]
    fn an_error_from_the_step_fails_the_run_naming_the_operator() {
        let mut p = Pipeline::new("fails");
        let rows = p
            .source("n", Generator::new(10, |i| i))
            .unary(
                "reject-7",
                unary_fn((), |_, batch: Vec<u64>, out: &mut Output<Vec<u64>>| {
                    if batch.contains(&7) {
                        return Err(OperatorError::user("7 is not allowed"));
                    }
                    out.emit(batch);
                    Ok(())
                }),
            )
            .collect("out");
        let err = p.run().unwrap_err();
        assert!(err.to_string().contains("reject-7"), "{err}");
        assert_eq!(rows.take(), None);
    }

    #[test]
    fn each_instance_built_in_the_factory_has_its_own_state() {
        let mut p = Pipeline::new("per-instance");
        let totals = p
            .source("n", IterSource::new(vec![5u64, 6, 7, 8]))
            .rebalance()
            .unary_with("rows", |_| {
                unary_fn(0u64, |rows, batch: Vec<u64>, _: &mut Output<Vec<u64>>| {
                    *rows += batch.len() as u64;
                    Ok(())
                })
                .with_on_end(|rows, out| {
                    out.emit(vec![*rows]);
                    Ok(())
                })
            })
            .parallelism(2)
            .collect("out");
        p.run().unwrap();
        let totals = totals.take().unwrap();
        assert_eq!(totals.len(), 2, "one total per instance: {totals:?}");
        assert_eq!(totals.iter().sum::<u64>(), 4);
    }

    #[test]
    fn the_named_built_ins_still_build_from_new() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let mut p = Pipeline::new("named");
        let rows = p
            .source("n", Generator::new(10, |i| i))
            .unary("double", Map::new(|x: u64| x * 2))
            .unary("no-tens", Filter::new(|x: &u64| !x.is_multiple_of(10)))
            .unary(
                "thirds",
                FilterMap::new(|x: u64| x.is_multiple_of(3).then_some(x / 3)),
            )
            .unary(
                "count",
                Inspect::new(move |_: &u64| {
                    counter.fetch_add(1, Ordering::Relaxed);
                }),
            )
            .collect("out");
        p.run().unwrap();
        assert_eq!(rows.take(), Some(vec![2, 4, 6]));
        assert_eq!(seen.load(Ordering::Relaxed), 3);
    }

    /// The aliases still name the operators in generic code, as the structs they replaced did.
    fn doubled<F>(f: F) -> Map<u64, F>
    where
        F: FnMut(u64) -> u64 + Send + 'static,
    {
        Map::new(f)
    }

    #[test]
    fn a_map_named_in_generic_code_runs_its_function() {
        let mut op = doubled(|x| x * 2);
        let mut out = Output::new(4);
        op.on_batch(0, vec![1, 2], &mut out).unwrap();
        let got: Vec<_> = out.drain().collect();
        assert!(
            matches!(got.as_slice(), [Message::Data(rows)] if rows == &[2, 4]),
            "{got:?}"
        );
    }

    #[test]
    fn the_stream_methods_match_the_named_built_ins() {
        let mut p = Pipeline::new("methods");
        let rows = p
            .source("n", Generator::new(10, |i| i))
            .map("double", |x| x * 2)
            .filter("no-tens", |x: &u64| !x.is_multiple_of(10))
            .filter_map("thirds", |x: u64| x.is_multiple_of(3).then_some(x / 3))
            .inspect("look", |_| {})
            .collect("out");
        p.run().unwrap();
        assert_eq!(rows.take(), Some(vec![2, 4, 6]));
    }
}
