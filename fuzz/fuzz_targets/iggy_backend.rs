//! The Iggy backend under arbitrary scripts of Kafka-side commands (create, delete, append,
//! read, commit, offset queries, listings, on real, made-up and the gateway's own topics),
//! Iggy failures (refusals, connections lost before or after the server applied a request,
//! appends left prepared by a dying primary that commit later or never, topics deleted and
//! created again behind the gateway's back) and gateway restarts, against
//! a fake Iggy server: panics when an acknowledged record or commit reads back otherwise.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    iggy_kafka_iggy::fuzzing::script(script);
});
