//! One keyed stage: the operator behind every step of a keyed aggregation.
//!
//! A [`KeyedStage`] folds its input rows into per-key accumulators ([`KeyedState`]) and emits
//! `(key, accumulator)` pairs, mapped to its output row by an `emit` function. It plays every
//! role a keyed aggregation needs, set by [`Role`]:
//!
//! | role | input | emits | at `max_keys` |
//! |---|---|---|---|
//! | combiner, before the shuffle | rows | partials `(K, Acc)`, drained when full or per batch | drains its coldest keys |
//! | partial, after a splitting shuffle | rows or partials | partials, drained at the end | drains its coldest keys |
//! | final | rows or partials | results `(K, Output)`, at the end (and updates) | fails |
//!
//! Draining partials early is always exact: a downstream stage merges every partial of a key,
//! and merging is associative and commutative (see [`aggregate`](super::aggregate)). Only a
//! final stage must keep every key, so only it can run out of room — and then it fails with
//! [`KeyedError::TooManyKeys`] instead of growing past its bound.
//!
//! At the end of its input a stage hands its keys on a batch at a time, as its consumer's
//! credit allows ([`Operator::poll_flush`]), so the results never sit in its output all at
//! once beside the state they came from.
//!
//! A stage can pace itself to a fixed row rate ([`Pace`]) through `Operator::poll_ready`; the
//! rows-in-flight and state figures show in the run report.

use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::task::{Context, Poll};

use weir_runtime::{
    Data, HeapSize, InputPort, InstanceInfo, Operator, OperatorError, Output, StateSize,
};

use super::aggregate::Aggregate;
use super::pace::Pace;
use super::state::{Drained, KeyedError, KeyedState};
use crate::snapshot::{KeyGrouping, KeyedSnapshot, SnapshotHooks};

/// What a stage does with its state, and when it emits (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Emits partials and drains: when full, after every `flush_every` rows if set, after
    /// every batch if `per_batch`, and at the end.
    Partial {
        /// Drain after every batch (a combiner that holds nothing between batches).
        per_batch: bool,
        /// Drain after this many input rows.
        flush_every: Option<NonZeroU64>,
    },
    /// Emits results at the end; with `updates`, also the keys changed since the last update
    /// after every that many input rows. Fails at `max_keys`.
    Final {
        /// Rows between periodic updates.
        updates: Option<NonZeroU64>,
    },
}

/// Maps an emitted `(key, accumulator)` to an output row.
pub type EmitFn<A, K, O> = fn(&A, K, <A as Aggregate>::Acc) -> O;

/// Folds one input value into an accumulator.
pub type FoldFn<A, V> = fn(&A, &mut <A as Aggregate>::Acc, V);

/// A keyed aggregation stage (see the [module docs](self)).
///
/// `split` takes an input row apart into its key and the value to fold; `fold` folds the value
/// (`Aggregate::add` for raw rows, `Aggregate::merge` for partials); `emit` builds output rows.
pub struct KeyedStage<Row, K, V, A: Aggregate, S, O> {
    agg: A,
    split: S,
    fold: FoldFn<A, V>,
    emit: EmitFn<A, K, O>,
    role: Role,
    state: KeyedState<K, A::Acc>,
    /// After the end of the input: the keys not yet handed on, a batch per call.
    closing: Option<Drained<K, A::Acc>>,
    pace: Option<Pace>,
    rows_since: u64,
    name: String,
    instance: usize,
    snapshots: Option<SnapshotHooks<Self>>,
    _rows: PhantomData<fn(Row)>,
}

impl<Row, K, V, A: Aggregate, S, O> std::fmt::Debug for KeyedStage<Row, K, V, A, S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStage")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<Row, K, V, A, S, O> KeyedStage<Row, K, V, A, S, O>
where
    K: std::hash::Hash + Eq + Clone + HeapSize,
    A: Aggregate,
    S: FnMut(Row) -> (K, V),
{
    /// A stage holding at most `max_keys` keys.
    pub fn new(
        agg: A,
        split: S,
        fold: FoldFn<A, V>,
        emit: EmitFn<A, K, O>,
        role: Role,
        max_keys: usize,
    ) -> Self {
        Self {
            agg,
            split,
            fold,
            emit,
            role,
            state: KeyedState::new(max_keys),
            closing: None,
            pace: None,
            rows_since: 0,
            name: String::new(),
            instance: 0,
            snapshots: None,
            _rows: PhantomData,
        }
    }

    /// Makes the stage write its state into checkpoints and read it back, keys filed by
    /// `grouping` (that of the keyed edge in front of it).
    pub fn with_snapshots(mut self, grouping: KeyGrouping) -> Self
    where
        Self: KeyedSnapshot,
    {
        self.snapshots = Some(SnapshotHooks::new(grouping));
        self
    }

    /// Limits the stage to `pace`'s row rate.
    pub fn with_pace(mut self, pace: Option<Pace>) -> Self {
        self.pace = pace;
        self
    }

    fn drain(&mut self, out: &mut Output<Vec<O>>)
    where
        O: Data,
    {
        let (agg, emit) = (&self.agg, self.emit);
        self.state.drain(|k, acc| out.push(emit(agg, k, acc)));
    }

    /// Hands on the keys left after the end until a batch is full; returns whether none is
    /// left.
    fn drain_closing(&mut self, out: &mut Output<Vec<O>>) -> bool
    where
        O: Data,
    {
        let Some(closing) = &mut self.closing else {
            return true;
        };
        let (agg, emit) = (&self.agg, self.emit);
        for (k, acc) in closing.by_ref() {
            out.push(emit(agg, k, acc));
            if out.is_full() {
                return false;
            }
        }
        self.closing = None;
        true
    }

    fn full(&mut self, out: &mut Output<Vec<O>>) -> Result<(), OperatorError>
    where
        O: Data,
    {
        match self.role {
            Role::Partial { .. } => {
                // Keep the hot keys absorbing rows; send the cold ones on.
                let (agg, emit) = (&self.agg, self.emit);
                self.state.drain_cold(|k, acc| out.push(emit(agg, k, acc)));
                Ok(())
            }
            Role::Final { .. } => Err(OperatorError::user(
                KeyedError::TooManyKeys {
                    operator: self.name.clone(),
                    instance: self.instance,
                    max_keys: self.state.max_keys(),
                }
                .to_string(),
            )),
        }
    }
}

impl<Row, K, V, A, S, O> Operator for KeyedStage<Row, K, V, A, S, O>
where
    Row: Data,
    K: std::hash::Hash + Eq + Clone + Data,
    V: 'static,
    A: Aggregate + Send + 'static,
    S: FnMut(Row) -> (K, V) + Send + 'static,
    O: Data,
{
    type Input = Vec<Row>;
    type Output = Vec<O>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.name = info.name.to_string();
        self.instance = info.instance;
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        match &mut self.pace {
            Some(pace) => pace.poll_ready(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Row>,
        out: &mut Output<Vec<O>>,
    ) -> Result<(), OperatorError> {
        let rows = batch.len();
        for row in batch {
            let (key, value) = (self.split)(row);
            if !self.state.has_room_for(&key) {
                self.full(out)?;
            }
            let acc = self.state.slot(&self.agg, key);
            (self.fold)(&self.agg, acc, value);
        }
        if let Some(pace) = &mut self.pace {
            pace.charge(rows);
        }
        self.rows_since += rows as u64;
        match self.role {
            Role::Partial {
                per_batch,
                flush_every,
            } => {
                if per_batch || flush_every.is_some_and(|n| self.rows_since >= n.get()) {
                    self.rows_since = 0;
                    self.drain(out);
                }
            }
            Role::Final {
                updates: Some(every),
            } if self.rows_since >= every.get() => {
                self.rows_since = 0;
                let (agg, emit) = (&self.agg, self.emit);
                self.state
                    .changed(|k, acc| out.push(emit(agg, k.clone(), acc.clone())));
            }
            Role::Final { .. } => {}
        }
        Ok(())
    }

    fn on_end(&mut self, _: &mut Output<Vec<O>>) -> Result<(), OperatorError> {
        // Results leave from `poll_flush`, which the executor calls after the end until it is
        // ready: a batch at a time, as credit allows, not all at once.
        self.closing = Some(self.state.take_all());
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<O>>,
    ) -> Poll<Result<(), OperatorError>> {
        if self.closing.is_none() {
            return Poll::Ready(Ok(()));
        }
        if out.is_full() {
            // Called again once the full batch has been sent.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.drain_closing(out) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn held_rows(&self) -> u64 {
        // One result a key: those still in the state, and those left to hand on after the end.
        (self.state.len() + self.closing.as_ref().map_or(0, |c| c.len())) as u64
    }

    /// A stage keeps accumulators across batches, so a [barrier](weir_runtime::barrier) cannot
    /// pass it, except a combiner that drains after every batch (`Role::Partial { per_batch:
    /// true, .. }`): it holds nothing once a batch is done.
    fn holds_rows(&self) -> bool {
        !matches!(
            self.role,
            Role::Partial {
                per_batch: true,
                ..
            }
        )
    }

    crate::snapshot::snapshot_hooks!(snapshots);

    fn state_size(&self) -> Option<StateSize> {
        Some(StateSize {
            keys: self.state.len() as u64,
            bytes: self.state.bytes() as u64,
            hottest_key_updates: u64::from(self.state.top_hits()),
        })
    }
}

mod snapshot;
