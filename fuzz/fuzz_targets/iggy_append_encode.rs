//! The Iggy append the backend writes itself, against Iggy's own `SendMessagesEncoder` on the
//! same messages: both refuse, or both write the same bytes.
#![no_main]

use iggy_kafka_core::mapping::IggyMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, u128, Vec<IggyMessage>)| {
    let (partition, first_id, messages) = input;
    iggy_kafka_iggy::fuzz_encode(&messages, partition, first_id);
});
