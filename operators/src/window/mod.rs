//! Event-time windows: tumbling, sliding and session windows over keyed and unkeyed streams,
//! aggregated with any [`Aggregate`](crate::keyed::aggregate::Aggregate).
//!
//! ```text
//! orders.key_by(|o| o.country)
//!       .window(Tumbling::of(Duration::from_secs(60)), |o| Timestamp(o.ts))
//!       .allowed_lateness(Duration::from_secs(5))
//!       .aggregate("per_minute", Count::new())          → Stream<Windowed<Country, u64>>
//! ```
//!
//! This module owns window assignment ([`Assigner`]), the per-`(key, window)`
//! state and its cleanup, the window operator (firing, lateness, late rows) and the graph
//! `.aggregate(..)` builds. The event time of a row is what the extractor given to
//! [`window`](WindowExt::window) returns ([`Timestamp`](weir_runtime::Timestamp), ms); the
//! watermark is whatever the runtime delivers to the operator (the minimum over its inputs).
//!
//! # Semantics
//!
//! Where the issue that asked for windows is silent, a Flink DataStream user's expectation is
//! the rule.
//!
//! - **Windows** are half-open, epoch-aligned intervals `[start, end)` of milliseconds.
//!   [`Tumbling`]: `start = ⌊t/size⌋·size`, floor division for negative `t` too. [`Sliding`]
//!   (hop): `[k·slide, k·slide + size)` for every `k`, and a row belongs to every such window
//!   containing it; `slide ≤ size` is required. [`Session`]: each row opens `[t, t + gap)` and
//!   the windows of one key that overlap merge; since the end is exclusive, a row at exactly
//!   `last + gap` starts a new session. No offsets.
//! - **Firing.** A watermark `w` means no row with an event time below `w` follows
//!   ([`Message::Watermark`](weir_runtime::Message::Watermark)), so a window `[s, e)` is complete
//!   and fires when the watermark reaches `w ≥ e`. On each watermark an instance emits the
//!   results of the windows it closes in end order (ties by start), then forwards the
//!   watermark: everything a window stage emits for a window precedes the watermark that
//!   closed it, so windows stacked on window results line up. A result carries the event time
//!   `end − 1 ms` ([`Windowed::timestamp`]), as in Flink.
//! - **End of input** (and a watermark of `i64::MAX`) fires every window still held.
//! - **Lateness** has one meaning: a row is *late* when its window has been cleaned up, i.e.
//!   the watermark when it arrives is at or past `end + allowed_lateness`. Late rows go to the
//!   late output ([`WindowedStream::aggregate_with_late`]), whose operator `name.late` counts
//!   them in the run report ([`late_rows`]); [`WindowedStream::aggregate`], which returns no
//!   late stream, counts them as skipped by its operator `name.results`. Never silently
//!   dropped.
//!   - A sliding row is late only when *every* window containing it is cleaned up; otherwise
//!     it updates the windows that are still held and the cleaned-up ones never see it.
//!   - A session row is first merged, as in Flink: it is late only when its own window
//!     `[t, t + gap)` is cleaned up *and* it overlaps no session the instance still holds.
//! - **Updates.** A row that arrives after its window fired, within the allowed lateness,
//!   makes the window fire again with its updated value, at the end of the batch that brought
//!   the row, with [`Windowed::firing`] one higher: the result with the highest `firing` of a
//!   window replaces the earlier ones. A window that never fired and first gets a row within
//!   its lateness fires then with `firing == 0`. A session update may cover a wider window
//!   than the results it replaces (a row bridged two sessions): its `firing` is one more than
//!   the highest of the sessions it absorbed.
//! - **State** is one accumulator per `(key, window)`, held from the window's first row until
//!   the watermark reaches `end + allowed_lateness` (with no lateness: until it fires). The
//!   report's `state_keys` counts these windows and `state_bytes` their memory, which returns
//!   to zero when no window is held. An instance holds at most
//!   [`max_windows`](WindowedStream::max_windows) of them (default: the keyed stream's
//!   `max_keys`); a final stage past it fails the run, naming the bound.
//! - **Parallelism and hot keys.** The keyed stream's configuration applies. With
//!   [`Strategy::Hash`](crate::keyed::route::Strategy::Hash) each key's windows live on one
//!   instance. With a splitting strategy (`Pkg`, `HotKeySplit`) a key's rows spread over
//!   several instances of `name.partial`, which pre-aggregate per `(key, window)` and hand
//!   each window's partial accumulator on when the watermark passes its end (and updates
//!   within the lateness at the end of their batch); a hash shuffle brings every partial of a
//!   `(key, window)` to one instance of `name`, which merges them (sessions: by overlap) and
//!   fires on its watermark, the minimum over the partial instances — so it has every partial
//!   of a window before it fires it. A partial session is handed on as soon as the watermark
//!   passes its *start*: a row that could still extend it elsewhere has an event time below
//!   its end, and every such row is in some partial handed on before the watermark passes
//!   that end. (So sessions pre-aggregate for about the watermark's delay, not their length.) A combiner ([`WindowedStream::combine`] or the keyed
//!   stream's) pre-aggregates the same way before the shuffle, in `name.combine`. Lateness is
//!   decided where raw rows first arrive (the combiner, else the partial or final stage), by
//!   that instance's watermark; late rows then pass through to `name.late`.
//!   With a splitting strategy, rows that arrive behind the watermark (event time below it)
//!   may group into sessions differently than with `Hash`: a session row whose own window is
//!   cleaned up is judged against the sessions its instance holds, and may be late although
//!   another instance holds an overlapping session; one that is not late may meet, at the
//!   merge stage, a session its own instance had already seen fire. Rows at or ahead of the
//!   watermark group exactly as with `Hash` (the default), where the rules above hold exactly.
//! - **Checkpoints.** A window stage's state — every `(key, window)` accumulator, open, fired
//!   within its lateness or due, with its firings — and the watermark it last saw can be written
//!   by key group and restored at another parallelism
//!   ([`KeyedSnapshot`](crate::snapshot::KeyedSnapshot); key and accumulator must be serde
//!   types). Restored pieces of one `(key, window)` merge, sessions by overlap.
//! - **Unkeyed** streams ([`WindowAllExt::window_all`]) are windowed as one key `()` on one
//!   final instance, as Flink's `windowAll`; a combiner spreads the pre-aggregation.
//! - **Output volume.** A watermark that closes many windows at once, and the end of the
//!   input, emit their results in one call: bounded by the windows held
//!   ([`max_windows`](WindowedStream::max_windows)), and the state they came from is freed in
//!   the same call, so the report's state figures are exact at every step.
//!
//! # Graph
//!
//! ```text
//! Strategy::Hash, aggregate_with_late:
//!   rows ──hash(key)──▶ name [p] ──┬─▶ name.results ──▶ Windowed<K, Output>
//!                                  └─▶ name.late ──▶ late rows
//! Strategy::Hash, aggregate (late rows counted as skipped by name.results):
//!   rows ──hash(key)──▶ name [p] ──▶ name.results ──▶ Windowed<K, Output>
//! splitting strategy:
//!   rows ──pkg/split(key)──▶ name.partial [p] ──hash(key)──▶ name [p_merge] ──┬─▶ …as above
//! with a combiner:
//!   rows ──▶ name.combine [c] ──<strategy>(key)──▶ … as above, merging partials
//! ```
//!
//! `name.results` and `name.late` run beside `name` (same parallelism, so each instance feeds
//! its own pair) and take apart what it emits. Without a late stream `name.results` is
//! `name`'s only consumer, so it runs in `name`'s task (chained): the watermark that follows
//! every batch then makes no hop of its own to a branch that would take nothing else.
#![warn(missing_docs)]

mod assign;
mod stage;
mod state;
mod stream;
mod table;
#[cfg(test)]
mod tests;

pub use assign::{Assigner, Session, Sliding, Tumbling};
pub use stream::{
    late_rows, WindowAllExt, WindowExt, Windowed, WindowedStream, LATE_SINK_SUFFIX, LATE_SUFFIX,
    RESULTS_SUFFIX,
};
