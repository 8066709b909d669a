//! SASL authentication as Kafka's brokers do it: the mechanisms (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512), the users they check against, and one exchange as a pure state machine
//! that takes the client's tokens and gives the server's.
//!
//! The connection owns the exchange ([`crate::Connection`] handles SaslHandshake and
//! SaslAuthenticate itself, because they change who the connection is). Nothing here reads
//! a clock or a socket; randomness (SCRAM's server nonces and the decoy salts of unknown
//! users) comes from the [`Random`] the configuration supplies.

mod follow;
pub mod scram;
mod users;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::error_code::ErrorCode;

pub use follow::{ScramFollower, FOLLOW_INTERVAL};
pub use scram::{ScramCredential, ScramMechanism};
pub use users::{ScramCredentialInfo, Users, PLAIN_CACHE_TTL};

/// A SASL mechanism the gateway can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616): the password in the clear, so only fit inside TLS.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
}

impl Mechanism {
    /// Every mechanism, in the order the handshake lists them.
    pub const ALL: [Self; 3] = [
        Self::Plain,
        Self::Scram(ScramMechanism::Sha256),
        Self::Scram(ScramMechanism::Sha512),
    ];

    /// The SASL name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }

    /// The mechanism named `name` (case-insensitive), if the gateway has it.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

type Fill = dyn Fn(&mut [u8]) + Send + Sync;

/// A source of unpredictable bytes. The binary gives the operating system's; tests give
/// fixed bytes, so that exchanges are reproducible.
#[derive(Clone)]
pub struct Random(Arc<Fill>);

impl Random {
    /// A source that fills buffers with `fill`.
    pub fn new(fill: impl Fn(&mut [u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(fill))
    }

    pub(crate) fn fill(&self, out: &mut [u8]) {
        (self.0)(out);
    }
}

impl fmt::Debug for Random {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Random")
    }
}

/// How a SASL listener authenticates its clients.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SaslConfig {
    /// The mechanisms offered (Kafka's `sasl.enabled.mechanisms`).
    pub mechanisms: Vec<Mechanism>,
    /// Who may authenticate, and with what.
    pub users: Arc<Users>,
    /// How long an authentication lasts before the client must authenticate again on the
    /// same connection (KIP-368, Kafka's `connections.max.reauth.ms`); `None`: for ever.
    pub session_lifetime: Option<Duration>,
    /// How long a failed authentication waits before its answer and the close (Kafka's
    /// `connection.failed.authentication.delay.ms`): it slows guessing down.
    pub failure_delay: Duration,
    /// Where SCRAM's nonces come from.
    pub random: Random,
    /// The secret unknown users' decoy credentials are derived from.
    decoy_key: [u8; 32],
    /// The secret PLAIN's cache of recent logins is keyed with.
    plain_key: [u8; 32],
    /// Whether PLAIN passwords are the backend's to check
    /// ([`crate::backend::Command::VerifyPassword`]: on the Iggy backend, a login with
    /// them) rather than checked against [`SaslConfig::users`]' credentials. Successes are
    /// remembered as [`Users::verify_plain_at`] remembers them.
    pub plain_by_backend: bool,
    /// How many PLAIN passwords per second may be checked against a credential (a PBKDF2
    /// each, about 2 ms of CPU at 4,096 iterations) or sent to the backend to check, on
    /// average, with as many in a burst. A login past it waits its turn, up to
    /// [`MAX_CHECK_WAIT`]; when that many seconds of checks are already waiting, its
    /// connection is closed without an answer (a client reconnects after its backoff, where
    /// an authentication failure would be final). Logins whose password passed lately cost
    /// no check and never wait. `0`: no bound.
    pub password_checks_per_second: u32,
    /// What is left of that budget, and when it was last topped up.
    budget: Arc<std::sync::Mutex<Option<(f64, Instant)>>>,
}

impl SaslConfig {
    /// Every mechanism over `users`, sessions without a lifetime, and Kafka's 100 ms
    /// failure delay.
    #[must_use]
    pub fn new(users: Arc<Users>, random: Random) -> Self {
        let mut decoy_key = [0u8; 32];
        random.fill(&mut decoy_key);
        let mut plain_key = [0u8; 32];
        random.fill(&mut plain_key);
        Self {
            decoy_key,
            plain_key,
            mechanisms: Mechanism::ALL.to_vec(),
            users,
            session_lifetime: None,
            failure_delay: Duration::from_millis(100),
            random,
            plain_by_backend: false,
            password_checks_per_second: 0,
            budget: Arc::default(),
        }
    }
}

impl SaslConfig {
    /// The credential an unknown `user` is answered with: a salt derived from a secret
    /// and the name (the same every time, as a real user's), the iteration count most
    /// users have, and keys no proof matches.
    fn decoy(&self, user: &str, mechanism: ScramMechanism) -> ScramCredential {
        let derive = |what: &str| {
            let mut data = Vec::with_capacity(what.len() + user.len() + 16);
            data.extend_from_slice(what.as_bytes());
            data.push(0);
            data.extend_from_slice(mechanism.name().as_bytes());
            data.push(0);
            data.extend_from_slice(user.as_bytes());
            mechanism.hmac(&self.decoy_key, &data)
        };
        let mut salt = derive("salt");
        salt.truncate(24);
        ScramCredential {
            mechanism,
            salt,
            iterations: self.users.typical_iterations(mechanism),
            stored_key: derive("stored"),
            server_key: derive("server"),
        }
    }
}

/// The longest a PLAIN login waits for its turn in the password-check budget
/// ([`SaslConfig::password_checks_per_second`]). The Java client puts no timeout on the
/// SASL exchange and librdkafka allows 30 s for connecting, TLS and SASL together, so a
/// wait this short is a slow login, not a failure.
pub const MAX_CHECK_WAIT: Duration = Duration::from_secs(5);

/// A failed step: the code and the message the client is told. The message never holds
/// a password, token or proof, so that it may be logged too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Closes the connection without an answer: the client sees a dropped connection,
    /// which it retries, rather than an authentication failure, which it does not.
    pub(crate) close_only: bool,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::SASL_AUTHENTICATION_FAILED,
            message: message.into(),
            close_only: false,
        }
    }

    pub(crate) fn illegal_state(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::ILLEGAL_SASL_STATE,
            message: message.into(),
            close_only: false,
        }
    }

    /// Too many password checks are waiting: the connection closes unanswered.
    fn busy() -> Self {
        Self::unchecked("too many password checks waiting")
    }

    /// The password could not be checked (too many waiting, or the backend that checks it
    /// cannot be reached): the connection closes unanswered, after the failure delay.
    pub(crate) fn unchecked(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::NONE,
            message: message.into(),
            close_only: true,
        }
    }
}

/// What the password-check budget says about one more check at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Check now.
    Now,
    /// The check is booked for then.
    At(Instant),
    /// Too many are waiting.
    Full,
}

/// One step's result: the token for the client, and the user once authenticated; or,
/// for PLAIN, the password still to check (`user` is then whom it authenticates once the
/// check passes): by the backend at once, or, when `wait` says so, at that time by
/// [`SaslConfig::check_booked`].
#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) token: Vec<u8>,
    pub(crate) user: Option<String>,
    pub(crate) verify: Option<Password>,
    pub(crate) wait: Option<Instant>,
}

/// One change to the SCRAM credentials, as AlterUserScramCredentials makes it and a backend
/// stores it ([`crate::backend::Command::StoreScramCredentials`]): keys, never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramChange {
    /// `user`'s credential for the credential's mechanism is this one.
    Set {
        /// The user.
        user: String,
        /// The credential (its Debug shows no key).
        credential: ScramCredential,
    },
    /// `user` has no credential for `mechanism` any more.
    Delete {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
    },
}

impl ScramChange {
    /// Applies the change to `users`.
    pub fn apply(&self, users: &Users) {
        match self {
            Self::Set { user, credential } => users.set(user, credential.clone()),
            Self::Delete { user, mechanism } => {
                users.remove(user, *mechanism);
            }
        }
    }

    /// Applies the change, which the backend kept at `place` in its order, to `users`
    /// unless a later one is there already ([`Users::apply_stored`]). Whether it was.
    pub fn apply_stored(&self, users: &Users, place: u64) -> bool {
        match self {
            Self::Set { user, credential } => {
                users.apply_stored(user, credential.mechanism, Some(credential.clone()), place)
            }
            Self::Delete { user, mechanism } => users.apply_stored(user, *mechanism, None, place),
        }
    }
}

/// A password on its way to the backend's check: never shown, in logs or anywhere, and
/// zeroed in memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(zeroize::Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps `password`.
    #[must_use]
    pub fn new(password: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(password))
    }

    /// The password itself, for the one place that checks it.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One authentication exchange, from the mechanism's first token to its last.
#[derive(Debug)]
pub(crate) enum Exchange {
    Plain { done: bool },
    Scram(scram::ScramServer),
}

impl Exchange {
    pub(crate) fn new(mechanism: Mechanism) -> Self {
        match mechanism {
            Mechanism::Plain => Self::Plain { done: false },
            Mechanism::Scram(m) => Self::Scram(scram::ScramServer::new(m)),
        }
    }

    /// Takes the client's next token.
    pub(crate) fn step(
        &mut self,
        token: &[u8],
        config: &SaslConfig,
        now: Instant,
    ) -> Result<Progress, Failure> {
        match self {
            Self::Plain { done } => {
                if std::mem::replace(done, true) {
                    return Err(Failure::illegal_state(
                        "the PLAIN exchange is already complete",
                    ));
                }
                let (user, verify, wait) = plain(token, config, now)?;
                Ok(Progress {
                    token: Vec::new(),
                    user: Some(user),
                    verify,
                    wait,
                })
            }
            Self::Scram(server) => {
                let users = &config.users;
                let step = server.step(
                    token,
                    &|u, m| users.get(u, m).ok_or_else(|| config.decoy(u, m)),
                    &config.random,
                );
                step.map(|s| Progress {
                    token: s.token,
                    user: s.user,
                    verify: None,
                    wait: None,
                })
            }
        }
    }
}

/// The lengths (bytes) of the user names and passwords Iggy takes at login.
const BACKEND_USER_BYTES: std::ops::RangeInclusive<usize> = 3..=50;
const BACKEND_PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 3..=100;

/// PLAIN's one message, `authzid NUL authcid NUL passwd` (RFC 4616), checked as Kafka's
/// `PlainSaslServer` does: the user, and the password when it is still to be checked (by
/// the backend now, or by whoever checks it at the booked time); a password that passed
/// lately is not checked again.
fn plain(
    token: &[u8],
    config: &SaslConfig,
    now: Instant,
) -> Result<(String, Option<Password>, Option<Instant>), Failure> {
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    let [authzid, user, password] = parts.as_slice() else {
        return Err(Failure::new(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    let user = std::str::from_utf8(user)
        .map_err(|_| Failure::new("Authentication failed: username is not UTF-8"))?;
    if user.is_empty() {
        return Err(Failure::new(
            "Authentication failed: username not specified",
        ));
    }
    if password.is_empty() {
        return Err(Failure::new(
            "Authentication failed: password not specified",
        ));
    }
    if !authzid.is_empty() && *authzid != user.as_bytes() {
        return Err(Failure::new(
            "Authentication failed: Client requested an authorization id that is different from username",
        ));
    }
    // Iggy takes no user or password outside these lengths (its login would be refused,
    // or could not even be encoded): they are wrong without asking it.
    if config.plain_by_backend
        && (!BACKEND_USER_BYTES.contains(&user.len())
            || !BACKEND_PASSWORD_BYTES.contains(&password.len()))
    {
        return Err(Failure::new(
            "Authentication failed: Invalid username or password",
        ));
    }
    if config
        .users
        .plain_remembered(user, password, now, &config.plain_key)
    {
        return Ok((user.to_owned(), None, None));
    }
    // Each check costs a password hash (ours, or Iggy's at its login): the budget bounds
    // what a flood of wrong passwords costs, and a burst of right ones waits its turn.
    match config.admit_password_check(now) {
        Admission::Full => Err(Failure::busy()),
        Admission::At(at) => Ok((
            user.to_owned(),
            Some(Password::new(password.to_vec())),
            Some(at),
        )),
        Admission::Now if config.plain_by_backend => Ok((
            user.to_owned(),
            Some(Password::new(password.to_vec())),
            None,
        )),
        Admission::Now => {
            config.check_local(user, password, now)?;
            Ok((user.to_owned(), None, None))
        }
    }
}

impl SaslConfig {
    /// Books one password check at `now`: at once while the budget lasts, else at the
    /// time the budget will have refilled for it, as long as no more than
    /// [`MAX_CHECK_WAIT`] of checks are booked ahead of it. A token bucket that may go
    /// below empty by the bookings.
    fn admit_password_check(&self, now: Instant) -> Admission {
        let rate = f64::from(self.password_checks_per_second);
        if rate == 0.0 {
            return Admission::Now;
        }
        let mut budget = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (left, at) = budget.get_or_insert((rate, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *left = (*left + elapsed * rate).min(rate);
        *at = now.max(*at);
        let after = *left - 1.0;
        if after >= 0.0 {
            *left = after;
            return Admission::Now;
        }
        let wait = -after / rate;
        if wait > MAX_CHECK_WAIT.as_secs_f64() {
            return Admission::Full;
        }
        *left = after;
        Admission::At(now + Duration::from_secs_f64(wait))
    }

    /// A PLAIN password checked against the users' credentials (remembered when it
    /// passes).
    fn check_local(&self, user: &str, password: &[u8], now: Instant) -> Result<(), Failure> {
        if self
            .users
            .verify_plain_at(user, password, now, &self.plain_key)
        {
            Ok(())
        } else {
            Err(Failure::new(
                "Authentication failed: Invalid username or password",
            ))
        }
    }

    /// The check booked by [`Progress::wait`], at its time: `Ok(Some(password))` when the
    /// backend is to check it, `Ok(None)` when it passed here.
    pub(crate) fn check_booked(
        &self,
        user: &str,
        password: Password,
        now: Instant,
    ) -> Result<Option<Password>, Failure> {
        if self.plain_by_backend {
            return Ok(Some(password));
        }
        self.check_local(user, password.expose(), now)
            .map(|()| None)
    }

    /// Remembers that the backend accepted `password` for `user` at `now`.
    pub(crate) fn remember_plain(&self, user: &str, password: &Password, now: Instant) {
        self.users
            .remember_plain(user, password.expose(), now, &self.plain_key);
    }
}
