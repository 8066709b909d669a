//! SCRAM credentials, durable in a gateway-owned Iggy topic.
//!
//! AlterUserScramCredentials on the Iggy backend writes its changes as records to the topic
//! [`TOPIC`] of the gateway's stream (one partition, created at the first change) before it
//! answers, and the gateway replays the topic when it starts. A record holds what SCRAM
//! keeps of a password — salt, iteration count, StoredKey and ServerKey — never the
//! password, which the gateway does not see (the client salts and iterates it). Kafka
//! clients neither see nor touch the topic (it is one of the gateway's own, as the
//! committed offsets' topics are).
//!
//! Every gateway on the stream follows the topic ([`ScramStore::follow`], asked every few
//! seconds by the core's follower): a change made through one takes effect on all. Each
//! change read gets a place, the order this gateway learned it in; a store reads the topic
//! up to its own records before it answers, so that its place is theirs in the topic's
//! order, and concurrent changes through several gateways end as the topic orders them.
//!
//! The topic is compacted into generations (`__kafka_gateway_scram`, then
//! `__kafka_gateway_scram.<g>`), as the committed-offsets log is: a header naming the
//! compaction (a random id), the latest credential per user and mechanism (and the
//! deletions of the users file's credentials), then what landed in the old generation
//! meanwhile, then a marker ([`Record::Complete`]) naming the header's compaction; then
//! the older generations are deleted. The newest complete generation is the one read; a
//! store that lands in a generation also writes itself into every newer one, as a
//! compaction may have read it before the store landed.
//!
//! Several gateways may share the stream and compact it. Iggy has no compare-and-swap on
//! messages, but CreateTopic is exclusive: only the gateway whose CreateTopic made
//! generation `g + 1` compacts `g` into it, and one that finds it made leaves it alone. A
//! gateway deletes only generations older than the newest complete one; none deletes a
//! newer, unfinished one, so nothing depends on how long a compaction takes. One that
//! never completes (its compactor died) blocks compaction (the topic keeps every change
//! meanwhile, as with compaction off) until an operator deletes it; a gateway that sees
//! it unfinished for minutes says so. A generation holding records the gateway cannot
//! read (another gateway's, whose Iggy secret differs) it neither deletes nor compacts.
//!
//! Each record is sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256, salt
//! [`SEAL_SALT`], the stream's name as info) from the secret of the gateway's own Iggy
//! credentials: any Iggy user with `send_messages` or `poll_messages` on the stream could
//! otherwise plant a credential for a super user or read the keys. A record is the seal's
//! version, a random 96-bit nonce, then the ciphertext and tag of the change. In a
//! generation this build compacts into, and in any generation newer than the one read,
//! the version is `2`, with the version byte and the generation's number (u64,
//! little-endian) as associated data: a record copied into another generation does not
//! open there. In generation 0, and in a generation an older build compacted into (it has
//! no header) while it is the one read, it is `1`, with the version byte only as
//! associated data, as older builds seal every record: they read what this build writes
//! there. Version-1 records open in generation 0, and in a generation until its first
//! header. A record that does not open is skipped at replay and counted (the gateway's
//! Iggy credentials changed, or someone else wrote it).
//!
//! The change (little-endian): version `1`; kind (1 set, 2 delete); the user as a
//! u16-length string; the mechanism as Kafka's type (i8); for a set, the iteration count
//! (u32), then the salt, StoredKey and ServerKey, each as u16-length bytes. A header is
//! version `1`, kind 4, the generation (u64) and the compaction's 16-byte id; the marker is
//! the same with kind 3. A marker completes its generation only after the generation's
//! first header, naming the same generation and compaction: a marker of another
//! compaction made under the same number (its generation deleted by an operator, and its
//! compactor late) completes nothing. An older build's marker, the payload `[1, 3]` sealed
//! as version 1, completes a generation with no header: one that build compacted into (a
//! header landing after it undoes that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use iggy_kafka_core::backend::{BackendError, TopicRef};
use iggy_kafka_core::message::{IggyMessage, MessageList};
use iggy_kafka_core::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
use iggy_kafka_iggy_client::protocol::codes::{
    CREATE_TOPIC_CODE, DELETE_TOPIC_CODE, SEND_MESSAGES_CODE,
};
use iggy_kafka_iggy_client::protocol::requests::topics::{CreateTopicRequest, DeleteTopicRequest};
use iggy_kafka_iggy_client::protocol::{WireEncode, WireName, WirePollingStrategy};
use iggy_kafka_iggy_client::Failure;
use secrecy::{ExposeSecret, SecretString};

use crate::calls::admin_lane;
use crate::catalog::Catalog;
use crate::read::Reads;
use crate::sync::{lock, Gate};
use crate::wire::{self, backend_error, code, named};

/// The topic that holds the credentials.
pub(crate) use crate::offsets_log::{
    scram_generation as generation, scram_topic_name as topic_name, SCRAM_TOPIC as TOPIC,
};

/// The longest a user name or key may be in a record.
const MAX_FIELD: usize = u16::MAX as usize;
/// The longest salt a replayed record may carry: Kafka's clients send 32 bytes or so, and
/// the salt is sent to every SCRAM client of the user.
const MAX_SALT: usize = 1024;

/// The length of StoredKey and ServerKey for `mechanism`: its digest's.
fn key_len(mechanism: ScramMechanism) -> usize {
    match mechanism {
        ScramMechanism::Sha256 => 32,
        ScramMechanism::Sha512 => 64,
    }
}

fn put_bytes(b: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(MAX_FIELD)];
    b.put_u16_le(u16::try_from(s.len()).unwrap_or(u16::MAX));
    b.put_slice(s);
}

fn get_bytes(p: &mut &[u8]) -> Option<Vec<u8>> {
    if p.len() < 2 {
        return None;
    }
    let n = usize::from(p.get_u16_le());
    if p.len() < n {
        return None;
    }
    let (v, rest) = p.split_at(n);
    let v = v.to_vec();
    *p = rest;
    Some(v)
}

/// HKDF's salt for the sealing key.
const SEAL_SALT: &[u8] = b"iggy-kafka-gateway scram credentials v1";
/// The sealed record's version in a compacted generation: the generation it was written
/// for is in its associated data.
const SEAL_VERSION: u8 = 2;
/// The version of records with the version byte only as associated data: those of
/// generation 0, which every build reads, and those of the generations older builds
/// compacted into.
const SEAL_VERSION_UNBOUND: u8 = 1;
const NONCE_LEN: usize = 12;

/// The key records are sealed under: from the gateway's Iggy credential secret and the
/// stream's name.
pub(crate) fn seal_key(secret: &[u8], stream: &str) -> Key {
    let mut key = Key::default();
    // 32 bytes is far below HKDF-SHA256's limit of 255 blocks, so expand cannot fail.
    let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(SEAL_SALT), secret)
        .expand(stream.as_bytes(), &mut key);
    key
}

/// The associated data of a record of `generation`: a record copied into another
/// generation does not open there.
fn bound(generation: u64) -> [u8; 9] {
    let mut aad = [SEAL_VERSION; 9];
    aad[1..].copy_from_slice(&generation.to_le_bytes());
    aad
}

/// `payload` sealed under `key` for `generation`, with a fresh random nonce: as version 1
/// when `unbound` (so that an older build sharing the stream, or rolled back to, reads
/// it), as version 2 bound to the generation otherwise.
fn seal(key: &Key, generation: u64, payload: &[u8], unbound: bool) -> Result<Bytes, BackendError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| {
        BackendError::Unavailable(format!(
            "no random nonce for a SCRAM credential record: {e}"
        ))
    })?;
    let aad = bound(generation);
    let (version, aad): (u8, &[u8]) = if unbound {
        (SEAL_VERSION_UNBOUND, &[SEAL_VERSION_UNBOUND])
    } else {
        (SEAL_VERSION, &aad)
    };
    let sealed = ChaCha20Poly1305::new(key)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: payload, aad })
        .map_err(|_| BackendError::Unavailable("cannot seal a SCRAM credential record".into()))?;
    let mut b = BytesMut::with_capacity(1 + NONCE_LEN + sealed.len());
    b.put_u8(version);
    b.put_slice(&nonce);
    b.put_slice(&sealed);
    Ok(b.freeze())
}

/// The payload a sealed record of `generation` holds, when it opens under `key`, and its
/// seal's version; version-1 records open only when `unbound` (in generation 0, and in a
/// generation an older build compacted into, before any header of this build's).
fn open(key: &Key, generation: u64, record: &[u8], unbound: bool) -> Option<(Vec<u8>, u8)> {
    let (&version, rest) = record.split_first()?;
    let aad = bound(generation);
    let aad: &[u8] = match version {
        SEAL_VERSION => &aad,
        SEAL_VERSION_UNBOUND if unbound => &[SEAL_VERSION_UNBOUND],
        _ => return None,
    };
    if rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    ChaCha20Poly1305::new(key)
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
        .map(|p| (p, version))
}

/// A random compaction id, named by a generation's header and its marker.
fn compaction_id() -> Result<CompactionId, BackendError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| {
        BackendError::Unavailable(format!("no random id for a SCRAM compaction: {e}"))
    })?;
    Ok(id)
}

/// One change as a record's payload.
pub(crate) fn encode(change: &ScramChange) -> Bytes {
    let mut b = BytesMut::with_capacity(160);
    b.put_u8(1);
    match change {
        ScramChange::Set { user, credential } => {
            b.put_u8(1);
            put_bytes(&mut b, user.as_bytes());
            b.put_i8(credential.mechanism.kafka_type());
            b.put_u32_le(credential.iterations);
            put_bytes(&mut b, &credential.salt);
            put_bytes(&mut b, &credential.stored_key);
            put_bytes(&mut b, &credential.server_key);
        }
        ScramChange::Delete { user, mechanism } => {
            b.put_u8(2);
            put_bytes(&mut b, user.as_bytes());
            b.put_i8(mechanism.kafka_type());
        }
    }
    b.freeze()
}

/// The random id of one compaction: a generation's header and marker name it, so that a
/// marker completes only the generation its own compaction made.
type CompactionId = [u8; 16];

/// A record of the topic, opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A credential set or deleted.
    Change(ScramChange),
    /// The first record a compaction writes into the generation it made.
    Header {
        generation: u64,
        compaction: CompactionId,
    },
    /// The end of a compacted generation's snapshot: the generation is complete when its
    /// header names the same compaction and comes before it.
    Complete {
        generation: u64,
        compaction: CompactionId,
    },
    /// An older build's marker (the payload `[1, 3]`), which names nothing: it completes
    /// a generation that build compacted into ([`ScramStore::scan`] says when).
    LegacyComplete,
}

/// The kinds of [`Record::Complete`] and [`Record::Header`].
const KIND_COMPLETE: u8 = 3;
const KIND_HEADER: u8 = 4;

/// A header's or marker's payload.
fn encode_mark(kind: u8, generation: u64, compaction: &CompactionId) -> Bytes {
    let mut b = BytesMut::with_capacity(26);
    b.put_u8(1);
    b.put_u8(kind);
    b.put_u64_le(generation);
    b.put_slice(compaction);
    b.freeze()
}

/// The record a payload holds; `None` as for [`decode`].
pub(crate) fn decode_record(p: &[u8]) -> Option<Record> {
    if p == [1, KIND_COMPLETE] {
        return Some(Record::LegacyComplete);
    }
    if let [1, kind @ (KIND_COMPLETE | KIND_HEADER), rest @ ..] = p {
        let (generation, compaction) = rest.split_first_chunk::<8>()?;
        let compaction: CompactionId = compaction.try_into().ok()?;
        let generation = u64::from_le_bytes(*generation);
        return Some(if *kind == KIND_HEADER {
            Record::Header {
                generation,
                compaction,
            }
        } else {
            Record::Complete {
                generation,
                compaction,
            }
        });
    }
    decode(p).map(Record::Change)
}

/// The change a record's payload holds; `None` for anything this gateway did not write,
/// and for a credential AlterUserScramCredentials would not have taken: an empty user, an
/// iteration count outside Kafka's 4,096..=16,384, an empty salt or one over 1 KiB, keys
/// that are not the digest's length.
pub(crate) fn decode(mut p: &[u8]) -> Option<ScramChange> {
    if p.len() < 2 || p.get_u8() != 1 {
        return None;
    }
    let kind = p.get_u8();
    let user = String::from_utf8(get_bytes(&mut p)?).ok()?;
    if user.is_empty() || p.is_empty() {
        return None;
    }
    let mechanism = ScramMechanism::from_kafka_type(p.get_i8())?;
    let change = match kind {
        1 => {
            if p.len() < 4 {
                return None;
            }
            let iterations = p.get_u32_le();
            let salt = get_bytes(&mut p)?;
            let stored_key = get_bytes(&mut p)?;
            let server_key = get_bytes(&mut p)?;
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations)
                || salt.is_empty()
                || salt.len() > MAX_SALT
                || stored_key.len() != key_len(mechanism)
                || server_key.len() != key_len(mechanism)
            {
                return None;
            }
            ScramChange::Set {
                user,
                credential: ScramCredential {
                    mechanism,
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                },
            }
        }
        2 => ScramChange::Delete { user, mechanism },
        _ => return None,
    };
    p.is_empty().then_some(change)
}

/// What one generation's replay holds, by user and mechanism (Kafka's type): a
/// credential, or `None` where the last change deleted one.
type Replayed = BTreeMap<(String, i8), Option<ScramCredential>>;

/// The credentials as followed from the topic.
#[derive(Default)]
struct Followed {
    /// The generation read.
    generation: u64,
    /// The offset after the last record read of it: how many records it holds.
    next: u64,
    /// By user and mechanism: the credential (or `None`, deleted) and its place, the
    /// order this gateway learned it in (greater for each change after it).
    entries: BTreeMap<(String, i8), (Option<ScramCredential>, u64)>,
    /// The greatest place given.
    places: u64,
    /// How many records read of the generation this gateway cannot read (sealed under
    /// another key, or not a change it knows): it then neither compacts the generation
    /// (that would drop them) nor deletes it.
    unreadable: u64,
    /// Whether the generation read has a header (a compaction of this build's made it):
    /// version-1 records do not open in it.
    bound: bool,
    /// Whether a header turned up in the generation read after it was taken as having
    /// none: what was read of it may not be part of it, and it is read whole again.
    reread: bool,
    /// How many times that happened: a store under way meanwhile wrote into that
    /// generation as into one with no header.
    headers_found: u64,
}

impl Followed {
    /// Applies a change read from the topic (or stored), at the next place.
    fn apply(&mut self, change: ScramChange) -> u64 {
        self.places += 1;
        self.entries
            .insert(entry_key(&change), (value(change), self.places));
        self.places
    }

    /// Takes a generation replayed whole as the state: what differs from what is held
    /// gets a new place (a credential missing from it was deleted).
    fn adopt(&mut self, generation: u64, next: u64, replayed: Replayed) {
        let mut keys: Vec<(String, i8)> = self.entries.keys().cloned().collect();
        keys.extend(replayed.keys().cloned());
        keys.sort();
        keys.dedup();
        for key in keys {
            let new = replayed.get(&key).cloned().flatten();
            let old = self.entries.get(&key).and_then(|(c, _)| c.clone());
            if old != new || !self.entries.contains_key(&key) {
                self.places += 1;
                self.entries.insert(key, (new, self.places));
            }
        }
        self.generation = generation;
        self.next = next;
        self.reread = false;
    }

    /// The users the users file gives (their keys `pinned`) with a credential or deletion
    /// held here that `replayed` has nothing of. When `replayed` is the generation before
    /// one read anew ([`Self::reread`]), that is a change read in the one read before (made
    /// through Kafka, or replayed there), which counts for no gateway: [`Self::adopt`] leaves (or makes) the credential deleted here,
    /// where every other gateway holds the users file's. Only a restart gives it back: the
    /// store does not know the users file's credential.
    fn held_apart(&self, replayed: &Replayed, pinned: &BTreeSet<(String, i8)>) -> Vec<String> {
        let mut users: Vec<String> = self
            .entries
            .keys()
            .filter(|k| pinned.contains(*k) && !replayed.contains_key(*k))
            .map(|(user, _)| user.clone())
            .collect();
        users.dedup();
        users
    }

    /// How many records a compacted generation would hold: the credentials, and the
    /// deletions kept for `pinned`.
    fn live(&self, pinned: &BTreeSet<(String, i8)>) -> u64 {
        self.entries
            .iter()
            .filter(|(k, (c, _))| c.is_some() || pinned.contains(*k))
            .count() as u64
    }
}

/// The most rounds of copying what landed in the old generation during a compaction. A
/// compaction whose last round still found something new gives up: only a round that
/// finds nothing new tells that every later store copies itself after every copy.
const MAX_COPY_ROUNDS: usize = 8;

/// The most listings a store makes while writing itself into the generations newer than
/// the one it landed in (each finds a newer one only after a compaction completed).
const MAX_NEWER_ROUNDS: usize = 16;

/// Compaction starts past this many records in a generation, when they are more than
/// twice the live credentials.
pub(crate) const COMPACT_AFTER: u64 = 256;

/// The most listings a start or a switch makes when a generation it listed went before
/// it was read (compacted into a newer one meanwhile).
const MAX_SWITCH_ROUNDS: usize = 4;

/// How often a gateway that follows the topic lists its generations even though the one
/// it reads is still there, and how long a store leaves a newer generation it saw
/// unfinished before reading it again: a compaction whose marker's reply was lost leaves
/// the old generation in place, and the gateways reading it move to the new one this way.
const LIST_EVERY: Duration = Duration::from_secs(30);

/// How long a newer generation stays unfinished before it is warned of: far longer than
/// a compaction takes (its copy rounds are few), so its compactor most likely died.
const WARN_UNFINISHED_AFTER: Duration = Duration::from_secs(300);

/// The credentials as the topic holds them.
pub(crate) struct ScramStore {
    /// The key the records are sealed under.
    key: Key,
    /// Held while the topic is read or written, so that the state follows the topic's
    /// order.
    gate: Gate,
    state: Mutex<Followed>,
    /// The users and mechanisms whose deletions compaction keeps: those the users file
    /// gives a credential, which a deletion made through Kafka must keep deleted at start.
    pinned: Mutex<BTreeSet<(String, i8)>>,
    /// Whether this gateway compacts the topic ([`crate::IggyConfig::scram_compaction`]).
    compaction: bool,
    /// Generations newer than the one read, seen unfinished.
    unfinished: Mutex<BTreeMap<u64, Unfinished>>,
    /// When the generations were last listed.
    listed: Mutex<Option<Instant>>,
    /// Whether the warning that records this gateway cannot read hold compaction back was
    /// given (once: it would come at every store otherwise).
    held_back: AtomicBool,
}

/// A generation seen unfinished.
struct Unfinished {
    /// Since when, under the same header (or none).
    since: Instant,
    /// When it was last read and found unfinished.
    scanned: Instant,
    /// The compaction its header names, if it has one yet.
    header: Option<CompactionId>,
    /// Whether it was warned of.
    warned: bool,
}

impl Unfinished {
    /// Whether it was read less than [`LIST_EVERY`] before `now`.
    fn lately(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.scanned) < LIST_EVERY
    }
}

/// One generation read whole, nothing applied.
#[derive(Default)]
struct Scan {
    /// What it holds.
    replayed: Replayed,
    /// Whether it is complete: the first, or a compacted one with its marker.
    complete: bool,
    /// The compaction its header names.
    header: Option<CompactionId>,
    /// How many of the changes asked for were in it.
    own: usize,
    /// The records this gateway cannot read.
    skipped: Skipped,
    /// The offset after its last record.
    end: u64,
}

/// Records of a generation this gateway cannot read.
#[derive(Default, Clone, Copy)]
struct Skipped {
    /// Sealed under another key (or not sealed).
    unopened: u64,
    /// Sealed under this gateway's key, but not a change it knows.
    unknown: u64,
}

impl Skipped {
    fn total(self) -> u64 {
        self.unopened + self.unknown
    }
}

impl ScramStore {
    /// No credentials yet; records sealed under the key of `secret` (the gateway's Iggy
    /// password or token) and `stream`; compacted by this gateway when `compaction`.
    pub(crate) fn new(secret: &SecretString, stream: &str, compaction: bool) -> Self {
        Self {
            key: seal_key(secret.expose_secret().as_bytes(), stream),
            gate: Gate::default(),
            state: Mutex::default(),
            pinned: Mutex::default(),
            compaction,
            unfinished: Mutex::default(),
            listed: Mutex::default(),
            held_back: AtomicBool::new(false),
        }
    }

    /// Keeps the deletions of these users' and mechanisms' credentials through compaction.
    pub(crate) fn pin_deletions(&self, keys: impl IntoIterator<Item = (String, ScramMechanism)>) {
        lock(&self.pinned).extend(keys.into_iter().map(|(u, m)| (u, m.kafka_type())));
    }

    /// Replays the newest complete generation (nothing when there is none yet) and deletes
    /// the older ones that hold nothing this gateway cannot read. A newer, unfinished one
    /// is left: it may be a compaction under way through another gateway.
    pub(crate) async fn open(&self, catalog: &Catalog, reads: &Reads) -> Result<(), BackendError> {
        let _gate = self.gate.enter().await;
        let generations = self.list(catalog).await?;
        if self
            .switch(catalog, reads, generations, &[])
            .await?
            .is_some()
        {
            self.drop_older(catalog, reads).await?;
        }
        let state = lock(&self.state);
        if !state.entries.is_empty() {
            let credentials = state.entries.values().filter(|(c, _)| c.is_some()).count();
            tracing::info!(
                credentials,
                deletions = state.entries.len() - credentials,
                generation = state.generation,
                "SCRAM credentials replayed from Iggy"
            );
        }
        Ok(())
    }

    /// The credentials replayed or stored since, as changes that set them, and the
    /// deletions, so that a credential the users file gives and Kafka deleted stays
    /// deleted.
    pub(crate) fn credentials(&self) -> Vec<ScramChange> {
        lock(&self.state)
            .entries
            .iter()
            .filter_map(|((user, kind), (c, _))| change(user, *kind, c.clone()))
            .collect()
    }

    /// Reads what was kept since this gateway last looked, other gateways' changes
    /// included, and returns each credential (or deletion) whose place is after `since`.
    pub(crate) async fn follow(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        since: u64,
    ) -> Result<Vec<(ScramChange, u64)>, BackendError> {
        let _gate = self.gate.enter().await;
        let now = catalog.calls().clock().now();
        let due =
            lock(&self.listed).is_none_or(|at| now.saturating_duration_since(at) >= LIST_EVERY);
        // Gone: another gateway compacted the topic into a newer generation.
        let gone = self.catch_up(catalog, reads, &[]).await?.is_none();
        if gone || due {
            let generations = self.list(catalog).await?;
            let current = lock(&self.state).generation;
            if gone || generations.first().is_some_and(|&g| g > current) {
                self.switch(catalog, reads, generations, &[]).await?;
            }
        }
        Ok(lock(&self.state)
            .entries
            .iter()
            .filter(|(_, (_, place))| *place > since)
            .filter_map(|((user, kind), (c, place))| {
                change(user, *kind, c.clone()).map(|c| (c, *place))
            })
            .collect())
    }

    /// Appends `changes` to the topic (creating it at the first change), in one batch,
    /// and reads the topic up to them; their place in the order this gateway follows the
    /// topic in.
    ///
    /// # Errors
    /// When Iggy did not take them; they may have landed all the same (a lost reply), and
    /// then apply when they are read.
    pub(crate) async fn store(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        changes: Vec<ScramChange>,
    ) -> Result<u64, BackendError> {
        let _gate = self.gate.enter().await;
        if changes.is_empty() {
            return Ok(lock(&self.state).places);
        }
        let plain: Vec<Bytes> = changes.iter().map(encode).collect();
        let mut place = None;
        for _ in 0..MAX_SWITCH_ROUNDS {
            if lock(&self.state).reread {
                // Into the generation every other gateway reads, not into one it does not
                // count (yet).
                let generations = self.list(catalog).await?;
                self.switch(catalog, reads, generations, &[]).await?;
            }
            place = self.land(catalog, reads, &changes, &plain).await?;
            if place.is_some() {
                break;
            }
        }
        let place = place.ok_or_else(|| {
            BackendError::Unavailable(
                "the SCRAM credentials generation read kept gaining a header".into(),
            )
        })?;
        if self.wants_compaction() {
            if let Err(e) = self.compact(catalog, reads).await {
                tracing::warn!(error = %e, "compaction of the SCRAM credentials failed");
            }
        }
        Ok(place)
    }

    /// Appends `plain`, the payloads of `changes`, to the generation read and every newer
    /// one, and reads them back; their place. `None` when a header turned up meanwhile in
    /// the generation read, taken as having none: the records landed there as version 1,
    /// which count for no gateway once it has a header (before it, they are not copies its
    /// compactor makes; after it, they do not open), so they are stored again once the
    /// generations are read anew. Their copies in newer generations count there, and the
    /// client has no answer yet: whichever copy ends last is the one a newer change
    /// follows.
    async fn land(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        changes: &[ScramChange],
        plain: &[Bytes],
    ) -> Result<Option<u64>, BackendError> {
        let (mut generation, headers_found) = {
            let state = lock(&self.state);
            (state.generation, state.headers_found)
        };
        let mut created = false;
        loop {
            match append(
                catalog,
                &topic_name(generation),
                &self.sealed(generation, plain)?,
            )
            .await
            {
                Ok(()) => break,
                Err(BackendError::UnknownTopic(_)) => {
                    let generations = self.list(catalog).await?;
                    if self
                        .switch(catalog, reads, generations, &[])
                        .await?
                        .is_some()
                    {
                        let now = lock(&self.state).generation;
                        if now != generation {
                            generation = now;
                            continue;
                        }
                    }
                    if created {
                        return Err(BackendError::Unavailable(
                            "the SCRAM credentials topic went as it was made".into(),
                        ));
                    }
                    create(catalog, generation).await?;
                    created = true;
                }
                Err(e) => return Err(e),
            }
        }
        let newest = self.write_newer(catalog, generation, plain).await?;
        let mut place = None;
        // A newer generation seen unfinished is read again only once [`LIST_EVERY`] has
        // passed since (one that never completes grows by every store, and is read whole):
        // one that completed meanwhile is taken within that, however often stores come.
        let now = catalog.calls().clock().now();
        let fresh = {
            let unfinished = lock(&self.unfinished);
            newest
                .iter()
                .any(|g| *g > generation && !unfinished.get(g).is_some_and(|u| u.lately(now)))
        };
        if fresh {
            // The generation adopted was read after the changes were written into it: they
            // hold their places in the topic's order already, and applying them again as
            // the latest would undo a later change through another gateway.
            let seen = self.switch(catalog, reads, newest, plain).await?;
            if seen.is_some_and(|own| own >= plain.len()) {
                let state = lock(&self.state);
                place = changes
                    .iter()
                    .filter_map(|c| state.entries.get(&entry_key(c)).map(|(_, p)| *p))
                    .max();
            }
        }
        let place = match place {
            Some(place) => place,
            None => {
                let mut own = self
                    .catch_up(catalog, reads, plain)
                    .await?
                    .unwrap_or_default();
                if own.is_empty() {
                    // Not found where they were written (the generation went meanwhile):
                    // they are applied as the latest, and the next read of the topic
                    // corrects that if not.
                    let mut state = lock(&self.state);
                    own = changes.iter().cloned().map(|c| state.apply(c)).collect();
                }
                own.iter().copied().max().unwrap_or_default()
            }
        };
        if lock(&self.state).headers_found != headers_found {
            return Ok(None);
        }
        Ok(Some(place))
    }

    /// `plain` changes sealed for `generation`.
    fn sealed(&self, generation: u64, plain: &[Bytes]) -> Result<Vec<Bytes>, BackendError> {
        let unbound = self.unbound_in(generation);
        plain
            .iter()
            .map(|p| seal(&self.key, generation, p, unbound))
            .collect()
    }

    /// Whether records written into `generation` are sealed as version 1: in generation
    /// 0, and in the generation this gateway reads when it has no header (one an older
    /// build compacted into), as older builds seal them, so that an older build sharing
    /// the stream (a rolling upgrade) or rolled back to reads them. Such a generation never
    /// gets a header, and version-1 records open in it already: this opens it to no
    /// replay it was not open to. (One exception: a generation a compactor of this build
    /// made and has not written its header into yet, completed meanwhile by a replayed
    /// older build's marker; what is stored into it and answered before the header lands
    /// counts for no gateway, as with the replayed records. This gateway then reads the
    /// generations anew ([`Self::catch_up`]), and a store under way stores again
    /// ([`Self::land`]).) A newer generation, a compaction's under
    /// way, gets version 2: a compaction of this build's binds it to itself, and an older
    /// build's copies what it needs from the generation before.
    fn unbound_in(&self, generation: u64) -> bool {
        let state = lock(&self.state);
        generation == 0 || (generation == state.generation && !state.bound && !state.reread)
    }

    /// Writes the changes `plain`, landed in `generation`, into every newer generation
    /// too, oldest first, until a listing shows none newer than the last written; the
    /// last listing.
    ///
    /// A compaction of `generation` may have read it before they landed, and will delete
    /// it once its own is complete; an unfinished one may never complete, which is why
    /// every newer one gets them, not the newest only. Order holds with any number of
    /// storers: a compaction copies what it read of the old generation, latest value per
    /// credential, in rounds (its snapshot first), and completes only after a round that
    /// found nothing new. A copy of an older value (the snapshot's included) can land in
    /// the new generation after these records only if the read it came from was made
    /// before they landed in the old generation; they landed there before this listing,
    /// this listing came before they were written into the new one, and that before the
    /// copy: the compactor's next round reads them and copies them again, after its copy.
    /// A store that lands after the round that found nothing new lists the new generation
    /// (created before that round) and writes itself there after every copy. None of this
    /// depends on how long anything takes: no gateway deletes or makes again a generation
    /// newer than the newest complete one, so these records land in the very generations
    /// a compactor writes into, however late either is. Two stores of one credential that
    /// both land in the old generation may end in the new one in the other order than in
    /// the old one: both were under way at once, so either order is one Kafka allows, and
    /// every gateway ends reading the new one. A generation deleted before these records
    /// reached it was older than a complete one, which has them (listed next, and written
    /// then).
    async fn write_newer(
        &self,
        catalog: &Catalog,
        generation: u64,
        plain: &[Bytes],
    ) -> Result<Vec<u64>, BackendError> {
        let mut last = generation;
        for _ in 0..MAX_NEWER_ROUNDS {
            let listed = self.list(catalog).await?;
            let newer: Vec<u64> = listed.iter().rev().copied().filter(|&g| g > last).collect();
            if newer.is_empty() {
                return Ok(listed);
            }
            for g in newer {
                match append(catalog, &topic_name(g), &self.sealed(g, plain)?).await {
                    Ok(()) | Err(BackendError::UnknownTopic(_)) => last = g,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(BackendError::Unavailable(
            "the SCRAM credentials generations kept changing as a change was written".into(),
        ))
    }

    fn wants_compaction(&self) -> bool {
        if !self.compaction {
            return false;
        }
        let pinned = lock(&self.pinned);
        let state = lock(&self.state);
        state.next > COMPACT_AFTER && state.next > 2 * state.live(&pinned)
    }

    /// Reads the current generation from where this gateway stopped to where it ended when
    /// the read began, applying each record, poll batch by poll batch; the places of the
    /// changes among `own` (payloads before sealing). `None` when the generation does not
    /// exist, or must be read whole again ([`Followed::reread`]): a header of this build's
    /// turned up in a generation taken as having none.
    ///
    /// Such a generation was completed by an older build's marker before its compactor
    /// wrote the header (one an Iggy user that may send to the stream replayed there):
    /// once the header lands, no other gateway counts what was read of it before the
    /// header, nor a version-1 record after it. Reading on would keep this gateway apart
    /// from them for as long as it reads that generation; it takes the generations anew
    /// instead, as at start ([`Self::switch`]).
    async fn catch_up(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        own: &[Bytes],
    ) -> Result<Option<Vec<u64>>, BackendError> {
        let (generation, from, unbound) = {
            let state = lock(&self.state);
            if state.reread {
                return Ok(None);
            }
            (state.generation, state.next, !state.bound)
        };
        let mut places = Vec::new();
        let mut skipped = Skipped::default();
        let end = read(catalog, reads, generation, from, |batch, end| {
            let mut state = lock(&self.state);
            if state.generation != generation || state.reread {
                return;
            }
            for (offset, payload) in batch {
                if offset < state.next {
                    continue;
                }
                match self.change(generation, &payload, offset, &mut skipped, unbound) {
                    Some((Record::Change(c), opened, _)) => {
                        let place = state.apply(c);
                        if own.iter().any(|o| **o == *opened) {
                            places.push(place);
                        }
                    }
                    Some((Record::Header { generation: g, .. }, _, version))
                        if unbound && version == SEAL_VERSION && g == generation =>
                    {
                        state.reread = true;
                        state.headers_found += 1;
                        return;
                    }
                    Some(_) => {}
                    None => state.unreadable += 1,
                }
            }
            state.next = state.next.max(end);
        })
        .await?;
        warn_unopened(skipped.unopened);
        if lock(&self.state).reread {
            return Ok(None);
        }
        Ok(end.map(|_| places))
    }

    /// The record a payload of generation `generation` holds, when it opens (version 1
    /// only when `unbound`) and is one, with the payload opened and its seal's version;
    /// counts those that do not.
    fn change(
        &self,
        generation: u64,
        payload: &[u8],
        offset: u64,
        skipped: &mut Skipped,
        unbound: bool,
    ) -> Option<(Record, Vec<u8>, u8)> {
        let Some((opened, version)) = open(&self.key, generation, payload, unbound) else {
            skipped.unopened += 1;
            return None;
        };
        let Some(record) = decode_record(&opened) else {
            skipped.unknown += 1;
            tracing::warn!(
                topic = %topic_name(generation),
                offset,
                "skipping a record that is not a SCRAM credential change Kafka would take"
            );
            return None;
        };
        Some((record, opened, version))
    }

    /// Generation `g` read whole, applying nothing, counting the changes of `own` (payloads
    /// before sealing) in it; `None` when it does not exist.
    async fn scan(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        g: u64,
        own: &[Bytes],
    ) -> Result<Option<Scan>, BackendError> {
        let mut scan = Scan::default();
        // Whether this build's marker completes it, and whether an older build's does.
        let (mut marked, mut legacy) = (false, false);
        // What the version-2 records hold, and how many of `own` they are, up to the
        // header: the generation held at its header, should the version-1 records before
        // it be someone's copies.
        let (mut bound_only, mut own_bound) = (Replayed::new(), 0);
        let end = read(catalog, reads, g, 0, |batch, _| {
            for (offset, payload) in batch {
                let unbound = scan.header.is_none();
                let Some((record, opened, version)) =
                    self.change(g, &payload, offset, &mut scan.skipped, unbound)
                else {
                    continue;
                };
                let v1 = version == SEAL_VERSION_UNBOUND;
                match record {
                    Record::Change(c) => {
                        let mine = own.iter().any(|o| **o == *opened);
                        if !v1 && scan.header.is_none() {
                            own_bound += usize::from(mine);
                            bound_only.insert(entry_key(&c), value(c.clone()));
                        }
                        scan.own += usize::from(mine);
                        scan.replayed.insert(entry_key(&c), value(c));
                    }
                    // The first header is the compaction that made the generation; only
                    // its own marker, after it, completes it (records are bound to their
                    // generation's number, and a compaction made again under that number
                    // has another id).
                    Record::Header {
                        generation,
                        compaction,
                    } if !v1 && generation == g && scan.header.is_none() => {
                        // A generation with a header is this build's: version-1 records
                        // in it (before the header: none after it opens) are copies an
                        // Iggy user that may send to the stream made, not its own.
                        scan.header = Some(compaction);
                        scan.replayed = std::mem::take(&mut bound_only);
                        scan.own = own_bound;
                    }
                    Record::Complete {
                        generation,
                        compaction,
                    } if !v1 && generation == g && scan.header == Some(compaction) => {
                        marked = true;
                    }
                    // An older build's marker completes a generation that build compacted
                    // into: one with no header. It names no generation, so, as with that
                    // build, an Iggy user that may send to the stream can replay one
                    // (after version-1 records of its choosing, replayed too) into a
                    // generation a compactor of this build made and died in (or is held up
                    // in) before writing its header: every gateway then reads what it
                    // chose. A header ends that: the version-1 records before it no longer
                    // count, and none after it opens. Version-2 records before the marker
                    // do not keep it from completing: they are stores of this build written
                    // into a generation an older build was compacting into (a rolling
                    // upgrade), and once its marker lands that build deletes the generation
                    // before; refusing its marker would leave this build no complete
                    // generation at all, where the replay it would hinder can land before
                    // the first such store as well.
                    Record::LegacyComplete if v1 => legacy = true,
                    Record::Header { .. } | Record::Complete { .. } | Record::LegacyComplete => {}
                }
            }
        })
        .await?;
        scan.complete = g == 0 || marked || (legacy && scan.header.is_none());
        Ok(end.map(|end| Scan { end, ..scan }))
    }

    /// Replays the newest complete generation of `generations` (listed, newest first) and
    /// takes it as the state; how many of the changes `own` it held, or `None` when there
    /// is no complete generation. A listed generation that went before it was read was
    /// compacted into a newer one: the generations are listed again, a few times, before
    /// this gives up with an error rather than take nothing. The unfinished ones newer
    /// than the one taken are noted ([`Self::note_unfinished`]).
    async fn switch(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        mut generations: Vec<u64>,
        own: &[Bytes],
    ) -> Result<Option<usize>, BackendError> {
        for _ in 0..MAX_SWITCH_ROUNDS {
            let mut gone = false;
            for &g in &generations {
                let taken = {
                    let state = lock(&self.state);
                    g == state.generation && !state.reread
                };
                if taken {
                    // Taken already: read on from where this gateway stopped, rather than
                    // read it whole again.
                    if let Some(places) = self.catch_up(catalog, reads, own).await? {
                        lock(&self.unfinished).retain(|&u, _| u > g);
                        return Ok(Some(places.len()));
                    }
                    if !lock(&self.state).reread {
                        gone = true;
                        continue;
                    }
                    // A header turned up in it as it was read on: read whole, as any other.
                    // It may be complete (its compactor's marker landed too), and an older
                    // complete generation listed after it is not the one every gateway reads.
                }
                let Some(scan) = self.scan(catalog, reads, g, own).await? else {
                    gone = true;
                    continue;
                };
                if !scan.complete {
                    self.note_unfinished(catalog, g, &scan);
                    continue;
                }
                warn_unopened(scan.skipped.unopened);
                let pinned = lock(&self.pinned);
                let mut state = lock(&self.state);
                if state.reread {
                    warn_held_apart(&state.held_apart(&scan.replayed, &pinned));
                }
                drop(pinned);
                state.adopt(g, scan.end, scan.replayed);
                state.unreadable = scan.skipped.total();
                state.bound = scan.header.is_some();
                lock(&self.unfinished).retain(|&u, _| u > g);
                return Ok(Some(scan.own));
            }
            if !gone {
                return Ok(None);
            }
            generations = self.list(catalog).await?;
        }
        Err(BackendError::Unavailable(
            "the SCRAM credentials generations kept going as they were read".into(),
        ))
    }

    /// Notes generation `g` seen unfinished, as `scan` has just read it: until it
    /// completes, nothing is compacted. Stores landing in it do not make it new; a header
    /// other than the one seen does (it was made again). Warns once when it has been
    /// unfinished for [`WARN_UNFINISHED_AFTER`]: here only, right after a read that found
    /// it so, since a note made minutes ago may be of a generation that completed since.
    fn note_unfinished(&self, catalog: &Catalog, g: u64, scan: &Scan) {
        let now = catalog.calls().clock().now();
        let mut unfinished = lock(&self.unfinished);
        let new = || Unfinished {
            since: now,
            scanned: now,
            header: scan.header,
            warned: false,
        };
        let seen = unfinished.entry(g).or_insert_with(new);
        if seen.header != scan.header {
            *seen = new();
        }
        seen.scanned = now;
        tracing::debug!(
            generation = g,
            "a SCRAM credentials generation is unfinished"
        );
        if !seen.warned && now.saturating_duration_since(seen.since) >= WARN_UNFINISHED_AFTER {
            seen.warned = true;
            tracing::warn!(
                topic = %topic_name(g),
                "a SCRAM credentials generation stays unfinished: the stream's SCRAM \
                 credentials are not compacted until it completes. If its compaction died \
                 (check first: a gateway started now replays an older generation, not this \
                 one), stop every gateway of the stream, delete this topic, then start them \
                 again"
            );
        }
    }

    /// Deletes the listed generations older than the one read, but those holding records
    /// this gateway cannot read: those are another gateway's, whose key differs. Nothing
    /// when the one read has no header (generation 0 has nothing older): an older build's
    /// marker completes it, and any Iggy user that may send to the stream can replay one
    /// into a generation a compactor of this build made and has not written its header
    /// into yet; once the header lands that generation is unfinished again, and the one
    /// before must still be there. What an older build compacted away and left is deleted
    /// after this build's next compaction.
    async fn drop_older(&self, catalog: &Catalog, reads: &Reads) -> Result<(), BackendError> {
        let (current, bound) = {
            let state = lock(&self.state);
            (state.generation, state.bound)
        };
        if !bound {
            return Ok(());
        }
        let listed = self.list(catalog).await?;
        for g in listed.into_iter().filter(|&g| g < current) {
            match self.scan(catalog, reads, g, &[]).await? {
                Some(scan) if scan.skipped.total() > 0 => {
                    warn_unreadable_kept(g, scan.skipped.total())
                }
                Some(_) => drop_topic(catalog, g).await,
                None => {}
            }
        }
        Ok(())
    }

    /// The generations listed, newest first.
    async fn list(&self, catalog: &Catalog) -> Result<Vec<u64>, BackendError> {
        let listed = generations(catalog).await?;
        let now = catalog.calls().clock().now();
        *lock(&self.listed) = Some(now);
        // One deleted (by an operator, or as older than a complete one) blocks nothing.
        lock(&self.unfinished).retain(|g, _| listed.contains(g));
        Ok(listed)
    }

    /// Writes the credentials (and the pinned deletions) into the next generation, after a
    /// header naming a random compaction id and closed by a marker naming it too, then
    /// deletes the older generations: until the marker is written, the current generation
    /// is the one every gateway reads, so a crash loses nothing.
    ///
    /// Creating the next generation is the lock: only the gateway whose CreateTopic made
    /// it compacts into it, and one that finds it there leaves it be. No gateway deletes a
    /// generation newer than the newest complete one, this one included when its
    /// compaction fails: a compaction that failed or died blocks the next ones (the topic
    /// then keeps every change, as with compaction off) until an operator deletes its
    /// generation, every gateway of the stream stopped (a store held up in a gateway could
    /// otherwise land in a generation made again under that number, and revive what a
    /// later change undid). A marker that lands late (its compactor paused, or its reply lost)
    /// completes the generation all the same, and that is safe: every change that landed
    /// in the old generation was copied before the marker or is written into the new one
    /// by its store ([`Self::write_newer`]), whenever either happens. Nothing is compacted
    /// while the current generation holds records this gateway cannot read: it would drop
    /// them. Nor while what is held must be read anew ([`Followed::reread`]): it is known
    /// to differ from what every other gateway holds.
    async fn compact(&self, catalog: &Catalog, reads: &Reads) -> Result<(), BackendError> {
        let (current, unreadable, reread) = {
            let state = lock(&self.state);
            (state.generation, state.unreadable, state.reread)
        };
        if reread {
            return Ok(());
        }
        if unreadable > 0 {
            self.warn_held_back(unreadable);
            return Ok(());
        }
        let now = catalog.calls().clock().now();
        let blocked = {
            let unfinished = lock(&self.unfinished);
            let mut newer = unfinished.iter().filter(|(&g, _)| g > current).peekable();
            newer.peek().is_some() && newer.all(|(_, u)| u.lately(now))
        };
        if blocked {
            // By unfinished generations, all read lately: not read again at each store.
            return Ok(());
        }
        let listed = self.list(catalog).await?;
        if listed.first().is_some_and(|&g| g > current) {
            // Compacted already, or being compacted through another gateway.
            self.switch(catalog, reads, listed, &[]).await?;
            return Ok(());
        }
        let next = current.checked_add(1).ok_or_else(|| {
            BackendError::Unavailable("no SCRAM generation after the last".into())
        })?;
        if !create_new(catalog, next).await? {
            return Ok(());
        }
        let id = compaction_id()?;
        let name = topic_name(next);
        let header = encode_mark(KIND_HEADER, next, &id);
        append(catalog, &name, &[seal(&self.key, next, &header, false)?]).await?;
        self.write_generation(catalog, reads, next).await?;
        let marker = encode_mark(KIND_COMPLETE, next, &id);
        append(catalog, &name, &[seal(&self.key, next, &marker, false)?]).await?;
        // Complete: the older generations go, and this gateway reads the new one.
        self.switch(catalog, reads, self.list(catalog).await?, &[])
            .await?;
        self.drop_older(catalog, reads).await
    }

    /// The compaction of the current generation into `next`, once this gateway made
    /// `next` and wrote its header, up to its marker.
    async fn write_generation(
        &self,
        catalog: &Catalog,
        reads: &Reads,
        next: u64,
    ) -> Result<(), BackendError> {
        let snapshot = self.snapshot();
        let name = topic_name(next);
        for chunk in snapshot.chunks(1000) {
            let plain: Vec<Bytes> = chunk.iter().map(encode).collect();
            append(catalog, &name, &self.sealed(next, &plain)?).await?;
        }
        // What lands in the current generation meanwhile goes after it, until a read of
        // the current generation finds nothing new after the last copy (why that keeps
        // the order: [`Self::write_newer`]).
        let mut held = self.values();
        for _ in 0..MAX_COPY_ROUNDS {
            if self.catch_up(catalog, reads, &[]).await?.is_none() {
                return Err(BackendError::Unavailable(
                    "the SCRAM credentials generation went during compaction".into(),
                ));
            }
            let unreadable = lock(&self.state).unreadable;
            if unreadable > 0 {
                self.warn_held_back(unreadable);
                return Err(BackendError::Unavailable(
                    "records this gateway cannot read landed during compaction".into(),
                ));
            }
            let now = self.values();
            let copies: Vec<Bytes> = now
                .iter()
                .filter(|(k, v)| held.get(*k).cloned().flatten() != **v)
                .filter_map(|((user, kind), v)| change(user, *kind, v.clone()))
                .map(|c| encode(&c))
                .collect();
            if copies.is_empty() {
                tracing::info!(
                    generation = next,
                    records = snapshot.len(),
                    "compacted the SCRAM credentials"
                );
                return Ok(());
            }
            append(catalog, &name, &self.sealed(next, &copies)?).await?;
            held = now;
        }
        Err(BackendError::Unavailable(
            "the SCRAM credentials kept changing during compaction".into(),
        ))
    }

    fn warn_held_back(&self, unreadable: u64) {
        if !self.held_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                topic = TOPIC,
                records = unreadable,
                "the SCRAM credentials topic is not compacted: it holds records this gateway \
                 cannot read (sealed under another gateway's Iggy credentials, or written by \
                 another Iggy user), which compaction would drop"
            );
        }
    }

    /// The credentials as changes that set them, and the pinned deletions.
    fn snapshot(&self) -> Vec<ScramChange> {
        let pinned = lock(&self.pinned);
        lock(&self.state)
            .entries
            .iter()
            .filter(|(k, (c, _))| c.is_some() || pinned.contains(*k))
            .filter_map(|((user, kind), (c, _))| change(user, *kind, c.clone()))
            .collect()
    }

    /// Every credential held, and `None` where the last change deleted one.
    fn values(&self) -> Replayed {
        lock(&self.state)
            .entries
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect()
    }
}

/// What main's build (before generations were bound to records) writes and reads, for
/// the upgrade tests: records sealed as version 1 with the version byte only as associated
/// data, and its marker, the payload `[1, 3]`.
#[cfg(test)]
pub(crate) mod as_main {
    use super::*;

    /// Main's marker closing a compacted generation.
    pub(crate) const COMPLETE: [u8; 2] = [1, KIND_COMPLETE];

    /// `payload` sealed as main's `seal` does.
    pub(crate) fn seal(key: &Key, payload: &[u8]) -> Bytes {
        let nonce = [7u8; NONCE_LEN];
        let sealed = ChaCha20Poly1305::new(key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: payload,
                    aad: &[SEAL_VERSION_UNBOUND],
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let mut b = BytesMut::new();
        b.put_u8(SEAL_VERSION_UNBOUND);
        b.put_slice(&nonce);
        b.put_slice(&sealed);
        b.freeze()
    }

    /// The payload of `record` as main's `open` finds it.
    pub(crate) fn open(key: &Key, record: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = record.split_first()?;
        if version != SEAL_VERSION_UNBOUND || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        ChaCha20Poly1305::new(key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[SEAL_VERSION_UNBOUND],
                },
            )
            .ok()
    }

    impl ScramStore {
        /// Writes `changes` into generation `generation` (made if missing) as main's build
        /// does, then main's marker when `complete`.
        pub(crate) async fn write_as_main(
            &self,
            catalog: &Catalog,
            generation: u64,
            changes: &[ScramChange],
            complete: bool,
        ) {
            create(catalog, generation)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut records: Vec<Bytes> = changes
                .iter()
                .map(|c| seal(&self.key, &encode(c)))
                .collect();
            if complete {
                records.push(seal(&self.key, &COMPLETE));
            }
            append(catalog, &topic_name(generation), &records)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }

        /// Every record of generation `generation`, as stored.
        pub(crate) async fn raw(
            &self,
            catalog: &Catalog,
            reads: &Reads,
            generation: u64,
        ) -> Vec<Bytes> {
            let mut all = Vec::new();
            read(catalog, reads, generation, 0, |batch, _| {
                all.extend(batch.into_iter().map(|(_, p)| p));
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            all
        }

        /// Whether this gateway opens `record` as main's build does.
        pub(crate) fn opens_as_main(&self, record: &[u8]) -> bool {
            open(&self.key, record).is_some()
        }

        /// The generations this gateway warned of as staying unfinished.
        pub(crate) fn warned_unfinished(&self) -> Vec<u64> {
            lock(&self.unfinished)
                .iter()
                .filter(|(_, u)| u.warned)
                .map(|(g, _)| *g)
                .collect()
        }
    }
}

/// The user and mechanism (Kafka's type) a change is of.
fn entry_key(c: &ScramChange) -> (String, i8) {
    match c {
        ScramChange::Set { user, credential } => (user.clone(), credential.mechanism.kafka_type()),
        ScramChange::Delete { user, mechanism } => (user.clone(), mechanism.kafka_type()),
    }
}

/// The credential a change leaves: `None` for a deletion.
fn value(c: ScramChange) -> Option<ScramCredential> {
    match c {
        ScramChange::Set { credential, .. } => Some(credential),
        ScramChange::Delete { .. } => None,
    }
}

/// A state entry as a change.
fn change(user: &str, kind: i8, credential: Option<ScramCredential>) -> Option<ScramChange> {
    match credential {
        Some(credential) => Some(ScramChange::Set {
            user: user.to_owned(),
            credential,
        }),
        None => ScramMechanism::from_kafka_type(kind).map(|mechanism| ScramChange::Delete {
            user: user.to_owned(),
            mechanism,
        }),
    }
}

fn warn_unopened(unopened: u64) {
    if unopened > 0 {
        tracing::warn!(
            topic = TOPIC,
            records = unopened,
            "skipped SCRAM credential records that do not open under the gateway's Iggy \
             credentials (they changed, or another Iggy user wrote the records): set \
             those SCRAM credentials again"
        );
    }
}

fn warn_held_apart(users: &[String]) {
    if !users.is_empty() {
        tracing::warn!(
            users = %users.join(", "),
            "SCRAM credentials of users the users file gives were set or deleted in a SCRAM \
             credentials generation whose completion was forged, while this gateway read it; \
             that counts for no gateway, and this gateway now holds these users' credentials \
             deleted where every other gateway holds the users file's: restart this gateway, \
             then set them again through Kafka if needed"
        );
    }
}

fn warn_unreadable_kept(generation: u64, records: u64) {
    tracing::warn!(
        topic = %topic_name(generation),
        records,
        "a SCRAM credentials generation holding records this gateway cannot read is not \
         deleted (another gateway's, logged in to Iggy with another secret?)"
    );
}

/// The credentials topic's generations in the stream, newest first.
async fn generations(catalog: &Catalog) -> Result<Vec<u64>, BackendError> {
    let mut all: Vec<u64> = catalog
        .stream_topics()
        .await?
        .iter()
        .filter_map(|t| generation(t.name.as_str()))
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    Ok(all)
}

/// Generation `generation` from offset `from` to where it ended when the read began, one
/// poll's records at a time given to `each` with the offset after them (so that memory is
/// bounded by a poll, not by the generation, which any Iggy user that may send to the
/// stream can grow; and so that records trickling in do not keep the read going: a later
/// read takes them); the offset after the last record, or `None` when the generation does
/// not exist.
async fn read(
    catalog: &Catalog,
    reads: &Reads,
    generation: u64,
    from: u64,
    mut each: impl FnMut(Vec<(u64, Bytes)>, u64),
) -> Result<Option<u64>, BackendError> {
    let topic = topic_name(generation);
    let mut next = from;
    // Iggy's last offset at the first poll.
    let mut last_at_start = None;
    loop {
        let body = match reads
            .poll(catalog, &topic, 0, WirePollingStrategy::offset(next), 1000)
            .await
        {
            Ok(b) => b,
            Err(BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let (messages, current, _) = wire::polled(&body, next, usize::MAX, usize::MAX, true)?;
        let last_at_start = *last_at_start.get_or_insert(current);
        let Some(last) = messages.last_offset() else {
            break;
        };
        next = last + 1;
        each(
            messages
                .iter()
                .map(|(o, m)| (o, m.payload.clone()))
                .collect(),
            next,
        );
        if next > last_at_start {
            break;
        }
    }
    Ok(Some(next))
}

async fn append(catalog: &Catalog, topic: &str, records: &[Bytes]) -> Result<(), BackendError> {
    let messages: MessageList = records
        .iter()
        .map(|payload| IggyMessage {
            payload: payload.clone(),
            ..IggyMessage::default()
        })
        .collect();
    let calls = catalog.calls();
    let ids = wire::Ids::counted(calls.message_ids(messages.len()));
    let body = wire::send_messages(calls.stream(), &named(topic)?, 0, &messages, ids)?;
    // Routed as any partition's appends: in a cluster, the partition may have a primary of
    // its own.
    let route = &catalog.partition(topic, 0).route;
    let sent = route.append(calls, (topic, 0), (SEND_MESSAGES_CODE, false), body.clone());
    let (reply, _) = route
        .settle(calls, (topic, 0), (SEND_MESSAGES_CODE, false, &body), sent)
        .await;
    reply
        .map(|_| ())
        .map_err(|f| match backend_error(f, topic, Some(0)) {
            e @ BackendError::UnknownTopic(_) => e,
            BackendError::UnknownPartition { .. } => {
                BackendError::UnknownTopic(TopicRef::Name(topic.into()))
            }
            other => BackendError::Unavailable(format!("the SCRAM credentials topic: {other}")),
        })
}

/// Creates generation `generation` where none is; one already there is taken.
async fn create(catalog: &Catalog, generation: u64) -> Result<(), BackendError> {
    create_new(catalog, generation).await.map(|_| ())
}

/// Creates generation `generation`: true when this call made it, false when it was there.
async fn create_new(catalog: &Catalog, generation: u64) -> Result<bool, BackendError> {
    let name = topic_name(generation);
    let request = CreateTopicRequest {
        stream_id: catalog.calls().stream().clone(),
        partitions_count: 1,
        name: WireName::new(name.clone()).map_err(|_| BackendError::InvalidTopic(name.clone()))?,
        // Credentials must outlive any retention: never-expire and no size limit, explicitly.
        options: wire::kept_forever_options(catalog.creating())?,
    };
    match catalog
        .calls()
        .call(admin_lane(&name), CREATE_TOPIC_CODE, request.to_bytes())
        .await
    {
        Ok(_) => Ok(true),
        Err(Failure::Status(code::TOPIC_NAME_ALREADY_EXISTS)) => Ok(false),
        Err(f) => Err(BackendError::Unavailable(format!(
            "cannot create the SCRAM credentials topic: {}",
            backend_error(f, &name, None)
        ))),
    }
}

async fn drop_topic(catalog: &Catalog, generation: u64) {
    let name = topic_name(generation);
    let Ok(topic_id) = named(&name) else { return };
    let request = DeleteTopicRequest {
        stream_id: catalog.calls().stream().clone(),
        topic_id,
    };
    if let Err(e) = catalog
        .calls()
        .call(admin_lane(&name), DELETE_TOPIC_CODE, request.to_bytes())
        .await
    {
        tracing::warn!(topic = %name, error = %e, "could not delete an old SCRAM credentials topic");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_strangers_are_skipped() {
        let set = ScramChange::Set {
            user: "alice".into(),
            credential: ScramCredential::from_password(
                ScramMechanism::Sha512,
                b"password-xyz",
                b"salt",
                4096,
            ),
        };
        let delete = ScramChange::Delete {
            user: "bob".into(),
            mechanism: ScramMechanism::Sha256,
        };
        for c in [&set, &delete] {
            let bytes = encode(c);
            assert_eq!(decode(&bytes).as_ref(), Some(c));
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
            }
        }
        let bytes = encode(&set);
        assert!(
            !bytes.windows(12).any(|w| w == b"password-xyz"),
            "no password in the record"
        );
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(decode(b"\x02\x01"), None);
        let store = ScramStore::new(&SecretString::from("secret".to_owned()), "kafka", false);
        let delete_alice = |mechanism| ScramChange::Delete {
            user: "alice".into(),
            mechanism,
        };
        {
            let mut state = lock(&store.state);
            assert_eq!(state.apply(set.clone()), 1);
            assert_eq!(state.apply(delete_alice(ScramMechanism::Sha256)), 2);
        }
        // Another mechanism's delete leaves it; the delete is kept, for the users file's
        // credentials.
        assert_eq!(
            store.credentials(),
            vec![delete_alice(ScramMechanism::Sha256), set.clone()]
        );
        lock(&store.state).apply(delete_alice(ScramMechanism::Sha512));
        assert_eq!(
            store.credentials(),
            vec![
                delete_alice(ScramMechanism::Sha256),
                delete_alice(ScramMechanism::Sha512)
            ]
        );
        // Compaction keeps the credentials and the pinned deletions only.
        let pinned = BTreeSet::from([("alice".to_owned(), ScramMechanism::Sha256.kafka_type())]);
        assert_eq!(lock(&store.state).live(&pinned), 1);
        store.pin_deletions([("alice".to_owned(), ScramMechanism::Sha256)]);
        assert_eq!(store.snapshot(), vec![delete_alice(ScramMechanism::Sha256)]);
        let marker = encode_mark(KIND_COMPLETE, 7, &[9; 16]);
        assert_eq!(
            decode_record(&marker),
            Some(Record::Complete {
                generation: 7,
                compaction: [9; 16]
            })
        );
        for cut in 0..marker.len() {
            assert_ne!(
                decode_record(&marker[..cut]),
                decode_record(&marker),
                "cut at {cut}"
            );
        }
        assert_eq!(decode_record(&encode(&set)), Some(Record::Change(set)));
    }

    #[test]
    fn a_generation_adopted_whole_gives_new_places_to_what_differs_only() {
        let cred =
            |pw: &[u8]| ScramCredential::from_password(ScramMechanism::Sha256, pw, b"salt", 4096);
        let key = |u: &str| (u.to_owned(), ScramMechanism::Sha256.kafka_type());
        let mut state = Followed::default();
        for (user, pw) in [("alice", b"a"), ("bob", b"b"), ("carol", b"c")] {
            state.apply(ScramChange::Set {
                user: user.into(),
                credential: cred(pw),
            });
        }
        let replayed = Replayed::from([
            (key("alice"), Some(cred(b"a"))),
            (key("bob"), Some(cred(b"B"))),
            (key("dave"), Some(cred(b"d"))),
        ]);
        state.adopt(4, 3, replayed);
        let place = |u: &str| state.entries.get(&key(u)).map(|(c, p)| (c.is_some(), *p));
        assert_eq!(place("alice"), Some((true, 1)), "unchanged");
        assert_eq!(place("bob"), Some((true, 4)));
        assert_eq!(place("carol"), Some((false, 5)), "compacted away: deleted");
        assert_eq!(place("dave"), Some((true, 6)));
        assert_eq!((state.generation, state.next, state.places), (4, 3, 6));
        // Read anew, going back a generation: the users file's users held and missing
        // from it are named.
        let pinned = BTreeSet::from([key("carol"), key("dave"), key("erin")]);
        assert_eq!(
            state.held_apart(&Replayed::new(), &pinned),
            ["carol", "dave"]
        );
        let replayed = Replayed::from([(key("carol"), None)]);
        assert_eq!(state.held_apart(&replayed, &pinned), ["dave"]);
        assert_eq!(generation(&topic_name(4)), Some(4));
        assert_eq!(generation(TOPIC), Some(0));
        assert_eq!(topic_name(0), TOPIC);
        for other in [
            "__kafka_gateway_scram.0",
            "__kafka_gateway_scram.x",
            "__kafka_gateway_scram.05",
            "__kafka_gateway_scram.+5",
            "__kafka_gateway_scram.18446744073709551616",
            "__kafka_gateway_scramx",
            "orders",
        ] {
            assert_eq!(generation(other), None, "{other}");
        }
    }

    /// The payload `record` of `generation` holds, when it opens under `key`.
    fn opened(key: &Key, generation: u64, record: &[u8], unbound: bool) -> Option<Vec<u8>> {
        open(key, generation, record, unbound).map(|(p, _)| p)
    }

    #[test]
    fn records_open_only_under_their_key_and_untouched() {
        let key = seal_key(b"gateway-password", "kafka");
        let record = seal(&key, 3, b"change", false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record[0], SEAL_VERSION);
        for unbound in [false, true] {
            assert_eq!(
                opened(&key, 3, &record, unbound).as_deref(),
                Some(&b"change"[..])
            );
        }
        assert!(
            !record.windows(6).any(|w| w == b"change"),
            "not in the clear"
        );
        let again = seal(&key, 3, b"change", false).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(record, again, "a fresh nonce each time");
        for other in [
            seal_key(b"another-password", "kafka"),
            seal_key(b"gateway-password", "other-stream"),
        ] {
            assert_eq!(opened(&other, 3, &record, true), None);
        }
        // Copied into another generation, it does not open.
        for g in [0, 2, 4, 3 << 32] {
            assert_eq!(opened(&key, g, &record, true), None, "generation {g}");
        }
        for i in 0..record.len() {
            let mut tampered = record.to_vec();
            tampered[i] ^= 1;
            assert_eq!(opened(&key, 3, &tampered, true), None, "byte {i} flipped");
        }
        for cut in 0..record.len() {
            assert_eq!(opened(&key, 3, &record[..cut], true), None, "cut at {cut}");
        }
        assert_eq!(
            opened(&key, 3, &encode_sample(), true),
            None,
            "an unsealed change"
        );
    }

    /// Generation 0's records are sealed as older builds seal them, which read them; those
    /// records (older builds' compacted generations' too) open only where asked to.
    #[test]
    fn records_of_the_first_generation_are_sealed_as_older_builds_seal_them() {
        let key = seal_key(b"gateway-password", "kafka");
        let record = seal(&key, 0, b"change", true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record[0], SEAL_VERSION_UNBOUND);
        assert_eq!(
            as_main::open(&key, &record).as_deref(),
            Some(&b"change"[..])
        );
        let old = as_main::seal(&key, b"change");
        for r in [&record, &old] {
            for g in [0, 1, 5] {
                assert_eq!(opened(&key, g, r, true).as_deref(), Some(&b"change"[..]));
                assert_eq!(opened(&key, g, r, false), None, "generation {g}");
            }
        }
        assert_eq!(
            decode_record(&as_main::COMPLETE),
            Some(Record::LegacyComplete)
        );
    }

    fn encode_sample() -> Bytes {
        encode(&ScramChange::Delete {
            user: "root".into(),
            mechanism: ScramMechanism::Sha256,
        })
    }

    #[test]
    fn records_outside_kafkas_bounds_are_refused() {
        let good = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt", 4096);
        let set = |user: &str, change: &dyn Fn(&mut ScramCredential)| {
            let mut credential = good.clone();
            change(&mut credential);
            encode(&ScramChange::Set {
                user: user.into(),
                credential,
            })
        };
        assert!(decode(&set("alice", &|_| ())).is_some());
        assert!(decode(&set("alice", &|c| c.iterations = 16384)).is_some());
        assert!(decode(&set("alice", &|c| c.salt = vec![1; 1024])).is_some());
        type Change<'a> = &'a dyn Fn(&mut ScramCredential);
        let bad: [(&str, Change<'_>); 9] = [
            ("", &|_| ()),
            ("alice", &|c| c.iterations = 4095),
            ("alice", &|c| c.iterations = 16385),
            ("alice", &|c| c.iterations = u32::MAX),
            ("alice", &|c| c.salt.clear()),
            ("alice", &|c| c.salt = vec![1; 1025]),
            ("alice", &|c| c.stored_key.truncate(31)),
            ("alice", &|c| c.server_key.push(0)),
            // SHA-512 keys under SHA-256.
            ("alice", &|c| {
                c.stored_key = vec![0; 64];
                c.server_key = vec![0; 64];
            }),
        ];
        for (i, (user, change)) in bad.iter().enumerate() {
            assert_eq!(decode(&set(user, change)), None, "case {i}");
        }
        let delete = encode(&ScramChange::Delete {
            user: String::new(),
            mechanism: ScramMechanism::Sha256,
        });
        assert_eq!(decode(&delete), None);
    }
}
