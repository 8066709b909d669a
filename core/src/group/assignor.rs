//! The server-side assignors of consumer groups (KIP-848): `uniform` and `range`, with the
//! behaviour of Kafka's `UniformAssignor` and `RangeAssignor`.
//!
//! An assignor maps every member to the partitions it should own (the target assignment),
//! from each member's subscribed topics and its previous target. It never looks at who owns a
//! partition now: handing a partition over only after its owner revoked it is the
//! reconciliation's job (`consumer.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::Uuid;

/// Partitions by topic id.
pub(crate) type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    /// Kafka's `UniformAssignor`: balanced, sticky.
    Uniform,
    /// Kafka's `RangeAssignor`: per topic, consecutive ranges in member order.
    Range,
}

impl Assignor {
    /// Every assignor, the default (a group whose members name none) first, as Kafka's
    /// `group.consumer.assignors` lists them.
    pub const ALL: [Self; 2] = [Self::Uniform, Self::Range];

    /// The name clients ask for (`group.remote.assignor`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }

    /// The assignor of that name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A member as an assignor sees it.
#[derive(Debug)]
pub(crate) struct Spec<'a> {
    pub id: &'a str,
    pub instance_id: Option<&'a str>,
    /// The topics it subscribes to that exist.
    pub topics: BTreeSet<Uuid>,
    /// Its previous target assignment.
    pub previous: &'a Partitions,
}

/// The target assignment of `members` over `partitions` (partition counts by topic).
pub(crate) fn assign(
    assignor: Assignor,
    members: &[Spec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    match assignor {
        Assignor::Range => range(members, partitions),
        Assignor::Uniform => {
            let homogeneous = members.windows(2).all(|w| w[0].topics == w[1].topics);
            if homogeneous {
                uniform_homogeneous(members, partitions)
            } else {
                uniform_heterogeneous(members, partitions)
            }
        }
    }
}

fn count(partitions: &BTreeMap<Uuid, i32>, topic: &Uuid) -> i32 {
    partitions.get(topic).copied().unwrap_or(0).max(0)
}

/// Kafka's member order for ranges: static members by instance id, then the others by id.
fn range(members: &[Spec<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    let mut order: Vec<&Spec<'_>> = members.iter().collect();
    order.sort_by(|a, b| match (a.instance_id, b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(b.id),
    });
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| (m.id.to_owned(), Partitions::new()))
        .collect();
    let topics: BTreeSet<Uuid> = members
        .iter()
        .flat_map(|m| m.topics.iter().copied())
        .collect();
    for topic in topics {
        let n = count(partitions, &topic);
        let subscribers: Vec<&&Spec<'_>> =
            order.iter().filter(|m| m.topics.contains(&topic)).collect();
        let members_n = i32::try_from(subscribers.len()).unwrap_or(i32::MAX).max(1);
        let quota = n / members_n;
        let mut extra = n % members_n;
        let mut next = 0;
        for m in subscribers {
            let mut take = quota;
            if extra > 0 {
                take += 1;
                extra -= 1;
            }
            let end = (next + take).min(n);
            if next < end {
                if let Some(a) = out.get_mut(m.id) {
                    a.insert(topic, (next..end).collect());
                }
            }
            next = end;
        }
    }
    out
}

/// The previous target of `m`, without topics it no longer subscribes to or partitions that
/// no longer exist.
fn kept(m: &Spec<'_>, partitions: &BTreeMap<Uuid, i32>) -> Partitions {
    m.previous
        .iter()
        .filter(|(t, _)| m.topics.contains(t))
        .map(|(t, ps)| {
            let n = count(partitions, t);
            (*t, ps.iter().copied().filter(|p| *p < n).collect())
        })
        .filter(|(_, ps): &(Uuid, BTreeSet<i32>)| !ps.is_empty())
        .collect()
}

/// Every member subscribes to the same topics: each keeps what it had up to its quota; the
/// rest go, in order, to members below theirs (Kafka's `UniformHomogeneousAssignmentBuilder`).
fn uniform_homogeneous(
    members: &[Spec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    let mut out = BTreeMap::new();
    let Some(first) = members.first() else {
        return out;
    };
    let topics = &first.topics;
    let kept: Vec<Partitions> = members.iter().map(|m| kept(m, partitions)).collect();
    let taken: BTreeSet<(Uuid, i32)> = kept
        .iter()
        .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
        .collect();
    let mut unassigned: Vec<(Uuid, i32)> = Vec::new();
    let mut total: usize = 0;
    for t in topics {
        let n = count(partitions, t);
        for p in 0..n {
            if !taken.contains(&(*t, p)) {
                unassigned.push((*t, p));
            }
        }
        total += usize::try_from(n).unwrap_or(0);
    }
    let min_quota = total / members.len();
    let mut extra = total % members.len();
    let mut unfilled: Vec<(usize, usize)> = Vec::new();
    let mut targets: Vec<Partitions> = Vec::with_capacity(members.len());
    for (i, previous) in kept.into_iter().enumerate() {
        let mut quota = min_quota;
        if extra > 0 {
            quota += 1;
            extra -= 1;
        }
        let mut target = Partitions::new();
        for (t, ps) in previous {
            let mut keep = BTreeSet::new();
            for p in ps {
                if quota > 0 {
                    quota -= 1;
                    keep.insert(p);
                } else {
                    unassigned.push((t, p));
                }
            }
            if !keep.is_empty() {
                target.insert(t, keep);
            }
        }
        if quota > 0 {
            unfilled.push((i, quota));
        }
        targets.push(target);
    }
    let mut next = unassigned.into_iter();
    for (i, quota) in unfilled {
        for (t, p) in next.by_ref().take(quota) {
            targets[i].entry(t).or_default().insert(p);
        }
    }
    for (m, target) in members.iter().zip(targets) {
        out.insert(m.id.to_owned(), target);
    }
    out
}

/// Members subscribe to different topics: each keeps what it had of the topics it still
/// subscribes to; every other partition goes to the subscriber holding the fewest; then
/// partitions move from a member to a subscriber of their topic holding at least two fewer,
/// until none can. Balanced and sticky, as Kafka's heterogeneous builder, though not
/// partition for partition the same choices.
fn uniform_heterogeneous(
    members: &[Spec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Partitions> {
    let mut targets: Vec<Partitions> = members.iter().map(|m| kept(m, partitions)).collect();
    let mut sizes: Vec<usize> = targets
        .iter()
        .map(|a| a.values().map(BTreeSet::len).sum())
        .collect();
    let taken: BTreeSet<(Uuid, i32)> = targets
        .iter()
        .flat_map(|a| a.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
        .collect();
    let topics: BTreeSet<Uuid> = members
        .iter()
        .flat_map(|m| m.topics.iter().copied())
        .collect();
    for t in &topics {
        for p in 0..count(partitions, t) {
            if taken.contains(&(*t, p)) {
                continue;
            }
            let best = (0..members.len())
                .filter(|&i| members[i].topics.contains(t))
                .min_by_key(|&i| sizes[i]);
            if let Some(i) = best {
                targets[i].entry(*t).or_default().insert(p);
                sizes[i] += 1;
            }
        }
    }
    // Each move lowers the sum of squared sizes, so this ends; the bound is a safety net.
    let total: usize = sizes.iter().sum();
    for _ in 0..=total.saturating_mul(members.len()) {
        let mut moved = false;
        'search: for from in 0..members.len() {
            for to in 0..members.len() {
                if sizes[from] < sizes[to] + 2 {
                    continue;
                }
                let candidate = targets[from]
                    .iter()
                    .filter(|(t, _)| members[to].topics.contains(t))
                    .find_map(|(t, ps)| ps.last().map(|p| (*t, *p)));
                if let Some((t, p)) = candidate {
                    if let Some(ps) = targets[from].get_mut(&t) {
                        ps.remove(&p);
                        if ps.is_empty() {
                            targets[from].remove(&t);
                        }
                    }
                    targets[to].entry(t).or_default().insert(p);
                    sizes[from] -= 1;
                    sizes[to] += 1;
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    members
        .iter()
        .zip(targets)
        .map(|(m, a)| (m.id.to_owned(), a))
        .collect()
}
