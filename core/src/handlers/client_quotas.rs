//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49): the quotas of
//! [`crate::quotas`], matched and checked as Kafka's controller does. Describing needs
//! what describing the cluster needs, altering what altering it needs.

use super::task::{kstr, Ctx, Step, Task};
use crate::authz::Action;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::alter_client_quotas_request::AlterClientQuotasRequest;
use crate::protocol::generated::alter_client_quotas_response::{
    AlterClientQuotasResponse, EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use crate::protocol::generated::describe_client_quotas_request::DescribeClientQuotasRequest;
use crate::protocol::generated::describe_client_quotas_response::{
    DescribeClientQuotasResponse, EntityData, EntryData, ValueData,
};
use crate::protocol::Response;
use crate::quotas::Entity;
use crate::work::Outcome;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
/// Kafka's match types.
const EXACT: i8 = 0;
const DEFAULT: i8 = 1;
const ANY: i8 = 2;

/// A DescribeClientQuotas request.
#[derive(Debug)]
pub(crate) struct DescribeQuotasTask(pub(crate) DescribeClientQuotasRequest);

/// Whether the part `part` of an entity matches a filter component.
fn part_matches(part: Option<&Option<String>>, match_type: i8, name: Option<&str>) -> bool {
    match (part, match_type) {
        (Some(Some(n)), EXACT) => Some(n.as_str()) == name,
        (Some(None), DEFAULT) => true,
        (Some(_), ANY) => true,
        _ => false,
    }
}

impl Task for DescribeQuotasTask {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        let refuse = |code: ErrorCode, message: String| {
            Step::Respond(Response::DescribeClientQuotas(
                DescribeClientQuotasResponse {
                    error_code: code.into(),
                    error_message: Some(kstr(&message)),
                    entries: None,
                    ..DescribeClientQuotasResponse::default()
                },
            ))
        };
        if !ctx.allows(Action::DescribeCluster) {
            return refuse(
                ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                "Authorization failed.".into(),
            );
        }
        let mut seen = Vec::new();
        for c in &self.0.components {
            let t = c.entity_type.as_str();
            if t != USER && t != CLIENT_ID {
                return refuse(
                    ErrorCode::INVALID_REQUEST,
                    format!("Unsupported entity type {t}"),
                );
            }
            if seen.contains(&t) {
                return refuse(
                    ErrorCode::INVALID_REQUEST,
                    format!("Duplicate {t} filter component entity type"),
                );
            }
            if !(EXACT..=ANY).contains(&c.match_type) {
                return refuse(
                    ErrorCode::INVALID_REQUEST,
                    format!("Unknown match type {}", c.match_type),
                );
            }
            seen.push(t);
        }
        let entries = ctx
            .config
            .quotas
            .entries()
            .into_iter()
            .filter(|(e, _)| {
                let parts = [(USER, e.user.as_ref()), (CLIENT_ID, e.client_id.as_ref())];
                let all_match = self.0.components.iter().all(|c| {
                    let part = parts.iter().find(|(t, _)| *t == c.entity_type.as_str());
                    part_matches(part.and_then(|p| p.1), c.match_type, c.r#match.as_deref())
                });
                // Strict: the entity has no parts beyond those the filter names.
                let only_named = !self.0.strict
                    || parts.iter().all(|(t, p)| {
                        p.is_none()
                            || self
                                .0
                                .components
                                .iter()
                                .any(|c| c.entity_type.as_str() == *t)
                    });
                all_match && only_named
            })
            .map(|(e, values)| EntryData {
                entity: [(USER, e.user), (CLIENT_ID, e.client_id)]
                    .into_iter()
                    .filter_map(|(t, p)| {
                        p.map(|name| EntityData {
                            entity_type: kstr(t),
                            entity_name: name.as_deref().map(kstr),
                            ..EntityData::default()
                        })
                    })
                    .collect(),
                values: values
                    .into_iter()
                    .map(|(key, value)| ValueData {
                        key: kstr(&key),
                        value,
                        ..ValueData::default()
                    })
                    .collect(),
                ..EntryData::default()
            })
            .collect();
        Step::Respond(Response::DescribeClientQuotas(
            DescribeClientQuotasResponse {
                entries: Some(entries),
                ..DescribeClientQuotasResponse::default()
            },
        ))
    }
}

/// An AlterClientQuotas request.
#[derive(Debug)]
pub(crate) struct AlterQuotasTask(pub(crate) AlterClientQuotasRequest);

impl Task for AlterQuotasTask {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        let allowed = ctx.allows(Action::AlterCluster);
        let entries = self
            .0
            .entries
            .iter()
            .map(|entry| {
                let mut entity = Entity {
                    user: None,
                    client_id: None,
                };
                let mut problem = None;
                for part in &entry.entity {
                    let name = part.entity_name.as_ref().map(ToString::to_string);
                    let slot = match part.entity_type.as_str() {
                        USER => &mut entity.user,
                        CLIENT_ID => &mut entity.client_id,
                        other => {
                            problem = Some(format!("Unhandled client quota entity type: {other}"));
                            continue;
                        }
                    };
                    if slot.is_some() {
                        problem = Some(format!(
                            "Invalid client quota entity, duplicate entity entry {}",
                            part.entity_type
                        ));
                    }
                    if name.as_deref() == Some("") {
                        problem = Some(format!("Empty {} not supported", part.entity_type));
                    }
                    *slot = Some(name);
                }
                let ops: Vec<(String, f64, bool)> = entry
                    .ops
                    .iter()
                    .map(|o| (o.key.to_string(), o.value, o.remove))
                    .collect();
                let result = if !allowed {
                    Err((ErrorCode::CLUSTER_AUTHORIZATION_FAILED, "Authorization failed.".into()))
                } else if let Some(p) = problem {
                    Err((ErrorCode::INVALID_REQUEST, p))
                } else {
                    ctx.config
                        .quotas
                        .alter(&entity, &ops, self.0.validate_only)
                        .map_err(|e| (ErrorCode::INVALID_REQUEST, e.0))
                };
                let (code, message) = match result {
                    Ok(()) => {
                        if !self.0.validate_only {
                            tracing::info!(?entity, ?ops, by = ?ctx.principal, "client quota altered");
                        }
                        (ErrorCode::NONE, None)
                    }
                    Err((code, m)) => (code, Some(m)),
                };
                AlteredEntry {
                    error_code: code.into(),
                    error_message: message.as_deref().map(kstr),
                    entity: entry
                        .entity
                        .iter()
                        .map(|p| AlteredEntity {
                            entity_type: p.entity_type.clone(),
                            entity_name: p.entity_name.clone(),
                            ..AlteredEntity::default()
                        })
                        .collect(),
                    ..AlteredEntry::default()
                }
            })
            .collect();
        Step::Respond(Response::AlterClientQuotas(AlterClientQuotasResponse {
            entries,
            ..AlterClientQuotasResponse::default()
        }))
    }
}
