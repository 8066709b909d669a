//! `iggy-kafka-gateway`: Kafka clients in front, Apache Iggy behind.
//!
//! The runtime is chosen at build time: `tokio` (the default) or `smol`
//! (`--no-default-features --features smol`).

#[cfg(all(feature = "tokio", feature = "smol"))]
compile_error!("enable exactly one runtime feature: `tokio` or `smol`");
#[cfg(not(any(feature = "tokio", feature = "smol")))]
compile_error!("enable a runtime feature: `tokio` (default) or `smol`");

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use iggy_kafka_admin::view::Limits;
use iggy_kafka_admin::{Admin, Build};
use iggy_kafka_core::authz::{Authorizer, PermissionAuthorizer};
use iggy_kafka_core::backend::Backend;
use iggy_kafka_core::driver::Shared;
use iggy_kafka_core::group::{Coordinator, GroupConfig};
use iggy_kafka_core::stats::Registry;
use iggy_kafka_core::Config;
use iggy_kafka_embedded::{EmbeddedStore, StoreConfig};
use iggy_kafka_iggy::{IggyBackend, IggyConfig, TopicMapping};
use iggy_kafka_iggy_client::{Credentials, Lanes, MergeLimits, Nodes, SessionConfig};

mod checks;
mod config_file;
mod iggy_url;
mod users_file;

/// How often each connection reads its principal's permissions from Iggy again: with
/// the backend's own cache, a permission changed in Iggy takes effect within about this.
const PERMISSIONS_REFRESH: Duration = Duration::from_secs(5);
mod listeners;

/// The runtime this binary was built with.
const RUNTIME: &str = if cfg!(feature = "smol") {
    "smol"
} else {
    "tokio"
};

/// A Kafka wire-protocol gateway in front of Apache Iggy.
///
/// Kafka clients (librdkafka/kcat, the Java client, kafka-python, kafkajs, ...) connect to it
/// unchanged. Every option can also be set through the environment variable named beside it,
/// or in a TOML configuration file (--config) under its long name, e.g.
/// `iggy-connections = 8`; the command line wins over the environment, which wins over the
/// file (deploy/iggy-kafka-gateway.toml is a complete example).
///
/// Without --iggy the data lives in the embedded store: in this process's memory only.
/// NOTHING IS KEPT ACROSS RESTARTS, and each partition keeps at most --retention-bytes.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
struct Args {
    /// A TOML configuration file: options under their long names. The command line and the
    /// environment take precedence over it.
    #[arg(long, env = "IGGY_KAFKA_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,

    /// Print the effective configuration (command line, environment, file and defaults
    /// merged) as a configuration file, credentials hidden, and exit.
    #[arg(long)]
    print_config: bool,

    /// Address to listen on for Kafka clients: one PLAINTEXT listener. --listeners names
    /// several instead.
    #[arg(
        long,
        env = "IGGY_KAFKA_LISTEN",
        default_value = "0.0.0.0:9093",
        value_name = "HOST:PORT"
    )]
    listen: String,

    /// Address clients are told to connect to (Kafka's advertised.listeners; its
    /// NAME://HOST:PORT form is taken too). Defaults to the listen address, or to this
    /// machine's host name when listening on a wildcard address.
    #[arg(long, env = "IGGY_KAFKA_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,

    /// Kafka listeners, instead of --listen: NAME://HOST:PORT,... (Kafka's listeners; an
    /// empty HOST binds every interface). Each name gets its security protocol from
    /// --listener-security-protocol-map.
    #[arg(long, env = "IGGY_KAFKA_LISTENERS", value_name = "LIST")]
    listeners: Option<String>,

    /// The address clients are told for each listener: NAME://HOST:PORT,... (Kafka's
    /// advertised.listeners). A listener not named here advertises its bound address, or
    /// this machine's host name for a wildcard address.
    #[arg(long, env = "IGGY_KAFKA_ADVERTISED_LISTENERS", value_name = "LIST")]
    advertised_listeners: Option<String>,

    /// Each listener's security protocol: NAME:PROTOCOL,... with PROTOCOL one of PLAINTEXT,
    /// SSL, SASL_PLAINTEXT, SASL_SSL (Kafka's listener.security.protocol.map). A listener
    /// named after a protocol has that protocol unless mapped otherwise.
    #[arg(
        long,
        env = "IGGY_KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        value_name = "LIST"
    )]
    listener_security_protocol_map: Option<String>,

    /// The TLS certificate chain of SSL and SASL_SSL listeners, PEM, the gateway's own
    /// certificate first. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "IGGY_KAFKA_SSL_CERTIFICATE", value_name = "PATH")]
    ssl_certificate: Option<std::path::PathBuf>,

    /// The private key of --ssl-certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "IGGY_KAFKA_SSL_KEY", value_name = "PATH")]
    ssl_key: Option<std::path::PathBuf>,

    /// Whether TLS clients must present a certificate (Kafka's ssl.client.auth): none,
    /// requested (checked when sent) or required. Its subject's CN is the client's principal.
    #[arg(
        long,
        env = "IGGY_KAFKA_SSL_CLIENT_AUTH",
        default_value = "none",
        value_parser = ["none", "requested", "required"],
        value_name = "POLICY"
    )]
    ssl_client_auth: String,

    /// The CA certificates, PEM, that client certificates must be signed by; needed when
    /// --ssl-client-auth is not none.
    #[arg(long, env = "IGGY_KAFKA_SSL_CA", value_name = "PATH")]
    ssl_ca: Option<std::path::PathBuf>,

    /// The cipher suites SSL and SASL_SSL listeners offer, comma-separated IANA names in
    /// the order the gateway prefers them, which decides over the client's (Kafka's
    /// ssl.cipher.suites). By default every suite rustls offers, AES-128-GCM first.
    #[arg(
        long,
        env = "IGGY_KAFKA_SSL_CIPHER_SUITES",
        value_delimiter = ',',
        value_name = "SUITES"
    )]
    ssl_cipher_suites: Vec<String>,

    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes).
    #[arg(long, env = "IGGY_KAFKA_MAX_FRAME_SIZE", default_value_t = iggy_kafka_core::protocol::frame::DEFAULT_MAX_FRAME_SIZE, value_name = "BYTES")]
    max_frame_size: usize,

    /// Close connections idle for this long, in milliseconds (Kafka's connections.max.idle.ms).
    #[arg(
        long,
        env = "IGGY_KAFKA_IDLE_TIMEOUT_MS",
        default_value_t = 600_000,
        value_name = "MS"
    )]
    idle_timeout_ms: u64,

    /// Iggy server to keep the data in, as iggy://USER:PASSWORD@HOST:PORT. Without it the
    /// embedded in-memory store is used.
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY",
        value_name = "URL",
        hide_env_values = true
    )]
    iggy: Option<String>,

    /// Connections to the Iggy server. A partition's appends go down one at a time, in order,
    /// on the one Iggy answers that partition fastest on (timed when it is first used); more
    /// connections let more partitions move at once.
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_CONNECTIONS",
        default_value_t = 4,
        value_name = "N"
    )]
    iggy_connections: usize,

    /// Plain appends to one partition that queue behind the one in flight go to Iggy as one
    /// request of at most N appends and `--iggy-merge-max-bytes` (group commit: a partition's throughput grows
    /// with its queue instead of its latency); 1 sends every append on its own.
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_MERGE_APPENDS",
        default_value_t = 128,
        value_name = "N"
    )]
    iggy_merge_appends: usize,

    /// The most bytes one merged request to Iggy may carry (group commit); an append larger
    /// than that alone is sent alone. From one small message's request to what Iggy takes
    /// in one frame (64 MiB less its header).
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_MERGE_MAX_BYTES",
        default_value_t = 1 << 20,
        value_name = "BYTES"
    )]
    iggy_merge_max_bytes: usize,

    /// The longest a waiting fetch goes without asking Iggy for new data (Iggy cannot notify;
    /// appends made through this gateway wake fetches at once).
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_POLL_INTERVAL_MS",
        default_value_t = 100,
        value_name = "MS"
    )]
    iggy_poll_interval_ms: u64,

    /// Create the --stream (and the streams --map-topics and --map-streams name) in Iggy
    /// when missing.
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_CREATE_STREAM",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    iggy_create_stream: bool,

    /// Create Iggy topics that write each append out before acknowledging it, so that a
    /// crash of the Iggy server loses nothing acknowledged (Iggy's own default holds up to
    /// 1,024 acknowledged messages in memory). false: Iggy's default.
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_WRITE_THROUGH",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    iggy_write_through: bool,

    /// Compact the stream's SCRAM credentials topic into generations once it holds more
    /// than 256 records and twice the credentials; any number of the stream's gateways may,
    /// at once. false: this gateway does not compact it (it still follows the generations
    /// others make, and at start deletes those they compacted away). Upgrading from an
    /// older build: set it false on that build's compacting gateway before upgrading any
    /// gateway, upgrade them all, then turn it on. Older builds do not read the generations
    /// this build compacts into: a rollback after a compaction starts without the
    /// credentials set through Kafka (docs/SECURITY.md).
    #[arg(
        long,
        env = "IGGY_KAFKA_IGGY_SCRAM_COMPACTION",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    iggy_scram_compaction: bool,

    /// Iggy stream that holds one Iggy topic per Kafka topic.
    #[arg(
        long,
        env = "IGGY_KAFKA_STREAM",
        default_value = "kafka",
        value_name = "NAME"
    )]
    stream: String,

    /// Kafka topics kept in Iggy streams and topics of other names: a comma-separated list
    /// of KAFKA_TOPIC=STREAM/TOPIC entries (docs/MAPPING.md). Iggy backend only.
    #[arg(long, env = "IGGY_KAFKA_MAP_TOPICS", value_name = "LIST")]
    map_topics: Option<String>,

    /// Iggy streams whose topics Kafka clients see as STREAM.TOPIC: a comma-separated list
    /// (docs/MAPPING.md). Iggy backend only.
    #[arg(long, env = "IGGY_KAFKA_MAP_STREAMS", value_name = "LIST")]
    map_streams: Option<String>,

    /// Create a topic when a client's Metadata request names a missing one and allows it
    /// (Kafka's auto.create.topics.enable).
    #[arg(
        long,
        env = "IGGY_KAFKA_AUTO_CREATE_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    auto_create_topics: bool,

    /// Partitions of an auto-created topic, and of a created topic that asks for the default
    /// (Kafka's num.partitions).
    #[arg(
        long,
        env = "IGGY_KAFKA_DEFAULT_PARTITIONS",
        default_value_t = 1,
        value_name = "N"
    )]
    default_partitions: u32,

    /// Embedded store only: the most bytes each partition keeps; the oldest messages are
    /// dropped beyond it and the log start offset advances.
    #[arg(long, env = "IGGY_KAFKA_RETENTION_BYTES", default_value_t = 1 << 30, value_name = "BYTES")]
    retention_bytes: u64,

    /// Requests one connection may have in flight before the gateway stops reading from it.
    #[arg(
        long,
        env = "IGGY_KAFKA_MAX_IN_FLIGHT",
        default_value_t = 1024,
        value_name = "N"
    )]
    max_in_flight_requests: usize,

    /// A request whose backend work takes longer than this, in milliseconds, is answered
    /// with REQUEST_TIMED_OUT (a group coordinator's call with COORDINATOR_NOT_AVAILABLE, or
    /// its connection closed where the API has no such code).
    #[arg(
        long,
        env = "IGGY_KAFKA_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        value_name = "MS"
    )]
    request_timeout_ms: u64,

    /// How long, in milliseconds, the first rebalance of a new consumer group waits for
    /// more members before it completes (Kafka's `group.initial.rebalance.delay.ms`).
    #[arg(
        long,
        env = "IGGY_KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000,
        value_name = "MS"
    )]
    group_initial_rebalance_delay_ms: u64,

    /// Shortest session timeout, in milliseconds, a group member may ask for (Kafka's
    /// `group.min.session.timeout.ms`); shorter ones get INVALID_SESSION_TIMEOUT.
    #[arg(
        long,
        env = "IGGY_KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000,
        value_name = "MS"
    )]
    group_min_session_timeout_ms: u64,

    /// Longest session timeout, in milliseconds, a group member may ask for (Kafka's
    /// `group.max.session.timeout.ms`).
    #[arg(
        long,
        env = "IGGY_KAFKA_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000,
        value_name = "MS"
    )]
    group_max_session_timeout_ms: u64,

    /// Session timeout, in milliseconds, of consumer group members that use the consumer
    /// protocol (`group.protocol=consumer`; Kafka's `group.consumer.session.timeout.ms`).
    #[arg(
        long,
        env = "IGGY_KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000,
        value_name = "MS"
    )]
    group_consumer_session_timeout_ms: u64,

    /// How often, in milliseconds, members that use the consumer protocol heartbeat
    /// (Kafka's `group.consumer.heartbeat.interval.ms`).
    #[arg(
        long,
        env = "IGGY_KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000,
        value_name = "MS"
    )]
    group_consumer_heartbeat_interval_ms: u64,

    /// Address of the admin HTTP listener (Prometheus /metrics, /health, /ready, and a
    /// status page at /), or `off`. On the loopback interface by default: listen on another
    /// address to let a scraper on another machine in.
    #[arg(
        long,
        env = "IGGY_KAFKA_ADMIN_LISTEN",
        default_value = "127.0.0.1:9464",
        value_name = "HOST:PORT|off"
    )]
    admin_listen: String,

    /// Topics with labels of their own in the per-topic metrics, and topics on the status
    /// page; the others' figures are summed under topic="_other".
    #[arg(
        long,
        env = "IGGY_KAFKA_ADMIN_MAX_TOPICS",
        default_value_t = 200,
        value_name = "N"
    )]
    admin_max_topics: usize,

    /// Consumer groups whose lag the metrics and the status page show.
    #[arg(
        long,
        env = "IGGY_KAFKA_ADMIN_MAX_GROUPS",
        default_value_t = 100,
        value_name = "N"
    )]
    admin_max_groups: usize,

    /// Partitions whose lag (every group's together) and bounds the admin endpoints read
    /// from the backend per refresh.
    #[arg(
        long,
        env = "IGGY_KAFKA_ADMIN_MAX_PARTITIONS",
        default_value_t = 2_000,
        value_name = "N"
    )]
    admin_max_partitions: usize,

    /// Cluster id reported to clients.
    #[arg(
        long,
        env = "IGGY_KAFKA_CLUSTER_ID",
        default_value = "iggy-kafka-gateway",
        value_name = "ID"
    )]
    cluster_id: String,

    /// Log filter: a level (error, warn, info, debug, trace, off), or comma-separated
    /// TARGET=LEVEL directives such as `info,iggy_kafka_core=debug`. RUST_LOG, when set,
    /// takes precedence.
    #[arg(
        long,
        env = "IGGY_KAFKA_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,

    /// Log format: `text` (for a person) or `json` (one object per line, for a collector).
    #[arg(
        long,
        env = "IGGY_KAFKA_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"],
        value_name = "FORMAT"
    )]
    log_format: String,

    #[command(flatten)]
    sasl: users_file::SaslArgs,

    #[command(subcommand)]
    command: Option<Subcommand>,
}

/// What the binary can do besides serving.
#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Read a password from standard input and print a SCRAM credential for it (salt,
    /// iterations, StoredKey, ServerKey; never the password) as a `[[user]]` table for the
    /// --sasl-users file.
    ScramCredential(users_file::CredentialArgs),
}

/// Parses the command line and the environment, then the configuration file they name (if
/// any) for what they left at its default. Exits with a message on an error.
fn parse_args() -> (Args, clap::ArgMatches) {
    use clap::{CommandFactory, FromArgMatches};
    let command = Args::command();
    let first = command.clone().get_matches();
    let matches = match first.get_one::<std::path::PathBuf>(config_file::CONFIG) {
        None => first,
        Some(path) => {
            let argv =
                match config_file::merge(&command, &first, path, std::env::args_os().collect()) {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("error: {e}");
                        std::process::exit(2);
                    }
                };
            match command.clone().try_get_matches_from(argv) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!(
                        "error: the configuration file {}: {}",
                        path.display(),
                        e.kind()
                    );
                    eprint!("{}", e.render());
                    std::process::exit(2);
                }
            }
        }
    };
    match Args::from_arg_matches(&matches) {
        Ok(args) => (args, matches),
        Err(e) => e.exit(),
    }
}

/// Where clients are told to connect: `advertised` when given, else the bound address,
/// with this machine's host name for a wildcard address (never 0.0.0.0).
fn advertised(
    bound: SocketAddr,
    advertised: Option<&(String, u16)>,
) -> Result<(String, u16), String> {
    if let Some(a) = advertised {
        return Ok(a.clone());
    }
    if bound.ip().is_unspecified() {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        if host.is_empty() {
            return Err("cannot find this machine's host name; set --advertised-listener".into());
        }
        return Ok((host, bound.port()));
    }
    Ok((bound.ip().to_string(), bound.port()))
}

/// Each listener's TLS, in `plans`' order: one configuration, loaded now, shared by every
/// SSL and SASL_SSL listener; none for the others.
///
/// # Errors
/// When a TLS listener lacks a certificate or key, client authentication lacks a CA, or
/// the files do not load.
fn tls_for(
    args: &Args,
    plans: &[listeners::ListenerPlan],
) -> Result<Vec<Option<Arc<iggy_kafka_tls::ServerTls>>>, String> {
    let client_auth =
        iggy_kafka_tls::ClientAuth::from_name(&args.ssl_client_auth).ok_or_else(|| {
            format!(
                "--ssl-client-auth: {:?} is not none, requested or required",
                args.ssl_client_auth
            )
        })?;
    let Some(first) = plans.iter().find(|p| p.protocol.uses_tls()) else {
        if args.ssl_certificate.is_some() || args.ssl_key.is_some() {
            tracing::warn!(
                "--ssl-certificate and --ssl-key are unused: no listener is SSL or SASL_SSL"
            );
        }
        return Ok(vec![None; plans.len()]);
    };
    let (Some(certificate), Some(key)) = (&args.ssl_certificate, &args.ssl_key) else {
        let missing = if args.ssl_certificate.is_none() {
            "ssl-certificate"
        } else {
            "ssl-key"
        };
        return Err(format!(
            "--{missing}: listener {} is {}, which needs a certificate and its key",
            first.name, first.protocol
        ));
    };
    if client_auth != iggy_kafka_tls::ClientAuth::None && args.ssl_ca.is_none() {
        return Err(format!(
            "--ssl-ca: --ssl-client-auth {} needs the CA that signs client certificates",
            client_auth.name()
        ));
    }
    iggy_kafka_tls::cipher_suites_provider(&args.ssl_cipher_suites)
        .map_err(|e| format!("--ssl-cipher-suites: {e}"))?;
    let files = iggy_kafka_tls::TlsFiles {
        certificate: certificate.clone(),
        key: key.clone(),
        ca: args.ssl_ca.clone(),
        client_auth,
        cipher_suites: args.ssl_cipher_suites.clone(),
    };
    let tls = iggy_kafka_tls::ServerTls::load(files.clone()).map_err(|e| {
        // The option whose file is at fault; the certificate's when it is the pair.
        let path = match &e {
            iggy_kafka_tls::TlsError::Read { path, .. }
            | iggy_kafka_tls::TlsError::Pem { path, .. } => Some(std::path::Path::new(path)),
            _ => None,
        };
        let option = if path == Some(files.key.as_path()) {
            "ssl-key"
        } else if path.is_some() && path == files.ca.as_deref() {
            "ssl-ca"
        } else {
            "ssl-certificate"
        };
        format!("--{option}: {e}")
    })?;
    let tls = Arc::new(tls);
    Ok(plans
        .iter()
        .map(|p| p.protocol.uses_tls().then(|| Arc::clone(&tls)))
        .collect())
}

/// The admin listener's address, or none for `off`.
fn admin_address(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match value.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(Some(addr)),
        Ok(None) => Err(format!("--admin-listen {value:?} resolves to no address")),
        Err(e) => Err(format!(
            "--admin-listen {value:?} is not HOST:PORT or off: {e}"
        )),
    }
}

/// Which backend to start once the runtime runs.
enum Plan {
    Embedded(EmbeddedStore),
    Iggy {
        lanes: Arc<Lanes>,
        session: SessionConfig,
        config: Box<IggyConfig>,
        /// The SASL users, to take the SCRAM credentials kept in Iggy.
        users: Option<Arc<iggy_kafka_core::sasl::Users>>,
    },
}

/// Builds what the connections share, inside the runtime: the embedded store, or the
/// Iggy backend on lanes that `spawn_lanes` connects (the runtime's own tasks and clock).
async fn start(
    plan: Plan,
    mut coordinator: Coordinator,
    spawn_lanes: impl FnOnce(&Arc<Lanes>, &SessionConfig),
    clock: Arc<dyn iggy_kafka_iggy_client::Clock>,
) -> std::io::Result<Arc<Shared>> {
    let mut transactions = Vec::new();
    let mut open_for = Vec::new();
    let mut follow = None;
    let backend: Arc<dyn Backend> = match plan {
        Plan::Embedded(store) => Arc::new(store),
        Plan::Iggy {
            lanes,
            session,
            config,
            users,
        } => {
            spawn_lanes(&lanes, &session);
            let backend = connect_iggy(lanes, Arc::clone(&clock), *config).await?;
            // The transaction coordinator's state kept in Iggy: prepared commits and aborts
            // complete, open transactions are aborted once the rest of their timeout
            // passes.
            transactions = backend.transaction_state();
            open_for = backend.transactions_open_for();
            // Kept in Iggy by AlterUserScramCredentials: later than the users file, so
            // they win where both give a user's credential for one mechanism, deletions
            // included.
            if let Some(users) = users {
                backend.pin_scram_deletions(users.names().into_iter().flat_map(|user| {
                    users
                        .describe(&user)
                        .into_iter()
                        .map(move |c| (user.clone(), c.mechanism))
                        .collect::<Vec<_>>()
                }));
                for change in backend.scram_credentials() {
                    change.apply(&users);
                }
                // And then followed: another gateway's changes take effect here too.
                follow = Some(users);
            }
            // The groups as the offsets log kept them: members that heartbeat on stay in
            // their generation; the others' sessions run from now.
            let kept = backend.kept_groups();
            if !kept.is_empty() {
                let restored = coordinator.restore(std::time::Instant::now(), kept);
                tracing::info!(groups = restored, "group state restored from Iggy");
            }
            Arc::new(backend)
        }
    };
    let mut shared = Shared::new(backend, coordinator);
    if let Some(users) = follow {
        shared = shared.with_scram_users(users);
    }
    if !transactions.is_empty() {
        tracing::info!(
            transactional_ids = transactions.len(),
            "transaction coordinator restored"
        );
        let now = clock.now();
        // An open transaction the log says opened a while ago is restored as opened then,
        // so its timeout runs from then.
        let (earlier, rest): (Vec<_>, Vec<_>) = transactions
            .into_iter()
            .map(|s| {
                let age = open_for
                    .iter()
                    .find(|(id, _)| *id == s.transactional_id)
                    .map(|(_, age)| {
                        let timeout = u64::try_from(s.timeout_ms).unwrap_or(0);
                        (*age).min(std::time::Duration::from_millis(timeout))
                    });
                (age.and_then(|a| now.checked_sub(a)), s)
            })
            .partition(|(since, _)| since.is_some());
        shared
            .txns()
            .restore(now, rest.into_iter().map(|(_, s)| s).collect());
        for (since, s) in earlier {
            shared.txns().restore(since.unwrap_or(now), vec![s]);
        }
    }
    Ok(Arc::new(shared))
}

/// Opens the Iggy backend, retrying while the server cannot be reached, so that a gateway
/// started before its server waits for it; a refusal (bad credentials, say) ends start-up.
async fn connect_iggy(
    lanes: Arc<Lanes>,
    clock: Arc<dyn iggy_kafka_iggy_client::Clock>,
    config: IggyConfig,
) -> std::io::Result<IggyBackend> {
    let mut pause = Duration::from_millis(200);
    loop {
        match IggyBackend::connect(Arc::clone(&lanes), Arc::clone(&clock), config.clone()).await {
            Ok(b) => return Ok(b),
            Err(e) if e.is_refused() => {
                return Err(std::io::Error::other(format!("Iggy: {e}")));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Iggy is not ready; retrying");
                clock.sleep_until(clock.now() + pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// mimalloc keeps freed memory for reuse: with the system allocator, each large request
/// buffer freed went back to the kernel and the next one was faulted in page by page, a
/// fifth of the gateway's CPU producing 1 KiB records into Iggy. It is built without
/// transparent huge pages (`no_thp`): zeroing a fresh 2 MiB page on first touch put a
/// millisecond tail on produce latency (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (args, matches) = parse_args();
    if let Some(Subcommand::ScramCredential(c)) = &args.command {
        return match users_file::print_credential(c) {
            Ok(text) => match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            },
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.print_config {
        use clap::CommandFactory;
        let text = config_file::print(&Args::command(), &matches);
        return match std::io::stdout().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => match checks::log_filter(&args.log) {
            Ok(f) => f,
            Err(e) => {
                // Logging is not set up yet; a stderr that cannot be written must not panic.
                let _ = writeln!(std::io::stderr(), "error: --log: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A stderr that is full or gone must not take the gateway down: the formatter's own
        // report of a failed write would panic writing to that same stderr.
        .log_internal_errors(false);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }

    if let Err(e) = checks::check(&args) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    {
        use clap::CommandFactory;
        // One line an operator can find: what runs, and with what (credentials redacted).
        let configuration: Vec<String> = config_file::print(&Args::command(), &matches)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            runtime = RUNTIME,
            backend = if args.iggy.is_some() { "iggy" } else { "embedded" },
            configuration = %configuration.join("; "),
            "starting"
        );
    }
    // Checked before binding so that a typo fails fast.
    let plans = match listeners::plan(&listeners::ListenerOptions {
        listen: &args.listen,
        listen_given: !matches!(
            matches.value_source("listen"),
            Some(clap::parser::ValueSource::DefaultValue) | None
        ),
        advertised_listener: args.advertised_listener.as_deref(),
        listeners: args.listeners.as_deref(),
        advertised_listeners: args.advertised_listeners.as_deref(),
        protocol_map: args.listener_security_protocol_map.as_deref(),
    }) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // A SASL listener without users would authenticate no one; on the Iggy backend,
    // Iggy's users are there to check PLAIN passwords against.
    if let Some(p) = plans.iter().find(|p| p.protocol.uses_sasl()) {
        if args.sasl.users_file.is_none() && args.iggy.is_none() {
            tracing::error!(
                "--users-file: listener {} is {}, and SASL needs the users it authenticates \
                 (a users file, or Iggy's users on the Iggy backend)",
                p.name,
                p.protocol
            );
            return ExitCode::FAILURE;
        }
    }
    let tls = match tls_for(&args, &plans) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for plan in &plans {
        if let Err(e) = advertised(plan.bind, plan.advertised.as_ref()) {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let users = match users_file::load(&args.sasl, args.iggy.is_some()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_listen = match admin_address(&args.admin_listen) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let iggy = match args.iggy.as_deref().map(iggy_url::parse).transpose() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(url), Some(sasl)) = (&iggy, &users.sasl) {
        let remote = url.in_the_clear();
        if sasl.plain_by_backend
            && sasl
                .mechanisms
                .contains(&iggy_kafka_core::sasl::Mechanism::Plain)
            && !remote.is_empty()
        {
            tracing::warn!(
                servers = %remote.join(","),
                "PLAIN passwords are checked by logging in to Iggy without TLS: they cross \
                 the network in the clear (add tls=true to --iggy)"
            );
        }
    }
    let mapping = match TopicMapping::parse(
        &args.stream,
        args.map_topics.as_deref().unwrap_or_default(),
        args.map_streams.as_deref().unwrap_or_default(),
    ) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if iggy.is_none() && !mapping.is_identity() {
        tracing::error!(
            "--map-topics and --map-streams place Kafka topics in Iggy streams: they need the \
             Iggy backend (--iggy)"
        );
        return ExitCode::FAILURE;
    }
    if args.sasl.authorization == "iggy" && iggy.is_none() {
        tracing::error!(
            "--authorization iggy: the permissions are Iggy's users', which need the Iggy \
             backend (--iggy)"
        );
        return ExitCode::FAILURE;
    }
    // Permissions are about Iggy's streams and topics: where each Kafka topic lives.
    let locate = {
        let (stream, places) = (args.stream.clone(), mapping.clone());
        move |topic: &str| places.place(&stream, topic)
    };
    let authorizer = if args.sasl.authorization == "iggy" {
        Some(
            PermissionAuthorizer::new(users.super_users.clone(), locate)
                .from_backend(PERMISSIONS_REFRESH),
        )
    } else {
        users.permissions.map(|mut permissions| {
            let mut authorizer = PermissionAuthorizer::new(users.super_users.clone(), locate);
            // Kafka's name for a client that did not authenticate.
            if let Some(anonymous) = permissions.remove("ANONYMOUS") {
                authorizer = authorizer.with_anonymous(anonymous);
            }
            for (user, p) in permissions {
                authorizer.set(&user, p);
            }
            authorizer
        })
    };
    if args.default_partitions == 0 {
        tracing::error!("--default-partitions must be at least 1");
        return ExitCode::FAILURE;
    }
    if args.iggy_merge_appends == 0 {
        tracing::error!("--iggy-merge-appends must be at least 1 (1: every append on its own)");
        return ExitCode::FAILURE;
    }
    let retention = i64::try_from(args.retention_bytes).unwrap_or(i64::MAX);
    let mut groups = GroupConfig::default();
    groups.initial_rebalance_delay = Duration::from_millis(args.group_initial_rebalance_delay_ms);
    groups.min_session_timeout = Duration::from_millis(args.group_min_session_timeout_ms);
    groups.max_session_timeout = Duration::from_millis(args.group_max_session_timeout_ms);
    groups.consumer_session_timeout = Duration::from_millis(args.group_consumer_session_timeout_ms);
    groups.consumer_heartbeat_interval =
        Duration::from_millis(args.group_consumer_heartbeat_interval_ms);
    // Iggy keeps the groups' state in the committed-offsets log; the embedded store keeps
    // nothing across restarts.
    groups.keep_state = iggy.is_some();
    // Member ids must not repeat across restarts: seed them from the process's randomness.
    let seed =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
    let coordinator = Coordinator::new(groups, seed);
    let backend_name = if iggy.is_some() {
        "iggy"
    } else {
        "embedded (in memory, nothing kept across restarts)"
    };
    let plan = match iggy {
        None => Plan::Embedded(EmbeddedStore::new({
            let mut c = StoreConfig::default();
            c.max_partition_bytes = args.retention_bytes;
            c
        })),
        Some(url) => {
            tracing::info!(server = %url.addresses.join(","), "using the Iggy backend");
            let mut config = IggyConfig::default();
            config.stream = args.stream.clone();
            config.mapping = mapping;
            config.create_stream = args.iggy_create_stream;
            config.write_through = args.iggy_write_through;
            config.scram_compaction = args.iggy_scram_compaction;
            config.poll_interval = Duration::from_millis(args.iggy_poll_interval_ms.max(1));
            config.seed = seed;
            // The SCRAM credentials kept in Iggy are sealed under a key from this secret.
            config.credential_secret = match &url.credentials {
                Credentials::User { password, .. } => password.clone(),
                Credentials::Token(token) => token.clone(),
            };
            let mut lanes = Lanes::new(args.iggy_connections.max(1), Nodes::new(url.addresses))
                .with_merge(MergeLimits {
                    max_calls: args.iggy_merge_appends,
                    max_bytes: args.iggy_merge_max_bytes,
                });
            if let Some(tls) = &url.tls {
                // Each option's error names it: the CA file's, or the system's roots' (tls).
                let loaded = iggy_kafka_tls::ClientTls::new(tls.ca_file.as_deref()).map_err(|e| {
                    let option = if tls.ca_file.is_some() {
                        "tls_ca_file"
                    } else {
                        "tls"
                    };
                    format!("--iggy option {option}: {e}")
                });
                let named = loaded.and_then(|t| match &tls.domain {
                    Some(d) => t
                        .with_domain(d)
                        .map_err(|e| format!("--iggy option tls_domain: {e}")),
                    None => Ok(t),
                });
                match named {
                    Ok(t) => lanes = lanes.with_tls(t),
                    Err(e) => {
                        tracing::error!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            Plan::Iggy {
                lanes: Arc::new(lanes),
                session: SessionConfig {
                    credentials: url.credentials,
                    // A new client to the server's deduplication each run.
                    client_id: (u128::from(seed) << 64) | u128::from(seed.rotate_left(17) | 1),
                    reply_timeout: Duration::from_secs(30),
                    max_reply_bytes: 256 << 20,
                },
                config: Box::new(config),
                users: users.sasl.as_ref().map(|s| Arc::clone(&s.users)),
            }
        }
    };
    let mut config = Config::default();
    config.max_frame_size = args.max_frame_size;
    config.idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    config.max_in_flight_requests = args.max_in_flight_requests.max(1);
    config.request_timeout = Duration::from_millis(args.request_timeout_ms);
    config.auto_create_topics = args.auto_create_topics;
    config.default_partitions = args.default_partitions;
    config.cluster_id = args.cluster_id.clone();
    config.wall_clock = Some(iggy_kafka_core::WallClock {
        at: std::time::Instant::now(),
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    });
    // Every listener shares the users: SASL listeners authenticate against them, and
    // credentials may be managed from any listener by an authenticated super user.
    config.sasl = users.sasl;
    config.authorizer = authorizer.map(|a| Arc::new(a) as Arc<dyn Authorizer>);
    if matches!(plan, Plan::Embedded(_)) {
        // The embedded store's per-partition cap is every topic's default and ceiling;
        // Iggy's topics have no size limit unless one is set.
        config.default_retention_bytes = retention;
        config.max_retention_bytes = Some(retention);
    }

    let registry = Arc::new(Registry::new());
    let admin = admin_listen.map(|addr| {
        let build = Build {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime: RUNTIME.to_owned(),
            backend: if matches!(plan, Plan::Embedded(_)) {
                "embedded"
            } else {
                "iggy"
            }
            .to_owned(),
        };
        let limits = Limits {
            topics: args.admin_max_topics,
            groups: args.admin_max_groups,
            partitions: args.admin_max_partitions,
        };
        (
            addr,
            Arc::new(Admin::new(build, limits, Arc::clone(&registry))),
        )
    });

    let stream = args.stream.clone();
    let bind: Vec<SocketAddr> = plans.iter().map(|p| p.bind).collect();
    let on_bound = move |bound: &[SocketAddr]| {
        plans
            .iter()
            .zip(bound)
            .map(|(plan, &bound)| {
                let mut config = config.clone();
                config.listener_name.clone_from(&plan.name);
                config.security_protocol = plan.protocol;
                // Checked above; the port may only be known now (`--listen HOST:0`).
                if let Ok((host, port)) = advertised(bound, plan.advertised.as_ref()) {
                    tracing::info!(runtime = RUNTIME, listener = %plan.name, protocol = %plan.protocol, %bound, advertised = %format!("{host}:{port}"), backend = backend_name, %stream, "listening");
                    config.advertised_host = host;
                    config.advertised_port = i32::from(port);
                }
                Arc::new(config)
            })
            .collect()
    };

    #[cfg(feature = "tokio")]
    let result = iggy_kafka_tokio::run(
        bind.iter()
            .zip(&tls)
            .map(|(&address, tls)| iggy_kafka_tokio::Listener {
                address,
                tls: tls.clone(),
            })
            .collect(),
        admin,
        registry,
        move || {
            start(
                plan,
                coordinator,
                iggy_kafka_tokio::spawn_iggy_lanes,
                Arc::new(iggy_kafka_tokio::TokioRuntime),
            )
        },
        on_bound,
    );
    #[cfg(feature = "smol")]
    let result = iggy_kafka_smol::run(
        bind.iter()
            .zip(&tls)
            .map(|(&address, tls)| iggy_kafka_smol::Listener {
                address,
                tls: tls.clone(),
            })
            .collect(),
        admin,
        registry,
        move |ex| {
            start(
                plan,
                coordinator,
                move |lanes: &Arc<Lanes>, session: &SessionConfig| {
                    iggy_kafka_smol::spawn_iggy_lanes(&ex, lanes, session);
                },
                Arc::new(iggy_kafka_smol::SmolRuntime),
            )
        },
        on_bound,
    );

    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn advertises_a_host_name_for_wildcards_and_the_given_listener_otherwise() {
        let wildcard = "0.0.0.0:9093".parse().unwrap_or_else(|e| panic!("{e}"));
        let (host, port) = advertised(wildcard, None).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(host, "0.0.0.0");
        assert_eq!(port, 9093);
        let local = "127.0.0.1:1234".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(advertised(local, None), Ok(("127.0.0.1".into(), 1234)));
        let given = ("kafka.example".to_owned(), 19092);
        assert_eq!(advertised(local, Some(&given)), Ok(given.clone()));
    }
}
