//! Produce (key 0): decode the batches, map every record to an Iggy message, append per
//! partition. Each partition succeeds or fails on its own.

use bytes::Bytes;

use super::task::{kstr, partition_index, Ctx, Step, Task};
use super::transactions::txn_key;
use crate::authz::Action;
use crate::backend::{BackendError, Command, Completion, ProducerBatch};
use crate::close::CloseReason;
use crate::mapping::IntoIggy;
use crate::message::MessageList;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::produce_request::ProduceRequest;
use crate::protocol::generated::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use crate::protocol::Response;
use crate::records::{decode_batches_into, DecompressionBudget, RecordBatch};
use crate::stats::Traffic;
use crate::work::{Outcome, Work};

#[derive(Debug)]
pub(crate) struct ProduceTask {
    req: ProduceRequest,
    response: Option<ProduceResponse>,
    /// For each command sent: the topic and partition response it fills.
    sent: Vec<(usize, usize)>,
    /// For each command sent: its records and their bytes, and whether it was appended.
    moved: Vec<(u64, u64, bool)>,
    /// Batches decoded, per compression codec.
    codecs: [u64; 5],
}

impl ProduceTask {
    pub(crate) fn new(req: ProduceRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
            moved: Vec::new(),
            codecs: [0; 5],
        }
    }

    fn finish(&mut self) -> Step {
        let response = self.response.take().unwrap_or_default();
        if self.req.acks != 0 {
            return Step::Respond(Response::Produce(response));
        }
        let failed = response.responses.iter().find_map(|t| {
            t.partition_responses
                .iter()
                .find(|p| p.error_code != 0)
                .map(|p| format!("{}-{}: {}", t.name, p.index, ErrorCode(p.error_code).name()))
        });
        match failed {
            Some(why) => Step::Close(CloseReason::ProduceFailed(why)),
            None => Step::Silent,
        }
    }
}

fn failed(
    index: i32,
    code: ErrorCode,
    message: Option<String>,
    version: i16,
) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code.into(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: if version >= 8 {
            message.map(|m| kstr(&m))
        } else {
            None
        },
        ..PartitionProduceResponse::default()
    }
}

/// The size of the largest batch in `data`, for `max.message.bytes`.
fn largest_batch(data: &Bytes) -> usize {
    let mut largest = 0;
    let mut pos = 0usize;
    while let Some(len) = data
        .get(pos + 8..pos + 12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
    {
        let Ok(len) = usize::try_from(len) else { break };
        let size = len + 12;
        largest = largest.max(size);
        pos += size;
    }
    largest.max(usize::from(pos == 0) * data.len())
}

/// The messages of one partition's record set, or the error code and message Kafka would
/// answer with.
fn messages(
    data: Option<&Bytes>,
    budget: &mut DecompressionBudget,
    codecs: &mut [u64; 5],
    in_transaction: bool,
) -> Result<(MessageList, Option<ProducerBatch>), (ErrorCode, String)> {
    let Some(data) = data else {
        return Err((ErrorCode::CORRUPT_MESSAGE, "null record set".into()));
    };
    let mut sink = IntoIggy::default();
    let batches = decode_batches_into(data, budget, &mut sink)
        .map_err(|e| (e.error_code(), e.to_string()))?;
    for b in &batches {
        if let Some(n) = codecs.get_mut(usize::from((b.attributes & 0x7) as u8)) {
            *n += 1;
        }
    }
    if batches.iter().any(RecordBatch::is_control) {
        return Err((
            ErrorCode::INVALID_RECORD,
            "control batches are written by the transaction coordinator, not by producers".into(),
        ));
    }
    let transactional = batches.iter().filter(|b| b.is_transactional()).count();
    if transactional > 0 && (transactional < batches.len() || !in_transaction) {
        return Err((
            ErrorCode::INVALID_RECORD,
            if in_transaction {
                "transactional and plain batches mixed in one partition".into()
            } else {
                "transactional batches need the request's transactional id".into()
            },
        ));
    }
    let mut producer = producer_batch(&batches)?;
    match &mut producer {
        Some(p) => p.transactional = transactional > 0,
        None if transactional > 0 => {
            return Err((
                ErrorCode::INVALID_RECORD,
                "transactional batches need a producer id".into(),
            ))
        }
        None => {}
    }
    Ok((sink.0, producer))
}

/// The idempotent-producer span of a partition's batches: none for a plain producer; for an
/// idempotent one, its batches must be one run of sequences (clients send one batch per
/// partition per request).
fn producer_batch(batches: &[RecordBatch]) -> Result<Option<ProducerBatch>, (ErrorCode, String)> {
    let mut span: Option<ProducerBatch> = None;
    for b in batches.iter().filter(|b| b.producer_id >= 0) {
        let count = b.last_offset_delta.saturating_add(1);
        match &mut span {
            None => {
                span = Some(ProducerBatch {
                    producer_id: b.producer_id,
                    epoch: b.producer_epoch,
                    first_sequence: b.base_sequence,
                    count,
                    transactional: b.is_transactional(),
                });
            }
            Some(s)
                if s.producer_id == b.producer_id
                    && s.epoch == b.producer_epoch
                    && ProducerBatch::next_sequence(s.last_sequence()) == b.base_sequence =>
            {
                s.count = s.count.saturating_add(count);
            }
            Some(s) => {
                return Err((
                    ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!(
                        "batches of producer {} in one request do not follow each other",
                        s.producer_id
                    ),
                ))
            }
        }
    }
    if span.is_some() && batches.iter().any(|b| b.producer_id < 0) {
        return Err((
            ErrorCode::INVALID_RECORD,
            "idempotent and plain batches mixed in one partition".into(),
        ));
    }
    Ok(span)
}

impl Task for ProduceTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        if self.response.is_none() {
            return self.start(ctx);
        }
        let Some(response) = self.response.as_mut() else {
            return Step::Silent;
        };
        for (((t, p), completion), moved) in self.sent.iter().zip(results).zip(&mut self.moved) {
            let topic = &mut response.responses[*t];
            let slot = &mut topic.partition_responses[*p];
            match completion {
                Outcome::Store(Completion::Append(Ok(a))) => {
                    moved.2 = true;
                    slot.base_offset = i64::try_from(a.base_offset).unwrap_or(i64::MAX);
                    slot.log_append_time_ms = a.log_append_time_ms.unwrap_or(-1);
                    slot.log_start_offset = i64::try_from(a.log_start).unwrap_or(i64::MAX);
                }
                Outcome::Store(Completion::Append(Err(e))) => {
                    let code = match (&e, e.error_code()) {
                        // The codes of a verification the coordinator refused, as Kafka's
                        // ReplicaManager answers them: retriable for a transaction
                        // completing (clients retry NOT_ENOUGH_REPLICAS without a
                        // metadata refresh), abortable for a partition not added, which
                        // producers before v11 know as INVALID_TXN_STATE.
                        (BackendError::Transaction { .. }, ErrorCode::CONCURRENT_TRANSACTIONS) => {
                            ErrorCode::NOT_ENOUGH_REPLICAS
                        }
                        (BackendError::Transaction { .. }, ErrorCode::INVALID_TXN_STATE)
                            if version >= 11 =>
                        {
                            ErrorCode::TRANSACTION_ABORTABLE
                        }
                        (_, code) => code,
                    };
                    tracing::debug!(topic = %topic.name, partition = slot.index, error = %e, "append failed");
                    *slot = failed(slot.index, code, Some(e.to_string()), version);
                    if code == ErrorCode::INVALID_RECORD && version >= 8 {
                        slot.record_errors = vec![BatchIndexAndErrorMessage {
                            batch_index: 0,
                            batch_index_error_message: Some(kstr(&e.to_string())),
                            ..Default::default()
                        }];
                    }
                }
                other => {
                    *slot = failed(
                        slot.index,
                        ErrorCode::UNKNOWN_SERVER_ERROR,
                        Some(format!("unexpected completion {other:?}")),
                        version,
                    );
                }
            }
        }
        self.finish()
    }

    fn report(&self, traffic: &mut Traffic<'_>) {
        for (&(t, _), &(records, bytes, appended)) in self.sent.iter().zip(&self.moved) {
            if appended {
                traffic.produced(&self.req.topic_data[t].name, records, bytes);
            }
        }
        for (codec, &n) in self.codecs.iter().enumerate() {
            traffic.batches(codec, n);
        }
    }

    fn timed_out(&mut self, ctx: &Ctx<'_>) -> Step {
        if let Some(response) = self.response.as_mut() {
            for (t, p) in &self.sent {
                let slot = &mut response.responses[*t].partition_responses[*p];
                *slot = failed(
                    slot.index,
                    ErrorCode::REQUEST_TIMED_OUT,
                    Some("the backend did not acknowledge the append in time".into()),
                    ctx.version,
                );
            }
        }
        self.finish()
    }
}

impl ProduceTask {
    /// Whether a partition's first batch is transactional (what Kafka looks at, before
    /// decoding anything): its attributes, of a v2 batch, have the transactional bit.
    fn has_transactional_records(&self) -> bool {
        self.req
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .filter_map(|p| p.records.as_deref())
            .any(|r| r.len() >= 23 && r[16] == 2 && r[22] & 0x10 != 0)
    }

    fn start(&mut self, ctx: &Ctx<'_>) -> Step {
        let version = ctx.version;
        let refuse_all = if !matches!(self.req.acks, -1..=1) {
            Some((
                ErrorCode::INVALID_REQUIRED_ACKS,
                format!("acks must be -1, 0 or 1, not {}", self.req.acks),
            ))
        } else if self.req.transactional_id.is_some() && !ctx.config.transactions {
            Some((
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "the gateway's backend does not serve transactions".to_string(),
            ))
        } else if self.req.transactional_id.is_none() && self.has_transactional_records() {
            // Kafka refuses the whole request, as unauthorized for the transactional id it
            // does not name.
            Some((
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "transactional batches need the request's transactional id".to_string(),
            ))
        } else if self
            .req
            .transactional_id
            .as_ref()
            .is_some_and(|id| !ctx.allows(Action::WriteTransactionalId(id)))
            && self.has_transactional_records()
        {
            // Kafka checks WRITE on the transactional id only for transactional batches.
            Some((
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "not authorized to write for the transactional id".to_string(),
            ))
        } else {
            None
        };
        let mut budget = DecompressionBudget::new(ctx.config.max_decompressed_bytes);
        let mut commands = Vec::new();
        let mut response = ProduceResponse::default();
        for (t, topic) in self.req.topic_data.iter().enumerate() {
            let mut out = TopicProduceResponse {
                name: topic.name.clone(),
                ..TopicProduceResponse::default()
            };
            for (p, part) in topic.partition_data.iter().enumerate() {
                let result = if let Some((code, why)) = &refuse_all {
                    Err((*code, why.clone()))
                } else if !ctx.allows(Action::Send(&topic.name)) {
                    Err((
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                        format!("not allowed to write to {}", topic.name),
                    ))
                } else if let Some(partition) = partition_index(part.index) {
                    messages(
                        part.records.as_ref(),
                        &mut budget,
                        &mut self.codecs,
                        self.req.transactional_id.is_some(),
                    )
                    .map(|m| (partition, m))
                } else {
                    Err((
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("no partition {}", part.index),
                    ))
                };
                match result {
                    Ok((partition, (messages, producer))) => {
                        let bytes = part.records.as_ref().map_or(0, Bytes::len);
                        self.moved
                            .push((messages.len() as u64, bytes as u64, false));
                        out.partition_responses.push(PartitionProduceResponse {
                            index: part.index,
                            ..PartitionProduceResponse::default()
                        });
                        let transactional = producer.is_some_and(|p| p.transactional);
                        let append = Command::Append {
                            topic: topic.name.to_string(),
                            partition,
                            messages,
                            largest_batch: part.records.as_ref().map_or(0, largest_batch),
                            producer,
                        };
                        commands.push(match &self.req.transactional_id {
                            Some(id) if transactional => Work::TxnAppend {
                                transactional_id: txn_key(ctx, id),
                                append,
                            },
                            _ => Work::Store(append),
                        });
                        self.sent.push((t, p));
                    }
                    Err((code, why)) => {
                        tracing::debug!(topic = %topic.name, partition = part.index, code = code.name(), why, "produce refused");
                        out.partition_responses
                            .push(failed(part.index, code, Some(why), version));
                    }
                }
            }
            response.responses.push(out);
        }
        self.response = Some(response);
        if commands.is_empty() {
            return self.finish();
        }
        Step::Run(commands)
    }
}
