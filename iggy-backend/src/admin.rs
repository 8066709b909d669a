//! Topic administration: the streams, and Kafka's topic commands as Iggy requests.
//!
//! A Kafka topic is created, changed and deleted where the topic mapping places it
//! (`crate::mapping`). Kafka's topic
//! configs become Iggy's topic options (`crate::wire::topic_options`); Kafka's
//! `retention.bytes` is per partition where Iggy's size limit is per topic, so the limit
//! grows with the partitions.

use iggy_kafka_core::backend::{
    check_partition_growth, BackendError, TopicConfig, TopicInfo, TopicRef,
};
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_PARTITIONS_CODE, CREATE_STREAM_CODE, CREATE_TOPIC_CODE, DELETE_TOPIC_CODE,
    UPDATE_TOPIC_CODE,
};
use iggy_kafka_iggy_client::protocol::requests::partitions::CreatePartitionsRequest;
use iggy_kafka_iggy_client::protocol::requests::streams::CreateStreamRequest;
use iggy_kafka_iggy_client::protocol::requests::topics::{
    CreateTopicRequest, DeleteTopicRequest, UpdateTopicRequest,
};
use iggy_kafka_iggy_client::protocol::responses::streams::get_stream::TopicHeader;
use iggy_kafka_iggy_client::protocol::responses::topics::GetTopicResponse;
use iggy_kafka_iggy_client::protocol::{WireDecode, WireEncode, WireName, WireOptions};
use iggy_kafka_iggy_client::Failure;

use crate::calls::admin_lane;
use crate::catalog::Catalog;
use crate::error::ConnectError;
use crate::offsets_log::{is_own, TOPIC_PREFIX};
use crate::wire::{self, backend_error, code};

/// Makes sure every stream of the topic mapping exists, creating those missing when
/// `create` allows.
pub(crate) async fn ensure_streams(catalog: &Catalog, create: bool) -> Result<(), ConnectError> {
    for (i, stream) in catalog.places().streams().iter().enumerate() {
        ensure_stream(catalog, i, &stream.name, create).await?;
    }
    Ok(())
}

/// Makes sure stream `index` (named `stream`) exists, creating it when `create` allows.
async fn ensure_stream(
    catalog: &Catalog,
    index: usize,
    stream: &str,
    create: bool,
) -> Result<(), ConnectError> {
    // Iggy says "no such stream" with an empty reply or with an error.
    let missing = match catalog.stream_reply(index).await {
        Ok(reply) => reply.is_empty(),
        Err(f) => match backend_error(f, stream, None) {
            BackendError::UnknownTopic(_) => true,
            source => {
                return Err(ConnectError::ReadStream {
                    stream: stream.to_owned(),
                    source,
                })
            }
        },
    };
    match (missing, create) {
        (false, _) => return Ok(()),
        (true, true) => {}
        (true, false) => return Err(ConnectError::NoStream(stream.to_owned())),
    }
    let name = WireName::new(stream.to_owned()).map_err(|e| ConnectError::StreamName {
        name: stream.to_owned(),
        reason: e.to_string(),
    })?;
    let request = CreateStreamRequest {
        name,
        options: WireOptions::empty(),
    };
    match catalog
        .calls()
        .call(0, CREATE_STREAM_CODE, request.to_bytes())
        .await
    {
        Ok(_) | Err(Failure::Status(code::STREAM_NAME_ALREADY_EXISTS)) => {
            tracing::info!(%stream, "created the Iggy stream");
            Ok(())
        }
        Err(source) => Err(ConnectError::CreateStream {
            stream: stream.to_owned(),
            source,
        }),
    }
}

pub(crate) async fn create_topic(
    catalog: &Catalog,
    name: &str,
    partitions: u32,
    config: &TopicConfig,
    validate_only: bool,
) -> Result<TopicInfo, BackendError> {
    let place = catalog.places().locate(name);
    let Some(place) = place.filter(|_| !is_own(name)) else {
        return Err(BackendError::InvalidTopic(format!(
            "{name}: the name is the gateway's own, or the topic mapping gives its Iggy topic \
             another name (prefix {TOPIC_PREFIX})"
        )));
    };
    let options = wire::topic_options(config, partitions, catalog.creating())?;
    let wire_name =
        WireName::new(place.topic.as_ref()).map_err(|_| BackendError::InvalidTopic(name.into()))?;
    if validate_only {
        return match catalog.topic_header(name).await {
            Ok(_) => Err(BackendError::TopicExists(name.into())),
            Err(BackendError::UnknownTopic(_)) => Ok(TopicInfo {
                name: name.into(),
                id: Uuid::NIL,
                partitions,
                config: config.clone(),
            }),
            Err(e) => Err(e),
        };
    }
    let request = CreateTopicRequest {
        stream_id: catalog.places().streams()[place.stream].id.clone(),
        partitions_count: partitions,
        name: wire_name,
        options,
    };
    let reply = catalog
        .calls()
        .call(admin_lane(name), CREATE_TOPIC_CODE, request.to_bytes())
        .await
        .map_err(|f| backend_error(f, name, None))?;
    let info = match GetTopicResponse::decode(&reply) {
        Ok((r, _)) => catalog.topic_info(name, &r.topic),
        // Created; read it back for its identity.
        Err(_) => catalog.topic_info(name, &catalog.topic_header(name).await?.topic),
    };
    catalog.created(&info);
    Ok(info)
}

/// Deletes a topic; its committed offsets are the caller's to delete.
pub(crate) async fn delete_topic(
    catalog: &Catalog,
    topic: &TopicRef,
) -> Result<TopicInfo, BackendError> {
    let name = catalog.topic_name(topic).await?;
    let header = catalog.topic_header(&name).await?;
    let (stream_id, topic_id) = catalog.locate(&name)?;
    let request = DeleteTopicRequest {
        stream_id: stream_id.clone(),
        topic_id,
    };
    catalog
        .calls()
        .call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
        .await
        .map_err(|f| backend_error(f, &name, None))?;
    catalog.deleted(&name);
    Ok(catalog.topic_info(&name, &header.topic))
}

pub(crate) async fn create_partitions(
    catalog: &Catalog,
    topic: &str,
    total: u32,
    validate_only: bool,
) -> Result<(), BackendError> {
    let described = catalog.topic_header(topic).await?;
    let header = &described.topic;
    let current = header.partitions_count;
    check_partition_growth(current, total)?;
    if validate_only {
        return Ok(());
    }
    let (stream_id, topic_id) = catalog.locate(topic)?;
    let request = CreatePartitionsRequest {
        stream_id: stream_id.clone(),
        topic_id,
        partitions_count: total - current,
    };
    catalog
        .calls()
        .call(
            admin_lane(topic),
            CREATE_PARTITIONS_CODE,
            request.to_bytes(),
        )
        .await
        .map_err(|f| backend_error(f, topic, None))?;
    catalog.grown(topic, header, total);
    // Kafka's retention.bytes is per partition and Iggy's limit per topic: the topic's
    // limit grows with it, so each partition keeps what it kept before.
    let config = catalog.topic_info(topic, header).config;
    if config.retention_bytes.is_some() {
        let grown = match wire::topic_options(&config, total, wire::Existing::Altering(header)) {
            Ok(options) => update_topic(catalog, topic, header, options).await,
            Err(e) => Err(e),
        };
        if let Err(e) = grown {
            tracing::error!(%topic, error = %e, "partitions created, but the topic's size limit was not grown with them");
        }
    }
    Ok(())
}

/// Makes every gateway-owned topic of the stream (committed offsets, SCRAM credentials,
/// transaction state) keep its records for ever: one made with an expiry or a size limit
/// (before the gateway created them never-expiring, or changed with Iggy's tools since)
/// would drop state still in use. Logs each one changed; a topic Iggy does not let it
/// change is left as it is, with a warning.
pub(crate) async fn keep_own_topics_forever(catalog: &Catalog) -> Result<(), BackendError> {
    let limited = |v: u64| v != wire::UNLIMITED && v != 0;
    for t in catalog.stream_topics().await? {
        let name = t.name.as_str().to_owned();
        if !is_own(&name) || !(limited(t.message_expiry) || limited(t.max_topic_size)) {
            continue;
        }
        let request = UpdateTopicRequest {
            stream_id: catalog.calls().stream().clone(),
            topic_id: wire::named(&name)?,
            name: t.name.clone(),
            options: wire::kept_forever_options(wire::Existing::Altering(&t))?,
        };
        match catalog
            .calls()
            .call(admin_lane(&name), UPDATE_TOPIC_CODE, request.to_bytes())
            .await
        {
            Ok(_) => tracing::info!(
                topic = %name,
                message_expiry_us = t.message_expiry,
                max_topic_size = t.max_topic_size,
                "a gateway-owned topic had a retention limit; it now never expires and has no size limit"
            ),
            Err(f) => tracing::warn!(
                topic = %name,
                error = %backend_error(f, &name, None),
                "a gateway-owned topic has a retention limit that could not be lifted: \
                 records past it would be lost"
            ),
        }
    }
    Ok(())
}

/// Sends Iggy `options` to change `topic` (whose header is `header`).
async fn update_topic(
    catalog: &Catalog,
    topic: &str,
    header: &TopicHeader,
    options: WireOptions,
) -> Result<(), BackendError> {
    let (stream_id, topic_id) = catalog.locate(topic)?;
    let request = UpdateTopicRequest {
        stream_id: stream_id.clone(),
        topic_id,
        name: header.name.clone(),
        options,
    };
    catalog
        .calls()
        .call(admin_lane(topic), UPDATE_TOPIC_CODE, request.to_bytes())
        .await
        .map(|_| ())
        .map_err(|f| backend_error(f, topic, None))
}

pub(crate) async fn alter_topic_config(
    catalog: &Catalog,
    topic: &str,
    config: &TopicConfig,
    validate_only: bool,
) -> Result<(), BackendError> {
    let described = catalog.topic_header(topic).await?;
    let header = &described.topic;
    let options = wire::topic_options(
        config,
        header.partitions_count,
        wire::Existing::Altering(header),
    )?;
    if validate_only {
        return Ok(());
    }
    update_topic(catalog, topic, header, options).await
}
