//! GetTelemetrySubscriptions and PushTelemetry (KIP-714) on a manual clock: an instance id
//! and an empty subscription, asked again too soon is throttled, pushes checked as Kafka
//! checks them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::api;
use iggy_kafka_core::protocol::generated::get_telemetry_subscriptions_request::GetTelemetrySubscriptionsRequest;
use iggy_kafka_core::protocol::generated::get_telemetry_subscriptions_response::GetTelemetrySubscriptionsResponse;
use iggy_kafka_core::protocol::generated::push_telemetry_request::PushTelemetryRequest;
use iggy_kafka_core::protocol::generated::push_telemetry_response::PushTelemetryResponse;
use iggy_kafka_core::protocol::generated::response_header::ResponseHeader;
use iggy_kafka_core::protocol::{self, ApiKey, Message, Reader, Request, Uuid};
use iggy_kafka_core::{Config, Connection};

fn call<M: Message>(conn: &mut Connection, now: Instant, key: ApiKey, request: &Request) -> M {
    let mut buf = BytesMut::new();
    protocol::frame::encode_request(&mut buf, request, 0, 1, Some("t")).expect("request");
    conn.handle_input(now, &mut buf);
    let mut out = BytesMut::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    let f = protocol::frame::split_frame(&mut out, usize::MAX)
        .expect("frame")
        .expect("answered");
    let mut r = Reader::new(f, 0);
    ResponseHeader::decode(&mut r, api::response_header_version(key, 0)).expect("header");
    M::decode(&mut r, 0).expect("body")
}

fn get(conn: &mut Connection, now: Instant, id: Uuid) -> GetTelemetrySubscriptionsResponse {
    let req = GetTelemetrySubscriptionsRequest {
        client_instance_id: id,
        ..GetTelemetrySubscriptionsRequest::default()
    };
    call(
        conn,
        now,
        ApiKey::GetTelemetrySubscriptions,
        &Request::GetTelemetrySubscriptions(req),
    )
}

fn push(conn: &mut Connection, now: Instant, req: PushTelemetryRequest) -> i16 {
    let r: PushTelemetryResponse = call(
        conn,
        now,
        ApiKey::PushTelemetry,
        &Request::PushTelemetry(req),
    );
    r.error_code
}

#[test]
fn an_empty_subscription_and_kafkas_checks() {
    let mut now = Instant::now();
    let mut conn = Connection::new(Arc::new(Config::default()), now);
    let first = get(&mut conn, now, Uuid::default());
    assert_eq!(first.error_code, 0);
    assert!(u128::from_be_bytes(first.client_instance_id.0) > 1);
    assert!(first.requested_metrics.is_empty(), "nothing to push");
    assert_eq!(first.push_interval_ms, 300_000);
    assert_eq!(first.accepted_compression_types, vec![4, 3, 1, 2]);
    let id = first.client_instance_id;
    // Asked again before the interval: throttled; after it, the same answer.
    assert_eq!(get(&mut conn, now, id).error_code, 89);
    now += Duration::from_secs(300);
    let again = get(&mut conn, now, id);
    assert_eq!(again.error_code, 0);
    assert_eq!(again.client_instance_id, id);

    let good = |terminating| PushTelemetryRequest {
        client_instance_id: id,
        subscription_id: first.subscription_id,
        terminating,
        compression_type: 0,
        metrics: Bytes::new(),
        ..PushTelemetryRequest::default()
    };
    assert_eq!(push(&mut conn, now, good(false)), 0);
    assert_eq!(push(&mut conn, now, good(false)), 89, "too soon");
    now += Duration::from_secs(300);
    let mut wrong = good(false);
    wrong.subscription_id += 1;
    assert_eq!(push(&mut conn, now, wrong), 117);
    now += Duration::from_secs(300);
    let mut codec = good(false);
    codec.compression_type = 9;
    assert_eq!(push(&mut conn, now, codec), 76);
    now += Duration::from_secs(300);
    let mut big = good(false);
    big.metrics = Bytes::from(vec![0u8; 1024 * 1024 + 1]);
    assert_eq!(push(&mut conn, now, big), 118);
    // A terminating push is taken at once; nothing after it is.
    assert_eq!(push(&mut conn, now, good(true)), 0);
    now += Duration::from_secs(300);
    assert_eq!(push(&mut conn, now, good(false)), 42);
    let mut zero = good(false);
    zero.client_instance_id = Uuid::default();
    assert_eq!(push(&mut conn, now, zero), 42);
}
