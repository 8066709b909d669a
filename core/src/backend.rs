//! What the gateway asks of the store behind it: a small, backend-neutral vocabulary.
//!
//! A [`crate::Connection`] turns Kafka requests into [`Command`]s (and the group calls that
//! go to the coordinator instead, see [`crate::work`]); the runtime adapter hands each to a
//! [`Backend`] and feeds the [`Completion`] back. Two backends implement it: the
//! embedded in-memory store and Iggy. The vocabulary is shaped after Iggy: a Kafka topic is
//! a topic of one configured stream, Kafka partition `p` is partition `p`, Kafka offsets are
//! the partition's 0-based, dense message offsets, and records travel as
//! [`crate::message::IggyMessage`]s mapped per `docs/MAPPING.md`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;

use crate::message::{MessageList, Messages};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::Uuid;

/// A topic, by name or (Kafka's topic id) by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// By name.
    Name(String),
    /// By topic id.
    Id(Uuid),
}

impl fmt::Display for TopicRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Id(id) => write!(f, "{id:?}"),
        }
    }
}

/// Topic configuration the backends honour. `None` means "the default" (see
/// [`crate::topic_config`] for names, defaults and validation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicConfig {
    /// `retention.ms`: messages older than this are dropped; `-1` keeps them forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: per partition; the oldest messages are dropped beyond it; `-1` means
    /// no limit but the backend's own.
    pub retention_bytes: Option<i64>,
    /// `max.message.bytes`: the largest record batch a producer may send.
    pub max_message_bytes: Option<i32>,
    /// `message.timestamp.type` is `LogAppendTime` rather than `CreateTime`.
    pub log_append_time: Option<bool>,
    /// `segment.bytes`: the size at which a partition's log starts a new segment, where the
    /// backend stores records in segments (retention drops whole segments).
    pub segment_bytes: Option<i32>,
    /// `flush.messages`: how many records may be written before they are forced to disk;
    /// `1` forces every write.
    pub flush_messages: Option<i64>,
}

/// One change to a topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The Kafka config name.
    pub name: String,
    /// The new value, or `None` to restore the default.
    pub value: Option<String>,
}

/// What the backend knows of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The name, which is also the Iggy topic's name.
    pub name: String,
    /// Kafka's topic id: stable while the topic exists, new when it is re-created.
    pub id: Uuid,
    /// Number of partitions, numbered from 0.
    pub partitions: u32,
    /// The configuration overrides.
    pub config: TopicConfig,
}

/// An idempotent producer as a partition remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// Its id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The sequence number of its last record appended.
    pub last_sequence: i32,
    /// The first offset of its transaction open on the partition, if it has one.
    pub current_txn_start_offset: Option<u64>,
}

/// A partition's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// The first offset still held (Kafka's log start offset).
    pub log_start: u64,
    /// The offset the next message will get (Kafka's high watermark and log end offset).
    pub high_watermark: u64,
    /// The bytes the partition holds, where the answer knows them (Offsets does; a read's
    /// bounds do not).
    pub size_bytes: Option<u64>,
    /// The last stable offset: the first offset of the earliest transaction still open on
    /// the partition, else the high watermark. `None` means the high watermark (a backend
    /// that keeps no transactions).
    pub last_stable: Option<u64>,
}

impl PartitionOffsets {
    /// The last stable offset (see [`PartitionOffsets::last_stable`]), never below the log
    /// start: a transaction open since offsets retention or DeleteRecords dropped holds
    /// back nothing older than what is left (Kafka's `maybeIncrementFirstUnstableOffset`).
    #[must_use]
    pub fn last_stable_offset(&self) -> u64 {
        self.last_stable
            .unwrap_or(self.high_watermark)
            .min(self.high_watermark)
            .max(self.log_start)
    }
}

/// An aborted transaction a read_committed fetch reports: the consumer drops this producer's
/// transactional records from `first_offset` until its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// The transaction's first offset in the partition.
    pub first_offset: u64,
    /// The offset of its abort marker.
    pub last_offset: u64,
}

/// Where a watch looks: a partition and the offset whose arrival it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPartition {
    /// The topic.
    pub topic: TopicRef,
    /// The partition.
    pub partition: u32,
    /// The watch fires once the high watermark is above this offset.
    pub offset: u64,
}

/// The idempotent-producer fields of an append: the backend appends a batch once, however
/// often the producer retries it (as Kafka does for the last five batches of each producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The producer id (from InitProducerId).
    pub producer_id: i64,
    /// The producer epoch.
    pub epoch: i16,
    /// The sequence number of the first record.
    pub first_sequence: i32,
    /// How many records (sequence numbers) the batch spans.
    pub count: i32,
    /// The batch belongs to a transaction (attributes bit 4): the backend keeps it open in
    /// the partition's transaction index until the producer's marker closes it.
    pub transactional: bool,
}

impl ProducerBatch {
    /// The sequence number of the last record; sequences wrap to 0 after `i32::MAX`.
    #[must_use]
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.first_sequence) + i64::from(self.count.max(1)) - 1;
        i32::try_from(last % (i64::from(i32::MAX) + 1)).unwrap_or(0)
    }

    /// The sequence that must follow `last`: sequences wrap to 0 after `i32::MAX`.
    #[must_use]
    pub fn next_sequence(last: i32) -> i32 {
        if last == i32::MAX {
            0
        } else {
            last + 1
        }
    }
}

/// An offset a consumer group committed for a partition, with what Kafka keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read (Kafka's meaning; 0 is a valid commit).
    pub offset: i64,
    /// The leader epoch of the record last read, or -1.
    pub leader_epoch: i32,
    /// The commit's metadata string, as the client sent it.
    pub metadata: Option<String>,
}

/// A transaction's state, as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Open: partitions or offsets added.
    Ongoing,
    /// Decided to commit; markers being written.
    PrepareCommit,
    /// Decided to abort; markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
        }
    }

    pub(crate) fn preparing(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }
}

/// What one transactional id holds: what a log of the coordinator's state records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnSnapshot {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// The producer id it had before its epochs ran out, or -1.
    pub previous_producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// The epoch before the last bump (or producer id rotation) asked for with an
    /// expected epoch, or -1.
    pub last_epoch: i16,
    /// Its transaction timeout.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// The partitions of the open (or completing) transaction.
    pub partitions: Vec<(String, u32)>,
    /// The groups whose offsets it commits, with the offsets sent so far.
    pub offsets: Vec<(String, Vec<GroupOffset>)>,
}

/// Kafka's rule for CreatePartitions: a topic's partition count only grows.
///
/// # Errors
/// [`BackendError::InvalidPartitions`], with Kafka's message, when `total` does not exceed
/// `current`.
pub fn check_partition_growth(current: u32, total: u32) -> Result<(), BackendError> {
    if total < current {
        return Err(BackendError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {total}."
        )));
    }
    if total == current {
        return Err(BackendError::InvalidPartitions(format!(
            "Topic already has {current} partitions."
        )));
    }
    Ok(())
}

/// A group's committed offsets as a backend keeps them, by (topic, partition).
pub type GroupOffsets = std::collections::BTreeMap<(String, u32), CommittedOffset>;

/// What a [`Command::FetchOffsets`] gets from a group's `offsets`: all of them, or those of
/// `only` that exist (a partition without a commit is simply absent).
#[must_use]
pub fn select_offsets(offsets: &GroupOffsets, only: Option<&[(String, u32)]>) -> Vec<GroupOffset> {
    let entry = |(t, p): &(String, u32), c: &CommittedOffset| GroupOffset {
        topic: t.clone(),
        partition: *p,
        committed: c.clone(),
    };
    match only {
        None => offsets.iter().map(|(k, c)| entry(k, c)).collect(),
        Some(only) => only
            .iter()
            .filter_map(|k| offsets.get(k).map(|c| entry(k, c)))
            .collect(),
    }
}

/// A partition's committed offset in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The commit.
    pub committed: CommittedOffset,
}

/// A request to the backend. Each completes with the [`Completion`] variant of the same name.
///
/// Not `non_exhaustive`: every backend matches every command, so that a new one cannot be
/// forgotten by any of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Append messages to a partition, all or none, in order.
    Append {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The messages.
        messages: MessageList,
        /// The largest record batch they came in, in bytes, for `max.message.bytes`.
        largest_batch: usize,
        /// For an idempotent producer's batch: a retry of one of its last five batches is
        /// answered with the first append's offset instead of being appended again.
        producer: Option<ProducerBatch>,
    },
    /// Read messages from `offset` on.
    Read {
        /// The topic.
        topic: TopicRef,
        /// The partition.
        partition: u32,
        /// The first offset wanted.
        offset: u64,
        /// Stop once this many bytes (as [`crate::message::message_size`] counts them) are read; the first
        /// message is returned whatever its size.
        max_bytes: usize,
        /// Stop after this many messages.
        max_messages: usize,
    },
    /// A partition's bounds.
    Offsets {
        /// The topic.
        topic: TopicRef,
        /// The partition.
        partition: u32,
    },
    /// The first message whose Kafka timestamp is at least `timestamp_ms`.
    OffsetForTimestamp {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Milliseconds since the epoch.
        timestamp_ms: i64,
    },
    /// The message with the largest Kafka timestamp (the first of them, if several share
    /// it): Kafka's `MAX_TIMESTAMP`.
    MaxTimestamp {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// Topics: all of them, or those named (missing ones are left out).
    ListTopics {
        /// `None` for every topic.
        only: Option<Vec<TopicRef>>,
    },
    /// Create a topic.
    CreateTopic {
        /// The name.
        name: String,
        /// The number of partitions.
        partitions: u32,
        /// Configuration overrides, already validated.
        config: TopicConfig,
        /// Check only; create nothing.
        validate_only: bool,
    },
    /// Delete a topic and its messages.
    DeleteTopic {
        /// The topic.
        topic: TopicRef,
    },
    /// Grow a topic to `total` partitions.
    CreatePartitions {
        /// The topic.
        topic: String,
        /// The new number of partitions.
        total: u32,
        /// Check only.
        validate_only: bool,
    },
    /// Change a topic's configuration.
    AlterTopicConfig {
        /// The topic.
        topic: String,
        /// The new overrides, already validated (the whole set, replacing the old one).
        config: TopicConfig,
        /// Check only.
        validate_only: bool,
    },
    /// A new idempotent-producer id, unique among this backend's producers.
    AllocateProducerId,
    /// The idempotent producers a partition remembers (Kafka's DescribeProducers).
    DescribeProducers {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// Advance a partition's log start offset (Kafka's DeleteRecords): the records before
    /// `offset` are gone for every reader. An offset at or below the log start changes
    /// nothing; one past the high watermark is [`BackendError::OffsetOutOfRange`].
    DeleteRecords {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The new log start, or `None` for the high watermark (delete every record).
        offset: Option<u64>,
    },
    /// Append a transaction's commit or abort marker (a control record, see
    /// `docs/MAPPING.md`) for `producer_id` to a partition, closing the producer's open
    /// transaction there, if it has one.
    WriteMarker {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer whose transaction ends.
        producer_id: i64,
        /// The epoch the marker carries; older epochs of the producer are fenced from then on.
        epoch: i16,
        /// Commit (or abort).
        commit: bool,
        /// The coordinator's epoch, written into the marker.
        coordinator_epoch: i32,
    },
    /// A user's permissions, for authorization by the backend's own users (Iggy's): the
    /// permissions of the backend user named `user`, with streams and topics by name.
    UserPermissions {
        /// The user, as the client authenticated.
        user: String,
    },
    /// Whether `password` is backend user `user`'s (SASL/PLAIN checked by the backend; on
    /// Iggy, a login with them on a session of its own).
    VerifyPassword {
        /// The user, as the client named it.
        user: String,
        /// The password the client gave.
        password: crate::sasl::Password,
    },
    /// Keep these SCRAM credential changes (AlterUserScramCredentials) where they outlive
    /// the gateway: on Iggy, a gateway-owned topic replayed at start; the embedded store
    /// keeps them in memory only, as the users do.
    StoreScramCredentials {
        /// The changes, at most one per user.
        changes: Vec<crate::sasl::ScramChange>,
    },
    /// The SCRAM credential changes kept since `since` (a place of
    /// [`Completion::StoreScramCredentials`] or of an earlier answer to this), including
    /// those other gateways on the same backend kept: on Iggy, the credentials topic's new
    /// records are read. Each gateway asks this on its clock
    /// ([`crate::driver::drive_scram_credentials`]), so that a change made through any
    /// gateway takes effect on all of them.
    FollowScramCredentials {
        /// The greatest place already applied; 0 for everything.
        since: u64,
    },
    /// Keep these changes of the transaction coordinator's state
    /// ([`crate::txn::TxnEffect::Persist`], the latest of a transactional id wins) where
    /// they outlive the gateway, in this order and after those of earlier calls; `None`
    /// when the id is forgotten. On Iggy, a gateway-owned topic replayed at start; the
    /// embedded store keeps its data in memory only, so there is nothing to keep them in.
    PersistTxns {
        /// The changes, oldest first.
        changes: Vec<(String, Option<TxnSnapshot>)>,
    },
    /// Store a group's committed offsets, each replacing the partition's previous one.
    /// Offsets of partitions that do not exist are refused one by one.
    CommitOffsets {
        /// The group.
        group: String,
        /// The offsets.
        offsets: Vec<GroupOffset>,
    },
    /// A group's committed offsets: of the partitions named, or all of them.
    FetchOffsets {
        /// The group.
        group: String,
        /// `None` for every partition with a committed offset.
        only: Option<Vec<(String, u32)>>,
    },
    /// Remove a group's committed offsets: of the partitions named, or all of them.
    DeleteOffsets {
        /// The group.
        group: String,
        /// `None` for all of them (the group is deleted).
        only: Option<Vec<(String, u32)>>,
    },
    /// The groups that have committed offsets.
    ListGroups,
    /// Complete once any of `partitions` has a message at or after its offset (or is gone).
    /// The backend may complete it early; it must not hold it past `deadline`.
    Watch {
        /// What to watch.
        partitions: Vec<WatchPartition>,
        /// When the connection stops caring.
        deadline: Instant,
    },
}

impl Command {
    /// The deadline a backend must not hold this command past, if it has one.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Watch { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The offset of the first message appended.
    pub base_offset: u64,
    /// The append time (ms) when the topic uses log-append time.
    pub log_append_time_ms: Option<i64>,
    /// The partition's log start offset after the append.
    pub log_start: u64,
}

/// The outcome of a read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadResult {
    /// The topic's name (a read by id learns it here).
    pub topic: String,
    /// The messages, in offset order, without gaps.
    pub messages: Messages,
    /// The partition's bounds when it was read.
    pub offsets: PartitionOffsets,
    /// The aborted transactions whose range (first offset to abort marker) overlaps the
    /// messages read, by first offset.
    pub aborted: Vec<AbortedTxn>,
}

/// The outcome of a [`Command`], variant by variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Of [`Command::Append`].
    Append(Result<Appended, BackendError>),
    /// Of [`Command::Read`].
    Read(Result<ReadResult, BackendError>),
    /// Of [`Command::Offsets`].
    Offsets(Result<PartitionOffsets, BackendError>),
    /// Of [`Command::OffsetForTimestamp`]: the offset and its timestamp, or none.
    OffsetForTimestamp(Result<Option<(u64, i64)>, BackendError>),
    /// Of [`Command::MaxTimestamp`]: the offset and its timestamp, or none (no messages).
    MaxTimestamp(Result<Option<(u64, i64)>, BackendError>),
    /// Of [`Command::ListTopics`].
    ListTopics(Result<Vec<TopicInfo>, BackendError>),
    /// Of [`Command::CreateTopic`]: the topic (as it would be, when only validating).
    CreateTopic(Result<TopicInfo, BackendError>),
    /// Of [`Command::DeleteTopic`]: the topic that was deleted.
    DeleteTopic(Result<TopicInfo, BackendError>),
    /// Of [`Command::CreatePartitions`].
    CreatePartitions(Result<(), BackendError>),
    /// Of [`Command::AlterTopicConfig`].
    AlterTopicConfig(Result<(), BackendError>),
    /// Of [`Command::AllocateProducerId`].
    AllocateProducerId(Result<i64, BackendError>),
    /// Of [`Command::DescribeProducers`]: by producer id.
    DescribeProducers(Result<Vec<ActiveProducer>, BackendError>),
    /// Of [`Command::DeleteRecords`]: the partition's log start offset after it.
    DeleteRecords(Result<u64, BackendError>),
    /// Of [`Command::WriteMarker`]: the marker's offset.
    WriteMarker(Result<u64, BackendError>),
    /// Of [`Command::UserPermissions`]: `None` when the backend has no such user.
    UserPermissions(Result<Option<crate::authz::Permissions>, BackendError>),
    /// Of [`Command::VerifyPassword`]: whether the backend accepted the password.
    VerifyPassword(Result<bool, BackendError>),
    /// Of [`Command::StoreScramCredentials`]: all of them kept, with their place in the
    /// order the backend keeps changes in (greater for each store after it), or none.
    /// The credentials in memory follow that order, whatever order the answers reach
    /// their connections in.
    StoreScramCredentials(Result<u64, BackendError>),
    /// Of [`Command::FollowScramCredentials`]: each credential (or deletion) kept at a
    /// place after `since`, with its place, the latest per user and mechanism.
    FollowScramCredentials(Result<Vec<(crate::sasl::ScramChange, u64)>, BackendError>),
    /// Of [`Command::PersistTxns`]: all of them kept (an error: some may have been).
    PersistTxns(Result<(), BackendError>),
    /// Of [`Command::CommitOffsets`]: one result per offset, in order.
    CommitOffsets(Vec<Result<(), BackendError>>),
    /// Of [`Command::FetchOffsets`]: the committed offsets found.
    FetchOffsets(Result<Vec<GroupOffset>, BackendError>),
    /// Of [`Command::DeleteOffsets`]: how many offsets were removed.
    DeleteOffsets(Result<usize, BackendError>),
    /// Of [`Command::ListGroups`].
    ListGroups(Result<Vec<String>, BackendError>),
    /// Of [`Command::Watch`]: something may have changed, or the deadline passed.
    Watch,
}

/// Why a command failed, in terms a Kafka error code can express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(TopicRef),
    /// No such partition.
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The offset is outside the partition's bounds.
    #[error("offset {offset} is outside {log_start}..={high_watermark}")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset held.
        log_start: u64,
        /// The next offset.
        high_watermark: u64,
    },
    /// The topic name is not allowed (reserved, or refused by the backend).
    #[error("invalid topic name {0}")]
    InvalidTopic(String),
    /// The topic exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// A bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A bad topic configuration.
    #[error("{0}")]
    InvalidConfig(String),
    /// A batch larger than the topic's `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// The batch size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An idempotent producer's batch does not follow its last one.
    #[error("producer {producer_id}: sequence {got} does not follow {last}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// The batch's first sequence.
        got: i32,
        /// The last sequence appended.
        last: i32,
    },
    /// An idempotent producer's epoch is older than the partition has seen.
    #[error("producer {producer_id}: epoch {got} is older than {current}")]
    ProducerFenced {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        got: i16,
        /// The newest epoch seen.
        current: i16,
    },
    /// A message the backend refuses (empty payload, headers over its limits).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The backend is not reachable now; the client may retry.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the gateway's credentials.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// A transactional write the transaction coordinator refuses (not in an ongoing
    /// transaction, a fenced epoch), with Kafka's code.
    #[error("{message}")]
    Transaction {
        /// Kafka's code.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// Anything else.
    #[error("backend error: {0}")]
    Other(String),
}

impl BackendError {
    /// The Kafka error code for this failure.
    #[must_use]
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnknownTopic(TopicRef::Id(_)) => ErrorCode::UNKNOWN_TOPIC_ID,
            Self::UnknownTopic(TopicRef::Name(_)) | Self::UnknownPartition { .. } => {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            }
            Self::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            Self::TopicExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS,
            Self::InvalidTopic(_) => ErrorCode::INVALID_TOPIC_EXCEPTION,
            Self::InvalidPartitions(_) => ErrorCode::INVALID_PARTITIONS,
            Self::InvalidConfig(_) => ErrorCode::INVALID_CONFIG,
            Self::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            Self::InvalidMessage(_) => ErrorCode::INVALID_RECORD,
            Self::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            Self::ProducerFenced { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
            Self::Unavailable(_) => ErrorCode::REQUEST_TIMED_OUT,
            Self::Unauthorized(_) => ErrorCode::TOPIC_AUTHORIZATION_FAILED,
            Self::Transaction { code, .. } => *code,
            Self::Other(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
        }
    }
}

/// A command's execution: done at once, or a future to drive.
pub enum Execution {
    /// Completed synchronously.
    Done(Completion),
    /// Completes later. Runtime-neutral: it needs no particular executor.
    Pending(Pin<Box<dyn Future<Output = Completion> + Send + 'static>>),
}

impl fmt::Debug for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done(c) => f.debug_tuple("Done").field(c).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// Runs commands. Shared by every connection of a gateway.
pub trait Backend: Send + Sync + 'static {
    /// Starts `command`. Commands of one connection are handed over in an order that already
    /// keeps Kafka's guarantees, and may run concurrently.
    ///
    /// Plain appends (without a producer batch) to one partition are handed over in request
    /// order without waiting for each other to complete: the backend must apply them in
    /// the order `execute` was called (for instance by queueing each on the partition's
    /// one connection before returning), so a connection's appends land in request order
    /// while several are in flight.
    ///
    /// A transactional append handed over before a `WriteMarker` of its producer to the same
    /// partition must not land after that marker: it lands before it, or is refused with
    /// INVALID_TXN_STATE (the transaction it was verified in has ended).
    fn execute(&self, command: Command) -> Execution;

    /// Whether the backend can serve now (a remote store reachable and logged in), for a
    /// readiness probe.
    fn is_ready(&self) -> bool {
        true
    }

    /// One line for a person about the backend and its state.
    fn describe(&self) -> String {
        String::new()
    }

    /// What the backend reports about itself, for an exporter.
    fn metrics(&self) -> Vec<crate::stats::Metric> {
        Vec::new()
    }

    /// Keeps the group coordinator's state across restarts (see
    /// [`crate::group::GroupConfig::keep_state`]): each group's latest state, or `None` for
    /// a group that is gone; done once kept. A backend that keeps nothing across restarts
    /// answers at once.
    fn keep_groups(&self, groups: Vec<(String, Option<Bytes>)>) -> KeepGroups {
        drop(groups);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The write of [`Backend::keep_groups`].
pub type KeepGroups = Pin<Box<dyn Future<Output = Result<(), BackendError>> + Send + 'static>>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_last_stable_offset_is_within_the_log() {
        let offsets = |log_start, last_stable| PartitionOffsets {
            log_start,
            high_watermark: 10,
            size_bytes: None,
            last_stable,
        };
        assert_eq!(offsets(0, Some(3)).last_stable_offset(), 3);
        assert_eq!(offsets(0, None).last_stable_offset(), 10);
        assert_eq!(offsets(0, Some(12)).last_stable_offset(), 10);
        // A transaction open from offset 3, offsets before 5 deleted.
        assert_eq!(offsets(5, Some(3)).last_stable_offset(), 5);
    }

    /// A plausible successful completion of `command`, for tests of the connection alone.
    pub(crate) fn succeed(command: &Command) -> Completion {
        let info = |name: &str, partitions| TopicInfo {
            name: name.into(),
            id: Uuid([7; 16]),
            partitions,
            config: TopicConfig::default(),
        };
        match command {
            Command::Append { .. } => Completion::Append(Ok(Appended {
                base_offset: 0,
                log_append_time_ms: None,
                log_start: 0,
            })),
            Command::Read { .. } => Completion::Read(Ok(ReadResult::default())),
            Command::Offsets { .. } => Completion::Offsets(Ok(PartitionOffsets::default())),
            Command::OffsetForTimestamp { .. } => Completion::OffsetForTimestamp(Ok(None)),
            Command::MaxTimestamp { .. } => Completion::MaxTimestamp(Ok(None)),
            Command::ListTopics { .. } => Completion::ListTopics(Ok(Vec::new())),
            Command::CreateTopic {
                name, partitions, ..
            } => Completion::CreateTopic(Ok(info(name, *partitions))),
            Command::DeleteTopic { .. } => Completion::DeleteTopic(Ok(info("t", 1))),
            Command::CreatePartitions { .. } => Completion::CreatePartitions(Ok(())),
            Command::AlterTopicConfig { .. } => Completion::AlterTopicConfig(Ok(())),
            Command::AllocateProducerId => Completion::AllocateProducerId(Ok(1)),
            Command::DescribeProducers { .. } => Completion::DescribeProducers(Ok(Vec::new())),
            Command::DeleteRecords { offset, .. } => {
                Completion::DeleteRecords(Ok(offset.unwrap_or(0)))
            }
            Command::UserPermissions { .. } => Completion::UserPermissions(Ok(None)),
            Command::WriteMarker { .. } => Completion::WriteMarker(Ok(0)),
            Command::VerifyPassword { .. } => Completion::VerifyPassword(Ok(false)),
            Command::StoreScramCredentials { .. } => Completion::StoreScramCredentials(Ok(1)),
            Command::FollowScramCredentials { .. } => {
                Completion::FollowScramCredentials(Ok(Vec::new()))
            }
            Command::PersistTxns { .. } => Completion::PersistTxns(Ok(())),
            Command::CommitOffsets { offsets, .. } => {
                Completion::CommitOffsets(offsets.iter().map(|_| Ok(())).collect())
            }
            Command::FetchOffsets { .. } => Completion::FetchOffsets(Ok(Vec::new())),
            Command::DeleteOffsets { .. } => Completion::DeleteOffsets(Ok(0)),
            Command::ListGroups => Completion::ListGroups(Ok(Vec::new())),
            Command::Watch { .. } => Completion::Watch,
        }
    }
}
