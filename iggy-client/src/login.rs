//! Checks of someone else's credentials against Iggy: a login with them on a session of
//! its own, closed as soon as Iggy answers.
//!
//! The gateway verifies a Kafka client's SASL/PLAIN password this way on the Iggy backend,
//! so that Iggy stays the one place passwords are kept. [`LoginChecks::check`] queues a
//! check and returns a future of its [`LoginOutcome`]; the tasks of
//! [`crate::drive::login_tasks`] (a few, so that a flood of logins costs Iggy a bounded
//! number of password hashes at once) take checks from the queue, connect (over TLS when
//! the pool does), log in, and close. A check nobody waits for any more is skipped. The
//! queue is bounded: past [`MAX_QUEUED`] a check fails at once.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::session::{Credentials, Event, Session, SessionConfig};

/// Checks waiting for a task beyond this many fail at once ([`LoginOutcome::Failed`]).
pub const MAX_QUEUED: usize = 256;
/// How many checks run at once (the tasks [`crate::drive::login_tasks`] gives).
pub const CONCURRENT: usize = 4;
/// How long one check may take, connecting included.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What Iggy said of the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The login succeeded.
    Accepted,
    /// Iggy refused them (a wrong password, an unknown or inactive user).
    Refused,
    /// No answer about them: Iggy could not be reached, or the check could not be queued.
    Failed(String),
}

#[derive(Default)]
struct State {
    outcome: Option<LoginOutcome>,
    waker: Option<Waker>,
}

/// One queued check.
pub(crate) struct Check {
    pub(crate) credentials: Credentials,
    state: Mutex<State>,
}

impl Check {
    pub(crate) fn finish(&self, outcome: LoginOutcome) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.outcome = Some(outcome);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The outcome of a queued check.
#[must_use = "a check whose future is dropped before it runs is skipped"]
pub struct PendingLogin(Arc<Check>);

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingLogin")
    }
}

impl Future for PendingLogin {
    type Output = LoginOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LoginOutcome> {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.outcome.take() {
            Some(o) => Poll::Ready(o),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The queue of checks, shared by whoever asks ([`crate::Lanes::logins`]) and the tasks
/// that run them.
#[derive(Default)]
pub struct LoginChecks {
    /// Held weakly: a check whose future was dropped is gone by the time a task looks.
    queue: Mutex<VecDeque<Weak<Check>>>,
    added: event_listener::Event,
}

impl fmt::Debug for LoginChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginChecks").finish_non_exhaustive()
    }
}

impl LoginChecks {
    /// Queues a check of `credentials`.
    pub fn check(&self, credentials: Credentials) -> PendingLogin {
        let check = Arc::new(Check {
            credentials,
            state: Mutex::default(),
        });
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.retain(|c| c.strong_count() > 0);
        if queue.len() >= MAX_QUEUED {
            drop(queue);
            check.finish(LoginOutcome::Failed(format!(
                "{MAX_QUEUED} logins are already waiting to be checked with Iggy"
            )));
            return PendingLogin(check);
        }
        queue.push_back(Arc::downgrade(&check));
        drop(queue);
        self.added.notify(1);
        PendingLogin(check)
    }

    /// The next check someone still waits for.
    pub(crate) async fn next(&self) -> Arc<Check> {
        loop {
            let listener = self.added.listen();
            if let Some(c) = self.pop() {
                return c;
            }
            listener.await;
        }
    }

    fn pop(&self) -> Option<Arc<Check>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(weak) = queue.pop_front() {
            if let Some(c) = weak.upgrade() {
                return Some(c);
            }
        }
        None
    }
}

/// The session a check logs in with: its own client id, short limits.
pub(crate) fn session(credentials: Credentials, client_id: u128, now: Instant) -> Session {
    Session::new(
        SessionConfig {
            credentials,
            client_id,
            reply_timeout: CHECK_TIMEOUT,
            max_reply_bytes: 1 << 20,
        },
        now,
    )
}

/// What a check's session event says, once it says something final.
pub(crate) fn outcome_of(event: Event) -> Option<LoginOutcome> {
    match event {
        Event::Ready { .. } => Some(LoginOutcome::Accepted),
        Event::Closed(e) if e.refuses_credentials() => Some(LoginOutcome::Refused),
        Event::Closed(e) => Some(LoginOutcome::Failed(e.to_string())),
        Event::Reply(_) | Event::Stalled(_) => None,
    }
}
