//! Authorization of consumer groups, API by API (docs/SECURITY.md's table): Kafka's READ on
//! a group is polling some topic, DESCRIBE the same (or, for ListGroups, describing the
//! cluster), DELETE managing topics globally. Scripted connection, no sockets, no backend.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use iggy_kafka_core::authz::{
    PermissionAuthorizer, Permissions, StreamPermissions, TopicPermissions,
};
use iggy_kafka_core::backend::Completion;
use iggy_kafka_core::group::{GroupKind, GroupOverview, GroupReply, GroupState};
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use iggy_kafka_core::protocol::generated::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use iggy_kafka_core::protocol::generated::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use iggy_kafka_core::protocol::generated::delete_groups_request::DeleteGroupsRequest;
use iggy_kafka_core::protocol::generated::describe_groups_request::DescribeGroupsRequest;
use iggy_kafka_core::protocol::generated::find_coordinator_request::FindCoordinatorRequest;
use iggy_kafka_core::protocol::generated::heartbeat_request::HeartbeatRequest;
use iggy_kafka_core::protocol::generated::join_group_request::{
    JoinGroupRequest, JoinGroupRequestProtocol,
};
use iggy_kafka_core::protocol::generated::leave_group_request::{
    LeaveGroupRequest, MemberIdentity,
};
use iggy_kafka_core::protocol::generated::list_groups_request::ListGroupsRequest;
use iggy_kafka_core::protocol::generated::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use iggy_kafka_core::protocol::generated::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup,
};
use iggy_kafka_core::protocol::generated::sync_group_request::SyncGroupRequest;
use iggy_kafka_core::protocol::generated::txn_offset_commit_request::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use iggy_kafka_core::protocol::{ApiKey, Request, Response};
use iggy_kafka_core::work::{Outcome, Work, WorkId};
use iggy_kafka_core::{Config, Connection};

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const TXN_DENIED: i16 = 53;

const READ: i32 = 1 << 3;
const DELETE: i32 = 1 << 6;
const DESCRIBE: i32 = 1 << 8;

struct Harness {
    conn: Connection,
    now: Instant,
}

impl Harness {
    /// A connection of `principal`, where `reader` may read topic `t` (so READ and DESCRIBE
    /// every group), `writer` may only send to the stream's topics (nothing on groups),
    /// `ops` may read the servers (nothing on groups, but ListGroups lists all), `admin`
    /// manages every stream (groups too, deleting them included).
    fn of(principal: &str) -> Self {
        let authorizer =
            PermissionAuthorizer::new(Vec::new(), |t: &str| ("kafka".to_owned(), t.to_owned()));
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
        writer.streams.insert(
            "kafka".into(),
            StreamPermissions {
                send_messages: true,
                ..StreamPermissions::default()
            },
        );
        authorizer.set("writer", writer);
        let mut ops = Permissions::default();
        ops.global.read_servers = true;
        authorizer.set("ops", ops);
        let mut admin = Permissions::default();
        admin.global.manage_streams = true;
        authorizer.set("admin", admin);
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

/// The group-level code of each API's answer.
fn code(r: &Response) -> i16 {
    match r {
        Response::JoinGroup(r) => r.error_code,
        Response::SyncGroup(r) => r.error_code,
        Response::Heartbeat(r) => r.error_code,
        Response::LeaveGroup(r) => r.error_code,
        Response::ConsumerGroupHeartbeat(r) => r.error_code,
        Response::AddOffsetsToTxn(r) => r.error_code,
        Response::OffsetFetch(r) => r.error_code,
        Response::FindCoordinator(r) => r.error_code,
        Response::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        Response::TxnOffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

fn group_requests() -> Vec<(ApiKey, i16, Request)> {
    vec![
        (
            ApiKey::JoinGroup,
            5,
            Request::JoinGroup(JoinGroupRequest {
                group_id: "g".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![JoinGroupRequestProtocol {
                    name: "range".into(),
                    ..JoinGroupRequestProtocol::default()
                }],
                ..JoinGroupRequest::default()
            }),
        ),
        (
            ApiKey::SyncGroup,
            3,
            Request::SyncGroup(SyncGroupRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: "m".into(),
                ..SyncGroupRequest::default()
            }),
        ),
        (
            ApiKey::Heartbeat,
            3,
            Request::Heartbeat(HeartbeatRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: "m".into(),
                ..HeartbeatRequest::default()
            }),
        ),
        (
            ApiKey::LeaveGroup,
            3,
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: "g".into(),
                members: vec![MemberIdentity {
                    member_id: "m".into(),
                    ..MemberIdentity::default()
                }],
                ..LeaveGroupRequest::default()
            }),
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            0,
            Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
                group_id: "g".into(),
                rebalance_timeout_ms: 10_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                topic_partitions: Some(Vec::new()),
                ..ConsumerGroupHeartbeatRequest::default()
            }),
        ),
        (
            ApiKey::OffsetCommit,
            7,
            Request::OffsetCommit(OffsetCommitRequest {
                group_id: "g".into(),
                generation_id_or_member_epoch: 1,
                member_id: "m".into(),
                topics: vec![OffsetCommitRequestTopic {
                    name: "t".into(),
                    partitions: vec![OffsetCommitRequestPartition {
                        committed_offset: 5,
                        ..OffsetCommitRequestPartition::default()
                    }],
                    ..OffsetCommitRequestTopic::default()
                }],
                ..OffsetCommitRequest::default()
            }),
        ),
        (
            ApiKey::TxnOffsetCommit,
            3,
            Request::TxnOffsetCommit(TxnOffsetCommitRequest {
                transactional_id: "tx".into(),
                group_id: "g".into(),
                producer_id: 1,
                generation_id: 1,
                member_id: "m".into(),
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
            ApiKey::OffsetFetch,
            7,
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
                ..OffsetFetchRequest::default()
            }),
        ),
    ]
}

/// Joining, syncing, heartbeating, leaving (classic and KIP-848), committing offsets (with
/// or without a transaction) and fetching them need READ or DESCRIBE on the group: a
/// principal without either is answered GROUP_AUTHORIZATION_FAILED, and nothing reaches
/// the coordinator or the store; one with it is served.
#[test]
fn group_apis_need_read_on_the_group() {
    for (key, version, request) in group_requests() {
        let mut h = Harness::of("writer");
        h.send(version, &request);
        let cmds = h.commands();
        if key == ApiKey::OffsetFetch {
            // The read may go out; the answer is refused whatever it says.
            for (id, _) in cmds {
                h.complete(id, Outcome::Store(Completion::FetchOffsets(Ok(Vec::new()))));
            }
        } else {
            assert!(cmds.is_empty(), "{key:?}: {cmds:?}");
        }
        assert_eq!(code(&h.response(key, version)), GROUP_DENIED, "{key:?}");

        for principal in ["reader", "admin"] {
            let mut h = Harness::of(principal);
            h.send(version, &request);
            let cmds = h.commands();
            if principal == "reader"
                && matches!(key, ApiKey::TxnOffsetCommit | ApiKey::AddOffsetsToTxn)
            {
                // The transactional id is checked first, and reader may send nowhere.
                assert!(cmds.is_empty(), "{key:?}: {cmds:?}");
                assert_eq!(code(&h.response(key, version)), TXN_DENIED, "{key:?}");
                continue;
            }
            assert!(!cmds.is_empty(), "{principal} {key:?} is served");
        }
    }
}

/// A KIP-848 member may subscribe only to topics it may describe (Kafka's
/// `handleConsumerGroupHeartbeat` since 4.0, KAFKA-18813): otherwise
/// TOPIC_AUTHORIZATION_FAILED, before the topics are listed.
#[test]
fn a_consumer_group_heartbeat_needs_describe_on_its_topics() {
    let mut h = Harness::of("reader");
    let request = Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: "g".into(),
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(vec!["t".into(), "secret".into()]),
        topic_partitions: Some(Vec::new()),
        ..ConsumerGroupHeartbeatRequest::default()
    });
    h.send(0, &request);
    assert!(h.commands().is_empty());
    let Response::ConsumerGroupHeartbeat(r) = h.response(ApiKey::ConsumerGroupHeartbeat, 0) else {
        panic!()
    };
    assert_eq!(r.error_code, TOPIC_DENIED);
    let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
    assert!(
        message.contains("secret") && !message.contains(" t,"),
        "{message}"
    );
}

/// A member's regular expression resolves only to topics its principal may describe (as
/// Kafka 4 filters a resolved expression): the coordinator is told which listed topics the
/// principal may not describe.
#[test]
fn a_consumer_group_regex_is_told_the_topics_its_member_may_not_describe() {
    use iggy_kafka_core::backend::{TopicConfig, TopicInfo};
    use iggy_kafka_core::group::GroupCall;
    let mut h = Harness::of("reader");
    let request = Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: "g".into(),
        member_id: "m".into(),
        rebalance_timeout_ms: 10_000,
        subscribed_topic_regex: Some(".*".into()),
        topic_partitions: Some(Vec::new()),
        ..ConsumerGroupHeartbeatRequest::default()
    });
    h.send(1, &request);
    let mut commands = h.commands();
    assert_eq!(commands.len(), 1, "the topics are listed first");
    let (id, _) = commands.remove(0);
    let topic = |name: &str, n: u8| TopicInfo {
        name: name.into(),
        id: iggy_kafka_core::protocol::Uuid([n; 16]),
        partitions: 1,
        config: TopicConfig::default(),
    };
    h.complete(
        id,
        Outcome::Store(Completion::ListTopics(Ok(vec![
            topic("t", 1),
            topic("secret", 2),
        ]))),
    );
    let commands = h.commands();
    let Some((_, Work::Group(GroupCall::ConsumerHeartbeat(hb)))) = commands.first() else {
        panic!("{commands:?}");
    };
    assert_eq!(hb.topics.len(), 2, "every topic, whoever asks");
    assert_eq!(
        hb.hidden.iter().map(String::as_str).collect::<Vec<_>>(),
        ["secret"]
    );
}

/// FindCoordinator for a group needs DESCRIBE on it.
#[test]
fn finding_a_group_coordinator_needs_describe_on_the_group() {
    for (principal, expected) in [("writer", GROUP_DENIED), ("reader", 0)] {
        for version in [3, 4] {
            let mut h = Harness::of(principal);
            let request = Request::FindCoordinator(if version >= 4 {
                FindCoordinatorRequest {
                    coordinator_keys: vec!["g".into()],
                    ..FindCoordinatorRequest::default()
                }
            } else {
                FindCoordinatorRequest {
                    key: "g".into(),
                    ..FindCoordinatorRequest::default()
                }
            });
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

/// OffsetFetch v8+ refuses each group the principal may not describe, on its own.
#[test]
fn offset_fetch_refuses_per_group() {
    let mut h = Harness::of("writer");
    let request = Request::OffsetFetch(OffsetFetchRequest {
        groups: vec![OffsetFetchRequestGroup {
            group_id: "g".into(),
            ..OffsetFetchRequestGroup::default()
        }],
        ..OffsetFetchRequest::default()
    });
    h.send(8, &request);
    for (id, _) in h.commands() {
        h.complete(id, Outcome::Store(Completion::FetchOffsets(Ok(Vec::new()))));
    }
    let Response::OffsetFetch(r) = h.response(ApiKey::OffsetFetch, 8) else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, GROUP_DENIED);
    assert!(r.groups[0].topics.is_empty());
}

/// DescribeGroups and ConsumerGroupDescribe refuse each group the principal may not
/// describe, and report per group the operations it may do.
#[test]
fn describing_groups_needs_describe_on_each() {
    for (principal, expected, ops) in [
        ("writer", GROUP_DENIED, i32::MIN),
        ("ops", GROUP_DENIED, i32::MIN),
        ("reader", 0, READ | DESCRIBE),
        ("admin", 0, READ | DESCRIBE | DELETE),
    ] {
        let mut h = Harness::of(principal);
        h.send(
            5,
            &Request::DescribeGroups(DescribeGroupsRequest {
                groups: vec!["g".into()],
                include_authorized_operations: true,
                ..DescribeGroupsRequest::default()
            }),
        );
        let cmds = h.commands();
        h.complete(cmds[0].0, Outcome::Group(GroupReply::Describe(vec![None])));
        h.complete(
            cmds[1].0,
            Outcome::Store(Completion::ListGroups(Ok(vec!["g".into()]))),
        );
        let Response::DescribeGroups(r) = h.response(ApiKey::DescribeGroups, 5) else {
            panic!()
        };
        assert_eq!(r.groups[0].error_code, expected, "{principal}");
        assert_eq!(r.groups[0].authorized_operations, ops, "{principal}");

        let mut h = Harness::of(principal);
        h.send(
            0,
            &Request::ConsumerGroupDescribe(ConsumerGroupDescribeRequest {
                group_ids: vec!["g".into()],
                include_authorized_operations: true,
                ..ConsumerGroupDescribeRequest::default()
            }),
        );
        let cmds = h.commands();
        h.complete(
            cmds[0].0,
            Outcome::Group(GroupReply::ConsumerDescribe(vec![Err((
                ErrorCode::GROUP_ID_NOT_FOUND,
                "none".into(),
            ))])),
        );
        let Response::ConsumerGroupDescribe(r) = h.response(ApiKey::ConsumerGroupDescribe, 0)
        else {
            panic!()
        };
        let want = if expected == 0 {
            ErrorCode::GROUP_ID_NOT_FOUND.into()
        } else {
            expected
        };
        assert_eq!(r.groups[0].error_code, want, "{principal}");
    }
}

/// ListGroups lists every group to a principal that may describe the cluster, and
/// otherwise only the groups it may describe.
#[test]
fn list_groups_shows_only_described_groups() {
    for (principal, listed) in [("writer", 0), ("ops", 2), ("reader", 2)] {
        let mut h = Harness::of(principal);
        h.send(4, &Request::ListGroups(ListGroupsRequest::default()));
        let cmds = h.commands();
        h.complete(
            cmds[0].0,
            Outcome::Group(GroupReply::List(vec![GroupOverview {
                group: "live".into(),
                protocol_type: "consumer".into(),
                state: GroupState::Stable,
                kind: GroupKind::Classic,
            }])),
        );
        h.complete(
            cmds[1].0,
            Outcome::Store(Completion::ListGroups(Ok(vec!["stored".into()]))),
        );
        let Response::ListGroups(r) = h.response(ApiKey::ListGroups, 4) else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.groups.len(), listed, "{principal}");
    }
}

/// DeleteGroups needs DELETE on the groups: global manage_topics or manage_streams.
#[test]
fn deleting_groups_needs_global_topic_management() {
    for (principal, refused) in [("reader", true), ("admin", false)] {
        let mut h = Harness::of(principal);
        h.send(
            2,
            &Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: vec!["g".into()],
                ..DeleteGroupsRequest::default()
            }),
        );
        let cmds = h.commands();
        assert_eq!(cmds.is_empty(), refused, "{principal}");
        if refused {
            let Response::DeleteGroups(r) = h.response(ApiKey::DeleteGroups, 2) else {
                panic!()
            };
            assert_eq!(r.results[0].error_code, GROUP_DENIED);
        }
    }
}

/// ConsumerGroupDescribe of a group one of whose members subscribes to or is assigned a
/// topic the principal may not describe is TOPIC_AUTHORIZATION_FAILED, without its
/// description (Kafka's KAFKA-18813); a group it may describe wholly shows its members.
#[test]
fn consumer_group_describe_needs_describe_on_the_groups_topics() {
    use iggy_kafka_core::group::{ConsumerGroupDescription, ConsumerMemberDescription};
    use iggy_kafka_core::protocol::Uuid;
    let group = |topic: &str| ConsumerGroupDescription {
        group: "g".into(),
        state: GroupState::Stable,
        epoch: 3,
        assignment_epoch: 3,
        assignor: "uniform".into(),
        members: vec![ConsumerMemberDescription {
            member_id: "m".into(),
            instance_id: None,
            rack_id: None,
            member_epoch: 3,
            client_id: "c".into(),
            client_host: "/10.0.0.1".into(),
            subscribed_topic_names: vec!["t".into()],
            subscribed_topic_regex: None,
            assignment: vec![(Uuid([1; 16]), topic.into(), vec![0])],
            target_assignment: Vec::new(),
        }],
    };
    for (topic, expected, members) in [("secret", TOPIC_DENIED, 0), ("t", 0, 1)] {
        let mut h = Harness::of("reader");
        h.send(
            0,
            &Request::ConsumerGroupDescribe(ConsumerGroupDescribeRequest {
                group_ids: vec!["g".into()],
                ..ConsumerGroupDescribeRequest::default()
            }),
        );
        let cmds = h.commands();
        h.complete(
            cmds[0].0,
            Outcome::Group(GroupReply::ConsumerDescribe(vec![Ok(group(topic))])),
        );
        let Response::ConsumerGroupDescribe(r) = h.response(ApiKey::ConsumerGroupDescribe, 0)
        else {
            panic!()
        };
        assert_eq!(r.groups[0].error_code, expected, "{topic}");
        assert_eq!(r.groups[0].members.len(), members, "{topic}");
    }
}

/// OffsetDelete needs DELETE on the group (Kafka's `handleOffsetDeleteRequest`): refused
/// at the top level with GROUP_AUTHORIZATION_FAILED before anything is asked.
#[test]
fn deleting_offsets_needs_delete_on_the_group() {
    use iggy_kafka_core::protocol::generated::offset_delete_request::{
        OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    for (principal, refused) in [("reader", true), ("admin", false)] {
        let mut h = Harness::of(principal);
        h.send(
            0,
            &Request::OffsetDelete(OffsetDeleteRequest {
                group_id: "g".into(),
                topics: vec![OffsetDeleteRequestTopic {
                    name: "t".into(),
                    partitions: vec![OffsetDeleteRequestPartition::default()],
                }],
            }),
        );
        let cmds = h.commands();
        assert_eq!(cmds.is_empty(), refused, "{principal}");
        if refused {
            let Response::OffsetDelete(r) = h.response(ApiKey::OffsetDelete, 0) else {
                panic!()
            };
            assert_eq!(r.error_code, GROUP_DENIED);
            assert!(r.topics.is_empty());
        }
    }
}
