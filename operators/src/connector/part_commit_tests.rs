//! Two-phase commit by checkpoint: crashes at every step, recovered with the last complete
//! checkpoint, leave visible exactly the rows written before that checkpoint.

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use proptest::prelude::*;

use super::tests::{batch, schema};
use super::*;
use crate::connector::{ParquetOptions, ParquetReader};

fn options(format: PartFormat) -> PartWriterOptions {
    PartWriterOptions {
        max_rows: Some(3),
        commit: PartCommit::OnCheckpoint,
        ..PartWriterOptions::new(format)
    }
}

fn formats() -> [PartFormat; 2] {
    [
        PartFormat::Ndjson,
        PartFormat::parquet(ParquetCompression::Snappy),
    ]
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The ids in the visible parts of `dir`, in part order.
fn visible_ids(dir: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for name in names(dir).into_iter().filter(|n| !n.starts_with('.')) {
        let path = dir.join(&name);
        if name.ends_with(".ndjson") {
            let text = std::fs::read_to_string(&path).expect("readable");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("one object");
                ids.push(v["id"].as_u64().expect("an id"));
            }
        } else {
            let reader = ParquetReader::open(&path, ParquetOptions::default()).expect("complete");
            for b in reader {
                let b = b.expect("decodes").batch;
                ids.extend(b.column(0).as_primitive::<UInt64Type>().values().iter());
            }
        }
    }
    ids
}

/// Ends `w` as a killed process would: its files stay as they are (the open part's buffered
/// bytes may reach it or not; recovery deletes it either way).
fn crash(mut w: PartWriter) {
    drop(w.current.take());
    w.staged.clear();
    w.failed = true;
    drop(w);
}

/// One step of a sink's life.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Write the next `n` rows.
    Write(u64),
    /// Snapshot: pre-commit under the next checkpoint id.
    PreCommit,
    /// The last pre-committed checkpoint is complete (its manifest written).
    Complete,
    /// Commit the last complete checkpoint.
    Commit,
}

/// What the steps did up to a crash: the writer, the last complete checkpoint, and the rows
/// each pre-commit covered.
struct Played {
    writer: PartWriter,
    last_complete: Option<u64>,
    /// (checkpoint id, rows written before its pre-commit).
    covered: Vec<(u64, u64)>,
    rows: u64,
}

fn play(dir: &Path, format: &PartFormat, steps: &[Step]) -> Played {
    let writer = PartWriter::create(dir, schema(), options(format.clone())).expect("empty dir");
    let mut p = Played {
        writer,
        last_complete: None,
        covered: Vec::new(),
        rows: 0,
    };
    for step in steps {
        match *step {
            Step::Write(n) => {
                p.writer.write(&batch(p.rows, p.rows + n)).expect("writes");
                p.rows += n;
            }
            Step::PreCommit => {
                let id = p.covered.last().map_or(1, |c| c.0 + 1);
                let made = p.writer.pre_commit(id).expect("pre-commits");
                assert_eq!(made.checkpoint_id, id);
                p.covered.push((id, p.rows));
            }
            Step::Complete => p.last_complete = p.covered.last().map(|c| c.0),
            Step::Commit => {
                if let Some(id) = p.last_complete {
                    p.writer.commit(id).expect("commits");
                }
            }
        }
    }
    p
}

/// The rows a recovery with `last_complete` must leave visible.
fn reference(p: &Played) -> Vec<u64> {
    let upto = p
        .last_complete
        .and_then(|l| p.covered.iter().find(|c| c.0 == l))
        .map_or(0, |c| c.1);
    (0..upto).collect()
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u64..5).prop_map(Step::Write),
            2 => Just(Step::PreCommit),
            1 => Just(Step::Complete),
            1 => Just(Step::Commit),
        ],
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// A crash after any step (the process gone: files stay as they are), then `recover` with
    /// the last complete checkpoint: the visible rows are exactly those written before that
    /// checkpoint's pre-commit; recovering again changes nothing; a resumed writer numbers its
    /// parts after every existing one, and its finished rows follow.
    #[test]
    fn a_crash_at_any_step_recovers_exactly_the_completed_checkpoints(steps in steps()) {
        for format in formats() {
            for stop in 0..=steps.len() {
                let dir = tempfile::tempdir().expect("temp dir");
                let p = play(dir.path(), &format, &steps[..stop]);
                let want = reference(&p);
                let (last, rows) = (p.last_complete, p.rows);
                crash(p.writer);
                PartWriter::recover(dir.path(), last).expect("recovers");
                prop_assert_eq!(visible_ids(dir.path()), want.clone(), "{:?} after {}", format, stop);
                prop_assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
                let before = names(dir.path());
                let again = PartWriter::recover(dir.path(), last).expect("recovers");
                prop_assert_eq!(again, PartRecovery::default());
                prop_assert_eq!(names(dir.path()), before.clone());

                // The rewound sources emit the rest again into a resumed writer.
                let mut w = PartWriter::resume(dir.path(), schema(), options(format.clone()))
                    .expect("recovered");
                let from = want.len() as u64;
                w.write(&batch(from, rows + 2)).expect("writes");
                let summary = w.finish().expect("finishes");
                for f in &summary.files {
                    let name = f.path.file_name().expect("a name").to_string_lossy().into_owned();
                    prop_assert!(!before.contains(&name), "{} reused", name);
                }
                prop_assert_eq!(visible_ids(dir.path()), (0..rows + 2).collect::<Vec<_>>());
            }
        }
    }
}

#[test]
fn pre_commit_makes_parts_pending_and_commit_makes_them_visible() {
    for format in formats() {
        let ext = format.extension();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = PartWriter::create(dir.path(), schema(), options(format)).expect("empty");
        w.write(&batch(0, 4)).expect("writes");
        // One part closed by rolling (3 rows), one open (1 row): both hidden.
        assert_eq!(
            names(dir.path()),
            [
                format!(".part-00000.{ext}.inprogress"),
                format!(".part-00001.{ext}.inprogress")
            ]
        );
        let made = w.pre_commit(7).expect("pre-commits");
        assert_eq!(made.checkpoint_id, 7);
        assert_eq!(
            made.parts.iter().map(|p| p.rows).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_eq!(
            names(dir.path()),
            [
                format!(".part-00000.{ext}.pending-7"),
                format!(".part-00001.{ext}.pending-7")
            ]
        );
        // The list round-trips through the checkpoint codec's serde.
        let json = serde_json::to_string(&made).expect("serializes");
        assert_eq!(
            serde_json::from_str::<PreCommit>(&json).expect("parses"),
            made
        );
        // Nothing new: nothing pending, no error.
        assert!(w.pre_commit(8).expect("pre-commits").parts.is_empty());
        w.write(&batch(4, 5)).expect("writes");
        assert!(w.commit(7).expect("commits").len() == 2);
        assert!(w.commit(7).expect("idempotent").is_empty());
        assert_eq!(visible_ids(dir.path()), [0, 1, 2, 3]);
        assert_eq!(w.pending().count(), 0);
        // The end of a bounded input commits the rest.
        let summary = w.finish().expect("finishes");
        assert_eq!(summary.rows, 5);
        assert_eq!(visible_ids(dir.path()), [0, 1, 2, 3, 4]);
        assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
    }
}

#[test]
fn a_commit_a_recovery_already_made_is_taken_as_done() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w =
        PartWriter::create(dir.path(), schema(), options(PartFormat::Ndjson)).expect("empty");
    w.write(&batch(0, 2)).expect("writes");
    w.pre_commit(1).expect("pre-commits");
    PartWriter::recover(dir.path(), Some(1)).expect("recovers");
    assert_eq!(w.commit(1).expect("idempotent").len(), 1);
    assert_eq!(visible_ids(dir.path()), [0, 1]);
}

#[test]
fn dropping_the_writer_keeps_pending_parts_for_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w =
        PartWriter::create(dir.path(), schema(), options(PartFormat::Ndjson)).expect("empty");
    w.write(&batch(0, 2)).expect("writes");
    w.pre_commit(1).expect("pre-commits");
    w.write(&batch(2, 3)).expect("writes");
    drop(w);
    assert_eq!(names(dir.path()), [".part-00000.ndjson.pending-1"]);
    let r = PartWriter::recover(dir.path(), None).expect("recovers");
    assert_eq!(r.discarded.len(), 1);
    assert!(names(dir.path()).is_empty());
}

#[test]
fn the_transactional_calls_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w =
        PartWriter::create(dir.path(), schema(), options(PartFormat::Ndjson)).expect("empty");
    assert!(matches!(w.sync(), Err(WriteError::CommitsByCheckpoint)));
    w.pre_commit(5).expect("pre-commits");
    assert!(matches!(
        w.pre_commit(5),
        Err(WriteError::CheckpointOrder { last: 5, got: 5 })
    ));
    w.write(&batch(0, 1)).expect("still usable");
    w.pre_commit(6).expect("pre-commits");
    let err = PartWriter::resume(dir.path(), schema(), options(PartFormat::Ndjson))
        .expect_err("pending parts");
    assert!(err.to_string().contains("PartWriter::recover"), "{err}");

    let other = tempfile::tempdir().expect("temp dir");
    let mut each = PartWriter::create(
        other.path(),
        schema(),
        PartWriterOptions::new(PartFormat::Ndjson),
    )
    .expect("empty");
    assert!(matches!(
        each.pre_commit(1),
        Err(WriteError::NotTransactional)
    ));
    assert!(matches!(each.commit(1), Err(WriteError::NotTransactional)));
}

#[test]
fn recovery_leaves_other_files_and_other_prefixes_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "_SUCCESS",
        ".notes",
        "part-0-00004.ndjson",
        ".part-1-00002.ndjson.pending-3",
        ".part-1-00003.ndjson.pending-4",
        ".part-0-00005.ndjson.inprogress",
    ] {
        std::fs::write(dir.path().join(name), "{\"id\":1,\"name\":\"x\"}\n").expect("writable");
    }
    let r = PartWriter::recover(dir.path(), Some(3)).expect("recovers");
    assert_eq!(r.committed, [dir.path().join("part-1-00002.ndjson")]);
    assert_eq!(r.discarded.len(), 2);
    assert_eq!(
        names(dir.path()),
        [
            ".notes",
            "_SUCCESS",
            "part-0-00004.ndjson",
            "part-1-00002.ndjson"
        ]
    );
    // Each instance resumes after its own highest part.
    let opts = |prefix: &str| PartWriterOptions {
        prefix: prefix.to_owned(),
        ..options(PartFormat::Ndjson)
    };
    for (prefix, next) in [
        ("part-0", "part-0-00005.ndjson"),
        ("part-1", "part-1-00003.ndjson"),
    ] {
        let mut w = PartWriter::resume(dir.path(), schema(), opts(prefix)).expect("recovered");
        w.write(&batch(0, 1)).expect("writes");
        let s = w.finish().expect("finishes");
        assert_eq!(s.files[0].path, dir.path().join(next));
    }
}

#[test]
fn a_restore_discards_the_parts_a_finished_run_made_visible_after_its_checkpoint() {
    for format in formats() {
        let ext = format.extension();
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = options(format);
        let mut w = PartWriter::create(dir.path(), schema(), opts.clone()).expect("empty");
        w.write(&batch(0, 4)).expect("writes");
        let kept = w.pre_commit(1).expect("pre-commits").parts;
        // The input ends before checkpoint 1 completes: closing commits every part, and the
        // process dies before the job publishes.
        w.write(&batch(4, 6)).expect("writes");
        w.finish().expect("finishes");
        assert_eq!(visible_ids(dir.path()), [0, 1, 2, 3, 4, 5]);
        // Another sink's part, and a file that is no part, stay.
        std::fs::write(dir.path().join(format!("other-00000.{ext}")), b"x").expect("writable");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("writable");

        // A restore of checkpoint 0 (none complete) keeps nothing of this writer's.
        let tmp = tempfile::tempdir().expect("temp dir");
        for name in names(dir.path()) {
            std::fs::copy(dir.path().join(&name), tmp.path().join(&name)).expect("copied");
        }
        let gone = PartWriter::discard_unlisted(tmp.path(), &opts, &[]).expect("discards");
        assert_eq!(gone.len(), 3);
        assert_eq!(
            names(tmp.path()),
            ["notes.txt".to_string(), format!("other-00000.{ext}")]
        );

        // A restore of checkpoint 1 keeps its two parts and removes the third.
        let gone = PartWriter::discard_unlisted(dir.path(), &opts, &kept).expect("discards");
        assert_eq!(gone, [dir.path().join(format!("part-00002.{ext}"))]);
        std::fs::remove_file(dir.path().join(format!("other-00000.{ext}"))).expect("removed");
        std::fs::remove_file(dir.path().join("notes.txt")).expect("removed");
        assert_eq!(visible_ids(dir.path()), [0, 1, 2, 3]);
    }
}
