use super::*;
use std::io::Write;

fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = encode_frame_header(seq, payload).to_vec();
    v.extend_from_slice(payload);
    v
}

fn reader(bytes: &[u8], capacity: usize) -> (SegmentReader, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    File::create(&path).unwrap().write_all(bytes).unwrap();
    (
        SegmentReader::new(File::open(&path).unwrap(), capacity),
        dir,
    )
}

#[test]
fn frame_round_trips_and_detects_damage() {
    let bytes = frame(7, b"hello");
    let end = bytes.len() as u64;
    let (mut r, _d) = reader(&bytes, 64);
    match r.next(0, end, true).unwrap() {
        Frame::Valid {
            frame_len,
            seq,
            payload,
        } => {
            assert_eq!((frame_len, seq), (29, 7));
            assert_eq!(payload, b"hello");
        }
        other => panic!("expected a valid frame, got {other:?}"),
    }
    let mut damaged = bytes.clone();
    damaged[26] ^= 0x01;
    let (mut r, _d) = reader(&damaged, 64);
    assert!(matches!(
        r.next(0, end, false).unwrap(),
        Frame::BadPayload {
            frame_len: 29,
            seq: 7
        }
    ));
    // A frame cut short is no frame: everything is skipped to the end.
    assert!(matches!(
        r.next(0, end - 1, false).unwrap(),
        Frame::Skip {
            bytes: 28,
            to_end: true
        }
    ));
    assert!(matches!(r.next(end, end, false).unwrap(), Frame::End));
}

#[test]
fn payloads_larger_than_the_buffer_are_read_whole() {
    let big: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let mut bytes = frame(1, &big);
    bytes.extend(frame(2, b"after"));
    let end = bytes.len() as u64;
    for capacity in [24, 100, 1023] {
        let (mut r, _d) = reader(&bytes, capacity);
        let Frame::Valid { payload, .. } = r.next(0, end, true).unwrap() else {
            panic!("capacity {capacity}: not valid");
        };
        assert_eq!(payload, big);
        let Frame::Valid { payload, seq, .. } = r.next(1024, end, true).unwrap() else {
            panic!("capacity {capacity}: second frame not valid");
        };
        assert_eq!((seq, &payload[..]), (2, &b"after"[..]));
        assert!(matches!(
            r.next(0, end, false).unwrap(),
            Frame::Valid {
                frame_len: 1024,
                ..
            }
        ));
    }
}

#[test]
fn damage_in_a_header_resynchronises_on_the_next_frame() {
    // Small buffers make the scan cross window boundaries.
    for capacity in [24, 25, 31, 64, 4096] {
        let mut bytes = frame(1, &[9; 40]);
        bytes.extend(frame(2, &[8; 3]));
        bytes[5] ^= 0x10; // the first frame's length
        let end = bytes.len() as u64;
        let (mut r, _d) = reader(&bytes, capacity);
        assert!(
            matches!(
                r.next(0, end, true).unwrap(),
                Frame::Skip {
                    bytes: 64,
                    to_end: false
                }
            ),
            "capacity {capacity}"
        );
        assert!(matches!(
            r.next(64, end, true).unwrap(),
            Frame::Valid { seq: 2, .. }
        ));
    }
}

#[test]
fn file_headers_are_classified() {
    assert_eq!(
        check_file_header(&encode_file_header(), 16),
        FileHeader::Current
    );
    let mut other = encode_file_header();
    other[8] = 3;
    let crc = crc32fast::hash(&other[..12]);
    other[12..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(check_file_header(&other, 16), FileHeader::Version(3));
    let mut damaged = encode_file_header();
    damaged[2] ^= 1;
    assert_eq!(check_file_header(&damaged, 16), FileHeader::Damaged);
    assert_eq!(check_file_header(&damaged[..5], 5), FileHeader::Short);
    // A version-1 segment: `len | crc(len, payload) | payload`.
    let payload = b"[1,2,3]";
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    let mut v1 = len.to_vec();
    v1.extend_from_slice(&h.finalize().to_le_bytes());
    v1.extend_from_slice(payload);
    assert_eq!(check_file_header(&v1, v1.len() as u64), FileHeader::V1);
}

#[test]
fn cursor_picks_newest_valid_slot() {
    let p = |segment, offset| Position {
        segment,
        offset,
        next_record: Some(offset),
    };
    let mut bytes = [0u8; 80];
    bytes[40..].copy_from_slice(&encode_slot(7, p(3, 40)));
    bytes[..40].copy_from_slice(&encode_slot(8, p(3, 52)));
    assert_eq!(decode_cursor(&bytes), Some((8, p(3, 52))));
    // A torn newer slot falls back to the older one.
    bytes[3] ^= 0xff;
    assert_eq!(decode_cursor(&bytes), Some((7, p(3, 40))));
    assert_eq!(decode_cursor(&bytes[..10]), None);
}
