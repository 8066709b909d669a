//! Real Kafka clients against the real gateway binary (built with whichever runtime feature
//! this test build has): kcat (librdkafka), confluent-kafka, kafka-python and kafkajs each
//! create a topic with several partitions, produce 10,000 records with keys, headers and
//! null values with every compression codec they support, read them all back and compare
//! them exactly, list offsets and delete the topic; kafkajs reads its records back through a
//! consumer group, and a group of confluent-kafka consumers is put through joins, leaves,
//! a SIGKILL and a restart; admin clients meet the ACL, election and reassignment APIs;
//! librdkafka's own transactions example copies a topic exactly once. The
//! scripts in `tests/clients/` do the client side;
//! `scripts/install-test-deps.sh` installs the clients.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{call, create_topic, Gateway};
use iggy_kafka_core::protocol::Response;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .current_dir(clients_dir())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); run scripts/install-test-deps.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what} stdout:\n{stdout}\n{what} stderr:\n{stderr}");
    assert!(out.status.success(), "{what} failed: {}", out.status);
}

fn topic(client: &str) -> String {
    format!("{client}-{}", common::RUNTIME)
}

#[test]
fn kcat() {
    let gw = Gateway::start();
    let topic = topic("kcat");
    // kcat cannot create topics: create it with three partitions over the wire.
    let mut s = gw.connect();
    let create = create_topic(&topic, 3);
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    run(
        "kcat",
        Command::new(common::python())
            .arg("kcat_client.py")
            .arg(gw.addr.to_string())
            .arg(&topic),
    );
    gw.stop();
}

#[test]
fn confluent_kafka() {
    let gw = Gateway::start();
    run(
        "confluent-kafka",
        Command::new(common::python())
            .args(["python_client.py", "confluent"])
            .arg(gw.addr.to_string())
            .arg(topic("confluent")),
    );
    gw.stop();
}

#[test]
fn kafka_python() {
    let gw = Gateway::start();
    run(
        "kafka-python",
        Command::new(common::python())
            .args(["python_client.py", "kafka-python"])
            .arg(gw.addr.to_string())
            .arg(topic("kafka-python")),
    );
    gw.stop();
}

#[test]
fn kafkajs() {
    let gw = Gateway::start();
    let topic = topic("kafkajs");
    run(
        "kafkajs",
        Command::new("node")
            .arg("kafkajs_client.js")
            .arg(gw.addr.to_string())
            .arg(&topic)
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
    );
    gw.stop();
}

/// Topic configuration with confluent-kafka's admin client: created with configs, described,
/// altered (set and delete), and refused where the backend cannot honour it.
#[test]
fn topic_configs_through_the_admin_client() {
    let gw = Gateway::start();
    let backend = if common::iggy_url().is_some() {
        "iggy"
    } else {
        "embedded"
    };
    run(
        "topic configs",
        Command::new(common::python())
            .arg("topic_configs.py")
            .arg(gw.addr.to_string())
            .arg(topic("configs"))
            .arg(backend),
    );
    gw.stop();
}

/// A group of confluent-kafka consumers (separate processes) joining, leaving and being
/// killed while records arrive, then restarted; kafka-python's admin client lists,
/// describes and deletes the group. `tests/clients/groups.py` says what each phase checks.
#[test]
fn consumer_group_of_confluent_kafka_consumers() {
    // A shorter initial rebalance delay than Kafka's 3 s only makes the test quicker.
    let gw = Gateway::start_with(&["--group-initial-rebalance-delay-ms", "1000"]);
    run(
        "confluent-kafka consumer group",
        Command::new(common::python())
            .args(["groups.py", "confluent"])
            .arg(gw.addr.to_string())
            .arg(topic("group"))
            .arg(format!("group-{}", common::RUNTIME)),
    );
    gw.stop();
}

/// confluent-kafka consumers with `group.protocol=consumer` (KIP-848): three share a topic's
/// partitions, each record is read once, one leaves and the others take its partitions; the
/// admin client lists and describes the group as a consumer group; a regular-expression
/// subscription follows a topic created later; a static member restarts without the other
/// member being rebalanced; a member killed outright loses its partitions after its session.
/// `tests/clients/consumer_protocol.py` says what it checks.
#[test]
fn consumer_protocol_group_of_confluent_kafka_consumers() {
    // A shorter heartbeat interval and session timeout than Kafka's 5 s and 45 s only make
    // reconciliation and the killed member's departure quicker.
    let gw = Gateway::start_with(&[
        "--group-consumer-heartbeat-interval-ms",
        "500",
        "--group-consumer-session-timeout-ms",
        "6000",
    ]);
    run(
        "confluent-kafka consumer protocol group",
        Command::new(common::python())
            .arg("consumer_protocol.py")
            .arg(gw.addr.to_string())
            .arg(topic("kip848"))
            .arg(format!("kip848-{}", common::RUNTIME)),
    );
    gw.stop();
}

/// The ACL calls of two admin clients fail at once with SECURITY_DISABLED, as against a
/// Kafka broker without an authorizer (librdkafka's DescribeAcls drops the code and lists
/// nothing, so the code is checked on the wire too).
#[test]
fn acl_calls_say_security_is_disabled() {
    use iggy_kafka_core::protocol::generated::describe_acls_request::DescribeAclsRequest;
    let gw = Gateway::start();
    let mut s = gw.connect();
    for version in 0..=3 {
        let describe = iggy_kafka_core::protocol::Request::DescribeAcls(DescribeAclsRequest {
            resource_type_filter: 1,
            operation: 1,
            permission_type: 1,
            ..DescribeAclsRequest::default()
        });
        let Response::DescribeAcls(r) = call(&mut s, version, 1, &describe) else {
            panic!("DescribeAcls v{version}")
        };
        assert_eq!(r.error_code, 54, "SECURITY_DISABLED at v{version}");
        assert!(r.resources.is_empty());
    }
    run(
        "acls.py",
        Command::new(common::python())
            .arg("acls.py")
            .arg(gw.addr.to_string()),
    );
    gw.stop();
}

/// Leader elections and partition reassignments, from confluent-kafka, kafka-python and
/// kafkajs, answered as a one-broker Kafka cluster's controller answers them.
#[test]
fn elections_and_reassignments_of_a_one_broker_cluster() {
    let gw = Gateway::start();
    let topic = topic("replicas");
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 2)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let bootstrap = gw.addr.to_string();
    run(
        "replicas.py",
        Command::new(common::python()).args(["replicas.py", &bootstrap, &topic]),
    );
    run(
        "replicas.js",
        Command::new("node").args(["replicas.js", &bootstrap, &topic]),
    );
    gw.stop();
}

/// The legacy AlterConfigs from confluent-kafka, kafka-python and kafkajs: a topic's whole
/// set of configs is replaced.
#[test]
fn legacy_alter_configs_replaces_the_set() {
    let gw = Gateway::start();
    let topic = topic("legacy-configs");
    let bootstrap = gw.addr.to_string();
    run(
        "legacy_configs.py",
        Command::new(common::python()).args(["legacy_configs.py", &bootstrap, &topic]),
    );
    run(
        "legacy_configs.js",
        Command::new("node").args(["legacy_configs.js", &bootstrap, &topic]),
    );
    gw.stop();
}

/// DescribeLogDirs from kafka-python and on the wire at every version: one log dir with
/// each partition's bytes as the backend reports them (kafkajs and confluent-kafka's Python
/// admin client have no call for it).
#[test]
fn log_dirs_report_the_backends_sizes() {
    use iggy_kafka_core::protocol::generated::describe_log_dirs_request::{
        DescribableLogDirTopic, DescribeLogDirsRequest,
    };
    let gw = Gateway::start();
    let topic = topic("log-dirs");
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 2)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let batch = common::record_batch(vec![bytes::Bytes::from_static(b"0123456789"); 20], None);
    assert_eq!(common::produce_to_0(&mut s, 9, &topic, batch).0, 0);
    for version in 0..=4 {
        let describe =
            iggy_kafka_core::protocol::Request::DescribeLogDirs(DescribeLogDirsRequest {
                topics: Some(vec![DescribableLogDirTopic {
                    topic: topic.as_str().into(),
                    partitions: vec![0, 1, 7],
                    ..DescribableLogDirTopic::default()
                }]),
                ..DescribeLogDirsRequest::default()
            });
        let Response::DescribeLogDirs(r) = call(&mut s, version, 2, &describe) else {
            panic!("DescribeLogDirs v{version}")
        };
        assert_eq!(r.results.len(), 1, "one log dir");
        let dir = &r.results[0];
        assert_eq!(dir.error_code, 0);
        let sizes: Vec<(i32, i64)> = dir.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(sizes.len(), 2, "partition 7 does not exist: {sizes:?}");
        assert!(sizes[0].1 >= 200, "20 records of 10 B: {sizes:?}");
        assert_eq!(sizes[1], (1, 0));
    }
    run(
        "log_dirs.py",
        Command::new(common::python()).args(["log_dirs.py", &gw.addr.to_string(), &topic]),
    );
    gw.stop();
}

/// DescribeProducers on the wire and from kafka-python (after a confluent-kafka idempotent
/// producer): each partition's idempotent producers with their epoch and last sequence.
#[test]
fn producers_are_described_from_the_idempotent_state() {
    use iggy_kafka_core::protocol::generated::describe_producers_request::{
        DescribeProducersRequest, TopicRequest,
    };
    let gw = Gateway::start();
    let topic = topic("producers");
    let mut s = gw.connect();
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 2)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);
    let wire = format!("{topic}-wire");
    call(&mut s, 7, 2, &create_topic(&wire, 1));
    let batch = common::idempotent_batch(4242, 3, 0, 5);
    assert_eq!(common::produce_to_0(&mut s, 3, &wire, batch).0, 0);
    let describe =
        iggy_kafka_core::protocol::Request::DescribeProducers(DescribeProducersRequest {
            topics: vec![
                TopicRequest {
                    name: wire.as_str().into(),
                    partition_indexes: vec![0, 4],
                    ..TopicRequest::default()
                },
                TopicRequest {
                    name: "no-such-topic".into(),
                    partition_indexes: vec![0],
                    ..TopicRequest::default()
                },
            ],
            ..DescribeProducersRequest::default()
        });
    let Response::DescribeProducers(r) = call(&mut s, 0, 4, &describe) else {
        panic!("DescribeProducers")
    };
    let p0 = &r.topics[0].partitions[0];
    assert_eq!(p0.error_code, 0);
    let active: Vec<(i64, i32, i32)> = p0
        .active_producers
        .iter()
        .map(|a| (a.producer_id, a.producer_epoch, a.last_sequence))
        .collect();
    assert_eq!(active, [(4242, 3, 4)]);
    assert_eq!(r.topics[0].partitions[1].error_code, 3, "no partition 4");
    assert_eq!(r.topics[1].partitions[0].error_code, 3, "no such topic");
    run(
        "producers.py",
        Command::new(common::python()).args(["producers.py", &gw.addr.to_string(), &topic]),
    );
    gw.stop();
}

/// DescribeTopicPartitions (KIP-966) on the wire and from kafka-python: pages of at most
/// the limit, a cursor to the next page, missing topics named.
#[test]
fn topic_partitions_are_paged() {
    use iggy_kafka_core::protocol::generated::describe_topic_partitions_request::{
        Cursor, DescribeTopicPartitionsRequest, TopicRequest,
    };
    let gw = Gateway::start();
    let prefix = topic("pages");
    let mut s = gw.connect();
    for (suffix, partitions) in [("a", 3), ("b", 2)] {
        let Response::CreateTopics(r) = call(
            &mut s,
            7,
            1,
            &create_topic(&format!("{prefix}-{suffix}"), partitions),
        ) else {
            panic!("CreateTopics")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }
    let ask = |cursor: Option<(String, i32)>| {
        iggy_kafka_core::protocol::Request::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest {
                topics: ["b", "a", "c"]
                    .iter()
                    .map(|t| TopicRequest {
                        name: format!("{prefix}-{t}").as_str().into(),
                        ..TopicRequest::default()
                    })
                    .collect(),
                response_partition_limit: 4,
                cursor: cursor.map(|(t, p)| Cursor {
                    topic_name: t.as_str().into(),
                    partition_index: p,
                    ..Cursor::default()
                }),
                ..DescribeTopicPartitionsRequest::default()
            },
        )
    };
    let Response::DescribeTopicPartitions(first) = call(&mut s, 0, 2, &ask(None)) else {
        panic!("DescribeTopicPartitions")
    };
    let count: Vec<(String, usize)> = first
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_deref().unwrap_or("").to_owned(),
                t.partitions.len(),
            )
        })
        .collect();
    assert_eq!(
        count,
        [(format!("{prefix}-a"), 3), (format!("{prefix}-b"), 1)],
        "name order, four partitions"
    );
    let next = first.next_cursor.expect("a next page");
    assert_eq!(
        (next.topic_name.to_string(), next.partition_index),
        (format!("{prefix}-b"), 1)
    );
    let Response::DescribeTopicPartitions(second) =
        call(&mut s, 0, 3, &ask(Some((next.topic_name.to_string(), 1))))
    else {
        panic!("DescribeTopicPartitions")
    };
    assert!(second.next_cursor.is_none());
    assert_eq!(second.topics[0].partitions[0].partition_index, 1);
    assert_eq!(second.topics[1].error_code, 3, "the missing topic");
    // A cursor on a topic the request does not name is invalid, as in Kafka.
    let Response::DescribeTopicPartitions(bad) =
        call(&mut s, 0, 4, &ask(Some(("elsewhere".into(), 0))))
    else {
        panic!("DescribeTopicPartitions")
    };
    assert!(bad.topics.iter().all(|t| t.error_code == 42));
    run(
        "topic_partitions.py",
        Command::new(common::python()).args(["topic_partitions.py", &gw.addr.to_string(), &prefix]),
    );
    gw.stop();
}

/// Transactions through confluent-kafka: commits and aborts of two interleaved producers
/// read back exactly by read_committed and wholly by read_uncommitted consumers, a fenced
/// producer, and a consume-transform-produce loop that copies a topic exactly once across
/// a crash of the copier (`transactions.py`); and through kafkajs: commits and aborts read
/// back, offsets sent to a transaction committed with it only (`transactions.js`). On the
/// embedded store (or the Iggy server of `IGGY_KAFKA_TEST_IGGY`), and on Iggy over the fake.
#[test]
fn transactions_of_confluent_kafka() {
    transactions_of_clients(Gateway::start());
}

#[test]
fn transactions_of_confluent_kafka_on_iggy() {
    let iggy = common::fake_iggy::FakeIggyServer::start();
    let stream = common::unique_stream();
    let url = iggy.url();
    transactions_of_clients(Gateway::start_with(&[
        "--iggy",
        url.as_str(),
        "--stream",
        stream.as_str(),
    ]));
}

fn transactions_of_clients(gw: Gateway) {
    let input = topic("txn-in");
    let output = topic("txn-out");
    let js_input = topic("txn-js-in");
    let js_output = topic("txn-js-out");
    let mut s = gw.connect();
    for (name, partitions) in [(&input, 2), (&output, 1), (&js_input, 1), (&js_output, 1)] {
        let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(name, partitions)) else {
            panic!("CreateTopics")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }
    run(
        "transactions.py",
        Command::new(common::python()).args([
            "transactions.py",
            &gw.addr.to_string(),
            &input,
            &output,
        ]),
    );
    run(
        "transactions.js",
        Command::new("node").args([
            "transactions.js",
            &gw.addr.to_string(),
            &js_input,
            &js_output,
        ]),
    );
    gw.stop();
}

/// librdkafka's own transactions example (consume-transform-produce with offsets sent to
/// each transaction) runs against the gateway, is stopped and killed midway, and its output
/// holds each input exactly once (`rdkafka_transactions_example.py`).
#[test]
fn librdkafka_transactions_example() {
    if common::iggy_url().is_some() {
        return;
    }
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/rdkafka-transactions-example");
    let gw = Gateway::start();
    let input = topic("rdkafka-txn-in");
    let output = topic("rdkafka-txn-out");
    let mut s = gw.connect();
    for (name, partitions) in [(&input, 2), (&output, 1)] {
        let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(name, partitions)) else {
            panic!("CreateTopics")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }
    run(
        "librdkafka's transactions example",
        Command::new(common::python())
            .arg("rdkafka_transactions_example.py")
            .arg(&example)
            .arg(gw.addr.to_string())
            .arg(&input)
            .arg(&output),
    );
    gw.stop();
}
