//! Fetch (key 1): read each partition, map the messages back to records, and long-poll
//! (`max_wait_ms`, `min_bytes`) by watching the partitions rather than re-reading them on a
//! timer. Fetch sessions are declined: every fetch is a full fetch (session id 0).

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::task::{partition_index, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, ReadResult, TopicRef, WatchPartition};
use crate::mapping::{bare_record, bare_timestamp_ms, from_iggy, marker_of, transaction_of};
use crate::message::MessageView;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::fetch_request::FetchRequest;
use crate::protocol::generated::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use crate::protocol::Response;
use crate::protocol::Uuid;
use crate::records::{BatchWriter, TimestampType};
use crate::stats::Traffic;
use crate::work::{Outcome, Work};

/// The most messages one partition read returns, whatever the byte limits allow.
const MAX_MESSAGES_PER_READ: usize = 50_000;

/// Fetch's `isolation_level` for read_committed.
const READ_COMMITTED: i8 = 1;

#[derive(Debug)]
pub(crate) struct FetchTask {
    req: FetchRequest,
    deadline: Option<std::time::Instant>,
    /// For each read sent: topic index, partition index, partition number, offset.
    reads: Vec<(usize, usize, u32, u64)>,
    /// Per topic and partition: an error decided before reading.
    errors: Vec<Vec<Option<ErrorCode>>>,
    /// What the response carries: topic, records, bytes.
    moved: Vec<(String, u64, u64)>,
    /// By topic id (v13+, with an authorizer): each topic's name, looked up before reading,
    /// so that a topic the principal may not read is not read at all.
    names: Option<Vec<(Uuid, String)>>,
}

impl FetchTask {
    pub(crate) fn new(req: FetchRequest) -> Self {
        Self {
            req,
            deadline: None,
            reads: Vec::new(),
            errors: Vec::new(),
            moved: Vec::new(),
            names: None,
        }
    }

    fn topic_ref(&self, t: usize, version: i16) -> TopicRef {
        let topic = &self.req.topics[t];
        if version >= 13 {
            TopicRef::Id(topic.topic_id)
        } else {
            TopicRef::Name(topic.topic.to_string())
        }
    }

    fn read_commands(&self, ctx: &Ctx<'_>) -> Vec<Work> {
        let total = usize::try_from(self.req.max_bytes).unwrap_or(0).max(1);
        self.reads
            .iter()
            .map(|&(t, p, partition, offset)| {
                let max = usize::try_from(self.req.topics[t].partitions[p].partition_max_bytes)
                    .unwrap_or(0)
                    .min(total)
                    .max(1);
                Work::Store(Command::Read {
                    topic: self.topic_ref(t, ctx.version),
                    partition,
                    offset,
                    max_bytes: max,
                    max_messages: MAX_MESSAGES_PER_READ,
                })
            })
            .collect()
    }

    fn respond(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        let mut response = FetchResponse::default();
        for (t, topic) in self.req.topics.iter().enumerate() {
            let mut out = FetchableTopicResponse {
                topic: if version < 13 {
                    topic.topic.clone()
                } else {
                    Default::default()
                },
                topic_id: if version >= 13 {
                    topic.topic_id
                } else {
                    Default::default()
                },
                ..FetchableTopicResponse::default()
            };
            for (p, part) in topic.partitions.iter().enumerate() {
                let code = self.errors[t][p].unwrap_or(ErrorCode::NONE);
                out.partitions.push(error_partition(part.partition, code));
            }
            response.responses.push(out);
        }
        let mut budget = usize::try_from(self.req.max_bytes).unwrap_or(0);
        let mut any = false;
        for (&(t, p, _, _), completion) in self.reads.iter().zip(results) {
            let slot = &mut response.responses[t].partitions[p];
            match completion {
                Outcome::Store(Completion::Read(Ok(read)))
                    if !ctx.allows(Action::Poll(&read.topic)) =>
                {
                    *slot = error_partition(
                        slot.partition_index,
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                    );
                }
                Outcome::Store(Completion::Read(Ok(read))) => {
                    let committed = self.req.isolation_level == READ_COMMITTED;
                    let lso = read.offsets.last_stable_offset();
                    let limit = committed.then_some(lso);
                    let (records, size, taken) = encode_records(&read, budget, !any, limit);
                    if taken > 0 {
                        self.moved
                            .push((read.topic.clone(), taken as u64, records.len() as u64));
                    }
                    if committed && version >= 4 {
                        // The aborted transactions among the records returned: the consumer
                        // drops those producers' records until their abort markers.
                        let last = read.messages.views().take(taken).last().map(|(o, _)| o);
                        slot.aborted_transactions = Some(
                            last.map(|last| {
                                read.aborted
                                    .iter()
                                    .filter(|a| a.first_offset <= last)
                                    .map(|a| AbortedTransaction {
                                        producer_id: a.producer_id,
                                        first_offset: i64::try_from(a.first_offset)
                                            .unwrap_or(i64::MAX),
                                        ..AbortedTransaction::default()
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        );
                    } else {
                        slot.aborted_transactions = None;
                    }
                    budget = budget.saturating_sub(size);
                    any |= size > 0;
                    let hw = i64::try_from(read.offsets.high_watermark).unwrap_or(i64::MAX);
                    slot.high_watermark = hw;
                    slot.last_stable_offset = i64::try_from(lso).unwrap_or(i64::MAX);
                    slot.log_start_offset =
                        i64::try_from(read.offsets.log_start).unwrap_or(i64::MAX);
                    slot.records = Some(records);
                }
                Outcome::Store(Completion::Read(Err(e))) => {
                    tracing::debug!(error = %e, "fetch read failed");
                    let mut code = e.error_code();
                    if version < 13 && code == ErrorCode::UNKNOWN_TOPIC_ID {
                        code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION;
                    }
                    if let crate::backend::BackendError::Unavailable(_) = e {
                        // A log the broker cannot read now. Consumers refresh metadata and
                        // fetch again; REQUEST_TIMED_OUT, which a fetch partition never
                        // carries from Kafka, makes the Java consumer throw from poll() and
                        // librdkafka hand an error to the application.
                        code = ErrorCode::KAFKA_STORAGE_ERROR;
                    }
                    *slot = error_partition(slot.partition_index, code);
                    if let crate::backend::BackendError::OffsetOutOfRange {
                        log_start,
                        high_watermark,
                        ..
                    } = e
                    {
                        slot.high_watermark = i64::try_from(high_watermark).unwrap_or(-1);
                        slot.last_stable_offset = slot.high_watermark;
                        slot.log_start_offset = i64::try_from(log_start).unwrap_or(-1);
                    }
                }
                other => {
                    tracing::warn!(?other, "unexpected completion for a read");
                    *slot = error_partition(slot.partition_index, ErrorCode::UNKNOWN_SERVER_ERROR);
                }
            }
        }
        Step::Respond(Response::Fetch(response))
    }
}

fn error_partition(partition: i32, code: ErrorCode) -> PartitionData {
    PartitionData {
        partition_index: partition,
        error_code: code.into(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Some(Bytes::new()),
        ..PartitionData::default()
    }
}

/// Encodes the messages of a read as record batches, within `budget` bytes unless `first`
/// (the first partition with data gets at least one message, as Kafka guarantees); with
/// the size counted against the budget, and how many messages it took.
fn encode_records(
    read: &ReadResult,
    budget: usize,
    first: bool,
    limit: Option<u64>,
) -> (Bytes, usize, usize) {
    let mut taken = 0;
    let mut size = 0;
    for (offset, m) in read.messages.views() {
        if limit.is_some_and(|l| offset >= l) {
            // read_committed: nothing at or past the last stable offset.
            break;
        }
        let s = m.size();
        if size + s > budget && !(first && taken == 0) {
            break;
        }
        size += s;
        taken += 1;
    }
    if taken == 0 {
        return (Bytes::new(), 0, 0);
    }
    let mut buf = BytesMut::with_capacity(size + 128);
    // A new batch where the timestamp type changes, and for each log-append-time timestamp
    // (such a batch's records all carry the batch's one timestamp).
    // A new batch also where the transaction changes: a transaction's records, and its
    // markers (control batches), are batches of their producer. Each marker is a batch of
    // its own, as Kafka writes them: consumers take one control record per control batch.
    type Kind = (bool, Option<(i64, i16, bool)>);
    let mut batch: Option<(BatchWriter, Kind)> = None;
    for (offset, m) in read.messages.views().take(taken) {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let record;
        let control_key;
        let mut transaction = None;
        let (timestamp_ms, log_append, key, value, headers) = match m {
            MessageView::Bare {
                payload,
                origin_timestamp_us,
                timestamp_us,
            } => (
                bare_timestamp_ms(origin_timestamp_us, timestamp_us),
                false,
                None,
                Some(payload),
                &[][..],
            ),
            MessageView::Message(m) => match bare_record(m) {
                Some((timestamp_ms, value)) => {
                    (timestamp_ms, false, None, Some(&value[..]), &[][..])
                }
                None => {
                    record = from_iggy(m);
                    transaction = transaction_of(m).map(|(p, e)| (p, e, false));
                    match (transaction, marker_of(m)) {
                        (Some((p, e, _)), Some(commit)) => {
                            // Kafka's control record: key version 0 and type (0 abort, 1
                            // commit); the value (version, coordinator epoch) is the payload.
                            transaction = Some((p, e, true));
                            let mut k = Vec::with_capacity(4);
                            k.extend_from_slice(&0i16.to_be_bytes());
                            k.extend_from_slice(&i16::from(commit).to_be_bytes());
                            control_key = Bytes::from(k);
                            (
                                record.timestamp_ms,
                                false,
                                Some(&control_key[..]),
                                Some(&m.payload[..]),
                                &[][..],
                            )
                        }
                        _ => (
                            record.timestamp_ms,
                            record.timestamp_type == TimestampType::LogAppendTime,
                            record.key.as_deref(),
                            record.value.as_deref(),
                            &record.headers[..],
                        ),
                    }
                }
            },
        };
        let kind: Kind = (log_append, transaction);
        let control = transaction.is_some_and(|(_, _, c)| c);
        let fits = !control
            && batch.as_ref().is_some_and(|(b, k)| {
                *k == kind && (!log_append || b.max_timestamp() == timestamp_ms)
            });
        if !fits {
            if let Some((b, _)) = batch.take() {
                finish(b, &mut buf);
            }
            batch = Some((
                BatchWriter::begin_as(&mut buf, offset, timestamp_ms, log_append, transaction),
                kind,
            ));
        }
        if let Some((b, _)) = batch.as_mut() {
            if let Err(e) = b.push(&mut buf, offset, timestamp_ms, key, value, headers) {
                // Only lengths beyond i32 fail, which the read limits rule out.
                tracing::error!(error = %e, "cannot encode a fetched record");
            }
        }
    }
    if let Some((b, _)) = batch.take() {
        finish(b, &mut buf);
    }
    (buf.freeze(), size, taken)
}

fn finish(batch: BatchWriter, buf: &mut BytesMut) {
    if let Err(e) = batch.finish(buf) {
        // Only a length beyond i32 fails, which the read limits rule out.
        tracing::error!(error = %e, "cannot encode a fetched batch");
    }
}

/// Bytes of messages in a read a consumer may see, for long polling.
fn read_bytes(results: &[Outcome], committed: bool) -> (usize, bool) {
    let mut bytes = 0;
    let mut error = false;
    for c in results {
        match c {
            Outcome::Store(Completion::Read(Ok(r))) => {
                let lso = r.offsets.last_stable_offset();
                bytes += r
                    .messages
                    .views()
                    .take_while(|(o, _)| !committed || *o < lso)
                    .map(|(_, m)| m.size())
                    .sum::<usize>();
            }
            _ => error = true,
        }
    }
    (bytes, error)
}

impl Task for FetchTask {
    fn report(&self, traffic: &mut Traffic<'_>) {
        for (topic, records, bytes) in &self.moved {
            traffic.fetched(topic, *records, *bytes);
        }
    }

    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        if self.deadline.is_none() {
            if version >= 13 && ctx.config.authorizer.is_some() && self.names.is_none() {
                if results.is_empty() {
                    let ids = self
                        .req
                        .topics
                        .iter()
                        .filter(|t| !t.topic_id.is_nil())
                        .map(|t| TopicRef::Id(t.topic_id))
                        .collect();
                    return Step::Run(vec![Work::Store(Command::ListTopics { only: Some(ids) })]);
                }
                self.names = Some(match super::task::single(results) {
                    Some(Outcome::Store(Completion::ListTopics(Ok(topics)))) => {
                        topics.into_iter().map(|t| (t.id, t.name)).collect()
                    }
                    // Not known: nothing is read, and each topic is answered as unknown.
                    _ => Vec::new(),
                });
            }
            let wait = Duration::from_millis(u64::try_from(self.req.max_wait_ms).unwrap_or(0));
            self.deadline = Some(ctx.now + wait);
            if version >= 7 && !matches!(self.req.session_epoch, 0 | -1) {
                // Epochs 0 (open a session) and -1 (no session) ask for a full fetch, which
                // is served whatever the session id (Kafka closes the session it names). Any
                // other epoch continues a session, and the gateway never hands one out.
                return Step::Respond(Response::Fetch(FetchResponse {
                    error_code: ErrorCode::FETCH_SESSION_ID_NOT_FOUND.into(),
                    ..FetchResponse::default()
                }));
            }
            for (t, topic) in self.req.topics.iter().enumerate() {
                let mut errs = Vec::with_capacity(topic.partitions.len());
                for (p, part) in topic.partitions.iter().enumerate() {
                    let refused = if version >= 13 && topic.topic_id.is_nil() {
                        Some(ErrorCode::UNKNOWN_TOPIC_ID)
                    } else if version < 13 && !ctx.allows(Action::Poll(&topic.topic)) {
                        Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
                    } else if let Some(names) = &self.names {
                        match names.iter().find(|(id, _)| *id == topic.topic_id) {
                            None => Some(ErrorCode::UNKNOWN_TOPIC_ID),
                            Some((_, name)) if !ctx.allows(Action::Poll(name)) => {
                                Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
                            }
                            Some(_) => None,
                        }
                    } else {
                        None
                    };
                    let err = if refused.is_some() {
                        refused
                    } else if part.current_leader_epoch > 0 {
                        Some(ErrorCode::UNKNOWN_LEADER_EPOCH)
                    } else if part.fetch_offset < 0 {
                        Some(ErrorCode::OFFSET_OUT_OF_RANGE)
                    } else {
                        match partition_index(part.partition) {
                            Some(partition) => {
                                let offset = u64::try_from(part.fetch_offset).unwrap_or(0);
                                self.reads.push((t, p, partition, offset));
                                None
                            }
                            None => Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                        }
                    };
                    errs.push(err);
                }
                self.errors.push(errs);
            }
            if self.reads.is_empty() {
                return self.respond(ctx, Vec::new());
            }
            return Step::Run(self.read_commands(ctx));
        }
        if matches!(results.first(), Some(Outcome::Store(Completion::Watch))) {
            return Step::Run(self.read_commands(ctx));
        }
        let committed = self.req.isolation_level == READ_COMMITTED;
        let (bytes, error) = read_bytes(&results, committed);
        let deadline = self.deadline.unwrap_or(ctx.now);
        let min = usize::try_from(self.req.min_bytes).unwrap_or(0);
        if error || bytes >= min || ctx.now >= deadline || ctx.closing {
            return self.respond(ctx, results);
        }
        let watch = self
            .reads
            .iter()
            .zip(&results)
            .map(|(&(t, _, partition, offset), c)| {
                let next = match c {
                    // read_committed: what was read past the last stable offset waits for
                    // a marker, which appends; watching below the high watermark would
                    // fire at once, again and again, while the transaction stays open.
                    Outcome::Store(Completion::Read(Ok(r))) if committed => r
                        .messages
                        .last_offset()
                        .map_or(offset, |o| o + 1)
                        .max(offset)
                        .max(r.offsets.high_watermark),
                    Outcome::Store(Completion::Read(Ok(r))) => r
                        .messages
                        .last_offset()
                        .map_or(offset, |o| o + 1)
                        .max(offset),
                    _ => offset,
                };
                WatchPartition {
                    topic: self.topic_ref(t, ctx.version),
                    partition,
                    offset: next,
                }
            })
            .collect();
        Step::Wait { deadline, watch }
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        let results = self
            .reads
            .iter()
            .map(|_| {
                Outcome::Store(Completion::Read(Err(
                    crate::backend::BackendError::Unavailable("read timed out".into()),
                )))
            })
            .collect();
        self.respond(ctx, results)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backend::PartitionOffsets;
    use crate::config::Config;
    use crate::message::{BareBlock, IggyMessage, MessageList, Messages, MessagesBuilder};
    use crate::protocol::generated::fetch_request::{FetchPartition, FetchTopic};

    fn read_of(messages: Messages) -> ReadResult {
        ReadResult {
            topic: "t".into(),
            messages,
            offsets: PartitionOffsets {
                log_start: 0,
                high_watermark: 100,
                size_bytes: None,
                last_stable: None,
            },
            aborted: Vec::new(),
        }
    }

    /// Bare messages held as ranges of the bytes they arrived in are fetched as the very
    /// bytes the same messages held whole give: the same records, timestamps, batches and
    /// byte budget, from the start of a block or inside it, beside whole messages, whether
    /// the block was appended at one time or each message at its own.
    #[test]
    fn bare_blocks_encode_as_the_same_messages_held_whole() {
        let appended_us = 1_700_000_000_123_456;
        let payloads: [&[u8]; 4] = [b"a", b"bcd", b"efgh", b"ij"];
        let request = bytes::Bytes::from(payloads.concat());
        let each: Vec<_> = (0..4).map(|i| appended_us + 1_000 * i).collect();
        // The producer's timestamps; 0 (none) takes the append time.
        for origins in [[1_700_000_000_000_000, 0, 1_699_999_999_999_000, 5], [0; 4]] {
            let mut list = MessageList::default();
            let mut at = 0;
            for (p, &origin) in payloads.iter().zip(&origins) {
                list.push_bare(&request, &request[at..at + p.len()], origin);
                at += p.len();
            }
            let blocks = [
                (
                    BareBlock::new(list.clone(), appended_us).expect("bare"),
                    vec![appended_us; 4],
                ),
                (
                    BareBlock::with_times(list, each.clone()).expect("bare"),
                    each.clone(),
                ),
            ];
            for (bare, times) in blocks {
                bare_block_encodes_as_held_whole(bare, &payloads, &origins, &times);
            }
        }
    }

    fn bare_block_encodes_as_held_whole(
        bare: BareBlock,
        payloads: &[&[u8]],
        origins: &[u64],
        times: &[u64],
    ) {
        let whole: Vec<_> = payloads
            .iter()
            .zip(origins)
            .zip(times)
            .map(|((p, &origin), &time)| IggyMessage {
                payload: bytes::Bytes::copy_from_slice(p),
                origin_timestamp_us: origin,
                timestamp_us: time,
                ..IggyMessage::default()
            })
            .collect();
        let whole = Arc::new(whole);
        // A whole message after the block, as a mapped append would follow a bare one.
        let after: crate::message::Block = Arc::new(vec![IggyMessage {
            payload: "after".into(),
            timestamp_us: times[3] + 1,
            ..IggyMessage::default()
        }]);
        let bare = Arc::new(bare);
        for from in [0, 1, 3] {
            let mut held_bare = Messages::new();
            held_bare.push_bare(10 + from as u64, &bare, from..4);
            held_bare.push(14, &after, 0..1);
            let mut held_whole = Messages::new();
            held_whole.push(10 + from as u64, &whole, from..4);
            held_whole.push(14, &after, 0..1);
            assert_eq!(held_bare, held_whole, "from {from}, {origins:?}, {times:?}");
            for budget in [0, 20, 40, 1 << 20] {
                let got = encode_records(&read_of(held_bare.clone()), budget, true, None);
                let want = encode_records(&read_of(held_whole.clone()), budget, true, None);
                assert_eq!(
                    got, want,
                    "from {from}, budget {budget}, {origins:?}, {times:?}"
                );
                assert!(got.2 > 0);
            }
        }
    }

    /// A long poll that read records of a transaction still open (past the last stable
    /// offset, below the high watermark) waits for the next append, not for the records it
    /// already read: a watch below the high watermark would fire at once, and the fetch
    /// would read the same records again and again until its deadline.
    #[test]
    fn a_read_committed_long_poll_waits_past_an_open_transaction() {
        let config = Config::default();
        let now = Instant::now();
        let ctx = Ctx {
            config: &config,
            now,
            version: 12,
            closing: false,
            client_id: None,
            client_host: "",
            principal: None,
        };
        let mut task = FetchTask::new(FetchRequest {
            replica_id: -1,
            max_wait_ms: 500,
            min_bytes: 1,
            isolation_level: READ_COMMITTED,
            topics: vec![FetchTopic {
                topic: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 2,
                    partition_max_bytes: 1 << 20,
                    ..FetchPartition::default()
                }],
                ..FetchTopic::default()
            }],
            ..FetchRequest::default()
        });
        assert!(matches!(task.step(&ctx, Vec::new()), Step::Run(_)));
        // Offsets 2 and 3 read, of a transaction open from offset 2; the read stopped at
        // its byte limit far below the high watermark.
        let mut messages = MessagesBuilder::with_capacity(2);
        for o in [2, 3] {
            messages.push(
                o,
                IggyMessage {
                    payload: "x".into(),
                    ..IggyMessage::default()
                },
            );
        }
        let read = Outcome::Store(Completion::Read(Ok(ReadResult {
            topic: "t".into(),
            messages: messages.finish(),
            offsets: PartitionOffsets {
                log_start: 0,
                high_watermark: 100,
                size_bytes: None,
                last_stable: Some(2),
            },
            aborted: Vec::new(),
        })));
        let ctx = Ctx {
            now: now + Duration::from_millis(1),
            ..ctx
        };
        match task.step(&ctx, vec![read]) {
            Step::Wait { watch, .. } => {
                assert_eq!(watch.len(), 1);
                assert_eq!(
                    watch[0].offset, 100,
                    "the next append, past the high watermark"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
