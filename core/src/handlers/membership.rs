//! The consumer group membership APIs: JoinGroup (11), SyncGroup (14), Heartbeat (12),
//! LeaveGroup (13), ListGroups (16), DescribeGroups (15) and DeleteGroups (42). Membership
//! is the coordinator's ([`crate::group`]); a group's committed offsets, which ListGroups,
//! DescribeGroups and DeleteGroups also look at, are the backend's.
use std::collections::HashSet;

use super::task::{group_reply, kstr, Ctx, Step, Task};
use crate::authz::{self, Action};
use crate::backend::{Command, Completion};
use crate::group::{
    Deletion, GroupCall, GroupDescription, GroupKind, GroupReply, GroupState, JoinArgs, MemberRef,
    SyncArgs,
};
use crate::protocol::error_code::ErrorCode;
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
use crate::protocol::generated::sync_group_request::SyncGroupRequest;
use crate::protocol::generated::sync_group_response::SyncGroupResponse;
use crate::protocol::{KStr, Response};
use crate::work::{Outcome, Work};

pub(crate) fn opt(s: Option<&KStr>) -> Option<String> {
    s.map(|s| s.to_string())
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
            if !ctx.allows(Action::ReadGroup(&req.group_id)) {
                return join_response(ctx.version, ErrorCode::GROUP_AUTHORIZATION_FAILED, None);
            }
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
            if !ctx.allows(Action::ReadGroup(&req.group_id)) {
                return sync_error(ctx.version, ErrorCode::GROUP_AUTHORIZATION_FAILED);
            }
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
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(req) = self.req.take() {
            if !ctx.allows(Action::ReadGroup(&req.group_id)) {
                return heartbeat_response(ErrorCode::GROUP_AUTHORIZATION_FAILED);
            }
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
        heartbeat_response(super::COORDINATOR_TIMED_OUT)
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
            if !ctx.allows(Action::ReadGroup(&self.req.group_id)) {
                // Kafka answers with the request's error and no members.
                return self.respond(ctx.version, Err(ErrorCode::GROUP_AUTHORIZATION_FAILED));
            }
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
        self.respond(ctx.version, Err(super::COORDINATOR_TIMED_OUT))
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
            Outcome::Store(Completion::ListGroups(Err(e))) => {
                return list_error(super::coordinator_error(&e))
            }
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
                    kind: GroupKind::Classic,
                });
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        // As Kafka: describing the cluster lists every group; otherwise only the groups the
        // principal may describe.
        if !ctx.allows(Action::DescribeCluster) {
            groups.retain(|g| ctx.allows(Action::DescribeGroup(&g.group)));
        }
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
            .filter(|g| types.is_empty() || types.iter().any(|t| t == g.kind.name()))
            .map(|g| ListedGroup {
                group_id: kstr(&g.group),
                protocol_type: kstr(&g.protocol_type),
                group_state: if v >= 4 {
                    kstr(g.state.name())
                } else {
                    kstr("")
                },
                group_type: if v >= 5 {
                    kstr(g.kind.name())
                } else {
                    kstr("")
                },
                ..ListedGroup::default()
            })
            .collect();
        Step::Respond(Response::ListGroups(ListGroupsResponse {
            groups,
            ..ListGroupsResponse::default()
        }))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        list_error(super::COORDINATOR_TIMED_OUT)
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

    fn respond(
        &self,
        ctx: &Ctx<'_>,
        described: Vec<Result<Option<GroupDescription>, ErrorCode>>,
    ) -> Step {
        let v = ctx.version;
        let ops = |group: &str| {
            if v >= 3 && self.req.include_authorized_operations {
                authz::group_operations(|a| ctx.allows(a), group)
            } else {
                i32::MIN
            }
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
                    authorized_operations: ops(name),
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
                    authorized_operations: ops(name),
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
            return self.respond(ctx, vec![Err(ErrorCode::UNKNOWN_SERVER_ERROR); n]);
        };
        let stored: HashSet<String> = match stored {
            Outcome::Store(Completion::ListGroups(Ok(names))) => names.into_iter().collect(),
            Outcome::Store(Completion::ListGroups(Err(e))) => {
                return self.respond(ctx, vec![Err(super::coordinator_error(&e)); n])
            }
            _ => return self.respond(ctx, vec![Err(ErrorCode::UNKNOWN_SERVER_ERROR); n]),
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
        let mut described: Vec<Result<Option<GroupDescription>, ErrorCode>> = described;
        for (name, d) in self.req.groups.iter().zip(described.iter_mut()) {
            if !ctx.allows(Action::DescribeGroup(name)) {
                *d = Err(ErrorCode::GROUP_AUTHORIZATION_FAILED);
            }
        }
        if !ctx.allows(Action::DescribeCluster) {
            // Kafka shows members to whoever may describe the group; Iggy's model ties no
            // permission to one group, so only a principal that may read the servers sees
            // who the members are and what they read (their subscriptions and assignments
            // name topics it may not be allowed to see).
            for g in described.iter_mut().flatten().flatten() {
                for m in &mut g.members {
                    m.member_id.clear();
                    m.client_host.clear();
                    m.metadata = bytes::Bytes::new();
                    m.assignment = bytes::Bytes::new();
                }
            }
        }
        self.respond(ctx, described)
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        let n = self.req.groups.len();
        self.respond(ctx, vec![Err(super::COORDINATOR_TIMED_OUT); n])
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
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let n = self.req.groups_names.len();
        match self.stage {
            0 if !ctx.allows(Action::DeleteGroups) => {
                self.respond(vec![ErrorCode::GROUP_AUTHORIZATION_FAILED; n])
            }
            0 => {
                self.stage = 1;
                // One call per group: each answer waits for its own group's write, so a
                // group whose deletion failed keeps its offsets.
                Step::Run(
                    self.req
                        .groups_names
                        .iter()
                        .map(|g| Work::Group(GroupCall::Delete(vec![g.to_string()])))
                        .collect(),
                )
            }
            1 => {
                let mut outcomes = Vec::with_capacity(n);
                for r in results {
                    let Outcome::Group(GroupReply::Delete(one)) = r else {
                        return self.respond(vec![ErrorCode::UNKNOWN_SERVER_ERROR; n]);
                    };
                    outcomes.extend(one);
                }
                if outcomes.len() != n {
                    return self.respond(vec![ErrorCode::UNKNOWN_SERVER_ERROR; n]);
                }
                self.stage = 2;
                self.outcomes = outcomes;
                let mut commands = Vec::new();
                for (i, (name, o)) in self.req.groups_names.iter().zip(&self.outcomes).enumerate() {
                    if matches!(o, Deletion::Deleted | Deletion::Unknown) {
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
                        Deletion::NotKept => ErrorCode::COORDINATOR_NOT_AVAILABLE,
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
                        (Outcome::Store(Completion::DeleteOffsets(Err(e))), _) => {
                            super::coordinator_error(&e)
                        }
                        _ => ErrorCode::UNKNOWN_SERVER_ERROR,
                    };
                }
                self.respond(codes)
            }
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(vec![
            super::COORDINATOR_TIMED_OUT;
            self.req.groups_names.len()
        ])
    }
}
