//! The topic mapping through the real binary: a real Kafka client (librdkafka) lists,
//! creates, produces to, consumes from and commits on topics that live in Iggy streams other
//! than the gateway's, on the in-process fake Iggy; and the options' refusals at start.

mod common;

use std::path::Path;
use std::process::Command;

use common::fake_iggy::FakeIggyServer;
use common::Gateway;

/// What the client printed, as `"key": value` pairs of its one JSON line.
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let at = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("{key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    let end = if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |e| e + 1)
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    &rest[..end]
}

#[test]
fn a_kafka_client_works_on_mapped_streams() {
    let iggy = FakeIggyServer::start();
    {
        let mut fake = iggy.fake();
        // An Iggy stream that existed before the gateway, with data of its own.
        fake.create_topic_in("shop", "orders", 2);
        fake.create_topic_in("shop", "Not Kafka", 1);
    }
    let gw = Gateway::start_with(&[
        "--iggy",
        &iggy.url(),
        "--stream",
        "kafka",
        "--map-streams",
        "shop",
        "--map-topics",
        "payments=billing/pay",
    ]);
    let out = Command::new(common::python())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .args(["mapping.py", &gw.addr.to_string()])
        .output()
        .expect("run the client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(field(&json, "before"), r#"["shop.orders"]"#, "{json}");
    assert_eq!(
        field(&json, "after"),
        r#"["payments", "shop.orders"]"#,
        "{json}"
    );
    assert_eq!(field(&json, "acked"), "15", "{json}");
    assert_eq!(
        field(&json, "read"),
        r#"["order-0", "order-1", "order-2", "order-3", "order-4", "order-5", "order-6", "order-7", "order-8", "order-9"]"#
    );
    assert_eq!(field(&json, "committed"), "[5, 5]", "{json}");

    // The records are where the mapping says, readable by Iggy's own clients there.
    let fake = iggy.fake();
    let orders = &fake.other_streams["shop"]["orders"];
    assert_eq!(
        orders.partitions.iter().map(|p| p.next).collect::<Vec<_>>(),
        [5, 5]
    );
    let pay = &fake.other_streams["billing"]["pay"];
    assert_eq!(pay.partitions.len(), 2);
    assert_eq!(pay.partitions[0].next, 5);
    assert!(!fake.topics.contains_key("payments"));
    assert!(!fake.topics.contains_key("shop.orders"));
    drop(fake);
    gw.stop();
}

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the gateway");
    assert!(!out.status.success(), "{args:?} must be refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_mappings_are_refused_at_start_with_the_option() {
    let iggy = ["--iggy", "iggy://iggy:iggy@127.0.0.1:1"];
    let err = refused(&["--map-streams", "shop"]);
    assert!(err.contains("need the Iggy backend (--iggy)"), "{err}");
    let err = refused(&[iggy[0], iggy[1], "--map-topics", "orders=shop"]);
    assert!(err.contains("--map-topics: \"orders=shop\""), "{err}");
    let err = refused(&[iggy[0], iggy[1], "--map-topics", "bad name=s/t"]);
    assert!(err.contains("Kafka topic name"), "{err}");
    let err = refused(&[
        iggy[0],
        iggy[1],
        "--map-streams",
        "shop",
        "--map-topics",
        "shop.x=a/b",
    ]);
    assert!(err.contains("naming rule"), "{err}");
    let err = refused(&[iggy[0], iggy[1], "--map-streams", "kafka"]);
    assert!(
        err.contains("--map-streams: \"kafka\" is the default stream"),
        "{err}"
    );
}
