//! A client of Iggy's binary protocol, without I/O in its state machines.
//!
//! - [`session`]: one client session over one byte stream (login, request numbers, resends,
//!   replies), a pure state machine.
//! - [`lane`]: the lanes that queue a backend's requests onto a pool of sessions, one Iggy
//!   connection each, with reconnection and the order of calls kept across lanes.
//! - [`merge`]: group commit, the plain appends to a partition queued one behind another on
//!   a lane sent to Iggy as one request.
//! - [`login`]: checks of other credentials against Iggy, each a login on a session of its
//!   own (how the gateway verifies SASL/PLAIN passwords on the Iggy backend).
//! - [`nodes`]: the nodes of an Iggy cluster the lanes connect to, and which one leads.
//! - [`drive`]: the one loop that moves a lane's bytes between its [`lane::LaneDriver`] and a
//!   socket, written once for every async runtime; a runtime supplies the few I/O
//!   primitives of [`drive::Runtime`].
//! - [`Clock`]: time as a runtime keeps it, for backend work that must wait.
//!
//! The codec is Iggy's own `iggy_binary_protocol` crate, pinned to the version of the
//! server line this gateway is tested with (0.9, crate `=0.11.0-edge.4`).
//!
//! With the `testing` feature, [`testing`] holds an in-process fake Iggy server speaking
//! the same wire protocol and a harness that drives a pool through it on a clock the test
//! moves by hand.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod drive;
pub mod lane;
pub mod login;
pub mod merge;
pub mod nodes;
pub mod session;
mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use lane::{
    Answered, CommandStats, Lane, LaneDriver, LaneStats, Lanes, PendingCall, Predecessor, Reroute,
    Resend,
};
pub use merge::MergeLimits;
pub use nodes::Nodes;
pub use session::{Credentials, Event, Failure, Session, SessionConfig, SessionError};

/// Iggy's request codes and message types, for the crates built on this client.
pub use iggy_binary_protocol as protocol;

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
