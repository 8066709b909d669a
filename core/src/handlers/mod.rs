//! One module per API. Each turns an already-decoded request into a [`Task`]: a small state
//! machine that asks for backend commands, is stepped with their completions, and ends with
//! the response.

use crate::backend::BackendError;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::Request;

pub(crate) mod acls;
pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod client_quotas;
pub(crate) mod cluster;
pub(crate) mod committed_offsets;
pub(crate) mod configs;
pub(crate) mod consumer_groups;
pub(crate) mod delete_records;
pub(crate) mod fetch;
pub(crate) mod list_offsets;
pub(crate) mod log_dirs;
pub(crate) mod membership;
pub(crate) mod metadata;
pub(crate) mod produce;
pub(crate) mod producers;
pub(crate) mod replicas;
pub(crate) mod scram_credentials;
mod task;
pub(crate) mod topic_partitions;
pub(crate) mod transactions;

pub(crate) use task::{Ctx, Step, Task};

/// What a group coordinator's API answers when the store did not answer in time: Kafka's
/// group coordinator answers COORDINATOR_NOT_AVAILABLE for a write or read of its log that
/// timed out (`GroupCoordinatorService`), which every client retries after looking the
/// coordinator up again. REQUEST_TIMED_OUT is no answer Kafka gives there: the Java
/// client's KIP-848 consumer takes it in a ConsumerGroupHeartbeat as a fatal error, and
/// librdkafka gives up a commit over it sooner.
pub(crate) const COORDINATOR_TIMED_OUT: ErrorCode = ErrorCode::COORDINATOR_NOT_AVAILABLE;

/// A store error as a group coordinator's API answers it ([`COORDINATOR_TIMED_OUT`] for a
/// store that did not answer).
pub(crate) fn coordinator_error(e: &BackendError) -> ErrorCode {
    match e {
        BackendError::Unavailable(_) => COORDINATOR_TIMED_OUT,
        other => other.error_code(),
    }
}

/// The task serving `request`, or `None` for an API without a handler.
pub(crate) fn task_for(request: Request) -> Option<Box<dyn Task>> {
    Some(match request {
        Request::Produce(r) => Box::new(produce::ProduceTask::new(r)),
        Request::Fetch(r) => Box::new(fetch::FetchTask::new(r)),
        Request::ListOffsets(r) => Box::new(list_offsets::ListOffsetsTask::new(r)),
        Request::OffsetForLeaderEpoch(r) => Box::new(list_offsets::LeaderEpochTask::new(r)),
        Request::Metadata(r) => Box::new(metadata::MetadataTask::new(r)),
        Request::CreateTopics(r) => Box::new(admin::CreateTopicsTask::new(r)),
        Request::DeleteTopics(r) => Box::new(admin::DeleteTopicsTask::new(r)),
        Request::CreatePartitions(r) => Box::new(admin::CreatePartitionsTask::new(r)),
        Request::DescribeConfigs(r) => Box::new(configs::DescribeConfigsTask::new(r)),
        Request::IncrementalAlterConfigs(r) => Box::new(configs::AlterConfigsTask::new(r)),
        Request::AlterConfigs(r) => Box::new(configs::AlterConfigsTask::legacy(r)),
        Request::DeleteRecords(r) => Box::new(delete_records::DeleteRecordsTask::new(r)),
        Request::DescribeLogDirs(r) => Box::new(log_dirs::DescribeLogDirsTask::new(r)),
        Request::DescribeProducers(r) => Box::new(producers::DescribeProducersTask::new(r)),
        Request::DescribeTopicPartitions(r) => {
            Box::new(topic_partitions::DescribeTopicPartitionsTask::new(r))
        }
        Request::InitProducerId(r) => Box::new(cluster::InitProducerIdTask::new(r)),
        Request::AddPartitionsToTxn(r) => Box::new(transactions::AddPartitionsTask::new(r)),
        Request::AddOffsetsToTxn(r) => Box::new(transactions::AddOffsetsTask::new(r)),
        Request::EndTxn(r) => Box::new(transactions::EndTxnTask::new(r)),
        Request::TxnOffsetCommit(r) => Box::new(transactions::TxnOffsetCommitTask::new(r)),
        Request::DescribeTransactions(r) => {
            Box::new(transactions::DescribeTransactionsTask::new(r))
        }
        Request::ListTransactions(r) => Box::new(transactions::ListTransactionsTask::new(r)),
        Request::DescribeCluster(r) => {
            Box::new(cluster::Static(cluster::StaticKind::DescribeCluster(r)))
        }
        Request::JoinGroup(r) => Box::new(membership::JoinGroupTask::new(r)),
        Request::SyncGroup(r) => Box::new(membership::SyncGroupTask::new(r)),
        Request::Heartbeat(r) => Box::new(membership::HeartbeatTask::new(r)),
        Request::LeaveGroup(r) => Box::new(membership::LeaveGroupTask::new(r)),
        Request::OffsetCommit(r) => Box::new(committed_offsets::OffsetCommitTask::new(r)),
        Request::OffsetFetch(r) => Box::new(committed_offsets::OffsetFetchTask::new(r)),
        Request::ListGroups(r) => Box::new(membership::ListGroupsTask::new(r)),
        Request::DescribeGroups(r) => Box::new(membership::DescribeGroupsTask::new(r)),
        Request::DeleteGroups(r) => Box::new(membership::DeleteGroupsTask::new(r)),
        Request::OffsetDelete(r) => Box::new(committed_offsets::OffsetDeleteTask::new(r)),
        Request::DescribeAcls(r) => Box::new(acls::AclsTask::Describe(r, false)),
        Request::CreateAcls(r) => Box::new(acls::AclsTask::Create(r)),
        Request::DeleteAcls(r) => Box::new(acls::AclsTask::Delete(r)),
        Request::ElectLeaders(r) => Box::new(replicas::ElectLeadersTask::new(r)),
        Request::AlterPartitionReassignments(r) => {
            Box::new(replicas::AlterReassignmentsTask::new(r))
        }
        Request::ListPartitionReassignments(_) => Box::new(replicas::ListReassignmentsTask),
        Request::DescribeUserScramCredentials(r) => {
            Box::new(scram_credentials::DescribeScramTask(r))
        }
        Request::AlterUserScramCredentials(r) => {
            Box::new(scram_credentials::AlterScramTask(r, None))
        }
        Request::DescribeClientQuotas(r) => Box::new(client_quotas::DescribeQuotasTask(r)),
        Request::AlterClientQuotas(r) => Box::new(client_quotas::AlterQuotasTask(r)),
        Request::ConsumerGroupHeartbeat(r) => {
            Box::new(consumer_groups::ConsumerGroupHeartbeatTask::new(r))
        }
        Request::ConsumerGroupDescribe(r) => {
            Box::new(consumer_groups::ConsumerGroupDescribeTask::new(r))
        }
        Request::FindCoordinator(r) => {
            Box::new(cluster::Static(cluster::StaticKind::FindCoordinator(r)))
        }
        _ => return None,
    })
}
