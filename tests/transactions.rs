//! Transactions over the wire against the real binary, where Kafka's exact codes matter
//! more than what a client library shows: a transactional write to a partition not added to
//! the transaction is refused, ListOffsets with read_committed answers the last stable
//! offset, OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT while a
//! transaction holds the group's offsets, and a producer fenced by a new incarnation gets
//! Kafka's codes. Real clients are in `tests/clients.rs` (`transactions.py`).

mod common;

use bytes::{Bytes, BytesMut};
use common::{call, create_topic, produce, produce_to_0, Gateway};
use iggy_kafka_core::protocol::generated::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use iggy_kafka_core::protocol::generated::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use iggy_kafka_core::protocol::generated::describe_transactions_request::DescribeTransactionsRequest;
use iggy_kafka_core::protocol::generated::end_txn_request::EndTxnRequest;
use iggy_kafka_core::protocol::generated::find_coordinator_request::FindCoordinatorRequest;
use iggy_kafka_core::protocol::generated::init_producer_id_request::InitProducerIdRequest;
use iggy_kafka_core::protocol::generated::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use iggy_kafka_core::protocol::generated::list_transactions_request::ListTransactionsRequest;
use iggy_kafka_core::protocol::generated::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestTopic,
};
use iggy_kafka_core::protocol::generated::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use iggy_kafka_core::protocol::{Request, Response};
use iggy_kafka_core::records::{Compression, Record, RecordBatch};
use std::net::TcpStream;

const NONE: i16 = 0;
const ILLEGAL_GENERATION: i16 = 22;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTION_ABORTABLE: i16 = 120;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// A transactional batch of `n` records.
fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, n: usize) -> Bytes {
    let batch = RecordBatch {
        attributes: 0x10,
        last_offset_delta: n as i32 - 1,
        producer_id,
        producer_epoch: epoch,
        base_sequence: first_sequence,
        records: (0..n)
            .map(|i| Record {
                offset_delta: i as i32,
                value: Some(Bytes::from(format!("t{i}"))),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    batch.encode(Compression::None, &mut buf).expect("encode");
    buf.freeze()
}

/// Produces a transactional batch of transactional id `tx` to partition 0 (Produce v9):
/// the partition's error code and base offset.
fn produce_txn(s: &mut TcpStream, correlation_id: i32, topic: &str, batch: Bytes) -> (i16, i64) {
    let Request::Produce(mut req) = produce(topic, -1, vec![(0, batch)]) else {
        unreachable!()
    };
    req.transactional_id = Some("tx".into());
    let Response::Produce(r) = call(s, 9, correlation_id, &Request::Produce(req)) else {
        panic!("Produce")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn init(s: &mut TcpStream, id: &str) -> (i16, i64, i16) {
    let Response::InitProducerId(r) = call(
        s,
        4,
        1,
        &Request::InitProducerId(InitProducerIdRequest {
            transactional_id: Some(id.into()),
            transaction_timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
            ..InitProducerIdRequest::default()
        }),
    ) else {
        panic!("InitProducerId")
    };
    (r.error_code, r.producer_id, r.producer_epoch)
}

fn add(s: &mut TcpStream, id: &str, (pid, epoch): (i64, i16), topic: &str, verify: bool) -> i16 {
    let tx = AddPartitionsToTxnTransaction {
        transactional_id: id.into(),
        producer_id: pid,
        producer_epoch: epoch,
        verify_only: verify,
        topics: vec![AddPartitionsToTxnTopic {
            name: topic.into(),
            partitions: vec![0],
            ..AddPartitionsToTxnTopic::default()
        }],
        ..AddPartitionsToTxnTransaction::default()
    };
    if verify {
        let Response::AddPartitionsToTxn(r) = call(
            s,
            4,
            2,
            &Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
                transactions: vec![tx],
                ..AddPartitionsToTxnRequest::default()
            }),
        ) else {
            panic!("AddPartitionsToTxn")
        };
        return r.results_by_transaction[0].topic_results[0].results_by_partition[0]
            .partition_error_code;
    }
    let Response::AddPartitionsToTxn(r) = call(
        s,
        3,
        2,
        &Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: tx.transactional_id,
            v3_and_below_producer_id: tx.producer_id,
            v3_and_below_producer_epoch: tx.producer_epoch,
            v3_and_below_topics: tx.topics,
            ..AddPartitionsToTxnRequest::default()
        }),
    ) else {
        panic!("AddPartitionsToTxn")
    };
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end(s: &mut TcpStream, id: &str, (pid, epoch): (i64, i16), commit: bool) -> i16 {
    let Response::EndTxn(r) = call(
        s,
        3,
        3,
        &Request::EndTxn(EndTxnRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            committed: commit,
            ..EndTxnRequest::default()
        }),
    ) else {
        panic!("EndTxn")
    };
    r.error_code
}

/// ListOffsets LATEST at `isolation` (v7).
fn latest(s: &mut TcpStream, topic: &str, isolation: i8) -> i64 {
    let Response::ListOffsets(r) = call(
        s,
        7,
        4,
        &Request::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            isolation_level: isolation,
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    timestamp: -1,
                    ..ListOffsetsPartition::default()
                }],
                ..ListOffsetsTopic::default()
            }],
            ..ListOffsetsRequest::default()
        }),
    ) else {
        panic!("ListOffsets")
    };
    r.topics[0].partitions[0].offset
}

fn fetch_offset(s: &mut TcpStream, group: &str, topic: &str) -> (i16, i64) {
    let Response::OffsetFetch(r) = call(
        s,
        7,
        5,
        &Request::OffsetFetch(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: topic.into(),
                partition_indexes: vec![0],
                ..OffsetFetchRequestTopic::default()
            }]),
            require_stable: true,
            ..OffsetFetchRequest::default()
        }),
    ) else {
        panic!("OffsetFetch")
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[test]
fn transactions_over_the_wire() {
    over_the_wire(Gateway::start());
}

/// The same on the Iggy backend, over the fake Iggy.
#[test]
fn transactions_over_the_wire_on_iggy() {
    let iggy = common::fake_iggy::FakeIggyServer::start();
    let stream = common::unique_stream();
    let url = iggy.url();
    over_the_wire(Gateway::start_with(&[
        "--iggy",
        url.as_str(),
        "--stream",
        stream.as_str(),
    ]));
}

fn over_the_wire(gw: Gateway) {
    let mut s = gw.connect();
    let topic = format!("txn-wire-{}", common::RUNTIME);
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let Response::FindCoordinator(r) = call(
        &mut s,
        3,
        1,
        &Request::FindCoordinator(FindCoordinatorRequest {
            key: "tx".into(),
            key_type: 1,
            ..FindCoordinatorRequest::default()
        }),
    ) else {
        panic!("FindCoordinator")
    };
    assert_eq!((r.error_code, r.port), (NONE, i32::from(gw.addr.port())));

    let (code, pid, epoch) = init(&mut s, "tx");
    assert_eq!((code, epoch), (NONE, 0));
    let p = (pid, epoch);
    // Not added to a transaction yet: refused (KIP-890 part 1), nothing appended.
    assert_eq!(
        produce_txn(&mut s, 10, &topic, txn_batch(pid, epoch, 0, 2)).0,
        INVALID_TXN_STATE
    );
    // A transactional batch outside a transactional request: the request is refused.
    assert_eq!(
        produce_to_0(&mut s, 9, &topic, txn_batch(pid, epoch, 0, 2)).0,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    // The v4 verification: the partition is not in a transaction (none is open).
    assert_eq!(add(&mut s, "tx", p, &topic, true), TRANSACTION_ABORTABLE);
    // A partition that does not exist: nothing is added, as Kafka answers.
    let Response::AddPartitionsToTxn(r) = call(
        &mut s,
        3,
        2,
        &Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: "tx".into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                name: topic.clone().into(),
                partitions: vec![0, 5],
                ..AddPartitionsToTxnTopic::default()
            }],
            ..AddPartitionsToTxnRequest::default()
        }),
    ) else {
        panic!("AddPartitionsToTxn")
    };
    let codes: Vec<i16> = r.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert_eq!(codes, [OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION]);
    assert_eq!(add(&mut s, "tx", p, &topic, true), TRANSACTION_ABORTABLE);
    assert_eq!(add(&mut s, "tx", p, &topic, false), NONE);
    assert_eq!(add(&mut s, "tx", p, &topic, true), NONE);
    assert_eq!(
        produce_to_0(
            &mut s,
            11,
            &topic,
            common::record_batch(vec![Bytes::from("plain")], None)
        ),
        (NONE, 0)
    );
    assert_eq!(
        produce_txn(&mut s, 12, &topic, txn_batch(pid, epoch, 0, 2)),
        (NONE, 1)
    );
    assert_eq!(
        produce_to_0(
            &mut s,
            13,
            &topic,
            common::record_batch(vec![Bytes::from("plain")], None)
        ),
        (NONE, 3)
    );
    // read_committed stops at the open transaction's first offset.
    assert_eq!(latest(&mut s, &topic, 1), 1);
    assert_eq!(latest(&mut s, &topic, 0), 4);
    // Offsets sent to the transaction are pending until it commits.
    let Response::AddOffsetsToTxn(r) = call(
        &mut s,
        3,
        6,
        &Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
            transactional_id: "tx".into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: "g".into(),
            ..AddOffsetsToTxnRequest::default()
        }),
    ) else {
        panic!("AddOffsetsToTxn")
    };
    assert_eq!(r.error_code, NONE);
    let Response::TxnOffsetCommit(r) = call(
        &mut s,
        3,
        7,
        &Request::TxnOffsetCommit(TxnOffsetCommitRequest {
            transactional_id: "tx".into(),
            group_id: "g".into(),
            producer_id: pid,
            producer_epoch: epoch,
            generation_id: -1,
            topics: vec![TxnOffsetCommitRequestTopic {
                name: topic.clone().into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 42,
                    committed_leader_epoch: -1,
                    ..TxnOffsetCommitRequestPartition::default()
                }],
                ..TxnOffsetCommitRequestTopic::default()
            }],
            ..TxnOffsetCommitRequest::default()
        }),
    ) else {
        panic!("TxnOffsetCommit")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, NONE);
    assert_eq!(fetch_offset(&mut s, "g", &topic).0, UNSTABLE_OFFSET_COMMIT);
    assert_eq!(end(&mut s, "tx", p, true), NONE);
    assert_eq!(fetch_offset(&mut s, "g", &topic), (NONE, 42));
    // The commit marker took offset 4: everything is stable.
    assert_eq!(latest(&mut s, &topic, 1), 5);
    assert_eq!(latest(&mut s, &topic, 0), 5);

    // A new incarnation with a transaction of the old one open: the old is fenced, its
    // transaction aborted, and the new one waits for that.
    assert_eq!(add(&mut s, "tx", p, &topic, false), NONE);
    assert_eq!(
        produce_txn(&mut s, 14, &topic, txn_batch(pid, epoch, 2, 1)),
        (NONE, 5)
    );
    let mut retried = init(&mut s, "tx");
    for _ in 0..100 {
        if retried.0 != CONCURRENT_TRANSACTIONS {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        retried = init(&mut s, "tx");
    }
    assert_eq!(retried, (NONE, pid, 2));
    assert_eq!(latest(&mut s, &topic, 1), 7, "aborted, marker at 6");
    assert_eq!(
        produce_txn(&mut s, 15, &topic, txn_batch(pid, epoch, 3, 1)).0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(add(&mut s, "tx", p, &topic, false), PRODUCER_FENCED);
    assert_eq!(end(&mut s, "tx", p, true), PRODUCER_FENCED);
    assert_eq!(latest(&mut s, &topic, 0), 7, "the zombie wrote nothing");

    // Admin tools see the transaction: open, on its partition, at its epoch.
    assert_eq!(add(&mut s, "tx", (pid, 2), &topic, false), NONE);
    let Response::ListTransactions(r) = call(
        &mut s,
        1,
        8,
        &Request::ListTransactions(ListTransactionsRequest {
            state_filters: vec!["Ongoing".into(), "Bogus".into()],
            duration_filter: -1,
            ..ListTransactionsRequest::default()
        }),
    ) else {
        panic!("ListTransactions")
    };
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.unknown_state_filters.len(), 1);
    assert_eq!(r.unknown_state_filters[0].as_str(), "Bogus");
    let listed: Vec<(String, i64, String)> = r
        .transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.to_string(),
                t.producer_id,
                t.transaction_state.to_string(),
            )
        })
        .collect();
    assert_eq!(listed, [("tx".to_owned(), pid, "Ongoing".to_owned())]);
    let Response::DescribeTransactions(r) = call(
        &mut s,
        0,
        9,
        &Request::DescribeTransactions(DescribeTransactionsRequest {
            transactional_ids: vec!["tx".into(), "nope".into()],
            ..DescribeTransactionsRequest::default()
        }),
    ) else {
        panic!("DescribeTransactions")
    };
    let tx = &r.transaction_states[0];
    assert_eq!(
        (
            tx.error_code,
            tx.transaction_state.as_str(),
            tx.producer_id,
            tx.producer_epoch,
            tx.transaction_timeout_ms
        ),
        (NONE, "Ongoing", pid, 2, 60_000)
    );
    assert_eq!(tx.topics[0].topic.as_str(), topic);
    assert_eq!(tx.topics[0].partitions, [0]);
    assert_eq!(
        r.transaction_states[1].error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );

    // v3+: the group checks the member's generation first (KIP-447).
    let Response::TxnOffsetCommit(r) = call(
        &mut s,
        3,
        10,
        &Request::TxnOffsetCommit(TxnOffsetCommitRequest {
            transactional_id: "tx".into(),
            group_id: "no-such-group".into(),
            producer_id: pid,
            producer_epoch: 2,
            generation_id: 5,
            member_id: "m".into(),
            topics: vec![TxnOffsetCommitRequestTopic {
                name: topic.clone().into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 1,
                    committed_leader_epoch: -1,
                    ..TxnOffsetCommitRequestPartition::default()
                }],
                ..TxnOffsetCommitRequestTopic::default()
            }],
            ..TxnOffsetCommitRequest::default()
        }),
    ) else {
        panic!("TxnOffsetCommit")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, ILLEGAL_GENERATION);
    gw.stop();
}

/// InitProducerId with a transaction timeout of `timeout_ms`.
fn init_with_timeout(s: &mut TcpStream, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let Response::InitProducerId(r) = call(
        s,
        4,
        1,
        &Request::InitProducerId(InitProducerIdRequest {
            transactional_id: Some(id.into()),
            transaction_timeout_ms: timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
            ..InitProducerIdRequest::default()
        }),
    ) else {
        panic!("InitProducerId")
    };
    (r.error_code, r.producer_id, r.producer_epoch)
}

/// Produces a transactional batch of transactional id `id` to partition 0 (Produce v9).
fn produce_for(s: &mut TcpStream, id: &str, topic: &str, batch: Bytes) -> (i16, i64) {
    let Request::Produce(mut req) = produce(topic, -1, vec![(0, batch)]) else {
        unreachable!()
    };
    req.transactional_id = Some(id.into());
    let Response::Produce(r) = call(s, 9, 7, &Request::Produce(req)) else {
        panic!("Produce")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A read_committed Fetch of partition 0 from offset 0 (v11): the last stable offset, the
/// aborted transactions' producers and first offsets, and whether records came back.
fn fetch_committed(s: &mut TcpStream, topic: &str) -> (i64, Vec<(i64, i64)>, bool) {
    use iggy_kafka_core::protocol::generated::fetch_request::{
        FetchPartition, FetchRequest, FetchTopic,
    };
    let request = Request::Fetch(FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation_level: 1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                log_start_offset: -1,
                current_leader_epoch: -1,
                ..FetchPartition::default()
            }],
            ..FetchTopic::default()
        }],
        ..FetchRequest::default()
    });
    let Response::Fetch(r) = call(s, 11, 8, &request) else {
        panic!("Fetch")
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE);
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id, a.first_offset))
        .collect();
    let records = p.records.as_ref().is_some_and(|b| !b.is_empty());
    (p.last_stable_offset, aborted, records)
}

/// Waits (up to 30 s) until `f` holds, asking again every 100 ms.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A gateway on Iggy killed (SIGKILL) mid-transaction resumes from the coordinator's state
/// in Iggy: a commit whose decision was durable (its markers not yet written: the fake
/// Iggy refused them) completes after the restart, an open transaction is aborted once its
/// timeout passes, and read_committed never sees part of either.
#[test]
fn a_gateway_killed_mid_transaction_resumes_on_iggy() {
    let iggy = common::fake_iggy::FakeIggyServer::start();
    killed_mid_transaction(&iggy.url(), Some(&iggy));
}

/// The same on a real Iggy, but for the prepared commit (a real server cannot be made to
/// refuse the markers alone): a transaction committed before the kill is read back after
/// the restart instead.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn a_gateway_killed_mid_transaction_resumes_on_a_real_iggy() {
    killed_mid_transaction(&common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY"), None);
}

fn killed_mid_transaction(url: &str, fake: Option<&common::fake_iggy::FakeIggyServer>) {
    let stream = common::unique_stream();
    let args = ["--iggy", url, "--stream", stream.as_str()];
    let prepared = format!("txn-kill-prepared-{}", common::RUNTIME);
    let open = format!("txn-kill-open-{}", common::RUNTIME);

    let gw = Gateway::start_with(&args);
    let mut s = gw.connect();
    for topic in [&prepared, &open] {
        let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(topic, 1)) else {
            panic!("CreateTopics")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }
    // A commit decided, whose markers Iggy refuses: EndTxn is answered (the decision is
    // durable), the records stay invisible to read_committed.
    let (code, pid, epoch) = init(&mut s, "prepared");
    assert_eq!(code, NONE);
    assert_eq!(
        add(&mut s, "prepared", (pid, epoch), &prepared, false),
        NONE
    );
    assert_eq!(
        produce_for(&mut s, "prepared", &prepared, txn_batch(pid, epoch, 0, 3)),
        (NONE, 0)
    );
    if let Some(iggy) = fake {
        iggy.fake().refuse_sends_to.insert(prepared.clone());
        assert_eq!(end(&mut s, "prepared", (pid, epoch), true), NONE);
        assert_eq!(
            latest(&mut s, &prepared, 1),
            0,
            "no marker yet: nothing stable"
        );
    } else {
        assert_eq!(end(&mut s, "prepared", (pid, epoch), true), NONE);
        assert_eq!(latest(&mut s, &prepared, 1), 4);
    }
    // An open transaction with a short timeout.
    let (code, pid2, epoch2) = init_with_timeout(&mut s, "open", 3000);
    assert_eq!(code, NONE);
    assert_eq!(add(&mut s, "open", (pid2, epoch2), &open, false), NONE);
    assert_eq!(
        produce_for(&mut s, "open", &open, txn_batch(pid2, epoch2, 0, 2)),
        (NONE, 0)
    );
    assert_eq!(latest(&mut s, &open, 1), 0);
    drop(s);
    drop(gw); // SIGKILL

    if let Some(iggy) = fake {
        iggy.fake().refuse_sends_to.clear();
    }
    let gw = Gateway::start_with(&args);
    let mut s = gw.connect();
    // The prepared commit completes: its marker follows the three records.
    eventually("the prepared commit completes", || {
        latest(&mut s, &prepared, 1) == 4
    });
    let (lso, aborted, records) = fetch_committed(&mut s, &prepared);
    assert_eq!((lso, aborted, records), (4, vec![], true));
    // The open transaction is still open (nothing stable), then aborted by its timeout.
    let (lso, _, records) = fetch_committed(&mut s, &open);
    assert_eq!(
        (lso, records),
        (0, false),
        "nothing of an open transaction is read"
    );
    eventually("the open transaction is aborted after its timeout", || {
        latest(&mut s, &open, 1) == 3
    });
    let (lso, aborted, _) = fetch_committed(&mut s, &open);
    assert_eq!((lso, aborted), (3, vec![(pid2, 0)]));
    // The producer was fenced by the abort.
    assert_eq!(
        produce_for(&mut s, "open", &open, txn_batch(pid2, epoch2, 2, 1)).0,
        INVALID_PRODUCER_EPOCH
    );
    gw.stop();
}
