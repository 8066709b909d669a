//! The coordinator on a manual clock, without sockets: commit, abort, fencing, timeouts,
//! a restart at each step, and what read_committed consumers of a partition see.

use std::time::{Duration, Instant};

use super::*;
use crate::txn_index::TxnIndex;

const TP: fn(u32) -> TopicPartition = |p| ("t".to_owned(), p);

struct Harness {
    c: TxnCoordinator,
    now: Instant,
    next: u64,
    /// Every snapshot persisted, latest per id last.
    log: Vec<(String, Option<TxnSnapshot>)>,
    /// Markers handed out and not yet reported.
    markers: Vec<Markers>,
    /// Leave persists unacknowledged, in `persisting`, until [`Harness::persisted`].
    hold_persists: bool,
    persisting: Vec<(String, Option<TxnSnapshot>, u64)>,
}

impl Harness {
    fn new() -> Self {
        Self {
            c: TxnCoordinator::new(TxnConfig::default()),
            now: Instant::now(),
            next: 0,
            log: Vec::new(),
            markers: Vec::new(),
            hold_persists: false,
            persisting: Vec::new(),
        }
    }

    /// Takes the effects; persists are acknowledged at once unless `hold_persists`, as
    /// the embedded store does.
    fn drain(&mut self) {
        while let Some(e) = self.c.poll_effect() {
            match e {
                TxnEffect::WriteMarkers(m) => self.markers.push(m),
                TxnEffect::Persist {
                    transactional_id,
                    snapshot,
                    version,
                } => {
                    if self.hold_persists {
                        self.persisting.push((transactional_id, snapshot, version));
                    } else {
                        self.log.push((transactional_id.clone(), snapshot));
                        self.c
                            .handle_persisted(self.now, &transactional_id, version, true);
                    }
                }
            }
        }
    }

    /// Makes a call; its reply if it came at once.
    fn call(&mut self, call: TxnCall) -> Option<TxnReply> {
        self.next += 1;
        let me = ReplyTo(self.next);
        self.c.handle(self.now, me, call);
        self.drain();
        let mut mine = None;
        while let Some((to, r)) = self.c.poll_reply() {
            assert_eq!(to, me, "a reply for another call");
            mine = Some(r);
        }
        mine
    }

    fn init(&mut self, id: &str, fresh: i64) -> Result<(i64, i16), ErrorCode> {
        self.init_expecting(id, fresh, None)
    }

    fn init_expecting(
        &mut self,
        id: &str,
        fresh: i64,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        match self.call(TxnCall::InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 10_000,
            expected,
            fresh_id: fresh,
        }) {
            Some(TxnReply::InitProducerId(r)) => r,
            other => panic!("InitProducerId: {other:?}"),
        }
    }

    fn add(&mut self, id: &str, (pid, epoch): (i64, i16), parts: &[u32]) -> Vec<ErrorCode> {
        match self.call(TxnCall::AddPartitions {
            transactional_id: id.into(),
            producer_id: pid,
            epoch,
            partitions: parts.iter().map(|&p| TP(p)).collect(),
            verify_only: false,
        }) {
            Some(TxnReply::AddPartitions(codes)) => codes,
            other => panic!("AddPartitions: {other:?}"),
        }
    }

    /// EndTxn: `Ok(None)` while it waits for its markers.
    fn end(&mut self, id: &str, (pid, epoch): (i64, i16), commit: bool) -> Option<ErrorCode> {
        match self.call(TxnCall::EndTxn {
            transactional_id: id.into(),
            producer_id: pid,
            epoch,
            commit,
        }) {
            None => None,
            Some(TxnReply::EndTxn(c)) => Some(c),
            other => panic!("EndTxn: {other:?}"),
        }
    }

    /// Reports every marker handed out as written (or failed); the replies that releases.
    fn markers_done(&mut self, ok: bool) -> Vec<(ReplyTo, TxnReply)> {
        for m in std::mem::take(&mut self.markers) {
            self.c
                .handle_markers(self.now, &m.transactional_id, m.producer_id, m.epoch, ok);
        }
        self.drain();
        std::iter::from_fn(|| self.c.poll_reply()).collect()
    }

    /// Reports every persist held as written (`ok`: into the log) or failed; the replies
    /// that releases.
    fn persisted(&mut self, ok: bool) -> Vec<(ReplyTo, TxnReply)> {
        for (id, snapshot, version) in std::mem::take(&mut self.persisting) {
            if ok {
                self.log.push((id.clone(), snapshot));
            }
            self.c.handle_persisted(self.now, &id, version, ok);
        }
        self.drain();
        std::iter::from_fn(|| self.c.poll_reply()).collect()
    }

    fn state(&self, id: &str) -> TxnState {
        self.c.snapshot(id).expect("known id").state
    }

    /// A coordinator restarted from the persisted log.
    fn restart(&mut self) {
        let mut latest: BTreeMap<String, Option<TxnSnapshot>> = BTreeMap::new();
        for (id, s) in &self.log {
            latest.insert(id.clone(), s.clone());
        }
        let mut c = TxnCoordinator::new(TxnConfig::default());
        c.restore(self.now, latest.into_values().flatten());
        self.c = c;
        self.markers.clear();
        self.drain();
    }
}

#[test]
fn a_commit_answers_once_its_markers_are_written() {
    let mut h = Harness::new();
    let p = h.init("tx", 100).expect("the call succeeds");
    assert_eq!(p, (100, 0));
    assert_eq!(h.add("tx", p, &[0, 1]), [ErrorCode::NONE; 2]);
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    assert_eq!(h.c.verify_write("tx", 100, 0, &TP(0)), ErrorCode::NONE);
    assert_eq!(
        h.c.verify_write("tx", 100, 0, &TP(2)),
        ErrorCode::INVALID_TXN_STATE
    );
    assert_eq!(h.end("tx", p, true), None, "EndTxn waits for the markers");
    assert_eq!(h.state("tx"), TxnState::PrepareCommit);
    assert_eq!(h.markers.len(), 1);
    assert!(h.markers[0].commit);
    assert_eq!(h.markers[0].partitions, [TP(0), TP(1)]);
    // While the markers are written: the producer waits, writes are refused.
    assert_eq!(h.add("tx", p, &[0]), [ErrorCode::CONCURRENT_TRANSACTIONS]);
    assert_eq!(
        h.end("tx", p, true),
        Some(ErrorCode::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(h.end("tx", p, false), Some(ErrorCode::INVALID_TXN_STATE));
    assert_eq!(h.init("tx", 101), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
    assert_eq!(
        h.c.verify_write("tx", 100, 0, &TP(0)),
        ErrorCode::CONCURRENT_TRANSACTIONS
    );
    let replies = h.markers_done(true);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1, TxnReply::EndTxn(ErrorCode::NONE));
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
    // A retried EndTxn is answered as it was; the opposite one is refused.
    assert_eq!(h.end("tx", p, true), Some(ErrorCode::NONE));
    assert_eq!(h.end("tx", p, false), Some(ErrorCode::INVALID_TXN_STATE));
    // The next transaction: same epoch (transaction version 1).
    assert_eq!(h.add("tx", p, &[1]), [ErrorCode::NONE]);
    assert_eq!(
        h.c.verify_write("tx", 100, 0, &TP(0)),
        ErrorCode::INVALID_TXN_STATE
    );
    assert_eq!(h.end("tx", p, false), None);
    assert!(!h.markers[0].commit);
    h.markers_done(true);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    assert_eq!(h.c.stats().committed, 1);
    assert_eq!(h.c.stats().aborted, 1);
}

/// Two transactional ids holding the same producer id and epoch (one from before a restart
/// that reused the id, or one of another principal): a write is checked against the
/// transactional id its request names, and never joins the other's transaction.
#[test]
fn a_write_joins_only_the_transaction_of_its_transactional_id() {
    let mut h = Harness::new();
    let a = h.init("a", 5).expect("the call succeeds");
    let b = h.init("b", 5).expect("the call succeeds");
    assert_eq!(a, b, "the same producer id and epoch");
    assert_eq!(h.add("a", a, &[0]), [ErrorCode::NONE]);
    assert_eq!(h.c.verify_write("a", 5, 0, &TP(0)), ErrorCode::NONE);
    // "b" added nothing: its write is no part of "a"'s transaction.
    assert_eq!(
        h.c.verify_write("b", 5, 0, &TP(0)),
        ErrorCode::INVALID_TXN_STATE
    );
    // A transactional id that holds another producer id, or none.
    assert_eq!(h.init("c", 6), Ok((6, 0)));
    assert_eq!(
        h.c.verify_write("c", 5, 0, &TP(0)),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        h.c.verify_write("unknown", 5, 0, &TP(0)),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
}

#[test]
fn kafka_refusals() {
    let mut h = Harness::new();
    assert_eq!(h.init("", 1), Err(ErrorCode::INVALID_REQUEST));
    let r = h.call(TxnCall::InitProducerId {
        transactional_id: "tx".into(),
        timeout_ms: 16 * 60 * 1000,
        expected: None,
        fresh_id: 1,
    });
    assert_eq!(
        r,
        Some(TxnReply::InitProducerId(Err(
            ErrorCode::INVALID_TRANSACTION_TIMEOUT
        )))
    );
    assert_eq!(
        h.add("unknown", (1, 0), &[0]),
        [ErrorCode::INVALID_PRODUCER_ID_MAPPING]
    );
    let p = h.init("tx", 7).expect("the call succeeds");
    assert_eq!(
        h.add("tx", (8, 0), &[0]),
        [ErrorCode::INVALID_PRODUCER_ID_MAPPING]
    );
    assert_eq!(h.add("tx", (7, 1), &[0]), [ErrorCode::PRODUCER_FENCED]);
    assert_eq!(h.end("tx", p, true), Some(ErrorCode::INVALID_TXN_STATE));
    assert_eq!(
        h.c.verify_write("tx", 9, 0, &TP(0)),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
    // v3+ InitProducerId naming another producer id, or an old epoch, is fenced.
    assert_eq!(
        h.init_expecting("tx", 8, Some((99, 0))),
        Err(ErrorCode::PRODUCER_FENCED)
    );
    assert_eq!(h.init_expecting("tx", 8, Some((7, 0))), Ok((7, 1)));
    // A retry of that call, whose answer was lost, gets the same answer (KIP-360).
    assert_eq!(h.init_expecting("tx", 8, Some((7, 0))), Ok((7, 1)));
    assert_eq!(h.init_expecting("tx", 8, Some((7, 1))), Ok((7, 2)));
    assert_eq!(
        h.init_expecting("tx", 8, Some((7, 0))),
        Err(ErrorCode::PRODUCER_FENCED)
    );
}

#[test]
fn offsets_are_pending_until_the_commit() {
    let mut h = Harness::new();
    let p = h.init("tx", 1).expect("the call succeeds");
    let offsets = vec![GroupOffset {
        topic: "in".into(),
        partition: 0,
        committed: CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: None,
        },
    }];
    let commit = |h: &mut Harness, offsets: &Vec<GroupOffset>| {
        h.call(TxnCall::CommitOffsets {
            transactional_id: "tx".into(),
            producer_id: p.0,
            epoch: p.1,
            group: "g".into(),
            offsets: offsets.clone(),
        })
    };
    // Without AddOffsetsToTxn first, the offsets would never commit.
    assert_eq!(
        commit(&mut h, &offsets),
        Some(TxnReply::Code(ErrorCode::INVALID_TXN_STATE))
    );
    let r = h.call(TxnCall::AddOffsets {
        transactional_id: "tx".into(),
        producer_id: p.0,
        epoch: p.1,
        group: "g".into(),
    });
    assert_eq!(r, Some(TxnReply::Code(ErrorCode::NONE)));
    assert_eq!(
        commit(&mut h, &offsets),
        Some(TxnReply::Code(ErrorCode::NONE))
    );
    let pending = h.call(TxnCall::PendingOffsets {
        group: "g".into(),
        only: None,
    });
    assert_eq!(pending, Some(TxnReply::Pending(vec![("in".into(), 0)])));
    let other = h.call(TxnCall::PendingOffsets {
        group: "g".into(),
        only: Some(vec![("in".into(), 1)]),
    });
    assert_eq!(other, Some(TxnReply::Pending(Vec::new())));
    assert_eq!(h.end("tx", p, true), None);
    assert_eq!(
        h.markers[0].offsets,
        vec![("g".to_owned(), offsets.clone())]
    );
    h.markers_done(true);
    let pending = h.call(TxnCall::PendingOffsets {
        group: "g".into(),
        only: None,
    });
    assert_eq!(pending, Some(TxnReply::Pending(Vec::new())));
    // An abort commits none.
    h.call(TxnCall::AddOffsets {
        transactional_id: "tx".into(),
        producer_id: p.0,
        epoch: p.1,
        group: "g".into(),
    });
    commit(&mut h, &offsets);
    h.end("tx", p, false);
    assert!(h.markers[0].offsets.is_empty());
}

#[test]
fn a_new_instance_fences_the_old_and_aborts_what_it_left_open() {
    let mut h = Harness::new();
    let old = h.init("tx", 1).expect("the call succeeds");
    h.add("tx", old, &[0]);
    // The new instance: the open transaction is aborted at a bumped epoch first.
    assert_eq!(h.init("tx", 2), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
    assert_eq!(h.markers.len(), 1);
    assert!(!h.markers[0].commit);
    assert_eq!(h.markers[0].epoch, 1);
    assert_eq!(
        h.c.verify_write("tx", 1, 0, &TP(0)),
        ErrorCode::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(h.init("tx", 2), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
    h.markers_done(true);
    let new = h.init("tx", 3).expect("the call succeeds");
    assert_eq!(new, (1, 2));
    // The old instance can do nothing any more.
    assert_eq!(h.add("tx", old, &[0]), [ErrorCode::PRODUCER_FENCED]);
    assert_eq!(h.end("tx", old, true), Some(ErrorCode::PRODUCER_FENCED));
    assert_eq!(
        h.c.verify_write("tx", 1, 0, &TP(0)),
        ErrorCode::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(h.c.stats().fenced, 1);
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    let mut h = Harness::new();
    h.init("tx", 1).expect("the call succeeds");
    // Straight to the last epoch, as a restored coordinator could hold it.
    let mut s = h.c.snapshot("tx").expect("the call succeeds");
    s.epoch = LAST_EPOCH;
    let mut c = TxnCoordinator::default();
    c.restore(h.now, [s]);
    h.c = c;
    assert_eq!(h.init("tx", 50), Ok((50, 0)));
    assert_eq!(
        h.c.snapshot("tx")
            .expect("the call succeeds")
            .previous_producer_id,
        1
    );
    assert_eq!(
        h.c.verify_write("tx", 1, LAST_EPOCH, &TP(0)),
        ErrorCode::INVALID_PRODUCER_ID_MAPPING
    );
}

/// KIP-360: a producer that asked for the rotation with its exhausted epoch and lost the
/// answer retries with the old id and epoch, and gets the same answer, also after a restart.
#[test]
fn a_retried_rotation_gets_the_same_answer() {
    let mut h = Harness::new();
    h.init("tx", 1).expect("the call succeeds");
    let mut s = h.c.snapshot("tx").expect("the call succeeds");
    s.epoch = LAST_EPOCH;
    let mut c = TxnCoordinator::default();
    c.restore(h.now, [s]);
    h.c = c;
    assert_eq!(
        h.init_expecting("tx", 50, Some((1, LAST_EPOCH))),
        Ok((50, 0))
    );
    assert_eq!(
        h.init_expecting("tx", 51, Some((1, LAST_EPOCH))),
        Ok((50, 0))
    );
    h.restart();
    assert_eq!(
        h.init_expecting("tx", 52, Some((1, LAST_EPOCH))),
        Ok((50, 0))
    );
    // Once the new id moved on, the old one is fenced.
    assert_eq!(h.init_expecting("tx", 53, Some((50, 0))), Ok((50, 1)));
    assert_eq!(
        h.init_expecting("tx", 54, Some((1, LAST_EPOCH))),
        Err(ErrorCode::PRODUCER_FENCED)
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let p = h.init("tx", 1).expect("the call succeeds");
    let start = h.now;
    h.add("tx", p, &[0]);
    assert_eq!(h.c.poll_timeout(), Some(start + Duration::from_secs(10)));
    h.now += Duration::from_secs(9);
    h.c.handle_timeout(h.now);
    h.drain();
    assert!(h.markers.is_empty());
    h.now += Duration::from_secs(1);
    h.c.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.markers.len(), 1);
    assert!(!h.markers[0].commit);
    h.markers_done(true);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    assert_eq!(h.end("tx", p, true), Some(ErrorCode::PRODUCER_FENCED));
    assert_eq!(h.c.stats().timed_out, 1);
}

#[test]
fn markers_that_fail_are_written_again() {
    let mut h = Harness::new();
    let p = h.init("tx", 1).expect("the call succeeds");
    h.add("tx", p, &[0]);
    h.end("tx", p, true);
    // The decision stands: the producer is answered, the markers are retried.
    let replies = h.markers_done(false);
    assert_eq!(replies[0].1, TxnReply::EndTxn(ErrorCode::NONE));
    assert_eq!(h.state("tx"), TxnState::PrepareCommit);
    let retry = h.c.poll_timeout().expect("the call succeeds");
    assert_eq!(retry, h.now + Duration::from_secs(1));
    h.now = retry;
    h.c.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.markers.len(), 1);
    assert!(h.markers[0].commit);
    h.markers_done(true);
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
}

/// A retry writes the markers only to the partitions the failed write did not reach.
#[test]
fn markers_are_written_again_only_where_they_failed() {
    let mut h = Harness::new();
    let p = h.init("tx", 1).expect("the call succeeds");
    h.add("tx", p, &[0, 1, 2]);
    h.end("tx", p, false);
    let m = h.markers.pop().expect("markers handed out");
    assert_eq!(m.partitions, [TP(0), TP(1), TP(2)]);
    h.c.markers_written("tx", m.producer_id, m.epoch, &[TP(0), TP(2)]);
    h.c.handle_markers(h.now, "tx", m.producer_id, m.epoch, false);
    // A report for another epoch changes nothing.
    h.c.markers_written("tx", m.producer_id, m.epoch + 1, &[TP(1)]);
    h.now += Duration::from_secs(1);
    h.c.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.markers[0].partitions, [TP(1)]);
    h.markers_done(true);
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
}

#[test]
fn idle_transactional_ids_are_forgotten() {
    let mut h = Harness::new();
    h.init("tx", 1).expect("the call succeeds");
    h.now += TxnConfig::default().id_expiry;
    h.c.handle_timeout(h.now);
    h.drain();
    assert!(h.c.snapshot("tx").is_none());
    assert_eq!(h.log.last(), Some(&("tx".to_owned(), None)));
}

#[test]
fn verification_of_partitions_v4() {
    let mut h = Harness::new();
    let p = h.init("tx", 1).expect("the call succeeds");
    h.add("tx", p, &[0]);
    let r = h.call(TxnCall::AddPartitions {
        transactional_id: "tx".into(),
        producer_id: 1,
        epoch: 0,
        partitions: vec![TP(0), TP(1)],
        verify_only: true,
    });
    assert_eq!(
        r,
        Some(TxnReply::AddPartitions(vec![
            ErrorCode::NONE,
            ErrorCode::TRANSACTION_ABORTABLE
        ]))
    );
    // Verification adds nothing.
    assert_eq!(
        h.c.verify_write("tx", 1, 0, &TP(1)),
        ErrorCode::INVALID_TXN_STATE
    );
}

/// A restart after each step of a commit and of an abort: a decided transaction completes,
/// an open one is aborted once its timeout passes, and the producer's id and epoch stand.
#[test]
fn a_restart_at_each_step_resumes() {
    for commit in [true, false] {
        // Restart while open.
        let mut h = Harness::new();
        let p = h.init("tx", 1).expect("the call succeeds");
        h.add("tx", p, &[0, 1]);
        h.restart();
        assert_eq!(h.state("tx"), TxnState::Ongoing);
        assert!(h.markers.is_empty());
        assert_eq!(h.c.verify_write("tx", 1, 0, &TP(1)), ErrorCode::NONE);
        h.now += Duration::from_secs(10);
        h.c.handle_timeout(h.now);
        h.drain();
        assert_eq!(h.markers.len(), 1);
        assert!(!h.markers[0].commit);
        assert_eq!(h.markers[0].partitions, [TP(0), TP(1)]);
        h.markers_done(true);
        assert_eq!(h.state("tx"), TxnState::CompleteAbort);

        // Restart once decided, before the markers were written.
        let mut h = Harness::new();
        let p = h.init("tx", 1).expect("the call succeeds");
        h.add("tx", p, &[0]);
        h.end("tx", p, commit);
        h.restart();
        assert_eq!(h.markers.len(), 1, "the markers are handed out again");
        assert_eq!(h.markers[0].commit, commit);
        assert_eq!(
            h.end("tx", p, commit),
            Some(ErrorCode::CONCURRENT_TRANSACTIONS)
        );
        h.markers_done(true);
        assert_eq!(
            h.state("tx"),
            if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            }
        );

        // Restart once complete.
        h.restart();
        assert!(h.markers.is_empty());
        assert_eq!(h.end("tx", p, commit), Some(ErrorCode::NONE));
        assert_eq!(h.init("tx", 9), Ok((1, 1)));
    }
}

/// What read_committed consumers see of one partition written by interleaved transactions
/// of several producers: the driver's markers applied to the partition's index, as the
/// backends do.
#[test]
fn interleaved_producers_on_one_partition() {
    let mut h = Harness::new();
    let mut index = TxnIndex::default();
    let mut log: Vec<Option<(i64, bool)>> = Vec::new(); // per offset: (producer, marker)
    let a = h.init("a", 1).expect("the call succeeds");
    let b = h.init("b", 2).expect("the call succeeds");
    let write = |index: &mut TxnIndex, log: &mut Vec<Option<(i64, bool)>>, pid: i64| {
        let offset = log.len() as u64;
        index.appended(pid, offset);
        log.push(Some((pid, false)));
    };
    h.add("a", a, &[0]);
    h.add("b", b, &[0]);
    write(&mut index, &mut log, 1); // 0
    write(&mut index, &mut log, 2); // 1
    log.push(None); // 2: a plain record
    write(&mut index, &mut log, 1); // 3
    assert_eq!(index.last_stable(log.len() as u64), 0);
    // b commits first: a still holds the LSO at 0.
    h.end("b", b, true);
    for m in std::mem::take(&mut h.markers) {
        let offset = log.len() as u64;
        log.push(Some((m.producer_id, true)));
        index.marker(m.producer_id, m.commit, offset); // 4
        h.c.handle_markers(h.now, &m.transactional_id, m.producer_id, m.epoch, true);
        while h.c.poll_reply().is_some() {}
    }
    assert_eq!(index.last_stable(log.len() as u64), 0);
    h.end("a", a, false);
    for m in std::mem::take(&mut h.markers) {
        let offset = log.len() as u64;
        log.push(Some((m.producer_id, true)));
        index.marker(m.producer_id, m.commit, offset); // 5
        h.c.handle_markers(h.now, &m.transactional_id, m.producer_id, m.epoch, true);
        while h.c.poll_reply().is_some() {}
    }
    assert_eq!(index.last_stable(log.len() as u64), 6);
    let aborted = index.aborted_between(0, 5);
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (1, 0));
    assert_eq!(
        index.aborted_between(4, 5).len(),
        1,
        "overlaps the range by its marker"
    );
    // What a read_committed consumer keeps, as librdkafka filters: b's records and the
    // plain one.
    let visible: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(o, r)| match r {
            None => true,
            Some((_, true)) => false,
            Some((pid, false)) => !aborted.iter().any(|x| {
                x.producer_id == *pid && x.first_offset <= *o as u64 && *o as u64 <= x.last_offset
            }),
        })
        .map(|(o, _)| o)
        .collect();
    assert_eq!(visible, [1, 2]);
}

/// Kafka's order with a log that acknowledges later: a call is answered once its state is
/// durable, a transactional write goes only to partitions whose addition is durable, and
/// a decision's markers wait for the decision to be durable.
#[test]
fn calls_are_answered_once_their_state_is_durable() {
    let mut h = Harness::new();
    h.hold_persists = true;
    assert_eq!(
        h.call(TxnCall::InitProducerId {
            transactional_id: "tx".into(),
            timeout_ms: 10_000,
            expected: None,
            fresh_id: 7,
        }),
        None,
        "InitProducerId waits for its epoch to be durable"
    );
    let replies = h.persisted(true);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1, TxnReply::InitProducerId(Ok((7, 0))));
    let add = TxnCall::AddPartitions {
        transactional_id: "tx".into(),
        producer_id: 7,
        epoch: 0,
        partitions: vec![TP(0)],
        verify_only: false,
    };
    assert_eq!(h.call(add.clone()), None);
    assert_eq!(
        h.c.verify_write("tx", 7, 0, &TP(0)),
        ErrorCode::INVALID_TXN_STATE,
        "no write before the partition is durable"
    );
    assert_eq!(
        h.persisted(true)[0].1,
        TxnReply::AddPartitions(vec![ErrorCode::NONE])
    );
    assert_eq!(h.c.verify_write("tx", 7, 0, &TP(0)), ErrorCode::NONE);
    // AddOffsetsToTxn and TxnOffsetCommit wait too.
    assert_eq!(
        h.call(TxnCall::AddOffsets {
            transactional_id: "tx".into(),
            producer_id: 7,
            epoch: 0,
            group: "g".into(),
        }),
        None
    );
    assert_eq!(h.persisted(true)[0].1, TxnReply::Code(ErrorCode::NONE));
    // The decision: no marker before it is durable.
    assert_eq!(h.end("tx", (7, 0), true), None);
    assert!(h.markers.is_empty(), "markers wait for PrepareCommit");
    assert!(h.persisted(true).is_empty(), "EndTxn waits for the markers");
    assert_eq!(h.markers.len(), 1);
    let replies = h.markers_done(true);
    assert_eq!(replies[0].1, TxnReply::EndTxn(ErrorCode::NONE));
    // The completion is persisted after the markers.
    assert_eq!(
        h.persisting
            .last()
            .and_then(|p| p.1.as_ref())
            .map(|s| s.state),
        Some(TxnState::CompleteCommit)
    );
}

/// A log that fails: the calls waiting get Kafka's retriable COORDINATOR_NOT_AVAILABLE, the
/// state is persisted again after the retry delay, and the decision's markers go out once
/// it is durable.
#[test]
fn a_failed_persist_is_retried_and_its_calls_answered_retriable() {
    let mut h = Harness::new();
    let p = h.init("tx", 7).expect("init");
    assert_eq!(h.add("tx", p, &[0]), [ErrorCode::NONE]);
    h.hold_persists = true;
    assert_eq!(
        h.call(TxnCall::AddPartitions {
            transactional_id: "tx".into(),
            producer_id: 7,
            epoch: 0,
            partitions: vec![TP(1)],
            verify_only: false,
        }),
        None
    );
    let replies = h.persisted(false);
    assert_eq!(
        replies[0].1,
        TxnReply::AddPartitions(vec![ErrorCode::COORDINATOR_NOT_AVAILABLE])
    );
    assert_eq!(
        h.c.verify_write("tx", 7, 0, &TP(1)),
        ErrorCode::INVALID_TXN_STATE
    );
    // The EndTxn's decision fails too: it is not answered as done.
    assert_eq!(h.end("tx", p, true), None);
    let replies = h.persisted(false);
    assert_eq!(
        replies[0].1,
        TxnReply::EndTxn(ErrorCode::COORDINATOR_NOT_AVAILABLE)
    );
    assert!(h.markers.is_empty());
    let due = h.c.poll_timeout().expect("a retry is due");
    assert_eq!(due, h.now + TxnConfig::default().marker_retry);
    h.now = due;
    h.c.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.persisting.len(), 1, "the state persisted again");
    assert!(h.persisted(true).is_empty());
    assert_eq!(h.markers.len(), 1, "now durable, the markers go out");
    assert_eq!(h.markers[0].partitions, [TP(0), TP(1)]);
    h.markers_done(true);
    // The producer's retried EndTxn learns the outcome.
    h.hold_persists = false;
    assert_eq!(h.end("tx", p, true), Some(ErrorCode::NONE));
}

/// A restart before the decision was durable: the transaction is still open, and is
/// aborted once its timeout passes; its partitions added durably get abort markers.
#[test]
fn a_restart_before_the_decision_is_durable_aborts_after_the_timeout() {
    let mut h = Harness::new();
    let p = h.init("tx", 7).expect("init");
    assert_eq!(h.add("tx", p, &[0]), [ErrorCode::NONE]);
    h.hold_persists = true;
    assert_eq!(h.end("tx", p, true), None);
    assert!(h.markers.is_empty());
    h.persisting.clear();
    h.hold_persists = false;
    h.restart();
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    assert!(h.markers.is_empty());
    h.now += Duration::from_secs(10);
    h.c.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.markers.len(), 1);
    assert!(!h.markers[0].commit, "never committed");
    assert_eq!(h.markers[0].partitions, [TP(0)]);
    assert_eq!(h.markers[0].epoch, 1, "the producer is fenced");
}

/// When the current (or last) transaction started is kept through its completion, for
/// admin tools, as Kafka keeps it; InitProducerId clears it.
#[test]
fn the_start_of_the_last_transaction_is_kept_until_init_producer_id() {
    let mut h = Harness::new();
    let started = |h: &mut Harness| match h.call(TxnCall::Describe(vec!["tx".into()])) {
        Some(TxnReply::Describe(found)) => found[0].as_ref().and_then(|(_, s)| *s),
        other => panic!("{other:?}"),
    };
    let p = h.init("tx", 100).expect("init");
    assert_eq!(started(&mut h), None);
    h.now += Duration::from_secs(1);
    h.add("tx", p, &[0]);
    h.now += Duration::from_secs(2);
    assert_eq!(started(&mut h), Some(Duration::from_secs(2)));
    assert_eq!(h.end("tx", p, true), None);
    h.markers_done(true);
    assert_eq!(h.state("tx"), TxnState::CompleteCommit);
    h.now += Duration::from_secs(3);
    assert_eq!(started(&mut h), Some(Duration::from_secs(5)));
    h.init("tx", 101).expect("init");
    assert_eq!(started(&mut h), None);
}
