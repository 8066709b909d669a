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
//! Credentials change seldom, so the topic is not compacted: each change is one record of
//! about 200 bytes. One gateway per stream writes it; another gateway's changes are seen
//! at its next start.
//!
//! Each record is sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256, salt
//! [`SEAL_SALT`], the stream's name as info) from the secret of the gateway's own Iggy
//! credentials: any Iggy user with `send_messages` or `poll_messages` on the stream could
//! otherwise plant a credential for a super user or read the keys. A record is the seal's
//! version `1`, a random 96-bit nonce, then the ciphertext and tag of the change, with the
//! version byte as associated data. A record that does not open is skipped at replay and
//! counted (the gateway's Iggy credentials changed, or someone else wrote it).
//!
//! The change (little-endian): version `1`; kind (1 set, 2 delete); the user as a
//! u16-length string; the mechanism as Kafka's type (i8); for a set, the iteration count
//! (u32), then the salt, StoredKey and ServerKey, each as u16-length bytes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use iggy_kafka_core::backend::{BackendError, TopicRef};
use iggy_kafka_core::message::{IggyMessage, MessageList};
use iggy_kafka_core::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
use iggy_kafka_iggy_client::protocol::codes::{CREATE_TOPIC_CODE, SEND_MESSAGES_CODE};
use iggy_kafka_iggy_client::protocol::requests::topics::CreateTopicRequest;
use iggy_kafka_iggy_client::protocol::{WireEncode, WireName, WirePollingStrategy};
use iggy_kafka_iggy_client::Failure;
use secrecy::{ExposeSecret, SecretString};

use crate::calls::admin_lane;
use crate::catalog::Catalog;
use crate::read::Reads;
use crate::sync::{lock, Gate};
use crate::wire::{self, backend_error, code, named};

/// The topic that holds the credentials.
pub(crate) use crate::offsets_log::SCRAM_TOPIC as TOPIC;

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
/// The sealed record's version.
const SEAL_VERSION: u8 = 1;
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

/// `payload` sealed under `key` with a fresh random nonce.
fn seal(key: &Key, payload: &[u8]) -> Result<Bytes, BackendError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| {
        BackendError::Unavailable(format!(
            "no random nonce for a SCRAM credential record: {e}"
        ))
    })?;
    let sealed = ChaCha20Poly1305::new(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: payload,
                aad: &[SEAL_VERSION],
            },
        )
        .map_err(|_| BackendError::Unavailable("cannot seal a SCRAM credential record".into()))?;
    let mut b = BytesMut::with_capacity(1 + NONCE_LEN + sealed.len());
    b.put_u8(SEAL_VERSION);
    b.put_slice(&nonce);
    b.put_slice(&sealed);
    Ok(b.freeze())
}

/// The payload a sealed record holds, when it opens under `key`.
fn open(key: &Key, record: &[u8]) -> Option<Vec<u8>> {
    let (&version, rest) = record.split_first()?;
    if version != SEAL_VERSION || rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    ChaCha20Poly1305::new(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &[SEAL_VERSION],
            },
        )
        .ok()
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

type State = BTreeMap<(String, i8), Option<ScramCredential>>;

/// The credentials as the topic holds them.
pub(crate) struct ScramStore {
    /// The key the records are sealed under.
    key: Key,
    /// Held while the topic is written, so that the records keep the order of the changes.
    gate: Gate,
    /// How many stores were written, under the gate: each store's place in the topic's
    /// order, which the gateway's memory follows.
    written: std::sync::atomic::AtomicU64,
    /// By user and mechanism (Kafka's type): the credentials the topic holds, and `None`
    /// where its last change deleted one (a credential the users file gives is deleted
    /// again at each start).
    state: Mutex<State>,
}

impl ScramStore {
    /// No credentials yet; records sealed under the key of `secret` (the gateway's Iggy
    /// password or token) and `stream`.
    pub(crate) fn new(secret: &SecretString, stream: &str) -> Self {
        Self {
            key: seal_key(secret.expose_secret().as_bytes(), stream),
            gate: Gate::default(),
            written: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::default(),
        }
    }

    /// Replays the topic (nothing when it does not exist yet).
    pub(crate) async fn open(&self, catalog: &Catalog, reads: &Reads) -> Result<(), BackendError> {
        let mut next = 0;
        let mut state = BTreeMap::new();
        let mut unopened = 0u64;
        loop {
            let body = match reads
                .poll(catalog, TOPIC, 0, WirePollingStrategy::offset(next), 1000)
                .await
            {
                Ok(b) => b,
                Err(BackendError::UnknownTopic(_) | BackendError::UnknownPartition { .. }) => break,
                Err(e) => return Err(e),
            };
            let (messages, ..) = wire::polled(&body, next, usize::MAX, usize::MAX, true)?;
            let Some((last, _)) = messages.last() else {
                break;
            };
            next = last + 1;
            for (offset, m) in messages.iter() {
                let Some(payload) = open(&self.key, &m.payload) else {
                    unopened += 1;
                    continue;
                };
                match decode(&payload) {
                    Some(change) => apply(&mut state, change),
                    None => {
                        tracing::warn!(
                            topic = TOPIC,
                            offset,
                            "skipping a record that is not a SCRAM credential change Kafka would take"
                        );
                    }
                }
            }
        }
        if unopened > 0 {
            tracing::warn!(
                topic = TOPIC,
                records = unopened,
                "skipped SCRAM credential records that do not open under the gateway's Iggy \
                 credentials (they changed, or another Iggy user wrote the records): set \
                 those SCRAM credentials again"
            );
        }
        if !state.is_empty() {
            let credentials = state.values().filter(|c| c.is_some()).count();
            tracing::info!(
                credentials,
                deletions = state.len() - credentials,
                "SCRAM credentials replayed from Iggy"
            );
        }
        *lock(&self.state) = state;
        Ok(())
    }

    /// The credentials replayed or stored since, as changes that set them, and the
    /// deletions, so that a credential the users file gives and Kafka deleted stays
    /// deleted.
    pub(crate) fn credentials(&self) -> Vec<ScramChange> {
        lock(&self.state)
            .iter()
            .filter_map(|((user, kind), c)| match c {
                Some(credential) => Some(ScramChange::Set {
                    user: user.clone(),
                    credential: credential.clone(),
                }),
                None => {
                    ScramMechanism::from_kafka_type(*kind).map(|mechanism| ScramChange::Delete {
                        user: user.clone(),
                        mechanism,
                    })
                }
            })
            .collect()
    }

    /// Appends `changes` to the topic (creating it at the first change), in one batch;
    /// the store's place in the topic's order (1 for the first store of this process, and
    /// one more for each after it).
    ///
    /// # Errors
    /// When Iggy did not take them; they may have landed all the same (a lost reply), and
    /// then apply at the next start.
    pub(crate) async fn store(
        &self,
        catalog: &Catalog,
        changes: Vec<ScramChange>,
    ) -> Result<u64, BackendError> {
        let _gate = self.gate.enter().await;
        let place = self
            .written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if changes.is_empty() {
            return Ok(place);
        }
        match append(catalog, &self.key, &changes).await {
            Err(BackendError::UnknownTopic(_)) => {
                create(catalog).await?;
                append(catalog, &self.key, &changes).await?;
            }
            other => other?,
        }
        let mut state = lock(&self.state);
        for change in changes {
            apply(&mut state, change);
        }
        Ok(place)
    }
}

fn apply(state: &mut State, change: ScramChange) {
    match change {
        ScramChange::Set { user, credential } => {
            state.insert((user, credential.mechanism.kafka_type()), Some(credential));
        }
        ScramChange::Delete { user, mechanism } => {
            state.insert((user, mechanism.kafka_type()), None);
        }
    }
}

async fn append(catalog: &Catalog, key: &Key, changes: &[ScramChange]) -> Result<(), BackendError> {
    let messages: MessageList = changes
        .iter()
        .map(|c| {
            Ok(IggyMessage {
                payload: seal(key, &encode(c))?,
                ..IggyMessage::default()
            })
        })
        .collect::<Result<_, BackendError>>()?;
    let calls = catalog.calls();
    let ids = wire::Ids::counted(calls.message_ids(messages.len()));
    let body = wire::send_messages(calls.stream(), &named(TOPIC)?, 0, &messages, ids)?;
    // Routed as any partition's appends: in a cluster, the partition may have a primary of
    // its own.
    let route = &catalog.partition(TOPIC, 0).route;
    let sent = route.append(calls, (TOPIC, 0), (SEND_MESSAGES_CODE, false), body.clone());
    let (reply, _) = route
        .settle(calls, (TOPIC, 0), (SEND_MESSAGES_CODE, false, &body), sent)
        .await;
    reply
        .map(|_| ())
        .map_err(|f| match backend_error(f, TOPIC, Some(0)) {
            e @ BackendError::UnknownTopic(_) => e,
            BackendError::UnknownPartition { .. } => {
                BackendError::UnknownTopic(TopicRef::Name(TOPIC.into()))
            }
            other => BackendError::Unavailable(format!("the SCRAM credentials topic: {other}")),
        })
}

async fn create(catalog: &Catalog) -> Result<(), BackendError> {
    let request = CreateTopicRequest {
        stream_id: catalog.calls().stream().clone(),
        partitions_count: 1,
        name: WireName::new(TOPIC.to_owned())
            .map_err(|_| BackendError::InvalidTopic(TOPIC.into()))?,
        // Credentials must outlive any retention: never-expire and no size limit, explicitly.
        options: wire::kept_forever_options(catalog.creating())?,
    };
    match catalog
        .calls()
        .call(admin_lane(TOPIC), CREATE_TOPIC_CODE, request.to_bytes())
        .await
    {
        Ok(_) | Err(Failure::Status(code::TOPIC_NAME_ALREADY_EXISTS)) => Ok(()),
        Err(f) => Err(BackendError::Unavailable(format!(
            "cannot create the SCRAM credentials topic: {}",
            backend_error(f, TOPIC, None)
        ))),
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
        let store = ScramStore::new(&SecretString::from("secret".to_owned()), "kafka");
        let delete_alice = |mechanism| ScramChange::Delete {
            user: "alice".into(),
            mechanism,
        };
        {
            let mut state = lock(&store.state);
            apply(&mut state, set.clone());
            apply(&mut state, delete_alice(ScramMechanism::Sha256));
        }
        // Another mechanism's delete leaves it; the delete is kept, for the users file's
        // credentials.
        assert_eq!(
            store.credentials(),
            vec![delete_alice(ScramMechanism::Sha256), set]
        );
        apply(
            &mut lock(&store.state),
            delete_alice(ScramMechanism::Sha512),
        );
        assert_eq!(
            store.credentials(),
            vec![
                delete_alice(ScramMechanism::Sha256),
                delete_alice(ScramMechanism::Sha512)
            ]
        );
    }

    #[test]
    fn records_open_only_under_their_key_and_untouched() {
        let key = seal_key(b"gateway-password", "kafka");
        let record = seal(&key, b"change").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(record[0], SEAL_VERSION);
        assert_eq!(open(&key, &record).as_deref(), Some(&b"change"[..]));
        assert!(
            !record.windows(6).any(|w| w == b"change"),
            "not in the clear"
        );
        let again = seal(&key, b"change").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(record, again, "a fresh nonce each time");
        for other in [
            seal_key(b"another-password", "kafka"),
            seal_key(b"gateway-password", "other-stream"),
        ] {
            assert_eq!(open(&other, &record), None);
        }
        for i in 0..record.len() {
            let mut tampered = record.to_vec();
            tampered[i] ^= 1;
            assert_eq!(open(&key, &tampered), None, "byte {i} flipped");
        }
        for cut in 0..record.len() {
            assert_eq!(open(&key, &record[..cut]), None, "cut at {cut}");
        }
        assert_eq!(open(&key, &encode_sample()), None, "an unsealed change");
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
