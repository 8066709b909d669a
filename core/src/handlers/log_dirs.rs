//! DescribeLogDirs (key 35): one log dir, the backend's store, holding every partition, with
//! the bytes the backend reports for each. As Kafka answers: all partitions when the request
//! names no topics, else those named that exist (others are left out); the leader's log has
//! no lag and no future replica.

use super::task::{kstr, partition_index, single, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, PartitionOffsets, TopicInfo, TopicRef};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::describe_log_dirs_request::DescribeLogDirsRequest;
use crate::protocol::generated::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

/// The one log dir's name: the backend holds every partition.
pub(crate) const LOG_DIR: &str = "backend";

#[derive(Debug)]
pub(crate) struct DescribeLogDirsTask {
    req: DescribeLogDirsRequest,
    /// The partitions asked about, by topic, once the topics are listed.
    asked: Option<Vec<(String, u32)>>,
}

impl DescribeLogDirsTask {
    pub(crate) fn new(req: DescribeLogDirsRequest) -> Self {
        Self { req, asked: None }
    }

    /// The partitions to describe: every partition of `topics`, or those the request names
    /// that exist.
    fn partitions(&self, topics: &[TopicInfo]) -> Vec<(String, u32)> {
        let Some(named) = &self.req.topics else {
            return topics
                .iter()
                .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
                .collect();
        };
        let mut out = Vec::new();
        for t in named {
            let Some(info) = topics.iter().find(|i| i.name == t.topic.as_ref()) else {
                continue;
            };
            for &p in &t.partitions {
                if let Some(p) = partition_index(p).filter(|&p| p < info.partitions) {
                    if !out.contains(&(info.name.clone(), p)) {
                        out.push((info.name.clone(), p));
                    }
                }
            }
        }
        out
    }

    fn respond(result: DescribeLogDirsResult) -> Step {
        Step::Respond(Response::DescribeLogDirs(DescribeLogDirsResponse {
            results: vec![result],
            ..DescribeLogDirsResponse::default()
        }))
    }

    /// The log dir as unreadable: Kafka's answer for a dir it cannot read.
    fn storage_error() -> Step {
        Self::respond(DescribeLogDirsResult {
            error_code: ErrorCode::KAFKA_STORAGE_ERROR.into(),
            log_dir: kstr(LOG_DIR),
            total_bytes: -1,
            usable_bytes: -1,
            ..DescribeLogDirsResult::default()
        })
    }
}

impl Task for DescribeLogDirsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !ctx.allows(Action::DescribeCluster) {
            // Kafka's answer: no log dirs, and the code where the version has one.
            return Step::Respond(Response::DescribeLogDirs(DescribeLogDirsResponse {
                error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into(),
                ..DescribeLogDirsResponse::default()
            }));
        }
        let Some(asked) = &self.asked else {
            if self.req.topics.as_ref().is_some_and(Vec::is_empty) {
                // An empty list asks about nothing.
                self.asked = Some(Vec::new());
                return Self::respond(DescribeLogDirsResult {
                    log_dir: kstr(LOG_DIR),
                    total_bytes: -1,
                    usable_bytes: -1,
                    ..DescribeLogDirsResult::default()
                });
            }
            let only = self.req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| TopicRef::Name(t.topic.to_string()))
                    .collect()
            });
            self.asked = Some(Vec::new());
            return Step::Run(vec![Work::Store(Command::ListTopics { only })]);
        };
        if asked.is_empty() {
            let topics = match single(results) {
                Some(Outcome::Store(Completion::ListTopics(Ok(t)))) => t,
                _ => return Self::storage_error(),
            };
            let partitions = self.partitions(&topics);
            if partitions.is_empty() {
                return Self::respond(DescribeLogDirsResult {
                    log_dir: kstr(LOG_DIR),
                    total_bytes: -1,
                    usable_bytes: -1,
                    ..DescribeLogDirsResult::default()
                });
            }
            let commands = partitions
                .iter()
                .map(|(t, p)| {
                    Work::Store(Command::Offsets {
                        topic: TopicRef::Name(t.clone()),
                        partition: *p,
                    })
                })
                .collect();
            self.asked = Some(partitions);
            return Step::Run(commands);
        }
        let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
        for ((topic, partition), outcome) in asked.iter().zip(results) {
            let size = match outcome {
                Outcome::Store(Completion::Offsets(Ok(PartitionOffsets {
                    size_bytes: Some(size),
                    ..
                }))) => size,
                // Gone since it was listed: not in the dir any more.
                Outcome::Store(Completion::Offsets(Err(e)))
                    if e.error_code() == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION =>
                {
                    continue
                }
                _ => return Self::storage_error(),
            };
            let entry = DescribeLogDirsPartition {
                partition_index: i32::try_from(*partition).unwrap_or(i32::MAX),
                partition_size: i64::try_from(size).unwrap_or(i64::MAX),
                offset_lag: 0,
                is_future_key: false,
                ..DescribeLogDirsPartition::default()
            };
            match topics
                .iter_mut()
                .find(|t| t.name.as_str() == topic.as_str())
            {
                Some(t) => t.partitions.push(entry),
                None => topics.push(DescribeLogDirsTopic {
                    name: kstr(topic),
                    partitions: vec![entry],
                    ..DescribeLogDirsTopic::default()
                }),
            }
        }
        Self::respond(DescribeLogDirsResult {
            log_dir: kstr(LOG_DIR),
            topics,
            // The volume's size is the backend's to know, not the gateway's.
            total_bytes: -1,
            usable_bytes: -1,
            ..DescribeLogDirsResult::default()
        })
    }
}
