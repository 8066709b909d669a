//! Tests that need a real Iggy server: run with `IGGY_KAFKA_TEST_IGGY=iggy://USER:PASS@HOST:PORT`
//! and `--ignored` (`scripts/test-iggy.sh` does both, on both runtimes). Without a server
//! they are listed as ignored, never passed silently; the Iggy backend's own tests against
//! an in-process fake server run everywhere (`cargo test -p iggy-kafka-iggy`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    call, create_topic, high_watermark, idempotent_batch, iggy_url, produce_to_0, record_batch,
    unique_stream, Gateway,
};
use iggy_kafka_core::protocol::generated::metadata_request::{
    MetadataRequest, MetadataRequestTopic,
};
use iggy_kafka_core::protocol::{Request, Response};

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); run scripts/install-test-deps.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "{what} stdout:\n{stdout}\n{what} stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {}", out.status);
    stdout
}

fn server() -> String {
    iggy_url().expect("IGGY_KAFKA_TEST_IGGY must name the Iggy server for these tests")
}

/// A producer with requests in flight, one record each: the plain appends that queue up
/// behind the one in flight go to Iggy merged (group commit), and every record is still
/// acknowledged at an offset of its own, contiguous, and reads back there.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn pipelined_plain_appends_land_each_in_its_own_place() {
    let url = server();
    let stream = unique_stream();
    let topic = format!("pipelined-{}", common::RUNTIME);
    let gw = Gateway::start_with(&["--iggy", url.as_str(), "--stream", stream.as_str()]);
    run(
        "pipelined.py",
        Command::new(common::python())
            .arg("pipelined.py")
            .arg(gw.addr.to_string())
            .args([topic.as_str(), "5000"]),
    );
    gw.stop();
}

/// Acknowledged records and committed offsets (with metadata) survive a gateway restart:
/// a second gateway on the same Iggy stream serves them all.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn a_restart_loses_nothing() {
    let url = server();
    let stream = unique_stream();
    let topic = format!("restart-{}", common::RUNTIME);
    let group = format!("restart-group-{}", common::RUNTIME);
    let args = ["--iggy", url.as_str(), "--stream", stream.as_str()];
    let first = Gateway::start_with(&args);
    let out = run(
        "restart.py before",
        Command::new(common::python())
            .args(["restart.py", "before"])
            .arg(first.addr.to_string())
            .args([&topic, &group]),
    );
    let committed = out.lines().last().unwrap_or_default().to_owned();
    first.stop();
    // The commits are mirrored into Iggy's own consumer offsets ("last consumed"), under
    // the group's name; a commit of 0 (nothing consumed) has no mirror.
    let mirrored = run(
        "iggy SDK offsets",
        sdk().args([
            "offsets",
            url.as_str(),
            stream.as_str(),
            topic.as_str(),
            "3",
            group.as_str(),
        ]),
    );
    let committed_json: serde_json::Value = serde_json::from_str(&committed).expect("JSON");
    let mirrored: serde_json::Value =
        serde_json::from_str(mirrored.trim()).expect("JSON from the SDK");
    for p in ["0", "1", "2"] {
        let want = match committed_json[p].as_u64() {
            Some(0) | None => serde_json::Value::Null,
            Some(n) => (n - 1).into(),
        };
        assert_eq!(
            mirrored[p], want,
            "partition {p}: {mirrored} for commits {committed}"
        );
    }
    let second = Gateway::start_with(&args);
    run(
        "restart.py after",
        Command::new(common::python())
            .args(["restart.py", "after"])
            .arg(second.addr.to_string())
            .args([&topic, &group, &committed]),
    );
    second.stop();
}

/// An idempotent producer's retry that reaches a restarted gateway is not appended again:
/// the new gateway reads the producer's recent batches back from Iggy (their message ids),
/// as a Kafka broker restores its producer state from its log.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn idempotent_retries_after_a_gateway_restart_are_appended_once() {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    let url = server();
    let stream = unique_stream();
    let topic = format!("idempotent-restart-{}", common::RUNTIME);
    let args = ["--iggy", url.as_str(), "--stream", stream.as_str()];
    let send = |s: &mut std::net::TcpStream, corr, batch| produce_to_0(s, corr, &topic, batch);
    let first = Gateway::start_with(&args);
    let mut s = first.connect();
    call(&mut s, 7, 1, &create_topic(&topic, 1));
    assert_eq!(send(&mut s, 2, idempotent_batch(77, 2, 0, 3)), (0, 0));
    assert_eq!(send(&mut s, 3, idempotent_batch(77, 2, 3, 2)), (0, 3));
    assert_eq!(send(&mut s, 4, idempotent_batch(78, 0, 40, 1)), (0, 5));
    drop(s);
    first.stop();

    let second = Gateway::start_with(&args);
    let mut s = second.connect();
    assert_eq!(send(&mut s, 5, idempotent_batch(77, 2, 3, 2)), (0, 3));
    assert_eq!(send(&mut s, 6, idempotent_batch(78, 0, 40, 1)), (0, 5));
    assert_eq!(send(&mut s, 7, idempotent_batch(77, 2, 0, 3)), (0, 0));
    assert_eq!(
        send(&mut s, 8, idempotent_batch(77, 2, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(send(&mut s, 9, idempotent_batch(77, 2, 5, 1)), (0, 6));
    assert_eq!(
        high_watermark(&mut s, &topic, 0),
        7,
        "seven records, each once"
    );
    second.stop();
}

/// Nothing acknowledged is lost when the Iggy server crashes: the gateway's topics (and its
/// offsets topic) are written through, so Iggy writes each append to its segment before
/// answering. Killing the server needs a command of the tester's (`IGGY_KAFKA_TEST_IGGY_CRASH`,
/// README "Testing against a real Iggy server"); without one this test says it did not run.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn an_iggy_crash_loses_nothing_acknowledged() {
    let url = server();
    if std::env::var_os("IGGY_KAFKA_TEST_IGGY_CRASH").is_none() {
        eprintln!(
            "NOT RUN: set IGGY_KAFKA_TEST_IGGY_CRASH to a command that kills the Iggy server \
             and starts it again on the same data"
        );
        return;
    }
    let stream = unique_stream();
    let gw = Gateway::start_with(&["--iggy", url.as_str(), "--stream", stream.as_str()]);
    run(
        "crash.py",
        Command::new(common::python())
            .arg("crash.py")
            .arg(gw.addr.to_string())
            .arg(format!("crash-{}", common::RUNTIME))
            .arg(format!("crash-group-{}", common::RUNTIME))
            .arg("12"),
    );
    gw.stop();
}

/// What Iggy's own SDK sees of a topic made through the gateway: Kafka's configs as Iggy's
/// options, and appends written through before they are acknowledged.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn topic_configs_become_iggy_options() {
    use iggy_kafka_core::protocol::generated::create_topics_request::CreatableTopicConfig;
    let url = server();
    let stream = unique_stream();
    let gw = Gateway::start_with(&["--iggy", url.as_str(), "--stream", stream.as_str()]);
    let topic = format!("configured-{}", common::RUNTIME);
    let mut create = create_topic(&topic, 2);
    if let Request::CreateTopics(r) = &mut create {
        r.topics[0].configs = [
            ("retention.ms", "60000"),
            ("retention.bytes", "8388608"),
            ("flush.messages", "1"),
        ]
        .iter()
        .map(|(k, v)| CreatableTopicConfig {
            name: (*k).into(),
            value: Some((*v).into()),
            ..CreatableTopicConfig::default()
        })
        .collect();
    }
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    let seen = |topic: &str| -> serde_json::Value {
        let out = run(
            "iggy SDK topic",
            sdk().args(["topic", url.as_str(), stream.as_str(), topic, "0"]),
        );
        serde_json::from_str(out.trim()).expect("JSON from the SDK")
    };
    let t = seen(&topic);
    assert_eq!(t["message_expiry"], 60_000_000, "{t}");
    assert_eq!(t["max_topic_size"], 2 * 8_388_608, "{t}");
    assert_eq!(t["options"]["segment_size"], "8388608", "{t}");
    assert_eq!(t["options"]["enforce_fsync"], "true", "{t}");
    assert_eq!(t["options"]["messages_required_to_save"], "1", "{t}");
    // The committed offsets' own topic is written through as well.
    let offsets = seen("__kafka_gateway_offsets.0");
    assert_eq!(
        offsets["options"]["messages_required_to_save"], "1",
        "{offsets}"
    );
    gw.stop();
}

fn sdk() -> Command {
    let bin = std::env::var("IGGY_KAFKA_TEST_SDK_BIN").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/iggy-sdk/debug/iggy-sdk-interop")
            .display()
            .to_string()
    });
    Command::new(bin)
}

/// Records produced by a Kafka client through the gateway are Iggy messages that Iggy's own
/// SDK reads, with the headers `docs/MAPPING.md` documents; messages sent with Iggy's SDK
/// are consumed through the gateway by a Kafka client.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn iggy_sdk_and_kafka_clients_share_the_data() {
    let url = server();
    let stream = unique_stream();
    let gw = Gateway::start_with(&["--iggy", url.as_str(), "--stream", stream.as_str()]);
    let topic = format!("interop-{}", common::RUNTIME);
    run(
        "interop.py produce",
        Command::new(common::python())
            .args(["interop.py", "produce"])
            .arg(gw.addr.to_string())
            .arg(&topic),
    );
    let out = run(
        "iggy SDK read",
        sdk().args(["read", url.as_str(), stream.as_str(), topic.as_str(), "2"]),
    );
    let messages: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(messages.len(), 100, "every record is an Iggy message");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for m in &messages {
        let headers = &m["headers"];
        let kind = |k: &str| headers[k][0].as_str().unwrap_or_default().to_owned();
        let partition = m["partition"].as_u64().unwrap_or(9);
        let offset = m["offset"].as_u64().unwrap_or(0);
        let i = offset * 2 + partition;
        assert_eq!(
            m["origin_timestamp"].as_u64(),
            Some((1_700_000_000_000 + i) * 1000),
            "milliseconds become microseconds"
        );
        if i % 7 == 0 {
            // A repeated header key: the whole record is in the payload.
            assert_eq!(headers["kafka-format"][1], "envelope-v1", "{m}");
            assert!(
                m["payload"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("4b475701"),
                "{m}"
            );
            continue;
        }
        assert_eq!(kind("kafka-key"), "raw", "the key is a header: {m}");
        if i % 10 == 0 {
            assert_eq!(kind("kafka-flags"), "uint8", "{m}");
            assert_eq!(headers["kafka-flags"][1], "1", "a null value: {m}");
            assert_eq!(m["payload"], "00");
        } else {
            assert_eq!(
                m["payload"],
                hex(&format!("v{i}")),
                "the value is the payload"
            );
            assert_eq!(kind("h"), "raw", "a Kafka header is an Iggy header: {m}");
        }
    }

    // Iggy's SDK sends; a Kafka client consumes through the gateway.
    let native = format!("native-{}", common::RUNTIME);
    run(
        "interop.py produce (creates the topic)",
        Command::new(common::python())
            .args(["interop.py", "produce"])
            .arg(gw.addr.to_string())
            .arg(&native),
    );
    run(
        "iggy SDK send",
        sdk().args(["send", url.as_str(), stream.as_str(), native.as_str(), "25"]),
    );
    let out = run(
        "interop.py consume",
        Command::new(common::python())
            .args(["interop.py", "consume"])
            .arg(gw.addr.to_string())
            .args([&native, "75"]),
    );
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let sdk_records = &records[50..];
    for (i, r) in sdk_records.iter().enumerate() {
        assert_eq!(r["value"], format!("iggy-native-{i}"), "{r}");
        assert_eq!(r["key"], serde_json::Value::Null);
        let mut headers: Vec<(String, String)> = r["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap_or_default().into(),
                    h[1].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        headers.sort();
        assert_eq!(
            headers,
            vec![
                ("seq".to_owned(), i.to_string()),
                ("source".into(), "sdk".into())
            ]
        );
    }
    gw.stop();
}

/// A topic created with Iggy's own SDK shows in Metadata at once, with its partitions; one
/// deleted with it is gone at once, and one created again under the same name is a new
/// topic (a new topic id, its offsets from 0), whatever the gateway knew of the old one.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn topics_created_in_iggy_appear_without_a_restart() {
    let url = server();
    let stream = unique_stream();
    let gw = Gateway::start_with(&["--iggy", url.as_str(), "--stream", stream.as_str()]);
    let topic = format!("made-by-iggy-{}", common::RUNTIME);
    let sdk_on_topic = |what: &str, partitions: &str| {
        run(
            &format!("iggy SDK {what}"),
            sdk().args([
                what,
                url.as_str(),
                stream.as_str(),
                topic.as_str(),
                partitions,
            ]),
        );
    };
    let metadata = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.as_str().into()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let mut s = gw.connect();
    let described = |s: &mut std::net::TcpStream| {
        let Response::Metadata(r) = call(s, 12, 1, &metadata) else {
            panic!("Metadata")
        };
        let t = &r.topics[0];
        (t.error_code, t.partitions.len(), t.topic_id)
    };
    sdk_on_topic("create", "3");
    let (code, partitions, first_id) = described(&mut s);
    assert_eq!((code, partitions), (0, 3));
    let record = || record_batch(vec![bytes::Bytes::from_static(b"r")], None);
    assert_eq!(produce_to_0(&mut s, 2, &topic, record()), (0, 0));
    assert_eq!(produce_to_0(&mut s, 3, &topic, record()), (0, 1));

    sdk_on_topic("delete", "0");
    assert_eq!(
        described(&mut s).0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION once deleted"
    );
    assert_eq!(produce_to_0(&mut s, 4, &topic, record()).0, 3);

    sdk_on_topic("create", "1");
    let (code, partitions, second_id) = described(&mut s);
    assert_eq!((code, partitions), (0, 1));
    assert_ne!(second_id, first_id, "a topic created again has a new id");
    assert_eq!(high_watermark(&mut s, &topic, 0), 0);
    assert_eq!(produce_to_0(&mut s, 5, &topic, record()), (0, 0));
    assert_eq!(high_watermark(&mut s, &topic, 0), 1);
    gw.stop();
}

/// A personal access token made with Iggy's SDK logs the gateway in.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn a_personal_access_token_logs_in() {
    let url = server();
    let name = unique_stream();
    let out = run(
        "iggy SDK token",
        sdk().args(["token", url.as_str(), name.as_str(), "-", "0"]),
    );
    let token = out.trim();
    assert!(!token.is_empty());
    let host = url.rsplit('@').next().unwrap_or_default();
    let with_token = format!("iggy://{token}@{host}");
    let stream = unique_stream();
    let gw = Gateway::start_with(&["--iggy", with_token.as_str(), "--stream", stream.as_str()]);
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic("by-token", 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    gw.stop();
}

/// The topic mapping on a real server: a Kafka topic created by its rule name lands in the
/// mapped stream, where Iggy's SDK reads what Kafka clients produced; an Iggy topic whose
/// name Kafka cannot spell, reached by an explicit entry, serves what Iggy's SDK sent.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn mapped_streams_are_shared_with_iggy_sdk() {
    let url = server();
    let (stream, shop) = (unique_stream(), unique_stream());
    let ledger = "Payments Ledger";
    let payments = format!("payments-{}", common::RUNTIME);
    let orders = format!("{shop}.orders");
    let gw = Gateway::start_with(&[
        "--iggy",
        url.as_str(),
        "--stream",
        stream.as_str(),
        "--map-streams",
        shop.as_str(),
        "--map-topics",
        &format!("{payments}={shop}/{ledger}"),
    ]);
    run(
        "interop.py produce (creates the topic in the mapped stream)",
        Command::new(common::python())
            .args(["interop.py", "produce"])
            .arg(gw.addr.to_string())
            .arg(&orders),
    );
    let out = run(
        "iggy SDK read",
        sdk().args(["read", url.as_str(), shop.as_str(), "orders", "2"]),
    );
    assert_eq!(out.lines().count(), 100, "every record is in {shop}/orders");

    run(
        "iggy SDK create",
        sdk().args(["create", url.as_str(), shop.as_str(), ledger, "1"]),
    );
    run(
        "iggy SDK send",
        sdk().args(["send", url.as_str(), shop.as_str(), ledger, "25"]),
    );
    let out = run(
        "interop.py consume",
        Command::new(common::python())
            .args(["interop.py", "consume"])
            .arg(gw.addr.to_string())
            .args([payments.as_str(), "25"]),
    );
    let values: Vec<String> = out
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            r["value"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        values,
        (0..25)
            .map(|i| format!("iggy-native-{i}"))
            .collect::<Vec<_>>()
    );

    let metadata = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    let mut s = gw.connect();
    let Response::Metadata(r) = call(&mut s, 12, 1, &metadata) else {
        panic!("Metadata")
    };
    let mut names: Vec<String> = r
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    let mut want = vec![orders.clone(), payments.clone()];
    want.sort();
    assert_eq!(
        names, want,
        "the mapped streams' topics, by their Kafka names"
    );
    gw.stop();
}

/// A wrong password or token stops start-up with one line saying so (Iggy 0.9 answers such
/// a login by evicting the session), rather than a retry for ever.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn wrong_credentials_stop_start_up() {
    let url = server();
    let host = url.rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
    for wrong in [
        format!("iggy://iggy:not-the-password@{host}"),
        format!("iggy://iggyp_not-a-token@{host}"),
    ] {
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(["--iggy", &wrong, "--stream", &unique_stream()])
            .env_remove("RUST_LOG")
            .output()
            .expect("run the gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{wrong}: {stderr}");
        assert!(
            stderr.contains("the credentials in --iggy were refused"),
            "{wrong}: {stderr}"
        );
        assert!(
            !stderr.contains("not-the-password"),
            "the password is not logged"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}

/// The Iggy backend on tokio, logged in as `user`, over `stream` (created when `create`),
/// retrying while the server is not ready; with its lanes, for requests of the test's own.
#[cfg(feature = "tokio")]
async fn iggy_backend(
    user: &str,
    password: &str,
    stream: &str,
    create: bool,
) -> (
    std::sync::Arc<iggy_kafka_iggy_client::Lanes>,
    iggy_kafka_iggy::IggyBackend,
) {
    use std::sync::Arc;
    use std::time::Duration;

    use iggy_kafka_iggy_client::{Credentials, Lanes, Nodes, SessionConfig};

    let url = server();
    let hosts = url
        .strip_prefix("iggy://")
        .and_then(|rest| rest.rsplit_once('@'))
        .map(|(_, hosts)| hosts.to_owned())
        .expect("an iggy://USER:PASSWORD@HOST:PORT URL");
    let lanes = Arc::new(Lanes::new(
        1,
        Nodes::new(hosts.split(',').map(str::to_owned).collect::<Vec<_>>()),
    ));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let session = SessionConfig {
        credentials: Credentials::User {
            username: user.to_owned(),
            password: secrecy::SecretString::from(password.to_owned()),
        },
        client_id: nanos | 1,
        reply_timeout: Duration::from_secs(30),
        max_reply_bytes: 64 << 20,
    };
    iggy_kafka_tokio::spawn_iggy_lanes(&lanes, &session);
    let mut config = iggy_kafka_iggy::IggyConfig::default();
    config.stream = stream.to_owned();
    config.create_stream = create;
    for _ in 0..50 {
        match iggy_kafka_iggy::IggyBackend::connect(
            Arc::clone(&lanes),
            Arc::new(iggy_kafka_tokio::TokioRuntime),
            config.clone(),
        )
        .await
        {
            Ok(backend) => return (lanes, backend),
            Err(e) if e.is_refused() => panic!("{user}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the backend did not open");
}

/// An Iggy user's permissions reach the backend with their stream and topic ids named (the
/// streams it does not serve left out); a user Iggy lacks is none; a gateway whose own Iggy
/// user lacks read_users is told so.
#[cfg(feature = "tokio")]
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn iggy_users_permissions_come_back_by_name() {
    use iggy_kafka_core::authz::{Permissions, TopicPermissions};
    use iggy_kafka_core::backend::{
        Backend, BackendError, Command, Completion, Execution, TopicConfig,
    };
    use iggy_kafka_iggy_client::protocol::codes::{
        CREATE_USER_CODE, DELETE_USER_CODE, GET_STREAM_CODE, UPDATE_PERMISSIONS_CODE,
    };
    use iggy_kafka_iggy_client::protocol::primitives::permissions::{
        WireGlobalPermissions, WirePermissions, WireStreamPermissions, WireTopicPermissions,
    };
    use iggy_kafka_iggy_client::protocol::requests::streams::GetStreamRequest;
    use iggy_kafka_iggy_client::protocol::requests::users::{
        CreateUserRequest, DeleteUserRequest, UpdatePermissionsRequest,
    };
    use iggy_kafka_iggy_client::protocol::responses::streams::GetStreamResponse;
    use iggy_kafka_iggy_client::protocol::{
        WireDecode, WireEncode, WireIdentifier, WireName, WireOptions,
    };

    async fn exec(backend: &iggy_kafka_iggy::IggyBackend, command: Command) -> Completion {
        match backend.execute(command) {
            Execution::Done(c) => c,
            Execution::Pending(f) => f.await,
        }
    }
    async fn permissions(
        backend: &iggy_kafka_iggy::IggyBackend,
        user: &str,
    ) -> Result<Option<Permissions>, BackendError> {
        match exec(backend, Command::UserPermissions { user: user.into() }).await {
            Completion::UserPermissions(p) => p,
            other => panic!("{other:?}"),
        }
    }
    fn global(read_servers: bool, manage_streams: bool) -> WireGlobalPermissions {
        WireGlobalPermissions {
            manage_servers: false,
            read_servers,
            manage_users: false,
            read_users: false,
            manage_streams,
            read_streams: false,
            manage_topics: false,
            read_topics: false,
            poll_messages: false,
            send_messages: false,
        }
    }

    let url = server();
    let (admin, admin_password) = url
        .strip_prefix("iggy://")
        .and_then(|rest| rest.rsplit_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .expect("an iggy://USER:PASSWORD@HOST:PORT URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let stream = unique_stream();
        let (lanes, backend) = iggy_backend(&admin, &admin_password, &stream, true).await;
        let created = exec(
            &backend,
            Command::CreateTopic {
                name: "orders".into(),
                partitions: 1,
                config: TopicConfig::default(),
                validate_only: false,
            },
        )
        .await;
        assert!(
            matches!(created, Completion::CreateTopic(Ok(_))),
            "{created:?}"
        );
        let described = lanes
            .call(
                0,
                GET_STREAM_CODE,
                GetStreamRequest {
                    stream_id: WireIdentifier::named(stream.as_str()).expect("a name"),
                }
                .to_bytes(),
            )
            .await
            .expect("the stream");
        let (described, _) = GetStreamResponse::decode(&described).expect("a stream reply");
        let orders = described
            .topics
            .iter()
            .find(|t| t.name.as_str() == "orders")
            .expect("orders")
            .id;
        let stream_id = described.stream.id;
        let suffix = std::process::id();
        let reader = format!("kgw-reader-{suffix}");
        let limited = format!("kgw-limited-{suffix}");
        let create_user = |name: &str, permissions: WirePermissions| {
            lanes.call(
                0,
                CREATE_USER_CODE,
                CreateUserRequest {
                    username: WireName::new(name).expect("a name"),
                    password: "kgw-secret".into(),
                    status: 1,
                    permissions: Some(permissions),
                    options: WireOptions::empty(),
                }
                .to_bytes(),
            )
        };
        create_user(
            &reader,
            WirePermissions {
                global: global(true, false),
                streams: vec![
                    WireStreamPermissions {
                        stream_id,
                        manage_stream: false,
                        read_stream: false,
                        manage_topics: false,
                        read_topics: false,
                        poll_messages: true,
                        send_messages: false,
                        topics: vec![WireTopicPermissions {
                            topic_id: orders,
                            manage_topic: false,
                            read_topic: false,
                            poll_messages: false,
                            send_messages: true,
                        }],
                    },
                    // A stream the gateway does not serve (none, here).
                    WireStreamPermissions {
                        stream_id: stream_id.wrapping_add(1_000),
                        manage_stream: true,
                        read_stream: true,
                        manage_topics: true,
                        read_topics: true,
                        poll_messages: true,
                        send_messages: true,
                        topics: Vec::new(),
                    },
                ],
            },
        )
        .await
        .expect("the reader created");
        // Enough to serve the stream, not to read other users.
        create_user(
            &limited,
            WirePermissions {
                global: global(false, true),
                streams: Vec::new(),
            },
        )
        .await
        .expect("the limited user created");

        let got = permissions(&backend, &reader)
            .await
            .expect("asked")
            .expect("a user");
        eprintln!("{reader}: {got:?}");
        assert!(got.global.read_servers);
        assert_eq!(got.streams.len(), 1, "{got:?}");
        let served = &got.streams[&stream];
        assert!(served.poll_messages);
        assert_eq!(
            served.topics.get("orders"),
            Some(&TopicPermissions {
                send_messages: true,
                ..TopicPermissions::default()
            })
        );
        assert!(got.may_send((&stream, "orders")));
        assert!(!got.may_send((&stream, "other")));
        assert_eq!(
            permissions(&backend, &format!("kgw-nobody-{suffix}")).await,
            Ok(None)
        );

        // Taken away in Iggy: the kept answer stands for up to 2 s, then the change shows.
        lanes
            .call(
                0,
                UPDATE_PERMISSIONS_CODE,
                UpdatePermissionsRequest {
                    user_id: WireIdentifier::named(reader.as_str()).expect("a name"),
                    permissions: None,
                }
                .to_bytes(),
            )
            .await
            .expect("permissions updated");
        assert_eq!(permissions(&backend, &reader).await, Ok(Some(got)));
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
        assert_eq!(
            permissions(&backend, &reader).await,
            Ok(Some(Permissions::default()))
        );

        // A gateway logged in as a user without read_users.
        let (_limited_lanes, limited_backend) =
            iggy_backend(&limited, "kgw-secret", &stream, false).await;
        match permissions(&limited_backend, &reader).await {
            Err(BackendError::Unauthorized(why)) => {
                eprintln!("refused: {why}");
                assert!(why.contains("read_users"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Itself it may read.
        let own = permissions(&limited_backend, &limited).await;
        assert!(
            matches!(&own, Ok(Some(p)) if p.global.manage_streams && !p.global.read_users),
            "{own:?}"
        );

        for user in [&reader, &limited] {
            let deleted = lanes
                .call(
                    0,
                    DELETE_USER_CODE,
                    DeleteUserRequest {
                        user_id: WireIdentifier::named(user.as_str()).expect("a name"),
                    }
                    .to_bytes(),
                )
                .await;
            assert!(deleted.is_ok(), "deleting {user}: {deleted:?}");
        }
    });
}

/// `--authorization iggy`: an Iggy user made with Iggy's own SDK, allowed to read one
/// topic, reads it through the gateway over SASL, is refused writing to it and does not
/// see the stream's other topics; once its permissions are taken away with the SDK, it no
/// longer sees the topic within the stated bound (5 s refresh, 2 s cache).
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn iggy_users_permissions_decide_what_kafka_clients_may_do() {
    let url = server();
    let stream = unique_stream();
    let user = format!("kafka-reader-{}", common::RUNTIME);
    let users = std::env::temp_dir().join(format!("{stream}-users.toml"));
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"{user}\"\npassword = \"{user}-secret\"\n"),
    )
    .expect("users file");
    let args: Vec<String> = [
        "--iggy",
        url.as_str(),
        "--stream",
        stream.as_str(),
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--users-file",
        &users.display().to_string(),
        "--authorization",
        "iggy",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let gw = common::tls::start_listeners(&args, 1);
    let bootstrap = gw.address("SASL_PLAINTEXT").to_string();
    let sdk_run = |what: &str, args: &[&str]| {
        let out = sdk().args(args).output().expect("iggy-sdk-interop");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (topic, other) = ("readable", "hidden");
    for t in [topic, other] {
        sdk_run("create", &["create", &url, &stream, t, "1"]);
    }
    sdk_run("send", &["send", &url, &stream, topic, "5"]);
    // Left over from an earlier run that stopped half-way.
    let _ = sdk()
        .args(["drop-user", &url, &stream, topic, "0", &user])
        .output();
    sdk_run("grant", &["grant", &url, &stream, topic, "0", &user]);

    run(
        "iggy_permissions.py reads",
        Command::new(common::python())
            .args([
                "iggy_permissions.py",
                "reads",
                &bootstrap,
                topic,
                other,
                "5",
            ])
            .arg(&user),
    );
    sdk_run("revoke", &["revoke", &url, &stream, topic, "0", &user]);
    std::thread::sleep(std::time::Duration::from_secs(8));
    run(
        "iggy_permissions.py sees-nothing",
        Command::new(common::python())
            .args(["iggy_permissions.py", "sees-nothing", &bootstrap, topic])
            .arg(&user),
    );
    sdk_run(
        "drop-user",
        &["drop-user", &url, &stream, topic, "0", &user],
    );
    let _ = std::fs::remove_file(users);
    gw.gateway.stop();
}
