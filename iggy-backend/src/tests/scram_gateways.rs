//! The SCRAM credentials topic's compaction with several gateways on one stream: one
//! starting while another compacts, two compacting at once, changes stored during a
//! compaction, a gateway under another key. Each gateway is its own backend on the one
//! fake server; their calls are interleaved a round of the server at a time.

use std::pin::pin;
use std::sync::{Arc, Mutex};

use iggy_kafka_core::backend::Execution;
use iggy_kafka_core::sasl::{ScramChange, ScramMechanism};
use iggy_kafka_iggy_client::protocol::codes::{GET_STREAM_CODE, POLL_MESSAGES_CODE};
use iggy_kafka_iggy_client::Clock;

use crate::scram;

use super::scram_follow::{delete, version};
use super::*;

/// Longer than anything a gateway waits for: an hour.
const LATER: Duration = Duration::from_secs(3600);
/// Past the interval at which a following gateway lists the generations.
const NEXT_LISTING: Duration = Duration::from_secs(31);
/// The Iggy secret of the gateways but one (the default's, as [`Pool::restart`] gives).
const OURS: &str = "";

type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

fn config(compaction: bool, secret: &str) -> IggyConfig {
    IggyConfig {
        seed: 42,
        scram_compaction: compaction,
        credential_secret: secrecy::SecretString::from(secret.to_owned()),
        ..IggyConfig::default()
    }
}

fn gateway(h: &mut Pool, compaction: bool, secret: &str) -> IggyBackend {
    h.connect_with(config(compaction, secret))
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn connecting(
    h: &Pool,
    config: IggyConfig,
) -> impl Future<Output = Result<IggyBackend, crate::ConnectError>> {
    let clock: Arc<dyn Clock> = h.clock.clone();
    IggyBackend::connect(Arc::clone(&h.lanes), clock, config)
}

fn storing(backend: &IggyBackend, changes: Vec<ScramChange>) -> Pending {
    match backend.execute(Command::StoreScramCredentials { changes }) {
        Execution::Pending(f) => f,
        Execution::Done(c) => Box::pin(std::future::ready(c)),
    }
}

fn stored(c: &Completion) {
    assert!(
        matches!(c, Completion::StoreScramCredentials(Ok(_))),
        "{c:?}"
    );
}

fn store(h: &mut Pool, backend: &IggyBackend, changes: Vec<ScramChange>) {
    stored(&h.exec(backend, Command::StoreScramCredentials { changes }));
}

fn follow(h: &mut Pool, backend: &IggyBackend) {
    let c = h.exec(backend, Command::FollowScramCredentials { since: 0 });
    assert!(
        matches!(c, Completion::FollowScramCredentials(Ok(_))),
        "{c:?}"
    );
}

/// 256 records of two credentials: the next store makes a compacting gateway compact.
fn fill() -> Vec<ScramChange> {
    (0..255)
        .map(|i| version("alice", i))
        .chain([version("bob", 1)])
        .collect()
}

/// The credentials a gateway holds, without deletions (which a compaction drops).
fn credentials(g: &IggyBackend) -> Vec<ScramChange> {
    let mut held = g.scram_credentials();
    held.retain(|c| matches!(c, ScramChange::Set { .. }));
    held
}

fn generations(h: &Pool) -> Vec<u64> {
    h.fake
        .topics
        .keys()
        .filter_map(|t| scram::generation(t))
        .collect()
}

/// How many batches generation `g` holds; `None` when it does not exist.
fn batches(fake: &FakeIggy, g: u64) -> Option<usize> {
    fake.topics
        .get(&scram::topic_name(g))
        .map(|t| t.partitions[0].batches.len())
}

/// Polls `fut`, serving a round between polls, until it finishes (`Some`) or `until`
/// holds after a round (`None`, `fut` left where it is).
fn drive<T>(
    h: &mut Pool,
    fut: &mut Pin<Box<dyn Future<Output = T> + Send>>,
    mut until: impl FnMut(&FakeIggy) -> bool,
) -> Option<T> {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        h.serve();
        if until(&h.fake) {
            return None;
        }
    }
    panic!("the future never finished");
}

/// Runs `a` and `b` at once, `b` polled first `delay_b` rounds after `a`, and `a`
/// `delay_a` rounds after `b`.
fn lockstep<T, U>(
    h: &mut Pool,
    a: impl Future<Output = T>,
    b: impl Future<Output = U>,
    (delay_a, delay_b): (u32, u32),
) -> (T, U) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    let mut cx = Context::from_waker(Waker::noop());
    for round in 0..100_000 {
        if ra.is_none() && round >= delay_a {
            if let Poll::Ready(v) = a.as_mut().poll(&mut cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() && round >= delay_b {
            if let Poll::Ready(v) = b.as_mut().poll(&mut cx) {
                rb = Some(v);
            }
        }
        if let (Some(_), Some(_)) = (&ra, &rb) {
            return (
                ra.unwrap_or_else(|| unreachable!()),
                rb.unwrap_or_else(|| unreachable!()),
            );
        }
        h.serve();
    }
    panic!("never finished");
}

/// Gateway A, compacting, has filled generation 0; `then` is what A's next store makes.
fn filled() -> (Pool, IggyBackend) {
    let mut h = Pool::new(FakeIggy::new());
    let a = gateway(&mut h, true, OURS);
    store(&mut h, &a, fill());
    assert_eq!(generations(&h), [0]);
    (h, a)
}

/// A gateway starting while another compacts, at every offset between the two: the
/// starting one may not delete the generation being written (if it then completed, its
/// compactor would delete the old one too, and every credential would be gone).
#[test]
fn a_gateway_starting_during_a_compaction_loses_nothing() {
    // How long the compaction and a start take, in rounds.
    let (mut h, a) = filled();
    let from = h.round;
    stored(&h.run(storing(&a, vec![version("alice", 999)])));
    let compaction = h.round - from;
    let from = h.round;
    drop(gateway(&mut h, false, OURS));
    let start = h.round - from;
    let expected = vec![version("alice", 999), version("bob", 1)];
    for delay in 0..compaction + start {
        for delays in [(0, delay), (delay, 0)] {
            let (mut h, a) = filled();
            let starting = connecting(&h, config(false, OURS));
            let (c, b) = lockstep(
                &mut h,
                storing(&a, vec![version("alice", 999)]),
                starting,
                delays,
            );
            stored(&c);
            let b = b.unwrap_or_else(|e| panic!("connect: {e}"));
            follow(&mut h, &b);
            assert_eq!(b.scram_credentials(), expected, "{delays:?}");
            let (_h, restarted) = h.restart();
            assert_eq!(restarted.scram_credentials(), expected, "{delays:?}");
        }
    }
}

/// Gateway B starts while A compacts generation 0 into 1: B lists both, reads 1 (no
/// marker yet) and 0; then A completes 1 and deletes 0; then B goes on. B must not delete
/// generation 1 now: both would be gone.
#[test]
fn a_gateway_starting_does_not_delete_a_generation_being_compacted_into() {
    let (mut h, a) = filled();
    let mut compacting = storing(&a, vec![version("alice", 999)]);
    assert!(drive(&mut h, &mut compacting, |fake| {
        batches(fake, 1).is_some_and(|n| n > 0)
    })
    .is_none());
    let mut starting: Pin<Box<dyn Future<Output = _> + Send>> =
        Box::pin(connecting(&h, config(false, OURS)));
    let m = h.fake.seen.len();
    // The listing of the generations, then a poll of each (a read stops where the
    // generation ended when it began).
    let read_both = |fake: &FakeIggy| {
        let seen = &fake.seen[m..];
        seen.len() >= 3
            && seen[seen.len() - 3] == GET_STREAM_CODE
            && seen[seen.len() - 2..]
                .iter()
                .all(|c| *c == POLL_MESSAGES_CODE)
    };
    assert!(drive(&mut h, &mut starting, read_both).is_none());
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [1]);
    let b = h.run(starting).unwrap_or_else(|e| panic!("connect: {e}"));
    let expected = vec![version("alice", 999), version("bob", 1)];
    follow(&mut h, &b);
    assert_eq!(b.scram_credentials(), expected);
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), expected);
}

/// Two compacting gateways reaching the threshold at once, at every offset between
/// them: one compacts, the other leaves it the generation, and nothing is lost.
#[test]
fn two_gateways_compacting_at_once_lose_nothing() {
    let (mut h, _) = filled();
    let a = gateway(&mut h, true, OURS);
    let from = h.round;
    stored(&h.run(storing(&a, vec![version("alice", 999)])));
    let rounds = h.round - from;
    for delay in 0..rounds {
        for delays in [(0, delay), (delay, 0)] {
            let (mut h, a) = filled();
            let b = gateway(&mut h, true, OURS);
            let (ca, cb) = lockstep(
                &mut h,
                storing(&a, vec![version("alice", 999)]),
                storing(&b, vec![version("carol", 1), delete("bob")]),
                delays,
            );
            stored(&ca);
            stored(&cb);
            // Whichever compacted (or none yet), one generation is read after a restart,
            // with every change.
            let (mut h, restarted) = h.restart();
            assert_eq!(
                credentials(&restarted),
                vec![version("alice", 999), version("carol", 1)],
                "{delays:?}"
            );
            // Nothing left behind.
            h.clock.advance(LATER);
            follow(&mut h, &restarted);
            assert_eq!(
                generations(&h).len(),
                1,
                "{delays:?}: {:?}",
                generations(&h)
            );
        }
    }
}

/// Gateway A compacts generation 0 into 1 and has read 0 for the last time (nothing new);
/// gateway B, compacting too, stores and would compact as well (it finds generation 1
/// made, so it leaves it be: no generation 2 is made), and is stopped; gateway C then
/// stores a deletion into generation 0. A's marker completes generation 1: the deletion
/// must be in it.
#[test]
fn a_deletion_stored_while_two_gateways_compact_is_kept() {
    let (mut h, a) = filled();
    let b = gateway(&mut h, true, OURS);
    let c = gateway(&mut h, false, OURS);
    let mut compacting = storing(&a, vec![version("alice", 999)]);
    // A's snapshot is written, then its read of generation 0 served.
    let mut mark = None;
    let paused = drive(&mut h, &mut compacting, |fake| {
        if mark.is_none() && batches(fake, 1).is_some_and(|n| n > 0) {
            mark = Some(fake.seen.len());
        }
        mark.is_some_and(|m| fake.seen[m..].contains(&POLL_MESSAGES_CODE))
    });
    assert!(paused.is_none(), "A finished before its last read");
    // B stores, and would compact: it is stopped once a generation 2 has a record, or
    // when its store ends.
    let mut dying = storing(&b, vec![version("carol", 1)]);
    let _ = drive(&mut h, &mut dying, |fake| {
        batches(fake, 2).is_some_and(|n| n > 0)
    });
    drop(dying);
    store(&mut h, &c, vec![delete("bob")]);
    stored(&h.run(compacting));
    let (mut h, restarted) = h.restart();
    assert_eq!(
        credentials(&restarted),
        vec![version("alice", 999), version("carol", 1)]
    );
    h.clock.advance(LATER);
    follow(&mut h, &restarted);
    assert_eq!(generations(&h), [1]);
}

/// Two changes of one credential land in generation 0 while it is compacted: one once
/// generation 1 is made, before the compactor's first read of 0, one after that read
/// but before the copy the read led to. The copy of the older value lands after the newer
/// one in generation 1; the compactor's next read copies the newer one again, and it is
/// the one kept.
#[test]
fn changes_stored_during_a_compaction_keep_their_order() {
    let (mut h, a) = filled();
    let c = gateway(&mut h, false, OURS);
    let d = gateway(&mut h, false, OURS);
    let mut compacting = storing(&a, vec![version("carol", 1)]);
    assert!(drive(&mut h, &mut compacting, |fake| batches(fake, 1).is_some()).is_none());
    store(&mut h, &d, vec![version("alice", 500)]);
    let m = h.fake.seen.len();
    assert!(drive(&mut h, &mut compacting, |fake| {
        fake.seen[m..].contains(&POLL_MESSAGES_CODE)
    })
    .is_none());
    store(&mut h, &c, vec![version("alice", 1000)]);
    stored(&h.run(compacting));
    let expected = vec![
        version("alice", 1000),
        version("bob", 1),
        version("carol", 1),
    ];
    for g in [&c, &d] {
        follow(&mut h, g);
        assert_eq!(g.scram_credentials(), expected);
    }
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), expected);
}

/// Drives `fut` until generation `g` holds `n` batches (its header, then its snapshot),
/// and leaves it there.
fn until_batches(h: &mut Pool, fut: &mut Pending, g: u64, n: usize) {
    assert!(
        drive(h, fut, |fake| batches(fake, g).is_some_and(|b| b >= n)).is_none(),
        "finished before generation {g} had {n} batches"
    );
}

/// Drives `fut` until the compaction it runs has written its snapshot and had its first
/// read of the old generation served, and leaves it there.
fn until_copying(h: &mut Pool, fut: &mut Pending, g: u64) {
    let mut mark = None;
    assert!(drive(h, fut, |fake| {
        if mark.is_none() && batches(fake, g).is_some_and(|n| n >= 2) {
            mark = Some(fake.seen.len());
        }
        mark.is_some_and(|m| fake.seen[m..].contains(&POLL_MESSAGES_CODE))
    })
    .is_none());
}

/// Generation `g`'s topic as it is now, to put back later.
fn copy_of(fake: &FakeIggy, g: u64) -> iggy_kafka_iggy_client::testing::fake::Topic {
    let t = &fake.topics[&scram::topic_name(g)];
    iggy_kafka_iggy_client::testing::fake::Topic {
        id: 9_000 + u32::try_from(g).unwrap_or(0),
        created_at: t.created_at,
        partitions: vec![iggy_kafka_iggy_client::testing::fake::Partition {
            batches: t.partitions[0].batches.clone(),
            next: t.partitions[0].next,
        }],
        options: t.options.clone(),
    }
}

/// A compaction that died leaves an unfinished generation: no gateway deletes it, however
/// long it stays, and while it is there nothing is compacted and nothing is lost. Once an
/// operator deletes it, compaction goes on.
#[test]
fn an_unfinished_generation_blocks_compaction_until_an_operator_deletes_it() {
    let (mut h, a) = filled();
    let mut dying = storing(&a, vec![version("alice", 999)]);
    until_batches(&mut h, &mut dying, 1, 2);
    drop(dying);
    let b = gateway(&mut h, true, OURS);
    assert_eq!(generations(&h), [0, 1], "the generation under way is left");
    h.clock.advance(LATER);
    follow(&mut h, &b);
    h.clock.advance(LATER);
    follow(&mut h, &b);
    // B would compact now, but finds the next generation made.
    store(&mut h, &b, vec![version("alice", 1000)]);
    store(&mut h, &b, vec![version("carol", 1)]);
    assert_eq!(
        generations(&h),
        [0, 1],
        "nothing deleted, nothing compacted"
    );
    let expected = vec![
        version("alice", 1000),
        version("bob", 1),
        version("carol", 1),
    ];
    assert_eq!(b.scram_credentials(), expected);
    let (mut h, restarted) = h.restart_with(config(true, OURS));
    assert_eq!(restarted.scram_credentials(), expected);
    // The operator deletes it.
    h.fake.topics.remove(&scram::topic_name(1));
    h.clock.advance(NEXT_LISTING);
    store(&mut h, &restarted, vec![version("alice", 1001)]);
    assert_eq!(generations(&h), [1]);
    let (_h, restarted) = h.restart();
    assert_eq!(
        restarted.scram_credentials(),
        vec![
            version("alice", 1001),
            version("bob", 1),
            version("carol", 1)
        ]
    );
}

/// A compactor paused (frozen, or its requests held up) for an hour in its copy rounds,
/// while other gateways change and delete credentials and would compact: when it goes on,
/// its copies and its marker land in the generation it made, which holds every change
/// stored meanwhile, after the copies that predate them. Nothing is lost or brought back.
#[test]
fn a_late_compactor_loses_and_brings_back_nothing() {
    let (mut h, a) = filled();
    let b = gateway(&mut h, true, OURS);
    let c = gateway(&mut h, false, OURS);
    let mut late = storing(&a, vec![version("alice", 999)]);
    until_copying(&mut h, &mut late, 1);
    store(&mut h, &c, vec![version("alice", 1000), delete("bob")]);
    store(&mut h, &b, vec![version("carol", 1)]);
    assert_eq!(generations(&h), [0, 1], "B does not compact meanwhile");
    h.clock.advance(LATER);
    follow(&mut h, &b);
    follow(&mut h, &c);
    stored(&h.run(late));
    assert_eq!(generations(&h), [1]);
    let expected = vec![version("alice", 1000), version("carol", 1)];
    for g in [&a, &b, &c] {
        follow(&mut h, g);
        assert_eq!(credentials(g), expected);
    }
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// An Iggy user that may send to the stream copies a complete generation's marker (or
/// the whole generation, header and marker included) into a newer generation, empty as a
/// compactor killed right after making it leaves it: that completes nothing, and no
/// gateway drops a credential for it.
#[test]
fn a_marker_copied_into_another_generation_completes_nothing() {
    for whole in [false, true] {
        let (mut h, a) = filled();
        store(&mut h, &a, vec![version("alice", 999)]);
        assert_eq!(generations(&h), [1]);
        let b = gateway(&mut h, false, OURS);
        let expected = vec![version("alice", 999), version("bob", 1)];
        assert_eq!(credentials(&b), expected);
        let mut forged = copy_of(&h.fake, 1);
        if !whole {
            let marker = forged.partitions[0].batches.pop();
            forged.partitions[0].batches = marker.into_iter().collect();
            forged.partitions[0].next = 1;
        }
        h.fake.topics.insert(scram::topic_name(2), forged);
        h.clock.advance(NEXT_LISTING);
        follow(&mut h, &b);
        assert_eq!(b.scram_credentials(), expected, "whole: {whole}");
        let (_h, restarted) = h.restart();
        assert_eq!(restarted.scram_credentials(), expected, "whole: {whole}");
        assert!(_h.fake.topics.contains_key(&scram::topic_name(1)));
    }
}

/// Compactor A is paused in its copy rounds; its generation 1 is deleted (by an operator,
/// too early) and B compacts generation 0 into a new generation 1, where B stops before
/// its marker. A goes on: its marker lands in B's generation, after B's header. It names
/// A's compaction, not B's, so it completes nothing, and A deletes nothing.
#[test]
fn a_marker_of_another_compaction_under_the_same_number_completes_nothing() {
    let (mut h, a) = filled();
    let b = gateway(&mut h, true, OURS);
    let mut late = storing(&a, vec![version("alice", 999)]);
    until_copying(&mut h, &mut late, 1);
    h.fake.topics.remove(&scram::topic_name(1));
    let mut other = storing(&b, vec![version("carol", 1)]);
    until_batches(&mut h, &mut other, 1, 2);
    stored(&h.run(late));
    drop(other);
    assert_eq!(generations(&h), [0, 1], "generation 1 is not complete");
    let (_h, restarted) = h.restart();
    assert_eq!(
        restarted.scram_credentials(),
        vec![
            version("alice", 999),
            version("bob", 1),
            version("carol", 1)
        ]
    );
}

/// A gateway starts as a compaction completes: it lists both generations and reads the
/// new one (no marker yet); the compactor then writes its marker and deletes the old
/// one, which the starting gateway was about to read. It must not start with nothing:
/// it lists again and reads the new generation.
#[test]
fn a_gateway_starting_as_a_compaction_completes_starts_with_every_credential() {
    // After how many polls of the starting gateway, from its first listing of the stream's
    // topics (its other own topics' reads included), the compaction completes.
    for polls in 1..=12 {
        let (mut h, a) = filled();
        let mut compacting = storing(&a, vec![version("alice", 999)]);
        until_batches(&mut h, &mut compacting, 1, 2);
        let mut starting: Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(connecting(&h, config(false, OURS)));
        let m = h.fake.seen.len();
        let read_new = |fake: &FakeIggy| {
            let seen = &fake.seen[m..];
            seen.iter()
                .position(|c| *c == GET_STREAM_CODE)
                .is_some_and(|at| {
                    seen[at..]
                        .iter()
                        .filter(|c| **c == POLL_MESSAGES_CODE)
                        .count()
                        >= polls
                })
        };
        let started = drive(&mut h, &mut starting, read_new);
        stored(&h.run(compacting));
        assert_eq!(generations(&h), [1]);
        let b = match started {
            Some(b) => b,
            None => h.run(starting),
        }
        .unwrap_or_else(|e| panic!("connect: {e}"));
        assert_eq!(
            b.scram_credentials(),
            vec![version("alice", 999), version("bob", 1)],
            "before any follow, the compaction completing after {polls} polls"
        );
    }
}

/// Generation 1 is complete and generation 0 was left (its compactor's reply to the
/// marker was lost); G1 still reads 0, G2 reads 1. G1 stores alice=v1: it lands in 0, is
/// written into 1; then G2 stores alice=v2 into 1; then G1 reads 1. G1 must hold v2, as
/// the topic orders them, not apply its v1 again as the latest.
#[test]
fn a_store_does_not_apply_its_changes_again_after_reading_them_in_a_newer_generation() {
    let (mut h, a) = filled();
    let g1 = gateway(&mut h, false, OURS);
    let old = copy_of(&h.fake, 0);
    store(&mut h, &a, vec![version("alice", 999)]);
    assert_eq!(generations(&h), [1]);
    let g2 = gateway(&mut h, false, OURS);
    h.fake.topics.insert(scram::topic_name(0), old);
    let mut storing_v1 = storing(&g1, vec![version("alice", 1)]);
    let before = batches(&h.fake, 1).unwrap_or(0);
    assert!(drive(&mut h, &mut storing_v1, |fake| {
        batches(fake, 1).is_some_and(|n| n > before)
    })
    .is_none());
    store(&mut h, &g2, vec![version("alice", 2)]);
    stored(&h.run(storing_v1));
    let expected = vec![version("alice", 2), version("bob", 1)];
    assert_eq!(g1.scram_credentials(), expected);
    h.clock.advance(NEXT_LISTING);
    for g in [&g1, &g2] {
        follow(&mut h, g);
        assert_eq!(g.scram_credentials(), expected);
    }
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), expected);
}

/// Generation 1 is complete and generation 0 was left; a compaction of 1 into 2 died
/// after its snapshot. A gateway still reading 0 stores a change: it must be written into
/// generation 1 too, not only into the newest (2), which never completes.
#[test]
fn a_store_is_written_into_every_newer_generation() {
    let (mut h, a) = filled();
    let g0 = gateway(&mut h, false, OURS);
    let old = copy_of(&h.fake, 0);
    store(&mut h, &a, vec![version("alice", 999)]);
    // B reads 1, fills it, and its compaction into 2 dies after its snapshot.
    let b = gateway(&mut h, true, OURS);
    let mut dying = storing(&b, fill());
    until_batches(&mut h, &mut dying, 2, 2);
    drop(dying);
    h.fake.topics.insert(scram::topic_name(0), old);
    assert_eq!(generations(&h), [0, 1, 2]);
    store(&mut h, &g0, vec![version("carol", 1)]);
    let (_h, restarted) = h.restart();
    assert!(
        restarted.scram_credentials().contains(&version("carol", 1)),
        "{:?}",
        restarted.scram_credentials()
    );
}

/// Records trickling into the generation a gateway reads, one more for each poll, do not
/// keep it reading: a read stops where the generation ended when it began.
#[test]
fn a_read_stops_where_the_generation_ended_when_it_began() {
    let mut h = Pool::new(FakeIggy::new());
    let a = gateway(&mut h, false, OURS);
    store(&mut h, &a, vec![version("alice", 1)]);
    let b = gateway(&mut h, false, OURS);
    store(&mut h, &a, vec![version("alice", 2)]);
    let mut following = match b.execute(Command::FollowScramCredentials { since: 0 }) {
        Execution::Pending(f) => f,
        Execution::Done(c) => Box::pin(std::future::ready(c)),
    };
    let mut cx = Context::from_waker(Waker::noop());
    let topic = scram::topic_name(0);
    for _ in 0..10_000 {
        if let Poll::Ready(c) = following.as_mut().poll(&mut cx) {
            assert!(
                matches!(c, Completion::FollowScramCredentials(Ok(_))),
                "{c:?}"
            );
            assert!(b.scram_credentials().contains(&version("alice", 2)));
            return;
        }
        h.serve();
        // Someone with send rights re-sends alice's first record, again and again.
        h.fake
            .append_copy(&topic, 0, 0)
            .unwrap_or_else(|e| panic!("append: {e}"));
    }
    panic!("the follow never finished");
}

/// A gateway whose Iggy secret differs cannot read the others' records: it neither
/// deletes their generation (to it, one without a marker) nor compacts one holding them.
#[test]
fn a_gateway_under_another_key_deletes_and_compacts_nothing_of_the_others() {
    // The others' complete generation 1.
    let (mut h, a) = filled();
    store(&mut h, &a, vec![version("alice", 999)]);
    assert_eq!(generations(&h), [1]);
    let other = gateway(&mut h, true, "another-secret");
    store(&mut h, &other, vec![version("mallory", 1)]);
    let (mut h, other) = h.restart_with(config(true, "another-secret"));
    h.clock.advance(LATER);
    follow(&mut h, &other);
    assert!(generations(&h).contains(&1), "{:?}", generations(&h));
    let (mut h, restarted) = h.restart();
    follow(&mut h, &restarted);
    assert_eq!(
        restarted.scram_credentials(),
        vec![version("alice", 999), version("bob", 1)]
    );

    // Records of both keys in generation 0: the other gateway's compaction would drop the
    // ones it cannot read.
    let mut h = Pool::new(FakeIggy::new());
    let a = gateway(&mut h, false, OURS);
    store(&mut h, &a, vec![version("alice", 1)]);
    let other = gateway(&mut h, true, "another-secret");
    store(&mut h, &other, fill());
    store(&mut h, &other, vec![version("mallory", 2)]);
    assert_eq!(generations(&h), [0], "not compacted");
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), vec![version("alice", 1)]);
}

/// A stream the previous build compacted (generation 1 of version-1 records closed by its
/// marker, generation 0 gone, then a store after the marker) is read whole after the
/// upgrade, the deletions it keeps included; changes stored on top of it are kept, with
/// compaction off and on.
#[test]
fn a_stream_the_previous_build_compacted_is_read_whole_after_the_upgrade() {
    for compaction in [false, true] {
        let mut h = Pool::new(FakeIggy::new());
        let old = gateway(&mut h, false, OURS);
        let (scram, catalog) = (&old.inner.scram, &old.inner.catalog);
        let compacted = [version("alice", 3), version("bob", 1), delete("root")];
        h.run(scram.write_as_main(catalog, 1, &compacted, true));
        h.run(scram.write_as_main(catalog, 1, &[version("alice", 4)], false));
        drop(old);
        assert_eq!(generations(&h), [1]);
        let (mut h, b) = h.restart_with(config(compaction, OURS));
        assert_eq!(
            b.scram_credentials(),
            vec![version("alice", 4), version("bob", 1), delete("root")],
            "compaction: {compaction}"
        );
        let c = gateway(&mut h, false, OURS);
        store(&mut h, &b, vec![version("carol", 1)]);
        follow(&mut h, &c);
        let expected = vec![
            version("alice", 4),
            version("bob", 1),
            version("carol", 1),
            delete("root"),
        ];
        assert_eq!(c.scram_credentials(), expected, "compaction: {compaction}");
        assert_eq!(generations(&h), [1], "no generation 0 made again");
        let (mut h, b) = h.restart_with(config(compaction, OURS));
        assert_eq!(b.scram_credentials(), expected, "compaction: {compaction}");
        if compaction {
            // Compacted into a generation of this build's records.
            store(&mut h, &b, fill());
            assert_eq!(generations(&h), [2]);
            let (_h, restarted) = h.restart();
            assert_eq!(
                credentials(&restarted),
                vec![
                    version("alice", 254),
                    version("bob", 1),
                    version("carol", 1)
                ]
            );
        }
    }
}

/// The previous build's marker, replayed into a generation a compactor of this build
/// made (its header written, its compaction dead), completes nothing.
#[test]
fn a_marker_of_the_previous_build_completes_no_generation_of_this_one() {
    let (mut h, a) = filled();
    let mut dying = storing(&a, vec![version("alice", 999)]);
    until_batches(&mut h, &mut dying, 1, 2);
    drop(dying);
    let b = gateway(&mut h, false, OURS);
    h.run(b.inner.scram.write_as_main(&b.inner.catalog, 1, &[], true));
    h.clock.advance(NEXT_LISTING);
    follow(&mut h, &b);
    let expected = vec![version("alice", 999), version("bob", 1)];
    assert_eq!(credentials(&b), expected);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
    assert_eq!(generations(&_h), [0, 1]);
}

/// What a gateway stores into generation 0 (compaction off) is sealed as the previous
/// build seals it: during a rolling upgrade, or after a rollback, that build reads it.
#[test]
fn what_is_stored_into_the_first_generation_the_previous_build_reads() {
    let mut h = Pool::new(FakeIggy::new());
    let a = gateway(&mut h, false, OURS);
    store(&mut h, &a, vec![version("alice", 1), delete("bob")]);
    let raw = h.run(a.inner.scram.raw(&a.inner.catalog, &a.inner.reads, 0));
    assert_eq!(raw.len(), 2);
    for record in &raw {
        assert!(a.inner.scram.opens_as_main(record));
    }
}

/// A generation left unfinished by a compaction that died is warned of though stores keep
/// landing in it.
#[test]
fn a_generation_left_unfinished_is_warned_of_while_stores_land_in_it() {
    let (mut h, a) = filled();
    let mut dying = storing(&a, vec![version("alice", 999)]);
    until_batches(&mut h, &mut dying, 1, 2);
    drop(dying);
    let b = gateway(&mut h, false, OURS);
    for i in 0..40 {
        h.clock.advance(Duration::from_secs(10));
        store(&mut h, &b, vec![version("carol", i)]);
        follow(&mut h, &b);
    }
    assert_eq!(generations(&h), [0, 1]);
    assert_eq!(b.inner.scram.warned_unfinished(), [1]);
}

/// Compactor A's marker completed generation 1, but generation 0 stayed (A died before
/// deleting it, or lost its reply to the marker). Gateway G saw 1 unfinished during the
/// compaction and stores every 10 s; gateway H moves to 1 at its follow's listing and
/// deletes bob there, where only the gateways reading 1 see it. G reads 1 again once 30 s
/// have passed since it saw it unfinished, however often it stores: bob's deletion
/// reaches it, and it warns of no generation.
#[test]
fn a_gateway_storing_often_moves_to_a_newer_generation_that_completed() {
    let (mut h, a) = filled();
    let g = gateway(&mut h, false, OURS);
    let other = gateway(&mut h, false, OURS);
    let mut compacting = storing(&a, vec![version("alice", 999)]);
    until_batches(&mut h, &mut compacting, 1, 2);
    store(&mut h, &g, vec![version("carol", 0)]);
    let old = copy_of(&h.fake, 0);
    stored(&h.run(compacting));
    h.fake.topics.insert(scram::topic_name(0), old);
    assert_eq!(generations(&h), [0, 1]);
    let mut deleted = None;
    for i in 1..=40 {
        h.clock.advance(Duration::from_secs(10));
        store(&mut h, &g, vec![version("carol", i)]);
        follow(&mut h, &g);
        if i == 4 {
            // H last listed the generations 40 s ago: its follow takes 1.
            follow(&mut h, &other);
            store(&mut h, &other, vec![delete("bob")]);
            assert!(!other.scram_credentials().contains(&version("bob", 1)));
            deleted = Some(i);
        }
        if deleted.is_some_and(|at| i >= at + 3) {
            assert!(
                !g.scram_credentials().contains(&version("bob", 1)),
                "bob still there after {} s",
                10 * i
            );
        }
    }
    assert_eq!(generations(&h), [0, 1]);
    assert!(g.inner.scram.warned_unfinished().is_empty());
}

/// A compactor held up for 5 minutes in its copy rounds, while a gateway stores every
/// 10 s, then completes its generation and deletes the old one. The gateway's next store
/// finds its generation gone and lists the generations: it warns of none, at no point of
/// that store, as the one it saw unfinished 5 minutes ago has completed.
#[test]
fn a_generation_that_completes_late_is_not_warned_of() {
    let (mut h, a) = filled();
    let g = gateway(&mut h, false, OURS);
    let mut late = storing(&a, vec![version("alice", 999)]);
    until_copying(&mut h, &mut late, 1);
    for i in 1..=30 {
        h.clock.advance(Duration::from_secs(10));
        store(&mut h, &g, vec![version("carol", i)]);
        follow(&mut h, &g);
    }
    stored(&h.run(late));
    assert_eq!(generations(&h), [1]);
    h.clock.advance(Duration::from_secs(10));
    let mut last = storing(&g, vec![version("carol", 31)]);
    let warned = |_: &FakeIggy| !g.inner.scram.warned_unfinished().is_empty();
    let done = drive(&mut h, &mut last, warned);
    stored(&done.unwrap_or_else(|| panic!("warned of a generation that completed")));
    assert!(g.scram_credentials().contains(&version("carol", 31)));
}

/// What a gateway stores into a generation the previous build compacted into (it has no
/// header) is sealed as that build seals it, which reads it during a rolling upgrade or
/// after a rollback; what it writes into a newer generation, one of this build's
/// compactions, is bound to that generation.
#[test]
fn what_is_stored_into_a_generation_the_previous_build_compacted_it_reads() {
    let mut h = Pool::new(FakeIggy::new());
    let old = gateway(&mut h, false, OURS);
    h.run(old.inner.scram.write_as_main(
        &old.inner.catalog,
        1,
        &[version("alice", 3), version("bob", 1)],
        true,
    ));
    drop(old);
    let (mut h, b) = h.restart_with(config(false, OURS));
    store(&mut h, &b, vec![version("alice", 4), delete("bob")]);
    // A compactor of this build makes generation 2 and dies after its snapshot.
    let c = gateway(&mut h, true, OURS);
    let mut dying = storing(&c, fill());
    until_batches(&mut h, &mut dying, 2, 2);
    drop(dying);
    store(&mut h, &b, vec![version("carol", 1)]);
    let (scram, catalog, reads) = (&b.inner.scram, &b.inner.catalog, &b.inner.reads);
    let in_1 = h.run(scram.raw(catalog, reads, 1));
    assert_eq!(in_1.len(), 3 + 2 + fill().len() + 1);
    for (i, record) in in_1.iter().enumerate() {
        assert!(scram.opens_as_main(record), "record {i}");
    }
    let in_2 = h.run(scram.raw(catalog, reads, 2));
    let carol = in_2
        .last()
        .unwrap_or_else(|| panic!("generation 2 is empty"));
    assert!(!scram.opens_as_main(carol));
}

/// The previous build compacts generation 1 into 2 while a gateway of this build stores a
/// change: it lands in 1, and is written into 2 (bound to it) before that build's marker.
/// The marker completes 2 all the same: once that build deletes 1, 2 is read whole.
#[test]
fn a_compaction_of_the_previous_build_completes_with_a_store_of_this_one_in_it() {
    let mut h = Pool::new(FakeIggy::new());
    let old = gateway(&mut h, false, OURS);
    let snapshot = [version("alice", 3), version("bob", 1)];
    h.run(
        old.inner
            .scram
            .write_as_main(&old.inner.catalog, 1, &snapshot, true),
    );
    let b = gateway(&mut h, false, OURS);
    h.run(
        old.inner
            .scram
            .write_as_main(&old.inner.catalog, 2, &snapshot, false),
    );
    store(&mut h, &b, vec![version("carol", 1)]);
    // The previous build copies it from 1, writes its marker, and deletes 1.
    h.run(
        old.inner
            .scram
            .write_as_main(&old.inner.catalog, 2, &[version("carol", 1)], true),
    );
    h.fake.topics.remove(&scram::topic_name(1));
    drop(old);
    let expected = vec![version("alice", 3), version("bob", 1), version("carol", 1)];
    follow(&mut h, &b);
    assert_eq!(b.scram_credentials(), expected);
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), expected);
}

/// A stream the previous build compacted into generation 1; a compactor A of this build
/// (its store of bob's deletion, pending) has made generation 2 and is held up before its
/// header, and an Iggy user that may send to the stream appends `forged` and the previous
/// build's marker into 2.
fn a_completion_forged_before_the_header(forged: &[ScramChange]) -> (Pool, IggyBackend, Pending) {
    let mut h = Pool::new(FakeIggy::new());
    let old = gateway(&mut h, false, OURS);
    h.run(
        old.inner
            .scram
            .write_as_main(&old.inner.catalog, 1, &fill(), true),
    );
    drop(old);
    let (mut h, a) = h.restart_with(config(true, OURS));
    let mut compacting = storing(&a, vec![delete("bob")]);
    let made = drive(&mut h, &mut compacting, |fake| batches(fake, 2) == Some(0));
    assert!(made.is_none(), "the compaction made generation 2");
    h.run(
        a.inner
            .scram
            .write_as_main(&a.inner.catalog, 2, forged, true),
    );
    (h, a, compacting)
}

/// A stream the previous build compacted into generation 1; a compactor of this build
/// makes generation 2 and is held up before its header, and an Iggy user that may send to
/// the stream appends into 2 a version-1 record and the previous build's marker. A gateway
/// starting then reads 2 (as the previous build would), but deletes no older generation
/// for it: once the compactor goes on, its header undoes that completion, and 1 is still
/// there to be read and compacted.
#[test]
fn a_gateway_reading_a_generation_without_a_header_deletes_no_older_one() {
    let (mut h, a, compacting) = a_completion_forged_before_the_header(&[version("bob", 1)]);
    let b = gateway(&mut h, false, OURS);
    assert_eq!(generations(&h), [1, 2], "generation 1 is kept");
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [2]);
    let expected = vec![version("alice", 254)];
    assert_eq!(credentials(&a), expected);
    follow(&mut h, &b);
    assert_eq!(credentials(&b), expected);
    drop(b);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// As above, and gateway B, which read the forged generation, stores a change into it
/// before the header lands, and the Iggy user appends another version-1 record after the
/// header; the compactor A and B, once A has completed.
fn a_forged_completion_under_way() -> (Pool, IggyBackend, IggyBackend) {
    let (mut h, a, compacting) = a_completion_forged_before_the_header(&[version("bob", 1)]);
    let b = gateway(&mut h, false, OURS);
    assert!(credentials(&b).contains(&version("bob", 1)));
    store(&mut h, &b, vec![version("carol", 7)]);
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [2]);
    h.run(
        a.inner
            .scram
            .write_as_main(&a.inner.catalog, 2, &[version("dave", 1)], false),
    );
    assert_eq!(credentials(&a), [version("alice", 254)]);
    (h, a, b)
}

/// Once B's follow reads the header, B reads the generations anew: it ends with what the
/// compactor and a restarted gateway hold, not with the replayed record, its own change
/// (which no other gateway counts) or the record after the header.
#[test]
fn a_gateway_that_read_a_generation_without_a_header_reads_anew_once_its_header_lands() {
    let (mut h, a, b) = a_forged_completion_under_way();
    follow(&mut h, &b);
    assert_eq!(
        credentials(&b),
        [version("alice", 254)],
        "b reads what every other gateway reads"
    );
    store(&mut h, &b, vec![version("erin", 2)]);
    let expected = vec![version("alice", 254), version("erin", 2)];
    for g in [&a, &b] {
        follow(&mut h, g);
        assert_eq!(credentials(g), expected);
    }
    drop(b);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// What `f` logs at WARN and above on this thread, as the gateway's log lines read.
fn warnings(f: impl FnOnce()) -> String {
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            crate::sync::lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || Sink(Arc::clone(&sink)))
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let logged = String::from_utf8_lossy(&crate::sync::lock(&lines)).into_owned();
    logged
}

/// B, which started with a users file giving carol and erin, changed carol's credential in
/// the forged generation. Once the header lands, B reads the generations anew and holds
/// carol's credential deleted, where a gateway that starts with the users file holds the
/// file's: B says so in a warning that names carol, and not erin, whose credential B
/// changed nowhere. A follow that reads nothing anew warns of no one.
#[test]
fn a_gateway_reading_anew_warns_of_the_users_file_users_it_then_holds_apart() {
    let (mut h, _a, b) = a_forged_completion_under_way();
    b.pin_scram_deletions(["carol", "erin"].map(|u| (u.to_owned(), ScramMechanism::Sha256)));
    let logged = warnings(|| follow(&mut h, &b));
    let warned: Vec<&str> = logged.lines().filter(|l| l.contains("forged")).collect();
    assert_eq!(warned.len(), 1, "{logged}");
    assert!(warned[0].contains("users=carol"), "{logged}");
    assert!(!warned[0].contains("erin"), "{logged}");
    assert_eq!(credentials(&b), [version("alice", 254)]);
    h.clock.advance(NEXT_LISTING);
    let logged = warnings(|| follow(&mut h, &b));
    assert!(!logged.contains("forged"), "{logged}");
}

/// When B's store is the read that finds the header, the change it wrote as into a
/// generation with no header counts for no gateway: it is stored again, and holds.
#[test]
fn a_store_that_finds_a_header_in_a_generation_taken_as_having_none_is_stored_again() {
    let (mut h, a, b) = a_forged_completion_under_way();
    store(&mut h, &b, vec![version("erin", 2)]);
    let expected = vec![version("alice", 254), version("erin", 2)];
    assert_eq!(credentials(&b), expected);
    for g in [&a, &b] {
        follow(&mut h, g);
        assert_eq!(credentials(g), expected);
    }
    drop(b);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// As above, but the compactor dies right after its header: the forged generation stays
/// unfinished. B's store finds the header, reads the generations anew (back to 1) and
/// stores its change again there, where every gateway reads it.
#[test]
fn a_store_that_finds_a_header_of_a_compaction_that_died_is_stored_where_every_gateway_reads() {
    let (mut h, a, mut dying) = a_completion_forged_before_the_header(&[version("bob", 1)]);
    let b = gateway(&mut h, false, OURS);
    until_batches(&mut h, &mut dying, 2, 2);
    drop(dying);
    drop(a);
    store(&mut h, &b, vec![version("erin", 2)]);
    let expected = vec![version("alice", 254), version("erin", 2)];
    assert_eq!(credentials(&b), expected);
    assert_eq!(generations(&h), [1, 2]);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// B reads the forged generation 2, and an unfinished generation 3 is listed. B's due
/// follow reads 2 to its end and lists the generations; then the compactor A writes its
/// header, copies and marker into 2, and dies before deleting 1, and A stores a change
/// into 2. B's listing, [3, 2, 1], makes it read on in 2, where it finds the header: it
/// reads 2 whole and takes it (complete, with the change), not 1, which is complete too
/// but no longer what every gateway reads.
#[test]
fn a_header_found_while_reading_on_in_a_listed_generation_has_it_read_whole() {
    let (mut h, a, compacting) = a_completion_forged_before_the_header(&[version("bob", 1)]);
    let b = gateway(&mut h, false, OURS);
    assert!(credentials(&b).contains(&version("bob", 1)));
    h.run(
        a.inner
            .scram
            .write_as_main(&a.inner.catalog, 3, &[version("carol", 1)], false),
    );
    h.clock.advance(NEXT_LISTING);
    let mut following: Pin<Box<dyn Future<Output = Completion> + Send>> =
        match b.execute(Command::FollowScramCredentials { since: 0 }) {
            Execution::Pending(f) => f,
            Execution::Done(c) => panic!("{c:?}"),
        };
    let m = h.fake.seen.len();
    let listed = drive(&mut h, &mut following, |fake| {
        fake.seen[m..].contains(&GET_STREAM_CODE)
    });
    assert!(listed.is_none(), "the follow listed the generations");
    let first = copy_of(&h.fake, 1);
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [2, 3]);
    h.fake.topics.insert(scram::topic_name(1), first);
    store(&mut h, &a, vec![version("erin", 2)]);
    let c = h.run(following);
    assert!(
        matches!(c, Completion::FollowScramCredentials(Ok(_))),
        "{c:?}"
    );
    let expected = vec![version("alice", 254), version("erin", 2)];
    assert_eq!(credentials(&a), expected);
    assert_eq!(credentials(&b), expected, "b reads 2, as a does");
    drop(b);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// The forged generation 2 is padded past the compaction threshold and read by a
/// compacting gateway B; generation 1 goes (an operator deletes it) and the compactor A
/// writes its header and dies. B's store finds the header, and no complete generation is
/// left to read anew: B compacts nothing from what it holds (known to differ from what
/// every other gateway holds), so no new generation is made that could never complete.
#[test]
fn a_gateway_that_must_read_anew_and_finds_nothing_complete_does_not_compact() {
    let (mut h, a, mut dying) = a_completion_forged_before_the_header(&fill());
    let b = gateway(&mut h, true, OURS);
    assert!(credentials(&b).contains(&version("bob", 1)));
    h.fake.topics.remove(&scram::topic_name(1));
    until_batches(&mut h, &mut dying, 2, 2);
    drop(dying);
    drop(a);
    store(&mut h, &b, vec![version("erin", 2)]);
    assert_eq!(generations(&h), [2], "b compacted nothing");
}

/// An Iggy user that may send to the stream appends, into the generation every gateway
/// reads, a change it polled from the one before, and a version-1 record: neither opens
/// there, and no gateway applies them.
#[test]
fn a_change_copied_into_the_next_generation_does_not_apply() {
    let (mut h, a) = filled();
    store(&mut h, &a, vec![version("alice", 999)]);
    assert_eq!(generations(&h), [1]);
    store(&mut h, &a, vec![version("alice", 1000)]);
    let old = h.fake.topics[&scram::topic_name(1)].partitions[0]
        .batches
        .last()
        .cloned()
        .unwrap_or_default();
    let b = gateway(&mut h, false, OURS);
    store(&mut h, &a, fill());
    assert_eq!(generations(&h), [2]);
    h.fake
        .append_batch(&scram::topic_name(2), 0, old)
        .unwrap_or_else(|e| panic!("append: {e}"));
    // A record as older builds seal them (as generation 0 held before the upgrade) does
    // not open after a header either.
    h.run(
        b.inner
            .scram
            .write_as_main(&b.inner.catalog, 2, &[version("alice", 5000)], false),
    );
    let expected = vec![version("alice", 254), version("bob", 1)];
    for g in [&a, &b] {
        follow(&mut h, g);
        assert_eq!(credentials(g), expected);
    }
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// An Iggy user that may send to the stream appends records of generation 0 (version 1)
/// into the next generation as it is made, before its compactor's header: once the
/// generation completes, they are not part of it (a credential deleted meanwhile stays
/// deleted).
#[test]
fn records_of_an_older_generation_before_a_header_do_not_apply() {
    let (mut h, a) = filled();
    let old = h.fake.topics[scram::TOPIC].partitions[0].batches[0].clone();
    let mut compacting = storing(&a, vec![delete("bob")]);
    let made = drive(&mut h, &mut compacting, |fake| batches(fake, 1) == Some(0));
    assert!(made.is_none(), "the compaction made generation 1");
    h.fake
        .append_batch(&scram::topic_name(1), 0, old)
        .unwrap_or_else(|e| panic!("append: {e}"));
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [1]);
    let expected = vec![version("alice", 254)];
    assert_eq!(credentials(&a), expected);
    let (_h, restarted) = h.restart();
    assert_eq!(credentials(&restarted), expected);
}

/// A generation longer than one poll is replayed and followed whole.
#[test]
fn a_generation_longer_than_a_poll_is_read_whole() {
    let mut h = Pool::new(FakeIggy::new());
    let a = gateway(&mut h, false, OURS);
    let b = gateway(&mut h, false, OURS);
    let many: Vec<ScramChange> = (0..2500).map(|i| version(&format!("u{i:04}"), i)).collect();
    store(&mut h, &a, many.clone());
    follow(&mut h, &b);
    assert_eq!(b.scram_credentials(), many);
    let (_h, restarted) = h.restart();
    assert_eq!(restarted.scram_credentials(), many);
}

trait Restart {
    fn restart_with(self, config: IggyConfig) -> (Pool, IggyBackend);
}

impl Restart for Pool {
    fn restart_with(self, config: IggyConfig) -> (Pool, IggyBackend) {
        let mut pool = Pool::new(self.fake);
        let backend = pool
            .connect_with(config)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        (pool, backend)
    }
}
