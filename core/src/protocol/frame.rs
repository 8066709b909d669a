//! Kafka framing: every request and response is a 4-byte big-endian size, then that many bytes.
//!
//! [`split_frame`] takes frames off a stream, refusing hostile sizes before buffering;
//! [`put_frame`] writes one. [`encode_request`] and [`decode_response`] are a client's side
//! of a request, [`decode_request`] a broker's, headers included (the connection itself
//! decodes requests with more checks, and encodes responses without copying long record
//! batches).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use zeroize::{Zeroize, Zeroizing};

use super::api::{request_header_version, response_header_version};
use super::generated::request_header::RequestHeader;
use super::generated::response_header::ResponseHeader;
use super::{
    ApiKey, DecodeError, EncodeError, EncodeErrorKind, Message, Reader, Request, Response,
};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Kafka's limit on a frame before SASL authentication completes: 512 KiB.
pub const DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE: usize = 512 * 1024;

/// A size prefix that cannot be honoured. The connection must close without reading on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    /// The size prefix exceeds the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The declared size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Splits the next complete frame (without its size prefix) off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. The size is checked as soon as its four
/// bytes are there, so a hostile size is refused before anything more is buffered.
///
/// # Errors
/// When the size prefix is negative or larger than `max`.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = declared_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// As [`split_frame`], for a frame that may hold a secret (a SASL password): the frame
/// moves to memory of its own that is zeroed when the last [`Bytes`] of it is dropped, and
/// its bytes in `buf` are zeroed before `buf` moves past them.
///
/// # Errors
/// As [`split_frame`].
pub fn split_secret_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = declared_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    let frame = Zeroizing::new(buf[4..4 + size].to_vec());
    buf[..4 + size].zeroize();
    buf.advance(4 + size);
    Ok(Some(Bytes::from_owner(frame)))
}

/// How many more bytes are needed to complete the frame at the front of `buf` (at least 1
/// when it is incomplete, 0 when it is complete), once its size is known.
///
/// # Errors
/// As [`split_frame`].
pub fn bytes_wanted(buf: &[u8], max: usize) -> Result<usize, FrameError> {
    Ok(match declared_size(buf, max)? {
        None => 4 - buf.len(),
        Some(size) => (4 + size).saturating_sub(buf.len()),
    })
}

fn declared_size(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(*prefix);
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

/// Appends one frame to `buf`: the size, then what `body` writes.
///
/// # Errors
/// What `body` fails with, or a frame longer than a size prefix can say; `buf` is then left
/// as it was.
pub fn put_frame(
    buf: &mut BytesMut,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_u32(0);
    let written = body(buf).and_then(|()| {
        let size = buf.len() - start - 4;
        i32::try_from(size).map_err(|_| EncodeError::new("frame", EncodeErrorKind::TooLong(size)))
    });
    match written {
        Ok(size) => {
            buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Appends a request frame as a client writes it: `request` at `version`, under a header
/// with `correlation_id` and `client_id`.
///
/// # Errors
/// When the request cannot be encoded at `version` (see [`put_frame`]).
pub fn encode_request(
    buf: &mut BytesMut,
    request: &Request,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<(), EncodeError> {
    let key = request.api_key();
    put_frame(buf, |buf| {
        RequestHeader {
            request_api_key: key as i16,
            request_api_version: version,
            correlation_id,
            client_id: client_id.map(Into::into),
            ..RequestHeader::default()
        }
        .encode(buf, request_header_version(key, version))?;
        request.encode(buf, version)
    })
}

/// Reads a request frame (without its size prefix): its header and body.
///
/// # Errors
/// When the frame does not hold a request of a known API and version.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request), DecodeError> {
    let (key, version) = match frame.first_chunk::<4>() {
        Some(&[k0, k1, v0, v1]) => (i16::from_be_bytes([k0, k1]), i16::from_be_bytes([v0, v1])),
        None => (-1, -1),
    };
    let mut r = Reader::new(frame, 0);
    let key = ApiKey::from_i16(key)
        .ok_or_else(|| r.error("api_key", super::DecodeErrorKind::UnknownApiKey))?;
    let header = RequestHeader::decode(&mut r, request_header_version(key, version))?;
    let request = Request::decode(key, version, &mut r)?;
    Ok((header, request))
}

/// Reads a response frame (without its size prefix) to a request of `key` at `version`: its
/// correlation id and body.
///
/// # Errors
/// When the frame does not hold such a response.
pub fn decode_response(
    frame: Bytes,
    key: ApiKey,
    version: i16,
) -> Result<(i32, Response), DecodeError> {
    let mut r = Reader::new(frame, 0);
    let header = ResponseHeader::decode(&mut r, response_header_version(key, version))?;
    let response = Response::decode(key, version, &mut r)?;
    Ok((header.correlation_id, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::generated::api_versions_request::ApiVersionsRequest;

    /// A frame that may hold a password comes out as `split_frame` gives it, the rest of
    /// the buffer is left, and a partial frame waits.
    #[test]
    fn a_secret_frame_splits_as_any_other() {
        let mut wire = BytesMut::new();
        wire.put_i32(6);
        wire.put_slice(b"secret");
        wire.put_slice(b"\x00\x00\x00\x09next");
        let mut buf = wire.clone();
        let frame = split_secret_frame(&mut buf, 100)
            .expect("ok")
            .expect("a frame");
        let plain = split_frame(&mut wire, 100).expect("ok").expect("a frame");
        assert_eq!(frame, plain);
        assert_eq!(buf, wire, "the rest is left");
        assert!(matches!(split_secret_frame(&mut buf, 100), Ok(None)));
        assert_eq!(&buf[..], b"\x00\x00\x00\x09next", "a partial frame waits");
        assert!(split_secret_frame(&mut buf, 4).is_err(), "too large");
    }

    /// A request written as a client writes it reads back as the broker reads it, and a
    /// frame that cannot be encoded leaves the buffer as it was.
    #[test]
    fn request_frames_round_trip() {
        let request = Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "t".into(),
            client_software_version: "1".into(),
            ..ApiVersionsRequest::default()
        });
        let mut buf = BytesMut::from(&b"before"[..]);
        encode_request(&mut buf, &request, 3, 9, Some("c")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..6], b"before");
        let mut wire = buf.split_off(6);
        let frame = split_frame(&mut wire, 1 << 20)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a whole frame"));
        assert!(wire.is_empty());
        let (header, decoded) = decode_request(frame).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((header.correlation_id, header.request_api_version), (9, 3));
        assert_eq!(header.client_id.as_deref(), Some("c"));
        assert_eq!(decoded, request);
        assert!(encode_request(&mut buf, &request, 99, 1, None).is_err());
        assert_eq!(&buf[..], b"before");
    }

    #[test]
    fn splits_frames_fed_a_byte_at_a_time() {
        let wire = b"\x00\x00\x00\x03abc\x00\x00\x00\x00\x00\x00\x00\x01z";
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = split_frame(&mut buf, 10).unwrap_or_else(|e| panic!("{e}")) {
                frames.push(f);
            }
        }
        assert_eq!(frames, [&b"abc"[..], b"", b"z"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_hostile_sizes_from_the_prefix_alone() {
        let mut neg = BytesMut::from(&b"\xff\xff\xff\xfe"[..]);
        assert_eq!(split_frame(&mut neg, 10), Err(FrameError::NegativeSize(-2)));
        let mut big = BytesMut::from(&b"\x00\x00\x00\x0b"[..]);
        assert_eq!(
            split_frame(&mut big, 10),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        );
        assert_eq!(bytes_wanted(b"\x00\x00\x00\x0a", 10), Ok(10));
        assert_eq!(bytes_wanted(b"\x00\x00", 10), Ok(2));
    }
}
