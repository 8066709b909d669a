//! Translation between the backend vocabulary and Iggy's wire types.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::backend::{BackendError, ProducerBatch, TopicConfig, TopicInfo, TopicRef};
use iggy_kafka_core::mapping::{kafka_timestamp_ms, move_origin_timestamp};
use iggy_kafka_core::message::{
    BareBlock, HeaderValue, IggyMessage, MessageList, Messages, MessagesBuilder,
};
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_iggy_client::protocol::batch::{
    BatchHeader, BATCH_HEADER_SIZE, BATCH_MESSAGE_HEADER_SIZE, MAX_TIMESTAMP_DELTA_MICROS,
};
use iggy_kafka_iggy_client::protocol::primitives::user_headers::{
    encode_user_headers, validate_user_headers, WireUserHeaderIterator,
};
use iggy_kafka_iggy_client::protocol::responses::messages::poll_messages::{
    PollMessagesResponse, PolledBatchesIterator, PolledMessageView,
};
use iggy_kafka_iggy_client::protocol::responses::streams::get_stream::TopicHeader;
use iggy_kafka_iggy_client::protocol::{WireEncode, WireIdentifier, WireOptions, WirePartitioning};
use iggy_kafka_iggy_client::{merge, Failure};
use twox_hash::XxHash3_64;

use crate::timestamps::{larger, Stamped};

// Iggy header kinds (Iggy's `HeaderKind::as_code`).
const RAW: u8 = 1;
const STRING: u8 = 2;
const BOOL: u8 = 3;
const INT8: u8 = 4;
const INT16: u8 = 5;
const INT32: u8 = 6;
const INT64: u8 = 7;
const INT128: u8 = 8;
const UINT8: u8 = 9;
const UINT16: u8 = 10;
const UINT32: u8 = 11;
const UINT64: u8 = 12;
const UINT128: u8 = 13;
const FLOAT32: u8 = 14;
const FLOAT64: u8 = 15;

/// Iggy's value for "no limit" in `message_expiry` and `max_topic_size`.
pub(crate) const UNLIMITED: u64 = u64::MAX;

/// Iggy error codes this backend tells apart (Iggy's `IggyError::as_code`).
pub(crate) mod code {
    pub(crate) const RESOURCE_NOT_FOUND: u32 = 20;
    pub(crate) const UNAUTHENTICATED: u32 = 40;
    pub(crate) const UNAUTHORIZED: u32 = 41;
    pub(crate) const INVALID_CREDENTIALS: u32 = 42;
    pub(crate) const STREAM_ID_NOT_FOUND: u32 = 1009;
    pub(crate) const STREAM_NAME_NOT_FOUND: u32 = 1010;
    pub(crate) const STREAM_NAME_ALREADY_EXISTS: u32 = 1012;
    pub(crate) const TOPIC_ID_NOT_FOUND: u32 = 2010;
    pub(crate) const TOPIC_NAME_NOT_FOUND: u32 = 2011;
    pub(crate) const TOPIC_NAME_ALREADY_EXISTS: u32 = 2013;
    pub(crate) const INVALID_TOPIC_NAME: u32 = 2014;
    pub(crate) const TOO_MANY_PARTITIONS: u32 = 2015;
    pub(crate) const INVALID_PARTITIONS_COUNT: u32 = 2019;
    pub(crate) const PARTITION_NOT_FOUND: u32 = 3007;
    pub(crate) const CONSUMER_OFFSET_NOT_FOUND: u32 = 3021;
    pub(crate) const INVALID_OFFSET: u32 = 4100;
    pub(crate) const TOO_BIG_USER_HEADERS: u32 = 4017;
    pub(crate) const TOO_BIG_MESSAGE_PAYLOAD: u32 = 4022;
    pub(crate) const TOO_MANY_MESSAGES: u32 = 4023;
    pub(crate) const EMPTY_MESSAGE_PAYLOAD: u32 = 4024;
    pub(crate) const INVALID_MESSAGE_PAYLOAD_LENGTH: u32 = 4025;
    pub(crate) const INVALID_TOPIC_SIZE: u32 = 1019;
    pub(crate) const INVALID_SEGMENT_SIZE: u32 = 4002;
    pub(crate) const UNSUPPORTED_OPTION_KEY: u32 = 4041;
    pub(crate) const INVALID_OPTION_VALUE: u32 = 4042;
}

/// What an Iggy failure means to a Kafka client (documented in `docs/MAPPING.md`).
pub(crate) fn backend_error(failure: Failure, topic: &str, partition: Option<u32>) -> BackendError {
    let code = match failure {
        Failure::Lost(e) => return BackendError::Unavailable(format!("iggy: {e}")),
        // The lanes send such a request again elsewhere; should one surface, it is retriable.
        Failure::NotAdmitted => return BackendError::Unavailable(format!("iggy: {failure}")),
        Failure::TooLarge(_) => return BackendError::Other(format!("{failure}")),
        Failure::Status(code) => code,
    };
    match code {
        // The partition plane answers "no such resource" for a missing topic or partition;
        // the backend tells them apart (`Catalog::refine`).
        code::RESOURCE_NOT_FOUND
        | code::STREAM_ID_NOT_FOUND
        | code::STREAM_NAME_NOT_FOUND
        | code::TOPIC_ID_NOT_FOUND
        | code::TOPIC_NAME_NOT_FOUND => BackendError::UnknownTopic(TopicRef::Name(topic.into())),
        code::PARTITION_NOT_FOUND => BackendError::UnknownPartition {
            topic: topic.into(),
            partition: partition.unwrap_or(0),
        },
        code::TOPIC_NAME_ALREADY_EXISTS => BackendError::TopicExists(topic.into()),
        code::INVALID_TOPIC_NAME => BackendError::InvalidTopic(topic.into()),
        code::TOO_MANY_PARTITIONS | code::INVALID_PARTITIONS_COUNT => {
            BackendError::InvalidPartitions(format!("iggy refused the partition count ({code})"))
        }
        code::UNAUTHENTICATED | code::UNAUTHORIZED | code::INVALID_CREDENTIALS => {
            BackendError::Unauthorized(format!("iggy error {code} on {topic}"))
        }
        code::TOO_BIG_USER_HEADERS
        | code::TOO_BIG_MESSAGE_PAYLOAD
        | code::TOO_MANY_MESSAGES
        | code::EMPTY_MESSAGE_PAYLOAD
        | code::INVALID_MESSAGE_PAYLOAD_LENGTH => {
            BackendError::InvalidMessage(format!("iggy refused the messages (error {code})"))
        }
        code::INVALID_TOPIC_SIZE
        | code::INVALID_SEGMENT_SIZE
        | code::UNSUPPORTED_OPTION_KEY
        | code::INVALID_OPTION_VALUE => {
            BackendError::InvalidConfig(format!("iggy refused the topic's options (error {code})"))
        }
        other => BackendError::Other(format!("iggy error {other}")),
    }
}

/// An Iggy name identifier (Kafka topic names are at most 249 bytes, inside Iggy's 255).
pub(crate) fn named(name: &str) -> Result<WireIdentifier, BackendError> {
    WireIdentifier::named(name).map_err(|_| BackendError::InvalidTopic(name.into()))
}

/// A header value's Iggy kind and bytes; fixed-size values are written to `scratch`.
fn header_entry<'a>(value: &'a HeaderValue, scratch: &'a mut [u8; 8]) -> (u8, Cow<'a, [u8]>) {
    let (kind, len) = match value {
        HeaderValue::Raw(b) => return (RAW, Cow::Borrowed(&b[..])),
        HeaderValue::String(s) => return (STRING, Cow::Borrowed(s.as_bytes())),
        HeaderValue::Bool(b) => {
            scratch[0] = u8::from(*b);
            (BOOL, 1)
        }
        HeaderValue::Uint8(v) => {
            scratch[0] = *v;
            (UINT8, 1)
        }
        HeaderValue::Int64(v) => {
            *scratch = v.to_le_bytes();
            (INT64, 8)
        }
        HeaderValue::Uint64(v) => {
            *scratch = v.to_le_bytes();
            (UINT64, 8)
        }
        HeaderValue::Float64(v) => {
            *scratch = v.to_le_bytes();
            (FLOAT64, 8)
        }
        other => return (RAW, Cow::Owned(other.to_kafka().to_vec())),
    };
    (kind, Cow::Borrowed(&scratch[..len]))
}

/// A message's user headers in Iggy's TLV form by Iggy's own encoder, or `None` without any:
/// part of the reference the tests and the fuzzer hold `send_messages` to.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_headers(m: &IggyMessage) -> Option<Bytes> {
    if m.headers.is_empty() {
        return None;
    }
    let mut buf = BytesMut::new();
    let mut scratch = [0u8; 8];
    for (key, value) in &m.headers {
        let (kind, bytes) = header_entry(value, &mut scratch);
        encode_user_headers(&[(STRING, key.as_bytes(), kind, &bytes)], &mut buf);
    }
    Some(buf.freeze())
}

fn le<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}

/// A header value as the mapping knows it; Iggy kinds it has no variant for become text.
fn header_value(kind: u8, v: &[u8]) -> HeaderValue {
    let text = |s: String| HeaderValue::String(s);
    let parsed = match kind {
        RAW => Some(HeaderValue::Raw(Bytes::copy_from_slice(v))),
        STRING => std::str::from_utf8(v)
            .ok()
            .map(|s| HeaderValue::String(s.to_owned())),
        BOOL => v.first().map(|b| HeaderValue::Bool(*b != 0)),
        UINT8 => v.first().map(|b| HeaderValue::Uint8(*b)),
        INT64 => le(v).map(|b| HeaderValue::Int64(i64::from_le_bytes(b))),
        UINT64 => le(v).map(|b| HeaderValue::Uint64(u64::from_le_bytes(b))),
        FLOAT64 => le(v).map(|b| HeaderValue::Float64(f64::from_le_bytes(b))),
        INT8 => v.first().map(|b| text(i8::from_le_bytes([*b]).to_string())),
        INT16 => le(v).map(|b| text(i16::from_le_bytes(b).to_string())),
        INT32 => le(v).map(|b| text(i32::from_le_bytes(b).to_string())),
        INT128 => le(v).map(|b| text(i128::from_le_bytes(b).to_string())),
        UINT16 => le(v).map(|b| text(u16::from_le_bytes(b).to_string())),
        UINT32 => le(v).map(|b| text(u32::from_le_bytes(b).to_string())),
        UINT128 => le(v).map(|b| text(u128::from_le_bytes(b).to_string())),
        FLOAT32 => le(v).map(|b| text(f32::from_le_bytes(b).to_string())),
        _ => None,
    };
    parsed.unwrap_or_else(|| HeaderValue::Raw(Bytes::copy_from_slice(v)))
}

fn header_key(kind: u8, k: &[u8]) -> String {
    match header_value(kind, k) {
        HeaderValue::Raw(b) => String::from_utf8_lossy(&b).into_owned(),
        HeaderValue::String(s) => s,
        HeaderValue::Bool(b) => b.to_string(),
        HeaderValue::Uint8(v) => v.to_string(),
        HeaderValue::Int64(v) => v.to_string(),
        HeaderValue::Uint64(v) => v.to_string(),
        HeaderValue::Float64(v) => v.to_string(),
        other => String::from_utf8_lossy(&other.to_kafka()).into_owned(),
    }
}

/// Decodes Iggy user headers; `None` when they are malformed.
pub(crate) fn decode_headers(raw: &[u8]) -> Option<Vec<(String, HeaderValue)>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    validate_user_headers(raw).ok()?;
    Some(
        WireUserHeaderIterator::new(raw)
            .map(|e| {
                (
                    header_key(e.key_kind.0, e.key),
                    header_value(e.value_kind.0, e.value),
                )
            })
            .collect(),
    )
}

/// Size of a message's frame header in Iggy's batch (checksum, id, offset and timestamp
/// deltas, headers and payload lengths, reserved).
const FRAME_HEADER: usize = BATCH_MESSAGE_HEADER_SIZE;

/// The body of a `SendMessages` to one partition, the messages numbered by `ids`.
///
/// The same bytes as Iggy's `SendMessagesEncoder` (a test holds them equal), written in one
/// pass into a buffer of the exact size: the encoder writes each field with a call of its
/// own and wants the messages restated as `RawMessage`s with their headers encoded apart,
/// which made it a quarter of the gateway's CPU on the produce path.
pub(crate) fn send_messages(
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    partition: u32,
    messages: &MessageList,
    ids: Ids,
) -> Result<Bytes, BackendError> {
    let invalid =
        |what: String| BackendError::InvalidMessage(format!("cannot encode for iggy: {what}"));
    if messages.is_empty() {
        return Err(invalid("an empty batch".into()));
    }
    let partitioning = WirePartitioning::PartitionId(partition);
    let metadata = stream.encoded_size() + topic.encoded_size() + partitioning.encoded_size() + 4;
    let mut frames = 0usize;
    let (mut origin, mut latest) = (u64::MAX, 0);
    for m in messages.iter() {
        frames += FRAME_HEADER + m.payload.len() + headers_len(m.headers);
        origin = origin.min(m.origin_timestamp_us);
        latest = latest.max(m.origin_timestamp_us);
    }
    if latest - origin > MAX_TIMESTAMP_DELTA_MICROS {
        return send_messages(stream, topic, partition, &fit_timestamps(messages), ids);
    }
    let batch_length = BATCH_HEADER_SIZE + frames;
    let count = u32::try_from(messages.len()).map_err(|_| invalid("too many messages".into()))?;
    if u32::try_from(batch_length).is_err() {
        return Err(invalid(format!("a batch of {batch_length} bytes")));
    }

    let mut buf = BytesMut::with_capacity(4 + metadata + batch_length);
    #[allow(clippy::cast_possible_truncation)] // a few identifiers' bytes
    buf.put_u32_le(metadata as u32);
    stream.encode(&mut buf);
    topic.encode(&mut buf);
    partitioning.encode(&mut buf);
    buf.put_u32_le(count);
    let header_at = buf.len();
    let blob_at = header_at + BATCH_HEADER_SIZE;
    // The batch header needs the checksum of what follows: a placeholder until then.
    buf.put_bytes(0, BATCH_HEADER_SIZE);
    let mut scratch = [0u8; 8];
    let mut checksums = Vec::with_capacity(messages.len() * 8);
    for (index, m) in messages.iter().enumerate() {
        let delta = m.origin_timestamp_us - origin;
        let delta = u32::try_from(delta)
            .map_err(|_| invalid(format!("timestamps {delta} µs apart in one batch")))?;
        let payload =
            u32::try_from(m.payload.len()).map_err(|_| invalid("a payload past 4 GiB".into()))?;
        // Each frame is written in order and whole; its headers' length and its checksum,
        // which covers the rest of it, are filled in once the rest is written.
        let mut head = [0u8; FRAME_HEADER];
        head[8..24].copy_from_slice(&ids.of(index).to_le_bytes());
        #[allow(clippy::cast_possible_truncation)] // `count` fits in a u32
        head[24..28].copy_from_slice(&(index as u32).to_le_bytes());
        head[28..32].copy_from_slice(&delta.to_le_bytes());
        head[36..40].copy_from_slice(&payload.to_le_bytes());
        let at = buf.len();
        buf.put_slice(&head);
        buf.put_slice(m.payload);
        let headers_at = buf.len();
        for (key, value) in m.headers {
            let (kind, bytes) = header_entry(value, &mut scratch);
            put_header_part(&mut buf, STRING, key.as_bytes());
            put_header_part(&mut buf, kind, &bytes);
        }
        #[allow(clippy::cast_possible_truncation)] // within the batch's length, checked above
        let headers = (buf.len() - headers_at) as u32;
        buf[at + 32..at + 36].copy_from_slice(&headers.to_le_bytes());
        let checksum = XxHash3_64::oneshot(&buf[at + 8..]).to_le_bytes();
        buf[at..at + 8].copy_from_slice(&checksum);
        checksums.extend_from_slice(&checksum);
    }
    debug_assert_eq!(
        buf.len(),
        blob_at + frames,
        "an append's size was miscounted"
    );
    let mut header = BatchHeader::new(0, origin, batch_length as u64, count);
    header.batch_checksum = merge::batch_checksum(&header, &checksums);
    header.encode_into(&mut buf[header_at..blob_at]);
    Ok(buf.freeze())
}

/// Iggy keeps a message's producer timestamp as a 32-bit µs delta from its append's
/// earliest, so one append spans at most about 71.6 minutes of them, where a Kafka batch may
/// span any time (backfilled, mirrored or replayed records; records without a timestamp
/// beside others). The messages in the window that ends at the batch's latest timestamp keep
/// theirs; the others take the window's earliest as their origin timestamp and keep their
/// Kafka timestamp in a header ([`move_origin_timestamp`]), so the append stays whole.
pub(crate) fn fit_timestamps(messages: &MessageList) -> MessageList {
    let origins = || messages.iter().map(|m| m.origin_timestamp_us);
    let latest = origins().max().unwrap_or(0);
    let floor = latest.saturating_sub(MAX_TIMESTAMP_DELTA_MICROS);
    let earliest = origins().filter(|&o| o >= floor).min().unwrap_or(latest);
    messages
        .clone()
        .into_messages()
        .into_iter()
        .map(|mut m| {
            if m.origin_timestamp_us < floor {
                move_origin_timestamp(&mut m, earliest);
            }
            m
        })
        .collect()
}

/// The bytes Iggy's own `SendMessagesEncoder` writes for the same messages: the reference
/// the tests and the fuzzer hold [`send_messages`] to.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn reference_send_messages(
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    partition: u32,
    messages: &[IggyMessage],
    ids: Ids,
) -> Result<Bytes, iggy_kafka_iggy_client::protocol::WireError> {
    use iggy_kafka_iggy_client::protocol::requests::messages::send_messages::{
        RawMessage, SendMessagesEncoder,
    };
    let headers: Vec<Option<Bytes>> = messages.iter().map(encode_headers).collect();
    let raw: Vec<RawMessage<'_>> = messages
        .iter()
        .zip(&headers)
        .enumerate()
        .map(|(i, (m, h))| RawMessage {
            id: ids.of(i),
            origin_timestamp: m.origin_timestamp_us,
            headers: h.as_deref(),
            payload: &m.payload,
        })
        .collect();
    let partitioning = WirePartitioning::PartitionId(partition);
    let mut buf = BytesMut::new();
    SendMessagesEncoder::encode(&mut buf, stream, topic, &partitioning, &raw)?;
    Ok(buf.freeze())
}

/// Writes one half of an Iggy user header (its kind, length and bytes), as
/// `encode_user_headers` does.
fn put_header_part(buf: &mut BytesMut, kind: u8, bytes: &[u8]) {
    buf.put_u8(kind);
    #[allow(clippy::cast_possible_truncation)] // header parts are at most 255 bytes
    buf.put_u32_le(bytes.len() as u32);
    buf.put_slice(bytes);
}

/// The size of a message's user headers in Iggy's form.
fn headers_len(headers: &[(String, HeaderValue)]) -> usize {
    let mut scratch = [0u8; 8];
    headers
        .iter()
        .map(|(key, value)| 10 + key.len() + header_entry(value, &mut scratch).1.len())
        .sum()
}

fn poll_reply_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Other(format!("iggy poll reply: {e}"))
}

/// Decodes a `PollMessages` reply, its messages from the batch that holds `from` on. Iggy's
/// decoder adds each message's offset and timestamp deltas (32 bits) to its batch's base
/// unchecked, so a batch whose base lies within 2^32 of the top of the range is refused
/// here first: a corrupt reply is an error, never an overflow (a panic in a checked build,
/// a wrong offset in a release one).
///
/// A reply sent ahead is read by several reads in turn, each from where the last one ended:
/// the batches wholly before `from` (those followed by a batch that starts at or before it,
/// while base offsets rise) are stepped over by their headers instead of message by message.
fn poll_reply(body: &[u8], from: u64) -> Result<PollMessagesResponse<'_>, BackendError> {
    const TOP: u64 = u64::MAX - u32::MAX as u64;
    let mut at = POLL_REPLY_HEADER;
    let mut start = POLL_REPLY_HEADER;
    let mut ordered = true;
    let mut last_base = None;
    while let Some(rest) = body.get(at..).filter(|r| !r.is_empty()) {
        // What does not decode here is left to the decoder's own errors.
        let Ok(header) = BatchHeader::decode(rest) else {
            break;
        };
        if header.base_offset > TOP || header.origin_timestamp > TOP {
            return Err(poll_reply_error(format!(
                "a batch at offset {} with origin timestamp {}: out of range",
                header.base_offset, header.origin_timestamp
            )));
        }
        ordered &= last_base.is_none_or(|b| header.base_offset > b);
        last_base = Some(header.base_offset);
        if ordered && header.base_offset <= from {
            start = at;
        }
        match usize::try_from(header.batch_length) {
            Ok(len) if len > 0 => at = at.saturating_add(len),
            _ => break,
        }
    }
    let mut reply = PollMessagesResponse::decode(body).map_err(poll_reply_error)?;
    if let Some(batches) = body.get(start..) {
        reply.messages = PolledBatchesIterator::new(batches);
    }
    Ok(reply)
}

/// The size of a `PollMessages` reply's header, before its batches.
const POLL_REPLY_HEADER: usize = 16;

fn polled_headers(raw: &[u8]) -> Result<Vec<(String, HeaderValue)>, BackendError> {
    decode_headers(raw)
        .ok_or_else(|| BackendError::Other("iggy message with malformed headers".into()))
}

/// The messages of a `PollMessages` reply, from `from` on, within `max_bytes` (but at least
/// one, if `at_least_one`), the partition's current (last) offset, and the messages' size
/// in all. The payloads share `body`'s memory.
///
/// Bare messages (no headers: what Kafka's keyless, header-less records map to) at
/// consecutive offsets, the common case, are held as ranges of `body` (a [`BareBlock`]),
/// without a reference count or an [`IggyMessage`] per message. From the first message
/// taken that is not, those read so far are made into [`IggyMessage`]s and the reading goes
/// on message by message: the same messages at the same offsets as reading it all so.
pub(crate) fn polled(
    body: &Bytes,
    from: u64,
    max_bytes: usize,
    max_messages: usize,
    at_least_one: bool,
) -> Result<(Messages, u64, usize), BackendError> {
    let reply = poll_reply(body, from)?;
    let current = reply.header.current_offset;
    // Room for what the reply says it holds, as far as its bytes can hold it, and no more
    // than this read can take (a message counts at least 16 bytes against `max_bytes`, and
    // none lies past the current offset): a reply sent ahead is read a little at a time.
    let within_read = (max_bytes / 16)
        .saturating_add(1)
        .min(usize::try_from(current.saturating_sub(from).saturating_add(1)).unwrap_or(usize::MAX));
    let room = (reply.header.messages_count as usize)
        .min(max_messages)
        .min(body.len() / FRAME_HEADER)
        .min(within_read);
    let mut views = reply.messages;
    let mut run = BareRun::default();
    let mut bytes = 0usize;
    // Bare messages at consecutive offsets, as far as they go: what stops them is left to
    // the reading below, which counts a message's headers in its size.
    let mut other = None;
    for view in views.by_ref() {
        let view = view.map_err(poll_reply_error)?;
        if view.offset < from {
            continue;
        }
        if !view.user_headers.is_empty() || !run.continued_by(view.offset) {
            other = Some(view);
            break;
        }
        // What `message_size` counts for a message without headers.
        let size = view.payload.len() + 16;
        let first = run.list.is_empty() && at_least_one;
        if !first && (bytes + size > max_bytes || run.list.len() >= max_messages) {
            break;
        }
        bytes += size;
        run.push(body, &view, room);
    }
    let Some(other) = other else {
        return Ok((run.finish()?, current, bytes));
    };
    // Message by message, as IggyMessages from the first one taken here on.
    let mut out: Option<MessagesBuilder> = None;
    for view in std::iter::once(Ok(other)).chain(views) {
        let view = view.map_err(poll_reply_error)?;
        if view.offset < from {
            continue;
        }
        let message = IggyMessage {
            payload: body.slice_ref(view.payload),
            origin_timestamp_us: view.origin_timestamp,
            timestamp_us: view.timestamp,
            headers: polled_headers(view.user_headers)?,
        };
        let size = iggy_kafka_core::message::message_size(&message);
        let taken = out.as_ref().map_or(run.list.len(), MessagesBuilder::len);
        let first = taken == 0 && at_least_one;
        if !first && (bytes + size > max_bytes || taken >= max_messages) {
            break;
        }
        bytes += size;
        out.get_or_insert_with(|| std::mem::take(&mut run).into_builder(room))
            .push(view.offset, message);
    }
    let messages = match out {
        Some(out) => out.finish(),
        None => run.finish()?,
    };
    Ok((messages, current, bytes))
}

/// Bare messages of a poll reply at consecutive offsets from `first`, each with the time it
/// was appended.
#[derive(Default)]
struct BareRun {
    first: Option<u64>,
    list: MessageList,
    appended: Vec<u64>,
}

impl BareRun {
    /// Whether a message at `offset` comes next. Nothing comes after `u64::MAX`: a message
    /// there starts a run of its own, as in [`MessagesBuilder`].
    fn continued_by(&self, offset: u64) -> bool {
        self.first
            .is_none_or(|f| f.checked_add(self.list.len() as u64) == Some(offset))
    }

    fn push(&mut self, body: &Bytes, view: &PolledMessageView<'_>, room: usize) {
        if self.first.is_none() {
            // Room only once the reply is known to start bare: a keyed topic's replies
            // turn to whole messages at their first.
            self.first = Some(view.offset);
            self.list.reserve(room);
            self.appended.reserve(room);
        }
        self.list
            .push_bare(body, view.payload, view.origin_timestamp);
        self.appended.push(view.timestamp);
    }

    /// The messages as [`IggyMessage`]s, in a builder with `room` for more.
    fn into_builder(self, room: usize) -> MessagesBuilder {
        let mut out = MessagesBuilder::with_capacity(room.max(self.list.len()));
        if let Some(first) = self.first {
            let messages = self.list.into_messages().into_iter().zip(self.appended);
            // Each offset was checked to follow the one before as it was taken.
            for (i, (mut m, appended)) in messages.enumerate() {
                m.timestamp_us = appended;
                out.push(first + i as u64, m);
            }
        }
        out
    }

    fn finish(self) -> Result<Messages, BackendError> {
        if !self.list.is_bare() {
            // `push_bare` copied a payload outside `body` into a message of its own, which
            // only a malformed view could give.
            return Ok(self.into_builder(0).finish());
        }
        let mut out = Messages::new();
        if let Some(first) = self.first {
            // Never refused: the list is bare, with a time for each message.
            let block = BareBlock::with_times(self.list, self.appended)
                .map_err(|_| poll_reply_error("bare messages held otherwise"))?;
            out.push_bare(first, &Arc::new(block), 0..usize::MAX);
        }
        Ok(out)
    }
}

/// The top 16 bits of the ids of an idempotent producer's messages, and the mark of the
/// first message of a batch among them. Other messages' ids (a run's seed shifted right,
/// and a counter) never have the top bit set.
const PRODUCER_TAG: u128 = 0xA500 << 112;
const BATCH_START: u128 = 0x0080 << 112;
const TAG_MASK: u128 = 0xFF7F << 112;

/// How the messages of one append are numbered: from `first`, one more each, the first one
/// also carrying `start`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    first: u128,
    start: u128,
}

impl Ids {
    /// Plain messages, numbered from `first`.
    pub(crate) fn counted(first: u128) -> Self {
        Self { first, start: 0 }
    }

    /// An idempotent producer's batch: each message's id holds the producer id, epoch and
    /// the record's sequence, and the first one the batch-start mark, so that the batch can
    /// be found (its reply lost) and the producer's recent batches read back (after a
    /// gateway restart). Sequences stay below 2^32 (a first sequence below 2^31 and fewer
    /// than 2^31 records), so numbering never carries into the epoch.
    pub(crate) fn producer(pb: &ProducerBatch) -> Self {
        Self {
            first: PRODUCER_TAG
                | (u128::from(pb.producer_id.cast_unsigned()) << 48)
                | (u128::from(pb.epoch.cast_unsigned()) << 32)
                | u128::from(pb.first_sequence.cast_unsigned()),
            start: BATCH_START,
        }
    }

    /// The id of the message at `index`.
    pub(crate) fn of(self, index: usize) -> u128 {
        let id = self.first.wrapping_add(index as u128);
        if index == 0 {
            id | self.start
        } else {
            id
        }
    }
}

/// An idempotent producer's message, read back from its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProducerMessage {
    producer_id: i64,
    epoch: i16,
    /// The record's sequence before wrapping (may pass `i32::MAX` within a batch).
    sequence: u32,
    starts_batch: bool,
}

fn producer_message(id: u128) -> Option<ProducerMessage> {
    if id & TAG_MASK != PRODUCER_TAG {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // fields cut out of the id
    Some(ProducerMessage {
        producer_id: ((id >> 48) as u64).cast_signed(),
        epoch: ((id >> 32) as u16).cast_signed(),
        sequence: id as u32,
        starts_batch: id & BATCH_START != 0,
    })
}

/// The idempotent batches whole in a `PollMessages` reply, in order, each with its first
/// offset. A batch cut off by the reply's start is left out, and so is every batch of the
/// producer whose batch the reply's end may cut.
pub(crate) fn producer_batches(body: &[u8]) -> Result<Vec<(ProducerBatch, u64)>, BackendError> {
    /// The batch being read: its first message, that message's offset, and how many of its
    /// messages (consecutive offsets and sequences) were read.
    struct Open {
        first: ProducerMessage,
        base: u64,
        len: u32,
    }
    impl Open {
        fn continued_by(&self, m: &ProducerMessage, offset: u64) -> bool {
            !m.starts_batch
                && (m.producer_id, m.epoch) == (self.first.producer_id, self.first.epoch)
                && Some(m.sequence) == self.first.sequence.checked_add(self.len)
                && Some(offset) == self.base.checked_add(u64::from(self.len))
        }
        fn closed(&self) -> (ProducerBatch, u64) {
            let batch = ProducerBatch {
                producer_id: self.first.producer_id,
                epoch: self.first.epoch,
                first_sequence: self.first.sequence.cast_signed(),
                count: self.len.cast_signed(),
                transactional: false,
            };
            (batch, self.base)
        }
    }

    let reply = poll_reply(body, 0)?;
    let total = reply.header.messages_count;
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    let (mut seen, mut last_offset) = (0u32, None);
    for view in reply.messages {
        let view = view.map_err(poll_reply_error)?;
        seen += 1;
        last_offset = Some(view.offset);
        let m = producer_message(view.id);
        match (open.as_mut(), &m) {
            (Some(o), Some(m)) if o.continued_by(m, view.offset) => o.len += 1,
            _ => {
                out.extend(open.take().map(|o| o.closed()));
                open = m.filter(|m| m.starts_batch).map(|first| Open {
                    first,
                    base: view.offset,
                    len: 1,
                });
            }
        }
    }
    // The last batch may go on past the reply: it is whole only if the partition ends with
    // it. If it may not be, its producer is left out altogether: its earlier batches would
    // tell a last sequence that is no longer the last.
    if let Some(o) = open {
        if seen == total && last_offset == Some(reply.header.current_offset) {
            out.push(o.closed());
        } else {
            out.retain(|(b, _)| b.producer_id != o.first.producer_id);
        }
    }
    Ok(out)
}

/// Where a `PollMessages` reply holds the message numbered `id`, the last offset it holds
/// (`None` for no messages), and the partition's last offset on the node that answered
/// (Iggy's `current_offset`, where its reads stop: what it has committed).
pub(crate) fn find_message(
    body: &[u8],
    id: u128,
) -> Result<(Option<u64>, Option<u64>, u64), BackendError> {
    let reply = poll_reply(body, 0)?;
    let end = reply.header.current_offset;
    let mut last = None;
    for view in reply.messages {
        let view = view.map_err(poll_reply_error)?;
        if view.id == id {
            return Ok((Some(view.offset), Some(view.offset), end));
        }
        last = Some(view.offset);
    }
    Ok((None, last, end))
}

/// The offset and Kafka timestamp of each message of a `PollMessages` reply, in order.
fn stamped(
    body: &[u8],
) -> Result<impl Iterator<Item = Result<Stamped, BackendError>> + '_, BackendError> {
    let reply = poll_reply(body, 0)?;
    Ok(reply.messages.map(|view| {
        let view = view.map_err(poll_reply_error)?;
        let headers = polled_headers(view.user_headers)?;
        let ts = kafka_timestamp_ms(&IggyMessage {
            payload: Bytes::new(),
            origin_timestamp_us: view.origin_timestamp,
            timestamp_us: view.timestamp,
            headers,
        });
        Ok((view.offset, ts))
    }))
}

/// What [`scan_timestamps`] found among a `PollMessages` reply's messages.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// The first message with the largest Kafka timestamp.
    pub(crate) max: Option<Stamped>,
    /// The first message whose Kafka timestamp is at least the one looked for.
    pub(crate) first_at_least: Option<Stamped>,
    /// The last offset the reply holds, whether or not it was looked at.
    pub(crate) last: Option<u64>,
}

/// Looks at the messages of a `PollMessages` reply at offsets `within` for the largest Kafka
/// timestamp and for the first one at least `at_least`.
pub(crate) fn scan_timestamps(
    body: &[u8],
    within: std::ops::Range<u64>,
    at_least: i64,
) -> Result<Scanned, BackendError> {
    let mut out = Scanned::default();
    for found in stamped(body)? {
        let (offset, ts) = found?;
        out.last = Some(offset);
        if !within.contains(&offset) {
            continue;
        }
        out.max = larger(out.max, Some((offset, ts)));
        if out.first_at_least.is_none() && ts >= at_least {
            out.first_at_least = Some((offset, ts));
        }
    }
    Ok(out)
}

/// Iggy's smallest and largest segment sizes, and the multiple a size must be.
const MIN_SEGMENT: u64 = 1 << 20;
const MAX_SEGMENT: u64 = 1 << 30;
const SEGMENT_ALIGN: u64 = 512;

/// What the gateway stores of an Iggy topic's storage options: the segment size and whether
/// every write is forced to disk. Iggy sets both when a topic is created, never after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Storage {
    pub(crate) segment_size: u64,
    pub(crate) enforce_fsync: bool,
    /// Messages Iggy may hold in memory, acknowledged, before it writes them out.
    pub(crate) messages_required_to_save: u32,
}

impl Storage {
    /// Iggy's defaults for a topic created without options; its segment size is also
    /// Kafka's default `segment.bytes`, so a topic at it reports no override.
    const DEFAULT: Self = Self {
        segment_size: 1 << 30,
        enforce_fsync: false,
        messages_required_to_save: 1024,
    };

    /// The effective options of an existing topic: those it was created with, then those
    /// the server derived for it.
    pub(crate) fn of(t: &TopicHeader) -> Self {
        let mut s = Self::DEFAULT;
        for entry in t.derived_options.iter().chain(t.options.iter()) {
            let value = option_number(entry.value_kind.0, entry.value);
            match (entry.key, value) {
                (b"segment_size", Some(v)) if v > 0 => s.segment_size = v,
                (b"enforce_fsync", Some(v)) => s.enforce_fsync = v != 0,
                (b"messages_required_to_save", Some(v)) if v > 0 => {
                    s.messages_required_to_save = u32::try_from(v).unwrap_or(u32::MAX);
                }
                _ => {}
            }
        }
        s
    }
}

/// An option's value as a number (booleans as 0 or 1); `None` for what is not one.
fn option_number(kind: u8, v: &[u8]) -> Option<u64> {
    match kind {
        BOOL => v.first().map(|b| u64::from(*b != 0)),
        UINT8 => v.first().map(|b| u64::from(*b)),
        UINT16 => le(v).map(|b| u64::from(u16::from_le_bytes(b))),
        UINT32 => le(v).map(|b| u64::from(u32::from_le_bytes(b))),
        UINT64 => le(v).map(u64::from_le_bytes),
        STRING => match std::str::from_utf8(v).ok()? {
            "true" => Some(1),
            "false" => Some(0),
            text => text.parse().ok(),
        },
        _ => None,
    }
}

/// Whom [`topic_options`] are for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Existing<'a> {
    /// A new topic; `write_through` has Iggy write each append to its segment before it
    /// acknowledges it (`messages_required_to_save` = 1). Iggy's default holds up to 1,024
    /// acknowledged messages in memory, which a crash of the server loses, where a Kafka
    /// broker has written every acknowledged record to its log.
    Creating { write_through: bool },
    /// A change to this topic.
    Altering(&'a TopicHeader),
}

/// Iggy topic options for a Kafka topic configuration over `partitions` partitions.
/// `flush.messages=1` adds an fsync per write.
///
/// # Errors
/// [`BackendError::InvalidConfig`] for what Iggy topics cannot honour.
pub(crate) fn topic_options(
    config: &TopicConfig,
    partitions: u32,
    existing: Existing<'_>,
) -> Result<WireOptions, BackendError> {
    let invalid = |why: String| Err(BackendError::InvalidConfig(why));
    if config.log_append_time == Some(true) {
        return invalid(
            "message.timestamp.type=LogAppendTime: Iggy topics keep the producer's timestamp"
                .into(),
        );
    }
    if config
        .max_message_bytes
        .is_some_and(|m| m != iggy_kafka_core::topic_config::DEFAULT_MAX_MESSAGE_BYTES)
    {
        return invalid("max.message.bytes: Iggy topics have no such limit to set".into());
    }
    let expiry = match config.retention_ms {
        Some(ms) if ms > 0 => u64::try_from(ms).unwrap_or(0).saturating_mul(1000),
        _ => UNLIMITED,
    };
    let per_partition = match config.retention_bytes {
        Some(b) if b > 0 => Some(u64::try_from(b).unwrap_or(0)),
        _ => None,
    };
    let size = per_partition.map_or(UNLIMITED, |b| {
        b.saturating_mul(u64::from(partitions.max(1)))
    });
    let fsync = match config.flush_messages {
        None | Some(iggy_kafka_core::topic_config::DEFAULT_FLUSH_MESSAGES) => false,
        Some(1) => true,
        Some(n) => {
            return invalid(format!(
                "flush.messages {n}: Iggy forces every write to disk (1) or leaves it to the \
                 operating system (the default), nothing between"
            ))
        }
    };
    let requested_segment = config.segment_bytes.map(|b| u64::try_from(b).unwrap_or(0));
    // Iggy refuses a topic whose size limit is below its segment size.
    let below_segment = |segment: u64| {
        invalid(format!(
            "retention.bytes: Iggy keeps at least one segment of {segment} bytes per topic, \
             more than retention.bytes × partitions = {size}"
        ))
    };
    let number = |key: &'static str, v: u64| (key, UINT64, v.to_le_bytes().to_vec());
    let mut entries = Vec::new();
    match existing {
        Existing::Creating { write_through } => {
            let segment = match requested_segment {
                Some(b) if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&b) || b % SEGMENT_ALIGN != 0 => {
                    return invalid(format!(
                        "segment.bytes {b}: Iggy's segments are a multiple of {SEGMENT_ALIGN} \
                         bytes from {MIN_SEGMENT} to {MAX_SEGMENT}"
                    ))
                }
                Some(b) => b,
                // Retention drops whole segments, as Kafka's does: a partition's segments are
                // made no larger than its retention.bytes, so the limit can act.
                None => per_partition.map_or(Storage::DEFAULT.segment_size, |b| {
                    (b / SEGMENT_ALIGN * SEGMENT_ALIGN).clamp(MIN_SEGMENT, MAX_SEGMENT)
                }),
            };
            if size < segment {
                return below_segment(segment);
            }
            if expiry != UNLIMITED {
                entries.push(number("message_expiry", expiry));
            }
            if size != UNLIMITED {
                entries.push(number("max_topic_size", size));
            }
            if segment != Storage::DEFAULT.segment_size {
                entries.push(number("segment_size", segment));
            }
            if fsync {
                entries.push(("enforce_fsync", BOOL, vec![1]));
            }
            if write_through {
                entries.push((
                    "messages_required_to_save",
                    UINT32,
                    1u32.to_le_bytes().to_vec(),
                ));
            }
        }
        Existing::Altering(t) => {
            let storage = Storage::of(t);
            if requested_segment.unwrap_or(Storage::DEFAULT.segment_size) != storage.segment_size {
                return invalid(format!(
                    "segment.bytes: Iggy sets a topic's segment size ({}) when it is created, \
                     never after",
                    storage.segment_size
                ));
            }
            if fsync != storage.enforce_fsync {
                return invalid(
                    "flush.messages: Iggy sets whether a topic forces writes to disk when it is \
                     created, never after"
                        .into(),
                );
            }
            if size < storage.segment_size {
                return below_segment(storage.segment_size);
            }
            // An update changes only the options it carries: "no limit" is sent as such.
            entries.push(number("message_expiry", expiry));
            entries.push(number("max_topic_size", size));
        }
    }
    encode_options(&entries)
}

/// Iggy topic options for a gateway-owned topic whose records must never go (the SCRAM
/// credentials): never expire and no size limit, sent as such rather than left to what
/// Iggy makes of an absent option, so that the topic's own options say it; with the
/// gateway's write-through when creating.
///
/// # Errors
/// [`BackendError::InvalidConfig`] if the options cannot be encoded (they always can).
pub(crate) fn kept_forever_options(existing: Existing<'_>) -> Result<WireOptions, BackendError> {
    let number = |key: &'static str, v: u64| (key, UINT64, v.to_le_bytes().to_vec());
    let mut entries = vec![
        number("message_expiry", UNLIMITED),
        number("max_topic_size", UNLIMITED),
    ];
    if let Existing::Creating {
        write_through: true,
    } = existing
    {
        entries.push((
            "messages_required_to_save",
            UINT32,
            1u32.to_le_bytes().to_vec(),
        ));
    }
    encode_options(&entries)
}

/// Iggy's encoding of topic options: key, kind and value of each.
fn encode_options(entries: &[(&'static str, u8, Vec<u8>)]) -> Result<WireOptions, BackendError> {
    let refs: Vec<(u8, &[u8], u8, &[u8])> = entries
        .iter()
        .map(|(key, kind, value)| (STRING, key.as_bytes(), *kind, &value[..]))
        .collect();
    let mut buf = BytesMut::new();
    encode_user_headers(&refs, &mut buf);
    WireOptions::from_bytes(buf.freeze())
        .map_err(|e| BackendError::InvalidConfig(format!("iggy topic options: {e}")))
}

/// A Kafka topic id derived from Iggy's identity of the topic: stable while it exists,
/// new when it is deleted and created again (its creation time differs).
pub(crate) fn topic_id(t: &TopicHeader, tag: [u8; 4]) -> Uuid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&t.created_at.to_be_bytes());
    b[8..12].copy_from_slice(&t.id.to_be_bytes());
    b[12..].copy_from_slice(&tag);
    Uuid(b)
}

/// What a Kafka client sees of an Iggy topic, named `name` for it, of the stream whose tag
/// is `tag` (`crate::mapping::Stream`).
pub(crate) fn topic_info(name: &str, t: &TopicHeader, tag: [u8; 4]) -> TopicInfo {
    let limited = |v: u64| (v != UNLIMITED && v != 0).then_some(v);
    TopicInfo {
        name: name.to_owned(),
        id: topic_id(t, tag),
        partitions: t.partitions_count,
        config: {
            let mut c = TopicConfig::default();
            c.retention_ms =
                limited(t.message_expiry).map(|us| i64::try_from(us / 1000).unwrap_or(i64::MAX));
            c.retention_bytes = limited(t.max_topic_size).map(|b| {
                i64::try_from(b / u64::from(t.partitions_count.max(1))).unwrap_or(i64::MAX)
            });
            let storage = Storage::of(t);
            if storage.segment_size != Storage::DEFAULT.segment_size {
                c.segment_bytes = Some(i32::try_from(storage.segment_size).unwrap_or(i32::MAX));
            }
            if storage.enforce_fsync {
                c.flush_messages = Some(1);
            }
            c
        },
    }
}

#[cfg(test)]
mod tests;
