//! Paced runs: generated events released in wall time, and the latency of each result from
//! the creation of the input that made it final.
//!
//! # Pacing
//!
//! A [`Pace`] releases events at `rate` per wall-clock second: event `n` is due at
//! `start + n / rate`. Its generator runs on the same clock — base time `start`, event-time
//! rate `rate` ([`Pace::generator`]) — so an event's time is the wall-clock millisecond it was
//! created in. A delayed event (one in ten by default, its `dateTime` moved back up to 3 s, as
//! in Beam's model) is created when it is due like any other: its creation time is its due
//! time, not its `dateTime`. The paced source ([`GeneratorSource`](super::io::GeneratorSource)
//! with a pace) emits everything due when polled and, when nothing is, waits on a timer until
//! the next event is due: the runtime's timer has a millisecond's granularity, so the source
//! wakes at most about a thousand times a second and does not spin. An event due while the
//! pipeline is busy waits at the source: its latency counts from its due time all the same.
//!
//! # Latency
//!
//! The result sink ([`ResultsSink`]) reads the clock once per result batch and records, for
//! every row, `arrival − creation`, where *creation* is when the input that made the row final
//! was created, computed from the row itself and the run's [`Timing`] (the pace, the event
//! count, the watermark's delay) — no clock is read per input event. [`Latency`] says, per
//! query:
//!
//! | rows of | final when | creation |
//! |---|---|---|
//! | q0, q1, q2 | their bid arrives | the bid's, carried in the row (not written) |
//! | q3 | the later of the auction and its seller arrives | the later of the two, from their ids (event numbers) |
//! | q4 | the end of the input (the means are emitted once per category then) | the last event's |
//! | q5, q7, q8, q11 | the watermark passes the window's end `e` | [`Timing::closed_us`]`(e)` |
//! | the events alone (`gen`) | they arrive | their own |
//!
//! A window fires when the watermark reaches its end, and the watermark after an event at time
//! `t` is `t − max_delay − 1`: the window ending at `e` is closed by the first event at or
//! after `e + max_delay + 1`, which is created at that wall-clock millisecond (to within one
//! event's spacing; if that event is itself delayed, the next undelayed one closes it, a
//! microsecond or so later at the rates measured). A window still open when the input ends is
//! closed by the end: its creation is the last event's. q4's results are only final at the end
//! of the input, and are measured from it: an updating answer has no other moment at which a
//! row is final.
//!
//! Latencies go into a log-bucketed histogram of microseconds ([`Histogram`], 16 buckets per
//! power of two: a percentile is the top of its bucket, at most 1/16 above the true value,
//! and never above the largest). A row whose computed creation is after its arrival (a
//! clock step) counts as 0.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_runtime::{Data, InputPort, InstanceInfo, OperatorError, Sink};

use super::generator::{
    GeneratorConfig, AUCTION_PROPORTION, FIRST_AUCTION_ID, FIRST_PERSON_ID, PERSON_PROPORTION,
    PROPORTION_DENOMINATOR,
};
use super::io::NdjsonFileSink;
use super::model::Event;
use super::queries::{q0::Q0, q1::Q1, q11::Q11, q2::Q2, q3::Q3, q4::Q4, q5::Q5, q7::Q7, q8::Q8};

/// Events released in wall time (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Events per wall-clock second (at least 1).
    pub rate: u64,
    /// When event 0 is due, wall-clock epoch milliseconds: the generator's base time.
    pub start_ms: i64,
    /// The same moment on the monotonic clock.
    pub anchor: Instant,
}

impl Pace {
    /// A pace of `rate` events per second from the next whole millisecond of the wall clock.
    pub fn starting_now(rate: u64) -> Self {
        let anchor = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let start_ms = wall.as_millis() + 1;
        let ahead = Duration::from_millis(start_ms as u64).saturating_sub(wall);
        Pace {
            rate: rate.max(1),
            start_ms: i64::try_from(start_ms).unwrap_or(i64::MAX),
            anchor: anchor + ahead,
        }
    }

    /// `cfg` on this pace's clock: base time [`start_ms`](Self::start_ms), `rate` events per
    /// second of event time.
    pub fn generator(&self, cfg: GeneratorConfig) -> GeneratorConfig {
        GeneratorConfig {
            base_time_ms: self.start_ms,
            event_rate: self.rate,
            ..cfg
        }
    }

    /// How many events are due at `now`: numbers `0 .. released(now)`.
    pub fn released(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.anchor) {
            None => 0,
            Some(elapsed) => {
                let due = elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000;
                u64::try_from(due).unwrap_or(u64::MAX).saturating_add(1)
            }
        }
    }

    /// When event `n` is due.
    pub fn due(&self, n: u64) -> Instant {
        let ns = u128::from(n) * 1_000_000_000 / u128::from(self.rate);
        self.anchor + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The wall-clock time `now` stands for on this pace's clock, epoch microseconds.
    pub fn wall_us(&self, now: Instant) -> i64 {
        let start = self.start_ms.saturating_mul(1000);
        match now.checked_duration_since(self.anchor) {
            Some(d) => start.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            None => {
                start.saturating_sub(i64::try_from((self.anchor - now).as_micros()).unwrap_or(0))
            }
        }
    }
}

/// What the latency of a result is computed from: the paced events and the watermark's delay
/// (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// The pace.
    pub pace: Pace,
    /// The events, on the pace's clock ([`Pace::generator`]).
    pub generator: GeneratorConfig,
    /// How far the watermark trails the largest event time, ms.
    pub max_delay_ms: i64,
}

impl Timing {
    /// The timing of `generator`'s events released at `pace`, under a watermark `max_delay_ms`
    /// behind.
    pub fn new(pace: Pace, generator: GeneratorConfig, max_delay_ms: i64) -> Self {
        Timing {
            generator: pace.generator(generator),
            pace,
            max_delay_ms,
        }
    }

    /// When event `n` was created (due), epoch µs.
    pub fn created_us(&self, n: u64) -> i64 {
        self.generator.created_us(n)
    }

    /// When the person with id `id` was created.
    pub fn person_created_us(&self, id: u64) -> i64 {
        let k = id.saturating_sub(FIRST_PERSON_ID);
        // One person opens each group of events.
        self.created_us(k * PROPORTION_DENOMINATOR)
    }

    /// When the auction with id `id` was created.
    pub fn auction_created_us(&self, id: u64) -> i64 {
        let k = id.saturating_sub(FIRST_AUCTION_ID);
        self.created_us(
            k / AUCTION_PROPORTION * PROPORTION_DENOMINATOR
                + PERSON_PROPORTION
                + k % AUCTION_PROPORTION,
        )
    }

    /// When the last event was created: the end of the input.
    pub fn end_us(&self) -> i64 {
        self.created_us(self.generator.events.saturating_sub(1))
    }

    /// When the event that moves the watermark to `end_ms` was created — the first whose time
    /// is at least `end_ms + max_delay_ms + 1` — or the end of the input, if that comes first.
    pub fn closed_us(&self, end_ms: i64) -> i64 {
        let at = end_ms
            .saturating_add(self.max_delay_ms)
            .saturating_add(1)
            .saturating_sub(self.generator.base_time_ms);
        // The first `n` with ⌊n · 1000 / rate⌋ ≥ at, that is n ≥ at · rate / 1000.
        let n = u128::try_from(at)
            .unwrap_or(0)
            .saturating_mul(u128::from(self.generator.event_rate.max(1)))
            .div_ceil(1000);
        match u64::try_from(n) {
            Ok(n) if n < self.generator.events => self.created_us(n),
            _ => self.end_us(),
        }
    }
}

/// When the input that made a result row final was created, epoch µs (see the
/// [module docs](self)).
pub trait Latency {
    /// The creation time of the input that made `self` final, under `timing`.
    fn created_us(&self, timing: &Timing) -> i64;
}

impl Latency for Q0 {
    fn created_us(&self, _: &Timing) -> i64 {
        self.created_us
    }
}

impl Latency for Q1 {
    fn created_us(&self, _: &Timing) -> i64 {
        self.created_us
    }
}

impl Latency for Q2 {
    fn created_us(&self, _: &Timing) -> i64 {
        self.created_us
    }
}

impl Latency for Q3 {
    fn created_us(&self, t: &Timing) -> i64 {
        t.auction_created_us(self.id)
            .max(t.person_created_us(self.seller))
    }
}

impl Latency for Q4 {
    fn created_us(&self, t: &Timing) -> i64 {
        t.end_us()
    }
}

impl Latency for Q5 {
    fn created_us(&self, t: &Timing) -> i64 {
        t.closed_us(self.window_end)
    }
}

impl Latency for Q7 {
    fn created_us(&self, t: &Timing) -> i64 {
        let size = super::queries::q7::SIZE.as_millis() as i64;
        t.closed_us((self.date_time.div_euclid(size) + 1) * size)
    }
}

impl Latency for Q8 {
    fn created_us(&self, t: &Timing) -> i64 {
        t.closed_us(self.starttime + super::queries::q8::SIZE.as_millis() as i64)
    }
}

impl Latency for Q11 {
    fn created_us(&self, t: &Timing) -> i64 {
        t.closed_us(self.endtime)
    }
}

impl Latency for Event {
    fn created_us(&self, t: &Timing) -> i64 {
        match self {
            Event::Person(p) => t.person_created_us(p.id),
            Event::Auction(a) => t.auction_created_us(a.id),
            Event::Bid(b) => b.created_us,
        }
    }
}

/// Sub-buckets per power of two, as bits.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: values below [`SUB`] exactly, then [`SUB`] per power of two up to 2⁶⁴.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as u64 * SUB) as usize;

/// A log-bucketed histogram of microseconds (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let e = 63 - us.leading_zeros();
        let sub = (us >> (e - SUB_BITS)) & (SUB - 1);
        ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
    }

    fn highest(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let e = (i / SUB) as u32 + SUB_BITS - 1;
        let low = (SUB + i % SUB) << (e - SUB_BITS);
        low + ((1u64 << (e - SUB_BITS)) - 1)
    }

    /// Records one value.
    pub fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The `q` quantile (`0 < q ≤ 1`): the top of the bucket holding the value of rank
    /// `⌈q · len⌉`, capped at the largest value; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::highest(i).min(self.max);
            }
        }
        self.max
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// Latency of the result rows of a paced run, milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Rows measured.
    pub rows: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of `h`, if it holds anything.
    pub fn of(h: &Histogram) -> Option<Self> {
        let ms = |us: u64| us as f64 / 1000.0;
        (!h.is_empty()).then(|| LatencySummary {
            rows: h.len(),
            p50_ms: ms(h.quantile(0.5)),
            p99_ms: ms(h.quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// What the result sink yields: the rows, and their latency in a paced run.
#[derive(Clone, Debug, Default)]
pub struct ResultCount {
    /// Result rows written or counted.
    pub rows: u64,
    /// Their latency from creation (a paced run with results), else `None`.
    pub latency: Option<LatencySummary>,
}

/// The result sink of a run: counts the rows, writes them to an NDJSON file if given one, and
/// in a paced run records each row's latency (see the [module docs](self)). Run it as one
/// instance.
#[derive(Debug)]
pub struct ResultsSink<R> {
    file: Option<NdjsonFileSink<R>>,
    timing: Option<Timing>,
    latency: Histogram,
    rows: u64,
    spare: Option<Vec<R>>,
    _rows: PhantomData<fn(R)>,
}

impl<R> ResultsSink<R> {
    /// A sink writing to `file` (or counting only), measuring latency under `timing` (or not).
    pub fn new(file: Option<PathBuf>, timing: Option<Timing>) -> Self {
        ResultsSink {
            file: file.map(NdjsonFileSink::new),
            timing,
            latency: Histogram::default(),
            rows: 0,
            spare: None,
            _rows: PhantomData,
        }
    }
}

impl<R: Serialize + Latency + Data> Sink for ResultsSink<R> {
    type Input = Vec<R>;
    type Output = ResultCount;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        match self.file.as_mut() {
            Some(file) => file.open(info),
            None => Ok(()),
        }
    }

    fn on_batch(&mut self, port: InputPort, mut batch: Vec<R>) -> Result<(), OperatorError> {
        if let Some(t) = &self.timing {
            let now = t.pace.wall_us(Instant::now());
            for row in &batch {
                let age = now.saturating_sub(row.created_us(t));
                self.latency.record(u64::try_from(age).unwrap_or(0));
            }
        }
        self.rows += batch.len() as u64;
        match self.file.as_mut() {
            Some(file) => {
                file.on_batch(port, batch)?;
                self.spare = file.take_spare();
            }
            None => {
                batch.clear();
                self.spare = Some(batch);
            }
        }
        Ok(())
    }

    fn take_spare(&mut self) -> Option<Vec<R>> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<ResultCount, OperatorError> {
        if let Some(file) = self.file.as_mut() {
            file.finish()?;
        }
        Ok(ResultCount {
            rows: self.rows,
            latency: LatencySummary::of(&self.latency),
        })
    }
}

#[cfg(test)]
mod tests;
