//! The transaction coordinator under arbitrary calls from a few transactional producers
//! (and their fenced predecessors), arbitrary time, failed marker writes, persists of its
//! state acknowledged late or failed, and restarts from what was durably persisted, with partitions that apply its markers as the backends do, their
//! indexes learning of some writes late (after later markers, as a backend whose replies
//! are handled by several tasks can). What must hold: it never panics; a producer that was
//! fenced (an older epoch or producer id of its transactional id) never has a write accepted
//! again; a write is accepted only to a partition whose addition to the transaction is
//! durable; and once every transaction has ended, each transaction's records are visible to
//! read_committed all together or not at all.
#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use iggy_kafka_core::backend::{CommittedOffset, GroupOffset};
use iggy_kafka_core::protocol::error_code::ErrorCode;
use iggy_kafka_core::txn::{
    Markers, ReplyTo, TxnCall, TxnConfig, TxnCoordinator, TxnEffect, TxnReply, TxnSnapshot,
    TxnState,
};
use iggy_kafka_core::txn_index::TxnIndex;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Init {
        id: u8,
        timeout_s: u8,
        expect: Option<u8>,
    },
    Add {
        handle: u8,
        parts: Vec<u8>,
        verify_only: bool,
    },
    AddOffsets {
        handle: u8,
    },
    CommitOffsets {
        handle: u8,
        offset: i8,
    },
    End {
        handle: u8,
        commit: bool,
    },
    /// A transactional write; `late`: the partition's index learns of it only at a later
    /// `Learn` (its reply handled after other replies).
    Write {
        handle: u8,
        part: u8,
        late: bool,
    },
    /// The index learns of the oldest (or, if `newest`, the newest) late write.
    Learn {
        newest: bool,
    },
    /// Reports the oldest markers handed out: all written, or only the first `written`.
    Markers {
        ok: bool,
        written: u8,
    },
    /// Reports the oldest `count` persists handed out: written, or failed.
    Persist {
        ok: bool,
        count: u8,
    },
    Advance(u16),
    Restart,
}

const PARTS: u32 = 3;

/// A producer id, and a record's (transactional id, transaction instance) or a marker's
/// decision.
type Entry = (i64, Result<(u8, u32), bool>);

#[derive(Default)]
struct Partition {
    index: TxnIndex,
    /// Per offset: the producer and, for a record, its transaction instance; for a marker,
    /// its decision.
    log: Vec<Entry>,
}

struct World {
    c: TxnCoordinator,
    now: Instant,
    next: u64,
    parts: Vec<Partition>,
    pending: Vec<Markers>,
    /// What the log holds durably.
    persisted: BTreeMap<String, TxnSnapshot>,
    /// Persists handed out and not yet reported.
    persisting: Vec<(String, Option<TxnSnapshot>, u64)>,
    /// Per transactional id: how many transactions ended, to tell instances apart.
    ended: HashMap<u8, u32>,
    /// Producer ids and epochs handed out, with their transactional id.
    handles: Vec<(u8, i64, i16)>,
    fresh: i64,
    /// InitProducerId calls not answered yet, with their transactional id.
    inits: HashMap<ReplyTo, u8>,
    /// Writes appended whose index update is still to come: partition, producer, offset.
    late: Vec<(usize, i64, u64)>,
}

fn txn_id(id: u8) -> String {
    format!("tx{}", id % 3)
}

impl World {
    fn effects(&mut self) {
        while let Some(e) = self.c.poll_effect() {
            match e {
                TxnEffect::WriteMarkers(m) => self.pending.push(m),
                TxnEffect::Persist {
                    transactional_id,
                    snapshot,
                    version,
                } => self.persisting.push((transactional_id, snapshot, version)),
                _ => {}
            }
        }
        // Replies are not this harness's concern beyond being well-formed, and the
        // producer ids and epochs InitProducerId hands out once they are durable.
        while let Some((to, r)) = self.c.poll_reply() {
            self.answered(to, r);
        }
    }

    fn answered(&mut self, to: ReplyTo, r: TxnReply) {
        if let Some(id) = self.inits.remove(&to) {
            if let TxnReply::InitProducerId(Ok((pid, epoch))) = r {
                self.handles.push((id, pid, epoch));
            }
        }
    }

    fn call(&mut self, call: TxnCall) {
        self.next += 1;
        let me = ReplyTo(self.next);
        if let TxnCall::InitProducerId {
            transactional_id, ..
        } = &call
        {
            let n: u8 = transactional_id[2..].parse().expect("our ids");
            self.inits.insert(me, n);
        }
        self.c.handle(self.now, me, call);
        let mut seen = HashSet::new();
        while let Some((to, r)) = self.c.poll_reply() {
            assert!(seen.insert(to), "two replies for one call");
            self.answered(to, r);
        }
        self.effects();
    }

    fn persist(&mut self, ok: bool, count: usize) {
        let n = count.min(self.persisting.len());
        for (id, snapshot, version) in self.persisting.drain(..n).collect::<Vec<_>>() {
            if ok {
                match snapshot {
                    Some(s) => self.persisted.insert(id.clone(), s),
                    None => self.persisted.remove(&id),
                };
            }
            self.c.handle_persisted(self.now, &id, version, ok);
        }
        self.effects();
    }

    fn markers(&mut self, ok: bool, written: usize) {
        if self.pending.is_empty() {
            return;
        }
        let m = self.pending.remove(0);
        let n = if ok {
            m.partitions.len()
        } else {
            written.min(m.partitions.len())
        };
        for (_, p) in m.partitions.iter().take(n) {
            let part = &mut self.parts[*p as usize];
            let offset = part.log.len() as u64;
            part.log.push((m.producer_id, Err(m.commit)));
            part.index.marker(m.producer_id, m.commit, offset);
        }
        self.c
            .handle_markers(self.now, &m.transactional_id, m.producer_id, m.epoch, ok);
        let completed = self
            .c
            .snapshot(&m.transactional_id)
            .is_some_and(|s| matches!(s.state, TxnState::CompleteCommit | TxnState::CompleteAbort));
        if ok && completed {
            // Writes from now on belong to the id's next transaction.
            let n: u8 = m.transactional_id[2..].parse().expect("our ids");
            *self.ended.entry(n).or_default() += 1;
        }
        self.effects();
    }

    fn current(&self, id: u8) -> Option<(i64, i16)> {
        self.c
            .snapshot(&txn_id(id))
            .map(|s| (s.producer_id, s.epoch))
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut w = World {
        c: TxnCoordinator::new(TxnConfig::default()),
        now: Instant::now(),
        next: 0,
        parts: (0..PARTS).map(|_| Partition::default()).collect(),
        pending: Vec::new(),
        persisted: BTreeMap::new(),
        persisting: Vec::new(),
        ended: HashMap::new(),
        handles: Vec::new(),
        fresh: 1000,
        inits: HashMap::new(),
        late: Vec::new(),
    };
    let handle = |w: &World, h: u8| -> Option<(u8, i64, i16)> {
        (!w.handles.is_empty()).then(|| w.handles[usize::from(h) % w.handles.len()])
    };
    for op in ops {
        match op {
            Op::Init {
                id,
                timeout_s,
                expect,
            } => {
                w.fresh += 1;
                let expected = expect.and_then(|h| handle(&w, h)).map(|(_, p, e)| (p, e));
                w.call(TxnCall::InitProducerId {
                    transactional_id: txn_id(id),
                    timeout_ms: i32::from(timeout_s) * 1000,
                    expected,
                    fresh_id: w.fresh,
                });
            }
            Op::Add {
                handle: h,
                parts,
                verify_only,
            } => {
                if let Some((id, pid, epoch)) = handle(&w, h) {
                    w.call(TxnCall::AddPartitions {
                        transactional_id: txn_id(id),
                        producer_id: pid,
                        epoch,
                        partitions: parts
                            .iter()
                            .map(|p| ("t".to_owned(), u32::from(*p) % PARTS))
                            .collect(),
                        verify_only,
                    });
                }
            }
            Op::AddOffsets { handle: h } => {
                if let Some((id, pid, epoch)) = handle(&w, h) {
                    w.call(TxnCall::AddOffsets {
                        transactional_id: txn_id(id),
                        producer_id: pid,
                        epoch,
                        group: "g".into(),
                    });
                }
            }
            Op::CommitOffsets { handle: h, offset } => {
                if let Some((id, pid, epoch)) = handle(&w, h) {
                    w.call(TxnCall::CommitOffsets {
                        transactional_id: txn_id(id),
                        producer_id: pid,
                        epoch,
                        group: "g".into(),
                        offsets: vec![GroupOffset {
                            topic: "in".into(),
                            partition: 0,
                            committed: CommittedOffset {
                                offset: i64::from(offset),
                                leader_epoch: -1,
                                metadata: None,
                            },
                        }],
                    });
                }
            }
            Op::End { handle: h, commit } => {
                if let Some((id, pid, epoch)) = handle(&w, h) {
                    w.call(TxnCall::EndTxn {
                        transactional_id: txn_id(id),
                        producer_id: pid,
                        epoch,
                        commit,
                    });
                }
            }
            Op::Learn { newest } => {
                if !w.late.is_empty() {
                    let (p, pid, offset) = if newest {
                        w.late.pop().expect("not empty")
                    } else {
                        w.late.remove(0)
                    };
                    w.parts[p].index.appended(pid, offset);
                }
            }
            Op::Write {
                handle: h,
                part,
                late,
            } => {
                let Some((id, pid, epoch)) = handle(&w, h) else {
                    continue;
                };
                let p = u32::from(part) % PARTS;
                let code =
                    w.c.verify_write(&txn_id(id), pid, epoch, &("t".to_owned(), p));
                let fenced = w
                    .current(id)
                    .is_none_or(|(cp, ce)| cp != pid || ce != epoch);
                if fenced {
                    assert_ne!(code, ErrorCode::NONE, "a fenced producer's write accepted");
                }
                if code == ErrorCode::NONE {
                    let durable = w.persisted.get(&txn_id(id)).is_some_and(|s| {
                        s.state == TxnState::Ongoing
                            && s.producer_id == pid
                            && s.epoch == epoch
                            && s.partitions.contains(&("t".to_owned(), p))
                    });
                    assert!(
                        durable,
                        "a write to a partition whose addition is not durable"
                    );
                }
                if code == ErrorCode::NONE {
                    let instance = w.ended.get(&id).copied().unwrap_or(0);
                    let part = &mut w.parts[p as usize];
                    let offset = part.log.len() as u64;
                    part.log.push((pid, Ok((id, instance))));
                    if late {
                        w.late.push((p as usize, pid, offset));
                    } else {
                        part.index.appended(pid, offset);
                    }
                }
            }
            Op::Markers { ok, written } => w.markers(ok, usize::from(written)),
            Op::Persist { ok, count } => w.persist(ok, usize::from(count)),
            Op::Advance(ms) => {
                w.now += Duration::from_millis(u64::from(ms) * 10);
                w.c.handle_timeout(w.now);
                w.effects();
            }
            Op::Restart => {
                let mut c = TxnCoordinator::new(TxnConfig::default());
                w.pending.clear();
                w.persisting.clear();
                c.restore(w.now, w.persisted.values().cloned());
                w.c = c;
                w.effects();
            }
        }
    }
    // Every late write is learnt, in the order they were made.
    for (p, pid, offset) in std::mem::take(&mut w.late) {
        w.parts[p].index.appended(pid, offset);
    }
    // Let every transaction end: timeouts pass, every marker is written.
    for _ in 0..4 {
        w.now += Duration::from_secs(3600);
        w.c.handle_timeout(w.now);
        w.effects();
        while !w.pending.is_empty() || !w.persisting.is_empty() {
            w.persist(true, usize::MAX);
            while !w.pending.is_empty() {
                w.markers(true, 0);
            }
        }
    }
    // All or nothing: per transaction instance, its records are all visible or none.
    let mut seen: HashMap<(u8, u32), (usize, usize)> = HashMap::new();
    for part in &w.parts {
        let end = part.log.len() as u64;
        assert_eq!(
            part.index.last_stable(end),
            end,
            "a transaction is still open"
        );
        let aborted = part.index.aborted_between(0, end);
        for (o, (pid, what)) in part.log.iter().enumerate() {
            let Ok(instance) = what else { continue };
            let o = o as u64;
            let visible = !aborted
                .iter()
                .any(|a| a.producer_id == *pid && a.first_offset <= o && o <= a.last_offset);
            let e = seen.entry(*instance).or_default();
            e.0 += 1;
            e.1 += usize::from(visible);
        }
    }
    for (instance, (total, visible)) in seen {
        assert!(
            visible == 0 || visible == total,
            "transaction {instance:?}: {visible} of {total} records visible"
        );
    }
});
