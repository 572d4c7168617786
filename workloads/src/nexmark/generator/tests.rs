use std::collections::HashMap;

use super::*;

fn cfg(events: u64) -> GeneratorConfig {
    GeneratorConfig {
        events,
        ..GeneratorConfig::default()
    }
}

#[test]
fn every_group_of_fifty_is_one_person_three_auctions_and_46_bids() {
    let events: Vec<Event> = Generator::new(cfg(50 * 40)).collect();
    for (g, group) in events.chunks(50).enumerate() {
        let kinds: Vec<u8> = group.iter().map(Event::event_type).collect();
        assert_eq!(kinds[0], 0, "group {g}");
        assert_eq!(&kinds[1..4], &[1, 1, 1], "group {g}");
        assert!(kinds[4..].iter().all(|&k| k == 2), "group {g}");
    }
    // Own ids are consecutive from 1000.
    let people: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some(p.id),
            _ => None,
        })
        .collect();
    assert_eq!(people, (1000..1040).collect::<Vec<_>>());
    let auctions: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some(a.id),
            _ => None,
        })
        .collect();
    assert_eq!(auctions, (1000..1120).collect::<Vec<_>>());
}

#[test]
fn event_time_advances_by_the_rate_without_drift() {
    let c = GeneratorConfig {
        event_rate: 10_000_000,
        ..cfg(0)
    };
    assert_eq!(c.event_time(0), c.base_time_ms);
    assert_eq!(c.event_time(9_999), c.base_time_ms);
    assert_eq!(c.event_time(10_000), c.base_time_ms + 1);
    assert_eq!(c.event_time(100_000_000), c.base_time_ms + 10_000);
    let slow = GeneratorConfig {
        event_rate: 3,
        ..cfg(0)
    };
    assert_eq!(slow.event_time(1), slow.base_time_ms + 333);
    assert_eq!(slow.event_time(2), slow.base_time_ms + 666);
    assert_eq!(slow.event_time(3), slow.base_time_ms + 1000);
}

#[test]
fn delays_are_bounded_and_about_one_in_ten() {
    let c = GeneratorConfig {
        event_rate: 1000, // one event per millisecond, so delays are visible
        ..cfg(20_000)
    };
    let mut delayed = 0;
    let mut max_seen = i64::MIN;
    for (n, e) in Generator::new(c.clone()).enumerate() {
        let created = c.event_time(n as u64);
        let lag = created - e.date_time();
        assert!((0..=c.max_delay_ms).contains(&lag), "event {n}: lag {lag}");
        delayed += usize::from(lag > 0);
        // Never more than max_delay_ms behind any event created before it.
        assert!(
            e.date_time() >= max_seen.saturating_sub(c.max_delay_ms),
            "event {n}"
        );
        max_seen = max_seen.max(e.date_time());
    }
    let fraction = delayed as f64 / 20_000.0;
    assert!((0.09..0.11).contains(&fraction), "{fraction}");
}

#[test]
fn split_instances_make_up_the_whole_stream() {
    let c = cfg(1_003);
    let whole: Vec<Event> = Generator::new(c.clone()).collect();
    let mut union: Vec<(usize, Event)> = Vec::new();
    for i in 0..3u64 {
        let part = Generator::split(c.clone(), i, 3);
        assert_eq!(part.len(), (1_003 - i as usize).div_ceil(3));
        union.extend(part.enumerate().map(|(k, e)| (i as usize + 3 * k, e)));
    }
    union.sort_by_key(|(n, _)| *n);
    assert_eq!(union.len(), whole.len());
    for ((n, e), w) in union.iter().zip(&whole) {
        assert_eq!(e, w, "event {n}");
    }
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a: Vec<Event> = Generator::new(cfg(500)).collect();
    let b: Vec<Event> = Generator::new(cfg(500)).collect();
    assert_eq!(a, b);
    let c: Vec<Event> = Generator::new(GeneratorConfig {
        seed: 7,
        ..cfg(500)
    })
    .collect();
    assert_ne!(a, c);
    let mut g = Generator::new(cfg(500));
    let mut filled = Vec::new();
    while g.fill(&mut filled, 64) > 0 {}
    assert_eq!(filled, a);
}

/// Share of bids on the hot auction (and by the hot bidder) for a ratio `r`: `(r − 1) / r`,
/// plus the cold picks that land on it by chance (one in about 111 auctions, 1010 people).
#[test]
fn hot_auctions_and_bidders_take_their_configured_share() {
    for (ratio, cold_auction_hit, cold_person_hit) in [
        (2u64, 1.0 / 111.0, 1.0 / 1010.0),
        (100, 1.0 / 111.0, 1.0 / 1010.0),
    ] {
        let c = GeneratorConfig {
            hot_auction_ratio: ratio,
            hot_bidder_ratio: ratio,
            ..cfg(200_000)
        };
        let (mut bids, mut on_hot, mut by_hot) = (0u64, 0u64, 0u64);
        for (n, e) in Generator::new(c).enumerate() {
            if let Event::Bid(b) = e {
                bids += 1;
                on_hot +=
                    u64::from(b.auction == FIRST_AUCTION_ID + last_auction(n as u64) / 100 * 100);
                by_hot +=
                    u64::from(b.bidder == FIRST_PERSON_ID + last_person(n as u64) / 100 * 100 + 1);
            }
        }
        let p_hot = (ratio - 1) as f64 / ratio as f64;
        let expect_auction = p_hot + (1.0 - p_hot) * cold_auction_hit;
        let expect_bidder = p_hot + (1.0 - p_hot) * cold_person_hit;
        let auction_share = on_hot as f64 / bids as f64;
        let bidder_share = by_hot as f64 / bids as f64;
        assert!(
            (auction_share - expect_auction).abs() < 0.01,
            "ratio {ratio}: {auction_share} vs {expect_auction}"
        );
        assert!(
            (bidder_share - expect_bidder).abs() < 0.01,
            "ratio {ratio}: {bidder_share} vs {expect_bidder}"
        );
    }
}

#[test]
fn hot_sellers_take_three_quarters_of_auctions_by_default() {
    let (mut auctions, mut hot_seller) = (0u64, 0u64);
    for (n, e) in Generator::new(cfg(200_000)).enumerate() {
        if let Event::Auction(a) = e {
            auctions += 1;
            hot_seller +=
                u64::from(a.seller == FIRST_PERSON_ID + last_person(n as u64) / 100 * 100);
        }
    }
    let share = hot_seller as f64 / auctions as f64;
    assert!((share - 0.75).abs() < 0.015, "{share}");
}

#[test]
fn sizes_average_the_models_and_fields_are_in_range() {
    let mut sizes: HashMap<u8, (usize, usize)> = HashMap::new();
    for e in Generator::new(cfg(50_000)) {
        let size = match &e {
            Event::Person(p) => {
                assert!(["AZ", "CA", "ID", "OR", "WA", "WY"].contains(&p.state.as_str()));
                assert_eq!(p.credit_card.len(), 19);
                8 + p.name.len()
                    + p.email_address.len()
                    + p.credit_card.len()
                    + p.city.len()
                    + p.state.len()
                    + p.extra.len()
            }
            Event::Auction(a) => {
                assert!((10..15).contains(&a.category));
                assert!(a.reserve > a.initial_bid && a.initial_bid >= 100);
                assert!(a.expires > a.date_time);
                8 + a.item_name.len() + a.description.len() + 40 + a.extra.len()
            }
            Event::Bid(b) => {
                assert!((100..=100_000_000).contains(&b.price));
                assert!(!b.channel.is_empty() && b.url.starts_with("https://"));
                32 + b.extra.len()
            }
        };
        let s = sizes.entry(e.event_type()).or_default();
        s.0 += size;
        s.1 += 1;
    }
    for (kind, avg) in [(0u8, 200.0), (1, 500.0), (2, 100.0)] {
        let (total, count) = sizes[&kind];
        let mean = total as f64 / count as f64;
        assert!(
            (mean - avg).abs() < avg * 0.03,
            "kind {kind}: mean size {mean}, model {avg}"
        );
    }
}

#[test]
fn half_the_bids_come_through_a_hot_channel_and_a_numbered_channels_url_names_it() {
    let (mut bids, mut hot) = (0u32, 0u32);
    for e in Generator::new(cfg(20_000)) {
        let Event::Bid(b) = e else { continue };
        bids += 1;
        if let Some(k) = b.channel.strip_prefix("channel-") {
            let k: u64 = k.parse().unwrap();
            assert!(k < NUM_CHANNELS);
            assert!(b.url.ends_with(&format!("&channel_id={k}")), "{}", b.url);
            assert_eq!(
                tables().channel(k).1,
                b.url,
                "the same channel, the same URL"
            );
        } else {
            assert!(HOT_CHANNELS
                .iter()
                .any(|(c, u)| *c == b.channel && *u == b.url));
            hot += 1;
        }
    }
    let share = f64::from(hot) / f64::from(bids);
    assert!((share - 0.5).abs() < 0.02, "{share}");
}
