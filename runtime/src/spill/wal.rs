//! A write-ahead log on the spill's frame format, for acknowledging records only once they are
//! on stable storage.
//!
//! * [`append`](Wal::append) writes one numbered frame (one `write`, no fsync) and returns its
//!   sequence number. Any number of threads may append at once.
//! * [`sync`](Wal::sync)`(seq)` returns once record `seq` and every record appended before it
//!   are on stable storage. Syncs are *grouped*: one fsync covers every append made before it
//!   started, so concurrent callers share it (a caller whose record an fsync in flight does not
//!   cover waits for it and then starts the next one).
//! * [`commit`](Wal::commit)`(seq)` says every record up to `seq` has been handled for good (a
//!   sink made it durable). The commit cursor lives in its own file, advances only when told
//!   (never backwards), and is fsynced before segments holding only committed records are
//!   deleted.
//! * After a restart, [`replay`](Wal::replay) yields every record after the commit cursor in
//!   order: **at-least-once**, a record handled but not yet committed is replayed.
//!
//! Files: segments `seg-<id>.spill` in the format of the [spill queue](super) (version 2, the
//! same checksums and sequence numbers), a `commit` cursor, and the `lock` file that refuses a
//! second log (or spill queue) on the directory. Opening trims a torn tail of the newest segment
//! (bytes after which no valid frame follows, as an interrupted write leaves) and starts a new
//! segment for its appends, so a file touched by a crash is never appended to. Replay skips
//! damage elsewhere by resynchronising on the next valid frame and counts it, like the queue.
//! A segment in which damage was found is renamed `*.damaged` instead of being deleted.
//!
//! The log is bounded by `max_bytes` of segments: an append that would pass it fails with
//! [`SpillError::Full`] until commits free whole segments.
//!
//! # Locking
//!
//! Three mutexes, never two held at once except `writer` then `sync` in [`Wal::stats`]:
//!
//! * `writer`: the append handle, the segment table, the next sequence number. An append holds
//!   it for its one `write`; an fsync round holds it only to note what it will cover (the next
//!   sequence number and the segments written since the last round) and to clone the handle.
//! * `sync`: `synced_below` (every record below it is durable) and whether a round is in
//!   flight. A caller whose record is not covered either starts a round (when none is in
//!   flight) or waits on the condition variable for the one in flight, then looks again; the
//!   fsync itself runs with no lock held, so appends go on meanwhile.
//! * `commit`: the cursor file and its value; segments are released after it is fsynced.
//!
//! ```
//! use weir_runtime::spill::{SpillConfig, Wal};
//!
//! let dir = tempfile::tempdir()?;
//! let wal = Wal::open(dir.path(), SpillConfig::new(1 << 20))?;
//! let a = wal.append(b"a")?;
//! let b = wal.append(b"b")?;
//! wal.sync(b)?; // both are durable: acknowledge them
//! wal.commit(a)?; // a sink made `a` durable
//! drop(wal);
//!
//! let wal = Wal::open(dir.path(), SpillConfig::new(1 << 20))?;
//! let replayed: Vec<_> = wal.replay().collect::<Result<_, _>>()?;
//! assert_eq!(replayed, vec![(b, b"b".to_vec())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::config::IoContext;
use super::format::{
    self, check_file_header, parse_segment_name, segment_path, sync_dir, CursorFile, FileHeader,
    Frame, Position, SegmentReader, FILE_HEADER, FRAME_HEADER,
};
use super::recover::{create_segment, judge};
use super::{SpillConfig, SpillError};

/// Name of the commit cursor file inside the log's directory.
const COMMIT_FILE: &str = "commit";

/// One segment file as the log knows it.
#[derive(Debug, Clone, Copy)]
struct WalSegment {
    id: u64,
    len: u64,
    /// Highest sequence number in it (`None`: no frame).
    last_seq: Option<u64>,
    /// Damage was found in it: renamed rather than deleted.
    damaged: bool,
}

#[derive(Debug)]
struct Writer {
    file: File,
    segments: VecDeque<WalSegment>,
    next_seq: u64,
    disk_bytes: u64,
    /// Segment ids written since the last fsync began, and whether files were created.
    unsynced_from: Option<u64>,
    dir_dirty: bool,
    scratch: Vec<u8>,
    /// Segments released by commits since open.
    released: u64,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Every record below this sequence number is on stable storage.
    synced_below: u64,
    /// An fsync is in flight.
    syncing: bool,
    /// Fsync rounds done (for figures and tests).
    fsyncs: u64,
}

#[derive(Debug)]
struct Commit {
    cursor: CursorFile,
    /// Every record below this sequence number is committed.
    below: u64,
}

/// Counters of one open [`Wal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalStats {
    /// Records appended since open.
    pub appended: u64,
    /// Fsync rounds run by [`Wal::sync`]; each covers every append made before it began.
    pub fsyncs: u64,
    /// Bytes cut from the end of the newest segment on open (interrupted writes).
    pub torn_tail_trimmed_bytes: u64,
    /// Segment files deleted (or renamed `*.damaged`) once all their records were committed.
    pub segments_released: u64,
}

/// A write-ahead log of byte records with grouped fsyncs and a commit cursor. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    config: SpillConfig,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    commit: Mutex<Commit>,
    /// Segments before the one open started (what replay reads), oldest first.
    replay_segments: Vec<WalSegment>,
    /// The commit cursor as found on open.
    replay_from: u64,
    /// The sequence number of the first record appended since open.
    first_seq: u64,
    torn_tail_trimmed_bytes: u64,
    _lock: File,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Walks a segment to find its highest sequence number and whether it is damaged; for the
/// newest segment, also where a torn tail starts.
fn survey(
    path: &Path,
    file_len: u64,
    newest: bool,
) -> Result<(WalSegment, Option<u64>), SpillError> {
    let mut reader = SegmentReader::new(File::open(path).ctx("open segment", path)?, 64 * 1024);
    let mut pos = FILE_HEADER.min(file_len);
    let (mut last_seq, mut damaged, mut trim_to) = (None, file_len < FILE_HEADER, None);
    loop {
        match reader
            .next(pos, file_len, false)
            .ctx("read segment", path)?
        {
            Frame::End => break,
            Frame::Valid { frame_len, seq, .. } => {
                last_seq = last_seq.max(Some(seq));
                pos += frame_len;
            }
            Frame::BadPayload { frame_len, seq } => {
                last_seq = last_seq.max(Some(seq));
                damaged = true;
                pos += frame_len;
            }
            Frame::Skip { to_end: true, .. } if newest => {
                trim_to = Some(pos);
                break;
            }
            Frame::Skip { bytes, .. } => {
                damaged = true;
                pos += bytes;
            }
        }
    }
    let seg = WalSegment {
        id: 0,
        len: trim_to.unwrap_or(file_len),
        last_seq,
        damaged,
    };
    Ok((seg, trim_to))
}

impl Wal {
    /// Opens (or creates) the log in `dir`: checks the format version, trims a torn tail and
    /// starts a new segment for appends. `config.max_bytes` bounds the segment files.
    ///
    /// # Errors
    ///
    /// As [`SpillQueue::open`](super::SpillQueue::open): `InvalidConfig`, `Locked`,
    /// `UnsupportedVersion`, `Io`.
    pub fn open(dir: impl AsRef<Path>, config: SpillConfig) -> Result<Self, SpillError> {
        if config.max_bytes <= SpillConfig::MIN_BYTES || config.segment_bytes == 0 {
            return Err(SpillError::InvalidConfig(
                "max_bytes must exceed SpillConfig::MIN_BYTES and segment_bytes must be at least 1",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).ctx("create the log directory", &dir)?;
        let lock_file = super::lock_dir(&dir)?;

        let commit_path = dir.join(COMMIT_FILE);
        let mut bytes = Vec::new();
        match File::open(&commit_path) {
            Ok(f) => {
                f.take(format::CURSOR_BYTES)
                    .read_to_end(&mut bytes)
                    .ctx("read commit cursor", &commit_path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("open commit cursor", &commit_path),
        }
        let saved = format::decode_cursor(&bytes);
        let (slot_seq, committed) = saved.map_or((0, 0), |(s, p)| (s, p.next_record.unwrap_or(0)));

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).ctx("list the log directory", &dir)? {
            let entry = entry.ctx("list the log directory", &dir)?;
            if let Some((id, false)) = entry.file_name().to_str().and_then(parse_segment_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut found = Vec::with_capacity(ids.len());
        for &id in &ids {
            let path = segment_path(&dir, id, false);
            let file_len = fs::metadata(&path).ctx("stat segment", &path)?.len();
            let mut head = Vec::new();
            File::open(&path)
                .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
                .ctx("read segment header", &path)?;
            match check_file_header(&head, file_len) {
                FileHeader::V1 => return Err(SpillError::UnsupportedVersion { path, version: 1 }),
                FileHeader::Version(version) => {
                    return Err(SpillError::UnsupportedVersion { path, version })
                }
                _ => found.push((id, path, file_len)),
            }
        }
        let mut torn = 0;
        let mut segments = Vec::with_capacity(found.len());
        let newest = ids.last().copied();
        for (id, path, file_len) in found {
            let (mut seg, trim_to) = survey(&path, file_len, Some(id) == newest)?;
            if let Some(trim_to) = trim_to {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(trim_to))
                    .ctx("trim the torn tail of segment", &path)?;
                tracing::warn!(path = %path.display(), bytes = file_len - trim_to, "trimmed the torn tail of a log segment (an interrupted write)");
                torn += file_len - trim_to;
            }
            // What was appended before the restart may sit in the page cache only: make it
            // durable before anything is acknowledged on top of it.
            File::open(&path)
                .and_then(|f| f.sync_data())
                .ctx("sync log segment", &path)?;
            seg.id = id;
            segments.push(seg);
        }
        let next_seq = segments
            .iter()
            .filter_map(|s| s.last_seq)
            .max()
            .map_or(0, |s| s.saturating_add(1))
            .max(committed);

        // Appends go to a new segment: a file a crash may have touched is never appended to.
        let id = newest.map_or(0, |n| n + 1);
        let file = create_segment(&dir, id)?;
        let disk_bytes = segments.iter().map(|s| s.len).sum::<u64>() + FILE_HEADER;
        let mut live: VecDeque<WalSegment> = segments.iter().copied().collect();
        live.push_back(WalSegment {
            id,
            len: FILE_HEADER,
            last_seq: None,
            damaged: false,
        });
        let cursor_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&commit_path)
            .ctx("open commit cursor", &commit_path)?;
        Ok(Self {
            config,
            writer: Mutex::new(Writer {
                file,
                segments: live,
                next_seq,
                disk_bytes,
                unsynced_from: Some(id),
                dir_dirty: true,
                scratch: Vec::new(),
                released: 0,
            }),
            sync: Mutex::new(SyncState {
                synced_below: next_seq,
                ..SyncState::default()
            }),
            synced: Condvar::new(),
            commit: Mutex::new(Commit {
                cursor: CursorFile::new(cursor_file, slot_seq),
                below: committed,
            }),
            replay_segments: segments,
            replay_from: committed,
            first_seq: next_seq,
            torn_tail_trimmed_bytes: torn,
            dir,
            _lock: lock_file,
        })
    }

    /// Appends one record and returns its sequence number. The record is durable once
    /// [`sync`](Self::sync) has returned for it (or a later one).
    ///
    /// # Errors
    ///
    /// `Full` if the segments would pass `max_bytes` (commit to free them), `RecordTooLarge`,
    /// `Io`.
    pub fn append(&self, record: &[u8]) -> Result<u64, SpillError> {
        let record_bytes = record.len() as u64;
        let max_record_bytes = self.config.max_record_bytes();
        if record_bytes > max_record_bytes {
            return Err(SpillError::RecordTooLarge {
                record_bytes,
                max_record_bytes,
            });
        }
        let frame_bytes = FRAME_HEADER + record_bytes;
        let mut w = lock(&self.writer);
        let tail = *w.segments.back().expect("never empty");
        let roll = tail.len > FILE_HEADER && tail.len + frame_bytes > self.config.segment_bytes;
        let needed = frame_bytes + if roll { FILE_HEADER } else { 0 };
        if w.disk_bytes + needed > self.config.max_bytes {
            return Err(SpillError::Full {
                frame_bytes,
                used_bytes: w.disk_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        if roll {
            let id = tail.id + 1;
            w.file = create_segment(&self.dir, id)?;
            w.segments.push_back(WalSegment {
                id,
                len: FILE_HEADER,
                last_seq: None,
                damaged: false,
            });
            w.disk_bytes += FILE_HEADER;
            w.dir_dirty = true;
            w.unsynced_from.get_or_insert(id);
        }
        let seq = w.next_seq;
        let header = format::encode_frame_header(seq, record);
        let w = &mut *w;
        w.scratch.clear();
        w.scratch.extend_from_slice(&header);
        w.scratch.extend_from_slice(record);
        let tail = w.segments.back_mut().expect("never empty");
        if let Err(source) = w.file.write_all(&w.scratch) {
            let path = segment_path(&self.dir, tail.id, false);
            // Cut the partial frame off; if that fails, later frames still resynchronise.
            let _ = w.file.set_len(tail.len);
            return Err(SpillError::Io {
                action: "append to log segment",
                path,
                source,
            });
        }
        if w.scratch.capacity() > 64 * 1024 {
            w.scratch = Vec::new();
        }
        tail.len += frame_bytes;
        tail.last_seq = Some(seq);
        w.disk_bytes += frame_bytes;
        w.next_seq += 1;
        w.unsynced_from.get_or_insert(tail.id);
        Ok(seq)
    }

    /// Returns once record `seq` and everything appended before it is on stable storage.
    /// Concurrent callers share fsyncs: one round covers every append made before it began.
    ///
    /// # Errors
    ///
    /// `Io` if an fsync failed; the records are then not known to be durable.
    pub fn sync(&self, seq: u64) -> Result<(), SpillError> {
        let mut s = lock(&self.sync);
        loop {
            if s.synced_below > seq {
                return Ok(());
            }
            if !s.syncing {
                break;
            }
            s = self.synced.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.syncing = true;
        drop(s);
        let result = self.fsync_round();
        let mut s = lock(&self.sync);
        s.syncing = false;
        if let Ok(below) = result {
            s.synced_below = s.synced_below.max(below);
            s.fsyncs += 1;
        }
        self.synced.notify_all();
        let covered = s.synced_below > seq;
        drop(s);
        match result {
            Err(e) => Err(e),
            Ok(_) if covered => Ok(()),
            // Only a record not yet appended can be left uncovered.
            Ok(_) => Err(SpillError::InvalidConfig(
                "sync was asked for a record that was never appended",
            )),
        }
    }

    /// One fsync round: everything appended before it began. Returns the new `synced_below`.
    fn fsync_round(&self) -> Result<u64, SpillError> {
        let (below, file, older, dir_dirty) = {
            let mut w = lock(&self.writer);
            let tail_id = w.segments.back().expect("never empty").id;
            let older: Vec<u64> = match w.unsynced_from {
                Some(from) => w
                    .segments
                    .iter()
                    .filter(|s| s.id >= from && s.id != tail_id)
                    .map(|s| s.id)
                    .collect(),
                None => Vec::new(),
            };
            let path = segment_path(&self.dir, tail_id, false);
            let file = w
                .file
                .try_clone()
                .ctx("clone the log segment handle", &path)?;
            w.unsynced_from = None;
            let dirty = std::mem::take(&mut w.dir_dirty);
            (w.next_seq, (file, path), older, dirty)
        };
        let restore = |e: SpillError| {
            let mut w = lock(&self.writer);
            w.unsynced_from = Some(older.first().copied().unwrap_or(0));
            w.dir_dirty |= dir_dirty;
            e
        };
        for id in &older {
            let path = segment_path(&self.dir, *id, false);
            File::open(&path)
                .and_then(|f| f.sync_data())
                .ctx("sync log segment", &path)
                .map_err(restore)?;
        }
        file.0
            .sync_data()
            .ctx("sync log segment", &file.1)
            .map_err(restore)?;
        if dir_dirty {
            sync_dir(&self.dir)
                .ctx("sync the log directory", &self.dir)
                .map_err(restore)?;
        }
        Ok(below)
    }

    /// Records that every record up to and including `seq` has been handled for good. The
    /// cursor is written and fsynced, then segments holding only committed records are
    /// released. A `seq` at or below the cursor changes nothing.
    ///
    /// # Errors
    ///
    /// `InvalidConfig` if `seq` was never appended; `Io` if the cursor could not be written.
    pub fn commit(&self, seq: u64) -> Result<(), SpillError> {
        let next = lock(&self.writer).next_seq;
        if seq >= next {
            return Err(SpillError::InvalidConfig(
                "commit was asked for a record that was never appended",
            ));
        }
        let mut c = lock(&self.commit);
        if seq < c.below {
            return Ok(());
        }
        let path = self.dir.join(COMMIT_FILE);
        c.cursor
            // Only the sequence number matters here: replay finds its frame by scanning.
            .store(Position {
                segment: 0,
                offset: 0,
                next_record: Some(seq + 1),
            })
            .ctx("write commit cursor", &path)?;
        c.cursor.sync().ctx("sync commit cursor", &path)?;
        c.below = seq + 1;
        drop(c);
        // Release every segment but the one being written whose records are all committed.
        let mut released = Vec::new();
        {
            let mut w = lock(&self.writer);
            while w.segments.len() > 1 {
                let front = *w.segments.front().expect("len > 1");
                if front.last_seq.is_some_and(|l| l > seq) {
                    break;
                }
                w.segments.pop_front();
                w.disk_bytes -= front.len;
                w.released += 1;
                released.push(front);
            }
        }
        for seg in released {
            let path = segment_path(&self.dir, seg.id, false);
            let result = if seg.damaged {
                fs::rename(&path, segment_path(&self.dir, seg.id, true))
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "could not release a committed log segment");
            }
            lock(&self.writer).dir_dirty = true;
        }
        Ok(())
    }

    /// The records after the commit cursor as found on open, in order, with their sequence
    /// numbers. Damage is skipped and counted in the iterator's [`stats`](WalReplay::stats).
    pub fn replay(&self) -> WalReplay<'_> {
        self.replay_from_holder(WalRef::Borrowed(self))
    }

    /// [`replay`](Self::replay) from a shared log: the iterator keeps the log alive, so it can
    /// be read lazily by whoever holds it (a source reading records as demand reaches it).
    pub fn replay_shared(self: &Arc<Self>) -> WalReplay<'static> {
        self.replay_from_holder(WalRef::Shared(Arc::clone(self)))
    }

    fn replay_from_holder<'a>(&self, wal: WalRef<'a>) -> WalReplay<'a> {
        WalReplay {
            wal,
            next_segment: 0,
            reader: None,
            pos: 0,
            expected: Some(self.replay_from),
            stats: ReplayStats::default(),
            failed: false,
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let w = lock(&self.writer);
        WalStats {
            appended: w.next_seq - self.first_seq,
            fsyncs: lock(&self.sync).fsyncs,
            torn_tail_trimmed_bytes: self.torn_tail_trimmed_bytes,
            segments_released: w.released,
        }
    }

    /// The sequence number the next append gets: every record below it has been appended.
    pub fn next_seq(&self) -> u64 {
        lock(&self.writer).next_seq
    }

    /// Every record below this sequence number is on stable storage.
    pub fn synced_below(&self) -> u64 {
        lock(&self.sync).synced_below
    }

    /// Every record below this sequence number is committed.
    pub fn committed_below(&self) -> u64 {
        lock(&self.commit).below
    }

    /// Bytes of segment files: what `max_bytes` bounds.
    pub fn bytes(&self) -> u64 {
        lock(&self.writer).disk_bytes
    }
}

/// What a [`WalReplay`] skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    /// Records yielded.
    pub records: u64,
    /// Records lost to damage (by sequence gap, or a failed payload checksum).
    pub damaged_records: u64,
    /// Bytes skipped as damaged or duplicated.
    pub damaged_bytes: u64,
    /// Frames skipped because their record was already passed.
    pub duplicate_records: u64,
}

/// The log a [`WalReplay`] reads: borrowed, or shared and kept alive by the iterator.
#[derive(Debug)]
enum WalRef<'a> {
    Borrowed(&'a Wal),
    Shared(Arc<Wal>),
}

impl std::ops::Deref for WalRef<'_> {
    type Target = Wal;
    fn deref(&self) -> &Wal {
        match self {
            WalRef::Borrowed(w) => w,
            WalRef::Shared(w) => w,
        }
    }
}

/// Iterator over the uncommitted records of a [`Wal`] as found on open.
#[derive(Debug)]
pub struct WalReplay<'a> {
    wal: WalRef<'a>,
    next_segment: usize,
    reader: Option<(SegmentReader, WalSegment)>,
    pos: u64,
    expected: Option<u64>,
    stats: ReplayStats,
    failed: bool,
}

impl WalReplay<'_> {
    /// What was yielded and skipped so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    fn step(&mut self) -> Result<Option<(u64, Vec<u8>)>, SpillError> {
        loop {
            let Some((reader, seg)) = &mut self.reader else {
                let Some(seg) = self.wal.replay_segments.get(self.next_segment).copied() else {
                    return Ok(None);
                };
                self.next_segment += 1;
                if seg.last_seq.is_some_and(|l| l < self.wal.replay_from) && !seg.damaged {
                    continue; // all committed
                }
                let path = segment_path(&self.wal.dir, seg.id, false);
                let file = File::open(&path).ctx("open log segment", &path)?;
                self.reader = Some((SegmentReader::new(file, 64 * 1024), seg));
                self.pos = FILE_HEADER;
                continue;
            };
            let path = segment_path(&self.wal.dir, seg.id, false);
            let frame = reader
                .next(self.pos, seg.len, true)
                .ctx("read log segment", &path)?;
            if let Frame::End = frame {
                self.reader = None;
                continue;
            }
            if let Frame::Valid { frame_len, seq, .. } = &frame {
                if *seq < self.wal.replay_from {
                    self.pos += frame_len; // committed before the restart
                    continue;
                }
            }
            let step = judge(&mut self.expected, frame);
            self.pos += step.advance;
            self.stats.damaged_records += step.damage.records;
            self.stats.damaged_bytes += step.damage.bytes;
            self.stats.duplicate_records += step.damage.duplicates;
            if !step.damage.is_none() {
                tracing::warn!(path = %path.display(), damaged_records = step.damage.records, damaged_bytes = step.damage.bytes, "damaged log records skipped on replay");
            }
            if let Some(payload) = step.deliver {
                self.stats.records += 1;
                let seq = self.expected.map_or(0, |e| e.saturating_sub(1));
                return Ok(Some((seq, payload)));
            }
        }
    }
}

impl Iterator for WalReplay<'_> {
    type Item = Result<(u64, Vec<u8>), SpillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.step();
        if item.is_err() {
            self.failed = true;
        }
        item.transpose()
    }
}

#[cfg(test)]
mod tests;
