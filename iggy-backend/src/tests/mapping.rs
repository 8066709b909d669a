//! The topic mapping against the fake server: Kafka topics in streams other than the
//! gateway's, by explicit entries and by the `STREAM.TOPIC` rule, with everything the
//! backend does to a topic following the mapping.

use crate::mapping::TopicMapping;

use super::*;

/// A server that already holds stream `shop` (topics `orders`, `carts` and one Kafka cannot
/// name) before the gateway first connects.
fn shop() -> FakeIggy {
    let mut fake = FakeIggy::new();
    fake.create_topic_in("shop", "orders", 2);
    fake.create_topic_in("shop", "carts", 3);
    fake.create_topic_in("shop", "Not Kafka", 1);
    fake
}

fn mapped(topics: &str, streams: &str) -> IggyConfig {
    IggyConfig {
        seed: 42,
        mapping: TopicMapping::parse("kafka", topics, streams).expect("mapping"),
        ..IggyConfig::default()
    }
}

fn connect(h: &mut Pool, config: IggyConfig) -> IggyBackend {
    h.connect_with(config)
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn listed(h: &mut Pool, backend: &IggyBackend) -> Vec<TopicInfo> {
    match h.exec(backend, Command::ListTopics { only: None }) {
        Completion::ListTopics(Ok(mut topics)) => {
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            topics
        }
        other => panic!("{other:?}"),
    }
}

fn next(fake: &FakeIggy, stream: &str, topic: &str, partition: usize) -> u64 {
    fake.other_streams[stream][topic].partitions[partition].next
}

/// Existing streams are reachable by their rule names and explicit entries; the names
/// Kafka cannot spell, and the default-stream topic a rule name shadows, are not listed;
/// topic ids differ across streams.
#[test]
fn existing_streams_are_listed_under_the_mapping() {
    let mut h = Pool::new(shop());
    let backend = connect(&mut h, mapped("payments=billing/pay", "shop"));
    // The gateway created its own stream first, then the mapped one that was missing.
    assert_eq!(h.fake.stream.as_deref(), Some("kafka"));
    assert!(h.fake.other_streams.contains_key("billing"));
    h.fake.create_topic("plain", 1, Vec::new());
    h.fake.create_topic("shop.carts", 1, Vec::new());
    h.fake.create_topic_in("billing", "pay", 4);
    let topics = listed(&mut h, &backend);
    let names: Vec<(&str, u32)> = topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions))
        .collect();
    assert_eq!(
        names,
        [
            ("payments", 4),
            ("plain", 1),
            // Stream shop's topic: the default stream's `shop.carts` is hidden by the rule.
            ("shop.carts", 3),
            ("shop.orders", 2),
        ]
    );
    let mut ids: Vec<Uuid> = topics.iter().map(|t| t.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    // A topic given by id is found in its stream.
    let carts = topics[2].id;
    match h.exec(
        &backend,
        Command::Offsets {
            topic: TopicRef::Id(carts),
            partition: 2,
        },
    ) {
        Completion::Offsets(Ok(_)) => {}
        other => panic!("{other:?}"),
    }
    match h.exec(
        &backend,
        Command::DeleteTopic {
            topic: TopicRef::Id(carts),
        },
    ) {
        Completion::DeleteTopic(Ok(t)) => assert_eq!(t.name, "shop.carts"),
        other => panic!("{other:?}"),
    }
    assert!(!h.fake.other_streams["shop"].contains_key("carts"));
    assert!(
        h.fake.topics.contains_key("shop.carts"),
        "not the default stream's"
    );
}

/// Appends, reads, idempotent retries, partitions, configs and committed offsets all reach
/// the mapped Iggy topic, and hold across a restart.
#[test]
fn the_data_path_follows_the_mapping() {
    let mut h = Pool::new(shop());
    let config = mapped("payments=billing/pay", "shop");
    let backend = connect(&mut h, config.clone());
    // Created where the mapping says.
    create(&mut h, &backend, "payments", 1);
    create(&mut h, &backend, "shop.returns", 2);
    create(&mut h, &backend, "local", 1);
    assert_eq!(h.fake.other_streams["billing"]["pay"].partitions.len(), 1);
    assert_eq!(h.fake.other_streams["shop"]["returns"].partitions.len(), 2);
    assert!(h.fake.topics.contains_key("local"));

    let records: Vec<KafkaRecord> = (0..5).map(record).collect();
    assert_eq!(
        append(&mut h, &backend, "shop.orders", 1, &records, None),
        Ok(0)
    );
    assert_eq!(next(&h.fake, "shop", "orders", 1), 5);
    let back = read(&mut h, &backend, "shop.orders", 1, 0).expect("read");
    assert_eq!(back.len(), 5);
    assert_eq!(back[4].1.value, records[4].value);

    // An idempotent retry is answered from what was stored, not stored again.
    let pb = ProducerBatch {
        producer_id: 7,
        epoch: 0,
        first_sequence: 0,
        count: 2,
        transactional: false,
    };
    let two = [record(1), record(2)];
    assert_eq!(
        append(&mut h, &backend, "payments", 0, &two, Some(pb)),
        Ok(0)
    );
    assert_eq!(
        append(&mut h, &backend, "payments", 0, &two, Some(pb)),
        Ok(0)
    );
    assert_eq!(next(&h.fake, "billing", "pay", 0), 2);

    match h.exec(
        &backend,
        Command::CreatePartitions {
            topic: "shop.orders".into(),
            total: 3,
            validate_only: false,
        },
    ) {
        Completion::CreatePartitions(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(h.fake.other_streams["shop"]["orders"].partitions.len(), 3);

    let results = commit(
        &mut h,
        &backend,
        "g",
        &[
            ("shop.orders", 2, 4),
            ("payments", 0, 2),
            ("shop.orders", 3, 1),
        ],
    );
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(matches!(
        results[2],
        Err(BackendError::UnknownPartition { .. })
    ));
    // The committed offsets, in the default stream's log, come back after a restart.
    drop(backend);
    let mut h = Pool::new(h.fake);
    let backend = connect(&mut h, config);
    let mut committed = fetch(&mut h, &backend, "g");
    committed.sort();
    assert_eq!(
        committed
            .iter()
            .map(|(t, p, o, ..)| (t.as_str(), *p, *o))
            .collect::<Vec<_>>(),
        [("payments", 0, 2), ("shop.orders", 2, 4)]
    );
    let back = read(&mut h, &backend, "shop.orders", 1, 3).expect("read");
    assert_eq!(back.first().map(|(o, _)| *o), Some(3));
}

/// Names that lead to an Iggy topic known by another name, or to the gateway's own topics
/// in any stream, are unknown topics; nothing is created or kept for them.
#[test]
fn names_the_mapping_does_not_reach_are_unknown() {
    let mut fake = shop();
    fake.create_topic_in("shop", "__kafka_gateway_offsets.0", 1);
    let mut h = Pool::new(fake);
    let backend = connect(&mut h, mapped("orders=shop/orders", "shop"));
    for name in ["shop.orders", "shop.__kafka_gateway_offsets.0"] {
        assert!(
            matches!(
                append(&mut h, &backend, name, 0, &[record(1)], None),
                Err(BackendError::UnknownTopic(_))
            ),
            "{name}"
        );
        assert!(matches!(
            read(&mut h, &backend, name, 0, 0),
            Err(BackendError::UnknownTopic(_))
        ));
        match h.exec(
            &backend,
            Command::CreateTopic {
                name: name.into(),
                partitions: 1,
                config: TopicConfig::default(),
                validate_only: false,
            },
        ) {
            Completion::CreateTopic(Err(BackendError::InvalidTopic(_))) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(next(&h.fake, "shop", "orders", 0), 0);
    let names: Vec<String> = listed(&mut h, &backend)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["orders", "shop.carts"]);
    assert_eq!(
        append(&mut h, &backend, "orders", 0, &[record(1)], None),
        Ok(0)
    );
}

/// A mapped stream that is missing is created like the gateway's own, or refused at start
/// when creating streams is not allowed.
#[test]
fn a_missing_mapped_stream_is_created_or_refused() {
    let mut h = Pool::new(FakeIggy::new());
    let mut config = mapped("", "shop");
    config.create_stream = false;
    h.fake.stream = Some("kafka".into());
    match h.connect_with(config) {
        Err(crate::ConnectError::NoStream(s)) => assert_eq!(s, "shop"),
        other => panic!("{other:?}"),
    }
    connect(&mut h, mapped("", "shop"));
    assert!(h.fake.other_streams.contains_key("shop"));
}
