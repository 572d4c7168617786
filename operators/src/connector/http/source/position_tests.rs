//! A durable source's log position, tested on the log: the position follows the records handed
//! on, a source reopened there hands on exactly the rest, positions the log cannot resume from
//! are refused, and releasing through a position frees the segments below it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weir_runtime::spill::{SpillConfig, Wal};
use weir_runtime::{Message, Output, Overflow};

use super::*;
use crate::connector::http::{Ack, HttpSourceConfig, IngestConfig};

fn config(log: &Path) -> HttpSourceConfig {
    HttpSourceConfig {
        ingest: IngestConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..IngestConfig::default()
        },
        policy: Overflow::Reject,
        capacity: 64,
        ack: Ack::Durable {
            dir: log.to_path_buf(),
            max_bytes: 4 << 20,
        },
        commit_interval: Duration::from_millis(5),
        ..HttpSourceConfig::default()
    }
}

/// Small segments, so that releasing frees some.
fn log_config() -> SpillConfig {
    SpillConfig {
        segment_bytes: 256,
        ..SpillConfig::new(4 << 20)
    }
}

/// A log in `dir` holding records `{"id": 0..n}`, committed below `committed`.
fn write_log(dir: &Path, n: u64, committed: u64) {
    let wal = Wal::open(dir, log_config()).expect("a log");
    for i in 0..n {
        let seq = wal
            .append(format!("{{\"id\":{i}}}").as_bytes())
            .expect("appended");
        assert_eq!(seq, i);
    }
    wal.sync(n - 1).expect("synced");
    if committed > 0 {
        wal.commit(committed - 1).expect("committed");
    }
}

/// Takes up to `max` records from the source, as its run loop does; their ids.
fn take(source: &mut HttpSource, max: usize) -> Vec<u64> {
    let mut out = Output::<Vec<Value>>::new(1024);
    source.take(max, &mut out).expect("takes");
    out.flush();
    out.drain()
        .flat_map(|m| match m {
            Message::Data(rows) => rows,
            _ => Vec::new(),
        })
        .map(|row| row["id"].as_u64().expect("an id"))
        .collect()
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("listable")
        .filter(|e| {
            let name = e.as_ref().expect("entry").file_name();
            let name = name.to_string_lossy();
            name.starts_with("seg-") && name.ends_with(".spill")
        })
        .count()
}

#[test]
fn a_source_reopened_at_any_reported_position_hands_on_exactly_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_log(dir.path(), 12, 2);
    let mut whole = HttpSource::bind(config(dir.path())).expect("binds");
    assert_eq!(whole.log_position(), Some(LogPosition { next_seq: 2 }));
    let all = take(&mut whole, 100);
    assert_eq!(
        all,
        (2..12).collect::<Vec<_>>(),
        "the records after the cursor"
    );
    assert_eq!(whole.position(), Some(LogPosition { next_seq: 12 }));
    drop(whole);

    for cut in 1..all.len() {
        let mut first = HttpSource::bind(config(dir.path())).expect("binds");
        let before = take(&mut first, cut);
        let at = first.position().expect("durable");
        assert_eq!(at.next_seq, 2 + cut as u64);
        drop(first);
        let mut rest = HttpSource::bind_at(config(dir.path()), at).expect("resumes");
        assert_eq!(rest.position(), Some(at), "it starts where it was told");
        let after = take(&mut rest, 100);
        assert_eq!([before, after].concat(), all, "cut after {cut}");
    }
}

#[test]
fn positions_the_log_cannot_resume_from_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_log(dir.path(), 5, 2);
    for bad in [1, 6] {
        let err = HttpSource::bind_at(config(dir.path()), LogPosition { next_seq: bad })
            .expect_err("outside the log");
        assert!(
            matches!(
                err,
                HttpSourceError::Position {
                    at,
                    committed_below: 2,
                    next_seq: 5
                } if at == bad
            ),
            "{err}"
        );
    }
    let mut end = HttpSource::bind_at(config(dir.path()), LogPosition { next_seq: 5 })
        .expect("the log's end is a position");
    assert!(take(&mut end, 100).is_empty());

    let accepted = HttpSourceConfig {
        ack: Ack::Accepted,
        ..config(dir.path())
    };
    let err = HttpSource::bind_at(accepted.clone(), LogPosition::default()).expect_err("no log");
    assert!(err.to_string().contains("durable"), "{err}");
    let source = HttpSource::bind(accepted).expect("binds");
    assert_eq!(source.position(), None);
    let err = source
        .handle()
        .release_through(LogPosition { next_seq: 1 })
        .expect_err("no log");
    assert!(err.to_string().contains("Ack::Durable"), "{err}");
}

#[test]
fn releasing_through_a_position_frees_the_segments_below_it_and_moves_the_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_log(dir.path(), 40, 0);
    let mut source = HttpSource::bind(config(dir.path())).expect("binds");
    let before = segments(dir.path());
    assert!(before > 3, "{before} segments");
    assert_eq!(take(&mut source, 30), (0..30).collect::<Vec<_>>());
    let at = source.position().expect("durable");
    // A checkpoint covering `at` is complete.
    source.release_through(at).expect("released");
    let after = segments(dir.path());
    assert!(after < before, "{after} of {before} segments left");
    // Again, or below: nothing changes.
    source.handle().release_through(at).expect("idempotent");
    source
        .release_through(LogPosition { next_seq: 3 })
        .expect("behind the cursor");
    assert_eq!(segments(dir.path()), after);
    let past = source
        .release_through(LogPosition { next_seq: 1000 })
        .expect_err("never appended");
    assert!(matches!(past, HttpSourceError::Log(_)), "{past}");
    drop(source);

    // A crash now: the next source replays only what the checkpoint did not cover, and the
    // released records can no longer be resumed from.
    let mut next = HttpSource::bind(config(dir.path())).expect("binds");
    assert_eq!(next.position(), Some(at));
    assert_eq!(take(&mut next, 100), (30..40).collect::<Vec<_>>());
    drop(next);
    let err = HttpSource::bind_at(config(dir.path()), LogPosition { next_seq: 29 })
        .expect_err("released");
    assert!(matches!(err, HttpSourceError::Position { .. }), "{err}");
}
