//! The transaction handlers where they check before the coordinator, as Kafka's
//! `KafkaApis` does: TxnOffsetCommit's unknown topics and partitions, AddPartitionsToTxn's
//! batched broker form (v4+) and its CLUSTER_ACTION, and ListOffsets by timestamp under
//! read_committed. Scripted connection, no sockets, no backend.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use iggy_kafka_core::authz::{PermissionAuthorizer, Permissions};
use iggy_kafka_core::backend::{Command, Completion, PartitionOffsets, TopicInfo};
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use iggy_kafka_core::protocol::generated::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use iggy_kafka_core::protocol::generated::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use iggy_kafka_core::protocol::{ApiKey, Request, Response, Uuid};
use iggy_kafka_core::txn::{TxnCall, TxnReply};
use iggy_kafka_core::work::{Outcome, Work, WorkId};
use iggy_kafka_core::{Config, Connection};

struct Harness {
    conn: Connection,
    now: Instant,
}

impl Harness {
    fn new(config: Config, principal: Option<&str>) -> Self {
        let now = Instant::now();
        let mut h = Self {
            conn: Connection::new(Arc::new(config), now),
            now,
        };
        if let Some(p) = principal {
            h.conn.set_peer_principal(p);
        }
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

fn transactions() -> Config {
    let mut config = Config::default();
    config.transactions = true;
    config
}

fn topic(name: &str, partitions: u32) -> TopicInfo {
    TopicInfo {
        name: name.into(),
        id: Uuid([3; 16]),
        partitions,
        config: Default::default(),
    }
}

/// TxnOffsetCommit answers UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist and
/// for a partition past a topic's last, as Kafka does, and commits the rest.
#[test]
fn txn_offset_commit_refuses_unknown_topics_and_partitions() {
    let mut h = Harness::new(transactions(), None);
    let offsets = |partitions: &[i32]| {
        partitions
            .iter()
            .map(|&p| TxnOffsetCommitRequestPartition {
                partition_index: p,
                committed_offset: 5,
                ..TxnOffsetCommitRequestPartition::default()
            })
            .collect()
    };
    let request = Request::TxnOffsetCommit(TxnOffsetCommitRequest {
        transactional_id: "tx".into(),
        group_id: "g".into(),
        producer_id: 1,
        generation_id: -1,
        topics: vec![
            TxnOffsetCommitRequestTopic {
                name: "t".into(),
                partitions: offsets(&[0, 2]),
                ..TxnOffsetCommitRequestTopic::default()
            },
            TxnOffsetCommitRequestTopic {
                name: "missing".into(),
                partitions: offsets(&[0]),
                ..TxnOffsetCommitRequestTopic::default()
            },
        ],
        ..TxnOffsetCommitRequest::default()
    });
    h.send(3, &request);
    let cmds = h.commands();
    let [(listed, Work::Store(Command::ListTopics { only: Some(_) }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    h.complete(
        *listed,
        Outcome::Store(Completion::ListTopics(Ok(vec![topic("t", 2)]))),
    );
    let cmds = h.commands();
    let [(commit, Work::Txn(TxnCall::CommitOffsets { offsets, .. }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    let asked: Vec<(&str, u32)> = offsets
        .iter()
        .map(|o| (o.topic.as_str(), o.partition))
        .collect();
    assert_eq!(asked, [("t", 0)], "only what exists is committed");
    h.complete(*commit, Outcome::Txn(TxnReply::Code(ErrorCode::NONE)));
    let Response::TxnOffsetCommit(r) = h.response(ApiKey::TxnOffsetCommit, 3) else {
        panic!()
    };
    let codes: Vec<(String, i32, i16)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("t".to_owned(), 0, 0),
            ("t".to_owned(), 2, 3),
            ("missing".to_owned(), 0, 3)
        ]
    );
}

fn batched(version: i16) -> (i16, Request) {
    let topics = vec![AddPartitionsToTxnTopic {
        name: "t".into(),
        partitions: vec![0],
        ..AddPartitionsToTxnTopic::default()
    }];
    let request = if version >= 4 {
        AddPartitionsToTxnRequest {
            transactions: vec![AddPartitionsToTxnTransaction {
                transactional_id: "tx".into(),
                producer_id: 1,
                verify_only: true,
                topics,
                ..AddPartitionsToTxnTransaction::default()
            }],
            ..AddPartitionsToTxnRequest::default()
        }
    } else {
        AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: "tx".into(),
            v3_and_below_producer_id: 1,
            v3_and_below_topics: topics,
            ..AddPartitionsToTxnRequest::default()
        }
    };
    (version, Request::AddPartitionsToTxn(request))
}

/// AddPartitionsToTxn v4+ (the batched form brokers send) needs CLUSTER_ACTION, Iggy's
/// `manage_servers`: anyone else gets CLUSTER_AUTHORIZATION_FAILED at the top level and
/// nothing is asked; v3 and below, what clients send, is checked per topic as before.
#[test]
fn the_batched_add_partitions_needs_cluster_action() {
    let config = || {
        let authorizer =
            PermissionAuthorizer::new(Vec::new(), |t: &str| ("kafka".to_owned(), t.to_owned()));
        let mut producer = Permissions::default();
        producer.global.send_messages = true;
        authorizer.set("producer", producer);
        let mut broker = Permissions::default();
        broker.global.manage_servers = true;
        authorizer.set("broker", broker);
        let mut config = transactions();
        config.authorizer = Some(Arc::new(authorizer));
        config
    };
    for (principal, version, refused) in [
        ("producer", 4, true),
        ("producer", 5, true),
        ("broker", 4, false),
        ("producer", 3, false),
    ] {
        let mut h = Harness::new(config(), Some(principal));
        let (version, request) = batched(version);
        h.send(version, &request);
        let cmds = h.commands();
        if !refused {
            assert!(
                matches!(cmds[..], [(_, Work::Store(Command::ListTopics { .. }))]),
                "{principal} v{version}: {cmds:?}"
            );
            continue;
        }
        assert!(cmds.is_empty(), "{principal} v{version}: {cmds:?}");
        let Response::AddPartitionsToTxn(r) = h.response(ApiKey::AddPartitionsToTxn, version)
        else {
            panic!()
        };
        assert_eq!(r.error_code, 31, "{principal} v{version}");
        assert!(r.results_by_transaction.is_empty());
    }
}

/// ListOffsets by timestamp (and for the largest timestamp) under read_committed answers
/// nothing at or past the last stable offset, as Kafka's `lastFetchableOffset` does;
/// read_uncommitted answers what the lookup found.
#[test]
fn list_offsets_by_timestamp_stops_at_the_last_stable_offset_when_committed() {
    // (timestamp asked, offset the lookup finds) → offset answered.
    for (isolation, timestamp, found, answered) in [
        (1, 1_000, 7, -1),
        (1, 1_000, 4, 4),
        (1, -3, 9, -1),
        (0, 1_000, 7, 7),
    ] {
        let mut h = Harness::new(Config::default(), None);
        let request = Request::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            isolation_level: isolation,
            topics: vec![ListOffsetsTopic {
                name: "t".into(),
                partitions: vec![ListOffsetsPartition {
                    timestamp,
                    current_leader_epoch: -1,
                    ..ListOffsetsPartition::default()
                }],
                ..ListOffsetsTopic::default()
            }],
            ..ListOffsetsRequest::default()
        });
        h.send(7, &request);
        let cmds = h.commands();
        let lookup = if timestamp >= 0 {
            Completion::OffsetForTimestamp(Ok(Some((found, timestamp))))
        } else {
            Completion::MaxTimestamp(Ok(Some((found, 2_000))))
        };
        h.complete(cmds[0].0, Outcome::Store(lookup));
        if isolation == 1 {
            let (id, Work::Store(Command::Offsets { .. })) = &cmds[1] else {
                panic!("{cmds:?}")
            };
            h.complete(
                *id,
                Outcome::Store(Completion::Offsets(Ok(PartitionOffsets {
                    log_start: 0,
                    high_watermark: 10,
                    size_bytes: None,
                    last_stable: Some(5),
                }))),
            );
        } else {
            assert_eq!(cmds.len(), 1, "{cmds:?}");
        }
        let Response::ListOffsets(r) = h.response(ApiKey::ListOffsets, 7) else {
            panic!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(
            p.offset, answered,
            "isolation {isolation}, timestamp {timestamp}, found {found}"
        );
        if answered < 0 {
            assert_eq!(p.timestamp, -1);
        }
    }
}
