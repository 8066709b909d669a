//! One client session of Iggy's binary protocol over one byte stream, without I/O.
//!
//! The current Iggy server (0.9 line) frames every client request with a 256-byte consensus
//! [`RequestHeader`] and answers with a [`ReplyHeader`] (or an [`EvictionHeader`] when it
//! drops the session). A session opens with a `LoginRegister` request (request number 0,
//! session 0); its reply binds a session number that every later request echoes. Requests
//! that change metadata take the next request number, so the server can deduplicate a resent
//! one; partition-plane and read-only requests reuse the current number. The protocol is
//! lockstep: one request in flight per connection.
//!
//! A reply may say the request is not committed yet (`TransientNotCommitted`) or not admitted
//! (`TransientNotAccepted`): the same frame, same request number, is resent after a short
//! pause on the same connection, which is the only safe retry for the first case (the
//! server answers from its reply cache if it did commit meanwhile). A node that keeps
//! refusing to admit a request for [`REDIRECT_AFTER`] (a cluster's follower, a primary that
//! lost its role, or, for a partition's writes, a node that is not that partition's
//! primary) is not where the request belongs: unless an earlier answer said it was taken,
//! the request fails with [`Failure::NotAdmitted`] (it was not applied: it may be sent
//! again elsewhere), as Iggy's own SDK gives up on such a node. The session goes on.
//! A request that keeps getting transient answers for [`STALL_REPORT_AFTER`] is reported
//! once ([`Event::Stalled`]).
//!
//! Call order: after [`Session::new`], the caller writes what [`Session::poll_transmit`]
//! gives, reads received bytes into [`Session::input_buffer`] and calls
//! [`Session::handle_received`] (or hands them over with [`Session::handle_input`]),
//! takes [`Session::poll_event`]s, sleeps no later than [`Session::poll_timeout`] and then
//! calls [`Session::handle_timeout`], and reports the end of the byte stream with
//! [`Session::handle_closed`]. [`Session::send`] is accepted only while
//! [`Session::is_ready`]. Once closed (an [`Event::Closed`] was emitted) a session is done;
//! the caller drops the byte stream and starts a new session on a new one.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use iggy_binary_protocol::consensus::{
    Command, EvictionHeader, EvictionReason, Operation, ReplyHeader, RequestHeader, HEADER_SIZE,
};
use iggy_binary_protocol::requests::users::{LoginRegisterRequest, LoginRegisterWithPatRequest};
use iggy_binary_protocol::responses::users::LoginRegisterResponse;
use iggy_binary_protocol::{
    result_code, result_section_len, ClientVersionInfo, WireDecode, WireEncode, WireName,
    IGGY_PROTOCOL_VERSION,
};
use secrecy::SecretString;
use twox_hash::XxHash3_64;
use zeroize::Zeroizing;

/// Iggy's error code for "not committed yet, resend the same request".
pub const TRANSIENT_NOT_COMMITTED: u32 = 57;
/// Iggy's error code for "not admitted, resend".
pub const TRANSIENT_NOT_ACCEPTED: u32 = 58;
/// Pause before resending a transient answer (Iggy's own SDK waits 50 ms).
pub const RESEND_PAUSE: Duration = Duration::from_millis(50);
/// How long a node may answer "not admitted" to a metadata request before it goes
/// elsewhere (Iggy's own SDK rechecks the leader after 2 s).
pub const REDIRECT_AFTER: Duration = Duration::from_secs(2);
/// The same for a partition's writes: a node that is not the partition's primary refuses
/// them at once, and each refused write holds up those queued behind it.
pub const PARTITION_REDIRECT_AFTER: Duration = Duration::from_millis(200);
/// How long a request may get transient answers before it is reported.
pub const STALL_REPORT_AFTER: Duration = Duration::from_secs(1);
/// Requests with payloads up to this size leave as one buffer (header and payload).
const COALESCE_BELOW: usize = 16 * 1024;

/// How a session proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// Username and password.
    User {
        /// The username.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A personal access token.
    Token(SecretString),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log line.
        match self {
            Self::User { username, .. } => write!(f, "User({username}, ***)"),
            Self::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// `bytes` in memory of their own, zeroed when the last copy of them is dropped: for a
/// login, which holds a password or token.
fn secret(bytes: Bytes) -> Bytes {
    // Unique when just encoded, so this takes the allocation over rather than copying it.
    let owned = Vec::from(bytes);
    Bytes::from_owner(Zeroizing::new(owned))
}

/// Limits and identity of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Who logs in.
    pub credentials: Credentials,
    /// Identifies this client to the server's deduplication; unique per session.
    pub client_id: u128,
    /// A request not answered within this time closes the session (its outcome unknown).
    pub reply_timeout: Duration,
    /// The largest reply accepted: a larger reply to the request in flight fails it
    /// ([`Failure::TooLarge`]) and is read past; any other larger frame closes the session.
    pub max_reply_bytes: usize,
}

/// Why a request did not get a reply from Iggy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Iggy answered with this error code.
    #[error("iggy error {0}")]
    Status(u32),
    /// The session ended before the reply: the request may or may not have been applied.
    #[error("connection to iggy lost before the reply: {0}")]
    Lost(SessionError),
    /// The reply (a frame of this many bytes) was larger than the session accepts; it was
    /// read past, and the session goes on. A poll asking for fewer messages may fit.
    #[error("iggy's reply of {0} bytes is larger than accepted")]
    TooLarge(usize),
    /// The node would not admit the request (Iggy error 58) for [`REDIRECT_AFTER`] (or
    /// [`PARTITION_REDIRECT_AFTER`]), and never said it took it: it was not applied, and may
    /// be sent to another node.
    #[error("not admitted by this iggy node")]
    NotAdmitted,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The byte stream ended.
    #[error("connection closed")]
    Closed,
    /// No reply within the reply timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server sent something this client cannot read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server evicted the session (reason code).
    #[error("evicted by the server: {words} (reason {0})", words = eviction_reason(*.0))]
    Evicted(u8),
    /// Login was refused with this Iggy error code.
    #[error("login refused (iggy error {0})")]
    LoginRefused(u32),
    /// The TLS handshake failed on what the node answered (a certificate not trusted or
    /// not for this name, no common protocol): trying again cannot cure it.
    #[error("{0}")]
    TlsRefused(String),
}

impl SessionError {
    /// Whether the server refused the session's credentials, which trying again cannot
    /// cure: a refused login, or an eviction for bad credentials, a bad token or an inactive
    /// user (how Iggy 0.9 answers a login it refuses).
    #[must_use]
    pub fn refuses_credentials(&self) -> bool {
        match self {
            Self::LoginRefused(_) => true,
            Self::Evicted(reason) => [
                EvictionReason::InvalidCredentials,
                EvictionReason::InvalidToken,
                EvictionReason::UserInactive,
            ]
            .iter()
            .any(|r| *r as u8 == *reason),
            _ => false,
        }
    }

    /// Whether trying again cannot cure it: the credentials were refused, or TLS was.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.refuses_credentials() || matches!(self, Self::TlsRefused(_))
    }
}

/// Iggy's eviction reasons, as words for the log.
fn eviction_reason(reason: u8) -> &'static str {
    [
        (EvictionReason::NoSession, "no session"),
        (
            EvictionReason::ClientReleaseTooLow,
            "client release too low",
        ),
        (
            EvictionReason::ClientReleaseTooHigh,
            "client release too high",
        ),
        (
            EvictionReason::InvalidRequestOperation,
            "invalid request operation",
        ),
        (EvictionReason::InvalidRequestBody, "invalid request body"),
        (
            EvictionReason::InvalidRequestBodySize,
            "invalid request body size",
        ),
        (EvictionReason::SessionTooLow, "session too old"),
        (
            EvictionReason::SessionReleaseMismatch,
            "session release mismatch",
        ),
        (EvictionReason::InvalidCredentials, "invalid credentials"),
        (EvictionReason::InvalidToken, "invalid token"),
        (EvictionReason::UserInactive, "user inactive"),
        (EvictionReason::SessionError, "session error"),
        (EvictionReason::StaleClient, "stale client"),
    ]
    .iter()
    .find(|(r, _)| *r as u8 == reason)
    .map_or("unknown reason", |(_, words)| words)
}

/// What a session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Logged in; requests may be sent.
    Ready {
        /// The session number the server bound.
        session: u64,
        /// The server's version string.
        server_version: String,
    },
    /// The answer to the request sent last: its body, or why there is none.
    Reply(Result<Bytes, Failure>),
    /// The request in flight has had only transient answers (this Iggy error code last) for
    /// [`STALL_REPORT_AFTER`]; it is still being resent. Reported once per request.
    Stalled(u32),
    /// The session is over; the byte stream should be closed.
    Closed(SessionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LoggingIn,
    Ready,
    Closed,
}

#[derive(Debug)]
struct InFlight {
    header: RequestHeader,
    payload: Bytes,
    deadline: Instant,
    resend_at: Option<Instant>,
    /// When the first transient answer came, and whether it was reported stalled.
    transient_since: Option<(Instant, bool)>,
    /// When the node began refusing to admit it (error 58), if every answer since did.
    not_admitted_since: Option<Instant>,
    /// A node said it took the request ("not committed yet"): it may be applied.
    maybe_taken: bool,
}

/// One Iggy client session (see the module documentation for the call order).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    session: u64,
    next_request: u64,
    input: BytesMut,
    /// Bytes still to read past of a reply too large to accept.
    discarding: usize,
    transmit: VecDeque<Bytes>,
    in_flight: Option<InFlight>,
    events: VecDeque<Event>,
}

impl Session {
    /// Starts a session: its first transmit is the login.
    #[must_use]
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let mut s = Self {
            config,
            state: State::LoggingIn,
            session: 0,
            next_request: 1,
            input: BytesMut::new(),
            discarding: 0,
            transmit: VecDeque::new(),
            in_flight: None,
            events: VecDeque::new(),
        };
        let version_info = ClientVersionInfo {
            protocol_version: IGGY_PROTOCOL_VERSION,
            sdk_name: name("iggy-kafka-gateway"),
            sdk_version: name(env!("CARGO_PKG_VERSION")),
        };
        // Both logins travel as a `Register` operation; the body tells them apart.
        let payload = match &s.config.credentials {
            Credentials::User { username, password } => LoginRegisterRequest {
                version_info,
                username: name(username),
                password: password.clone(),
                client_context: None,
            }
            .to_bytes(),
            Credentials::Token(token) => LoginRegisterWithPatRequest {
                version_info,
                token: token.clone(),
                client_context: None,
            }
            .to_bytes(),
        };
        let payload = secret(payload);
        let header = RequestHeader {
            command: Command::Request,
            operation: Operation::Register,
            size: frame_size(payload.len()),
            client: s.config.client_id,
            request: 0,
            session: 0,
            request_checksum: u128::from(XxHash3_64::oneshot(&payload)),
            ..RequestHeader::default()
        };
        s.start(header, payload, now);
        s
    }

    /// Logged in, and no request in flight.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready && self.in_flight.is_none()
    }

    /// Whether the session has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Sends the request with Iggy command `code` and its encoded `payload`.
    ///
    /// # Errors
    /// The request back, when the session is not [ready](Self::is_ready).
    pub fn send(&mut self, code: u32, payload: Bytes, now: Instant) -> Result<(), Bytes> {
        if !self.is_ready() {
            return Err(payload);
        }
        let operation = Operation::from_command_code(code).unwrap_or(Operation::NonReplicated);
        let mut reserved = [0; 60];
        let (request, checksum) = if operation == Operation::NonReplicated {
            // Sessionless reads carry their command code here; the server routes on it.
            reserved[..4].copy_from_slice(&code.to_le_bytes());
            (self.next_request, 0)
        } else if operation.is_partition() {
            // The partition plane keeps no reply cache: reuse the number, no stamp.
            (self.next_request, 0)
        } else {
            let r = self.next_request;
            self.next_request += 1;
            (r, u128::from(XxHash3_64::oneshot(&payload)))
        };
        let header = RequestHeader {
            command: Command::Request,
            operation,
            size: frame_size(payload.len()),
            client: self.config.client_id,
            request,
            session: self.session,
            request_checksum: checksum,
            reserved,
            ..RequestHeader::default()
        };
        self.start(header, payload, now);
        Ok(())
    }

    fn start(&mut self, header: RequestHeader, payload: Bytes, now: Instant) {
        let flight = InFlight {
            header,
            payload,
            deadline: now + self.config.reply_timeout,
            resend_at: None,
            transient_since: None,
            not_admitted_since: None,
            maybe_taken: false,
        };
        self.queue(&flight);
        self.in_flight = Some(flight);
    }

    fn queue(&mut self, flight: &InFlight) {
        let header = bytemuck::bytes_of(&flight.header);
        if flight.header.operation == Operation::Register {
            // The login, with its password: in memory zeroed once it is written.
            let mut frame = Vec::with_capacity(HEADER_SIZE + flight.payload.len());
            frame.extend_from_slice(header);
            frame.extend_from_slice(&flight.payload);
            self.transmit
                .push_back(Bytes::from_owner(Zeroizing::new(frame)));
        } else if flight.payload.len() <= COALESCE_BELOW {
            // One write for a small request; a large payload is written as it is, uncopied.
            let mut frame = BytesMut::with_capacity(HEADER_SIZE + flight.payload.len());
            frame.extend_from_slice(header);
            frame.extend_from_slice(&flight.payload);
            self.transmit.push_back(frame.freeze());
        } else {
            self.transmit.push_back(Bytes::copy_from_slice(header));
            self.transmit.push_back(flight.payload.clone());
        }
    }

    /// The next bytes to write, in order: whole frames, or a large frame's header then its
    /// payload.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        self.in_flight
            .as_ref()
            .map(|f| f.resend_at.map_or(f.deadline, |r| r.min(f.deadline)))
    }

    /// Resends a transient answer whose pause is over; ends the session on a lapsed reply.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let Some(flight) = self.in_flight.as_mut() else {
            return;
        };
        if now >= flight.deadline {
            let timeout = self.config.reply_timeout;
            self.close(SessionError::Timeout(timeout));
            return;
        }
        if flight.resend_at.is_some_and(|r| now >= r) {
            flight.resend_at = None;
            let flight = self.in_flight.take();
            if let Some(flight) = flight {
                self.queue(&flight);
                self.in_flight = Some(flight);
            }
        }
    }

    /// The byte stream ended.
    pub fn handle_closed(&mut self) {
        // Bytes that never made a whole header, from a server that then hung up, are the
        // mark of something that is not Iggy (an HTTP server answers 400 and closes).
        if self.state == State::LoggingIn && !self.input.is_empty() {
            let sample = &self.input[..self.input.len().min(16)];
            let shown = if sample.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                format!("{:?}", String::from_utf8_lossy(sample))
            } else {
                format!("{sample:02x?}")
            };
            return self.close(SessionError::Protocol(format!(
                "the server answered the login with {} bytes that are not an Iggy reply \
                 (starting {shown}) and closed: is this an Iggy server's TCP port?",
                self.input.len()
            )));
        }
        self.close(SessionError::Closed);
    }

    /// Feeds bytes read from the server, copying them into [`Self::input_buffer`].
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.input.extend_from_slice(data);
        self.handle_received(now);
    }

    /// The buffer unread input accumulates in: a caller may read from the socket straight
    /// into its spare capacity, then call [`Session::handle_received`], and save a copy.
    pub fn input_buffer(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Processes what was read into [`Session::input_buffer`].
    pub fn handle_received(&mut self, now: Instant) {
        while self.state != State::Closed {
            if self.discarding > 0 {
                let n = self.discarding.min(self.input.len());
                self.input.advance(n);
                self.discarding -= n;
                if self.discarding > 0 {
                    break;
                }
            }
            match self.next_frame() {
                Ok(Some((header, body))) => self.handle_frame(&header, body, now),
                // Unless a reply too large was met: then read past it.
                Ok(None) if self.discarding == 0 => break,
                Ok(None) => {}
                Err(e) => self.close(e),
            }
        }
    }

    fn next_frame(&mut self) -> Result<Option<([u8; HEADER_SIZE], Bytes)>, SessionError> {
        if self.input.len() < HEADER_SIZE {
            return Ok(None);
        }
        let size = iggy_binary_protocol::read_size_field(&self.input)
            .map(|s| s as usize)
            .unwrap_or(0);
        if size < HEADER_SIZE {
            return Err(SessionError::Protocol(format!("frame size {size}")));
        }
        if size - HEADER_SIZE > self.config.max_reply_bytes {
            return self.too_large(size);
        }
        if self.input.len() < size {
            self.input.reserve(size - self.input.len());
            return Ok(None);
        }
        let mut header = [0; HEADER_SIZE];
        header.copy_from_slice(&self.input[..HEADER_SIZE]);
        self.input.advance(HEADER_SIZE);
        let body = self.input.split_to(size - HEADER_SIZE).freeze();
        Ok(Some((header, body)))
    }

    /// The number of the request whose reply is due: the one in flight, unless it waits to
    /// be resent.
    fn awaited_request(&self) -> Option<u64> {
        self.in_flight
            .as_ref()
            .filter(|f| f.resend_at.is_none())
            .map(|f| f.header.request)
    }

    /// A frame of `size` bytes, past what the session accepts. A successful reply to the
    /// request in flight (say, a poll of more messages than expected, or larger) fails that
    /// request alone and is read past; anything else ends the session.
    fn too_large(
        &mut self,
        size: usize,
    ) -> Result<Option<([u8; HEADER_SIZE], Bytes)>, SessionError> {
        let answers_in_flight =
            bytemuck::checked::try_pod_read_unaligned::<ReplyHeader>(&self.input[..HEADER_SIZE])
                .is_ok_and(|h| {
                    h.command == Command::Reply
                        && h.status == 0
                        && self.state == State::Ready
                        && self.awaited_request() == Some(h.request)
                });
        if !answers_in_flight {
            return Err(SessionError::Protocol(format!("frame size {size}")));
        }
        tracing::debug!(
            size,
            max = self.config.max_reply_bytes,
            "Iggy's reply is too large"
        );
        self.input.advance(HEADER_SIZE);
        self.discarding = size - HEADER_SIZE;
        self.in_flight = None;
        self.events
            .push_back(Event::Reply(Err(Failure::TooLarge(size))));
        Ok(None)
    }

    fn handle_frame(&mut self, raw: &[u8; HEADER_SIZE], body: Bytes, now: Instant) {
        // The command byte sits at the same place in every header.
        let command = raw[std::mem::offset_of!(ReplyHeader, command)];
        if command == Command::Eviction as u8 {
            let reason = bytemuck::checked::try_pod_read_unaligned::<EvictionHeader>(raw)
                .map_or(0, |h| h.reason as u8);
            self.close(SessionError::Evicted(reason));
            return;
        }
        let header = match bytemuck::checked::try_pod_read_unaligned::<ReplyHeader>(raw) {
            Ok(h) if h.command == Command::Reply => h,
            _ => {
                return self.close(SessionError::Protocol(format!(
                    "unexpected frame (command {command})"
                )))
            }
        };
        // The reply names the request number it answers; its client field is the server's
        // own view of the connection, not necessarily the id this session registered.
        let Some(expected) = self.awaited_request() else {
            return self.close(SessionError::Protocol("a reply to no request".into()));
        };
        if header.request != expected {
            return self.close(SessionError::Protocol(format!(
                "reply to request {}, expected {expected}",
                header.request
            )));
        }
        let outcome = if header.status != 0 {
            Err(header.status)
        } else {
            match split_result(header.operation, body) {
                Some(outcome) => outcome,
                None => {
                    return self.close(SessionError::Protocol(
                        "reply with a malformed result section".into(),
                    ))
                }
            }
        };
        match outcome {
            Err(code @ (TRANSIENT_NOT_COMMITTED | TRANSIENT_NOT_ACCEPTED)) => {
                self.transient(code, now);
            }
            outcome => {
                self.in_flight = None;
                if self.state == State::LoggingIn {
                    self.logged_in(outcome);
                } else {
                    self.events
                        .push_back(Event::Reply(outcome.map_err(Failure::Status)));
                }
            }
        }
    }

    /// A transient answer to the request in flight: resent after a pause, reported once it
    /// has lasted, and given up on a node that keeps refusing to admit it.
    fn transient(&mut self, code: u32, now: Instant) {
        let logging_in = self.state == State::LoggingIn;
        let Some(flight) = self.in_flight.as_mut() else {
            return;
        };
        tracing::trace!(code, "Iggy asks to resend the request");
        let (since, told) = flight.transient_since.get_or_insert((now, false));
        let stalled = !*told && now.saturating_duration_since(*since) >= STALL_REPORT_AFTER;
        if stalled {
            *told = true;
        }
        if code == TRANSIENT_NOT_COMMITTED {
            flight.maybe_taken = true;
            flight.not_admitted_since = None;
        } else {
            flight.not_admitted_since.get_or_insert(now);
        }
        // A login is admitted only where it belongs; a refused one is waited out, as Iggy's
        // own SDK does (a follower forwards logins to the primary).
        let patience = if flight.header.operation.is_partition() {
            PARTITION_REDIRECT_AFTER
        } else {
            REDIRECT_AFTER
        };
        let give_up = !logging_in
            && !flight.maybe_taken
            && flight
                .not_admitted_since
                .is_some_and(|t| now.saturating_duration_since(t) >= patience);
        if give_up {
            self.in_flight = None;
            self.events
                .push_back(Event::Reply(Err(Failure::NotAdmitted)));
            return;
        }
        flight.resend_at = Some((now + RESEND_PAUSE).min(flight.deadline));
        if stalled {
            self.events.push_back(Event::Stalled(code));
        }
    }

    fn logged_in(&mut self, outcome: Result<Bytes, u32>) {
        match outcome {
            Ok(body) => match LoginRegisterResponse::decode(&body) {
                Ok((r, _)) if r.session > 0 => {
                    self.session = r.session;
                    self.state = State::Ready;
                    self.events.push_back(Event::Ready {
                        session: r.session,
                        server_version: r.server_version.as_str().to_owned(),
                    });
                }
                Ok(_) => self.close(SessionError::Protocol("login bound session 0".into())),
                // A terminal login failure comes as an empty body.
                Err(_) if body.is_empty() => self.close(SessionError::LoginRefused(0)),
                Err(e) => self.close(SessionError::Protocol(format!("login reply: {e}"))),
            },
            Err(code) => self.close(SessionError::LoginRefused(code)),
        }
    }

    fn close(&mut self, error: SessionError) {
        if self.state == State::Closed {
            return;
        }
        let logging_in = self.state == State::LoggingIn;
        self.state = State::Closed;
        self.transmit.clear();
        self.input = BytesMut::new();
        if self.in_flight.take().is_some() && !logging_in {
            self.events
                .push_back(Event::Reply(Err(Failure::Lost(error.clone()))));
        }
        self.events.push_back(Event::Closed(error));
    }
}

/// Metadata and offset replies open with a result section (count, then index and code
/// per sub-operation); a login reply too unless it is the empty terminal failure.
fn split_result(operation: Operation, body: Bytes) -> Option<Result<Bytes, u32>> {
    let framed =
        operation.is_result_framed() || (operation == Operation::Register && !body.is_empty());
    if !framed {
        return Some(Ok(body));
    }
    match result_code(&body)? {
        0 => Some(Ok(body.slice(result_section_len(&body)?..))),
        code => Some(Err(code)),
    }
}

fn frame_size(payload: usize) -> u32 {
    // Payloads are bounded far below 4 GiB by the backend before they get here.
    u32::try_from(HEADER_SIZE + payload).unwrap_or(u32::MAX)
}

fn name(s: &str) -> WireName {
    // Iggy names are 1..=255 bytes; an out-of-range name is cut to fit, and the server
    // then refuses what it does not know.
    let mut s = s.to_owned();
    if s.is_empty() {
        s.push('-');
    }
    while s.len() > 255 {
        s.pop();
    }
    WireName::new(s).unwrap_or_else(|_| WireName::new("-").expect("a valid name"))
}

#[cfg(test)]
mod tests;
