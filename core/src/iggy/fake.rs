//! A fake Iggy server for tests: reads request frames, writes reply frames.

use bytes::Bytes;
use iggy_binary_protocol::consensus::{Command, ReplyHeader, RequestHeader, HEADER_SIZE};
use iggy_binary_protocol::responses::users::LoginRegisterResponse;
use iggy_binary_protocol::{WireEncode, WireName, IGGY_PROTOCOL_VERSION};

use super::session::Session;

/// Everything the session wants written, as the server would read it.
pub(crate) fn take_request(s: &mut Session) -> (RequestHeader, Bytes) {
    take_request_from(|| s.poll_transmit())
}

/// The one request frame `next` yields, byte chunk by chunk.
pub(crate) fn take_request_from(mut next: impl FnMut() -> Option<Bytes>) -> (RequestHeader, Bytes) {
    let mut wire = Vec::new();
    while let Some(b) = next() {
        wire.extend_from_slice(&b);
    }
    assert!(wire.len() >= HEADER_SIZE, "nothing to send");
    let header: RequestHeader =
        bytemuck::checked::try_pod_read_unaligned(&wire[..HEADER_SIZE]).expect("a request header");
    assert_eq!(header.size as usize, wire.len(), "one whole frame");
    (header, Bytes::copy_from_slice(&wire[HEADER_SIZE..]))
}

pub(crate) fn reply_to(req: &RequestHeader, status: u32, body: &[u8]) -> Vec<u8> {
    let header = ReplyHeader {
        command: Command::Reply,
        operation: req.operation,
        size: u32::try_from(HEADER_SIZE + body.len()).expect("small"),
        client: req.client,
        request: req.request,
        status,
        ..ReplyHeader::default()
    };
    let mut out = bytemuck::bytes_of(&header).to_vec();
    out.extend_from_slice(body);
    out
}

/// A result section of `codes` (index, code each), then `payload`.
pub(crate) fn result_framed(codes: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(codes.len())
        .expect("few")
        .to_le_bytes()
        .to_vec();
    for (i, c) in codes.iter().enumerate() {
        out.extend_from_slice(&u32::try_from(i).expect("few").to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

pub(crate) fn login_ok(session: u64) -> Vec<u8> {
    result_framed(
        &[],
        &LoginRegisterResponse {
            user_id: 1,
            session,
            server_protocol_version: IGGY_PROTOCOL_VERSION,
            server_version: WireName::new("0.9.0").expect("name"),
        }
        .to_bytes(),
    )
}
