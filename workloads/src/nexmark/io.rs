//! Nexmark events in and out: NDJSON files, the file and generator sources, the result file
//! sink.
//!
//! - [`write_events`] / [`write_generated`] write events as NDJSON (one line per event, the
//!   form [`model`](super::model) defines) through a large buffer.
//! - [`EventFileSource`] reads such a file (one instance): every line parsed into an
//!   [`Event`]; a line that does not parse goes to the source's dead letters with its 1-based
//!   line number and the parse error as the reason, and the run goes on. Blank lines are
//!   skipped, but counted in line numbers.
//!   It [rewinds](weir_operators::source::Rewind): its position is the [`FilePosition`]
//!   after the last batch it emitted, and [`EventFileSource::with_start`] reopens the file
//!   there, numbering lines (in dead letters) as an uninterrupted read does.
//! - [`GeneratorSource`] produces generated events a batch at a time (no more than the
//!   output's row capacity per batch); instance `i` of `n` produces
//!   [`Generator::split`]`(cfg, i, n)`, so any parallelism yields the same events. Every event
//!   being a function of the seed and its number, its position is the next event number of
//!   its instance, and [`GeneratorSource::with_start`] resumes there. Paced
//!   ([`GeneratorSource::paced`]), it emits only the events due on the wall clock, and waits on
//!   a timer while none is ([`pace`](super::pace)).
//! - [`NdjsonFileSink`] writes result rows into one NDJSON file (one instance), through a large
//!   buffer; its result is the number of rows written.
//!
//! The file source and sink do their (buffered) file I/O on the calling task: they are
//! benchmark plumbing, where a page-cache read or write of a megabyte is short next to the work
//! around it.

use std::fs::File;
use std::future::Future;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::Serialize;
use weir_operators::connector::FilePosition;
use weir_operators::source::{decode_position, encode_position, Rewind};
use weir_runtime::{
    DeadLetter, InputPort, InstanceInfo, OperatorError, Output, Sink, Source, SourceStatus,
};

use super::generator::{Generator, GeneratorConfig};
use super::model::Event;
use super::pace::Pace;

/// Buffer size of the readers and writers.
const BUFFER_BYTES: usize = 1 << 20;
/// Bytes of a malformed line kept as its dead letter's `raw`.
const RAW_PREFIX_BYTES: usize = 1024;

/// Writes `events` to `out` as NDJSON, one line each; returns how many it wrote.
///
/// # Errors
///
/// The writer's I/O errors.
pub fn write_events<W: Write>(events: impl IntoIterator<Item = Event>, out: W) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, out);
    let mut n = 0;
    for e in events {
        serde_json::to_writer(&mut out, &e)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Writes the events of `cfg` to a new file at `path` as NDJSON; returns how many it wrote.
///
/// # Errors
///
/// Creating or writing the file, with its path in the message.
pub fn write_generated(cfg: &GeneratorConfig, path: &Path) -> io::Result<u64> {
    let file = File::create(path).map_err(|e| with_path(e, "cannot create", path))?;
    write_events(Generator::new(cfg.clone()), file).map_err(|e| with_path(e, "cannot write", path))
}

/// Reads every event of an NDJSON file, failing on the first malformed line (tests and tools;
/// a pipeline uses [`EventFileSource`]).
///
/// # Errors
///
/// I/O errors, and a malformed line, with its 1-based number.
pub fn read_events(path: &Path) -> io::Result<Vec<Event>> {
    let file = File::open(path).map_err(|e| with_path(e, "cannot open", path))?;
    let mut events = Vec::new();
    for (i, line) in BufReader::with_capacity(BUFFER_BYTES, file)
        .lines()
        .enumerate()
    {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} line {}: {e}", path.display(), i + 1),
            )
        })?;
        events.push(event);
    }
    Ok(events)
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

/// A source of the events in an NDJSON file (see the [module docs](self)). Run it as one
/// instance: a second instance would read the file again.
#[derive(Debug)]
pub struct EventFileSource {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
    /// Lines read so far (from the file's start, resumed lines included).
    line_no: u64,
    /// Bytes of those lines.
    offset: u64,
}

impl EventFileSource {
    /// A source reading `path` (opened when the run starts).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_start(path, FilePosition::START)
    }

    /// A source reading `path` from `at`, a [`position`](Rewind::position) saved by a source
    /// of the same file.
    pub fn with_start(path: impl Into<PathBuf>, at: FilePosition) -> Self {
        EventFileSource {
            path: path.into(),
            reader: None,
            line: Vec::with_capacity(1024),
            line_no: at.line.saturating_sub(1),
            offset: at.offset,
        }
    }

    /// Opens the file at the start position.
    fn open_file(&mut self) -> Result<(), OperatorError> {
        let mut file = File::open(&self.path).map_err(|e| {
            OperatorError::external(format!("{}: cannot open", self.path.display()), e)
        })?;
        if self.offset > 0 {
            file.seek(SeekFrom::Start(self.offset)).map_err(|e| {
                OperatorError::external(format!("{}: cannot seek", self.path.display()), e)
            })?;
        }
        self.reader = Some(BufReader::with_capacity(BUFFER_BYTES, file));
        Ok(())
    }

    /// Reads up to `capacity` events into `batch`, dead letters into `dead`; whether the file
    /// is done.
    fn fill(
        &mut self,
        capacity: usize,
        batch: &mut Vec<Event>,
        mut dead: impl FnMut(DeadLetter),
    ) -> Result<bool, OperatorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(OperatorError::internal("polled before `open`"));
        };
        while batch.len() < capacity {
            self.line.clear();
            let read = reader.read_until(b'\n', &mut self.line).map_err(|e| {
                OperatorError::external(format!("{}: cannot read", self.path.display()), e)
            })?;
            if read == 0 {
                return Ok(true);
            }
            self.line_no += 1;
            self.offset += read as u64;
            let text = trim_line(&self.line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Event>(text) {
                Ok(event) => batch.push(event),
                Err(e) => {
                    let raw = &text[..text.len().min(RAW_PREFIX_BYTES)];
                    dead(
                        DeadLetter::new(e.to_string(), String::from_utf8_lossy(raw))
                            .at_line(self.line_no),
                    );
                }
            }
        }
        Ok(false)
    }
}

impl Rewind for EventFileSource {
    type Position = FilePosition;

    /// The byte offset and line after the last batch emitted.
    fn position(&self) -> FilePosition {
        FilePosition {
            offset: self.offset,
            line: self.line_no + 1,
        }
    }
}

impl Source for EventFileSource {
    type Output = Vec<Event>;

    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        self.open_file()
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    /// The [`position`](Rewind::position) after the last batch emitted.
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        encode_position(self)
    }

    /// Reopens the file at a checkpoint's position.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let at: FilePosition = decode_position(position)?;
        self.offset = at.offset;
        self.line_no = at.line.saturating_sub(1);
        self.open_file()
    }

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<Vec<Event>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let capacity = out.row_capacity();
        let mut batch = out.batch_with_capacity(capacity);
        let done = match self.fill(capacity, &mut batch, |d| out.dead_letter(d)) {
            Ok(done) => done,
            Err(e) => return Poll::Ready(Err(e)),
        };
        out.emit(batch);
        Poll::Ready(Ok(if done {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// The line without its `\n` or `\r\n`.
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A source of generated events (see the [module docs](self)).
#[derive(Debug)]
pub struct GeneratorSource {
    cfg: GeneratorConfig,
    generator: Option<Generator>,
    /// The event number to start at (a restored position), instead of the instance's first.
    start: Option<u64>,
    pace: Option<Pace>,
    /// The wait for the next due event, in a paced run.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GeneratorSource {
    /// A source of `cfg`'s events, shared among its instances, as fast as they are taken.
    pub fn new(cfg: GeneratorConfig) -> Self {
        GeneratorSource {
            cfg,
            generator: None,
            start: None,
            pace: None,
            sleep: None,
        }
    }

    /// [`new`](Self::new), resuming at event number `next`: a [`position`](Rewind::position)
    /// saved by the same instance of a run with the same parallelism (`open` fails otherwise).
    pub fn with_start(cfg: GeneratorConfig, next: u64) -> Self {
        GeneratorSource {
            start: Some(next),
            ..Self::new(cfg)
        }
    }

    /// A source of `cfg`'s events on `pace`'s clock ([`Pace::generator`]), each emitted once it
    /// is due.
    pub fn paced(cfg: GeneratorConfig, pace: Pace) -> Self {
        GeneratorSource {
            cfg: pace.generator(cfg),
            generator: None,
            start: None,
            pace: Some(pace),
            sleep: None,
        }
    }

    /// The events due now, or, if none is, `None` once a wake-up is arranged for the next.
    fn due(&mut self, cx: &mut Context<'_>, pace: Pace, next: u64) -> Option<u64> {
        loop {
            let released = pace.released(Instant::now());
            if released > next {
                return Some(released);
            }
            let due = tokio::time::Instant::from_std(pace.due(next));
            match self.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(due),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(due))),
            }
            let sleep = self.sleep.as_mut()?;
            if sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl Rewind for GeneratorSource {
    type Position = u64;

    /// The next event number this instance will produce (its start before `open`).
    fn position(&self) -> u64 {
        match &self.generator {
            Some(g) => g.next_number(),
            None => self.start.unwrap_or(0),
        }
    }
}

impl Source for GeneratorSource {
    type Output = Vec<Event>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        let (index, count) = (info.instance as u64, info.parallelism.max(1) as u64);
        let mut generator = Generator::split(self.cfg.clone(), index, count);
        if let Some(next) = self.start {
            generator.resume_at(next).map_err(OperatorError::user)?;
        }
        self.generator = Some(generator);
        Ok(())
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    /// The next event number this instance will produce.
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        encode_position(self)
    }

    /// Resumes at a checkpoint's event number (the same instance at the same parallelism).
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let next: u64 = decode_position(position)?;
        let Some(generator) = self.generator.as_mut() else {
            return Err(OperatorError::internal("restored before `open`"));
        };
        generator.resume_at(next).map_err(OperatorError::user)?;
        self.start = Some(next);
        Ok(())
    }

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Event>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let Some(next) = self.generator.as_ref().map(Generator::next_left) else {
            return Poll::Ready(Err(OperatorError::internal("polled before `open`")));
        };
        let below = match (self.pace, next) {
            (Some(pace), Some(next)) => match self.due(cx, pace, next) {
                Some(released) => released,
                None => return Poll::Pending,
            },
            _ => u64::MAX,
        };
        let Some(generator) = self.generator.as_mut() else {
            return Poll::Ready(Err(OperatorError::internal("polled before `open`")));
        };
        let capacity = out.row_capacity();
        let mut batch = out.batch_with_capacity(capacity);
        generator.fill_below(&mut batch, capacity, below);
        out.emit(batch);
        Poll::Ready(Ok(if generator.remaining() == 0 {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// Writes rows into one NDJSON file (see the [module docs](self)); its result is the number of
/// rows written. Run it as one instance.
#[derive(Debug)]
pub struct NdjsonFileSink<T> {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    rows: u64,
    spare: Option<Vec<T>>,
    _rows: PhantomData<fn(T)>,
}

impl<T> NdjsonFileSink<T> {
    /// A sink writing to `path`, created (or truncated) when the run starts.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        NdjsonFileSink {
            path: path.into(),
            out: None,
            rows: 0,
            spare: None,
            _rows: PhantomData,
        }
    }

    fn error(
        &self,
        what: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> OperatorError {
        OperatorError::external(format!("{}: {what}", self.path.display()), e)
    }
}

impl<T: Serialize + weir_runtime::Data> Sink for NdjsonFileSink<T> {
    type Input = Vec<T>;
    type Output = u64;

    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        let file = File::create(&self.path).map_err(|e| self.error("cannot create", e))?;
        self.out = Some(BufWriter::with_capacity(BUFFER_BYTES, file));
        Ok(())
    }

    fn on_batch(&mut self, _: InputPort, mut batch: Vec<T>) -> Result<(), OperatorError> {
        let Some(out) = self.out.as_mut() else {
            return Err(OperatorError::internal("a batch before `open`"));
        };
        let mut failed = None;
        for row in &batch {
            if let Err(e) = serde_json::to_writer(&mut *out, row) {
                failed = Some(e);
                break;
            }
            if let Err(e) = out.write_all(b"\n") {
                failed = Some(serde_json::Error::io(e));
                break;
            }
        }
        if let Some(e) = failed {
            return Err(self.error("cannot write", e));
        }
        self.rows += batch.len() as u64;
        batch.clear();
        self.spare = Some(batch);
        Ok(())
    }

    fn take_spare(&mut self) -> Option<Vec<T>> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| self.error("cannot write", e))?;
        }
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_round_trip_through_ndjson() {
        let cfg = GeneratorConfig {
            events: 2_000,
            ..GeneratorConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        assert_eq!(write_generated(&cfg, &path).unwrap(), 2_000);
        let back = read_events(&path).unwrap();
        // A bid's creation stamp is not part of its line: a file's bids have none.
        let unstamped = |mut e: Event| {
            if let Event::Bid(b) = &mut e {
                b.created_us = 0;
            }
            e
        };
        let whole: Vec<Event> = Generator::new(cfg).map(unstamped).collect();
        assert_eq!(back, whole);
    }

    /// Positions after each batch, with the events and dead letters read by then.
    type Marks = Vec<(FilePosition, usize, usize)>;
    /// Dead letters as (line, reason).
    type Dead = Vec<(Option<u64>, String)>;

    /// Events and dead letters of `path` read from `at` in batches of `rows`, with the
    /// position after each batch.
    fn read_from(path: &Path, at: FilePosition, rows: usize) -> (Vec<Event>, Dead, Marks) {
        let mut source = EventFileSource::with_start(path, at);
        assert_eq!(source.position(), at);
        source.open_file().unwrap();
        let (mut events, mut dead, mut marks) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let mut batch = Vec::new();
            let done = source
                .fill(rows, &mut batch, |d| dead.push((d.line, d.reason)))
                .unwrap();
            events.extend(batch);
            marks.push((source.position(), events.len(), dead.len()));
            if done {
                return (events, dead, marks);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// For every position reported after a batch, the events and dead letters before it
        /// and those of a source started there are those of one uninterrupted read.
        #[test]
        fn the_file_source_resumed_at_any_reported_position_completes_the_read(
            kinds in proptest::collection::vec(0u8..5, 0..40),
            rows in 1usize..5,
        ) {
            let cfg = GeneratorConfig { events: 40, ..GeneratorConfig::default() };
            let mut events = Generator::new(cfg);
            let mut text = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                match kind {
                    0 | 1 => {
                        serde_json::to_writer(&mut text, &events.next().unwrap()).unwrap();
                    }
                    2 => text.extend_from_slice(b"{\"event_type\":9}"),
                    3 => {}
                    _ => text.extend_from_slice(b"  "),
                }
                if i + 1 < kinds.len() {
                    text.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.ndjson");
            std::fs::write(&path, &text).unwrap();
            let (whole, dead, marks) = read_from(&path, FilePosition::START, rows);
            for &(at, n, d) in &marks {
                let (rest, rest_dead, _) = read_from(&path, at, rows);
                proptest::prop_assert_eq!([&whole[..n], &rest].concat(), whole.clone());
                proptest::prop_assert_eq!([&dead[..d], &rest_dead].concat(), dead.clone());
            }
            let end = marks.last().unwrap().0;
            proptest::prop_assert_eq!(end.offset, text.len() as u64);
        }
    }

    #[test]
    fn the_generator_resumes_at_its_position_in_every_split() {
        let cfg = GeneratorConfig {
            events: 103,
            ..GeneratorConfig::default()
        };
        for count in [1, 3] {
            for index in 0..count {
                let whole: Vec<Event> = Generator::split(cfg.clone(), index, count).collect();
                let mut g = Generator::split(cfg.clone(), index, count);
                let mut batch = Vec::new();
                for stop in 0..=whole.len() {
                    let mut resumed = Generator::split(cfg.clone(), index, count);
                    resumed.resume_at(g.next_number()).unwrap();
                    let rest: Vec<Event> = resumed.collect();
                    assert_eq!(
                        [&batch[..], &rest].concat(),
                        whole,
                        "{index} of {count} at {stop}"
                    );
                    g.fill(&mut batch, 1);
                }
            }
        }
        let mut g = Generator::split(cfg, 1, 3);
        let err = g.resume_at(5).unwrap_err();
        assert!(err.contains("instance 1 of 3"), "{err}");
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_its_line_for_read_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ndjson");
        std::fs::write(&path, "\n{\"event_type\":9}\n").unwrap();
        let err = read_events(&path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
