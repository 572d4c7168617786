//! The window operator: every stage of a windowed aggregation.
//!
//! A [`WindowStage`] takes arrivals — raw rows with their key and event time, partial
//! accumulators of a `(key, window)` from an upstream stage, or late rows passing through — and
//! keeps a [`WindowState`]. Its [`Finisher`] sets its role:
//!
//! | role | emits on the watermark | after firing | at its bound |
//! |---|---|---|---|
//! | final ([`Results`]) | `finish(acc)` per window, in end order | keeps the window until `end + lateness` | fails the run |
//! | partial ([`Partials`]) | the accumulator per window, in end order | forgets it | hands every window on |
//!
//! Either way it then forwards the watermark, so a stage downstream has every partial of a
//! window before the watermark that closes it. Lateness is decided where raw rows arrive; late
//! rows are emitted as [`Fired::Late`] and pass through later stages untouched.

use std::hash::Hash;
use std::marker::PhantomData;

use weir_runtime::{
    Data, HeapSize, InputPort, InstanceInfo, Operator, OperatorError, Output, StateSize, Timestamp,
};

use super::assign::Assigner;
use super::state::{Slot, WindowState};
use crate::keyed::aggregate::Aggregate;
use crate::snapshot::{KeyGrouping, KeyedSnapshot, SnapshotHooks};

/// What a window stage emits: a window's value, or a late row.
#[derive(Clone, Debug, PartialEq, HeapSize)]
pub(crate) enum Fired<K, V, T> {
    /// A window's result (final stage) or partial accumulator (partial stage).
    Window {
        key: K,
        start: i64,
        end: i64,
        firing: u32,
        value: V,
    },
    /// A row whose every window was cleaned up when it arrived.
    Late(T),
}

/// One input of a window stage, taken apart.
pub(crate) enum Arrival<K, Acc, T> {
    /// A raw row at event time `time`.
    Row { key: K, time: i64, row: T },
    /// A partial accumulator of `key`'s window `[start, end)`.
    Piece {
        key: K,
        start: i64,
        end: i64,
        acc: Acc,
    },
    /// A row found late upstream.
    Late(T),
}

/// What a stage makes of a window when it fires: its role (see the [module docs](self)).
pub(crate) trait Finisher<A: Aggregate>: Send + 'static {
    /// The value emitted per window.
    type Value: Data;
    /// Whether fired windows are kept for lateness updates.
    const KEEP: bool;
    /// Whether the stage fails at its bound (else it hands every window on).
    const FINAL: bool;
    /// The value of a firing window.
    fn value(agg: &A, acc: &A::Acc) -> Self::Value;
}

/// The final role: results.
pub(crate) struct Results;

impl<A: Aggregate> Finisher<A> for Results
where
    A::Output: Data,
{
    type Value = A::Output;
    const KEEP: bool = true;
    const FINAL: bool = true;
    fn value(agg: &A, acc: &A::Acc) -> A::Output {
        agg.finish(acc)
    }
}

/// The partial role: accumulators, merged downstream.
pub(crate) struct Partials;

impl<A: Aggregate> Finisher<A> for Partials {
    type Value = A::Acc;
    const KEEP: bool = false;
    const FINAL: bool = false;
    fn value(_: &A, acc: &A::Acc) -> A::Acc {
        acc.clone()
    }
}

/// A stage of a windowed aggregation (see the [module docs](self)).
pub(crate) struct WindowStage<In, K, T, A: Aggregate, R, S> {
    agg: A,
    assigner: Assigner,
    split: S,
    state: WindowState<K, A::Acc>,
    max_windows: usize,
    watermark: i64,
    /// The tumbling window `[start, end)` of the last row, exactly aligned (never a window
    /// clipped at the ends of `i64`): a row inside it needs no division.
    tumbling: (i64, i64),
    name: String,
    instance: usize,
    snapshots: Option<SnapshotHooks<Self>>,
    _types: PhantomData<fn(In, T, R)>,
}

impl<In, K, T, A, R, S> WindowStage<In, K, T, A, R, S>
where
    K: Hash + Eq + Clone + Data,
    T: Data,
    A: Aggregate<Input = T>,
    R: Finisher<A>,
    S: FnMut(In) -> Arrival<K, A::Acc, T>,
{
    /// A stage keeping fired windows `lateness` ms (final role) and holding at most
    /// `max_windows` `(key, window)` accumulators.
    pub(crate) fn new(
        agg: A,
        assigner: Assigner,
        lateness: i64,
        max_windows: usize,
        split: S,
    ) -> Self {
        Self {
            agg,
            assigner,
            split,
            state: if !R::KEEP && assigner.is_merging() {
                WindowState::new(lateness).due_at_start()
            } else {
                WindowState::new(lateness)
            },
            max_windows: max_windows.max(1),
            watermark: i64::MIN,
            tumbling: (0, 0),
            name: String::new(),
            instance: 0,
            snapshots: None,
            _types: PhantomData,
        }
    }

    /// Makes the stage write its state into checkpoints and read it back, keys filed by
    /// `grouping` (that of the keyed edge in front of it).
    pub(crate) fn with_snapshots(mut self, grouping: KeyGrouping) -> Self
    where
        Self: KeyedSnapshot,
    {
        self.snapshots = Some(SnapshotHooks::new(grouping));
        self
    }

    fn emit(agg: &A, out: &mut Output<Vec<Fired<K, R::Value, T>>>, slot: &mut Slot<K, A::Acc>) {
        out.push(Fired::Window {
            key: slot.key.clone(),
            start: slot.start,
            end: slot.end,
            firing: slot.firings,
            value: R::value(agg, slot.acc()),
        });
    }

    /// Makes room for one more window: a partial stage hands everything on, a final one fails.
    fn make_room(
        &mut self,
        out: &mut Output<Vec<Fired<K, R::Value, T>>>,
    ) -> Result<(), OperatorError> {
        if self.state.len() < self.max_windows {
            return Ok(());
        }
        if R::FINAL {
            return Err(OperatorError::user(format!(
                "window aggregate `{}` (instance {}) already holds {} (key, window) \
                 accumulators and needs another; raise the bound with `max_windows`, add \
                 instances with `parallelism`, or let the watermark advance sooner",
                self.name, self.instance, self.max_windows
            )));
        }
        let agg = &self.agg;
        self.state
            .drain(agg, |mut slot| Self::emit(agg, out, &mut slot));
        Ok(())
    }

    /// Folds one arrival in (or emits it as late).
    fn arrive(
        &mut self,
        arrival: Arrival<K, A::Acc, T>,
        out: &mut Output<Vec<Fired<K, R::Value, T>>>,
    ) -> Result<(), OperatorError> {
        let wm = self.watermark;
        match arrival {
            Arrival::Late(row) => out.push(Fired::Late(row)),
            Arrival::Piece {
                key,
                start,
                end,
                acc,
            } => {
                // Never late here: its stage upstream handed it on before forwarding a
                // watermark past its cleanup time, and ours is at most theirs.
                self.make_room(out)?;
                let merging = self.assigner.is_merging();
                self.state
                    .absorb(&self.agg, &key, (start, end), acc, merging, wm);
            }
            Arrival::Row { key, time, row } => match self.assigner {
                Assigner::Session(session) => {
                    let end = time.saturating_add(session.gap_ms());
                    // Merged first, as Flink does: a row joining a live session is not late.
                    if self.state.cleanup_of(end) <= wm && !self.state.overlaps(&key, time, end) {
                        out.push(Fired::Late(row));
                        return Ok(());
                    }
                    self.make_room(out)?;
                    let mut acc = self.agg.init();
                    self.agg.add(&mut acc, &row);
                    self.state
                        .absorb(&self.agg, &key, (time, end), acc, true, wm);
                }
                Assigner::Tumbling(tumbling) => {
                    let (start, end) = self.tumbling;
                    let window = if (start..end).contains(&time) {
                        (start, end)
                    } else {
                        let size = tumbling.size_ms();
                        let exact = time
                            .div_euclid(size)
                            .checked_mul(size)
                            .and_then(|s| Some((s, s.checked_add(size)?)));
                        match exact {
                            Some(window) => {
                                self.tumbling = window;
                                window
                            }
                            None => {
                                let start = time.div_euclid(size).saturating_mul(size);
                                (start, start.saturating_add(size))
                            }
                        }
                    };
                    if self.state.cleanup_of(window.1) <= wm {
                        out.push(Fired::Late(row)); // cleaned up: the window takes no more rows
                        return Ok(());
                    }
                    self.make_room(out)?;
                    let agg = &self.agg;
                    self.state
                        .update(agg, &key, window, wm, |acc| agg.add(acc, &row));
                }
                assigner => {
                    let mut live = false;
                    let mut result = Ok(());
                    assigner.each_window(time, |start, end| {
                        if result.is_err() || self.state.cleanup_of(end) <= wm {
                            return; // cleaned up: this window takes no more rows
                        }
                        live = true;
                        result = self.make_room(out);
                        if result.is_ok() {
                            let agg = &self.agg;
                            self.state
                                .update(agg, &key, (start, end), wm, |acc| agg.add(acc, &row));
                        }
                    });
                    result?;
                    if !live {
                        out.push(Fired::Late(row));
                    }
                }
            },
        }
        Ok(())
    }

    /// Emits what is due at the current watermark, in end order.
    fn fire(&mut self, out: &mut Output<Vec<Fired<K, R::Value, T>>>) {
        let agg = &self.agg;
        self.state.fire(agg, self.watermark, R::KEEP, |slot| {
            Self::emit(agg, out, slot)
        });
    }
}

impl<In, K, T, A, R, S> Operator for WindowStage<In, K, T, A, R, S>
where
    In: Data,
    K: Hash + Eq + Clone + Data,
    T: Data,
    A: Aggregate<Input = T> + Send + 'static,
    R: Finisher<A>,
    S: FnMut(In) -> Arrival<K, A::Acc, T> + Send + 'static,
{
    type Input = Vec<In>;
    type Output = Vec<Fired<K, R::Value, T>>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.name = info.name.to_string();
        self.instance = info.instance;
        Ok(())
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<In>,
        out: &mut Output<Self::Output>,
    ) -> Result<(), OperatorError> {
        for input in batch {
            let arrival = (self.split)(input);
            self.arrive(arrival, out)?;
        }
        // Windows updated behind the watermark (lateness) are emitted at once.
        if self.state.has_due() {
            self.fire(out);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Self::Output>,
    ) -> Result<(), OperatorError> {
        self.watermark = self.watermark.max(watermark.0);
        self.fire(out);
        out.watermark(Timestamp(self.watermark));
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Self::Output>) -> Result<(), OperatorError> {
        // No row follows: every window is complete.
        self.watermark = i64::MAX;
        self.fire(out);
        Ok(())
    }

    fn held_rows(&self) -> u64 {
        self.state.unfired() as u64
    }

    fn holds_rows(&self) -> bool {
        true
    }

    crate::snapshot::snapshot_hooks!(snapshots);

    fn state_size(&self) -> Option<StateSize> {
        Some(StateSize {
            keys: self.state.len() as u64,
            bytes: self.state.bytes() as u64,
            hottest_key_updates: 0,
        })
    }
}

mod snapshot;
