//! `iggy-sdk-interop read URL STREAM TOPIC PARTITIONS`: prints every message of the topic as
//! one JSON line (partition, offset, payload in hex, user headers with their kinds).
//! `iggy-sdk-interop send URL STREAM TOPIC COUNT`: sends COUNT messages with typed user
//! headers to partition 0 (payload `iggy-native-<i>`).
//! `iggy-sdk-interop create URL STREAM TOPIC PARTITIONS`: creates the topic in Iggy.
//! `iggy-sdk-interop token URL NAME - 0`: creates a personal access token and prints it.
//! `iggy-sdk-interop offsets URL STREAM TOPIC PARTITIONS CONSUMER`: prints the stored offset
//! of the consumer named CONSUMER on each partition as a JSON object (null where none).
//! `iggy-sdk-interop topic URL STREAM TOPIC 0`: prints the topic's expiry, size limit and
//! options (client-given and server-derived alike) as a JSON object.
//! `iggy-sdk-interop grant URL STREAM TOPIC 0 USER`: makes Iggy user USER (password
//! `USER-secret`) with permission to read topic TOPIC of STREAM, and nothing else.
//! `iggy-sdk-interop revoke URL STREAM TOPIC 0 USER`: takes every permission of USER away.
//! `iggy-sdk-interop drop-user URL STREAM TOPIC 0 USER`: deletes USER.

use std::collections::BTreeMap;
use std::error::Error;

use bytes::Bytes;
use iggy::prelude::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url, stream, topic, n, extra) = match args.as_slice() {
        [_, mode, url, stream, topic, n] => (mode, url, stream, topic, n, None),
        [_, mode, url, stream, topic, n, extra] => (mode, url, stream, topic, n, Some(extra)),
        _ => return Err("usage: iggy-sdk-interop MODE URL STREAM TOPIC N [CONSUMER]".into()),
    };
    let n: u32 = n.parse().unwrap_or(0);
    let client = IggyClient::from_connection_string(url)?;
    client.connect().await?;
    let stream_id = Identifier::named(stream)?;
    let topic_id = Identifier::named(topic)?;
    match mode.as_str() {
        "read" => {
            let consumer = Consumer::new(Identifier::numeric(99)?);
            for partition in 0..n {
                let mut offset = 0u64;
                loop {
                    let polled = client
                        .poll_messages(
                            &stream_id,
                            &topic_id,
                            Some(partition),
                            &consumer,
                            &PollingStrategy::offset(offset),
                            1000,
                            false,
                        )
                        .await?;
                    if polled.messages.is_empty() {
                        break;
                    }
                    for m in &polled.messages {
                        let mut headers = serde_json::Map::new();
                        if let Some(map) = m.user_headers_map()? {
                            for (k, v) in &map {
                                headers.insert(
                                    k.to_string_value(),
                                    serde_json::json!([v.kind().to_string(), v.to_string_value()]),
                                );
                            }
                        }
                        println!(
                            "{}",
                            serde_json::json!({
                                "partition": partition,
                                "offset": m.header.offset,
                                "payload": hex(&m.payload),
                                "origin_timestamp": m.header.origin_timestamp,
                                "headers": headers,
                            })
                        );
                        offset = m.header.offset + 1;
                    }
                }
            }
        }
        "send" => {
            let mut messages = Vec::new();
            for i in 0..n {
                let mut headers = BTreeMap::new();
                headers.insert(
                    HeaderKey::try_from("source")?,
                    HeaderValue::try_from("sdk")?,
                );
                headers.insert(HeaderKey::try_from("seq")?, HeaderValue::from(u64::from(i)));
                messages.push(
                    IggyMessage::builder()
                        .payload(Bytes::from(format!("iggy-native-{i}")))
                        .user_headers(headers)
                        .build()?,
                );
            }
            client
                .send_messages(
                    &stream_id,
                    &topic_id,
                    &Partitioning::partition_id(0),
                    &mut messages,
                )
                .await?;
        }
        "create" => {
            let options = TopicCreateOptions {
                partitions_count: Some(n),
                ..TopicCreateOptions::default()
            };
            client.create_topic(&stream_id, topic, &options).await?;
        }
        "delete" => client.delete_topic(&stream_id, &topic_id).await?,
        "grant" => {
            let user = extra.ok_or("grant needs a user name")?;
            let stream = client.get_stream(&stream_id).await?.ok_or("no such stream")?;
            let topic = client
                .get_topic(&stream_id, &topic_id)
                .await?
                .ok_or("no such topic")?;
            let read = TopicPermissions {
                read_topic: true,
                ..TopicPermissions::default()
            };
            let on_stream = StreamPermissions {
                topics: Some([(topic.id as usize, read)].into_iter().collect()),
                ..StreamPermissions::default()
            };
            let permissions = Permissions {
                global: GlobalPermissions::default(),
                streams: Some([(stream.id as usize, on_stream)].into_iter().collect()),
            };
            client
                .create_user(
                    user,
                    &format!("{user}-secret"),
                    UserStatus::Active,
                    Some(permissions),
                )
                .await?;
        }
        "revoke" => {
            let user = extra.ok_or("revoke needs a user name")?;
            client
                .update_permissions(&Identifier::named(user)?, None)
                .await?;
        }
        "drop-user" => {
            let user = extra.ok_or("drop-user needs a user name")?;
            client.delete_user(&Identifier::named(user)?).await?;
        }
        "token" => {
            let raw = client
                .create_personal_access_token(stream, IggyExpiry::NeverExpire)
                .await?;
            println!("{}", raw.token);
        }
        "offsets" => {
            let name = extra.ok_or("offsets needs a consumer name")?;
            let consumer = Consumer::new(Identifier::named(name)?);
            let mut out = serde_json::Map::new();
            for partition in 0..n {
                let info = client
                    .get_consumer_offset(&consumer, &stream_id, &topic_id, Some(partition))
                    .await?;
                out.insert(
                    partition.to_string(),
                    info.map_or(serde_json::Value::Null, |i| i.stored_offset.into()),
                );
            }
            println!("{}", serde_json::Value::Object(out));
        }
        "topic" => {
            let t = client
                .get_topic(&stream_id, &topic_id)
                .await?
                .ok_or("no such topic")?;
            let options: serde_json::Map<String, serde_json::Value> = t
                .options
                .iter()
                .map(|(k, v)| (k.to_string_value(), v.value.to_string_value().into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "message_expiry": u64::from(t.message_expiry),
                    "max_topic_size": u64::from(t.max_topic_size),
                    "options": options,
                })
            );
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
