//! Metadata (key 3): the gateway is the only broker and the controller; topics come from the
//! backend, and missing ones are created when the request allows it and the gateway is
//! configured to (Kafka's `auto.create.topics.enable`).

use super::task::{check_topic_name, kstr, Ctx, Step, Task};
use crate::authz::{self, Action};
use crate::backend::{Command, Completion, TopicConfig, TopicInfo, TopicRef};
use crate::config::Config;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::metadata_request::MetadataRequest;
use crate::protocol::generated::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use crate::protocol::{KStr, Response, Uuid};
use crate::work::{Outcome, Work};

#[derive(Debug)]
enum Stage {
    Start,
    Listed,
    Created(Vec<TopicInfo>),
}

#[derive(Debug)]
pub(crate) struct MetadataTask {
    req: MetadataRequest,
    stage: Stage,
    /// Names being auto-created, in the order of the create commands.
    creating: Vec<String>,
    /// Auto-creation failures by name.
    failed: Vec<(String, ErrorCode)>,
}

impl MetadataTask {
    pub(crate) fn new(req: MetadataRequest) -> Self {
        Self {
            req,
            stage: Stage::Start,
            creating: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The topics asked for, or `None` for all of them.
    fn requested(&self, version: i16) -> Option<Vec<TopicRef>> {
        let topics = self.req.topics.as_ref()?;
        // v0 has no null: an empty list means every topic.
        if version == 0 && topics.is_empty() {
            return None;
        }
        Some(
            topics
                .iter()
                .map(|t| match &t.name {
                    Some(name) => TopicRef::Name(name.to_string()),
                    None => TopicRef::Id(t.topic_id),
                })
                .collect(),
        )
    }
}

pub(crate) fn broker(config: &Config) -> MetadataResponseBroker {
    MetadataResponseBroker {
        node_id: config.node_id,
        host: kstr(&config.advertised_host),
        port: config.advertised_port,
        rack: None,
        ..MetadataResponseBroker::default()
    }
}

fn topic_entry(info: &TopicInfo, ctx: &Ctx<'_>, authorized_ops: bool) -> MetadataResponseTopic {
    let node = ctx.config.node_id;
    MetadataResponseTopic {
        error_code: 0,
        name: Some(kstr(&info.name)),
        topic_id: if ctx.version >= 10 {
            info.id
        } else {
            Uuid::NIL
        },
        is_internal: false,
        partitions: (0..info.partitions)
            .map(|p| MetadataResponsePartition {
                error_code: 0,
                partition_index: i32::try_from(p).unwrap_or(i32::MAX),
                leader_id: node,
                leader_epoch: 0,
                replica_nodes: vec![node],
                isr_nodes: vec![node],
                offline_replicas: Vec::new(),
                ..MetadataResponsePartition::default()
            })
            .collect(),
        topic_authorized_operations: if authorized_ops && ctx.version >= 8 {
            authz::topic_operations(|a| ctx.allows(a), &info.name)
        } else {
            i32::MIN
        },
        ..MetadataResponseTopic::default()
    }
}

fn missing(name: Option<&str>, id: Uuid, code: ErrorCode, version: i16) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.into(),
        // Null names exist from v12 only.
        name: name
            .map(kstr)
            .or_else(|| (version < 12).then(KStr::default)),
        topic_id: id,
        ..MetadataResponseTopic::default()
    }
}

impl Task for MetadataTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        match std::mem::replace(&mut self.stage, Stage::Listed) {
            Stage::Start => Step::Run(vec![Work::Store(Command::ListTopics {
                only: self.requested(version),
            })]),
            Stage::Listed => {
                let topics = match super::task::single(results) {
                    Some(Outcome::Store(Completion::ListTopics(Ok(t)))) => t,
                    Some(Outcome::Store(Completion::ListTopics(Err(e)))) => {
                        tracing::warn!(error = %e, "cannot list topics");
                        // Not knowing is not "no such topic": clients retry
                        // LEADER_NOT_AVAILABLE, where UNKNOWN_TOPIC_OR_PARTITION has
                        // consumers drop the topic from their assignment. Nothing is
                        // created on a guess.
                        for r in self.requested(version).into_iter().flatten() {
                            if let TopicRef::Name(name) = r {
                                self.failed.push((name, ErrorCode::LEADER_NOT_AVAILABLE));
                            }
                        }
                        return self.respond(ctx, Vec::new());
                    }
                    _ => Vec::new(),
                };
                let allow = version < 4 || self.req.allow_auto_topic_creation;
                let mut commands = Vec::new();
                if let Some(requested) = self.requested(version) {
                    for r in requested {
                        let TopicRef::Name(name) = r else { continue };
                        if topics.iter().any(|t| t.name == name)
                            || self.creating.contains(&name)
                            || self.failed.iter().any(|(n, _)| *n == name)
                        {
                            continue;
                        }
                        if !allow || !ctx.config.auto_create_topics {
                            continue;
                        }
                        if !ctx.allows(Action::Describe(&name)) {
                            // Answered as unauthorized whether or not it exists.
                            continue;
                        }
                        if !ctx.allows(Action::Create(&name)) {
                            self.failed
                                .push((name, ErrorCode::TOPIC_AUTHORIZATION_FAILED));
                            continue;
                        }
                        if let Err(why) = check_topic_name(&name) {
                            tracing::debug!(topic = %name, why, "not auto-creating");
                            self.failed.push((name, ErrorCode::INVALID_TOPIC_EXCEPTION));
                            continue;
                        }
                        commands.push(Work::Store(Command::CreateTopic {
                            name: name.clone(),
                            partitions: ctx.config.default_partitions,
                            config: TopicConfig::default(),
                            validate_only: false,
                        }));
                        self.creating.push(name);
                    }
                }
                if !commands.is_empty() {
                    self.stage = Stage::Created(topics);
                    return Step::Run(commands);
                }
                self.respond(ctx, topics)
            }
            Stage::Created(mut topics) => {
                for (name, c) in self.creating.iter().zip(results) {
                    match c {
                        Outcome::Store(Completion::CreateTopic(Ok(info))) => {
                            tracing::info!(topic = %info.name, partitions = info.partitions, "auto-created topic");
                            topics.push(info);
                        }
                        Outcome::Store(Completion::CreateTopic(Err(e))) => {
                            tracing::debug!(topic = %name, error = %e, "auto-creation failed");
                            // Created meanwhile by someone else: the client's retry finds it.
                            self.failed
                                .push((name.clone(), ErrorCode::LEADER_NOT_AVAILABLE));
                        }
                        _ => {}
                    }
                }
                self.respond(ctx, topics)
            }
        }
    }
}

impl MetadataTask {
    fn respond(&self, ctx: &Ctx<'_>, mut topics: Vec<TopicInfo>) -> Step {
        let version = ctx.version;
        let ops = self.req.include_topic_authorized_operations;
        let mut response = MetadataResponse {
            brokers: vec![broker(ctx.config)],
            cluster_id: (version >= 2).then(|| kstr(&ctx.config.cluster_id)),
            controller_id: if version >= 1 { ctx.config.node_id } else { -1 },
            cluster_authorized_operations: if (8..=10).contains(&version)
                && self.req.include_cluster_authorized_operations
            {
                authz::cluster_operations(|a| ctx.allows(a))
            } else {
                i32::MIN
            },
            ..MetadataResponse::default()
        };
        match self.requested(version) {
            None => {
                // All topics: only those the principal may see, as Kafka lists them.
                topics.retain(|t| ctx.allows(Action::Describe(&t.name)));
                topics.sort_by(|a, b| a.name.cmp(&b.name));
                response.topics = topics.iter().map(|t| topic_entry(t, ctx, ops)).collect();
            }
            Some(requested) => {
                for r in requested {
                    let denied = ErrorCode::TOPIC_AUTHORIZATION_FAILED;
                    let entry = match &r {
                        TopicRef::Name(name) if !ctx.allows(Action::Describe(name)) => {
                            missing(Some(name), Uuid::NIL, denied, version)
                        }
                        TopicRef::Name(name) => match topics.iter().find(|t| &t.name == name) {
                            Some(t) => topic_entry(t, ctx, ops),
                            None => {
                                let code = self
                                    .failed
                                    .iter()
                                    .find(|(n, _)| n == name)
                                    .map_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, |f| f.1);
                                missing(Some(name), Uuid::NIL, code, version)
                            }
                        },
                        TopicRef::Id(id) => match topics.iter().find(|t| t.id == *id) {
                            Some(t) if !ctx.allows(Action::Describe(&t.name)) => {
                                missing(None, *id, denied, version)
                            }
                            Some(t) => topic_entry(t, ctx, ops),
                            None => missing(None, *id, ErrorCode::UNKNOWN_TOPIC_ID, version),
                        },
                    };
                    response.topics.push(entry);
                }
            }
        }
        Step::Respond(Response::Metadata(response))
    }
}
