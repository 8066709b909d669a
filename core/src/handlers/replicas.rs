//! ElectLeaders (key 43), AlterPartitionReassignments (key 45) and
//! ListPartitionReassignments (key 46): the answers of a cluster whose one broker holds
//! every partition's one replica and leads it. As Kafka's controller answers them: an
//! election is never needed (so electing "every partition" lists none), a reassignment to
//! that broker alone changes nothing, any other is an invalid assignment, none is ever in
//! progress to cancel or to list, and a partition that does not exist is unknown.

use std::collections::BTreeSet;

use super::task::{kstr, partition_index, single, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, TopicInfo, TopicRef};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use crate::protocol::generated::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use crate::protocol::generated::elect_leaders_request::ElectLeadersRequest;
use crate::protocol::generated::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use crate::protocol::generated::list_partition_reassignments_response::ListPartitionReassignmentsResponse;
use crate::protocol::Response;
use crate::work::{Outcome, Work};

/// Kafka's election types: preferred (0) and unclean (1).
const ELECTION_TYPES: [i8; 2] = [0, 1];

/// The topics as listed, or why they could not be.
type Listed = Result<Vec<TopicInfo>, ErrorCode>;

fn listed(results: Vec<Outcome>) -> Listed {
    match single(results) {
        Some(Outcome::Store(Completion::ListTopics(Ok(t)))) => Ok(t),
        Some(Outcome::Store(Completion::ListTopics(Err(e)))) => Err(e.error_code()),
        _ => Err(ErrorCode::UNKNOWN_SERVER_ERROR),
    }
}

/// Whether partition `p` of `topic` exists among `topics`.
fn exists(topics: &[TopicInfo], topic: &str, p: i32) -> bool {
    let info = topics.iter().find(|t| t.name == topic);
    partition_index(p).is_some_and(|p| info.is_some_and(|t| p < t.partitions))
}

/// ElectLeaders: every existing partition already has its preferred (and only) leader.
#[derive(Debug)]
pub(crate) struct ElectLeadersTask {
    req: ElectLeadersRequest,
    asked: bool,
}

impl ElectLeadersTask {
    pub(crate) fn new(req: ElectLeadersRequest) -> Self {
        Self { req, asked: false }
    }

    fn respond(
        &self,
        version: i16,
        top: ErrorCode,
        per: impl Fn(&str, i32) -> (ErrorCode, String),
    ) -> Step {
        let results = self
            .req
            .topic_partitions
            .iter()
            .flatten()
            .map(|t| ReplicaElectionResult {
                topic: t.topic.clone(),
                partition_result: t
                    .partitions
                    .iter()
                    .map(|&p| {
                        let (code, message) = per(&t.topic, p);
                        PartitionResult {
                            partition_id: p,
                            error_code: code.into(),
                            error_message: Some(kstr(&message)),
                            ..PartitionResult::default()
                        }
                    })
                    .collect(),
                ..ReplicaElectionResult::default()
            })
            .collect();
        Step::Respond(Response::ElectLeaders(ElectLeadersResponse {
            // v0 carries no top-level code: the partitions say it.
            error_code: if version >= 1 { top.into() } else { 0 },
            replica_election_results: results,
            ..ElectLeadersResponse::default()
        }))
    }
}

impl Task for ElectLeadersTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !ctx.allows(Action::AlterCluster) {
            return self.respond(
                ctx.version,
                ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                |_, _| {
                    (
                        ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                        "Authorization failed.".to_owned(),
                    )
                },
            );
        }
        if !ELECTION_TYPES.contains(&self.req.election_type) {
            let message = format!("Unknown election type {}", self.req.election_type);
            return self.respond(ctx.version, ErrorCode::INVALID_REQUEST, |_, _| {
                (ErrorCode::INVALID_REQUEST, message.clone())
            });
        }
        if !std::mem::replace(&mut self.asked, true) {
            let only = self.req.topic_partitions.as_ref().map(|ts| {
                let names: BTreeSet<&str> = ts.iter().map(|t| t.topic.as_ref()).collect();
                names
                    .into_iter()
                    .map(|n| TopicRef::Name(n.to_owned()))
                    .collect()
            });
            return Step::Run(vec![Work::Store(Command::ListTopics { only })]);
        }
        let topics = match listed(results) {
            Ok(t) => t,
            Err(code) => {
                return self.respond(ctx.version, code, |_, _| (code, code.name().to_owned()))
            }
        };
        if self.req.topic_partitions.is_none() {
            // Every partition: each topic, and none of its partitions, since no election
            // is needed anywhere (Kafka leaves those out).
            let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            return Step::Respond(Response::ElectLeaders(ElectLeadersResponse {
                replica_election_results: names
                    .into_iter()
                    .map(|n| ReplicaElectionResult {
                        topic: kstr(n),
                        ..ReplicaElectionResult::default()
                    })
                    .collect(),
                ..ElectLeadersResponse::default()
            }));
        }
        self.respond(ctx.version, ErrorCode::NONE, |topic, p| {
            if exists(&topics, topic, p) {
                (
                    ErrorCode::ELECTION_NOT_NEEDED,
                    "Leader election not needed for topic partition.".into(),
                )
            } else {
                (
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("No such partition as {topic}-{p}"),
                )
            }
        })
    }
}

/// AlterPartitionReassignments: the broker itself is the only assignment there can be.
#[derive(Debug)]
pub(crate) struct AlterReassignmentsTask {
    req: AlterPartitionReassignmentsRequest,
    asked: bool,
}

impl AlterReassignmentsTask {
    pub(crate) fn new(req: AlterPartitionReassignmentsRequest) -> Self {
        Self { req, asked: false }
    }
}

/// Why a reassignment of an existing partition to `replicas` (`None`: cancel) is refused,
/// as Kafka's controller words it; `None` when it changes nothing.
fn reassignment(node_id: i32, replicas: Option<&[i32]>) -> Option<(ErrorCode, String)> {
    let Some(replicas) = replicas else {
        return Some((
            ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
            "No partition reassignment is in progress.".into(),
        ));
    };
    let invalid = |why: String| Some((ErrorCode::INVALID_REPLICA_ASSIGNMENT, why));
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    if let Some(other) = sorted.iter().find(|&&b| b != node_id) {
        return invalid(format!(
            "The manual partition assignment includes broker {other}, but no such broker is \
             registered."
        ));
    }
    if sorted.len() > 1 {
        return invalid(format!(
            "The manual partition assignment includes the broker {node_id} more than once."
        ));
    }
    None
}

impl Task for AlterReassignmentsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !ctx.allows(Action::AlterCluster) {
            return Step::Respond(Response::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse {
                    error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into(),
                    error_message: Some(kstr("Authorization failed.")),
                    ..AlterPartitionReassignmentsResponse::default()
                },
            ));
        }
        if !std::mem::replace(&mut self.asked, true) {
            let names: BTreeSet<&str> = self.req.topics.iter().map(|t| t.name.as_ref()).collect();
            return Step::Run(vec![Work::Store(Command::ListTopics {
                only: Some(
                    names
                        .into_iter()
                        .map(|n| TopicRef::Name(n.to_owned()))
                        .collect(),
                ),
            })]);
        }
        let topics = listed(results);
        let node_id = ctx.config.node_id;
        let responses = self
            .req
            .topics
            .iter()
            .map(|t| ReassignableTopicResponse {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let refused = match &topics {
                            Err(code) => Some((*code, code.name().to_owned())),
                            Ok(topics) if !exists(topics, &t.name, p.partition_index) => Some((
                                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                                format!(
                                    "Unable to find partition {}:{}.",
                                    t.name, p.partition_index
                                ),
                            )),
                            Ok(_) => reassignment(node_id, p.replicas.as_deref()),
                        };
                        let (code, message) = refused.unzip();
                        ReassignablePartitionResponse {
                            partition_index: p.partition_index,
                            error_code: code.unwrap_or(ErrorCode::NONE).into(),
                            error_message: message.map(|m| kstr(&m)),
                            ..ReassignablePartitionResponse::default()
                        }
                    })
                    .collect(),
                ..ReassignableTopicResponse::default()
            })
            .collect();
        Step::Respond(Response::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse {
                responses,
                ..AlterPartitionReassignmentsResponse::default()
            },
        ))
    }
}

/// ListPartitionReassignments: none is ever in progress, for any topic named or not.
#[derive(Debug)]
pub(crate) struct ListReassignmentsTask;

impl Task for ListReassignmentsTask {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        let code = if ctx.allows(Action::DescribeCluster) {
            ErrorCode::NONE
        } else {
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED
        };
        Step::Respond(Response::ListPartitionReassignments(
            ListPartitionReassignmentsResponse {
                error_code: code.into(),
                ..ListPartitionReassignmentsResponse::default()
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassignments_of_a_one_broker_cluster() {
        assert_eq!(reassignment(0, Some(&[0])), None);
        assert_eq!(
            reassignment(0, None).map(|r| r.0),
            Some(ErrorCode::NO_REASSIGNMENT_IN_PROGRESS)
        );
        for bad in [&[][..], &[1], &[0, 1], &[0, 0]] {
            assert_eq!(
                reassignment(0, Some(bad)).map(|r| r.0),
                Some(ErrorCode::INVALID_REPLICA_ASSIGNMENT),
                "{bad:?}"
            );
        }
        assert!(reassignment(0, Some(&[2, 0]))
            .is_some_and(|(_, m)| m.contains("broker 2, but no such broker")));
    }
}
