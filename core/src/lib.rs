//! The sans-IO core of the Iggy Kafka gateway.
//!
//! It owns the Kafka codec ([`protocol`], generated from Kafka's JSON schemas), the table of
//! served APIs ([`api`]), the per-connection state machine ([`connection::Connection`]) and
//! the vocabulary of commands it asks a backend to run ([`backend`]). It does no I/O and
//! reads no clock: bytes, completions and the current time come in as arguments; response
//! bytes, backend commands and deadlines come out. [`driver`] is the runtime-neutral glue
//! that hands commands to a [`backend::Backend`], so the runtime adapters stay thin, and
//! everything here is tested without sockets. [`connection`] documents the call order.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authz;
pub mod backend;
pub mod client_info;
pub mod close;
pub mod config;
pub mod connection;
pub mod driver;
pub mod group;
mod handlers;
pub mod mapping;
pub mod message;
pub mod producers;
pub mod protocol;
pub mod quotas;
pub mod records;
pub mod sasl;
pub mod stats;
pub mod topic_config;
pub mod txn;
pub mod txn_index;
pub mod work;

pub use close::CloseReason;
pub use config::{Config, SecurityProtocol, WallClock};
pub use connection::Connection;
pub use stats::{ApiStats, ConnectionStats};
