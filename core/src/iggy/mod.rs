//! Iggy's binary protocol, without I/O: a client [`session`] per connection and the
//! [`lane`]s that queue a backend's requests onto a pool of them.
//!
//! The codec is Iggy's own `iggy_binary_protocol` crate, pinned to the version of the
//! server line this gateway is tested with (0.9, crate `=0.11.0-edge.4`).

#[cfg(test)]
pub(crate) mod fake;
pub mod lane;
pub mod session;

pub use lane::{Lane, LaneDriver, Lanes, PendingCall, Predecessor};
pub use session::{Credentials, Event, Failure, Session, SessionConfig, SessionError};

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// Time as the runtime keeps it, for backend work that must wait (a long poll against a
/// server that cannot notify): the one place the runtime's clock and timers reach a backend.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
