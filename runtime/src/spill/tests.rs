use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::format::parse_segment_name;
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
                .is_some()
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
    let mut q = SpillQueue::open_with(dir.path(), config(200, 64)).unwrap();
    let mut accepted = 0;
    for i in 0..50 {
        match q.push(&record(i, 20)) {
            Ok(()) => accepted += 1,
            Err(SpillError::Full {
                frame_bytes,
                used_bytes,
                max_bytes,
            }) => {
                assert_eq!((frame_bytes, max_bytes), (28, 200));
                assert!(used_bytes + frame_bytes > 200);
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(q.bytes() <= 200);
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, q.bytes());
    }
    // 28-byte frames, two per 64-byte segment: 7 fit in 200 bytes.
    assert_eq!(accepted, 7);
    assert_eq!(q.stats().rejected_full, 43);
    assert_eq!(q.len(), 7);
    // Popping two frames frees their segment, so one more fits.
    q.pop().unwrap();
    q.pop().unwrap();
    q.push(&record(99, 20)).unwrap();
    assert_eq!(q.len(), 6);
}

#[test]
fn a_drained_queue_gives_the_whole_bound_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open_with(dir.path(), config(100, 100)).unwrap();
    q.push(&[1; 60]).unwrap();
    assert_eq!(q.pop().unwrap().unwrap(), vec![1; 60]);
    // The consumed 68 bytes still sit in the only segment; the push starts a fresh one.
    q.push(&[2; 90]).unwrap();
    assert_eq!(q.bytes(), 98);
    assert_eq!(q.pop().unwrap().unwrap(), vec![2; 90]);
}

#[test]
fn oversized_records_and_bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 100).unwrap();
    assert!(matches!(
        q.push(&[0; 93]),
        Err(SpillError::RecordTooLarge {
            record_bytes: 93,
            max_record_bytes: 92
        })
    ));
    q.push(&[0; 92]).unwrap();
    assert!(matches!(
        SpillQueue::open(dir.path().join("x"), 8),
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
        (stats.corrupt_records, stats.torn_tail_trimmed_bytes),
        (0, 0)
    );
    let rest = drain(&mut q);
    let all: Vec<_> = first.into_iter().chain(second).chain(rest).collect();
    assert_eq!(all, records);
}

#[test]
fn torn_tail_is_trimmed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    drop(q);
    let seg = segment_files(dir.path()).pop().unwrap();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(3 * 28 - 11).unwrap(); // cut the last frame mid-payload

    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.stats().torn_tail_trimmed_bytes, 28 - 11);
    assert_eq!(q.bytes(), 56);
    q.push(&record(3, 5)).unwrap();
    assert_eq!(
        drain(&mut q),
        vec![record(0, 20), record(1, 20), record(3, 5)]
    );
}

#[test]
fn partial_header_at_the_tail_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    q.push(&record(0, 20)).unwrap();
    q.push(&record(1, 20)).unwrap();
    drop(q);
    let seg = segment_files(dir.path()).pop().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(28 + 5)
        .unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.stats().torn_tail_trimmed_bytes, 5);
    assert_eq!(drain(&mut q), vec![record(0, 20)]);
}

#[test]
fn bad_checksum_on_the_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    drop(q);
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, 2 * 28 + 15);
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    let stats = q.stats();
    assert_eq!(
        (stats.torn_tail_trimmed_bytes, stats.corrupt_records),
        (28, 0)
    );
    assert_eq!(drain(&mut q), vec![record(0, 20), record(1, 20)]);
}

#[test]
fn corrupt_frame_in_the_middle_is_skipped_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    drop(q);
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, 28 + 12); // a payload byte of the second frame
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.stats().corrupt_records, 1);
    assert_eq!(q.stats().corrupt_bytes, 28);
    assert_eq!(drain(&mut q), vec![record(0, 20), record(2, 20)]);
    assert_eq!(q.stats().corrupt_records, 1, "pop does not count it again");
    assert_eq!(q.stats().torn_tail_trimmed_bytes, 0);
}

#[test]
fn corruption_after_open_is_caught_by_pop() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = SpillQueue::open(dir.path(), 10_000).unwrap();
    for i in 0..3 {
        q.push(&record(i, 20)).unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    flip_byte(&seg, 28 + 12);
    assert_eq!(drain(&mut q), vec![record(0, 20), record(2, 20)]);
    assert_eq!(q.stats().corrupt_records, 1);
    assert_eq!(q.len(), 0);
}

#[test]
fn unparseable_rest_of_an_older_segment_is_skipped_as_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(10_000, 3 * 28);
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    for i in 0..6 {
        q.push(&record(i, 20)).unwrap();
    }
    drop(q);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 2);
    // Make the second frame of the first segment claim a length past the segment's end.
    let mut f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
    f.seek(SeekFrom::Start(28)).unwrap();
    f.write_all(&1000u32.to_le_bytes()).unwrap();
    drop(f);
    let mut q = SpillQueue::open_with(dir.path(), cfg).unwrap();
    assert_eq!(q.len(), 4);
    assert_eq!(q.stats().corrupt_records, 1);
    assert_eq!(q.stats().corrupt_bytes, 56);
    let expected: Vec<_> = [0, 3, 4, 5].iter().map(|&i| record(i, 20)).collect();
    assert_eq!(drain(&mut q), expected);
    assert_eq!(q.stats().corrupt_records, 1);
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
    let newest_slot_start = if seq(0) > seq(32) { 0 } else { 32 };
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
    let mut q = SpillQueue::open(dir.path(), 600).unwrap();
    assert_eq!(q.len(), 2);
    assert!(matches!(q.push(&[0; 10]), Err(SpillError::Full { .. })));
    assert_eq!(q.pop().unwrap(), Some(record(0, 500)));
    assert_eq!(q.pop().unwrap(), Some(record(1, 500)));
    q.push(&[7; 10]).unwrap();
    assert_eq!(q.stats().corrupt_records, 0);
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
                    let frame = r.len() as u64 + 8;
                    match q.push(&r) {
                        Ok(()) => model.push_back(r),
                        Err(SpillError::Full { .. }) => {
                            let pending: u64 = model.iter().map(|r| r.len() as u64 + 8).sum();
                            prop_assert!(pending + frame > cfg.max_bytes - cfg.segment_bytes);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {}", e),
                    }
                }
                Op::Pop => prop_assert_eq!(q.pop().unwrap(), model.pop_front()),
                Op::Reopen => {
                    drop(q);
                    q = SpillQueue::open_with(dir.path(), cfg).unwrap();
                    prop_assert_eq!(q.stats().corrupt_records, 0);
                    prop_assert_eq!(q.stats().torn_tail_trimmed_bytes, 0);
                }
                Op::Sync => q.sync().unwrap(),
            }
            prop_assert_eq!(q.len(), model.len() as u64);
            prop_assert!(q.bytes() <= cfg.max_bytes);
            let pending: u64 = model.iter().map(|r| r.len() as u64 + 8).sum();
            prop_assert_eq!(q.pending_bytes(), pending);
        }
    }
}
