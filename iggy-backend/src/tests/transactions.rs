//! Transactions on Iggy: the coordinator's state in its gateway-owned topic, markers as
//! messages, and each partition's transaction index, across gateway restarts.

use iggy_kafka_core::backend::{AbortedTxn, PartitionOffsets, ReadResult};
use iggy_kafka_core::mapping::{mark_transactional, marker_of, transaction_of};
use iggy_kafka_core::message::MessageList;
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::txn::{TxnSnapshot, TxnState};
use iggy_kafka_iggy_client::protocol::codes::POLL_MESSAGES_CODE;

use super::*;
use crate::txn_log;

fn snapshot(id: &str, state: TxnState, partitions: &[(&str, u32)]) -> TxnSnapshot {
    TxnSnapshot {
        transactional_id: id.into(),
        producer_id: 5,
        previous_producer_id: -1,
        epoch: 1,
        last_epoch: -1,
        timeout_ms: 60_000,
        state,
        partitions: partitions.iter().map(|(t, p)| ((*t).into(), *p)).collect(),
        offsets: Vec::new(),
    }
}

fn persist(
    h: &mut Pool,
    backend: &IggyBackend,
    changes: Vec<(String, Option<TxnSnapshot>)>,
) -> Result<(), BackendError> {
    match h.exec(backend, Command::PersistTxns { changes }) {
        Completion::PersistTxns(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A gateway over a fake Iggy with topic `t` of one partition, which the coordinator's
/// state names as written by transactional id `a` (so its index is read back after a
/// restart).
fn transactional_partition() -> (Pool, IggyBackend) {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    persist(
        &mut h,
        &backend,
        vec![(
            "a".into(),
            Some(snapshot("a", TxnState::Ongoing, &[("t", 0)])),
        )],
    )
    .expect("persisted");
    (h, backend)
}

fn marker(
    h: &mut Pool,
    backend: &IggyBackend,
    (topic, partition): (&str, u32),
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> u64 {
    match h.exec(
        backend,
        Command::WriteMarker {
            topic: topic.into(),
            partition,
            producer_id,
            epoch,
            commit,
            coordinator_epoch: 0,
        },
    ) {
        Completion::WriteMarker(Ok(o)) => o,
        other => panic!("{other:?}"),
    }
}

fn offsets(h: &mut Pool, backend: &IggyBackend, topic: &str, partition: u32) -> PartitionOffsets {
    match h.exec(
        backend,
        Command::Offsets {
            topic: TopicRef::Name(topic.into()),
            partition,
        },
    ) {
        Completion::Offsets(Ok(o)) => o,
        other => panic!("{other:?}"),
    }
}

fn read_all(h: &mut Pool, backend: &IggyBackend, topic: &str, partition: u32) -> ReadResult {
    match h.exec(
        backend,
        Command::Read {
            topic: TopicRef::Name(topic.into()),
            partition,
            offset: 0,
            max_bytes: 1 << 20,
            max_messages: 1000,
        },
    ) {
        Completion::Read(Ok(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// Two transactional records of `pb`'s producer to t-0, as the produce path marks them.
fn txn_append(h: &mut Pool, backend: &IggyBackend, pb: ProducerBatch) -> Result<u64, BackendError> {
    let messages = [record(1), record(2)]
        .iter()
        .map(|r| {
            let mut m = to_iggy(r);
            mark_transactional(&mut m, pb.producer_id, pb.epoch);
            m
        })
        .collect();
    match h.exec(
        backend,
        Command::Append {
            topic: "t".into(),
            partition: 0,
            messages,
            largest_batch: 100,
            producer: Some(pb),
        },
    ) {
        Completion::Append(r) => r.map(|a| a.base_offset),
        other => panic!("{other:?}"),
    }
}

fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, count: i32) -> ProducerBatch {
    ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        count,
        transactional: true,
    }
}

/// The coordinator's snapshots are in Iggy once acknowledged, and come back after a
/// restart: the latest of each id, forgotten ids gone. No topic before the first.
#[test]
fn the_transaction_state_survives_a_restart() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    assert!(
        !h.fake.topics.contains_key(&txn_log::topic_name(0)),
        "no transaction-state topic before a transactional id"
    );
    let open = snapshot("a", TxnState::Ongoing, &[("t", 0)]);
    let prepared = snapshot("b", TxnState::PrepareCommit, &[("t", 0), ("t", 1)]);
    persist(
        &mut h,
        &backend,
        vec![
            ("a".into(), Some(snapshot("a", TxnState::Empty, &[]))),
            ("a".into(), Some(open.clone())),
            ("b".into(), Some(prepared.clone())),
            ("c".into(), Some(snapshot("c", TxnState::Empty, &[]))),
        ],
    )
    .expect("persisted");
    persist(&mut h, &backend, vec![("c".into(), None)]).expect("persisted");
    assert!(h.fake.topics.contains_key(&txn_log::topic_name(0)));

    let (mut h, backend) = h.restart();
    assert_eq!(backend.transaction_state(), [open, prepared.clone()]);
    // Not a Kafka topic.
    match h.exec(&backend, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(t)) => assert!(t.is_empty(), "{t:?}"),
        other => panic!("{other:?}"),
    }
    // Written on after the restart, read again after the next.
    persist(&mut h, &backend, vec![("a".into(), None)]).expect("persisted");
    let (_h, backend) = h.restart();
    assert_eq!(backend.transaction_state(), [prepared]);
}

/// Past its bound the log is rewritten into the next generation; the state is the same
/// after a restart, and the old generation is gone.
#[test]
fn the_transaction_state_is_compacted() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let mut last = None;
    for round in 0..6 {
        let changes: Vec<_> = (0..2000)
            .map(|i| {
                let mut s = snapshot(&format!("id{}", i % 3), TxnState::Ongoing, &[("t", 0)]);
                s.epoch = i16::try_from(round).unwrap_or(0);
                (s.transactional_id.clone(), Some(s))
            })
            .collect();
        last = changes.last().cloned();
        persist(&mut h, &backend, changes).expect("persisted");
    }
    assert!(!h.fake.topics.contains_key(&txn_log::topic_name(0)));
    let compacted = &h.fake.topics[&txn_log::topic_name(1)];
    // Compacted after the fifth batch (past 10,000 records): the partition, when the three
    // ids' transactions opened, the three ids and the snapshot's end, then the sixth batch.
    assert_eq!(compacted.partitions[0].next, 8 + 2000);
    let (_h, backend) = h.restart();
    let state = backend.transaction_state();
    assert_eq!(state.len(), 3);
    let (id, last) = last.expect("a last change");
    assert_eq!(
        state.iter().find(|s| s.transactional_id == id),
        last.as_ref()
    );
}

/// Transactional records keep their producer in headers; markers are messages of their
/// own, which Iggy-native readers tell by `kafka-control`; the last stable offset and the
/// aborted transactions come from the partition's index, which a restarted gateway reads
/// back from the log.
#[test]
fn markers_and_the_index_on_iggy_survive_a_restart() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    // The log names the partition before any transactional write goes there.
    persist(
        &mut h,
        &backend,
        vec![(
            "a".into(),
            Some(snapshot("a", TxnState::Ongoing, &[("t", 0)])),
        )],
    )
    .expect("persisted");
    // Producer 5 aborts records 0..2, producer 6 commits 2..4, producer 5 leaves 6.. open.
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    assert_eq!(txn_append(&mut h, &backend, txn_batch(6, 0, 0, 2)), Ok(2));
    assert_eq!(offsets(&mut h, &backend, "t", 0).last_stable, Some(0));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 4);
    assert_eq!(offsets(&mut h, &backend, "t", 0).last_stable, Some(2));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 6, 0, true), 5);
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 2, 2)), Ok(6));
    let check = |h: &mut Pool, backend: &IggyBackend| {
        let o = offsets(h, backend, "t", 0);
        assert_eq!((o.last_stable, o.high_watermark), (Some(6), 8));
        let r = read_all(h, backend, "t", 0);
        assert_eq!(r.offsets.last_stable, Some(6));
        assert_eq!(
            r.aborted,
            [AbortedTxn {
                producer_id: 5,
                first_offset: 0,
                last_offset: 4
            }]
        );
        let kinds: Vec<_> = r
            .messages
            .iter()
            .map(|(_, m)| (transaction_of(&m).map(|t| t.0), marker_of(&m)))
            .collect();
        assert_eq!(
            kinds,
            [
                (Some(5), None),
                (Some(5), None),
                (Some(6), None),
                (Some(6), None),
                (Some(5), Some(false)),
                (Some(6), Some(true)),
                (Some(5), None),
                (Some(5), None),
            ]
        );
    };
    check(&mut h, &backend);
    let (mut h, backend) = h.restart();
    check(&mut h, &backend);
    // The open transaction ends after the restart: its marker closes what was read back.
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 1, true), 8);
    assert_eq!(offsets(&mut h, &backend, "t", 0).last_stable, Some(9));
    // The marker fenced the producer's older epoch on the partition.
    assert!(matches!(
        txn_append(&mut h, &backend, txn_batch(5, 0, 4, 2)),
        Err(BackendError::ProducerFenced { .. })
    ));
}

/// A partition no transaction wrote to is not read back after a restart: its last stable
/// offset is its high watermark at once.
#[test]
fn partitions_without_transactions_are_not_read_back() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let two = [record(1), record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, None), Ok(0));
    let (mut h, backend) = h.restart();
    let polls = |h: &Pool| {
        h.fake
            .seen
            .iter()
            .filter(|&&c| c == POLL_MESSAGES_CODE)
            .count()
    };
    let before = polls(&h);
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(2), 2));
    assert_eq!(polls(&h), before, "nothing read");
}

/// A marker written after a restart before the partition's index is rebuilt (a
/// restored PrepareCommit writes its markers at start) must not change what the rebuild
/// finds: producer 5's earlier aborted records stay aborted.
#[test]
fn a_marker_before_the_rebuild_keeps_an_earlier_abort() {
    let (mut h, backend) = transactional_partition();
    // Producer 5: records 0..2 aborted (marker 2), records 3..5 prepared to commit.
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 2);
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 2, 2)), Ok(3));
    let (mut h, backend) = h.restart();
    // The restored PrepareCommit's marker, before any read of the partition.
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, true), 5);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 0,
            last_offset: 2
        }]
    );
}

/// The same with an abort after the restart: producer 5's earlier committed
/// records must not be reported aborted.
#[test]
fn an_abort_before_the_rebuild_keeps_an_earlier_commit() {
    let (mut h, backend) = transactional_partition();
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, true), 2);
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 2, 2)), Ok(3));
    let (mut h, backend) = h.restart();
    // The open transaction times out after the restart: abort marker first.
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 1, false), 5);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 3,
            last_offset: 5
        }]
    );
}

/// A transactional append of two records whose reply is lost, the server holding it
/// prepared and not committed yet ([`prepare_then_lose`]).
fn txn_append_prepared(h: &mut Pool, backend: &IggyBackend, pb: ProducerBatch) {
    let messages = [record(1), record(2)]
        .iter()
        .map(|r| {
            let mut m = to_iggy(r);
            mark_transactional(&mut m, pb.producer_id, pb.epoch);
            m
        })
        .collect();
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages,
        largest_batch: 100,
        producer: Some(pb),
    }) else {
        panic!("an append waits for Iggy");
    };
    prepare_then_lose(h, &mut fut);
    assert!(matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Completion::Append(Err(_)))
    ));
    h.reconnect();
}

/// A transactional append of two records whose reply is lost, the server having applied it
/// (`applied`) or not.
fn txn_append_lost(h: &mut Pool, backend: &IggyBackend, pb: ProducerBatch, applied: bool) {
    let messages = [record(1), record(2)]
        .iter()
        .map(|r| {
            let mut m = to_iggy(r);
            mark_transactional(&mut m, pb.producer_id, pb.epoch);
            m
        })
        .collect();
    let Execution::Pending(mut fut) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages,
        largest_batch: 100,
        producer: Some(pb),
    }) else {
        panic!("an append waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    // Sent at once: the index is rebuilt and the partition's end known from earlier calls.
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    if applied {
        h.apply_then_drop_connections();
    } else {
        h.drop_connections();
    }
    assert!(matches!(
        fut.as_mut().poll(&mut cx),
        Poll::Ready(Completion::Append(Err(_)))
    ));
    h.reconnect();
}

/// A transactional batch in the partition that this gateway's index has not learnt from
/// its append's reply (lost here) still holds the last stable offset back, for reads and
/// offset queries alike, and is reported aborted to read_committed fetches once its abort
/// marker is written: the marker finds it first.
#[test]
fn a_transactional_batch_whose_reply_is_lost_holds_the_last_stable_offset() {
    let (mut h, backend) = transactional_partition();
    let mut plain = txn_batch(6, 0, 0, 2);
    plain.transactional = false;
    let two = [record(1), record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(plain)), Ok(0));
    offsets(&mut h, &backend, "t", 0);
    txn_append_lost(&mut h, &backend, txn_batch(5, 0, 0, 2), true);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(
        (r.offsets.last_stable, r.offsets.high_watermark),
        (Some(2), 4)
    );
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(2), 4));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 4);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(r.offsets.last_stable, Some(5));
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 2,
            last_offset: 4
        }]
    );
}

/// A transactional batch whose reply was lost and that is found to have landed (at another
/// producer's append, its own never retried) is open in the index.
#[test]
fn a_transactional_batch_found_in_doubt_is_indexed() {
    let (mut h, backend) = transactional_partition();
    let plain = |first_sequence| ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, first_sequence, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(0))),
        Ok(0)
    );
    offsets(&mut h, &backend, "t", 0);
    txn_append_lost(&mut h, &backend, txn_batch(5, 0, 0, 2), true);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(2))),
        Ok(4)
    );
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(2), 6));
}

/// The partitions the log names are bounded by those in use: a compaction drops those of
/// deleted topics (or beyond a topic's partitions) no live id names, and a log naming many
/// partitions is compacted once, not on every write, however few ids are live.
#[test]
fn many_named_partitions_do_not_compact_on_every_write() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    create(&mut h, &backend, "t", 1);
    let mut a = snapshot("a", TxnState::Ongoing, &[]);
    a.partitions = (0..10_050).map(|p| ("t".to_string(), p)).collect();
    let mut b = snapshot("b", TxnState::Ongoing, &[("u", 0)]);
    b.producer_id = 6;
    persist(
        &mut h,
        &backend,
        vec![("a".into(), Some(a.clone())), ("b".into(), Some(b))],
    )
    .expect("persisted");
    a.partitions.clear();
    a.state = TxnState::CompleteCommit;
    let generations = |h: &Pool| -> Vec<String> {
        h.fake
            .topics
            .keys()
            .filter(|k| k.starts_with(txn_log::TOPIC_PREFIX))
            .cloned()
            .collect()
    };
    // Past four times what compaction leaves (10,054 records): compacted once.
    let many = vec![("a".to_string(), Some(a.clone())); 30_200];
    persist(&mut h, &backend, many).expect("persisted");
    assert_eq!(generations(&h), [txn_log::topic_name(1)]);
    for _ in 0..3 {
        persist(&mut h, &backend, vec![("a".into(), Some(a.clone()))]).expect("persisted");
    }
    assert_eq!(generations(&h), [txn_log::topic_name(1)], "compacted once");
    // t-0 exists, u-0 is named by b's open transaction; t-1.. are beyond t's partitions.
    let (_h, backend) = h.restart();
    let txns = &backend.inner.txns;
    assert!(txns.writes_to("t", 0) && txns.writes_to("u", 0));
    assert!(!txns.writes_to("t", 1) && !txns.writes_to("t", 10_049));
    assert_eq!(
        txns.size().0,
        6 + 3,
        "two partitions, when b's transaction opened, two ids, the end, three writes"
    );
}

/// A compaction whose snapshot lands but whose reply is lost fails; its generation is
/// deleted before the log is written again, so the next start replays the generation the
/// later writes went to, not the stale snapshot.
#[test]
fn a_failed_compaction_leaves_no_snapshot_behind() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let changes: Vec<_> = (0..10_001)
        .map(|i| {
            let mut s = snapshot("a", TxnState::Ongoing, &[("t", 0)]);
            s.epoch = i16::try_from(i % 100).unwrap_or(0);
            ("a".to_string(), Some(s))
        })
        .collect();
    let Execution::Pending(mut fut) = backend.execute(Command::PersistTxns { changes }) else {
        panic!("a persist waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    let next = txn_log::topic_name(1);
    let mut lost = false;
    for _ in 0..10_000 {
        if let Poll::Ready(done) = fut.as_mut().poll(&mut cx) {
            assert!(matches!(done, Completion::PersistTxns(Ok(()))), "{done:?}");
            break;
        }
        if !lost && h.fake.topics.contains_key(&next) {
            // The compaction's snapshot is on its way: applied, its reply lost.
            h.apply_then_drop_connections();
            h.reconnect();
            // Its deletion fails at first.
            h.fake.fail_next = Some(1);
            lost = true;
            assert_eq!(
                h.fake.topics[&next].partitions[0].next, 4,
                "the snapshot landed"
            );
            continue;
        }
        h.serve();
    }
    assert!(lost);
    assert!(h.fake.topics.contains_key(&next));
    // The compactions tried again from here on fail too.
    h.fake.refuse_sends_to.insert(next.clone());
    // Nothing is written while it is there.
    let later = snapshot("b", TxnState::Ongoing, &[("t", 0)]);
    h.fake.fail_next = Some(1);
    assert!(matches!(
        persist(&mut h, &backend, vec![("b".into(), Some(later.clone()))]),
        Err(BackendError::Unavailable(_))
    ));
    // The snapshot's end, the partition, when a's transaction opened, 10,001 states.
    assert_eq!(
        h.fake.topics[&txn_log::topic_name(0)].partitions[0].next,
        10_004
    );
    persist(&mut h, &backend, vec![("b".into(), Some(later.clone()))]).expect("persisted");
    assert!(
        !h.fake.topics.contains_key(&next),
        "the failed compaction's topic is gone"
    );
    let (_h, backend) = h.restart();
    let state = backend.transaction_state();
    assert!(state.contains(&later), "{state:?}");
}

/// A transactional batch handed over before its transaction's marker but reaching the
/// partition after it is refused with INVALID_TXN_STATE rather than landing in a
/// transaction that has ended (where it would hold the last stable offset for ever); a
/// batch of the producer's next transaction, handed over after the marker, lands.
#[test]
fn a_transactional_batch_overtaken_by_its_marker_is_refused() {
    let (mut h, backend) = transactional_partition();
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    let messages: MessageList = [record(3), record(4)]
        .iter()
        .map(|r| {
            let mut m = to_iggy(r);
            mark_transactional(&mut m, 5, 0);
            m
        })
        .collect();
    // Handed over, not yet run; the marker is handed over and written meanwhile.
    let Execution::Pending(late) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages,
        largest_batch: 100,
        producer: Some(txn_batch(5, 0, 2, 2)),
    }) else {
        panic!("an append waits for Iggy");
    };
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, true), 2);
    match h.run(late) {
        Completion::Append(Err(e)) => {
            assert_eq!(e.error_code(), ErrorCode::INVALID_TXN_STATE, "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(3), 3));
    // The producer's next transaction.
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 2, 2)), Ok(3));
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(3), 5));
}

/// The log says when an open transaction opened: after a restart the coordinator is told
/// how long it has been open (so its timeout is not restarted), and a transaction that is
/// no longer open is not dated.
#[test]
fn when_a_transaction_opened_survives_a_restart() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    persist(
        &mut h,
        &backend,
        vec![
            (
                "a".into(),
                Some(snapshot("a", TxnState::Ongoing, &[("t", 0)])),
            ),
            (
                "b".into(),
                Some(snapshot("b", TxnState::Ongoing, &[("t", 0)])),
            ),
        ],
    )
    .expect("persisted");
    persist(
        &mut h,
        &backend,
        vec![(
            "b".into(),
            Some(snapshot("b", TxnState::PrepareAbort, &[("t", 0)])),
        )],
    )
    .expect("persisted");
    let (_h, backend) = h.restart();
    let open = backend.transactions_open_for();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].0, "a");
    assert!(open[0].1 < std::time::Duration::from_secs(60), "{open:?}");
}

/// The partition remembers the latest marker of a bounded number of producers; a
/// transactional batch of a producer it no longer remembers, handed over before the
/// markers that pushed the oldest out, is refused rather than let land after a marker of
/// its own that may be among them.
#[test]
fn a_batch_older_than_the_forgotten_markers_is_refused() {
    let (mut h, backend) = transactional_partition();
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    let messages: MessageList = [record(3)]
        .iter()
        .map(|r| {
            let mut m = to_iggy(r);
            mark_transactional(&mut m, 5, 0);
            m
        })
        .collect();
    let Execution::Pending(late) = backend.execute(Command::Append {
        topic: "t".into(),
        partition: 0,
        messages,
        largest_batch: 100,
        producer: Some(txn_batch(5, 0, 2, 1)),
    }) else {
        panic!("an append waits for Iggy");
    };
    // Producer 5's marker, then more producers' markers than the partition remembers.
    let mut at = marker(&mut h, &backend, ("t", 0), 5, 0, false);
    for producer in 0..crate::append::MAX_CLOSED as i64 {
        at = marker(&mut h, &backend, ("t", 0), 1_000 + producer, 0, true);
    }
    match h.run(late) {
        Completion::Append(Err(e)) => {
            assert_eq!(e.error_code(), ErrorCode::INVALID_TXN_STATE, "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!(o.high_watermark, at + 1);
    assert_eq!(o.last_stable, Some(at + 1));
}

/// While a partition's transaction index is read back after a restart, the partition's
/// other idempotent appends go on: only its transactional writes, markers and reads need
/// the index.
#[test]
fn appends_go_on_while_the_index_is_rebuilt() {
    let (mut h, backend) = transactional_partition();
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    let (mut h, backend) = h.restart();
    let polls = |h: &Pool| {
        h.fake
            .seen
            .iter()
            .filter(|&&c| c == POLL_MESSAGES_CODE)
            .count()
    };
    let before = polls(&h);
    let Execution::Pending(mut asked) = backend.execute(Command::Offsets {
        topic: TopicRef::Name("t".into()),
        partition: 0,
    }) else {
        panic!("offsets wait for Iggy");
    };
    // Until the rebuild has asked for the partition's log.
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if polls(&h) > before {
            break;
        }
        assert!(asked.as_mut().poll(&mut cx).is_pending());
        h.serve();
    }
    assert!(polls(&h) > before, "the rebuild never read");
    let plain = ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, 0, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(plain)), Ok(2));
    match h.run(asked) {
        // Its high watermark is from before the append, asked before the rebuild.
        Completion::Offsets(Ok(o)) => {
            assert_eq!((o.last_stable, o.high_watermark), (Some(0), 2));
        }
        other => panic!("{other:?}"),
    }
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(0), 4));
}

/// A transactional batch whose reply was lost and that is not found behind the fence can
/// no longer land: once the next append has looked for it, it holds nothing back.
#[test]
fn a_lost_transactional_batch_not_found_behind_the_fence_holds_nothing_back() {
    let (mut h, backend) = transactional_partition();
    let plain = |first_sequence| ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, first_sequence, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(0))),
        Ok(0)
    );
    offsets(&mut h, &backend, "t", 0);
    txn_append_lost(&mut h, &backend, txn_batch(5, 0, 0, 2), false);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(2))),
        Ok(2)
    );
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(4), 4));
}

/// A transactional batch whose reply was lost, still prepared and not committed when its
/// transaction's marker comes: the marker's fence commits it first, so it is found and the
/// abort covers it (read_committed consumers do not see it).
#[test]
fn a_lost_transactional_batch_committed_late_is_covered_by_its_marker() {
    let (mut h, backend) = transactional_partition();
    let plain = ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, 0, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(plain)), Ok(0));
    offsets(&mut h, &backend, "t", 0);
    txn_append_prepared(&mut h, &backend, txn_batch(5, 0, 0, 2));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 4);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(r.offsets.last_stable, Some(5));
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 2,
            last_offset: 4
        }]
    );
}

/// A transactional batch whose reply was lost and that is not found where it can have
/// landed, unfenced (here the fence is refused as unauthorized, as for a user without the
/// right to poll), may
/// still be applied by Iggy: it holds the last stable offset back until its transaction's
/// marker, which looks for it once more, rather than only until the next append looked.
#[test]
fn a_lost_transactional_batch_not_found_unfenced_holds_the_last_stable_offset_until_its_marker() {
    let (mut h, backend) = transactional_partition();
    let plain = |first_sequence| ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, first_sequence, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(0))),
        Ok(0)
    );
    offsets(&mut h, &backend, "t", 0);
    txn_append_lost(&mut h, &backend, txn_batch(5, 0, 0, 2), false);
    // The next append looks for it, in vain, and unfenced: its fence is refused.
    h.fake.fail_next = Some(41);
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(2))),
        Ok(2)
    );
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(2), 4));
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(r.offsets.last_stable, Some(2));
    // Its producer's marker ends the transaction: nothing is held back any more.
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 4);
    let o = offsets(&mut h, &backend, "t", 0);
    assert_eq!((o.last_stable, o.high_watermark), (Some(5), 5));
}

/// A marker that finds the partition looked up afresh (forgotten while it waited) is
/// refused, retriably, rather than learnt by a transaction index not yet read back, where
/// it would be taken for the end of the partition's earlier transactions; its retry reads
/// the index back first, and the earlier commit stays committed.
#[test]
fn a_marker_on_a_partition_looked_up_afresh_waits_for_the_rebuild() {
    let (mut h, backend) = transactional_partition();
    // Producer 5 commits 0..2 (marker at 2), then writes 3..5 and aborts them.
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 0, 2)), Ok(0));
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, true), 2);
    assert_eq!(txn_append(&mut h, &backend, txn_batch(5, 0, 2, 2)), Ok(3));
    let Execution::Pending(mut abort) = backend.execute(Command::WriteMarker {
        topic: "t".into(),
        partition: 0,
        producer_id: 5,
        epoch: 0,
        commit: false,
        coordinator_epoch: 0,
    }) else {
        panic!("a marker waits for Iggy");
    };
    let mut cx = Context::from_waker(Waker::noop());
    assert!(abort.as_mut().poll(&mut cx).is_pending());
    backend.inner.catalog.forget_partition("t", 0);
    match h.run(abort) {
        Completion::WriteMarker(Err(e)) => {
            assert_eq!(e.error_code(), ErrorCode::REQUEST_TIMED_OUT, "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 5);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 3,
            last_offset: 5
        }]
    );
}

/// A marker for one of the gateway's own topics is refused as for an unknown topic, as
/// appends to them are: in the offsets log it would be a record the replay cannot read,
/// and the commits after it would be lost at the next start. (The coordinator adds only
/// topics Kafka clients can see to a transaction; this holds whatever reaches the backend.)
#[test]
fn no_marker_lands_in_the_gateways_own_topics() {
    let mut h = Pool::new(FakeIggy::new());
    let backend = h.backend();
    let own = crate::offsets_log::topic_name(0);
    let held = |h: &Pool| -> u64 { h.fake.topics[&own].partitions.iter().map(|p| p.next).sum() };
    let before = held(&h);
    match h.exec(
        &backend,
        Command::WriteMarker {
            topic: own.clone(),
            partition: 0,
            producer_id: 5,
            epoch: 0,
            commit: false,
            coordinator_epoch: 0,
        },
    ) {
        Completion::WriteMarker(Err(BackendError::UnknownTopic(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(held(&h), before, "nothing appended");
}

/// Leaves `pb`'s two-record transactional batch prepared and not committed, and not found by
/// a look that could not be fenced (the fence refused as unauthorized, at another
/// producer's append that is refused before anything is sent): it waits for its marker.
fn txn_unfound_unfenced(h: &mut Pool, backend: &IggyBackend, pb: ProducerBatch) {
    txn_append_prepared(h, backend, pb);
    h.fake.fail_next = Some(41);
    let out_of_sequence = ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, 7, 2)
    };
    let two = [record(1), record(2)];
    assert!(append(h, backend, "t", 0, &two, Some(out_of_sequence)).is_err());
    assert_eq!(h.fake.prepared(), 1, "still prepared");
}

/// Stores of a consumer offset (fences) the fake has seen.
fn fences(h: &Pool) -> usize {
    h.fake
        .seen
        .iter()
        .filter(|&&c| c == iggy_kafka_iggy_client::protocol::codes::STORE_CONSUMER_OFFSET_CODE)
        .count()
}

/// A transactional batch looked for unfenced and not found, still prepared when its
/// transaction's marker comes: the marker fences the partition, which commits the batch
/// first, so it is found and the abort covers it.
#[test]
fn the_marker_fences_before_it_looks_for_a_batch_not_found_unfenced() {
    let (mut h, backend) = transactional_partition();
    let plain = ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, 0, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(append(&mut h, &backend, "t", 0, &two, Some(plain)), Ok(0));
    offsets(&mut h, &backend, "t", 0);
    txn_unfound_unfenced(&mut h, &backend, txn_batch(5, 0, 0, 2));
    h.fake.seen.clear();
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 4);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(r.offsets.last_stable, Some(5));
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 2,
            last_offset: 4
        }]
    );
    assert_eq!(fences(&h), 1);
}

/// A marker that has just fenced the partition to look for a batch in doubt looks for its
/// producer's batches not found unfenced behind the same fence: one fence, not two.
#[test]
fn a_marker_fences_once_for_a_batch_in_doubt_and_one_not_found_unfenced() {
    let (mut h, backend) = transactional_partition();
    let plain = |first_sequence| ProducerBatch {
        transactional: false,
        ..txn_batch(6, 0, first_sequence, 2)
    };
    let two = [record(1), record(2)];
    assert_eq!(
        append(&mut h, &backend, "t", 0, &two, Some(plain(0))),
        Ok(0)
    );
    offsets(&mut h, &backend, "t", 0);
    txn_unfound_unfenced(&mut h, &backend, txn_batch(5, 0, 0, 2));
    // Another producer's batch in doubt; sending it commits the prepared one first.
    append_losing_the_reply(&mut h, &backend, &two, plain(2), true);
    h.fake.seen.clear();
    assert_eq!(marker(&mut h, &backend, ("t", 0), 5, 0, false), 6);
    assert_eq!(fences(&h), 1);
    let r = read_all(&mut h, &backend, "t", 0);
    assert_eq!(
        r.aborted,
        [AbortedTxn {
            producer_id: 5,
            first_offset: 2,
            last_offset: 6
        }]
    );
}
