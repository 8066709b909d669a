//! The contract between the connection and a request's handler: a [`Task`] is stepped with
//! the outcomes of the work it asked for until it answers; [`Ctx`] is what it sees of its
//! connection. Helpers the handlers share follow.

use std::fmt;
use std::time::Instant;

use crate::authz::Action;
use crate::backend::WatchPartition;
use crate::close::CloseReason;
use crate::config::Config;
use crate::group::GroupReply;
use crate::protocol::{KStr, Response};
use crate::stats::Traffic;
use crate::work::{Outcome, Work};

/// What a task sees of its connection.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) now: Instant,
    pub(crate) version: i16,
    /// The connection is closing: answer now rather than wait.
    pub(crate) closing: bool,
    /// The client's `client.id`.
    pub(crate) client_id: Option<&'a str>,
    /// The client's address, as group descriptions show it.
    pub(crate) client_host: &'a str,
    /// Who the client authenticated as, if anyone.
    pub(crate) principal: Option<&'a str>,
}

impl Ctx<'_> {
    /// Whether the client may do `action` (always, without an authorizer).
    pub(crate) fn allows(&self, action: Action<'_>) -> bool {
        self.config
            .authorizer
            .as_ref()
            .is_none_or(|a| a.allows(self.principal, action))
    }
}

/// What a task wants next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Run this work; the task is stepped again with its outcomes, in this order.
    Run(Vec<Work>),
    /// Wait until one of these partitions grows or `deadline` passes; the task is then
    /// stepped with the outcome of a [`crate::backend::Command::Watch`].
    Wait {
        deadline: Instant,
        watch: Vec<WatchPartition>,
    },
    /// Done: send this.
    Respond(Response),
    /// Done, and no response is due (acks=0).
    Silent,
    /// Done, and the connection must close.
    Close(CloseReason),
}

/// One request being served.
pub(crate) trait Task: Send + fmt::Debug {
    /// Called first with no results, then with the outcomes of what the last step asked.
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step;

    /// The work of the last step took longer than the request timeout; its outcomes will be
    /// dropped. Must end the task.
    fn timed_out(&mut self, _ctx: &Ctx<'_>) -> Step {
        Step::Close(CloseReason::RequestTimeout("request"))
    }

    /// Once the task is done: tells what records it moved (produce and fetch do).
    fn report(&self, _traffic: &mut Traffic<'_>) {}
}

/// Kafka's topic name rule: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

pub(crate) fn kstr(s: &str) -> KStr {
    KStr::from(s)
}

/// A partition index from the wire, if it can be one.
pub(crate) fn partition_index(p: i32) -> Option<u32> {
    u32::try_from(p).ok()
}

/// Takes the only completion of a one-command step.
pub(crate) fn single(results: Vec<Outcome>) -> Option<Outcome> {
    results.into_iter().next()
}

/// The coordinator's reply, the only outcome of a one-call step.
pub(crate) fn group_reply(results: Vec<Outcome>) -> Option<GroupReply> {
    match single(results) {
        Some(Outcome::Group(r)) => Some(r),
        _ => None,
    }
}
