//! An in-process stand-in for an Iggy server, speaking the wire protocol through Iggy's own
//! codec, so that what is built on this client is tested byte for byte without a server. It
//! keeps what a server keeps (streams, their topics, partitions of stored batches, consumer
//! offsets) and can be told to fail the next request, to fault the next poll as Iggy
//! answers a read that failed inside it, to hold appends prepared and not committed yet, or
//! to play a node that is behind (its reads stop short of what the cluster committed); a
//! [`super::Pool`] drops connections.

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, BytesMut};
use iggy_binary_protocol::batch::{decode_batch_slice, BatchHeader, BATCH_HEADER_SIZE};
use iggy_binary_protocol::codes::{
    CREATE_PARTITIONS_CODE, CREATE_STREAM_CODE, CREATE_TOPIC_CODE, DELETE_CONSUMER_OFFSET_CODE,
    DELETE_TOPIC_CODE, GET_CLUSTER_METADATA_CODE, GET_STREAM_CODE, GET_TOPIC_CODE, GET_USER_CODE,
    POLL_MESSAGES_CODE, SEND_MESSAGES_CODE, STORE_CONSUMER_OFFSET_CODE, UPDATE_TOPIC_CODE,
};
use iggy_binary_protocol::primitives::permissions::WirePermissions;
use iggy_binary_protocol::primitives::user_headers::encode_user_headers;
use iggy_binary_protocol::requests::consumer_offsets::{
    DeleteConsumerOffsetRequest, StoreConsumerOffsetRequest,
};
use iggy_binary_protocol::requests::messages::send_messages::SendMessagesHeader;
use iggy_binary_protocol::requests::messages::PollMessagesRequest;
use iggy_binary_protocol::requests::partitions::CreatePartitionsRequest;
use iggy_binary_protocol::requests::streams::{CreateStreamRequest, GetStreamRequest};
use iggy_binary_protocol::requests::topics::{
    CreateTopicRequest, DeleteTopicRequest, GetTopicRequest, UpdateTopicRequest,
};
use iggy_binary_protocol::requests::users::{GetUserRequest, LoginRegisterRequest};
use iggy_binary_protocol::responses::messages::poll_messages::PollMessagesResponseHeader;
use iggy_binary_protocol::responses::messages::send_messages::SendMessagesConfirmationResponse;
use iggy_binary_protocol::responses::messages::SendMessagesResponse;
use iggy_binary_protocol::responses::streams::get_stream::TopicHeader;
use iggy_binary_protocol::responses::streams::GetStreamResponse;
use iggy_binary_protocol::responses::streams::StreamResponse;
use iggy_binary_protocol::responses::topics::get_topic::PartitionResponse;
use iggy_binary_protocol::responses::topics::GetTopicResponse;
use iggy_binary_protocol::responses::users::{
    LoginRegisterResponse, UserDetailsResponse, UserResponse,
};
use iggy_binary_protocol::WireError;
use iggy_binary_protocol::{
    WireDecode, WireEncode, WireIdentifier, WireName, WireOptions, WirePartitioning,
    IGGY_PROTOCOL_VERSION,
};

use super::frames;
use crate::session::{TRANSIENT_NOT_ACCEPTED, TRANSIENT_NOT_COMMITTED};
use iggy_binary_protocol::consensus::Operation;

/// Iggy's InvalidOffset: a consumer offset stored on an empty partition or past its end.
pub const INVALID_OFFSET: u32 = 4100;

/// How a poll that fails inside Iggy is answered: with no messages and status 0 (a poll's
/// reply has no error channel), and as its current offset
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFault {
    /// the node's end, as a disk read that faults answers;
    AtEnd,
    /// 0, as a failed partition read answers (`empty_polled_messages_body`).
    AtZero,
}

/// One partition.
#[derive(Debug, Default)]
pub struct Partition {
    /// Stored batches with their base offsets set.
    pub batches: Vec<Vec<u8>>,
    /// The offset the next message gets.
    pub next: u64,
}

impl Partition {
    /// The messages held: fewer than `next` once retention dropped batches.
    fn held(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| u64::from(BatchHeader::decode(b).expect("stored").message_count))
            .sum()
    }

    /// The batches a node that has not applied the last `behind` of them holds.
    fn applied(&self, behind: u32) -> &[Vec<u8>] {
        &self.batches[..self.batches.len().saturating_sub(behind as usize)]
    }

    /// The offset the next message gets on a node that has not applied the last `behind`
    /// batches: where the first of them starts.
    fn end(&self, behind: u32) -> u64 {
        match self.batches.get(self.applied(behind).len()) {
            Some(b) => BatchHeader::decode(b).expect("stored").base_offset,
            None => self.next,
        }
    }
}

/// One topic.
#[derive(Debug)]
pub struct Topic {
    /// Iggy's numeric id.
    pub id: u32,
    /// When it was created (µs).
    pub created_at: u64,
    /// Its partitions, numbered from 0.
    pub partitions: Vec<Partition>,
    /// The options it was created or updated with, by name.
    pub options: Vec<(String, u64)>,
}

/// A user of the server, as GetUser describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Iggy's numeric id.
    pub id: u32,
    /// 1 active, 2 inactive (Iggy's `UserStatus::as_code`).
    pub status: u8,
    /// Its permissions; Iggy keeps none for a user created without any.
    pub permissions: Option<WirePermissions>,
}

/// The nodes the fake plays: every node holds the same data (replication is perfect and
/// instant here, but for appends held prepared, [`FakeIggy::prepare_appends`], and a node
/// behind, [`Roster::behind`]), only the leader takes writes, and a node that is down
/// refuses connections and drops those it had.
#[derive(Debug, Clone)]
pub struct Roster {
    /// Each node's address (`ip:port`).
    pub nodes: Vec<String>,
    /// The node that takes metadata writes, if any (none while an election runs).
    pub leader: Option<usize>,
    /// The node that takes partitions' writes, when not the leader (each partition
    /// replicates on its own, and its primary may be another node).
    pub partition_leader: Option<usize>,
    /// Which nodes are down.
    pub down: Vec<bool>,
    /// A node whose view of the partitions is one message behind (it has not applied the
    /// latest append yet): its topic descriptions say so.
    pub lagging: Option<usize>,
    /// A node that is behind, and by how many batches: it has not applied the latest this
    /// many batches of each partition (all of them, of a partition that holds fewer).
    /// Its descriptions and polls stop at its own end (a poll past it is answered empty,
    /// its current offset that end's last message), and it refuses a StoreConsumerOffset on
    /// a partition it holds nothing of with [`INVALID_OFFSET`], as Iggy checks the offset
    /// against the node's own committed state before whether the node is the partition's
    /// primary. A partition write it takes as the partition's primary (its view has
    /// started) brings it up to date first, on every partition.
    pub behind: Option<(usize, u32)>,
}

impl Roster {
    /// A cluster of `n` nodes at 127.0.0.1..=n, port 8090, led by the first.
    #[must_use]
    pub fn cluster(n: usize) -> Self {
        Self {
            nodes: (1..=n).map(|i| format!("127.0.0.{i}:8090")).collect(),
            leader: Some(0),
            partition_leader: None,
            down: vec![false; n],
            lagging: None,
            behind: None,
        }
    }

    fn index(&self, address: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n == address)
    }

    /// Whether the node at `address` is up.
    #[must_use]
    pub fn is_up(&self, address: &str) -> bool {
        self.index(address).is_some_and(|i| !self.down[i])
    }
}

impl Default for Roster {
    /// One server.
    fn default() -> Self {
        Self::cluster(1)
    }
}

/// The server's state.
#[derive(Debug, Default)]
pub struct FakeIggy {
    /// The nodes that serve it.
    pub roster: Roster,
    /// The next this many metadata writes on the leader are answered "not committed yet"
    /// and not applied (a resend applies them).
    pub not_committed: u32,
    /// The next this many metadata writes on the leader are applied but answered "not
    /// committed yet"; the resend gets the reply the leader kept for the request.
    pub commit_late: u32,
    /// Replies to metadata writes, by (client, request number): a resend is answered from
    /// here, as Iggy's reply cache does.
    replies: HashMap<(u128, u64), Vec<u8>>,
    /// The node answering now is the lagging one.
    lags: bool,
    /// The batches of each partition the node answering now has not applied
    /// ([`Roster::behind`]).
    behind_by: u32,
    /// The first stream created (the gateway's own, in the tests).
    pub stream: Option<String>,
    /// Its topics, by name.
    pub topics: BTreeMap<String, Topic>,
    /// The streams created after it, with their topics, by name.
    pub other_streams: BTreeMap<String, BTreeMap<String, Topic>>,
    next_topic_id: u32,
    clock: u64,
    /// (consumer name, topic, partition) → offset.
    pub consumer_offsets: HashMap<(String, String, u32), u64>,
    /// The next non-login request gets this error status.
    pub fail_next: Option<u32>,
    /// Appends to these topics (by name) are refused.
    pub refuse_sends_to: std::collections::BTreeSet<String>,
    /// Requests seen, by command code.
    pub seen: Vec<u32>,
    /// The password every login must give, but for the users of [`FakeIggy::passwords`].
    pub password: String,
    /// Passwords of their own, by user.
    pub passwords: BTreeMap<String, String>,
    /// Logins tried, by user name, successful or not.
    pub login_attempts: BTreeMap<String, usize>,
    /// Users by name, for GetUser. A login as a user not listed here may read every user
    /// (it stands for the root user); one listed needs `read_users` or `manage_users` to
    /// read another user, as Iggy checks.
    pub users: BTreeMap<String, User>,
    /// Who logged in, by client id.
    logins: HashMap<u128, String>,
    /// Streams' numeric ids, given at a stream's first use ([`FakeIggy::stream_id`]).
    stream_ids: BTreeMap<String, u32>,
    /// While set, a partition's primary takes appends into its replication pipeline
    /// ([`FakeIggy::prepared`]) and answers nothing: a test drops the connections meanwhile,
    /// as a primary that dies with ops prepared on a quorum, which the next view commits.
    pub prepare_appends: bool,
    /// Appends prepared and not committed yet, oldest first: (stream, topic, partition,
    /// batch). No poll or description shows them (Iggy serves reads up to the commit);
    /// they commit, in order, before the next write of their partition that the primary
    /// takes (its ops commit in order), or on their own once
    /// [`FakeIggy::prepared_commit_in`] says so.
    prepared: Vec<(String, String, u32, Vec<u8>)>,
    /// After this many more requests answered, the appends prepared commit on their own
    /// (the view's primary has gathered its backups' acknowledgements); never if `None`.
    pub prepared_commit_in: Option<u32>,
    /// The next poll fails inside the server and is answered as Iggy answers a faulted
    /// read: no messages, status 0.
    pub fault_next_poll: Option<PollFault>,
}

fn name(id: &WireIdentifier) -> String {
    id.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| id.as_u32().unwrap_or(0).to_string())
}

fn framed(payload: &[u8]) -> Vec<u8> {
    frames::result_framed(&[], payload)
}

fn options(o: &WireOptions) -> Vec<(String, u64)> {
    o.iter()
        .map(|e| {
            let mut v = [0u8; 8];
            let n = e.value.len().min(8);
            v[..n].copy_from_slice(&e.value[..n]);
            (
                String::from_utf8_lossy(e.key).into_owned(),
                u64::from_le_bytes(v),
            )
        })
        .collect()
}

/// The options block of `entries`, in the kinds Iggy's server writes them.
fn wire_options(entries: &[(String, u64)]) -> WireOptions {
    let encoded: Vec<(String, u8, Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| match k.as_str() {
            "enforce_fsync" => (k.clone(), 3, vec![u8::from(*v != 0)]),
            "messages_required_to_save" => (
                k.clone(),
                11,
                u32::try_from(*v).unwrap_or(u32::MAX).to_le_bytes().to_vec(),
            ),
            _ => (k.clone(), 12, v.to_le_bytes().to_vec()),
        })
        .collect();
    let refs: Vec<(u8, &[u8], u8, &[u8])> = encoded
        .iter()
        .map(|(k, kind, v)| (2, k.as_bytes(), *kind, &v[..]))
        .collect();
    let mut buf = BytesMut::new();
    encode_user_headers(&refs, &mut buf);
    WireOptions::from_bytes(buf.freeze()).expect("options")
}

/// What the server derives for a topic created without them (Iggy's defaults).
const DERIVED: &[(&str, u64)] = &[
    ("segment_size", 1 << 30),
    ("enforce_fsync", 0),
    ("messages_required_to_save", 1024),
];

/// What Iggy's admission checks of a new topic's options: the error code it refuses with.
fn admit(options: &[(String, u64)]) -> Result<(), u32> {
    let get = |k: &str| options.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let segment = get("segment_size").unwrap_or(1 << 30);
    if !(1 << 20..=1 << 30).contains(&segment) || segment % 512 != 0 {
        return Err(4042);
    }
    if get("messages_required_to_save") == Some(0) {
        return Err(4042);
    }
    if get("max_topic_size").is_some_and(|size| size != u64::MAX && size < segment) {
        return Err(1019);
    }
    Ok(())
}

impl FakeIggy {
    /// An empty server whose users log in with the password `iggy`.
    #[must_use]
    pub fn new() -> Self {
        Self {
            password: "iggy".into(),
            passwords: BTreeMap::new(),
            login_attempts: BTreeMap::new(),
            ..Self::default()
        }
    }

    /// The topics of the stream `id` names, or the status Iggy answers for a missing stream.
    fn topics(&self, id: &WireIdentifier) -> Result<&BTreeMap<String, Topic>, u32> {
        let id = self.stream_name(id);
        if self.stream.as_deref() == Some(id.as_str()) {
            return Ok(&self.topics);
        }
        self.other_streams.get(&id).ok_or(1010)
    }

    /// [`FakeIggy::topics`], to change.
    fn topics_mut(&mut self, id: &WireIdentifier) -> Result<&mut BTreeMap<String, Topic>, u32> {
        let id = self.stream_name(id);
        self.stream_topics_mut(&id)
    }

    /// The topics of stream `name`, to change.
    fn stream_topics_mut(&mut self, name: &str) -> Result<&mut BTreeMap<String, Topic>, u32> {
        if self.stream.as_deref() == Some(name) {
            return Ok(&mut self.topics);
        }
        self.other_streams.get_mut(name).ok_or(1010)
    }

    /// Stores `batch` in partition `p` of `topic` in `stream`, at the partition's end;
    /// returns its base offset.
    fn store(&mut self, stream: &str, topic: &str, p: u32, mut batch: Vec<u8>) -> Result<u64, u32> {
        let t = self
            .stream_topics_mut(stream)?
            .get_mut(topic)
            .ok_or(2011u32)?;
        let part = t.partitions.get_mut(p as usize).ok_or(3007u32)?;
        let mut header = BatchHeader::decode(&batch).map_err(|_| 4u32)?;
        header.base_offset = part.next;
        header.base_timestamp = 1_800_000_000_000_000 + part.next;
        header.encode_into(&mut batch[..BATCH_HEADER_SIZE]);
        let base = part.next;
        part.next += u64::from(header.message_count);
        part.batches.push(batch);
        Ok(base)
    }

    /// Appends a copy of batch `index` of partition `p` of `topic`, in the first stream, at
    /// the partition's end, as a client with send rights re-sending a batch it polled
    /// does; the copy's base offset.
    ///
    /// # Errors
    /// Iggy's status when the stream, topic or partition does not exist.
    ///
    /// # Panics
    /// When the partition holds no batch `index`.
    pub fn append_copy(&mut self, topic: &str, p: u32, index: usize) -> Result<u64, u32> {
        let stream = self.stream.clone().ok_or(1009u32)?;
        let batch = self
            .stream_topics_mut(&stream)?
            .get(topic)
            .ok_or(2011u32)?
            .partitions
            .get(p as usize)
            .ok_or(3007u32)?
            .batches[index]
            .clone();
        self.store(&stream, topic, p, batch)
    }

    /// Appends `batch` (one of [`Partition::batches`], of any topic) to partition `p` of
    /// `topic`, in the first stream, at the partition's end, as a client with send rights
    /// sending a batch it polled elsewhere does; the copy's base offset.
    ///
    /// # Errors
    /// Iggy's status when the stream, topic or partition does not exist.
    pub fn append_batch(&mut self, topic: &str, p: u32, batch: Vec<u8>) -> Result<u64, u32> {
        let stream = self.stream.clone().ok_or(1009u32)?;
        self.store(&stream, topic, p, batch)
    }

    /// Commits the appends prepared for partition `p` of `topic` in `stream` (all of them
    /// with `None`), in the order they were prepared.
    fn commit_prepared(&mut self, only: Option<(&str, &str, u32)>) {
        let (commit, keep) = std::mem::take(&mut self.prepared)
            .into_iter()
            .partition(|(s, t, p, _)| only.is_none_or(|o| o == (s.as_str(), t.as_str(), *p)));
        self.prepared = keep;
        for (stream, topic, p, batch) in commit {
            // A partition deleted meanwhile drops it.
            let _ = self.store(&stream, &topic, p, batch);
        }
    }

    /// How many appends are prepared and not committed yet.
    #[must_use]
    pub fn prepared(&self) -> usize {
        self.prepared.len()
    }

    /// Drops the appends prepared and not committed: the new view does not hold them (no
    /// quorum had them), and they never land.
    pub fn discard_prepared(&mut self) {
        self.prepared.clear();
    }

    /// Iggy's admission of a StoreConsumerOffset, which a node checks against what it has
    /// committed itself before it looks whether it is the partition's primary: no offset on
    /// a partition it holds nothing of, none past its end (InvalidOffset).
    fn admit_offset(&self, body: &[u8]) -> Result<(), u32> {
        let Ok((r, _)) = StoreConsumerOffsetRequest::decode(body) else {
            return Ok(());
        };
        let part = self.topics(&r.stream_id).ok().and_then(|topics| {
            topics
                .get(&name(&r.topic_id))
                .and_then(|t| t.partitions.get(r.partition_id.unwrap_or(0) as usize))
        });
        match part.map(|p| p.end(self.behind_by)) {
            Some(end) if end == 0 || r.offset >= end => Err(INVALID_OFFSET),
            _ => Ok(()),
        }
    }

    /// The name of the stream `id` names: a numeric id is looked up among those given.
    fn stream_name(&self, id: &WireIdentifier) -> String {
        match id.as_u32() {
            Some(n) => self
                .stream_ids
                .iter()
                .find(|(_, &i)| i == n)
                .map_or_else(|| n.to_string(), |(s, _)| s.clone()),
            None => name(id),
        }
    }

    /// Stream `stream`'s numeric id, given at its first use (here or by a GetStream), from
    /// 0 up as Iggy numbers streams.
    pub fn stream_id(&mut self, stream: &str) -> u32 {
        let next = u32::try_from(self.stream_ids.len()).unwrap_or(u32::MAX);
        *self.stream_ids.entry(stream.to_owned()).or_insert(next)
    }

    /// Adds (or replaces) user `name`, active, with `permissions`; returns its id.
    pub fn add_user(&mut self, name: &str, permissions: Option<WirePermissions>) -> u32 {
        let id = self.users.get(name).map_or_else(
            || u32::try_from(self.users.len() + 1).unwrap_or(u32::MAX),
            |u| u.id,
        );
        self.users.insert(
            name.to_owned(),
            User {
                id,
                status: 1,
                permissions,
            },
        );
        id
    }

    /// GetUser as `caller`: the user with its permissions, an empty reply for a user that
    /// does not exist (Iggy looks it up before it checks the caller's permission), or
    /// Iggy's "unauthorized" when the caller may not read other users.
    fn get_user(&self, caller: Option<&str>, body: &[u8]) -> Result<Vec<u8>, u32> {
        let (r, _) = GetUserRequest::decode(body).map_err(|_| 4u32)?;
        let found = self.users.iter().find(|(n, u)| match r.user_id.as_u32() {
            Some(id) => u.id == id,
            None => r.user_id.as_str() == Some(n.as_str()),
        });
        let Some((target, user)) = found else {
            return Ok(Vec::new());
        };
        let caller_may = match caller.and_then(|c| self.users.get(c).map(|u| (c, u))) {
            None => true,
            Some((c, _)) if c == target => true,
            Some((_, u)) => u
                .permissions
                .as_ref()
                .is_some_and(|p| p.global.read_users || p.global.manage_users),
        };
        if !caller_may {
            return Err(41);
        }
        Ok(UserDetailsResponse {
            user: UserResponse {
                id: user.id,
                created_at: 1_700_000_000_000_000,
                status: user.status,
                username: WireName::new(target.as_str()).map_err(|_| 4u32)?,
                options: WireOptions::empty(),
            },
            permissions: user.permissions.clone(),
        }
        .to_bytes()
        .to_vec())
    }

    fn header(name: &str, t: &Topic) -> TopicHeader {
        let get = |k: &str| {
            t.options
                .iter()
                .find(|(n, _)| n == k)
                .map_or(u64::MAX, |(_, v)| *v)
        };
        TopicHeader {
            id: t.id,
            created_at: t.created_at,
            partitions_count: u32::try_from(t.partitions.len()).unwrap_or(0),
            message_expiry: get("message_expiry"),
            compression_algorithm: 1,
            max_topic_size: get("max_topic_size"),
            size_bytes: 0,
            messages_count: t.partitions.iter().map(Partition::held).sum(),
            name: WireName::new(name).expect("a name"),
            options: wire_options(&t.options),
            derived_options: wire_options(
                &DERIVED
                    .iter()
                    .filter(|(k, _)| t.options.iter().all(|(n, _)| n != k))
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn topic_reply(&self, name: &str, t: &Topic) -> Vec<u8> {
        GetTopicResponse {
            topic: Self::header(name, t),
            partitions: t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let short = p.next - p.end(self.behind_by) + u64::from(self.lags);
                    PartitionResponse {
                        id: u32::try_from(i).unwrap_or(0),
                        created_at: t.created_at,
                        segments_count: 1,
                        current_offset: p.next.saturating_sub(1 + short),
                        size_bytes: p.batches.iter().map(|b| b.len() as u64).sum(),
                        messages_count: p.held().saturating_sub(short),
                    }
                })
                .collect(),
        }
        .to_bytes()
        .to_vec()
    }

    /// Creates topic `name` in the first stream as if another client of the server had.
    pub fn create_topic(&mut self, name: &str, partitions: u32, options: Vec<(String, u64)>) {
        let topic = self.new_topic(partitions, options);
        self.topics.insert(name.to_owned(), topic);
    }

    /// Creates stream `stream` (when missing) and topic `name` in it, as if another client
    /// of the server had.
    ///
    /// # Panics
    /// When `stream` is the first stream: [`FakeIggy::create_topic`] makes its topics.
    pub fn create_topic_in(&mut self, stream: &str, name: &str, partitions: u32) {
        assert_ne!(self.stream.as_deref(), Some(stream), "use create_topic");
        let topic = self.new_topic(partitions, Vec::new());
        self.other_streams
            .entry(stream.to_owned())
            .or_default()
            .insert(name.to_owned(), topic);
    }

    fn new_topic(&mut self, partitions: u32, options: Vec<(String, u64)>) -> Topic {
        self.next_topic_id += 1;
        self.clock += 1;
        Topic {
            id: self.next_topic_id,
            created_at: 1_700_000_000_000_000 + self.clock,
            partitions: (0..partitions).map(|_| Partition::default()).collect(),
            options,
        }
    }

    /// Answers one request frame; `Err(status)` for a failure.
    fn answer(&mut self, code: u32, body: &[u8]) -> Result<Vec<u8>, u32> {
        match code {
            GET_STREAM_CODE => {
                let (r, _) = GetStreamRequest::decode(body).map_err(|_| 4u32)?;
                let topics: Vec<TopicHeader> = self
                    .topics(&r.stream_id)?
                    .iter()
                    .map(|(n, t)| Self::header(n, t))
                    .collect();
                let stream = self.stream_name(&r.stream_id);
                Ok(GetStreamResponse {
                    stream: StreamResponse {
                        id: self.stream_id(&stream),
                        created_at: 1,
                        topics_count: u32::try_from(topics.len()).unwrap_or(0),
                        size_bytes: 0,
                        messages_count: 0,
                        name: WireName::new(stream).expect("a name"),
                        options: WireOptions::empty(),
                    },
                    topics,
                }
                .to_bytes()
                .to_vec())
            }
            CREATE_STREAM_CODE => {
                let (r, _) = CreateStreamRequest::decode(body).map_err(|_| 4u32)?;
                let n = r.name.as_str().to_owned();
                if self.stream.as_ref() == Some(&n) || self.other_streams.contains_key(&n) {
                    return Err(1012);
                }
                if self.stream.is_none() {
                    self.stream = Some(n);
                } else {
                    self.other_streams.insert(n, BTreeMap::new());
                }
                Ok(framed(&[]))
            }
            CREATE_TOPIC_CODE => {
                let (r, _) = CreateTopicRequest::decode(body).map_err(|_| 4u32)?;
                let n = r.name.as_str().to_owned();
                if self.topics(&r.stream_id)?.contains_key(&n) {
                    return Err(2013);
                }
                if r.partitions_count == 0 || r.partitions_count > 1000 {
                    return Err(2019);
                }
                let options = options(&r.options);
                admit(&options)?;
                let topic = self.new_topic(r.partitions_count, options);
                let reply = self.topic_reply(&n, &topic);
                self.topics_mut(&r.stream_id)?.insert(n, topic);
                Ok(framed(&reply))
            }
            GET_TOPIC_CODE => {
                let (r, _) = GetTopicRequest::decode(body).map_err(|_| 4u32)?;
                let n = name(&r.topic_id);
                let t = self.topics(&r.stream_id)?.get(&n).ok_or(2011u32)?;
                Ok(self.topic_reply(&n, t))
            }
            DELETE_TOPIC_CODE => {
                let (r, _) = DeleteTopicRequest::decode(body).map_err(|_| 4u32)?;
                self.topics_mut(&r.stream_id)?
                    .remove(&name(&r.topic_id))
                    .ok_or(2011u32)?;
                Ok(framed(&[]))
            }
            UPDATE_TOPIC_CODE => {
                let (r, _) = UpdateTopicRequest::decode(body).map_err(|_| 4u32)?;
                let t = self
                    .topics_mut(&r.stream_id)?
                    .get_mut(&name(&r.topic_id))
                    .ok_or(2011u32)?;
                // An update patches: what it does not carry keeps its value, and only these
                // keys may change after creation.
                let mut patched = t.options.clone();
                for (k, v) in options(&r.options) {
                    if !["message_expiry", "max_topic_size", "compression_algorithm"]
                        .contains(&k.as_str())
                    {
                        return Err(4041);
                    }
                    patched.retain(|(n, _)| *n != k);
                    patched.push((k, v));
                }
                admit(&patched)?;
                t.options = patched;
                Ok(framed(&[]))
            }
            CREATE_PARTITIONS_CODE => {
                let (r, _) = CreatePartitionsRequest::decode(body).map_err(|_| 4u32)?;
                let t = self
                    .topics_mut(&r.stream_id)?
                    .get_mut(&name(&r.topic_id))
                    .ok_or(2011u32)?;
                for _ in 0..r.partitions_count {
                    t.partitions.push(Partition::default());
                }
                Ok(framed(&[]))
            }
            SEND_MESSAGES_CODE => {
                let meta_len = u32::from_le_bytes(body[..4].try_into().map_err(|_| 4u32)?) as usize;
                let (h, _) = SendMessagesHeader::decode(&body[4..]).map_err(|_| 4u32)?;
                // As the server admits a batch: every checksum verified, the frames tiling
                // the batch, the counts agreeing (Iggy's InvalidCommand, else its checksum
                // errors).
                let whole = body.get(4 + meta_len..).ok_or(3u32)?;
                let checked = decode_batch_slice(whole).map_err(|e| match e {
                    WireError::InvalidBatchChecksum { .. } => 4039u32,
                    WireError::InvalidMessageChecksum { .. } => 4027,
                    _ => 3,
                })?;
                if checked.message_count() == 0
                    || checked.message_count() != h.messages_count
                    || whole.len() != checked.header.total_size()
                {
                    return Err(3);
                }
                let WirePartitioning::PartitionId(p) = h.partitioning else {
                    return Err(4);
                };
                let topic = name(&h.topic_id);
                if self.refuse_sends_to.contains(&topic) {
                    // Iggy's generic "error".
                    return Err(1);
                }
                let stream = self.stream_name(&h.stream_id);
                let t = self.topics(&h.stream_id)?.get(&topic).ok_or(2011u32)?;
                t.partitions.get(p as usize).ok_or(3007u32)?;
                let topic_id = t.id;
                let batch = body[4 + meta_len..].to_vec();
                if self.prepare_appends {
                    // Not answered ([`FakeIggy::serve_at`] sends nothing for it).
                    self.prepared.push((stream, topic, p, batch));
                    return Ok(Vec::new());
                }
                self.commit_prepared(Some((&stream, &topic, p)));
                let base = self.store(&stream, &topic, p, batch)?;
                Ok(SendMessagesResponse {
                    confirmations: vec![SendMessagesConfirmationResponse {
                        stream_id: 1,
                        topic_id,
                        partition_id: p,
                        base_offset: base,
                    }],
                }
                .to_bytes()
                .to_vec())
            }
            POLL_MESSAGES_CODE => {
                let (r, _) = PollMessagesRequest::decode(body).map_err(|_| 4u32)?;
                let faulted = self.fault_next_poll.take();
                let t = self
                    .topics(&r.stream_id)?
                    .get(&name(&r.topic_id))
                    .ok_or(2011u32)?;
                let p = r.partition_id.unwrap_or(0);
                let part = t.partitions.get(p as usize).ok_or(3007u32)?;
                let from = match r.strategy.kind {
                    1 => r.strategy.value,
                    // By timestamp: the first batch appended at or after it.
                    2 => part
                        .batches
                        .iter()
                        .map(|b| BatchHeader::decode(b).expect("stored"))
                        .find(|h| h.base_timestamp >= r.strategy.value)
                        .map_or(part.next, |h| h.base_offset),
                    _ => 0,
                };
                let mut out = BytesMut::new();
                let mut count = 0u32;
                let end = part.end(self.behind_by);
                let served = if faulted.is_some() {
                    &[][..]
                } else {
                    part.applied(self.behind_by)
                };
                for b in served {
                    let h = BatchHeader::decode(b).expect("stored");
                    let end = h.base_offset + u64::from(h.message_count);
                    if end <= from || count >= r.count {
                        continue;
                    }
                    count += h.message_count;
                    out.put_slice(b);
                }
                let mut reply = PollMessagesResponseHeader {
                    partition_id: p,
                    current_offset: match faulted {
                        Some(PollFault::AtZero) => 0,
                        _ => end.saturating_sub(1),
                    },
                    messages_count: count,
                }
                .to_bytes()
                .to_vec();
                reply.extend_from_slice(&out);
                Ok(reply)
            }
            STORE_CONSUMER_OFFSET_CODE => {
                let (r, _) = StoreConsumerOffsetRequest::decode(body).map_err(|_| 4u32)?;
                // Through the partition's replication pipeline: it commits after what the
                // primary prepared before it.
                let (stream, p) = (self.stream_name(&r.stream_id), r.partition_id.unwrap_or(0));
                self.commit_prepared(Some((&stream, &name(&r.topic_id), p)));
                self.consumer_offsets.insert(
                    (
                        name(&r.consumer.id),
                        name(&r.topic_id),
                        r.partition_id.unwrap_or(0),
                    ),
                    r.offset,
                );
                Ok(framed(&[]))
            }
            DELETE_CONSUMER_OFFSET_CODE => {
                let (r, _) = DeleteConsumerOffsetRequest::decode(body).map_err(|_| 4u32)?;
                let (stream, p) = (self.stream_name(&r.stream_id), r.partition_id.unwrap_or(0));
                self.commit_prepared(Some((&stream, &name(&r.topic_id), p)));
                self.consumer_offsets
                    .remove(&(
                        name(&r.consumer.id),
                        name(&r.topic_id),
                        r.partition_id.unwrap_or(0),
                    ))
                    .ok_or(3021u32)?;
                Ok(framed(&[]))
            }
            _ => Err(3),
        }
    }

    /// Answers every whole request frame in `wire` (consumed) as the leader (or the only
    /// server), returning the reply bytes.
    pub fn serve(&mut self, wire: &mut Vec<u8>) -> Vec<u8> {
        let at = self.roster.leader.unwrap_or(0);
        let address = self.roster.nodes[at].clone();
        self.serve_at(&address, wire).unwrap_or_default()
    }

    /// Answers every whole request frame in `wire` (consumed) as the node at `address`,
    /// returning the reply bytes; `None` when that node is down (its connections drop).
    pub fn serve_at(&mut self, address: &str, wire: &mut Vec<u8>) -> Option<Vec<u8>> {
        let node = self
            .roster
            .index(address)
            .filter(|&i| !self.roster.down[i])?;
        let leads = self.roster.leader == Some(node);
        let leads_partitions = self.roster.partition_leader.or(self.roster.leader) == Some(node);
        self.lags = self.roster.lagging == Some(node);
        self.behind_by = match self.roster.behind {
            Some((n, by)) if n == node => by,
            _ => 0,
        };
        let mut out = Vec::new();
        let requests = frames::requests(wire, 0);
        if let Some(last) = requests.last() {
            wire.drain(..last.end);
        }
        for request in requests {
            let result = if request.is_login() {
                let login = LoginRegisterRequest::decode(&request.body);
                if let Ok((l, _)) = &login {
                    *self
                        .login_attempts
                        .entry(l.username.as_str().to_owned())
                        .or_default() += 1;
                }
                let expected = login
                    .as_ref()
                    .ok()
                    .and_then(|(l, _)| self.passwords.get(l.username.as_str()))
                    .unwrap_or(&self.password)
                    .clone();
                match login {
                    Ok((l, _)) if l.password_matches(&expected) => {
                        self.logins
                            .insert(request.header.client, l.username.as_str().to_owned());
                        Ok(framed(
                            &LoginRegisterResponse {
                                user_id: 1,
                                session: 9,
                                server_protocol_version: IGGY_PROTOCOL_VERSION,
                                server_version: WireName::new("fake").expect("a name"),
                            }
                            .to_bytes(),
                        ))
                    }
                    _ => Err(42),
                }
            } else if request.code() == GET_CLUSTER_METADATA_CODE {
                // Asked by every lane after its login; not one of the requests tests count.
                Ok(self.cluster_metadata())
            } else {
                let code = request.code();
                let operation = request.header.operation;
                let write = operation != Operation::NonReplicated;
                let key = (request.header.client, request.header.request);
                self.seen.push(code);
                let primary = if operation.is_partition() {
                    leads_partitions
                } else {
                    leads
                };
                if let Some(left) = self.prepared_commit_in.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.prepared_commit_in = None;
                        self.commit_prepared(None);
                    }
                }
                if operation.is_partition() && write && primary && self.behind_by > 0 {
                    // Its view has started: it commits what it holds prepared before it
                    // takes the write (StoreConsumerOffset's admission, below, comes first).
                    if code != STORE_CONSUMER_OFFSET_CODE
                        || self.admit_offset(&request.body).is_ok()
                    {
                        self.roster.behind = None;
                        self.behind_by = 0;
                    }
                }
                let admitted = if code == STORE_CONSUMER_OFFSET_CODE {
                    self.admit_offset(&request.body)
                } else {
                    Ok(())
                };
                if let Err(status) = admitted {
                    Err(status)
                } else if write && !primary {
                    // A follower takes no writes (Iggy's "not accepted").
                    Err(TRANSIENT_NOT_ACCEPTED)
                } else if let Some(cached) = self
                    .replies
                    .get(&key)
                    .filter(|_| write && !operation.is_partition())
                {
                    Ok(cached.clone())
                } else if write && !operation.is_partition() && self.not_committed > 0 {
                    self.not_committed -= 1;
                    Err(TRANSIENT_NOT_COMMITTED)
                } else {
                    let result = match self.fail_next.take() {
                        Some(status) => Err(status),
                        None if code == GET_USER_CODE => {
                            let caller = self.logins.get(&request.header.client);
                            self.get_user(caller.map(String::as_str), &request.body)
                        }
                        None => self.answer(code, &request.body),
                    };
                    let metadata_write = write && !operation.is_partition();
                    match &result {
                        Ok(reply) if metadata_write => {
                            self.replies.insert(key, reply.clone());
                        }
                        _ => {}
                    }
                    if metadata_write && result.is_ok() && self.commit_late > 0 {
                        self.commit_late -= 1;
                        Err(TRANSIENT_NOT_COMMITTED)
                    } else {
                        result
                    }
                }
            };
            if self.prepare_appends
                && !request.is_login()
                && request.code() == SEND_MESSAGES_CODE
                && result.is_ok()
            {
                // Prepared: no reply before its commit, and the test drops the connection.
                continue;
            }
            let (status, payload) = match result {
                Ok(p) => (0, p),
                Err(s) => (s, Vec::new()),
            };
            out.extend_from_slice(&frames::reply(&request.header, status, &payload));
        }
        Some(out)
    }

    /// The roster as Iggy's cluster metadata says it.
    fn cluster_metadata(&self) -> Vec<u8> {
        let nodes: Vec<(&str, bool)> = self
            .roster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), self.roster.leader == Some(i)))
            .collect();
        frames::cluster_metadata(&nodes)
    }
}

trait PasswordCheck {
    fn password_matches(&self, expected: &str) -> bool;
}

impl PasswordCheck for LoginRegisterRequest {
    fn password_matches(&self, expected: &str) -> bool {
        secrecy::ExposeSecret::expose_secret(&self.password) == expected
    }
}
