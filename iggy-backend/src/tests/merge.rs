//! Group commit on the fake Iggy: plain appends queued behind one in flight go to Iggy as
//! one request, and each still lands in its own place, in the order handed over.

use iggy_kafka_iggy_client::protocol::codes::SEND_MESSAGES_CODE;
use iggy_kafka_iggy_client::testing::fake::Roster;

use super::*;

/// Hands over plain appends of `batches` (each a list of record numbers) to `topic`, all
/// before any is awaited, as producers with requests in flight do; then polls them all
/// together until every one is done. Where each landed, in the order handed over.
fn append_together(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    batches: &[(u32, Vec<usize>)],
) -> Vec<Result<u64, BackendError>> {
    append_together_but(h, backend, topic, batches, None)
}

/// [`append_together`], with the append `late` not polled until every other one is done
/// (its caller busy elsewhere, such as a connection writing to a client that does not
/// read).
fn append_together_but(
    h: &mut Pool,
    backend: &IggyBackend,
    topic: &str,
    batches: &[(u32, Vec<usize>)],
    late: Option<usize>,
) -> Vec<Result<u64, BackendError>> {
    let mut futures: Vec<_> = batches
        .iter()
        .map(|(partition, records)| {
            match backend.execute(Command::Append {
                topic: topic.into(),
                partition: *partition,
                messages: records.iter().map(|&i| to_iggy(&record(i))).collect(),
                largest_batch: 100,
                producer: None,
            }) {
                Execution::Pending(f) => Some(f),
                Execution::Done(c) => panic!("{c:?}"),
            }
        })
        .collect();
    let mut done: Vec<Option<Result<u64, BackendError>>> = batches.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        // Polled last first: the order they are awaited in does not matter.
        let others_done = done
            .iter()
            .enumerate()
            .all(|(k, d)| d.is_some() || Some(k) == late);
        for (k, (f, d)) in futures.iter_mut().zip(&mut done).enumerate().rev() {
            if Some(k) == late && !others_done {
                continue;
            }
            if let Some(fut) = f {
                if let Poll::Ready(c) = fut.as_mut().poll(&mut cx) {
                    *d = Some(match c {
                        Completion::Append(r) => r.map(|a| a.base_offset),
                        other => panic!("{other:?}"),
                    });
                    *f = None;
                }
            }
        }
        if done.iter().all(Option::is_some) {
            return done.into_iter().map(Option::unwrap).collect();
        }
        h.serve();
    }
    panic!("appends never finished");
}

fn sends(h: &Pool) -> usize {
    h.fake
        .seen
        .iter()
        .filter(|c| **c == SEND_MESSAGES_CODE)
        .count()
}

/// Where each batch lands when they land one after another in the order given: the
/// messages before it, per partition.
fn contiguous(batches: &[(u32, Vec<usize>)]) -> Vec<Result<u64, BackendError>> {
    let mut next = std::collections::HashMap::new();
    batches
        .iter()
        .map(|(p, r)| {
            let at = next.entry(*p).or_insert(0u64);
            let base = *at;
            *at += r.len() as u64;
            Ok(base)
        })
        .collect()
}

fn check_read_back(h: &mut Pool, backend: &IggyBackend, batches: &[(u32, Vec<usize>)]) {
    for partition in [0, 1] {
        let want: Vec<(u64, KafkaRecord)> = batches
            .iter()
            .filter(|(p, _)| *p == partition)
            .flat_map(|(_, r)| r.iter().map(|&i| record(i)))
            .enumerate()
            .map(|(o, r)| (o as u64, r))
            .collect();
        let got = read(h, backend, "t", partition, 0).expect("read");
        assert_eq!(got, want, "partition {partition}");
    }
}

/// Plain appends to two partitions handed over at once: those of one partition queued
/// together go as one request; each batch gets its own base offset, distinct and
/// contiguous in the order handed over, and every record reads back in order.
#[test]
fn plain_appends_queued_together_land_each_in_its_own_place() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    let sizes = [1, 3, 2, 5, 1, 4, 2, 1, 7, 1];
    let mut next = 0;
    let batches: Vec<(u32, Vec<usize>)> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let records = (next..next + n).collect();
            next += n;
            (u32::from(k % 3 == 2), records)
        })
        .collect();
    let before = sends(&h);
    let landed = append_together(&mut h, &backend, "t", &batches);
    assert_eq!(landed, contiguous(&batches));
    let requests = sends(&h) - before;
    assert!(
        requests < batches.len(),
        "{requests} requests for {} appends",
        batches.len()
    );
    let stats = h.lanes.stats();
    assert!(stats.merged >= 1);
    assert_eq!(stats.merged_calls as usize, batches.len() - requests);
    check_read_back(&mut h, &backend, &batches);
    // More of them, queued while the last are in flight: they land after those.
    let more: Vec<(u32, Vec<usize>)> = (0..12).map(|k| (k % 2, vec![next + k as usize])).collect();
    let landed = append_together(&mut h, &backend, "t", &more);
    let mut all = batches.clone();
    all.extend(more.iter().cloned());
    assert_eq!(landed, contiguous(&all)[batches.len()..].to_vec());
    check_read_back(&mut h, &backend, &all);
}

/// Merged appends that a node will not take (it is not the partition's primary) are each
/// sent again on their own bodies where the partition moves, in the order handed over,
/// and each lands once.
#[test]
fn merged_appends_a_node_will_not_take_land_once_each_in_order_elsewhere() {
    let mut fake = FakeIggy::new();
    fake.roster = Roster::cluster(3);
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 2);
    let batches: Vec<(u32, Vec<usize>)> = (0..9)
        .map(|k| (u32::from(k % 4 == 3), (k * 2..k * 2 + 2).collect()))
        .collect();
    let landed = append_together(&mut h, &backend, "t", &batches);
    assert_eq!(landed, contiguous(&batches));
    assert!(h.lanes.stats().merged >= 1);
    check_read_back(&mut h, &backend, &batches);
    assert_eq!(
        h.fake.topics["t"].partitions[0].next, 14,
        "each landed once"
    );
}

/// A caller that does not look at its append for a while (its connection is stuck writing
/// to a client that does not read) holds up no other append refused with it: the lanes
/// send them all again where the partition moves, in the order handed over.
#[test]
fn a_caller_slow_to_look_holds_up_no_refused_append_behind_it() {
    let batches: Vec<(u32, Vec<usize>)> = (0..6).map(|k| (0, vec![k * 2, k * 2 + 1])).collect();
    // The first append (sent alone), and one merged with others.
    for late in [0, 2] {
        let mut fake = FakeIggy::new();
        fake.roster = Roster::cluster(3);
        fake.roster.leader = Some(1);
        fake.roster.partition_leader = Some(0);
        let mut h = Pool::cluster(fake);
        let backend = h.backend();
        create(&mut h, &backend, "t", 2);
        let landed = append_together_but(&mut h, &backend, "t", &batches, Some(late));
        assert_eq!(landed, contiguous(&batches), "late: {late}");
        let stats = h.lanes.stats();
        assert!(stats.refused >= 1 && stats.merged >= 1, "{stats:?}");
        check_read_back(&mut h, &backend, &batches);
    }
}

/// A merged request is one measure of its lane in the partition's trial (placement), not
/// one per append it carried.
#[test]
fn a_merged_request_counts_once_in_the_lane_trial() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let batches: Vec<(u32, Vec<usize>)> = (0..8).map(|k| (0, vec![k])).collect();
    let before = sends(&h);
    let landed = append_together(&mut h, &backend, "t", &batches);
    assert_eq!(landed, contiguous(&batches));
    let requests = sends(&h) - before;
    assert!(requests < batches.len(), "{requests} requests: some merged");
    let state = backend.inner.catalog.partition("t", 0);
    let appends = state.route.trial_samples().map(|(appends, _)| appends);
    assert_eq!(appends, Some(requests), "one answer time per request");
}
