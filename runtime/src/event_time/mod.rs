//! Event time at the sources: timestamps, watermark strategies, idleness and alignment.
//!
//! A source given a [`WatermarkStrategy`] (with
//! [`StreamCore::with_watermarks`](crate::StreamCore::with_watermarks)) sends watermarks in-band
//! with its batches. This module owns the strategies and the state they keep; the source's run
//! loop (`exec/source_time.rs`) applies them, and `exec/inputs.rs` combines what arrives.
//!
//! # Semantic choices
//!
//! - **Timestamps** are milliseconds since the Unix epoch ([`Timestamp`]). They are read from
//!   each row by a function (`Vec<T>` batches) or from a column of an Arrow batch
//!   (`Timestamp` of any unit, converted to milliseconds, or `Int64` milliseconds; null event
//!   times are skipped).
//! - **Bounded out-of-orderness** follows Flink's definition: after a batch, the watermark is
//!   `max − bound − 1 ms`, where `max` is the largest event time seen so far, so a row exactly
//!   `bound` behind the largest is still on time. Weir's watermark contract ("no row *below*
//!   the watermark follows") makes this one millisecond more cautious than it needs to be, never
//!   less. **Monotonic** is the same with a bound of zero. **Punctuated** takes the largest
//!   value a user function returned for any row so far, as given. **None** sends no watermark
//!   until the end of the input.
//! - **When**: a watermark is computed from the batches a source call sealed, never per row,
//!   and sent once after them (at most one per batch, in order, taking an edge slot like any
//!   message: it never bypasses credit). Rows still in a partial batch are not counted until
//!   that batch is cut, and they follow the watermark; under the bound they are not late.
//!   Watermarks never go backwards.
//! - **End**: a source with a strategy sends `Watermark(`[`Timestamp::MAX`]`)` before the end
//!   of its stream (also when stopped), so every window closes. Downstream, an ended input no
//!   longer holds the minimum back; once every input has ended the minimum is `+∞`.
//! - **Blocked is not idle.** An instance waiting for credit (or paused by alignment) is
//!   *blocked*: it may hold unread rows older than anything sent, so it keeps holding the
//!   watermark back, however long it waits. Only an instance whose source returned `Pending`
//!   with no rows for the strategy's idle timeout is *idle* (time spent blocked meanwhile
//!   restarts the count): it sends [`Message::Idle`](crate::Message::Idle), and downstream
//!   leaves it out of the minimum until its next batch or watermark makes it active again.
//! - **Rejoining** does not move anything backwards: the rejoining instance's own watermark
//!   continues from where it was, and downstream minimums never decrease, so the combined
//!   watermark simply waits until the rejoined input catches up with what was already sent.
//!   Rows it brings that are older than the downstream watermark are passed on as they are;
//!   they are *late* for event-time operators (windows route them to their late output and
//!   count them), never dropped by the runtime.
//! - **Alignment is backpressure.** Instances whose strategies name the same alignment group
//!   share their watermarks. An instance more than `max_drift` ahead of the slowest active
//!   member is *paused*: it is not polled, exactly as if it had no credit, until the minimum
//!   catches up. Idle members and ended members do not count; the slowest member is never
//!   paused (so a group always makes progress); a member with no watermark yet counts as the
//!   beginning of time; a source whose strategy is `none` takes no part in alignment.
//!   The drift between members' sent watermarks therefore stays within `max_drift` plus what
//!   one source call reads.

mod align;
mod assign;
mod strategy;

pub(crate) use align::{AlignGroups, Member};
pub(crate) use assign::Assign;
pub(crate) use strategy::Stamper;
pub use strategy::{Untimed, WatermarkStrategy};

use crate::batch::Timestamp;

/// What a source instance is doing in event time, as the run report shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventTimeState {
    /// Reading, or waiting for data for less than its idle timeout: it holds the watermark.
    Active,
    /// Waiting for credit downstream: it holds the watermark back (it may have unread rows).
    Blocked,
    /// No data for its idle timeout: left out of watermark minimums and of alignment.
    Idle,
    /// Paused by watermark alignment: too far ahead of the slowest instance of its group.
    Paused,
    /// Its input has ended (it sent the `+∞` watermark).
    Ended,
}

impl EventTimeState {
    pub(crate) fn code(self) -> u8 {
        match self {
            EventTimeState::Active => 1,
            EventTimeState::Blocked => 2,
            EventTimeState::Idle => 3,
            EventTimeState::Paused => 4,
            EventTimeState::Ended => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => EventTimeState::Active,
            2 => EventTimeState::Blocked,
            3 => EventTimeState::Idle,
            4 => EventTimeState::Paused,
            5 => EventTimeState::Ended,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventTimeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventTimeState::Active => "active",
            EventTimeState::Blocked => "blocked",
            EventTimeState::Idle => "idle",
            EventTimeState::Paused => "paused by alignment",
            EventTimeState::Ended => "ended",
        })
    }
}

/// The watermark after `max` under a bound of `bound` ms: `max − bound − 1` (Flink's), never
/// below [`Timestamp::MIN`].
pub(crate) fn bounded_watermark(max: i64, bound: i64) -> Timestamp {
    Timestamp(max.saturating_sub(bound).saturating_sub(1))
}
