//! The README's "Event time" listing is the body of the test below, verbatim, and it runs.

mod common;

const README: &str = include_str!("../README.md");
const THIS: &str = include_str!("readme_event_time.rs");

#[test]
fn the_readme_listing_is_this_test() {
    assert_eq!(
        common::readme_listing(README, "## Event time"),
        common::marked_body(THIS),
        "copy the test's marked lines into the README"
    );
}

#[test]
fn event_time_listing() -> Result<(), weir::RunError> {
    // README: begin
    use std::time::Duration;
    use weir::prelude::*;
    use weir::runtime::{EventTimeState, Timestamp, WatermarkStrategy};

    #[derive(Clone, HeapSize)]
    struct Order {
        id: u64,
        ts: i64,
    }

    let mut p = Pipeline::new("orders");
    let orders = p
        .source(
            "orders",
            Generator::new(100_000, |i| Order {
                id: i,
                ts: 1_000 * i as i64,
            }),
        )
        .with_watermarks(
            WatermarkStrategy::bounded(Duration::from_secs(3)) // rows up to 3 s out of order
                .timestamps(|o: &Order| Timestamp(o.ts))
                .idle_timeout(Duration::from_secs(30)), // nothing to read for 30 s: idle
        );
    let n = orders.map("id", |o| o.id).count("count");
    let report = p.run()?;
    assert_eq!(n.take(), Some(100_000));
    let source = &report.operators[0].instances[0];
    assert_eq!(source.watermark, Some(i64::MAX)); // +∞ at the end: every window closes
    assert_eq!(
        source.event_time.as_ref().map(|e| e.state),
        Some(EventTimeState::Ended)
    );
    // The report ends with "event time: `orders` #0 ended, watermark +∞".
    println!("{report}");
    // README: end
    Ok(())
}
