//! Users' permissions, read from Iggy, so that a Kafka client can be held to what the Iggy
//! user of the same name may do (`iggy_kafka_core::authz`).
//!
//! Iggy describes a user (GetUser, by name) with its permissions: global ones, and per stream
//! and per topic by numeric id. The authorizer asks about places by name (Iggy stream name,
//! Iggy topic name), and only about places in the streams the topic mapping serves: no Kafka
//! topic lives anywhere else. So ids become names through the served streams' descriptions
//! (GetStream by name gives a stream's id and its topics' ids and names, one request per
//! served stream), and permissions on any other stream are dropped: nothing could ask about
//! them, and naming them would cost a request per stream for nothing.
//!
//! Many connections of one principal ask again and again (each refreshes its permissions
//! every few seconds), so answers are kept per user for [`TTL`], for at most [`MAX_USERS`]
//! users, and asks about one user while a request for it is on its way share that request.
//! An answer counts as old as the older of its two sources (the user's description and the
//! streams'), and is not served once that is [`TTL`] old: an ask that starts more than
//! [`TTL`] after a permission changed in Iggy sees the change.
//!
//! [`verify_password`] checks a SASL/PLAIN password the Iggy way: a login with it, on a
//! session of its own ([`iggy_kafka_iggy_client::login`]), closed once Iggy answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use event_listener::Event;
use iggy_kafka_core::authz::{GlobalPermissions, Permissions, StreamPermissions, TopicPermissions};
use iggy_kafka_core::backend::BackendError;
use iggy_kafka_iggy_client::protocol::codes::GET_USER_CODE;
use iggy_kafka_iggy_client::protocol::primitives::permissions::WirePermissions;
use iggy_kafka_iggy_client::protocol::requests::users::GetUserRequest;
use iggy_kafka_iggy_client::protocol::responses::streams::GetStreamResponse;
use iggy_kafka_iggy_client::protocol::responses::users::UserDetailsResponse;
use iggy_kafka_iggy_client::protocol::{WireDecode, WireEncode, WireIdentifier};
use iggy_kafka_iggy_client::Failure;

use crate::calls::admin_lane;
use crate::catalog::Catalog;
use crate::sync::lock;
use crate::wire::{backend_error, code};

/// How long an answer is served: with callers that refresh every 5 s, a permission changed
/// in Iggy holds within 7 s.
pub(crate) const TTL: Duration = Duration::from_secs(2);

/// The most users whose answers are kept; principals beyond it are asked about afresh.
pub(crate) const MAX_USERS: usize = 1024;

/// Iggy's `UserStatus::Active`; an inactive user cannot log in to Iggy, and may do nothing
/// here either.
const ACTIVE: u8 = 1;

/// The answers kept, and the served streams' ids and names.
#[derive(Default)]
pub(crate) struct Users {
    known: Mutex<HashMap<String, Entry>>,
    directory: Mutex<Option<Arc<Directory>>>,
}

/// What is known of one user.
#[derive(Default)]
struct Entry {
    /// The latest answer, and when the older of its sources was asked.
    latest: Option<(Instant, Option<Permissions>)>,
    /// A request on its way: asks meanwhile wait for its outcome.
    asking: Option<Arc<Ask>>,
}

/// One request's outcome, for the asks that wait on it.
#[derive(Default)]
struct Ask {
    /// `None` when the request was dropped unanswered (its caller went away).
    outcome: OnceLock<Option<Result<Option<Permissions>, BackendError>>>,
    done: Event,
}

/// The served streams by Iggy id: each one's name and its topics' names by id.
struct Directory {
    asked: Instant,
    streams: HashMap<u32, (String, HashMap<u32, String>)>,
}

fn fresh(asked: Instant, now: Instant) -> bool {
    now.saturating_duration_since(asked) < TTL
}

/// Ends the request an [`Entry`] waits on however it ends (answered, failed, or dropped with
/// its caller): the waiting asks are told, and an entry left with nothing goes.
struct Leading<'a> {
    users: &'a Users,
    user: &'a str,
    ask: Arc<Ask>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        // Unanswered: the waiting asks ask again.
        let _ = self.ask.outcome.set(None);
        let mut known = lock(&self.users.known);
        if let Some(e) = known.get_mut(self.user) {
            if e.asking.as_ref().is_some_and(|a| Arc::ptr_eq(a, &self.ask)) {
                e.asking = None;
            }
            if e.asking.is_none() && e.latest.is_none() {
                known.remove(self.user);
            }
        }
        drop(known);
        self.ask.done.notify(usize::MAX);
    }
}

impl Users {
    /// `user`'s permissions when an answer fresh at `now` is kept.
    pub(crate) fn cached(&self, user: &str, now: Instant) -> Option<Option<Permissions>> {
        let known = lock(&self.known);
        let (asked, permissions) = known.get(user)?.latest.as_ref()?;
        fresh(*asked, now).then(|| permissions.clone())
    }

    /// `user`'s permissions with streams and topics by name; `None` when Iggy has no such
    /// user.
    pub(crate) async fn permissions(
        &self,
        catalog: &Catalog,
        user: &str,
    ) -> Result<Option<Permissions>, BackendError> {
        // Iggy's user names are 1 to 255 bytes: there is no user by any other name, and the
        // cache is not the place to hold such names.
        if WireIdentifier::named(user).is_err() {
            return Ok(None);
        }
        loop {
            let now = catalog.calls().clock().now();
            let ask = {
                let mut known = lock(&self.known);
                match known.get(user) {
                    Some(Entry {
                        latest: Some((asked, permissions)),
                        ..
                    }) if fresh(*asked, now) => return Ok(permissions.clone()),
                    Some(Entry {
                        asking: Some(ask), ..
                    }) => Err(Arc::clone(ask)),
                    _ => Ok(make_room(&mut known, user, now).then(|| {
                        let ask = Arc::new(Ask::default());
                        known.entry(user.to_owned()).or_default().asking = Some(Arc::clone(&ask));
                        ask
                    })),
                }
            };
            let ask = match ask {
                Ok(ask) => ask,
                Err(waiting) => {
                    // Listening before looking: an outcome set after the look is notified.
                    let listener = waiting.done.listen();
                    if waiting.outcome.get().is_none() {
                        listener.await;
                    }
                    match waiting.outcome.get() {
                        Some(Some(outcome)) => return outcome.clone(),
                        _ => continue,
                    }
                }
            };
            let _leading = ask.as_ref().map(|ask| Leading {
                users: self,
                user,
                ask: Arc::clone(ask),
            });
            let result = self.ask(catalog, user, now).await;
            if let Some(ask) = ask {
                if let Ok((asked, permissions)) = &result {
                    if let Some(e) = lock(&self.known).get_mut(user) {
                        e.latest = Some((*asked, permissions.clone()));
                    }
                }
                let _ = ask
                    .outcome
                    .set(Some(result.clone().map(|(_, permissions)| permissions)));
            }
            return result.map(|(_, permissions)| permissions);
        }
    }

    /// Asks Iggy about `user` (the ask started at `asked`): its permissions, and when the
    /// older of their sources was asked.
    async fn ask(
        &self,
        catalog: &Catalog,
        user: &str,
        asked: Instant,
    ) -> Result<(Instant, Option<Permissions>), BackendError> {
        let Some(details) = get_user(catalog, user).await? else {
            return Ok((asked, None));
        };
        let wire = match details.permissions {
            Some(wire) if details.user.status == ACTIVE => wire,
            // Inactive (Iggy would not let it log in), or created without permissions (Iggy
            // keeps none): it may do nothing.
            _ => return Ok((asked, Some(Permissions::default()))),
        };
        if wire.streams.is_empty() {
            return Ok((asked, Some(named(&wire, None).0)));
        }
        let mut directory = self.directory(catalog).await?;
        let (mut permissions, missed) = named(&wire, Some(&directory));
        if missed && directory.asked < asked {
            // A topic newer than the streams' description: a permission just granted on a
            // topic just created would otherwise be missing for up to TTL.
            directory = self.refresh_directory(catalog).await?;
            permissions = named(&wire, Some(&directory)).0;
        }
        Ok((asked.min(directory.asked), Some(permissions)))
    }

    /// The served streams' ids and names, asked of Iggy when what is kept is [`TTL`] old.
    async fn directory(&self, catalog: &Catalog) -> Result<Arc<Directory>, BackendError> {
        let now = catalog.calls().clock().now();
        if let Some(d) = lock(&self.directory)
            .as_ref()
            .filter(|d| fresh(d.asked, now))
        {
            return Ok(Arc::clone(d));
        }
        self.refresh_directory(catalog).await
    }

    async fn refresh_directory(&self, catalog: &Catalog) -> Result<Arc<Directory>, BackendError> {
        let asked = catalog.calls().clock().now();
        let mut streams = HashMap::new();
        for (i, stream) in catalog.places().streams().iter().enumerate() {
            let reply = match catalog.stream_reply(i).await {
                // A stream that is gone holds no topic anyone can be allowed.
                Ok(reply) if reply.is_empty() => continue,
                Ok(reply) => reply,
                Err(f) => match backend_error(f, &stream.name, None) {
                    BackendError::UnknownTopic(_) => continue,
                    e => return Err(e),
                },
            };
            let (r, _) = GetStreamResponse::decode(&reply)
                .map_err(|e| BackendError::Other(format!("iggy stream reply: {e}")))?;
            let topics = r
                .topics
                .iter()
                .map(|t| (t.id, t.name.as_str().to_owned()))
                .collect();
            streams.insert(r.stream.id, (stream.name.clone(), topics));
        }
        let directory = Arc::new(Directory { asked, streams });
        let mut kept = lock(&self.directory);
        if kept.as_ref().is_none_or(|d| d.asked <= asked) {
            *kept = Some(Arc::clone(&directory));
        }
        Ok(directory)
    }

    /// How many users have answers kept or asks on their way (for tests).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        lock(&self.known).len()
    }
}

/// Makes room for an entry for `user` when the cache is full: answers that are no longer
/// fresh go first, then the oldest. Whether there is room (there is none only while every
/// entry has a request on its way).
fn make_room(known: &mut HashMap<String, Entry>, user: &str, now: Instant) -> bool {
    if known.len() < MAX_USERS || known.contains_key(user) {
        return true;
    }
    known.retain(|_, e| {
        e.asking.is_some() || e.latest.as_ref().is_some_and(|(at, _)| fresh(*at, now))
    });
    if known.len() >= MAX_USERS {
        let oldest = known
            .iter()
            .filter(|(_, e)| e.asking.is_none())
            .min_by_key(|(_, e)| e.latest.as_ref().map(|(at, _)| *at))
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            known.remove(&name);
        }
    }
    known.len() < MAX_USERS
}

/// Iggy's description of `user`; `None` when Iggy has no such user.
async fn get_user(
    catalog: &Catalog,
    user: &str,
) -> Result<Option<UserDetailsResponse>, BackendError> {
    let Ok(user_id) = WireIdentifier::named(user) else {
        return Ok(None);
    };
    let request = GetUserRequest { user_id };
    let reply = match catalog
        .calls()
        .call(admin_lane(user), GET_USER_CODE, request.to_bytes())
        .await
    {
        Ok(reply) => reply,
        Err(Failure::Status(code::RESOURCE_NOT_FOUND)) => return Ok(None),
        Err(f) => return Err(user_error(f, user)),
    };
    // Iggy answers an empty reply for a user it does not have.
    if reply.is_empty() {
        return Ok(None);
    }
    UserDetailsResponse::decode(&reply)
        .map(|(details, _)| Some(details))
        .map_err(|e| BackendError::Other(format!("iggy user reply: {e}")))
}

/// What a failed GetUser means to the caller.
fn user_error(failure: Failure, user: &str) -> BackendError {
    match failure {
        Failure::Status(code::UNAUTHORIZED) => BackendError::Unauthorized(format!(
            "the gateway's Iggy user needs Iggy's read_users permission to read the \
             permissions of user {user:?}"
        )),
        Failure::Status(code::UNAUTHENTICATED) => BackendError::Unavailable(format!(
            "iggy: the gateway's session is not logged in yet, reading user {user:?}"
        )),
        Failure::Lost(e) => BackendError::Unavailable(format!("iggy: {e}")),
        Failure::NotAdmitted => BackendError::Unavailable(format!("iggy: {failure}")),
        Failure::TooLarge(_) => BackendError::Other(format!("{failure}")),
        Failure::Status(other) => {
            BackendError::Other(format!("iggy error {other} reading user {user:?}"))
        }
    }
}

/// Iggy's permissions `wire` with the streams and topics of `directory` named, the others
/// dropped; and whether a topic of a served stream was not found in it.
fn named(wire: &WirePermissions, directory: Option<&Directory>) -> (Permissions, bool) {
    let g = &wire.global;
    let mut permissions = Permissions {
        global: GlobalPermissions {
            manage_servers: g.manage_servers,
            read_servers: g.read_servers,
            manage_users: g.manage_users,
            read_users: g.read_users,
            manage_streams: g.manage_streams,
            read_streams: g.read_streams,
            manage_topics: g.manage_topics,
            read_topics: g.read_topics,
            poll_messages: g.poll_messages,
            send_messages: g.send_messages,
        },
        streams: BTreeMap::new(),
    };
    let mut missed = false;
    for s in &wire.streams {
        let Some((name, topics)) = directory.and_then(|d| d.streams.get(&s.stream_id)) else {
            continue;
        };
        let mut named_topics = BTreeMap::new();
        for t in &s.topics {
            let Some(topic) = topics.get(&t.topic_id) else {
                missed = true;
                continue;
            };
            named_topics.insert(
                topic.clone(),
                TopicPermissions {
                    manage_topic: t.manage_topic,
                    read_topic: t.read_topic,
                    poll_messages: t.poll_messages,
                    send_messages: t.send_messages,
                },
            );
        }
        permissions.streams.insert(
            name.clone(),
            StreamPermissions {
                manage_stream: s.manage_stream,
                read_stream: s.read_stream,
                manage_topics: s.manage_topics,
                read_topics: s.read_topics,
                poll_messages: s.poll_messages,
                send_messages: s.send_messages,
                topics: named_topics,
            },
        );
    }
    (permissions, missed)
}

/// Decodes a GetUser reply and names its permissions as [`Users`] does, every stream and
/// topic it names being served (for the fuzzer: nothing Iggy sends may panic).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_user(data: &[u8]) {
    let Ok((details, _)) = UserDetailsResponse::decode(data) else {
        return;
    };
    let Some(wire) = &details.permissions else {
        return;
    };
    let streams = wire
        .streams
        .iter()
        .map(|s| {
            let topics = s
                .topics
                .iter()
                .map(|t| (t.topic_id, format!("t{}", t.topic_id)))
                .collect();
            (s.stream_id, (format!("s{}", s.stream_id), topics))
        })
        .collect();
    let directory = Directory {
        asked: Instant::now(),
        streams,
    };
    let _ = named(wire, Some(&directory));
}

/// Whether `password` is Iggy user `user`'s: a login with them on a session of its own.
///
/// # Errors
/// When Iggy gave no answer about them (unreachable, or too many checks waiting).
pub(crate) async fn verify_password(
    lanes: &iggy_kafka_iggy_client::Lanes,
    user: String,
    password: &iggy_kafka_core::sasl::Password,
) -> Result<bool, BackendError> {
    use iggy_kafka_iggy_client::login::LoginOutcome;
    // Iggy's passwords are strings: other bytes cannot be anyone's.
    let Ok(password) = std::str::from_utf8(password.expose()) else {
        return Ok(false);
    };
    let credentials = iggy_kafka_iggy_client::Credentials::User {
        username: user,
        password: password.to_owned().into(),
    };
    match lanes.logins().check(credentials).await {
        LoginOutcome::Accepted => Ok(true),
        LoginOutcome::Refused => Ok(false),
        LoginOutcome::Failed(why) => Err(BackendError::Unavailable(why)),
    }
}
