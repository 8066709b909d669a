//! The embedded store: what the gateway runs on when no Iggy server is configured.
//!
//! In process and in memory, with Iggy's semantics: topics of partitions numbered from 0,
//! each a log of messages at 0-based, dense offsets. Memory stays bounded: every partition
//! keeps at most a configured number of bytes (and a topic's `retention.bytes` and
//! `retention.ms`, when set); beyond that the oldest messages are dropped and the log start
//! offset advances. Nothing survives a restart.
//!
//! Every command but [`Command::Watch`] completes synchronously, under one short lock of
//! one partition (or of the topic table for administration). A watch waits on the
//! partitions' events, which appends notify.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use event_listener::{Event, EventListener};
use iggy_kafka_core::backend::{
    check_partition_growth, select_offsets, ActiveProducer, Appended, Backend, BackendError,
    Command, Completion, Execution, GroupOffset, GroupOffsets, PartitionOffsets, ProducerBatch,
    ReadResult, TopicConfig, TopicInfo, TopicRef, WatchPartition,
};
use iggy_kafka_core::mapping::{
    bare_timestamp_ms, kafka_timestamp_ms, marker, set_log_append_time,
};
use iggy_kafka_core::message::{message_size, BareBlock, Block, MessageList, Messages};
use iggy_kafka_core::producers::Producers;
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_core::stats::{Metric, MetricKind};
use iggy_kafka_core::topic_config::{
    DEFAULT_FLUSH_MESSAGES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_SEGMENT_BYTES,
};
use iggy_kafka_core::txn_index::TxnIndex;

/// How the embedded store is sized.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The most bytes a partition keeps, whatever its topic says.
    pub max_partition_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_partition_bytes: 1 << 30,
        }
    }
}

/// The embedded store. Cheap to clone: clones share the data.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Committed offsets, group by group.
    groups: Mutex<HashMap<String, GroupOffsets>>,
    next_producer_id: AtomicI64,
    ids: AtomicU64,
    /// How many SCRAM credential changes were kept: each store's place in their order.
    scram_changes: AtomicU64,
    random: RandomState,
}

#[derive(Debug)]
struct Topic {
    name: String,
    id: Uuid,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    deleted: AtomicBool,
}

#[derive(Debug, Default)]
struct Partition {
    log: Mutex<Log>,
    appended: Event,
}

#[derive(Debug, Default)]
struct Log {
    /// The log start offset: messages before it are dropped, even while their block stays.
    start: u64,
    /// What each append brought, oldest first; offsets run on from block to block.
    blocks: VecDeque<Stored>,
    /// The high watermark.
    end: u64,
    bytes: u64,
    max_timestamp: Option<(u64, i64)>,
    last_append_us: u64,
    /// Idempotent producers that appended here.
    producers: Producers,
    /// Transactions open and aborted here.
    txns: TxnIndex,
}

/// One append's messages, kept as they came (one allocation per append, not per message).
#[derive(Debug)]
struct Stored {
    base: u64,
    messages: Kept,
}

#[derive(Debug)]
enum Kept {
    /// Bare messages (keyless records without headers, the common case), as they arrived.
    Bare(Arc<BareBlock>),
    /// Messages with headers, log-append times and transaction markers.
    Mapped(Block),
}

impl Stored {
    fn len(&self) -> usize {
        match &self.messages {
            Kept::Bare(block) => block.len(),
            Kept::Mapped(block) => block.len(),
        }
    }

    fn end(&self) -> u64 {
        self.base + self.len() as u64
    }

    /// The `i`th message's size ([`message_size`]) and append time, if it holds one.
    fn size_and_time(&self, i: usize) -> Option<(usize, u64)> {
        match &self.messages {
            Kept::Bare(block) => block.get(i).map(|m| (m.size(), block.appended_us(i))),
            Kept::Mapped(block) => block.get(i).map(|m| (message_size(m), m.timestamp_us)),
        }
    }

    /// The `i`th message's Kafka timestamp.
    fn kafka_timestamp_ms(&self, i: usize) -> i64 {
        match &self.messages {
            Kept::Bare(block) => block.get(i).map_or(0, |m| {
                bare_timestamp_ms(m.origin_timestamp_us, block.appended_us(i))
            }),
            Kept::Mapped(block) => block.get(i).map_or(0, kafka_timestamp_ms),
        }
    }

    /// Adds the messages at `range` to a read.
    fn read_into(&self, read: &mut Messages, range: std::ops::Range<usize>) {
        let first = self.base + range.start as u64;
        match &self.messages {
            Kept::Bare(block) => read.push_bare(first, block, range),
            Kept::Mapped(block) => read.push(first, block, range),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make the data unreachable: the log stays consistent
    // between statements that can panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Log {
    fn high_watermark(&self) -> u64 {
        self.end
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start: self.start,
            high_watermark: self.high_watermark(),
            size_bytes: Some(self.bytes),
            last_stable: Some(self.txns.last_stable(self.high_watermark())),
        }
    }

    /// Counts a message appended at `offset`.
    fn count(&mut self, offset: u64, timestamp_ms: i64, size: usize) {
        if self.max_timestamp.is_none_or(|(_, t)| timestamp_ms > t) {
            self.max_timestamp = Some((offset, timestamp_ms));
        }
        self.bytes += size as u64;
    }

    /// Every message held from `from` on, with its offset and append, in order.
    fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &Stored, usize)> + '_ {
        let from = from.max(self.start);
        let first = self.blocks.partition_point(|b| b.end() <= from);
        self.blocks.range(first..).flat_map(move |b| {
            let skip = usize::try_from(from.saturating_sub(b.base)).unwrap_or(usize::MAX);
            (skip..b.len()).map(move |i| (b.base + i as u64, b, i))
        })
    }

    /// Drops the oldest messages beyond the byte limit or older than `retention_ms`.
    fn enforce_retention(&mut self, max_bytes: u64, retention_ms: Option<i64>, now_us: u64) {
        let cutoff = retention_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| now_us.saturating_sub(ms.saturating_mul(1000)));
        self.drop_front(|log, appended_us| {
            log.bytes > max_bytes || cutoff.is_some_and(|c| appended_us < c)
        });
    }

    /// Advances the log start to `offset` (DeleteRecords): the log start after it.
    fn delete_before(&mut self, offset: u64) -> u64 {
        self.drop_front(|log, _| log.start < offset);
        // Blocks hold every message up to the end, so only an empty log stops short.
        self.start = self.start.max(offset.min(self.end));
        self.start
    }

    /// Drops the oldest messages while `drop`, given each one's append time, says so.
    fn drop_front(&mut self, mut drop: impl FnMut(&Self, u64) -> bool) {
        let mut dropped = false;
        while let Some(front) = self.blocks.front() {
            let Some((size, appended_us)) = usize::try_from(self.start.saturating_sub(front.base))
                .ok()
                .and_then(|i| front.size_and_time(i))
            else {
                self.blocks.pop_front();
                continue;
            };
            if !drop(self, appended_us) {
                break;
            }
            self.bytes -= size as u64;
            self.start += 1;
            if self.start >= front.end() {
                self.blocks.pop_front();
            }
            dropped = true;
        }
        if dropped {
            self.txns.truncate_before(self.start);
        }
        if dropped && self.max_timestamp.is_some_and(|(o, _)| o < self.start) {
            let mut max: Option<(u64, i64)> = None;
            for (o, b, i) in self.iter_from(self.start) {
                let ts = b.kafka_timestamp_ms(i);
                if max.is_none_or(|(_, m)| ts > m) {
                    max = Some((o, ts));
                }
            }
            self.max_timestamp = max;
        }
    }
}

impl Topic {
    fn info(&self) -> TopicInfo {
        TopicInfo {
            name: self.name.clone(),
            id: self.id,
            partitions: u32::try_from(read(&self.partitions).len()).unwrap_or(u32::MAX),
            config: read(&self.config).clone(),
        }
    }

    fn partition(&self, p: u32) -> Result<Arc<Partition>, BackendError> {
        read(&self.partitions)
            .get(p as usize)
            .cloned()
            .ok_or_else(|| BackendError::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
            })
    }
}

impl EmbeddedStore {
    /// An empty store.
    #[must_use]
    pub fn new(config: StoreConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                // Unlikely to meet the ids of an earlier run, whose producers may still
                // be writing: the top bits from the wall clock, the low 20 counting.
                next_producer_id: AtomicI64::new(
                    i64::try_from((now_us() >> 20) << 20).unwrap_or(0) + 1000,
                ),
                ids: AtomicU64::new(0),
                scram_changes: AtomicU64::new(0),
                random: RandomState::new(),
            }),
        }
    }

    /// Runs a command to completion, waiting if it is a watch. For tests and tools.
    pub async fn run(&self, command: Command) -> Completion {
        match self.execute(command) {
            Execution::Done(c) => c,
            Execution::Pending(f) => f.await,
        }
    }

    fn topic(&self, r: &TopicRef) -> Result<Arc<Topic>, BackendError> {
        let topics = read(&self.inner.topics);
        let found = match r {
            TopicRef::Name(n) => topics.get(n).cloned(),
            TopicRef::Id(id) => topics.values().find(|t| t.id == *id).cloned(),
        };
        found.ok_or_else(|| BackendError::UnknownTopic(r.clone()))
    }

    fn new_topic_id(&self) -> Uuid {
        // Random per process (RandomState's keys), unique within it (the counter): a topic
        // re-created under the same name gets a new id, as Kafka's clients expect.
        let n = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        for (i, half) in bytes.chunks_mut(8).enumerate() {
            let mut h = self.inner.random.build_hasher();
            h.write_u64(n);
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_be_bytes());
        }
        Uuid(bytes)
    }

    fn append(
        &self,
        topic: &str,
        partition: u32,
        messages: MessageList,
        largest_batch: usize,
        producer: Option<ProducerBatch>,
    ) -> Result<Appended, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        let part = topic.partition(partition)?;
        let config = read(&topic.config).clone();
        let max = usize::try_from(
            config
                .max_message_bytes
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        )
        .unwrap_or(0);
        if largest_batch > max {
            return Err(BackendError::MessageTooLarge {
                size: largest_batch,
                max,
            });
        }
        if messages.iter().any(|m| m.payload.is_empty()) {
            return Err(BackendError::InvalidMessage("empty payload".into()));
        }
        let log_append = config.log_append_time == Some(true);
        // A log-append time is a header: such messages are kept mapped.
        let incoming = if messages.is_bare() && !log_append {
            Ok(messages)
        } else {
            Err(messages.into_messages())
        };
        let max_bytes = config
            .retention_bytes
            .and_then(|b| u64::try_from(b).ok())
            .map_or(self.inner.config.max_partition_bytes, |b| {
                b.min(self.inner.config.max_partition_bytes)
            });
        let appended = {
            let mut log = lock(&part.log);
            if let Some(pb) = &producer {
                if let Some(original) = log.producers.check(pb)? {
                    tracing::debug!(
                        producer = pb.producer_id,
                        sequence = pb.first_sequence,
                        "duplicate batch answered with its first append"
                    );
                    return Ok(Appended {
                        base_offset: original.base,
                        log_append_time_ms: original.log_append_time_ms,
                        log_start: log.start,
                    });
                }
            }
            // Append times never go backwards within a partition, whatever the clock does.
            let now = now_us().max(log.last_append_us);
            log.last_append_us = now;
            let base = log.high_watermark();
            let incoming = incoming.and_then(|mut list| {
                list.shrink();
                BareBlock::new(list, now).map_err(MessageList::into_messages)
            });
            let kept = match incoming {
                Ok(block) => {
                    for (m, offset) in block.iter().zip(base..) {
                        let ts = bare_timestamp_ms(m.origin_timestamp_us, now);
                        log.count(offset, ts, m.size());
                    }
                    Kept::Bare(Arc::new(block))
                }
                Err(mut messages) => {
                    for (m, offset) in messages.iter_mut().zip(base..) {
                        m.timestamp_us = now;
                        if log_append {
                            set_log_append_time(m, now);
                        }
                        log.count(offset, kafka_timestamp_ms(m), message_size(m));
                    }
                    if messages.capacity() > messages.len() + messages.len() / 4 {
                        messages.shrink_to_fit();
                    }
                    Kept::Mapped(Arc::new(messages))
                }
            };
            let stored = Stored {
                base,
                messages: kept,
            };
            if stored.len() > 0 {
                log.end = stored.end();
                log.blocks.push_back(stored);
            }
            log.enforce_retention(max_bytes, config.retention_ms, now);
            let log_append_time_ms = log_append.then(|| i64::try_from(now / 1000).unwrap_or(0));
            if let Some(pb) = &producer {
                log.producers.record(pb, base, log_append_time_ms);
                if pb.transactional {
                    log.txns.appended(pb.producer_id, base);
                }
            }
            Appended {
                base_offset: base,
                log_append_time_ms,
                log_start: log.start,
            }
        };
        part.appended.notify(usize::MAX);
        Ok(appended)
    }

    fn read(
        &self,
        topic: &TopicRef,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        max_messages: usize,
    ) -> Result<ReadResult, BackendError> {
        let topic = self.topic(topic)?;
        let part = topic.partition(partition)?;
        let retention_ms = read(&topic.config).retention_ms;
        let mut log = lock(&part.log);
        if retention_ms.is_some() {
            let max = log.bytes;
            log.enforce_retention(max, retention_ms, now_us());
        }
        let offsets = log.offsets();
        if offset < offsets.log_start || offset > offsets.high_watermark {
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: offsets.log_start,
                high_watermark: offsets.high_watermark,
            });
        }
        let mut messages = Messages::new();
        let (mut bytes, mut taken) = (0usize, 0usize);
        let first = log.blocks.partition_point(|b| b.end() <= offset);
        'blocks: for b in log.blocks.range(first..) {
            let skip = usize::try_from(offset.saturating_sub(b.base)).unwrap_or(usize::MAX);
            let mut end = skip;
            while let Some((size, _)) = b.size_and_time(end) {
                if taken >= max_messages || (taken > 0 && bytes + size > max_bytes) {
                    b.read_into(&mut messages, skip..end);
                    break 'blocks;
                }
                bytes += size;
                taken += 1;
                end += 1;
            }
            b.read_into(&mut messages, skip..end);
        }
        let last = messages.last_offset().unwrap_or(offset);
        Ok(ReadResult {
            topic: topic.name.clone(),
            aborted: log.txns.aborted_between(offset, last),
            messages,
            offsets,
        })
    }

    fn write_marker(
        &self,
        topic: &str,
        partition: u32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<u64, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        let part = topic.partition(partition)?;
        let offset = {
            let mut log = lock(&part.log);
            let now = now_us().max(log.last_append_us);
            log.last_append_us = now;
            let mut m = marker(
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
                i64::try_from(now / 1000).unwrap_or(0),
            );
            m.timestamp_us = now;
            let offset = log.high_watermark();
            log.bytes += message_size(&m) as u64;
            log.end = offset + 1;
            log.blocks.push_back(Stored {
                base: offset,
                messages: Kept::Mapped(Arc::new(vec![m])),
            });
            log.txns.marker(producer_id, commit, offset);
            log.producers.fence(producer_id, epoch);
            offset
        };
        part.appended.notify(usize::MAX);
        Ok(offset)
    }

    fn offsets(&self, topic: &TopicRef, partition: u32) -> Result<PartitionOffsets, BackendError> {
        let topic = self.topic(topic)?;
        let part = topic.partition(partition)?;
        let log = lock(&part.log);
        Ok(log.offsets())
    }

    fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: Option<u64>,
    ) -> Result<u64, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_owned()))?;
        let part = topic.partition(partition)?;
        let mut log = lock(&part.log);
        let offset = offset.unwrap_or(log.end);
        if offset > log.end {
            return Err(BackendError::OffsetOutOfRange {
                offset,
                log_start: log.start,
                high_watermark: log.end,
            });
        }
        Ok(log.delete_before(offset))
    }

    fn producers(&self, topic: &str, partition: u32) -> Result<Vec<ActiveProducer>, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_owned()))?;
        let part = topic.partition(partition)?;
        let log = lock(&part.log);
        let mut active = log.producers.active();
        for p in &mut active {
            p.current_txn_start_offset = log.txns.open_since(p.producer_id);
        }
        Ok(active)
    }

    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        let part = topic.partition(partition)?;
        let log = lock(&part.log);
        let found = log.iter_from(log.start).find_map(|(o, b, i)| {
            let ts = b.kafka_timestamp_ms(i);
            (ts >= timestamp_ms).then_some((o, ts))
        });
        Ok(found)
    }

    fn max_timestamp(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, i64)>, BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        let part = topic.partition(partition)?;
        let max = lock(&part.log).max_timestamp;
        Ok(max)
    }

    fn create_topic(
        &self,
        name: String,
        partitions: u32,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<TopicInfo, BackendError> {
        if partitions == 0 {
            return Err(BackendError::InvalidPartitions(
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        in_memory(&config)?;
        let mut topics = write(&self.inner.topics);
        if topics.contains_key(&name) {
            return Err(BackendError::TopicExists(name));
        }
        if validate_only {
            return Ok(TopicInfo {
                name,
                id: Uuid::default(),
                partitions,
                config,
            });
        }
        let topic = Arc::new(Topic {
            name: name.clone(),
            id: self.new_topic_id(),
            config: RwLock::new(config),
            partitions: RwLock::new((0..partitions).map(|_| Arc::default()).collect()),
            deleted: AtomicBool::new(false),
        });
        let info = topic.info();
        topics.insert(name, topic);
        Ok(info)
    }

    fn commit_offsets(
        &self,
        group: String,
        offsets: Vec<GroupOffset>,
    ) -> Vec<Result<(), BackendError>> {
        let topics = read(&self.inner.topics);
        let mut groups = lock(&self.inner.groups);
        let stored = groups.entry(group.clone()).or_default();
        let results = offsets
            .into_iter()
            .map(|o| {
                let Some(topic) = topics.get(&o.topic) else {
                    return Err(BackendError::UnknownTopic(TopicRef::Name(o.topic)));
                };
                if o.partition >= read(&topic.partitions).len() as u32 {
                    return Err(BackendError::UnknownPartition {
                        topic: o.topic,
                        partition: o.partition,
                    });
                }
                stored.insert((o.topic, o.partition), o.committed);
                Ok(())
            })
            .collect();
        if groups.get(&group).is_some_and(BTreeMap::is_empty) {
            groups.remove(&group);
        }
        results
    }

    fn delete_topic(&self, r: &TopicRef) -> Result<TopicInfo, BackendError> {
        let topic = {
            let mut topics = write(&self.inner.topics);
            let name = match r {
                TopicRef::Name(n) => n.clone(),
                TopicRef::Id(id) => topics
                    .values()
                    .find(|t| t.id == *id)
                    .map(|t| t.name.clone())
                    .ok_or_else(|| BackendError::UnknownTopic(r.clone()))?,
            };
            topics
                .remove(&name)
                .ok_or_else(|| BackendError::UnknownTopic(r.clone()))?
        };
        topic.deleted.store(true, Ordering::Release);
        // As in Kafka, committed offsets of a deleted topic go with it.
        for offsets in lock(&self.inner.groups).values_mut() {
            offsets.retain(|(t, _), _| *t != topic.name);
        }
        // Long polls on the topic answer now (with UNKNOWN_TOPIC_OR_PARTITION).
        for p in read(&topic.partitions).iter() {
            p.appended.notify(usize::MAX);
        }
        Ok(topic.info())
    }

    fn create_partitions(
        &self,
        topic: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        let mut partitions = write(&topic.partitions);
        let current = u32::try_from(partitions.len()).unwrap_or(u32::MAX);
        check_partition_growth(current, total)?;
        if !validate_only {
            partitions.resize_with(total as usize, Arc::default);
        }
        Ok(())
    }

    fn alter_config(
        &self,
        topic: &str,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<(), BackendError> {
        let topic = self.topic(&TopicRef::Name(topic.to_string()))?;
        in_memory(&config)?;
        if !validate_only {
            *write(&topic.config) = config;
        }
        Ok(())
    }

    fn watch(&self, partitions: Vec<WatchPartition>) -> Execution {
        let mut listeners = Vec::with_capacity(partitions.len());
        for w in &partitions {
            let Ok(topic) = self.topic(&w.topic) else {
                return Execution::Done(Completion::Watch);
            };
            let Ok(part) = topic.partition(w.partition) else {
                return Execution::Done(Completion::Watch);
            };
            // Listen first, then look: an append in between is not missed.
            let listener = part.appended.listen();
            if topic.deleted.load(Ordering::Acquire) || lock(&part.log).high_watermark() > w.offset
            {
                return Execution::Done(Completion::Watch);
            }
            listeners.push(listener);
        }
        Execution::Pending(Box::pin(AnyOf(listeners)))
    }
}

/// Completes when any of the listeners fires.
struct AnyOf(Vec<EventListener>);

impl Future for AnyOf {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        for l in &mut self.0 {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(Completion::Watch);
            }
        }
        if self.0.is_empty() {
            return Poll::Ready(Completion::Watch);
        }
        Poll::Pending
    }
}

impl Backend for EmbeddedStore {
    fn describe(&self) -> String {
        let topics = read(&self.inner.topics).len();
        format!("embedded in-memory store: {topics} topics (nothing survives a restart)")
    }

    fn metrics(&self) -> Vec<Metric> {
        let (mut bytes, mut records) = (0u64, 0u64);
        for topic in read(&self.inner.topics).values() {
            for part in read(&topic.partitions).iter() {
                let log = lock(&part.log);
                bytes += log.bytes;
                records += log.end.saturating_sub(log.start);
            }
        }
        vec![
            Metric::single(
                "embedded_retained_bytes",
                "Bytes of the messages the embedded store holds.",
                MetricKind::Gauge,
                bytes as f64,
            ),
            Metric::single(
                "embedded_retained_records",
                "Records the embedded store holds.",
                MetricKind::Gauge,
                records as f64,
            ),
        ]
    }

    fn execute(&self, command: Command) -> Execution {
        let done = match command {
            Command::Append {
                topic,
                partition,
                messages,
                largest_batch,
                producer,
            } => Completion::Append(self.append(
                &topic,
                partition,
                messages,
                largest_batch,
                producer,
            )),
            Command::Read {
                topic,
                partition,
                offset,
                max_bytes,
                max_messages,
            } => Completion::Read(self.read(&topic, partition, offset, max_bytes, max_messages)),
            Command::Offsets { topic, partition } => {
                Completion::Offsets(self.offsets(&topic, partition))
            }
            Command::WriteMarker {
                topic,
                partition,
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
            } => Completion::WriteMarker(self.write_marker(
                &topic,
                partition,
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
            )),
            Command::OffsetForTimestamp {
                topic,
                partition,
                timestamp_ms,
            } => Completion::OffsetForTimestamp(self.offset_for_timestamp(
                &topic,
                partition,
                timestamp_ms,
            )),
            Command::MaxTimestamp { topic, partition } => {
                Completion::MaxTimestamp(self.max_timestamp(&topic, partition))
            }
            Command::UserPermissions { .. } => Completion::UserPermissions(Err(
                BackendError::Other("the embedded store has no users of its own".into()),
            )),
            // The users live in the gateway's memory: nothing more to keep them in, but the
            // order the changes came in, which the gateway applies them in.
            Command::StoreScramCredentials { .. } => Completion::StoreScramCredentials(Ok(self
                .inner
                .scram_changes
                .fetch_add(1, Ordering::Relaxed)
                + 1)),
            // No other gateway shares this memory: nothing is kept but what this one applied.
            Command::FollowScramCredentials { .. } => {
                Completion::FollowScramCredentials(Ok(Vec::new()))
            }
            // The transactions live as long as the data they are about: in memory.
            Command::PersistTxns { .. } => Completion::PersistTxns(Ok(())),
            Command::VerifyPassword { .. } => Completion::VerifyPassword(Err(BackendError::Other(
                "the embedded store has no users of its own".into(),
            ))),
            Command::DescribeProducers { topic, partition } => {
                Completion::DescribeProducers(self.producers(&topic, partition))
            }
            Command::DeleteRecords {
                topic,
                partition,
                offset,
            } => Completion::DeleteRecords(self.delete_records(&topic, partition, offset)),
            Command::ListTopics { only } => {
                let topics = read(&self.inner.topics);
                let list = match only {
                    None => topics.values().map(|t| t.info()).collect(),
                    Some(only) => only
                        .iter()
                        .filter_map(|r| match r {
                            TopicRef::Name(n) => topics.get(n).map(|t| t.info()),
                            TopicRef::Id(id) => {
                                topics.values().find(|t| t.id == *id).map(|t| t.info())
                            }
                        })
                        .collect(),
                };
                Completion::ListTopics(Ok(list))
            }
            Command::CreateTopic {
                name,
                partitions,
                config,
                validate_only,
            } => {
                Completion::CreateTopic(self.create_topic(name, partitions, config, validate_only))
            }
            Command::DeleteTopic { topic } => Completion::DeleteTopic(self.delete_topic(&topic)),
            Command::CreatePartitions {
                topic,
                total,
                validate_only,
            } => Completion::CreatePartitions(self.create_partitions(&topic, total, validate_only)),
            Command::AlterTopicConfig {
                topic,
                config,
                validate_only,
            } => Completion::AlterTopicConfig(self.alter_config(&topic, config, validate_only)),
            Command::AllocateProducerId => Completion::AllocateProducerId(Ok(self
                .inner
                .next_producer_id
                .fetch_add(1, Ordering::Relaxed))),
            Command::CommitOffsets { group, offsets } => {
                Completion::CommitOffsets(self.commit_offsets(group, offsets))
            }
            Command::FetchOffsets { group, only } => {
                let groups = lock(&self.inner.groups);
                let found = groups
                    .get(&group)
                    .map_or_else(Vec::new, |offsets| select_offsets(offsets, only.as_deref()));
                Completion::FetchOffsets(Ok(found))
            }
            Command::DeleteOffsets { group, only } => {
                let mut groups = lock(&self.inner.groups);
                let removed = match only {
                    None => groups.remove(&group).map_or(0, |o| o.len()),
                    Some(only) => {
                        let removed = groups.get_mut(&group).map_or(0, |offsets| {
                            only.iter().filter(|k| offsets.remove(k).is_some()).count()
                        });
                        if groups.get(&group).is_some_and(BTreeMap::is_empty) {
                            groups.remove(&group);
                        }
                        removed
                    }
                };
                Completion::DeleteOffsets(Ok(removed))
            }
            Command::ListGroups => {
                let mut names: Vec<String> = lock(&self.inner.groups).keys().cloned().collect();
                names.sort();
                Completion::ListGroups(Ok(names))
            }
            Command::Watch { partitions, .. } => return self.watch(partitions),
        };
        Execution::Done(done)
    }
}

/// Refuses the storage settings a store in memory cannot honour: it has no segments and
/// nothing to flush, so only their defaults are accepted.
fn in_memory(config: &TopicConfig) -> Result<(), BackendError> {
    if config
        .segment_bytes
        .is_some_and(|b| b != DEFAULT_SEGMENT_BYTES)
    {
        return Err(BackendError::InvalidConfig(
            "segment.bytes: the embedded store keeps records in memory, without segments".into(),
        ));
    }
    if config
        .flush_messages
        .is_some_and(|m| m != DEFAULT_FLUSH_MESSAGES)
    {
        return Err(BackendError::InvalidConfig(
            "flush.messages: the embedded store keeps records in memory, nothing is flushed".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
