//! The part sink's checkpoint hooks, driven as the executor will drive them.

use std::future::poll_fn;
use std::sync::Arc;

use arrow::array::UInt64Array;
use arrow::datatypes::{DataType, Field, Schema};
use weir_runtime::OverflowCounter;

use super::*;

fn info() -> InstanceInfo {
    InstanceInfo {
        name: "parts".into(),
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

fn batch(from: u64, to: u64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::UInt64, false)]));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(UInt64Array::from_iter_values(from..to))],
    )
    .expect("one column")
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_sink_pre_commits_and_commits_on_its_lane_and_resumes_numbering() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartSinkOptions::new(PartFormat::Ndjson).commit(PartCommit::OnCheckpoint);
    let mut sink = PartSink::new(dir.path(), batch(0, 0).schema(), opts.clone());
    sink.open(&info()).expect("opens");
    rt.block_on(async {
        sink.on_batch(0, batch(0, 3)).expect("taken");
        let made = poll_fn(|cx| sink.poll_pre_commit(cx, 1))
            .await
            .expect("pre-commits");
        assert_eq!(made.parts.len(), 1);
        assert_eq!(names(dir.path()), [".part-00000.ndjson.pending-1"]);
        let committed = poll_fn(|cx| sink.poll_commit(cx, 1))
            .await
            .expect("commits");
        assert_eq!(committed, made.parts);
        assert_eq!(names(dir.path()), ["part-00000.ndjson"]);
        poll_fn(|cx| sink.poll_ready(cx)).await.expect("ready");
        sink.on_batch(0, batch(3, 4)).expect("taken");
        poll_fn(|cx| sink.poll_pre_commit(cx, 2))
            .await
            .expect("pre-commits");
    });
    // A crash before checkpoint 2 completes: recovery discards its part.
    drop(sink);
    PartWriter::recover(dir.path(), Some(1)).expect("recovers");
    assert_eq!(names(dir.path()), ["part-00000.ndjson"]);

    let mut sink = PartSink::new(dir.path(), batch(0, 0).schema(), opts.resume(true));
    sink.open(&info()).expect("resumes");
    rt.block_on(async {
        sink.on_batch(0, batch(3, 4)).expect("taken");
        poll_fn(|cx| sink.poll_close(cx)).await.expect("closes");
    });
    let summary = sink.finish().expect("a summary");
    assert_eq!(summary.rows, 1);
    assert_eq!(
        names(dir.path()),
        ["part-00000.ndjson", "part-00001.ndjson"]
    );
}

/// Rows in the NDJSON parts of `dir`, by part name.
fn part_rows(dir: &std::path::Path) -> Vec<(String, u64)> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).expect("readable");
            let rows = text.lines().count() as u64;
            (n, rows)
        })
        .collect()
}

/// The bug behind a kill test's `_SUCCESS` counting fewer rows than its parts held: a run
/// whose input ended committed every part on close and was killed before its job published;
/// its restore went back to the last checkpoint and wrote the rows after it again, beside the
/// parts holding them already, which the summary (so `_SUCCESS`) did not list.
#[test]
fn a_restore_after_a_run_that_closed_before_publishing_lists_every_part_and_writes_each_row_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = PartSinkOptions::new(PartFormat::Ndjson).commit(PartCommit::OnCheckpoint);
    let mut sink = PartSink::new(dir.path(), batch(0, 0).schema(), opts.clone());
    sink.open(&info()).expect("opens");
    let mut state = weir_runtime::checkpoint::SnapshotWriter::new(128);
    rt.block_on(async {
        sink.on_batch(0, batch(0, 3)).expect("taken");
        poll_fn(|cx| Sink::poll_pre_commit(&mut sink, cx, 1))
            .await
            .expect("pre-commits");
        Sink::snapshot(&mut sink, &mut state).expect("snapshots");
        Sink::commit(&mut sink, 1).expect("commits");
        poll_fn(|cx| sink.poll_ready(cx)).await.expect("ready");
        // The input ends: the close commits the part after checkpoint 1 too.
        sink.on_batch(0, batch(3, 5)).expect("taken");
        poll_fn(|cx| sink.poll_close(cx)).await.expect("closes");
    });
    assert_eq!(sink.finish().expect("a summary").rows, 5);
    assert_eq!(
        part_rows(dir.path()),
        [
            ("part-00000.ndjson".to_string(), 3),
            ("part-00001.ndjson".to_string(), 2)
        ]
    );

    // Killed before the publish; the restored run starts from checkpoint 1, and the rewound
    // source sends rows 3..5 again.
    let blob = state.into_blob().expect("encodes");
    let reader = SnapshotReader::from_blobs(128, 1, 0, 1, [blob.as_slice()]).expect("decodes");
    let mut sink = PartSink::new(dir.path(), batch(0, 0).schema(), opts.resume(true));
    sink.open(&info()).expect("opens");
    sink.restore(&reader).expect("restores");
    rt.block_on(async {
        poll_fn(|cx| sink.poll_ready(cx)).await.expect("ready");
        sink.on_batch(0, batch(3, 5)).expect("taken");
        poll_fn(|cx| sink.poll_close(cx)).await.expect("closes");
    });
    let summary = sink.finish().expect("a summary");
    let parts = part_rows(dir.path());
    assert_eq!(
        parts,
        [
            ("part-00000.ndjson".to_string(), 3),
            ("part-00001.ndjson".to_string(), 2)
        ],
        "the part written after checkpoint 1 was replaced: its rows are written once"
    );
    let listed: Vec<String> = summary
        .files
        .iter()
        .map(|f| {
            f.path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        listed,
        parts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    );
    assert_eq!(summary.rows, parts.iter().map(|(_, r)| r).sum::<u64>());
}
