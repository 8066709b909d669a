//! The APIs and versions the gateway serves: the single source of truth that ApiVersions
//! advertises, that the connection enforces and that the README's table is made from.

use crate::protocol::{ApiKey, VersionRange};

/// One API the gateway serves, over a range of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    /// The API.
    pub key: ApiKey,
    /// The versions served, all of which the schemas define.
    pub versions: VersionRange,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi {
        key,
        versions: VersionRange { min, max },
    }
}

/// Every API the gateway serves, in ascending key order.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v0–2 (legacy message sets) are served for real: librdkafka decides whether a broker
    // takes compressed batches from the advertised Produce range.
    api(ApiKey::Produce, 0, 11),
    // v0–3 answer in the legacy message format, which current clients never ask for.
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 0, 10),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 0, 9),
    api(ApiKey::OffsetFetch, 0, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    // Advertised only on SASL listeners; elsewhere answered ILLEGAL_SASL_STATE, as Kafka does.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 0, 7),
    api(ApiKey::DeleteTopics, 0, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 0, 4),
    // Transactions of transaction version 1 (KIP-890 part 1, with the v4+ verification):
    // EndTxn v5 belongs to version 2, which is not served, and the `transaction.version`
    // feature is not advertised, so clients keep to version 1.
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    // No authorizer: SECURITY_DISABLED, as Kafka answers without one.
    api(ApiKey::DescribeAcls, 0, 3),
    api(ApiKey::CreateAcls, 0, 3),
    api(ApiKey::DeleteAcls, 0, 3),
    api(ApiKey::DescribeConfigs, 0, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 0, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    // One broker leads every partition's one replica: the answers of such a cluster.
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    // Byte-rate quotas throttle Produce and Fetch (handlers::client_quotas, quotas).
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    // Only super users may call them; see handlers::scram_credentials.
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    // KIP-848's consumer group protocol (`group.protocol=consumer`). v1 (regular expression
    // subscriptions) is stable since Kafka 4.0; the schemas here still mark it unstable.
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 0),
    // KIP-714 with no client-metrics subscription: clients push nothing.
    api(ApiKey::GetTelemetrySubscriptions, 0, 0),
    api(ApiKey::PushTelemetry, 0, 0),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The versions of `key` the gateway serves, if it serves the key at all.
#[must_use]
pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED_APIS
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.versions)
}

/// The request header version for `key` at `version`: v2 for flexible versions, else v1
/// (v0, without a client id, only for ControlledShutdown v0, which is not a broker API).
#[must_use]
pub fn request_header_version(key: ApiKey, version: i16) -> i16 {
    if key.flexible_from().is_some_and(|f| version >= f) {
        2
    } else {
        1
    }
}

/// The response header version for `key` at `version`: v1 for flexible versions, else v0;
/// ApiVersions always answers with v0, so that a client can read it whatever it asked.
#[must_use]
pub fn response_header_version(key: ApiKey, version: i16) -> i16 {
    if key != ApiKey::ApiVersions && key.flexible_from().is_some_and(|f| version >= f) {
        1
    } else {
        0
    }
}

/// The table of supported APIs as Markdown, for the README.
#[must_use]
pub fn markdown_table() -> String {
    let mut out = String::from("| API | key | versions | flexible from |\n|---|---|---|---|\n");
    for a in SUPPORTED_APIS {
        let flex = a
            .key
            .flexible_from()
            .map_or_else(|| "-".to_string(), |f| format!("v{f}"));
        out.push_str(&format!(
            "| {} | {} | {} | {flex} |\n",
            a.key.name(),
            a.key as i16,
            a.versions
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// APIs whose latest version the schemas mark unstable but Kafka 4.0 serves as stable: the
    /// schemas predate that release.
    const STABLE_SINCE_KAFKA_4: &[ApiKey] = &[ApiKey::ConsumerGroupHeartbeat];

    #[test]
    fn the_table_serves_only_stable_versions_the_schemas_define_in_key_order() {
        for w in SUPPORTED_APIS.windows(2) {
            assert!(
                (w[0].key as i16) < (w[1].key as i16),
                "{:?} out of order",
                w[1].key
            );
        }
        for a in SUPPORTED_APIS {
            let schema = a.key.versions();
            assert!(
                a.versions.min >= schema.min && a.versions.max <= schema.max,
                "{:?}",
                a.key
            );
            assert!(a.versions.min <= a.versions.max);
            if a.key.latest_version_unstable() && !STABLE_SINCE_KAFKA_4.contains(&a.key) {
                assert!(
                    a.versions.max < schema.max,
                    "{:?} advertises an unstable version",
                    a.key
                );
            }
        }
    }

    #[test]
    fn header_versions_follow_flexibility() {
        assert_eq!(request_header_version(ApiKey::ApiVersions, 2), 1);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 3), 2);
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(request_header_version(ApiKey::Metadata, 9), 2);
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }
}
