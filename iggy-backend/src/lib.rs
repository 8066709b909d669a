//! The Iggy backend: every record, topic and committed offset lives in a real Iggy server.
//!
//! Each backend command becomes one or a few requests of Iggy's binary protocol, queued on
//! the lanes of a connection pool that a runtime drives (`iggy_kafka_iggy_client`). A Kafka
//! topic is the Iggy topic of the same name in the configured stream, unless the topic
//! mapping ([`TopicMapping`]) places it elsewhere; partition p is partition p, offsets are Iggy's; records are Iggy messages as `docs/MAPPING.md` says, and
//! `docs/IGGY.md` explains the backend's design.
//!
//! The backend is built in layers, each importing only those below it:
//!
//! | module | concern |
//! |---|---|
//! | [`calls`] | calls on the pool's lanes, and which lane serves each partition ([`placement`]) |
//! | [`partition`] | what the gateway knows of one partition, field by field for the layers above |
//! | [`mapping`] | where each Kafka topic lives: which stream, which Iggy topic |
//! | [`catalog`] | the topic catalog and partition bounds, kept in step with Iggy |
//! | [`read`] | reads, with polls sent ahead of sequential readers |
//! | [`search`] | searches by time ([`timestamps`]) |
//! | [`append`] | appends, with the idempotence Iggy does not provide |
//! | [`admin`] | the streams, and topic administration |
//! | [`watch`] | the long polls of waiting fetches |
//! | [`committed`] | committed offsets, in a gateway-owned log ([`offsets_log`]) |
//! | [`users`] | users' permissions, with streams and topics by name |
//!
//! [`wire`] holds the encodings of Iggy's messages and options. This file keeps the
//! configuration and hands each [`Command`] to the layer that runs it.

use std::sync::Arc;
use std::time::Duration;

use iggy_kafka_core::backend::{
    Backend, BackendError, Command, Completion, Execution, PartitionOffsets, ReadResult, TopicRef,
};
use iggy_kafka_core::stats::{Metric, MetricKind, MetricValue};
use iggy_kafka_iggy_client::lane::SERVICE_BOUNDS;
use iggy_kafka_iggy_client::{Clock, CommandStats, Lanes, SessionError};

mod admin;
mod append;
mod calls;
mod catalog;
mod committed;
mod error;
mod mapping;
mod offsets_log;
mod partition;
mod placement;
mod read;
mod scram;
mod search;
mod sync;
mod timestamps;
mod transactions;
mod txn_log;
mod users;
mod watch;
mod wire;

pub use error::ConnectError;
pub use mapping::{MappingError, TopicMapping};

use append::Appends;
use calls::Calls;
use catalog::Catalog;
use committed::CommittedOffsets;
use read::Reads;
use users::Users;
use watch::Watches;

/// How the Iggy backend behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IggyConfig {
    /// The Iggy stream that holds the Kafka topics the mapping does not place elsewhere,
    /// and the offsets log.
    pub stream: String,
    /// Where Kafka topics live beyond `stream` (see [`TopicMapping`]).
    pub mapping: TopicMapping,
    /// Create the streams when they are missing.
    pub create_stream: bool,
    /// Create topics (the Kafka clients' and the offsets topic) that Iggy writes out before
    /// acknowledging each append, rather than with Iggy's default, which holds up to 1,024
    /// acknowledged messages in memory.
    pub write_through: bool,
    /// The longest a waiting fetch goes without asking Iggy for new data.
    pub poll_interval: Duration,
    /// Kafka's `max.message.bytes` for every topic (Iggy has no per-topic equivalent).
    pub max_message_bytes: usize,
    /// Randomness for producer and message ids, so they do not repeat across restarts.
    pub seed: u64,
    /// The secret of the gateway's own Iggy credentials (the password, or the personal
    /// access token): the records of the SCRAM credentials topic are sealed under a key
    /// derived from it and the stream's name, so that other Iggy users who may read or
    /// write that topic can neither read the keys nor plant credentials.
    pub credential_secret: secrecy::SecretString,
    /// Compact the SCRAM credentials topic into generations; any number of gateways on
    /// the stream may.
    pub scram_compaction: bool,
}

impl Default for IggyConfig {
    fn default() -> Self {
        Self {
            stream: "kafka".into(),
            mapping: TopicMapping::default(),
            create_stream: true,
            write_through: true,
            poll_interval: Duration::from_millis(100),
            max_message_bytes: usize::try_from(
                iggy_kafka_core::topic_config::DEFAULT_MAX_MESSAGE_BYTES,
            )
            .unwrap_or(usize::MAX),
            seed: 0,
            credential_secret: secrecy::SecretString::from(String::new()),
            scram_compaction: false,
        }
    }
}

/// The backend. Cheap to clone: clones share the pool and the state.
#[derive(Clone)]
pub struct IggyBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IggyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IggyBackend")
            .field("stream", &self.inner.catalog.stream_name())
            .finish_non_exhaustive()
    }
}

/// The layers, bottom up.
struct Inner {
    catalog: Catalog,
    reads: Reads,
    appends: Appends,
    watches: Watches,
    committed: CommittedOffsets,
    users: Users,
    scram: scram::ScramStore,
    txns: transactions::TxnStore,
}

impl Inner {
    /// Where DeleteRecords left partition `partition` of `topic` starting, if it did (and
    /// the topic is still the one it was left for, as far as the catalog knows).
    fn deleted_before(&self, topic: &str, partition: u32) -> Option<u64> {
        self.committed
            .log_start(topic, partition, self.catalog.known_id(topic))
    }
}

impl Inner {
    /// Rebuilds the partition's transaction index from its log, if this gateway run has not
    /// yet, before a marker or transactional append changes it: the rebuild must see the log
    /// as it was, or it would close the partition's earlier transactions with the new marker
    /// (reporting a commit as aborted, or an abort as committed).
    async fn index_before_write(&self, topic: &str, partition: u32) -> Result<(), BackendError> {
        let known = self.catalog.existing([(topic, partition, ())]);
        if known
            .first()
            .is_some_and(|(_, s)| s.txns_rebuilt.load(std::sync::atomic::Ordering::Acquire))
        {
            return Ok(());
        }
        // Iggy says whether the partition exists before any state is made for it.
        self.catalog.offsets(topic, partition).await?;
        self.txns
            .indexed(&self.catalog, &self.reads, (topic, partition))
            .await?;
        Ok(())
    }

    /// `o` with the partition's last stable offset, from its transaction index.
    async fn last_stable(
        &self,
        topic: &str,
        partition: u32,
        mut o: PartitionOffsets,
    ) -> Result<PartitionOffsets, BackendError> {
        let state = self
            .txns
            .indexed(&self.catalog, &self.reads, (topic, partition))
            .await?;
        o.last_stable = Some(state.last_stable(o.log_start, o.high_watermark));
        Ok(o)
    }

    /// A read from `offset` of `partition`, with the partition's last stable offset and the
    /// aborted transactions that overlap the messages read.
    ///
    /// Iggy's reply may hold a transactional batch whose append reply this gateway has not
    /// handled yet, or lost: the last stable offset stops before it all the same
    /// ([`partition::PartitionState::last_stable`]), and it is in the index before its
    /// transaction's marker is written (a marker first finds a batch in doubt).
    async fn with_transactions(
        &self,
        partition: u32,
        offset: u64,
        mut r: ReadResult,
    ) -> Result<ReadResult, BackendError> {
        let state = self
            .txns
            .indexed(&self.catalog, &self.reads, (&r.topic, partition))
            .await?;
        r.offsets.last_stable =
            Some(state.last_stable(r.offsets.log_start, r.offsets.high_watermark));
        if let Some(last) = r.messages.last_offset() {
            r.aborted = state
                .txn_index(r.offsets.log_start)
                .aborted_between(offset, last);
        }
        Ok(r)
    }
}

impl IggyBackend {
    /// The SCRAM credentials kept in Iggy (replayed at [`IggyBackend::connect`], and
    /// stored since), for the gateway's users: a change that sets each, and one that
    /// deletes each whose last change was a deletion.
    #[must_use]
    pub fn scram_credentials(&self) -> Vec<iggy_kafka_core::sasl::ScramChange> {
        self.inner.scram.credentials()
    }

    /// Keeps the deletions of these users' credentials (by mechanism) when the SCRAM
    /// credentials topic is compacted: those the users file gives, so that one deleted
    /// through Kafka stays deleted at every start.
    pub fn pin_scram_deletions(
        &self,
        keys: impl IntoIterator<Item = (String, iggy_kafka_core::sasl::ScramMechanism)>,
    ) {
        self.inner.scram.pin_deletions(keys);
    }

    /// The group coordinator's state kept in the committed-offsets log (replayed at
    /// [`IggyBackend::connect`]), each group's latest, for `Coordinator::restore`.
    #[must_use]
    pub fn kept_groups(&self) -> Vec<(String, bytes::Bytes)> {
        self.inner.committed.group_states()
    }

    /// The transaction coordinator's state kept in Iggy (replayed at
    /// [`IggyBackend::connect`]), for `TxnCoordinator::restore` before the gateway serves.
    #[must_use]
    pub fn transaction_state(&self) -> Vec<iggy_kafka_core::txn::TxnSnapshot> {
        self.inner.txns.snapshots()
    }

    /// How long each open transaction of [`IggyBackend::transaction_state`] has been open,
    /// by transactional id, where the log says when it opened: restored, it is aborted once
    /// the rest of its timeout passes, not its whole timeout again.
    #[must_use]
    pub fn transactions_open_for(&self) -> Vec<(String, std::time::Duration)> {
        let now = transactions::wall_clock_ms();
        self.inner
            .txns
            .opened()
            .into_iter()
            .map(|(id, at)| {
                let ms = u64::try_from(now.saturating_sub(at)).unwrap_or(0);
                (id, std::time::Duration::from_millis(ms))
            })
            .collect()
    }

    /// Opens the backend on a pool whose lanes a runtime drives: makes sure the stream and
    /// the offsets topic exist (creating them when allowed) and replays the committed offsets.
    ///
    /// # Errors
    /// When Iggy cannot be reached or refuses, with the reason.
    pub async fn connect(
        lanes: Arc<Lanes>,
        clock: Arc<dyn Clock>,
        config: IggyConfig,
    ) -> Result<Self, ConnectError> {
        let places = mapping::Places::new(&config.stream, &config.mapping).map_err(|reason| {
            ConnectError::StreamName {
                name: config.stream.clone(),
                reason,
            }
        })?;
        let stream = places.default_stream().id.clone();
        let started = clock.now();
        let calls = Calls::new(Arc::clone(&lanes), clock, stream, config.seed);
        let inner = Inner {
            catalog: Catalog::new(calls, places, config.write_through),
            reads: Reads::new(),
            appends: Appends::new(config.max_message_bytes, config.seed),
            watches: Watches::new(config.poll_interval, started),
            committed: CommittedOffsets::default(),
            users: Users::default(),
            scram: scram::ScramStore::new(
                &config.credential_secret,
                &config.stream,
                config.scram_compaction,
            ),
            txns: transactions::TxnStore::default(),
        };
        let opened = match admin::ensure_streams(&inner.catalog, config.create_stream).await {
            Ok(()) => admin::keep_own_topics_forever(&inner.catalog)
                .await
                .map_err(|source| ConnectError::Offsets {
                    step: "list the gateway's own topics",
                    source,
                }),
            Err(e) => Err(e),
        };
        let opened = match opened {
            Ok(()) => inner.committed.open(&inner.catalog, &inner.reads).await,
            Err(e) => Err(e),
        };
        let opened = match opened {
            Ok(()) => inner
                .scram
                .open(&inner.catalog, &inner.reads)
                .await
                .map_err(|source| ConnectError::Offsets {
                    step: "replay the SCRAM credentials",
                    source,
                }),
            Err(e) => Err(e),
        };
        let opened = match opened {
            Ok(()) => inner.txns.open(&inner.catalog, &inner.reads).await,
            Err(e) => Err(e),
        };
        match (opened, lanes.login_refused()) {
            (Ok(()), _) => Ok(Self {
                inner: Arc::new(inner),
            }),
            // Whatever step met it, the cause is the refusal.
            (Err(_), Some(refused @ SessionError::TlsRefused(_))) => {
                Err(ConnectError::TlsRefused(refused))
            }
            (Err(_), Some(refused)) => Err(ConnectError::LoginRefused(refused)),
            (Err(e), None) => Err(e),
        }
    }
}

impl Backend for IggyBackend {
    fn is_ready(&self) -> bool {
        // The lanes that follow the primary carry everything but partition writes.
        let lanes = self.inner.catalog.calls().lanes();
        lanes.group(0).any(|i| lanes.lane(i).is_up())
    }

    fn describe(&self) -> String {
        let lanes = self.inner.catalog.calls().lanes();
        let nodes = lanes.nodes();
        let leader = nodes
            .leader()
            .map_or_else(String::new, |l| format!(", primary {l}"));
        let streams = self.inner.catalog.places().streams();
        let mapped = if streams.len() > 1 {
            let names: Vec<String> = streams[1..]
                .iter()
                .map(|s| format!("{:?}", s.name))
                .collect();
            format!(" (topics mapped into {})", names.join(", "))
        } else {
            String::new()
        };
        format!(
            "Iggy at {}{leader}, stream {:?}{mapped}: {} of {} connections up",
            nodes.addresses().join(", "),
            self.inner.catalog.stream_name(),
            lanes.stats().up,
            lanes.len(),
        )
    }

    fn metrics(&self) -> Vec<Metric> {
        let lanes = self.inner.catalog.calls().lanes();
        let stats = lanes.stats();
        let (log_records, live_offsets) = self.inner.committed.size();
        let (txn_records, _) = self.inner.txns.size();
        let command = |code: u32| {
            vec![(
                "command",
                iggy_kafka_iggy_client::protocol::codes::command_name(code)
                    .map_or_else(|_| code.to_string(), str::to_owned),
            )]
        };
        let per_command = |name, help, value: fn(&CommandStats) -> u64| Metric {
            name,
            help,
            kind: MetricKind::Counter,
            samples: stats
                .commands
                .iter()
                .map(|(code, c)| (command(*code), MetricValue::Value(value(c) as f64)))
                .collect(),
        };
        vec![
            per_command(
                "iggy_calls_total",
                "Iggy requests answered, by command.",
                |c| c.answered,
            ),
            per_command(
                "iggy_call_errors_total",
                "Iggy requests answered with an error, by command.",
                |c| c.refused,
            ),
            per_command(
                "iggy_calls_lost_total",
                "Iggy requests whose connection failed before an answer, by command.",
                |c| c.lost,
            ),
            Metric {
                name: "iggy_call_duration_seconds",
                help: "From an Iggy request's write to its answer, by command.",
                kind: MetricKind::Histogram(&SERVICE_BOUNDS),
                samples: stats
                    .commands
                    .iter()
                    .map(|(code, c)| {
                        (
                            command(*code),
                            MetricValue::Histogram {
                                buckets: c.buckets.to_vec(),
                                sum: c.service_time.as_secs_f64(),
                            },
                        )
                    })
                    .collect(),
            },
            Metric::single(
                "iggy_connections",
                "Connections to Iggy the gateway keeps.",
                MetricKind::Gauge,
                lanes.len() as f64,
            ),
            Metric::single(
                "iggy_connections_up",
                "Connections to Iggy logged in now.",
                MetricKind::Gauge,
                stats.up as f64,
            ),
            Metric::single(
                "iggy_logins_total",
                "Sessions logged in to Iggy; all but each connection's first are reconnections.",
                MetricKind::Counter,
                stats.logins as f64,
            ),
            Metric::single(
                "iggy_reconnects_total",
                "Sessions logged in to Iggy after a connection's first.",
                MetricKind::Counter,
                stats.logins.saturating_sub(lanes.len() as u64) as f64,
            ),
            Metric::single(
                "iggy_connect_failures_total",
                "Attempts to connect to Iggy that failed before a session was up.",
                MetricKind::Counter,
                stats.connect_failures as f64,
            ),
            Metric::single(
                "iggy_merged_requests_total",
                "Iggy appends that carried several plain appends to one partition (group commit).",
                MetricKind::Counter,
                stats.merged as f64,
            ),
            Metric::single(
                "iggy_merged_appends_total",
                "Plain appends that went to Iggy in another's request: the requests merging saved.",
                MetricKind::Counter,
                stats.merged_calls as f64,
            ),
            Metric::single(
                "offsets_log_records",
                "Records in the current generation of the committed-offsets log.",
                MetricKind::Gauge,
                log_records as f64,
            ),
            Metric::single(
                "committed_offsets",
                "Committed offsets held, every group's together.",
                MetricKind::Gauge,
                live_offsets as f64,
            ),
            Metric::single(
                "transaction_log_records",
                "Records in the current generation of the transaction coordinator's log.",
                MetricKind::Gauge,
                txn_records as f64,
            ),
        ]
    }

    fn keep_groups(
        &self,
        groups: Vec<(String, Option<bytes::Bytes>)>,
    ) -> iggy_kafka_core::backend::KeepGroups {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let Inner {
                catalog,
                reads,
                committed,
                ..
            } = &*inner;
            committed.keep_groups(catalog, reads, groups).await
        })
    }

    fn execute(&self, command: Command) -> Execution {
        if let Some(refused) = refuse_unreachable(self.inner.catalog.places(), &command) {
            return Execution::Done(refused);
        }
        let inner = Arc::clone(&self.inner);
        let pending = |f: std::pin::Pin<
            Box<dyn std::future::Future<Output = Completion> + Send>,
        >| { Execution::Pending(f) };
        match command {
            Command::FetchOffsets { group, only } => {
                Execution::Done(Completion::FetchOffsets(Ok(inner
                    .committed
                    .fetch(&group, only.as_deref()))))
            }
            Command::ListGroups => {
                Execution::Done(Completion::ListGroups(Ok(inner.committed.groups())))
            }
            Command::WriteMarker {
                topic,
                partition,
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
            } => {
                let stamp = inner.appends.stamp();
                pending(Box::pin(async move {
                    let Inner {
                        catalog,
                        reads,
                        appends,
                        ..
                    } = &*inner;
                    let written = match inner.index_before_write(&topic, partition).await {
                        Ok(()) => {
                            appends
                                .write_marker(
                                    catalog,
                                    reads,
                                    (&topic, partition),
                                    (producer_id, epoch),
                                    commit,
                                    coordinator_epoch,
                                    stamp,
                                )
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    Completion::WriteMarker(catalog.settle(&topic, partition, written))
                }))
            }
            Command::UserPermissions { user } => {
                let now = inner.catalog.calls().clock().now();
                match inner.users.cached(&user, now) {
                    Some(kept) => Execution::Done(Completion::UserPermissions(Ok(kept))),
                    None => pending(Box::pin(async move {
                        Completion::UserPermissions(
                            inner.users.permissions(&inner.catalog, &user).await,
                        )
                    })),
                }
            }
            Command::PersistTxns { changes } => pending(Box::pin(async move {
                Completion::PersistTxns(inner.txns.persist(&inner.catalog, changes).await)
            })),
            Command::StoreScramCredentials { changes } => pending(Box::pin(async move {
                Completion::StoreScramCredentials(
                    inner
                        .scram
                        .store(&inner.catalog, &inner.reads, changes)
                        .await,
                )
            })),
            Command::FollowScramCredentials { since } => pending(Box::pin(async move {
                Completion::FollowScramCredentials(
                    inner
                        .scram
                        .follow(&inner.catalog, &inner.reads, since)
                        .await,
                )
            })),
            Command::VerifyPassword { user, password } => pending(Box::pin(async move {
                let lanes = inner.catalog.calls().lanes();
                Completion::VerifyPassword(users::verify_password(lanes, user, &password).await)
            })),
            Command::AllocateProducerId => {
                Execution::Done(Completion::AllocateProducerId(Ok(inner
                    .appends
                    .allocate_producer_id())))
            }
            Command::Append {
                topic,
                partition,
                messages,
                largest_batch,
                producer: None,
            } => {
                // Queued on the partition's lane now, not when the future is first polled:
                // plain appends are handed over in request order without waiting for each
                // other, and the lane keeps that order on the way to Iggy.
                // The request's records are let go of once encoded, not held until Iggy
                // answers.
                let count = messages.len();
                let at = (topic.as_str(), partition);
                let sent = inner
                    .appends
                    .send(&inner.catalog, at, &messages, largest_batch, None);
                drop(messages);
                match sent {
                    Ok(queued) => pending(Box::pin(async move {
                        let at = (topic.as_str(), partition);
                        let appended = inner
                            .appends
                            .appended(&inner.catalog, at, count, None, queued)
                            .await;
                        Completion::Append(inner.catalog.settle(&topic, partition, appended))
                    })),
                    Err(e) => Execution::Done(Completion::Append(Err(e))),
                }
            }
            Command::Append {
                topic,
                partition,
                messages,
                largest_batch,
                producer: Some(pb),
            } => {
                // Taken now, in hand-over order, not when the future is first polled.
                let stamp = inner.appends.stamp();
                pending(Box::pin(async move {
                    let Inner {
                        catalog,
                        reads,
                        appends,
                        ..
                    } = &*inner;
                    let at = (topic.as_str(), partition);
                    let indexed = if pb.transactional {
                        inner.index_before_write(&topic, partition).await
                    } else {
                        Ok(())
                    };
                    let appended = match indexed {
                        Ok(()) => {
                            appends
                                .append(catalog, reads, at, &messages, largest_batch, pb, stamp)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    Completion::Append(catalog.settle(&topic, partition, appended))
                }))
            }
            Command::Read {
                topic,
                partition,
                offset,
                max_bytes,
                max_messages,
            } => pending(Box::pin(async move {
                let Inner { catalog, reads, .. } = &*inner;
                let r = match catalog.topic_name(&topic).await {
                    Ok(name) => match inner.deleted_before(&name, partition) {
                        Some(start) if offset < start => {
                            match catalog.offsets(&name, partition).await {
                                Ok(o) => Err(BackendError::OffsetOutOfRange {
                                    offset,
                                    log_start: start.min(o.high_watermark),
                                    high_watermark: o.high_watermark,
                                }),
                                Err(e) => Err(e),
                            }
                        }
                        start => match reads
                            .read(catalog, &name, partition, offset, max_bytes, max_messages)
                            .await
                        {
                            Ok(mut r) => {
                                r.offsets.log_start = r.offsets.log_start.max(start.unwrap_or(0));
                                inner.with_transactions(partition, offset, r).await
                            }
                            Err(e) => Err(e),
                        },
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = &r {
                    tracing::debug!(%topic, partition, offset, error = %e, "read failed");
                }
                Completion::Read(match &topic {
                    TopicRef::Name(name) => catalog.settle(name, partition, r),
                    // Resolved to a name only when the topic exists.
                    TopicRef::Id(_) => r,
                })
            })),
            Command::Offsets { topic, partition } => pending(Box::pin(async move {
                let catalog = &inner.catalog;
                Completion::Offsets(match catalog.topic_name(&topic).await {
                    Ok(name) => match catalog.offsets(&name, partition).await {
                        Ok(mut o) => {
                            if let Some(start) = inner.deleted_before(&name, partition) {
                                o.log_start = o.log_start.max(start).min(o.high_watermark);
                            }
                            inner.last_stable(&name, partition, o).await
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                })
            })),
            Command::DeleteRecords {
                topic,
                partition,
                offset,
            } => pending(Box::pin(async move {
                let Inner {
                    catalog,
                    reads,
                    committed,
                    ..
                } = &*inner;
                let deleted = async {
                    let header = catalog.topic_header(&topic).await?;
                    let id = catalog.topic_id(&topic, &header.topic);
                    let bounds = catalog.partition_offsets(&topic, &header, partition)?;
                    let high_watermark = bounds.high_watermark;
                    let start = committed
                        .log_start(&topic, partition, Some(id))
                        .map_or(bounds.log_start, |s| s.max(bounds.log_start))
                        .min(high_watermark);
                    let wanted = offset.unwrap_or(high_watermark);
                    if wanted > high_watermark {
                        return Err(BackendError::OffsetOutOfRange {
                            offset: wanted,
                            log_start: start,
                            high_watermark,
                        });
                    }
                    if wanted <= start {
                        return Ok(start);
                    }
                    committed
                        .delete_records(catalog, reads, (&topic, id, partition), wanted)
                        .await?;
                    Ok(wanted)
                }
                .await;
                Completion::DeleteRecords(catalog.settle(&topic, partition, deleted))
            })),
            Command::OffsetForTimestamp {
                topic,
                partition,
                timestamp_ms,
            } => pending(Box::pin(async move {
                let Inner { catalog, reads, .. } = &*inner;
                let found =
                    search::offset_for_timestamp(catalog, reads, &topic, partition, timestamp_ms)
                        .await;
                // Records before a DeleteRecords start are still in Iggy: the first record
                // at or after the time is then the log start (timestamps mostly rise).
                let start = inner.deleted_before(&topic, partition);
                let found = found.map(|f| f.map(|(o, ts)| (o.max(start.unwrap_or(0)), ts)));
                Completion::OffsetForTimestamp(catalog.settle(&topic, partition, found))
            })),
            Command::MaxTimestamp { topic, partition } => pending(Box::pin(async move {
                let Inner { catalog, reads, .. } = &*inner;
                let found = search::max_timestamp(catalog, reads, &topic, partition).await;
                Completion::MaxTimestamp(catalog.settle(&topic, partition, found))
            })),
            Command::ListTopics { only } => pending(Box::pin(async move {
                Completion::ListTopics(inner.catalog.list_topics(only.as_deref()).await)
            })),
            Command::DescribeProducers { topic, partition } => pending(Box::pin(async move {
                let Inner {
                    catalog,
                    reads,
                    appends,
                    ..
                } = &*inner;
                let found = appends.producers(catalog, reads, (&topic, partition)).await;
                Completion::DescribeProducers(catalog.settle(&topic, partition, found))
            })),
            Command::CreateTopic {
                name,
                partitions,
                config,
                validate_only,
            } => pending(Box::pin(async move {
                Completion::CreateTopic(
                    admin::create_topic(&inner.catalog, &name, partitions, &config, validate_only)
                        .await,
                )
            })),
            Command::DeleteTopic { topic } => pending(Box::pin(async move {
                let Inner {
                    catalog,
                    reads,
                    committed,
                    ..
                } = &*inner;
                let deleted = admin::delete_topic(catalog, &topic).await;
                if let Ok(info) = &deleted {
                    committed.topic_deleted(catalog, reads, &info.name).await;
                }
                Completion::DeleteTopic(deleted)
            })),
            Command::CreatePartitions {
                topic,
                total,
                validate_only,
            } => pending(Box::pin(async move {
                Completion::CreatePartitions(
                    admin::create_partitions(&inner.catalog, &topic, total, validate_only).await,
                )
            })),
            Command::AlterTopicConfig {
                topic,
                config,
                validate_only,
            } => pending(Box::pin(async move {
                Completion::AlterTopicConfig(
                    admin::alter_topic_config(&inner.catalog, &topic, &config, validate_only).await,
                )
            })),
            Command::CommitOffsets { group, offsets } => pending(Box::pin(async move {
                let Inner {
                    catalog,
                    reads,
                    committed,
                    ..
                } = &*inner;
                Completion::CommitOffsets(committed.commit(catalog, reads, &group, offsets).await)
            })),
            Command::DeleteOffsets { group, only } => pending(Box::pin(async move {
                let Inner {
                    catalog,
                    reads,
                    committed,
                    ..
                } = &*inner;
                Completion::DeleteOffsets(committed.delete(catalog, reads, &group, only).await)
            })),
            Command::Watch { partitions, .. } => pending(Box::pin(async move {
                inner.watches.watch(&inner.catalog, &partitions).await;
                Completion::Watch
            })),
        }
    }
}

/// A command naming a topic that the topic mapping does not reach (one of the gateway's own,
/// or an Iggy topic the mapping knows by another name), answered as if it did not exist.
/// The gateway's own topics hold every group's committed offsets, and a client that could
/// append to (a transaction marker included), read or delete them could forge, read or lose
/// other groups' commits. Topics
/// given by id cannot name them (their ids are never resolved); commits are checked against
/// the topics Kafka clients see.
fn refuse_unreachable(places: &mapping::Places, command: &Command) -> Option<Completion> {
    fn unknown<T>(topic: &str) -> Result<T, BackendError> {
        Err(BackendError::UnknownTopic(TopicRef::Name(topic.to_owned())))
    }
    let topic = match command {
        Command::Append { topic, .. }
        | Command::OffsetForTimestamp { topic, .. }
        | Command::MaxTimestamp { topic, .. }
        | Command::DescribeProducers { topic, .. }
        | Command::DeleteRecords { topic, .. }
        | Command::CreatePartitions { topic, .. }
        | Command::AlterTopicConfig { topic, .. }
        | Command::WriteMarker { topic, .. }
        | Command::Read {
            topic: TopicRef::Name(topic),
            ..
        }
        | Command::Offsets {
            topic: TopicRef::Name(topic),
            ..
        }
        | Command::DeleteTopic {
            topic: TopicRef::Name(topic),
        } if offsets_log::is_own(topic) || places.locate(topic).is_none() => topic.as_str(),
        _ => return None,
    };
    tracing::debug!(
        topic,
        "a client named a topic the topic mapping does not reach"
    );
    Some(match command {
        Command::Append { .. } => Completion::Append(unknown(topic)),
        Command::Read { .. } => Completion::Read(unknown(topic)),
        Command::Offsets { .. } => Completion::Offsets(unknown(topic)),
        Command::OffsetForTimestamp { .. } => Completion::OffsetForTimestamp(unknown(topic)),
        Command::MaxTimestamp { .. } => Completion::MaxTimestamp(unknown(topic)),
        Command::DescribeProducers { .. } => Completion::DescribeProducers(unknown(topic)),
        Command::DeleteRecords { .. } => Completion::DeleteRecords(unknown(topic)),
        Command::DeleteTopic { .. } => Completion::DeleteTopic(unknown(topic)),
        Command::CreatePartitions { .. } => Completion::CreatePartitions(unknown(topic)),
        Command::WriteMarker { .. } => Completion::WriteMarker(unknown(topic)),
        _ => Completion::AlterTopicConfig(unknown(topic)),
    })
}

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(any(test, feature = "fuzzing"))]
mod testing;
#[cfg(test)]
mod tests;
