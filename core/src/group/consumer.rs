//! Consumer groups of the consumer group protocol (KIP-848, `group.protocol=consumer`),
//! beside the classic groups of the same [`Coordinator`].
//!
//! A member only heartbeats (ConsumerGroupHeartbeat); the coordinator does the rest, as
//! Kafka's `GroupMetadataManager` does:
//!
//! 1. **Group epoch.** A member joining or leaving, a changed subscription or assignor, or a
//!    change in the subscribed topics (a new partition, a new topic matching a regular
//!    expression) bumps the group epoch.
//! 2. **Target assignment.** When the group epoch is ahead of the assignment epoch, the
//!    group's assignor ([`Assignor`]) computes every member's target from the subscriptions and
//!    the previous target; the assignment epoch becomes the group epoch.
//! 3. **Reconciliation.** Each member moves toward its target one heartbeat at a time (Kafka's
//!    `CurrentAssignmentBuilder`): partitions it must give up are first revoked (the member
//!    keeps its epoch, in `UnrevokedPartitions`, until a heartbeat shows it no longer owns
//!    them); then it takes the target epoch and the partitions of its target that no other
//!    member owns; partitions still owned elsewhere wait (`UnreleasedPartitions`) until their
//!    owner revoked them. So a partition never has two owners.
//!
//! Time: each heartbeat sets the member's session deadline; a member that stays in
//! `UnrevokedPartitions` past its rebalance timeout is removed, as is one whose session lapses
//! (a static member that left with epoch -2 keeps its partitions until then, so that its
//! restart takes them back without a rebalance).
//!
//! The topics are an input: each heartbeat carries the topics that exist now, as the backend
//! listed them, so the coordinator stays pure, and those the member's principal may not
//! describe: a member's regular expression resolves at each of its heartbeats, only to
//! topics it may describe (as Kafka filters a resolved expression by DESCRIBE), and the
//! group subscribes to what its members last resolved.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::assignor::{assign, Assignor, Partitions, Spec};
use super::kept::{self, Reader, Writer};
use bytes::Bytes;

use super::{
    Coordinator, Deletion, GroupDescription, GroupKind, GroupOverview, GroupState,
    MemberDescription, OffsetDeletion,
};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::Uuid;

/// The member epoch of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for now (it keeps its partitions until its
/// session times out).
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// A topic as the backend lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: i32,
}

/// A ConsumerGroupHeartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerHeartbeat {
    /// The request's version.
    pub version: i16,
    /// The group.
    pub group: String,
    /// The member id (empty on a v0 first heartbeat: the coordinator chooses one).
    pub member_id: String,
    /// The member epoch: 0 to join, -1 to leave, -2 for a static member leaving for now.
    pub member_epoch: i32,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The member's rack.
    pub rack_id: Option<String>,
    /// The rebalance timeout, -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// The subscribed topic names, `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// The subscribed topic regular expression (RE2/J syntax), `None` when unchanged.
    pub subscribed_topic_regex: Option<String>,
    /// The assignor the member asks for, `None` when unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns, `None` when unchanged.
    pub owned: Option<Vec<(Uuid, Vec<i32>)>>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Every topic that exists now.
    pub topics: Vec<TopicMetadata>,
    /// The topics among `topics` that the member's principal may not describe: its regular
    /// expression never resolves to them, as Kafka resolves a regular expression only to
    /// topics the member may DESCRIBE.
    pub hidden: BTreeSet<String>,
}

/// The answer to a [`ConsumerHeartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerHeartbeatResult {
    /// The error, or NONE.
    pub error: ErrorCode,
    /// Why, for an error.
    pub message: Option<String>,
    /// The member id.
    pub member_id: Option<String>,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// How often the member must heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed or the request was a full one.
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

impl ConsumerHeartbeatResult {
    fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code,
            message: Some(message.into()),
            ..Self::default()
        }
    }
}

/// A member in a [`ConsumerGroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its rack.
    pub rack_id: Option<String>,
    /// Its epoch.
    pub member_epoch: i32,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The topic names it subscribes to.
    pub subscribed_topic_names: Vec<String>,
    /// Its regular expression.
    pub subscribed_topic_regex: Option<String>,
    /// What it owns now: topic id, name, partitions.
    pub assignment: Vec<(Uuid, String, Vec<i32>)>,
    /// Its target.
    pub target_assignment: Vec<(Uuid, String, Vec<i32>)>,
}

/// What ConsumerGroupDescribe shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// The group epoch.
    pub epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: String,
    /// The members.
    pub members: Vec<ConsumerMemberDescription>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    assigned: Partitions,
    revoking: Partitions,
    rebalance_timeout: Duration,
    topic_names: Vec<String>,
    regex: Option<String>,
    /// The topics `regex` resolved to at the member's last heartbeat, among those its
    /// principal may describe.
    regex_topics: BTreeSet<String>,
    assignor: Option<Assignor>,
    session_deadline: Instant,
    rebalance_deadline: Option<Instant>,
}

impl Member {
    fn new(id: String, now: Instant) -> Self {
        Self {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Partitions::new(),
            revoking: Partitions::new(),
            rebalance_timeout: Duration::ZERO,
            topic_names: Vec::new(),
            regex: None,
            regex_topics: BTreeSet::new(),
            assignor: None,
            session_deadline: now,
            rebalance_deadline: None,
        }
    }

    fn same_subscription(&self, other: &Self) -> bool {
        self.topic_names == other.topic_names
            && self.regex == other.regex
            && self.regex_topics == other.regex_topics
            && self.assignor == other.assignor
    }

    fn owns(&self, topic: &Uuid, partition: i32) -> bool {
        [&self.assigned, &self.revoking]
            .iter()
            .any(|a| a.get(topic).is_some_and(|ps| ps.contains(&partition)))
    }

    fn reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.epoch == epoch
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub(super) struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id.
    statics: HashMap<String, String>,
    target: BTreeMap<String, Partitions>,
    /// The subscribed topics that exist, as last seen: name → (id, partitions).
    topics: BTreeMap<String, (Uuid, i32)>,
    assignor: Assignor,
    empty_since: Option<Instant>,
}

impl ConsumerGroup {
    fn new(now: Instant) -> Self {
        Self {
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            assignor: Assignor::ALL[0],
            empty_since: Some(now),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(super) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.reconciled_to(self.assignment_epoch))
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    pub(super) fn member_count(&self) -> usize {
        self.members.len()
    }

    pub(super) fn next_deadline(&self, empty_expiry: Duration) -> Option<Instant> {
        let members = self
            .members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.rebalance_deadline])
            .flatten();
        let empty = self
            .empty_since
            .filter(|_| self.members.is_empty())
            .map(|t| t + empty_expiry);
        members.chain(empty).min()
    }

    /// Whether `topic` is among the topics the members subscribe to.
    pub(super) fn subscribes_to(&self, topic: &str) -> bool {
        !self.members.is_empty() && self.topics.contains_key(topic)
    }

    fn name_of(&self, id: &Uuid) -> String {
        self.topics
            .iter()
            .find(|(_, (i, _))| i == id)
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    fn named(&self, a: &Partitions) -> Vec<(Uuid, String, Vec<i32>)> {
        a.iter()
            .map(|(t, ps)| (*t, self.name_of(t), ps.iter().copied().collect()))
            .collect()
    }

    fn describe(&self, name: &str) -> ConsumerGroupDescription {
        ConsumerGroupDescription {
            group: name.to_owned(),
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.name().to_owned(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.topic_names.clone(),
                    subscribed_topic_regex: m.regex.clone(),
                    assignment: self.named(&m.assigned),
                    target_assignment: self
                        .target
                        .get(&m.id)
                        .map(|a| self.named(a))
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Whether a member other than `except` owns the partition (assigned or not yet revoked).
    fn owned_elsewhere(&self, except: &str, topic: &Uuid, partition: i32) -> bool {
        self.members
            .values()
            .any(|m| m.id != except && m.owns(topic, partition))
    }

    /// The topics a member subscribes to, among `topics` (name → id and partitions): by
    /// name, or through what its regular expression resolved to.
    fn subscribed<'a>(
        m: &Member,
        topics: impl Iterator<Item = (&'a String, &'a (Uuid, i32))>,
    ) -> BTreeMap<String, (Uuid, i32)> {
        topics
            .filter(|(name, _)| {
                m.topic_names.iter().any(|n| n == *name) || m.regex_topics.contains(*name)
            })
            .map(|(n, v)| (n.clone(), *v))
            .collect()
    }

    /// The group's subscribed topics among `all`.
    fn subscription_metadata(
        &self,
        all: &BTreeMap<String, (Uuid, i32)>,
    ) -> BTreeMap<String, (Uuid, i32)> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            out.extend(Self::subscribed(m, all.iter()));
        }
        out
    }

    /// The assignor most members ask for (ties to the first in [`Assignor::ALL`]); the
    /// default when none asks.
    fn preferred_assignor(&self) -> Assignor {
        let mut counts: BTreeMap<Assignor, usize> = BTreeMap::new();
        for a in self.members.values().filter_map(|m| m.assignor) {
            *counts.entry(a).or_default() += 1;
        }
        let best = counts.values().copied().max().unwrap_or(0);
        Assignor::ALL
            .into_iter()
            .find(|a| best > 0 && counts.get(a) == Some(&best))
            .unwrap_or(Assignor::ALL[0])
    }

    fn compute_target(&mut self) {
        self.assignor = self.preferred_assignor();
        let counts: BTreeMap<Uuid, i32> = self.topics.values().copied().collect();
        let empty = Partitions::new();
        let specs: Vec<Spec<'_>> = self
            .members
            .values()
            .map(|m| Spec {
                id: &m.id,
                instance_id: m.instance_id.as_deref(),
                topics: Self::subscribed(m, self.topics.iter())
                    .values()
                    .map(|(id, _)| *id)
                    .collect(),
                previous: self.target.get(&m.id).unwrap_or(&empty),
            })
            .collect();
        let target = assign(self.assignor, &specs, &counts);
        self.target = target;
        self.assignment_epoch = self.epoch;
    }

    /// Moves `member` one step toward its target (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&self, mut m: Member, owned: Option<&[(Uuid, Vec<i32>)]>, now: Instant) -> Member {
        let target_epoch = self.assignment_epoch;
        if m.reconciled_to(target_epoch) {
            return m;
        }
        let member_epoch = match m.state {
            MemberState::Stable | MemberState::UnreleasedPartitions => m.epoch,
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &m.revoking) {
                    return m;
                }
                (m.epoch + 1).min(target_epoch)
            }
        };
        let empty = Partitions::new();
        let target = self.target.get(&m.id).unwrap_or(&empty);
        let mut keep = Partitions::new();
        let mut revoke = Partitions::new();
        let mut pending = Partitions::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let want = target.get(&t).cloned().unwrap_or_default();
            let have = m.assigned.get(&t).cloned().unwrap_or_default();
            let k: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let r: BTreeSet<i32> = have.difference(&k).copied().collect();
            let mut p: BTreeSet<i32> = want.difference(&k).copied().collect();
            let before = p.len();
            p.retain(|&p| !self.owned_elsewhere(&m.id, &t, p));
            unreleased |= p.len() != before;
            if !k.is_empty() {
                keep.insert(t, k);
            }
            if !r.is_empty() {
                revoke.insert(t, r);
            }
            if !p.is_empty() {
                pending.insert(t, p);
            }
        }
        let old_state = m.state;
        let old_epoch = m.epoch;
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = keep;
            m.revoking = revoke;
            m.epoch = member_epoch;
        } else {
            for (t, ps) in pending {
                keep.entry(t).or_default().extend(ps);
            }
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            m.assigned = keep;
            m.revoking = Partitions::new();
            m.epoch = target_epoch;
        }
        if m.epoch != old_epoch {
            m.previous_epoch = old_epoch;
        }
        if m.state == MemberState::UnrevokedPartitions {
            if old_state != MemberState::UnrevokedPartitions || m.epoch != old_epoch {
                m.rebalance_deadline = Some(now + m.rebalance_timeout);
            }
        } else {
            m.rebalance_deadline = None;
        }
        m
    }
}

/// Whether `owned` (`None`: the member did not say, so it still owns everything) holds any
/// partition of `a`.
fn owns_any(owned: Option<&[(Uuid, Vec<i32>)]>, a: &Partitions) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(t, ps)| {
        a.get(t)
            .is_some_and(|set| ps.iter().any(|p| set.contains(p)))
    })
}

/// Whether every owned partition is in `a`.
fn is_subset(owned: Option<&[(Uuid, Vec<i32>)]>, a: &Partitions) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned.iter().all(|(t, ps)| {
        a.get(t)
            .is_some_and(|set| ps.iter().all(|p| set.contains(p)))
    })
}

/// Compiles a subscription's regular expression as Kafka matches it: the whole topic name,
/// with a bounded program size (a hostile pattern is refused, not built).
pub(super) fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

/// The topics among `topics` whose whole name `regex` matches, except `hidden` ones.
fn resolve(
    regex: Option<&str>,
    topics: &[TopicMetadata],
    hidden: &BTreeSet<String>,
) -> BTreeSet<String> {
    let Some(regex) = regex.and_then(|r| compile(r).ok()) else {
        return BTreeSet::new();
    };
    topics
        .iter()
        .filter(|t| !hidden.contains(&t.name) && regex.is_match(&t.name))
        .map(|t| t.name.clone())
        .collect()
}

fn to_list(a: &Partitions) -> Vec<(Uuid, Vec<i32>)> {
    a.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn invalid(message: &str) -> Result<(), ConsumerHeartbeatResult> {
    Err(ConsumerHeartbeatResult::error(
        ErrorCode::INVALID_REQUEST,
        message,
    ))
}

/// Kafka's checks of a heartbeat before it looks at the group.
fn validate(h: &ConsumerHeartbeat) -> Result<(), ConsumerHeartbeatResult> {
    if h.group.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if h.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if h.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    match h.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if h.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if h.version >= 1 && h.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if h.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if h.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let names = h
                .subscribed_topic_names
                .as_ref()
                .is_some_and(|n| !n.is_empty());
            let regex = h
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            if !names && !regex {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEAVE_STATIC_EPOCH => {
            if h.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if h.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if h.rebalance_timeout_ms < -1 {
        return invalid("RebalanceTimeoutMs is invalid.");
    }
    if let Some(r) = h
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = compile(r) {
            return Err(ConsumerHeartbeatResult::error(
                ErrorCode::INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex `{r}` is not a valid regular expression: {e}"),
            ));
        }
    }
    if let Some(a) = &h.server_assignor {
        if Assignor::from_name(a).is_none() {
            let names: Vec<&str> = Assignor::ALL.iter().map(|a| a.name()).collect();
            return Err(ConsumerHeartbeatResult::error(
                ErrorCode::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn fenced(received: i32, known: i32) -> ConsumerHeartbeatResult {
    ConsumerHeartbeatResult::error(
        ErrorCode::FENCED_MEMBER_EPOCH,
        format!(
            "The consumer group member has member epoch {received}, the coordinator knows \
             {known}. The member must abandon all its partitions and rejoin."
        ),
    )
}

/// Kafka's epoch check: a member may be one epoch behind if the answer that moved it on was
/// lost, provided it owns no more than what it was assigned.
fn check_epoch(
    m: &Member,
    received: i32,
    owned: Option<&[(Uuid, Vec<i32>)]>,
) -> Result<(), ConsumerHeartbeatResult> {
    if received > m.epoch
        || (received < m.epoch && (received != m.previous_epoch || !is_subset(owned, &m.assigned)))
    {
        return Err(fenced(received, m.epoch));
    }
    Ok(())
}

impl Coordinator {
    /// A ConsumerGroupHeartbeat at `now`.
    pub(super) fn consumer_heartbeat(
        &mut self,
        now: Instant,
        h: ConsumerHeartbeat,
    ) -> ConsumerHeartbeatResult {
        if let Err(e) = validate(&h) {
            return e;
        }
        let result = if h.member_epoch == LEAVE_EPOCH || h.member_epoch == LEAVE_STATIC_EPOCH {
            self.consumer_leave(now, &h)
        } else {
            self.consumer_join_or_beat(now, h)
        };
        result.unwrap_or_else(|e| e)
    }

    fn consumer_leave(
        &mut self,
        now: Instant,
        h: &ConsumerHeartbeat,
    ) -> Result<ConsumerHeartbeatResult, ConsumerHeartbeatResult> {
        let not_found = || {
            ConsumerHeartbeatResult::error(
                ErrorCode::GROUP_ID_NOT_FOUND,
                format!("Consumer group {} not found.", h.group),
            )
        };
        let g = self.consumers.get_mut(&h.group).ok_or_else(not_found)?;
        let id = match &h.instance_id {
            None => {
                if !g.members.contains_key(&h.member_id) {
                    return Err(unknown_member(&h.member_id, &h.group));
                }
                h.member_id.clone()
            }
            Some(instance) => {
                let Some(id) = g.statics.get(instance).cloned() else {
                    return Err(ConsumerHeartbeatResult::error(
                        ErrorCode::UNKNOWN_MEMBER_ID,
                        format!("Instance id {instance} is unknown."),
                    ));
                };
                if id != h.member_id {
                    return Err(fenced_instance(&h.member_id, instance, &id));
                }
                if h.member_epoch == LEAVE_STATIC_EPOCH {
                    if let Some(m) = g.members.get_mut(&id) {
                        m.epoch = LEAVE_STATIC_EPOCH;
                        m.revoking = Partitions::new();
                        m.rebalance_deadline = None;
                        m.state = MemberState::Stable;
                    }
                    tracing::info!(group = %h.group, member = %id, instance = %instance, "static member left for now");
                    return Ok(ConsumerHeartbeatResult {
                        member_id: Some(id),
                        member_epoch: LEAVE_STATIC_EPOCH,
                        ..ConsumerHeartbeatResult::default()
                    });
                }
                id
            }
        };
        self.remove_consumer_member(now, &h.group, &id, "left the group");
        Ok(ConsumerHeartbeatResult {
            member_id: Some(h.member_id.clone()),
            member_epoch: h.member_epoch,
            ..ConsumerHeartbeatResult::default()
        })
    }

    /// Removes a member and bumps the group epoch, recomputing the target of the others.
    pub(super) fn remove_consumer_member(
        &mut self,
        now: Instant,
        group: &str,
        id: &str,
        why: &str,
    ) {
        let Some(g) = self.consumers.get_mut(group) else {
            return;
        };
        let Some(m) = g.members.remove(id) else {
            return;
        };
        if let Some(i) = &m.instance_id {
            if g.statics.get(i).map(String::as_str) == Some(id) {
                g.statics.remove(i);
            }
        }
        g.target.remove(id);
        let topics = g.topics.clone();
        g.topics = g.subscription_metadata(&topics);
        g.epoch += 1;
        self.rebalances += 1;
        if g.members.is_empty() {
            g.target.clear();
            g.assignment_epoch = g.epoch;
            g.empty_since = Some(now);
        } else {
            g.compute_target();
        }
        tracing::info!(
            group,
            member = id,
            epoch = g.epoch,
            "consumer group member removed: {why}"
        );
    }

    fn consumer_join_or_beat(
        &mut self,
        now: Instant,
        h: ConsumerHeartbeat,
    ) -> Result<ConsumerHeartbeatResult, ConsumerHeartbeatResult> {
        let joining = h.member_epoch == 0;
        // The group: a consumer group, or an empty classic group that becomes one.
        if !self.consumers.contains_key(&h.group) {
            if let Some(classic) = self.groups.get(&h.group) {
                if !joining || !classic.members.is_empty() || !classic.pending.is_empty() {
                    return Err(ConsumerHeartbeatResult::error(
                        ErrorCode::GROUP_ID_NOT_FOUND,
                        format!("Group {} is not a consumer group.", h.group),
                    ));
                }
                self.groups.remove(&h.group);
                self.keep_gone(&h.group);
                tracing::info!(group = %h.group, "empty classic group becomes a consumer group");
            }
            if !joining {
                // Kafka answers GROUP_ID_NOT_FOUND; a gateway that restarted without keeping
                // its groups forgot them, and this code has the member join again instead of
                // failing.
                return Err(unknown_member(&h.member_id, &h.group));
            }
            self.consumers
                .insert(h.group.clone(), ConsumerGroup::new(now));
        }
        if joining {
            tracing::debug!(group = %h.group, member = %h.member_id, names = ?h.subscribed_topic_names, regex = ?h.subscribed_topic_regex, assignor = ?h.server_assignor, "consumer group member joins");
        }
        let mut member_id = h.member_id.clone();
        if member_id.is_empty() {
            member_id = self.new_member_id(&h.client_id, h.instance_id.as_deref());
        }
        let max = self.config.max_group_size;
        let session = self.config.consumer_session_timeout;
        let interval =
            i32::try_from(self.config.consumer_heartbeat_interval.as_millis()).unwrap_or(i32::MAX);
        let g = self
            .consumers
            .get_mut(&h.group)
            .ok_or_else(|| unknown_member(&member_id, &h.group))?;
        if g.members.len() >= max && !g.members.contains_key(&member_id) {
            return Err(ConsumerHeartbeatResult::error(
                ErrorCode::GROUP_MAX_SIZE_REACHED,
                format!("The consumer group has reached its maximum capacity of {max} members."),
            ));
        }
        let owned = h.owned.as_deref();
        // The member before this heartbeat (a blank one when new).
        let mut replaced: Option<String> = None;
        let member = match &h.instance_id {
            None => match g.members.get(&member_id) {
                Some(m) if joining => rejoin(m.clone()),
                Some(m) => {
                    check_epoch(m, h.member_epoch, owned)?;
                    m.clone()
                }
                None if joining => Member::new(member_id.clone(), now),
                None => return Err(unknown_member(&member_id, &h.group)),
            },
            Some(instance) => {
                let existing = g.statics.get(instance).and_then(|id| g.members.get(id));
                match existing {
                    None if joining => Member::new(member_id.clone(), now),
                    None => {
                        return Err(ConsumerHeartbeatResult::error(
                            ErrorCode::UNKNOWN_MEMBER_ID,
                            format!("Instance id {instance} is unknown."),
                        ))
                    }
                    Some(m) if joining && m.id == member_id => rejoin(m.clone()),
                    Some(m) if joining => {
                        if m.epoch != LEAVE_STATIC_EPOCH {
                            return Err(ConsumerHeartbeatResult::error(
                                ErrorCode::UNRELEASED_INSTANCE_ID,
                                format!(
                                    "Static member {member_id} with instance id {instance} cannot \
                                     join the group because the instance id is owned by {} member.",
                                    m.id
                                ),
                            ));
                        }
                        // The restarted instance takes over what its predecessor had.
                        replaced = Some(m.id.clone());
                        let mut new = m.clone();
                        new.id.clone_from(&member_id);
                        new.epoch = 0;
                        new.previous_epoch = 0;
                        new
                    }
                    Some(m) => {
                        if m.id != member_id {
                            return Err(fenced_instance(&member_id, instance, &m.id));
                        }
                        check_epoch(m, h.member_epoch, owned)?;
                        m.clone()
                    }
                }
            }
        };
        let is_new = !g.members.contains_key(&member.id) && replaced.is_none();
        let mut updated = member.clone();
        if let Some(i) = &h.instance_id {
            updated.instance_id = Some(i.clone());
        }
        if let Some(r) = &h.rack_id {
            updated.rack_id = Some(r.clone());
        }
        if h.rebalance_timeout_ms >= 0 {
            updated.rebalance_timeout =
                Duration::from_millis(u64::try_from(h.rebalance_timeout_ms).unwrap_or(0));
        }
        if let Some(a) = &h.server_assignor {
            updated.assignor = Assignor::from_name(a);
        }
        if let Some(names) = &h.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            updated.topic_names = names;
        }
        if let Some(r) = &h.subscribed_topic_regex {
            updated.regex = (!r.is_empty()).then(|| r.clone());
        }
        // Resolved at each of the member's heartbeats, with its own principal's view: the
        // group's topics then depend on each member's last heartbeat, not on whichever
        // member heartbeats now.
        updated.regex_topics = resolve(updated.regex.as_deref(), &h.topics, &h.hidden);
        updated.client_id.clone_from(&h.client_id);
        updated.client_host.clone_from(&h.client_host);
        updated.session_deadline = now + session;
        let mut bump = is_new || !member.same_subscription(&updated);
        if let Some(old) = replaced.take() {
            g.members.remove(&old);
            if let Some(t) = g.target.remove(&old) {
                g.target.insert(updated.id.clone(), t);
            }
            tracing::info!(group = %h.group, old = %old, new = %updated.id, "static member rejoined");
        }
        if let Some(i) = &updated.instance_id {
            g.statics.insert(i.clone(), updated.id.clone());
        }
        g.members.insert(updated.id.clone(), updated);
        g.empty_since = None;
        // The subscribed topics as they are now: a new partition or a newly matching topic
        // changes the target as a new subscription does.
        let all: BTreeMap<String, (Uuid, i32)> = h
            .topics
            .iter()
            .map(|t| (t.name.clone(), (t.id, t.partitions.max(0))))
            .collect();
        let metadata = g.subscription_metadata(&all);
        if metadata != g.topics {
            g.topics = metadata;
            bump = true;
        }
        if bump {
            g.epoch += 1;
            self.rebalances += 1;
            tracing::info!(group = %h.group, epoch = g.epoch, "consumer group epoch bumped");
        }
        if g.epoch > g.assignment_epoch {
            g.compute_target();
        }
        let current = g
            .members
            .get(&member_id)
            .cloned()
            .ok_or_else(|| unknown_member(&member_id, &h.group))?;
        let before = current.assigned.clone();
        let reconciled = g.reconcile(current, owned, now);
        let changed = reconciled.assigned != before || is_new;
        let epoch = reconciled.epoch;
        let assignment = to_list(&reconciled.assigned);
        g.members.insert(member_id.clone(), reconciled);
        let full = joining
            || (h.rebalance_timeout_ms != -1
                && (h.subscribed_topic_names.is_some() || h.subscribed_topic_regex.is_some())
                && h.owned.is_some());
        Ok(ConsumerHeartbeatResult {
            error: ErrorCode::NONE,
            message: None,
            member_id: Some(member_id),
            member_epoch: epoch,
            heartbeat_interval_ms: interval,
            assignment: (full || changed).then_some(assignment),
        })
    }

    /// Acts on a consumer group's deadlines at or before `now`.
    pub(super) fn expire_consumer_group(&mut self, now: Instant, name: &str) {
        let expiry = self.config.empty_group_expiry;
        let Some(g) = self.consumers.get(name) else {
            return;
        };
        if g.members.is_empty() && g.empty_since.is_some_and(|t| now >= t + expiry) {
            tracing::debug!(group = name, "forgetting empty consumer group");
            self.consumers.remove(name);
            self.keep_gone(name);
            return;
        }
        let lapsed: Vec<(String, &str)> = g
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.id.clone(), "session timed out"))
                } else if m.rebalance_deadline.is_some_and(|t| t <= now) {
                    Some((
                        m.id.clone(),
                        "did not revoke its partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in lapsed {
            self.remove_consumer_member(now, name, &id, why);
        }
    }

    pub(super) fn consumer_describe(
        &self,
        name: &str,
    ) -> Result<ConsumerGroupDescription, (ErrorCode, String)> {
        match self.consumers.get(name) {
            Some(g) => Ok(g.describe(name)),
            None if self.groups.contains_key(name) => Err((
                ErrorCode::GROUP_ID_NOT_FOUND,
                format!("Group {name} is not a consumer group."),
            )),
            None => Err((
                ErrorCode::GROUP_ID_NOT_FOUND,
                format!("Group {name} not found."),
            )),
        }
    }

    /// OffsetCommit and OffsetFetch of a consumer group: who may (Kafka's
    /// `ConsumerGroup::validateOffsetCommit`).
    pub(super) fn consumer_commit(
        &self,
        name: &str,
        member_id: &str,
        epoch: i32,
    ) -> Option<ErrorCode> {
        let g = self.consumers.get(name)?;
        if epoch < 0 && g.members.is_empty() {
            return Some(ErrorCode::NONE);
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(ErrorCode::UNKNOWN_MEMBER_ID);
        };
        if m.epoch != epoch {
            return Some(ErrorCode::STALE_MEMBER_EPOCH);
        }
        Some(ErrorCode::NONE)
    }

    /// OffsetFetch v9+ (Kafka's `ConsumerGroup::validateOffsetFetch`): anyone when no member
    /// is named; otherwise a member at its current epoch. Groups of the classic protocol
    /// are not checked.
    pub(super) fn consumer_fetch_check(
        &self,
        name: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> ErrorCode {
        let Some(g) = self.consumers.get(name) else {
            return ErrorCode::NONE;
        };
        if member_id.is_none() && epoch < 0 {
            return ErrorCode::NONE;
        }
        match g.members.get(member_id.unwrap_or_default()) {
            None => ErrorCode::UNKNOWN_MEMBER_ID,
            Some(m) if m.epoch != epoch => ErrorCode::STALE_MEMBER_EPOCH,
            Some(_) => ErrorCode::NONE,
        }
    }

    /// A consumer group as DescribeGroups shows it (as Kafka's `asDescribedGroup`): the
    /// assignor as the protocol, each member's subscription and assignment in the consumer
    /// protocol's encoding (version 0).
    pub(super) fn consumer_as_classic_description(&self, name: &str) -> Option<GroupDescription> {
        let g = self.consumers.get(name)?;
        Some(GroupDescription {
            group: name.to_owned(),
            state: g.state(),
            protocol_type: "consumer".to_owned(),
            protocol: g.assignor.name().to_owned(),
            members: g
                .members
                .values()
                .map(|m| {
                    let topics = ConsumerGroup::subscribed(m, g.topics.iter());
                    MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: subscription_v0(topics.keys()),
                        assignment: assignment_v0(&g.named(&m.assigned)),
                    }
                })
                .collect(),
        })
    }

    pub(super) fn consumer_overviews(&self) -> impl Iterator<Item = GroupOverview> + '_ {
        self.consumers.iter().map(|(name, g)| GroupOverview {
            group: name.clone(),
            protocol_type: "consumer".to_owned(),
            state: g.state(),
            kind: GroupKind::Consumer,
        })
    }

    pub(super) fn consumer_delete(&mut self, name: &str) -> Option<Deletion> {
        let g = self.consumers.get(name)?;
        if !g.members.is_empty() {
            return Some(Deletion::NonEmpty);
        }
        self.consumers.remove(name);
        self.keep_gone(name);
        tracing::info!(group = name, "consumer group deleted");
        Some(Deletion::Deleted)
    }

    pub(super) fn consumer_offset_delete(
        &self,
        name: &str,
        topics: &[String],
    ) -> Option<OffsetDeletion> {
        let g = self.consumers.get(name)?;
        Some(OffsetDeletion::Subscribed(
            topics.iter().map(|t| g.subscribes_to(t)).collect(),
        ))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.extend_from_slice(&i16::try_from(bytes.len()).unwrap_or(i16::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes());
}

/// `ConsumerProtocolSubscription` v0: the topics, no user data.
fn subscription_v0<'a>(topics: impl ExactSizeIterator<Item = &'a String>) -> Bytes {
    let mut out = vec![0, 0];
    put_len(&mut out, topics.len());
    for t in topics {
        put_str(&mut out, t);
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

/// `ConsumerProtocolAssignment` v0: partitions by topic name, no user data.
fn assignment_v0(a: &[(Uuid, String, Vec<i32>)]) -> Bytes {
    let mut out = vec![0, 0];
    put_len(&mut out, a.len());
    for (_, name, ps) in a {
        put_str(&mut out, name);
        put_len(&mut out, ps.len());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

/// A member joining again with epoch 0 under its own id has abandoned its partitions (it
/// was fenced, or it restarted with a kept id): it starts over.
fn rejoin(mut m: Member) -> Member {
    m.epoch = 0;
    m.previous_epoch = 0;
    m.assigned = Partitions::new();
    m.revoking = Partitions::new();
    m.state = MemberState::Stable;
    m.rebalance_deadline = None;
    m
}

fn unknown_member(member_id: &str, group: &str) -> ConsumerHeartbeatResult {
    ConsumerHeartbeatResult::error(
        ErrorCode::UNKNOWN_MEMBER_ID,
        format!("Member {member_id} is not a member of group {group}."),
    )
}

fn fenced_instance(member_id: &str, instance: &str, by: &str) -> ConsumerHeartbeatResult {
    ConsumerHeartbeatResult::error(
        ErrorCode::FENCED_INSTANCE_ID,
        format!("Static member {member_id} with instance id {instance} was fenced by member {by}."),
    )
}

/// Checks for the fuzzer and the tests: no partition has two owners, targets are disjoint,
/// and no member is ahead of the assignment epoch, which is not ahead of the group epoch.
pub(super) fn check_invariants(g: &ConsumerGroup) -> Result<(), String> {
    let mut owners: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    for m in g.members.values() {
        for a in [&m.assigned, &m.revoking] {
            for (t, ps) in a {
                for p in ps {
                    if let Some(other) = owners.insert((*t, *p), &m.id) {
                        return Err(format!("partition {p} owned by {other} and {}", m.id));
                    }
                }
            }
        }
        if m.epoch > g.assignment_epoch {
            return Err(format!(
                "member {} at epoch {} ahead of the assignment epoch {}",
                m.id, m.epoch, g.assignment_epoch
            ));
        }
    }
    let mut targets: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for a in g.target.values() {
        for (t, ps) in a {
            for p in ps {
                if !targets.insert((*t, *p)) {
                    return Err(format!("partition {p} in two targets"));
                }
            }
        }
    }
    if g.assignment_epoch > g.epoch {
        return Err("assignment epoch ahead of the group epoch".into());
    }
    Ok(())
}

/// Every member's epoch, by group and member id, for the fuzzer's monotonicity check.
pub(super) fn epochs(g: &ConsumerGroup) -> (i32, Vec<(String, i32)>) {
    (
        g.epoch,
        g.members
            .values()
            .map(|m| (m.id.clone(), m.epoch))
            .collect(),
    )
}

impl MemberState {
    fn code(self) -> u8 {
        match self {
            Self::Stable => 0,
            Self::UnrevokedPartitions => 1,
            Self::UnreleasedPartitions => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Stable,
            1 => Self::UnrevokedPartitions,
            2 => Self::UnreleasedPartitions,
            _ => return None,
        })
    }
}

/// A consumer group's kept state (see `kept`): what Kafka's consumer group records hold.
pub(super) fn encode_kept(g: &ConsumerGroup) -> Bytes {
    let mut w = Writer::new(kept::CONSUMER);
    w.i32(g.epoch);
    w.i32(g.assignment_epoch);
    w.str(g.assignor.name());
    w.count(g.topics.len());
    for (name, (id, partitions)) in &g.topics {
        w.str(name);
        w.uuid(id);
        w.i32(*partitions);
    }
    w.count(g.members.len());
    for m in g.members.values() {
        w.str(&m.id);
        w.opt_str(m.instance_id.as_deref());
        w.opt_str(m.rack_id.as_deref());
        w.str(&m.client_id);
        w.str(&m.client_host);
        w.i32(m.epoch);
        w.i32(m.previous_epoch);
        w.u8(m.state.code());
        w.partitions(&m.assigned);
        w.partitions(&m.revoking);
        w.millis(m.rebalance_timeout);
        w.count(m.topic_names.len());
        for n in &m.topic_names {
            w.str(n);
        }
        w.opt_str(m.regex.as_deref());
        w.opt_str(m.assignor.map(Assignor::name));
    }
    w.count(g.target.len());
    for (id, a) in &g.target {
        w.str(id);
        w.partitions(a);
    }
    // What each member's regular expression resolved to: last, so that a state written
    // before it was kept still reads.
    let resolved: Vec<&Member> = g.members.values().filter(|m| m.regex.is_some()).collect();
    w.count(resolved.len());
    for m in resolved {
        w.str(&m.id);
        w.count(m.regex_topics.len());
        for t in &m.regex_topics {
            w.str(t);
        }
    }
    w.finish()
}

/// A consumer group back from its kept state at `now`: every member's session runs from
/// `now`, and a member still revoking partitions has its rebalance timeout from `now` too
/// (as Kafka's coordinator schedules them when it loads a group). `None` for input that is
/// not such a state, or breaks the group's invariants.
pub(super) fn decode_kept(
    r: &mut Reader<'_>,
    now: Instant,
    session: Duration,
) -> Option<ConsumerGroup> {
    let mut g = ConsumerGroup::new(now);
    g.epoch = r.i32()?;
    g.assignment_epoch = r.i32()?;
    g.assignor = Assignor::from_name(&r.str()?)?;
    for _ in 0..r.count(24)? {
        let name = r.str()?;
        let id = r.uuid()?;
        g.topics.insert(name, (id, r.i32()?.max(0)));
    }
    for _ in 0..r.count(40)? {
        let mut m = Member::new(r.str()?, now);
        m.instance_id = r.opt_str()?;
        m.rack_id = r.opt_str()?;
        m.client_id = r.str()?;
        m.client_host = r.str()?;
        m.epoch = r.i32()?;
        m.previous_epoch = r.i32()?;
        m.state = MemberState::from_code(r.u8()?)?;
        m.assigned = r.partitions()?;
        m.revoking = r.partitions()?;
        m.rebalance_timeout = r.millis()?;
        for _ in 0..r.count(4)? {
            m.topic_names.push(r.str()?);
        }
        m.regex = r.opt_str()?;
        m.assignor = match r.opt_str()? {
            Some(a) => Some(Assignor::from_name(&a)?),
            None => None,
        };
        m.session_deadline = now + session;
        if m.state == MemberState::UnrevokedPartitions {
            m.rebalance_deadline = Some(now + m.rebalance_timeout);
        }
        if let Some(i) = &m.instance_id {
            g.statics.insert(i.clone(), m.id.clone());
        }
        g.members.insert(m.id.clone(), m);
    }
    for _ in 0..r.count(8)? {
        let id = r.str()?;
        g.target.insert(id, r.partitions()?);
    }
    if r.is_done() {
        // Written without the resolved regular expressions: the group's topics stand for
        // them.
        let known: Vec<TopicMetadata> = g
            .topics
            .iter()
            .map(|(name, (id, partitions))| TopicMetadata {
                name: name.clone(),
                id: *id,
                partitions: *partitions,
            })
            .collect();
        for m in g.members.values_mut() {
            m.regex_topics = resolve(m.regex.as_deref(), &known, &BTreeSet::new());
        }
    } else {
        for _ in 0..r.count(8)? {
            let id = r.str()?;
            let mut topics = BTreeSet::new();
            for _ in 0..r.count(4)? {
                topics.insert(r.str()?);
            }
            g.members.get_mut(&id)?.regex_topics = topics;
        }
    }
    if !r.is_done() || check_invariants(&g).is_err() {
        return None;
    }
    if !g.members.is_empty() {
        g.empty_since = None;
    }
    Some(g)
}
