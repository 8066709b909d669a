//! Calls and routing: how a request reaches Iggy, and on which lane.
//!
//! [`Calls`] queues requests on the pool's lanes and numbers the messages the gateway
//! appends. A partition's requests go down the lane its [`PartitionRoute`] chooses (the one
//! Iggy answers it fastest on, see [`crate::placement`]); when the lane changes, the next
//! append waits for the last one on the old lane, so that a partition's appends reach Iggy
//! in the order they were issued. Administration is spread over the lanes that follow the
//! cluster's primary by name, so that one busy partition's lane does not hold every admin
//! request.
//!
//! In an Iggy cluster each partition replicates on its own, and its primary is not always
//! the cluster's: a node that is not the partition's primary refuses its writes ("not
//! admitted"). A partition's route then moves it to the lanes of the next node
//! ([`iggy_kafka_iggy_client::Lanes::group`]) and sends the write again there, until a node
//! takes it. The lane's driver does that as the refusal arrives (the route is the write's
//! [`Reroute`]), in the order the writes were refused, without waiting for their callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use iggy_kafka_iggy_client::protocol::WireIdentifier;
use iggy_kafka_iggy_client::{
    Answered, Clock, Failure, Lanes, PendingCall, Predecessor, Reroute, Resend,
};

use crate::placement::{Kind, Placement};
use crate::sync::lock;

/// The pool, the clock, and the stream every request names.
pub(crate) struct Calls {
    lanes: Arc<Lanes>,
    clock: Arc<dyn Clock>,
    stream: WireIdentifier,
    /// Randomness for message ids, so they do not repeat across restarts.
    seed: u64,
    next_message_id: AtomicU64,
}

impl Calls {
    pub(crate) fn new(
        lanes: Arc<Lanes>,
        clock: Arc<dyn Clock>,
        stream: WireIdentifier,
        seed: u64,
    ) -> Self {
        Self {
            lanes,
            clock,
            stream,
            seed,
            next_message_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The stream that holds the Kafka topics, as requests name it.
    pub(crate) fn stream(&self) -> &WireIdentifier {
        &self.stream
    }

    /// Sends Iggy command `code` on lane `lane` of those that follow the cluster's primary,
    /// and waits for the reply.
    pub(crate) async fn call(
        &self,
        lane: usize,
        code: u32,
        payload: Bytes,
    ) -> Result<Bytes, Failure> {
        reply(
            code,
            self.lanes.call(self.primary_lane(lane), code, payload),
        )
        .await
    }

    /// Queues a request whose reply nobody awaits on lane `lane` of those that follow the
    /// cluster's primary (it is sent all the same, in lane order).
    pub(crate) fn send_detached(&self, lane: usize, code: u32, payload: Bytes) {
        self.lanes
            .send_detached(self.primary_lane(lane), code, payload);
    }

    /// Lane `lane` (modulo their count) of those that follow the cluster's primary.
    fn primary_lane(&self, lane: usize) -> usize {
        let primary = self.lanes.group(0);
        primary.start + lane % primary.len()
    }

    /// The first of `n` fresh Iggy message ids.
    pub(crate) fn message_ids(&self, n: usize) -> u128 {
        // Unique per gateway run: the seed in the high half, a counter in the low half. The
        // top bit is left to the ids of idempotent batches (`wire::Ids::producer`).
        (u128::from(self.seed >> 1) << 64)
            | u128::from(self.next_message_id.fetch_add(n as u64, Ordering::Relaxed))
    }
}

/// Waits for a queued call's reply; a refusal is logged (at debug: the Kafka client gets the
/// mapped error).
pub(crate) async fn reply(code: u32, call: PendingCall) -> Result<Bytes, Failure> {
    timed_reply(code, call).await.0
}

/// [`reply`], with how long Iggy took to answer.
pub(crate) async fn timed_reply(
    code: u32,
    call: PendingCall,
) -> (Result<Bytes, Failure>, Option<Duration>) {
    let (result, service) = call.timed().await;
    if let Err(Failure::Status(status)) = &result {
        tracing::debug!(command = code, status, "iggy refused a request");
    }
    (result, service)
}

/// The lane a partition starts on.
pub(crate) fn lane_of(topic: &str, partition: u32) -> usize {
    // FNV-1a: stable, and cheap enough to run on every request.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(partition.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h >> 32).unwrap_or(0)
}

/// Lane for administration and offsets: spread by name too, so one busy partition's lane
/// does not hold every admin request.
pub(crate) fn admin_lane(name: &str) -> usize {
    lane_of(name, u32::MAX)
}

/// Whether every lane of group `g` is down (its node refused or dropped the connection).
fn group_down(lanes: &Lanes, g: usize) -> bool {
    lanes.group(g).all(|l| lanes.lane(l).generation().is_none())
}

impl Route {
    /// Serves the partition from group `g` from now on, its lane chosen anew.
    fn move_to(&mut self, lanes: &Lanes, g: usize, (topic, partition): (&str, u32), why: &str) {
        let to = lanes.group_node(g).unwrap_or("the cluster's primary");
        if std::mem::replace(&mut self.moving, true) {
            tracing::debug!(%topic, partition, to, why, "the partition's writes move to another Iggy node");
        } else {
            tracing::info!(%topic, partition, to, why, "the partition's writes move to another Iggy node until one takes them");
        }
        self.group = g;
        self.placement = Placement::new(lanes.group(g).len(), lane_of(topic, partition));
        self.pin = self.last_append.as_ref().map(|(_, until)| Pin {
            lane: None,
            until: until.clone(),
        });
    }

    /// The lane for the partition's next request (leaving a node that is down first).
    fn next_lane(&mut self, lanes: &Lanes, at: (&str, u32)) -> usize {
        if self.group != 0 && group_down(lanes, self.group) {
            // Its node is gone: the cluster elects the partition another primary, most
            // likely the cluster's own; refusals there move it on.
            self.move_to(lanes, 0, at, "its node is down");
        }
        let group = lanes.group(self.group);
        let first = group.start;
        let mut route = || first + self.placement.route(|l| lanes.lane(first + l).generation());
        match &mut self.pin {
            Some(pin) if !pin.until.settled() => match pin.lane {
                Some(lane) if group.contains(&lane) => lane,
                _ => *pin.lane.insert(route()),
            },
            _ => {
                self.pin = None;
                route()
            }
        }
    }

    /// Where the partition's next append goes on `lane`: after its last append if that
    /// went down another lane.
    fn after(&self, lane: usize) -> Option<Predecessor> {
        match &self.last_append {
            Some((last, p)) if *last != lane => Some(p.clone()),
            _ => None,
        }
    }

    /// Iggy answered a request of `kind` on `lane` for the partition in `service`.
    fn answered(
        &mut self,
        lanes: &Lanes,
        (topic, partition): (&str, u32),
        lane: usize,
        kind: Kind,
        service: Option<Duration>,
    ) {
        let group = lanes.group(self.group);
        if !group.contains(&lane) {
            // Sent before the partition moved to another group.
            return;
        }
        let first = group.start;
        let generation = |l| lanes.lane(first + l).generation();
        if let Some(d) = self
            .placement
            .answered(lane - first, kind, service, generation)
        {
            tracing::debug!(
                %topic, partition, lane = d.lane, by = ?d.kind, quartiles_us = ?d.quartiles,
                clear = d.clear, "lane chosen by Iggy's answer times"
            );
        }
    }

    /// The partition's node refuses its writes (on `lane`): it moves to the lanes of the
    /// next node, unless it has already left that node's (the writes refused with this one,
    /// such as those of one merged request, move it once).
    fn refused(&mut self, lanes: &Lanes, at: (&str, u32), lane: usize) {
        let groups = lanes.groups();
        if groups == 1 || !lanes.group(self.group).contains(&lane) {
            return;
        }
        // The next group whose node is up (the primary's lanes count as up: they move).
        let next = (1..groups)
            .map(|step| (self.group + step) % groups)
            .find(|&g| g == 0 || !group_down(lanes, g))
            .unwrap_or(0);
        self.move_to(lanes, next, at, "a node refused its write");
    }
}

/// Which lane serves a partition's appends and reads, set at its first request.
#[derive(Default)]
pub(crate) struct PartitionRoute(Arc<Mutex<Option<Route>>>);

/// A partition's lane, and its last append, which an append on another lane must wait for.
struct Route {
    /// Which of `group`'s lanes.
    placement: Placement,
    /// The group of lanes (a node, or the cluster's primary) the partition is served by.
    group: usize,
    /// Whether the partition is moving between nodes since its last answered write: only
    /// the first move is told at info.
    moving: bool,
    last_append: Option<(usize, Predecessor)>,
    /// Set when the partition moves to another node while writes handed over before the
    /// move may still be refused on the node it left: until the last of those is over,
    /// every write goes down one lane of the new node (chosen at the first write after the
    /// move), where those sent again are queued ahead of the later ones
    /// ([`Resend::queue`]), and the later ones wait for the last of them. A trial would
    /// spread them over lanes that do not keep each other's order.
    pin: Option<Pin>,
    /// Given with every write, to send it again should a node not admit it.
    reroute: Arc<dyn Reroute>,
}

/// See [`Route::pin`].
struct Pin {
    lane: Option<usize>,
    /// The last write handed over before the move.
    until: Predecessor,
}

/// Sends a partition's writes that a node did not admit again on the lanes of the next
/// node, in the order they were refused, from the lane's driver (see [`Reroute`]): the
/// writes after one whose caller is slow to look are not held up by it.
struct Rerouter {
    route: Weak<Mutex<Option<Route>>>,
    topic: String,
    partition: u32,
}

impl Reroute for Rerouter {
    fn reroute(&self, lanes: &Lanes, refused: usize, write: Resend<'_>) {
        // A partition forgotten meanwhile: its caller gets the refusal.
        let Some(route) = self.route.upgrade() else {
            return;
        };
        let mut route = lock(&route);
        let Some(route) = route.as_mut() else {
            return;
        };
        let at = (self.topic.as_str(), self.partition);
        // A refusal is no measure of the lane: the trial leaves it out.
        route.answered(lanes, at, refused, Kind::Append, None);
        route.refused(lanes, at, refused);
        let lane = route.next_lane(lanes, at);
        // The writes handed over before this one are over, or were sent again ahead of it
        // on this lane: it waits for none. Those handed over after it wait for the last
        // write handed over, which stays their predecessor unless this is it.
        let again = write.predecessor();
        if route
            .last_append
            .as_ref()
            .is_some_and(|(_, last)| last.is(&again))
        {
            route.last_append = Some((lane, again));
        }
        write.queue(lane, None);
    }
}

impl PartitionRoute {
    /// Runs `f` on the route (made at the partition's first request).
    fn with<R>(
        &self,
        lanes: &Lanes,
        (topic, partition): (&str, u32),
        f: impl FnOnce(&mut Route) -> R,
    ) -> R {
        let mut route = lock(&self.0);
        let route = route.get_or_insert_with(|| Route {
            placement: Placement::new(lanes.group(0).len(), lane_of(topic, partition)),
            group: 0,
            moving: false,
            last_append: None,
            pin: None,
            reroute: Arc::new(Rerouter {
                route: Arc::downgrade(&self.0),
                topic: topic.to_owned(),
                partition,
            }),
        });
        f(route)
    }

    /// Queues an append (Iggy command `code`) on the partition's lane, after the partition's
    /// last append if that went down another lane; returns the lane and the call. A `plain`
    /// append (a `SendMessages` of messages the gateway numbered, neither idempotent nor
    /// transactional) may reach Iggy in one request with the plain appends queued behind
    /// it ([`iggy_kafka_iggy_client::merge`]). Should a node not admit it, the lane's
    /// driver sends it again on the next node's lanes ([`Rerouter`]).
    pub(crate) fn append(
        &self,
        calls: &Calls,
        at: (&str, u32),
        (code, plain): (u32, bool),
        body: Bytes,
    ) -> (usize, PendingCall) {
        let lanes = &*calls.lanes;
        self.with(lanes, at, |route| {
            let lane = route.next_lane(lanes, at);
            let after = route.after(lane);
            let reroute = Some(Arc::clone(&route.reroute));
            let call = if plain {
                lanes.append_after(lane, body, after, reroute)
            } else {
                lanes.call_after(lane, code, body, after, reroute)
            };
            route.last_append = Some((lane, call.predecessor()));
            (lane, call)
        })
    }

    /// The lane for the partition's next poll.
    pub(crate) fn read_lane(&self, calls: &Calls, at: (&str, u32)) -> usize {
        let lanes = &*calls.lanes;
        self.with(lanes, at, |route| route.next_lane(lanes, at))
    }

    /// Waits for the answer to a write (Iggy command `code`) queued as `sent` by
    /// [`Self::append`]. While nodes refuse it, the lanes' drivers send it again on the
    /// next node's lanes, once round them all and once more (the lanes that follow the
    /// cluster's primary look for it again after a refusal); a plain append refused as
    /// part of a merged request is sent again on its own body, which holds exactly its
    /// messages. Returns the answer, with Iggy's time to give it.
    pub(crate) async fn settle(
        &self,
        calls: &Calls,
        at: (&str, u32),
        (code, _, _): (u32, bool, &Bytes),
        sent: (usize, PendingCall),
    ) -> (Result<Bytes, Failure>, Option<Duration>) {
        let (result, service, _) = self.settle_as(calls, at, code, sent, true).await;
        (result, service)
    }

    /// [`Self::settle`] for a write that is no measure of the lane (a fence, whose
    /// refusals come back at once): the lane trial leaves its answer out. Returns where the
    /// answer came from: the lane, and its session then.
    pub(crate) async fn settle_unmeasured(
        &self,
        calls: &Calls,
        at: (&str, u32),
        code: u32,
        sent: (usize, PendingCall),
    ) -> (Result<Bytes, Failure>, Answered) {
        let (result, _, answered) = self.settle_as(calls, at, code, sent, false).await;
        (result, answered)
    }

    async fn settle_as(
        &self,
        calls: &Calls,
        at: (&str, u32),
        code: u32,
        sent: (usize, PendingCall),
        measure: bool,
    ) -> (Result<Bytes, Failure>, Option<Duration>, Answered) {
        let (_, call) = sent;
        let (result, service, answered) = call.timed_on().await;
        if let Err(Failure::Status(status)) = &result {
            tracing::debug!(command = code, status, "iggy refused a request");
        }
        if result == Err(Failure::NotAdmitted) {
            // Refused by every node: its refusals were counted as they came.
            return (result, service, answered);
        }
        if measure && !answered.merged {
            // A merged request is one measure of its lane, taken by its first call: the
            // trial compares requests' times, which merging does not make more of.
            self.answered(calls, at, answered.lane, Kind::Append, service);
        }
        if let Some(route) = lock(&self.0).as_mut() {
            route.moving = false;
        }
        (result, service, answered)
    }

    /// Iggy answered a request of `kind` on `lane` for the partition in `service`.
    pub(crate) fn answered(
        &self,
        calls: &Calls,
        at: (&str, u32),
        lane: usize,
        kind: Kind,
        service: Option<Duration>,
    ) {
        if let Some(route) = lock(&self.0).as_mut() {
            route.answered(&calls.lanes, at, lane, kind, service);
        }
    }

    /// Answers of each kind the running trial holds, if one runs (for tests).
    #[cfg(test)]
    pub(crate) fn trial_samples(&self) -> Option<(usize, usize)> {
        lock(&self.0).as_ref().and_then(|r| r.placement.samples())
    }

    /// The lane the partition is placed on now and whether a trial is choosing it, once it
    /// was routed (for tests).
    #[cfg(test)]
    pub(crate) fn placed(&self) -> Option<(usize, bool)> {
        lock(&self.0)
            .as_ref()
            .map(|r| (r.placement.lane(), r.placement.in_trial()))
    }
}
