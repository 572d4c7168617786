//! Byte counting (and, for CSV, raw-record capture) under the parsers.
//!
//! [`Tap`] sits between a CSV parser and its source. It counts every byte the parser pulls and
//! keeps them in a sliding window so the reader can recover each record's exact raw text from the
//! parser's byte positions. The reader releases the window up to the start of the record it is
//! about to parse; the window is compacted only when the released prefix is at least half of it,
//! so the copy cost is amortised O(1) per byte and the window never holds more than about twice
//! (parser buffer + longest record).

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

/// Counts bytes read and keeps those not yet released.
///
/// A tap made with [`Tap::preloaded`] holds the whole input in its window already: reads are
/// served from the window and nothing is copied or released.
#[derive(Debug)]
pub(crate) struct Tap<R> {
    inner: R,
    read: u64,
    window: Vec<u8>,
    /// Stream offset of `window[0]`.
    base: u64,
    preloaded: bool,
    /// The first read pulls at most one byte (see [`Tap::one_byte_first`]).
    one_byte_first: bool,
}

/// Compaction never moves less than this many bytes, so small windows are not churned.
const MIN_COMPACT: usize = 4096;

impl<R> Tap<R> {
    pub(crate) fn new(inner: R) -> Self {
        Tap {
            inner,
            read: 0,
            window: Vec::new(),
            base: 0,
            preloaded: false,
            one_byte_first: false,
        }
    }

    /// This tap, its first read pulling at most one byte: a CSV parser strips a byte order mark
    /// only from a first read that holds all three of its bytes, so a tap over the middle of a
    /// file (where U+FEFF is data) hands it one byte first.
    pub(crate) fn one_byte_first(mut self) -> Self {
        self.one_byte_first = true;
        self
    }

    /// A tap over input already in memory (`inner` is never read).
    pub(crate) fn preloaded(inner: R, data: Vec<u8>) -> Self {
        Tap {
            inner,
            read: 0,
            window: data,
            base: 0,
            preloaded: true,
            one_byte_first: false,
        }
    }

    /// Bytes pulled from the inner reader so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The bytes at stream offsets `start..end`, which must not have been released.
    pub(crate) fn slice(&self, start: u64, end: u64) -> &[u8] {
        let from = usize::try_from(start.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let to = usize::try_from(end.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let to = to.min(self.window.len());
        &self.window[from.min(to)..to]
    }

    /// Allows dropping every byte before stream offset `offset`.
    pub(crate) fn release(&mut self, offset: u64) {
        if self.preloaded {
            return;
        }
        let k = usize::try_from(offset.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.window.len());
        if k >= MIN_COMPACT && k * 2 >= self.window.len() {
            self.window.drain(..k);
            self.base += k as u64;
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.preloaded {
            let from = usize::try_from(self.read)
                .unwrap_or(usize::MAX)
                .min(self.window.len());
            let n = buf.len().min(self.window.len() - from);
            buf[..n].copy_from_slice(&self.window[from..from + n]);
            self.read += n as u64;
            return Ok(n);
        }
        let want = if self.one_byte_first && self.read == 0 {
            buf.len().min(1)
        } else {
            buf.len()
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        self.window.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// A reader that adds the bytes it reads to a shared counter.
#[derive(Debug)]
pub(crate) struct CountingRead<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R> CountingRead<R> {
    pub(crate) fn new(inner: R, counter: Arc<AtomicU64>) -> Self {
        CountingRead { inner, counter }
    }
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // Relaxed: the counter is a statistic read by the reader's owner, no data hangs on it.
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A Parquet [`ChunkReader`] over a file that counts the bytes fetched.
#[derive(Debug)]
pub(crate) struct CountingFile {
    file: File,
    counter: Arc<AtomicU64>,
}

impl CountingFile {
    pub(crate) fn new(file: File, counter: Arc<AtomicU64>) -> Self {
        CountingFile { file, counter }
    }
}

impl Length for CountingFile {
    fn len(&self) -> u64 {
        Length::len(&self.file)
    }
}

impl ChunkReader for CountingFile {
    type T = CountingRead<<File as ChunkReader>::T>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(CountingRead::new(
            self.file.get_read(start)?,
            self.counter.clone(),
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.file.get_bytes(start, length)?;
        self.counter
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_keeps_unreleased_bytes_and_counts_all() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut tap = Tap::new(&data[..]);
        let mut buf = [0u8; 1000];
        let mut pos = 0u64;
        for _ in 0..20 {
            let n = tap.read(&mut buf).expect("slice read");
            pos += n as u64;
            // keep the last 100 bytes
            tap.release(pos - 100);
            assert_eq!(
                tap.slice(pos - 100, pos),
                &data[(pos - 100) as usize..pos as usize]
            );
            assert!(tap.window.len() <= 2 * MIN_COMPACT + 2000);
        }
        assert_eq!(tap.bytes_read(), 20_000);
    }
}
