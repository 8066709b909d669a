//! Iggy's binary protocol, without I/O: a client [`session`] per connection and the
//! [`lane`]s that queue a backend's requests onto a pool of them.
//!
//! The codec is Iggy's own `iggy_binary_protocol` crate, pinned to the version of the
//! server line this gateway is tested with (0.9, crate `=0.11.0-edge.4`).

#[cfg(test)]
pub(crate) mod fake;
pub mod lane;
pub mod session;

pub use lane::{Lane, LaneDriver, Lanes, PendingCall};
pub use session::{Credentials, Event, Failure, Session, SessionConfig, SessionError};
