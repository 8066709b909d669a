//! ListOffsets (key 2) and OffsetForLeaderEpoch (key 23).
//!
//! Leader epochs: every partition is at epoch 0, for ever, and Metadata, Fetch, ListOffsets
//! and OffsetForLeaderEpoch all say so. A client that validates its position asks for the
//! end of epoch 0 and gets the high watermark, so it neither stalls nor truncates; a client
//! claiming a newer epoch gets UNKNOWN_LEADER_EPOCH, as it would from a lagging Kafka
//! broker.

use super::task::{partition_index, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, TopicRef};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::list_offsets_request::ListOffsetsRequest;
use crate::protocol::generated::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use crate::protocol::generated::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use crate::protocol::generated::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Debug)]
pub(crate) struct ListOffsetsTask {
    req: ListOffsetsRequest,
    response: Option<ListOffsetsResponse>,
    /// Per partition asked of the backend: where its answer goes, its timestamp, and
    /// whether a second command (the partition's offsets, for its last stable offset)
    /// follows the lookup.
    sent: Vec<(usize, usize, i64, bool)>,
}

impl ListOffsetsTask {
    pub(crate) fn new(req: ListOffsetsRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }
}

fn set(slot: &mut ListOffsetsPartitionResponse, version: i16, offset: i64, timestamp: i64) {
    if version == 0 {
        slot.old_style_offsets = if offset >= 0 {
            vec![offset]
        } else {
            Vec::new()
        };
    } else {
        slot.offset = offset;
        slot.timestamp = timestamp;
    }
    if version >= 4 {
        slot.leader_epoch = if offset >= 0 { 0 } else { -1 };
    }
}

impl Task for ListOffsetsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        let Some(response) = self.response.as_mut() else {
            let mut response = ListOffsetsResponse::default();
            let mut commands = Vec::new();
            for (t, topic) in self.req.topics.iter().enumerate() {
                let mut out = ListOffsetsTopicResponse {
                    name: topic.name.clone(),
                    ..ListOffsetsTopicResponse::default()
                };
                for (p, part) in topic.partitions.iter().enumerate() {
                    let mut slot = ListOffsetsPartitionResponse {
                        partition_index: part.partition_index,
                        ..ListOffsetsPartitionResponse::default()
                    };
                    let partition = partition_index(part.partition_index);
                    let code = match partition {
                        _ if !ctx.allows(Action::Poll(&topic.name)) => {
                            ErrorCode::TOPIC_AUTHORIZATION_FAILED
                        }
                        None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        Some(_) if part.current_leader_epoch > 0 => ErrorCode::UNKNOWN_LEADER_EPOCH,
                        Some(_)
                            if part.timestamp < LATEST_TIERED
                                || (part.timestamp == MAX_TIMESTAMP && version < 7) =>
                        {
                            ErrorCode::INVALID_REQUEST
                        }
                        Some(_) => ErrorCode::NONE,
                    };
                    slot.error_code = code.into();
                    if let (Some(partition), ErrorCode::NONE) = (partition, code) {
                        let topic_name = topic.name.to_string();
                        // A lookup by timestamp under read_committed answers nothing at or
                        // past the last stable offset, as Kafka's (its `lastFetchableOffset`):
                        // the partition's offsets are asked too.
                        let lookup = part.timestamp >= 0 || part.timestamp == MAX_TIMESTAMP;
                        let committed = lookup && version >= 2 && self.req.isolation_level == 1;
                        commands.push(if part.timestamp >= 0 {
                            Work::Store(Command::OffsetForTimestamp {
                                topic: topic_name.clone(),
                                partition,
                                timestamp_ms: part.timestamp,
                            })
                        } else if part.timestamp == MAX_TIMESTAMP {
                            Work::Store(Command::MaxTimestamp {
                                topic: topic_name.clone(),
                                partition,
                            })
                        } else {
                            Work::Store(Command::Offsets {
                                topic: TopicRef::Name(topic_name.clone()),
                                partition,
                            })
                        });
                        if committed {
                            commands.push(Work::Store(Command::Offsets {
                                topic: TopicRef::Name(topic_name),
                                partition,
                            }));
                        }
                        self.sent.push((t, p, part.timestamp, committed));
                    }
                    out.partitions.push(slot);
                }
                response.topics.push(out);
            }
            self.response = Some(response);
            return Step::Run(commands);
        };
        let mut results = results.into_iter();
        for &(t, p, timestamp, committed) in &self.sent {
            let slot = &mut response.topics[t].partitions[p];
            let Some(completion) = results.next() else {
                slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into();
                continue;
            };
            let stable = if committed {
                match results.next() {
                    Some(Outcome::Store(Completion::Offsets(Ok(o)))) => {
                        Some(o.last_stable_offset())
                    }
                    Some(Outcome::Store(Completion::Offsets(Err(e)))) => {
                        slot.error_code = e.error_code().into();
                        continue;
                    }
                    _ => {
                        slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into();
                        continue;
                    }
                }
            } else {
                None
            };
            match completion {
                Outcome::Store(Completion::Offsets(Ok(o))) => match timestamp {
                    EARLIEST | EARLIEST_LOCAL => set(slot, version, to_i64(o.log_start), -1),
                    // read_committed (v2+) sees the last stable offset.
                    LATEST if version >= 2 && self.req.isolation_level == 1 => {
                        set(slot, version, to_i64(o.last_stable_offset()), -1);
                    }
                    LATEST => set(slot, version, to_i64(o.high_watermark), -1),
                    // No tiered storage: nothing is tiered.
                    _ => set(slot, version, -1, -1),
                },
                Outcome::Store(Completion::OffsetForTimestamp(Ok(found)))
                | Outcome::Store(Completion::MaxTimestamp(Ok(found))) => match found {
                    Some((offset, _)) if stable.is_some_and(|s| offset >= s) => {
                        set(slot, version, -1, -1);
                    }
                    Some((offset, ts)) => set(slot, version, to_i64(offset), ts),
                    None => set(slot, version, -1, -1),
                },
                Outcome::Store(Completion::Offsets(Err(e)))
                | Outcome::Store(Completion::OffsetForTimestamp(Err(e)))
                | Outcome::Store(Completion::MaxTimestamp(Err(e))) => {
                    slot.error_code = e.error_code().into();
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::ListOffsets(
            self.response.take().unwrap_or_default(),
        ))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        let mut response = self.response.take().unwrap_or_default();
        for &(t, p, _, _) in &self.sent {
            response.topics[t].partitions[p].error_code = ErrorCode::REQUEST_TIMED_OUT.into();
        }
        Step::Respond(Response::ListOffsets(response))
    }
}

#[derive(Debug)]
pub(crate) struct LeaderEpochTask {
    req: OffsetForLeaderEpochRequest,
    response: Option<OffsetForLeaderEpochResponse>,
    sent: Vec<(usize, usize)>,
}

impl LeaderEpochTask {
    pub(crate) fn new(req: OffsetForLeaderEpochRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }
}

impl Task for LeaderEpochTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let Some(response) = self.response.as_mut() else {
            let mut response = OffsetForLeaderEpochResponse::default();
            let mut commands = Vec::new();
            for (t, topic) in self.req.topics.iter().enumerate() {
                let mut out = OffsetForLeaderTopicResult {
                    topic: topic.topic.clone(),
                    ..OffsetForLeaderTopicResult::default()
                };
                for (p, part) in topic.partitions.iter().enumerate() {
                    let mut slot = EpochEndOffset {
                        partition: part.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                        ..EpochEndOffset::default()
                    };
                    match partition_index(part.partition) {
                        _ if !ctx.allows(Action::Poll(&topic.topic)) => {
                            slot.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                        }
                        None => slot.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into(),
                        Some(_) if part.current_leader_epoch > 0 => {
                            slot.error_code = ErrorCode::UNKNOWN_LEADER_EPOCH.into();
                        }
                        // Only epoch 0 ever existed: any other has no end offset.
                        Some(_) if part.leader_epoch != 0 => {}
                        Some(partition) => {
                            commands.push(Work::Store(Command::Offsets {
                                topic: TopicRef::Name(topic.topic.to_string()),
                                partition,
                            }));
                            self.sent.push((t, p));
                        }
                    }
                    out.partitions.push(slot);
                }
                response.topics.push(out);
            }
            self.response = Some(response);
            return Step::Run(commands);
        };
        for (&(t, p), completion) in self.sent.iter().zip(results) {
            let slot = &mut response.topics[t].partitions[p];
            match completion {
                Outcome::Store(Completion::Offsets(Ok(o))) => {
                    slot.leader_epoch = 0;
                    slot.end_offset = to_i64(o.high_watermark);
                }
                Outcome::Store(Completion::Offsets(Err(e))) => {
                    slot.error_code = e.error_code().into()
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::OffsetForLeaderEpoch(
            self.response.take().unwrap_or_default(),
        ))
    }
}
