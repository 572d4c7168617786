//! Windows through the facade: stacked windows line up on `end − 1 ms`, and late rows are
//! delivered and counted in the run report.

mod common;

use std::collections::BTreeMap;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{op, pipeline, run_guarded};
use weir::operators::keyed::aggregate::{Count, Project, Sum};
use weir::operators::window::{late_rows, Session, Tumbling, Windowed};
use weir::prelude::*;
use weir::runtime::Timestamp;

/// `(user, event time)` rows, with a watermark of `max − bound` after each.
struct Clicks {
    rows: std::vec::IntoIter<(u32, i64)>,
    max: i64,
    bound: i64,
}

impl Source for Clicks {
    type Output = Vec<(u32, i64)>;

    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<(u32, i64)>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        match self.rows.next() {
            Some(row) => {
                out.push(row);
                self.max = self.max.max(row.1);
                out.watermark(Timestamp(self.max - self.bound));
                Poll::Ready(Ok(SourceStatus::Continue))
            }
            None => Poll::Ready(Ok(SourceStatus::Done)),
        }
    }
}

/// Rows of 7 users over 3 s of event time, each at most `disorder` ms out of order.
fn clicks(disorder: i64) -> Vec<(u32, i64)> {
    let mut rows: Vec<(i64, (u32, i64))> = (0..3_000i64)
        .map(|i| {
            let t = i - 1_000;
            (t + (i * 37 % (disorder + 1)), ((i * 13 % 7) as u32, t))
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, row)| row).collect()
}

#[test]
fn windows_of_window_results_line_up() {
    let rows = clicks(20);
    let mut p = pipeline("stacked", 64);
    let source = Clicks {
        rows: rows.clone().into_iter(),
        max: i64::MIN,
        bound: 20,
    };
    let per_user = p
        .source("clicks", source)
        .key_by(|c: &(u32, i64)| c.0)
        .parallelism(2)
        .window(
            Tumbling::of(Duration::from_millis(100)),
            |c: &(u32, i64)| Timestamp(c.1),
        )
        .aggregate("per_user", Count::new());
    // Each result carries end − 1 ms, so it falls in the 300 ms window that holds its window.
    let per_300 = per_user
        .window_all(
            Tumbling::of(Duration::from_millis(300)),
            |w: &Windowed<u32, u64>| w.timestamp(),
        )
        .aggregate(
            "per_300",
            Project::new(|w: &Windowed<u32, u64>| w.value, Sum::<u64>::new()),
        )
        .collect("out");
    let report = run_guarded(p).expect("the run succeeds");
    let mut expected: BTreeMap<i64, u128> = BTreeMap::new();
    for (_, t) in &rows {
        *expected.entry(t.div_euclid(300) * 300).or_default() += 1;
    }
    let got: BTreeMap<i64, u128> = per_300
        .take()
        .expect("the run finished")
        .into_iter()
        .map(|w| (w.start.0, w.value))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(late_rows(&report, "per_user"), 0);
    assert_eq!(late_rows(&report, "per_300"), 0);
    let state = op(&report, "per_user");
    assert_eq!((state.state_keys, state.state_bytes), (0, 0));
    assert!(state.peak_state_bytes > 0);
}

#[test]
fn late_session_rows_are_delivered_and_counted() {
    // Disorder up to 60 ms against a watermark 5 ms behind: some rows arrive after every
    // session they could join has closed.
    let rows = clicks(60);
    let mut p = pipeline("sessions", 64);
    let source = Clicks {
        rows: rows.clone().into_iter(),
        max: i64::MIN,
        bound: 5,
    };
    let (sessions, late) = p
        .source("clicks", source)
        .key_by(|c: &(u32, i64)| c.0)
        .window(
            Session::with_gap(Duration::from_millis(4)),
            |c: &(u32, i64)| Timestamp(c.1),
        )
        .aggregate_with_late("sessions", Count::new());
    let (sessions, late) = (sessions.collect("out"), late.collect("late"));
    let report = run_guarded(p).expect("the run succeeds");
    let late = late.take().expect("the run finished");
    let sessions = sessions.take().expect("the run finished");
    assert!(!late.is_empty(), "the input is meant to have late rows");
    assert_eq!(late_rows(&report, "sessions"), late.len() as u64);
    // Every row is in a session's count or late: the last result of each session counts it.
    let mut last: BTreeMap<(u32, i64, i64), (u32, u64)> = BTreeMap::new();
    for w in &sessions {
        let e = last.entry((w.key, w.start.0, w.end.0)).or_default();
        if w.firing >= e.0 {
            *e = (w.firing, w.value);
        }
    }
    let counted: u64 = last.values().map(|v| v.1).sum();
    assert_eq!(counted + late.len() as u64, rows.len() as u64);
}
