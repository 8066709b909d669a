use super::*;
use crate::protocol::generated::request_header::RequestHeader;
use crate::protocol::{ApiKey, Message, Reader, Request};

fn records(n: usize, seed: u8) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            attributes: 0,
            timestamp_delta: i as i64 * 3,
            offset_delta: i as i32,
            key: match i % 3 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(vec![seed, 0xff, i as u8])),
            },
            value: match i % 4 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(vec![seed.wrapping_add(i as u8); 100 + i])),
            },
            headers: (0..i % 3)
                .map(|h| Header {
                    key: Bytes::from(if h == 0 { vec![] } else { vec![b'k', 0xfe] }),
                    value: if h == 1 {
                        None
                    } else {
                        Some(Bytes::from(vec![7u8; 300]))
                    },
                })
                .collect(),
        })
        .collect()
}

fn batch(n: usize) -> RecordBatch {
    RecordBatch {
        base_offset: 0,
        last_offset_delta: n as i32 - 1,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000 + 3 * n as i64,
        producer_id: 42,
        producer_epoch: 1,
        base_sequence: 7,
        records: records(n, 9),
        ..RecordBatch::default()
    }
}

fn budget() -> DecompressionBudget {
    DecompressionBudget::new(100 << 20)
}

#[test]
fn encode_then_decode_is_the_identity_for_every_codec() {
    for codec in Compression::ALL {
        let mut b = batch(25);
        b.attributes = 0x10; // transactional, to see the other bits survive
        let mut buf = BytesMut::new();
        b.encode(codec, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        b.encode(codec, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        let data = buf.freeze();
        let decoded = decode_batches(&data, &mut budget(), false)
            .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        b.attributes |= i16::from(codec.id());
        assert_eq!(decoded, [b.clone(), b.clone()], "{codec:?}");
        assert!(decoded[0].is_transactional());
        assert_eq!(decoded[0].compression(), Ok(codec));
    }
}

#[test]
fn uncompressed_fields_are_slices_of_the_input() {
    let mut buf = BytesMut::new();
    batch(8)
        .encode(Compression::None, &mut buf)
        .unwrap_or_else(|e| panic!("{e}"));
    let data = buf.freeze();
    let decoded = decode_batches(&data, &mut budget(), false).unwrap_or_else(|e| panic!("{e}"));
    let value = decoded[0].records[2].value.as_ref().expect("value");
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    assert!(
        range.contains(&(value.as_ptr() as usize)),
        "the value points into the request"
    );
}

#[test]
fn corruption_is_refused_with_kafkas_codes() {
    let mut buf = BytesMut::new();
    batch(5)
        .encode(Compression::None, &mut buf)
        .unwrap_or_else(|e| panic!("{e}"));
    let good = buf.freeze();

    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let err = decode_batches(&Bytes::from(flipped), &mut budget(), false).expect_err("bad CRC");
    assert!(matches!(err, BatchError::CrcMismatch { .. }));
    assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);

    let err =
        decode_batches(&good.slice(..good.len() - 1), &mut budget(), false).expect_err("truncated");
    assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);
    assert!(
        decode_batches(&good.slice(..good.len() - 1), &mut budget(), true)
            .expect("partial tail")
            .is_empty()
    );

    // Declares 6 records, holds 5: re-stamp the count and the CRC.
    let mut lying = good.to_vec();
    lying[57..61].copy_from_slice(&6i32.to_be_bytes());
    let crc = crc32c::crc32c(&lying[CRC_START..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = decode_batches(&Bytes::from(lying), &mut budget(), false).expect_err("count");
    assert_eq!(
        err,
        BatchError::RecordCountMismatch {
            declared: 6,
            found: 5
        }
    );
    assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);

    let mut magic3 = good.to_vec();
    magic3[16] = 3;
    assert_eq!(
        decode_batches(&Bytes::from(magic3), &mut budget(), false),
        Err(BatchError::UnsupportedMagic(3))
    );
}

#[test]
fn a_compressed_bomb_gets_corrupt_message_within_the_budget() {
    let b = RecordBatch {
        records: vec![Record {
            value: Some(Bytes::from(vec![0u8; 32 << 20])),
            ..Record::default()
        }],
        ..RecordBatch::default()
    };
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut buf = BytesMut::new();
        b.encode(codec, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert!(buf.len() < 2 << 20);
        let err = decode_batches(&buf.freeze(), &mut DecompressionBudget::new(1 << 20), false)
            .expect_err("bomb");
        assert_eq!(err, BatchError::TooLarge, "{codec:?}");
        assert_eq!(err.error_code(), ErrorCode::CORRUPT_MESSAGE);
    }
}

/// The records of a captured Produce request, for each codec.
fn captured(client: &str, file: &str) -> Vec<RecordBatch> {
    let records = captured_records(client, file);
    decode_batches(&records, &mut budget(), false).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The records field of a captured Produce request.
fn captured_records(client: &str, file: &str) -> Bytes {
    let path = format!(
        "{}/tests/fixtures/clients/{client}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let frame = Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let mut r = Reader::new(frame, 0);
    RequestHeader::decode(
        &mut r,
        crate::protocol::api::request_header_version(ApiKey::Produce, version),
    )
    .expect("header");
    let Ok(Request::Produce(p)) = Request::decode(ApiKey::Produce, version, &mut r) else {
        panic!("{file}")
    };
    p.topic_data[0].partition_data[0]
        .records
        .clone()
        .expect("records")
}

#[test]
fn batches_from_real_clients_decode_with_every_codec() {
    let filler = "compressible-".repeat(20);
    for (codec, name) in Compression::ALL
        .iter()
        .zip(["none", "gzip", "snappy", "lz4", "zstd"])
    {
        // kcat: "key1:<value>" with headers h1=v1 and h2=v2, then "key2:" (an empty value).
        let batches = captured("kcat", &format!("Produce-v7-{name}.bin"));
        let records: Vec<&Record> = batches.iter().flat_map(|b| &b.records).collect();
        assert_eq!(batches[0].compression(), Ok(*codec), "kcat {name}");
        assert_eq!(records.len(), 2, "kcat {name}");
        assert_eq!(records[0].key.as_deref(), Some(&b"key1"[..]));
        assert_eq!(
            records[0].value.as_deref(),
            Some(format!("{filler}{name}").as_bytes())
        );
        let headers: Vec<(&[u8], Option<&[u8]>)> = records[0]
            .headers
            .iter()
            .map(|h| (&h.key[..], h.value.as_deref()))
            .collect();
        assert_eq!(
            headers,
            [(&b"h1"[..], Some(&b"v1"[..])), (b"h2", Some(b"v2"))]
        );
        assert_eq!(records[1].key.as_deref(), Some(&b"key2"[..]));
        assert_eq!(records[1].value.as_deref(), Some(&b""[..]));

        // kafka-python: key1 with headers, then key2 with a null value, one batch per send.
        let batches = captured("kafka-python", &format!("Produce-v9-{name}.bin"));
        let records: Vec<&Record> = batches.iter().flat_map(|b| &b.records).collect();
        assert_eq!(batches[0].compression(), Ok(*codec), "kafka-python {name}");
        assert_eq!(records.len(), 2, "kafka-python {name}");
        let python_name = if name == "none" { "None" } else { name };
        assert_eq!(
            records[0].value.as_deref(),
            Some(format!("{filler}value-{python_name}").as_bytes())
        );
        assert_eq!(records[0].headers.len(), 2);
        assert_eq!(records[1].key.as_deref(), Some(&b"key2"[..]));
        assert_eq!(records[1].value, None, "a tombstone stays null");
        assert!(
            batches[0].producer_id >= 0,
            "kafka-python is idempotent: {}",
            batches[0].producer_id
        );
    }
}

#[test]
fn legacy_message_sets_from_kafka_python_decode() {
    let filler = "compressible-".repeat(20);
    for (version, names) in [
        (1, &["none", "gzip", "snappy"][..]),
        (2, &["none", "gzip", "snappy", "lz4"][..]),
    ] {
        for name in names {
            let batches = captured(
                "kafka-python-legacy",
                &format!("Produce-v{version}-{name}.bin"),
            );
            let records: Vec<&Record> = batches.iter().flat_map(|b| &b.records).collect();
            assert_eq!(records.len(), 2, "v{version} {name}");
            let python_name = if *name == "none" { "None" } else { name };
            assert_eq!(records[0].key.as_deref(), Some(&b"key1"[..]));
            assert_eq!(
                records[0].value.as_deref(),
                Some(format!("{filler}legacy-{python_name}").as_bytes())
            );
            assert_eq!(records[1].value, None, "a tombstone stays null");
            if version == 2 {
                assert!(
                    batches[0].base_timestamp > 1_600_000_000_000,
                    "magic 1 carries timestamps"
                );
            } else {
                assert_eq!(batches[0].base_timestamp, -1, "magic 0 has none");
            }
        }
    }
}

/// Property: encode → decode is the identity for generated batches of every shape, with
/// every codec (keys, values and header values null, empty or up to 2 KiB; binary and
/// repeated header keys; any timestamps, offsets and attribute bits other than the codec's).
#[test]
fn generated_batches_round_trip_with_every_codec() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..300 {
        let field = |max: u64, next: &mut dyn FnMut() -> u64| -> Option<Bytes> {
            match next() % 4 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(
                    (0..next() % max)
                        .map(|i| (i as u8) ^ (case as u8))
                        .collect::<Vec<u8>>(),
                )),
            }
        };
        let n = (next() % 40) as usize;
        let records: Vec<Record> = (0..n)
            .map(|_| Record {
                attributes: (next() % 3) as i8,
                timestamp_delta: next() as i64 >> (next() % 64),
                offset_delta: (next() >> 33) as i32,
                key: field(64, &mut next),
                value: field(2048, &mut next),
                headers: (0..next() % 4)
                    .map(|_| Header {
                        key: field(16, &mut next).unwrap_or_default(),
                        value: field(300, &mut next),
                    })
                    .collect(),
            })
            .collect();
        let batch = RecordBatch {
            base_offset: next() as i64,
            partition_leader_epoch: next() as i32,
            attributes: (next() as i16) & !0x7,
            last_offset_delta: next() as i32,
            base_timestamp: next() as i64,
            max_timestamp: next() as i64,
            producer_id: next() as i64,
            producer_epoch: next() as i16,
            base_sequence: next() as i32,
            records,
        };
        for codec in Compression::ALL {
            let mut buf = BytesMut::new();
            batch
                .encode(codec, &mut buf)
                .unwrap_or_else(|e| panic!("case {case} {codec:?}: {e}"));
            let data = buf.freeze();
            let decoded = decode_batches(&data, &mut budget(), false)
                .unwrap_or_else(|e| panic!("case {case} {codec:?}: {e}"));
            let mut expected = batch.clone();
            expected.attributes |= i16::from(codec.id());
            assert_eq!(decoded, [expected], "case {case} {codec:?}");
            assert_views_match(&data, &decoded);
        }
    }
}

/// The streaming writer writes exactly what `RecordBatch::encode` writes for the same batch,
/// including records with gaps in their offsets and timestamps out of order.
#[test]
fn the_batch_writer_matches_the_batch_encoder() {
    for (log_append, n) in [(false, 1), (false, 40), (true, 7)] {
        let mut records = records(n, 9);
        for (i, r) in records.iter_mut().enumerate() {
            r.offset_delta = i as i32 * 2;
            r.timestamp_delta = if i % 5 == 3 { -4 } else { i as i64 * 7 };
        }
        let base_timestamp = 1_700_000_000_000;
        let expected = RecordBatch {
            base_offset: 1_000,
            partition_leader_epoch: 0,
            attributes: if log_append { 0x8 } else { 0 },
            last_offset_delta: records.last().map_or(0, |r| r.offset_delta),
            base_timestamp,
            max_timestamp: base_timestamp
                + records
                    .iter()
                    .map(|r| r.timestamp_delta)
                    .max()
                    .unwrap_or(0)
                    .max(0),
            records: records.clone(),
            ..RecordBatch::default()
        };
        let mut want = BytesMut::new();
        expected
            .encode(Compression::None, &mut want)
            .expect("encode");

        let mut got = BytesMut::from(&b"prefix"[..]);
        let mut w = BatchWriter::begin(&mut got, 1_000, base_timestamp, log_append);
        for r in &records {
            w.push(
                &mut got,
                1_000 + i64::from(r.offset_delta),
                base_timestamp + r.timestamp_delta,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            )
            .expect("push");
        }
        w.finish(&mut got).expect("finish");
        assert_eq!(&got[..6], b"prefix");
        assert_eq!(&got[6..], &want[..], "{n} records, log append {log_append}");
        let decoded =
            decode_batches(&got.freeze().slice(6..), &mut budget(), false).expect("decode");
        assert_eq!(decoded, vec![expected]);
    }
}

/// The records fields real clients sent: v2 batches of every codec, and legacy message sets.
fn captured_record_sets() -> Vec<Bytes> {
    let v2 = ["none", "gzip", "snappy", "lz4", "zstd"]
        .map(|name| captured_records("kafka-python", &format!("Produce-v9-{name}.bin")));
    let legacy = ["none", "gzip", "snappy", "lz4"]
        .map(|name| captured_records("kafka-python-legacy", &format!("Produce-v2-{name}.bin")));
    v2.into_iter().chain(legacy).collect()
}

/// Collects what `decode_batches_into` hands over, with the batch each record came in.
#[derive(Default)]
struct Collect {
    begun: Vec<usize>,
    records: Vec<(i64, Record)>,
}

impl RecordSink for Collect {
    fn begin(&mut self, records: usize) {
        self.begun.push(records);
    }

    fn push(&mut self, batch: &RecordBatch, record: Record) {
        assert!(batch.records.is_empty());
        self.records.push((batch.base_offset, record));
    }
}

/// The streaming decoder hands over exactly the records `decode_batches` collects, batch
/// by batch, for real clients' batches of every codec, several batches in one field, and
/// legacy message sets; and it refuses what `decode_batches` refuses.
#[test]
fn decoding_into_a_sink_matches_collecting() {
    let mut inputs = captured_record_sets();
    let mut two = BytesMut::new();
    batch(3)
        .encode(Compression::None, &mut two)
        .expect("encode");
    let mut second = batch(5);
    second.base_offset = 3;
    second.encode(Compression::Lz4, &mut two).expect("encode");
    inputs.push(two.freeze());
    for data in &inputs {
        let want = decode_batches(data, &mut budget(), false).expect("decode");
        let mut sink = Collect::default();
        let got = decode_batches_into(data, &mut budget(), &mut sink).expect("decode into");
        assert_eq!(got.len(), want.len());
        assert_eq!(
            sink.begun,
            want.iter().map(|b| b.records.len()).collect::<Vec<_>>()
        );
        let mut expected = Vec::new();
        for (g, w) in got.iter().zip(&want) {
            assert!(g.records.is_empty());
            assert_eq!(
                &RecordBatch {
                    records: Vec::new(),
                    ..w.clone()
                },
                g
            );
            expected.extend(w.records.iter().map(|r| (w.base_offset, r.clone())));
        }
        assert_eq!(sink.records, expected);
        // A flipped byte in the last batch: both refuse it alike.
        let mut bad = data.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let bad = Bytes::from(bad);
        assert_eq!(
            decode_batches_into(&bad, &mut budget(), &mut Collect::default()).err(),
            decode_batches(&bad, &mut budget(), false).err()
        );
    }
}

/// The produce path's sink keeps bare records where they lie and maps the rest: either way it
/// holds the messages `into_iggy` maps the collected records to, for real clients' batches
/// of every codec, legacy message sets, several batches in one field (one inflated buffer
/// each) and records on both sides of the bare case (keys, headers, null and empty values,
/// negative timestamps, headers that need the envelope form, a transaction's batch).
#[test]
fn the_produce_sink_holds_what_into_iggy_maps() {
    use crate::mapping::{into_iggy, mark_transactional, IntoIggy, KafkaRecord};
    use crate::message::MessageList;
    let mut inputs = captured_record_sets();
    let mut mixed = BytesMut::new();
    batch(40)
        .encode(Compression::None, &mut mixed)
        .expect("encode");
    let mut early = batch(30);
    early.base_timestamp = 20;
    for r in &mut early.records {
        r.timestamp_delta = 10 - r.timestamp_delta;
    }
    early.encode(Compression::Lz4, &mut mixed).expect("encode");
    batch(12)
        .encode(Compression::Zstd, &mut mixed)
        .expect("encode");
    let mut txn = batch(9);
    txn.attributes = 0x10;
    txn.encode(Compression::None, &mut mixed).expect("encode");
    let mut plain_headers = batch(6);
    for (i, r) in plain_headers.records.iter_mut().enumerate() {
        r.headers = (0..i)
            .map(|h| Header {
                key: Bytes::from(format!("h{h}")),
                value: Some(Bytes::from(vec![b'v'; 1 + h])),
            })
            .collect();
    }
    plain_headers
        .encode(Compression::Snappy, &mut mixed)
        .expect("encode");
    inputs.push(mixed.freeze());
    for data in &inputs {
        let expected: Vec<_> = decode_batches(data, &mut budget(), false)
            .expect("decode")
            .iter()
            .flat_map(|b| {
                b.records.iter().map(|r| {
                    let mut msg = into_iggy(KafkaRecord {
                        timestamp_ms: b.base_timestamp + r.timestamp_delta,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        headers: r.headers.clone(),
                        ..KafkaRecord::default()
                    });
                    if b.is_transactional() {
                        mark_transactional(&mut msg, b.producer_id, b.producer_epoch);
                    }
                    msg
                })
            })
            .collect();
        let mut sink = IntoIggy::default();
        decode_batches_into(data, &mut budget(), &mut sink).expect("decode into");
        assert_eq!(sink.0, MessageList::from(expected.clone()));
        assert_eq!(sink.0.into_messages(), expected);
    }
}

#[test]
fn records_with_the_widest_small_fields_encode_as_kafka_does() {
    // Null key and value, no headers, timestamp delta -1: Kafka's bytes, written out.
    let mut buf = BytesMut::new();
    encode_record_parts(&mut buf, 0, -1, 0, None, None, &[]).expect("encode");
    assert_eq!(&buf[..], [0x0c, 0x00, 0x01, 0x00, 0x01, 0x01, 0x00]);

    // Every varint at its widest, key and value null, headers with null values: the
    // most small fields in a row.
    let header = |key: &[u8]| Header {
        key: Bytes::copy_from_slice(key),
        value: None,
    };
    let mut buf = BytesMut::new();
    encode_record_parts(
        &mut buf,
        -1,
        i64::MIN,
        i32::MIN,
        None,
        None,
        &[header(b""), header(b"k")],
    )
    .expect("encode");
    let mut want = vec![0xff];
    want.extend([0xff; 9]);
    want.push(0x01); // zigzag(i64::MIN) = u64::MAX
    want.extend([0xff, 0xff, 0xff, 0xff, 0x0f]); // zigzag(i32::MIN) = u32::MAX
    want.extend([0x01, 0x01, 0x04]); // null key, null value, two headers
    want.extend([0x00, 0x01]); // "" = null
    want.extend([0x02, b'k', 0x01]); // "k" = null
    let length = u64::from(zigzag32(want.len() as i32));
    assert!(length < 0x80);
    assert_eq!(buf[0] as u64, length);
    assert_eq!(&buf[1..], &want[..]);

    let records = vec![Record {
        attributes: 0,
        timestamp_delta: i64::MAX,
        offset_delta: i32::MAX,
        key: None,
        value: None,
        headers: vec![header(b""), header(b"k")],
    }];
    let b = RecordBatch {
        last_offset_delta: i32::MAX,
        records,
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    b.encode(Compression::None, &mut buf).expect("encode");
    let decoded = decode_batches(&buf.freeze(), &mut budget(), false).expect("decode");
    assert_eq!(decoded, vec![b]);
}

/// The views of `data` read as the owned `batches` do, field by field, and make them again.
fn assert_views_match(data: &Bytes, batches: &[RecordBatch]) {
    let views = decode_batch_views(data, &mut budget(), false).expect("views decode");
    assert_eq!(views.len(), batches.len());
    for (view, batch) in views.iter().zip(batches) {
        assert_eq!(
            view.header(),
            &RecordBatch {
                records: Vec::new(),
                ..batch.clone()
            }
        );
        assert_eq!(view.len(), batch.records.len());
        assert_eq!(view.records().len(), batch.records.len());
        for (i, (r, want)) in view.records().zip(&batch.records).enumerate() {
            assert_eq!(r.attributes(), want.attributes);
            assert_eq!(r.timestamp_delta(), want.timestamp_delta);
            assert_eq!(r.offset_delta(), want.offset_delta);
            assert_eq!(r.key(), want.key.as_deref());
            assert_eq!(r.value(), want.value.as_deref());
            assert_eq!(r.headers().len(), want.headers.len());
            let headers: Vec<_> = r.headers().collect();
            let expected: Vec<_> = want
                .headers
                .iter()
                .map(|h| HeaderView {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
                .collect();
            assert_eq!(headers, expected);
            assert_eq!(&r.into_record(), want);
            assert_eq!(
                view.record(i).map(RecordView::into_record).as_ref(),
                Some(want)
            );
        }
        assert!(view.record(batch.records.len()).is_none());
    }
    let owned: Vec<_> = views.into_iter().map(BatchView::into_batch).collect();
    assert_eq!(owned, batches);
}

/// The borrowed decode reads what the owned one does, for real clients' batches of every
/// codec, legacy message sets and several batches in one field.
#[test]
fn batch_views_read_what_decode_batches_makes() {
    let mut inputs = captured_record_sets();
    let mut several = BytesMut::new();
    for (i, codec) in Compression::ALL.into_iter().enumerate() {
        let mut b = batch(7 + i);
        b.base_offset = 100 * i as i64;
        b.encode(codec, &mut several).expect("encode");
    }
    inputs.push(several.freeze());
    for data in &inputs {
        let want = decode_batches(data, &mut budget(), false).expect("decode");
        assert_views_match(data, &want);
    }
}

/// An uncompressed batch's views borrow the input's bytes; a compressed one's, the view's
/// own buffer.
#[test]
fn batch_views_borrow_the_input_or_their_inflated_buffer() {
    for codec in [Compression::None, Compression::Zstd] {
        let mut buf = BytesMut::new();
        batch(8).encode(codec, &mut buf).expect("encode");
        let data = buf.freeze();
        let views = decode_batch_views(&data, &mut budget(), false).expect("decode");
        let value = views[0].record(2).and_then(|r| r.value()).expect("value");
        let within = |b: &Bytes| {
            let range = b.as_ptr() as usize..b.as_ptr() as usize + b.len();
            range.contains(&(value.as_ptr() as usize))
        };
        assert_eq!(within(&data), codec == Compression::None, "{codec:?}");
        assert!(within(views[0].buffer()), "{codec:?}");
    }
}

/// Both decoders refuse the same inputs with the same errors: every truncation and every
/// flipped byte of a batch field holding several batches of several codecs (CRCs
/// recomputed for flips after the CRC, so that the parser sees them), with and without a
/// partial tail allowed.
#[test]
fn batch_views_refuse_what_decode_batches_refuses() {
    let mut several = BytesMut::new();
    batch(3)
        .encode(Compression::None, &mut several)
        .expect("encode");
    batch(4)
        .encode(Compression::Lz4, &mut several)
        .expect("encode");
    let data = several.freeze();
    let first = 12 + be_i32(&data, 8) as usize;
    let agree = |input: &Bytes, what: &str| {
        for tail in [false, true] {
            let owned = decode_batches(input, &mut budget(), tail);
            let views = decode_batch_views(input, &mut budget(), tail)
                .map(|v| v.into_iter().map(BatchView::into_batch).collect::<Vec<_>>());
            assert_eq!(owned, views, "{what}, partial tail {tail}");
        }
    };
    for cut in 0..data.len() {
        agree(&data.slice(..cut), &format!("cut at {cut}"));
    }
    for at in 0..first {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = data.to_vec();
            bad[at] ^= flip;
            agree(&Bytes::from(bad.clone()), &format!("byte {at} ^ {flip:#x}"));
            if at >= CRC_START {
                let crc = crc32c::crc32c(&bad[CRC_START..first]);
                bad[17..21].copy_from_slice(&crc.to_be_bytes());
                agree(
                    &Bytes::from(bad),
                    &format!("byte {at} ^ {flip:#x}, CRC fixed"),
                );
            }
        }
    }
}

/// Lengths written in more bytes than they need (Kafka's varint reader takes them): the
/// views find each field where it is, not where a minimal encoding would put it.
#[test]
fn batch_views_read_lengths_in_overlong_varints() {
    let mut buf = BytesMut::new();
    RecordBatch::default()
        .encode(Compression::None, &mut buf)
        .expect("encode");
    let body: &[u8] = &[
        0, 0, 0, // attributes, timestamp delta, offset delta
        0x86, 0x00, b'a', b'b', b'c', // key of 3
        0x84, 0x80, 0x00, b'x', b'y', // value of 2
        0x82, 0x00, // one header
        0x82, 0x00, b'h', // its key
        0x81, 0x00, // its value, null
    ];
    buf.put_u8((body.len() as u8) << 1);
    buf.put_slice(body);
    buf[57..61].copy_from_slice(&1i32.to_be_bytes());
    seal(&mut buf, 0).expect("seal");
    let data = buf.freeze();
    let owned = decode_batches(&data, &mut budget(), false).expect("decode");
    let r = &owned[0].records[0];
    assert_eq!(r.key.as_deref(), Some(&b"abc"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"xy"[..]));
    assert_eq!(
        r.headers,
        [Header {
            key: Bytes::from_static(b"h"),
            value: None
        }]
    );
    assert_views_match(&data, &owned);
}
