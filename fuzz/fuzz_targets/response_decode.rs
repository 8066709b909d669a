//! Response decoding for every API key and version (the gateway's codec plays the client in
//! tests): key and version from the first four bytes, the body after them. Where a body
//! decodes, encoding and decoding it again must give the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::{ApiKey, Reader, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(&[k0, k1, v0, v1]) = data.first_chunk::<4>() else {
        return;
    };
    let key = ApiKey::ALL[usize::from(u16::from_be_bytes([k0, k1])) % ApiKey::ALL.len()];
    let range = key.versions();
    let version =
        range.min + (u16::from_be_bytes([v0, v1]) % (range.max - range.min + 1) as u16) as i16;
    let body = Bytes::copy_from_slice(&data[4..]);
    let Ok(response) = Response::decode(key, version, &mut Reader::new(body, 4)) else {
        return;
    };
    let mut first = BytesMut::new();
    response
        .encode(&mut first, version)
        .expect("a decoded response re-encodes");
    let again = Response::decode(key, version, &mut Reader::new(first.clone().freeze(), 0))
        .expect("re-encoded response decodes");
    let mut second = BytesMut::new();
    again.encode(&mut second, version).expect("response");
    assert_eq!(first, second, "{key:?} v{version}");
});
