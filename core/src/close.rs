//! Why a connection closes.

use std::time::Duration;

use crate::protocol::frame::FrameError;
use crate::protocol::{ApiKey, DecodeError, EncodeError};

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
    #[error("unsupported API {} (key {api_key}, v{version})", api_name(*api_key))]
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
    /// A produce request with acks=0 failed; closing is the producer's only signal.
    #[error("acks=0 produce failed: {0}")]
    ProduceFailed(String),
    /// A request without an error code for it took longer than the request timeout.
    #[error("{0} request timed out")]
    RequestTimeout(&'static str),
    /// No traffic for longer than the idle timeout.
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    /// The gateway is shutting down.
    #[error("gateway shutting down")]
    Shutdown,
    /// A request other than ApiVersions and the SASL ones before authentication.
    #[error("{} before SASL authentication", .0.name())]
    Unauthenticated(ApiKey),
    /// SASL authentication failed or was refused.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The SASL session's lifetime ended without a new authentication (KIP-368).
    #[error("SASL session expired without re-authentication")]
    SessionExpired,
    /// The gateway cannot take the client's request now and closes rather than fail it,
    /// so that the client retries after its reconnection backoff.
    #[error("overloaded: {0}")]
    Overloaded(String),
}

impl CloseReason {
    /// A short, fixed name for the kind of reason, fit for a metric label.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(_) | Self::ShortFrame(_) => "bad_frame",
            Self::UnsupportedApiKey { .. } => "unsupported_api",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Malformed(_) => "malformed_request",
            Self::Encode(_) => "encode_error",
            Self::ProduceFailed(_) => "acks0_produce_failed",
            Self::RequestTimeout(_) => "request_timeout",
            Self::Idle(_) => "idle",
            Self::Shutdown => "shutdown",
            Self::Unauthenticated(_) => "unauthenticated_request",
            Self::Authentication(_) => "authentication_failed",
            Self::SessionExpired => "session_expired",
            Self::Overloaded(_) => "overloaded",
        }
    }
}

/// An API key's name for the log (Kafka's name when the schemas know the key, so that an
/// operator sees `DescribeAcls`, not `29`).
fn api_name(key: i16) -> &'static str {
    ApiKey::from_i16(key).map_or("unknown to Kafka's schemas", ApiKey::name)
}

#[cfg(test)]
mod tests {
    use super::CloseReason;

    #[test]
    fn an_unserved_api_is_named() {
        let r = CloseReason::UnsupportedApiKey {
            api_key: 29,
            version: 3,
        };
        assert_eq!(r.to_string(), "unsupported API DescribeAcls (key 29, v3)");
        let r = CloseReason::UnsupportedApiKey {
            api_key: 999,
            version: 0,
        };
        assert!(r.to_string().contains("key 999"), "{r}");
    }
}
