//! One Kafka record is one Iggy message, losslessly, both ways. `docs/MAPPING.md` is the
//! specification; this is its implementation.
//!
//! Most records travel in the *plain* form, which Iggy-native consumers read naturally: the
//! value is the payload, the key and each Kafka header are Iggy user headers, and a few
//! `kafka-*` headers carry what Iggy cannot express (null and empty values and keys, header
//! order, the timestamp type). Records that Iggy's header rules cannot hold (a header value
//! over 255 bytes, a repeated or empty header key, more than 100 KB of headers, ...) travel
//! in the *envelope* form: the whole record, Kafka-encoded, is the payload, marked by the
//! `kafka-format` header.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{HeaderValue, IggyMessage, MessageList};
use crate::records::{Header, Record, RecordBatch, RecordSink, RecordView, TimestampType};

/// The Kafka key (kind raw), when it is 1–255 bytes.
pub const KEY: &str = "kafka-key";
/// Flags (kind uint8): [`FLAG_VALUE_NULL`], [`FLAG_VALUE_EMPTY`], [`FLAG_KEY_EMPTY`],
/// [`FLAG_LOG_APPEND_TIME`]. Absent when zero.
pub const FLAGS: &str = "kafka-flags";
/// The Kafka header keys in record order, separated by `\n` (kind string), when there are
/// two or more.
pub const HEADER_ORDER: &str = "kafka-header-order";
/// `envelope-v1` (kind string) when the payload is an envelope.
pub const FORMAT: &str = "kafka-format";
/// The Kafka timestamp in milliseconds (kind int64), only when it is negative and so cannot
/// be Iggy's origin timestamp.
pub const TIMESTAMP: &str = "kafka-timestamp";

/// The producer id (kind int64) of a transactional record or of a transaction marker.
pub const TXN_PRODUCER: &str = "kafka-txn-producer";
/// The producer epoch (kind int64) of a transactional record or of a transaction marker.
pub const TXN_EPOCH: &str = "kafka-txn-epoch";
/// On a transaction marker only (kind uint8): 1 commit, 0 abort. The payload is the Kafka
/// control record's value (version int16 0, coordinator epoch int32, big-endian).
pub const CONTROL: &str = "kafka-control";

/// The envelope format's name.
pub const ENVELOPE_V1: &str = "envelope-v1";

/// The value is null (a tombstone); the payload is one placeholder byte.
pub const FLAG_VALUE_NULL: u8 = 1;
/// The value is empty; the payload is one placeholder byte.
pub const FLAG_VALUE_EMPTY: u8 = 2;
/// The key is empty (a null key has no flag and no `kafka-key`).
pub const FLAG_KEY_EMPTY: u8 = 4;
/// The timestamp is the broker's append time, not the producer's.
pub const FLAG_LOG_APPEND_TIME: u8 = 8;

/// Iggy's bounds on user headers: each key and value 1–255 bytes, all together at most
/// 100 KB. The plain form stays well inside the total so that Iggy's per-header overhead fits.
const MAX_HEADER_PART: usize = 255;
const MAX_HEADERS_TOTAL: usize = 90_000;
const RESERVED_PREFIX: &str = "kafka-";
const ENVELOPE_MAGIC: &[u8; 4] = b"KGW\x01";

/// A Kafka record with its absolute timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaRecord {
    /// Milliseconds since the epoch (may be negative: -1 is Kafka's "no timestamp").
    pub timestamp_ms: i64,
    /// Who set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key; null and empty differ.
    pub key: Option<Bytes>,
    /// The value; null (a tombstone) and empty differ.
    pub value: Option<Bytes>,
    /// Headers in order; keys may repeat, values may be null.
    pub headers: Vec<Header>,
}

/// Maps a Kafka record to the Iggy message that holds it.
#[must_use]
pub fn to_iggy(r: &KafkaRecord) -> IggyMessage {
    into_iggy(r.clone())
}

/// [`to_iggy`] for a record no longer needed: its key and value move into the message
/// rather than being shared, which saves reference counting on the produce path.
#[must_use]
pub fn into_iggy(r: KafkaRecord) -> IggyMessage {
    // Most records have no key and no headers: the value alone, nothing to check.
    let r = match r {
        KafkaRecord {
            timestamp_ms,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(payload),
            headers,
        } if headers.is_empty() && is_bare(timestamp_ms, &payload) => {
            return IggyMessage {
                payload,
                origin_timestamp_us: origin_timestamp_us(timestamp_ms),
                timestamp_us: 0,
                headers: Vec::new(),
            }
        }
        r => r,
    };
    let headers = r.headers.iter().map(|h| (&h.key[..], h.value.clone()));
    match plain_headers(r.key.as_deref(), headers) {
        Some(headers) => plain(r.timestamp_ms, r.timestamp_type, r.key, r.value, headers),
        None => enveloped(&r),
    }
}

/// [`into_iggy`] for a producer's record still in its batch's bytes: key, value and header
/// values are sliced from there, and no [`Record`] or list of [`Header`]s is made first.
fn view_into_iggy(timestamp_ms: i64, r: &RecordView<'_>) -> IggyMessage {
    let buf = r.buffer();
    let slice = |b: &[u8]| buf.slice_ref(b);
    let headers = r.headers().map(|h| (h.key, h.value.map(slice)));
    match plain_headers(r.key(), headers) {
        Some(headers) => plain(
            timestamp_ms,
            TimestampType::CreateTime,
            r.key().map(slice),
            r.value().map(slice),
            headers,
        ),
        None => {
            let r = r.into_record();
            enveloped(&KafkaRecord {
                timestamp_ms,
                timestamp_type: TimestampType::CreateTime,
                key: r.key,
                value: r.value,
                headers: r.headers,
            })
        }
    }
}

/// The message of a record in the plain form, its Kafka headers already mapped.
fn plain(
    timestamp_ms: i64,
    timestamp_type: TimestampType,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, HeaderValue)>,
) -> IggyMessage {
    let mut msg = message_at(timestamp_ms);
    let mut flags = flags_for(timestamp_type);
    match key {
        None => {}
        Some(k) if k.is_empty() => flags |= FLAG_KEY_EMPTY,
        Some(k) => msg.headers.push((KEY.into(), HeaderValue::Raw(k))),
    }
    msg.payload = match value {
        None => {
            flags |= FLAG_VALUE_NULL;
            Bytes::from_static(&[0])
        }
        Some(v) if v.is_empty() => {
            flags |= FLAG_VALUE_EMPTY;
            Bytes::from_static(&[0])
        }
        Some(v) => v,
    };
    if msg.headers.is_empty() {
        msg.headers = headers;
    } else {
        msg.headers.extend(headers);
    }
    with_flags(msg, flags)
}

/// The message of a record in the envelope form.
fn enveloped(r: &KafkaRecord) -> IggyMessage {
    let mut msg = message_at(r.timestamp_ms);
    msg.headers
        .push((FORMAT.into(), HeaderValue::String(ENVELOPE_V1.into())));
    msg.payload = envelope(r);
    with_flags(msg, flags_for(r.timestamp_type))
}

/// A message with the Kafka timestamp and nothing else yet.
fn message_at(timestamp_ms: i64) -> IggyMessage {
    let mut msg = IggyMessage {
        origin_timestamp_us: origin_timestamp_us(timestamp_ms),
        ..IggyMessage::default()
    };
    if timestamp_ms < 0 {
        msg.headers
            .push((TIMESTAMP.into(), HeaderValue::Int64(timestamp_ms)));
    }
    msg
}

fn flags_for(timestamp_type: TimestampType) -> u8 {
    if timestamp_type == TimestampType::LogAppendTime {
        FLAG_LOG_APPEND_TIME
    } else {
        0
    }
}

fn with_flags(mut msg: IggyMessage, flags: u8) -> IggyMessage {
    if flags != 0 {
        msg.headers.push((FLAGS.into(), HeaderValue::Uint8(flags)));
    }
    msg
}

/// Maps each record to its Iggy message as it is decoded (the produce path's
/// [`RecordSink`]).
#[derive(Debug, Default)]
pub struct IntoIggy(pub MessageList);

impl RecordSink for IntoIggy {
    fn begin(&mut self, records: usize) {
        self.0.reserve(records);
    }

    fn push(&mut self, batch: &RecordBatch, r: Record) {
        let mut msg = into_iggy(KafkaRecord {
            timestamp_ms: batch.base_timestamp.wrapping_add(r.timestamp_delta),
            timestamp_type: TimestampType::CreateTime,
            key: r.key,
            value: r.value,
            headers: r.headers,
        });
        if batch.is_transactional() {
            mark_transactional(&mut msg, batch.producer_id, batch.producer_epoch);
        }
        self.0.push(msg);
    }

    fn push_view(&mut self, batch: &RecordBatch, r: RecordView<'_>) {
        let timestamp_ms = batch.base_timestamp.wrapping_add(r.timestamp_delta());
        if batch.is_transactional() {
            let mut msg = view_into_iggy(timestamp_ms, &r);
            mark_transactional(&mut msg, batch.producer_id, batch.producer_epoch);
            return self.0.push(msg);
        }
        // `into_iggy`'s bare case, without making the record first.
        match r.value() {
            Some(value)
                if r.key().is_none() && r.headers().len() == 0 && is_bare(timestamp_ms, value) =>
            {
                self.0
                    .push_bare(r.buffer(), value, origin_timestamp_us(timestamp_ms));
            }
            _ => self.0.push(view_into_iggy(timestamp_ms, &r)),
        }
    }
}

/// Whether a keyless, header-less producer record with this timestamp and value maps to a
/// bare message (the value as the payload, nothing else): Iggy's payload cannot be empty and
/// its origin timestamp cannot be negative.
fn is_bare(timestamp_ms: i64, value: &[u8]) -> bool {
    timestamp_ms >= 0 && !value.is_empty()
}

/// A Kafka timestamp as Iggy's origin timestamp (none, 0, for Kafka's negative ones).
fn origin_timestamp_us(timestamp_ms: i64) -> u64 {
    u64::try_from(timestamp_ms).map_or(0, |ms| ms.saturating_mul(1000))
}

/// The Kafka headers (key, value) as Iggy headers, if the plain form can hold them (and the
/// record's key).
fn plain_headers<'h>(
    key: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'h [u8], Option<Bytes>)>,
) -> Option<Vec<(String, HeaderValue)>> {
    if key.is_some_and(|k| k.len() > MAX_HEADER_PART) {
        return None;
    }
    // No allocation for the common record without headers.
    let mut out = if headers.len() == 0 {
        Vec::new()
    } else {
        Vec::with_capacity(headers.len() + 1)
    };
    let mut total = key.map_or(0, |k| KEY.len() + k.len());
    for (key, value) in headers {
        let key = std::str::from_utf8(key).ok()?;
        let value = value?;
        let fits = (1..=MAX_HEADER_PART).contains(&key.len())
            && (1..=MAX_HEADER_PART).contains(&value.len());
        if !fits
            || key.starts_with(RESERVED_PREFIX)
            || key.contains('\n')
            || out.iter().any(|(k, _)| k == key)
        {
            return None;
        }
        total += key.len() + value.len();
        out.push((key.to_string(), HeaderValue::Raw(value)));
    }
    if out.len() > 1 {
        let order = out
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if order.len() > MAX_HEADER_PART {
            return None;
        }
        total += HEADER_ORDER.len() + order.len();
        out.push((HEADER_ORDER.into(), HeaderValue::String(order)));
    }
    (total <= MAX_HEADERS_TOTAL).then_some(out)
}

fn put_nullable(buf: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        None => buf.put_i32(-1),
        Some(b) => {
            // Record fields come from a frame of at most 2 GiB, so lengths fit.
            buf.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
            buf.put_slice(b);
        }
    }
}

/// `KGW\x01`, then key, value and headers: i32 lengths (-1 for null), an i32 header count,
/// each header a length-prefixed key and a nullable value.
fn envelope(r: &KafkaRecord) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_slice(ENVELOPE_MAGIC);
    put_nullable(&mut buf, r.key.as_ref());
    put_nullable(&mut buf, r.value.as_ref());
    buf.put_i32(i32::try_from(r.headers.len()).unwrap_or(i32::MAX));
    for h in &r.headers {
        put_nullable(&mut buf, Some(&h.key));
        put_nullable(&mut buf, h.value.as_ref());
    }
    buf.freeze()
}

fn take_i32(b: &mut Bytes) -> Option<i32> {
    (b.len() >= 4).then(|| bytes::Buf::get_i32(b))
}

fn take_nullable(b: &mut Bytes) -> Option<Option<Bytes>> {
    match take_i32(b)? {
        -1 => Some(None),
        n if n < 0 || n as usize > b.len() => None,
        n => Some(Some(b.split_to(n as usize))),
    }
}

fn open_envelope(payload: &Bytes) -> Option<(Option<Bytes>, Option<Bytes>, Vec<Header>)> {
    let mut b = payload
        .strip_prefix(ENVELOPE_MAGIC.as_slice())
        .map(|rest| payload.slice_ref(rest))?;
    let key = take_nullable(&mut b)?;
    let value = take_nullable(&mut b)?;
    // Each header takes at least 8 bytes: bound the reservation by what is there.
    let count = usize::try_from(take_i32(&mut b)?)
        .ok()
        .filter(|c| *c <= b.len() / 8)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let key = take_nullable(&mut b)??;
        let value = take_nullable(&mut b)?;
        headers.push(Header { key, value });
    }
    b.is_empty().then_some((key, value, headers))
}

/// Gives a message the broker's append time as its Kafka timestamp, as Kafka does for a
/// topic with `message.timestamp.type=LogAppendTime`: the producer's time is replaced.
pub fn set_log_append_time(msg: &mut IggyMessage, append_us: u64) {
    msg.origin_timestamp_us = append_us;
    msg.headers.retain(|(k, _)| k != TIMESTAMP);
    match msg.headers.iter_mut().find(|(k, _)| k == FLAGS) {
        Some((_, HeaderValue::Uint8(f))) => *f |= FLAG_LOG_APPEND_TIME,
        Some((_, v)) => *v = HeaderValue::Uint8(FLAG_LOG_APPEND_TIME),
        None => msg
            .headers
            .push((FLAGS.into(), HeaderValue::Uint8(FLAG_LOG_APPEND_TIME))),
    }
}

/// Gives a message the origin timestamp `origin_timestamp_us` while the record it holds keeps
/// its Kafka timestamp, which the `kafka-timestamp` header then carries (as it does for
/// negative timestamps). For a store that cannot hold the producer's time as it is: one Iggy
/// append spans at most 2³² µs of origin timestamps.
pub fn move_origin_timestamp(msg: &mut IggyMessage, origin_timestamp_us: u64) {
    if msg.header(TIMESTAMP).is_none() {
        let ms = kafka_timestamp_ms(msg);
        msg.headers.push((TIMESTAMP.into(), HeaderValue::Int64(ms)));
    }
    msg.origin_timestamp_us = origin_timestamp_us;
}

/// The Kafka timestamp (ms) of the record a message holds, as [`from_iggy`] gives it,
/// without rebuilding the record.
#[must_use]
pub fn kafka_timestamp_ms(msg: &IggyMessage) -> i64 {
    match msg.header(TIMESTAMP) {
        Some(HeaderValue::Int64(ms)) => *ms,
        _ => bare_timestamp_ms(msg.origin_timestamp_us, msg.timestamp_us),
    }
}

/// [`kafka_timestamp_ms`] of a message without a Kafka timestamp header: its producer's
/// timestamp, or when Iggy appended it if it has none.
#[must_use]
pub fn bare_timestamp_ms(origin_timestamp_us: u64, timestamp_us: u64) -> i64 {
    let us = if origin_timestamp_us != 0 {
        origin_timestamp_us
    } else {
        timestamp_us
    };
    i64::try_from(us / 1000).unwrap_or(i64::MAX)
}

/// [`from_iggy`] for a message without headers — a keyless record with a value, the common
/// case, or a header-less message from an Iggy producer — as its timestamp and value,
/// borrowed: the fetch path writes it without counting a reference.
#[must_use]
pub fn bare_record(msg: &IggyMessage) -> Option<(i64, &Bytes)> {
    msg.headers
        .is_empty()
        .then(|| (kafka_timestamp_ms(msg), &msg.payload))
}

/// Marks `msg` as a record of `producer_id`'s transaction at `epoch`.
pub fn mark_transactional(msg: &mut IggyMessage, producer_id: i64, epoch: i16) {
    msg.headers
        .push((TXN_PRODUCER.into(), HeaderValue::Int64(producer_id)));
    msg.headers
        .push((TXN_EPOCH.into(), HeaderValue::Int64(i64::from(epoch))));
}

/// The producer id and epoch of a transactional record or marker, if `msg` is one.
#[must_use]
pub fn transaction_of(msg: &IggyMessage) -> Option<(i64, i16)> {
    match (msg.header(TXN_PRODUCER), msg.header(TXN_EPOCH)) {
        (Some(HeaderValue::Int64(p)), Some(HeaderValue::Int64(e))) => {
            Some((*p, i16::try_from(*e).ok()?))
        }
        _ => None,
    }
}

/// Whether `msg` is a transaction marker, and then whether it commits.
#[must_use]
pub fn marker_of(msg: &IggyMessage) -> Option<bool> {
    match msg.header(CONTROL) {
        Some(HeaderValue::Uint8(c)) => Some(*c != 0),
        _ => None,
    }
}

/// The message that holds a transaction marker (Kafka's control record) of `producer_id`
/// at `epoch`, timestamped `timestamp_ms`.
#[must_use]
pub fn marker(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> IggyMessage {
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut msg = IggyMessage {
        payload: Bytes::from(value),
        origin_timestamp_us: origin_timestamp_us(timestamp_ms),
        timestamp_us: 0,
        headers: vec![(CONTROL.into(), HeaderValue::Uint8(u8::from(commit)))],
    };
    mark_transactional(&mut msg, producer_id, epoch);
    msg
}

/// Maps an Iggy message back to the Kafka record it holds. A message that Iggy-native
/// producers wrote (no `kafka-*` headers) becomes a record whose value is the payload, whose
/// headers are its user headers and whose timestamp is its origin timestamp (or, without
/// one, when Iggy appended it).
#[must_use]
pub fn from_iggy(msg: &IggyMessage) -> KafkaRecord {
    let flags = match msg.header(FLAGS) {
        Some(HeaderValue::Uint8(f)) => *f,
        _ => 0,
    };
    let timestamp_ms = kafka_timestamp_ms(msg);
    let timestamp_type = if flags & FLAG_LOG_APPEND_TIME != 0 {
        TimestampType::LogAppendTime
    } else {
        TimestampType::CreateTime
    };
    let is_envelope =
        matches!(msg.header(FORMAT), Some(HeaderValue::String(f)) if f == ENVELOPE_V1);
    if is_envelope {
        if let Some((key, value, headers)) = open_envelope(&msg.payload) {
            return KafkaRecord {
                timestamp_ms,
                timestamp_type,
                key,
                value,
                headers,
            };
        }
        // A payload that is not the envelope it claims: hand it over as it is.
        tracing::warn!("message marked as a Kafka envelope does not hold one; delivering its payload as the value");
    }
    let key = match msg.header(KEY) {
        Some(v) => Some(v.to_kafka()),
        None if flags & FLAG_KEY_EMPTY != 0 => Some(Bytes::new()),
        None => None,
    };
    let value = if flags & FLAG_VALUE_NULL != 0 {
        None
    } else if flags & FLAG_VALUE_EMPTY != 0 {
        Some(Bytes::new())
    } else {
        Some(msg.payload.clone())
    };
    let mut user: Vec<&(String, HeaderValue)> = msg
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .collect();
    // Record order when it was kept; otherwise the order Iggy gave.
    if let Some(HeaderValue::String(order)) = msg.header(HEADER_ORDER) {
        user = order
            .split('\n')
            .filter_map(|k| user.iter().find(|(uk, _)| uk == k).copied())
            .collect();
    }
    let headers = user
        .iter()
        .map(|(k, v)| Header {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(v.to_kafka()),
        })
        .collect();
    KafkaRecord {
        timestamp_ms,
        timestamp_type,
        key,
        value,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    fn round_trip(r: &KafkaRecord) -> IggyMessage {
        let mut msg = to_iggy(r);
        assert!(!msg.payload.is_empty(), "Iggy rejects empty payloads");
        for (k, v) in &msg.headers {
            assert!((1..=255).contains(&k.len()), "header key {k:?}");
            if let HeaderValue::Raw(v) = v {
                assert!((1..=255).contains(&v.len()), "header value of {k}");
            }
            if let HeaderValue::String(v) = v {
                assert!((1..=255).contains(&v.len()), "header value of {k}");
            }
        }
        // Iggy keeps headers in a map: their order must not matter.
        msg.headers.reverse();
        assert_eq!(&from_iggy(&msg), r);
        // Moved in time to fit an Iggy append, it holds the same record.
        let mut moved = msg.clone();
        move_origin_timestamp(&mut moved, 1_234_567);
        assert_eq!(moved.origin_timestamp_us, 1_234_567);
        assert_eq!(&from_iggy(&moved), r, "moved in time");
        // The fetch path's shortcut reads the same record, and only where it may.
        match bare_record(&msg) {
            Some((timestamp_ms, value)) => assert_eq!(
                &KafkaRecord {
                    timestamp_ms,
                    value: Some(value.clone()),
                    ..KafkaRecord::default()
                },
                r
            ),
            None => assert!(!msg.headers.is_empty()),
        }
        msg
    }

    #[test]
    fn plain_records_map_to_natural_iggy_messages() {
        let r = KafkaRecord {
            timestamp_ms: 1_700_000_000_123,
            key: Some(b(b"user-1")),
            value: Some(b(b"{\"hello\":1}")),
            headers: vec![
                Header {
                    key: b(b"trace"),
                    value: Some(b(b"abc")),
                },
                Header {
                    key: b(b"a"),
                    value: Some(b(b"1")),
                },
            ],
            ..KafkaRecord::default()
        };
        let msg = round_trip(&r);
        assert_eq!(&msg.payload[..], b"{\"hello\":1}");
        assert_eq!(msg.origin_timestamp_us, 1_700_000_000_123_000);
        assert_eq!(msg.header(KEY), Some(&HeaderValue::Raw(b(b"user-1"))));
        assert_eq!(msg.header("trace"), Some(&HeaderValue::Raw(b(b"abc"))));
        assert_eq!(
            msg.header(HEADER_ORDER),
            Some(&HeaderValue::String("trace\na".into()))
        );
        assert!(msg.header(FORMAT).is_none() && msg.header(FLAGS).is_none());
    }

    #[test]
    fn every_null_and_empty_distinction_survives() {
        for key in [None, Some(Bytes::new()), Some(b(b"k"))] {
            for value in [None, Some(Bytes::new()), Some(b(b"v"))] {
                for ts_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
                    round_trip(&KafkaRecord {
                        timestamp_ms: 5,
                        timestamp_type: ts_type,
                        key: key.clone(),
                        value: value.clone(),
                        headers: vec![],
                    });
                }
            }
        }
    }

    #[test]
    fn what_iggy_headers_cannot_hold_goes_in_the_envelope() {
        let long = Bytes::from(vec![b'x'; 300]);
        let cases = [
            vec![
                Header {
                    key: b(b"dup"),
                    value: Some(b(b"1")),
                },
                Header {
                    key: b(b"dup"),
                    value: Some(b(b"2")),
                },
            ],
            vec![Header {
                key: Bytes::new(),
                value: Some(b(b"1")),
            }],
            vec![Header {
                key: b(b"n"),
                value: None,
            }],
            vec![Header {
                key: b(b"e"),
                value: Some(Bytes::new()),
            }],
            vec![Header {
                key: b(b"long"),
                value: Some(long.clone()),
            }],
            vec![Header {
                key: b(&[0xff, 0xfe]),
                value: Some(b(b"binary key")),
            }],
            vec![Header {
                key: b(b"kafka-key"),
                value: Some(b(b"reserved")),
            }],
            (0..500)
                .map(|i| Header {
                    key: Bytes::from(format!("h{i}")),
                    value: Some(Bytes::from(vec![1u8; 250])),
                })
                .collect(),
        ];
        for headers in cases {
            let r = KafkaRecord {
                timestamp_ms: 1,
                key: Some(b(&[0, 159, 146, 150])),
                value: None,
                headers,
                ..KafkaRecord::default()
            };
            let msg = round_trip(&r);
            assert_eq!(
                msg.header(FORMAT),
                Some(&HeaderValue::String(ENVELOPE_V1.into()))
            );
        }
        let long_key = KafkaRecord {
            key: Some(long),
            value: Some(b(b"v")),
            ..KafkaRecord::default()
        };
        assert!(round_trip(&long_key).header(FORMAT).is_some());
    }

    #[test]
    fn negative_timestamps_survive() {
        let msg = round_trip(&KafkaRecord {
            timestamp_ms: -1,
            value: Some(b(b"v")),
            ..KafkaRecord::default()
        });
        assert_eq!(msg.origin_timestamp_us, 0);
    }

    #[test]
    fn iggy_native_messages_become_sensible_records() {
        let msg = IggyMessage {
            payload: b(b"native"),
            origin_timestamp_us: 0,
            timestamp_us: 1_700_000_000_555_999,
            headers: vec![
                ("source".into(), HeaderValue::String("sensor".into())),
                ("n".into(), HeaderValue::Uint64(42)),
            ],
        };
        let r = from_iggy(&msg);
        assert_eq!(r.value.as_deref(), Some(&b"native"[..]));
        assert_eq!(r.key, None);
        assert_eq!(r.timestamp_ms, 1_700_000_000_555);
        let headers: Vec<(&[u8], &[u8])> = r
            .headers
            .iter()
            .map(|h| (&h.key[..], h.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(headers, [(&b"source"[..], &b"sensor"[..]), (b"n", b"42")]);
    }

    #[test]
    fn generated_records_round_trip() {
        // A deterministic sweep over shapes: key, value and header kinds, counts and sizes.
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut pick = |n: u64| -> Option<Bytes> {
            match next() % 5 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(
                    (0..next() % n).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
                )),
            }
        };
        for i in 0..2000 {
            let headers = (0..i % 6)
                .map(|h| Header {
                    key: pick(20).unwrap_or_else(|| Bytes::from(format!("k{h}"))),
                    value: pick(400),
                })
                .collect();
            round_trip(&KafkaRecord {
                timestamp_ms: i as i64 * 977 - 3,
                timestamp_type: TimestampType::CreateTime,
                key: pick(300),
                value: pick(1000),
                headers,
            });
        }
    }
}
