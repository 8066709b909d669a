//! The sans-IO core of the Iggy Kafka gateway.
//!
//! It owns the Kafka codec ([`protocol`], generated from Kafka's JSON schemas), the table of
//! served APIs ([`api`]) and the per-connection state machine ([`connection::Connection`]).
//! It does no I/O and reads no clock: bytes and the current time come in as arguments,
//! response bytes and deadlines come out, so the runtime adapters stay thin and everything
//! here is tested without sockets.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod backend;
pub mod connection;
pub mod driver;
pub mod error_code;
pub mod frame;
mod handlers;
pub mod mapping;
pub mod protocol;
pub mod records;
pub mod topic_config;

pub use connection::{CloseReason, Config, Connection};
