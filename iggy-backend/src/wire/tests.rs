use super::*;
use iggy_binary_protocol::primitives::user_headers::encode_user_headers;

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
        name: iggy_binary_protocol::WireName::new("t").expect("name"),
        options: WireOptions::empty(),
        derived_options: WireOptions::empty(),
    };
    let a = header(1, 100, UNLIMITED, UNLIMITED);
    assert_eq!(topic_id(&a), topic_id(&header(1, 100, 5, 5)));
    assert_ne!(
        topic_id(&a),
        topic_id(&header(1, 101, UNLIMITED, UNLIMITED))
    );
    assert_ne!(topic_id(&a), Uuid::NIL);
    let info = topic_info(&a);
    assert_eq!(
        (info.config.retention_ms, info.config.retention_bytes),
        (None, None)
    );
    let info = topic_info(&header(1, 100, 7_000_000, 4096));
    assert_eq!(info.config.retention_ms, Some(7000));
    assert_eq!(info.config.retention_bytes, Some(1024), "per partition");
}

#[test]
fn errors_map_to_documented_kafka_codes() {
    use iggy_kafka_core::error_code::ErrorCode as K;
    use iggy_kafka_core::iggy::SessionError;
    let cases = [
        (code::TOPIC_NAME_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::STREAM_NAME_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::PARTITION_NOT_FOUND, K::UNKNOWN_TOPIC_OR_PARTITION),
        (code::TOPIC_NAME_ALREADY_EXISTS, K::TOPIC_ALREADY_EXISTS),
        (code::INVALID_TOPIC_NAME, K::INVALID_TOPIC_EXCEPTION),
        (code::INVALID_PARTITIONS_COUNT, K::INVALID_PARTITIONS),
        (code::UNAUTHORIZED, K::TOPIC_AUTHORIZATION_FAILED),
        (code::TOO_BIG_MESSAGE_PAYLOAD, K::INVALID_RECORD),
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
