//! The group APIs over the wire against the real binary, where Kafka's exact answers matter
//! more than what a client library shows: a committed offset is the next offset to read (0
//! included), metadata and leader epoch round-trip, old and new versions of OffsetFetch see
//! the same commits, and stale or unknown members get Kafka's codes.

mod common;

use common::{call, create_topic, Gateway};
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
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use iggy_kafka_core::protocol::generated::sync_group_request::{
    SyncGroupRequest, SyncGroupRequestAssignment,
};
use iggy_kafka_core::protocol::{Request, Response};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const MEMBER_ID_REQUIRED: i16 = 79;
const INVALID_REQUEST: i16 = 42;

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    partitions: Vec<(i32, i64, i32, Option<&str>)>,
    topic: &str,
) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: partitions
                .into_iter()
                .map(
                    |(p, offset, epoch, metadata)| OffsetCommitRequestPartition {
                        partition_index: p,
                        committed_offset: offset,
                        committed_leader_epoch: epoch,
                        committed_metadata: metadata.map(Into::into),
                        ..OffsetCommitRequestPartition::default()
                    },
                )
                .collect(),
            ..OffsetCommitRequestTopic::default()
        }],
        ..OffsetCommitRequest::default()
    })
}

fn commit_codes(r: Response) -> Vec<i16> {
    let Response::OffsetCommit(r) = r else {
        panic!("OffsetCommit")
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

#[test]
fn committed_offsets_round_trip_with_kafkas_meaning() {
    let gw = Gateway::start();
    let mut s = gw.connect();
    let topic = format!("offsets-{}", common::RUNTIME);
    let create = create_topic(&topic, 3);
    assert!(
        matches!(call(&mut s, 7, 1, &create), Response::CreateTopics(r) if r.topics[0].error_code == 0)
    );

    // A group without group management (generation -1) commits: 0 is a real offset.
    let r = call(
        &mut s,
        8,
        2,
        &commit(
            "g1",
            -1,
            "",
            vec![(0, 0, 5, Some("zero")), (1, 42, -1, None), (7, 1, -1, None)],
            &topic,
        ),
    );
    assert_eq!(
        commit_codes(r),
        vec![NONE, NONE, UNKNOWN_TOPIC_OR_PARTITION],
        "partition 7 does not exist"
    );

    // OffsetFetch v8 (several groups at once): offsets, epochs and metadata come back; a
    // partition without a commit reads -1; a group without commits is no error.
    let fetch = Request::OffsetFetch(OffsetFetchRequest {
        groups: vec![
            OffsetFetchRequestGroup {
                group_id: "g1".into(),
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: topic.as_str().into(),
                    partition_indexes: vec![0, 1, 2],
                    ..OffsetFetchRequestTopics::default()
                }]),
                ..OffsetFetchRequestGroup::default()
            },
            OffsetFetchRequestGroup {
                group_id: "nobody".into(),
                topics: None,
                ..OffsetFetchRequestGroup::default()
            },
        ],
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(r) = call(&mut s, 8, 3, &fetch) else {
        panic!("OffsetFetch")
    };
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].error_code, NONE);
    let parts: Vec<(i32, i64, i32, Option<String>)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.metadata.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    assert_eq!(
        parts,
        vec![
            (0, 0, 5, Some("zero".into())),
            (1, 42, -1, Some(String::new())),
            (2, -1, -1, Some(String::new())),
        ]
    );
    assert_eq!(r.groups[1].error_code, NONE);
    assert!(r.groups[1].topics.is_empty());

    // OffsetFetch v1 (one group, named partitions) and v5 (all partitions: topics null).
    let v1 = Request::OffsetFetch(OffsetFetchRequest {
        group_id: "g1".into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.as_str().into(),
            partition_indexes: vec![1],
            ..OffsetFetchRequestTopic::default()
        }]),
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(r) = call(&mut s, 1, 4, &v1) else {
        panic!("OffsetFetch v1")
    };
    assert_eq!(r.topics[0].partitions[0].committed_offset, 42);
    let all = Request::OffsetFetch(OffsetFetchRequest {
        group_id: "g1".into(),
        topics: None,
        ..OffsetFetchRequest::default()
    });
    let Response::OffsetFetch(r) = call(&mut s, 5, 5, &all) else {
        panic!("OffsetFetch v5")
    };
    assert_eq!(r.error_code, NONE);
    let mut got: Vec<(i32, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![(0, 0), (1, 42)]);
    gw.stop();
}

fn join(group: &str, member: &str, session_ms: i32) -> Request {
    Request::JoinGroup(JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 10_000,
        member_id: member.into(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: bytes::Bytes::from_static(b"\0\0\0\0\0\0"),
            ..JoinGroupRequestProtocol::default()
        }],
        ..JoinGroupRequest::default()
    })
}

#[test]
fn membership_errors_are_kafkas() {
    let gw = Gateway::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let mut s = gw.connect();
    let topic = format!("members-{}", common::RUNTIME);
    let create = create_topic(&topic, 1);
    call(&mut s, 7, 1, &create);

    // FindCoordinator v4 (batched keys): the gateway coordinates every group.
    let find = Request::FindCoordinator(FindCoordinatorRequest {
        key_type: 0,
        coordinator_keys: vec!["a".into(), "b".into()],
        ..FindCoordinatorRequest::default()
    });
    let Response::FindCoordinator(r) = call(&mut s, 4, 2, &find) else {
        panic!("FindCoordinator")
    };
    assert_eq!(r.coordinators.len(), 2);
    assert!(r
        .coordinators
        .iter()
        .all(|c| c.error_code == NONE && c.port == i32::from(gw.addr.port())));
    // The gateway coordinates transactions too, on either backend.
    let find = Request::FindCoordinator(FindCoordinatorRequest {
        key_type: 1,
        coordinator_keys: vec!["tx".into()],
        ..FindCoordinatorRequest::default()
    });
    let Response::FindCoordinator(r) = call(&mut s, 4, 2, &find) else {
        panic!("FindCoordinator")
    };
    assert_eq!(
        (r.coordinators[0].error_code, r.coordinators[0].port),
        (NONE, i32::from(gw.addr.port()))
    );
    // Share groups are not served.
    let (key_type, want) = (2, INVALID_REQUEST);
    let find = Request::FindCoordinator(FindCoordinatorRequest {
        key_type,
        coordinator_keys: vec!["tx".into()],
        ..FindCoordinatorRequest::default()
    });
    let Response::FindCoordinator(r) = call(&mut s, 4, 2, &find) else {
        panic!("FindCoordinator")
    };
    assert_eq!(
        (r.coordinators[0].error_code, r.coordinators[0].node_id),
        (want, -1),
        "key type {key_type}"
    );
    let find = Request::FindCoordinator(FindCoordinatorRequest {
        key_type,
        key: "tx".into(),
        ..FindCoordinatorRequest::default()
    });
    let Response::FindCoordinator(r) = call(&mut s, 1, 2, &find) else {
        panic!("FindCoordinator")
    };
    assert_eq!(r.error_code, want, "v1, key type {key_type}");

    let Response::JoinGroup(r) = call(&mut s, 5, 3, &join("g", "", 1000)) else {
        panic!("JoinGroup")
    };
    assert_eq!(r.error_code, INVALID_SESSION_TIMEOUT);
    // v4+: a first join gets a member id and MEMBER_ID_REQUIRED.
    let Response::JoinGroup(r) = call(&mut s, 5, 4, &join("g", "", 10_000)) else {
        panic!("JoinGroup")
    };
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    let member = r.member_id.to_string();
    assert!(member.starts_with("it-"), "{member}");
    let Response::JoinGroup(r) = call(&mut s, 5, 5, &join("g", &member, 10_000)) else {
        panic!("JoinGroup")
    };
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader.to_string(), member);
    assert_eq!(r.members.len(), 1);
    let sync = Request::SyncGroup(SyncGroupRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: member.as_str().into(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: member.as_str().into(),
            assignment: bytes::Bytes::from_static(b"mine"),
            ..SyncGroupRequestAssignment::default()
        }],
        ..SyncGroupRequest::default()
    });
    let Response::SyncGroup(r) = call(&mut s, 3, 6, &sync) else {
        panic!("SyncGroup")
    };
    assert_eq!((r.error_code, r.assignment.as_ref()), (NONE, &b"mine"[..]));

    let heartbeat = |generation: i32, member: &str| {
        Request::Heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            ..HeartbeatRequest::default()
        })
    };
    for (generation, who, want) in [
        (1, member.as_str(), NONE),
        (0, member.as_str(), ILLEGAL_GENERATION),
        (1, "stranger", UNKNOWN_MEMBER_ID),
    ] {
        let Response::Heartbeat(r) = call(&mut s, 4, 7, &heartbeat(generation, who)) else {
            panic!("Heartbeat")
        };
        assert_eq!(
            r.error_code, want,
            "heartbeat of {who} in generation {generation}"
        );
    }
    // ListGroups v4 filters by state (case does not matter); DescribeGroups of an unknown
    // group says Dead without an error, as Kafka does.
    let list = |states: &[&str]| {
        Request::ListGroups(ListGroupsRequest {
            states_filter: states.iter().map(|s| (*s).into()).collect(),
            ..ListGroupsRequest::default()
        })
    };
    let Response::ListGroups(r) = call(&mut s, 4, 9, &list(&["stable"])) else {
        panic!("ListGroups")
    };
    let listed: Vec<(String, String)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(listed, vec![("g".to_owned(), "Stable".to_owned())]);
    let Response::ListGroups(r) = call(&mut s, 4, 10, &list(&["Empty"])) else {
        panic!("ListGroups")
    };
    assert!(r.groups.is_empty(), "{:?}", r.groups);
    let describe = Request::DescribeGroups(DescribeGroupsRequest {
        groups: vec!["g".into(), "nope".into()],
        include_authorized_operations: false,
        ..DescribeGroupsRequest::default()
    });
    let Response::DescribeGroups(r) = call(&mut s, 5, 11, &describe) else {
        panic!("DescribeGroups")
    };
    assert_eq!(r.groups[0].group_state.to_string(), "Stable");
    assert_eq!(r.groups[0].protocol_data.to_string(), "range");
    assert_eq!(r.groups[0].members[0].member_assignment.as_ref(), b"mine");
    assert_eq!(r.groups[0].members[0].client_id.to_string(), "it");
    assert_eq!(r.groups[0].members[0].client_host.to_string(), "/127.0.0.1");
    assert_eq!(
        (r.groups[1].error_code, r.groups[1].group_state.to_string()),
        (NONE, "Dead".to_owned())
    );

    // Commits: the member in its generation; a stale generation; a stranger; a commit
    // without group management while the group has members.
    for (generation, who, want) in [
        (1, member.as_str(), NONE),
        (0, member.as_str(), ILLEGAL_GENERATION),
        (1, "stranger", UNKNOWN_MEMBER_ID),
        (-1, "", UNKNOWN_MEMBER_ID),
    ] {
        let r = call(
            &mut s,
            7,
            8,
            &commit("g", generation, who, vec![(0, 3, -1, None)], &topic),
        );
        assert_eq!(
            commit_codes(r),
            vec![want],
            "commit of {who:?} in generation {generation}"
        );
    }

    // Once its last member leaves, the group is Empty and keeps its protocol type, as in
    // Kafka; only the protocol chosen for the generation goes.
    let leave = Request::LeaveGroup(LeaveGroupRequest {
        group_id: "g".into(),
        members: vec![MemberIdentity {
            member_id: member.as_str().into(),
            ..MemberIdentity::default()
        }],
        ..LeaveGroupRequest::default()
    });
    let Response::LeaveGroup(r) = call(&mut s, 3, 12, &leave) else {
        panic!("LeaveGroup")
    };
    assert_eq!(r.error_code, NONE);
    let Response::ListGroups(r) = call(&mut s, 4, 13, &list(&[])) else {
        panic!("ListGroups")
    };
    let listed: Vec<(String, String, String)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect();
    assert!(
        listed.contains(&("g".to_owned(), "consumer".to_owned(), "Empty".to_owned())),
        "{listed:?}"
    );
    let Response::DescribeGroups(r) = call(&mut s, 5, 14, &describe) else {
        panic!("DescribeGroups")
    };
    assert_eq!(r.groups[0].group_state.to_string(), "Empty");
    assert_eq!(r.groups[0].protocol_type.to_string(), "consumer");
    assert_eq!(r.groups[0].protocol_data.to_string(), "");
    gw.stop();
}

fn consumer_heartbeat(
    group: &str,
    member: &str,
    epoch: i32,
    names: Option<Vec<&str>>,
    regex: Option<&str>,
    owned: Option<Vec<(iggy_kafka_core::protocol::Uuid, Vec<i32>)>>,
) -> Request {
    use iggy_kafka_core::protocol::generated::consumer_group_heartbeat_request::{
        ConsumerGroupHeartbeatRequest, TopicPartitions,
    };
    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
        subscribed_topic_names: names.map(|n| n.into_iter().map(Into::into).collect()),
        subscribed_topic_regex: regex.map(Into::into),
        topic_partitions: owned.map(|o| {
            o.into_iter()
                .map(|(topic_id, partitions)| TopicPartitions {
                    topic_id,
                    partitions,
                    ..TopicPartitions::default()
                })
                .collect()
        }),
        ..ConsumerGroupHeartbeatRequest::default()
    })
}

/// The consumer protocol (KIP-848) on the wire, every version: a v0 member is given its id,
/// a v1 member names its own and subscribes by regular expression; ConsumerGroupDescribe,
/// ListGroups' type filter, OffsetCommit v9 and OffsetFetch v9 member epochs, a classic
/// JoinGroup refused while the group has members, and a leave that empties the group.
#[test]
fn consumer_protocol_on_the_wire() {
    use iggy_kafka_core::protocol::generated::consumer_group_describe_request::ConsumerGroupDescribeRequest;
    let gw = Gateway::start();
    let mut s = gw.connect();
    let topic = format!("kip848-{}", common::RUNTIME);
    let create = create_topic(&topic, 3);
    let Response::CreateTopics(created) = call(&mut s, 7, 1, &create) else {
        panic!("CreateTopics")
    };
    let topic_id = created.topics[0].topic_id;
    let group = format!("cg-{}", common::RUNTIME);

    // v0: the coordinator chooses the member id; the only member gets every partition.
    let hb = consumer_heartbeat(
        &group,
        "",
        0,
        Some(vec![topic.as_str()]),
        None,
        Some(vec![]),
    );
    let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 0, 2, &hb) else {
        panic!("ConsumerGroupHeartbeat v0")
    };
    assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
    let a = r.member_id.expect("a member id").to_string();
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    let assignment = r.assignment.expect("an assignment");
    assert_eq!(assignment.topic_partitions[0].topic_id, topic_id);
    assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1, 2]);

    // v1: a member names its own id, subscribes by regular expression, and waits for what a
    // still owns.
    let b = "member-b-of-v1";
    let re = format!("kip848-.*{}", common::RUNTIME);
    let second = consumer_heartbeat(&group, b, 0, None, Some(&re), Some(vec![]));
    let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 1, 3, &second) else {
        panic!("ConsumerGroupHeartbeat v1")
    };
    assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
    assert_eq!(r.member_epoch, 2);
    assert!(r
        .assignment
        .expect("full request")
        .topic_partitions
        .is_empty());

    // a is told to revoke; once it reports it did, b gets what a released.
    let beat = consumer_heartbeat(&group, &a, 1, None, None, None);
    let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 1, 4, &beat) else {
        panic!()
    };
    assert_eq!(r.member_epoch, 1, "revocation first");
    let kept = r.assignment.expect("a smaller assignment").topic_partitions[0]
        .partitions
        .clone();
    assert_eq!(kept.len(), 2);
    let ack = consumer_heartbeat(&group, &a, 1, None, None, Some(vec![(topic_id, kept)]));
    let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 1, 5, &ack) else {
        panic!()
    };
    assert_eq!(r.member_epoch, 2);
    let beat = consumer_heartbeat(&group, b, 2, None, None, None);
    let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 1, 6, &beat) else {
        panic!()
    };
    assert_eq!(
        r.assignment.expect("b's partition").topic_partitions[0]
            .partitions
            .len(),
        1
    );

    // ConsumerGroupDescribe.
    let describe = Request::ConsumerGroupDescribe(ConsumerGroupDescribeRequest {
        group_ids: vec![group.as_str().into(), "no-such-group".into()],
        include_authorized_operations: true,
        ..ConsumerGroupDescribeRequest::default()
    });
    let Response::ConsumerGroupDescribe(d) = call(&mut s, 0, 7, &describe) else {
        panic!("ConsumerGroupDescribe")
    };
    assert_eq!(d.groups[0].error_code, NONE);
    assert_eq!(d.groups[0].group_state.to_string(), "Stable");
    assert_eq!(d.groups[0].group_epoch, 2);
    assert_eq!(d.groups[0].assignor_name.to_string(), "uniform");
    assert_eq!(d.groups[0].members.len(), 2);
    assert_eq!(d.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");

    // ListGroups v5 filters by type.
    for (types, listed) in [(vec!["consumer"], true), (vec!["classic"], false)] {
        let list = Request::ListGroups(ListGroupsRequest {
            types_filter: types.into_iter().map(Into::into).collect(),
            ..ListGroupsRequest::default()
        });
        let Response::ListGroups(l) = call(&mut s, 5, 8, &list) else {
            panic!("ListGroups")
        };
        let found = l.groups.iter().find(|g| g.group_id.to_string() == group);
        assert_eq!(found.is_some(), listed);
        if let Some(g) = found {
            assert_eq!(g.group_type.to_string(), "consumer");
            assert_eq!(g.protocol_type.to_string(), "consumer");
        }
    }

    // OffsetCommit v9 and OffsetFetch v9 check the member epoch.
    let r = call(
        &mut s,
        9,
        9,
        &commit(&group, 1, &a, vec![(0, 5, -1, None)], &topic),
    );
    assert_eq!(commit_codes(r), vec![113], "STALE_MEMBER_EPOCH");
    let r = call(
        &mut s,
        9,
        10,
        &commit(&group, 2, &a, vec![(0, 5, -1, None)], &topic),
    );
    assert_eq!(commit_codes(r), vec![NONE]);
    for (epoch, code) in [(1, 113), (2, NONE)] {
        let fetch = Request::OffsetFetch(OffsetFetchRequest {
            groups: vec![OffsetFetchRequestGroup {
                group_id: group.as_str().into(),
                member_id: Some(a.as_str().into()),
                member_epoch: epoch,
                topics: None,
                ..OffsetFetchRequestGroup::default()
            }],
            ..OffsetFetchRequest::default()
        });
        let Response::OffsetFetch(r) = call(&mut s, 9, 11, &fetch) else {
            panic!("OffsetFetch")
        };
        assert_eq!(r.groups[0].error_code, code);
    }

    // A classic member is refused while the group has members.
    let Response::JoinGroup(j) = call(&mut s, 5, 12, &join(&group, "", 10_000)) else {
        panic!("JoinGroup")
    };
    assert_eq!(j.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");

    // Both leave: the group is empty, its offsets kept.
    for m in [a.as_str(), b] {
        let leave = consumer_heartbeat(&group, m, -1, None, None, None);
        let Response::ConsumerGroupHeartbeat(r) = call(&mut s, 1, 13, &leave) else {
            panic!()
        };
        assert_eq!((r.error_code, r.member_epoch), (NONE, -1));
    }
    let Response::ConsumerGroupDescribe(d) = call(&mut s, 0, 14, &describe) else {
        panic!()
    };
    assert_eq!(d.groups[0].group_state.to_string(), "Empty");
    gw.stop();
}
