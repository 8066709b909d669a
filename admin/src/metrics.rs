//! `/metrics`: the gateway's figures in the Prometheus (OpenMetrics) text format, encoded
//! with `prometheus-client` from what the state machines counted. Names follow Prometheus's
//! conventions: the `iggy_kafka_gateway_` prefix, units in the name, `_total` on counters,
//! histograms for latencies; per-topic and per-group labels are bounded by [`Limits`].

use std::collections::BTreeMap;
use std::fmt;

use iggy_kafka_core::group::GroupStats;
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::stats::{
    ConnectionStats, Metric, MetricKind, MetricValue, Snapshot, TopicStats, CODECS, LATENCY_BOUNDS,
};
use iggy_kafka_core::txn::TxnStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::process::Process;
use crate::view::{Lag, Limits};

/// The prefix of the gateway's own metrics.
pub const PREFIX: &str = "iggy_kafka_gateway";

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape shows.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The connections.
    pub connections: Snapshot,
    /// The group coordinator.
    pub groups: GroupStats,
    /// The transaction coordinator.
    pub transactions: TxnStats,
    /// Every group's lag.
    pub lag: std::sync::Arc<Lag>,
    /// What the backend reports.
    pub backend: Vec<Metric>,
    /// Whether the gateway is ready (`/ready`).
    pub ready: bool,
    /// The process.
    pub process: Process,
    /// Version, runtime and backend, for `build_info`.
    pub build: [(&'static str, String); 3],
    /// The label limits.
    pub limits: Limits,
}

/// Encodes `scrape`.
#[must_use]
pub fn render(scrape: Scrape) -> String {
    let mut root = Registry::default();
    root.register_collector(Box::new(ProcessCollector(scrape.process.clone())));
    root.sub_registry_with_prefix(PREFIX)
        .register_collector(Box::new(GatewayCollector(scrape)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &root) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

type Labels = Vec<(&'static str, String)>;

/// Writes one metric family of plain values.
fn family(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let name = name.strip_suffix("_total").unwrap_or(name);
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            value_of(&mut m, kind, value)?;
        } else {
            value_of(&mut m.encode_family(&labels)?, kind, value)?;
        }
    }
    Ok(())
}

fn value_of(m: &mut MetricEncoder<'_>, kind: MetricType, value: f64) -> fmt::Result {
    // Counts print as integers; only true fractions (CPU seconds) as floats.
    let whole = (value >= 0.0 && value.fract() == 0.0 && value < 9.0e15).then_some(value as u64);
    match (matches!(kind, MetricType::Counter), whole) {
        (true, Some(n)) => m.encode_counter::<Labels, _, f64>(&n, None),
        (true, None) => m.encode_counter::<Labels, _, f64>(&value, None),
        (false, Some(n)) => m.encode_gauge(&n),
        (false, None) => m.encode_gauge(&value),
    }
}

/// Writes one histogram family: per label set, buckets (not cumulative) and sum.
fn histograms<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    bounds: &[f64],
    samples: impl IntoIterator<Item = (Labels, &'a [u64], f64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, buckets, sum) in samples {
        let pairs: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(buckets.iter().copied())
            .collect();
        let count = buckets.iter().sum();
        if labels.is_empty() {
            m.encode_histogram::<Labels>(sum, count, &pairs, None)?;
        } else {
            m.encode_family(&labels)?
                .encode_histogram::<Labels>(sum, count, &pairs, None)?;
        }
    }
    Ok(())
}

fn one(value: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), value)]
}

#[derive(Debug)]
struct GatewayCollector(Scrape);

impl Collector for GatewayCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let c = &s.connections;
        let total = &c.total;
        let g = MetricType::Gauge;
        let n = MetricType::Counter;

        let mut info = e.encode_descriptor(
            "build",
            "The gateway's version, runtime and backend.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&s.build.to_vec())?;
        family(
            &mut e,
            "ready",
            "1 when the gateway serves and its backend is reachable (as /ready).",
            g,
            one(f64::from(u8::from(s.ready))),
        )?;

        family(
            &mut e,
            "connections_open",
            "Kafka client connections open now.",
            g,
            one(c.open.len() as f64),
        )?;
        family(
            &mut e,
            "connections_accepted_total",
            "Kafka client connections accepted.",
            n,
            one(c.accepted as f64),
        )?;
        family(
            &mut e,
            "connections_closed_total",
            "Kafka client connections closed, by reason (peer: the client hung up).",
            n,
            c.closed
                .iter()
                .map(|(r, v)| (vec![("reason", (*r).to_owned())], *v as f64)),
        )?;

        let api = |k: iggy_kafka_core::protocol::ApiKey| vec![("api", k.name().to_owned())];
        family(
            &mut e,
            "requests_total",
            "Kafka requests taken, by API.",
            n,
            total.apis.iter().map(|(k, a)| (api(*k), a.requests as f64)),
        )?;
        family(
            &mut e,
            "request_errors_total",
            "Kafka error codes answered, by API and error: every partition's and the request's own.",
            n,
            total.errors.iter().map(|(k, code, v)| {
                (vec![("api", k.name().to_owned()), ("error", ErrorCode(*code).name().to_owned())], *v as f64)
            }),
        )?;
        family(
            &mut e,
            "requests_timed_out_total",
            "Kafka requests whose work outlasted the request timeout, by API.",
            n,
            total
                .apis
                .iter()
                .map(|(k, a)| (api(*k), a.timed_out as f64)),
        )?;
        family(
            &mut e,
            "requests_in_flight",
            "Kafka requests taken and not yet answered, by API.",
            g,
            total
                .apis
                .iter()
                .map(|(k, a)| (api(*k), a.in_flight as f64)),
        )?;
        family(
            &mut e,
            "request_bytes_total",
            "Bytes of Kafka request frames received, by API.",
            n,
            total.apis.iter().map(|(k, a)| (api(*k), a.bytes_in as f64)),
        )?;
        family(
            &mut e,
            "response_bytes_total",
            "Bytes of Kafka response frames sent, by API.",
            n,
            total
                .apis
                .iter()
                .map(|(k, a)| (api(*k), a.bytes_out as f64)),
        )?;
        histograms(
            &mut e,
            "request_duration_seconds",
            "From a Kafka request's arrival to its answer, by API (long polls included).",
            &LATENCY_BOUNDS,
            total
                .apis
                .iter()
                .map(|(k, a)| (api(*k), &a.latency.buckets[..], a.latency.sum.as_secs_f64())),
        )?;

        let topics = bounded_topics(total, s.limits.topics);
        let topic = |t: &str| vec![("topic", t.to_owned())];
        for (name, help, get) in [
            (
                "produced_records_total",
                "Records produced and acknowledged, by topic.",
                (|t: &TopicStats| t.produced_records) as fn(&TopicStats) -> u64,
            ),
            (
                "produced_bytes_total",
                "Bytes of the record batches produced and acknowledged, by topic.",
                |t| t.produced_bytes,
            ),
            ("fetched_records_total", "Records fetched, by topic.", |t| {
                t.fetched_records
            }),
            (
                "fetched_bytes_total",
                "Bytes of the record batches fetched, by topic.",
                |t| t.fetched_bytes,
            ),
        ] {
            family(
                &mut e,
                name,
                help,
                n,
                topics.iter().map(|(t, v)| (topic(t), get(v) as f64)),
            )?;
        }
        family(
            &mut e,
            "produced_batches_total",
            "Record batches produced, by compression codec.",
            n,
            CODECS
                .iter()
                .zip(total.batches)
                .map(|(codec, v)| (vec![("compression", (*codec).to_owned())], v as f64)),
        )?;

        family(
            &mut e,
            "groups",
            "Consumer groups the coordinator holds, by state.",
            g,
            s.groups
                .groups
                .iter()
                .map(|(state, v)| (vec![("state", state.name().to_owned())], *v as f64)),
        )?;
        family(
            &mut e,
            "group_members",
            "Members of every group together.",
            g,
            one(s.groups.members as f64),
        )?;
        family(
            &mut e,
            "group_rebalances_total",
            "Group rebalances started.",
            n,
            one(s.groups.rebalances as f64),
        )?;
        let t = &s.transactions;
        family(
            &mut e,
            "transactional_ids",
            "Transactional ids the transaction coordinator holds.",
            g,
            one(t.ids as f64),
        )?;
        family(
            &mut e,
            "transactions_open",
            "Transactions open now.",
            g,
            one(t.ongoing as f64),
        )?;
        family(
            &mut e,
            "transactions_total",
            "Transactions ended, by outcome (an abort by the producer, a fence or a timeout).",
            n,
            [("commit", t.committed), ("abort", t.aborted)]
                .into_iter()
                .map(|(o, v)| (vec![("outcome", o.to_owned())], v as f64)),
        )?;
        family(
            &mut e,
            "transactions_timed_out_total",
            "Transactions aborted because their timeout passed.",
            n,
            one(t.timed_out as f64),
        )?;
        family(
            &mut e,
            "transactional_producers_fenced_total",
            "Transactional producers fenced by a new instance with an open transaction.",
            n,
            one(t.fenced as f64),
        )?;
        family(
            &mut e,
            "consumer_group_lag_records",
            "Records between a group's committed offset and the partition's end.",
            g,
            s.lag.partitions.iter().filter_map(|p| {
                p.lag().map(|lag| {
                    (
                        vec![
                            ("group", p.group.clone()),
                            ("topic", p.topic.clone()),
                            ("partition", p.partition.to_string()),
                        ],
                        lag as f64,
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "consumer_group_committed_offset",
            "A group's committed offset: the next record it will read.",
            g,
            s.lag.partitions.iter().map(|p| {
                (
                    vec![
                        ("group", p.group.clone()),
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ],
                    p.committed as f64,
                )
            }),
        )?;
        family(
            &mut e,
            "consumer_group_lag_groups_left_out",
            "Groups whose lag the limits left out of this scrape.",
            g,
            one(s.lag.groups_left_out as f64),
        )?;

        for m in &s.backend {
            backend_metric(&mut e, m)?;
        }
        Ok(())
    }
}

fn backend_metric(e: &mut DescriptorEncoder<'_>, m: &Metric) -> fmt::Result {
    let labels = |l: &[(&'static str, String)]| l.to_vec();
    match m.kind {
        MetricKind::Histogram(bounds) => histograms(
            e,
            m.name,
            m.help,
            bounds,
            m.samples.iter().filter_map(|(l, v)| match v {
                MetricValue::Histogram { buckets, sum } => Some((labels(l), &buckets[..], *sum)),
                MetricValue::Value(_) => None,
            }),
        ),
        kind => family(
            e,
            m.name,
            m.help,
            if kind == MetricKind::Counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            },
            m.samples.iter().filter_map(|(l, v)| match v {
                MetricValue::Value(x) => Some((labels(l), *x)),
                MetricValue::Histogram { .. } => None,
            }),
        ),
    }
}

/// The per-topic figures with at most `limit` topics named, the first by name; the rest
/// summed under `_other`, so that counters never move between label sets unseen.
fn bounded_topics(total: &ConnectionStats, limit: usize) -> Vec<(String, TopicStats)> {
    let sorted: BTreeMap<&str, &TopicStats> = total.topics.iter().map(|(k, v)| (&**k, v)).collect();
    let mut out: Vec<(String, TopicStats)> = Vec::new();
    let mut other = TopicStats::default();
    let mut others = false;
    for (i, (name, t)) in sorted.into_iter().enumerate() {
        if i < limit {
            out.push((name.to_owned(), *t));
        } else {
            others = true;
            other.produced_records += t.produced_records;
            other.produced_bytes += t.produced_bytes;
            other.fetched_records += t.fetched_records;
            other.fetched_bytes += t.fetched_bytes;
        }
    }
    if others {
        out.push(("_other".to_owned(), other));
    }
    out
}

#[derive(Debug)]
struct ProcessCollector(Process);

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let p = &self.0;
        let g = MetricType::Gauge;
        if let Some(v) = p.resident_memory_bytes {
            family(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                g,
                one(v as f64),
            )?;
        }
        if let Some(v) = p.virtual_memory_bytes {
            family(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                g,
                one(v as f64),
            )?;
        }
        if let Some(v) = p.cpu_seconds {
            family(
                &mut e,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                one(v),
            )?;
        }
        if let Some(v) = p.open_fds {
            family(
                &mut e,
                "process_open_fds",
                "Number of open file descriptors.",
                g,
                one(v as f64),
            )?;
        }
        if let Some(v) = p.max_fds {
            family(
                &mut e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                g,
                one(v as f64),
            )?;
        }
        if let Some(v) = p.threads {
            family(
                &mut e,
                "process_threads",
                "Number of OS threads in the process.",
                g,
                one(v as f64),
            )?;
        }
        family(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            g,
            one(p.start_time_seconds),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
