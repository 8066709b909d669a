//! One module per API. Each turns an already-decoded request into a [`Task`]: a small state
//! machine that asks for backend commands, is stepped with their completions, and ends with
//! the response.

use std::fmt;
use std::time::Instant;

use crate::backend::WatchPartition;
use crate::connection::{CloseReason, Config};
use crate::protocol::{KStr, Request, Response};
use crate::work::{Outcome, Work};

pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod cluster;
pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod metadata;
pub(crate) mod offsets;
pub(crate) mod produce;

/// What a task sees of its connection.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) now: Instant,
    pub(crate) version: i16,
    /// The connection is closing: answer now rather than wait.
    pub(crate) closing: bool,
    /// The client's `client.id`.
    pub(crate) client_id: Option<&'a str>,
    /// The client's address, as group descriptions show it.
    pub(crate) client_host: &'a str,
}

/// What a task wants next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Run this work; the task is stepped again with its outcomes, in this order.
    Run(Vec<Work>),
    /// Wait until one of these partitions grows or `deadline` passes; the task is then
    /// stepped with the outcome of a [`crate::backend::Command::Watch`].
    Wait {
        deadline: Instant,
        watch: Vec<WatchPartition>,
    },
    /// Done: send this.
    Respond(Response),
    /// Done, and no response is due (acks=0).
    Silent,
    /// Done, and the connection must close.
    Close(CloseReason),
}

/// One request being served.
pub(crate) trait Task: Send + fmt::Debug {
    /// Called first with no results, then with the outcomes of what the last step asked.
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step;

    /// The work of the last step took longer than the request timeout; its outcomes will be
    /// dropped. Must end the task.
    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        Step::Close(CloseReason::RequestTimeout("request"))
    }
}

/// The task serving `request`, or `None` for an API without a handler.
pub(crate) fn task_for(request: Request) -> Option<Box<dyn Task>> {
    Some(match request {
        Request::Produce(r) => Box::new(produce::ProduceTask::new(r)),
        Request::Fetch(r) => Box::new(fetch::FetchTask::new(r)),
        Request::ListOffsets(r) => Box::new(offsets::ListOffsetsTask::new(r)),
        Request::OffsetForLeaderEpoch(r) => Box::new(offsets::LeaderEpochTask::new(r)),
        Request::Metadata(r) => Box::new(metadata::MetadataTask::new(r)),
        Request::CreateTopics(r) => Box::new(admin::CreateTopicsTask::new(r)),
        Request::DeleteTopics(r) => Box::new(admin::DeleteTopicsTask::new(r)),
        Request::CreatePartitions(r) => Box::new(admin::CreatePartitionsTask::new(r)),
        Request::DescribeConfigs(r) => Box::new(configs::DescribeConfigsTask::new(r)),
        Request::IncrementalAlterConfigs(r) => Box::new(configs::AlterConfigsTask::new(r)),
        Request::InitProducerId(r) => Box::new(cluster::InitProducerIdTask::new(r)),
        Request::DescribeCluster(r) => {
            Box::new(cluster::Static(cluster::StaticKind::DescribeCluster(r)))
        }
        Request::JoinGroup(r) => Box::new(groups::JoinGroupTask::new(r)),
        Request::SyncGroup(r) => Box::new(groups::SyncGroupTask::new(r)),
        Request::Heartbeat(r) => Box::new(groups::HeartbeatTask::new(r)),
        Request::LeaveGroup(r) => Box::new(groups::LeaveGroupTask::new(r)),
        Request::OffsetCommit(r) => Box::new(groups::OffsetCommitTask::new(r)),
        Request::OffsetFetch(r) => Box::new(groups::OffsetFetchTask::new(r)),
        Request::ListGroups(r) => Box::new(groups::ListGroupsTask::new(r)),
        Request::DescribeGroups(r) => Box::new(groups::DescribeGroupsTask::new(r)),
        Request::DeleteGroups(r) => Box::new(groups::DeleteGroupsTask::new(r)),
        Request::OffsetDelete(r) => Box::new(groups::OffsetDeleteTask::new(r)),
        Request::FindCoordinator(r) => {
            Box::new(cluster::Static(cluster::StaticKind::FindCoordinator(r)))
        }
        _ => return None,
    })
}

/// Kafka's topic name rule: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

pub(crate) fn kstr(s: &str) -> KStr {
    KStr::from(s)
}

/// A partition index from the wire, if it can be one.
pub(crate) fn partition_index(p: i32) -> Option<u32> {
    u32::try_from(p).ok()
}

/// Takes the only completion of a one-command step.
pub(crate) fn single(results: Vec<Outcome>) -> Option<Outcome> {
    results.into_iter().next()
}
