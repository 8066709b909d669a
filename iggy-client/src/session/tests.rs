use super::*;
use crate::testing::frames::{self, login_ok, reply as reply_to, result_framed};
use iggy_binary_protocol::codes::{
    CREATE_TOPIC_CODE, GET_STREAM_CODE, SEND_MESSAGES_CODE, STORE_CONSUMER_OFFSET_CODE,
};
use iggy_binary_protocol::consensus::EvictionReason;

const CLIENT: u128 = 0xfeed_beef;

/// Everything the session wants written, as the server would read it.
fn take_request(s: &mut Session) -> (RequestHeader, Bytes) {
    let r = frames::take_request(|| s.poll_transmit());
    (r.header, r.body)
}

fn config(credentials: Credentials) -> SessionConfig {
    SessionConfig {
        credentials,
        client_id: CLIENT,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 1 << 20,
    }
}

fn user() -> Credentials {
    Credentials::User {
        username: "iggy".into(),
        password: SecretString::from("secret"),
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn logged_in(now: Instant) -> Session {
    let mut s = Session::new(config(user()), now);
    let (login, _) = take_request(&mut s);
    s.handle_input(&reply_to(&login, 0, &login_ok(77)), now);
    assert!(s.is_ready());
    events(&mut s);
    s
}

#[test]
fn login_registers_then_binds_the_session() {
    let now = Instant::now();
    let mut s = Session::new(config(user()), now);
    assert!(!s.is_ready());
    let (login, body) = take_request(&mut s);
    assert_eq!(login.command, Command::Request);
    assert_eq!(login.operation, Operation::Register);
    assert_eq!((login.request, login.session, login.client), (0, 0, CLIENT));
    let (decoded, _) = LoginRegisterRequest::decode(&body).expect("a login body");
    assert_eq!(decoded.username.as_str(), "iggy");
    assert_eq!(decoded.version_info.protocol_version, IGGY_PROTOCOL_VERSION);

    // The reply arrives one byte at a time.
    for b in reply_to(&login, 0, &login_ok(77)) {
        s.handle_input(&[b], now);
    }
    assert_eq!(
        events(&mut s),
        vec![Event::Ready {
            session: 77,
            server_version: "0.9.0".into()
        }]
    );
    assert!(s.is_ready());
}

#[test]
fn a_token_logs_in_with_the_pat_body() {
    let now = Instant::now();
    let mut s = Session::new(config(Credentials::Token(SecretString::from("tok"))), now);
    let (login, body) = take_request(&mut s);
    assert_eq!(login.operation, Operation::Register);
    let (decoded, _) = LoginRegisterWithPatRequest::decode(&body).expect("a PAT login body");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&decoded.token), "tok");
    assert!(!format!(
        "{:?}",
        config(Credentials::Token(SecretString::from("tok")))
    )
    .contains("tok"));
}

#[test]
fn request_numbers_follow_the_plane() {
    let now = Instant::now();
    let mut s = logged_in(now);
    let mut sent = Vec::new();
    for code in [
        CREATE_TOPIC_CODE,
        SEND_MESSAGES_CODE,
        GET_STREAM_CODE,
        CREATE_TOPIC_CODE,
        STORE_CONSUMER_OFFSET_CODE,
    ] {
        s.send(code, Bytes::from_static(b"x"), now).expect("ready");
        assert!(!s.is_ready(), "lockstep: one request at a time");
        assert!(s.send(code, Bytes::new(), now).is_err());
        let (h, body) = take_request(&mut s);
        assert_eq!(&body[..], b"x");
        assert_eq!((h.session, h.client), (77, CLIENT));
        sent.push((
            h.operation,
            h.request,
            h.reserved[..4].to_vec(),
            h.request_checksum,
        ));
        let reply = if h.operation.is_result_framed() {
            result_framed(&[], b"ok")
        } else {
            b"ok".to_vec()
        };
        s.handle_input(&reply_to(&h, 0, &reply), now);
        assert_eq!(
            events(&mut s),
            vec![Event::Reply(Ok(Bytes::from_static(b"ok")))]
        );
    }
    let stamp = u128::from(XxHash3_64::oneshot(b"x"));
    assert_eq!(
        sent,
        vec![
            // Metadata takes the next number and a stamp; the partition plane and reads
            // reuse the current number; reads carry their code.
            (Operation::CreateTopic, 1, vec![0; 4], stamp),
            (Operation::SendMessages, 2, vec![0; 4], 0),
            (
                Operation::NonReplicated,
                2,
                GET_STREAM_CODE.to_le_bytes().to_vec(),
                0
            ),
            (Operation::CreateTopic, 2, vec![0; 4], stamp),
            (Operation::StoreConsumerOffset, 3, vec![0; 4], 0),
        ]
    );
}

#[test]
fn not_committed_is_resent_unchanged_after_a_pause() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.send(CREATE_TOPIC_CODE, Bytes::from_static(b"topic"), now)
        .expect("ready");
    let first = take_request(&mut s);
    s.handle_input(&reply_to(&first.0, TRANSIENT_NOT_COMMITTED, &[]), now);
    assert!(events(&mut s).is_empty(), "not an answer yet");
    assert_eq!(s.poll_transmit(), None, "not resent at once");
    assert_eq!(s.poll_timeout(), Some(now + RESEND_PAUSE));
    s.handle_timeout(now + RESEND_PAUSE / 2);
    assert_eq!(s.poll_transmit(), None);
    s.handle_timeout(now + RESEND_PAUSE);
    let again = take_request(&mut s);
    assert_eq!(bytemuck::bytes_of(&again.0), bytemuck::bytes_of(&first.0));
    assert_eq!(again.1, first.1);
    // A result-framed transient answer counts the same.
    let later = now + RESEND_PAUSE;
    s.handle_input(
        &reply_to(&again.0, 0, &result_framed(&[TRANSIENT_NOT_ACCEPTED], &[])),
        later,
    );
    s.handle_timeout(later + RESEND_PAUSE);
    let third = take_request(&mut s);
    assert_eq!(third.0.request, first.0.request);
    s.handle_input(&reply_to(&third.0, 0, &result_framed(&[], b"done")), later);
    assert_eq!(
        events(&mut s),
        vec![Event::Reply(Ok(Bytes::from_static(b"done")))]
    );
    assert!(s.is_ready());
}

/// A node that keeps refusing to admit a request is given up on: after `REDIRECT_AFTER`
/// for a metadata request, `PARTITION_REDIRECT_AFTER` for a partition's write. The request
/// fails as not admitted, safe to send elsewhere, and the session goes on. One the node said
/// it took ("not committed yet") is never given up on that way: only the reply timeout ends
/// it. A request that stalls is reported once.
#[test]
fn a_request_a_node_does_not_admit_is_given_up_on_and_a_taken_one_is_not() {
    let now = Instant::now();
    let mut s = logged_in(now);
    for (code, patience) in [
        (CREATE_TOPIC_CODE, REDIRECT_AFTER),
        (SEND_MESSAGES_CODE, PARTITION_REDIRECT_AFTER),
    ] {
        s.send(code, Bytes::from_static(b"m"), now).expect("ready");
        let mut t = now;
        let mut stalled = 0;
        loop {
            let (h, _) = take_request(&mut s);
            s.handle_input(&reply_to(&h, TRANSIENT_NOT_ACCEPTED, &[]), t);
            let got = events(&mut s);
            stalled += got
                .iter()
                .filter(|e| **e == Event::Stalled(TRANSIENT_NOT_ACCEPTED))
                .count();
            if got.contains(&Event::Reply(Err(Failure::NotAdmitted))) {
                break;
            }
            assert!(t < now + patience, "given up on in time");
            t += RESEND_PAUSE;
            s.handle_timeout(t);
        }
        assert!(t >= now + patience);
        assert_eq!(
            stalled,
            usize::from(patience >= STALL_REPORT_AFTER),
            "reported once"
        );
        assert!(s.is_ready(), "the session goes on");
    }

    // "Not committed yet" first: the request may be applied, so it stays on this session.
    let mut s = logged_in(now);
    s.send(CREATE_TOPIC_CODE, Bytes::from_static(b"topic"), now)
        .expect("ready");
    let (h, _) = take_request(&mut s);
    s.handle_input(&reply_to(&h, TRANSIENT_NOT_COMMITTED, &[]), now);
    let mut t = now;
    while t < now + REDIRECT_AFTER * 3 {
        t += RESEND_PAUSE;
        s.handle_timeout(t);
        let (h, _) = take_request(&mut s);
        s.handle_input(&reply_to(&h, TRANSIENT_NOT_ACCEPTED, &[]), t);
        assert!(
            events(&mut s)
                .iter()
                .all(|e| matches!(e, Event::Stalled(_))),
            "still waiting"
        );
    }
    s.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reply(Err(Failure::Lost(SessionError::Timeout(
                Duration::from_secs(30)
            )))),
            Event::Closed(SessionError::Timeout(Duration::from_secs(30)))
        ]
    );
}

#[test]
fn errors_come_back_per_request_and_keep_the_session() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.send(SEND_MESSAGES_CODE, Bytes::from_static(b"m"), now)
        .expect("ready");
    let (h, _) = take_request(&mut s);
    s.handle_input(&reply_to(&h, 2010, &[]), now);
    assert_eq!(
        events(&mut s),
        vec![Event::Reply(Err(Failure::Status(2010)))]
    );
    s.send(CREATE_TOPIC_CODE, Bytes::from_static(b"t"), now)
        .expect("ready");
    let (h, _) = take_request(&mut s);
    s.handle_input(&reply_to(&h, 0, &result_framed(&[2013], &[])), now);
    assert_eq!(
        events(&mut s),
        vec![Event::Reply(Err(Failure::Status(2013)))]
    );
    assert!(s.is_ready());
}

/// A poll can ask for more than a session accepts: that reply fails its request alone, is
/// read past however it arrives, and the session goes on.
#[test]
fn a_reply_too_large_fails_its_request_and_is_read_past() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.send(SEND_MESSAGES_CODE, Bytes::from_static(b"m"), now)
        .expect("ready");
    let (h, _) = take_request(&mut s);
    let big = vec![7u8; (1 << 20) + 1];
    let mut wire = reply_to(&h, 0, &big);
    // The next request's reply follows on the same stream.
    let mut next = None;
    for (i, chunk) in wire.split_off(0).chunks(100_000).enumerate() {
        s.handle_input(chunk, now);
        if i == 0 {
            assert_eq!(
                events(&mut s),
                vec![Event::Reply(Err(Failure::TooLarge(
                    HEADER_SIZE + big.len()
                )))]
            );
            assert!(s.is_ready());
            s.send(SEND_MESSAGES_CODE, Bytes::from_static(b"n"), now)
                .expect("ready");
            next = Some(take_request(&mut s).0);
        }
    }
    assert_eq!(events(&mut s), vec![]);
    let next = next.expect("sent");
    s.handle_input(&reply_to(&next, 0, b"ok"), now);
    assert_eq!(
        events(&mut s),
        vec![Event::Reply(Ok(Bytes::from_static(b"ok")))]
    );
    assert!(s.is_ready());
}

#[test]
fn a_server_that_closes_mid_request_loses_it() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.send(SEND_MESSAGES_CODE, Bytes::from_static(b"m"), now)
        .expect("ready");
    let (h, _) = take_request(&mut s);
    // Half a reply, then the end of the stream.
    s.handle_input(&reply_to(&h, 0, b"abc")[..100], now);
    s.handle_closed();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reply(Err(Failure::Lost(SessionError::Closed))),
            Event::Closed(SessionError::Closed)
        ]
    );
    assert!(s.is_closed());
    assert!(s.send(1, Bytes::new(), now).is_err());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn an_unanswered_request_times_out() {
    let now = Instant::now();
    let mut s = logged_in(now);
    s.send(SEND_MESSAGES_CODE, Bytes::from_static(b"m"), now)
        .expect("ready");
    take_request(&mut s);
    let deadline = now + Duration::from_secs(30);
    assert_eq!(s.poll_timeout(), Some(deadline));
    s.handle_timeout(deadline);
    let timeout = SessionError::Timeout(Duration::from_secs(30));
    assert_eq!(
        events(&mut s),
        vec![
            Event::Reply(Err(Failure::Lost(timeout.clone()))),
            Event::Closed(timeout)
        ]
    );
}

#[test]
fn refused_login_and_eviction_end_the_session() {
    let now = Instant::now();
    let mut s = Session::new(config(user()), now);
    let (login, _) = take_request(&mut s);
    s.handle_input(&reply_to(&login, 42, &[]), now);
    assert_eq!(
        events(&mut s),
        vec![Event::Closed(SessionError::LoginRefused(42))]
    );

    let mut s = logged_in(now);
    let eviction = EvictionHeader::new(0, 0, 0, CLIENT, EvictionReason::NoSession);
    s.handle_input(bytemuck::bytes_of(&eviction), now);
    assert_eq!(
        events(&mut s),
        vec![Event::Closed(SessionError::Evicted(
            EvictionReason::NoSession as u8
        ))]
    );
    assert!(SessionError::LoginRefused(42).refuses_credentials());
    assert!(!SessionError::Evicted(EvictionReason::NoSession as u8).refuses_credentials());

    // Iggy 0.9 answers a login with a bad password by evicting the session.
    let mut s = Session::new(config(user()), now);
    let _ = take_request(&mut s);
    let eviction = EvictionHeader::new(0, 0, 0, CLIENT, EvictionReason::InvalidCredentials);
    s.handle_input(bytemuck::bytes_of(&eviction), now);
    let closed = events(&mut s);
    assert_eq!(
        closed,
        vec![Event::Closed(SessionError::Evicted(
            EvictionReason::InvalidCredentials as u8
        ))]
    );
    let Some(Event::Closed(e)) = closed.first() else {
        panic!("closed")
    };
    assert!(e.refuses_credentials());
    assert_eq!(
        e.to_string(),
        "evicted by the server: invalid credentials (reason 9)"
    );
}

#[test]
fn malformed_replies_close_with_a_protocol_error() {
    let now = Instant::now();
    type Corrupt = Box<dyn Fn(&RequestHeader) -> Vec<u8>>;
    let cases: Vec<Corrupt> = vec![
        // A size field smaller than a header.
        Box::new(|h| {
            let mut r = reply_to(h, 0, &[]);
            r[48..52].copy_from_slice(&10u32.to_le_bytes());
            r
        }),
        // Larger than the reply limit, and not a successful reply to the request in flight.
        Box::new(|h| {
            let mut r = reply_to(h, 2010, &[]);
            r[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
            r
        }),
        Box::new(|h| {
            let mut other = *h;
            other.request += 1;
            let mut r = reply_to(&other, 0, &[]);
            r[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
            r
        }),
        // A reply to another request number.
        Box::new(|h| {
            let mut other = *h;
            other.request += 5;
            reply_to(&other, 0, &[])
        }),
        // An unknown command byte.
        Box::new(|h| {
            let mut r = reply_to(h, 0, &[]);
            r[std::mem::offset_of!(ReplyHeader, command)] = 200;
            r
        }),
        // A result section that claims more entries than it has.
        Box::new(|h| reply_to(h, 0, &9u32.to_le_bytes())),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut s = logged_in(now);
        s.send(CREATE_TOPIC_CODE, Bytes::from_static(b"t"), now)
            .expect("ready");
        let (h, _) = take_request(&mut s);
        s.handle_input(&case(&h), now);
        let ev = events(&mut s);
        assert!(
            matches!(
                ev.as_slice(),
                [
                    Event::Reply(Err(Failure::Lost(SessionError::Protocol(_)))),
                    Event::Closed(SessionError::Protocol(_))
                ]
            ),
            "case {i}: {ev:?}"
        );
    }
}

#[test]
fn arbitrary_input_never_panics() {
    let now = Instant::now();
    let mut seed = 0x1234_5678_u64;
    for _ in 0..2000 {
        let mut s = logged_in(now);
        s.send(CREATE_TOPIC_CODE, Bytes::from_static(b"t"), now)
            .expect("ready");
        let (h, _) = take_request(&mut s);
        let mut frame = reply_to(&h, 0, &result_framed(&[], b"payload"));
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = usize::try_from(seed % frame.len() as u64).expect("small");
            frame[at] = (seed >> 32) as u8;
        }
        s.handle_input(&frame, now);
        events(&mut s);
    }
}

/// Something that is not Iggy answers the login and hangs up: the session says so, rather
/// than that the connection closed.
#[test]
fn a_server_that_is_not_iggy_is_named_as_such() {
    let now = Instant::now();
    let mut s = Session::new(config(user()), now);
    let _ = take_request(&mut s);
    s.handle_input(
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n",
        now,
    );
    s.handle_closed();
    let closed = events(&mut s);
    let [Event::Closed(SessionError::Protocol(why))] = closed.as_slice() else {
        panic!("{closed:?}")
    };
    assert!(why.contains("not an Iggy reply"), "{why}");
    assert!(why.contains("\"HTTP/1.1 400 Bad\""), "{why}");

    // A server that hangs up without a word is a closed connection, as before.
    let mut s = Session::new(config(user()), now);
    let _ = take_request(&mut s);
    s.handle_closed();
    assert_eq!(events(&mut s), vec![Event::Closed(SessionError::Closed)]);
}
