//! Starts the real gateway binary (built with whichever runtime feature this test build
//! has) and talks Kafka to it over TCP.

mod common;

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use common::{
    be16, call, create_topic, high_watermark, idempotent_batch, produce, produce_to_0, read_frame,
    record_batch, Gateway,
};
use iggy_kafka_core::protocol::generated::{
    fetch_request::{FetchPartition, FetchRequest, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic},
    metadata_request::{MetadataRequest, MetadataRequestTopic},
};
use iggy_kafka_core::protocol::{Request, Response};

/// ApiVersions v0 and v3, then a pipelined pair, on one connection.
#[test]
fn exchanges_api_versions_v0_and_v3() {
    let gw = Gateway::start();
    let mut s = gw.connect();

    // v0: header v1 (client id "it"), empty body.
    s.write_all(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02it")
        .expect("write");
    let f = read_frame(&mut s);
    assert_eq!(&f[..4], &1i32.to_be_bytes(), "correlation id");
    assert_eq!(be16(&f[4..]), 0, "error code");
    let n = i32::from_be_bytes([f[6], f[7], f[8], f[9]]);
    assert!(n >= 1);
    let entries: Vec<(i16, i16, i16)> = (0..n as usize)
        .map(|i| {
            let e = &f[10 + i * 6..];
            (be16(e), be16(&e[2..]), be16(&e[4..]))
        })
        .collect();
    assert!(entries.contains(&(18, 0, 4)), "{entries:?}");

    // v3: header v2, compact client software name and version, empty tagged fields.
    let v3 =
        b"\x00\x00\x00\x1e\x00\x12\x00\x03\x00\x00\x00\x02\x00\x02it\x00\x0aiggy-test\x061.0.0\x00";
    s.write_all(v3).expect("write");
    let f = read_frame(&mut s);
    // Response header v0 even for a flexible version: no tagged-field byte after the id.
    assert_eq!(&f[..4], &2i32.to_be_bytes());
    assert_eq!(be16(&f[4..]), 0);
    // Compact array: count + 1 as an unsigned varint.
    assert_eq!(f[6] as usize - 1, entries.len());

    // Two requests in one write come back in order.
    let mut two = Vec::new();
    two.extend_from_slice(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x03\x00\x02it");
    two.extend_from_slice(b"\x00\x00\x00\x0c\x00\x12\x00\x01\x00\x00\x00\x04\x00\x02it");
    s.write_all(&two).expect("write");
    assert_eq!(&read_frame(&mut s)[..4], &3i32.to_be_bytes());
    assert_eq!(&read_frame(&mut s)[..4], &4i32.to_be_bytes());
    drop(s);
    gw.stop();
}

/// What Kafka would do, against the running binary: each hostile input closes its own
/// connection and the gateway keeps serving everyone else.
#[test]
fn hostile_input_closes_only_that_connection() {
    let gw = Gateway::start();
    let mut healthy = gw.connect();
    let cases: [(&str, &[u8]); 5] = [
        ("negative size", b"\xff\xff\xff\xff"),
        ("oversized", b"\x7f\xff\xff\xff"),
        (
            "unknown API key",
            b"\x00\x00\x00\x0a\x03\xe7\x00\x00\x00\x00\x00\x01\xff\xff",
        ),
        (
            "version outside the table (Fetch v3)",
            b"\x00\x00\x00\x0a\x00\x01\x00\x03\x00\x00\x00\x01\xff\xff",
        ),
        (
            "truncated body",
            b"\x00\x00\x00\x0d\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00\x06a",
        ),
    ];
    for (what, bytes) in cases {
        let mut s = gw.connect();
        s.write_all(bytes).expect("write");
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "{what}: the gateway closes the connection, answering nothing ({read:?}, {rest:?})"
        );
        healthy
            .write_all(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x05\x00\x02it")
            .expect("write");
        assert_eq!(
            &read_frame(&mut healthy)[..4],
            &5i32.to_be_bytes(),
            "after {what}"
        );
    }
    drop(healthy);
    gw.stop();
}

fn batch(values: &[&'static [u8]]) -> Bytes {
    record_batch(values.iter().map(|v| Bytes::from_static(v)).collect(), None)
}

/// Bad data in one partition fails that partition alone; bad names get the code Kafka uses;
/// a failed acks=0 produce closes its connection; everyone else is served throughout.
#[test]
fn bad_requests_get_kafkas_answers() {
    let gw = Gateway::start();
    let mut s = gw.connect();
    let mut healthy = gw.connect();

    let Response::CreateTopics(r) = call(&mut s, 5, 1, &create_topic("mixed", 2)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    assert_eq!(r.topics[0].num_partitions, 2);

    // Partition 0 gets a good batch, partition 1 one with a flipped byte (its CRC fails).
    let good = batch(&[b"one", b"two"]);
    let mut bad = BytesMut::from(&batch(&[b"three"])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let Response::Produce(r) = call(
        &mut s,
        8,
        2,
        &produce("mixed", 1, vec![(0, good.clone()), (1, bad.freeze())]),
    ) else {
        panic!("Produce")
    };
    let parts = &r.responses[0].partition_responses;
    assert_eq!(
        (parts[0].index, parts[0].error_code, parts[0].base_offset),
        (0, 0, 0)
    );
    assert_eq!(parts[1].index, 1);
    assert_eq!(parts[1].error_code, 2, "CORRUPT_MESSAGE: {:?}", parts[1]);
    let latest = Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "mixed".into(),
            partitions: (0..2)
                .map(|p| ListOffsetsPartition {
                    partition_index: p,
                    timestamp: -1,
                    ..ListOffsetsPartition::default()
                })
                .collect(),
            ..ListOffsetsTopic::default()
        }],
        ..ListOffsetsRequest::default()
    });
    let Response::ListOffsets(r) = call(&mut s, 5, 3, &latest) else {
        panic!("ListOffsets")
    };
    let ends: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(ends, [2, 0], "only the good batch was appended");

    // Invalid topic names: CreateTopics and auto-creation both say INVALID_TOPIC_EXCEPTION.
    let Response::CreateTopics(r) = call(&mut s, 5, 4, &create_topic("bad name!", 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 17, "{r:?}");
    let metadata = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("bad/name".into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: true,
        ..MetadataRequest::default()
    });
    let Response::Metadata(r) = call(&mut s, 9, 5, &metadata) else {
        panic!("Metadata")
    };
    assert_eq!(r.topics[0].error_code, 17, "{r:?}");
    // Produce to a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION, nothing created.
    let Response::Produce(r) = call(
        &mut s,
        8,
        6,
        &produce("nowhere", 1, vec![(0, good.clone())]),
    ) else {
        panic!("Produce")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);

    // acks=0 gets no answer; when it fails, the connection closes (the producer's signal).
    let Response::Produce(_) = call(
        &mut healthy,
        8,
        7,
        &produce("mixed", 1, vec![(0, good.clone())]),
    ) else {
        panic!("Produce")
    };
    let mut quiet = gw.connect();
    let mut frame = BytesMut::new();
    iggy_kafka_core::protocol::frame::encode_request(
        &mut frame,
        &produce("nowhere", 0, vec![(0, good)]),
        8,
        8,
        Some("it"),
    )
    .expect("request");
    quiet.write_all(&frame).expect("write");
    let mut rest = Vec::new();
    let read = quiet.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "a failed acks=0 produce closes the connection without an answer ({read:?}, {rest:?})"
    );
    let Response::Metadata(r) = call(&mut healthy, 9, 9, &metadata) else {
        panic!("Metadata")
    };
    assert_eq!(r.brokers.len(), 1, "still served");
    drop((s, healthy));
    gw.stop();
}

/// An idempotent producer's retry, resent as a client does after a lost response, is
/// answered with the first append's offset and appends nothing; a gap and an old epoch get
/// Kafka's codes.
#[test]
fn idempotent_retries_are_appended_once() {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    let gw = Gateway::start();
    let mut s = gw.connect();
    let topic = format!("idempotent-{}", common::RUNTIME);
    call(&mut s, 7, 1, &create_topic(&topic, 1));
    let send = |s: &mut std::net::TcpStream, corr, batch| produce_to_0(s, corr, &topic, batch);
    assert_eq!(send(&mut s, 2, idempotent_batch(1000, 0, 0, 3)), (0, 0));
    assert_eq!(send(&mut s, 3, idempotent_batch(1000, 0, 3, 2)), (0, 3));
    // The retry comes on a new connection, as after a reconnect.
    let mut again = gw.connect();
    assert_eq!(send(&mut again, 4, idempotent_batch(1000, 0, 0, 3)), (0, 0));
    assert_eq!(send(&mut again, 5, idempotent_batch(1000, 0, 3, 2)), (0, 3));
    assert_eq!(
        send(&mut again, 6, idempotent_batch(1000, 0, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(send(&mut again, 7, idempotent_batch(1000, 1, 0, 1)), (0, 5));
    assert_eq!(
        send(&mut again, 8, idempotent_batch(1000, 0, 5, 1)).0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        high_watermark(&mut s, &topic, 0),
        6,
        "six records, each once"
    );
    gw.stop();
}

/// Fetch sessions as Kafka reads them: epochs 0 and -1 ask for a full fetch, served whatever
/// the session id (a sessionless client sends id -1 or 0 with epoch -1; an id with epoch 0
/// closes that session); any other epoch continues a session the gateway never handed out.
#[test]
fn full_fetches_are_served_whatever_the_session_id() {
    let gw = Gateway::start();
    let mut s = gw.connect();
    let topic = format!("sessions-{}", common::RUNTIME);
    call(&mut s, 7, 1, &create_topic(&topic, 1));
    let batch = record_batch(
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
        None,
    );
    assert_eq!(produce_to_0(&mut s, 9, &topic, batch), (0, 0));
    let fetch = |session_id, session_epoch| {
        Request::Fetch(FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            session_id,
            session_epoch,
            topics: vec![FetchTopic {
                topic: topic.as_str().into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    log_start_offset: -1,
                    current_leader_epoch: -1,
                    ..FetchPartition::default()
                }],
                ..FetchTopic::default()
            }],
            ..FetchRequest::default()
        })
    };
    for (session_id, epoch) in [(-1, -1), (0, -1), (0, 0), (7, 0), (7, -1)] {
        let Response::Fetch(r) = call(&mut s, 12, 2, &fetch(session_id, epoch)) else {
            panic!("Fetch")
        };
        assert_eq!(r.error_code, 0, "session {session_id}, epoch {epoch}");
        assert_eq!(r.session_id, 0, "no session is handed out");
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 2));
        assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()));
    }
    for (session_id, epoch) in [(7, 1), (0, 1), (-1, -2)] {
        let Response::Fetch(r) = call(&mut s, 12, 3, &fetch(session_id, epoch)) else {
            panic!("Fetch")
        };
        assert_eq!(
            r.error_code, 70,
            "FETCH_SESSION_ID_NOT_FOUND for session {session_id}, epoch {epoch}"
        );
        assert!(r.responses.is_empty());
    }
    gw.stop();
}
