//! The coordinator on a manual clock.

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

struct Harness {
    c: Coordinator,
    now: Instant,
    next: u64,
}

impl Harness {
    fn new() -> Self {
        Self {
            c: Coordinator::new(GroupConfig::default(), 7),
            now: Instant::now(),
            next: 0,
        }
    }

    fn call(&mut self, call: GroupCall) -> ReplyTo {
        let to = ReplyTo(self.next);
        self.next += 1;
        self.c.handle(self.now, to, call);
        to
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
        // Timers must never ask to be driven again for a time already handled: the adapter
        // would spin.
        assert!(self.c.poll_timeout().is_none_or(|t| t > self.now));
    }

    fn replies(&mut self) -> Vec<(ReplyTo, GroupReply)> {
        std::iter::from_fn(|| self.c.poll_reply()).collect()
    }

    fn reply_to(&mut self, to: ReplyTo) -> Option<GroupReply> {
        let all = self.replies();
        let mut mine = None;
        for (t, r) in all {
            if t == to {
                mine = Some(r);
            }
        }
        mine
    }

    fn join(&mut self, member_id: &str, instance: Option<&str>) -> ReplyTo {
        self.call(GroupCall::Join(join_args(member_id, instance)))
    }

    /// A dynamic member's two-step join (v4+): returns its member id and the pending join.
    fn join_new(&mut self) -> (String, ReplyTo) {
        let to = self.join("", None);
        let Some(GroupReply::Join(r)) = self.reply_to(to) else {
            panic!("no MEMBER_ID_REQUIRED answer");
        };
        assert_eq!(r.error, ErrorCode::MEMBER_ID_REQUIRED);
        assert!(!r.member_id.is_empty());
        let id = r.member_id;
        let to = self.join(&id, None);
        (id, to)
    }

    fn sync(&mut self, id: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> ReplyTo {
        self.call(GroupCall::Sync(SyncArgs {
            member: member(id, generation),
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        }))
    }

    fn heartbeat(&mut self, id: &str, generation: i32) -> ErrorCode {
        let to = self.call(GroupCall::Heartbeat(member(id, generation)));
        match self.reply_to(to) {
            Some(GroupReply::Heartbeat(c)) => c,
            other => panic!("heartbeat answered {other:?}"),
        }
    }

    fn commit(&mut self, id: &str, generation: i32) -> ErrorCode {
        let to = self.call(GroupCall::Commit(member(id, generation)));
        match self.reply_to(to) {
            Some(GroupReply::Commit(c)) => c,
            other => panic!("commit answered {other:?}"),
        }
    }

    fn state(&self) -> GroupSnapshot {
        self.c.snapshot("g").expect("group exists")
    }
}

fn join_args(member_id: &str, instance: Option<&str>) -> JoinArgs {
    JoinArgs {
        group: "g".into(),
        member_id: member_id.into(),
        instance_id: instance.map(Into::into),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

fn member(id: &str, generation: i32) -> MemberRef {
    MemberRef {
        group: "g".into(),
        member_id: id.into(),
        instance_id: None,
        generation,
    }
}

fn joined(r: Option<GroupReply>) -> JoinResult {
    match r {
        Some(GroupReply::Join(j)) => j,
        other => panic!("expected a join answer, got {other:?}"),
    }
}

fn synced(r: Option<GroupReply>) -> SyncResult {
    match r {
        Some(GroupReply::Sync(s)) => s,
        other => panic!("expected a sync answer, got {other:?}"),
    }
}

/// Three members join a new group; the first rebalance waits out the initial delay, the
/// leader sees everyone, and the leader's assignment reaches each member.
fn three_members(h: &mut Harness) -> (Vec<String>, i32) {
    let mut ids = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..3 {
        let (id, to) = h.join_new();
        ids.push(id);
        joins.push(to);
    }
    assert!(h.replies().is_empty(), "the initial delay holds the join");
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    h.advance(Duration::from_secs(3));
    let replies = h.replies();
    assert_eq!(replies.len(), 3, "every member is answered");
    let mut generation = 0;
    let mut leader = String::new();
    for (to, r) in replies {
        let j = joined(Some(r));
        assert_eq!(j.error, ErrorCode::NONE);
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        generation = j.generation;
        leader.clone_from(&j.leader);
        let i = joins.iter().position(|t| *t == to).expect("a join of ours");
        if j.member_id == j.leader {
            assert_eq!(j.members.len(), 3, "the leader sees every member");
        } else {
            assert!(j.members.is_empty());
        }
        assert_eq!(j.member_id, ids[i]);
    }
    assert_eq!(generation, 1);
    assert_eq!(leader, ids[0], "the first to join leads");
    let followers: Vec<ReplyTo> = ids[1..]
        .iter()
        .map(|id| h.sync(id, 1, Vec::new()))
        .collect();
    assert!(h.replies().is_empty(), "followers wait for the leader");
    let assignments = ids
        .iter()
        .map(|id| (id.clone(), Bytes::from(format!("for {id}"))))
        .collect();
    let lead = h.sync(&ids[0], 1, assignments);
    let replies = h.replies();
    assert_eq!(replies.len(), 3);
    for (to, r) in replies {
        let s = synced(Some(r));
        assert_eq!(s.error, ErrorCode::NONE);
        let id = if to == lead {
            &ids[0]
        } else {
            &ids[1 + followers.iter().position(|t| *t == to).expect("ours")]
        };
        assert_eq!(s.assignment, Bytes::from(format!("for {id}")));
    }
    assert_eq!(h.state().state, GroupState::Stable);
    (ids, generation)
}

#[test]
fn members_join_and_sync() {
    let mut h = Harness::new();
    let (ids, generation) = three_members(&mut h);
    for id in &ids {
        assert_eq!(h.heartbeat(id, generation), ErrorCode::NONE);
    }
    assert_eq!(
        h.heartbeat(&ids[0], generation - 1),
        ErrorCode::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.heartbeat("nobody", generation),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let mut h = Harness::new();
    let (ids, generation) = three_members(&mut h);
    // Two members keep heartbeating; the third goes quiet.
    for _ in 0..2 {
        h.advance(Duration::from_secs(4));
        assert_eq!(h.heartbeat(&ids[0], generation), ErrorCode::NONE);
        assert_eq!(h.heartbeat(&ids[1], generation), ErrorCode::NONE);
    }
    assert_eq!(h.state().members.len(), 3);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.state().members.len(), 2, "the silent member is gone");
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&ids[0], generation),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    let a = h.join(&ids[0], None);
    let b = h.join(&ids[1], None);
    let (ja, jb) = {
        let replies = h.replies();
        let find = |to| {
            replies
                .iter()
                .find(|(t, _)| *t == to)
                .map(|(_, r)| r.clone())
        };
        (joined(find(a)), joined(find(b)))
    };
    assert_eq!(ja.generation, generation + 1);
    assert_eq!(jb.generation, generation + 1);
    assert_eq!(ja.members.len(), 2);
    assert_eq!(
        h.heartbeat(&ids[2], generation + 1),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped() {
    let mut h = Harness::new();
    let (ids, generation) = three_members(&mut h);
    let leave = h.call(GroupCall::Leave {
        group: "g".into(),
        members: vec![(ids[2].clone(), None)],
    });
    assert_eq!(
        h.reply_to(leave),
        Some(GroupReply::Leave(Ok(vec![ErrorCode::NONE])))
    );
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    // Only the first rejoins; the second keeps heartbeating but never rejoins.
    let a = h.join(&ids[0], None);
    h.advance(Duration::from_secs(5));
    assert_eq!(
        h.heartbeat(&ids[1], generation),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    assert!(h.reply_to(a).is_none());
    h.advance(Duration::from_millis(REBALANCE_MS as u64));
    let j = joined(h.reply_to(a));
    assert_eq!(j.generation, generation + 1);
    assert_eq!(j.members.len(), 1);
    assert_eq!(h.state().members, vec![ids[0].clone()]);
}

#[test]
fn the_last_member_leaving_empties_the_group_which_is_later_forgotten() {
    let mut h = Harness::new();
    let (id, _) = h.join_new();
    h.advance(Duration::from_secs(3));
    let j = joined(h.reply_to(ReplyTo(1)));
    assert_eq!(j.member_id, id);
    let leave = h.call(GroupCall::Leave {
        group: "g".into(),
        members: vec![(id.clone(), None), ("stranger".into(), None)],
    });
    assert_eq!(
        h.reply_to(leave),
        Some(GroupReply::Leave(Ok(vec![
            ErrorCode::NONE,
            ErrorCode::UNKNOWN_MEMBER_ID
        ])))
    );
    assert_eq!(h.state().state, GroupState::Empty);
    assert_eq!(h.state().generation, 2);
    h.advance(Duration::from_secs(11 * 60));
    assert!(h.c.snapshot("g").is_none());
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let mut h = Harness::new();
    let a = h.join("", Some("instance-a"));
    let b = h.join("", Some("instance-b"));
    h.advance(Duration::from_secs(3));
    let replies = h.replies();
    let find = |to| {
        replies
            .iter()
            .find(|(t, _)| *t == to)
            .map(|(_, r)| r.clone())
    };
    let (ja, jb) = (joined(find(a)), joined(find(b)));
    assert_eq!(
        ja.error,
        ErrorCode::NONE,
        "static members need no second join"
    );
    let generation = ja.generation;
    let lead = h.sync(
        &ja.member_id,
        generation,
        vec![
            (ja.member_id.clone(), Bytes::from_static(b"A")),
            (jb.member_id.clone(), Bytes::from_static(b"B")),
        ],
    );
    let _ = h.reply_to(lead);
    let fb = h.sync(&jb.member_id, generation, Vec::new());
    assert_eq!(synced(h.reply_to(fb)).assignment, Bytes::from_static(b"B"));

    // instance-b restarts: it joins without its member id.
    let again = h.join("", Some("instance-b"));
    let j = joined(h.reply_to(again));
    assert_eq!(j.error, ErrorCode::NONE);
    assert_eq!(j.generation, generation, "no rebalance");
    assert_ne!(j.member_id, jb.member_id);
    assert_eq!(h.state().state, GroupState::Stable);
    let s = h.sync(&j.member_id, generation, Vec::new());
    assert_eq!(synced(h.reply_to(s)).assignment, Bytes::from_static(b"B"));
    // The old incarnation is fenced.
    let mut old = member(&jb.member_id, generation);
    old.instance_id = Some("instance-b".into());
    let hb = h.call(GroupCall::Heartbeat(old));
    assert_eq!(
        h.reply_to(hb),
        Some(GroupReply::Heartbeat(ErrorCode::FENCED_INSTANCE_ID))
    );
}

#[test]
fn a_static_member_rejoining_while_the_assignment_is_awaited_rebalances() {
    let mut h = Harness::new();
    let a = h.join("", Some("instance-a"));
    let b = h.join("", Some("instance-b"));
    h.advance(Duration::from_secs(3));
    let replies = h.replies();
    let find = |to| {
        replies
            .iter()
            .find(|(t, _)| *t == to)
            .map(|(_, r)| r.clone())
    };
    let (ja, jb) = (joined(find(a)), joined(find(b)));
    let generation = ja.generation;
    // instance-b's follower sync waits for the leader's assignment, which names its old id.
    let fb = h.sync(&jb.member_id, generation, Vec::new());
    assert_eq!(h.state().state, GroupState::CompletingRebalance);
    // instance-b restarts before the leader syncs: Kafka rebalances, so its new id is in
    // the next assignment rather than none.
    let again = h.join("", Some("instance-b"));
    assert_eq!(h.reply_to(again), None, "the join waits for the rebalance");
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    let _ = fb;
    // The leader rejoins; the new generation has both, the new id among them.
    let ra = h.join(&ja.member_id, Some("instance-a"));
    h.advance(Duration::from_secs(1));
    let replies = h.replies();
    let find = |to| {
        replies
            .iter()
            .find(|(t, _)| *t == to)
            .map(|(_, r)| r.clone())
    };
    let (ja2, jb2) = (joined(find(ra)), joined(find(again)));
    assert_eq!(ja2.generation, generation + 1);
    assert_eq!(jb2.generation, generation + 1);
    assert_ne!(jb2.member_id, jb.member_id);
    assert!(ja2.members.iter().any(|m| m.member_id == jb2.member_id));
}

#[test]
fn commits_follow_the_generation() {
    let mut h = Harness::new();
    // Without group management (generation -1), a commit creates an empty group.
    assert_eq!(h.commit("", -1), ErrorCode::NONE);
    assert_eq!(h.state().state, GroupState::Empty);
    assert_eq!(h.commit("x", 3), ErrorCode::UNKNOWN_MEMBER_ID);

    let mut h = Harness::new();
    assert_eq!(
        h.commit("m", 1),
        ErrorCode::ILLEGAL_GENERATION,
        "no such group"
    );
    let (ids, generation) = three_members(&mut h);
    assert_eq!(h.commit(&ids[1], generation), ErrorCode::NONE);
    assert_eq!(
        h.commit(&ids[1], generation - 1),
        ErrorCode::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.commit("stranger", generation),
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.commit("", -1),
        ErrorCode::UNKNOWN_MEMBER_ID,
        "the group is not empty"
    );
}

#[test]
fn commits_during_a_rebalance() {
    let mut h = Harness::new();
    let (ids, generation) = three_members(&mut h);
    // A fourth member arrives: the group prepares a rebalance. Members revoking their
    // partitions commit with the generation they still hold, and that is accepted.
    let (_new, new_join) = h.join_new();
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    assert_eq!(h.commit(&ids[0], generation), ErrorCode::NONE);
    assert_eq!(h.commit(&ids[1], generation), ErrorCode::NONE);
    let rejoins: Vec<ReplyTo> = ids.iter().map(|id| h.join(id, None)).collect();
    let replies = h.replies();
    assert_eq!(
        replies.len(),
        4,
        "everyone rejoined: the join completes at once"
    );
    assert!(replies.iter().any(|(t, _)| *t == new_join));
    assert!(rejoins.iter().all(|r| replies.iter().any(|(t, _)| t == r)));
    assert_eq!(h.state().state, GroupState::CompletingRebalance);
    // Before the assignment: the new generation cannot commit yet, the old one never again.
    assert_eq!(
        h.commit(&ids[0], generation + 1),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    assert_eq!(h.commit(&ids[0], generation), ErrorCode::ILLEGAL_GENERATION);
}

#[test]
fn join_errors_are_kafkas() {
    let mut h = Harness::new();
    let mut bad = join_args("", None);
    bad.session_timeout_ms = 1000;
    let to = h.call(GroupCall::Join(bad));
    assert_eq!(
        joined(h.reply_to(to)).error,
        ErrorCode::INVALID_SESSION_TIMEOUT
    );
    let mut bad = join_args("", None);
    bad.group = String::new();
    let to = h.call(GroupCall::Join(bad));
    assert_eq!(joined(h.reply_to(to)).error, ErrorCode::INVALID_GROUP_ID);
    let to = h.join("made-up", None);
    assert_eq!(joined(h.reply_to(to)).error, ErrorCode::UNKNOWN_MEMBER_ID);
    let (_id, _) = h.join_new();
    let mut other = join_args("", None);
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    let to = h.call(GroupCall::Join(other));
    assert_eq!(
        joined(h.reply_to(to)).error,
        ErrorCode::INCONSISTENT_GROUP_PROTOCOL
    );
    let sync = h.sync("nobody", 1, Vec::new());
    assert_eq!(synced(h.reply_to(sync)).error, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn deleting_and_describing_groups() {
    let mut h = Harness::new();
    let (ids, _) = three_members(&mut h);
    let d = h.call(GroupCall::Delete(vec!["g".into(), "other".into()]));
    assert_eq!(
        h.reply_to(d),
        Some(GroupReply::Delete(vec![
            Deletion::NonEmpty,
            Deletion::Unknown
        ]))
    );
    let d = h.call(GroupCall::Describe(vec!["g".into()]));
    let Some(GroupReply::Describe(described)) = h.reply_to(d) else {
        panic!("no description");
    };
    let g = described[0].as_ref().expect("known");
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.protocol, "range");
    assert_eq!(g.members.len(), 3);
    assert_eq!(g.members[0].member_id, ids[0]);
    let leave = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|i| (i.clone(), None)).collect(),
    });
    let _ = h.reply_to(leave);
    let d = h.call(GroupCall::Delete(vec!["g".into()]));
    assert_eq!(
        h.reply_to(d),
        Some(GroupReply::Delete(vec![Deletion::Deleted]))
    );
    assert!(h.c.snapshot("g").is_none());
}

#[test]
fn subscription_topics_are_read_from_consumer_metadata() {
    // version 1, topics ["a", "bc"], user data null, owned partitions [].
    let meta = [
        0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 255, 255, 255, 255, 0, 0, 0, 0,
    ];
    assert_eq!(
        subscription_topics(&meta),
        vec!["a".to_owned(), "bc".to_owned()]
    );
    assert!(subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_empty());
    assert!(subscription_topics(&[]).is_empty());
}

#[test]
fn shutdown_answers_every_waiting_call() {
    let mut h = Harness::new();
    let (ids, generation) = three_members(&mut h);
    // A new member starts a rebalance; two of the three rejoin and wait.
    let (_new, new_join) = h.join_new();
    let a = h.join(&ids[0], None);
    let b = h.join(&ids[1], None);
    assert!(h.replies().is_empty());
    h.c.shutdown();
    let replies = h.replies();
    assert_eq!(replies.len(), 3);
    for (to, r) in replies {
        assert!([new_join, a, b].contains(&to));
        assert_eq!(joined(Some(r)).error, ErrorCode::NOT_COORDINATOR);
    }
    assert_eq!(
        h.heartbeat(&ids[2], generation),
        ErrorCode::REBALANCE_IN_PROGRESS
    );
}

#[test]
fn a_follower_told_to_rejoin_while_it_waited_to_sync_gets_a_new_session() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new();
    let (b, jb) = h.join_new();
    // The initial rebalance delay passes: both are answered, `a` leads.
    h.advance(Duration::from_secs(3));
    let replies = h.replies();
    let answer = |to| {
        joined(
            replies
                .iter()
                .find(|(t, _)| *t == to)
                .map(|(_, r)| r.clone()),
        )
    };
    let (ja, jb) = (answer(ja), answer(jb));
    assert_eq!(ja.leader, a);
    // `b` asks for its assignment; the leader goes quiet and never sends one.
    let sb = h.sync(&b, jb.generation, Vec::new());
    // The leader's session lapses while `b` still waits (its sync deadline is the rebalance
    // timeout): the group rebalances and `b` is told so. Its session did not run while it
    // waited, and runs again from this answer: nothing is left due (`advance` checks it).
    h.advance(Duration::from_secs(11));
    assert_eq!(
        synced(h.reply_to(sb)).error,
        ErrorCode::REBALANCE_IN_PROGRESS
    );
    h.advance(Duration::from_secs(9));
    assert!(h.state().members.contains(&b));
}

/// The coordinator counts its groups by state, their members and the rebalances it began.
#[test]
fn the_coordinator_counts_groups_members_and_rebalances() {
    let mut h = Harness::new();
    let count = |h: &Harness, state: GroupState| {
        let stats = h.c.stats();
        stats
            .groups
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| *n)
    };
    assert_eq!(h.c.stats().rebalances, 0);
    assert_eq!(h.c.stats().members, 0);
    let (id, _) = h.join_new();
    assert_eq!(count(&h, GroupState::PreparingRebalance), Some(1));
    assert_eq!(h.c.stats().rebalances, 1);
    h.advance(Duration::from_millis(
        u64::try_from(REBALANCE_MS).unwrap_or(0),
    ));
    assert_eq!(count(&h, GroupState::CompletingRebalance), Some(1));
    let to = h.sync(&id, 1, vec![(id.clone(), Bytes::from_static(b"a"))]);
    assert_eq!(synced(h.reply_to(to)).error, ErrorCode::NONE);
    let stats = h.c.stats();
    assert_eq!(count(&h, GroupState::Stable), Some(1));
    assert_eq!((stats.members, stats.rebalances), (1, 1));
    // A second member makes the group rebalance again.
    let _ = h.join_new();
    let stats = h.c.stats();
    assert_eq!((stats.members, stats.rebalances), (2, 2));
    assert_eq!(count(&h, GroupState::PreparingRebalance), Some(1));
    assert_eq!(stats.groups.iter().map(|(_, n)| n).sum::<u64>(), 1);
}

/// A harness whose coordinator keeps the groups' state.
fn keeping() -> Harness {
    let mut h = Harness::new();
    let config = GroupConfig {
        keep_state: true,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 7);
    h
}

impl Harness {
    fn keeps(&mut self) -> Vec<KeepGroup> {
        std::iter::from_fn(|| self.c.poll_keep()).collect()
    }

    /// Three members joined in generation 1, the leader's assignment handed out to keep
    /// and not yet reported: the SyncGroups wait. Returns the members, the keep, and the
    /// syncs' reply tokens.
    fn three_awaiting_keep(&mut self) -> (Vec<String>, KeepGroup, Vec<ReplyTo>) {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(self.join_new().0);
        }
        self.advance(Duration::from_secs(3));
        assert_eq!(self.replies().len(), 3);
        assert!(
            self.keeps().is_empty(),
            "nothing to keep before the assignment"
        );
        let mut syncs: Vec<ReplyTo> = ids[1..]
            .iter()
            .map(|id| self.sync(id, 1, Vec::new()))
            .collect();
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("for {id}"))))
            .collect();
        syncs.insert(0, self.sync(&ids[0], 1, assignments));
        assert!(self.replies().is_empty(), "SyncGroup waits for the keep");
        assert_eq!(self.state().state, GroupState::CompletingRebalance);
        let mut keeps = self.keeps();
        assert_eq!(keeps.len(), 1);
        let keep = keeps.remove(0);
        assert_eq!(keep.group, "g");
        assert!(keep.state.is_some());
        (ids, keep, syncs)
    }
}

#[test]
fn sync_group_is_answered_once_the_assignment_is_kept() {
    let mut h = keeping();
    let (ids, keep, syncs) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    let replies = h.replies();
    assert_eq!(replies.len(), 3);
    for (to, r) in replies {
        let i = syncs.iter().position(|s| *s == to).expect("a sync of ours");
        let s = synced(Some(r));
        assert_eq!(s.error, ErrorCode::NONE);
        assert_eq!(s.assignment, Bytes::from(format!("for {}", ids[i])));
    }
    assert_eq!(h.state().state, GroupState::Stable);
    // Reported twice (a stale report) changes nothing.
    h.c.handle_kept(h.now, keep.token, true);
    assert!(h.replies().is_empty());
}

#[test]
fn an_assignment_that_cannot_be_kept_fails_the_syncs_and_rebalances() {
    let mut h = keeping();
    let (ids, keep, syncs) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, false);
    let replies = h.replies();
    assert_eq!(replies.len(), 3);
    for (to, r) in replies {
        assert!(syncs.contains(&to));
        assert_eq!(synced(Some(r)).error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
    }
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[1], 1), ErrorCode::REBALANCE_IN_PROGRESS);
}

#[test]
fn a_rebalance_while_the_assignment_is_kept_wins_over_it() {
    let mut h = keeping();
    let (_, keep, _) = h.three_awaiting_keep();
    // A new member: the generation being kept is over.
    h.join_new();
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    h.replies();
    h.c.handle_kept(h.now, keep.token, true);
    assert!(h.replies().is_empty());
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
}

#[test]
fn a_restored_group_keeps_its_generation_and_members_that_stay() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let before = h.state();

    // The gateway restarts: a new coordinator, later, from what was kept.
    let config = GroupConfig {
        keep_state: true,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 8);
    h.now += Duration::from_secs(5);
    let kept = vec![("g".to_owned(), keep.state.expect("a state"))];
    assert_eq!(h.c.restore(h.now, kept), 1);
    let after = h.state();
    assert_eq!(after.state, GroupState::Stable);
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.leader, before.leader);
    assert_eq!(after.members, before.members);
    assert!(h.keeps().is_empty(), "restoring writes nothing");
    let to = h.call(GroupCall::Describe(vec!["g".into()]));
    let Some(GroupReply::Describe(d)) = h.reply_to(to) else {
        panic!("describe")
    };
    let d = d[0].clone().expect("known");
    assert_eq!(d.protocol, "range");
    for m in &d.members {
        assert_eq!(m.assignment, Bytes::from(format!("for {}", m.member_id)));
        assert_eq!(m.metadata, Bytes::from_static(b"meta"));
    }
    // A member rejoining with what it had is told the generation it has.
    let to = h.join(&ids[1], None);
    let j = joined(h.reply_to(to));
    assert_eq!(
        (j.error, j.generation),
        (ErrorCode::NONE, before.generation)
    );
    // Two members heartbeat on; the third never comes back and is removed after its
    // session timeout from the restart, not before.
    for _ in 0..3 {
        h.advance(Duration::from_secs(3));
        assert_eq!(h.heartbeat(&ids[0], 1), ErrorCode::NONE);
        assert_eq!(h.heartbeat(&ids[1], 1), ErrorCode::NONE);
    }
    assert_eq!(h.state().members.len(), 3, "9 s: within its session");
    h.advance(Duration::from_millis(1500));
    assert_eq!(h.state().members.len(), 2, "10 s: gone");
    assert_eq!(h.state().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&ids[0], 1), ErrorCode::REBALANCE_IN_PROGRESS);
}

#[test]
fn an_emptied_group_is_kept_and_a_deleted_one_forgotten() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|id| (id.clone(), None)).collect(),
    });
    h.reply_to(to);
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1, "{keeps:?}");
    let mut restored = Coordinator::new(GroupConfig::default(), 9);
    restored.restore(
        h.now,
        [("g".to_owned(), keeps[0].state.clone().expect("a state"))],
    );
    let g = restored.snapshot("g").expect("restored");
    assert_eq!((g.state, g.generation), (GroupState::Empty, 2));
    assert!(g.members.is_empty());
    let to = h.call(GroupCall::Delete(vec!["g".into()]));
    h.reply_to(to);
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1);
    assert_eq!((keeps[0].group.as_str(), &keeps[0].state), ("g", &None));
}

#[test]
fn without_keeping_nothing_is_handed_out() {
    let mut h = Harness::new();
    three_members(&mut h);
    assert!(h.keeps().is_empty());
}

/// The encoding of a classic group's kept state is fixed: a kept state written by this
/// version must read back the same after any change of the code.
#[test]
fn the_kept_classic_state_is_stable_and_bad_input_is_refused() {
    let now = Instant::now();
    let mut g = Group::new(now);
    g.protocol_type = Some("consumer".into());
    g.generation = 7;
    g.protocol = Some("range".into());
    g.leader = Some("m".into());
    g.members.insert(
        "m".into(),
        Member {
            id: "m".into(),
            instance_id: Some("i".into()),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout: Duration::from_millis(10_000),
            rebalance_timeout: Duration::from_millis(30_000),
            protocols: vec![("range".into(), Bytes::from_static(b"\x01"))],
            assignment: Bytes::from_static(b"\x02"),
            awaiting_join: None,
            awaiting_sync: None,
            session_deadline: now,
            seq: 1,
        },
    );
    let bytes = kept::encode_classic(&g);
    let golden: &[u8] = &[
        1, 1, // version, classic
        1, 8, 0, 0, 0, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', // protocol type
        7, 0, 0, 0, // generation
        1, 5, 0, 0, 0, b'r', b'a', b'n', b'g', b'e', // protocol
        1, 1, 0, 0, 0, b'm', // leader
        1, 0, 0, 0, // one member
        1, 0, 0, 0, b'm', // id
        1, 1, 0, 0, 0, b'i', // instance
        1, 0, 0, 0, b'c', 1, 0, 0, 0, b'h', // client id, host
        0x10, 0x27, 0, 0, 0x30, 0x75, 0, 0, // session, rebalance timeouts
        1, 0, 0, 0, 5, 0, 0, 0, b'r', b'a', b'n', b'g', b'e', 1, 0, 0, 0, 1, // protocols
        1, 0, 0, 0, 2, // assignment
    ];
    assert_eq!(&bytes[..], golden);
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    assert_eq!(
        c.restore(now, [("g".to_owned(), Bytes::from_static(golden))]),
        1
    );
    let s = c.snapshot("g").expect("restored");
    assert_eq!(
        (s.state, s.generation, s.members),
        (GroupState::Stable, 7, vec!["m".to_owned()])
    );
    // Every cut, a newer version, an unknown kind, trailing bytes, a huge count.
    let mut bad: Vec<Vec<u8>> = (0..golden.len()).map(|n| golden[..n].to_vec()).collect();
    bad.push([&[2], &golden[1..]].concat());
    bad.push([&[1, 9], &golden[2..]].concat());
    bad.push([golden, &[0]].concat());
    let mut huge = golden.to_vec();
    huge[35..39].copy_from_slice(&u32::MAX.to_le_bytes());
    bad.push(huge);
    for b in bad {
        let mut c = Coordinator::new(GroupConfig::default(), 1);
        assert_eq!(
            c.restore(now, [("g".to_owned(), Bytes::from(b.clone()))]),
            0,
            "{b:?}"
        );
        assert!(c.snapshot("g").is_none());
    }
}

impl Harness {
    /// Two static members in a stable group whose assignment is kept: their join answers.
    fn two_static_kept(&mut self) -> (JoinResult, JoinResult) {
        let a = self.join("", Some("instance-a"));
        let b = self.join("", Some("instance-b"));
        self.advance(Duration::from_secs(3));
        let replies = self.replies();
        let find = |to| {
            replies
                .iter()
                .find(|(t, _)| *t == to)
                .map(|(_, r)| r.clone())
        };
        let (ja, jb) = (joined(find(a)), joined(find(b)));
        let generation = ja.generation;
        self.sync(
            &ja.member_id,
            generation,
            vec![
                (ja.member_id.clone(), Bytes::from_static(b"A")),
                (jb.member_id.clone(), Bytes::from_static(b"B")),
            ],
        );
        self.sync(&jb.member_id, generation, Vec::new());
        for k in self.keeps() {
            self.c.handle_kept(self.now, k.token, true);
        }
        assert_eq!(self.replies().len(), 2);
        assert_eq!(self.state().state, GroupState::Stable);
        (ja, jb)
    }
}

#[test]
fn a_static_members_replacement_is_answered_once_kept() {
    let mut h = keeping();
    let (_, jb) = h.two_static_kept();
    let again = h.join("", Some("instance-b"));
    assert!(
        h.reply_to(again).is_none(),
        "the answer waits for the write"
    );
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1);
    h.c.handle_kept(h.now, keeps[0].token, true);
    let j = joined(h.reply_to(again));
    assert_eq!(j.error, ErrorCode::NONE);
    assert_eq!(j.generation, jb.generation, "no rebalance");
    assert_ne!(j.member_id, jb.member_id);
    assert!(!h.c.is_unkept());
}

#[test]
fn a_static_members_replacement_that_cannot_be_kept_is_undone() {
    let mut h = keeping();
    let (_, jb) = h.two_static_kept();
    let again = h.join("", Some("instance-b"));
    let keeps = h.keeps();
    h.c.handle_kept(h.now, keeps[0].token, false);
    let j = joined(h.reply_to(again));
    assert_eq!(j.error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
    assert!(j.member_id.is_empty());
    assert_eq!(j.generation, jb.generation);
    // The old incarnation is the member again, as what was kept says.
    assert!(h.state().members.contains(&jb.member_id));
    let mut old = member(&jb.member_id, jb.generation);
    old.instance_id = Some("instance-b".into());
    let hb = h.call(GroupCall::Heartbeat(old));
    assert_eq!(h.reply_to(hb), Some(GroupReply::Heartbeat(ErrorCode::NONE)));
    // The group is written again after a backoff.
    assert!(h.c.is_unkept());
    h.advance(Duration::from_millis(499));
    assert!(h.keeps().is_empty());
    h.advance(Duration::from_millis(1));
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1);
    let mut restored = Coordinator::new(GroupConfig::default(), 9);
    restored.restore(
        h.now,
        [("g".to_owned(), keeps[0].state.clone().expect("a state"))],
    );
    assert!(restored
        .snapshot("g")
        .expect("restored")
        .members
        .contains(&jb.member_id));
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert!(!h.c.is_unkept());
}

#[test]
fn failed_writes_of_an_emptied_or_deleted_group_are_retried_on_the_clock() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|id| (id.clone(), None)).collect(),
    });
    assert_eq!(h.reply_to(to), None, "LeaveGroup waits for the write");
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1);
    h.c.handle_kept(h.now, keeps[0].token, false);
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Leave(Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)))
    );
    // Tried again after 0.5 s, then 1 s, ...
    for wait in [500, 1000, 2000] {
        h.advance(Duration::from_millis(wait - 1));
        assert!(h.keeps().is_empty(), "not before {wait} ms");
        h.advance(Duration::from_millis(1));
        let keeps = h.keeps();
        assert_eq!(keeps.len(), 1, "after {wait} ms");
        assert!(keeps[0].state.is_some());
        h.c.handle_kept(h.now, keeps[0].token, false);
    }
    h.advance(Duration::from_secs(4));
    let keeps = h.keeps();
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert!(!h.c.is_unkept());
    h.advance(Duration::from_secs(60));
    assert!(h.keeps().is_empty(), "kept: nothing more");
    // A deletion that cannot be written puts the group back as it was kept.
    let to = h.call(GroupCall::Delete(vec!["g".into()]));
    assert_eq!(h.reply_to(to), None, "DeleteGroups waits for the write");
    let keeps = h.keeps();
    assert_eq!((keeps[0].group.as_str(), &keeps[0].state), ("g", &None));
    h.c.handle_kept(h.now, keeps[0].token, false);
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Delete(vec![Deletion::NotKept]))
    );
    let g = h.c.snapshot("g").expect("put back");
    assert_eq!((g.state, g.generation), (GroupState::Empty, 2));
    // Deleted again, and kept: answered, and nothing more is written.
    h.advance(Duration::from_millis(500));
    for k in h.keeps() {
        h.c.handle_kept(h.now, k.token, true);
    }
    let to = h.call(GroupCall::Delete(vec!["g".into()]));
    let keeps = h.keeps();
    assert_eq!((keeps[0].group.as_str(), &keeps[0].state), ("g", &None));
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Delete(vec![Deletion::Deleted]))
    );
    assert!(h.c.snapshot("g").is_none());
    assert!(!h.c.is_unkept());
}

#[test]
fn leave_and_delete_that_write_nothing_are_answered_at_once() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: vec![("nobody".into(), None)],
    });
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Leave(Ok(vec![ErrorCode::UNKNOWN_MEMBER_ID])))
    );
    let to = h.call(GroupCall::Delete(vec!["g".into(), "none".into()]));
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Delete(vec![
            Deletion::NonEmpty,
            Deletion::Unknown
        ]))
    );
    assert!(h.keeps().is_empty());
    // A leave that empties the group is answered once the empty group is kept.
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|id| (id.clone(), None)).collect(),
    });
    assert_eq!(h.reply_to(to), None);
    let keeps = h.keeps();
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Leave(Ok(vec![ErrorCode::NONE; 3])))
    );
}

#[test]
fn a_held_deletion_past_the_hold_timeout_keeps_its_offsets() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|id| (id.clone(), None)).collect(),
    });
    let keeps = h.keeps();
    h.c.handle_kept(h.now, keeps[0].token, true);
    h.reply_to(to);
    let to = h.call(GroupCall::Delete(vec!["g".into()]));
    let keeps = h.keeps();
    h.advance(HOLD_TIMEOUT);
    assert_eq!(
        h.reply_to(to),
        Some(GroupReply::Delete(vec![Deletion::NotKept])),
        "the write may still land: COORDINATOR_NOT_AVAILABLE, offsets kept"
    );
    // It lands: the group is gone, and nothing is answered twice.
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert!(h.replies().is_empty());
    assert!(h.c.snapshot("g").is_none());
}

#[test]
fn after_shutdown_only_failed_writes_are_retried() {
    let mut h = keeping();
    let (ids, keep, _) = h.three_awaiting_keep();
    h.c.handle_kept(h.now, keep.token, true);
    h.replies();
    let to = h.call(GroupCall::Leave {
        group: "g".into(),
        members: ids.iter().map(|id| (id.clone(), None)).collect(),
    });
    h.reply_to(to);
    let keeps = h.keeps();
    h.c.shutdown();
    h.c.handle_kept(h.now, keeps[0].token, false);
    assert!(h.c.is_unkept());
    // No deadline acts any more but the retry: the empty group is not forgotten.
    assert_eq!(h.c.poll_timeout(), Some(h.now + Duration::from_millis(500)));
    h.advance(Duration::from_millis(500));
    let keeps = h.keeps();
    assert_eq!(keeps.len(), 1);
    assert!(keeps[0].state.is_some());
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert!(!h.c.is_unkept());
    assert_eq!(h.c.poll_timeout(), None);
    h.advance(Duration::from_secs(11 * 60));
    assert!(h.keeps().is_empty());
    assert!(h.c.snapshot("g").is_some());
}
