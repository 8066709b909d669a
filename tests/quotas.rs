//! Client quotas on the real binary: AlterClientQuotas and DescribeClientQuotas over the
//! wire, and a confluent-kafka producer over its byte rate throttled (its throttle
//! callback reports it) while another client id is not.

mod common;

use std::process::Command;

use common::{call, create_topic, Gateway};
use iggy_kafka_core::protocol::generated::alter_client_quotas_request::{
    AlterClientQuotasRequest, EntityData, EntryData, OpData,
};
use iggy_kafka_core::protocol::generated::describe_client_quotas_request::{
    ComponentData, DescribeClientQuotasRequest,
};
use iggy_kafka_core::protocol::{Request, Response};

fn producer(gw: &Gateway, topic: &str, client_id: &str, expect: &str) {
    let out = Command::new(common::python())
        .arg("quotas.py")
        .arg(gw.addr.to_string())
        .arg(topic)
        .arg(client_id)
        .arg(expect)
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .output()
        .expect("python; run scripts/install-test-deps.sh");
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{client_id}: {}", out.status);
}

#[test]
fn a_producer_over_its_quota_is_throttled() {
    let gw = Gateway::start();
    let mut s = gw.connect();
    let topic = format!("quota-{}", common::RUNTIME);
    let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(&topic, 1)) else {
        panic!("CreateTopics")
    };
    assert_eq!(r.topics[0].error_code, 0);

    let alter = AlterClientQuotasRequest {
        entries: vec![EntryData {
            entity: vec![EntityData {
                entity_type: "client-id".into(),
                entity_name: Some("throttled".into()),
                ..EntityData::default()
            }],
            ops: vec![OpData {
                key: "producer_byte_rate".into(),
                value: 20_000.0,
                remove: false,
                ..OpData::default()
            }],
            ..EntryData::default()
        }],
        ..AlterClientQuotasRequest::default()
    };
    let Response::AlterClientQuotas(r) = call(&mut s, 1, 2, &Request::AlterClientQuotas(alter))
    else {
        panic!("AlterClientQuotas")
    };
    assert_eq!(
        r.entries[0].error_code, 0,
        "{:?}",
        r.entries[0].error_message
    );

    let describe = DescribeClientQuotasRequest {
        components: vec![ComponentData {
            entity_type: "client-id".into(),
            match_type: 2,
            r#match: None,
            ..ComponentData::default()
        }],
        strict: false,
        ..DescribeClientQuotasRequest::default()
    };
    let Response::DescribeClientQuotas(r) =
        call(&mut s, 1, 3, &Request::DescribeClientQuotas(describe))
    else {
        panic!("DescribeClientQuotas")
    };
    let entries = r.entries.unwrap_or_default();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].values[0].key.as_str(), "producer_byte_rate");
    assert_eq!(entries[0].values[0].value, 20_000.0);

    producer(&gw, &topic, "throttled", "throttled");
    producer(&gw, &topic, "free", "free");
    gw.stop();
}
