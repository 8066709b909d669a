//! A consumer group's committed offsets: OffsetCommit (8), OffsetFetch (9) and
//! OffsetDelete (47). The offsets are the backend's; the coordinator checks the committing
//! member and keeps a group's offsets from being deleted while it consumes them.
use std::collections::BTreeMap;

use super::task::{group_reply, kstr, partition_index, single, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, CommittedOffset, Completion, GroupOffset, TopicRef};
use crate::group::{GroupCall, GroupReply, MemberRef, OffsetDeletion};
use crate::protocol::error_code::ErrorCode;
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
use crate::protocol::{KStr, Response};
use crate::work::{Outcome, Work};

use super::membership::opt;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

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
            0 if !ctx.allows(Action::ReadGroup(&self.req.group_id)) => {
                self.respond(ErrorCode::GROUP_AUTHORIZATION_FAILED)
            }
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
                        if !ctx.allows(Action::Poll(&t.name)) {
                            self.codes[ti][pi] = Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                            continue;
                        }
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
                            self.codes[*ti][*pi] = Some(
                                r.err()
                                    .map_or(ErrorCode::NONE, |e| super::coordinator_error(&e)),
                            );
                        }
                    }
                    _ => return self.respond(ErrorCode::UNKNOWN_SERVER_ERROR),
                }
                self.respond(ErrorCode::UNKNOWN_SERVER_ERROR)
            }
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(super::COORDINATOR_TIMED_OUT)
    }
}

// --- OffsetFetch ---

/// One group's part of an OffsetFetch.
#[derive(Debug)]
struct FetchGroup {
    group: String,
    /// v9+: who asks (KIP-848 members give their id and epoch), checked by the coordinator.
    member: Option<(Option<String>, i32)>,
    /// The partitions asked for, or `None` for all committed ones.
    topics: Option<Vec<(KStr, Vec<i32>)>>,
}

#[derive(Debug)]
pub(crate) struct OffsetFetchTask {
    req: Option<OffsetFetchRequest>,
    groups: Vec<FetchGroup>,
    /// v7+ `require_stable`: offsets a transaction has pending are UNSTABLE_OFFSET_COMMIT.
    require_stable: bool,
}

impl OffsetFetchTask {
    pub(crate) fn new(req: OffsetFetchRequest) -> Self {
        Self {
            req: Some(req),
            groups: Vec::new(),
            require_stable: false,
        }
    }
}

/// Marks the partitions of `got` that a transaction has offsets pending for.
fn unstable(got: FetchedGroup, pending: Option<Outcome>) -> FetchedGroup {
    let Some(Outcome::Txn(crate::txn::TxnReply::Pending(pending))) = pending else {
        return got;
    };
    if pending.is_empty() {
        return got;
    }
    got.map(|topics| {
        topics
            .into_iter()
            .map(|(topic, mut parts)| {
                for p in &mut parts {
                    let pending = partition_index(p.0)
                        .is_some_and(|i| pending.iter().any(|(t, q)| *t == topic && *q == i));
                    if pending && p.4 == ErrorCode::NONE {
                        *p = (p.0, -1, -1, None, ErrorCode::UNSTABLE_OFFSET_COMMIT);
                    }
                }
                (topic, parts)
            })
            .collect()
    })
}

/// A partition's answer: (index, offset, epoch, metadata, code).
type FetchedPartition = (i32, i64, i32, Option<String>, ErrorCode);

/// One group's answer: its topics and their partitions, or a group-level error.
type FetchedGroup = Result<Vec<(String, Vec<FetchedPartition>)>, ErrorCode>;

fn fetched(want: &FetchGroup, result: Option<Outcome>) -> FetchedGroup {
    let found = match result {
        Some(Outcome::Store(Completion::FetchOffsets(Ok(found)))) => found,
        Some(Outcome::Store(Completion::FetchOffsets(Err(e)))) => {
            return Err(super::coordinator_error(&e))
        }
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

/// Offsets of topics the principal may not read: left out of an answer for all topics,
/// TOPIC_AUTHORIZATION_FAILED where the client named the topic, as Kafka answers.
fn authorized(ctx: &Ctx<'_>, want: &FetchGroup, got: FetchedGroup) -> FetchedGroup {
    got.map(|topics| {
        topics
            .into_iter()
            .filter_map(|(topic, mut parts)| {
                if ctx.allows(Action::Poll(&topic)) {
                    return Some((topic, parts));
                }
                want.topics.as_ref()?;
                for p in &mut parts {
                    *p = (p.0, -1, -1, None, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                }
                Some((topic, parts))
            })
            .collect()
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
                        member: (v >= 9).then(|| {
                            (
                                g.member_id.as_ref().map(ToString::to_string),
                                g.member_epoch,
                            )
                        }),
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
                    member: None,
                    topics: req.topics.map(|ts| {
                        ts.into_iter()
                            .map(|t| (t.name, t.partition_indexes))
                            .collect()
                    }),
                }]
            };
            self.require_stable = v >= 7 && req.require_stable;
            let only = |g: &FetchGroup| -> Option<Vec<(String, u32)>> {
                g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .flat_map(|(t, ps)| {
                            ps.iter()
                                .filter_map(|&p| Some((t.to_string(), partition_index(p)?)))
                        })
                        .collect()
                })
            };
            let mut commands: Vec<Work> = self
                .groups
                .iter()
                .map(|g| {
                    Work::Store(Command::FetchOffsets {
                        group: g.group.clone(),
                        only: only(g),
                    })
                })
                .collect();
            // After the reads, one check per group whose member says who it is.
            commands.extend(self.groups.iter().filter_map(|g| {
                let (member_id, member_epoch) = g.member.clone()?;
                Some(Work::Group(GroupCall::FetchCheck {
                    group: g.group.clone(),
                    member_id,
                    member_epoch,
                }))
            }));
            // Then, for require_stable, what transactions have pending for each group.
            if self.require_stable {
                commands.extend(self.groups.iter().map(|g| {
                    Work::Txn(crate::txn::TxnCall::PendingOffsets {
                        group: g.group.clone(),
                        only: only(g),
                    })
                }));
            }
            return Step::Run(commands);
        }
        let mut results: Vec<Option<Outcome>> = results.into_iter().map(Some).collect();
        let n = self.groups.len();
        let members = self.groups.iter().filter(|g| g.member.is_some()).count();
        let stable = if self.require_stable { n } else { 0 };
        results.resize(n + members + stable, None);
        let mut pending = results.split_off(n + members).into_iter();
        let mut checks = results.split_off(n).into_iter();
        let answers: Vec<_> = self
            .groups
            .iter()
            .zip(results)
            .map(|(g, r)| {
                // Taken whatever the check says, so that the next group's lines up.
                let pending = pending.next().flatten();
                let check = if g.member.is_some() {
                    checks.next()
                } else {
                    None
                };
                if !ctx.allows(Action::DescribeGroup(&g.group)) {
                    return Err(ErrorCode::GROUP_AUTHORIZATION_FAILED);
                }
                if let Some(check) = check {
                    match check {
                        Some(Outcome::Group(GroupReply::FetchCheck(c))) if c == ErrorCode::NONE => {
                        }
                        Some(Outcome::Group(GroupReply::FetchCheck(c))) => return Err(c),
                        _ => return Err(ErrorCode::UNKNOWN_SERVER_ERROR),
                    }
                }
                unstable(authorized(ctx, g, fetched(g, r)), pending)
            })
            .collect();
        self.respond(v, answers)
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        let answers = self
            .groups
            .iter()
            .map(|_| Err(super::COORDINATOR_TIMED_OUT))
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
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let group = self.req.group_id.to_string();
        match self.stage {
            // As Kafka: DELETE on the group, then READ on each topic.
            0 if !ctx.allows(Action::DeleteGroups) => {
                self.respond(ErrorCode::GROUP_AUTHORIZATION_FAILED, ErrorCode::NONE)
            }
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
                    let allowed = ctx.allows(Action::Poll(&t.name));
                    for (pi, p) in t.partitions.iter().enumerate() {
                        let exists = partition_index(p.partition_index)
                            .filter(|&i| info.is_some_and(|info| i < info.partitions));
                        self.codes[ti][pi] = Some(match exists {
                            _ if !allowed => ErrorCode::TOPIC_AUTHORIZATION_FAILED,
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
                    self.respond(super::coordinator_error(&e), ErrorCode::NONE)
                }
                _ => self.respond(ErrorCode::UNKNOWN_SERVER_ERROR, ErrorCode::NONE),
            },
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.respond(super::COORDINATOR_TIMED_OUT, ErrorCode::NONE)
    }
}
