use super::*;
use crate::channel::{edge, EdgeConfig};

/// The held bytes must be what the stash holds: every fan-out copy counted at its own size
/// when stashed, as it is when sent.
fn stashed_bytes<B: Batch>(o: &Outputs<B>) -> usize {
    o.stash.iter().map(|(_, _, m, _)| m.bytes()).sum()
}

#[test]
fn fan_out_copies_are_held_at_their_own_size() {
    let metrics = Arc::new(InstanceMetrics::new(std::time::Instant::now()));
    let cfg = EdgeConfig::default()
        .with_capacity(1)
        .with_max_bytes(1 << 20);
    let (tx_a, mut rx_a) = edge::<Vec<u64>>(cfg);
    let (tx_b, mut rx_b) = edge::<Vec<u64>>(cfg);
    let edges = vec![
        OutEdge::new(Partitioning::Forward, vec![tx_a], None),
        OutEdge::new(Partitioning::Forward, vec![tx_b], None),
    ];
    let clone: fn(&Vec<u64>) -> Vec<u64> = <Vec<u64> as Clone>::clone;
    let mut outs = Outputs::new(edges, Some(clone), metrics.clone());
    // A batch with spare capacity: 1 000 slots, 10 rows. Its copies keep no spare capacity.
    let original = || {
        let mut v = Vec::with_capacity(1_000);
        v.extend(0..10u64);
        v
    };
    let (big, small) = (original().bytes(), original().clone().bytes());
    assert!(big > small);
    for round in 0..200 {
        // `b` is read one round late, so its copy waits in the stash every round.
        outs.dispatch_batch(original());
        assert_eq!(outs.stash_bytes, stashed_bytes(&outs), "round {round}");
        assert!(rx_a.try_recv().is_ok());
        if round > 0 {
            assert!(rx_b.try_recv().is_ok());
        }
        outs.try_flush();
        assert_eq!(outs.stash_bytes, stashed_bytes(&outs), "round {round}");
    }
    assert!(rx_b.try_recv().is_ok());
    assert!(outs.try_flush());
    assert_eq!(outs.stash_bytes, 0);
    let peak = metrics.peak_held_bytes.get() as usize;
    assert!(peak > 0, "the copy was held");
    assert!(
        peak <= big + small,
        "held {peak} B, more than one batch and its copy"
    );
}

/// Everything to target 0.
struct First;

impl Partitioner<Vec<u64>> for First {
    fn partition(&mut self, batch: Vec<u64>, _: &[TargetLoad], out: &mut Vec<(usize, Vec<u64>)>) {
        out.push((0, batch));
    }
}

#[test]
fn a_partitioned_edge_sends_watermarks_and_idleness_to_every_target() {
    use crate::batch::Timestamp;
    let metrics = Arc::new(InstanceMetrics::new(std::time::Instant::now()));
    let (mut outlets, mut inlets) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (tx, rx) = edge::<Vec<u64>>(EdgeConfig::default());
        outlets.push(tx);
        inlets.push(rx);
    }
    let edges = vec![OutEdge::new(
        Partitioning::Partitioned,
        outlets,
        Some(Box::new(First)),
    )];
    let mut outs = Outputs::new(edges, None, metrics);
    let mut out = Output::new(16);
    out.emit(vec![1, 2]);
    out.watermark(Timestamp(5));
    out.idle();
    outs.dispatch(&mut out);
    assert_eq!(inlets[0].try_recv(), Ok(Message::Data(vec![1, 2])));
    for rx in &mut inlets {
        assert_eq!(rx.try_recv(), Ok(Message::Watermark(Timestamp(5))));
        assert_eq!(rx.try_recv(), Ok(Message::Idle));
    }
}
