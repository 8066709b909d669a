//! What every connection of a gateway shares: limits, identity and defaults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authz::Authorizer;
use crate::quotas::Quotas;
use crate::sasl::SaslConfig;

use crate::protocol::frame::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE};

/// Kafka's security protocols: what a listener requires of the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// Neither TLS nor authentication.
    Plaintext,
    /// TLS; a client certificate, when one is asked for, names the principal.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, in Kafka's order.
    pub const ALL: [Self; 4] = [
        Self::Plaintext,
        Self::Ssl,
        Self::SaslPlaintext,
        Self::SaslSsl,
    ];

    /// Kafka's name for the protocol, as `listener.security.protocol.map` writes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol of Kafka's name `name` (case-insensitive), if it is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Whether connections are wrapped in TLS.
    #[must_use]
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    #[must_use]
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits and identity shared by every connection of a gateway.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame accepted once a client is authenticated, or always when no
    /// authentication is configured (Kafka's `socket.request.max.bytes`).
    pub max_frame_size: usize,
    /// Largest frame accepted before authentication completes. Applies only when
    /// authentication is required; it must never cap produce requests otherwise.
    pub max_unauthenticated_frame_size: usize,
    /// The name of the listener these connections came in on (Kafka's listener name, e.g.
    /// `PLAINTEXT` or `EXTERNAL`).
    pub listener_name: String,
    /// What the listener requires of its connections. The adapter owns TLS; the connection
    /// owns SASL.
    pub security_protocol: SecurityProtocol,
    /// How a SASL listener authenticates; a SASL listener without it authenticates no one.
    pub sasl: Option<Arc<SaslConfig>>,
    /// Decides what each principal may do; without one, everything is allowed.
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// The client quotas, shared by every connection (and every listener).
    pub quotas: Arc<Quotas>,
    /// A connection with no traffic and nothing in flight for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Once this many response bytes wait to be written, the connection takes no more input.
    pub max_pending_output: usize,
    /// Once this many requests are in flight, the connection takes no more input.
    pub max_in_flight_requests: usize,
    /// Once the frames of the requests in flight add up to this many bytes, the connection
    /// takes no more input.
    pub max_in_flight_bytes: usize,
    /// A request whose commands have not completed after this long is answered with
    /// REQUEST_TIMED_OUT where the API has a code for it (a group coordinator's call with
    /// COORDINATOR_NOT_AVAILABLE, as Kafka's), or closes the connection.
    pub request_timeout: Duration,
    /// How many bytes the compressed batches of one produce request may inflate to.
    pub max_decompressed_bytes: usize,
    /// The gateway's broker id.
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub advertised_host: String,
    /// The port clients are told to connect to.
    pub advertised_port: i32,
    /// The cluster id Metadata and DescribeCluster report.
    pub cluster_id: String,
    /// Whether Metadata requests that allow it create missing topics.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics asking for the default.
    pub default_partitions: u32,
    /// The most partitions a topic may have.
    pub max_partitions: u32,
    /// `retention.bytes` of a topic that does not set it (Kafka's `log.retention.bytes`).
    pub default_retention_bytes: i64,
    /// The largest `retention.bytes` the backend can keep, if it has a limit.
    pub max_retention_bytes: Option<i64>,
    /// Whether the backend keeps transactions (markers, the last stable offset): when it
    /// does not, FindCoordinator and InitProducerId refuse transactional ids.
    pub transactions: bool,
    /// Ties the instants the core is given to the wall clock, for the few answers that
    /// carry a wall-clock time (a transaction's start in DescribeTransactions); without
    /// it those answer -1 (unknown).
    pub wall_clock: Option<WallClock>,
}

/// One reading of the wall clock and the instant it was taken at (the adapter takes it; the
/// core reads no clock). Wall-clock times are derived from instants through it, so they
/// follow the monotonic clock from that reading on and ignore later steps of the wall
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The instant of the reading.
    pub at: Instant,
    /// The wall clock then, in milliseconds since the Unix epoch.
    pub unix_ms: i64,
}

impl WallClock {
    /// Milliseconds since the Unix epoch at `t`.
    #[must_use]
    pub fn unix_ms_at(&self, t: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if t >= self.at {
            self.unix_ms.saturating_add(ms(t - self.at))
        } else {
            self.unix_ms.saturating_sub(ms(self.at - t))
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_unauthenticated_frame_size: DEFAULT_MAX_UNAUTHENTICATED_FRAME_SIZE,
            listener_name: "PLAINTEXT".into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            authorizer: None,
            quotas: Arc::default(),
            idle_timeout: Duration::from_secs(600),
            max_pending_output: 16 * 1024 * 1024,
            max_in_flight_requests: 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_decompressed_bytes: 512 * 1024 * 1024,
            node_id: 0,
            advertised_host: "localhost".into(),
            advertised_port: 9093,
            cluster_id: "iggy-kafka-gateway".into(),
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions: 10_000,
            default_retention_bytes: -1,
            max_retention_bytes: None,
            transactions: true,
            wall_clock: None,
        }
    }
}
