//! Authorization: what a principal may do, in Iggy's permission model (global, per stream,
//! per topic), so that a Kafka client is held to the permissions an Iggy user of the same
//! name would have.
//!
//! Each Kafka operation needs one Iggy permission ([`Action`]; `docs/SECURITY.md` has the
//! table). The handlers ask [`Authorizer::allows`] and answer a refusal with the code Kafka
//! puts there (TOPIC_, GROUP_, TRANSACTIONAL_ID_ or CLUSTER_AUTHORIZATION_FAILED). Without an authorizer every
//! request is allowed, as on a Kafka broker without one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// What a request needs, on which Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Append to the topic (Produce): Iggy's `send_messages`.
    Send(&'a str),
    /// Read the topic's records or offsets (Fetch, ListOffsets, OffsetForLeaderEpoch,
    /// committed offsets): Iggy's `poll_messages`.
    Poll(&'a str),
    /// See the topic (Metadata, DescribeConfigs, DescribeProducers, ...): Iggy's get_topic,
    /// or permission to send to it (Kafka's WRITE implies DESCRIBE).
    Describe(&'a str),
    /// Create the topic (CreateTopics, auto-creation): Iggy's `manage_topics` on its stream.
    Create(&'a str),
    /// Change or delete the topic (DeleteTopics, CreatePartitions, AlterConfigs,
    /// DeleteRecords): Iggy's `manage_topic`.
    Manage(&'a str),
    /// Cluster-wide reads (DescribeCluster, DescribeLogDirs, broker configs, reassignments):
    /// Iggy's `read_servers`.
    DescribeCluster,
    /// Cluster-wide changes (broker configs, elections, reassignments): `manage_servers`.
    AlterCluster,
    /// Kafka's READ on a consumer group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
    /// ConsumerGroupHeartbeat, OffsetCommit, TxnOffsetCommit, AddOffsetsToTxn): polling
    /// some topic. Iggy has no permission for Kafka's groups, which are not tied to a topic;
    /// Iggy's own consumer groups are open to whoever may read their topic, so a Kafka group
    /// is open to whoever may read some topic.
    ReadGroup(&'a str),
    /// Kafka's DESCRIBE on a consumer group (DescribeGroups, ConsumerGroupDescribe,
    /// OffsetFetch, FindCoordinator, ListGroups' filter): as [`Action::ReadGroup`], which
    /// implies it in Kafka.
    DescribeGroup(&'a str),
    /// Kafka's DELETE on consumer groups (DeleteGroups, OffsetDelete): `manage_topics` (or
    /// `manage_streams`) globally.
    DeleteGroups,
    /// Kafka's WRITE on a transactional id (InitProducerId with one, AddPartitionsToTxn,
    /// AddOffsetsToTxn, EndTxn, TxnOffsetCommit, a Produce of transactional batches):
    /// sending to some topic. Iggy has no permission for transactional ids, which belong to
    /// no topic; a transaction only ever writes, so it is open to whoever may send somewhere
    /// (what it writes is still checked topic by topic).
    WriteTransactionalId(&'a str),
    /// Kafka's DESCRIBE on a transactional id (FindCoordinator for a transaction,
    /// DescribeTransactions, ListTransactions' filter): as
    /// [`Action::WriteTransactionalId`], which implies it in Kafka.
    DescribeTransactionalId(&'a str),
    /// Kafka's IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (InitProducerId
    /// without a transactional id): sending to some topic.
    IdempotentWrite,
    /// Read SCRAM credentials: `read_users`.
    DescribeUsers,
    /// Change SCRAM credentials: `manage_users`.
    ManageUsers,
}

/// Kafka's ACL operations (`AclOperation` codes) as bits of an `authorized_operations`
/// field, which Kafka fills with what its authorizer allows, operation by operation.
mod op {
    pub(super) const READ: i32 = 1 << 3;
    pub(super) const WRITE: i32 = 1 << 4;
    pub(super) const CREATE: i32 = 1 << 5;
    pub(super) const DELETE: i32 = 1 << 6;
    pub(super) const ALTER: i32 = 1 << 7;
    pub(super) const DESCRIBE: i32 = 1 << 8;
    pub(super) const CLUSTER_ACTION: i32 = 1 << 9;
    pub(super) const DESCRIBE_CONFIGS: i32 = 1 << 10;
    pub(super) const ALTER_CONFIGS: i32 = 1 << 11;
    pub(super) const IDEMPOTENT_WRITE: i32 = 1 << 12;
}

/// The operations Kafka supports on a topic (`AclEntry.supportedOperations`) that `allows`
/// permits on `topic`, as `topic_authorized_operations` bits. Without authorization, all.
pub fn topic_operations(allows: impl Fn(Action<'_>) -> bool, topic: &str) -> i32 {
    [
        (op::READ, Action::Poll(topic)),
        (op::WRITE, Action::Send(topic)),
        (op::CREATE, Action::Create(topic)),
        (op::DELETE, Action::Manage(topic)),
        (op::ALTER, Action::Manage(topic)),
        (op::DESCRIBE, Action::Describe(topic)),
        (op::DESCRIBE_CONFIGS, Action::Describe(topic)),
        (op::ALTER_CONFIGS, Action::Manage(topic)),
    ]
    .into_iter()
    .filter(|&(_, action)| allows(action))
    .fold(0, |bits, (bit, _)| bits | bit)
}

/// The operations Kafka supports on the cluster that `allows` permits, as
/// `cluster_authorized_operations` bits. CREATE is creating topics in the gateway's stream;
/// IDEMPOTENT_WRITE is every principal's (InitProducerId without a transactional id is not
/// checked, as Iggy has no such permission).
pub fn cluster_operations(allows: impl Fn(Action<'_>) -> bool) -> i32 {
    [
        (op::CREATE, Action::Create("")),
        (op::CLUSTER_ACTION, Action::AlterCluster),
        (op::DESCRIBE_CONFIGS, Action::DescribeCluster),
        (op::ALTER_CONFIGS, Action::AlterCluster),
        (op::ALTER, Action::AlterCluster),
        (op::DESCRIBE, Action::DescribeCluster),
    ]
    .into_iter()
    .filter(|&(_, action)| allows(action))
    .fold(op::IDEMPOTENT_WRITE, |bits, (bit, _)| bits | bit)
}

/// The operations Kafka supports on a group (READ, DESCRIBE, DELETE) that `allows` permits
/// on `group`, as `authorized_operations` bits. Without authorization, all.
pub fn group_operations(allows: impl Fn(Action<'_>) -> bool, group: &str) -> i32 {
    [
        (op::READ, Action::ReadGroup(group)),
        (op::DESCRIBE, Action::DescribeGroup(group)),
        (op::DELETE, Action::DeleteGroups),
    ]
    .into_iter()
    .filter(|&(_, action)| allows(action))
    .fold(0, |bits, (bit, _)| bits | bit)
}

/// Decides what principals may do. `principal` is `None` for a client that did not
/// authenticate (Kafka's ANONYMOUS).
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Whether `principal` may do `action`.
    fn allows(&self, principal: Option<&str>, action: Action<'_>) -> bool;

    /// How often a connection asks the backend for its principal's permissions
    /// ([`crate::backend::Command::UserPermissions`]) and tells them with
    /// [`Authorizer::learned`]; `None` when the authorizer knows them itself.
    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    /// What the backend said `principal` may do (`None`: no such user, so nothing).
    fn learned(&self, _principal: &str, _permissions: Option<Permissions>) {}

    /// The principals whose permissions it knows now (for DescribeAcls's view), `None`
    /// standing for clients that did not authenticate.
    fn principals(&self) -> Vec<Option<String>> {
        Vec::new()
    }
}

/// Iggy's global permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct GlobalPermissions {
    /// Manage the servers.
    pub manage_servers: bool,
    /// Read the servers' state.
    pub read_servers: bool,
    /// Manage users.
    pub manage_users: bool,
    /// Read users.
    pub read_users: bool,
    /// Manage every stream (and so every topic).
    pub manage_streams: bool,
    /// Read every stream.
    pub read_streams: bool,
    /// Manage every topic.
    pub manage_topics: bool,
    /// Read every topic.
    pub read_topics: bool,
    /// Poll from every topic.
    pub poll_messages: bool,
    /// Send to every topic.
    pub send_messages: bool,
}

/// Iggy's permissions on one stream, and on some of its topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct StreamPermissions {
    /// Manage the stream and its topics.
    pub manage_stream: bool,
    /// Read the stream and its topics.
    pub read_stream: bool,
    /// Manage the stream's topics.
    pub manage_topics: bool,
    /// Read the stream's topics.
    pub read_topics: bool,
    /// Poll from the stream's topics.
    pub poll_messages: bool,
    /// Send to the stream's topics.
    pub send_messages: bool,
    /// Per Iggy topic name.
    pub topics: BTreeMap<String, TopicPermissions>,
}

/// Iggy's permissions on one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicPermissions {
    /// Manage the topic.
    pub manage_topic: bool,
    /// Read the topic.
    pub read_topic: bool,
    /// Poll from the topic.
    pub poll_messages: bool,
    /// Send to the topic.
    pub send_messages: bool,
}

/// One user's permissions, Iggy's model with streams and topics named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Over everything.
    pub global: GlobalPermissions,
    /// Per Iggy stream name.
    pub streams: BTreeMap<String, StreamPermissions>,
}

/// Where a Kafka topic lives in Iggy: its stream and topic names.
pub type Place = (String, String);

impl Permissions {
    fn stream(&self, stream: &str) -> Option<&StreamPermissions> {
        self.streams.get(stream)
    }

    fn topic(&self, stream: &str, topic: &str) -> Option<&TopicPermissions> {
        self.stream(stream)?.topics.get(topic)
    }

    /// Iggy's `poll_messages`: whoever may read the topic, and whoever may poll at any
    /// level (inheritance: manage_streams → read_streams → read_topics → poll_messages).
    #[must_use]
    pub fn may_poll(&self, (stream, topic): (&str, &str)) -> bool {
        self.may_read_topic((stream, topic))
            || self.global.poll_messages
            || self.stream(stream).is_some_and(|s| s.poll_messages)
            || self.topic(stream, topic).is_some_and(|t| t.poll_messages)
    }

    /// Whether [`Permissions::may_poll`] holds for at least one topic of some stream: a
    /// global permission that implies polling, or one on any stream or topic.
    #[must_use]
    pub fn may_poll_some_topic(&self) -> bool {
        let g = &self.global;
        g.poll_messages
            || g.read_topics
            || g.read_streams
            || g.manage_topics
            || g.manage_streams
            || self.streams.values().any(|s| {
                s.poll_messages
                    || s.read_topics
                    || s.read_stream
                    || s.manage_topics
                    || s.manage_stream
                    || s.topics
                        .values()
                        .any(|t| t.poll_messages || t.read_topic || t.manage_topic)
            })
    }

    /// Whether [`Permissions::may_send`] holds for at least one topic of some stream: a
    /// global permission that implies sending, or one on any stream or topic.
    #[must_use]
    pub fn may_send_some_topic(&self) -> bool {
        let g = &self.global;
        g.send_messages
            || g.manage_topics
            || g.manage_streams
            || self.streams.values().any(|s| {
                s.send_messages
                    || s.manage_topics
                    || s.manage_stream
                    || s.topics.values().any(|t| t.send_messages || t.manage_topic)
            })
    }

    /// Iggy's `append_messages`: whoever may manage the topic, and whoever may send at any
    /// level (inheritance: manage_streams → manage_topics → send_messages).
    #[must_use]
    pub fn may_send(&self, (stream, topic): (&str, &str)) -> bool {
        self.may_manage_topic((stream, topic))
            || self.global.send_messages
            || self.stream(stream).is_some_and(|s| s.send_messages)
            || self.topic(stream, topic).is_some_and(|t| t.send_messages)
    }

    /// Iggy's `get_topic`: manage_streams → read_streams → read_topics.
    #[must_use]
    pub fn may_read_topic(&self, (stream, topic): (&str, &str)) -> bool {
        let g = &self.global;
        g.read_streams
            || g.manage_streams
            || g.manage_topics
            || g.read_topics
            || self.stream(stream).is_some_and(|s| {
                s.manage_stream || s.read_stream || s.manage_topics || s.read_topics
            })
            || self
                .topic(stream, topic)
                .is_some_and(|t| t.manage_topic || t.read_topic)
    }

    /// Iggy's `create_topic` on the stream: manage_streams → manage_topics.
    #[must_use]
    pub fn may_create_topic(&self, stream: &str) -> bool {
        let g = &self.global;
        g.manage_streams
            || g.manage_topics
            || self
                .stream(stream)
                .is_some_and(|s| s.manage_stream || s.manage_topics)
    }

    /// Iggy's `manage_topic`: manage_streams → manage_topics.
    #[must_use]
    pub fn may_manage_topic(&self, (stream, topic): (&str, &str)) -> bool {
        self.may_create_topic(stream) || self.topic(stream, topic).is_some_and(|t| t.manage_topic)
    }
}

type Locate = dyn Fn(&str) -> Place + Send + Sync;

/// An [`Authorizer`] over permissions the gateway holds: each principal's, super users
/// (allowed everything) and where each Kafka topic lives in Iggy.
pub struct PermissionAuthorizer {
    users: RwLock<BTreeMap<String, Arc<Permissions>>>,
    /// What a client without a principal may do (Kafka's ANONYMOUS).
    anonymous: Option<Arc<Permissions>>,
    super_users: Vec<String>,
    locate: Box<Locate>,
    /// Set when the permissions come from the backend: how often connections ask again.
    refresh: Option<Duration>,
}

impl fmt::Debug for PermissionAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermissionAuthorizer")
            .field("super_users", &self.super_users)
            .finish_non_exhaustive()
    }
}

impl PermissionAuthorizer {
    /// An authorizer with no user's permissions yet; `locate` tells where a Kafka topic
    /// lives in Iggy.
    pub fn new(
        super_users: Vec<String>,
        locate: impl Fn(&str) -> Place + Send + Sync + 'static,
    ) -> Self {
        Self {
            users: RwLock::default(),
            anonymous: None,
            super_users,
            locate: Box::new(locate),
            refresh: None,
        }
    }

    /// Takes the permissions from the backend (Iggy's users), asked again every `every`
    /// by each connection, rather than from [`PermissionAuthorizer::set`].
    #[must_use]
    pub fn from_backend(mut self, every: Duration) -> Self {
        self.refresh = Some(every);
        self
    }

    /// Sets what clients without a principal may do.
    #[must_use]
    pub fn with_anonymous(mut self, permissions: Permissions) -> Self {
        self.anonymous = Some(Arc::new(permissions));
        self
    }

    /// Sets, or replaces, `user`'s permissions.
    pub fn set(&self, user: &str, permissions: Permissions) {
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.to_owned(), Arc::new(permissions));
    }

    /// `user`'s permissions, if known.
    #[must_use]
    pub fn permissions(&self, user: &str) -> Option<Arc<Permissions>> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .cloned()
    }
}

impl Authorizer for PermissionAuthorizer {
    fn refresh_interval(&self) -> Option<Duration> {
        self.refresh
    }

    fn principals(&self) -> Vec<Option<String>> {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Option<String>> = users.keys().cloned().map(Some).collect();
        all.extend(
            self.super_users
                .iter()
                .filter(|s| !users.contains_key(*s))
                .cloned()
                .map(Some),
        );
        if self.anonymous.is_some() {
            all.push(None);
        }
        all
    }

    fn learned(&self, principal: &str, permissions: Option<Permissions>) {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        match permissions {
            Some(p) => {
                users.insert(principal.to_owned(), Arc::new(p));
            }
            None => {
                users.remove(principal);
            }
        }
    }

    fn allows(&self, principal: Option<&str>, action: Action<'_>) -> bool {
        if principal.is_some_and(|p| self.super_users.iter().any(|s| s == p)) {
            return true;
        }
        let permissions = match principal {
            Some(p) => self.permissions(p),
            None => self.anonymous.clone(),
        };
        let Some(p) = permissions else {
            return false;
        };
        let place = |topic: &str| (self.locate)(topic);
        let g = &p.global;
        match action {
            Action::Send(t) => {
                let (s, t) = place(t);
                p.may_send((&s, &t))
            }
            Action::Poll(t) => {
                let (s, t) = place(t);
                p.may_poll((&s, &t))
            }
            Action::Describe(t) => {
                // Kafka's READ and WRITE imply DESCRIBE: a producer that may only send must
                // still find its topic's partitions in Metadata.
                let (s, t) = place(t);
                p.may_read_topic((&s, &t)) || p.may_send((&s, &t))
            }
            Action::Create(t) => p.may_create_topic(&place(t).0),
            Action::Manage(t) => {
                let (s, t) = place(t);
                p.may_manage_topic((&s, &t))
            }
            Action::DescribeCluster => g.read_servers || g.manage_servers,
            Action::AlterCluster => g.manage_servers,
            Action::ReadGroup(_) | Action::DescribeGroup(_) => p.may_poll_some_topic(),
            Action::DeleteGroups => g.manage_topics || g.manage_streams,
            Action::WriteTransactionalId(_)
            | Action::DescribeTransactionalId(_)
            | Action::IdempotentWrite => p.may_send_some_topic(),
            Action::DescribeUsers => g.read_users || g.manage_users,
            Action::ManageUsers => g.manage_users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer() -> PermissionAuthorizer {
        let a = PermissionAuthorizer::new(vec!["root".into()], |t: &str| match t.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => ("kafka".to_owned(), t.to_owned()),
        });
        let mut reader = Permissions::default();
        reader.streams.insert(
            "kafka".into(),
            StreamPermissions {
                topics: [(
                    "orders".to_owned(),
                    TopicPermissions {
                        read_topic: true,
                        ..TopicPermissions::default()
                    },
                )]
                .into(),
                ..StreamPermissions::default()
            },
        );
        a.set("reader", reader);
        let mut writer = Permissions::default();
        writer.streams.insert(
            "shop".into(),
            StreamPermissions {
                send_messages: true,
                manage_topics: false,
                ..StreamPermissions::default()
            },
        );
        a.set("writer", writer);
        let mut admin = Permissions::default();
        admin.global.manage_streams = true;
        a.set("admin", admin);
        a
    }

    #[test]
    fn iggys_inheritance_decides() {
        let a = authorizer();
        // read_topic on one topic: poll and describe it, nothing else.
        assert!(a.allows(Some("reader"), Action::Poll("orders")));
        assert!(a.allows(Some("reader"), Action::Describe("orders")));
        assert!(!a.allows(Some("reader"), Action::Send("orders")));
        assert!(!a.allows(Some("reader"), Action::Poll("payments")));
        assert!(!a.allows(Some("reader"), Action::Create("new")));
        // send on a stream: every topic of that stream, and only writing.
        assert!(a.allows(Some("writer"), Action::Send("shop.anything")));
        assert!(!a.allows(Some("writer"), Action::Send("orders")));
        assert!(!a.allows(Some("writer"), Action::Poll("shop.anything")));
        // manage_streams: everything on topics, but not the servers or users.
        for action in [
            Action::Send("x"),
            Action::Poll("x"),
            Action::Create("x"),
            Action::Manage("x"),
            Action::DeleteGroups,
        ] {
            assert!(a.allows(Some("admin"), action), "{action:?}");
        }
        assert!(!a.allows(Some("admin"), Action::DescribeCluster));
        // Transactional ids: whoever may send to some topic, whichever id.
        for action in [
            Action::WriteTransactionalId("tx"),
            Action::DescribeTransactionalId("tx"),
        ] {
            assert!(a.allows(Some("writer"), action), "{action:?}");
            assert!(a.allows(Some("admin"), action), "{action:?}");
            assert!(!a.allows(Some("reader"), action), "{action:?}");
        }
        assert!(!a.allows(Some("admin"), Action::ManageUsers));
        // Super users may do anything; unknown users and ANONYMOUS nothing.
        assert!(a.allows(Some("root"), Action::AlterCluster));
        assert!(!a.allows(Some("stranger"), Action::Describe("orders")));
        assert!(!a.allows(None, Action::Describe("orders")));
        let mut anyone = Permissions::default();
        anyone.global.read_topics = true;
        let a = authorizer().with_anonymous(anyone);
        assert!(a.allows(None, Action::Poll("orders")));
        assert!(!a.allows(None, Action::Send("orders")));
    }
}
