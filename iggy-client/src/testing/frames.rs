//! Iggy's framing as a server sees it: the client's request frames read off a wire, and the
//! reply frames that answer them.

use bytes::Bytes;
use iggy_binary_protocol::consensus::{
    Command, Operation, ReplyHeader, RequestHeader, HEADER_SIZE,
};
use iggy_binary_protocol::responses::system::get_cluster_metadata::{
    ClusterMetadataResponse, ClusterNodeResponse,
};
use iggy_binary_protocol::responses::users::LoginRegisterResponse;
use iggy_binary_protocol::{WireEncode, WireName, IGGY_PROTOCOL_VERSION};

/// One request frame read off a wire.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its consensus header.
    pub header: RequestHeader,
    /// What follows the header.
    pub body: Bytes,
    /// Where in the wire the frame ends.
    pub end: usize,
}

impl Request {
    /// Iggy's command code: sessionless reads carry it in the header's reserved bytes, the
    /// others as their operation.
    ///
    /// # Panics
    /// On an operation that no client request has.
    #[must_use]
    pub fn code(&self) -> u32 {
        if self.header.operation == Operation::NonReplicated {
            u32::from_le_bytes(
                self.header.reserved[..4]
                    .try_into()
                    .expect("four reserved bytes"),
            )
        } else {
            self.header
                .operation
                .to_command_code()
                .expect("a client operation")
        }
    }

    /// Whether it is the login that opens a session.
    #[must_use]
    pub fn is_login(&self) -> bool {
        self.header.operation == Operation::Register
    }
}

/// The whole request frames in `wire` from byte `at` on; a partial frame at the end is left.
///
/// # Panics
/// On bytes that are not request frames: the client under test wrote something wrong.
#[must_use]
pub fn requests(wire: &[u8], mut at: usize) -> Vec<Request> {
    let mut out = Vec::new();
    while wire.len() >= at + HEADER_SIZE {
        let header: RequestHeader =
            bytemuck::checked::try_pod_read_unaligned(&wire[at..at + HEADER_SIZE])
                .expect("a request header");
        let size = header.size as usize;
        assert!(size >= HEADER_SIZE, "a frame holds its header");
        if wire.len() < at + size {
            break;
        }
        out.push(Request {
            header,
            body: Bytes::copy_from_slice(&wire[at + HEADER_SIZE..at + size]),
            end: at + size,
        });
        at += size;
    }
    out
}

/// The one request frame `next` yields, chunk by chunk (a session's or a lane driver's
/// `poll_transmit`).
///
/// # Panics
/// Unless the chunks make exactly one whole frame.
pub fn take_request(mut next: impl FnMut() -> Option<Bytes>) -> Request {
    let mut wire = Vec::new();
    while let Some(b) = next() {
        wire.extend_from_slice(&b);
    }
    let mut frames = requests(&wire, 0);
    assert_eq!(frames.len(), 1, "one request frame");
    let frame = frames.remove(0);
    assert_eq!(frame.end, wire.len(), "one whole frame");
    frame
}

/// A reply to request number `request` of `operation`, with `status` and `body`.
#[must_use]
pub fn reply_to_number(operation: Operation, request: u64, status: u32, body: &[u8]) -> Vec<u8> {
    reply_frame(
        ReplyHeader {
            operation,
            request,
            status,
            ..ReplyHeader::default()
        },
        body,
    )
}

/// The reply to `req`, with `status` and `body`.
#[must_use]
pub fn reply(req: &RequestHeader, status: u32, body: &[u8]) -> Vec<u8> {
    reply_frame(
        ReplyHeader {
            operation: req.operation,
            client: req.client,
            request: req.request,
            status,
            ..ReplyHeader::default()
        },
        body,
    )
}

fn reply_frame(header: ReplyHeader, body: &[u8]) -> Vec<u8> {
    let header = ReplyHeader {
        command: Command::Reply,
        size: u32::try_from(HEADER_SIZE + body.len()).unwrap_or(u32::MAX),
        ..header
    };
    let mut out = bytemuck::bytes_of(&header).to_vec();
    out.extend_from_slice(body);
    out
}

/// A result section of `codes` (index, code each), then `payload`: how metadata, offset
/// and login replies open.
#[must_use]
pub fn result_framed(codes: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(codes.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    for (i, c) in (0u32..).zip(codes) {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// The body of a successful login that binds session number `session`.
#[must_use]
pub fn login_ok(session: u64) -> Vec<u8> {
    result_framed(
        &[],
        &LoginRegisterResponse {
            user_id: 1,
            session,
            server_protocol_version: IGGY_PROTOCOL_VERSION,
            server_version: WireName::new("0.9.0").expect("a valid name"),
        }
        .to_bytes(),
    )
}

/// The body of a cluster-metadata reply naming `nodes` (`ip:port`, whether it leads).
///
/// # Panics
/// On an address that is not `ip:port`.
#[must_use]
pub fn cluster_metadata(nodes: &[(&str, bool)]) -> Vec<u8> {
    ClusterMetadataResponse {
        name: "fake".into(),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, (address, leads))| {
                let (ip, port) = address.rsplit_once(':').expect("ip:port");
                ClusterNodeResponse {
                    name: format!("node-{i}"),
                    ip: ip.to_owned(),
                    tcp_port: port.parse().expect("a port"),
                    quic_port: 0,
                    http_port: 0,
                    websocket_port: 0,
                    role: u8::from(!*leads),
                    status: 0,
                }
            })
            .collect(),
    }
    .to_bytes()
    .to_vec()
}
