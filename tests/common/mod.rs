//! What the integration tests share: the real gateway binary, started on a free port, and a
//! minimal Kafka client built on the gateway's own codec.
#![allow(dead_code, unreachable_pub)]

pub mod fake_iggy;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::create_topics_request::{
    CreatableTopic, CreateTopicsRequest,
};
use iggy_kafka_core::protocol::generated::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use iggy_kafka_core::protocol::generated::fetch_response::PartitionData;
use iggy_kafka_core::protocol::generated::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use iggy_kafka_core::protocol::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use iggy_kafka_core::protocol::{ApiKey, Request, Response};
use iggy_kafka_core::records::{Compression, Record, RecordBatch};

pub const RUNTIME: &str = if cfg!(feature = "smol") {
    "smol"
} else {
    "tokio"
};

/// The Iggy server the tests were given (`IGGY_KAFKA_TEST_IGGY`), if any.
pub fn iggy_url() -> Option<String> {
    std::env::var("IGGY_KAFKA_TEST_IGGY")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The Python of the test clients' virtual environment, which
/// `scripts/install-test-deps.sh` makes (`scripts/test.sh` runs it first).
pub fn python() -> std::path::PathBuf {
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/install-test-deps.sh (scripts/test.sh does)",
        venv.display()
    );
    venv
}

/// Runs a step of `tests/clients/admin_traffic.py` (confluent-kafka); its printed output.
pub fn admin_traffic(args: &[&str]) -> String {
    let out = Command::new(python())
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .arg("admin_traffic.py")
        .args(args)
        .output()
        .expect("run the client");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A free port on the loopback interface, for a gateway that must come back on it.
pub fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").to_string()
}

/// A stream name no other test run uses.
pub fn unique_stream() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "kgw-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Starts the gateway `command` describes, its log lines echoed to the test's stderr and
/// handed over, one by one, on the receiver.
pub fn spawn_logged(command: &mut Command) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = command
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gateway: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, log)
}

pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener's address (tests give it a free port).
    pub admin: Option<SocketAddr>,
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Gateway {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the gateway with extra command-line arguments. With `IGGY_KAFKA_TEST_IGGY` set
    /// to an `iggy://` URL, the gateway keeps its data in that Iggy server, in a stream of
    /// its own (`--stream` in `args` names it instead).
    pub fn start_with(args: &[&str]) -> Self {
        let mut backend = Vec::new();
        if !args.contains(&"--admin-listen") {
            // Tests run gateways side by side: each gets an admin port of its own. Where the
            // test picked the Kafka listener's port in advance (a gateway that must come back
            // on it), the admin port is picked too, and not that one: left to the system, the
            // admin listener, bound first, can be given the very port the test let go.
            let picked = args.contains(&"--listen") || args.contains(&"--listeners");
            let admin = if picked {
                std::iter::repeat_with(free_address)
                    .find(|a| {
                        let port = a.rsplit(':').next().unwrap_or_default();
                        !args.iter().any(|x| x.contains(&format!(":{port}")))
                    })
                    .unwrap_or_else(|| "127.0.0.1:0".to_owned())
            } else {
                "127.0.0.1:0".to_owned()
            };
            backend.push("--admin-listen".to_owned());
            backend.push(admin);
        }
        if let Some(url) = iggy_url().filter(|_| !args.contains(&"--iggy")) {
            backend.push("--iggy".to_owned());
            backend.push(url);
            if !args.contains(&"--stream") {
                backend.push("--stream".to_owned());
                backend.push(unique_stream());
            }
        }
        if !args.contains(&"--listen") && !args.contains(&"--listeners") {
            backend.push("--listen".to_owned());
            backend.push("127.0.0.1:0".to_owned());
        }
        let (child, log) = spawn_logged(
            Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
                .args([
                    "--log",
                    &std::env::var("IGGY_KAFKA_TEST_LOG").unwrap_or_else(|_| "info".into()),
                ])
                .args(&backend)
                .args(args),
        );
        let bound = |l: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("bound="))
                .and_then(|a| a.parse::<SocketAddr>().ok())
        };
        let mut admin = None;
        let line = log
            .iter()
            .find(|l| {
                if l.contains("admin listening") {
                    admin = bound(l);
                }
                l.contains("listening") && l.contains("runtime=")
            })
            .expect("the gateway logs its address");
        assert!(
            line.contains(&format!("runtime=\"{RUNTIME}\""))
                || line.contains(&format!("runtime={RUNTIME}")),
            "{line}"
        );
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bound="))
            .expect("bound=")
            .parse()
            .expect("address");
        Self {
            child,
            addr,
            admin,
            log,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    /// The gateway's process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the gateway outright (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "the gateway exits cleanly on SIGTERM: {status}"
        );
        assert!(
            self.log.iter().any(|l| l.contains("stopped")),
            "it logs that it stopped"
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("size");
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    s.read_exact(&mut frame).expect("frame");
    frame
}

pub fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// Sends one request on `s` and decodes its response.
pub fn call(s: &mut TcpStream, version: i16, correlation_id: i32, request: &Request) -> Response {
    let mut buf = BytesMut::new();
    frame::encode_request(&mut buf, request, version, correlation_id, Some("it")).expect("request");
    s.write_all(&buf).expect("write");
    let (correlation, response) =
        frame::decode_response(Bytes::from(read_frame(s)), request.api_key(), version)
            .expect("response");
    assert_eq!(correlation, correlation_id);
    response
}

/// A CreateTopics request for one topic (the gateway's default replication).
pub fn create_topic(name: &str, partitions: i32) -> Request {
    Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..CreatableTopic::default()
        }],
        timeout_ms: 5000,
        ..CreateTopicsRequest::default()
    })
}

/// The API key of a request, for `call`'s callers that build requests by hand.
pub fn key_of(request: &Request) -> ApiKey {
    request.api_key()
}

/// A Produce request (v9 fields) of one topic: each partition gets its records.
pub fn produce(topic: &str, acks: i16, partitions: Vec<(i32, Bytes)>) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: partitions
                .into_iter()
                .map(|(index, records)| PartitionProduceData {
                    index,
                    records: Some(records),
                    ..PartitionProduceData::default()
                })
                .collect(),
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    })
}

/// A batch of records with these values; `producer` (id, epoch, first sequence) makes it
/// an idempotent producer's.
pub fn record_batch(values: Vec<Bytes>, producer: Option<(i64, i16, i32)>) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let batch = RecordBatch {
        last_offset_delta: values.len() as i32 - 1,
        producer_id,
        producer_epoch,
        base_sequence,
        records: values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Record {
                offset_delta: i as i32,
                value: Some(v),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    batch.encode(Compression::None, &mut buf).expect("encode");
    buf.freeze()
}

/// An idempotent producer's batch of `n` records, values `v0`, `v1`, ...
pub fn idempotent_batch(producer_id: i64, epoch: i16, first_sequence: i32, n: usize) -> Bytes {
    let values = (0..n).map(|i| Bytes::from(format!("v{i}"))).collect();
    record_batch(values, Some((producer_id, epoch, first_sequence)))
}

/// Produces `batch` to partition 0 of `topic` with acks=all (Produce v9): the partition's
/// error code and base offset.
pub fn produce_to_0(
    s: &mut TcpStream,
    correlation_id: i32,
    topic: &str,
    batch: Bytes,
) -> (i16, i64) {
    let Response::Produce(r) = call(s, 9, correlation_id, &produce(topic, -1, vec![(0, batch)]))
    else {
        panic!("Produce")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetches partition 0 of `topic` from `offset` (Fetch v11, without waiting, up to 4 MiB):
/// that partition's answer.
pub fn fetch_0(s: &mut TcpStream, topic: &str, offset: i64) -> PartitionData {
    let request = Request::Fetch(FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 4 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes: 4 << 20,
                log_start_offset: -1,
                current_leader_epoch: -1,
                ..FetchPartition::default()
            }],
            ..FetchTopic::default()
        }],
        ..FetchRequest::default()
    });
    let Response::Fetch(r) = call(s, 11, 13, &request) else {
        panic!("Fetch")
    };
    r.responses[0].partitions[0].clone()
}

/// The high watermark of one partition (ListOffsets LATEST, v7).
pub fn high_watermark(s: &mut TcpStream, topic: &str, partition: i32) -> i64 {
    let list = Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: partition,
                timestamp: -1,
                ..ListOffsetsPartition::default()
            }],
            ..ListOffsetsTopic::default()
        }],
        ..ListOffsetsRequest::default()
    });
    let Response::ListOffsets(r) = call(s, 7, 99, &list) else {
        panic!("ListOffsets")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {topic}/{partition}");
    p.offset
}
