//! DescribeTopicPartitions (key 75, KIP-966): the topics' partitions in name order, a page
//! of at most `response_partition_limit` partitions (capped at Kafka's 2,000) at a time, the
//! next page named by a cursor. As Kafka pages them: all topics when none are named (then
//! missing ones are not reported), else the named ones, each missing one with
//! UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for a name Kafka refuses). The one
//! broker leads every partition's one replica at epoch 0; no replica is eligible-but-out.

use std::collections::BTreeSet;

use super::task::{check_topic_name, kstr, single, Ctx, Step, Task};
use crate::authz::{self, Action};
use crate::backend::{Command, Completion, TopicInfo, TopicRef};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use crate::protocol::generated::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use crate::protocol::{Response, Uuid};
use crate::work::{Outcome, Work};

/// Kafka's cap on a page (`max.request.partition.size.limit`'s default).
const MAX_PAGE: i32 = 2000;

#[derive(Debug)]
pub(crate) struct DescribeTopicPartitionsTask {
    req: DescribeTopicPartitionsRequest,
    asked: bool,
}

impl DescribeTopicPartitionsTask {
    pub(crate) fn new(req: DescribeTopicPartitionsRequest) -> Self {
        Self { req, asked: false }
    }

    /// Every named topic answered with `code`: INVALID_REQUEST for a request Kafka finds
    /// invalid, LEADER_NOT_AVAILABLE when the topics cannot be listed (not knowing is not
    /// "no such topic", and clients retry it).
    fn refuse(&self, code: ErrorCode) -> Step {
        Step::Respond(Response::DescribeTopicPartitions(
            DescribeTopicPartitionsResponse {
                topics: self
                    .req
                    .topics
                    .iter()
                    .map(|t| DescribeTopicPartitionsResponseTopic {
                        error_code: code.into(),
                        name: Some(t.name.clone()),
                        topic_authorized_operations: i32::MIN,
                        ..DescribeTopicPartitionsResponseTopic::default()
                    })
                    .collect(),
                ..DescribeTopicPartitionsResponse::default()
            },
        ))
    }

    /// The page, from the topics as listed.
    fn page(&self, ctx: &Ctx<'_>, listed: &[TopicInfo]) -> DescribeTopicPartitionsResponse {
        let node = ctx.config.node_id;
        let all = self.req.topics.is_empty();
        let (cursor_topic, cursor_partition) = self
            .req
            .cursor
            .as_ref()
            .map_or(("", 0), |c| (c.topic_name.as_ref(), c.partition_index));
        let names: BTreeSet<&str> = if all {
            listed.iter().map(|t| t.name.as_str()).collect()
        } else {
            self.req.topics.iter().map(|t| t.name.as_ref()).collect()
        };
        let mut remaining = i64::from(self.req.response_partition_limit.clamp(1, MAX_PAGE));
        let mut response = DescribeTopicPartitionsResponse::default();
        for name in names.into_iter().filter(|n| *n >= cursor_topic) {
            if remaining == 0 {
                // The next page starts with this topic.
                response.next_cursor = Some(Cursor {
                    topic_name: kstr(name),
                    partition_index: 0,
                    ..Cursor::default()
                });
                break;
            }
            let Some(info) = listed.iter().find(|t| t.name == name) else {
                if !all {
                    let code = if check_topic_name(name).is_ok() {
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        ErrorCode::INVALID_TOPIC_EXCEPTION
                    };
                    response.topics.push(DescribeTopicPartitionsResponseTopic {
                        error_code: code.into(),
                        name: Some(kstr(name)),
                        topic_id: Uuid::NIL,
                        topic_authorized_operations: i32::MIN,
                        ..DescribeTopicPartitionsResponseTopic::default()
                    });
                }
                continue;
            };
            let count = i64::from(info.partitions);
            let start = if name == cursor_topic {
                i64::from(cursor_partition)
            } else {
                0
            };
            let upper = count.min(start + remaining);
            let partitions: Vec<DescribeTopicPartitionsResponsePartition> = (start..upper)
                .map(|p| DescribeTopicPartitionsResponsePartition {
                    partition_index: i32::try_from(p).unwrap_or(i32::MAX),
                    leader_id: node,
                    leader_epoch: 0,
                    replica_nodes: vec![node],
                    isr_nodes: vec![node],
                    eligible_leader_replicas: Some(Vec::new()),
                    last_known_elr: Some(Vec::new()),
                    ..DescribeTopicPartitionsResponsePartition::default()
                })
                .collect();
            let taken = i64::try_from(partitions.len()).unwrap_or(i64::MAX);
            response.topics.push(DescribeTopicPartitionsResponseTopic {
                name: Some(kstr(name)),
                topic_id: info.id,
                partitions,
                topic_authorized_operations: authz::topic_operations(|a| ctx.allows(a), name),
                ..DescribeTopicPartitionsResponseTopic::default()
            });
            if upper < count {
                response.next_cursor = Some(Cursor {
                    topic_name: kstr(name),
                    partition_index: i32::try_from(upper).unwrap_or(i32::MAX),
                    ..Cursor::default()
                });
                break;
            }
            remaining -= taken;
        }
        response
    }
}

impl Task for DescribeTopicPartitionsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(c) = &self.req.cursor {
            let named = self.req.topics.iter().any(|t| t.name == c.topic_name);
            if c.partition_index < 0 || (!self.req.topics.is_empty() && !named) {
                return self.refuse(ErrorCode::INVALID_REQUEST);
            }
        }
        if !std::mem::replace(&mut self.asked, true) {
            let only = (!self.req.topics.is_empty()).then(|| {
                self.req
                    .topics
                    .iter()
                    .map(|t| TopicRef::Name(t.name.to_string()))
                    .collect()
            });
            return Step::Run(vec![Work::Store(Command::ListTopics { only })]);
        }
        match single(results) {
            Some(Outcome::Store(Completion::ListTopics(Ok(mut listed)))) => {
                // What the principal may not see is not listed, and is refused by name.
                listed.retain(|t| ctx.allows(Action::Describe(&t.name)));
                let mut page = self.page(ctx, &listed);
                for t in &mut page.topics {
                    if t.name
                        .as_ref()
                        .is_some_and(|n| !ctx.allows(Action::Describe(n)))
                    {
                        t.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                    }
                }
                Step::Respond(Response::DescribeTopicPartitions(page))
            }
            Some(Outcome::Store(Completion::ListTopics(Err(e)))) => {
                tracing::warn!(error = %e, "cannot list topics");
                self.refuse(ErrorCode::LEADER_NOT_AVAILABLE)
            }
            _ => self.refuse(ErrorCode::INVALID_REQUEST),
        }
    }
}
