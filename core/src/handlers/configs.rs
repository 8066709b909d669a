//! DescribeConfigs (key 32), AlterConfigs (key 33, the legacy form that replaces a
//! resource's whole set) and IncrementalAlterConfigs (key 44), for topics and for the
//! gateway as a broker. Topic configs a backend can honour may be altered; the others keep
//! their Kafka defaults (see [`crate::topic_config`]); broker configs are static.

use super::admin::limits;
use super::task::{kstr, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, ConfigChange, TopicConfig, TopicRef};
use crate::config::Config;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::alter_configs_request::AlterConfigsRequest;
use crate::protocol::generated::alter_configs_response as legacy;
use crate::protocol::generated::describe_configs_request::DescribeConfigsRequest;
use crate::protocol::generated::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use crate::protocol::generated::incremental_alter_configs_request::{
    self as incremental, IncrementalAlterConfigsRequest,
};
use crate::protocol::generated::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use crate::protocol::Response;
use crate::topic_config::{self, ConfigError, ConfigType};
use crate::work::{Outcome, Work};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One config as DescribeConfigs shows it, before the version decides which fields go out.
struct Shown {
    name: String,
    value: String,
    read_only: bool,
    source: i8,
    kind: ConfigType,
}

fn broker_configs(config: &Config) -> Vec<Shown> {
    let s = |name: &str, value: String, kind| Shown {
        name: name.into(),
        value,
        read_only: true,
        source: SOURCE_STATIC_BROKER,
        kind,
    };
    vec![
        s(
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                config.advertised_host, config.advertised_port
            ),
            ConfigType::List,
        ),
        s(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        s("broker.id", config.node_id.to_string(), ConfigType::Int),
        s("default.replication.factor", "1".into(), ConfigType::Int),
        s(
            "log.retention.bytes",
            config.default_retention_bytes.to_string(),
            ConfigType::Long,
        ),
        s(
            "log.retention.ms",
            topic_config::DEFAULT_RETENTION_MS.to_string(),
            ConfigType::Long,
        ),
        s(
            "message.max.bytes",
            topic_config::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            ConfigType::Int,
        ),
        s("min.insync.replicas", "1".into(), ConfigType::Int),
        s(
            "num.partitions",
            config.default_partitions.to_string(),
            ConfigType::Int,
        ),
        s(
            "socket.request.max.bytes",
            config.max_frame_size.to_string(),
            ConfigType::Int,
        ),
    ]
}

fn topic_configs(config: &Config, topic: &TopicConfig) -> Vec<Shown> {
    topic_config::describe(topic, config.default_retention_bytes)
        .into_iter()
        .map(|e| Shown {
            name: e.def.name.into(),
            value: e.value,
            read_only: !e.def.honoured,
            source: if e.is_override {
                SOURCE_DYNAMIC_TOPIC
            } else {
                SOURCE_DEFAULT
            },
            kind: e.def.kind,
        })
        .collect()
}

#[derive(Debug)]
pub(crate) struct DescribeConfigsTask {
    req: DescribeConfigsRequest,
    response: Option<DescribeConfigsResponse>,
    sent: Vec<usize>,
}

impl DescribeConfigsTask {
    pub(crate) fn new(req: DescribeConfigsRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }

    fn fill(&self, slot: &mut DescribeConfigsResult, i: usize, shown: Vec<Shown>, version: i16) {
        let keys = self.req.resources[i].configuration_keys.as_ref();
        slot.configs = shown
            .into_iter()
            .filter(|s| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == s.name)))
            .map(|s| DescribeConfigsResourceResult {
                name: kstr(&s.name),
                value: Some(kstr(&s.value)),
                read_only: s.read_only,
                is_default: version == 0 && s.source == SOURCE_DEFAULT,
                config_source: if version >= 1 { s.source } else { -1 },
                is_sensitive: false,
                synonyms: if version >= 1 && self.req.include_synonyms {
                    vec![DescribeConfigsSynonym {
                        name: kstr(&s.name),
                        value: Some(kstr(&s.value)),
                        source: s.source,
                        ..DescribeConfigsSynonym::default()
                    }]
                } else {
                    Vec::new()
                },
                config_type: if version >= 3 { s.kind as i8 } else { 0 },
                documentation: None,
                ..DescribeConfigsResourceResult::default()
            })
            .collect();
    }
}

impl Task for DescribeConfigsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        if self.response.is_none() {
            let mut response = DescribeConfigsResponse::default();
            let mut commands = Vec::new();
            for (i, r) in self.req.resources.iter().enumerate() {
                let mut slot = DescribeConfigsResult {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.clone(),
                    ..DescribeConfigsResult::default()
                };
                match r.resource_type {
                    TOPIC if !ctx.allows(Action::Describe(&r.resource_name)) => {
                        slot.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                        slot.error_message = Some(kstr("Authorization failed."));
                    }
                    TOPIC => {
                        commands.push(Work::Store(Command::ListTopics {
                            only: Some(vec![TopicRef::Name(r.resource_name.to_string())]),
                        }));
                        self.sent.push(i);
                    }
                    BROKER if !ctx.allows(Action::DescribeCluster) => {
                        slot.error_code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into();
                        slot.error_message = Some(kstr("Authorization failed."));
                    }
                    BROKER
                        if r.resource_name.is_empty()
                            || r.resource_name.as_str() == ctx.config.node_id.to_string() =>
                    {
                        self.fill(&mut slot, i, broker_configs(ctx.config), version);
                    }
                    BROKER => {
                        slot.error_code = ErrorCode::INVALID_REQUEST.into();
                        slot.error_message = Some(kstr(&format!("no broker {}", r.resource_name)));
                    }
                    other => {
                        slot.error_code = ErrorCode::INVALID_REQUEST.into();
                        slot.error_message = Some(kstr(&format!(
                            "resource type {other} is not supported by the gateway"
                        )));
                    }
                }
                response.results.push(slot);
            }
            self.response = Some(response);
            return Step::Run(commands);
        }
        let mut response = self.response.take().unwrap_or_default();
        for (&i, completion) in self.sent.iter().zip(results) {
            let slot = &mut response.results[i];
            match completion {
                Outcome::Store(Completion::ListTopics(Ok(topics))) => match topics.first() {
                    Some(t) => {
                        let shown = topic_configs(ctx.config, &t.config);
                        self.fill(slot, i, shown, version);
                    }
                    None => {
                        slot.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into();
                        slot.error_message = Some(kstr(&format!(
                            "topic {} does not exist",
                            slot.resource_name
                        )));
                    }
                },
                Outcome::Store(Completion::ListTopics(Err(e))) => {
                    slot.error_code = e.error_code().into();
                    slot.error_message = Some(kstr(&e.to_string()));
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::DescribeConfigs(response))
    }
}

#[derive(Debug)]
enum AlterStage {
    Start,
    Listed,
    Altered,
}

#[derive(Debug)]
pub(crate) struct AlterConfigsTask {
    req: IncrementalAlterConfigsRequest,
    /// A legacy AlterConfigs, turned into SETs and DELETEs: the configs it does not name
    /// go back to their defaults, and the answer is its own response type.
    legacy: bool,
    stage: AlterStage,
    response: IncrementalAlterConfigsResponse,
    sent: Vec<usize>,
}

/// Configs that a legacy AlterConfigs leaves as they are when it does not name them: Iggy
/// fixes them when it creates a topic, so resetting them could only fail.
const FIXED_AT_CREATION: [&str; 2] = [topic_config::SEGMENT_BYTES, topic_config::FLUSH_MESSAGES];

impl AlterConfigsTask {
    pub(crate) fn new(req: IncrementalAlterConfigsRequest) -> Self {
        Self {
            req,
            legacy: false,
            stage: AlterStage::Start,
            response: IncrementalAlterConfigsResponse::default(),
            sent: Vec::new(),
        }
    }

    /// A legacy AlterConfigs: each named config is set (or, with a null value, deleted),
    /// and every other config of the resource goes back to its default.
    pub(crate) fn legacy(req: AlterConfigsRequest) -> Self {
        let resources = req
            .resources
            .into_iter()
            .map(|r| incremental::AlterConfigsResource {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
                configs: r
                    .configs
                    .into_iter()
                    .map(|c| incremental::AlterableConfig {
                        name: c.name,
                        config_operation: if c.value.is_some() { SET } else { DELETE },
                        value: c.value,
                        ..incremental::AlterableConfig::default()
                    })
                    .collect(),
                ..incremental::AlterConfigsResource::default()
            })
            .collect();
        Self {
            req: IncrementalAlterConfigsRequest {
                resources,
                validate_only: req.validate_only,
                ..IncrementalAlterConfigsRequest::default()
            },
            legacy: true,
            ..Self::new(IncrementalAlterConfigsRequest::default())
        }
    }

    fn respond(&mut self) -> Step {
        let response = std::mem::take(&mut self.response);
        if !self.legacy {
            return Step::Respond(Response::IncrementalAlterConfigs(response));
        }
        Step::Respond(Response::AlterConfigs(legacy::AlterConfigsResponse {
            responses: response
                .responses
                .into_iter()
                .map(|r| legacy::AlterConfigsResourceResponse {
                    error_code: r.error_code,
                    error_message: r.error_message,
                    resource_type: r.resource_type,
                    resource_name: r.resource_name,
                    ..legacy::AlterConfigsResourceResponse::default()
                })
                .collect(),
            ..legacy::AlterConfigsResponse::default()
        }))
    }
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Applies the changes of one resource to `current`, as Kafka's incremental semantics say.
fn alter(
    config: &Config,
    current: &TopicConfig,
    changes: &[(i8, ConfigChange)],
) -> Result<TopicConfig, (ErrorCode, String)> {
    let mut next = current.clone();
    for (op, change) in changes {
        let bad = |m: String| (ErrorCode::INVALID_CONFIG, m);
        let def = topic_config::definition(&change.name)
            .ok_or_else(|| bad(ConfigError::Unknown(change.name.to_string()).to_string()))?;
        let value = match *op {
            SET => Some(
                change
                    .value
                    .clone()
                    .ok_or_else(|| bad(format!("null value to set for {}", change.name)))?,
            ),
            DELETE => None,
            APPEND | SUBTRACT if def.kind != ConfigType::List => {
                return Err(bad(format!(
                    "{} is not a list: only SET and DELETE apply",
                    change.name
                )))
            }
            APPEND => {
                // The only honoured list is cleanup.policy, whose only value is "delete".
                Some(def.default.to_string())
                    .filter(|_| change.value.as_deref() == Some(def.default))
                    .ok_or_else(|| {
                        bad(format!(
                            "cannot append {:?} to {}",
                            change.value, change.name
                        ))
                    })
                    .map(Some)?
                    .or(Some(def.default.to_string()))
            }
            SUBTRACT => {
                return Err(bad(format!(
                    "cannot remove {:?} from {}: it would leave no value the gateway supports",
                    change.value, change.name
                )))
            }
            other => {
                return Err((
                    ErrorCode::INVALID_REQUEST,
                    format!("unknown config operation {other}"),
                ))
            }
        };
        topic_config::apply(&mut next, &change.name, value.as_deref(), limits(config))
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(next)
}

impl Task for AlterConfigsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        match std::mem::replace(&mut self.stage, AlterStage::Listed) {
            AlterStage::Start => {
                let mut commands = Vec::new();
                for (i, r) in self.req.resources.iter().enumerate() {
                    let mut slot = AlterConfigsResourceResponse {
                        resource_type: r.resource_type,
                        resource_name: r.resource_name.clone(),
                        ..AlterConfigsResourceResponse::default()
                    };
                    match r.resource_type {
                        TOPIC if !ctx.allows(Action::Manage(&r.resource_name)) => {
                            slot.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                            slot.error_message = Some(kstr("Authorization failed."));
                        }
                        TOPIC => {
                            commands.push(Work::Store(Command::ListTopics {
                                only: Some(vec![TopicRef::Name(r.resource_name.to_string())]),
                            }));
                            self.sent.push(i);
                        }
                        BROKER if !ctx.allows(Action::AlterCluster) => {
                            slot.error_code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into();
                            slot.error_message = Some(kstr("Authorization failed."));
                        }
                        BROKER if r.configs.is_empty() => {}
                        BROKER => {
                            let names: Vec<&str> =
                                r.configs.iter().map(|c| c.name.as_str()).collect();
                            slot.error_code = ErrorCode::INVALID_REQUEST.into();
                            slot.error_message = Some(kstr(&format!(
                                "Cannot update these configs dynamically: {names:?}"
                            )));
                        }
                        other => {
                            slot.error_code = ErrorCode::INVALID_REQUEST.into();
                            slot.error_message = Some(kstr(&format!(
                                "resource type {other} is not supported by the gateway"
                            )));
                        }
                    }
                    self.response.responses.push(slot);
                }
                Step::Run(commands)
            }
            AlterStage::Listed => {
                let mut commands = Vec::new();
                let mut altering = Vec::new();
                for (&i, completion) in self.sent.iter().zip(results) {
                    let r = &self.req.resources[i];
                    let slot = &mut self.response.responses[i];
                    let current = match completion {
                        Outcome::Store(Completion::ListTopics(Ok(t))) => t.into_iter().next(),
                        _ => None,
                    };
                    let Some(current) = current else {
                        slot.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.into();
                        slot.error_message =
                            Some(kstr(&format!("topic {} does not exist", r.resource_name)));
                        continue;
                    };
                    let mut changes: Vec<(i8, ConfigChange)> = r
                        .configs
                        .iter()
                        .map(|c| {
                            (
                                c.config_operation,
                                ConfigChange {
                                    name: c.name.to_string(),
                                    value: c.value.as_ref().map(|v| v.to_string()),
                                },
                            )
                        })
                        .collect();
                    if self.legacy {
                        // The whole set is replaced: what it does not name is reset (only
                        // honoured configs can differ from their defaults).
                        let reset = topic_config::DEFINITIONS.iter().filter(|d| {
                            d.honoured
                                && !FIXED_AT_CREATION.contains(&d.name)
                                && !r.configs.iter().any(|c| c.name.as_str() == d.name)
                        });
                        changes.extend(reset.map(|d| {
                            (
                                DELETE,
                                ConfigChange {
                                    name: d.name.to_owned(),
                                    value: None,
                                },
                            )
                        }));
                    }
                    match alter(ctx.config, &current.config, &changes) {
                        Ok(config) => {
                            commands.push(Work::Store(Command::AlterTopicConfig {
                                topic: current.name,
                                config,
                                validate_only: self.req.validate_only,
                            }));
                            altering.push(i);
                        }
                        Err((code, why)) => {
                            slot.error_code = code.into();
                            slot.error_message = Some(kstr(&why));
                        }
                    }
                }
                self.sent = altering;
                self.stage = AlterStage::Altered;
                Step::Run(commands)
            }
            AlterStage::Altered => {
                for (&i, completion) in self.sent.iter().zip(results) {
                    let slot = &mut self.response.responses[i];
                    match completion {
                        Outcome::Store(Completion::AlterTopicConfig(Ok(()))) => {}
                        Outcome::Store(Completion::AlterTopicConfig(Err(e))) => {
                            slot.error_code = e.error_code().into();
                            slot.error_message = Some(kstr(&e.to_string()));
                        }
                        _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
                    }
                }
                self.respond()
            }
        }
    }
}
