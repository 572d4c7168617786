//! Restore time of keyed state from the checkpoint store: writes `GIB` GiB (default 1) of
//! keyed aggregates as `INSTANCES` state blobs (default 8) of one checkpoint, reopens the store
//! as a restarted job would, and times `latest()` (which reads every byte to verify the
//! checksums) plus the decoding of every blob back into its map, keeping all of them, as a
//! restore does. Each round runs once on one thread and once with one thread per core taking
//! the blobs in turn (as instances restore their own state in parallel).
//!
//! ```text
//! cargo bench -p weir-runtime --bench checkpoint_restore [-- GIB [INSTANCES [ROUNDS [LABEL]]]]
//! ```
//!
//! The state is what a keyed aggregation holds: a foldhash map (as `weir-operators`' keyed state
//! uses) from a `u64` key to counters and a string of `LABEL` bytes (default 16), about
//! `32 + LABEL` bytes encoded per key: the cost of a restore is mostly per key (an allocation
//! and a hash-table insert each), so a smaller `LABEL` means more keys per GiB. The
//! blobs were just written, so they are read from the page cache: the figure is the store's and
//! the decoder's cost, not the disk's. CPU time (summed over the restoring threads, from
//! `/proc/thread-self/schedstat`, Linux) is printed beside the wall time, since on a shared
//! machine the wall time also counts waiting for a core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir_runtime::checkpoint::{
    encode_into, BlobName, CheckpointMeta, CheckpointStore, CompletedCheckpoint,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type State = HashMap<u64, Aggregate, foldhash::fast::RandomState>;

#[derive(Serialize, Deserialize)]
struct Aggregate {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
    last_seen_ms: u64,
    label: String,
}

/// Nanoseconds this thread has run on a CPU (0 where the kernel does not say).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One instance's share of the state: about `bytes` encoded with labels of `label` bytes,
/// from the generator `x`.
fn generate(bytes: u64, label: usize, x: &mut u64) -> State {
    let mut state = State::default();
    let mut encoded = 0;
    while encoded < bytes {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let n = *x % 100_000;
        state.insert(
            *x,
            Aggregate {
                count: n,
                sum: (*x >> 20) as i64 - (1 << 42),
                min: -(n as i64),
                max: (n * 31) as i64,
                last_seen_ms: 1_700_000_000_000 + n,
                label: format!("customer-{n:0width$}", width = label.saturating_sub(9)),
            },
        );
        encoded += 32 + label as u64;
    }
    state
}

/// Decodes every state blob on `threads` threads; returns the maps and the CPU seconds spent.
fn restore(checkpoint: &CompletedCheckpoint, instances: u32, threads: usize) -> (Vec<State>, f64) {
    let next = AtomicU32::new(0);
    let restored = Mutex::new(Vec::new());
    let cpu = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let started = cpu_ns();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= instances {
                        break;
                    }
                    let state: State = checkpoint
                        .read_state(&BlobName::state("count", i))
                        .expect("the blob decodes");
                    mine.push(state);
                }
                *cpu.lock().expect("not poisoned") += cpu_ns() - started;
                restored.lock().expect("not poisoned").extend(mine);
            });
        }
    });
    let cpu = *cpu.lock().expect("not poisoned");
    (
        restored.into_inner().expect("not poisoned"),
        cpu as f64 / 1e9,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; the numbers are the arguments that parse.
    let numbers: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let gib = numbers.first().copied().unwrap_or(1.0);
    let instances = numbers.get(1).map_or(8, |&n| n as u32).max(1);
    let rounds = numbers.get(2).map_or(3, |&n| n as usize).max(1);
    let label = numbers.get(3).map_or(16, |&n| n as usize).max(10);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir()?;

    let started = Instant::now();
    let (mut entries, mut written) = (0u64, 0u64);
    {
        let store = CheckpointStore::open(dir.path(), 1)?;
        let pending = store.begin(store.next_id())?;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..instances {
            let share = (gib * f64::from(1 << 30)) as u64 / u64::from(instances);
            let state = generate(share, label, &mut x);
            entries += state.len() as u64;
            let mut writer = pending.writer(&BlobName::state("count", i))?;
            encode_into(&state, &mut writer)?;
            written += writer.finish()?;
        }
        pending.commit(CheckpointMeta::new(1, 128).operator("count", instances))?;
    }
    println!(
        "checkpoint_restore: {entries} keys ({label}-byte labels), {:.2} GiB in {instances} \
         blobs (generated and written in {:.1} s)",
        written as f64 / f64::from(1 << 30),
        started.elapsed().as_secs_f64()
    );

    let store = CheckpointStore::open(dir.path(), 1)?;
    for round in 1..=rounds {
        for threads in [1, cores] {
            let started = Instant::now();
            let cpu_started = cpu_ns();
            let latest = store.latest()?;
            let checkpoint = latest.checkpoint.ok_or("the checkpoint does not verify")?;
            let verify_cpu = (cpu_ns() - cpu_started) as f64 / 1e9;
            let (restored, decode_cpu) = restore(&checkpoint, instances, threads);
            let wall = started.elapsed().as_secs_f64();
            let keys: u64 = restored.iter().map(|m| m.len() as u64).sum();
            assert_eq!(keys, entries, "every key is restored");
            println!(
                "  round {round}, {threads} thread(s): restore {wall:.2} s wall, {:.2} s CPU \
                 (latest() verifying every byte: {verify_cpu:.2} s)",
                verify_cpu + decode_cpu
            );
            // Freed outside the timing.
            drop(restored);
        }
    }
    Ok(())
}
