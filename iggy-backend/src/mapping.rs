//! Where each Kafka topic lives in Iggy: the topic mapping.
//!
//! A Kafka topic is found in one of three ways, the first that applies:
//! 1. an explicit entry (`orders=shop/orders`) names its stream and topic;
//! 2. the naming rule: a name `STREAM.TOPIC` whose `STREAM` is one of the mapped streams
//!    (the longest such prefix) is topic `TOPIC` of that stream;
//! 3. otherwise it is the Iggy topic of the same name in the default stream (`--stream`).
//!
//! The mapping is one-to-one. Each Iggy topic has at most one Kafka name, the one whose
//! lookup leads back to it: an Iggy topic with an explicit entry is reachable by that
//! name only, and a default-stream topic whose name the rule claims (`shop.orders` when
//! `shop` is a mapped stream) is hidden. Iggy topics whose names Kafka cannot spell are not
//! listed. Everything the gateway keeps per topic (partition state, idempotent producers,
//! committed offsets, topic ids) is keyed by the Kafka name, so it follows the mapping.
//!
//! The offsets log stays in the default stream, and the gateway's own topics
//! (`offsets_log::TOPIC_PREFIX`) cannot be reached through any stream.

use std::borrow::Cow;
use std::collections::HashMap;

use iggy_kafka_core::backend::{BackendError, TopicRef};
use iggy_kafka_iggy_client::protocol::WireIdentifier;

use crate::offsets_log::is_own;

/// Kafka's longest topic name.
const MAX_KAFKA_NAME: usize = 249;
/// Iggy's longest stream or topic name.
const MAX_IGGY_NAME: usize = 255;

/// The topic mapping as configured: explicit entries and the streams the naming rule
/// exposes. The default (no entries, no streams) maps every Kafka topic into `--stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicMapping {
    entries: Vec<MapEntry>,
    streams: Vec<String>,
}

/// One explicit entry: the Kafka topic `kafka` is topic `topic` of Iggy stream `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MapEntry {
    kafka: String,
    stream: String,
    topic: String,
}

/// Why a topic mapping was refused, with the option it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{option}: {reason}")]
pub struct MappingError {
    /// The option (`map-topics` or `map-streams`).
    pub option: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl TopicMapping {
    /// Parses the two options: `topics` is a comma-separated list of
    /// `KAFKA_TOPIC=STREAM/TOPIC` entries (split at the first `=` and the first `/` after
    /// it), `streams` a comma-separated list of the streams whose topics appear as
    /// `STREAM.TOPIC`. `default_stream` is `--stream`.
    ///
    /// # Errors
    /// A `default_stream` Iggy would refuse, an entry that is not of that shape, a Kafka name Kafka would refuse, an Iggy name
    /// Iggy would refuse, a Kafka name or Iggy topic given twice, a Kafka name the naming
    /// rule would also claim, a mapped stream that is the default stream or is listed
    /// twice.
    pub fn parse(default_stream: &str, topics: &str, streams: &str) -> Result<Self, MappingError> {
        let fail = |option, reason: String| MappingError { option, reason };
        iggy_name(default_stream)
            .map_err(|r| fail("stream", format!("{default_stream:?}: {r}")))?;
        let mut mapping = Self::default();
        for s in streams.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            iggy_name(s).map_err(|r| fail("map-streams", format!("stream {s:?}: {r}")))?;
            if s == default_stream {
                return Err(fail(
                    "map-streams",
                    format!(
                        "{s:?} is the default stream (--stream): its topics keep their own names"
                    ),
                ));
            }
            if mapping.streams.iter().any(|t| t == s) {
                return Err(fail("map-streams", format!("{s:?} is listed twice")));
            }
            mapping.streams.push(s.to_owned());
        }
        for entry in topics.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |reason: String| fail("map-topics", format!("{entry:?}: {reason}"));
            let Some((kafka, place)) = entry.split_once('=') else {
                return Err(bad("expected KAFKA_TOPIC=STREAM/TOPIC".into()));
            };
            let Some((stream, topic)) = place.split_once('/') else {
                return Err(bad("expected KAFKA_TOPIC=STREAM/TOPIC".into()));
            };
            let (kafka, stream, topic) = (kafka.trim(), stream.trim(), topic.trim());
            kafka_name(kafka).map_err(|r| bad(format!("Kafka topic name: {r}")))?;
            iggy_name(stream).map_err(|r| bad(format!("stream name: {r}")))?;
            iggy_name(topic).map_err(|r| bad(format!("topic name: {r}")))?;
            if is_own(topic) || is_own(kafka) {
                return Err(bad("the gateway's own topics cannot be mapped".into()));
            }
            if let Some(s) = mapping.rule_stream(kafka) {
                return Err(bad(format!(
                    "the naming rule already maps this name into stream {s:?} (--map-streams)"
                )));
            }
            for e in &mapping.entries {
                if e.kafka == kafka {
                    return Err(bad("this Kafka topic is mapped twice".into()));
                }
                if e.stream == stream && e.topic == topic {
                    return Err(bad(format!(
                        "Iggy topic {stream}/{topic} is already mapped to {:?}",
                        e.kafka
                    )));
                }
            }
            mapping.entries.push(MapEntry {
                kafka: kafka.to_owned(),
                stream: stream.to_owned(),
                topic: topic.to_owned(),
            });
        }
        Ok(mapping)
    }

    /// Whether every Kafka topic is simply the topic of the same name in the default
    /// stream.
    #[must_use]
    pub fn is_identity(&self) -> bool {
        self.entries.is_empty() && self.streams.is_empty()
    }

    /// Where the Kafka topic `kafka` lives: its Iggy stream and topic names, with
    /// `default_stream` being `--stream`. Permissions are about these.
    #[must_use]
    pub fn place(&self, default_stream: &str, kafka: &str) -> (String, String) {
        if let Some(e) = self.entries.iter().find(|e| e.kafka == kafka) {
            return (e.stream.clone(), e.topic.clone());
        }
        if let Some(s) = self.rule_stream(kafka) {
            return (s.to_owned(), kafka[s.len() + 1..].to_owned());
        }
        (default_stream.to_owned(), kafka.to_owned())
    }

    /// The mapped stream the naming rule finds in `kafka`: the longest `STREAM` of which
    /// `kafka` is `STREAM.TOPIC` with a non-empty `TOPIC`.
    fn rule_stream(&self, kafka: &str) -> Option<&str> {
        self.streams
            .iter()
            .filter(|s| {
                kafka.len() > s.len() + 1
                    && kafka.starts_with(s.as_str())
                    && kafka.as_bytes()[s.len()] == b'.'
            })
            .max_by_key(|s| s.len())
            .map(String::as_str)
    }
}

/// Why `name` cannot be a Kafka topic name, as Kafka's own check says.
fn kafka_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name == "." || name == ".." {
        return Err("cannot be \".\" or \"..\"");
    }
    if name.len() > MAX_KAFKA_NAME {
        return Err("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Why `name` cannot be an Iggy stream or topic name (Iggy's own check: 1 to 255 bytes).
fn iggy_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_IGGY_NAME {
        return Err("longer than 255 bytes");
    }
    Ok(())
}

/// One Iggy stream the gateway serves Kafka topics from.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) name: String,
    pub(crate) id: WireIdentifier,
    /// Set in the last four bytes of the Kafka topic ids of its topics, so that topics of
    /// different streams cannot share an id (Iggy numbers topics per stream).
    pub(crate) tag: [u8; 4],
}

/// Where a Kafka topic lives: its stream (an index into [`Places::streams`]) and the name of
/// its Iggy topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place<'a> {
    pub(crate) stream: usize,
    pub(crate) topic: Cow<'a, str>,
}

/// The mapping, resolved for lookups both ways.
#[derive(Debug)]
pub(crate) struct Places {
    /// The default stream first, then the mapped streams, then the streams only explicit
    /// entries name.
    streams: Vec<Stream>,
    /// The mapped streams (indices into `streams`), longest name first.
    rule: Vec<usize>,
    /// Explicit entries by Kafka name.
    by_kafka: HashMap<String, (usize, String)>,
    /// Explicit entries by stream and Iggy topic.
    by_iggy: HashMap<(usize, String), String>,
}

/// The tag of the default stream's topic ids (kept as it always was, so that ids do not
/// change when a mapping is added).
const DEFAULT_TAG: [u8; 4] = *b"KGW1";

impl Places {
    /// Resolves `mapping` around `default_stream`.
    ///
    /// # Errors
    /// A stream name Iggy's identifiers cannot carry.
    pub(crate) fn new(default_stream: &str, mapping: &TopicMapping) -> Result<Self, String> {
        let mut streams: Vec<Stream> = Vec::new();
        let index = |name: &str, streams: &mut Vec<Stream>| -> Result<usize, String> {
            if let Some(i) = streams.iter().position(|s| s.name == name) {
                return Ok(i);
            }
            let id = WireIdentifier::named(name).map_err(|e| format!("stream {name:?}: {e}"))?;
            let tag = if streams.is_empty() {
                DEFAULT_TAG
            } else {
                name_tag(name)
            };
            streams.push(Stream {
                name: name.to_owned(),
                id,
                tag,
            });
            Ok(streams.len() - 1)
        };
        index(default_stream, &mut streams)?;
        let mut rule = Vec::new();
        for s in &mapping.streams {
            rule.push(index(s, &mut streams)?);
        }
        rule.sort_by_key(|&i| std::cmp::Reverse(streams[i].name.len()));
        let mut by_kafka = HashMap::new();
        let mut by_iggy = HashMap::new();
        for e in &mapping.entries {
            let i = index(&e.stream, &mut streams)?;
            by_kafka.insert(e.kafka.clone(), (i, e.topic.clone()));
            by_iggy.insert((i, e.topic.clone()), e.kafka.clone());
        }
        Ok(Self {
            streams,
            rule,
            by_kafka,
            by_iggy,
        })
    }

    /// Every stream, the default first.
    pub(crate) fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// The default stream.
    pub(crate) fn default_stream(&self) -> &Stream {
        &self.streams[0]
    }

    /// Where Kafka topic `kafka` lives; `None` when the name leads to an Iggy topic that has
    /// another Kafka name, or to the gateway's own topics of a stream other than the default
    /// (those of the default stream are the offsets log's: the callers that serve Kafka
    /// clients refuse their names first).
    pub(crate) fn locate<'a>(&'a self, kafka: &'a str) -> Option<Place<'a>> {
        if let Some((stream, topic)) = self.by_kafka.get(kafka) {
            return Some(Place {
                stream: *stream,
                topic: Cow::Borrowed(topic),
            });
        }
        let place = self
            .rule
            .iter()
            .find_map(|&i| {
                let name = &self.streams[i].name;
                let rest = kafka.strip_prefix(name.as_str())?.strip_prefix('.')?;
                (!rest.is_empty()).then_some(Place {
                    stream: i,
                    topic: Cow::Borrowed(rest),
                })
            })
            .unwrap_or(Place {
                stream: 0,
                topic: Cow::Borrowed(kafka),
            });
        // The offsets log's own topics are read and written through here; Kafka clients are
        // kept from them by name before anything is located.
        if (place.stream != 0 && is_own(&place.topic))
            || (!self.by_iggy.is_empty()
                && self
                    .by_iggy
                    .contains_key(&(place.stream, place.topic.to_string())))
        {
            return None;
        }
        Some(place)
    }

    /// Where Kafka topic `kafka` lives, or the Kafka error for a topic that does not exist.
    pub(crate) fn place<'a>(&'a self, kafka: &'a str) -> Result<Place<'a>, BackendError> {
        self.locate(kafka)
            .ok_or_else(|| BackendError::UnknownTopic(TopicRef::Name(kafka.into())))
    }

    /// The Kafka name of topic `topic` of stream `stream`, if Kafka clients can reach it.
    pub(crate) fn kafka_name<'a>(&self, stream: usize, topic: &'a str) -> Option<Cow<'a, str>> {
        if let Some(kafka) = self.by_iggy.get(&(stream, topic.to_owned())) {
            return Some(Cow::Owned(kafka.clone()));
        }
        if is_own(topic) {
            return None;
        }
        let name: Cow<'a, str> = if stream == 0 {
            Cow::Borrowed(topic)
        } else if self.rule.contains(&stream) {
            Cow::Owned(format!("{}.{topic}", self.streams[stream].name))
        } else {
            return None;
        };
        let back = self.locate(&name)?;
        (kafka_name(&name).is_ok() && back.stream == stream && back.topic == topic)
            .then(|| Cow::Owned(name.into_owned()))
    }
}

/// A stream's topic-id tag: FNV-1a of its name, stable across restarts and gateways.
fn name_tag(name: &str) -> [u8; 4] {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod place_tests {
    use super::TopicMapping;

    #[test]
    fn places_follow_entries_then_the_rule_then_the_default_stream() {
        let m = TopicMapping::parse("kafka", "orders=shop/orders-v2", "audit")
            .unwrap_or_else(|e| panic!("{e}"));
        let place = |k: &str| m.place("kafka", k);
        assert_eq!(place("orders"), ("shop".into(), "orders-v2".into()));
        assert_eq!(place("audit.logins"), ("audit".into(), "logins".into()));
        assert_eq!(place("audit"), ("kafka".into(), "audit".into()));
        assert_eq!(place("plain"), ("kafka".into(), "plain".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(topics: &str, streams: &str) -> Places {
        let m = TopicMapping::parse("kafka", topics, streams).expect("mapping");
        Places::new("kafka", &m).expect("places")
    }

    fn at<'a>(p: &'a Places, kafka: &'a str) -> Option<(&'a str, String)> {
        p.locate(kafka)
            .map(|pl| (p.streams()[pl.stream].name.as_str(), pl.topic.into_owned()))
    }

    #[test]
    fn identity_by_default() {
        let p = places("", "");
        assert_eq!(at(&p, "orders"), Some(("kafka", "orders".into())));
        assert_eq!(at(&p, "a.b"), Some(("kafka", "a.b".into())));
        assert_eq!(p.kafka_name(0, "a.b").as_deref(), Some("a.b"));
        // The offsets log's, for the backend itself; hidden from listings.
        assert_eq!(
            at(&p, "__kafka_gateway_offsets.0"),
            Some(("kafka", "__kafka_gateway_offsets.0".into()))
        );
        assert_eq!(p.kafka_name(0, "__kafka_gateway_offsets.0"), None);
        assert_eq!(p.default_stream().tag, *b"KGW1");
    }

    #[test]
    fn entries_rule_and_default_each_win_in_turn() {
        let p = places(
            "orders=shop/Orders 2026, payments=billing/pay",
            "shop,shop.eu",
        );
        assert_eq!(at(&p, "orders"), Some(("shop", "Orders 2026".into())));
        assert_eq!(at(&p, "payments"), Some(("billing", "pay".into())));
        assert_eq!(at(&p, "shop.carts"), Some(("shop", "carts".into())));
        // The longest mapped stream wins.
        assert_eq!(at(&p, "shop.eu.carts"), Some(("shop.eu", "carts".into())));
        assert_eq!(at(&p, "shop."), Some(("kafka", "shop.".into())));
        assert_eq!(at(&p, "other"), Some(("kafka", "other".into())));
        // An Iggy topic with an explicit entry is reachable by that name only.
        assert_eq!(at(&p, "shop.Orders 2026"), None);
        assert_eq!(at(&p, "shop.__kafka_gateway_offsets.3"), None);
        let shop = p
            .streams()
            .iter()
            .position(|s| s.name == "shop")
            .expect("shop");
        let billing = p
            .streams()
            .iter()
            .position(|s| s.name == "billing")
            .expect("billing");
        assert_eq!(p.kafka_name(shop, "Orders 2026").as_deref(), Some("orders"));
        assert_eq!(p.kafka_name(shop, "carts").as_deref(), Some("shop.carts"));
        // Not spelled by Kafka's rules; not reachable without an entry.
        assert_eq!(p.kafka_name(shop, "a b"), None);
        assert_eq!(p.kafka_name(billing, "pay").as_deref(), Some("payments"));
        assert_eq!(p.kafka_name(billing, "other"), None);
        // A default-stream topic whose name the rule claims is hidden.
        assert_eq!(p.kafka_name(0, "shop.carts"), None);
        assert_eq!(p.kafka_name(0, "plain").as_deref(), Some("plain"));
        // "shop" + ".eu.x" is claimed by the longer stream.
        assert_eq!(p.kafka_name(shop, "eu.x"), None);
        assert_ne!(p.streams()[shop].tag, p.streams()[billing].tag);
    }

    #[test]
    fn bad_mappings_are_refused_with_the_option() {
        let bad = |topics: &str, streams: &str| {
            TopicMapping::parse("kafka", topics, streams)
                .expect_err("refused")
                .to_string()
        };
        assert!(bad("orders", "").starts_with("--map-topics: \"orders\": expected"));
        assert!(bad("orders=shop", "").contains("expected KAFKA_TOPIC=STREAM/TOPIC"));
        assert!(bad("bad name=shop/x", "").contains("Kafka topic name"));
        assert!(bad("o=/x", "").contains("stream name: empty"));
        assert!(bad("o=s/x,o=s/y", "").contains("mapped twice"));
        assert!(bad("o=s/x,p=s/x", "").contains("already mapped to \"o\""));
        assert!(bad("shop.x=s/x", "shop").contains("naming rule"));
        assert!(bad("o=s/__kafka_gateway_offsets.1", "").contains("own topics"));
        assert!(bad("", "kafka").starts_with("--map-streams: \"kafka\" is the default"));
        assert!(bad("", "a,a").contains("listed twice"));
        assert_eq!(
            TopicMapping::parse("", "", "")
                .expect_err("refused")
                .to_string(),
            "--stream: \"\": empty"
        );
        assert_eq!(
            TopicMapping::parse("kafka", " , ", ",").expect("empty lists"),
            TopicMapping::default()
        );
    }
}
