//! The gateway while its Iggy server is unreachable (the in-process fake, taken down): every
//! request that needs Iggy is answered within the request timeout with a code clients
//! retry, Metadata keeps answering from the topics as last listed, and once the server is
//! back everything works again. Never a hang.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fake_iggy::FakeIggyServer;
use common::{call, create_topic, produce_to_0, record_batch, Gateway};
use iggy_kafka_core::protocol::generated::metadata_request::{
    MetadataRequest, MetadataRequestTopic,
};
use iggy_kafka_core::protocol::{Request, Response};

/// Kafka's retriable codes a client may get for a partition whose storage is unreachable.
const RETRIABLE: [i16; 4] = [
    7,  // REQUEST_TIMED_OUT
    6,  // NOT_LEADER_OR_FOLLOWER
    5,  // LEADER_NOT_AVAILABLE
    56, // KAFKA_STORAGE_ERROR
];

#[test]
fn an_unreachable_iggy_gets_answers_clients_retry_within_the_request_timeout() {
    let mut iggy = FakeIggyServer::start();
    let gw = Gateway::start_with(&[
        "--iggy",
        &iggy.url(),
        "--stream",
        &common::unique_stream(),
        "--request-timeout-ms",
        "3000",
    ]);
    let topic = format!("outage-{}", common::RUNTIME);
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let record = || record_batch(vec![Bytes::from_static(b"r")], None);
    assert_eq!(produce_to_0(&mut s, 9, &topic, record()), (0, 0));
    let metadata = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.as_str().into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(r) = call(&mut s, 12, 2, &metadata) else {
        panic!("Metadata")
    };
    assert_eq!(r.topics[0].error_code, 0);

    iggy.stop();
    let started = Instant::now();
    let (code, _) = produce_to_0(&mut s, 9, &topic, record());
    let took = started.elapsed();
    eprintln!("with Iggy down, produce answered {code} after {took:?}");
    assert!(RETRIABLE.contains(&code), "produce answered {code}");
    assert!(
        took < Duration::from_secs(8),
        "produce answered after {took:?}, past the 3 s request timeout"
    );
    let started = Instant::now();
    let Response::Metadata(r) = call(&mut s, 12, 3, &metadata) else {
        panic!("Metadata")
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].partitions.len()),
        (0, 1),
        "the topic as last listed"
    );

    iggy.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, offset) = produce_to_0(&mut s, 9, &topic, record());
        if code == 0 {
            assert!(offset >= 1, "after the first record");
            break;
        }
        assert!(RETRIABLE.contains(&code), "produce answered {code}");
        assert!(Instant::now() < deadline, "produce never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.stop();
}

/// Iggy connected but answering nothing (a server stuck on its disk, or paused): requests
/// are answered within the request timeout with codes clients retry, Metadata keeps
/// answering, and once the server answers again produce works again and every acknowledged
/// record is there.
#[test]
fn a_hung_iggy_gets_answers_clients_retry_and_loses_nothing_acknowledged() {
    let iggy = FakeIggyServer::start();
    let gw = Gateway::start_with(&[
        "--iggy",
        &iggy.url(),
        "--stream",
        &common::unique_stream(),
        "--request-timeout-ms",
        "3000",
    ]);
    let topic = format!("hung-{}", common::RUNTIME);
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let record = || record_batch(vec![Bytes::from_static(b"r")], None);
    let mut acknowledged = vec![produce_to_0(&mut s, 9, &topic, record())];
    assert_eq!(acknowledged[0], (0, 0));
    // Clients ask for metadata before they produce: the gateway has a listing to fall back on.
    let metadata = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.as_str().into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let Response::Metadata(r) = call(&mut s, 12, 2, &metadata) else {
        panic!("Metadata")
    };
    assert_eq!(r.topics[0].error_code, 0);

    iggy.hang();
    for _ in 0..2 {
        let started = Instant::now();
        let (code, offset) = produce_to_0(&mut s, 9, &topic, record());
        let took = started.elapsed();
        eprintln!("with Iggy hung, produce answered {code} after {took:?}");
        if code == 0 {
            acknowledged.push((code, offset));
        } else {
            assert!(RETRIABLE.contains(&code), "produce answered {code}");
        }
        assert!(
            took < Duration::from_secs(8),
            "produce answered after {took:?}, past the 3 s request timeout"
        );
    }
    let started = Instant::now();
    let Response::Metadata(r) = call(&mut s, 12, 3, &metadata) else {
        panic!("Metadata")
    };
    let took = started.elapsed();
    eprintln!("with Iggy hung, Metadata answered after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "Metadata answered after {took:?}"
    );
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].partitions.len()),
        (0, 1),
        "the topic as last listed"
    );

    iggy.release();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, offset) = produce_to_0(&mut s, 9, &topic, record());
        if code == 0 {
            acknowledged.push((code, offset));
            break;
        }
        assert!(RETRIABLE.contains(&code), "produce answered {code}");
        assert!(Instant::now() < deadline, "produce never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let high_watermark = common::high_watermark(&mut s, &topic, 0);
    let mut offsets: Vec<i64> = acknowledged.iter().map(|&(_, o)| o).collect();
    offsets.dedup();
    assert_eq!(
        offsets.len(),
        acknowledged.len(),
        "one offset per acknowledged record"
    );
    assert!(
        offsets.iter().all(|&o| (0..high_watermark).contains(&o)),
        "acknowledged offsets {offsets:?} below the high watermark {high_watermark}"
    );
    gw.stop();
}
