//! Decodes one ~1 MiB batch of 100 B records ITERATIONS times, and nothing else: run under
//! callgrind (`benches/decode-instructions.sh`) it counts the instructions a decode costs, a
//! figure that does not move with the machine's load as timings do. The decoders:
//! `ours` (`decode_batch_views`: records borrowed from the input), `ours-owned`
//! (`decode_batches`: owned `Record`s) and `kafka-protocol` (`RecordBatchDecoder::decode`).
//! Each leaves every record's offset and timestamp deltas, key, value and headers readable.
//!
//! usage: decode_batches ours|ours-owned|kafka-protocol ITERATIONS

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::records::{
    decode_batch_views, decode_batches, Compression, DecompressionBudget, Record, RecordBatch,
};
use kafka_protocol::records::RecordBatchDecoder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, iterations) = match &args[..] {
        [_, w, n] => (w.as_str(), n.parse::<usize>().expect("ITERATIONS")),
        _ => {
            eprintln!("usage: decode_batches ours|ours-owned|kafka-protocol ITERATIONS");
            std::process::exit(2);
        }
    };
    let value = Bytes::from(vec![b'x'; 100]);
    let count: i32 = (1 << 20) / 100;
    let batch = RecordBatch {
        last_offset_delta: count - 1,
        records: (0..count)
            .map(|i| Record {
                offset_delta: i,
                value: Some(value.clone()),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    batch.encode(Compression::None, &mut buf).expect("encode");
    // As a request's bytes arrive: one buffer that the records are sliced from.
    let wire = Bytes::from(buf.to_vec());
    let mut records = 0;
    for _ in 0..iterations {
        records += match which {
            "ours" => {
                let mut budget = DecompressionBudget::new(1 << 30);
                let batches = decode_batch_views(&wire, &mut budget, false).expect("decode");
                black_box(batches)[0].len()
            }
            "ours-owned" => {
                let mut budget = DecompressionBudget::new(1 << 30);
                let batches = decode_batches(&wire, &mut budget, false).expect("decode");
                black_box(batches)[0].records.len()
            }
            "kafka-protocol" => {
                let batch = RecordBatchDecoder::decode(&mut wire.clone()).expect("decode");
                black_box(batch).records.len()
            }
            other => panic!("unknown decoder {other}"),
        };
    }
    black_box(records);
}
