//! A process stage's state in a checkpoint: per key group, each key's value with its
//! time-to-live deadline, and its event-time and processing-time timers in firing order; as
//! instance state, the watermark it last saw (restored as the highest of the old instances').
//!
//! Deadlines and processing-time timers are absolute times on the stage's [`Clock`](super::Clock)
//! (milliseconds since the epoch for the [`SystemClock`](super::SystemClock)), so those that
//! passed while the job was down fire, or expire, at the first batch or wake-up after the
//! restore. Timers of one key group keep their order; at equal times, timers of different
//! groups may fire in another order than before (registration order is kept per group). Keys
//! are hash-routed and values do not merge: a key met twice is an error
//! ([`SnapshotError::DuplicateKey`]). A restored stage reports the same `state_keys` and
//! `state_bytes` as the stage it was taken from.

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_runtime::{Data, HeapSize, Timestamp};

use super::{KeyedProcessFunction, ProcessStage};
use crate::snapshot::{decode_group, decode_instance, KeyedSnapshot, SnapshotError, SnapshotOut};

/// One key group's state: values `(key, value, expiry)`, timers `(time, key)` per domain.
#[derive(Serialize, Deserialize)]
struct GroupState<K, S> {
    values: Vec<(K, S, Option<i64>)>,
    event: Vec<(i64, K)>,
    processing: Vec<(i64, K)>,
}

impl<K, S> Default for GroupState<K, S> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            event: Vec::new(),
            processing: Vec::new(),
        }
    }
}

impl<T, K, KF, P> KeyedSnapshot for ProcessStage<T, K, KF, P>
where
    T: Data,
    K: Hash + Eq + Clone + Data + Serialize + DeserializeOwned,
    KF: Fn(&T) -> K + Send + 'static,
    P: KeyedProcessFunction<K, T>,
    P::State: Serialize + DeserializeOwned,
{
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        let mut groups = std::collections::BTreeMap::<u32, GroupState<&K, &P::State>>::new();
        for (key, value, expires) in self.store.entries() {
            let group = groups.entry(grouping.group(key)).or_default();
            group.values.push((key, value, expires.map(|t| t.0)));
        }
        for (ts, key) in self.event.timers() {
            let group = groups.entry(grouping.group(key)).or_default();
            group.event.push((ts.0, key));
        }
        for (ts, key) in self.processing.timers() {
            let group = groups.entry(grouping.group(key)).or_default();
            group.processing.push((ts.0, key));
        }
        for (group, state) in &groups {
            out.group(*group, state)?;
        }
        out.instance(&self.watermark.map(|w| w.0))
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let state: GroupState<K, P::State> = decode_group(group, bytes)?;
        for (key, value, expires) in state.values {
            let heap = key.heap_size() + value.heap_size();
            if !self.store.restore(key, value, expires.map(Timestamp), heap) {
                return Err(SnapshotError::DuplicateKey { group });
            }
        }
        for (ts, key) in state.event {
            self.event.register(&key, Timestamp(ts));
        }
        for (ts, key) in state.processing {
            self.processing.register(&key, Timestamp(ts));
        }
        Ok(())
    }

    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let watermark: Option<i64> = decode_instance(bytes)?;
        if let Some(w) = watermark {
            self.watermark = Some(self.watermark.map_or(Timestamp(w), |m| m.max(Timestamp(w))));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};
    use std::time::Duration;

    use proptest::prelude::*;
    use weir_runtime::{Message, Operator, OperatorError, Output};

    use super::super::{ManualClock, ProcessContext, ProcessOptions, TimeDomain};
    use super::*;
    use crate::snapshot::testing::{round_trip, Instances, Step};
    use crate::snapshot::{restore, KeyGrouping};

    /// `(key, event time, processing-time timer offset)`.
    type Row = (u16, i64, i64);

    /// Counts rows per key; an event-time timer at `t + 5` and a processing-time timer at
    /// `now + offset` per row; a timer emits `(domain, time, key, count)` and an event-time one
    /// clears the count.
    #[derive(Clone)]
    struct Counter;

    impl KeyedProcessFunction<u16, Row> for Counter {
        type State = u64;
        type Output = (TimeDomain, i64, u16, u64);

        fn process(
            &mut self,
            (_, t, offset): Row,
            ctx: &mut ProcessContext<'_, u16, u64>,
            _: &mut Output<Vec<Self::Output>>,
        ) -> Result<(), OperatorError> {
            *ctx.get_or_insert_with(|| 0) += 1;
            ctx.register_event_time_timer(Timestamp(t + 5));
            let at = ctx.processing_time().0 + offset;
            ctx.register_processing_time_timer(Timestamp(at));
            Ok(())
        }

        fn on_timer(
            &mut self,
            ts: Timestamp,
            ctx: &mut ProcessContext<'_, u16, u64>,
            out: &mut Output<Vec<Self::Output>>,
        ) -> Result<(), OperatorError> {
            let domain = ctx.time_domain().expect("set in on_timer");
            let count = match domain {
                TimeDomain::EventTime => ctx.clear(),
                TimeDomain::ProcessingTime => ctx.value().copied(),
            };
            out.push((domain, ts.0, *ctx.key(), count.unwrap_or(0)));
            Ok(())
        }
    }

    fn stage(options: &ProcessOptions) -> ProcessStage<Row, u16, fn(&Row) -> u16, Counter> {
        ProcessStage::new(|r: &Row| r.0, Counter, options)
    }

    fn group_of(g: &KeyGrouping, r: &Row) -> u32 {
        g.group(&r.0)
    }

    fn steps() -> impl Strategy<Value = Vec<Step<Row>>> {
        let step = prop_oneof![
            3 => prop::collection::vec((0u16..30, 0i64..60, 1i64..100), 1..10).prop_map(Step::Rows),
            1 => (0i64..70).prop_map(Step::Wm),
        ];
        prop::collection::vec(step, 1..30).prop_map(|mut steps| {
            // Watermarks rise.
            let mut wm = i64::MIN;
            for step in &mut steps {
                if let Step::Wm(w) = step {
                    wm = wm.max(*w);
                    *w = wm;
                }
            }
            steps
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn a_process_stage_restored_at_any_parallelism_fires_as_an_uninterrupted_one(
            steps in steps(),
            cut in 0usize..30,
            p1 in 1usize..4,
            p2 in 1usize..5,
        ) {
            // The clock stands still: processing-time timers and deadlines are carried over,
            // not fired (the end of input drops them).
            let options = ProcessOptions::default()
                .ttl(Duration::from_millis(500))
                .clock(ManualClock::new(Timestamp(1000)));
            let rt = round_trip(
                || stage(&options),
                &steps,
                cut,
                (p1, p2),
                KeyGrouping::default(),
                group_of,
            ).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rt.got, rt.expected);
            prop_assert_eq!(rt.after, rt.before, "the same values, timers and bytes are held");
        }
    }

    #[test]
    fn deadlines_and_processing_timers_keep_their_times_across_a_restore(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let clock = ManualClock::new(Timestamp(1000));
        let options = ProcessOptions::default()
            .ttl(Duration::from_millis(50))
            .clock(clock.clone());
        let grouping = KeyGrouping::default();
        let mut old = Instances::new(vec![stage(&options)]);
        old.play(
            &[Step::Rows(vec![(1, 0, 20), (2, 0, 80)])],
            grouping,
            group_of,
        )?;
        let snapshots = old.snapshot(grouping)?;
        let mut new = stage(&options);
        restore(&mut new, &snapshots, 0..128)?;
        let mut out = Output::new(16);
        let mut cx = Context::from_waker(Waker::noop());
        // At 1030 key 1's timer (1020) fires; at 1060 both values expired (deadline 1050),
        // so key 2's timer (1080) sees none.
        clock.advance(30);
        assert!(new.poll_flush(&mut cx, &mut out).is_pending());
        clock.advance(60);
        assert!(new.poll_flush(&mut cx, &mut out).is_ready());
        out.flush();
        let fired: Vec<_> = out
            .drain()
            .filter_map(|m| match m {
                Message::Data(b) => Some(b),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            fired,
            [
                (TimeDomain::ProcessingTime, 1020, 1, 1),
                (TimeDomain::ProcessingTime, 1080, 2, 0)
            ]
        );
        assert_eq!(
            new.state_size().map(|s| s.keys),
            Some(2),
            "the values expired; the two event-time timers wait"
        );
        Ok(())
    }
}
