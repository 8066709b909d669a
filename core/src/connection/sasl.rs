//! SaslHandshake and SaslAuthenticate: the connection's side of SASL. They are answered
//! here rather than by a task because they change who the connection is.
//!
//! On a SASL listener a connection takes nothing but ApiVersions, SaslHandshake and
//! SaslAuthenticate until a client authenticates (with frames of at most
//! [`crate::Config::max_unauthenticated_frame_size`]); anything else closes it, as Kafka's
//! `SaslServerAuthenticator` does. After a v0 handshake the client's tokens come as bare
//! length-prefixed frames without a request header, and are answered the same way. A
//! failed authentication is answered after [`SaslConfig::failure_delay`], then the
//! connection closes. With a session lifetime (KIP-368) the client must authenticate again,
//! on the same connection, before the lifetime ends: the first request after it, or the
//! deadline passing without a new exchange under way, closes the connection.
//!
//! When the backend checks PLAIN passwords ([`SaslConfig::plain_by_backend`]), a PLAIN
//! token that passes the syntax checks (and whose password did not pass lately) becomes a
//! [`Command::VerifyPassword`] for the backend; the SaslAuthenticate request (or bare token)
//! waits for its completion, and is then answered as a local check would be: success,
//! remembered; or a failure, after the failure delay.
//!
//! A PLAIN check past [`SaslConfig::password_checks_per_second`] is booked for a later
//! time and made then (on the clock [`Connection::handle_timeout`] is given), the answer
//! waiting for it; when too many are booked, the connection closes without an answer, so
//! that the client reconnects rather than give up on an authentication failure.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes};

use super::{Connection, State};
use crate::backend::{Command, Completion};
use crate::close::CloseReason;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::sasl_authenticate_request::SaslAuthenticateRequest;
use crate::protocol::generated::sasl_authenticate_response::SaslAuthenticateResponse;
use crate::protocol::generated::sasl_handshake_request::SaslHandshakeRequest;
use crate::protocol::generated::sasl_handshake_response::SaslHandshakeResponse;
use crate::protocol::{KStr, Response};
use crate::sasl::{Exchange, Failure, Mechanism, Password, Progress, SaslConfig};
use crate::work::{Outcome, Work, WorkId};

/// How long a re-authentication may take: a client that starts one and does not finish is
/// closed this long after it started, or at its session's end if that is later.
const REAUTHENTICATION_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a connection stays open after the answer to a failed authentication, so that
/// the answer arrives before the close does.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// A connection's SASL state, on a SASL listener.
#[derive(Debug)]
pub(super) struct SaslState {
    config: Option<Arc<SaslConfig>>,
    /// The exchange a handshake started, and whether its tokens come bare (v0).
    exchange: Option<(Mechanism, Exchange, bool)>,
    /// When that exchange started: a re-authentication gets [`REAUTHENTICATION_TIME`] to
    /// finish, and no more, past the session's end.
    exchange_started: Option<Instant>,
    /// Who authenticated, with which mechanism, until when.
    session: Option<Session>,
    /// A failed authentication waiting out its delay: when, the request to answer (none for
    /// bare tokens), its answer, and why the connection then closes.
    failed: Option<Failed>,
    /// A PLAIN password the backend is checking.
    verifying: Option<Verifying>,
    /// A PLAIN password waiting for its turn in the check budget, and when that is.
    booked: Option<(Instant, Verifying)>,
}

/// A PLAIN password out for the backend's check (or booked for a check), and what to
/// answer once it is back.
#[derive(Debug)]
struct Verifying {
    /// The check's work id (0 while booked).
    id: u64,
    /// The SaslAuthenticate request, and its version; `None` for a bare token.
    request: Option<(u64, i16)>,
    user: String,
    password: Password,
    mechanism: Mechanism,
}

#[derive(Debug)]
struct Session {
    user: String,
    mechanism: Mechanism,
    expires: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Failed {
    pub(super) at: Instant,
    pub(super) seq: Option<u64>,
    pub(super) response: Option<Response>,
    pub(super) reason: CloseReason,
}

impl SaslState {
    pub(super) fn new(config: Option<Arc<SaslConfig>>) -> Self {
        Self {
            config,
            exchange: None,
            exchange_started: None,
            session: None,
            failed: None,
            verifying: None,
            booked: None,
        }
    }

    /// When the booked password check is due, if one is.
    pub(super) fn booked_at(&self) -> Option<Instant> {
        self.booked.as_ref().map(|(at, _)| *at)
    }

    /// The work id of the password check under way, if any.
    pub(super) fn verifying(&self) -> Option<u64> {
        self.verifying.as_ref().map(|v| v.id)
    }

    /// Whether a request other than the SASL ones may be served.
    pub(super) fn authenticated(&self) -> bool {
        self.session.is_some()
    }

    /// Whether the next frame is a bare v0 token rather than a request.
    pub(super) fn expects_bare_token(&self) -> bool {
        self.failed.is_none() && matches!(self.exchange, Some((_, _, true)))
    }

    pub(super) fn failed(&self) -> Option<&Failed> {
        self.failed.as_ref()
    }

    /// When the connection closes unless the client authenticates again first: the
    /// session's end, or, with a re-authentication under way, the later of that and the
    /// time the re-authentication has to finish.
    pub(super) fn expiry(&self) -> Option<Instant> {
        let end = self.session.as_ref().and_then(|s| s.expires)?;
        Some(match self.exchange_started {
            Some(started) => end.max(started + REAUTHENTICATION_TIME),
            None => end,
        })
    }

    /// Whether the session has ended at `now`.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expiry().is_some_and(|e| now >= e)
    }

    /// Whether an authenticated client is authenticating again: until it is done, it may
    /// send nothing but the SASL requests, as Kafka's authenticator requires.
    pub(super) fn reauthenticating(&self) -> bool {
        self.session.is_some() && self.exchange.is_some()
    }
}

/// SaslAuthenticate's API key, as the first two bytes of a request frame's header say it.
const SASL_AUTHENTICATE: [u8; 2] = 36i16.to_be_bytes();

impl Connection {
    /// Whether the frame at the front of `buf` may carry a password (a SASL token: any
    /// frame before authentication, a SaslAuthenticate after), so that its memory is zeroed
    /// once it is handled ([`crate::protocol::frame::split_secret_frame`]). Costs one copy of a frame that
    /// comes once per connection or re-authentication.
    pub(super) fn may_hold_a_password(&self, buf: &[u8]) -> bool {
        self.sasl.as_ref().is_some_and(|s| {
            !s.authenticated()
                || s.expects_bare_token()
                || buf.get(4..6) == Some(&SASL_AUTHENTICATE)
        })
    }

    /// The frame after a v0 handshake: a bare token, answered with a bare token.
    pub(super) fn handle_bare_token(&mut self, frame: Bytes) {
        let Some(sasl) = self.sasl.as_mut() else {
            return;
        };
        let (Some(config), Some((mechanism, exchange, _))) =
            (sasl.config.clone(), sasl.exchange.as_mut())
        else {
            return;
        };
        let mechanism = *mechanism;
        match exchange.step(&frame, &config, self.now) {
            Ok(Progress {
                user: Some(user),
                verify: Some(password),
                wait: Some(at),
                ..
            }) => self.book_check(at, None, mechanism, user, password),
            Ok(Progress {
                user: Some(user),
                verify: Some(password),
                ..
            }) => self.verify_password(None, mechanism, user, password),
            Ok(progress) => {
                let mut out = bytes::BytesMut::with_capacity(4 + progress.token.len());
                // A token is far below 4 GiB: the frame limit bounds what it answers.
                out.put_u32(u32::try_from(progress.token.len()).unwrap_or(u32::MAX));
                out.extend_from_slice(&progress.token);
                self.out.push(out.freeze());
                if let Some(user) = progress.user {
                    self.authenticated(user, mechanism, &config);
                }
            }
            Err(failure) => self.fail_authentication(None, None, mechanism, failure, &config),
        }
    }

    pub(super) fn handle_sasl_handshake(
        &mut self,
        i: usize,
        req: &SaslHandshakeRequest,
        version: i16,
    ) -> Result<(), CloseReason> {
        let Some(sasl) = self.sasl.as_mut() else {
            // Kafka's answer on a listener without SASL.
            return self.finish(
                i,
                Some(handshake_response(ErrorCode::ILLEGAL_SASL_STATE, &[])),
            );
        };
        let enabled: Vec<Mechanism> = sasl
            .config
            .as_ref()
            .map(|c| c.mechanisms.clone())
            .unwrap_or_default();
        let asked = Mechanism::from_name(&req.mechanism).filter(|m| enabled.contains(m));
        let refusal = if sasl.exchange.is_some() {
            Some((
                ErrorCode::ILLEGAL_SASL_STATE,
                "SaslHandshake during an exchange".to_owned(),
            ))
        } else if let Some(session) = &sasl.session {
            // Re-authentication (KIP-368) keeps the mechanism and speaks SaslAuthenticate.
            if asked != Some(session.mechanism) {
                Some((
                    ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                    format!(
                        "re-authentication must use {}, not {:?}",
                        session.mechanism, req.mechanism
                    ),
                ))
            } else if version == 0 {
                Some((
                    ErrorCode::ILLEGAL_SASL_STATE,
                    "re-authentication needs SaslHandshake v1".to_owned(),
                ))
            } else {
                None
            }
        } else if asked.is_none() {
            Some((
                ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                format!("mechanism {:?} is not enabled", req.mechanism),
            ))
        } else {
            None
        };
        let response =
            handshake_response(refusal.as_ref().map_or(ErrorCode::NONE, |r| r.0), &enabled);
        if let Some((code, why)) = refusal {
            tracing::info!(code = code.name(), %why, "SASL handshake refused");
            self.finish(i, Some(response))?;
            return Err(CloseReason::Authentication(why));
        }
        if let Some(mechanism) = asked {
            sasl.exchange = Some((mechanism, Exchange::new(mechanism), version == 0));
            sasl.exchange_started = Some(self.now);
        }
        self.finish(i, Some(response))
    }

    pub(super) fn handle_sasl_authenticate(
        &mut self,
        i: usize,
        req: &SaslAuthenticateRequest,
        version: i16,
    ) -> Result<(), CloseReason> {
        let refuse = |message: &str| {
            Response::SaslAuthenticate(SaslAuthenticateResponse {
                error_code: ErrorCode::ILLEGAL_SASL_STATE.into(),
                error_message: Some(KStr::from(message)),
                ..SaslAuthenticateResponse::default()
            })
        };
        let Some(sasl) = self.sasl.as_mut() else {
            return self.finish(
                i,
                Some(refuse("SaslAuthenticate on a listener without SASL")),
            );
        };
        let (Some(config), Some((mechanism, exchange, false))) =
            (sasl.config.clone(), sasl.exchange.as_mut())
        else {
            let why = "SaslAuthenticate without a SaslHandshake v1 before it";
            self.finish(i, Some(refuse(why)))?;
            return Err(CloseReason::Authentication(why.into()));
        };
        let mechanism = *mechanism;
        let progress = match exchange.step(&req.auth_bytes, &config, self.now) {
            Ok(p) => p,
            Err(failure) => {
                let seq = self.requests[i].seq;
                self.fail_authentication(Some(seq), Some(version), mechanism, failure, &config);
                return Ok(());
            }
        };
        if let (Some(user), Some(password)) = (&progress.user, progress.verify) {
            let seq = self.requests[i].seq;
            match progress.wait {
                Some(at) => {
                    self.book_check(at, Some((seq, version)), mechanism, user.clone(), password);
                }
                None => {
                    self.verify_password(Some((seq, version)), mechanism, user.clone(), password);
                }
            }
            return Ok(());
        }
        self.authenticate_answer(
            i,
            version,
            mechanism,
            progress.user,
            progress.token,
            &config,
        )
    }

    /// Answers SaslAuthenticate request `i` of an exchange that went well: with the next
    /// token, or, once `user` is authenticated, the session's lifetime (a re-authentication
    /// as another user fails instead).
    fn authenticate_answer(
        &mut self,
        i: usize,
        version: i16,
        mechanism: Mechanism,
        user: Option<String>,
        token: Vec<u8>,
        config: &SaslConfig,
    ) -> Result<(), CloseReason> {
        let mut lifetime_ms = 0;
        if let Some(user) = user {
            if let Some(previous) = self.sasl.as_ref().and_then(|s| s.session.as_ref()) {
                if previous.user != user {
                    let failure = Failure::new(format!(
                        "Cannot change principals during re-authentication from User:{}: User:{user}",
                        previous.user
                    ));
                    let seq = self.requests[i].seq;
                    self.fail_authentication(Some(seq), Some(version), mechanism, failure, config);
                    return Ok(());
                }
            }
            lifetime_ms = config
                .session_lifetime
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            self.authenticated(user, mechanism, config);
        }
        self.finish(
            i,
            Some(Response::SaslAuthenticate(SaslAuthenticateResponse {
                error_code: ErrorCode::NONE.into(),
                auth_bytes: Bytes::from(token),
                session_lifetime_ms: lifetime_ms,
                ..SaslAuthenticateResponse::default()
            })),
        )
    }

    /// Hands `user`'s PLAIN password to the backend to check; the answer waits for it.
    fn verify_password(
        &mut self,
        request: Option<(u64, i16)>,
        mechanism: Mechanism,
        user: String,
        password: Password,
    ) {
        let id = self.next_command;
        self.next_command += 1;
        self.ready.push_back((
            WorkId(id),
            Work::Store(Command::VerifyPassword {
                user: user.clone(),
                password: password.clone(),
            }),
        ));
        if let Some(sasl) = self.sasl.as_mut() {
            sasl.verifying = Some(Verifying {
                id,
                request,
                user,
                password,
                mechanism,
            });
        }
    }

    /// Keeps `user`'s PLAIN password until `at`, its turn in the check budget.
    fn book_check(
        &mut self,
        at: Instant,
        request: Option<(u64, i16)>,
        mechanism: Mechanism,
        user: String,
        password: Password,
    ) {
        tracing::debug!(%user, wait = ?at.saturating_duration_since(self.now), "password check booked");
        if let Some(sasl) = self.sasl.as_mut() {
            sasl.booked = Some((
                at,
                Verifying {
                    id: 0,
                    request,
                    user,
                    password,
                    mechanism,
                },
            ));
        }
    }

    /// Makes the booked password check once its time has come: here, or by handing it to
    /// the backend.
    pub(super) fn run_booked_check(&mut self, now: Instant) -> Result<(), CloseReason> {
        let due = self
            .sasl
            .as_ref()
            .and_then(SaslState::booked_at)
            .is_some_and(|at| now >= at);
        if !due {
            return Ok(());
        }
        let (Some(config), Some((_, v))) = (
            self.sasl.as_ref().and_then(|s| s.config.clone()),
            self.sasl.as_mut().and_then(|s| s.booked.take()),
        ) else {
            return Ok(());
        };
        match config.check_booked(&v.user, v.password, now) {
            Ok(Some(password)) => {
                self.verify_password(v.request, v.mechanism, v.user, password);
                Ok(())
            }
            Ok(None) => self.plain_passed(v.request, v.mechanism, v.user, &config),
            Err(failure) => {
                let (seq, version) = (v.request.map(|r| r.0), v.request.map(|r| r.1));
                self.fail_authentication(seq, version, v.mechanism, failure, &config);
                Ok(())
            }
        }
    }

    /// Answers a PLAIN exchange whose password passed: the SaslAuthenticate request, or the
    /// empty bare token.
    fn plain_passed(
        &mut self,
        request: Option<(u64, i16)>,
        mechanism: Mechanism,
        user: String,
        config: &SaslConfig,
    ) -> Result<(), CloseReason> {
        match request {
            Some((seq, version)) => match self.index_of(seq) {
                Some(i) => {
                    self.authenticate_answer(i, version, mechanism, Some(user), Vec::new(), config)
                }
                None => Ok(()),
            },
            None => {
                // The empty token PLAIN answers with, bare.
                self.out.push(Bytes::from_static(&[0, 0, 0, 0]));
                self.authenticated(user, mechanism, config);
                Ok(())
            }
        }
    }

    /// The backend's answer about the password [`Self::verify_password`] handed it.
    pub(super) fn password_verified(&mut self, outcome: Outcome) -> Result<(), CloseReason> {
        let (Some(config), Some(v)) = (
            self.sasl.as_ref().and_then(|s| s.config.clone()),
            self.sasl.as_mut().and_then(|s| s.verifying.take()),
        ) else {
            return Ok(());
        };
        let (seq, version) = (v.request.map(|r| r.0), v.request.map(|r| r.1));
        let failure = match outcome {
            Outcome::Store(Completion::VerifyPassword(Ok(true))) => {
                config.remember_plain(&v.user, &v.password, self.now);
                return self.plain_passed(v.request, v.mechanism, v.user, &config);
            }
            Outcome::Store(Completion::VerifyPassword(Ok(false))) => {
                Failure::new("Authentication failed: Invalid username or password")
            }
            Outcome::Store(Completion::VerifyPassword(Err(e))) => {
                tracing::warn!(user = %v.user, error = %e, "the backend could not check a password");
                Failure::unchecked("the password could not be checked now")
            }
            other => {
                tracing::warn!(user = %v.user, outcome = ?other, "the backend could not check a password");
                Failure::unchecked("the password could not be checked now")
            }
        };
        self.fail_authentication(seq, version, v.mechanism, failure, &config);
        Ok(())
    }

    fn authenticated(&mut self, user: String, mechanism: Mechanism, config: &SaslConfig) {
        let now = self.now;
        let Some(sasl) = self.sasl.as_mut() else {
            return;
        };
        let again = sasl.session.is_some();
        tracing::info!(%user, %mechanism, reauthentication = again, "authenticated");
        sasl.exchange = None;
        sasl.exchange_started = None;
        sasl.session = Some(Session {
            user: user.clone(),
            mechanism,
            expires: config.session_lifetime.map(|d| now + d),
        });
        let changed = self.principal.as_deref() != Some(user.as_str());
        self.principal = Some(user);
        if changed {
            self.principal_changed();
        }
    }

    /// Answers a failed exchange after the failure delay, then closes: slow for whoever
    /// guesses passwords, and nothing more is read meanwhile.
    fn fail_authentication(
        &mut self,
        seq: Option<u64>,
        version: Option<i16>,
        mechanism: Mechanism,
        failure: Failure,
        config: &SaslConfig,
    ) {
        let (response, reason) = if failure.close_only {
            // Not the client's fault: closed unanswered after the same delay, for the
            // client to reconnect and try again.
            tracing::warn!(%mechanism, reason = %failure.message, client_id = ?self.client.client_id, "authentication not checked: closing for the client to retry");
            (None, CloseReason::Overloaded(failure.message))
        } else {
            tracing::warn!(%mechanism, code = failure.code.name(), reason = %failure.message, client_id = ?self.client.client_id, "authentication failed");
            let response = version.map(|_| {
                Response::SaslAuthenticate(SaslAuthenticateResponse {
                    error_code: failure.code.into(),
                    error_message: Some(KStr::from(failure.message.as_str())),
                    ..SaslAuthenticateResponse::default()
                })
            });
            (response, CloseReason::Authentication(failure.message))
        };
        if let Some(sasl) = self.sasl.as_mut() {
            sasl.exchange = None;
            sasl.exchange_started = None;
            sasl.failed = Some(Failed {
                at: self.now + config.failure_delay,
                seq,
                response,
                reason,
            });
        }
    }

    /// Releases a failed authentication's answer once its delay has passed, and closes.
    pub(super) fn release_failed_authentication(&mut self, now: Instant) {
        let due = self
            .sasl
            .as_ref()
            .and_then(|s| s.failed.as_ref())
            .is_some_and(|f| now >= f.at);
        if !due {
            return;
        }
        let Some(failed) = self.sasl.as_mut().and_then(|s| s.failed.take()) else {
            return;
        };
        if let Some(i) = failed.seq.and_then(|seq| self.index_of(seq)) {
            if failed.response.is_some() {
                self.linger_until = Some(now + LINGER);
            }
            let _ = self.finish(i, failed.response);
        }
        self.close(failed.reason);
        // Closing must not wait for anything: nothing else is due.
        if let Some(sasl) = self.sasl.as_mut() {
            sasl.session = None;
        }
        debug_assert!(matches!(self.state, State::Closing(_)));
    }

    /// Closes the connection once its session has ended without a new authentication.
    pub(super) fn check_session(&mut self, now: Instant) {
        if self.sasl.as_ref().is_some_and(|s| s.expired(now)) {
            self.close(CloseReason::SessionExpired);
        }
    }
}

fn handshake_response(code: ErrorCode, mechanisms: &[Mechanism]) -> Response {
    Response::SaslHandshake(SaslHandshakeResponse {
        error_code: code.into(),
        mechanisms: mechanisms.iter().map(|m| KStr::from(m.name())).collect(),
    })
}
