//! A conversation recorded between this gateway (one Iggy connection) and a real Iggy
//! server 0.9.0-edge.5 (`examples/record_iggy.py`): start-up on an empty server (the stream
//! and the offsets log created), a Kafka topic auto-created, two records produced by kcat
//! and read back. Replayed here without a server: the session must send exactly the
//! recorded request bytes, and read every recorded reply, whose bodies the backend's decoders
//! must understand. Re-record it when the server line or this crate's version changes.

use std::time::{Duration, Instant};

use iggy_kafka_core::mapping::from_iggy;
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_STREAM_CODE, CREATE_TOPIC_CODE, GET_STREAM_CODE, GET_TOPIC_CODE, POLL_MESSAGES_CODE,
    SEND_MESSAGES_CODE,
};
use iggy_kafka_iggy_client::protocol::responses::messages::SendMessagesResponse;
use iggy_kafka_iggy_client::protocol::responses::streams::GetStreamResponse;
use iggy_kafka_iggy_client::protocol::responses::topics::GetTopicResponse;
use iggy_kafka_iggy_client::protocol::WireDecode;
use iggy_kafka_iggy_client::testing::frames::{self, Request};
use iggy_kafka_iggy_client::{Credentials, Event, Session, SessionConfig};
use secrecy::SecretString;

use crate::offsets_log::Record;
use crate::wire;

const CLIENT: &[u8] = include_bytes!("../../tests/data/iggy-0.9.0-edge.5/client.bin");
const SERVER: &[u8] = include_bytes!("../../tests/data/iggy-0.9.0-edge.5/server.bin");

/// The recorded frames of one side: whole frames, back to back.
fn frames_of(wire: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let size = iggy_kafka_iggy_client::protocol::read_size_field(&wire[at..]).expect("a size")
            as usize;
        out.push(&wire[at..at + size]);
        at += size;
    }
    out
}

/// A recorded request frame, as the server read it.
fn request(frame: &[u8]) -> Request {
    let mut read = frames::requests(frame, 0);
    assert_eq!(read.len(), 1, "one request frame");
    read.remove(0)
}

#[test]
fn a_recorded_conversation_replays_byte_for_byte() {
    let requests = frames_of(CLIENT);
    let replies = frames_of(SERVER);
    assert_eq!(requests.len(), replies.len());
    assert_eq!(requests.len(), 23);
    let now = Instant::now();
    let login = request(requests[0]).header;
    let mut s = Session::new(
        SessionConfig {
            credentials: Credentials::User {
                username: "iggy".into(),
                password: SecretString::from("iggy"),
            },
            client_id: login.client,
            reply_timeout: Duration::from_secs(30),
            max_reply_bytes: 1 << 20,
        },
        now,
    );
    let mut codes = Vec::new();
    let mut records = Vec::new();
    for (i, (frame, reply)) in requests.iter().zip(&replies).enumerate() {
        let recorded = request(frame);
        if i > 0 {
            codes.push(recorded.code());
            s.send(recorded.code(), recorded.body.clone(), now)
                .expect("ready");
        }
        let mut sent = Vec::new();
        while let Some(b) = s.poll_transmit() {
            sent.extend_from_slice(&b);
        }
        assert_eq!(&sent[..], *frame, "request {i} differs from the recording");
        // Replies arrive in two pieces, split inside the header.
        s.handle_input(&reply[..100], now);
        s.handle_input(&reply[100..], now);
        let event = s.poll_event().expect("an answer");
        let body = match (i, event) {
            (0, Event::Ready { server_version, .. }) => {
                assert!(server_version.starts_with("0.9"), "{server_version}");
                continue;
            }
            (_, Event::Reply(Ok(body))) => body,
            (_, other) => panic!("reply {i}: {other:?}"),
        };
        match recorded.code() {
            GET_STREAM_CODE if body.is_empty() => {} // the stream did not exist yet
            GET_STREAM_CODE => {
                GetStreamResponse::decode(&body).expect("a stream");
            }
            CREATE_STREAM_CODE => {}
            CREATE_TOPIC_CODE => {
                let (t, _) = GetTopicResponse::decode(&body).expect("the created topic");
                assert!(t.topic.partitions_count >= 1);
            }
            GET_TOPIC_CODE => {
                GetTopicResponse::decode(&body).expect("a topic");
            }
            SEND_MESSAGES_CODE => {
                let (r, _) = SendMessagesResponse::decode(&body).expect("a confirmation");
                assert_eq!(r.confirmations.len(), 1);
            }
            POLL_MESSAGES_CODE => {
                let (messages, ..) = wire::polled(&body, 0, 1 << 20, 1000, true).expect("messages");
                for (offset, m) in messages.iter() {
                    if let Some(r) = Record::decode(&m.payload) {
                        records.push(format!("offsets log: {r:?}"));
                    } else {
                        let r = from_iggy(&m);
                        records.push(format!(
                            "{} {:?} {:?} {:?}",
                            offset,
                            r.key,
                            r.value,
                            r.headers
                                .iter()
                                .map(|h| (h.key.clone(), h.value.clone()))
                                .collect::<Vec<_>>()
                        ));
                    }
                }
            }
            other => panic!("unexpected command {other}"),
        }
        assert!(s.poll_event().is_none());
    }
    // Start-up: look for the stream, create it, look again, create the offsets log, mark it
    // complete, read it back; then the Kafka topic, two appends and the reads.
    assert_eq!(
        codes[..8],
        [
            GET_STREAM_CODE,
            CREATE_STREAM_CODE,
            GET_STREAM_CODE,
            CREATE_TOPIC_CODE,
            SEND_MESSAGES_CODE,
            GET_STREAM_CODE,
            CREATE_TOPIC_CODE,
            SEND_MESSAGES_CODE,
        ]
    );
    let kafka: Vec<&String> = records
        .iter()
        .filter(|r| !r.starts_with("offsets"))
        .collect();
    assert!(
        kafka
            .iter()
            .any(|r| r.starts_with("0 Some(b\"k1\") Some(b\"v1\") [(b\"h\", Some(b\"x\"))]")),
        "{kafka:?}"
    );
    assert!(
        kafka
            .iter()
            .any(|r| r.starts_with("1 Some(b\"k2\") Some(b\"v2\")")),
        "{kafka:?}"
    );
}
