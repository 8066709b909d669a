//! Record-batch decode and encode (with CRC), ours beside the `kafka-protocol` crate's on the
//! same batches, and the record ↔ Iggy message mapping.
//!
//! ```text
//! cargo bench -p iggy-kafka-core --bench records
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use iggy_kafka_core::mapping::{from_iggy, to_iggy, IntoIggy, KafkaRecord};
use iggy_kafka_core::records::{
    decode_batch_views, decode_batches, decode_batches_into, Compression, DecompressionBudget,
    Record, RecordBatch,
};
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};

/// About 1 MiB of records of `size` value bytes, no key, no headers, in one batch.
fn batch(size: usize) -> RecordBatch {
    let n = (1 << 20) / size;
    RecordBatch {
        last_offset_delta: n as i32 - 1,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        records: (0..n)
            .map(|i| Record {
                offset_delta: i as i32,
                value: Some(Bytes::from(
                    (0..size).map(|j| (i + j % 17) as u8).collect::<Vec<u8>>(),
                )),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    }
}

fn kp_records(b: &RecordBatch) -> Vec<KpRecord> {
    b.records
        .iter()
        .map(|r| KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(r.offset_delta),
            sequence: -1,
            timestamp: b.base_timestamp + r.timestamp_delta,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect()
}

fn encoded(b: &RecordBatch, codec: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    b.encode(codec, &mut buf).unwrap();
    buf.freeze()
}

fn bench_uncompressed(c: &mut Criterion) {
    for size in [100usize, 1024] {
        let b = batch(size);
        let wire = encoded(&b, Compression::None);
        let kp = kp_records(&b);
        let mut g = c.benchmark_group(format!("batch/{size}B/none"));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        // Records borrowed from the input: every field readable, nothing built per record.
        g.bench_function("decode/ours", |bench| {
            bench.iter(|| {
                decode_batch_views(
                    black_box(&wire),
                    &mut DecompressionBudget::new(usize::MAX),
                    false,
                )
                .unwrap()
            })
        });
        g.bench_function("decode owned/ours", |bench| {
            bench.iter(|| {
                decode_batches(
                    black_box(&wire),
                    &mut DecompressionBudget::new(usize::MAX),
                    false,
                )
                .unwrap()
            })
        });
        // What the produce path does: the batch straight into Iggy messages.
        g.bench_function("decode into iggy messages/ours", |bench| {
            bench.iter(|| {
                let mut sink = IntoIggy::default();
                decode_batches_into(
                    black_box(&wire),
                    &mut DecompressionBudget::new(usize::MAX),
                    &mut sink,
                )
                .unwrap();
                sink.0
            })
        });
        g.bench_function("decode/kafka-protocol", |bench| {
            bench.iter(|| RecordBatchDecoder::decode(&mut black_box(wire.clone())).unwrap())
        });
        g.bench_function("encode/ours", |bench| {
            let mut buf = BytesMut::with_capacity(wire.len());
            bench.iter(|| {
                buf.clear();
                black_box(&b).encode(Compression::None, &mut buf).unwrap();
            })
        });
        g.bench_function("encode/kafka-protocol", |bench| {
            let mut buf = BytesMut::with_capacity(wire.len());
            let opts = RecordEncodeOptions {
                version: 2,
                compression: KpCompression::None,
            };
            bench.iter(|| {
                buf.clear();
                RecordBatchEncoder::encode(&mut buf, black_box(&kp), &opts).unwrap();
            })
        });
        g.finish();
    }
}

fn bench_compressed(c: &mut Criterion) {
    for size in [100usize, 1024] {
        let b = batch(size);
        let plain_len = encoded(&b, Compression::None).len() as u64;
        let mut g = c.benchmark_group(format!("batch/{size}B/compressed"));
        // Throughput in uncompressed bytes, so that codecs compare on the same work.
        g.throughput(Throughput::Bytes(plain_len));
        g.sample_size(20);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let wire = encoded(&b, codec);
            g.bench_with_input(
                BenchmarkId::new("decode", format!("{codec:?}")),
                &wire,
                |bench, wire| {
                    bench.iter(|| {
                        decode_batches(
                            black_box(wire),
                            &mut DecompressionBudget::new(usize::MAX),
                            false,
                        )
                        .unwrap()
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new("encode", format!("{codec:?}")),
                &b,
                |bench, b| {
                    let mut buf = BytesMut::new();
                    bench.iter(|| {
                        buf.clear();
                        b.encode(codec, &mut buf).unwrap();
                    })
                },
            );
        }
        g.finish();
    }
}

fn bench_mapping(c: &mut Criterion) {
    let records: Vec<KafkaRecord> = (0..10_000)
        .map(|i| KafkaRecord {
            timestamp_ms: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![i as u8; 100])),
            headers: vec![iggy_kafka_core::records::Header {
                key: Bytes::from_static(b"trace"),
                value: Some(Bytes::from_static(b"abc")),
            }],
            ..KafkaRecord::default()
        })
        .collect();
    let messages: Vec<_> = records.iter().map(to_iggy).collect();
    let mut g = c.benchmark_group("mapping/100B");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("to_iggy", |bench| {
        bench.iter(|| black_box(&records).iter().map(to_iggy).count())
    });
    g.bench_function("from_iggy", |bench| {
        bench.iter(|| black_box(&messages).iter().map(from_iggy).count())
    });
    g.finish();
}

criterion_group!(benches, bench_uncompressed, bench_compressed, bench_mapping);
criterion_main!(benches);
