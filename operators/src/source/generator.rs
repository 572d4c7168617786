//! A source of `count` rows computed from their index.

use std::task::{Context, Poll};

use weir_runtime::{Data, InstanceInfo, OperatorError, Output, Source, SourceStatus};

use super::Rewind;

/// Emits `f(i)` for `i` in `0..count`, one batch per poll.
///
/// Run in parallel (built per instance with `Pipeline::source_with`), each instance takes a
/// contiguous share of the index range, so the union of all instances is exactly `0..count`.
///
/// It [rewinds](crate::source::Rewind): its position is the next index it will emit, and
/// [`with_start`](Generator::with_start) builds an instance that starts there (within its
/// share), so every row being a function of its index, the rows after a restore are the rows
/// an uninterrupted run would have emitted.
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
    /// This instance's share: `start..end` (set at `open`).
    start: u64,
    end: u64,
    /// `next` was set by [`with_start`](Generator::with_start): keep it at `open`.
    resumed: bool,
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
            start: 0,
            end: count,
            resumed: false,
            f,
        }
    }

    /// This generator, starting at index `next` (a [`position`](Rewind::position) saved
    /// from the same instance of a run with the same parallelism) instead of the start of its
    /// share. `open` fails if `next` lies outside the instance's share.
    pub fn with_start(mut self, next: u64) -> Self {
        self.next = next;
        self.resumed = true;
        self
    }
}

impl<F> Rewind for Generator<F> {
    type Position = u64;

    /// The next index this instance will emit.
    fn position(&self) -> u64 {
        self.next
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
        let start = (count * i / p) as u64;
        self.start = start;
        self.end = (count * (i + 1) / p) as u64;
        if !self.resumed {
            self.next = start;
        } else if !(start..=self.end).contains(&self.next) {
            return Err(OperatorError::user(format!(
                "generator instance {i} of {p} cannot start at index {}: its share is {start}..{}; \
                 restore with the parallelism the position was saved with",
                self.next, self.end
            )));
        }
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

    /// A generator reports its [position](Rewind::position) to checkpoints.
    fn can_snapshot(&self) -> bool {
        true
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        weir_runtime::checkpoint::encode(&self.position())
            .map_err(|e| OperatorError::internal(e.to_string()))
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let next: u64 = weir_runtime::checkpoint::decode(position)
            .map_err(|e| OperatorError::user(format!("a generator position: {e}")))?;
        if !(self.start..=self.end).contains(&next) {
            return Err(OperatorError::user(format!(
                "generator cannot restore index {next}: its share is {}..{}; restore with the \
                 parallelism the checkpoint was taken at",
                self.start, self.end
            )));
        }
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::Pipeline;

    use super::*;
    use crate::transform::StreamExt;

    #[test]
    fn instances_started_at_their_positions_emit_the_rest_of_their_shares() {
        // Shares of 0..90 over 3 instances: 0..30, 30..60, 60..90; resumed part-way through.
        let starts = [7u64, 30, 90];
        let mut p = Pipeline::new("resume");
        let out = p
            .source_with("gen", move |info| {
                Generator::new(90, |i| i).with_start(starts[info.instance])
            })
            .parallelism(3)
            .collect("out");
        p.run().expect("runs");
        let mut got = out.take().expect("collected");
        got.sort_unstable();
        let want: Vec<u64> = (7..30).chain(30..60).collect();
        assert_eq!(got, want);
        let g = Generator::new(90, |i| i).with_start(12);
        assert_eq!(g.position(), 12);
    }

    #[test]
    fn a_start_outside_the_share_fails_the_run() {
        let mut p = Pipeline::new("resume");
        p.source_with("gen", |_| Generator::new(90, |i| i).with_start(45))
            .parallelism(3)
            .count("n");
        let err = p.run().expect_err("45 is outside instance 0's share");
        assert!(err.to_string().contains("parallelism"), "{err}");
    }

    #[test]
    fn a_checkpointed_generator_is_restored_at_its_position() {
        // Snapshot after a batch, restore a fresh instance there: the rest of the share follows.
        let info = |i| weir_runtime::InstanceInfo {
            name: "gen".into(),
            instance: i,
            parallelism: 2,
            batch_rows: 4,
            max_batch_bytes: 1 << 20,
            overflow: weir_runtime::OverflowCounter::detached(),
            downstream: Default::default(),
            barriers: Default::default(),
            checkpointing: false,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut g = Generator::new(20, |i| i);
        g.open(&info(1)).unwrap();
        let mut out = Output::new(4);
        let _ = g.poll_produce(&mut cx, &mut out);
        let position = g.snapshot().unwrap();
        let mut again = Generator::new(20, |i| i);
        again.open(&info(1)).unwrap();
        again.restore(&position).unwrap();
        let mut out = Output::new(100);
        let _ = again.poll_produce(&mut cx, &mut out);
        let rows: Vec<u64> = out
            .drain()
            .filter_map(|m| match m {
                weir_runtime::Message::Data(b) => Some(b),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(rows, (14..20).collect::<Vec<_>>());
        // A position outside the instance's share is refused.
        let mut other = Generator::new(20, |i| i);
        other.open(&info(0)).unwrap();
        assert!(other.restore(&position).is_err());
    }
}
