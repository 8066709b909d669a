//! The consumer group APIs: JoinGroup (11), SyncGroup (14), Heartbeat (12), LeaveGroup (13),
//! OffsetCommit (8), OffsetFetch (9), ListGroups (16), DescribeGroups (15), DeleteGroups (42)
//! and OffsetDelete (47). Membership is the coordinator's ([`crate::group`]); committed
//! offsets are the backend's.

use std::collections::{BTreeMap, HashSet};

use super::{kstr, partition_index, single, Ctx, Step, Task};
use crate::backend::{Command, CommittedOffset, Completion, GroupOffset, TopicRef};
use crate::error_code::ErrorCode;
use crate::group::{
    Deletion, GroupCall, GroupDescription, GroupReply, GroupState, JoinArgs, MemberRef,
    OffsetDeletion, SyncArgs,
};
use crate::protocol::generated::delete_groups_request::DeleteGroupsRequest;
use crate::protocol::generated::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use crate::protocol::generated::describe_groups_request::DescribeGroupsRequest;
use crate::protocol::generated::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use crate::protocol::generated::heartbeat_request::HeartbeatRequest;
use crate::protocol::generated::heartbeat_response::HeartbeatResponse;
use crate::protocol::generated::join_group_request::JoinGroupRequest;
use crate::protocol::generated::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use crate::protocol::generated::leave_group_request::LeaveGroupRequest;
use crate::protocol::generated::leave_group_response::{LeaveGroupResponse, MemberResponse};
use crate::protocol::generated::list_groups_request::ListGroupsRequest;
use crate::protocol::generated::list_groups_response::{ListGroupsResponse, ListedGroup};
use crate::protocol::generated::offset_commit_request::OffsetCommitRequest;
use crate::protocol::generated::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use crate::protocol::generated::offset_delete_request::OffsetDeleteRequest;
use crate::protocol::generated::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use crate::protocol::generated::offset_fetch_request::OffsetFetchRequest;
use crate::protocol::generated::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use crate::protocol::generated::sync_group_request::SyncGroupRequest;
use crate::protocol::generated::sync_group_response::SyncGroupResponse;
use crate::protocol::{KStr, Response};
use crate::work::{Outcome, Work};

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

/// Operations on a group an unrestricted client may do (READ, DELETE, DESCRIBE).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn opt(s: Option<&KStr>) -> Option<String> {
    s.map(|s| s.to_string())
}

fn group_reply(results: Vec<Outcome>) -> Option<GroupReply> {
    match single(results) {
        Some(Outcome::Group(r)) => Some(r),
        _ => None,
    }
}

// --- JoinGroup ---

#[derive(Debug)]
pub(crate) struct JoinGroupTask {
    req: Option<JoinGroupRequest>,
}

impl JoinGroupTask {
    pub(crate) fn new(req: JoinGroupRequest) -> Self {
        Self { req: Some(req) }
    }
}

fn join_response(version: i16, code: ErrorCode, r: Option<crate::group::JoinResult>) -> Step {
    let r = r.unwrap_or_else(|| crate::group::JoinResult {
        error: code,
        generation: -1,
        ..Default::default()
    });
    let protocol_name = match (r.protocol_name, version >= 7) {
        (Some(n), _) => Some(kstr(&n)),
        (None, true) => None,
        (None, false) => Some(kstr("")),
    };
    Step::Respond(Response::JoinGroup(JoinGroupResponse {
        error_code: r.error.into(),
        generation_id: r.generation,
        protocol_type: if version >= 7 {
            r.protocol_type.as_deref().map(kstr)
        } else {
            None
        },
        protocol_name,
        leader: kstr(&r.leader),
        skip_assignment: version >= 9 && r.skip_assignment,
        member_id: kstr(&r.member_id),
        members: r
            .members
            .into_iter()
            .map(|m| JoinGroupResponseMember {
                member_id: kstr(&m.member_id),
                group_instance_id: if version >= 5 {
                    m.instance_id.as_deref().map(kstr)
                } else {
                    None
                },
                metadata: m.metadata,
                ..JoinGroupResponseMember::default()
            })
            .collect(),
        ..JoinGroupResponse::default()
    }))
}

impl Task for JoinGroupTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(req) = self.req.take() {
            let rebalance_timeout_ms = if ctx.version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            };
            return Step::Run(vec![Work::Group(GroupCall::Join(JoinArgs {
                group: req.group_id.to_string(),
                member_id: req.member_id.to_string(),
                instance_id: opt(req.group_instance_id.as_ref()),
                client_id: ctx.client_id.unwrap_or_default().to_owned(),
                client_host: ctx.client_host.to_owned(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.to_string(), p.metadata))
                    .collect(),
                require_known_member_id: ctx.version >= 4,
            }))]);
        }
        match group_reply(results) {
            Some(GroupReply::Join(r)) => join_response(ctx.version, r.error, Some(r)),
            _ => join_response(ctx.version, ErrorCode::UNKNOWN_SERVER_ERROR, None),
        }
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        join_response(ctx.version, ErrorCode::REBALANCE_IN_PROGRESS, None)
    }
}

// --- SyncGroup ---

#[derive(Debug)]
pub(crate) struct SyncGroupTask {
    req: Option<SyncGroupRequest>,
}

impl SyncGroupTask {
    pub(crate) fn new(req: SyncGroupRequest) -> Self {
        Self { req: Some(req) }
    }
}

fn sync_response(version: i16, r: crate::group::SyncResult) -> Step {
    let v5 = version >= 5;
    Step::Respond(Response::SyncGroup(SyncGroupResponse {
        error_code: r.error.into(),
        protocol_type: if v5 {
            r.protocol_type.as_deref().map(kstr)
        } else {
            None
        },
        protocol_name: if v5 {
            r.protocol_name.as_deref().map(kstr)
        } else {
            None
        },
        assignment: r.assignment,
        ..SyncGroupResponse::default()
    }))
}

fn sync_error(version: i16, code: ErrorCode) -> Step {
    sync_response(
        version,
        crate::group::SyncResult {
            error: code,
            ..Default::default()
        },
    )
}

impl Task for SyncGroupTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(req) = self.req.take() {
            return Step::Run(vec![Work::Group(GroupCall::Sync(SyncArgs {
                member: MemberRef {
                    group: req.group_id.to_string(),
                    member_id: req.member_id.to_string(),
                    instance_id: opt(req.group_instance_id.as_ref()),
                    generation: req.generation_id,
                },
                protocol_type: opt(req.protocol_type.as_ref()),
                protocol_name: opt(req.protocol_name.as_ref()),
                assignments: req
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), a.assignment))
                    .collect(),
            }))]);
        }
        match group_reply(results) {
            Some(GroupReply::Sync(r)) => sync_response(ctx.version, r),
            _ => sync_error(ctx.version, ErrorCode::UNKNOWN_SERVER_ERROR),
        }
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        sync_error(ctx.version, ErrorCode::REBALANCE_IN_PROGRESS)
    }
}

// --- Heartbeat ---

#[derive(Debug)]
pub(crate) struct HeartbeatTask {
    req: Option<HeartbeatRequest>,
}

impl HeartbeatTask {
    pub(crate) fn new(req: HeartbeatRequest) -> Self {
        Self { req: Some(req) }
    }
}

fn heartbeat_response(code: ErrorCode) -> Step {
    Step::Respond(Response::Heartbeat(HeartbeatResponse {
        error_code: code.into(),
        ..HeartbeatResponse::default()
    }))
}

impl Task for HeartbeatTask {
    fn step(&mut self, _ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(req) = self.req.take() {
            return Step::Run(vec![Work::Group(GroupCall::Heartbeat(MemberRef {
                group: req.group_id.to_string(),
                member_id: req.member_id.to_string(),
                instance_id: opt(req.group_instance_id.as_ref()),
                generation: req.generation_id,
            }))]);
        }
        match group_reply(results) {
            Some(GroupReply::Heartbeat(code)) => heartbeat_response(code),
            _ => heartbeat_response(ErrorCode::UNKNOWN_SERVER_ERROR),
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        heartbeat_response(ErrorCode::REQUEST_TIMED_OUT)
    }
}

// --- LeaveGroup ---

#[derive(Debug)]
pub(crate) struct LeaveGroupTask {
    req: LeaveGroupRequest,
    members: Vec<(String, Option<String>)>,
    started: bool,
}

impl LeaveGroupTask {
    pub(crate) fn new(req: LeaveGroupRequest) -> Self {
        Self {
            req,
            members: Vec::new(),
            started: false,
        }
    }

    fn respond(&self, version: i16, result: Result<Vec<ErrorCode>, ErrorCode>) -> Step {
        let (top, codes) = match result {
            Ok(codes) => (ErrorCode::NONE, codes),
            Err(code) => (code, Vec::new()),
        };
        let mut response = LeaveGroupResponse {
            error_code: top.into(),
            ..LeaveGroupResponse::default()
        };
        if version >= 3 {
            response.members = self
                .members
                .iter()
                .zip(codes)
                .map(|((id, instance), code)| MemberResponse {
                    member_id: kstr(id),
                    group_instance_id: instance.as_deref().map(kstr),
                    error_code: code.into(),
                    ..MemberResponse::default()
                })
                .collect();
        } else if let Some(code) = codes.first() {
            // One member, whose error is the request's.
            response.error_code = (*code).into();
        }
        Step::Respond(Response::LeaveGroup(response))
    }
}

impl Task for LeaveGroupTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.started, true) {
            self.members = if ctx.version >= 3 {
                self.req
                    .members
                    .iter()
                    .map(|m| (m.member_id.to_string(), opt(m.group_instance_id.as_ref())))
                    .collect()
            } else {
                vec![(self.req.member_id.to_string(), None)]
            };
            return Step::Run(vec![Work::Group(GroupCall::Leave {
                group: self.req.group_id.to_string(),
                members: self.members.clone(),
            })]);
        }
        match group_reply(results) {
            Some(GroupReply::Leave(r)) => self.respond(ctx.version, r),
            _ => self.respond(ctx.version, Err(ErrorCode::UNKNOWN_SERVER_ERROR)),
        }
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        self.respond(ctx.version, Err(ErrorCode::REQUEST_TIMED_OUT))
    }
}

// --- OffsetCommit ---

#[derive(Debug)]
pub(crate) struct OffsetCommitTask {
    req: OffsetCommitRequest,
    stage: u8,
    /// Per (topic, partition) of the request: its code, once known.
    codes: Vec<Vec<Option<ErrorCode>>>,
    /// Where each committed offset's result goes.
    sent: Vec<(usize, usize)>,
}

impl OffsetCommitTask {
    pub(crate) fn new(req: OffsetCommitRequest) -> Self {
        let codes = req
            .topics
            .iter()
            .map(|t| vec![None; t.partitions.len()])
            .collect();
        Self {
            req,
            stage: 0,
            codes,
            sent: Vec::new(),
        }
    }

    fn respond(&self, fill: ErrorCode) -> Step {
        Step::Respond(Response::OffsetCommit(OffsetCommitResponse {
            topics: self
                .req
                .topics
                .iter()
                .zip(&self.codes)
                .map(|(t, codes)| OffsetCommitResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .zip(codes)
                        .map(|(p, c)| OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: c.unwrap_or(fill).into(),
                            ..OffsetCommitResponsePartition::default()
                        })
                        .collect(),
                    ..OffsetCommitResponseTopic::default()
                })
                .collect(),
            ..OffsetCommitResponse::default()
        }))
    }
}

impl Task for OffsetCommitTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        match self.stage {
            0 => {
                self.stage = 1;
                let (member_id, generation) = if ctx.version >= 1 {
                    (
                        self.req.member_id.to_string(),
                        self.req.generation_id_or_member_epoch,
                    )
                } else {
                    (String::new(), -1)
                };
                Step::Run(vec![Work::Group(GroupCall::Commit(MemberRef {
                    group: self.req.group_id.to_string(),
                    member_id,
                    instance_id: opt(self.req.group_instance_id.as_ref()),
                    generation,
                }))])
            }
            1 => {
                let code = match group_reply(results) {
                    Some(GroupReply::Commit(code)) => code,
                    _ => ErrorCode::UNKNOWN_SERVER_ERROR,
                };
                if code != ErrorCode::NONE {
                    return self.respond(code);
                }
                self.stage = 2;
                let mut offsets = Vec::new();
                for (ti, t) in self.req.topics.iter().enumerate() {
                    for (pi, p) in t.partitions.iter().enumerate() {
                        let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                        let Some(partition) = partition_index(p.partition_index) else {
                            self.codes[ti][pi] = Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
                            continue;
                        };
                        if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA) {
                            self.codes[ti][pi] = Some(ErrorCode::OFFSET_METADATA_TOO_LARGE);
                            continue;
                        }
                        self.sent.push((ti, pi));
                        offsets.push(GroupOffset {
                            topic: t.name.to_string(),
                            partition,
                            committed: CommittedOffset {
                                offset: p.committed_offset,
                                leader_epoch: if ctx.version >= 6 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata,
                            },
                        });
                    }
                }
                if offsets.is_empty() {
                    return self.respond(ErrorCode::NONE);
                }
                Step::Run(vec![Work::Store(Command::CommitOffsets {
                    group: self.req.group_id.to_string(),
                    offsets,
                })])
            }
            _ => {
                match single(results) {
                    Some(Outcome::Store(Completion::CommitOffsets(rs))) => {
                        for ((ti, pi), r) in self.sent.iter().zip(rs) {
                            self.codes[*ti][*pi] =
                                Some(r.err().map_or(ErrorCode::NONE, |e| e.error_code()));
                        }
                    }
                    _ => return self.respond(ErrorCode::UNKNOWN_SERVER_ERROR),
                }
                self.respond(ErrorCode::UNKNOWN_SERVER_ERROR)
            }
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(ErrorCode::REQUEST_TIMED_OUT)
    }
}

// --- OffsetFetch ---

/// One group's part of an OffsetFetch.
#[derive(Debug)]
struct FetchGroup {
    group: String,
    /// The partitions asked for, or `None` for all committed ones.
    topics: Option<Vec<(KStr, Vec<i32>)>>,
}

#[derive(Debug)]
pub(crate) struct OffsetFetchTask {
    req: Option<OffsetFetchRequest>,
    groups: Vec<FetchGroup>,
}

impl OffsetFetchTask {
    pub(crate) fn new(req: OffsetFetchRequest) -> Self {
        Self {
            req: Some(req),
            groups: Vec::new(),
        }
    }
}

/// A partition's answer: (index, offset, epoch, metadata, code).
type FetchedPartition = (i32, i64, i32, Option<String>, ErrorCode);

/// One group's answer: its topics and their partitions, or a group-level error.
type FetchedGroup = Result<Vec<(String, Vec<FetchedPartition>)>, ErrorCode>;

fn fetched(want: &FetchGroup, result: Option<Outcome>) -> FetchedGroup {
    let found = match result {
        Some(Outcome::Store(Completion::FetchOffsets(Ok(found)))) => found,
        Some(Outcome::Store(Completion::FetchOffsets(Err(e)))) => return Err(e.error_code()),
        _ => return Err(ErrorCode::UNKNOWN_SERVER_ERROR),
    };
    let mut by_key: BTreeMap<(String, u32), CommittedOffset> = found
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.committed))
        .collect();
    let entry = |p: i32, c: Option<CommittedOffset>| -> FetchedPartition {
        match c {
            Some(c) => (
                p,
                c.offset,
                c.leader_epoch,
                Some(c.metadata.unwrap_or_default()),
                ErrorCode::NONE,
            ),
            None => (p, -1, -1, Some(String::new()), ErrorCode::NONE),
        }
    };
    Ok(match &want.topics {
        Some(topics) => topics
            .iter()
            .map(|(name, parts)| {
                let name = name.to_string();
                let parts = parts
                    .iter()
                    .map(|&p| {
                        let c = partition_index(p).and_then(|i| by_key.remove(&(name.clone(), i)));
                        entry(p, c)
                    })
                    .collect();
                (name, parts)
            })
            .collect(),
        None => {
            let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
            for ((topic, p), c) in by_key {
                let e = entry(i32::try_from(p).unwrap_or(i32::MAX), Some(c));
                match out.last_mut() {
                    Some((t, parts)) if *t == topic => parts.push(e),
                    _ => out.push((topic, vec![e])),
                }
            }
            out
        }
    })
}

impl Task for OffsetFetchTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let v = ctx.version;
        if let Some(req) = self.req.take() {
            self.groups = if v >= 8 {
                req.groups
                    .into_iter()
                    .map(|g| FetchGroup {
                        group: g.group_id.to_string(),
                        topics: g.topics.map(|ts| {
                            ts.into_iter()
                                .map(|t| (t.name, t.partition_indexes))
                                .collect()
                        }),
                    })
                    .collect()
            } else {
                vec![FetchGroup {
                    group: req.group_id.to_string(),
                    topics: req.topics.map(|ts| {
                        ts.into_iter()
                            .map(|t| (t.name, t.partition_indexes))
                            .collect()
                    }),
                }]
            };
            let commands: Vec<Work> = self
                .groups
                .iter()
                .map(|g| {
                    Work::Store(Command::FetchOffsets {
                        group: g.group.clone(),
                        only: g.topics.as_ref().map(|ts| {
                            ts.iter()
                                .flat_map(|(t, ps)| {
                                    ps.iter()
                                        .filter_map(|&p| Some((t.to_string(), partition_index(p)?)))
                                })
                                .collect()
                        }),
                    })
                })
                .collect();
            return Step::Run(commands);
        }
        let mut results: Vec<Option<Outcome>> = results.into_iter().map(Some).collect();
        results.resize(self.groups.len(), None);
        let answers: Vec<_> = self
            .groups
            .iter()
            .zip(results)
            .map(|(g, r)| fetched(g, r))
            .collect();
        self.respond(v, answers)
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        let answers = self
            .groups
            .iter()
            .map(|_| Err(ErrorCode::REQUEST_TIMED_OUT))
            .collect();
        self.respond(ctx.version, answers)
    }
}

impl OffsetFetchTask {
    fn respond(&self, v: i16, answers: Vec<FetchedGroup>) -> Step {
        if v >= 8 {
            let groups = self
                .groups
                .iter()
                .zip(answers)
                .map(|(g, a)| {
                    let (code, topics) = match a {
                        Ok(t) => (ErrorCode::NONE, t),
                        Err(c) => (c, Vec::new()),
                    };
                    OffsetFetchResponseGroup {
                        group_id: kstr(&g.group),
                        error_code: code.into(),
                        topics: topics
                            .into_iter()
                            .map(|(name, parts)| OffsetFetchResponseTopics {
                                name: kstr(&name),
                                partitions: parts
                                    .into_iter()
                                    .map(|(p, offset, epoch, metadata, code)| {
                                        OffsetFetchResponsePartitions {
                                            partition_index: p,
                                            committed_offset: offset,
                                            committed_leader_epoch: epoch,
                                            metadata: metadata.as_deref().map(kstr),
                                            error_code: code.into(),
                                            ..OffsetFetchResponsePartitions::default()
                                        }
                                    })
                                    .collect(),
                                ..OffsetFetchResponseTopics::default()
                            })
                            .collect(),
                        ..OffsetFetchResponseGroup::default()
                    }
                })
                .collect();
            return Step::Respond(Response::OffsetFetch(OffsetFetchResponse {
                groups,
                ..OffsetFetchResponse::default()
            }));
        }
        let answer = answers
            .into_iter()
            .next()
            .unwrap_or(Err(ErrorCode::UNKNOWN_SERVER_ERROR));
        let (code, topics) = match answer {
            Ok(t) => (ErrorCode::NONE, t),
            Err(c) => {
                // Before v2 the error can only go on each partition asked for.
                let topics =
                    self.groups
                        .first()
                        .and_then(|g| g.topics.as_ref())
                        .map_or(Vec::new(), |ts| {
                            ts.iter()
                                .map(|(t, ps)| {
                                    (
                                        t.to_string(),
                                        ps.iter()
                                            .map(|&p| (p, -1, -1, Some(String::new()), c))
                                            .collect(),
                                    )
                                })
                                .collect()
                        });
                (c, if v < 2 { topics } else { Vec::new() })
            }
        };
        Step::Respond(Response::OffsetFetch(OffsetFetchResponse {
            error_code: if v >= 2 { code.into() } else { 0 },
            topics: topics
                .into_iter()
                .map(|(name, parts)| OffsetFetchResponseTopic {
                    name: kstr(&name),
                    partitions: parts
                        .into_iter()
                        .map(
                            |(p, offset, epoch, metadata, code)| OffsetFetchResponsePartition {
                                partition_index: p,
                                committed_offset: offset,
                                committed_leader_epoch: if v >= 5 { epoch } else { -1 },
                                metadata: metadata.as_deref().map(kstr),
                                error_code: code.into(),
                                ..OffsetFetchResponsePartition::default()
                            },
                        )
                        .collect(),
                    ..OffsetFetchResponseTopic::default()
                })
                .collect(),
            ..OffsetFetchResponse::default()
        }))
    }
}

// --- ListGroups ---

#[derive(Debug)]
pub(crate) struct ListGroupsTask {
    req: ListGroupsRequest,
    started: bool,
}

impl ListGroupsTask {
    pub(crate) fn new(req: ListGroupsRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }
}

impl Task for ListGroupsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let v = ctx.version;
        if !std::mem::replace(&mut self.started, true) {
            return Step::Run(vec![
                Work::Group(GroupCall::List),
                Work::Store(Command::ListGroups),
            ]);
        }
        let mut it = results.into_iter();
        let (Some(Outcome::Group(GroupReply::List(mut groups))), Some(stored)) =
            (it.next(), it.next())
        else {
            return list_error(ErrorCode::UNKNOWN_SERVER_ERROR);
        };
        let stored = match stored {
            Outcome::Store(Completion::ListGroups(Ok(names))) => names,
            Outcome::Store(Completion::ListGroups(Err(e))) => return list_error(e.error_code()),
            _ => return list_error(ErrorCode::UNKNOWN_SERVER_ERROR),
        };
        // Groups known only by their committed offsets are empty groups, as in Kafka.
        let known: HashSet<String> = groups.iter().map(|g| g.group.clone()).collect();
        for name in stored {
            if !known.contains(&name) {
                groups.push(crate::group::GroupOverview {
                    group: name,
                    protocol_type: String::new(),
                    state: GroupState::Empty,
                });
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let states: Vec<String> = if v >= 4 {
            self.req
                .states_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if v >= 5 {
            self.req
                .types_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let groups = groups
            .into_iter()
            .filter(|g| states.is_empty() || states.contains(&g.state.name().to_ascii_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|g| ListedGroup {
                group_id: kstr(&g.group),
                protocol_type: kstr(&g.protocol_type),
                group_state: if v >= 4 {
                    kstr(g.state.name())
                } else {
                    kstr("")
                },
                group_type: if v >= 5 { kstr("classic") } else { kstr("") },
                ..ListedGroup::default()
            })
            .collect();
        Step::Respond(Response::ListGroups(ListGroupsResponse {
            groups,
            ..ListGroupsResponse::default()
        }))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        list_error(ErrorCode::REQUEST_TIMED_OUT)
    }
}

fn list_error(code: ErrorCode) -> Step {
    Step::Respond(Response::ListGroups(ListGroupsResponse {
        error_code: code.into(),
        ..ListGroupsResponse::default()
    }))
}

// --- DescribeGroups ---

#[derive(Debug)]
pub(crate) struct DescribeGroupsTask {
    req: DescribeGroupsRequest,
    started: bool,
}

impl DescribeGroupsTask {
    pub(crate) fn new(req: DescribeGroupsRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }

    fn respond(&self, v: i16, described: Vec<Result<Option<GroupDescription>, ErrorCode>>) -> Step {
        let ops = if v >= 3 && self.req.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        let groups = self
            .req
            .groups
            .iter()
            .zip(described)
            .map(|(name, d)| match d {
                Err(code) => DescribedGroup {
                    error_code: code.into(),
                    group_id: name.clone(),
                    authorized_operations: i32::MIN,
                    ..DescribedGroup::default()
                },
                Ok(None) => DescribedGroup {
                    group_id: name.clone(),
                    group_state: kstr(GroupState::Dead.name()),
                    authorized_operations: ops,
                    ..DescribedGroup::default()
                },
                Ok(Some(g)) => DescribedGroup {
                    group_id: name.clone(),
                    group_state: kstr(g.state.name()),
                    protocol_type: kstr(&g.protocol_type),
                    protocol_data: kstr(&g.protocol),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| DescribedGroupMember {
                            member_id: kstr(&m.member_id),
                            group_instance_id: if v >= 4 {
                                m.instance_id.as_deref().map(kstr)
                            } else {
                                None
                            },
                            client_id: kstr(&m.client_id),
                            client_host: kstr(&m.client_host),
                            member_metadata: m.metadata,
                            member_assignment: m.assignment,
                            ..DescribedGroupMember::default()
                        })
                        .collect(),
                    authorized_operations: ops,
                    ..DescribedGroup::default()
                },
            })
            .collect();
        Step::Respond(Response::DescribeGroups(DescribeGroupsResponse {
            groups,
            ..DescribeGroupsResponse::default()
        }))
    }
}

impl Task for DescribeGroupsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let v = ctx.version;
        if !std::mem::replace(&mut self.started, true) {
            let names = self.req.groups.iter().map(ToString::to_string).collect();
            return Step::Run(vec![
                Work::Group(GroupCall::Describe(names)),
                Work::Store(Command::ListGroups),
            ]);
        }
        let mut it = results.into_iter();
        let n = self.req.groups.len();
        let (Some(Outcome::Group(GroupReply::Describe(described))), Some(stored)) =
            (it.next(), it.next())
        else {
            return self.respond(v, vec![Err(ErrorCode::UNKNOWN_SERVER_ERROR); n]);
        };
        let stored: HashSet<String> = match stored {
            Outcome::Store(Completion::ListGroups(Ok(names))) => names.into_iter().collect(),
            Outcome::Store(Completion::ListGroups(Err(e))) => {
                return self.respond(v, vec![Err(e.error_code()); n])
            }
            _ => return self.respond(v, vec![Err(ErrorCode::UNKNOWN_SERVER_ERROR); n]),
        };
        let described = self
            .req
            .groups
            .iter()
            .zip(described)
            .map(|(name, d)| {
                Ok(d.or_else(|| {
                    stored
                        .contains(&name.to_string())
                        .then(|| GroupDescription {
                            group: name.to_string(),
                            state: GroupState::Empty,
                            protocol_type: String::new(),
                            protocol: String::new(),
                            members: Vec::new(),
                        })
                }))
            })
            .collect();
        self.respond(v, described)
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        let n = self.req.groups.len();
        self.respond(ctx.version, vec![Err(ErrorCode::REQUEST_TIMED_OUT); n])
    }
}

// --- DeleteGroups ---

#[derive(Debug)]
pub(crate) struct DeleteGroupsTask {
    req: DeleteGroupsRequest,
    stage: u8,
    outcomes: Vec<Deletion>,
    /// Indexes of the groups whose offsets were sent for deletion.
    sent: Vec<usize>,
}

impl DeleteGroupsTask {
    pub(crate) fn new(req: DeleteGroupsRequest) -> Self {
        Self {
            req,
            stage: 0,
            outcomes: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn respond(&self, codes: Vec<ErrorCode>) -> Step {
        Step::Respond(Response::DeleteGroups(DeleteGroupsResponse {
            results: self
                .req
                .groups_names
                .iter()
                .zip(codes)
                .map(|(name, code)| DeletableGroupResult {
                    group_id: name.clone(),
                    error_code: code.into(),
                    ..DeletableGroupResult::default()
                })
                .collect(),
            ..DeleteGroupsResponse::default()
        }))
    }
}

impl Task for DeleteGroupsTask {
    fn step(&mut self, _ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let n = self.req.groups_names.len();
        match self.stage {
            0 => {
                self.stage = 1;
                let names = self
                    .req
                    .groups_names
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Step::Run(vec![Work::Group(GroupCall::Delete(names))])
            }
            1 => {
                let Some(GroupReply::Delete(outcomes)) = group_reply(results) else {
                    return self.respond(vec![ErrorCode::UNKNOWN_SERVER_ERROR; n]);
                };
                self.stage = 2;
                self.outcomes = outcomes;
                let mut commands = Vec::new();
                for (i, (name, o)) in self.req.groups_names.iter().zip(&self.outcomes).enumerate() {
                    if *o != Deletion::NonEmpty {
                        self.sent.push(i);
                        commands.push(Work::Store(Command::DeleteOffsets {
                            group: name.to_string(),
                            only: None,
                        }));
                    }
                }
                Step::Run(commands)
            }
            _ => {
                let mut codes: Vec<ErrorCode> = self
                    .outcomes
                    .iter()
                    .map(|o| match o {
                        Deletion::NonEmpty => ErrorCode::NON_EMPTY_GROUP,
                        Deletion::Deleted | Deletion::Unknown => ErrorCode::NONE,
                    })
                    .collect();
                codes.resize(n, ErrorCode::UNKNOWN_SERVER_ERROR);
                for (&i, r) in self.sent.iter().zip(results) {
                    codes[i] = match (r, self.outcomes[i]) {
                        (Outcome::Store(Completion::DeleteOffsets(Ok(0))), Deletion::Unknown) => {
                            ErrorCode::GROUP_ID_NOT_FOUND
                        }
                        (Outcome::Store(Completion::DeleteOffsets(Ok(_))), _) => ErrorCode::NONE,
                        (Outcome::Store(Completion::DeleteOffsets(Err(e))), _) => e.error_code(),
                        _ => ErrorCode::UNKNOWN_SERVER_ERROR,
                    };
                }
                self.respond(codes)
            }
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(vec![
            ErrorCode::REQUEST_TIMED_OUT;
            self.req.groups_names.len()
        ])
    }
}

// --- OffsetDelete ---

#[derive(Debug)]
pub(crate) struct OffsetDeleteTask {
    req: OffsetDeleteRequest,
    stage: u8,
    codes: Vec<Vec<Option<ErrorCode>>>,
}

impl OffsetDeleteTask {
    pub(crate) fn new(req: OffsetDeleteRequest) -> Self {
        let codes = req
            .topics
            .iter()
            .map(|t| vec![None; t.partitions.len()])
            .collect();
        Self {
            req,
            stage: 0,
            codes,
        }
    }

    fn respond(&self, top: ErrorCode, fill: ErrorCode) -> Step {
        let topics = if top == ErrorCode::NONE {
            self.req
                .topics
                .iter()
                .zip(&self.codes)
                .map(|(t, codes)| OffsetDeleteResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .zip(codes)
                        .map(|(p, c)| OffsetDeleteResponsePartition {
                            partition_index: p.partition_index,
                            error_code: c.unwrap_or(fill).into(),
                        })
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Step::Respond(Response::OffsetDelete(OffsetDeleteResponse {
            error_code: top.into(),
            topics,
            ..OffsetDeleteResponse::default()
        }))
    }
}

impl Task for OffsetDeleteTask {
    fn step(&mut self, _ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let group = self.req.group_id.to_string();
        match self.stage {
            0 => {
                self.stage = 1;
                let topics: Vec<String> =
                    self.req.topics.iter().map(|t| t.name.to_string()).collect();
                Step::Run(vec![
                    Work::Group(GroupCall::OffsetDelete {
                        group: group.clone(),
                        topics: topics.clone(),
                    }),
                    Work::Store(Command::FetchOffsets { group, only: None }),
                    Work::Store(Command::ListTopics {
                        only: Some(topics.into_iter().map(TopicRef::Name).collect()),
                    }),
                ])
            }
            1 => {
                let mut it = results.into_iter();
                let (
                    Some(Outcome::Group(GroupReply::OffsetDelete(view))),
                    Some(Outcome::Store(Completion::FetchOffsets(Ok(stored)))),
                    Some(Outcome::Store(Completion::ListTopics(Ok(topics)))),
                ) = (it.next(), it.next(), it.next())
                else {
                    return self.respond(ErrorCode::UNKNOWN_SERVER_ERROR, ErrorCode::NONE);
                };
                let subscribed = match view {
                    OffsetDeletion::Refused(code) => return self.respond(code, ErrorCode::NONE),
                    OffsetDeletion::Unknown if stored.is_empty() => {
                        return self.respond(ErrorCode::GROUP_ID_NOT_FOUND, ErrorCode::NONE)
                    }
                    OffsetDeletion::Unknown => vec![false; self.req.topics.len()],
                    OffsetDeletion::Subscribed(s) => s,
                };
                self.stage = 2;
                let mut only = Vec::new();
                for (ti, t) in self.req.topics.iter().enumerate() {
                    let info = topics.iter().find(|i| i.name == t.name.as_ref());
                    for (pi, p) in t.partitions.iter().enumerate() {
                        let exists = partition_index(p.partition_index)
                            .filter(|&i| info.is_some_and(|info| i < info.partitions));
                        self.codes[ti][pi] = Some(match exists {
                            None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(_) if subscribed.get(ti).copied().unwrap_or(false) => {
                                ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC
                            }
                            Some(i) => {
                                only.push((t.name.to_string(), i));
                                ErrorCode::NONE
                            }
                        });
                    }
                }
                if only.is_empty() {
                    return self.respond(ErrorCode::NONE, ErrorCode::NONE);
                }
                Step::Run(vec![Work::Store(Command::DeleteOffsets {
                    group,
                    only: Some(only),
                })])
            }
            _ => match single(results) {
                Some(Outcome::Store(Completion::DeleteOffsets(Ok(_)))) => {
                    self.respond(ErrorCode::NONE, ErrorCode::NONE)
                }
                Some(Outcome::Store(Completion::DeleteOffsets(Err(e)))) => {
                    self.respond(e.error_code(), ErrorCode::NONE)
                }
                _ => self.respond(ErrorCode::UNKNOWN_SERVER_ERROR, ErrorCode::NONE),
            },
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(ErrorCode::REQUEST_TIMED_OUT, ErrorCode::NONE)
    }
}
