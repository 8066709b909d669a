//! The topic mapping's options, parsed from arbitrary text, and its lookups both ways: a
//! mapping that is taken must be one-to-one for every name asked.
//!
//! The input is text in five fields separated by NUL bytes: `--stream`, `--map-topics`,
//! `--map-streams`, Kafka names to look up (one per line), and Iggy topics to name (one per
//! line, `STREAM_INDEX/TOPIC`), so that the seeds are readable files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let mut next = || fields.next().unwrap_or_default();
    let (default_stream, topics, streams) = (next(), next(), next());
    let names: Vec<&str> = next().split('\n').collect();
    let iggy: Vec<(usize, &str)> = next()
        .split('\n')
        .filter_map(|l| {
            let (index, topic) = l.split_once('/')?;
            Some((index.parse().ok()?, topic))
        })
        .collect();
    iggy_kafka_iggy::fuzzing::mapping(default_stream, topics, streams, &names, &iggy);
});
