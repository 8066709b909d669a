//! The connection with backend commands, driven by a scripted harness: request bytes in,
//! commands out, completions fed back in any order, a manual clock. No sockets, no backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::backend::{
    Appended, BackendError, Command, Completion, PartitionOffsets, ReadResult, TopicInfo, TopicRef,
};
use iggy_kafka_core::mapping::{to_iggy, KafkaRecord};
use iggy_kafka_core::message::Messages;
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use iggy_kafka_core::protocol::generated::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use iggy_kafka_core::protocol::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use iggy_kafka_core::protocol::{ApiKey, Request, Response};
use iggy_kafka_core::records::{
    decode_batches, Compression, DecompressionBudget, Record, RecordBatch,
};
use iggy_kafka_core::work::{Outcome, Work, WorkId};
use iggy_kafka_core::{CloseReason, Config, Connection};

struct Harness {
    conn: Connection,
    now: Instant,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = Instant::now();
        Self {
            conn: Connection::new(Arc::new(config), now),
            now,
        }
    }

    fn send(&mut self, version: i16, correlation_id: i32, request: &Request) {
        let mut buf = BytesMut::new();
        frame::encode_request(&mut buf, request, version, correlation_id, Some("harness"))
            .expect("request");
        self.conn.handle_input(self.now, &mut buf);
        assert!(buf.is_empty(), "the whole frame was taken");
    }

    fn commands(&mut self) -> Vec<(WorkId, Work)> {
        std::iter::from_fn(|| self.conn.poll_work()).collect()
    }

    fn complete(&mut self, id: WorkId, c: Outcome) {
        self.conn.handle_outcome(self.now, id, c);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.conn.handle_timeout(self.now);
    }

    /// Every response written so far: correlation id and body.
    fn responses(&mut self, key: ApiKey, version: i16) -> Vec<(i32, Response)> {
        let mut out = BytesMut::new();
        while let Some(b) = self.conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        let mut responses = Vec::new();
        while let Some(f) = frame::split_frame(&mut out, usize::MAX).expect("frame") {
            responses.push(frame::decode_response(f, key, version).expect("response"));
        }
        responses
    }
}

fn batch(n: usize) -> Bytes {
    let b = RecordBatch {
        last_offset_delta: n as i32 - 1,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        records: (0..n)
            .map(|i| Record {
                offset_delta: i as i32,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    b.encode(Compression::None, &mut buf).expect("encode");
    buf.freeze()
}

fn produce(acks: i16, partitions: &[i32]) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: "t".into(),
            partition_data: partitions
                .iter()
                .map(|&index| PartitionProduceData {
                    index,
                    records: Some(batch(2)),
                    ..PartitionProduceData::default()
                })
                .collect(),
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    })
}

fn appended(base: u64) -> Outcome {
    Outcome::Store(Completion::Append(Ok(Appended {
        base_offset: base,
        log_append_time_ms: None,
        log_start: 0,
    })))
}

fn partition_of(c: &Work) -> u32 {
    match c {
        Work::Store(Command::Append { partition, .. })
        | Work::Store(Command::Read { partition, .. }) => *partition,
        other => panic!("not a partition command: {other:?}"),
    }
}

fn produce_offsets(r: &Response) -> Vec<(i32, i16, i64)> {
    let Response::Produce(p) = r else {
        panic!("{r:?}")
    };
    p.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect()
}

#[test]
fn plain_appends_go_out_in_request_order_at_once_and_answers_keep_request_order() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0]));
    h.send(8, 2, &produce(1, &[0, 1]));
    h.send(8, 3, &produce(1, &[1]));
    // Plain appends need not wait for each other: the backend applies them in the order
    // they are handed over, which is request order for each partition.
    let cmds = h.commands();
    let parts: Vec<u32> = cmds.iter().map(|(_, c)| partition_of(c)).collect();
    assert_eq!(parts, [0, 0, 1, 1], "{cmds:?}");
    let ids: Vec<_> = cmds.iter().map(|(id, _)| *id).collect();
    // Completing later appends first answers nothing: request 1 is ahead.
    h.complete(ids[3], appended(1));
    h.complete(ids[2], appended(0));
    h.complete(ids[1], appended(2));
    assert!(h.responses(ApiKey::Produce, 8).is_empty());
    h.complete(ids[0], appended(0));
    let answered = h.responses(ApiKey::Produce, 8);
    let order: Vec<i32> = answered.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, [1, 2, 3]);
    assert_eq!(produce_offsets(&answered[0].1), [(0, 0, 0)]);
    assert_eq!(produce_offsets(&answered[1].1), [(0, 0, 2), (1, 0, 0)]);
    assert_eq!(produce_offsets(&answered[2].1), [(1, 0, 1)]);
}

/// The connection counts, per API, requests, their frames' bytes both ways, timeouts and
/// requests that closed it.
#[test]
fn the_connection_counts_what_it_served() {
    let mut h = Harness::new(Config::default());
    let request = produce(1, &[0]);
    let mut frame = BytesMut::new();
    frame::encode_request(&mut frame, &request, 8, 1, Some("harness")).expect("request");
    h.send(8, 1, &request);
    let cmds = h.commands();
    h.complete(cmds[0].0, appended(0));
    let mut out = BytesMut::new();
    while let Some(b) = h.conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    h.send(8, 2, &produce(1, &[0]));
    h.advance(Duration::from_secs(30));
    h.send(8, 3, &produce(0, &[0]));
    let cmds = h.commands();
    let failed = Outcome::Store(Completion::Append(Err(BackendError::UnknownTopic(
        TopicRef::Name("t".into()),
    ))));
    h.complete(cmds[cmds.len() - 1].0, failed);
    let stats = h.conn.stats();
    assert_eq!(stats.apis.len(), 1);
    let (key, produce) = stats.apis[0];
    assert_eq!(key, ApiKey::Produce);
    assert_eq!(
        (produce.requests, produce.timed_out, produce.closed),
        (3, 1, 1)
    );
    assert_eq!(produce.bytes_in, 3 * frame.len() as u64);
    assert!(produce.bytes_out > out.len() as u64, "two answers");
    assert_eq!(stats.total(), produce);
}

/// Beside the counts, the connection keeps each request's latency, the error codes its
/// answers held (per partition too), what it has in flight, and the records each topic
/// took, with their batches' codecs.
#[test]
fn the_connection_counts_latency_errors_and_records() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0, 1]));
    assert_eq!(h.conn.stats().apis[0].1.in_flight, 1);
    let cmds = h.commands();
    h.advance(Duration::from_millis(3));
    h.complete(cmds[0].0, appended(0));
    let refused = Outcome::Store(Completion::Append(Err(BackendError::UnknownPartition {
        topic: "t".into(),
        partition: 1,
    })));
    h.complete(cmds[1].0, refused);
    let stats = h.conn.stats().clone();
    let (_, produce) = stats.apis[0];
    assert_eq!(produce.in_flight, 0);
    assert_eq!(produce.latency.count(), 1);
    assert_eq!(produce.latency.sum, Duration::from_millis(3));
    assert_eq!(
        stats.errors,
        vec![(ApiKey::Produce, 3, 1)],
        "UNKNOWN_TOPIC_OR_PARTITION, once"
    );
    let t = stats.topics.get("t").expect("topic t");
    assert_eq!(
        t.produced_records, 2,
        "only the appended partition's records"
    );
    assert_eq!(t.produced_bytes, batch(2).len() as u64);
    assert_eq!(
        stats.batches,
        [2, 0, 0, 0, 0],
        "two uncompressed batches decoded"
    );

    h.send(12, 2, &fetch(0, 1));
    let cmds = h.commands();
    h.complete(cmds[0].0, read(&[0, 1, 2], 3));
    let t = h.conn.stats().topics["t"];
    assert_eq!(t.fetched_records, 3);
    assert!(t.fetched_bytes > 0);
}

fn idempotent_produce(sequence: i32) -> Request {
    let b = RecordBatch {
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: sequence,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        records: vec![Record {
            value: Some(Bytes::from_static(b"v")),
            ..Record::default()
        }],
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    b.encode(Compression::None, &mut buf).expect("encode");
    Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: "t".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(buf.freeze()),
                ..PartitionProduceData::default()
            }],
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    })
}

/// An idempotent producer's appends to a partition go one at a time (the backend checks
/// each against the ones before it), and a plain append behind one waits its turn.
#[test]
fn idempotent_appends_wait_for_each_other_and_hold_back_what_follows() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0]));
    h.send(8, 2, &idempotent_produce(0));
    h.send(8, 3, &idempotent_produce(1));
    h.send(8, 4, &produce(1, &[0]));
    let first = h.commands();
    assert_eq!(
        first.len(),
        1,
        "the idempotent append waits for the plain one: {first:?}"
    );
    h.complete(first[0].0, appended(0));
    let second = h.commands();
    assert!(
        matches!(&second[..], [(_, Work::Store(Command::Append { producer: Some(p), .. }))] if p.first_sequence == 0),
        "{second:?}"
    );
    h.complete(second[0].0, appended(1));
    let third = h.commands();
    assert!(
        matches!(&third[..], [(_, Work::Store(Command::Append { producer: Some(p), .. }))] if p.first_sequence == 1),
        "{third:?}"
    );
    h.complete(third[0].0, appended(2));
    let fourth = h.commands();
    assert!(
        matches!(
            &fourth[..],
            [(_, Work::Store(Command::Append { producer: None, .. }))]
        ),
        "{fourth:?}"
    );
    h.complete(fourth[0].0, appended(3));
    let order: Vec<i32> = h
        .responses(ApiKey::Produce, 8)
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(order, [1, 2, 3, 4]);
}

#[test]
fn appends_carry_the_records_mapped_to_iggy_messages() {
    let mut h = Harness::new(Config::default());
    h.send(3, 1, &produce(-1, &[0]));
    let cmds = h.commands();
    let Work::Store(Command::Append {
        topic, messages, ..
    }) = &cmds[0].1
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(topic, "t");
    let batches =
        decode_batches(&batch(2), &mut DecompressionBudget::new(1 << 20), false).expect("decode");
    let expected: Vec<_> = batches[0]
        .records
        .iter()
        .map(|r| {
            to_iggy(&KafkaRecord {
                timestamp_ms: batches[0].base_timestamp + r.timestamp_delta,
                key: r.key.clone(),
                value: r.value.clone(),
                ..KafkaRecord::default()
            })
        })
        .collect();
    assert_eq!(messages.clone().into_messages(), expected);
}

#[test]
fn acks_zero_is_silent_and_its_failure_closes_the_connection() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(0, &[0]));
    let cmds = h.commands();
    h.complete(cmds[0].0, appended(0));
    assert!(h.responses(ApiKey::Produce, 8).is_empty());
    assert!(h.conn.close_reason().is_none());
    h.send(8, 2, &produce(0, &[0]));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::Append(Err(BackendError::UnknownTopic(
            TopicRef::Name("t".into()),
        )))),
    );
    assert!(h.responses(ApiKey::Produce, 8).is_empty());
    assert!(matches!(
        h.conn.close_reason(),
        Some(CloseReason::ProduceFailed(_))
    ));
    assert!(h.conn.is_closed());
}

#[test]
fn a_produce_whose_append_hangs_gets_request_timed_out() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0]));
    let cmds = h.commands();
    h.advance(Duration::from_secs(29));
    assert!(h.responses(ApiKey::Produce, 8).is_empty());
    h.advance(Duration::from_secs(1));
    let answered = h.responses(ApiKey::Produce, 8);
    assert_eq!(produce_offsets(&answered[0].1), [(0, 7, -1)]);
    // The late completion is dropped.
    h.complete(cmds[0].0, appended(0));
    assert!(h.responses(ApiKey::Produce, 8).is_empty());
    assert!(h.conn.close_reason().is_none());
}

fn fetch(max_wait_ms: i32, min_bytes: i32) -> Request {
    Request::Fetch(FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: "t".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 5,
                partition_max_bytes: 1 << 20,
                ..FetchPartition::default()
            }],
            ..FetchTopic::default()
        }],
        ..FetchRequest::default()
    })
}

fn read(messages: &[u64], hw: u64) -> Outcome {
    Outcome::Store(Completion::Read(Ok(ReadResult {
        topic: "t".into(),
        messages: Messages::from_offsets(messages.iter().map(|&offset| {
            (
                offset,
                to_iggy(&KafkaRecord {
                    timestamp_ms: 1000,
                    value: Some(Bytes::from(format!("m{offset}"))),
                    ..KafkaRecord::default()
                }),
            )
        })),
        offsets: PartitionOffsets {
            log_start: 0,
            high_watermark: hw,
            size_bytes: None,
            last_stable: None,
        },
        aborted: Vec::new(),
    })))
}

fn fetched(r: &Response) -> (i16, i64, Vec<(i64, Bytes)>) {
    let Response::Fetch(f) = r else {
        panic!("{r:?}")
    };
    let p = &f.responses[0].partitions[0];
    let records = p.records.clone().unwrap_or_default();
    let batches =
        decode_batches(&records, &mut DecompressionBudget::new(1 << 20), false).expect("batches");
    let values = batches
        .iter()
        .flat_map(|b| {
            b.records.iter().map(move |r| {
                (
                    b.base_offset + i64::from(r.offset_delta),
                    r.value.clone().unwrap_or_default(),
                )
            })
        })
        .collect();
    (p.error_code, p.high_watermark, values)
}

#[test]
fn fetch_long_polls_until_data_arrives() {
    let mut h = Harness::new(Config::default());
    h.send(11, 1, &fetch(500, 1));
    let cmds = h.commands();
    assert!(matches!(
        cmds[0].1,
        Work::Store(Command::Read { offset: 5, .. })
    ));
    h.complete(cmds[0].0, read(&[], 5));
    // Nothing yet: it watches the partition instead of answering or polling.
    let cmds = h.commands();
    assert!(
        matches!(&cmds[0].1, Work::Store(Command::Watch { partitions, .. }) if partitions[0].offset == 5)
    );
    assert_eq!(
        h.conn.poll_timeout(),
        Some(h.now + Duration::from_millis(500))
    );
    assert!(h.responses(ApiKey::Fetch, 11).is_empty());
    h.now += Duration::from_millis(100);
    h.complete(cmds[0].0, Outcome::Store(Completion::Watch));
    let cmds = h.commands();
    h.complete(cmds[0].0, read(&[5, 6], 7));
    let answered = h.responses(ApiKey::Fetch, 11);
    let (code, hw, values) = fetched(&answered[0].1);
    assert_eq!((code, hw), (0, 7));
    assert_eq!(values, [(5, Bytes::from("m5")), (6, Bytes::from("m6"))]);
}

#[test]
fn fetch_answers_empty_at_its_deadline() {
    let mut h = Harness::new(Config::default());
    h.send(11, 1, &fetch(500, 1));
    let cmds = h.commands();
    h.complete(cmds[0].0, read(&[], 5));
    let watch = h.commands();
    h.advance(Duration::from_millis(499));
    assert!(h.commands().is_empty());
    h.advance(Duration::from_millis(1));
    let cmds = h.commands();
    assert!(
        matches!(cmds[0].1, Work::Store(Command::Read { .. })),
        "one last read"
    );
    h.complete(cmds[0].0, read(&[], 5));
    let answered = h.responses(ApiKey::Fetch, 11);
    assert_eq!(fetched(&answered[0].1), (0, 5, vec![]));
    // A watch completing late changes nothing.
    h.complete(watch[0].0, Outcome::Store(Completion::Watch));
    assert!(h.commands().is_empty());
}

#[test]
fn fetch_reports_offset_out_of_range_per_partition() {
    let mut h = Harness::new(Config::default());
    h.send(11, 1, &fetch(0, 1));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::Read(Err(BackendError::OffsetOutOfRange {
            offset: 5,
            log_start: 0,
            high_watermark: 3,
        }))),
    );
    let answered = h.responses(ApiKey::Fetch, 11);
    assert_eq!(fetched(&answered[0].1), (1, 3, vec![]));
}

/// A read the backend cannot serve now (Iggy unreachable) is KAFKA_STORAGE_ERROR for its
/// partition, which consumers retry quietly, not REQUEST_TIMED_OUT; so is a read that did
/// not finish in time.
#[test]
fn fetch_reports_an_unavailable_backend_as_a_storage_error() {
    let mut h = Harness::new(Config::default());
    h.send(11, 1, &fetch(0, 1));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::Read(Err(BackendError::Unavailable(
            "iggy: connection closed".into(),
        )))),
    );
    let answered = h.responses(ApiKey::Fetch, 11);
    assert_eq!(fetched(&answered[0].1).0, 56);

    let config = Config::default();
    let timeout = config.request_timeout;
    let mut h = Harness::new(config);
    h.send(11, 2, &fetch(0, 1));
    assert_eq!(h.commands().len(), 1, "the read, left unanswered");
    h.advance(timeout);
    let answered = h.responses(ApiKey::Fetch, 11);
    assert_eq!(fetched(&answered[0].1).0, 56);
}

#[test]
fn topic_administration_waits_for_earlier_appends_and_holds_later_ones() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0]));
    let create = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "other".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..CreatableTopic::default()
        }],
        ..CreateTopicsRequest::default()
    });
    h.send(5, 2, &create);
    h.send(8, 3, &produce(1, &[1]));
    let first = h.commands();
    assert_eq!(first.len(), 1, "only the first append: {first:?}");
    h.complete(first[0].0, appended(0));
    let second = h.commands();
    assert_eq!(second.len(), 1);
    assert!(matches!(
        second[0].1,
        Work::Store(Command::CreateTopic { .. })
    ));
    h.complete(
        second[0].0,
        Outcome::Store(Completion::CreateTopic(Ok(TopicInfo {
            name: "other".into(),
            id: iggy_kafka_core::protocol::Uuid([1; 16]),
            partitions: 1,
            config: Default::default(),
        }))),
    );
    let third = h.commands();
    assert!(matches!(
        third[0].1,
        Work::Store(Command::Append { partition: 1, .. })
    ));
}

#[test]
fn requests_in_flight_are_bounded() {
    let mut config = Config::default();
    config.max_in_flight_requests = 2;
    let mut h = Harness::new(config);
    h.send(8, 1, &produce(1, &[0]));
    h.send(8, 2, &produce(1, &[1]));
    assert!(!h.conn.wants_input(), "two requests in flight");
    let cmds = h.commands();
    h.complete(cmds[0].0, appended(0));
    assert!(h.conn.wants_input());
}

#[test]
fn shutdown_finishes_requests_in_flight_and_ends_long_polls() {
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &produce(1, &[0]));
    h.send(11, 2, &fetch(10_000, 1));
    let cmds = h.commands();
    h.conn.shutdown();
    assert!(!h.conn.is_closed(), "requests are still in flight");
    // The read completes empty; the closing connection answers instead of waiting.
    h.complete(cmds[1].0, read(&[], 5));
    h.complete(cmds[0].0, appended(0));
    let mut out = 0;
    while h.conn.poll_transmit().is_some() {
        out += 1;
    }
    assert!(out > 0);
    assert!(h.conn.is_closed());
}

fn offset_commit(group: &str, offset: i64) -> Request {
    use iggy_kafka_core::protocol::generated::offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                ..OffsetCommitRequestPartition::default()
            }],
            ..OffsetCommitRequestTopic::default()
        }],
        ..OffsetCommitRequest::default()
    })
}

/// A JoinGroup waits for its rebalance, which may rightly take longer than the request
/// timeout: it is not answered with a timeout while the rebalance timeout runs.
#[test]
fn a_join_waits_for_its_rebalance_beyond_the_request_timeout() {
    use iggy_kafka_core::group::{GroupCall, GroupReply, JoinResult};
    use iggy_kafka_core::protocol::generated::join_group_request::{
        JoinGroupRequest, JoinGroupRequestProtocol,
    };
    let mut config = Config::default();
    config.request_timeout = Duration::from_secs(5);
    let mut h = Harness::new(config);
    let join = Request::JoinGroup(JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 60_000,
        member_id: "m".into(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            ..JoinGroupRequestProtocol::default()
        }],
        ..JoinGroupRequest::default()
    });
    h.send(5, 1, &join);
    let cmds = h.commands();
    let [(id, Work::Group(GroupCall::Join(args)))] = &cmds[..] else {
        panic!("one join call: {cmds:?}")
    };
    assert_eq!(args.client_id, "harness");
    assert!(args.require_known_member_id, "v4+");
    h.advance(Duration::from_secs(30));
    assert!(
        h.responses(ApiKey::JoinGroup, 5).is_empty(),
        "still waiting"
    );
    h.complete(
        *id,
        Outcome::Group(GroupReply::Join(JoinResult {
            generation: 3,
            member_id: "m".into(),
            leader: "m".into(),
            protocol_name: Some("range".into()),
            ..JoinResult::default()
        })),
    );
    let r = h.responses(ApiKey::JoinGroup, 5);
    let Response::JoinGroup(j) = &r[0].1 else {
        panic!("JoinGroup")
    };
    assert_eq!((j.error_code, j.generation_id), (0, 3));
}

/// A group coordinator's call that the store does not answer in time, or answers as
/// unavailable, is COORDINATOR_NOT_AVAILABLE, as Kafka's coordinator answers a write of its
/// log that timed out: clients retry it, where REQUEST_TIMED_OUT ends a Java KIP-848
/// consumer.
#[test]
fn group_calls_the_store_leaves_unanswered_are_coordinator_not_available() {
    use iggy_kafka_core::backend::BackendError;
    use iggy_kafka_core::group::{GroupCall, GroupReply};
    use iggy_kafka_core::protocol::error_code::ErrorCode;
    let commit_codes = |r: &[(i32, Response)]| -> Vec<i16> {
        let Response::OffsetCommit(c) = &r[0].1 else {
            panic!("OffsetCommit")
        };
        c.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect()
    };
    let mut config = Config::default();
    config.request_timeout = Duration::from_secs(5);
    let mut h = Harness::new(config);
    // A commit whose write hangs past the request timeout.
    h.send(8, 1, &offset_commit("g", 5));
    let cmds = h.commands();
    assert!(matches!(&cmds[0].1, Work::Group(GroupCall::Commit(_))));
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    let write = h.commands();
    assert_eq!(write.len(), 1, "the write");
    h.advance(Duration::from_secs(5));
    let answered = h.responses(ApiKey::OffsetCommit, 8);
    assert_eq!(
        commit_codes(&answered),
        [i16::from(ErrorCode::COORDINATOR_NOT_AVAILABLE)]
    );
    // The write ends late; the group's next call goes after it.
    h.complete(
        write[0].0,
        Outcome::Store(Completion::CommitOffsets(vec![Ok(())])),
    );
    // A commit the store refuses as unavailable.
    h.send(8, 2, &offset_commit("g", 6));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::CommitOffsets(vec![Err(
            BackendError::Unavailable("Iggy did not answer".into()),
        )])),
    );
    let answered = h.responses(ApiKey::OffsetCommit, 8);
    assert_eq!(
        commit_codes(&answered),
        [i16::from(ErrorCode::COORDINATOR_NOT_AVAILABLE)]
    );
    // A heartbeat the coordinator does not answer in time.
    use iggy_kafka_core::protocol::generated::heartbeat_request::HeartbeatRequest;
    h.send(
        4,
        3,
        &Request::Heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            ..HeartbeatRequest::default()
        }),
    );
    assert_eq!(h.commands().len(), 1, "the heartbeat's call");
    h.advance(Duration::from_secs(5));
    let answered = h.responses(ApiKey::Heartbeat, 4);
    let Response::Heartbeat(hb) = &answered[0].1 else {
        panic!("Heartbeat")
    };
    assert_eq!(
        hb.error_code,
        i16::from(ErrorCode::COORDINATOR_NOT_AVAILABLE)
    );
}

/// A commit and a fetch of one group's offsets pipelined on one connection reach the
/// backend one after the other, so the fetch sees the commit.
#[test]
fn group_offset_commands_keep_request_order() {
    use iggy_kafka_core::group::{GroupCall, GroupReply};
    use iggy_kafka_core::protocol::error_code::ErrorCode;
    use iggy_kafka_core::protocol::generated::offset_fetch_request::OffsetFetchRequest;
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &offset_commit("g", 5));
    h.send(
        7,
        2,
        &Request::OffsetFetch(OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
            ..OffsetFetchRequest::default()
        }),
    );
    h.send(8, 3, &offset_commit("other", 1));
    let cmds = h.commands();
    // The commit's coordinator check for "g" and the whole of "other" may go; the fetch of
    // "g" waits behind the commit.
    assert!(matches!(&cmds[0].1, Work::Group(GroupCall::Commit(m)) if m.group == "g"));
    assert!(
        !cmds
            .iter()
            .any(|(_, c)| matches!(c, Work::Store(Command::FetchOffsets { .. }))),
        "the fetch waits: {cmds:?}"
    );
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    let next = h.commands();
    let [(commit_id, Work::Store(Command::CommitOffsets { group, offsets }))] = &next[..] else {
        panic!("the commit goes to the backend next: {next:?}")
    };
    assert_eq!((group.as_str(), offsets[0].committed.offset), ("g", 5));
    assert!(h.commands().is_empty());
    h.complete(
        *commit_id,
        Outcome::Store(Completion::CommitOffsets(vec![Ok(())])),
    );
    let next = h.commands();
    assert!(
        matches!(&next[..], [(_, Work::Store(Command::FetchOffsets { group, only: None }))] if group == "g"),
        "then the fetch: {next:?}"
    );
}

/// A commit whose write to the store hangs (the store's node stalled) is answered after
/// Kafka's `offsets.commit.timeout.ms` (5 s), well within any session timeout, and the
/// member's heartbeat queued behind it then reaches the coordinator while the write still
/// hangs: a stalled write must not cost the member its session. The group's next offsets
/// requests still wait for the hanging write, as long and no longer, so the offsets keep
/// their order, and a request answered meanwhile does nothing once the write ends.
#[test]
fn a_commit_whose_write_hangs_holds_the_members_heartbeats_back_only_briefly() {
    use iggy_kafka_core::group::{GroupCall, GroupReply};
    use iggy_kafka_core::protocol::generated::heartbeat_request::HeartbeatRequest;
    let mut h = Harness::new(Config::default());
    h.send(8, 1, &offset_commit("g", 5));
    let cmds = h.commands();
    assert!(matches!(&cmds[0].1, Work::Group(GroupCall::Commit(_))));
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    let hanging = h.commands();
    assert!(
        matches!(
            &hanging[..],
            [(_, Work::Store(Command::CommitOffsets { .. }))]
        ),
        "the write: {hanging:?}"
    );
    h.advance(Duration::from_secs(3));
    let heartbeat = Request::Heartbeat(HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: "m".into(),
        ..HeartbeatRequest::default()
    });
    h.send(4, 2, &heartbeat);
    assert!(h.commands().is_empty(), "behind the commit, as in Kafka");
    h.advance(Duration::from_secs(2));
    let answered = h.responses(ApiKey::OffsetCommit, 8);
    let [(1, Response::OffsetCommit(c))] = &answered[..] else {
        panic!("the commit is answered 5 s after its write went out: {answered:?}")
    };
    assert_eq!(
        c.topics[0].partitions[0].error_code,
        i16::from(ErrorCode::COORDINATOR_NOT_AVAILABLE)
    );
    // The member's heartbeat reaches the coordinator and is answered.
    let beat_goes = |h: &mut Harness| {
        let beat = h.commands();
        let [(beat_id, Work::Group(GroupCall::Heartbeat(_)))] = &beat[..] else {
            panic!("the heartbeat goes while the write hangs: {beat:?}")
        };
        h.complete(
            *beat_id,
            Outcome::Group(GroupReply::Heartbeat(ErrorCode::NONE)),
        );
        assert_eq!(h.responses(ApiKey::Heartbeat, 4).len(), 1);
    };
    beat_goes(&mut h);
    // The member commits again: its check goes, its write waits for the hanging one.
    h.send(8, 3, &offset_commit("g", 7));
    let cmds = h.commands();
    assert!(matches!(
        &cmds[..],
        [(_, Work::Group(GroupCall::Commit(_)))]
    ));
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    assert!(
        h.commands().is_empty(),
        "the second write waits for the first"
    );
    // It too is answered after 5 s, and the heartbeats go on behind it.
    h.advance(Duration::from_secs(5));
    let answered = h.responses(ApiKey::OffsetCommit, 8);
    assert!(
        matches!(&answered[..], [(3, Response::OffsetCommit(_))]),
        "{answered:?}"
    );
    let beat_at_once = |h: &mut Harness, correlation: i32| {
        h.send(4, correlation, &heartbeat);
        beat_goes(h);
    };
    beat_at_once(&mut h, 4);
    // A fetch of the group's offsets waits for the hanging write as long as a commit does.
    h.send(
        7,
        5,
        &Request::OffsetFetch(
            iggy_kafka_core::protocol::generated::offset_fetch_request::OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
                ..Default::default()
            },
        ),
    );
    assert!(h.commands().is_empty(), "the read waits for the write");
    h.advance(Duration::from_secs(5));
    assert_eq!(h.responses(ApiKey::OffsetFetch, 7).len(), 1);
    beat_at_once(&mut h, 6);
    // The hanging write ends: the requests answered meanwhile do nothing more (the second
    // commit, answered as failed, is not written on its membership check of long ago).
    h.complete(
        hanging[0].0,
        Outcome::Store(Completion::CommitOffsets(vec![Ok(())])),
    );
    let after = h.commands();
    assert!(
        after.is_empty(),
        "nothing of the answered requests: {after:?}"
    );
    // The group's next commit is written at once.
    h.send(8, 7, &offset_commit("g", 9));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Group(GroupReply::Commit(ErrorCode::NONE)),
    );
    let next = h.commands();
    let [(_, Work::Store(Command::CommitOffsets { offsets, .. }))] = &next[..] else {
        panic!("the next write: {next:?}")
    };
    assert_eq!(offsets[0].committed.offset, 9);
}

/// DeleteGroups asks the coordinator about each group on its own, so each answer waits for
/// its own group's write; only the groups deleted lose their offsets, and a group whose
/// deletion could not be written is COORDINATOR_NOT_AVAILABLE, its offsets kept.
#[test]
fn delete_groups_deletes_offsets_only_of_groups_whose_deletion_was_written() {
    use iggy_kafka_core::group::{Deletion, GroupCall, GroupReply};
    use iggy_kafka_core::protocol::generated::delete_groups_request::DeleteGroupsRequest;
    let mut h = Harness::new(Config::default());
    h.send(
        2,
        1,
        &Request::DeleteGroups(DeleteGroupsRequest {
            groups_names: vec!["a".into(), "b".into(), "c".into()],
            ..DeleteGroupsRequest::default()
        }),
    );
    let cmds = h.commands();
    let asked: Vec<&Vec<String>> = cmds
        .iter()
        .map(|(_, c)| match c {
            Work::Group(GroupCall::Delete(g)) => g,
            other => panic!("a group deletion: {other:?}"),
        })
        .collect();
    assert_eq!(
        asked,
        [
            &vec!["a".to_owned()],
            &vec!["b".to_owned()],
            &vec!["c".to_owned()]
        ]
    );
    for (i, d) in [
        (2, Deletion::NonEmpty),
        (0, Deletion::NotKept),
        (1, Deletion::Deleted),
    ] {
        h.complete(cmds[i].0, Outcome::Group(GroupReply::Delete(vec![d])));
    }
    let next = h.commands();
    let [(id, Work::Store(Command::DeleteOffsets { group, only: None }))] = &next[..] else {
        panic!("only b's offsets are deleted: {next:?}")
    };
    assert_eq!(group, "b");
    h.complete(*id, Outcome::Store(Completion::DeleteOffsets(Ok(2))));
    let r = h.responses(ApiKey::DeleteGroups, 2);
    let Response::DeleteGroups(r) = &r[0].1 else {
        panic!("DeleteGroups")
    };
    let codes: Vec<(&str, i16)> = r
        .results
        .iter()
        .map(|g| (g.group_id.as_str(), g.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("a", ErrorCode::COORDINATOR_NOT_AVAILABLE.into()),
            ("b", 0),
            ("c", ErrorCode::NON_EMPTY_GROUP.into())
        ]
    );
}

/// An idempotent producer's batch carries its producer id, epoch and sequence span to the
/// backend, which appends a retry only once; a plain batch carries none.
#[test]
fn idempotent_batches_carry_their_sequences_to_the_backend() {
    use iggy_kafka_core::backend::ProducerBatch;
    let idempotent = {
        let b = RecordBatch {
            last_offset_delta: 2,
            producer_id: 5,
            producer_epoch: 1,
            base_sequence: 10,
            records: (0..3)
                .map(|i| Record {
                    offset_delta: i,
                    value: Some(Bytes::from_static(b"v")),
                    ..Record::default()
                })
                .collect(),
            ..RecordBatch::default()
        };
        let mut buf = BytesMut::new();
        b.encode(Compression::None, &mut buf).expect("encode");
        buf.freeze()
    };
    let mut h = Harness::new(Config::default());
    let Request::Produce(mut req) = produce(1, &[0, 1]) else {
        unreachable!()
    };
    req.topic_data[0].partition_data[0].records = Some(idempotent);
    h.send(9, 1, &Request::Produce(req));
    let producers: Vec<Option<ProducerBatch>> = h
        .commands()
        .into_iter()
        .map(|(_, c)| match c {
            Work::Store(Command::Append { producer, .. }) => producer,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        producers,
        vec![
            Some(ProducerBatch {
                producer_id: 5,
                epoch: 1,
                first_sequence: 10,
                count: 3,
                transactional: false,
            }),
            None
        ]
    );
}

/// Topics that cannot be listed now (Iggy unreachable) are LEADER_NOT_AVAILABLE, which
/// clients retry, not UNKNOWN_TOPIC_OR_PARTITION, which has consumers drop them; and none
/// is auto-created on the guess that it is missing.
#[test]
fn metadata_that_cannot_be_listed_is_not_a_missing_topic() {
    use iggy_kafka_core::protocol::generated::metadata_request::{
        MetadataRequest, MetadataRequestTopic,
    };
    let mut h = Harness::new(Config::default());
    let metadata = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("t".into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: true,
        ..MetadataRequest::default()
    });
    h.send(12, 1, &metadata);
    let cmds = h.commands();
    assert!(matches!(cmds[0].1, Work::Store(Command::ListTopics { .. })));
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::ListTopics(Err(BackendError::Unavailable(
            "iggy: connection refused".into(),
        )))),
    );
    assert!(h.commands().is_empty(), "nothing created");
    let answered = h.responses(ApiKey::Metadata, 12);
    let Response::Metadata(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].error_code, 5);
}

/// A gateway whose principals hold Iggy permissions: `reader` may read topic `t` of stream
/// `kafka`, `writer` may write to every topic of it, `u-reader` may poll topic `u`, `admin` may
/// manage every stream, and `root` is a super user.
fn authorized(principal: &str) -> Harness {
    use iggy_kafka_core::authz::{PermissionAuthorizer, Permissions, StreamPermissions};
    let authorizer = PermissionAuthorizer::new(vec!["root".to_owned()], |t: &str| {
        ("kafka".to_owned(), t.to_owned())
    });
    let mut reader = Permissions::default();
    let mut stream = StreamPermissions::default();
    stream.topics.insert(
        "t".into(),
        iggy_kafka_core::authz::TopicPermissions {
            read_topic: true,
            ..Default::default()
        },
    );
    reader.streams.insert("kafka".into(), stream);
    authorizer.set("reader", reader);
    let mut writer = Permissions::default();
    writer.streams.insert(
        "kafka".into(),
        StreamPermissions {
            send_messages: true,
            ..StreamPermissions::default()
        },
    );
    authorizer.set("writer", writer);
    let mut u_reader = Permissions::default();
    let mut stream = StreamPermissions::default();
    stream.topics.insert(
        "u".into(),
        iggy_kafka_core::authz::TopicPermissions {
            poll_messages: true,
            ..Default::default()
        },
    );
    u_reader.streams.insert("kafka".into(), stream);
    authorizer.set("u-reader", u_reader);
    let mut admin = Permissions::default();
    admin.global.manage_streams = true;
    authorizer.set("admin", admin);
    let mut config = Config::default();
    config.authorizer = Some(Arc::new(authorizer));
    let mut h = Harness::new(config);
    h.conn.set_peer_principal(principal);
    h
}

fn topic_info(name: &str) -> TopicInfo {
    TopicInfo {
        name: name.into(),
        id: iggy_kafka_core::protocol::Uuid([name.len() as u8; 16]),
        partitions: 1,
        config: Default::default(),
    }
}

/// Metadata's authorized operations are what each principal's Iggy permissions allow, bit
/// by Kafka's ACL operation bit, for the topics and for the cluster.
#[test]
fn authorized_operations_follow_each_principals_permissions() {
    use iggy_kafka_core::protocol::generated::metadata_request::MetadataRequest;
    const READ: i32 = 1 << 3;
    const WRITE: i32 = 1 << 4;
    const CREATE: i32 = 1 << 5;
    const DELETE: i32 = 1 << 6;
    const ALTER: i32 = 1 << 7;
    const DESCRIBE: i32 = 1 << 8;
    const CLUSTER_ACTION: i32 = 1 << 9;
    const DESCRIBE_CONFIGS: i32 = 1 << 10;
    const ALTER_CONFIGS: i32 = 1 << 11;
    const IDEMPOTENT_WRITE: i32 = 1 << 12;
    let every_topic_op =
        READ | WRITE | CREATE | DELETE | ALTER | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
    let every_cluster_op = CREATE
        | CLUSTER_ACTION
        | DESCRIBE_CONFIGS
        | ALTER_CONFIGS
        | IDEMPOTENT_WRITE
        | ALTER
        | DESCRIBE;
    let ops = |principal: &str| {
        let mut h = authorized(principal);
        let request = MetadataRequest {
            topics: None,
            include_cluster_authorized_operations: true,
            include_topic_authorized_operations: true,
            ..MetadataRequest::default()
        };
        h.send(10, 1, &Request::Metadata(request));
        let cmds = h.commands();
        h.complete(
            cmds[0].0,
            Outcome::Store(Completion::ListTopics(Ok(vec![topic_info("t")]))),
        );
        let answered = h.responses(ApiKey::Metadata, 10);
        let Response::Metadata(r) = &answered[0].1 else {
            panic!("{answered:?}")
        };
        (
            r.topics
                .first()
                .map_or(i32::MIN, |t| t.topic_authorized_operations),
            r.cluster_authorized_operations,
        )
    };
    // Iggy's read_topic includes polling.
    assert_eq!(
        ops("reader"),
        (READ | DESCRIBE | DESCRIBE_CONFIGS, IDEMPOTENT_WRITE)
    );
    assert_eq!(
        ops("writer"),
        (WRITE | DESCRIBE | DESCRIBE_CONFIGS, IDEMPOTENT_WRITE)
    );
    assert_eq!(ops("admin"), (every_topic_op, CREATE | IDEMPOTENT_WRITE));
    assert_eq!(ops("root"), (every_topic_op, every_cluster_op));
    // Without authorization, everything.
    let mut h = Harness::new(Config::default());
    let request = MetadataRequest {
        topics: None,
        include_cluster_authorized_operations: true,
        ..MetadataRequest::default()
    };
    h.send(10, 1, &Request::Metadata(request));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::ListTopics(Ok(vec![]))),
    );
    let answered = h.responses(ApiKey::Metadata, 10);
    let Response::Metadata(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.cluster_authorized_operations, every_cluster_op);
}

/// Each principal gets what its Iggy permissions allow, and the rest is refused with the
/// code Kafka puts there, without the backend being asked to change anything.
#[test]
fn permissions_decide_what_each_principal_may_do() {
    use iggy_kafka_core::protocol::generated::metadata_request::{
        MetadataRequest, MetadataRequestTopic,
    };
    // A reader cannot produce: no append, TOPIC_AUTHORIZATION_FAILED.
    let mut h = authorized("reader");
    h.send(9, 1, &produce(1, &[0]));
    assert!(h.commands().is_empty());
    let answered = h.responses(ApiKey::Produce, 9);
    assert_eq!(produce_offsets(&answered[0].1), vec![(0, 29, -1)]);
    // A writer can.
    let mut h = authorized("writer");
    h.send(9, 1, &produce(1, &[0]));
    assert!(matches!(
        h.commands()[..],
        [(_, Work::Store(Command::Append { .. }))]
    ));

    // A reader fetches; a writer may not (no read is made by name).
    let mut h = authorized("reader");
    h.send(12, 1, &fetch(0, 0));
    assert!(matches!(
        h.commands()[..],
        [(_, Work::Store(Command::Read { .. }))]
    ));
    let mut h = authorized("writer");
    h.send(12, 1, &fetch(0, 0));
    assert!(h.commands().is_empty());
    let answered = h.responses(ApiKey::Fetch, 12);
    assert_eq!(fetched(&answered[0].1).0, 29);

    // Creating topics needs manage_topics on the stream.
    let create = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "new".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..CreatableTopic::default()
        }],
        timeout_ms: 1000,
        ..CreateTopicsRequest::default()
    });
    let mut h = authorized("writer");
    h.send(7, 1, &create);
    assert!(h.commands().is_empty());
    let answered = h.responses(ApiKey::CreateTopics, 7);
    let Response::CreateTopics(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.topics[0].error_code, 29);
    let mut h = authorized("admin");
    h.send(7, 1, &create);
    assert!(matches!(
        h.commands()[..],
        [(_, Work::Store(Command::CreateTopic { .. }))]
    ));

    // Committing offsets needs poll on the topic (and READ on the group, which polling some
    // other topic gives).
    let mut h = authorized("u-reader");
    h.send(8, 1, &offset_commit("g", 3));
    let cmds = h.commands();
    assert_eq!(cmds.len(), 1, "the membership check only");
    h.complete(
        cmds[0].0,
        Outcome::Group(iggy_kafka_core::group::GroupReply::Commit(
            iggy_kafka_core::protocol::error_code::ErrorCode::NONE,
        )),
    );
    assert!(h.commands().is_empty(), "nothing stored");

    // Metadata lists what the principal may see, refuses what it names and may not see,
    // and does not auto-create for a principal that may not create.
    let mut h = authorized("reader");
    let all = MetadataRequest {
        topics: None,
        ..MetadataRequest::default()
    };
    h.send(12, 1, &Request::Metadata(all));
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::ListTopics(Ok(vec![
            topic_info("t"),
            topic_info("secret"),
        ]))),
    );
    let answered = h.responses(ApiKey::Metadata, 12);
    let Response::Metadata(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    let names: Vec<String> = r
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(names, ["t"]);
    let named = Request::Metadata(MetadataRequest {
        topics: Some(
            ["secret", "missing"]
                .into_iter()
                .map(|n| MetadataRequestTopic {
                    name: Some(n.into()),
                    ..MetadataRequestTopic::default()
                })
                .collect(),
        ),
        allow_auto_topic_creation: true,
        ..MetadataRequest::default()
    });
    let mut h = authorized("reader");
    h.send(12, 2, &named);
    let cmds = h.commands();
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::ListTopics(Ok(vec![topic_info("secret")]))),
    );
    assert!(h.commands().is_empty(), "nothing auto-created");
    let answered = h.responses(ApiKey::Metadata, 12);
    let Response::Metadata(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [29, 29]);
}

/// A gateway whose permissions come from the backend, asked again every 5 s.
fn permissions_from_backend() -> Harness {
    use iggy_kafka_core::authz::PermissionAuthorizer;
    let authorizer =
        PermissionAuthorizer::new(Vec::new(), |t: &str| ("kafka".to_owned(), t.to_owned()))
            .from_backend(Duration::from_secs(5));
    let mut config = Config::default();
    config.authorizer = Some(Arc::new(authorizer));
    Harness::new(config)
}

/// Permissions from the backend (Iggy's users): asked for as soon as the principal is
/// known, with nothing served before they arrive, and asked again on the clock, so that a
/// permission changed in Iggy takes effect within the refresh interval.
#[test]
fn permissions_from_the_backend_are_awaited_and_refreshed() {
    use iggy_kafka_core::authz::Permissions;
    let mut h = permissions_from_backend();
    h.conn.set_peer_principal("carol");
    // The question goes out before anything is read.
    let cmds = h.commands();
    let [(ask, Work::Store(Command::UserPermissions { user }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_eq!(user, "carol");
    assert!(!h.conn.wants_input());
    let mut buf = BytesMut::new();
    frame::encode_request(&mut buf, &produce(1, &[0]), 9, 1, None).expect("request");
    h.conn.handle_input(h.now, &mut buf);
    assert!(h.commands().is_empty(), "nothing served before the answer");
    let mut writer = Permissions::default();
    writer.global.send_messages = true;
    h.complete(
        *ask,
        Outcome::Store(Completion::UserPermissions(Ok(Some(writer)))),
    );
    assert!(h.conn.wants_input());
    h.conn.handle_input(h.now, &mut buf);
    let cmds = h.commands();
    let [(append, Work::Store(Command::Append { .. }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    h.complete(*append, appended(0));
    let _ = h.responses(ApiKey::Produce, 9);

    // Five seconds on, asked again; the user is gone from the backend now.
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    h.advance(Duration::from_secs(5));
    let cmds = h.commands();
    let [(again, Work::Store(Command::UserPermissions { .. }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    // Served meanwhile with what was known.
    assert!(h.conn.wants_input());
    h.complete(
        *again,
        Outcome::Store(Completion::UserPermissions(Ok(None))),
    );
    h.send(9, 2, &produce(1, &[0]));
    assert!(h.commands().is_empty(), "refused now");
    let answered = h.responses(ApiKey::Produce, 9);
    assert_eq!(produce_offsets(&answered[0].1), vec![(0, 29, -1)]);
}

/// With an authorizer, DescribeAcls renders the principals' Iggy permissions as ALLOW
/// bindings on the topics that exist (asking the backend for them); it needs DESCRIBE on
/// the cluster. CreateAcls says where permissions are changed: in Iggy.
#[test]
fn acl_calls_show_iggy_permissions_and_name_iggy_for_changes() {
    use iggy_kafka_core::protocol::generated::create_acls_request::{
        AclCreation, CreateAclsRequest,
    };
    use iggy_kafka_core::protocol::generated::describe_acls_request::DescribeAclsRequest;
    let all = DescribeAclsRequest {
        resource_type_filter: 1,
        pattern_type_filter: 1,
        operation: 1,
        permission_type: 1,
        resource_name_filter: None,
        principal_filter: None,
        host_filter: None,
        ..DescribeAclsRequest::default()
    };
    // admin manages streams but may not read the servers: refused.
    let mut h = authorized("admin");
    h.send(3, 1, &Request::DescribeAcls(all.clone()));
    assert!(h.commands().is_empty());
    let answered = h.responses(ApiKey::DescribeAcls, 3);
    let Response::DescribeAcls(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.error_code, 31);

    // root, a super user: every known principal's bindings on the topics listed.
    let mut h = authorized("root");
    h.send(3, 2, &Request::DescribeAcls(all.clone()));
    let cmds = h.commands();
    let [(id, Work::Store(Command::ListTopics { only: None }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    h.complete(
        *id,
        Outcome::Store(Completion::ListTopics(Ok(vec![
            topic_info("t"),
            topic_info("u"),
        ]))),
    );
    let answered = h.responses(ApiKey::DescribeAcls, 3);
    let Response::DescribeAcls(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.error_code, 0);
    let bindings: Vec<(i8, String, String, i8)> = r
        .resources
        .iter()
        .flat_map(|res| {
            res.acls.iter().map(move |a| {
                assert_eq!(
                    (res.pattern_type, a.permission_type),
                    (3, 3),
                    "LITERAL, ALLOW"
                );
                (
                    res.resource_type,
                    res.resource_name.to_string(),
                    a.principal.to_string(),
                    a.operation,
                )
            })
        })
        .collect();
    let has = |kind: i8, name: &str, who: &str, op: i8| {
        bindings.contains(&(kind, name.to_owned(), format!("User:{who}"), op))
    };
    // reader reads and describes t only.
    assert!(has(2, "t", "reader", 3) && has(2, "t", "reader", 8));
    assert!(!has(2, "t", "reader", 4) && !has(2, "u", "reader", 3));
    // writer writes both; admin manages both and may delete groups; root may alter the cluster.
    assert!(has(2, "t", "writer", 4) && has(2, "u", "writer", 4));
    assert!(!has(2, "t", "writer", 3));
    assert!(
        has(2, "u", "admin", 6) && has(3, "*", "admin", 6) && !has(4, "kafka-cluster", "admin", 7)
    );
    assert!(has(4, "kafka-cluster", "root", 7));
    // Transactional ids (resource type 5): WRITE and DESCRIBE for whoever may send somewhere.
    assert!(has(5, "*", "writer", 4) && has(5, "*", "writer", 8));
    assert!(!has(5, "*", "reader", 4) && !has(5, "*", "reader", 8));

    // A filter naming one principal and one operation.
    let mut h = authorized("root");
    let only = DescribeAclsRequest {
        principal_filter: Some("User:writer".into()),
        operation: 4,
        ..all
    };
    h.send(3, 3, &Request::DescribeAcls(only));
    let cmds = h.commands();
    let [(id, Work::Store(Command::ListTopics { .. }))] = &cmds[..] else {
        panic!("{cmds:?}")
    };
    h.complete(
        *id,
        Outcome::Store(Completion::ListTopics(Ok(vec![topic_info("t")]))),
    );
    let answered = h.responses(ApiKey::DescribeAcls, 3);
    let Response::DescribeAcls(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    // WRITE on topic t, and on every transactional id.
    let named: Vec<(i8, String)> = r
        .resources
        .iter()
        .map(|res| (res.resource_type, res.resource_name.to_string()))
        .collect();
    assert_eq!(named, [(2, "t".to_owned()), (5, "*".to_owned())]);
    for res in &r.resources {
        assert_eq!(res.acls.len(), 1);
        assert_eq!(res.acls[0].principal.to_string(), "User:writer");
    }

    // Creating an ACL names Iggy.
    h.send(
        3,
        4,
        &Request::CreateAcls(CreateAclsRequest {
            creations: vec![AclCreation::default()],
            ..CreateAclsRequest::default()
        }),
    );
    let answered = h.responses(ApiKey::CreateAcls, 3);
    let Response::CreateAcls(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.results[0].error_code, 42);
    let message = r.results[0]
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(message.contains("Iggy"), "{message}");
}

/// A client over its produce byte rate gets `throttle_time_ms` in its answer and nothing
/// more of its input is read until then (KIP-219); the quota is the client id's.
#[test]
fn a_client_over_its_quota_is_throttled() {
    use iggy_kafka_core::quotas::{Entity, PRODUCER_BYTE_RATE};
    let config = Config::default();
    config
        .quotas
        .alter(
            &Entity {
                user: None,
                client_id: Some(Some("harness".into())),
            },
            &[(PRODUCER_BYTE_RATE.into(), 10.0, false)],
            false,
        )
        .expect("quota");
    let mut h = Harness::new(config);
    h.send(9, 1, &produce(1, &[0]));
    let cmds = h.commands();
    h.complete(cmds[0].0, appended(0));
    let answered = h.responses(ApiKey::Produce, 9);
    let Response::Produce(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    // The request is a few hundred bytes against 10 B/s over a 10 s window.
    assert!(r.throttle_time_ms > 1000, "{}", r.throttle_time_ms);
    assert!(!h.conn.wants_input());
    let until = h.now + Duration::from_millis(r.throttle_time_ms as u64);
    assert_eq!(h.conn.poll_timeout(), Some(until));
    h.advance(Duration::from_millis(r.throttle_time_ms as u64));
    assert!(h.conn.wants_input());

    // Another client is not held back.
    let mut other = Harness::new(Config::default());
    other.send(9, 1, &produce(1, &[0]));
    let cmds = other.commands();
    other.complete(cmds[0].0, appended(0));
    let answered = other.responses(ApiKey::Produce, 9);
    let Response::Produce(r) = &answered[0].1 else {
        panic!("{answered:?}")
    };
    assert_eq!(r.throttle_time_ms, 0);
}

/// An answer about a principal that is no longer the connection's is dropped, never kept
/// under the new principal's name.
#[test]
fn permissions_of_a_previous_principal_are_not_kept_for_the_next() {
    use iggy_kafka_core::authz::Permissions;
    let mut h = permissions_from_backend();
    h.conn.set_peer_principal("certadmin");
    let old = h.commands();
    h.conn.set_peer_principal("bob");
    let new = h.commands();
    let [(new_id, Work::Store(Command::UserPermissions { user }))] = &new[..] else {
        panic!("{new:?}")
    };
    assert_eq!(user, "bob");
    let mut admin = Permissions::default();
    admin.global.send_messages = true;
    h.complete(
        old[0].0,
        Outcome::Store(Completion::UserPermissions(Ok(Some(admin)))),
    );
    assert!(!h.conn.wants_input(), "still waiting for bob's");
    h.complete(
        *new_id,
        Outcome::Store(Completion::UserPermissions(Ok(None))),
    );
    h.send(9, 1, &produce(1, &[0]));
    assert!(h.commands().is_empty(), "bob may not write");
}

/// With authorization on, a principal that may not read the servers sees a group's members
/// without their ids, addresses, subscriptions or assignments (which name topics); one that
/// may sees them all.
#[test]
fn group_members_are_shown_only_to_principals_that_may_read_the_servers() {
    use iggy_kafka_core::group::{GroupDescription, GroupReply, GroupState, MemberDescription};
    use iggy_kafka_core::protocol::generated::describe_groups_request::DescribeGroupsRequest;
    for (principal, shown) in [("reader", false), ("root", true)] {
        let mut h = authorized(principal);
        let req = DescribeGroupsRequest {
            groups: vec!["g".into()],
            ..DescribeGroupsRequest::default()
        };
        h.send(5, 1, &Request::DescribeGroups(req));
        let cmds = h.commands();
        let description = GroupDescription {
            group: "g".into(),
            state: GroupState::Stable,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![MemberDescription {
                member_id: "m-1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/10.0.0.1".into(),
                metadata: Bytes::from_static(b"secret-topic"),
                assignment: Bytes::from_static(b"secret-topic"),
            }],
        };
        h.complete(
            cmds[0].0,
            Outcome::Group(GroupReply::Describe(vec![Some(description)])),
        );
        h.complete(
            cmds[1].0,
            Outcome::Store(Completion::ListGroups(Ok(vec!["g".into()]))),
        );
        let answered = h.responses(ApiKey::DescribeGroups, 5);
        let Response::DescribeGroups(r) = &answered[0].1 else {
            panic!("{answered:?}")
        };
        let m = &r.groups[0].members[0];
        assert_eq!(m.client_id.as_str(), "c");
        assert_eq!(!m.member_metadata.is_empty(), shown, "{principal}: {m:?}");
        assert_eq!(!m.member_id.is_empty(), shown, "{principal}");
    }
}

/// By topic id (Fetch v13+), the name is looked up first: a topic the principal may not
/// read is not read at all.
#[test]
fn a_fetch_by_topic_id_checks_the_topic_before_reading() {
    let info = topic_info("t");
    for (principal, reads) in [("writer", false), ("reader", true)] {
        let mut h = authorized(principal);
        let Request::Fetch(mut req) = fetch(0, 0) else {
            unreachable!()
        };
        req.topics[0].topic_id = info.id;
        h.send(13, 1, &Request::Fetch(req));
        let cmds = h.commands();
        let [(ask, Work::Store(Command::ListTopics { .. }))] = &cmds[..] else {
            panic!("{cmds:?}")
        };
        h.complete(
            *ask,
            Outcome::Store(Completion::ListTopics(Ok(vec![topic_info("t")]))),
        );
        let cmds = h.commands();
        assert_eq!(
            matches!(cmds[..], [(_, Work::Store(Command::Read { .. }))]),
            reads,
            "{principal}: {cmds:?}"
        );
        if !reads {
            let answered = h.responses(ApiKey::Fetch, 13);
            assert_eq!(fetched(&answered[0].1).0, 29);
        }
    }
}

/// A read of a partition with transactions: 5 plain, 6–7 producer 1's (aborted at 9), 8
/// producer 2's (still open, so the last stable offset is 8), 9 producer 1's abort marker,
/// 10 plain.
fn transactional_read() -> Outcome {
    use iggy_kafka_core::backend::AbortedTxn;
    use iggy_kafka_core::mapping::{mark_transactional, marker};
    let record = |offset: u64, producer: Option<i64>| {
        let mut m = to_iggy(&KafkaRecord {
            timestamp_ms: 1000,
            value: Some(Bytes::from(format!("m{offset}"))),
            ..KafkaRecord::default()
        });
        if let Some(p) = producer {
            mark_transactional(&mut m, p, 3);
        }
        (offset, m)
    };
    let messages = vec![
        record(5, None),
        record(6, Some(1)),
        record(7, Some(1)),
        record(8, Some(2)),
        (9, marker(1, 4, false, 0, 1000)),
        record(10, None),
    ];
    Outcome::Store(Completion::Read(Ok(ReadResult {
        topic: "t".into(),
        messages: Messages::from_offsets(messages),
        offsets: PartitionOffsets {
            log_start: 0,
            high_watermark: 11,
            size_bytes: None,
            last_stable: Some(8),
        },
        aborted: vec![AbortedTxn {
            producer_id: 1,
            first_offset: 6,
            last_offset: 9,
        }],
    })))
}

/// read_committed answers up to the last stable offset with the aborted transactions of
/// what it returns; read_uncommitted answers everything, markers as control batches, with no
/// aborted list; both report the last stable offset.
#[test]
fn fetch_isolation_levels_and_transactional_batches() {
    for committed in [true, false] {
        let mut h = Harness::new(Config::default());
        let Request::Fetch(mut req) = fetch(0, 0) else {
            unreachable!()
        };
        req.isolation_level = i8::from(committed);
        h.send(11, 1, &Request::Fetch(req));
        let cmds = h.commands();
        h.complete(cmds[0].0, transactional_read());
        let answered = h.responses(ApiKey::Fetch, 11);
        let Response::Fetch(f) = &answered[0].1 else {
            panic!("Fetch")
        };
        let p = &f.responses[0].partitions[0];
        assert_eq!((p.high_watermark, p.last_stable_offset), (11, 8));
        let records = p.records.clone().unwrap_or_default();
        let batches = decode_batches(&records, &mut DecompressionBudget::new(1 << 20), false)
            .expect("batches");
        // (base offset, producer id, epoch, transactional, control, records)
        let shape: Vec<(i64, i64, i16, bool, bool, usize)> = batches
            .iter()
            .map(|b| {
                (
                    b.base_offset,
                    b.producer_id,
                    b.producer_epoch,
                    b.is_transactional(),
                    b.is_control(),
                    b.records.len(),
                )
            })
            .collect();
        if committed {
            let aborted: Vec<(i64, i64)> = p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id, a.first_offset))
                .collect();
            assert_eq!(aborted, [(1, 6)]);
            assert_eq!(
                shape,
                [(5, -1, -1, false, false, 1), (6, 1, 3, true, false, 2)]
            );
        } else {
            assert_eq!(p.aborted_transactions, None);
            assert_eq!(
                shape,
                [
                    (5, -1, -1, false, false, 1),
                    (6, 1, 3, true, false, 2),
                    (8, 2, 3, true, false, 1),
                    (9, 1, 4, true, true, 1),
                    (10, -1, -1, false, false, 1),
                ]
            );
            // The control record: key version 0 and type 0 (abort); value version 0 and
            // coordinator epoch 0.
            let control = &batches[3].records[0];
            assert_eq!(control.key.as_deref(), Some(&[0u8, 0, 0, 0][..]));
            assert_eq!(control.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 0][..]));
        }
    }
}

/// Each marker is a control batch of its own, as Kafka writes them, even next to another
/// marker of the same producer: consumers read one control record per control batch.
#[test]
fn adjacent_markers_are_separate_control_batches() {
    use iggy_kafka_core::mapping::marker;
    let mut h = Harness::new(Config::default());
    let Request::Fetch(req) = fetch(0, 0) else {
        unreachable!()
    };
    h.send(11, 1, &Request::Fetch(req));
    let cmds = h.commands();
    let messages = vec![
        (0, marker(1, 4, true, 0, 1000)),
        (1, marker(1, 4, false, 0, 1000)),
    ];
    h.complete(
        cmds[0].0,
        Outcome::Store(Completion::Read(Ok(ReadResult {
            topic: "t".into(),
            messages: Messages::from_offsets(messages),
            offsets: PartitionOffsets {
                log_start: 0,
                high_watermark: 2,
                size_bytes: None,
                last_stable: Some(2),
            },
            aborted: Vec::new(),
        }))),
    );
    let answered = h.responses(ApiKey::Fetch, 11);
    let Response::Fetch(f) = &answered[0].1 else {
        panic!("Fetch")
    };
    let records = f.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let batches =
        decode_batches(&records, &mut DecompressionBudget::new(1 << 20), false).expect("batches");
    let shape: Vec<(i64, bool, usize, Option<&[u8]>)> = batches
        .iter()
        .map(|b| {
            (
                b.base_offset,
                b.is_control(),
                b.records.len(),
                b.records[0].key.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (0, true, 1, Some(&[0u8, 0, 0, 1][..])),
            (1, true, 1, Some(&[0u8, 0, 0, 0][..])),
        ]
    );
}

fn transactional_batch() -> Bytes {
    let b = RecordBatch {
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: 0,
        attributes: 0x10,
        records: vec![Record {
            value: Some(Bytes::from_static(b"v")),
            ..Record::default()
        }],
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    b.encode(Compression::None, &mut buf).expect("encode");
    buf.freeze()
}

fn transactional_produce(transactional_id: Option<&str>) -> Request {
    let Request::Produce(mut req) = produce(-1, &[0, 1]) else {
        unreachable!()
    };
    req.transactional_id = transactional_id.map(Into::into);
    req.topic_data[0].partition_data[0].records = Some(transactional_batch());
    Request::Produce(req)
}

/// A transactional append goes to the coordinator's check with the request's
/// transactional id, and its refusals are answered with the codes Kafka's produce path
/// gives: retriable while the transaction completes, abortable (INVALID_TXN_STATE before
/// v11) for a partition not added.
#[test]
fn transactional_appends_name_their_transactional_id() {
    for (version, refused, answered) in [
        (
            11,
            ErrorCode::CONCURRENT_TRANSACTIONS,
            ErrorCode::NOT_ENOUGH_REPLICAS,
        ),
        (
            11,
            ErrorCode::INVALID_TXN_STATE,
            ErrorCode::TRANSACTION_ABORTABLE,
        ),
        (
            10,
            ErrorCode::INVALID_TXN_STATE,
            ErrorCode::INVALID_TXN_STATE,
        ),
        (
            11,
            ErrorCode::INVALID_PRODUCER_EPOCH,
            ErrorCode::INVALID_PRODUCER_EPOCH,
        ),
    ] {
        let mut h = Harness::new(Config::default());
        h.send(version, 1, &transactional_produce(Some("tx")));
        let commands = h.commands();
        assert_eq!(commands.len(), 2);
        match &commands[0].1 {
            Work::TxnAppend {
                transactional_id,
                append: Command::Append { producer, .. },
            } => {
                assert_eq!(transactional_id, "tx");
                assert!(producer.is_some_and(|p| p.transactional && p.producer_id == 7));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            commands[1].1,
            Work::Store(Command::Append { producer: None, .. })
        ));
        h.complete(
            commands[0].0,
            Outcome::Store(Completion::Append(Err(BackendError::Transaction {
                code: refused,
                message: "refused".into(),
            }))),
        );
        h.complete(commands[1].0, appended(0));
        let answered_codes: Vec<i16> = produce_offsets(&h.responses(ApiKey::Produce, version)[0].1)
            .into_iter()
            .map(|(_, code, _)| code)
            .collect();
        assert_eq!(answered_codes, [answered.into(), ErrorCode::NONE.into()]);
    }
}

/// Transactional batches in a request without a transactional id: Kafka refuses the whole
/// request, plain partitions too.
#[test]
fn transactional_batches_without_a_transactional_id_refuse_the_request() {
    let mut h = Harness::new(Config::default());
    h.send(11, 1, &transactional_produce(None));
    assert!(h.commands().is_empty());
    let codes: Vec<i16> = produce_offsets(&h.responses(ApiKey::Produce, 11)[0].1)
        .into_iter()
        .map(|(_, code, _)| code)
        .collect();
    let refused: i16 = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.into();
    assert_eq!(codes, [refused, refused]);
}
