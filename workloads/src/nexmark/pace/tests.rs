use std::path::Path;

use serde_json::Value;

use super::*;
use crate::nexmark::generator::Generator;
use crate::nexmark::queries::{QueryOptions, ResultSink};
use crate::nexmark::reference::{answer, rows_equal};
use crate::nexmark::run::{run, EventInput, RunConfig, Workload};

/// A 10 s-aligned start.
const START_MS: i64 = 1_700_000_000_000;
const US: i64 = 1000;

/// 1 000 events per second (one per ms), 100 000 of them, the watermark 4 s behind.
fn timing(rate: u64) -> Timing {
    let pace = Pace {
        rate,
        start_ms: START_MS,
        anchor: Instant::now(),
    };
    let generator = GeneratorConfig {
        events: 100_000,
        ..GeneratorConfig::default()
    };
    Timing::new(pace, generator, 4_000)
}

#[test]
fn events_are_due_at_start_plus_n_over_the_rate() {
    let t = timing(1_000);
    let pace = t.pace;
    assert_eq!(pace.released(pace.anchor - Duration::from_micros(1)), 0);
    assert_eq!(pace.released(pace.anchor), 1, "event 0 is due at the start");
    for n in [1, 7, 999, 100_000] {
        assert_eq!(pace.due(n), pace.anchor + Duration::from_millis(n));
        assert_eq!(pace.released(pace.due(n)), n + 1);
        assert_eq!(pace.released(pace.due(n) - Duration::from_nanos(1)), n);
    }
    assert_eq!(
        pace.wall_us(pace.anchor + Duration::from_micros(1_500)),
        START_MS * US + 1_500
    );
    assert_eq!(
        pace.wall_us(pace.anchor - Duration::from_micros(1_500)),
        START_MS * US - 1_500
    );
    // The generator runs on the same clock: event n is created, and (undelayed) timed, at n ms.
    assert_eq!(t.generator.base_time_ms, START_MS);
    assert_eq!(t.generator.event_rate, 1_000);
    assert_eq!(t.created_us(12_345), (START_MS + 12_345) * US);
    assert_eq!(t.generator.event_time(12_345), START_MS + 12_345);
}

#[test]
fn every_generated_event_is_created_when_it_is_due_whatever_its_date_time() {
    let t = timing(3_000);
    let mut delayed = 0;
    for (n, e) in Generator::new(t.generator.clone()).take(5_000).enumerate() {
        let due = t.pace.wall_us(t.pace.due(n as u64));
        assert!((e.created_us(&t) - due).abs() <= 1, "event {n}: {e:?}");
        assert_eq!(e.created_us(&t), t.created_us(n as u64), "event {n}");
        if e.date_time() * US < e.created_us(&t) - US {
            delayed += 1;
        }
    }
    assert!(
        delayed > 100,
        "delayed events are measured from when they were due"
    );
}

#[test]
fn a_rows_latency_counts_from_the_input_that_made_it_final() {
    let t = timing(1_000);
    let at = |ms: i64| (START_MS + ms) * US;
    // A bid's row: the bid itself.
    let q0 = Q0 {
        auction: 1,
        bidder: 2,
        price: 3,
        date_time: START_MS + 5,
        extra: String::new(),
        created_us: at(3_005),
    };
    assert_eq!(
        q0.created_us(&t),
        at(3_005),
        "a delayed bid: its creation, not its time"
    );
    // A join: the later of auction 1005 (event 53) and person 1002 (event 100).
    let q3 = |id, seller| Q3 {
        name: String::new(),
        city: String::new(),
        state: String::new(),
        id,
        seller,
    };
    assert_eq!(q3(1_005, 1_002).created_us(&t), at(100));
    assert_eq!(q3(1_005, 1_000).created_us(&t), at(53));
    // Windows: closed by the first event at or after end + 4 s + 1 ms.
    let end = START_MS + 20_000;
    let q5 = Q5 {
        auction: 1,
        num: 1,
        window_start: end - 10_000,
        window_end: end,
    };
    assert_eq!(q5.created_us(&t), at(24_001));
    let q7 = Q7 {
        auction: 1,
        price: 1,
        bidder: 1,
        date_time: START_MS + 12_345,
        extra: String::new(),
    };
    assert_eq!(q7.created_us(&t), at(24_001), "q7's window is its bid's");
    let q8 = Q8 {
        id: 1,
        name: String::new(),
        starttime: START_MS + 10_000,
    };
    assert_eq!(q8.created_us(&t), at(24_001));
    let q11 = |endtime| Q11 {
        bidder: 1,
        bid_count: 1,
        starttime: endtime - 10_000,
        endtime,
    };
    assert_eq!(q11(START_MS + 10_123).created_us(&t), at(14_124));
    // A window the watermark never passes closes at the end of the input (event 99 999).
    assert_eq!(q11(START_MS + 99_000).created_us(&t), at(99_999));
    // q4's means are final at the end of the input.
    let q4 = Q4 {
        category: 10,
        avg: 1.0,
    };
    assert_eq!(q4.created_us(&t), at(99_999));
}

#[test]
fn a_window_closes_with_the_first_event_that_moves_the_watermark_past_its_end() {
    // At 3 000 events per second, event times do not fall on every millisecond: check the
    // closed form against a search over the events' undelayed times.
    let t = timing(3_000);
    for end_ms in [0, 1, 2, 999, 10_000, 12_347] {
        let need = START_MS + end_ms + t.max_delay_ms + 1;
        let n = (0..).find(|&n| t.generator.event_time(n) >= need).unwrap();
        assert_eq!(
            t.closed_us(START_MS + end_ms),
            t.created_us(n),
            "end {end_ms}"
        );
    }
}

#[test]
fn the_histogram_reports_percentiles_to_a_sixteenth_and_the_exact_max() {
    let mut h = Histogram::default();
    assert_eq!(LatencySummary::of(&h), None);
    for us in 1..=10_000 {
        h.record(us);
    }
    assert_eq!(h.len(), 10_000);
    for (q, exact) in [(0.5, 5_000), (0.99, 9_900)] {
        let got = h.quantile(q);
        assert!(got >= exact && got <= exact + exact / 16, "q {q}: {got}");
    }
    assert_eq!(h.quantile(1.0), 10_000);
    assert_eq!(h.max(), 10_000);
    let mut small = Histogram::default();
    for us in [0, 3, 3, 15] {
        small.record(us);
    }
    assert_eq!((small.quantile(0.5), small.quantile(0.75)), (3, 3));
    assert_eq!(small.quantile(1.0), 15);
    let s = LatencySummary::of(&h).unwrap();
    assert_eq!((s.rows, s.max_ms), (10_000, 10.0));
}

fn ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each query, paced (200 000 events per wall-second: 20 000 events in a tenth of a second)
/// and then unpaced over the very events the paced run made, equals the reference over them.
#[test]
fn paced_runs_give_the_reference_answer_and_measure_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let generator = GeneratorConfig {
        events: 20_000,
        hot_auction_ratio: 10,
        ..GeneratorConfig::default()
    };
    for (query, parallelism) in [
        (0, 1),
        (2, 2),
        (3, 1),
        (4, 1),
        (5, 2),
        (7, 1),
        (8, 1),
        (11, 1),
    ] {
        let cfg = |input| RunConfig {
            input,
            workload: Workload::Query(query),
            options: QueryOptions {
                parallelism,
                max_delay_ms: 4_000,
            },
            output: ResultSink::Ndjson(out.clone()),
            dead_letters: None,
            edge_target_time: None,
        };
        let paced = run(&cfg(EventInput::Paced {
            generator: generator.clone(),
            rate: 200_000,
        }))
        .unwrap();
        let paced_rows = ndjson(&out);
        let t = paced.timing.clone().expect("a paced run has its timing");
        assert_eq!(t.generator.event_rate, 200_000);
        let events: Vec<Event> = Generator::new(t.generator.clone()).collect();
        let expected = answer(query, &events, 4_000);
        assert_eq!((paced.events, paced.late, expected.late), (20_000, 0, 0));
        if let Err(diff) = rows_equal(&paced_rows, &expected.rows) {
            panic!("q{query}, paced: {diff}");
        }
        let latency = paced.latency.map_or(0, |l| l.rows);
        assert_eq!(latency, paced.results, "q{query}: every row measured");
        let summary = paced.summary(Workload::Query(query));
        assert_eq!(summary.latency_p99_ms.is_some(), paced.results > 0);

        let unpaced = run(&cfg(EventInput::Generate(t.generator.clone()))).unwrap();
        if let Err(diff) = rows_equal(&ndjson(&out), &expected.rows) {
            panic!("q{query}, unpaced: {diff}");
        }
        assert_eq!(unpaced.latency, None);
        assert_eq!(unpaced.summary(Workload::Query(query)).latency_p50_ms, None);
    }
}
