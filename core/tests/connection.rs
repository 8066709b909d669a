//! The connection state machine, driven by a scripted client and a manual clock: no sockets.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::protocol::api::SUPPORTED_APIS;
use iggy_kafka_core::protocol::generated::api_versions_request::ApiVersionsRequest;
use iggy_kafka_core::protocol::generated::api_versions_response::ApiVersionsResponse;
use iggy_kafka_core::protocol::generated::describe_delegation_token_request::DescribeDelegationTokenRequest;
use iggy_kafka_core::protocol::generated::fetch_request::FetchRequest;
use iggy_kafka_core::protocol::generated::response_header::ResponseHeader;
use iggy_kafka_core::protocol::{self, Message, Reader, Request};
use iggy_kafka_core::{CloseReason, Config, Connection};

/// One request frame, encoded as a client would.
fn frame(version: i16, correlation_id: i32, body: &Request) -> Bytes {
    let mut buf = BytesMut::new();
    protocol::frame::encode_request(&mut buf, body, version, correlation_id, Some("test-client"))
        .expect("request");
    buf.freeze()
}

fn api_versions(version: i16, correlation_id: i32) -> Bytes {
    let body = ApiVersionsRequest {
        client_software_name: "iggy-test".into(),
        client_software_version: "1.0.0".into(),
        ..ApiVersionsRequest::default()
    };
    frame(version, correlation_id, &Request::ApiVersions(body))
}

/// The SASL requests, which a listener without SASL does not advertise.
fn is_sasl(key: protocol::ApiKey) -> bool {
    matches!(
        key,
        protocol::ApiKey::SaslHandshake | protocol::ApiKey::SaslAuthenticate
    )
}

fn drain(conn: &mut Connection) -> BytesMut {
    let mut out = BytesMut::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// Splits response frames and decodes ApiVersions responses with header v0.
fn read_api_versions(out: &mut BytesMut, version: i16) -> Vec<(i32, ApiVersionsResponse)> {
    let mut responses = Vec::new();
    while let Some(f) = protocol::frame::split_frame(out, usize::MAX).expect("frame") {
        let mut r = Reader::new(f, 0);
        let header = ResponseHeader::decode(&mut r, 0).expect("header");
        let body = ApiVersionsResponse::decode(&mut r, version).expect("body");
        assert_eq!(r.remaining(), 0);
        responses.push((header.correlation_id, body));
    }
    responses
}

#[test]
fn answers_api_versions_v0_to_v4_with_the_table() {
    let now = Instant::now();
    for version in 0..=4 {
        let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
        let mut input = BytesMut::from(&api_versions(version, 41)[..]);
        conn.handle_input(now, &mut input);
        assert!(input.is_empty());
        let mut out = drain(&mut conn);
        let responses = read_api_versions(&mut out, version);
        assert_eq!(responses.len(), 1);
        let (cid, resp) = &responses[0];
        assert_eq!(*cid, 41);
        assert_eq!(resp.error_code, 0);
        let advertised: Vec<(i16, i16, i16)> = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let table: Vec<(i16, i16, i16)> = SUPPORTED_APIS
            .iter()
            .filter(|a| !is_sasl(a.key))
            .map(|a| (a.key as i16, a.versions.min, a.versions.max))
            .collect();
        assert_eq!(advertised, table, "v{version}");
        assert!(conn.wants_input());
        if version >= 3 {
            assert_eq!(conn.client().software_name.as_deref(), Some("iggy-test"));
        }
        assert_eq!(conn.client().client_id.as_deref(), Some("test-client"));
    }
}

#[test]
fn api_versions_v0_response_is_byte_exact() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    // size 10: key 18, version 0, correlation id 7, client id "ab".
    let mut input =
        BytesMut::from(&b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x07\x00\x02ab"[..]);
    conn.handle_input(now, &mut input);
    // Size, correlation id 7, error 0, then the table as [key, min, max] int16 triples.
    let served: Vec<_> = SUPPORTED_APIS.iter().filter(|a| !is_sasl(a.key)).collect();
    let mut expected = BytesMut::new();
    expected.put_u32(10 + 6 * served.len() as u32);
    expected.put_i32(7);
    expected.put_i16(0);
    expected.put_i32(served.len() as i32);
    for a in served {
        expected.put_i16(a.key as i16);
        expected.put_i16(a.versions.min);
        expected.put_i16(a.versions.max);
    }
    assert_eq!(&drain(&mut conn)[..], &expected[..]);
}

#[test]
fn pipelined_requests_fed_byte_by_byte_are_answered_in_order() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let mut wire = BytesMut::new();
    for (i, v) in [0i16, 3, 1, 4, 2].iter().enumerate() {
        wire.extend_from_slice(&api_versions(*v, i as i32));
    }
    let mut buf = BytesMut::new();
    for b in wire {
        buf.put_u8(b);
        conn.handle_input(now, &mut buf);
    }
    let mut out = drain(&mut conn);
    let mut cids = Vec::new();
    for v in [0, 3, 1, 4, 2] {
        let f = protocol::frame::split_frame(&mut out, usize::MAX)
            .expect("frame")
            .expect("complete");
        let mut r = Reader::new(f, 0);
        cids.push(
            ResponseHeader::decode(&mut r, 0)
                .expect("header")
                .correlation_id,
        );
        ApiVersionsResponse::decode(&mut r, v).expect("body");
    }
    assert_eq!(cids, [0, 1, 2, 3, 4]);
}

#[test]
fn api_versions_above_ours_gets_a_v0_unsupported_version_answer() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    // A v7 request in header v2 with a body we do not know; only the header matters.
    let mut input = BytesMut::from(
        &b"\x00\x00\x00\x0f\x00\x12\x00\x07\x00\x00\x00\x09\x00\x01c\x00\x01\x02\x03"[..],
    );
    conn.handle_input(now, &mut input);
    let mut out = drain(&mut conn);
    let responses = read_api_versions(&mut out, 0);
    assert_eq!(responses.len(), 1);
    let (cid, resp) = &responses[0];
    assert_eq!(*cid, 9);
    assert_eq!(resp.error_code, 35);
    let keys: Vec<_> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(keys, [(18, 0, 4)]);
    assert!(
        conn.wants_input(),
        "the client retries on the same connection"
    );
}

#[test]
fn invalid_client_software_name_gets_invalid_request() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let body = ApiVersionsRequest {
        client_software_name: "-bad name".into(),
        client_software_version: "1".into(),
        ..ApiVersionsRequest::default()
    };
    let mut input = BytesMut::from(&frame(3, 5, &Request::ApiVersions(body))[..]);
    conn.handle_input(now, &mut input);
    let responses = read_api_versions(&mut drain(&mut conn), 3);
    assert_eq!(responses[0].1.error_code, 42);
    assert!(responses[0].1.api_keys.is_empty());
}

fn assert_closes(input: &[u8], expect: impl Fn(&CloseReason) -> bool) {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let mut buf = BytesMut::from(input);
    conn.handle_input(now, &mut buf);
    let reason = conn.close_reason().cloned().expect("closed");
    assert!(expect(&reason), "unexpected reason {reason:?}");
    assert!(drain(&mut conn).is_empty(), "nothing is answered");
    assert!(conn.is_closed());
    assert!(!conn.wants_input());
    // Sticky: later input changes nothing.
    let mut more = BytesMut::from(&api_versions(0, 1)[..]);
    conn.handle_input(now, &mut more);
    assert_eq!(conn.close_reason(), Some(&reason));
    assert!(conn.poll_transmit().is_none());
}

#[test]
fn hostile_and_unsupported_input_closes_the_connection() {
    assert_closes(b"\xff\xff\xff\xff", |r| matches!(r, CloseReason::Frame(_)));
    // 2 GiB declared: refused from the prefix alone.
    assert_closes(b"\x7f\xff\xff\xff", |r| matches!(r, CloseReason::Frame(_)));
    assert_closes(b"\x00\x00\x00\x04\x00\x12\x00\x00", |r| {
        matches!(r, CloseReason::ShortFrame(4))
    });
    // Unknown key 999.
    assert_closes(
        b"\x00\x00\x00\x0a\x03\xe7\x00\x00\x00\x00\x00\x01\xff\xff",
        |r| matches!(r, CloseReason::UnsupportedApiKey { api_key: 999, .. }),
    );
    // DescribeDelegationToken: a real API the gateway does not serve.
    let describe = frame(
        1,
        1,
        &Request::DescribeDelegationToken(DescribeDelegationTokenRequest::default()),
    );
    assert_closes(&describe, |r| {
        matches!(r, CloseReason::UnsupportedApiKey { api_key: 41, .. })
    });
    // Fetch v3: a served API at a version outside the table.
    let fetch = frame(3, 1, &Request::Fetch(FetchRequest::default()));
    assert_closes(&fetch, |r| {
        matches!(r, CloseReason::UnsupportedVersion { version: 3, .. })
    });
    // ApiVersions below ours does not exist; -1 is outside the table.
    assert_closes(
        b"\x00\x00\x00\x0a\x00\x12\xff\xff\x00\x00\x00\x01\xff\xff",
        |r| matches!(r, CloseReason::UnsupportedVersion { version: -1, .. }),
    );
    // Truncated body: v3 declares a 5-byte compact string with 1 byte behind it.
    assert_closes(
        b"\x00\x00\x00\x0d\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00\x06a",
        |r| matches!(r, CloseReason::Malformed(_)),
    );
}

#[test]
fn answers_before_a_bad_frame_are_still_flushed() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let mut buf = BytesMut::from(&api_versions(1, 1)[..]);
    buf.extend_from_slice(b"\xff\xff\xff\xff");
    conn.handle_input(now, &mut buf);
    assert!(!conn.is_closed(), "one response still to send");
    assert_eq!(read_api_versions(&mut drain(&mut conn), 1).len(), 1);
    assert!(conn.is_closed());
}

#[test]
fn frame_limit_is_configurable() {
    let now = Instant::now();
    let mut config = Config::default();
    config.max_frame_size = 16;
    let mut conn = Connection::new(std::sync::Arc::new(config), now);
    let mut buf = BytesMut::from(&api_versions(3, 1)[..]);
    conn.handle_input(now, &mut buf);
    assert!(matches!(conn.close_reason(), Some(CloseReason::Frame(_))));
}

#[test]
fn idle_connections_close_on_the_manual_clock() {
    let start = Instant::now();
    let mut config = Config::default();
    config.idle_timeout = Duration::from_secs(30);
    let mut conn = Connection::new(std::sync::Arc::new(config), start);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(30)));
    let later = start + Duration::from_secs(20);
    let mut buf = BytesMut::from(&api_versions(0, 1)[..]);
    conn.handle_input(later, &mut buf);
    drain(&mut conn);
    conn.handle_timeout(start + Duration::from_secs(31));
    assert!(
        conn.close_reason().is_none(),
        "activity at 20s pushed the deadline to 50s"
    );
    assert_eq!(conn.poll_timeout(), Some(later + Duration::from_secs(30)));
    conn.handle_timeout(later + Duration::from_secs(30));
    assert!(matches!(conn.close_reason(), Some(CloseReason::Idle(_))));
    assert!(conn.is_closed());
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn backpressure_stops_input_until_output_is_taken() {
    let now = Instant::now();
    let mut config = Config::default();
    config.max_pending_output = 1;
    let mut conn = Connection::new(std::sync::Arc::new(config), now);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&api_versions(0, 1));
    buf.extend_from_slice(&api_versions(0, 2));
    conn.handle_input(now, &mut buf);
    assert!(!conn.wants_input());
    assert!(
        !buf.is_empty(),
        "the second request waits in the caller's buffer"
    );
    drain(&mut conn);
    assert!(conn.wants_input());
    conn.handle_input(now, &mut buf);
    assert!(buf.is_empty());
    assert_eq!(read_api_versions(&mut drain(&mut conn), 0)[0].0, 2);
}

#[test]
fn shutdown_flushes_answers_then_closes() {
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let mut buf = BytesMut::from(&api_versions(2, 1)[..]);
    conn.handle_input(now, &mut buf);
    conn.shutdown();
    assert!(!conn.wants_input());
    assert!(!conn.is_closed());
    drain(&mut conn);
    assert!(conn.is_closed());
    assert_eq!(conn.close_reason(), Some(&CloseReason::Shutdown));
}
