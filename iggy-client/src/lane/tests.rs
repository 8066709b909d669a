use super::*;
use crate::nodes::Nodes;
use crate::session;
use crate::session::Credentials;
use crate::testing::frames::{self, cluster_metadata, login_ok, reply as reply_to};
use iggy_binary_protocol::codes::{CREATE_TOPIC_CODE, GET_STREAM_CODE, SEND_MESSAGES_CODE};
use iggy_binary_protocol::consensus::{Operation, RequestHeader};
use secrecy::SecretString;

fn config() -> SessionConfig {
    SessionConfig {
        credentials: Credentials::User {
            username: "iggy".into(),
            password: SecretString::from("iggy"),
        },
        client_id: 1,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 1 << 20,
    }
}

fn lanes(count: usize) -> Lanes {
    Lanes::new(count, Nodes::new(["127.0.0.1:8090".to_owned()]))
}

/// Answers the login `login` and then the question that follows it, which node leads: a
/// single server.
fn log_in(d: &mut LaneDriver, login: &RequestHeader, now: Instant) {
    d.handle_input(&reply_to(login, 0, &login_ok(5)), now);
    let (question, _) = request(d);
    assert_eq!(
        question.operation,
        Operation::NonReplicated,
        "the cluster question"
    );
    let single = cluster_metadata(&[("127.0.0.1:8090", true)]);
    d.handle_input(&reply_to(&question, 0, &single), now);
}

fn poll(call: &mut PendingCall) -> Option<Result<Bytes, Failure>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(call).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

fn request(d: &mut LaneDriver) -> (RequestHeader, Bytes) {
    let r = frames::take_request(|| d.poll_transmit());
    (r.header, r.body)
}

/// Takes the lane's next request, checks its body, and answers `reply`.
fn answer(d: &mut LaneDriver, body: &[u8], reply: &[u8], now: Instant) {
    let (h, sent) = request(d);
    assert_eq!(&sent[..], body);
    d.handle_input(&reply_to(&h, 0, reply), now);
}

fn up(lanes: &Arc<Lanes>, now: Instant) -> LaneDriver {
    up_lane(lanes, 0, now)
}

fn up_lane(lanes: &Arc<Lanes>, index: usize, now: Instant) -> LaneDriver {
    let mut d = LaneDriver::new(Arc::clone(lanes), index, config(), now);
    d.connected(now);
    let (login, _) = request(&mut d);
    assert_eq!(login.operation, Operation::Register);
    log_in(&mut d, &login, now);
    assert!(lanes.lane(index).is_up());
    d
}

#[test]
fn calls_wait_for_login_then_go_one_at_a_time_in_order() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut d = LaneDriver::new(Arc::clone(&lanes), 0, config(), now);
    let mut a = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"a"));
    let mut b = lanes.call(2, SEND_MESSAGES_CODE, Bytes::from_static(b"b"));
    d.connected(now);
    let (login, _) = request(&mut d);
    assert!(poll(&mut a).is_none());
    log_in(&mut d, &login, now);
    let (ha, body) = request(&mut d);
    assert_eq!(&body[..], b"a");
    assert_eq!(d.poll_transmit(), None, "b waits for a's reply");
    d.handle_input(&reply_to(&ha, 0, b"ra"), now);
    assert_eq!(poll(&mut a), Some(Ok(Bytes::from_static(b"ra"))));
    let (hb, body) = request(&mut d);
    assert_eq!(&body[..], b"b");
    d.handle_input(&reply_to(&hb, 0, b"rb"), now);
    assert_eq!(poll(&mut b), Some(Ok(Bytes::from_static(b"rb"))));
}

#[test]
fn a_call_queued_later_is_sent_after_pump() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut c = lanes.call(0, GET_STREAM_CODE, Bytes::from_static(b"s"));
    d.pump(now);
    let (h, _) = request(&mut d);
    d.handle_input(&reply_to(&h, 0, b"stream"), now);
    assert_eq!(poll(&mut c), Some(Ok(Bytes::from_static(b"stream"))));
}

#[test]
fn dropped_calls_are_never_sent() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = LaneDriver::new(Arc::clone(&lanes), 0, config(), now);
    drop(lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"gone")));
    lanes.send_detached(0, SEND_MESSAGES_CODE, Bytes::from_static(b"detached"));
    let mut kept = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"kept"));
    d.connected(now);
    let (login, _) = request(&mut d);
    log_in(&mut d, &login, now);
    let (h, body) = request(&mut d);
    assert_eq!(&body[..], b"detached", "sent though nobody waits");
    d.handle_input(&reply_to(&h, 0, b"ok"), now);
    let (h, body) = request(&mut d);
    assert_eq!(&body[..], b"kept");
    d.handle_input(&reply_to(&h, 0, b"ok"), now);
    assert!(poll(&mut kept).is_some());
}

#[test]
fn a_lost_connection_fails_the_call_in_flight_then_fails_fast_and_backs_off() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut sent = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"x"));
    let mut queued = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"y"));
    d.pump(now);
    request(&mut d);
    d.handle_closed(now);
    assert!(matches!(
        poll(&mut sent),
        Some(Err(Failure::Lost(SessionError::Closed)))
    ));
    assert!(matches!(poll(&mut queued), Some(Err(Failure::Lost(_)))));
    assert!(!d.has_session());
    assert_eq!(d.connect_at(), now + MIN_BACKOFF);
    // While down, calls fail at once.
    let mut fast = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"z"));
    assert!(matches!(poll(&mut fast), Some(Err(Failure::Lost(_)))));
    // Failed attempts double the pause up to the cap.
    let mut t = now + MIN_BACKOFF;
    let mut pauses = Vec::new();
    for _ in 0..8 {
        d.connect_failed("refused", t);
        pauses.push(d.connect_at() - t);
        t = d.connect_at();
    }
    assert_eq!(pauses[0], MIN_BACKOFF * 2);
    assert_eq!(*pauses.last().expect("some"), MAX_BACKOFF);
    // A new session gets a new client id, and a login resets the pause.
    d.connected(t);
    let (login, _) = request(&mut d);
    assert_ne!(login.client, 1);
    log_in(&mut d, &login, t);
    d.handle_closed(t);
    assert_eq!(d.connect_at(), t + MIN_BACKOFF);
}

#[test]
fn a_refused_login_fails_what_waits() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = LaneDriver::new(Arc::clone(&lanes), 0, config(), now);
    let mut c = lanes.call(0, GET_STREAM_CODE, Bytes::new());
    d.connected(now);
    let (login, _) = request(&mut d);
    d.handle_input(&reply_to(&login, 42, &[]), now);
    assert_eq!(
        poll(&mut c),
        Some(Err(Failure::Lost(SessionError::LoginRefused(42))))
    );
    assert!(!d.has_session());
    assert_eq!(lanes.login_refused(), Some(SessionError::LoginRefused(42)));
}

/// The lanes count answers (and refusals among them) with Iggy's time to give them, calls
/// lost without an answer, logins and failed connection attempts.
#[test]
fn lanes_count_what_they_did() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut d = up(&lanes, now);
    assert_eq!(lanes.stats().logins, 1);
    assert_eq!(lanes.stats().up, 1);
    let mut ok = lanes.call(0, GET_STREAM_CODE, Bytes::new());
    d.pump(now);
    let (h, _) = request(&mut d);
    d.handle_input(&reply_to(&h, 0, b"ok"), now + Duration::from_millis(3));
    let mut refused = lanes.call(0, GET_STREAM_CODE, Bytes::new());
    d.pump(now);
    let (h, _) = request(&mut d);
    d.handle_input(&reply_to(&h, 1010, &[]), now + Duration::from_millis(1));
    let mut lost = lanes.call(0, GET_STREAM_CODE, Bytes::new());
    d.pump(now);
    d.handle_closed(now);
    assert!(poll(&mut ok).is_some() && poll(&mut refused).is_some() && poll(&mut lost).is_some());
    d.connect_failed("refused", now);
    let stats = lanes.stats();
    assert_eq!((stats.answered, stats.refused, stats.lost), (2, 1, 1));
    assert_eq!(stats.service_time, Duration::from_millis(4));
    assert_eq!(stats.slowest, Duration::from_millis(3));
    assert_eq!((stats.logins, stats.connect_failures, stats.up), (1, 1, 0));
    assert_eq!(lanes.login_refused(), None);
    let (code, stream) = stats.commands[0];
    assert_eq!(code, GET_STREAM_CODE);
    assert_eq!((stream.answered, stream.refused, stream.lost), (2, 1, 1));
    assert_eq!(stream.buckets[5], 1, "3 ms: at most 5 ms, above 2.5 ms");
    assert_eq!(stream.buckets[3], 1, "1 ms");
}

#[test]
fn every_session_of_every_lane_is_its_own_client() {
    let mut ids = std::collections::HashSet::new();
    for lane in 0..8 {
        for session in 0..8 {
            assert!(ids.insert(session_client_id(1, lane, session)));
        }
    }
    assert!(!ids.contains(&0));
}

/// What a waiting call, and a call waited for, keep of those that wait: one waker, one
/// entry per waiting lane, however often they are polled and pumped.
#[test]
fn waiting_keeps_one_waker_and_one_entry_per_lane() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut b = up_lane(&lanes, 1, now);
    let (first, mut second) = one_then_two(&lanes);
    for _ in 0..1000 {
        b.pump(now);
        assert_eq!(poll(&mut second), None);
    }
    let s = lock(&first.0 .0);
    assert_eq!(s.then.len(), 1, "lane 1, told once");
    assert!(s.waker.is_none(), "nobody polled the first call");
    drop(s);
    let s = lock(&second.0 .0);
    assert!(s.waker.is_some() && s.then.is_empty());
}

/// A call that another lane waits for keeps no hold on the lanes: let go of with both
/// calls still queued (a gateway shutting down, a fuzzer's run ending), the lanes, their
/// queues and the calls' slots are freed.
#[test]
fn lanes_let_go_of_with_a_waited_for_call_queued_are_freed() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut b = up_lane(&lanes, 1, now);
    let (first, second) = one_then_two(&lanes);
    b.pump(now);
    assert_eq!(lock(&first.0 .0).then.len(), 1, "lane 1 waits for call 1");
    let (gone, slot) = (Arc::downgrade(&lanes), Arc::downgrade(&first.0));
    drop((b, first, second, lanes));
    assert!(gone.upgrade().is_none(), "the lanes are freed");
    assert!(slot.upgrade().is_none(), "and the call they held queued");
}

/// Call "1" on lane 0, then call "2" on lane 1 after it.
fn one_then_two(lanes: &Lanes) -> (PendingCall, PendingCall) {
    let first = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"1"));
    let after = Some(first.predecessor());
    let second = lanes.call_after(1, SEND_MESSAGES_CODE, Bytes::from_static(b"2"), after, None);
    (first, second)
}

#[test]
fn a_call_queued_after_another_lanes_call_waits_for_its_reply_and_holds_its_lane() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut a = up_lane(&lanes, 0, now);
    let mut b = up_lane(&lanes, 1, now);
    let (first, mut second) = one_then_two(&lanes);
    let mut other = lanes.call(1, GET_STREAM_CODE, Bytes::from_static(b"s"));
    let woken = lanes.lane(1).changed();
    b.pump(now);
    assert_eq!(
        b.poll_transmit(),
        None,
        "2 waits for 1, and so does the lane"
    );
    a.pump(now);
    answer(&mut a, b"1", b"r1", now + Duration::from_micros(700));
    assert!(now_or_never(woken).is_some(), "the waiting lane is told");
    b.pump(now);
    answer(&mut b, b"2", b"r2", now);
    answer(&mut b, b"s", b"stream", now);
    assert_eq!(poll(&mut second), Some(Ok(Bytes::from_static(b"r2"))));
    assert!(poll(&mut other).is_some());
    let (reply, service) = now_or_never(first.timed()).expect("replied");
    assert_eq!(reply, Ok(Bytes::from_static(b"r1")));
    let written_to_reply = Duration::from_micros(700);
    assert_eq!(service, Some(written_to_reply));
}

#[test]
fn every_lane_waiting_for_one_call_is_told() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(3));
    let mut a = up_lane(&lanes, 0, now);
    let mut b = up_lane(&lanes, 1, now);
    let mut c = up_lane(&lanes, 2, now);
    let (first, mut second) = one_then_two(&lanes);
    let mut third = lanes.call_after(
        2,
        SEND_MESSAGES_CODE,
        Bytes::from_static(b"3"),
        Some(first.predecessor()),
        None,
    );
    let (woken_b, woken_c) = (lanes.lane(1).changed(), lanes.lane(2).changed());
    b.pump(now);
    c.pump(now);
    assert_eq!((b.poll_transmit(), c.poll_transmit()), (None, None));
    a.pump(now);
    answer(&mut a, b"1", b"r1", now);
    assert!(now_or_never(woken_b).is_some() && now_or_never(woken_c).is_some());
    b.pump(now);
    c.pump(now);
    answer(&mut b, b"2", b"r2", now);
    answer(&mut c, b"3", b"r3", now);
    assert!(poll(&mut second).is_some() && poll(&mut third).is_some());
}

#[test]
fn a_call_dropped_unsent_holds_up_nobody() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut b = up_lane(&lanes, 1, now);
    // Lane 0 is not connected: its call stays queued until dropped.
    let (first, mut second) = one_then_two(&lanes);
    b.pump(now);
    assert_eq!(b.poll_transmit(), None);
    let woken = lanes.lane(1).changed();
    drop(first);
    // The queued call still holds its slot until lane 0 lets it go; a lane that comes up
    // skips it, and that wakes lane 1.
    let mut a = up_lane(&lanes, 0, now);
    a.pump(now);
    assert_eq!(a.poll_transmit(), None, "1 was dropped unsent");
    assert!(now_or_never(woken).is_some());
    b.pump(now);
    answer(&mut b, b"2", b"r2", now);
    assert!(poll(&mut second).is_some());
}

#[test]
fn a_failed_predecessor_releases_the_lane_waiting_for_it() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut a = up_lane(&lanes, 0, now);
    let mut b = up_lane(&lanes, 1, now);
    let (mut first, mut second) = one_then_two(&lanes);
    a.pump(now);
    request(&mut a);
    b.pump(now);
    assert_eq!(b.poll_transmit(), None);
    a.handle_closed(now);
    assert!(matches!(poll(&mut first), Some(Err(Failure::Lost(_)))));
    b.pump(now);
    answer(&mut b, b"2", b"r2", now);
    assert!(poll(&mut second).is_some());
}

#[test]
fn each_login_is_a_new_generation() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    assert_eq!(lanes.lane(0).generation(), Some(0));
    let mut d = up(&lanes, now);
    assert_eq!(lanes.lane(0).generation(), Some(1));
    d.handle_closed(now);
    assert_eq!(lanes.lane(0).generation(), None, "down");
    d.connected(now);
    let (login, _) = request(&mut d);
    log_in(&mut d, &login, now);
    assert_eq!(lanes.lane(0).generation(), Some(2));
}

const CLUSTER: [&str; 3] = ["127.0.0.1:8090", "127.0.0.2:8090", "127.0.0.3:8090"];

/// A driver of a pool given three nodes, logged in at the node it picks, which reports
/// `leader` as the cluster's primary; the address it connected to.
fn cluster_lane(lanes: &Arc<Lanes>, index: usize, leader: usize, now: Instant) -> LaneDriver {
    let mut d = LaneDriver::new(Arc::clone(lanes), index, config(), now);
    d.next_address();
    d.connected(now);
    let (login, _) = request(&mut d);
    d.handle_input(&reply_to(&login, 0, &login_ok(5)), now);
    if lanes.group_node(index / lanes.group(0).len()).is_none() {
        let (question, _) = request(&mut d);
        let roster: Vec<_> = CLUSTER
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, i == leader))
            .collect();
        d.handle_input(&reply_to(&question, 0, &cluster_metadata(&roster)), now);
    }
    d
}

/// Refuses `d`'s request in flight ("not admitted") on every resend until the session
/// gives up on it: the lane leaves the node, or `call` has its outcome.
fn refuse_until_given_up(
    d: &mut LaneDriver,
    call: &mut PendingCall,
    mut now: Instant,
) -> (Instant, Option<Result<Bytes, Failure>>) {
    for _ in 0..1000 {
        if let Some(outcome) = poll(call) {
            return (now, Some(outcome));
        }
        if !d.has_session() {
            return (now, None);
        }
        let mut wire = Vec::new();
        while let Some(bytes) = d.poll_transmit() {
            wire.extend_from_slice(&bytes);
        }
        for r in frames::requests(&wire, 0) {
            d.handle_input(
                &reply_to(&r.header, session::TRANSIENT_NOT_ACCEPTED, &[]),
                now,
            );
        }
        now += session::RESEND_PAUSE;
        d.handle_timeout(now);
    }
    panic!("never given up on");
}

/// A node that stops taking metadata requests (its primary role is gone) has them
/// refused: the request goes, unapplied, to the primary the next login finds, and only
/// there is it answered.
#[test]
fn a_metadata_request_a_node_will_not_take_is_sent_again_on_the_primary() {
    let mut now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut d = cluster_lane(&lanes, 0, 0, now);
    assert_eq!(d.address(), CLUSTER[0]);
    let mut call = lanes.call(0, CREATE_TOPIC_CODE, Bytes::from_static(b"topic"));
    d.pump(now);
    let (later, outcome) = refuse_until_given_up(&mut d, &mut call, now);
    assert!(later - now >= session::REDIRECT_AFTER);
    now = later;
    assert!(!d.has_session(), "the node is left");
    assert_eq!(outcome, None, "the caller still waits");
    let mut d = cluster_lane(&lanes, 0, 1, now);
    assert_eq!(d.address(), CLUSTER[1], "the next node is tried");
    d.pump(now);
    let (h, body) = request(&mut d);
    assert_eq!(&body[..], b"topic", "the same request, on the primary");
    d.handle_input(&reply_to(&h, 0, &frames::result_framed(&[], b"ok")), now);
    assert_eq!(poll(&mut call), Some(Ok(Bytes::from_static(b"ok"))));
}

/// A partition's write refused by a node, queued without a [`Reroute`], goes back to the
/// caller; the lane stays, and asks which node leads.
#[test]
fn a_partition_write_a_node_will_not_take_goes_back_to_the_caller() {
    let now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut d = cluster_lane(&lanes, 0, 0, now);
    let mut call = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"records"));
    d.pump(now);
    let (later, outcome) = refuse_until_given_up(&mut d, &mut call, now);
    assert!(later - now >= session::PARTITION_REDIRECT_AFTER);
    assert!(
        later - now < session::REDIRECT_AFTER,
        "a partition's refusals are not waited out"
    );
    assert_eq!(outcome, Some(Err(Failure::NotAdmitted)));
    assert!(d.has_session(), "the lane stays");
    let (question, _) = request(&mut d);
    assert_eq!(
        question.operation,
        Operation::NonReplicated,
        "it asks which node leads"
    );
}

/// A `SendMessages` body of `payloads` (ids from `first_id`, timestamps from `at`) to
/// `partition` of stream 1, topic "t", as Iggy's own encoder writes it.
fn append_body(partition: u32, first_id: u128, at: u64, payloads: &[&[u8]]) -> Bytes {
    use iggy_binary_protocol::requests::messages::{RawMessage, SendMessagesEncoder};
    use iggy_binary_protocol::{WireIdentifier, WirePartitioning};
    let raw: Vec<RawMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| RawMessage {
            id: first_id + i as u128,
            origin_timestamp: at + i as u64,
            headers: None,
            payload: p,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    SendMessagesEncoder::encode(
        &mut buf,
        &WireIdentifier::numeric(1),
        &WireIdentifier::named("t").expect("well-formed"),
        &WirePartitioning::PartitionId(partition),
        &raw,
    )
    .expect("well-formed");
    buf.freeze()
}

/// Iggy's confirmation of an append that landed at `base`.
fn confirmed(base: u64) -> Vec<u8> {
    use iggy_binary_protocol::responses::messages::{
        SendMessagesConfirmationResponse, SendMessagesResponse,
    };
    use iggy_binary_protocol::WireEncode;
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

fn base_of(outcome: Option<Result<Bytes, Failure>>) -> u64 {
    use iggy_binary_protocol::responses::messages::SendMessagesResponse;
    let reply = outcome.expect("answered").expect("a reply");
    SendMessagesResponse::decode(&reply)
        .expect("well-formed")
        .0
        .confirmations[0]
        .base_offset
}

/// The appends queued behind one in flight go as one request, in queue order, up to the
/// first call that is not a plain append to the same partition; each gets its own base.
#[test]
fn plain_appends_queued_behind_one_in_flight_go_as_one_request() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let a = append_body(0, 1, 100, &[b"a"]);
    let mut ca = lanes.append_after(0, a.clone(), None, None);
    d.pump(now);
    let (ha, sent) = request(&mut d);
    assert_eq!(sent, a, "alone: nothing was queued behind it");
    let b = append_body(0, 2, 101, &[b"b1", b"b2"]);
    let c = append_body(0, 4, 103, &[b"c"]);
    let other = append_body(1, 5, 104, &[b"x"]);
    let e = append_body(0, 6, 105, &[b"e"]);
    let mut cb = lanes.append_after(0, b, None, None);
    let mut cc = lanes.append_after(0, c, None, None);
    let mut co = lanes.append_after(0, other.clone(), None, None);
    let mut cm = lanes.call(0, GET_STREAM_CODE, Bytes::from_static(b"s"));
    let mut ce = lanes.append_after(0, e.clone(), None, None);
    d.pump(now);
    assert_eq!(d.poll_transmit(), None, "lockstep: b waits for a's reply");
    d.handle_input(&reply_to(&ha, 0, &confirmed(10)), now);
    assert_eq!(base_of(poll(&mut ca)), 10);
    let merged = append_body(0, 2, 101, &[b"b1", b"b2", b"c"]);
    let (h, sent) = request(&mut d);
    assert_eq!(sent, merged, "b and c as one append, in order");
    assert_eq!(d.poll_transmit(), None);
    d.handle_input(&reply_to(&h, 0, &confirmed(11)), now);
    assert_eq!(base_of(poll(&mut cb)), 11);
    assert_eq!(base_of(poll(&mut cc)), 13, "after b's two messages");
    answer(&mut d, &other, &confirmed(0), now);
    assert_eq!(base_of(poll(&mut co)), 0);
    answer(&mut d, b"s", b"stream", now);
    assert!(poll(&mut cm).is_some());
    answer(&mut d, &e, &confirmed(14), now);
    assert_eq!(base_of(poll(&mut ce)), 14);
    let stats = lanes.stats();
    assert_eq!((stats.merged, stats.merged_calls), (1, 1));
    assert_eq!(stats.answered, 5, "requests, a merged one once");
}

/// A call that waits for a call on another lane is not merged ahead of it, and none behind
/// it overtakes it; once that call is done, they go together.
#[test]
fn a_merge_stops_at_a_call_waiting_for_another_lane() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(2));
    let mut d = up(&lanes, now);
    let mut other_lane = up_lane(&lanes, 1, now);
    let first = append_body(0, 1, 100, &[b"a"]);
    let mut c1 = lanes.append_after(0, first, None, None);
    d.pump(now);
    let (h1, _) = request(&mut d);
    let mut before = lanes.call(1, GET_STREAM_CODE, Bytes::from_static(b"s"));
    other_lane.pump(now);
    let (hb, _) = request(&mut other_lane);
    let b = append_body(0, 2, 101, &[b"b"]);
    let c = append_body(0, 3, 102, &[b"c"]);
    let e = append_body(0, 4, 103, &[b"e"]);
    let mut cb = lanes.append_after(0, b.clone(), None, None);
    let mut cc = lanes.append_after(0, c, Some(before.predecessor()), None);
    let mut ce = lanes.append_after(0, e, None, None);
    d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    assert_eq!(base_of(poll(&mut c1)), 0);
    answer(&mut d, &b, &confirmed(1), now);
    assert_eq!(base_of(poll(&mut cb)), 1);
    assert_eq!(
        d.poll_transmit(),
        None,
        "c waits for the other lane; e behind it"
    );
    other_lane.handle_input(&reply_to(&hb, 0, b"stream"), now);
    assert!(poll(&mut before).is_some());
    d.pump(now);
    let (h, sent) = request(&mut d);
    assert_eq!(sent, append_body(0, 3, 102, &[b"c", b"e"]));
    d.handle_input(&reply_to(&h, 0, &confirmed(2)), now);
    assert_eq!(base_of(poll(&mut cc)), 2);
    assert_eq!(base_of(poll(&mut ce)), 3);
}

/// A call dropped before it was sent is not merged; a merged request whose callers all
/// went away still settles, and the lane goes on.
#[test]
fn dropped_appends_are_not_merged_and_merged_ones_settle_without_their_callers() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut c1 = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (h1, _) = request(&mut d);
    let cb = lanes.append_after(0, append_body(0, 2, 101, &[b"b"]), None, None);
    let cc = lanes.append_after(0, append_body(0, 3, 102, &[b"dropped"]), None, None);
    let ce = lanes.append_after(0, append_body(0, 4, 103, &[b"e"]), None, None);
    drop(cc);
    d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    assert!(poll(&mut c1).is_some());
    let (h, sent) = request(&mut d);
    let merged = {
        use iggy_binary_protocol::requests::messages::{RawMessage, SendMessagesEncoder};
        use iggy_binary_protocol::{WireIdentifier, WirePartitioning};
        let mut buf = bytes::BytesMut::new();
        SendMessagesEncoder::encode(
            &mut buf,
            &WireIdentifier::numeric(1),
            &WireIdentifier::named("t").expect("well-formed"),
            &WirePartitioning::PartitionId(0),
            &[
                RawMessage {
                    id: 2,
                    origin_timestamp: 101,
                    headers: None,
                    payload: b"b",
                },
                RawMessage {
                    id: 4,
                    origin_timestamp: 103,
                    headers: None,
                    payload: b"e",
                },
            ],
        )
        .expect("well-formed");
        buf.freeze()
    };
    assert_eq!(sent, merged, "b and e; the dropped call is left out");
    drop((cb, ce));
    d.handle_input(&reply_to(&h, 0, &confirmed(1)), now);
    let mut after = lanes.call(0, GET_STREAM_CODE, Bytes::from_static(b"s"));
    d.pump(now);
    answer(&mut d, b"s", b"stream", now);
    assert!(poll(&mut after).is_some(), "the lane goes on");
    assert_eq!(lanes.stats().merged, 1);
}

/// The appends queued behind a request in flight are merged while it is: its reply is
/// followed by theirs, in queue order, with each call's own base.
#[test]
fn appends_are_merged_while_the_request_ahead_is_in_flight() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut ca = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (ha, _) = request(&mut d);
    let mut cb = lanes.append_after(0, append_body(0, 2, 101, &[b"b1", b"b2"]), None, None);
    let mut cc = lanes.append_after(0, append_body(0, 4, 103, &[b"c"]), None, None);
    d.pump(now);
    assert_eq!(d.prepared.as_ref().map(merge::Prepared::len), Some(2));
    let mut ce = lanes.append_after(0, append_body(0, 5, 104, &[b"e"]), None, None);
    d.pump(now);
    assert_eq!(d.prepared.as_ref().map(merge::Prepared::len), Some(3));
    d.handle_input(&reply_to(&ha, 0, &confirmed(10)), now);
    assert_eq!(base_of(poll(&mut ca)), 10);
    let (h, sent) = request(&mut d);
    assert_eq!(sent, append_body(0, 2, 101, &[b"b1", b"b2", b"c", b"e"]));
    d.handle_input(&reply_to(&h, 0, &confirmed(11)), now);
    assert_eq!(base_of(poll(&mut cb)), 11);
    assert_eq!(base_of(poll(&mut cc)), 13);
    assert_eq!(base_of(poll(&mut ce)), 14);
    assert_eq!(lanes.stats().merged_calls, 2);
}

/// A call merged ahead whose caller lets go of it before the request leaves is not sent.
#[test]
fn an_append_dropped_after_it_was_merged_ahead_is_left_out() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut ca = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (ha, _) = request(&mut d);
    let b = append_body(0, 2, 101, &[b"b"]);
    let e = append_body(0, 4, 103, &[b"e"]);
    let mut cb = lanes.append_after(0, b.clone(), None, None);
    let cc = lanes.append_after(0, append_body(0, 3, 102, &[b"dropped"]), None, None);
    let mut ce = lanes.append_after(0, e.clone(), None, None);
    d.pump(now);
    assert_eq!(d.prepared.as_ref().map(merge::Prepared::len), Some(3));
    drop(cc);
    d.handle_input(&reply_to(&ha, 0, &confirmed(0)), now);
    assert!(poll(&mut ca).is_some());
    let (h, sent) = request(&mut d);
    assert_eq!(Some(sent), merge::merged(&[b, e]), "b and e only");
    d.handle_input(&reply_to(&h, 0, &confirmed(1)), now);
    assert_eq!(base_of(poll(&mut cb)), 1);
    assert_eq!(base_of(poll(&mut ce)), 2);
}

/// A call with an earlier timestamp than the request merged ahead starts the next one, and
/// the calls behind it join that one: queue order holds throughout.
#[test]
fn an_earlier_timestamp_ends_the_request_merged_ahead() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut ca = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (ha, _) = request(&mut d);
    let b = append_body(0, 2, 200, &[b"b"]);
    let c = append_body(0, 3, 150, &[b"c"]);
    let e = append_body(0, 4, 120, &[b"e"]);
    let f = append_body(0, 5, 300, &[b"f"]);
    let mut calls: Vec<PendingCall> = [&b, &c]
        .into_iter()
        .map(|body| lanes.append_after(0, body.clone(), None, None))
        .collect();
    d.pump(now);
    calls.extend([&e, &f].map(|body| lanes.append_after(0, body.clone(), None, None)));
    d.pump(now);
    assert_eq!(d.prepared.as_ref().map(merge::Prepared::len), Some(2));
    d.handle_input(&reply_to(&ha, 0, &confirmed(0)), now);
    assert!(poll(&mut ca).is_some());
    let (h, sent) = request(&mut d);
    assert_eq!(
        Some(sent),
        merge::merged(&[b, c]),
        "b and c, timed from c's"
    );
    d.pump(now);
    assert_eq!(d.prepared.as_ref().map(merge::Prepared::len), Some(2));
    d.handle_input(&reply_to(&h, 0, &confirmed(1)), now);
    let (h, sent) = request(&mut d);
    assert_eq!(Some(sent), merge::merged(&[e, f]));
    d.handle_input(&reply_to(&h, 0, &confirmed(3)), now);
    let bases: Vec<u64> = calls.iter_mut().map(|c| base_of(poll(c))).collect();
    assert_eq!(bases, [1, 2, 3, 4]);
}

/// Every call of a merged request gets its failure: a refusal, a lost connection.
#[test]
fn a_merged_request_that_fails_fails_every_call_in_it() {
    let now = Instant::now();
    let lanes = Arc::new(lanes(1));
    let mut d = up(&lanes, now);
    let mut c1 = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (h1, _) = request(&mut d);
    let mut cb = lanes.append_after(0, append_body(0, 2, 101, &[b"b"]), None, None);
    let mut cc = lanes.append_after(0, append_body(0, 3, 102, &[b"c"]), None, None);
    d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    assert!(poll(&mut c1).is_some());
    let (h, _) = request(&mut d);
    d.handle_input(&reply_to(&h, 4010, &[]), now);
    assert_eq!(poll(&mut cb), Some(Err(Failure::Status(4010))));
    assert_eq!(poll(&mut cc), Some(Err(Failure::Status(4010))));
    let mut cd = lanes.append_after(0, append_body(0, 4, 103, &[b"d"]), None, None);
    let mut ce = lanes.append_after(0, append_body(0, 5, 104, &[b"e"]), None, None);
    d.pump(now);
    let (_, sent) = request(&mut d);
    assert_eq!(sent, append_body(0, 4, 103, &[b"d", b"e"]));
    d.handle_closed(now);
    let lost = Some(Err(Failure::Lost(SessionError::Closed)));
    assert_eq!(poll(&mut cd), lost, "perhaps applied: not acknowledged");
    assert_eq!(poll(&mut ce), lost);
    let stats = lanes.stats();
    assert_eq!((stats.merged, stats.merged_calls), (2, 2));
    assert_eq!((stats.refused, stats.lost), (1, 1));
}

/// A merged write a node will not take, queued without a [`Reroute`], goes back to every
/// caller.
#[test]
fn a_merged_write_a_node_will_not_take_goes_back_to_every_caller() {
    let now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut d = cluster_lane(&lanes, 0, 0, now);
    let mut c1 = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (h1, _) = request(&mut d);
    let mut cb = lanes.append_after(0, append_body(0, 2, 101, &[b"b"]), None, None);
    let mut cc = lanes.append_after(0, append_body(0, 3, 102, &[b"c"]), None, None);
    d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    assert!(poll(&mut c1).is_some());
    let (_, outcome) = refuse_until_given_up(&mut d, &mut cb, now);
    assert_eq!(outcome, Some(Err(Failure::NotAdmitted)));
    assert_eq!(poll(&mut cc), Some(Err(Failure::NotAdmitted)));
    assert_eq!(lanes.stats().refused, 1, "one request");
}

/// Sends every refused write one lane on among the lanes from `first`, recording the
/// lanes it was refused on.
#[derive(Default)]
struct NextLane(Mutex<Vec<usize>>, usize);

impl Reroute for NextLane {
    fn reroute(&self, lanes: &Lanes, refused: usize, write: Resend<'_>) {
        lock(&self.0).push(refused);
        let first = self.1;
        write.queue(first + (refused + 1 - first) % (lanes.len() - first), None);
    }
}

/// Refuses what lane `d` has in flight ("not admitted") until the lanes count a refusal.
fn refuse_once(d: &mut LaneDriver, lanes: &Lanes, mut now: Instant) {
    let refused = lanes.stats().refused;
    while lanes.stats().refused == refused {
        let mut wire = Vec::new();
        while let Some(bytes) = d.poll_transmit() {
            wire.extend_from_slice(&bytes);
        }
        for r in frames::requests(&wire, 0) {
            d.handle_input(
                &reply_to(&r.header, session::TRANSIENT_NOT_ACCEPTED, &[]),
                now,
            );
        }
        now += session::RESEND_PAUSE;
        d.handle_timeout(now);
    }
}

/// The writes of a merged request a node will not take are sent again by the lane's
/// driver, in their order, where their [`Reroute`] says, without any caller looking (a
/// caller slow to look holds up no other); one whose caller let go is not sent again.
#[test]
fn refused_writes_are_sent_again_in_order_without_their_callers() {
    let now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut d0 = cluster_lane(&lanes, 0, 0, now);
    let mut d1 = cluster_lane(&lanes, 1, 0, now);
    let next = Arc::new(NextLane::default());
    let route = || Some(Arc::clone(&next) as Arc<dyn Reroute>);
    let mut c1 = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, route());
    d0.pump(now);
    let (h1, _) = request(&mut d0);
    let mut cb = lanes.append_after(0, append_body(0, 2, 101, &[b"b"]), None, route());
    let cd = lanes.append_after(0, append_body(0, 3, 102, &[b"dropped"]), None, route());
    let mut cc = lanes.append_after(0, append_body(0, 4, 103, &[b"c"]), None, route());
    // Waits for the send of b on lane 0, not for b's answer.
    let mut waiting = lanes.call_after(
        2,
        GET_STREAM_CODE,
        Bytes::from_static(b"after b"),
        Some(cb.predecessor()),
        None,
    );
    let mut d2 = cluster_lane(&lanes, 2, 0, now);
    d2.pump(now);
    assert!(d2.poll_transmit().is_none(), "b is not answered yet");
    d0.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    assert_eq!(base_of(poll(&mut c1)), 0);
    drop(cd);
    refuse_once(&mut d0, &lanes, now);
    assert_eq!(*lock(&next.0), vec![0, 0], "b and c, not the dropped call");
    d2.pump(now);
    answer(&mut d2, b"after b", b"stream", now);
    assert!(poll(&mut waiting).is_some(), "b's refusal let it go");
    d1.pump(now);
    let (h, sent) = request(&mut d1);
    let merged = merge::merged(&[
        append_body(0, 2, 101, &[b"b"]),
        append_body(0, 4, 103, &[b"c"]),
    ]);
    assert_eq!(
        Some(sent),
        merged,
        "b then c, merged again, with no caller polled"
    );
    d1.handle_input(&reply_to(&h, 0, &confirmed(7)), now);
    assert_eq!(base_of(poll(&mut cb)), 7);
    assert_eq!(base_of(poll(&mut cc)), 8);
    let stats = lanes.stats();
    assert_eq!((stats.merged, stats.refused), (2, 1));
}

/// A write sent again goes ahead of the writes with the same [`Reroute`] handed over after
/// it and queued where it goes, and a call that waited for its refused send is let go only
/// once it is queued there: a partition's writes keep the order they were handed over in.
#[test]
fn a_write_sent_again_goes_ahead_of_later_ones() {
    let now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut d0 = cluster_lane(&lanes, 0, 0, now);
    let mut d1 = cluster_lane(&lanes, 1, 0, now);
    let next = Arc::new(NextLane::default());
    let route = || Some(Arc::clone(&next) as Arc<dyn Reroute>);
    let mut ca = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, route());
    d0.pump(now);
    // Handed over later, on the lane a's refusal sends it to: c waits for a's send, d
    // follows c there, and another partition's write is queued between them.
    let mut cc = lanes.append_after(
        1,
        append_body(0, 2, 101, &[b"c"]),
        Some(ca.predecessor()),
        route(),
    );
    let mut other = lanes.call(1, GET_STREAM_CODE, Bytes::from_static(b"other"));
    let mut cd = lanes.append_after(1, append_body(0, 3, 102, &[b"d"]), None, route());
    d1.pump(now);
    assert!(d1.poll_transmit().is_none(), "c waits for a");
    refuse_once(&mut d0, &lanes, now);
    assert_eq!(*lock(&next.0), vec![0]);
    d1.pump(now);
    let (h, sent) = request(&mut d1);
    let merged = merge::merged(&[
        append_body(0, 1, 100, &[b"a"]),
        append_body(0, 2, 101, &[b"c"]),
    ]);
    assert_eq!(Some(sent), merged, "a, then c merged behind it");
    d1.handle_input(&reply_to(&h, 0, &confirmed(0)), now);
    assert_eq!(base_of(poll(&mut ca)), 0);
    assert_eq!(base_of(poll(&mut cc)), 1);
    d1.pump(now);
    answer(&mut d1, b"other", b"stream", now);
    assert!(poll(&mut other).is_some());
    d1.pump(now);
    let (h, sent) = request(&mut d1);
    assert_eq!(sent, append_body(0, 3, 102, &[b"d"]), "then d");
    d1.handle_input(&reply_to(&h, 0, &confirmed(2)), now);
    assert_eq!(base_of(poll(&mut cd)), 2);
}

/// A write refused on every group of lanes and once more goes back to its caller.
#[test]
fn a_write_refused_everywhere_goes_back_to_its_caller() {
    let now = Instant::now();
    let nodes = Nodes::new(CLUSTER.iter().map(|a| (*a).to_owned()));
    let lanes = Arc::new(Lanes::new(1, nodes));
    let mut drivers: Vec<LaneDriver> = (0..lanes.len())
        .map(|i| cluster_lane(&lanes, i, 0, now))
        .collect();
    // The lanes that stay on a node, in turn.
    let next = Arc::new(NextLane(Mutex::default(), 1));
    let mut call = lanes.call_after(
        1,
        SEND_MESSAGES_CODE,
        Bytes::from_static(b"records"),
        None,
        Some(Arc::clone(&next) as Arc<dyn Reroute>),
    );
    let mut lane = 1;
    let outcome = loop {
        if let Some(outcome) = poll(&mut call) {
            break outcome;
        }
        drivers[lane].pump(now);
        refuse_once(&mut drivers[lane], &lanes, now);
        lane = 1 + lane % (lanes.len() - 1);
    };
    assert_eq!(outcome, Err(Failure::NotAdmitted));
    assert_eq!(*lock(&next.0), vec![1, 2, 3, 1, 2]);
    assert_eq!(lanes.groups() + 1, 5);
}

/// A merged request keeps to its bounds: calls, bytes; and a lane told not to merge sends
/// every append alone.
#[test]
fn merges_keep_to_their_limits() {
    let now = Instant::now();
    let limits = MergeLimits {
        max_calls: 2,
        max_bytes: 4096,
    };
    for (limits, expected) in [
        (limits, vec![vec![&b"b"[..], b"c"], vec![b"d"]]),
        (
            MergeLimits::OFF,
            vec![vec![&b"b"[..]], vec![b"c"], vec![b"d"]],
        ),
    ] {
        let lanes = Arc::new(lanes(1).with_merge(limits));
        let mut d = up(&lanes, now);
        let _first = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
        d.pump(now);
        let (h1, _) = request(&mut d);
        let calls: Vec<PendingCall> = [b"b", b"c", b"d"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                lanes.append_after(
                    0,
                    append_body(0, 2 + i as u128, 101 + i as u64, &[*p]),
                    None,
                    None,
                )
            })
            .collect();
        d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
        let mut id = 2u128;
        for payloads in expected {
            let (h, sent) = request(&mut d);
            assert_eq!(sent, append_body(0, id, 100 + id as u64 - 1, &payloads));
            id += payloads.len() as u128;
            d.handle_input(&reply_to(&h, 0, &confirmed(0)), now);
        }
        drop(calls);
    }
    // A call larger than the bound alone goes alone; none joins it.
    let lanes = Arc::new(lanes(1).with_merge(MergeLimits {
        max_calls: 8,
        max_bytes: 600,
    }));
    let mut d = up(&lanes, now);
    let _first = lanes.append_after(0, append_body(0, 1, 100, &[b"a"]), None, None);
    d.pump(now);
    let (h1, _) = request(&mut d);
    let big = append_body(0, 2, 101, &[&[7; 700]]);
    let _b = lanes.append_after(0, big.clone(), None, None);
    let _c = lanes.append_after(0, append_body(0, 3, 102, &[b"c"]), None, None);
    d.handle_input(&reply_to(&h1, 0, &confirmed(0)), now);
    let (_, sent) = request(&mut d);
    assert_eq!(sent, big);
}
