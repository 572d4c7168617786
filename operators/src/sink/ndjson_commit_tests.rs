//! The NDJSON sink's two-phase commit by checkpoint: crashes at every step, recovered with the
//! last complete checkpoint, leave visible exactly the rows written before that checkpoint's
//! pre-commit, each once; the sink's hooks, driven as the executor drives them.

use std::future::poll_fn;

use proptest::prelude::*;
use weir_runtime::OverflowCounter;

use super::*;

fn parts(dir: &Path, stem: &str) -> Parts {
    Parts {
        dir: dir.to_owned(),
        stem: stem.to_owned(),
        max_rows: 3,
        max_bytes: u64::MAX,
        by_checkpoint: true,
        next: 0,
        open: None,
        files: Vec::new(),
        staged: Vec::new(),
        pending: Vec::new(),
        last_pre_commit: None,
        unsynced_rename: false,
        lines: Lines::default(),
    }
}

fn write(p: &mut Parts, rows: std::ops::Range<u64>) {
    p.lines.clear();
    for r in rows {
        serde_json::to_writer(&mut p.lines.buf, &r).expect("a number");
        p.lines.buf.push(b'\n');
        p.lines.ends.push(p.lines.buf.len());
    }
    if !p.lines.ends.is_empty() {
        p.write_lines().expect("written");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The rows of the visible parts, in name order.
fn visible(dir: &Path) -> Vec<u64> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .flat_map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).expect("readable");
            text.lines()
                .map(|l| l.parse::<u64>().expect("a number"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Ends `p` as a killed process would: its files stay as they are.
fn crash(mut p: Parts) {
    drop(p.open.take());
    p.staged.clear();
    drop(p);
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u64),
    PreCommit,
    /// The last pre-committed checkpoint is complete.
    Complete,
    Commit,
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
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A crash after any step, then `recover` with the last complete checkpoint: the visible
    /// rows are exactly those written before that checkpoint's pre-commit; recovering again
    /// changes nothing; a restored sink (a new run id) writes the rest after them.
    #[test]
    fn a_crash_at_any_step_recovers_exactly_the_completed_checkpoints(steps in steps()) {
        for stop in 0..=steps.len() {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut p = parts(dir.path(), "part-a-0");
            let (mut rows, mut last_complete) = (0u64, None);
            let mut covered: Vec<(u64, u64)> = Vec::new();
            for step in &steps[..stop] {
                match *step {
                    Step::Write(n) => {
                        write(&mut p, rows..rows + n);
                        rows += n;
                    }
                    Step::PreCommit => {
                        let id = covered.last().map_or(1, |c| c.0 + 1);
                        let made = p.pre_commit(id).expect("pre-commits");
                        prop_assert_eq!(made.checkpoint_id, id);
                        covered.push((id, rows));
                    }
                    Step::Complete => last_complete = covered.last().map(|c| c.0),
                    Step::Commit => {
                        if let Some(id) = last_complete {
                            p.commit(id).expect("commits");
                        }
                    }
                }
                // Nothing is visible before its checkpoint completes.
                let upto = last_complete
                    .and_then(|l| covered.iter().find(|c| c.0 == l))
                    .map_or(0, |c| c.1);
                prop_assert!(visible(dir.path()).len() as u64 <= upto);
            }
            let want: Vec<u64> = (0..last_complete
                .and_then(|l| covered.iter().find(|c| c.0 == l))
                .map_or(0, |c| c.1))
                .collect();
            crash(p);
            NdjsonSink::<u64>::recover(dir.path(), last_complete).expect("recovers");
            prop_assert_eq!(visible(dir.path()), want.clone(), "after {} steps", stop);
            prop_assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
            let before = names(dir.path());
            let again = NdjsonSink::<u64>::recover(dir.path(), last_complete).expect("recovers");
            prop_assert_eq!(again, PartRecovery::default());
            prop_assert_eq!(names(dir.path()), before);

            // The rewound source writes the rest again, into a restored sink's parts.
            let mut p = parts(dir.path(), "part-b-0");
            write(&mut p, want.len() as u64..rows + 2);
            p.finish().expect("finishes");
            prop_assert_eq!(visible(dir.path()), (0..rows + 2).collect::<Vec<_>>());
            prop_assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
        }
    }
}

#[test]
fn pre_commits_must_increase() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = parts(dir.path(), "part-a-0");
    write(&mut p, 0..1);
    p.pre_commit(2).expect("pre-commits");
    let err = p.pre_commit(2).expect_err("not above the last");
    assert!(
        matches!(err, WriteError::CheckpointOrder { last: 2, got: 2 }),
        "{err}"
    );
}

fn info() -> InstanceInfo {
    InstanceInfo {
        name: "files".into(),
        instance: 0,
        parallelism: 1,
        batch_rows: 1024,
        max_batch_bytes: 1 << 20,
        overflow: OverflowCounter::detached(),
        downstream: Default::default(),
        barriers: Default::default(),
        checkpointing: false,
    }
}

#[test]
fn the_sink_pre_commits_and_commits_on_its_thread_and_a_restored_sink_writes_the_rest() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let build = || {
        NdjsonSink::<u64>::new(dir.path())
            .max_rows(2)
            .commit(PartCommit::OnCheckpoint)
    };
    let mut sink = build();
    sink.open(&info()).expect("opens");
    rt.block_on(async {
        sink.on_batch(0, vec![0, 1, 2]).expect("taken");
        let made = poll_fn(|cx| sink.poll_pre_commit(cx, 1))
            .await
            .expect("pre-commits");
        assert_eq!(
            made.parts.iter().map(|p| p.rows).collect::<Vec<_>>(),
            [2, 1]
        );
        assert!(names(dir.path()).iter().all(|n| n.ends_with(".pending-1")));
        assert!(
            visible(dir.path()).is_empty(),
            "nothing visible before the commit"
        );
        let committed = poll_fn(|cx| sink.poll_commit(cx, 1))
            .await
            .expect("commits");
        assert_eq!(committed, made.parts);
        assert_eq!(visible(dir.path()), [0, 1, 2]);
        let again = poll_fn(|cx| sink.poll_commit(cx, 1))
            .await
            .expect("idempotent");
        assert!(again.is_empty());
        poll_fn(|cx| sink.poll_ready(cx)).await.expect("ready");
        sink.on_batch(0, vec![3, 4]).expect("taken");
        poll_fn(|cx| sink.poll_pre_commit(cx, 2))
            .await
            .expect("pre-commits");
    });
    // A crash before checkpoint 2 completes.
    drop(sink);
    let recovery = NdjsonSink::<u64>::recover(dir.path(), Some(1)).expect("recovers");
    assert_eq!(recovery.discarded.len(), 1, "checkpoint 2's part");
    assert_eq!(visible(dir.path()), [0, 1, 2]);

    let mut sink = build();
    sink.open(&info()).expect("opens");
    rt.block_on(async {
        sink.on_batch(0, vec![3, 4, 5]).expect("taken");
        poll_fn(|cx| sink.poll_close(cx)).await.expect("closes");
    });
    let summary = sink.finish().expect("a summary");
    assert_eq!(summary.rows, 3);
    assert_eq!(visible(dir.path()), [0, 1, 2, 3, 4, 5]);
    assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
}

#[test]
fn a_sink_not_committing_by_checkpoint_says_so() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sink = NdjsonSink::<u64>::new(dir.path());
    sink.open(&info()).expect("opens");
    let err = rt
        .block_on(poll_fn(|cx| sink.poll_pre_commit(cx, 1)))
        .expect_err("not transactional");
    assert!(
        err.to_string().contains("PartCommit::OnCheckpoint"),
        "{err}"
    );
    let mut sink = NdjsonSink::<u64>::new(dir.path()).commit(PartCommit::OnFinish);
    let err = sink.open(&info()).expect_err("not offered");
    assert!(err.to_string().contains("cannot hold its parts"), "{err}");
}
