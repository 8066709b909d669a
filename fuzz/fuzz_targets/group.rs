//! The group coordinator under arbitrary calls from a few members of a few groups, and
//! arbitrary time: it never panics, answers each call at most once, and once time passes
//! every rebalance and session deadline, it owes nobody an answer.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use iggy_kafka_core::group::{
    Coordinator, GroupCall, GroupConfig, GroupReply, JoinArgs, MemberRef, ReplyTo, SyncArgs,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Join {
        group: u8,
        member: u8,
        instance: Option<u8>,
        protocol: u8,
        v4: bool,
        session_s: u8,
    },
    Sync {
        group: u8,
        member: u8,
        generation: i8,
        assign_to: Vec<u8>,
    },
    Heartbeat {
        group: u8,
        member: u8,
        generation: i8,
    },
    Leave {
        group: u8,
        members: Vec<(u8, Option<u8>)>,
    },
    Commit {
        group: u8,
        member: u8,
        generation: i8,
    },
    List,
    Describe(Vec<u8>),
    Delete(Vec<u8>),
    OffsetDelete {
        group: u8,
    },
    Advance(u16),
}

fuzz_target!(|ops: Vec<Op>| {
    let mut c = Coordinator::new(GroupConfig::default(), 3);
    let mut now = Instant::now();
    let mut next = 0u64;
    let mut outstanding: HashSet<ReplyTo> = HashSet::new();
    // Member ids handed out, so that later calls can use real ones.
    let mut ids: Vec<String> = vec![String::new()];
    let group = |g: u8| format!("g{}", g % 3);
    let id = |ids: &Vec<String>, m: u8| ids[usize::from(m) % ids.len()].clone();
    for op in ops {
        let call = match op {
            Op::Join {
                group: g,
                member,
                instance,
                protocol,
                v4,
                session_s,
            } => GroupCall::Join(JoinArgs {
                group: group(g),
                member_id: id(&ids, member),
                instance_id: instance.map(|i| format!("i{}", i % 4)),
                client_id: "c".into(),
                client_host: "/h".into(),
                session_timeout_ms: i32::from(session_s) * 1000,
                rebalance_timeout_ms: 20_000,
                protocol_type: if protocol % 5 == 0 {
                    String::new()
                } else {
                    "consumer".into()
                },
                protocols: vec![(format!("p{}", protocol % 2), Bytes::from_static(b"m"))],
                require_known_member_id: v4,
            }),
            Op::Sync {
                group: g,
                member,
                generation,
                assign_to,
            } => GroupCall::Sync(SyncArgs {
                member: MemberRef {
                    group: group(g),
                    member_id: id(&ids, member),
                    instance_id: None,
                    generation: i32::from(generation),
                },
                protocol_type: None,
                protocol_name: None,
                assignments: assign_to
                    .iter()
                    .map(|m| (id(&ids, *m), Bytes::from_static(b"a")))
                    .collect(),
            }),
            Op::Heartbeat {
                group: g,
                member,
                generation,
            } => GroupCall::Heartbeat(MemberRef {
                group: group(g),
                member_id: id(&ids, member),
                instance_id: None,
                generation: i32::from(generation),
            }),
            Op::Leave { group: g, members } => GroupCall::Leave {
                group: group(g),
                members: members
                    .iter()
                    .map(|(m, i)| (id(&ids, *m), i.map(|i| format!("i{}", i % 4))))
                    .collect(),
            },
            Op::Commit {
                group: g,
                member,
                generation,
            } => GroupCall::Commit(MemberRef {
                group: group(g),
                member_id: id(&ids, member),
                instance_id: None,
                generation: i32::from(generation),
            }),
            Op::List => GroupCall::List,
            Op::Describe(gs) => GroupCall::Describe(gs.into_iter().map(group).collect()),
            Op::Delete(gs) => GroupCall::Delete(gs.into_iter().map(group).collect()),
            Op::OffsetDelete { group: g } => GroupCall::OffsetDelete {
                group: group(g),
                topics: vec!["t".into()],
            },
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms) * 10);
                c.handle_timeout(now);
                // A deadline already handled would make the adapter spin.
                assert!(
                    c.poll_timeout().is_none_or(|t| t > now),
                    "deadline not cleared"
                );
                drain(&mut c, &mut outstanding, &mut ids);
                continue;
            }
        };
        let to = ReplyTo(next);
        next += 1;
        outstanding.insert(to);
        c.handle(now, to, call);
        drain(&mut c, &mut outstanding, &mut ids);
        c.handle_timeout(now);
        assert!(
            c.poll_timeout().is_none_or(|t| t > now),
            "deadline not cleared"
        );
        drain(&mut c, &mut outstanding, &mut ids);
    }
    // Far enough for every rebalance, sync and session deadline: nothing is owed.
    for _ in 0..4 {
        now += Duration::from_secs(3600);
        c.handle_timeout(now);
        drain(&mut c, &mut outstanding, &mut ids);
    }
    assert!(outstanding.is_empty(), "unanswered calls: {outstanding:?}");
});

fn drain(c: &mut Coordinator, outstanding: &mut HashSet<ReplyTo>, ids: &mut Vec<String>) {
    while let Some((to, reply)) = c.poll_reply() {
        assert!(
            outstanding.remove(&to),
            "{to:?} answered twice or never asked"
        );
        if let GroupReply::Join(j) = reply {
            if !j.member_id.is_empty() && !ids.contains(&j.member_id) {
                ids.push(j.member_id);
            }
        }
    }
}
