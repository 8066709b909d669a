//! The backend on a fake Iggy cluster of three nodes: it finds the primary from any node,
//! follows it when the cluster elects another, moves off a node that dies, resends what the
//! cluster has not committed yet, and neither acknowledges what was not applied nor
//! appends a retried batch twice across a failover.

use iggy_kafka_iggy_client::protocol::codes::STORE_CONSUMER_OFFSET_CODE;
use iggy_kafka_iggy_client::testing::fake::{PollFault, Roster};

use super::*;

fn cluster() -> FakeIggy {
    let mut fake = FakeIggy::new();
    fake.roster = Roster::cluster(3);
    fake
}

/// Which node each lane is connected to.
fn lanes_at(h: &Pool) -> Vec<String> {
    h.drivers.iter().map(|d| d.address().to_owned()).collect()
}

/// Given only a follower's address, the lanes learn the other nodes and move to the
/// primary; everything then works as on a single server.
#[test]
fn the_primary_is_found_from_a_follower() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    let mut h = Pool::new(fake);
    let backend = h.backend();
    assert_eq!(lanes_at(&h), vec!["127.0.0.2:8090"; 3]);
    assert_eq!(h.lanes.nodes().len(), 3);
    create(&mut h, &backend, "t", 1);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(1)], None), Ok(0));
    let got = read(&mut h, &backend, "t", 0, 0).expect("read");
    assert_eq!(got, vec![(0, record(1))]);
}

/// The cluster elects another primary: the old one takes no writes any more (Iggy's "not
/// accepted"), and after a while the lanes look for the new one and send there what it
/// refused, which lands once.
#[test]
fn a_new_primary_is_followed_and_refused_writes_are_sent_there() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(1)], None), Ok(0));
    h.fake.roster.leader = Some(2);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(2)], None), Ok(1));
    assert!(lanes_at(&h).iter().any(|a| a == "127.0.0.3:8090"));
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2);
    // Metadata writes follow too.
    create(&mut h, &backend, "u", 2);
    let got = read(&mut h, &backend, "t", 0, 0).expect("read");
    assert_eq!(got.len(), 2);
}

/// The primary dies with an append in flight: that append fails with a retriable error (it
/// may or may not have landed), the lanes reach a surviving node and then the new primary,
/// and an idempotent producer's retry lands once whether the lost append was applied or not.
#[test]
fn a_dead_primary_loses_nothing_acknowledged_and_appends_no_retry_twice() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let pb = |first| ProducerBatch {
        producer_id: 5,
        epoch: 0,
        first_sequence: first,
        count: 1,
        transactional: false,
    };
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(pb(0))),
        Ok(0)
    );
    for applied in [true, false] {
        let sequence = if applied { 1 } else { 2 };
        let Execution::Pending(mut fut) = backend.execute(Command::Append {
            topic: "t".into(),
            partition: 0,
            messages: [to_iggy(&record(sequence as usize))].into_iter().collect(),
            largest_batch: 100,
            producer: Some(pb(sequence)),
        }) else {
            panic!("an append waits for Iggy");
        };
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // The primary applies it (or not), then dies before it answers; another is elected.
        let primary = h.fake.roster.leader.expect("a primary");
        if applied {
            h.apply_then_drop_connections();
        } else {
            h.drop_connections();
        }
        h.fake.roster.down[primary] = true;
        h.fake.roster.leader = Some((primary + 1) % 3);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Completion::Append(Err(e))) => assert_eq!(
                e.error_code(),
                iggy_kafka_core::protocol::error_code::ErrorCode::REQUEST_TIMED_OUT,
                "{e:?}"
            ),
            other => panic!("{other:?}"),
        }
        // The producer retries; the lanes find the new primary on their own.
        h.reconnect();
        let expected = if applied { 1 } else { 2 };
        assert_eq!(
            append(
                &mut h,
                &backend,
                "t",
                0,
                &[record(sequence as usize)],
                Some(pb(sequence))
            ),
            Ok(expected)
        );
        let survivor = format!("127.0.0.{}:8090", (primary + 1) % 3 + 1);
        assert!(
            lanes_at(&h).iter().all(|a| *a == survivor),
            "{:?}",
            lanes_at(&h)
        );
        h.fake.roster.down[primary] = false;
    }
    let got: Vec<_> = read(&mut h, &backend, "t", 0, 0)
        .expect("read")
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect();
    assert_eq!(
        got,
        (0..3)
            .map(|i| (i as u64, record(i).value))
            .collect::<Vec<_>>(),
        "each record once, in order"
    );
}

/// A write the cluster has not committed yet is resent on the same session until it is
/// answered; one it applied before answering "not committed" is answered from the
/// primary's reply cache, not applied twice.
#[test]
fn writes_not_committed_yet_are_resent_and_applied_once() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    h.fake.not_committed = 3;
    create(&mut h, &backend, "t", 1);
    assert_eq!(h.fake.not_committed, 0);
    h.fake.commit_late = 1;
    create(&mut h, &backend, "u", 1);
    assert_eq!(h.fake.commit_late, 0);
    assert_eq!(h.fake.topics.keys().filter(|t| *t == "u").count(), 1);
    assert!(commit(&mut h, &backend, "g", &[("t", 0, 1)])[0].is_ok());
}

/// A partition's primary is not the cluster's (each partition replicates on its own): the
/// cluster's primary refuses the partition's writes, and the partition moves to the lanes
/// of the node that takes them. Metadata writes stay with the cluster's primary.
#[test]
fn a_partition_whose_primary_is_another_node_is_written_there() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    let mut h = Pool::cluster(fake);
    assert_eq!(h.lanes.groups(), 4, "the primary's lanes and each node's");
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..5 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[record(i)], None),
            Ok(i as u64)
        );
    }
    assert!(commit(&mut h, &backend, "g", &[("t", 0, 5)])[0].is_ok());
    let got = read(&mut h, &backend, "t", 0, 0).expect("read");
    assert_eq!(got.len(), 5);
    // The partitions' primary moves on (a view change of their own): they follow.
    h.fake.roster.partition_leader = Some(2);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(5)], None), Ok(5));
    assert_eq!(h.fake.topics["t"].partitions[0].next, 6);
}

/// The node that describes topics (the cluster's primary) has not applied a partition's
/// latest append yet, which that partition's own primary took: a consumer that read to the
/// end is not told its position is out of range, which would send it back to the start.
#[test]
fn a_lagging_description_does_not_put_a_reader_out_of_range() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    fake.roster.lagging = Some(1);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..3 {
        assert_eq!(
            append(&mut h, &backend, "t", 0, &[record(i)], None),
            Ok(i as u64)
        );
    }
    assert_eq!(read(&mut h, &backend, "t", 0, 0).expect("read").len(), 3);
    assert_eq!(read(&mut h, &backend, "t", 0, 3), Ok(Vec::new()));
    assert!(matches!(
        read(&mut h, &backend, "t", 0, 4),
        Err(BackendError::OffsetOutOfRange { .. })
    ));
}

/// A cluster that never commits a write (it lost its quorum): the write fails once the
/// reply timeout passes, as a retriable error (Kafka's REQUEST_TIMED_OUT), and does not
/// hang; once the cluster commits again, writes go through.
#[test]
fn a_write_never_committed_fails_retriably_at_the_timeout() {
    let mut h = Pool::with_reply_timeout(cluster(), Duration::from_secs(3));
    let backend = h.backend();
    h.fake.not_committed = u32::MAX;
    let c = h.exec(
        &backend,
        Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::default(),
            validate_only: false,
        },
    );
    let Completion::CreateTopic(Err(e)) = c else {
        panic!("{c:?}");
    };
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    assert_eq!(
        e.error_code(),
        iggy_kafka_core::protocol::error_code::ErrorCode::REQUEST_TIMED_OUT
    );
    h.fake.not_committed = 0;
    create(&mut h, &backend, "t", 1);
    assert_eq!(append(&mut h, &backend, "t", 0, &[record(1)], None), Ok(0));
}

/// A producer with appends in flight when the partition's writes move to another node (the
/// node they went to is not the partition's primary): the appends still waiting on the old
/// node are refused there later than the first, and land before the appends handed over
/// after the move all the same, each once, in the order they were handed over.
#[test]
fn appends_refused_after_a_partition_moved_land_before_later_ones() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let hand_over = |i: usize| match backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: vec![to_iggy(&record(i))].into(),
        largest_batch: 100,
        producer: None,
    }) {
        Execution::Pending(f) => f,
        Execution::Done(c) => panic!("{c:?}"),
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut pending: Vec<_> = (0..6).map(hand_over).map(Some).collect();
    let mut landed: Vec<Option<u64>> = vec![None; 6];
    type Append = Pin<Box<dyn Future<Output = Completion> + Send>>;
    let mut poll_all = |pending: &mut Vec<Option<Append>>, landed: &mut Vec<Option<u64>>| {
        for (fut, at) in pending.iter_mut().zip(landed.iter_mut()) {
            let Some(f) = fut.as_mut() else { continue };
            if let Poll::Ready(c) = f.as_mut().poll(&mut cx) {
                match c {
                    Completion::Append(Ok(a)) => *at = Some(a.base_offset),
                    other => panic!("{other:?}"),
                }
                *fut = None;
            }
        }
    };
    // Until the cluster's primary refused the first of them for good: the partition
    // moves, and the others are still waiting to be refused there.
    let refused = h.lanes.stats().refused;
    for _ in 0..100_000 {
        poll_all(&mut pending, &mut landed);
        if h.lanes.stats().refused > refused {
            break;
        }
        h.serve();
    }
    assert!(h.lanes.stats().refused > refused, "nothing was refused");
    assert!(
        landed.iter().any(Option::is_none),
        "every append landed before the move: nothing is left to overtake"
    );
    pending.extend((6..10).map(hand_over).map(Some));
    landed.resize(10, None);
    for _ in 0..100_000 {
        poll_all(&mut pending, &mut landed);
        if landed.iter().all(Option::is_some) {
            break;
        }
        h.serve();
    }
    let landed: Vec<u64> = landed.into_iter().map(|l| l.expect("landed")).collect();
    assert_eq!(landed, (0..10).collect::<Vec<u64>>(), "in hand-over order");
    let got: Vec<_> = read(&mut h, &backend, "t", 0, 0)
        .expect("read")
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect();
    let want: Vec<_> = (0..10).map(|i| (i as u64, record(i).value)).collect();
    assert_eq!(got, want);
}

/// An idempotent batch of producer 5, its first sequence `first`.
fn idempotent(first: i32) -> ProducerBatch {
    ProducerBatch {
        producer_id: 5,
        epoch: 0,
        first_sequence: first,
        count: 1,
        transactional: false,
    }
}

/// Sends idempotent append `pb` of record `pb.first_sequence` to t-0, which the partition's
/// primary prepares (a quorum holds it) and then dies before anything commits; another node
/// is elected, whose view commits the append later. The append fails retriably.
fn prepared_by_a_dying_primary(h: &mut Pool, backend: &IggyBackend, pb: ProducerBatch) {
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: [to_iggy(&record(pb.first_sequence as usize))]
            .into_iter()
            .collect(),
        largest_batch: 100,
        producer: Some(pb),
    }) else {
        panic!("an append waits for Iggy");
    };
    let primary = h.fake.roster.leader.expect("a primary");
    prepare_then_lose(h, &mut fut);
    h.fake.roster.down[primary] = true;
    h.fake.roster.leader = Some((primary + 1) % 3);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Completion::Append(Err(e))) => assert_eq!(
            e.error_code(),
            iggy_kafka_core::protocol::error_code::ErrorCode::REQUEST_TIMED_OUT,
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    h.reconnect();
}

/// What t-0 holds, as (offset, record value).
fn held(h: &mut Pool, backend: &IggyBackend) -> Vec<(u64, Option<Bytes>)> {
    read(h, backend, "t", 0, 0)
        .expect("read")
        .into_iter()
        .map(|(o, r)| (o, r.value))
        .collect()
}

/// The primary dies with an idempotent append prepared on a quorum and not committed: the
/// new view commits it, but only after the gateway could look for it (no read shows an op
/// before its commit). The retry waits behind a fence through the partition's own
/// replication (a stored consumer offset), after which the batch is found, not appended
/// again.
#[test]
fn an_append_prepared_by_a_dead_primary_is_not_appended_again() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1),
        "answered with where the original landed"
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
    assert_eq!(
        held(&mut h, &backend),
        (0..2)
            .map(|i| (i as u64, record(i).value))
            .collect::<Vec<_>>()
    );
}

/// The same on an empty partition, where Iggy stores no consumer offset (the fence is
/// refused until the partition holds something): the gateway asks again until the new
/// view has committed the batch.
#[test]
fn a_first_append_prepared_by_a_dead_primary_is_not_appended_again() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(0));
    h.fake.prepared_commit_in = Some(30);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1, "landed once");
}

/// An empty partition whose first batch was lost and never lands (the new view does not
/// hold it): the fence is refused for as long as the partition holds nothing, so after a
/// while the gateway looks unfenced, and the retry is appended.
#[test]
fn an_empty_partition_that_cannot_be_fenced_is_looked_at_unfenced_after_a_while() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(0));
    h.fake.discard_prepared();
    h.fake.seen.clear();
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    let fences = h
        .fake
        .seen
        .iter()
        .filter(|&&c| c == STORE_CONSUMER_OFFSET_CODE)
        .count();
    assert_eq!(fences, 50, "asked every 100 ms for 5 s");
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1);
}

/// The node that describes topics (the cluster's primary) has not applied the partition's
/// latest append, a batch in doubt its own primary committed: the look for it reads the
/// partition on the node that answered the fence, up to where that node's reads stop, not
/// up to where the description says the partition ends.
#[test]
fn a_lagging_description_does_not_hide_a_batch_in_doubt() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    fake.roster.lagging = Some(1);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: [to_iggy(&record(1))].into_iter().collect(),
        largest_batch: 100,
        producer: Some(idempotent(1)),
    }) else {
        panic!("an append waits for Iggy");
    };
    // Its connection drops; the partition's primary commits it right after.
    prepare_then_lose(&mut h, &mut fut);
    assert!(matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Completion::Append(Err(_)))
    ));
    h.fake.prepared_commit_in = Some(1);
    h.reconnect();
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// A poll that fails inside Iggy is answered empty (status 0, the node's end as its current
/// offset): behind the fence, the node says it holds the offset the look is at, so the empty
/// reply proves nothing. The retry fails retriably, the batch stays in doubt, and the next
/// retry finds it.
#[test]
fn a_faulted_poll_behind_the_fence_does_not_count_as_not_found() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    h.fake.fault_next_poll = Some(PollFault::AtEnd);
    let retried = append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1)));
    assert!(
        matches!(retried, Err(BackendError::Unavailable(_))),
        "{retried:?}"
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// The same with the other answer Iggy gives a failed read: no messages, and 0 as its
/// current offset. Behind the fence, after the partition's first message, that reads as a
/// node that ends just before the offset looked at; a poll from the partition's start, whose
/// reply holds a message, says where the node ends, and the look fails retriably.
#[test]
fn a_poll_faulted_with_offset_zero_behind_the_fence_does_not_count_as_not_found() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    h.fake.fault_next_poll = Some(PollFault::AtZero);
    let retried = append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1)));
    assert!(
        matches!(retried, Err(BackendError::Unavailable(_))),
        "{retried:?}"
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// After a failover, the lanes that follow the cluster's new primary carry the
/// partition's requests, and that node is a backup of the partition that has applied none of
/// its messages yet (the partition's own primary is another node). It refuses the fence's
/// offset as out of range, before it would say it is not the primary. That is no empty
/// partition: the retry fails retriably and the batch stays in doubt, instead of being
/// looked for unfenced after a while (on that node, which holds nothing) and appended
/// while its original can still land. Once the node has caught up, the next try fences
/// again, on the partition's primary, and finds the batch.
#[test]
fn a_fence_refused_by_a_node_behind_keeps_the_batch_in_doubt() {
    let mut h = Pool::cluster(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    h.fake.roster.partition_leader = Some(2);
    h.fake.roster.behind = Some((1, u32::MAX));
    h.fake.seen.clear();
    let retried = append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1)));
    assert!(
        matches!(retried, Err(BackendError::Unavailable(_))),
        "{retried:?}"
    );
    assert_eq!(fences(&h), 1, "refused once, not asked again and again");
    h.fake.roster.behind = None;
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// The StoreConsumerOffsets the server was sent.
fn fences(h: &Pool) -> usize {
    h.fake
        .seen
        .iter()
        .filter(|&&c| c == STORE_CONSUMER_OFFSET_CODE)
        .count()
}

/// The fence's reply proves what the node that gave it holds, and only that node: the look
/// for the batch reads on the lane and session that answered the fence. Here that session
/// is gone before the look (its connection dropped and came back, perhaps to another
/// node): the retry fails retriably, the batch stays in doubt, and the next retry fences
/// and looks again.
#[test]
fn the_look_behind_a_fence_runs_in_the_session_that_answered_it() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    h.fake.seen.clear();
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages: [to_iggy(&record(1))].into_iter().collect(),
        largest_batch: 100,
        producer: Some(idempotent(1)),
    }) else {
        panic!("an append waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    // Until the fence is answered, and before the look is sent.
    while !h.fake.seen.contains(&STORE_CONSUMER_OFFSET_CODE) {
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        h.serve();
    }
    h.drop_connections();
    h.reconnect();
    let retried = loop {
        if let Poll::Ready(c) = fut.as_mut().poll(&mut cx) {
            break c;
        }
        h.serve();
    };
    assert!(
        matches!(
            retried,
            Completion::Append(Err(BackendError::Unavailable(_)))
        ),
        "{retried:?}"
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// A single server that refuses the fence on a partition the gateway saw hold messages is no
/// node catching up: the partition no longer holds them (purged behind the gateway's back).
/// The retry is looked for unfenced and lands, instead of failing for good.
#[test]
fn a_single_server_that_lost_the_partition_takes_the_retry() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    append_losing_the_reply(&mut h, &backend, &[record(1)], idempotent(1), false);
    h.fake.topics.get_mut("t").expect("t").partitions[0] = Default::default();
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(0)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1);
}

/// A node behind that keeps refusing the fence (it never catches up) fails the retries
/// retriably for a bounded number of tries in a row; past them, what the gateway saw is
/// taken as gone, and the retry is looked for unfenced and appended.
#[test]
fn a_fence_refused_in_a_cluster_for_ever_gives_way_after_a_bound() {
    let mut h = Pool::cluster(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(0)], Some(idempotent(0))),
        Ok(0)
    );
    prepared_by_a_dying_primary(&mut h, &backend, idempotent(1));
    // The new view does not hold it: it never lands.
    h.fake.discard_prepared();
    h.fake.roster.partition_leader = Some(2);
    h.fake.roster.behind = Some((1, u32::MAX));
    let mut refused = 0;
    let landed = loop {
        match append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))) {
            Err(BackendError::Unavailable(_)) if refused < 1000 => refused += 1,
            other => break other,
        }
    };
    assert_eq!(refused, 100, "FENCE_BEHIND_TRIES");
    assert_eq!(landed, Ok(1));
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2);
}

/// The partition's primary dies after it acknowledged an idempotent batch, and the node
/// that takes the partition over has not applied that batch yet: its descriptions and its
/// polls end before it. The producer's retry of the batch (its reply to the producer was
/// lost on the Kafka side) is checked behind a fence, which the new primary answers once
/// it has applied what it holds, and is answered with where the batch landed, not appended
/// again.
#[test]
fn a_retry_checked_on_a_node_behind_is_not_appended_again() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..2 {
        assert_eq!(
            append(
                &mut h,
                &backend,
                "t",
                0,
                &[record(i)],
                Some(idempotent(i as i32))
            ),
            Ok(i as u64)
        );
    }
    h.fake.roster.down[0] = true;
    h.fake.roster.partition_leader = Some(1);
    h.fake.roster.behind = Some((1, 1));
    h.drop_connections();
    h.reconnect();
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// The same check behind the fence meets a poll that fails inside Iggy (answered empty, the
/// node's end as its current offset, which says the node holds the batch's offset): that
/// proves nothing, so the retry fails retriably, and the next retry is answered with where
/// the batch landed.
#[test]
fn a_faulted_poll_does_not_make_a_retry_checked_behind_the_fence_land_twice() {
    let mut fake = cluster();
    fake.roster.leader = Some(1);
    fake.roster.partition_leader = Some(0);
    let mut h = Pool::cluster(fake);
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..2 {
        assert_eq!(
            append(
                &mut h,
                &backend,
                "t",
                0,
                &[record(i)],
                Some(idempotent(i as i32))
            ),
            Ok(i as u64)
        );
    }
    h.fake.roster.down[0] = true;
    h.fake.roster.partition_leader = Some(1);
    h.fake.roster.behind = Some((1, 1));
    h.drop_connections();
    h.reconnect();
    h.fake.fault_next_poll = Some(PollFault::AtEnd);
    let retried = append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1)));
    assert!(
        matches!(retried, Err(BackendError::Unavailable(_))),
        "{retried:?}"
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(1)
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 2, "landed once");
}

/// On a single server, a retry whose batch the partition no longer holds (purged behind the
/// gateway's back) is checked by one poll, with no fence: the server committed what it
/// acknowledged, so its description, which says the partition ends before the batch, is
/// right. The producers are read back again and the retry is appended.
#[test]
fn a_single_server_checks_a_retry_without_a_fence() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for i in 0..2 {
        assert_eq!(
            append(
                &mut h,
                &backend,
                "t",
                0,
                &[record(i)],
                Some(idempotent(i as i32))
            ),
            Ok(i as u64)
        );
    }
    h.fake.topics.get_mut("t").expect("t").partitions[0] = Default::default();
    h.fake.seen.clear();
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(1)], Some(idempotent(1))),
        Ok(0)
    );
    assert_eq!(fences(&h), 0);
    assert_eq!(h.fake.topics["t"].partitions[0].next, 1);
}

/// A node that does not serve a partition for a moment (a node of a cluster coming back,
/// or between views) answers its requests "no such resource" while the topic holds the
/// partition. That is no missing topic: the write fails retriably and the partition's
/// idempotent producers are kept. Forgotten, they would be read back from the partition's
/// tail on a node that may not have applied the latest batches yet, and the producer's
/// next batch refused as out of order: librdkafka takes that as fatal (issue 27).
#[test]
fn a_node_that_does_not_serve_a_partition_for_a_moment_keeps_its_producers() {
    let mut h = Pool::new(cluster());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    for sequence in 0..2 {
        assert_eq!(
            append(
                &mut h,
                &backend,
                "t",
                0,
                &[record(sequence as usize)],
                Some(idempotent(sequence))
            ),
            Ok(u64::from(sequence as u32))
        );
    }
    // The node that describes and reads the partition has not applied its last batch.
    h.fake.roster.behind = Some((0, 1));
    h.fake.fail_next = Some(crate::wire::code::RESOURCE_NOT_FOUND);
    let refused = append(&mut h, &backend, "t", 0, &[record(2)], Some(idempotent(2)));
    assert!(
        matches!(refused, Err(BackendError::Unavailable(_))),
        "a retriable error, not an unknown topic: {refused:?}"
    );
    assert_eq!(
        append(&mut h, &backend, "t", 0, &[record(2)], Some(idempotent(2))),
        Ok(2),
        "the batch follows the producer's last"
    );
    assert_eq!(h.fake.topics["t"].partitions[0].next, 3);
}
