//! The topic catalog and partition bounds: what the gateway knows of the Kafka topics (in
//! the streams the topic mapping names, `crate::mapping`) and of each partition it has
//! served, kept in step with Iggy. Everything here is keyed by Kafka topic name.
//!
//! Iggy describes a topic on request only, so the catalog keeps its latest answers: the
//! Kafka topics as last listed (served while Iggy cannot be reached or does not answer), their partition
//! counts and ids (commits are checked and fetches by topic id resolved without a round
//! trip), and each topic's latest description (shared by the fetches waiting on it). A topic
//! deleted and created again outside the gateway is noticed by its new id at the next
//! listing or description, and what the gateway knew of the old one's partitions goes.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use iggy_kafka_core::backend::{BackendError, GroupOffset, PartitionOffsets, TopicInfo, TopicRef};
use iggy_kafka_core::protocol::Uuid;
use iggy_kafka_iggy_client::protocol::codes::{GET_STREAM_CODE, GET_TOPIC_CODE};
use iggy_kafka_iggy_client::protocol::requests::streams::GetStreamRequest;
use iggy_kafka_iggy_client::protocol::requests::topics::GetTopicRequest;
use iggy_kafka_iggy_client::protocol::responses::streams::get_stream::TopicHeader;
use iggy_kafka_iggy_client::protocol::responses::streams::GetStreamResponse;
use iggy_kafka_iggy_client::protocol::responses::topics::GetTopicResponse;
use iggy_kafka_iggy_client::protocol::{WireDecode, WireEncode, WireIdentifier};
use iggy_kafka_iggy_client::Failure;

use crate::calls::{admin_lane, Calls};
use crate::mapping::{Place, Places};
use crate::offsets_log::is_own;
use crate::partition::PartitionState;
use crate::sync::lock;
use crate::wire::{self, backend_error, code, named};

pub(crate) struct Catalog {
    calls: Calls,
    /// Where each Kafka topic lives.
    places: Places,
    /// Whether topics the gateway creates are written through (see `IggyConfig`).
    write_through: bool,
    /// Per topic, per partition: looked up by `&str` on every append and read.
    partitions: Mutex<HashMap<String, HashMap<u32, Arc<PartitionState>>>>,
    /// The stream's topics as last seen (the gateway's own left out): their partition counts,
    /// to check commits without a round trip (refreshed from Iggy when a commit names
    /// something it does not hold), and their ids, to notice one created again.
    known: Mutex<HashMap<String, Known>>,
    /// Kafka topic ids to names, as of the last listing: fetches by id (v13+) then cost no
    /// extra round trip. A topic deleted and created again outside the gateway is noticed at
    /// the next listing (clients list topics when they refresh metadata) or question about
    /// the topic.
    ids: Mutex<HashMap<Uuid, String>>,
    /// Each topic's latest description from Iggy, shared by the fetches waiting on it.
    looks: Mutex<HashMap<String, Look>>,
    /// The stream's Kafka topics as last listed, served while Iggy cannot be reached: a
    /// broker that cannot reach its storage still knows its topics, and clients told that
    /// every topic is gone drop them from their assignments.
    listing: Mutex<Option<Vec<TopicInfo>>>,
}

/// How long a listing of the topics waits for Iggy when there is an earlier one to serve
/// instead. A healthy Iggy lists a stream's topics in milliseconds; one that is connected
/// but silent (stuck on its disk, paused) would otherwise hold every Metadata request until
/// the request timeout, and a broker that cannot reach its storage still knows its topics.
const LISTING_PATIENCE: Duration = Duration::from_secs(1);

/// A topic as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    id: Uuid,
    partitions: u32,
}

impl Known {
    fn of(t: &TopicHeader, tag: [u8; 4]) -> Self {
        Self {
            id: wire::topic_id(t, tag),
            partitions: t.partitions_count,
        }
    }
}

/// What is known of a topic's latest description from Iggy, for the fetches waiting on it.
#[derive(Default)]
struct Look {
    /// The latest answer, and when it was asked.
    latest: Option<(Instant, Arc<GetTopicResponse>)>,
    /// A request on its way, and when it was asked: fetches needing a look as recent wait
    /// for it rather than ask again.
    asking: Option<(Instant, Arc<Event>)>,
}

/// Ends an ask of [`Catalog::look`] however it ends (answered, failed, or dropped with its
/// fetch): the waiting fetches are told, and look again.
struct Asking<'a> {
    looks: &'a Mutex<HashMap<String, Look>>,
    topic: &'a str,
    done: Arc<Event>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if let Some(look) = lock(self.looks).get_mut(self.topic) {
            if look
                .asking
                .as_ref()
                .is_some_and(|(_, e)| Arc::ptr_eq(e, &self.done))
            {
                look.asking = None;
            }
        }
        self.done.notify(usize::MAX);
    }
}

impl Catalog {
    pub(crate) fn new(calls: Calls, places: Places, write_through: bool) -> Self {
        Self {
            calls,
            places,
            write_through,
            partitions: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            looks: Mutex::new(HashMap::new()),
            listing: Mutex::new(None),
        }
    }

    pub(crate) fn calls(&self) -> &Calls {
        &self.calls
    }

    /// The default stream's name: the one that holds the offsets log.
    pub(crate) fn stream_name(&self) -> &str {
        &self.places.default_stream().name
    }

    /// The topic mapping.
    pub(crate) fn places(&self) -> &Places {
        &self.places
    }

    /// Where Kafka topic `topic` lives in Iggy, as the identifiers of its stream and topic.
    pub(crate) fn locate(
        &self,
        topic: &str,
    ) -> Result<(&WireIdentifier, WireIdentifier), BackendError> {
        let Place {
            stream,
            topic: name,
        } = self.places.place(topic)?;
        Ok((&self.places.streams()[stream].id, named(&name)?))
    }

    /// The Kafka topic id of `topic` as last seen, if it was.
    pub(crate) fn known_id(&self, topic: &str) -> Option<Uuid> {
        lock(&self.known).get(topic).map(|k| k.id)
    }

    /// What a Kafka client sees of Iggy topic `t`, which it knows as `topic`.
    pub(crate) fn topic_info(&self, topic: &str, t: &TopicHeader) -> TopicInfo {
        wire::topic_info(topic, t, self.tag(topic))
    }

    /// The Kafka topic id of Iggy topic `t`, which Kafka clients know as `topic`.
    pub(crate) fn topic_id(&self, topic: &str, t: &TopicHeader) -> Uuid {
        wire::topic_id(t, self.tag(topic))
    }

    /// The tag of the topic ids of Kafka topic `topic`'s stream.
    fn tag(&self, topic: &str) -> [u8; 4] {
        let stream = self.places.locate(topic).map_or(0, |p| p.stream);
        self.places.streams()[stream].tag
    }

    /// The options of a topic the gateway creates (written through, unless configured
    /// otherwise).
    pub(crate) fn creating(&self) -> wire::Existing<'static> {
        wire::Existing::Creating {
            write_through: self.write_through,
        }
    }

    // ---- partitions ----

    /// What the gateway knows of a partition, made at its first request.
    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Arc<PartitionState> {
        let mut map = lock(&self.partitions);
        if let Some(p) = map.get(topic).and_then(|t| t.get(&partition)) {
            return Arc::clone(p);
        }
        Arc::clone(
            map.entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default(),
        )
    }

    /// Whether `state` is still what the gateway knows of the partition (not forgotten
    /// since it was taken).
    pub(crate) fn is_current(
        &self,
        topic: &str,
        partition: u32,
        state: &Arc<PartitionState>,
    ) -> bool {
        lock(&self.partitions)
            .get(topic)
            .and_then(|t| t.get(&partition))
            .is_some_and(|s| Arc::ptr_eq(s, state))
    }

    /// Every partition the gateway knows of.
    pub(crate) fn all_partitions(&self) -> Vec<Arc<PartitionState>> {
        lock(&self.partitions)
            .values()
            .flat_map(|t| t.values().cloned())
            .collect()
    }

    /// The partitions of `by_topic` the gateway knows of, each with what the caller paired
    /// with it; one it does not know (Iggy said it did not exist) is not made.
    pub(crate) fn existing<'a, T: Copy>(
        &self,
        by_topic: impl IntoIterator<Item = (&'a str, u32, T)>,
    ) -> Vec<(T, Arc<PartitionState>)> {
        let map = lock(&self.partitions);
        by_topic
            .into_iter()
            .filter_map(|(topic, partition, t)| {
                let state = map.get(topic)?.get(&partition)?;
                Some((t, Arc::clone(state)))
            })
            .collect()
    }

    /// The partitions the gateway knows of, by topic (for tests).
    #[cfg(test)]
    pub(crate) fn partitions_known(&self) -> Vec<(String, Vec<u32>)> {
        lock(&self.partitions)
            .iter()
            .map(|(t, p)| (t.clone(), p.keys().copied().collect()))
            .collect()
    }

    /// Passes on a request's `result`; when Iggy has no such topic or partition, the state
    /// the request made for it goes, so that requests naming made-up ones leave nothing
    /// behind to fill the gateway's memory.
    pub(crate) fn settle<T>(
        &self,
        topic: &str,
        partition: u32,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if matches!(
            result,
            Err(BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. })
        ) {
            self.forget_partition(topic, partition);
            if matches!(result, Err(BackendError::UnknownTopic(_))) {
                lock(&self.looks).remove(topic);
            }
        }
        result
    }

    /// A topic deleted and created again outside the gateway is new to Iggy: empty, its
    /// partitions placed on shards anew. What the gateway knew of the old one's partitions
    /// (idempotent producers, a batch in doubt, where appends land, polls sent ahead, which
    /// connection is fastest) would mislead it, so it goes.
    fn created_again(&self, name: &str) {
        if self.forget_topic(name) {
            tracing::info!(topic = %name, "topic created again outside the gateway: its partitions start afresh");
        }
    }

    /// Drops what the gateway knew of `name`'s partitions and its latest look; whether it
    /// knew any partition.
    pub(crate) fn forget_topic(&self, name: &str) -> bool {
        lock(&self.looks).remove(name);
        lock(&self.partitions).remove(name).is_some()
    }

    /// Drops what the gateway knew of one partition.
    pub(crate) fn forget_partition(&self, topic: &str, partition: u32) {
        let mut map = lock(&self.partitions);
        if let Some(t) = map.get_mut(topic) {
            t.remove(&partition);
            if t.is_empty() {
                map.remove(topic);
            }
        }
    }

    // ---- topics ----

    /// Asks Iggy about `topic`, and keeps the answer for [`Catalog::look`].
    pub(crate) async fn topic_header(
        &self,
        topic: &str,
    ) -> Result<Arc<GetTopicResponse>, BackendError> {
        let asked = self.calls.clock().now();
        let (stream_id, topic_id) = self.locate(topic)?;
        let request = GetTopicRequest {
            stream_id: stream_id.clone(),
            topic_id,
        };
        let reply = self
            .calls
            .call(admin_lane(topic), GET_TOPIC_CODE, request.to_bytes())
            .await
            .map_err(|f| backend_error(f, topic, None))
            // An absent topic may come back as an empty reply rather than an error.
            .and_then(|r| {
                if r.is_empty() {
                    Err(BackendError::UnknownTopic(TopicRef::Name(topic.into())))
                } else {
                    Ok(r)
                }
            })
            .inspect_err(|e| {
                if matches!(e, BackendError::UnknownTopic(_)) {
                    lock(&self.looks).remove(topic);
                }
            })?;
        let (header, _) = GetTopicResponse::decode(&reply)
            .map_err(|e| BackendError::Other(format!("iggy topic reply: {e}")))?;
        self.saw(topic, &header.topic);
        let header = Arc::new(header);
        let mut looks = lock(&self.looks);
        let look = looks.entry(topic.to_owned()).or_default();
        if look.latest.as_ref().is_none_or(|(at, _)| *at < asked) {
            look.latest = Some((asked, Arc::clone(&header)));
        }
        Ok(header)
    }

    /// A look at `topic` asked no earlier than `at_least`: the latest one if it is that
    /// recent, or the one on its way if it is, else a new request. However many fetches wait
    /// on a topic, Iggy is then asked about it about once per poll interval.
    pub(crate) async fn look(
        &self,
        topic: &str,
        at_least: Instant,
    ) -> Result<Arc<GetTopicResponse>, BackendError> {
        loop {
            let waiting = {
                let mut looks = lock(&self.looks);
                let look = looks.entry(topic.to_owned()).or_default();
                match (&look.latest, &look.asking) {
                    (Some((asked, header)), _) if *asked >= at_least => {
                        return Ok(Arc::clone(header));
                    }
                    (_, Some((asked, done))) if *asked >= at_least => Ok(done.listen()),
                    _ => {
                        let done = Arc::new(Event::new());
                        look.asking = Some((self.calls.clock().now(), Arc::clone(&done)));
                        Err(done)
                    }
                }
            };
            match waiting {
                Ok(listener) => listener.await,
                Err(done) => {
                    let _asking = Asking {
                        looks: &self.looks,
                        topic,
                        done,
                    };
                    return self.topic_header(topic).await;
                }
            }
        }
    }

    /// Notes Kafka topic `name` as Iggy describes it now.
    fn saw(&self, name: &str, t: &TopicHeader) {
        if is_own(name) {
            return;
        }
        let now = Known::of(t, self.tag(name));
        let was = {
            let mut known = lock(&self.known);
            match known.get_mut(name) {
                Some(k) => std::mem::replace(k, now),
                None => {
                    known.insert(name.to_owned(), now);
                    return;
                }
            }
        };
        if was.id != now.id {
            let mut ids = lock(&self.ids);
            ids.remove(&was.id);
            ids.insert(now.id, name.to_owned());
            drop(ids);
            self.created_again(name);
        }
    }

    /// A partition's bounds, asked of Iggy.
    pub(crate) async fn offsets(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, BackendError> {
        let t = self.topic_header(topic).await?;
        self.partition_offsets(topic, &t, partition)
    }

    /// One partition's offsets out of its topic's metadata.
    pub(crate) fn partition_offsets(
        &self,
        topic: &str,
        t: &GetTopicResponse,
        partition: u32,
    ) -> Result<PartitionOffsets, BackendError> {
        let p = t
            .partitions
            .iter()
            .find(|p| p.id == partition)
            .ok_or_else(|| BackendError::UnknownPartition {
                topic: topic.into(),
                partition,
            })?;
        // Iggy reports the last offset; an empty partition reports 0 with no messages.
        let empty = p.messages_count == 0 && p.current_offset == 0 && p.size_bytes == 0;
        let high_watermark = if empty { 0 } else { p.current_offset + 1 };
        let log_start = high_watermark.saturating_sub(p.messages_count);
        let state = self.partition(topic, partition);
        state.log_start.store(log_start, Ordering::Relaxed);
        state.saw_end(high_watermark);
        if let Some(size) = p.size_bytes.checked_div(p.messages_count) {
            state.message_size.store(
                usize::try_from(size).unwrap_or(usize::MAX),
                Ordering::Relaxed,
            );
        }
        Ok(PartitionOffsets {
            log_start,
            high_watermark,
            size_bytes: Some(p.size_bytes),
            last_stable: None,
        })
    }

    /// An Iggy failure of a partition request as a Kafka error: a generic "not found" is
    /// the topic's absence or the partition's, which the topic's metadata tells apart. A
    /// "not found" for a partition the topic holds comes from a node that does not serve it
    /// for a moment (a node of a cluster coming back, or between views): it is retriable,
    /// and not taken for a missing topic, whose partitions' state the gateway would drop
    /// (its idempotent producers read back then from a node that may be behind).
    pub(crate) async fn refine(
        &self,
        failure: Failure,
        topic: &str,
        partition: u32,
    ) -> BackendError {
        if failure != Failure::Status(code::RESOURCE_NOT_FOUND) {
            return backend_error(failure, topic, Some(partition));
        }
        match self.topic_header(topic).await {
            Ok(t) if t.topic.partitions_count > partition => {
                // Retried for as long as the client retries: said above debug, so that a
                // node that never serves it again (or a request Iggy cannot resolve, which
                // it answers the same) does not go unseen.
                tracing::warn!(
                    topic, partition,
                    "the Iggy node answered \"not found\" for a partition the topic holds; the request is retriable"
                );
                BackendError::Unavailable(format!(
                    "iggy: {topic}-{partition} exists, but the node asked does not serve it now"
                ))
            }
            Ok(_) => BackendError::UnknownPartition {
                topic: topic.into(),
                partition,
            },
            Err(e) => e,
        }
    }

    /// Stream `stream`'s description (an index into [`Places::streams`]), as Iggy sends
    /// it: empty when the stream does not exist.
    pub(crate) async fn stream_reply(&self, stream: usize) -> Result<Bytes, Failure> {
        let request = GetStreamRequest {
            stream_id: self.places.streams()[stream].id.clone(),
        };
        self.calls
            .call(0, GET_STREAM_CODE, request.to_bytes())
            .await
    }

    /// Every topic of stream `stream`, the gateway's own included; `None` when the stream
    /// does not exist.
    async fn stream_headers(
        &self,
        stream: usize,
    ) -> Result<Option<Vec<TopicHeader>>, BackendError> {
        let name = &self.places.streams()[stream].name;
        let reply = match self.stream_reply(stream).await {
            Ok(reply) if reply.is_empty() => return Ok(None),
            Ok(reply) => reply,
            Err(f) => {
                return match backend_error(f, name, None) {
                    BackendError::UnknownTopic(_) => Ok(None),
                    e => Err(e),
                }
            }
        };
        GetStreamResponse::decode(&reply)
            .map(|(r, _)| Some(r.topics))
            .map_err(|e| BackendError::Other(format!("iggy stream reply: {e}")))
    }

    /// Every topic of the default stream, the gateway's own included.
    pub(crate) async fn stream_topics(&self) -> Result<Vec<TopicHeader>, BackendError> {
        self.stream_headers(0).await?.ok_or_else(|| {
            BackendError::UnknownTopic(TopicRef::Name(self.stream_name().to_owned()))
        })
    }

    /// Every Kafka topic, from every stream of the mapping, with its Kafka name and its
    /// stream's topic-id tag; what is known of them is brought up to date.
    async fn kafka_topics(&self) -> Result<Vec<(String, TopicHeader, [u8; 4])>, BackendError> {
        let mut all = Vec::new();
        for (i, stream) in self.places.streams().iter().enumerate() {
            let Some(topics) = self.stream_headers(i).await? else {
                if i == 0 {
                    return Err(BackendError::UnknownTopic(TopicRef::Name(
                        stream.name.clone(),
                    )));
                }
                // Deleted behind the gateway: its topics are gone until it is back.
                tracing::debug!(stream = %stream.name, "a mapped Iggy stream does not exist");
                continue;
            };
            for t in topics {
                let iggy = t.name.as_str();
                match self.places.kafka_name(i, iggy) {
                    Some(kafka) => all.push((kafka.into_owned(), t, stream.tag)),
                    None if i == 0 && !is_own(iggy) => {
                        tracing::debug!(topic = %iggy, "an Iggy topic the topic mapping hides from Kafka clients");
                    }
                    None => {}
                }
            }
        }
        let known = all
            .iter()
            .map(|(k, t, tag)| (k.clone(), Known::of(t, *tag)))
            .collect();
        let was = std::mem::replace(&mut *lock(&self.known), known);
        for (k, t, tag) in &all {
            if was.get(k).is_some_and(|w| w.id != wire::topic_id(t, *tag)) {
                self.created_again(k);
            }
        }
        let ids = all
            .iter()
            .map(|(k, t, tag)| (wire::topic_id(t, *tag), k.clone()))
            .collect();
        let before = std::mem::replace(&mut *lock(&self.ids), ids);
        // Those who turned write-through off know what Iggy's default means.
        for (k, t, tag) in all.iter().filter(|_| self.write_through) {
            let storage = wire::Storage::of(t);
            if storage.messages_required_to_save > 1
                && !before.contains_key(&wire::topic_id(t, *tag))
            {
                // Created outside the gateway with Iggy's default: say once what it means.
                tracing::warn!(
                    topic = %k,
                    messages_required_to_save = storage.messages_required_to_save,
                    "Iggy acknowledges appends to this topic before writing them out: a crash \
                     of the Iggy server may lose acknowledged records"
                );
            }
        }
        Ok(all)
    }

    /// The Kafka topics, all of them or those named; the topics as last listed while Iggy
    /// cannot be reached, or does not answer within [`LISTING_PATIENCE`].
    pub(crate) async fn list_topics(
        &self,
        only: Option<&[TopicRef]>,
    ) -> Result<Vec<TopicInfo>, BackendError> {
        let listed = if lock(&self.listing).is_some() {
            let clock = self.calls.clock();
            let deadline = clock.now() + LISTING_PATIENCE;
            let mut patience = clock.sleep_until(deadline);
            let mut slept = false;
            let mut listing = pin!(self.kafka_topics());
            poll_fn(|cx| {
                if let Poll::Ready(listed) = listing.as_mut().poll(cx) {
                    return Poll::Ready(listed);
                }
                slept = slept || patience.as_mut().poll(cx).is_ready();
                // The clock decides, not the sleep alone: a test's clock may end sleeps at once.
                if slept && clock.now() >= deadline {
                    Poll::Ready(Err(BackendError::Unavailable(format!(
                        "Iggy did not list the topics within {LISTING_PATIENCE:?}"
                    ))))
                } else {
                    Poll::Pending
                }
            })
            .await
        } else {
            self.kafka_topics().await
        };
        let all: Vec<TopicInfo> = match listed {
            Ok(topics) => {
                let all: Vec<TopicInfo> = topics
                    .iter()
                    .map(|(k, t, tag)| wire::topic_info(k, t, *tag))
                    .collect();
                *lock(&self.listing) = Some(all.clone());
                all
            }
            Err(BackendError::Unavailable(why)) => {
                let Some(last) = lock(&self.listing).clone() else {
                    return Err(BackendError::Unavailable(why));
                };
                tracing::debug!(%why, "no listing from Iggy: the topics as last listed");
                last
            }
            Err(e) => return Err(e),
        };
        Ok(all
            .into_iter()
            .filter(|t| {
                only.is_none_or(|only| {
                    only.iter().any(|r| match r {
                        TopicRef::Name(n) => *n == t.name,
                        TopicRef::Id(id) => *id == t.id,
                    })
                })
            })
            .collect())
    }

    /// The name of a topic given by name or id.
    pub(crate) async fn topic_name(&self, topic: &TopicRef) -> Result<String, BackendError> {
        let id = match topic {
            TopicRef::Name(n) => return Ok(n.clone()),
            TopicRef::Id(id) => id,
        };
        let cached = lock(&self.ids).get(id).cloned();
        if let Some(name) = cached {
            return Ok(name);
        }
        self.list_topics(Some(std::slice::from_ref(topic)))
            .await?
            .into_iter()
            .next()
            .map(|t| t.name)
            .ok_or(BackendError::UnknownTopic(TopicRef::Id(*id)))
    }

    /// The gateway created `info`: whatever was known of a topic of this name is of one
    /// deleted outside the gateway.
    pub(crate) fn created(&self, info: &TopicInfo) {
        lock(&self.known).insert(
            info.name.clone(),
            Known {
                id: info.id,
                partitions: info.partitions,
            },
        );
        lock(&self.ids).insert(info.id, info.name.clone());
        self.forget_topic(&info.name);
    }

    /// The gateway deleted topic `name`.
    pub(crate) fn deleted(&self, name: &str) {
        self.forget_topic(name);
        lock(&self.known).remove(name);
        if let Some(listing) = lock(&self.listing).as_mut() {
            listing.retain(|t| t.name != name);
        }
        lock(&self.ids).retain(|_, n| *n != name);
    }

    /// The gateway grew `topic` (described by `header`) to `total` partitions.
    pub(crate) fn grown(&self, topic: &str, header: &TopicHeader, total: u32) {
        lock(&self.known).insert(
            topic.to_owned(),
            Known {
                id: wire::topic_id(header, self.tag(topic)),
                partitions: total,
            },
        );
    }

    /// Checks each of `offsets` against the topics as last seen (asking Iggy again when one
    /// names something they do not hold): `Ok` for a partition that exists.
    pub(crate) async fn check_partitions(
        &self,
        offsets: &[GroupOffset],
    ) -> Vec<Result<(), BackendError>> {
        let fits = |known: &HashMap<String, Known>| {
            offsets.iter().all(|o| {
                known
                    .get(&o.topic)
                    .is_some_and(|k| o.partition < k.partitions)
            })
        };
        if !fits(&lock(&self.known)) {
            if let Err(e) = self.kafka_topics().await {
                return offsets.iter().map(|_| Err(e.clone())).collect();
            }
        }
        let known = lock(&self.known);
        offsets
            .iter()
            .map(|o| match known.get(&o.topic) {
                None => Err(BackendError::UnknownTopic(TopicRef::Name(o.topic.clone()))),
                Some(k) if o.partition >= k.partitions => Err(BackendError::UnknownPartition {
                    topic: o.topic.clone(),
                    partition: o.partition,
                }),
                Some(_) => Ok(()),
            })
            .collect()
    }
}
