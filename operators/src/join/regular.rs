//! The regular inner join: every pair with equal keys, with no notion of time.
//!
//! Each side's rows are kept per key; an arriving row is joined with every row the other side
//! holds for its key (pairs are emitted as soon as their second row arrives, once each), then
//! kept. Without a time-to-live the state holds every row ever seen: it grows with the keys
//! and the rows, which is what an unbounded regular join costs (Flink's table joins alike).
//!
//! **Time-to-live** ([`JoinOptions::ttl`]) runs in processing time, as Flink's
//! `table.exec.state.ttl`: a key's rows of one side expire `ttl` after the last row of that
//! side for that key arrived, and are freed when the clock passes that time — the operator
//! arranges a wake-up through its [`Clock`], so memory returns even while no row arrives. A row
//! arriving after its partners expired is not joined with them. At the end of input the rows
//! whose time-to-live has passed are freed and those still held are reported in `state_bytes`;
//! their time-to-live is not waited for.
//!
//! Watermarks pass through unchanged.

use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_runtime::{Data, InputPort, Operator, OperatorError, Output, StateSize, Timestamp};

use super::{row_bytes, JoinKeys, JoinSide};
use crate::keyed::process::{Clock, SystemClock, ValueStore, Wait};
use crate::snapshot::{
    decode_group, KeyGrouping, KeyedSnapshot, SnapshotError, SnapshotHooks, SnapshotOut,
};

/// How a regular join keeps its state.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::join::JoinOptions;
///
/// let keep_an_hour = JoinOptions::default().ttl(Duration::from_secs(3_600));
/// # let _ = keep_an_hour;
/// ```
#[derive(Clone, Debug)]
pub struct JoinOptions {
    ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            ttl: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl JoinOptions {
    /// A key's rows of one side expire `ttl` of processing time after the last one arrived
    /// (see the [module docs](self)). Default: never.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The clock processing time is read from (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// The regular inner-join operator (see the [module docs](self)); built by
/// [`KeyedJoin::inner`](super::KeyedJoin::inner).
pub struct InnerJoin<A, B, K, KA, KB> {
    keys: JoinKeys<K, KA, KB>,
    left: ValueStore<K, Vec<A>>,
    right: ValueStore<K, Vec<B>>,
    clock: Arc<dyn Clock>,
    wait: Option<(Timestamp, Wait)>,
    ended: bool,
    snapshots: Option<SnapshotHooks<Self>>,
}

impl<A, B, K, KA, KB> std::fmt::Debug for InnerJoin<A, B, K, KA, KB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InnerJoin")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<A, B, K, KA, KB> InnerJoin<A, B, K, KA, KB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
{
    /// A regular join of rows keyed by `keys`.
    pub fn new(keys: JoinKeys<K, KA, KB>, options: &JoinOptions) -> Self {
        let ttl = options
            .ttl
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            keys,
            left: ValueStore::new(ttl),
            right: ValueStore::new(ttl),
            clock: options.clock.clone(),
            wait: None,
            ended: false,
            snapshots: None,
        }
    }

    /// Makes the join write its state into checkpoints and read it back, keys filed by
    /// `grouping` (that of the keyed edge in front of it).
    pub fn with_snapshots(mut self, grouping: KeyGrouping) -> Self
    where
        Self: KeyedSnapshot,
    {
        self.snapshots = Some(SnapshotHooks::new(grouping));
        self
    }

    fn expire(&mut self, now: Timestamp) {
        self.left.expire(now);
        self.right.expire(now);
    }

    fn next_expiry(&self) -> Option<Timestamp> {
        match (self.left.next_expiry(), self.right.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<A, B, K, KA, KB> Operator for InnerJoin<A, B, K, KA, KB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
{
    type Input = Vec<JoinSide<A, B>>;
    type Output = Vec<(A, B)>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<JoinSide<A, B>>,
        out: &mut Output<Vec<(A, B)>>,
    ) -> Result<(), OperatorError> {
        let now = self.clock.now();
        self.expire(now);
        for row in batch {
            match row {
                JoinSide::Left(a) => {
                    let key = (self.keys.left)(&a);
                    if let Some(bs) = self.right.get(&key, now) {
                        for b in bs {
                            out.push((a.clone(), b.clone()));
                        }
                    }
                    let bytes = row_bytes(&a);
                    self.left.get_or_insert_with(&key, now, Vec::new).push(a);
                    self.left.grow(&key, bytes, now);
                }
                JoinSide::Right(b) => {
                    let key = (self.keys.right)(&b);
                    if let Some(as_) = self.left.get(&key, now) {
                        for a in as_ {
                            out.push((a.clone(), b.clone()));
                        }
                    }
                    let bytes = row_bytes(&b);
                    self.right.get_or_insert_with(&key, now, Vec::new).push(b);
                    self.right.grow(&key, bytes, now);
                }
            }
        }
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        _: &mut Output<Vec<(A, B)>>,
    ) -> Poll<Result<(), OperatorError>> {
        loop {
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let Some(deadline) = self.next_expiry() else {
                self.wait = None;
                return Poll::Ready(Ok(()));
            };
            let now = self.clock.now();
            if deadline <= now {
                self.expire(now);
                continue;
            }
            if self.wait.as_ref().is_none_or(|(at, _)| *at != deadline) {
                self.wait = Some((deadline, self.clock.wait_until(deadline)));
            }
            let Some((_, wait)) = self.wait.as_mut() else {
                unreachable!("set above")
            };
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
    }

    fn on_end(&mut self, _: &mut Output<Vec<(A, B)>>) -> Result<(), OperatorError> {
        self.expire(self.clock.now());
        self.ended = true;
        self.wait = None;
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        Some(StateSize {
            keys: (self.left.len() + self.right.len()) as u64,
            bytes: (self.left.bytes() + self.right.bytes()) as u64,
            hottest_key_updates: 0,
        })
    }

    fn holds_rows(&self) -> bool {
        true
    }

    crate::snapshot::snapshot_hooks!(snapshots);
}

/// A regular join's state in a checkpoint: per key group, each key's rows of both sides in
/// arrival order with their time-to-live deadline (an absolute time on the join's clock, so a
/// deadline that passed while the job was down frees its rows at the first batch or wake-up
/// after the restore). No instance state. Keys are hash-routed: a key met twice is an error
/// ([`SnapshotError::DuplicateKey`]). A restored join reports the same state.
impl<A, B, K, KA, KB> KeyedSnapshot for InnerJoin<A, B, K, KA, KB>
where
    A: Data + Clone + Serialize + DeserializeOwned,
    B: Data + Clone + Serialize + DeserializeOwned,
    K: Hash + Eq + Clone + Data + Serialize + DeserializeOwned,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
{
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        type Side<'a, K, R> = Vec<(&'a K, &'a Vec<R>, Option<i64>)>;
        let mut groups = std::collections::BTreeMap::<u32, (Side<'_, K, A>, Side<'_, K, B>)>::new();
        for (key, rows, expires) in self.left.entries() {
            let group = groups.entry(grouping.group(key)).or_default();
            group.0.push((key, rows, expires.map(|t| t.0)));
        }
        for (key, rows, expires) in self.right.entries() {
            let group = groups.entry(grouping.group(key)).or_default();
            group.1.push((key, rows, expires.map(|t| t.0)));
        }
        for (group, state) in &groups {
            out.group(*group, state)?;
        }
        Ok(())
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        type Side<K, R> = Vec<(K, Vec<R>, Option<i64>)>;
        let (left, right): (Side<K, A>, Side<K, B>) = decode_group(group, bytes)?;
        for (key, rows, expires) in left {
            let heap = key.heap_size() + rows.iter().map(row_bytes).sum::<usize>();
            if !self.left.restore(key, rows, expires.map(Timestamp), heap) {
                return Err(SnapshotError::DuplicateKey { group });
            }
        }
        for (key, rows, expires) in right {
            let heap = key.heap_size() + rows.iter().map(row_bytes).sum::<usize>();
            if !self.right.restore(key, rows, expires.map(Timestamp), heap) {
                return Err(SnapshotError::DuplicateKey { group });
            }
        }
        Ok(())
    }

    fn restore_instance(&mut self, _: &[u8]) -> Result<(), SnapshotError> {
        Ok(())
    }
}
