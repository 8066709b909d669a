//! What the fuzzers reach inside the backend (the `fuzzing` feature): its decoders of
//! Iggy's replies, its append encoder against Iggy's own (and merged appends against one),
//! and scripts of commands, failures
//! and restarts against the fake Iggy server.

use bytes::Bytes;
use iggy_kafka_core::backend::ProducerBatch;
use iggy_kafka_core::message::MessageList;
use iggy_kafka_iggy_client::protocol::responses::topics::GetTopicResponse;
use iggy_kafka_iggy_client::protocol::{WireDecode, WireError, WireIdentifier};

use crate::wire;

/// Runs every decoder this backend applies to what Iggy sends on `data`: a poll reply (its
/// batches, messages and user headers), headers alone, an offsets-log record, a SCRAM
/// credentials record, a transaction-state record, a user reply
/// with its permissions named, and a topic reply as Kafka sees it (its configuration, and
/// an alter of it). They must not panic whatever
/// the bytes.
pub fn decode(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let _ = wire::polled(&body, 0, 1 << 20, 1000, true);
    let _ = wire::polled(&body, 3, 100, 1000, false);
    // From just past the base offset the input's first batch names (after the reply's
    // 16-byte header, at byte 8 of the batch): a later batch that starts there is read
    // with the batches before it stepped over.
    let from = data
        .get(24..32)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes);
    let _ = wire::polled(&body, from.wrapping_add(1), 1 << 20, 1000, true);
    let _ = wire::decode_headers(data);
    let _ = wire::producer_batches(data);
    let _ = wire::find_message(data, u128::from_le_bytes([0xA5; 16]));
    let _ = wire::scan_timestamps(data, 2..u64::MAX, 0);
    let _ = crate::offsets_log::Record::decode(data);
    let _ = crate::scram::decode_record(data);
    let _ = crate::scram::generation(&String::from_utf8_lossy(data));
    if let Some(r) = crate::txn_log::Record::decode(data) {
        // What decodes is written back the same.
        let bytes = r.encode().expect("a decoded record encodes");
        assert_eq!(crate::txn_log::Record::decode(&bytes), Some(r));
    }
    crate::users::decode_user(data);
    if let Ok((reply, _)) = GetTopicResponse::decode(data) {
        let info = wire::topic_info("topic", &reply.topic, *b"KGW1");
        let existing = wire::Existing::Altering(&reply.topic);
        let _ = wire::topic_options(&info.config, info.partitions, existing);
    }
}

/// Writes `messages` as an Iggy append both with the backend's own writer and with Iggy's
/// `SendMessagesEncoder` (given them fitted to one append's time span when it refuses them
/// for that), and panics unless both refuse or both write the same bytes.
pub fn encode(messages: &MessageList, partition: u32, first_id: u128) {
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
            transactional: false,
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
        Err(WireError::InvalidMessageTimestampDelta(_)) => theirs(&wire::fit_timestamps(messages)),
        other => other,
    };
    let whole = match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours, theirs, "the append bytes differ");
            ours
        }
        (Err(_), Err(_)) => return,
        (ours, theirs) => panic!("one encoder refused: ours {ours:?}, Iggy's {theirs:?}"),
    };
    if first_id & 1 == 0 {
        merged_in_parts(messages, partition, first_id, &whole);
    }
}

/// Plain appends of `messages` in parts (of 1 to 4 messages, sized by the bits of
/// `partition`), merged as a lane merges them: the same bytes as one append of them all
/// (`whole`), when their timestamps fit one append; a whole, checksummed batch otherwise.
fn merged_in_parts(messages: &MessageList, partition: u32, first_id: u128, whole: &Bytes) {
    let stream = WireIdentifier::numeric(1);
    let Ok(topic) = wire::named("topic") else {
        return;
    };
    let all = messages.clone().into_messages();
    let (mut parts, mut at, mut bits) = (Vec::new(), 0usize, partition);
    while at < all.len() {
        let n = (1 + (bits & 3) as usize).min(all.len() - at);
        bits = bits.rotate_right(2);
        let part: MessageList = all[at..at + n].iter().cloned().collect();
        let ids = wire::Ids::counted(first_id.wrapping_add(at as u128));
        match wire::send_messages(&stream, &topic, partition, &part, ids) {
            Ok(body) => parts.push(body),
            Err(_) => return,
        }
        at += n;
    }
    let origins = all.iter().map(|m| m.origin_timestamp_us);
    let span = origins.clone().max().unwrap_or(0) - origins.min().unwrap_or(0);
    let merged = iggy_kafka_iggy_client::merge::merged(&parts);
    if span <= iggy_kafka_iggy_client::protocol::batch::MAX_TIMESTAMP_DELTA_MICROS {
        assert_eq!(merged.as_ref(), Some(whole), "the merged append differs");
    } else if let Some(merged) = merged {
        let meta = u32::from_le_bytes(merged[..4].try_into().expect("a body")) as usize;
        iggy_kafka_iggy_client::protocol::batch::decode_batch_slice(&merged[4 + meta..])
            .expect("a merged append is a whole batch");
    }
}

/// Runs a script of commands, Iggy failures and gateway restarts against a fake Iggy server,
/// and panics when anything acknowledged reads back otherwise.
pub fn script(script: &[u8]) {
    crate::testing::script::run(script);
}

/// Parses a topic mapping from `topics` and `streams` around `default_stream`, as the
/// options are; when it is taken, looks up each of `names` and each Iggy topic of `iggy`
/// (a stream index and a topic name), and panics unless the mapping is one-to-one: a Kafka
/// name leads to an Iggy topic whose Kafka name is that name, and back.
pub fn mapping(
    default_stream: &str,
    topics: &str,
    streams: &str,
    names: &[&str],
    iggy: &[(usize, &str)],
) {
    let Ok(mapping) = crate::mapping::TopicMapping::parse(default_stream, topics, streams) else {
        return;
    };
    let Ok(places) = crate::mapping::Places::new(default_stream, &mapping) else {
        return;
    };
    let count = places.streams().len();
    for &name in names {
        let Some(place) = places.locate(name) else {
            continue;
        };
        assert!(place.stream < count);
        if crate::offsets_log::is_own(&place.topic) {
            // The offsets log's, reached by the backend itself and hidden from listings.
            assert_eq!(place.stream, 0);
            assert_eq!(places.kafka_name(0, &place.topic), None);
            continue;
        }
        if let Some(back) = places.kafka_name(place.stream, &place.topic) {
            assert_eq!(back, name, "{name} leads to a topic known by another name");
        }
    }
    for &(stream, topic) in iggy {
        let stream = stream % count;
        if let Some(kafka) = places.kafka_name(stream, topic) {
            let place = places
                .locate(&kafka)
                .unwrap_or_else(|| panic!("{kafka} is listed but leads nowhere"));
            assert_eq!((place.stream, place.topic.as_ref()), (stream, topic));
        }
    }
}
