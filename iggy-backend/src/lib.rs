//! The Iggy backend: every record, topic and committed offset lives in a real Iggy server.
//!
//! Each backend command becomes one or a few requests of Iggy's binary protocol, queued on
//! the [`Lanes`] of a connection pool that a runtime drives (`iggy_kafka_core::iggy`). A
//! Kafka topic is the Iggy topic of the same name in the configured stream, partition p is
//! partition p, offsets are Iggy's; records are Iggy messages as `docs/MAPPING.md` says.
//!
//! Ordering: a partition's appends go down one lane at a time (one Iggy connection, one
//! request at a time), so they reach Iggy in the order they were issued; when a partition
//! moves to the lane Iggy serves it fastest on ([`placement`]), its next append waits for the
//! last one on the old lane.
//! Idempotent appends to a partition are also serialized here, because the gateway keeps the
//! producer state (Iggy has no deduplication).
//!
//! Committed group offsets are records in a gateway-owned topic ([`offsets`]), replayed by
//! [`IggyBackend::connect`], and mirrored into Iggy consumer offsets named after the group.
//!
//! Long polls: Iggy cannot notify, so a waiting fetch asks for the partition's offsets at
//! most once per poll interval, and at once when this gateway appended to a partition it
//! watches.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use iggy_binary_protocol::codes::{
    CREATE_PARTITIONS_CODE, CREATE_STREAM_CODE, CREATE_TOPIC_CODE, DELETE_CONSUMER_OFFSET_CODE,
    DELETE_TOPIC_CODE, GET_STREAM_CODE, GET_TOPIC_CODE, POLL_MESSAGES_CODE, SEND_MESSAGES_CODE,
    STORE_CONSUMER_OFFSET_CODE, UPDATE_TOPIC_CODE,
};
use iggy_binary_protocol::requests::consumer_offsets::{
    DeleteConsumerOffsetRequest, StoreConsumerOffsetRequest,
};
use iggy_binary_protocol::requests::messages::PollMessagesRequest;
use iggy_binary_protocol::requests::partitions::CreatePartitionsRequest;
use iggy_binary_protocol::requests::streams::{CreateStreamRequest, GetStreamRequest};
use iggy_binary_protocol::requests::topics::{
    CreateTopicRequest, DeleteTopicRequest, GetTopicRequest, UpdateTopicRequest,
};
use iggy_binary_protocol::responses::messages::SendMessagesResponse;
use iggy_binary_protocol::responses::streams::get_stream::TopicHeader;
use iggy_binary_protocol::responses::streams::GetStreamResponse;
use iggy_binary_protocol::responses::topics::GetTopicResponse;
use iggy_binary_protocol::{
    AckLevel, WireConsumer, WireDecode, WireEncode, WireIdentifier, WireName, WireOptions,
    WirePollingStrategy,
};
use iggy_kafka_core::backend::{
    check_partition_growth, select_offsets, Appended, Backend, BackendError, Command, Completion,
    Execution, GroupOffset, PartitionOffsets, ProducerBatch, ReadResult, TopicConfig, TopicInfo,
    TopicRef, WatchPartition,
};
use iggy_kafka_core::iggy::{Clock, Failure, Lanes, PendingCall, Predecessor};
use iggy_kafka_core::mapping::{IggyMessage, MessageList};
use iggy_kafka_core::producers::Producers;
use iggy_kafka_core::protocol::Uuid;

mod offsets;
mod placement;
mod timestamps;
mod wire;

use offsets::{OffsetsState, Record};
use placement::{Kind, Placement};
use timestamps::{MaxTimestamps, Run};
use wire::{backend_error, code, named, Stamped};

/// How the Iggy backend behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IggyConfig {
    /// The Iggy stream that holds the Kafka topics.
    pub stream: String,
    /// Create the stream when it is missing.
    pub create_stream: bool,
    /// Create topics (the Kafka clients' and the offsets topic) that Iggy writes out before
    /// acknowledging each append, rather than with Iggy's default, which holds up to 1,024
    /// acknowledged messages in memory.
    pub write_through: bool,
    /// The longest a waiting fetch goes without asking Iggy for new data.
    pub poll_interval: Duration,
    /// Kafka's `max.message.bytes` for every topic (Iggy has no per-topic equivalent).
    pub max_message_bytes: usize,
    /// Randomness for producer and message ids, so they do not repeat across restarts.
    pub seed: u64,
}

impl Default for IggyConfig {
    fn default() -> Self {
        Self {
            stream: "kafka".into(),
            create_stream: true,
            write_through: true,
            poll_interval: Duration::from_millis(100),
            max_message_bytes: usize::try_from(
                iggy_kafka_core::topic_config::DEFAULT_MAX_MESSAGE_BYTES,
            )
            .unwrap_or(usize::MAX),
            seed: 0,
        }
    }
}

/// The backend. Cheap to clone: clones share the pool and the state.
#[derive(Clone)]
pub struct IggyBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IggyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IggyBackend")
            .field("stream", &self.inner.config.stream)
            .finish_non_exhaustive()
    }
}

struct Inner {
    lanes: Arc<Lanes>,
    clock: Arc<dyn Clock>,
    config: IggyConfig,
    stream: WireIdentifier,
    /// Held while the offsets log is written, so that the log and the state agree.
    offsets_gate: Gate,
    offsets: Mutex<OffsetsState>,
    /// Per topic, per partition: looked up by `&str` on every append and read.
    partitions: Mutex<HashMap<String, HashMap<u32, Arc<PartitionState>>>>,
    /// The stream's topics as last seen (the gateway's own left out): their partition counts,
    /// to check commits without a round trip (refreshed from Iggy when a commit names
    /// something it does not hold), and their ids, to notice one created again.
    known: Mutex<HashMap<String, Known>>,
    /// Kafka topic ids to names, as of the last listing: fetches by id (v13+) then cost no
    /// extra round trip. A topic deleted and created again outside the gateway is noticed at
    /// the next listing (clients list topics when they refresh metadata) or question about
    /// the topic.
    ids: Mutex<HashMap<Uuid, String>>,
    next_producer_id: AtomicI64,
    next_message_id: AtomicU64,
    /// A running estimate of a stored message's size, to size polls.
    message_size: AtomicUsize,
    /// Bytes (estimated) that polls sent ahead hold or will hold, all partitions together.
    read_ahead_bytes: Arc<AtomicUsize>,
    /// When polls sent ahead were last swept for staleness across all partitions.
    read_ahead_swept: Mutex<Option<Instant>>,
    /// Each topic's latest description from Iggy, shared by the fetches waiting on it.
    looks: Mutex<HashMap<String, Look>>,
    /// When the backend started: the origin of the waiting fetches' common beat.
    started: Instant,
    /// Whether another writer of the committed-offsets log was reported (once per run).
    another_writer_told: AtomicBool,
    /// Whether an append to the committed-offsets log failed in a way that may have landed.
    offsets_in_doubt: AtomicBool,
    /// The stream's Kafka topics as last listed, served while Iggy cannot be reached: a
    /// broker that cannot reach its storage still knows its topics, and clients told that
    /// every topic is gone drop them from their assignments.
    listing: Mutex<Option<Vec<TopicInfo>>>,
}

#[derive(Default)]
struct PartitionState {
    /// Serializes idempotent appends (check, append, record).
    gate: Gate,
    producers: Mutex<Producers>,
    /// Whether the producers' recent batches were read back from the partition's tail
    /// (once per gateway run, before its first idempotent append).
    recovered: AtomicBool,
    /// An idempotent batch sent whose reply was lost: whether Iggy applied it is found out
    /// before the partition's next idempotent append.
    doubt: Mutex<Option<Doubt>>,
    /// One past the highest offset this gateway has seen taken here (by its appends, reads
    /// and offset queries), 0 before it has seen any: where an append sent now lands at the
    /// earliest.
    seen_end: AtomicU64,
    /// The partition's bytes per message as Iggy last reported them, 0 before.
    message_size: AtomicUsize,
    log_start: AtomicU64,
    /// Notified when this gateway appended here: wakes the fetches waiting on it.
    appended: Event,
    /// Polls sent ahead of sequential readers, newest last.
    read_ahead: Mutex<Vec<ReadAhead>>,
    /// Where the largest Kafka timestamps are, as far as they were read; `timestamps_gate`
    /// lets one read at a time fill it in.
    timestamps: Mutex<MaxTimestamps>,
    timestamps_gate: Gate,
    /// Which lane serves the partition's appends and reads; set at its first request.
    route: Mutex<Option<Route>>,
}

/// What is known of a topic's latest description from Iggy, for the fetches waiting on it.
#[derive(Default)]
struct Look {
    /// The latest answer, and when it was asked.
    latest: Option<(Instant, Arc<GetTopicResponse>)>,
    /// A request on its way, and when it was asked: fetches needing a look as recent wait
    /// for it rather than ask again.
    asking: Option<(Instant, Arc<Event>)>,
}

/// Ends an ask of [`Inner::look`] however it ends (answered, failed, or dropped with its
/// fetch): the waiting fetches are told, and look again.
struct Asking<'a> {
    looks: &'a Mutex<HashMap<String, Look>>,
    topic: &'a str,
    done: Arc<Event>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if let Some(look) = lock(self.looks).get_mut(self.topic) {
            if look
                .asking
                .as_ref()
                .is_some_and(|(_, e)| Arc::ptr_eq(e, &self.done))
            {
                look.asking = None;
            }
        }
        self.done.notify(usize::MAX);
    }
}

/// A topic as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    id: Uuid,
    partitions: u32,
}

impl Known {
    fn of(t: &TopicHeader) -> Self {
        Self {
            id: wire::topic_id(t),
            partitions: t.partitions_count,
        }
    }
}

/// A partition's lane, and its last append, which an append on another lane must wait for.
struct Route {
    placement: Placement,
    last_append: Option<(usize, Predecessor)>,
}

/// An append queued on a lane.
struct Queued {
    state: Arc<PartitionState>,
    lane: usize,
    call: PendingCall,
}

/// An idempotent batch whose fate is unknown: sent, and the connection lost before Iggy's
/// reply. Iggy does not deduplicate, so without finding out, the producer's retry would be
/// appended a second time.
#[derive(Debug, Clone, Copy)]
struct Doubt {
    batch: ProducerBatch,
    /// Where it landed at the earliest.
    from: u64,
}

impl PartitionState {
    fn saw_end(&self, end: u64) {
        self.seen_end.fetch_max(end, Ordering::Relaxed);
    }
}

/// The tail of a partition read back for its idempotent producers' recent batches, in bytes
/// (estimated from the running message size; see [`Inner::recover_producers`]).
const RECOVER_BYTES: usize = 1 << 20;

/// The bytes a poll of a scan asks for (estimated from the message size; see
/// [`Inner::scan_count`]): while looking for a batch in doubt (see
/// [`Inner::resolve_doubt`]) and for the largest timestamp (see [`Inner::max_timestamp`]).
const SCAN_POLL_BYTES: usize = 4 << 20;
/// The bytes of replies read while looking for a batch in doubt before giving up.
const DOUBT_SCAN_BYTES: usize = 256 << 20;

/// A poll sent for the offsets right after what a read returned, while the reader (a
/// consumer, one fetch at a time) is still busy with that: its next reads find the messages
/// waiting or on their way instead of paying a round trip to Iggy each.
struct ReadAhead {
    /// The offsets asked for: `from` and the `count` after it.
    from: u64,
    count: u32,
    sent: Instant,
    reply: AheadReply,
    held: Held,
}

/// A share of [`READ_AHEAD_BYTES`], given back when the poll sent ahead is dropped (taken,
/// stale, evicted, or its partition forgotten).
struct Held {
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

enum AheadReply {
    /// On the partition's `lane`.
    Sent { lane: usize, call: PendingCall },
    /// Answered, and part of it read already.
    Kept(Bytes),
}

impl ReadAhead {
    fn covers(&self, offset: u64) -> bool {
        offset >= self.from && offset - self.from < u64::from(self.count)
    }

    /// Still usable at `now` (see [`READ_AHEAD_FOR`]).
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.sent) < READ_AHEAD_FOR
    }
}

/// Polls kept sent ahead per partition: two per reader (the next two fetches' worth, so
/// that Iggy always has the next one to answer), for two readers at once (consumers of two
/// groups).
const READ_AHEADS: usize = 4;
/// How far ahead of a reader its polls go, in polls.
const READ_AHEAD_DEPTH: u64 = 2;
/// What polls sent ahead may hold at once, all partitions together (estimated from the
/// running message size): readers past it wait for Iggy as without reading ahead.
const READ_AHEAD_BYTES: usize = 64 << 20;
const READ_AHEAD_FOR: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A minimal asynchronous lock that needs no runtime.
#[derive(Default)]
struct Gate {
    busy: Mutex<bool>,
    free: Event,
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.free.notify(1);
    }
}

impl Gate {
    async fn enter(&self) -> GateGuard<'_> {
        loop {
            let listener = self.free.listen();
            {
                let mut busy = lock(&self.busy);
                if !*busy {
                    *busy = true;
                    return GateGuard(self);
                }
            }
            listener.await;
        }
    }
}

/// Resolves when either of two futures finishes: `true` when the first did.
struct Race<A, B>(Pin<Box<A>>, Pin<Box<B>>);

impl<A: Future<Output = ()>, B: Future<Output = ()>> Future for Race<A, B> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.0.as_mut().poll(cx).is_ready() {
            Poll::Ready(true)
        } else if self.1.as_mut().poll(cx).is_ready() {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }
}

/// Resolves when any of its listeners is notified.
struct AnyOf(Vec<event_listener::EventListener>);

impl Future for AnyOf {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for l in &mut self.0 {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

fn lane_of(topic: &str, partition: u32) -> usize {
    // FNV-1a: stable, and cheap enough to run on every request.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(partition.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h >> 32).unwrap_or(0)
}

/// Lane for administration and offsets: spread by name too, so one busy partition's lane
/// does not hold every admin request.
fn admin_lane(name: &str) -> usize {
    lane_of(name, u32::MAX)
}

impl IggyBackend {
    /// Opens the backend on a pool whose lanes a runtime drives: makes sure the stream and
    /// the offsets topic exist (creating them when allowed) and replays the committed offsets.
    ///
    /// # Errors
    /// When Iggy cannot be reached or refuses, with the reason.
    pub async fn connect(
        lanes: Arc<Lanes>,
        clock: Arc<dyn Clock>,
        config: IggyConfig,
    ) -> Result<Self, String> {
        let stream = WireIdentifier::named(&config.stream)
            .map_err(|e| format!("stream name {:?}: {e}", config.stream))?;
        let seed = config.seed;
        let started = clock.now();
        let inner = Arc::new(Inner {
            lanes,
            clock,
            stream,
            offsets_gate: Gate::default(),
            offsets: Mutex::new(OffsetsState::default()),
            partitions: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            // Positive, and unlikely to meet the ids of an earlier run.
            next_producer_id: AtomicI64::new(i64::try_from((seed >> 24) << 20).unwrap_or(1) + 1),
            next_message_id: AtomicU64::new(0),
            message_size: AtomicUsize::new(256),
            read_ahead_bytes: Arc::default(),
            read_ahead_swept: Mutex::new(None),
            looks: Mutex::new(HashMap::new()),
            started,
            another_writer_told: AtomicBool::new(false),
            offsets_in_doubt: AtomicBool::new(false),
            listing: Mutex::new(None),
            config,
        });
        inner.ensure_stream().await?;
        inner.open_offsets().await?;
        Ok(Self { inner })
    }
}

impl Backend for IggyBackend {
    fn execute(&self, command: Command) -> Execution {
        if let Some(refused) = refuse_own_topic(&command) {
            return Execution::Done(refused);
        }
        let inner = Arc::clone(&self.inner);
        match command {
            Command::FetchOffsets { group, only } => {
                return Execution::Done(Completion::FetchOffsets(Ok(
                    inner.fetch_offsets(&group, only.as_deref())
                )))
            }
            Command::ListGroups => {
                let mut names: Vec<String> = lock(&inner.offsets).groups.keys().cloned().collect();
                names.sort();
                return Execution::Done(Completion::ListGroups(Ok(names)));
            }
            Command::AllocateProducerId => {
                return Execution::Done(Completion::AllocateProducerId(Ok(inner
                    .next_producer_id
                    .fetch_add(1, Ordering::Relaxed))))
            }
            Command::Append {
                topic,
                partition,
                messages,
                largest_batch,
                producer: None,
            } => {
                // Queued on the partition's lane now, not when the future is first polled:
                // plain appends are handed over in request order without waiting for each
                // other, and the lane keeps that order on the way to Iggy.
                // The request's records are let go of once encoded, not held until Iggy
                // answers.
                let count = messages.len();
                let sent = inner.send_append(&topic, partition, &messages, largest_batch, None);
                drop(messages);
                return match sent {
                    Ok(queued) => Execution::Pending(Box::pin(async move {
                        let appended = inner.appended(&topic, partition, count, None, queued).await;
                        Completion::Append(inner.settle(&topic, partition, appended))
                    })),
                    Err(e) => Execution::Done(Completion::Append(Err(e))),
                };
            }
            _ => {}
        }
        Execution::Pending(Box::pin(async move { inner.run(command).await }))
    }
}

/// A command naming one of the gateway's own topics, answered as if it did not exist: they
/// hold every group's committed offsets, and a client that could append to, read or delete
/// them could forge, read or lose other groups' commits. Topics given by id cannot name them
/// (their ids are never resolved); commits are checked against the topics Kafka clients see.
fn refuse_own_topic(command: &Command) -> Option<Completion> {
    fn unknown<T>(topic: &str) -> Result<T, BackendError> {
        Err(BackendError::UnknownTopic(TopicRef::Name(topic.to_owned())))
    }
    let topic = match command {
        Command::Append { topic, .. }
        | Command::OffsetForTimestamp { topic, .. }
        | Command::MaxTimestamp { topic, .. }
        | Command::CreatePartitions { topic, .. }
        | Command::AlterTopicConfig { topic, .. }
        | Command::Read {
            topic: TopicRef::Name(topic),
            ..
        }
        | Command::Offsets {
            topic: TopicRef::Name(topic),
            ..
        }
        | Command::DeleteTopic {
            topic: TopicRef::Name(topic),
        } if offsets::is_own(topic) => topic.as_str(),
        _ => return None,
    };
    tracing::debug!(topic, "a client named one of the gateway's own topics");
    Some(match command {
        Command::Append { .. } => Completion::Append(unknown(topic)),
        Command::Read { .. } => Completion::Read(unknown(topic)),
        Command::Offsets { .. } => Completion::Offsets(unknown(topic)),
        Command::OffsetForTimestamp { .. } => Completion::OffsetForTimestamp(unknown(topic)),
        Command::MaxTimestamp { .. } => Completion::MaxTimestamp(unknown(topic)),
        Command::DeleteTopic { .. } => Completion::DeleteTopic(unknown(topic)),
        Command::CreatePartitions { .. } => Completion::CreatePartitions(unknown(topic)),
        _ => Completion::AlterTopicConfig(unknown(topic)),
    })
}

/// Waits for a queued call's reply; a refusal is logged (at debug: the Kafka client gets the
/// mapped error).
async fn reply(code: u32, call: PendingCall) -> Result<Bytes, Failure> {
    timed_reply(code, call).await.0
}

/// [`reply`], with how long Iggy took to answer.
async fn timed_reply(code: u32, call: PendingCall) -> (Result<Bytes, Failure>, Option<Duration>) {
    let (result, service) = call.timed().await;
    if let Err(Failure::Status(status)) = &result {
        tracing::debug!(command = code, status, "iggy refused a request");
    }
    (result, service)
}

impl Inner {
    async fn call(&self, lane: usize, code: u32, payload: Bytes) -> Result<Bytes, Failure> {
        reply(code, self.lanes.call(lane, code, payload)).await
    }

    async fn run(&self, command: Command) -> Completion {
        match command {
            Command::Append {
                topic,
                partition,
                messages,
                largest_batch,
                producer,
            } => {
                let appended = match producer {
                    Some(pb) => {
                        self.append(&topic, partition, &messages, largest_batch, pb)
                            .await
                    }
                    // Sent by `execute` as it is handed over; here only for completeness.
                    None => {
                        match self.send_append(&topic, partition, &messages, largest_batch, None) {
                            Ok(queued) => {
                                self.appended(&topic, partition, messages.len(), None, queued)
                                    .await
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                Completion::Append(self.settle(&topic, partition, appended))
            }
            Command::Read {
                topic,
                partition,
                offset,
                max_bytes,
                max_messages,
            } => {
                let r = self
                    .read(&topic, partition, offset, max_bytes, max_messages)
                    .await;
                if let Err(e) = &r {
                    tracing::debug!(%topic, partition, offset, error = %e, "read failed");
                }
                Completion::Read(match &topic {
                    TopicRef::Name(name) => self.settle(name, partition, r),
                    // Resolved to a name only when the topic exists.
                    TopicRef::Id(_) => r,
                })
            }
            Command::Offsets { topic, partition } => {
                Completion::Offsets(match self.topic_name(&topic).await {
                    Ok(name) => self.offsets(&name, partition).await,
                    Err(e) => Err(e),
                })
            }
            Command::OffsetForTimestamp {
                topic,
                partition,
                timestamp_ms,
            } => {
                let found = self
                    .offset_for_timestamp(&topic, partition, timestamp_ms)
                    .await;
                Completion::OffsetForTimestamp(self.settle(&topic, partition, found))
            }
            Command::MaxTimestamp { topic, partition } => {
                let found = self.max_timestamp(&topic, partition).await;
                Completion::MaxTimestamp(self.settle(&topic, partition, found))
            }
            Command::ListTopics { only } => {
                Completion::ListTopics(self.list_topics(only.as_deref()).await)
            }
            Command::CreateTopic {
                name,
                partitions,
                config,
                validate_only,
            } => Completion::CreateTopic(
                self.create_topic(&name, partitions, &config, validate_only)
                    .await,
            ),
            Command::DeleteTopic { topic } => {
                Completion::DeleteTopic(self.delete_topic(&topic).await)
            }
            Command::CreatePartitions {
                topic,
                total,
                validate_only,
            } => Completion::CreatePartitions(
                self.create_partitions(&topic, total, validate_only).await,
            ),
            Command::AlterTopicConfig {
                topic,
                config,
                validate_only,
            } => Completion::AlterTopicConfig(
                self.alter_topic_config(&topic, &config, validate_only)
                    .await,
            ),
            Command::CommitOffsets { group, offsets } => {
                Completion::CommitOffsets(self.commit_offsets(&group, offsets).await)
            }
            Command::DeleteOffsets { group, only } => {
                Completion::DeleteOffsets(self.delete_offsets(&group, only).await)
            }
            Command::Watch { partitions, .. } => {
                self.watch(&partitions).await;
                Completion::Watch
            }
            other => {
                // Answered synchronously in `execute`, or not a backend command (group calls
                // go to the coordinator): the task reports UNKNOWN_SERVER_ERROR.
                tracing::error!(command = ?other, "command the Iggy backend does not run");
                Completion::Watch
            }
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Arc<PartitionState> {
        let mut map = lock(&self.partitions);
        if let Some(p) = map.get(topic).and_then(|t| t.get(&partition)) {
            return Arc::clone(p);
        }
        Arc::clone(
            map.entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default(),
        )
    }

    /// Passes on a request's `result`; when Iggy has no such topic or partition, the state
    /// the request made for it goes, so that requests naming made-up ones leave nothing
    /// behind to fill the gateway's memory.
    fn settle<T>(
        &self,
        topic: &str,
        partition: u32,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if matches!(
            result,
            Err(BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. })
        ) {
            self.forget_partition(topic, partition);
            if matches!(result, Err(BackendError::UnknownTopic(_))) {
                lock(&self.looks).remove(topic);
            }
        }
        result
    }

    /// The first of `n` fresh Iggy message ids.
    fn message_ids(&self, n: usize) -> u128 {
        // Unique per gateway run: the seed in the high half, a counter in the low half. The
        // top bit is left to the ids of idempotent batches (`wire::Ids::producer`).
        (u128::from(self.config.seed >> 1) << 64)
            | u128::from(self.next_message_id.fetch_add(n as u64, Ordering::Relaxed))
    }

    // ---- records ----

    /// Checks and encodes an append and queues it on the partition's lane, after the
    /// partition's last append if that went down another lane.
    fn send_append(
        &self,
        topic: &str,
        partition: u32,
        messages: &MessageList,
        largest_batch: usize,
        producer: Option<&ProducerBatch>,
    ) -> Result<Queued, BackendError> {
        if largest_batch > self.config.max_message_bytes {
            return Err(BackendError::MessageTooLarge {
                size: largest_batch,
                max: self.config.max_message_bytes,
            });
        }
        let ids = match producer {
            Some(pb) => wire::Ids::producer(pb),
            None => wire::Ids::counted(self.message_ids(messages.len())),
        };
        let body = wire::send_messages(&self.stream, &named(topic)?, partition, messages, ids)?;
        let state = self.partition(topic, partition);
        let (lane, call) = self.with_route(&state, topic, partition, |route, generation| {
            let lane = route.placement.route(generation);
            let after = match &route.last_append {
                Some((last, p)) if *last != lane => Some(p.clone()),
                _ => None,
            };
            let call = self.lanes.call_after(lane, SEND_MESSAGES_CODE, body, after);
            route.last_append = Some((lane, call.predecessor()));
            (lane, call)
        });
        Ok(Queued { state, lane, call })
    }

    /// Runs `f` on the partition's route (made at its first request), with the lanes'
    /// generations.
    fn with_route<R>(
        &self,
        state: &PartitionState,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&mut Route, &dyn Fn(usize) -> Option<u64>) -> R,
    ) -> R {
        let mut route = lock(&state.route);
        let route = route.get_or_insert_with(|| Route {
            placement: Placement::new(self.lanes.len(), lane_of(topic, partition)),
            last_append: None,
        });
        f(route, &|l| self.lanes.lane(l).generation())
    }

    /// The lane for the partition's next poll.
    fn read_lane(&self, state: &PartitionState, topic: &str, partition: u32) -> usize {
        self.with_route(state, topic, partition, |route, generation| {
            route.placement.route(generation)
        })
    }

    /// Iggy answered a request on `lane` for `topic`'s `partition` in `service`.
    fn answered(
        &self,
        state: &PartitionState,
        (topic, partition): (&str, u32),
        lane: usize,
        kind: Kind,
        service: Option<Duration>,
    ) {
        let mut route = lock(&state.route);
        let Some(route) = route.as_mut() else {
            return;
        };
        let generation = |l| self.lanes.lane(l).generation();
        if let Some(d) = route.placement.answered(lane, kind, service, generation) {
            tracing::debug!(
                %topic, partition, lane = d.lane, by = ?d.kind, quartiles_us = ?d.quartiles,
                clear = d.clear, "lane chosen by Iggy's answer times"
            );
        }
    }

    /// Waits for the reply to an append of `count` messages and reports where it landed.
    /// An idempotent batch (`producer`, with where it lands at the earliest) whose reply is
    /// lost is left in doubt.
    async fn appended(
        &self,
        topic: &str,
        partition: u32,
        count: usize,
        producer: Option<(&ProducerBatch, u64)>,
        queued: Queued,
    ) -> Result<Appended, BackendError> {
        let Queued { state, lane, call } = queued;
        let (result, service) = timed_reply(SEND_MESSAGES_CODE, call).await;
        self.answered(&state, (topic, partition), lane, Kind::Append, service);
        let reply = match result {
            Ok(r) => r,
            Err(f) => {
                if let (Failure::Lost(_), Some((&batch, from))) = (&f, producer) {
                    *lock(&state.doubt) = Some(Doubt { batch, from });
                }
                return Err(self.refine(f, topic, partition).await);
            }
        };
        let base = SendMessagesResponse::decode(&reply)
            .ok()
            .and_then(|(r, _)| r.confirmations.first().map(|c| c.base_offset))
            .ok_or_else(|| BackendError::Other("iggy send reply without a confirmation".into()))?;
        state.saw_end(base + count as u64);
        if let Some((pb, _)) = producer {
            lock(&state.producers).record(pb, base, None);
        }
        state.appended.notify(usize::MAX);
        Ok(Appended {
            base_offset: base,
            log_append_time_ms: None,
            log_start: state.log_start.load(Ordering::Relaxed),
        })
    }

    /// An idempotent producer's append: one at a time per partition, retries of its last
    /// batches answered from memory, after finding out whether a batch left in doubt landed.
    async fn append(
        &self,
        topic: &str,
        partition: u32,
        messages: &MessageList,
        largest_batch: usize,
        pb: ProducerBatch,
    ) -> Result<Appended, BackendError> {
        let mut state = self.partition(topic, partition);
        let mut serial = state.gate.enter().await;
        loop {
            if !state.recovered.load(Ordering::Relaxed) {
                self.recover_producers(topic, partition, &state).await?;
            }
            self.resolve_doubt(topic, partition, &state).await?;
            let Some(original) = lock(&state.producers).check(&pb)? else {
                break;
            };
            // A retry, answered with where the batch landed, while the partition still holds
            // it: asking Iggy notices a topic created again behind the gateway's back, and a
            // partition that lost offsets (purged) no longer reaches that far.
            let offsets = self.offsets(topic, partition).await?;
            let current = lock(&self.partitions)
                .get(topic)
                .and_then(|t| t.get(&partition))
                .is_some_and(|s| Arc::ptr_eq(s, &state));
            if current && original.base < offsets.high_watermark {
                return Ok(Appended {
                    base_offset: original.base,
                    log_append_time_ms: original.log_append_time_ms,
                    log_start: state.log_start.load(Ordering::Relaxed),
                });
            }
            tracing::info!(
                %topic, partition,
                "an idempotent producer's batch is no longer where it landed: the partition's \
                 producers are read back again"
            );
            if current {
                self.forget_partition(topic, partition);
            }
            drop(serial);
            state = self.partition(topic, partition);
            serial = state.gate.enter().await;
        }
        // Where a batch in doubt is looked for from: asked of Iggy once per partition, later
        // kept up by every reply.
        let from = match state.seen_end.load(Ordering::Relaxed) {
            0 => self.offsets(topic, partition).await?.high_watermark,
            end => end,
        };
        let queued = self.send_append(topic, partition, messages, largest_batch, Some(&pb))?;
        self.appended(topic, partition, messages.len(), Some((&pb, from)), queued)
            .await
    }

    /// Reads the idempotent producers' recent batches back from the partition's tail, where
    /// their message ids left them, so that a retry of a batch appended before this gateway
    /// (re)started is not appended again, as a Kafka broker restores its producer state
    /// from its log. Producers whose batches are older than the tail read start afresh.
    async fn recover_producers(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
    ) -> Result<(), BackendError> {
        let offsets = self.offsets(topic, partition).await?;
        let count = self.scan_count(state, RECOVER_BYTES);
        let from = offsets
            .high_watermark
            .saturating_sub(u64::from(count))
            .max(offsets.log_start);
        if from < offsets.high_watermark {
            // A few more than the tail holds, for appends since the offsets were asked: a
            // reply that ends before the partition does leaves its last producer unknown.
            let count = count + 16;
            let body = self
                .poll(topic, partition, WirePollingStrategy::offset(from), count)
                .await?;
            let batches = wire::producer_batches(&body)?;
            if !batches.is_empty() {
                tracing::debug!(
                    %topic, partition, batches = batches.len(), from,
                    "read idempotent producers' recent batches back"
                );
            }
            let mut producers = lock(&state.producers);
            for (batch, base) in &batches {
                producers.record(batch, *base, None);
            }
        }
        state.recovered.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Finds out whether the partition's batch in doubt landed, by its message id, in what
    /// was appended since it was sent; if it did, the producer's retry is answered with
    /// where it landed instead of being appended again. Runs under the partition's gate, so
    /// no other idempotent append can come between.
    async fn resolve_doubt(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
    ) -> Result<(), BackendError> {
        let Some(doubt) = *lock(&state.doubt) else {
            return Ok(());
        };
        let id = wire::Ids::producer(&doubt.batch).of(0);
        let end = self.offsets(topic, partition).await?.high_watermark;
        let (mut at, mut read, mut found) = (doubt.from, 0usize, None);
        while at < end && found.is_none() {
            if read > DOUBT_SCAN_BYTES {
                tracing::warn!(
                    %topic, partition, from = doubt.from, at, end,
                    "gave up looking for an idempotent batch whose reply was lost: \
                     its retry is appended, perhaps a second time"
                );
                break;
            }
            let count = self.scan_count(state, SCAN_POLL_BYTES);
            let body = self
                .poll(topic, partition, WirePollingStrategy::offset(at), count)
                .await?;
            read += body.len();
            let (hit, last) = wire::find_message(&body, id)?;
            found = hit;
            match last {
                Some(last) => at = last + 1,
                None => break,
            }
        }
        tracing::info!(
            %topic, partition, producer_id = doubt.batch.producer_id,
            first_sequence = doubt.batch.first_sequence, landed_at = ?found,
            "found out whether an idempotent batch whose reply was lost landed"
        );
        if let Some(offset) = found {
            lock(&state.producers).record(&doubt.batch, offset, None);
        }
        *lock(&state.doubt) = None;
        Ok(())
    }

    /// How many messages a poll of the partition that is not a read's asks for to get about
    /// `bytes`: sized by the larger of the running estimate (from what reads found) and what
    /// Iggy last reported of the partition. Iggy's figure counts its own framing too, so a
    /// read, which must fill a budget in Kafka's bytes, goes by the running estimate alone
    /// (a reply too large for it is asked again).
    fn scan_count(&self, state: &PartitionState, bytes: usize) -> u32 {
        let size = self
            .message_size
            .load(Ordering::Relaxed)
            .max(state.message_size.load(Ordering::Relaxed))
            .max(32);
        u32::try_from((bytes / size).clamp(1, 10_000)).unwrap_or(1)
    }

    async fn poll(
        &self,
        topic: &str,
        partition: u32,
        strategy: WirePollingStrategy,
        count: u32,
    ) -> Result<Bytes, BackendError> {
        let state = self.partition(topic, partition);
        let lane = self.read_lane(&state, topic, partition);
        let request = self.poll_request(topic, partition, strategy.clone(), count)?;
        let (mut result, service) = timed_reply(
            POLL_MESSAGES_CODE,
            self.lanes.call(lane, POLL_MESSAGES_CODE, request),
        )
        .await;
        self.answered(&state, (topic, partition), lane, Kind::Poll, service);
        if let (Err(Failure::TooLarge(size)), true) = (&result, count > 1) {
            // Whatever the reply held, its messages are at least this large on average.
            self.message_size
                .fetch_max(size / count as usize, Ordering::Relaxed);
            // More, or larger, messages than the running size estimate foresaw: one
            // message fits whatever its size (Iggy's largest is well below the lanes'
            // limit), and teaches the estimate for the next reads.
            tracing::debug!(%topic, partition, count, size, "poll reply too large: polling one");
            let request = self.poll_request(topic, partition, strategy, 1)?;
            result = self.call(lane, POLL_MESSAGES_CODE, request).await;
        }
        match result {
            Ok(r) => Ok(r),
            Err(f) => Err(self.refine(f, topic, partition).await),
        }
    }

    /// A `PollMessages` of up to `count` messages.
    fn poll_request(
        &self,
        topic: &str,
        partition: u32,
        strategy: WirePollingStrategy,
        count: u32,
    ) -> Result<Bytes, BackendError> {
        Ok(PollMessagesRequest {
            consumer: WireConsumer::consumer(WireIdentifier::numeric(1)),
            stream_id: self.stream.clone(),
            topic_id: named(topic)?,
            partition_id: Some(partition),
            strategy,
            count,
            auto_commit: false,
        }
        .to_bytes())
    }

    /// An Iggy failure of a partition request as a Kafka error: a generic "not found" is
    /// the topic's absence or the partition's, which the topic's metadata tells apart.
    async fn refine(&self, failure: Failure, topic: &str, partition: u32) -> BackendError {
        if failure != Failure::Status(code::RESOURCE_NOT_FOUND) {
            return backend_error(failure, topic, Some(partition));
        }
        match self.topic_header(topic).await {
            Ok(t) if t.topic.partitions_count > partition => {
                backend_error(failure, topic, Some(partition))
            }
            Ok(_) => BackendError::UnknownPartition {
                topic: topic.into(),
                partition,
            },
            Err(e) => e,
        }
    }

    async fn read(
        &self,
        topic: &TopicRef,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        max_messages: usize,
    ) -> Result<ReadResult, BackendError> {
        let name = self.topic_name(topic).await?;
        let state = self.partition(&name, partition);
        // As many as the budget holds at the estimate, which sits a little above the true
        // size: a read takes a poll's reply whole, so polls sent ahead stay in step with
        // reads (one more each left one over in every reply).
        let count = |me: &Self| {
            let n = max_bytes / me.message_size.load(Ordering::Relaxed).max(32);
            u32::try_from(n.clamp(1, max_messages.clamp(1, 10_000))).unwrap_or(u32::MAX)
        };
        let (mut messages, mut current, mut bytes) = match self
            .read_ahead(
                &state,
                (&name, partition),
                offset,
                max_bytes,
                max_messages,
                true,
            )
            .await
        {
            Some(read) => read,
            None => {
                let body = self
                    .poll(
                        &name,
                        partition,
                        WirePollingStrategy::offset(offset),
                        count(self),
                    )
                    .await?;
                wire::polled(&body, offset, max_bytes, max_messages, true)?
            }
        };
        // What a read left of a reply sent ahead can be a message or two: rather than
        // answer with so little (and have the consumer ask again at once), the read goes on
        // into the poll sent ahead after it.
        while bytes < max_bytes / 2 && messages.len() < max_messages {
            let Some(next) = messages.last().and_then(|(last, _)| last.checked_add(1)) else {
                break;
            };
            if next > current {
                break;
            }
            let more = self
                .read_ahead(
                    &state,
                    (&name, partition),
                    next,
                    max_bytes - bytes,
                    max_messages - messages.len(),
                    false,
                )
                .await;
            let Some((more, more_current, more_bytes)) = more else {
                break;
            };
            messages.append(more);
            current = current.max(more_current);
            bytes += more_bytes;
        }
        if let Some(average) = bytes.checked_div(messages.len()) {
            let old = self.message_size.load(Ordering::Relaxed);
            // Up at once, down slowly (and a byte above): a poll sized by too small an
            // estimate may not fit a lane's reply limit, nor its read.
            let estimate = if average > old {
                average
            } else {
                (old * 7 + average) / 8 + 1
            };
            self.message_size.store(estimate, Ordering::Relaxed);
        }
        if let Some(next) = messages.last().and_then(|(last, _)| last.checked_add(1)) {
            // Sized by the estimate this read has just taught.
            self.send_ahead(&state, &name, partition, next, current, count(self))?;
        }
        let Some((first, _)) = messages.first() else {
            let offsets = self.offsets(&name, partition).await?;
            if offset > offsets.high_watermark || offset < offsets.log_start {
                return Err(BackendError::OffsetOutOfRange {
                    offset,
                    log_start: offsets.log_start,
                    high_watermark: offsets.high_watermark,
                });
            }
            return Ok(ReadResult { messages, offsets });
        };
        let high_watermark = current + 1;
        state.saw_end(high_watermark);
        if first > offset {
            // Dense offsets: what was asked for is gone (retention).
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: first,
                high_watermark,
            });
        }
        let log_start = self
            .partition(&name, partition)
            .log_start
            .load(Ordering::Relaxed);
        Ok(ReadResult {
            messages,
            offsets: PartitionOffsets {
                log_start: log_start.min(offset),
                high_watermark,
            },
        })
    }

    /// A read served by a poll sent ahead that covers `offset`, if one holds messages from
    /// there on. What the read leaves of that poll's reply is kept for the next read. A poll
    /// sent ahead that failed, or that holds nothing from `offset` on, is not this read's
    /// answer: the read asks Iggy itself. Without `at_least_one` (a read going on from one
    /// reply into the next), a first message past `max_bytes` is not taken: it and the rest
    /// stay for the next read.
    async fn read_ahead(
        &self,
        state: &PartitionState,
        at: (&str, u32),
        offset: u64,
        max_bytes: usize,
        max_messages: usize,
        at_least_one: bool,
    ) -> Option<(iggy_kafka_core::backend::Messages, u64, usize)> {
        let now = self.clock.now();
        self.sweep_read_aheads(now);
        let ahead = {
            let mut aheads = lock(&state.read_ahead);
            aheads.retain(|a| a.fresh(now));
            let i = aheads.iter().position(|a| a.covers(offset))?;
            aheads.remove(i)
        };
        let ReadAhead {
            from,
            count,
            sent,
            reply: pending,
            held,
        } = ahead;
        let body = match pending {
            AheadReply::Sent { lane, call } => {
                let (result, service) = timed_reply(POLL_MESSAGES_CODE, call).await;
                self.answered(state, at, lane, Kind::Poll, service);
                result.ok()?
            }
            AheadReply::Kept(body) => body,
        };
        let read = wire::polled(&body, offset, max_bytes, max_messages, at_least_one).ok()?;
        let rest = ReadAhead {
            from,
            count,
            sent,
            reply: AheadReply::Kept(body),
            held,
        };
        let Some((last, _)) = read.0.last() else {
            // Nothing within the budget: the reply stays for the next read.
            if !at_least_one && read.1 >= offset {
                lock(&state.read_ahead).push(rest);
            }
            return None;
        };
        // Kept only while the reply can hold more: it holds nothing past Iggy's current
        // offset of the time, so a reply that ended there leaves the next read to poll.
        if last < read.1 && rest.covers(last + 1) {
            lock(&state.read_ahead).push(rest);
        }
        Some(read)
    }

    /// Drops stale polls sent ahead in every partition, at most once per
    /// [`READ_AHEAD_FOR`]: a reader that stopped (a consumer closed, a partition moved to
    /// another member) must not keep its polls' replies in memory.
    fn sweep_read_aheads(&self, now: Instant) {
        {
            let mut swept = lock(&self.read_ahead_swept);
            if swept.is_some_and(|t| now.duration_since(t) < READ_AHEAD_FOR) {
                return;
            }
            *swept = Some(now);
        }
        let states: Vec<Arc<PartitionState>> = lock(&self.partitions)
            .values()
            .flat_map(|t| t.values().cloned())
            .collect();
        for state in states {
            lock(&state.read_ahead).retain(|a| a.fresh(now));
        }
    }

    /// Sends polls ahead of a reader that will read from `next` on, up to
    /// [`READ_AHEAD_DEPTH`] polls of `count` beyond what is already ahead, while Iggy has
    /// messages there (its current offset is `current`).
    fn send_ahead(
        &self,
        state: &PartitionState,
        topic: &str,
        partition: u32,
        next: u64,
        current: u64,
        count: u32,
    ) -> Result<(), BackendError> {
        let mut aheads = lock(&state.read_ahead);
        let mut from = next;
        for _ in 0..READ_AHEAD_DEPTH {
            if from > current {
                break;
            }
            if let Some(a) = aheads.iter().find(|a| a.covers(from)) {
                from = a.from.saturating_add(u64::from(a.count));
                continue;
            }
            while aheads.len() >= READ_AHEADS {
                aheads.remove(0);
            }
            let bytes = usize::try_from(count)
                .unwrap_or(usize::MAX)
                .saturating_mul(self.message_size.load(Ordering::Relaxed));
            let total = &self.read_ahead_bytes;
            if total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    let t = t.saturating_add(bytes);
                    (t <= READ_AHEAD_BYTES).then_some(t)
                })
                .is_err()
            {
                break;
            }
            let held = Held {
                bytes,
                total: Arc::clone(total),
            };
            let lane = self.read_lane(state, topic, partition);
            let call = self.lanes.call(
                lane,
                POLL_MESSAGES_CODE,
                self.poll_request(topic, partition, WirePollingStrategy::offset(from), count)?,
            );
            aheads.push(ReadAhead {
                from,
                count,
                sent: self.clock.now(),
                reply: AheadReply::Sent { lane, call },
                held,
            });
            from = from.saturating_add(u64::from(count));
        }
        Ok(())
    }

    fn creating(&self) -> wire::Existing<'static> {
        wire::Existing::Creating {
            write_through: self.config.write_through,
        }
    }

    /// Asks Iggy about `topic`, and keeps the answer for [`Inner::look`].
    async fn topic_header(&self, topic: &str) -> Result<Arc<GetTopicResponse>, BackendError> {
        let asked = self.clock.now();
        let request = GetTopicRequest {
            stream_id: self.stream.clone(),
            topic_id: named(topic)?,
        };
        let reply = self
            .call(admin_lane(topic), GET_TOPIC_CODE, request.to_bytes())
            .await
            .map_err(|f| backend_error(f, topic, None))
            // An absent topic may come back as an empty reply rather than an error.
            .and_then(|r| {
                if r.is_empty() {
                    Err(BackendError::UnknownTopic(TopicRef::Name(topic.into())))
                } else {
                    Ok(r)
                }
            })
            .inspect_err(|e| {
                if matches!(e, BackendError::UnknownTopic(_)) {
                    lock(&self.looks).remove(topic);
                }
            })?;
        let (header, _) = GetTopicResponse::decode(&reply)
            .map_err(|e| BackendError::Other(format!("iggy topic reply: {e}")))?;
        self.saw(&header.topic);
        let header = Arc::new(header);
        let mut looks = lock(&self.looks);
        let look = looks.entry(topic.to_owned()).or_default();
        if look.latest.as_ref().is_none_or(|(at, _)| *at < asked) {
            look.latest = Some((asked, Arc::clone(&header)));
        }
        Ok(header)
    }

    /// A look at `topic` asked no earlier than `at_least`: the latest one if it is that
    /// recent, or the one on its way if it is, else a new request. However many fetches wait
    /// on a topic, Iggy is then asked about it about once per poll interval.
    async fn look(
        &self,
        topic: &str,
        at_least: Instant,
    ) -> Result<Arc<GetTopicResponse>, BackendError> {
        loop {
            let waiting = {
                let mut looks = lock(&self.looks);
                let look = looks.entry(topic.to_owned()).or_default();
                match (&look.latest, &look.asking) {
                    (Some((asked, header)), _) if *asked >= at_least => {
                        return Ok(Arc::clone(header));
                    }
                    (_, Some((asked, done))) if *asked >= at_least => Ok(done.listen()),
                    _ => {
                        let done = Arc::new(Event::new());
                        look.asking = Some((self.clock.now(), Arc::clone(&done)));
                        Err(done)
                    }
                }
            };
            match waiting {
                Ok(listener) => listener.await,
                Err(done) => {
                    let _asking = Asking {
                        looks: &self.looks,
                        topic,
                        done,
                    };
                    return self.topic_header(topic).await;
                }
            }
        }
    }

    /// Notes a topic as Iggy describes it now.
    fn saw(&self, t: &TopicHeader) {
        let name = t.name.as_str();
        if offsets::is_own(name) {
            return;
        }
        let now = Known::of(t);
        let was = {
            let mut known = lock(&self.known);
            match known.get_mut(name) {
                Some(k) => std::mem::replace(k, now),
                None => {
                    known.insert(name.to_owned(), now);
                    return;
                }
            }
        };
        if was.id != now.id {
            let mut ids = lock(&self.ids);
            ids.remove(&was.id);
            ids.insert(now.id, name.to_owned());
            drop(ids);
            self.created_again(name);
        }
    }

    /// A topic deleted and created again outside the gateway is new to Iggy: empty, its
    /// partitions placed on shards anew. What the gateway knew of the old one's partitions
    /// (idempotent producers, a batch in doubt, where appends land, polls sent ahead, which
    /// connection is fastest) would mislead it, so it goes.
    fn created_again(&self, name: &str) {
        if self.forget_topic(name) {
            tracing::info!(topic = %name, "topic created again outside the gateway: its partitions start afresh");
        }
    }

    /// Drops what the gateway knew of `name`'s partitions and its latest look; whether it
    /// knew any partition.
    fn forget_topic(&self, name: &str) -> bool {
        lock(&self.looks).remove(name);
        lock(&self.partitions).remove(name).is_some()
    }

    /// Drops what the gateway knew of one partition.
    fn forget_partition(&self, topic: &str, partition: u32) {
        let mut map = lock(&self.partitions);
        if let Some(t) = map.get_mut(topic) {
            t.remove(&partition);
            if t.is_empty() {
                map.remove(topic);
            }
        }
    }

    async fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets, BackendError> {
        let t = self.topic_header(topic).await?;
        self.partition_offsets(topic, &t, partition)
    }

    /// One partition's offsets out of its topic's metadata.
    fn partition_offsets(
        &self,
        topic: &str,
        t: &GetTopicResponse,
        partition: u32,
    ) -> Result<PartitionOffsets, BackendError> {
        let p = t
            .partitions
            .iter()
            .find(|p| p.id == partition)
            .ok_or_else(|| BackendError::UnknownPartition {
                topic: topic.into(),
                partition,
            })?;
        // Iggy reports the last offset; an empty partition reports 0 with no messages.
        let empty = p.messages_count == 0 && p.current_offset == 0 && p.size_bytes == 0;
        let high_watermark = if empty { 0 } else { p.current_offset + 1 };
        let log_start = high_watermark.saturating_sub(p.messages_count);
        let state = self.partition(topic, partition);
        state.log_start.store(log_start, Ordering::Relaxed);
        state.saw_end(high_watermark);
        if let Some(size) = p.size_bytes.checked_div(p.messages_count) {
            state.message_size.store(
                usize::try_from(size).unwrap_or(usize::MAX),
                Ordering::Relaxed,
            );
        }
        Ok(PartitionOffsets {
            log_start,
            high_watermark,
        })
    }

    /// Kafka's ListOffsets by timestamp: the first message whose Kafka timestamp is at least
    /// `timestamp_ms`. Iggy finds messages by its own append time only, so the search
    /// starts at the first message Iggy appended at or after that time (a message before it
    /// has a later producer timestamp only if the producer's clock ran ahead of the
    /// server's) and reads on to the first whose own timestamp is late enough: at once for
    /// records timestamped as they are sent, and further for records appended long after
    /// their timestamps (a backfill). What it reads is kept as for [`Self::max_timestamp`],
    /// so a search skips what an earlier one read and found too early.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<Stamped>, BackendError> {
        let us = u64::try_from(timestamp_ms)
            .unwrap_or(0)
            .saturating_mul(1000);
        let body = self
            .poll(topic, partition, WirePollingStrategy::timestamp(us), 1)
            .await?;
        let Some((mut at, ts)) =
            wire::scan_timestamps(&body, 0..u64::MAX, i64::MIN)?.first_at_least
        else {
            return Ok(None);
        };
        if ts >= timestamp_ms {
            return Ok(Some((at, ts)));
        }
        let state = self.partition(topic, partition);
        let _one_read = state.timestamps_gate.enter().await;
        let (end, _) = self.align_timestamps(topic, partition, &state).await?;
        while at < end {
            let until = match lock(&state.timestamps).around(at) {
                Ok(run) if run.max.is_none_or(|(_, ts)| ts < timestamp_ms) => {
                    at = run.to;
                    continue;
                }
                Ok(run) => run.to,
                Err(next) => next.unwrap_or(end).min(end),
            };
            let (found, to) = self
                .read_timestamps(topic, partition, &state, at..until, timestamp_ms)
                .await?;
            if found.is_some() {
                return Ok(found);
            }
            at = to;
        }
        Ok(None)
    }

    /// Kafka's `MAX_TIMESTAMP`: Iggy keeps no such figure, so every message is read, once
    /// (see [`MaxTimestamps`]). A first question about a long partition takes as long as
    /// reading it; what was read is kept as it goes, so a client that timed out and asks
    /// again continues where the read got to.
    async fn max_timestamp(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Stamped>, BackendError> {
        let state = self.partition(topic, partition);
        let _one_read = state.timestamps_gate.enter().await;
        let (_, holes) = self.align_timestamps(topic, partition, &state).await?;
        for hole in holes {
            let mut at = hole.start;
            while at < hole.end {
                at = self
                    .read_timestamps(topic, partition, &state, at..hole.end, i64::MAX)
                    .await?
                    .1;
            }
        }
        let max = lock(&state.timestamps).max();
        Ok(max)
    }

    /// Fits the partition's timestamp runs to it as it is now (see
    /// [`MaxTimestamps::align`]); returns its end and the offsets no run covers.
    async fn align_timestamps(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
    ) -> Result<(u64, Vec<std::ops::Range<u64>>), BackendError> {
        let t = self.topic_header(topic).await?;
        let offsets = self.partition_offsets(topic, &t, partition)?;
        let holes = lock(&state.timestamps).align(
            wire::topic_id(&t.topic),
            offsets.log_start,
            offsets.high_watermark,
        );
        Ok((offsets.high_watermark, holes))
    }

    /// Reads the messages at offsets `within` (as many as one scan's poll holds), keeps
    /// what it found in the partition's timestamp runs, and returns the first message
    /// timestamped at least `at_least` and where the read got to.
    async fn read_timestamps(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        within: std::ops::Range<u64>,
        at_least: i64,
    ) -> Result<(Option<Stamped>, u64), BackendError> {
        let (at, until) = (within.start, within.end);
        let count = self.scan_count(state, SCAN_POLL_BYTES);
        let body = self
            .poll(topic, partition, WirePollingStrategy::offset(at), count)
            .await?;
        let found = wire::scan_timestamps(&body, within, at_least)?;
        // Nothing from `at` on (retention got there meanwhile), or a reply that does not
        // move on: what is left of the range holds nothing to find.
        let to = found.last.map_or(until, |l| l.saturating_add(1).min(until));
        let to = if to > at { to } else { until };
        lock(&state.timestamps).add(Run {
            from: at,
            to,
            max: found.max,
        });
        Ok((found.first_at_least, to))
    }

    // ---- topics ----

    async fn ensure_stream(&self) -> Result<(), String> {
        match self.stream_topics().await {
            Ok(_) => return Ok(()),
            Err(BackendError::UnknownTopic(_)) if self.config.create_stream => {}
            Err(BackendError::UnknownTopic(_)) => {
                return Err(format!(
                    "Iggy stream {:?} does not exist (and creating it is not allowed)",
                    self.config.stream
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read Iggy stream {:?}: {e}",
                    self.config.stream
                ))
            }
        }
        let name = WireName::new(self.config.stream.clone()).map_err(|e| e.to_string())?;
        let request = CreateStreamRequest {
            name,
            options: WireOptions::empty(),
        };
        match self.call(0, CREATE_STREAM_CODE, request.to_bytes()).await {
            Ok(_) | Err(Failure::Status(code::STREAM_NAME_ALREADY_EXISTS)) => {
                tracing::info!(stream = %self.config.stream, "created the Iggy stream");
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot create Iggy stream {:?}: {e}",
                self.config.stream
            )),
        }
    }

    /// Every topic of the stream, the gateway's own included.
    async fn stream_topics(&self) -> Result<Vec<TopicHeader>, BackendError> {
        let request = GetStreamRequest {
            stream_id: self.stream.clone(),
        };
        let reply = self
            .call(0, GET_STREAM_CODE, request.to_bytes())
            .await
            .map_err(|f| backend_error(f, &self.config.stream, None))?;
        if reply.is_empty() {
            return Err(BackendError::UnknownTopic(TopicRef::Name(
                self.config.stream.clone(),
            )));
        }
        let topics = GetStreamResponse::decode(&reply)
            .map(|(r, _)| r.topics)
            .map_err(|e| BackendError::Other(format!("iggy stream reply: {e}")))?;
        // Only the topics Kafka clients see: commits and ids never name the gateway's own.
        let visible = || topics.iter().filter(|t| !offsets::is_own(t.name.as_str()));
        let known = visible()
            .map(|t| (t.name.as_str().to_owned(), Known::of(t)))
            .collect();
        let was = std::mem::replace(&mut *lock(&self.known), known);
        for t in visible() {
            if was
                .get(t.name.as_str())
                .is_some_and(|k| k.id != wire::topic_id(t))
            {
                self.created_again(t.name.as_str());
            }
        }
        let ids = visible()
            .map(|t| (wire::topic_id(t), t.name.as_str().to_owned()))
            .collect();
        let before = std::mem::replace(&mut *lock(&self.ids), ids);
        // Those who turned write-through off know what Iggy's default means.
        for t in topics.iter().filter(|_| self.config.write_through) {
            let storage = wire::Storage::of(t);
            if storage.messages_required_to_save > 1
                && !before.contains_key(&wire::topic_id(t))
                && !offsets::is_own(t.name.as_str())
            {
                // Created outside the gateway with Iggy's default: say once what it means.
                tracing::warn!(
                    topic = %t.name.as_str(),
                    messages_required_to_save = storage.messages_required_to_save,
                    "Iggy acknowledges appends to this topic before writing them out: a crash \
                     of the Iggy server may lose acknowledged records"
                );
            }
        }
        Ok(topics)
    }

    async fn list_topics(&self, only: Option<&[TopicRef]>) -> Result<Vec<TopicInfo>, BackendError> {
        let all: Vec<TopicInfo> = match self.stream_topics().await {
            Ok(topics) => {
                let all: Vec<TopicInfo> = topics
                    .iter()
                    .filter(|t| !offsets::is_own(t.name.as_str()))
                    .map(wire::topic_info)
                    .collect();
                *lock(&self.listing) = Some(all.clone());
                all
            }
            Err(BackendError::Unavailable(why)) => {
                let Some(last) = lock(&self.listing).clone() else {
                    return Err(BackendError::Unavailable(why));
                };
                tracing::debug!(%why, "Iggy unreachable: the topics as last listed");
                last
            }
            Err(e) => return Err(e),
        };
        Ok(all
            .into_iter()
            .filter(|t| {
                only.is_none_or(|only| {
                    only.iter().any(|r| match r {
                        TopicRef::Name(n) => *n == t.name,
                        TopicRef::Id(id) => *id == t.id,
                    })
                })
            })
            .collect())
    }

    async fn topic_name(&self, topic: &TopicRef) -> Result<String, BackendError> {
        let id = match topic {
            TopicRef::Name(n) => return Ok(n.clone()),
            TopicRef::Id(id) => id,
        };
        let cached = lock(&self.ids).get(id).cloned();
        if let Some(name) = cached {
            return Ok(name);
        }
        self.list_topics(Some(std::slice::from_ref(topic)))
            .await?
            .into_iter()
            .next()
            .map(|t| t.name)
            .ok_or(BackendError::UnknownTopic(TopicRef::Id(*id)))
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
        validate_only: bool,
    ) -> Result<TopicInfo, BackendError> {
        if offsets::is_own(name) {
            return Err(BackendError::InvalidTopic(format!(
                "{name}: the prefix {} is the gateway's",
                offsets::TOPIC_PREFIX
            )));
        }
        let options = wire::topic_options(config, partitions, self.creating())?;
        let wire_name = WireName::new(name).map_err(|_| BackendError::InvalidTopic(name.into()))?;
        if validate_only {
            return match self.topic_header(name).await {
                Ok(_) => Err(BackendError::TopicExists(name.into())),
                Err(BackendError::UnknownTopic(_)) => Ok(TopicInfo {
                    name: name.into(),
                    id: Uuid::NIL,
                    partitions,
                    config: config.clone(),
                }),
                Err(e) => Err(e),
            };
        }
        let request = CreateTopicRequest {
            stream_id: self.stream.clone(),
            partitions_count: partitions,
            name: wire_name,
            options,
        };
        let reply = self
            .call(admin_lane(name), CREATE_TOPIC_CODE, request.to_bytes())
            .await
            .map_err(|f| backend_error(f, name, None))?;
        let info = match GetTopicResponse::decode(&reply) {
            Ok((r, _)) => wire::topic_info(&r.topic),
            // Created; read it back for its identity.
            Err(_) => wire::topic_info(&self.topic_header(name).await?.topic),
        };
        lock(&self.known).insert(
            info.name.clone(),
            Known {
                id: info.id,
                partitions: info.partitions,
            },
        );
        lock(&self.ids).insert(info.id, info.name.clone());
        // Whatever was known of a topic of this name is of one deleted outside the gateway.
        self.forget_topic(&info.name);
        Ok(info)
    }

    async fn delete_topic(&self, topic: &TopicRef) -> Result<TopicInfo, BackendError> {
        let name = self.topic_name(topic).await?;
        let header = self.topic_header(&name).await?;
        let request = DeleteTopicRequest {
            stream_id: self.stream.clone(),
            topic_id: named(&name)?,
        };
        self.call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
            .await
            .map_err(|f| backend_error(f, &name, None))?;
        self.forget_topic(&name);
        lock(&self.known).remove(&name);
        if let Some(listing) = lock(&self.listing).as_mut() {
            listing.retain(|t| t.name != name);
        }
        lock(&self.ids).retain(|_, n| *n != name);
        let has_offsets = lock(&self.offsets)
            .groups
            .values()
            .any(|g| g.keys().any(|(t, _)| *t == name));
        if has_offsets {
            // The topic is gone whatever happens here; a failure leaves offsets that a
            // topic of the same name would inherit, so it is logged loudly.
            if let Err(e) = self
                .write_offsets(vec![Record::DeleteTopic {
                    topic: name.clone(),
                }])
                .await
            {
                tracing::error!(topic = %name, error = %e, "could not delete the topic's committed offsets");
            }
        }
        Ok(wire::topic_info(&header.topic))
    }

    async fn create_partitions(
        &self,
        topic: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BackendError> {
        let described = self.topic_header(topic).await?;
        let header = &described.topic;
        let current = header.partitions_count;
        check_partition_growth(current, total)?;
        if validate_only {
            return Ok(());
        }
        let request = CreatePartitionsRequest {
            stream_id: self.stream.clone(),
            topic_id: named(topic)?,
            partitions_count: total - current,
        };
        self.call(
            admin_lane(topic),
            CREATE_PARTITIONS_CODE,
            request.to_bytes(),
        )
        .await
        .map_err(|f| backend_error(f, topic, None))?;
        lock(&self.known).insert(
            topic.to_owned(),
            Known {
                id: wire::topic_id(header),
                partitions: total,
            },
        );
        // Kafka's retention.bytes is per partition and Iggy's limit per topic: the topic's
        // limit grows with it, so each partition keeps what it kept before.
        let config = wire::topic_info(header).config;
        if config.retention_bytes.is_some() {
            let grown = match wire::topic_options(&config, total, wire::Existing::Altering(header))
            {
                Ok(options) => self.update_topic(topic, header, options).await,
                Err(e) => Err(e),
            };
            if let Err(e) = grown {
                tracing::error!(%topic, error = %e, "partitions created, but the topic's size limit was not grown with them");
            }
        }
        Ok(())
    }

    /// Sends Iggy `options` to change `topic` (whose header is `header`).
    async fn update_topic(
        &self,
        topic: &str,
        header: &TopicHeader,
        options: WireOptions,
    ) -> Result<(), BackendError> {
        let request = UpdateTopicRequest {
            stream_id: self.stream.clone(),
            topic_id: named(topic)?,
            name: header.name.clone(),
            options,
        };
        self.call(admin_lane(topic), UPDATE_TOPIC_CODE, request.to_bytes())
            .await
            .map(|_| ())
            .map_err(|f| backend_error(f, topic, None))
    }

    async fn alter_topic_config(
        &self,
        topic: &str,
        config: &TopicConfig,
        validate_only: bool,
    ) -> Result<(), BackendError> {
        let described = self.topic_header(topic).await?;
        let header = &described.topic;
        let options = wire::topic_options(
            config,
            header.partitions_count,
            wire::Existing::Altering(header),
        )?;
        if validate_only {
            return Ok(());
        }
        self.update_topic(topic, header, options).await
    }

    // ---- long polls ----

    async fn watch(&self, partitions: &[WatchPartition]) {
        // One topic request per topic, however many of its partitions are watched.
        let mut by_topic: Vec<(String, Vec<&WatchPartition>)> = Vec::new();
        for w in partitions {
            let Ok(name) = self.topic_name(&w.topic).await else {
                // Let the fetch read again and report the error.
                return;
            };
            match by_topic.iter_mut().find(|(n, _)| *n == name) {
                Some((_, ws)) => ws.push(w),
                None => by_topic.push((name, vec![w])),
            }
        }
        // The reads before the watch made the states of the partitions that exist; one that
        // went (Iggy said it did not exist) is not made again here.
        let states: Vec<(u64, Arc<PartitionState>)> = {
            let map = lock(&self.partitions);
            by_topic
                .iter()
                .flat_map(|(name, ws)| {
                    let topic = map.get(name);
                    ws.iter().filter_map(move |w| {
                        let state = topic.and_then(|t| t.get(&w.partition))?;
                        Some((w.offset, Arc::clone(state)))
                    })
                })
                .collect()
        };
        // The first look is fresh: the read before the watch may have missed an append.
        let mut at_least = self.clock.now();
        let mut by_append = false;
        loop {
            // Listening before looking: an append between the two still wakes this watch.
            let appended = AnyOf(states.iter().map(|(_, s)| s.appended.listen()).collect());
            // Where this gateway's own append ended is known without asking Iggy.
            if by_append
                && states
                    .iter()
                    .any(|(offset, s)| s.seen_end.load(Ordering::Relaxed) > *offset)
            {
                return;
            }
            for (name, watched) in &by_topic {
                let Ok(t) = self.look(name, at_least).await else {
                    return;
                };
                for w in watched {
                    match self.partition_offsets(name, &t, w.partition) {
                        Ok(o) if o.high_watermark <= w.offset => {}
                        _ => return,
                    }
                }
            }
            // Every watch wakes on the same beat, so that one look serves them all.
            let next = self.next_beat(self.clock.now());
            by_append = Race(Box::pin(appended), Box::pin(self.clock.sleep_until(next))).await;
            // Woken by an append here: only a look taken after it, if its end does not do.
            at_least = if by_append { self.clock.now() } else { next };
        }
    }

    /// The first beat of the poll interval after `now`, counted from the backend's start.
    fn next_beat(&self, now: Instant) -> Instant {
        let interval = self.config.poll_interval.as_nanos().max(1);
        let beats = now.duration_since(self.started).as_nanos() / interval + 1;
        self.started + Duration::from_nanos(u64::try_from(beats * interval).unwrap_or(u64::MAX))
    }

    // ---- committed offsets ----

    fn fetch_offsets(&self, group: &str, only: Option<&[(String, u32)]>) -> Vec<GroupOffset> {
        lock(&self.offsets)
            .groups
            .get(group)
            .map_or_else(Vec::new, |offsets| select_offsets(offsets, only))
    }

    /// Writes `records` to the committed-offsets log and applies them, compacting when due.
    /// A failure is the
    /// log's, not the committed topic's: it is reported as Iggy being unavailable (the
    /// records may have landed), never as an unknown topic.
    async fn write_offsets(&self, records: Vec<Record>) -> Result<(), BackendError> {
        self.write_offsets_to_log(records)
            .await
            .map_err(|e| match e {
                BackendError::Unavailable(_) => e,
                other => BackendError::Unavailable(format!("the committed-offsets log: {other}")),
            })
    }

    async fn write_offsets_to_log(&self, records: Vec<Record>) -> Result<(), BackendError> {
        if records.is_empty() {
            return Ok(());
        }
        let _gate = self.offsets_gate.enter().await;
        let (mut generation, mut expected) = {
            let state = lock(&self.offsets);
            (state.generation, state.records)
        };
        let appended = match self.append_records(generation, &records).await {
            Err(BackendError::UnknownTopic(_)) => {
                // The generation is gone: another gateway compacted the log into a newer one,
                // or somebody deleted it.
                self.another_writer("its generation of the log is gone");
                self.reopen_offsets(generation).await?;
                (generation, expected) = {
                    let state = lock(&self.offsets);
                    (state.generation, state.records)
                };
                self.append_records(generation, &records).await
            }
            other => other,
        };
        let landed = match appended {
            Ok(landed) => landed,
            Err(e) => {
                // Iggy may have taken them all the same: the next append will tell.
                self.offsets_in_doubt.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        let in_doubt = self.offsets_in_doubt.swap(false, Ordering::Relaxed);
        // Others wrote to the log since this gateway last did (or an append whose reply was
        // lost landed): it is read again from there, these records included, so that the
        // state follows the log's order.
        let mut rewrite = false;
        let caught_up = match landed {
            Some(at) if at == expected => None,
            Some(at) if at < expected => {
                // The log lost records (deleted and created again by other means): what it
                // held is only in this gateway's memory now, so it is written again whole.
                tracing::error!(
                    generation,
                    held = expected,
                    found = at,
                    "the committed-offsets log lost records; writing it again from memory"
                );
                rewrite = true;
                None
            }
            _ => {
                if !in_doubt {
                    self.another_writer("records it did not write came before its own");
                }
                match self.read_log(generation, expected).await {
                    Ok(read) => Some(read),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the committed-offsets log back");
                        None
                    }
                }
            }
        };
        let compact = {
            let mut state = lock(&self.offsets);
            match caught_up {
                Some((read, end)) => {
                    for r in &read {
                        state.apply(r);
                    }
                    state.records = end;
                }
                None => {
                    for r in &records {
                        state.apply(r);
                    }
                }
            }
            if let (true, Some(at)) = (rewrite, landed) {
                state.wiped = true;
                state.records = at + records.len() as u64;
            }
            (state.wiped, state.wiped || state.wants_compaction())
        };
        match compact {
            (_, false) => {}
            // Until the log holds the whole state again, a restart would find only part of
            // it: a commit is acknowledged once it does.
            (true, true) => self.compact(generation).await?,
            (false, true) => {
                if let Err(e) = self.compact(generation).await {
                    tracing::warn!(error = %e, "compaction of the committed offsets failed; will retry");
                }
            }
        }
        Ok(())
    }

    /// Appends `records` to generation `generation` of the log. Returns where the first
    /// landed if they all landed back to back (nothing else written between them).
    async fn append_records(
        &self,
        generation: u64,
        records: &[Record],
    ) -> Result<Option<u64>, BackendError> {
        let topic = offsets::topic_name(generation);
        let (mut first, mut next, mut contiguous) = (None, None, true);
        for chunk in records.chunks(1000) {
            let messages: MessageList = chunk
                .iter()
                .map(|r| IggyMessage {
                    payload: r.encode(),
                    ..IggyMessage::default()
                })
                .collect();
            let ids = wire::Ids::counted(self.message_ids(messages.len()));
            let body = wire::send_messages(&self.stream, &named(&topic)?, 0, &messages, ids)?;
            let reply = self
                .call(admin_lane(&topic), SEND_MESSAGES_CODE, body)
                .await
                .map_err(|f| backend_error(f, &topic, Some(0)))?;
            let at = SendMessagesResponse::decode(&reply)
                .ok()
                .and_then(|(r, _)| r.confirmations.first().map(|c| c.base_offset));
            contiguous &= at.is_some() && (next.is_none() || at == next);
            first = first.or(at);
            next = at.map(|a| a + chunk.len() as u64);
        }
        Ok(first.filter(|_| contiguous))
    }

    async fn create_offsets_topic(&self, generation: u64) -> Result<(), BackendError> {
        let name = offsets::topic_name(generation);
        let request = CreateTopicRequest {
            stream_id: self.stream.clone(),
            partitions_count: 1,
            name: WireName::new(name.clone())
                .map_err(|_| BackendError::InvalidTopic(name.clone()))?,
            // Written through (unless configured otherwise) like the topics the gateway creates
            // for Kafka clients: a commit is acknowledged once it is in the topic's segment.
            options: wire::topic_options(&TopicConfig::default(), 1, self.creating())?,
        };
        match self
            .call(admin_lane(&name), CREATE_TOPIC_CODE, request.to_bytes())
            .await
        {
            Ok(_) | Err(Failure::Status(code::TOPIC_NAME_ALREADY_EXISTS)) => Ok(()),
            Err(f) => Err(backend_error(f, &name, None)),
        }
    }

    async fn drop_offsets_topic(&self, generation: u64) {
        let name = offsets::topic_name(generation);
        let Ok(topic_id) = named(&name) else { return };
        let request = DeleteTopicRequest {
            stream_id: self.stream.clone(),
            topic_id,
        };
        if let Err(e) = self
            .call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
            .await
        {
            tracing::warn!(topic = %name, error = %e, "could not delete an old offsets topic");
        }
    }

    /// Rewrites the live offsets into the next generation and drops the current one.
    async fn compact(&self, generation: u64) -> Result<(), BackendError> {
        let next = generation + 1;
        let snapshot = lock(&self.offsets).snapshot();
        self.create_offsets_topic(next).await?;
        let landed = self.append_records(next, &snapshot).await?;
        if landed != Some(0) {
            self.another_writer("its new generation of the log was written to by another");
        }
        {
            let mut state = lock(&self.offsets);
            state.generation = next;
            state.records = landed.unwrap_or(0) + snapshot.len() as u64;
            state.wiped = false;
        }
        self.drop_offsets_topic(generation).await;
        tracing::info!(
            generation = next,
            records = snapshot.len(),
            "compacted the committed offsets"
        );
        Ok(())
    }

    /// Reads generation `g` whole: its records and whether its snapshot is complete.
    async fn replay(&self, generation: u64) -> Result<(OffsetsState, bool), BackendError> {
        let (records, end) = self.read_log(generation, 0).await?;
        let mut state = OffsetsState {
            generation,
            ..OffsetsState::default()
        };
        let mut complete = false;
        for r in &records {
            complete |= *r == Record::SnapshotComplete;
            state.apply(r);
        }
        state.records = end;
        Ok((state, complete))
    }

    /// Reads generation `g` of the log from offset `from` to its end: the records, and the
    /// offset after the last.
    async fn read_log(
        &self,
        generation: u64,
        from: u64,
    ) -> Result<(Vec<Record>, u64), BackendError> {
        let topic = offsets::topic_name(generation);
        let mut records = Vec::new();
        let mut next = from;
        loop {
            let body = self
                .poll(&topic, 0, WirePollingStrategy::offset(next), 1000)
                .await?;
            let (messages, ..) = wire::polled(&body, next, usize::MAX, usize::MAX, true)?;
            let Some((last, _)) = messages.last() else {
                break;
            };
            next = last + 1;
            for (offset, m) in messages.iter() {
                match Record::decode(&m.payload) {
                    Some(r) => records.push(r),
                    None => {
                        tracing::warn!(topic = %topic, offset, "skipping a record no gateway wrote")
                    }
                }
            }
        }
        Ok((records, next))
    }

    /// Says, once per run, that another writer shares this stream's committed-offsets log:
    /// two gateways on one stream each keep their own groups and see each other's commits
    /// only when they next commit or start.
    fn another_writer(&self, what: &str) {
        if self.another_writer_told.swap(true, Ordering::Relaxed) {
            tracing::debug!(what, "another writer of the committed-offsets log");
        } else {
            tracing::error!(
                stream = %self.config.stream, what,
                "another gateway (or Iggy client) writes this stream's committed offsets: run \
                 one gateway per stream; commits made through the other are seen here only when \
                 this gateway next commits or restarts"
            );
        }
    }

    /// After generation `gone` of the log disappeared: replays the newest complete
    /// generation (another gateway's compaction), or, when there is none (the log was
    /// deleted), writes what this gateway holds into a new one.
    async fn reopen_offsets(&self, gone: u64) -> Result<(), BackendError> {
        let generations = self.offsets_generations().await?;
        if let Some(state) = self.newest_complete(&generations).await? {
            *lock(&self.offsets) = state;
            return Ok(());
        }
        tracing::warn!("the committed-offsets log was deleted; writing it again from memory");
        self.compact(generations.first().map_or(gone, |&g| g.max(gone)))
            .await
    }

    /// The generations of the log in the stream, newest first.
    async fn offsets_generations(&self) -> Result<Vec<u64>, BackendError> {
        let mut generations: Vec<u64> = self
            .stream_topics()
            .await?
            .iter()
            .filter_map(|t| offsets::generation(t.name.as_str()))
            .collect();
        generations.sort_unstable_by(|a, b| b.cmp(a));
        Ok(generations)
    }

    /// The newest of `generations` (newest first) whose snapshot is complete, replayed.
    async fn newest_complete(
        &self,
        generations: &[u64],
    ) -> Result<Option<OffsetsState>, BackendError> {
        for &g in generations {
            let (state, complete) = self.replay(g).await?;
            if complete {
                return Ok(Some(state));
            }
            tracing::warn!(
                generation = g,
                "offsets generation without a complete snapshot is ignored"
            );
        }
        Ok(None)
    }

    /// Finds the newest complete generation of the offsets log, replays it, and removes the
    /// others; starts generation 0 when there is none.
    async fn open_offsets(&self) -> Result<(), String> {
        let generations = self
            .offsets_generations()
            .await
            .map_err(|e| format!("cannot list the Iggy stream: {e}"))?;
        let chosen = self
            .newest_complete(&generations)
            .await
            .map_err(|e| format!("cannot replay the committed offsets: {e}"))?;
        let state = match chosen {
            Some(s) => s,
            None => {
                let g = generations.first().map_or(0, |g| g + 1);
                self.create_offsets_topic(g)
                    .await
                    .map_err(|e| format!("cannot create the offsets topic: {e}"))?;
                self.append_records(g, &[Record::SnapshotComplete])
                    .await
                    .map_err(|e| format!("cannot write the offsets topic: {e}"))?;
                OffsetsState {
                    generation: g,
                    records: 1,
                    ..OffsetsState::default()
                }
            }
        };
        let current = state.generation;
        tracing::info!(
            generation = current,
            groups = state.groups.len(),
            offsets = state.live(),
            "committed offsets replayed from Iggy"
        );
        *lock(&self.offsets) = state;
        for g in generations.into_iter().filter(|g| *g != current) {
            self.drop_offsets_topic(g).await;
        }
        Ok(())
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Vec<Result<(), BackendError>> {
        let fits = |known: &HashMap<String, Known>| {
            offsets.iter().all(|o| {
                known
                    .get(&o.topic)
                    .is_some_and(|k| o.partition < k.partitions)
            })
        };
        if !fits(&lock(&self.known)) {
            if let Err(e) = self.stream_topics().await {
                return offsets.iter().map(|_| Err(e.clone())).collect();
            }
        }
        // Checked under the lock, without copying the table; nothing here awaits.
        let (mut results, records) = {
            let known = lock(&self.known);
            let mut results: Vec<Result<(), BackendError>> = Vec::with_capacity(offsets.len());
            let mut records = Vec::new();
            for o in &offsets {
                results.push(match known.get(&o.topic) {
                    None => Err(BackendError::UnknownTopic(TopicRef::Name(o.topic.clone()))),
                    Some(k) if o.partition >= k.partitions => Err(BackendError::UnknownPartition {
                        topic: o.topic.clone(),
                        partition: o.partition,
                    }),
                    Some(_) => {
                        records.push(Record::Commit {
                            group: group.into(),
                            topic: o.topic.clone(),
                            partition: o.partition,
                            committed: o.committed.clone(),
                        });
                        Ok(())
                    }
                });
            }
            (results, records)
        };
        if let Err(e) = self.write_offsets(records).await {
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(e.clone());
                }
            }
            return results;
        }
        // Mirror the progress into Iggy's own consumer offsets ("last consumed"), for
        // Iggy's tools; the gateway does not read them back.
        // Nobody waits for these: the commit is durable already, and the mirror is for show.
        for (o, _) in offsets
            .iter()
            .zip(&results)
            .filter(|(o, r)| r.is_ok() && o.committed.offset > 0)
        {
            let (Ok(consumer), Ok(topic_id), Ok(offset)) = (
                WireIdentifier::named(group),
                named(&o.topic),
                u64::try_from(o.committed.offset - 1),
            ) else {
                continue;
            };
            let request = StoreConsumerOffsetRequest {
                consumer: WireConsumer::consumer(consumer),
                stream_id: self.stream.clone(),
                topic_id,
                partition_id: Some(o.partition),
                offset,
                ack: AckLevel::Quorum,
            };
            self.lanes.send_detached(
                lane_of(&o.topic, o.partition),
                STORE_CONSUMER_OFFSET_CODE,
                request.to_bytes(),
            );
        }
        results
    }

    async fn delete_offsets(
        &self,
        group: &str,
        only: Option<Vec<(String, u32)>>,
    ) -> Result<usize, BackendError> {
        let present: Vec<(String, u32)> = {
            let state = lock(&self.offsets);
            let Some(offsets) = state.groups.get(group) else {
                return Ok(0);
            };
            match &only {
                None => offsets.keys().cloned().collect(),
                Some(only) => only
                    .iter()
                    .filter(|k| offsets.contains_key(*k))
                    .cloned()
                    .collect(),
            }
        };
        let records = if only.is_none() {
            vec![Record::DeleteGroup {
                group: group.into(),
            }]
        } else {
            present
                .iter()
                .map(|(t, p)| Record::DeleteOne {
                    group: group.into(),
                    topic: t.clone(),
                    partition: *p,
                })
                .collect()
        };
        if !present.is_empty() {
            self.write_offsets(records).await?;
        }
        for (topic, partition) in &present {
            let (Ok(consumer), Ok(topic_id)) = (WireIdentifier::named(group), named(topic)) else {
                continue;
            };
            let request = DeleteConsumerOffsetRequest {
                consumer: WireConsumer::consumer(consumer),
                stream_id: self.stream.clone(),
                topic_id,
                partition_id: Some(*partition),
                ack: AckLevel::Quorum,
            };
            match self
                .call(
                    lane_of(topic, *partition),
                    DELETE_CONSUMER_OFFSET_CODE,
                    request.to_bytes(),
                )
                .await
            {
                Ok(_) | Err(Failure::Status(code::CONSUMER_OFFSET_NOT_FOUND)) => {}
                Err(e) => {
                    tracing::debug!(group, error = %e, "deleting a mirrored Iggy consumer offset failed")
                }
            }
        }
        Ok(present.len())
    }
}

/// Runs every decoder this backend applies to what Iggy sends on `data`: a poll reply (its
/// batches, messages and user headers), headers alone, an offsets-log record, and a topic
/// reply as Kafka sees it (its configuration, and an alter of it). For the fuzzer; they must
/// not panic whatever the bytes.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let _ = wire::polled(&body, 0, 1 << 20, 1000, true);
    let _ = wire::polled(&body, 3, 100, 1000, false);
    let _ = wire::decode_headers(data);
    let _ = wire::producer_batches(data);
    let _ = wire::find_message(data, u128::from_le_bytes([0xA5; 16]));
    let _ = wire::scan_timestamps(data, 2..u64::MAX, 0);
    let _ = Record::decode(data);
    if let Ok((reply, _)) = GetTopicResponse::decode(data) {
        let info = wire::topic_info(&reply.topic);
        let existing = wire::Existing::Altering(&reply.topic);
        let _ = wire::topic_options(&info.config, info.partitions, existing);
    }
}

/// Writes `messages` as an Iggy append both with the backend's own writer and with Iggy's
/// `SendMessagesEncoder` (given them fitted to one append's time span when it refuses them
/// for that), and panics unless both refuse or both write the same bytes. For the fuzzer.
#[doc(hidden)]
pub fn fuzz_encode(messages: &MessageList, partition: u32, first_id: u128) {
    let stream = WireIdentifier::numeric(1);
    let Ok(topic) = wire::named("topic") else {
        return;
    };
    // Odd ids number an idempotent producer's batch, made of the id's bits.
    #[allow(clippy::cast_possible_truncation)]
    let ids = if first_id & 1 == 1 {
        wire::Ids::producer(&ProducerBatch {
            producer_id: (first_id >> 64) as i64,
            epoch: (first_id >> 48) as i16,
            first_sequence: ((first_id as u32) >> 1).cast_signed(),
            count: i32::try_from(messages.len()).unwrap_or(i32::MAX),
        })
    } else {
        wire::Ids::counted(first_id)
    };
    let ours = wire::send_messages(&stream, &topic, partition, messages, ids);
    let theirs = |messages: &MessageList| {
        wire::reference_send_messages(
            &stream,
            &topic,
            partition,
            &messages.clone().into_messages(),
            ids,
        )
    };
    let theirs = match theirs(messages) {
        // More time than one Iggy append can span: ours fits it first.
        Err(iggy_binary_protocol::WireError::InvalidMessageTimestampDelta(_)) => {
            theirs(&wire::fit_timestamps(messages))
        }
        other => other,
    };
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "the append bytes differ"),
        (Err(_), Err(_)) => {}
        (ours, theirs) => panic!("one encoder refused: ours {ours:?}, Iggy's {theirs:?}"),
    }
}

#[cfg(any(test, feature = "fuzzing"))]
mod testing;
#[cfg(test)]
mod tests;

/// Runs a script of commands, Iggy failures and gateway restarts against a fake Iggy server,
/// and panics when anything acknowledged reads back otherwise. For the fuzzer.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_script(script: &[u8]) {
    testing::script::run(script);
}
