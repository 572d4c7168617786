//! A bounded on-disk FIFO of byte records, the storage behind the `Spill { dir, max_bytes }`
//! overflow policy.
//!
//! # Layout
//!
//! The queue owns one directory. Records are appended to *segment* files named
//! `seg-<id>.spill` (ids increase by one, zero-padded to 20 digits); each record is a frame
//! `len: u32 LE | crc32: u32 LE | payload`, the checksum (CRC-32, IEEE) covering the length and
//! the payload. The oldest segment is read, the newest is written:
//!
//! ```text
//!   seg-…07.spill          seg-…08.spill        seg-…09.spill
//!  [consumed|f f f f]     [f f f f f f f]      [f f f      ]  <- push appends here
//!           ^ read position (persisted in `cursor`)
//! ```
//!
//! A push rolls to a new segment when the frame would take the newest one past
//! `segment_bytes` (a record larger than that gets a segment of its own). When the reader
//! leaves a segment it persists the new position and then deletes the file. The read position
//! lives in a 64-byte `cursor` file holding two checksummed slots written alternately, so a torn
//! cursor write falls back to the previous position instead of losing it.
//!
//! # Bound
//!
//! `bytes()` is the sum of the segment files' sizes, and a push that would take it past
//! `max_bytes` fails with [`SpillError::Full`]: the directory never holds more than `max_bytes`
//! of segments (plus the 64-byte cursor). Consumed bytes at the start of the oldest segment still
//! occupy disk until the reader leaves that segment, so pending records can always use at least
//! `max_bytes - segment_bytes`; when the queue is empty a push that would not fit first starts a
//! fresh segment, which gives the whole bound back.
//!
//! # Durability contract
//!
//! * `push` writes the frame to the file with one `write` before it returns; `pop` writes the
//!   new read position to the cursor file before it returns. Neither calls `fsync`.
//! * Dropping the queue and opening the directory again returns exactly the records that were
//!   pushed and not popped, in order. The same holds after the *process* dies (panic, abort,
//!   kill): the data is in the OS page cache. A crash inside a `pop` call, between its cursor
//!   write and its return, loses that one record.
//! * [`sync`](SpillQueue::sync) fsyncs the segments written since the last sync, the cursor and
//!   the directory. After an OS crash or power loss, records pushed since the last `sync` may be
//!   lost (a torn tail is trimmed, see below) and records popped since the last `sync` may be
//!   delivered again: **at-least-once** for synced records.
//!
//! # Recovery on open
//!
//! Opening scans every unconsumed frame once (reading at most `max_bytes`, verifying checksums
//! in 8 KiB chunks) to count the records and check the newest segment's end:
//!
//! * **Torn tail.** In the newest segment, a partial frame at the end, or a last frame whose
//!   checksum fails, is the residue of an interrupted write: the file is truncated to the last
//!   good frame and the cut bytes are counted in [`SpillStats::torn_tail_trimmed_bytes`].
//! * **Corruption in the middle.** A complete frame whose checksum fails while more data
//!   follows is *skipped* and counted in [`SpillStats::corrupt_records`] (the length field is
//!   trusted to find the next frame). If no frame can be parsed at all (a length running past
//!   the end of an older segment), the rest of that segment is skipped as one corrupt record.
//!   Skipped bytes are counted in [`SpillStats::corrupt_bytes`]. `pop` applies the same checks,
//!   so damage that appears after open is skipped and counted the same way (once).
//!
//! If neither cursor slot is valid (or the file is missing), reading starts at the beginning of
//! the oldest segment: records may be delivered again, none is lost. Reopening with a smaller
//! `max_bytes` keeps every record; pushes are refused until the files shrink below the new bound.
//!
//! A record is never returned unless its checksum matched. Only one `SpillQueue` may use a
//! directory at a time; the queue takes no lock, the caller owns the directory.
//!
//! # Cost
//!
//! Memory: the segment list (24 bytes per segment, at most `2 * max_bytes / segment_bytes + 2`
//! segments), an 8 KiB read buffer, a write scratch buffer of at most 64 KiB, and the popped
//! record itself. Disk: at most `max_bytes` of segments plus 64 bytes. Syscalls: one or two
//! writes per push, a buffered read plus one 32-byte positioned write per pop.

mod config;
mod format;
mod recover;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use config::{SpillConfig, SpillError, SpillStats};

use config::IoContext;
use format::{segment_path, sync_dir, CursorFile, Frame, Position, FRAME_HEADER};

/// Name of the cursor file inside the spill directory.
const CURSOR_FILE: &str = "cursor";
/// Frames up to this size are assembled in one buffer and written with a single `write`.
const SCRATCH_LIMIT: usize = 64 * 1024;
/// Read buffer for `pop`.
const READ_BUFFER: usize = 8 * 1024;

/// One segment file as the queue knows it.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes of frames in the file (the writer's end for the newest segment).
    len: u64,
    /// Corrupt frames the open-time scan already counted and that the reader has not reached.
    known_corrupt: u64,
}

/// A bounded on-disk FIFO of byte records. See the [module docs](self) for the format, the bound
/// and the durability contract.
///
/// ```
/// use weir_runtime::spill::SpillQueue;
///
/// let dir = tempfile::tempdir()?;
/// let mut queue = SpillQueue::open(dir.path(), 1 << 20)?;
/// queue.push(b"first")?;
/// queue.push(b"second")?;
/// assert_eq!(queue.pop()?.as_deref(), Some(&b"first"[..]));
/// drop(queue);
///
/// // Reopening returns exactly what was not popped.
/// let mut queue = SpillQueue::open(dir.path(), 1 << 20)?;
/// assert_eq!(queue.len(), 1);
/// assert_eq!(queue.pop()?.as_deref(), Some(&b"second"[..]));
/// assert_eq!(queue.pop()?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SpillQueue {
    dir: PathBuf,
    config: SpillConfig,
    /// Oldest first; never empty. The front is read, the back is written.
    segments: VecDeque<Segment>,
    /// Append handle on the back segment.
    writer: File,
    /// Read handle on the front segment, positioned at `read_off`; opened lazily.
    reader: Option<BufReader<File>>,
    read_off: u64,
    cursor: CursorFile,
    /// Valid records not yet popped.
    len: u64,
    /// Sum of `segments[..].len`.
    disk_bytes: u64,
    /// Lowest segment id written since the last `sync`.
    unsynced_from: Option<u64>,
    /// Segment files were created or deleted since the last `sync`.
    dir_dirty: bool,
    /// A failed append could not be rolled back: the next push must start a new segment.
    must_roll: bool,
    /// Frame assembly buffer, at most `SCRATCH_LIMIT` bytes.
    scratch: Vec<u8>,
    stats: SpillStats,
}

impl SpillQueue {
    /// Opens (or creates) the spill queue in `dir`, bounded by `max_bytes` of segment files,
    /// with the default segment size of [`SpillConfig::new`].
    ///
    /// # Errors
    ///
    /// [`SpillError::InvalidConfig`] if `max_bytes` cannot hold a one-byte record;
    /// [`SpillError::Io`] if the directory or its files cannot be read or written.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64) -> Result<Self, SpillError> {
        Self::open_with(dir, SpillConfig::new(max_bytes))
    }

    /// Opens (or creates) the spill queue in `dir` with an explicit configuration, recovering
    /// its content as the [module docs](self#recovery-on-open) describe.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); also `InvalidConfig` if `segment_bytes` is zero.
    pub fn open_with(dir: impl AsRef<Path>, config: SpillConfig) -> Result<Self, SpillError> {
        if config.max_bytes <= FRAME_HEADER {
            return Err(SpillError::InvalidConfig(
                "max_bytes must exceed the 8-byte frame header",
            ));
        }
        if config.segment_bytes == 0 {
            return Err(SpillError::InvalidConfig(
                "segment_bytes must be at least 1",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).ctx("create the spill directory", &dir)?;
        recover::open(dir, config)
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// [`SpillError::Full`] if the frame would take the files past `max_bytes` (the queue is
    /// unchanged, the rejection is counted); [`SpillError::RecordTooLarge`] if it never could;
    /// [`SpillError::Io`] if writing failed (the partial frame is cut off again).
    pub fn push(&mut self, record: &[u8]) -> Result<(), SpillError> {
        let record_bytes = record.len() as u64;
        let max_record_bytes = self.config.max_record_bytes();
        if record_bytes > max_record_bytes {
            return Err(SpillError::RecordTooLarge {
                record_bytes,
                max_record_bytes,
            });
        }
        let frame_bytes = FRAME_HEADER + record_bytes;
        let tail_len = self.tail().len;
        let over_segment = tail_len > 0 && tail_len + frame_bytes > self.config.segment_bytes;
        let over_bound = self.disk_bytes + frame_bytes > self.config.max_bytes;
        let empty_and_wasting = over_bound && tail_len > 0 && self.is_drained();
        if self.must_roll || over_segment || empty_and_wasting {
            self.roll()?;
        }
        if self.disk_bytes + frame_bytes > self.config.max_bytes {
            self.stats.rejected_full += 1;
            return Err(SpillError::Full {
                frame_bytes,
                used_bytes: self.disk_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        self.append(record)?;
        let tail = self.segments.back_mut().expect("segments is never empty");
        tail.len += frame_bytes;
        let tail_id = tail.id;
        self.disk_bytes += frame_bytes;
        self.len += 1;
        self.stats.records_pushed += 1;
        self.unsynced_from.get_or_insert(tail_id);
        Ok(())
    }

    /// Removes and returns the oldest record, or `None` if the queue is empty.
    ///
    /// Corrupt frames met on the way are skipped and counted. The new read position is written
    /// to the cursor file before the record is returned.
    ///
    /// # Errors
    ///
    /// [`SpillError::Io`] if reading or persisting the position failed; the record is then still
    /// in the queue and the next `pop` returns it.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, SpillError> {
        loop {
            let front_len = self.front().len;
            if self.read_off >= front_len {
                if self.segments.len() == 1 {
                    // Everything up to the writer's end is consumed.
                    self.len = 0;
                    return Ok(None);
                }
                self.advance_segment()?;
                continue;
            }
            let frame = self.read_front();
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.reader = None;
                    return Err(e);
                }
            };
            match frame {
                Frame::Valid { frame_len, payload } => {
                    let new_off = self.read_off + frame_len;
                    if let Err(e) = self.store_cursor(self.front().id, new_off) {
                        self.reader = None;
                        return Err(e);
                    }
                    self.read_off = new_off;
                    self.len = self.len.saturating_sub(1);
                    self.stats.records_popped += 1;
                    if self.read_off >= front_len && self.segments.len() > 1 {
                        // Give the segment's disk space back now rather than on the next pop.
                        // The record is already consumed; a failure here is retried by the
                        // next pop, so it must not turn this pop into an error.
                        if self.advance_segment().is_err() {
                            self.reader = None;
                        }
                    }
                    return Ok(Some(payload));
                }
                Frame::Corrupt { frame_len } => {
                    self.note_corrupt(frame_len);
                    self.read_off += frame_len;
                }
                Frame::Unreadable | Frame::End => {
                    self.note_corrupt(front_len - self.read_off);
                    self.read_off = front_len;
                    self.reader = None;
                }
            }
        }
    }

    /// Flushes everything pushed and the read position to stable storage (see the durability
    /// contract in the [module docs](self#durability-contract)).
    ///
    /// # Errors
    ///
    /// [`SpillError::Io`] if an fsync failed; what was synced before stays synced.
    pub fn sync(&mut self) -> Result<(), SpillError> {
        if let Some(from) = self.unsynced_from {
            let tail_id = self.tail().id;
            for seg in self.segments.iter().filter(|s| s.id >= from) {
                let path = segment_path(&self.dir, seg.id);
                if seg.id == tail_id {
                    self.writer.sync_data().ctx("sync segment", &path)?;
                } else {
                    File::open(&path)
                        .and_then(|f| f.sync_data())
                        .ctx("sync segment", &path)?;
                }
            }
            self.unsynced_from = None;
        }
        self.cursor
            .sync()
            .ctx("sync cursor", &self.dir.join(CURSOR_FILE))?;
        if self.dir_dirty {
            sync_dir(&self.dir).ctx("sync the spill directory", &self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Number of records waiting to be popped.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` if no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of segment files on disk: what the `max_bytes` bound applies to. Includes frame
    /// headers and the consumed start of the oldest segment.
    pub fn bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Bytes of frames not yet consumed (headers included).
    pub fn pending_bytes(&self) -> u64 {
        self.disk_bytes - self.read_off
    }

    /// The configuration this queue was opened with.
    pub fn config(&self) -> SpillConfig {
        self.config
    }

    /// The directory this queue owns.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since this queue was opened.
    pub fn stats(&self) -> SpillStats {
        self.stats
    }

    fn front(&self) -> &Segment {
        self.segments.front().expect("segments is never empty")
    }

    fn tail(&self) -> &Segment {
        self.segments.back().expect("segments is never empty")
    }

    /// The reader stands at the writer's end: nothing is left to read.
    fn is_drained(&self) -> bool {
        self.segments.len() == 1 && self.read_off >= self.front().len
    }

    /// Reads the frame at the read position of the front segment.
    fn read_front(&mut self) -> Result<Frame, SpillError> {
        let front = self.front();
        let (id, end) = (front.id, front.len);
        let path = segment_path(&self.dir, id);
        if self.reader.is_none() {
            let mut file = File::open(&path).ctx("open segment", &path)?;
            file.seek(SeekFrom::Start(self.read_off))
                .ctx("seek in segment", &path)?;
            self.reader = Some(BufReader::with_capacity(READ_BUFFER, file));
        }
        let reader = self.reader.as_mut().expect("opened just above");
        format::read_frame(reader, self.read_off, end, true).ctx("read segment", &path)
    }

    /// Counts a skipped corrupt region of the front segment, unless open already counted it.
    fn note_corrupt(&mut self, bytes: u64) {
        let front = self.segments.front_mut().expect("segments is never empty");
        if front.known_corrupt > 0 {
            front.known_corrupt -= 1;
        } else {
            // Damage that appeared after open: it was counted as a valid record then.
            self.stats.corrupt_records += 1;
            self.stats.corrupt_bytes += bytes;
            self.len = self.len.saturating_sub(1);
        }
    }

    /// Moves the reader from the consumed front segment to the next one and deletes the file:
    /// the position is persisted first, so a crash in between leaves a file that open deletes.
    fn advance_segment(&mut self) -> Result<(), SpillError> {
        let next = self.segments.get(1).expect("caller checked").id;
        self.store_cursor(next, 0)?;
        let old = self.segments.pop_front().expect("segments is never empty");
        self.disk_bytes -= old.len;
        self.read_off = 0;
        self.reader = None;
        self.delete_segment(old.id);
        Ok(())
    }

    fn delete_segment(&mut self, id: u64) {
        let path = segment_path(&self.dir, id);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.stats.segments_deleted += 1;
                self.dir_dirty = true;
            }
            Err(e) => {
                self.stats.delete_failures += 1;
                tracing::warn!(path = %path.display(), error = %e, "could not delete consumed spill segment");
            }
        }
    }

    /// Starts a new newest segment; if the reader had consumed everything, it moves along.
    fn roll(&mut self) -> Result<(), SpillError> {
        let drained = self.is_drained();
        let id = self.tail().id + 1;
        let path = segment_path(&self.dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .ctx("create segment", &path)?;
        self.writer = file;
        self.segments.push_back(Segment {
            id,
            len: 0,
            known_corrupt: 0,
        });
        self.must_roll = false;
        self.dir_dirty = true;
        self.stats.segments_created += 1;
        if drained {
            self.advance_segment()?;
        }
        Ok(())
    }

    /// Writes one frame at the end of the newest segment, cutting it off again on failure.
    fn append(&mut self, record: &[u8]) -> Result<(), SpillError> {
        let header = format::encode_header(record);
        let result = if record.len() + header.len() <= SCRATCH_LIMIT {
            self.scratch.clear();
            self.scratch.extend_from_slice(&header);
            self.scratch.extend_from_slice(record);
            self.writer.write_all(&self.scratch)
        } else {
            self.writer
                .write_all(&header)
                .and_then(|()| self.writer.write_all(record))
        };
        if let Err(source) = result {
            let tail_len = self.tail().len;
            if self.writer.set_len(tail_len).is_err() {
                // The segment now ends in garbage past `len`; never append after it.
                self.must_roll = true;
            }
            let path = segment_path(&self.dir, self.tail().id);
            return Err(SpillError::Io {
                action: "append to segment",
                path,
                source,
            });
        }
        Ok(())
    }

    fn store_cursor(&mut self, segment: u64, offset: u64) -> Result<(), SpillError> {
        self.cursor
            .store(Position { segment, offset })
            .ctx("write cursor", &self.dir.join(CURSOR_FILE))
    }
}
