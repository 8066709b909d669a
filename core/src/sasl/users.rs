//! The users SASL checks against: SCRAM credentials per user and mechanism (salted,
//! iterated keys only), which also verify PLAIN passwords, and the super users that may
//! manage them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// What DescribeUserScramCredentials shows of a credential: never its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The iteration count.
    pub iterations: u32,
}

/// The users SASL knows, shared by every connection; changed by AlterUserScramCredentials
/// while connections read it.
#[derive(Debug, Default)]
pub struct Users {
    credentials: RwLock<BTreeMap<String, Vec<ScramCredential>>>,
    super_users: BTreeSet<String>,
    /// PLAIN logins that succeeded lately: per user, a keyed MAC of the password (never
    /// the password) and until when it stands in for the PBKDF2 check.
    plain_cache: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    /// How long a login is remembered there; zero: not at all.
    plain_cache_ttl: Duration,
    /// Per user and mechanism, the place in the backend's order of the last stored change
    /// applied here ([`Users::apply_stored`]).
    applied: Mutex<HashMap<(String, ScramMechanism), u64>>,
}

/// How long a successful PLAIN login spares the next ones with the same password the
/// check, unless [`Users::with_plain_cache`] says otherwise.
pub const PLAIN_CACHE_TTL: Duration = Duration::from_secs(300);
/// The most users the PLAIN cache remembers.
const PLAIN_CACHE_USERS: usize = 10_000;

impl Users {
    /// No users; `super_users` may manage credentials once they exist and authenticate.
    #[must_use]
    pub fn new(super_users: impl IntoIterator<Item = String>) -> Self {
        Self {
            credentials: RwLock::default(),
            super_users: super_users.into_iter().collect(),
            plain_cache: Mutex::default(),
            plain_cache_ttl: PLAIN_CACHE_TTL,
            applied: Mutex::default(),
        }
    }

    /// Sets (`Some`) or deletes `user`'s credential for `mechanism` as a change the
    /// backend kept at `place` in its order: unless a change it kept later is applied
    /// already, so that concurrent alterations end as the backend keeps them, whatever
    /// order their answers arrive in. Whether it was applied.
    pub fn apply_stored(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: Option<ScramCredential>,
        place: u64,
    ) -> bool {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let last = applied.entry((user.to_owned(), mechanism)).or_insert(0);
        if *last >= place {
            return false;
        }
        *last = place;
        match credential {
            Some(c) => self.set(user, c),
            None => {
                self.remove(user, mechanism);
            }
        }
        true
    }

    /// Remembers successful PLAIN logins for `ttl` rather than [`PLAIN_CACHE_TTL`]; zero
    /// remembers none, so that every login is checked. This bounds how long a password
    /// changed where it is checked (in Iggy) still lets a client in.
    #[must_use]
    pub fn with_plain_cache(mut self, ttl: Duration) -> Self {
        self.plain_cache_ttl = ttl;
        self
    }

    /// Adds or replaces `user`'s credential for the credential's mechanism.
    pub fn set(&self, user: &str, credential: ScramCredential) {
        self.forget_plain(user);
        let mut all = self
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = all.entry(user.to_owned()).or_default();
        list.retain(|c| c.mechanism != credential.mechanism);
        list.push(credential);
    }

    /// Removes `user`'s credential for `mechanism`; false when there was none.
    pub fn remove(&self, user: &str, mechanism: ScramMechanism) -> bool {
        self.forget_plain(user);
        let mut all = self
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = all.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|c| c.mechanism != mechanism);
        let removed = list.len() != before;
        if list.is_empty() {
            all.remove(user);
        }
        removed
    }

    /// `user`'s credential for `mechanism`.
    #[must_use]
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)?
            .iter()
            .find(|c| c.mechanism == mechanism)
            .cloned()
    }

    /// What `user` has, by mechanism; empty for an unknown user.
    #[must_use]
    pub fn describe(&self, user: &str) -> Vec<ScramCredentialInfo> {
        let all = self
            .credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut infos: Vec<_> = all
            .get(user)
            .map(|list| {
                list.iter()
                    .map(|c| ScramCredentialInfo {
                        mechanism: c.mechanism,
                        iterations: c.iterations,
                    })
                    .collect()
            })
            .unwrap_or_default();
        infos.sort_by_key(|i| i.mechanism.kafka_type());
        infos
    }

    /// The iteration count most of the users' `mechanism` credentials have (Kafka's
    /// minimum when there are none), within Kafka's 4,096..=16,384 (a decoy never costs
    /// more, or says less, than a credential Kafka would take): what an unknown user's
    /// decoy shows, and what its PLAIN check costs.
    #[must_use]
    pub fn typical_iterations(&self, mechanism: ScramMechanism) -> u32 {
        let all = self
            .credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for c in all.values().flatten().filter(|c| c.mechanism == mechanism) {
            *counts.entry(c.iterations).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .map_or(MIN_ITERATIONS, |(i, _)| i)
            .clamp(MIN_ITERATIONS, MAX_ITERATIONS)
    }

    /// Every user with a credential, in name order.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn forget_plain(&self, user: &str) {
        self.plain_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user);
    }

    /// Whether `password` is `user`'s, at `now`: as [`Users::verify_plain`], except that a
    /// password that passed lately (see [`Users::with_plain_cache`]) passes again without the PBKDF2
    /// check, by a MAC under `key` (a per-process secret), so that a client reconnecting
    /// does not cost a key derivation each time. Failures are never remembered, and a
    /// credential change forgets the user.
    #[must_use]
    pub fn verify_plain_at(&self, user: &str, password: &[u8], now: Instant, key: &[u8]) -> bool {
        if self.plain_remembered(user, password, now, key) {
            return true;
        }
        if !self.verify_plain(user, password) {
            return false;
        }
        self.remember_plain(user, password, now, key);
        true
    }

    /// Whether `password` passed for `user` lately (by its MAC under `key`).
    #[must_use]
    pub fn plain_remembered(&self, user: &str, password: &[u8], now: Instant, key: &[u8]) -> bool {
        let mac = plain_mac(user, password, key);
        self.plain_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .is_some_and(|(m, until)| now < *until && bool::from(m.ct_eq(&mac)))
    }

    /// Remembers, for the cache's time, that `password` passed for `user`: its MAC under
    /// `key`, never the password. The cache holds at most 10,000 users; past that, the
    /// expired go, and then everyone.
    pub fn remember_plain(&self, user: &str, password: &[u8], now: Instant, key: &[u8]) {
        if self.plain_cache_ttl.is_zero() {
            return;
        }
        let mac = plain_mac(user, password, key);
        let mut cache = self
            .plain_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= PLAIN_CACHE_USERS {
            cache.retain(|_, (_, until)| now < *until);
            if cache.len() >= PLAIN_CACHE_USERS {
                cache.clear();
            }
        }
        cache.insert(user.to_owned(), (mac, now + self.plain_cache_ttl));
    }

    /// Whether `password` is `user`'s: checked against the user's SCRAM credential (the
    /// strongest it has), so that no password is ever kept. An unknown user costs the same
    /// work as a known one, so that timing does not tell them apart.
    #[must_use]
    pub fn verify_plain(&self, user: &str, password: &[u8]) -> bool {
        let credential = self
            .get(user, ScramMechanism::Sha512)
            .or_else(|| self.get(user, ScramMechanism::Sha256));
        match credential {
            Some(c) => c.verify_password(password),
            None => {
                // The work of a known user's check: one PBKDF2 at the usual count.
                let _ = ScramCredential::from_password(
                    ScramMechanism::Sha512,
                    password,
                    user.as_bytes(),
                    self.typical_iterations(ScramMechanism::Sha512),
                );
                false
            }
        }
    }

    /// Whether `principal` is a super user (Kafka's `super.users`): may manage credentials.
    #[must_use]
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }
}

/// A keyed MAC of `user` and `password`: what the PLAIN cache keeps.
fn plain_mac(user: &str, password: &[u8], key: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(user.len() + 1 + password.len());
    data.extend_from_slice(user.as_bytes());
    data.push(0);
    data.extend_from_slice(password);
    let mac = ScramMechanism::Sha512.hmac(key, &data);
    data.iter_mut().for_each(|b| *b = 0);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_logins_are_remembered_by_a_mac_only_and_forgotten_on_change() {
        let users = Users::new(Vec::new());
        users.set(
            "alice",
            ScramCredential::from_password(ScramMechanism::Sha512, b"pw", b"s", 4096),
        );
        let (key, now) = ([7u8; 32], Instant::now());
        assert!(!users.verify_plain_at("alice", b"nope", now, &key));
        assert!(users
            .plain_cache
            .lock()
            .map(|c| c.is_empty())
            .unwrap_or(false));
        assert!(users.verify_plain_at("alice", b"pw", now, &key));
        let kept = users
            .plain_cache
            .lock()
            .map(|c| c.get("alice").cloned())
            .ok()
            .flatten();
        let (mac, until) = kept.unwrap_or_else(|| panic!("remembered"));
        assert_ne!(&mac[..], b"pw", "a MAC, not the password");
        assert_eq!(until, now + PLAIN_CACHE_TTL);
        // A remembered login does not let another password in.
        assert!(!users.verify_plain_at("alice", b"pw2", now, &key));
        assert!(users.verify_plain_at("alice", b"pw", now + PLAIN_CACHE_TTL, &key));
        // A new credential forgets what was remembered.
        users.set(
            "alice",
            ScramCredential::from_password(ScramMechanism::Sha512, b"new", b"s", 4096),
        );
        assert!(!users.verify_plain_at("alice", b"pw", now, &key));
        assert!(users.verify_plain_at("alice", b"new", now, &key));
    }

    #[test]
    fn the_plain_cache_keeps_logins_for_its_time_or_not_at_all() {
        let (key, now) = ([7u8; 32], Instant::now());
        let users = Users::new(Vec::new()).with_plain_cache(Duration::from_secs(30));
        users.remember_plain("alice", b"pw", now, &key);
        let later = |s| now + Duration::from_secs(s);
        assert!(users.plain_remembered("alice", b"pw", later(29), &key));
        assert!(!users.plain_remembered("alice", b"pw", later(30), &key));
        let users = Users::new(Vec::new()).with_plain_cache(Duration::ZERO);
        users.remember_plain("alice", b"pw", now, &key);
        assert!(!users.plain_remembered("alice", b"pw", now, &key));
        assert!(users
            .plain_cache
            .lock()
            .map(|c| c.is_empty())
            .unwrap_or(false));
    }

    #[test]
    fn typical_iterations_stay_within_kafkas_bounds() {
        let users = Users::new(Vec::new());
        assert_eq!(users.typical_iterations(ScramMechanism::Sha512), 4096);
        let odd = |i| ScramCredential {
            mechanism: ScramMechanism::Sha512,
            salt: b"s".to_vec(),
            iterations: i,
            stored_key: vec![0; 64],
            server_key: vec![0; 64],
        };
        users.set("huge", odd(u32::MAX));
        assert_eq!(users.typical_iterations(ScramMechanism::Sha512), 16384);
        users.set("huge", odd(1));
        assert_eq!(users.typical_iterations(ScramMechanism::Sha512), 4096);
    }

    #[test]
    fn credentials_are_kept_per_mechanism_and_verify_plain() {
        let users = Users::new(["admin".to_owned()]);
        assert!(!users.verify_plain("alice", b"pw"));
        users.set(
            "alice",
            ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"s1", 4096),
        );
        assert!(users.verify_plain("alice", b"pw"));
        assert!(!users.verify_plain("alice", b"pw2"));
        users.set(
            "alice",
            ScramCredential::from_password(ScramMechanism::Sha512, b"other", b"s2", 8192),
        );
        // The strongest credential decides.
        assert!(users.verify_plain("alice", b"other"));
        assert_eq!(
            users.describe("alice"),
            vec![
                ScramCredentialInfo {
                    mechanism: ScramMechanism::Sha256,
                    iterations: 4096
                },
                ScramCredentialInfo {
                    mechanism: ScramMechanism::Sha512,
                    iterations: 8192
                }
            ]
        );
        assert!(users.remove("alice", ScramMechanism::Sha512));
        assert!(!users.remove("alice", ScramMechanism::Sha512));
        assert!(users.verify_plain("alice", b"pw"));
        assert!(users.remove("alice", ScramMechanism::Sha256));
        assert!(users.names().is_empty());
        assert!(users.is_super_user("admin") && !users.is_super_user("alice"));
    }
}
