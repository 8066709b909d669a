//! What the admin endpoints show, gathered from the gateway: its connections, its groups
//! and their lag, its topics, and the backend. Gathering asks the backend (committed
//! offsets, partition ends) as a connection would, so it is asynchronous; everything here
//! is bounded by the limits of [`Limits`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use iggy_kafka_core::backend::{Command, Completion, TopicRef};
use iggy_kafka_core::driver::{Shared, Started};
use iggy_kafka_core::work::{Outcome, Work};

/// How much the admin endpoints show at most, so that a gateway with many topics or groups
/// keeps its scrapes small and its metrics' label sets bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Topics with a label of their own in the per-topic metrics (the rest are summed
    /// under `topic="_other"`), and topics on the status page.
    pub topics: usize,
    /// Groups whose lag is reported.
    pub groups: usize,
    /// Partitions whose lag is reported, every group's together.
    pub partitions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            topics: 200,
            groups: 100,
            partitions: 2_000,
        }
    }
}

/// One group's lag on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The group's committed offset (the next it will read).
    pub committed: i64,
    /// The partition's end (high watermark), when it could be read.
    pub end: Option<u64>,
}

impl PartitionLag {
    /// Records between the commit and the end (0 once caught up); `None` when the end is
    /// unknown.
    #[must_use]
    pub fn lag(&self) -> Option<u64> {
        let committed = u64::try_from(self.committed).unwrap_or(0);
        self.end.map(|end| end.saturating_sub(committed))
    }
}

/// Every group's lag, within the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lag {
    /// By group, topic and partition.
    pub partitions: Vec<PartitionLag>,
    /// Groups left out by the limits.
    pub groups_left_out: usize,
}

/// One topic on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// Its name.
    pub name: String,
    /// Each partition's log start and end, when they could be read.
    pub partitions: Vec<Option<(u64, u64)>>,
}

/// Runs one store command as a connection would.
async fn run(shared: &Shared, command: Command) -> Option<Completion> {
    let outcome = match shared.execute(Instant::now(), Work::Store(command)) {
        Started::Done(o) => o,
        Started::Later(l) => l.await,
    };
    match outcome {
        Outcome::Store(c) => Some(c),
        Outcome::Group(_) | Outcome::Txn(_) => None,
    }
}

/// The groups that committed offsets or have members now, by name.
pub(crate) async fn group_names(shared: &Shared) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = shared
        .groups()
        .describe_all()
        .into_iter()
        .map(|g| g.group)
        .collect();
    if let Some(Completion::ListGroups(Ok(committed))) = run(shared, Command::ListGroups).await {
        names.extend(committed);
    }
    names
}

/// The lag of every group with committed offsets, within `limits`.
pub(crate) async fn lag(shared: &Shared, limits: Limits) -> Lag {
    let names = group_names(shared).await;
    let mut lag = Lag {
        groups_left_out: names.len().saturating_sub(limits.groups),
        ..Lag::default()
    };
    let mut ends: BTreeMap<(String, u32), Option<u64>> = BTreeMap::new();
    'groups: for group in names.into_iter().take(limits.groups) {
        let command = Command::FetchOffsets {
            group: group.clone(),
            only: None,
        };
        let Some(Completion::FetchOffsets(Ok(offsets))) = run(shared, command).await else {
            continue;
        };
        for o in offsets {
            if lag.partitions.len() >= limits.partitions {
                lag.groups_left_out += 1;
                break 'groups;
            }
            let key = (o.topic.clone(), o.partition);
            let end = match ends.get(&key) {
                Some(end) => *end,
                None => {
                    let command = Command::Offsets {
                        topic: TopicRef::Name(o.topic.clone()),
                        partition: o.partition,
                    };
                    let end = match run(shared, command).await {
                        Some(Completion::Offsets(Ok(p))) => Some(p.high_watermark),
                        _ => None,
                    };
                    ends.insert(key, end);
                    end
                }
            };
            lag.partitions.push(PartitionLag {
                group: group.clone(),
                topic: o.topic,
                partition: o.partition,
                committed: o.committed.offset,
                end,
            });
        }
    }
    lag
}

/// The topics and their partitions' bounds, within `limits`.
pub(crate) async fn topics(shared: &Shared, limits: Limits) -> (Vec<TopicView>, usize) {
    let Some(Completion::ListTopics(Ok(mut listed))) =
        run(shared, Command::ListTopics { only: None }).await
    else {
        return (Vec::new(), 0);
    };
    listed.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let left_out = listed.len().saturating_sub(limits.topics);
    let mut budget = limits.partitions;
    let mut out = Vec::new();
    for t in listed.into_iter().take(limits.topics) {
        let mut partitions = Vec::new();
        for p in 0..t.partitions {
            if budget == 0 {
                partitions.push(None);
                continue;
            }
            budget -= 1;
            let command = Command::Offsets {
                topic: TopicRef::Name(t.name.clone()),
                partition: p,
            };
            partitions.push(match run(shared, command).await {
                Some(Completion::Offsets(Ok(o))) => Some((o.log_start, o.high_watermark)),
                _ => None,
            });
        }
        out.push(TopicView {
            name: t.name,
            partitions,
        });
    }
    (out, left_out)
}

/// A shared, recently computed value: at most one computation at a time refreshes it once
/// it is older than the refresh interval, and callers meanwhile take the last one.
#[derive(Debug, Default)]
pub(crate) struct Cached<T> {
    value: std::sync::Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Cached<T> {
    pub(crate) fn fresh(&self, now: Instant, within: std::time::Duration) -> Option<Arc<T>> {
        let v = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < within)
            .map(|(_, t)| Arc::clone(t))
    }

    pub(crate) fn store(&self, now: Instant, t: T) -> Arc<T> {
        let t = Arc::new(t);
        *self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, Arc::clone(&t)));
        t
    }
}
