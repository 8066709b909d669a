//! DeleteRecords (key 21): advances each partition's log start offset, as Kafka's
//! `ReplicaManager.deleteRecords` does on a partition's leader. Offset -1 means the high
//! watermark (every record); any other negative offset, or one past the high watermark, is
//! OFFSET_OUT_OF_RANGE; an offset at or below the log start changes nothing and answers the
//! log start. The request's timeout bounds waiting for followers, which a one-replica
//! partition does not have.

use super::task::{partition_index, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::delete_records_request::DeleteRecordsRequest;
use crate::protocol::generated::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

/// Kafka's `DeleteRecordsRequest.HIGH_WATERMARK`.
const HIGH_WATERMARK: i64 = -1;

#[derive(Debug)]
pub(crate) struct DeleteRecordsTask {
    req: DeleteRecordsRequest,
    asked: bool,
    /// Per topic, whether the principal may delete from it: decided once, when the commands
    /// go out, so that the answers line up with them whatever the permissions do meanwhile.
    allowed: Vec<bool>,
}

/// What a partition of the request becomes: a command, or an answer without one.
enum Plan {
    Ask(Command),
    Refuse(ErrorCode),
}

impl DeleteRecordsTask {
    pub(crate) fn new(req: DeleteRecordsRequest) -> Self {
        Self {
            req,
            asked: false,
            allowed: Vec::new(),
        }
    }

    /// Each partition of the request, in order, with what it becomes.
    fn plans(&self) -> impl Iterator<Item = Plan> + '_ {
        self.req
            .topics
            .iter()
            .zip(&self.allowed)
            .flat_map(|(t, &allowed)| {
                t.partitions.iter().map(move |p| {
                    if !allowed {
                        return Plan::Refuse(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let Some(partition) = partition_index(p.partition_index) else {
                        return Plan::Refuse(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    let offset = match p.offset {
                        HIGH_WATERMARK => None,
                        o => match u64::try_from(o) {
                            Ok(o) => Some(o),
                            Err(_) => return Plan::Refuse(ErrorCode::OFFSET_OUT_OF_RANGE),
                        },
                    };
                    Plan::Ask(Command::DeleteRecords {
                        topic: t.name.to_string(),
                        partition,
                        offset,
                    })
                })
            })
    }
}

impl Task for DeleteRecordsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.asked, true) {
            self.allowed = self
                .req
                .topics
                .iter()
                .map(|t| ctx.allows(Action::Manage(&t.name)))
                .collect();
            let commands = self
                .plans()
                .filter_map(|plan| match plan {
                    Plan::Ask(c) => Some(Work::Store(c)),
                    Plan::Refuse(_) => None,
                })
                .collect();
            return Step::Run(commands);
        }
        let mut results = results.into_iter();
        let mut answers = self.plans().map(|plan| match plan {
            Plan::Refuse(code) => (code, -1, None),
            Plan::Ask(_) => match results.next() {
                Some(Outcome::Store(Completion::DeleteRecords(Ok(start)))) => (
                    ErrorCode::NONE,
                    i64::try_from(start).unwrap_or(i64::MAX),
                    None,
                ),
                Some(Outcome::Store(Completion::DeleteRecords(Err(e)))) => {
                    (e.error_code(), -1, Some(e.to_string()))
                }
                _ => (ErrorCode::UNKNOWN_SERVER_ERROR, -1, None),
            },
        });
        let mut topics = Vec::with_capacity(self.req.topics.len());
        for t in &self.req.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let (code, low_watermark, why) =
                    answers
                        .next()
                        .unwrap_or((ErrorCode::UNKNOWN_SERVER_ERROR, -1, None));
                if let Some(why) = why {
                    tracing::debug!(topic = %t.name, partition = p.partition_index, %why, "DeleteRecords refused");
                }
                partitions.push(DeleteRecordsPartitionResult {
                    partition_index: p.partition_index,
                    low_watermark,
                    error_code: code.into(),
                    ..DeleteRecordsPartitionResult::default()
                });
            }
            topics.push(DeleteRecordsTopicResult {
                name: t.name.clone(),
                partitions,
                ..DeleteRecordsTopicResult::default()
            });
        }
        Step::Respond(Response::DeleteRecords(DeleteRecordsResponse {
            topics,
            ..DeleteRecordsResponse::default()
        }))
    }
}
