//! Opening a spill directory: finding the read position, deleting consumed segments, verifying
//! every pending frame, trimming a torn tail.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::config::IoContext;
use super::format::{self, parse_segment_name, segment_path, CursorFile, Frame, Position};
use super::{Segment, SpillConfig, SpillError, SpillQueue, SpillStats, CURSOR_FILE};

/// What scanning one segment found.
struct Scan {
    valid: u64,
    corrupt: u64,
    corrupt_bytes: u64,
    /// Newest segment only: length to truncate the file to.
    trim_to: Option<u64>,
}

/// Verifies the frames of `path` from `start` to `file_len`.
fn scan_segment(path: &Path, start: u64, file_len: u64, newest: bool) -> Result<Scan, SpillError> {
    let mut file = File::open(path).ctx("open segment", path)?;
    file.seek(SeekFrom::Start(start))
        .ctx("seek in segment", path)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut scan = Scan {
        valid: 0,
        corrupt: 0,
        corrupt_bytes: 0,
        trim_to: None,
    };
    let mut pos = start;
    loop {
        let frame =
            format::read_frame(&mut reader, pos, file_len, false).ctx("read segment", path)?;
        match frame {
            Frame::End => break,
            Frame::Valid { frame_len, .. } => {
                scan.valid += 1;
                pos += frame_len;
            }
            Frame::Corrupt { frame_len } if newest && pos + frame_len == file_len => {
                scan.trim_to = Some(pos);
                break;
            }
            Frame::Corrupt { frame_len } => {
                scan.corrupt += 1;
                scan.corrupt_bytes += frame_len;
                pos += frame_len;
            }
            Frame::Unreadable if newest => {
                scan.trim_to = Some(pos);
                break;
            }
            Frame::Unreadable => {
                scan.corrupt += 1;
                scan.corrupt_bytes += file_len - pos;
                break;
            }
        }
    }
    Ok(scan)
}

/// Lists the segment ids in `dir`, sorted.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpillError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).ctx("list the spill directory", dir)? {
        let entry = entry.ctx("list the spill directory", dir)?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

pub(super) fn open(dir: PathBuf, config: SpillConfig) -> Result<SpillQueue, SpillError> {
    let mut stats = SpillStats::default();
    let cursor_path = dir.join(CURSOR_FILE);
    let mut cursor_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&cursor_path)
        .ctx("open cursor", &cursor_path)?;
    let mut cursor_bytes = Vec::with_capacity(64);
    (&mut cursor_file)
        .take(64)
        .read_to_end(&mut cursor_bytes)
        .ctx("read cursor", &cursor_path)?;
    let saved = format::decode_cursor(&cursor_bytes);
    let seq = saved.map_or(0, |(seq, _)| seq);

    // Segments before the cursor were consumed; a crash may have left them behind.
    let mut ids = list_segments(&dir)?;
    if let Some((_, pos)) = saved {
        for &id in ids.iter().filter(|&&id| id < pos.segment) {
            let path = segment_path(&dir, id);
            fs::remove_file(&path).ctx("delete consumed segment", &path)?;
            stats.segments_deleted += 1;
        }
        ids.retain(|&id| id >= pos.segment);
    }
    if ids.is_empty() {
        let id = saved.map_or(0, |(_, pos)| pos.segment + 1);
        let path = segment_path(&dir, id);
        File::create(&path).ctx("create segment", &path)?;
        stats.segments_created += 1;
        ids.push(id);
    }

    let newest_id = *ids.last().expect("pushed above if empty");
    let mut segments = VecDeque::with_capacity(ids.len() + 1);
    let (mut len, mut disk_bytes, mut read_off) = (0u64, 0u64, 0u64);
    for (i, &id) in ids.iter().enumerate() {
        let path = segment_path(&dir, id);
        let mut file_len = fs::metadata(&path).ctx("stat segment", &path)?.len();
        let start = match saved {
            Some((_, pos)) if i == 0 && pos.segment == id => pos.offset.min(file_len),
            _ => 0,
        };
        if i == 0 {
            read_off = start;
        }
        let newest = id == newest_id;
        let scan = scan_segment(&path, start, file_len, newest)?;
        if let Some(trim_to) = scan.trim_to {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(trim_to))
                .ctx("trim the torn tail of segment", &path)?;
            stats.torn_tail_trimmed_bytes += file_len - trim_to;
            file_len = trim_to;
        }
        stats.corrupt_records += scan.corrupt;
        stats.corrupt_bytes += scan.corrupt_bytes;
        len += scan.valid;
        disk_bytes += file_len;
        segments.push_back(Segment {
            id,
            len: file_len,
            known_corrupt: scan.corrupt,
        });
    }

    let newest_path = segment_path(&dir, newest_id);
    let writer = OpenOptions::new()
        .append(true)
        .open(&newest_path)
        .ctx("open segment for appending", &newest_path)?;
    let mut cursor = CursorFile::new(cursor_file, seq);
    let front_id = segments.front().expect("at least one segment").id;
    cursor
        .store(Position {
            segment: front_id,
            offset: read_off,
        })
        .ctx("write cursor", &cursor_path)?;

    Ok(SpillQueue {
        dir,
        config,
        segments,
        writer,
        reader: None,
        read_off,
        cursor,
        len,
        disk_bytes,
        unsynced_from: None,
        dir_dirty: stats.segments_created > 0 || stats.segments_deleted > 0,
        must_roll: false,
        scratch: Vec::new(),
        stats,
    })
}
