//! On-disk format of the spill queue: record frames and the cursor file.
//!
//! ```text
//! frame   = len: u32 LE | crc: u32 LE | payload: [u8; len]
//!           crc = CRC-32 (IEEE) over the 4 length bytes followed by the payload
//!
//! cursor  = slot 0 (32 bytes) | slot 1 (32 bytes)
//! slot    = seq: u64 LE | segment: u64 LE | offset: u64 LE | crc: u32 LE | 0u32
//!           crc = CRC-32 over the first 24 bytes
//! ```
//!
//! The cursor is written to the slot `seq % 2`, so a write torn by a crash damages at most the
//! newer slot and the older one still names a valid (earlier) read position.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes in a frame header (length + checksum).
pub(crate) const FRAME_HEADER: u64 = 8;
/// Bytes in one cursor slot.
const SLOT_BYTES: usize = 32;
/// Payload chunk size used to verify frames without holding the payload in memory.
const VERIFY_CHUNK: usize = 8 * 1024;

/// What [`read_frame`] found at a position.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A frame whose checksum matched, `frame_len` bytes long (header included). Its payload is
    /// in `payload` when the caller asked for it.
    Valid { frame_len: u64, payload: Vec<u8> },
    /// A complete frame whose checksum did not match; its length field is trusted to skip it.
    Corrupt { frame_len: u64 },
    /// No frame can be parsed here: a partial header, or a length that runs past `end`.
    /// Nothing after this point can be located.
    Unreadable,
    /// `pos == end`: no more data.
    End,
}

/// Computes the frame checksum.
fn frame_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Encodes the 8-byte header of a frame carrying `payload`.
///
/// The caller has checked that `payload.len()` fits in a `u32`.
pub(crate) fn encode_header(payload: &[u8]) -> [u8; 8] {
    let len = u32::try_from(payload.len())
        .expect("callers reject records longer than u32::MAX before encoding");
    let len_bytes = len.to_le_bytes();
    let crc = frame_crc(len_bytes, payload);
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&len_bytes);
    header[4..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Reads the frame at `pos` from `reader`, which must be positioned at `pos`; data ends at `end`.
///
/// With `keep_payload` the payload of a valid frame is returned; without it the payload is
/// checked in fixed-size chunks, so verifying a segment needs no memory proportional to records.
/// On return the reader is positioned after the frame for `Valid` and `Corrupt`, and somewhere
/// in between for `Unreadable` (the caller then stops using that position).
pub(crate) fn read_frame(
    reader: &mut impl Read,
    pos: u64,
    end: u64,
    keep_payload: bool,
) -> io::Result<Frame> {
    let remaining = end.saturating_sub(pos);
    if remaining == 0 {
        return Ok(Frame::End);
    }
    if remaining < FRAME_HEADER {
        return Ok(Frame::Unreadable);
    }
    let mut header = [0u8; 8];
    reader.read_exact(&mut header)?;
    let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let len = u64::from(u32::from_le_bytes(len_bytes));
    if FRAME_HEADER + len > remaining {
        return Ok(Frame::Unreadable);
    }
    let frame_len = FRAME_HEADER + len;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    let mut payload = Vec::new();
    if keep_payload {
        // `len` is bounded by the bytes left in the file, checked above.
        payload.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        reader.read_exact(&mut payload)?;
        hasher.update(&payload);
    } else {
        let mut chunk = [0u8; VERIFY_CHUNK];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(VERIFY_CHUNK as u64)).unwrap_or(VERIFY_CHUNK);
            reader.read_exact(&mut chunk[..n])?;
            hasher.update(&chunk[..n]);
            left -= n as u64;
        }
    }
    if hasher.finalize() == stored_crc {
        Ok(Frame::Valid { frame_len, payload })
    } else {
        Ok(Frame::Corrupt { frame_len })
    }
}

/// A read position: segment id and byte offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

/// Encodes one cursor slot.
fn encode_slot(seq: u64, pos: Position) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    slot[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&slot[..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// Decodes one cursor slot; `None` if it is short or its checksum does not match.
fn decode_slot(bytes: &[u8]) -> Option<(u64, Position)> {
    let slot: &[u8; SLOT_BYTES] = bytes.get(..SLOT_BYTES)?.try_into().ok()?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&slot[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let crc = u32::from_le_bytes([slot[24], slot[25], slot[26], slot[27]]);
    if crc32fast::hash(&slot[..24]) != crc {
        return None;
    }
    Some((
        word(0),
        Position {
            segment: word(8),
            offset: word(16),
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
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Path of segment `id` in `dir`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.spill"))
}

/// Parses a segment file name back into its id.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".spill")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Makes the directory's entries (created and deleted files) durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let bytes = frame(b"hello");
        let end = bytes.len() as u64;
        match read_frame(&mut &bytes[..], 0, end, true).unwrap() {
            Frame::Valid { frame_len, payload } => {
                assert_eq!(frame_len, 13);
                assert_eq!(payload, b"hello");
            }
            other => panic!("expected a valid frame, got {other:?}"),
        }
        let mut damaged = bytes.clone();
        damaged[10] ^= 0x01;
        assert!(matches!(
            read_frame(&mut &damaged[..], 0, end, false).unwrap(),
            Frame::Corrupt { frame_len: 13 }
        ));
        // Short header, length past the end.
        assert!(matches!(
            read_frame(&mut &bytes[..5], 0, 5, false).unwrap(),
            Frame::Unreadable
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..], 0, end - 1, false).unwrap(),
            Frame::Unreadable
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..], end, end, false).unwrap(),
            Frame::End
        ));
    }

    #[test]
    fn cursor_picks_newest_valid_slot() {
        let p = |segment, offset| Position { segment, offset };
        let mut bytes = [0u8; 64];
        bytes[32..].copy_from_slice(&encode_slot(7, p(3, 40)));
        bytes[..32].copy_from_slice(&encode_slot(8, p(3, 52)));
        assert_eq!(decode_cursor(&bytes), Some((8, p(3, 52))));
        // A torn newer slot falls back to the older one.
        bytes[3] ^= 0xff;
        assert_eq!(decode_cursor(&bytes), Some((7, p(3, 40))));
        assert_eq!(decode_cursor(&bytes[..10]), None);
    }
}
