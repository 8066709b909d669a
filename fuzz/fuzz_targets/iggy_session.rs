//! An Iggy session fed whatever a broken or hostile server might send: arbitrary bytes in
//! arbitrary chunks, interleaved with requests and time, and a cluster's answers ("not
//! committed yet", "not admitted") in any order. It must never panic, answer each request
//! at most once, report a request stalled at most once, never give up on a request as
//! unapplied ("not admitted") once a node said it took it, and end (if it ends) with
//! exactly one `Closed`.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_iggy_client::protocol::consensus::{Command, Operation, HEADER_SIZE};
use iggy_kafka_iggy_client::session::{TRANSIENT_NOT_ACCEPTED, TRANSIENT_NOT_COMMITTED};
use iggy_kafka_iggy_client::testing::frames::{self, reply_to_number};
use iggy_kafka_iggy_client::{Credentials, Event, Failure, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Input(Vec<u8>),
    /// A well-formed reply header to the request in flight, with this status and body.
    Reply {
        status: u32,
        body: Vec<u8>,
        login: bool,
    },
    /// A reply header to the request in flight claiming a body past the session's limit
    /// by `by` bytes; the bytes come with later steps, or never.
    Oversized {
        status: u32,
        by: u16,
    },
    Send {
        code: u16,
        payload: Vec<u8>,
    },
    /// A cluster's transient answer to the request in flight: "not committed yet" (57, the
    /// node took it) or "not admitted" (58).
    Transient {
        taken: bool,
    },
    Wait(u16),
    Close,
}

const MAX_REPLY: usize = 1 << 16;

fn reply(request: u64, login: bool, status: u32, body: &[u8]) -> Vec<u8> {
    let operation = if login {
        Operation::Register
    } else {
        Operation::NonReplicated
    };
    reply_to_number(operation, request, status, body)
}

fuzz_target!(|steps: Vec<Step>| {
    let start = Instant::now();
    let mut now = start;
    let mut s = Session::new(
        SessionConfig {
            credentials: Credentials::User {
                username: "u".into(),
                password: "p".to_owned().into(),
            },
            client_id: 1,
            reply_timeout: Duration::from_secs(30),
            max_reply_bytes: MAX_REPLY,
        },
        now,
    );
    let mut sent: u64 = 0;
    let mut replies: u64 = 0;
    let mut closed = 0;
    let mut request = 0u64;
    let mut wire = Vec::new();
    // Of the request in flight: whether a node said it took it, and whether it was
    // reported stalled.
    let mut taken = false;
    let mut stalled = false;
    for step in steps {
        // Only a request sent and not yet answered can be taken.
        let in_flight = s.is_ready() && replies < sent;
        match step {
            Step::Input(b) => s.handle_input(&b, now),
            Step::Reply {
                status,
                body,
                login,
            } => {
                taken |= in_flight && !login && status == TRANSIENT_NOT_COMMITTED;
                s.handle_input(&reply(request, login, status, &body), now);
            }
            Step::Transient { taken: took } => {
                let status = if took {
                    TRANSIENT_NOT_COMMITTED
                } else {
                    TRANSIENT_NOT_ACCEPTED
                };
                taken |= in_flight && took;
                s.handle_input(&reply(request, false, status, &[]), now);
            }
            Step::Oversized { status, by } => {
                let mut r = reply(request, false, status, &[]);
                let size = HEADER_SIZE + MAX_REPLY + 1 + usize::from(by);
                r[48..52].copy_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
                s.handle_input(&r, now);
            }
            Step::Send { code, payload } => {
                if s.send(u32::from(code), Bytes::from(payload), now).is_ok() {
                    sent += 1;
                }
            }
            Step::Wait(ms) => {
                now += Duration::from_millis(u64::from(ms));
                s.handle_timeout(now);
            }
            Step::Close => s.handle_closed(),
        }
        // What the session writes must be whole request frames, as a server reads them.
        while let Some(t) = s.poll_transmit() {
            wire.extend_from_slice(&t);
        }
        let written = frames::requests(&wire, 0);
        for r in &written {
            assert_eq!(r.header.command, Command::Request);
            request = r.header.request;
        }
        if let Some(last) = written.last() {
            wire.drain(..last.end);
        }
        while let Some(e) = s.poll_event() {
            match e {
                Event::Reply(r) => {
                    assert!(
                        !(taken && r == Err(Failure::NotAdmitted)),
                        "a request a node took was given up on as unapplied"
                    );
                    replies += 1;
                    taken = false;
                    stalled = false;
                }
                Event::Stalled(_) => {
                    assert!(!stalled, "a request reported stalled twice");
                    stalled = true;
                }
                Event::Closed(_) => closed += 1,
                Event::Ready { .. } => {}
            }
        }
        assert!(replies <= sent, "{replies} replies to {sent} requests");
        assert!(closed <= 1);
        if let Some(t) = s.poll_timeout() {
            assert!(t >= start);
        }
    }
});
