//! One client connection as a pure state machine.
//!
//! The adapter that owns the socket drives it in this order, until [`Connection::is_closed`]:
//!
//! 1. Read whatever the socket has into a buffer the adapter owns, and pass it to
//!    [`Connection::handle_input`], which splits complete frames off the front (without
//!    copying) and leaves a partial frame for next time. Read only while
//!    [`Connection::wants_input`] is true: that is the connection's backpressure.
//! 2. Write every buffer [`Connection::poll_transmit`] returns, in order.
//! 3. Sleep until [`Connection::poll_timeout`] (if any) or the next input, whichever comes
//!    first, and call [`Connection::handle_timeout`] when the deadline passes.
//!
//! The connection never reads a clock: every call that cares takes `now`. Errors in the
//! input are fatal and sticky: the connection stops taking input, flushes what it already
//! answered, reports [`Connection::close_reason`] and is closed.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::api;
use crate::frame::{
    self, FrameError, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE,
};
use crate::handlers;
use crate::protocol::generated::request_header::RequestHeader;
use crate::protocol::generated::response_header::ResponseHeader;
use crate::protocol::{ApiKey, DecodeError, EncodeError, Message, Reader, Request, Response};

/// Limits and identity shared by every connection of a gateway.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame accepted once a client is authenticated, or always when no
    /// authentication is configured (Kafka's `socket.request.max.bytes`).
    pub max_frame_size: usize,
    /// Largest frame accepted before authentication completes. Applies only when
    /// authentication is required; it must never cap produce requests otherwise.
    pub max_unauthenticated_frame_size: usize,
    /// Whether clients must authenticate. No authentication mechanism exists yet, so this is
    /// always false; the limit above is kept ready for it.
    pub authentication_required: bool,
    /// A connection with no traffic for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Once this many response bytes wait to be written, the connection takes no more input.
    pub max_pending_output: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_unauthenticated_frame_size: DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE,
            authentication_required: false,
            idle_timeout: Duration::from_secs(600),
            max_pending_output: 16 * 1024 * 1024,
        }
    }
}

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The size prefix of a frame was negative or too large.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The frame is too short to hold a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    /// An API key the gateway does not serve (Kafka closes the connection).
    #[error("unsupported API key {api_key} (v{version})")]
    UnsupportedApiKey {
        /// The key.
        api_key: i16,
        /// The version asked for.
        version: i16,
    },
    /// A version of a served API outside the served range (Kafka closes the connection).
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
    },
    /// The header or body could not be decoded.
    #[error("malformed request: {0}")]
    Malformed(#[from] DecodeError),
    /// A response could not be encoded: a bug, reported rather than panicking.
    #[error("cannot encode response: {0}")]
    Encode(#[from] EncodeError),
    /// No traffic for longer than the idle timeout.
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    /// The gateway is shutting down.
    #[error("gateway shutting down")]
    Shutdown,
}

#[derive(Debug)]
enum State {
    Open,
    /// No more input; pending output is still flushed.
    Closing(CloseReason),
}

/// What the client told us about itself (KIP-511 and the request header's client id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `client.id` of the latest request.
    pub client_id: Option<String>,
    /// Client software name from ApiVersions v3+.
    pub software_name: Option<String>,
    /// Client software version from ApiVersions v3+.
    pub software_version: Option<String>,
}

/// One client connection. See the module documentation for the call order.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    out: BytesMut,
    last_activity: Instant,
    client: ClientInfo,
}

impl Connection {
    /// A new connection, accepted at `now`.
    #[must_use]
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            config,
            state: State::Open,
            out: BytesMut::new(),
            last_activity: now,
            client: ClientInfo::default(),
        }
    }

    /// Takes every complete frame off the front of `buf` and handles it; a partial frame is
    /// left for the next call. Does nothing once the connection is closing.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        if !matches!(self.state, State::Open) {
            return;
        }
        if !buf.is_empty() {
            self.last_activity = now;
        }
        while self.wants_input() {
            match frame::split_frame(buf, self.frame_limit()) {
                Ok(Some(frame)) => {
                    if let Err(reason) = self.handle_frame(frame) {
                        self.close(reason);
                    }
                }
                Ok(None) => break,
                Err(e) => self.close(e.into()),
            }
        }
    }

    /// The next bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// When [`Connection::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => Some(self.last_activity + self.config.idle_timeout),
            State::Closing(_) => None,
        }
    }

    /// Lets the connection act on the passage of time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Open) && now >= self.last_activity + self.config.idle_timeout
        {
            self.close(CloseReason::Idle(self.config.idle_timeout));
        }
    }

    /// Stops taking requests (the gateway is shutting down); what was answered is still
    /// flushed.
    pub fn shutdown(&mut self) {
        self.close(CloseReason::Shutdown);
    }

    /// Whether the adapter should read more input now.
    #[must_use]
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Open) && self.out.len() < self.config.max_pending_output
    }

    /// Whether the connection is done: closing, with nothing left to transmit. The adapter
    /// then closes the socket.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closing(_)) && self.out.is_empty()
    }

    /// Why the connection is closing, once it is.
    #[must_use]
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match &self.state {
            State::Open => None,
            State::Closing(reason) => Some(reason),
        }
    }

    /// What the client told us about itself.
    #[must_use]
    pub fn client(&self) -> &ClientInfo {
        &self.client
    }

    fn frame_limit(&self) -> usize {
        // Only authentication, once it exists, lifts the smaller limit.
        if self.config.authentication_required {
            self.config.max_unauthenticated_frame_size
        } else {
            self.config.max_frame_size
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Open) {
            match &reason {
                CloseReason::Idle(_) | CloseReason::Shutdown => {
                    tracing::debug!(%reason, "closing connection")
                }
                _ => {
                    tracing::warn!(%reason, client_id = ?self.client.client_id, "closing connection")
                }
            }
            self.state = State::Closing(reason);
        }
    }

    fn handle_frame(&mut self, frame: Bytes) -> Result<(), CloseReason> {
        let Some(&[k0, k1, v0, v1, c0, c1, c2, c3]) = frame.first_chunk::<8>() else {
            return Err(CloseReason::ShortFrame(frame.len()));
        };
        let (api_key, version) = (i16::from_be_bytes([k0, k1]), i16::from_be_bytes([v0, v1]));
        let correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
        let Some(key) = ApiKey::from_i16(api_key) else {
            return Err(CloseReason::UnsupportedApiKey { api_key, version });
        };
        let Some(served) = api::supported_versions(key) else {
            return Err(CloseReason::UnsupportedApiKey { api_key, version });
        };
        if !served.contains(version) {
            if key == ApiKey::ApiVersions && version > served.max {
                // KIP-511: answer in v0 so that the client can read it and retry lower.
                tracing::debug!(version, "ApiVersions version above ours");
                let response = handlers::api_versions::unsupported_version(served);
                return self.respond(key, 0, correlation_id, &Response::ApiVersions(response));
            }
            return Err(CloseReason::UnsupportedVersion { api: key, version });
        }

        let mut r = Reader::new(frame, 0);
        let header = RequestHeader::decode(&mut r, api::request_header_version(key, version))?;
        if header.client_id.as_deref() != self.client.client_id.as_deref() {
            self.client.client_id = header.client_id.as_ref().map(|c| c.to_string());
        }
        let request = Request::decode(key, version, &mut r)?;
        if r.remaining() > 0 {
            // Kafka ignores bytes after the body; so do we, but it is worth knowing.
            tracing::debug!(
                api = key.name(),
                version,
                extra = r.remaining(),
                "bytes after request body"
            );
        }
        tracing::trace!(api = key.name(), version, correlation_id, "request");

        let response = match request {
            Request::ApiVersions(req) => Response::ApiVersions(handlers::api_versions::handle(
                &req,
                version,
                &mut self.client,
            )),
            // Unreachable while the table and this match agree; a test keeps them in step.
            other => {
                return Err(CloseReason::UnsupportedApiKey {
                    api_key: other.api_key() as i16,
                    version,
                })
            }
        };
        self.respond(key, version, correlation_id, &response)
    }

    /// Appends one response frame: size, header, body.
    fn respond(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        response: &Response,
    ) -> Result<(), CloseReason> {
        let start = self.out.len();
        self.out.put_u32(0);
        let header = ResponseHeader {
            correlation_id,
            ..ResponseHeader::default()
        };
        let written = header
            .encode(&mut self.out, api::response_header_version(key, version))
            .and_then(|()| response.encode(&mut self.out, version));
        if let Err(e) = written {
            self.out.truncate(start);
            return Err(e.into());
        }
        let size = self.out.len() - start - 4;
        let Ok(size) = u32::try_from(size) else {
            self.out.truncate(start);
            return Err(CloseReason::Encode(EncodeError::new(
                "frame",
                crate::protocol::EncodeErrorKind::TooLong(size),
            )));
        };
        self.out[start..start + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SUPPORTED_APIS;
    use crate::protocol::sample::Gen;

    /// Every API and version in the table is answered, never refused: the table and the
    /// dispatch in `handle_frame` stay in step.
    #[test]
    fn every_served_api_and_version_is_answered() {
        let now = Instant::now();
        let mut g = Gen::new(11);
        for served in SUPPORTED_APIS {
            for version in served.versions.min..=served.versions.max {
                let mut conn = Connection::new(Config::default(), now);
                let mut buf = BytesMut::new();
                buf.put_u32(0);
                let header = RequestHeader {
                    request_api_key: served.key as i16,
                    request_api_version: version,
                    correlation_id: 3,
                    ..RequestHeader::default()
                };
                let hv = api::request_header_version(served.key, version);
                header
                    .encode(&mut buf, hv)
                    .unwrap_or_else(|e| panic!("{e}"));
                Request::sample(served.key, &mut g, version)
                    .encode(&mut buf, version)
                    .unwrap_or_else(|e| panic!("{e}"));
                let size = u32::try_from(buf.len() - 4).unwrap_or(u32::MAX);
                buf[..4].copy_from_slice(&size.to_be_bytes());
                conn.handle_input(now, &mut buf);
                assert!(
                    conn.close_reason().is_none(),
                    "{:?} v{version}: {:?}",
                    served.key,
                    conn.close_reason()
                );
                let out = conn.poll_transmit().unwrap_or_default();
                assert!(out.len() > 8, "{:?} v{version} answered", served.key);
            }
        }
    }
}
