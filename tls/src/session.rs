//! One connection's TLS, without I/O, on either side: a Kafka listener's server side, or
//! the client side of the gateway's connections to Iggy.
//!
//! Call order, for an adapter: read into [`TlsSession::read_buffer`] and then call
//! [`TlsSession::handle_read`] (or hand bytes read elsewhere to
//! [`TlsSession::handle_ciphertext`]): plaintext is appended to the Kafka connection's
//! input buffer, never more of it than the ciphertext held, so that the adapter can make
//! room for it first, by its own rule for growing that buffer; then
//! [`TlsSession::take_peer_principal`] before that input is handed on. To send,
//! [`TlsSession::write_part`] with what the Kafka connection transmits (a long
//! transmission goes a part of [`WRITE_CHUNK`] at a time), then write every buffer
//! [`TlsSession::poll_transmit`] gives before the next part, and also when there was
//! nothing to send: the handshake and alerts have ciphertext of their own. After an
//! error, write what `poll_transmit` still gives (the alert that tells the peer why) and
//! close.
//!
//! It runs rustls's unbuffered connections: records are deframed and decrypted where they
//! were read, in the session's own buffer, and encrypted straight into the buffer that is
//! written, so ciphertext read into [`TlsSession::read_buffer`] is not copied on the way
//! in, and none is on the way out. (rustls still copies each record's plaintext out of
//! its decryption, and the session appends it to the caller's buffer.)

use std::fmt;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{ClientConfig, ServerConfig};
use zeroize::Zeroize;

use crate::TlsError;

/// What the ciphertext handed in brought, besides plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The peer sent close_notify: no more plaintext will come.
    pub peer_closed: bool,
}

/// Plaintext is encrypted in pieces of this many bytes (TLS's largest record), so that
/// small buffers written together share records.
const RECORD: usize = 16 * 1024;

/// How much plaintext [`TlsSession::write_part`] takes at a time, each part's ciphertext
/// written before the next part is encrypted. A long response (a Fetch's
/// megabytes) sealed whole would reach the peer only once all of it was encrypted, so the
/// gateway's encryption and the client's decryption would add up; in parts, the client
/// decrypts one while the next is encrypted. A whole number of records, so that parts
/// do not cut records short. Each part is a write that wakes the peer: with 1 MiB
/// responses, parts of 64 KiB cost the gateway a sixth more CPU than one write, where
/// 256 KiB cost none measurable and kept most of the gain.
pub const WRITE_CHUNK: usize = 16 * RECORD;

/// The most ciphertext held unprocessed: a handshake message rustls is still joining
/// (it allows 64 KiB) plus a record and a read. A peer that sends more without completing
/// anything is refused rather than buffered.
const MAX_UNPROCESSED: usize = 64 * 1024 + 2 * RECORD + 64 * 1024;

/// How much ciphertext `len` bytes of plaintext may take, at most: each record adds a
/// header, an explicit nonce (TLS 1.2) or content type (TLS 1.3), and a tag.
fn sealed_size(len: usize) -> usize {
    len + (len / RECORD + 1) * 64
}

/// Zeroes `bytes` at `memset`'s speed. `zeroize` on a slice writes one byte at a time
/// (volatile writes cannot be merged), which took a sixth of the gateway's CPU time
/// producing over TLS; the barrier is what keeps the compiler from dropping these writes.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    zeroize::optimization_barrier(bytes);
}

/// Zeroes what `v` holds and empties it. What lies past its length holds no plaintext:
/// every path that shortens it wipes first.
fn wipe_vec(v: &mut Vec<u8>) {
    wipe(v);
    v.clear();
}

/// Lets go of the first `n` bytes of `incoming`, zeroed first: rustls decrypts records in
/// place, so they held plaintext (a SaslAuthenticate's password among it).
fn consume(incoming: &mut BytesMut, n: usize) {
    let n = n.min(incoming.len());
    wipe(&mut incoming[..n]);
    incoming.advance(n);
}

enum Conn {
    Server(Box<UnbufferedServerConnection>),
    Client(Box<UnbufferedClientConnection>),
}

/// The session's buffers, apart from the connection so that both can be borrowed at once.
#[derive(Default)]
struct Buffers {
    /// Ciphertext read and not yet processed (a partial record, or nothing).
    incoming: BytesMut,
    /// Ciphertext to write, in order.
    outgoing: BytesMut,
    /// Plaintext waiting for the handshake to let it be sent, and small pieces gathered
    /// into a record.
    pending: Vec<u8>,
    /// Plaintext decrypted while sending, for the next [`TlsSession::handle_read`].
    stash: BytesMut,
    /// close_notify asked for and not yet sent.
    closing: bool,
    /// close_notify sent: nothing more is encrypted.
    closed: bool,
    /// The peer's close_notify arrived.
    peer_closed: bool,
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // Plaintext may be left in any of them; ciphertext costs little to zero as well.
        wipe(&mut self.incoming);
        self.pending.zeroize();
        wipe(&mut self.stash);
    }
}

/// A TLS session over no socket.
pub struct TlsSession {
    conn: Conn,
    bufs: Buffers,
    /// Whether the principal was handed out (or there is none to hand out).
    principal_taken: bool,
    /// The first fatal error; every later call returns it again.
    failed: Option<String>,
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field(
                "side",
                &match self.conn {
                    Conn::Server(_) => "server",
                    Conn::Client(_) => "client",
                },
            )
            .field("handshaking", &self.is_handshaking())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Either side's unbuffered connection, for what is done alike on both.
trait Unbuffered {
    type Data;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What [`step`] is asked to do with application data once rustls lets it out.
#[derive(Clone, Copy)]
enum Then<'d> {
    /// Send what is pending (and close_notify if asked for); stop when rustls waits for
    /// ciphertext.
    Read,
    /// Send what is pending, then these.
    Write(&'d [IoSlice<'d>]),
}

/// Runs `conn` as far as the ciphertext in `bufs.incoming` and the application data
/// take it: decrypted plaintext goes to `plaintext`, handshake messages and encrypted data
/// to `bufs.outgoing`. Returns once rustls waits for more ciphertext (having sent what
/// `then` asks for, if it may), or with rustls's error.
fn step<C: Unbuffered>(
    conn: &mut C,
    bufs: &mut Buffers,
    plaintext: &mut BytesMut,
    then: Then<'_>,
) -> Result<(), rustls::Error> {
    let mut data = match then {
        Then::Read => &[][..],
        Then::Write(data) => data,
    };
    let Buffers {
        incoming,
        outgoing,
        pending,
        closing,
        closed,
        peer_closed,
        ..
    } = bufs;
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process(incoming);
        let more = match state {
            Err(e) => {
                consume(incoming, discard);
                return Err(e);
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut failed = None;
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            plaintext.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    consume(incoming, discard);
                    return Err(e);
                }
                true
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                let encoded = into_outgoing(outgoing, 4096, |out| match encode.encode(out) {
                    Ok(n) => Ok(n),
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        Err(Some(required_size))
                    }
                    Err(_) => Err(None),
                });
                if let Err(e) = encoded {
                    consume(incoming, discard);
                    return Err(e);
                }
                true
            }
            Ok(ConnectionState::TransmitTlsData(mut transmit)) => {
                // What was encoded is in `outgoing`, which the adapter writes in order, so
                // it counts as sent.
                if let Some(mut traffic) = transmit.may_encrypt_app_data() {
                    let sealed = seal(&mut traffic, outgoing, pending, closing, closed, data);
                    data = &[];
                    if let Err(e) = sealed {
                        consume(incoming, discard);
                        return Err(e);
                    }
                }
                transmit.done();
                true
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                let sealed = seal(&mut traffic, outgoing, pending, closing, closed, data);
                data = &[];
                if let Err(e) = sealed {
                    consume(incoming, discard);
                    return Err(e);
                }
                false
            }
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                true
            }
            // Closed, BlockedHandshake (more ciphertext needed), and early data, which the
            // configurations do not accept.
            Ok(_) => false,
        };
        consume(incoming, discard);
        if !more {
            if !data.is_empty() {
                // Not sendable yet (the handshake is under way): it waits.
                for d in data {
                    pending.extend_from_slice(d);
                }
            }
            return Ok(());
        }
    }
}

/// Encrypts, with `traffic`, what waits in `pending` and then `data`, into `outgoing`,
/// then close_notify if `closing`. Pieces smaller than a record are gathered into whole
/// records where they can be, so that small buffers share records; long ones are
/// encrypted where they are.
fn seal<Data>(
    traffic: &mut WriteTraffic<'_, Data>,
    outgoing: &mut BytesMut,
    pending: &mut Vec<u8>,
    closing: &mut bool,
    closed: &mut bool,
    data: &[IoSlice<'_>],
) -> Result<(), rustls::Error> {
    if *closed {
        wipe_vec(pending);
        return Ok(());
    }
    let mut encrypt = |outgoing: &mut BytesMut, plain: &[u8]| {
        into_outgoing(outgoing, sealed_size(plain.len()), |out| {
            match traffic.encrypt(plain, out) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(_) => Err(None),
            }
        })
    };
    for d in data {
        let mut d: &[u8] = d;
        if !pending.is_empty() || d.len() < RECORD {
            // Top the gathered pieces up to a whole record before sending them.
            let take = d.len().min(RECORD - pending.len() % RECORD);
            pending.extend_from_slice(&d[..take]);
            d = &d[take..];
            if pending.len().is_multiple_of(RECORD) {
                encrypt(outgoing, pending)?;
                wipe_vec(pending);
            }
        }
        if d.is_empty() {
            continue;
        }
        let whole = d.len() - d.len() % RECORD;
        if whole > 0 {
            encrypt(outgoing, &d[..whole])?;
        }
        pending.extend_from_slice(&d[whole..]);
    }
    if !pending.is_empty() {
        encrypt(outgoing, pending)?;
        wipe_vec(pending);
    }
    if std::mem::take(closing) {
        into_outgoing(outgoing, 64, |out| match traffic.queue_close_notify(out) {
            Ok(n) => Ok(n),
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                Err(Some(required_size))
            }
            Err(_) => Err(None),
        })?;
        *closed = true;
    }
    Ok(())
}

/// Lets `write` fill the end of `outgoing` (it says how many bytes it wrote, or how many
/// it needs), with room for `estimate` bytes first.
fn into_outgoing(
    outgoing: &mut BytesMut,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), rustls::Error> {
    let start = outgoing.len();
    let mut room = estimate;
    for _ in 0..2 {
        outgoing.resize(start + room, 0);
        match write(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => break,
        }
    }
    outgoing.truncate(start);
    Err(rustls::Error::General(
        "cannot encrypt (keys exhausted, or the session ended)".into(),
    ))
}

/// Encodes the message rustls has queued (after a failure, its alert) into `outgoing`, if
/// it has one. rustls is handed the same ciphertext buffer as before: what it remembers
/// of it must still be there.
fn encode_queued<C: Unbuffered>(conn: &mut C, bufs: &mut Buffers) {
    let Buffers {
        incoming, outgoing, ..
    } = bufs;
    let status = conn.process(incoming);
    let discard = status.discard;
    if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
        // Best effort: the session has failed either way.
        let _ = into_outgoing(outgoing, 64, |out| match data.encode(out) {
            Ok(n) => Ok(n),
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                Err(Some(required_size))
            }
            Err(_) => Err(None),
        });
    }
    consume(incoming, discard);
}

impl TlsSession {
    /// A server-side session that will handshake with `config`.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self::over(Conn::Server(Box::new(
            UnbufferedServerConnection::new(config)?,
        ))))
    }

    /// A client-side session to the server `name`, whose ClientHello is ready at once in
    /// [`TlsSession::poll_transmit`]. Plaintext written before the handshake completes
    /// waits inside the session. [`crate::ClientTls::session`] builds one from options.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        let mut s = Self::over(Conn::Client(Box::new(UnbufferedClientConnection::new(
            config, name,
        )?)));
        s.run(None, Then::Read)?;
        Ok(s)
    }

    fn over(conn: Conn) -> Self {
        // What either side sends is bounded by its own limits (a Kafka connection stops
        // taking requests while answers wait, an Iggy session has one request in flight);
        // a second limit here would only stall it.
        Self {
            conn,
            bufs: Buffers::default(),
            principal_taken: false,
            failed: None,
        }
    }

    /// Runs rustls ([`step`]), plaintext going to `plaintext` (or, when there is none to
    /// give it to, kept for the next read).
    fn run(&mut self, plaintext: Option<&mut BytesMut>, then: Then<'_>) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(TlsError::Failed(e.clone()));
        }
        let mut stash = std::mem::take(&mut self.bufs.stash);
        let plaintext = plaintext.unwrap_or(&mut stash);
        let ran = match &mut self.conn {
            Conn::Server(c) => step(&mut **c, &mut self.bufs, plaintext, then),
            Conn::Client(c) => step(&mut **c, &mut self.bufs, plaintext, then),
        };
        if !stash.is_empty() {
            self.bufs.stash.extend_from_slice(&stash);
            wipe(&mut stash);
        }
        match ran {
            Ok(()) if self.bufs.incoming.len() > MAX_UNPROCESSED => {
                let held = self.bufs.incoming.len();
                Err(self.fail(TlsError::Config(format!(
                    "TLS: the peer sent {held} bytes that complete no TLS message"
                ))))
            }
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(TlsError::Protocol(e))),
        }
    }

    /// Where to read ciphertext into, for [`TlsSession::handle_read`]: reading straight
    /// into it spares a copy. Reserving its free capacity is the caller's.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.bufs.incoming
    }

    /// Processes the ciphertext read into [`TlsSession::read_buffer`], and appends the
    /// plaintext it decrypts to `plaintext`.
    ///
    /// # Errors
    /// When the peer breaks TLS or the handshake fails (an untrusted or missing
    /// certificate, no common version or suite, a peer speaking plaintext). The session is
    /// then finished: [`TlsSession::poll_transmit`] gives the alert to send, and every later
    /// call fails again.
    pub fn handle_read(&mut self, plaintext: &mut BytesMut) -> Result<Received, TlsError> {
        if !self.bufs.stash.is_empty() {
            let mut stashed = self.bufs.stash.split();
            plaintext.extend_from_slice(&stashed);
            wipe(&mut stashed);
        }
        self.run(Some(plaintext), Then::Read)?;
        Ok(Received {
            peer_closed: self.bufs.peer_closed,
        })
    }

    /// Takes all of `ciphertext` (bytes read from the peer) and appends the plaintext it
    /// decrypts to `plaintext`: [`TlsSession::handle_read`] for bytes read elsewhere.
    ///
    /// # Errors
    /// As [`TlsSession::handle_read`].
    pub fn handle_ciphertext(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<Received, TlsError> {
        if let Some(e) = &self.failed {
            return Err(TlsError::Failed(e.clone()));
        }
        self.bufs.incoming.extend_from_slice(ciphertext);
        self.handle_read(plaintext)
    }

    /// The principal the peer's certificate names ([`crate::principal_of`]), once, as soon
    /// as the handshake has completed with one; `None` before, after, and when the client
    /// sent no certificate.
    pub fn take_peer_principal(&mut self) -> Option<String> {
        if self.principal_taken || self.is_handshaking() {
            return None;
        }
        self.principal_taken = true;
        let certs = match &self.conn {
            Conn::Server(c) => c.peer_certificates(),
            Conn::Client(c) => c.peer_certificates(),
        }?;
        crate::principal_of(certs.first()?.as_ref())
    }

    /// Whether the handshake is still under way.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        match &self.conn {
            Conn::Server(c) => c.is_handshaking(),
            Conn::Client(c) => c.is_handshaking(),
        }
    }

    /// Encrypts all of `data` for sending (before the handshake completes it waits inside
    /// the session); returns how many bytes it took, which is all of them.
    pub fn write_plaintext(&mut self, data: &[IoSlice<'_>]) -> usize {
        let total = data.iter().map(|d| d.len()).sum();
        if self.failed.is_none() && total > 0 {
            // A failure is remembered, and its alert queued, by `run`.
            let _ = self.run(None, Then::Write(data));
        }
        total
    }

    /// Encrypts the first [`WRITE_CHUNK`] bytes of `data` (all of it, if fewer), as
    /// [`TlsSession::write_plaintext`] does; returns how many bytes it took. An adapter
    /// writes what [`TlsSession::poll_transmit`] gives before it hands on the rest.
    pub fn write_part(&mut self, data: &[IoSlice<'_>]) -> usize {
        let mut room = WRITE_CHUNK;
        let part: Vec<IoSlice<'_>> = data
            .iter()
            .map_while(|d| {
                (room > 0).then(|| {
                    let take = d.len().min(room);
                    room -= take;
                    IoSlice::new(&d[..take])
                })
            })
            .collect();
        self.write_plaintext(&part)
    }

    /// Queues close_notify: the peer learns the end was meant, not a truncation.
    pub fn close(&mut self) {
        if self.bufs.closed || self.failed.is_some() {
            return;
        }
        self.bufs.closing = true;
        let _ = self.run(None, Then::Read);
    }

    /// The next ciphertext to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.bufs.outgoing.is_empty()).then(|| self.bufs.outgoing.split().freeze())
    }

    /// Remembers `e` as the session's end, queues the alert that tells the peer why (when
    /// rustls has one), and returns `e`.
    fn fail(&mut self, e: TlsError) -> TlsError {
        self.failed = Some(e.to_string());
        // rustls queues its alert as a message to encode, which it hands out first on the
        // next call. Only once: a call after that would take the ciphertext that failed
        // again.
        match &mut self.conn {
            Conn::Server(c) => encode_queued(&mut **c, &mut self.bufs),
            Conn::Client(c) => encode_queued(&mut **c, &mut self.bufs),
        };
        e
    }
}

#[cfg(test)]
mod wipe_tests {
    use super::*;

    #[test]
    fn what_is_consumed_is_zeroed_and_what_is_not_is_kept() {
        let mut incoming = BytesMut::from(&b"password=hunter2;rest"[..]);
        wipe(&mut incoming[..16]);
        assert_eq!(&incoming[..], b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0;rest");
        consume(&mut incoming, 16);
        assert_eq!(&incoming[..], b";rest");
        let mut pending = b"a secret".to_vec();
        wipe_vec(&mut pending);
        assert!(pending.is_empty());
    }
}
