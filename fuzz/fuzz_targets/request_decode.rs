//! Request decoding for every API key and version, fed raw request frames (header and body,
//! as real clients send them; the seeds are captured from kcat and kafka-python). Where a
//! frame decodes, encoding and decoding it again must give the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::api::request_header_version;
use iggy_kafka_core::protocol::generated::request_header::RequestHeader;
use iggy_kafka_core::protocol::{ApiKey, Message, Reader, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(&[k0, k1, v0, v1]) = data.first_chunk::<4>() else {
        return;
    };
    // An unknown key or version is folded onto a known one, so that every input exercises
    // some decoder instead of stopping at the version check.
    let raw_key = i16::from_be_bytes([k0, k1]);
    let key = ApiKey::from_i16(raw_key)
        .unwrap_or(ApiKey::ALL[usize::from(raw_key.unsigned_abs()) % ApiKey::ALL.len()]);
    let range = key.versions();
    let raw_version = i16::from_be_bytes([v0, v1]);
    let version = if range.contains(raw_version) {
        raw_version
    } else {
        range.min + (raw_version.unsigned_abs() % (range.max - range.min + 1) as u16) as i16
    };
    let frame = Bytes::copy_from_slice(data);
    let hv = request_header_version(key, version);
    let mut r = Reader::new(frame, 0);
    let Ok(header) = RequestHeader::decode(&mut r, hv) else {
        return;
    };
    let Ok(request) = Request::decode(key, version, &mut r) else {
        return;
    };

    let mut first = BytesMut::new();
    header
        .encode(&mut first, hv)
        .expect("a decoded header re-encodes");
    request
        .encode(&mut first, version)
        .expect("a decoded request re-encodes");
    let mut r = Reader::new(first.clone().freeze(), 0);
    let header2 = RequestHeader::decode(&mut r, hv).expect("re-encoded header decodes");
    let request2 = Request::decode(key, version, &mut r).expect("re-encoded request decodes");
    assert_eq!(r.remaining(), 0);
    let mut second = BytesMut::new();
    header2.encode(&mut second, hv).expect("header");
    request2.encode(&mut second, version).expect("request");
    assert_eq!(first, second, "{key:?} v{version}");
});
