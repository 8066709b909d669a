//! What the Iggy backend reads out of Iggy's replies — polled message batches and their
//! user headers, and the records of the committed-offsets log and of the SCRAM credentials
//! topic — from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    iggy_kafka_iggy::fuzzing::decode(data);
});
