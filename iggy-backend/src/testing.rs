//! What the backend's tests and its fuzzer drive it with: a fake Iggy server, and a harness
//! that moves the lanes' frames through it with time as an input.
// The fuzzer uses less of it than the tests do.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod fake;
pub(crate) mod script;

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use iggy_kafka_core::backend::{Backend, Command, Completion, Execution};
use iggy_kafka_core::iggy::{Clock, Credentials, LaneDriver, Lanes, SessionConfig};
use secrecy::SecretString;

use crate::{IggyBackend, IggyConfig};
use fake::FakeIggy;

/// The time now, or later by what a test moved it on; sleeps end at once unless a test
/// asks them to wait for the time to come.
#[derive(Default)]
pub(crate) struct TestClock {
    ahead: Arc<std::sync::Mutex<Duration>>,
    sleeps_wait: std::sync::atomic::AtomicBool,
}

impl TestClock {
    pub(crate) fn advance(&self, by: Duration) {
        *self.ahead.lock().expect("the clock") += by;
    }

    pub(crate) fn sleeps_wait(&self) {
        self.sleeps_wait
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.ahead.lock().expect("the clock")
    }
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if !self.sleeps_wait.load(std::sync::atomic::Ordering::Relaxed) {
            return Box::pin(std::future::ready(()));
        }
        let ahead = Arc::clone(&self.ahead);
        Box::pin(std::future::poll_fn(move |_| {
            if Instant::now() + *ahead.lock().expect("the clock") >= deadline {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
    }
}

pub(crate) struct Harness {
    pub(crate) fake: FakeIggy,
    pub(crate) clock: Arc<TestClock>,
    pub(crate) lanes: Arc<Lanes>,
    pub(crate) drivers: Vec<LaneDriver>,
    pub(crate) wires: Vec<Vec<u8>>,
    /// The lanes' time: each round of [`Harness::serve`] is [`ROUND`] long.
    pub(crate) start: Instant,
    pub(crate) round: u32,
    /// Lane i is served every `every[i]` rounds, and each answer takes as long.
    pub(crate) every: Vec<u32>,
}

/// How long a round of [`Harness::serve`] takes on the lanes' clock.
pub(crate) const ROUND: Duration = Duration::from_micros(100);

pub(crate) fn session(password: &str) -> SessionConfig {
    SessionConfig {
        credentials: Credentials::User {
            username: "iggy".into(),
            password: SecretString::from(password.to_owned()),
        },
        client_id: 7,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 64 << 20,
    }
}

impl Harness {
    pub(crate) fn new(fake: FakeIggy) -> Self {
        Self::with_password(fake, "iggy")
    }

    pub(crate) fn with_password(fake: FakeIggy, password: &str) -> Self {
        let lanes = Arc::new(Lanes::new(3));
        let now = Instant::now();
        let drivers = (0..3)
            .map(|i| {
                let mut d = LaneDriver::new(Arc::clone(&lanes), i, session(password), now);
                d.connected(now);
                d
            })
            .collect();
        Self {
            fake,
            clock: Arc::default(),
            lanes,
            drivers,
            wires: vec![Vec::new(); 3],
            start: now,
            round: 0,
            every: vec![1; 3],
        }
    }

    pub(crate) fn lane_now(&self) -> Instant {
        self.start + ROUND * self.round
    }

    /// Moves every lane's frames through the fake server once (each lane whose turn it is).
    pub(crate) fn serve(&mut self) {
        self.round += 1;
        let now = self.lane_now();
        for (i, (d, wire)) in self.drivers.iter_mut().zip(&mut self.wires).enumerate() {
            if !self.round.is_multiple_of(self.every[i]) {
                continue;
            }
            d.pump(now);
            while let Some(chunk) = d.poll_transmit() {
                wire.extend_from_slice(&chunk);
            }
            let reply = self.fake.serve(wire);
            if !reply.is_empty() {
                // Answered a turn of this lane later: that is how long Iggy took.
                d.handle_input(&reply, now + ROUND * self.every[i]);
            }
        }
    }

    /// Drops every lane's connection (the server went away mid-request).
    pub(crate) fn drop_connections(&mut self) {
        let now = self.lane_now();
        for (d, wire) in self.drivers.iter_mut().zip(&mut self.wires) {
            d.pump(now);
            while d.poll_transmit().is_some() {}
            wire.clear();
            d.handle_closed(now);
        }
    }

    /// The server applies what the lanes sent, then goes away before its replies leave.
    pub(crate) fn apply_then_drop_connections(&mut self) {
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

    /// The lanes connect again (the runtime would wait for the backoff).
    pub(crate) fn reconnect(&mut self) {
        let now = self.lane_now();
        for (i, d) in self.drivers.iter_mut().enumerate() {
            if self.lanes.lane(i).generation().is_none() {
                d.connected(now);
            }
        }
    }

    pub(crate) fn run<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            self.serve();
        }
        panic!("the future never finished");
    }

    pub(crate) fn connect(&mut self) -> Result<IggyBackend, String> {
        self.connect_with(IggyConfig {
            seed: 42,
            ..IggyConfig::default()
        })
    }

    pub(crate) fn connect_with(&mut self, config: IggyConfig) -> Result<IggyBackend, String> {
        let lanes = Arc::clone(&self.lanes);
        let clock: Arc<dyn Clock> = self.clock.clone();
        self.run(IggyBackend::connect(lanes, clock, config))
    }

    pub(crate) fn backend(&mut self) -> IggyBackend {
        self.connect().unwrap_or_else(|e| panic!("connect: {e}"))
    }

    pub(crate) fn exec(&mut self, backend: &IggyBackend, command: Command) -> Completion {
        match backend.execute(command) {
            Execution::Done(c) => c,
            Execution::Pending(f) => self.run(f),
        }
    }

    /// A gateway restart: a new pool and backend over the same server.
    pub(crate) fn restart(self) -> (Self, IggyBackend) {
        let mut h = Self::new(self.fake);
        let backend = h.backend();
        (h, backend)
    }
}
