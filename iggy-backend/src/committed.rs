//! Committed offsets: every group's commits, durable in a gateway-owned Iggy topic.
//!
//! Kafka keeps committed offsets in a compacted topic; Iggy has no compaction and its own
//! consumer offsets cannot hold Kafka's metadata and leader epoch, so the gateway keeps a
//! log of its own (`crate::offsets_log`): commits are appended as records, the whole state
//! is replayed from it at start, and once it grows past a bound it is rewritten into a new
//! generation (a snapshot) and the old one dropped. A commit is acknowledged once its
//! record is in the log. Each commit is also mirrored, unawaited, into Iggy's own consumer
//! offset named after the group, for Iggy's tools.
//!
//! One gateway per stream writes the log; another writer is noticed (its records appear
//! between this gateway's) and followed, and said once in the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use iggy_kafka_core::backend::{select_offsets, BackendError, GroupOffset};
use iggy_kafka_core::message::{IggyMessage, MessageList};
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_TOPIC_CODE, DELETE_CONSUMER_OFFSET_CODE, DELETE_TOPIC_CODE, SEND_MESSAGES_CODE,
    STORE_CONSUMER_OFFSET_CODE,
};
use iggy_kafka_iggy_client::protocol::requests::consumer_offsets::{
    DeleteConsumerOffsetRequest, StoreConsumerOffsetRequest,
};
use iggy_kafka_iggy_client::protocol::requests::topics::{CreateTopicRequest, DeleteTopicRequest};
use iggy_kafka_iggy_client::protocol::responses::messages::SendMessagesResponse;
use iggy_kafka_iggy_client::protocol::{
    AckLevel, WireConsumer, WireDecode, WireEncode, WireIdentifier, WireName, WirePollingStrategy,
};
use iggy_kafka_iggy_client::Failure;

use crate::append::FENCE_CONSUMER;
use crate::calls::{admin_lane, lane_of};
use crate::catalog::Catalog;
use crate::error::ConnectError;
use crate::offsets_log::{self, OffsetsState, Record};
use crate::read::Reads;
use crate::sync::{lock, Gate};
use crate::wire::{self, backend_error, code, named};

#[derive(Default)]
pub(crate) struct CommittedOffsets {
    /// Held while the log is written, so that the log and the state agree.
    gate: Gate,
    state: Mutex<OffsetsState>,
    /// Whether another writer of the log was reported (once per run).
    another_writer_told: AtomicBool,
    /// Whether an append to the log failed in a way that may have landed.
    in_doubt: AtomicBool,
}

impl CommittedOffsets {
    /// Replays the log from Iggy (starting it when there is none).
    pub(crate) async fn open(&self, catalog: &Catalog, reads: &Reads) -> Result<(), ConnectError> {
        self.log(catalog, reads).open().await
    }

    /// The offsets log's records in its current generation, and the live offsets.
    pub(crate) fn size(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (
            state.records,
            state.live() - state.group_states.len() as u64,
        )
    }

    /// Every group's state as the group coordinator last asked to keep it.
    pub(crate) fn group_states(&self) -> Vec<(String, Bytes)> {
        let mut states: Vec<(String, Bytes)> = lock(&self.state)
            .group_states
            .iter()
            .map(|(g, s)| (g.clone(), s.clone()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    /// Keeps each group's state (`None`: the group is gone), once the records are in the log.
    pub(crate) async fn keep_groups(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        groups: Vec<(String, Option<Bytes>)>,
    ) -> Result<(), BackendError> {
        let records = groups
            .into_iter()
            .map(|(group, state)| match state {
                Some(state) => Record::GroupState { group, state },
                None => Record::GroupGone { group },
            })
            .collect();
        self.log(catalog, reads).write_offsets(records).await
    }

    /// A group's committed offsets: of the partitions named, or all of them.
    pub(crate) fn fetch(&self, group: &str, only: Option<&[(String, u32)]>) -> Vec<GroupOffset> {
        lock(&self.state)
            .groups
            .get(group)
            .map_or_else(Vec::new, |offsets| select_offsets(offsets, only))
    }

    /// The groups that have committed offsets, in order.
    pub(crate) fn groups(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state).groups.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stores a group's commits: one result per offset, in order.
    pub(crate) async fn commit(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Vec<Result<(), BackendError>> {
        self.log(catalog, reads).commit(group, offsets).await
    }

    /// Removes a group's commits: of the partitions named, or all of them (the group is
    /// deleted); how many there were.
    pub(crate) async fn delete(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        group: &str,
        only: Option<Vec<(String, u32)>>,
    ) -> Result<usize, BackendError> {
        self.log(catalog, reads).delete(group, only).await
    }

    /// Partition `partition` of `topic`'s log start as DeleteRecords left it, if the topic is
    /// the one it was left for (`id`, when known).
    pub(crate) fn log_start(&self, topic: &str, partition: u32, id: Option<Uuid>) -> Option<u64> {
        lock(&self.state).log_start(topic, partition, id)
    }

    /// Records partition `partition` of `topic` (whose id is `id`) as starting at `start`
    /// (DeleteRecords), once the record is in the log.
    pub(crate) async fn delete_records(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, id, partition): (&str, Uuid, u32),
        start: u64,
    ) -> Result<(), BackendError> {
        let record = Record::LogStart {
            topic: topic.to_owned(),
            id,
            partition,
            start,
        };
        self.log(catalog, reads).write_offsets(vec![record]).await
    }

    /// Topic `name` was deleted: so are its commits, in every group, and its log starts.
    pub(crate) async fn topic_deleted(&self, catalog: &Catalog, reads: &Reads, name: &str) {
        let has_offsets = {
            let state = lock(&self.state);
            state
                .groups
                .values()
                .any(|g| g.keys().any(|(t, _)| t == name))
                || state.log_starts.keys().any(|(t, _)| t == name)
        };
        if !has_offsets {
            return;
        }
        // The topic is gone whatever happens here; a failure leaves offsets that a topic of
        // the same name would inherit, so it is logged loudly.
        let record = Record::DeleteTopic {
            topic: name.to_owned(),
        };
        if let Err(e) = self.log(catalog, reads).write_offsets(vec![record]).await {
            tracing::error!(topic = %name, error = %e, "could not delete the topic's committed offsets");
        }
    }

    fn log<'a>(&'a self, catalog: &'a Catalog, reads: &'a Reads) -> Log<'a> {
        Log {
            committed: self,
            catalog,
            reads,
        }
    }
}

/// The log, with the layers it is written and read through.
struct Log<'a> {
    committed: &'a CommittedOffsets,
    catalog: &'a Catalog,
    reads: &'a Reads,
}

impl Log<'_> {
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
        let _gate = self.committed.gate.enter().await;
        let (mut generation, mut expected) = {
            let state = lock(&self.committed.state);
            (state.generation, state.records)
        };
        let appended = match self.append_records(generation, &records).await {
            Err(BackendError::UnknownTopic(_)) => {
                // The generation is gone: another gateway compacted the log into a newer one,
                // or somebody deleted it.
                self.another_writer("its generation of the log is gone");
                self.reopen_offsets(generation).await?;
                (generation, expected) = {
                    let state = lock(&self.committed.state);
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
                self.committed.in_doubt.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        let in_doubt = self.committed.in_doubt.swap(false, Ordering::Relaxed);
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
            let mut state = lock(&self.committed.state);
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
        let topic = offsets_log::topic_name(generation);
        let (mut first, mut next, mut contiguous) = (None, None, true);
        for chunk in records.chunks(1000) {
            let messages: MessageList = chunk
                .iter()
                .map(|r| IggyMessage {
                    payload: r.encode(),
                    ..IggyMessage::default()
                })
                .collect();
            let ids = wire::Ids::counted(self.catalog.calls().message_ids(messages.len()));
            let body = wire::send_messages(
                self.catalog.calls().stream(),
                &named(&topic)?,
                0,
                &messages,
                ids,
            )?;
            // Routed as any partition's appends: in a cluster, the log's partition may have
            // a primary of its own.
            let calls = self.catalog.calls();
            let route = &self.catalog.partition(&topic, 0).route;
            let sent = route.append(
                calls,
                (&topic, 0),
                (SEND_MESSAGES_CODE, false),
                body.clone(),
            );
            let (reply, _) = route
                .settle(calls, (&topic, 0), (SEND_MESSAGES_CODE, false, &body), sent)
                .await;
            let reply = reply.map_err(|f| backend_error(f, &topic, Some(0)))?;
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
        let name = offsets_log::topic_name(generation);
        let request = CreateTopicRequest {
            stream_id: self.catalog.calls().stream().clone(),
            partitions_count: 1,
            name: WireName::new(name.clone())
                .map_err(|_| BackendError::InvalidTopic(name.clone()))?,
            // Written through (unless configured otherwise) like the topics the gateway creates
            // for Kafka clients: a commit is acknowledged once it is in the topic's segment.
            // Never expiring and without a size limit, explicitly: retention would drop
            // committed offsets (and kept groups) that are still in use.
            options: wire::kept_forever_options(self.catalog.creating())?,
        };
        match self
            .catalog
            .calls()
            .call(admin_lane(&name), CREATE_TOPIC_CODE, request.to_bytes())
            .await
        {
            Ok(_) | Err(Failure::Status(code::TOPIC_NAME_ALREADY_EXISTS)) => Ok(()),
            Err(f) => Err(backend_error(f, &name, None)),
        }
    }

    async fn drop_offsets_topic(&self, generation: u64) {
        let name = offsets_log::topic_name(generation);
        let Ok(topic_id) = named(&name) else { return };
        let request = DeleteTopicRequest {
            stream_id: self.catalog.calls().stream().clone(),
            topic_id,
        };
        if let Err(e) = self
            .catalog
            .calls()
            .call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
            .await
        {
            tracing::warn!(topic = %name, error = %e, "could not delete an old offsets topic");
        }
    }

    /// Rewrites the live offsets into the next generation and drops the current one.
    async fn compact(&self, generation: u64) -> Result<(), BackendError> {
        let next = generation + 1;
        let snapshot = lock(&self.committed.state).snapshot();
        self.create_offsets_topic(next).await?;
        let landed = self.append_records(next, &snapshot).await?;
        if landed != Some(0) {
            self.another_writer("its new generation of the log was written to by another");
        }
        {
            let mut state = lock(&self.committed.state);
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
        let topic = offsets_log::topic_name(generation);
        let mut records = Vec::new();
        let mut next = from;
        loop {
            let body = self
                .reads
                .poll(
                    self.catalog,
                    &topic,
                    0,
                    WirePollingStrategy::offset(next),
                    1000,
                )
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
        if self
            .committed
            .another_writer_told
            .swap(true, Ordering::Relaxed)
        {
            tracing::debug!(what, "another writer of the committed-offsets log");
        } else {
            tracing::error!(
                stream = %self.catalog.stream_name(), what,
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
            *lock(&self.committed.state) = state;
            return Ok(());
        }
        tracing::warn!("the committed-offsets log was deleted; writing it again from memory");
        self.compact(generations.first().map_or(gone, |&g| g.max(gone)))
            .await
    }

    /// The generations of the log in the stream, newest first.
    async fn offsets_generations(&self) -> Result<Vec<u64>, BackendError> {
        let mut generations: Vec<u64> = self
            .catalog
            .stream_topics()
            .await?
            .iter()
            .filter_map(|t| offsets_log::generation(t.name.as_str()))
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
    async fn open(&self) -> Result<(), ConnectError> {
        let failed = |step| move |source| ConnectError::Offsets { step, source };
        let generations = self
            .offsets_generations()
            .await
            .map_err(failed("cannot list the Iggy stream"))?;
        let chosen = self
            .newest_complete(&generations)
            .await
            .map_err(failed("cannot replay the committed offsets"))?;
        let state = match chosen {
            Some(s) => s,
            None => {
                let g = generations.first().map_or(0, |g| g + 1);
                self.create_offsets_topic(g)
                    .await
                    .map_err(failed("cannot create the offsets topic"))?;
                self.append_records(g, &[Record::SnapshotComplete])
                    .await
                    .map_err(failed("cannot write the offsets topic"))?;
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
        *lock(&self.committed.state) = state;
        for g in generations.into_iter().filter(|g| *g != current) {
            self.drop_offsets_topic(g).await;
        }
        Ok(())
    }

    async fn commit(
        &self,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Vec<Result<(), BackendError>> {
        let mut results = self.catalog.check_partitions(&offsets).await;
        let records = offsets
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(o, _)| Record::Commit {
                group: group.into(),
                topic: o.topic.clone(),
                partition: o.partition,
                committed: o.committed.clone(),
            })
            .collect();
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
        // A group named like the gateway's fence consumer is left out: its offset is the
        // fence's.
        for (o, _) in offsets
            .iter()
            .zip(&results)
            .filter(|(o, r)| r.is_ok() && o.committed.offset > 0 && group != FENCE_CONSUMER)
        {
            let (Ok(consumer), Ok((stream_id, topic_id)), Ok(offset)) = (
                WireIdentifier::named(group),
                self.catalog.locate(&o.topic),
                u64::try_from(o.committed.offset - 1),
            ) else {
                continue;
            };
            let request = StoreConsumerOffsetRequest {
                consumer: WireConsumer::consumer(consumer),
                stream_id: stream_id.clone(),
                topic_id,
                partition_id: Some(o.partition),
                offset,
                ack: AckLevel::Quorum,
            };
            self.catalog.calls().send_detached(
                lane_of(&o.topic, o.partition),
                STORE_CONSUMER_OFFSET_CODE,
                request.to_bytes(),
            );
        }
        results
    }

    async fn delete(
        &self,
        group: &str,
        only: Option<Vec<(String, u32)>>,
    ) -> Result<usize, BackendError> {
        let present: Vec<(String, u32)> = {
            let state = lock(&self.committed.state);
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
        // Not mirrored (see `commit`): nothing of it to delete.
        let mirrored = if group == FENCE_CONSUMER {
            &[][..]
        } else {
            &present[..]
        };
        for (topic, partition) in mirrored {
            let (Ok(consumer), Ok((stream_id, topic_id))) =
                (WireIdentifier::named(group), self.catalog.locate(topic))
            else {
                continue;
            };
            let request = DeleteConsumerOffsetRequest {
                consumer: WireConsumer::consumer(consumer),
                stream_id: stream_id.clone(),
                topic_id,
                partition_id: Some(*partition),
                ack: AckLevel::Quorum,
            };
            match self
                .catalog
                .calls()
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
