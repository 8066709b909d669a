use std::sync::Arc;
use std::time::Duration;

use iggy_kafka_core::group::{Coordinator, GroupConfig, GroupState};
use iggy_kafka_core::stats::{ApiStats, ConnectionStats, Latency};

use super::*;
use crate::view::PartitionLag;

fn scrape(total: ConnectionStats, limits: Limits) -> Scrape {
    let mut connections = Snapshot::default();
    connections.accepted = 3;
    connections.closed = vec![("peer", 2)];
    connections.total = total;
    let mut groups = Coordinator::new(GroupConfig::default(), 1).stats();
    groups.groups[3] = (GroupState::Stable, 1);
    groups.members = 2;
    groups.rebalances = 4;
    Scrape {
        connections,
        groups,
        transactions: iggy_kafka_core::txn::TxnStats {
            committed: 5,
            ..Default::default()
        },
        lag: Arc::new(Lag {
            partitions: vec![PartitionLag {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                committed: 7,
                end: Some(10),
            }],
            groups_left_out: 0,
        }),
        backend: vec![Metric::single(
            "embedded_retained_records",
            "held",
            MetricKind::Gauge,
            10.0,
        )],
        ready: true,
        process: Process::default(),
        build: [
            ("version", "1.2.3".into()),
            ("runtime", "tokio".into()),
            ("backend", "embedded".into()),
        ],
        limits,
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
}

#[test]
fn a_scrape_shows_what_was_counted_under_conventional_names() {
    let mut total = ConnectionStats::default();
    let mut latency = Latency::default();
    latency.observe(Duration::from_millis(3));
    let mut produce = ApiStats::default();
    produce.requests = 5;
    produce.latency = latency;
    total
        .apis
        .push((iggy_kafka_core::protocol::ApiKey::Produce, produce));
    total
        .errors
        .push((iggy_kafka_core::protocol::ApiKey::Produce, 3, 2));
    total.topics.insert(Arc::from("t"), TopicStats::default());
    total.batches[4] = 6;
    let text = render(scrape(total, Limits::default()));
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(
        line(&text, "iggy_kafka_gateway_requests_total{"),
        "iggy_kafka_gateway_requests_total{api=\"Produce\"} 5"
    );
    assert!(text.contains("# TYPE iggy_kafka_gateway_requests counter"));
    assert_eq!(
        line(&text, "iggy_kafka_gateway_request_errors_total{"),
        "iggy_kafka_gateway_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 2"
    );
    assert_eq!(
        line(
            &text,
            "iggy_kafka_gateway_request_duration_seconds_bucket{le=\"0.005\",api=\"Produce\"}"
        ),
        "iggy_kafka_gateway_request_duration_seconds_bucket{le=\"0.005\",api=\"Produce\"} 1"
    );
    assert_eq!(
        line(
            &text,
            "iggy_kafka_gateway_request_duration_seconds_bucket{le=\"0.0025\",api=\"Produce\"}"
        ),
        "iggy_kafka_gateway_request_duration_seconds_bucket{le=\"0.0025\",api=\"Produce\"} 0"
    );
    assert_eq!(
        line(&text, "iggy_kafka_gateway_consumer_group_lag_records{"),
        "iggy_kafka_gateway_consumer_group_lag_records{group=\"g\",topic=\"t\",partition=\"0\"} 3"
    );
    assert_eq!(
        line(
            &text,
            "iggy_kafka_gateway_produced_batches_total{compression=\"zstd\"}"
        ),
        "iggy_kafka_gateway_produced_batches_total{compression=\"zstd\"} 6"
    );
    assert_eq!(
        line(&text, "iggy_kafka_gateway_groups{state=\"Stable\"}"),
        "iggy_kafka_gateway_groups{state=\"Stable\"} 1"
    );
    assert_eq!(
        line(&text, "iggy_kafka_gateway_connections_closed_total"),
        "iggy_kafka_gateway_connections_closed_total{reason=\"peer\"} 2"
    );
    assert_eq!(
        line(&text, "iggy_kafka_gateway_embedded_retained_records"),
        "iggy_kafka_gateway_embedded_retained_records 10"
    );
    assert_eq!(
        line(
            &text,
            "iggy_kafka_gateway_transactions_total{outcome=\"commit\"}"
        ),
        "iggy_kafka_gateway_transactions_total{outcome=\"commit\"} 5"
    );
    assert!(line(&text, "iggy_kafka_gateway_build_info").contains("version=\"1.2.3\""));
    assert!(text.contains("process_start_time_seconds"));
}

#[test]
fn topics_past_the_limit_are_summed_as_other() {
    let mut total = ConnectionStats::default();
    for name in ["a", "b", "c"] {
        let mut t = TopicStats::default();
        t.produced_records = 1;
        total.topics.insert(Arc::from(name), t);
    }
    let text = render(scrape(
        total,
        Limits {
            topics: 1,
            ..Limits::default()
        },
    ));
    assert!(text.contains("iggy_kafka_gateway_produced_records_total{topic=\"a\"} 1"));
    assert!(text.contains("iggy_kafka_gateway_produced_records_total{topic=\"_other\"} 2"));
    assert!(!text.contains("topic=\"b\""));
}
