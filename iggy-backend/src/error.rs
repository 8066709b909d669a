//! Why the backend could not open.

use iggy_kafka_core::backend::BackendError;
use iggy_kafka_iggy_client::{Failure, SessionError};

/// Why [`crate::IggyBackend::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Iggy refused the gateway's credentials: trying again cannot help.
    #[error("the credentials in --iggy were refused: {0}")]
    LoginRefused(SessionError),
    /// The TLS handshake with Iggy failed on its answer: trying again cannot help.
    #[error("TLS with Iggy failed (check tls_ca_file and tls_domain in --iggy): {0}")]
    TlsRefused(SessionError),
    /// The configured stream name is not an Iggy name.
    #[error("stream name {name:?}: {reason}")]
    StreamName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream does not exist, and creating it is not allowed.
    #[error("Iggy stream {0:?} does not exist (and creating it is not allowed)")]
    NoStream(String),
    /// The stream could not be read.
    #[error("cannot read Iggy stream {stream:?}: {source}")]
    ReadStream {
        /// The stream.
        stream: String,
        /// Why.
        source: BackendError,
    },
    /// The stream could not be created.
    #[error("cannot create Iggy stream {stream:?}: {source}")]
    CreateStream {
        /// The stream.
        stream: String,
        /// Why.
        source: Failure,
    },
    /// The committed offsets could not be read back from Iggy, or their log not started.
    #[error("{step}: {source}")]
    Offsets {
        /// What could not be done.
        step: &'static str,
        /// Why.
        source: BackendError,
    },
}

impl ConnectError {
    /// Whether Iggy refused the gateway's credentials, or TLS with Iggy failed on its
    /// answer: trying again cannot cure either.
    #[must_use]
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::LoginRefused(_) | Self::TlsRefused(_))
    }
}
