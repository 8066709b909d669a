//! A pool of lanes wired to a [`FakeIggy`]: each lane's frames are moved through the fake
//! server a round at a time, on a clock the test moves, and connections can be dropped
//! before or after the server applied what they carried.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::fake::FakeIggy;
use crate::lane::{LaneDriver, Lanes};
use crate::nodes::Nodes;
use crate::session::{Credentials, SessionConfig};
use crate::Clock;

/// The time now, or later by what a test moved it on; sleeps end at once unless a test
/// asks them to wait for the time to come.
#[derive(Debug, Default)]
pub struct TestClock {
    ahead: Arc<std::sync::Mutex<Duration>>,
    /// Once [frozen](Self::freeze), the instant the clock counts from instead of now.
    frozen: Arc<std::sync::OnceLock<Instant>>,
    sleeps_wait: std::sync::atomic::AtomicBool,
}

impl TestClock {
    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        *self.ahead.lock().expect("the clock") += by;
    }

    /// From now on, the clock moves only when the test moves it, so that what a test
    /// asserts of durations does not depend on how fast the machine runs it.
    pub fn freeze(&self) {
        self.frozen.get_or_init(Instant::now);
    }

    /// From now on, a sleep ends only once the clock reaches its deadline.
    pub fn sleeps_wait(&self) {
        self.sleeps_wait
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The instant a [`TestClock`] counts from: now, unless it was frozen.
fn base(frozen: &std::sync::OnceLock<Instant>) -> Instant {
    frozen.get().copied().unwrap_or_else(Instant::now)
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        base(&self.frozen) + *self.ahead.lock().expect("the clock")
    }
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if !self.sleeps_wait.load(std::sync::atomic::Ordering::Relaxed) {
            return Box::pin(std::future::ready(()));
        }
        let (ahead, frozen) = (Arc::clone(&self.ahead), Arc::clone(&self.frozen));
        Box::pin(std::future::poll_fn(move |_| {
            if base(&frozen) + *ahead.lock().expect("the clock") >= deadline {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
    }
}

/// Three lanes, their drivers, and the fake server they talk to.
#[derive(Debug)]
pub struct Pool {
    /// The server.
    pub fake: FakeIggy,
    /// The clock of the backend under test.
    pub clock: Arc<TestClock>,
    /// The lanes.
    pub lanes: Arc<Lanes>,
    /// Lane i's driver.
    pub drivers: Vec<LaneDriver>,
    /// What lane i wrote and the server has not read.
    pub wires: Vec<Vec<u8>>,
    /// The lanes' time: each round of [`Pool::serve`] is [`ROUND`] long.
    pub start: Instant,
    /// Rounds served so far.
    pub round: u32,
    /// Lane i is served every `every[i]` rounds, and each answer takes as long.
    pub every: Vec<u32>,
}

/// How long a round of [`Pool::serve`] takes on the lanes' clock.
pub const ROUND: Duration = Duration::from_micros(100);

/// A session of user `iggy` with `password`, under a client id no other pool of this
/// process has (a gateway starts with a random one: the server keeps replies per client).
#[must_use]
pub fn session(password: &str) -> SessionConfig {
    static POOLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pool = POOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SessionConfig {
        credentials: Credentials::User {
            username: "iggy".into(),
            password: SecretString::from(password.to_owned()),
        },
        client_id: (u128::from(pool) << 64) | 7,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 64 << 20,
    }
}

impl Pool {
    /// Three lanes connected to `fake`, logging in with the password `iggy`.
    #[must_use]
    pub fn new(fake: FakeIggy) -> Self {
        Self::with_password(fake, "iggy")
    }

    /// Three lanes connected to `fake`, logging in with `password`. They are given the
    /// first node; a cluster's others they learn.
    #[must_use]
    pub fn with_password(fake: FakeIggy, password: &str) -> Self {
        let seed = fake.roster.nodes[0].clone();
        Self::given(fake, session(password), vec![seed])
    }

    /// As [`Self::new`], with sessions that give a request up after `reply_timeout`
    /// without an answer (30 s otherwise, longer than [`Self::run`] waits).
    #[must_use]
    pub fn with_reply_timeout(fake: FakeIggy, reply_timeout: Duration) -> Self {
        let seed = fake.roster.nodes[0].clone();
        let config = SessionConfig {
            reply_timeout,
            ..session("iggy")
        };
        Self::given(fake, config, vec![seed])
    }

    /// Three lanes following the primary of the cluster `fake` plays, and three on each of
    /// its nodes, all of which they are given.
    #[must_use]
    pub fn cluster(fake: FakeIggy) -> Self {
        let nodes = fake.roster.nodes.clone();
        Self::given(fake, session("iggy"), nodes)
    }

    fn given(fake: FakeIggy, config: SessionConfig, addresses: Vec<String>) -> Self {
        let lanes = Arc::new(Lanes::new(3, Nodes::new(addresses)));
        let count = lanes.len();
        let now = Instant::now();
        let drivers = (0..count)
            .map(|i| {
                let mut d = LaneDriver::new(Arc::clone(&lanes), i, config.clone(), now);
                d.next_address();
                d.connected(now);
                d
            })
            .collect();
        Self {
            fake,
            clock: Arc::default(),
            lanes,
            drivers,
            wires: vec![Vec::new(); count],
            start: now,
            round: 0,
            every: vec![1; count],
        }
    }

    /// The lanes' time now.
    #[must_use]
    pub fn lane_now(&self) -> Instant {
        self.start + ROUND * self.round
    }

    /// Moves every lane's frames through the fake server once (each lane whose turn it is),
    /// to the node each is connected to. A lane whose node went down loses its connection;
    /// a lane looking for another node (not down, only between nodes) connects at once, as
    /// the runtime would.
    pub fn serve(&mut self) {
        self.round += 1;
        let now = self.lane_now();
        for (i, (d, wire)) in self.drivers.iter_mut().zip(&mut self.wires).enumerate() {
            if !self.round.is_multiple_of(self.every[i]) {
                continue;
            }
            if !d.has_session() {
                if self.lanes.lane(i).generation().is_some() && d.connect_at() <= now {
                    wire.clear();
                    connect(d, &self.fake, now);
                }
                continue;
            }
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
            d.pump(now);
            while let Some(chunk) = d.poll_transmit() {
                wire.extend_from_slice(&chunk);
            }
            if !d.has_session() {
                continue;
            }
            match self.fake.serve_at(d.address(), wire) {
                // Answered a turn of this lane later: that is how long Iggy took.
                Some(reply) if !reply.is_empty() => {
                    d.handle_input(&reply, now + ROUND * self.every[i]);
                }
                Some(_) => {}
                None => {
                    wire.clear();
                    d.handle_closed(now);
                }
            }
        }
    }

    /// Drops every lane's connection (the server went away mid-request).
    pub fn drop_connections(&mut self) {
        let now = self.lane_now();
        for (d, wire) in self.drivers.iter_mut().zip(&mut self.wires) {
            d.pump(now);
            while d.poll_transmit().is_some() {}
            wire.clear();
            d.handle_closed(now);
        }
    }

    /// The server applies what the lanes sent, then goes away before its replies leave.
    pub fn apply_then_drop_connections(&mut self) {
        let now = self.lane_now();
        for (d, wire) in self.drivers.iter_mut().zip(&mut self.wires) {
            d.pump(now);
            while let Some(chunk) = d.poll_transmit() {
                wire.extend_from_slice(&chunk);
            }
            drop(self.fake.serve(wire));
            d.handle_closed(now);
        }
    }

    /// The lanes that are down connect again (the runtime would wait for the backoff).
    pub fn reconnect(&mut self) {
        let now = self.lane_now();
        for (i, d) in self.drivers.iter_mut().enumerate() {
            if self.lanes.lane(i).generation().is_none() {
                self.wires[i].clear();
                connect(d, &self.fake, now);
            }
        }
    }

    /// Polls `fut`, serving a round between polls, until it finishes.
    ///
    /// # Panics
    /// When it has not finished after 100,000 rounds (10 s of the lanes' time).
    pub fn run<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100_000 {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            self.serve();
        }
        panic!("the future never finished");
    }
}

/// A lane driver dials the node it picks: the connection is made, or refused when the node
/// is down.
fn connect(d: &mut LaneDriver, fake: &FakeIggy, now: Instant) {
    let address = d.next_address().to_owned();
    if fake.roster.is_up(&address) {
        d.connected(now);
    } else {
        d.connect_failed("connection refused", now);
    }
}
