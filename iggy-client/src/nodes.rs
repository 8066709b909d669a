//! The Iggy nodes a pool knows, and which of them leads.
//!
//! A single Iggy server is one node. A cluster (Viewstamped Replication) is several, of which
//! one, the primary of the metadata group, takes the writes: a follower answers a write
//! "not accepted" (Iggy error 58), and a client must find the primary and follow it when the
//! cluster elects another. [`Nodes`] starts from the addresses it is given and learns the
//! others, and the primary, from the cluster metadata a node reports after each login, as
//! Iggy's own SDK does. Each lane asks [`Nodes::next_address`] where to connect: the primary
//! when one is known, else the next node in turn, so that a lane whose node died reaches a
//! surviving one at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use iggy_binary_protocol::responses::system::get_cluster_metadata::ClusterMetadataResponse;

use crate::sync::lock;

/// Iggy's role code of the node that leads the cluster.
const LEADER: u8 = 0;
/// The most addresses a pool keeps: a node reporting ever new ones (a broken or hostile
/// server) must not grow the list without end. Iggy's clusters have a handful of nodes.
pub const MAX_NODES: usize = 32;

/// The nodes a pool knows. Shared by its lanes.
#[derive(Debug)]
pub struct Nodes {
    state: Mutex<NodesState>,
    /// Bumped whenever the known primary changes: a lane compares it on every call it sends,
    /// without taking the lock.
    epoch: AtomicU64,
}

#[derive(Debug)]
struct NodesState {
    /// Every address known (`host:port`), those given first, then those a node reported.
    addresses: Vec<String>,
    /// The primary, as the last cluster metadata named it.
    leader: Option<usize>,
    /// The next address a lane without a primary to go to tries.
    turn: usize,
}

/// What a node's cluster metadata says to a lane connected to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A single server, or this node leads: stay.
    Stay,
    /// Another node leads: connect there.
    MoveTo(String),
    /// The cluster has no primary now (an election is under way): ask again shortly.
    NoLeader,
}

impl Nodes {
    /// Nodes at `addresses` (`host:port`, at least one; repeats are dropped).
    #[must_use]
    pub fn new(addresses: impl IntoIterator<Item = String>) -> Self {
        let mut known: Vec<String> = Vec::new();
        for a in addresses {
            if !known.contains(&a) {
                known.push(a);
            }
        }
        Self {
            state: Mutex::new(NodesState {
                addresses: known,
                leader: None,
                turn: 0,
            }),
            epoch: AtomicU64::new(0),
        }
    }

    /// Changes whenever the known primary does.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Every address known, those given first.
    #[must_use]
    pub fn addresses(&self) -> Vec<String> {
        lock(&self.state).addresses.clone()
    }

    /// The primary, when one is known.
    #[must_use]
    pub fn leader(&self) -> Option<String> {
        let st = lock(&self.state);
        st.leader.map(|i| st.addresses[i].clone())
    }

    /// Where a lane should connect now: the primary when one is known, else each known
    /// node in turn.
    #[must_use]
    pub fn next_address(&self) -> String {
        let mut st = lock(&self.state);
        if let Some(i) = st.leader {
            return st.addresses[i].clone();
        }
        let i = st.turn % st.addresses.len().max(1);
        st.turn = st.turn.wrapping_add(1);
        st.addresses.get(i).cloned().unwrap_or_default()
    }

    /// How many nodes are known.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.state).addresses.len()
    }

    /// Whether none is (never: there is at least one).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        lock(&self.state).addresses.is_empty()
    }

    /// `address` failed (refused a connection, dropped one, or took no writes): it is not
    /// taken for the primary any more, and lanes try the others.
    pub fn failed(&self, address: &str) {
        let mut st = lock(&self.state);
        if st.leader.is_some_and(|i| st.addresses[i] == address) {
            st.leader = None;
            self.epoch.fetch_add(1, Ordering::Release);
            if let Some(i) = st.addresses.iter().position(|a| a == address) {
                // The next lane to look tries the node after it.
                st.turn = i + 1;
            }
        }
    }

    /// Learns the nodes and the primary from the cluster metadata `address` reported, and
    /// says what a lane connected there should do.
    pub fn learn(&self, address: &str, metadata: &ClusterMetadataResponse) -> Placement {
        if metadata.nodes.len() <= 1 {
            // A single server: whatever address it gives itself, the one connected is it.
            return Placement::Stay;
        }
        let mut st = lock(&self.state);
        let mut leader = None;
        for node in &metadata.nodes {
            let at = format!("{}:{}", host(&node.ip), node.tcp_port);
            let i = match st.addresses.iter().position(|a| *a == at) {
                Some(i) => i,
                None if st.addresses.len() < MAX_NODES => {
                    st.addresses.push(at);
                    st.addresses.len() - 1
                }
                // Past the bound a node is not learned, nor followed should it lead.
                None => continue,
            };
            if node.role == LEADER {
                leader = Some(i);
            }
        }
        if st.leader != leader {
            st.leader = leader;
            self.epoch.fetch_add(1, Ordering::Release);
        }
        match leader {
            None => Placement::NoLeader,
            Some(i) if st.addresses[i] == address => Placement::Stay,
            Some(i) => Placement::MoveTo(st.addresses[i].clone()),
        }
    }
}

/// An IP as a `host:port` host: IPv6 in brackets.
fn host(ip: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iggy_binary_protocol::responses::system::get_cluster_metadata::ClusterNodeResponse;

    fn node(ip: &str, port: u16, role: u8) -> ClusterNodeResponse {
        ClusterNodeResponse {
            name: format!("n{port}"),
            ip: ip.into(),
            tcp_port: port,
            quic_port: 0,
            http_port: 0,
            websocket_port: 0,
            role,
            status: 0,
        }
    }

    fn metadata(nodes: Vec<ClusterNodeResponse>) -> ClusterMetadataResponse {
        ClusterMetadataResponse {
            name: "c".into(),
            nodes,
        }
    }

    /// One address given; the others and the primary are learned, and a failed primary
    /// sends lanes round the others.
    #[test]
    fn nodes_are_learned_and_the_primary_followed() {
        let nodes = Nodes::new(["127.0.0.2:8090".to_owned()]);
        assert_eq!(nodes.next_address(), "127.0.0.2:8090");
        let cluster = metadata(vec![
            node("127.0.0.1", 8090, 0),
            node("127.0.0.2", 8090, 1),
            node("127.0.0.3", 8090, 1),
        ]);
        assert_eq!(
            nodes.learn("127.0.0.2:8090", &cluster),
            Placement::MoveTo("127.0.0.1:8090".into())
        );
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes.next_address(), "127.0.0.1:8090");
        assert_eq!(nodes.learn("127.0.0.1:8090", &cluster), Placement::Stay);
        nodes.failed("127.0.0.1:8090");
        assert_eq!(nodes.leader(), None);
        let tried: Vec<String> = (0..3).map(|_| nodes.next_address()).collect();
        assert_eq!(
            tried,
            ["127.0.0.3:8090", "127.0.0.2:8090", "127.0.0.1:8090"],
            "the node after the failed one first"
        );
        let electing = metadata(vec![
            node("127.0.0.1", 8090, 1),
            node("127.0.0.2", 8090, 1),
            node("127.0.0.3", 8090, 1),
        ]);
        assert_eq!(
            nodes.learn("127.0.0.3:8090", &electing),
            Placement::NoLeader
        );
    }

    /// However many nodes the metadata names, the pool keeps at most [`MAX_NODES`], and
    /// does not follow a primary it did not keep.
    #[test]
    fn a_node_list_past_the_bound_is_not_kept() {
        let nodes = Nodes::new(["127.0.0.1:8090".to_owned()]);
        let mut many: Vec<_> = (0..100).map(|p| node("10.0.0.1", 1000 + p, 1)).collect();
        many.push(node("10.0.0.2", 1, 0));
        assert_eq!(
            nodes.learn("127.0.0.1:8090", &metadata(many)),
            Placement::NoLeader
        );
        assert_eq!(nodes.len(), MAX_NODES);
        assert_eq!(nodes.leader(), None);
    }

    /// A single server stays where it is, whatever address it reports for itself.
    #[test]
    fn a_single_server_is_not_left() {
        let nodes = Nodes::new(["localhost:8090".to_owned(), "localhost:8090".to_owned()]);
        assert_eq!(nodes.len(), 1);
        let single = metadata(vec![node("0.0.0.0", 8090, 0)]);
        assert_eq!(nodes.learn("localhost:8090", &single), Placement::Stay);
        assert_eq!(nodes.leader(), None);
        assert_eq!(nodes.next_address(), "localhost:8090");
        assert_eq!(host("::1"), "[::1]");
    }
}
