//! A harness for state round trips: an operator runs on a prefix of its input at one
//! parallelism, is snapshotted, restored at another parallelism by key group, and runs the rest;
//! its output must equal an uninterrupted run's.

use std::fmt::Debug;
use std::num::NonZeroUsize;
use std::task::{Context, Poll, Waker};

use weir_runtime::{Message, Operator, OperatorError, Output, Timestamp};

use super::{restore, KeyGrouping, KeyedSnapshot, SnapshotError, SnapshotOut};

/// One step of an input script.
#[derive(Clone, Debug)]
pub(crate) enum Step<T> {
    /// A batch of rows.
    Rows(Vec<T>),
    /// A watermark, to every instance.
    Wm(i64),
}

/// Instances of one operator behind a hash-routed edge.
pub(crate) struct Instances<O: Operator> {
    pub(crate) ops: Vec<O>,
    out: Output<O::Output>,
    got: Vec<String>,
}

impl<O, T, U> Instances<O>
where
    O: Operator<Input = Vec<T>, Output = Vec<U>> + KeyedSnapshot,
    T: Clone,
    U: weir_runtime::Data + Debug,
{
    pub(crate) fn new(ops: Vec<O>) -> Self {
        Self {
            ops,
            out: Output::new(64),
            got: Vec::new(),
        }
    }

    fn collect(&mut self) {
        collect(&mut self.out, &mut self.got);
    }

    /// Plays `steps`: rows to the instance that owns their key's group, watermarks to all.
    pub(crate) fn play(
        &mut self,
        steps: &[Step<T>],
        grouping: KeyGrouping,
        group_of: impl Fn(&KeyGrouping, &T) -> u32,
    ) -> Result<(), OperatorError> {
        let p = NonZeroUsize::new(self.ops.len()).expect("at least one instance");
        for step in steps {
            match step {
                Step::Rows(rows) => {
                    let mut parts: Vec<Vec<T>> = vec![Vec::new(); p.get()];
                    for row in rows {
                        let i = grouping.groups().instance(group_of(&grouping, row), p);
                        parts[i].push(row.clone());
                    }
                    for (op, part) in self.ops.iter_mut().zip(parts) {
                        if !part.is_empty() {
                            op.on_batch(0, part, &mut self.out)?;
                        }
                    }
                }
                Step::Wm(w) => {
                    for op in &mut self.ops {
                        op.on_watermark(Timestamp(*w), &mut self.out)?;
                    }
                }
            }
            self.collect();
        }
        Ok(())
    }

    /// Ends every instance and hands on what they held.
    pub(crate) fn end(&mut self) -> Result<(), OperatorError> {
        let mut cx = Context::from_waker(Waker::noop());
        for op in &mut self.ops {
            op.on_end(&mut self.out)?;
            loop {
                let ready = op.poll_flush(&mut cx, &mut self.out);
                collect(&mut self.out, &mut self.got);
                match ready {
                    Poll::Ready(r) => break r?,
                    Poll::Pending => {}
                }
            }
        }
        self.collect();
        Ok(())
    }

    /// Snapshots every instance.
    pub(crate) fn snapshot(
        &self,
        grouping: KeyGrouping,
    ) -> Result<Vec<super::Snapshot>, SnapshotError> {
        self.ops
            .iter()
            .map(|op| {
                let mut out = SnapshotOut::new(grouping);
                op.snapshot(&mut out)?;
                Ok(out.finish())
            })
            .collect()
    }

    /// `(keys, bytes)` of every instance's state, summed.
    pub(crate) fn state(&self) -> (u64, u64) {
        self.ops
            .iter()
            .filter_map(|op| op.state_size())
            .fold((0, 0), |(k, b), s| (k + s.keys, b + s.bytes))
    }

    /// Output rows so far, as sorted debug strings.
    pub(crate) fn sorted(&self) -> Vec<String> {
        let mut got = self.got.clone();
        got.sort();
        got
    }
}

/// Takes the rows `out` holds, as debug strings.
fn collect<U: weir_runtime::Data + Debug>(out: &mut Output<Vec<U>>, got: &mut Vec<String>) {
    out.flush();
    for msg in out.drain() {
        if let Message::Data(batch) = msg {
            got.extend(batch.iter().map(|row| format!("{row:?}")));
        }
    }
}

/// What a round trip saw.
pub(crate) struct RoundTrip {
    /// The uninterrupted run's output, sorted.
    pub(crate) expected: Vec<String>,
    /// The interrupted run's output (before and after the restore), sorted.
    pub(crate) got: Vec<String>,
    /// State `(keys, bytes)` summed over the instances before the snapshot.
    pub(crate) before: (u64, u64),
    /// The same after the restore.
    pub(crate) after: (u64, u64),
}

/// Runs `steps` uninterrupted at parallelism `p1`, and again cut after `cut` steps: snapshot at
/// `p1`, restore at `p2` by key group, play the rest.
pub(crate) fn round_trip<O, T, U>(
    make: impl Fn() -> O,
    steps: &[Step<T>],
    cut: usize,
    (p1, p2): (usize, usize),
    grouping: KeyGrouping,
    group_of: impl Fn(&KeyGrouping, &T) -> u32 + Copy,
) -> Result<RoundTrip, Box<dyn std::error::Error>>
where
    O: Operator<Input = Vec<T>, Output = Vec<U>> + KeyedSnapshot,
    T: Clone,
    U: weir_runtime::Data + Debug,
{
    let cut = cut.min(steps.len());
    let mut whole = Instances::new((0..p1).map(|_| make()).collect());
    whole.play(steps, grouping, group_of)?;
    whole.end()?;

    let mut first = Instances::new((0..p1).map(|_| make()).collect());
    first.play(&steps[..cut], grouping, group_of)?;
    let before = first.state();
    let snapshots = first.snapshot(grouping)?;
    let p = NonZeroUsize::new(p2).expect("at least one instance");
    let mut second = Instances::new((0..p2).map(|_| make()).collect());
    for (i, op) in second.ops.iter_mut().enumerate() {
        restore(op, &snapshots, grouping.groups().range(i, p))?;
    }
    let after = second.state();
    second.got = first.got.clone();
    second.play(&steps[cut..], grouping, group_of)?;
    second.end()?;
    Ok(RoundTrip {
        expected: whole.sorted(),
        got: second.sorted(),
        before,
        after,
    })
}
