//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31). Without an
//! authorizer they are answered as a Kafka broker without one answers them,
//! SECURITY_DISABLED for the request or for each creation and deletion filter, so that admin
//! tools say at once that ACLs are not enabled rather than that the broker is too old. With
//! one, permissions are Iggy's: CreateAcls and DeleteAcls get INVALID_REQUEST, with a
//! message saying where they are changed, and DescribeAcls renders them as ACL bindings, a
//! read-only view: for each principal whose permissions the authorizer knows (or the one
//! the filter names, asked of the backend when the permissions are Iggy's), one ALLOW
//! binding per Kafka operation it may do on each existing topic (LITERAL, by name), on the
//! cluster (`kafka-cluster`) and on groups (`*`), by the same rules that authorize requests.
//! Describing needs DESCRIBE on the cluster (Iggy's `read_servers`), as Kafka requires.

use std::collections::BTreeMap;

use super::task::{kstr, Ctx, Step, Task};
use crate::authz::{Action, Authorizer};
use crate::backend::{Command, Completion};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::create_acls_request::CreateAclsRequest;
use crate::protocol::generated::create_acls_response::{AclCreationResult, CreateAclsResponse};
use crate::protocol::generated::delete_acls_request::DeleteAclsRequest;
use crate::protocol::generated::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsResponse,
};
use crate::protocol::generated::describe_acls_request::DescribeAclsRequest;
use crate::protocol::generated::describe_acls_response::{
    AclDescription, DescribeAclsResource, DescribeAclsResponse,
};
use crate::protocol::Response;
use crate::work::{Outcome, Work};

/// Kafka's words for it.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// An ACL request.
#[derive(Debug)]
pub(crate) enum AclsTask {
    /// The filter, and whether the topics (and the named principal's permissions) were
    /// asked for.
    Describe(DescribeAclsRequest, bool),
    Create(CreateAclsRequest),
    Delete(DeleteAclsRequest),
}

/// With an authorizer, permissions are Iggy's: Kafka's ACLs are neither kept nor changed.
const IGGY_PERMISSIONS: &str = "Permissions are Iggy's, not ACLs: read and change them with \
     Iggy's CLI or SDK (the user's global, stream and topic permissions), or in the gateway's \
     users file when --authorization is users-file";

impl Task for AclsTask {
    fn step(&mut self, ctx: &Ctx<'_>, results: Vec<Outcome>) -> Step {
        if let (Self::Describe(filter, asked), Some(authorizer)) =
            (&mut *self, ctx.config.authorizer.as_deref())
        {
            return describe(ctx, authorizer, filter, asked, results);
        }
        let (code, message) = if ctx.config.authorizer.is_some() {
            (ErrorCode::INVALID_REQUEST.into(), IGGY_PERMISSIONS)
        } else {
            (ErrorCode::SECURITY_DISABLED.into(), NO_AUTHORIZER)
        };
        Step::Respond(match self {
            Self::Describe(..) => Response::DescribeAcls(DescribeAclsResponse {
                error_code: code,
                error_message: Some(kstr(message)),
                ..DescribeAclsResponse::default()
            }),
            Self::Create(r) => Response::CreateAcls(CreateAclsResponse {
                results: r
                    .creations
                    .iter()
                    .map(|_| AclCreationResult {
                        error_code: code,
                        error_message: Some(kstr(message)),
                        ..AclCreationResult::default()
                    })
                    .collect(),
                ..CreateAclsResponse::default()
            }),
            Self::Delete(r) => Response::DeleteAcls(DeleteAclsResponse {
                filter_results: r
                    .filters
                    .iter()
                    .map(|_| DeleteAclsFilterResult {
                        error_code: code,
                        error_message: Some(kstr(message)),
                        ..DeleteAclsFilterResult::default()
                    })
                    .collect(),
                ..DeleteAclsResponse::default()
            }),
        })
    }
}

// Kafka's codes (ResourceType, PatternType, AclOperation, AclPermissionType).
const ANY: i8 = 1;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TRANSACTIONAL_ID: i8 = 5;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DELETE: i8 = 6;
const ALTER: i8 = 7;
const DESCRIBE: i8 = 8;
const DESCRIBE_CONFIGS: i8 = 10;
const ALTER_CONFIGS: i8 = 11;
const ALLOW: i8 = 3;

/// Kafka's name for the cluster resource.
const CLUSTER_NAME: &str = "kafka-cluster";

/// The Kafka principal of a gateway principal.
fn kafka_principal(p: Option<&str>) -> String {
    format!("User:{}", p.unwrap_or("ANONYMOUS"))
}

/// DescribeAcls with an authorizer: the principals' effective permissions as bindings.
fn describe(
    ctx: &Ctx<'_>,
    authorizer: &dyn Authorizer,
    filter: &DescribeAclsRequest,
    asked: &mut bool,
    results: Vec<Outcome>,
) -> Step {
    let refuse = |code: ErrorCode, message: &str| {
        Step::Respond(Response::DescribeAcls(DescribeAclsResponse {
            error_code: code.into(),
            error_message: Some(kstr(message)),
            ..DescribeAclsResponse::default()
        }))
    };
    if !authorizer.allows(ctx.principal, Action::DescribeCluster) {
        return refuse(
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
            "Describing ACLs needs DESCRIBE on the cluster: Iggy's read_servers",
        );
    }
    // The one principal the filter names, if it names one.
    let named: Option<Option<String>> = filter.principal_filter.as_ref().map(|p| {
        let p = p.to_string();
        let name = p.strip_prefix("User:").unwrap_or(&p).to_owned();
        (name != "ANONYMOUS").then_some(name)
    });
    if !*asked {
        *asked = true;
        let mut work = vec![Work::Store(Command::ListTopics { only: None })];
        if let (Some(Some(user)), Some(_)) = (&named, authorizer.refresh_interval()) {
            work.push(Work::Store(Command::UserPermissions { user: user.clone() }));
        }
        return Step::Run(work);
    }
    let mut topics = Vec::new();
    for r in results {
        match r {
            Outcome::Store(Completion::ListTopics(Ok(list))) => {
                topics = list.into_iter().map(|t| t.name).collect();
            }
            Outcome::Store(Completion::UserPermissions(Ok(p))) => {
                if let Some(Some(user)) = &named {
                    authorizer.learned(user, p);
                }
            }
            other => {
                tracing::warn!(outcome = ?other, "DescribeAcls: cannot list topics or permissions");
                return refuse(
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    "The topics or the principal's permissions could not be read",
                );
            }
        }
    }
    topics.sort();
    let principals = match named {
        Some(p) => vec![p],
        None => authorizer.principals(),
    };
    // By resource: (type, name) → bindings.
    let mut resources: BTreeMap<(i8, String), Vec<AclDescription>> = BTreeMap::new();
    let host_ok = filter
        .host_filter
        .as_ref()
        .is_none_or(|h| h.as_str() == "*");
    let permission_ok = matches!(filter.permission_type, ANY | ALLOW);
    let pattern_ok = matches!(filter.pattern_type_filter, ANY | MATCH | LITERAL);
    if !(host_ok && permission_ok && pattern_ok) {
        return respond(resources);
    }
    for principal in &principals {
        let p = principal.as_deref();
        let may = |a: Action<'_>| authorizer.allows(p, a);
        let mut grants: Vec<(i8, String, i8)> = Vec::new();
        for t in &topics {
            for (op, action) in [
                (READ, Action::Poll(t)),
                (WRITE, Action::Send(t)),
                (DESCRIBE, Action::Describe(t)),
                (DESCRIBE_CONFIGS, Action::Describe(t)),
                (CREATE, Action::Create(t)),
                (DELETE, Action::Manage(t)),
                (ALTER, Action::Manage(t)),
                (ALTER_CONFIGS, Action::Manage(t)),
            ] {
                if may(action) {
                    grants.push((TOPIC, t.clone(), op));
                }
            }
        }
        let describes_cluster = may(Action::DescribeCluster);
        let alters_cluster = may(Action::AlterCluster);
        for (op, allowed) in [
            (DESCRIBE, describes_cluster || may(Action::DescribeUsers)),
            (DESCRIBE_CONFIGS, describes_cluster),
            (ALTER, alters_cluster || may(Action::ManageUsers)),
            (ALTER_CONFIGS, alters_cluster),
        ] {
            if allowed {
                grants.push((CLUSTER, CLUSTER_NAME.to_owned(), op));
            }
        }
        // No group permission names one group (docs/SECURITY.md): each holds for all.
        for (op, action) in [
            (READ, Action::ReadGroup("*")),
            (DESCRIBE, Action::DescribeGroup("*")),
            (DELETE, Action::DeleteGroups),
        ] {
            if may(action) {
                grants.push((GROUP, "*".to_owned(), op));
            }
        }
        // Nor does the transactional-id permission.
        for (op, action) in [
            (WRITE, Action::WriteTransactionalId("*")),
            (DESCRIBE, Action::DescribeTransactionalId("*")),
        ] {
            if may(action) {
                grants.push((TRANSACTIONAL_ID, "*".to_owned(), op));
            }
        }
        for (kind, name, op) in grants {
            if !matches!(filter.resource_type_filter, ANY) && filter.resource_type_filter != kind {
                continue;
            }
            if let Some(wanted) = &filter.resource_name_filter {
                let wanted = wanted.to_string();
                let matches =
                    wanted == name || (filter.pattern_type_filter == MATCH && name == "*");
                if !matches {
                    continue;
                }
            }
            if !matches!(filter.operation, ANY | ALL) && filter.operation != op {
                continue;
            }
            resources
                .entry((kind, name))
                .or_default()
                .push(AclDescription {
                    principal: kstr(&kafka_principal(p)),
                    host: kstr("*"),
                    operation: op,
                    permission_type: ALLOW,
                    ..AclDescription::default()
                });
        }
    }
    respond(resources)
}

fn respond(resources: BTreeMap<(i8, String), Vec<AclDescription>>) -> Step {
    Step::Respond(Response::DescribeAcls(DescribeAclsResponse {
        resources: resources
            .into_iter()
            .map(|((resource_type, name), acls)| DescribeAclsResource {
                resource_type,
                resource_name: kstr(&name),
                pattern_type: LITERAL,
                acls,
                ..DescribeAclsResource::default()
            })
            .collect(),
        ..DescribeAclsResponse::default()
    }))
}
