use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::format::{parse_segment_name, FILE_HEADER, FRAME_HEADER};
use super::*;

fn config(max_bytes: u64, segment_bytes: u64) -> SpillConfig {
    SpillConfig {
        max_bytes,
        segment_bytes,
    }
}

fn record(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_name)
                .is_some_and(|(_, damaged)| !damaged)
        })
        .collect();
    files.sort();
    files
}

fn drain(queue: &mut SpillQueue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(r) = queue.pop().unwrap() {
        out.push(r);
    }
    out
}

/// XORs one byte of `path` at `offset`.
fn flip_byte(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
}

#[test]
fn order_is_preserved_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open_with(dir.path(), config(10_000, 64)).unwrap();
    let records: Vec<Vec<u8>> = (0..40).map(|i| record(i, i % 23)).collect();
    for r in &records[..25] {
        q.push(r).unwrap();
    }
    assert!(segment_files(dir.path()).len() > 3, "records span segments");
    let mut out: Vec<Vec<u8>> = (0..10).map(|_| q.pop().unwrap().unwrap()).collect();
    for r in &records[25..] {
        q.push(r).unwrap();
    }
    out.extend(drain(&mut q));
    assert_eq!(out, records);
    assert!(q.is_empty());
    let stats = q.stats();
    assert_eq!((stats.records_pushed, stats.records_popped), (40, 40));
    // Every consumed segment is gone; only the newest remains.
    assert_eq!(segment_files(dir.path()).len(), 1);
    // The first segment was created by open, so all but the newest were deleted.
    assert_eq!(stats.segments_deleted + 1, stats.segments_created);
}

#[test]
fn byte_bound_holds_and_rejections_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open_with(dir.path(), config(300, 120)).unwrap();
    let mut accepted = 0;
    for i in 0..50 {
        match q.push(&record(i, 20)) {
            Ok(()) => accepted += 1,
            Err(SpillError::Full {
                frame_bytes,
                used_bytes,
                max_bytes,
            }) => {
                assert_eq!((frame_bytes, max_bytes), (44, 300));
                assert!(used_bytes + frame_bytes > 300);
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(q.bytes() <= 300);
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, q.bytes());
    }
    // 44-byte frames after a 16-byte header, two per 120-byte segment (104 bytes): two full
    // segments and one frame of a third fit in 300 bytes.
    assert_eq!(accepted, 5);
    assert_eq!(q.stats().rejected_full, 45);
    assert_eq!(q.len(), 5);
    // Popping two frames frees their segment, so one more fits.
    q.pop().unwrap();
    q.pop().unwrap();
    q.push(&record(99, 20)).unwrap();
    assert_eq!(q.len(), 4);
}

#[test]
fn a_drained_queue_gives_the_whole_bound_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open_with(dir.path(), config(120, 120)).unwrap();
    q.push(&[1; 60]).unwrap();
    assert_eq!(q.pop().unwrap().unwrap(), vec![1; 60]);
    // The consumed 100 bytes still sit in the only segment; the push starts a fresh one.
    q.push(&[2; 80]).unwrap();
    assert_eq!(q.bytes(), 120);
    assert_eq!(q.pop().unwrap().unwrap(), vec![2; 80]);
}

#[test]
fn oversized_records_and_bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 100).unwrap();
    assert!(matches!(
        q.push(&[0; 61]),
        Err(SpillError::RecordTooLarge {
            record_bytes: 61,
            max_record_bytes: 60
        })
    ));
    q.push(&[0; 60]).unwrap();
    assert!(matches!(
        SpillQueue::open(dir.path().join("x"), 40),
        Err(SpillError::InvalidConfig(_))
    ));
    assert!(matches!(
        SpillQueue::open_with(dir.path().join("y"), config(100, 0)),
        Err(SpillError::InvalidConfig(_))
    ));
}

#[test]
fn reopen_returns_exactly_the_unconsumed_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(10_000, 100);
    let records: Vec<Vec<u8>> = (0..30).map(|i| record(i, 10 + i)).collect();
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    for r in &records {
        q.push(r).unwrap();
    }
    let first: Vec<_> = (0..7).map(|_| q.pop().unwrap().unwrap()).collect();
    q.sync().unwrap();
    drop(q);

    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.len(), 23);
    let second: Vec<_> = (0..11).map(|_| q.pop().unwrap().unwrap()).collect();
    drop(q);

    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.len(), 12);
    let stats = q.stats();
    assert_eq!(
        (stats.damaged_records, stats.torn_tail_trimmed_bytes),
        (0, 0)
    );
    let rest = drain(&mut q);
    let all: Vec<_> = first.into_iter().chain(second).chain(rest).collect();
    assert_eq!(all, records);
}

/// Bytes of a frame carrying a 20-byte record.
const F: u64 = FRAME_HEADER + 20;

/// The quarantine name of a segment file.
fn quarantined(seg: &Path) -> PathBuf {
    let mut name = seg.file_name().unwrap().to_os_string();
    name.push(".damaged");
    seg.with_file_name(name)
}

/// A queue in `dir` holding `n` 20-byte records, closed again.
fn filled(dir: &Path, cfg: SpillConfig, n: usize) {
    let mut q = SpillQueue::open_with(dir, cfg).unwrap();
    for i in 0..n {
        q.push(&record(i, 20)).unwrap();
    }
}

#[test]
fn torn_tail_is_trimmed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 3);
    let seg = segment_files(dir.path()).pop().unwrap();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(FILE_HEADER + 3 * F - 11).unwrap(); // cut the last frame mid-payload

    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.stats().torn_tail_trimmed_bytes, F - 11);
    assert_eq!(q.stats().damaged_records, 0);
    assert_eq!(q.bytes(), FILE_HEADER + 2 * F);
    q.push(&record(3, 5)).unwrap();
    assert_eq!(
        drain(&mut q),
        vec![record(0, 20), record(1, 20), record(3, 5)]
    );
}

#[test]
fn partial_header_at_the_tail_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 2);
    let seg = segment_files(dir.path()).pop().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(FILE_HEADER + F + 5)
        .unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.stats().torn_tail_trimmed_bytes, 5);
    assert_eq!(drain(&mut q), vec![record(0, 20)]);
}

#[test]
fn a_damaged_header_on_the_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 3);
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, FILE_HEADER + 2 * F + 5); // its length: no valid frame follows
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    let stats = q.stats();
    assert_eq!(
        (stats.torn_tail_trimmed_bytes, stats.damaged_records),
        (F, 0)
    );
    assert_eq!(drain(&mut q), vec![record(0, 20), record(1, 20)]);
}

#[test]
fn a_flipped_payload_byte_in_the_last_frame_is_counted_not_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 3);
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, FILE_HEADER + 2 * F + 30);
    let before = fs::read(&seg).unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    let stats = q.stats();
    assert_eq!(
        (
            stats.torn_tail_trimmed_bytes,
            stats.damaged_records,
            stats.damaged_bytes
        ),
        (0, 1, F)
    );
    assert_eq!(drain(&mut q), vec![record(0, 20), record(1, 20)]);
    assert_eq!(fs::read(quarantined(&seg)).unwrap(), before);
}

#[test]
fn a_flipped_payload_byte_drops_that_record_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 3);
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, FILE_HEADER + F + 30); // a payload byte of the second frame
    let before = fs::read(&seg).unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.stats().damaged_records, 1);
    assert_eq!(q.stats().damaged_bytes, F);
    assert_eq!(q.stats().segments_quarantined, 1);
    // The damaged file is never written again: new records go to a new segment.
    q.push(&record(3, 20)).unwrap();
    assert_eq!(
        drain(&mut q),
        vec![record(0, 20), record(2, 20), record(3, 20)]
    );
    assert_eq!(q.stats().damaged_records, 1, "pop does not count it again");
    assert_eq!(q.stats().torn_tail_trimmed_bytes, 0);
    assert!(!seg.exists());
    assert_eq!(
        fs::read(quarantined(&seg)).unwrap(),
        before,
        "kept as it was"
    );
}

#[test]
fn corruption_after_open_is_caught_by_pop() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, FILE_HEADER + F + 30);
    assert_eq!(drain(&mut q), vec![record(0, 20), record(2, 20)]);
    assert_eq!(q.stats().damaged_records, 1);
    assert_eq!(q.stats().segments_quarantined, 1);
    assert_eq!(q.len(), 0);
    q.push(&record(3, 20)).unwrap();
    assert_eq!(drain(&mut q), vec![record(3, 20)]);
}

#[test]
fn a_flipped_length_byte_mid_newest_segment_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(100_000), 10);
    let seg = segment_files(dir.path()).pop().unwrap();
    let size = fs::metadata(&seg).unwrap().len();
    flip_byte(&seg, FILE_HEADER + 4 * F + 4); // the length of the fifth frame
    let mut q = SpillQueue::open(dir.path(), 100_000).unwrap();
    let stats = q.stats();
    assert_eq!(q.len(), 9);
    assert_eq!(
        (
            stats.damaged_records,
            stats.damaged_bytes,
            stats.torn_tail_trimmed_bytes
        ),
        (1, F, 0)
    );
    // Not truncated: quarantined whole.
    assert_eq!(fs::metadata(quarantined(&seg)).unwrap().len(), size);
    let expected: Vec<_> = (0..10).filter(|&i| i != 4).map(|i| record(i, 20)).collect();
    assert_eq!(drain(&mut q), expected);
    assert_eq!(q.stats().damaged_records, 1);
}

#[test]
fn a_flipped_length_byte_in_an_older_segment_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(10_000, FILE_HEADER + 3 * F);
    filled(dir.path(), cfg, 6);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 2);
    // Make the second frame of the first segment claim a length past the segment's end.
    let mut f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
    f.seek(SeekFrom::Start(FILE_HEADER + F + 4)).unwrap();
    f.write_all(&1000u32.to_le_bytes()).unwrap();
    drop(f);
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.len(), 5);
    assert_eq!(q.stats().damaged_records, 1);
    assert_eq!(q.stats().damaged_bytes, F);
    let expected: Vec<_> = [0, 2, 3, 4, 5].iter().map(|&i| record(i, 20)).collect();
    assert_eq!(drain(&mut q), expected);
    assert_eq!(q.stats().damaged_records, 1);
    // The damaged segment was passed and kept; the clean one was deleted.
    assert!(quarantined(&segs[0]).exists());
    assert_eq!(segment_files(dir.path()), vec![segs[1].clone()]);
}

#[test]
fn damage_at_the_end_of_an_older_segment_is_counted_by_sequence_gap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(10_000, FILE_HEADER + 3 * F);
    filled(dir.path(), cfg, 6);
    let segs = segment_files(dir.path());
    // Cut the first segment in the middle of its second frame: two records are gone.
    OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap()
        .set_len(FILE_HEADER + F + 7)
        .unwrap();
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.stats().damaged_records, 2);
    assert_eq!(q.stats().damaged_bytes, 7);
    let expected: Vec<_> = [0, 3, 4, 5].iter().map(|&i| record(i, 20)).collect();
    assert_eq!(drain(&mut q), expected);
}

#[test]
fn duplicated_frames_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 4);
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    // Repeat frames 1 and 2 after frame 2.
    let (a, b) = ((FILE_HEADER + F) as usize, (FILE_HEADER + 3 * F) as usize);
    let copy = bytes[a..b].to_vec();
    bytes.splice(b..b, copy);
    fs::write(&seg, bytes).unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.len(), 4);
    assert_eq!(q.stats().duplicate_records, 2);
    assert_eq!(q.stats().damaged_records, 0);
    assert_eq!(
        drain(&mut q),
        (0..4).map(|i| record(i, 20)).collect::<Vec<_>>()
    );
}

#[test]
fn a_second_queue_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    q.push(b"x").unwrap();
    let err = SpillQueue::open(dir.path(), 10_000).unwrap_err();
    assert!(matches!(err, SpillError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another spill queue"));
    drop(q);
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.pop().unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    const CHILD: &str = "WEIR_SPILL_LOCK_TEST_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        // The child: this same test, run by the parent below with the directory it holds.
        let code = match SpillQueue::open(&dir, 10_000) {
            Err(SpillError::Locked { .. }) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        std::process::exit(code);
    }
    let dir = tempfile::tempdir().unwrap();
    let q = SpillQueue::open(dir.path(), 10_000).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spill::tests::a_second_process_on_the_same_directory_is_refused",
        ])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the child process was not refused");
    drop(q);
}

#[test]
fn a_version_1_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // A version-1 segment: `len | crc(len, payload) | payload`.
    let payload = b"[1,2,3]";
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    let mut v1 = len.to_vec();
    v1.extend_from_slice(&h.finalize().to_le_bytes());
    v1.extend_from_slice(payload);
    let seg = dir.path().join(format!("seg-{:020}.spill", 3));
    fs::write(&seg, &v1).unwrap();
    fs::write(dir.path().join("cursor"), [7u8; 64]).unwrap();
    let err = SpillQueue::open(dir.path(), 10_000).unwrap_err();
    assert!(
        matches!(err, SpillError::UnsupportedVersion { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("format version 1"), "{err}");
    assert_eq!(fs::read(&seg).unwrap(), v1);
    assert_eq!(fs::read(dir.path().join("cursor")).unwrap(), [7u8; 64]);
}

#[test]
fn an_unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), SpillConfig::new(10_000), 1);
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    fs::write(&seg, &bytes).unwrap();
    let err = SpillQueue::open(dir.path(), 10_000).unwrap_err();
    assert!(
        matches!(err, SpillError::UnsupportedVersion { version: 9, .. }),
        "{err}"
    );
}

#[test]
fn torn_cursor_write_redelivers_instead_of_losing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..4 {
        q.push(&record(i, 8)).unwrap();
    }
    q.pop().unwrap();
    q.pop().unwrap();
    drop(q);
    // Damage the newest cursor slot, as a write cut short by a crash would.
    let cursor_path = dir.path().join(CURSOR_FILE);
    let bytes = fs::read(&cursor_path).unwrap();
    let seq = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    let newest_slot_start = if seq(0) > seq(40) { 0 } else { 40 };
    flip_byte(&cursor_path, newest_slot_start + 10);
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(
        drain(&mut q),
        vec![record(1, 8), record(2, 8), record(3, 8)],
        "the second pop is delivered again, nothing is lost"
    );
}

#[test]
fn reopening_with_a_smaller_bound_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    q.push(&record(0, 500)).unwrap();
    q.push(&record(1, 500)).unwrap();
    drop(q);
    let mut q = SpillQueue::open(dir.path(), 1070).unwrap();
    assert_eq!(q.len(), 2);
    assert!(matches!(q.push(&[0; 10]), Err(SpillError::Full { .. })));
    assert_eq!(q.pop().unwrap(), Some(record(0, 500)));
    assert_eq!(q.pop().unwrap(), Some(record(1, 500)));
    q.push(&[7; 10]).unwrap();
    assert_eq!(q.stats().damaged_records, 0);
}

#[test]
fn leftover_consumed_segments_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(10_000, 28);
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    drop(q);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 3);
    // Simulate a crash between persisting the cursor and deleting the file.
    let first = fs::read(&segs[0]).unwrap();
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.pop().unwrap(), Some(record(0, 20)));
    drop(q);
    fs::write(&segs[0], first).unwrap();
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.stats().segments_deleted, 1);
    assert_eq!(drain(&mut q), vec![record(1, 20), record(2, 20)]);
}

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    Pop,
    Reopen,
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Op::Push),
        4 => Just(Op::Pop),
        1 => Just(Op::Reopen),
        1 => Just(Op::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The queue behaves as a `VecDeque` under any mix of pushes, pops and reopens, within its
    /// byte bound, and refuses a push only when the pending data really leaves no room.
    #[test]
    fn behaves_like_a_bounded_fifo(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1_000, 200);
        let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(r) => {
                    let frame = r.len() as u64 + 24;
                    match q.push(&r) {
                        Ok(()) => model.push_back(r),
                        Err(SpillError::Full { .. }) => {
                            let pending: u64 = model.iter().map(|r| r.len() as u64 + 24).sum();
                            let headers = FILE_HEADER * (q.segments.len() as u64 + 1);
                            prop_assert!(
                                pending + frame > cfg.max_bytes - cfg.segment_bytes - headers
                            );
                        }
                        Err(e) => prop_assert!(false, "unexpected error {}", e),
                    }
                }
                Op::Pop => prop_assert_eq!(q.pop().unwrap(), model.pop_front()),
                Op::Reopen => {
                    drop(q);
                    q = SpillQueue::open_with(dir.path(), cfg).unwrap();
                    prop_assert_eq!(q.stats().damaged_records, 0);
                    prop_assert_eq!(q.stats().torn_tail_trimmed_bytes, 0);
                }
                Op::Sync => q.sync().unwrap(),
            }
            prop_assert_eq!(q.len(), model.len() as u64);
            prop_assert!(q.bytes() <= cfg.max_bytes);
            let pending: u64 = model.iter().map(|r| r.len() as u64 + 24).sum();
            prop_assert_eq!(q.pending_bytes(), pending);
        }
    }
}

/// Damage done to a closed spill's segment files. Positions and lengths are fractions of the
/// file (out of 65 536) or small byte counts, so every case applies to any file.
#[derive(Debug, Clone)]
enum Harm {
    /// XOR one byte with a non-zero mask.
    Flip { seg: usize, at: u16, mask: u8 },
    /// Truncate the file.
    Cut { seg: usize, at: u16 },
    /// Copy a block of bytes to another place in the same file.
    Duplicate {
        seg: usize,
        from: u16,
        len: u8,
        to: u16,
    },
    /// Move a block of bytes elsewhere in the same file (reorders frames).
    Move {
        seg: usize,
        from: u16,
        len: u8,
        to: u16,
    },
}

fn harm() -> impl Strategy<Value = Harm> {
    let seg = 0..16usize;
    prop_oneof![
        3 => (seg.clone(), any::<u16>(), 1..=255u8)
            .prop_map(|(seg, at, mask)| Harm::Flip { seg, at, mask }),
        1 => (seg.clone(), any::<u16>()).prop_map(|(seg, at)| Harm::Cut { seg, at }),
        1 => (seg.clone(), any::<u16>(), any::<u8>(), any::<u16>())
            .prop_map(|(seg, from, len, to)| Harm::Duplicate { seg, from, len, to }),
        1 => (seg, any::<u16>(), any::<u8>(), any::<u16>())
            .prop_map(|(seg, from, len, to)| Harm::Move { seg, from, len, to }),
    ]
}

fn scale(frac: u16, len: usize) -> usize {
    (frac as usize * len) >> 16
}

fn apply(harm: &Harm, segs: &[PathBuf]) {
    let (Harm::Flip { seg, .. }
    | Harm::Cut { seg, .. }
    | Harm::Duplicate { seg, .. }
    | Harm::Move { seg, .. }) = harm;
    let path = &segs[seg % segs.len()];
    let mut bytes = fs::read(path).unwrap();
    if bytes.is_empty() {
        return;
    }
    match *harm {
        Harm::Flip { at, mask, .. } => {
            let at = scale(at, bytes.len());
            bytes[at] ^= mask;
        }
        Harm::Cut { at, .. } => bytes.truncate(scale(at, bytes.len())),
        Harm::Duplicate { from, len, to, .. } => {
            let from = scale(from, bytes.len());
            let end = (from + len as usize + 1).min(bytes.len());
            let block = bytes[from..end].to_vec();
            let to = scale(to, bytes.len() + 1);
            bytes.splice(to..to, block);
        }
        Harm::Move { from, len, to, .. } => {
            let from = scale(from, bytes.len());
            let end = (from + len as usize + 1).min(bytes.len());
            let block: Vec<u8> = bytes.drain(from..end).collect();
            let to = scale(to, bytes.len() + 1);
            bytes.splice(to..to, block);
        }
    }
    fs::write(path, bytes).unwrap();
}

/// A record that names its own index.
fn numbered(i: usize, extra: usize) -> Vec<u8> {
    let mut r = (i as u32).to_le_bytes().to_vec();
    r.extend((0..extra).map(|j| (i * 7 + j) as u8));
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever is done to the files of a closed spill, reopening it recovers every pending
    /// record exactly once or counts it as damaged; none is delivered twice or out of order.
    /// The only losses not counted record by record are a torn tail: records after the last
    /// one recovered, whose bytes were trimmed or cut off.
    #[test]
    fn recovery_delivers_once_or_counts_every_record(
        sizes in proptest::collection::vec(0..40usize, 1..60),
        popped in 0..10usize,
        harms in proptest::collection::vec(harm(), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(100_000, 200);
        let records: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| numbered(i, n)).collect();
        let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
        for r in &records {
            q.push(r).unwrap();
        }
        let popped = popped.min(records.len());
        for r in &records[..popped] {
            let got = q.pop().unwrap();
            prop_assert_eq!(got.as_ref(), Some(r));
        }
        drop(q);
        let segs = segment_files(dir.path());
        for h in &harms {
            apply(h, &segs);
        }

        let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
        // Records pushed after recovery are never lost.
        let fresh: Vec<Vec<u8>> = (0..3).map(|i| numbered(1000 + i, 5)).collect();
        for r in &fresh {
            q.push(r).unwrap();
        }
        let out = drain(&mut q);
        prop_assert!(out.len() >= fresh.len());
        let (old, new) = out.split_at(out.len() - fresh.len());
        prop_assert_eq!(new, &fresh[..]);
        let mut last = None;
        for r in old {
            let i = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
            prop_assert_eq!(r, &records[i], "a delivered record is authentic");
            prop_assert!(i >= popped, "record {} was popped before", i);
            prop_assert!(last < Some(i), "record {} after {:?}: twice or out of order", i, last);
            last = Some(i);
        }
        let stats = q.stats();
        let missing = (records.len() - popped - old.len()) as u64;
        prop_assert!(stats.damaged_records <= missing, "{:?}, {} missing", stats, missing);
        let after_last = records.len() - last.map_or(popped, |l| l + 1);
        prop_assert!(
            missing - stats.damaged_records <= after_last as u64,
            "uncounted losses only at the tail: {:?}, {} missing, {} after the last",
            stats, missing, after_last
        );
        // Recovery is counted once: reopening the drained queue finds nothing new.
        drop(q);
        let q = SpillQueue::open_with(dir.path(), cfg).unwrap();
        prop_assert_eq!(q.len(), 0);
        prop_assert_eq!(q.stats().damaged_records, 0);
    }
}
