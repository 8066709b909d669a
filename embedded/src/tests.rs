use std::time::Instant;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::backend::{
    Backend, BackendError, Command, Completion, Execution, ProducerBatch, TopicConfig, TopicRef,
    WatchPartition,
};
use iggy_kafka_core::message::{IggyMessage, MessageList, MessageView};
use iggy_kafka_core::protocol::error_code::ErrorCode;

use super::{EmbeddedStore, StoreConfig};

fn store(max: u64) -> EmbeddedStore {
    EmbeddedStore::new(StoreConfig {
        max_partition_bytes: max,
    })
}

fn done(e: Execution) -> Completion {
    match e {
        Execution::Done(c) => c,
        Execution::Pending(_) => panic!("pending"),
    }
}

fn msg(payload: &'static [u8], ts_ms: u64) -> IggyMessage {
    IggyMessage {
        payload: Bytes::from_static(payload),
        origin_timestamp_us: ts_ms * 1000,
        ..IggyMessage::default()
    }
}

fn create(s: &EmbeddedStore, name: &str, partitions: u32) -> Completion {
    done(s.execute(Command::CreateTopic {
        name: name.into(),
        partitions,
        config: TopicConfig::default(),
        validate_only: false,
    }))
}

fn max_timestamp(s: &EmbeddedStore, partition: u32) -> Option<(u64, i64)> {
    match done(s.execute(Command::MaxTimestamp {
        topic: "t".into(),
        partition,
    })) {
        Completion::MaxTimestamp(Ok(max)) => max,
        other => panic!("max timestamp: {other:?}"),
    }
}

fn append(s: &EmbeddedStore, topic: &str, p: u32, msgs: Vec<IggyMessage>) -> Completion {
    append_as(s, topic, p, msgs, None)
}

/// The messages as the produce path hands them over when `bare`: those without headers as
/// ranges of one request's bytes (the rest mapped); else every one mapped.
fn list(msgs: Vec<IggyMessage>, bare: bool) -> MessageList {
    if !bare || msgs.iter().any(|m| !m.headers.is_empty()) {
        return msgs.into();
    }
    let mut request = BytesMut::new();
    for m in &msgs {
        request.extend_from_slice(&m.payload);
    }
    let request = request.freeze();
    let mut list = MessageList::default();
    let mut at = 0;
    for m in &msgs {
        let end = at + m.payload.len();
        list.push_bare(&request, &request[at..end], m.origin_timestamp_us);
        at = end;
    }
    assert!(list.is_bare());
    list
}

fn append_kept(
    s: &EmbeddedStore,
    topic: &str,
    p: u32,
    msgs: Vec<IggyMessage>,
    bare: bool,
) -> Completion {
    done(s.execute(Command::Append {
        topic: topic.into(),
        partition: p,
        messages: list(msgs, bare),
        largest_batch: 100,
        producer: None,
    }))
}

fn append_as(
    s: &EmbeddedStore,
    topic: &str,
    p: u32,
    msgs: Vec<IggyMessage>,
    producer: Option<ProducerBatch>,
) -> Completion {
    done(s.execute(Command::Append {
        topic: topic.into(),
        partition: p,
        messages: list(msgs, true),
        largest_batch: 100,
        producer,
    }))
}

#[test]
fn offsets_are_dense_and_reads_respect_limits() {
    let s = store(1 << 20);
    assert!(matches!(create(&s, "t", 2), Completion::CreateTopic(Ok(_))));
    let c = append(&s, "t", 1, vec![msg(b"a", 5), msg(b"b", 9), msg(b"c", 7)]);
    assert!(matches!(c, Completion::Append(Ok(a)) if a.base_offset == 0));
    let c = append(&s, "t", 1, vec![msg(b"d", 1)]);
    assert!(matches!(c, Completion::Append(Ok(a)) if a.base_offset == 3));
    let read = |offset, max_bytes, max_messages| {
        done(s.execute(Command::Read {
            topic: TopicRef::Name("t".into()),
            partition: 1,
            offset,
            max_bytes,
            max_messages,
        }))
    };
    let Completion::Read(Ok(r)) = read(1, 1 << 20, 2) else {
        panic!("read")
    };
    assert_eq!(r.messages.len(), 2);
    let got: Vec<_> = r
        .messages
        .iter()
        .map(|(o, m)| (o, m.payload.clone()))
        .collect();
    assert_eq!(got[0].0, 1);
    assert_eq!(&got[1].1[..], b"c");
    assert_eq!(r.offsets.high_watermark, 4);
    assert_eq!(max_timestamp(&s, 1), Some((1, 9)));
    // At least one message whatever the byte limit.
    let Completion::Read(Ok(r)) = read(0, 1, 100) else {
        panic!("read")
    };
    assert_eq!(r.messages.len(), 1);
    let Completion::Read(Ok(r)) = read(4, 100, 100) else {
        panic!("read")
    };
    assert!(r.messages.is_empty());
    assert!(matches!(
        read(5, 100, 100),
        Completion::Read(Err(BackendError::OffsetOutOfRange { .. }))
    ));
    let ts = done(s.execute(Command::OffsetForTimestamp {
        topic: "t".into(),
        partition: 1,
        timestamp_ms: 6,
    }));
    assert_eq!(ts, Completion::OffsetForTimestamp(Ok(Some((1, 9)))));
    assert!(matches!(
        append(&s, "t", 2, vec![msg(b"x", 1)]),
        Completion::Append(Err(BackendError::UnknownPartition { .. }))
    ));
    assert!(matches!(
        append(&s, "nope", 0, vec![msg(b"x", 1)]),
        Completion::Append(Err(BackendError::UnknownTopic(_)))
    ));
}

#[test]
fn retention_drops_the_oldest_and_advances_the_start() {
    let s = store(200);
    create(&s, "t", 1);
    for _ in 0..20 {
        append(&s, "t", 0, vec![msg(b"0123456789", 1)]);
    }
    let Completion::Offsets(Ok(o)) = done(s.execute(Command::Offsets {
        topic: TopicRef::Name("t".into()),
        partition: 0,
    })) else {
        panic!("offsets")
    };
    assert_eq!(o.high_watermark, 20);
    assert!(o.log_start > 0, "{o:?}");
    assert!((20 - o.log_start) * 27 <= 200, "{o:?}");
}

/// Appends are kept as blocks, bare or mapped: reads start mid-block and cross blocks, and
/// retention drops part of a block, with offsets, payloads, append times and the largest
/// timestamp kept exact.
#[test]
fn reads_and_retention_cross_append_blocks() {
    for bare in [true, false] {
        // Blocks of each kind, one after the other, read alike.
        for first_bare in [bare, !bare] {
            reads_and_retention_cross(first_bare, bare);
        }
    }
}

fn reads_and_retention_cross(first_bare: bool, bare: bool) {
    // Each message is 1 + 16 bytes as `message_size` counts; 9 messages fit.
    let s = store(160);
    create(&s, "t", 1);
    let payloads: Vec<&'static [u8]> = vec![b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
    // Blocks of 3, 3 and 2: offsets 0-2, 3-5, 6-7; the largest timestamp is at offset 1.
    let ts = [5, 90, 7, 8, 9, 10, 11, 12];
    let mut next = 0;
    let before = super::now_us();
    for n in [3, 3, 2] {
        let msgs = (next..next + n).map(|i| msg(payloads[i], ts[i])).collect();
        append_kept(&s, "t", 0, msgs, if next == 0 { first_bare } else { bare });
        next += n;
    }
    let after = std::cell::Cell::new(super::now_us());
    // The append each offset came in: 0-2, 3-5, 6-7, and 8-10 below.
    let append_of = |o: u64| [3, 6, 8, 11].iter().position(|&end| o < end);
    let read = |offset, max_bytes, max_messages| match done(s.execute(Command::Read {
        topic: TopicRef::Name("t".into()),
        partition: 0,
        offset,
        max_bytes,
        max_messages,
    })) {
        Completion::Read(Ok(r)) => {
            let mut appended = [None; 4];
            for ((o, m), (_, view)) in r.messages.iter().zip(r.messages.views()) {
                assert_eq!(view, MessageView::Message(&m), "{o}");
                assert!(m.headers.is_empty(), "{o}: {m:?}");
                assert!(
                    (before..=after.get()).contains(&m.timestamp_us),
                    "{o}: appended at {}, not between {before} and {}",
                    m.timestamp_us,
                    after.get()
                );
                let at = appended[append_of(o).expect("appended")].get_or_insert(m.timestamp_us);
                assert_eq!(*at, m.timestamp_us, "{o}: one append time per append");
            }
            (
                r.messages
                    .iter()
                    .map(|(o, m)| (o, m.payload.clone()))
                    .collect::<Vec<_>>(),
                r.offsets,
            )
        }
        other => panic!("read: {other:?}"),
    };
    let (got, _) = read(2, 1 << 20, 4);
    let want: Vec<_> = (2..6)
        .map(|o| (o, bytes::Bytes::from_static(payloads[o as usize])))
        .collect();
    assert_eq!(got, want);
    assert_eq!(max_timestamp(&s, 0), Some((1, 90)));
    // Three more messages: 11 in all, so the first two go, the first block only in part.
    append_kept(
        &s,
        "t",
        0,
        vec![msg(b"i", 13), msg(b"j", 14), msg(b"k", 15)],
        bare,
    );
    after.set(super::now_us());
    let (got, offsets) = read(2, 1 << 20, 100);
    assert_eq!(offsets.log_start, 2);
    assert_eq!(offsets.high_watermark, 11);
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (2..11).collect::<Vec<_>>()
    );
    assert_eq!(&got[0].1[..], b"c");
    assert_eq!(&got[8].1[..], b"k");
    // The largest timestamp went with offset 1; the next largest is the last message's.
    assert_eq!(max_timestamp(&s, 0), Some((10, 15)));
    assert!(matches!(
        done(s.execute(Command::Read {
            topic: TopicRef::Name("t".into()),
            partition: 0,
            offset: 1,
            max_bytes: 100,
            max_messages: 100,
        })),
        Completion::Read(Err(BackendError::OffsetOutOfRange { log_start: 2, .. }))
    ));
    let ts = done(s.execute(Command::OffsetForTimestamp {
        topic: "t".into(),
        partition: 0,
        timestamp_ms: 0,
    }));
    assert_eq!(ts, Completion::OffsetForTimestamp(Ok(Some((2, 7)))));
    // A byte limit ends a read inside a block.
    let (got, _) = read(3, 17 * 2, 100);
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn a_recreated_topic_gets_a_new_id() {
    let s = store(1 << 20);
    let Completion::CreateTopic(Ok(first)) = create(&s, "t", 1) else {
        panic!()
    };
    assert!(matches!(
        create(&s, "t", 1),
        Completion::CreateTopic(Err(BackendError::TopicExists(_)))
    ));
    let deleted = done(s.execute(Command::DeleteTopic {
        topic: TopicRef::Id(first.id),
    }));
    assert!(matches!(deleted, Completion::DeleteTopic(Ok(ref t)) if t.name == "t"));
    let Completion::CreateTopic(Ok(second)) = create(&s, "t", 1) else {
        panic!()
    };
    assert_ne!(first.id, second.id);
    assert!(!second.id.is_nil());
}

#[test]
fn partitions_only_grow() {
    let s = store(1 << 20);
    create(&s, "t", 3);
    let grow = |total| {
        done(s.execute(Command::CreatePartitions {
            topic: "t".into(),
            total,
            validate_only: false,
        }))
    };
    assert!(matches!(
        grow(3),
        Completion::CreatePartitions(Err(BackendError::InvalidPartitions(_)))
    ));
    assert!(matches!(
        grow(2),
        Completion::CreatePartitions(Err(BackendError::InvalidPartitions(_)))
    ));
    assert_eq!(grow(5), Completion::CreatePartitions(Ok(())));
    assert!(matches!(
        append(&s, "t", 4, vec![msg(b"x", 1)]),
        Completion::Append(Ok(_))
    ));
}

#[test]
fn a_watch_wakes_on_append() {
    let s = store(1 << 20);
    create(&s, "t", 1);
    let watch = |offset| {
        s.execute(Command::Watch {
            partitions: vec![WatchPartition {
                topic: TopicRef::Name("t".into()),
                partition: 0,
                offset,
            }],
            deadline: Instant::now(),
        })
    };
    let Execution::Pending(fut) = watch(0) else {
        panic!("data already there?")
    };
    let s2 = s.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        append(&s2, "t", 0, vec![msg(b"x", 1)]);
    });
    assert_eq!(futures_lite::future::block_on(fut), Completion::Watch);
    writer.join().unwrap_or_else(|_| panic!("writer"));
    // Data past the offset: at once.
    assert!(matches!(watch(0), Execution::Done(Completion::Watch)));
}

#[test]
fn log_append_time_topics_stamp_records_with_the_append_time() {
    let s = store(1 << 20);
    create(&s, "t", 1);
    let mut config = TopicConfig::default();
    config.log_append_time = Some(true);
    let altered = done(s.execute(Command::AlterTopicConfig {
        topic: "t".into(),
        config,
        validate_only: false,
    }));
    assert_eq!(altered, Completion::AlterTopicConfig(Ok(())));
    let Completion::Append(Ok(a)) = append(&s, "t", 0, vec![msg(b"x", 5)]) else {
        panic!("append")
    };
    let append_ms = a
        .log_append_time_ms
        .unwrap_or_else(|| panic!("log append time"));
    assert!(append_ms > 1_000_000_000_000, "{append_ms}");
    let Completion::Read(Ok(r)) = done(s.execute(Command::Read {
        topic: TopicRef::Name("t".into()),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_messages: 10,
    })) else {
        panic!("read")
    };
    let record =
        iggy_kafka_core::mapping::from_iggy(r.messages.first().expect("a message").1.as_ref());
    assert_eq!(
        record.timestamp_type,
        iggy_kafka_core::records::TimestampType::LogAppendTime
    );
    assert_eq!(record.timestamp_ms, append_ms);
}

#[test]
fn storage_settings_other_than_the_defaults_are_refused() {
    let s = store(1 << 20);
    create(&s, "t", 1);
    let mut defaults = TopicConfig::default();
    defaults.segment_bytes = Some(1 << 30);
    defaults.flush_messages = Some(i64::MAX);
    let mut segmented = TopicConfig::default();
    segmented.segment_bytes = Some(1 << 20);
    let mut flushed = TopicConfig::default();
    flushed.flush_messages = Some(1);
    let alter = |config: TopicConfig| {
        done(s.execute(Command::AlterTopicConfig {
            topic: "t".into(),
            config,
            validate_only: false,
        }))
    };
    assert_eq!(alter(defaults), Completion::AlterTopicConfig(Ok(())));
    for config in [segmented, flushed] {
        assert!(matches!(
            alter(config.clone()),
            Completion::AlterTopicConfig(Err(BackendError::InvalidConfig(_)))
        ));
        assert!(matches!(
            done(s.execute(Command::CreateTopic {
                name: "u".into(),
                partitions: 1,
                config,
                validate_only: false,
            })),
            Completion::CreateTopic(Err(BackendError::InvalidConfig(_)))
        ));
    }
}

fn batch(producer_id: i64, epoch: i16, first_sequence: i32, count: i32) -> Option<ProducerBatch> {
    Some(ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        count,
        transactional: false,
    })
}

fn appended(c: Completion) -> Result<u64, ErrorCode> {
    match c {
        Completion::Append(Ok(a)) => Ok(a.base_offset),
        Completion::Append(Err(e)) => Err(e.error_code()),
        other => panic!("append answered {other:?}"),
    }
}

#[test]
fn idempotent_retries_are_appended_once() {
    let s = store(1 << 20);
    create(&s, "t", 1);
    let two = || vec![msg(b"a", 1), msg(b"b", 2)];
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 0, 2))),
        Ok(0)
    );
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 2, 2))),
        Ok(2)
    );
    // A retry of either recent batch gets its first offset back and appends nothing.
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 0, 2))),
        Ok(0)
    );
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 2, 2))),
        Ok(2)
    );
    assert_eq!(appended(append(&s, "t", 0, vec![msg(b"plain", 3)])), Ok(4));
    // A gap, a stale epoch: refused with Kafka's codes, nothing appended.
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 9, 2))),
        Err(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
    );
    // A bumped epoch starts again at 0; the old epoch is then fenced.
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 1, 5, 2))),
        Err(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
    );
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 1, 0, 2))),
        Ok(5)
    );
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(7, 0, 4, 2))),
        Err(ErrorCode::INVALID_PRODUCER_EPOCH)
    );
    // Another producer is independent and may start anywhere.
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(8, 3, 40, 2))),
        Ok(7)
    );
    // Sequences wrap after i32::MAX.
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(9, 0, i32::MAX - 1, 2))),
        Ok(9)
    );
    assert_eq!(
        appended(append_as(&s, "t", 0, two(), batch(9, 0, 0, 2))),
        Ok(11)
    );
    let Completion::Offsets(Ok(o)) = done(s.execute(Command::Offsets {
        topic: TopicRef::Name("t".into()),
        partition: 0,
    })) else {
        panic!("offsets")
    };
    assert_eq!(
        o.high_watermark, 13,
        "duplicates and refusals appended nothing"
    );
}

fn txn_batch(
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    count: i32,
) -> Option<ProducerBatch> {
    Some(ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        count,
        transactional: true,
    })
}

fn marker(s: &EmbeddedStore, producer_id: i64, epoch: i16, commit: bool) -> u64 {
    match done(s.execute(Command::WriteMarker {
        topic: "t".into(),
        partition: 0,
        producer_id,
        epoch,
        commit,
        coordinator_epoch: 0,
    })) {
        Completion::WriteMarker(Ok(offset)) => offset,
        other => panic!("marker: {other:?}"),
    }
}

fn read_all(s: &EmbeddedStore, offset: u64) -> iggy_kafka_core::backend::ReadResult {
    match done(s.execute(Command::Read {
        topic: TopicRef::Name("t".into()),
        partition: 0,
        offset,
        max_bytes: usize::MAX,
        max_messages: usize::MAX,
    })) {
        Completion::Read(Ok(r)) => r,
        other => panic!("read: {other:?}"),
    }
}

/// Interleaved transactions of two producers on one partition: the last stable offset
/// waits for the earliest open one, an abort is listed for the reads it overlaps, markers
/// are messages with their headers, and a marker at a bumped epoch fences the old one.
#[test]
fn transactions_on_a_partition() {
    use iggy_kafka_core::mapping::{marker_of, transaction_of};
    let s = store(1 << 20);
    create(&s, "t", 1);
    append(&s, "t", 0, vec![msg(b"plain", 1)]); // 0
    let a = |seq, payload| append_as(&s, "t", 0, vec![msg(payload, 1)], txn_batch(1, 0, seq, 1));
    let b = |seq, payload| append_as(&s, "t", 0, vec![msg(payload, 1)], txn_batch(2, 0, seq, 1));
    assert_eq!(appended(a(0, b"a0")), Ok(1));
    assert_eq!(appended(b(0, b"b0")), Ok(2));
    assert_eq!(appended(a(1, b"a1")), Ok(3));
    let r = read_all(&s, 0);
    assert_eq!(r.offsets.last_stable_offset(), 1);
    assert_eq!(r.offsets.high_watermark, 4);
    let Completion::DescribeProducers(Ok(active)) = done(s.execute(Command::DescribeProducers {
        topic: "t".into(),
        partition: 0,
    })) else {
        panic!("DescribeProducers")
    };
    let open: Vec<(i64, Option<u64>)> = active
        .iter()
        .map(|p| (p.producer_id, p.current_txn_start_offset))
        .collect();
    assert_eq!(open, [(1, Some(1)), (2, Some(2))]);
    assert_eq!(marker(&s, 2, 0, true), 4);
    assert_eq!(read_all(&s, 0).offsets.last_stable_offset(), 1);
    // a's transaction aborts at a bumped epoch (a fence): its records are listed as aborted.
    assert_eq!(marker(&s, 1, 1, false), 5);
    let r = read_all(&s, 0);
    assert_eq!(r.offsets.last_stable_offset(), 6);
    assert_eq!(r.aborted.len(), 1);
    assert_eq!(
        (
            r.aborted[0].producer_id,
            r.aborted[0].first_offset,
            r.aborted[0].last_offset
        ),
        (1, 1, 5)
    );
    assert!(read_all(&s, 6).aborted.is_empty());
    let (o, m) = r.messages.iter().nth(5).expect("the marker");
    assert_eq!(
        (o, marker_of(&m), transaction_of(&m)),
        (5, Some(false), Some((1, 1)))
    );
    assert_eq!(
        r.messages.iter().nth(1).map(|(_, m)| transaction_of(&m)),
        Some(None),
        "headers are the mapping's, added by the produce path"
    );
    // The fenced epoch writes no more.
    assert_eq!(
        appended(a(2, b"zombie")),
        Err(ErrorCode::INVALID_PRODUCER_EPOCH)
    );
    // The new epoch starts its sequences again.
    assert_eq!(
        appended(append_as(
            &s,
            "t",
            0,
            vec![msg(b"a", 1)],
            txn_batch(1, 2, 0, 1)
        )),
        Ok(6)
    );
    assert_eq!(read_all(&s, 0).offsets.last_stable_offset(), 6);
}
