//! The Iggy append the backend writes itself, against Iggy's own `SendMessagesEncoder` on the
//! same messages: both refuse, or both write the same bytes.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_core::mapping::{HeaderValue, IggyMessage};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    String(String),
    Bool(bool),
    Uint8(u8),
    Int64(i64),
    Uint64(u64),
    Float64(f64),
}

#[derive(Arbitrary, Debug)]
struct Message {
    payload: Vec<u8>,
    origin_timestamp_us: u64,
    headers: Vec<(String, Value)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    partition: u32,
    first_id: u128,
    messages: Vec<Message>,
}

fuzz_target!(|input: Input| {
    let messages: Vec<IggyMessage> = input
        .messages
        .into_iter()
        .map(|m| IggyMessage {
            payload: Bytes::from(m.payload),
            origin_timestamp_us: m.origin_timestamp_us,
            timestamp_us: 0,
            headers: m
                .headers
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Raw(b) => HeaderValue::Raw(Bytes::from(b)),
                        Value::String(s) => HeaderValue::String(s),
                        Value::Bool(b) => HeaderValue::Bool(b),
                        Value::Uint8(n) => HeaderValue::Uint8(n),
                        Value::Int64(n) => HeaderValue::Int64(n),
                        Value::Uint64(n) => HeaderValue::Uint64(n),
                        Value::Float64(n) => HeaderValue::Float64(n),
                    };
                    (k, v)
                })
                .collect(),
        })
        .collect();
    iggy_kafka_iggy::fuzz_encode(&messages, input.partition, input.first_id);
});
