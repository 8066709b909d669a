//! The transaction coordinator's state, durable in a gateway-owned Iggy topic.
//!
//! The coordinator (`iggy_kafka_core::txn`) hands out a snapshot of a transactional id each
//! time its state changes; the driver sends them here in order, in batches, and the
//! coordinator acts on a change (answers the producer, writes markers) only once its
//! record is in the log (`crate::txn_log` is the format). The log is replayed when the
//! gateway starts and handed to the coordinator, so that a prepared commit or abort
//! completes and an open transaction is aborted after its timeout.
//!
//! The topic is created at the first transactional id, so a gateway whose clients never
//! use transactions leaves none. One gateway per stream writes it, as the committed-offsets
//! log.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use iggy_kafka_core::backend::{BackendError, TopicConfig};
use iggy_kafka_core::message::{IggyMessage, MessageList, MessageView};
use iggy_kafka_core::txn::TxnSnapshot;
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_TOPIC_CODE, DELETE_TOPIC_CODE, SEND_MESSAGES_CODE,
};
use iggy_kafka_iggy_client::protocol::requests::topics::{CreateTopicRequest, DeleteTopicRequest};
use iggy_kafka_iggy_client::protocol::{WireEncode, WireName, WirePollingStrategy};
use iggy_kafka_iggy_client::Failure;

use crate::calls::admin_lane;
use crate::catalog::Catalog;
use crate::error::ConnectError;
use crate::partition::PartitionState;
use crate::read::Reads;
use crate::read::SCAN_POLL_BYTES;
use crate::sync::{lock, Gate};
use crate::txn_log::{self, Record, TxnLogState};
use crate::wire::{self, backend_error, code, named};

/// The coordinator's state as the log holds it.
#[derive(Default)]
pub(crate) struct TxnStore {
    /// Held while the log is written, so that records keep the coordinator's order.
    gate: Gate,
    state: Mutex<TxnLogState>,
    /// Whether the current generation's topic exists.
    created: Mutex<bool>,
    /// A next generation whose compaction failed, its snapshot perhaps written all the
    /// same: it is deleted before the log is written again, or the next start would replay
    /// it and miss every later write.
    stale: Mutex<Option<u64>>,
}

impl TxnStore {
    /// Replays the newest complete generation of the log, and deletes the others.
    pub(crate) async fn open(&self, catalog: &Catalog, reads: &Reads) -> Result<(), ConnectError> {
        let failed = |step| move |source| ConnectError::Offsets { step, source };
        let generations = generations(catalog)
            .await
            .map_err(failed("cannot list the Iggy stream"))?;
        let mut chosen = None;
        for &g in &generations {
            let (records, end) = read_log(catalog, reads, g)
                .await
                .map_err(failed("cannot replay the transaction state"))?;
            if !records.contains(&Record::SnapshotComplete) {
                tracing::warn!(
                    generation = g,
                    "transaction-state generation without a complete snapshot is ignored"
                );
                continue;
            }
            let mut state = TxnLogState {
                generation: g,
                records: end,
                ..TxnLogState::default()
            };
            for r in &records {
                state.apply(r);
            }
            chosen = Some(state);
            break;
        }
        let created = chosen.is_some();
        let state = chosen.unwrap_or_else(|| TxnLogState {
            generation: generations.first().map_or(0, |g| g + 1),
            ..TxnLogState::default()
        });
        if created {
            tracing::info!(
                generation = state.generation,
                transactional_ids = state.ids.len(),
                "transaction state replayed from Iggy"
            );
        }
        let current = state.generation;
        *lock(&self.state) = state;
        *lock(&self.created) = created;
        for g in generations.into_iter().filter(|g| *g != current) {
            drop_topic(catalog, g).await;
        }
        Ok(())
    }

    /// The state replayed (and written since): the latest snapshot of each live
    /// transactional id.
    pub(crate) fn snapshots(&self) -> Vec<TxnSnapshot> {
        lock(&self.state).ids.values().cloned().collect()
    }

    /// When each open transaction replayed (and written since) opened, as far as the log
    /// says: by transactional id, ms since the Unix epoch.
    pub(crate) fn opened(&self) -> Vec<(String, i64)> {
        lock(&self.state)
            .opened
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    /// Whether transactions have written to the partition (as far as the log says).
    pub(crate) fn writes_to(&self, topic: &str, partition: u32) -> bool {
        lock(&self.state)
            .partitions
            .contains(&(topic.to_owned(), partition))
    }

    /// Makes sure the partition's transaction index holds what its log does: once per
    /// gateway run, a partition transactions have written to is read from its log start to
    /// its end and every transactional record and marker replayed into the index (in turn
    /// with its idempotent appends and markers, which keep it up after). Other partitions
    /// have nothing to read. Returns the partition's state.
    pub(crate) async fn indexed(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
    ) -> Result<Arc<PartitionState>, BackendError> {
        let state = catalog.partition(topic, partition);
        if state.txns_rebuilt.load(Ordering::Acquire) {
            return Ok(state);
        }
        self.rebuild(catalog, reads, (topic, partition), &state)
            .await?;
        Ok(state)
    }

    /// [`Self::indexed`]'s reading back. No transactional batch or marker lands meanwhile:
    /// both wait for the rebuild before they are sent.
    async fn rebuild(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
        state: &PartitionState,
    ) -> Result<(), BackendError> {
        let _serial = state.txns_gate.enter().await;
        if state.txns_rebuilt.load(Ordering::Acquire) || !self.writes_to(topic, partition) {
            state.txns_rebuilt.store(true, Ordering::Release);
            return Ok(());
        }
        let offsets = catalog.offsets(topic, partition).await?;
        let (mut at, end) = (offsets.log_start, offsets.high_watermark);
        let mut replayed = 0u64;
        while at < end {
            let count = reads.scan_count(state, SCAN_POLL_BYTES);
            let body = reads
                .poll(
                    catalog,
                    topic,
                    partition,
                    WirePollingStrategy::offset(at),
                    count,
                )
                .await?;
            let (messages, ..) = wire::polled(&body, at, usize::MAX, usize::MAX, true)?;
            let Some(last) = messages.last_offset() else {
                break;
            };
            let mut index = lock(&state.txns);
            // A bare message has no headers, so no transaction: only whole ones can count.
            for (offset, view) in messages.views() {
                if let MessageView::Message(m) = view {
                    index.replay(offset, m);
                }
            }
            drop(index);
            replayed += last + 1 - at;
            at = last + 1;
        }
        tracing::info!(
            %topic, partition, from = offsets.log_start, to = at, messages = replayed,
            "rebuilt the partition's transaction index from its log"
        );
        state.txns_rebuilt.store(true, Ordering::Release);
        Ok(())
    }

    /// Records in the current generation, and live transactional ids.
    pub(crate) fn size(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (state.records, state.ids.len() as u64)
    }

    /// Appends these changes, in order, and compacts the log when due.
    ///
    /// # Errors
    /// When Iggy did not take them all, as [`BackendError::Unavailable`]: they may have
    /// landed all the same, and then count at the next start (the coordinator persists the
    /// state again, which supersedes them); also while the topic of a compaction that
    /// failed cannot be deleted.
    pub(crate) async fn persist(
        &self,
        catalog: &Catalog,
        changes: Vec<(String, Option<TxnSnapshot>)>,
    ) -> Result<(), BackendError> {
        if changes.is_empty() {
            return Ok(());
        }
        let _gate = self.gate.enter().await;
        let stale = *lock(&self.stale);
        if let Some(g) = stale {
            delete_topic(catalog, g).await.map_err(|e| {
                BackendError::Unavailable(format!(
                    "the transaction-state log: a failed compaction's topic is still there: {e}"
                ))
            })?;
            *lock(&self.stale) = None;
        }
        let records = lock(&self.state).records_of(changes, wall_clock_ms());
        let generation = lock(&self.state).generation;
        let unavailable = |e: BackendError| match e {
            BackendError::Unavailable(_) => e,
            other => BackendError::Unavailable(format!("the transaction-state log: {other}")),
        };
        if !*lock(&self.created) {
            create_topic(catalog, generation)
                .await
                .map_err(unavailable)?;
            append(catalog, generation, &[Record::SnapshotComplete])
                .await
                .map_err(unavailable)?;
            *lock(&self.created) = true;
            lock(&self.state).records = 1;
        }
        append(catalog, generation, &records)
            .await
            .map_err(unavailable)?;
        let compact = {
            let mut state = lock(&self.state);
            for r in &records {
                state.apply(r);
            }
            state.records += records.len() as u64;
            state.wants_compaction()
        };
        if compact {
            if let Err(e) = self.compact(catalog, generation).await {
                tracing::warn!(error = %e, "compaction of the transaction state failed; will retry");
                let next = generation + 1;
                *lock(&self.stale) = Some(next);
                match delete_topic(catalog, next).await {
                    Ok(()) => *lock(&self.stale) = None,
                    Err(e) => tracing::warn!(
                        topic = %txn_log::topic_name(next), error = %e,
                        "could not delete a failed compaction's topic: the transaction state \
                         is not written until it is"
                    ),
                }
            }
        }
        Ok(())
    }

    /// Rewrites the live state into the next generation and drops the current one.
    async fn compact(&self, catalog: &Catalog, generation: u64) -> Result<(), BackendError> {
        let next = generation + 1;
        self.drop_deleted_partitions(catalog).await;
        let snapshot = lock(&self.state).snapshot();
        create_topic(catalog, next).await?;
        append(catalog, next, &snapshot).await?;
        {
            let mut state = lock(&self.state);
            state.generation = next;
            state.records = snapshot.len() as u64;
        }
        drop_topic(catalog, generation).await;
        tracing::info!(
            generation = next,
            records = snapshot.len(),
            "compacted the transaction state"
        );
        Ok(())
    }
}

impl TxnStore {
    /// Forgets the named partitions of topics Iggy says are gone (or no longer that many
    /// partitions), unless a live transactional id still names them, so that the names
    /// are bounded by the partitions in use. A topic Iggy does not answer about keeps its
    /// partitions: forgetting one whose log holds aborted transactions would show their
    /// records to read_committed consumers after a restart.
    async fn drop_deleted_partitions(&self, catalog: &Catalog) {
        let candidates = lock(&self.state).unnamed_partitions();
        let mut topics: Vec<&str> = candidates.iter().map(|(t, _)| t.as_str()).collect();
        topics.dedup();
        let mut gone = Vec::new();
        for topic in topics {
            let partitions = match catalog.topic_header(topic).await {
                Ok(t) => t.partitions.iter().map(|p| p.id).collect(),
                Err(BackendError::UnknownTopic(_)) => Vec::new(),
                Err(_) => continue,
            };
            gone.extend(
                candidates
                    .iter()
                    .filter(|(t, p)| t == topic && !partitions.contains(p))
                    .cloned(),
            );
        }
        if gone.is_empty() {
            return;
        }
        tracing::info!(
            partitions = gone.len(),
            "the transaction state no longer names partitions of deleted topics"
        );
        let mut state = lock(&self.state);
        for tp in &gone {
            state.partitions.remove(tp);
        }
    }
}

/// Now, in ms since the Unix epoch.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The generations of the log in the stream, newest first.
async fn generations(catalog: &Catalog) -> Result<Vec<u64>, BackendError> {
    let mut generations: Vec<u64> = catalog
        .stream_topics()
        .await?
        .iter()
        .filter_map(|t| txn_log::generation(t.name.as_str()))
        .collect();
    generations.sort_unstable_by(|a, b| b.cmp(a));
    Ok(generations)
}

/// Reads generation `g` whole: the records that decode (others are skipped with a
/// warning), and the offset after the last.
async fn read_log(
    catalog: &Catalog,
    reads: &Reads,
    generation: u64,
) -> Result<(Vec<Record>, u64), BackendError> {
    let topic = txn_log::topic_name(generation);
    let mut records = Vec::new();
    let mut next = 0;
    loop {
        let body = reads
            .poll(catalog, &topic, 0, WirePollingStrategy::offset(next), 1000)
            .await?;
        let (messages, ..) = wire::polled(&body, next, usize::MAX, usize::MAX, true)?;
        let Some(last) = messages.last_offset() else {
            break;
        };
        next = last + 1;
        for (offset, m) in messages.views() {
            match Record::decode(m.payload()) {
                Some(r) => records.push(r),
                None => {
                    tracing::warn!(topic = %topic, offset, "skipping a record that is not a transaction state this gateway wrote");
                }
            }
        }
    }
    Ok((records, next))
}

/// Appends `records` to generation `generation`, in order.
async fn append(
    catalog: &Catalog,
    generation: u64,
    records: &[Record],
) -> Result<(), BackendError> {
    let topic = txn_log::topic_name(generation);
    for chunk in records.chunks(1000) {
        let messages = chunk
            .iter()
            .map(|r| {
                let payload = r.encode().ok_or_else(|| {
                    BackendError::InvalidMessage(
                        "a transaction-state record with a string over 65,535 bytes".into(),
                    )
                })?;
                Ok(IggyMessage {
                    payload,
                    ..IggyMessage::default()
                })
            })
            .collect::<Result<MessageList, BackendError>>()?;
        let ids = wire::Ids::counted(catalog.calls().message_ids(messages.len()));
        let body =
            wire::send_messages(catalog.calls().stream(), &named(&topic)?, 0, &messages, ids)?;
        // Routed as any partition's appends: in a cluster, the log's partition may have a
        // primary of its own.
        let calls = catalog.calls();
        let route = &catalog.partition(&topic, 0).route;
        let sent = route.append(
            calls,
            (&topic, 0),
            (SEND_MESSAGES_CODE, false),
            body.clone(),
        );
        let (reply, _) = route
            .settle(calls, (&topic, 0), (SEND_MESSAGES_CODE, false, &body), sent)
            .await;
        reply.map_err(|f| backend_error(f, &topic, Some(0)))?;
    }
    Ok(())
}

async fn create_topic(catalog: &Catalog, generation: u64) -> Result<(), BackendError> {
    let name = txn_log::topic_name(generation);
    let request = CreateTopicRequest {
        stream_id: catalog.calls().stream().clone(),
        partitions_count: 1,
        name: WireName::new(name.clone()).map_err(|_| BackendError::InvalidTopic(name.clone()))?,
        // Written through (unless configured otherwise): a state change is acted on once it
        // is in the topic's segment.
        options: wire::topic_options(&TopicConfig::default(), 1, catalog.creating())?,
    };
    match catalog
        .calls()
        .call(admin_lane(&name), CREATE_TOPIC_CODE, request.to_bytes())
        .await
    {
        Ok(_) | Err(Failure::Status(code::TOPIC_NAME_ALREADY_EXISTS)) => Ok(()),
        Err(f) => Err(backend_error(f, &name, None)),
    }
}

/// Deletes generation `generation`'s topic; one that is not there is deleted already.
async fn delete_topic(catalog: &Catalog, generation: u64) -> Result<(), BackendError> {
    let name = txn_log::topic_name(generation);
    let request = DeleteTopicRequest {
        stream_id: catalog.calls().stream().clone(),
        topic_id: named(&name)?,
    };
    match catalog
        .calls()
        .call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
        .await
        .map_err(|f| backend_error(f, &name, None))
    {
        Ok(_) | Err(BackendError::UnknownTopic(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn drop_topic(catalog: &Catalog, generation: u64) {
    if let Err(e) = delete_topic(catalog, generation).await {
        let name = txn_log::topic_name(generation);
        tracing::warn!(topic = %name, error = %e, "could not delete an old transaction-state topic");
    }
}
