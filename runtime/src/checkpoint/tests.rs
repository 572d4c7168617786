//! Tests of the store: commit and restore, fallback past partial and damaged checkpoints,
//! retention, ids across reopening, rescaling through real blobs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

const FINGERPRINT: u64 = 0x0123_4567_89ab_cdef;

fn meta() -> CheckpointMeta {
    CheckpointMeta::new(FINGERPRINT, 16)
        .operator("numbers", 1)
        .operator("count", 2)
}

/// A checkpoint of the two-operator job whose content depends on `id`.
fn write_checkpoint(store: &CheckpointStore, id: u64) -> CompletedCheckpoint {
    let pending = store.begin(id).expect("begin");
    pending
        .put(&BlobName::source_position("numbers", 0), &id.to_le_bytes())
        .expect("put the position");
    for i in 0..2 {
        let counts: BTreeMap<String, u64> =
            (0..20).map(|k| (format!("k{k}"), k * id + i)).collect();
        pending
            .put_state(&BlobName::state("count", i as u32), &counts)
            .expect("put the state");
    }
    pending.commit(meta()).expect("commit")
}

fn checkpoint_dirs(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chk-"))
        .collect()
}

fn names(ids: &[u64]) -> BTreeSet<String> {
    ids.iter().map(|id| format!("chk-{id}")).collect()
}

/// The file of `name` in checkpoint `id`.
fn blob_file(store: &CheckpointStore, id: u64, name: &BlobName) -> PathBuf {
    let checkpoint_dir = store.dir().join(format!("chk-{id}"));
    let bytes = fs::read(checkpoint_dir.join("_manifest")).expect("manifest");
    let manifest = manifest::Manifest::from_bytes(&bytes).expect("valid manifest");
    let entry = manifest
        .blobs
        .iter()
        .find(|b| &b.name == name)
        .expect("the blob is listed");
    checkpoint_dir.join(&entry.file)
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at] ^= 0x40;
    fs::write(path, bytes).expect("write");
}

#[test]
fn a_committed_checkpoint_is_the_latest_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 2).expect("open");
    assert_eq!(store.next_id(), 1);
    let latest = store.latest().expect("latest");
    assert!(latest.checkpoint.is_none() && latest.skipped.is_empty());

    let pending = store.begin(1).expect("begin");
    assert_eq!(pending.path(), dir.path().join("chk-1"));
    let state: BTreeMap<u64, (String, Vec<i64>)> = (0..100)
        .map(|k| (k, (format!("key {k}"), vec![-1, k as i64])))
        .collect();
    pending
        .put_state(&BlobName::state("count", 1), &state)
        .expect("put state");
    pending
        .put(&BlobName::source_position("numbers", 0), b"offset 4096")
        .expect("put position");
    pending
        .put(&BlobName::in_flight("count", 0, 1), b"")
        .expect("put empty in-flight data");
    let committed = pending.commit(meta()).expect("commit");
    assert_eq!(committed.id(), 1);
    drop(committed);

    let latest = store.latest().expect("latest");
    assert!(latest.skipped.is_empty());
    let checkpoint = latest.checkpoint.expect("complete");
    assert_eq!(checkpoint.id(), 1);
    assert_eq!(checkpoint.fingerprint(), FINGERPRINT);
    assert_eq!(checkpoint.max_parallelism(), 16);
    assert_eq!(checkpoint.parallelism("count"), Some(2));
    assert_eq!(
        checkpoint.operators().collect::<Vec<_>>(),
        [("count", 2), ("numbers", 1)]
    );
    assert_eq!(checkpoint.blobs().count(), 3);
    let back: BTreeMap<u64, (String, Vec<i64>)> = checkpoint
        .read_state(&BlobName::state("count", 1))
        .expect("state");
    assert_eq!(back, state);
    assert_eq!(
        checkpoint
            .read(&BlobName::source_position("numbers", 0))
            .expect("position"),
        b"offset 4096"
    );
    assert_eq!(
        checkpoint
            .read(&BlobName::in_flight("count", 0, 1))
            .expect("in-flight"),
        b""
    );
    assert!(matches!(
        checkpoint.read(&BlobName::state("count", 0)),
        Err(CheckpointError::NoSuchBlob { checkpoint: 1, .. })
    ));
    // No temporary manifest is left behind.
    assert!(!checkpoint.path().join("_manifest.tmp").exists());
}

#[test]
fn a_streamed_blob_equals_the_same_state_put_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 1).expect("open");
    let state: Vec<(u64, String)> = (0..50_000).map(|k| (k * 7919, format!("v{k}"))).collect();
    let pending = store.begin(1).expect("begin");
    let mut writer = pending
        .writer(&BlobName::state("count", 0))
        .expect("writer");
    encode_into(&state, &mut writer).expect("encode");
    let len = writer.finish().expect("finish");
    pending
        .put(
            &BlobName::state("count", 1),
            &encode(&state).expect("encode"),
        )
        .expect("put");
    let checkpoint = pending.commit(meta()).expect("commit");
    let streamed = checkpoint.read(&BlobName::state("count", 0)).expect("read");
    assert_eq!(streamed.len() as u64, len);
    assert_eq!(
        streamed,
        checkpoint.read(&BlobName::state("count", 1)).expect("read")
    );
}

#[test]
fn instances_write_their_blobs_from_their_own_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 1).expect("open");
    let pending = store.begin(1).expect("begin");
    std::thread::scope(|s| {
        for i in 0..4u32 {
            let pending = &pending;
            s.spawn(move || {
                pending
                    .put_state(&BlobName::state("count", i), &vec![i; 1000])
                    .expect("put");
            });
        }
    });
    let checkpoint = pending
        .commit(CheckpointMeta::new(1, 8).operator("count", 4))
        .expect("commit");
    for i in 0..4u32 {
        let back: Vec<u32> = checkpoint
            .read_state(&BlobName::state("count", i))
            .expect("read");
        assert_eq!(back, vec![i; 1000]);
    }
}

#[test]
fn a_partial_checkpoint_falls_back_to_the_previous_complete_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 3).expect("open");
    drop(write_checkpoint(&store, 1));
    // Checkpoint 2 gets its blobs but never its manifest (a crash before the commit).
    let pending = store.begin(2).expect("begin");
    pending
        .put(&BlobName::source_position("numbers", 0), b"x")
        .expect("put");
    drop(pending);

    let latest = store.latest().expect("latest");
    assert_eq!(latest.checkpoint.as_ref().map(|c| c.id()), Some(1));
    assert_eq!(
        latest.skipped,
        [SkippedCheckpoint {
            id: 2,
            path: dir.path().join("chk-2"),
            reason: SkipReason::NoManifest
        }]
    );
}

/// Commits checkpoints 1 and 2, damages 2 with `damage`, and checks that `latest` returns 1
/// and says why it skipped 2.
fn falls_back_after(damage: impl FnOnce(&CheckpointStore), why: impl Fn(&SkipReason) -> bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 3).expect("open");
    drop(write_checkpoint(&store, 1));
    drop(write_checkpoint(&store, 2));
    damage(&store);
    let latest = store.latest().expect("latest");
    let checkpoint = latest.checkpoint.expect("checkpoint 1 is intact");
    assert_eq!(checkpoint.id(), 1);
    let position = checkpoint
        .read(&BlobName::source_position("numbers", 0))
        .expect("read");
    assert_eq!(position, 1u64.to_le_bytes());
    assert_eq!(latest.skipped.len(), 1);
    assert_eq!(latest.skipped[0].id, 2);
    assert!(
        why(&latest.skipped[0].reason),
        "unexpected reason: {}",
        latest.skipped[0].reason
    );
}

#[test]
fn a_flipped_byte_in_a_blob_falls_back() {
    falls_back_after(
        |store| flip_byte(&blob_file(store, 2, &BlobName::state("count", 1)), 20),
        |r| matches!(r, SkipReason::BadChecksum { file } if file.contains("state-1-count")),
    );
}

#[test]
fn a_flipped_byte_in_the_manifest_falls_back() {
    falls_back_after(
        |store| flip_byte(&store.dir().join("chk-2/_manifest"), 30),
        |r| matches!(r, SkipReason::BadManifest(why) if why.contains("checksum")),
    );
}

#[test]
fn a_truncated_blob_falls_back() {
    falls_back_after(
        |store| {
            let path = blob_file(store, 2, &BlobName::state("count", 0));
            let len = fs::metadata(&path).expect("metadata").len();
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len - 1))
                .expect("truncate");
        },
        |r| matches!(r, SkipReason::WrongLength { expected, found, .. } if found + 1 == *expected),
    );
}

#[test]
fn a_lengthened_blob_falls_back() {
    falls_back_after(
        |store| {
            let path = blob_file(store, 2, &BlobName::source_position("numbers", 0));
            let mut file = OpenOptions::new().append(true).open(&path).expect("open");
            file.write_all(b"!").expect("append");
        },
        |r| {
            matches!(
                r,
                SkipReason::WrongLength {
                    expected: 8,
                    found: 9,
                    ..
                }
            )
        },
    );
}

#[test]
fn a_deleted_blob_falls_back() {
    falls_back_after(
        |store| fs::remove_file(blob_file(store, 2, &BlobName::state("count", 0))).expect("rm"),
        |r| matches!(r, SkipReason::MissingBlob { .. }),
    );
}

#[test]
fn a_manifest_naming_another_checkpoint_falls_back() {
    falls_back_after(
        |store| {
            fs::copy(
                store.dir().join("chk-1/_manifest"),
                store.dir().join("chk-2/_manifest"),
            )
            .expect("copy");
        },
        |r| matches!(r, SkipReason::BadManifest(why) if why.contains("names checkpoint 1")),
    );
}

#[test]
fn with_every_checkpoint_damaged_latest_is_none_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 3).expect("open");
    drop(write_checkpoint(&store, 1));
    drop(write_checkpoint(&store, 2));
    fs::remove_file(dir.path().join("chk-1/_manifest")).expect("rm");
    flip_byte(&blob_file(&store, 2, &BlobName::state("count", 0)), 13);
    let latest = store.latest().expect("latest");
    assert!(latest.checkpoint.is_none());
    let skipped: Vec<u64> = latest.skipped.iter().map(|s| s.id).collect();
    assert_eq!(skipped, [2, 1]);
    assert_eq!(latest.skipped[1].reason, SkipReason::NoManifest);
}

#[test]
fn retention_keeps_the_newest_complete_checkpoints_and_removes_abandoned_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 2).expect("open");
    drop(write_checkpoint(&store, 1));
    drop(store.begin(2).expect("begin")); // abandoned
    drop(write_checkpoint(&store, 3));
    assert_eq!(checkpoint_dirs(dir.path()), names(&[1, 3]));
    drop(write_checkpoint(&store, 4));
    drop(write_checkpoint(&store, 5));
    assert_eq!(checkpoint_dirs(dir.path()), names(&[4, 5]));

    // A checkpoint being written, even an older one, and one being read are kept.
    let writing = store.begin(6).expect("begin");
    let reading = store.latest().expect("latest").checkpoint.expect("5");
    assert_eq!(reading.id(), 5);
    drop(write_checkpoint(&store, 7));
    drop(write_checkpoint(&store, 8));
    assert_eq!(checkpoint_dirs(dir.path()), names(&[5, 6, 7, 8]));
    drop(writing);
    drop(reading);
    drop(write_checkpoint(&store, 9));
    assert_eq!(checkpoint_dirs(dir.path()), names(&[8, 9]));
}

#[test]
fn retention_counts_only_checkpoints_with_a_valid_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 2).expect("open");
    drop(write_checkpoint(&store, 1));
    drop(write_checkpoint(&store, 2));
    flip_byte(&dir.path().join("chk-2/_manifest"), 5);
    drop(write_checkpoint(&store, 3));
    // 2 is damaged: 3 and 1 are the two kept.
    assert_eq!(checkpoint_dirs(dir.path()), names(&[1, 3]));
}

#[test]
fn a_reopened_store_continues_after_the_highest_id_and_keeps_newer_partials() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = CheckpointStore::open(dir.path(), 2).expect("open");
        drop(write_checkpoint(&store, 1));
        drop(write_checkpoint(&store, 2));
        // A crash while checkpoint 5 is written.
        let pending = store.begin(5).expect("begin");
        pending
            .put(&BlobName::state("count", 0), b"half")
            .expect("put");
    }
    let store = CheckpointStore::open(dir.path(), 2).expect("reopen");
    assert_eq!(store.next_id(), 6);
    assert!(matches!(
        store.begin(5),
        Err(CheckpointError::IdNotIncreasing { id: 5, highest: 5 })
    ));
    assert!(matches!(
        store.begin(3),
        Err(CheckpointError::IdNotIncreasing { id: 3, highest: 5 })
    ));
    let latest = store.latest().expect("latest");
    assert_eq!(latest.checkpoint.as_ref().map(|c| c.id()), Some(2));
    assert_eq!(latest.skipped[0].reason, SkipReason::NoManifest);
    drop(latest);
    drop(write_checkpoint(&store, 6));
    assert_eq!(checkpoint_dirs(dir.path()), names(&[2, 6]));
    assert_eq!(store.next_id(), 7);
}

#[test]
fn misuse_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        CheckpointStore::open(dir.path(), 0),
        Err(CheckpointError::RetainZero)
    ));
    let store = CheckpointStore::open(dir.path(), 1).expect("open");
    assert!(matches!(
        CheckpointStore::open(dir.path(), 1),
        Err(CheckpointError::Locked { .. })
    ));

    let pending = store.begin(1).expect("begin");
    let name = BlobName::state("count", 0);
    pending.put(&name, b"a").expect("put");
    assert!(matches!(
        pending.put(&name, b"b"),
        Err(CheckpointError::DuplicateBlob { checkpoint: 1, .. })
    ));
    let unfinished = pending
        .writer(&BlobName::state("count", 1))
        .expect("writer");
    drop(unfinished);
    let err = pending
        .commit(meta())
        .expect_err("a writer was not finished");
    assert!(
        matches!(err, CheckpointError::BlobsOpen { open: 1, .. }),
        "{err}"
    );

    let pending = store.begin(2).expect("begin");
    pending
        .put(&BlobName::state("count", 2), b"x")
        .expect("put");
    let err = pending.commit(meta()).expect_err("count has 2 instances");
    assert!(
        matches!(
            err,
            CheckpointError::UnknownInstance {
                parallelism: Some(2),
                ..
            }
        ),
        "{err}"
    );
    let pending = store.begin(3).expect("begin");
    pending.put(&BlobName::state("sum", 0), b"x").expect("put");
    let err = pending.commit(meta()).expect_err("sum is not listed");
    assert!(
        err.to_string().contains("does not list that operator"),
        "{err}"
    );
    let pending = store.begin(4).expect("begin");
    assert!(matches!(
        pending.commit(CheckpointMeta::new(0, 0)),
        Err(CheckpointError::InvalidMeta(_))
    ));
    // None of these committed.
    assert!(store.latest().expect("latest").checkpoint.is_none());

    let pending = store.begin(5).expect("begin");
    pending
        .put(&BlobName::state("count", 0), b"x")
        .expect("put");
    let path = pending.path().to_path_buf();
    pending.abort().expect("abort");
    // The blobs are gone; the empty directory holds the id across a reopen.
    assert_eq!(fs::read_dir(&path).expect("list").count(), 0);
    drop(store);
    let store = CheckpointStore::open(dir.path(), 1).expect("reopen");
    assert_eq!(store.next_id(), 6);
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").expect("write");
    let err = CheckpointStore::open(&file, 1).expect_err("a file is not a directory");
    assert!(matches!(err, CheckpointError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");

    let store = CheckpointStore::open(dir.path().join("store"), 1).expect("open");
    fs::create_dir(dir.path().join("store/chk-9")).expect("mkdir");
    let store_err = store.begin(9).expect_err("exists");
    assert!(store_err.to_string().contains("chk-9"), "{store_err}");
    // A stray directory takes its id: ids go past it, never through it.
    assert_eq!(store.next_id(), 10);
}

#[test]
fn a_blob_read_back_is_checked_again_and_decoded_as_its_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 1).expect("open");
    let checkpoint = write_checkpoint(&store, 1);
    let name = BlobName::state("count", 0);
    // Written as a map of strings to numbers, read as a number.
    let err = checkpoint
        .read_state::<u64>(&name)
        .expect_err("another type");
    assert!(matches!(err, CheckpointError::State { .. }), "{err}");
    assert!(err.to_string().contains("state-0-count"), "{err}");
    // Damaged after the checkpoint was verified.
    let path = blob_file(&store, 1, &name);
    flip_byte(&path, 16);
    let err = checkpoint.read(&name).expect_err("damaged");
    assert!(
        matches!(&err, CheckpointError::Corrupt { path: p, .. } if *p == path),
        "{err}"
    );
}

#[test]
fn keyed_state_written_at_one_parallelism_restores_exactly_at_another() {
    // Each "count" instance keeps its keys by key group; 3 instances write, then 2 and 5 read.
    const MAX: u32 = 16;
    let group_of = |key: u64| (key % u64::from(MAX)) as u32;
    let all: BTreeMap<u64, u64> = (0..200).map(|k| (k, k * k)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 1).expect("open");
    let pending = store.begin(1).expect("begin");
    for i in 0..3 {
        let range = KeyGroupRange::of_instance(MAX, 3, i).expect("range");
        let mine: BTreeMap<u64, u64> = all
            .iter()
            .filter(|(k, _)| range.contains(group_of(**k)))
            .map(|(&k, &v)| (k, v))
            .collect();
        pending
            .put_state(&BlobName::state("count", i), &mine)
            .expect("put");
    }
    let checkpoint = pending
        .commit(CheckpointMeta::new(7, MAX).operator("count", 3))
        .expect("commit");

    for q in [1, 2, 3, 5, 16] {
        let mut restored = BTreeMap::new();
        for j in 0..q {
            let mine = KeyGroupRange::of_instance(MAX, q, j).expect("range");
            for (name, groups) in checkpoint.state_sources("count", j, q).expect("sources") {
                let old: BTreeMap<u64, u64> = checkpoint.read_state(&name).expect("read");
                for (k, v) in old {
                    if groups.contains(group_of(k)) {
                        assert!(mine.contains(group_of(k)));
                        assert!(restored.insert(k, v).is_none(), "key {k} restored twice");
                    }
                }
            }
        }
        assert_eq!(restored, all, "at parallelism {q}");
    }
    let err = checkpoint
        .state_sources("count", 0, 17)
        .expect_err("17 > 16 key groups");
    assert!(
        matches!(
            err,
            CheckpointError::KeyGroups(KeyGroupError::ParallelismAboveMax {
                parallelism: 17,
                max_parallelism: 16
            })
        ),
        "{err}"
    );
    assert!(matches!(
        checkpoint.state_sources("sum", 0, 1),
        Err(CheckpointError::UnknownOperator { .. })
    ));
}

/// What the model knows of one checkpoint directory.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Complete,
    /// No manifest.
    Partial,
    /// A valid manifest, a damaged blob.
    BadBlob,
    /// A damaged manifest.
    BadManifest,
}

#[derive(Clone, Debug)]
enum Step {
    Commit,
    Crash,
    DamageBlob(proptest::sample::Index),
    DamageManifest(proptest::sample::Index),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(Step::Commit),
        1 => Just(Step::Crash),
        1 => any::<prop::sample::Index>().prop_map(Step::DamageBlob),
        1 => any::<prop::sample::Index>().prop_map(Step::DamageManifest),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Against a model of the directory: `latest()` is the newest intact checkpoint and skips
    /// exactly the newer ones, retention leaves exactly the directories the rules keep, and a
    /// reopened store continues after the highest id.
    #[test]
    fn the_store_follows_its_model(
        retain in 1usize..4,
        steps in proptest::collection::vec(step(), 1..10),
    ) {
        use proptest::prelude::*;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = CheckpointStore::open(dir.path(), retain).expect("open");
        let mut model: BTreeMap<u64, Model> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Commit => {
                    let id = store.next_id();
                    drop(write_checkpoint(&store, id));
                    model.insert(id, Model::Complete);
                    // Retention, as documented.
                    let mut valid = 0;
                    let ids: Vec<u64> = model.keys().rev().copied().collect();
                    for old in ids {
                        if matches!(model[&old], Model::Complete | Model::BadBlob) {
                            valid += 1;
                            if valid <= retain {
                                continue;
                            }
                        }
                        if old < id {
                            model.remove(&old);
                        }
                    }
                }
                Step::Crash => {
                    let id = store.next_id();
                    let pending = store.begin(id).expect("begin");
                    pending.put(&BlobName::state("count", 0), b"half").expect("put");
                    drop(pending);
                    drop(store);
                    store = CheckpointStore::open(dir.path(), retain).expect("reopen");
                    prop_assert_eq!(store.next_id(), id + 1);
                    model.insert(id, Model::Partial);
                }
                Step::DamageBlob(pick) | Step::DamageManifest(pick) => {
                    let damage_blob = matches!(step, Step::DamageBlob(_));
                    let targets: Vec<u64> = model
                        .iter()
                        .filter(|(_, m)| **m == Model::Complete)
                        .map(|(id, _)| *id)
                        .collect();
                    if targets.is_empty() {
                        continue;
                    }
                    let id = targets[pick.index(targets.len())];
                    if damage_blob {
                        flip_byte(&blob_file(&store, id, &BlobName::state("count", 1)), 14);
                        model.insert(id, Model::BadBlob);
                    } else {
                        flip_byte(&dir.path().join(format!("chk-{id}/_manifest")), 9);
                        model.insert(id, Model::BadManifest);
                    }
                }
            }
            let ids: Vec<u64> = model.keys().copied().collect();
            prop_assert_eq!(checkpoint_dirs(dir.path()), names(&ids));
            let latest = store.latest().expect("latest");
            let expected = model
                .iter()
                .rev()
                .find(|(_, m)| **m == Model::Complete)
                .map(|(id, _)| *id);
            prop_assert_eq!(latest.checkpoint.as_ref().map(|c| c.id()), expected);
            let skipped: Vec<u64> = latest.skipped.iter().map(|s| s.id).collect();
            let newer: Vec<u64> = model
                .keys()
                .rev()
                .copied()
                .filter(|&id| expected.is_none_or(|e| id > e))
                .collect();
            prop_assert_eq!(skipped, newer);
            if let Some(checkpoint) = &latest.checkpoint {
                let position = checkpoint
                    .read(&BlobName::source_position("numbers", 0))
                    .expect("read");
                prop_assert_eq!(position, checkpoint.id().to_le_bytes());
            }
        }
    }
}
