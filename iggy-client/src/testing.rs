//! What tests and fuzzers drive this client, and what is built on it, with: Iggy's framing
//! seen from the server's side ([`frames`]), an in-process fake server ([`FakeIggy`]), and a
//! pool of lanes wired to it on a clock the test moves ([`Pool`]).
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

pub mod fake;
pub mod frames;
pub mod pool;

pub use fake::FakeIggy;
pub use pool::{session, Pool, TestClock, ROUND};
