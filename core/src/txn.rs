//! The transaction coordinator of Kafka's transactional producers, as a sans-IO state
//! machine shared by every connection of a gateway.
//!
//! Calls come in with [`TxnCoordinator::handle`], each with the caller's [`ReplyTo`] token;
//! answers leave through [`TxnCoordinator::poll_reply`], at once, or once the state the
//! call changed is durable, or, for an EndTxn, once the transaction's markers are written.
//! What the coordinator needs done in the store leaves through
//! [`TxnCoordinator::poll_effect`]: the state to keep ([`TxnEffect::Persist`], reported with
//! [`TxnCoordinator::handle_persisted`]) and the commit or abort markers of a transaction
//! with the offsets it committed ([`Markers`], reported with
//! [`TxnCoordinator::handle_markers`]). Kafka's order holds: InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn and TxnOffsetCommit are answered once their state is
//! durable, a decision (PrepareCommit or PrepareAbort) is durable before any of its markers
//! is handed out, and the completion is persisted after the markers are written. Time only moves through the `now` arguments:
//! [`TxnCoordinator::poll_timeout`] says when [`TxnCoordinator::handle_timeout`] is next due
//! (a transaction past its timeout, markers to write again, an idle transactional id to
//! forget).
//!
//! Call order: [`TxnCoordinator::restore`] once, before anything else; then `handle*`
//! inputs in any order; after each, drain `poll_reply` and `poll_effect`; sleep until
//! `poll_timeout`, then `handle_timeout`. Persist effects are written in the order they
//! are handed out (a later snapshot of an id replaces the earlier ones).
//!
//! The rules and error codes follow Kafka's `TransactionCoordinator` and
//! `TransactionMetadata` for clients of transaction version 1 (KIP-890 part 1): the epoch is
//! bumped by InitProducerId only, partitions are added by AddPartitionsToTxn (a
//! transactional write to a partition not added is refused, see
//! [`TxnCoordinator::verify_write`]), and EndTxn answers with the same epoch. Transaction
//! version 2 (implicit partitions, an epoch bump per transaction) is not served: the gateway
//! does not advertise the `transaction.version` feature, so clients use version 1.
//!
//! The state of each transactional id is a self-contained value ([`TxnSnapshot`]), keyed by
//! the transactional id, so that it can be written to a log and read back
//! ([`TxnCoordinator::restore`]): a prepared commit or abort then completes, and an open
//! transaction is aborted when its timeout passes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::backend::{CommittedOffset, GroupOffset};
pub use crate::backend::{TxnSnapshot, TxnState};
pub use crate::group::ReplyTo;
use crate::protocol::error_code::ErrorCode;

/// Limits of the coordinator (Kafka's `transaction.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxnConfig {
    /// The longest transaction timeout a producer may ask for
    /// (`transaction.max.timeout.ms`, 15 minutes).
    pub max_timeout: Duration,
    /// How long an idle transactional id is remembered (`transactional.id.expiration.ms`,
    /// 7 days).
    pub id_expiry: Duration,
    /// How long to wait before writing markers again after the store failed them.
    pub marker_retry: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout: Duration::from_secs(15 * 60),
            id_expiry: Duration::from_secs(7 * 24 * 3600),
            marker_retry: Duration::from_secs(1),
        }
    }
}

/// A topic partition by name.
pub type TopicPartition = (String, u32);

/// A call on the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnCall {
    /// InitProducerId with a transactional id. `fresh_id` is a producer id the store
    /// allocated for this call, used when the transactional id needs a new one. Replies
    /// [`TxnReply::InitProducerId`].
    InitProducerId {
        /// The transactional id.
        transactional_id: String,
        /// The transaction timeout the producer asks for.
        timeout_ms: i32,
        /// v3+: the producer id and epoch the producer has now, if any.
        expected: Option<(i64, i16)>,
        /// An unused producer id.
        fresh_id: i64,
    },
    /// AddPartitionsToTxn of one transaction (`verify_only` for the v4+ verification).
    /// Replies [`TxnReply::AddPartitions`].
    AddPartitions {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        epoch: i16,
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Only check that they are in the ongoing transaction.
        verify_only: bool,
    },
    /// AddOffsetsToTxn; replies [`TxnReply::Code`].
    AddOffsets {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        epoch: i16,
        /// The consumer group whose offsets the transaction will commit.
        group: String,
    },
    /// TxnOffsetCommit: offsets kept with the transaction, committed with it. Replies
    /// [`TxnReply::Code`].
    CommitOffsets {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        epoch: i16,
        /// The group.
        group: String,
        /// The offsets.
        offsets: Vec<GroupOffset>,
    },
    /// EndTxn; replies [`TxnReply::EndTxn`] once the markers are written.
    EndTxn {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        epoch: i16,
        /// Commit (or abort).
        commit: bool,
    },
    /// Every transactional id's state, with how long its open transaction has run
    /// (ListTransactions). Replies [`TxnReply::List`].
    List,
    /// These transactional ids' states (DescribeTransactions). Replies
    /// [`TxnReply::Describe`].
    Describe(Vec<String>),
    /// Which of these partitions of `group` have offsets pending in a transaction (for
    /// OffsetFetch's `require_stable`); `None` for all. Replies [`TxnReply::Pending`].
    PendingOffsets {
        /// The group.
        group: String,
        /// The partitions asked about.
        only: Option<Vec<TopicPartition>>,
    },
}

/// The coordinator's answer to a [`TxnCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnReply {
    /// Of [`TxnCall::InitProducerId`]: the producer id and epoch, or an error.
    InitProducerId(Result<(i64, i16), ErrorCode>),
    /// Of [`TxnCall::AddPartitions`]: a code per partition, in the order asked.
    AddPartitions(Vec<ErrorCode>),
    /// Of [`TxnCall::AddOffsets`] and [`TxnCall::CommitOffsets`].
    Code(ErrorCode),
    /// Of [`TxnCall::EndTxn`].
    EndTxn(ErrorCode),
    /// Of [`TxnCall::PendingOffsets`]: the partitions with offsets pending.
    Pending(Vec<TopicPartition>),
    /// Of [`TxnCall::List`]: each id's state and how long ago its current (or last)
    /// transaction started (`None`: none since its InitProducerId, or not known).
    List(Vec<(TxnSnapshot, Option<Duration>)>),
    /// Of [`TxnCall::Describe`]: each id's state and how long ago its current (or last)
    /// transaction started, in the order asked (`None`: unknown id).
    Describe(Vec<Option<(TxnSnapshot, Option<Duration>)>>),
}

/// The markers of a decided transaction, for the store: a commit or abort marker for each
/// partition, and, on commit, the offsets of each group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id whose records the markers close.
    pub producer_id: i64,
    /// The epoch the markers carry (a fenced transaction's is the bumped epoch).
    pub epoch: i16,
    /// Commit (or abort).
    pub commit: bool,
    /// The partitions.
    pub partitions: Vec<TopicPartition>,
    /// On commit: the offsets to commit, by group.
    pub offsets: Vec<(String, Vec<GroupOffset>)>,
}

/// What the coordinator asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnEffect {
    /// Write these markers (and commit these offsets); report with
    /// [`TxnCoordinator::handle_markers`].
    WriteMarkers(Markers),
    /// The state of a transactional id changed: what a durable log of the coordinator
    /// keeps (the latest snapshot of each id wins). Write them in the order they are
    /// handed out and report each with [`TxnCoordinator::handle_persisted`]: the calls
    /// that changed the state are answered, and markers written, only once it is durable.
    Persist {
        /// The transactional id.
        transactional_id: String,
        /// Its state; `None` when the id is forgotten.
        snapshot: Option<TxnSnapshot>,
        /// Which write this is, for [`TxnCoordinator::handle_persisted`]: it grows with
        /// every write handed out, whatever the id.
        version: u64,
    },
}

#[derive(Debug)]
struct Txn {
    producer_id: i64,
    previous_producer_id: i64,
    epoch: i16,
    /// The epoch before the last bump a producer asked for with its current epoch, so that
    /// a retry of that call gets the same answer; -1 for none.
    last_epoch: i16,
    timeout: Duration,
    timeout_ms: i32,
    state: TxnState,
    /// The partitions of the transaction, each with the version of the write that added
    /// it: a transactional write may go there once that write is durable.
    partitions: BTreeMap<TopicPartition, u64>,
    offsets: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    /// The version of the last state handed out to be persisted, and the highest one
    /// reported durable (0 for state restored from the log).
    version: u64,
    durable: u64,
    /// Replies to calls that changed the state, held until the version they need is
    /// durable.
    held: Vec<(u64, ReplyTo, TxnReply)>,
    /// The decision (PrepareCommit or PrepareAbort) of this version must be durable
    /// before its markers are handed out.
    markers_after: Option<u64>,
    /// When to persist the state again after the log failed it.
    persist_retry: Option<Instant>,
    /// When the current (or last) transaction started: for its timeout while it is open,
    /// and for admin tools until the next InitProducerId, as Kafka keeps it.
    started: Option<Instant>,
    /// When anything last happened (for expiry).
    updated: Instant,
    /// EndTxn calls waiting for the markers.
    waiting: Vec<ReplyTo>,
    /// Markers handed out and not yet reported.
    writing: bool,
    /// When to hand the markers out again after a failure.
    retry_at: Option<Instant>,
}

/// What the coordinator did so far, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactional ids held.
    pub ids: usize,
    /// Transactions open now.
    pub ongoing: usize,
    /// Transactions committed.
    pub committed: u64,
    /// Transactions aborted (by the producer, by a fence, or by timeout).
    pub aborted: u64,
    /// Transactions aborted because their timeout passed.
    pub timed_out: u64,
    /// Producers fenced by a newer instance.
    pub fenced: u64,
}

/// The transaction coordinator. See the module docs for the call order.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: HashMap<String, Txn>,
    replies: VecDeque<(ReplyTo, TxnReply)>,
    effects: VecDeque<TxnEffect>,
    stats: TxnStats,
    /// The version of the last [`TxnEffect::Persist`] handed out.
    version: u64,
}

/// The highest epoch before a producer id is exhausted (Kafka keeps `Short.MaxValue` free).
const LAST_EPOCH: i16 = i16::MAX - 1;

impl TxnCoordinator {
    /// A coordinator with no transactional ids.
    #[must_use]
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Takes back the state a log of [`TxnEffect::Persist`] recorded, at start, before any
    /// call. A transaction that was deciding hands its markers out again; an open one is
    /// aborted once its timeout passes from `now`.
    pub fn restore(&mut self, now: Instant, snapshots: impl IntoIterator<Item = TxnSnapshot>) {
        for s in snapshots {
            let ongoing = s.state == TxnState::Ongoing;
            let preparing = s.state.preparing();
            let mut offsets: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>> =
                BTreeMap::new();
            for (group, list) in s.offsets {
                let g = offsets.entry(group).or_default();
                for o in list {
                    g.insert((o.topic, o.partition), o.committed);
                }
            }
            let txn = Txn {
                producer_id: s.producer_id,
                previous_producer_id: s.previous_producer_id,
                epoch: s.epoch,
                last_epoch: s.last_epoch,
                timeout: timeout_of(s.timeout_ms),
                timeout_ms: s.timeout_ms,
                state: s.state,
                partitions: s.partitions.into_iter().map(|p| (p, 0)).collect(),
                offsets,
                version: 0,
                durable: 0,
                held: Vec::new(),
                markers_after: None,
                persist_retry: None,
                started: ongoing.then_some(now),
                updated: now,
                waiting: Vec::new(),
                writing: false,
                retry_at: None,
            };
            self.txns.insert(s.transactional_id.clone(), txn);
            if preparing {
                self.write_markers(&s.transactional_id);
            }
        }
    }

    /// What the coordinator holds now and did so far.
    #[must_use]
    pub fn stats(&self) -> TxnStats {
        TxnStats {
            ids: self.txns.len(),
            ongoing: self
                .txns
                .values()
                .filter(|t| t.state == TxnState::Ongoing)
                .count(),
            ..self.stats
        }
    }

    /// The state of a transactional id, as a log of it would record it.
    #[must_use]
    pub fn snapshot(&self, transactional_id: &str) -> Option<TxnSnapshot> {
        self.txns
            .get(transactional_id)
            .map(|t| snapshot(transactional_id, t))
    }

    /// Every transactional id's state.
    #[must_use]
    pub fn snapshots(&self) -> Vec<TxnSnapshot> {
        let mut all: Vec<TxnSnapshot> = self.txns.iter().map(|(id, t)| snapshot(id, t)).collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }

    /// Handles a call at `now`; its reply comes from [`Self::poll_reply`], at once or later.
    pub fn handle(&mut self, now: Instant, reply_to: ReplyTo, call: TxnCall) {
        // The calls whose success changes the state: answered once it is durable.
        let changes = match &call {
            TxnCall::InitProducerId {
                transactional_id, ..
            }
            | TxnCall::AddPartitions {
                transactional_id,
                verify_only: false,
                ..
            }
            | TxnCall::AddOffsets {
                transactional_id, ..
            }
            | TxnCall::CommitOffsets {
                transactional_id, ..
            } => Some(transactional_id.clone()),
            _ => None,
        };
        let next_version = self.version + 1;
        let reply = match call {
            TxnCall::InitProducerId {
                transactional_id,
                timeout_ms,
                expected,
                fresh_id,
            } => TxnReply::InitProducerId(self.init_producer_id(
                now,
                &transactional_id,
                timeout_ms,
                expected,
                fresh_id,
            )),
            TxnCall::AddPartitions {
                transactional_id,
                producer_id,
                epoch,
                partitions,
                verify_only,
            } => {
                let result = if verify_only {
                    self.verify(&transactional_id, producer_id, epoch)
                } else {
                    self.add(now, &transactional_id, producer_id, epoch, |t| {
                        // The version `add` is about to hand out.
                        let version = next_version;
                        for p in &partitions {
                            t.partitions.entry(p.clone()).or_insert(version);
                        }
                    })
                };
                TxnReply::AddPartitions(match result {
                    Err(code) => vec![code; partitions.len()],
                    Ok(()) => {
                        let t = self.txns.get(&transactional_id);
                        partitions
                            .iter()
                            .map(|p| {
                                if t.is_some_and(|t| t.partitions.contains_key(p)) {
                                    ErrorCode::NONE
                                } else {
                                    ErrorCode::TRANSACTION_ABORTABLE
                                }
                            })
                            .collect()
                    }
                })
            }
            TxnCall::AddOffsets {
                transactional_id,
                producer_id,
                epoch,
                group,
            } => TxnReply::Code(
                self.add(now, &transactional_id, producer_id, epoch, |t| {
                    t.offsets.entry(group).or_default();
                })
                .err()
                .unwrap_or(ErrorCode::NONE),
            ),
            TxnCall::CommitOffsets {
                transactional_id,
                producer_id,
                epoch,
                group,
                offsets,
            } => TxnReply::Code(self.commit_offsets(
                now,
                &transactional_id,
                producer_id,
                epoch,
                group,
                offsets,
            )),
            TxnCall::EndTxn {
                transactional_id,
                producer_id,
                epoch,
                commit,
            } => match self.end(now, &transactional_id, producer_id, epoch, commit) {
                Ok(()) => {
                    if let Some(t) = self.txns.get_mut(&transactional_id) {
                        t.waiting.push(reply_to);
                    }
                    return;
                }
                Err(code) => TxnReply::EndTxn(code),
            },
            TxnCall::PendingOffsets { group, only } => {
                TxnReply::Pending(self.pending_offsets(&group, only.as_deref()))
            }
            TxnCall::List => {
                let mut all: Vec<(TxnSnapshot, Option<Duration>)> = self
                    .txns
                    .iter()
                    .map(|(id, t)| (snapshot(id, t), running(t, now)))
                    .collect();
                all.sort_by(|a, b| a.0.transactional_id.cmp(&b.0.transactional_id));
                TxnReply::List(all)
            }
            TxnCall::Describe(ids) => TxnReply::Describe(
                ids.iter()
                    .map(|id| {
                        self.txns
                            .get(id)
                            .map(|t| (snapshot(id, t), running(t, now)))
                    })
                    .collect(),
            ),
        };
        if let Some(t) = changes
            .filter(|_| succeeded(&reply))
            .and_then(|id| self.txns.get_mut(&id))
        {
            if t.durable < t.version {
                t.held.push((t.version, reply_to, reply));
                return;
            }
        }
        self.replies.push_back((reply_to, reply));
    }

    /// The driver wrote (`ok`) or failed to write the [`TxnEffect::Persist`] of
    /// `transactional_id` at `version`. Once a version is durable, the calls that waited
    /// for it are answered and a decision's markers handed out. When the latest version
    /// failed, the calls waiting are answered COORDINATOR_NOT_AVAILABLE (Kafka's code for a
    /// failed write of its transaction log; the producer retries) and the state is
    /// persisted again after [`TxnConfig::marker_retry`]; a decided transaction's markers
    /// wait until it is durable.
    pub fn handle_persisted(
        &mut self,
        now: Instant,
        transactional_id: &str,
        version: u64,
        ok: bool,
    ) {
        let Some(t) = self.txns.get_mut(transactional_id) else {
            return;
        };
        if ok {
            t.durable = t.durable.max(version);
            if t.durable >= t.version {
                t.persist_retry = None;
            }
            let durable = t.durable;
            let (ready, held): (Vec<_>, Vec<_>) =
                t.held.drain(..).partition(|(v, ..)| *v <= durable);
            t.held = held;
            self.replies
                .extend(ready.into_iter().map(|(_, to, reply)| (to, reply)));
            if t.markers_after.is_some_and(|v| v <= durable) {
                t.markers_after = None;
                self.write_markers(transactional_id);
            }
        } else if version >= t.version {
            // Nothing handed out later covers it.
            tracing::warn!(
                transactional_id,
                "transaction state not persisted; will retry"
            );
            t.persist_retry = Some(now + self.config.marker_retry);
            let failed = t
                .held
                .drain(..)
                .map(|(_, to, reply)| (to, unavailable(reply)));
            self.replies.extend(failed);
            if t.markers_after.is_some() {
                let failed = t
                    .waiting
                    .drain(..)
                    .map(|to| (to, TxnReply::EndTxn(ErrorCode::COORDINATOR_NOT_AVAILABLE)));
                self.replies.extend(failed);
            }
        }
    }

    /// The next reply, with the token of the call it answers.
    pub fn poll_reply(&mut self) -> Option<(ReplyTo, TxnReply)> {
        self.replies.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_effect(&mut self) -> Option<TxnEffect> {
        self.effects.pop_front()
    }

    /// May `producer_id` at `epoch`, writing for `transactional_id`, write a transactional
    /// batch to `partition` now? Kafka's answer to the broker's verification (KIP-890 part
    /// 1), as the produce path reports it: NONE, INVALID_PRODUCER_ID_MAPPING (the
    /// transactional id is unknown or has another producer id), INVALID_PRODUCER_EPOCH (an
    /// older epoch: fenced or timed out), CONCURRENT_TRANSACTIONS (its transaction is
    /// completing), or INVALID_TXN_STATE (the partition was not added to an ongoing
    /// transaction).
    ///
    /// The write is checked against the transactional id the request names, not found
    /// from the producer id: a producer id alone may belong to another transactional id
    /// (one from before a restart, or of another principal), whose transaction the write
    /// must not join.
    #[must_use]
    pub fn verify_write(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &TopicPartition,
    ) -> ErrorCode {
        let Some(t) = self
            .txns
            .get(transactional_id)
            .filter(|t| t.producer_id == producer_id)
        else {
            return ErrorCode::INVALID_PRODUCER_ID_MAPPING;
        };
        if t.epoch != epoch {
            ErrorCode::INVALID_PRODUCER_EPOCH
        } else if t.state.preparing() {
            ErrorCode::CONCURRENT_TRANSACTIONS
        } else if t.state == TxnState::Ongoing
            && t.partitions.get(partition).is_some_and(|&v| v <= t.durable)
        {
            ErrorCode::NONE
        } else {
            ErrorCode::INVALID_TXN_STATE
        }
    }

    /// The driver wrote the markers handed out for this transactional id, producer id and
    /// epoch to the partitions `written`, and failed elsewhere (reported next with
    /// [`Self::handle_markers`]): the retry writes only the others.
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        written: &[TopicPartition],
    ) {
        let Some(t) = self.txns.get_mut(transactional_id) else {
            return;
        };
        if t.writing && t.producer_id == producer_id && t.epoch == epoch {
            for tp in written {
                t.partitions.remove(tp);
            }
        }
    }

    /// The driver wrote (`ok`) or failed to write the markers handed out for this
    /// transactional id, producer id and epoch. On success the transaction completes and
    /// the EndTxn calls waiting are answered; on failure the markers are handed out again
    /// after [`TxnConfig::marker_retry`].
    pub fn handle_markers(
        &mut self,
        now: Instant,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        ok: bool,
    ) {
        let Some(t) = self.txns.get_mut(transactional_id) else {
            return;
        };
        if !t.writing || t.producer_id != producer_id || t.epoch != epoch {
            return;
        }
        t.writing = false;
        if !ok {
            t.retry_at = Some(now + self.config.marker_retry);
            // The decision is made and kept: the producer is told so, as Kafka answers once
            // its decision is logged; the next transaction waits (CONCURRENT_TRANSACTIONS).
            for to in t.waiting.drain(..) {
                self.replies
                    .push_back((to, TxnReply::EndTxn(ErrorCode::NONE)));
            }
            return;
        }
        let commit = t.state == TxnState::PrepareCommit;
        t.state = if commit {
            self.stats.committed += 1;
            TxnState::CompleteCommit
        } else {
            self.stats.aborted += 1;
            TxnState::CompleteAbort
        };
        t.partitions.clear();
        t.offsets.clear();
        t.updated = now;
        for to in t.waiting.drain(..) {
            self.replies
                .push_back((to, TxnReply::EndTxn(ErrorCode::NONE)));
        }
        self.persist(transactional_id);
    }

    /// When [`Self::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txns
            .values()
            .filter_map(|t| {
                let due = match t.state {
                    TxnState::Ongoing => t.started.map(|s| s + t.timeout),
                    TxnState::PrepareCommit | TxnState::PrepareAbort => t.retry_at,
                    _ => Some(t.updated + self.config.id_expiry),
                };
                match (due, t.persist_retry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Acts on what is due at `now`: aborts transactions past their timeout (fencing their
    /// producer, as Kafka does), hands out markers again, forgets idle transactional ids.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut abort = Vec::new();
        let mut retry = Vec::new();
        let mut persist = Vec::new();
        for (id, t) in &self.txns {
            if t.persist_retry.is_some_and(|r| r <= now) {
                persist.push(id.clone());
            }
            match t.state {
                TxnState::Ongoing if t.started.is_some_and(|s| s + t.timeout <= now) => {
                    abort.push(id.clone());
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort
                    if t.retry_at.is_some_and(|r| r <= now) =>
                {
                    retry.push(id.clone());
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if t.updated + self.config.id_expiry <= now =>
                {
                    expired.push(id.clone());
                }
                _ => {}
            }
        }
        for id in persist {
            if let Some(t) = self.txns.get_mut(&id) {
                t.persist_retry = None;
            }
            self.persist(&id);
        }
        for id in abort {
            tracing::info!(transactional_id = %id, "transaction timed out; aborting it");
            self.stats.timed_out += 1;
            self.fence_and_abort(now, &id);
        }
        for id in retry {
            if let Some(t) = self.txns.get_mut(&id) {
                t.retry_at = None;
            }
            self.write_markers(&id);
        }
        for id in expired {
            if self.txns.remove(&id).is_some() {
                self.version += 1;
                self.effects.push_back(TxnEffect::Persist {
                    transactional_id: id,
                    snapshot: None,
                    version: self.version,
                });
            }
        }
    }

    fn init_producer_id(
        &mut self,
        now: Instant,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: i64,
    ) -> Result<(i64, i16), ErrorCode> {
        if id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if timeout_ms <= 0 || timeout_of(timeout_ms) > self.config.max_timeout {
            return Err(ErrorCode::INVALID_TRANSACTION_TIMEOUT);
        }
        let Some(t) = self.txns.get_mut(id) else {
            self.txns.insert(
                id.to_owned(),
                Txn {
                    producer_id: fresh_id,
                    previous_producer_id: -1,
                    epoch: 0,
                    last_epoch: -1,
                    timeout: timeout_of(timeout_ms),
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeMap::new(),
                    offsets: BTreeMap::new(),
                    version: 0,
                    durable: 0,
                    held: Vec::new(),
                    markers_after: None,
                    persist_retry: None,
                    started: None,
                    updated: now,
                    waiting: Vec::new(),
                    writing: false,
                    retry_at: None,
                },
            );
            self.persist(id);
            return Ok((fresh_id, 0));
        };
        if let Some((pid, epoch)) = expected {
            // Kafka's rule: the producer's id must be the current one (its epoch is checked
            // below), or the previous one when that one's epochs ran out (a retry of the
            // call that rotated it).
            let valid =
                pid == t.producer_id || (pid == t.previous_producer_id && epoch >= LAST_EPOCH);
            if !valid {
                return Err(ErrorCode::PRODUCER_FENCED);
            }
        }
        match t.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Ongoing => {
                // The previous incarnation left a transaction open: fence it with a new
                // epoch and abort; the new producer retries until the abort completes.
                self.stats.fenced += 1;
                self.fence_and_abort(now, id);
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let expected_epoch = expected.map(|(_, e)| e);
                if t.epoch >= LAST_EPOCH && expected_epoch.is_none_or(|e| e == t.epoch) {
                    // With the producer's epoch given, a retry of this call (its answer
                    // lost) names the old id and epoch: the last epoch lets it have the
                    // same answer, as Kafka's prepareProducerIdRotation records it.
                    t.last_epoch = if expected_epoch.is_some() {
                        t.epoch
                    } else {
                        -1
                    };
                    t.previous_producer_id = t.producer_id;
                    t.producer_id = fresh_id;
                    t.epoch = 0;
                } else {
                    match expected_epoch {
                        None => {
                            t.epoch += 1;
                            t.last_epoch = -1;
                        }
                        Some(e) if e == t.epoch => {
                            t.last_epoch = t.epoch;
                            t.epoch += 1;
                        }
                        // A retry of a bump whose answer was lost (KIP-360): the same
                        // answer again.
                        Some(e) if e == t.last_epoch && e >= 0 => {}
                        Some(_) => return Err(ErrorCode::PRODUCER_FENCED),
                    }
                }
                t.timeout = timeout_of(timeout_ms);
                t.timeout_ms = timeout_ms;
                t.state = TxnState::Empty;
                t.started = None;
                t.updated = now;
                let answer = (t.producer_id, t.epoch);
                self.persist(id);
                Ok(answer)
            }
        }
    }

    /// Kafka's checks of a call of the producer's current transaction.
    fn current(&mut self, id: &str, producer_id: i64, epoch: i16) -> Result<&mut Txn, ErrorCode> {
        if id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        let t = self
            .txns
            .get_mut(id)
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        if t.producer_id != producer_id {
            return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        }
        if t.epoch != epoch {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
        Ok(t)
    }

    fn verify(&mut self, id: &str, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        let t = self.current(id, producer_id, epoch)?;
        if t.state.preparing() {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        Ok(())
    }

    fn add(
        &mut self,
        now: Instant,
        id: &str,
        producer_id: i64,
        epoch: i16,
        add: impl FnOnce(&mut Txn),
    ) -> Result<(), ErrorCode> {
        let t = self.current(id, producer_id, epoch)?;
        if t.state.preparing() {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        if t.state != TxnState::Ongoing {
            t.state = TxnState::Ongoing;
            t.started = Some(now);
        }
        t.updated = now;
        add(t);
        self.persist(id);
        Ok(())
    }

    fn commit_offsets(
        &mut self,
        now: Instant,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: String,
        offsets: Vec<GroupOffset>,
    ) -> ErrorCode {
        let t = match self.current(id, producer_id, epoch) {
            Ok(t) => t,
            Err(code) => return code,
        };
        if t.state.preparing() {
            return ErrorCode::CONCURRENT_TRANSACTIONS;
        }
        let Some(pending) = t
            .offsets
            .get_mut(&group)
            .filter(|_| t.state == TxnState::Ongoing)
        else {
            // AddOffsetsToTxn first: offsets outside the transaction would never commit.
            return ErrorCode::INVALID_TXN_STATE;
        };
        for o in offsets {
            pending.insert((o.topic, o.partition), o.committed);
        }
        t.updated = now;
        self.persist(id);
        ErrorCode::NONE
    }

    fn end(
        &mut self,
        now: Instant,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        let t = self.current(id, producer_id, epoch)?;
        match (t.state, commit) {
            (TxnState::Ongoing, _) => {
                t.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                t.updated = now;
                self.persist(id);
                self.markers_when_durable(id);
                Ok(())
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Err(ErrorCode::NONE)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            _ => Err(ErrorCode::INVALID_TXN_STATE),
        }
    }

    /// Bumps the epoch of an open transaction (its producer is fenced) and aborts it.
    fn fence_and_abort(&mut self, now: Instant, id: &str) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        t.epoch = t.epoch.saturating_add(1);
        t.last_epoch = -1;
        t.state = TxnState::PrepareAbort;
        t.updated = now;
        self.persist(id);
        self.markers_when_durable(id);
    }

    fn write_markers(&mut self, id: &str) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        let commit = t.state == TxnState::PrepareCommit;
        t.writing = true;
        self.effects.push_back(TxnEffect::WriteMarkers(Markers {
            transactional_id: id.to_owned(),
            producer_id: t.producer_id,
            epoch: t.epoch,
            commit,
            partitions: t.partitions.keys().cloned().collect(),
            offsets: if commit { offsets_of(t) } else { Vec::new() },
        }));
    }

    fn persist(&mut self, id: &str) {
        if let Some(t) = self.txns.get_mut(id) {
            self.version += 1;
            t.version = self.version;
            self.effects.push_back(TxnEffect::Persist {
                transactional_id: id.to_owned(),
                snapshot: Some(snapshot(id, t)),
                version: self.version,
            });
        }
    }

    /// Hands the markers of the decision just persisted out once it is durable.
    fn markers_when_durable(&mut self, id: &str) {
        if let Some(t) = self.txns.get_mut(id) {
            t.markers_after = Some(t.version);
        }
    }

    fn pending_offsets(&self, group: &str, only: Option<&[TopicPartition]>) -> Vec<TopicPartition> {
        let mut out = BTreeSet::new();
        for t in self.txns.values() {
            if let Some(pending) = t.offsets.get(group) {
                for tp in pending.keys() {
                    if only.is_none_or(|o| o.contains(tp)) {
                        out.insert(tp.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Whether `reply` says the call succeeded (and so changed the state).
fn succeeded(reply: &TxnReply) -> bool {
    match reply {
        TxnReply::InitProducerId(r) => r.is_ok(),
        TxnReply::AddPartitions(codes) => codes.contains(&ErrorCode::NONE),
        TxnReply::Code(c) => *c == ErrorCode::NONE,
        _ => false,
    }
}

/// The answer to a call whose state change the log failed to keep.
fn unavailable(reply: TxnReply) -> TxnReply {
    let code = ErrorCode::COORDINATOR_NOT_AVAILABLE;
    match reply {
        TxnReply::InitProducerId(_) => TxnReply::InitProducerId(Err(code)),
        TxnReply::AddPartitions(codes) => TxnReply::AddPartitions(vec![code; codes.len()]),
        TxnReply::Code(_) => TxnReply::Code(code),
        other => other,
    }
}

fn timeout_of(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn offsets_of(t: &Txn) -> Vec<(String, Vec<GroupOffset>)> {
    t.offsets
        .iter()
        .map(|(g, offsets)| {
            (
                g.clone(),
                offsets
                    .iter()
                    .map(|((topic, partition), c)| GroupOffset {
                        topic: topic.clone(),
                        partition: *partition,
                        committed: c.clone(),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// How long ago `t`'s current (or last) transaction started, at `now`.
fn running(t: &Txn, now: Instant) -> Option<Duration> {
    t.started.map(|s| now.saturating_duration_since(s))
}

fn snapshot(id: &str, t: &Txn) -> TxnSnapshot {
    TxnSnapshot {
        transactional_id: id.to_owned(),
        producer_id: t.producer_id,
        previous_producer_id: t.previous_producer_id,
        epoch: t.epoch,
        last_epoch: t.last_epoch,
        timeout_ms: t.timeout_ms,
        state: t.state,
        partitions: t.partitions.keys().cloned().collect(),
        offsets: offsets_of(t),
    }
}

#[cfg(test)]
mod tests;
