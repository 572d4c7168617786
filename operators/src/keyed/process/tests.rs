//! The process stage driven by hand: timers against a sorted reference, state time-to-live
//! against the clock.

use std::task::{Context, Waker};
use std::time::Duration;

use proptest::prelude::*;
use weir_runtime::{Message, Operator, OperatorError, Output, StateSize, Timestamp};

use super::*;

/// What a test row asks the function to do for its key.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Register(TimeDomain, i64),
    Delete(TimeDomain, i64),
    /// Stores the value.
    Set(u64),
}

impl weir_runtime::HeapSize for Cmd {
    const HAS_HEAP: bool = false;
}

/// Rows are `(key, command)`; every timer that fires is emitted as `(domain, time, key)`.
#[derive(Clone)]
struct Scripted;

impl KeyedProcessFunction<u8, (u8, Cmd)> for Scripted {
    type State = u64;
    type Output = (TimeDomain, i64, u8);

    fn process(
        &mut self,
        (_, cmd): (u8, Cmd),
        ctx: &mut ProcessContext<'_, u8, u64>,
        _: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError> {
        match cmd {
            Cmd::Register(TimeDomain::EventTime, t) => ctx.register_event_time_timer(Timestamp(t)),
            Cmd::Register(TimeDomain::ProcessingTime, t) => {
                ctx.register_processing_time_timer(Timestamp(t))
            }
            Cmd::Delete(TimeDomain::EventTime, t) => ctx.delete_event_time_timer(Timestamp(t)),
            Cmd::Delete(TimeDomain::ProcessingTime, t) => {
                ctx.delete_processing_time_timer(Timestamp(t))
            }
            Cmd::Set(v) => ctx.set(v),
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut ProcessContext<'_, u8, u64>,
        out: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError> {
        let domain = ctx.time_domain().expect("set in on_timer");
        out.push((domain, ts.0, *ctx.key()));
        Ok(())
    }
}

type Stage = ProcessStage<(u8, Cmd), u8, fn(&(u8, Cmd)) -> u8, Scripted>;

fn stage(options: &ProcessOptions) -> Stage {
    ProcessStage::new(|r: &(u8, Cmd)| r.0, Scripted, options)
}

fn emitted<T: weir_runtime::Data>(out: &mut Output<Vec<T>>, into: &mut Vec<T>) {
    out.flush();
    for m in out.drain() {
        if let Message::Data(b) = m {
            into.extend(b);
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Row(u8, Cmd),
    Watermark(i64),
    Clock(i64),
}

fn step() -> impl Strategy<Value = Step> {
    let domain = prop_oneof![
        Just(TimeDomain::EventTime),
        Just(TimeDomain::ProcessingTime)
    ];
    prop_oneof![
        4 => (0u8..4, domain.clone(), 0i64..30).prop_map(|(k, d, t)| Step::Row(k, Cmd::Register(d, t))),
        1 => (0u8..4, domain, 0i64..30).prop_map(|(k, d, t)| Step::Row(k, Cmd::Delete(d, t))),
        1 => (0i64..6).prop_map(Step::Watermark),
        1 => (0i64..6).prop_map(Step::Clock),
    ]
}

/// The reference: pending timers as `(time, registration, key)` per domain, fired by sorting.
#[derive(Default)]
struct Reference {
    timers: Vec<(TimeDomain, i64, u64, u8)>,
    seq: u64,
    fired: Vec<(TimeDomain, i64, u8)>,
}

impl Reference {
    fn register(&mut self, d: TimeDomain, t: i64, k: u8) {
        if !self.timers.iter().any(|x| x.0 == d && x.1 == t && x.3 == k) {
            self.timers.push((d, t, self.seq, k));
            self.seq += 1;
        }
    }

    fn delete(&mut self, d: TimeDomain, t: i64, k: u8) {
        self.timers.retain(|x| !(x.0 == d && x.1 == t && x.3 == k));
    }

    fn fire(&mut self, d: TimeDomain, due: impl Fn(i64) -> bool) {
        let mut firing: Vec<_> = self
            .timers
            .iter()
            .copied()
            .filter(|x| x.0 == d && due(x.1))
            .collect();
        self.timers.retain(|x| !(x.0 == d && due(x.1)));
        firing.sort_by_key(|x| (x.1, x.2));
        self.fired
            .extend(firing.into_iter().map(|x| (x.0, x.1, x.3)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn timers_fire_in_time_then_registration_order(steps in prop::collection::vec(step(), 0..60)) {
        let clock = ManualClock::new(Timestamp(0));
        let mut op = stage(&ProcessOptions::default().clock(clock.clone()));
        let mut out = Output::new(5);
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        let mut reference = Reference::default();
        let mut wm = i64::MIN;
        let mut now = 0;
        for s in steps {
            match s {
                Step::Row(k, cmd) => {
                    op.on_batch(0, vec![(k, cmd)], &mut out).unwrap();
                    match cmd {
                        Cmd::Register(d, t) => reference.register(d, t, k),
                        Cmd::Delete(d, t) => reference.delete(d, t, k),
                        Cmd::Set(_) => {}
                    }
                }
                Step::Watermark(by) => {
                    wm = if wm == i64::MIN { by } else { wm + by + 1 };
                    op.on_watermark(Timestamp(wm), &mut out).unwrap();
                    reference.fire(TimeDomain::EventTime, |t| t < wm);
                }
                Step::Clock(by) => {
                    clock.advance(by);
                    now += by;
                }
            }
            // The operator is polled after every step, as the executor does while it waits.
            let _ = op.poll_flush(&mut cx, &mut out);
            reference.fire(TimeDomain::ProcessingTime, |t| t <= now);
            emitted(&mut out, &mut got);
        }
        prop_assert_eq!(&got, &reference.fired);
        let pending = reference.timers.len() as u64;
        prop_assert_eq!(op.state_size().unwrap().keys, pending);
        // The end of input fires every event-time timer, in order, and drops the others.
        op.on_end(&mut out).unwrap();
        reference.fire(TimeDomain::EventTime, |_| true);
        emitted(&mut out, &mut got);
        prop_assert_eq!(&got, &reference.fired);
        prop_assert_eq!(op.state_size().unwrap(), StateSize::default());
        prop_assert!(op.poll_flush(&mut cx, &mut out).is_ready());
    }
}

#[test]
fn an_event_time_timer_fires_once_the_watermark_passes_it() {
    let mut op = stage(&ProcessOptions::default().clock(ManualClock::new(Timestamp(0))));
    let mut out = Output::new(8);
    let mut got = Vec::new();
    op.on_batch(
        0,
        vec![(1, Cmd::Register(TimeDomain::EventTime, 9))],
        &mut out,
    )
    .unwrap();
    op.on_watermark(Timestamp(9), &mut out).unwrap();
    emitted(&mut out, &mut got);
    assert!(got.is_empty(), "rows at 9 may still come at watermark 9");
    op.on_watermark(Timestamp(10), &mut out).unwrap();
    out.flush();
    let msgs: Vec<_> = out.drain().collect();
    assert_eq!(
        msgs,
        [
            Message::Data(vec![(TimeDomain::EventTime, 9, 1)]),
            Message::Watermark(Timestamp(10))
        ],
        "the timer's output goes ahead of the watermark"
    );
}

#[test]
fn ttl_frees_state_when_the_clock_passes_it_and_never_returns_expired_values() {
    let clock = ManualClock::new(Timestamp(0));
    let options = ProcessOptions::default()
        .ttl(Duration::from_millis(50))
        .clock(clock.clone());
    let mut op = stage(&options);
    let mut out = Output::new(8);
    let mut cx = Context::from_waker(Waker::noop());
    op.on_batch(
        0,
        (0..10).map(|k| (k, Cmd::Set(u64::from(k)))).collect(),
        &mut out,
    )
    .unwrap();
    let held = op.state_size().unwrap();
    assert_eq!(held.keys, 10);
    assert!(held.bytes > 0);
    clock.advance(30);
    // Rewriting key 0 at 30 extends it to 80.
    op.on_batch(0, vec![(0, Cmd::Set(7))], &mut out).unwrap();
    assert!(op.poll_flush(&mut cx, &mut out).is_pending());
    clock.advance(20);
    assert!(
        op.poll_flush(&mut cx, &mut out).is_pending(),
        "key 0 still lives"
    );
    assert_eq!(op.state_size().unwrap().keys, 1);
    assert_eq!(op.store.get(&0, clock.now()), Some(&7));
    assert_eq!(
        op.store.get(&0, Timestamp(80)),
        None,
        "expired values are never returned"
    );
    clock.advance(30);
    assert!(op.poll_flush(&mut cx, &mut out).is_ready());
    assert_eq!(op.state_size().unwrap(), StateSize::default());
}

#[test]
fn end_of_input_fires_only_the_timers_registered_before_it() {
    /// Re-registers its timer one millisecond later, forever.
    #[derive(Clone)]
    struct Periodic;

    impl KeyedProcessFunction<u8, u8> for Periodic {
        type State = ();
        type Output = i64;

        fn process(
            &mut self,
            _: u8,
            ctx: &mut ProcessContext<'_, u8, ()>,
            _: &mut Output<Vec<i64>>,
        ) -> Result<(), OperatorError> {
            ctx.register_event_time_timer(Timestamp(0));
            Ok(())
        }

        fn on_timer(
            &mut self,
            ts: Timestamp,
            ctx: &mut ProcessContext<'_, u8, ()>,
            out: &mut Output<Vec<i64>>,
        ) -> Result<(), OperatorError> {
            out.push(ts.0);
            ctx.register_event_time_timer(Timestamp(ts.0 + 1));
            Ok(())
        }
    }

    let mut op = ProcessStage::new(|k: &u8| *k, Periodic, &ProcessOptions::default());
    let mut out = Output::new(8);
    op.on_batch(0, vec![1], &mut out).unwrap();
    op.on_watermark(Timestamp(3), &mut out).unwrap();
    op.on_end(&mut out).unwrap();
    let mut got = Vec::new();
    emitted(&mut out, &mut got);
    assert_eq!(
        got,
        [0, 1, 2, 3],
        "0..=2 before the watermark 3, then 3 at the end"
    );
    assert_eq!(op.state_size().unwrap(), StateSize::default());
}
