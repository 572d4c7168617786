//! A bounded on-disk FIFO of byte records, the storage behind the `Spill { dir, max_bytes }`
//! overflow policy.
//!
//! # Layout
//!
//! The queue owns one directory. Records are appended to *segment* files named
//! `seg-<id>.spill` (ids increase by one, zero-padded to 20 digits). A segment starts with a
//! 16-byte header naming the format version; each record is a frame with a 24-byte header
//! (a magic, the payload length, the record's sequence number, the payload's CRC-32 and a CRC-32
//! of the header itself) followed by the payload; see `format.rs` for the exact layout. The
//! oldest segment is read, the newest is written:
//!
//! ```text
//!   seg-…07.spill          seg-…08.spill        seg-…09.spill
//!  [h|consumed|f f f]     [h|f f f f f f]      [h|f f      ]  <- push appends here
//!             ^ read position (persisted in `cursor`)
//! ```
//!
//! A push rolls to a new segment when the frame would take the newest one past
//! `segment_bytes` (a record larger than that gets a segment of its own). When the reader
//! leaves a segment it persists the new position and then deletes the file. The read position
//! (with the sequence number of the next record) lives in an 80-byte `cursor` file holding two
//! checksummed slots written alternately, so a torn cursor write falls back to the previous
//! position instead of losing it. A `lock` file holds an advisory lock (`flock`) for as long as
//! the queue is open: a second queue on the same directory, in this process or another, is
//! refused with [`SpillError::Locked`].
//!
//! # Format version
//!
//! This is format version 2. Opening a directory that holds a segment of another version
//! (including version 1, whose frames had no magic or sequence number) fails with
//! [`SpillError::UnsupportedVersion`] before anything in the directory is changed: drain it
//! with the release that wrote it, or move it away.
//!
//! # Bound
//!
//! `bytes()` is the sum of the segment files' sizes (headers included), and a push that would
//! take it past `max_bytes` fails with [`SpillError::Full`]: the directory never holds more than
//! `max_bytes` of live segments (plus the cursor and the lock file; quarantined segments, below,
//! are outside the bound). Consumed bytes at the start of the oldest segment still occupy disk
//! until the reader leaves that segment, so pending records can always use at least
//! `max_bytes - segment_bytes` less a header per segment; when the queue is empty a push that
//! would not fit first starts a fresh segment, which gives the whole bound back.
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
//! # Recovery: damage is skipped, counted and quarantined, never hidden
//!
//! Opening walks every unconsumed frame once (reading at most `max_bytes`, verifying checksums
//! through a 64 KiB buffer), exactly as `pop` will, to count the records and the damage:
//!
//! * **Torn tail.** In the newest segment, bytes after which *no* valid frame follows (a partial
//!   frame, zeros, a frame whose header checksum fails) are the residue of an interrupted write:
//!   the file is truncated to the end of the last frame and the cut bytes are counted in
//!   [`SpillStats::torn_tail_trimmed_bytes`]. This is the only change ever made to a file.
//! * **Damage anywhere else.** A frame whose header checksum fails is not trusted at all: the
//!   reader *resynchronises* on the next position holding the frame magic and a valid header
//!   checksum, and the bytes in between are skipped. A frame with a valid header whose payload
//!   checksum fails is skipped by its (checksummed) length. Sequence numbers then tell what was
//!   lost: a frame whose number is past the expected one reveals a gap, and every missing number
//!   is counted in [`SpillStats::damaged_records`] (a bad payload counts its own record); a
//!   frame whose number was already passed is a duplicate, skipped and counted in
//!   [`SpillStats::duplicate_records`], so no record is delivered twice. Skipped bytes are
//!   counted in [`SpillStats::damaged_bytes`], and a `tracing` warning names the file.
//! * **Quarantine.** A segment with damaged bytes is renamed `seg-<id>.spill.damaged` and never
//!   written again (the writer moves to a new segment): its valid records are still read from
//!   it in order, and once the reader has passed it the file stays in the directory for
//!   inspection instead of being deleted (it no longer counts toward `max_bytes`). Damage found
//!   on open is counted each time the queue is opened until the reader has passed it.
//!
//! `pop` applies the same rules and counts only what open did not already count, so damage that
//! appears after open is skipped and counted the same way (once). If neither cursor slot is
//! valid (or the file is missing), reading starts at the beginning of the oldest segment:
//! records may be delivered again, none is lost, and damage before the first valid frame is
//! counted in bytes only (its records cannot be numbered). Reopening with a smaller `max_bytes`
//! keeps every record; pushes are refused until the files shrink below the new bound.
//!
//! A record is never returned unless both its checksums matched.
//!
//! # Cost
//!
//! Memory: the segment list (48 bytes per segment, at most `2 * max_bytes / segment_bytes + 2`
//! segments), an 8 KiB read buffer, a write scratch buffer of at most 64 KiB, and the popped
//! record itself. Disk: at most `max_bytes` of segments plus 80 bytes of cursor and an empty
//! lock file. Syscalls: one or two writes per push, a buffered read plus one 40-byte positioned
//! write per pop.

mod config;
mod format;
mod recover;
#[cfg(test)]
mod tests;
pub mod wal;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use config::{SpillConfig, SpillError, SpillStats};
pub use wal::{ReplayStats, Wal, WalReplay, WalStats};

use config::IoContext;
use format::{segment_path, sync_dir, CursorFile, Frame, Position, SegmentReader};
use format::{FILE_HEADER, FRAME_HEADER};
use recover::Damage;

/// Name of the cursor file inside the spill directory.
const CURSOR_FILE: &str = "cursor";
/// Name of the lock file inside the spill directory.
const LOCK_FILE: &str = "lock";
/// Frames up to this size are assembled in one buffer and written with a single `write`.
const SCRATCH_LIMIT: usize = 64 * 1024;
/// Read buffer for `pop`.
const READ_BUFFER: usize = 8 * 1024;

/// One segment file as the queue knows it.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes in the file, header included (the writer's end for the newest segment).
    len: u64,
    /// The file is quarantined (`*.damaged`): never written, kept once read.
    damaged: bool,
    /// Damage the open-time walk already counted that the reader has not reached.
    known: Damage,
}

/// Takes the advisory lock on `dir`'s lock file, held as long as the returned file is open.
fn lock_dir(dir: &Path) -> Result<File, SpillError> {
    let lock_path = dir.join(LOCK_FILE);
    match try_lock_file(&lock_path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(SpillError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(e).ctx("lock the spill directory", &lock_path),
    }
}

/// Opens (creating it if needed) the lock file at `path` and takes its advisory lock, held as
/// long as the returned file is open; `None` if another holder has it. One directory, one
/// owner: the spill FIFO and the checkpoint store both guard their directory this way.
pub(crate) fn try_lock_file(path: &Path) -> std::io::Result<Option<File>> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
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
    /// Append handle on the back segment; `None` when the next push must start a new one.
    writer: Option<File>,
    /// Read handle on the front segment; opened lazily.
    reader: Option<SegmentReader>,
    read_off: u64,
    /// Sequence number of the record the reader expects next (`None`: unknown).
    expected: Option<u64>,
    /// Sequence number of the next record pushed.
    next_seq: u64,
    cursor: CursorFile,
    /// Valid records not yet popped.
    len: u64,
    /// Sum of `segments[..].len`.
    disk_bytes: u64,
    /// Lowest segment id written since the last `sync`.
    unsynced_from: Option<u64>,
    /// Segment files were created, renamed or deleted since the last `sync`.
    dir_dirty: bool,
    /// The newest segment must not be appended to: the next push starts a new one.
    must_roll: bool,
    /// Frame assembly buffer, at most `SCRATCH_LIMIT` bytes.
    scratch: Vec<u8>,
    stats: SpillStats,
    /// Holds the directory's lock while the queue is open.
    _lock: File,
}

impl SpillQueue {
    /// Opens (or creates) the spill queue in `dir`, bounded by `max_bytes` of segment files,
    /// with the default segment size of [`SpillConfig::new`].
    ///
    /// # Errors
    ///
    /// [`SpillError::InvalidConfig`] if `max_bytes` cannot hold a one-byte record;
    /// [`SpillError::Locked`] if another queue has the directory open;
    /// [`SpillError::UnsupportedVersion`] if it holds segments of another format version;
    /// [`SpillError::Io`] if the directory or its files cannot be read or written.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64) -> Result<Self, SpillError> {
        Self::open_with(dir, SpillConfig::new(max_bytes))
    }

    /// Opens (or creates) the spill queue in `dir` with an explicit configuration, recovering
    /// its content as the [module docs](self#recovery-damage-is-skipped-counted-and-quarantined-never-hidden)
    /// describe.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); also `InvalidConfig` if `segment_bytes` is zero.
    pub fn open_with(dir: impl AsRef<Path>, config: SpillConfig) -> Result<Self, SpillError> {
        if config.max_bytes <= SpillConfig::MIN_BYTES {
            return Err(SpillError::InvalidConfig(
                "max_bytes must exceed the 16-byte segment header and the 24-byte frame header",
            ));
        }
        if config.segment_bytes == 0 {
            return Err(SpillError::InvalidConfig(
                "segment_bytes must be at least 1",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).ctx("create the spill directory", &dir)?;
        let lock = lock_dir(&dir)?;
        recover::open(dir, config, lock)
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
        let tail_has_frames = tail_len > FILE_HEADER;
        let over_segment = tail_has_frames && tail_len + frame_bytes > self.config.segment_bytes;
        let over_bound = self.disk_bytes + frame_bytes > self.config.max_bytes;
        let drained = self.is_drained();
        let empty_and_wasting = over_bound && tail_has_frames && drained;
        let roll = self.must_roll || self.writer.is_none() || over_segment || empty_and_wasting;
        // A new segment costs a header; when the queue is drained it replaces the old one.
        let after_roll = if roll {
            let freed = if drained { self.front().len } else { 0 };
            self.disk_bytes - freed + FILE_HEADER
        } else {
            self.disk_bytes
        };
        if after_roll + frame_bytes > self.config.max_bytes {
            self.stats.rejected_full += 1;
            return Err(SpillError::Full {
                frame_bytes,
                used_bytes: self.disk_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        if roll {
            self.roll()?;
        }
        self.append(record)?;
        let tail = self.segments.back_mut().expect("segments is never empty");
        tail.len += frame_bytes;
        let tail_id = tail.id;
        self.disk_bytes += frame_bytes;
        self.len += 1;
        self.next_seq += 1;
        self.stats.records_pushed += 1;
        self.unsynced_from.get_or_insert(tail_id);
        Ok(())
    }

    /// Removes and returns the oldest record, or `None` if the queue is empty.
    ///
    /// Damage met on the way is skipped and counted (see the [module docs](self)). The new read
    /// position is written to the cursor file before the record is returned.
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
            let frame = match self.read_front() {
                Ok(Frame::End) => {
                    self.read_off = front_len;
                    continue;
                }
                Ok(frame) => frame,
                Err(e) => {
                    self.reader = None;
                    return Err(e);
                }
            };
            let mut expected = self.expected;
            let step = recover::judge(&mut expected, frame);
            let new_off = self.read_off + step.advance;
            if let Some(payload) = step.deliver {
                let id = self.front().id;
                if let Err(e) = self.store_cursor(id, new_off, expected) {
                    self.reader = None;
                    return Err(e);
                }
                self.note_damage(step.damage);
                self.expected = expected;
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
            self.note_damage(step.damage);
            self.expected = expected;
            self.read_off = new_off;
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
                let path = segment_path(&self.dir, seg.id, seg.damaged);
                match &self.writer {
                    Some(w) if seg.id == tail_id => w.sync_data().ctx("sync segment", &path)?,
                    _ => File::open(&path)
                        .and_then(|f| f.sync_data())
                        .ctx("sync segment", &path)?,
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

    /// Bytes of segment files on disk: what the `max_bytes` bound applies to. Includes segment
    /// and frame headers and the consumed start of the oldest segment.
    pub fn bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Bytes of frames not yet consumed (frame headers included, segment headers not).
    pub fn pending_bytes(&self) -> u64 {
        let later_headers = FILE_HEADER * (self.segments.len() as u64 - 1);
        self.disk_bytes
            .saturating_sub(self.read_off)
            .saturating_sub(later_headers)
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
        let (end, path) = (front.len, segment_path(&self.dir, front.id, front.damaged));
        if self.reader.is_none() {
            let file = File::open(&path).ctx("open segment", &path)?;
            self.reader = Some(SegmentReader::new(file, READ_BUFFER));
        }
        let reader = self.reader.as_mut().expect("opened just above");
        reader
            .next(self.read_off, end, true)
            .ctx("read segment", &path)
    }

    /// Counts damage the reader met in the front segment, unless open already counted it, and
    /// quarantines the segment if the damage is in its bytes.
    fn note_damage(&mut self, damage: Damage) {
        if damage.is_none() {
            return;
        }
        let front = self.segments.front_mut().expect("segments is never empty");
        let new = front.known.consume(damage);
        if new.is_none() {
            return;
        }
        // Damage that appeared after open: those records were counted as valid then.
        self.stats.damaged_records += new.records;
        self.stats.damaged_bytes += new.bytes;
        self.stats.duplicate_records += new.duplicates;
        self.len = self.len.saturating_sub(new.records);
        let (id, damaged) = (front.id, front.damaged);
        tracing::warn!(
            path = %segment_path(&self.dir, id, damaged).display(),
            damaged_records = new.records,
            damaged_bytes = new.bytes,
            duplicate_records = new.duplicates,
            "damaged spill records skipped while reading"
        );
        if new.bytes > 0 && !damaged {
            match recover::quarantine(&self.dir, id) {
                Ok(_) => {
                    self.segments.front_mut().expect("never empty").damaged = true;
                    self.stats.segments_quarantined += 1;
                    self.dir_dirty = true;
                    if self.segments.len() == 1 {
                        // Never append to a damaged file.
                        self.writer = None;
                        self.must_roll = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not quarantine a damaged spill segment");
                }
            }
        }
    }

    /// Moves the reader from the consumed front segment to the next one and deletes the file
    /// (a quarantined one is kept): the position is persisted first, so a crash in between
    /// leaves a file that open deletes.
    fn advance_segment(&mut self) -> Result<(), SpillError> {
        let next = self.segments.get(1).expect("caller checked").id;
        self.store_cursor(next, FILE_HEADER, self.expected)?;
        let old = self.segments.pop_front().expect("segments is never empty");
        self.disk_bytes -= old.len;
        self.read_off = FILE_HEADER;
        self.reader = None;
        if !old.damaged {
            self.delete_segment(old.id);
        }
        Ok(())
    }

    fn delete_segment(&mut self, id: u64) {
        let path = segment_path(&self.dir, id, false);
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
        let file = recover::create_segment(&self.dir, id)?;
        self.writer = Some(file);
        self.segments.push_back(Segment {
            id,
            len: FILE_HEADER,
            damaged: false,
            known: Damage::default(),
        });
        self.disk_bytes += FILE_HEADER;
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
        let header = format::encode_frame_header(self.next_seq, record);
        let (tail_len, tail_id) = (self.tail().len, self.tail().id);
        let writer = self
            .writer
            .as_mut()
            .expect("push rolls to a new segment when there is no writer");
        let result = if record.len() + header.len() <= SCRATCH_LIMIT {
            self.scratch.clear();
            self.scratch.extend_from_slice(&header);
            self.scratch.extend_from_slice(record);
            writer.write_all(&self.scratch)
        } else {
            writer
                .write_all(&header)
                .and_then(|()| writer.write_all(record))
        };
        if let Err(source) = result {
            if writer.set_len(tail_len).is_err() {
                // The segment now ends in garbage past `len`; never append after it.
                self.must_roll = true;
            }
            let path = segment_path(&self.dir, tail_id, false);
            return Err(SpillError::Io {
                action: "append to segment",
                path,
                source,
            });
        }
        Ok(())
    }

    fn store_cursor(
        &mut self,
        segment: u64,
        offset: u64,
        next_record: Option<u64>,
    ) -> Result<(), SpillError> {
        self.cursor
            .store(Position {
                segment,
                offset,
                next_record,
            })
            .ctx("write cursor", &self.dir.join(CURSOR_FILE))
    }
}
