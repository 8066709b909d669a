//! Records the requests real Kafka clients send, as golden bytes for the codec tests and
//! seeds for the fuzzers.
//!
//! ```text
//! cargo run --example capture -- 127.0.0.1:19093 core/tests/fixtures/clients/kcat
//! kcat -b 127.0.0.1:19093 -P -t golden -z gzip <<< 'k:v'
//! ```
//!
//! It plays a one-broker cluster just far enough for clients to produce and consume:
//! ApiVersions, Metadata (every asked topic has one partition), Produce (always succeeds),
//! InitProducerId, ListOffsets (offset 0) and Fetch (always empty). Each request frame is
//! written, without its size prefix, to `<dir>/<seq>-<Api>-v<version>.bin`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::api::response_header_version;
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::{
    api_versions_response as av, fetch_response as fr, init_producer_id_response as ip,
    list_offsets_response as lo, metadata_response as md, produce_response as pr,
    response_header::ResponseHeader,
};
use iggy_kafka_core::protocol::{ApiKey, KStr, Message, Request, Response};

/// FindCoordinator is advertised although never used here: librdkafka infers its LZ4 support
/// from it and otherwise sends LZ4 batches uncompressed.
const SERVED: [ApiKey; 7] = [
    ApiKey::FindCoordinator,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::InitProducerId,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .map_or("127.0.0.1:19093", String::as_str)
        .to_string();
    let dir = PathBuf::from(args.get(2).map_or("capture", String::as_str));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = TcpListener::bind(&addr).unwrap();
    println!("capturing on {addr} into {}", dir.display());
    let seq = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let (dir, seq, addr) = (dir.clone(), seq.clone(), addr.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(stream.unwrap(), &dir, &seq, &addr) {
                println!("connection ended: {e}");
            }
        });
    }
}

fn serve(
    mut s: TcpStream,
    dir: &std::path::Path,
    seq: &AtomicUsize,
    addr: &str,
) -> std::io::Result<()> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    loop {
        let mut size = [0u8; 4];
        s.read_exact(&mut size)?;
        let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
        s.read_exact(&mut frame)?;
        let frame = Bytes::from(frame);
        let key = ApiKey::from_i16(i16::from_be_bytes([frame[0], frame[1]])).unwrap();
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let n = seq.fetch_add(1, Ordering::SeqCst);
        std::fs::write(
            dir.join(format!("{n:03}-{}-v{version}.bin", key.name())),
            &frame,
        )?;
        println!("{n:03} {} v{version}", key.name());
        let (header, request) = frame::decode_request(frame).unwrap();
        let response = answer(request, host, port.parse().unwrap());
        if let Some(response) = response {
            // An ApiVersions above ours is answered in v0 (KIP-511).
            let v = if key == ApiKey::ApiVersions && version > 4 {
                0
            } else {
                version
            };
            let mut out = BytesMut::new();
            frame::put_frame(&mut out, |b| {
                ResponseHeader {
                    correlation_id: header.correlation_id,
                    ..ResponseHeader::default()
                }
                .encode(b, response_header_version(key, version))?;
                response.encode(b, v)
            })
            .unwrap();
            s.write_all(&out)?;
        }
    }
}

fn answer(request: Request, host: &str, port: i32) -> Option<Response> {
    Some(match request {
        Request::ApiVersions(_) => Response::ApiVersions(av::ApiVersionsResponse {
            api_keys: SERVED
                .iter()
                .map(|k| av::ApiVersion {
                    api_key: *k as i16,
                    min_version: k.versions().min,
                    max_version: k.versions().max,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::Metadata(m) => Response::Metadata(md::MetadataResponse {
            brokers: vec![md::MetadataResponseBroker {
                node_id: 0,
                host: KStr::from(host),
                port,
                ..Default::default()
            }],
            cluster_id: Some("capture".into()),
            controller_id: 0,
            topics: m
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| md::MetadataResponseTopic {
                    name: t.name,
                    topic_id: iggy_kafka_core::protocol::Uuid([7; 16]),
                    partitions: vec![md::MetadataResponsePartition {
                        leader_id: 0,
                        replica_nodes: vec![0],
                        isr_nodes: vec![0],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::Produce(p) if p.acks == 0 => return None,
        Request::Produce(p) => Response::Produce(pr::ProduceResponse {
            responses: p
                .topic_data
                .into_iter()
                .map(|t| pr::TopicProduceResponse {
                    name: t.name,
                    partition_responses: t
                        .partition_data
                        .into_iter()
                        .map(|pd| pr::PartitionProduceResponse {
                            index: pd.index,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::InitProducerId(_) => Response::InitProducerId(ip::InitProducerIdResponse {
            producer_id: 1,
            ..Default::default()
        }),
        Request::ListOffsets(l) => Response::ListOffsets(lo::ListOffsetsResponse {
            topics: l
                .topics
                .into_iter()
                .map(|t| lo::ListOffsetsTopicResponse {
                    name: t.name,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| lo::ListOffsetsPartitionResponse {
                            partition_index: p.partition_index,
                            offset: 0,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::Fetch(f) => Response::Fetch(fr::FetchResponse {
            responses: f
                .topics
                .into_iter()
                .map(|t| fr::FetchableTopicResponse {
                    topic: t.topic,
                    topic_id: t.topic_id,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| fr::PartitionData {
                            partition_index: p.partition,
                            records: Some(Bytes::new()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        _ => return None,
    })
}
