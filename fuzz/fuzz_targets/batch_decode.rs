//! Record-batch decoding with each decompressor. The input is wrapped in a valid v2 batch
//! header (right length, codec and CRC) so that the fuzzer reaches the decompressors and the
//! record parser instead of stopping at the CRC; one mode in eight feeds the raw bytes, CRC
//! and all. A small budget makes bombs cheap to find. Where a batch decodes, encoding it
//! again and decoding gives the same records; the streaming decoder (`decode_batches_into`)
//! agrees with the collecting one on every input, records and errors alike, and so does the
//! borrowed one (`decode_batch_views`, each view read field by field), and the produce
//! path's sink (`IntoIggy`, which keeps bare records where they lie) holds the messages
//! `into_iggy` maps the collected records to.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use iggy_kafka_core::mapping::{into_iggy, IntoIggy, KafkaRecord};
use iggy_kafka_core::records::{
    decode_batch_views, decode_batches, decode_batches_into, BatchView, Compression,
    DecompressionBudget, Record, RecordBatch, RecordSink,
};
use libfuzzer_sys::fuzz_target;

const BUDGET: usize = 1 << 20;

fuzz_target!(|input: (u8, i32, &[u8])| {
    let (mode, count, body) = input;
    let data = if mode & 0x7 == 7 {
        Bytes::copy_from_slice(body)
    } else {
        let codec = Compression::ALL[usize::from(mode >> 3) % Compression::ALL.len()];
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((49 + body.len()) as i32);
        b.put_i32(-1);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(i16::from(codec.id()));
        b.put_i32(0);
        b.put_i64(0);
        b.put_i64(0);
        b.put_i64(-1);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i32(count);
        b.put_slice(body);
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    };
    let decoded = decode_batches(&data, &mut DecompressionBudget::new(BUDGET), false);
    let mut sink = Collect(Vec::new());
    let streamed = decode_batches_into(&data, &mut DecompressionBudget::new(BUDGET), &mut sink);
    let views = decode_batch_views(&data, &mut DecompressionBudget::new(BUDGET), false);
    match (&decoded, &views) {
        (Ok(d), Ok(v)) => {
            assert_eq!(d.len(), v.len());
            for (batch, view) in d.iter().zip(v) {
                assert_views_read(batch, view);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("the owned and borrowed decoders disagree: {a:?} / {b:?}"),
    }
    match (&decoded, &streamed) {
        (Ok(d), Ok(s)) => {
            let records: Vec<&Record> = d.iter().flat_map(|b| &b.records).collect();
            assert_eq!(records, sink.0.iter().collect::<Vec<_>>());
            assert_eq!(d.len(), s.len());
            let mut mapped = IntoIggy::default();
            decode_batches_into(&data, &mut DecompressionBudget::new(BUDGET), &mut mapped)
                .expect("decodes as before");
            let expected: Vec<_> = d
                .iter()
                .flat_map(|b| {
                    b.records.iter().map(|r| {
                        into_iggy(KafkaRecord {
                            timestamp_ms: b.base_timestamp.wrapping_add(r.timestamp_delta),
                            key: r.key.clone(),
                            value: r.value.clone(),
                            headers: r.headers.clone(),
                            ..KafkaRecord::default()
                        })
                    })
                })
                .collect();
            assert_eq!(mapped.0.into_messages(), expected);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("the decoders disagree: {a:?} / {b:?}"),
    }
    let Ok(batches) = decoded else {
        return;
    };
    let mut again = BytesMut::new();
    for batch in &batches {
        batch
            .encode(batch.compression().expect("decoded codec"), &mut again)
            .expect("a decoded batch re-encodes");
    }
    let back = decode_batches(
        &again.freeze(),
        &mut DecompressionBudget::new(usize::MAX),
        false,
    )
    .expect("re-encoded batches decode");
    assert_eq!(back.len(), batches.len());
    for (a, b) in back.iter().zip(&batches) {
        assert_eq!(a.records, b.records);
    }
});

/// The view reads as the owned batch, field by field, and makes it again.
fn assert_views_read(batch: &RecordBatch, view: &BatchView<'_>) {
    assert_eq!(view.header().records, []);
    assert_eq!(view.header().base_offset, batch.base_offset);
    assert_eq!(view.header().attributes, batch.attributes);
    assert_eq!(view.len(), batch.records.len());
    for (r, want) in view.records().zip(&batch.records) {
        assert_eq!(r.attributes(), want.attributes);
        assert_eq!(r.timestamp_delta(), want.timestamp_delta);
        assert_eq!(r.offset_delta(), want.offset_delta);
        assert_eq!(r.key(), want.key.as_deref());
        assert_eq!(r.value(), want.value.as_deref());
        assert_eq!(r.headers().len(), want.headers.len());
        for (h, w) in r.headers().zip(&want.headers) {
            assert_eq!(h.key, &w.key[..]);
            assert_eq!(h.value, w.value.as_deref());
        }
        assert_eq!(&r.into_record(), want);
    }
}

struct Collect(Vec<Record>);

impl RecordSink for Collect {
    fn begin(&mut self, _: usize) {}

    fn push(&mut self, _: &RecordBatch, record: Record) {
        self.0.push(record);
    }
}

/// CRC-32C (Castagnoli), bitwise: the fuzz target must not share the code under test.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
