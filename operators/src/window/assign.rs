//! Window assigners: which windows an event time belongs to.
//!
//! All windows are epoch-aligned half-open intervals `[start, end)` of event time in
//! milliseconds. Arithmetic saturates at the ends of `i64`, so an extreme timestamp lands in a
//! clipped window instead of overflowing.

use std::time::Duration;

/// Milliseconds in `d`, at least 1 and at most `i64::MAX`.
fn millis(d: Duration, what: &str) -> i64 {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    assert!(ms >= 1, "{what} must be at least 1 ms, got {d:?}");
    ms
}

/// Fixed-size, non-overlapping windows: a row at `t` belongs to `[⌊t/size⌋·size, … + size)`
/// (floor division, also for negative `t`).
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::{Assigner, Tumbling};
///
/// let minute = Assigner::from(Tumbling::of(Duration::from_secs(60)));
/// assert_eq!(minute.windows_of(61_000), vec![(60_000, 120_000)]);
/// assert_eq!(minute.windows_of(-1), vec![(-60_000, 0)]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tumbling {
    size: i64,
}

impl Tumbling {
    /// Windows of `size`.
    ///
    /// # Panics
    ///
    /// If `size` is under 1 ms.
    pub fn of(size: Duration) -> Self {
        Self {
            size: millis(size, "a tumbling window's size"),
        }
    }

    /// The size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }
}

/// Overlapping windows of `size` every `slide` (hop windows): `[k·slide, k·slide + size)` for
/// every integer `k`; a row belongs to each of them that contains it (`size / slide` of them
/// when `slide` divides `size`).
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::{Assigner, Sliding};
///
/// let hop = Assigner::from(Sliding::of(Duration::from_millis(10), Duration::from_millis(5)));
/// assert_eq!(hop.windows_of(7), vec![(0, 10), (5, 15)]);
/// assert_eq!(hop.windows_of(10), vec![(5, 15), (10, 20)]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    size: i64,
    slide: i64,
}

impl Sliding {
    /// Windows of `size` starting every `slide`.
    ///
    /// # Panics
    ///
    /// If either is under 1 ms, or `slide` exceeds `size` (rows between windows would belong
    /// to none; sample the stream first if that is what you want).
    pub fn of(size: Duration, slide: Duration) -> Self {
        let size = millis(size, "a sliding window's size");
        let slide = millis(slide, "a sliding window's slide");
        assert!(
            slide <= size,
            "a sliding window's slide ({slide} ms) must not exceed its size ({size} ms)"
        );
        Self { size, slide }
    }

    /// The size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// The slide in milliseconds.
    pub fn slide_ms(&self) -> i64 {
        self.slide
    }
}

/// Session windows: each row opens `[t, t + gap)`, and windows of one key that overlap merge
/// into one. A row at exactly `last + gap` does not overlap (the end is exclusive) and starts a
/// new session.
///
/// ```
/// use std::time::Duration;
/// use weir_operators::window::{Assigner, Session};
///
/// let session = Assigner::from(Session::with_gap(Duration::from_millis(30)));
/// assert_eq!(session.windows_of(100), vec![(100, 130)]); // before any merging
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    gap: i64,
}

impl Session {
    /// Sessions that close after `gap` without a row.
    ///
    /// # Panics
    ///
    /// If `gap` is under 1 ms.
    pub fn with_gap(gap: Duration) -> Self {
        Self {
            gap: millis(gap, "a session gap"),
        }
    }

    /// The gap in milliseconds.
    pub fn gap_ms(&self) -> i64 {
        self.gap
    }
}

/// A window assigner: one of [`Tumbling`], [`Sliding`] or [`Session`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigner {
    /// See [`Tumbling`].
    Tumbling(Tumbling),
    /// See [`Sliding`].
    Sliding(Sliding),
    /// See [`Session`].
    Session(Session),
}

impl From<Tumbling> for Assigner {
    fn from(t: Tumbling) -> Self {
        Assigner::Tumbling(t)
    }
}

impl From<Sliding> for Assigner {
    fn from(s: Sliding) -> Self {
        Assigner::Sliding(s)
    }
}

impl From<Session> for Assigner {
    fn from(s: Session) -> Self {
        Assigner::Session(s)
    }
}

impl Assigner {
    /// Whether windows of one key merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, Assigner::Session(_))
    }

    /// Calls `f(start, end)` for every window a row at `t` belongs to, in start order (for
    /// sessions: the row's own window, before any merging).
    #[inline]
    pub(crate) fn each_window(&self, t: i64, mut f: impl FnMut(i64, i64)) {
        match *self {
            Assigner::Tumbling(Tumbling { size }) => {
                let start = t.div_euclid(size).saturating_mul(size);
                f(start, start.saturating_add(size));
            }
            Assigner::Sliding(Sliding { size, slide }) => {
                // k·slide ≤ t < k·slide + size  ⇔  ⌊(t − size)/slide⌋ < k ≤ ⌊t/slide⌋
                let last = t.div_euclid(slide);
                let first = t.saturating_sub(size).div_euclid(slide) + 1;
                for k in first..=last {
                    let start = k.saturating_mul(slide);
                    f(start, start.saturating_add(size));
                }
            }
            Assigner::Session(Session { gap }) => f(t, t.saturating_add(gap)),
        }
    }

    /// The windows `(start, end)` a row at `t` belongs to, in start order (for sessions: the
    /// row's own window, before any merging).
    pub fn windows_of(&self, t: i64) -> Vec<(i64, i64)> {
        let mut windows = Vec::new();
        self.each_window(t, |s, e| windows.push((s, e)));
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tumbling_floors_negative_times() {
        let a = Assigner::from(Tumbling::of(ms(10)));
        assert_eq!(a.windows_of(0), [(0, 10)]);
        assert_eq!(a.windows_of(9), [(0, 10)]);
        assert_eq!(a.windows_of(10), [(10, 20)]);
        assert_eq!(a.windows_of(-1), [(-10, 0)]);
        assert_eq!(a.windows_of(-10), [(-10, 0)]);
        assert_eq!(a.windows_of(-11), [(-20, -10)]);
    }

    #[test]
    fn sliding_windows_are_every_window_containing_t() {
        for (size, slide) in [(10, 5), (10, 3), (7, 7), (9, 2)] {
            let a = Assigner::from(Sliding::of(ms(size), ms(slide)));
            for t in -40i64..40 {
                let (size, slide) = (size as i64, slide as i64);
                let expected: Vec<(i64, i64)> = (-100..100)
                    .map(|k| (k * slide, k * slide + size))
                    .filter(|&(s, e)| s <= t && t < e)
                    .collect();
                assert_eq!(a.windows_of(t), expected, "t {t} size {size} slide {slide}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "must not exceed its size")]
    fn sliding_refuses_gaps_between_windows() {
        let _ = Sliding::of(ms(5), ms(10));
    }

    #[test]
    #[should_panic(expected = "at least 1 ms")]
    fn sizes_below_a_millisecond_are_refused() {
        let _ = Tumbling::of(Duration::from_micros(10));
    }
}
