//! Requests captured from real clients (`cargo run --example capture`; see that file) decode
//! as expected and re-encode to the very same bytes.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::api::request_header_version;
use iggy_kafka_core::protocol::generated::request_header::RequestHeader;
use iggy_kafka_core::protocol::{ApiKey, Message, Reader, Request};

struct Captured {
    file: String,
    key: ApiKey,
    version: i16,
    header: RequestHeader,
    request: Request,
}

fn load(client: &str) -> Vec<Captured> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clients")
        .join(client);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let frame = Bytes::from(std::fs::read(&path).expect("read"));
            let key =
                ApiKey::from_i16(i16::from_be_bytes([frame[0], frame[1]])).expect("known key");
            let version = i16::from_be_bytes([frame[2], frame[3]]);
            assert!(
                file.starts_with(&format!("{}-v{version}", key.name())),
                "{file}"
            );
            let mut r = Reader::new(frame.clone(), 0);
            let hv = request_header_version(key, version);
            let header =
                RequestHeader::decode(&mut r, hv).unwrap_or_else(|e| panic!("{file}: {e}"));
            let request =
                Request::decode(key, version, &mut r).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(r.remaining(), 0, "{file}: bytes after the body");
            // Golden bytes: our encoding of what we decoded is exactly what the client sent.
            let mut out = BytesMut::new();
            header.encode(&mut out, hv).expect("header");
            request.encode(&mut out, version).expect("body");
            assert_eq!(&out[..], &frame[..], "{file}: re-encoding differs");
            Captured {
                file,
                key,
                version,
                header,
                request,
            }
        })
        .collect()
}

/// The magic and compression codec of the first batch (v2: attributes at byte 21) or legacy
/// message (attributes at byte 17).
fn batch_codec(records: &Bytes, magic: i8) -> (i8, i16) {
    let attributes = if magic == 2 {
        i16::from_be_bytes([records[21], records[22]])
    } else {
        i16::from(records[17])
    };
    (records[16] as i8, attributes & 7)
}

fn check_client(client: &str, client_id: &str, software: &str, apis: &[(ApiKey, i16)]) {
    let captured = load(client);
    let seen: Vec<(ApiKey, i16)> = captured.iter().map(|c| (c.key, c.version)).collect();
    for api in apis {
        assert!(seen.contains(api), "{client}: no {api:?} captured");
    }
    for c in &captured {
        let id = c.header.client_id.as_deref().unwrap_or_default();
        assert!(id.starts_with(client_id), "{}: client id {id}", c.file);
        match &c.request {
            Request::ApiVersions(r) if c.version >= 3 => {
                assert_eq!(r.client_software_name.as_str(), software, "{}", c.file);
                assert!(!r.client_software_version.is_empty());
            }
            Request::ApiVersions(_) => {}
            Request::Metadata(r) => {
                let topics: Vec<_> = r
                    .topics
                    .iter()
                    .flatten()
                    .filter_map(|t| t.name.as_deref())
                    .collect();
                assert!(
                    topics.iter().all(|t| *t == "golden"),
                    "{}: {topics:?}",
                    c.file
                );
            }
            Request::Produce(r) => {
                assert_eq!(r.topic_data.len(), 1);
                assert_eq!(r.topic_data[0].name.as_str(), "golden");
                let part = &r.topic_data[0].partition_data[0];
                assert_eq!(part.index, 0);
                let records = part.records.as_ref().expect("records");
                let expected = ["none", "gzip", "snappy", "lz4", "zstd"]
                    .iter()
                    .position(|z| c.file.ends_with(&format!("-{z}.bin")))
                    .expect("codec in name");
                let magic = if c.version >= 3 {
                    2
                } else if c.version == 2 {
                    1
                } else {
                    0
                };
                assert_eq!(
                    batch_codec(records, magic),
                    (magic, expected as i16),
                    "{}",
                    c.file
                );
                assert!(r.acks == -1 || r.acks == 1, "{}: acks {}", c.file, r.acks);
            }
            Request::ListOffsets(r) => assert_eq!(r.topics[0].name.as_str(), "golden"),
            Request::Fetch(r) => {
                assert_eq!(r.topics[0].topic.as_str(), "golden");
                assert_eq!(r.topics[0].partitions[0].fetch_offset, 0);
            }
            Request::InitProducerId(r) => assert!(r.transactional_id.is_none()),
            other => panic!("{}: unexpected {other:?}", c.file),
        }
        assert!(c.version >= 0);
    }
}

#[test]
fn kcat_requests_decode_as_expected() {
    check_client(
        "kcat",
        "rdkafka",
        "librdkafka",
        &[
            (ApiKey::ApiVersions, 3),
            (ApiKey::Metadata, 4),
            (ApiKey::Produce, 7),
            (ApiKey::Fetch, 11),
        ],
    );
}

#[test]
fn kafkajs_requests_decode_as_expected() {
    check_client(
        "kafkajs",
        "kafkajs-golden",
        "",
        &[
            (ApiKey::ApiVersions, 2),
            (ApiKey::Metadata, 6),
            (ApiKey::Produce, 7),
        ],
    );
}

#[test]
fn kafka_python_legacy_requests_decode_as_expected() {
    // api_version (0, 9): Produce v1, magic 0; (0, 10, 0): Produce v2, magic 1.
    check_client(
        "kafka-python-legacy",
        "kafka-python",
        "",
        &[
            (ApiKey::Produce, 1),
            (ApiKey::Produce, 2),
            (ApiKey::Metadata, 0),
        ],
    );
}

#[test]
fn kafka_python_requests_decode_as_expected() {
    check_client(
        "kafka-python",
        "kafka-python",
        "kafka-python",
        &[
            (ApiKey::ApiVersions, 4),
            (ApiKey::Metadata, 12),
            (ApiKey::Produce, 9),
            (ApiKey::Fetch, 12),
        ],
    );
}
