//! The consumer group protocol of KIP-848: ConsumerGroupHeartbeat (68) and
//! ConsumerGroupDescribe (69). The coordinator ([`crate::group`]) does the work; a heartbeat
//! first lists the topics that exist, which the coordinator takes as an input to resolve
//! subscriptions (names and regular expressions) and to notice new partitions.

use super::task::{group_reply, kstr, single, Ctx, Step, Task};
use crate::authz::{self, Action};
use crate::backend::{Command, Completion};
use crate::group::{
    ConsumerHeartbeat, GroupCall, GroupReply, TopicMetadata, LEAVE_EPOCH, LEAVE_STATIC_EPOCH,
};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use crate::protocol::generated::consumer_group_describe_response::{
    Assignment as DescribedAssignment, ConsumerGroupDescribeResponse, DescribedGroup, Member,
    TopicPartitions as DescribedPartitions,
};
use crate::protocol::generated::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use crate::protocol::generated::consumer_group_heartbeat_response::{
    Assignment, ConsumerGroupHeartbeatResponse, TopicPartitions,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

// --- ConsumerGroupHeartbeat ---

#[derive(Debug)]
enum Stage {
    Start,
    Listed,
    Asked,
}

#[derive(Debug)]
pub(crate) struct ConsumerGroupHeartbeatTask {
    req: ConsumerGroupHeartbeatRequest,
    stage: Stage,
}

impl ConsumerGroupHeartbeatTask {
    pub(crate) fn new(req: ConsumerGroupHeartbeatRequest) -> Self {
        Self {
            req,
            stage: Stage::Start,
        }
    }

    fn call(&self, ctx: &Ctx<'_>, topics: Vec<TopicMetadata>) -> Step {
        let r = &self.req;
        Step::Run(vec![Work::Group(GroupCall::ConsumerHeartbeat(
            ConsumerHeartbeat {
                version: ctx.version,
                group: r.group_id.to_string(),
                member_id: r.member_id.to_string(),
                member_epoch: r.member_epoch,
                instance_id: r.instance_id.as_ref().map(ToString::to_string),
                rack_id: r.rack_id.as_ref().map(ToString::to_string),
                rebalance_timeout_ms: r.rebalance_timeout_ms,
                subscribed_topic_names: r
                    .subscribed_topic_names
                    .as_ref()
                    .map(|n| n.iter().map(ToString::to_string).collect()),
                subscribed_topic_regex: r.subscribed_topic_regex.as_ref().map(ToString::to_string),
                server_assignor: r.server_assignor.as_ref().map(ToString::to_string),
                owned: r.topic_partitions.as_ref().map(|tps| {
                    tps.iter()
                        .map(|tp| (tp.topic_id, tp.partitions.clone()))
                        .collect()
                }),
                client_id: ctx.client_id.unwrap_or_default().to_owned(),
                client_host: ctx.client_host.to_owned(),
                // As Kafka: a regular expression resolves only to topics the member may
                // describe.
                hidden: topics
                    .iter()
                    .filter(|t| !ctx.allows(Action::Describe(&t.name)))
                    .map(|t| t.name.clone())
                    .collect(),
                topics,
            },
        ))])
    }
}

fn heartbeat_error(code: ErrorCode, message: &str) -> Step {
    Step::Respond(Response::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse {
            error_code: code.into(),
            error_message: Some(kstr(message)),
            ..ConsumerGroupHeartbeatResponse::default()
        },
    ))
}

impl Task for ConsumerGroupHeartbeatTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        match self.stage {
            Stage::Start => {
                if !ctx.allows(Action::ReadGroup(&self.req.group_id)) {
                    return heartbeat_error(
                        ErrorCode::GROUP_AUTHORIZATION_FAILED,
                        "Not authorized to read the group.",
                    );
                }
                // As Kafka: a member may subscribe only to topics it may describe, so that
                // the group's assignment does not tell it about others.
                let hidden: Vec<&str> = self
                    .req
                    .subscribed_topic_names
                    .iter()
                    .flatten()
                    .map(|t| &**t)
                    .filter(|t| !ctx.allows(Action::Describe(t)))
                    .collect();
                if !hidden.is_empty() {
                    return heartbeat_error(
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                        &format!(
                            "The member is not authorized to describe topics: {}.",
                            hidden.join(", ")
                        ),
                    );
                }
                let leaving = self.req.member_epoch == LEAVE_EPOCH
                    || self.req.member_epoch == LEAVE_STATIC_EPOCH;
                if leaving {
                    self.stage = Stage::Asked;
                    return self.call(ctx, Vec::new());
                }
                self.stage = Stage::Listed;
                Step::Run(vec![Work::Store(Command::ListTopics { only: None })])
            }
            Stage::Listed => {
                self.stage = Stage::Asked;
                let topics = match single(results) {
                    Some(Outcome::Store(Completion::ListTopics(Ok(t)))) => t,
                    Some(Outcome::Store(Completion::ListTopics(Err(e)))) => {
                        tracing::warn!(error = %e, "cannot list topics for a consumer group heartbeat");
                        // Without the topics an assignment would drop partitions: the member
                        // retries (COORDINATOR_NOT_AVAILABLE is retriable) instead.
                        return heartbeat_error(
                            ErrorCode::COORDINATOR_NOT_AVAILABLE,
                            "The topics cannot be listed now.",
                        );
                    }
                    _ => {
                        return heartbeat_error(
                            ErrorCode::UNKNOWN_SERVER_ERROR,
                            "Unexpected outcome.",
                        )
                    }
                };
                // Every topic, whoever asks: the group's topics must not depend on which
                // member heartbeats, or members of different principals would bump the group
                // epoch in turn. The topics this member may not describe go with them, for
                // its own regular expression only. Reading what is assigned is still checked
                // where it is read.
                let topics = topics
                    .into_iter()
                    .map(|t| TopicMetadata {
                        partitions: i32::try_from(t.partitions).unwrap_or(i32::MAX),
                        name: t.name,
                        id: t.id,
                    })
                    .collect();
                self.call(ctx, topics)
            }
            Stage::Asked => match group_reply(results) {
                Some(GroupReply::ConsumerHeartbeat(r)) => {
                    if r.error != ErrorCode::NONE {
                        tracing::debug!(group = %self.req.group_id, code = r.error.name(), message = ?r.message, "consumer group heartbeat refused");
                    }
                    Step::Respond(Response::ConsumerGroupHeartbeat(
                        ConsumerGroupHeartbeatResponse {
                            error_code: r.error.into(),
                            error_message: r.message.as_deref().map(kstr),
                            member_id: r.member_id.as_deref().map(kstr),
                            member_epoch: r.member_epoch,
                            heartbeat_interval_ms: r.heartbeat_interval_ms,
                            assignment: r.assignment.map(|a| Assignment {
                                topic_partitions: a
                                    .into_iter()
                                    .map(|(topic_id, partitions)| TopicPartitions {
                                        topic_id,
                                        partitions,
                                        ..TopicPartitions::default()
                                    })
                                    .collect(),
                                ..Assignment::default()
                            }),
                            ..ConsumerGroupHeartbeatResponse::default()
                        },
                    ))
                }
                _ => heartbeat_error(ErrorCode::UNKNOWN_SERVER_ERROR, "Unexpected outcome."),
            },
        }
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        heartbeat_error(
            super::COORDINATOR_TIMED_OUT,
            "The coordinator did not answer in time.",
        )
    }
}

// --- ConsumerGroupDescribe ---

#[derive(Debug)]
pub(crate) struct ConsumerGroupDescribeTask {
    req: ConsumerGroupDescribeRequest,
    started: bool,
}

impl ConsumerGroupDescribeTask {
    pub(crate) fn new(req: ConsumerGroupDescribeRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }

    fn all_failed(&self, code: ErrorCode) -> Step {
        Step::Respond(Response::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse {
                groups: self
                    .req
                    .group_ids
                    .iter()
                    .map(|g| DescribedGroup {
                        error_code: code.into(),
                        group_id: g.clone(),
                        authorized_operations: i32::MIN,
                        ..DescribedGroup::default()
                    })
                    .collect(),
                ..ConsumerGroupDescribeResponse::default()
            },
        ))
    }
}

fn described(a: Vec<(crate::protocol::Uuid, String, Vec<i32>)>) -> DescribedAssignment {
    DescribedAssignment {
        topic_partitions: a
            .into_iter()
            .map(|(topic_id, name, partitions)| DescribedPartitions {
                topic_id,
                topic_name: kstr(&name),
                partitions,
                ..DescribedPartitions::default()
            })
            .collect(),
        ..DescribedAssignment::default()
    }
}

impl Task for ConsumerGroupDescribeTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.started, true) {
            let names = self.req.group_ids.iter().map(ToString::to_string).collect();
            return Step::Run(vec![Work::Group(GroupCall::ConsumerDescribe(names))]);
        }
        let Some(GroupReply::ConsumerDescribe(groups)) = group_reply(results) else {
            return self.all_failed(ErrorCode::UNKNOWN_SERVER_ERROR);
        };
        let ops = |group: &str| {
            if self.req.include_authorized_operations {
                authz::group_operations(|a| ctx.allows(a), group)
            } else {
                i32::MIN
            }
        };
        // As Kafka (KAFKA-18813): a group whose members subscribe to or are assigned a topic
        // the principal may not describe is answered TOPIC_AUTHORIZATION_FAILED, without
        // its description; one it may describe wholly is shown with its members.
        let hidden_topic = |g: &crate::group::ConsumerGroupDescription| {
            g.members.iter().any(|m| {
                m.subscribed_topic_names
                    .iter()
                    .map(String::as_str)
                    .chain(m.assignment.iter().map(|(_, t, _)| t.as_str()))
                    .chain(m.target_assignment.iter().map(|(_, t, _)| t.as_str()))
                    .any(|t| !ctx.allows(Action::Describe(t)))
            })
        };
        let groups = self
            .req
            .group_ids
            .iter()
            .zip(groups)
            .map(|(name, d)| match d {
                _ if !ctx.allows(Action::DescribeGroup(name)) => DescribedGroup {
                    error_code: ErrorCode::GROUP_AUTHORIZATION_FAILED.into(),
                    error_message: Some(kstr("Not authorized to describe the group.")),
                    group_id: name.clone(),
                    authorized_operations: i32::MIN,
                    ..DescribedGroup::default()
                },
                Err((code, message)) => DescribedGroup {
                    error_code: code.into(),
                    error_message: Some(kstr(&message)),
                    group_id: name.clone(),
                    authorized_operations: i32::MIN,
                    ..DescribedGroup::default()
                },
                Ok(g) if hidden_topic(&g) => DescribedGroup {
                    error_code: ErrorCode::TOPIC_AUTHORIZATION_FAILED.into(),
                    error_message: Some(kstr(
                        "The group has topics the principal may not describe.",
                    )),
                    group_id: name.clone(),
                    authorized_operations: i32::MIN,
                    ..DescribedGroup::default()
                },
                Ok(g) => DescribedGroup {
                    group_id: name.clone(),
                    group_state: kstr(g.state.name()),
                    group_epoch: g.epoch,
                    assignment_epoch: g.assignment_epoch,
                    assignor_name: kstr(&g.assignor),
                    members: g
                        .members
                        .into_iter()
                        .map(|m| Member {
                            member_id: kstr(&m.member_id),
                            instance_id: m.instance_id.as_deref().map(kstr),
                            rack_id: m.rack_id.as_deref().map(kstr),
                            member_epoch: m.member_epoch,
                            client_id: kstr(&m.client_id),
                            client_host: kstr(&m.client_host),
                            subscribed_topic_names: m
                                .subscribed_topic_names
                                .iter()
                                .map(|n| kstr(n))
                                .collect(),
                            subscribed_topic_regex: m.subscribed_topic_regex.as_deref().map(kstr),
                            assignment: described(m.assignment),
                            target_assignment: described(m.target_assignment),
                            ..Member::default()
                        })
                        .collect(),
                    authorized_operations: ops(name),
                    ..DescribedGroup::default()
                },
            })
            .collect();
        Step::Respond(Response::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse {
                groups,
                ..ConsumerGroupDescribeResponse::default()
            },
        ))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        self.all_failed(super::COORDINATOR_TIMED_OUT)
    }
}
