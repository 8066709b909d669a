//! A group's state as the coordinator keeps it across restarts: what a coordinator failover
//! in Kafka keeps in `__consumer_offsets`, as one self-contained value per group.
//!
//! A classic group is kept as Kafka's `GroupMetadataValue` holds it (protocol type,
//! generation, protocol, leader, and each member's ids, client, timeouts, protocols and
//! assignment); a consumer group (KIP-848) as its records hold it (group epoch, assignment
//! epoch and assignor, the subscribed topics, each member's epochs, state, subscription and
//! current assignment, and the target assignment). Session deadlines and replies owed are not
//! kept: a restored member's session runs from the restore.
//!
//! Encoding (little-endian): version `1`, kind (1 classic, 2 consumer), then the group's
//! fields; strings and byte strings carry a u32 length, optional ones a presence byte first,
//! lists a u32 count. A consumer group's state ends with what each member's regular
//! expression resolved to; a state without that section (written before it existed) reads,
//! each expression then standing for the group's topics it matches. Decoding is bounded by
//! the input: every length and count is checked
//! against what is left before anything is allocated, and bad input is `None`, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Group, GroupState, Member};
use crate::protocol::Uuid;

/// The version of the encoding this coordinator writes and reads.
pub(super) const VERSION: u8 = 1;
pub(super) const CLASSIC: u8 = 1;
pub(super) const CONSUMER: u8 = 2;

/// Builds an encoded state.
#[derive(Default)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn new(kind: u8) -> Self {
        Self(vec![VERSION, kind])
    }

    pub(super) fn finish(self) -> Bytes {
        Bytes::from(self.0)
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn count(&mut self, n: usize) {
        self.0
            .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.extend_from_slice(b);
    }

    pub(super) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub(super) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    pub(super) fn uuid(&mut self, id: &Uuid) {
        self.0.extend_from_slice(&id.0);
    }

    pub(super) fn millis(&mut self, d: Duration) {
        self.i32(i32::try_from(d.as_millis()).unwrap_or(i32::MAX));
    }

    /// Partitions by topic id.
    pub(super) fn partitions(&mut self, a: &BTreeMap<Uuid, BTreeSet<i32>>) {
        self.count(a.len());
        for (t, ps) in a {
            self.uuid(t);
            self.count(ps.len());
            for p in ps {
                self.i32(*p);
            }
        }
    }
}

/// Reads an encoded state; every read is `None` past the end.
pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The reader after the header, and the kind, if the version is this coordinator's.
    pub(super) fn open(b: &'a [u8]) -> Option<(Self, u8)> {
        match b {
            [VERSION, kind, rest @ ..] => Some((Self(rest), *kind)),
            _ => None,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A count of items each at least `min` bytes long: refused when what is left cannot
    /// hold them, so that a hostile count allocates nothing.
    pub(super) fn count(&mut self, min: usize) -> Option<usize> {
        let n = usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()?;
        (n.checked_mul(min.max(1))? <= self.0.len()).then_some(n)
    }

    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub(super) fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    pub(super) fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }

    pub(super) fn uuid(&mut self) -> Option<Uuid> {
        Some(Uuid(self.take(16)?.try_into().ok()?))
    }

    pub(super) fn millis(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(u64::try_from(self.i32()?).ok()?))
    }

    pub(super) fn partitions(&mut self) -> Option<BTreeMap<Uuid, BTreeSet<i32>>> {
        let mut out = BTreeMap::new();
        for _ in 0..self.count(20)? {
            let t = self.uuid()?;
            let mut ps = BTreeSet::new();
            for _ in 0..self.count(4)? {
                ps.insert(self.i32()?);
            }
            out.insert(t, ps);
        }
        Some(out)
    }
}

/// A classic group's kept state: its generation and members with their assignments (as
/// Kafka's `GroupMetadataValue`).
pub(super) fn encode_classic(g: &Group) -> Bytes {
    let mut w = Writer::new(CLASSIC);
    w.opt_str(g.protocol_type.as_deref());
    w.i32(g.generation);
    w.opt_str(g.protocol.as_deref());
    w.opt_str(g.leader.as_deref());
    let mut members: Vec<&Member> = g.members.values().collect();
    members.sort_by_key(|m| m.seq);
    w.count(members.len());
    for m in members {
        w.str(&m.id);
        w.opt_str(m.instance_id.as_deref());
        w.str(&m.client_id);
        w.str(&m.client_host);
        w.millis(m.session_timeout);
        w.millis(m.rebalance_timeout);
        w.count(m.protocols.len());
        for (name, metadata) in &m.protocols {
            w.str(name);
            w.bytes(metadata);
        }
        w.bytes(&m.assignment);
    }
    w.finish()
}

/// A classic group back from its kept state, at `now`: Stable with its members (Empty
/// without), each member's session running from `now`. `seq` numbers the members in their
/// join order.
pub(super) fn decode_classic(r: &mut Reader<'_>, now: Instant, seq: &mut u64) -> Option<Group> {
    let mut g = Group::new(now);
    g.protocol_type = r.opt_str()?;
    g.generation = r.i32()?;
    g.protocol = r.opt_str()?;
    g.leader = r.opt_str()?;
    // A member is at least its four lengths, a presence byte, two timeouts and two counts.
    for _ in 0..r.count(29)? {
        let id = r.str()?;
        let instance_id = r.opt_str()?;
        let client_id = r.str()?;
        let client_host = r.str()?;
        let session_timeout = r.millis()?;
        let rebalance_timeout = r.millis()?;
        let mut protocols = Vec::new();
        for _ in 0..r.count(8)? {
            let name = r.str()?;
            protocols.push((name, Bytes::copy_from_slice(r.bytes()?)));
        }
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        *seq += 1;
        if let Some(i) = &instance_id {
            g.statics.insert(i.clone(), id.clone());
        }
        g.members.insert(
            id.clone(),
            Member {
                id,
                instance_id,
                client_id,
                client_host,
                session_timeout,
                rebalance_timeout,
                protocols,
                assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: now + session_timeout,
                seq: *seq,
            },
        );
    }
    if !r.is_done() {
        return None;
    }
    if g.members.is_empty() {
        g.protocol = None;
        g.leader = None;
    } else {
        // A leader that is not a member (a damaged record) would stall the next rebalance.
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            return None;
        }
        g.state = GroupState::Stable;
        g.empty_since = None;
    }
    Some(g)
}
