//! DescribeCluster (key 60), FindCoordinator (key 10) and InitProducerId (key 22, with a
//! transactional id through the transaction coordinator): the
//! gateway as the one broker, controller and coordinator.

use super::task::{kstr, Ctx, Step, Task};
use crate::authz::{self, Action};
use crate::backend::{Command, Completion};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::describe_cluster_request::DescribeClusterRequest;
use crate::protocol::generated::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use crate::protocol::generated::find_coordinator_request::FindCoordinatorRequest;
use crate::protocol::generated::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use crate::protocol::generated::init_producer_id_request::InitProducerIdRequest;
use crate::protocol::generated::init_producer_id_response::InitProducerIdResponse;
use crate::protocol::Response;
use crate::txn::{TxnCall, TxnReply};
use crate::work::{Outcome, Work};

/// Builds the answers that need only the configuration; the connection supplies it.
#[derive(Debug)]
pub(crate) struct Static(pub(crate) StaticKind);

#[derive(Debug)]
pub(crate) enum StaticKind {
    DescribeCluster(DescribeClusterRequest),
    FindCoordinator(FindCoordinatorRequest),
}

impl Task for Static {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        Step::Respond(match &self.0 {
            StaticKind::DescribeCluster(r) => describe_cluster(r, ctx),
            StaticKind::FindCoordinator(r) => find_coordinator(r, ctx),
        })
    }
}

const BROKERS: i8 = 1;

fn describe_cluster(req: &DescribeClusterRequest, ctx: &Ctx<'_>) -> Response {
    let config = ctx.config;
    let mut response = DescribeClusterResponse {
        cluster_id: kstr(&config.cluster_id),
        controller_id: config.node_id,
        brokers: vec![DescribeClusterBroker {
            broker_id: config.node_id,
            host: kstr(&config.advertised_host),
            port: config.advertised_port,
            rack: None,
            ..DescribeClusterBroker::default()
        }],
        cluster_authorized_operations: if req.include_cluster_authorized_operations {
            authz::cluster_operations(|a| ctx.allows(a))
        } else {
            i32::MIN
        },
        ..DescribeClusterResponse::default()
    };
    if ctx.version >= 1 {
        response.endpoint_type = req.endpoint_type;
        if req.endpoint_type != BROKERS {
            response = DescribeClusterResponse {
                error_code: ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.into(),
                error_message: Some(kstr("the gateway serves broker endpoints only")),
                endpoint_type: req.endpoint_type,
                ..DescribeClusterResponse::default()
            };
        }
    }
    Response::DescribeCluster(response)
}

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

fn find_coordinator(req: &FindCoordinatorRequest, ctx: &Ctx<'_>) -> Response {
    let config = ctx.config;
    let answer = |key: &crate::protocol::KStr| {
        let mut c = Coordinator {
            key: key.clone(),
            node_id: config.node_id,
            host: kstr(&config.advertised_host),
            port: config.advertised_port,
            ..Coordinator::default()
        };
        if req.key_type == GROUP && !ctx.allows(Action::DescribeGroup(key)) {
            c.error_code = ErrorCode::GROUP_AUTHORIZATION_FAILED.into();
            c.error_message = Some(kstr("Not authorized to describe the group."));
            c.node_id = -1;
            c.host = kstr("");
            c.port = -1;
        } else if req.key_type == TRANSACTION && !ctx.allows(Action::DescribeTransactionalId(key)) {
            c.error_code = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.into();
            c.error_message = Some(kstr("Not authorized to describe the transactional id."));
            c.node_id = -1;
            c.host = kstr("");
            c.port = -1;
        } else if req.key_type != GROUP && !(req.key_type == TRANSACTION && config.transactions) {
            // With a backend that keeps no transactions there is no transaction coordinator.
            // Clients retry COORDINATOR_NOT_AVAILABLE for ever;
            // TRANSACTIONAL_ID_AUTHORIZATION_FAILED is fatal to a transactional producer at
            // once, as InitProducerId answers it. Other key types (share groups) are not
            // served.
            let (code, message) = if req.key_type == TRANSACTION {
                (
                    ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "the gateway's backend does not serve transactions",
                )
            } else {
                (
                    ErrorCode::INVALID_REQUEST,
                    "the gateway coordinates consumer groups only",
                )
            };
            c.error_code = code.into();
            c.error_message = Some(kstr(message));
            c.node_id = -1;
            c.host = kstr("");
            c.port = -1;
        }
        c
    };
    if ctx.version >= 4 {
        return Response::FindCoordinator(FindCoordinatorResponse {
            coordinators: req.coordinator_keys.iter().map(answer).collect(),
            ..FindCoordinatorResponse::default()
        });
    }
    let c = answer(&req.key);
    Response::FindCoordinator(FindCoordinatorResponse {
        error_code: c.error_code,
        error_message: if ctx.version >= 1 {
            c.error_message
        } else {
            None
        },
        node_id: c.node_id,
        host: c.host,
        port: c.port,
        ..FindCoordinatorResponse::default()
    })
}

#[derive(Debug)]
pub(crate) struct InitProducerIdTask {
    req: InitProducerIdRequest,
    started: bool,
}

impl InitProducerIdTask {
    pub(crate) fn new(req: InitProducerIdRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }
}

fn producer_id_response(code: ErrorCode, id: i64, epoch: i16) -> Step {
    Step::Respond(Response::InitProducerId(InitProducerIdResponse {
        error_code: code.into(),
        producer_id: id,
        producer_epoch: epoch,
        ..InitProducerIdResponse::default()
    }))
}

impl Task for InitProducerIdTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(id) = &self.req.transactional_id {
            return self.transactional(ctx, id.to_string(), results);
        }
        if !std::mem::replace(&mut self.started, true) {
            // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
            if !ctx.allows(Action::IdempotentWrite) {
                return producer_id_response(ErrorCode::CLUSTER_AUTHORIZATION_FAILED, -1, -1);
            }
            if let Err(code) = self.expected() {
                return producer_id_response(code, -1, -1);
            }
            if self.req.producer_id >= 0 && self.req.producer_epoch >= 0 {
                // KIP-360: an idempotent producer bumps its epoch and keeps its id.
                return match self.req.producer_epoch.checked_add(1) {
                    Some(epoch) => {
                        producer_id_response(ErrorCode::NONE, self.req.producer_id, epoch)
                    }
                    None => Step::Run(vec![Work::Store(Command::AllocateProducerId)]),
                };
            }
            return Step::Run(vec![Work::Store(Command::AllocateProducerId)]);
        }
        match super::task::single(results) {
            Some(Outcome::Store(Completion::AllocateProducerId(Ok(id)))) => {
                producer_id_response(ErrorCode::NONE, id, 0)
            }
            Some(Outcome::Store(Completion::AllocateProducerId(Err(e)))) => {
                producer_id_response(e.error_code(), -1, -1)
            }
            _ => producer_id_response(ErrorCode::UNKNOWN_SERVER_ERROR, -1, -1),
        }
    }
}

impl InitProducerIdTask {
    /// The producer id and epoch the producer has now (v3+), if it says so: both -1 for
    /// none, one of them alone -1 is an INVALID_REQUEST (Kafka's
    /// `handleInitProducerIdRequest`).
    fn expected(&self) -> Result<Option<(i64, i16)>, ErrorCode> {
        match (self.req.producer_id, self.req.producer_epoch) {
            (-1, -1) => Ok(None),
            (-1, _) | (_, -1) => Err(ErrorCode::INVALID_REQUEST),
            (id, epoch) => Ok(Some((id, epoch))),
        }
    }

    /// A transactional producer: a producer id allocated first (used only when the
    /// transactional id needs a new one), then the coordinator's answer.
    fn transactional(&mut self, ctx: &Ctx<'_>, id: String, results: Vec<Outcome>) -> Step {
        if !ctx.config.transactions || !ctx.allows(Action::WriteTransactionalId(&id)) {
            return producer_id_response(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
        }
        let expected = match self.expected() {
            Ok(expected) => expected,
            Err(code) => return producer_id_response(code, -1, -1),
        };
        if !std::mem::replace(&mut self.started, true) {
            return Step::Run(vec![Work::Store(Command::AllocateProducerId)]);
        }
        match super::task::single(results) {
            Some(Outcome::Store(Completion::AllocateProducerId(Ok(fresh_id)))) => {
                Step::Run(vec![Work::Txn(TxnCall::InitProducerId {
                    transactional_id: super::transactions::txn_key(ctx, &id),
                    timeout_ms: self.req.transaction_timeout_ms,
                    expected,
                    fresh_id,
                })])
            }
            Some(Outcome::Store(Completion::AllocateProducerId(Err(e)))) => {
                producer_id_response(e.error_code(), -1, -1)
            }
            Some(Outcome::Txn(TxnReply::InitProducerId(Ok((pid, epoch))))) => {
                producer_id_response(ErrorCode::NONE, pid, epoch)
            }
            Some(Outcome::Txn(TxnReply::InitProducerId(Err(mut code)))) => {
                // Before v4, producers knew no PRODUCER_FENCED: Kafka answers
                // INVALID_PRODUCER_EPOCH.
                if code == ErrorCode::PRODUCER_FENCED && ctx.version < 4 {
                    code = ErrorCode::INVALID_PRODUCER_EPOCH;
                }
                producer_id_response(code, -1, -1)
            }
            _ => producer_id_response(ErrorCode::UNKNOWN_SERVER_ERROR, -1, -1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::Config;
    use crate::protocol::KStr;

    fn init(transactional_id: Option<&str>, producer_id: i64, producer_epoch: i16) -> Step {
        let config = Config {
            transactions: true,
            ..Config::default()
        };
        let ctx = Ctx {
            config: &config,
            now: Instant::now(),
            version: 4,
            closing: false,
            client_id: None,
            client_host: "",
            principal: None,
        };
        let mut task = InitProducerIdTask::new(InitProducerIdRequest {
            transactional_id: transactional_id.map(KStr::from),
            transaction_timeout_ms: 10_000,
            producer_id,
            producer_epoch,
            ..InitProducerIdRequest::default()
        });
        task.step(&ctx, Vec::new())
    }

    fn code(step: &Step) -> Option<i16> {
        match step {
            Step::Respond(Response::InitProducerId(r)) => Some(r.error_code),
            _ => None,
        }
    }

    /// Kafka refuses a producer id without an epoch, or an epoch without a producer id.
    #[test]
    fn half_a_producer_is_an_invalid_request() {
        let invalid = Some(ErrorCode::INVALID_REQUEST.into());
        for id in [None, Some("tx")] {
            assert_eq!(code(&init(id, -1, 3)), invalid);
            assert_eq!(code(&init(id, 7, -1)), invalid);
            assert!(matches!(init(id, -1, -1), Step::Run(_)));
        }
        assert_eq!(code(&init(None, 7, 3)), Some(ErrorCode::NONE.into()));
        assert!(matches!(init(Some("tx"), 7, 3), Step::Run(_)));
    }
}
