//! The Iggy append the backend writes itself, against Iggy's own `SendMessagesEncoder` on the
//! same messages: both refuse, or both write the same bytes. Messages go in mapped, or bare
//! as slices of one shared buffer (as a decoded batch's records do), or bare from elsewhere
//! (copied in). Plain appends of the same messages in parts, merged as a lane merges them
//! (group commit), must be the bytes of one append of them all.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_core::message::{IggyMessage, MessageList};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Item {
    Mapped(IggyMessage),
    Slice { start: u16, len: u16, origin: u64 },
    Elsewhere { payload: Vec<u8>, origin: u64 },
}

fuzz_target!(|input: (u32, u128, Vec<u8>, Vec<Item>)| {
    let (partition, first_id, shared, items) = input;
    let shared = Bytes::from(shared);
    let mut messages = MessageList::default();
    for item in items {
        match item {
            Item::Mapped(m) => messages.push(m),
            Item::Slice { start, len, origin } => {
                let start = usize::from(start).min(shared.len());
                let end = (start + usize::from(len)).min(shared.len());
                messages.push_bare(&shared, &shared[start..end], origin);
            }
            Item::Elsewhere { payload, origin } => messages.push_bare(&shared, &payload, origin),
        }
    }
    iggy_kafka_iggy::fuzzing::encode(&messages, partition, first_id);
});
