use super::*;
use crate::Batch;

#[derive(Clone)]
struct Plain;
impl HeapSize for Plain {}

#[test]
fn fixed_size_types_own_no_heap() {
    fn has_heap<T: HeapSize + ?Sized>() -> bool {
        T::HAS_HEAP
    }
    assert!(!has_heap::<u64>());
    assert!(!has_heap::<(u64, f64, bool)>());
    assert!(!has_heap::<Option<[u32; 4]>>());
    assert!(!has_heap::<&'static str>());
    assert!(!has_heap::<std::time::Instant>());
    assert!(has_heap::<(u64, String)>());
    assert!(has_heap::<Option<Vec<u8>>>());
    assert!(has_heap::<Plain>(), "an empty impl is conservative");
    assert_eq!("static".heap_size(), 0);
    assert_eq!(Plain.heap_size(), 0);
    assert_eq!(std::time::Duration::from_secs(1).heap_size(), 0);
}

#[test]
fn containers_count_their_allocation_and_their_elements() {
    let s = String::with_capacity(40);
    assert_eq!(s.heap_size(), 40);
    let v: Vec<String> = vec![String::with_capacity(10), String::with_capacity(20)];
    assert_eq!(v.heap_size(), v.capacity() * size_of::<String>() + 30);
    let b: Box<str> = "abcd".into();
    assert_eq!(b.heap_size(), 4);
    let bx = Box::new(String::with_capacity(5));
    assert_eq!(bx.heap_size(), size_of::<String>() + 5);
    let a = Arc::new(vec![0u64; 8]);
    assert_eq!(
        a.heap_size(),
        2 * size_of::<usize>() + size_of::<Vec<u64>>() + 64
    );
    let t = (1u8, String::with_capacity(7), Some(vec![0u16; 3]));
    assert_eq!(t.heap_size(), 7 + t.2.as_ref().unwrap().capacity() * 2);
    let r: Result<u8, String> = Err(String::with_capacity(9));
    assert_eq!(r.heap_size(), 9);
    let c: Cow<'static, str> = Cow::Borrowed("x");
    assert_eq!(c.heap_size(), 0);
    let c: Cow<'static, str> = Cow::Owned(String::with_capacity(11));
    assert_eq!(c.heap_size(), 11);
    let mut d = VecDeque::with_capacity(4);
    d.push_back(String::with_capacity(3));
    assert_eq!(d.heap_size(), d.capacity() * size_of::<String>() + 3);
}

#[test]
fn maps_and_sets_count_entries_and_their_heap() {
    let mut m = HashMap::new();
    m.insert(1u32, String::with_capacity(1000));
    let table = m.capacity() * (size_of::<(u32, String)>() + 1);
    assert_eq!(m.heap_size(), table + 1000);
    let mut b = BTreeMap::new();
    b.insert(String::with_capacity(50), 1u64);
    assert!(b.heap_size() >= 50 + size_of::<String>() + 8);
    assert_eq!(BTreeSet::<u8>::new().heap_size(), 0);
    let mut h = HashSet::new();
    h.insert(vec![0u8; 100]);
    assert!(h.heap_size() >= 100);
}

#[test]
fn json_values_are_measured_deeply() {
    let v = serde_json::json!({"name": "x".repeat(500), "tags": ["a".repeat(300)], "n": 1});
    let size = v.heap_size();
    assert!(size >= 800, "{size}");
    assert!(size < 800 + 2048, "{size}");
}

#[test]
fn arrow_arrays_count_their_buffers() {
    use arrow_array::{Array, Int64Array, StringArray};
    let a = Int64Array::from_iter_values(0..10_000);
    assert!(a.heap_size() >= 80_000);
    let s = StringArray::from_iter_values(std::iter::repeat_n("y".repeat(100), 100));
    assert!(s.heap_size() >= 10_000);
    let dynamic: arrow_array::ArrayRef = Arc::new(a);
    assert!(dynamic.heap_size() >= 80_000);
    assert_eq!(dynamic.len(), 10_000);
}

mod derived {
    use crate::HeapSize;
    use std::mem::size_of;

    #[derive(HeapSize)]
    struct Fixed {
        _a: u64,
        _b: (f32, bool),
    }

    #[derive(HeapSize)]
    struct Named {
        name: String,
        tags: Vec<String>,
        #[heap_size(skip)]
        _shared: std::sync::Arc<Vec<u8>>,
    }

    #[derive(HeapSize)]
    struct Wrapper<T>(T, u8);

    #[derive(HeapSize)]
    struct Unit;

    #[derive(HeapSize)]
    enum Event {
        Tick,
        Text(String),
        Pair { _left: u32, right: Box<str> },
    }

    #[test]
    fn fields_are_summed_and_fixed_types_say_so() {
        assert!(!has_heap::<Fixed>());
        assert!(!has_heap::<Unit>());
        assert!(!has_heap::<Wrapper<u64>>());
        assert!(has_heap::<Wrapper<String>>());
        assert!(has_heap::<Event>());
        assert_eq!(Unit.heap_size(), 0);

        let n = Named {
            name: String::with_capacity(10),
            tags: vec![String::with_capacity(5), String::with_capacity(7)],
            _shared: std::sync::Arc::new(vec![0; 1 << 20]),
        };
        let tags = n.tags.capacity() * size_of::<String>() + 12;
        assert_eq!(n.heap_size(), 10 + tags, "the skipped field is not counted");
        assert_eq!(Wrapper(String::with_capacity(3), 1).heap_size(), 3);
    }

    #[test]
    fn an_enum_counts_the_variant_it_holds() {
        assert_eq!(Event::Tick.heap_size(), 0);
        assert_eq!(Event::Text(String::with_capacity(9)).heap_size(), 9);
        let pair = Event::Pair {
            _left: 1,
            right: "abc".into(),
        };
        assert_eq!(pair.heap_size(), 3);
    }

    fn has_heap<T: HeapSize>() -> bool {
        T::HAS_HEAP
    }
}

#[test]
fn a_batch_of_heap_rows_counts_the_rows_heap() {
    let batch = vec![
        String::with_capacity(600_000),
        String::with_capacity(600_000),
    ];
    assert_eq!(batch.bytes(), 2 * size_of::<String>() + 1_200_000);
    let fixed: Vec<u64> = Vec::with_capacity(1024);
    assert_eq!(fixed.bytes(), 8192);
}
