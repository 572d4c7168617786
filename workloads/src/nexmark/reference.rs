//! Reference answers: every Nexmark query as a plain batch computation over a slice of events,
//! written from the queries' definitions alone, to check the pipelines against.
//!
//! [`answer`] takes the events in arrival (file) order and first applies the late rule: an
//! event is **late**, and left out of every query, iff its `dateTime` is below the largest
//! `dateTime` among the events before it minus `max_delay_ms`. The late count comes back with
//! the rows. Then each query is evaluated over the remaining events as a whole, with windows
//! epoch-aligned and end-exclusive (`[start, start + size)`):
//!
//! | query | rows (fields in order) |
//! |---|---|
//! | q0 | every bid: `auction, bidder, price, dateTime, extra` |
//! | q1 | every bid: `auction, bidder, price` (× 0.908, a float), `dateTime, extra` |
//! | q2 | bids with `auction % 123 == 0`: `auction, price` |
//! | q3 | each pair of an auction of category 10 and its seller, a person in `OR`, `ID` or `CA`, whatever their order of arrival: `name, city, state, id` (the auction's) |
//! | q4 | per category, the mean over its auctions (with at least one) of the highest price among the auction's bids with `dateTime` in `[auction.dateTime, auction.expires]`: `category, avg` |
//! | q5 | per sliding window (10 s every 2 s) over bids, each auction with the most bids in it: `auction, num, window_start, window_end` |
//! | q7 | per tumbling 10 s window over bids, each bid whose price is the window's highest: `auction, price, bidder, dateTime, extra` |
//! | q8 | each person who registered and created an auction (as seller) in the same tumbling 10 s window, once per window: `id, name, starttime` (the window's start; the name of the person's first registration in it) |
//! | q11 | per bidder, sessions of bids with gaps below 10 s (a gap of exactly 10 s starts a new session): `bidder, bid_count, starttime, endtime` (first bid's time, last bid's time + 10 s) |
//!
//! [`rows_equal`] compares two answers as multisets of rows, floats within a relative 1e-9.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::model::{Auction, Bid, Event, Person};

/// Window size of q5, q7, q8 and the session gap of q11, ms.
const TEN_S: i64 = 10_000;
/// q5's slide, ms.
const TWO_S: i64 = 2_000;

/// A query's reference result.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The result rows, one JSON object each, in no particular order.
    pub rows: Vec<Value>,
    /// Events left out as late.
    pub late: u64,
}

/// Query `query`'s rows over `events` in arrival order (see the [module docs](self)).
///
/// # Panics
///
/// If `query` is not one of 0–5, 7, 8, 11.
pub fn answer(query: u32, events: &[Event], max_delay_ms: i64) -> Answer {
    let (on_time, late) = drop_late(events, max_delay_ms);
    let bids = || {
        on_time.iter().filter_map(|e| match e {
            Ref::Bid(b) => Some(*b),
            _ => None,
        })
    };
    let rows = match query {
        0 => bids().map(q0_row).collect(),
        1 => bids().map(q1_row).collect(),
        2 => bids()
            .filter(|b| b.auction % 123 == 0)
            .map(|b| json!({"auction": b.auction, "price": b.price}))
            .collect(),
        3 => q3(&on_time),
        4 => q4(&on_time),
        5 => q5(bids()),
        7 => q7(bids()),
        8 => q8(&on_time),
        11 => q11(bids()),
        other => panic!("there is no Nexmark query {other}"),
    };
    Answer { rows, late }
}

/// The events that are not late, as kind-tagged references, and how many were late.
fn drop_late(events: &[Event], max_delay_ms: i64) -> (Vec<Ref<'_>>, u64) {
    let mut max_seen = i64::MIN;
    let mut late = 0;
    let mut on_time = Vec::with_capacity(events.len());
    for e in events {
        let t = e.date_time();
        if t < max_seen.saturating_sub(max_delay_ms) {
            late += 1;
            continue;
        }
        max_seen = max_seen.max(t);
        on_time.push(match e {
            Event::Person(p) => Ref::Person(p),
            Event::Auction(a) => Ref::Auction(a),
            Event::Bid(b) => Ref::Bid(b),
        });
    }
    (on_time, late)
}

/// An event by reference.
enum Ref<'a> {
    Person(&'a Person),
    Auction(&'a Auction),
    Bid(&'a Bid),
}

fn window_start(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

fn q0_row(b: &Bid) -> Value {
    json!({"auction": b.auction, "bidder": b.bidder, "price": b.price,
           "dateTime": b.date_time, "extra": b.extra})
}

fn q1_row(b: &Bid) -> Value {
    json!({"auction": b.auction, "bidder": b.bidder, "price": b.price as f64 * 0.908,
           "dateTime": b.date_time, "extra": b.extra})
}

fn q3(events: &[Ref<'_>]) -> Vec<Value> {
    let mut people: HashMap<u64, Vec<&Person>> = HashMap::new();
    for e in events {
        if let Ref::Person(p) = e {
            if matches!(p.state.as_str(), "OR" | "ID" | "CA") {
                people.entry(p.id).or_default().push(p);
            }
        }
    }
    let mut rows = Vec::new();
    for e in events {
        if let Ref::Auction(a) = e {
            if a.category != 10 {
                continue;
            }
            for p in people.get(&a.seller).into_iter().flatten() {
                rows.push(json!({"name": p.name, "city": p.city, "state": p.state, "id": a.id}));
            }
        }
    }
    rows
}

fn q4(events: &[Ref<'_>]) -> Vec<Value> {
    let mut bids_by_auction: HashMap<u64, Vec<&Bid>> = HashMap::new();
    for e in events {
        if let Ref::Bid(b) = e {
            bids_by_auction.entry(b.auction).or_default().push(b);
        }
    }
    // category → (sum of maxima, auctions with a maximum)
    let mut per_category: BTreeMap<u64, (u128, u64)> = BTreeMap::new();
    for e in events {
        if let Ref::Auction(a) = e {
            let best = bids_by_auction
                .get(&a.id)
                .into_iter()
                .flatten()
                .filter(|b| a.date_time <= b.date_time && b.date_time <= a.expires)
                .map(|b| b.price)
                .max();
            if let Some(best) = best {
                let s = per_category.entry(a.category).or_default();
                s.0 += u128::from(best);
                s.1 += 1;
            }
        }
    }
    per_category
        .into_iter()
        .map(|(category, (sum, n))| json!({"category": category, "avg": sum as f64 / n as f64}))
        .collect()
}

fn q5<'a>(bids: impl Iterator<Item = &'a Bid>) -> Vec<Value> {
    // window start → auction → bids
    let mut counts: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
    for b in bids {
        let mut start = window_start(b.date_time, TWO_S);
        while start > b.date_time - TEN_S {
            *counts
                .entry(start)
                .or_default()
                .entry(b.auction)
                .or_default() += 1;
            start -= TWO_S;
        }
    }
    let mut rows = Vec::new();
    for (start, by_auction) in counts {
        let most = by_auction.values().copied().max().unwrap_or(0);
        for (auction, num) in by_auction {
            if num == most {
                rows.push(json!({"auction": auction, "num": num,
                                 "window_start": start, "window_end": start + TEN_S}));
            }
        }
    }
    rows
}

fn q7<'a>(bids: impl Iterator<Item = &'a Bid> + Clone) -> Vec<Value> {
    let mut highest: HashMap<i64, u64> = HashMap::new();
    for b in bids.clone() {
        let h = highest.entry(window_start(b.date_time, TEN_S)).or_default();
        *h = (*h).max(b.price);
    }
    bids.filter(|b| highest[&window_start(b.date_time, TEN_S)] == b.price)
        .map(|b| {
            json!({"auction": b.auction, "price": b.price, "bidder": b.bidder,
                   "dateTime": b.date_time, "extra": b.extra})
        })
        .collect()
}

fn q8(events: &[Ref<'_>]) -> Vec<Value> {
    let mut sellers: BTreeSet<(i64, u64)> = BTreeSet::new();
    for e in events {
        if let Ref::Auction(a) = e {
            sellers.insert((window_start(a.date_time, TEN_S), a.seller));
        }
    }
    let mut registered: BTreeMap<(i64, u64), &str> = BTreeMap::new();
    for e in events {
        if let Ref::Person(p) = e {
            registered
                .entry((window_start(p.date_time, TEN_S), p.id))
                .or_insert(&p.name);
        }
    }
    registered
        .into_iter()
        .filter(|(key, _)| sellers.contains(key))
        .map(|((start, id), name)| json!({"id": id, "name": name, "starttime": start}))
        .collect()
}

fn q11<'a>(bids: impl Iterator<Item = &'a Bid>) -> Vec<Value> {
    let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut rows = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let mut start = ts[0];
        let mut last = ts[0];
        let mut count = 1u64;
        for &t in &ts[1..] {
            if t - last >= TEN_S {
                rows.push(json!({"bidder": bidder, "bid_count": count,
                                 "starttime": start, "endtime": last + TEN_S}));
                start = t;
                count = 0;
            }
            last = t;
            count += 1;
        }
        rows.push(json!({"bidder": bidder, "bid_count": count,
                         "starttime": start, "endtime": last + TEN_S}));
    }
    rows
}

// ---- comparing answers --------------------------------------------------------------------

/// Whether `a` and `b` hold the same rows, in any order, floats equal within a relative 1e-9
/// (and integers exactly).
///
/// # Errors
///
/// A readable account of the first difference: the row counts, and rows found on one side only.
pub fn rows_equal(a: &[Value], b: &[Value]) -> Result<(), String> {
    let mut left: Vec<(String, Vec<f64>, &Value)> = a.iter().map(keyed).collect();
    let mut right: Vec<(String, Vec<f64>, &Value)> = b.iter().map(keyed).collect();
    let order = |x: &(String, Vec<f64>, &Value), y: &(String, Vec<f64>, &Value)| {
        x.0.cmp(&y.0).then_with(|| {
            x.1.iter()
                .zip(&y.1)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    };
    left.sort_by(order);
    right.sort_by(order);
    let (mut i, mut j) = (0, 0);
    let mut only_left = Vec::new();
    let mut only_right = Vec::new();
    while i < left.len() && j < right.len() {
        let (l, r) = (&left[i], &right[j]);
        match l.0.cmp(&r.0) {
            std::cmp::Ordering::Less => {
                only_left.push(l.2);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                only_right.push(r.2);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if l.1.len() == r.1.len() && l.1.iter().zip(&r.1).all(|(p, q)| close(*p, *q)) {
                    i += 1;
                    j += 1;
                } else if order(l, r).is_lt() {
                    only_left.push(l.2);
                    i += 1;
                } else {
                    only_right.push(r.2);
                    j += 1;
                }
            }
        }
    }
    only_left.extend(left[i..].iter().map(|x| x.2));
    only_right.extend(right[j..].iter().map(|x| x.2));
    if only_left.is_empty() && only_right.is_empty() {
        return Ok(());
    }
    let show = |rows: &[&Value]| {
        rows.iter()
            .take(3)
            .map(|r| format!("\n    {r}"))
            .collect::<String>()
    };
    Err(format!(
        "{} rows against {}; {} only on the left, {} only on the right\n  first only on the left:{}\n  first only on the right:{}",
        a.len(),
        b.len(),
        only_left.len(),
        only_right.len(),
        show(&only_left),
        show(&only_right)
    ))
}

fn close(p: f64, q: f64) -> bool {
    p == q || (p - q).abs() <= 1e-9 * p.abs().max(q.abs())
}

/// A row's canonical text with its floats left out (object keys sorted, each float written as
/// `#`), and its floats in order.
fn keyed(row: &Value) -> (String, Vec<f64>, &Value) {
    let mut key = String::new();
    let mut floats = Vec::new();
    canonical(row, &mut key, &mut floats);
    (key, floats, row)
}

fn canonical(v: &Value, key: &mut String, floats: &mut Vec<f64>) {
    match v {
        Value::Number(n) if n.is_f64() => {
            key.push('#');
            floats.push(n.as_f64().unwrap_or(f64::NAN));
        }
        Value::Array(items) => {
            key.push('[');
            for item in items {
                canonical(item, key, floats);
                key.push(',');
            }
            key.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|x, y| x.0.cmp(y.0));
            key.push('{');
            for (k, item) in entries {
                key.push_str(&Value::String(k.clone()).to_string());
                key.push(':');
                canonical(item, key, floats);
                key.push(',');
            }
            key.push('}');
        }
        other => key.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests;
