//! One connection's TLS, without I/O, on either side: a Kafka listener's server side, or
//! the client side of the gateway's connections to Iggy.
//!
//! Call order, for an adapter: after each read, [`TlsSession::handle_ciphertext`] with what
//! was read (plaintext is appended to the Kafka connection's input buffer), then
//! [`TlsSession::take_peer_principal`] before that input is handed on; to send,
//! [`TlsSession::write_plaintext`] with what the Kafka connection transmits, then write
//! every buffer [`TlsSession::poll_transmit`] gives, also when there was nothing to send:
//! the handshake and alerts have ciphertext of their own. After an error, write what
//! `poll_transmit` still gives (the alert that tells the peer why) and close.

use std::io::{IoSlice, Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::TlsError;

/// What the ciphertext handed in brought, besides plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The peer sent close_notify: no more plaintext will come.
    pub peer_closed: bool,
}

/// A TLS session over no socket.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// Whether the principal was handed out (or there is none to hand out).
    principal_taken: bool,
    /// The first fatal error; every later call returns it again.
    failed: Option<String>,
}

impl TlsSession {
    /// A server-side session that will handshake with `config`.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self::over(ServerConnection::new(config)?.into()))
    }

    /// A client-side session to the server `name`, whose ClientHello is ready at once in
    /// [`TlsSession::poll_transmit`]. Plaintext written before the handshake completes
    /// waits inside the session. [`crate::ClientTls::session`] builds one from options.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        Ok(Self::over(ClientConnection::new(config, name)?.into()))
    }

    fn over(mut conn: Connection) -> Self {
        // What either side sends is bounded by its own limits (a Kafka connection stops
        // taking requests while answers wait, an Iggy session has one request in flight);
        // a second limit here would only stall it.
        conn.set_buffer_limit(None);
        Self {
            conn,
            principal_taken: false,
            failed: None,
        }
    }

    /// Takes all of `ciphertext` (bytes read from the peer) and appends the plaintext it
    /// decrypts to `plaintext`.
    ///
    /// # Errors
    /// When the peer breaks TLS or the handshake fails (an untrusted or missing
    /// certificate, no common version or suite, a peer speaking plaintext). The session is
    /// then finished: [`TlsSession::poll_transmit`] gives the alert to send, and every later
    /// call fails again.
    pub fn handle_ciphertext(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<Received, TlsError> {
        if let Some(e) = &self.failed {
            return Err(TlsError::Failed(e.clone()));
        }
        let mut received = Received { peer_closed: false };
        while !ciphertext.is_empty() {
            // `read_tls` takes at most one buffer's worth; the loop feeds the rest once the
            // records it holds are processed and their plaintext drained.
            let n = match self.conn.read_tls(&mut ciphertext) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(TlsError::Io(e))),
            };
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => return Err(self.fail(TlsError::Protocol(e))),
            };
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = plaintext.len();
                plaintext.resize(start + ready, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plaintext[start..]) {
                    plaintext.truncate(start);
                    return Err(self.fail(TlsError::Io(e)));
                }
            }
            if state.peer_has_closed() {
                received.peer_closed = true;
                break;
            }
            if n == 0 {
                break;
            }
        }
        Ok(received)
    }

    /// The principal the peer's certificate names ([`crate::principal_of`]), once, as soon
    /// as the handshake has completed with one; `None` before, after, and when the client
    /// sent no certificate.
    pub fn take_peer_principal(&mut self) -> Option<String> {
        if self.principal_taken || self.conn.is_handshaking() {
            return None;
        }
        self.principal_taken = true;
        let certs = self.conn.peer_certificates()?;
        crate::principal_of(certs.first()?.as_ref())
    }

    /// Whether the handshake is still under way.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Encrypts all of `data` for sending (before the handshake completes it waits inside
    /// the session); returns how many bytes it took, which is all of them.
    pub fn write_plaintext(&mut self, data: &[IoSlice<'_>]) -> usize {
        if self.failed.is_some() {
            return data.iter().map(|d| d.len()).sum();
        }
        let mut taken = 0;
        for d in data {
            // With no buffer limit rustls takes everything; a short write is impossible,
            // but is counted rather than assumed.
            match self.conn.writer().write(d) {
                Ok(n) => taken += n,
                Err(e) => {
                    let _ = self.fail(TlsError::Io(e));
                    return data.iter().map(|d| d.len()).sum();
                }
            }
        }
        taken
    }

    /// Queues close_notify: the peer learns the end was meant, not a truncation.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// The next ciphertext to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if !self.conn.wants_write() {
            return None;
        }
        let mut out = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Remembers `e` as the session's end and returns it.
    fn fail(&mut self, e: TlsError) -> TlsError {
        self.failed = Some(e.to_string());
        e
    }
}
