//! Where a durable [`HttpSource`] stands in its log, for checkpoints: [`LogPosition`].

use serde::{Deserialize, Serialize};

use super::{HttpSource, HttpSourceError, HttpSourceHandle};
use crate::source::Rewind;

/// A durable HTTP source's position in its log.
///
/// With [`Ack::Durable`](super::Ack::Durable) every accepted record has a sequence number in the source's
/// write-ahead log, and the source hands records on in sequence order (replayed ones first).
/// So the source's position is one number, [`LogPosition::next_seq`]: every record below it was
/// handed to the source's output, none at or above it was. A checkpoint stores it
/// ([`Rewind::position`]), and:
///
/// * **restore**: [`HttpSource::bind_at`] opens the same log and replays only the records at or
///   above the position: those below were emitted before the checkpoint, and the checkpoint
///   holds their effects. The log must still hold every record from the position on: a
///   position below the log's commit cursor (its records released) or past its end (another
///   log) is refused with [`HttpSourceError::Position`];
/// * **release**: once a checkpoint covering the position is complete,
///   [`HttpSource::release_through`] (or [`HttpSourceHandle::release_through`], from outside
///   the pipeline) commits the log below the position: the commit cursor is fsynced and the
///   segments that hold only records below it are deleted.
///
/// In a checkpointed pipeline the source does all three itself: its
/// [`Source::snapshot`](weir_runtime::Source::snapshot) is its position, its
/// [`Source::restore`](weir_runtime::Source::restore) resumes there, and its
/// [`Source::notify_checkpoint_complete`](weir_runtime::Source::notify_checkpoint_complete)
/// releases through it; it then sends no barriers of its own. Without checkpoints the
/// at-least-once path is unchanged: barriers the sinks have handled commit the log; both
/// only ever move the cursor forward.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// Every record with a lower sequence number was handed on; none at or above it.
    pub next_seq: u64,
}

impl HttpSource {
    /// The position after the last record handed to the output (before the first: the
    /// position it was opened at, or the log's commit cursor); `None` without
    /// [`Ack::Durable`](super::Ack::Durable).
    pub fn log_position(&self) -> Option<LogPosition> {
        self.durable.as_ref().map(|d| LogPosition {
            next_seq: d.emitted.map_or(d.start, |seq| seq + 1).max(d.start),
        })
    }

    /// Frees the log below `at`: a checkpoint covering `at` is complete (see
    /// [`LogPosition`]).
    ///
    /// # Errors
    /// As [`HttpSourceHandle::release_through`].
    pub fn release_through(&self, at: LogPosition) -> Result<(), HttpSourceError> {
        self.handle.release_through(at)
    }
}

impl Rewind for HttpSource {
    /// `None` without durable acknowledgement: such a source has no log to rewind in.
    type Position = Option<LogPosition>;

    fn position(&self) -> Option<LogPosition> {
        self.log_position()
    }
}

impl HttpSourceHandle {
    /// Commits the source's log below `at` (a [`LogPosition`] the source reported, covered by
    /// a complete checkpoint): the cursor is fsynced, then the segments holding only records
    /// below it are deleted. A position at or below the cursor changes nothing.
    ///
    /// # Errors
    /// [`HttpSourceError::Config`] without durable acknowledgement; [`HttpSourceError::Log`]
    /// for a position past the records appended, or if the cursor cannot be written.
    pub fn release_through(&self, at: LogPosition) -> Result<(), HttpSourceError> {
        let Some(log) = &self.intake.durable else {
            return Err(HttpSourceError::Config(
                "release_through needs durable acknowledgement (Ack::Durable): only then has \
                 the source a log",
            ));
        };
        log.release_through(at.next_seq)
            .map_err(HttpSourceError::Log)
    }
}

#[cfg(test)]
#[path = "position_tests.rs"]
mod tests;
