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
