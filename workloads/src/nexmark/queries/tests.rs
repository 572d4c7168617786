//! Each query on small hand-made event lists, against answers worked out by hand, and on
//! generated events, against the [`reference`](crate::nexmark::reference): sorted by time and
//! out of order within the watermark's delay, with one and two instances.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use weir_operators::prelude::*;
use weir_runtime::WatermarkStrategy;

use super::{event_time, QueryOptions};
use crate::nexmark::{Auction, Bid, Event, Person};

/// A window-aligned base time: a multiple of 10 s.
const T: i64 = 1_700_000_000_000;

fn person(id: u64, state: &str, t: i64) -> Event {
    Event::Person(Person {
        id,
        name: format!("name{id}"),
        email_address: format!("p{id}@example.com"),
        credit_card: "1234 5678 9012 3456".into(),
        city: format!("city{id}"),
        state: state.into(),
        date_time: t,
        extra: "x".repeat(8),
    })
}

fn auction(id: u64, seller: u64, category: u64, t: i64, expires: i64) -> Event {
    Event::Auction(Auction {
        id,
        item_name: format!("item{id}"),
        description: "d".into(),
        initial_bid: 1,
        reserve: 2,
        date_time: t,
        expires,
        seller,
        category,
        extra: String::new(),
    })
}

fn bid(auction: u64, bidder: u64, price: u64, t: i64) -> Event {
    Event::Bid(Bid {
        auction,
        bidder,
        price,
        channel: "Google".into(),
        url: "https://example.com".into(),
        date_time: t,
        extra: format!("e{price}"),
        created_us: 0,
    })
}

/// Runs a query on `events` (watermarks `delay_ms` behind the largest time seen, batches of 3
/// rows so watermarks interleave with data) and returns its rows as JSON, sorted.
fn run<R>(
    events: Vec<Event>,
    delay_ms: u64,
    parallelism: usize,
    build: fn(Stream<Event>, &QueryOptions) -> Stream<R>,
) -> Vec<Value>
where
    R: Serialize + Data + Clone,
{
    let config = PipelineConfig {
        batch_rows: 3,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("nexmark-query", config);
    let events = p.source("events", IterSource::new(events)).with_watermarks(
        WatermarkStrategy::bounded(Duration::from_millis(delay_ms)).timestamps(event_time),
    );
    let rows = build(
        events,
        &QueryOptions {
            parallelism,
            max_delay_ms: delay_ms as i64,
        },
    )
    .collect("rows");
    let report = p.run().expect("the query runs");
    for op in &report.operators {
        assert_eq!(op.dead_letters, 0, "{report}");
        // Everything but the regular join is freed behind the watermark, +∞ at the end.
        if op.name != "q3.join" {
            assert_eq!(op.state_bytes, 0, "`{}` holds state: {report}", op.name);
        }
    }
    let mut rows: Vec<Value> = rows
        .take()
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::to_value(r).expect("a row serializes"))
        .collect();
    rows.sort_by_key(|r| r.to_string());
    rows
}

/// Checks `build` on `events` sorted by time (watermarks right behind them), and as given and
/// reversed (out of order, watermarks a minute behind), with one and two instances.
fn check<R>(
    events: Vec<Event>,
    build: fn(Stream<Event>, &QueryOptions) -> Stream<R>,
    mut expected: Vec<Value>,
) where
    R: Serialize + Data + Clone,
{
    expected.sort_by_key(|r| r.to_string());
    let mut sorted = events.clone();
    sorted.sort_by_key(Event::date_time);
    let mut reversed = events.clone();
    reversed.reverse();
    for parallelism in [1, 2] {
        let runs = [
            ("sorted", sorted.clone(), 0),
            ("as given", events.clone(), 60_000),
            ("reversed", reversed.clone(), 60_000),
        ];
        for (order, events, delay_ms) in runs {
            assert_eq!(
                run(events, delay_ms, parallelism, build),
                expected,
                "{order}, parallelism {parallelism}"
            );
        }
    }
}

#[test]
fn q1_converts_every_bid_and_only_bids() {
    let events = vec![
        person(1, "OR", T),
        bid(7, 1, 1000, T + 1),
        auction(7, 1, 10, T + 2, T + 100),
        bid(8, 2, 5, T + 3),
    ];
    check(
        events,
        super::q1::build,
        vec![
            json!({"auction": 7, "bidder": 1, "price": 1000.0 * 0.908, "dateTime": T + 1, "extra": "e1000"}),
            json!({"auction": 8, "bidder": 2, "price": 5.0 * 0.908, "dateTime": T + 3, "extra": "e5"}),
        ],
    );
}

#[test]
fn q2_keeps_bids_on_multiples_of_123() {
    let events = vec![
        bid(123, 1, 10, T),
        bid(124, 1, 11, T + 1),
        bid(246, 2, 12, T + 2),
        bid(0, 3, 13, T + 3),
    ];
    check(
        events,
        super::q2::build,
        vec![
            json!({"auction": 123, "price": 10}),
            json!({"auction": 246, "price": 12}),
            json!({"auction": 0, "price": 13}),
        ],
    );
}

#[test]
fn q3_joins_selected_sellers_once_whichever_side_comes_first() {
    let events = vec![
        person(1, "OR", T),
        auction(10, 1, 10, T + 1, T + 10),
        auction(11, 2, 10, T + 2, T + 10), // before its seller
        person(2, "CA", T + 3),
        auction(12, 1, 9, T + 4, T + 10), // other category
        person(3, "WA", T + 5),
        auction(13, 3, 10, T + 6, T + 10), // other state
        auction(14, 1, 10, T + 7, T + 10),
        person(4, "ID", T + 8),
    ];
    let row = |name: &str, city: &str, state: &str, id: u64| json!({"name": name, "city": city, "state": state, "id": id});
    check(
        events,
        super::q3::build,
        vec![
            row("name1", "city1", "OR", 10),
            row("name2", "city2", "CA", 11),
            row("name1", "city1", "OR", 14),
        ],
    );
}

#[test]
fn q4_averages_winning_bids_within_each_auction_per_category() {
    let events = vec![
        auction(100, 1, 1, T, T + 1_000),
        bid(100, 5, 500, T + 10),
        bid(101, 5, 300, T + 150), // before its auction arrives, inside its window
        bid(101, 5, 999, T + 50),  // before its auction opened
        auction(101, 1, 1, T + 100, T + 200),
        bid(100, 6, 700, T + 500),
        bid(100, 6, 900, T + 2_000),          // after it expired
        bid(101, 6, 250, T + 200),            // at `expires`: counts
        auction(102, 2, 2, T + 300, T + 400), // no bid
        auction(103, 2, 2, T + 300, T + 400),
        bid(103, 7, 40, T + 300),   // at `dateTime`: counts
        bid(104, 7, 77, T + 3_000), // no such auction
    ];
    check(
        events,
        super::q4::build,
        vec![
            json!({"category": 1, "avg": 500.0}),
            json!({"category": 2, "avg": 40.0}),
        ],
    );
}

#[test]
fn q5_reports_every_auction_tied_at_the_top_of_each_sliding_window() {
    let events = vec![
        bid(1, 9, 1, T + 1_000),
        bid(2, 9, 1, T + 1_000),
        bid(1, 9, 1, T + 1_999),
        bid(2, 9, 1, T + 1_500),
        bid(3, 9, 1, T + 9_000),
    ];
    let row = |auction: u64, num: u64, start: i64| json!({"auction": auction, "num": num, "window_start": start, "window_end": start + 10_000});
    let mut expected = Vec::new();
    // The windows holding T + 1 s (and T + 1.999 s) start at T − 8 s, …, T.
    for start in (-8_000..=0).step_by(2_000) {
        expected.push(row(1, 2, T + start));
        expected.push(row(2, 2, T + start));
    }
    // Those holding T + 9 s and not T + 1 s start at T + 2 s, …, T + 8 s.
    for start in (2_000..=8_000).step_by(2_000) {
        expected.push(row(3, 1, T + start));
    }
    check(events, super::q5::build, expected);
}

#[test]
fn q7_returns_every_bid_at_its_windows_highest_price() {
    let events = vec![
        bid(1, 1, 5, T),
        bid(2, 2, 9, T + 3_000),
        bid(3, 3, 3, T + 4_000),
        bid(4, 4, 9, T + 9_999),
        bid(5, 5, 4, T + 10_000), // the next window
        bid(6, 6, 1, T + 12_000),
    ];
    let row = |auction: u64, price: u64, t: i64| json!({"auction": auction, "price": price, "bidder": auction, "dateTime": t, "extra": format!("e{price}")});
    check(
        events,
        super::q7::build,
        vec![
            row(2, 9, T + 3_000),
            row(4, 9, T + 9_999),
            row(5, 4, T + 10_000),
        ],
    );
}

#[test]
fn q8_names_each_new_seller_once_per_window() {
    let events = vec![
        person(1, "OR", T + 1_000),
        auction(10, 1, 1, T + 2_000, T + 5_000),
        auction(11, 1, 1, T + 3_000, T + 5_000), // a second auction: still one row
        person(2, "OR", T + 9_999),
        auction(12, 2, 1, T + 10_000, T + 15_000), // the next window
        auction(13, 3, 1, T + 12_000, T + 15_000), // before its seller registered
        person(3, "CA", T + 15_000),
        auction(14, 4, 1, T + 16_000, T + 18_000), // no such person
    ];
    check(
        events,
        super::q8::build,
        vec![
            json!({"id": 1, "name": "name1", "starttime": T}),
            json!({"id": 3, "name": "name3", "starttime": T + 10_000}),
        ],
    );
}

#[test]
fn q11_closes_a_session_after_a_gap_of_exactly_ten_seconds() {
    let events = vec![
        bid(1, 1, 1, T),
        bid(1, 2, 1, T + 1_000),
        bid(1, 1, 1, T + 5_000),
        bid(1, 1, 1, T + 15_000), // exactly last + gap: a new session
        bid(1, 2, 1, T + 30_000),
    ];
    let row = |bidder: u64, n: u64, start: i64, last: i64| json!({"bidder": bidder, "bid_count": n, "starttime": start, "endtime": last + 10_000});
    check(
        events,
        super::q11::build,
        vec![
            row(1, 2, T, T + 5_000),
            row(1, 1, T + 15_000, T + 15_000),
            row(2, 1, T + 1_000, T + 1_000),
            row(2, 1, T + 30_000, T + 30_000),
        ],
    );
}

/// Generated events run through `weir nexmark`'s pipeline ([`run`](crate::nexmark::run)),
/// compared with the reference answer over the same events.
mod against_the_reference {
    use std::path::Path;

    use serde_json::Value;

    use crate::nexmark::io::{read_events, write_events, write_generated};
    use crate::nexmark::queries::{QueryOptions, ResultSink};
    use crate::nexmark::reference::{answer, rows_equal};
    use crate::nexmark::run::{run, EventInput, RunConfig, Workload};
    use crate::nexmark::{Event, GeneratorConfig};

    /// Events at 2 000 per second of event time (so 10 s windows each hold thousands and
    /// close during the run), with the generator's default disorder (10 % of events up to
    /// 3 s late), and more skew than the default so that windows have clear winners and ties.
    fn generated(events: u64) -> GeneratorConfig {
        GeneratorConfig {
            events,
            event_rate: 2_000,
            hot_auction_ratio: 10,
            ..GeneratorConfig::default()
        }
    }

    /// The watermark's delay: above the generator's 3 s, so nothing is late.
    const DELAY_MS: i64 = 4_000;

    fn ndjson(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("the results file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect()
    }

    /// Runs `query` on `input` and returns its rows, checking that no event was late.
    fn rows(query: u32, input: EventInput, parallelism: usize, out: &Path) -> Vec<Value> {
        let cfg = RunConfig {
            input,
            workload: Workload::Query(query),
            options: QueryOptions {
                parallelism,
                max_delay_ms: DELAY_MS,
            },
            output: ResultSink::Ndjson(out.to_path_buf()),
            dead_letters: None,
            edge_target_time: None,
        };
        let outcome = run(&cfg).expect("the query runs");
        assert_eq!((outcome.late, outcome.malformed), (0, 0), "q{query}");
        let rows = ndjson(out);
        assert_eq!(outcome.results, rows.len() as u64, "q{query}");
        rows
    }

    /// q`query` over a generated file (out of order), over the same events sorted by time,
    /// and generated by two instances with two instances of every stage: each equals the
    /// reference, which is not empty.
    fn check(query: u32, events: u64) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (shuffled, sorted) = (dir.path().join("events"), dir.path().join("sorted"));
        let cfg = generated(events);
        write_generated(&cfg, &shuffled).expect("events written");
        let mut events: Vec<Event> = read_events(&shuffled).expect("events read");
        let expected = answer(query, &events, DELAY_MS);
        assert_eq!(expected.late, 0);
        assert!(
            !expected.rows.is_empty(),
            "q{query}: an empty answer checks nothing"
        );
        assert!(
            events
                .windows(2)
                .any(|w| w[1].date_time() < w[0].date_time()),
            "the generated events are out of order"
        );
        events.sort_by_key(Event::date_time);
        let file = std::fs::File::create(&sorted).expect("the sorted file");
        write_events(events, file).expect("sorted events written");
        let out = dir.path().join("rows");
        let runs = [
            ("out of order", EventInput::File(shuffled), 1),
            ("sorted", EventInput::File(sorted), 1),
            ("generated by two instances", EventInput::Generate(cfg), 2),
        ];
        for (what, input, parallelism) in runs {
            let got = rows(query, input, parallelism, &out);
            if let Err(diff) = rows_equal(&got, &expected.rows) {
                panic!("q{query}, {what}, parallelism {parallelism}: {diff}");
            }
        }
    }

    #[test]
    fn q1() {
        check(1, 2_000);
    }

    #[test]
    fn q2() {
        check(2, 20_000);
    }

    #[test]
    fn q3() {
        check(3, 20_000);
    }

    #[test]
    fn q4() {
        check(4, 20_000);
    }

    #[test]
    fn q5() {
        check(5, 20_000);
    }

    #[test]
    fn q7() {
        check(7, 20_000);
    }

    #[test]
    fn q8() {
        check(8, 20_000);
    }

    #[test]
    fn q11() {
        check(11, 20_000);
    }
}
