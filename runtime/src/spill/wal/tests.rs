use super::*;
use std::sync::Arc;

fn cfg() -> SpillConfig {
    SpillConfig {
        max_bytes: 100_000,
        segment_bytes: 200,
    }
}

fn replayed(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.replay().collect::<Result<_, _>>().unwrap()
}

fn rec(i: u64) -> Vec<u8> {
    format!("record {i}").into_bytes()
}

#[test]
fn replays_from_the_commit_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    for i in 0..20 {
        assert_eq!(wal.append(&rec(i)).unwrap(), i);
    }
    wal.sync(19).unwrap();
    wal.commit(6).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let want: Vec<_> = (7..20).map(|i| (i, rec(i))).collect();
    assert_eq!(replayed(&wal), want);
    // Nothing was committed since: a second restart replays the same.
    assert_eq!(wal.append(&rec(20)).unwrap(), 20);
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let mut want = want;
    want.push((20, rec(20)));
    assert_eq!(replayed(&wal), want);
    assert_eq!(wal.committed_below(), 7);
}

#[test]
fn the_commit_cursor_advances_only_when_told_and_never_back() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    for i in 0..5 {
        wal.append(&rec(i)).unwrap();
    }
    wal.commit(3).unwrap();
    wal.commit(1).unwrap();
    assert_eq!(wal.committed_below(), 4);
    assert!(matches!(wal.commit(5), Err(SpillError::InvalidConfig(_))));
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(replayed(&wal), vec![(4, rec(4))]);
}

#[test]
fn one_fsync_covers_every_append_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let a = wal.append(b"a").unwrap();
    let b = wal.append(b"b").unwrap();
    wal.sync(a).unwrap();
    assert_eq!(wal.stats().fsyncs, 1);
    wal.sync(b).unwrap(); // already covered by the first round
    assert_eq!(wal.stats().fsyncs, 1);
    let c = wal.append(b"c").unwrap();
    wal.sync(c).unwrap();
    assert_eq!(wal.stats().fsyncs, 2);
    assert!(wal.sync(c + 1).is_err(), "a record never appended");
}

#[test]
fn concurrent_appenders_all_become_durable_with_shared_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), cfg()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let seq = wal.append(&rec(t * 100 + i)).unwrap();
                    wal.sync(seq).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wal.stats().appended, 100);
    drop(wal);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let mut got: Vec<Vec<u8>> = replayed(&wal).into_iter().map(|(_, r)| r).collect();
    let mut want: Vec<Vec<u8>> = (0..4)
        .flat_map(|t| (0..25).map(move |i| rec(t * 100 + i)))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn committed_segments_are_released_and_the_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpillConfig {
        max_bytes: 400,
        segment_bytes: 100,
    };
    let wal = Wal::open(dir.path(), config).unwrap();
    let mut last = 0;
    let mut full = false;
    for i in 0..40 {
        match wal.append(&rec(i)) {
            Ok(seq) => last = seq,
            Err(SpillError::Full { .. }) => {
                full = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(wal.bytes() <= 400);
    }
    assert!(full);
    let before = wal.bytes();
    wal.commit(last).unwrap();
    assert!(wal.bytes() < before);
    wal.append(&rec(99)).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), config).unwrap();
    assert_eq!(replayed(&wal), vec![(last + 1, rec(99))]);
}

#[test]
fn a_torn_tail_is_trimmed_and_damage_in_the_middle_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    for i in 0..3 {
        wal.append(&rec(i)).unwrap();
    }
    drop(wal);
    let seg = segment_path(dir.path(), 0, false);
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.stats().torn_tail_trimmed_bytes, FRAME_HEADER + 8 - 3);
    assert_eq!(replayed(&wal), vec![(0, rec(0)), (1, rec(1))]);
    // Appends continue in a new segment, numbered after what survived.
    assert_eq!(wal.append(&rec(2)).unwrap(), 2);
    drop(wal);
    // Damage the first record's length: it is skipped and counted, the rest replays.
    let mut bytes = fs::read(&seg).unwrap();
    bytes[(FILE_HEADER + 4) as usize] ^= 0x40;
    fs::write(&seg, bytes).unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    let mut replay = wal.replay();
    let got: Vec<_> = replay.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, vec![(1, rec(1)), (2, rec(2))]);
    let stats = replay.stats();
    assert_eq!(
        (stats.damaged_records, stats.damaged_bytes),
        (1, FRAME_HEADER + 8)
    );
}

#[test]
fn a_second_log_on_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = Wal::open(dir.path(), cfg()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), cfg()),
        Err(SpillError::Locked { .. })
    ));
    assert!(matches!(
        super::super::SpillQueue::open(dir.path(), 10_000),
        Err(SpillError::Locked { .. })
    ));
}
