//! Following the SCRAM credentials other gateways keep: a change made through any gateway
//! on the same backend takes effect on all of them within [`FOLLOW_INTERVAL`].
//!
//! Sans-IO: [`ScramFollower`] says when to ask the backend
//! ([`ScramFollower::poll_timeout`], [`ScramFollower::handle_timeout`], which hands out the
//! [`Command::FollowScramCredentials`] to run) and applies the answer to the users
//! ([`ScramFollower::handle_completion`]); the clock is an argument.
//! [`crate::driver::drive_scram_credentials`] runs it on a runtime. Call order: wait until
//! `poll_timeout`, call `handle_timeout`, run the command it returns (if any) and hand its
//! completion to `handle_completion`; repeat. At most one command is out at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Users;
use crate::backend::{Command, Completion};

/// How often a gateway reads the credentials kept since it last looked: a change kept
/// through another gateway takes effect here within this, plus one read of the backend.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// Asks the backend for the SCRAM credential changes kept since the last answer, on a
/// fixed interval, and applies them to the users in their kept order.
#[derive(Debug)]
pub struct ScramFollower {
    users: Arc<Users>,
    interval: Duration,
    /// The greatest place applied.
    since: u64,
    /// When to ask next; `None` while a command is out.
    next: Option<Instant>,
}

impl ScramFollower {
    /// Follows into `users`, asking first at `now` and then every `interval`.
    #[must_use]
    pub fn new(users: Arc<Users>, now: Instant, interval: Duration) -> Self {
        Self {
            users,
            interval,
            since: 0,
            next: Some(now),
        }
    }

    /// When [`ScramFollower::handle_timeout`] has something to do; `None` while a command
    /// is out.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// The command to run, when it is time to ask.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Command> {
        if self.next.is_none_or(|t| t > now) {
            return None;
        }
        self.next = None;
        Some(Command::FollowScramCredentials { since: self.since })
    }

    /// Applies the answer to the command [`ScramFollower::handle_timeout`] handed out; the
    /// next ask is an interval from `now`. Returns how many changes took effect.
    pub fn handle_completion(&mut self, now: Instant, completion: Completion) -> usize {
        self.next = Some(now + self.interval);
        let changes = match completion {
            Completion::FollowScramCredentials(Ok(changes)) => changes,
            other => {
                // What was applied stays; the next ask reads from the same place.
                tracing::warn!(outcome = ?other, "cannot read the SCRAM credentials kept by the backend");
                return 0;
            }
        };
        let mut applied = 0;
        for (change, place) in changes {
            self.since = self.since.max(place);
            // A change this gateway stored was applied when it was answered.
            if change.apply_stored(&self.users, place) {
                applied += 1;
                match &change {
                    super::ScramChange::Set { user, credential } => {
                        tracing::info!(%user, mechanism = %credential.mechanism, "SCRAM credential set (kept by the backend)");
                    }
                    super::ScramChange::Delete { user, mechanism } => {
                        tracing::info!(%user, %mechanism, "SCRAM credential deleted (kept by the backend)");
                    }
                }
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::sasl::{ScramChange, ScramCredential, ScramMechanism};

    fn credential(password: &[u8]) -> ScramCredential {
        ScramCredential::from_password(ScramMechanism::Sha256, password, b"salt", 4096)
    }

    #[test]
    fn asks_on_the_interval_and_applies_changes_in_their_kept_order() {
        let users = Arc::new(Users::new(Vec::new()));
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut f = ScramFollower::new(users.clone(), start, FOLLOW_INTERVAL);
        assert_eq!(f.poll_timeout(), Some(start));
        assert_eq!(
            f.handle_timeout(start),
            Some(Command::FollowScramCredentials { since: 0 })
        );
        // One command at a time.
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(f.handle_timeout(at(10)), None);
        let set = ScramChange::Set {
            user: "alice".into(),
            credential: credential(b"pw"),
        };
        assert_eq!(
            f.handle_completion(
                start,
                Completion::FollowScramCredentials(Ok(vec![(set, 3)]))
            ),
            1
        );
        assert!(users.verify_plain("alice", b"pw"));
        assert_eq!(f.poll_timeout(), Some(at(2)));
        assert_eq!(f.handle_timeout(at(1)), None);
        assert_eq!(
            f.handle_timeout(at(2)),
            Some(Command::FollowScramCredentials { since: 3 })
        );
        // A PLAIN login remembered is forgotten with the deletion.
        let key = [1u8; 32];
        users.remember_plain("alice", b"pw", at(2), &key);
        let delete = ScramChange::Delete {
            user: "alice".into(),
            mechanism: ScramMechanism::Sha256,
        };
        assert_eq!(
            f.handle_completion(
                at(2),
                Completion::FollowScramCredentials(Ok(vec![(delete.clone(), 5)]))
            ),
            1
        );
        assert!(users.get("alice", ScramMechanism::Sha256).is_none());
        assert!(!users.plain_remembered("alice", b"pw", at(2), &key));
        // A change at an older place than one applied (this gateway's own store, answered
        // first) does not undo it.
        users.apply_stored("bob", ScramMechanism::Sha256, Some(credential(b"new")), 9);
        assert_eq!(
            f.handle_timeout(at(4)),
            Some(Command::FollowScramCredentials { since: 5 })
        );
        let old = ScramChange::Set {
            user: "bob".into(),
            credential: credential(b"old"),
        };
        assert_eq!(
            f.handle_completion(
                at(4),
                Completion::FollowScramCredentials(Ok(vec![(old, 7)]))
            ),
            0
        );
        assert!(users.verify_plain("bob", b"new"));
        // A failure keeps what was applied and asks again from the same place.
        assert_eq!(
            f.handle_timeout(at(6)),
            Some(Command::FollowScramCredentials { since: 7 })
        );
        assert_eq!(
            f.handle_completion(
                at(6),
                Completion::FollowScramCredentials(Err(BackendError::Unavailable("down".into())))
            ),
            0
        );
        assert_eq!(
            f.handle_timeout(at(8)),
            Some(Command::FollowScramCredentials { since: 7 })
        );
    }
}
