//! DeleteRecords over the wire against the real binary, on the embedded store and on Iggy
//! (the in-process fake): the log start moves forward only, Fetch and ListOffsets respect
//! it, Kafka's refusals, and on Iggy it survives a restart of the gateway.

mod common;

use bytes::Bytes;
use common::fake_iggy::FakeIggyServer;
use common::{call, create_topic, produce_to_0, record_batch, Gateway};
use iggy_kafka_core::protocol::generated::{
    delete_records_request::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic},
};
use iggy_kafka_core::protocol::{Request, Response};
use std::net::TcpStream;

/// Deletes records of `topic`'s partitions before the offsets given; (error, low watermark)
/// per partition.
fn delete(s: &mut TcpStream, version: i16, topic: &str, offsets: &[(i32, i64)]) -> Vec<(i16, i64)> {
    let request = Request::DeleteRecords(DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: offsets
                .iter()
                .map(|&(partition_index, offset)| DeleteRecordsPartition {
                    partition_index,
                    offset,
                    ..DeleteRecordsPartition::default()
                })
                .collect(),
            ..DeleteRecordsTopic::default()
        }],
        timeout_ms: 5000,
        ..DeleteRecordsRequest::default()
    });
    let Response::DeleteRecords(r) = call(s, version, 11, &request) else {
        panic!("DeleteRecords")
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.low_watermark))
        .collect()
}

/// ListOffsets EARLIEST of partition 0.
fn earliest(s: &mut TcpStream, topic: &str) -> i64 {
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp: -2,
                ..ListOffsetsPartition::default()
            }],
            ..ListOffsetsTopic::default()
        }],
        ..ListOffsetsRequest::default()
    });
    let Response::ListOffsets(r) = call(s, 5, 12, &request) else {
        panic!("ListOffsets")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Fetches partition 0 from `offset`: the error code and the log start offset it reports,
/// and whether records came.
fn fetch(s: &mut TcpStream, topic: &str, offset: i64) -> (i16, i64, bool) {
    let p = common::fetch_0(s, topic, offset);
    let records = p.records.as_ref().is_some_and(|b| !b.is_empty());
    (p.error_code, p.log_start_offset, records)
}

/// Ten records, then deletions forward, backward, past the end and of everything.
fn scenario(gw: &Gateway, topic: &str) {
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(topic, 2)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    for i in 0..10 {
        let batch = record_batch(vec![Bytes::from(format!("r{i}"))], None);
        assert_eq!(produce_to_0(&mut s, 9, topic, batch), (0, i));
    }
    assert_eq!(delete(&mut s, 2, topic, &[(0, 4)]), [(0, 4)]);
    assert_eq!(earliest(&mut s, topic), 4);
    assert_eq!(
        fetch(&mut s, topic, 2).0,
        1,
        "OFFSET_OUT_OF_RANGE below the log start"
    );
    let (code, log_start, records) = fetch(&mut s, topic, 4);
    assert_eq!((code, log_start, records), (0, 4, true));
    assert_eq!(delete(&mut s, 0, topic, &[(0, 2)]), [(0, 4)], "never back");
    assert_eq!(
        delete(&mut s, 1, topic, &[(0, 11), (0, -5), (1, 0), (7, 0)]),
        [(1, -1), (1, -1), (0, 0), (3, -1)],
        "past the end, negative, an empty partition, no such partition"
    );
    let Response::DeleteRecords(r) = call(
        &mut s,
        2,
        14,
        &Request::DeleteRecords(DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: "nowhere".into(),
                partitions: vec![DeleteRecordsPartition::default()],
                ..DeleteRecordsTopic::default()
            }],
            ..DeleteRecordsRequest::default()
        }),
    ) else {
        panic!("DeleteRecords")
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(delete(&mut s, 2, topic, &[(0, 7)]), [(0, 7)]);
}

#[test]
fn delete_records_on_the_embedded_store() {
    let gw = Gateway::start();
    let topic = format!("delete-records-{}", common::RUNTIME);
    scenario(&gw, &topic);
    let mut s = gw.connect();
    assert_eq!(
        delete(&mut s, 2, &topic, &[(0, -1)]),
        [(0, 10)],
        "-1: everything"
    );
    assert_eq!(earliest(&mut s, &topic), 10);
    let batch = record_batch(vec![Bytes::from_static(b"after")], None);
    assert_eq!(produce_to_0(&mut s, 9, &topic, batch), (0, 10));
    assert_eq!(fetch(&mut s, &topic, 10), (0, 10, true));
    gw.stop();
}

#[test]
fn delete_records_on_iggy_survives_a_restart() {
    let iggy = FakeIggyServer::start();
    survives_a_restart(&iggy.url());
}

#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn delete_records_on_a_real_iggy_survives_a_restart() {
    survives_a_restart(&common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY"));
}

fn survives_a_restart(url: &str) {
    let stream = common::unique_stream();
    let args = ["--iggy", url, "--stream", &stream];
    let topic = format!("delete-records-{}", common::RUNTIME);
    let gw = Gateway::start_with(&args);
    scenario(&gw, &topic);
    gw.stop();

    let gw = Gateway::start_with(&args);
    let mut s = gw.connect();
    assert_eq!(earliest(&mut s, &topic), 7, "the log start, replayed");
    assert_eq!(
        fetch(&mut s, &topic, 5).0,
        1,
        "OFFSET_OUT_OF_RANGE below it"
    );
    assert_eq!(fetch(&mut s, &topic, 7), (0, 7, true));
    assert_eq!(
        delete(&mut s, 2, &topic, &[(0, -1)]),
        [(0, 10)],
        "-1: everything"
    );
    assert_eq!(earliest(&mut s, &topic), 10);
    gw.stop();
}

/// confluent-kafka's and kafka-python's admin clients delete records; consumers from the
/// beginning start at the new log start (`clients/delete_records.py`), on both backends.
#[test]
fn admin_clients_delete_records() {
    let iggy = FakeIggyServer::start();
    let stream = common::unique_stream();
    for (backend, args) in [
        ("embedded", vec![]),
        (
            "iggy",
            vec![
                "--iggy".to_owned(),
                iggy.url(),
                "--stream".to_owned(),
                stream,
            ],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gw = Gateway::start_with(&args);
        let out = std::process::Command::new(common::python())
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
            .args([
                "delete_records.py",
                &gw.addr.to_string(),
                &format!("delete-records-clients-{backend}-{}", common::RUNTIME),
            ])
            .output()
            .expect("delete_records.py: run scripts/install-test-deps.sh");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        eprintln!("{backend}: delete_records.py stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(
            out.status.success(),
            "delete_records.py on {backend}: {}",
            out.status
        );
        gw.stop();
    }
}
