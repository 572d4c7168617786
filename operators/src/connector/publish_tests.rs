//! The job-level publish: staging, swap, `_SUCCESS`, journal recovery.

use std::path::Path;

use super::*;

const OUTPUTS: [&str; 2] = ["a", "b"];

fn stage(job: &JobOutput, content: &str) {
    for name in OUTPUTS {
        std::fs::write(job.staging_dir(name).join("part-00000.csv"), content).expect("writable");
    }
}

fn content(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(root.join(name).join("part-00000.csv")).ok()
}

/// Names under `root`, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn publish_run(root: &Path, text: &str) -> String {
    let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    stage(&job, text);
    job.publish().expect("publishes")
}

#[test]
fn publish_swaps_every_output_in_and_marks_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let first = publish_run(root, "one\n");
    let mut job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    stage(&job, "two\n");
    job.record(
        "a",
        &[WriteSummary {
            rows: 1,
            bytes: 4,
            files: vec![super::super::PartFile {
                path: job.staging_dir("a").join("part-00000.csv"),
                rows: 1,
                bytes: 4,
            }],
        }],
    );
    // Until published, readers see the previous run, complete.
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("one\n"));
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(first.clone())
        );
    }
    let second = job.publish().expect("publishes");
    assert_ne!(first, second);
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("two\n"));
    }
    let marker = JobOutput::marker(&root.join("a"))
        .expect("readable")
        .expect("present");
    assert_eq!(
        marker,
        SuccessMarker {
            run_id: second.clone(),
            output: "a".into(),
            rows: Some(1),
            files: vec!["part-00000.csv".into()],
        }
    );
    assert_eq!(
        JobOutput::published_run(&root.join("b")).expect("readable"),
        Some(second)
    );
    // No staging folder, no journal left behind.
    assert_eq!(listing(root), [".weir-lock", "a", "b"]);
}

#[test]
fn abort_and_drop_leave_the_previous_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let first = publish_run(root, "one\n");
    let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    stage(&job, "two\n");
    job.abort().expect("aborts");
    let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    stage(&job, "three\n");
    drop(job);
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("one\n"));
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(first.clone())
        );
    }
    assert_eq!(listing(root), [".weir-lock", "a", "b"]);
}

#[test]
fn recover_completes_a_publish_interrupted_between_swaps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let first = publish_run(root, "one\n");
    for swaps in 0..=OUTPUTS.len() {
        let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
        stage(&job, &format!("swaps {swaps}\n"));
        let id = job.run_id().to_owned();
        // A crash after the journal and `swaps` swaps.
        let _ = job.publish_until(swaps);
        assert!(root.join(JOURNAL).exists());
        let recovery = JobOutput::recover(root).expect("recovers");
        assert_eq!(recovery.completed.as_deref(), Some(id.as_str()));
        for name in OUTPUTS {
            assert_eq!(
                content(root, name).as_deref(),
                Some(format!("swaps {swaps}\n").as_str())
            );
            assert_eq!(
                JobOutput::published_run(&root.join(name)).expect("readable"),
                Some(id.clone())
            );
        }
        assert_eq!(listing(root), [".weir-lock", "a", "b"]);
        assert_ne!(id, first);
    }
}

#[test]
fn recover_rolls_back_a_run_that_never_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let first = publish_run(root, "one\n");
    let mut job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    stage(&job, "two\n");
    let staging = staging_root(root, job.run_id());
    // A crash before the journal: the process dies with the staging folder in place.
    job.done = true;
    drop(job);
    assert!(staging.exists());
    let recovery = JobOutput::recover(root).expect("recovers");
    assert_eq!(recovery.completed, None);
    assert_eq!(recovery.rolled_back, vec![staging]);
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("one\n"));
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(first.clone())
        );
    }
}

#[test]
fn a_first_publish_creates_the_outputs_and_replaces_an_unmarked_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    // `a` exists from an older layout (no `_SUCCESS`); `b` does not exist.
    std::fs::create_dir_all(root.join("a")).expect("creatable");
    std::fs::write(root.join("a").join("part-00000.csv"), "old\n").expect("writable");
    let id = publish_run(root, "new\n");
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("new\n"));
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(id.clone())
        );
    }
}

#[test]
fn a_second_run_on_the_same_root_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let job = JobOutput::begin(dir.path(), &OUTPUTS).expect("begins");
    assert!(matches!(
        JobOutput::begin(dir.path(), &OUTPUTS),
        Err(PublishError::Busy { .. })
    ));
    assert!(matches!(
        JobOutput::recover(dir.path()),
        Err(PublishError::Busy { .. })
    ));
    drop(job);
    JobOutput::begin(dir.path(), &OUTPUTS).expect("free again");
}

#[test]
fn names_must_be_plain_visible_directory_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bad in ["", ".hidden", "_meta", "a/b", ".."] {
        assert!(
            matches!(
                JobOutput::begin(dir.path(), &[bad]),
                Err(PublishError::BadName(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn io_errors_name_their_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("writable");
    let root = file.join("out");
    let err = JobOutput::begin(&root, &OUTPUTS).expect_err("a file is in the way");
    assert!(err.to_string().contains(&*root.to_string_lossy()), "{err}");
}

#[test]
fn run_ids_never_repeat_within_a_process() {
    let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| new_run_id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|id| check_name(id).is_ok()));
}

/// Ends `job` as a killed process would: its staging folder stays.
fn crash(mut job: JobOutput) {
    job.done = true;
    drop(job);
}

#[test]
fn a_resumed_run_keeps_its_staging_folder_and_publishes_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let first = publish_run(root, "one\n");
    // A run that dies leaves its staging folder (beside another dead run's).
    let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    let run_id = job.run_id().to_owned();
    stage(&job, "two\n");
    crash(job);
    let dead_staging = staging_root(root, "another-run");
    std::fs::create_dir_all(dead_staging.join("a")).expect("creatable");

    let job = JobOutput::resume(root, &OUTPUTS, &run_id).expect("resumes");
    assert!(!dead_staging.exists(), "other runs are rolled back");
    for name in OUTPUTS {
        let staged = std::fs::read_to_string(job.staging_dir(name).join("part-00000.csv"));
        assert_eq!(staged.expect("kept").as_str(), "two\n");
        assert_eq!(
            content(root, name).as_deref(),
            Some("one\n"),
            "not yet published"
        );
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(first.clone())
        );
    }
    assert_eq!(job.publish().expect("publishes"), run_id);
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("two\n"));
    }
}

#[test]
fn resuming_a_run_whose_publish_was_under_way_completes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    publish_run(root, "one\n");
    let job = JobOutput::begin(root, &OUTPUTS).expect("begins");
    let run_id = job.run_id().to_owned();
    stage(&job, "two\n");
    // Killed after the journal and one swap.
    job.publish_until(1).expect("journal written");
    let err = JobOutput::resume(root, &OUTPUTS, &run_id).expect_err("already published");
    assert!(matches!(err, PublishError::Published { .. }), "{err}");
    for name in OUTPUTS {
        assert_eq!(content(root, name).as_deref(), Some("two\n"));
        assert_eq!(
            JobOutput::published_run(&root.join(name)).expect("readable"),
            Some(run_id.clone())
        );
    }
}

/// A checkpointed NDJSON sink in a staged run, killed after checkpoint 2 completed and before
/// its commit, restored from checkpoint 2: `_SUCCESS` counts the rows written before the crash
/// and after the restore once each, and they are exactly the visible rows.
#[test]
fn success_counts_stay_exact_across_a_crash_and_a_resume() {
    use std::future::poll_fn;
    use weir_runtime::{InstanceInfo, OverflowCounter, Sink};

    use crate::connector::PartCommit;
    use crate::sink::NdjsonSink;

    let info = InstanceInfo {
        name: "events".into(),
        instance: 0,
        parallelism: 1,
        batch_rows: 1024,
        max_batch_bytes: 1 << 20,
        overflow: OverflowCounter::detached(),
        downstream: Default::default(),
        barriers: Default::default(),
        checkpointing: false,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let job = JobOutput::begin(root, &["events"]).expect("begins");
    let run_id = job.run_id().to_owned();
    let staged = job.staging_dir("events");
    let sink = || {
        NdjsonSink::<u64>::new(&staged)
            .max_rows(2)
            .commit(PartCommit::OnCheckpoint)
    };
    let mut first = sink();
    first.open(&info).expect("opens");
    let state = rt.block_on(async {
        first.on_batch(0, (0..5).collect()).expect("taken");
        poll_fn(|cx| first.poll_pre_commit(cx, 1))
            .await
            .expect("pre-commits");
        poll_fn(|cx| first.poll_commit(cx, 1))
            .await
            .expect("commits");
        poll_fn(|cx| first.poll_ready(cx)).await.expect("ready");
        first.on_batch(0, (5..8).collect()).expect("taken");
        poll_fn(|cx| first.poll_pre_commit(cx, 2))
            .await
            .expect("pre-commits");
        // Checkpoint 2 stores the sink's list and completes; the crash comes before its
        // commit, after a row no checkpoint covers.
        let state = first.checkpointed().clone();
        poll_fn(|cx| first.poll_ready(cx)).await.expect("ready");
        first.on_batch(0, vec![8]).expect("taken");
        poll_fn(|cx| first.poll_ready(cx)).await.expect("ready");
        state
    });
    assert_eq!(state.rows, 8);
    drop(first);
    crash(job);

    // The restore: the staging folder, then the sink's directory, then the sink.
    let mut job = JobOutput::resume(root, &["events"], &run_id).expect("resumes");
    NdjsonSink::<u64>::recover(&staged, Some(2)).expect("recovers");
    let mut second = sink().restored(state.clone());
    second.open(&info).expect("opens");
    rt.block_on(async {
        // The source rewinds to checkpoint 2's position: row 8.
        second.on_batch(0, (8..11).collect()).expect("taken");
        poll_fn(|cx| second.poll_close(cx)).await.expect("closes");
    });
    let after = second.finish().expect("a summary");
    assert_eq!(after.rows, 3);
    job.record("events", &[state, after]);
    job.publish().expect("publishes");

    let out = root.join("events");
    let marker = JobOutput::marker(&out)
        .expect("readable")
        .expect("a marker");
    let mut parts: Vec<String> = std::fs::read_dir(&out)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(['.', '_']))
        .collect();
    parts.sort();
    assert_eq!(marker.files, parts);
    let mut rows: Vec<u64> = parts
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(out.join(p)).expect("readable");
            text.lines()
                .map(|l| l.parse::<u64>().expect("a number"))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort_unstable();
    assert_eq!(rows, (0..11).collect::<Vec<_>>(), "each row once");
    assert_eq!(marker.rows, Some(11));
}
