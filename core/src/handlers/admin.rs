//! Topic administration: CreateTopics (key 19), DeleteTopics (key 20), CreatePartitions
//! (key 37). Each topic succeeds or fails on its own, with the code Kafka uses.

use super::task::{check_topic_name, kstr, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{Command, Completion, TopicConfig, TopicRef};
use crate::config::Config;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::create_partitions_request::CreatePartitionsRequest;
use crate::protocol::generated::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use crate::protocol::generated::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use crate::protocol::generated::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use crate::protocol::generated::delete_topics_request::DeleteTopicsRequest;
use crate::protocol::generated::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use crate::protocol::{KStr, Response};
use crate::topic_config::{self, Limits};
use crate::work::{Outcome, Work};

type Refusal = (ErrorCode, String);

pub(crate) fn limits(config: &Config) -> Limits {
    Limits {
        max_retention_bytes: config.max_retention_bytes,
    }
}

fn message(version: i16, min: i16, text: String) -> Option<KStr> {
    (version >= min).then(|| kstr(&text))
}

/// The names that appear more than once: Kafka refuses every occurrence with INVALID_REQUEST.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    let mut dup = Vec::new();
    for n in names {
        if seen.contains(&n) {
            if !dup.contains(&n) {
                dup.push(n);
            }
        } else {
            seen.push(n);
        }
    }
    dup
}

/// Every replica list must name this broker alone: it is the only one.
fn check_assignment(config: &Config, brokers: &[i32]) -> Result<(), Refusal> {
    if brokers == [config.node_id] {
        Ok(())
    } else {
        Err((
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "replica assignment {brokers:?} is not possible: the only broker is {}",
                config.node_id
            ),
        ))
    }
}

fn check_partitions(config: &Config, n: i64) -> Result<u32, Refusal> {
    if n <= 0 {
        return Err((
            ErrorCode::INVALID_PARTITIONS,
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    match u32::try_from(n) {
        Ok(n) if n <= config.max_partitions => Ok(n),
        _ => Err((
            ErrorCode::INVALID_PARTITIONS,
            format!(
                "{n} partitions exceed the gateway's limit of {}",
                config.max_partitions
            ),
        )),
    }
}

/// Checks one topic of a CreateTopics request; gives its partition count and configuration.
fn plan_topic(config: &Config, t: &CreatableTopic) -> Result<(u32, TopicConfig), Refusal> {
    check_topic_name(&t.name).map_err(|m| (ErrorCode::INVALID_TOPIC_EXCEPTION, m))?;
    let partitions = if t.assignments.is_empty() {
        let n = if t.num_partitions == -1 {
            i64::from(config.default_partitions)
        } else {
            i64::from(t.num_partitions)
        };
        match t.replication_factor {
            -1 | 1 => {}
            rf if rf <= 0 => {
                return Err((
                    ErrorCode::INVALID_REPLICATION_FACTOR,
                    "Replication factor must be larger than 0, or -1 to use the default value."
                        .into(),
                ))
            }
            rf => {
                return Err((
                    ErrorCode::INVALID_REPLICATION_FACTOR,
                    format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
                ))
            }
        }
        check_partitions(config, n)?
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        for (i, a) in t.assignments.iter().enumerate() {
            if usize::try_from(a.partition_index).ok() != Some(i) {
                return Err((
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    "partitions of a replica assignment must be numbered consecutively from 0"
                        .into(),
                ));
            }
            check_assignment(config, &a.broker_ids)?;
        }
        check_partitions(
            config,
            i64::try_from(t.assignments.len()).unwrap_or(i64::MAX),
        )?
    };
    let mut topic_config = TopicConfig::default();
    for c in &t.configs {
        topic_config::apply(
            &mut topic_config,
            &c.name,
            c.value.as_deref(),
            limits(config),
        )
        .map_err(|e| (ErrorCode::INVALID_CONFIG, e.to_string()))?;
    }
    Ok((partitions, topic_config))
}

#[derive(Debug)]
pub(crate) struct CreateTopicsTask {
    req: CreateTopicsRequest,
    response: Option<CreateTopicsResponse>,
    sent: Vec<usize>,
}

impl CreateTopicsTask {
    pub(crate) fn new(req: CreateTopicsRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }
}

impl Task for CreateTopicsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        let Some(response) = self.response.as_mut() else {
            let dup = duplicates(self.req.topics.iter().map(|t| t.name.as_str()));
            let mut response = CreateTopicsResponse::default();
            let mut commands = Vec::new();
            for (i, t) in self.req.topics.iter().enumerate() {
                let mut slot = CreatableTopicResult {
                    name: t.name.clone(),
                    ..CreatableTopicResult::default()
                };
                let plan = if dup.contains(&t.name.as_str()) {
                    Err((
                        ErrorCode::INVALID_REQUEST,
                        format!(
                            "Create topics request from client contains duplicate topic {}",
                            t.name
                        ),
                    ))
                } else if !ctx.allows(Action::Create(&t.name)) {
                    Err((
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                        "Authorization failed.".to_string(),
                    ))
                } else {
                    plan_topic(ctx.config, t)
                };
                match plan {
                    Ok((partitions, config)) => {
                        commands.push(Work::Store(Command::CreateTopic {
                            name: t.name.to_string(),
                            partitions,
                            config,
                            validate_only: self.req.validate_only,
                        }));
                        self.sent.push(i);
                    }
                    Err((code, why)) => {
                        tracing::debug!(topic = %t.name, code = code.name(), why, "create topic refused");
                        slot.error_code = code.into();
                        slot.error_message = message(version, 1, why);
                    }
                }
                response.topics.push(slot);
            }
            self.response = Some(response);
            return Step::Run(commands);
        };
        for (&i, completion) in self.sent.iter().zip(results) {
            let slot = &mut response.topics[i];
            match completion {
                Outcome::Store(Completion::CreateTopic(Ok(info))) => {
                    if !self.req.validate_only {
                        tracing::info!(topic = %info.name, partitions = info.partitions, "created topic");
                    }
                    if version >= 7 {
                        slot.topic_id = info.id;
                    }
                    if version >= 5 {
                        slot.num_partitions = i32::try_from(info.partitions).unwrap_or(i32::MAX);
                        slot.replication_factor = 1;
                        slot.configs = Some(
                            topic_config::describe(
                                &info.config,
                                ctx.config.default_retention_bytes,
                            )
                            .into_iter()
                            .map(|e| CreatableTopicConfigs {
                                name: kstr(e.def.name),
                                value: Some(kstr(&e.value)),
                                read_only: !e.def.honoured,
                                config_source: if e.is_override { 1 } else { 5 },
                                is_sensitive: false,
                                ..CreatableTopicConfigs::default()
                            })
                            .collect(),
                        );
                    }
                }
                Outcome::Store(Completion::CreateTopic(Err(e))) => {
                    slot.error_code = e.error_code().into();
                    slot.error_message = message(version, 1, e.to_string());
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::CreateTopics(
            self.response.take().unwrap_or_default(),
        ))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        let mut response = self.response.take().unwrap_or_default();
        for &i in &self.sent {
            response.topics[i].error_code = ErrorCode::REQUEST_TIMED_OUT.into();
        }
        Step::Respond(Response::CreateTopics(response))
    }
}

#[derive(Debug)]
pub(crate) struct DeleteTopicsTask {
    req: DeleteTopicsRequest,
    response: Option<DeleteTopicsResponse>,
    sent: Vec<usize>,
}

impl DeleteTopicsTask {
    pub(crate) fn new(req: DeleteTopicsRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }
}

impl Task for DeleteTopicsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let version = ctx.version;
        let Some(response) = self.response.as_mut() else {
            let targets: Vec<Option<TopicRef>> = if version >= 6 {
                self.req
                    .topics
                    .iter()
                    .map(|t| match (&t.name, t.topic_id.is_nil()) {
                        (Some(name), true) => Some(TopicRef::Name(name.to_string())),
                        (None, false) => Some(TopicRef::Id(t.topic_id)),
                        _ => None,
                    })
                    .collect()
            } else {
                self.req
                    .topic_names
                    .iter()
                    .map(|n| Some(TopicRef::Name(n.to_string())))
                    .collect()
            };
            let mut response = DeleteTopicsResponse::default();
            let mut commands = Vec::new();
            for (i, target) in targets.into_iter().enumerate() {
                let mut slot = DeletableTopicResult::default();
                let denied = match &target {
                    Some(TopicRef::Name(n)) => !ctx.allows(Action::Manage(n)),
                    // The name, which permissions are about, is not known before the
                    // deletion: with an authorizer, topics are deleted by name.
                    Some(TopicRef::Id(_)) => ctx.config.authorizer.is_some(),
                    None => false,
                };
                match target {
                    Some(topic) if denied => {
                        match &topic {
                            TopicRef::Name(n) => slot.name = Some(kstr(n)),
                            TopicRef::Id(id) => slot.topic_id = *id,
                        }
                        slot.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.into();
                        slot.error_message = message(version, 5, "Authorization failed.".into());
                    }
                    Some(topic) => {
                        match &topic {
                            TopicRef::Name(n) => slot.name = Some(kstr(n)),
                            TopicRef::Id(id) => {
                                slot.name = None;
                                slot.topic_id = *id;
                            }
                        }
                        commands.push(Work::Store(Command::DeleteTopic { topic }));
                        self.sent.push(i);
                    }
                    None => {
                        slot.error_code = ErrorCode::INVALID_REQUEST.into();
                        slot.error_message =
                            message(version, 5, "give either a topic name or a topic id".into());
                        slot.name = self.req.topics.get(i).and_then(|t| t.name.clone());
                    }
                }
                response.responses.push(slot);
            }
            self.response = Some(response);
            return Step::Run(commands);
        };
        for (&i, completion) in self.sent.iter().zip(results) {
            let slot = &mut response.responses[i];
            match completion {
                Outcome::Store(Completion::DeleteTopic(Ok(info))) => {
                    tracing::info!(topic = %info.name, "deleted topic");
                    slot.name = Some(kstr(&info.name));
                    if version >= 6 {
                        slot.topic_id = info.id;
                    }
                }
                Outcome::Store(Completion::DeleteTopic(Err(e))) => {
                    let mut code = e.error_code();
                    if version < 6 && code == ErrorCode::UNKNOWN_TOPIC_ID {
                        code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION;
                    }
                    slot.error_code = code.into();
                    slot.error_message = message(version, 5, e.to_string());
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::DeleteTopics(
            self.response.take().unwrap_or_default(),
        ))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        let mut response = self.response.take().unwrap_or_default();
        for &i in &self.sent {
            response.responses[i].error_code = ErrorCode::REQUEST_TIMED_OUT.into();
        }
        Step::Respond(Response::DeleteTopics(response))
    }
}

#[derive(Debug)]
pub(crate) struct CreatePartitionsTask {
    req: CreatePartitionsRequest,
    response: Option<CreatePartitionsResponse>,
    sent: Vec<usize>,
}

impl CreatePartitionsTask {
    pub(crate) fn new(req: CreatePartitionsRequest) -> Self {
        Self {
            req,
            response: None,
            sent: Vec::new(),
        }
    }
}

impl Task for CreatePartitionsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let Some(response) = self.response.as_mut() else {
            let dup = duplicates(self.req.topics.iter().map(|t| t.name.as_str()));
            let mut response = CreatePartitionsResponse::default();
            let mut commands = Vec::new();
            for (i, t) in self.req.topics.iter().enumerate() {
                let mut slot = CreatePartitionsTopicResult {
                    name: t.name.clone(),
                    ..CreatePartitionsTopicResult::default()
                };
                let plan = if dup.contains(&t.name.as_str()) {
                    Err((
                        ErrorCode::INVALID_REQUEST,
                        "Duplicate topic in request.".to_string(),
                    ))
                } else if !ctx.allows(Action::Manage(&t.name)) {
                    Err((
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                        "The topic authorization is failed.".to_string(),
                    ))
                } else {
                    check_partitions(ctx.config, i64::from(t.count)).and_then(|n| {
                        for a in t.assignments.iter().flatten() {
                            check_assignment(ctx.config, &a.broker_ids)?;
                        }
                        Ok(n)
                    })
                };
                match plan {
                    Ok(total) => {
                        commands.push(Work::Store(Command::CreatePartitions {
                            topic: t.name.to_string(),
                            total,
                            validate_only: self.req.validate_only,
                        }));
                        self.sent.push(i);
                    }
                    Err((code, why)) => {
                        slot.error_code = code.into();
                        slot.error_message = Some(kstr(&why));
                    }
                }
                response.results.push(slot);
            }
            self.response = Some(response);
            return Step::Run(commands);
        };
        for (&i, completion) in self.sent.iter().zip(results) {
            let slot = &mut response.results[i];
            match completion {
                Outcome::Store(Completion::CreatePartitions(Ok(()))) => {}
                Outcome::Store(Completion::CreatePartitions(Err(e))) => {
                    slot.error_code = e.error_code().into();
                    slot.error_message = Some(kstr(&e.to_string()));
                }
                _ => slot.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.into(),
            }
        }
        Step::Respond(Response::CreatePartitions(
            self.response.take().unwrap_or_default(),
        ))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        let mut response = self.response.take().unwrap_or_default();
        for &i in &self.sent {
            response.results[i].error_code = ErrorCode::REQUEST_TIMED_OUT.into();
        }
        Step::Respond(Response::CreatePartitions(response))
    }
}
