//! Authorization of transactional ids, API by API (docs/SECURITY.md's table): Kafka's WRITE
//! and DESCRIBE on a transactional id are sending to some topic. A principal that may only
//! read is answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED where Kafka's `KafkaApis` answers
//! it, and nothing reaches the coordinator or the store; one that may send is served.
//! Scripted connection, no sockets, no backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::authz::{
    PermissionAuthorizer, Permissions, StreamPermissions, TopicPermissions,
};
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use iggy_kafka_core::protocol::generated::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use iggy_kafka_core::protocol::generated::describe_transactions_request::DescribeTransactionsRequest;
use iggy_kafka_core::protocol::generated::end_txn_request::EndTxnRequest;
use iggy_kafka_core::protocol::generated::find_coordinator_request::FindCoordinatorRequest;
use iggy_kafka_core::protocol::generated::init_producer_id_request::InitProducerIdRequest;
use iggy_kafka_core::protocol::generated::list_transactions_request::ListTransactionsRequest;
use iggy_kafka_core::protocol::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use iggy_kafka_core::protocol::generated::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use iggy_kafka_core::protocol::{ApiKey, Request, Response};
use iggy_kafka_core::records::{Compression, Record, RecordBatch};
use iggy_kafka_core::txn::{TxnCall, TxnReply, TxnSnapshot, TxnState};
use iggy_kafka_core::work::{Outcome, Work, WorkId};
use iggy_kafka_core::{Config, Connection};

const TXN_DENIED: i16 = 53;

struct Harness {
    conn: Connection,
    now: Instant,
}

impl Harness {
    /// A connection of `principal`, where `reader` may read topic `t` (and send nowhere),
    /// `writer` may send to the topics of stream `kafka` and read `t` (so READ groups too).
    /// A topic `s.x` is topic `x` of stream `s`; others are in stream `kafka`.
    fn of(principal: &str) -> Self {
        let authorizer = PermissionAuthorizer::new(Vec::new(), |t: &str| match t.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => ("kafka".to_owned(), t.to_owned()),
        });
        let mut reader = Permissions::default();
        let mut stream = StreamPermissions::default();
        stream.topics.insert(
            "t".into(),
            TopicPermissions {
                read_topic: true,
                ..TopicPermissions::default()
            },
        );
        reader.streams.insert("kafka".into(), stream);
        authorizer.set("reader", reader);
        let mut writer = Permissions::default();
        let mut stream = StreamPermissions {
            send_messages: true,
            ..StreamPermissions::default()
        };
        stream.topics.insert(
            "t".into(),
            TopicPermissions {
                read_topic: true,
                ..TopicPermissions::default()
            },
        );
        writer.streams.insert("kafka".into(), stream);
        authorizer.set("writer", writer);
        let mut config = Config::default();
        config.authorizer = Some(Arc::new(authorizer));
        config.transactions = true;
        let now = Instant::now();
        let mut h = Self {
            conn: Connection::new(Arc::new(config), now),
            now,
        };
        h.conn.set_peer_principal(principal);
        h
    }

    fn send(&mut self, version: i16, request: &Request) {
        let mut buf = BytesMut::new();
        frame::encode_request(&mut buf, request, version, 1, Some("harness")).expect("request");
        self.conn.handle_input(self.now, &mut buf);
        assert!(buf.is_empty(), "the whole frame was taken");
    }

    fn commands(&mut self) -> Vec<(WorkId, Work)> {
        std::iter::from_fn(|| self.conn.poll_work()).collect()
    }

    fn complete(&mut self, id: WorkId, c: Outcome) {
        self.conn.handle_outcome(self.now, id, c);
    }

    fn response(&mut self, key: ApiKey, version: i16) -> Response {
        let mut out = BytesMut::new();
        while let Some(b) = self.conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        let f = frame::split_frame(&mut out, usize::MAX)
            .expect("frame")
            .expect("a response");
        frame::decode_response(f, key, version).expect("response").1
    }
}

/// One transactional batch of one record, as a transactional producer sends it.
fn transactional_batch() -> Bytes {
    let batch = RecordBatch {
        attributes: 0x10,
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: 0,
        records: vec![Record {
            value: Some(Bytes::from_static(b"v")),
            ..Record::default()
        }],
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    batch.encode(Compression::None, &mut buf).expect("batch");
    buf.freeze()
}

/// Every API that needs WRITE or DESCRIBE on the transactional id "tx", with a version
/// clients send.
fn txn_requests() -> Vec<(ApiKey, i16, Request)> {
    vec![
        (
            ApiKey::InitProducerId,
            4,
            Request::InitProducerId(InitProducerIdRequest {
                transactional_id: Some("tx".into()),
                transaction_timeout_ms: 10_000,
                producer_id: -1,
                producer_epoch: -1,
                ..InitProducerIdRequest::default()
            }),
        ),
        (
            ApiKey::AddPartitionsToTxn,
            3,
            Request::AddPartitionsToTxn(AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: "tx".into(),
                v3_and_below_producer_id: 1,
                v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                    name: "t".into(),
                    partitions: vec![0, 1],
                    ..AddPartitionsToTxnTopic::default()
                }],
                ..AddPartitionsToTxnRequest::default()
            }),
        ),
        (
            ApiKey::AddOffsetsToTxn,
            3,
            Request::AddOffsetsToTxn(AddOffsetsToTxnRequest {
                transactional_id: "tx".into(),
                producer_id: 1,
                group_id: "g".into(),
                ..AddOffsetsToTxnRequest::default()
            }),
        ),
        (
            ApiKey::EndTxn,
            3,
            Request::EndTxn(EndTxnRequest {
                transactional_id: "tx".into(),
                producer_id: 1,
                committed: true,
                ..EndTxnRequest::default()
            }),
        ),
        (
            ApiKey::TxnOffsetCommit,
            3,
            Request::TxnOffsetCommit(TxnOffsetCommitRequest {
                transactional_id: "tx".into(),
                group_id: "g".into(),
                producer_id: 1,
                generation_id: -1,
                topics: vec![TxnOffsetCommitRequestTopic {
                    name: "t".into(),
                    partitions: vec![TxnOffsetCommitRequestPartition {
                        committed_offset: 5,
                        ..TxnOffsetCommitRequestPartition::default()
                    }],
                    ..TxnOffsetCommitRequestTopic::default()
                }],
                ..TxnOffsetCommitRequest::default()
            }),
        ),
        (
            ApiKey::Produce,
            9,
            Request::Produce(ProduceRequest {
                transactional_id: Some("tx".into()),
                acks: -1,
                timeout_ms: 1_000,
                topic_data: vec![TopicProduceData {
                    name: "t".into(),
                    partition_data: vec![PartitionProduceData {
                        index: 0,
                        records: Some(transactional_batch()),
                        ..PartitionProduceData::default()
                    }],
                    ..TopicProduceData::default()
                }],
                ..ProduceRequest::default()
            }),
        ),
        (
            ApiKey::DescribeTransactions,
            0,
            Request::DescribeTransactions(DescribeTransactionsRequest {
                transactional_ids: vec!["tx".into()],
                ..DescribeTransactionsRequest::default()
            }),
        ),
    ]
}

/// The codes of each API's answer, every partition's where it has partitions.
fn codes(r: &Response) -> Vec<i16> {
    match r {
        Response::InitProducerId(r) => vec![r.error_code],
        Response::AddPartitionsToTxn(r) => r
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect(),
        Response::AddOffsetsToTxn(r) => vec![r.error_code],
        Response::EndTxn(r) => vec![r.error_code],
        Response::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        Response::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
        Response::DescribeTransactions(r) => {
            r.transaction_states.iter().map(|s| s.error_code).collect()
        }
        other => panic!("{other:?}"),
    }
}

/// A principal that may send nowhere is refused every transactional API, every partition
/// of it, before anything is asked; one that may send somewhere is served.
#[test]
fn transactional_apis_need_write_on_the_transactional_id() {
    for (key, version, request) in txn_requests() {
        let mut h = Harness::of("reader");
        h.send(version, &request);
        let cmds = h.commands();
        assert!(cmds.is_empty(), "{key:?}: {cmds:?}");
        let answered = codes(&h.response(key, version));
        assert!(!answered.is_empty(), "{key:?}");
        assert!(
            answered.iter().all(|&c| c == TXN_DENIED),
            "{key:?}: {answered:?}"
        );

        let mut h = Harness::of("writer");
        h.send(version, &request);
        let cmds = h.commands();
        assert!(!cmds.is_empty(), "writer {key:?} is served");
    }
}

/// FindCoordinator for a transaction needs DESCRIBE on the transactional id, in both its
/// forms (one key before v4, a batch of keys since); for a group it does not.
#[test]
fn find_coordinator_for_a_transaction_needs_describe() {
    for version in [3, 4] {
        let request = Request::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest {
                key_type: 1,
                coordinator_keys: vec!["tx".into()],
                ..FindCoordinatorRequest::default()
            }
        } else {
            FindCoordinatorRequest {
                key: "tx".into(),
                key_type: 1,
                ..FindCoordinatorRequest::default()
            }
        });
        for (principal, expected) in [("reader", TXN_DENIED), ("writer", 0)] {
            let mut h = Harness::of(principal);
            h.send(version, &request);
            let Response::FindCoordinator(r) = h.response(ApiKey::FindCoordinator, version) else {
                panic!()
            };
            let code = if version >= 4 {
                r.coordinators[0].error_code
            } else {
                r.error_code
            };
            assert_eq!(code, expected, "{principal} v{version}");
        }
    }
}

fn snapshot(key: &str, partitions: Vec<(String, u32)>) -> TxnSnapshot {
    TxnSnapshot {
        transactional_id: key.into(),
        producer_id: 7,
        previous_producer_id: -1,
        epoch: 0,
        last_epoch: -1,
        timeout_ms: 60_000,
        state: TxnState::Ongoing,
        partitions,
        offsets: Vec::new(),
    }
}

/// DescribeTransactions answers each id on its own (refused ones are not asked), and shows
/// only the partitions of topics the principal may describe.
#[test]
fn describe_transactions_checks_each_id_and_hides_topics() {
    let mut h = Harness::of("writer");
    h.send(
        0,
        &Request::DescribeTransactions(DescribeTransactionsRequest {
            transactional_ids: vec!["tx".into()],
            ..DescribeTransactionsRequest::default()
        }),
    );
    let cmds = h.commands();
    let [(id, Work::Txn(TxnCall::Describe(keys)))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_eq!(keys.len(), 1);
    // writer may describe stream kafka's topics, not those of another stream.
    let partitions = vec![("t".to_owned(), 0), ("other.u".to_owned(), 0)];
    h.complete(
        *id,
        Outcome::Txn(TxnReply::Describe(vec![Some((
            snapshot(&keys[0], partitions),
            None,
        ))])),
    );
    let Response::DescribeTransactions(r) = h.response(ApiKey::DescribeTransactions, 0) else {
        panic!()
    };
    let s = &r.transaction_states[0];
    assert_eq!(s.error_code, 0);
    let topics: Vec<String> = s.topics.iter().map(|t| t.topic.to_string()).collect();
    assert_eq!(topics, ["t"]);
}

/// ListTransactions lists only the ids the principal may describe (and, with an
/// authorizer, only its own).
#[test]
fn list_transactions_lists_only_described_ids() {
    for (principal, listed) in [("reader", 0), ("writer", 1)] {
        let mut h = Harness::of(principal);
        h.send(
            1,
            &Request::ListTransactions(ListTransactionsRequest {
                duration_filter: -1,
                ..ListTransactionsRequest::default()
            }),
        );
        let cmds = h.commands();
        let [(id, Work::Txn(TxnCall::List))] = &cmds[..] else {
            panic!("{cmds:?}")
        };
        let all = ["reader", "writer"]
            .iter()
            .map(|p| {
                (
                    snapshot(&format!("{p}\u{0}tx"), Vec::new()),
                    Some(Duration::from_secs(1)),
                )
            })
            .collect();
        h.complete(*id, Outcome::Txn(TxnReply::List(all)));
        let Response::ListTransactions(r) = h.response(ApiKey::ListTransactions, 1) else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.transaction_states.len(), listed, "{principal}");
        if listed > 0 {
            assert_eq!(r.transaction_states[0].transactional_id.to_string(), "tx");
        }
    }
}

/// InitProducerId without a transactional id (an idempotent producer's) needs Kafka's
/// IDEMPOTENT_WRITE or WRITE on some topic: here, sending to some topic. A principal that
/// may only read is answered CLUSTER_AUTHORIZATION_FAILED and no producer id is allocated.
#[test]
fn an_idempotent_producer_id_needs_to_send_somewhere() {
    const CLUSTER_DENIED: i16 = 31;
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: -1,
        producer_id: -1,
        producer_epoch: -1,
        ..InitProducerIdRequest::default()
    });
    let mut h = Harness::of("reader");
    h.send(4, &request);
    assert!(h.commands().is_empty(), "no producer id allocated");
    assert_eq!(
        codes(&h.response(ApiKey::InitProducerId, 4)),
        [CLUSTER_DENIED]
    );
    let mut h = Harness::of("writer");
    h.send(4, &request);
    assert_eq!(h.commands().len(), 1, "a producer id is allocated");
}
