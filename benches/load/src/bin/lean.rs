//! A lean Kafka client that does what `iggy-bench` does on Iggy's side, so that the two
//! figures compare the gateway with the server rather than librdkafka with Iggy's SDK.
//!
//! usage: iggy-kafka-lean BOOTSTRAP TOPIC RECORDS SIZE [BATCH [IN_FLIGHT]]
//!
//! Produce: one record batch of BATCH (default 1,000) records of SIZE bytes is built once; each
//! request stamps the current time into it (recomputing its CRC, as iggy-bench stamps its
//! fixed batch), is sent with acks=1, and its answer awaited before the next, one request in
//! flight on one connection (iggy-bench's producer waits for each send too). Consume: Fetch
//! requests one at a time from offset 0, each asking for about one produced batch (iggy-bench
//! polls BATCH messages at a time), walking every record's length and checking the counts
//! and sizes add up. The topic (one partition) must exist; the broker at BOOTSTRAP must lead
//! it (a single-node gateway does).
//!
//! IN_FLIGHT (default 1) above 1 lets the producer send that many requests before awaiting
//! the first answer, as Kafka clients may (librdkafka's `max.in.flight`; Iggy's protocol
//! carries one request at a time per connection, so iggy-bench cannot).
//!
//! PARTITIONS, PRODUCERS and CONSUMERS (environment, default 1 each) shape it as iggy-bench's
//! balanced modes: the topic has PARTITIONS partitions; PRODUCERS producers, each on its own
//! thread and connection, share the records and send each batch to the next partition in
//! turn (starting at their own); CONSUMERS consumers, each on its own thread and
//! connection, read the partitions dealt to them (partition p to consumer p mod CONSUMERS,
//! as a group would assign them, without the group protocol) until together they have read
//! every record.
//!
//! RATE (environment) turns the producer into a latency probe, as `iggy-bench -r` is: one
//! producer sends a request of BATCH records every 1/RATE s on a fixed schedule (a request
//! that falls behind it goes at once), one in flight, and prints the percentiles of each
//! request's time from its send to its answer. No consumer runs.
//!
//! TLS and SASL (environment) make every connection speak to an SSL, SASL_PLAINTEXT or
//! SASL_SSL listener:
//! - TLS_CA_FILE: a PEM file of the certificates to trust; setting it turns TLS on (rustls,
//!   ring's cryptography). TLS_SERVER_NAME: the name the server's certificate must carry
//!   (default: BOOTSTRAP's host, a DNS name or an IP address).
//! - SASL_MECHANISM (PLAIN or SCRAM-SHA-512), SASL_USERNAME, SASL_PASSWORD: authenticate
//!   each connection once, before its first request (SaslHandshake v1, then
//!   SaslAuthenticate v2). SCRAM checks the server's signature too.
//!
//! Without them a connection is the bare TCP stream, written and read as before.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use iggy_kafka_core::protocol::frame;
use iggy_kafka_core::protocol::generated::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic,
};
use iggy_kafka_core::protocol::generated::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use iggy_kafka_core::protocol::generated::sasl_authenticate_request::SaslAuthenticateRequest;
use iggy_kafka_core::protocol::generated::sasl_handshake_request::SaslHandshakeRequest;
use iggy_kafka_core::protocol::{ApiKey, Request, Response};
use iggy_kafka_core::records::{Compression, Record, RecordBatch};
use iggy_kafka_load::rate as rate_line;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha512};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
/// Where a v2 batch's CRC, attributes and base timestamp start.
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, topic, records, size, batch, in_flight) = match &args[..] {
        [_, b, t, r, s] => (b, t, r, s, 1000, 1),
        [_, b, t, r, s, n] => (b, t, r, s, n.parse().expect("BATCH"), 1),
        [_, b, t, r, s, n, f] => (
            b,
            t,
            r,
            s,
            n.parse().expect("BATCH"),
            f.parse().expect("IN_FLIGHT"),
        ),
        _ => {
            eprintln!("usage: iggy-kafka-lean BOOTSTRAP TOPIC RECORDS SIZE [BATCH [IN_FLIGHT]]");
            std::process::exit(2);
        }
    };
    let records: usize = records.parse().expect("RECORDS");
    let size: usize = size.parse().expect("SIZE");
    let batch: usize = std::cmp::max(batch, 1);
    let phase = std::env::var("LOAD_PHASE").unwrap_or_default();
    let env = |name: &str| -> usize {
        std::env::var(name)
            .ok()
            .map_or(1, |v| v.parse().unwrap_or_else(|_| panic!("{name}: {v}")))
            .max(1)
    };
    let (partitions, producers, consumers) =
        (env("PARTITIONS"), env("PRODUCERS"), env("CONSUMERS"));
    let batch_len = encoded_batch(size, batch).len();
    let security = &Security::from_env(bootstrap);
    if let Ok(rate) = std::env::var("RATE") {
        let rate: f64 = rate.parse().expect("RATE");
        let mut conn = Conn::new(bootstrap, security);
        let start = Instant::now();
        let mut times = paced(&mut conn, topic, records / batch, size, batch, rate);
        rate_line("produce", records, size, start.elapsed());
        times.sort_unstable();
        let at = |q: f64| {
            let k = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
            times[k - 1].as_secs_f64() * 1e3
        };
        println!(
            "latency ms: p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0)
        );
        return;
    }
    if phase != "consume" {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for i in 0..producers {
                let share = records / producers + usize::from(i < records % producers);
                let shape = Shape {
                    first: i,
                    partitions,
                };
                scope.spawn(move || {
                    let mut conn = Conn::new(bootstrap, security);
                    produce(
                        &mut conn,
                        topic,
                        share,
                        size,
                        batch,
                        in_flight.max(1),
                        shape,
                    );
                });
            }
        });
        rate_line("produce", records, size, start.elapsed());
    }
    if phase != "produce" {
        let got = std::sync::atomic::AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for j in 0..consumers {
                let mine: Vec<i32> = (0..partitions)
                    .filter(|p| p % consumers == j)
                    .map(|p| i32::try_from(p).expect("partition"))
                    .collect();
                let got = &got;
                scope.spawn(move || {
                    let mut conn = Conn::new(bootstrap, security);
                    consume(&mut conn, topic, (records, got), size, batch_len, &mine);
                });
            }
        });
        rate_line("consume", got.into_inner(), size, start.elapsed());
    }
}

/// Which partitions a producer writes to: from `first`, each batch to the next of
/// `partitions`.
#[derive(Clone, Copy)]
struct Shape {
    first: usize,
    partitions: usize,
}

fn encoded_batch(size: usize, count: usize) -> BytesMut {
    let value = Bytes::from(vec![b'x'; size]);
    let batch = RecordBatch {
        last_offset_delta: count as i32 - 1,
        records: (0..count)
            .map(|i| Record {
                offset_delta: i as i32,
                value: Some(value.clone()),
                ..Record::default()
            })
            .collect(),
        ..RecordBatch::default()
    };
    let mut buf = BytesMut::new();
    batch.encode(Compression::None, &mut buf).expect("batch");
    buf
}

fn produce(
    conn: &mut Conn,
    topic: &str,
    records: usize,
    size: usize,
    batch: usize,
    in_flight: usize,
    shape: Shape,
) {
    let full = encoded_batch(size, batch);
    let mut next = shape.first;
    let mut sent = 0;
    let mut waiting = 0;
    while sent < records || waiting > 0 {
        if sent == records || waiting == in_flight {
            let Response::Produce(r) = conn.recv() else {
                panic!("not a produce response")
            };
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "produce refused: {p:?}");
            waiting -= 1;
            continue;
        }
        let count = std::cmp::min(batch, records - sent);
        let mut b = if count == batch {
            full.clone()
        } else {
            encoded_batch(size, count)
        };
        stamp(&mut b);
        let partition = i32::try_from(next % shape.partitions).expect("partition");
        let request = produce_request(topic, partition, b.freeze());
        conn.send(&request, PRODUCE_VERSION);
        waiting += 1;
        sent += count;
        next += 1;
    }
}

/// Sends `requests` requests of `batch` records to partition 0, the i-th at `i / rate` s
/// after the first, each after the answer to the one before; returns each one's time from
/// its send to its answer.
fn paced(
    conn: &mut Conn,
    topic: &str,
    requests: usize,
    size: usize,
    batch: usize,
    rate: f64,
) -> Vec<std::time::Duration> {
    let mut b = encoded_batch(size, batch);
    let mut times = Vec::with_capacity(requests);
    let start = Instant::now();
    for i in 0..requests {
        let due = start + std::time::Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        stamp(&mut b);
        let request = produce_request(topic, 0, b.clone().freeze());
        let sent = Instant::now();
        conn.send(&request, PRODUCE_VERSION);
        let Response::Produce(r) = conn.recv() else {
            panic!("not a produce response")
        };
        times.push(sent.elapsed());
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce refused: {p:?}");
    }
    times
}

/// Stamps the current time into an encoded batch and recomputes its CRC, as iggy-bench
/// stamps its fixed batch.
fn stamp(b: &mut BytesMut) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// An acks=1 Produce of one batch to one partition.
fn produce_request(topic: &str, partition: i32, records: Bytes) -> Request {
    Request::Produce(ProduceRequest {
        acks: 1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..PartitionProduceData::default()
            }],
            ..TopicProduceData::default()
        }],
        ..ProduceRequest::default()
    })
}

/// Reads `partitions` from offset 0, one Fetch at a time asking each for about one batch,
/// until `got` (shared by every consumer) reaches `records`.
fn consume(
    conn: &mut Conn,
    topic: &str,
    (records, got): (usize, &std::sync::atomic::AtomicUsize),
    size: usize,
    batch_len: usize,
    partitions: &[i32],
) {
    use std::sync::atomic::Ordering;
    let mut offsets: Vec<i64> = vec![0; partitions.len()];
    let mut bytes = 0;
    let mut mine = 0;
    let mut idle = Instant::now();
    while got.load(Ordering::Relaxed) < records {
        let request = Request::Fetch(FetchRequest {
            replica_id: -1,
            max_wait_ms: 200,
            min_bytes: 1,
            max_bytes: 52_428_800,
            isolation_level: 0,
            session_id: 0,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: partitions
                    .iter()
                    .zip(&offsets)
                    .map(|(&partition, &fetch_offset)| FetchPartition {
                        partition,
                        current_leader_epoch: -1,
                        fetch_offset,
                        last_fetched_epoch: -1,
                        log_start_offset: -1,
                        partition_max_bytes: batch_len as i32,
                        ..FetchPartition::default()
                    })
                    .collect(),
                ..FetchTopic::default()
            }],
            ..FetchRequest::default()
        });
        conn.send(&request, FETCH_VERSION);
        let Response::Fetch(r) = conn.recv() else {
            panic!("not a fetch response")
        };
        let mut any = false;
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            assert_eq!(p.error_code, 0, "fetch refused: {p:?}");
            let at = partitions
                .iter()
                .position(|&q| q == p.partition_index)
                .expect("a partition asked for");
            let offset = &mut offsets[at];
            let mut data = p.records.clone().unwrap_or_default();
            any |= !data.is_empty();
            while data.len() >= 61 {
                let base = (&data[..8]).get_i64();
                let len = (&data[8..12]).get_i32() as usize;
                if data.len() < 12 + len {
                    break; // a partial batch at the end of the response, as Kafka may send
                }
                let last_delta = (&data[23..27]).get_i32() as i64;
                let count = (&data[RECORD_COUNT_AT..61]).get_i32() as usize;
                let mut body = &data[61..12 + len];
                for _ in 0..count {
                    let record_len = varint(&mut body);
                    bytes += value_len(&body[..record_len]);
                    body = &body[record_len..];
                }
                assert!(body.is_empty(), "batch at {base} longer than its records");
                if base + last_delta >= *offset {
                    mine += count;
                    got.fetch_add(count, Ordering::Relaxed);
                    *offset = base + last_delta + 1;
                }
                data.advance(12 + len);
            }
        }
        if any {
            idle = Instant::now();
        } else {
            let total = got.load(Ordering::Relaxed);
            assert!(
                total >= records || idle.elapsed().as_secs() < 10,
                "no record for 10 s after {total} of {records}"
            );
        }
    }
    assert_eq!(bytes, mine * size, "record sizes");
}

fn varint(buf: &mut &[u8]) -> usize {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = buf[0];
        *buf = &buf[1..];
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as usize
}

/// The value's length of one record (attributes, timestamp delta, offset delta, key, value).
fn value_len(mut record: &[u8]) -> usize {
    record = &record[1..];
    varint(&mut record);
    varint(&mut record);
    let key = varint(&mut record) as isize;
    if key > 0 {
        record = &record[key as usize..];
    }
    let value = varint(&mut record) as isize;
    value.max(0) as usize
}

/// How every connection reaches the broker, read once from the environment.
struct Security {
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    sasl: Option<Sasl>,
}

struct Sasl {
    scram: bool,
    user: String,
    password: String,
}

impl Security {
    fn from_env(bootstrap: &str) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tls = var("TLS_CA_FILE").map(|ca| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&ca).expect("TLS_CA_FILE") {
                roots
                    .add(cert.expect("TLS_CA_FILE"))
                    .expect("a CA certificate");
            }
            // ring, as the gateway's `tls` crate has it (deprecated in rustls for lacking
            // post-quantum key exchange, which a benchmark on loopback does not need).
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            let host = var("TLS_SERVER_NAME").unwrap_or_else(|| {
                let (host, _port) = bootstrap.rsplit_once(':').expect("BOOTSTRAP is host:port");
                host.trim_start_matches('[').trim_end_matches(']').into()
            });
            let name = ServerName::try_from(host).expect("TLS_SERVER_NAME");
            (Arc::new(config), name)
        });
        let sasl = var("SASL_MECHANISM").map(|m| Sasl {
            scram: match m.to_ascii_uppercase().as_str() {
                "PLAIN" => false,
                "SCRAM-SHA-512" => true,
                _ => panic!("SASL_MECHANISM: {m} is not PLAIN or SCRAM-SHA-512"),
            },
            user: var("SASL_USERNAME").expect("SASL_USERNAME"),
            password: var("SASL_PASSWORD").expect("SASL_PASSWORD"),
        });
        Self { tls, sasl }
    }
}

/// The connection's byte stream: the socket itself, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

impl Drop for Stream {
    /// Ends a TLS session with close_notify, so that the broker sees an orderly close
    /// rather than a truncated one.
    fn drop(&mut self) {
        if let Self::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
    }
}

struct Conn {
    stream: Stream,
    correlation: i32,
    out: BytesMut,
    /// Requests sent and not answered yet: correlation id, API key, version.
    sent: std::collections::VecDeque<(i32, ApiKey, i16)>,
}

impl Conn {
    fn new(bootstrap: &str, security: &Security) -> Self {
        let socket = TcpStream::connect(bootstrap).expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        let stream = match &security.tls {
            None => Stream::Plain(socket),
            // The handshake runs on the first write.
            Some((config, name)) => Stream::Tls(Box::new(rustls::StreamOwned::new(
                rustls::ClientConnection::new(config.clone(), name.clone()).expect("TLS"),
                socket,
            ))),
        };
        let mut conn = Self {
            stream,
            correlation: 0,
            out: BytesMut::new(),
            sent: std::collections::VecDeque::new(),
        };
        if let Some(sasl) = &security.sasl {
            conn.authenticate(sasl);
        }
        conn
    }

    fn authenticate(&mut self, sasl: &Sasl) {
        let mechanism = if sasl.scram { "SCRAM-SHA-512" } else { "PLAIN" };
        let handshake = Request::SaslHandshake(SaslHandshakeRequest {
            mechanism: mechanism.into(),
        });
        self.send(&handshake, 1);
        let Response::SaslHandshake(r) = self.recv() else {
            panic!("not a SaslHandshake response")
        };
        assert_eq!(
            r.error_code, 0,
            "{mechanism} refused; the broker offers {:?}",
            r.mechanisms
        );
        if !sasl.scram {
            self.sasl_step(format!("\0{}\0{}", sasl.user, sasl.password).into_bytes());
            return;
        }
        let scram = Scram::new(&sasl.user);
        let server_first = self.sasl_step(scram.client_first());
        let (client_final, server_final) = scram.client_final(&sasl.password, &server_first);
        let got = self.sasl_step(client_final);
        assert_eq!(
            got[..],
            server_final[..],
            "the server's SCRAM signature does not match"
        );
    }

    /// Sends one SASL token and returns the server's.
    fn sasl_step(&mut self, token: Vec<u8>) -> Bytes {
        let request = Request::SaslAuthenticate(SaslAuthenticateRequest {
            auth_bytes: token.into(),
            ..SaslAuthenticateRequest::default()
        });
        self.send(&request, 2);
        let Response::SaslAuthenticate(r) = self.recv() else {
            panic!("not a SaslAuthenticate response")
        };
        assert_eq!(r.error_code, 0, "SASL refused: {:?}", r.error_message);
        r.auth_bytes
    }

    fn send(&mut self, request: &Request, version: i16) {
        self.correlation += 1;
        self.out.clear();
        frame::encode_request(
            &mut self.out,
            request,
            version,
            self.correlation,
            Some("iggy-kafka-lean"),
        )
        .expect("request");
        self.stream.write_all(&self.out).expect("send");
        // A no-op on TCP; on TLS it pushes out records a failed write left behind.
        self.stream.flush().expect("send");
        self.sent
            .push_back((self.correlation, request.api_key(), version));
    }

    /// The answer to the oldest request not answered yet (Kafka answers in order).
    fn recv(&mut self) -> Response {
        let (correlation, key, version) = self.sent.pop_front().expect("a request to answer");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("response size");
        let mut input = vec![0; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut input).expect("response");
        let (correlation_id, response) =
            frame::decode_response(Bytes::from(input), key, version).expect("response");
        assert_eq!(correlation_id, correlation);
        response
    }
}

/// The client side of SCRAM-SHA-512 (RFC 5802) as Kafka speaks it: no channel binding, no
/// extensions. The cryptography is RustCrypto's HMAC, SHA-512 and PBKDF2.
struct Scram {
    /// client-first-message-bare: `n=USER,r=NONCE`.
    first_bare: String,
    nonce: String,
}

impl Scram {
    fn new(user: &str) -> Self {
        let mut random = [0u8; 18];
        getrandom::fill(&mut random).expect("random nonce");
        let nonce = BASE64.encode(random);
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            first_bare: format!("n={user},r={nonce}"),
            nonce,
        }
    }

    fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client-final-message answering `server_first`, and the server-final-message
    /// that proves the server knows the credential.
    fn client_final(&self, password: &str, server_first: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).expect("server-first-message");
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for field in server_first.split(',') {
            match field.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(BASE64.decode(v).expect("salt")),
                Some(("i=", v)) => iterations = Some(v.parse::<u32>().expect("iterations")),
                _ => {}
            }
        }
        let nonce = nonce.expect("server nonce");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server's nonce does not extend ours"
        );
        let mut salted = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(
            password.as_bytes(),
            &salt.expect("salt"),
            iterations.expect("iterations"),
            &mut salted,
        );
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_key = hmac(&salted, b"Client Key");
        let signature = hmac(&Sha512::digest(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        )
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    <Hmac<Sha512> as Mac>::new_from_slice(key)
        .expect("HMAC takes keys of any length")
        .chain_update(data)
        .finalize()
        .into_bytes()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use iggy_kafka_core::sasl::{ScramCredential, ScramMechanism};

    /// The proof checks out against what the gateway keeps of the password (its StoredKey),
    /// the way the server checks it, and the server-final expected is the gateway's
    /// signature with its ServerKey.
    #[test]
    fn scram_proof_checks_against_the_gateways_credential() {
        let salt = b"a salt of some bytes";
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha512, b"bench-secret", salt, 4096);
        let scram = Scram::new("be=n,ch");
        assert!(scram.first_bare.starts_with("n=be=3Dn=2Cch,r="));
        assert_eq!(
            scram.client_first(),
            format!("n,,{}", scram.first_bare).into_bytes()
        );
        let server_first = format!("r={}SERVER,s={},i=4096", scram.nonce, BASE64.encode(salt));
        let (client_final, server_final) =
            scram.client_final("bench-secret", server_first.as_bytes());
        let client_final = String::from_utf8(client_final).expect("UTF-8");
        let (without_proof, proof) = client_final.rsplit_once(",p=").expect("a proof");
        assert_eq!(without_proof, format!("c=biws,r={}SERVER", scram.nonce));
        let auth = format!("{},{server_first},{without_proof}", scram.first_bare);
        let signature = hmac(&credential.stored_key, auth.as_bytes());
        let client_key: Vec<u8> = BASE64
            .decode(proof)
            .expect("base64")
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(Sha512::digest(&client_key)[..], credential.stored_key[..]);
        let expected = hmac(&credential.server_key, auth.as_bytes());
        assert_eq!(
            server_final,
            format!("v={}", BASE64.encode(expected)).into_bytes()
        );
    }

    #[test]
    #[should_panic(expected = "does not extend ours")]
    fn scram_refuses_a_nonce_not_extending_its_own() {
        let scram = Scram::new("bench");
        scram.client_final("bench-secret", b"r=someone-else,s=c2FsdA==,i=4096");
    }
}
