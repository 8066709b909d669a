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

/// Call "1" on lane 0, then call "2" on lane 1 after it.
fn one_then_two(lanes: &Lanes) -> (PendingCall, PendingCall) {
    let first = lanes.call(0, SEND_MESSAGES_CODE, Bytes::from_static(b"1"));
    let after = Some(first.predecessor());
    let second = lanes.call_after(1, SEND_MESSAGES_CODE, Bytes::from_static(b"2"), after);
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

/// A partition's writes refused by a node go back to the caller, who knows the partition
/// and may move it; the lane stays, and asks which node leads.
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
