//! The SCRAM credentials topic's compaction with several gateways on one stream: one
//! starting while another compacts, two compacting at once, changes stored during a
//! compaction, a gateway under another key. Each gateway is its own backend on the one
//! fake server; their calls are interleaved a round of the server at a time.

use std::pin::pin;
use std::sync::Arc;

use iggy_kafka_core::backend::Execution;
use iggy_kafka_core::sasl::{ScramChange, ScramCredential, ScramMechanism};
use iggy_kafka_iggy_client::protocol::codes::{GET_STREAM_CODE, POLL_MESSAGES_CODE};
use iggy_kafka_iggy_client::Clock;

use crate::scram;

use super::*;

/// Past the staleness bound of an unfinished generation ([`scram::STALE_AFTER`]).
const PAST_STALE: Duration = Duration::from_secs(600);
/// Past the bound of a compaction ([`scram::COMPACTION_BOUND`]), short of staleness.
const PAST_BOUND: Duration = Duration::from_secs(90);
/// The Iggy secret of the gateways but one (the default's, as [`Pool::restart`] gives).
const OURS: &str = "";

type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// A credential without the cost of deriving one: version `n` of the user's.
fn version(user: &str, n: u64) -> ScramChange {
    ScramChange::Set {
        user: user.into(),
        credential: ScramCredential {
            mechanism: ScramMechanism::Sha256,
            salt: n.to_le_bytes().to_vec(),
            iterations: 4096,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
        },
    }
}

fn delete(user: &str) -> ScramChange {
    ScramChange::Delete {
        user: user.into(),
        mechanism: ScramMechanism::Sha256,
    }
}

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
    // The listing of the generations, then two polls of each (the records, then the end).
    let read_both = |fake: &FakeIggy| {
        let seen = &fake.seen[m..];
        seen.len() >= 5
            && seen[seen.len() - 5] == GET_STREAM_CODE
            && seen[seen.len() - 4..]
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
            // Nothing left behind that a stale sweep would not take.
            h.clock.advance(PAST_STALE);
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
/// gateway B, compacting too, stores and would compact as well, then dies; gateway C then
/// stores a deletion into generation 0. A's marker completes generation 1: the deletion
/// must be in it, whatever B did.
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
    // B stores, and its compaction runs until its own generation has a snapshot (if it
    // makes one), where B dies.
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
    h.clock.advance(PAST_STALE);
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

/// A compaction cut short leaves an unfinished generation: a gateway starting does not
/// delete it (it may be a compaction under way), and deletes it only once it has stayed
/// unfinished past the bound any compaction keeps to. A compactor past that bound writes
/// no marker.
#[test]
fn an_unfinished_generation_goes_only_once_stale() {
    let (mut h, a) = filled();
    let mut compacting = storing(&a, vec![version("alice", 999)]);
    assert!(drive(&mut h, &mut compacting, |fake| {
        batches(fake, 1).is_some_and(|n| n > 0)
    })
    .is_none());
    // B starts while A's compaction waits.
    let b = gateway(&mut h, true, OURS);
    assert_eq!(generations(&h), [0, 1], "the generation under way is left");
    follow(&mut h, &b);
    assert_eq!(generations(&h), [0, 1]);
    // A takes longer than a compaction may: it gives its generation up, unfinished.
    h.clock.advance(PAST_BOUND);
    stored(&h.run(compacting));
    assert_eq!(batches(&h.fake, 1), Some(1), "no marker past the bound");
    let expected = vec![version("alice", 999), version("bob", 1)];
    follow(&mut h, &b);
    assert_eq!(b.scram_credentials(), expected);
    assert_eq!(generations(&h), [0, 1], "not stale yet");
    h.clock.advance(PAST_STALE);
    follow(&mut h, &b);
    assert_eq!(generations(&h), [0]);
    // Compaction goes on afterwards.
    store(&mut h, &b, vec![version("alice", 1000)]);
    assert_eq!(generations(&h), [1]);
    let (_h, restarted) = h.restart();
    assert_eq!(
        restarted.scram_credentials(),
        vec![version("alice", 1000), version("bob", 1)]
    );
}

/// A compactor stalled past staleness: its generation was deleted as stale, made again by
/// another gateway's compaction, which completed and deleted the old one. The stalled
/// one, giving up, must not delete that generation: it is the only one left.
#[test]
fn a_stalled_compactor_does_not_delete_the_generation_another_completed() {
    let (mut h, a) = filled();
    let mut stalled = storing(&a, vec![version("alice", 999)]);
    // A's snapshot is written, and its read of generation 0 served.
    let mut mark = None;
    assert!(drive(&mut h, &mut stalled, |fake| {
        if mark.is_none() && batches(fake, 1).is_some_and(|n| n > 0) {
            mark = Some(fake.seen.len());
        }
        mark.is_some_and(|m| fake.seen[m..].contains(&POLL_MESSAGES_CODE))
    })
    .is_none());
    let b = gateway(&mut h, true, OURS);
    h.clock.advance(PAST_STALE);
    follow(&mut h, &b);
    assert_eq!(generations(&h), [0], "A's generation went as stale");
    store(&mut h, &b, vec![version("carol", 1)]);
    assert_eq!(generations(&h), [1], "B compacted");
    let _ = h.run(stalled);
    assert_eq!(generations(&h), [1]);
    let (_h, restarted) = h.restart();
    assert_eq!(
        credentials(&restarted),
        vec![
            version("alice", 999),
            version("bob", 1),
            version("carol", 1)
        ]
    );
}

/// Two gateways find one unfinished generation stale. B deletes it first, then compacts
/// into a generation of the same number (and, here, length); C, which saw the old one,
/// must not take the new one for it: B completes it and deletes the old generation
/// while C reads, and C deleting it would leave nothing.
#[test]
fn a_generation_made_again_is_not_the_stale_one() {
    let (mut h, a) = filled();
    let mut dying = storing(&a, vec![version("alice", 999)]);
    assert!(drive(&mut h, &mut dying, |fake| {
        batches(fake, 1).is_some_and(|n| n > 0)
    })
    .is_none());
    drop(dying);
    let b = gateway(&mut h, true, OURS);
    let c = gateway(&mut h, false, OURS);
    h.clock.advance(PAST_STALE);
    follow(&mut h, &b);
    assert_eq!(generations(&h), [0], "B deleted it as stale");
    // B compacts into a new generation 1: its snapshot, as long as the old one's, and its
    // read of generation 0.
    let mut compacting = storing(&b, vec![version("alice", 1000)]);
    let mut mark = None;
    assert!(drive(&mut h, &mut compacting, |fake| {
        if mark.is_none() && batches(fake, 1).is_some_and(|n| n > 0) {
            mark = Some(fake.seen.len());
        }
        mark.is_some_and(|m| fake.seen[m..].contains(&POLL_MESSAGES_CODE))
    })
    .is_none());
    // C looks at the generations, and reads generation 1 (and 0) again; B completes
    // meanwhile; then C goes on.
    let mut following: Pin<Box<dyn Future<Output = Completion> + Send>> =
        match c.execute(Command::FollowScramCredentials { since: 0 }) {
            Execution::Pending(f) => f,
            Execution::Done(c) => Box::pin(std::future::ready(c)),
        };
    let m = h.fake.seen.len();
    let read_again = |fake: &FakeIggy| {
        let seen = &fake.seen[m..];
        seen.iter()
            .position(|c| *c == GET_STREAM_CODE)
            .is_some_and(|at| {
                seen[at..]
                    .iter()
                    .filter(|c| **c == POLL_MESSAGES_CODE)
                    .count()
                    >= 6
            })
    };
    let followed = drive(&mut h, &mut following, read_again);
    stored(&h.run(compacting));
    assert_eq!(generations(&h), [1]);
    if followed.is_none() {
        let _ = h.run(following);
    }
    assert_eq!(generations(&h), [1]);
    let (_h, restarted) = h.restart();
    assert_eq!(
        credentials(&restarted),
        vec![version("alice", 1000), version("bob", 1)]
    );
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
    h.clock.advance(PAST_STALE);
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
