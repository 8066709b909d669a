//! The consumer group coordinator of Kafka's classic group protocol, as a sans-IO state
//! machine shared by every connection of a gateway.
//!
//! Calls come in with [`Coordinator::handle`], each with the caller's [`ReplyTo`] token; the
//! answers leave through [`Coordinator::poll_reply`], at once or later (a JoinGroup waits for
//! the rebalance, a follower's SyncGroup for the leader's assignment). Time only moves through
//! the `now` arguments: [`Coordinator::poll_timeout`] says when [`Coordinator::handle_timeout`]
//! is next due (a rebalance deadline, a session expiring, an empty group to forget).
//!
//! The rules follow Kafka's group coordinator, error codes included: generations, the
//! MEMBER_ID_REQUIRED handshake (JoinGroup v4+), static members (`group.instance.id`, v5+)
//! that rejoin without a rebalance and fence the instance they replace, the initial rebalance
//! delay of a new group, session and rebalance timeouts, and pending-sync expiry.
//!
//! Committed offsets are not kept here: they live in the backend. Each group's state is a
//! self-contained value ([`GroupSnapshot`] describes it) keyed by the group id, holding no
//! connection or runtime handle but the opaque reply tokens of the calls it still owes an
//! answer.
//!
//! With [`GroupConfig::keep_state`], the coordinator hands out what a restart must not lose,
//! as Kafka's coordinator writes it to `__consumer_offsets`: a classic group's generation,
//! members and assignments when the leader's assignment is set, when a static member's new
//! id replaces its old one and when the group empties; a consumer group's epochs, members
//! and assignments whenever a heartbeat or a timeout changes them; the removal of a group
//! deleted or forgotten. Each leaves through [`Coordinator::poll_keep`] as one versioned
//! value per group (the latest wins), and [`Coordinator::restore`] takes them back at start
//! with every member's session running from then. As Kafka holds a response until its
//! records are committed, the answers that tell of a change (SyncGroup, a static member's
//! replacement JoinGroup, a consumer group's heartbeats while a write of the group is under
//! way) leave once [`Coordinator::handle_kept`] reports the write; a failed write fails them
//! with COORDINATOR_NOT_AVAILABLE, puts the memory back to what was kept, and the group is
//! written again after a backoff.
//!
//! Call order: `handle` and `handle_timeout` in any order; after each, drain `poll_reply`
//! and `poll_keep`; report each keep with `handle_kept`; sleep until `poll_timeout`. After
//! `shutdown`, only the retries of failed writes are due; `is_unkept` says when everything
//! handed out is written.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::error_code::ErrorCode;

mod assignor;
mod consumer;
mod kept;

pub use assignor::Assignor;
pub use consumer::{
    ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatResult,
    ConsumerMemberDescription, TopicMetadata, LEAVE_EPOCH, LEAVE_STATIC_EPOCH,
};

/// Limits and delays of the coordinator (Kafka's `group.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConfig {
    /// Shortest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub max_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay: Duration,
    /// Most members a group may have (`group.max.size`).
    pub max_group_size: usize,
    /// How long an empty group is remembered; its committed offsets stay in the backend.
    pub empty_group_expiry: Duration,
    /// The session timeout of consumer group members (`group.consumer.session.timeout.ms`).
    pub consumer_session_timeout: Duration,
    /// How often consumer group members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`).
    pub consumer_heartbeat_interval: Duration,
    /// Whether the groups' state is kept across restarts: the coordinator then hands out
    /// what to keep ([`Coordinator::poll_keep`]) and holds the answers that tell of a change
    /// until that is kept ([`Coordinator::handle_kept`]).
    pub keep_state: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            initial_rebalance_delay: Duration::from_secs(3),
            max_group_size: i32::MAX as usize,
            empty_group_expiry: Duration::from_secs(10 * 60),
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
            keep_state: false,
        }
    }
}

/// The caller's token for a call, returned with its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// A member as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberRef {
    /// The group.
    pub group: String,
    /// The member id (empty when unknown).
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The generation the member believes in (-1 for none).
    pub generation: i32,
}

/// A JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinArgs {
    /// The group.
    pub group: String,
    /// The member id, empty on a first join.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address, as DescribeGroups shows it.
    pub client_host: String,
    /// The member's session timeout.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// The protocol type (`consumer` for consumers).
    pub protocol_type: String,
    /// The protocols the member supports, most preferred first, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is given one and must join again with it.
    pub require_known_member_id: bool,
}

/// A SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncArgs {
    /// Who syncs.
    pub member: MemberRef,
    /// v5+: the protocol type the member expects.
    pub protocol_type: Option<String>,
    /// v5+: the protocol the member expects.
    pub protocol_name: Option<String>,
    /// The leader's assignment, member by member (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A call on the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupCall {
    /// JoinGroup; replies [`GroupReply::Join`].
    Join(JoinArgs),
    /// SyncGroup; replies [`GroupReply::Sync`].
    Sync(SyncArgs),
    /// Heartbeat; replies [`GroupReply::Heartbeat`].
    Heartbeat(MemberRef),
    /// LeaveGroup of `(member id, group.instance.id)` pairs; replies [`GroupReply::Leave`].
    Leave {
        /// The group.
        group: String,
        /// Who leaves.
        members: Vec<(String, Option<String>)>,
    },
    /// May this member commit offsets now? Creates the group for a commit without group
    /// management (generation -1). Replies [`GroupReply::Commit`].
    Commit(MemberRef),
    /// Every group; replies [`GroupReply::List`].
    List,
    /// These groups; replies [`GroupReply::Describe`].
    Describe(Vec<String>),
    /// Forget these groups where Kafka would delete them; replies [`GroupReply::Delete`].
    /// Their committed offsets are the caller's to delete.
    Delete(Vec<String>),
    /// May offsets of these topics be deleted from the group? Replies
    /// [`GroupReply::OffsetDelete`].
    OffsetDelete {
        /// The group.
        group: String,
        /// The topics.
        topics: Vec<String>,
    },
    /// ConsumerGroupHeartbeat; replies [`GroupReply::ConsumerHeartbeat`].
    ConsumerHeartbeat(ConsumerHeartbeat),
    /// ConsumerGroupDescribe of these groups; replies [`GroupReply::ConsumerDescribe`].
    ConsumerDescribe(Vec<String>),
    /// May this member read the group's committed offsets (OffsetFetch v9+)? Replies
    /// [`GroupReply::FetchCheck`].
    FetchCheck {
        /// The group.
        group: String,
        /// The member id, if the request names one.
        member_id: Option<String>,
        /// The member epoch, -1 for none.
        member_epoch: i32,
    },
}

impl GroupCall {
    /// The one group this call is about, if there is one.
    #[must_use]
    pub fn group(&self) -> Option<&str> {
        match self {
            Self::Join(j) => Some(&j.group),
            Self::Sync(s) => Some(&s.member.group),
            Self::Heartbeat(m) | Self::Commit(m) => Some(&m.group),
            Self::Leave { group, .. } | Self::OffsetDelete { group, .. } => Some(group),
            Self::ConsumerHeartbeat(h) => Some(&h.group),
            Self::FetchCheck { group, .. } => Some(group),
            Self::List | Self::Describe(_) | Self::Delete(_) | Self::ConsumerDescribe(_) => None,
        }
    }
}

/// A group's state, as DescribeGroups and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned.
    Stable,
    /// Gone.
    Dead,
    /// A consumer group whose target assignment is not computed yet.
    Assigning,
    /// A consumer group whose members have not all reached their target assignment.
    Reconciling,
}

/// Which protocol a group follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// The classic protocol (JoinGroup, SyncGroup, Heartbeat).
    Classic,
    /// The consumer protocol of KIP-848 (ConsumerGroupHeartbeat).
    Consumer,
}

impl GroupKind {
    /// Kafka's name for it, as ListGroups v5 shows it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

impl GroupState {
    /// Kafka's name for the state.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResult {
    /// The error, or NONE.
    pub error: ErrorCode,
    /// The generation joined, -1 on error.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The protocol chosen.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id (a new one with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
    /// A static leader that rejoined: it must not compute a new assignment (v9+).
    pub skip_assignment: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResult {
    /// The error, or NONE.
    pub error: ErrorCode,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOverview {
    /// The group id.
    pub group: String,
    /// Its protocol type (empty when it has none).
    pub protocol_type: String,
    /// Its state.
    pub state: GroupState,
    /// Its protocol.
    pub kind: GroupKind,
}

/// What DescribeGroups shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: GroupState,
    /// Its protocol type (empty when it has none).
    pub protocol_type: String,
    /// The chosen protocol, when the group is stable.
    pub protocol: String,
    /// The members; metadata and assignments only when the group is stable.
    pub members: Vec<MemberDescription>,
}

/// A member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

/// The outcome of deleting one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The group was empty and is forgotten.
    Deleted,
    /// The coordinator does not know it (its offsets may still exist).
    Unknown,
    /// It has members (NON_EMPTY_GROUP).
    NonEmpty,
    /// Its deletion could not be written, and it is back as it was last kept
    /// (COORDINATOR_NOT_AVAILABLE: its offsets must stay).
    NotKept,
}

/// The coordinator's view on deleting offsets of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetDeletion {
    /// The coordinator does not know the group (its offsets may still exist).
    Unknown,
    /// Refused for the whole group.
    Refused(ErrorCode),
    /// Allowed, except for the topics the group is subscribed to (same order as asked).
    Subscribed(Vec<bool>),
}

/// A reply, variant by [`GroupCall`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupReply {
    /// Of [`GroupCall::Join`].
    Join(JoinResult),
    /// Of [`GroupCall::Sync`].
    Sync(SyncResult),
    /// Of [`GroupCall::Heartbeat`].
    Heartbeat(ErrorCode),
    /// Of [`GroupCall::Leave`]: a group-level error, or one code per member.
    Leave(Result<Vec<ErrorCode>, ErrorCode>),
    /// Of [`GroupCall::Commit`].
    Commit(ErrorCode),
    /// Of [`GroupCall::List`].
    List(Vec<GroupOverview>),
    /// Of [`GroupCall::Describe`]: `None` for a group the coordinator does not know.
    Describe(Vec<Option<GroupDescription>>),
    /// Of [`GroupCall::Delete`].
    Delete(Vec<Deletion>),
    /// Of [`GroupCall::OffsetDelete`].
    OffsetDelete(OffsetDeletion),
    /// Of [`GroupCall::ConsumerHeartbeat`].
    ConsumerHeartbeat(ConsumerHeartbeatResult),
    /// Of [`GroupCall::ConsumerDescribe`]: a description, or an error code and message.
    ConsumerDescribe(Vec<Result<ConsumerGroupDescription, (ErrorCode, String)>>),
    /// Of [`GroupCall::FetchCheck`].
    FetchCheck(ErrorCode),
}

/// A member of a group.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<ReplyTo>,
    awaiting_sync: Option<ReplyTo>,
    /// The member is gone if nothing is heard from it by then (while not awaiting a reply).
    session_deadline: Instant,
    /// Join order, for choosing a leader.
    seq: u64,
}

impl Member {
    /// The JoinGroup and SyncGroup calls the member waits on, taken, each with an answer
    /// of `error`.
    fn take_waiting(&mut self, error: ErrorCode) -> impl Iterator<Item = (ReplyTo, GroupReply)> {
        let join = self
            .awaiting_join
            .take()
            .map(|to| (to, join_error(&self.id, error)));
        let sync = self.awaiting_sync.take().map(|to| (to, sync_error(error)));
        join.into_iter().chain(sync)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// One group's state.
#[derive(Debug, Clone)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: HashMap<String, Instant>,
    /// `group.instance.id` → member id.
    statics: HashMap<String, String>,
    /// PreparingRebalance: the join completes by then whoever has rejoined.
    rebalance_deadline: Option<Instant>,
    /// PreparingRebalance of a new group: the join completes no earlier.
    join_not_before: Option<Instant>,
    /// Members that have not sent SyncGroup since the join completed, and the deadline.
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Instant>,
    /// When it became empty, to forget it later.
    empty_since: Option<Instant>,
    /// CompletingRebalance: the leader's assignment is being kept under this token; the
    /// SyncGroup answers wait for it.
    keeping: Option<u64>,
}

impl Group {
    fn new(now: Instant) -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            join_not_before: None,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            empty_since: Some(now),
            keeping: None,
        }
    }

    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.statics.get(i))
            .is_some_and(|id| id != member_id)
    }

    /// Whether a member with these protocols may join (Kafka's `supportsProtocols`).
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidates()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut set: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            set.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        set
    }

    /// Kafka's vote: each member picks its most preferred common protocol; most votes win,
    /// ties going to the earliest member's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(String, usize)> = Vec::new();
        let mut by_seq: Vec<&Member> = self.members.values().collect();
        by_seq.sort_by_key(|m| m.seq);
        for m in by_seq {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                match votes.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => *v += 1,
                    None => votes.push((name.clone(), 1)),
                }
            }
        }
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(n, _)| n)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn summary_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: ErrorCode::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if is_leader {
                self.summary_members()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn next_deadline(&self, empty_expiry: Duration) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        if self.state == GroupState::PreparingRebalance {
            consider(self.rebalance_deadline);
            consider(self.join_not_before);
        }
        consider(self.sync_deadline);
        for m in self.members.values() {
            if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
                consider(Some(m.session_deadline));
            }
        }
        for t in self.pending.values() {
            consider(Some(*t));
        }
        if self.state == GroupState::Empty {
            consider(self.empty_since.map(|t| t + empty_expiry));
        }
        d
    }
}

/// A plain description of one group's membership, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The state.
    pub state: GroupState,
    /// The generation.
    pub generation: i32,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The chosen protocol.
    pub protocol: Option<String>,
    /// Member ids, in join order.
    pub members: Vec<String>,
}

/// A consumer group's epoch and its members' (see [`Coordinator::consumer_epochs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochsOf {
    /// The group.
    pub group: String,
    /// The group epoch.
    pub epoch: i32,
    /// Member ids and their epochs.
    pub members: Vec<(String, i32)>,
}

/// A group's state to keep across restarts, replacing what was kept of the group (see
/// [`GroupConfig::keep_state`]): hand it back to [`Coordinator::restore`] at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepGroup {
    /// Report the write with [`Coordinator::handle_kept`] and this token.
    pub token: u64,
    /// The group.
    pub group: String,
    /// Its state, self-contained and versioned; `None` when the group is gone.
    pub state: Option<Bytes>,
}

/// The coordinator of every group of a gateway. See the module documentation.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    /// Consumer groups (KIP-848); a name is in `groups` or here, never both.
    consumers: HashMap<String, consumer::ConsumerGroup>,
    replies: VecDeque<(ReplyTo, GroupReply)>,
    seed: u64,
    counter: u64,
    rebalances: u64,
    /// What to keep, in order (with `config.keep_state`).
    keeps: VecDeque<KeepGroup>,
    next_keep: u64,
    /// Every state handed out to keep and not yet reported, by token: its group and state.
    inflight: BTreeMap<u64, (String, Option<Bytes>)>,
    /// Each group's state as last reported kept (or restored): what a consumer group goes
    /// back to when a later write fails.
    durable: HashMap<String, Bytes>,
    /// Answers held until the write under their token lands, as Kafka holds a response
    /// until its records are committed.
    held: Vec<Held>,
    /// Groups whose write failed, written again on the clock.
    retries: HashMap<String, Retry>,
    /// Each consumer group's state as last handed out to keep, so that a heartbeat that
    /// changes nothing writes nothing.
    consumers_kept: HashMap<String, Bytes>,
    /// Shut down: deadlines no longer act, except the retries of failed writes.
    stopped: bool,
}

/// An answer waiting for a write.
#[derive(Debug)]
struct Held {
    token: u64,
    group: String,
    reply_to: ReplyTo,
    reply: GroupReply,
    /// A static member's replacement, undone if the write fails.
    replaced: Option<Replaced>,
    /// Answered COORDINATOR_NOT_AVAILABLE if the write has not landed by then
    /// ([`HOLD_TIMEOUT`]).
    deadline: Instant,
}

/// A static member replaced in a stable group: the member before, and its new id.
#[derive(Debug)]
struct Replaced {
    instance: String,
    old: Member,
    new_id: String,
}

/// A group whose state is to be written again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// When to write it again; `None` while that write is under way.
    due: Option<Instant>,
    backoff: Duration,
    /// A write of the group handed out under this token or a later one makes it moot.
    after: u64,
}

/// Kafka's `offsets.commit.timeout.ms` default: how long a commit waits for its write to
/// the coordinator's log before it is answered COORDINATOR_NOT_AVAILABLE (the write goes
/// on, and may still land).
pub const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an answer waits for its group's write before it is answered
/// COORDINATOR_NOT_AVAILABLE (the write goes on, and its outcome still counts): Kafka's
/// `offsets.commit.timeout.ms` default, which bounds its coordinator's writes.
const HOLD_TIMEOUT: Duration = OFFSETS_COMMIT_TIMEOUT;

/// The first wait before a failed write is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

enum Restored {
    Classic(Group),
    Consumer(consumer::ConsumerGroup),
}

/// What the coordinator holds now and did so far: plain figures, for an adapter to report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupStats {
    /// Groups of both kinds in each state, in the order of [`GroupState`]'s variants (empty
    /// groups are forgotten after a while, their committed offsets kept).
    pub groups: [(GroupState, u64); 7],
    /// Members of every group together.
    pub members: u64,
    /// Rebalances started so far.
    pub rebalances: u64,
}

const OK: ErrorCode = ErrorCode::NONE;

fn join_error(member_id: &str, error: ErrorCode) -> GroupReply {
    GroupReply::Join(JoinResult {
        error,
        generation: -1,
        member_id: member_id.to_owned(),
        ..JoinResult::default()
    })
}

fn sync_error(error: ErrorCode) -> GroupReply {
    GroupReply::Sync(SyncResult {
        error,
        ..SyncResult::default()
    })
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Coordinator {
    /// A coordinator with no groups. `seed` makes member ids unique to this coordinator:
    /// give it randomness, so that ids do not repeat across gateway restarts.
    #[must_use]
    pub fn new(config: GroupConfig, seed: u64) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            consumers: HashMap::new(),
            replies: VecDeque::new(),
            seed,
            counter: 0,
            rebalances: 0,
            keeps: VecDeque::new(),
            next_keep: 0,
            inflight: BTreeMap::new(),
            durable: HashMap::new(),
            held: Vec::new(),
            retries: HashMap::new(),
            consumers_kept: HashMap::new(),
            stopped: false,
        }
    }

    /// Takes back the groups' state as [`Coordinator::poll_keep`] handed it out (the latest of
    /// each group), at start, before any call. A classic group comes back Stable in its
    /// generation with its members and assignments (Empty without members), a consumer
    /// group with its epochs and assignments; every member's session runs from `now`, so
    /// members that keep heartbeating stay and the others are removed after their session
    /// timeout. State that does not decode is skipped and logged. Returns how many groups
    /// came back.
    pub fn restore(
        &mut self,
        now: Instant,
        kept: impl IntoIterator<Item = (String, Bytes)>,
    ) -> usize {
        let mut restored = 0;
        for (name, bytes) in kept {
            match self.decode(now, &bytes) {
                Some(Restored::Classic(g)) => {
                    tracing::info!(group = %name, generation = g.generation, members = g.members.len(), "classic group restored");
                    self.consumers.remove(&name);
                    self.groups.insert(name.clone(), g);
                    self.durable.insert(name, bytes);
                    restored += 1;
                }
                Some(Restored::Consumer(g)) => {
                    tracing::info!(group = %name, members = g.member_count(), "consumer group restored");
                    self.groups.remove(&name);
                    self.consumers_kept.insert(name.clone(), bytes.clone());
                    self.durable.insert(name.clone(), bytes);
                    self.consumers.insert(name, g);
                    restored += 1;
                }
                None => {
                    tracing::warn!(group = %name, bytes = bytes.len(), "kept group state not understood; the group starts afresh");
                }
            }
        }
        restored
    }

    fn decode(&mut self, now: Instant, bytes: &[u8]) -> Option<Restored> {
        kept::Reader::open(bytes).and_then(|(mut r, kind)| match kind {
            kept::CLASSIC => {
                kept::decode_classic(&mut r, now, &mut self.counter).map(Restored::Classic)
            }
            kept::CONSUMER => {
                consumer::decode_kept(&mut r, now, self.config.consumer_session_timeout)
                    .map(Restored::Consumer)
            }
            _ => None,
        })
    }

    /// The next group state to keep (with [`GroupConfig::keep_state`]), in the order
    /// handed out; report each with [`Coordinator::handle_kept`].
    pub fn poll_keep(&mut self) -> Option<KeepGroup> {
        self.keeps.pop_front()
    }

    /// Whether a state handed out to keep still awaits its report, or a failed write its
    /// retry: what a gateway shutting down still has to write.
    #[must_use]
    pub fn is_unkept(&self) -> bool {
        !self.inflight.is_empty() || !self.retries.is_empty()
    }

    /// Whether the state handed out under `token` still counts: a failed write that sent
    /// its group back to its kept state voids the group's later ones, which are then not
    /// to be written (their answers failed).
    #[must_use]
    pub fn is_in_flight(&self, token: u64) -> bool {
        self.inflight.contains_key(&token)
    }

    /// Reports whether the state handed out under `token` was kept, as Kafka's coordinator
    /// learns that its records were committed or failed. Kept: the answers that waited for
    /// it leave (a leader's assignment goes to the members). Not kept: the answers that
    /// waited fail with COORDINATOR_NOT_AVAILABLE (Kafka's answer to a failed write) and the
    /// memory goes back to what was kept: a leader's assignment is dropped and the group
    /// rebalances, a static member's replacement is undone, a consumer group returns to its
    /// last kept state (also when a classic join had made a classic group of it); the group
    /// is written again after a backoff.
    pub fn handle_kept(&mut self, now: Instant, token: u64, ok: bool) {
        // Unknown: reported twice, or voided when its group went back.
        let Some((name, state)) = self.inflight.remove(&token) else {
            return;
        };
        let sync = self.groups.get(&name).is_some_and(|g| {
            g.state == GroupState::CompletingRebalance && g.keeping == Some(token)
        });
        let (mine, rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.token == token);
        self.held = rest;
        if ok {
            match state {
                Some(b) => self.durable.insert(name.clone(), b),
                None => self.durable.remove(&name),
            };
            if self.retries.get(&name).is_some_and(|r| token >= r.after) {
                self.retries.remove(&name);
            }
            self.replies
                .extend(mine.into_iter().map(|h| (h.reply_to, h.reply)));
            if sync {
                self.complete_sync(now, &name);
            }
            return;
        }
        tracing::warn!(group = %name, token, "the group's state could not be kept; answering COORDINATOR_NOT_AVAILABLE and writing it again later");
        for h in mine {
            self.fail_held(now, h, true);
        }
        if sync {
            self.fail_sync(now, &name);
        } else {
            // A consumer group goes back to what was kept, and so does a deleted group of
            // either kind (a restart would find it there). So does an empty consumer group
            // that a classic join made a classic group, while what was kept of it is still
            // the consumer group: the classic group made since is dropped, as Kafka's
            // coordinator undoes a conversion whose records it could not write.
            let deleted = state.is_none()
                && !self.groups.contains_key(&name)
                && !self.consumers.contains_key(&name);
            let converted = self.groups.contains_key(&name) && self.kept_as_consumer(&name);
            if self.consumers.contains_key(&name) || deleted || converted {
                self.revert_group(now, &name);
            }
            self.schedule_retry(now, &name);
        }
    }

    /// Answers a held call COORDINATOR_NOT_AVAILABLE; its write failed (`undo`: a static
    /// member's replacement is undone) or is taking too long (the write's outcome decides).
    fn fail_held(&mut self, now: Instant, h: Held, undo: bool) {
        let code = ErrorCode::COORDINATOR_NOT_AVAILABLE;
        let reply = match h.reply {
            GroupReply::Join(_) => {
                if let Some(r) = h.replaced.filter(|_| undo) {
                    self.undo_replace(now, &h.group, r);
                }
                // As Kafka: the group as it is, without a member id.
                let g = self.groups.get(&h.group);
                GroupReply::Join(JoinResult {
                    error: code,
                    generation: g.map_or(-1, |g| g.generation),
                    protocol_type: g.and_then(|g| g.protocol_type.clone()),
                    protocol_name: g.and_then(|g| g.protocol.clone()),
                    leader: g.and_then(|g| g.leader.clone()).unwrap_or_default(),
                    ..JoinResult::default()
                })
            }
            GroupReply::ConsumerHeartbeat(_) => {
                GroupReply::ConsumerHeartbeat(ConsumerHeartbeatResult {
                    error: code,
                    message: Some("The group's state could not be written.".to_owned()),
                    ..ConsumerHeartbeatResult::default()
                })
            }
            // The members are gone from memory all the same (a classic group is not put
            // back); the write is tried again on the clock.
            GroupReply::Leave(_) => GroupReply::Leave(Err(code)),
            // A failed write put the groups back (`handle_kept`); one taking too long may
            // still land, so their offsets stay either way.
            GroupReply::Delete(outcomes) => GroupReply::Delete(
                outcomes
                    .into_iter()
                    .map(|d| match d {
                        Deletion::Deleted => Deletion::NotKept,
                        other => other,
                    })
                    .collect(),
            ),
            other => other,
        };
        self.replies.push_back((h.reply_to, reply));
    }

    /// Puts a static member's previous incarnation back, as Kafka does when the write of
    /// its replacement fails (unless the group moved on since).
    fn undo_replace(&mut self, now: Instant, name: &str, r: Replaced) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        if g.statics.get(&r.instance) != Some(&r.new_id) {
            return;
        }
        let Some(mut new) = g.members.remove(&r.new_id) else {
            return;
        };
        let mut old = r.old;
        old.session_deadline = now + old.session_timeout;
        old.awaiting_join = None;
        old.awaiting_sync = None;
        g.statics.insert(r.instance, old.id.clone());
        if g.leader.as_deref() == Some(r.new_id.as_str()) {
            g.leader = Some(old.id.clone());
        }
        if g.pending_sync.remove(&r.new_id) {
            g.pending_sync.insert(old.id.clone());
        }
        tracing::warn!(group = name, old = %old.id, new = %r.new_id, "the static member's new id could not be kept; reverted");
        g.members.insert(old.id.clone(), old);
        let join = new.awaiting_join.take();
        let sync = new.awaiting_sync.take();
        self.push(join, join_error(&r.new_id, ErrorCode::UNKNOWN_MEMBER_ID));
        self.push(sync, sync_error(ErrorCode::UNKNOWN_MEMBER_ID));
    }

    /// Whether what was last kept of `name` is a consumer group.
    fn kept_as_consumer(&self, name: &str) -> bool {
        self.durable
            .get(name)
            .and_then(|b| kept::Reader::open(b))
            .is_some_and(|(_, kind)| kind == kept::CONSUMER)
    }

    /// A group goes back to its last kept state (or away, when none was kept): the answers
    /// waiting for its later writes fail, and those writes no longer count. A consumer group
    /// coming back replaces a classic group a conversion made of it since
    /// ([`Self::handle_kept`]): the JoinGroup and SyncGroup calls that group holds are
    /// answered COORDINATOR_NOT_AVAILABLE, and their members, unknown to the consumer
    /// group, join again.
    fn revert_group(&mut self, now: Instant, name: &str) {
        self.inflight.retain(|_, (g, _)| g != name);
        let (mine, rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.group == name);
        self.held = rest;
        for h in mine {
            self.fail_held(now, h, true);
        }
        let back = self.durable.get(name).cloned();
        let decoded = back.as_deref().and_then(|b| self.decode(now, b));
        self.consumers.remove(name);
        self.consumers_kept.remove(name);
        match (decoded, back) {
            (Some(Restored::Consumer(g)), Some(bytes)) => {
                if let Some(classic) = self.groups.remove(name) {
                    for mut m in classic.members.into_values() {
                        let owed = m.take_waiting(ErrorCode::COORDINATOR_NOT_AVAILABLE);
                        self.replies.extend(owed);
                    }
                }
                self.consumers_kept.insert(name.to_owned(), bytes);
                self.consumers.insert(name.to_owned(), g);
            }
            (Some(Restored::Classic(g)), _) => {
                self.groups.insert(name.to_owned(), g);
            }
            _ => {}
        }
        tracing::warn!(
            group = name,
            "the consumer group's state could not be kept; back to what was kept"
        );
    }

    /// Writes `name` again after a backoff (doubling while its writes fail).
    fn schedule_retry(&mut self, now: Instant, name: &str) {
        let backoff = self
            .retries
            .get(name)
            .map_or(RETRY_MIN, |r| (r.backoff * 2).min(RETRY_MAX));
        self.retries.insert(
            name.to_owned(),
            Retry {
                due: Some(now + backoff),
                backoff,
                after: self.next_keep,
            },
        );
    }

    /// Writes again the groups whose retry is due: each one's state as it is now. A classic
    /// group in a rebalance is written when the rebalance ends, not before.
    fn retry_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due.is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let token = if let Some(g) = self.consumers.get(&name) {
                let state = consumer::encode_kept(g);
                self.consumers_kept.insert(name.clone(), state.clone());
                Some(self.push_keep(&name, Some(state)))
            } else if let Some(g) = self.groups.get(&name) {
                if matches!(g.state, GroupState::Stable | GroupState::Empty) {
                    self.keep_classic(&name)
                } else {
                    None
                }
            } else {
                Some(self.push_keep(&name, None))
            };
            match (token, self.retries.get_mut(&name)) {
                (Some(t), Some(r)) => {
                    r.due = None;
                    r.after = t;
                }
                _ => {
                    self.retries.remove(&name);
                }
            }
        }
    }

    /// The earliest retry.
    fn retry_deadline(&self) -> Option<Instant> {
        self.retries.values().filter_map(|r| r.due).min()
    }

    /// Answers `reply` once the latest write of `group` under way lands (the state it tells
    /// of is then kept), or at once when none is.
    fn answer_after_keep(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        group: &str,
        reply: GroupReply,
    ) {
        let latest = self
            .inflight
            .iter()
            .rev()
            .find(|(_, (g, _))| g == group)
            .map(|(t, _)| *t);
        match latest {
            Some(token) => self.held.push(Held {
                token,
                group: group.to_owned(),
                reply_to,
                reply,
                replaced: None,
                deadline: now + HOLD_TIMEOUT,
            }),
            None => self.replies.push_back((reply_to, reply)),
        }
    }

    /// Holds `reply` until the last write of `groups` handed out since the token `before`
    /// lands, as Kafka answers a LeaveGroup or a DeleteGroups once its records are
    /// committed; `Some(reply)` to answer at once when the call wrote nothing.
    fn answer_after_own_keep(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        groups: &[&str],
        before: u64,
        reply: GroupReply,
    ) -> Option<GroupReply> {
        let latest = self
            .inflight
            .range(before..)
            .rev()
            .find(|(_, (g, _))| groups.contains(&g.as_str()));
        let Some((&token, (group, _))) = latest else {
            return Some(reply);
        };
        self.held.push(Held {
            token,
            group: group.clone(),
            reply_to,
            reply,
            replaced: None,
            deadline: now + HOLD_TIMEOUT,
        });
        None
    }

    /// Hands out `group`'s classic state to keep; its token.
    fn keep_classic(&mut self, name: &str) -> Option<u64> {
        if !self.config.keep_state {
            return None;
        }
        let state = self.groups.get(name).map(kept::encode_classic);
        Some(self.push_keep(name, state))
    }

    /// The group is gone (deleted, forgotten, or of the other kind now).
    fn keep_gone(&mut self, name: &str) {
        if self.config.keep_state {
            self.consumers_kept.remove(name);
            self.push_keep(name, None);
        }
    }

    /// Hands out a consumer group's state when it changed since it was last handed out.
    fn keep_consumer(&mut self, name: &str) {
        if !self.config.keep_state {
            return;
        }
        let Some(g) = self.consumers.get(name) else {
            return;
        };
        let state = consumer::encode_kept(g);
        if self.consumers_kept.get(name) != Some(&state) {
            self.consumers_kept.insert(name.to_owned(), state.clone());
            self.push_keep(name, Some(state));
        }
    }

    fn push_keep(&mut self, name: &str, state: Option<Bytes>) -> u64 {
        let token = self.next_keep;
        self.next_keep += 1;
        self.inflight
            .insert(token, (name.to_owned(), state.clone()));
        self.keeps.push_back(KeepGroup {
            token,
            group: name.to_owned(),
            state,
        });
        token
    }

    /// Every group the coordinator holds, described as DescribeGroups would, by name.
    #[must_use]
    pub fn describe_all(&self) -> Vec<GroupDescription> {
        let mut names: Vec<&String> = self.groups.keys().chain(self.consumers.keys()).collect();
        names.sort_unstable();
        names.into_iter().filter_map(|n| self.describe(n)).collect()
    }

    /// What the coordinator holds now and did so far.
    #[must_use]
    pub fn stats(&self) -> GroupStats {
        let mut stats = GroupStats {
            groups: [
                (GroupState::Empty, 0),
                (GroupState::PreparingRebalance, 0),
                (GroupState::CompletingRebalance, 0),
                (GroupState::Stable, 0),
                (GroupState::Dead, 0),
                (GroupState::Assigning, 0),
                (GroupState::Reconciling, 0),
            ],
            members: 0,
            rebalances: self.rebalances,
        };
        for g in self.groups.values() {
            if let Some((_, n)) = stats.groups.iter_mut().find(|(s, _)| *s == g.state) {
                *n += 1;
            }
            stats.members += g.members.len() as u64;
        }
        for g in self.consumers.values() {
            let state = g.state();
            if let Some((_, n)) = stats.groups.iter_mut().find(|(s, _)| *s == state) {
                *n += 1;
            }
            stats.members += g.member_count() as u64;
        }
        stats
    }

    /// Handles a call at `now`; its reply (now or later) carries `reply_to`.
    pub fn handle(&mut self, now: Instant, reply_to: ReplyTo, call: GroupCall) {
        let group = call.group().map(str::to_owned);
        let reply = match call {
            GroupCall::Join(args) => self.join(now, reply_to, args),
            GroupCall::Sync(args) => self.sync(now, reply_to, args),
            GroupCall::Heartbeat(m) => Some(GroupReply::Heartbeat(self.heartbeat(now, &m))),
            GroupCall::Leave { group, members } => {
                let before = self.next_keep;
                let reply = GroupReply::Leave(self.leave(now, &group, &members));
                self.answer_after_own_keep(now, reply_to, &[group.as_str()], before, reply)
            }
            GroupCall::Commit(m) => Some(GroupReply::Commit(self.commit(now, &m))),
            GroupCall::List => Some(GroupReply::List(self.list())),
            GroupCall::Describe(groups) => Some(GroupReply::Describe(
                groups.iter().map(|g| self.describe(g)).collect(),
            )),
            GroupCall::Delete(groups) => {
                let before = self.next_keep;
                let reply = GroupReply::Delete(groups.iter().map(|g| self.delete(g)).collect());
                let names: Vec<&str> = groups.iter().map(String::as_str).collect();
                self.answer_after_own_keep(now, reply_to, &names, before, reply)
            }
            GroupCall::OffsetDelete { group, topics } => Some(GroupReply::OffsetDelete(
                self.offset_delete(&group, &topics),
            )),
            GroupCall::ConsumerHeartbeat(h) => {
                let name = h.group.clone();
                let r = self.consumer_heartbeat(now, h);
                // What the answer tells is kept before it leaves, as in Kafka; a refusal
                // changed nothing and leaves at once.
                self.keep_consumer(&name);
                let refused = r.error != OK;
                let reply = GroupReply::ConsumerHeartbeat(r);
                if refused {
                    Some(reply)
                } else {
                    self.answer_after_keep(now, reply_to, &name, reply);
                    None
                }
            }
            GroupCall::ConsumerDescribe(groups) => Some(GroupReply::ConsumerDescribe(
                groups.iter().map(|g| self.consumer_describe(g)).collect(),
            )),
            GroupCall::FetchCheck {
                group,
                member_id,
                member_epoch,
            } => Some(GroupReply::FetchCheck(self.consumer_fetch_check(
                &group,
                member_id.as_deref(),
                member_epoch,
            ))),
        };
        if let Some(reply) = reply {
            self.replies.push_back((reply_to, reply));
        }
        // A call may complete a rebalance that was only waiting for it.
        if let Some(group) = group {
            self.maybe_complete_join(now, &group);
        }
    }

    /// The next reply, if any.
    pub fn poll_reply(&mut self) -> Option<(ReplyTo, GroupReply)> {
        self.replies.pop_front()
    }

    /// When [`Coordinator::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held.iter().map(|h| h.deadline).min();
        let retry = self.retry_deadline().into_iter().chain(held).min();
        if self.stopped {
            return retry;
        }
        let expiry = self.config.empty_group_expiry;
        let classic = self.groups.values().filter_map(|g| g.next_deadline(expiry));
        let consumer = self
            .consumers
            .values()
            .filter_map(|g| g.next_deadline(expiry));
        classic.chain(consumer).chain(retry).min()
    }

    /// Acts on every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retry_due(now);
        let (late, rest): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.deadline <= now);
        self.held = rest;
        for h in late {
            tracing::warn!(group = %h.group, token = h.token, "the group's state is taking too long to keep; answering COORDINATOR_NOT_AVAILABLE");
            self.fail_held(now, h, false);
        }
        if self.stopped {
            return;
        }
        let names: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.next_deadline(self.config.empty_group_expiry)
                    .is_some_and(|d| d <= now)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.expire(now, &name);
        }
        let expiry = self.config.empty_group_expiry;
        let names: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, g)| g.next_deadline(expiry).is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.expire_consumer_group(now, &name);
            self.keep_consumer(&name);
        }
    }

    /// Checks what must always hold of the consumer groups (for tests and fuzzing): no
    /// partition owned by two members, disjoint targets, no member ahead of its group's
    /// assignment epoch.
    ///
    /// # Errors
    /// What does not hold.
    pub fn check_consumer_invariants(&self) -> Result<(), String> {
        for (name, g) in &self.consumers {
            consumer::check_invariants(g).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Every consumer group's epoch and its members' epochs (for tests and fuzzing), by
    /// group.
    #[must_use]
    pub fn consumer_epochs(&self) -> Vec<EpochsOf> {
        let mut out: Vec<EpochsOf> = self
            .consumers
            .iter()
            .map(|(n, g)| {
                let (epoch, members) = consumer::epochs(g);
                EpochsOf {
                    group: n.clone(),
                    epoch,
                    members,
                }
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// The gateway stops coordinating (it is shutting down): every JoinGroup and SyncGroup
    /// still waiting is answered NOT_COORDINATOR, as Kafka answers when a coordinator moves,
    /// so that members look for the coordinator again instead of waiting out a rebalance.
    /// From then on deadlines do not act (a session lapsing while the gateway stops removes
    /// no member from what is kept), except the retries of failed writes; answers waiting
    /// for a write still leave when it lands.
    pub fn shutdown(&mut self) {
        self.stopped = true;
        for g in self.groups.values_mut() {
            for m in g.members.values_mut() {
                self.replies
                    .extend(m.take_waiting(ErrorCode::NOT_COORDINATOR));
            }
        }
    }

    /// One group's membership, if the coordinator knows the group.
    #[must_use]
    pub fn snapshot(&self, group: &str) -> Option<GroupSnapshot> {
        let g = self.groups.get(group)?;
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.seq);
        Some(GroupSnapshot {
            state: g.state,
            generation: g.generation,
            leader: g.leader.clone(),
            protocol: g.protocol.clone(),
            members: members.into_iter().map(|m| m.id.clone()).collect(),
        })
    }

    fn new_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        self.counter += 1;
        let a = splitmix(self.seed ^ self.counter.rotate_left(17));
        let b = splitmix(a ^ self.counter);
        let prefix = instance_id.unwrap_or(client_id);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    fn push(&mut self, to: Option<ReplyTo>, reply: GroupReply) {
        if let Some(to) = to {
            self.replies.push_back((to, reply));
        }
    }

    fn join(&mut self, now: Instant, reply_to: ReplyTo, args: JoinArgs) -> Option<GroupReply> {
        if args.group.is_empty() {
            return Some(join_error(&args.member_id, ErrorCode::INVALID_GROUP_ID));
        }
        let session = millis(args.session_timeout_ms);
        if args.session_timeout_ms < 0
            || session < self.config.min_session_timeout
            || session > self.config.max_session_timeout
        {
            return Some(join_error(
                &args.member_id,
                ErrorCode::INVALID_SESSION_TIMEOUT,
            ));
        }
        if let Some(g) = self.consumers.get(&args.group) {
            // A group's protocol is fixed while it has members; an empty consumer group
            // becomes a classic one.
            if !g.is_empty() {
                return Some(join_error(
                    &args.member_id,
                    ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                ));
            }
            self.consumers.remove(&args.group);
            self.keep_gone(&args.group);
            tracing::info!(group = %args.group, "empty consumer group becomes a classic group");
        }
        if !self.groups.contains_key(&args.group) {
            if !args.member_id.is_empty() {
                return Some(join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID));
            }
            self.groups.insert(args.group.clone(), Group::new(now));
        }
        let group_name = args.group.clone();
        let (known, full) = {
            let g = &self.groups[&group_name];
            (
                g.members.contains_key(&args.member_id),
                g.members.len() >= self.config.max_group_size,
            )
        };
        if full && !known && !args.member_id.is_empty() && !self.is_pending(&args) {
            return Some(join_error(
                &args.member_id,
                ErrorCode::GROUP_MAX_SIZE_REACHED,
            ));
        }
        if args.member_id.is_empty() {
            if full {
                return Some(join_error("", ErrorCode::GROUP_MAX_SIZE_REACHED));
            }
            self.join_unknown(now, reply_to, args)
        } else {
            self.join_known(now, reply_to, args)
        }
    }

    fn is_pending(&self, args: &JoinArgs) -> bool {
        self.groups
            .get(&args.group)
            .is_some_and(|g| g.pending.contains_key(&args.member_id))
    }

    fn join_unknown(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        args: JoinArgs,
    ) -> Option<GroupReply> {
        let g = self.groups.get(&args.group)?;
        if !g.supports(&args.protocol_type, &args.protocols) {
            return Some(join_error("", ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        let new_id = self.new_member_id(&args.client_id, args.instance_id.as_deref());
        let old = args
            .instance_id
            .as_ref()
            .and_then(|i| self.groups[&args.group].statics.get(i).cloned());
        if let Some(old_id) = old {
            return self.replace_static(now, reply_to, args, &old_id, new_id);
        }
        if args.require_known_member_id && args.instance_id.is_none() {
            let session = millis(args.session_timeout_ms);
            let g = self.groups.get_mut(&args.group)?;
            g.pending.insert(new_id.clone(), now + session);
            return Some(join_error(&new_id, ErrorCode::MEMBER_ID_REQUIRED));
        }
        self.add_member(now, reply_to, new_id, args);
        None
    }

    /// A static member rejoins under a new member id: the old id is fenced, and a stable
    /// group keeps its assignment instead of rebalancing.
    fn replace_static(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        args: JoinArgs,
        old_id: &str,
        new_id: String,
    ) -> Option<GroupReply> {
        let g = self.groups.get_mut(&args.group)?;
        let mut member = g.members.remove(old_id)?;
        let fenced_join = member.awaiting_join.take();
        let fenced_sync = member.awaiting_sync.take();
        let before = member.clone();
        let protocols_changed = !member.same_protocols(&args.protocols);
        member.id.clone_from(&new_id);
        member.client_id = args.client_id;
        member.client_host = args.client_host;
        member.session_timeout = millis(args.session_timeout_ms);
        member.rebalance_timeout = millis(args.rebalance_timeout_ms);
        member.protocols = args.protocols;
        member.session_deadline = now + member.session_timeout;
        if let Some(i) = &args.instance_id {
            g.statics.insert(i.clone(), new_id.clone());
        }
        let was_leader = g.leader.as_deref() == Some(old_id);
        if was_leader {
            g.leader = Some(new_id.clone());
        }
        if g.pending_sync.remove(old_id) {
            g.pending_sync.insert(new_id.clone());
        }
        let state = g.state;
        g.members.insert(new_id.clone(), member);
        tracing::info!(group = %args.group, old = old_id, new = %new_id, "static member rejoined");
        self.push(
            fenced_join,
            join_error(old_id, ErrorCode::FENCED_INSTANCE_ID),
        );
        self.push(fenced_sync, sync_error(ErrorCode::FENCED_INSTANCE_ID));
        match state {
            // While the leader's assignment is awaited (or being kept) it names the old id:
            // as Kafka does, the group rebalances instead (the arm below), so that the new
            // id gets an assignment and what is kept never names the old one.
            GroupState::Stable if !protocols_changed => {
                // The new member id replaces the old in what is kept; as in Kafka, the
                // answer waits for that write, and a failed write undoes the replacement.
                let token = self.keep_classic(&args.group);
                let g = self.groups.get(&args.group)?;
                let mut result = g.join_result(&new_id);
                result.skip_assignment = was_leader;
                let reply = GroupReply::Join(result);
                match (token, args.instance_id) {
                    (Some(token), Some(instance)) => {
                        self.held.push(Held {
                            token,
                            group: args.group.clone(),
                            reply_to,
                            reply,
                            replaced: Some(Replaced {
                                instance,
                                old: before,
                                new_id,
                            }),
                            deadline: now + HOLD_TIMEOUT,
                        });
                        None
                    }
                    _ => Some(reply),
                }
            }
            _ => {
                let g = self.groups.get_mut(&args.group)?;
                if let Some(m) = g.members.get_mut(&new_id) {
                    m.awaiting_join = Some(reply_to);
                }
                self.maybe_rebalance(now, &args.group, "static member rejoined with new metadata");
                None
            }
        }
    }

    fn add_member(&mut self, now: Instant, reply_to: ReplyTo, id: String, args: JoinArgs) {
        let seq = {
            self.counter += 1;
            self.counter
        };
        let Some(g) = self.groups.get_mut(&args.group) else {
            return;
        };
        g.pending.remove(&id);
        if g.members.is_empty() {
            g.protocol_type = Some(args.protocol_type.clone());
        }
        let rebalance_timeout = millis(args.rebalance_timeout_ms);
        let member = Member {
            id: id.clone(),
            instance_id: args.instance_id.clone(),
            client_id: args.client_id,
            client_host: args.client_host,
            session_timeout: millis(args.session_timeout_ms),
            rebalance_timeout,
            protocols: args.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply_to),
            awaiting_sync: None,
            session_deadline: now + millis(args.session_timeout_ms),
            seq,
        };
        if let Some(i) = &args.instance_id {
            g.statics.insert(i.clone(), id.clone());
        }
        g.members.insert(id.clone(), member);
        // New members arriving during the initial delay push it out, within the rebalance
        // timeout, so that a group starting up settles in one generation.
        if g.state == GroupState::PreparingRebalance {
            if let (Some(nb), Some(rd)) = (g.join_not_before, g.rebalance_deadline) {
                if now < nb {
                    g.join_not_before = Some((now + self.config.initial_rebalance_delay).min(rd));
                }
            }
            if let Some(rd) = g.rebalance_deadline {
                g.rebalance_deadline = Some(rd.max(now + rebalance_timeout));
            }
        }
        tracing::debug!(group = %args.group, member = %id, "member added");
        self.maybe_rebalance(now, &args.group, "member joined");
    }

    fn join_known(
        &mut self,
        now: Instant,
        reply_to: ReplyTo,
        args: JoinArgs,
    ) -> Option<GroupReply> {
        let g = self.groups.get(&args.group)?;
        if !g.supports(&args.protocol_type, &args.protocols) {
            return Some(join_error(
                &args.member_id,
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
            ));
        }
        if g.pending.contains_key(&args.member_id) {
            if args.instance_id.is_some() {
                return Some(join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID));
            }
            let id = args.member_id.clone();
            self.add_member(now, reply_to, id, args);
            return None;
        }
        if g.is_fenced(&args.member_id, args.instance_id.as_deref()) {
            return Some(join_error(&args.member_id, ErrorCode::FENCED_INSTANCE_ID));
        }
        let instance_unknown = args
            .instance_id
            .as_ref()
            .is_some_and(|i| !g.statics.contains_key(i));
        let Some(member) = g.members.get(&args.member_id) else {
            return Some(join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID));
        };
        if instance_unknown {
            return Some(join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID));
        }
        let same = member.same_protocols(&args.protocols);
        let is_leader = g.leader.as_deref() == Some(args.member_id.as_str());
        match g.state {
            GroupState::CompletingRebalance if same => {
                return Some(GroupReply::Join(g.join_result(&args.member_id)));
            }
            GroupState::Stable if same && !is_leader => {
                return Some(GroupReply::Join(g.join_result(&args.member_id)));
            }
            // Assigning and Reconciling are consumer group states only.
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => {
                return Some(join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID));
            }
            _ => {}
        }
        // Rejoin for a rebalance (or to start one: the leader or new metadata).
        let g = self.groups.get_mut(&args.group)?;
        let previous = g.members.get_mut(&args.member_id).and_then(|m| {
            m.protocols = args.protocols;
            m.session_timeout = millis(args.session_timeout_ms);
            m.rebalance_timeout = millis(args.rebalance_timeout_ms);
            m.client_id = args.client_id;
            m.client_host = args.client_host;
            m.awaiting_join.replace(reply_to)
        });
        // A JoinGroup resent while the first still waits: the first is superseded.
        self.push(
            previous,
            join_error(&args.member_id, ErrorCode::UNKNOWN_MEMBER_ID),
        );
        self.maybe_rebalance(now, &args.group, "member rejoined");
        None
    }

    /// Starts a rebalance unless one is under way.
    fn maybe_rebalance(&mut self, now: Instant, name: &str, reason: &str) {
        let initial_delay = self.config.initial_rebalance_delay;
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        if !matches!(
            g.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            return;
        }
        // Followers waiting for an assignment must rejoin instead.
        let mut waiting = Vec::new();
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(to) = m.awaiting_sync.take() {
                    waiting.push(to);
                    // Answered, its session runs again from now, as Kafka's does: it was not
                    // counted while the member waited.
                    m.session_deadline = now + m.session_timeout;
                }
            }
        }
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        g.join_not_before =
            (g.state == GroupState::Empty).then(|| now + initial_delay.min(timeout));
        g.rebalance_deadline = Some(now + timeout);
        g.state = GroupState::PreparingRebalance;
        // An assignment still being kept is for a generation that is over.
        g.keeping = None;
        self.rebalances += 1;
        g.pending_sync.clear();
        g.sync_deadline = None;
        g.empty_since = None;
        tracing::info!(
            group = name,
            generation = g.generation,
            reason,
            "preparing to rebalance"
        );
        for to in waiting {
            self.push(Some(to), sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
        }
    }

    /// Removes a member (left, expired, not rejoined) and moves the group on.
    fn remove_member(&mut self, now: Instant, name: &str, member_id: &str, reason: &str) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        let Some(mut m) = g.members.remove(member_id) else {
            return;
        };
        if let Some(i) = &m.instance_id {
            if g.statics.get(i).map(String::as_str) == Some(member_id) {
                g.statics.remove(i);
            }
        }
        g.pending_sync.remove(member_id);
        let state = g.state;
        tracing::info!(group = name, member = member_id, reason, "member removed");
        let join = m.awaiting_join.take();
        let sync = m.awaiting_sync.take();
        self.push(join, join_error("", ErrorCode::UNKNOWN_MEMBER_ID));
        self.push(sync, sync_error(ErrorCode::UNKNOWN_MEMBER_ID));
        match state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_rebalance(now, name, reason);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, name),
            // Assigning and Reconciling are consumer group states only.
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => {}
        }
    }

    fn maybe_complete_join(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        if g.state != GroupState::PreparingRebalance {
            return;
        }
        // Once passed, the initial delay is no deadline any more.
        if g.join_not_before.is_some_and(|t| t <= now) {
            g.join_not_before = None;
        }
        let delayed = g.join_not_before.is_some();
        let expired = g.rebalance_deadline.is_some_and(|t| now >= t);
        if expired || (!delayed && g.all_joined()) {
            self.complete_join(now, name);
        }
    }

    fn complete_join(&mut self, now: Instant, name: &str) {
        // Dynamic members that did not rejoin in time are gone; static ones keep their place.
        let laggards: Vec<String> = match self.groups.get(name) {
            Some(g) => g
                .members
                .values()
                .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
                .map(|m| m.id.clone())
                .collect(),
            None => return,
        };
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        for id in laggards {
            tracing::info!(group = name, member = %id, "member did not rejoin in time; removed");
            g.members.remove(&id);
            g.pending_sync.remove(&id);
        }
        g.pending.clear();
        g.join_not_before = None;
        let joined: Vec<&Member> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .collect();
        if joined.is_empty() && !g.members.is_empty() {
            // Only absent static members: wait another round for them (never zero long, so
            // that time moves on between rounds).
            let timeout = g
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            g.rebalance_deadline = Some(now + timeout);
            return;
        }
        g.generation = g.generation.wrapping_add(1).max(1);
        g.rebalance_deadline = None;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            // Kafka keeps the protocol type of an empty group (ListGroups and DescribeGroups
            // still say `consumer`); only the protocol chosen for the generation goes.
            g.protocol = None;
            g.leader = None;
            g.empty_since = Some(now);
            tracing::info!(group = name, generation = g.generation, "group is empty");
            // Kafka writes the empty group's new generation too.
            self.keep_classic(name);
            return;
        }
        let leader_joined = g
            .leader
            .as_ref()
            .and_then(|l| g.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_joined {
            g.leader = joined.iter().min_by_key(|m| m.seq).map(|m| m.id.clone());
        }
        g.protocol = g.select_protocol();
        g.state = GroupState::CompletingRebalance;
        g.pending_sync = g.members.keys().cloned().collect();
        let sync_timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        g.sync_deadline = Some(now + sync_timeout);
        tracing::info!(
            group = name,
            generation = g.generation,
            members = g.members.len(),
            protocol = g.protocol.as_deref().unwrap_or(""),
            "group rebalanced; awaiting the leader's assignment"
        );
        let mut replies = Vec::new();
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let result = g.join_result(&id);
            if let Some(m) = g.members.get_mut(&id) {
                m.session_deadline = now + m.session_timeout;
                if let Some(to) = m.awaiting_join.take() {
                    replies.push((to, GroupReply::Join(result)));
                }
            }
        }
        self.replies.extend(replies);
    }

    fn sync(&mut self, now: Instant, reply_to: ReplyTo, args: SyncArgs) -> Option<GroupReply> {
        let m = &args.member;
        let Some(g) = self.groups.get_mut(&m.group) else {
            return Some(sync_error(if m.group.is_empty() {
                ErrorCode::INVALID_GROUP_ID
            } else {
                ErrorCode::UNKNOWN_MEMBER_ID
            }));
        };
        if g.is_fenced(&m.member_id, m.instance_id.as_deref()) {
            return Some(sync_error(ErrorCode::FENCED_INSTANCE_ID));
        }
        if !g.members.contains_key(&m.member_id) {
            return Some(sync_error(ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if m.generation != g.generation {
            return Some(sync_error(ErrorCode::ILLEGAL_GENERATION));
        }
        if args
            .protocol_type
            .as_ref()
            .is_some_and(|t| g.protocol_type.as_ref() != Some(t))
            || args
                .protocol_name
                .as_ref()
                .is_some_and(|n| g.protocol.as_ref() != Some(n))
        {
            return Some(sync_error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        let ok = |g: &Group, assignment: Bytes| {
            GroupReply::Sync(SyncResult {
                error: OK,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol.clone(),
                assignment,
            })
        };
        match g.state {
            // Assigning and Reconciling are consumer group states only.
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => Some(sync_error(ErrorCode::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => Some(sync_error(ErrorCode::REBALANCE_IN_PROGRESS)),
            GroupState::Stable => {
                g.pending_sync.remove(&m.member_id);
                if g.pending_sync.is_empty() {
                    g.sync_deadline = None;
                }
                let member = g.members.get_mut(&m.member_id)?;
                member.session_deadline = now + member.session_timeout;
                let assignment = member.assignment.clone();
                Some(ok(g, assignment))
            }
            GroupState::CompletingRebalance => {
                g.pending_sync.remove(&m.member_id);
                let member = g.members.get_mut(&m.member_id)?;
                let previous = member.awaiting_sync.replace(reply_to);
                if g.leader.as_deref() != Some(m.member_id.as_str()) {
                    self.push(previous, sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
                    return None;
                }
                let mut assignments: HashMap<String, Bytes> =
                    args.assignments.into_iter().collect();
                for member in g.members.values_mut() {
                    member.assignment = assignments.remove(&member.id).unwrap_or_default();
                }
                let name = m.group.clone();
                self.push(previous, sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
                // As Kafka's coordinator, the members are answered once the generation's
                // assignment is kept (when the state is kept at all).
                match self.keep_classic(&name) {
                    Some(token) => {
                        if let Some(g) = self.groups.get_mut(&name) {
                            g.keeping = Some(token);
                        }
                    }
                    None => self.complete_sync(now, &name),
                }
                None
            }
        }
    }

    /// The leader's assignment is set (and kept): the group is stable, and every member
    /// waiting in SyncGroup gets its assignment.
    fn complete_sync(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        g.keeping = None;
        g.state = GroupState::Stable;
        if g.pending_sync.is_empty() {
            g.sync_deadline = None;
        }
        tracing::info!(
            group = name,
            generation = g.generation,
            "assignment received from the leader; group is stable"
        );
        let (protocol_type, protocol_name) = (g.protocol_type.clone(), g.protocol.clone());
        let mut replies = Vec::new();
        for member in g.members.values_mut() {
            if let Some(to) = member.awaiting_sync.take() {
                member.session_deadline = now + member.session_timeout;
                replies.push((
                    to,
                    GroupReply::Sync(SyncResult {
                        error: OK,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    }),
                ));
            }
        }
        self.replies.extend(replies);
    }

    /// The leader's assignment could not be kept: the members waiting in SyncGroup are
    /// told COORDINATOR_NOT_AVAILABLE (Kafka's answer to a failed write) and the group
    /// rebalances.
    fn fail_sync(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        g.keeping = None;
        let mut owed = Vec::new();
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(to) = m.awaiting_sync.take() {
                m.session_deadline = now + m.session_timeout;
                owed.push(to);
            }
        }
        tracing::warn!(
            group = name,
            generation = g.generation,
            "the group's assignment could not be kept; rebalancing"
        );
        for to in owed {
            self.push(Some(to), sync_error(ErrorCode::COORDINATOR_NOT_AVAILABLE));
        }
        self.maybe_rebalance(now, name, "the assignment could not be kept");
    }

    fn heartbeat(&mut self, now: Instant, m: &MemberRef) -> ErrorCode {
        if m.group.is_empty() {
            return ErrorCode::INVALID_GROUP_ID;
        }
        let Some(g) = self.groups.get_mut(&m.group) else {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        };
        if g.is_fenced(&m.member_id, m.instance_id.as_deref()) {
            return ErrorCode::FENCED_INSTANCE_ID;
        }
        let Some(member) = g.members.get_mut(&m.member_id) else {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        };
        if m.generation != g.generation {
            return ErrorCode::ILLEGAL_GENERATION;
        }
        match g.state {
            // Assigning and Reconciling are consumer group states only.
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => ErrorCode::UNKNOWN_MEMBER_ID,
            GroupState::CompletingRebalance => ErrorCode::REBALANCE_IN_PROGRESS,
            GroupState::PreparingRebalance => {
                member.session_deadline = now + member.session_timeout;
                ErrorCode::REBALANCE_IN_PROGRESS
            }
            GroupState::Stable => {
                member.session_deadline = now + member.session_timeout;
                OK
            }
        }
    }

    fn leave(
        &mut self,
        now: Instant,
        name: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        if name.is_empty() {
            return Err(ErrorCode::INVALID_GROUP_ID);
        }
        if !self.groups.contains_key(name) {
            return Ok(vec![ErrorCode::UNKNOWN_MEMBER_ID; members.len()]);
        }
        let mut codes = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let Some(g) = self.groups.get_mut(name) else {
                codes.push(ErrorCode::UNKNOWN_MEMBER_ID);
                continue;
            };
            if !member_id.is_empty() && g.is_fenced(member_id, instance_id.as_deref()) {
                codes.push(ErrorCode::FENCED_INSTANCE_ID);
                continue;
            }
            if g.pending.remove(member_id).is_some() {
                codes.push(OK);
                self.maybe_complete_join(now, name);
                continue;
            }
            let target = match instance_id.as_ref().and_then(|i| g.statics.get(i)) {
                Some(id) => Some(id.clone()),
                None => g.members.contains_key(member_id).then(|| member_id.clone()),
            };
            match target {
                Some(id) => {
                    self.remove_member(now, name, &id, "left the group");
                    codes.push(OK);
                }
                None => codes.push(ErrorCode::UNKNOWN_MEMBER_ID),
            }
        }
        Ok(codes)
    }

    fn commit(&mut self, now: Instant, m: &MemberRef) -> ErrorCode {
        if let Some(code) = self.consumer_commit(&m.group, &m.member_id, m.generation) {
            return code;
        }
        let Some(g) = self.groups.get_mut(&m.group) else {
            if m.generation < 0 {
                // Offsets kept for a consumer that manages its own assignment.
                self.groups.insert(m.group.clone(), Group::new(now));
                return OK;
            }
            return ErrorCode::ILLEGAL_GENERATION;
        };
        if g.state == GroupState::Dead {
            return ErrorCode::COORDINATOR_NOT_AVAILABLE;
        }
        if g.is_fenced(&m.member_id, m.instance_id.as_deref()) {
            return ErrorCode::FENCED_INSTANCE_ID;
        }
        if m.generation < 0 && g.state == GroupState::Empty {
            return OK;
        }
        let Some(member) = g.members.get_mut(&m.member_id) else {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        };
        if m.generation != g.generation {
            return ErrorCode::ILLEGAL_GENERATION;
        }
        match g.state {
            // Commits during PreparingRebalance are how members commit on revocation.
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.session_deadline = now + member.session_timeout;
                OK
            }
            GroupState::CompletingRebalance => ErrorCode::REBALANCE_IN_PROGRESS,
            // Assigning and Reconciling are consumer group states only.
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => ErrorCode::UNKNOWN_MEMBER_ID,
        }
    }

    fn list(&self) -> Vec<GroupOverview> {
        let mut groups: Vec<GroupOverview> = self
            .groups
            .iter()
            .map(|(name, g)| GroupOverview {
                group: name.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
                kind: GroupKind::Classic,
            })
            .chain(self.consumer_overviews())
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }

    fn describe(&self, name: &str) -> Option<GroupDescription> {
        if let Some(d) = self.consumer_as_classic_description(name) {
            return Some(d);
        }
        let g = self.groups.get(name)?;
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.seq);
        Some(GroupDescription {
            group: name.to_owned(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    fn delete(&mut self, name: &str) -> Deletion {
        if let Some(d) = self.consumer_delete(name) {
            return d;
        }
        match self.groups.get(name) {
            None => Deletion::Unknown,
            Some(g) if g.state == GroupState::Empty => {
                self.groups.remove(name);
                self.keep_gone(name);
                tracing::info!(group = name, "group deleted");
                Deletion::Deleted
            }
            Some(_) => Deletion::NonEmpty,
        }
    }

    fn offset_delete(&self, name: &str, topics: &[String]) -> OffsetDeletion {
        if let Some(d) = self.consumer_offset_delete(name, topics) {
            return d;
        }
        let Some(g) = self.groups.get(name) else {
            return OffsetDeletion::Unknown;
        };
        if g.state == GroupState::Empty {
            return OffsetDeletion::Subscribed(vec![false; topics.len()]);
        }
        if g.protocol_type.as_deref() != Some("consumer") {
            return OffsetDeletion::Refused(ErrorCode::NON_EMPTY_GROUP);
        }
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
        for m in g.members.values() {
            let metadata = if protocol.is_empty() {
                m.protocols
                    .first()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default()
            } else {
                m.metadata(&protocol)
            };
            subscribed.extend(subscription_topics(&metadata));
        }
        OffsetDeletion::Subscribed(topics.iter().map(|t| subscribed.contains(t)).collect())
    }

    fn expire(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        // Members whose session lapsed (those awaiting an answer are kept alive).
        let lapsed: Vec<String> = g
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.session_deadline <= now
            })
            .map(|m| m.id.clone())
            .collect();
        let pending: Vec<String> = g
            .pending
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let sync_lapsed = g.sync_deadline.is_some_and(|t| t <= now);
        let forget = g.state == GroupState::Empty
            && g.empty_since
                .is_some_and(|t| now >= t + self.config.empty_group_expiry);
        if forget {
            tracing::debug!(group = name, "forgetting empty group");
            self.groups.remove(name);
            self.keep_gone(name);
            return;
        }
        for id in pending {
            if let Some(g) = self.groups.get_mut(name) {
                g.pending.remove(&id);
            }
        }
        for id in lapsed {
            self.remove_member(now, name, &id, "session timed out");
        }
        if sync_lapsed {
            let missing: Vec<String> = match self.groups.get_mut(name) {
                Some(g) => {
                    g.sync_deadline = None;
                    std::mem::take(&mut g.pending_sync).into_iter().collect()
                }
                None => Vec::new(),
            };
            for id in missing {
                self.remove_member(now, name, &id, "did not sync in time");
            }
        }
        self.maybe_complete_join(now, name);
        if let Some(g) = self.groups.get_mut(name) {
            if g.state == GroupState::Empty && g.empty_since.is_none() {
                g.empty_since = Some(now);
            }
        }
    }
}

/// The topics of a consumer protocol subscription (`ConsumerProtocolSubscription`, every
/// version starts with the version and the topic list); empty when it does not parse.
fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let mut rest = metadata.get(2..).unwrap_or_default();
    let Some((count, tail)) = rest.split_first_chunk::<4>() else {
        return topics;
    };
    rest = tail;
    let count = i32::from_be_bytes(*count);
    for _ in 0..count.max(0) {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::try_from(i16::from_be_bytes(*len)).unwrap_or(0);
        let Some(name) = tail.get(..len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        rest = &tail[len..];
    }
    topics
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod consumer_tests;
