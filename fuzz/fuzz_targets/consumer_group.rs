//! Consumer groups (KIP-848) under arbitrary heartbeats from a few members, arbitrary topic
//! changes, classic calls on the same names and arbitrary time: the coordinator never
//! panics, answers every call at once, never lets two members own a partition at the same
//! time, never moves a group epoch back, and a member's epoch goes back only when it joins
//! again with epoch 0. The groups' state is kept as the coordinator hands it out: a restart
//! restores every consumer group as it was, and arbitrary bytes given to `restore` are
//! refused or make a group that keeps the invariants. Writes may fail for a while
//! (`Op::Failing`): every call is still answered, and a group whose write failed is back
//! as it was last kept, so a restart still finds every consumer group as it is in memory
//! (the epochs of a state that was never kept bind nothing).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_core::group::{
    ConsumerHeartbeat, Coordinator, GroupCall, GroupConfig, GroupReply, JoinArgs, MemberRef,
    ReplyTo, TopicMetadata,
};
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::protocol::Uuid;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Epoch {
    /// What the member was last told.
    Current,
    Join,
    Leave,
    StaticLeave,
    Raw(i8),
}

#[derive(Debug, Arbitrary)]
enum Owned {
    /// What the member was last told (it revokes and takes at once).
    Told,
    /// The member does not say.
    Unchanged,
    /// Anything.
    Raw(Vec<(u8, u8)>),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Heartbeat {
        group: bool,
        member: u8,
        epoch: Epoch,
        instance: Option<u8>,
        topics: u8,
        regex: Option<u8>,
        assignor: Option<u8>,
        owned: Owned,
        rebalance_s: u8,
    },
    /// Topic `t` now has this many partitions (0: it is gone).
    Topic {
        t: u8,
        partitions: u8,
    },
    ClassicJoin {
        group: bool,
    },
    Commit {
        group: bool,
        member: u8,
        epoch: i8,
    },
    Describe,
    List,
    Delete {
        group: bool,
    },
    Advance(u16),
    /// The gateway restarts from what was kept.
    Restart,
    /// Arbitrary bytes as a kept state.
    Kept(Vec<u8>),
    /// From now on every write fails (true) or lands (false).
    Failing(bool),
}

#[derive(Debug, Default, Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: BTreeMap<Uuid, BTreeSet<i32>>,
}

const TOPICS: [&str; 3] = ["a1", "a2", "b"];
const REGEXES: [&str; 3] = ["a.*", "b", "("];

fuzz_target!(|ops: Vec<Op>| {
    let mut config = GroupConfig::default();
    config.max_group_size = 4;
    config.keep_state = true;
    let mut c = Coordinator::new(config.clone(), 5);
    let mut kept: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut now = Instant::now();
    let mut next = 0u64;
    let mut partitions = [4i32, 2, 0];
    let mut clients: Vec<Client> = (0..5)
        .map(|i| Client {
            id: format!("m{i}"),
            ..Client::default()
        })
        .collect();
    let mut group_epochs: BTreeMap<String, i32> = BTreeMap::new();
    let mut member_epochs: BTreeMap<(String, String), i32> = BTreeMap::new();
    let group = |g: bool| if g { "g1" } else { "g0" }.to_owned();
    let mut failing = false;
    for op in ops {
        let mut rejoined: Option<(String, String)> = None;
        let call = match op {
            Op::Heartbeat {
                group: g,
                member,
                epoch,
                instance,
                topics,
                regex,
                assignor,
                owned,
                rebalance_s,
            } => {
                let slot = usize::from(member) % clients.len();
                let cl = &clients[slot];
                let member_epoch = match epoch {
                    Epoch::Current => cl.epoch,
                    Epoch::Join => 0,
                    Epoch::Leave => -1,
                    Epoch::StaticLeave => -2,
                    Epoch::Raw(e) => i32::from(e),
                };
                if member_epoch == 0 {
                    rejoined = Some((group(g), cl.id.clone()));
                }
                let owned = match owned {
                    Owned::Told => Some(
                        cl.owned
                            .iter()
                            .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                            .collect(),
                    ),
                    Owned::Unchanged => None,
                    Owned::Raw(v) => Some(
                        v.into_iter()
                            .map(|(t, p)| (Uuid([t % 3; 16]), vec![i32::from(p % 6)]))
                            .collect(),
                    ),
                };
                let owned = if member_epoch == 0 {
                    Some(Vec::new())
                } else {
                    owned
                };
                GroupCall::ConsumerHeartbeat(ConsumerHeartbeat {
                    version: 1,
                    group: group(g),
                    member_id: cl.id.clone(),
                    member_epoch,
                    instance_id: instance.map(|i| format!("i{}", i % 2)),
                    rebalance_timeout_ms: i32::from(rebalance_s) * 1000,
                    subscribed_topic_names: Some(
                        TOPICS
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| topics & (1 << i) != 0)
                            .map(|(_, t)| (*t).to_owned())
                            .collect(),
                    ),
                    subscribed_topic_regex: regex
                        .map(|r| REGEXES[usize::from(r) % REGEXES.len()].to_owned()),
                    server_assignor: assignor
                        .map(|a| ["uniform", "range", "sticky"][usize::from(a) % 3].to_owned()),
                    owned,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    topics: TOPICS
                        .iter()
                        .zip(partitions)
                        .enumerate()
                        .filter(|(_, (_, n))| *n > 0)
                        .map(|(i, (name, n))| TopicMetadata {
                            name: (*name).to_owned(),
                            id: Uuid([u8::try_from(i).unwrap_or(0); 16]),
                            partitions: n,
                        })
                        .collect(),
                    ..ConsumerHeartbeat::default()
                })
            }
            Op::Topic { t, partitions: n } => {
                let i = usize::from(t) % partitions.len();
                partitions[i] = i32::from(n % 7);
                continue;
            }
            Op::ClassicJoin { group: g } => GroupCall::Join(JoinArgs {
                group: group(g),
                client_id: "c".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::new())],
                require_known_member_id: true,
                ..JoinArgs::default()
            }),
            Op::Commit {
                group: g,
                member,
                epoch,
            } => GroupCall::Commit(MemberRef {
                group: group(g),
                member_id: clients[usize::from(member) % clients.len()].id.clone(),
                instance_id: None,
                generation: i32::from(epoch),
            }),
            Op::Describe => GroupCall::ConsumerDescribe(vec![group(false), group(true)]),
            Op::List => GroupCall::List,
            Op::Delete { group: g } => GroupCall::Delete(vec![group(g)]),
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                c.handle_timeout(now);
                assert!(
                    c.poll_timeout().is_none_or(|t| t > now),
                    "deadline not cleared"
                );
                keep(
                    &mut c,
                    now,
                    &mut kept,
                    failing,
                    &mut group_epochs,
                    &mut member_epochs,
                );
                check(&c, &mut group_epochs, &mut member_epochs, None);
                continue;
            }
            Op::Restart => {
                let mut restarted = Coordinator::new(config.clone(), 6);
                assert_eq!(
                    restarted.restore(now, kept.clone()),
                    kept.len(),
                    "every kept state restores"
                );
                assert_eq!(restarted.consumer_epochs(), c.consumer_epochs());
                c = restarted;
                check(&c, &mut group_epochs, &mut member_epochs, None);
                continue;
            }
            Op::Failing(f) => {
                failing = f;
                continue;
            }
            Op::Kept(bytes) => {
                let mut other = Coordinator::new(GroupConfig::default(), 7);
                other.restore(now, [("g".to_owned(), Bytes::from(bytes))]);
                if let Err(e) = other.check_consumer_invariants() {
                    panic!("restored: {e}");
                }
                continue;
            }
        };
        let heartbeat_of = match &call {
            GroupCall::ConsumerHeartbeat(h) => clients.iter().position(|cl| cl.id == h.member_id),
            _ => None,
        };
        let to = ReplyTo(next);
        next += 1;
        c.handle(now, to, call);
        // A heartbeat's answer waits for the write of what it changed.
        keep(
            &mut c,
            now,
            &mut kept,
            failing,
            &mut group_epochs,
            &mut member_epochs,
        );
        let (got, reply) = c
            .poll_reply()
            .expect("a consumer group call is answered once its change is kept");
        assert_eq!(got, to);
        // Classic joins answer MEMBER_ID_REQUIRED at once; nothing else is owed.
        assert!(c.poll_reply().is_none());
        if let (Some(i), GroupReply::ConsumerHeartbeat(r)) = (heartbeat_of, reply) {
            let cl = &mut clients[i];
            if r.error == ErrorCode::NONE {
                cl.epoch = r.member_epoch;
                if let Some(a) = r.assignment {
                    cl.owned = a
                        .into_iter()
                        .map(|(t, ps)| (t, ps.into_iter().collect()))
                        .collect();
                }
            } else if r.error == ErrorCode::FENCED_MEMBER_EPOCH
                || r.error == ErrorCode::UNKNOWN_MEMBER_ID
            {
                // As a client does: drop everything and join again.
                cl.epoch = 0;
                cl.owned.clear();
            }
        }
        check(&c, &mut group_epochs, &mut member_epochs, rejoined);
        keep(
            &mut c,
            now,
            &mut kept,
            failing,
            &mut group_epochs,
            &mut member_epochs,
        );
    }
});

/// Keeps what the coordinator hands out, at once, or fails every write (`failing`). A
/// group whose write failed goes back to its last kept state: the epochs seen for it since
/// bind nothing, as no answer told of them.
fn keep(
    c: &mut Coordinator,
    now: Instant,
    kept: &mut BTreeMap<String, Bytes>,
    failing: bool,
    group_epochs: &mut BTreeMap<String, i32>,
    member_epochs: &mut BTreeMap<(String, String), i32>,
) {
    while let Some(k) = c.poll_keep() {
        if failing {
            group_epochs.remove(&k.group);
            member_epochs.retain(|(g, _), _| *g != k.group);
            c.handle_kept(now, k.token, false);
            continue;
        }
        match k.state {
            Some(s) => kept.insert(k.group, s),
            None => kept.remove(&k.group),
        };
        c.handle_kept(now, k.token, true);
    }
}

fn check(
    c: &Coordinator,
    group_epochs: &mut BTreeMap<String, i32>,
    member_epochs: &mut BTreeMap<(String, String), i32>,
    rejoined: Option<(String, String)>,
) {
    if let Err(e) = c.check_consumer_invariants() {
        panic!("{e}");
    }
    let now = c.consumer_epochs();
    // A group that is gone starts over when it comes back.
    group_epochs.retain(|g, _| now.iter().any(|e| &e.group == g));
    member_epochs.retain(|(g, m), _| {
        now.iter()
            .any(|e| &e.group == g && e.members.iter().any(|(id, _)| id == m))
    });
    for g in now {
        if let Some(before) = group_epochs.insert(g.group.clone(), g.epoch) {
            assert!(before <= g.epoch, "group epoch {before} -> {}", g.epoch);
        }
        for (m, e) in g.members {
            if e < 0 {
                continue;
            }
            let key = (g.group.clone(), m);
            if let Some(before) = member_epochs.insert(key.clone(), e) {
                assert!(
                    before <= e || rejoined.as_ref() == Some(&key),
                    "member epoch {before} -> {e}"
                );
            }
        }
    }
}
