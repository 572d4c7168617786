//! Opening a spill directory: checking the format version, finding the read position, deleting
//! consumed segments, walking every pending frame, trimming a torn tail and quarantining
//! damaged segments. Also the rule, shared with `pop`, that turns what the reader finds into
//! deliveries and counted damage.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::config::IoContext;
use super::format::{
    self, check_file_header, parse_segment_name, segment_path, CursorFile, FileHeader, Frame,
    Position, SegmentReader, FILE_HEADER,
};
use super::{Segment, SpillConfig, SpillError, SpillQueue, SpillStats, CURSOR_FILE};

/// Damage met while walking the frames of a queue in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Damage {
    /// Records lost: sequence numbers skipped over, and frames whose payload checksum failed.
    pub(super) records: u64,
    /// Bytes skipped: damaged regions, frames with a bad payload, duplicate frames.
    pub(super) bytes: u64,
    /// Frames skipped because their record had already been passed.
    pub(super) duplicates: u64,
}

impl Damage {
    pub(super) fn is_none(&self) -> bool {
        *self == Self::default()
    }

    fn add(&mut self, other: Damage) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.duplicates += other.duplicates;
    }

    /// Takes `other` out of `self` as far as it goes; returns what was left over.
    pub(super) fn consume(&mut self, other: Damage) -> Damage {
        let take = |have: &mut u64, want: u64| {
            let t = want.min(*have);
            *have -= t;
            want - t
        };
        Damage {
            records: take(&mut self.records, other.records),
            bytes: take(&mut self.bytes, other.bytes),
            duplicates: take(&mut self.duplicates, other.duplicates),
        }
    }
}

/// What to do with one frame the reader found.
#[derive(Debug)]
pub(super) struct Step {
    /// Bytes to move the read position by.
    pub(super) advance: u64,
    /// The record to deliver, if the frame carries one not delivered before.
    pub(super) deliver: Option<Vec<u8>>,
    /// Damage this frame revealed (a gap before it, or the frame itself).
    pub(super) damage: Damage,
}

/// Judges `frame` (never [`Frame::End`]) against the sequence number the reader expects next
/// (`None` when unknown), and moves that expectation past it.
pub(super) fn judge(expected: &mut Option<u64>, frame: Frame) -> Step {
    match frame {
        Frame::End => Step {
            advance: 0,
            deliver: None,
            damage: Damage::default(),
        },
        Frame::Valid {
            frame_len,
            seq,
            payload,
        } => match *expected {
            Some(e) if seq < e => Step {
                advance: frame_len,
                deliver: None,
                damage: Damage {
                    records: 0,
                    bytes: frame_len,
                    duplicates: 1,
                },
            },
            e => {
                *expected = Some(seq.saturating_add(1));
                Step {
                    advance: frame_len,
                    deliver: Some(payload),
                    damage: Damage {
                        records: seq.saturating_sub(e.unwrap_or(seq)),
                        ..Damage::default()
                    },
                }
            }
        },
        Frame::BadPayload { frame_len, seq } => {
            let records = match *expected {
                Some(e) if seq < e => 0,
                e => {
                    *expected = Some(seq.saturating_add(1));
                    seq.saturating_sub(e.unwrap_or(seq)).saturating_add(1)
                }
            };
            Step {
                advance: frame_len,
                deliver: None,
                damage: Damage {
                    records,
                    bytes: frame_len,
                    duplicates: 0,
                },
            }
        }
        Frame::Skip { bytes, .. } => Step {
            advance: bytes,
            deliver: None,
            damage: Damage {
                bytes,
                ..Damage::default()
            },
        },
    }
}

/// What walking one segment found.
struct Scan {
    /// Records to deliver.
    valid: u64,
    damage: Damage,
    /// Newest segment only: length to truncate the file to (a torn tail).
    trim_to: Option<u64>,
    /// Highest sequence number in a valid frame header.
    max_seq: Option<u64>,
}

/// Walks the frames of `path` from `start` to `file_len`, as `pop` will.
fn scan_segment(
    path: &Path,
    start: u64,
    file_len: u64,
    newest: bool,
    expected: &mut Option<u64>,
) -> Result<Scan, SpillError> {
    let file = File::open(path).ctx("open segment", path)?;
    let mut reader = SegmentReader::new(file, 64 * 1024);
    let mut scan = Scan {
        valid: 0,
        damage: Damage::default(),
        trim_to: None,
        max_seq: None,
    };
    let mut pos = start;
    loop {
        let frame = reader
            .next(pos, file_len, false)
            .ctx("read segment", path)?;
        match frame {
            Frame::End => break,
            Frame::Skip { to_end: true, .. } if newest => {
                // No valid frame after this point: the residue of an interrupted write.
                scan.trim_to = Some(pos);
                break;
            }
            Frame::Valid { seq, .. } | Frame::BadPayload { seq, .. } => {
                scan.max_seq = scan.max_seq.max(Some(seq));
            }
            Frame::Skip { .. } => {}
        }
        let step = judge(expected, frame);
        if step.deliver.is_some() {
            scan.valid += 1;
        }
        scan.damage.add(step.damage);
        pos += step.advance;
    }
    Ok(scan)
}

/// Lists the segment files in `dir` as `(id, quarantined)`, sorted by id. Should a segment
/// exist under both names, the plain one wins.
fn list_segments(dir: &Path) -> Result<Vec<(u64, bool)>, SpillError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).ctx("list the spill directory", dir)? {
        let entry = entry.ctx("list the spill directory", dir)?;
        if let Some(seg) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(seg);
        }
    }
    ids.sort_unstable();
    ids.dedup_by_key(|(id, _)| *id);
    Ok(ids)
}

/// Reads the first bytes of a segment file and checks its header.
fn read_header(path: &Path, file_len: u64) -> Result<FileHeader, SpillError> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .ctx("read segment header", path)?;
    Ok(check_file_header(&head, file_len))
}

/// Creates segment `id` with its file header; the caller counts it.
pub(super) fn create_segment(dir: &Path, id: u64) -> Result<File, SpillError> {
    let path = segment_path(dir, id, false);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .ctx("create segment", &path)?;
    if let Err(e) = file.write_all(&format::encode_file_header()) {
        let _ = fs::remove_file(&path);
        return Err(SpillError::Io {
            action: "write the header of segment",
            path,
            source: e,
        });
    }
    Ok(file)
}

/// Renames segment `id` to its quarantine name.
pub(super) fn quarantine(dir: &Path, id: u64) -> Result<PathBuf, SpillError> {
    let from = segment_path(dir, id, false);
    let to = segment_path(dir, id, true);
    fs::rename(&from, &to).ctx("quarantine damaged segment", &from)?;
    Ok(to)
}

pub(super) fn open(
    dir: PathBuf,
    config: SpillConfig,
    lock: File,
) -> Result<SpillQueue, SpillError> {
    let mut stats = SpillStats::default();
    let cursor_path = dir.join(CURSOR_FILE);
    let mut cursor_bytes = Vec::with_capacity(format::CURSOR_BYTES as usize);
    match File::open(&cursor_path) {
        Ok(f) => {
            f.take(format::CURSOR_BYTES)
                .read_to_end(&mut cursor_bytes)
                .ctx("read cursor", &cursor_path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx("open cursor", &cursor_path),
    }
    let saved = format::decode_cursor(&cursor_bytes);
    let seq = saved.map_or(0, |(seq, _)| seq);

    // Refuse a directory of another format version before changing anything in it.
    let mut segs = list_segments(&dir)?;
    if let Some((_, pos)) = saved {
        segs.retain(|&(id, damaged)| id >= pos.segment || !damaged);
    }
    let mut lens = Vec::with_capacity(segs.len());
    let mut headers = Vec::with_capacity(segs.len());
    for &(id, damaged) in &segs {
        let path = segment_path(&dir, id, damaged);
        let file_len = fs::metadata(&path).ctx("stat segment", &path)?.len();
        let consumed = saved.is_some_and(|(_, pos)| id < pos.segment);
        let header = if consumed {
            FileHeader::Current
        } else {
            read_header(&path, file_len)?
        };
        match header {
            FileHeader::V1 => return Err(SpillError::UnsupportedVersion { path, version: 1 }),
            FileHeader::Version(version) => {
                return Err(SpillError::UnsupportedVersion { path, version })
            }
            _ => {}
        }
        lens.push(file_len);
        headers.push(header);
    }

    // Segments before the cursor were consumed; a crash may have left them behind.
    let mut pending = Vec::with_capacity(segs.len());
    for (((id, damaged), file_len), header) in segs.into_iter().zip(lens).zip(headers) {
        if saved.is_some_and(|(_, pos)| id < pos.segment) {
            let path = segment_path(&dir, id, false);
            fs::remove_file(&path).ctx("delete consumed segment", &path)?;
            stats.segments_deleted += 1;
        } else {
            pending.push((id, damaged, file_len, header));
        }
    }
    let mut writer = None;
    if pending.is_empty() {
        let id = saved.map_or(0, |(_, pos)| pos.segment + 1);
        writer = Some(create_segment(&dir, id)?);
        stats.segments_created += 1;
        pending.push((id, false, FILE_HEADER, FileHeader::Current));
    }

    let newest_id = pending.last().expect("pushed above if empty").0;
    let start_pos = saved.map(|(_, pos)| pos);
    let mut expected = start_pos.and_then(|p| p.next_record);
    let reader_expected = expected;
    let mut max_seq: Option<u64> = None;
    let mut segments = VecDeque::with_capacity(pending.len() + 1);
    let (mut len, mut disk_bytes, mut read_off) = (0u64, 0u64, FILE_HEADER);
    let mut must_roll = false;
    for (i, (id, mut damaged, mut file_len, header)) in pending.into_iter().enumerate() {
        let path = segment_path(&dir, id, damaged);
        let newest = id == newest_id;
        let mut header_damage = Damage::default();
        match header {
            FileHeader::Short if newest && !damaged => {
                // Cut short while being created: no frame can be in it. Start it again.
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| {
                        f.set_len(0)?;
                        f.write_all(&format::encode_file_header())
                    })
                    .ctx("rewrite the header of segment", &path)?;
                stats.torn_tail_trimmed_bytes += file_len;
                file_len = FILE_HEADER;
            }
            FileHeader::Short | FileHeader::Damaged => {
                header_damage.bytes = file_len.min(FILE_HEADER);
            }
            _ => {}
        }
        let start = match start_pos {
            Some(pos) if i == 0 && pos.segment == id => pos.offset.max(FILE_HEADER),
            _ => FILE_HEADER,
        }
        .min(file_len.max(FILE_HEADER));
        if i == 0 {
            read_off = start;
            if start_pos.is_some_and(|p| p.segment == id && p.offset > file_len) {
                // The file lost bytes the cursor had already passed, and perhaps more.
                tracing::warn!(
                    path = %path.display(),
                    "spill segment is shorter than the read position; records may be missing"
                );
            }
        }
        // A quarantined file is never changed: its torn tail is damage like any other.
        let trim = newest && !damaged;
        let scan = scan_segment(&path, start.min(file_len), file_len, trim, &mut expected)?;
        if let Some(trim_to) = scan.trim_to {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(trim_to))
                .ctx("trim the torn tail of segment", &path)?;
            stats.torn_tail_trimmed_bytes += file_len - trim_to;
            tracing::warn!(
                path = %path.display(),
                bytes = file_len - trim_to,
                "trimmed the torn tail of a spill segment (an interrupted write)"
            );
            file_len = trim_to;
        }
        let mut damage = scan.damage;
        damage.add(header_damage);
        if !damage.is_none() {
            tracing::warn!(
                path = %path.display(),
                damaged_records = damage.records,
                damaged_bytes = damage.bytes,
                duplicate_records = damage.duplicates,
                "spill segment is damaged; its valid records are still read, the rest is counted"
            );
            // A gap alone (records missing before this segment's first frame) is damage
            // elsewhere; a file is quarantined for bytes of its own.
            if !damaged && damage.bytes > 0 {
                quarantine(&dir, id)?;
                stats.segments_quarantined += 1;
                damaged = true;
            }
        }
        if damaged && newest {
            // Never append to a damaged file.
            must_roll = true;
            writer = None;
        }
        stats.damaged_records += damage.records;
        stats.damaged_bytes += damage.bytes;
        stats.duplicate_records += damage.duplicates;
        max_seq = max_seq.max(scan.max_seq);
        len += scan.valid;
        disk_bytes += file_len;
        segments.push_back(Segment {
            id,
            len: file_len,
            damaged,
            known: scan.damage,
        });
    }
    if stats.damaged_records + stats.damaged_bytes > 0 {
        tracing::warn!(
            dir = %dir.display(),
            damaged_records = stats.damaged_records,
            damaged_bytes = stats.damaged_bytes,
            quarantined_segments = stats.segments_quarantined,
            "opened a damaged spill: every record lost to the damage is counted"
        );
    }

    let newest = segments.back().expect("at least one segment");
    if writer.is_none() && !must_roll {
        let path = segment_path(&dir, newest.id, false);
        writer = Some(
            OpenOptions::new()
                .append(true)
                .open(&path)
                .ctx("open segment for appending", &path)?,
        );
    }
    let next_seq = max_seq
        .map_or(0, |s| s.saturating_add(1))
        .max(expected.unwrap_or(0));
    let mut reader_expected = reader_expected;
    if reader_expected.is_none() && len == 0 && stats.damaged_bytes == 0 {
        // Nothing is pending (a new directory, or a lost cursor over an empty queue): the next
        // record the reader meets is the next one pushed.
        reader_expected = Some(next_seq);
    }
    let cursor_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&cursor_path)
        .ctx("open cursor", &cursor_path)?;
    let mut cursor = CursorFile::new(cursor_file, seq);
    let front_id = segments.front().expect("at least one segment").id;
    cursor
        .store(Position {
            segment: front_id,
            offset: read_off,
            next_record: reader_expected,
        })
        .ctx("write cursor", &cursor_path)?;

    Ok(SpillQueue {
        dir,
        config,
        segments,
        writer,
        reader: None,
        read_off,
        expected: reader_expected,
        next_seq,
        cursor,
        len,
        disk_bytes,
        unsynced_from: None,
        dir_dirty: stats.segments_created + stats.segments_deleted + stats.segments_quarantined > 0,
        must_roll,
        scratch: Vec::new(),
        stats,
        _lock: lock,
    })
}
