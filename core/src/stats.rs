//! What the gateway did: plain counters kept by the state machines, and the registry an
//! exporter reads them through.
//!
//! A [`crate::Connection`] keeps its own [`ConnectionStats`] (no sharing, no atomics on the
//! request path). Its adapter registers it with the [`Registry`] when it is accepted and
//! [publishes](ConnectionHandle::publish) a copy whenever [`ConnectionStats::version`]
//! moved; when it closes, the adapter [retires](ConnectionHandle::close) it and its counters
//! join those of the connections closed before. An exporter takes a [`Registry::snapshot`]:
//! the sum over the open and the closed connections, so counters only ever rise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::client_info::ClientInfo;
use crate::protocol::ApiKey;

/// Upper bounds of the latency buckets, in seconds (the last bucket is unbounded): from
/// 100 µs, for a request answered from memory, to 30 s, a request timeout.
pub const LATENCY_BOUNDS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// A latency histogram over [`LATENCY_BOUNDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Observations per bucket (not cumulative); the last is above every bound.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    /// The observations added up.
    pub sum: Duration,
}

impl Latency {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i] += 1;
        self.sum += d;
    }

    /// How many observations there are.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

/// One API's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiStats {
    /// Requests taken.
    pub requests: u64,
    /// Of those, the ones whose work outlasted the request timeout.
    pub timed_out: u64,
    /// Of those, the ones that closed the connection (a failed acks=0 produce, say).
    pub closed: u64,
    /// Bytes of the requests' frames, size prefixes included.
    pub bytes_in: u64,
    /// Bytes of the responses' frames, size prefixes included.
    pub bytes_out: u64,
    /// Requests taken and not answered yet (a gauge: not summed over closed connections).
    pub in_flight: u64,
    /// From a request's arrival to its answer (or to the decision not to answer).
    pub latency: Latency,
}

impl ApiStats {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.timed_out += other.timed_out;
        self.closed += other.closed;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.in_flight += other.in_flight;
        self.latency.add(&other.latency);
    }
}

/// Records moved through one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Records produced and acknowledged.
    pub produced_records: u64,
    /// Bytes of those records' batches, as the client sent them (compressed or not).
    pub produced_bytes: u64,
    /// Records fetched.
    pub fetched_records: u64,
    /// Bytes of those records' batches, as sent.
    pub fetched_bytes: u64,
}

impl TopicStats {
    fn add(&mut self, other: &Self) {
        self.produced_records += other.produced_records;
        self.produced_bytes += other.produced_bytes;
        self.fetched_records += other.fetched_records;
        self.fetched_bytes += other.fetched_bytes;
    }
}

/// Kafka's record batch compression codecs, in attribute order.
pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// What one connection (or, summed, the gateway) did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// The counters of each API the client used, in the order it first used them.
    pub apis: Vec<(ApiKey, ApiStats)>,
    /// Error codes answered, per API: every non-zero code a response held, nested
    /// (per-partition) ones included.
    pub errors: Vec<(ApiKey, i16, u64)>,
    /// Records produced and fetched, per topic.
    pub topics: HashMap<Arc<str>, TopicStats>,
    /// Record batches produced, per compression codec ([`CODECS`]).
    pub batches: [u64; 5],
    /// Bumped on every change, so that an adapter publishes only what moved.
    pub version: u64,
}

impl ConnectionStats {
    pub(crate) fn api(&mut self, key: ApiKey) -> &mut ApiStats {
        self.version += 1;
        // A client uses a handful of APIs: a scan is as quick as a map, and allocates less.
        let i = match self.apis.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.apis.push((key, ApiStats::default()));
                self.apis.len() - 1
            }
        };
        &mut self.apis[i].1
    }

    pub(crate) fn error(&mut self, key: ApiKey, code: i16) {
        self.version += 1;
        match self
            .errors
            .iter_mut()
            .find(|(k, c, _)| *k == key && *c == code)
        {
            Some((_, _, n)) => *n += 1,
            None => self.errors.push((key, code, 1)),
        }
    }

    /// What tasks tell of the records they moved.
    pub(crate) fn traffic(&mut self) -> Traffic<'_> {
        self.version += 1;
        Traffic(self)
    }

    /// Requests of every API together.
    #[must_use]
    pub fn total(&self) -> ApiStats {
        self.apis.iter().fold(ApiStats::default(), |mut t, (_, a)| {
            t.add(a);
            t
        })
    }

    /// Adds `other`'s counters to these; gauges too when `gauges`.
    fn add(&mut self, other: &Self, gauges: bool) {
        for (key, a) in &other.apis {
            let mine = self.api(*key);
            let in_flight = mine.in_flight;
            mine.add(a);
            if !gauges {
                mine.in_flight = in_flight;
            }
        }
        for &(key, code, n) in &other.errors {
            match self
                .errors
                .iter_mut()
                .find(|(k, c, _)| *k == key && *c == code)
            {
                Some((_, _, m)) => *m += n,
                None => self.errors.push((key, code, n)),
            }
        }
        for (topic, t) in &other.topics {
            self.topics.entry(Arc::clone(topic)).or_default().add(t);
        }
        for (a, b) in self.batches.iter_mut().zip(other.batches) {
            *a += b;
        }
    }
}

/// Where a task reports the records it moved ([`ConnectionStats::traffic`]).
#[derive(Debug)]
pub(crate) struct Traffic<'a>(&'a mut ConnectionStats);

impl Traffic<'_> {
    fn topic(&mut self, topic: &str) -> &mut TopicStats {
        if !self.0.topics.contains_key(topic) {
            self.0
                .topics
                .insert(Arc::from(topic), TopicStats::default());
        }
        self.0.topics.get_mut(topic).expect("inserted above")
    }

    pub(crate) fn produced(&mut self, topic: &str, records: u64, bytes: u64) {
        let t = self.topic(topic);
        t.produced_records += records;
        t.produced_bytes += bytes;
    }

    pub(crate) fn fetched(&mut self, topic: &str, records: u64, bytes: u64) {
        let t = self.topic(topic);
        t.fetched_records += records;
        t.fetched_bytes += bytes;
    }

    /// `n` produced batches with compression codec `codec` (an index of [`CODECS`]).
    pub(crate) fn batches(&mut self, codec: usize, n: u64) {
        if let Some(count) = self.0.batches.get_mut(codec) {
            *count += n;
        }
    }
}

/// What kind of metric a [`Metric`] is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricKind {
    /// Only rises (its name ends in `_total`).
    Counter,
    /// Rises and falls.
    Gauge,
    /// Observations in buckets with these upper bounds (the last bucket is unbounded).
    Histogram(&'static [f64]),
}

/// One sample of a [`Metric`].
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A counter's or gauge's value.
    Value(f64),
    /// A histogram's observations per bucket (not cumulative) and their sum.
    Histogram {
        /// One more than the metric's bounds: the last is above every bound.
        buckets: Vec<u64>,
        /// The observations added up.
        sum: f64,
    },
}

/// A metric a backend reports about itself, labelled samples included; an exporter
/// renders it without knowing the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its name, following Prometheus's conventions (unit suffix; counters end in
    /// `_total`), without the gateway's prefix.
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names and values, and the value.
    pub samples: Vec<(Vec<(&'static str, String)>, MetricValue)>,
}

impl Metric {
    /// A metric with one unlabelled value.
    #[must_use]
    pub fn single(name: &'static str, help: &'static str, kind: MetricKind, value: f64) -> Self {
        Self {
            name,
            help,
            kind,
            samples: vec![(Vec::new(), MetricValue::Value(value))],
        }
    }
}

/// One open connection, as the registry shows it.
#[derive(Debug, Clone, Default)]
pub struct OpenConnection {
    /// The client's address.
    pub peer: String,
    /// What the client said about itself.
    pub client: ClientInfo,
    /// What it did so far.
    pub stats: ConnectionStats,
}

/// The gateway's connections, open and closed, summed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections closed so far, per reason ([`crate::CloseReason::kind`], or `"peer"`
    /// when the client hung up first, `"io"` on a socket error).
    pub closed: Vec<(&'static str, u64)>,
    /// The connections open now.
    pub open: Vec<OpenConnection>,
    /// Every connection's counters summed, the open ones' gauges included.
    pub total: ConnectionStats,
}

#[derive(Debug, Default)]
struct Inner {
    accepted: u64,
    closed: HashMap<&'static str, u64>,
    /// What the closed connections did, summed.
    retired: ConnectionStats,
    open: HashMap<u64, Arc<Mutex<OpenConnection>>>,
    next: u64,
}

/// The connections of a gateway, for an exporter (see the module documentation).
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection just accepted from `peer`.
    pub fn accepted(self: &Arc<Self>, peer: String) -> ConnectionHandle {
        tracing::debug!(target: CONNECTIONS_LOG, %peer, "accepted");
        let slot = Arc::new(Mutex::new(OpenConnection {
            peer,
            ..OpenConnection::default()
        }));
        let mut inner = lock(&self.inner);
        inner.accepted += 1;
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, Arc::clone(&slot));
        ConnectionHandle {
            registry: Arc::clone(self),
            id,
            slot,
            published: u64::MAX,
            identified: false,
        }
    }

    /// The sum over every connection so far, and the open ones.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let inner = lock(&self.inner);
        let mut total = inner.retired.clone();
        let mut open = Vec::with_capacity(inner.open.len());
        for slot in inner.open.values() {
            let c = lock(slot).clone();
            total.add(&c.stats, true);
            open.push(c);
        }
        let mut closed: Vec<_> = inner.closed.iter().map(|(k, v)| (*k, *v)).collect();
        closed.sort_unstable();
        Snapshot {
            accepted: inner.accepted,
            closed,
            open,
            total,
        }
    }
}

/// The log target of connections' arrivals, identification and departures: an operator
/// turns them on with `--log info,connections=debug`.
pub const CONNECTIONS_LOG: &str = "connections";

/// How an adapter's loop over a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The connection closed itself ([`crate::Connection::close_reason`]).
    Closed,
    /// The client hung up.
    Peer,
    /// A read or write failed.
    Io,
}

/// An open connection's place in the [`Registry`]; the adapter holds it.
#[derive(Debug)]
pub struct ConnectionHandle {
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Mutex<OpenConnection>>,
    published: u64,
    identified: bool,
}

impl ConnectionHandle {
    /// Publishes the connection's counters and client, if they moved since last time. Cheap
    /// when nothing moved: call it after every round of the adapter's loop.
    pub fn publish(&mut self, conn: &crate::Connection) {
        let stats = conn.stats();
        if stats.version == self.published {
            return;
        }
        self.published = stats.version;
        let client = conn.client();
        if !self.identified && client.software_name.is_some() {
            self.identified = true;
            tracing::debug!(
                target: CONNECTIONS_LOG,
                client_id = client.client_id.as_deref(),
                software = client.software_name.as_deref(),
                software_version = client.software_version.as_deref(),
                "client identified"
            );
        }
        let mut slot = lock(&self.slot);
        slot.stats.clone_from(stats);
        if slot.client != *client {
            slot.client.clone_from(client);
        }
    }

    /// The adapter's loop over the connection ended: its counters join the closed
    /// connections', and the departure is logged with its reason.
    pub fn finish(mut self, conn: &crate::Connection, ended: Ended) {
        self.publish(conn);
        let reason = match (ended, conn.close_reason()) {
            (Ended::Closed, Some(r)) => r.kind(),
            (Ended::Closed, None) => "closed",
            (Ended::Peer, _) => "peer",
            (Ended::Io, _) => "io",
        };
        let client = conn.client();
        tracing::debug!(
            target: CONNECTIONS_LOG,
            reason,
            detail = conn.close_reason().map(ToString::to_string),
            client_id = client.client_id.as_deref(),
            software = client.software_name.as_deref(),
            software_version = client.software_version.as_deref(),
            "closed"
        );
        let mut inner = lock(&self.registry.inner);
        inner.open.remove(&self.id);
        *inner.closed.entry(reason).or_default() += 1;
        inner.retired.add(conn.stats(), false);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_falls_in_its_bucket() {
        let mut l = Latency::default();
        l.observe(Duration::from_micros(50));
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_secs(60));
        assert_eq!(l.buckets[0], 1);
        assert_eq!(l.buckets[5], 1, "3 ms is at most 5 ms");
        assert_eq!(l.buckets[LATENCY_BOUNDS.len()], 1, "past every bound");
        assert_eq!(l.count(), 3);
    }
}
