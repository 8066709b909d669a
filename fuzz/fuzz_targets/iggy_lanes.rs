//! Lanes whose calls wait for calls on other lanes (a partition moving to another Iggy
//! connection), under arbitrary interleavings of queueing, dropping, serving, connection
//! loss and reconnection. No call is written before the call it waits for has its answer
//! (or failed, or was dropped unwritten), none is written twice, and once every lane is up
//! and answering, every call still awaited gets an answer: nothing deadlocks.
#![no_main]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_iggy_client::testing::frames::{self, login_ok, reply};
use iggy_kafka_iggy_client::{Credentials, LaneDriver, Lanes, Nodes, PendingCall, SessionConfig};
use libfuzzer_sys::fuzz_target;

const LANES: usize = 3;
const CODE: u32 = 101;

#[derive(Debug, Arbitrary)]
enum Step {
    /// Queue a call on `lane`, after call `after` (an index into the calls so far).
    Call { lane: u8, after: Option<u8> },
    /// The caller of call `i` stops waiting for it.
    Drop(u8),
    /// The server answers what `lane` wrote.
    Serve(u8),
    /// `lane`'s connection fails.
    Close(u8),
    /// `lane` connects again (if it has no session).
    Connect(u8),
}

struct Call {
    lane: usize,
    after: Option<usize>,
    /// `None` once the caller stopped waiting.
    pending: Option<PendingCall>,
    written: bool,
    /// Answered, or failed with its connection, after it was written.
    finished: bool,
}

/// One lane's driver and the server's side of its connection.
struct Link {
    driver: LaneDriver,
    /// Bytes written and not yet read by the server.
    wire: Vec<u8>,
    /// How much of `wire` was looked at as it was written.
    seen: usize,
    /// The call written and not yet answered.
    in_flight: Option<usize>,
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
    now: Instant,
}

impl World {
    /// Every lane that was told of new calls (or of a call it waits for) looks at its queue,
    /// as its task would when woken, and writes what it can; each call is checked as it is
    /// written.
    fn pump(&mut self) {
        for i in 0..LANES {
            let l = &mut self.links[i];
            if l.changed.as_mut().is_none_or(|c| ready(c)) {
                l.changed = Some(Box::pin(self.lanes.lane(i).changed()));
                l.driver.pump(self.now);
            }
            while let Some(b) = l.driver.poll_transmit() {
                l.wire.extend_from_slice(&b);
            }
            for r in frames::requests(&l.wire, l.seen) {
                self.links[i].seen = r.end;
                if !r.is_login() {
                    let id = usize::from_le_bytes(r.body[..8].try_into().expect("an id"));
                    self.written(i, id);
                }
            }
        }
    }

    /// The server reads lane `i`'s requests and answers each; whether it answered any.
    fn serve(&mut self, i: usize) -> bool {
        let mut written: VecDeque<_> = frames::requests(&self.links[i].wire, 0).into();
        let Some(end) = written.back().map(|r| r.end) else {
            return false;
        };
        self.links[i].wire.drain(..end);
        self.links[i].seen -= end;
        while let Some(r) = written.pop_front() {
            if r.is_login() {
                let answer = reply(&r.header, 0, &login_ok(1));
                self.links[i].driver.handle_input(&answer, self.now);
            } else {
                let id = usize::from_le_bytes(r.body[..8].try_into().expect("an id"));
                self.links[i].in_flight = None;
                self.calls[id].finished = true;
                self.links[i]
                    .driver
                    .handle_input(&reply(&r.header, 0, &r.body), self.now);
            }
            self.pump();
        }
        true
    }

    /// Lane `lane` wrote call `id`.
    fn written(&mut self, lane: usize, id: usize) {
        let call = &self.calls[id];
        assert_eq!(call.lane, lane, "written on its own lane");
        assert!(!call.written, "call {id} written twice");
        if let Some(p) = call.after {
            let before = &self.calls[p];
            assert!(
                !before.written || before.finished,
                "call {id} written while call {p}, which it waits for, had no answer"
            );
        }
        // A call written after one that waits for it broke the order.
        for (later, c) in self.calls.iter().enumerate() {
            assert!(
                !(c.after == Some(id) && c.written),
                "call {id} written after call {later}, which waits for it"
            );
        }
        self.calls[id].written = true;
        self.links[lane].in_flight = Some(id);
    }

    fn close(&mut self, i: usize) {
        if !self.links[i].driver.has_session() {
            return;
        }
        if let Some(id) = self.links[i].in_flight.take() {
            self.calls[id].finished = true;
        }
        self.links[i].wire.clear();
        self.links[i].seen = 0;
        self.links[i].driver.handle_closed(self.now);
    }

    fn connect(&mut self, i: usize) {
        if !self.links[i].driver.has_session() {
            self.links[i].wire.clear();
            self.links[i].seen = 0;
            self.links[i].driver.connected(self.now);
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let now = Instant::now();
    let lanes = Arc::new(Lanes::new(LANES, Nodes::new(["127.0.0.1:8090".to_owned()])));
    let config = SessionConfig {
        credentials: Credentials::User {
            username: "u".into(),
            password: "p".to_owned().into(),
        },
        client_id: 1,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 1 << 16,
    };
    let links = (0..LANES)
        .map(|i| Link {
            driver: LaneDriver::new(Arc::clone(&lanes), i, config.clone(), now),
            wire: Vec::new(),
            seen: 0,
            in_flight: None,
            changed: None,
        })
        .collect();
    let mut w = World {
        lanes,
        links,
        calls: Vec::new(),
        now,
    };
    for step in steps.into_iter().take(512) {
        w.now += Duration::from_millis(1);
        match step {
            Step::Call { lane, after } => {
                let lane = usize::from(lane) % LANES;
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
                let pending = w.lanes.call_after(lane, CODE, payload, predecessor);
                w.calls.push(Call {
                    lane,
                    after,
                    pending: Some(pending),
                    written: false,
                    finished: false,
                });
            }
            Step::Drop(i) => {
                if let Some(c) = w.calls.get_mut(usize::from(i)) {
                    c.pending = None;
                }
            }
            Step::Serve(i) => {
                w.serve(usize::from(i) % LANES);
            }
            Step::Close(i) => w.close(usize::from(i) % LANES),
            Step::Connect(i) => w.connect(usize::from(i) % LANES),
        }
        w.pump();
    }
    // Every lane up and answering: every call still awaited gets its answer.
    for i in 0..LANES {
        w.connect(i);
    }
    w.pump();
    let mut quiet = 0;
    while quiet < 2 {
        let mut any = false;
        for i in 0..LANES {
            any |= w.serve(i);
        }
        w.pump();
        quiet = if any { 0 } else { quiet + 1 };
    }
    for (id, c) in w.calls.iter_mut().enumerate() {
        if let Some(p) = c.pending.as_mut() {
            assert!(ready(p), "call {id} on lane {} never answered", c.lane);
        }
    }
});
