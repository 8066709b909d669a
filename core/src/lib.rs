//! The sans-IO core of the Iggy Kafka gateway.
#![forbid(unsafe_code)]

pub mod protocol;
