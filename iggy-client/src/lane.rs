//! Lanes: the queues between a backend and a pool of Iggy connections.
//!
//! Each lane is one Iggy connection, so everything queued on one lane reaches Iggy in queue
//! order, one request at a time (the session protocol is lockstep). A backend that sends
//! all of a partition's appends down one lane keeps them in order whatever the pool does.
//!
//! [`Lanes::call`] queues a request and returns a [`PendingCall`], a future that needs no
//! particular executor. A task per lane moves the bytes of a [`LaneDriver`] (the one loop
//! of [`crate::drive`], on any runtime). In this order, for as long as it runs:
//!
//! 1. Once [`LaneDriver::connect_at`] has come, connect, and report the outcome with
//!    [`LaneDriver::connected`] or [`LaneDriver::connect_failed`].
//! 2. Take a [`Lane::changed`] listener, then call [`LaneDriver::pump`]: it delivers
//!    replies and sends the next queued call.
//! 3. Write everything [`LaneDriver::poll_transmit`] gives, in order.
//! 4. Read into [`LaneDriver::input_buffer`] and call [`LaneDriver::handle_received`]; or,
//!    should the listener fire first, go back to 2; or, once [`LaneDriver::poll_timeout`]
//!    passes, call [`LaneDriver::handle_timeout`]. The end of the byte stream, or a failed
//!    read or write, is [`LaneDriver::handle_closed`].
//! 5. Without a session ([`LaneDriver::has_session`] is false) the connection is over: drop
//!    it and go back to 1.
//!
//! The driver logs in, sends the queued calls and delivers the replies; time comes in as an
//! argument. [`Lanes::stats`] counts what the lanes did, for an adapter to report.
//!
//! A call may also be queued after a call on another lane ([`Lanes::call_after`]): it is
//! sent only once that call has its reply, or was dropped unsent. A backend moves a
//! partition to another lane this way without letting its appends overtake each other.
//! [`PendingCall::timed`] says how long Iggy took to answer, from the request's write to its
//! reply, which is what a backend compares lanes by.
//!
//! Plain appends ([`Lanes::append_after`]) queued one behind another for the same partition
//! go to Iggy as one request when the first of them is sent ([`crate::merge`] gives the
//! rules: queue order kept, calls dropped unsent never merged, every merged call gets the
//! request's outcome).
//!
//! A partition's write may come with a [`Reroute`]: when a node does not admit it (in a
//! cluster, the node is not the partition's primary), the driver hands it to that as the
//! refusal arrives, which queues it again on another lane; only once that gives up does
//! the caller get the refusal. The calls of one refused request are handed over in their
//! order, and no caller's future has to be polled for the others to be sent again. A call
//! sent again is queued ahead of the calls with the same [`Reroute`] handed over after it,
//! and a call that waited for its refused send goes ahead only once it is queued again.
//!
//! Failure rules: a call whose future was dropped before it was sent is never sent; a call in
//! flight when its connection fails gets [`Failure::Lost`] (it may or may not have been
//! applied; nothing is acknowledged that Iggy did not acknowledge); while a lane has no
//! connection (between a failed attempt and the next), calls fail at once with
//! [`Failure::Lost`] so that Kafka clients get a retriable error instead of waiting.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use iggy_binary_protocol::codes::{GET_CLUSTER_METADATA_CODE, SEND_MESSAGES_CODE};
use iggy_binary_protocol::consensus::Operation;
use iggy_binary_protocol::responses::system::get_cluster_metadata::ClusterMetadataResponse;
use iggy_binary_protocol::WireDecode;

use crate::merge::{self, MergeLimits};
use crate::nodes::{Nodes, Placement};
use crate::session::{Event, Failure, Session, SessionConfig, SessionError};
use crate::sync::lock;

/// The first pause after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pause between asks for the cluster's primary while it has none (an election).
pub const LEADER_POLL: Duration = Duration::from_millis(250);
/// How long a lane waits for an election to name a primary before it serves anyway.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);
/// Moves to another node in a row, after logins that named it primary, before a lane stays
/// where it is (two nodes each naming the other would otherwise bounce it for ever).
const MAX_REDIRECTS: u32 = 3;

#[derive(Default)]
struct SlotState {
    /// The reply, until the caller takes it.
    result: Option<Result<Bytes, Failure>>,
    /// Set with the result, and kept after it is taken.
    done: bool,
    /// From the request's write to its reply.
    service: Option<Duration>,
    /// The latest poll's: each poll replaces the one before, so however often a waiting
    /// call is polled it keeps one.
    waker: Option<Waker>,
    /// The lanes whose next call waits for this one, each once (a lane looking again adds
    /// nothing): at most one entry per lane. Weak: the lanes hold the call queued, and
    /// with it this slot, so a strong reference would keep both alive for ever once the
    /// lanes were let go of with the call still queued.
    then: Vec<(Weak<Lanes>, usize)>,
    /// Times the call was sent again elsewhere after a node did not admit it: a call that
    /// waits for it waits for one send only ([`Predecessor`]).
    attempt: u32,
    /// The lane it is queued on (or was answered on).
    lane: usize,
    /// It went to Iggy in another call's request ([`crate::merge`]).
    rider: bool,
    /// The lane's logins when it was answered ([`Lane::generation`]).
    generation: u64,
}

/// Where a partition's write goes when a node does not admit it (Iggy's answer when the
/// node is not the partition's primary), given with the write ([`Lanes::append_after`],
/// [`Lanes::call_after`]).
///
/// The lane's driver calls it, in request order, for each write of a request the node
/// refused, as soon as the refusal arrives: the writes are sent again without waiting for
/// their callers (whose futures may not be polled for a while), so that nothing refused
/// with them, or queued behind them, waits for a caller, and their order is kept.
pub trait Reroute: Send + Sync {
    /// `write`, refused on lane `refused`, is to be sent again: queue it with
    /// [`Resend::queue`] on the lane to send it on, or drop it to give its caller the
    /// refusal. Called without any lane's lock held.
    fn reroute(&self, lanes: &Lanes, refused: usize, write: Resend<'_>);
}

/// A refused write being sent again ([`Reroute`]); dropped unqueued, its caller gets the
/// refusal.
pub struct Resend<'a> {
    lanes: &'a Lanes,
    call: Option<Call>,
}

impl Resend<'_> {
    /// The write's coming send, as a call that another may wait for
    /// ([`Lanes::call_after`]); a call that waited for the refused send stops waiting once
    /// the write is queued again ([`Self::queue`]).
    #[must_use]
    pub fn predecessor(&self) -> Predecessor {
        self.call.as_ref().map_or_else(
            || Predecessor(Weak::new(), 0),
            |c| {
                let p = c.slot.predecessor();
                Predecessor(p.0, p.1.wrapping_add(1))
            },
        )
    }

    /// Queues the write on lane `index`, after `after`, as [`Lanes::call_after`] would,
    /// except that it goes ahead of the writes with the same [`Reroute`] handed over after
    /// it and still queued there: a partition's writes refused later than others are sent
    /// in the order they were handed over all the same. Only then do the calls that waited
    /// for the refused send go ahead, so that none of them is sent before it is queued.
    pub fn queue(mut self, index: usize, after: Option<Predecessor>) {
        if let Some(mut call) = self.call.take() {
            call.after = after;
            call.moves += 1;
            let slot = Arc::clone(&call.slot);
            self.lanes.push_at(index, call, true);
            slot.release();
        }
    }
}

impl Drop for Resend<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.slot.fill(Err(Failure::NotAdmitted), None);
        }
    }
}

impl std::fmt::Debug for Resend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resend").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot(Mutex<SlotState>);

impl Slot {
    fn predecessor(self: &Arc<Self>) -> Predecessor {
        Predecessor(Arc::downgrade(self), lock(&self.0).attempt)
    }

    /// The call is to be sent again: the calls waiting for this send of it go ahead.
    fn release(&self) {
        let then = {
            let mut s = lock(&self.0);
            s.attempt = s.attempt.wrapping_add(1);
            std::mem::take(&mut s.then)
        };
        wake_lanes(then);
    }

    fn fill(&self, result: Result<Bytes, Failure>, service: Option<Duration>) {
        let (waker, then) = {
            let mut s = lock(&self.0);
            s.result = Some(result);
            s.done = true;
            s.service = service;
            (s.waker.take(), std::mem::take(&mut s.then))
        };
        if let Some(w) = waker {
            w.wake();
        }
        wake_lanes(then);
    }
}

/// Has the lanes that wait for a call look at their queues again (none, for lanes let go
/// of).
fn wake_lanes(then: Vec<(Weak<Lanes>, usize)>) {
    for (lanes, index) in then {
        if let Some(lanes) = lanes.upgrade() {
            lanes.lane(index).changed.notify(usize::MAX);
        }
    }
}

impl Drop for Slot {
    /// A call dropped unsent holds up nobody: the lane waiting for it looks again.
    fn drop(&mut self) {
        let state = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        wake_lanes(std::mem::take(&mut state.then));
    }
}

/// The reply to a queued call.
#[must_use = "a call whose future is dropped before it is sent is not sent"]
pub struct PendingCall(Arc<Slot>);

impl PendingCall {
    /// The reply, with how long Iggy took to give it from the request's write (`None` for a
    /// call that failed without an answer).
    pub async fn timed(self) -> (Result<Bytes, Failure>, Option<Duration>) {
        let (result, service, _) = self.timed_on().await;
        (result, service)
    }

    /// [`Self::timed`], with where the answer came from.
    pub async fn timed_on(mut self) -> (Result<Bytes, Failure>, Option<Duration>, Answered) {
        let result = (&mut self).await;
        let s = lock(&self.0 .0);
        let answered = Answered {
            lane: s.lane,
            merged: s.rider,
            generation: s.generation,
        };
        (result, s.service, answered)
    }

    /// A handle for queueing a call on another lane after this one ([`Lanes::call_after`]).
    #[must_use]
    pub fn predecessor(&self) -> Predecessor {
        self.0.predecessor()
    }
}

/// Where a call's answer came from ([`PendingCall::timed_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answered {
    /// The lane that gave it (the call may have been sent again on another lane after a
    /// refusal, see [`Reroute`]).
    pub lane: usize,
    /// Whether the call went to Iggy in another call's request ([`crate::merge`]): the
    /// request's service time is the first call's, and a measure of the lane once, not
    /// once per call.
    pub merged: bool,
    /// The lane's logins when it answered ([`Lane::generation`]): while the lane's
    /// generation is the same, its calls go to the session, and so the node, that gave
    /// this answer.
    pub generation: u64,
}

/// A call that another must wait for ([`PendingCall::predecessor`]): one send of it, until
/// it has its reply, or a node refused it unapplied and it is sent again ([`Reroute`]). It
/// holds the call only weakly: a call dropped unsent holds nobody up.
#[derive(Debug, Clone)]
pub struct Predecessor(Weak<Slot>, u32);

impl Predecessor {
    /// Whether `other` is a send of the same call.
    #[must_use]
    pub fn is(&self, other: &Predecessor) -> bool {
        Weak::ptr_eq(&self.0, &other.0)
    }

    /// Whether the call is over, whichever send of it that took: it has its outcome, or
    /// its caller let go of it.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.0.upgrade().is_none_or(|slot| lock(&slot.0).done)
    }

    /// The call, while this send of it is still to be answered.
    fn pending(&self) -> Option<Arc<Slot>> {
        self.0
            .upgrade()
            .filter(|slot| lock(&slot.0).attempt == self.1)
    }
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingCall")
    }
}

impl Future for PendingCall {
    type Output = Result<Bytes, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.0 .0);
        if s.result.is_none() {
            s.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

struct Call {
    code: u32,
    payload: Bytes,
    slot: Arc<Slot>,
    /// Sent even though nobody waits for the reply.
    detached: bool,
    /// Sent only once this call has its reply.
    after: Option<Predecessor>,
    /// A plain append, which may go in one request with those queued behind it.
    merge: Option<merge::Append>,
    /// Where it goes should a node not admit it; without, its caller gets the refusal.
    reroute: Option<Arc<dyn Reroute>>,
    /// Times it was sent again after a refusal.
    moves: usize,
    /// When it was handed over, among every call of the process: a write sent again goes
    /// ahead of those with the same [`Reroute`] handed over after it.
    order: u64,
}

/// The next call's [`Call::order`].
static NEXT_ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Call {
    fn new(code: u32, payload: Bytes) -> Self {
        Self {
            code,
            payload,
            slot: Arc::default(),
            detached: false,
            after: None,
            merge: None,
            reroute: None,
            moves: 0,
            order: NEXT_ORDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether nobody waits for the call any more (it is then never sent).
    fn abandoned(&self) -> bool {
        !self.detached && Arc::strong_count(&self.slot) == 1
    }

    /// Whether the call must still wait for its predecessor on another lane.
    fn waits(&self) -> bool {
        self.after
            .as_ref()
            .and_then(Predecessor::pending)
            .is_some_and(|before| !lock(&before.0).done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Connecting or logging in: calls wait.
    Connecting,
    /// Logged in.
    Up,
    /// The last attempt failed; calls fail at once until the next one.
    Down,
}

struct LaneState {
    calls: VecDeque<Call>,
    link: Link,
    last_error: Option<SessionError>,
    /// Logins so far: a new session may be served by another part of the server.
    generation: u64,
    stats: LaneStats,
}

/// Upper bounds of the service-time buckets of [`CommandStats`], in seconds (the last
/// bucket is unbounded).
pub const SERVICE_BOUNDS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// One Iggy command's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandStats {
    /// Calls Iggy answered, with a reply or with an error code.
    pub answered: u64,
    /// Of those, the ones Iggy refused.
    pub refused: u64,
    /// Calls that failed without an answer.
    pub lost: u64,
    /// Answered calls per service-time bucket ([`SERVICE_BOUNDS`]; not cumulative).
    pub buckets: [u64; SERVICE_BOUNDS.len() + 1],
    /// The answered calls' service times added up.
    pub service_time: Duration,
}

impl CommandStats {
    fn add(&mut self, other: &Self) {
        self.answered += other.answered;
        self.refused += other.refused;
        self.lost += other.lost;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.service_time += other.service_time;
    }
}

/// What lanes did since they were made: plain counters, for an adapter to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneStats {
    /// Calls Iggy answered, with a reply or with an error code.
    pub answered: u64,
    /// Of those, the ones Iggy refused with an error code.
    pub refused: u64,
    /// Calls that failed without an answer: their connection was lost or down.
    pub lost: u64,
    /// From each answered call's write to its reply, added up (the mean is this divided
    /// by `answered`).
    pub service_time: Duration,
    /// The longest of those.
    pub slowest: Duration,
    /// Requests that carried several plain appends ([`crate::merge`]); each counts once
    /// in `answered`, `refused` or `lost`.
    pub merged: u64,
    /// Plain appends that went to Iggy in another's request: the requests merging saved.
    pub merged_calls: u64,
    /// Sessions logged in; every one after a lane's first is a reconnection.
    pub logins: u64,
    /// Connection attempts that failed before a session was up.
    pub connect_failures: u64,
    /// Lanes logged in now.
    pub up: u64,
    /// The same per Iggy command code, with service-time buckets.
    pub commands: Vec<(u32, CommandStats)>,
}

impl LaneStats {
    fn add(&mut self, other: &Self) {
        self.answered += other.answered;
        self.refused += other.refused;
        self.lost += other.lost;
        self.service_time += other.service_time;
        self.slowest = self.slowest.max(other.slowest);
        self.merged += other.merged;
        self.merged_calls += other.merged_calls;
        self.logins += other.logins;
        self.connect_failures += other.connect_failures;
        self.up += other.up;
        for (code, c) in &other.commands {
            self.command(*code).add(c);
        }
    }

    fn command(&mut self, code: u32) -> &mut CommandStats {
        let i = match self.commands.iter().position(|(c, _)| *c == code) {
            Some(i) => i,
            None => {
                self.commands.push((code, CommandStats::default()));
                self.commands.len() - 1
            }
        };
        &mut self.commands[i].1
    }
}

/// One Iggy connection's queue.
pub struct Lane {
    state: Mutex<LaneState>,
    changed: event_listener::Event,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

impl Lane {
    /// Puts calls whose request was not applied back at the front of the queue, in their
    /// order, to be sent again on the next session.
    fn requeue(&self, calls: Vec<Call>) {
        let mut st = lock(&self.state);
        for call in calls.into_iter().rev() {
            st.calls.push_front(call);
        }
        drop(st);
        self.changed.notify(usize::MAX);
    }

    fn new() -> Self {
        Self {
            state: Mutex::new(LaneState {
                calls: VecDeque::new(),
                link: Link::Connecting,
                last_error: None,
                generation: 0,
                stats: LaneStats::default(),
            }),
            changed: event_listener::Event::new(),
        }
    }

    /// Resolves when calls were queued since it was created; create it before looking.
    pub fn changed(&self) -> event_listener::EventListener {
        self.changed.listen()
    }

    /// Queues `call` at the end, or fails it at once while the lane is down; a write sent
    /// again ([`Resend::queue`], `in_order`) goes ahead of the first queued call with the
    /// same [`Reroute`] that was handed over after it.
    fn push(&self, call: Call, in_order: bool) {
        let mut st = lock(&self.state);
        if st.link == Link::Down {
            let error = st.last_error.clone().unwrap_or(SessionError::Closed);
            st.stats.lost += 1;
            drop(st);
            call.slot.fill(Err(Failure::Lost(error)), None);
            return;
        }
        let same = |c: &Call| match (&c.reroute, &call.reroute) {
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        };
        let at = in_order
            .then(|| {
                st.calls
                    .iter()
                    .position(|c| same(c) && c.order > call.order)
            })
            .flatten()
            .unwrap_or(st.calls.len());
        st.calls.insert(at, call);
        drop(st);
        self.changed.notify(usize::MAX);
    }

    fn set_link(&self, link: Link, error: Option<SessionError>) {
        let failed: Vec<Call> = {
            let mut st = lock(&self.state);
            st.link = link;
            if link == Link::Up {
                st.generation += 1;
                st.stats.logins += 1;
            }
            if error.is_some() {
                st.last_error = error.clone();
            }
            if link == Link::Down {
                let failed: Vec<Call> = st.calls.drain(..).collect();
                st.stats.lost += failed.len() as u64;
                failed
            } else {
                Vec::new()
            }
        };
        let error = error.unwrap_or(SessionError::Closed);
        for call in failed {
            call.slot.fill(Err(Failure::Lost(error.clone())), None);
        }
    }

    /// The next call whose caller still waits for it, unless it must wait for a call on
    /// another lane: then `lanes`' lane `index` (this one) is told when that call is done.
    fn next_call(&self, lanes: &Arc<Lanes>, index: usize) -> Option<Call> {
        let mut st = lock(&self.state);
        loop {
            let call = st.calls.front()?;
            if call.abandoned() {
                st.calls.pop_front();
                continue;
            }
            if let Some((before, attempt)) = call
                .after
                .as_ref()
                .and_then(|p| Some((p.0.upgrade()?, p.1)))
            {
                let mut b = lock(&before.0);
                // Checked under the lock that a refusal takes to let the waiters go.
                if !b.done && b.attempt == attempt {
                    if !b.then.iter().any(|(_, i)| *i == index) {
                        b.then.push((Arc::downgrade(lanes), index));
                    }
                    return None;
                }
            }
            return st.calls.pop_front();
        }
    }

    /// Merges the plain appends at the front of the queue into `prepared`, or adds those
    /// queued since to it, so that they are ready to go as one request ([`crate::merge`]).
    /// A `prepared` the queue no longer starts with is dropped first.
    fn prepare(&self, limits: &MergeLimits, prepared: &mut Option<merge::Prepared>) {
        if !limits.enabled() {
            return;
        }
        let st = lock(&self.state);
        let mut held = prepared
            .take()
            .filter(|p| starts_with(&st.calls, p.orders()));
        let mut group = None;
        let mut fresh = Vec::new();
        for call in st
            .calls
            .iter()
            .skip(held.as_ref().map_or(0, merge::Prepared::len))
        {
            let Some(a) = call.merge.as_ref() else {
                break;
            };
            if call.abandoned() || call.waits() {
                break;
            }
            let admitted = match (&mut held, &mut group) {
                (Some(p), _) => p.admit(&call.payload, a, limits),
                (None, None) => {
                    group = Some(merge::Group::new(&call.payload, a));
                    true
                }
                (None, Some(g)) => g.admit(&call.payload, a, limits),
            };
            if !admitted {
                break;
            }
            fresh.push((call.payload.clone(), a.clone(), call.order));
        }
        drop(st);
        // The copying and checksumming, outside the lock.
        *prepared = match (held, group) {
            (Some(mut p), _) => {
                for (body, a, order) in &fresh {
                    p.push(body, a, *order);
                }
                Some(p)
            }
            (None, Some(g)) if fresh.len() > 1 => Some(merge::Prepared::new(g, &fresh, limits)),
            _ => None,
        };
    }

    /// The next request to send: the next call, and, when that is a plain append, the plain
    /// appends to the same partition queued right behind it that fit in one request with
    /// it ([`crate::merge`]): `prepared`'s merge of them if the queue still starts with
    /// its calls, none dropped or waiting, or else merged now.
    fn next_request(
        &self,
        lanes: &Arc<Lanes>,
        index: usize,
        prepared: Option<merge::Prepared>,
    ) -> Option<(Call, Vec<Call>, Option<Bytes>)> {
        let first = self.next_call(lanes, index)?;
        let limits = &lanes.merge;
        let Some(fa) = first.merge.as_ref().filter(|_| limits.enabled()) else {
            return Some((first, Vec::new(), None));
        };
        if let Some(p) = prepared.filter(|p| p.orders().first() == Some(&first.order)) {
            let mut st = lock(&self.state);
            let rest = &p.orders()[1..];
            if starts_with(&st.calls, rest) {
                let riders = st.calls.drain(..rest.len()).collect();
                drop(st);
                return Some((first, riders, Some(p.finish())));
            }
        }
        let mut group = merge::Group::new(&first.payload, fa);
        let mut riders = Vec::new();
        let mut st = lock(&self.state);
        while let Some(next) = st.calls.front() {
            if next.abandoned() {
                // Never sent, so never merged either.
                st.calls.pop_front();
                continue;
            }
            let fits = next
                .merge
                .as_ref()
                .is_some_and(|a| !next.waits() && group.admit(&next.payload, a, limits));
            if !fits {
                break;
            }
            riders.extend(st.calls.pop_front());
        }
        drop(st);
        if riders.is_empty() {
            return Some((first, riders, None));
        }
        let parts: Vec<(&Bytes, &merge::Append)> = std::iter::once(&first)
            .chain(&riders)
            .filter_map(|c| Some((&c.payload, c.merge.as_ref()?)))
            .collect();
        let body = merge::merge(&parts);
        Some((first, riders, Some(body)))
    }

    /// How many times the lane has logged in (a new session may be served by another part
    /// of the server, so what was measured of the last one no longer holds), or `None` while
    /// it is down: its last connection attempt failed, and calls on it fail at once.
    #[must_use]
    pub fn generation(&self) -> Option<u64> {
        let st = lock(&self.state);
        (st.link != Link::Down).then_some(st.generation)
    }

    /// Whether the lane is logged in to Iggy.
    #[must_use]
    pub fn is_up(&self) -> bool {
        lock(&self.state).link == Link::Up
    }

    /// What this lane did so far.
    #[must_use]
    pub fn stats(&self) -> LaneStats {
        let st = lock(&self.state);
        LaneStats {
            up: u64::from(st.link == Link::Up),
            ..st.stats.clone()
        }
    }

    /// A request in flight ended: answered after `service` (with a refusal or not), or
    /// lost; `riders` calls went in it besides its first.
    fn finished(
        &self,
        code: u32,
        outcome: &Result<Bytes, Failure>,
        service: Option<Duration>,
        riders: usize,
    ) {
        let mut st = lock(&self.state);
        let stats = &mut st.stats;
        if riders > 0 {
            stats.merged += 1;
            stats.merged_calls += riders as u64;
        }
        match (outcome, service) {
            (Err(Failure::Lost(_)), _) | (_, None) => {
                stats.lost += 1;
                stats.command(code).lost += 1;
            }
            (outcome, Some(service)) => {
                let refused = u64::from(matches!(
                    outcome,
                    Err(Failure::Status(_) | Failure::NotAdmitted)
                ));
                stats.answered += 1;
                stats.refused += refused;
                stats.service_time += service;
                stats.slowest = stats.slowest.max(service);
                let command = stats.command(code);
                command.answered += 1;
                command.refused += refused;
                command.service_time += service;
                let secs = service.as_secs_f64();
                let bucket = SERVICE_BOUNDS
                    .iter()
                    .position(|b| secs <= *b)
                    .unwrap_or(SERVICE_BOUNDS.len());
                command.buckets[bucket] += 1;
            }
        }
    }

    fn connect_failed(&self) {
        lock(&self.state).stats.connect_failures += 1;
    }
}

/// Whether `calls` starts with the calls `orders` names ([`Call::order`]), in that order,
/// each still awaited and none waiting for a call on another lane: a merge prepared of
/// them may still be sent.
fn starts_with(calls: &VecDeque<Call>, orders: &[u64]) -> bool {
    calls.len() >= orders.len()
        && calls
            .iter()
            .zip(orders)
            .all(|(c, order)| c.order == *order && !c.abandoned() && !c.waits())
}

/// The lanes of a pool, and the nodes they connect to, in groups of the same size.
///
/// Group 0 follows the cluster's primary (every lane of a single server's pool is in it):
/// metadata requests go there. In a cluster whose nodes were all given, each node also
/// has a group of lanes that stay on it: a partition's primary is not always the cluster's
/// (each partition replicates on its own, and Iggy reports only the cluster's primary), so
/// a partition whose writes the primary refuses is moved by the caller to the lanes of
/// another node ([`Lanes::group`]).
#[derive(Debug)]
pub struct Lanes {
    lanes: Vec<Lane>,
    nodes: Nodes,
    per_group: usize,
    /// The node each group after the first stays on.
    pinned: Vec<String>,
    /// TLS on every connection, when the nodes serve it.
    tls: Option<iggy_kafka_tls::ClientTls>,
    logins: crate::login::LoginChecks,
    /// How many plain appends one request may carry.
    merge: MergeLimits,
}

impl Lanes {
    /// `per_group` lanes (at least one) following the primary of `nodes`; and, when
    /// `nodes` holds several addresses, as many on each of them.
    #[must_use]
    pub fn new(per_group: usize, nodes: Nodes) -> Self {
        let per_group = per_group.max(1);
        let addresses = nodes.addresses();
        let pinned = if addresses.len() > 1 {
            addresses
        } else {
            Vec::new()
        };
        Self {
            lanes: (0..per_group * (1 + pinned.len()))
                .map(|_| Lane::new())
                .collect(),
            nodes,
            per_group,
            pinned,
            tls: None,
            logins: crate::login::LoginChecks::default(),
            merge: MergeLimits::default(),
        }
    }

    /// The same lanes, merging plain appends within `limits` ([`MergeLimits::OFF`]: never).
    #[must_use]
    pub fn with_merge(mut self, limits: MergeLimits) -> Self {
        self.merge = limits;
        self
    }

    /// The queue of login checks ([`crate::login`]), which the tasks of
    /// [`crate::drive::lane_tasks`] run.
    #[must_use]
    pub fn logins(&self) -> &crate::login::LoginChecks {
        &self.logins
    }

    /// The same lanes, connecting to every node over TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: iggy_kafka_tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS every connection uses, if any.
    #[must_use]
    pub fn tls(&self) -> Option<&iggy_kafka_tls::ClientTls> {
        self.tls.as_ref()
    }

    /// How many groups of lanes there are: one following the primary, and one per node a
    /// cluster's pool was given.
    #[must_use]
    pub fn groups(&self) -> usize {
        1 + self.pinned.len()
    }

    /// The lanes of group `g` (modulo the count).
    #[must_use]
    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        let start = (g % self.groups()) * self.per_group;
        start..start + self.per_group
    }

    /// The node group `g`'s lanes stay on; `None` for group 0, which follows the primary.
    #[must_use]
    pub fn group_node(&self, g: usize) -> Option<&str> {
        (g % self.groups())
            .checked_sub(1)
            .and_then(|i| self.pinned.get(i))
            .map(String::as_str)
    }

    /// The node lane `index` stays on, if it is not one that follows the primary.
    fn pinned_to(&self, index: usize) -> Option<&str> {
        self.group_node((index % self.lanes.len()) / self.per_group)
    }

    /// The nodes the lanes connect to.
    #[must_use]
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// How many lanes there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Never: there is at least one lane.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Lane `index` (modulo the count).
    #[must_use]
    pub fn lane(&self, index: usize) -> &Lane {
        &self.lanes[index % self.lanes.len()]
    }

    /// The refusal, when a lane's last login was refused (or its session evicted for its
    /// credentials), or its last TLS handshake failed on the node's answer, and it is down:
    /// Iggy does not accept the pool's credentials, or the pool does not accept Iggy's
    /// certificate ([`SessionError::is_permanent`]).
    #[must_use]
    pub fn login_refused(&self) -> Option<SessionError> {
        self.lanes.iter().find_map(|lane| {
            let st = lock(&lane.state);
            match &st.last_error {
                Some(e) if e.is_permanent() && st.link == Link::Down => Some(e.clone()),
                _ => None,
            }
        })
    }

    /// What all the lanes did so far, added up.
    #[must_use]
    pub fn stats(&self) -> LaneStats {
        let mut total = LaneStats::default();
        for lane in &self.lanes {
            total.add(&lane.stats());
        }
        total
    }

    /// Queues `call` on lane `index`.
    fn push(&self, index: usize, call: Call) {
        self.push_at(index, call, false);
    }

    /// Queues `call` on lane `index` ([`Lane::push`]).
    fn push_at(&self, index: usize, call: Call, in_order: bool) {
        let index = index % self.lanes.len();
        lock(&call.slot.0).lane = index;
        self.lanes[index].push(call, in_order);
    }

    fn queue(&self, index: usize, call: Call) -> PendingCall {
        let slot = Arc::clone(&call.slot);
        self.push(index, call);
        PendingCall(slot)
    }

    /// Queues Iggy command `code` with its encoded `payload` on lane `index`.
    pub fn call(&self, index: usize, code: u32, payload: Bytes) -> PendingCall {
        self.queue(index, Call::new(code, payload))
    }

    /// Like [`Self::call`], but the request is not sent before `after` has its reply (or
    /// was dropped unsent, or refused and sent again elsewhere); the calls queued behind it
    /// on lane `index` wait too. A partition's write given `reroute` is sent again where
    /// that says should a node not admit it ([`Reroute`]).
    pub fn call_after(
        &self,
        index: usize,
        code: u32,
        payload: Bytes,
        after: Option<Predecessor>,
        reroute: Option<Arc<dyn Reroute>>,
    ) -> PendingCall {
        self.queue(
            index,
            Call {
                after,
                reroute,
                ..Call::new(code, payload)
            },
        )
    }

    /// Queues a plain append on lane `index` like [`Self::call_after`]: a `SendMessages`
    /// body to one partition, numbered by the caller (no idempotent or transactional
    /// batch, whose bodies must reach Iggy as they are). It may go to Iggy in one request
    /// with the plain appends to the same partition queued right behind it
    /// ([`crate::merge`]); its reply is its own all the same. A merge keeps the checksums
    /// of the frames it does not renumber, so they must be right, as Iggy checks them.
    pub fn append_after(
        &self,
        index: usize,
        payload: Bytes,
        after: Option<Predecessor>,
        reroute: Option<Arc<dyn Reroute>>,
    ) -> PendingCall {
        let merge = if self.merge.enabled() {
            merge::Append::read(&payload)
        } else {
            None
        };
        self.queue(
            index,
            Call {
                after,
                merge,
                reroute,
                ..Call::new(SEND_MESSAGES_CODE, payload)
            },
        )
    }

    /// Queues a request whose reply nobody awaits (it is sent all the same, in lane order).
    pub fn send_detached(&self, index: usize, code: u32, payload: Bytes) {
        let call = Call {
            detached: true,
            ..Call::new(code, payload)
        };
        drop(self.queue(index, call));
    }
}

/// Drives one lane's connection: sessions, the node to connect to, reconnection with
/// backoff, calls and replies.
#[derive(Debug)]
pub struct LaneDriver {
    lanes: Arc<Lanes>,
    index: usize,
    config: SessionConfig,
    session: Option<Session>,
    /// The node dialed last, or connected to.
    address: String,
    phase: Phase,
    /// The request in flight, and when it was written.
    current: Option<(InFlight, Instant)>,
    backoff: Duration,
    connect_at: Instant,
    sessions: u64,
    /// Connection attempts that failed since the last login; only the first is a warning.
    failures: u32,
    /// Nodes tried since one took a login: once every known node failed, the lane waits.
    tried: usize,
    /// Moves to the primary in a row (see [`MAX_REDIRECTS`]).
    redirects: u32,
    /// Whether a stalled request was reported since the last answer.
    stall_told: bool,
    /// [`Nodes::epoch`] when this session was found on the primary.
    epoch: u64,
    /// The plain appends queued behind the request in flight, merged meanwhile.
    prepared: Option<merge::Prepared>,
}

/// A request in flight: its call, and the plain appends merged into it after that one.
#[derive(Debug)]
struct InFlight {
    call: Call,
    riders: Vec<Call>,
}

impl InFlight {
    /// Gives every call of the request its outcome, in queue order: a merged request's
    /// reply split by the calls' messages, any failure to them all.
    fn settle(self, lane: &Lane, result: Result<Bytes, Failure>, service: Option<Duration>) {
        lane.finished(self.call.code, &result, service, self.riders.len());
        let generation = lock(&lane.state).generation;
        lock(&self.call.slot.0).generation = generation;
        for rider in &self.riders {
            let mut s = lock(&rider.slot.0);
            s.rider = true;
            s.generation = generation;
        }
        if self.riders.is_empty() {
            self.call.slot.fill(result, service);
            return;
        }
        let shares = match &result {
            Ok(reply) => {
                let counts: Vec<u32> = std::iter::once(&self.call)
                    .chain(&self.riders)
                    .map(|c| c.merge.as_ref().map_or(0, merge::Append::count))
                    .collect();
                merge::split(reply, &counts).into_iter().map(Ok).collect()
            }
            Err(f) => vec![Err(f.clone()); 1 + self.riders.len()],
        };
        for (call, share) in self.into_calls().into_iter().zip(shares) {
            call.slot.fill(share, service);
        }
    }

    /// A node did not admit the request, sent from lane `index`: each of its calls, in
    /// request order, is sent again where its [`Reroute`] says, at once; a call without
    /// one, or sent again on every group of lanes and once more, gets the refusal, and a
    /// call whose caller let go of it is dropped (never sent again).
    fn refused(self, lanes: &Lanes, index: usize, service: Option<Duration>) {
        let refusal = Err(Failure::NotAdmitted);
        lanes
            .lane(index)
            .finished(self.call.code, &refusal, service, self.riders.len());
        for call in self.into_calls() {
            if call.abandoned() {
                continue;
            }
            let Some(reroute) = call.reroute.clone() else {
                call.slot.fill(refusal.clone(), service);
                continue;
            };
            if call.moves > lanes.groups() {
                call.slot.fill(refusal.clone(), service);
                continue;
            }
            reroute.reroute(
                lanes,
                index,
                Resend {
                    lanes,
                    call: Some(call),
                },
            );
        }
    }

    fn into_calls(self) -> Vec<Call> {
        let mut calls = Vec::with_capacity(1 + self.riders.len());
        calls.push(self.call);
        calls.extend(self.riders);
        calls
    }
}

/// Where a session is, after its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting or logging in.
    Connecting,
    /// Logged in; asking the node which node is the cluster's primary (since then).
    Asking(Instant),
    /// Logged in; the cluster has no primary now: ask again at the first time, until the
    /// second.
    Waiting(Instant, Instant),
    /// Sending calls.
    Serving,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl LaneDriver {
    /// The driver of lane `index`; it may connect at once.
    #[must_use]
    pub fn new(lanes: Arc<Lanes>, index: usize, config: SessionConfig, now: Instant) -> Self {
        Self {
            lanes,
            index,
            config,
            session: None,
            address: String::new(),
            phase: Phase::Connecting,
            current: None,
            backoff: MIN_BACKOFF,
            connect_at: now,
            sessions: 0,
            failures: 0,
            tried: 0,
            redirects: 0,
            stall_told: false,
            epoch: 0,
            prepared: None,
        }
    }

    fn lane(&self) -> &Lane {
        self.lanes.lane(self.index)
    }

    /// When the next connection attempt is due (while there is no session).
    #[must_use]
    pub fn connect_at(&self) -> Instant {
        self.connect_at
    }

    /// The node to connect to now (`host:port`): a lane that stays on a node, that node;
    /// else the cluster's primary when one is known, else each known node in turn.
    pub fn next_address(&mut self) -> &str {
        self.address = match self.lanes.pinned_to(self.index) {
            Some(node) => node.to_owned(),
            None => self.lanes.nodes.next_address(),
        };
        &self.address
    }

    /// The TLS the lanes' connections use, if any.
    #[must_use]
    pub fn tls(&self) -> Option<&iggy_kafka_tls::ClientTls> {
        self.lanes.tls()
    }

    /// The node dialed last, or connected to.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The attempt failed before a byte stream existed.
    pub fn connect_failed(&mut self, error: &str, now: Instant) {
        let failure = SessionError::Protocol(format!("{}: {error}", self.address));
        self.attempt_failed(error, failure, now);
    }

    /// The TLS handshake failed on what the node answered (`error` says how): an attempt
    /// that failed, and one [`Lanes::login_refused`] reports, since trying again cannot
    /// cure it.
    pub fn tls_refused(&mut self, error: &str, now: Instant) {
        let failure = SessionError::TlsRefused(format!("{}: {error}", self.address));
        self.attempt_failed(error, failure, now);
    }

    fn attempt_failed(&mut self, error: &str, failure: SessionError, now: Instant) {
        self.failures += 1;
        if self.failures == 1 {
            tracing::warn!(
                lane = self.index,
                node = %self.address,
                error,
                "cannot connect to Iggy; retrying with backoff"
            );
        } else {
            tracing::debug!(
                lane = self.index,
                node = %self.address,
                error,
                attempt = self.failures,
                "cannot connect to Iggy"
            );
        }
        self.lane().connect_failed();
        self.lanes.nodes.failed(&self.address);
        self.lost_node(now, failure);
    }

    /// The node is gone (or would not serve): another node is tried at once while some is
    /// left untried; once every known node failed, calls fail at once and the lane waits
    /// out its backoff.
    fn lost_node(&mut self, now: Instant, error: SessionError) {
        self.phase = Phase::Connecting;
        self.tried += 1;
        if self.tried < self.lanes.nodes.len() && self.lanes.pinned_to(self.index).is_none() {
            self.lane().set_link(Link::Connecting, Some(error));
            self.connect_at = now;
            return;
        }
        self.tried = 0;
        self.lane().set_link(Link::Down, Some(error));
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.connect_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A byte stream to [`Self::address`] is open: start a session on it.
    pub fn connected(&mut self, now: Instant) {
        let mut config = self.config.clone();
        // Every session of every lane is a client of its own to the server: it fences a
        // client id to its latest session.
        config.client_id = session_client_id(self.config.client_id, self.index, self.sessions);
        self.sessions += 1;
        self.phase = Phase::Connecting;
        self.lane().set_link(Link::Connecting, None);
        self.session = Some(Session::new(config, now));
    }

    /// Resolves when calls were queued on this driver's lane since it was created; create it
    /// before [`Self::pump`].
    pub fn changed(&self) -> event_listener::EventListener {
        self.lane().changed()
    }

    /// Whether a session is open (else the task connects at [`Self::connect_at`]).
    #[must_use]
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// The next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.session.as_mut()?.poll_transmit()
    }

    /// When [`Self::handle_timeout`] is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let session = self.session.as_ref()?.poll_timeout();
        match self.phase {
            Phase::Waiting(at, _) => Some(session.map_or(at, |s| s.min(at))),
            _ => session,
        }
    }

    /// Bytes read from the server, copied in from elsewhere (a test's or a fuzzer's); a
    /// socket's are read straight into [`Self::input_buffer`].
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_input(data, now);
        }
        self.pump(now);
    }

    /// Where to read the server's bytes to (see [`Session::input_buffer`]); `None` without
    /// a session. Call [`Self::handle_received`] after reading into it.
    pub fn input_buffer(&mut self) -> Option<&mut bytes::BytesMut> {
        self.session.as_mut().map(Session::input_buffer)
    }

    /// Bytes were read into [`Self::input_buffer`].
    pub fn handle_received(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_received(now);
        }
        self.pump(now);
    }

    /// A timer fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_timeout(now);
        }
        self.pump(now);
    }

    /// The byte stream ended (read end, or a write failed).
    pub fn handle_closed(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_closed();
        }
        self.pump(now);
    }

    /// Delivers replies and sends the next queued call; call after [`Lane::changed`] fired.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            match session.poll_event() {
                Some(Event::Ready { server_version, .. }) => {
                    if self.failures > 0 {
                        tracing::info!(lane = self.index, node = %self.address, %server_version, "reconnected to Iggy");
                    } else {
                        tracing::debug!(lane = self.index, node = %self.address, %server_version, "logged in to Iggy");
                    }
                    self.failures = 0;
                    self.tried = 0;
                    self.backoff = MIN_BACKOFF;
                    self.ask_for_leader(now);
                }
                Some(Event::Reply(result)) if self.phase != Phase::Serving => {
                    self.told_leader(result, now);
                }
                Some(Event::Reply(Err(Failure::NotAdmitted))) => {
                    let Some((request, sent)) = self.current.take() else {
                        continue;
                    };
                    let partition = Operation::from_command_code(request.call.code)
                        .is_some_and(|o| o.is_partition());
                    if partition || self.lanes.pinned_to(self.index).is_some() {
                        // A partition's primary may be another node: the call's reroute
                        // knows the partition, and moves it (each merged call sends its
                        // own body again).
                        let service = Some(now.saturating_duration_since(sent));
                        request.refused(&self.lanes, self.index, service);
                        // Or the cluster elected another primary: a lane that follows it
                        // asks, as Iggy's own SDK does on this answer.
                        self.ask_for_leader(now);
                        continue;
                    }
                    // A metadata request belongs on the cluster's primary, which this node
                    // is not: sent again there, unapplied.
                    tracing::info!(lane = self.index, node = %self.address, "the Iggy node does not admit requests; looking for the cluster's primary");
                    self.lane().requeue(request.into_calls());
                    self.lanes.nodes.failed(&self.address);
                    self.session = None;
                    self.prepared = None;
                    self.phase = Phase::Connecting;
                    self.lane().set_link(Link::Connecting, None);
                    self.connect_at = now;
                    return;
                }
                Some(Event::Reply(result)) => {
                    if let Some((request, sent)) = self.current.take() {
                        let service = Some(now.saturating_duration_since(sent));
                        if result.is_ok() {
                            self.stall_told = false;
                        }
                        request.settle(self.lanes.lane(self.index), result, service);
                    }
                }
                Some(Event::Stalled(code)) => {
                    if !self.stall_told {
                        self.stall_told = true;
                        let why = if code == crate::session::TRANSIENT_NOT_COMMITTED {
                            "the cluster has not committed it yet"
                        } else {
                            "the node does not admit it now"
                        };
                        tracing::warn!(
                            lane = self.index, node = %self.address, code, why,
                            "an Iggy request is waiting; resending it until it is answered or times out"
                        );
                    }
                }
                Some(Event::Closed(error)) => {
                    if self.failures == 0 {
                        tracing::warn!(lane = self.index, node = %self.address, %error, "Iggy connection closed");
                    }
                    self.session = None;
                    self.prepared = None;
                    if let Some((request, _)) = self.current.take() {
                        let lost = Err(Failure::Lost(error.clone()));
                        request.settle(self.lanes.lane(self.index), lost, None);
                    }
                    self.failures += 1;
                    self.lanes.nodes.failed(&self.address);
                    self.lost_node(now, error);
                    return;
                }
                None => {
                    if let Phase::Waiting(at, until) = self.phase {
                        if now >= at {
                            self.phase = Phase::Asking(until);
                            self.send_leader_question(now);
                        }
                        return;
                    }
                    if self.phase != Phase::Serving || !session.is_ready() {
                        if self.current.is_some() {
                            let lane = self.lanes.lane(self.index);
                            lane.prepare(&self.lanes.merge, &mut self.prepared);
                        }
                        return;
                    }
                    if self.lanes.nodes.epoch() != self.epoch {
                        self.epoch = self.lanes.nodes.epoch();
                        if let Some(leader) = left_behind(&self.lanes, self.index, &self.address) {
                            tracing::info!(lane = self.index, node = %self.address, primary = %leader, "moving to the Iggy cluster's primary");
                            self.session = None;
                            self.prepared = None;
                            self.phase = Phase::Connecting;
                            self.connect_at = now;
                            return;
                        }
                    }
                    let lane = self.lanes.lane(self.index);
                    lane.prepare(&self.lanes.merge, &mut self.prepared);
                    let prepared = self.prepared.take();
                    let Some((call, riders, merged)) =
                        lane.next_request(&self.lanes, self.index, prepared)
                    else {
                        return;
                    };
                    let body = merged.unwrap_or_else(|| call.payload.clone());
                    let request = InFlight { call, riders };
                    match session.send(request.call.code, body, now) {
                        Ok(()) => self.current = Some((request, now)),
                        Err(_) => {
                            let lost = Err(Failure::Lost(SessionError::Closed));
                            request.settle(self.lanes.lane(self.index), lost, None);
                        }
                    }
                }
            }
        }
    }

    /// Logged in: asks the node which node is the cluster's primary, as Iggy's own SDK does
    /// after every login; calls wait for the answer. A lane that stays on its node serves
    /// at once.
    fn ask_for_leader(&mut self, now: Instant) {
        if self.lanes.pinned_to(self.index).is_some() {
            return self.serve();
        }
        self.phase = Phase::Asking(now + LEADER_WAIT);
        self.send_leader_question(now);
    }

    fn send_leader_question(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            if s.send(GET_CLUSTER_METADATA_CODE, Bytes::new(), now)
                .is_err()
            {
                self.serve();
            }
        }
    }

    /// The node's answer to [`Self::ask_for_leader`].
    fn told_leader(&mut self, answer: Result<Bytes, Failure>, now: Instant) {
        let until = match self.phase {
            Phase::Asking(until) | Phase::Waiting(_, until) => until,
            _ => now,
        };
        let metadata = match answer {
            Ok(body) => ClusterMetadataResponse::decode(&body).map(|(m, _)| m),
            // A server that does not say is taken for a single node.
            Err(_) => return self.serve(),
        };
        let Ok(metadata) = metadata else {
            tracing::debug!(lane = self.index, node = %self.address, "unreadable cluster metadata; staying");
            return self.serve();
        };
        match self.lanes.nodes.learn(&self.address, &metadata) {
            Placement::Stay => {
                self.redirects = 0;
                self.serve();
            }
            Placement::MoveTo(leader) if self.redirects < MAX_REDIRECTS => {
                self.redirects += 1;
                tracing::info!(lane = self.index, node = %self.address, primary = %leader, "moving to the Iggy cluster's primary");
                self.session = None;
                self.prepared = None;
                self.phase = Phase::Connecting;
                self.connect_at = now;
            }
            Placement::MoveTo(_) => self.serve(),
            Placement::NoLeader if now < until => {
                tracing::debug!(lane = self.index, node = %self.address, "the Iggy cluster has no primary now; asking again");
                self.phase = Phase::Waiting(now + LEADER_POLL, until);
            }
            Placement::NoLeader => self.serve(),
        }
    }

    /// Starts sending calls on this session.
    fn serve(&mut self) {
        self.epoch = self.lanes.nodes.epoch();
        self.phase = Phase::Serving;
        self.lanes.lane(self.index).set_link(Link::Up, None);
    }
}

/// The primary another lane learned of, when lane `index` follows the primary and is not
/// on it (`address`): it moves there before sending anything more.
fn left_behind(lanes: &Lanes, index: usize, address: &str) -> Option<String> {
    if lanes.pinned_to(index).is_some() {
        return None;
    }
    lanes.nodes.leader().filter(|leader| leader != address)
}

/// A client id unique to (base, lane, session), never 0.
fn session_client_id(base: u128, lane: usize, session: u64) -> u128 {
    fn mix(mut z: u64) -> u64 {
        // splitmix64's finalizer: spreads every input bit over the output.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let lane = lane as u64;
    let hi = mix((base >> 64) as u64 ^ mix(lane));
    let lo = mix(base as u64 ^ mix(session.wrapping_add(lane << 32)));
    ((u128::from(hi) << 64) | u128::from(lo)).max(1)
}

#[cfg(test)]
mod tests;
