//! What the backend's tests and its fuzzer drive it with: the client's pool of lanes wired
//! to its fake Iggy server ([`Pool`]), and the backend on top of it.
// The fuzzer uses less of it than the tests do.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod script;

use std::sync::Arc;

use iggy_kafka_core::backend::{Backend, Command, Completion, Execution};
use iggy_kafka_iggy_client::testing::Pool;
use iggy_kafka_iggy_client::Clock;

use crate::{ConnectError, IggyBackend, IggyConfig};

/// The backend over a [`Pool`].
pub(crate) trait BackendPool {
    fn connect(&mut self) -> Result<IggyBackend, ConnectError>;
    fn connect_with(&mut self, config: IggyConfig) -> Result<IggyBackend, ConnectError>;
    fn backend(&mut self) -> IggyBackend;
    fn exec(&mut self, backend: &IggyBackend, command: Command) -> Completion;
    /// A gateway restart: a new pool and backend over the same server.
    fn restart(self) -> (Pool, IggyBackend);
}

impl BackendPool for Pool {
    fn connect(&mut self) -> Result<IggyBackend, ConnectError> {
        self.connect_with(IggyConfig {
            seed: 42,
            ..IggyConfig::default()
        })
    }

    fn connect_with(&mut self, config: IggyConfig) -> Result<IggyBackend, ConnectError> {
        let lanes = Arc::clone(&self.lanes);
        let clock: Arc<dyn Clock> = self.clock.clone();
        self.run(IggyBackend::connect(lanes, clock, config))
    }

    fn backend(&mut self) -> IggyBackend {
        self.connect().unwrap_or_else(|e| panic!("connect: {e}"))
    }

    fn exec(&mut self, backend: &IggyBackend, command: Command) -> Completion {
        match backend.execute(command) {
            Execution::Done(c) => c,
            Execution::Pending(f) => self.run(f),
        }
    }

    fn restart(self) -> (Pool, IggyBackend) {
        let mut pool = Pool::new(self.fake);
        let backend = pool.backend();
        (pool, backend)
    }
}
