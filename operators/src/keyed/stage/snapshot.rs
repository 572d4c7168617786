//! A keyed stage's state in a checkpoint: per key group, each key's accumulator with its
//! changed flag and update count; as instance state, the rows since the last periodic drain or
//! update.
//!
//! A key met again while restoring (a partial of a split key, from an old instance that did not
//! own its group) merges into the accumulator held. The table's spare capacity is not state: a
//! restored stage reports the same keys, and bytes by the capacity its table has now.

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_runtime::HeapSize;

use super::KeyedStage;
use crate::keyed::aggregate::Aggregate;
use crate::snapshot::{decode_group, decode_instance, KeyedSnapshot, SnapshotError, SnapshotOut};

impl<Row, K, V, A, S, O> KeyedSnapshot for KeyedStage<Row, K, V, A, S, O>
where
    K: Hash + Eq + Clone + HeapSize + Serialize + DeserializeOwned + 'static,
    A: Aggregate,
    A::Acc: Serialize + DeserializeOwned,
{
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        if self.closing.is_some() {
            return Err(SnapshotError::Ended);
        }
        let grouping = out.grouping();
        out.keyed(
            self.state
                .entries()
                .map(|entry| (grouping.group(entry.0), entry)),
        )?;
        out.instance(&self.rows_since)
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let entries: Vec<(K, A::Acc, bool, u32)> = decode_group(group, bytes)?;
        for (key, acc, dirty, hits) in entries {
            if !self.state.has_room_for(&key) {
                return Err(SnapshotError::Bound {
                    needed: self.state.len() + 1,
                    max: self.state.max_keys(),
                });
            }
            self.state.restore(&self.agg, key, acc, dirty, hits);
        }
        Ok(())
    }

    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let rows_since: u64 = decode_instance(bytes)?;
        self.rows_since = self.rows_since.max(rows_since);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use proptest::prelude::*;
    use weir_runtime::Operator;

    use super::super::Role;
    use super::*;
    use crate::keyed::aggregate::Sum;
    use crate::snapshot::testing::{round_trip, Instances, Step};
    use crate::snapshot::{restore, KeyGrouping};

    type Row = (u16, i64);

    fn stage(
        role: Role,
    ) -> impl Operator<Input = Vec<Row>, Output = Vec<(u16, i128)>> + KeyedSnapshot {
        KeyedStage::new(
            Sum::<i64>::new(),
            |r: Row| r,
            |agg: &Sum<i64>, acc: &mut i128, v: i64| agg.add(acc, &v),
            |_, k, acc| (k, acc),
            role,
            1 << 12,
        )
    }

    fn steps() -> impl Strategy<Value = Vec<Step<Row>>> {
        prop::collection::vec(
            prop::collection::vec((0u16..60, -100i64..100), 1..20).prop_map(Step::Rows),
            1..12,
        )
    }

    fn group_of(g: &KeyGrouping, r: &Row) -> u32 {
        g.group(&r.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn a_final_stage_restored_at_any_parallelism_ends_as_an_uninterrupted_one(
            steps in steps(),
            cut in 0usize..12,
            p1 in 1usize..4,
            p2 in 1usize..5,
        ) {
            let final_role = Role::Final { updates: None };
            let rt = round_trip(
                || stage(final_role),
                &steps,
                cut,
                (p1, p2),
                KeyGrouping::default(),
                group_of,
            ).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rt.got, rt.expected);
            prop_assert_eq!(rt.after.0, rt.before.0, "the same keys are held");
        }

        #[test]
        fn partials_of_split_keys_merge_into_their_groups_new_owner(
            rows in prop::collection::vec((0u16..40, -100i64..100, 0usize..3), 1..200),
            p2 in 1usize..4,
        ) {
            // Rows spread over three partial instances whatever their key (as a split does).
            let partial = Role::Partial { per_batch: false, flush_every: None };
            let grouping = KeyGrouping::default();
            let mut old: Vec<_> = (0..3).map(|_| stage(partial)).collect();
            let mut out = weir_runtime::Output::new(64);
            for &(k, v, i) in &rows {
                old[i].on_batch(0, vec![(k, v)], &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let old = Instances::new(old);
            let snapshots = old.snapshot(grouping).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let p = NonZeroUsize::new(p2).expect("non-zero");
            let mut new: Vec<_> = (0..p2).map(|_| stage(partial)).collect();
            for (i, op) in new.iter_mut().enumerate() {
                restore(op, &snapshots, grouping.groups().range(i, p))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let mut new = Instances::new(new);
            new.end().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut sums = std::collections::BTreeMap::<u16, i128>::new();
            for &(k, v, _) in &rows {
                *sums.entry(k).or_default() += i128::from(v);
            }
            let mut expected: Vec<String> =
                sums.into_iter().map(|kv| format!("{kv:?}")).collect();
            expected.sort();
            // One partial per key: every old instance's partial merged at the group's owner.
            prop_assert_eq!(new.sorted(), expected);
        }
    }

    #[test]
    fn a_final_stage_refuses_more_keys_than_its_bound() -> Result<(), Box<dyn std::error::Error>> {
        let grouping = KeyGrouping::default();
        let mut big = Instances::new(vec![stage(Role::Final { updates: None })]);
        let rows: Vec<Row> = (0..10).map(|k| (k, 1)).collect();
        big.play(&[Step::Rows(rows)], grouping, group_of)?;
        let snapshots = big.snapshot(grouping)?;
        let mut small = KeyedStage::new(
            Sum::<i64>::new(),
            |r: Row| r,
            |agg: &Sum<i64>, acc: &mut i128, v: i64| agg.add(acc, &v),
            |_, k, acc| (k, acc),
            Role::Final { updates: None },
            4,
        );
        let err = restore(&mut small, &snapshots, 0..128).err();
        assert!(
            matches!(err, Some(SnapshotError::Bound { max: 4, .. })),
            "{err:?}"
        );
        Ok(())
    }
}
