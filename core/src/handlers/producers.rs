//! DescribeProducers (key 61): the idempotent producers each partition remembers (their id,
//! epoch and last sequence), from the backend's producer state. There are no transactions,
//! so no coordinator epoch or open transaction; the last batch's timestamp is not kept.

use super::task::{kstr, partition_index, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::describe_producers_request::DescribeProducersRequest;
use crate::protocol::generated::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

#[derive(Debug)]
pub(crate) struct DescribeProducersTask {
    req: DescribeProducersRequest,
    asked: bool,
    /// Per topic, whether the principal may see it: decided once, when the commands go
    /// out, so that the answers line up with them whatever the permissions do meanwhile.
    allowed: Vec<bool>,
}

impl DescribeProducersTask {
    pub(crate) fn new(req: DescribeProducersRequest) -> Self {
        Self {
            req,
            asked: false,
            allowed: Vec::new(),
        }
    }

    /// Every (topic, partition) of the request the principal may see, in order, with its
    /// index if it can be one.
    fn partitions(&self) -> impl Iterator<Item = (&str, Option<u32>)> {
        self.req
            .topics
            .iter()
            .zip(&self.allowed)
            .filter(|(_, allowed)| **allowed)
            .flat_map(|(t, _)| {
                t.partition_indexes
                    .iter()
                    .map(move |&p| (t.name.as_ref(), partition_index(p)))
            })
    }
}

impl Task for DescribeProducersTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.asked, true) {
            self.allowed = self
                .req
                .topics
                .iter()
                .map(|t| ctx.allows(Action::Describe(&t.name)))
                .collect();
            let commands = self
                .partitions()
                .filter_map(|(topic, p)| {
                    p.map(|partition| {
                        Work::Store(Command::DescribeProducers {
                            topic: topic.to_owned(),
                            partition,
                        })
                    })
                })
                .collect();
            return Step::Run(commands);
        }
        let mut results = results.into_iter();
        let topics = self
            .req
            .topics
            .iter()
            .zip(&self.allowed)
            .map(|(t, &allowed)| TopicResponse {
                name: t.name.clone(),
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        let mut answer = PartitionResponse {
                            partition_index: p,
                            ..PartitionResponse::default()
                        };
                        if !allowed {
                            answer.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                            return answer;
                        }
                        let outcome = partition_index(p).and_then(|_| results.next());
                        match outcome {
                            Some(Outcome::Store(Completion::DescribeProducers(Ok(active)))) => {
                                answer.active_producers = active
                                    .into_iter()
                                    .map(|a| ProducerState {
                                        producer_id: a.producer_id,
                                        producer_epoch: i32::from(a.epoch),
                                        last_sequence: a.last_sequence,
                                        last_timestamp: -1,
                                        coordinator_epoch: -1,
                                        current_txn_start_offset: a
                                            .current_txn_start_offset
                                            .and_then(|o| i64::try_from(o).ok())
                                            .unwrap_or(-1),
                                        ..ProducerState::default()
                                    })
                                    .collect();
                            }
                            Some(Outcome::Store(Completion::DescribeProducers(Err(e)))) => {
                                answer.error_code = e.error_code().into();
                                answer.error_message = Some(kstr(&e.to_string()));
                            }
                            None => {
                                answer.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into();
                            }
                            Some(_) => answer.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
                        }
                        answer
                    })
                    .collect(),
                ..TopicResponse::default()
            })
            .collect();
        Step::Respond(Response::DescribeProducers(DescribeProducersResponse {
            topics,
            ..DescribeProducersResponse::default()
        }))
    }
}
