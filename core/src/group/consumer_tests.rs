//! Consumer groups (KIP-848) on a manual clock.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::protocol::Uuid;

const REBALANCE_MS: i32 = 30_000;

fn topic(name: &str, n: u8, partitions: i32) -> TopicMetadata {
    TopicMetadata {
        name: name.into(),
        id: Uuid([n; 16]),
        partitions,
    }
}

type Owned = BTreeMap<Uuid, BTreeSet<i32>>;

/// A member as a client keeps it: its id, epoch and what it owns.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: Owned,
    instance: Option<String>,
    names: Vec<String>,
    regex: Option<String>,
    assignor: Option<String>,
    /// Topics its principal may not describe.
    hidden: BTreeSet<String>,
}

impl Client {
    fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            epoch: 0,
            owned: Owned::new(),
            instance: None,
            names: vec!["t".into()],
            regex: None,
            assignor: None,
            hidden: BTreeSet::new(),
        }
    }

    fn count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }
}

struct Harness {
    c: Coordinator,
    now: Instant,
    next: u64,
    topics: Vec<TopicMetadata>,
    epochs: BTreeMap<(String, String), i32>,
    group_epochs: BTreeMap<String, i32>,
    /// What the coordinator handed out to keep, reported kept.
    kept: Vec<KeepGroup>,
}

impl Harness {
    fn new() -> Self {
        Self {
            c: Coordinator::new(GroupConfig::default(), 7),
            now: Instant::now(),
            next: 0,
            topics: vec![topic("t", 1, 6)],
            epochs: BTreeMap::new(),
            group_epochs: BTreeMap::new(),
            kept: Vec::new(),
        }
    }

    fn call(&mut self, call: GroupCall) -> GroupReply {
        let to = ReplyTo(self.next);
        self.next += 1;
        self.c.handle(self.now, to, call);
        // A heartbeat's answer waits for the write of what it changed: reported kept here.
        self.keep_all();
        let reply = self.c.poll_reply().expect("answered once kept");
        assert_eq!(reply.0, to);
        self.check();
        reply.1
    }

    /// Reports every state handed out kept.
    fn keep_all(&mut self) {
        while let Some(k) = self.c.poll_keep() {
            self.c.handle_kept(self.now, k.token, true);
            self.kept.push(k);
        }
    }

    /// Invariants after every step: one owner per partition, epochs never go back.
    fn check(&mut self) {
        if let Err(e) = self.c.check_consumer_invariants() {
            panic!("{e}");
        }
        for g in self.c.consumer_epochs() {
            let before = self.group_epochs.insert(g.group.clone(), g.epoch);
            assert!(before.is_none_or(|b| b <= g.epoch), "group epoch went back");
            for (m, e) in g.members {
                if e < 0 {
                    continue;
                }
                let before = self.epochs.insert((g.group.clone(), m), e);
                assert!(
                    before.is_none_or(|b| b <= e || e == 0),
                    "member epoch went back"
                );
            }
        }
    }

    fn heartbeat(&mut self, h: ConsumerHeartbeat) -> ConsumerHeartbeatResult {
        match self.call(GroupCall::ConsumerHeartbeat(h)) {
            GroupReply::ConsumerHeartbeat(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn request(&self, c: &Client) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            version: 1,
            group: "g".into(),
            member_id: c.id.clone(),
            member_epoch: c.epoch,
            instance_id: c.instance.clone(),
            rebalance_timeout_ms: REBALANCE_MS,
            subscribed_topic_names: Some(c.names.clone()),
            subscribed_topic_regex: c.regex.clone(),
            server_assignor: c.assignor.clone(),
            owned: Some(
                c.owned
                    .iter()
                    .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                    .collect(),
            ),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            topics: self.topics.clone(),
            hidden: c.hidden.clone(),
            ..ConsumerHeartbeat::default()
        }
    }

    /// One heartbeat of `c`, which then takes what it is told at once (revoking first).
    fn beat(&mut self, c: &mut Client) -> ConsumerHeartbeatResult {
        let r = self.heartbeat(self.request(c));
        if r.error == ErrorCode::NONE {
            c.epoch = r.member_epoch;
            if let Some(a) = &r.assignment {
                c.owned = a
                    .iter()
                    .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                    .collect();
            }
        }
        r
    }

    /// Heartbeats every client round after round until nothing changes.
    fn settle(&mut self, clients: &mut [Client]) {
        for _ in 0..10 {
            let before: Vec<(i32, Owned)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            for c in clients.iter_mut() {
                let r = self.beat(c);
                assert_eq!(r.error, ErrorCode::NONE, "{r:?}");
            }
            let after: Vec<(i32, Owned)> =
                clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            if before == after {
                return;
            }
        }
        panic!("the group does not settle: {clients:?}");
    }

    fn describe(&mut self) -> ConsumerGroupDescription {
        match self.call(GroupCall::ConsumerDescribe(vec!["g".into()])) {
            GroupReply::ConsumerDescribe(mut d) => d.remove(0).expect("a consumer group"),
            other => panic!("{other:?}"),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
        assert!(self.c.poll_timeout().is_none_or(|t| t > self.now));
        self.check();
    }
}

fn all_partitions(clients: &[Client]) -> Vec<i32> {
    let mut all: Vec<i32> = clients
        .iter()
        .flat_map(|c| c.owned.values().flatten().copied())
        .collect();
    all.sort_unstable();
    all
}

#[test]
fn members_join_and_share_the_partitions_evenly() {
    let mut h = Harness::new();
    let mut clients = vec![Client::new("a"), Client::new("b"), Client::new("c")];
    let r = h.beat(&mut clients[0]);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(clients[0].count(), 6, "the only member takes all");
    h.settle(&mut clients);
    for c in &clients {
        assert_eq!(c.count(), 2, "{clients:?}");
    }
    assert_eq!(all_partitions(&clients), vec![0, 1, 2, 3, 4, 5]);
    let d = h.describe();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.assignor, "uniform");
    assert_eq!(d.epoch, 3);
    assert!(d.members.iter().all(|m| m.member_epoch == 3));
}

#[test]
fn a_partition_goes_to_its_new_owner_only_after_the_old_one_revoked_it() {
    let mut h = Harness::new();
    let mut a = Client::new("a");
    let mut b = Client::new("b");
    h.beat(&mut a);
    assert_eq!(a.count(), 6);
    // b joins: the target gives it half, but a still owns them.
    let r = h.beat(&mut b);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(b.count(), 0, "nothing is free yet");
    assert_eq!(h.describe().state, GroupState::Reconciling);
    // a is told to give up three, keeping its epoch until it has.
    let mut a_told = a.clone();
    let r = h.beat(&mut a_told);
    assert_eq!(r.member_epoch, 1, "revocation first, epoch after");
    assert_eq!(a_told.count(), 3);
    // b asks again before a acknowledged: still nothing.
    h.beat(&mut b);
    assert_eq!(b.count(), 0);
    // a acknowledges (owns only its three): it moves to epoch 2.
    a = a_told;
    let r = h.beat(&mut a);
    assert_eq!(r.member_epoch, 2);
    // Now b gets the three a released.
    h.beat(&mut b);
    assert_eq!(b.count(), 3);
    let mut both = [a, b];
    h.settle(&mut both);
    assert_eq!(all_partitions(&both), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(h.describe().state, GroupState::Stable);
}

#[test]
fn the_range_assignor_gives_consecutive_ranges_per_topic() {
    let mut h = Harness::new();
    h.topics = vec![topic("t", 1, 3), topic("u", 2, 3)];
    let mut clients: Vec<Client> = ["m1", "m2"]
        .iter()
        .map(|id| {
            let mut c = Client::new(id);
            c.names = vec!["t".into(), "u".into()];
            c.assignor = Some("range".into());
            c
        })
        .collect();
    h.settle(&mut clients);
    assert_eq!(h.describe().assignor, "range");
    let first: Vec<(Uuid, Vec<i32>)> = clients[0]
        .owned
        .iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect();
    assert_eq!(
        first,
        vec![(Uuid([1; 16]), vec![0, 1]), (Uuid([2; 16]), vec![0, 1])]
    );
    assert_eq!(clients[1].count(), 2);
}

#[test]
fn the_uniform_assignor_balances_members_with_different_subscriptions() {
    let mut h = Harness::new();
    h.topics = vec![topic("t", 1, 4), topic("u", 2, 4)];
    let mut a = Client::new("a");
    a.names = vec!["t".into(), "u".into()];
    let mut b = Client::new("b");
    b.names = vec!["u".into()];
    let mut clients = [a, b];
    h.settle(&mut clients);
    assert_eq!(clients[0].count(), 4);
    assert_eq!(clients[1].count(), 4);
    assert!(clients[1].owned.keys().all(|t| *t == Uuid([2; 16])));
}

#[test]
fn a_regular_expression_follows_the_topics_that_appear() {
    let mut h = Harness::new();
    h.topics = vec![topic("orders", 1, 2), topic("other", 2, 2)];
    let mut c = Client::new("a");
    c.names = Vec::new();
    c.regex = Some("ord.*".into());
    h.beat(&mut c);
    assert_eq!(
        c.owned.keys().copied().collect::<Vec<_>>(),
        vec![Uuid([1; 16])]
    );
    // A new matching topic bumps the group epoch and is assigned.
    h.topics.push(topic("orders-eu", 3, 1));
    let r = h.beat(&mut c);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(c.count(), 3);
    // The expression matches whole names only, as Kafka's does.
    h.topics.push(topic("reorders", 4, 1));
    let r = h.beat(&mut c);
    assert_eq!(r.member_epoch, 2);
    // A bad expression is refused with Kafka's code.
    let mut bad = Client::new("z");
    bad.names = Vec::new();
    bad.regex = Some("(".into());
    assert_eq!(
        h.beat(&mut bad).error,
        ErrorCode::INVALID_REGULAR_EXPRESSION
    );
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let mut h = Harness::new();
    let mut a = Client::new("a1");
    a.instance = Some("instance-a".into());
    let mut b = Client::new("b");
    let mut both = [a, b.clone()];
    h.settle(&mut both);
    let [a, b2] = both;
    b = b2;
    let epoch = h.describe().epoch;
    // A second process with the same instance id while the first still runs: refused.
    let mut twin = Client::new("a2");
    twin.instance = Some("instance-a".into());
    assert_eq!(h.beat(&mut twin).error, ErrorCode::UNRELEASED_INSTANCE_ID);
    // The first leaves for now (-2): it keeps its partitions.
    let mut leaving = a.clone();
    leaving.epoch = LEAVE_STATIC_EPOCH;
    let r = h.beat(&mut leaving);
    assert_eq!(r.member_epoch, LEAVE_STATIC_EPOCH);
    // Its restart under a new member id takes them back; the group epoch does not move.
    let r = h.beat(&mut twin);
    assert_eq!(r.error, ErrorCode::NONE);
    assert_eq!(twin.owned, a.owned);
    assert_eq!(h.describe().epoch, epoch);
    h.beat(&mut b);
    assert_eq!(h.describe().state, GroupState::Stable);
    // The old member id is fenced.
    let mut old = a;
    old.epoch = epoch;
    assert_eq!(h.beat(&mut old).error, ErrorCode::FENCED_INSTANCE_ID);
}

#[test]
fn a_silent_member_is_removed_after_its_session_and_its_partitions_move() {
    let mut h = Harness::new();
    let mut clients = [Client::new("a"), Client::new("b")];
    h.settle(&mut clients);
    let [mut a, _b] = clients;
    h.advance(Duration::from_secs(30));
    h.beat(&mut a);
    h.advance(Duration::from_secs(20));
    // b's 45 s lapsed; a's did not.
    let d = h.describe();
    assert_eq!(d.members.len(), 1);
    h.beat(&mut a);
    assert_eq!(a.count(), 6);
    // The member b is gone for good.
    let mut b = Client::new("b");
    b.epoch = 2;
    assert_eq!(h.beat(&mut b).error, ErrorCode::UNKNOWN_MEMBER_ID);
    // And a last member's silence empties the group, which is forgotten later.
    h.advance(Duration::from_secs(46));
    assert_eq!(h.describe().state, GroupState::Empty);
    h.advance(Duration::from_secs(601));
    assert!(h.c.consumer_epochs().is_empty());
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed() {
    let mut h = Harness::new();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let mut b = Client::new("b");
    h.beat(&mut b);
    // a is told to revoke but its acknowledgement never comes (it keeps reporting all six).
    let stuck = a.clone();
    let r = h.heartbeat(h.request(&stuck));
    assert_eq!(r.assignment.map(|a| a[0].1.len()), Some(3));
    for _ in 0..5 {
        h.advance(Duration::from_secs(5));
        let r = h.heartbeat(h.request(&stuck));
        assert_eq!(r.error, ErrorCode::NONE);
        h.beat(&mut b);
    }
    h.advance(Duration::from_secs(6));
    assert_eq!(
        h.heartbeat(h.request(&stuck)).error,
        ErrorCode::UNKNOWN_MEMBER_ID
    );
    h.beat(&mut b);
    assert_eq!(b.count(), 6);
}

#[test]
fn leaving_gives_the_partitions_to_the_others() {
    let mut h = Harness::new();
    let mut clients = vec![Client::new("a"), Client::new("b"), Client::new("c")];
    h.settle(&mut clients);
    let mut gone = clients.remove(1);
    gone.epoch = LEAVE_EPOCH;
    let r = h.beat(&mut gone);
    assert_eq!((r.error, r.member_epoch), (ErrorCode::NONE, LEAVE_EPOCH));
    h.settle(&mut clients);
    assert_eq!(all_partitions(&clients), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(clients[0].count(), 3);
}

#[test]
fn kafka_error_codes_for_bad_heartbeats() {
    let mut h = Harness::new();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let mut ahead = a.clone();
    ahead.epoch = 9;
    assert_eq!(h.beat(&mut ahead).error, ErrorCode::FENCED_MEMBER_EPOCH);
    let mut unknown = Client::new("nobody");
    unknown.epoch = 1;
    assert_eq!(h.beat(&mut unknown).error, ErrorCode::UNKNOWN_MEMBER_ID);
    let mut req = h.request(&Client::new("x"));
    req.rebalance_timeout_ms = -1;
    assert_eq!(h.heartbeat(req).error, ErrorCode::INVALID_REQUEST);
    let mut req = h.request(&Client::new("x"));
    req.member_epoch = -3;
    assert_eq!(h.heartbeat(req).error, ErrorCode::INVALID_REQUEST);
    let mut req = h.request(&Client::new("x"));
    req.subscribed_topic_names = Some(Vec::new());
    assert_eq!(h.heartbeat(req).error, ErrorCode::INVALID_REQUEST);
    let mut req = h.request(&Client::new("x"));
    req.server_assignor = Some("sticky".into());
    assert_eq!(h.heartbeat(req).error, ErrorCode::UNSUPPORTED_ASSIGNOR);
    // v0: the coordinator chooses the member id.
    let mut req = h.request(&Client::new(""));
    req.version = 0;
    let r = h.heartbeat(req);
    assert_eq!(r.error, ErrorCode::NONE);
    assert!(r.member_id.is_some_and(|id| !id.is_empty()));
    // The group is full.
    let config = GroupConfig {
        max_group_size: 1,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 1);
    h.group_epochs.clear();
    h.epochs.clear();
    let mut a = Client::new("a");
    h.beat(&mut a);
    assert_eq!(
        h.beat(&mut Client::new("b")).error,
        ErrorCode::GROUP_MAX_SIZE_REACHED
    );
}

#[test]
fn commits_check_the_member_epoch() {
    let mut h = Harness::new();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let commit = |member: &str, generation: i32| {
        GroupCall::Commit(MemberRef {
            group: "g".into(),
            member_id: member.into(),
            instance_id: None,
            generation,
        })
    };
    assert_eq!(h.call(commit("a", 1)), GroupReply::Commit(ErrorCode::NONE));
    assert_eq!(
        h.call(commit("a", 0)),
        GroupReply::Commit(ErrorCode::STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        h.call(commit("z", 1)),
        GroupReply::Commit(ErrorCode::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        h.call(commit("", -1)),
        GroupReply::Commit(ErrorCode::UNKNOWN_MEMBER_ID)
    );
}

fn classic_join(member: &str) -> GroupCall {
    GroupCall::Join(JoinArgs {
        group: "g".into(),
        member_id: member.into(),
        client_id: "c".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member_id: true,
        ..JoinArgs::default()
    })
}

#[test]
fn an_empty_group_changes_protocol_and_a_busy_one_keeps_its_own() {
    let mut h = Harness::new();
    // Offsets committed without group management leave an empty classic group.
    let r = h.call(GroupCall::Commit(MemberRef {
        group: "g".into(),
        generation: -1,
        ..MemberRef::default()
    }));
    assert_eq!(r, GroupReply::Commit(ErrorCode::NONE));
    // It becomes a consumer group.
    let mut a = Client::new("a");
    assert_eq!(h.beat(&mut a).error, ErrorCode::NONE);
    let GroupReply::List(list) = h.call(GroupCall::List) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, GroupKind::Consumer);
    assert_eq!(list[0].state, GroupState::Stable);
    // A classic member cannot join while it has members.
    let GroupReply::Join(j) = h.call(classic_join("")) else {
        panic!()
    };
    assert_eq!(j.error, ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(
        h.call(GroupCall::Delete(vec!["g".into()])),
        GroupReply::Delete(vec![Deletion::NonEmpty])
    );
    // Once empty, it becomes a classic group again.
    a.epoch = LEAVE_EPOCH;
    h.beat(&mut a);
    let to = ReplyTo(999);
    h.c.handle(h.now, to, classic_join(""));
    let GroupReply::Join(j) = h.c.poll_reply().expect("answered").1 else {
        panic!()
    };
    assert_eq!(j.error, ErrorCode::MEMBER_ID_REQUIRED);
    let to = ReplyTo(1000);
    h.c.handle(h.now, to, classic_join(&j.member_id));
    // Now a consumer member is refused, as Kafka refuses it.
    let r = h.beat(&mut Client::new("b"));
    assert_eq!(r.error, ErrorCode::GROUP_ID_NOT_FOUND);
    let GroupReply::ConsumerDescribe(d) = h.call(GroupCall::ConsumerDescribe(vec!["g".into()]))
    else {
        panic!()
    };
    assert_eq!(
        d[0].as_ref().expect_err("not a consumer group").0,
        ErrorCode::GROUP_ID_NOT_FOUND
    );
}

#[test]
fn the_uniform_assignor_is_sticky() {
    let mut h = Harness::new();
    let mut clients = vec![Client::new("a"), Client::new("b")];
    h.settle(&mut clients);
    let before: Vec<Owned> = clients.iter().map(|c| c.owned.clone()).collect();
    clients.push(Client::new("c"));
    h.settle(&mut clients);
    // Each of the first two gives up one partition, no more, and keeps the rest.
    for (c, was) in clients.iter().zip(&before) {
        assert_eq!(c.count(), 2);
        let kept = c.owned[&Uuid([1; 16])]
            .intersection(&was[&Uuid([1; 16])])
            .count();
        assert_eq!(kept, 2, "{clients:?}");
    }
    assert_eq!(all_partitions(&clients), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn the_range_assignor_puts_static_members_first() {
    let mut h = Harness::new();
    h.topics = vec![topic("t", 1, 5)];
    let mut dynamic = Client::new("a");
    dynamic.assignor = Some("range".into());
    let mut fixed = Client::new("z");
    fixed.assignor = Some("range".into());
    fixed.instance = Some("instance".into());
    let mut clients = [dynamic, fixed];
    h.settle(&mut clients);
    // The static member comes first whatever its member id: it takes the larger first range.
    assert_eq!(
        clients[1].owned[&Uuid([1; 16])]
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        clients[0].owned[&Uuid([1; 16])]
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
}

fn keeping_harness() -> Harness {
    let mut h = Harness::new();
    let config = GroupConfig {
        keep_state: true,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 7);
    h
}

/// The latest state handed out to keep of each group since the last call.
fn kept(h: &mut Harness) -> BTreeMap<String, Option<Bytes>> {
    h.keep_all();
    std::mem::take(&mut h.kept)
        .into_iter()
        .map(|k| (k.group, k.state))
        .collect()
}

#[test]
fn a_restored_consumer_group_keeps_its_epochs_and_assignments() {
    let mut h = keeping_harness();
    let mut clients = vec![Client::new("a"), Client::new("b"), Client::new("c")];
    h.settle(&mut clients);
    let epochs = h.c.consumer_epochs();
    let described = h.describe();
    let state = kept(&mut h).remove("g").flatten().expect("kept");
    // Heartbeats that change nothing write nothing.
    h.settle(&mut clients);
    assert!(kept(&mut h).is_empty());

    let config = GroupConfig {
        keep_state: true,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 8);
    h.now += Duration::from_secs(5);
    assert_eq!(h.c.restore(h.now, [("g".to_owned(), state)]), 1);
    assert_eq!(h.c.consumer_epochs(), epochs);
    assert_eq!(h.describe(), described);
    // Every member heartbeats on at its epoch and keeps what it owns.
    let before: Vec<(i32, Owned)> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
    h.settle(&mut clients);
    let after: Vec<(i32, Owned)> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
    assert_eq!(before, after);
    assert!(kept(&mut h).is_empty(), "nothing changed");
    // One member never heartbeats again: removed after its session timeout (45 s) from the
    // restart, and the others take its partitions.
    let mut two = clients[..2].to_vec();
    for _ in 0..8 {
        h.advance(Duration::from_secs(5));
        h.settle(&mut two);
    }
    assert_eq!(h.describe().members.len(), 3, "40 s: within its session");
    h.advance(Duration::from_secs(5));
    h.settle(&mut two);
    assert_eq!(h.describe().members.len(), 2);
    assert_eq!(all_partitions(&two), vec![0, 1, 2, 3, 4, 5]);
    let state = kept(&mut h)
        .remove("g")
        .flatten()
        .expect("the new epoch is kept");
    let mut again = Coordinator::new(GroupConfig::default(), 9);
    assert_eq!(again.restore(h.now, [("g".to_owned(), state)]), 1);
    assert_eq!(again.consumer_epochs(), h.c.consumer_epochs());
}

#[test]
fn a_member_revoking_when_kept_gets_its_rebalance_timeout_from_the_restart() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    let mut b = Client::new("b");
    h.beat(&mut a);
    h.beat(&mut b);
    // a is told to revoke three partitions and does not answer.
    let mut told = a.clone();
    h.beat(&mut told);
    let state = kept(&mut h).remove("g").flatten().expect("kept");
    let config = GroupConfig {
        keep_state: true,
        ..GroupConfig::default()
    };
    h.c = Coordinator::new(config, 8);
    h.now += Duration::from_secs(60);
    h.c.restore(h.now, [("g".to_owned(), state)]);
    assert_eq!(h.describe().state, GroupState::Reconciling);
    // a never acknowledges the revocation.
    for _ in 0..5 {
        h.advance(Duration::from_secs(5));
        h.beat(&mut b);
    }
    assert_eq!(
        h.describe().members.len(),
        2,
        "25 s: within its rebalance timeout"
    );
    for _ in 0..2 {
        h.advance(Duration::from_secs(5));
        h.beat(&mut b);
    }
    let d = h.describe();
    assert_eq!(d.members.len(), 1, "30 s: gone");
    assert_eq!(d.members[0].member_id, "b");
}

#[test]
fn a_deleted_consumer_group_is_forgotten_and_bad_state_is_refused() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let state = kept(&mut h).remove("g").flatten().expect("kept");
    a.epoch = LEAVE_EPOCH;
    h.beat(&mut a);
    h.call(GroupCall::Delete(vec!["g".into()]));
    assert_eq!(kept(&mut h).remove("g"), Some(None));
    // Every cut but the one before the last four bytes: they count the resolved regular
    // expressions, a section that states written before it lack (the golden test reads one).
    for n in (0..state.len()).filter(|n| *n != state.len() - 4) {
        let mut c = Coordinator::new(GroupConfig::default(), 1);
        assert_eq!(c.restore(h.now, [("g".to_owned(), state.slice(..n))]), 0);
    }
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    assert_eq!(c.restore(h.now, [("g".to_owned(), state.clone())]), 1);
}

#[test]
fn a_regular_expression_resolves_only_to_topics_the_member_may_describe() {
    let mut h = Harness::new();
    h.topics = vec![topic("orders", 1, 2), topic("orders-secret", 2, 2)];
    let mut a = Client::new("a");
    a.names = Vec::new();
    a.regex = Some("orders.*".into());
    a.hidden = BTreeSet::from(["orders-secret".to_owned()]);
    h.beat(&mut a);
    assert_eq!(
        a.owned.keys().copied().collect::<Vec<_>>(),
        vec![Uuid([1; 16])]
    );
    let d = h.describe();
    assert_eq!(d.members[0].target_assignment.len(), 1, "{d:?}");
    // Another principal with the same expression may see both: it alone gets the secret
    // topic, whoever heartbeats, and a's heartbeats do not move it.
    let mut b = Client::new("b");
    b.names = Vec::new();
    b.regex = Some("orders.*".into());
    let mut both = [a, b];
    h.settle(&mut both);
    let epoch = h.describe().epoch;
    let [a, b] = &mut both;
    assert!(a.owned.keys().all(|t| *t == Uuid([1; 16])), "{a:?}");
    assert_eq!(
        b.owned.get(&Uuid([2; 16])).map(BTreeSet::len),
        Some(2),
        "{b:?}"
    );
    h.beat(a);
    h.beat(b);
    assert_eq!(
        h.describe().epoch,
        epoch,
        "no member's view bumps the group"
    );
    // The permission is granted: a's next heartbeat resolves to it too.
    a.hidden.clear();
    h.beat(a);
    assert_eq!(h.describe().epoch, epoch + 1);
}

#[test]
fn a_heartbeat_that_changes_the_group_is_answered_once_kept() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let b = Client::new("b");
    let join_b = ReplyTo(1000);
    h.c.handle(h.now, join_b, GroupCall::ConsumerHeartbeat(h.request(&b)));
    assert!(
        h.c.poll_reply().is_none(),
        "the new member waits for the write"
    );
    // a heartbeats while that write is under way: its answer follows the write too.
    let beat_a = ReplyTo(1001);
    h.c.handle(h.now, beat_a, GroupCall::ConsumerHeartbeat(h.request(&a)));
    assert!(h.c.poll_reply().is_none());
    let keeps: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    assert!(!keeps.is_empty());
    for k in &keeps {
        h.c.handle_kept(h.now, k.token, true);
    }
    let replies: BTreeMap<ReplyTo, GroupReply> = std::iter::from_fn(|| h.c.poll_reply()).collect();
    for to in [join_b, beat_a] {
        match &replies[&to] {
            GroupReply::ConsumerHeartbeat(r) => assert_eq!(r.error, ErrorCode::NONE),
            other => panic!("{other:?}"),
        }
    }
    assert!(!h.c.is_unkept());
    // A heartbeat that changes nothing, with nothing being written, is answered at once.
    let again = ReplyTo(1002);
    h.c.handle(h.now, again, GroupCall::ConsumerHeartbeat(h.request(&a)));
    assert_eq!(h.c.poll_reply().map(|(to, _)| to), Some(again));
}

#[test]
fn a_heartbeat_whose_change_cannot_be_kept_fails_and_the_group_goes_back() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let before = h.c.consumer_epochs();
    let described = h.describe();
    let mut b = Client::new("b");
    let join_b = ReplyTo(1000);
    h.c.handle(h.now, join_b, GroupCall::ConsumerHeartbeat(h.request(&b)));
    let keeps: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    assert_eq!(keeps.len(), 1);
    h.c.handle_kept(h.now, keeps[0].token, false);
    match h.c.poll_reply() {
        Some((to, GroupReply::ConsumerHeartbeat(r))) => {
            assert_eq!(to, join_b);
            assert_eq!(r.error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    // The memory is what was kept: a alone, at its epoch.
    assert_eq!(h.c.consumer_epochs(), before);
    assert_eq!(h.describe(), described);
    // The group is written again after a backoff, and b's retry joins.
    assert!(h.c.is_unkept());
    h.advance(Duration::from_millis(500));
    let again = kept(&mut h).remove("g").flatten().expect("written again");
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    c.restore(h.now, [("g".to_owned(), again)]);
    assert_eq!(c.consumer_epochs()[0].members.len(), 1);
    assert!(!h.c.is_unkept());
    let r = h.beat(&mut b);
    assert_eq!(r.error, ErrorCode::NONE);
    assert_eq!(h.describe().members.len(), 2);
}

#[test]
fn a_new_groups_first_write_failing_forgets_the_group() {
    let mut h = keeping_harness();
    let a = Client::new("a");
    let join_a = ReplyTo(1000);
    h.c.handle(h.now, join_a, GroupCall::ConsumerHeartbeat(h.request(&a)));
    let keeps: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    h.c.handle_kept(h.now, keeps[0].token, false);
    assert!(h.c.consumer_epochs().is_empty(), "nothing was kept");
    match h.c.poll_reply() {
        Some((_, GroupReply::ConsumerHeartbeat(r))) => {
            assert_eq!(r.error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    // Written again as gone.
    h.advance(Duration::from_millis(500));
    assert_eq!(kept(&mut h).remove("g"), Some(None));
}

/// The encoding of a consumer group's kept state is fixed: a kept state written by this
/// version must read back the same after any change of the code.
#[test]
fn the_kept_consumer_state_is_stable_and_bad_input_is_refused() {
    let mut h = keeping_harness();
    h.topics = vec![topic("t", 1, 1)];
    let mut a = Client::new("m");
    a.names = Vec::new();
    a.regex = Some("t".into());
    a.instance = Some("i".into());
    a.assignor = Some("range".into());
    h.beat(&mut a);
    let bytes = kept(&mut h).remove("g").flatten().expect("kept");
    let t = [1u8; 16];
    let golden: Vec<u8> = [
        &[1u8, 2][..], // version, consumer
        &[1, 0, 0, 0], // group epoch
        &[1, 0, 0, 0], // assignment epoch
        &[5, 0, 0, 0],
        b"range",      // assignor
        &[1, 0, 0, 0], // one subscribed topic
        &[1, 0, 0, 0],
        b"t",
        &t,
        &[1, 0, 0, 0], // name, id, partitions
        &[1, 0, 0, 0], // one member
        &[1, 0, 0, 0],
        b"m", // id
        &[1, 1, 0, 0, 0],
        b"i", // instance
        &[0], // no rack
        &[6, 0, 0, 0],
        b"client",
        &[10, 0, 0, 0],
        b"/127.0.0.1", // client id, host
        &[1, 0, 0, 0],
        &[0, 0, 0, 0], // epoch, previous epoch
        &[0],          // stable
        &[1, 0, 0, 0],
        &t,
        &[1, 0, 0, 0],
        &[0, 0, 0, 0],       // assigned: t-0
        &[0, 0, 0, 0],       // revoking nothing
        &[0x30, 0x75, 0, 0], // rebalance timeout
        &[0, 0, 0, 0],       // no topic names
        &[1, 1, 0, 0, 0],
        b"t", // regex
        &[1, 5, 0, 0, 0],
        b"range",      // assignor
        &[1, 0, 0, 0], // one target
        &[1, 0, 0, 0],
        b"m",
        &[1, 0, 0, 0],
        &t,
        &[1, 0, 0, 0],
        &[0, 0, 0, 0],
        &[1, 0, 0, 0], // one resolved regular expression
        &[1, 0, 0, 0],
        b"m",
        &[1, 0, 0, 0],
        &[1, 0, 0, 0],
        b"t",
    ]
    .concat();
    assert_eq!(&bytes[..], &golden[..]);
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    assert_eq!(
        c.restore(h.now, [("g".to_owned(), Bytes::from(golden.clone()))]),
        1
    );
    assert_eq!(c.consumer_epochs(), h.c.consumer_epochs());
    // Without the resolved expressions (as written before they were kept) it reads too.
    let cut = golden.len() - (4 + 5 + 4 + 5);
    let mut c = Coordinator::new(GroupConfig::default(), 1);
    assert_eq!(
        c.restore(
            h.now,
            [("g".to_owned(), Bytes::from(golden[..cut].to_vec()))]
        ),
        1
    );
    // Every other cut, a newer version, an unknown kind, trailing bytes, a huge count.
    let mut bad: Vec<Vec<u8>> = (0..golden.len())
        .filter(|n| *n != cut)
        .map(|n| golden[..n].to_vec())
        .collect();
    bad.push([&[2], &golden[1..]].concat());
    bad.push([&[1, 9], &golden[2..]].concat());
    bad.push([&golden[..], &[0]].concat());
    let mut huge = golden.clone();
    huge[19..23].copy_from_slice(&u32::MAX.to_le_bytes());
    bad.push(huge);
    for b in bad {
        let mut c = Coordinator::new(GroupConfig::default(), 1);
        assert_eq!(
            c.restore(h.now, [("g".to_owned(), Bytes::from(b.clone()))]),
            0,
            "{b:?}"
        );
        assert!(c.consumer_epochs().is_empty());
    }
}

/// An answer waits for its group's write for a bounded time, as Kafka bounds its writes:
/// past it the member gets COORDINATOR_NOT_AVAILABLE and retries, the memory is left as
/// it is (the write's outcome decides), and the write landing later sends nothing more.
#[test]
fn a_held_heartbeat_is_answered_unavailable_when_its_write_takes_too_long() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let b = Client::new("b");
    let join_b = ReplyTo(1000);
    h.c.handle(h.now, join_b, GroupCall::ConsumerHeartbeat(h.request(&b)));
    let keeps: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    assert_eq!(keeps.len(), 1);
    assert!(h.c.poll_reply().is_none());
    assert!(h
        .c
        .poll_timeout()
        .is_some_and(|t| t <= h.now + HOLD_TIMEOUT));
    h.now += HOLD_TIMEOUT;
    h.c.handle_timeout(h.now);
    match h.c.poll_reply() {
        Some((to, GroupReply::ConsumerHeartbeat(r))) => {
            assert_eq!(to, join_b);
            assert_eq!(r.error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.describe().members.len(), 2, "not undone");
    h.c.handle_kept(h.now, keeps[0].token, true);
    assert!(h.c.poll_reply().is_none(), "answered once");
    assert!(!h.c.is_unkept());
}

/// A failed write sends the group back to its kept state: the group's later states,
/// handed out meanwhile, no longer count, and the driver does not write them.
#[test]
fn a_failed_write_voids_the_groups_later_states() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    let b = Client::new("b");
    h.c.handle(
        h.now,
        ReplyTo(1000),
        GroupCall::ConsumerHeartbeat(h.request(&b)),
    );
    let first: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    let c = Client::new("c");
    h.c.handle(
        h.now,
        ReplyTo(1001),
        GroupCall::ConsumerHeartbeat(h.request(&c)),
    );
    let later: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    assert_eq!((first.len(), later.len()), (1, 1));
    assert!(h.c.is_in_flight(later[0].token));
    h.c.handle_kept(h.now, first[0].token, false);
    assert!(!h.c.is_in_flight(later[0].token));
    let answers: Vec<(ReplyTo, GroupReply)> = std::iter::from_fn(|| h.c.poll_reply()).collect();
    assert_eq!(answers.len(), 2, "both failed: {answers:?}");
    assert_eq!(h.describe().members.len(), 1, "back to what was kept");
}

/// An empty consumer group that a classic join makes a classic group, where the write of
/// that change fails: the consumer group comes back as it was kept, the classic group made
/// since is gone (the JoinGroup it holds answered COORDINATOR_NOT_AVAILABLE), a restart
/// finds what memory holds, and the classic member's next join makes the change again.
#[test]
fn a_conversion_to_a_classic_group_that_cannot_be_kept_is_undone() {
    let mut h = keeping_harness();
    let mut a = Client::new("a");
    h.beat(&mut a);
    a.epoch = LEAVE_EPOCH;
    h.beat(&mut a);
    let before = h.c.consumer_epochs();
    assert!(before[0].members.is_empty(), "{before:?}");
    let kept_before = kept(&mut h);
    h.c.handle(h.now, ReplyTo(999), classic_join(""));
    let GroupReply::Join(j) = h.c.poll_reply().expect("answered").1 else {
        panic!()
    };
    assert_eq!(j.error, ErrorCode::MEMBER_ID_REQUIRED);
    let waiting = ReplyTo(1000);
    h.c.handle(h.now, waiting, classic_join(&j.member_id));
    assert!(h.c.consumer_epochs().is_empty(), "a classic group now");
    let keeps: Vec<KeepGroup> = std::iter::from_fn(|| h.c.poll_keep()).collect();
    assert_eq!(keeps.len(), 1);
    assert_eq!(keeps[0].state, None, "the consumer group's removal");
    h.c.handle_kept(h.now, keeps[0].token, false);
    match h.c.poll_reply() {
        Some((to, GroupReply::Join(r))) => {
            assert_eq!(to, waiting);
            assert_eq!(r.error, ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.c.consumer_epochs(), before);
    h.check();
    let mut restarted = Coordinator::new(GroupConfig::default(), 8);
    restarted.restore(
        h.now,
        kept_before
            .into_iter()
            .filter_map(|(g, s)| s.map(|s| (g, s))),
    );
    assert_eq!(restarted.consumer_epochs(), h.c.consumer_epochs());
    let GroupReply::Join(j) = h.call(classic_join("")) else {
        panic!()
    };
    assert_eq!(j.error, ErrorCode::MEMBER_ID_REQUIRED);
    assert!(h.c.consumer_epochs().is_empty(), "a classic group again");
}
