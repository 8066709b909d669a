//! Client quotas as Kafka keeps and enforces them: byte rates per user, per client id, or
//! both (with defaults), set with AlterClientQuotas, read with DescribeClientQuotas, and
//! enforced on Produce (request bytes) and Fetch (response bytes) by throttling: the
//! response carries `throttle_time_ms` and the connection reads nothing more for that
//! long (KIP-219), as a Kafka broker mutes a channel.
//!
//! Rates are measured as Kafka's `Rate` measures them: bytes over the last 11 one-second
//! samples. The clock is the caller's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Kafka's quota keys for users and client ids.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// See [`PRODUCER_BYTE_RATE`].
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Kept and described; the gateway does not measure request time, so it is not enforced.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Kept and described; topic creation is not rate-limited by the gateway.
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

const KEYS: [&str; 4] = [
    PRODUCER_BYTE_RATE,
    CONSUMER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    CONTROLLER_MUTATION_RATE,
];

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
const SAMPLES: usize = 11;
const SAMPLE: Duration = Duration::from_secs(1);
/// Trackers not used for this long are dropped, so that client ids do not pile up.
const IDLE_TRACKER: Duration = Duration::from_secs(600);

/// Whom a quota is for: a user, a client id, or both; `Some(None)` is the default of that
/// entity type (Kafka's `<default>`), `None` that the type is not part of the entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    /// The user part.
    pub user: Option<Option<String>>,
    /// The client-id part.
    pub client_id: Option<Option<String>>,
}

/// Which byte rate a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Produce requests' bytes.
    Produce,
    /// Fetch responses' bytes.
    Fetch,
}

#[derive(Debug)]
struct Tracker {
    /// (start of the sample, bytes in it), oldest first.
    samples: VecDeque<(Instant, u64)>,
    last_used: Instant,
}

impl Tracker {
    fn record(&mut self, now: Instant, bytes: u64) -> f64 {
        self.last_used = now;
        // Samples older than the whole window no longer count.
        let span = SAMPLE * SAMPLES as u32;
        while self.samples.front().is_some_and(|(s, _)| *s + span <= now) {
            self.samples.pop_front();
        }
        match self.samples.back_mut() {
            Some((start, n)) if now < *start + SAMPLE => *n += bytes,
            _ => self.samples.push_back((now, bytes)),
        }
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
        // Kafka's window: from the oldest sample kept, and never less than the full
        // samples before the current one, so that a burst after a quiet spell is not
        // measured over a few milliseconds.
        let oldest = self.samples.front().map_or(now, |(s, _)| *s);
        let elapsed = now.saturating_duration_since(oldest);
        let window = elapsed.max(SAMPLE * (SAMPLES as u32 - 1));
        let total: u64 = self.samples.iter().map(|(_, n)| n).sum();
        total as f64 / window.as_secs_f64()
    }
}

/// The quotas, shared by every connection.
#[derive(Debug, Default)]
pub struct Quotas {
    configured: RwLock<BTreeMap<Entity, BTreeMap<String, f64>>>,
    trackers: Mutex<HashMap<(Entity, Direction), Tracker>>,
}

/// Why a quota alteration was refused: Kafka's INVALID_REQUEST with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaError(pub String);

impl Quotas {
    /// Checks `entity` and `ops` as Kafka's controller does, and applies them unless
    /// `validate_only`.
    ///
    /// # Errors
    /// The message of Kafka's INVALID_REQUEST.
    pub fn alter(
        &self,
        entity: &Entity,
        ops: &[(String, f64, bool)],
        validate_only: bool,
    ) -> Result<(), QuotaError> {
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(QuotaError("Invalid empty client quota entity".into()));
        }
        for (key, value, remove) in ops {
            if !KEYS.contains(&key.as_str()) {
                return Err(QuotaError(format!("Invalid configuration key {key}")));
            }
            if *remove {
                continue;
            }
            if !value.is_finite() || *value <= 0.0 {
                return Err(QuotaError(format!("Quota {key} must be greater than 0")));
            }
            if key != REQUEST_PERCENTAGE && value.fract() != 0.0 {
                return Err(QuotaError(format!("{key} cannot be a fractional value.")));
            }
        }
        if validate_only {
            return Ok(());
        }
        let mut configured = self
            .configured
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let values = configured.entry(entity.clone()).or_default();
        for (key, value, remove) in ops {
            if *remove {
                values.remove(key);
            } else {
                values.insert(key.clone(), *value);
            }
        }
        if values.is_empty() {
            configured.remove(entity);
        }
        Ok(())
    }

    /// Every configured entity and its values.
    #[must_use]
    pub fn entries(&self) -> Vec<(Entity, BTreeMap<String, f64>)> {
        self.configured
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect()
    }

    /// Counts `bytes` for the client and answers how long to throttle it: zero within its
    /// quota. The quota is the most specific that applies, in Kafka's order (user and
    /// client id, then user, then client id, each exact before default).
    pub fn record(
        &self,
        now: Instant,
        user: Option<&str>,
        client_id: &str,
        direction: Direction,
        bytes: u64,
    ) -> Duration {
        let key = match direction {
            Direction::Produce => PRODUCER_BYTE_RATE,
            Direction::Fetch => CONSUMER_BYTE_RATE,
        };
        let Some((entity, bound)) = self.resolve(user, client_id, key) else {
            return Duration::ZERO;
        };
        let mut trackers = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
        if trackers.len() > 10_000 {
            trackers.retain(|_, t| now.saturating_duration_since(t.last_used) < IDLE_TRACKER);
        }
        let tracker = trackers
            .entry((entity, direction))
            .or_insert_with(|| Tracker {
                samples: VecDeque::new(),
                last_used: now,
            });
        let observed = tracker.record(now, bytes);
        if observed <= bound {
            return Duration::ZERO;
        }
        // Kafka's ClientQuotaManager: long enough for the rate over the window to come
        // back to the bound, at most the window.
        let window = SAMPLE * SAMPLES as u32;
        let secs = (observed - bound) / bound * window.as_secs_f64();
        Duration::from_secs_f64(secs.min(window.as_secs_f64()))
    }

    /// The quota for `key` that applies, with the entity whose usage it is measured on
    /// (a default quota is measured per user or client id it applies to).
    fn resolve(&self, user: Option<&str>, client_id: &str, key: &str) -> Option<(Entity, f64)> {
        let configured = self
            .configured
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if configured.is_empty() {
            return None;
        }
        // A client without a principal is Kafka's ANONYMOUS: user defaults apply to it.
        let user = user.map(str::to_owned);
        let client = Some(client_id.to_owned());
        let candidates = [
            (Some(user.clone()), Some(client.clone())),
            (Some(user.clone()), Some(None)),
            (Some(user.clone()), None),
            (Some(None), Some(client.clone())),
            (Some(None), Some(None)),
            (Some(None), None),
            (None, Some(client.clone())),
            (None, Some(None)),
        ];
        for (u, c) in candidates {
            let entity = Entity {
                user: u.clone(),
                client_id: c.clone(),
            };
            if let Some(bound) = configured.get(&entity).and_then(|v| v.get(key)) {
                // Measured per actual user and client id the entity covers.
                let measured = Entity {
                    user: u.map(|_| user.clone()),
                    client_id: c.map(|_| client.clone()),
                };
                return Some((measured, *bound));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Entity {
        Entity {
            user: None,
            client_id: Some(Some(name.into())),
        }
    }

    #[test]
    fn a_client_over_its_rate_is_throttled_until_the_window_comes_back() {
        let q = Quotas::default();
        q.alter(
            &client("c"),
            &[(PRODUCER_BYTE_RATE.into(), 1000.0, false)],
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let start = Instant::now();
        // 10,000 bytes over a 10 s window: 1,000 B/s, at the bound.
        assert_eq!(
            q.record(start, None, "c", Direction::Produce, 10_000),
            Duration::ZERO
        );
        // Another 10,000 at once: 2,000 B/s, twice the bound: a full window's throttle.
        let t = q.record(start, None, "c", Direction::Produce, 10_000);
        assert_eq!(t, Duration::from_secs(11));
        // Other clients and the other direction are not limited.
        assert_eq!(
            q.record(start, None, "d", Direction::Produce, 1 << 30),
            Duration::ZERO
        );
        assert_eq!(
            q.record(start, None, "c", Direction::Fetch, 1 << 30),
            Duration::ZERO
        );
        // Eleven seconds later the old samples are gone.
        let later = start + Duration::from_secs(12);
        assert_eq!(
            q.record(later, None, "c", Direction::Produce, 100),
            Duration::ZERO
        );
    }

    #[test]
    fn the_most_specific_quota_applies_and_defaults_are_per_client() {
        let q = Quotas::default();
        let default_client = Entity {
            user: None,
            client_id: Some(None),
        };
        q.alter(
            &default_client,
            &[(CONSUMER_BYTE_RATE.into(), 100.0, false)],
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        q.alter(
            &client("fast"),
            &[(CONSUMER_BYTE_RATE.into(), 1e9, false)],
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let now = Instant::now();
        assert!(q.record(now, None, "a", Direction::Fetch, 5_000) > Duration::ZERO);
        assert_eq!(
            q.record(now, None, "fast", Direction::Fetch, 5_000),
            Duration::ZERO
        );
        // The default is measured per client id: "b" has its own allowance.
        assert_eq!(
            q.record(now, None, "b", Direction::Fetch, 500),
            Duration::ZERO
        );
        // A user's quota wins over the client's.
        let alice = Entity {
            user: Some(Some("alice".into())),
            client_id: None,
        };
        q.alter(&alice, &[(CONSUMER_BYTE_RATE.into(), 1e9, false)], false)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            q.record(now, Some("alice"), "a", Direction::Fetch, 50_000),
            Duration::ZERO
        );
    }

    #[test]
    fn alterations_are_checked_as_kafka_checks_them() {
        let q = Quotas::default();
        let e = client("c");
        for (ops, why) in [
            (
                vec![("bogus".to_owned(), 1.0, false)],
                "Invalid configuration key",
            ),
            (
                vec![(PRODUCER_BYTE_RATE.to_owned(), 0.0, false)],
                "greater than 0",
            ),
            (
                vec![(PRODUCER_BYTE_RATE.to_owned(), 1.5, false)],
                "fractional",
            ),
        ] {
            let err = q
                .alter(&e, &ops, false)
                .err()
                .unwrap_or_else(|| panic!("{ops:?}"));
            assert!(err.0.contains(why), "{err:?}");
        }
        let empty = Entity {
            user: None,
            client_id: None,
        };
        assert!(q.alter(&empty, &[], false).is_err());
        q.alter(&e, &[(PRODUCER_BYTE_RATE.into(), 5.0, false)], true)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(q.entries().is_empty(), "validate only");
        q.alter(&e, &[(PRODUCER_BYTE_RATE.into(), 5.0, false)], false)
            .unwrap_or_else(|e| panic!("{e:?}"));
        q.alter(&e, &[(PRODUCER_BYTE_RATE.into(), 0.0, true)], false)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(q.entries().is_empty(), "removed");
    }
}
