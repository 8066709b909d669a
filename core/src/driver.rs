//! Runtime-neutral glue between a [`Connection`], the [`Backend`] and the group and
//! transaction coordinators, shared by the runtime adapters so that they only move bytes and sleep.
//!
//! [`Shared::execute`] routes a connection's [`Work`]: store commands to the backend, group
//! calls to the one [`Groups`] of the gateway, transaction calls to its one [`Txns`]. Work
//! that completes synchronously is fed back at once; the rest is kept in [`PendingWork`] as
//! futures that need no particular executor. The adapter polls [`PendingWork::poll_ready`]
//! alongside its socket and timer, and sleeps no later than [`PendingWork::poll_timeout`].
//! Both coordinators are a [`Machine`] behind the same wrapper, [`Served`], whose timers one
//! task drives with [`Served::poll_timeout`], [`Served::changed`] and
//! [`Served::handle_timeout`]. A transactional append is checked with the transaction
//! coordinator before it reaches the backend (KIP-890 part 1), and [`drive_transactions`],
//! one task per gateway, writes the markers it decides and drives its timers;
//! [`drive_groups`], one task per gateway, keeps the group states the group coordinator
//! hands out (through the backend) and drives its timers.
//! [`Transmit`] gathers what a connection has to write into vectored writes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::backend::{
    Backend, BackendError, Command, Completion, Execution, KeepGroups, ProducerBatch,
};
use crate::group::{Coordinator, GroupCall, GroupReply, KeepGroup, ReplyTo};
use crate::protocol::error_code::ErrorCode;
use crate::txn::{
    Markers, TopicPartition, TxnCall, TxnConfig, TxnCoordinator, TxnEffect, TxnReply, TxnSnapshot,
};
use crate::work::{Outcome, Work, WorkId};
use crate::Connection;

/// What every connection of a gateway shares: the backend and the group coordinator.
pub struct Shared {
    backend: Arc<dyn Backend>,
    groups: Groups,
    txns: Txns,
    /// The SASL users whose SCRAM credentials follow the backend's.
    scram_users: Option<Arc<crate::sasl::Users>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The backend and a coordinator for the gateway's groups.
    #[must_use]
    pub fn new(backend: Arc<dyn Backend>, coordinator: Coordinator) -> Self {
        Self {
            backend,
            groups: Groups::new(coordinator),
            txns: Txns::new(TxnCoordinator::new(TxnConfig::default())),
            scram_users: None,
        }
    }

    /// Makes `users`' SCRAM credentials follow those the backend keeps, including other
    /// gateways' changes ([`drive_scram_credentials`]).
    #[must_use]
    pub fn with_scram_users(mut self, users: Arc<crate::sasl::Users>) -> Self {
        self.scram_users = Some(users);
        self
    }

    /// The transaction coordinator, whose markers and timers [`drive_transactions`] drives.
    #[must_use]
    pub fn txns(&self) -> &Txns {
        &self.txns
    }

    /// The group coordinator, whose timers the adapter drives.
    #[must_use]
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The backend, for what it reports about itself.
    #[must_use]
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Starts `work`: a group call on the coordinator, a store command on the backend.
    pub fn execute(&self, now: Instant, work: Work) -> Started {
        match work {
            Work::Group(call) => self.groups.call(now, call),
            Work::Txn(call) => self.txns.call(now, call),
            Work::TxnAppend {
                transactional_id,
                append:
                    Command::Append {
                        topic,
                        partition,
                        messages,
                        largest_batch,
                        producer: Some(producer),
                    },
            } if producer.transactional => {
                // Checked and handed to the backend under the coordinator's lock, so that no
                // marker of the transaction is handed over between the check and the
                // append: the backend lands the append before the marker or, should the
                // marker reach the partition first, refuses it (`Backend::execute`).
                self.txns.with(|coordinator| {
                    let code = coordinator.verify_write(
                        &transactional_id,
                        producer.producer_id,
                        producer.epoch,
                        &(topic.clone(), partition),
                    );
                    if code != ErrorCode::NONE {
                        return refused(
                            code,
                            format!(
                                "transactional write of producer {} epoch {} to {topic}-{partition} refused: {}",
                                producer.producer_id,
                                producer.epoch,
                                code.name()
                            ),
                        );
                    }
                    self.store(Command::Append {
                        topic,
                        partition,
                        messages,
                        largest_batch,
                        producer: Some(producer),
                    })
                })
            }
            // Transactional batches reach the store only through the check above.
            Work::TxnAppend { .. }
            | Work::Store(Command::Append {
                producer:
                    Some(ProducerBatch {
                        transactional: true,
                        ..
                    }),
                ..
            }) => refused(
                ErrorCode::INVALID_TXN_STATE,
                "transactional batches go with their transactional id".to_owned(),
            ),
            Work::Store(command) => self.store(command),
        }
    }

    fn store(&self, command: Command) -> Started {
        match self.backend.execute(command) {
            Execution::Done(c) => Started::Done(Outcome::Store(c)),
            Execution::Pending(f) => Started::Later(Later(Running::Store(f))),
        }
    }
}

fn refused(code: ErrorCode, message: String) -> Started {
    Started::Done(Outcome::Store(Completion::Append(Err(
        BackendError::Transaction { code, message },
    ))))
}

/// Work [`Shared::execute`] started: done at once, or to be polled to its outcome.
#[derive(Debug)]
pub enum Started {
    /// Done synchronously.
    Done(Outcome),
    /// Completes later.
    Later(Later),
}

/// Work that completes later: a future of its [`Outcome`] that needs no particular executor.
pub struct Later(Running);

enum Running {
    Store(Pin<Box<dyn Future<Output = Completion> + Send + 'static>>),
    Reply(Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>),
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Later(..)")
    }
}

impl Future for Later {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match &mut self.0 {
            Running::Store(f) => f.as_mut().poll(cx).map(Outcome::Store),
            Running::Reply(f) => f.as_mut().poll(cx),
        }
    }
}

/// A sans-IO coordinator that [`Served`] puts behind a lock: calls in, replies out (some
/// later than the call), and timers driven from outside.
pub trait Machine: Send + 'static {
    /// What a connection asks of it.
    type Call;
    /// What it answers.
    type Reply: Send + 'static;

    /// Takes `call`, made at `now`, to be answered to `reply_to`.
    fn handle(&mut self, now: Instant, reply_to: ReplyTo, call: Self::Call);
    /// The next reply ready to go out.
    fn poll_reply(&mut self) -> Option<(ReplyTo, Self::Reply)>;
    /// When [`Machine::handle_timeout`] is next due.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Acts on the deadlines at or before `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The connection's view of a reply.
    fn outcome(reply: Self::Reply) -> Outcome;
}

impl Machine for Coordinator {
    type Call = GroupCall;
    type Reply = GroupReply;

    fn handle(&mut self, now: Instant, reply_to: ReplyTo, call: GroupCall) {
        Coordinator::handle(self, now, reply_to, call);
    }
    fn poll_reply(&mut self) -> Option<(ReplyTo, GroupReply)> {
        Coordinator::poll_reply(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Coordinator::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Coordinator::handle_timeout(self, now);
    }
    fn outcome(reply: GroupReply) -> Outcome {
        Outcome::Group(reply)
    }
}

impl Machine for TxnCoordinator {
    type Call = TxnCall;
    type Reply = TxnReply;

    fn handle(&mut self, now: Instant, reply_to: ReplyTo, call: TxnCall) {
        TxnCoordinator::handle(self, now, reply_to, call);
    }
    fn poll_reply(&mut self) -> Option<(ReplyTo, TxnReply)> {
        TxnCoordinator::poll_reply(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        TxnCoordinator::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        TxnCoordinator::handle_timeout(self, now);
    }
    fn outcome(reply: TxnReply) -> Outcome {
        Outcome::Txn(reply)
    }
}

/// One [`Machine`] of the gateway behind a lock, shared by every connection: replies that
/// arrive later than their call are delivered as futures, and one task drives its timers
/// with [`Served::poll_timeout`], [`Served::changed`] and [`Served::handle_timeout`].
pub struct Served<M: Machine> {
    inner: Mutex<ServedInner<M>>,
    changed: event_listener::Event,
}

/// The gateway's group coordinator.
pub type Groups = Served<Coordinator>;

/// The gateway's transaction coordinator; EndTxn replies arrive once the markers are
/// written.
pub type Txns = Served<TxnCoordinator>;

struct ServedInner<M: Machine> {
    machine: M,
    next: u64,
    waiting: HashMap<u64, Arc<ReplySlot<M::Reply>>>,
}

struct ReplySlot<R>(Mutex<(Option<R>, Option<Waker>)>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take coordination down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M: Machine> std::fmt::Debug for Served<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

impl<M: Machine> ServedInner<M> {
    /// Hands out the machine's replies; returns the one for `mine`, if any.
    fn deliver(&mut self, mine: Option<u64>) -> Option<M::Reply> {
        let mut found = None;
        while let Some((ReplyTo(to), reply)) = self.machine.poll_reply() {
            if Some(to) == mine {
                found = Some(reply);
            } else if let Some(slot) = self.waiting.remove(&to) {
                let mut s = lock(&slot.0);
                s.0 = Some(reply);
                if let Some(w) = s.1.take() {
                    w.wake();
                }
            }
        }
        found
    }
}

impl<M: Machine> Served<M> {
    /// Wraps `machine`.
    #[must_use]
    pub fn new(machine: M) -> Self {
        Self {
            inner: Mutex::new(ServedInner {
                machine,
                next: 0,
                waiting: HashMap::new(),
            }),
            changed: event_listener::Event::new(),
        }
    }

    /// Makes a call at `now`: its reply at once, or a future for it.
    pub fn call(&self, now: Instant, call: M::Call) -> Started {
        let mut inner = lock(&self.inner);
        let id = inner.next;
        inner.next += 1;
        inner.machine.handle(now, ReplyTo(id), call);
        let execution = match inner.deliver(Some(id)) {
            Some(reply) => Started::Done(M::outcome(reply)),
            None => {
                let slot = Arc::new(ReplySlot(Mutex::new((None, None))));
                inner.waiting.insert(id, slot.clone());
                Started::Later(Later(Running::Reply(Box::pin(Answer::<M>(slot)))))
            }
        };
        drop(inner);
        // Effects to act on, or deadlines that moved.
        self.changed.notify(usize::MAX);
        execution
    }

    /// When [`Served::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        lock(&self.inner).machine.poll_timeout()
    }

    /// Completes when a call may have handed out effects or moved [`Served::poll_timeout`]
    /// earlier. Take it before reading either, so that no change is missed.
    #[must_use]
    pub fn changed(&self) -> event_listener::EventListener {
        self.changed.listen()
    }

    /// Acts on the deadlines at or before `now` and delivers what that answers.
    pub fn handle_timeout(&self, now: Instant) {
        self.with(|m| m.handle_timeout(now));
    }

    /// Runs `f` on the machine under its lock, then delivers the replies `f` produced.
    fn with<R>(&self, f: impl FnOnce(&mut M) -> R) -> R {
        let mut inner = lock(&self.inner);
        let r = f(&mut inner.machine);
        inner.deliver(None);
        r
    }
}

impl Groups {
    /// What the coordinator holds now and did so far.
    #[must_use]
    pub fn stats(&self) -> crate::group::GroupStats {
        self.with(|c| c.stats())
    }

    /// Every group the coordinator holds, described as DescribeGroups would, by name.
    #[must_use]
    pub fn describe_all(&self) -> Vec<crate::group::GroupDescription> {
        self.with(|c| c.describe_all())
    }

    /// The gateway is shutting down: calls still waiting are answered now (see
    /// [`Coordinator::shutdown`]).
    pub fn shutdown(&self) {
        self.with(Coordinator::shutdown);
    }
}

impl Groups {
    /// The group states the coordinator asks to keep, in order.
    fn take_keeps(&self) -> Vec<KeepGroup> {
        self.with(|c| std::iter::from_fn(|| c.poll_keep()).collect())
    }

    /// Reports whether the states handed out under `tokens` were kept, and delivers what
    /// that answers.
    fn kept(&self, now: Instant, tokens: &[u64], ok: bool) {
        self.with(|c| {
            for t in tokens {
                c.handle_kept(now, *t, ok);
            }
        });
    }
}

impl Txns {
    /// What the coordinator asks to be done, in order.
    fn take_effects(&self) -> Vec<TxnEffect> {
        self.with(|c| std::iter::from_fn(|| c.poll_effect()).collect())
    }

    /// Takes back the state a log of the coordinator kept (`TxnCoordinator::restore`), at
    /// start, before any call: what it hands out is taken by [`drive_transactions`].
    pub fn restore(&self, now: Instant, snapshots: Vec<TxnSnapshot>) {
        self.with(|c| c.restore(now, snapshots));
        self.changed.notify(usize::MAX);
    }

    /// Reports persisted (or failed) states and delivers what that answers.
    fn persisted(&self, now: Instant, written: &[(String, u64)], ok: bool) {
        self.with(|c| {
            for (id, version) in written {
                c.handle_persisted(now, id, *version, ok);
            }
        });
    }

    /// Reports written (or failed, `written` to some partitions) markers and delivers what
    /// that answers.
    fn markers_done(&self, now: Instant, m: &Markers, written: &[TopicPartition], ok: bool) {
        self.with(|c| {
            if !ok {
                c.markers_written(&m.transactional_id, m.producer_id, m.epoch, written);
            }
            c.handle_markers(now, &m.transactional_id, m.producer_id, m.epoch, ok);
        });
    }

    /// What the coordinator holds now and did so far.
    #[must_use]
    pub fn stats(&self) -> crate::txn::TxnStats {
        self.with(|c| c.stats())
    }
}

/// A reply that a [`Served`] machine delivers later, as the connection's [`Outcome`].
struct Answer<M: Machine>(Arc<ReplySlot<M::Reply>>);

impl<M: Machine> Future for Answer<M> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut s = lock(&self.0 .0);
        match s.0.take() {
            Some(reply) => Poll::Ready(M::outcome(reply)),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Runs one [`Execution`] to its completion.
async fn run(execution: Execution) -> Completion {
    match execution {
        Execution::Done(c) => c,
        Execution::Pending(f) => f.await,
    }
}

/// Writes a decided transaction's markers to each of its partitions and, on commit, the
/// offsets it committed; the partitions done, and whether all of that landed. A partition
/// or topic deleted since needs no marker.
async fn write_markers(backend: Arc<dyn Backend>, m: Markers) -> MarkersWritten {
    let mut ok = true;
    let mut written = Vec::with_capacity(m.partitions.len());
    for (topic, partition) in &m.partitions {
        let done = run(backend.execute(Command::WriteMarker {
            topic: topic.clone(),
            partition: *partition,
            producer_id: m.producer_id,
            epoch: m.epoch,
            commit: m.commit,
            coordinator_epoch: 0,
        }))
        .await;
        match done {
            Completion::WriteMarker(Ok(_))
            | Completion::WriteMarker(Err(
                BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. },
            )) => written.push((topic.clone(), *partition)),
            other => {
                tracing::warn!(transactional_id = %m.transactional_id, %topic, partition, ?other, "transaction marker not written; will retry");
                ok = false;
            }
        }
    }
    for (group, offsets) in &m.offsets {
        if offsets.is_empty() {
            continue;
        }
        let done = run(backend.execute(Command::CommitOffsets {
            group: group.clone(),
            offsets: offsets.clone(),
        }))
        .await;
        let failed = match &done {
            Completion::CommitOffsets(results) => results.iter().any(|r| {
                matches!(
                    r,
                    Err(e) if !matches!(e, BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. })
                )
            }),
            _ => true,
        };
        if failed {
            tracing::warn!(transactional_id = %m.transactional_id, %group, ?done, "transactional offsets not committed; will retry");
            ok = false;
        }
    }
    (m, written, ok)
}

/// A transaction's markers, the partitions they were written to, and whether all was.
type MarkersWritten = (Markers, Vec<TopicPartition>, bool);
type MarkerWrite = Pin<Box<dyn Future<Output = MarkersWritten> + Send>>;

/// The coordinator's state changes to keep, with the versions to report.
type Changes = Vec<(String, Option<TxnSnapshot>, u64)>;
type PersistWrite = Pin<Box<dyn Future<Output = (Vec<(String, u64)>, bool)> + Send>>;

/// Keeps `changes` in the store, in order; which ones, and whether they all were.
async fn persist(backend: Arc<dyn Backend>, changes: Changes) -> (Vec<(String, u64)>, bool) {
    let written = changes.iter().map(|(id, _, v)| (id.clone(), *v)).collect();
    let command = Command::PersistTxns {
        changes: changes.into_iter().map(|(id, s, _)| (id, s)).collect(),
    };
    match run(backend.execute(command)).await {
        Completion::PersistTxns(Ok(())) => (written, true),
        other => {
            tracing::warn!(?other, "transaction state not persisted; will retry");
            (written, false)
        }
    }
}

/// Drives the transaction coordinator for as long as it is polled: keeps its state changes
/// in the store (one batch at a time, in the order they were made, each batch all the
/// changes made while the one before was written), writes the markers it decides (several
/// transactions at once), reports both, and acts on its deadlines.
/// `now` reads the clock; `sleep_until` sleeps until a deadline (for ever for `None`).
/// The runtime adapters spawn it once per gateway.
pub async fn drive_transactions<S, F>(shared: Arc<Shared>, now: fn() -> Instant, sleep_until: S)
where
    S: Fn(Option<Instant>) -> F,
    F: Future<Output = ()>,
{
    let txns = shared.txns();
    let mut running: Vec<MarkerWrite> = Vec::new();
    let mut queued: Changes = Vec::new();
    let mut persisting: Option<PersistWrite> = None;
    loop {
        let changed = txns.changed();
        for effect in txns.take_effects() {
            match effect {
                TxnEffect::WriteMarkers(m) => {
                    running.push(Box::pin(write_markers(shared.backend.clone(), m)));
                }
                TxnEffect::Persist {
                    transactional_id,
                    snapshot,
                    version,
                } => queued.push((transactional_id, snapshot, version)),
            }
        }
        if persisting.is_none() && !queued.is_empty() {
            let batch = std::mem::take(&mut queued);
            persisting = Some(Box::pin(persist(shared.backend.clone(), batch)));
        }
        let deadline = txns.poll_timeout();
        let sleep = sleep_until(deadline);
        let mut sleep = std::pin::pin!(sleep);
        let mut changed = std::pin::pin!(changed);
        let (done, persisted) = std::future::poll_fn(|cx| {
            let mut done = Vec::new();
            running.retain_mut(|f| match f.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    done.push(r);
                    false
                }
                Poll::Pending => true,
            });
            let persisted = match persisting.as_mut().map(|f| f.as_mut().poll(cx)) {
                Some(Poll::Ready(r)) => {
                    persisting = None;
                    Some(r)
                }
                _ => None,
            };
            if !done.is_empty()
                || persisted.is_some()
                || changed.as_mut().poll(cx).is_ready()
                || sleep.as_mut().poll(cx).is_ready()
            {
                Poll::Ready((done, persisted))
            } else {
                Poll::Pending
            }
        })
        .await;
        let now = now();
        if let Some((written, ok)) = persisted {
            txns.persisted(now, &written, ok);
        }
        for (m, written, ok) in &done {
            txns.markers_done(now, m, written, *ok);
        }
        txns.handle_timeout(now);
    }
}

/// Keeps the SCRAM credentials of the users given to [`Shared::with_scram_users`] up to
/// date with those the backend keeps, asking it every [`crate::sasl::FOLLOW_INTERVAL`]
/// ([`crate::sasl::ScramFollower`]), so that a change made through another gateway on the
/// same backend takes effect here too. Returns at once without such users. `now` reads the
/// clock; `sleep_until` sleeps until a deadline. The runtime adapters spawn it once per
/// gateway.
pub async fn drive_scram_credentials<S, F>(
    shared: Arc<Shared>,
    now: fn() -> Instant,
    sleep_until: S,
) where
    S: Fn(Option<Instant>) -> F,
    F: Future<Output = ()>,
{
    let Some(users) = shared.scram_users.clone() else {
        return;
    };
    let mut follower = crate::sasl::ScramFollower::new(users, now(), crate::sasl::FOLLOW_INTERVAL);
    loop {
        sleep_until(follower.poll_timeout()).await;
        if let Some(command) = follower.handle_timeout(now()) {
            let completion = run(shared.backend.execute(command)).await;
            follower.handle_completion(now(), completion);
        }
    }
}

/// Drives the group coordinator: hands the group states it asks to keep to the backend
/// ([`Backend::keep_groups`], one write at a time, each group's latest state only), reports
/// them kept or not (the answers that wait for a write leave then), and acts on its
/// deadlines. `now` reads the clock; `sleep_until` sleeps until a deadline (for ever for
/// `None`). The runtime adapters spawn it once per gateway.
///
/// Once `stop` completes (the adapter completes it after [`Groups::shutdown`] and after its
/// connections have ended), it writes what is still queued or owed a retry and returns: a
/// group state handed out before the gateway stopped is not lost to the shutdown. The
/// adapter bounds how long it waits for that.
pub async fn drive_groups<S, F, T>(
    shared: Arc<Shared>,
    now: fn() -> Instant,
    sleep_until: S,
    stop: T,
) where
    S: Fn(Option<Instant>) -> F,
    F: Future<Output = ()>,
    T: Future<Output = ()>,
{
    let groups = shared.groups();
    let mut queued: Vec<KeepGroup> = Vec::new();
    let mut writing: Option<(Vec<u64>, KeepGroups)> = None;
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        let changed = groups.changed();
        queued.extend(groups.take_keeps());
        // A failed write may have sent a group back to its kept state: its later states,
        // handed out meanwhile, no longer count (their answers failed) and are not written.
        queued.retain(|k| groups.with(|c| c.is_in_flight(k.token)));
        if writing.is_none() && !queued.is_empty() {
            let tokens = queued.iter().map(|k| k.token).collect();
            // A later state of a group replaces an earlier one: only the last is written.
            let mut latest: Vec<(String, Option<Bytes>)> = Vec::new();
            for k in queued.drain(..).rev() {
                if !latest.iter().any(|(g, _)| *g == k.group) {
                    latest.push((k.group, k.state));
                }
            }
            latest.reverse();
            writing = Some((tokens, shared.backend.keep_groups(latest)));
        }
        if stopping && writing.is_none() && !groups.with(|c| c.is_unkept()) {
            tracing::debug!("every group state handed out is kept");
            return;
        }
        let deadline = groups.poll_timeout();
        let sleep = sleep_until(deadline);
        let mut sleep = std::pin::pin!(sleep);
        let mut changed = std::pin::pin!(changed);
        let written = std::future::poll_fn(|cx| {
            if let Some((_, f)) = &mut writing {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    let tokens = writing.take().map(|(t, _)| t).unwrap_or_default();
                    return Poll::Ready(Some((tokens, r)));
                }
            }
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                stopping = true;
                return Poll::Ready(None);
            }
            if changed.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await;
        let now = now();
        if let Some((tokens, result)) = written {
            if let Err(e) = &result {
                tracing::warn!(error = %e, groups = tokens.len(), "the groups' state could not be kept");
            }
            groups.kept(now, &tokens, result.is_ok());
        }
        groups.handle_timeout(now);
    }
}

/// The work of one connection that is still running.
#[derive(Default)]
pub struct PendingWork {
    pending: Vec<(WorkId, Option<Instant>, Later)>,
}

impl std::fmt::Debug for PendingWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingWork")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl PendingWork {
    /// Nothing running.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts all the work the connection has, feeding synchronous outcomes straight back
    /// (which may release more work, started too).
    pub fn start(&mut self, conn: &mut Connection, shared: &Shared, now: Instant) {
        while let Some((id, work)) = conn.poll_work() {
            let deadline = work.deadline();
            match shared.execute(now, work) {
                Started::Done(outcome) => conn.handle_outcome(now, id, outcome),
                Started::Later(f) => self.pending.push((id, deadline, f)),
            }
        }
    }

    /// Feeds the connection what `buf` holds and starts the work that yields, for as long
    /// as that makes progress: work that completes at once frees room for more.
    pub fn pump(
        &mut self,
        conn: &mut Connection,
        shared: &Shared,
        buf: &mut bytes::BytesMut,
        now: Instant,
    ) {
        loop {
            let before = buf.len();
            conn.handle_input(now, buf);
            self.start(conn, shared, now);
            if buf.len() == before || buf.is_empty() {
                break;
            }
        }
    }

    /// When the adapter must wake next for time's sake: the connection's deadline or
    /// running work's, whichever is first.
    #[must_use]
    pub fn next_deadline(&self, conn: &Connection) -> Option<Instant> {
        match (conn.poll_timeout(), self.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether anything is running.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Polls all running work; ready when at least one piece completed, with all that did.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Vec<(WorkId, Outcome)>> {
        let mut ready = Vec::new();
        self.pending
            .retain_mut(|(id, _, f)| match Pin::new(f).poll(cx) {
                Poll::Ready(c) => {
                    ready.push((*id, c));
                    false
                }
                Poll::Pending => true,
            });
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ready)
        }
    }

    /// The earliest deadline of running work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().filter_map(|(_, d, _)| *d).min()
    }

    /// Gives up on work past its deadline (watches), telling the connection.
    pub fn handle_timeout(&mut self, conn: &mut Connection, now: Instant) {
        let mut expired = Vec::new();
        self.pending.retain(|(id, d, _)| {
            let keep = d.is_none_or(|d| d > now);
            if !keep {
                expired.push(*id);
            }
            keep
        });
        for id in expired {
            conn.handle_outcome(now, id, Outcome::Store(Completion::Watch));
        }
    }

    /// Feeds outcomes to the connection.
    pub fn complete(
        conn: &mut Connection,
        now: Instant,
        ready: impl IntoIterator<Item = (WorkId, Outcome)>,
    ) {
        for (id, c) in ready {
            conn.handle_outcome(now, id, c);
        }
    }
}

/// Buffers added after what is here (an Iggy lane's frames, for one).
impl Extend<Bytes> for Transmit {
    fn extend<I: IntoIterator<Item = Bytes>>(&mut self, bufs: I) {
        for b in bufs {
            self.push(b);
        }
    }
}

/// Makes sure a connection's read buffer has at least `needed` bytes free after what it
/// holds; when it must grow, it gets `room` free (or `needed`, if more), as
/// [`Connection::read_capacity`] measures it.
///
/// Growing moves what the buffer holds (a partial frame) to a new buffer of its own.
/// `BytesMut::reserve` would instead grow the old allocation, once the frames split off it
/// are let go of, by a copy of every byte it held from its start: the frames already read
/// as well as the partial one, each copy into pages touched for the first time.
pub fn make_room(buf: &mut BytesMut, needed: usize, room: usize) {
    if buf.capacity() - buf.len() < needed {
        let mut grown = BytesMut::with_capacity(buf.len() + room.max(needed));
        grown.extend_from_slice(buf);
        *buf = grown;
    }
}

/// What a connection has to write, for vectored writes: a fetch response's long record
/// batches are buffers of their own, between the encoded bytes. The adapter calls
/// [`Transmit::fill`], then writes [`Transmit::slices`] and reports each write with
/// [`Transmit::advance`] until [`Transmit::is_empty`].
#[derive(Debug, Default)]
pub struct Transmit {
    bufs: VecDeque<Bytes>,
}

impl Transmit {
    /// Nothing to write.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes everything `conn` has to write, after what is still here.
    pub fn fill(&mut self, conn: &mut Connection) {
        while let Some(b) = conn.poll_transmit() {
            self.push(b);
        }
    }

    /// Adds `buf` after what is here.
    pub fn push(&mut self, buf: Bytes) {
        if !buf.is_empty() {
            self.bufs.push_back(buf);
        }
    }

    /// Whether everything was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// The buffers still to write, in order.
    #[must_use]
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.bufs.iter().map(|b| IoSlice::new(b)).collect()
    }

    /// Drops the first `n` bytes, which were written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            let step = n.min(front.len());
            front.advance(step);
            n -= step;
            if front.is_empty() {
                self.bufs.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{ConsumerHeartbeat, GroupConfig, TopicMetadata};

    #[test]
    fn make_room_moves_only_the_partial_frame_and_keeps_enough_room_as_it_is() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[1; 40]);
        let frame = buf.split_to(40).freeze();
        buf.extend_from_slice(&[2; 10]);
        drop(frame);
        make_room(&mut buf, 100, 1000);
        assert_eq!(&buf[..], &[2; 10]);
        assert_eq!(buf.capacity(), 1010);
        let at = buf.as_ptr();
        make_room(&mut buf, 1000, 5000);
        assert_eq!((buf.as_ptr(), buf.capacity()), (at, 1010));
        make_room(&mut buf, 2000, 10);
        assert_eq!(&buf[..], &[2; 10]);
        assert_eq!(buf.capacity(), 2010);
    }

    /// A backend that keeps group states in a list.
    #[derive(Default)]
    struct Keeper(Mutex<Vec<(String, Option<Bytes>)>>);

    impl Backend for Keeper {
        fn execute(&self, command: Command) -> Execution {
            Execution::Done(crate::backend::tests::succeed(&command))
        }

        fn keep_groups(&self, groups: Vec<(String, Option<Bytes>)>) -> KeepGroups {
            lock(&self.0).extend(groups);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    /// Polls `f` to its end, with nothing to wait for but the futures' own progress.
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                return r;
            }
        }
    }

    /// A group state handed out before the gateway stops is written before the group driver
    /// returns, and the answer that waited for it leaves.
    #[test]
    fn the_group_driver_writes_what_is_queued_before_it_stops() {
        let keeper = Arc::new(Keeper::default());
        let config = GroupConfig {
            keep_state: true,
            ..GroupConfig::default()
        };
        let shared = Arc::new(Shared::new(keeper.clone(), Coordinator::new(config, 1)));
        let join = shared.groups().call(
            Instant::now(),
            GroupCall::ConsumerHeartbeat(ConsumerHeartbeat {
                version: 1,
                group: "g".into(),
                member_id: "m".into(),
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                owned: Some(Vec::new()),
                topics: vec![TopicMetadata {
                    name: "t".into(),
                    id: crate::protocol::Uuid([1; 16]),
                    partitions: 2,
                }],
                ..ConsumerHeartbeat::default()
            }),
        );
        let Started::Later(answer) = join else {
            panic!("the join is answered once kept");
        };
        shared.groups().shutdown();
        block_on(drive_groups(
            shared.clone(),
            Instant::now,
            |_| std::future::ready(()),
            std::future::ready(()),
        ));
        let kept = lock(&keeper.0).clone();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, "g");
        assert!(kept[0].1.is_some());
        match block_on(answer) {
            Outcome::Group(GroupReply::ConsumerHeartbeat(r)) => {
                assert_eq!(r.error, ErrorCode::NONE);
                assert_eq!(r.member_epoch, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Partial writes move through the buffers in order, across their boundaries.
    #[test]
    fn transmit_advances_across_buffers() {
        let mut t = Transmit::new();
        t.bufs
            .extend([Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")]);
        t.advance(2);
        assert_eq!(
            t.slices().iter().map(|s| s.len()).collect::<Vec<_>>(),
            [1, 5]
        );
        t.advance(3);
        let left: Vec<u8> = t.slices().iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(left, b"fgh");
        t.advance(3);
        assert!(t.is_empty());
        t.advance(1);
        assert!(t.is_empty());
    }
}
