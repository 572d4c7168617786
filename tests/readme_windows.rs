//! The README's "Windows, joins and timers" listing is the body of the test below, verbatim, and
//! it runs.

mod common;

const README: &str = include_str!("../README.md");
const THIS: &str = include_str!("readme_windows.rs");

#[test]
fn the_readme_listing_is_this_test() {
    assert_eq!(
        common::readme_listing(README, "## Windows, joins and timers"),
        common::marked_body(THIS),
        "copy the test's marked lines into the README"
    );
}

#[test]
fn windows_listing() -> Result<(), weir::RunError> {
    // README: begin
    use std::time::Duration;
    use weir::operators::join::IntervalBounds;
    use weir::operators::keyed::aggregate::Count;
    use weir::prelude::*;
    use weir::runtime::WatermarkStrategy;

    // Rows a join keeps are serializable: checkpoints store them.
    #[derive(Clone, HeapSize, serde::Serialize, serde::Deserialize)]
    struct Auction {
        id: u64,
        opened: i64, // event time, ms
    }
    #[derive(Clone, HeapSize, serde::Serialize, serde::Deserialize)]
    struct Bid {
        auction: u64,
        at: i64, // event time, ms
    }

    let mut p = Pipeline::new("auctions");
    let auctions = p
        .source(
            "auctions",
            Generator::new(100, |i| Auction {
                id: i,
                opened: 1_000 * i as i64,
            }),
        )
        .with_watermarks(
            WatermarkStrategy::bounded(Duration::from_millis(50))
                .timestamps(|a: &Auction| Timestamp(a.opened)),
        );
    let bids = p
        .source(
            "bids",
            Generator::new(10_000, |i| Bid {
                auction: i % 100,
                at: 10 * i as i64,
            }),
        )
        .with_watermarks(
            WatermarkStrategy::bounded(Duration::from_millis(50))
                .timestamps(|b: &Bid| Timestamp(b.at)),
        );

    // Bids per auction in tumbling one-second windows of event time. A window fires when the
    // watermark reaches its end; a row for a window already gone comes out of `late`, counted.
    let (per_second, late) = bids
        .clone()
        .key_by(|b: &Bid| b.auction)
        .window(Tumbling::of(Duration::from_secs(1)), |b: &Bid| {
            Timestamp(b.at)
        })
        .aggregate_with_late("bids_per_second", Count::new());
    let windows = per_second.collect("windows");
    let late = late.count("late");

    // Each auction with the bids made in its first second: `opened ∈ [at − 1000, at]`.
    let first_bids = auctions
        .join(bids)
        .on(|a: &Auction| a.id, |b: &Bid| b.auction)
        .interval(
            "first_second",
            IntervalBounds::new(-1_000, 0),
            |a: &Auction| Timestamp(a.opened),
            |b: &Bid| Timestamp(b.at),
        )
        .count("first_bids");

    p.run()?;
    let windows: Vec<Windowed<u64, u64>> = windows.take().unwrap_or_default();
    assert_eq!(windows.iter().map(|w| w.value).sum::<u64>(), 10_000);
    assert!(windows.iter().all(|w| w.end.0 - w.start.0 == 1_000));
    assert_eq!(late.take(), Some(0)); // in order within the bound: nothing late
    let expected = (0..100i64)
        .flat_map(|a| (0..10_000i64).map(move |b| (a, b)))
        .filter(|&(a, b)| b % 100 == a && (10 * b - 1_000..=10 * b).contains(&(1_000 * a)))
        .count() as u64;
    assert_eq!(first_bids.take(), Some(expected));
    // README: end
    Ok(())
}
