//! Kafka error codes, as the protocol numbers them.

/// A Kafka error code; the default is NONE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ErrorCode(pub i16);

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $v:literal,)*) => {
        impl ErrorCode {
            $($(#[doc = $doc])* pub const $name: Self = Self($v);)*

            /// Kafka's name for the code, for logs and messages.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($v => stringify!($name),)*
                    _ => "UNKNOWN",
                }
            }
        }
    };
}

codes! {
    /// An unexpected server error.
    UNKNOWN_SERVER_ERROR = -1,
    /// No error.
    NONE = 0,
    /// The offset is outside the partition's bounds.
    OFFSET_OUT_OF_RANGE = 1,
    /// The message failed its CRC check, or is otherwise corrupt.
    CORRUPT_MESSAGE = 2,
    /// No such topic or partition.
    UNKNOWN_TOPIC_OR_PARTITION = 3,
    /// The partition has no leader now; ask again.
    LEADER_NOT_AVAILABLE = 5,
    /// The request timed out.
    REQUEST_TIMED_OUT = 7,
    /// A record batch is larger than the topic's `max.message.bytes`.
    MESSAGE_TOO_LARGE = 10,
    /// The commit's metadata is longer than allowed.
    OFFSET_METADATA_TOO_LARGE = 12,
    /// The coordinator is loading its state.
    COORDINATOR_LOAD_IN_PROGRESS = 14,
    /// The coordinator is not available.
    COORDINATOR_NOT_AVAILABLE = 15,
    /// This broker is not the group's coordinator.
    NOT_COORDINATOR = 16,
    /// The topic name is invalid.
    INVALID_TOPIC_EXCEPTION = 17,
    /// The request's records are larger than allowed.
    RECORD_LIST_TOO_LARGE = 18,
    /// `acks` is not -1, 0 or 1.
    INVALID_REQUIRED_ACKS = 21,
    /// The generation is not the group's current one.
    ILLEGAL_GENERATION = 22,
    /// The member's protocols do not match the group's.
    INCONSISTENT_GROUP_PROTOCOL = 23,
    /// The group id is invalid (empty).
    INVALID_GROUP_ID = 24,
    /// The member id is not a member of the group.
    UNKNOWN_MEMBER_ID = 25,
    /// The session timeout is outside the allowed range.
    INVALID_SESSION_TIMEOUT = 26,
    /// The group is rebalancing; rejoin.
    REBALANCE_IN_PROGRESS = 27,
    /// Not authorized to access the topic.
    TOPIC_AUTHORIZATION_FAILED = 29,
    /// Not authorized to access the group.
    GROUP_AUTHORIZATION_FAILED = 30,
    /// Not authorized for a cluster-wide operation.
    CLUSTER_AUTHORIZATION_FAILED = 31,
    /// The timestamp is invalid.
    INVALID_TIMESTAMP = 32,
    /// The SASL mechanism asked for is not enabled.
    UNSUPPORTED_SASL_MECHANISM = 33,
    /// A SASL request out of order.
    ILLEGAL_SASL_STATE = 34,
    /// The version of the API is not supported.
    UNSUPPORTED_VERSION = 35,
    /// The topic exists already.
    TOPIC_ALREADY_EXISTS = 36,
    /// A bad number of partitions.
    INVALID_PARTITIONS = 37,
    /// A bad replication factor.
    INVALID_REPLICATION_FACTOR = 38,
    /// A bad replica assignment.
    INVALID_REPLICA_ASSIGNMENT = 39,
    /// A bad configuration.
    INVALID_CONFIG = 40,
    /// The request is malformed or otherwise invalid.
    INVALID_REQUEST = 42,
    /// Not authorized to use the transactional id.
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    /// Security features are disabled (no authorizer: the ACL APIs).
    SECURITY_DISABLED = 54,
    /// The partition's log cannot be read or written now.
    KAFKA_STORAGE_ERROR = 56,
    /// SASL authentication failed: wrong credentials, or a malformed exchange.
    SASL_AUTHENTICATION_FAILED = 58,
    /// No such resource (a user's SCRAM credential, say).
    RESOURCE_NOT_FOUND = 91,
    /// A resource named twice in one request.
    DUPLICATE_RESOURCE = 92,
    /// A credential that breaks the rules (too few iterations, an empty user name).
    UNACCEPTABLE_CREDENTIAL = 93,
    /// The group has members.
    NON_EMPTY_GROUP = 68,
    /// No such group.
    GROUP_ID_NOT_FOUND = 69,
    /// An idempotent producer's batch does not follow its previous one.
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    /// The producer's epoch is older than the one the partition knows.
    INVALID_PRODUCER_EPOCH = 47,
    /// The fetch session is unknown.
    FETCH_SESSION_ID_NOT_FOUND = 70,
    /// The transaction state forbids the call (an EndTxn with no transaction open, a
    /// transactional write to a partition not added to the transaction).
    INVALID_TXN_STATE = 48,
    /// The producer id is not the one the transactional id has now.
    INVALID_PRODUCER_ID_MAPPING = 49,
    /// The transaction timeout is above the coordinator's maximum, or not positive.
    INVALID_TRANSACTION_TIMEOUT = 50,
    /// Another commit or abort of the transactional id is still completing; retry.
    CONCURRENT_TRANSACTIONS = 51,
    /// Not enough replicas; retriable. A transactional write's verification that met a
    /// transaction still completing is answered so, as clients retry it without a
    /// metadata refresh.
    NOT_ENOUGH_REPLICAS = 19,
    /// The call was not attempted because another part of the request failed.
    OPERATION_NOT_ATTEMPTED = 55,
    /// A newer instance of the transactional producer took over.
    PRODUCER_FENCED = 90,
    /// No such transactional id.
    TRANSACTIONAL_ID_NOT_FOUND = 105,
    /// The transaction must be aborted (a write to a partition not in it).
    TRANSACTION_ABORTABLE = 120,
    /// The leader epoch is older than the leader's.
    FENCED_LEADER_EPOCH = 74,
    /// The leader epoch is newer than the leader's.
    UNKNOWN_LEADER_EPOCH = 75,
    /// The compression codec is not supported.
    UNSUPPORTED_COMPRESSION_TYPE = 76,
    /// Asked again too soon (a telemetry request before the push interval).
    THROTTLING_QUOTA_EXCEEDED = 89,
    /// A telemetry push for a subscription the broker did not give.
    UNKNOWN_SUBSCRIPTION_ID = 117,
    /// A telemetry push larger than the broker takes.
    TELEMETRY_TOO_LARGE = 118,
    /// Join again with the member id given.
    MEMBER_ID_REQUIRED = 79,
    /// The group is full.
    GROUP_MAX_SIZE_REACHED = 81,
    /// Another member joined with this group.instance.id.
    FENCED_INSTANCE_ID = 82,
    /// The partition already has the leader an election would choose.
    ELECTION_NOT_NEEDED = 84,
    /// No reassignment of the partition is in progress.
    NO_REASSIGNMENT_IN_PROGRESS = 85,
    /// The group is subscribed to the topic.
    GROUP_SUBSCRIBED_TO_TOPIC = 86,
    /// A record failed validation.
    INVALID_RECORD = 87,
    /// Offsets are pending a transaction.
    UNSTABLE_OFFSET_COMMIT = 88,
    /// No topic with this id.
    UNKNOWN_TOPIC_ID = 100,
    /// The member epoch is fenced; the member must abandon its partitions and rejoin.
    FENCED_MEMBER_EPOCH = 110,
    /// The instance id is still used by another member, which must leave first.
    UNRELEASED_INSTANCE_ID = 111,
    /// The assignor is not supported by the consumer group.
    UNSUPPORTED_ASSIGNOR = 112,
    /// The member epoch is stale; the member must retry once it has its current epoch.
    STALE_MEMBER_EPOCH = 113,
    /// The endpoint type is not supported.
    UNSUPPORTED_ENDPOINT_TYPE = 119,
    /// The regular expression is not valid.
    INVALID_REGULAR_EXPRESSION = 128,
}

impl From<ErrorCode> for i16 {
    fn from(code: ErrorCode) -> Self {
        code.0
    }
}
