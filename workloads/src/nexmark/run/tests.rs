use std::path::Path;

use serde_json::Value;

use super::*;
use crate::nexmark::io::{read_events, write_events, write_generated};
use crate::nexmark::reference::{answer, rows_equal};
use crate::nexmark::Generator;

fn small(events: u64) -> GeneratorConfig {
    GeneratorConfig {
        events,
        event_rate: 1_000, // one event per ms, so delays and windows matter
        ..GeneratorConfig::default()
    }
}

fn config(input: EventInput, workload: Workload, output: ResultSink) -> RunConfig {
    RunConfig {
        input,
        workload,
        options: QueryOptions::default(),
        output,
        dead_letters: None,
        edge_target_time: None,
    }
}

fn ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn q0_on_a_generated_file_equals_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    write_generated(&small(5_000), &input).unwrap();
    let output = dir.path().join("q0.ndjson");
    let cfg = config(
        EventInput::File(input.clone()),
        Workload::Query(0),
        ResultSink::Ndjson(output.clone()),
    );
    let outcome = run(&cfg).unwrap();
    assert_eq!(outcome.events, 5_000);
    assert_eq!((outcome.late, outcome.malformed), (0, 0));
    let expected = answer(0, &read_events(&input).unwrap(), 10_000);
    let got = ndjson(&output);
    assert_eq!(outcome.results, got.len() as u64);
    rows_equal(&got, &expected.rows).unwrap();
}

#[test]
fn generated_in_parallel_q0_equals_the_reference_over_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("q0.ndjson");
    let mut cfg = config(
        EventInput::Generate(small(3_000)),
        Workload::Query(0),
        ResultSink::Ndjson(output.clone()),
    );
    cfg.options.parallelism = 2;
    let outcome = run(&cfg).unwrap();
    assert_eq!(outcome.events, 3_000);
    let events: Vec<Event> = Generator::new(small(3_000)).collect();
    rows_equal(&ndjson(&output), &answer(0, &events, 10_000).rows).unwrap();
    let summary = outcome.summary(cfg.workload);
    assert_eq!((summary.query.as_str(), summary.events), ("q0", 3_000));
}

#[test]
fn the_generator_alone_counts_every_event() {
    let cfg = config(
        EventInput::Generate(small(2_500)),
        Workload::Events,
        ResultSink::Count,
    );
    let outcome = run(&cfg).unwrap();
    assert_eq!((outcome.events, outcome.results), (2_500, 2_500));
}

#[test]
fn malformed_lines_and_late_events_are_dead_lettered_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let events: Vec<Event> = Generator::new(small(200)).collect();
    let mut text = Vec::new();
    write_events(events.iter().cloned(), &mut text).unwrap();
    let mut lines: Vec<String> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // Line 3 is not JSON, line 6 blank (skipped, counted), line 9 an unknown kind.
    lines.insert(2, "{not json".into());
    lines.insert(5, String::new());
    lines.insert(8, r#"{"event_type":7}"#.into());
    // A bid 60 s before the rest: late under a 10 s bound, as the last line.
    let mut late = events[10].clone();
    if let Event::Bid(b) = &mut late {
        b.date_time -= 60_000;
    } else {
        panic!("event 10 is a bid");
    }
    lines.push(serde_json::to_string(&late).unwrap());
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let output = dir.path().join("q0.ndjson");
    let dead = dir.path().join("dead.ndjson");
    let mut cfg = config(
        EventInput::File(input.clone()),
        Workload::Query(0),
        ResultSink::Ndjson(output.clone()),
    );
    cfg.dead_letters = Some(dead.clone());
    let outcome = run(&cfg).unwrap();
    assert_eq!(
        (outcome.events, outcome.malformed, outcome.late),
        (201, 2, 1)
    );

    let mut dead_letters = ndjson(&dead);
    dead_letters.sort_by_key(|d| d["line"].as_u64().unwrap_or(u64::MAX));
    assert_eq!(dead_letters.len(), 3);
    assert_eq!(dead_letters[0]["line"], 3);
    assert_eq!(dead_letters[0]["raw"], "{not json");
    assert!(
        dead_letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("key must be a string"),
        "{}",
        dead_letters[0]
    );
    assert_eq!(dead_letters[1]["line"], 9);
    assert!(
        dead_letters[1]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown event_type 7"),
        "{}",
        dead_letters[1]
    );
    assert_eq!(dead_letters[2]["reason"], LATE_EVENT);

    // The results are the reference's over the good lines, which leaves the late bid out too.
    let mut good = events;
    good.push(late);
    let expected = answer(0, &good, 10_000);
    assert_eq!(expected.late, 1);
    rows_equal(&ndjson(&output), &expected.rows).unwrap();
}

#[test]
fn the_late_filter_keeps_an_event_exactly_the_delay_behind() {
    let mut f = LateFilter::new(100);
    assert!(!f.is_late(1_000));
    assert!(!f.is_late(900)); // exactly 100 behind
    assert!(f.is_late(899));
    assert!(!f.is_late(2_000));
    assert!(f.is_late(1_000)); // behind the new largest
}

#[test]
fn an_unbuilt_or_unknown_query_is_an_error_before_the_run() {
    let cfg = config(
        EventInput::Generate(small(10)),
        Workload::Query(6),
        ResultSink::Count,
    );
    assert!(matches!(
        run(&cfg),
        Err(RunFailure::Query(QueryError::Unknown(6)))
    ));
}

#[test]
fn process_cpu_time_is_known_and_grows() {
    let before = process_cpu_time().expect("Linux reports it");
    let mut x = 0u64;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(30) {
        x = x.wrapping_add(std::hint::black_box(1));
    }
    assert!(x > 0);
    assert!(process_cpu_time().unwrap() >= before);
}
