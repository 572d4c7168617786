//! On-disk format of the spill queue (version 2): segment headers, record frames, the cursor
//! file, and a reader that resynchronises on the next valid frame after damage.
//!
//! ```text
//! segment = file header (16 bytes) | frame*
//! header  = magic "weirspil" | version: u32 LE (= 2) | crc: u32 LE
//!           crc = CRC-32 (IEEE) over the first 12 bytes
//! frame   = magic: [e7 'w' 'f' 02] | len: u32 LE | seq: u64 LE | payload_crc: u32 LE
//!           | header_crc: u32 LE | payload: [u8; len]
//!           payload_crc = CRC-32 over the payload
//!           header_crc  = CRC-32 over the first 20 bytes of the frame
//!
//! cursor  = slot 0 (40 bytes) | slot 1 (40 bytes)
//! slot    = slot_seq: u64 LE | segment: u64 LE | offset: u64 LE | next_record: u64 LE
//!           | version: u32 LE (= 2) | crc: u32 LE
//!           crc = CRC-32 over the first 36 bytes
//! ```
//!
//! `seq` numbers the records of a queue one by one across segments, so a reader knows how many
//! records a damaged region held (the gap between the sequence numbers around it) and recognises
//! a frame it has already passed (a duplicate). The header checksum makes a frame's length
//! trustworthy before its payload is read, and lets a reader that met damage find the next frame
//! by scanning for the magic and checking the header checksum.
//!
//! The cursor is written to the slot `slot_seq % 2`, so a write torn by a crash damages at most
//! the newer slot and the older one still names a valid (earlier) read position.
//!
//! Version 1 (frames `len | crc | payload`, no file header, 64-byte cursor) is not read: opening
//! a directory holding a version-1 segment fails with [`SpillError::UnsupportedVersion`] before
//! anything in it is changed.
//!
//! [`SpillError::UnsupportedVersion`]: super::SpillError::UnsupportedVersion

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The format version this code writes and reads.
pub(crate) const VERSION: u32 = 2;
/// Bytes in a segment file header.
pub(crate) const FILE_HEADER: u64 = 16;
/// Bytes in a frame header.
pub(crate) const FRAME_HEADER: u64 = 24;
/// First bytes of every segment file.
const FILE_MAGIC: [u8; 8] = *b"weirspil";
/// First bytes of every frame.
const FRAME_MAGIC: [u8; 4] = [0xe7, b'w', b'f', 0x02];
/// Bytes in one cursor slot.
const SLOT_BYTES: usize = 40;
/// Bytes in the cursor file.
pub(crate) const CURSOR_BYTES: u64 = 2 * SLOT_BYTES as u64;

/// Encodes the header of a segment file.
pub(crate) fn encode_file_header() -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileHeader {
    /// A valid header of this version.
    Current,
    /// A valid header of another version.
    Version(u32),
    /// A file of format version 1: no header, it starts with a valid version-1 frame.
    V1,
    /// Fewer bytes than a header.
    Short,
    /// The header is damaged (neither a valid header nor a version-1 frame).
    Damaged,
}

/// Classifies the first bytes of a segment file `file_len` bytes long (`bytes` holds its first
/// bytes, up to 64 KiB).
pub(crate) fn check_file_header(bytes: &[u8], file_len: u64) -> FileHeader {
    let Some(h) = bytes.get(..FILE_HEADER as usize) else {
        return if is_v1_frame(bytes, file_len) {
            FileHeader::V1
        } else {
            FileHeader::Short
        };
    };
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if h[..8] == FILE_MAGIC && crc32fast::hash(&h[..12]) == crc {
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        return if version == VERSION {
            FileHeader::Current
        } else {
            FileHeader::Version(version)
        };
    }
    if is_v1_frame(bytes, file_len) {
        FileHeader::V1
    } else {
        FileHeader::Damaged
    }
}

/// Whether a file `file_len` bytes long starting with `bytes` starts with a version-1 frame
/// (`len | crc(len, payload) | payload`): its length fits the file and, when the whole frame is
/// in `bytes`, its checksum matches.
fn is_v1_frame(bytes: &[u8], file_len: u64) -> bool {
    let Some(h) = bytes.get(..8) else {
        return false;
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if 8 + u64::from(len) > file_len {
        return false;
    }
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let Some(payload) = bytes.get(8..8usize.saturating_add(len as usize)) else {
        // A first frame larger than what was read: its length fitting the file must do.
        return true;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..4]);
    hasher.update(payload);
    hasher.finalize() == crc
}

/// Encodes the header of a frame carrying `payload` as record `seq`.
///
/// The caller has checked that `payload.len()` fits in a `u32`.
pub(crate) fn encode_frame_header(seq: u64, payload: &[u8]) -> [u8; FRAME_HEADER as usize] {
    let len = u32::try_from(payload.len())
        .expect("callers reject records longer than u32::MAX before encoding");
    let mut h = [0u8; FRAME_HEADER as usize];
    h[..4].copy_from_slice(&FRAME_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A frame header that passed its checksum.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: u64,
    seq: u64,
    payload_crc: u32,
}

fn decode_frame_header(h: &[u8]) -> Option<FrameHeader> {
    let h = h.get(..FRAME_HEADER as usize)?;
    if h[..4] != FRAME_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32fast::hash(&h[..20]) != crc {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[8..16]);
    Some(FrameHeader {
        len: u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])),
        seq: u64::from_le_bytes(seq),
        payload_crc: u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
    })
}

/// What [`SegmentReader::next`] found at a position.
#[derive(Debug)]
pub(crate) enum Frame {
    /// `pos == end`: no more data.
    End,
    /// A frame whose header and payload checksums match, `frame_len` bytes long (header
    /// included). Its payload is in `payload` when the caller asked for it.
    Valid {
        frame_len: u64,
        seq: u64,
        payload: Vec<u8>,
    },
    /// A complete frame with a valid header whose payload checksum fails: record `seq` is lost,
    /// and the header's length (which its checksum protects) locates the next frame.
    BadPayload { frame_len: u64, seq: u64 },
    /// No valid frame header starts here: `bytes` bytes up to the next valid frame header (or
    /// to `end`, when `to_end`) are damage.
    Skip { bytes: u64, to_end: bool },
}

/// A buffered reader of one segment file that can look ahead to resynchronise after damage.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    file: File,
    /// Where the file's own position is.
    file_pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    capacity: usize,
}

impl SegmentReader {
    /// A reader of `file` with a `capacity`-byte buffer (at least a frame header).
    pub(crate) fn new(file: File, capacity: usize) -> Self {
        Self {
            file,
            file_pos: 0,
            buf: Vec::with_capacity(capacity.max(FRAME_HEADER as usize)),
            buf_start: 0,
            capacity: capacity.max(FRAME_HEADER as usize),
        }
    }

    /// The bytes `[pos, pos + n)` (fewer if `end` comes first), `n <= capacity`.
    fn window(&mut self, pos: u64, n: usize, end: u64) -> io::Result<&[u8]> {
        let want = n.min(usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX));
        let have_from = pos.wrapping_sub(self.buf_start) as usize;
        let buffered = pos >= self.buf_start
            && pos - self.buf_start <= self.buf.len() as u64
            && self.buf.len() - have_from >= want;
        if !buffered {
            let fill = self
                .capacity
                .min(usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX));
            if self.file_pos != pos {
                self.file.seek(SeekFrom::Start(pos))?;
            }
            self.buf.clear();
            self.buf.resize(fill, 0);
            self.file.read_exact(&mut self.buf)?;
            self.file_pos = pos + fill as u64;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(&self.buf[from..from + want])
    }

    /// Reads what is at `pos`, with data ending at `end`. With `keep_payload` the payload of a
    /// valid frame is returned; without it the payload is checked through the buffer, so
    /// verifying a segment needs no memory proportional to its records.
    pub(crate) fn next(&mut self, pos: u64, end: u64, keep_payload: bool) -> io::Result<Frame> {
        if pos >= end {
            return Ok(Frame::End);
        }
        let header = decode_frame_header(self.window(pos, FRAME_HEADER as usize, end)?);
        let header = match header {
            Some(h) if pos + FRAME_HEADER + h.len <= end => h,
            _ => return self.resync(pos, end),
        };
        let frame_len = FRAME_HEADER + header.len;
        let mut hasher = crc32fast::Hasher::new();
        let mut payload = Vec::new();
        if keep_payload {
            // `len` is bounded by the bytes left in the file, checked above.
            payload.reserve_exact(usize::try_from(header.len).unwrap_or(usize::MAX));
        }
        let mut at = pos + FRAME_HEADER;
        let payload_end = pos + frame_len;
        if keep_payload && header.len > self.capacity as u64 {
            // A large payload is read straight into its own buffer, not through ours.
            let buffered_end = self.buf_start + self.buf.len() as u64;
            if at < buffered_end {
                let from = (at - self.buf_start) as usize;
                let upto = (payload_end.min(buffered_end) - self.buf_start) as usize;
                payload.extend_from_slice(&self.buf[from..upto]);
                at += (upto - from) as u64;
            }
            let rest = usize::try_from(payload_end - at).unwrap_or(usize::MAX);
            if self.file_pos != at {
                self.file.seek(SeekFrom::Start(at))?;
            }
            let filled = payload.len();
            payload.resize(filled + rest, 0);
            self.file.read_exact(&mut payload[filled..])?;
            self.file_pos = payload_end;
            self.buf.clear();
            self.buf_start = payload_end;
            at = payload_end;
            hasher.update(&payload);
        }
        while at < payload_end {
            let n = usize::try_from(payload_end - at)
                .unwrap_or(usize::MAX)
                .min(self.capacity);
            let chunk = self.window(at, n, end)?;
            hasher.update(chunk);
            if keep_payload {
                payload.extend_from_slice(chunk);
            }
            at += chunk.len() as u64;
        }
        if hasher.finalize() == header.payload_crc {
            Ok(Frame::Valid {
                frame_len,
                seq: header.seq,
                payload,
            })
        } else {
            Ok(Frame::BadPayload {
                frame_len,
                seq: header.seq,
            })
        }
    }

    /// Scans from `pos + 1` for the next position holding a valid frame header whose frame
    /// fits before `end`.
    fn resync(&mut self, pos: u64, end: u64) -> io::Result<Frame> {
        let mut at = pos + 1;
        while at + FRAME_HEADER <= end {
            let window = self.window(at, self.capacity, end)?;
            let mut found = None;
            let mut next = at;
            for (i, w) in window.windows(FRAME_MAGIC.len()).enumerate() {
                next = at + i as u64;
                if w != FRAME_MAGIC {
                    continue;
                }
                if next + FRAME_HEADER > end {
                    break;
                }
                if i + FRAME_HEADER as usize <= window.len() {
                    let ok = decode_frame_header(&window[i..])
                        .is_some_and(|h| next + FRAME_HEADER + h.len <= end);
                    if ok {
                        found = Some(next);
                        break;
                    }
                } else {
                    // The header straddles the window: look at it on its own.
                    let h = self.window(next, FRAME_HEADER as usize, end)?;
                    if decode_frame_header(h).is_some_and(|h| next + FRAME_HEADER + h.len <= end) {
                        found = Some(next);
                    }
                    break;
                }
            }
            if let Some(found) = found {
                return Ok(Frame::Skip {
                    bytes: found - pos,
                    to_end: false,
                });
            }
            // Continue after the last position examined; the window always holds at least a
            // frame header here, so this advances.
            at = next.max(at) + 1;
        }
        Ok(Frame::Skip {
            bytes: end - pos,
            to_end: true,
        })
    }
}

/// A read position: segment id and byte offset inside it, and the sequence number of the record
/// expected there (`None` when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) next_record: Option<u64>,
}

/// Encodes one cursor slot. An unknown `next_record` is stored as `u64::MAX`.
fn encode_slot(slot_seq: u64, pos: Position) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..8].copy_from_slice(&slot_seq.to_le_bytes());
    slot[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    slot[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    slot[24..32].copy_from_slice(&pos.next_record.unwrap_or(u64::MAX).to_le_bytes());
    slot[32..36].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32fast::hash(&slot[..36]);
    slot[36..40].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// Decodes one cursor slot; `None` if it is short, of another version, or its checksum fails.
fn decode_slot(bytes: &[u8]) -> Option<(u64, Position)> {
    let slot: &[u8; SLOT_BYTES] = bytes.get(..SLOT_BYTES)?.try_into().ok()?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&slot[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32::from_le_bytes([slot[32], slot[33], slot[34], slot[35]]);
    let crc = u32::from_le_bytes([slot[36], slot[37], slot[38], slot[39]]);
    if crc32fast::hash(&slot[..36]) != crc || version != VERSION {
        return None;
    }
    let next = word(24);
    Some((
        word(0),
        Position {
            segment: word(8),
            offset: word(16),
            next_record: (next != u64::MAX).then_some(next),
        },
    ))
}

/// Picks the newest valid slot from the cursor file's bytes.
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<(u64, Position)> {
    let a = decode_slot(bytes);
    let b = bytes.get(SLOT_BYTES..).and_then(decode_slot);
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The open cursor file; each [`store`](CursorFile::store) overwrites the older slot in place.
#[derive(Debug)]
pub(crate) struct CursorFile {
    file: File,
    seq: u64,
}

impl CursorFile {
    /// Wraps an open cursor file whose newest slot carries `seq`.
    pub(crate) fn new(file: File, seq: u64) -> Self {
        Self { file, seq }
    }

    /// Writes `pos` into the older slot (one positioned write, no fsync).
    pub(crate) fn store(&mut self, pos: Position) -> io::Result<()> {
        let seq = self.seq.wrapping_add(1);
        let slot = encode_slot(seq, pos);
        write_at(&self.file, &slot, (seq % 2) * SLOT_BYTES as u64)?;
        self.seq = seq;
        Ok(())
    }

    /// Flushes the cursor to stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(unix)]
pub(crate) fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

#[cfg(not(unix))]
pub(crate) fn write_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::Write;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Suffix added to the name of a quarantined (damaged) segment.
pub(crate) const DAMAGED_SUFFIX: &str = ".damaged";

/// Path of segment `id` in `dir`; `damaged` gives its quarantine name.
pub(crate) fn segment_path(dir: &Path, id: u64, damaged: bool) -> PathBuf {
    let suffix = if damaged { DAMAGED_SUFFIX } else { "" };
    dir.join(format!("seg-{id:020}.spill{suffix}"))
}

/// Parses a segment file name back into its id and whether it is quarantined.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, bool)> {
    let (name, damaged) = match name.strip_suffix(DAMAGED_SUFFIX) {
        Some(name) => (name, true),
        None => (name, false),
    };
    let digits = name.strip_prefix("seg-")?.strip_suffix(".spill")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, damaged))
}

/// Makes the directory's entries (created, renamed and deleted files) durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
