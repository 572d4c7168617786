//! A window stage's state in a checkpoint: per key group, every `(key, window)` accumulator
//! it holds — open, fired and kept for lateness, or due — with its firings; as instance state,
//! the watermark it last saw (restored as the highest of the old instances'). Late-row counts
//! are metrics, not state.
//!
//! A restored stage holds the same windows and reports the same `state_keys`; its
//! `state_bytes` equal the old figure when accumulators own no heap (an accumulator's heap is
//! measured when its slot is made, so a growing one measures larger after a restore).

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_runtime::Data;

use super::{Arrival, Finisher, WindowStage};
use crate::keyed::aggregate::Aggregate;
use crate::snapshot::{decode_group, decode_instance, KeyedSnapshot, SnapshotError, SnapshotOut};
use crate::window::state::snapshot::SlotEntry;

impl<In, K, T, A, R, S> KeyedSnapshot for WindowStage<In, K, T, A, R, S>
where
    K: Hash + Eq + Clone + Data + Serialize + DeserializeOwned,
    T: Data,
    A: Aggregate<Input = T>,
    A::Acc: Serialize + DeserializeOwned,
    R: Finisher<A>,
    S: FnMut(In) -> Arrival<K, A::Acc, T>,
{
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        out.keyed(
            self.state
                .slots()
                .map(|slot| (grouping.group(slot.0), slot)),
        )?;
        out.instance(&self.watermark)
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let slots: Vec<SlotEntry<K, A::Acc>> = decode_group(group, bytes)?;
        let needed = self.state.len() + slots.len();
        if needed > self.max_windows {
            return Err(SnapshotError::Bound {
                needed,
                max: self.max_windows,
            });
        }
        let merging = self.assigner.is_merging();
        for slot in slots {
            self.state.restore_slot(&self.agg, slot, merging);
        }
        Ok(())
    }

    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let watermark: i64 = decode_instance(bytes)?;
        self.watermark = self.watermark.max(watermark);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use weir_runtime::Operator;

    use super::super::{Fired, Partials, Results};
    use super::*;
    use crate::keyed::aggregate::{Project, Sum};
    use crate::snapshot::testing::{round_trip, Step};
    use crate::snapshot::KeyGrouping;
    use crate::window::{Assigner, Session, Sliding, Tumbling};

    type Row = (u8, i64);

    fn assigner(kind: u8) -> Assigner {
        let ms = Duration::from_millis;
        match kind {
            0 => Tumbling::of(ms(10)).into(),
            1 => Sliding::of(ms(20), ms(5)).into(),
            _ => Session::with_gap(ms(7)).into(),
        }
    }

    /// A final stage: window sums of `t` per key.
    fn results(
        kind: u8,
        lateness: i64,
    ) -> impl Operator<Input = Vec<Row>, Output = Vec<Fired<u8, i128, Row>>> + KeyedSnapshot {
        let agg = Project::new(|r: &Row| r.1, Sum::<i64>::new());
        WindowStage::<_, u8, Row, _, Results, _>::new(
            agg,
            assigner(kind),
            lateness,
            1 << 12,
            |r: Row| Arrival::Row {
                key: r.0,
                time: r.1,
                row: r,
            },
        )
    }

    /// Rows about in time order (some behind the watermark), watermarks rising.
    fn steps() -> impl Strategy<Value = Vec<Step<Row>>> {
        let step = prop_oneof![
            3 => prop::collection::vec((0u8..8, 0i64..12, -15i64..4), 1..12),
            1 => Just(Vec::new()),
        ];
        prop::collection::vec((step, 0i64..8), 1..40).prop_map(|parts| {
            let (mut now, mut wm, mut steps) = (0i64, i64::MIN, Vec::new());
            for (rows, advance) in parts {
                if rows.is_empty() {
                    wm = wm.max(now - 5);
                    steps.push(Step::Wm(wm));
                    continue;
                }
                now += advance;
                steps.push(Step::Rows(
                    rows.into_iter()
                        .map(|(k, dt, jitter)| (k, now + dt + jitter))
                        .collect(),
                ));
            }
            steps
        })
    }

    fn group_of(g: &KeyGrouping, r: &Row) -> u32 {
        g.group(&r.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn a_window_stage_restored_at_any_parallelism_fires_as_an_uninterrupted_one(
            steps in steps(),
            cut in 0usize..40,
            kind in 0u8..3,
            lateness in prop_oneof![Just(0i64), 1i64..20],
            p1 in 1usize..4,
            p2 in 1usize..5,
        ) {
            let rt = round_trip(
                || results(kind, lateness),
                &steps,
                cut,
                (p1, p2),
                KeyGrouping::default(),
                group_of,
            ).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rt.got, rt.expected);
            prop_assert_eq!(rt.after, rt.before, "the same windows and bytes are held");
        }
    }

    #[test]
    fn partial_windows_of_split_keys_merge_at_their_groups_owner(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // Two partial instances each hold a piece of key 1's window [0, 10) (and of a
        // session); restored at one instance, the pieces are one window again.
        for kind in [0, 2] {
            let agg = || Project::new(|r: &Row| r.1, Sum::<i64>::new());
            let partial = || {
                WindowStage::<_, u8, Row, _, Partials, _>::new(
                    agg(),
                    assigner(kind),
                    0,
                    1 << 10,
                    |r: Row| Arrival::Row {
                        key: r.0,
                        time: r.1,
                        row: r,
                    },
                )
            };
            let mut out = weir_runtime::Output::new(64);
            let mut old = [partial(), partial()];
            old[0].on_batch(0, vec![(1, 2), (1, 5)], &mut out)?;
            old[1].on_batch(0, vec![(1, 4)], &mut out)?;
            let grouping = KeyGrouping::default();
            let snapshots = old
                .iter()
                .map(|op| {
                    let mut snap = SnapshotOut::new(grouping);
                    op.snapshot(&mut snap)?;
                    Ok(snap.finish())
                })
                .collect::<Result<Vec<_>, SnapshotError>>()?;
            let mut new = partial();
            crate::snapshot::restore(&mut new, &snapshots, 0..128)?;
            assert_eq!(new.state.len(), 1, "one window of key 1");
            new.on_end(&mut out)?;
            out.flush();
            let fired: Vec<_> = out
                .drain()
                .filter_map(|m| match m {
                    weir_runtime::Message::Data(b) => Some(b),
                    _ => None,
                })
                .flatten()
                .collect();
            let (start, end) = if kind == 2 { (2, 12) } else { (0, 10) };
            assert_eq!(
                fired,
                [Fired::Window {
                    key: 1,
                    start,
                    end,
                    firing: 0,
                    value: 11
                }]
            );
        }
        Ok(())
    }
}

/// Figures for `BENCHMARKS.md`, by hand in a release build (see "Checkpoints: operator state"
/// there): the snapshot of the windowed keyed count at 10 000 keys, its size and the time to
/// write and restore it. Only the round trip is asserted, never a time.
#[cfg(test)]
mod figures {
    use std::time::{Duration, Instant};

    use weir_runtime::{Operator, Output, Timestamp};

    use super::super::Results;
    use super::*;
    use crate::keyed::aggregate::Count;
    use crate::snapshot::{restore, KeyGrouping, Snapshot};
    use crate::window::Tumbling;

    type Row = (u64, i64);

    /// How the stage takes a row apart.
    type Split = fn(Row) -> Arrival<u64, u64, Row>;

    fn count() -> WindowStage<Row, u64, Row, Count<Row>, Results, Split> {
        WindowStage::new(
            Count::new(),
            Tumbling::of(Duration::from_secs(1)).into(),
            0,
            1 << 20,
            |r: Row| Arrival::Row {
                key: r.0,
                time: r.1,
                row: r,
            },
        )
    }

    fn median(mut xs: Vec<Duration>) -> Duration {
        xs.sort();
        xs[xs.len() / 2]
    }

    #[test]
    #[ignore = "figures for BENCHMARKS.md; run by hand with --release"]
    fn snapshot_figures_of_the_windowed_count_at_10k_keys() -> Result<(), Box<dyn std::error::Error>>
    {
        let keys = 10_000u64;
        let grouping = KeyGrouping::default();
        // One open window per key (mid-window), then two (a checkpoint just after a window
        // boundary, before the watermark closes the old one).
        for (label, times) in [
            ("1 window/key", &[500i64][..]),
            ("2 windows/key", &[995, 1005]),
        ] {
            let mut op = count();
            let mut out = Output::new(1024);
            op.on_watermark(Timestamp(0), &mut out)?;
            for round in 0..100 {
                let batch: Vec<Row> = (0..keys)
                    .flat_map(|k| times.iter().map(move |&t| (k, t + round % 3)))
                    .collect();
                op.on_batch(0, batch, &mut out)?;
            }
            out.drain().for_each(drop);
            let state = op.state_size().ok_or("a window stage reports state")?;
            let (mut write, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
            let mut bytes = 0;
            let mut blobs = 0;
            for _ in 0..9 {
                let t = Instant::now();
                let mut snap = SnapshotOut::new(grouping);
                op.snapshot(&mut snap)?;
                let snap: Snapshot = snap.finish();
                write.push(t.elapsed());
                bytes = snap.bytes();
                blobs = snap.groups().count();
                let snaps = [snap];
                let t = Instant::now();
                let mut all = count();
                restore(&mut all, &snaps, 0..128)?;
                one.push(t.elapsed());
                assert_eq!(all.state_size().map(|s| s.keys), Some(state.keys));
                let t = Instant::now();
                let (mut a, mut b) = (count(), count());
                restore(&mut a, &snaps, 0..64)?;
                restore(&mut b, &snaps, 64..128)?;
                two.push(t.elapsed());
                let held = a.state.len() + b.state.len();
                assert_eq!(held as u64, state.keys);
            }
            println!(
                "{label}: {} windows, state_bytes {}, snapshot {} B in {blobs} group blobs \
                 ({:.1} B/window); write {:?}, restore at 1 instance {:?}, at 2 {:?} (medians of 9)",
                state.keys,
                state.bytes,
                bytes,
                bytes as f64 / state.keys as f64,
                median(write),
                median(one),
                median(two),
            );
        }
        Ok(())
    }
}
