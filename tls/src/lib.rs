//! TLS for the gateway's Kafka listeners and its connections to Iggy, shared by both
//! runtime adapters.
//!
//! - [`TlsSession`]: one connection's TLS, sans-IO over rustls's connection (either side). The
//!   adapter hands it the ciphertext it read and gets plaintext for the Kafka connection;
//!   it hands it the plaintext the Kafka connection wants sent and gets ciphertext to write.
//!   It never touches a socket or the clock, so it is tested in memory and fuzzed.
//! - [`ServerTls`]: a listener's certificate, key and client-certificate policy, loaded from
//!   PEM files, and reloaded (on demand, or when the files change) without disturbing
//!   connections already open: each new connection takes the configuration in effect.
//!
//! - [`ClientTls`]: the client side, for the gateway's connections to Iggy: the CA to
//!   trust and the server name to expect; its sessions are [`TlsSession`]s too.
//!
//! The crypto is rustls's, on the `ring` provider: TLS 1.2 and 1.3 and the cipher suites
//! rustls offers by default; a listener picks the suite by its own order of preference
//! ([`default_cipher_suites`], AES-128-GCM first, unless configured otherwise).

mod client;
mod files;
mod principal;
mod session;
#[cfg(test)]
mod tests;

pub use client::ClientTls;
pub use files::{
    cipher_suites_provider, default_cipher_suites, ClientAuth, ServerTls, TlsFiles, RELOAD_CHECK,
};
pub use principal::principal_of;
pub use session::{Received, TlsSession, WRITE_CHUNK};

/// Why TLS could not be set up or went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match its certificate, say).
    #[error("{0}")]
    Config(String),
    /// The peer broke the protocol, or the handshake failed.
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// The session failed before (with this reason) and is finished.
    #[error("TLS: the session failed before: {0}")]
    Failed(String),
    /// rustls would not buffer more (it refuses only when plaintext is left unread, which
    /// the session never does; an error rather than a panic all the same).
    #[error("TLS: {0}")]
    Io(#[from] std::io::Error),
}
