//! Window results against a reference computed by sorting and grouping the input by hand, on
//! scripted out-of-order streams with watermarks.

use std::collections::BTreeMap;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use weir_runtime::{
    HeapSize, Message, Operator, OperatorError, Output, Pipeline, PipelineConfig, RunReport,
    Source, SourceStatus, Timestamp,
};

use super::stage::{Arrival, Fired, Results, WindowStage};
use super::*;
use crate::keyed::aggregate::{Aggregate, Project, Sum};
use crate::keyed::route::{SplitConfig, Strategy as Route};
use crate::prelude::{KeyedExt, StreamExt};

/// One input row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, HeapSize)]
struct Ev {
    key: u8,
    t: i64,
    v: i64,
}

/// One step of a script: a row, or a watermark.
#[derive(Clone, Copy, Debug)]
enum Step {
    Row(Ev),
    Wm(i64),
}

/// A source that plays a script, a batch (or a watermark) per call.
struct Script(std::vec::IntoIter<Step>);

impl Source for Script {
    type Output = Vec<Ev>;

    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<Ev>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        while !out.is_full() {
            match self.0.next() {
                Some(Step::Row(ev)) => out.push(ev),
                Some(Step::Wm(w)) => out.watermark(Timestamp(w)),
                None => return Poll::Ready(Ok(SourceStatus::Done)),
            }
        }
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Rows `(key, gap to the previous event time, arrival jitter, value)` played in the order of
/// `t + jitter` (so the disorder is at most the largest jitter), with a watermark of
/// `max − bound` after every `every` rows.
fn script(rows: &[(u8, u8, u8, i16)], bound: i64, every: usize) -> Vec<Step> {
    let mut t = -300i64;
    let mut evs: Vec<(i64, usize, Ev)> = Vec::new();
    for (i, &(key, gap, jitter, v)) in rows.iter().enumerate() {
        t += i64::from(gap);
        let ev = Ev {
            key,
            t,
            v: i64::from(v),
        };
        evs.push((t + i64::from(jitter), i, ev));
    }
    evs.sort();
    let (mut steps, mut max, mut last) = (Vec::new(), i64::MIN, i64::MIN);
    for (i, (_, _, ev)) in evs.into_iter().enumerate() {
        steps.push(Step::Row(ev));
        max = max.max(ev.t);
        if (i + 1) % every.max(1) == 0 && max - bound > last {
            last = max - bound;
            steps.push(Step::Wm(last));
        }
    }
    steps
}

/// The kinds of window, in reference form.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

impl Kind {
    fn assigner(self) -> Assigner {
        let ms = |n: i64| Duration::from_millis(n as u64);
        match self {
            Kind::Tumbling(size) => Tumbling::of(ms(size)).into(),
            Kind::Sliding(size, slide) => Sliding::of(ms(size), ms(slide)).into(),
            Kind::Session(gap) => Session::with_gap(ms(gap)).into(),
        }
    }

    /// The fixed windows containing `t`, found by scanning every window start near it.
    fn fixed_windows(self, t: i64) -> Vec<(i64, i64)> {
        let (size, slide) = match self {
            Kind::Tumbling(size) => (size, size),
            Kind::Sliding(size, slide) => (size, slide),
            Kind::Session(_) => unreachable!("sessions are grouped, not assigned"),
        };
        let mut start = t - size - slide - (t - size - slide).rem_euclid(slide);
        let mut windows = Vec::new();
        while start <= t {
            if t < start + size {
                windows.push((start, start + size));
            }
            start += slide;
        }
        windows
    }
}

/// What a run should give: the final value of every `(key, start, end)`, and the late rows.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    windows: BTreeMap<(u8, i64, i64), i128>,
    late: Vec<Ev>,
}

/// Plays the script against the semantics written in the module docs, with each key's state
/// kept as plain lists: a row is late when every window containing it (for sessions: its own
/// window, and no session it overlaps is held) has `end + lateness` at or behind the
/// watermark.
fn reference(steps: &[Step], kind: Kind, lateness: i64, keyed: bool) -> Expected {
    let mut exp = Expected::default();
    let mut wm = i64::MIN;
    let mut accepted: Vec<Ev> = Vec::new();
    for step in steps {
        let ev = match *step {
            Step::Wm(w) => {
                wm = wm.max(w);
                continue;
            }
            Step::Row(ev) => Ev {
                key: if keyed { ev.key } else { 0 },
                ..ev
            },
        };
        if let Kind::Session(_) = kind {
            accepted.push(ev); // sessions are checked without late rows (see the tests)
            continue;
        }
        let live: Vec<_> = kind
            .fixed_windows(ev.t)
            .into_iter()
            .filter(|&(_, end)| end + lateness > wm)
            .collect();
        if live.is_empty() {
            exp.late.push(ev);
        }
        for (start, end) in live {
            *exp.windows.entry((ev.key, start, end)).or_default() += i128::from(ev.v);
        }
    }
    if let Kind::Session(gap) = kind {
        accepted.sort();
        let mut open: Option<(u8, i64, i64, i128)> = None;
        for ev in accepted {
            open = match open {
                Some((k, s, e, sum)) if k == ev.key && ev.t < e => {
                    Some((k, s, e.max(ev.t + gap), sum + i128::from(ev.v)))
                }
                other => {
                    if let Some((k, s, e, sum)) = other {
                        exp.windows.insert((k, s, e), sum);
                    }
                    Some((ev.key, ev.t, ev.t + gap, i128::from(ev.v)))
                }
            };
        }
        if let Some((k, s, e, sum)) = open {
            exp.windows.insert((k, s, e), sum);
        }
    }
    exp.late.sort();
    exp
}

/// How a run is wired.
#[derive(Clone, Copy, Debug)]
struct Setup {
    keyed: bool,
    parallelism: usize,
    strategy: Route,
    combine: Option<usize>,
}

fn setups() -> Vec<Setup> {
    let split = SplitConfig::default()
        .with_warmup(0)
        .with_threshold(0.2)
        .expect("0.2 is a share");
    let s = |keyed, parallelism, strategy, combine| Setup {
        keyed,
        parallelism,
        strategy,
        combine,
    };
    vec![
        s(true, 1, Route::Hash, None),
        s(true, 2, Route::Hash, None),
        s(true, 2, Route::HotKeySplit(split), None),
        s(true, 2, Route::Pkg, Some(3)),
        s(true, 2, Route::Hash, Some(4)),
        s(false, 2, Route::Hash, None),
        s(false, 2, Route::Hash, Some(2)),
    ]
}

fn sum_v() -> impl Aggregate<Input = Ev, Output = i128, Acc = i128> + Clone + Send + 'static {
    Project::new(|e: &Ev| e.v, Sum::<i64>::new())
}

/// A run's results (keys of unkeyed runs as 0), sorted late rows, and report.
struct Got {
    results: Vec<Windowed<u8, i128>>,
    late: Vec<Ev>,
    report: RunReport,
}

fn run(steps: Vec<Step>, kind: Kind, lateness: i64, setup: Setup) -> Got {
    run_with(steps, kind, lateness, setup, 16)
}

fn run_with(steps: Vec<Step>, kind: Kind, lateness: i64, setup: Setup, batch_rows: usize) -> Got {
    let config = PipelineConfig {
        parallelism: setup.parallelism,
        batch_rows,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("windows", config);
    let events = p.source("events", Script(steps.into_iter()));
    let time = |e: &Ev| Timestamp(e.t);
    let lateness_d = Duration::from_millis(lateness as u64);
    type Take = Box<dyn FnOnce() -> Vec<Windowed<u8, i128>>>;
    let (results, late): (Take, _) = if setup.keyed {
        let mut keyed = events.key_by(|e: &Ev| e.key).strategy(setup.strategy);
        if let Some(c) = setup.combine {
            keyed = keyed.combine(c);
        }
        let (results, late) = keyed
            .window(kind.assigner(), time)
            .allowed_lateness(lateness_d)
            .aggregate_with_late("win", sum_v());
        let results = results.collect("results");
        (
            Box::new(move || results.take().expect("the run finished")),
            late.collect("late"),
        )
    } else {
        let mut all = events
            .window_all(kind.assigner(), time)
            .allowed_lateness(lateness_d);
        if let Some(c) = setup.combine {
            all = all.combine(c);
        }
        let (results, late) = all.aggregate_with_late("win", sum_v());
        let results = results.collect("results");
        let take = move || {
            let got = results.take().expect("the run finished");
            got.into_iter()
                .map(|w| Windowed {
                    key: 0u8,
                    start: w.start,
                    end: w.end,
                    firing: w.firing,
                    value: w.value,
                })
                .collect()
        };
        (Box::new(take), late.collect("late"))
    };
    let report = p.run().expect("the run succeeds");
    let mut late = late.take().expect("the run finished");
    if !setup.keyed {
        late.iter_mut().for_each(|e| e.key = 0);
    }
    late.sort();
    Got {
        results: results(),
        late,
        report,
    }
}

/// The last result of every window, checking on the way that each window's firings count up
/// from 0 without a gap.
fn finals(results: &[Windowed<u8, i128>]) -> BTreeMap<(u8, i64, i64), i128> {
    let mut by_window: BTreeMap<(u8, i64, i64), Vec<(u32, i128)>> = BTreeMap::new();
    for w in results {
        by_window
            .entry((w.key, w.start.0, w.end.0))
            .or_default()
            .push((w.firing, w.value));
    }
    by_window
        .into_iter()
        .map(|(window, mut firings)| {
            firings.sort();
            let numbers: Vec<u32> = firings.iter().map(|f| f.0).collect();
            let expected: Vec<u32> = (0..firings.len() as u32).collect();
            assert_eq!(numbers, expected, "firings of {window:?}");
            (window, firings[firings.len() - 1].1)
        })
        .collect()
}

fn operator<'a>(report: &'a RunReport, name: &str) -> &'a weir_runtime::metrics::OperatorReport {
    report
        .operators
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no operator {name}"))
}

/// Every stage holding windows ends with none, and held some.
fn assert_state_freed(report: &RunReport) {
    let stages: Vec<_> = report
        .operators
        .iter()
        .filter(|o| o.name == "win" || o.name == "win.partial" || o.name == "win.combine")
        .collect();
    assert!(!stages.is_empty());
    for op in stages {
        assert_eq!((op.state_keys, op.state_bytes), (0, 0), "{}", op.name);
    }
    assert!(operator(report, "win").peak_state_bytes > 0);
}

/// In-order enough input (disorder within the watermark's bound): no row is late and every
/// window fires once, with exactly the sorted-and-grouped value.
fn check_in_bound(rows: &[(u8, u8, u8, i16)], kind: Kind, every: usize) {
    let steps = script(rows, 255, every);
    for setup in setups() {
        let exp = reference(&steps, kind, 0, setup.keyed);
        assert!(exp.late.is_empty());
        let got = run(steps.clone(), kind, 0, setup);
        assert!(got.late.is_empty(), "{setup:?}");
        assert_eq!(late_rows(&got.report, "win"), 0);
        assert!(
            got.results.iter().all(|w| w.firing == 0),
            "{setup:?}: one firing per window"
        );
        assert_eq!(finals(&got.results), exp.windows, "{setup:?} {kind:?}");
        assert!(got.results.iter().all(|w| w.timestamp().0 == w.end.0 - 1));
        if setup.parallelism == 1 {
            let ends: Vec<i64> = got.results.iter().map(|w| w.end.0).collect();
            assert!(ends.is_sorted(), "{setup:?}: results in end order");
        }
        assert_state_freed(&got.report);
    }
}

/// Disorder past the watermark's bound: late rows are routed and counted exactly, windows
/// updated within the lateness end with the reference value.
fn check_late(rows: &[(u8, u8, u8, i16)], kind: Kind, bound: i64, lateness: i64) {
    let steps = script(rows, bound, 1);
    for setup in setups() {
        let exp = reference(&steps, kind, lateness, setup.keyed);
        let got = run(steps.clone(), kind, lateness, setup);
        assert_eq!(got.late, exp.late, "{setup:?}");
        assert_eq!(late_rows(&got.report, "win"), exp.late.len() as u64);
        assert_eq!(finals(&got.results), exp.windows, "{setup:?} {kind:?}");
        assert_state_freed(&got.report);
    }
}

fn row_specs(max: usize) -> impl Strategy<Value = Vec<(u8, u8, u8, i16)>> {
    // Key 0 is hot (about half the rows), so splitting strategies split it.
    let key = prop_oneof![Just(0u8), 0u8..6];
    prop::collection::vec((key, 0u8..12, any::<u8>(), 1i16..1000), 1..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_windows_match_the_sorted_reference(rows in row_specs(160), every in 1usize..20) {
        check_in_bound(&rows, Kind::Tumbling(25), every);
    }

    #[test]
    fn sliding_windows_match_the_sorted_reference(rows in row_specs(160), every in 1usize..20) {
        check_in_bound(&rows, Kind::Sliding(30, 10), every);
    }

    #[test]
    fn session_windows_match_the_sorted_reference(rows in row_specs(160), every in 1usize..20) {
        check_in_bound(&rows, Kind::Session(15), every);
    }

    #[test]
    fn late_tumbling_rows_are_routed_and_counted(
        rows in row_specs(160),
        bound in 0i64..60,
        lateness in prop_oneof![Just(0i64), 1i64..40],
    ) {
        check_late(&rows, Kind::Tumbling(20), bound, lateness);
    }

    #[test]
    fn late_sliding_rows_are_late_only_when_every_window_is_gone(
        rows in row_specs(160),
        bound in 0i64..60,
        lateness in prop_oneof![Just(0i64), 1i64..40],
    ) {
        check_late(&rows, Kind::Sliding(20, 5), bound, lateness);
    }
}

/// What the stage driven by hand emits.
type HandFired = Fired<u8, i128, (u8, i64)>;

/// Drives a final stage by hand: `(key, t)` rows, window sums of `t`.
fn stage(
    kind: Kind,
    lateness: i64,
) -> impl Operator<Input = Vec<(u8, i64)>, Output = Vec<HandFired>> {
    let agg = Project::new(|r: &(u8, i64)| r.1, Sum::<i64>::new());
    WindowStage::<_, u8, (u8, i64), _, Results, _>::new(
        agg,
        kind.assigner(),
        lateness,
        1 << 10,
        |r: (u8, i64)| -> Arrival<u8, i128, (u8, i64)> {
            Arrival::Row {
                key: r.0,
                time: r.1,
                row: r,
            }
        },
    )
}

/// What one call emitted: windows as `(key, start, end, firing, value)`, late rows as
/// `(key, t, u32::MAX, …)`, watermarks as `(u8::MAX, w, …)`.
type Emitted = (u8, i64, i64, u32, i128);

fn emitted(out: &mut Output<Vec<HandFired>>) -> Vec<Emitted> {
    out.flush();
    let mut got = Vec::new();
    for msg in out.drain() {
        match msg {
            Message::Data(batch) => got.extend(batch.into_iter().map(|f| match f {
                Fired::Window {
                    key,
                    start,
                    end,
                    firing,
                    value,
                } => (key, start, end, firing, value),
                Fired::Late((key, t)) => (key, t, 0, u32::MAX, 0),
            })),
            Message::Watermark(w) => got.push((u8::MAX, w.0, 0, 0, 0)),
            _ => {}
        }
    }
    got
}

#[test]
fn a_row_within_lateness_updates_its_window_and_one_past_it_is_late() -> Result<(), OperatorError> {
    let mut op = stage(Kind::Tumbling(10), 5);
    let mut out = Output::new(64);
    op.on_batch(0, vec![(1, 3), (1, 12), (2, 4)], &mut out)?;
    assert_eq!(emitted(&mut out), []);
    op.on_watermark(Timestamp(10), &mut out)?;
    assert_eq!(
        emitted(&mut out),
        [(1, 0, 10, 0, 3), (2, 0, 10, 0, 4), (u8::MAX, 10, 0, 0, 0)]
    );
    let held = op.state_size().expect("a window stage reports state");
    assert_eq!(held.keys, 3, "the fired windows stay until 15");
    // Within the lateness: an update, at the end of the batch.
    op.on_batch(0, vec![(1, 9), (1, 8)], &mut out)?;
    assert_eq!(emitted(&mut out), [(1, 0, 10, 1, 20)]);
    op.on_watermark(Timestamp(15), &mut out)?;
    assert_eq!(emitted(&mut out), [(u8::MAX, 15, 0, 0, 0)]);
    assert_eq!(
        op.state_size().map(|s| s.keys),
        Some(1),
        "[0, 10) freed at 15"
    );
    // Past it: late.
    op.on_batch(0, vec![(2, 9), (3, 14)], &mut out)?;
    assert_eq!(emitted(&mut out), [(2, 9, 0, u32::MAX, 0)]);
    op.on_watermark(Timestamp(22), &mut out)?;
    assert_eq!(
        emitted(&mut out),
        [
            (1, 10, 20, 0, 12),
            (3, 10, 20, 0, 14),
            (u8::MAX, 22, 0, 0, 0)
        ]
    );
    // A window that never held a row, still within its lateness, takes one and fires at once.
    op.on_batch(0, vec![(4, 19)], &mut out)?;
    assert_eq!(emitted(&mut out), [(4, 10, 20, 0, 19)]);
    op.on_end(&mut out)?;
    assert_eq!(emitted(&mut out), []);
    let freed = op.state_size().expect("a window stage reports state");
    assert_eq!((freed.keys, freed.bytes), (0, 0));
    Ok(())
}

#[test]
fn a_late_row_joining_a_live_session_is_not_late() -> Result<(), OperatorError> {
    let mut op = stage(Kind::Session(10), 0);
    let mut out = Output::new(64);
    op.on_batch(0, vec![(1, 0), (1, 8), (1, 20), (1, 28), (1, 35)], &mut out)?;
    op.on_watermark(Timestamp(30), &mut out)?;
    assert_eq!(
        emitted(&mut out),
        [(1, 0, 18, 0, 8), (u8::MAX, 30, 0, 0, 0)]
    );
    // [12, 22) is cleaned up but joins the live [20, 45); [1, 11) joins nothing: late.
    op.on_batch(0, vec![(1, 12), (1, 1)], &mut out)?;
    assert_eq!(emitted(&mut out), [(1, 1, 0, u32::MAX, 0)]);
    // A row at exactly last + gap (35 + 10) starts a new session.
    op.on_batch(0, vec![(1, 45)], &mut out)?;
    op.on_end(&mut out)?;
    assert_eq!(
        emitted(&mut out),
        [(1, 12, 45, 0, 12 + 20 + 28 + 35), (1, 45, 55, 0, 45)]
    );
    let freed = op.state_size().expect("a window stage reports state");
    assert_eq!((freed.keys, freed.bytes), (0, 0));
    Ok(())
}

#[test]
fn window_state_stays_flat_as_the_run_grows() {
    // 4 keys, a row every ms for 4000 ms, disorder ≤ 8, watermark max − 8 after every row. A
    // window is held from its first row until the watermark reaches end + lateness, and the
    // newest row runs at most 2 · 8 ms ahead of the watermark a stage has seen (the jitter of
    // the row and of the one that set the watermark): at most ⌈(2 · 8 + lateness + size) /
    // size⌉ windows per key at once, however long the run. A merge stage also holds the
    // partials that are ahead of the watermarks still queued in one of its input edges: at
    // most its capacity (plus one held call's output) in messages, each a watermark step.
    let (size, lateness, bound) = (20i64, 10i64, 8i64);
    let rows: Vec<(u8, u8, u8, i16)> = (0..4000)
        .map(|i| ((i % 4) as u8, 1, (i * 7 % 9) as u8, 1))
        .collect();
    let steps = script(&rows, bound, 1);
    let marks: Vec<i64> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Wm(w) => Some(*w),
            Step::Row(_) => None,
        })
        .collect();
    let step = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let per_key = (2 * bound + lateness + size)
        .unsigned_abs()
        .div_ceil(size.unsigned_abs());
    for setup in [setups()[1], setups()[2]] {
        let got = run_with(steps.clone(), Kind::Tumbling(size), lateness, setup, 1024);
        let exp = reference(&steps, Kind::Tumbling(size), lateness, true);
        assert_eq!(finals(&got.results), exp.windows);
        assert!(
            exp.windows.len() as u64 > 50 * 4 * per_key,
            "many windows over the run"
        );
        let queued = match setup.strategy {
            Route::Hash => 0,
            _ => {
                let capacity = got.report.edges.iter().filter(|e| e.to == "win");
                let capacity = capacity.map(|e| e.capacity).max().unwrap_or(0) as i64;
                ((capacity + 1) * step)
                    .unsigned_abs()
                    .div_ceil(size.unsigned_abs())
            }
        };
        let win = operator(&got.report, "win");
        assert!(
            win.peak_state_keys <= 4 * (per_key + queued),
            "{setup:?}: peak {} windows held, {queued} queued per key",
            win.peak_state_keys
        );
        assert_state_freed(&got.report);
    }
}
