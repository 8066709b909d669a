use super::*;
use iggy_kafka_core::mapping::{from_iggy, to_iggy, KafkaRecord};
use iggy_kafka_core::message::MessageView;
use iggy_kafka_iggy_client::protocol::primitives::user_headers::encode_user_headers;

#[test]
fn headers_round_trip_and_foreign_kinds_become_text() {
    let m = IggyMessage {
        payload: Bytes::from_static(b"p"),
        headers: vec![
            (
                "raw".into(),
                HeaderValue::Raw(Bytes::from_static(b"\x00\x01")),
            ),
            ("s".into(), HeaderValue::String("text".into())),
            ("b".into(), HeaderValue::Bool(true)),
            ("u8".into(), HeaderValue::Uint8(9)),
            ("i64".into(), HeaderValue::Int64(-5)),
            ("u64".into(), HeaderValue::Uint64(5)),
            ("f64".into(), HeaderValue::Float64(1.5)),
        ],
        ..IggyMessage::default()
    };
    let encoded = encode_headers(&m).expect("headers");
    assert_eq!(decode_headers(&encoded), Some(m.headers.clone()));
    assert_eq!(encode_headers(&IggyMessage::default()), None);

    // What Iggy-native producers may send: numeric keys and kinds the mapping has no
    // variant for.
    let mut buf = BytesMut::new();
    encode_user_headers(
        &[
            (UINT32, &7u32.to_le_bytes(), INT32, &(-3i32).to_le_bytes()),
            (STRING, b"f32", FLOAT32, &2.5f32.to_le_bytes()),
            (STRING, b"u128", UINT128, &9u128.to_le_bytes()),
            (STRING, b"odd", UINT16, b"\x01"),
        ],
        &mut buf,
    );
    assert_eq!(
        decode_headers(&buf),
        Some(vec![
            ("7".into(), HeaderValue::String("-3".into())),
            ("f32".into(), HeaderValue::String("2.5".into())),
            ("u128".into(), HeaderValue::String("9".into())),
            // A value that does not fit its kind is kept as bytes.
            ("odd".into(), HeaderValue::Raw(Bytes::from_static(b"\x01"))),
        ])
    );
    assert_eq!(decode_headers(b"\x02\x00"), None, "malformed");
}

#[test]
fn topic_identity_and_limits() {
    let header = |id, created_at, expiry, size| TopicHeader {
        id,
        created_at,
        partitions_count: 4,
        message_expiry: expiry,
        compression_algorithm: 1,
        max_topic_size: size,
        size_bytes: 0,
        messages_count: 0,
        name: iggy_kafka_iggy_client::protocol::WireName::new("t").expect("name"),
        options: WireOptions::empty(),
        derived_options: WireOptions::empty(),
    };
    let a = header(1, 100, UNLIMITED, UNLIMITED);
    let tag = *b"KGW1";
    assert_eq!(topic_id(&a, tag), topic_id(&header(1, 100, 5, 5), tag));
    assert_ne!(
        topic_id(&a, tag),
        topic_id(&header(1, 101, UNLIMITED, UNLIMITED), tag)
    );
    // The same Iggy topic id and creation time in another stream.
    assert_ne!(topic_id(&a, tag), topic_id(&a, *b"KGW2"));
    assert_ne!(topic_id(&a, tag), Uuid::NIL);
    let info = topic_info("t", &a, tag);
    assert_eq!(info.name, "t");
    assert_eq!(
        (info.config.retention_ms, info.config.retention_bytes),
        (None, None)
    );
    let info = topic_info("t", &header(1, 100, 7_000_000, 4096), tag);
    assert_eq!(info.config.retention_ms, Some(7000));
    assert_eq!(info.config.retention_bytes, Some(1024), "per partition");
}

#[test]
fn errors_map_to_documented_kafka_codes() {
    use iggy_kafka_core::protocol::error_code::ErrorCode as K;
    use iggy_kafka_iggy_client::SessionError;
    let cases = [
        (code::TOPIC_NAME_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::STREAM_NAME_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::PARTITION_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::TOPIC_NAME_ALREADY_EXISTS, K::TOPIC_ALREADY_EXISTS),
        (code::INVALID_TOPIC_NAME, K::INVALID_TOPIC_EXCEPTION),
        (code::INVALID_PARTITIONS_COUNT, K::INVALID_PARTITIONS),
        (code::UNAUTHORIZED, K::TOPIC_AUTHORIZATION_FAILED),
        (code::TOO_BIG_MESSAGE_PAYLOAD, K::INVALID_RECORD),
        (code::INVALID_TOPIC_SIZE, K::INVALID_CONFIG),
        (code::INVALID_SEGMENT_SIZE, K::INVALID_CONFIG),
        (code::UNSUPPORTED_OPTION_KEY, K::INVALID_CONFIG),
        (code::INVALID_OPTION_VALUE, K::INVALID_CONFIG),
        (9999, K::UNKNOWN_SERVER_ERROR),
    ];
    for (iggy, kafka) in cases {
        assert_eq!(
            backend_error(Failure::Status(iggy), "t", Some(1)).error_code(),
            kafka,
            "{iggy}"
        );
    }
    assert_eq!(
        backend_error(Failure::Lost(SessionError::Closed), "t", None).error_code(),
        K::REQUEST_TIMED_OUT
    );
}

#[test]
fn send_messages_writes_what_iggys_encoder_writes() {
    let every_kind = vec![
        (
            "raw".into(),
            HeaderValue::Raw(Bytes::from_static(b"\x00\x01")),
        ),
        ("s".into(), HeaderValue::String("text".into())),
        ("b".into(), HeaderValue::Bool(false)),
        ("u8".into(), HeaderValue::Uint8(200)),
        ("i64".into(), HeaderValue::Int64(-5)),
        ("u64".into(), HeaderValue::Uint64(u64::MAX)),
        ("f64".into(), HeaderValue::Float64(-0.25)),
    ];
    let message = |i: usize| IggyMessage {
        payload: Bytes::from(vec![b'a' + (i % 26) as u8; 1 + i * 37 % 300]),
        // Out of order, the earliest in the middle, up to the largest delta Iggy allows.
        origin_timestamp_us: match i % 4 {
            0 => 1_700_000_000_000_000 + i as u64,
            1 => 1_700_000_000_000_000 - 1,
            2 => 1_700_000_000_000_000 - 1 + u64::from(u32::MAX),
            _ => 1_700_000_000_000_000,
        },
        timestamp_us: 0,
        headers: match i % 3 {
            0 => Vec::new(),
            1 => vec![(
                "kafka.key".into(),
                HeaderValue::Raw(Bytes::from(vec![7; i % 255 + 1])),
            )],
            _ => every_kind.clone(),
        },
    };
    let streams = [WireIdentifier::numeric(3), named("stream-x").expect("name")];
    let topics = [named("t").expect("name"), WireIdentifier::numeric(u32::MAX)];
    for n in [1, 2, 3, 17, 1000] {
        let messages: Vec<IggyMessage> = (0..n).map(message).collect();
        // Header-less messages go in bare, some as slices of one shared buffer (as a decoded
        // batch's records are), some each in a buffer of their own.
        let shared = Bytes::from(
            messages
                .iter()
                .flat_map(|m| m.payload.iter().copied())
                .collect::<Vec<u8>>(),
        );
        let mut list = MessageList::default();
        let mut at = 0;
        for (i, m) in messages.iter().enumerate() {
            let len = m.payload.len();
            match (m.headers.is_empty(), i % 2) {
                (true, 0) => list.push_bare(&shared, &shared[at..at + len], m.origin_timestamp_us),
                (true, _) => list.push_bare(&m.payload, &m.payload, m.origin_timestamp_us),
                (false, _) => list.push(m.clone()),
            }
            at += len;
        }
        assert_eq!(list.clone().into_messages(), messages);
        for (stream, topic) in streams.iter().zip(&topics) {
            let producer = ProducerBatch {
                producer_id: -3,
                epoch: 4,
                first_sequence: i32::MAX - 1,
                count: 2,
                transactional: false,
            };
            for (partition, ids) in [
                (0, Ids::counted(0)),
                (7, Ids::counted((5u128 << 64) | 9)),
                (u32::MAX, Ids::counted(u128::MAX - 2000)),
                (1, Ids::producer(&producer)),
            ] {
                let ours = send_messages(stream, topic, partition, &list, ids).expect("encode");
                let theirs = reference_send_messages(stream, topic, partition, &messages, ids)
                    .expect("encode");
                assert_eq!(ours, theirs, "{n} messages to partition {partition}");
            }
        }
    }
}

#[test]
fn send_messages_refuses_what_iggy_cannot_carry() {
    let stream = WireIdentifier::numeric(1);
    let topic = named("t").expect("name");
    assert!(
        send_messages(&stream, &topic, 0, &MessageList::default(), Ids::counted(0)).is_err(),
        "an empty batch"
    );
    let at = |us: u64| IggyMessage {
        payload: Bytes::from_static(b"x"),
        origin_timestamp_us: us,
        ..IggyMessage::default()
    };
    let within = MessageList::from(vec![at(10), at(10 + u64::from(u32::MAX))]);
    assert_eq!(
        send_messages(&stream, &topic, 0, &within, Ids::counted(0)).expect("encode"),
        reference_send_messages(&stream, &topic, 0, &within.into_messages(), Ids::counted(0))
            .expect("encode")
    );
}

/// One Iggy append spans at most 2³² µs of origin timestamps; a Kafka batch may span more.
/// The messages outside the window that ends at the latest keep their Kafka timestamp in a
/// header and move into the window, so the append is whole and every record reads back
/// the same.
#[test]
fn a_batch_spanning_more_time_than_an_append_is_fitted_into_one() {
    let stream = WireIdentifier::numeric(1);
    let topic = named("t").expect("name");
    let now = 1_800_000_000_000i64;
    let records: Vec<KafkaRecord> = [now - 86_400_000, now, -1, now - 4_000_000, 0, now - 10]
        .iter()
        .enumerate()
        .map(|(i, &timestamp_ms)| KafkaRecord {
            timestamp_ms,
            key: (i == 3).then(|| Bytes::from_static(b"k")),
            value: Some(Bytes::from(format!("v{i}"))),
            ..KafkaRecord::default()
        })
        .collect();
    let messages: MessageList = records.iter().map(to_iggy).collect();
    let ours = send_messages(&stream, &topic, 0, &messages, Ids::counted(0)).expect("encode");
    let fitted = fit_timestamps(&messages).into_messages();
    assert_eq!(
        ours,
        reference_send_messages(&stream, &topic, 0, &fitted, Ids::counted(0)).expect("encode")
    );
    // The window ends at the latest and holds the record of 4,000 s before it.
    let earliest = u64::try_from(now - 4_000_000).expect("ms") * 1000;
    for ((m, r), kept) in fitted
        .iter()
        .zip(&records)
        .zip([false, true, false, true, false, true])
    {
        assert_eq!(&from_iggy(m), r);
        let origin = to_iggy(r).origin_timestamp_us;
        let want = if kept { origin } else { earliest };
        assert_eq!(m.origin_timestamp_us, want, "{r:?}");
    }
}

/// A `PollMessages` reply holding `batches` (first offset, how many messages, their ids).
fn poll_reply(batches: &[(u64, usize, Ids)], current_offset: u64) -> Vec<u8> {
    let batches: Vec<_> = batches
        .iter()
        .map(|&(base, n, ids)| {
            let list: MessageList = (0..n)
                .map(|i| IggyMessage {
                    payload: Bytes::from(vec![b'x'; i + 1]),
                    origin_timestamp_us: 1_700_000_000_000_000,
                    ..IggyMessage::default()
                })
                .collect();
            (base, list, ids)
        })
        .collect();
    reply_of(&batches, current_offset)
}

/// A `PollMessages` reply holding `batches` (first offset, the messages, their ids), each
/// batch appended at a time of its own.
fn reply_of(batches: &[(u64, MessageList, Ids)], current_offset: u64) -> Vec<u8> {
    use iggy_kafka_iggy_client::protocol::responses::messages::poll_messages::PollMessagesResponseHeader;
    let stream = WireIdentifier::numeric(1);
    let topic = named("t").expect("name");
    let mut blob = Vec::new();
    let mut total = 0;
    for (i, (base, list, ids)) in batches.iter().enumerate() {
        let (base, n) = (*base, list.len());
        let body = send_messages(&stream, &topic, 0, list, *ids).expect("encode");
        let meta = u32::from_le_bytes(body[..4].try_into().expect("four bytes")) as usize;
        let mut batch = body[4 + meta..].to_vec();
        let mut header = BatchHeader::decode(&batch).expect("a batch");
        header.base_offset = base;
        header.base_timestamp = batch_appended_us(i);
        header.encode_into(&mut batch[..BATCH_HEADER_SIZE]);
        blob.extend_from_slice(&batch);
        total += n;
    }
    let mut reply = PollMessagesResponseHeader {
        partition_id: 0,
        current_offset,
        messages_count: u32::try_from(total).expect("few"),
    }
    .to_bytes()
    .to_vec();
    reply.extend_from_slice(&blob);
    reply
}

/// When the `i`th batch of [`reply_of`] was appended.
fn batch_appended_us(i: usize) -> u64 {
    1_800_000_000_000_000 + 1_000_000 * i as u64
}

#[test]
fn idempotent_batches_are_read_back_from_their_message_ids() {
    let pb = |producer_id, epoch, first_sequence, count| ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        count,
        transactional: false,
    };
    let producer = |b| Ids::producer(&b);
    // The reply starts inside a batch: its end is not a batch whose start is known.
    let cut = Ids {
        first: producer(pb(5, 0, 0, 4)).of(2),
        start: 0,
    };
    let wrapping = pb(-9, i16::MAX, i32::MAX - 1, 3);
    let batches = [
        (10, 2, cut),
        (12, 2, Ids::counted(77 << 64)),
        (14, 3, producer(pb(5, 0, 4, 3))),
        // Right after the same producer's previous batch: the start mark tells them apart.
        (17, 2, producer(pb(5, 0, 7, 2))),
        (19, 1, producer(pb(6, 2, 0, 1))),
        (20, 3, producer(wrapping)),
        // Goes on past the reply, unless the partition ends with it.
        (23, 2, producer(pb(6, 2, 1, 4))),
    ];
    let all = vec![
        (pb(5, 0, 4, 3), 14),
        (pb(5, 0, 7, 2), 17),
        (pb(6, 2, 0, 1), 19),
        (wrapping, 20),
        (pb(6, 2, 1, 2), 23),
    ];
    assert_eq!(producer_batches(&poll_reply(&batches, 24)), Ok(all.clone()));
    // Producer 6's last batch may go on: none of its batches tells its last sequence.
    let known: Vec<_> = all
        .into_iter()
        .filter(|(b, _)| b.producer_id != 6)
        .collect();
    assert_eq!(producer_batches(&poll_reply(&batches, 40)), Ok(known));
    assert_eq!(wrapping.last_sequence(), 0);

    // The first message of a batch is found by its id; others' ids are not mistaken for it.
    let reply = poll_reply(&batches, 24);
    let first = |b| producer(b).of(0);
    assert_eq!(
        find_message(&reply, first(pb(5, 0, 7, 2))),
        Ok((Some(17), Some(17), 24))
    );
    assert_eq!(
        find_message(&reply, first(pb(5, 0, 2, 2))),
        Ok((None, Some(24), 24))
    );
    assert_eq!(find_message(&poll_reply(&[], 3), 1), Ok((None, None, 3)));
}

/// A poll reply whose batch starts at an offset a frame's delta takes past `u64::MAX`
/// (found by the `iggy_reply_decode` fuzz target: Iggy's decoder adds the delta unchecked).
#[test]
fn a_poll_reply_whose_offsets_overflow_is_refused_not_wrapped() {
    let data = include_bytes!("fixtures/poll-reply-offset-overflow.bin");
    let body = Bytes::from_static(data);
    assert!(polled(&body, 0, 1 << 20, 1000, true).is_err());
    assert!(producer_batches(data).is_err());
    assert!(find_message(data, 1).is_err());
    assert!(scan_timestamps(data, 2..u64::MAX, 0).is_err());
}

/// [`polled`] as it reads a reply that is not bare: message by message, each an
/// [`IggyMessage`], from the first batch on. What [`polled`] must give for every reply
/// Iggy sends (batches in rising base offsets, none overlapping the next).
fn polled_each(
    body: &Bytes,
    from: u64,
    max_bytes: usize,
    max_messages: usize,
    at_least_one: bool,
) -> Result<(Messages, u64, usize), BackendError> {
    let reply = super::poll_reply(body, 0)?;
    let current = reply.header.current_offset;
    let mut out = MessagesBuilder::default();
    let mut bytes = 0usize;
    for view in reply.messages {
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
        let first = out.is_empty() && at_least_one;
        if !first && (bytes + size > max_bytes || out.len() >= max_messages) {
            break;
        }
        bytes += size;
        out.push(view.offset, message);
    }
    Ok((out.finish(), current, bytes))
}

/// Each message's offset, payload, origin timestamp, append time and headers, read from
/// how `m` holds it ([`Messages::views`], what the fetch path reads), and how many are held
/// bare.
#[allow(clippy::type_complexity)]
fn held(
    m: &Messages,
) -> (
    Vec<(u64, Vec<u8>, u64, u64, Vec<(String, HeaderValue)>)>,
    usize,
) {
    let mut bare = 0;
    let each = m
        .views()
        .map(|(offset, v)| match v {
            MessageView::Message(m) => (
                offset,
                m.payload.to_vec(),
                m.origin_timestamp_us,
                m.timestamp_us,
                m.headers.clone(),
            ),
            MessageView::Bare {
                payload,
                origin_timestamp_us,
                timestamp_us,
            } => {
                bare += 1;
                (
                    offset,
                    payload.to_vec(),
                    origin_timestamp_us,
                    timestamp_us,
                    Vec::new(),
                )
            }
        })
        .collect();
    (each, bare)
}

/// Whatever a reply of Iggy's holds, [`polled`] gives what reading it message by message
/// gives: the
/// same messages, offsets, origin and append times, byte count and current offset, within
/// every limit. Bare messages at consecutive offsets are held bare, as ranges of the
/// reply's bytes; from a message with headers or a gap in the offsets on, all are held
/// whole.
/// A read from a later batch steps over the batches before it by their headers: a batch
/// whose frames do not tile it, before the read's first offset, is not looked into (the
/// message-by-message reading fails on it), while a read from it still fails.
#[test]
fn a_read_from_a_later_batch_steps_over_those_before() {
    let bare = |n: usize| -> MessageList {
        (0..n)
            .map(|i| IggyMessage {
                payload: Bytes::from(vec![b'p'; i + 1]),
                ..IggyMessage::default()
            })
            .collect()
    };
    let mut reply = reply_of(
        &[(0, bare(3), Ids::counted(1)), (3, bare(3), Ids::counted(4))],
        5,
    );
    // The first frame of the first batch claims a longer payload than its batch holds.
    let at = POLL_REPLY_HEADER + BATCH_HEADER_SIZE + 36;
    reply[at..at + 4].copy_from_slice(&1_000u32.to_le_bytes());
    let reply = Bytes::from(reply);
    assert!(polled_each(&reply, 3, 1 << 20, 100, true).is_err());
    assert!(polled(&reply, 0, 1 << 20, 100, true).is_err());
    let (got, current, _) = polled(&reply, 3, 1 << 20, 100, true).expect("the later batch");
    assert_eq!(current, 5);
    let offsets: Vec<u64> = held(&got).0.iter().map(|m| m.0).collect();
    assert_eq!(offsets, vec![3, 4, 5]);
}

#[test]
fn a_poll_reply_reads_as_one_read_message_by_message() {
    let bare = |n: usize, origin: u64| -> MessageList {
        (0..n)
            .map(|i| IggyMessage {
                payload: Bytes::from(vec![b'a' + i as u8; i + 1]),
                origin_timestamp_us: origin + i as u64,
                ..IggyMessage::default()
            })
            .collect()
    };
    let headed = |payload: &'static [u8]| IggyMessage {
        payload: Bytes::from_static(payload),
        headers: vec![("k".into(), HeaderValue::Bool(true))],
        ..IggyMessage::default()
    };
    let mut bare_then_headed = bare(2, 5);
    bare_then_headed.push(headed(b"h"));
    let mut headed_then_bare: MessageList = vec![headed(b"h")].into();
    headed_then_bare.push_bare(&Bytes::from_static(b"after"), b"after", 3);
    let all_bare = reply_of(
        &[
            (10, bare(3, 1_700_000_000_000_000), Ids::counted(1)),
            (13, bare(4, 0), Ids::counted(9)),
        ],
        16,
    );
    let replies = [
        (all_bare, true),
        // A message with headers in the middle, then bare ones after it.
        (
            reply_of(
                &[
                    (0, bare_then_headed, Ids::counted(1)),
                    (3, bare(2, 9), Ids::counted(4)),
                ],
                4,
            ),
            false,
        ),
        (
            reply_of(&[(0, headed_then_bare, Ids::counted(1))], 1),
            false,
        ),
        // A gap in the offsets.
        (
            reply_of(
                &[
                    (0, bare(2, 5), Ids::counted(1)),
                    (5, bare(2, 5), Ids::counted(3)),
                ],
                7,
            ),
            false,
        ),
        // Three batches: a read from a later one steps over those before it.
        (
            reply_of(
                &[
                    (0, bare(2, 5), Ids::counted(1)),
                    (2, bare(3, 7), Ids::counted(3)),
                    (5, bare(3, 9), Ids::counted(6)),
                ],
                7,
            ),
            // Bare too, but not the layout whose append times are checked below.
            false,
        ),
        // Batches whose offsets go back (no server sends them): nothing is stepped over
        // from where they stop rising.
        (
            reply_of(
                &[
                    (10, bare(2, 5), Ids::counted(1)),
                    (12, bare(2, 5), Ids::counted(3)),
                    (2, bare(2, 5), Ids::counted(5)),
                ],
                13,
            ),
            false,
        ),
    ];
    for (i, (reply, all_bare)) in replies.into_iter().enumerate() {
        let reply = Bytes::from(reply);
        for from in [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 16, 30] {
            for max_bytes in [0, 17, 35, 40, 60, 1 << 20] {
                for max_messages in [0, 1, 2, 3, 100] {
                    for at_least_one in [true, false] {
                        let args = (i, from, max_bytes, max_messages, at_least_one);
                        let got = polled(&reply, from, max_bytes, max_messages, at_least_one)
                            .expect("decodes");
                        let want = polled_each(&reply, from, max_bytes, max_messages, at_least_one)
                            .expect("decodes");
                        assert_eq!(got, want, "{args:?}");
                        assert_eq!((got.1, got.2), (want.1, want.2), "{args:?}");
                        let (got_held, bare) = held(&got.0);
                        assert_eq!(got_held, held(&want.0).0, "{args:?}");
                        let bare_taken = got_held
                            .iter()
                            .enumerate()
                            .all(|(n, m)| m.4.is_empty() && m.0 == got_held[0].0 + n as u64);
                        assert_eq!(bare == got_held.len(), bare_taken, "{args:?}");
                        assert!(bare == 0 || bare == got_held.len(), "{args:?}");
                        if all_bare && from <= 10 && got_held.len() == 7 {
                            // Each batch's own append time, the same for all its messages.
                            let times: Vec<_> = got_held.iter().map(|m| m.3).collect();
                            let mut want = vec![batch_appended_us(0); 3];
                            want.extend([batch_appended_us(1); 4]);
                            assert_eq!(times, want, "{args:?}");
                        }
                    }
                }
            }
        }
    }
    // A message with headers just past the budget or the count is not taken, and what was
    // taken before it stays bare.
    let mut list = bare(2, 5);
    list.push(headed(b"h"));
    let reply = Bytes::from(reply_of(&[(0, list, Ids::counted(1))], 3));
    for (max_bytes, max_messages) in [(17 + 18, 100), (1 << 20, 2)] {
        let (got, ..) = polled(&reply, 0, max_bytes, max_messages, true).expect("decodes");
        let (messages, bare) = held(&got);
        assert_eq!((messages.len(), bare), (2, 2), "{max_bytes} {max_messages}");
    }
    // A message at the end of the offsets, then another: no run goes on past the end.
    for end in [u64::MAX - 1, u64::MAX] {
        let last = Bytes::from(reply_of(
            &[
                (end, bare(1, 5), Ids::counted(1)),
                (5, bare(1, 5), Ids::counted(3)),
            ],
            7,
        ));
        if let Ok((got, ..)) = polled(&last, 0, 1 << 20, 100, true) {
            assert_eq!(
                got,
                polled_each(&last, 0, 1 << 20, 100, true)
                    .expect("decodes")
                    .0
            );
        }
    }
}
