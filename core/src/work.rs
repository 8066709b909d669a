//! What a connection asks for, and where it goes.
//!
//! A request's task asks for [`Work`]: a store [`Command`] for the backend, or a
//! [`GroupCall`] for the gateway's group coordinator. Each comes back as the [`Outcome`] of
//! the same kind. A [`crate::Connection`] hands work out under a [`WorkId`] and is given
//! the outcome under the same id; the runtime-neutral driver ([`crate::driver`]) routes
//! store commands to the [`crate::backend::Backend`] and group calls to the coordinator, so
//! that neither knows of the other.

use std::time::{Duration, Instant};

use crate::backend::{Command, Completion};
use crate::group::{GroupCall, GroupReply};
use crate::txn::{TxnCall, TxnReply};

/// Identifies a piece of work of one connection, to match its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId(pub u64);

/// What a connection asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A command for the store.
    Store(Command),
    /// A call on the group coordinator.
    Group(GroupCall),
    /// A call on the transaction coordinator.
    Txn(TxnCall),
    /// A [`Command::Append`] of transactional batches: the transaction coordinator checks
    /// it against the transactional id of its request before the store gets it. Its
    /// outcome is the append's ([`Outcome::Store`]).
    TxnAppend {
        /// The request's transactional id, as the coordinator keys it.
        transactional_id: String,
        /// The append.
        append: Command,
    },
}

/// What the work came to, of the same kind as the [`Work`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The store command's completion.
    Store(Completion),
    /// The coordinator's reply.
    Group(GroupReply),
    /// The transaction coordinator's reply.
    Txn(TxnReply),
}

impl Work {
    /// The deadline whoever runs this must not hold it past, if it has one.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Store(c) | Self::TxnAppend { append: c, .. } => c.deadline(),
            Self::Group(_) | Self::Txn(_) => None,
        }
    }

    /// How long the work may rightly take when that is longer than a request timeout:
    /// a JoinGroup waits for the rebalance, a follower's SyncGroup for the leader. The
    /// coordinator answers both within the group's rebalance timeout.
    #[must_use]
    pub fn patience(&self) -> Option<Duration> {
        match self {
            Self::Group(GroupCall::Join(j)) => Some(Duration::from_millis(
                u64::try_from(j.rebalance_timeout_ms.max(j.session_timeout_ms)).unwrap_or(0),
            )),
            Self::Group(GroupCall::Sync(_)) => Some(Duration::from_secs(30 * 60)),
            _ => None,
        }
    }

    /// How long the work may take before its request is answered without it, when that is
    /// shorter than a request timeout: a write of committed offsets, which Kafka's
    /// coordinator bounds by [`crate::group::OFFSETS_COMMIT_TIMEOUT`], and a read of them, which waits
    /// for the group's writes before it. A member's heartbeats queue behind its offsets
    /// requests on the connection, so one held up longer would cost it its session.
    #[must_use]
    pub fn limit(&self) -> Option<Duration> {
        match self {
            Self::Store(Command::CommitOffsets { .. } | Command::FetchOffsets { .. }) => {
                Some(crate::group::OFFSETS_COMMIT_TIMEOUT)
            }
            _ => None,
        }
    }
}

impl From<Command> for Work {
    fn from(c: Command) -> Self {
        Self::Store(c)
    }
}

impl From<GroupCall> for Work {
    fn from(c: GroupCall) -> Self {
        Self::Group(c)
    }
}

impl From<TxnCall> for Work {
    fn from(c: TxnCall) -> Self {
        Self::Txn(c)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::group::{Coordinator, GroupConfig, ReplyTo};
    use crate::protocol::error_code::ErrorCode;

    /// A plausible successful outcome of `work`, for tests of the connection alone.
    pub(crate) fn succeed(work: &Work) -> Outcome {
        match work {
            Work::Store(command)
            | Work::TxnAppend {
                append: command, ..
            } => Outcome::Store(crate::backend::tests::succeed(command)),
            Work::Group(call) => {
                // A coordinator of its own answers; fine for tests of one request.
                let mut c = Coordinator::new(GroupConfig::default(), 1);
                let now = Instant::now();
                c.handle(now, ReplyTo(0), call.clone());
                c.handle_timeout(now + Duration::from_secs(3600));
                Outcome::Group(match c.poll_reply() {
                    Some((_, r)) => r,
                    None => GroupReply::Heartbeat(ErrorCode::REBALANCE_IN_PROGRESS),
                })
            }
            Work::Txn(call) => {
                let mut c = crate::txn::TxnCoordinator::default();
                c.handle(Instant::now(), ReplyTo(0), call.clone());
                Outcome::Txn(match c.poll_reply() {
                    Some((_, r)) => r,
                    None => crate::txn::TxnReply::EndTxn(ErrorCode::NONE),
                })
            }
        }
    }
}
