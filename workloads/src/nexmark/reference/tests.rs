use serde_json::json;

use super::*;

const B: i64 = 1_000_000; // a base time, a multiple of every window size

fn bid(auction: u64, bidder: u64, price: u64, t: i64) -> Event {
    Event::Bid(Bid {
        auction,
        bidder,
        price,
        channel: "Google".into(),
        url: "https://www.nexmark.com/x".into(),
        date_time: t,
        extra: format!("x{t}"),
        created_us: 0,
    })
}

fn person(id: u64, name: &str, state: &str, t: i64) -> Event {
    Event::Person(Person {
        id,
        name: name.into(),
        email_address: "a@b.com".into(),
        credit_card: "1234 5678 9012 3456".into(),
        city: format!("{name}ville"),
        state: state.into(),
        date_time: t,
        extra: String::new(),
    })
}

fn auction(id: u64, seller: u64, category: u64, t: i64, expires: i64) -> Event {
    Event::Auction(Auction {
        id,
        item_name: "item".into(),
        description: "desc".into(),
        initial_bid: 1,
        reserve: 2,
        date_time: t,
        expires,
        seller,
        category,
        extra: String::new(),
    })
}

fn check(query: u32, events: &[Event], expected: Vec<Value>) {
    let got = answer(query, events, 10_000);
    if let Err(e) = rows_equal(&got.rows, &expected) {
        panic!("q{query}: {e}");
    }
}

#[test]
fn an_event_more_than_the_delay_behind_an_earlier_one_is_late_and_left_out() {
    let events = [
        bid(1, 1, 10, B),
        bid(2, 1, 10, B + 20_000),
        bid(3, 1, 10, B + 9_999),  // 10 001 behind: late
        bid(4, 1, 10, B + 10_000), // exactly 10 000 behind: on time
        person(5, "p", "OR", B),   // late, whatever its kind
    ];
    let got = answer(2, &events, 10_000);
    assert_eq!(got.late, 2);
    let got = answer(0, &events, 10_000);
    let auctions: Vec<u64> = got
        .rows
        .iter()
        .map(|r| r["auction"].as_u64().unwrap())
        .collect();
    assert_eq!(auctions, [1, 2, 4]);
    assert_eq!(answer(0, &events, 20_000).late, 0);
}

#[test]
fn q0_q1_and_q2_pass_map_and_select_bids() {
    let events = [
        person(1, "p", "OR", B),
        bid(246, 7, 1000, B + 1),
        bid(247, 8, 3, B + 2),
    ];
    check(
        0,
        &events,
        vec![
            json!({"auction": 246, "bidder": 7, "price": 1000, "dateTime": B + 1, "extra": format!("x{}", B + 1)}),
            json!({"auction": 247, "bidder": 8, "price": 3, "dateTime": B + 2, "extra": format!("x{}", B + 2)}),
        ],
    );
    check(
        1,
        &events,
        vec![
            json!({"auction": 246, "bidder": 7, "price": 908.0, "dateTime": B + 1, "extra": format!("x{}", B + 1)}),
            json!({"auction": 247, "bidder": 8, "price": 2.724, "dateTime": B + 2, "extra": format!("x{}", B + 2)}),
        ],
    );
    check(2, &events, vec![json!({"auction": 246, "price": 1000})]);
}

#[test]
fn q3_joins_whichever_side_arrives_first_and_filters_both() {
    let events = [
        person(1, "Ann", "OR", B),
        auction(10, 1, 10, B + 1, B + 5), // after its seller
        auction(11, 2, 10, B + 2, B + 5), // before its seller
        person(2, "Bob", "CA", B + 3),
        auction(12, 1, 11, B + 4, B + 5), // another category
        person(3, "Cy", "WA", B + 5),
        auction(13, 3, 10, B + 6, B + 9), // seller in another state
        auction(14, 1, 10, B + 7, B + 9), // Ann's second
    ];
    check(
        3,
        &events,
        vec![
            json!({"name": "Ann", "city": "Annville", "state": "OR", "id": 10}),
            json!({"name": "Bob", "city": "Bobville", "state": "CA", "id": 11}),
            json!({"name": "Ann", "city": "Annville", "state": "OR", "id": 14}),
        ],
    );
}

#[test]
fn q4_takes_each_auctions_best_bid_within_its_time_and_averages_per_category() {
    let events = [
        bid(10, 1, 70, B + 1_000), // before its auction arrives, at its start: counts
        auction(10, 1, 10, B + 1_000, B + 2_000),
        bid(10, 1, 900, B + 999),   // before the start
        bid(10, 1, 800, B + 2_001), // after the end
        bid(10, 1, 50, B + 2_000),  // at the end: counts
        auction(11, 1, 10, B + 1_000, B + 3_000),
        bid(11, 1, 100, B + 1_500),
        auction(12, 1, 10, B + 1_000, B + 3_000), // no bid in time: not in the mean
        bid(12, 1, 5, B + 4_000),
        auction(13, 1, 11, B + 1_000, B + 3_000),
        bid(13, 1, 7, B + 1_000),
    ];
    check(
        4,
        &events,
        vec![
            json!({"category": 10, "avg": 85.0}),
            json!({"category": 11, "avg": 7.0}),
        ],
    );
}

#[test]
fn q5_keeps_every_tied_auction_and_a_window_ends_before_its_end_time() {
    let events = [bid(1, 1, 1, B), bid(2, 1, 1, B), bid(1, 1, 1, B + 10_000)];
    let mut expected = Vec::new();
    for k in 0..5 {
        let start = B - 8_000 + 2_000 * k; // the five windows holding B
        for a in [1, 2] {
            expected.push(json!({"auction": a, "num": 1, "window_start": start, "window_end": start + 10_000}));
        }
        let start = B + 2_000 + 2_000 * k; // the five holding B + 10 000
        expected.push(
            json!({"auction": 1, "num": 1, "window_start": start, "window_end": start + 10_000}),
        );
    }
    check(5, &events, expected);
    // One more bid on auction 2 at B + 9 999 breaks the tie in the windows holding both.
    let events = [bid(1, 1, 1, B), bid(2, 1, 1, B), bid(2, 1, 1, B + 9_999)];
    let got = answer(5, &events, 10_000).rows;
    let at_b: Vec<&Value> = got
        .iter()
        .filter(|r| r["window_start"] == json!(B))
        .collect();
    assert_eq!(
        at_b,
        [&json!({"auction": 2, "num": 2, "window_start": B, "window_end": B + 10_000})]
    );
}

#[test]
fn q7_keeps_every_bid_at_the_windows_highest_price() {
    let events = [
        bid(1, 1, 5, B),
        bid(2, 2, 9, B + 3),
        bid(3, 3, 9, B + 9_999),
        bid(4, 4, 1, B + 10_000), // the next window
    ];
    let row = |a: u64, bidder: u64, price: u64, t: i64| json!({"auction": a, "price": price, "bidder": bidder, "dateTime": t, "extra": format!("x{t}")});
    check(
        7,
        &events,
        vec![
            row(2, 2, 9, B + 3),
            row(3, 3, 9, B + 9_999),
            row(4, 4, 1, B + 10_000),
        ],
    );
}

#[test]
fn q8_pairs_registration_and_auction_in_one_window_once() {
    let events = [
        person(7, "Ann", "OR", B + 500),
        auction(1, 7, 10, B + 9_999, B + 20_000),
        auction(2, 7, 10, B + 9_000, B + 20_000), // a second auction: still one row
        person(8, "Bob", "OR", B + 9_999),
        auction(3, 8, 10, B + 10_000, B + 20_000), // the next window
        auction(4, 9, 10, B + 1, B + 20_000),      // a seller who did not register
        person(7, "Ann", "OR", B + 10_001),
        auction(5, 7, 10, B + 19_999, B + 30_000), // Ann again, in the next window
    ];
    check(
        8,
        &events,
        vec![
            json!({"id": 7, "name": "Ann", "starttime": B}),
            json!({"id": 7, "name": "Ann", "starttime": B + 10_000}),
        ],
    );
}

#[test]
fn q11_a_gap_of_exactly_ten_seconds_starts_a_new_session() {
    let events = [
        bid(1, 1, 1, B + 9_999),
        bid(1, 1, 1, B), // out of order, on time
        bid(1, 1, 1, B + 19_999),
        bid(1, 2, 1, B + 10_005),
    ];
    check(
        11,
        &events,
        vec![
            json!({"bidder": 1, "bid_count": 2, "starttime": B, "endtime": B + 19_999}),
            json!({"bidder": 1, "bid_count": 1, "starttime": B + 19_999, "endtime": B + 29_999}),
            json!({"bidder": 2, "bid_count": 1, "starttime": B + 10_005, "endtime": B + 20_005}),
        ],
    );
}

#[test]
fn rows_compare_as_multisets_with_floats_within_a_relative_tolerance() {
    let a = [
        json!({"k": 1, "v": 0.1 + 0.2}),
        json!({"k": 1, "v": 5.0}),
        json!({"k": 2, "v": 1e20}),
    ];
    let b = [
        json!({"v": 1e20 * (1.0 + 1e-12), "k": 2}),
        json!({"k": 1, "v": 0.3}),
        json!({"k": 1, "v": 5.0}),
    ];
    rows_equal(&a, &b).unwrap();
    let c = [
        json!({"k": 1, "v": 0.3}),
        json!({"k": 1, "v": 5.0}),
        json!({"k": 2, "v": 1.0001e20}),
    ];
    let err = rows_equal(&a, &c).unwrap_err();
    assert!(
        err.contains("1 only on the left, 1 only on the right"),
        "{err}"
    );
    assert!(err.contains("1e+20") && err.contains("1.0001e+20"), "{err}");
    // A duplicate counts.
    let err = rows_equal(&[json!({"k": 1}), json!({"k": 1})], &[json!({"k": 1})]).unwrap_err();
    assert!(err.starts_with("2 rows against 1"), "{err}");
    // Integers are exact.
    assert!(rows_equal(&[json!({"k": 1})], &[json!({"k": 2})]).is_err());
}
