//! Users' permissions against the fake server: Iggy's ids become the served streams' and
//! topics' names, answers are kept for a while, and Iggy's refusals say what is missing.

use std::collections::BTreeMap;

use iggy_kafka_core::authz::{GlobalPermissions, Permissions, StreamPermissions, TopicPermissions};
use iggy_kafka_iggy_client::protocol::codes::{GET_STREAM_CODE, GET_USER_CODE};
use iggy_kafka_iggy_client::protocol::primitives::permissions::{
    WireGlobalPermissions, WirePermissions, WireStreamPermissions, WireTopicPermissions,
};

use crate::mapping::TopicMapping;
use crate::users::{MAX_USERS, TTL};

use super::*;

fn no_global() -> WireGlobalPermissions {
    WireGlobalPermissions {
        manage_servers: false,
        read_servers: false,
        manage_users: false,
        read_users: false,
        manage_streams: false,
        read_streams: false,
        manage_topics: false,
        read_topics: false,
        poll_messages: false,
        send_messages: false,
    }
}

fn stream(id: u32, topics: Vec<WireTopicPermissions>) -> WireStreamPermissions {
    WireStreamPermissions {
        stream_id: id,
        manage_stream: false,
        read_stream: false,
        manage_topics: false,
        read_topics: false,
        poll_messages: false,
        send_messages: false,
        topics,
    }
}

fn topic(id: u32) -> WireTopicPermissions {
    WireTopicPermissions {
        topic_id: id,
        manage_topic: false,
        read_topic: false,
        poll_messages: false,
        send_messages: false,
    }
}

/// The gateway over stream `kafka` (topic `orders`) and mapped stream `shop` (topic
/// `carts`), beside stream `elsewhere` (topic `secret`) that it does not serve.
fn served() -> (Pool, IggyBackend) {
    let mut fake = FakeIggy::new();
    fake.create_topic_in("shop", "carts", 1);
    fake.create_topic_in("elsewhere", "secret", 1);
    let mut h = Pool::new(fake);
    let backend = h
        .connect_with(IggyConfig {
            seed: 42,
            mapping: TopicMapping::parse("kafka", "", "shop").expect("mapping"),
            ..IggyConfig::default()
        })
        .unwrap_or_else(|e| panic!("connect: {e}"));
    create(&mut h, &backend, "orders", 1);
    (h, backend)
}

fn permissions(
    h: &mut Pool,
    backend: &IggyBackend,
    user: &str,
) -> Result<Option<Permissions>, BackendError> {
    match h.exec(backend, Command::UserPermissions { user: user.into() }) {
        Completion::UserPermissions(p) => p,
        other => panic!("{other:?}"),
    }
}

fn user_requests(h: &Pool) -> usize {
    h.fake.seen.iter().filter(|&&c| c == GET_USER_CODE).count()
}

/// Alice's permissions in Iggy: global, on stream `kafka` and its topic `orders`, on
/// stream `shop` and its topic `carts`, and on the stream the gateway does not serve.
fn alice(h: &mut Pool) -> WirePermissions {
    let (kafka, shop, elsewhere) = (
        h.fake.stream_id("kafka"),
        h.fake.stream_id("shop"),
        h.fake.stream_id("elsewhere"),
    );
    let orders = h.fake.topics["orders"].id;
    let carts = h.fake.other_streams["shop"]["carts"].id;
    let secret = h.fake.other_streams["elsewhere"]["secret"].id;
    WirePermissions {
        global: WireGlobalPermissions {
            read_servers: true,
            ..no_global()
        },
        streams: vec![
            WireStreamPermissions {
                poll_messages: true,
                ..stream(
                    kafka,
                    vec![WireTopicPermissions {
                        send_messages: true,
                        ..topic(orders)
                    }],
                )
            },
            stream(
                shop,
                vec![WireTopicPermissions {
                    manage_topic: true,
                    read_topic: true,
                    ..topic(carts)
                }],
            ),
            WireStreamPermissions {
                manage_stream: true,
                ..stream(elsewhere, vec![topic(secret)])
            },
        ],
    }
}

fn alice_by_name() -> Permissions {
    Permissions {
        global: GlobalPermissions {
            read_servers: true,
            ..GlobalPermissions::default()
        },
        streams: BTreeMap::from([
            (
                "kafka".to_owned(),
                StreamPermissions {
                    poll_messages: true,
                    topics: BTreeMap::from([(
                        "orders".to_owned(),
                        TopicPermissions {
                            send_messages: true,
                            ..TopicPermissions::default()
                        },
                    )]),
                    ..StreamPermissions::default()
                },
            ),
            (
                "shop".to_owned(),
                StreamPermissions {
                    topics: BTreeMap::from([(
                        "carts".to_owned(),
                        TopicPermissions {
                            manage_topic: true,
                            read_topic: true,
                            ..TopicPermissions::default()
                        },
                    )]),
                    ..StreamPermissions::default()
                },
            ),
        ]),
    }
}

/// Global, stream and topic permissions come back with the served streams and their topics
/// by name (the Iggy topic's name, not the Kafka one); the stream the gateway does not serve
/// is left out.
#[test]
fn permissions_come_back_by_name() {
    let (mut h, backend) = served();
    let wire = alice(&mut h);
    h.fake.add_user("alice", Some(wire));
    let got = permissions(&mut h, &backend, "alice")
        .expect("asked")
        .expect("a user");
    assert_eq!(got, alice_by_name());
    // As the authorizer reads them: Kafka's `shop.carts` is Iggy's shop/carts.
    assert!(got.may_send(("kafka", "orders")));
    assert!(got.may_poll(("kafka", "anything")));
    assert!(got.may_manage_topic(("shop", "carts")));
    assert!(!got.may_poll(("shop", "orders")));
    assert!(!got.may_create_topic("elsewhere"));
}

/// A user with no permissions in Iggy, or inactive, may do nothing; one Iggy does not have
/// is none, and so is a name no Iggy user can have (asked of nobody, and not kept).
#[test]
fn users_without_permissions_and_unknown_users() {
    let (mut h, backend) = served();
    h.fake.add_user("nobody", None);
    assert_eq!(
        permissions(&mut h, &backend, "nobody"),
        Ok(Some(Permissions::default()))
    );
    let wire = alice(&mut h);
    h.fake.add_user("retired", Some(wire));
    if let Some(u) = h.fake.users.get_mut("retired") {
        u.status = 2;
    }
    assert_eq!(
        permissions(&mut h, &backend, "retired"),
        Ok(Some(Permissions::default()))
    );
    assert_eq!(permissions(&mut h, &backend, "stranger"), Ok(None));
    let (asked, kept) = (user_requests(&h), backend.inner.users.kept());
    assert_eq!(permissions(&mut h, &backend, &"x".repeat(256)), Ok(None));
    assert_eq!(permissions(&mut h, &backend, ""), Ok(None));
    assert_eq!(user_requests(&h), asked);
    assert_eq!(backend.inner.users.kept(), kept, "such names are not kept");
}

/// A gateway whose own Iggy user lacks read_users is told so; it may still read itself
/// (Iggy lets a user read its own account), and a user Iggy does not have is none, as
/// Iggy answers that before it checks the permission.
#[test]
fn the_gateway_user_needs_read_users() {
    let (mut h, backend) = served();
    h.fake.add_user(
        "iggy",
        Some(WirePermissions {
            global: WireGlobalPermissions {
                manage_streams: true,
                ..no_global()
            },
            streams: Vec::new(),
        }),
    );
    h.fake.add_user("bob", None);
    match permissions(&mut h, &backend, "bob") {
        Err(BackendError::Unauthorized(why)) => assert!(why.contains("read_users"), "{why}"),
        other => panic!("{other:?}"),
    }
    let own = permissions(&mut h, &backend, "iggy").expect("asked");
    assert!(own.is_some_and(|p| p.global.manage_streams));
    assert_eq!(permissions(&mut h, &backend, "stranger"), Ok(None));
    // Refusals are not kept: given read_users, the next ask succeeds.
    if let Some(p) = h
        .fake
        .users
        .get_mut("iggy")
        .and_then(|u| u.permissions.as_mut())
    {
        p.global.read_users = true;
    }
    assert_eq!(
        permissions(&mut h, &backend, "bob"),
        Ok(Some(Permissions::default()))
    );
}

/// Iggy out of reach is a retriable error.
#[test]
fn iggy_out_of_reach_is_unavailable() {
    let (mut h, backend) = served();
    h.fake.add_user("bob", None);
    h.drop_connections();
    match permissions(&mut h, &backend, "bob") {
        Err(BackendError::Unavailable(_)) => {}
        other => panic!("{other:?}"),
    }
    h.reconnect();
    assert_eq!(
        permissions(&mut h, &backend, "bob"),
        Ok(Some(Permissions::default()))
    );
}

/// An answer is served without asking Iggy for TTL; after that a change in Iggy shows.
#[test]
fn answers_are_kept_for_the_ttl() {
    let (mut h, backend) = served();
    let wire = alice(&mut h);
    h.fake.add_user("alice", Some(wire));
    assert_eq!(
        permissions(&mut h, &backend, "alice"),
        Ok(Some(alice_by_name()))
    );
    let (users, streams) = (user_requests(&h), h.fake.seen.len());
    // Taken away in Iggy: still kept, answered at once.
    h.fake.add_user("alice", None);
    h.clock.advance(TTL - Duration::from_millis(1));
    match backend.execute(Command::UserPermissions {
        user: "alice".into(),
    }) {
        Execution::Done(Completion::UserPermissions(p)) => {
            assert_eq!(p, Ok(Some(alice_by_name())));
        }
        _ => panic!("a kept answer waits for nothing"),
    }
    assert_eq!(h.fake.seen.len(), streams);
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(
        permissions(&mut h, &backend, "alice"),
        Ok(Some(Permissions::default()))
    );
    assert_eq!(user_requests(&h), users + 1);
    // Unknown users are kept too: a principal Iggy lacks is not asked about every time.
    assert_eq!(permissions(&mut h, &backend, "stranger"), Ok(None));
    assert_eq!(permissions(&mut h, &backend, "stranger"), Ok(None));
    assert_eq!(user_requests(&h), users + 2);
}

/// Asks about one user while a request for it is on its way share that request.
#[test]
fn concurrent_asks_share_one_request() {
    let (mut h, backend) = served();
    h.fake.add_user("bob", None);
    let before = user_requests(&h);
    let ask = || {
        let Execution::Pending(f) =
            backend.execute(Command::UserPermissions { user: "bob".into() })
        else {
            panic!("nothing kept yet")
        };
        f
    };
    let mut asks: Vec<_> = (0..5).map(|_| ask()).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut done: Vec<Option<Completion>> = asks.iter().map(|_| None).collect();
    for _ in 0..1000 {
        for (f, d) in asks.iter_mut().zip(&mut done) {
            if d.is_none() {
                if let Poll::Ready(c) = f.as_mut().poll(&mut cx) {
                    *d = Some(c);
                }
            }
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        h.serve();
    }
    for d in done {
        assert!(
            matches!(
                d,
                Some(Completion::UserPermissions(Ok(Some(ref p)))) if *p == Permissions::default()
            ),
            "{d:?}"
        );
    }
    assert_eq!(user_requests(&h), before + 1);
}

/// The served streams' ids and names are kept too, and asked again when a permission names
/// a topic newer than them.
#[test]
fn a_topic_newer_than_the_streams_description_is_named() {
    let (mut h, backend) = served();
    let wire = alice(&mut h);
    h.fake.add_user("alice", Some(wire));
    assert!(permissions(&mut h, &backend, "alice").is_ok());
    let streams = |h: &Pool| {
        h.fake
            .seen
            .iter()
            .filter(|&&c| c == GET_STREAM_CODE)
            .count()
    };
    let described = streams(&h);
    // Another user, within the TTL: the streams are not described again.
    let same = alice(&mut h);
    h.fake.add_user("bob", Some(same));
    assert_eq!(
        permissions(&mut h, &backend, "bob"),
        Ok(Some(alice_by_name()))
    );
    assert_eq!(streams(&h), described);
    // A topic created since, and a permission on it.
    h.clock.advance(Duration::from_millis(10));
    create(&mut h, &backend, "payments", 1);
    let kafka = h.fake.stream_id("kafka");
    let payments = h.fake.topics["payments"].id;
    h.fake.add_user(
        "carol",
        Some(WirePermissions {
            global: no_global(),
            streams: vec![stream(
                kafka,
                vec![WireTopicPermissions {
                    poll_messages: true,
                    ..topic(payments)
                }],
            )],
        }),
    );
    let carol = permissions(&mut h, &backend, "carol")
        .expect("asked")
        .expect("a user");
    assert!(carol.may_poll(("kafka", "payments")));
    assert!(!carol.may_poll(("kafka", "orders")));
    assert!(streams(&h) > described);
}

/// However many principals ask, the answers kept stay bounded.
#[test]
fn the_answers_kept_are_bounded() {
    let (mut h, backend) = served();
    for i in 0..MAX_USERS + 10 {
        assert_eq!(permissions(&mut h, &backend, &format!("u{i}")), Ok(None));
        assert!(backend.inner.users.kept() <= MAX_USERS);
    }
    assert_eq!(backend.inner.users.kept(), MAX_USERS);
    // The latest are still answered without asking.
    let asked = user_requests(&h);
    let last = format!("u{}", MAX_USERS + 9);
    assert_eq!(permissions(&mut h, &backend, &last), Ok(None));
    assert_eq!(user_requests(&h), asked);
}
