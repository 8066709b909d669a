//! Appends, and the idempotence Iggy does not provide.
//!
//! A plain append is encoded and queued on its partition's lane as it is handed over, so
//! that a connection's appends reach Iggy in request order without waiting for each other;
//! the plain appends to a partition that queue up behind the one in flight go to Iggy as
//! one request (group commit, `iggy_kafka_iggy_client::merge`).
//! An idempotent producer's appends to a partition go one at a time: the gateway keeps the
//! producers' state (Iggy keeps none), answers a retry of one of a producer's last batches
//! with where it landed, reads the producers' recent batches back from the partition's tail
//! after a restart (their message ids say whose batch each is), and finds out, before the
//! next append, whether a batch whose reply was lost landed.
//!
//! Finding that out takes a fence first. Iggy's reads stop at what a node has committed,
//! and a batch whose reply was lost may be prepared and not committed yet: its primary died
//! with it replicated on a quorum, and the new view commits it once that view has started,
//! which a read can come before (Viewstamped Replication keeps such an op). So the gateway
//! first stores a consumer offset of its own on the partition ([`FENCE_CONSUMER`]), a
//! write that goes through the partition's replication after every op prepared before it:
//! its reply says that the batch has either committed or can no longer land, and the read
//! that follows, in the session that carried that reply (so on the node that gave it),
//! tells which; a read that proves nothing (a poll that failed inside Iggy comes back
//! empty) keeps the batch in doubt and fails the append retriably.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iggy_kafka_core::backend::{ActiveProducer, Appended, BackendError, ProducerBatch};
use iggy_kafka_core::mapping::marker;
use iggy_kafka_core::message::MessageList;
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_iggy_client::protocol::codes::{SEND_MESSAGES_CODE, STORE_CONSUMER_OFFSET_CODE};
use iggy_kafka_iggy_client::protocol::requests::consumer_offsets::StoreConsumerOffsetRequest;
use iggy_kafka_iggy_client::protocol::responses::messages::SendMessagesResponse;
use iggy_kafka_iggy_client::protocol::{
    AckLevel, WireConsumer, WireDecode, WireEncode, WireIdentifier, WirePollingStrategy,
};
use iggy_kafka_iggy_client::{Answered, Failure, PendingCall};

use crate::catalog::Catalog;
use crate::partition::{Doubt, PartitionState};
use crate::read::{Reads, SCAN_POLL_BYTES};
use crate::sync::lock;
use crate::wire::{self, code};

/// The tail of a partition read back for its idempotent producers' recent batches, in bytes
/// (estimated from the running message size; see [`Appends::recover_producers`]).
const RECOVER_BYTES: usize = 1 << 20;

/// The bytes of replies read while looking for a batch in doubt before giving up.
const DOUBT_SCAN_BYTES: usize = 256 << 20;

/// The Iggy consumer whose offset (0) the gateway stores on a partition to fence it before
/// it looks for a batch in doubt there. No Kafka reader sees it; an Iggy consumer offset
/// is all it leaves, and it holds nothing back (Iggy's retention does not look at them).
/// The mirror of a Kafka group's commits into Iggy's consumer offsets leaves a group of
/// this name out (`crate::committed`).
pub(crate) const FENCE_CONSUMER: &str = "__kafka_gateway_fence";

/// A node stores no consumer offset on a partition that holds nothing committed on that
/// node yet, so the fence of a partition the gateway saw empty is asked again, this
/// often, up to [`FENCE_EMPTY_TRIES`] times: a batch prepared there commits once the new
/// view has its backups' acknowledgements, and the partition is empty no more.
const FENCE_EMPTY_PAUSE: Duration = Duration::from_millis(100);
/// See [`FENCE_EMPTY_PAUSE`]: about 5 s in all, for the first batches of a partition only.
const FENCE_EMPTY_TRIES: u32 = 50;
/// [`FENCE_EMPTY_TRIES`] on a single server, which has no view change to wait for: only a
/// request still inside the server can land there later.
const FENCE_EMPTY_TRIES_SINGLE: u32 = 3;
/// Tries in a row (each a producer's retry) that a cluster's node may refuse a fence on a
/// partition the gateway saw hold messages, as a node behind would, before what the gateway
/// saw is taken as gone: a node catches up in seconds, and a partition purged behind the
/// gateway's back would otherwise refuse every idempotent append for good.
const FENCE_BEHIND_TRIES: u32 = 100;

/// Producers whose latest marker a partition remembers (`PartitionState::closed`); beyond
/// it the oldest marker is forgotten, and its stamp becomes the floor below which a
/// transactional batch of a producer no longer remembered is refused.
#[cfg(not(test))]
pub(crate) const MAX_CLOSED: usize = 4096;
/// Small in tests, which push producers out.
#[cfg(test)]
pub(crate) const MAX_CLOSED: usize = 64;

pub(crate) struct Appends {
    /// Kafka's `max.message.bytes` for every topic (Iggy has no per-topic equivalent).
    max_message_bytes: usize,
    next_producer_id: AtomicI64,
    /// The last hand-over stamp given (see [`Appends::stamp`]).
    stamps: AtomicU64,
}

/// An append queued on a lane, with its request (sent again on another node's lanes
/// should this node not take the partition's writes).
pub(crate) struct Queued {
    state: Arc<PartitionState>,
    lane: usize,
    call: PendingCall,
    body: Bytes,
    /// Whether it may go to Iggy merged with others ([`crate::calls::PartitionRoute::append`]).
    plain: bool,
}

impl Appends {
    pub(crate) fn new(max_message_bytes: usize, seed: u64) -> Self {
        Self {
            max_message_bytes,
            // Positive, and unlikely to meet the ids of an earlier run.
            next_producer_id: AtomicI64::new(i64::try_from((seed >> 24) << 20).unwrap_or(1) + 1),
            stamps: AtomicU64::new(0),
        }
    }

    /// A stamp for a transactional append or a marker, taken as the command is handed to
    /// the backend: stamps follow hand-over order. The transaction coordinator verifies a
    /// transactional write and hands it over before any marker of its transaction, but the
    /// two meet at the partition's gate in any order; a marker remembers its stamp there
    /// (per producer), and a transactional batch stamped before it is refused with
    /// INVALID_TXN_STATE instead of landing after the marker in a transaction that has
    /// ended (where it would stay open for ever), as a Kafka broker clears a producer's
    /// verification at its marker.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamps.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new idempotent-producer id.
    pub(crate) fn allocate_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks and encodes an append and queues it on the partition's lane, after the
    /// partition's last append if that went down another lane. A plain append (no
    /// `producer`) may reach Iggy merged with the plain appends queued behind it.
    pub(crate) fn send(
        &self,
        catalog: &Catalog,
        at: (&str, u32),
        messages: &MessageList,
        largest_batch: usize,
        producer: Option<&ProducerBatch>,
    ) -> Result<Queued, BackendError> {
        let plain = producer.is_none();
        self.send_as(catalog, at, messages, largest_batch, producer, plain)
    }

    /// [`Self::send`], merged with others only if `plain`: an idempotent or transactional
    /// batch, and a transaction's marker, reach Iggy as requests of their own.
    fn send_as(
        &self,
        catalog: &Catalog,
        (topic, partition): (&str, u32),
        messages: &MessageList,
        largest_batch: usize,
        producer: Option<&ProducerBatch>,
        plain: bool,
    ) -> Result<Queued, BackendError> {
        if largest_batch > self.max_message_bytes {
            return Err(BackendError::MessageTooLarge {
                size: largest_batch,
                max: self.max_message_bytes,
            });
        }
        let calls = catalog.calls();
        let ids = match producer {
            Some(pb) => wire::Ids::producer(pb),
            None => wire::Ids::counted(calls.message_ids(messages.len())),
        };
        let (stream_id, topic_id) = catalog.locate(topic)?;
        let body = wire::send_messages(stream_id, &topic_id, partition, messages, ids)?;
        let state = catalog.partition(topic, partition);
        let (lane, call) = state.route.append(
            calls,
            (topic, partition),
            (SEND_MESSAGES_CODE, plain),
            body.clone(),
        );
        Ok(Queued {
            state,
            lane,
            call,
            body,
            plain,
        })
    }

    /// Waits for the reply to an append of `count` messages and reports where it landed.
    /// An idempotent batch (`producer`, with where it lands at the earliest) whose reply is
    /// lost is left in doubt.
    pub(crate) async fn appended(
        &self,
        catalog: &Catalog,
        at: (&str, u32),
        count: usize,
        producer: Option<(&ProducerBatch, u64)>,
        queued: Queued,
    ) -> Result<Appended, BackendError> {
        let (topic, partition) = at;
        let Queued {
            state,
            lane,
            call,
            body,
            plain,
        } = queued;
        let (result, _) = state
            .route
            .settle(
                catalog.calls(),
                at,
                (SEND_MESSAGES_CODE, plain, &body),
                (lane, call),
            )
            .await;
        let reply = match result {
            Ok(r) => r,
            Err(f) => {
                if let (Failure::Lost(_), Some((&batch, from))) = (&f, producer) {
                    *lock(&state.doubt) = Some(Doubt { batch, from });
                }
                return Err(catalog.refine(f, topic, partition).await);
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
    /// A transactional one carries its hand-over `stamp` ([`Appends::stamp`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn append(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
        messages: &MessageList,
        largest_batch: usize,
        pb: ProducerBatch,
        stamp: u64,
    ) -> Result<Appended, BackendError> {
        let at = (topic, partition);
        let mut state = catalog.partition(topic, partition);
        let mut serial = state.gate.enter().await;
        loop {
            if !catalog.is_current(topic, partition, &state) {
                // Forgotten while this waited at its gate: the partition's appends now go
                // through another state and gate.
                drop(serial);
                state = catalog.partition(topic, partition);
                serial = state.gate.enter().await;
                continue;
            }
            if pb.transactional {
                not_rebuilt(&state, at)?;
            }
            if !state.recovered.load(Ordering::Relaxed) {
                self.recover_producers(catalog, reads, at, &state).await?;
            }
            let fenced = self.resolve_doubt(catalog, reads, at, &state).await?;
            let Some(original) = lock(&state.producers).check(&pb)? else {
                break;
            };
            // A retry, answered with where the batch landed, while the partition still holds
            // it: asking Iggy notices a topic created again behind the gateway's back, and a
            // partition that lost offsets (purged) no longer reaches that far. The node that
            // describes the topic may not have applied the batch yet (it follows the
            // partition's primary): then a look at the partition itself says whether the
            // batch is there.
            let offsets = catalog.offsets(topic, partition).await?;
            let current = catalog.is_current(topic, partition, &state);
            let holds = current
                && (original.base < offsets.high_watermark
                    || self
                        .holds(catalog, reads, (at, &state), (&pb, original.base), fenced)
                        .await?);
            if holds {
                if pb.transactional {
                    lock(&state.txns).appended(pb.producer_id, original.base);
                }
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
                catalog.forget_partition(topic, partition);
            }
            drop(serial);
            state = catalog.partition(topic, partition);
            serial = state.gate.enter().await;
        }
        if pb.transactional {
            let closed = match lock(&state.closed).get(&pb.producer_id) {
                Some(&marker) => marker,
                None => state.closed_floor.load(Ordering::Relaxed),
            };
            if closed > stamp {
                return Err(BackendError::Transaction {
                    code: ErrorCode::INVALID_TXN_STATE,
                    message: format!(
                        "transactional write of producer {} to {topic}-{partition} refused: \
                         its transaction's marker was written first",
                        pb.producer_id
                    ),
                });
            }
        }
        // Where a batch in doubt is looked for from: asked of Iggy once per partition, later
        // kept up by every reply.
        let from = match state.seen_end.load(Ordering::Relaxed) {
            0 => catalog.offsets(topic, partition).await?.high_watermark,
            end => end,
        };
        // Marked in flight before it is queued: a read may return it as soon as it is sent.
        let flight = pb.transactional.then(|| InFlight::start(&state, pb, from));
        let queued = match self.send(catalog, at, messages, largest_batch, Some(&pb)) {
            Ok(q) => q,
            Err(e) => {
                if let Some(f) = flight {
                    f.land();
                }
                return Err(e);
            }
        };
        let appended = self
            .appended(catalog, at, messages.len(), Some((&pb, from)), queued)
            .await;
        if let (Ok(a), true) = (&appended, pb.transactional) {
            lock(&state.txns).appended(pb.producer_id, a.base_offset);
        }
        if let Some(f) = flight {
            f.land();
        }
        appended
    }

    /// Appends a transaction's commit or abort marker (`docs/MAPPING.md`) for `producer_id`
    /// at `epoch`, in turn with the partition's idempotent appends: a write of the
    /// producer's older epoch still to come is refused (the marker fences it), so none
    /// lands after the marker inside a transaction that has ended, nor does a transactional
    /// batch of the producer handed over before the marker (`stamp`, [`Appends::stamp`]).
    /// Returns its offset.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_marker(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        at: (&str, u32),
        (producer_id, epoch): (i64, i16),
        commit: bool,
        coordinator_epoch: i32,
        stamp: u64,
    ) -> Result<u64, BackendError> {
        let (topic, partition) = at;
        // Iggy says whether the partition exists before any state is made for it.
        catalog.offsets(topic, partition).await?;
        let mut state = catalog.partition(topic, partition);
        let mut serial = state.gate.enter().await;
        while !catalog.is_current(topic, partition, &state) {
            drop(serial);
            state = catalog.partition(topic, partition);
            serial = state.gate.enter().await;
        }
        not_rebuilt(&state, at)?;
        // The producers are read back first, so that the fence holds against batches
        // appended before a restart too.
        if !state.recovered.load(Ordering::Relaxed) {
            self.recover_producers(catalog, reads, at, &state).await?;
        }
        // A transactional batch whose reply was lost is looked for before the marker ends
        // its transaction, so that the index closes it with the marker (an abort must cover
        // it); after the marker it no longer holds the last stable offset back.
        let just_fenced = self.resolve_doubt(catalog, reads, at, &state).await?;
        let unfound: Vec<Doubt> = lock(&state.txn_unfound)
            .iter()
            .filter(|d| d.batch.producer_id == producer_id)
            .copied()
            .collect();
        // Left by a look that could not be fenced: fenced now, if the partition lets it
        // (and unless the look just before was: that fence holds for these too).
        let fenced = match (unfound.iter().map(|d| d.from).max(), just_fenced) {
            (None, _) => None,
            (Some(_), Some(f)) => Some(f),
            (Some(from), None) => self.fence(catalog, at, &state, from).await?,
        };
        for doubt in unfound {
            let (found, _) = self
                .find_batch(catalog, reads, at, &state, doubt, fenced)
                .await?;
            if let Some(offset) = found {
                lock(&state.txns).appended(producer_id, offset);
            } else if fenced.is_none() {
                tracing::warn!(
                    %topic, partition, producer_id, from = doubt.from,
                    "a transactional batch whose reply was lost was not found before its \
                     transaction's marker: should Iggy apply it later, read_committed \
                     consumers see its records"
                );
            }
            lock(&state.txn_unfound).retain(|d| d.batch != doubt.batch);
        }
        lock(&state.producers).fence(producer_id, epoch);
        // Before the marker is sent: should its reply be lost, it may have landed all the
        // same, and the transaction has ended whether or not it did.
        close(&state, producer_id, stamp);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let messages: MessageList = std::iter::once(marker(
            producer_id,
            epoch,
            commit,
            coordinator_epoch,
            now_ms,
        ))
        .collect();
        let queued = self.send_as(catalog, at, &messages, 0, None, false)?;
        let appended = self.appended(catalog, at, 1, None, queued).await?;
        lock(&state.txns).marker(producer_id, commit, appended.base_offset);
        Ok(appended.base_offset)
    }

    /// The idempotent producers a partition remembers, read back from its tail first when
    /// this gateway has not yet, in turn with the partition's idempotent appends.
    pub(crate) async fn producers(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        at: (&str, u32),
    ) -> Result<Vec<ActiveProducer>, BackendError> {
        let (topic, partition) = at;
        // Iggy says whether the partition exists before any state is made for it.
        catalog.offsets(topic, partition).await?;
        let state = catalog.partition(topic, partition);
        let _serial = state.gate.enter().await;
        if !state.recovered.load(Ordering::Relaxed) {
            self.recover_producers(catalog, reads, at, &state).await?;
        }
        let active = lock(&state.producers).active();
        Ok(active)
    }

    /// Reads the idempotent producers' recent batches back from the partition's tail, where
    /// their message ids left them, so that a retry of a batch appended before this gateway
    /// (re)started is not appended again, as a Kafka broker restores its producer state
    /// from its log. Producers whose batches are older than the tail read start afresh.
    async fn recover_producers(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
        state: &PartitionState,
    ) -> Result<(), BackendError> {
        let offsets = catalog.offsets(topic, partition).await?;
        let count = reads.scan_count(state, RECOVER_BYTES);
        let from = offsets
            .high_watermark
            .saturating_sub(u64::from(count))
            .max(offsets.log_start);
        if from < offsets.high_watermark {
            // A few more than the tail holds, for appends since the offsets were asked: a
            // reply that ends before the partition does leaves its last producer unknown.
            let count = count + 16;
            let body = reads
                .poll(
                    catalog,
                    topic,
                    partition,
                    WirePollingStrategy::offset(from),
                    count,
                )
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
    /// was appended since it was sent, behind a fence ([`Self::fence`]); if it did, the
    /// producer's retry is answered with where it landed instead of being appended again.
    /// Runs under the partition's gate, so no other idempotent append can come between.
    /// Returns the fence it looked behind, if it fenced the partition. Should the look
    /// prove nothing (see [`Self::find_batch`]), it fails retriably and the batch stays in
    /// doubt, to be looked for again at the next try.
    async fn resolve_doubt(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
        state: &PartitionState,
    ) -> Result<Option<Fenced>, BackendError> {
        let Some(doubt) = *lock(&state.doubt) else {
            return Ok(None);
        };
        let fence = self
            .fence(catalog, (topic, partition), state, doubt.from)
            .await?;
        let (found, looked_to) = self
            .find_batch(catalog, reads, (topic, partition), state, doubt, fence)
            .await?;
        let fenced = fence.is_some();
        tracing::info!(
            %topic, partition, producer_id = doubt.batch.producer_id,
            first_sequence = doubt.batch.first_sequence, landed_at = ?found, fenced,
            "found out whether an idempotent batch whose reply was lost landed"
        );
        match found {
            Some(offset) => {
                lock(&state.producers).record(&doubt.batch, offset, None);
                // Its transaction is open here whether or not the producer retries it.
                if doubt.batch.transactional {
                    lock(&state.txns).appended(doubt.batch.producer_id, offset);
                }
            }
            // Behind the fence, a batch not found can no longer land.
            None if fenced => {}
            // Unfenced, Iggy may apply it yet.
            None if doubt.batch.transactional => lock(&state.txn_unfound).push(Doubt {
                from: looked_to.max(doubt.from),
                ..doubt
            }),
            None => tracing::warn!(
                %topic, partition, producer_id = doubt.batch.producer_id,
                first_sequence = doubt.batch.first_sequence,
                "an idempotent batch whose reply was lost was not found, looking unfenced: \
                 its retry is appended, and should Iggy apply the batch yet, it lands twice"
            ),
        }
        *lock(&state.doubt) = None;
        Ok(fence)
    }

    /// Whether the partition holds `pb`'s batch at `base`, where it landed (acknowledged).
    ///
    /// On a cluster the look is behind a fence (`fenced` if the partition was just fenced,
    /// else [`Self::fence`]), on the node that answered it: a node that has not applied
    /// the batch yet (a backup, or a new primary before its view has started) would say
    /// the partition ends before it, and the retry would be appended a second time. A
    /// reply without messages answers only when that node says it ends before `base` (see
    /// [`Self::fenced_end`]); else it fails retriably. A single server has committed what it
    /// acknowledged, and its description, which sent the look here, already says it ends
    /// before `base`: one poll of the partition's read lane confirms it.
    async fn holds(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (at, state): ((&str, u32), &PartitionState),
        (pb, base): (&ProducerBatch, u64),
        fenced: Option<Fenced>,
    ) -> Result<bool, BackendError> {
        let (topic, partition) = at;
        let strategy = WirePollingStrategy::offset(base);
        let id = wire::Ids::producer(pb).of(0);
        let fence = match fenced {
            Some(f) => Some(f),
            None if catalog.calls().lanes().nodes().len() > 1 => {
                let seen = base + u64::from(pb.count.max(1).unsigned_abs());
                self.fence(catalog, at, state, seen).await?
            }
            None => None,
        };
        let Some(fence) = fence else {
            let body = reads.poll(catalog, topic, partition, strategy, 1).await?;
            let (found, _, _) = wire::find_message(&body, id)?;
            return Ok(found == Some(base));
        };
        let body = reads.poll_on(catalog, at, fence.on, strategy, 1).await?;
        let (found, last, end) = wire::find_message(&body, id)?;
        if last.is_some() {
            return Ok(found == Some(base));
        }
        match self.fenced_end(catalog, reads, at, fence, end).await? {
            Some(end) if end < base => Ok(false),
            _ => Err(BackendError::Unavailable(format!(
                "{topic}-{partition}: a poll behind the fence came back empty though the node \
                 may hold offset {base}: the retry is checked again at the next try"
            ))),
        }
    }

    /// The last offset of the partition on the node that answered `fence`, from a reply
    /// without messages polled there that gave `end`: Iggy answers a poll that failed
    /// inside it that way too, with the node's end or 0 as its current offset. The node's
    /// end is kept, and 0 is asked again, by a poll from the partition's start whose reply
    /// holds a message (which only a read that worked gives); `None` when that reply is
    /// empty too, which proves nothing.
    async fn fenced_end(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        at: (&str, u32),
        fence: Fenced,
        end: u64,
    ) -> Result<Option<u64>, BackendError> {
        if end > 0 {
            return Ok(Some(end));
        }
        let body = reads
            .poll_on(catalog, at, fence.on, WirePollingStrategy::offset(0), 1)
            .await?;
        // Any id: only whether the reply holds a message, and its end, count.
        let (_, last, end) = wire::find_message(&body, 0)?;
        Ok(last.map(|_| end))
    }

    /// Fences the partition: stores [`FENCE_CONSUMER`]'s offset there, a write that Iggy
    /// commits through the partition's replication after every op its primary prepared
    /// before it (ops commit in order, and the reply comes at the commit). Sent as the
    /// partition's writes are (after its last append, moving to the node that takes them),
    /// so its reply means that a batch sent here earlier has committed on the node that
    /// answered, or will never land. `seen` is an end of the partition the gateway saw
    /// (where a batch in doubt can have landed at the earliest).
    ///
    /// `None` when it could not be fenced: the partition, which the gateway saw empty,
    /// held nothing committed for [`FENCE_EMPTY_TRIES`] asks ([`FENCE_EMPTY_TRIES_SINGLE`]
    /// on a single server; a node stores no consumer offset there), or the gateway's Iggy
    /// user may not poll (Iggy grants storing a consumer offset with the right to poll, so
    /// its reads fail too). A node of a cluster that refuses the offset on a partition the
    /// gateway saw hold messages is behind: that fails retriably, and the next try fences
    /// again, up to [`FENCE_BEHIND_TRIES`] tries in a row. A single server that refuses it,
    /// or a cluster past that bound, no longer holds what the gateway saw (the partition was
    /// purged behind its back, or lost what it acknowledged): the partition is taken as
    /// empty, which no try in a row that fails for ever would mend.
    async fn fence(
        &self,
        catalog: &Catalog,
        at: (&str, u32),
        state: &PartitionState,
        seen: u64,
    ) -> Result<Option<Fenced>, BackendError> {
        let (topic, partition) = at;
        // Taken before the fence is sent: every write acknowledged by then is committed
        // ahead of it, so the node that answers holds at least this much.
        let floor = seen.max(state.seen_end.load(Ordering::Relaxed));
        let (stream_id, topic_id) = catalog.locate(topic)?;
        let body = StoreConsumerOffsetRequest {
            consumer: WireConsumer::consumer(
                WireIdentifier::named(FENCE_CONSUMER).expect("a valid name"),
            ),
            stream_id: stream_id.clone(),
            topic_id,
            partition_id: Some(partition),
            offset: 0,
            ack: AckLevel::Quorum,
        }
        .to_bytes();
        let calls = catalog.calls();
        let tries = if calls.lanes().nodes().len() > 1 {
            FENCE_EMPTY_TRIES
        } else {
            FENCE_EMPTY_TRIES_SINGLE
        };
        for _ in 0..tries {
            let sent =
                state
                    .route
                    .append(calls, at, (STORE_CONSUMER_OFFSET_CODE, false), body.clone());
            let (result, on) = state
                .route
                .settle_unmeasured(calls, at, STORE_CONSUMER_OFFSET_CODE, sent)
                .await;
            match result {
                Ok(_) => {
                    state.fence_refusals.store(0, Ordering::Relaxed);
                    return Ok(Some(Fenced { on, floor }));
                }
                Err(Failure::Status(code::INVALID_OFFSET))
                    if floor > 0
                        && calls.lanes().nodes().len() > 1
                        && state.fence_refusals.fetch_add(1, Ordering::Relaxed)
                            < FENCE_BEHIND_TRIES =>
                {
                    return Err(BackendError::Unavailable(format!(
                        "{topic}-{partition}: the Iggy node that serves the partition's \
                         writes has not applied what the gateway saw there, so it cannot \
                         fence it yet"
                    )));
                }
                Err(Failure::Status(code::INVALID_OFFSET)) => {
                    let clock = calls.clock();
                    clock.sleep_until(clock.now() + FENCE_EMPTY_PAUSE).await;
                }
                Err(Failure::Status(code::UNAUTHORIZED)) => {
                    tracing::warn!(
                        %topic, partition,
                        "the gateway's Iggy user may not store consumer offsets (nor poll): \
                         a batch whose reply was lost is looked for unfenced"
                    );
                    return Ok(None);
                }
                Err(f) => return Err(catalog.refine(f, topic, partition).await),
            }
        }
        tracing::warn!(
            %topic, partition,
            "the partition holds nothing committed yet, so it cannot be fenced: a batch \
             whose reply was lost is looked for unfenced"
        );
        Ok(None)
    }

    /// Where `doubt`'s batch landed, looking from where it can have landed to the
    /// partition's end (where the node's reads stop), within [`DOUBT_SCAN_BYTES`]; and
    /// where the look stopped (should Iggy apply the batch later, it lands there or after).
    /// Behind a `fence`, it reads on the node that answered the fence, and a reply without
    /// messages ends the look only when that node's end ([`Self::fenced_end`]) is where the
    /// look is and not before anything seen held (Iggy answers a poll that failed inside it
    /// empty, with the node's end or 0 as its current offset): else the look fails
    /// retriably. Unfenced, it reads where the partition's reads go.
    async fn find_batch(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        (topic, partition): (&str, u32),
        state: &PartitionState,
        doubt: Doubt,
        fence: Option<Fenced>,
    ) -> Result<(Option<u64>, u64), BackendError> {
        let id = wire::Ids::producer(&doubt.batch).of(0);
        let (mut at, mut read) = (doubt.from, 0usize);
        // What the node that answered the fence holds at least.
        let mut floor = fence.map_or(0, |f| f.floor).max(doubt.from);
        loop {
            if read > DOUBT_SCAN_BYTES {
                tracing::warn!(
                    %topic, partition, from = doubt.from, at,
                    "gave up looking for an idempotent batch whose reply was lost: \
                     its retry is appended, perhaps a second time"
                );
                return Ok((None, at));
            }
            let count = reads.scan_count(state, SCAN_POLL_BYTES);
            let strategy = WirePollingStrategy::offset(at);
            let body = match fence {
                Some(f) => {
                    reads
                        .poll_on(catalog, (topic, partition), f.on, strategy, count)
                        .await?
                }
                None => {
                    reads
                        .poll(catalog, topic, partition, strategy, count)
                        .await?
                }
            };
            read += body.len();
            let (hit, last, end) = wire::find_message(&body, id)?;
            let Some(last) = last else {
                if let Some(f) = fence {
                    let end = self
                        .fenced_end(catalog, reads, (topic, partition), f, end)
                        .await?;
                    if end.and_then(|e| e.checked_add(1)) != Some(at) || at < floor {
                        return Err(BackendError::Unavailable(format!(
                            "{topic}-{partition}: a poll behind the fence came back empty \
                             though the node holds offset {at} or is behind (its end \
                             {end:?}): the batch whose reply was lost is looked for again at \
                             the next try"
                        )));
                    }
                }
                return Ok((None, at));
            };
            floor = floor.max(end.saturating_add(1));
            at = last + 1;
            state.saw_end(at);
            if hit.is_some() || last >= end {
                return Ok((hit, at));
            }
        }
    }
}

/// A partition fenced ([`Appends::fence`]): where the fence was answered, and what the
/// node that answered holds at least (the end of the partition the gateway saw before it).
#[derive(Debug, Clone, Copy)]
struct Fenced {
    on: Answered,
    floor: u64,
}

/// Refuses a transactional write to a partition state whose transaction index is not
/// rebuilt yet: the state was made afresh (the partition forgotten) after the write's
/// caller made sure of the rebuild, and learnt first, the write would be taken for the end
/// of the partition's earlier transactions. Retriable: the retry rebuilds first.
fn not_rebuilt(
    state: &PartitionState,
    (topic, partition): (&str, u32),
) -> Result<(), BackendError> {
    if state.txns_rebuilt.load(Ordering::Acquire) {
        return Ok(());
    }
    Err(BackendError::Unavailable(format!(
        "{topic}-{partition} was looked up again: its transaction index is read back first"
    )))
}

/// Remembers that `producer_id`'s marker stamped `stamp` is written to the partition.
fn close(state: &PartitionState, producer_id: i64, stamp: u64) {
    let mut closed = lock(&state.closed);
    let latest = closed.entry(producer_id).or_default();
    *latest = (*latest).max(stamp);
    if closed.len() > MAX_CLOSED {
        let oldest = closed
            .iter()
            .min_by_key(|(_, s)| **s)
            .map(|(&producer, &stamp)| (producer, stamp));
        if let Some((p, stamp)) = oldest {
            closed.remove(&p);
            state.closed_floor.fetch_max(stamp, Ordering::Relaxed);
        }
    }
}

/// A transactional batch in flight on a partition (`PartitionState::txn_in_flight`). Should
/// its append be given up before the reply (the future dropped), the batch is left in
/// doubt, as when the reply is lost.
struct InFlight<'a> {
    state: &'a PartitionState,
    batch: ProducerBatch,
    from: u64,
    landed: bool,
}

impl<'a> InFlight<'a> {
    fn start(state: &'a PartitionState, batch: ProducerBatch, from: u64) -> Self {
        *lock(&state.txn_in_flight) = Some(from);
        Self {
            state,
            batch,
            from,
            landed: false,
        }
    }

    /// The reply is handled: the batch is in the index, or in doubt, or was not applied.
    fn land(mut self) {
        self.landed = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.landed {
            *lock(&self.state.doubt) = Some(Doubt {
                batch: self.batch,
                from: self.from,
            });
        }
        *lock(&self.state.txn_in_flight) = None;
    }
}
