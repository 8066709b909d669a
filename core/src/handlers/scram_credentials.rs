//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51): the SCRAM
//! users, managed the Kafka way (KIP-554). The client salts and iterates the password, so it
//! never reaches the gateway; the gateway keeps StoredKey and ServerKey.
//!
//! Only an authenticated principal with Iggy's `read_users` (to describe) or
//! `manage_users` (to alter) may call them, or without an authorizer a super user (Kafka
//! asks for DESCRIBE and ALTER on the cluster); anyone else gets
//! CLUSTER_AUTHORIZATION_FAILED. Without SASL users configured there is nothing to manage:
//! the same answer.
//!
//! Alterations are kept by the backend first ([`Command::StoreScramCredentials`]: a
//! gateway-owned topic on Iggy) and applied to the users in memory once it has them; when
//! the backend cannot keep them, none applies and each user's result says why.

use std::collections::{BTreeMap, HashSet};

use super::task::{kstr, Ctx, Step, Task};
use crate::authz::Action;
use crate::backend::{BackendError, Command, Completion};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::alter_user_scram_credentials_request::AlterUserScramCredentialsRequest;
use crate::protocol::generated::alter_user_scram_credentials_response::{
    AlterUserScramCredentialsResponse, AlterUserScramCredentialsResult,
};
use crate::protocol::generated::describe_user_scram_credentials_request::DescribeUserScramCredentialsRequest;
use crate::protocol::generated::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResponse, DescribeUserScramCredentialsResult,
};
use crate::protocol::Response;
use crate::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use crate::sasl::{ScramChange, ScramCredential, ScramMechanism, Users};
use crate::work::{Outcome, Work};

const NOT_ALLOWED: &str = "Only a super user may manage SCRAM credentials";

/// The users, when `ctx`'s principal may do `action` on them: what the authorizer says
/// (Iggy's `read_users` and `manage_users`), or without one, whether it is a super user.
fn managed<'a>(ctx: &Ctx<'a>, action: Action<'_>) -> Option<&'a Users> {
    let users = &ctx.config.sasl.as_ref()?.users;
    let principal = ctx.principal?;
    let allowed = match &ctx.config.authorizer {
        Some(a) => a.allows(Some(principal), action),
        None => users.is_super_user(principal),
    };
    allowed.then_some(&**users)
}

/// A DescribeUserScramCredentials request, answered from the users in memory.
#[derive(Debug)]
pub(crate) struct DescribeScramTask(pub(crate) DescribeUserScramCredentialsRequest);

impl Task for DescribeScramTask {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        let Some(users) = managed(ctx, Action::DescribeUsers) else {
            return Step::Respond(Response::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse {
                    error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into(),
                    error_message: Some(kstr(NOT_ALLOWED)),
                    ..DescribeUserScramCredentialsResponse::default()
                },
            ));
        };
        let asked: Vec<String> = match &self.0.users {
            Some(list) if !list.is_empty() => list.iter().map(|u| u.name.to_string()).collect(),
            // Null or empty: every user with a credential.
            _ => users.names(),
        };
        let mut seen = HashSet::new();
        let duplicates: HashSet<&String> = asked.iter().filter(|u| !seen.insert(*u)).collect();
        let mut done = HashSet::new();
        let results = asked
            .iter()
            .filter(|u| done.insert(*u))
            .map(|user| {
                let (code, message, infos) = if duplicates.contains(user) {
                    (
                        ErrorCode::DUPLICATE_RESOURCE,
                        Some("Cannot describe SCRAM credentials for the same user twice in a single request"),
                        Vec::new(),
                    )
                } else {
                    let infos = users.describe(user);
                    if infos.is_empty() {
                        (
                            ErrorCode::RESOURCE_NOT_FOUND,
                            Some("Attempt to describe a user credential that does not exist"),
                            infos,
                        )
                    } else {
                        (ErrorCode::NONE, None, infos)
                    }
                };
                DescribeUserScramCredentialsResult {
                    user: kstr(user),
                    error_code: code.into(),
                    error_message: message.map(kstr),
                    credential_infos: infos
                        .into_iter()
                        .map(|i| CredentialInfo {
                            mechanism: i.mechanism.kafka_type(),
                            iterations: i32::try_from(i.iterations).unwrap_or(i32::MAX),
                            ..CredentialInfo::default()
                        })
                        .collect(),
                    ..DescribeUserScramCredentialsResult::default()
                }
            })
            .collect();
        Step::Respond(Response::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse {
                results,
                ..DescribeUserScramCredentialsResponse::default()
            },
        ))
    }
}

/// An AlterUserScramCredentials request: each user's one alteration applies, or none of
/// them does, with Kafka's checks and codes.
pub(crate) struct AlterScramTask(
    pub(crate) AlterUserScramCredentialsRequest,
    /// Once checked: the changes out for the backend to keep, and the refused users.
    pub(crate) Option<Checked>,
);

/// The changes of a checked request, and the users refused with their reason.
pub(crate) struct Checked {
    changes: Vec<ScramChange>,
    errors: BTreeMap<String, (ErrorCode, &'static str)>,
}

impl std::fmt::Debug for AlterScramTask {
    // A salted password logs in as its user: only names leave.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>();
        f.debug_struct("AlterScramTask")
            .field(
                "deletions",
                &names(&mut self.0.deletions.iter().map(|d| d.name.to_string())),
            )
            .field(
                "upsertions",
                &names(&mut self.0.upsertions.iter().map(|u| u.name.to_string())),
            )
            .finish()
    }
}

enum Change {
    Delete(ScramMechanism),
    Upsert(ScramCredential),
}

fn mechanism_of(user: &str, t: i8) -> Result<ScramMechanism, (ErrorCode, &'static str)> {
    if user.is_empty() {
        return Err((
            ErrorCode::UNACCEPTABLE_CREDENTIAL,
            "Username must not be empty",
        ));
    }
    ScramMechanism::from_kafka_type(t).ok_or((
        ErrorCode::UNSUPPORTED_SASL_MECHANISM,
        "Unknown SCRAM mechanism",
    ))
}

impl Task for AlterScramTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let Some(checked) = self.1.take() {
            return stored(ctx, checked, results);
        }
        let req = &self.0;
        let Some(users) = managed(ctx, Action::ManageUsers) else {
            let mut names: Vec<String> = req
                .deletions
                .iter()
                .map(|d| d.name.to_string())
                .chain(req.upsertions.iter().map(|u| u.name.to_string()))
                .collect();
            names.dedup();
            return Step::Respond(Response::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse {
                    results: names
                        .iter()
                        .map(|n| AlterUserScramCredentialsResult {
                            user: kstr(n),
                            error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.into(),
                            error_message: Some(kstr(NOT_ALLOWED)),
                            ..AlterUserScramCredentialsResult::default()
                        })
                        .collect(),
                    ..AlterUserScramCredentialsResponse::default()
                },
            ));
        };
        const TWICE: &str = "A user credential cannot be altered twice in the same request";
        let mut changes: BTreeMap<String, Change> = BTreeMap::new();
        let mut errors: BTreeMap<String, (ErrorCode, &'static str)> = BTreeMap::new();
        for d in &req.deletions {
            let user = d.name.to_string();
            if errors.contains_key(&user) {
                continue;
            }
            if changes.remove(&user).is_some() {
                errors.insert(user, (ErrorCode::DUPLICATE_RESOURCE, TWICE));
                continue;
            }
            match mechanism_of(&user, d.mechanism) {
                Err(e) => {
                    errors.insert(user, e);
                }
                Ok(m) if users.get(&user, m).is_none() => {
                    errors.insert(
                        user,
                        (
                            ErrorCode::RESOURCE_NOT_FOUND,
                            "Attempt to delete a user credential that does not exist",
                        ),
                    );
                }
                Ok(m) => {
                    changes.insert(user, Change::Delete(m));
                }
            }
        }
        for u in &req.upsertions {
            let user = u.name.to_string();
            if errors.contains_key(&user) {
                continue;
            }
            if changes.remove(&user).is_some() {
                errors.insert(user, (ErrorCode::DUPLICATE_RESOURCE, TWICE));
                continue;
            }
            let checked =
                mechanism_of(&user, u.mechanism).and_then(|m| match u32::try_from(u.iterations) {
                    Ok(i) if i < MIN_ITERATIONS => {
                        Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Too few iterations"))
                    }
                    Ok(i) if i > MAX_ITERATIONS => {
                        Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Too many iterations"))
                    }
                    Ok(i) => Ok((m, i)),
                    Err(_) => Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Too few iterations")),
                });
            match checked {
                Err(e) => {
                    errors.insert(user, e);
                }
                Ok((m, iterations)) => {
                    let credential = ScramCredential::from_salted_password(
                        m,
                        &u.salted_password,
                        &u.salt,
                        iterations,
                    );
                    changes.insert(user, Change::Upsert(credential));
                }
            }
        }
        let changes: Vec<ScramChange> = changes
            .into_iter()
            .map(|(user, change)| match change {
                Change::Delete(mechanism) => ScramChange::Delete { user, mechanism },
                Change::Upsert(credential) => ScramChange::Set { user, credential },
            })
            .collect();
        let checked = Checked { changes, errors };
        if checked.changes.is_empty() {
            return stored(ctx, checked, Vec::new());
        }
        let work = Work::Store(Command::StoreScramCredentials {
            changes: checked.changes.clone(),
        });
        self.1 = Some(checked);
        Step::Run(vec![work])
    }
}

/// The answer once the backend kept the changes (or could not): applied to the users in
/// memory when kept, else refused with the backend's reason.
fn stored(ctx: &Ctx<'_>, checked: Checked, results: Vec<Outcome>) -> Step {
    let Checked {
        changes,
        mut errors,
    } = checked;
    let kept = match results.into_iter().next() {
        None => Ok(0),
        Some(Outcome::Store(Completion::StoreScramCredentials(r))) => r.map_err(|e| {
            tracing::warn!(error = %e, "cannot store SCRAM credentials");
            match e {
                BackendError::Unavailable(_) => ErrorCode::REQUEST_TIMED_OUT,
                _ => ErrorCode::UNKNOWN_SERVER_ERROR,
            }
        }),
        Some(other) => {
            tracing::warn!(outcome = ?other, "unexpected outcome of storing SCRAM credentials");
            Err(ErrorCode::UNKNOWN_SERVER_ERROR)
        }
    };
    let users = ctx.config.sasl.as_ref().map(|s| &*s.users);
    let mut results = Vec::new();
    for change in changes {
        let (ScramChange::Set { user, .. } | ScramChange::Delete { user, .. }) = &change;
        let user = user.clone();
        match (&kept, users) {
            (Ok(place), Some(users)) => {
                if !change.apply_stored(users, *place) {
                    // Kept, and then replaced by a change kept after it, whose answer
                    // came first: memory keeps the later one, as the backend does.
                    tracing::debug!(%user, place, "SCRAM change superseded before it was applied");
                }
                match &change {
                    ScramChange::Delete { mechanism, .. } => {
                        tracing::info!(%user, %mechanism, by = ?ctx.principal, "SCRAM credential deleted");
                    }
                    ScramChange::Set { credential, .. } => {
                        tracing::info!(%user, mechanism = %credential.mechanism, by = ?ctx.principal, "SCRAM credential set");
                    }
                }
                results.push(AlterUserScramCredentialsResult {
                    user: kstr(&user),
                    ..AlterUserScramCredentialsResult::default()
                });
            }
            (Err(code), _) => {
                tracing::warn!(%user, code = code.name(), "SCRAM credential not kept: the backend could not store it");
                errors.insert(
                    user,
                    (
                        *code,
                        "The credential could not be stored; nothing was changed",
                    ),
                );
            }
            (Ok(_), None) => {}
        }
    }
    {
        for (user, (code, message)) in errors {
            results.push(AlterUserScramCredentialsResult {
                user: kstr(&user),
                error_code: code.into(),
                error_message: Some(kstr(message)),
                ..AlterUserScramCredentialsResult::default()
            });
        }
    }
    Step::Respond(Response::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse {
            results,
            ..AlterUserScramCredentialsResponse::default()
        },
    ))
}
