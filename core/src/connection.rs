//! One client connection as a pure state machine.
//!
//! The adapter that owns the socket drives it in this order, until [`Connection::is_closed`]:
//!
//! 1. Read whatever the socket has into a buffer the adapter owns, and pass it to
//!    [`Connection::handle_input`], which splits complete frames off the front (without
//!    copying) and leaves a partial frame for next time. Call it again after the steps
//!    below even when nothing new was read: a frame left in the buffer while the connection
//!    was at a bound is taken once the bound clears. Read only while
//!    [`Connection::wants_input`] is true: that is the connection's backpressure.
//! 2. Hand all the work [`Connection::poll_work`] returns to where it runs (store commands
//!    to the backend, group calls to the coordinator: [`crate::driver::Shared::execute`]),
//!    and feed each outcome back with [`Connection::handle_outcome`], in any order.
//! 3. Write every buffer [`Connection::poll_transmit`] returns, in order.
//! 4. Sleep until [`Connection::poll_timeout`] (if any), the next input or the next
//!    completion, whichever comes first, and call [`Connection::handle_timeout`] when the
//!    deadline passes.
//!
//! The connection never reads a clock: every call that cares takes `now`. Errors in the
//! input are fatal and sticky: the connection stops taking input, finishes and answers the
//! requests it had taken, flushes, reports [`Connection::close_reason`] and is closed.
//!
//! # Ordering
//! Many requests may be in flight. Responses leave in request order whatever order their
//! commands complete in, as Kafka requires. Side effects keep request order too: a plain
//! append to a partition is handed out after this connection's earlier appends to that
//! partition, without waiting for them to complete (a [`crate::backend::Backend`] applies
//! appends in the order it is handed them); an idempotent producer's append waits until the
//! earlier ones have completed, as does anything behind it; and topic administration (create,
//! delete, grow, configure)
//! waits for every earlier command and holds back every later one. A group's coordinator
//! calls and committed-offset commands go one request at a time: a request that started on a
//! group finishes all its steps (an OffsetCommit's membership check, then its store) before a
//! later request's commands for that group start, so a fetch of offsets sees the commit
//! before it. An OffsetCommit whose write outlives [`crate::group::OFFSETS_COMMIT_TIMEOUT`]
//! is answered then and lets the group's calls go on (a member's heartbeats must not wait
//! out its session behind a hanging write); the group's later offsets commands still wait
//! for that write (an OffsetFetch too at most that long), and a request answered before
//! its turn came does nothing afterwards. Reads are not ordered against appends. A
//! JoinGroup or SyncGroup may wait past the request timeout, for as long as the rebalance
//! may take.

mod sasl;
mod telemetry;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Command, Completion};
use crate::client_info::ClientInfo;
use crate::close::CloseReason;
use crate::config::Config;
use crate::handlers::{self, Ctx, Step, Task};
use crate::protocol::api;
use crate::protocol::frame;
use crate::protocol::generated::request_header::RequestHeader;
use crate::protocol::generated::response_header::ResponseHeader;
use crate::protocol::{ApiKey, EncodeError, Message, Out, Reader, Request, Response};
use crate::stats::ConnectionStats;
use crate::work::{Outcome, Work, WorkId};

#[derive(Debug)]
enum State {
    Open,
    /// No more input; requests taken are finished and answered, then the connection closes.
    Closing(CloseReason),
}

/// The principal's permissions as the backend gives them.
#[derive(Debug, Default)]
struct PermissionFetch {
    /// The fetch in flight, by work id.
    in_flight: Option<u64>,
    /// Whose permissions it asks for.
    asked: Option<String>,
    /// Whether an answer came since the principal was set.
    loaded: bool,
    /// When to ask again.
    next: Option<Instant>,
}

/// A request taken and not yet flushed.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    frame_len: usize,
    /// When the request arrived, for its latency.
    received: Instant,
    task: Option<Box<dyn Task>>,
    /// Bumped whenever outstanding commands stop mattering, so that late completions are
    /// recognised and dropped.
    round: u32,
    results: Vec<Option<Outcome>>,
    awaiting: usize,
    waiting: bool,
    deadline: Option<Instant>,
    /// The encoded response (frame included), once the request is done and not at the front.
    response: Option<Output>,
    done: bool,
}

/// Where a command's completion goes.
#[derive(Debug)]
struct Slot {
    seq: u64,
    round: u32,
    index: usize,
    serial: Option<Serial>,
    /// A plain append: it keeps its place among its partition's commands but need not wait
    /// for the earlier ones to complete (backends apply appends in the order handed over).
    pipelined: bool,
    /// A store command on a group's key (its committed offsets): these keep their order
    /// among themselves even past a request given up on.
    offsets: bool,
    barrier: bool,
    watch: bool,
}

/// What a connection's commands are serialized on: one at a time per key, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Serial {
    /// Appends to a partition.
    Partition(String, u32),
    /// Calls on a group and its committed offsets.
    Group(String),
}

/// Who holds a serialization key: the request whose commands use it, from its first
/// command until it is finished (a request's later steps keep their place ahead of later
/// requests), and the commands still running with it (even of a request given up on; of a
/// group's, only its store commands hold back the group's later store commands).
#[derive(Debug, Default)]
struct SerialState {
    owner: Option<u64>,
    in_flight: usize,
    /// Of `in_flight`, the commands that are not pipelined appends.
    exclusive: usize,
    /// Of `in_flight`, a group's store commands ([`Slot::offsets`]).
    offsets: usize,
}

/// One client connection. See the module documentation for the call order.
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    state: State,
    now: Instant,
    out: Output,
    last_activity: Instant,
    client: ClientInfo,
    client_host: String,
    /// Who the client is: the certificate's principal on a TLS listener, replaced by the
    /// SASL user once one authenticates.
    principal: Option<String>,
    /// SASL's state, on a listener that requires it.
    sasl: Option<sasl::SaslState>,
    /// The principal's permissions, when the authorizer takes them from the backend.
    permissions: PermissionFetch,
    /// The client instance's telemetry (KIP-714) state.
    telemetry: telemetry::Telemetry,
    /// Over its quota: nothing is read until then (KIP-219's muted channel).
    throttled_until: Option<Instant>,
    /// A refusal was sent and the connection closes at this time, not at once: a client
    /// that reads its last answer and the close in one go may drop the answer
    /// (kafka-python 3.0 does), and then reports a lost connection instead of the refusal.
    linger_until: Option<Instant>,
    requests: VecDeque<InFlight>,
    next_seq: u64,
    in_flight_bytes: usize,
    deadlines: BTreeSet<(Instant, u64)>,
    next_command: u64,
    slots: HashMap<u64, Slot>,
    /// Commands held back to keep request order, oldest first.
    held: VecDeque<(WorkId, Work)>,
    ready: VecDeque<(WorkId, Work)>,
    busy: HashMap<Serial, SerialState>,
    barriers_out: usize,
    /// Commands handed out and not completed, watches excepted.
    commands_out: usize,
    stats: ConnectionStats,
}

impl Connection {
    /// A new connection, accepted at `now`.
    #[must_use]
    pub fn new(config: Arc<Config>, now: Instant) -> Self {
        let sasl = config
            .security_protocol
            .uses_sasl()
            .then(|| sasl::SaslState::new(config.sasl.clone()));
        Self {
            sasl,
            config,
            state: State::Open,
            now,
            out: Output::default(),
            last_activity: now,
            client: ClientInfo::default(),
            client_host: String::new(),
            principal: None,
            permissions: PermissionFetch::default(),
            telemetry: telemetry::Telemetry::default(),
            throttled_until: None,
            linger_until: None,
            requests: VecDeque::new(),
            next_seq: 0,
            in_flight_bytes: 0,
            deadlines: BTreeSet::new(),
            next_command: 0,
            slots: HashMap::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            busy: HashMap::new(),
            barriers_out: 0,
            commands_out: 0,
            stats: ConnectionStats::default(),
        }
    }

    /// Tells the connection the client's address, as group descriptions show it (Kafka
    /// writes `/1.2.3.4`).
    pub fn set_client_host(&mut self, host: impl Into<String>) {
        self.client_host = host.into();
    }

    /// Tells the connection the principal its client's TLS certificate names (mutual TLS).
    /// Call before the first input. On a SASL listener the SASL user replaces it.
    pub fn set_peer_principal(&mut self, principal: impl Into<String>) {
        self.principal = Some(principal.into());
        self.principal_changed();
    }

    /// Who the client is, once known: the SASL user, or the TLS certificate's principal.
    #[must_use]
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Takes every complete frame off the front of `buf` and handles it, while
    /// [`Connection::wants_input`] holds; a partial frame is left for the next call. Does
    /// nothing once the connection is closing.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        self.now = now;
        if !matches!(self.state, State::Open) {
            return;
        }
        self.fetch_permissions();
        if !buf.is_empty() {
            self.last_activity = now;
        }
        while self.wants_input() {
            let split = if self.may_hold_a_password(buf) {
                frame::split_secret_frame
            } else {
                frame::split_frame
            };
            match split(buf, self.frame_limit()) {
                Ok(Some(frame)) => {
                    if let Err(reason) = self.handle_frame(frame) {
                        self.close(reason);
                    }
                    self.release_held();
                    self.flush_done();
                }
                Ok(None) => break,
                Err(e) => self.close(e.into()),
            }
        }
    }

    /// How much free space the adapter's read buffer should have, given what it holds: room
    /// for the rest of a partial frame, grown geometrically (never more than three times
    /// the bytes already received, so a peer must send a quarter of a frame before the
    /// gateway holds room for all of it), and at least `chunk`. Each growth copies what
    /// the buffer holds, so growing by four rather than two copies a large frame's bytes a
    /// third of a time instead of once.
    #[must_use]
    pub fn read_capacity(&self, buf: &[u8], chunk: usize) -> usize {
        let wanted = frame::bytes_wanted(buf, self.frame_limit()).unwrap_or(0);
        wanted
            .min(buf.len().saturating_mul(READ_GROWTH - 1).max(chunk))
            .max(chunk)
    }

    /// The next work for the backend or the group coordinator, if any.
    pub fn poll_work(&mut self) -> Option<(WorkId, Work)> {
        self.ready.pop_front()
    }

    /// Feeds back the outcome of the work `id`. Outcomes of requests that timed out or of a
    /// stale watch are dropped.
    pub fn handle_outcome(&mut self, now: Instant, id: WorkId, completion: Outcome) {
        self.now = now;
        if self.permissions.in_flight == Some(id.0) {
            // Not the client's doing: it must not keep an idle connection open.
            self.permissions_arrived(completion);
            return;
        }
        if self.sasl.as_ref().and_then(sasl::SaslState::verifying) == Some(id.0) {
            if let Err(reason) = self.password_verified(completion) {
                self.close(reason);
            }
            return;
        }
        self.last_activity = now;
        let Some(slot) = self.slots.remove(&id.0) else {
            tracing::debug!(?id, "outcome of unknown work");
            return;
        };
        self.command_finished(&slot);
        let Some(i) = self
            .index_of(slot.seq)
            .filter(|&i| self.requests[i].round == slot.round && !self.requests[i].done)
        else {
            // Of a request given up on: its end may still let commands held behind it go.
            self.release_held();
            return;
        };
        let req = &mut self.requests[i];
        if let Some(r) = req.results.get_mut(slot.index) {
            if r.is_none() {
                *r = Some(completion);
                req.awaiting -= 1;
            }
        }
        if req.awaiting == 0 {
            self.set_deadline(i, None);
            let req = &mut self.requests[i];
            req.waiting = false;
            let results = std::mem::take(&mut req.results)
                .into_iter()
                .flatten()
                .collect();
            self.advance(i, results);
        }
        self.release_held();
        self.flush_done();
    }

    /// The next bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop()
    }

    /// When [`Connection::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = match self.state {
            State::Open if self.requests.is_empty() => {
                Some(self.last_activity + self.config.idle_timeout)
            }
            _ => None,
        };
        let first = self.deadlines.first().map(|(t, _)| *t);
        let sasl = self.sasl.as_ref().and_then(|s| match s.failed() {
            Some(f) => Some(f.at),
            None if matches!(self.state, State::Open) => s.expiry(),
            None => None,
        });
        let permissions = match self.state {
            State::Open if self.permissions.in_flight.is_none() => self.permissions.next,
            _ => None,
        };
        let booked = self.sasl.as_ref().and_then(sasl::SaslState::booked_at);
        [
            idle,
            first,
            sasl,
            booked,
            permissions,
            self.throttled_until,
            self.linger_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Lets the connection act on the passage of time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.throttled_until.is_some_and(|t| now >= t) {
            self.throttled_until = None;
        }
        if self.linger_until.is_some_and(|t| now >= t) {
            self.linger_until = None;
        }
        if let Err(reason) = self.run_booked_check(now) {
            self.close(reason);
        }
        self.release_failed_authentication(now);
        self.check_session(now);
        if matches!(self.state, State::Open) {
            self.fetch_permissions();
        }
        while let Some(&(at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(i) = self.index_of(seq) {
                if self.requests[i].deadline == Some(at) {
                    self.requests[i].deadline = None;
                    self.expire(i);
                }
            }
        }
        if matches!(self.state, State::Open)
            && self.requests.is_empty()
            && now >= self.last_activity + self.config.idle_timeout
        {
            self.close(CloseReason::Idle(self.config.idle_timeout));
        }
        self.release_held();
        self.flush_done();
    }

    /// Stops taking requests (the gateway is shutting down). Requests already taken are
    /// finished (long-polling fetches answer at once) and answered; then the connection is
    /// closed.
    pub fn shutdown(&mut self) {
        self.close(CloseReason::Shutdown);
        self.release_held();
        self.flush_done();
    }

    /// Whether the adapter should read more input now.
    #[must_use]
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Open)
            && self.sasl.as_ref().is_none_or(|s| s.failed().is_none())
            && !self.awaiting_permissions()
            && self.throttled_until.is_none()
            && self.out.len() < self.config.max_pending_output
            && self.requests.len() < self.config.max_in_flight_requests
            && self.in_flight_bytes < self.config.max_in_flight_bytes
    }

    /// Whether the connection is done: closing, every request answered, nothing left to
    /// transmit. The adapter then closes the socket.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closing(_))
            && self.requests.is_empty()
            && self.out.is_empty()
            && self.linger_until.is_none()
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

    /// What the connection did so far.
    #[must_use]
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// How many requests are taken and not yet answered.
    #[must_use]
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The authorizer's refresh interval, when permissions come from the backend.
    fn permissions_refresh(&self) -> Option<std::time::Duration> {
        self.config
            .authorizer
            .as_ref()
            .and_then(|a| a.refresh_interval())
    }

    /// A new principal: its permissions are asked for at once, and nothing more is read
    /// until they arrive (a request checked before would be refused for nothing).
    fn principal_changed(&mut self) {
        if self.permissions_refresh().is_some() {
            // An answer on its way is about the previous principal: it is dropped when it
            // comes (an outcome of unknown work).
            self.permissions.in_flight = None;
            self.permissions.loaded = false;
            self.permissions.next = Some(self.now);
            self.fetch_permissions();
        }
    }

    fn awaiting_permissions(&self) -> bool {
        self.principal.is_some() && self.permissions_refresh().is_some() && !self.permissions.loaded
    }

    /// Asks the backend for the principal's permissions when it is time to.
    fn fetch_permissions(&mut self) {
        let (Some(user), Some(_)) = (&self.principal, self.permissions_refresh()) else {
            return;
        };
        if self.permissions.in_flight.is_some()
            || self.permissions.next.is_none_or(|t| t > self.now)
        {
            return;
        }
        let id = self.next_command;
        self.next_command += 1;
        self.permissions.in_flight = Some(id);
        self.permissions.asked = Some(user.clone());
        self.permissions.next = None;
        self.ready.push_back((
            WorkId(id),
            Work::Store(Command::UserPermissions { user: user.clone() }),
        ));
    }

    fn permissions_arrived(&mut self, outcome: Outcome) {
        self.permissions.in_flight = None;
        let asked = self.permissions.asked.take();
        if asked.is_none() || asked != self.principal {
            self.permissions.next = Some(self.now);
            return;
        }
        let (Some(user), Some(every), Some(authorizer)) = (
            self.principal.clone(),
            self.permissions_refresh(),
            self.config.authorizer.clone(),
        ) else {
            return;
        };
        let retry = match outcome {
            Outcome::Store(Completion::UserPermissions(Ok(p))) => {
                if p.is_none() {
                    tracing::warn!(%user, "the backend has no such user: nothing is allowed");
                }
                authorizer.learned(&user, p);
                every
            }
            other => {
                // What was known stays; a first failure leaves the principal allowed
                // nothing until a later answer.
                tracing::warn!(%user, outcome = ?other, "cannot read the principal's permissions");
                every.min(std::time::Duration::from_secs(1))
            }
        };
        self.permissions.loaded = true;
        self.permissions.next = Some(self.now + retry);
    }

    fn frame_limit(&self) -> usize {
        if self.sasl.as_ref().is_some_and(|s| !s.authenticated()) {
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
            // Long polls answer now rather than hold the close up.
            for i in 0..self.requests.len() {
                if self.requests[i].waiting {
                    self.set_deadline(i, None);
                    self.expire(i);
                }
            }
        }
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.requests.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        (i < self.requests.len()).then_some(i)
    }

    fn set_deadline(&mut self, i: usize, at: Option<Instant>) {
        let req = &mut self.requests[i];
        if let Some(old) = req.deadline.take() {
            self.deadlines.remove(&(old, req.seq));
        }
        if let Some(at) = at {
            req.deadline = Some(at);
            self.deadlines.insert((at, req.seq));
        }
    }

    fn handle_frame(&mut self, frame: Bytes) -> Result<(), CloseReason> {
        if self
            .sasl
            .as_ref()
            .is_some_and(sasl::SaslState::expects_bare_token)
        {
            self.handle_bare_token(frame);
            return Ok(());
        }
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
        if let Some(sasl) = &self.sasl {
            let sasl_api = matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
            if !sasl.authenticated() && !sasl_api && key != ApiKey::ApiVersions {
                return Err(CloseReason::Unauthenticated(key));
            }
            // Past the session's end only a re-authentication already under way (within its
            // own time) may go on.
            if sasl.expired(self.now) {
                return Err(CloseReason::SessionExpired);
            }
            if !sasl_api && key != ApiKey::ApiVersions && sasl.reauthenticating() {
                return Err(CloseReason::Unauthenticated(key));
            }
        }
        let frame_len = frame.len();
        if !served.contains(version) {
            if key == ApiKey::ApiVersions && version > served.max {
                // KIP-511: answer in v0 so that the client can read it and retry lower.
                tracing::debug!(version, "ApiVersions version above ours");
                let response = handlers::api_versions::unsupported_version(served);
                let i = self.push_request(key, 0, correlation_id, frame_len);
                return self.finish(i, Some(Response::ApiVersions(response)));
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

        let i = self.push_request(key, version, correlation_id, frame_len);
        let task = match request {
            Request::ApiVersions(req) => {
                let response = handlers::api_versions::handle(
                    &req,
                    version,
                    &mut self.client,
                    self.sasl.is_some(),
                );
                return self.finish(i, Some(Response::ApiVersions(response)));
            }
            Request::SaslHandshake(req) => return self.handle_sasl_handshake(i, &req, version),
            Request::GetTelemetrySubscriptions(req) => {
                return self.handle_get_telemetry_subscriptions(i, &req)
            }
            Request::PushTelemetry(req) => return self.handle_push_telemetry(i, &req),
            Request::SaslAuthenticate(req) => {
                return self.handle_sasl_authenticate(i, &req, version)
            }
            other => handlers::task_for(other),
        };
        let Some(task) = task else {
            // Unreachable while the table and the handlers agree; a test keeps them in step.
            return Err(CloseReason::UnsupportedApiKey { api_key, version });
        };
        self.requests[i].task = Some(task);
        self.advance(i, Vec::new());
        Ok(())
    }

    fn push_request(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        frame_len: usize,
    ) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight_bytes += frame_len;
        let stats = self.stats.api(key);
        stats.requests += 1;
        stats.in_flight += 1;
        stats.bytes_in += frame_len as u64 + 4;
        self.requests.push_back(InFlight {
            seq,
            key,
            version,
            correlation_id,
            frame_len,
            received: self.now,
            task: None,
            round: 0,
            results: Vec::new(),
            awaiting: 0,
            waiting: false,
            deadline: None,
            response: None,
            done: false,
        });
        self.requests.len() - 1
    }

    /// Runs the request's task one step with `results` and acts on what it asks for.
    fn advance(&mut self, i: usize, results: Vec<Outcome>) {
        let Some(mut task) = self.requests[i].task.take() else {
            return;
        };
        let ctx = Ctx {
            config: &self.config,
            now: self.now,
            version: self.requests[i].version,
            closing: !matches!(self.state, State::Open),
            client_id: self.client.client_id.as_deref(),
            client_host: &self.client_host,
            principal: self.principal.as_deref(),
        };
        let step = task.step(&ctx, results);
        self.requests[i].task = Some(task);
        self.apply_step(i, step);
    }

    fn expire(&mut self, i: usize) {
        let req = &mut self.requests[i];
        if req.done {
            return;
        }
        req.round += 1;
        req.results.clear();
        req.awaiting = 0;
        if std::mem::take(&mut req.waiting) {
            self.advance(i, vec![Outcome::Store(Completion::Watch)]);
            return;
        }
        let Some(mut task) = req.task.take() else {
            return;
        };
        let ctx = Ctx {
            config: &self.config,
            now: self.now,
            version: req.version,
            closing: !matches!(self.state, State::Open),
            client_id: self.client.client_id.as_deref(),
            client_host: &self.client_host,
            principal: self.principal.as_deref(),
        };
        tracing::warn!(api = req.key.name(), "request timed out");
        let key = req.key;
        self.stats.api(key).timed_out += 1;
        let step = task.timed_out(&ctx);
        self.requests[i].task = Some(task);
        self.apply_step(i, step);
    }

    fn apply_step(&mut self, i: usize, step: Step) {
        match step {
            Step::Run(commands) => {
                if commands.is_empty() {
                    // A task that asks for nothing is stepped again at once.
                    return self.advance(i, Vec::new());
                }
                let patience = commands
                    .iter()
                    .filter_map(Work::patience)
                    .max()
                    .unwrap_or_default();
                let mut wait = self.config.request_timeout.max(patience);
                if let Some(limit) = commands.iter().filter_map(Work::limit).min() {
                    wait = wait.min(limit);
                }
                let timeout = self.now + wait;
                self.set_deadline(i, Some(timeout));
                let req = &mut self.requests[i];
                req.results = commands.iter().map(|_| None).collect();
                req.awaiting = commands.len();
                let (seq, round) = (req.seq, req.round);
                for (index, command) in commands.into_iter().enumerate() {
                    self.issue(seq, round, index, command);
                }
            }
            Step::Wait { deadline, watch } => {
                self.set_deadline(i, Some(deadline));
                let req = &mut self.requests[i];
                req.results = vec![None];
                req.awaiting = 1;
                req.waiting = true;
                let (seq, round) = (req.seq, req.round);
                self.issue(
                    seq,
                    round,
                    0,
                    Work::Store(Command::Watch {
                        partitions: watch,
                        deadline,
                    }),
                );
            }
            Step::Respond(response) => {
                if let Err(reason) = self.finish(i, Some(response)) {
                    self.close(reason);
                }
            }
            Step::Silent => {
                let _ = self.finish(i, None);
            }
            Step::Close(reason) => {
                self.stats.api(self.requests[i].key).closed += 1;
                let _ = self.finish(i, None);
                self.close(reason);
            }
        }
    }

    fn issue(&mut self, seq: u64, round: u32, index: usize, work: Work) {
        let id = WorkId(self.next_command);
        self.next_command += 1;
        let pipelined = matches!(&work, Work::Store(Command::Append { producer: None, .. }));
        let (serial, barrier, watch) = match &work {
            Work::Store(command)
            | Work::TxnAppend {
                append: command, ..
            } => match command {
                Command::Append {
                    topic, partition, ..
                } => (
                    Some(Serial::Partition(topic.clone(), *partition)),
                    false,
                    false,
                ),
                Command::CommitOffsets { group, .. }
                | Command::FetchOffsets { group, .. }
                | Command::DeleteOffsets { group, .. } => {
                    (Some(Serial::Group(group.clone())), false, false)
                }
                Command::CreateTopic { .. }
                | Command::DeleteTopic { .. }
                | Command::CreatePartitions { .. }
                | Command::AlterTopicConfig { .. } => (None, true, false),
                Command::Watch { .. } => (None, false, true),
                _ => (None, false, false),
            },
            Work::Group(call) => (
                call.group().map(|g| Serial::Group(g.to_owned())),
                false,
                false,
            ),
            Work::Txn(_) => (None, false, false),
        };
        let offsets = matches!(serial, Some(Serial::Group(_))) && matches!(work, Work::Store(_));
        self.slots.insert(
            id.0,
            Slot {
                seq,
                round,
                index,
                serial,
                pipelined,
                offsets,
                barrier,
                watch,
            },
        );
        self.held.push_back((id, work));
    }

    /// Hands out the held commands that request order allows.
    fn release_held(&mut self) {
        let mut seen: Vec<Serial> = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.barriers_out > 0 {
                return;
            }
            let id = self.held[i].0;
            let Some(slot) = self.slots.get(&id.0) else {
                // Its request is gone: drop it unsent.
                self.held.remove(i);
                continue;
            };
            if slot.barrier {
                if i == 0 && self.commands_out == 0 {
                    self.barriers_out += 1;
                    self.commands_out += 1;
                    if let Some(c) = self.held.pop_front() {
                        self.ready.push_back(c);
                    }
                    continue;
                }
                return;
            }
            if let Some(key) = &slot.serial {
                let mine = Some(slot.seq);
                // The request holding the key goes on: its next steps come before any
                // later request's.
                let owned = self.busy.get(key).is_some_and(|b| b.owner == mine);
                // A plain append waits only for what is held before it and for commands
                // that need the key to themselves (an idempotent append); other plain
                // appends in flight do not hold it back.
                let pipelined = slot.pipelined;
                let blocked = match key {
                    // A group's calls wait for the request holding the key. A request given
                    // up on (a commit whose write outlived its limit) holds nothing back but
                    // the group's store commands, which keep their order: the member's
                    // heartbeats go on while the write hangs.
                    Serial::Group(_) => {
                        let busy = self.busy.get(key);
                        (slot.offsets && busy.is_some_and(|b| b.offsets > 0))
                            || (!owned
                                && (seen.contains(key) || busy.is_some_and(|b| b.owner.is_some())))
                    }
                    Serial::Partition(..) => {
                        !owned
                            && (seen.contains(key)
                                || self.busy.get(key).is_some_and(|b| {
                                    b.owner.is_some()
                                        || b.exclusive > 0
                                        || (!pipelined && b.in_flight > 0)
                                }))
                    }
                };
                if blocked {
                    seen.push(key.clone());
                    i += 1;
                    continue;
                }
                let b = self.busy.entry(key.clone()).or_default();
                // An append is one command; a group's calls and offsets come in steps, so
                // the request keeps the group's key until it is finished.
                if matches!(key, Serial::Group(_)) {
                    b.owner = mine;
                }
                b.in_flight += 1;
                if !slot.pipelined {
                    b.exclusive += 1;
                }
                if slot.offsets {
                    b.offsets += 1;
                }
            }
            if !slot.watch {
                self.commands_out += 1;
            }
            if let Some(c) = self.held.remove(i) {
                self.ready.push_back(c);
            }
        }
    }

    fn command_finished(&mut self, slot: &Slot) {
        if let Some(key) = &slot.serial {
            if let Some(b) = self.busy.get_mut(key) {
                b.in_flight -= 1;
                if !slot.pipelined {
                    b.exclusive -= 1;
                }
                if slot.offsets {
                    b.offsets -= 1;
                }
                if b.in_flight == 0 && b.owner.is_none() {
                    self.busy.remove(key);
                }
            }
        }
        if slot.barrier {
            self.barriers_out -= 1;
        }
        if !slot.watch {
            self.commands_out -= 1;
        }
    }

    /// Counts a Produce's or Fetch's bytes against the client's quota and, when over it,
    /// tells the client in the response and reads nothing more for that long.
    fn throttle(&mut self, key: ApiKey, frame_len: usize, response: Option<&mut Response>) {
        use crate::quotas::Direction;
        let (direction, bytes) = match (key, &response) {
            (ApiKey::Produce, _) => (Direction::Produce, frame_len as u64 + 4),
            (ApiKey::Fetch, Some(Response::Fetch(f))) => (
                Direction::Fetch,
                f.responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
                    .sum(),
            ),
            _ => return,
        };
        let client_id = self.client.client_id.as_deref().unwrap_or_default();
        let delay = self.config.quotas.record(
            self.now,
            self.principal.as_deref(),
            client_id,
            direction,
            bytes,
        );
        if delay.is_zero() {
            return;
        }
        let ms = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        tracing::debug!(client_id, throttle_ms = ms, ?direction, "over quota");
        match response {
            Some(Response::Produce(p)) => p.throttle_time_ms = p.throttle_time_ms.max(ms),
            Some(Response::Fetch(f)) => f.throttle_time_ms = f.throttle_time_ms.max(ms),
            _ => {}
        }
        let until = self.now + delay;
        self.throttled_until = Some(self.throttled_until.map_or(until, |t| t.max(until)));
    }

    /// Marks request `i` done with its response (none for acks=0).
    fn finish(&mut self, i: usize, mut response: Option<Response>) -> Result<(), CloseReason> {
        self.set_deadline(i, None);
        let req = &mut self.requests[i];
        req.done = true;
        let task = req.task.take();
        req.round += 1;
        let (key, version, correlation_id) = (req.key, req.version, req.correlation_id);
        let seq = req.seq;
        let frame_len = req.frame_len;
        let latency = self.now.saturating_duration_since(req.received);
        let stats = self.stats.api(key);
        stats.in_flight = stats.in_flight.saturating_sub(1);
        stats.latency.observe(latency);
        if let Some(task) = task {
            task.report(&mut self.stats.traffic());
        }
        if matches!(key, ApiKey::Produce | ApiKey::Fetch) {
            self.throttle(key, frame_len, response.as_mut());
        }
        if let Some(response) = &response {
            let stats = &mut self.stats;
            response.for_each_error_code(&mut |code| {
                if code != 0 {
                    stats.error(key, code);
                }
            });
        }
        // A group's commands of this request still held were never handed out, and never
        // will be: an answered request must not act later (a commit answered as failed
        // whose write would land on a membership check long past, after a newer owner's).
        let slots = &mut self.slots;
        self.held.retain(|(id, _)| {
            let stale = slots
                .get(&id.0)
                .is_some_and(|s| s.seq == seq && matches!(s.serial, Some(Serial::Group(_))));
            if stale {
                slots.remove(&id.0);
            }
            !stale
        });
        self.busy.retain(|_, b| {
            if b.owner == Some(seq) {
                b.owner = None;
            }
            b.in_flight > 0 || b.owner.is_some()
        });
        let Some(response) = response else {
            return Ok(());
        };
        let (r, written) = if i == 0 {
            let before = self.out.len();
            let r = self
                .out
                .encode_response(key, version, correlation_id, &response);
            (r, self.out.len() - before)
        } else {
            let mut out = Output::default();
            let r = out.encode_response(key, version, correlation_id, &response);
            let written = out.len();
            self.requests[i].response = Some(out);
            (r, written)
        };
        self.stats.api(key).bytes_out += written as u64;
        r
    }

    /// Moves the answers at the front of the queue to the output, in request order.
    fn flush_done(&mut self) {
        while self.requests.front().is_some_and(|r| r.done) {
            if let Some(req) = self.requests.pop_front() {
                self.in_flight_bytes -= req.frame_len;
                if let Some(out) = req.response {
                    self.out.append(out);
                }
            }
        }
    }
}

/// Record batches at least this long go out as buffers of their own instead of being
/// copied into the response frame.
const SPLICE_FROM: usize = 64 * 1024;

/// What [`Connection::read_capacity`] lets the read buffer grow by, at most, each time.
const READ_GROWTH: usize = 4;

/// What waits to be written: buffers kept whole (long record batches, and the encoded bytes
/// before them), then the bytes encoded since.
#[derive(Debug, Default)]
struct Output {
    queue: VecDeque<Bytes>,
    queued: usize,
    buf: BytesMut,
}

impl Output {
    fn len(&self) -> usize {
        self.queued + self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&mut self) -> Option<Bytes> {
        if let Some(b) = self.queue.pop_front() {
            self.queued -= b.len();
            return Some(b);
        }
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Appends what `other` holds, after what this holds.
    fn append(&mut self, mut other: Output) {
        if !other.queue.is_empty() {
            let before = self.buf.split().freeze();
            self.push(before);
            self.queued += other.queued;
            self.queue.append(&mut other.queue);
        }
        self.buf.unsplit(other.buf);
    }

    /// Appends one response frame: size, header, body; long record batches stay buffers
    /// of their own.
    fn encode_response(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        response: &Response,
    ) -> Result<(), CloseReason> {
        let start = self.buf.len();
        self.buf.put_u32(0);
        let header = ResponseHeader {
            correlation_id,
            ..ResponseHeader::default()
        };
        let mut out = Out::splicing(std::mem::take(&mut self.buf), SPLICE_FROM);
        let written = header
            .encode_out(&mut out, api::response_header_version(key, version))
            .and_then(|()| response.encode_out(&mut out, version));
        let spliced_len = out.spliced_len();
        let (mut buf, spliced) = out.finish();
        let size = buf.len() - start - 4 + spliced_len;
        let failed = match (written, u32::try_from(size)) {
            (Err(e), _) => Some(CloseReason::Encode(e)),
            (Ok(()), Err(_)) => Some(CloseReason::Encode(EncodeError::new(
                "frame",
                crate::protocol::EncodeErrorKind::TooLong(size),
            ))),
            (Ok(()), Ok(size)) => {
                buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
                None
            }
        };
        if let Some(reason) = failed {
            buf.truncate(start);
            self.buf = buf;
            return Err(reason);
        }
        // The bytes before each kept batch go out first, then the batch itself.
        let mut taken = 0;
        for (at, records) in spliced {
            let before = buf.split_to(at - taken).freeze();
            taken = at;
            self.push(before);
            self.push(records);
        }
        self.buf = buf;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::protocol::api::SUPPORTED_APIS;
    use crate::protocol::sample::Gen;

    /// The read buffer grows with what the peer sent, by at most four times, up to the
    /// frame it declared: a size prefix alone buys no more than one chunk.
    #[test]
    fn read_room_follows_the_bytes_received() {
        const CHUNK: usize = 64 * 1024;
        let conn = Connection::new(Arc::new(Config::default()), Instant::now());
        let frame = |declared: usize, received: usize| {
            let mut buf = vec![0u8; received.max(4)];
            buf[..4].copy_from_slice(&i32::try_from(declared).expect("a frame size").to_be_bytes());
            buf
        };
        assert_eq!(conn.read_capacity(&[], CHUNK), CHUNK);
        // A prefix that declares a large frame, and nothing else.
        assert_eq!(conn.read_capacity(&frame(50 << 20, 4), CHUNK), CHUNK);
        // One chunk of a 1 MiB frame: room for three more, not for the rest.
        assert_eq!(conn.read_capacity(&frame(1 << 20, CHUNK), CHUNK), 3 * CHUNK);
        // A quarter of it: room for the rest, and no more.
        let quarter = (4 + (1 << 20)) / 4;
        assert_eq!(
            conn.read_capacity(&frame(1 << 20, quarter), CHUNK),
            4 + (1 << 20) - quarter
        );
        // A small frame's rest is less than a chunk: a chunk still, to read what follows.
        assert_eq!(conn.read_capacity(&frame(100, 50), CHUNK), CHUNK);
    }

    /// Every API and version in the table is answered, never refused: the table and the
    /// dispatch in `handle_frame` stay in step.
    #[test]
    fn every_served_api_and_version_is_answered() {
        let now = Instant::now();
        let mut g = Gen::new(11);
        let config = Arc::new(Config::default());
        for served in SUPPORTED_APIS {
            for version in served.versions.min..=served.versions.max {
                let mut conn = Connection::new(config.clone(), now);
                let mut request = Request::sample(served.key, &mut g, version);
                if let Request::Produce(p) = &mut request {
                    // acks=0 has no response to look at.
                    p.acks = 1;
                }
                let mut buf = BytesMut::new();
                frame::encode_request(&mut buf, &request, version, 3, None)
                    .unwrap_or_else(|e| panic!("{e}"));
                conn.handle_input(now, &mut buf);
                let mut later = now;
                for _ in 0..10 {
                    while let Some((id, work)) = conn.poll_work() {
                        if matches!(work, Work::Store(Command::Watch { .. })) {
                            // Nothing arrives: the long poll ends at its deadline.
                            continue;
                        }
                        let outcome = crate::work::tests::succeed(&work);
                        conn.handle_outcome(later, id, outcome);
                    }
                    later += Duration::from_secs(30 * 86_400);
                    conn.handle_timeout(later);
                }
                // Hours pass, so only the idle timeout may close it.
                assert!(
                    matches!(conn.close_reason(), None | Some(CloseReason::Idle(_))),
                    "{:?} v{version}: {:?}",
                    served.key,
                    conn.close_reason()
                );
                let out = conn.poll_transmit().unwrap_or_default();
                assert!(out.len() > 8, "{:?} v{version} answered", served.key);
            }
        }
    }

    /// With an authorizer that allows nothing, no served API at any version changes
    /// anything: no append, no topic created, deleted or changed, no offset committed or
    /// deleted, whatever the request says.
    #[test]
    fn a_principal_allowed_nothing_changes_nothing() {
        #[derive(Debug)]
        struct Nothing;
        impl crate::authz::Authorizer for Nothing {
            fn allows(&self, _: Option<&str>, _: crate::authz::Action<'_>) -> bool {
                false
            }
        }
        let now = Instant::now();
        let mut g = Gen::new(5);
        let config = Arc::new(Config {
            authorizer: Some(Arc::new(Nothing)),
            ..Config::default()
        });
        for served in SUPPORTED_APIS {
            for version in served.versions.min..=served.versions.max {
                for _ in 0..4 {
                    let mut conn = Connection::new(config.clone(), now);
                    conn.set_peer_principal("mallory");
                    let request = Request::sample(served.key, &mut g, version);
                    let mut buf = BytesMut::new();
                    frame::encode_request(&mut buf, &request, version, 3, None)
                        .unwrap_or_else(|e| panic!("{e}"));
                    conn.handle_input(now, &mut buf);
                    let mut later = now;
                    for _ in 0..6 {
                        while let Some((id, work)) = conn.poll_work() {
                            let changes = matches!(
                                &work,
                                Work::Store(
                                    Command::Append { .. }
                                        | Command::CreateTopic { .. }
                                        | Command::DeleteTopic { .. }
                                        | Command::CreatePartitions { .. }
                                        | Command::AlterTopicConfig { .. }
                                        | Command::CommitOffsets { .. }
                                        | Command::DeleteOffsets { .. }
                                )
                            );
                            assert!(!changes, "{:?} v{version}: {work:?}", served.key);
                            if matches!(work, Work::Store(Command::Watch { .. })) {
                                continue;
                            }
                            let outcome = crate::work::tests::succeed(&work);
                            conn.handle_outcome(later, id, outcome);
                        }
                        later += Duration::from_secs(60);
                        conn.handle_timeout(later);
                    }
                }
            }
        }
    }

    /// A fetch response whose long record batches stay buffers of their own goes out as
    /// exactly the bytes of the copied encoding, at every Fetch version, pipelined behind
    /// another response or not; short batches are copied as before.
    #[test]
    fn long_record_batches_go_out_as_their_own_buffers_with_the_same_bytes() {
        use crate::protocol::generated::fetch_response::{
            FetchResponse, FetchableTopicResponse, PartitionData,
        };
        let long =
            |n: usize, seed: u8| Bytes::from((0..n).map(|i| seed ^ i as u8).collect::<Vec<_>>());
        let response = Response::Fetch(FetchResponse {
            responses: vec![FetchableTopicResponse {
                topic: "t".into(),
                partitions: vec![
                    PartitionData {
                        partition_index: 0,
                        records: Some(long(SPLICE_FROM + 7, 1)),
                        ..PartitionData::default()
                    },
                    PartitionData {
                        partition_index: 1,
                        records: Some(long(10, 2)),
                        ..PartitionData::default()
                    },
                    PartitionData {
                        partition_index: 2,
                        records: Some(long(3 * SPLICE_FROM, 3)),
                        ..PartitionData::default()
                    },
                ],
                ..FetchableTopicResponse::default()
            }],
            ..FetchResponse::default()
        });
        for version in 4..=17 {
            let mut want = BytesMut::new();
            want.put_u32(0);
            ResponseHeader {
                correlation_id: 9,
                ..ResponseHeader::default()
            }
            .encode(
                &mut want,
                api::response_header_version(ApiKey::Fetch, version),
            )
            .expect("header");
            response.encode(&mut want, version).expect("body");
            let size = u32::try_from(want.len() - 4).expect("size");
            want[..4].copy_from_slice(&size.to_be_bytes());

            // Behind a small response already waiting, and appended to another output.
            let mut out = Output::default();
            out.buf.extend_from_slice(b"earlier");
            let mut later = Output::default();
            later
                .encode_response(ApiKey::Fetch, version, 9, &response)
                .expect("encode");
            out.append(later);
            out.encode_response(ApiKey::Fetch, version, 9, &response)
                .expect("encode");
            let mut pieces = Vec::new();
            while let Some(b) = out.pop() {
                pieces.push(b);
            }
            assert!(out.is_empty());
            let got: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
            let mut expected = b"earlier".to_vec();
            expected.extend_from_slice(&want);
            expected.extend_from_slice(&want);
            assert_eq!(got, expected, "v{version}");
            // Two long batches per response, each its own buffer.
            let whole = pieces.iter().filter(|b| b.len() >= SPLICE_FROM).count();
            assert_eq!(whole, 4, "v{version}");
        }
    }
}
