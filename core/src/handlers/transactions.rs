//! AddPartitionsToTxn (key 24), AddOffsetsToTxn (key 25), EndTxn (key 26),
//! TxnOffsetCommit (key 28), DescribeTransactions (key 65) and ListTransactions (key 66):
//! calls on the transaction coordinator (`crate::txn`), which answers with Kafka's codes.
//! InitProducerId with a transactional id is in `cluster.rs`. Each checks Kafka's WRITE or
//! DESCRIBE on the transactional id where Kafka's `KafkaApis` does (docs/SECURITY.md).

use super::task::{partition_index, single, Ctx, Step, Task};
use std::collections::HashMap;

use crate::authz::Action;
use crate::backend::{Command, CommittedOffset, Completion, GroupOffset, TopicRef};
use crate::group::{GroupCall, GroupReply, MemberRef};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use crate::protocol::generated::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use crate::protocol::generated::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use crate::protocol::generated::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};
use crate::protocol::generated::describe_transactions_request::DescribeTransactionsRequest;
use crate::protocol::generated::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState as DescribedTransaction,
};
use crate::protocol::generated::end_txn_request::EndTxnRequest;
use crate::protocol::generated::end_txn_response::EndTxnResponse;
use crate::protocol::generated::list_transactions_request::ListTransactionsRequest;
use crate::protocol::generated::list_transactions_response::{
    ListTransactionsResponse, TransactionState as ListedTransaction,
};
use crate::protocol::generated::txn_offset_commit_request::TxnOffsetCommitRequest;
use crate::protocol::generated::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use crate::protocol::{KStr, Response};
use crate::txn::{TxnCall, TxnReply};
use crate::work::{Outcome, Work};
use std::time::Duration;

/// The coordinator's key for a transactional id. With an authorizer, each principal has
/// transactional ids of its own, besides needing WRITE on them: the rule for that
/// ([`Action::WriteTransactionalId`]) names no id, since Iggy has no transactional-id
/// resource, and without this one principal could fence another's producer by taking its
/// transactional id.
pub(crate) fn txn_key(ctx: &Ctx<'_>, id: &str) -> String {
    if ctx.config.authorizer.is_some() {
        format!("{}\u{0}{id}", ctx.principal.unwrap_or(""))
    } else {
        id.to_owned()
    }
}

/// The transactional id a coordinator key shows this principal, if it is one of its own.
fn shown<'k>(ctx: &Ctx<'_>, key: &'k str) -> Option<&'k str> {
    if ctx.config.authorizer.is_some() {
        key.strip_prefix(ctx.principal.unwrap_or(""))?
            .strip_prefix('\u{0}')
    } else {
        Some(key)
    }
}

/// Clients before `since` know no PRODUCER_FENCED: Kafka answers them INVALID_PRODUCER_EPOCH.
fn for_version(code: ErrorCode, version: i16, since: i16) -> ErrorCode {
    if code == ErrorCode::PRODUCER_FENCED && version < since {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// The reply of a one-call step.
fn txn_reply(results: Vec<Outcome>) -> Option<TxnReply> {
    match single(results) {
        Some(Outcome::Txn(r)) => Some(r),
        _ => None,
    }
}

/// A partition asked for, and an error decided before asking the coordinator.
type PartitionPlan = (i32, Option<ErrorCode>);

/// One transaction of an AddPartitionsToTxn (v0–3 carry one, v4+ several).
#[derive(Debug)]
struct Batch {
    transactional_id: KStr,
    /// Per topic, per partition: an error decided before asking the coordinator.
    refused: Vec<(KStr, Vec<PartitionPlan>)>,
    /// The partitions asked of the coordinator, in order.
    asked: Vec<(String, u32)>,
}

#[derive(Debug)]
pub(crate) struct AddPartitionsTask {
    req: AddPartitionsToTxnRequest,
    batches: Vec<Batch>,
    /// 0: list the topics named; 1: ask the coordinator; 2: answer.
    stage: u8,
}

impl AddPartitionsTask {
    pub(crate) fn new(req: AddPartitionsToTxnRequest) -> Self {
        Self {
            req,
            batches: Vec::new(),
            stage: 0,
        }
    }

    fn topics(&self, version: i16) -> Vec<&AddPartitionsToTxnTopic> {
        if version >= 4 {
            self.req
                .transactions
                .iter()
                .flat_map(|t| t.topics.iter())
                .collect()
        } else {
            self.req.v3_and_below_topics.iter().collect()
        }
    }
}

/// Which partitions of a transaction are asked of the coordinator, and which are refused
/// first: a topic the principal may not write to, a partition that does not exist (as
/// Kafka checks, so that a transaction names only partitions its markers can reach).
fn plan(
    ctx: &Ctx<'_>,
    transactional_id: &KStr,
    topics: &[AddPartitionsToTxnTopic],
    known: &HashMap<String, u32>,
) -> Batch {
    let mut refused = Vec::new();
    let mut asked = Vec::new();
    // v0–3 come from the producer, which needs WRITE on its transactional id: Kafka
    // answers every partition with its refusal and looks at no topic.
    if ctx.version < 4 && !ctx.allows(Action::WriteTransactionalId(transactional_id)) {
        let refusal = Some(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        for t in topics {
            refused.push((
                t.name.clone(),
                t.partitions.iter().map(|&p| (p, refusal)).collect(),
            ));
        }
        return Batch {
            transactional_id: transactional_id.clone(),
            refused,
            asked,
        };
    }
    let mut denied = false;
    for t in topics {
        // v4+ is a broker's request, authorized as a whole by CLUSTER_ACTION: Kafka checks
        // no topic of it.
        let allowed = ctx.version >= 4 || ctx.allows(Action::Send(&t.name));
        denied |= !allowed;
        let mut parts = Vec::new();
        for &p in &t.partitions {
            let exists = |q: u32| known.get(t.name.as_str()).is_some_and(|&n| q < n);
            let err = match partition_index(p) {
                _ if !allowed => Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED),
                Some(q) if exists(q) => {
                    asked.push((t.name.to_string(), q));
                    None
                }
                _ => Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            };
            parts.push((p, err));
        }
        refused.push((t.name.clone(), parts));
    }
    if denied
        || refused
            .iter()
            .any(|(_, ps)| ps.iter().any(|(_, e)| e.is_some()))
    {
        // Kafka adds none of them when one is refused: the others are not attempted.
        for (_, ps) in &mut refused {
            for (_, e) in ps.iter_mut() {
                e.get_or_insert(ErrorCode::OPERATION_NOT_ATTEMPTED);
            }
        }
        asked.clear();
    }
    Batch {
        transactional_id: transactional_id.clone(),
        refused,
        asked,
    }
}

impl Task for AddPartitionsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        match self.stage {
            // The batched form (v4+) is what brokers send one another (clients send v3 and
            // below): Kafka requires CLUSTER_ACTION on the cluster, and refuses the whole
            // request at its top level otherwise.
            0 if ctx.version >= 4 && !ctx.allows(Action::AlterCluster) => {
                Step::Respond(Response::AddPartitionsToTxn(AddPartitionsToTxnResponse {
                    error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into(),
                    ..AddPartitionsToTxnResponse::default()
                }))
            }
            // A producer without WRITE on its transactional id: refused before any listing.
            0 if ctx.version < 4
                && !ctx.allows(Action::WriteTransactionalId(
                    &self.req.v3_and_below_transactional_id,
                )) =>
            {
                self.stage = 2;
                // Every partition refused: nothing is asked of the coordinator.
                let none = self.ask(ctx, &HashMap::new());
                debug_assert!(none.is_empty());
                self.respond(ctx, Vec::new())
            }
            0 => {
                self.stage = 1;
                Step::Run(vec![list_named(
                    self.topics(ctx.version).iter().map(|t| t.name.to_string()),
                )])
            }
            1 => {
                self.stage = 2;
                let known: HashMap<String, u32> = match single(results) {
                    Some(Outcome::Store(Completion::ListTopics(Ok(topics)))) => {
                        topics.into_iter().map(|t| (t.name, t.partitions)).collect()
                    }
                    // Not known: every partition is answered as unknown.
                    _ => HashMap::new(),
                };
                let work = self.ask(ctx, &known);
                if work.is_empty() {
                    return self.respond(ctx, Vec::new());
                }
                Step::Run(work)
            }
            _ => self.respond(ctx, results),
        }
    }
}

impl AddPartitionsTask {
    /// Plans each transaction and makes the coordinator's calls.
    fn ask(&mut self, ctx: &Ctx<'_>, known: &HashMap<String, u32>) -> Vec<Work> {
        let mut calls = Vec::new();
        if ctx.version >= 4 {
            for t in &self.req.transactions {
                let b = plan(ctx, &t.transactional_id, &t.topics, known);
                calls.push(TxnCall::AddPartitions {
                    transactional_id: txn_key(ctx, &t.transactional_id),
                    producer_id: t.producer_id,
                    epoch: t.producer_epoch,
                    partitions: b.asked.clone(),
                    verify_only: t.verify_only,
                });
                self.batches.push(b);
            }
        } else {
            let b = plan(
                ctx,
                &self.req.v3_and_below_transactional_id,
                &self.req.v3_and_below_topics,
                known,
            );
            calls.push(TxnCall::AddPartitions {
                transactional_id: txn_key(ctx, &self.req.v3_and_below_transactional_id),
                producer_id: self.req.v3_and_below_producer_id,
                epoch: self.req.v3_and_below_producer_epoch,
                partitions: b.asked.clone(),
                verify_only: false,
            });
            self.batches.push(b);
        }
        self.batches
            .iter()
            .zip(calls)
            .filter(|(b, _)| !b.asked.is_empty())
            .map(|(_, c)| Work::Txn(c))
            .collect()
    }

    fn respond(&self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let mut replies = results.into_iter();
        let mut out = Vec::new();
        for b in &self.batches {
            let codes = if b.asked.is_empty() {
                Vec::new()
            } else {
                match replies.next() {
                    Some(Outcome::Txn(TxnReply::AddPartitions(codes))) => codes
                        .into_iter()
                        .map(|c| for_version(c, ctx.version, 2))
                        .collect(),
                    _ => vec![ErrorCode::UNKNOWN_SERVER_ERROR; b.asked.len()],
                }
            };
            let mut codes = codes.into_iter();
            let topics = b
                .refused
                .iter()
                .map(|(name, parts)| AddPartitionsToTxnTopicResult {
                    name: name.clone(),
                    results_by_partition: parts
                        .iter()
                        .map(|&(p, e)| AddPartitionsToTxnPartitionResult {
                            partition_index: p,
                            partition_error_code: e
                                .or_else(|| codes.next())
                                .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR)
                                .into(),
                            ..AddPartitionsToTxnPartitionResult::default()
                        })
                        .collect(),
                    ..AddPartitionsToTxnTopicResult::default()
                })
                .collect();
            out.push(AddPartitionsToTxnResult {
                transactional_id: b.transactional_id.clone(),
                topic_results: topics,
                ..AddPartitionsToTxnResult::default()
            });
        }
        let mut response = AddPartitionsToTxnResponse::default();
        if ctx.version >= 4 {
            response.results_by_transaction = out;
        } else {
            response.results_by_topic_v3_and_below =
                out.pop().map(|r| r.topic_results).unwrap_or_default();
        }
        Step::Respond(Response::AddPartitionsToTxn(response))
    }
}

#[derive(Debug)]
pub(crate) struct AddOffsetsTask {
    req: AddOffsetsToTxnRequest,
    started: bool,
}

impl AddOffsetsTask {
    pub(crate) fn new(req: AddOffsetsToTxnRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }
}

impl Task for AddOffsetsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.started, true) {
            // As Kafka: the transactional id first, then the group.
            let refusal = if !ctx.allows(Action::WriteTransactionalId(&self.req.transactional_id)) {
                Some(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if !ctx.allows(Action::ReadGroup(&self.req.group_id)) {
                Some(ErrorCode::GROUP_AUTHORIZATION_FAILED)
            } else {
                None
            };
            if let Some(code) = refusal {
                return Step::Respond(Response::AddOffsetsToTxn(AddOffsetsToTxnResponse {
                    error_code: code.into(),
                    ..AddOffsetsToTxnResponse::default()
                }));
            }
            return Step::Run(vec![Work::Txn(TxnCall::AddOffsets {
                transactional_id: txn_key(ctx, &self.req.transactional_id),
                producer_id: self.req.producer_id,
                epoch: self.req.producer_epoch,
                group: self.req.group_id.to_string(),
            })]);
        }
        let code = match txn_reply(results) {
            Some(TxnReply::Code(c)) => for_version(c, ctx.version, 2),
            _ => ErrorCode::UNKNOWN_SERVER_ERROR,
        };
        Step::Respond(Response::AddOffsetsToTxn(AddOffsetsToTxnResponse {
            error_code: code.into(),
            ..AddOffsetsToTxnResponse::default()
        }))
    }
}

#[derive(Debug)]
pub(crate) struct EndTxnTask {
    req: EndTxnRequest,
    started: bool,
}

impl EndTxnTask {
    pub(crate) fn new(req: EndTxnRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }
}

impl Task for EndTxnTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.started, true) {
            if !ctx.allows(Action::WriteTransactionalId(&self.req.transactional_id)) {
                return Step::Respond(Response::EndTxn(EndTxnResponse {
                    error_code: ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.into(),
                    producer_id: -1,
                    producer_epoch: -1,
                    ..EndTxnResponse::default()
                }));
            }
            return Step::Run(vec![Work::Txn(TxnCall::EndTxn {
                transactional_id: txn_key(ctx, &self.req.transactional_id),
                producer_id: self.req.producer_id,
                epoch: self.req.producer_epoch,
                commit: self.req.committed,
            })]);
        }
        let code = match txn_reply(results) {
            Some(TxnReply::EndTxn(c)) => for_version(c, ctx.version, 2),
            _ => ErrorCode::UNKNOWN_SERVER_ERROR,
        };
        // v5+ (transaction version 2) would carry the bumped epoch; the gateway serves
        // version 1, whose epoch does not change.
        let (producer_id, producer_epoch) = if code == ErrorCode::NONE {
            (self.req.producer_id, self.req.producer_epoch)
        } else {
            (-1, -1)
        };
        Step::Respond(Response::EndTxn(EndTxnResponse {
            error_code: code.into(),
            producer_id,
            producer_epoch,
            ..EndTxnResponse::default()
        }))
    }

    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        // The markers are still being written; the producer retries and is told
        // CONCURRENT_TRANSACTIONS until they are.
        Step::Respond(Response::EndTxn(EndTxnResponse {
            error_code: ErrorCode::CONCURRENT_TRANSACTIONS.into(),
            producer_id: -1,
            producer_epoch: -1,
            ..EndTxnResponse::default()
        }))
    }
}

#[derive(Debug)]
pub(crate) struct TxnOffsetCommitTask {
    req: TxnOffsetCommitRequest,
    /// 0: check the group and ask for its topics (and the member's check); 1: ask the
    /// coordinator; 2: answer.
    stage: u8,
    /// Per topic and partition: an error decided before asking the coordinator.
    refused: Vec<Vec<Option<ErrorCode>>>,
}

impl TxnOffsetCommitTask {
    pub(crate) fn new(req: TxnOffsetCommitRequest) -> Self {
        Self {
            req,
            stage: 0,
            refused: Vec::new(),
        }
    }

    /// v3+ names the member and its generation: the group checks them, as for
    /// OffsetCommit (KIP-447: a consumer of an older generation is fenced here). Without
    /// them, as before v3, Kafka checks nothing of the group.
    fn member_checked(&self, version: i16) -> bool {
        version >= 3 && (!self.req.member_id.is_empty() || self.req.generation_id >= 0)
    }
}

impl Task for TxnOffsetCommitTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if self.stage == 0 {
            // As Kafka: the transactional id first, then the group, each refusing every
            // partition.
            let refusal = if !ctx.allows(Action::WriteTransactionalId(&self.req.transactional_id)) {
                Some(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if !ctx.allows(Action::ReadGroup(&self.req.group_id)) {
                Some(ErrorCode::GROUP_AUTHORIZATION_FAILED)
            } else {
                None
            };
            if let Some(code) = refusal {
                self.stage = 2;
                self.refused = self
                    .req
                    .topics
                    .iter()
                    .map(|t| vec![Some(code); t.partitions.len()])
                    .collect();
                return self.respond(ctx, Vec::new());
            }
            self.stage = 1;
            // The topics named, to answer those that do not exist as Kafka does.
            let mut work = vec![list_named(
                self.req.topics.iter().map(|t| t.name.to_string()),
            )];
            if self.member_checked(ctx.version) {
                work.push(Work::Group(GroupCall::Commit(MemberRef {
                    group: self.req.group_id.to_string(),
                    member_id: self.req.member_id.to_string(),
                    instance_id: self.req.group_instance_id.as_ref().map(ToString::to_string),
                    generation: self.req.generation_id,
                })));
            }
            return Step::Run(work);
        }
        if self.stage == 1 {
            self.stage = 2;
            let mut results = results.into_iter();
            let known: Result<HashMap<String, u32>, ErrorCode> = match results.next() {
                Some(Outcome::Store(Completion::ListTopics(Ok(topics)))) => {
                    Ok(topics.into_iter().map(|t| (t.name, t.partitions)).collect())
                }
                Some(Outcome::Store(Completion::ListTopics(Err(e)))) => {
                    Err(super::coordinator_error(&e))
                }
                _ => Err(ErrorCode::UNKNOWN_SERVER_ERROR),
            };
            let member = if self.member_checked(ctx.version) {
                match results.next() {
                    Some(Outcome::Group(GroupReply::Commit(code))) => code,
                    _ => ErrorCode::UNKNOWN_SERVER_ERROR,
                }
            } else {
                ErrorCode::NONE
            };
            // As Kafka: a topic the principal may not read, then a topic or partition that
            // does not exist, each answered on its own; the rest go to the coordinator,
            // whose refusal (the member's, or the store's) is theirs.
            let fail = match (&known, member) {
                (Err(code), _) => Some(*code),
                (Ok(_), ErrorCode::NONE) => None,
                (Ok(_), code) => Some(code),
            };
            let mut offsets = Vec::new();
            for t in &self.req.topics {
                let allowed = ctx.allows(Action::Poll(&t.name));
                let partitions = known
                    .as_ref()
                    .ok()
                    .and_then(|k| k.get(t.name.as_str()).copied());
                let mut errs = Vec::new();
                for p in &t.partitions {
                    let index = partition_index(p.partition_index);
                    let exists = |q: u32| partitions.is_some_and(|n| q < n);
                    let err = match index {
                        _ if !allowed => Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED),
                        _ if fail.is_some() && known.is_err() => fail,
                        Some(q) if exists(q) => match fail {
                            Some(code) => Some(code),
                            None => {
                                offsets.push(GroupOffset {
                                    topic: t.name.to_string(),
                                    partition: q,
                                    committed: CommittedOffset {
                                        offset: p.committed_offset,
                                        leader_epoch: p.committed_leader_epoch,
                                        metadata: p
                                            .committed_metadata
                                            .as_ref()
                                            .map(|m| m.to_string()),
                                    },
                                });
                                None
                            }
                        },
                        _ => Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                    };
                    errs.push(err);
                }
                self.refused.push(errs);
            }
            if !offsets.is_empty() {
                return Step::Run(vec![Work::Txn(TxnCall::CommitOffsets {
                    transactional_id: txn_key(ctx, &self.req.transactional_id),
                    producer_id: self.req.producer_id,
                    epoch: self.req.producer_epoch,
                    group: self.req.group_id.to_string(),
                    offsets,
                })]);
            }
            return self.respond(ctx, Vec::new());
        }
        self.respond(ctx, results)
    }
}

impl TxnOffsetCommitTask {
    fn respond(&self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        let code = match txn_reply(results) {
            Some(TxnReply::Code(c)) => c,
            None => ErrorCode::NONE,
            Some(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
        };
        let code = for_version(code, ctx.version, 2);
        let topics = self
            .req
            .topics
            .iter()
            .zip(&self.refused)
            .map(|(t, errs)| TxnOffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .zip(errs)
                    .map(|(p, e)| TxnOffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: e.unwrap_or(code).into(),
                        ..TxnOffsetCommitResponsePartition::default()
                    })
                    .collect(),
                ..TxnOffsetCommitResponseTopic::default()
            })
            .collect();
        Step::Respond(Response::TxnOffsetCommit(TxnOffsetCommitResponse {
            topics,
            ..TxnOffsetCommitResponse::default()
        }))
    }
}

/// The states Kafka's ListTransactions filters by.
const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

#[derive(Debug)]
pub(crate) struct ListTransactionsTask {
    req: ListTransactionsRequest,
    started: bool,
}

impl ListTransactionsTask {
    pub(crate) fn new(req: ListTransactionsRequest) -> Self {
        Self {
            req,
            started: false,
        }
    }
}

impl Task for ListTransactionsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if !std::mem::replace(&mut self.started, true) {
            return Step::Run(vec![Work::Txn(TxnCall::List)]);
        }
        let all = match txn_reply(results) {
            Some(TxnReply::List(all)) => all,
            _ => {
                return Step::Respond(Response::ListTransactions(ListTransactionsResponse {
                    error_code: ErrorCode::UNKNOWN_SERVER_ERROR.into(),
                    ..ListTransactionsResponse::default()
                }))
            }
        };
        let states = &self.req.state_filters;
        let unknown_state_filters = states
            .iter()
            .filter(|f| !STATES.contains(&f.as_str()))
            .cloned()
            .collect();
        // v1: only transactions open longer than this many milliseconds.
        let min = (ctx.version >= 1 && self.req.duration_filter >= 0)
            .then(|| Duration::from_millis(self.req.duration_filter.unsigned_abs()));
        let transaction_states = all
            .into_iter()
            .filter(|(s, _)| {
                shown(ctx, &s.transactional_id)
                    .is_some_and(|id| ctx.allows(Action::DescribeTransactionalId(id)))
            })
            .filter(|(s, running)| {
                (states.is_empty() || states.iter().any(|f| f.as_str() == s.state.name()))
                    && (self.req.producer_id_filters.is_empty()
                        || self.req.producer_id_filters.contains(&s.producer_id))
                    && min.is_none_or(|m| running.is_some_and(|r| r > m))
            })
            .map(|(s, _)| ListedTransaction {
                transactional_id: KStr::from(shown(ctx, &s.transactional_id).unwrap_or_default()),
                producer_id: s.producer_id,
                transaction_state: KStr::from(s.state.name()),
                ..ListedTransaction::default()
            })
            .collect();
        Step::Respond(Response::ListTransactions(ListTransactionsResponse {
            unknown_state_filters,
            transaction_states,
            ..ListTransactionsResponse::default()
        }))
    }
}

#[derive(Debug)]
pub(crate) struct DescribeTransactionsTask {
    req: DescribeTransactionsRequest,
    /// Whether each id may be described, decided once (permissions may change between
    /// the steps, and the coordinator's answers follow the ids asked).
    allowed: Option<Vec<bool>>,
}

impl DescribeTransactionsTask {
    pub(crate) fn new(req: DescribeTransactionsRequest) -> Self {
        Self { req, allowed: None }
    }
}

impl Task for DescribeTransactionsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        // Kafka's DESCRIBE on each id: the ids refused are not asked of the coordinator.
        if self.allowed.is_none() {
            let allowed: Vec<bool> = self
                .req
                .transactional_ids
                .iter()
                .map(|id| ctx.allows(Action::DescribeTransactionalId(id)))
                .collect();
            let keys: Vec<String> = self
                .req
                .transactional_ids
                .iter()
                .zip(&allowed)
                .filter(|(_, a)| **a)
                .map(|(id, _)| txn_key(ctx, id))
                .collect();
            self.allowed = Some(allowed);
            if !keys.is_empty() {
                return Step::Run(vec![Work::Txn(TxnCall::Describe(keys))]);
            }
        }
        let allowed = self.allowed.clone().unwrap_or_default();
        let asked = allowed.iter().filter(|a| **a).count();
        let mut found = match txn_reply(results) {
            Some(TxnReply::Describe(found)) if found.len() == asked => found,
            _ => vec![None; asked],
        }
        .into_iter();
        let transaction_states = self
            .req
            .transactional_ids
            .iter()
            .zip(allowed)
            .map(|(id, a)| (id, a.then(|| found.next().flatten())))
            .map(|(id, s)| match s {
                None => DescribedTransaction {
                    error_code: ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.into(),
                    transactional_id: id.clone(),
                    transaction_start_time_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..DescribedTransaction::default()
                },
                Some(None) => DescribedTransaction {
                    error_code: if id.is_empty() {
                        ErrorCode::INVALID_REQUEST
                    } else {
                        ErrorCode::TRANSACTIONAL_ID_NOT_FOUND
                    }
                    .into(),
                    transactional_id: id.clone(),
                    transaction_start_time_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..DescribedTransaction::default()
                },
                Some(Some((s, running))) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    // As Kafka, only the topics the principal may describe are shown.
                    let shown = s
                        .partitions
                        .iter()
                        .filter(|(topic, _)| ctx.allows(Action::Describe(topic)));
                    for (topic, p) in shown {
                        let p = i32::try_from(*p).unwrap_or(i32::MAX);
                        match topics.last_mut() {
                            Some(t) if t.topic.as_str() == topic.as_str() => t.partitions.push(p),
                            _ => topics.push(TopicData {
                                topic: KStr::from(topic.as_str()),
                                partitions: vec![p],
                                ..TopicData::default()
                            }),
                        }
                    }
                    DescribedTransaction {
                        transactional_id: id.clone(),
                        transaction_state: KStr::from(s.state.name()),
                        transaction_timeout_ms: s.timeout_ms,
                        // Kept through the transaction's completion, as Kafka keeps it;
                        // -1 after InitProducerId, or without the wall clock.
                        transaction_start_time_ms: running.zip(ctx.config.wall_clock).map_or(
                            -1,
                            |(r, wall)| {
                                let r = i64::try_from(r.as_millis()).unwrap_or(i64::MAX);
                                wall.unix_ms_at(ctx.now).saturating_sub(r)
                            },
                        ),
                        producer_id: s.producer_id,
                        producer_epoch: s.epoch,
                        topics,
                        ..DescribedTransaction::default()
                    }
                }
            })
            .collect();
        Step::Respond(Response::DescribeTransactions(
            DescribeTransactionsResponse {
                transaction_states,
                ..DescribeTransactionsResponse::default()
            },
        ))
    }
}

/// A listing of the topics `names` names, each once: what the handlers ask for to answer
/// the partitions of topics that do not exist as Kafka does.
fn list_named(names: impl IntoIterator<Item = String>) -> Work {
    let names: std::collections::BTreeSet<String> = names.into_iter().collect();
    Work::Store(Command::ListTopics {
        only: Some(names.into_iter().map(TopicRef::Name).collect()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::config::Config;

    #[derive(Debug)]
    struct Everything;

    impl crate::authz::Authorizer for Everything {
        fn allows(&self, _: Option<&str>, _: Action<'_>) -> bool {
            true
        }
    }

    /// With an authorizer each principal has transactional ids of its own: another's cannot
    /// be named, so its producer cannot be fenced, and listings show one's own only.
    #[test]
    fn transactional_ids_belong_to_their_principal() {
        let config = Config {
            authorizer: Some(Arc::new(Everything)),
            ..Config::default()
        };
        let ctx = |principal| Ctx {
            config: &config,
            now: Instant::now(),
            version: 0,
            closing: false,
            client_id: None,
            client_host: "",
            principal,
        };
        let alice = ctx(Some("alice"));
        let mallory = ctx(Some("mallory"));
        let key = txn_key(&alice, "tx");
        assert_ne!(key, txn_key(&mallory, "tx"));
        assert_ne!(key, txn_key(&ctx(None), "tx"));
        assert_eq!(shown(&alice, &key), Some("tx"));
        assert_eq!(shown(&mallory, &key), None);
        // Without an authorizer, ids are as the clients name them.
        let open = Config::default();
        let anyone = Ctx {
            config: &open,
            ..ctx(Some("alice"))
        };
        assert_eq!(txn_key(&anyone, "tx"), "tx");
        assert_eq!(shown(&anyone, "tx"), Some("tx"));
    }

    /// An open transaction's start time is the wall clock's, derived from how long the
    /// coordinator says it has run; -1 without a wall clock or an open transaction.
    #[test]
    fn describe_reports_when_the_open_transaction_started() {
        use crate::backend::{TxnSnapshot, TxnState};
        use crate::config::WallClock;
        use crate::protocol::generated::describe_transactions_request::DescribeTransactionsRequest;
        use crate::protocol::Response;
        let at = Instant::now();
        let describe = |wall_clock, running| {
            let config = Config {
                wall_clock,
                ..Config::default()
            };
            let ctx = Ctx {
                config: &config,
                now: at + Duration::from_secs(60),
                version: 0,
                closing: false,
                client_id: None,
                client_host: "",
                principal: None,
            };
            let mut task = DescribeTransactionsTask::new(DescribeTransactionsRequest {
                transactional_ids: vec!["tx".into()],
                ..DescribeTransactionsRequest::default()
            });
            assert!(matches!(task.step(&ctx, Vec::new()), Step::Run(_)));
            let snapshot = TxnSnapshot {
                transactional_id: "tx".into(),
                producer_id: 1,
                previous_producer_id: -1,
                epoch: 0,
                last_epoch: -1,
                timeout_ms: 60_000,
                state: TxnState::Ongoing,
                partitions: Vec::new(),
                offsets: Vec::new(),
            };
            let reply = TxnReply::Describe(vec![Some((snapshot, running))]);
            match task.step(&ctx, vec![Outcome::Txn(reply)]) {
                Step::Respond(Response::DescribeTransactions(r)) => {
                    r.transaction_states[0].transaction_start_time_ms
                }
                _ => panic!("DescribeTransactions"),
            }
        };
        let wall = WallClock {
            at,
            unix_ms: 1_700_000_000_000,
        };
        // Opened 5 s before the request, which came 60 s after the wall clock was read.
        let running = Some(Duration::from_secs(5));
        assert_eq!(describe(Some(wall), running), 1_700_000_055_000);
        assert_eq!(describe(None, running), -1);
        assert_eq!(describe(Some(wall), None), -1);
    }
}
