//! Codec tests over every API key and version, on sample values that set every field a
//! version has (non-empty arrays, nulls where nullable, non-default numbers, unknown tagged
//! fields), not on defaults.

use bytes::{Bytes, BytesMut};

use super::generated::{request_header::RequestHeader, response_header::ResponseHeader};
use super::sample::Gen;
use super::{ApiKey, Message, Reader, Request, Response};

const SEEDS: u64 = 4;

fn encode_request(m: &Request, v: i16) -> Bytes {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, v).unwrap_or_else(|e| panic!("{e}"));
    buf.freeze()
}

fn encode_response(m: &Response, v: i16) -> Bytes {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, v).unwrap_or_else(|e| panic!("{e}"));
    buf.freeze()
}

fn versions(key: ApiKey) -> impl Iterator<Item = i16> {
    let r = key.versions();
    r.min..=r.max
}

/// Every strict prefix of a valid encoding fails to decode, with an error and no panic.
fn assert_truncations_fail(bytes: &Bytes, what: &str, decode: impl Fn(&mut Reader) -> bool) {
    for cut in 0..bytes.len() {
        let mut r = Reader::new(bytes.slice(..cut), 0);
        assert!(
            !decode(&mut r),
            "{what}: a {cut}-byte prefix of {} decoded",
            bytes.len()
        );
    }
}

#[test]
fn every_request_round_trips_and_rejects_truncation() {
    let mut g = Gen::new(1);
    for &key in ApiKey::ALL {
        for v in versions(key) {
            for seed in 0..SEEDS {
                let m = Request::sample(key, &mut g, v);
                let bytes = encode_request(&m, v);
                let mut r = Reader::new(bytes.clone(), 0);
                let back =
                    Request::decode(key, v, &mut r).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                assert_eq!(r.remaining(), 0, "{key:?} v{v}: bytes left over");
                assert_eq!(back, m, "{key:?} v{v}");
                if seed < 2 {
                    assert_truncations_fail(&bytes, &format!("{key:?} request v{v}"), |r| {
                        Request::decode(key, v, r).is_ok()
                    });
                }
            }
        }
    }
}

#[test]
fn every_response_round_trips_and_rejects_truncation() {
    let mut g = Gen::new(2);
    for &key in ApiKey::ALL {
        for v in versions(key) {
            for seed in 0..SEEDS {
                let m = Response::sample(key, &mut g, v);
                let bytes = encode_response(&m, v);
                let mut r = Reader::new(bytes.clone(), 0);
                let back = Response::decode(key, v, &mut r)
                    .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                assert_eq!(r.remaining(), 0, "{key:?} v{v}: bytes left over");
                assert_eq!(back, m, "{key:?} v{v}");
                if seed < 2 {
                    assert_truncations_fail(&bytes, &format!("{key:?} response v{v}"), |r| {
                        Response::decode(key, v, r).is_ok()
                    });
                }
            }
        }
    }
}

fn header_round_trip<M: Message + PartialEq + std::fmt::Debug>(
    sample: impl Fn(&mut Gen, i16) -> M,
) {
    let mut g = Gen::new(3);
    for v in M::VERSIONS.min..=M::VERSIONS.max {
        for _ in 0..SEEDS {
            let m = sample(&mut g, v);
            let mut buf = BytesMut::new();
            m.encode(&mut buf, v).unwrap_or_else(|e| panic!("{e}"));
            let bytes = buf.freeze();
            let mut r = Reader::new(bytes.clone(), 0);
            assert_eq!(M::decode(&mut r, v).unwrap_or_else(|e| panic!("{e}")), m);
            assert_eq!(r.remaining(), 0);
            assert_truncations_fail(&bytes, M::NAME, |r| M::decode(r, v).is_ok());
        }
    }
}

#[test]
fn headers_round_trip() {
    header_round_trip(RequestHeader::sample);
    header_round_trip(ResponseHeader::sample);
}

#[test]
fn request_header_client_id_is_never_compact() {
    // Header v2 is flexible, yet ClientId keeps its int16 length ("flexibleVersions": "none").
    let h = RequestHeader {
        request_api_key: 18,
        request_api_version: 3,
        correlation_id: 7,
        client_id: Some("kcat".into()),
        ..RequestHeader::default()
    };
    let mut buf = BytesMut::new();
    h.encode(&mut buf, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        &buf[..],
        b"\x00\x12\x00\x03\x00\x00\x00\x07\x00\x04kcat\x00"
    );
}

#[test]
fn unknown_tagged_fields_are_kept_in_tag_order_and_written_back() {
    // ApiVersionsRequest v3: two compact strings, then tags 9 and 4 out of order.
    let body = b"\x02a\x02b\x02\x09\x01X\x04\x02YZ";
    let mut r = Reader::new(Bytes::from_static(body), 0);
    let m = Request::decode(ApiKey::ApiVersions, 3, &mut r).unwrap_or_else(|e| panic!("{e}"));
    let Request::ApiVersions(req) = &m else {
        panic!("{m:?}")
    };
    let tags: Vec<u32> = req.unknown_tagged_fields.iter().map(|(t, _)| t).collect();
    assert_eq!(tags, [4, 9]);
    assert_eq!(
        &encode_request(&m, 3)[..],
        b"\x02a\x02b\x02\x04\x02YZ\x09\x01X"
    );
}

#[test]
fn encoding_a_field_the_version_lacks_fails() {
    let mut g = Gen::new(4);
    // Metadata v4 has AllowAutoTopicCreation (not ignorable) set to true; v3 lacks it.
    let m = Request::sample(ApiKey::Metadata, &mut g, 4);
    let mut buf = BytesMut::new();
    let err = m
        .encode(&mut buf, 3)
        .expect_err("v3 cannot carry AllowAutoTopicCreation");
    assert_eq!(err.field, "MetadataRequest.AllowAutoTopicCreation");
    // Ignorable fields are dropped silently: ApiVersions v3's client software name at v0.
    let m = Request::sample(ApiKey::ApiVersions, &mut g, 3);
    assert!(m.encode(&mut buf, 0).is_ok());
}

/// Differential tests against the `kafka-protocol` crate: for every API and version both
/// know, what one encodes the other decodes to the same values, in both directions.
mod differential {
    use super::*;
    use kafka_protocol::messages::{ApiKey as KpKey, RequestKind, ResponseKind};
    use kafka_protocol::protocol::Encodable;

    fn shared_versions(key: ApiKey) -> Vec<i16> {
        let Ok(kp) = KpKey::try_from(key as i16) else {
            return Vec::new();
        };
        let theirs = kp.valid_versions();
        // A version the schemas mark unstable may have changed before Kafka released it.
        let ours = key.versions();
        let top = if key.latest_version_unstable() {
            ours.max - 1
        } else {
            ours.max
        };
        versions(key)
            .filter(|v| *v >= theirs.min && *v <= theirs.max && *v <= top)
            .collect()
    }

    #[test]
    fn requests_agree_with_kafka_protocol() {
        let mut g = Gen::new(5);
        let mut checked = 0;
        for &key in ApiKey::ALL {
            let Ok(kp) = KpKey::try_from(key as i16) else {
                continue;
            };
            for v in shared_versions(key) {
                for _ in 0..SEEDS {
                    let ours = Request::sample(key, &mut g, v);
                    let bytes = encode_request(&ours, v);
                    // Ours → theirs.
                    let mut b = bytes.clone();
                    let theirs = RequestKind::decode(kp, &mut b, v).unwrap_or_else(|e| {
                        panic!("{key:?} v{v}: kafka-protocol cannot decode ours: {e}")
                    });
                    assert!(b.is_empty(), "{key:?} v{v}: kafka-protocol left bytes");
                    // Theirs → ours: their encoding decodes to the value we started from.
                    let mut out = BytesMut::new();
                    theirs
                        .encode(&mut out, v)
                        .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                    let mut r = Reader::new(out.clone().freeze(), 0);
                    let back = Request::decode(key, v, &mut r)
                        .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                    assert_eq!(back, ours, "{key:?} v{v}");
                    assert_eq!(&out[..], &bytes[..], "{key:?} v{v}: encodings differ");
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} request cases were compared");
    }

    #[test]
    fn responses_agree_with_kafka_protocol() {
        let mut g = Gen::new(6);
        let mut checked = 0;
        for &key in ApiKey::ALL {
            let Ok(kp) = KpKey::try_from(key as i16) else {
                continue;
            };
            for v in shared_versions(key) {
                for _ in 0..SEEDS {
                    let ours = Response::sample(key, &mut g, v);
                    let bytes = encode_response(&ours, v);
                    let mut b = bytes.clone();
                    let theirs = ResponseKind::decode(kp, &mut b, v).unwrap_or_else(|e| {
                        panic!("{key:?} v{v}: kafka-protocol cannot decode ours: {e}")
                    });
                    assert!(b.is_empty(), "{key:?} v{v}: kafka-protocol left bytes");
                    let mut out = BytesMut::new();
                    theirs
                        .encode(&mut out, v)
                        .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                    let mut r = Reader::new(out.clone().freeze(), 0);
                    let back = Response::decode(key, v, &mut r)
                        .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
                    assert_eq!(back, ours, "{key:?} v{v}");
                    assert_eq!(&out[..], &bytes[..], "{key:?} v{v}: encodings differ");
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} response cases were compared");
    }

    #[test]
    fn headers_agree_with_kafka_protocol() {
        use kafka_protocol::messages::{RequestHeader as KpReq, ResponseHeader as KpResp};
        use kafka_protocol::protocol::{Decodable, Message as KpMessage};
        let mut g = Gen::new(7);
        for v in KpReq::VERSIONS.min..=2 {
            for _ in 0..SEEDS {
                let ours = RequestHeader::sample(&mut g, v);
                let mut buf = BytesMut::new();
                ours.encode(&mut buf, v).unwrap_or_else(|e| panic!("{e}"));
                let mut b = buf.clone().freeze();
                let theirs = KpReq::decode(&mut b, v).unwrap_or_else(|e| panic!("v{v}: {e}"));
                let mut out = BytesMut::new();
                theirs.encode(&mut out, v).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(out, buf, "request header v{v}");
            }
        }
        for v in KpResp::VERSIONS.min..=1 {
            for _ in 0..SEEDS {
                let ours = ResponseHeader::sample(&mut g, v);
                let mut buf = BytesMut::new();
                ours.encode(&mut buf, v).unwrap_or_else(|e| panic!("{e}"));
                let mut b = buf.clone().freeze();
                let theirs = KpResp::decode(&mut b, v).unwrap_or_else(|e| panic!("v{v}: {e}"));
                let mut out = BytesMut::new();
                theirs.encode(&mut out, v).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(out, buf, "response header v{v}");
            }
        }
    }
}
