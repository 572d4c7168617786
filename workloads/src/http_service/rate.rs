//! Per-second event counts in a fixed ring of buckets, for plotting a run.
//!
//! Bucket `s % len` holds second `s` (seconds since the ring's origin). The ring shows the
//! window of `len` seconds ending at the newest second recorded. Recording into a bucket that
//! still holds a second from before the window first resets it; an event older than the
//! window is left out. Memory is constant.

use serde::{Deserialize, Serialize};

/// What happened in one second of a [`TestService`](super::TestService)'s life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecondCounts {
    /// Whole seconds since the service started.
    pub second: u64,
    /// Requests that arrived.
    pub attempts: u64,
    /// Requests served successfully (counted in the second they completed).
    pub successes: u64,
    /// Requests turned away because the service was at capacity.
    pub rejections: u64,
}

/// The kind of event recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Attempt,
    Success,
    Rejection,
}

/// A ring of per-second buckets.
#[derive(Debug)]
pub(crate) struct RateRing {
    buckets: Vec<SecondCounts>,
    newest: Option<u64>,
}

impl RateRing {
    /// A ring that keeps the last `len` seconds; `len` must not be zero.
    pub(crate) fn new(len: usize) -> Self {
        assert!(len > 0, "a rate ring needs at least one bucket");
        // `second: u64::MAX` marks a bucket as never used.
        Self {
            buckets: vec![
                SecondCounts {
                    second: u64::MAX,
                    ..SecondCounts::default()
                };
                len
            ],
            newest: None,
        }
    }

    /// Counts `event` in `second`. An event from before the window is left out of the
    /// per-second view (totals are kept elsewhere).
    pub(crate) fn record(&mut self, second: u64, event: Event) {
        let len = self.buckets.len() as u64;
        let newest = self.newest.map_or(second, |n| n.max(second));
        if second + len <= newest {
            return;
        }
        self.newest = Some(newest);
        let bucket = &mut self.buckets[(second % len) as usize];
        // Within the window each second has its own bucket, so a different second here is
        // from before the window.
        if bucket.second != second {
            *bucket = SecondCounts {
                second,
                ..SecondCounts::default()
            };
        }
        match event {
            Event::Attempt => bucket.attempts += 1,
            Event::Success => bucket.successes += 1,
            Event::Rejection => bucket.rejections += 1,
        }
    }

    /// The seconds of the window that saw events, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<SecondCounts> {
        let Some(newest) = self.newest else {
            return Vec::new();
        };
        let len = self.buckets.len() as u64;
        let mut seconds: Vec<SecondCounts> = self
            .buckets
            .iter()
            .copied()
            .filter(|b| b.second != u64::MAX && b.second + len > newest)
            .collect();
        seconds.sort_by_key(|b| b.second);
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Attempt),
            Just(Event::Success),
            Just(Event::Rejection)
        ]
    }

    proptest! {
        /// Against a map of every second ever seen: the ring shows exactly the seconds within
        /// `len` of the newest, with their full counts.
        #[test]
        fn keeps_the_last_len_seconds(
            len in 1usize..8,
            steps in proptest::collection::vec((0u64..3, 0u64..3, event()), 0..200),
        ) {
            let mut ring = RateRing::new(len);
            let mut model: BTreeMap<u64, SecondCounts> = BTreeMap::new();
            let mut newest = 0u64;
            for (advance, late, ev) in steps {
                // Clocks move forward; an event may be recorded a little late.
                let now = (newest + advance).saturating_sub(late);
                ring.record(now, ev);
                newest = newest.max(now);
                if now + len as u64 <= newest {
                    continue; // before the window when it was recorded
                }
                let entry = model.entry(now).or_insert(SecondCounts { second: now, ..SecondCounts::default() });
                match ev {
                    Event::Attempt => entry.attempts += 1,
                    Event::Success => entry.successes += 1,
                    Event::Rejection => entry.rejections += 1,
                }
            }
            let now = newest;
            let want: Vec<SecondCounts> = model.values().copied().filter(|c| c.second + len as u64 > now).collect();
            prop_assert_eq!(ring.snapshot(), want);
        }
    }

    #[test]
    fn a_late_event_counts_only_within_the_window() {
        let mut ring = RateRing::new(2);
        ring.record(5, Event::Attempt);
        ring.record(3, Event::Success); // before the window [4, 5]: left out
        ring.record(4, Event::Attempt); // late, but within the window
        assert_eq!(
            ring.snapshot(),
            vec![
                SecondCounts {
                    second: 4,
                    attempts: 1,
                    successes: 0,
                    rejections: 0
                },
                SecondCounts {
                    second: 5,
                    attempts: 1,
                    successes: 0,
                    rejections: 0
                },
            ]
        );
    }
}
