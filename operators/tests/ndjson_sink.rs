//! The NDJSON part sink in running pipelines: exact content, one JSON line per row, rows it
//! cannot encode dead-lettered, names kept apart between parallel instances and between runs
//! sharing a directory. (Barriers: `barriers.rs`.)

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_operators::connector::WriteSummary;
use weir_operators::prelude::*;

fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows,
        ..PipelineConfig::default()
    }
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

/// The file names of a summary's parts.
fn part_names(summary: &WriteSummary) -> Vec<String> {
    summary
        .files
        .iter()
        .map(|f| {
            let name = f.path.file_name().expect("a file name");
            name.to_string_lossy().into_owned()
        })
        .collect()
}

/// The `<run>` of a part named `part-<run>-<instance>-<NNNNN>.ndjson`.
fn run_of(name: &str) -> &str {
    let stem = name
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".ndjson"))
        .expect("part-….ndjson");
    let mut dashes = stem.rmatch_indices('-').map(|(i, _)| i);
    let _index = dashes.next();
    let instance = dashes.next().expect("an instance");
    &stem[..instance]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, HeapSize)]
struct Event {
    id: u64,
    name: String,
    note: Option<String>,
    score: f64,
}

#[test]
fn rows_are_written_one_json_line_each_and_read_back_exactly() {
    let names_pool = [
        "plain",
        "line\nbreak",
        "carriage\r\nreturn",
        "quote \" and \\ backslash",
        "tab\tand unicode é ✓ 𝄞",
        "",
    ];
    let rows: Vec<Event> = (0..200u64)
        .map(|i| Event {
            id: i,
            name: names_pool[i as usize % names_pool.len()].to_owned(),
            note: (i % 3 == 0).then(|| format!("note {i}")),
            score: i as f64 / 7.0,
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Pipeline::with_config("events", config(16));
    let summary = p
        .source("events", IterSource::new(rows.clone()))
        .sink("files", NdjsonSink::new(dir.path()).max_rows(50));
    p.run().expect("the run succeeds");
    let summary = summary.take().expect("one instance");

    assert_eq!(summary.rows, 200);
    let per_part: Vec<u64> = summary.files.iter().map(|f| f.rows).collect();
    assert_eq!(per_part, vec![50, 50, 50, 50]);
    let parts = part_names(&summary);
    let run = run_of(&parts[0]).to_owned();
    let want: Vec<String> = (0..4)
        .map(|i| format!("part-{run}-0-{i:05}.ndjson"))
        .collect();
    assert_eq!(parts, want);
    assert_eq!(names(dir.path()), want, "nothing hidden is left");

    let mut text = String::new();
    for f in &summary.files {
        let part = std::fs::read_to_string(&f.path).expect("readable");
        assert_eq!(part.len() as u64, f.bytes);
        assert_eq!(part.lines().count() as u64, f.rows, "one line a row");
        text.push_str(&part);
    }
    let expected: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).expect("encodable") + "\n")
        .collect();
    assert_eq!(text, expected);
    let back: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    assert_eq!(back, rows);
    assert_eq!(summary.bytes, text.len() as u64);
}

/// A row whose map has byte-string keys, which JSON cannot have: it fails to encode after
/// writing part of its line.
#[derive(Clone, Debug, Serialize, HeapSize)]
struct Tagged {
    id: u64,
    tags: BTreeMap<Vec<u8>, u8>,
}

#[test]
fn rows_that_cannot_be_encoded_are_dead_letters_and_the_others_are_written() {
    let rows: Vec<Tagged> = (0..30u64)
        .map(|id| Tagged {
            id,
            tags: if id % 4 == 0 {
                BTreeMap::from([(vec![0xff], 1)])
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Pipeline::with_config("tagged", config(8));
    let (summary, dead) = p
        .source("rows", IterSource::new(rows))
        .sink_with_dead_letters("files", NdjsonSink::new(dir.path()));
    let dead = dead.collect("dead");
    let report = p
        .run()
        .expect("a row that cannot be encoded does not fail the run");
    let dead = dead.take().expect("collected");
    assert_eq!(dead.len(), 8, "ids 0, 4, …, 28");
    assert_eq!(report.dead_letters, 8);
    for d in &dead {
        assert!(
            d.reason.starts_with("the row cannot be encoded as JSON: ")
                && d.reason.contains("key must be a string"),
            "{d:?}"
        );
    }
    let summary = summary.take().expect("one instance");
    assert_eq!(summary.rows, 22);
    let text = std::fs::read_to_string(&summary.files[0].path).expect("readable");
    let want: String = (0..30u64)
        .filter(|id| id % 4 != 0)
        .map(|id| format!("{{\"id\":{id},\"tags\":{{}}}}\n"))
        .collect();
    assert_eq!(text, want, "no trace of the rows that failed half-way");
}

/// The numbers in the visible parts of `dir`, sorted.
fn numbers_in(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = names(dir)
        .iter()
        .filter(|n| !n.starts_with('.'))
        .flat_map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).expect("readable");
            text.lines()
                .map(|l| l.parse::<u64>().expect("a number a line"))
                .collect::<Vec<_>>()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

#[test]
fn parallel_instances_write_distinct_names_of_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Pipeline::with_config("numbers", config(16));
    let sink = NdjsonSink::new(dir.path()).max_rows(10);
    let run = sink.run_id().to_owned();
    let summaries = p
        .source("n", Generator::new(1_000, |i| i))
        .rebalance()
        .sink_with_parallelism("files", 3, move |_| sink.clone());
    p.run().expect("the run succeeds");
    let summaries = summaries.take_all();
    assert_eq!(summaries.len(), 3);
    for (instance, summary) in summaries.iter().enumerate() {
        assert!(summary.rows > 0, "instance {instance} wrote");
        for (k, name) in part_names(summary).iter().enumerate() {
            assert_eq!(name, &format!("part-{run}-{instance}-{k:05}.ndjson"));
        }
    }
    let written: usize = summaries.iter().map(|s| s.files.len()).sum();
    assert_eq!(names(dir.path()).len(), written, "every part its own name");
    assert_eq!(numbers_in(dir.path()), (0..1_000).collect::<Vec<_>>());
}

#[test]
fn write_ndjson_spreads_rows_over_instances_that_share_a_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Pipeline::with_config("numbers", config(16));
    let summaries = p
        .source("n", Generator::new(500, |i| i))
        .write_ndjson("files", dir.path(), 2);
    p.run().expect("the run succeeds");
    let summaries = summaries.take_all();
    assert_eq!(summaries.len(), 2);
    let runs: Vec<String> = summaries
        .iter()
        .map(|s| run_of(&part_names(s)[0]).to_owned())
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_eq!(numbers_in(dir.path()), (0..500).collect::<Vec<_>>());
}

#[test]
fn two_runs_into_one_directory_do_not_collide() {
    let dir = tempfile::tempdir().expect("temp dir");
    // What a crashed earlier process left: a hidden in-progress part, not touched.
    let leftover = ".part-1-2-0-00000.ndjson.inprogress";
    std::fs::write(dir.path().join(leftover), "7\n").expect("written");
    let run = |from: u64| {
        let mut p = Pipeline::with_config("numbers", config(16));
        let summary = p
            .source("n", Generator::new(100, move |i| from + i))
            .sink("files", NdjsonSink::new(dir.path()).max_rows(30));
        p.run().expect("the run succeeds");
        summary.take().expect("one instance")
    };
    let first = run(0);
    let first_text: Vec<String> = first
        .files
        .iter()
        .map(|f| std::fs::read_to_string(&f.path).expect("readable"))
        .collect();
    let second = run(1_000);
    assert_ne!(
        run_of(&part_names(&first)[0]),
        run_of(&part_names(&second)[0])
    );
    for (f, text) in first.files.iter().zip(&first_text) {
        let now = std::fs::read_to_string(&f.path).expect("still there");
        assert_eq!(
            &now, text,
            "the second run left the first one's parts alone"
        );
    }
    let mut all = part_names(&first);
    all.extend(part_names(&second));
    all.push(leftover.to_owned());
    all.sort();
    assert_eq!(names(dir.path()), all);
    let want: Vec<u64> = (0..100).chain(1_000..1_100).collect();
    assert_eq!(numbers_in(dir.path()), want);
}

#[test]
fn limits_of_zero_fail_the_run_naming_the_sink() {
    for sink in [
        NdjsonSink::new("unused").max_rows(0),
        NdjsonSink::new("unused").max_bytes(0),
    ] {
        let mut p = Pipeline::new("zero");
        let _ = p.source("n", Generator::new(10, |i| i)).sink("files", sink);
        let err = p.run().expect_err("no part could hold a row");
        assert_eq!(err.operator(), Some("files"), "{err}");
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
