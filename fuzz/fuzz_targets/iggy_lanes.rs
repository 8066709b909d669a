//! The lanes of a pool given a three-node Iggy cluster, under arbitrary interleavings of
//! queueing calls (partition writes and metadata requests, some waiting for calls on other
//! lanes), dropping them, connection loss and failed connection attempts, time, and the
//! cluster's answers: replies, errors, "not committed yet" (57), "not admitted" (58), and
//! cluster metadata naming any primary, none, or nodes never heard of. Some partition writes
//! are plain appends (to one of two partitions), which the lanes merge into one request.
//! Some partition writes are given a reroute: refused ("not admitted"), the lane's driver
//! sends them again on the next group's lane, without their callers.
//!
//! What must hold whatever the cluster says:
//! - no call is written before the call it waits for is done (answered, failed, or let go
//!   of without having been applied), and none after a call that waits for it;
//! - a call is written again on another connection only if no node may have applied it
//!   (every answer to it was "not admitted"): a resent write is never applied twice; and on
//!   another lane only after a "not admitted", and only if it was given a reroute;
//! - every answer reaches the call it answers (a merged append, its own base offset);
//! - a merged request holds only plain appends to one partition, in the order they were
//!   handed over (a write sent again goes ahead of its partition's later writes);
//! - once the cluster settles (a primary, every node up and answering), every call still
//!   awaited gets an answer: nothing deadlocks.
#![no_main]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use iggy_kafka_iggy_client::protocol::batch::decode_batch_slice;
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_TOPIC_CODE, GET_CLUSTER_METADATA_CODE, SEND_MESSAGES_CODE,
};
use iggy_kafka_iggy_client::protocol::requests::messages::{RawMessage, SendMessagesEncoder};
use iggy_kafka_iggy_client::protocol::responses::messages::{
    SendMessagesConfirmationResponse, SendMessagesResponse,
};
use iggy_kafka_iggy_client::protocol::{WireDecode, WireEncode, WireIdentifier, WirePartitioning};
use iggy_kafka_iggy_client::session::{TRANSIENT_NOT_ACCEPTED, TRANSIENT_NOT_COMMITTED};
use iggy_kafka_iggy_client::testing::frames::{
    self, cluster_metadata, login_ok, reply, result_framed,
};
use iggy_kafka_iggy_client::{
    Credentials, Failure, LaneDriver, Lanes, Nodes, PendingCall, Reroute, Resend, SessionConfig,
};
use libfuzzer_sys::fuzz_target;

const NODES: [&str; 3] = ["127.0.0.1:8090", "127.0.0.2:8090", "127.0.0.3:8090"];
/// Lanes per group: one group follows the primary, one stays on each node.
const PER_GROUP: usize = 2;

#[derive(Debug, Arbitrary)]
enum Step {
    /// Queue a call on `lane`, after call `after` (an index into the calls so far): a
    /// partition's write, or a metadata request.
    Call {
        lane: u8,
        after: Option<u8>,
        partition: bool,
        /// A plain append to this partition (of two), when a partition's write.
        plain: Option<bool>,
        /// Sent again on the next group's lane when refused, when a partition's write that
        /// is not a plain append (plain appends to the first partition always are, with one
        /// reroute for the partition as a backend gives, and those to the second never are).
        reroute: bool,
    },
    /// The caller of call `i` stops waiting for it.
    Drop(u8),
    /// The server answers what `lane` wrote. A transient answer sticks: the node gives it
    /// to every resend until it answers otherwise or the connection ends.
    Serve { lane: u8, answer: Answer },
    /// `lane`'s connection fails.
    Close(u8),
    /// `lane` connects again (if it has no session), to the node it picks.
    Connect(u8),
    /// `lane`'s next connection attempt fails.
    Unreachable(u8),
    /// The cluster names this node (of three) its primary, or none.
    Elect(Option<u8>),
    /// Time passes, and the timers that came due fire.
    Wait(u16),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Answer {
    /// Applied and answered (a cluster metadata question: the cluster as it is now, with a
    /// node nobody knew of when `stranger` is set).
    Done { stranger: Option<u8> },
    /// Applied, answered with an error.
    Error(u16),
    /// Taken, not committed yet: the session resends, the node answers from its cache.
    NotCommitted,
    /// Not admitted: not applied.
    NotAdmitted,
}

struct Call {
    lane: usize,
    after: Option<usize>,
    /// `None` once the caller stopped waiting, or once it has its answer.
    pending: Option<PendingCall>,
    /// The connection (lane, serial) it was written on last.
    written_on: Option<(usize, u64)>,
    /// A node may have applied it: it answered it other than "not admitted", or the
    /// connection it was last written on ended before an answer.
    maybe_applied: bool,
    /// The last thing that happened to it was a "not admitted".
    refused_last: bool,
    /// Its outcome is settled: answered, failed, or given to its caller.
    done: bool,
    /// A plain append: to which partition, and the base offset its answer must carry.
    plain: Option<(bool, Option<u64>)>,
    /// Whether it may be sent again on another lane after a refusal.
    rerouted: bool,
}

/// Sends a refused write again on the lane of the next group (another node's).
struct NextGroup;

impl Reroute for NextGroup {
    fn reroute(&self, lanes: &Lanes, refused: usize, write: Resend<'_>) {
        write.queue((refused + PER_GROUP) % lanes.len(), None);
    }
}

/// One lane's driver and the server's side of its connection.
struct Link {
    driver: LaneDriver,
    /// Which connection of this lane the session is on (bumped on each connect).
    serial: u64,
    /// Whether the driver has a session (mirrored, to see the driver drop one).
    connected: bool,
    /// Bytes written and not yet read by the server.
    wire: Vec<u8>,
    /// How much of `wire` was looked at as it was written.
    seen: usize,
    /// The calls written in one request and not yet answered.
    in_flight: Vec<usize>,
    /// The transient answer the node keeps giving.
    sticky: Option<Answer>,
    /// What wakes the lane's task, as in the runtimes: a lane is pumped only when told.
    changed: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

fn ready<F: Future + Unpin + ?Sized>(f: &mut F) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(f).poll(&mut cx), Poll::Ready(_))
}

struct World {
    lanes: Arc<Lanes>,
    links: Vec<Link>,
    calls: Vec<Call>,
    leader: Option<usize>,
    now: Instant,
}

impl World {
    /// Every lane that was told of new calls (or of a call it waits for) looks at its queue,
    /// as its task would when woken, and writes what it can; each call is checked as it is
    /// written, and each answer as it arrives.
    fn pump(&mut self) {
        for i in 0..self.links.len() {
            let l = &mut self.links[i];
            if l.changed.as_mut().is_none_or(ready) {
                l.changed = Some(Box::pin(self.lanes.lane(i).changed()));
                l.driver.pump(self.now);
            }
            self.after_driver(i);
        }
        self.collect();
    }

    /// What lane `i`'s driver did: bytes written, or its session dropped.
    fn after_driver(&mut self, i: usize) {
        if self.links[i].connected && !self.links[i].driver.has_session() {
            self.ended(i);
        }
        let l = &mut self.links[i];
        while let Some(b) = l.driver.poll_transmit() {
            l.wire.extend_from_slice(&b);
        }
        for r in frames::requests(&l.wire, l.seen) {
            self.links[i].seen = r.end;
            let ids = call_ids(&r);
            if ids.len() > 1 {
                let partition = self.calls[ids[0]].plain.map(|(p, _)| p);
                for pair in ids.windows(2) {
                    assert!(pair[0] < pair[1], "merged out of hand-over order: {ids:?}");
                }
                for &id in &ids {
                    let p = self.calls[id].plain.map(|(p, _)| p);
                    assert!(
                        p.is_some() && p == partition,
                        "merged {ids:?}: one partition's plain appends only"
                    );
                }
            }
            self.links[i].in_flight.clear();
            for id in ids {
                self.written(i, id);
            }
        }
    }

    /// Answers delivered: each to its own call.
    fn collect(&mut self) {
        for (id, c) in self.calls.iter_mut().enumerate() {
            let Some(p) = c.pending.as_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(outcome) = Pin::new(p).poll(&mut cx) {
                match (&outcome, c.plain) {
                    (Ok(body), Some((_, base))) => {
                        let (reply, _) =
                            SendMessagesResponse::decode(body).expect("a confirmation");
                        assert_eq!(
                            Some(reply.confirmations[0].base_offset),
                            base,
                            "call {id} got another's place"
                        );
                    }
                    (Ok(body), None) => assert_eq!(
                        body.as_ref(),
                        id.to_le_bytes(),
                        "call {id} got another's answer"
                    ),
                    _ => {}
                }
                if outcome == Err(Failure::NotAdmitted) {
                    assert!(
                        !c.maybe_applied,
                        "call {id} failed as unapplied, but may be applied"
                    );
                }
                c.pending = None;
                c.done = true;
            }
        }
    }

    /// The server reads lane `i`'s requests and answers each; whether it answered any.
    fn serve(&mut self, i: usize, answer: Answer) -> bool {
        self.links[i].sticky =
            matches!(answer, Answer::NotCommitted | Answer::NotAdmitted).then_some(answer);
        let mut written: VecDeque<_> = frames::requests(&self.links[i].wire, 0).into();
        let Some(end) = written.back().map(|r| r.end) else {
            return false;
        };
        self.links[i].wire.drain(..end);
        self.links[i].seen -= end;
        let serial = self.links[i].serial;
        while let Some(r) = written.pop_front() {
            if !self.links[i].connected || self.links[i].serial != serial {
                // The connection ended: what it wrote goes unanswered.
                break;
            }
            let (status, body) = if r.is_login() {
                (0, login_ok(1))
            } else if r.code() == GET_CLUSTER_METADATA_CODE {
                match answer {
                    Answer::Done { stranger } => (0, self.roster(stranger)),
                    Answer::Error(e) => (u32::from(e), Vec::new()),
                    Answer::NotCommitted => (TRANSIENT_NOT_COMMITTED, Vec::new()),
                    Answer::NotAdmitted => (TRANSIENT_NOT_ACCEPTED, Vec::new()),
                }
            } else {
                let ids = call_ids(&r);
                let status = match answer {
                    Answer::Done { .. } => 0,
                    Answer::Error(e) => u32::from(e),
                    Answer::NotCommitted => TRANSIENT_NOT_COMMITTED,
                    Answer::NotAdmitted => TRANSIENT_NOT_ACCEPTED,
                };
                // A plain append lands at a base made of its first message's id, so that
                // each merged call's share can be told apart.
                let base = ids[0] as u64 * 1000;
                for (k, &id) in ids.iter().enumerate() {
                    let c = &mut self.calls[id];
                    c.refused_last = status == TRANSIENT_NOT_ACCEPTED;
                    c.maybe_applied |= !c.refused_last;
                    if let Some((_, at)) = c.plain.as_mut() {
                        *at = Some(base + k as u64);
                    }
                    if status != TRANSIENT_NOT_COMMITTED && status != TRANSIENT_NOT_ACCEPTED {
                        c.done = true;
                        self.links[i].in_flight.clear();
                    }
                }
                // Metadata replies open with a result section; partition replies do not.
                let body = if r.header.operation.is_result_framed() {
                    result_framed(&[], &r.body)
                } else if self.calls[ids[0]].plain.is_some() {
                    confirmed(base)
                } else {
                    r.body.to_vec()
                };
                (status, body)
            };
            self.links[i]
                .driver
                .handle_input(&reply(&r.header, status, &body), self.now);
            self.after_driver(i);
            self.pump();
        }
        true
    }

    /// The cluster metadata a node reports now.
    fn roster(&self, stranger: Option<u8>) -> Vec<u8> {
        let stranger = stranger.map(|s| format!("10.0.0.{s}:8090"));
        let mut nodes: Vec<(&str, bool)> = NODES
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, self.leader == Some(i)))
            .collect();
        if let Some(s) = stranger.as_deref() {
            nodes.push((s, false));
        }
        cluster_metadata(&nodes)
    }

    /// Lane `lane` wrote call `id`.
    fn written(&mut self, lane: usize, id: usize) {
        let serial = self.links[lane].serial;
        let call = &mut self.calls[id];
        let moved = call.lane != lane;
        if moved {
            assert!(
                call.rerouted && call.refused_last,
                "call {id} written on lane {lane}, not its own {}, without a refusal to move it",
                call.lane
            );
            // Sent again where its reroute said, waiting for nothing.
            call.lane = lane;
            call.after = None;
        }
        let call = &self.calls[id];
        assert!(!call.done, "call {id} written again after it was done");
        if call.written_on.is_some_and(|w| w != (lane, serial)) {
            assert!(
                !call.maybe_applied,
                "call {id} written again on another connection, though a node may have applied it"
            );
        }
        if let Some(p) = call.after {
            let before = &self.calls[p];
            assert!(
                before.written_on.is_none() || before.done || !before.maybe_applied,
                "call {id} written while call {p}, which it waits for, had no answer"
            );
        }
        // A call that waited for this one went ahead when this one was refused.
        for (later, c) in self.calls.iter().enumerate().filter(|_| !moved) {
            assert!(
                !(c.after == Some(id) && c.written_on.is_some()),
                "call {id} written after call {later}, which waits for it"
            );
        }
        let call = &mut self.calls[id];
        call.written_on = Some((lane, serial));
        call.refused_last = false;
        self.links[lane].in_flight.push(id);
    }

    /// Lane `i`'s connection is over: what it had in flight failed and may have been
    /// applied, unless the last word on it was "not admitted".
    fn ended(&mut self, i: usize) {
        let l = &mut self.links[i];
        l.connected = false;
        l.sticky = None;
        l.wire.clear();
        l.seen = 0;
        for id in std::mem::take(&mut l.in_flight) {
            let c = &mut self.calls[id];
            if !c.refused_last {
                c.maybe_applied = true;
                c.done = true;
            }
        }
    }

    fn close(&mut self, i: usize) {
        if !self.links[i].driver.has_session() {
            return;
        }
        self.ended(i);
        self.links[i].driver.handle_closed(self.now);
        self.after_driver(i);
    }

    fn connect(&mut self, i: usize) {
        let l = &mut self.links[i];
        if !l.driver.has_session() {
            let _node = l.driver.next_address();
            l.serial += 1;
            l.connected = true;
            l.wire.clear();
            l.seen = 0;
            l.driver.connected(self.now);
            self.after_driver(i);
        }
    }

    fn unreachable(&mut self, i: usize) {
        let l = &mut self.links[i];
        if !l.driver.has_session() {
            let _node = l.driver.next_address();
            l.driver.connect_failed("connection refused", self.now);
            self.after_driver(i);
        }
    }

    fn wait(&mut self, by: Duration) {
        self.now += by;
        for i in 0..self.links.len() {
            if self.links[i]
                .driver
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                self.links[i].driver.handle_timeout(self.now);
                self.after_driver(i);
            }
            if let Some(answer) = self.links[i].sticky {
                self.serve(i, answer);
            }
        }
    }
}

/// The calls a request carries: a call's payload is its index, or, for a plain append,
/// a `SendMessages` whose messages' ids are the indexes of the calls merged into it.
fn call_ids(r: &frames::Request) -> Vec<usize> {
    if r.is_login() || r.code() == GET_CLUSTER_METADATA_CODE {
        return Vec::new();
    }
    if r.body.len() == 8 {
        return vec![usize::from_le_bytes(r.body[..8].try_into().expect("an id"))];
    }
    let meta = u32::from_le_bytes(r.body[..4].try_into().expect("a body")) as usize;
    let batch = decode_batch_slice(&r.body[4 + meta..]).expect("a whole batch");
    batch
        .iter()
        .enumerate()
        .map(|(k, m)| {
            assert_eq!(
                m.header.offset_delta as usize, k,
                "offset deltas count across the request"
            );
            usize::try_from(m.header.id).expect("an index")
        })
        .collect()
}

/// A plain append of call `id` to `partition`: one message, numbered `id`.
fn plain_append(id: usize, partition: bool) -> Bytes {
    let mut buf = BytesMut::new();
    SendMessagesEncoder::encode(
        &mut buf,
        &WireIdentifier::numeric(1),
        &WireIdentifier::numeric(1),
        &WirePartitioning::PartitionId(u32::from(partition)),
        &[RawMessage {
            id: id as u128,
            origin_timestamp: 1_000 + id as u64,
            headers: None,
            payload: b"m",
        }],
    )
    .expect("encodes");
    buf.freeze()
}

/// Iggy's confirmation of an append that landed at `base`.
fn confirmed(base: u64) -> Vec<u8> {
    SendMessagesResponse {
        confirmations: vec![SendMessagesConfirmationResponse {
            stream_id: 1,
            topic_id: 1,
            partition_id: 0,
            base_offset: base,
        }],
    }
    .to_bytes()
    .to_vec()
}

fuzz_target!(|steps: Vec<Step>| {
    let now = Instant::now();
    let lanes = Arc::new(Lanes::new(
        PER_GROUP,
        Nodes::new(NODES.iter().map(|a| (*a).to_owned())),
    ));
    let config = SessionConfig {
        credentials: Credentials::User {
            username: "u".into(),
            password: "p".to_owned().into(),
        },
        client_id: 1,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 1 << 16,
    };
    let links = (0..lanes.len())
        .map(|i| Link {
            driver: LaneDriver::new(Arc::clone(&lanes), i, config.clone(), now),
            serial: 0,
            connected: false,
            wire: Vec::new(),
            seen: 0,
            in_flight: Vec::new(),
            sticky: None,
            changed: None,
        })
        .collect();
    let mut w = World {
        lanes,
        links,
        calls: Vec::new(),
        leader: Some(0),
        now,
    };
    let count = w.links.len();
    let first_partition: Arc<dyn Reroute> = Arc::new(NextGroup);
    for step in steps.into_iter().take(512) {
        w.wait(Duration::from_millis(1));
        match step {
            Step::Call {
                lane,
                after,
                partition,
                plain,
                reroute,
            } => {
                let lane = usize::from(lane) % count;
                let id = w.calls.len();
                let after = after
                    .map(usize::from)
                    .filter(|&a| a < id && w.calls[a].lane != lane);
                let predecessor = after
                    .and_then(|a| w.calls[a].pending.as_ref())
                    .map(|p| p.predecessor());
                let payload = Bytes::copy_from_slice(&id.to_le_bytes());
                // A call after one whose caller already let go waits for nothing.
                let after = after.filter(|_| predecessor.is_some());
                let code = if partition {
                    SEND_MESSAGES_CODE
                } else {
                    CREATE_TOPIC_CODE
                };
                let plain = plain.filter(|_| partition);
                // A backend gives all of a partition's writes the same reroute: a write sent
                // again goes ahead of that partition's writes handed over after it.
                let (rerouted, hook) = match plain {
                    Some(true) => (true, Some(Arc::clone(&first_partition))),
                    Some(false) => (false, None),
                    None => {
                        let rerouted = reroute && partition;
                        (
                            rerouted,
                            rerouted.then(|| Arc::new(NextGroup) as Arc<dyn Reroute>),
                        )
                    }
                };
                let pending = match plain {
                    Some(p) => w
                        .lanes
                        .append_after(lane, plain_append(id, p), predecessor, hook),
                    None => w.lanes.call_after(lane, code, payload, predecessor, hook),
                };
                w.calls.push(Call {
                    lane,
                    after,
                    pending: Some(pending),
                    written_on: None,
                    maybe_applied: false,
                    refused_last: false,
                    done: false,
                    plain: plain.map(|p| (p, None)),
                    rerouted,
                });
            }
            Step::Drop(i) => {
                if let Some(c) = w.calls.get_mut(usize::from(i)) {
                    c.pending = None;
                }
            }
            Step::Serve { lane, answer } => {
                w.serve(usize::from(lane) % count, answer);
            }
            Step::Close(i) => w.close(usize::from(i) % count),
            Step::Connect(i) => w.connect(usize::from(i) % count),
            Step::Unreachable(i) => w.unreachable(usize::from(i) % count),
            Step::Elect(n) => w.leader = n.map(|n| usize::from(n) % NODES.len()),
            Step::Wait(ms) => w.wait(Duration::from_millis(u64::from(ms))),
        }
        w.pump();
    }
    // The cluster settles: node 0 leads, every node is up and answers everything. Every
    // call still awaited gets its answer.
    w.leader = Some(0);
    for _ in 0..400 {
        for i in 0..count {
            w.connect(i);
        }
        w.pump();
        for i in 0..count {
            w.serve(i, Answer::Done { stranger: None });
        }
        w.pump();
        if w.calls.iter().all(|c| c.pending.is_none()) {
            break;
        }
        w.wait(Duration::from_millis(100));
        w.pump();
    }
    for (id, c) in w.calls.iter().enumerate() {
        assert!(
            c.pending.is_none(),
            "call {id} on lane {} never answered",
            c.lane
        );
    }
});
